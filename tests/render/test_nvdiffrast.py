"""Parity of the nvdiffrast backend with the torch reference (runs only where nvdiffrast and CUDA are present)."""

from __future__ import annotations

import pytest
import torch

nvdiffrast = pytest.importorskip("nvdiffrast.torch", reason="nvdiffrast not installed")
if not torch.cuda.is_available():
    pytest.skip("nvdiffrast parity needs CUDA", allow_module_level=True)

from redafit.config import RenderConfig
from redafit.render import interpolate, rasterize, soft_render
from redafit.render.camera import (
    Intrinsics,
    euler_to_r,
    pose_rotation,
    to_clip,
    transform,
)

pytestmark = pytest.mark.nvdiffrast
RES = (128, 112)


@pytest.fixture(scope="module")
def scene(ict_mesh):
    dev = torch.device("cuda")
    K = Intrinsics.default(RES[1], RES[0])
    r = torch.stack([euler_to_r(0.0, 0.0, 0.0), euler_to_r(25.0, -10.0, 5.0)])
    t = torch.tensor([[0.0, 0.0, 600.0], [10.0, -5.0, 500.0]])
    clip = to_clip(transform(ict_mesh.mean[None].expand(2, -1, -1), pose_rotation(r), t), K)
    return clip.to(dev), ict_mesh.triangles.to(dev), ict_mesh.mean.to(dev)


def _boundary_band(mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()[:, None]
    dil = torch.nn.functional.max_pool2d(m, 3, 1, 1)
    ero = -torch.nn.functional.max_pool2d(-m, 3, 1, 1)
    return (dil - ero)[:, 0] > 0


def test_fragments_parity(scene):
    clip, tris, _ = scene
    a = rasterize(clip, tris, RES, backend="torch")
    b = rasterize(clip, tris, RES, backend="nvdiffrast")
    assert a.tri_id.shape == b.tri_id.shape and b.tri_id.dtype == torch.long
    band = _boundary_band(a.mask) | _boundary_band(b.mask)
    # silhouettes agree except for a small share of the boundary band
    flipped = a.mask != b.mask
    assert not (flipped & ~band).any()
    assert flipped.sum() <= 0.05 * band.sum()
    # inside: same surface (triangle ids may differ on shared edges; depth and barycentric-interpolated values agree)
    both = a.mask & b.mask & ~band
    assert torch.allclose(a.depth[both], b.depth[both], rtol=1e-4, atol=1e-2)
    same = both & (a.tri_id == b.tri_id)
    assert same.float().sum() > 0.97 * both.float().sum()
    assert torch.allclose(a.bary[same], b.bary[same], atol=1e-4)


def test_interpolate_and_gradient_parity(scene):
    clip, tris, verts = scene
    grads = []
    for backend in ("torch", "nvdiffrast"):
        c = clip.clone().requires_grad_()
        fr = rasterize(c, tris, RES, backend=backend)
        img = interpolate(verts, fr, tris)
        band = _boundary_band(fr.mask)
        (img * (~band)[..., None]).square().mean().backward()
        grads.append(c.grad)
    rel = (grads[0] - grads[1]).norm() / grads[0].norm()
    assert rel < 0.05


def test_soft_render_parity(scene):
    clip, tris, verts = scene
    attrs = (verts - verts.min(0).values) / (verts.max(0).values - verts.min(0).values)
    a = soft_render(clip, tris, attrs, RES, RenderConfig(backend="torch"))
    b = soft_render(clip, tris, attrs, RES, RenderConfig(backend="nvdiffrast"))
    assert (a.alpha - b.alpha).abs().mean() < 1e-3
    assert (a.image - b.image).abs().mean() < 1e-3


def test_auto_picks_nvdiffrast_on_cuda():
    from redafit.render import resolve_backend

    assert resolve_backend("auto", "cuda") == "nvdiffrast"
    assert resolve_backend("auto", "cpu") == "torch"
