"""Alignment: Umeyama, ICP with scale, landmark + surface refinement — known-answer tests."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.errors import InputError
from redafit.eval.alignment import (
    Similarity,
    align_landmarks_then_surface,
    icp,
    umeyama,
)
from redafit.render.camera import euler_to_r, rodrigues


def _rot(yaw, pitch, roll):
    import torch

    return rodrigues(euler_to_r(yaw, pitch, roll, dtype=torch.float64)[None])[0].numpy()


KNOWN = Similarity(1.12, _rot(25.0, -10.0, 5.0), np.array([12.0, -7.0, 30.0]))


def test_umeyama_recovers_similarity():
    x = np.random.default_rng(1).normal(size=(50, 3)) * 40
    T = umeyama(x, KNOWN.apply(x))
    assert T.scale == pytest.approx(KNOWN.scale, abs=1e-10)
    np.testing.assert_allclose(T.R, KNOWN.R, atol=1e-10)
    np.testing.assert_allclose(T.t, KNOWN.t, atol=1e-8)


def test_umeyama_rigid_and_weights_and_nan_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 3)) * 40
    y = x @ KNOWN.R.T + KNOWN.t
    y_bad = y.copy()
    y_bad[:5] += 100.0  # outliers with zero weight
    w = np.ones(30)
    w[:5] = 0.0
    T = umeyama(x, y_bad, weights=w, with_scale=False)
    assert T.scale == 1.0
    np.testing.assert_allclose(T.apply(x[5:]), y[5:], atol=1e-8)
    x_nan = x.copy()
    x_nan[0] = np.nan
    np.testing.assert_allclose(umeyama(x_nan, y, with_scale=False).R, KNOWN.R, atol=1e-10)


def test_umeyama_bad_input():
    with pytest.raises(InputError):
        umeyama(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(InputError):
        umeyama(np.zeros((5, 2)), np.zeros((5, 2)))


def test_similarity_compose_inverse():
    x = np.random.default_rng(3).normal(size=(10, 3))
    np.testing.assert_allclose(KNOWN.inverse().apply(KNOWN.apply(x)), x, atol=1e-10)
    np.testing.assert_allclose(KNOWN.compose(KNOWN).apply(x), KNOWN.apply(KNOWN.apply(x)), atol=1e-9)


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_icp_recovers_known_transform_of_face(face_model, use_landmarks):
    v = face_model.mean.double().numpy()
    lid = face_model.landmark_ids.numpy()
    target = KNOWN.apply(v[::3])  # a sparser "scan" of the same surface
    kw = {"source_landmarks": v[lid], "target_landmarks": KNOWN.apply(v[lid])} if use_landmarks else {}
    res = icp(v, target, **kw)
    assert res.converged
    assert res.mean_distance < 1e-6
    assert res.transform.scale == pytest.approx(KNOWN.scale, rel=2e-3)
    np.testing.assert_allclose(res.transform.R, KNOWN.R, atol=5e-3)


def test_icp_stops_when_improvement_below_tol(ellipsoid):
    v, _ = ellipsoid
    res = icp(v, v * 1.0, init=Similarity.identity())
    assert res.iterations == 2 and res.converged and res.mean_distance == pytest.approx(0.0, abs=1e-9)


def test_landmarks_then_surface_refines_a_noisy_landmark_start(face_model):
    v = face_model.mean.double().numpy()
    f = face_model.triangles.numpy()
    lid = face_model.landmark_ids.numpy()[[36, 39, 42, 45, 30, 48, 54]]
    scan = KNOWN.apply(v[::4])
    scan_lm = KNOWN.apply(v[lid]) + np.random.default_rng(0).normal(0, 3.0, (7, 3))  # sloppy clicks
    start = umeyama(v[lid], scan_lm)
    d0 = np.linalg.norm(start.apply(v[::4]) - scan, axis=1).mean()
    res = align_landmarks_then_surface(v, f, v[lid], scan, scan_lm)
    assert res.mean_distance < 0.1 < d0
    np.testing.assert_allclose(res.transform.R, KNOWN.R, atol=5e-3)
