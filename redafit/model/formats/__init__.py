"""A registry of face-model file formats: one module per format, each registering ``detect`` and ``load``.

Every loader returns a :class:`~redafit.model.FaceModel` in the model frame (millimetres, y up, the face
looking along +z, triangles counter-clockwise seen from the front) with a filled-in
:class:`~redafit.model.ModelInfo` (name, source, licence, ``units_in_file``, ``expression_prior``).

=========  =====================================================================================
format     files
=========  =====================================================================================
native     redafit's own ``.npz`` (``redafit-face-model-1``; what ``redafit models install`` writes),
           or a folder holding ``model.npz``
ict        ICT Face Model: the face-area ``ict_face.npz`` or the upstream per-shape OBJ layout
           (``generic_neutral_mesh.obj``, ``identityNNN.obj``, expression OBJs, ``vertex_indices.json``)
sfm        Surrey Face Model, eos binary files (``sfm_shape_3448.bin`` and the files beside it)
bfm2009    Basel Face Model 2009, ``01_MorphableModel.mat``
bfm2017    Basel Face Model 2017/2019, statismo ``.h5`` (needs h5py: ``pip install redafit[h5]``)
flame      FLAME ``.pkl`` (read without chumpy)
=========  =====================================================================================

Usage::

    from redafit.model.formats import load_file, detect_format
    model = load_file("path/to/01_MorphableModel.mat")          # auto-detected
    model = load_file("path/to/model", format="flame")

A new format is a module that calls :func:`register` at import time and is listed in ``_FORMAT_MODULES``.
Heavy or optional dependencies (scipy.io, h5py) are imported inside ``load``, so importing this package never
fails; detection is cheap (suffixes, file names, small headers).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redafit.errors import ModelError
from redafit.model.face_model import ModelArrayError

# Detection order matters: the first format whose ``detect`` accepts a path wins.
_FORMAT_MODULES = ["native", "ict", "sfm", "bfm2009", "bfm2017", "flame"]


@dataclass(frozen=True)
class Loader:
    """One registered file format."""

    name: str
    detect: Callable[[Path], bool]  # cheap check: is this path (file or folder) in my format?
    load: Callable[[Path], object]  # Path -> FaceModel
    description: str = ""


_REGISTRY: dict[str, Loader] = {}
_imported = False


def register(name: str, detect: Callable[[Path], bool], load: Callable[[Path], object], description: str = "") -> None:
    """Register (or replace) the loader of format ``name``."""
    _REGISTRY[name] = Loader(name, detect, load, description)


def _ensure_imported() -> None:
    global _imported
    if not _imported:
        for mod in _FORMAT_MODULES:
            importlib.import_module(f"{__name__}.{mod}")
        _imported = True


def loaders() -> list[Loader]:
    """All registered loaders, in detection order."""
    _ensure_imported()
    order = {n: i for i, n in enumerate(_FORMAT_MODULES)}
    return sorted(_REGISTRY.values(), key=lambda lo: order.get(lo.name, len(order)))


def format_names() -> list[str]:
    return [lo.name for lo in loaders()]


def get_loader(name: str) -> Loader:
    _ensure_imported()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model format '{name}' (known: {', '.join(format_names())})")
    return _REGISTRY[name]


def detect_format(path) -> str:
    """The name of the first format whose ``detect`` accepts ``path``; :class:`ModelError` if none does."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    for lo in loaders():
        try:
            if lo.detect(p):
                return lo.name
        except OSError:
            continue
    raise ModelError(f"{p}: not a face model in a known format (known: {', '.join(format_names())})")


def load_file(path, format: str | None = None):
    """Load the face model at ``path`` (file or folder) as a :class:`~redafit.model.FaceModel` (mm); a
    :class:`ModelError` naming the file when it is missing, in no known format, or malformed (its arrays' shapes,
    types and values are checked against each other by the model)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    name = format or detect_format(p)
    try:
        return get_loader(name).load(p)
    except ModelArrayError as e:  # the model's own checks (shapes, NaN, indices) know no file: name it
        raise ModelError(f"{p}: {e}") from None


__all__ = ["Loader", "detect_format", "format_names", "get_loader", "load_file", "loaders", "register"]
