"""Landmark files: readers and writers, with explicit pixel conventions.

redafit's convention (see :mod:`redafit.render.camera`): (0, 0) is the top-left **corner** of the top-left
pixel, so pixel (row i, column j) has its centre at (j + 0.5, i + 0.5). Files use one of three conventions:

=========  ==========================================================  ===================================
name       meaning of (x, y)                                           to redafit
=========  ==========================================================  ===================================
corner     redafit's own (what our writers write, except ``.pts``)    unchanged
index0     0-based pixel index: pixel j's centre is at x = j           +0.5 (dlib, OpenCV, MTCNN, FAN)
index1     1-based pixel index: pixel j's centre is at x = j + 1       -0.5 (iBUG 300-W ``.pts``, Matlab)
=========  ==========================================================  ===================================

Defaults by file name (override with ``convention=``, or a ``"convention"`` key in JSON):

* ``*.pts`` (iBUG) -> ``index1``. A 1-based index k has its centre at 0-based index k - 1, i.e. at corner
  coordinate k - 1 + 0.5 = k - 0.5. :func:`write_landmarks` writes ``.pts`` back in ``index1``.
* ``*.5pt.txt`` (Deep3DFaceRecon's detections, from an MTCNN-style detector that reports 0-based pixel
  coordinates) -> ``index0``: +0.5. The half pixel is far below those detectors' error either way; we pick the
  convention of the tool that made them.
* everything else (``.txt``/``.csv`` rows, ``.npy``, ``.json``) -> ``corner``.

Content rules: 68 rows (iBUG-68 order) or 5 rows (eye on the image's left, eye on the image's right, nose tip,
mouth corner left, mouth corner right — the order of ``*.5pt.txt``); a row of NaN (``nan`` in text, ``null``
in JSON) marks an unknown point. Anything else raises :class:`~redafit.errors.LandmarkFileError` (exit 6)
naming the file and, for text, the line; so does a file that cannot be read: missing, a symbolic link loop, not a
regular file (a FIFO, a device: refused before it is opened) or larger than :data:`MAX_FILE_BYTES`.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from redafit.errors import LandmarkFileError
from redafit.io import jsonsafe
from redafit.io.inputs import check_input_file, read_input_file, read_text_file

N68 = 68
N5 = 5
VALID_COUNTS = (N68, N5)
CONVENTIONS = {"corner": 0.0, "index0": 0.5, "index1": -0.5}
MAX_FILE_BYTES = 64 << 20  # a landmark file is at most this (68 points take a few KB); larger is refused unread

# 68 -> 5: (left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner), "left" and
# "right" as seen in the image. Each entry lists the 68-point ids averaged.
FIVE_FROM_68: tuple[tuple[int, ...], ...] = (
    (36, 37, 38, 39, 40, 41),  # eye on the image's left (subject's right eye)
    (42, 43, 44, 45, 46, 47),  # eye on the image's right
    (30,),                     # nose tip
    (48,),                     # mouth corner on the image's left
    (54,),                     # mouth corner on the image's right
)

__all__ = ["read_landmarks", "write_landmarks", "five_from_68", "FIVE_FROM_68", "default_convention",
           "to_corner", "from_corner", "inter_ocular", "landmark_error_iod"]


def five_from_68(lm68: np.ndarray) -> np.ndarray:
    """[68, 2] -> [5, 2] with :data:`FIVE_FROM_68` (NaN where any averaged point is NaN)."""
    lm68 = np.asarray(lm68, dtype=np.float64)
    if lm68.shape != (N68, 2):
        raise ValueError(f"five_from_68: expected [68, 2], got {list(lm68.shape)}")
    return np.stack([lm68[list(ids)].mean(axis=0) for ids in FIVE_FROM_68])


def inter_ocular(lm: np.ndarray) -> float:
    """Distance between the outer eye corners (68 points: 36 and 45), robust to unknown (NaN) points.

    Fallbacks: eye centres x 1.35 (the usual ratio of outer-corner to centre distance; also used for 5-point
    sets), else 0.45 x the diagonal of the known points' box; NaN with fewer than 2 known points.
    """
    p = np.asarray(lm, dtype=np.float64)
    if len(p) == N68:
        a, b = p[36], p[45]
        if np.isfinite(a).all() and np.isfinite(b).all():
            return float(np.linalg.norm(a - b))
        with warnings.catch_warnings():  # an eye with no known point: NaN, handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            a, b = np.nanmean(p[36:42], 0), np.nanmean(p[42:48], 0)
        if np.isfinite(a).all() and np.isfinite(b).all():
            return float(np.linalg.norm(a - b)) * 1.35
    elif len(p) == N5 and np.isfinite(p[:2]).all():
        return float(np.linalg.norm(p[0] - p[1])) * 1.35
    finite = p[np.isfinite(p).all(1)]
    if len(finite) < 2:
        return float("nan")
    return float(np.linalg.norm(finite.max(0) - finite.min(0))) * 0.45


def landmark_error_iod(points: np.ndarray, reference: np.ndarray | None) -> float | None:
    """Mean distance of 68 ``points`` from a ``reference`` set (68, or 5 compared with the points' five-point
    reduction, :func:`five_from_68`), in eye distances of the reference (:func:`inter_ocular`); unknown (NaN)
    points are skipped. None where that cannot be measured (no reference, other shapes, no known pair, no eye
    distance)."""
    if reference is None:
        return None
    ref = np.asarray(reference, np.float64)
    pts = five_from_68(points) if len(ref) == N5 else np.asarray(points, np.float64)
    if pts.shape != ref.shape:
        return None
    d = np.linalg.norm(pts - ref, axis=1)
    if not np.isfinite(d).any():
        return None
    with np.errstate(all="ignore"):
        e = float(np.nanmean(d)) / inter_ocular(ref)
    return e if np.isfinite(e) else None


def default_convention(path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".pts"):
        return "index1"
    if name.endswith(".5pt.txt"):
        return "index0"
    return "corner"


def to_corner(xy: np.ndarray, convention: str) -> np.ndarray:
    """Convert [N, 2] coordinates in ``convention`` to redafit's corner convention."""
    return np.asarray(xy, dtype=np.float64) + CONVENTIONS[_check_convention(convention)]


def from_corner(xy: np.ndarray, convention: str) -> np.ndarray:
    """Convert [N, 2] corner-convention coordinates to ``convention``."""
    return np.asarray(xy, dtype=np.float64) - CONVENTIONS[_check_convention(convention)]


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown pixel convention {convention!r} (use {', '.join(CONVENTIONS)})")
    return convention


# -- readers ----------------------------------------------------------------------------------------------------
_SPLIT = re.compile(r"[\s,;]+")


def _number(tok: str) -> float:
    t = tok.strip().lower()
    if t in ("nan", "-nan", "na", "null", "none"):
        return math.nan
    v = float(t)  # ValueError for garbage
    if math.isinf(v):
        raise ValueError("infinite value")
    return v


def _parse_rows(path: Path, lines: list[tuple[int, str]]) -> np.ndarray:
    rows = []
    for lineno, line in lines:
        toks = [t for t in _SPLIT.split(line.strip()) if t]
        if len(toks) != 2:
            raise LandmarkFileError(f"{path}:{lineno}: expected two numbers 'x y', got {line.strip()[:60]!r}")
        try:
            x, y = _number(toks[0]), _number(toks[1])
        except ValueError:
            raise LandmarkFileError(f"{path}:{lineno}: not a number in {line.strip()[:60]!r}") from None
        if math.isnan(x) != math.isnan(y):
            raise LandmarkFileError(f"{path}:{lineno}: only one coordinate is NaN (a missing point needs both)")
        rows.append((x, y))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; what is not a regular file (a FIFO, a device: reading it could block forever or never
    end) is refused before it is opened, a file of more than :data:`MAX_FILE_BYTES` before it is read."""
    return read_input_file(path, "landmark file", MAX_FILE_BYTES, error=LandmarkFileError)


def _read_text(path: Path) -> str:
    return read_text_file(path, "landmark file", MAX_FILE_BYTES, error=LandmarkFileError)


def _read_pts(path: Path) -> np.ndarray:
    lines = _read_text(path).splitlines()
    n_declared = None
    start = None
    for i, raw in enumerate(lines):
        s = raw.strip()
        if s.startswith("{"):
            start = i + 1
            break
        low = s.lower()
        if low.startswith("n_points"):
            try:
                n_declared = int(s.split(":", 1)[1])
            except (IndexError, ValueError):
                raise LandmarkFileError(f"{path}:{i + 1}: malformed header {s[:60]!r}") from None
        elif low.startswith("version") or not s:
            continue
        else:
            raise LandmarkFileError(f"{path}:{i + 1}: expected a .pts header (version, n_points, {{), "
                                    f"got {s[:60]!r}")
    if start is None:
        raise LandmarkFileError(f"{path}: not an iBUG .pts file (no '{{' line)")
    body = []
    end = None
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if s.startswith("}"):
            end = i
            break
        if s:
            body.append((i + 1, s))
    if end is None:
        raise LandmarkFileError(f"{path}: the point list is not closed by '}}'")
    pts = _parse_rows(path, body)
    if n_declared is not None and n_declared != len(pts):
        raise LandmarkFileError(f"{path}: header says n_points {n_declared} but the file lists {len(pts)} points")
    return pts


def _read_rows(path: Path) -> np.ndarray:
    lines = []
    for i, raw in enumerate(_read_text(path).splitlines()):
        s = raw.split("#", 1)[0].strip()
        if s:
            lines.append((i + 1, s))
    return _parse_rows(path, lines)


def _read_npy(path: Path) -> np.ndarray:
    data = _read_bytes(path)
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise LandmarkFileError(f"{path}: not a readable .npy array ({exc})") from None
    if not np.issubdtype(a.dtype, np.number):
        raise LandmarkFileError(f"{path}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.shape[1] != 2:
        raise LandmarkFileError(f"{path}: expected an array of shape [68, 2] or [5, 2], got {list(a.shape)}")
    return a.astype(np.float64)


def _read_json(path: Path) -> tuple[np.ndarray, str | None]:
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LandmarkFileError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    convention = None
    if isinstance(doc, dict):
        convention = doc.get("convention")
        if convention is not None and convention not in CONVENTIONS:
            raise LandmarkFileError(f"{path}: unknown convention {convention!r} (use {', '.join(CONVENTIONS)})")
        if "landmarks" not in doc:
            raise LandmarkFileError(f"{path}: expected a list of [x, y] or an object with a 'landmarks' key")
        doc = doc["landmarks"]
    if not isinstance(doc, list):
        raise LandmarkFileError(f"{path}: expected a list of [x, y] points, got {type(doc).__name__}")
    rows = []
    for k, p in enumerate(doc):
        if p is None:
            rows.append((math.nan, math.nan))
            continue
        if isinstance(p, dict) and "x" in p and "y" in p:
            p = [p["x"], p["y"]]
        if not isinstance(p, list) or len(p) != 2:
            raise LandmarkFileError(f"{path}: point {k} is not [x, y]: {json.dumps(p)[:60]}")
        try:
            x, y = (math.nan if c is None else _number(str(c)) if isinstance(c, str) else float(c) for c in p)
        except (TypeError, ValueError):
            raise LandmarkFileError(f"{path}: point {k} is not numeric: {json.dumps(p)[:60]}") from None
        if isinstance(p[0], bool) or isinstance(p[1], bool):
            raise LandmarkFileError(f"{path}: point {k} is not numeric: {json.dumps(p)[:60]}")
        rows.append((x, y))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2), convention


def read_landmarks(path, convention: str | None = None, n_points: int | None = None) -> np.ndarray:
    """Read a landmark file -> float64 [68, 2] or [5, 2] in redafit's corner convention (NaN rows unknown).

    Formats by extension: ``.pts`` (iBUG), ``.npy``, ``.json``; anything else is text with one ``x y`` row per
    point (separated by spaces, tabs, commas or semicolons; ``#`` starts a comment). ``convention`` overrides
    the per-format default (see the module docstring); ``n_points`` (68 or 5) demands a count.
    """
    path = Path(path)
    check_input_file(path, "landmark file", error=LandmarkFileError)  # not found, a folder, a link loop, a FIFO
    ext = path.suffix.lower()
    file_conv = None
    if ext == ".pts":
        pts = _read_pts(path)
    elif ext == ".npy":
        pts = _read_npy(path)
    elif ext == ".json":
        pts, file_conv = _read_json(path)
    else:
        pts = _read_rows(path)
    if len(pts) == 0:
        raise LandmarkFileError(f"{path}: no landmarks in the file")
    counts = (n_points,) if n_points else VALID_COUNTS
    if len(pts) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise LandmarkFileError(f"{path}: expected {want} points, got {len(pts)}")
    if np.any(np.isinf(pts)):
        raise LandmarkFileError(f"{path}: infinite coordinates")
    partial = np.isnan(pts).any(axis=1) & ~np.isnan(pts).all(axis=1)
    if partial.any():
        raise LandmarkFileError(f"{path}: point {int(np.argmax(partial))} has only one NaN coordinate")
    if np.isnan(pts).all():
        raise LandmarkFileError(f"{path}: every point is NaN (unknown)")
    conv = convention or file_conv or default_convention(path)
    try:
        return to_corner(pts, conv)
    except ValueError as exc:
        raise LandmarkFileError(f"{path}: {exc}") from None


# -- writers ----------------------------------------------------------------------------------------------------
def write_landmarks(path, landmarks: np.ndarray, convention: str | None = None) -> None:
    """Write [68, 2] or [5, 2] corner-convention landmarks atomically; format from the extension.

    ``.pts`` (iBUG header, ``index1`` by default), ``.json`` (``{"convention": ..., "landmarks": [[x, y] |
    null, ...]}``), ``.npy``, anything else plain ``x y`` rows. NaN rows are written as NaN / null.
    """
    from redafit.errors import OutputError
    from redafit.io.atomic import atomic_path, atomic_write

    path = Path(path)
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in VALID_COUNTS:
        raise OutputError(f"cannot write {path}: landmarks must be [68, 2] or [5, 2], got {list(lm.shape)}")
    conv = convention or default_convention(path)
    out = from_corner(lm, conv)
    ext = path.suffix.lower()
    if ext == ".npy":
        with atomic_path(path) as tmp:
            np.save(tmp, out)
        return
    if ext == ".json":
        doc = {"convention": conv,
               "landmarks": [None if np.isnan(p).any() else [round(float(p[0]), 6), round(float(p[1]), 6)]
                             for p in out]}
        with atomic_write(path, "w") as fh:
            jsonsafe.dump(doc, fh, indent=1)
            fh.write("\n")
        return
    rows = [f"{x:.6f} {y:.6f}" if not (math.isnan(x) or math.isnan(y)) else "nan nan" for x, y in out]
    with atomic_write(path, "w") as fh:
        if ext == ".pts":
            fh.write(f"version: 1\nn_points: {len(out)}\n{{\n" + "\n".join(rows) + "\n}\n")
        else:
            fh.write("\n".join(rows) + "\n")
