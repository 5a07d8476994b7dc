"""Basel Face Model 2009 (``01_MorphableModel.mat``; registration required, non-commercial licence).

MATLAB file (read with ``scipy.io.loadmat``), N = 53490 vertices, 199 components:

==========  ===============  ==============================================================================
variable    shape            meaning
==========  ===============  ==============================================================================
shapeMU     [3N, 1]          mean shape, xyz interleaved, **micrometres**
shapePC     [3N, K]          orthonormal principal components
shapeEV     [K, 1]           standard deviations (BFM's own code draws ``mu + PC * (coef .* EV)``)
texMU       [3N, 1]          mean per-vertex colour, RGB in [0, 255]
texPC/EV    [3N, K], [K, 1]  colour components and standard deviations
tl          [F, 3]           triangles, **1-based** vertex ids
==========  ===============  ==============================================================================

Loaded as mm (x 1e-3), identity basis ``shapePC * shapeEV`` (weights ~ N(0, 1)), albedo in [0, 1] from the colour
model, no expression basis (BFM 2009 has none), no UVs. The model frame is y up with the face along +z;
triangle winding is made counter-clockwise seen from the front. The upstream files have no 68-point landmark
map: put a sidecar ``landmarks.txt`` (68 vertex ids, -1 = none) or ``landmarks.json`` next to the ``.mat``
(see :mod:`redafit.model.formats._common`); otherwise ``landmark_ids`` are all -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from redafit.errors import ModelError
from redafit.model.face_model import FaceModel, ModelInfo
from redafit.model.formats import register
from redafit.model.formats._common import apply_sidecar, orient_front

FILE_NAME = "01_MorphableModel.mat"
UM_TO_MM = 1e-3
LICENCE = ("Basel Face Model 2009: non-commercial research use only, registration required "
           "(faces.dmi.unibas.ch/bfm); no redistribution")
SOURCE = "https://faces.dmi.unibas.ch/bfm/ (Paysan et al., AVSS 2009)"
REQUIRED = ("shapeMU", "shapePC", "shapeEV", "tl")


def _mat_path(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".mat" else None
    if path.is_dir():
        for cand in (path / FILE_NAME, path / "PublicMM1" / FILE_NAME, path / "bfm2009" / FILE_NAME,
                     path / "bfm2009" / "PublicMM1" / FILE_NAME):
            if cand.is_file():
                return cand
    return None


def detect(path: Path) -> bool:
    mat = _mat_path(path)
    if mat is None:
        return False
    try:
        import scipy.io

        names = {n for n, _, _ in scipy.io.whosmat(str(mat))}
    except Exception:  # noqa: BLE001 - detection must never raise: not a readable v5 .mat means "not mine"
        return mat.name == FILE_NAME
    return "shapeMU" in names and "shapePC" in names


def load(path: Path) -> FaceModel:
    mat = _mat_path(path)
    if mat is None:
        raise ModelError(f"{path}: no {FILE_NAME} found")
    import scipy.io

    try:
        d = scipy.io.loadmat(str(mat))
    except NotImplementedError:
        raise ModelError(f"{mat}: MATLAB v7.3 files are not supported; re-save it with save(..., '-v7')") from None
    except (OSError, ValueError, TypeError) as e:
        raise ModelError(f"{mat}: cannot read the MATLAB file ({e})") from None
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ModelError(f"{mat}: not a Basel Face Model 2009 file (missing {', '.join(missing)})")
    mu = np.asarray(d["shapeMU"], np.float64).reshape(-1)
    if mu.size == 0 or mu.size % 3:
        raise ModelError(f"{mat}: shapeMU has {mu.size} values, not 3 per vertex")
    V = mu.size // 3
    pc = np.asarray(d["shapePC"], np.float64).reshape(3 * V, -1)
    ev = np.asarray(d["shapeEV"], np.float64).reshape(-1)
    if pc.shape[1] != ev.size:
        raise ModelError(f"{mat}: shapePC has {pc.shape[1]} components, shapeEV {ev.size}")
    tl = np.asarray(d["tl"], np.int64)
    if tl.ndim != 2 or 3 not in tl.shape:
        raise ModelError(f"{mat}: tl must be [F, 3], got {list(tl.shape)}")
    if tl.shape[1] != 3:
        tl = tl.T
    if tl.min() < 1 or tl.max() > V:
        raise ModelError(f"{mat}: tl must hold 1-based vertex ids in 1..{V}")
    tris = tl - 1
    mean = (mu * UM_TO_MM).reshape(V, 3)
    id_basis = (pc * (ev * UM_TO_MM)[None, :]).T.reshape(-1, V, 3)
    kwargs: dict = {}
    if "texMU" in d and np.asarray(d["texMU"]).size == 3 * V:
        kwargs["albedo_mean"] = np.asarray(d["texMU"], np.float64).reshape(V, 3) / 255.0
        if "texPC" in d and "texEV" in d:
            tpc = np.asarray(d["texPC"], np.float64).reshape(3 * V, -1)
            tev = np.asarray(d["texEV"], np.float64).reshape(-1)
            if tpc.shape[1] == tev.size:
                kwargs["albedo_basis"] = (tpc * (tev / 255.0)[None, :]).T.reshape(-1, V, 3)
    sidecar = apply_sidecar(mat, V, kwargs)
    tris, _ = orient_front(mean, tris)
    info = ModelInfo(name="bfm2009", source=SOURCE, licence=LICENCE, units_in_file="um", expression_prior="gaussian",
                     extra={"file": str(mat), "landmark_sidecar": str(sidecar) if sidecar else ""})
    return FaceModel(mean=mean, id_basis=id_basis, exp_basis=None, triangles=tris, info=info, **kwargs)


register("bfm2009", detect, load, "Basel Face Model 2009 (01_MorphableModel.mat)")
