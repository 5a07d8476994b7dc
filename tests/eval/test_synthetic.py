"""The synthetic benchmark: determinism, landmarks on the rendered face, written files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from redafit.eval.datasets import open_dataset
from redafit.eval.synthetic import (
    default_landmark_vertices,
    generate_synthetic,
    region_labels,
)

SIZE = 128


@pytest.fixture(scope="module")
def cases(face_model):
    return generate_synthetic(face_model, 2, seed=7, size=SIZE, landmark_noise=1.5)


def test_deterministic_in_seed(face_model, cases):
    again = generate_synthetic(face_model, 1, seed=7, size=SIZE, landmark_noise=1.5)
    for a, b in zip(cases, again):
        assert a.id == b.id
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(a.scan_vertices, b.scan_vertices)
    other = generate_synthetic(face_model, 1, seed=8, size=SIZE, supersample=1)[0]
    assert not np.array_equal(other.image, cases[0].image)


def test_case_contents(face_model, cases):
    for c in cases:
        assert c.image.shape == (SIZE, SIZE, 3) and c.image.dtype == np.float32
        assert 0.0 <= c.image.min() and c.image.max() <= 1.0
        assert c.scan_vertices.shape == (face_model.n_vertices, 3)
        p = c.meta["params"]
        assert abs(p["pose"]["yaw_deg"]) <= 45 and abs(p["pose"]["pitch_deg"]) <= 20
        assert abs(p["pose"]["roll_deg"]) <= 10
        assert 0.15 < c.meta["mask_fraction"] < 0.8  # the face fills a plausible part of the image
        exp = np.array(list(p["expression"].values()))
        if face_model.info.expression_prior == "unit":
            assert 1 <= len(exp) <= 3 and ((exp >= 0) & (exp <= 1)).all()
        # noisy landmark file vs exact projection: noise of the configured size
        d = c.landmarks - c.meta["landmarks_gt"]
        assert 0.5 < np.nanstd(d) < 3.0


def test_landmarks_project_onto_the_face(face_model, cases):
    """Ground-truth landmarks are the projections of the (camera-frame) landmark vertices and land on the face."""
    import torch

    from redafit.render import rasterize
    from redafit.render.camera import project, to_clip

    lid = default_landmark_vertices(face_model)
    for c in cases:
        lm = c.meta["landmarks_gt"]
        assert np.isfinite(lm).all()
        assert (lm > 0).all() and (lm < SIZE).all()
        vc = torch.tensor(c.meta["vertices_camera"], dtype=torch.float32)[None]
        uv = project(vc, c.intrinsics)[0].numpy()
        np.testing.assert_allclose(lm[17:], uv[lid[17:]], atol=1e-3)  # inner points: fixed vertices
        frags = rasterize(to_clip(vc, c.intrinsics), face_model.triangles, (SIZE, SIZE))
        mask = (frags.tri_id[0] >= 0).numpy()
        ij = np.clip(lm.astype(int), 0, SIZE - 1)
        on_face = mask[ij[:, 1], ij[:, 0]]
        assert on_face[17:].mean() > 0.9  # brows, eyes, nose, mouth inside the rendered face
        # the jaw outline on the occluding side is the extreme of the face there
        side = c.meta["params"]["jaw"]["occluding"]
        if side is not None:
            pts = lm[0:8] if side == "right" else lm[9:17]
            fixed = uv[lid[0:8]] if side == "right" else uv[lid[9:17]]
            toward = -1 if side == "right" and fixed[:, 0].mean() < uv[lid].mean(0)[0] else 1
            if side == "left":
                toward = 1 if fixed[:, 0].mean() > uv[lid].mean(0)[0] else -1
            assert (toward * (pts[:, 0] - fixed[:, 0]) >= -1e-6).all()


def test_written_files_and_manifest(face_model, tmp_path):
    cases = generate_synthetic(face_model, 1, seed=3, size=64, out_dir=tmp_path, supersample=1)
    d = tmp_path / cases[0].id
    for name in ("image.png", "landmarks.pts", "landmarks_gt.pts", "parsing.png", "depth.png", "mesh_model.obj",
                 "gt.npz", "params.json"):
        assert (d / name).is_file(), name
    from redafit.parsing.maps import load_parsing_map

    np.testing.assert_array_equal(load_parsing_map(d / "parsing.png"), cases[0].parsing)
    assert json.loads((d / "params.json").read_text())["seed"] == 3
    from redafit.landmarks import read_landmarks

    np.testing.assert_allclose(read_landmarks(d / "landmarks_gt.pts"), cases[0].meta["landmarks_gt"], atol=1e-3)
    again = open_dataset("manifest", manifest=tmp_path / "manifest.csv").cases()
    gt = again[0].load_ground_truth()
    np.testing.assert_allclose(gt.vertices, cases[0].scan_vertices, atol=1e-3)
    np.testing.assert_allclose(gt.nose_tip, cases[0].nose_tip, atol=1e-3)
    np.testing.assert_array_equal(again[0].load_parsing(), cases[0].parsing)  # the manifest's parsing column
    np.testing.assert_array_equal(again[0].load_depth(), cases[0].depth)  # its depth column (16-bit mm PNG)


def test_focal_factor_sets_the_camera_and_its_distance(face_model, tmp_path):
    """``focal_factor`` 0.8 (a phone's ~25 mm lens) against the default 1.6: the same face, filling about the same
    share of the image from about half the distance; the manifest's focal column carries the camera back."""
    from redafit.render.camera import DEFAULT_FOCAL_FACTOR

    near = generate_synthetic(face_model, 1, seed=5, size=SIZE, supersample=1, focal_factor=0.8,
                              out_dir=tmp_path)[0]
    far = generate_synthetic(face_model, 1, seed=5, size=SIZE, supersample=1)[0]
    assert near.intrinsics.fx == pytest.approx(0.8 * SIZE) and far.intrinsics.fx == DEFAULT_FOCAL_FACTOR * SIZE
    np.testing.assert_array_equal(near.scan_vertices, far.scan_vertices)
    z_near, z_far = (np.median(c.meta["vertices_camera"][:, 2]) for c in (near, far))
    assert z_near / z_far == pytest.approx(0.5, abs=0.08)
    assert near.meta["mask_fraction"] == pytest.approx(far.meta["mask_fraction"], rel=0.25)
    again = open_dataset("manifest", manifest=tmp_path / "manifest.csv").cases()[0]
    assert again.focal == f"{0.8 * SIZE:g}px" and again.intrinsics is None
    image, K = again.load_image_camera()
    assert image.shape == (SIZE, SIZE, 3) and K.fx == pytest.approx(near.intrinsics.fx)
    assert (K.cx, K.cy) == (near.intrinsics.cx, near.intrinsics.cy)


def test_true_depth_is_the_camera_z_of_the_surface(face_model, cases):
    """The true depth map: 0 off the mesh, the camera-frame z (mm) of the visible surface on it - at the projected
    nose tip the nose tip's own z, nearer than the cheeks' - with 1 mm sensor noise rounded to whole mm."""
    from redafit.eval.synthetic import render_depth

    for c in cases:
        d = c.depth
        vc = c.meta["vertices_camera"]
        exact = render_depth(vc, c.scan_faces, c.intrinsics, d.shape)
        assert d.shape == c.image.shape[:2] and np.array_equal(d > 0, exact > 0) and d[0, 0] == 0
        assert np.array_equal(d, np.round(d))
        on = exact > 0
        assert 0.9 < np.std(d[on] - exact[on]) < 1.2 and abs(np.mean(d[on] - exact[on])) < 0.1
        nose = face_model.landmark_ids.cpu().numpy()[30]
        x, y = c.meta["landmarks_gt"][30]
        assert abs(exact[int(y), int(x)] - vc[nose, 2]) < 2.0
        assert vc[:, 2].min() - 1 <= exact[on].min() and exact[on].max() <= vc[:, 2].max() + 1


def test_true_parsing_puts_the_true_landmarks_in_their_regions(face_model, cases):
    """The true parsing map: the projected true landmarks fall in their regions (nose tip and nostrils in the
    nose, brow centres in the brows), both lips are there, the face is surrounded by the rest of
    the model's surface (class neck) and background, and the map is what the model draws at the case's pose."""
    from redafit.eval.synthetic import true_parsing
    from redafit.parsing.regions import load_region_spec

    names = load_region_spec()["network_classes"]["names"]
    for c in cases:
        p = c.parsing
        assert p.shape == c.image.shape[:2] and np.array_equal(true_parsing(c, face_model), p)
        lm = c.meta["landmarks_gt"]
        for i, want in ((30, "nose"), (33, "nose"), (19, "l_brow"), (24, "l_brow")):
            x, y = lm[i]
            assert names[p[int(y), int(x)]] == want, (c.id, i, names[p[int(y), int(x)]])
        assert p[0, 0] == 0 and (p == names.index("neck")).any()
        assert min((p == names.index(k)).sum() for k in ("u_lip", "l_lip")) > 5
        face = np.isin(p, [names.index(k) for k in ("skin", "l_brow", "l_eye", "nose", "u_lip", "l_lip", "mouth")])
        assert 0.1 < face.mean() < 0.6


def test_region_labels_have_features(face_model):
    lab = region_labels(face_model)
    assert lab.shape == (face_model.n_vertices,)
    for r in (0, 1, 2, 4, 5):  # skin, brows, eyes, lips
        assert (lab == r).any(), r


def test_out_of_span_detail(face_model, cases):
    """``detail_mm``: the same case (parameters, landmark noise draw) with a smooth displacement along the normals
    of the stated RMS over the face area, none outside it, and a part the model's bases cannot express."""
    import torch

    from redafit.eval.synthetic import _face_area

    c0 = cases[0]
    c1 = generate_synthetic(face_model, 1, seed=7, size=SIZE, landmark_noise=1.5, detail_mm=1.0)[0]
    assert c1.meta["params"]["identity"] == c0.meta["params"]["identity"]
    np.testing.assert_allclose(c1.landmarks - c1.meta["landmarks_gt"], c0.landmarks - c0.meta["landmarks_gt"])
    d = c1.scan_vertices - c0.scan_vertices
    area = _face_area(face_model)
    if area is None:
        area = np.ones(len(d), bool)
    assert np.sqrt((d[area] ** 2).sum(1).mean()) == pytest.approx(1.0, rel=1e-3)
    assert np.abs(d[~area]).max(initial=0.0) == 0.0
    assert not np.array_equal(c0.image, c1.image)
    from redafit.eval.runner import load_cases  # what `redafit eval --detail-mm` goes through

    again = load_cases("synthetic", face_model, n=1, seed=7, size=SIZE, landmark_noise=1.5, detail_mm=1.0)[0]
    np.testing.assert_array_equal(again.scan_vertices, c1.scan_vertices)
    B = torch.cat([face_model.id_basis.flatten(1), face_model.exp_basis.flatten(1)]).double().numpy()
    coef = np.linalg.lstsq(B.T, d.reshape(-1), rcond=None)[0]
    outside = d.reshape(-1) - B.T @ coef
    assert (outside ** 2).sum() > 0.2 * (d ** 2).sum()


def test_bad_arguments(face_model):
    from redafit.errors import InputError

    with pytest.raises(InputError):
        generate_synthetic(face_model, -1)
    with pytest.raises(InputError):
        generate_synthetic(face_model, 1, size=8)


def test_albedo_texture_statistics():
    from redafit.eval.synthetic import albedo_texture

    pts = np.random.default_rng(0).uniform(-80, 80, (20000, 3))
    t = albedo_texture(pts, np.random.default_rng(1), 0.03)
    assert abs(t.mean() - 1.0) < 0.003 and 0.025 < t.std() < 0.035
    # fine: points 1 mm apart still agree far better than random points do
    near = albedo_texture(pts + [1.0, 0.0, 0.0], np.random.default_rng(1), 0.03)
    assert np.corrcoef(t, near)[0, 1] > 0.3


def test_physical_and_model_shading(face_model):
    """``shading="model"`` is the fit's own Gouraud SH image formation; ``"physical"`` the same scene shaded per
    pixel. With its extras off the two agree up to the SH approximation of max(cos, 0); the extras (shadows,
    occlusion, highlight, texture) are what changes the face, and none changes the geometry, landmarks or
    background."""
    from dataclasses import replace

    from redafit.eval.synthetic import SyntheticConfig, render_case

    cfg = replace(SyntheticConfig(), size=SIZE, image_noise=0.0)
    model = render_case(face_model, 0, 5, replace(cfg, shading="model"))
    plain = render_case(face_model, 0, 5, replace(cfg, specular=0.0, shadows=False, occlusion=False, texture=0.0))
    full = render_case(face_model, 0, 5, cfg)
    assert full.meta["params"]["look"]["shading"] == "physical"
    np.testing.assert_array_equal(model.scan_vertices, full.scan_vertices)
    np.testing.assert_array_equal(model.landmarks, full.landmarks)
    assert model.meta["params"]["sh"] == full.meta["params"]["sh"]
    diff_plain = np.abs(model.image - plain.image).max(-1)
    diff_full = np.abs(model.image - full.image).max(-1)
    face = diff_full > 0  # where the face is (the background is the same image)
    assert 0.1 < face.mean() < 0.8
    assert np.median(diff_plain[face]) < 0.02  # per-pixel clamped cosine ~ per-vertex SH
    assert np.median(diff_full[face]) > 2 * np.median(diff_plain[face])
    from redafit.errors import InputError

    with pytest.raises(InputError, match="shading"):
        render_case(face_model, 0, 5, replace(cfg, shading="phong"))
    from redafit.eval.runner import load_cases  # what `redafit eval --shading` goes through

    again = load_cases("synthetic", face_model, n=1, seed=5, size=SIZE, shading="model")[0]
    assert again.meta["params"]["look"] == {"shading": "model"}
    assert np.abs(again.image - model.image).mean() < 0.012  # the same picture, with sensor noise (std 0.01)


def test_microfacet_highlight():
    """Torrance-Sparrow (GGX, Schlick Fresnel, Smith shadowing) divided by its head-on peak: 1 at n = l = v, falling
    away from the mirror direction, zero where the light does not reach, brighter at grazing mirror angles
    (Fresnel), and a rougher surface spreads the lobe."""
    from redafit.eval.synthetic import microfacet_highlight

    d = np.array([0.0, 0.0, -1.0])
    a = np.linspace(0, 1.0, 6)
    n = np.stack([np.sin(a), np.zeros(6), -np.cos(a)], -1)
    view = np.tile(d, (6, 1))
    h = microfacet_highlight(n, d, view, 0.35)
    assert h[0] == pytest.approx(1.0, rel=1e-6) and np.all(np.diff(h) < 0)
    assert microfacet_highlight(-n, d, view, 0.35).max() == 0
    # mirror configurations: light and view symmetric about the normal (0, 0, -1) at growing angles
    t = np.radians([0.0, 40.0, 75.0])
    lights = np.stack([np.sin(t), np.zeros(3), -np.cos(t)], -1)
    views = np.stack([-np.sin(t), np.zeros(3), -np.cos(t)], -1)
    nz = np.array([[0.0, 0.0, -1.0]])
    peak = [microfacet_highlight(nz, lights[i], views[i:i + 1], 0.35)[0] for i in range(3)]
    assert peak[0] < peak[2] and peak[2] > 1.5 * peak[0]  # Fresnel at 75 degrees
    off = microfacet_highlight(n[3:4], d, view[:1], 0.45)[0], microfacet_highlight(n[3:4], d, view[:1], 0.25)[0]
    assert off[0] > off[1]  # 34 degrees off the mirror direction: the rougher lobe is wider


def test_oiliness_is_smooth_and_bounded():
    from redafit.eval.synthetic import oiliness

    pts = np.random.default_rng(0).uniform(-80, 80, (20000, 3))
    o = oiliness(pts, np.random.default_rng(1))
    assert o.min() >= 0.5 - 1e-9 and o.max() <= 2.0 + 1e-9 and 0.8 < np.median(o) < 1.25 and o.std() > 0.1
    near = oiliness(pts + [3.0, 0.0, 0.0], np.random.default_rng(1))
    assert np.corrcoef(np.log(o), np.log(near))[0, 1] > 0.9  # 3 mm apart: nearly the same


def test_highlight_models_change_only_the_highlight(face_model):
    """``highlight="microfacet"`` (default) and ``"blinn-phong"`` (the images of sessions 10-18) draw the same scene
    but for the highlight: without one (``specular=0``) the two images are equal."""
    from dataclasses import replace

    from redafit.errors import InputError
    from redafit.eval.synthetic import SyntheticConfig, render_case

    cfg = replace(SyntheticConfig(), size=SIZE, image_noise=0.0)
    mf, bp = (render_case(face_model, 1, 5, replace(cfg, highlight=h)) for h in ("microfacet", "blinn-phong"))
    assert mf.meta["params"]["look"]["highlight"] == "microfacet" and "roughness" in mf.meta["params"]["look"]
    assert bp.meta["params"]["look"]["highlight"] == "blinn-phong" and "shininess" in bp.meta["params"]["look"]
    assert np.abs(mf.image - bp.image).max() > 0.02
    dull = [render_case(face_model, 1, 5, replace(cfg, highlight=h, specular=0.0)).image
            for h in ("microfacet", "blinn-phong")]
    np.testing.assert_array_equal(dull[0], dull[1])
    with pytest.raises(InputError, match="highlight"):
        render_case(face_model, 1, 5, replace(cfg, highlight="phong"))
