"""Face models: :class:`FaceModel` (buffers + pure blend math) and a registry of file-format loaders.

``load_model("ict")`` loads an installed model by name (or any supported model file/folder by path);
``install_model(name, src_dir=None)`` installs one; see :mod:`redafit.model.store` and
:mod:`redafit.model.formats`.
"""

from redafit.model.face_model import FaceModel, ModelInfo, blend  # noqa: F401
from redafit.model.store import (  # noqa: F401
    KNOWN_MODELS,
    install_model,
    is_installed,
    load_model,
    model_dir,
)
