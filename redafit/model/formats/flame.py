"""FLAME (``generic_model.pkl``, ``flame2020*.pkl``, ``flame2023*.pkl``; registration required), read without chumpy.

The pickle (written by Python 2 with chumpy) holds a dict with, among others:

==============  ==============  =============================================================
key             shape           meaning
==============  ==============  =============================================================
v_template      [V, 3]          template mesh, **metres** (V = 5023), y up, face along +z
shapedirs       [V, 3, 400]     chumpy array: the first 300 columns identity, the last 100
                                expression (weights ~ N(0, 1) for both)
f               [F, 3]          triangles, 0-based (uint32)
posedirs, J_regressor, weights, kintree_table   the skinning rig (ignored here)
==============  ==============  =============================================================

A restricted :class:`pickle.Unpickler` maps chumpy classes (and scipy sparse matrices) to a stub that keeps the
pickled state and is turned into a numpy array afterwards, and allows only numpy's array reconstruction
otherwise — nothing else in the file can run code. Loaded as mm (x 1000). Rig (jaw, neck, eyes) is not used:
redafit fits a linear model. UVs: only when a ``FLAME_texture.npz`` (keys ``vt`` [T,2], ``ft`` [F,3]) lies next
to the pickle. Landmarks: FLAME's own landmark embedding is barycentric, not vertex ids; put a sidecar
``landmarks.txt`` / ``landmarks.json`` of 68 vertex ids next to the file (see
:mod:`redafit.model.formats._common`); otherwise ``landmark_ids`` are all -1.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

from redafit.errors import ModelError
from redafit.model.face_model import FaceModel, ModelInfo
from redafit.model.formats import register
from redafit.model.formats._common import apply_sidecar, orient_front

M_TO_MM = 1000.0
N_SHAPE = 300  # identity columns of shapedirs; the rest are expression
LICENCE = ("FLAME: non-commercial scientific research only, registration required (flame.is.tue.mpg.de); "
           "no redistribution")
SOURCE = "https://flame.is.tue.mpg.de (Li et al., SIGGRAPH Asia 2017)"
TEXTURE_FILE = "FLAME_texture.npz"
_NAME_RE = re.compile(r"^(generic_model|flame.*|FLAME.*|female_model|male_model)\.pkl$", re.IGNORECASE)


class _Stub:
    """Stand-in for a chumpy (or scipy sparse) object: keeps the constructor args and the pickled state."""

    _origin = ""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._args = args
        obj._state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self._state = state


def _stub_class(module: str, name: str) -> type:
    return type(name, (_Stub,), {"_origin": f"{module}.{name}"})


_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer", "frombuffer"}
_BUILTIN_NAMES = {"object", "set", "frozenset", "slice", "complex", "bytearray", "list", "dict", "tuple", "int",
                  "float", "str", "bytes", "bool"}


class _Unpickler(pickle.Unpickler):
    """Allows numpy arrays and plain containers; chumpy/scipy objects become stubs; anything else is refused."""

    def find_class(self, module, name):
        root = module.split(".")[0]
        if root == "numpy" and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("_codecs", "encode")):
            return super().find_class(module, name)  # object re-creation / bytes in protocol-2 pickles
        if module in ("builtins", "__builtin__") and name in _BUILTIN_NAMES:
            return super().find_class(module, name)
        if root in ("chumpy", "scipy"):
            return _stub_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a model pickle")


def _to_array(obj, key: str, path: Path) -> np.ndarray:
    """A numpy array from a plain array or a chumpy stub (whose state keeps its value under 'x')."""
    if isinstance(obj, _Stub):
        st = obj._state
        val = None
        if isinstance(st, dict):
            val = st.get("x", st.get("_x"))
        elif isinstance(st, tuple) and st and isinstance(st[-1], dict):
            val = st[-1].get("x")
        if val is None and obj._args and isinstance(obj._args[0], np.ndarray):
            val = obj._args[0]
        if isinstance(val, _Stub):
            return _to_array(val, key, path)
        if val is None:
            raise ModelError(f"{path}: '{key}' is a chumpy expression ({obj._origin}) this reader cannot evaluate")
        obj = val
    try:
        return np.asarray(obj)
    except (TypeError, ValueError):
        raise ModelError(f"{path}: '{key}' is not an array") from None


def read_pickle(path: Path) -> dict:
    """The FLAME pickle's dict, with chumpy/scipy objects as stubs (see :func:`_to_array`)."""
    try:
        with open(path, "rb") as f:
            data = _Unpickler(f, encoding="latin1").load()
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError, IndexError) as e:
        raise ModelError(f"{path}: not a readable FLAME pickle ({e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a FLAME pickle holds a dict, got {type(data).__name__}")
    return data


def _pkl_path(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".pkl" else None
    if path.is_dir():
        for folder in (path, path / "flame", path / "FLAME2020", path / "FLAME2023"):
            if folder.is_dir():
                found = sorted(p for p in folder.iterdir() if p.is_file() and _NAME_RE.match(p.name))
                pref = [p for p in found if p.name == "generic_model.pkl"]
                if pref or found:
                    return (pref or found)[0]
    return None


def detect(path: Path) -> bool:
    pkl = _pkl_path(path)
    if pkl is None:
        return False
    try:
        with open(pkl, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return head[:1] == b"\x80" or head[:1] == b"(" or b"v_template" in head


def load(path: Path, n_shape: int = N_SHAPE) -> FaceModel:
    pkl = _pkl_path(path)
    if pkl is None:
        raise ModelError(f"{path}: no FLAME .pkl file found")
    d = read_pickle(pkl)
    for key in ("v_template", "shapedirs", "f"):
        if key not in d:
            raise ModelError(f"{pkl}: not a FLAME model (no '{key}')")
    vt = _to_array(d["v_template"], "v_template", pkl).astype(np.float64)
    sd = _to_array(d["shapedirs"], "shapedirs", pkl).astype(np.float64)
    f = _to_array(d["f"], "f", pkl).astype(np.int64)
    if vt.ndim != 2 or vt.shape[1] != 3:
        raise ModelError(f"{pkl}: v_template must be [V, 3], got {list(vt.shape)}")
    V = vt.shape[0]
    if sd.ndim != 3 or sd.shape[:2] != (V, 3):
        raise ModelError(f"{pkl}: shapedirs must be [{V}, 3, K], got {list(sd.shape)}")
    if f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= V:
        raise ModelError(f"{pkl}: f must be [F, 3] with vertex ids in 0..{V - 1}")
    K = sd.shape[2]
    ns = min(int(n_shape), K)
    basis = np.transpose(sd, (2, 0, 1)) * M_TO_MM  # [K, V, 3]
    kwargs: dict = {}
    tex = pkl.parent / TEXTURE_FILE
    uv_tris = None
    if tex.is_file():
        try:
            with np.load(tex, allow_pickle=False) as t:
                kwargs["uv"] = np.asarray(t["vt"], np.float64)
                uv_tris = np.asarray(t["ft"], np.int64)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ModelError(f"{tex}: cannot read FLAME texture coordinates ({e})") from None
        if uv_tris.shape != f.shape or uv_tris.min() < 0 or uv_tris.max() >= kwargs["uv"].shape[0]:
            raise ModelError(f"{tex}: ft must be [F, 3] matching f, with ids into vt")
    sidecar = apply_sidecar(pkl, V, kwargs)
    mean = vt * M_TO_MM
    tris, uv_tris = orient_front(mean, f, uv_tris)
    if uv_tris is not None:
        kwargs["uv_triangles"] = uv_tris
    info = ModelInfo(name="flame", source=SOURCE, licence=LICENCE, units_in_file="m", expression_prior="gaussian",
                     extra={"file": str(pkl), "landmark_sidecar": str(sidecar) if sidecar else ""})
    return FaceModel(mean=mean, id_basis=basis[:ns], exp_basis=basis[ns:], triangles=tris, info=info, **kwargs)


register("flame", detect, lambda p: load(p), "FLAME .pkl (read without chumpy)")
