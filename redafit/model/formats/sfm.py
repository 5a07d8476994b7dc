"""Surrey Face Model (SFM) from eos's binary files, parsed with numpy (no eos dependency).

Files (eos ``share/``; layout documented byte by byte in ``../shared/data/models/sfm/SOURCE.md``):

* ``sfm_shape_<N>.bin`` — cereal binary archive, little-endian: uint32 version (1 = shape, colour, texture
  coordinates); then the shape PCA model (mean ``int32 rows, int32 cols, float32[rows*cols]``; orthonormal
  basis ``int32 rows, int32 cols, float32`` column-major; eigenvalues (variances) the same way; triangles
  ``uint64 n, int32[n*3]``), the colour PCA model (same layout, empty in the public model) and the texture
  coordinates ``uint64 n, float64[n*2]`` (one per vertex, v down from the top as in images).
* ``expression_blendshapes_<N>.bin`` — ``uint64 n``, then per blendshape ``uint64 len, name, int32 rows,
  int32 cols, float32[rows*cols]`` offsets (mm). Optional.
* ``ibug_to_sfm.txt`` — TOML, ``[landmark_mappings]`` 1-based iBUG index = 0-based vertex id. The contour
  points (iBUG 1-8, 10-17) are not mapped: their ``landmark_ids`` stay -1. Optional.
* ``sfm_model_contours.json`` — ``model_contour.right_contour`` / ``left_contour`` vertex ids. Optional.

Geometry is in millimetres already (y up, face along +z). The identity basis is eos's rescaled basis
(orthonormal basis x sqrt(eigenvalue)), so identity weights are N(0, 1). Blendshape weights are in [0, 1]
(``expression_prior = "unit"``). UVs are converted to v up (``v = 1 - v_file``) and ``uv_triangles = triangles``.
Load by folder or by the ``.bin`` path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import tomllib

from redafit.errors import ModelError
from redafit.model.face_model import FaceModel, ModelInfo
from redafit.model.formats import register
from redafit.model.formats._common import apply_sidecar, orient_front

LICENCE = ("non-commercial use only (Surrey Face Model, University of Surrey; "
           "commercial use and other resolutions: cvssp.org/facemodel)")
SOURCE = "https://github.com/patrikhuber/eos (share/sfm_shape_3448.bin; Huber et al., VISAPP 2016)"
_SHAPE_RE = re.compile(r"^sfm_shape_(\d+)\.bin$")


class _Reader:
    """Sequential little-endian reader over a bytes buffer with bounds checks."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        n = int(count) * dt.itemsize
        if count < 0 or self.pos + n > len(self.data):
            raise ModelError(f"{self.path}: truncated or malformed file (at byte {self.pos})")
        out = np.frombuffer(self.data, dtype=dt, count=int(count), offset=self.pos).copy()
        self.pos += n
        return out

    def scalar(self, dtype) -> int:
        return int(self.take(dtype, 1)[0])

    def matrix(self) -> np.ndarray:
        """An Eigen matrix: int32 rows, int32 cols, float32 values (column-major) -> [rows, cols]."""
        rows, cols = self.scalar("i4"), self.scalar("i4")
        if rows < 0 or cols < 0:
            raise ModelError(f"{self.path}: malformed matrix header")
        return self.take("f4", rows * cols).reshape(cols, rows).T

    def pca_model(self) -> dict:
        mean = self.matrix()
        basis = self.matrix()
        eig = self.matrix()
        n_tri = self.scalar("u8")
        if n_tri > len(self.data):
            raise ModelError(f"{self.path}: malformed triangle count")
        tris = self.take("i4", n_tri * 3).reshape(-1, 3)
        return {"mean": mean.reshape(-1), "basis": basis, "eigenvalues": eig.reshape(-1), "triangles": tris}


def read_shape_bin(path: Path) -> dict:
    """Parse ``sfm_shape_<N>.bin`` into numpy arrays (see the module docstring for the layout)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    r = _Reader(data, path)
    version = r.scalar("u4")
    if version != 1:
        raise ModelError(f"{path}: unsupported eos MorphableModel version {version} (this reader handles 1)")
    shape = r.pca_model()
    colour = r.pca_model()
    n_uv = r.scalar("u8")
    if n_uv > len(data):
        raise ModelError(f"{path}: malformed texture coordinate count")
    uv = r.take("f8", n_uv * 2).reshape(-1, 2)
    if r.pos != len(data):
        raise ModelError(f"{path}: {len(data) - r.pos} unexpected trailing bytes")
    n3 = shape["mean"].shape[0]
    if n3 == 0 or n3 % 3 or shape["basis"].shape[0] != n3 or shape["eigenvalues"].shape[0] != shape["basis"].shape[1]:
        raise ModelError(f"{path}: inconsistent shape model dimensions")
    return {"shape": shape, "colour": colour, "uv": uv}


def read_blendshapes(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse ``expression_blendshapes_<N>.bin`` -> (names, offsets [K, 3N] mm)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    r = _Reader(data, path)
    n = r.scalar("u8")
    if n > 10000:
        raise ModelError(f"{path}: malformed blendshape count {n}")
    names, offsets = [], []
    for _ in range(n):
        ln = r.scalar("u8")
        if ln > 4096:
            raise ModelError(f"{path}: malformed blendshape name length")
        names.append(r.take("u1", ln).tobytes().decode("utf-8", errors="replace"))
        offsets.append(r.matrix().reshape(-1))
    if r.pos != len(data):
        raise ModelError(f"{path}: {len(data) - r.pos} unexpected trailing bytes")
    return names, (np.stack(offsets) if offsets else np.zeros((0, 0), np.float32))


def read_ibug_mapping(path: Path, n_vertices: int) -> np.ndarray:
    """``ibug_to_sfm.txt`` (TOML) -> landmark_ids [68] (0-based vertex ids, -1 where unmapped)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ModelError(f"{path}: cannot parse the landmark mapping ({e})") from None
    ids = -np.ones(68, np.int64)
    for key, vid in doc.get("landmark_mappings", {}).items():
        try:
            k, vid = int(key), int(vid)
        except (TypeError, ValueError):
            raise ModelError(f"{path}: non-integer landmark mapping '{key} = {vid}'") from None
        if not 1 <= k <= 68 or not 0 <= vid < n_vertices:
            raise ModelError(f"{path}: landmark mapping '{k} = {vid}' out of range")
        ids[k - 1] = vid
    return ids


def read_contours(path: Path, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        doc = json.loads(path.read_text())["model_contour"]
        right = np.asarray(doc["right_contour"], np.int64)
        left = np.asarray(doc["left_contour"], np.int64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: cannot read the model contours ({e})") from None
    for a in (right, left):
        if a.size and (a.min() < 0 or a.max() >= n_vertices):
            raise ModelError(f"{path}: contour vertex ids out of range")
    return right, left


def _shape_bin(path: Path) -> Path | None:
    if path.is_file():
        return path if _SHAPE_RE.match(path.name) else None
    if path.is_dir():
        for folder in (path, path / "sfm", path / "share"):
            if folder.is_dir():
                found = sorted(p for p in folder.iterdir() if _SHAPE_RE.match(p.name))
                if found:
                    return found[0]
    return None


def detect(path: Path) -> bool:
    return _shape_bin(path) is not None


def load(path: Path) -> FaceModel:
    shape_path = _shape_bin(path)
    if shape_path is None:
        raise ModelError(f"{path}: no sfm_shape_<N>.bin (eos Surrey Face Model) found")
    folder = shape_path.parent
    res = _SHAPE_RE.match(shape_path.name).group(1)
    m = read_shape_bin(shape_path)
    sh = m["shape"]
    V = sh["mean"].shape[0] // 3
    mean = sh["mean"].reshape(V, 3)
    eig = sh["eigenvalues"].astype(np.float64)
    if (eig < 0).any():
        raise ModelError(f"{shape_path}: negative eigenvalues")
    id_basis = (sh["basis"] * np.sqrt(eig)[None, :]).T.reshape(-1, V, 3)  # [K, V, 3], weights ~ N(0, 1)
    tris = sh["triangles"].astype(np.int64)
    uv = m["uv"]
    if uv.shape[0] not in (0, V):
        raise ModelError(f"{shape_path}: {uv.shape[0]} texture coordinates for {V} vertices")
    uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1) if uv.shape[0] else None  # v down -> v up

    kwargs: dict = {}
    exp_names: list[str] = []
    exp_basis = None
    bs_path = folder / f"expression_blendshapes_{res}.bin"
    if bs_path.is_file():
        exp_names, offs = read_blendshapes(bs_path)
        if offs.shape[0] and offs.shape[1] != 3 * V:
            raise ModelError(f"{bs_path}: blendshapes have {offs.shape[1] // 3} vertices, the model {V}")
        exp_basis = offs.reshape(-1, V, 3)
    map_path = folder / "ibug_to_sfm.txt"
    if map_path.is_file():
        kwargs["landmark_ids"] = read_ibug_mapping(map_path, V)
    cont_path = folder / "sfm_model_contours.json"
    if cont_path.is_file():
        kwargs["contour_right"], kwargs["contour_left"] = read_contours(cont_path, V)
    col = m["colour"]
    if col["mean"].shape[0] == 3 * V:  # a full (non-public) SFM with a colour model: RGB in [0, 1]
        kwargs["albedo_mean"] = col["mean"].reshape(V, 3)
        ceig = np.sqrt(np.clip(col["eigenvalues"].astype(np.float64), 0, None))
        kwargs["albedo_basis"] = (col["basis"] * ceig[None, :]).T.reshape(-1, V, 3)
    sidecar = apply_sidecar(shape_path, V, kwargs)
    tris_o, _ = orient_front(mean, tris)
    readme = folder / "eos_share_readme.txt"
    info = ModelInfo(name="sfm", source=SOURCE, licence=LICENCE, units_in_file="mm", expression_prior="unit",
                     extra={"file": str(shape_path), "resolution": int(res),
                            "readme": str(readme) if readme.is_file() else "",
                            "landmark_sidecar": str(sidecar) if sidecar else "",
                            "colour_model": bool(m["colour"]["mean"].size)})
    return FaceModel(mean=mean, id_basis=id_basis, exp_basis=exp_basis, expression_names=exp_names,
                     triangles=tris_o, uv=uv, uv_triangles=tris_o if uv is not None else None, info=info, **kwargs)


register("sfm", detect, load, "Surrey Face Model, eos binary files (sfm_shape_<N>.bin + files beside it)")
