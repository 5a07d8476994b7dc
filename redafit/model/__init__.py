"""Face models: :class:`FaceModel` (buffers + pure blend math) and a registry of file-format loaders.

``load_model("ict")`` loads an installed model by name (or any supported model file/folder by path);
``install_model(name, src_dir=None)`` installs one; see :mod:`redafit.model.store` and
:mod:`redafit.model.formats`.
"""

from redafit.model.store import (  # noqa: F401
    KNOWN_MODELS,
    install_model,
    is_installed,
    load_model,
    model_dir,
)


__all__ = ["FaceModel", "ModelInfo", "blend", "KNOWN_MODELS", "install_model", "is_installed", "load_model",
           "model_dir"]


def __getattr__(name: str):
    """:class:`FaceModel`, :class:`ModelInfo` and :func:`blend` on first use: the store alone (``redafit models
    list``) does not import torch."""
    if name in ("FaceModel", "ModelInfo", "blend"):
        from redafit.model import face_model

        return getattr(face_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
