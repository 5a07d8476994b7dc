"""ReDA soft renderer: shapes, z-buffer baseline, silhouette gradients, occlusion, pyramid and loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from redafit.config import RenderConfig
from redafit.errors import InputError, UsageError
from redafit.render import (
    ReDALoss,
    interpolate,
    pyramid,
    rasterize,
    reda_loss,
    render_pyramid,
    soft_render,
)
from redafit.render.reda import (
    SoftImage,
    gaussian_kernel,
    moving_blur,
    moving_blur_reference,
)

from ._meshes import quad_clip

RES = (24, 32)


def _quad(x0=-0.4, y0=-0.4, x1=0.4, y1=0.4, w=500.0, dtype=torch.float32):
    clip, tris = quad_clip(x0, y0, x1, y1, w, dtype)
    return clip[None], tris


def test_config_defaults_and_validation():
    cfg = RenderConfig()
    assert (cfg.mode, cfg.slices, cfg.pyramid_levels, cfg.backend) == ("reda", 5, 6, "auto")
    assert cfg.kernel_size % 2 == 1 and cfg.sigma > 0 and cfg.depth_temperature > 0
    z = RenderConfig.zbuffer()
    assert (z.mode, z.slices, z.pyramid_levels) == ("zbuffer", 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.slices = 3
    for bad in ({"mode": "soft"}, {"slices": 0}, {"kernel_size": 4}, {"sigma": 0}, {"backend": "gl"},
                {"depth_temperature": -1}, {"pyramid_levels": 0}):
        with pytest.raises(UsageError):
            RenderConfig(**bad)


def test_soft_render_shapes_and_range():
    clip, tris = _quad()
    attrs = torch.rand(4, 3)
    out = soft_render(clip.repeat(2, 1, 1), tris, attrs, RES, RenderConfig())
    assert isinstance(out, SoftImage)
    assert out.image.shape == (2, *RES, 3) and out.alpha.shape == (2, *RES, 1)
    assert out.alpha.min() >= 0 and out.alpha.max() <= 1
    assert out.alpha[0, 12, 16, 0] == pytest.approx(1.0) and out.alpha[0, 0, 0, 0] == 0
    # premultiplied: image <= alpha * max attribute
    assert (out.image <= out.alpha * attrs.max() + 1e-5).all()
    pyr = render_pyramid(out, RenderConfig())
    assert len(pyr) == 6 and pyr[1].shape == (2, 12, 16, 3) and pyr[5].shape == (2, 1, 1, 3)


def test_zbuffer_mode_is_hard_interpolation():
    clip, tris = _quad()
    attrs = torch.rand(1, 4, 5)
    z = soft_render(clip, tris, attrs, RES, RenderConfig.zbuffer())
    fr = rasterize(clip, tris, RES)
    assert torch.allclose(z.image, interpolate(attrs, fr, tris))
    assert torch.equal(z.alpha[..., 0] > 0, fr.mask)
    assert len(pyramid(z.image, RenderConfig.zbuffer())) == 1


def test_interior_matches_zbuffer_and_depth_attribute():
    clip, tris = _quad(-0.6, -0.6, 0.6, 0.6)
    clip = clip.clone()
    clip[0, :, 2:] *= torch.tensor([[1.0, 1.0], [1.2, 1.2], [1.4, 1.4], [1.2, 1.2]])
    clip[0, :, :2] *= torch.tensor([[1.0], [1.2], [1.4], [1.2]])  # same screen quad, tilted in depth
    attrs = torch.cat([clip[0, :, 3:], torch.rand(4, 2)], -1)
    soft = soft_render(clip, tris, attrs, RES, RenderConfig())
    hard = soft_render(clip, tris, attrs, RES, RenderConfig.zbuffer())
    inner = (slice(None), slice(7, 17), slice(9, 23))
    assert torch.allclose(soft.alpha[inner], torch.ones(()))
    # interior values are blurred versions of the hard image: close for smooth attributes
    assert (soft.image[inner] - hard.image[inner]).abs().max() < 0.05 * attrs.abs().max()


def test_silhouette_gradient_reda_vs_zbuffer():
    """A loss on pixels just outside the silhouette moves the vertices in ReDA mode, not in z-buffer mode."""
    clip0, tris = _quad()  # covers columns 9.6 .. 22.4 -> pixels 10..21
    ones = torch.ones(4, 1)
    outside = (slice(None), slice(8, 16), 23)  # 1-2 px right of the right edge: within the 5-tap kernel
    grads = {}
    for mode, cfg in (("reda", RenderConfig()), ("zbuffer", RenderConfig.zbuffer())):
        clip = clip0.clone().requires_grad_()
        img = soft_render(clip, tris, ones, RES, cfg).image
        assert img[0, 12, 22, 0] == (0 if mode == "zbuffer" else img[0, 12, 22, 0])
        img[outside].sum().backward()
        grads[mode] = clip.grad
    g = grads["reda"][0]
    assert g.abs().sum() > 0
    # moving the right-hand vertices (1, 2) right brings more coverage onto the loss pixels
    assert g[1, 0] > 0 and g[2, 0] > 0 and g[3, 0].abs() < 0.1 * g[1, 0]
    assert grads["zbuffer"] is None or grads["zbuffer"].abs().sum() == 0
    # beyond the level-0 kernel reach nothing moves
    clip = clip0.clone().requires_grad_()
    soft_render(clip, tris, ones, RES, RenderConfig()).image[0, :, 26:].sum().backward()
    assert clip.grad is None or clip.grad.abs().sum() == 0


def test_translation_gradient_equals_moved_mass():
    """d/dx of the image's first x-moment under a rigid screen shift = the mass times the kernel's variance
    ratio (the transport term is exact for moments)."""
    clip0, tris = _quad(dtype=torch.float64)
    W = RES[1]
    shift = torch.zeros((), dtype=torch.float64, requires_grad=True)
    clip = clip0.clone()
    clip = torch.cat([clip[..., :1] + shift * clip[..., 3:] * 2 / W, clip[..., 1:]], -1)  # shift in pixels
    cfg = RenderConfig(slices=1)
    img = soft_render(clip, tris, torch.ones(4, 1, dtype=torch.float64), RES, cfg).image[0, ..., 0]
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    (img * xs).sum().backward()
    g = gaussian_kernel(cfg.kernel_size, cfg.sigma, torch.float64)
    t = torch.arange(-2, 3, dtype=torch.float64)
    ratio = (t * t * g).sum() / cfg.sigma ** 2
    assert shift.grad.item() == pytest.approx((img.sum() * ratio).item(), rel=1e-6)


def test_occlusion_nearer_slice_dominates():
    near, t1 = quad_clip(-0.5, -0.5, 0.3, 0.3, 400.0, torch.float32)
    far, t2 = quad_clip(-0.3, -0.3, 0.6, 0.6, 700.0, torch.float32)
    red, green = torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0])
    for order in (0, 1):
        parts = [(near, t1, red), (far, t2, green)][:: 1 if order == 0 else -1]
        clip = torch.cat([p[0] for p in parts])[None]
        tris = torch.cat([parts[0][1], parts[1][1] + 4])
        attrs = torch.cat([p[2].expand(4, 3) for p in parts])
        out = soft_render(clip, tris, attrs, RES, RenderConfig())
        px = out.image[0, 12, 16]  # inside both quads, 2+ px from the near quad's edges
        assert px[0] > 0.98 and px[1] < 0.02
        px = out.image[0, 12, 23]  # far quad only (3 px right of the near one)
        assert px[1] > 0.98 and px[0] < 0.02
        assert out.alpha[0, 12, 16, 0] == pytest.approx(1.0)


def test_no_seams_between_slices(ict_mesh):
    """Adjacent depth slices add up to full coverage inside the face (no dark seams in alpha)."""
    from redafit.render.camera import Intrinsics, pose_rotation, to_clip, transform

    K = Intrinsics.default(64, 64)
    cam = transform(ict_mesh.mean[None], pose_rotation(torch.zeros(1, 3)), torch.tensor([[0.0, 0.0, 600.0]]))
    clip = to_clip(cam, K)
    hard = rasterize(clip, ict_mesh.triangles, (64, 64)).mask[0].float()
    inner = -torch.nn.functional.max_pool2d(-hard[None, None], 7, 1, 3)[0, 0] > 0.5  # eroded mask
    out = soft_render(clip, ict_mesh.triangles, torch.ones(ict_mesh.n_vertices, 1), (64, 64), RenderConfig())
    assert inner.sum() > 200
    assert out.alpha[0, ..., 0][inner].min() > 0.999


def test_batches_and_textures():
    clip, tris = _quad()
    clip2, _ = _quad(-0.2, -0.2, 0.6, 0.6)
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    tex = torch.zeros(2, 2, 2, 2)
    tex[0, ..., 0] = 1.0  # batch entry 0: channel 0 everywhere
    tex[1, ..., 1] = 1.0
    both = torch.cat([clip, clip2])
    out = soft_render(both, tris, torch.ones(1, 4, 1), RES, RenderConfig(), textures=[(uv, tris, tex)])
    assert out.image.shape == (2, *RES, 3)
    assert torch.allclose(out.image[0, ..., 1], out.alpha[0, ..., 0], atol=1e-5)  # texture channel 0 = alpha
    assert torch.allclose(out.image[1, ..., 2], out.alpha[1, ..., 0], atol=1e-5)
    assert out.image[0, ..., 2].abs().max() < 1e-6
    one = soft_render(clip2, tris, torch.ones(1, 4, 1), RES, RenderConfig())
    assert torch.allclose(one.image, out.image[1:, ..., :1], atol=1e-6)
    z = soft_render(both, tris, None, RES, RenderConfig.zbuffer(), textures=[(uv, tris, tex)])
    assert z.image.shape == (2, *RES, 2)


def test_empty_render_is_zero_and_differentiable():
    clip, tris = _quad(2.0, 2.0, 3.0, 3.0)
    clip.requires_grad_()
    out = soft_render(clip, tris, torch.ones(4, 2), RES, RenderConfig())
    assert out.image.shape == (1, *RES, 2) and out.image.abs().sum() == 0
    loss = reda_loss(render_pyramid(out), pyramid(torch.ones(1, *RES, 2)))
    loss.backward()
    assert loss.item() > 0 and clip.grad is not None and torch.isfinite(clip.grad).all()


def test_bad_inputs():
    clip, tris = _quad()
    with pytest.raises(InputError):
        soft_render(clip, tris, torch.ones(5, 3), RES)
    with pytest.raises(InputError):
        soft_render(clip[0], tris, torch.ones(4, 3), RES)
    with pytest.raises(InputError):
        soft_render(clip, tris, None, RES)
    with pytest.raises(InputError):
        pyramid(torch.ones(4, 4, 3))
    with pytest.raises(InputError):
        reda_loss([torch.ones(1, 4, 4, 1)], [torch.ones(1, 4, 4, 2)])
    with pytest.raises(InputError):
        reda_loss([torch.ones(1, 4, 4, 1)], [])


def test_pyramid_and_loss():
    cfg = RenderConfig(pyramid_levels=4)
    img = torch.full((1, 16, 16, 2), 0.5)
    pyr = pyramid(img, cfg)
    assert [p.shape[1] for p in pyr] == [16, 8, 4, 2]
    assert torch.allclose(pyr[1][0, 3:5, 3:5], torch.tensor(0.5))  # interior of a constant image is constant
    assert reda_loss(pyr, pyramid(img.clone(), cfg)).item() == 0
    other = pyramid(torch.zeros_like(img), cfg)
    loss = reda_loss(pyr, other)
    assert 0 < loss.item() <= 4 * 0.5 + 1e-6
    # a mask restricts the comparison
    half = torch.zeros(1, 16, 16, 1)
    half[:, :, :8] = 1
    diff = img.clone()
    diff[:, :, 8:] = 0
    assert reda_loss(pyramid(diff, RenderConfig.zbuffer()), pyramid(img, RenderConfig.zbuffer()), half) == 0
    assert reda_loss(pyramid(diff, cfg), pyramid(img, cfg), half) > 0  # blur leaks across the mask border
    flat = [torch.full_like(m[..., :1], 0.3) for m in pyr]
    assert reda_loss(pyr, other, flat).item() == pytest.approx(reda_loss(pyr, other).item(), rel=1e-5)


def test_redaloss_module_backward():
    clip, tris = _quad()
    clip.requires_grad_()
    target = soft_render(_quad(-0.3, -0.4, 0.5, 0.4)[0], tris, torch.ones(4, 1), RES, RenderConfig.zbuffer()).image
    loss = ReDALoss(RenderConfig())(clip, tris, torch.ones(4, 1), target)
    loss.backward()
    # the target lies to the right: moving right lowers the loss
    assert clip.grad[0, :, 0].sum() < 0


def test_moving_blur_backward_matches_reference():
    cfg = RenderConfig(kernel_size=7, sigma=1.5)
    V = torch.rand(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    dx = torch.zeros(2, 1, 9, 11, dtype=torch.float64, requires_grad=True)
    dy = torch.zeros(2, 1, 9, 11, dtype=torch.float64, requires_grad=True)
    g = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    a = torch.autograd.grad((moving_blur(V, dx, dy, cfg) * g).sum(), [V, dx, dy])
    b = torch.autograd.grad((moving_blur_reference(V, dx, dy, cfg) * g).sum(), [V, dx, dy])
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-12)
    assert torch.allclose(moving_blur(V, dx, dy, cfg), moving_blur_reference(V, dx, dy, cfg))
    # the transport term matches a true sub-pixel shift of a smooth image (finite differences, Gaussian)
    V1 = torch.zeros(1, 1, 1, 21, dtype=torch.float64)
    V1[..., 10] = 1.0
    d = torch.zeros(1, 1, 1, 21, dtype=torch.float64, requires_grad=True)
    out = moving_blur(V1, d, torch.zeros_like(d), cfg)
    (gr,) = torch.autograd.grad(out[0, 0, 0, 11], d)
    x = torch.tensor(1.0, dtype=torch.float64)
    analytic = x / cfg.sigma ** 2 * out[0, 0, 0, 11]  # d/ds G(1 - s) at s = 0
    assert gr[0, 0, 0, 10].item() == pytest.approx(analytic.item(), rel=1e-9)


def test_gradcheck_soft_render_attributes():
    clip, tris = _quad(dtype=torch.float64)
    attrs = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    cfg = RenderConfig(slices=2, kernel_size=3)
    f = lambda a: soft_render(clip, tris, a, (8, 10), cfg).image
    assert torch.autograd.gradcheck(f, (attrs,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["reda", "zbuffer"])
def test_masked_pyramids_agree_where_render_matches_on_valid_pixels(mode):
    """Ignored pixels (any content on either side) must not bias any pyramid level: with a render equal to the
    observation on the valid pixels, every level matches exactly."""
    from redafit.render.reda import masked_render_pyramid, observed_pyramid

    g = torch.Generator().manual_seed(0)
    cfg = RenderConfig() if mode == "reda" else RenderConfig.zbuffer()
    obs = torch.rand(1, 48, 40, 3, generator=g, dtype=torch.float64)
    valid = torch.ones(1, 48, 40, 1, dtype=torch.float64)
    valid[:, 10:25, 5:18] = 0  # an occluder
    valid[:, :, 33:] = 0  # an ignored band
    truth = torch.where(valid > 0, obs, torch.rand(1, 48, 40, 3, generator=g, dtype=torch.float64))
    po = observed_pyramid(truth, valid, cfg)
    # the soft renderer's output is already softened at level 0: the observed side's level 0 is that softening
    rendered = po[0] if mode == "reda" else truth
    pr = masked_render_pyramid(rendered + 5.0 * (1 - valid), valid, cfg)  # garbage where invalid
    assert len(pr) == len(po) == (cfg.pyramid_levels if mode == "reda" else 1)
    for a, b in zip(pr, po):
        torch.testing.assert_close(a, b)
    assert reda_loss(pr, po).item() < 1e-12
    # the ignored content of the observation does not leak into valid pixels either
    other = torch.where(valid > 0, truth, torch.zeros_like(truth))
    for a, b in zip(observed_pyramid(other, valid, cfg), po):
        torch.testing.assert_close(a, b)


def test_reda_loss_level_weights():
    """Per-level weights scale each level's term; a level weighted 0 is not compared at all."""
    cfg = RenderConfig(pyramid_levels=3)
    a = pyramid(torch.rand(1, 16, 16, 2), cfg)
    b = pyramid(torch.rand(1, 16, 16, 2), cfg)
    terms = [reda_loss([x], [y]).item() for x, y in zip(a, b)]
    assert reda_loss(a, b, level_weights=[1.0, 1.0, 1.0]).item() == pytest.approx(sum(terms), rel=1e-6)
    assert reda_loss(a, b, level_weights=[1.0, 0.5, 0.0]).item() == pytest.approx(terms[0] + 0.5 * terms[1],
                                                                                   rel=1e-6)
    b_far = [b[0], b[1], b[2] + 100.0]  # the unweighted level's difference does not count
    assert reda_loss(a, b_far, level_weights=[1.0, 0.5, 0.0]).item() == pytest.approx(terms[0] + 0.5 * terms[1],
                                                                                       rel=1e-6)
    with pytest.raises(InputError, match="level weights"):
        reda_loss(a, b, level_weights=[1.0, 1.0])


def test_reda_loss_says_what_it_takes():
    """Two plain tensors were read as pyramids of their batch items (a plausible number); a mask [B, H, W] or of
    another size failed in torch's permute or broadcasting, a NumPy mask with an AttributeError."""
    cfg = RenderConfig(pyramid_levels=2)
    x, y = torch.rand(2, 16, 16, 3), torch.rand(2, 16, 16, 3)
    a, b = pyramid(x, cfg), pyramid(y, cfg)
    with pytest.raises(InputError, match="got a tensor"):
        reda_loss(x, y)
    for mask, words in ((torch.ones(2, 16, 16), "mask must be"), (torch.ones(2, 8, 8, 1), "mask must be"),
                        (np.ones((2, 16, 16, 1)), "mask must be a tensor")):
        with pytest.raises(InputError, match=words):
            reda_loss(a, b, mask=mask)
    assert reda_loss(a, b, mask=torch.ones(2, 16, 16, 1)).item() == pytest.approx(reda_loss(a, b).item(), rel=1e-6)


def _grid(n=40, x0=-0.5, x1=0.5, w=500.0, jitter=0.004, seed=0):
    """A flat n x n vertex grid over [x0, x1]^2 in NDC at depth w, its triangles under a pixel at 32 px, the inner
    vertices jittered."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(x0, x1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    xy = torch.stack([xx, yy], -1)
    inner = torch.zeros(n, n, 1, dtype=torch.float64)
    inner[1:-1, 1:-1] = 1
    xy = (xy + jitter * torch.randn(n, n, 2, generator=g, dtype=torch.float64) * inner).reshape(-1, 2)
    clip = torch.cat([xy * w, torch.full((n * n, 1), 0.5 * w, dtype=torch.float64),
                      torch.full((n * n, 1), w, dtype=torch.float64)], -1)
    i = torch.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).reshape(-1)
    tris = torch.cat([torch.stack([a, a + 1, a + n + 1], 1), torch.stack([a, a + n + 1, a + n], 1)])
    return clip[None], tris


def test_fully_covered_pixels_have_exact_zero_coverage_gradient(monkeypatch):
    """Where the kernel's whole footprint is covered the soft coverage is 1 and stays 1 under any small motion, so
    its derivative is 0; sampled on triangles of about a pixel, the transport and area terms only cancel on
    average, and that noise is dropped. The silhouette band's gradient is untouched."""
    import redafit.render.reda as R

    clip0, tris = _grid()
    cfg = RenderConfig(slices=1)
    grads = {}
    for exact in (False, True):
        monkeypatch.setattr(R, "FULL_COVER_EXACT", exact)
        clip = clip0.clone().requires_grad_()
        alpha = soft_render(clip, tris, torch.ones(clip.shape[1], 1, dtype=torch.float64), (32, 32), cfg).alpha
        a = alpha.detach()
        full, band = a >= 1 - 1e-6, (a > 0.01) & (a < 0.99)
        assert full.sum() > 100 and band.sum() > 20
        g_full, = torch.autograd.grad((alpha * full).sum(), clip, retain_graph=True)
        g_band, = torch.autograd.grad((alpha * band).sum(), clip)
        grads[exact] = g_full.abs().sum().item(), g_band
    assert grads[False][0] > 1.0  # the noise the exact derivative removes
    assert grads[True][0] == 0.0
    assert torch.allclose(grads[True][1], grads[False][1])
