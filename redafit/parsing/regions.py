"""Face-region geometry from 68 landmarks (pure functions, shared by the image and the model side).

The region definitions are data: ``assets/regions.json`` (see its ``description``). This module turns them
into 2D polygons for a given set of landmarks [68, 2] in an image-like frame (x right, y down) and rasterizes
polygons into masks. Coordinates follow the library's pixel convention: (0, 0) is the top-left corner of the
top-left pixel, pixel (i, j) has its centre at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from redafit.errors import InputError, ModelError

REGION_NAMES = ("skin", "brows", "eyes", "nose", "upper_lip", "lower_lip", "mouth_interior")
N_REGIONS = len(REGION_NAMES)

_SUBPIXEL_BITS = 4  # cv2 fixed-point precision for polygon filling


def _candidate_paths() -> list[Path]:
    from redafit._assets import asset_path

    return [asset_path("regions.json")]


@lru_cache(maxsize=8)
def load_region_spec(path: str | None = None) -> dict:
    """The region definitions (``assets/regions.json`` unless ``path`` is given), validated."""
    paths = [Path(path)] if path else _candidate_paths()
    for p in paths:
        if p.is_file():
            try:
                spec = json.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise ModelError(f"region definitions {p}: cannot read ({e})") from e
            break
    else:
        raise ModelError(f"region definitions not found (looked in {', '.join(map(str, paths))})")
    if spec.get("format") != "redafit-regions-1" or tuple(spec.get("regions", ())) != REGION_NAMES:
        raise ModelError(f"region definitions {p}: expected format redafit-regions-1 with regions {REGION_NAMES}")
    for name in spec["paint_order"]:
        if name not in spec["shapes"]:
            raise ModelError(f"region definitions {p}: paint_order names unknown region '{name}'")
    return spec


@dataclass
class FaceFrame:
    """Face scale ``s`` (pixels or mm) and unit ``up`` direction [2] of a set of landmarks (y down)."""

    scale: float
    up: np.ndarray
    centre: np.ndarray


def _mean_rows(lm: np.ndarray, idx) -> np.ndarray | None:
    pts = lm[list(idx)]
    pts = pts[np.isfinite(pts).all(1)]
    return pts.mean(0) if len(pts) else None


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """Scale and up direction from the eyes and mouth, with fallbacks for missing (NaN) landmarks.

    ``scale = max(inter-ocular distance, eye-midpoint-to-mouth distance)``; ``up`` points from the mouth
    centre to the eye midpoint (falls back to chin -> nose bridge, then to image up).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    finite = lm[np.isfinite(lm).all(1)]
    if len(finite) < 3:
        raise InputError(f"landmarks: need at least 3 finite points, got {len(finite)}")
    er, el = _mean_rows(lm, range(36, 42)), _mean_rows(lm, range(42, 48))
    mouth = _mean_rows(lm, range(48, 68))
    eyes = (er + el) / 2 if er is not None and el is not None else (er if er is not None else el)
    cands = []
    if er is not None and el is not None:
        cands.append(np.linalg.norm(el - er))
    up = None
    if eyes is not None and mouth is not None:
        d = eyes - mouth
        cands.append(np.linalg.norm(d))
        up = d
    if up is None or np.linalg.norm(up) < 1e-6:
        a, b = _mean_rows(lm, [8]), _mean_rows(lm, [27, 28])
        up = (b - a) if a is not None and b is not None else np.array([0.0, -1.0])
    n = np.linalg.norm(up)
    up = up / n if n > 1e-6 else np.array([0.0, -1.0])
    span = finite.max(0) - finite.min(0)
    scale = max(cands) if cands and max(cands) > 1e-6 else 0.5 * float(np.hypot(*span))
    return FaceFrame(scale=float(max(scale, 1e-6)), up=up, centre=finite.mean(0))


def _thick_polyline(pts: np.ndarray, width: float) -> np.ndarray:
    """A closed polygon [2N, 2] around the polyline pts [N, 2] with total ``width`` (mitred offsets)."""
    if len(pts) == 1:
        r = width / 2
        return pts[0] + r * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    seg = np.diff(pts, axis=0)
    seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-12)
    tang = np.vstack([seg[:1], seg[:-1] + seg[1:], seg[-1:]])
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-12)
    normal = np.stack([-tang[:, 1], tang[:, 0]], 1)
    # cap the joints at the two ends by extending half a width along the tangent
    ext = pts.copy()
    ext[0] -= seg[0] * width * 0.25
    ext[-1] += seg[-1] * width * 0.25
    a, b = ext + normal * width / 2, ext - normal * width / 2
    return np.vstack([a, b[::-1]])


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    if len(pts) < 3:
        return pts
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def _dilate_polygon(poly: np.ndarray, amount: float) -> np.ndarray:
    """Grow a (roughly convex) polygon by ``amount`` by scaling about its centroid along each vertex's ray."""
    c = poly.mean(0)
    d = poly - c
    n = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return c + d * (1 + amount / n)


@dataclass
class RegionPolygons:
    """2D polygons (lists of [N, 2] float arrays) for every region and for the face outline."""

    regions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    outline: np.ndarray | None = None  # the landmark hull (jaw + raised brows)
    zone: np.ndarray | None = None  # the hull with the forehead raised to ``search_raise`` (occluder zone)
    search: np.ndarray | None = None  # ``zone`` grown by ``search_margin``: where the silhouette may grow
    samples: list[np.ndarray] = field(default_factory=list)  # safe skin-sampling polygons
    frame: FaceFrame | None = None


def _shape_polygon(lm: np.ndarray, shape: dict, frame: FaceFrame) -> np.ndarray | None:
    idx = shape["points"]
    pts = lm[idx]
    ok = np.isfinite(pts).all(1)
    kind = shape["kind"]
    s = frame.scale
    if kind in ("polygon", "polyline") and not ok.all():
        # a polygon with a hole in its ring is not meaningful: fall back to the hull of what is known
        if ok.sum() < 3:
            return None
        kind = "hull"
    pts = pts[ok]
    if kind == "polygon":
        poly = pts
    elif kind == "polyline":
        pts = pts + frame.up * shape.get("offset", 0.0) * s
        poly = _thick_polyline(pts, shape["width"] * s)
    elif kind == "hull":
        if len(pts) < 3:
            return None
        poly = _convex_hull(pts)
    else:
        raise ModelError(f"region definitions: unknown shape kind '{kind}'")
    if shape.get("dilate"):
        poly = _dilate_polygon(poly, shape["dilate"] * s)
    return poly


def _outline(lm: np.ndarray, spec: dict, frame: FaceFrame, raise_: float, margin: float,
             extra: np.ndarray | None = None) -> np.ndarray | None:
    o = spec["face_outline"]
    jaw = lm[o["jaw"]]
    brow = lm[o["forehead_from"]]
    brow = brow[np.isfinite(brow).all(1)] + frame.up * raise_ * frame.scale
    jaw_ok = np.isfinite(jaw).all(1)
    if jaw_ok.all() and len(brow) >= 2:
        poly = np.vstack([jaw, brow])
        # an ordered ring can self-intersect at strong yaw; the hull is the safe face region
        poly = _convex_hull(poly)
    else:
        pts = np.vstack([lm[np.isfinite(lm).all(1)], brow] + ([extra.reshape(-1, 2)] if extra is not None else []))
        if len(pts) < 3:
            return None
        poly = _convex_hull(pts)
    if margin:
        poly = _dilate_polygon(poly, margin * frame.scale)
    return poly


def region_polygons(landmarks: np.ndarray, spec: dict | None = None,
                    extra_outline_points: np.ndarray | None = None) -> RegionPolygons:
    """Polygons of every region for landmarks [68, 2] (x right, y down; NaN rows skipped).

    ``extra_outline_points`` [N, 2] join the face-outline hull when jaw landmarks are missing (e.g. a model's
    jaw contour candidates).
    """
    spec = spec or load_region_spec()
    lm = np.asarray(landmarks, dtype=np.float64)
    frame = face_frame(lm)
    out = RegionPolygons(frame=frame)
    for name in spec["paint_order"]:
        polys = [_shape_polygon(lm, sh, frame) for sh in spec["shapes"][name]]
        out.regions[name] = [p for p in polys if p is not None and len(p) >= 3]
    o = spec["face_outline"]
    ex = extra_outline_points
    out.outline = _outline(lm, spec, frame, o["raise"], 0.0, ex)
    out.zone = _outline(lm, spec, frame, o["search_raise"], 0.0, ex)
    out.search = _outline(lm, spec, frame, o["search_raise"], o["search_margin"], ex)
    shrink = spec["skin_samples"]["shrink"]
    for idx in spec["skin_samples"]["polygons"]:
        pts = lm[idx]
        pts = pts[np.isfinite(pts).all(1)]
        if len(pts) >= 3:
            c = pts.mean(0)
            out.samples.append(_convex_hull(c + (pts - c) * shrink))
    return out


def fill_polygons(polys, height: int, width: int) -> np.ndarray:
    """Rasterize polygons ([N, 2] float arrays, corner convention) into a [H, W] bool mask (pixel centres)."""
    mask = np.zeros((height, width), np.uint8)
    pl = [np.round((np.asarray(p, np.float64) - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32).reshape(-1, 1, 2)
          for p in polys if p is not None and len(p) >= 3 and np.isfinite(p).all()]
    for p in pl:  # one call per polygon: cv2's even-odd fill would cut overlapping polygons
        cv2.fillPoly(mask, [p], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask.astype(bool)


def paint_regions(polys: RegionPolygons, height: int, width: int, spec: dict | None = None) -> np.ndarray:
    """Feature regions (not skin) as an int8 index map [H, W]: region index 1..6, 0 where none.

    Regions are painted in ``paint_order`` (later ones win where polygons overlap).
    """
    spec = spec or load_region_spec()
    idx = np.zeros((height, width), np.int8)
    for name in spec["paint_order"]:
        m = fill_polygons(polys.regions.get(name, []), height, width)
        idx[m] = REGION_NAMES.index(name)
    return idx


# Regions whose landmark-polygon edges are not visible boundaries: the nose hull of a turned face covers cheek that
# the model's nose region does not, and the brow band is a fixed-width stroke. Drawn from the landmarks alone they
# repeat the landmark term with a bias, so landmark-derived parsing compares them as skin.
LANDMARK_ONLY_REGIONS = ("brows", "nose")


def merge_into_skin(labels, names=LANDMARK_ONLY_REGIONS):
    """Labels [..., 7] (numpy or torch) with the regions ``names`` added to skin and zeroed (a copy)."""
    idx = [REGION_NAMES.index(n) for n in names]
    out = labels.copy() if isinstance(labels, np.ndarray) else labels.clone()
    if idx:
        out[..., 0] = out[..., 0] + out[..., idx].sum(-1)
        out[..., idx] = 0
    return out


def one_hot(index: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Index map [...] (-1 = none) -> float32 one-hot [..., 7]."""
    out = np.zeros(index.shape + (N_REGIONS,), np.float32)
    m = index >= 0
    if valid is not None:
        m &= valid
    out[m, index[m]] = 1.0
    return out
