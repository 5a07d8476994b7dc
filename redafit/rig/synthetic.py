"""Synthetic multi-view sets and sequences of one identity (for the rig benchmark, tests and the init network).

:func:`render_multiview` draws one identity and ``n`` views with their own expression, pose and lighting and
renders them like :mod:`redafit.eval.synthetic` (whose scene pieces it reuses: albedo, background, SH lighting,
occluding-contour jaw landmarks); :func:`render_sequence` renders a smooth head turn with a changing expression
(a synthetic "video"). :class:`LandmarkSampler` only projects landmarks (no rendering), batched in torch, which
is what the init network trains on.

Shapes: N views, V vertices, Ki identity and Ke expression modes, S sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from redafit.render.camera import Intrinsics, euler_to_r, pose_rotation


@dataclass
class MultiViewSet:
    """One identity seen in N images, with exact ground truth."""

    images: list  # N x [H, W, 3] float32 RGB in [0, 1]
    landmarks: list  # N x [68, 2] px
    intrinsics: list  # N x Intrinsics
    identity: np.ndarray  # [Ki]
    expressions: np.ndarray  # [N, Ke]
    euler_deg: np.ndarray  # [N, 3] yaw, pitch, roll
    neutral: np.ndarray  # [V, 3] mm, ground-truth neutral shape (identity, expression 0)
    vertices_model: list = field(default_factory=list)  # N x [V, 3] mm (identity + expression)


def sample_expression(model, rng: np.random.Generator, max_active: int = 3, strength: float = 0.8) -> np.ndarray:
    """Expression coefficients [Ke] from the model's prior: ``unit`` models get 0..max_active blendshapes with
    weights in [0, strength]; ``gaussian`` models N(0, 0.5 * strength) per mode."""
    beta = np.zeros(model.n_exp)
    if model.n_exp == 0:
        return beta
    if model.info.expression_prior == "unit":
        k = int(rng.integers(0, max_active + 1))
        idx = rng.choice(model.n_exp, size=min(k, model.n_exp), replace=False)
        beta[idx] = rng.uniform(0, strength, len(idx))
    else:
        beta = rng.normal(0, 0.5 * strength, model.n_exp)
    return beta


def _camera_pose(model, vm: np.ndarray, euler, K: Intrinsics, fill: float, offset=(0.0, 0.0)):
    """R [3, 3], t [3] placing the face (jaw width = ``fill`` x image width) at the image centre + offset."""
    from redafit.fit.correspondence import default_landmark_vertices

    lid = default_landmark_vertices(model)
    R = pose_rotation(euler_to_r(*euler, dtype=torch.float64)[None])[0].numpy()
    known = lid >= 0
    jaw_w = float(np.linalg.norm(vm[lid[0]] - vm[lid[16]])) if known[0] and known[16] else float(np.ptp(vm[:, 0]))
    z = K.fx * jaw_w / (fill * K.width)
    c = vm[lid[known]].mean(0)
    off = np.asarray(offset) * K.width
    t = np.array([off[0] * z / K.fx, off[1] * z / K.fy, z]) - R @ c
    return R, t


def render_view(model, vm: np.ndarray, euler, size: int, rng: np.random.Generator, albedo: np.ndarray,
                fill: float = 0.5, offset=(0.0, 0.0), sh: np.ndarray | None = None, bg: np.ndarray | None = None,
                supersample: int = 2, noise: float = 0.01, backend: str = "auto"):
    """Render model-frame vertices ``vm`` [V, 3] at pose ``euler`` (deg). Returns (image, landmarks [68, 2], K)."""
    from redafit.eval.synthetic import background, random_sh, view_landmark_ids
    from redafit.render import interpolate, rasterize
    from redafit.render.camera import project, to_clip
    from redafit.render.shading import shade, vertex_normals

    W = H = int(size)
    K = Intrinsics.default(W, H)
    R, t = _camera_pose(model, vm, euler, K, fill, offset)
    vc = vm @ R.T + t
    tris_t = model.triangles.cpu()
    vc_t = torch.tensor(vc, dtype=torch.float32)[None]
    uv = project(vc_t, K)[0].double().numpy()
    sh = random_sh(rng) if sh is None else sh
    s = max(1, int(supersample))
    K2 = K.scaled(W * s, H * s)
    frags = rasterize(to_clip(vc_t, K2), tris_t, (H * s, W * s), backend=backend)
    colour = shade(torch.tensor(albedo, dtype=torch.float32)[None], vertex_normals(vc_t, tris_t),
                   torch.as_tensor(sh, dtype=torch.float32)[None])
    img = interpolate(colour, frags, tris_t)[0].clamp(0, 1).cpu().numpy()
    mask = (frags.tri_id[0] >= 0).cpu().numpy()[..., None]
    back = background(rng, H * s, W * s) if bg is None else bg
    img = np.where(mask, img, back)
    if s > 1:
        import cv2

        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    img = img + rng.normal(0, noise, img.shape)
    img = ((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).astype(np.float32) / 255.0)
    ids, _ = view_landmark_ids(model, vm, vc, uv)
    lm = np.where((ids >= 0)[:, None], uv[np.clip(ids, 0, None)], np.nan)
    return img.astype(np.float32), lm.astype(np.float32), K


def _shape(model, identity: np.ndarray, expression: np.ndarray | None) -> np.ndarray:
    with torch.no_grad():
        dev = model.mean.device
        e = None if expression is None else torch.tensor(expression, dtype=torch.float32, device=dev)[None]
        v = model(torch.tensor(identity, dtype=torch.float32, device=dev)[None], e)
    return v[0].cpu().double().numpy()


def render_multiview(model, n_views: int = 5, seed: int = 0, index: int = 0, size: int = 256,
                     yaw: float = 45.0, pitch: float = 15.0, roll: float = 8.0, id_scale: float = 1.0,
                     landmark_noise: float = 0.0, render: bool = True) -> MultiViewSet:
    """One identity, ``n_views`` views (yaws spread over ±``yaw``, each with its own expression, pitch, roll and
    lighting); deterministic in (seed, index). ``render=False`` skips the images (grey placeholders) and only
    projects the landmarks (fast)."""
    from redafit.eval.synthetic import skin_albedo

    rng = np.random.default_rng([int(seed), int(index), 7])
    alpha = rng.normal(0, 1, model.n_id) * id_scale
    albedo, _ = skin_albedo(model, rng)
    # stratified yaws so the views cover the range
    edges = np.linspace(-yaw, yaw, n_views + 1)
    yaws = rng.uniform(edges[:-1], edges[1:])
    rng.shuffle(yaws)
    neutral = _shape(model, alpha, None)
    views = []
    for k in range(n_views):
        beta = sample_expression(model, rng)
        euler = (float(yaws[k]), float(rng.uniform(-pitch, pitch)), float(rng.uniform(-roll, roll)))
        vm = _shape(model, alpha, beta)
        fill = float(0.5 * rng.uniform(0.85, 1.15))
        off = rng.uniform(-0.05, 0.05, 2)
        if render:
            img, lm, K = render_view(model, vm, euler, size, rng, albedo, fill=fill, offset=off)
        else:
            img, lm, K = _project_only(model, vm, euler, size, fill, off)
        if landmark_noise > 0:
            lm = lm + rng.normal(0, landmark_noise, lm.shape).astype(np.float32)
        views.append((img, lm, K, beta, euler, vm))
    return _view_set(views, alpha, neutral)


def _view_set(views: list, identity: np.ndarray, neutral: np.ndarray) -> MultiViewSet:
    """The set of ``views``: (image, landmarks, intrinsics, expression, euler, model-frame vertices) each."""
    images, lms, Ks, exps, eulers, verts = (list(x) for x in zip(*views))
    return MultiViewSet(images, lms, Ks, identity, np.array(exps), np.array(eulers), neutral, verts)


def _project_only(model, vm, euler, size, fill, offset):
    from redafit.eval.synthetic import view_landmark_ids
    from redafit.render.camera import project

    K = Intrinsics.default(size, size)
    R, t = _camera_pose(model, vm, euler, K, fill, offset)
    vc = vm @ R.T + t
    uv = project(torch.tensor(vc, dtype=torch.float32)[None], K)[0].double().numpy()
    ids, _ = view_landmark_ids(model, vm, vc, uv)
    lm = np.where((ids >= 0)[:, None], uv[np.clip(ids, 0, None)], np.nan)
    return np.full((size, size, 3), 0.5, np.float32), lm.astype(np.float32), K


def render_sequence(model, n_frames: int = 24, seed: int = 0, size: int = 256, yaw: float = 40.0,
                    supersample: int = 1) -> MultiViewSet:
    """A synthetic video: one identity turning its head from -yaw to +yaw and back, opening the mouth and
    smiling over time; one background and one lighting for all frames."""
    from redafit.eval.synthetic import background, random_sh, skin_albedo

    rng = np.random.default_rng([int(seed), 99])
    alpha = rng.normal(0, 1, model.n_id)
    albedo, _ = skin_albedo(model, rng)
    sh = random_sh(rng)
    s = max(1, int(supersample))
    bg = background(rng, size * s, size * s)
    names = list(model.expression_names)
    drive = [names.index(n) for n in ("jawOpen", "mouthSmile_L", "mouthSmile_R") if n in names] or list(
        range(min(2, model.n_exp)))
    neutral = _shape(model, alpha, None)
    views = []
    for f in range(n_frames):
        phase = f / max(1, n_frames - 1)
        euler = (float(yaw * np.sin(2 * np.pi * phase)), 5.0 * float(np.sin(4 * np.pi * phase)), 0.0)
        beta = np.zeros(model.n_exp)
        if model.n_exp:
            beta[drive[0]] = 0.6 * max(0.0, np.sin(2 * np.pi * phase))
            for k in drive[1:]:
                beta[k] = 0.5 * max(0.0, -np.sin(2 * np.pi * phase))
        vm = _shape(model, alpha, beta)
        img, lm, K = render_view(model, vm, euler, size, rng, albedo, sh=sh, bg=bg, supersample=s, noise=0.005)
        views.append((img, lm, K, beta, euler, vm))
    return _view_set(views, alpha, neutral)


# ----------------------------------------------------------------------------------------------------------------
# landmark-only sampler (init-network training data)
# ----------------------------------------------------------------------------------------------------------------
class LandmarkSampler:
    """Projected 68 landmarks of random identities / expressions / poses, batched in torch (no rendering).

    The landmark vertices are the model's fixed ones; on the side of the face turned away from the camera the
    jaw points 0-7 / 9-16 move to the occluding outline - among candidate vertices near the frontal jaw vertex
    (same height ±3 mm, within 40 mm, same side; chosen on the mean shape, as :mod:`redafit.eval.synthetic`
    does per case) the one with the extreme projected x - the way detectors place them on turned faces.
    """

    def __init__(self, model, size: int = 256, yaw: float = 50.0, pitch: float = 20.0, roll: float = 12.0):
        from redafit.fit.correspondence import JAW_BAND_MM, JAW_RADIUS_MM, default_landmark_vertices

        self.model = model
        self.size, self.yaw, self.pitch, self.roll = size, yaw, pitch, roll
        lid = default_landmark_vertices(model)
        if (lid < 0).any():
            missing = int((lid < 0).sum())
            raise ValueError(f"model {model.name}: {missing} of the 68 landmarks have no vertex")
        mean = model.mean.detach().cpu().double().numpy()
        cands = []
        for i in list(range(8)) + list(range(9, 17)):
            p = mean[lid[i]]
            c = np.nonzero((np.abs(mean[:, 1] - p[1]) <= JAW_BAND_MM)
                           & (np.linalg.norm(mean - p, axis=1) <= JAW_RADIUS_MM)
                           & (np.sign(mean[:, 0]) == np.sign(p[0])))[0]
            cands.append(c if len(c) else np.array([lid[i]]))
        C = max(len(c) for c in cands)
        cand = np.stack([np.concatenate([c, np.full(C - len(c), c[0])]) for c in cands])  # [16, C]
        ids = np.unique(np.concatenate([lid, cand.reshape(-1)]))
        vmap = {int(v): k for k, v in enumerate(ids)}
        self.lid_sub = torch.tensor([vmap[int(v)] for v in lid])
        self.cand_sub = torch.tensor([[vmap[int(v)] for v in row] for row in cand])  # [16, C]
        self.jaw_pts = torch.tensor(list(range(8)) + list(range(9, 17)))
        idt = torch.as_tensor(ids)
        self.mean = model.mean.detach().cpu()[idt]  # [S, 3]
        self.id_basis = model.id_basis.detach().cpu()[:, idt]  # [Ki, S, 3]
        self.exp_basis = model.exp_basis.detach().cpu()[:, idt]
        self.unit = model.info.expression_prior == "unit"

    def sample(self, n_sets: int, n_views: int, generator: torch.Generator, noise_iod: float = 0.0) -> dict:
        """{"landmarks" [S, N, 68, 2] px, "identity" [S, Ki], "expression" [S, N, Ke], "euler" [S, N, 3] deg}."""
        g = generator
        S, N = n_sets, n_views
        Ki, Ke = self.id_basis.shape[0], self.exp_basis.shape[0]
        alpha = torch.randn(S, Ki, generator=g)
        if self.unit:
            k = torch.randint(0, 4, (S, N, 1), generator=g)
            scores = torch.rand(S, N, Ke, generator=g)
            rank = scores.argsort(-1).argsort(-1)
            beta = torch.rand(S, N, Ke, generator=g) * 0.9 * (rank < k)
        else:
            beta = torch.randn(S, N, Ke, generator=g) * 0.5
        u = lambda a: (torch.rand(S, N, generator=g) * 2 - 1) * a  # noqa: E731
        yaw, pitch, roll = u(self.yaw), u(self.pitch), u(self.roll)
        v = (self.mean[None, None] + (alpha @ self.id_basis.flatten(1)).reshape(S, 1, -1, 3)
             + (beta @ self.exp_basis.flatten(1)).reshape(S, N, -1, 3))  # [S, N, P, 3]
        R = _euler_matrices(yaw, pitch, roll)  # [S, N, 3, 3]
        K = Intrinsics.default(self.size, self.size)
        fill = 0.5 * (0.8 + 0.4 * torch.rand(S, N, generator=g))
        jaw_w = (v[:, :, self.lid_sub[0]] - v[:, :, self.lid_sub[16]]).norm(dim=-1)
        z = K.fx * jaw_w / (fill * K.width)
        c = v[:, :, self.lid_sub].mean(2)  # [S, N, 3]
        off = (torch.rand(S, N, 2, generator=g) * 0.1 - 0.05) * K.width
        t = torch.stack([off[..., 0] * z / K.fx, off[..., 1] * z / K.fy, z], -1) - (R @ c[..., None])[..., 0]
        X = v @ R.transpose(-1, -2) + t[:, :, None]
        px = torch.stack([K.fx * X[..., 0] / X[..., 2] + K.cx, K.fy * X[..., 1] / X[..., 2] + K.cy], -1)
        lm = px[:, :, self.lid_sub].clone()  # [S, N, 68, 2]
        # occluding side: the side whose frontal jaw points lie farther from the camera
        zr = X[:, :, self.lid_sub[:8], 2].mean(-1)
        zl = X[:, :, self.lid_sub[9:17], 2].mean(-1)
        cu = lm[..., 0].mean(-1)  # [S, N]
        cand_px = px[:, :, self.cand_sub]  # [S, N, 16, C, 2]
        umin = cand_px[..., 0].argmin(-1)
        umax = cand_px[..., 0].argmax(-1)
        default_u = lm[:, :, self.jaw_pts, 0]  # [S, N, 16]
        pick = torch.where(default_u < cu[..., None], umin, umax)
        outline = torch.gather(cand_px, 3, pick[..., None, None].expand(-1, -1, -1, 1, 2))[..., 0, :]
        right_occ = (zr > zl)[..., None]  # points 0-7 are occluding
        side_r = torch.arange(16) < 8
        move = torch.where(side_r[None, None], right_occ, ~right_occ)  # [S, N, 16]
        lm[:, :, self.jaw_pts] = torch.where(move[..., None], outline, lm[:, :, self.jaw_pts])
        if noise_iod > 0:
            iod = (lm[:, :, 36:42].mean(2) - lm[:, :, 42:48].mean(2)).norm(dim=-1)
            lm = lm + torch.randn(lm.shape, generator=g) * noise_iod * iod[..., None, None]
        return {"landmarks": lm, "identity": alpha, "expression": beta,
                "euler": torch.stack([yaw, pitch, roll], -1)}


def _euler_matrices(yaw, pitch, roll) -> torch.Tensor:
    """Model-to-camera rotations [..., 3, 3] for yaw/pitch/roll in degrees (as :func:`euler_to_r`), flip included."""
    from redafit.render.camera import R_FLIP

    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    o, z = torch.ones_like(y), torch.zeros_like(y)
    Ry = torch.stack([torch.cos(y), z, torch.sin(y), z, o, z, -torch.sin(y), z, torch.cos(y)], -1)
    Rx = torch.stack([o, z, z, z, torch.cos(p), -torch.sin(p), z, torch.sin(p), torch.cos(p)], -1)
    Rz = torch.stack([torch.cos(r), -torch.sin(r), z, torch.sin(r), torch.cos(r), z, z, z, o], -1)
    M = Ry.reshape(*y.shape, 3, 3) @ Rx.reshape(*y.shape, 3, 3) @ Rz.reshape(*y.shape, 3, 3)
    return M @ R_FLIP.to(M)
