"""rasterize / interpolate / texture: contract, conventions, edge cases, gradients (torch backend)."""

from __future__ import annotations

import pytest
import torch

from redafit.errors import DependencyError, InputError, RedafitError, UsageError
from redafit.render import Fragments, interpolate, rasterize, texture
from redafit.render.camera import Intrinsics, pose_rotation, to_clip, transform

from ._meshes import quad_clip


def test_contract_shapes_and_dtypes():
    clip, tris = quad_clip(-0.5, -0.5, 0.5, 0.5, 500.0, torch.float32)
    fr = rasterize(clip[None].repeat(2, 1, 1), tris, (6, 8))
    assert isinstance(fr, Fragments)
    assert fr.bary.shape == (2, 6, 8, 3) and fr.bary.dtype == torch.float32
    assert fr.tri_id.shape == (2, 6, 8) and fr.tri_id.dtype == torch.long
    assert fr.depth.shape == (2, 6, 8)
    assert fr.mask.dtype == torch.bool and fr.mask.shape == (2, 6, 8)
    assert fr.resolution == (6, 8)
    fd = fr.detach()
    assert not fd.bary.requires_grad
    f64 = fr.to(torch.float64)
    assert f64.bary.dtype == torch.float64 and f64.tri_id.dtype == torch.long


def test_pixel_centres_and_row_order():
    # quad over NDC x in [-1, 0], y in [-1, 0] -> the top-left 2x2 pixels of a 4x4 image (row 0 = NDC y -1)
    clip, tris = quad_clip(-1.0, -1.0, 0.0, 0.0, 300.0)
    fr = rasterize(clip[None], tris, (4, 4))
    expect = torch.zeros(4, 4, dtype=torch.bool)
    expect[:2, :2] = True
    assert torch.equal(fr.mask[0], expect)
    assert torch.allclose(fr.depth[0][expect], torch.full((4,), 300.0, dtype=torch.float64))
    assert torch.all(fr.depth[0][~expect] == 0) and torch.all(fr.bary[0][~expect] == 0)
    assert torch.all(fr.tri_id[0][~expect] == -1)
    b = fr.bary[0][expect]
    assert torch.allclose(b.sum(-1), torch.ones(4, dtype=torch.float64)) and (b >= 0).all()
    # a quad just right of the pixel centres 1.5 -> nothing at column 1
    clip2, _ = quad_clip(-1.0, -1.0, -0.26, 1.0, 300.0)  # x pixel = (x + 1) * 2 -> 1.48 < 1.5
    assert rasterize(clip2[None], tris, (4, 4)).mask[0, :, 1].sum() == 0


def test_matches_camera_projection(ict_mesh):
    """Rasterized depth equals camera z and the covered pixels sit where ``project`` puts the vertices."""
    K = Intrinsics.default(64, 48)
    cam = transform(ict_mesh.mean[None], pose_rotation(torch.zeros(1, 3)), torch.tensor([[0.0, 0.0, 600.0]]))
    fr = rasterize(to_clip(cam, K), ict_mesh.triangles, (48, 64))
    z = cam[0, :, 2]
    d = fr.depth[fr.mask]
    assert d.min() >= z.min() - 1e-3 and d.max() <= z.max() + 1e-3
    from redafit.render.camera import project

    uv = project(cam, K)[0]
    ys, xs = torch.nonzero(fr.mask[0], as_tuple=True)
    assert abs(xs.float().mean() + 0.5 - uv[:, 0].mean()) < 3 and abs(ys.float().mean() + 0.5 - uv[:, 1].mean()) < 5


def test_occlusion_nearer_wins_any_order():
    a, ta = quad_clip(-0.8, -0.8, 0.4, 0.4, 500.0)
    b, tb = quad_clip(-0.4, -0.4, 0.8, 0.8, 400.0)  # nearer
    for first, second in ((a, b), (b, a)):
        clip = torch.cat([first, second])[None]
        tris = torch.cat([ta, tb + 4])
        fr = rasterize(clip, tris, (16, 16))
        near_ids = {0, 1} if first is b else {2, 3}
        centre = fr.tri_id[0, 7, 7].item()  # inside both quads
        assert centre in near_ids
        assert fr.depth[0, 7, 7].item() == pytest.approx(400.0)


def test_orthographic_clip_is_depth_tested_by_z():
    """As nvdiffrast's: the depth test is on NDC z = z_c / w, so a clip with w = 1 everywhere (an orthographic
    view) still shows the nearer surface (smaller z), whichever triangle comes first; the depth reported is w."""
    a, ta = quad_clip(-0.8, -0.8, 0.4, 0.4, 1.0)
    b, tb = quad_clip(-0.4, -0.4, 0.8, 0.8, 1.0)
    a[:, 2], b[:, 2] = 0.3, -0.2  # b nearer
    for first, second in ((a, b), (b, a)):
        fr = rasterize(torch.cat([first, second])[None], torch.cat([ta, tb + 4]), (16, 16))
        assert fr.tri_id[0, 7, 7].item() in ({0, 1} if first is b else {2, 3})
        assert fr.depth[0, 7, 7].item() == pytest.approx(1.0)
    # a tilted triangle through the other: each wins where it is nearer
    tilt = torch.tensor([[-1.0, -1.0, -0.5, 1.0], [1.0, -1.0, 0.5, 1.0], [0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    flat = tilt.clone()
    flat[:, 2] = 0.0
    fr = rasterize(torch.cat([flat, tilt])[None], torch.tensor([[0, 1, 2], [3, 4, 5]]), (8, 8))
    assert fr.tri_id[0, 1, 1].item() == 1 and fr.tri_id[0, 1, 6].item() == 0  # left: tilt nearer; right: flat


def test_batches_are_independent():
    a, t = quad_clip(-0.8, -0.8, 0.0, 0.0, 500.0)
    b, _ = quad_clip(0.0, 0.0, 0.8, 0.8, 300.0)
    fr = rasterize(torch.stack([a, b]), t, (10, 10))
    single = rasterize(b[None], t, (10, 10))
    assert torch.equal(fr.tri_id[1], single.tri_id[0]) and torch.allclose(fr.bary[1], single.bary[0])
    assert not torch.equal(fr.mask[0], fr.mask[1])


def test_empty_and_offscreen_and_behind_camera_and_degenerate():
    # off screen
    clip, tris = quad_clip(2.0, 2.0, 3.0, 3.0, 500.0)
    assert not rasterize(clip[None], tris, (8, 8)).mask.any()
    # partly off screen: the visible part is drawn
    clip, tris = quad_clip(-3.0, -3.0, 0.0, 0.0, 500.0)
    assert rasterize(clip[None], tris, (8, 8)).mask[0, :4, :4].all()
    # behind the camera (w <= 0): dropped
    clip, tris = quad_clip(-0.5, -0.5, 0.5, 0.5, 500.0)
    clip[0, 3] = -10.0
    fr = rasterize(clip[None], tris, (8, 8))
    assert set(fr.tri_id.unique().tolist()) <= {-1, 1}
    # degenerate (zero area): nothing drawn, no NaN
    deg = torch.tensor([[[-0.5, -0.5, 0, 1], [0.0, 0.0, 0, 1], [0.5, 0.5, 0, 1]]], dtype=torch.float64)
    fr = rasterize(deg, torch.tensor([[0, 1, 2]]), (8, 8))
    assert not fr.mask.any() and torch.isfinite(fr.bary).all()
    # no triangles, empty batch
    fr = rasterize(deg, torch.zeros(0, 3, dtype=torch.long), (4, 5))
    assert fr.tri_id.shape == (1, 4, 5) and not fr.mask.any()


def test_backface_culling():
    clip, tris = quad_clip(-0.5, -0.5, 0.5, 0.5, 500.0)
    both = rasterize(clip[None], tris, (8, 8))
    flipped = rasterize(clip[None], tris.flip(1), (8, 8))
    assert torch.equal(both.mask, flipped.mask)  # both sides by default
    a = rasterize(clip[None], tris, (8, 8), cull_backfaces=True).mask.any()
    b = rasterize(clip[None], tris.flip(1), (8, 8), cull_backfaces=True).mask.any()
    assert bool(a) != bool(b)


def test_ict_front_faces_survive_culling(ict_mesh):
    K = Intrinsics.default(64, 64)
    cam = transform(ict_mesh.mean[None], pose_rotation(torch.zeros(1, 3)), torch.tensor([[0.0, 0.0, 600.0]]))
    clip = to_clip(cam, K)
    full = rasterize(clip, ict_mesh.triangles, (64, 64))
    culled = rasterize(clip, ict_mesh.triangles, (64, 64), cull_backfaces=True)
    assert (full.tri_id == culled.tri_id).float().mean() > 0.99


def test_tri_mask_selects_per_batch_entry():
    clip, tris = quad_clip(-0.5, -0.5, 0.5, 0.5, 500.0)
    mask = torch.tensor([[True, False], [False, True]])
    fr = rasterize(clip[None].repeat(2, 1, 1), tris, (8, 8), tri_mask=mask)
    assert set(fr.tri_id[0].unique().tolist()) == {-1, 0} and set(fr.tri_id[1].unique().tolist()) == {-1, 1}


@pytest.mark.parametrize("bad", [
    lambda c, t: rasterize(c[None, :, :3], t, (4, 4)),
    lambda c, t: rasterize(c, t, (4, 4)),
    lambda c, t: rasterize(c[None], t.float(), (4, 4)),
    lambda c, t: rasterize(c[None], t + 10, (4, 4)),
    lambda c, t: rasterize(c[None], t, (0, 4)),
    lambda c, t: rasterize(c[None], t, "big"),
    lambda c, t: rasterize(c[None], t, (3.9, 4)),  # truncated to 3 rows before
    lambda c, t: rasterize(c[None], t, (4, 4), tri_mask=torch.ones(3, dtype=torch.bool)),
    lambda c, t: interpolate(torch.ones(2, 4, 3), rasterize(c[None], t, (4, 4)), t),
    lambda c, t: interpolate(torch.ones(5), rasterize(c[None], t, (4, 4)), t),
    lambda c, t: texture(torch.ones(1, 4, 4, 3), torch.ones(1, 4, 4, 3)),
])
def test_bad_input_raises_typed_errors(bad):
    clip, tris = quad_clip(-0.5, -0.5, 0.5, 0.5, 500.0)
    with pytest.raises(InputError):
        bad(clip, tris)


def test_bad_backend():
    clip, tris = quad_clip(-0.5, -0.5, 0.5, 0.5, 500.0)
    with pytest.raises(UsageError):
        rasterize(clip[None], tris, (4, 4), backend="opengl")
    with pytest.raises((DependencyError, UsageError)) as e:
        rasterize(clip[None], tris, (4, 4), backend="nvdiffrast")  # CPU tensors (and usually no nvdiffrast)
    assert isinstance(e.value, RedafitError)


def test_interpolate_vertex_and_uv_attributes():
    clip, tris = quad_clip(-1.0, -1.0, 1.0, 1.0, 500.0)
    fr = rasterize(clip[None], tris, (8, 8))
    # x coordinate as an attribute: interpolation reproduces the NDC x of each pixel centre (affine, constant w)
    attr = clip[:, :1] / clip[:, 3:]
    img = interpolate(attr, fr, tris)
    xs = (torch.arange(8, dtype=torch.float64) + 0.5) / 4 - 1
    assert torch.allclose(img[0, 3, :, 0], xs)
    # batched attributes and separate UV triangles (a different index buffer with the same F)
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [9.0, 9.0]], dtype=torch.float64)
    uv_tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvi = interpolate(uv, fr, uv_tris)
    assert uvi.shape == (1, 8, 8, 2) and torch.allclose(uvi[0, 0, :, 0], (xs + 1) / 2)
    b = interpolate(torch.stack([attr, 2 * attr]), rasterize(clip[None].repeat(2, 1, 1), tris, (8, 8)), tris)
    assert torch.allclose(b[1], 2 * b[0])


def test_perspective_correct_barycentrics():
    # a quad tilted in depth: interpolated camera-space depth (1/w-correct) equals the rasterized depth
    clip = torch.tensor([[-400.0, -400, 0, 400], [800, -800, 0, 800], [800, 800, 0, 800], [-400, 400, 0, 400]],
                        dtype=torch.float64)
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    fr = rasterize(clip[None], tris, (16, 16))
    z = interpolate(clip[:, 3:], fr, tris)[..., 0]
    assert torch.allclose(z[fr.mask], fr.depth[fr.mask])
    # and it is not the affine screen-space interpolation
    xs = (torch.arange(16, dtype=torch.float64) + 0.5) / 8 - 1
    affine = 400 + (xs + 1) / 2 * 400
    assert (z[0, 8] - affine).abs().max() > 10


def test_texture_v_up_and_bilinear():
    tex = torch.zeros(1, 2, 2, 1)
    tex[0, 0, :, 0] = 1.0  # top row of the texture image
    uv = torch.tensor([[[[0.5, 0.99], [0.5, 0.01]]]])  # [1, 1, 2, 2]
    out = texture(tex, uv)
    assert out.shape == (1, 1, 2, 1)
    assert out[0, 0, 0, 0] > 0.95 and out[0, 0, 1, 0] < 0.05  # v = 1 is the top row
    mid = texture(tex, torch.tensor([[[[0.5, 0.5]]]]))
    assert mid.item() == pytest.approx(0.5)
    # a shared texture for a batch of uv images
    assert texture(tex[0], uv.repeat(3, 1, 1, 1)).shape == (3, 1, 2, 1)


def _tilted_triangle():
    return torch.tensor([[[-0.71, -0.62, 0.1, 1.1], [0.83, -0.33, 0.2, 1.6], [-0.12, 0.77, 0.3, 0.8]]],
                        dtype=torch.float64) * 500


def test_gradcheck_barycentrics_and_depth():
    clip0 = _tilted_triangle()
    tris = torch.tensor([[0, 1, 2]])
    mask = rasterize(clip0, tris, (7, 9)).mask

    def f(clip):
        fr = rasterize(clip, tris, (7, 9))
        assert torch.equal(fr.mask, mask)  # visibility fixed under the tiny perturbations
        return fr.bary[mask], fr.depth[mask]

    assert mask.sum() > 10
    assert torch.autograd.gradcheck(f, (clip0.clone().requires_grad_(),), eps=1e-6, atol=1e-6)


def test_gradcheck_interpolate():
    clip0 = _tilted_triangle()
    tris = torch.tensor([[0, 1, 2]])
    attr0 = torch.rand(1, 3, 2, dtype=torch.float64)

    def f(clip, attr):
        return interpolate(attr, rasterize(clip, tris, (7, 9)), tris)

    assert torch.autograd.gradcheck(f, (clip0.clone().requires_grad_(), attr0.requires_grad_()), eps=1e-6,
                                    atol=1e-6)


def test_gradcheck_texture():
    tex = torch.rand(1, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(1, 3, 3, 2, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(texture, (tex, uv), eps=1e-6, atol=1e-5)


def test_float32_ict_hard_pass_has_no_holes(ict_mesh):
    """Inside the silhouette of a closed region of the face, every pixel is covered (shared edges: no cracks)."""
    K = Intrinsics.default(128, 128)
    cam = transform(ict_mesh.mean[None], pose_rotation(torch.tensor([[0.0, 0.3, 0.0]])),
                    torch.tensor([[0.0, 0.0, 450.0]]))
    fr = rasterize(to_clip(cam, K), ict_mesh.triangles, (128, 128))
    m = fr.mask[0]
    # interior pixels whose 4 neighbours are covered are (nearly) always covered themselves
    inner = m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    holes = inner & ~m[1:-1, 1:-1]
    assert holes.sum() <= 2


def test_float32_depth_test_picks_the_nearest_surface(ict_mesh):
    """In float32 a sliver triangle's screen barycentrics carry errors of about 1e-3 (large edge coefficients,
    cancelling): the depth test normalises them, so no pixel of a turned face at 512 px shows a surface more than
    0.5 mm behind the one the float64 rasterization finds (keyed on the unnormalised 1 / sum(l_i / w_i), about
    0.1 % of the pixels showed a surface behind the visible one, here by up to 50 mm)."""
    K = Intrinsics.default(512, 512)
    worst = 0.0
    for yaw in (-35.0, 0.0, 30.0):
        R = pose_rotation(torch.tensor([[0.0, yaw * 3.14159265 / 180, 0.0]], dtype=torch.float64))
        cam = transform(ict_mesh.mean[None].double(), R, torch.tensor([[0.0, 0.0, 450.0]], dtype=torch.float64))
        clip = to_clip(cam, K)
        f32 = rasterize(clip.float(), ict_mesh.triangles, (512, 512))
        f64 = rasterize(clip, ict_mesh.triangles, (512, 512))
        both = f32.mask & f64.mask
        assert both.sum() > 0.95 * f64.mask.sum()
        worst = max(worst, float((f32.depth.double() - f64.depth)[both].max()))
    assert worst < 0.5
