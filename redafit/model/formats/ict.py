"""ICT Face Model (ICT-FaceKit "FaceXModel", MIT licence): the face-area npz and the upstream OBJ layout.

Two layouts are read:

* ``ict_face.npz`` (face area, **centimetres**; keys documented in ``../shared/data/models/ict-face/SOURCE.md``):
  ``neutral [V,3]``, ``identity_basis [100,V,3]`` (weights ~ N(0, 1)), ``expression_basis [53,V,3]`` (ARKit-style
  blendshapes, weights in [0, 1]), ``expression_names``, ``triangles``, ``uv``, ``uv_triangles``,
  ``landmarks_multipie68``, ``jawline_right/left`` and ``jawline_*_extended``.
* the upstream per-shape OBJ layout (:func:`convert_obj_dir`): ``generic_neutral_mesh.obj``, ``identityNNN.obj``
  (each a full mesh = neutral + one mode), one OBJ per expression named in ``vertex_indices.json``; 26719
  vertices in quads. The converter keeps the face area (vertices [0:9409]; the polygons that only use those)
  and splits each quad (a, b, c, d) into (a, b, c), (a, c, d), like the npz.

Both give millimetres, y up, the face looking along +z. Landmarks: the 68-point Multi-PIE markup, with the jaw
points 0-7 / 9-16 replaced by the model's jawline substitutes; ``contour_right/left`` are the extended jawline
candidates (right = the subject's right = image left = model -x).
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from redafit.errors import ModelError
from redafit.model.face_model import FaceModel, ModelInfo
from redafit.model.formats import _ict_landmarks as L
from redafit.model.formats import register
from redafit.model.formats._common import read_licence

log = logging.getLogger("redafit")

NPZ_NAME = "ict_face.npz"
NEUTRAL_OBJ = "generic_neutral_mesh.obj"
INDEX_JSON = "vertex_indices.json"
N_FACE_VERTICES = 9409  # upstream "Face" geometry: vertices [0:9408]
N_IDENTITY = 100
CM_TO_MM = 10.0
LICENCE = "MIT (ICT-FaceKit, USC Institute for Creative Technologies)"
SOURCE = "https://github.com/ICT-VGL/ICT-FaceKit (FaceXModel)"


# -- landmarks -----------------------------------------------------------------------------------------------------
def landmark_layout(multipie68, jaw_right, jaw_left, jaw_right_ext, jaw_left_ext) -> dict:
    """FaceModel landmark kwargs: Multi-PIE ids with the jaw points replaced by the jawline substitutes."""
    lm = np.asarray(multipie68, dtype=np.int64).copy()
    jr, jl = np.asarray(jaw_right, np.int64), np.asarray(jaw_left, np.int64)
    if lm.shape != (68,) or jr.shape != (8,) or jl.shape != (8,):
        raise ModelError("ICT model: expected 68 landmark ids and 8 jawline ids per side")
    lm[0:8] = jr  # subject's right, from the ear down to the chin; point 8 (chin) stays
    lm[9:17] = jl  # subject's left, from the chin up to the ear
    return {"landmark_ids": lm, "contour_right": np.asarray(jaw_right_ext, np.int64),
            "contour_left": np.asarray(jaw_left_ext, np.int64)}


# -- the npz -------------------------------------------------------------------------------------------------------
def _npz_path(path: Path) -> Path | None:
    if path.is_file() and path.suffix.lower() == ".npz":
        return path
    if path.is_dir():
        for cand in (path / NPZ_NAME, path / "ict-face" / NPZ_NAME):
            if cand.is_file():
                return cand
    return None


def _is_ict_npz(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"neutral", "identity_basis", "landmarks_multipie68"} <= set(z.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


def load_npz(path: Path) -> FaceModel:
    """Load the face-area ``ict_face.npz`` (cm) as a FaceModel in mm."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{path}: cannot read ICT model ({e})") from None
    with z:
        try:
            units = str(z["units"]) if "units" in z.files else "cm"
            scale = {"cm": CM_TO_MM, "mm": 1.0, "m": 1000.0}.get(units)
            if scale is None:
                raise ModelError(f"{path}: unknown units '{units}'")
            lms = landmark_layout(z["landmarks_multipie68"], z["jawline_right"], z["jawline_left"],
                                  z["jawline_right_extended"], z["jawline_left_extended"])
            info = ModelInfo(name="ict", source=SOURCE, licence=LICENCE, units_in_file=units,
                             expression_prior="unit",
                             extra={"file": str(path), "licence_text": read_licence(path.parent / "LICENSE")})
            return FaceModel(
                mean=z["neutral"].astype(np.float32) * np.float32(scale),
                id_basis=z["identity_basis"].astype(np.float32) * np.float32(scale),
                exp_basis=z["expression_basis"].astype(np.float32) * np.float32(scale),
                expression_names=[str(n) for n in z["expression_names"]],
                triangles=z["triangles"], uv=z["uv"], uv_triangles=z["uv_triangles"], info=info, **lms,
            )
        except KeyError as e:
            raise ModelError(f"{path}: ICT model file lacks the array {e}") from None
        except (ValueError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise ModelError(f"{path}: corrupt ICT model file ({e})") from None


# -- the upstream OBJ layout ---------------------------------------------------------------------------------------
def _obj_dir(path: Path) -> Path | None:
    """The folder holding ``generic_neutral_mesh.obj`` for a path into an upstream layout (or None)."""
    if path.is_file() and path.name == NEUTRAL_OBJ:
        return path.parent
    if path.is_dir():
        for cand in (path, path / "raw", path / "FaceXModel", path / "ict-face" / "raw",
                     path / "ICT-FaceKit" / "FaceXModel"):
            if (cand / NEUTRAL_OBJ).is_file():
                return cand
    return None


def read_obj_vertices(path: Path) -> np.ndarray:
    """The ``v`` lines of an OBJ as float64 [V, 3] (extra per-vertex values such as colours are ignored)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    rows = [line.split()[1:4] for line in data.splitlines() if line.startswith(b"v ")]
    try:
        v = np.array(rows, dtype=np.float64)
    except ValueError:
        raise ModelError(f"{path}: malformed vertex lines") from None
    if v.ndim != 2 or v.shape[1] != 3:
        raise ModelError(f"{path}: malformed vertex lines")
    return v


def read_obj_topology(path: Path):
    """Vertices [V,3], texture coordinates [T,2] and polygons (lists of 0-based vertex / vt ids) of an OBJ."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    v, vt, faces, ftex = [], [], [], []
    try:
        for line in data.splitlines():
            if line.startswith(b"v "):
                v.append(line.split()[1:4])
            elif line.startswith(b"vt "):
                vt.append(line.split()[1:3])
            elif line.startswith(b"f "):
                corners = [c.split(b"/") for c in line.split()[1:]]
                faces.append([int(c[0]) - 1 for c in corners])
                ftex.append([int(c[1]) - 1 if len(c) > 1 and c[1] else -1 for c in corners])
        return np.array(v, np.float64), np.array(vt, np.float64).reshape(-1, 2), faces, ftex
    except (ValueError, IndexError):
        raise ModelError(f"{path}: malformed OBJ") from None


def _triangulate(polys):
    """Fan-split polygons (a, b, c, d, ...) into (a, b, c), (a, c, d), ... (the split the face-area npz uses)."""
    return [[p[0], p[k], p[k + 1]] for p in polys for k in range(1, len(p) - 1)]


def convert_obj_dir(folder, n_face_vertices: int = N_FACE_VERTICES, require_complete: bool = False,
                    n_identity: int | None = None, expressions: list[str] | None = None) -> FaceModel:
    """Convert the upstream ICT-FaceKit OBJ layout in ``folder`` to a FaceModel (mm), face area only.

    ``folder`` holds ``generic_neutral_mesh.obj``, ``identity000.obj`` ... ``identity099.obj``, the expression OBJs
    and ``vertex_indices.json`` (its ``expressions`` list orders the expression basis). ``n_identity`` /
    ``expressions`` restrict what is read; shapes whose OBJ is missing are skipped with a warning, or raise
    :class:`ModelError` when ``require_complete`` (what ``redafit models install`` uses).
    """
    folder = Path(folder)
    neutral_path = folder / NEUTRAL_OBJ
    if not neutral_path.is_file():
        raise ModelError(f"{folder}: no {NEUTRAL_OBJ} (not an ICT-FaceKit FaceXModel folder)")
    names_all: list[str] = []
    index_path = folder / INDEX_JSON
    if index_path.is_file():
        try:
            names_all = list(json.loads(index_path.read_text())["expressions"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{index_path}: cannot read the expression list ({e})") from None
    elif require_complete:
        raise ModelError(f"{folder}: no {INDEX_JSON} (the expression list)")
    names = names_all if expressions is None else list(expressions)
    n_id = N_IDENTITY if n_identity is None else int(n_identity)
    id_files = [f"identity{k:03d}" for k in range(n_id)]
    missing = [f"{f}.obj" for f in id_files + names if not (folder / f"{f}.obj").is_file()]
    if missing and require_complete:  # check before the (slow) parsing
        raise ModelError(f"{folder}: {len(missing)} shape OBJs missing (e.g. {', '.join(missing[:3])}); "
                         "a complete ICT-FaceKit FaceXModel folder is needed")

    v, vt, polys, ptex = read_obj_topology(neutral_path)
    nv = int(n_face_vertices)
    if v.shape[0] < nv:
        raise ModelError(f"{neutral_path}: {v.shape[0]} vertices, expected at least {nv}")
    keep = [i for i, p in enumerate(polys) if max(p) < nv]
    if not keep:
        raise ModelError(f"{neutral_path}: no polygons inside the face area")
    tris = np.array(_triangulate([polys[i] for i in keep]), dtype=np.int64)
    uv_tris = np.array(_triangulate([ptex[i] for i in keep]), dtype=np.int64)
    if uv_tris.min() < 0:
        raise ModelError(f"{neutral_path}: face polygons without texture coordinates")
    uv = vt[: int(uv_tris.max()) + 1]

    neutral = v[:nv]

    def deltas(files):
        out, found = [], []
        for f in files:
            p = folder / f"{f}.obj"
            if not p.is_file():
                continue
            s = read_obj_vertices(p)
            if s.shape[0] < nv:
                raise ModelError(f"{p}: {s.shape[0]} vertices, expected at least {nv}")
            out.append(((s[:nv] - neutral) * CM_TO_MM).astype(np.float32))
            found.append(f)
        return (np.stack(out) if out else np.zeros((0, nv, 3), np.float32)), found

    id_basis, _ = deltas(id_files)
    exp_basis, exp_names = deltas(names)
    if missing:
        log.warning("%s: %d shape OBJs missing (e.g. %s); converting the %d identity and %d expression shapes "
                    "present", folder, len(missing), ", ".join(missing[:3]), id_basis.shape[0], exp_basis.shape[0])
    lms = landmark_layout(L.MULTIPIE68, L.JAWLINE_RIGHT, L.JAWLINE_LEFT, L.JAWLINE_RIGHT_EXTENDED,
                          L.JAWLINE_LEFT_EXTENDED)
    licence_text = read_licence(folder / "LICENSE", folder.parent / "LICENSE", folder.parent.parent / "LICENSE")
    info = ModelInfo(name="ict", source=SOURCE, licence=LICENCE, units_in_file="cm", expression_prior="unit",
                     extra={"file": str(folder), "converted_from": "upstream OBJ layout",
                            "licence_text": licence_text})
    return FaceModel(mean=(neutral * CM_TO_MM).astype(np.float32), id_basis=id_basis, exp_basis=exp_basis,
                     expression_names=exp_names, triangles=tris, uv=uv.astype(np.float32), uv_triangles=uv_tris,
                     info=info, **lms)


# -- registry ------------------------------------------------------------------------------------------------------
def detect(path: Path) -> bool:
    npz = _npz_path(path)
    if npz is not None and _is_ict_npz(npz):
        return True
    return _obj_dir(path) is not None


def load(path: Path) -> FaceModel:
    npz = _npz_path(path)
    if npz is not None:
        if not _is_ict_npz(npz):
            raise ModelError(f"{npz}: not an ICT face model npz (needs neutral, identity_basis, landmarks_multipie68)")
        return load_npz(npz)
    folder = _obj_dir(path)
    if folder is None:
        raise ModelError(f"{path}: neither {NPZ_NAME} nor an ICT-FaceKit OBJ folder ({NEUTRAL_OBJ})")
    return convert_obj_dir(folder)


register("ict", detect, load, "ICT Face Model: face-area ict_face.npz or the upstream ICT-FaceKit OBJ layout")
