"""Loaders on the real model files in ../shared/data/models: the ICT npz, the ICT upstream OBJ layout, the SFM bins."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from redafit.errors import ModelError
from redafit.model import FaceModel
from redafit.model.formats import detect_format, format_names, get_loader, load_file
from redafit.model.formats._common import face_normal_z


@pytest.fixture(scope="module")
def ict_npz(models_src):
    return np.load(models_src / "ict-face" / "ict_face.npz")


@pytest.fixture(scope="module")
def ict_raw_model(models_src):
    return load_file(models_src / "ict-face" / "raw")


def _np(t):
    return t.detach().cpu().numpy()


# -- registry --------------------------------------------------------------------------------------------------------
def test_registry_has_one_loader_per_format():
    assert format_names() == ["native", "ict", "sfm", "bfm2009", "bfm2017", "flame"]
    for name in format_names():
        lo = get_loader(name)
        assert callable(lo.detect) and callable(lo.load) and lo.description


def test_detect_format_on_real_files(models_src):
    ict = models_src / "ict-face"
    assert detect_format(ict / "ict_face.npz") == "ict"
    assert detect_format(ict) == "ict"
    assert detect_format(ict / "raw") == "ict"
    assert detect_format(ict / "raw" / "generic_neutral_mesh.obj") == "ict"
    assert detect_format(models_src / "sfm") == "sfm"
    assert detect_format(models_src / "sfm" / "sfm_shape_3448.bin") == "sfm"


def test_detect_format_rejects_unknown_and_missing(models_src, tmp_path):
    with pytest.raises(ModelError, match="not a face model"):
        detect_format(models_src / "sfm" / "sfm_reference.obj")
    with pytest.raises(ModelError, match="not found"):
        load_file(tmp_path / "nope.npz")
    with pytest.raises(ModelError, match="unknown model format"):
        load_file(models_src / "sfm", format="obj")


# -- ICT npz ---------------------------------------------------------------------------------------------------------
def test_ict_npz_shapes_units_info(ict_model, ict_npz):
    m = ict_model
    assert isinstance(m, FaceModel)
    assert (m.n_vertices, m.n_triangles, m.n_id, m.n_exp) == (9409, 18460, 100, 53)
    assert m.expression_names == [str(n) for n in ict_npz["expression_names"]]
    assert m.uv.shape == (9547, 2) and m.uv_triangles.shape == (18460, 3)
    # centimetres in the file -> millimetres: the face area is ~18 cm wide
    np.testing.assert_allclose(_np(m.mean), ict_npz["neutral"] * 10.0, rtol=1e-6)
    np.testing.assert_allclose(_np(m.id_basis[3]), ict_npz["identity_basis"][3] * 10.0, rtol=1e-6)
    np.testing.assert_allclose(_np(m.exp_basis[26]), ict_npz["expression_basis"][26] * 10.0, rtol=1e-6)
    width = float(m.mean[:, 0].max() - m.mean[:, 0].min())
    assert 150.0 < width < 220.0
    assert m.info.name == "ict" and m.info.units_in_file == "cm" and m.info.expression_prior == "unit"
    assert "MIT" in m.info.licence and "Permission is hereby granted" in m.info.extra["licence_text"]
    assert not m.has_albedo


def test_ict_landmarks_use_jawline(ict_model, ict_npz):
    lm = _np(ict_model.landmark_ids)
    assert (lm >= 0).all()
    np.testing.assert_array_equal(lm[0:8], ict_npz["jawline_right"])
    np.testing.assert_array_equal(lm[9:17], ict_npz["jawline_left"])
    np.testing.assert_array_equal(lm[8], ict_npz["landmarks_multipie68"][8])
    np.testing.assert_array_equal(lm[17:], ict_npz["landmarks_multipie68"][17:])
    np.testing.assert_array_equal(_np(ict_model.contour_right), ict_npz["jawline_right_extended"])
    np.testing.assert_array_equal(_np(ict_model.contour_left), ict_npz["jawline_left_extended"])


def _frontal_pixels(model: FaceModel) -> np.ndarray:
    """The mean face's vertices projected by a frontal camera 600 mm away (pixels, [V, 2])."""
    from redafit.render.camera import Intrinsics, pose_rotation, project, transform

    K = Intrinsics.default(512, 512)
    R = pose_rotation(torch.zeros(1, 3))
    t = torch.tensor([[0.0, 0.0, 600.0]])
    return _np(project(transform(model(batch_size=1), R, t), K)[0])


@pytest.mark.parametrize("fixture", ["ict_model", "sfm_model"])
def test_landmark_sides_on_frontal_projection(request, fixture):
    m = request.getfixturevalue(fixture)
    uv = _frontal_pixels(m)
    lm = _np(m.landmark_ids)
    # iBUG 36 (right eye outer corner) is on the image's left, 45 on its right; brows above eyes, chin lowest
    assert uv[lm[36], 0] < uv[lm[39], 0] < uv[lm[42], 0] < uv[lm[45], 0]
    assert uv[lm[19], 1] < uv[lm[37], 1] < uv[lm[30], 1] < uv[lm[51], 1] < uv[lm[57], 1] < uv[lm[8], 1]
    assert uv[lm[48], 0] < uv[lm[54], 0]
    # the nose tip is the most forward landmark (largest z in the model frame)
    fixed = lm[lm >= 0]
    z = _np(m.mean)[:, 2]
    assert z[lm[30]] == z[fixed].max()
    # jaw contour candidates: the subject's right (points 0-7) on the image's left
    cr, cl = _np(m.contour_right), _np(m.contour_left)
    assert uv[cr, 0].max() < uv[lm[30], 0] < uv[cl, 0].min()
    if lm[0] >= 0:
        assert uv[lm[0], 0] < uv[lm[16], 0]


@pytest.mark.parametrize("fixture", ["ict_model", "sfm_model"])
def test_triangles_face_the_viewer(request, fixture):
    m = request.getfixturevalue(fixture)
    assert face_normal_z(_np(m.mean), _np(m.triangles)) > 0


# -- ICT upstream OBJ layout ---------------------------------------------------------------------------------------
def test_ict_obj_converter_matches_npz(ict_raw_model, ict_npz):
    c = ict_raw_model
    assert (c.n_vertices, c.n_triangles, c.n_id, c.n_exp) == (9409, 18460, 1, 1)
    assert c.expression_names == ["jawOpen"]
    k = list(ict_npz["expression_names"]).index("jawOpen")
    np.testing.assert_allclose(_np(c.mean), ict_npz["neutral"] * 10.0, atol=1e-4)
    np.testing.assert_allclose(_np(c.id_basis[0]), ict_npz["identity_basis"][0] * 10.0, atol=1e-4)
    np.testing.assert_allclose(_np(c.exp_basis[0]), ict_npz["expression_basis"][k] * 10.0, atol=1e-4)
    np.testing.assert_array_equal(_np(c.triangles), ict_npz["triangles"])
    np.testing.assert_array_equal(_np(c.uv_triangles), ict_npz["uv_triangles"])
    np.testing.assert_allclose(_np(c.uv), ict_npz["uv"], atol=1e-6)
    assert c.info.units_in_file == "cm" and c.info.expression_prior == "unit"


def test_ict_obj_converter_landmarks_match_npz_loader(ict_raw_model, ict_model, models_src):
    np.testing.assert_array_equal(_np(ict_raw_model.landmark_ids), _np(ict_model.landmark_ids))
    np.testing.assert_array_equal(_np(ict_raw_model.contour_right), _np(ict_model.contour_right))
    np.testing.assert_array_equal(_np(ict_raw_model.contour_left), _np(ict_model.contour_left))
    idx = json.loads((models_src / "ict-face" / "raw" / "vertex_indices.json").read_text())
    from redafit.model.formats import _ict_landmarks as L

    assert list(L.MULTIPIE68) == idx["idx_to_landmark_verts"]


def test_ict_obj_converter_keeps_face_polygons_only(models_src):
    from redafit.model.formats.ict import read_obj_topology

    v, _vt, polys, _ = read_obj_topology(models_src / "ict-face" / "raw" / "generic_neutral_mesh.obj")
    assert v.shape == (26719, 3)
    inside = [i for i, p in enumerate(polys) if max(p) < 9409]
    assert inside == list(range(9230))  # the upstream README's face polygons [0:9229]


def test_ict_obj_converter_partial_and_complete(models_src, tmp_path, caplog):
    from redafit.model.formats.ict import convert_obj_dir

    with caplog.at_level(logging.WARNING, logger="redafit"):
        m = convert_obj_dir(models_src / "ict-face" / "raw", n_identity=1, expressions=["jawOpen", "eyeBlink_L"])
    assert m.n_id == 1 and m.expression_names == ["jawOpen"]
    assert "missing" in caplog.text
    with pytest.raises(ModelError, match="missing"):
        convert_obj_dir(models_src / "ict-face" / "raw", require_complete=True)
    # a complete (small) layout: 1 identity, 1 expression, all present
    for f in ("generic_neutral_mesh.obj", "identity000.obj", "jawOpen.obj"):
        shutil.copy(models_src / "ict-face" / "raw" / f, tmp_path / f)
    (tmp_path / "vertex_indices.json").write_text(json.dumps({"expressions": ["jawOpen"]}))
    m2 = convert_obj_dir(tmp_path, n_identity=1, require_complete=True)
    assert m2.n_id == 1 and m2.n_exp == 1
    with pytest.raises(ModelError, match="generic_neutral_mesh"):
        convert_obj_dir(tmp_path / "nothing-here")


# -- SFM --------------------------------------------------------------------------------------------------------------
def test_sfm_shapes_and_info(sfm_model):
    m = sfm_model
    assert (m.n_vertices, m.n_triangles, m.n_id, m.n_exp) == (3448, 6736, 63, 6)
    assert m.expression_names == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert m.uv.shape == (3448, 2) and torch.equal(m.uv_triangles, m.triangles)
    assert float(m.uv.min()) >= 0.0 and float(m.uv.max()) <= 1.0
    assert m.info.units_in_file == "mm" and m.info.expression_prior == "unit"
    assert "non-commercial" in m.info.licence
    width = float(m.mean[:, 0].max() - m.mean[:, 0].min())
    assert 120.0 < width < 220.0  # millimetres


def test_sfm_basis_is_scaled_by_sqrt_eigenvalues(sfm_model, models_src):
    from redafit.model.formats.sfm import read_shape_bin

    raw = read_shape_bin(models_src / "sfm" / "sfm_shape_3448.bin")["shape"]
    B = _np(sfm_model.id_basis).reshape(63, -1).astype(np.float64)  # [K, 3V]
    np.testing.assert_allclose(np.linalg.norm(B, axis=1), np.sqrt(raw["eigenvalues"]), rtol=1e-4)
    G = (B / np.linalg.norm(B, axis=1, keepdims=True)) @ (B / np.linalg.norm(B, axis=1, keepdims=True)).T
    np.testing.assert_allclose(G, np.eye(63), atol=1e-4)  # column-major read: orthonormal components
    np.testing.assert_allclose(B[0], raw["basis"][:, 0] * np.sqrt(raw["eigenvalues"][0]), rtol=1e-5)


def test_sfm_landmarks_uv_and_contours(sfm_model, models_src):
    lm = _np(sfm_model.landmark_ids)
    assert (lm >= 0).sum() == 50
    assert lm[8] == 33 and lm[30] == 114 and lm[36] == 177  # 1-based iBUG 9, 31, 37 in ibug_to_sfm.txt
    assert (lm[0:8] == -1).all() and (lm[9:17] == -1).all()
    doc = json.loads((models_src / "sfm" / "sfm_model_contours.json").read_text())["model_contour"]
    np.testing.assert_array_equal(_np(sfm_model.contour_right), doc["right_contour"])
    np.testing.assert_array_equal(_np(sfm_model.contour_left), doc["left_contour"])
    # UVs converted to v up: the forehead (large y) has large v, as in OBJ files
    assert np.corrcoef(_np(sfm_model.mean)[:, 1], _np(sfm_model.uv)[:, 1])[0, 1] > 0.9


def test_sfm_load_by_bin_path_equals_folder(sfm_model, models_src):
    m = load_file(models_src / "sfm" / "sfm_shape_3448.bin")
    assert torch.equal(m.mean, sfm_model.mean) and torch.equal(m.exp_basis, sfm_model.exp_basis)


def test_sfm_truncated_or_alone(models_src, tmp_path):
    data = (models_src / "sfm" / "sfm_shape_3448.bin").read_bytes()
    (tmp_path / "sfm_shape_3448.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_file(tmp_path)
    (tmp_path / "sfm_shape_3448.bin").write_bytes(data + b"\0\0")
    with pytest.raises(ModelError, match="trailing"):
        load_file(tmp_path)
    # the shape file alone loads: no expressions, no landmarks
    (tmp_path / "sfm_shape_3448.bin").write_bytes(data)
    m = load_file(tmp_path / "sfm_shape_3448.bin")
    assert m.n_exp == 0 and int(m.fixed_landmark_mask().sum()) == 0 and m.contour_right.numel() == 0
