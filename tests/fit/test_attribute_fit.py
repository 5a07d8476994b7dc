"""The ReDA attribute stages and the free-form ARAP stage: configuration, ARAP math, and one honest end-to-end
check on a synthetic face with known geometry (the full fit must beat the landmark-only fit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from redafit.errors import InputError
from redafit.fit import FitConfig, arap, fit_image
from redafit.fit.attribute_stages import FIT_PYRAMID_LEVELS, configure, crop_resize, face_crop, full_preset


# ------------------------------------------------------------------------------------------------------- config
def test_full_preset_stages_and_ablation_options():
    cfg = FitConfig.preset("full")
    assert [s.name for s in cfg.stages] == ["rigid", "landmarks", "attributes", "freeform"]
    att = cfg.stage("attributes")
    assert {"color", "mask", "landmarks"} <= set(att.losses)
    assert {"sh", "albedo", "albedo_reg"} <= set(att.params) and att.losses["exp_l1"] > 0
    ff = cfg.stage("freeform")
    assert "disp" in ff.params and "arap" in ff.losses and ff.landmark_drop_px == 0  # off by default (README)
    assert ff.disp_smooth > 0  # preconditioned (smooth) displacement steps
    from redafit.cli.fit import build_config

    dropped = build_config("full", landmark_drop=0.5)
    assert dropped.stage("freeform").landmark_drop_px == 0.5 and dropped.stage("attributes").landmark_drop_px == 0
    precise = build_config("full", landmark_sigma=1.25)  # percent of the eye distance
    assert precise.landmark_sigma == pytest.approx(0.0125)
    for st in precise.stages:
        base, scaled = cfg.stage_losses(st), precise.stage_losses(st)
        for k, w in base.items():
            f = 0.25 if k in ("id_prior", "exp_prior", "exp_l1") else 1.0
            assert scaled[k] == pytest.approx(w * f), (st.name, k)

    # the fit's pyramid stops at ~24 px at the fit size, whatever the render's own (paper) default is
    assert cfg.render.mode == "reda" and cfg.render.pyramid_levels == FIT_PYRAMID_LEVELS
    assert cfg.fit_size / 2 ** (FIT_PYRAMID_LEVELS - 1) >= 16
    z = configure(cfg, raster="zbuffer")
    assert z.render.mode == "zbuffer" and z.render.pyramid_levels == 1
    assert configure(z, raster="reda").render.pyramid_levels == FIT_PYRAMID_LEVELS
    m = configure(cfg, attributes=("mask",), freeform=False)
    assert [s.name for s in m.stages] == ["rigid", "landmarks", "attributes"]
    assert "color" not in m.stage("attributes").losses and "sh" not in m.stage("attributes").params
    p = configure(cfg, pyramid_levels=3, slices=4)
    assert p.render.pyramid_levels == 3 and p.render.slices == 4
    assert full_preset(("color", "mask", "depth")).stage("attributes").losses["depth"] > 0


def test_fast_preset_is_the_zbuffer_with_the_same_stages_and_weights():
    """``fast``: the full preset's four stages and weights through the plain z-buffer; the ablation options (and a
    depth map) keep the config's weights, and a config built with other weights gives the depth term the same
    scale."""
    from redafit.cli.fit import build_config
    from redafit.fit.attribute_stages import ATTR_WEIGHTS

    fast, full = FitConfig.preset("fast"), FitConfig.preset("full")
    assert [s.name for s in fast.stages] == [s.name for s in full.stages]
    assert fast.render.mode == "zbuffer" and full.render.mode == "reda"
    for name in ("attributes", "freeform"):
        assert fast.stage(name).losses == full.stage(name).losses
        assert fast.stage(name).landmark_guard
    kept = configure(fast, freeform=False, attributes=("color", "mask", "depth"))
    assert kept.render.mode == "zbuffer" and [s.name for s in kept.stages][-1] == "attributes"
    assert kept.stage("attributes").losses["depth"] == ATTR_WEIGHTS["depth"]
    half = full_preset(weights={"color": ATTR_WEIGHTS["color"] / 2})
    assert configure(half, attributes=("color", "mask", "depth")).stage("attributes").losses["depth"] == \
        ATTR_WEIGHTS["depth"] / 2
    cli = build_config("fast", has_depth=True, no_freeform=True)
    assert cli.render.mode == "zbuffer" and cli.stage("attributes").losses["depth"] == ATTR_WEIGHTS["depth"]
    assert [s.name for s in cli.stages] == ["rigid", "landmarks", "attributes"]


def test_face_crop_contains_landmarks():
    lm = np.random.default_rng(0).uniform(100, 200, (68, 2))
    x0, y0, side = face_crop(lm)
    assert x0 < lm[:, 0].min() and y0 < lm[:, 1].min()
    assert x0 + side > lm[:, 0].max() and y0 + side > lm[:, 1].max()


@pytest.mark.parametrize("x0, y0, side", [(20.3, 31.7, 230.4), (-5.6, 3.2, 260.9), (12.0, 40.0, 96.5)])
def test_crop_resize_is_exact_to_subpixel(x0, y0, side):
    """The crop must put source point x at canvas u = (x - x0) * size / side exactly (the render uses that
    camera): a ramp image whose value is its own pixel-centre coordinate reads back the mapped coordinate."""
    h, w, size = 180, 256, 192
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx + 0.5, yy + 0.5, np.ones_like(xx)], -1)
    out, inside = crop_resize(img, x0, y0, side, size)
    s = size / side
    u = (np.arange(size) + 0.5) / s
    ex, ey = x0 + u, y0 + u
    core = inside.copy()  # away from the image border (the prefilter and interpolation see zeros there)
    core &= ((ey > 3) & (ey < h - 3))[:, None] & ((ex > 3) & (ex < w - 3))[None, :]
    assert core.sum() > 1000
    np.testing.assert_allclose(out[..., 0][core], np.broadcast_to(ex[None, :], out.shape[:2])[core], atol=0.02)
    np.testing.assert_allclose(out[..., 1][core], np.broadcast_to(ey[:, None], out.shape[:2])[core], atol=0.02)
    # the inside map: canvas pixels whose centres fall on the image; zeros elsewhere
    np.testing.assert_array_equal(inside, ((ey >= 0) & (ey <= h))[:, None] & ((ex >= 0) & (ex <= w))[None, :])
    assert (out[~inside] == 0).all()
    d, _ = crop_resize(img[..., :1], x0, y0, side, size, nearest=True)  # depth maps: nearest, values kept
    assert set(np.unique(d[core])) <= set(np.unique(img[..., 0]))


def test_a_crop_far_larger_than_the_image_keeps_its_prefilter_small_and_its_mapping(monkeypatch):
    """A diverged fit or an absurd focal length asks for a crop far larger than the image: the antialiasing
    prefilter's kernel grows with the crop (a negative --focal made one of thousands of pixels, which ran for
    minutes, gigabytes growing). The image is area-shrunk first, so the Gaussian stays a few pixels wide, and the
    crop's mapping stays right: an image whose left half is red and right half blue lands where
    u = (x - x0) * size / side puts it, the halves meeting at its middle."""
    import cv2

    sigmas = []
    blur = cv2.GaussianBlur
    monkeypatch.setattr(cv2, "GaussianBlur", lambda src, k, **kw: sigmas.append(kw["sigmaX"]) or blur(src, k, **kw))
    h, w, size = 900, 1200, 512
    img = np.zeros((h, w, 3), np.float32)
    img[:, : w // 2, 0] = 1.0
    img[:, w // 2:, 2] = 1.0
    x0, y0, side = -1.9e4, -2.1e4, 4.0e4
    out, inside = crop_resize(img, x0, y0, side, size)
    s = size / side
    assert s < 1 / 64  # the shrinking path
    u = (np.arange(size) + 0.5) / s
    expect = ((y0 + u >= 0) & (y0 + u <= h))[:, None] & ((x0 + u >= 0) & (x0 + u <= w))[None, :]
    np.testing.assert_array_equal(inside, expect)
    rows = np.nonzero(inside.any(1))[0]
    mid = out[rows[len(rows) // 2]]
    red, blue = np.nonzero(inside.any(0) & (mid[:, 0] > 0.9))[0], np.nonzero(inside.any(0) & (mid[:, 2] > 0.9))[0]
    assert len(red) >= 4 and len(blue) >= 4 and red.max() < blue.min()
    assert abs((red.max() + blue.min()) / 2 + 0.5 - (w / 2 - x0) * s) <= 1.0
    assert sigmas and max(sigmas) < 2.0, sigmas  # 22.5 px without the shrinking (a 135-pixel kernel)


# --------------------------------------------------------------------------------------------------------- ARAP
def _grid_mesh(n=6):
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32),
                            indexing="ij")
    v = torch.stack([xs.flatten() * 5, ys.flatten() * 5, torch.sin(xs.flatten()) * 2], -1)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            tris += [[a, b, d], [a, d, c]]
    return v, torch.tensor(tris)


def _random_rotation(g):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return (q if torch.det(q) > 0 else -q).float()


def test_cotangent_edges_topology_is_cached_per_triangle_tensor(ict_model):
    """The edge list depends on the triangles only and is computed once per triangle tensor; the weights follow
    the vertices (cotangents do not change with scale), and a new tensor of the same triangles gives the same."""
    tris = ict_model.triangles
    e1, w1 = arap.cotangent_edges(ict_model.mean, tris)
    e2, w2 = arap.cotangent_edges(ict_model.mean * 1.1, tris)
    e3, w3 = arap.cotangent_edges(ict_model.mean, tris.clone())
    assert torch.equal(e1, e2) and torch.equal(e1, e3)
    torch.testing.assert_close(w1, w2, rtol=1e-3, atol=1e-3)  # float32 vertices scaled: rounding only
    assert torch.equal(w1, w3)
    assert bool((e1[:, 0] < e1[:, 1]).all()) and len(torch.unique(e1, dim=0)) == len(e1)
    # every triangle's three edges are listed
    t = tris.long()
    key = lambda a, b: torch.minimum(a, b) * ict_model.n_vertices + torch.maximum(a, b)  # noqa: E731
    listed = set((e1[:, 0] * ict_model.n_vertices + e1[:, 1]).tolist())
    assert all(set(key(t[:, a], t[:, b]).tolist()) <= listed for a, b in ((0, 1), (1, 2), (2, 0)))


def test_arap_rigid_motion_has_zero_energy():
    v, tris = _grid_mesh()
    g = torch.Generator().manual_seed(0)
    R = _random_rotation(g)
    moved = v @ R.T + torch.tensor([3.0, -2.0, 7.0])
    st = arap.init_state(v, tris, 1)
    for _ in range(4):  # the smoothness term uses the neighbours' previous rotations: a few local steps converge
        arap.solve_rotations(st, v[None], moved[None])
    e = float(arap.arap_energy(st, v[None], moved[None]))
    scale = float((st.weights * ((v[st.edges[:, 0]] - v[st.edges[:, 1]]) ** 2).sum(-1)).mean())  # ~ edge length^2
    assert e < 1e-5 * scale  # float32 round-off only
    # the solved rotations are the motion's rotation
    assert torch.allclose(st.rotations[0], R.expand_as(st.rotations[0]), atol=1e-3)
    # a non-rigid deformation costs energy
    bent = moved.clone()
    bent[:, 2] += 0.2 * v[:, 0]
    arap.solve_rotations(st, v[None], bent[None])
    assert float(arap.arap_energy(st, v[None], bent[None])) > 1e-3 * scale


def test_nearest_rotation_matches_svd():
    g = torch.Generator().manual_seed(1)
    S = torch.randn(500, 3, 3, generator=g)
    S[:5] = torch.diag(torch.tensor([1.0, 1.0, -1.0]))  # reflections: the SVD fallback
    R = arap.nearest_rotation(S)
    U, _, Vh = torch.linalg.svd(S.double())
    fix = torch.ones(500, 3, dtype=torch.float64)
    fix[:, 2] = torch.sign(torch.linalg.det(U @ Vh))
    R_ref = ((U * fix[:, None, :]) @ Vh).float()
    assert torch.allclose(torch.linalg.det(R), torch.ones(500), atol=1e-4)
    # same objective value tr(R^T S) (the maximiser is unique for generic S)
    obj = (R * S).sum((-1, -2))
    obj_ref = (R_ref * S).sum((-1, -2))
    assert torch.allclose(obj, obj_ref, atol=1e-4)
    assert torch.allclose(R[5:], R_ref[5:], atol=1e-3)


def test_arap_energy_gradient_pulls_back_to_rigid():
    v, tris = _grid_mesh()
    st = arap.init_state(v, tris, 1)
    d = (0.3 * torch.randn(1, *v.shape, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    opt = torch.optim.Adam([d], lr=0.05)
    e0 = None
    for it in range(60):
        if it % 5 == 0:
            arap.solve_rotations(st, v[None], (v + d).detach())
        opt.zero_grad()
        e = arap.arap_energy(st, v[None], v[None] + d)
        e0 = float(e.detach()) if e0 is None else e0
        e.backward()
        opt.step()
    assert float(e.detach()) < 0.2 * e0


def test_laplacian_smoother_keeps_smooth_fields_and_damps_noise():
    """(I + lam L)^-1: constant fields pass unchanged (L annihilates them), vertex-to-vertex noise is damped, and
    the result solves the system."""
    v, tris = _grid_mesh()
    st = arap.init_state(v, tris, 1)
    solve = arap.LaplacianSmoother(st.edges, st.weights, len(v), lam=20.0)
    const = torch.tensor([1.0, -2.0, 0.5]).expand(1, len(v), 3)
    assert torch.allclose(solve(const), const, atol=1e-5)
    noise = torch.randn(1, len(v), 3, generator=torch.Generator().manual_seed(3))
    out = solve(noise)
    assert float(out.std()) < 0.3 * float(noise.std())
    # residual of the linear system: x + lam L x = b
    e0, e1, w = st.edges[:, 0], st.edges[:, 1], st.weights
    Lx = torch.zeros_like(out[0])
    diff = (out[0, e0] - out[0, e1]) * w[:, None]
    Lx.index_add_(0, e0, diff)
    Lx.index_add_(0, e1, -diff)
    assert torch.allclose(out[0] + 20.0 * Lx, noise[0], atol=1e-4)


def test_smoothed_freeform_recovers_out_of_span_detail(ict_model):
    """Faces with detail outside the model's span, the free-form stage alone (colour + ARAP) started at the true
    span part of the shape with the true lighting and albedo: the preconditioned steps (``disp_smooth``) move the
    surface towards the true detail and come out smooth; plain per-vertex Adam steps of the same size roughen
    it and end further from the truth. The photos use ``shading="model"``, which the fit's colour term draws
    exactly, so what moves the surface is the missing detail alone, not shading the fit cannot draw. Measured:
    0.750 / 0.614 mm at the start; at colour weight 20 0.678 / 0.612 smoothed, 0.783 / 0.734 plain; at 160 (session
    13) 0.562 / 0.607 smoothed, 0.616 / 0.648 plain."""
    from dataclasses import replace

    from redafit.eval.synthetic import SyntheticConfig, render_case, true_appearance, true_parameters
    from redafit.fit.api import fit_batch

    full = FitConfig.preset("full", occlusion=False)  # the photos' model shading has no occlusion
    ff = full.stage("freeform")
    edges = arap.cotangent_edges(ict_model.mean, ict_model.triangles)[0]
    start, err, rough = [], {0.0: [], ff.disp_smooth: []}, {0.0: [], ff.disp_smooth: []}
    for i in (0, 1):
        case = render_case(ict_model, i, 1, replace(SyntheticConfig(), detail_mm=1.0, shading="model"))
        init = true_parameters(case, ict_model)
        init.update(true_appearance(case, ict_model, full.albedo_size))
        with torch.no_grad():
            span = ict_model(torch.as_tensor(init["id"], dtype=torch.float32),
                             torch.as_tensor(init["exp"], dtype=torch.float32))[0]
        start.append(_p2plane_verts(case, span.numpy(), ict_model))
        for lam in err:
            st = replace(ff, params=("disp",), iters=40, disp_smooth=lam,
                         losses={k: v for k, v in ff.losses.items() if k in ("color", "arap", "disp_l2")})
            res = fit_batch([case.image], [case.landmarks], ict_model, replace(full, stages=(st,)),
                            [case.intrinsics], init=init)[0]
            err[lam].append(_p2plane(case, res, ict_model))
            d = torch.as_tensor(res.vertices_model, dtype=torch.float32) - span
            rough[lam].append(float((d[edges[:, 0]] - d[edges[:, 1]]).norm(dim=-1).mean() / d.norm(dim=-1).mean()))
    smooth, plain = err[ff.disp_smooth], err[0.0]
    assert np.mean(smooth) < 0.97 * np.mean(start), (start, smooth)
    assert np.mean(smooth) < 0.95 * np.mean(plain), (smooth, plain)
    assert max(rough[ff.disp_smooth]) < 0.5 * min(rough[0.0]), rough


# -------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def synthetic_case(ict_model):
    from redafit.eval.synthetic import generate_synthetic

    # detector-level landmark noise (1.5 px = 2.5 % of the eye distance): the setting the defaults are tuned for
    return generate_synthetic(ict_model, 1, seed=5, landmark_noise=1.5)[0]


def _p2plane_verts(case, verts, model):
    """Point-to-plane error (mm) of a mesh with the model's triangles against a synthetic case's truth."""
    from redafit.eval.runner import Prediction, score

    tris = model.triangles.cpu().numpy()
    return score(case, Prediction(np.asarray(verts, np.float64), tris), model)[0]["point_to_plane_mm"]


def _p2plane(case, res, model):
    return _p2plane_verts(case, res.vertices_model, model)


def test_full_fit_beats_landmark_only_on_a_synthetic_face(ict_model, synthetic_case):
    c = synthetic_case
    lm = fit_image(c.image, c.landmarks, ict_model, FitConfig.preset("landmarks"), intrinsics=c.intrinsics)
    full = fit_image(c.image, c.landmarks, ict_model, FitConfig.preset("full"), intrinsics=c.intrinsics)
    e_lm, e_full = _p2plane(c, lm, ict_model), _p2plane(c, full, ict_model)
    assert e_full < e_lm, (e_lm, e_full)
    # quality report: one entry per stage with the metrics, and a plausible fit
    assert list(full.quality) == ["rigid", "landmarks", "attributes", "freeform"]
    for q in full.quality.values():
        assert {"landmark_error_px", "landmark_error_iod", "parsing_iou", "photometric_l21", "psnr_db"} <= set(q)
    q = full.quality
    assert q["freeform"]["parsing_iou"]["skin"] > 0.8
    assert q["freeform"]["psnr_db"] > q["landmarks"]["psnr_db"]
    assert full.failure is None
    assert full.landmark_error_px < 1.5 * q["landmarks"]["landmark_error_px"] + 0.5
    assert full.albedo is not None and full.albedo.shape[-1] == 3
    assert np.isfinite(full.vertices_model).all()


def test_true_depth_brings_the_fit_closer(ict_model, synthetic_case):
    """RGB-D: the case's true depth map (1 mm sensor noise) through the depth attribute takes the fit closer to the
    truth than colour and mask alone (the `fast` preset's stages, to keep the test short; measured 0.45 -> 0.23 mm
    on this case)."""
    from redafit.fit.attribute_stages import configure

    c = synthetic_case
    fast = FitConfig.preset("fast")
    rgb = fit_image(c.image, c.landmarks, ict_model, fast, intrinsics=c.intrinsics)
    rgbd = fit_image(c.image, c.landmarks, ict_model, configure(fast, attributes=("color", "mask", "depth")),
                     intrinsics=c.intrinsics, depth=c.depth)
    e_rgb, e_rgbd = _p2plane(c, rgb, ict_model), _p2plane(c, rgbd, ict_model)
    assert e_rgbd < 0.75 * e_rgb, (e_rgb, e_rgbd)
    # the quality report's depth error: it falls from the landmark stage to the end, towards the sensor noise
    d = {k: q["depth_error_mm"] for k, q in rgbd.quality.items()}
    assert d["freeform"] < 0.7 * d["landmarks"] and d["freeform"] < 2.0, d
    assert "depth_error_mm" not in rgb.quality["freeform"]


def test_landmark_sigma_trades_landmark_fit_for_prior(ict_model, synthetic_case):
    """Trusting the landmarks more (smaller sigma) fits them more closely with larger shape coefficients."""
    from dataclasses import replace

    c = synthetic_case
    res = {s: fit_image(c.image, c.landmarks, ict_model, replace(FitConfig.preset("landmarks"), landmark_sigma=s),
                        intrinsics=c.intrinsics) for s in (0.005, 0.05)}
    assert res[0.005].landmark_error_px < 0.8 * res[0.05].landmark_error_px
    assert np.linalg.norm(res[0.005].id_coeffs) > 1.5 * np.linalg.norm(res[0.05].id_coeffs)


@pytest.mark.parametrize("seed", [0, 5])
def test_model_and_image_labels_agree_at_the_true_parameters(ict_model, seed):
    """At the parameters a synthetic face was drawn with, the model's rendered parsing labels must match the
    labels parsed from its image: where they disagree, the mask term would pull a perfect fit away."""
    from dataclasses import replace

    from redafit.eval.synthetic import generate_synthetic, true_parameters
    from redafit.fit.api import fit_batch

    c = generate_synthetic(ict_model, 1, seed=seed)[0]
    full = FitConfig.preset("full")
    stage = replace(full.stage("attributes"), iters=0)
    res = fit_batch([c.image], [c.landmarks], ict_model, replace(full, stages=(stage,)), [c.intrinsics],
                    init=true_parameters(c, ict_model))[0]
    iou = res.quality["attributes"]["parsing_iou"]
    assert iou["skin"] > 0.93, iou
    assert min(iou[k] for k in ("upper_lip", "lower_lip")) > 0.6, iou


def test_true_parsing_map_agrees_with_the_model_labels_at_the_truth(ict_model, synthetic_case):
    """A synthetic case's true parsing map (what a perfect parser would give), passed as ``parsings``, replaces the
    photo's parsing: at the true parameters the model's rendered labels match it in all 7 regions - nose and brows
    as regions of their own, the lips closer than the landmark-drawn ones."""
    from dataclasses import replace

    from redafit.eval.synthetic import true_parameters, true_parsing
    from redafit.fit.api import fit_batch

    c = synthetic_case
    assert np.array_equal(true_parsing(c, ict_model), c.parsing)
    full = FitConfig.preset("full")
    probe = replace(full, stages=(replace(full.stage("attributes"), iters=0),))
    iou = {}
    for name, maps in (("photo", None), ("true", [c.parsing])):
        res = fit_batch([c.image], [c.landmarks], ict_model, probe, [c.intrinsics],
                        init=true_parameters(c, ict_model), parsings=maps)[0]
        iou[name] = res.quality["attributes"]["parsing_iou"]
    t = iou["true"]
    assert t["skin"] > 0.95 and min(t["nose"], t["brows"]) > 0.85, iou
    assert min(t["upper_lip"], t["lower_lip"]) > 0.8, iou
    for k in ("upper_lip", "lower_lip"):
        assert t[k] > iou["photo"][k], iou
    with pytest.raises(InputError, match="does not match the image"):
        fit_batch([c.image], [c.landmarks], ict_model, probe, [c.intrinsics], parsings=[c.parsing[:, :-2]])


def test_parsing_network_labels_drive_the_mask(ict_model, synthetic_case, tmp_path, monkeypatch):
    """With ``parsing_net`` the observed labels are the network's (a stand-in network: brows in the upper half of a
    disc around its crop's centre, nose in the lower half), and nose and brows stay regions of their own on both
    the photo and the model side; without a network they are compared as skin."""
    from dataclasses import replace

    from redafit.fit import attribute_stages
    from redafit.fit.api import fit_batch
    from redafit.parsing.model_labels import vertex_labels
    from redafit.parsing.network import CROP_FACTOR
    from redafit.parsing.regions import REGION_NAMES
    from tests.parsing._helpers import export_disc_network

    c = synthetic_case
    net = export_disc_network(tmp_path / "disc.pt", top="l_brow", bottom="nose", radius=0.3)
    seen = []
    prepare = attribute_stages.prepare

    def spy(ctx, images, config, **kw):
        seen.append(ctx.extras)
        return prepare(ctx, images, config, **kw)

    monkeypatch.setattr(attribute_stages, "prepare", spy)
    full = FitConfig.preset("full")
    S = 96
    probe = replace(full, stages=(replace(full.stage("attributes"), iters=0),), fit_size=S)
    ex, res = {}, {}
    for name, cfg in (("landmarks", probe), ("network", replace(probe, parsing_net=str(net)))):
        res[name] = fit_batch([c.image], [c.landmarks], ict_model, cfg, [c.intrinsics])[0]
        ex[name] = seen[-1]
    nose, brows = REGION_NAMES.index("nose"), REGION_NAMES.index("brows")
    # the network's disc, in fit pixels (the fit's square crop, then the network's own crop around the landmarks)
    x0, y0, side = face_crop(c.landmarks)
    lm = (c.landmarks - np.array([x0, y0])) * S / side
    lo, hi = lm.min(0), lm.max(0)
    net_side = CROP_FACTOR * float(max(hi - lo))
    centre = (lo + hi) / 2 - np.array([0.0, 0.1 * net_side])
    R = 0.3 * net_side
    obs = ex["network"]["labels_obs"][0].cpu().numpy()  # [S, S, 7]
    idx = np.where(obs.max(-1) > 0.5, obs.argmax(-1), -1)
    for offset, want in (((0, -0.5), brows), ((0, 0.5), nose), ((-0.5, -0.3), brows), ((0.5, 0.3), nose),
                         ((0, -1.2), -1), ((1.2, 0.2), -1)):
        x, y = (centre + R * np.array(offset)).astype(int)
        assert idx[y, x] == want, (offset, idx[y, x], want)
    assert set(np.unique(idx)) == {-1, brows, nose}
    assert abs((idx >= 0).sum() / (np.pi * R * R) - 1) < 0.1
    # all 7 model regions kept with a network; nose and brows merged into skin without one, on both sides
    torch.testing.assert_close(ex["network"]["vlabels"], vertex_labels(ict_model))
    assert ex["network"]["vlabels"][:, [nose, brows]].sum() > 0
    for side_labels in (ex["landmarks"]["vlabels"], ex["landmarks"]["labels_obs"]):
        assert float(side_labels[..., [nose, brows]].sum()) == 0
    assert {"nose", "brows"} <= set(res["network"].quality["attributes"]["parsing_iou"])
    assert not {"nose", "brows"} & set(res["landmarks"].quality["attributes"]["parsing_iou"])


def test_colour_term_keeps_a_perfect_fit_in_place(ict_model, monkeypatch):
    """Started at the true parameters with exact landmarks and weak priors, the colour + landmark stage must stay
    near the truth: a biased colour term pulls it away. The region albedo (brows, eyes, lips, mouth on top of the
    smooth map) and comparing colour only inside the rendered face area are what keep it there; the older
    formulation (map only, every valid pixel) drifts clearly further. The photos use ``shading="model"`` (per-vertex
    SH, what the colour term draws), so a drift is the term's own bias, not light it cannot model."""
    from dataclasses import replace

    import redafit.fit.attribute_stages as A
    from redafit.eval.synthetic import SyntheticConfig, render_case, true_parameters
    from redafit.fit.api import fit_batch

    # model shading: no occlusion, no highlight; the landmark guard off: it would hold exact landmarks at the truth,
    # and this measures where the colour term alone pulls
    full = replace(FitConfig.preset("full"), landmark_sigma=0.0025, occlusion=False, specular=False,
                   landmark_guard=False)
    st = full.stage("attributes")
    st = replace(st, losses={k: v for k, v in st.losses.items() if k != "mask"}, iters=60,
                 lr={k: v * 0.2 for k, v in st.lr.items()})
    cfg = replace(full, stages=(st,))

    def drift(case):
        res = fit_batch([case.image], [case.landmarks], ict_model, cfg, [case.intrinsics],
                        init=true_parameters(case, ict_model))[0]
        return _p2plane(case, res, ict_model)

    cases = [render_case(ict_model, i, 1, replace(SyntheticConfig(), size=256, shading="model")) for i in (2, 3)]
    now = [drift(c) for c in cases]
    monkeypatch.setattr(A, "ALBEDO_REGIONS", ())
    monkeypatch.setattr(A, "INTERIOR_COVERAGE", 0.0)
    before = [drift(c) for c in cases]
    # measured (colour weight 10, 4^2 albedo map): 0.70 / 0.42 mm now, 0.95 / 0.86 before (16^2 map: 0.46 / 0.47
    # vs 0.74 / 0.68); landmarks alone ~0.15
    assert max(now) < 0.75, now
    assert np.mean(now) < 0.8 * np.mean(before), (now, before)


def test_albedo_map_reaches_the_uv_border(ict_model):
    """A constant albedo map gives every vertex that colour, also those within half a texel of the UV square's
    edge: with zero padding they were darkened (15 % of ICT's face vertices at 4^2, 1.7 % at 16^2)."""
    from redafit.fit.attribute_stages import _vertex_uv, sample_albedo

    vuv = _vertex_uv(ict_model)
    for size in (2, 4, 16):
        out = sample_albedo(torch.full((1, size, size, 3), 0.6), torch.zeros(1, 7, 3), vuv, None)
        assert torch.allclose(out, torch.full_like(out, 0.6), atol=1e-6), size


def test_albedo_smoothness_is_per_unit_of_uv():
    """The same albedo field (a linear ramp across the UV square, and a smooth wave) scores the same smoothness
    penalty on a 4², 8² or 16² map, so one weight means one prior whatever ``albedo_size``."""
    from types import SimpleNamespace

    from redafit.fit.attribute_stages import albedo_smooth

    def penalty(field, n):
        u = (torch.arange(n) + 0.5) / n  # texel centres
        a = field(u[None, :].expand(n, n), u[:, None].expand(n, n))[None, ..., None].expand(1, n, n, 3)
        return float(albedo_smooth(SimpleNamespace(params=SimpleNamespace(albedo=a)), None))

    ramp = lambda u, v: 0.5 + 0.1 * u  # noqa: E731
    assert [round(penalty(ramp, n), 6) for n in (4, 8, 16)] == [0.01] * 3
    wave = lambda u, v: 0.5 + 0.05 * torch.sin(2 * math.pi * u) * torch.cos(math.pi * v)  # noqa: E731
    vals = [penalty(wave, n) for n in (8, 16, 32)]
    assert max(vals) < 1.15 * min(vals), vals


def test_project_albedo_draws_a_synthetic_face_albedo(ict_model):
    """The least-squares albedo parameters reproduce a synthetic face's per-vertex albedo (skin, darker brows,
    red lips) on the face area far better than its mean colour does, and a 16² map far better than a 4² one
    (the low-frequency skin variation; measured rms 0.015 vs 0.0035)."""
    from dataclasses import replace

    from redafit.eval.synthetic import SyntheticConfig, render_case
    from redafit.fit.attribute_stages import _vertex_uv, albedo_basis, project_albedo, sample_albedo
    from redafit.parsing.model_labels import vertex_face_area

    case = render_case(ict_model, 0, 1, replace(SyntheticConfig(), size=64))
    truth = torch.as_tensor(case.meta["albedo_vertex"])
    face = vertex_face_area(ict_model)
    const = ((truth - truth[face].mean(0))[face] ** 2).mean().sqrt()
    rms_of = {}
    for size in (4, 16):
        alb, reg = project_albedo(ict_model, truth.numpy(), size)
        assert alb.shape == (1, size, size, 3) and reg.shape == (1, 7, 3)
        drawn = sample_albedo(torch.as_tensor(alb), torch.as_tensor(reg), _vertex_uv(ict_model),
                              albedo_basis(ict_model))[0]
        rms = ((drawn - truth)[face] ** 2).mean().sqrt()
        assert rms < 0.4 * const, (size, float(rms), float(const))
        rms_of[size] = float(rms)
    assert rms_of[16] < 0.5 * rms_of[4], rms_of


def test_occlusion_draws_a_physically_shaded_face_more_closely(ict_model):
    """At the truth of physically shaded synthetic faces (their true lighting and albedo, no step taken), the colour
    attribute's z-buffer render is closer to the photo over the face (photometric L2,1 of the quality report) with
    the mean shape's ambient occlusion on the ambient light (:attr:`FitConfig.occlusion`) than without: the
    sockets, nostrils and mouth corners of a photo are darker than an unoccluded Lambertian face draws them."""
    from dataclasses import replace

    from redafit.eval.synthetic import SyntheticConfig, TruthStartMethod, render_case, true_appearance, true_parameters
    from redafit.fit.api import fit_batch

    err = {False: [], True: []}
    for i in (0, 1):
        case = render_case(ict_model, i, 1, replace(SyntheticConfig(), size=256))
        for occ in err:
            cfg = TruthStartMethod(("landmarks", "color"), "true", occlusion=occ).config()
            assert cfg.occlusion is occ
            st = replace(cfg.stages[0], params=("sh",), iters=40)  # the light re-fitted to the shading model
            init = {**true_parameters(case, ict_model), **true_appearance(case, ict_model, cfg.albedo_size)}
            res = fit_batch([case.image], [case.landmarks], ict_model, replace(cfg, stages=(st,)),
                            [case.intrinsics], init=init)[0]
            err[occ].append(res.quality["truth_start"]["photometric_l21"])
    # measured: L2,1 0.0471 / 0.0313 off, 0.0373 / 0.0302 on
    assert all(on < off for on, off in zip(err[True], err[False])), err


def test_truth_start_keeps_the_given_appearance(ict_model):
    """``init`` sh / albedo replace the attribute stage's own starts, and a stage that does not train them keeps
    them: started at a synthetic face's truth with its true appearance and exact landmarks, the landmark +
    colour stage stays near the truth (the error-budget table of bench_reda_fit). The photo uses
    ``shading="model"``, which that appearance draws exactly (hence the high PSNR)."""
    from dataclasses import replace

    from redafit.eval.synthetic import SyntheticConfig, TruthStartMethod, render_case, true_appearance, true_parameters
    from redafit.fit.api import fit_batch

    est = TruthStartMethod(("landmarks", "color"), "estimated").config().stages[0]
    assert {"sh", "albedo", "albedo_reg"} <= set(est.params) and "sh_prior" in est.losses
    method = TruthStartMethod(("landmarks", "color"), "true", occlusion=False)  # model shading has no occlusion
    cfg = method.config()
    st = cfg.stages[0]
    assert not {"sh", "albedo", "albedo_reg", "disp"} & set(st.params) and "mask" not in st.losses
    assert TruthStartMethod(("landmarks", "color"), "true", albedo_size=16).config().albedo_size == 16
    case = render_case(ict_model, 3, 1, replace(SyntheticConfig(), size=256, shading="model"))
    init = {**true_parameters(case, ict_model), **true_appearance(case, ict_model, cfg.albedo_size)}
    res = fit_batch([case.image], [case.landmarks], ict_model, replace(cfg, stages=(replace(st, iters=40),)),
                    [case.intrinsics], init=init)[0]
    np.testing.assert_allclose(res.sh, init["sh"][0], atol=1e-6)
    np.testing.assert_allclose(res.albedo, np.clip(init["albedo"][0], 0, 1), atol=1e-6)
    from redafit.eval.runner import MeanMethod, score

    mean_face, _, _ = score(case, MeanMethod()(case, ict_model), ict_model)
    # measured: 0.59 mm after 40 iterations (the default shape priors pull towards the mean), mean face 1.2
    assert _p2plane(case, res, ict_model) < 0.6 * mean_face["point_to_plane_mm"]
    assert res.quality["truth_start"]["psnr_db"] > 33


def test_colour_is_compared_unpremultiplied_by_the_soft_coverage():
    """The colour term compares the render's colour, not the colour times its soft coverage: on the compared rim
    pixels (coverage 0.99-1) the premultiplied render is darker than the observation however exact the fit, and
    with an L1 loss that pulled the silhouette outwards at the full colour weight. A flat quad of a constant colour
    observed exactly: the compared values equal the colour and its vertices feel no pull; premultiplied they did."""
    from types import SimpleNamespace

    import redafit.fit.attribute_stages as A
    from redafit.render.reda import observed_pyramid, reda_loss, soft_render

    cfg = A.fit_render_config(pyramid_levels=2, sigma=1.0, kernel_size=5)  # 5 taps: partial rim coverage
    w = 500.0  # a square over the middle of the image turned by 30 degrees (staircase edges), at depth w
    c, s_ = math.cos(math.pi / 6), math.sin(math.pi / 6)
    xy = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) @ torch.tensor([[c, s_], [-s_, c]]) * w
    clip0 = torch.cat([xy, torch.full((4, 1), 0.5 * w), torch.full((4, 1), w)], -1)
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    colour = torch.tensor([0.7, 0.5, 0.4])
    grads = {}
    for unpremultiply in (True, False):
        clip = clip0[None].clone().requires_grad_()
        soft = soft_render(clip, tris, colour.expand(4, 3), (32, 32), cfg)
        ctx = SimpleNamespace(cache={"soft": (soft, {"color": (0, 3)})}, extras={"render_cfg": cfg})
        v = (soft.alpha.detach() >= A.INTERIOR_COVERAGE).float()
        rim = v.bool() & (soft.alpha.detach() < 0.9999)
        assert rim.any()  # there are compared pixels with partial soft coverage
        pyr = A._channels_pyramid(ctx, "color", v, unpremultiply=unpremultiply)
        if unpremultiply:
            assert torch.allclose(pyr[0][rim.expand_as(pyr[0])].view(-1, 3), colour, atol=1e-6)
        obs = observed_pyramid(colour.expand(1, 32, 32, 3), v, cfg)
        reda_loss(pyr, obs).backward()
        grads[unpremultiply] = clip.grad.abs().max().item()
    assert grads[True] < 1e-3 * grads[False], grads


def test_coarse_levels_fade_over_the_stage():
    """StageConfig.coarse_levels: the coarser levels' weight goes linearly from its first to its last value over the
    stage; level 0 keeps weight 1; the plain sum and the z-buffer get no weights."""
    from dataclasses import replace
    from types import SimpleNamespace

    import redafit.fit.attribute_stages as A
    from redafit.config import RenderConfig

    stage = replace(FitConfig.preset("full").stage("attributes"), iters=5, coarse_levels=(1.0, 0.0))
    ctx = SimpleNamespace(extras={"render_cfg": A.fit_render_config(pyramid_levels=3)}, iteration=0)
    assert A.level_weights(ctx, stage) == [1.0, 1.0, 1.0]
    ctx.iteration = 2
    assert A.level_weights(ctx, stage) == [1.0, 0.5, 0.5]
    ctx.iteration = 4
    assert A.level_weights(ctx, stage) == [1.0, 0.0, 0.0]
    assert A.level_weights(ctx, replace(stage, coarse_levels=(1.0, 1.0))) is None
    ctx.extras["render_cfg"] = RenderConfig.zbuffer()
    assert A.level_weights(ctx, stage) is None
    full = FitConfig.preset("full")
    assert full.stage("attributes").coarse_levels == A.COARSE_LEVELS
    assert full.stage("freeform").coarse_levels == (A.COARSE_LEVELS[1],) * 2
