"""Model-side face parsing: per-vertex region labels and a UV label map, derived from the 68 landmark vertices.

Any :class:`~redafit.model.FaceModel` with landmark vertex ids gets labels, with no per-model data:

1. The mean shape is projected frontally (orthographic along z; image-like frame x right, y down, so the
   subject's right eye - landmarks 36-41 - is on the left as in a photo) onto a grid of ``GRID_MM`` mm.
2. The region polygons of ``assets/regions.json`` are built from the projected landmark vertices, exactly as
   on an image, and rasterized onto that grid.
3. A frontal z-buffer (painter's order) tells which vertices are visible from the front. Visible vertices
   take the region under their projection; hidden vertices projecting into the mouth (the inner lip rolls and
   a mouth bag, which only show when the mouth opens) are mouth interior; every other vertex is skin, so
   each vertex has exactly one label.
4. The UV map rasterizes ``uv_triangles``; each texel takes the label of the triangle corner with the largest
   barycentric weight (so region borders run through triangles), and labels are padded a few texels into
   empty space so bilinear look-ups at chart borders stay clean.

Results are cached per model (:func:`redafit.model.face_model.derived_cache`: recomputed if its buffers change).
Jaw landmarks may be -1 (models whose jaw points slide along a contour): they are not needed for the
feature regions, and the face outline falls back to the contour candidates or the hull of known points.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from redafit.errors import ModelError
from redafit.model.face_model import derived_cache
from redafit.parsing.regions import (
    N_REGIONS,
    REGION_NAMES,
    fill_polygons,
    load_region_spec,
    paint_regions,
    region_polygons,
)

GRID_MM = 0.5  # frontal rasterization grid (mm per cell)
_VISIBLE_TOL_MM = 2.0  # a vertex within this depth of the frontal z-buffer is visible
_UV_PAD = 3  # texels of label padding around UV charts


def _paint_triangles(points: np.ndarray, tris: np.ndarray, shape: tuple[int, int], order=None) -> np.ndarray:
    """Triangle id [H, W] int32 (-1 empty) of 2D triangles (grid units, corner convention), drawn in ``order``
    (later wins)."""
    H, W = shape
    ids = np.full((H, W), -1, np.int32)
    shift = 4
    fixed = np.round((points - 0.5) * (1 << shift)).astype(np.int32)
    corners = fixed[tris]  # [F, 3, 2]
    for f in (order if order is not None else range(len(tris))):
        cv2.fillConvexPoly(ids, corners[f], int(f), lineType=cv2.LINE_8, shift=shift)
    return ids


def _barycentric(points: np.ndarray, tris: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric weights [N, 3] of the pixel centres covered by ``ids`` (and their flat indices)."""
    ys, xs = np.nonzero(ids >= 0)
    f = ids[ys, xs]
    p = np.stack([xs + 0.5, ys + 0.5], -1).astype(np.float64)
    a, b, c = (points[tris[f, k]] for k in range(3))
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    w = np.clip(np.stack([1 - w1 - w2, w1, w2], -1), 0.0, 1.0)  # pixels drawn just outside a triangle
    w /= np.maximum(w.sum(-1, keepdims=True), 1e-12)
    return w, (ys, xs)


def _frontal(model) -> tuple[np.ndarray, np.ndarray]:
    """Mean shape in the frontal grid: 2D [V, 2] (x right, y down; grid units) and depth [V] (mm, larger =
    nearer the viewer)."""
    v = model.mean.detach().cpu().double().numpy()
    p = np.stack([v[:, 0], -v[:, 1]], -1)
    p = (p - p.min(0)) / GRID_MM + 4.0  # 4 cells border
    return p, v[:, 2]


def _landmarks_2d(model, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projected landmarks [68, 2] (NaN where the model has no fixed vertex) and the projected jaw contour
    candidates [N, 2] (used for the face outline when jaw landmarks are missing)."""
    ids = model.landmark_ids.detach().cpu().numpy()
    lm = np.full((68, 2), np.nan)
    ok = ids >= 0
    lm[ok] = p[ids[ok]]
    cand = np.concatenate([model.contour_right.detach().cpu().numpy(), model.contour_left.detach().cpu().numpy()])
    return lm, p[cand.astype(np.int64)]


def _compute_vertex_labels(model) -> tuple[np.ndarray, np.ndarray]:
    lm_ids = model.landmark_ids.detach().cpu().numpy()
    if (lm_ids >= 0).sum() < 3:
        raise ModelError(f"model '{model.name}' has no landmark vertex ids; cannot derive region labels")
    spec = load_region_spec()
    p, z = _frontal(model)
    tris = model.triangles.detach().cpu().numpy()
    H, W = int(np.ceil(p[:, 1].max())) + 5, int(np.ceil(p[:, 0].max())) + 5
    lm, contour = _landmarks_2d(model, p)
    polys = region_polygons(lm, spec, extra_outline_points=contour)
    feat = paint_regions(polys, H, W, spec)  # [H, W] 1..6
    # frontal z-buffer, painter's order (far to near)
    order = np.argsort(z[tris].mean(1))
    ids = _paint_triangles(p, tris, (H, W), order)
    w, (ys, xs) = _barycentric(p, tris, ids)
    zbuf = np.full((H, W), -np.inf)
    zbuf[ys, xs] = (w * z[tris[ids[ys, xs]]]).sum(-1)
    # a vertex is visible if it is near the front surface anywhere in its 3x3 neighbourhood (sampling slack)
    # (the nearest-to-viewer-lowest depth among covered cells, so steep sides are not falsely hidden)
    zmin = -cv2.dilate(np.where(np.isfinite(zbuf), -zbuf, -1e9).astype(np.float32), np.ones((3, 3), np.uint8))
    col = np.clip(p[:, 0].astype(int), 0, W - 1)
    row = np.clip(p[:, 1].astype(int), 0, H - 1)
    visible = z >= zmin[row, col] - _VISIBLE_TOL_MM
    region = feat[row, col].astype(np.int64)
    index = np.where(visible, region, 0)
    mouth = fill_polygons(polys.regions.get("upper_lip", []) + polys.regions.get("lower_lip", []) +
                          polys.regions.get("mouth_interior", []), H, W)
    lip_front = np.nanmin(z[lm_ids[48:68][lm_ids[48:68] >= 0]]) if (lm_ids[48:68] >= 0).any() else np.inf
    hidden_mouth = ~visible & mouth[row, col] & (z < lip_front)
    index[hidden_mouth] = REGION_NAMES.index("mouth_interior")
    # face area: inside the face outline (jaw + raised forehead) seen from the front
    face = fill_polygons([polys.zone], H, W)[row, col]
    return index, face


def _vertex_index(model) -> tuple[np.ndarray, np.ndarray]:
    entry = derived_cache(model)
    if "index" not in entry:
        entry["index"], entry["face"] = _compute_vertex_labels(model)
    return entry["index"], entry["face"]


def vertex_labels(model) -> torch.Tensor:
    """Per-vertex one-hot region labels [V, 7] float32 on the model's device (channel order
    :data:`REGION_NAMES`); every vertex has exactly one label (skin where no feature region applies)."""
    index, _ = _vertex_index(model)
    out = torch.zeros(len(index), N_REGIONS, dtype=torch.float32)
    out[torch.arange(len(index)), torch.as_tensor(index)] = 1.0
    return out.to(model.mean.device)


def smooth_vertex_values(values: np.ndarray, tris: np.ndarray, iters: int) -> np.ndarray:
    """Average each vertex with its one-ring neighbours ``iters`` times (values [V, C]; uniform weights)."""
    import scipy.sparse as sp

    V = len(values)
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(V, V)).tocsr()
    A.data[:] = 1.0
    A = A + sp.identity(V, format="csr")
    deg = np.asarray(A.sum(1)).reshape(-1, 1)
    for _ in range(iters):
        values = (A @ values) / deg
    return values


def soft_vertex_labels(model, rings: int = 2) -> torch.Tensor:
    """:func:`vertex_labels` with region borders softened over about ``rings`` vertex rings [V, 7] float32
    (rows sum to 1): the blend weights of a region-wise albedo, whose colour changes across a border zone
    rather than at one edge."""
    entry = derived_cache(model)
    key = f"soft{int(rings)}"
    if key not in entry:
        index, _ = _vertex_index(model)
        w = np.zeros((len(index), N_REGIONS))
        w[np.arange(len(index)), index] = 1.0
        entry[key] = smooth_vertex_values(w, model.triangles.detach().cpu().numpy(), int(rings)).astype(np.float32)
    return torch.as_tensor(entry[key], device=model.mean.device)


def vertex_region_index(model) -> torch.Tensor:
    """Per-vertex region index [V] long (0 skin ... 6 mouth interior)."""
    index, _ = _vertex_index(model)
    return torch.as_tensor(index, dtype=torch.long, device=model.mean.device)


def vertex_face_area(model) -> torch.Tensor:
    """[V] bool: vertices whose frontal projection lies inside the face outline (jaw contour and the forehead
    line of ``assets/regions.json``) - the part of the model a face photo's skin mask can be compared with
    (ears, neck and the back of the head are outside)."""
    _, face = _vertex_index(model)
    return torch.as_tensor(face, dtype=torch.bool, device=model.mean.device)


def uv_label_map(model, size: int = 256) -> torch.Tensor:
    """UV label map [size, size, 7] float32 (one-hot; zero outside the UV charts and their padding).

    Texel (i, j) covers u in [j, j+1] / size and v in [1 - (i+1) / size, 1 - i / size] (row 0 is v = 1,
    the OBJ/texture convention of :func:`redafit.render.texture`).
    """
    if not model.has_uv:
        raise ModelError(f"model '{model.name}' has no UV coordinates; use vertex_labels instead")
    size = int(size)
    if size < 8:
        raise ModelError(f"uv label map size must be at least 8, got {size}")
    entry = derived_cache(model)
    key = ("uv", size)
    if key not in entry:
        index, _ = _vertex_index(model)
        uv = model.uv.detach().cpu().double().numpy()
        uv_tris = model.uv_triangles.detach().cpu().numpy()
        tris = model.triangles.detach().cpu().numpy()
        pts = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1)
        ids = _paint_triangles(pts, uv_tris, (size, size))
        w, (ys, xs) = _barycentric(pts, uv_tris, ids)
        f = ids[ys, xs]
        corner = w.argmax(-1)
        lab = np.full((size, size), -1, np.int64)
        lab[ys, xs] = index[tris[f, corner]]
        lab = _pad_labels(lab, _UV_PAD)
        out = np.zeros((size, size, N_REGIONS), np.float32)
        m = lab >= 0
        out[m, lab[m]] = 1.0
        entry[key] = torch.from_numpy(out)
    return entry[key].to(model.mean.device)


def _pad_labels(lab: np.ndarray, iterations: int) -> np.ndarray:
    """Grow labels (-1 = empty) into empty texels, one ring per iteration (nearest label by dilation)."""
    for _ in range(iterations):
        empty = lab < 0
        if not empty.any():
            break
        grown = cv2.dilate((lab + 1).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.int64) - 1
        lab = np.where(empty, grown, lab)
    return lab


__all__ = ["GRID_MM", "uv_label_map", "vertex_face_area", "vertex_labels", "vertex_region_index"]
