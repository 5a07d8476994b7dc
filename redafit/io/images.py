"""Image input/output.

:func:`load_image` returns the library's image form: float32 RGB ``[H, W, 3]`` in [0, 1], **upright** (the
JPEG EXIF orientation applied, so pixels and landmarks refer to what a viewer shows), plus an
:class:`ImageMeta` recording everything needed to map results back to the file's pixels.

Input forms handled (OpenCV decodes; we read the bytes ourselves and parse headers/EXIF with the standard
library so every decision is explicit):

* grayscale -> the gray value replicated into R, G, B;
* RGBA / gray+alpha -> **composited over white** (``rgb * a + (1 - a)``): transparent cut-outs look as in
  a viewer and the background never reads as a dark face-coloured region. ``meta.had_alpha`` records it;
* 8-bit (/255), 16-bit PNG/TIFF (/65535), float TIFF (clipped to [0, 1]); ``meta.bit_depth``;
* JPEG EXIF orientation (tags 1-8) -> rotated/flipped upright; ``meta.orientation`` is the tag that was applied
  (1 = none). Other formats are taken as stored;
* images larger than ``max_side`` (default :data:`DEFAULT_MAX_SIDE`) on their larger side -> downscaled with
  area averaging; ``meta.scale`` = loaded / original, so ``xy_original = xy_loaded / meta.scale`` (corner
  convention, see :mod:`redafit.render.camera`);
* images whose header claims more than ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) are refused before
  decoding (decompression bombs); files larger than ``max_bytes`` (default :data:`MAX_IMAGE_BYTES`, 512 MiB)
  before they are read;
* what is not a regular file (a FIFO, a device such as ``/dev/zero``, a socket) is refused before it is opened:
  reading one could block forever or never end. A symbolic link loop is an :class:`~redafit.errors.InputError`.

The path ``-`` (:data:`STDIN`) reads the image's bytes from standard input (``redafit fit - < photo.jpg``); they
are decoded like a file's.

Every problem is an :class:`~redafit.errors.InputError` with one line naming the file: a missing file, a link
loop or a file of the wrong kind exit code 3, anything else an :class:`~redafit.errors.ImageError` (exit code 4).
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from redafit.errors import ImageError, InputError, OutputError
from redafit.io.inputs import folder_files, read_input_file

DEFAULT_MAX_SIDE = 4096
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels (a 10000 x 10000 image); decoding would need > 1 GB

__all__ = ["ImageMeta", "load_image", "STDIN", "read_stdin_bytes", "photo_stem", "save_image", "probe_size",
           "exif_orientation", "exif_camera", "ExifCamera", "apply_orientation", "DEFAULT_MAX_SIDE",
           "DEFAULT_MAX_PIXELS", "MAX_IMAGE_BYTES"]


@dataclass(frozen=True)
class ImageMeta:
    """What :func:`load_image` did to the file's pixels.

    ``original_size`` is (width, height) of the upright image before any downscaling (after EXIF orientation);
    ``stored_size`` is (width, height) as stored in the file; ``loaded_size`` that of the returned array.
    ``scale`` = loaded size / original size (along the larger side; the other side is rounded to whole pixels).
    ``camera``: what the file's EXIF says about the camera (:class:`ExifCamera`), None without it.
    """

    path: str
    original_size: tuple[int, int]
    stored_size: tuple[int, int]
    loaded_size: tuple[int, int] = (0, 0)
    scale: float = 1.0
    orientation: int = 1
    bit_depth: int = 8
    channels: int = 3
    had_alpha: bool = False
    camera: "ExifCamera | None" = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the loaded image."""
        return self.loaded_size

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map pixel coordinates [..., 2] of the loaded image to the upright, full-resolution image."""
        return np.asarray(xy, dtype=np.float64) / self.scale

    def to_dict(self) -> dict:
        return {"path": self.path, "original_size": list(self.original_size),
                "stored_size": list(self.stored_size), "loaded_size": list(self.loaded_size), "scale": self.scale,
                "orientation": self.orientation, "bit_depth": self.bit_depth, "channels": self.channels,
                "had_alpha": self.had_alpha, "camera": self.camera.to_dict() if self.camera else None}


# -- headers ----------------------------------------------------------------------------------------------------
def probe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header without decoding; None if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = 1 + int.from_bytes(data[24:27], "little")
                h = 1 + int.from_bytes(data[27:30], "little")
                return w, h
    except (struct.error, IndexError):
        return None
    return None


def _jpeg_segments(data: bytes):
    """Yield (marker, payload) of JPEG segments up to the start of scan."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        payload = data[i + 4:i + 2 + length]
        yield marker, payload
        if marker == 0xDA:  # start of scan: headers are over
            return
        i += 2 + length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, payload in _jpeg_segments(data):
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", payload[1:5])
            return int(w), int(h)
    return None


# -- EXIF -------------------------------------------------------------------------------------------------------
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}  # bytes per value of each TIFF field type


def _jpeg_exif(data: bytes) -> bytes | None:
    """The TIFF structure of a JPEG's EXIF segment (APP1 ``Exif\\0\\0``); None when there is none."""
    if data[:2] != b"\xff\xd8":
        return None
    for marker, payload in _jpeg_segments(data):
        if marker == 0xE1 and payload[:6] == b"Exif\x00\x00":
            return payload[6:]
    return None


def _tiff_ifd(tiff: bytes, offset: int, e: str) -> dict:
    """The entries of the TIFF directory at ``offset``: tag -> its value (the first for SHORT, LONG, their signed
    kinds and RATIONALs, as a float for the latter; the whole text for ASCII); entries that do not fit are left
    out."""
    out = {}
    count = struct.unpack(e + "H", tiff[offset:offset + 2])[0]
    for k in range(count):
        entry = tiff[offset + 2 + 12 * k: offset + 14 + 12 * k]
        if len(entry) < 12:
            break
        tag, typ, n = struct.unpack(e + "HHI", entry[:8])
        size = _TIFF_SIZES.get(typ, 0) * n
        if not size:
            continue
        if size <= 4:
            raw = entry[8:8 + size]
        else:
            at = struct.unpack(e + "I", entry[8:12])[0]
            raw = tiff[at:at + size]
            if len(raw) < size:
                continue
        if typ == 2:
            out[tag] = raw.split(b"\x00", 1)[0].decode("latin-1").strip()
        elif typ in (3, 4, 9):
            out[tag] = struct.unpack(e + {3: "H", 4: "I", 9: "i"}[typ], raw[:_TIFF_SIZES[typ]])[0]
        elif typ in (5, 10):
            num, den = struct.unpack(e + ("II" if typ == 5 else "ii"), raw[:8])
            out[tag] = num / den if den else None
    return out


def _exif_directories(tiff: bytes | None) -> tuple[dict, dict]:
    """(IFD0, the EXIF sub-directory) of an EXIF TIFF structure; empty ones when it cannot be read."""
    if not tiff or tiff[:2] not in (b"II", b"MM"):
        return {}, {}
    e = "<" if tiff[:2] == b"II" else ">"
    try:
        if struct.unpack(e + "H", tiff[2:4])[0] != 42:
            return {}, {}
        ifd0 = _tiff_ifd(tiff, struct.unpack(e + "I", tiff[4:8])[0], e)
        sub = ifd0.get(0x8769)
        return ifd0, (_tiff_ifd(tiff, sub, e) if isinstance(sub, int) and 8 <= sub < len(tiff) else {})
    except (struct.error, IndexError, ValueError):
        return {}, {}


@dataclass(frozen=True)
class ExifCamera:
    """What a photo's EXIF says about the camera that took it (``None`` where a tag is absent or unusable).

    ``focal_35mm``: the lens's 35 mm-equivalent focal length (FocalLengthIn35mmFilm: phones and most compact
    cameras write it), which with the image's diagonal gives the focal length in pixels; ``focal_mm``: the lens's
    own (FocalLength; without the sensor's size it says nothing about the field of view); ``pixel_size``: the
    image (width, height) the camera wrote, as stored (PixelXDimension, PixelYDimension): a photo whose shape
    differs was cropped since, and its field of view is no longer the lens's.
    """

    make: str = ""
    model: str = ""
    focal_mm: float | None = None
    focal_35mm: float | None = None
    pixel_size: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        """"Make Model" (the model alone when it repeats the make), or ""."""
        if self.model.lower().startswith(self.make.lower()):
            return self.model
        return f"{self.make} {self.model}".strip()

    def to_dict(self) -> dict:
        return {"make": self.make, "model": self.model, "focal_mm": self.focal_mm, "focal_35mm": self.focal_35mm,
                "pixel_size": list(self.pixel_size) if self.pixel_size else None}


def _positive(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf") else None


def _exif_tiff(data: bytes) -> bytes | None:
    """The EXIF TIFF structure of a JPEG file's bytes, or of an EXIF block as a HEIF file carries it (``Exif\\0\\0``
    and the TIFF structure, perhaps after the 4-byte offset of the HEIF item); None when there is none."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_exif(data)
    for at in (0, 4):
        if data[at:at + 6] == b"Exif\x00\x00":
            return data[at + 6:]
    return None


def exif_camera(data: bytes) -> ExifCamera | None:
    """The camera data of a JPEG file's EXIF, or of a HEIF photo's EXIF block (:class:`ExifCamera`); None when it has
    no EXIF or no such tag."""
    try:
        ifd0, sub = _exif_directories(_exif_tiff(data))
    except (struct.error, IndexError):
        return None
    w, h = _positive(sub.get(0xA002)), _positive(sub.get(0xA003))
    cam = ExifCamera(make=str(ifd0.get(0x010F, "")) if isinstance(ifd0.get(0x010F), str) else "",
                     model=str(ifd0.get(0x0110, "")) if isinstance(ifd0.get(0x0110), str) else "",
                     focal_mm=_positive(sub.get(0x920A)), focal_35mm=_positive(sub.get(0xA405)),
                     pixel_size=(int(w), int(h)) if w and h else None)
    return None if cam == ExifCamera() else cam


def exif_orientation(data: bytes) -> int:
    """EXIF orientation (1-8) of a JPEG file's bytes (or of an EXIF block, :func:`exif_camera`); 1 when absent,
    unreadable or not a JPEG."""
    try:
        value = _exif_directories(_exif_tiff(data))[0].get(0x0112, 1)
    except (struct.error, IndexError):
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored image [H, W, ...] upright according to an EXIF orientation tag (1-8)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                       # mirrored horizontally
        3: lambda a: a[::-1, ::-1],                    # rotated 180
        4: lambda a: a[::-1],                          # mirrored vertically
        5: lambda a: a.swapaxes(0, 1),                 # transposed
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],        # needs 90 degrees clockwise
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),     # transverse
        8: lambda a: a.swapaxes(0, 1)[::-1],           # needs 90 degrees counter-clockwise
    }
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(img))


# -- loading ----------------------------------------------------------------------------------------------------
STDIN = "-"  # the image path that means "read the photo's bytes from standard input"
MAX_IMAGE_BYTES = 512 << 20  # a photo's file is at most this (the largest real photos are tens of MB; a
# 100-megapixel (DEFAULT_MAX_PIXELS) 16-bit PNG is ~600 MB decoded, ~200-400 MB as a file); a larger file, or more
# bytes on standard input, is refused before it is read into memory
MAX_STDIN_BYTES = MAX_IMAGE_BYTES
_stdin_read: tuple = (None, b"")  # (the stream, its bytes): standard input is read once per stream


def read_stdin_bytes() -> bytes:
    """All of standard input as bytes, read once (a second call on the same stream returns the same bytes): the
    photo of ``redafit fit -``. An :class:`~redafit.errors.InputError` when stdin is a terminal (nothing is piped
    in), an :class:`~redafit.errors.ImageError` when it is empty."""
    import sys

    global _stdin_read
    stream = sys.stdin
    if _stdin_read[0] is not stream or stream is None:
        if stream is None or stream.isatty():
            raise InputError("the photo is - (standard input), but nothing is piped in: "
                             "use `redafit fit - < photo.jpg` or `cat photo.jpg | redafit fit -`")
        src = getattr(stream, "buffer", stream)
        data = src.read(MAX_STDIN_BYTES + 1)  # read() may return less than asked only at the end of the stream
        if isinstance(data, str):  # a text stream without a buffer (an embedding that replaced stdin)
            data = data.encode("latin-1")
        while len(data) <= MAX_STDIN_BYTES:
            more = src.read(MAX_STDIN_BYTES + 1 - len(data))
            if not more:
                break
            data += more.encode("latin-1") if isinstance(more, str) else more
        if len(data) > MAX_STDIN_BYTES:
            raise ImageError(f"cannot read the image from standard input: it holds more than "
                             f"{MAX_STDIN_BYTES >> 20} MiB, more than a photo's file")
        _stdin_read = (stream, data)
    if not _stdin_read[1]:
        raise ImageError("cannot read the image from standard input: nothing was piped in")
    return _stdin_read[1]


# a folder's images (folder_images); HEIC/HEIF (an iPhone's photos) through the optional pillow-heif
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".heic", ".heif")


def folder_images(folder) -> list[Path]:
    """The images directly in ``folder`` (by :data:`IMAGE_EXTS`; :func:`redafit.io.inputs.folder_files`: any case,
    no subfolders, no hidden files, natural name order); :class:`InputError` when it cannot be listed or holds
    none."""
    return folder_files(folder, IMAGE_EXTS, "images")


def photo_stem(path) -> str:
    """The name a photo's outputs and side files go by: its file's stem, ``stdin`` for ``-``."""
    return "stdin" if str(path) == STDIN else Path(path).stem


_STDIN_HINT = " (to read a photo piped in, name it -)"


def _read_bytes(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The photo's bytes (standard input for ``-``): a FIFO, a device or a socket is refused before it is opened
    (it could block forever or never end), a file of more than ``max_bytes`` before it is read."""
    if str(path) == STDIN:
        return read_stdin_bytes()
    data = read_input_file(path, "image", max_bytes, error=InputError, read_error=ImageError, hint=_STDIN_HINT)
    if len(data) == 0:
        raise ImageError(f"cannot read image {path}: the file is empty")
    return data


@contextmanager
def quiet_opencv():
    """OpenCV's own log lines (``[ERROR:0@2.8] global loadsave.cpp ...`` on a corrupt file) silenced for the block:
    the caller reports one clear error instead. FFmpeg's (video) are silenced by ``OPENCV_FFMPEG_LOGLEVEL``, see
    :func:`redafit.rig.track.open_frames`."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.getLogLevel() if log is not None else None
    try:
        if log is not None:
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        yield
    finally:
        if log is not None:
            log.setLogLevel(old)


def _decode(cv2, buf: np.ndarray, flags: int | None = None):
    """cv2.imdecode, by default keeping alpha and 16 bits (IMREAD_UNCHANGED ignores EXIF orientation; we apply it),
    quietly (:func:`quiet_opencv`); None when OpenCV cannot decode it."""
    with quiet_opencv():
        try:
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if flags is None else flags)
        except cv2.error:
            return None


# ISO base media file brands of HEIF still images and sequences coded with HEVC (what phones write), and the
# generic HEIF ones (an AVIF file also carries mif1 but names avif: OpenCV reads those itself)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}


def is_heif(data: bytes) -> bool:
    """Whether the bytes are a HEIC/HEIF file (an ``ftyp`` box naming a HEIF brand, not AVIF)."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    end = min(max(int.from_bytes(data[:4], "big"), 16), len(data), 1024)
    brands = {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}
    return bool(brands & _HEIF_BRANDS) and not brands & {b"avif", b"avis"}


def _decode_heif(path, data: bytes, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    """A HEIC/HEIF photo -> (BGR or BGRA array, uint8 or uint16, upright: libheif applies the file's rotation and
    mirroring, which a phone also writes as EXIF orientation; its EXIF block or None), with the optional
    ``pillow-heif``; an :class:`ImageError` saying how to read it without."""
    import io

    try:
        import pillow_heif
    except ImportError:
        raise ImageError(f"cannot decode image {path}: it is a HEIC/HEIF photo (an iPhone's default format), which "
                         f"OpenCV does not read: pip install pillow-heif (or redafit[heif]), or convert it to JPEG "
                         f"(heif-convert, sips, ImageMagick)") from None
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False, bgr_mode=True)
        w, h = heif.size
        if w * h > max_pixels:
            raise ImageError(f"image {path} is too large: {w} x {h} pixels (limit {max_pixels / 1e6:.0f} megapixels)")
        img = np.asarray(heif)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - libheif's errors (corrupt or unsupported file) have many types
        raise ImageError(f"cannot decode image {path}: the HEIF file is corrupt or unsupported "
                         f"({' '.join(str(e).split())[:200]})") from None
    exif = heif.info.get("exif")
    return img, (bytes(exif) if exif else None)


FLOAT_IMAGE_MAX = 20.0  # a float image's 99th percentile above this is on another scale than [0, 1] (not HDR)


def load_image(path, max_side: int | None = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = MAX_IMAGE_BYTES) -> tuple[np.ndarray, ImageMeta]:
    """Read an image file -> (float32 RGB [H, W, 3] in [0, 1], :class:`ImageMeta`).

    ``max_side``: downscale so the larger side is at most this many pixels (None or 0: never).
    ``max_pixels``: refuse images whose pixel count exceeds this (checked on the header before decoding).
    ``max_bytes``: refuse files larger than this (checked before reading; standard input: always
    :data:`MAX_STDIN_BYTES`).
    """
    import cv2

    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer))
                                 or max_side < 0):
        raise ValueError(f"max_side must be a whole number of pixels >= 0 (0 or None: never), got {max_side!r}")
    path = Path(path)
    data = _read_bytes(path, max_bytes)
    size = probe_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(f"image {path} is too large: {size[0]} x {size[1]} pixels "
                         f"(limit {max_pixels / 1e6:.0f} megapixels)")
    if size is not None and (size[0] == 0 or size[1] == 0):
        raise ImageError(f"cannot decode image {path}: it has zero width or height")
    heif = is_heif(data)
    if heif:  # decoded upright; the EXIF comes as a block of its own
        img, exif = _decode_heif(path, data, max_pixels)
    else:
        img, exif = _decode(cv2, np.frombuffer(data, dtype=np.uint8)), data
    if img is None or img.size == 0:
        raise ImageError(f"cannot decode image {path}: the file is corrupt or not an image format OpenCV reads")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"image {path} is too large: {img.shape[1]} x {img.shape[0]} pixels "
                         f"(limit {max_pixels / 1e6:.0f} megapixels)")
    stored_size = (int(img.shape[1]), int(img.shape[0]))
    orientation = exif_orientation(exif) if exif else 1
    if heif and orientation >= 5:  # stored across: the decoder turned it
        stored_size = stored_size[::-1]

    # Bit depth -> float in [0, 1].
    if img.dtype == np.uint8:
        depth, x = 8, img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        depth, x = 16, img.astype(np.float32) / 65535.0
    elif img.dtype in (np.float32, np.float64):
        sample = img[::4, ::4] if img.ndim == 2 else img[::4, ::4, :3]
        finite = sample[np.isfinite(sample)]
        high = float(np.percentile(finite, 99)) if finite.size else 0.0
        if high > FLOAT_IMAGE_MAX:  # not a [0, 1] image with highlights above: another scale, clipped to white
            hint = ("8-bit values stored as float? divide them by 255" if high <= 255.5 else
                    "16-bit values stored as float? divide them by 65535" if high <= 65535.5 else "scale it")
            raise ImageError(f"cannot use image {path}: its float pixel values reach {high:.4g} (99th percentile); "
                             f"expected [0, 1] ({hint})")
        if high > 1.0:
            import logging

            logging.getLogger("redafit").warning(
                "%s: %.1f %% of its float pixel values are above 1 (an HDR image?): clipped to 1; tone-map it to "
                "[0, 1] to keep its highlights", Path(str(path)).name, 100 * float((finite > 1).mean()))
        depth, x = 32, np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0)
    elif img.dtype in (np.int8, np.int16, np.int32, np.uint32):
        info = np.iinfo(img.dtype)
        depth = info.bits
        x = np.clip(img.astype(np.float32) / float(info.max), 0.0, 1.0)
    else:
        raise ImageError(f"cannot use image {path}: unsupported pixel type {img.dtype}")

    # Channels -> RGB (composite alpha over white).
    if x.ndim == 2:
        x = x[:, :, None]
    channels = x.shape[2]
    had_alpha = channels in (2, 4)
    if channels == 1:
        rgb = np.repeat(x, 3, axis=2)
    elif channels == 2:  # gray + alpha
        a = x[:, :, 1:2]
        rgb = np.repeat(x[:, :, :1] * a + (1.0 - a), 3, axis=2)
    elif channels == 3:
        rgb = x[:, :, ::-1]
    elif channels == 4:
        a = x[:, :, 3:4]
        rgb = x[:, :, 2::-1] * a + (1.0 - a)
    else:
        raise ImageError(f"cannot use image {path}: {channels} channels (expected gray, RGB or RGBA)")

    if not heif:
        rgb = apply_orientation(rgb, orientation)
    H, W = rgb.shape[:2]

    scale = 1.0
    if max_side and max(H, W) > max_side:
        scale = float(max_side) / float(max(H, W))
        new_w, new_h = max(1, round(W * scale)), max(1, round(H * scale))
        rgb = cv2.resize(np.ascontiguousarray(rgb), (new_w, new_h), interpolation=cv2.INTER_AREA)
        scale = new_w / W if W >= H else new_h / H  # the exact ratio realized along the larger side

    rgb = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)
    meta = ImageMeta(path=str(path), original_size=(W, H), stored_size=stored_size,
                     loaded_size=(int(rgb.shape[1]), int(rgb.shape[0])), scale=scale,
                     orientation=orientation, bit_depth=depth, channels=channels, had_alpha=had_alpha,
                     camera=exif_camera(exif) if exif else None)
    return rgb, meta


def read_image_file(path, flags: int | None = None):
    """``cv2.imread`` without handing OpenCV the file name: the bytes are read by Python and decoded from memory
    (quietly), because OpenCV crashes the process on a name that is not valid UTF-8. None when it cannot be
    decoded; an :class:`~redafit.errors.ImageError` when the file cannot be read, is not a regular file (a FIFO,
    a device: refused before it is opened) or is larger than :data:`MAX_IMAGE_BYTES`."""
    import cv2

    path = Path(path)
    data = read_input_file(path, "image", MAX_IMAGE_BYTES, error=ImageError)
    return _decode(cv2, np.frombuffer(data, np.uint8), flags) if data else None


def write_image_file(path, array: np.ndarray, params=()) -> None:
    """``cv2.imwrite`` atomically and without handing OpenCV the file name (see :func:`read_image_file`): encoded
    in memory for the extension's format, written by Python. ``array`` as cv2 takes it (BGR, uint8 or uint16)."""
    import cv2

    from redafit.io.atomic import atomic_write

    path = Path(path)
    with quiet_opencv():
        try:
            ok, buf = cv2.imencode(path.suffix.lower() or ".png", np.ascontiguousarray(array), list(params))
        except cv2.error:
            ok = False
    if not ok:
        raise OutputError(f"cannot write image {path}: OpenCV failed to encode it")
    with atomic_write(path) as fh:
        fh.write(buf.tobytes())


# -- saving -----------------------------------------------------------------------------------------------------
SAVE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}  # save_image's formats


def save_image(path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB image atomically; the format comes from the extension (.png, .jpg, ...).

    ``rgb``: float [H, W, 3] in [0, 1] (clipped) or uint8 [H, W, 3]; [H, W] gray and [H, W, 4] RGBA
    (PNG/TIFF/WebP keep alpha) are accepted too.
    """
    import cv2

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SAVE_EXTENSIONS:
        raise OutputError(f"cannot write image {path}: unsupported extension {ext or '(none)'} "
                          f"(use one of {', '.join(sorted(SAVE_EXTENSIONS))})")
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        a = a[:, :, ::-1]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, [2, 1, 0, 3]]
    elif a.ndim != 2:
        raise OutputError(f"cannot write image {path}: expected [H, W, 3], got shape {list(a.shape)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    write_image_file(path, a, params)
