"""Basel Face Model 2017 / 2019 (statismo HDF5 ``.h5``; registration required, non-commercial licence).

Groups read (N vertices, F triangles; statismo layout):

==================================  ===========  ===================================================
dataset                             shape        meaning
==================================  ===========  ===================================================
shape/model/mean                    [3N]         mean shape, xyz interleaved, **millimetres**
shape/model/pcaBasis                [3N, K]      orthonormal basis
shape/model/pcaVariance             [K]          variances (basis is scaled by their square root)
shape/representer/cells             [3, F]       triangles, 0-based (``[F, 3]`` also accepted)
expression/model/{mean,pcaBasis,pcaVariance}     expression model; its mean is an offset added to
                                                 the shape mean (optional group)
color/model/{mean,pcaBasis,pcaVariance}          per-vertex RGB in [0, 1] (optional group)
==================================  ===========  ===================================================

Loaded as mm, identity and expression weights ~ N(0, 1) (``expression_prior = "gaussian"``), albedo from the
colour model, no UVs. Needs h5py (``pip install "redafit[h5]"``). No 68-point landmark map ships with the
model: add a sidecar ``landmarks.txt`` / ``landmarks.json`` next to the file (see
:mod:`redafit.model.formats._common`); otherwise ``landmark_ids`` are all -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from redafit.errors import DependencyError, ModelError
from redafit.model.face_model import FaceModel, ModelInfo
from redafit.model.formats import register
from redafit.model.formats._common import apply_sidecar, orient_front

LICENCE = ("Basel Face Model 2017/2019: non-commercial research use only, registration required "
           "(faces.dmi.unibas.ch/bfm/bfm2017.html); no redistribution")
SOURCE = "https://faces.dmi.unibas.ch/bfm/bfm2017.html (Gerig et al., FG 2018)"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _h5_path(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in (".h5", ".hdf5") else None
    if path.is_dir():
        for folder in (path, path / "bfm2017", path / "bfm2019"):
            if folder.is_dir():
                found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".h5" and p.is_file())
                pref = [p for p in found if p.name.startswith("model2017") or p.name.startswith("model2019")]
                if pref or found:
                    return (pref or found)[0]
    return None


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DependencyError('reading Basel Face Model .h5 files needs h5py: pip install "redafit[h5]"') from None
    return h5py


def detect(path: Path) -> bool:
    h5 = _h5_path(path)
    if h5 is None:
        return False
    try:
        with open(h5, "rb") as f:
            if f.read(8) != _HDF5_MAGIC:
                return False
    except OSError:
        return False
    try:
        h5py = _h5py()
    except DependencyError:
        return True  # looks like our format; load() then says how to get h5py
    try:
        with h5py.File(h5, "r") as f:
            return "shape/model/mean" in f
    except Exception:  # noqa: BLE001 - detection must never raise
        return False


def _pca(f, group: str, path: Path):
    """mean [3N], scaled basis [K, 3N] (basis * sqrt(variance)) of a statismo model group, or None."""
    if f"{group}/model/mean" not in f:
        return None
    try:
        mean = np.asarray(f[f"{group}/model/mean"][()], np.float64).reshape(-1)
        basis = np.asarray(f[f"{group}/model/pcaBasis"][()], np.float64)
        var = np.asarray(f[f"{group}/model/pcaVariance"][()], np.float64).reshape(-1)
    except KeyError as e:
        raise ModelError(f"{path}: incomplete '{group}' model ({e})") from None
    if basis.ndim != 2:
        raise ModelError(f"{path}: {group}/model/pcaBasis must be 2-D")
    if basis.shape[0] != mean.size and basis.shape[1] == mean.size:
        basis = basis.T
    if basis.shape != (mean.size, var.size):
        raise ModelError(f"{path}: {group} model: basis {list(basis.shape)} does not match mean {mean.size} "
                         f"and variances {var.size}")
    if (var < 0).any():
        raise ModelError(f"{path}: {group} model has negative variances")
    return mean, (basis * np.sqrt(var)[None, :]).T


def load(path: Path) -> FaceModel:
    h5 = _h5_path(path)
    if h5 is None:
        raise ModelError(f"{path}: no Basel Face Model .h5 file found")
    h5py = _h5py()
    try:
        f = h5py.File(h5, "r")
    except OSError as e:
        raise ModelError(f"{h5}: cannot read the HDF5 file ({e})") from None
    with f:
        shape = _pca(f, "shape", h5)
        if shape is None:
            raise ModelError(f"{h5}: not a Basel Face Model 2017 file (no shape/model/mean)")
        mu, id_basis = shape
        if mu.size % 3:
            raise ModelError(f"{h5}: shape mean has {mu.size} values, not 3 per vertex")
        V = mu.size // 3
        if "shape/representer/cells" not in f:
            raise ModelError(f"{h5}: no shape/representer/cells (triangles)")
        cells = np.asarray(f["shape/representer/cells"][()], np.int64)
        exp = _pca(f, "expression", h5)
        col = _pca(f, "color", h5)
    if cells.ndim != 2 or 3 not in cells.shape:
        raise ModelError(f"{h5}: cells must be [3, F], got {list(cells.shape)}")
    tris = cells.T if cells.shape[0] == 3 and cells.shape[1] != 3 else cells
    if tris.min() < 0 or tris.max() >= V:
        raise ModelError(f"{h5}: triangle ids outside 0..{V - 1}")
    mean = mu.reshape(V, 3)
    kwargs: dict = {}
    exp_basis = None
    if exp is not None:
        emu, exp_basis = exp
        if emu.size != 3 * V:
            raise ModelError(f"{h5}: expression model has {emu.size // 3} vertices, the shape model {V}")
        emu = emu.reshape(V, 3)
        # The expression mean is an offset from the neutral mean; guard against a file storing a full mesh.
        if np.linalg.norm(emu) > 0.5 * np.linalg.norm(mean - mean.mean(0)):
            emu = emu - mean
        mean = mean + emu
        exp_basis = exp_basis.reshape(-1, V, 3)
    if col is not None and col[0].size == 3 * V:
        kwargs["albedo_mean"] = col[0].reshape(V, 3)
        kwargs["albedo_basis"] = col[1].reshape(-1, V, 3)
    sidecar = apply_sidecar(h5, V, kwargs)
    tris, _ = orient_front(mean, tris)
    info = ModelInfo(name="bfm2017", source=SOURCE, licence=LICENCE, units_in_file="mm", expression_prior="gaussian",
                     extra={"file": str(h5), "landmark_sidecar": str(sidecar) if sidecar else ""})
    return FaceModel(mean=mean, id_basis=id_basis.reshape(-1, V, 3), exp_basis=exp_basis,
                     expression_names=None, triangles=tris, info=info, **kwargs)


register("bfm2017", detect, load, "Basel Face Model 2017/2019 (statismo .h5; needs h5py)")
