"""Metrics and protocols: exact point-to-surface, known answers (self = 0, known noise, known transform)."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.errors import InputError
from redafit.eval.alignment import Similarity
from redafit.eval.metrics import (
    NOW_LANDMARKS_68,
    closest_point_on_triangles,
    closest_points_on_mesh,
    crop_mask,
    estimate_nose_tip,
    micc_protocol,
    now_protocol,
    point_to_plane,
    summarize,
    symmetric_point_to_point,
    vertex_normals,
)
from redafit.render.camera import euler_to_r, rodrigues


def _face(model):
    return model.mean.double().numpy(), model.triangles.numpy(), model.landmark_ids.numpy()


def test_point_triangle_regions():
    a, b, c = np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    cases = {  # query -> expected closest point
        (0.2, 0.2, 3.0): (0.2, 0.2, 0.0),  # interior, above the plane
        (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0),  # vertex a region
        (2.0, -0.5, 0.0): (1.0, 0.0, 0.0),  # vertex b region
        (0.5, -2.0, 1.0): (0.5, 0.0, 0.0),  # edge ab
        (-2.0, 0.5, 0.0): (0.0, 0.5, 0.0),  # edge ac
        (1.0, 1.0, 0.0): (0.5, 0.5, 0.0),  # edge bc
        (-0.5, 3.0, 0.0): (0.0, 1.0, 0.0),  # vertex c region
    }
    for q, want in cases.items():
        cl, bary = closest_point_on_triangles(np.array([q]), a, b, c)
        np.testing.assert_allclose(cl[0], want, atol=1e-12)
        np.testing.assert_allclose(bary.sum(), 1.0)


def test_closest_points_match_brute_force(ellipsoid):
    v, f = ellipsoid
    p = np.random.default_rng(0).normal(size=(150, 3)) * 70
    got = closest_points_on_mesh(p, v, f)
    tri = v[f]
    for i in range(len(p)):
        cl, _ = closest_point_on_triangles(np.repeat(p[i:i + 1], len(f), 0), tri[:, 0], tri[:, 1], tri[:, 2])
        assert got.distances[i] == pytest.approx(np.linalg.norm(cl - p[i], axis=1).min(), abs=1e-9)
    # the returned barycentric point lies on the returned triangle
    recon = (v[f[got.triangles]] * got.barycentric[:, :, None]).sum(1)
    np.testing.assert_allclose(recon, got.points, atol=1e-9)


def test_point_to_plane_of_a_plane_offset():
    g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij"), -1).reshape(-1, 2)
    v = np.c_[g, np.zeros(len(g))]
    n = np.tile([0.0, 0.0, 1.0], (len(v), 1))
    d = point_to_plane(v + [0.3, 0.2, 1.5], v, n)
    np.testing.assert_allclose(d, 1.5)


def test_vertex_normals_point_outward(ellipsoid):
    v, f = ellipsoid
    n = vertex_normals(v, f)
    assert ((n * v).sum(1) > 0).all()
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)


def test_summaries_crop_and_nose(face_model):
    s = summarize([1.0, 2.0, 3.0, np.nan])
    assert s == {"mean": 2.0, "std": pytest.approx(np.std([1, 2, 3])), "median": 2.0, "n": 3}
    assert summarize([])["n"] == 0
    v, _, lid = _face(face_model)
    nose = v[lid[30]]
    assert np.linalg.norm(estimate_nose_tip(v) - nose) < 15.0  # heuristic, near the landmark
    m = crop_mask(v, nose, 95.0)
    assert 0 < m.sum() < len(v)
    assert np.linalg.norm(v[m] - nose, axis=1).max() <= 95.0


def test_micc_mesh_against_itself_is_zero(face_model):
    v, f, lid = _face(face_model)
    r = micc_protocol(v, f, v, f, nose_tip=v[lid[30]], pred_landmarks=v[lid], gt_landmarks=v[lid])
    assert r.point_to_plane < 1e-9 and r.point_to_point < 1e-9 and r.scan_to_mesh["mean"] < 1e-9
    assert np.nanmax(r.vertex_errors) < 1e-9


def test_micc_known_transform_is_recovered(face_model):
    v, f, lid = _face(face_model)
    import torch

    R = rodrigues(euler_to_r(-30.0, 15.0, 8.0, dtype=torch.float64)[None])[0].numpy()
    T = Similarity(0.001, R, np.array([0.1, 0.2, -0.3]))  # e.g. a scan in metres, turned and moved
    gt = T.apply(v) * 1000.0  # back to mm scale but rotated/moved
    T_mm = Similarity(1.0, R, T.t * 1000.0)
    r = micc_protocol(v, f, gt, f, nose_tip=gt[lid[30]])  # no landmarks: principal-axes initialisation
    assert r.point_to_plane < 1e-6 and r.point_to_point < 1e-6
    np.testing.assert_allclose(r.transform.R, T_mm.R, atol=1e-6)
    np.testing.assert_allclose(r.transform.t, T_mm.t, atol=1e-4)
    assert r.transform.scale == pytest.approx(1.0, abs=1e-8)


def test_micc_known_noise_statistics(face_model):
    v, f, lid = _face(face_model)
    sigma = 0.5
    n = vertex_normals(v, f)
    noisy = v + n * np.random.default_rng(0).normal(0, sigma, (len(v), 1))  # noise along the normals
    r = micc_protocol(v, f, noisy, f, nose_tip=v[lid[30]], pred_landmarks=v[lid], gt_landmarks=noisy[lid])
    expected = sigma * np.sqrt(2 / np.pi)  # E|N(0, sigma)|
    assert r.point_to_plane == pytest.approx(expected, rel=0.12)
    assert r.scan_to_mesh["mean"] == pytest.approx(expected, rel=0.15)
    assert r.scan_to_mesh["median"] == pytest.approx(sigma * 0.6745, rel=0.15)  # median |N(0, sigma)|
    assert r.alignment.transform.scale == pytest.approx(1.0, abs=0.01)


def test_symmetric_point_to_point_of_shifted_grid():
    g = np.stack(np.meshgrid(np.arange(20.0), np.arange(20.0), indexing="ij"), -1).reshape(-1, 2)
    a = np.c_[g, np.zeros(len(g))]
    assert symmetric_point_to_point(a, a + [0, 0, 0.7]) == pytest.approx(0.7)


def test_now_protocol_known_answers(face_model):
    v, f, lid = _face(face_model)
    ids = lid[list(NOW_LANDMARKS_68)]
    scan = v[::2] * 1.05 + [3.0, -2.0, 1.0]
    scan_lm = v[ids] * 1.05 + [3.0, -2.0, 1.0]
    r = now_protocol(v, f, v[ids], scan, scan_lm)
    assert r.scan_to_mesh["median"] < 1e-6 and r.scan_to_mesh["mean"] < 1e-6
    assert r.transform.scale == pytest.approx(1.05, abs=1e-6)
    # with a crop around the nose tip (the 5th NoW landmark) fewer points count, still zero error
    rc = now_protocol(v, f, v[ids], scan, scan_lm, radius=95.0)
    assert rc.n_scan_points < r.n_scan_points and rc.scan_to_mesh["mean"] < 1e-6


def test_protocol_bad_inputs(face_model):
    v, f, lid = _face(face_model)
    with pytest.raises(InputError):
        micc_protocol(v[:, :2], f, v, f)
    with pytest.raises(InputError):
        micc_protocol(v, f, v, f, nose_tip=np.array([1e5, 0, 0]))  # nothing within the crop
    with pytest.raises(InputError):
        now_protocol(v, f, v[lid[:7]], v, v[lid[:5]])
