"""Helpers shared by the format loaders: sidecar landmark files, triangle orientation, licence files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from redafit.errors import ModelError

N_LANDMARKS = 68

# Sidecar files with 68 iBUG landmark vertex ids, looked up next to a model file (first found wins).
# ``{stem}`` is the model file's name without suffix.
SIDECAR_NAMES = ("{stem}.landmarks.json", "{stem}.landmarks.txt", "landmarks.json", "landmarks.txt",
                 "landmarks68.json", "landmarks68.txt")


def find_sidecar(path: Path) -> Path | None:
    """The landmark sidecar file for the model at ``path`` (a file or its folder), or None."""
    folder = path if path.is_dir() else path.parent
    stem = path.stem if path.is_file() else path.name
    for pattern in SIDECAR_NAMES:
        cand = folder / pattern.format(stem=stem)
        if cand.is_file():
            return cand
    return None


def read_sidecar(path: Path, n_vertices: int) -> dict:
    """Parse a landmark sidecar file.

    Formats:

    * ``.txt``: 68 integers (0-based vertex ids, ``-1`` = none), separated by white space or commas; ``#`` starts
      a comment.
    * ``.json``: a list of 68 integers, or an object ``{"landmark_ids": [68 ints], "contour_right": [...],
      "contour_left": [...]}`` (contours optional; right = the subject's right = image left, for points 0-7).

    Returns ``{"landmark_ids": int64 [68], "contour_right": int64 [Nr], "contour_left": int64 [Nl]}``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read landmark sidecar ({e})") from None
    out: dict = {"contour_right": np.zeros(0, np.int64), "contour_left": np.zeros(0, np.int64)}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}: invalid JSON ({e})") from None
        if isinstance(data, dict):
            ids = data.get("landmark_ids")
            for key in ("contour_right", "contour_left"):
                if key in data:
                    out[key] = _ids(path, key, data[key], n_vertices)
        else:
            ids = data
    else:
        body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        ids = [t for t in re.split(r"[\s,]+", body) if t]
    if ids is None:
        raise ModelError(f"{path}: no 'landmark_ids' in the landmark sidecar")
    lm = _ids(path, "landmark_ids", ids, n_vertices, allow_none=True)
    if lm.shape != (N_LANDMARKS,):
        raise ModelError(f"{path}: expected {N_LANDMARKS} landmark vertex ids, got {lm.shape[0]}")
    out["landmark_ids"] = lm
    return out


def _ids(path: Path, key: str, values, n_vertices: int, allow_none: bool = False) -> np.ndarray:
    try:
        arr = np.asarray([int(v) for v in values], dtype=np.int64)
    except (TypeError, ValueError):
        raise ModelError(f"{path}: '{key}' must be a list of integer vertex ids") from None
    lo = -1 if allow_none else 0
    if arr.size and (arr.min() < lo or arr.max() >= n_vertices):
        raise ModelError(f"{path}: '{key}' has vertex ids outside 0..{n_vertices - 1}")
    return arr


def apply_sidecar(path: Path, n_vertices: int, kwargs: dict) -> Path | None:
    """Fill ``landmark_ids`` / contours in the FaceModel ``kwargs`` from a sidecar next to ``path``, if any.

    Returns the sidecar's path (or None when there is none; the model's landmark ids then stay as they were).
    """
    side = find_sidecar(path)
    if side is not None:
        data = read_sidecar(side, n_vertices)
        kwargs["landmark_ids"] = data["landmark_ids"]
        if data["contour_right"].size:
            kwargs["contour_right"] = data["contour_right"]
        if data["contour_left"].size:
            kwargs["contour_left"] = data["contour_left"]
    return side


def face_normal_z(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Sum of the z components of the (area-weighted) triangle normals: > 0 when triangles are CCW from +z."""
    v = vertices.astype(np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    return float(np.cross(b - a, c - a)[:, 2].sum())


def orient_front(vertices: np.ndarray, triangles: np.ndarray, uv_triangles: np.ndarray | None = None):
    """Flip the winding of all triangles when, seen from the front (+z), they are mostly clockwise.

    A face mesh is open towards the back, so the area-weighted normals summed over the surface point along +z
    for counter-clockwise (outward) triangles. Returns ``(triangles, uv_triangles)``.
    """
    if face_normal_z(vertices, triangles) >= 0:
        return triangles, uv_triangles
    flip = lambda t: None if t is None else np.ascontiguousarray(t[:, [0, 2, 1]])
    return flip(triangles), flip(uv_triangles)


def read_licence(*candidates: Path) -> str:
    """Text of the first existing licence file among ``candidates`` ('' if none)."""
    for c in candidates:
        if c.is_file():
            try:
                return c.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                continue
    return ""


def check_readable(path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
