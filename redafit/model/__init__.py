"""Face models: :class:`FaceModel` (buffers + pure blend math) and a registry of file-format loaders."""

from redafit.model.face_model import FaceModel, ModelInfo, blend  # noqa: F401
