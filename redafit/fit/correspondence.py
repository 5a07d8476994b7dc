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
    lid = default_landmark_vertices(model)
    groups = [[i] for i in range(68)] if n == 68 else FIVE_POINT_GROUPS
    M = max(len(g) for g in groups)
    ids = np.zeros((n, M), np.int64)
    w = np.zeros((n, M), np.float32)
    usable = np.zeros(n, bool)
    for k, g in enumerate(groups):
        vs = [int(lid[i]) for i in g if lid[i] >= 0]
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


# The 68-point annotation convention on a turned face (the jaw outline rule), shared by the fitter and every
# synthetic generator: on the side of the face turned away from the camera the jaw points 0-7 / 9-16 lie on the
# occluding outline - among the vertices at the height of the point's frontal jaw vertex (model frame,
# +-JAW_BAND_MM, within JAW_RADIUS_MM, same side of the face, inside the face area) the one projecting farthest
# outwards, the way annotators and detectors place them (and eos's contour landmarks); on the side facing the
# camera the jaw line itself is visible and the points stay on their fixed vertices. Nothing moves while the
# two sides face the camera about equally (mean cosine difference below MIN_TURN).
JAW_BAND_MM = 3.0
JAW_RADIUS_MM = 40.0
MIN_TURN = 0.05
JAW_POINTS = JAW_RIGHT + JAW_LEFT
_POOL_MARGIN_MM = 10.0  # the fitter's candidate pool reaches this far beyond JAW_RADIUS_MM (identity changes)
_POOLS: dict = {}


def default_landmark_vertices(model: FaceModel) -> np.ndarray:
    """[68] vertex id per landmark: ``landmark_ids``, with -1 jaw points taken evenly from the contour lists
    (ordered from the ear towards the chin); -1 where still unknown."""
    lid = model.landmark_ids.cpu().numpy().copy()
    cr, cl = model.contour_right.cpu().numpy(), model.contour_left.cpu().numpy()
    for k in range(8):
        if lid[k] < 0 and len(cr):
            lid[k] = cr[min(len(cr) - 1, round(k * len(cr) / 8))]
        if lid[16 - k] < 0 and len(cl):
            lid[16 - k] = cl[min(len(cl) - 1, round(k * len(cl) / 8))]
    return lid


def jaw_candidates(verts_model: torch.Tensor, p: torch.Tensor, allowed: torch.Tensor | None = None,
                   per_point: bool = True) -> torch.Tensor:
    """Candidate outline vertices of the jaw outline rule for jaw vertices p [R, 3] (model frame mm, one side of
    the face) among verts_model [P, 3]: on the same side (sign of x), within JAW_RADIUS_MM and JAW_BAND_MM of
    height, inside ``allowed`` [P] (the face area; None = everywhere). ``per_point``: a mask [R, P] per jaw
    vertex (its own height band and radius); otherwise one mask [P] for the side (the band spanning all of p,
    within the radius of any of them)."""
    y = verts_model[:, 1]
    dist = torch.cdist(p, verts_model)  # [R, P]
    if per_point:
        cand = ((y[None] - p[:, None, 1]).abs() <= JAW_BAND_MM) & (dist <= JAW_RADIUS_MM) \
            & (torch.sign(verts_model[None, :, 0]) == torch.sign(p[:, None, 0]))
        return cand & allowed[None] if allowed is not None else cand
    cand = (torch.sign(verts_model[:, 0]) == torch.sign(p[:, 0].mean())) \
        & (dist.min(0).values <= JAW_RADIUS_MM) \
        & (y >= p[:, 1].min() - JAW_BAND_MM) & (y <= p[:, 1].max() + JAW_BAND_MM)
    return cand & allowed if allowed is not None else cand


def outline_jaw_ids(verts_model: torch.Tensor, verts_cam: torch.Tensor, normals_cam: torch.Tensor,
                    uv: torch.Tensor, jaw: torch.Tensor, centre_u: float,
                    allowed: torch.Tensor | None = None, min_turn: float = MIN_TURN) -> tuple[torch.Tensor, str | None]:
    """The jaw outline rule for one view, over P vertices.

    verts_model / verts_cam / normals_cam [P, 3] (model frame mm, camera frame mm, camera-frame normals), uv [P, 2]
    projected pixels, jaw [16] indices into P of the fixed jaw vertices of points 0-7, 9-16 (-1 unknown),
    centre_u the mean projected u of the landmark vertices, allowed [P] bool (the face area) or None.
    Returns (indices [16] into P, "right" / "left" / None: the occluding side).
    """
    jaw = jaw.clone()
    known = jaw >= 0
    j = jaw.clamp_min(0)
    facing = (normals_cam[j] * -torch.nn.functional.normalize(verts_cam[j], dim=-1)).sum(-1)  # [16]
    score = {}
    for side, rows in (("right", slice(0, 8)), ("left", slice(8, 16))):
        k = known[rows]
        score[side] = float(facing[rows][k].mean()) if bool(k.any()) else 1.0
    if abs(score["right"] - score["left"]) < min_turn:
        return jaw, None
    side = min(score, key=score.get)
    rows = torch.arange(8, device=jaw.device) + (0 if side == "right" else 8)
    rows = rows[known[rows]]
    if len(rows) == 0:
        return jaw, side
    cand = jaw_candidates(verts_model, verts_model[jaw[rows]], allowed)  # [R, P]
    u = uv[:, 0]
    outward = u[jaw[rows]] < centre_u  # [R]: the outline runs towards smaller u
    s = torch.where(outward[:, None], -u[None], u[None]).masked_fill(~cand, float("-inf"))
    best = s.argmax(-1)
    has = cand.any(-1)
    jaw[rows[has]] = best[has]
    return jaw, side


def jaw_pool(model: FaceModel) -> dict:
    """The fitter's candidate vertices for the jaw outline rule (cached per model): ``ids`` [P] (global), ``jaw``
    [16] (indices into P, -1 unknown), the mean shape's ``normals`` [P, 3], ``allowed`` [P] (face area) and
    ``lid`` [68] (global default landmark vertices, -1 unknown)."""
    key = (id(model), model.n_vertices, str(model.mean.device))
    if key not in _POOLS:
        from scipy.spatial import cKDTree

        from redafit.render.shading import vertex_normals

        dev = model.mean.device
        lid = default_landmark_vertices(model)
        jaw_g = lid[JAW_POINTS]
        mean = model.mean.detach().cpu().numpy()
        ids = set(int(v) for v in jaw_g[jaw_g >= 0])
        if ids:
            near = cKDTree(mean).query_ball_point(mean[jaw_g[jaw_g >= 0]], JAW_RADIUS_MM + _POOL_MARGIN_MM)
            ids |= {int(i) for lst in near for i in lst}
        lines = [c.cpu().numpy() for c in (model.contour_right, model.contour_left)]
        ids |= {int(v) for c in lines for v in c}
        pool = np.array(sorted(ids), np.int64)
        pos = {int(v): k for k, v in enumerate(pool)}
        jaw = np.array([pos.get(int(v), -1) if v >= 0 else -1 for v in jaw_g], np.int64)
        try:
            from redafit.parsing.model_labels import vertex_face_area

            allowed = vertex_face_area(model).cpu().numpy()[pool]
        except Exception:  # noqa: BLE001 - models without the 68 landmark ids: no face-area restriction
            allowed = np.ones(len(pool), bool)
        pool_t = torch.as_tensor(pool, device=dev)
        normals = vertex_normals(model.mean[None].detach(), model.triangles)[0][pool_t]
        _POOLS[key] = {"ids": pool_t, "jaw": torch.as_tensor(jaw, device=dev), "normals": normals,
                       "lines": [torch.as_tensor([pos[int(v)] for v in c], dtype=torch.long, device=dev)
                                 for c in lines],
                       "allowed": torch.as_tensor(allowed, device=dev), "lid": torch.as_tensor(lid, device=dev)}
    return _POOLS[key]


def _outline(Xm: torch.Tensor, uv: torch.Tensor, pool: dict, half: slice, centre_u: float,
             step_mm: float = 2.0) -> torch.Tensor:
    """Indices into the pool of the occluding outline of one side: per ``step_mm`` of model-frame height between
    that side's jaw vertices, the allowed vertex projecting farthest outwards."""
    jaw = pool["jaw"][half]
    jaw = jaw[jaw >= 0]
    if jaw.numel() == 0:
        return jaw
    y = Xm[:, 1]
    idx = torch.nonzero(jaw_candidates(Xm, Xm[jaw], pool["allowed"], per_point=False))[:, 0]
    if idx.numel() == 0:
        return idx
    out = -uv[idx, 0] if float(uv[jaw, 0].mean()) < centre_u else uv[idx, 0]
    bins = torch.floor(y[idx] / step_mm).long()
    bins = bins - bins.min()
    best = torch.full((int(bins.max()) + 1,), float("-inf"), dtype=out.dtype, device=out.device)
    best = best.scatter_reduce(0, bins, out, reduce="amax")
    return torch.unique(idx[out >= best[bins]])


@torch.no_grad()
def update_contour(targets: LandmarkTargets, ctx, model: FaceModel) -> None:
    """Move the jaw correspondences by the jaw outline rule (see :data:`JAW_BAND_MM`) for the current geometry.

    The candidates are taken at the current shape's heights, so at the true parameters the correspondences are the
    annotated ones; the facing test uses the mean shape's normals rotated by the current pose. On a side that is
    not occluding, each point takes the nearest projected vertex of the model's jaw contour line (where the fixed
    jaw vertices lie): annotators space the points along the visible jaw line their own way. 68-point targets only.
    ``ctx`` is the :class:`~redafit.fit.fitter.FitContext` (its current geometry and camera).
    """
    if targets.kind != "68":
        return
    from redafit.fit.params import project_batch

    pool = jaw_pool(model)
    if pool["ids"].numel() == 0:
        return
    B = targets.ids.shape[0]
    R = ctx.params.rotation().detach()  # [B, 3, 3]
    t = ctx.params.trans.detach()
    X = ctx.points_camera(pool["ids"][None].expand(B, -1))  # [B, P, 3]
    Xm = (X - t[:, None]) @ R  # model frame
    n = pool["normals"][None] @ R.transpose(-1, -2)
    uv = project_batch(X, ctx.cam)
    lid = pool["lid"]
    lid_k = lid[lid >= 0]
    centre = project_batch(ctx.points_camera(lid_k[None].expand(B, -1)), ctx.cam)[..., 0].mean(-1)  # [B]
    rows = torch.as_tensor(JAW_POINTS, device=targets.ids.device)
    for b in range(B):
        local, side = outline_jaw_ids(Xm[b], X[b], n[b], uv[b], pool["jaw"], float(centre[b]), pool["allowed"])
        for name, half, line in (("right", slice(0, 8), pool["lines"][0]), ("left", slice(8, 16), pool["lines"][1])):
            if name == side:  # slide along the whole outline: the rule's vertices plus one per 2 mm of height
                line = torch.unique(torch.cat([local[half][local[half] >= 0],
                                               _outline(Xm[b], uv[b], pool, half, float(centre[b]))]))
            if line.numel() == 0:
                continue
            d = torch.cdist(targets.points[b, rows[half]], uv[b, line])  # [8, L]
            local[half] = torch.where(local[half] >= 0, line[d.argmin(-1)], local[half])
        ok = local >= 0
        targets.ids[b, rows[ok], 0] = pool["ids"][local[ok]]
        targets.w[b, rows[ok], 0] = 1.0
        targets.w[b, rows[ok], 1:] = 0.0
