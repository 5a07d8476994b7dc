"""2-D landmark targets and their model correspondences, including sliding jaw contours.

A target set of N points corresponds to weighted vertex combinations: ``ids [B, N, M]`` and ``w [B, N, M]``
(M = up to 6 vertices per point; e.g. a 5-point eye centre is the mean of the six eye-landmark vertices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from redafit.errors import LandmarkFileError
from redafit.landmarks.files import FIVE_FROM_68, inter_ocular
from redafit.model.face_model import FaceModel

JAW_RIGHT = list(range(0, 8))  # image-left side of the face (subject's right)
JAW_LEFT = list(range(9, 17))
# 5-point order: eye on the image's left, eye on the image's right, nose tip, mouth corner left, right.
FIVE_POINT_GROUPS = [list(g) for g in FIVE_FROM_68]


@dataclass
class LandmarkTargets:
    points: torch.Tensor  # [B, N, 2] pixels (NaN replaced by 0 where weight is 0)
    weight: torch.Tensor  # [B, N] 1 for known, 0 for unknown
    ids: torch.Tensor  # [B, N, M] vertex ids
    w: torch.Tensor  # [B, N, M] vertex weights (rows sum to 1 where used)
    scale: torch.Tensor  # [B] inter-ocular distance in pixels (loss normalisation)
    kind: str  # "68" or "5"

    def to(self, device):
        return LandmarkTargets(self.points.to(device), self.weight.to(device), self.ids.to(device),
                               self.w.to(device), self.scale.to(device), self.kind)


def build_targets(landmarks: list[np.ndarray], model: FaceModel) -> LandmarkTargets:
    """Targets for B images; each landmark array is [68, 2] or [5, 2] pixels with NaN rows = unknown."""
    kinds = {len(lm) for lm in landmarks}
    if not kinds <= {68, 5} or len(kinds) != 1:
        raise LandmarkFileError(f"landmarks: expected 68 or 5 points per image, got {sorted(kinds)}")
    n = kinds.pop()
    lid = model.landmark_ids.cpu().numpy()
    groups = [[i] for i in range(68)] if n == 68 else FIVE_POINT_GROUPS
    M = max(len(g) for g in groups)
    ids = np.zeros((n, M), np.int64)
    w = np.zeros((n, M), np.float32)
    usable = np.zeros(n, bool)
    for k, g in enumerate(groups):
        vs = [int(lid[i]) for i in g if lid[i] >= 0]
        if not vs and n == 68 and k in JAW_RIGHT + JAW_LEFT:
            cands = model.contour_right if k in JAW_RIGHT else model.contour_left
            vs = [int(cands[len(cands) // 2])] if len(cands) else []
        if vs:
            ids[k, : len(vs)] = vs
            w[k, : len(vs)] = 1.0 / len(vs)
            usable[k] = True
    pts, wt, scales = [], [], []
    for lm in landmarks:
        lm = np.asarray(lm, dtype=np.float32)
        known = np.isfinite(lm).all(1) & usable
        if known.sum() < 4:
            raise LandmarkFileError(f"landmarks: need at least 4 known points the model can use, got {known.sum()}")
        s = inter_ocular(lm)
        if not np.isfinite(s) or s < 2:
            raise LandmarkFileError("landmarks: the points are degenerate (eye distance < 2 px)")
        pts.append(np.where(known[:, None], lm, 0.0))
        wt.append(known.astype(np.float32))
        scales.append(s)
    B = len(landmarks)
    return LandmarkTargets(
        points=torch.tensor(np.stack(pts)), weight=torch.tensor(np.stack(wt)),
        ids=torch.tensor(ids)[None].repeat(B, 1, 1), w=torch.tensor(w)[None].repeat(B, 1, 1),
        scale=torch.tensor(scales, dtype=torch.float32), kind=str(n))


def gather_points(verts: torch.Tensor, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """verts [B, V, D], ids/w [B, N, M] -> weighted points [B, N, D]."""
    B, N, M = ids.shape
    g = torch.gather(verts, 1, ids.reshape(B, N * M, 1).expand(-1, -1, verts.shape[-1]))
    return (g.reshape(B, N, M, -1) * w[..., None]).sum(2)


SILHOUETTE_BAND_MM = 45.0  # jaw-outline search band around the model's contour candidates
SILHOUETTE_COS = 0.3  # a vertex is on the silhouette when |cos(normal, view ray)| is below this
_POOLS: dict = {}


def contour_pools(model: FaceModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per side, the vertices within :data:`SILHOUETTE_BAND_MM` of the jaw contour candidates (mean shape), and
    the mean shape's vertex normals [V, 3]: where the occluding outline of a turned head can run. Cached."""
    key = (id(model), model.n_vertices, str(model.mean.device))
    if key not in _POOLS:
        from scipy.spatial import cKDTree

        from redafit.render.shading import vertex_normals

        mean = model.mean.detach().cpu().numpy()
        tree = cKDTree(mean)
        pools = []
        for cands in (model.contour_right, model.contour_left):
            if cands.numel() == 0:
                pools.append(cands)
                continue
            near = tree.query_ball_point(mean[cands.cpu().numpy()], SILHOUETTE_BAND_MM)
            ids = sorted({int(i) for lst in near for i in lst} | set(cands.tolist()))
            pools.append(torch.as_tensor(ids, dtype=torch.long, device=model.mean.device))
        normals = vertex_normals(model.mean[None], model.triangles)[0]
        _POOLS[key] = (pools[0], pools[1], normals)
    return _POOLS[key]


@torch.no_grad()
def update_contour(targets: LandmarkTargets, ctx, model: FaceModel) -> None:
    """Slide jaw correspondences to the current occluding outline.

    Each jaw landmark (0-7, 9-16) takes the nearest projected vertex among its side's contour candidates and the
    vertices near them that lie on the current silhouette (normal perpendicular to the view ray, using the mean
    shape's normals rotated by the current pose). For a turned head the outline of the far cheek runs behind the
    jaw line; restricting it to fixed candidates would make the fit under-rotate. 68-point targets only.
    ``ctx`` is the :class:`~redafit.fit.fitter.FitContext` (its current geometry and camera).
    """
    if targets.kind != "68":
        return
    from redafit.fit.params import project_batch

    pool_r, pool_l, normals = contour_pools(model)
    B = targets.ids.shape[0]
    R = ctx.params.rotation().detach()  # [B, 3, 3]
    for idx, cands, pool in ((JAW_RIGHT, model.contour_right, pool_r), (JAW_LEFT, model.contour_left, pool_l)):
        if pool.numel() == 0:
            continue
        X = ctx.points_camera(pool[None].expand(B, -1))  # [B, P, 3]
        n = normals[pool][None] @ R.transpose(-1, -2)  # [B, P, 3]
        cos = (n * X).sum(-1).abs() / X.norm(dim=-1).clamp_min(1e-6)
        allowed = (cos < SILHOUETTE_COS) | torch.isin(pool, cands)[None]  # [B, P]
        cp = project_batch(X, ctx.cam)  # [B, P, 2]
        d = torch.cdist(targets.points[:, idx], cp)  # [B, 8, P]
        d = d.masked_fill(~allowed[:, None, :], float("inf"))
        best = pool[d.argmin(-1)]  # [B, 8]
        targets.ids[:, idx, 0] = best
        targets.w[:, idx, 0] = 1.0
        targets.w[:, idx, 1:] = 0.0
