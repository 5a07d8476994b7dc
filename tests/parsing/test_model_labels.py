"""Model-side labels (per vertex and UV) on the real ICT model, and agreement with the image side."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from redafit.errors import ModelError
from redafit.model import FaceModel
from redafit.parsing import (
    REGION_NAMES,
    parse_image,
    uv_label_map,
    vertex_face_area,
    vertex_labels,
)

from ._helpers import PHOTOS_WITH_PTS, load_photo, render_labels_affine


@pytest.fixture(scope="module")
def ict(models_src):
    try:
        from redafit.model.store import load_model

        return load_model(str(models_src / "ict-face" / "ict_face.npz"))
    except ImportError:  # loader not there yet: build the model from the shared npz (cm -> mm)
        d = np.load(models_src / "ict-face" / "ict_face.npz")
        return FaceModel(d["neutral"] * 10, d["identity_basis"] * 10, None, d["triangles"], d["uv"],
                         d["uv_triangles"], d["landmarks_multipie68"], d["jawline_right_extended"],
                         d["jawline_left_extended"])


def _region(model, name):
    return vertex_labels(model)[:, REGION_NAMES.index(name)].bool().numpy()


def test_one_label_per_vertex(ict):
    L = vertex_labels(ict)
    assert L.shape == (ict.n_vertices, 7) and L.dtype == torch.float32
    assert torch.all(L.sum(1) == 1)
    counts = L.sum(0)
    assert torch.all(counts > 0), counts
    assert counts[0] > 0.7 * ict.n_vertices  # skin dominates


def test_labels_follow_the_landmark_vertices(ict):
    v = ict.mean.numpy()
    ids = ict.landmark_ids.numpy()
    eyes = _region(ict, "eyes")
    lm_eyes = v[ids[36:48]]
    # every eye vertex is near an eye-contour landmark vertex (mm, frontal x/y)
    d = np.linalg.norm(v[eyes][:, None, :2] - lm_eyes[None, :, :2], axis=-1).min(1)
    assert d.max() < 10.0, d.max()
    # subject's right eye (36-41) is on the -x side (the image's left in a frontal view) and vice versa
    right = eyes & (v[:, 0] < 0)
    left = eyes & (v[:, 0] > 0)
    for part, idx in ((right, ids[36:42]), (left, ids[42:48])):
        lo, hi = v[idx, :2].min(0) - 3.0, v[idx, :2].max(0) + 3.0  # inside that eye's landmark box
        assert part.sum() > 10 and np.all((v[part, :2] > lo) & (v[part, :2] < hi))
    assert _region(ict, "nose")[ids[30]] and _region(ict, "nose")[ids[33]]
    assert _region(ict, "brows")[ids[19]] and _region(ict, "brows")[ids[24]]
    assert _region(ict, "upper_lip")[ids[50]] and _region(ict, "lower_lip")[ids[57]]
    assert _region(ict, "skin")[ids[8]]  # chin
    brows = _region(ict, "brows")
    assert v[brows, 1].min() > v[ids[36:48], 1].max()  # brows above the eyes (y up)
    # roughly symmetric labelling (the model is near-symmetric)
    for name in ("brows", "eyes", "nose", "upper_lip", "lower_lip"):
        m = _region(ict, name)
        n_r, n_l = (m & (v[:, 0] < -1)).sum(), (m & (v[:, 0] > 1)).sum()
        assert abs(n_r - n_l) <= 0.15 * max(n_r, n_l) + 3, (name, n_r, n_l)
    # mouth interior: hidden inner-lip vertices, behind the lips' front
    mi = _region(ict, "mouth_interior")
    assert v[mi, 2].max() <= v[ids[48:68], 2].max() + 1.0
    assert np.abs(v[mi, 1] - v[ids[60:68], 1].mean()).max() < 15.0


def test_face_area(ict):
    face = vertex_face_area(ict).numpy()
    ids = ict.landmark_ids.numpy()
    assert face[ids[17:68]].all()
    assert 0.4 * ict.n_vertices < face.sum() < 0.95 * ict.n_vertices
    v = ict.mean.numpy()
    assert not face[np.argmin(v[:, 1])]  # the lowest vertex (neck) is outside the face


def test_uv_label_map(ict):
    U = uv_label_map(ict, 256)
    assert U.shape == (256, 256, 7) and U.dtype == torch.float32
    assert torch.all((U.sum(-1) == 0) | (U.sum(-1) == 1))
    present = U.sum((0, 1))
    assert torch.all(present > 0), present
    # sampling the map at each vertex's UV gives that vertex's label (away from region borders)
    L = vertex_labels(ict)
    uv = ict.uv.numpy()
    corner_v = ict.triangles.numpy().ravel()
    corner_uv = ict.uv_triangles.numpy().ravel()
    col = np.clip((uv[corner_uv, 0] * 256).astype(int), 0, 255)
    row = np.clip(((1 - uv[corner_uv, 1]) * 256).astype(int), 0, 255)
    agree = (U.numpy()[row, col].argmax(-1) == L.numpy()[corner_v].argmax(-1)).mean()
    assert agree > 0.97, agree


def test_cached_and_device(ict, monkeypatch):
    """The labels and a map of each size are computed once per model (the fit asks for them every stage)."""
    from redafit.parsing import model_labels

    first = vertex_labels(ict), uv_label_map(ict, 256)

    def again(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(model_labels, "_compute_vertex_labels", again)
    monkeypatch.setattr(model_labels, "_paint_triangles", again)
    for _ in range(3):
        assert torch.equal(vertex_labels(ict), first[0]) and torch.equal(uv_label_map(ict, 256), first[1])
    with pytest.raises(AssertionError, match="computed again"):  # another size is a new map
        uv_label_map(ict, 41)
    monkeypatch.undo()
    assert uv_label_map(ict, 41).shape == (41, 41, 7)


def test_model_errors(ict):
    no_uv = FaceModel(ict.mean, None, None, ict.triangles, landmark_ids=ict.landmark_ids)
    assert vertex_labels(no_uv).shape == (ict.n_vertices, 7)
    with pytest.raises(ModelError, match="UV"):
        uv_label_map(no_uv)
    no_lm = FaceModel(ict.mean, None, None, ict.triangles)
    with pytest.raises(ModelError, match="landmark"):
        vertex_labels(no_lm)


def test_missing_jaw_landmarks(ict):
    """Models whose jaw points slide along a contour (-1 ids) still get labels and a face area."""
    ids = ict.landmark_ids.clone()
    ids[0:17] = -1
    m = FaceModel(ict.mean, None, None, ict.triangles, ict.uv, ict.uv_triangles, ids,
                  ict.contour_right, ict.contour_left)
    torch.testing.assert_close(vertex_labels(m)[:, 1:], vertex_labels(ict)[:, 1:])
    face = vertex_face_area(m).numpy()
    assert face[ict.landmark_ids.numpy()[[4, 12, 57]]].all()


def test_sfm_model(sfm_model):
    L = vertex_labels(sfm_model)
    assert torch.all(L.sum(1) == 1)
    assert torch.all(L[:, :6].sum(0) > 0)
    ids = sfm_model.landmark_ids
    assert L[ids[30], REGION_NAMES.index("nose")] == 1


@pytest.mark.parametrize("name", PHOTOS_WITH_PTS)
def test_agrees_with_image_side_at_landmark_pose(faces_dir, ict, name):
    """Render the model's labels with the least-squares affine camera of the landmarks: the feature regions
    overlap the image-side map (the mean shape has a neutral expression, so this is a loose bound)."""
    img, lm = load_photo(faces_dir, name)
    r = parse_image(img, lm)
    ren = render_labels_affine(ict, lm, img.shape[:2])
    iou = {}
    for k, region in enumerate(REGION_NAMES):
        a, b = (r.index == k) & r.valid, (ren == k) & r.valid
        iou[region] = (a & b).sum() / max((a | b).sum(), 1)
    assert iou["nose"] > 0.35 and iou["brows"] > 0.2, iou
    assert iou["upper_lip"] + iou["lower_lip"] > 0.5, iou
    assert iou["skin"] > 0.45, iou
