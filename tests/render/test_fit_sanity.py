"""Fitting sanity check on the ICT face: the ReDA mask loss recovers a perturbed pose, the z-buffer loss does not."""

from __future__ import annotations

import math

import torch

from redafit.config import RenderConfig
from redafit.render import pyramid, reda_loss, render_pyramid, soft_render
from redafit.render.camera import (
    Intrinsics,
    euler_to_r,
    pose_rotation,
    to_clip,
    transform,
)

RES = 96
ITERS = 60


def _pose_errors(r, t, r_true, t_true):
    R, Rt = pose_rotation(r), pose_rotation(r_true)
    cos = ((R.transpose(-1, -2) @ Rt).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return math.degrees(math.acos(float(cos.clamp(-1, 1)))), float((t - t_true).norm())


def _fit(verts, tris, K, target, r0, t0, cfg):
    r = r0.clone().requires_grad_()
    t = t0.clone().requires_grad_()
    opt = torch.optim.Adam([{"params": [r], "lr": 0.01}, {"params": [t], "lr": 1.0}])
    ones = torch.ones(verts.shape[0], 1)
    obs = pyramid(target, cfg)
    for _ in range(ITERS):
        opt.zero_grad()
        clip = to_clip(transform(verts[None], pose_rotation(r), t), K)
        soft = soft_render(clip, tris, ones, (RES, RES), cfg)
        loss = reda_loss(render_pyramid(soft, cfg), obs)
        loss.backward()
        opt.step()
    return r.detach(), t.detach()


def test_reda_mask_loss_recovers_pose_better_than_zbuffer(ict_mesh):
    # the pose rotates about the face's centroid (so that yaw and sideways translation are not confounded)
    verts, tris = ict_mesh.mean - ict_mesh.mean.mean(0), ict_mesh.triangles
    K = Intrinsics.default(RES, RES)
    r_true = torch.zeros(1, 3)
    t_true = torch.tensor([[0.0, 10.0, 650.0]])
    with torch.no_grad():
        clip = to_clip(transform(verts[None], pose_rotation(r_true), t_true), K)
        target = soft_render(clip, tris, torch.ones(verts.shape[0], 1), (RES, RES), RenderConfig.zbuffer()).image
    r0 = euler_to_r(10.0, 0.0, 0.0)[None]
    t0 = t_true + torch.tensor([[12.0, -10.0, 0.0]])
    start = _pose_errors(r0, t0, r_true, t_true)
    reda = _pose_errors(*_fit(verts, tris, K, target, r0, t0, RenderConfig()), r_true, t_true)
    zbuf = _pose_errors(*_fit(verts, tris, K, target, r0, t0, RenderConfig.zbuffer()), r_true, t_true)
    print(f"start {start}, reda {reda}, zbuffer {zbuf}")
    # the z-buffer mask has no (useful) gradient w.r.t. the pose: it stays about where it started (Adam rescales
    # the round-off-sized gradients, so it may drift a little)
    assert zbuf[1] > 0.9 * start[1]
    # ReDA recovers most of the rotation and the translation
    assert reda[0] < 0.4 * zbuf[0], (reda, zbuf)
    assert reda[1] < 0.3 * zbuf[1], (reda, zbuf)
