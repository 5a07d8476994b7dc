"""FocalSpec: the camera's focal length from --focal's forms and from a photo's EXIF."""

from __future__ import annotations

import math

import pytest

from redafit.errors import UsageError
from redafit.io.images import ExifCamera
from redafit.render.camera import DEFAULT_FOCAL_FACTOR, FocalSpec


@pytest.mark.parametrize("text, kind, value", [("auto", "auto", 0.0), (" AUTO ", "auto", 0.0), ("1200", "px", 1200.0),
                                               ("1200px", "px", 1200.0), ("1e3", "px", 1000.0), ("26mm", "mm", 26.0),
                                               ("26 mm", "mm", 26.0), ("1.6x", "x", 1.6), ("0.8X", "x", 0.8)])
def test_parse_accepts_every_form(text, kind, value):
    spec = FocalSpec.parse(text)
    assert (spec.kind, spec.value) == (kind, value)
    assert FocalSpec.parse(str(spec)) == spec and FocalSpec.parse(spec) is spec


@pytest.mark.parametrize("text", ["", "0", "-5", "nan", "inf", "0mm", "-2x", "26cm", "mm", "x", "1.6xx", "wide"])
def test_parse_refuses_anything_else_naming_the_forms(text):
    with pytest.raises(UsageError, match="--focal: expected auto, .*26mm.*1.6x"):
        FocalSpec.parse(text)


def test_a_35mm_equivalent_gives_the_field_of_view_of_a_full_frame_lens():
    """A 3:2 photo at a 50 mm equivalent sees what a 50 mm lens sees on a 36 x 24 mm frame, at any resolution."""
    for w, h in ((6000, 4000), (600, 400)):
        f, source = FocalSpec.parse("50mm").resolve(w, h)
        assert 2 * math.atan(w / 2 / f) == pytest.approx(2 * math.atan(18 / 50))
        assert 2 * math.atan(h / 2 / f) == pytest.approx(2 * math.atan(12 / 50))
        assert source == "--focal 50 mm (35 mm equivalent)"


def test_pixels_follow_the_downscale_on_load_and_factors_the_longer_side():
    """``--focal 3000`` names pixels of the photo as stored: a photo loaded at half size has half that focal length
    (it was taken as is before, which put the camera twice too far); ``1.6x`` is the default's factor."""
    assert FocalSpec.parse("3000").resolve(2000, 1500, scale=0.5)[0] == 1500.0
    assert FocalSpec.parse("3000px").resolve(4000, 3000)[0] == 3000.0
    assert FocalSpec.parse("1.6x").resolve(300, 400)[0] == pytest.approx(640.0)
    K, source = FocalSpec.parse("0.8x").intrinsics(300, 400)
    assert (K.fx, K.fy, K.cx, K.cy, K.width, K.height) == (320.0, 320.0, 150.0, 200.0, 300, 400)
    assert source == "--focal 0.8 x the longer side"


def test_auto_takes_exif_only_from_a_photo_of_the_shape_the_camera_wrote():
    w, h = 300, 400
    default = DEFAULT_FOCAL_FACTOR * 400
    phone = ExifCamera("Google", "Pixel 8", 6.9, 25.0, (3000, 4000))
    f, source = FocalSpec().resolve(w, h, camera=phone)
    assert f == pytest.approx(25 * 500 / math.hypot(36, 24)) and source == "EXIF: 25 mm (35 mm equivalent)"
    # the stored orientation may differ from the upright one; a resized (not cropped) photo keeps its lens
    assert FocalSpec().resolve(w, h, camera=ExifCamera(focal_35mm=25.0, pixel_size=(4000, 3000)))[0] == f
    assert FocalSpec().resolve(w, h, camera=ExifCamera(focal_35mm=25.0))[0] == f  # no size written: trusted
    cropped = ExifCamera(focal_35mm=25.0, pixel_size=(3000, 3000))
    f, source = FocalSpec().resolve(w, h, camera=cropped)
    assert f == default and "cropped from the camera's 3000x3000" in source
    for bad in (0.5, 5000.0):  # no lens's
        f, source = FocalSpec().resolve(w, h, camera=ExifCamera(focal_35mm=bad))
        assert f == default and "no lens's" in source
    # the lens's own focal length without the sensor's size says nothing of the field of view
    assert FocalSpec().resolve(w, h, camera=ExifCamera(focal_mm=85.0)) == (default, "default")
    assert FocalSpec().resolve(w, h) == (default, "default")
    # an explicit form ignores the EXIF
    assert FocalSpec.parse("1.6x").resolve(w, h, camera=phone)[0] == pytest.approx(default)
