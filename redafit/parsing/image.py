"""Image-side face parsing: region label maps from 68 landmarks plus a skin-colour model.

Algorithm (:func:`parse_image` without a network):

1. Feature regions (brows, eyes, nose, lips, mouth interior) are the landmark polygons of
   ``assets/regions.json`` rasterized at pixel centres; they are trusted as they are.
2. A skin-colour model is fitted to pixels sampled safely inside the face (shrunk cheek, chin and nose-bridge
   polygons): a Gaussian over (log intensity, r, g chromaticity), started from the median/MAD of the samples
   and re-estimated on the inliers, so up to half the samples may be occluded. Chromaticity does not change
   with shading, and the intensity axis gets a wide tolerance, which makes it robust to lighting.
3. The face silhouette is the set of skin-coloured pixels inside a search zone (the landmark hull with the
   forehead raised above the brows, grown by a small margin) that are connected to the sampled skin; small
   holes are filled. Its skin is that silhouette minus the feature regions.
4. Pixels inside the face zone (jaw contour + raised forehead line) that are neither skin-coloured nor a
   feature region - hair, hands, glasses, a scarf - are occluders: ``valid = False`` (ignore them in losses),
   never forced to skin. Background outside the face zone stays valid (label all zero).
5. Where the face mask's edge is not a visible boundary - skin-coloured pixels continue beyond it (neck below
   the jaw line, ears, the cheek past the landmark hull on the near side) - those skin pixels and a band along
   the edge are invalid too (:func:`ambiguous_edges`): the mask ends there at a line drawn from the landmarks,
   and a model's face area at a line of its own. Edges against background or hair stay: they are silhouettes.
6. A band along the face mask's edge above the brows is invalid (:func:`forehead_edge_band`): there the mask
   ends at the hairline or an estimated forehead line, the model's face area at a line of its own, and the two
   are not the same surface curve. The jaw and cheek outlines below the brows are kept.

With a parsing network (:func:`redafit.parsing.network.load_parsing_network`) the labels come from the
network instead, with its occluder classes (hair, glasses, hat) marked invalid inside the face zone. The
forehead band (step 6) applies there too: the network's face mask ends at the hairline, a visible boundary in
the photo, but the model's face area still ends at its own line, so the two edges are not comparable.

Shapes: H, W image; 7 region channels in the order :data:`redafit.parsing.regions.REGION_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from redafit.errors import ImageError, InputError
from redafit.parsing.regions import (
    N_REGIONS,
    REGION_NAMES,
    RegionPolygons,
    fill_polygons,
    load_region_spec,
    one_hot,
    paint_regions,
    region_polygons,
)

# Colours (RGB in [0, 1]) for :func:`colorize`, one per region.
REGION_COLORS = np.array([
    [0.95, 0.80, 0.60],  # skin
    [0.45, 0.25, 0.05],  # brows
    [0.10, 0.45, 1.00],  # eyes
    [0.10, 0.85, 0.20],  # nose
    [1.00, 0.15, 0.15],  # upper lip
    [0.75, 0.00, 0.55],  # lower lip
    [0.15, 0.15, 0.15],  # mouth interior
], np.float32)


@dataclass
class ParsingResult:
    """Face-parsing maps of one image.

    labels     [H, W, 7] float32 in {0, 1}: one-hot region per face pixel, all zero on background and on
               invalid pixels. Channel order :data:`REGION_NAMES`.
    valid      [H, W] bool: False where the pixel should be ignored: occluders inside the face zone, face-mask
               edges that are no visible boundary, and the band along the face edge above the brows.
    face_mask  [H, W] bool: pixels with a region label (the face silhouette incl. features).
    """

    labels: np.ndarray
    valid: np.ndarray
    face_mask: np.ndarray

    @property
    def index(self) -> np.ndarray:
        """[H, W] int8 region index, -1 where no label (background or invalid)."""
        idx = self.labels.argmax(-1).astype(np.int8)
        idx[self.labels.max(-1) <= 0.5] = -1
        return idx

    def region(self, name: str) -> np.ndarray:
        """[H, W] bool mask of one region by name."""
        return self.labels[..., REGION_NAMES.index(name)] > 0.5


@dataclass
class SkinColourModel:
    """Skin colour as a Gaussian over per-pixel features f = (log intensity, r, g chromaticity), written as
    intensity ~ N(mean[0], var_i * tolerance^2) and chromaticity | intensity ~ N(mean[1:] + slope * (f[0] -
    mean[0]), cov_c): shading moves intensity freely and chromaticity along the trend seen on the samples
    (shadows on skin are usually more saturated), while hair, hands in gloves, glasses or background fall off
    the trend. Chromaticity residuals of pixels darker than the mean are scaled by their intensity ratio
    (chromaticity noise grows as 1 / intensity)."""

    mean: np.ndarray  # [3]
    var_i: float  # variance of the log intensity
    slope: np.ndarray  # [2] d chromaticity / d log intensity
    cov_c: np.ndarray  # [2, 2] chromaticity covariance given the intensity
    tolerance: float = 1.0

    def distance2(self, feats: np.ndarray, relax_dark: float = 1.0) -> np.ndarray:
        """Squared Mahalanobis distance [...] of features [..., 3]. A pixel darker than the mean skin by a factor
        f has its chromaticity residual scaled by f ** ``relax_dark`` (1: chromaticity noise grows as 1 /
        intensity; 0: a dark pixel's chromaticity held to a bright one's tolerance)."""
        di = feats[..., 0] - self.mean[0]
        rc = feats[..., 1:] - self.mean[1:] - di[..., None] * self.slope
        # chromaticity noise grows as 1 / intensity: relax it for pixels darker than the mean skin
        if relax_dark:
            rc = rc * np.exp(relax_dark * np.minimum(di, 0.0))[..., None]
        inv = np.linalg.inv(self.cov_c)
        return di * di / (self.var_i * self.tolerance ** 2) + np.einsum("...i,ij,...j->...", rc, inv, rc)


# Minimum standard deviations of the colour features (grey images have zero chroma spread; JPEG noise).
_FEATURE_FLOOR = np.array([0.10, 0.008, 0.008])
_INTENSITY_TOLERANCE = 1.8  # widen the intensity axis (shading across the face) by this factor
SKIN_THRESHOLD = 3.2  # Mahalanobis distance below which a pixel is skin-coloured
_DARK_EPS = 0.02  # offset inside the log intensity
_SPECKLE = 0.012  # radius (x face scale) of the opening that removes skin-colour speckle


def colour_features(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] RGB in [0, 1] -> [H, W, 3] float32 (log(mean + eps), r, g) with r, g = R, G / (R + G + B)."""
    img = image.astype(np.float32)
    total = img.sum(-1) + 1e-3
    return np.stack([np.log(img.mean(-1) + _DARK_EPS), img[..., 0] / total, img[..., 1] / total], -1)


def fit_skin_model(samples: np.ndarray) -> SkinColourModel:
    """Robust skin model from feature samples [N, 3]: median/MAD inliers, then a linear fit of chromaticity on
    log intensity and the residual covariance."""
    samples = samples.astype(np.float64)
    med = np.median(samples, 0)
    mad = 1.4826 * np.median(np.abs(samples - med), 0)
    sigma = np.maximum(mad, _FEATURE_FLOOR)
    inl = (np.abs(samples - med) < 3.0 * sigma).all(1)
    x = samples[inl] if inl.sum() >= 10 else samples
    mean = x.mean(0)
    d = x - mean
    var_i = float(d[:, 0].var()) + _FEATURE_FLOOR[0] ** 2
    slope = (d[:, 1:] * d[:, :1]).mean(0) / var_i if len(x) > 3 else np.zeros(2)
    res = d[:, 1:] - d[:, :1] * slope
    cov_c = (np.cov(res.T) if len(x) > 3 else np.zeros((2, 2))) + np.diag(_FEATURE_FLOOR[1:] ** 2)
    return SkinColourModel(mean=mean, var_i=var_i, slope=slope, cov_c=cov_c, tolerance=_INTENSITY_TOLERANCE)


def _check_inputs(image, landmarks) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 2 or img.shape[1] < 2:
        raise ImageError(f"image: expected shape [H, W, 3], got {list(img.shape)}")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif not np.issubdtype(img.dtype, np.floating):
        raise ImageError(f"image: expected float32 RGB in [0, 1], got dtype {img.dtype}")
    img = np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0)
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise InputError(f"landmarks: expected shape [68, 2], got {list(lm.shape)}")
    return img, lm


def disk_kernel(radius: int) -> np.ndarray:
    """The elliptical structuring element of ``radius`` pixels (at least 1) for OpenCV's morphology."""
    r = max(int(radius), 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _fill_small_holes(mask: np.ndarray, zone: np.ndarray, max_area: float) -> np.ndarray:
    """Fill components of ``zone & ~mask`` smaller than ``max_area`` that do not touch the zone's border."""
    holes = (zone & ~mask).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    if n <= 1:
        return mask
    border = cv2.dilate((~zone).astype(np.uint8), disk_kernel(1)).astype(bool)
    touching = np.zeros(n, bool)
    touching[np.unique(lab[border & (lab > 0)])] = True
    small = (stats[:, cv2.CC_STAT_AREA] < max_area) & ~touching
    small[0] = False
    return mask | small[lab]


def skin_silhouette(image: np.ndarray, polys: RegionPolygons, features: np.ndarray,
                    ) -> tuple[np.ndarray, SkinColourModel | None, np.ndarray]:
    """(skin-coloured face silhouette [H, W] bool inside the search zone, features not included; the skin colour
    model, None when it cannot be fitted; the pixels sampled for it [H, W] bool)."""
    H, W = image.shape[:2]
    s = polys.frame.scale
    search = fill_polygons([polys.search], H, W)
    ys, xs = np.nonzero(search)
    if len(ys) == 0:
        return np.zeros((H, W), bool), None, np.zeros((H, W), bool)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # work in the zone's bounding box
    feats = colour_features(image[y0:y1, x0:x1])
    sub = lambda m: m[y0:y1, x0:x1]
    samples = fill_polygons(polys.samples, H, W) & ~features
    if samples.sum() < 20:  # landmarks too sparse for the sampling polygons: the eroded hull minus features
        hull = fill_polygons([polys.outline], H, W)
        samples = cv2.erode(hull.astype(np.uint8), disk_kernel(0.1 * s)).astype(bool) & ~features
    if samples.sum() < 5:
        return np.zeros((H, W), bool), None, samples
    model = fit_skin_model(feats[sub(samples)])
    coloured = model.distance2(feats) < SKIN_THRESHOLD ** 2
    coloured &= sub(search)
    # remove speckle; keep what is connected to the sampled skin
    coloured = cv2.morphologyEx(coloured.astype(np.uint8), cv2.MORPH_OPEN, disk_kernel(_SPECKLE * s)).astype(bool)
    n, lab = cv2.connectedComponents((coloured | sub(features)).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(lab[sub(samples) & coloured])] = True
    keep[0] = False
    skin = keep[lab] & coloured
    skin = _fill_small_holes(skin | sub(features), sub(search), (0.12 * s) ** 2) & ~sub(features)
    out = np.zeros((H, W), bool)
    out[y0:y1, x0:x1] = skin
    return out, model, samples


class FaceAndSkin(NamedTuple):
    """What :func:`face_and_skin` finds, [H, W] bool maps and the skin colour model."""

    face: np.ndarray  # the face mask
    skin: np.ndarray  # every pixel the skin colour model accepts
    samples: np.ndarray  # the pixels the model was fitted to
    model: SkinColourModel | None  # None when it could not be fitted (skin all False)


def face_and_skin(image: np.ndarray, landmarks: np.ndarray, relax_dark: float = 1.0) -> FaceAndSkin:
    """The face mask as :func:`parse_image` makes it without a network (the skin-coloured silhouette and the
    landmark regions), from the landmarks and the skin colour model alone; every pixel of the image the face's
    skin colour model accepts, with ``relax_dark`` (:meth:`SkinColourModel.distance2`) - the neck, the ears and a
    cheek past the landmarks' outline too (all False when the model cannot be fitted); the pixels the model was
    fitted to (the shrunk cheek, chin and nose-bridge polygons less the feature regions); and the model."""
    img, lm = _check_inputs(image, landmarks)
    H, W = img.shape[:2]
    spec = load_region_spec()
    polys = region_polygons(lm, spec)
    features = paint_regions(polys, H, W, spec) > 0
    skin, model, samples = skin_silhouette(img, polys, features)
    if model is None:
        return FaceAndSkin(features, np.zeros((H, W), bool), samples, None)
    coloured = model.distance2(colour_features(img), relax_dark=relax_dark) < SKIN_THRESHOLD ** 2
    return FaceAndSkin(skin | features, coloured, samples, model)


def monochrome(image: np.ndarray) -> bool:
    """Whether ``image`` [H, W, 3] has no colour to tell skin by: grey (or toned, sepia) throughout, its pixels'
    chromaticity spread (MAD of r and of g) under :data:`MONOCHROME_SPREAD`."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))
    img = np.asarray(image[::step, ::step], np.float32).reshape(-1, 3)
    rg = img[:, :2] / np.maximum(img.sum(-1, keepdims=True), 1e-3)
    mad = 1.4826 * np.median(np.abs(rg - np.median(rg, 0)), 0)
    return bool(mad.max() < MONOCHROME_SPREAD)


# The shared colour photos' chromaticity spread is 0.007-0.22 (the least saturated one's g), a grey photo's 0:
MONOCHROME_SPREAD = 0.003


AMBIGUOUS_REACH = 0.35  # how far outside the face mask skin-coloured pixels are looked for (x face scale)
AMBIGUOUS_BAND = 0.1  # half-width of the ignored band along an edge between face and other skin (x face scale)


def ambiguous_edges(image: np.ndarray, face: np.ndarray, model: SkinColourModel, scale: float) -> np.ndarray:
    """[H, W] bool: where the face mask's edge is not a visible boundary.

    Skin-coloured pixels just outside the face mask (neck, ears, the cheek beyond the landmark hull) and a band
    along the face edge next to them: there the mask ends at a line drawn from the landmarks, not at a change
    of colour, and a model's face area ends at a line of its own. Edges against background or hair (true
    silhouettes) are kept."""
    H, W = face.shape
    near = cv2.dilate(face.astype(np.uint8), disk_kernel(AMBIGUOUS_REACH * scale)).astype(bool) & ~face
    if not near.any():
        return np.zeros((H, W), bool)
    ys, xs = np.nonzero(near)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    coloured = np.zeros((H, W), bool)
    coloured[y0:y1, x0:x1] = model.distance2(colour_features(image[y0:y1, x0:x1])) < SKIN_THRESHOLD ** 2
    other = coloured & near
    other = cv2.morphologyEx(other.astype(np.uint8), cv2.MORPH_OPEN, disk_kernel(_SPECKLE * scale)).astype(bool)
    band = cv2.dilate(other.astype(np.uint8), disk_kernel(AMBIGUOUS_BAND * scale)).astype(bool) & face
    return other | band


FOREHEAD_BAND = 0.08  # half-width of the forehead edge band, x the chin-to-nose-bridge (landmarks 8-27) distance


def forehead_edge_band(face_mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """[H, W] bool: a band of half-width :data:`FOREHEAD_BAND` x the chin-to-nose-bridge distance around the
    face mask's edge (both sides of it), above the line through the brows' centre across the face's up
    direction (chin -> nose bridge).

    There the photo's face mask ends at the hairline or an estimated forehead line (hair, hats) and the model's
    face area at a line of its own; the two edges are not the same surface curve, so comparing them would pull
    the shape towards an arbitrary boundary. The jaw and cheek outlines (true silhouettes) are kept. Empty when
    the chin, the nose bridge or all brow landmarks are unknown. Computed from float32 landmarks (the fit's
    precision), so the result does not depend on the caller's dtype.
    """
    lm = np.asarray(landmarks, np.float32)
    chin, bridge = lm[8], lm[27]
    brows = lm[17:27]
    if not (np.isfinite(chin).all() and np.isfinite(bridge).all()) or not np.isfinite(brows).all(1).any():
        return np.zeros(face_mask.shape, bool)
    up = bridge - chin
    scale = float(np.linalg.norm(up))
    if scale < 1:
        return np.zeros(face_mask.shape, bool)
    up = up / scale
    k = disk_kernel(max(1, int(round(FOREHEAD_BAND * scale))))
    m = face_mask.astype(np.uint8)
    edge = (cv2.dilate(m, k) - cv2.erode(m, k)) > 0
    h, w = face_mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    brow_c = np.nanmean(brows, 0)
    above = ((xx + 0.5 - brow_c[0]) * up[0] + (yy + 0.5 - brow_c[1]) * up[1]) > 0
    return edge & above


def parse_image(image: np.ndarray, landmarks: np.ndarray, network=None, classes: np.ndarray | None = None
                ) -> ParsingResult:
    """Region label maps of a face photo.

    Args:
        image: [H, W, 3] float32 RGB in [0, 1] (uint8 is accepted and scaled).
        landmarks: [68, 2] float pixels, iBUG-68 order, corner convention; NaN rows = unknown (at least 3
            finite rows are required; regions whose landmarks are missing fall back to the hull of the known
            ones or are left out).
        network: optional :class:`~redafit.parsing.network.ParsingNetwork`; replaces the landmark/colour
            labels with the network's per-pixel classes.
        classes: optional [H, W] integer map of parsing classes computed elsewhere (a parsing network run
            outside redafit, hand labels: :mod:`redafit.parsing.maps`), in the class order of ``assets/regions.json``
            (CelebAMask-HQ's 19 classes); used as a network's output would be. Takes precedence over ``network``.

    Both paths make invalid: occluders inside the face zone (pixels the colour model rejects, or the network's
    occluder classes), and the band along the face mask's edge above the brows (:func:`forehead_edge_band`:
    the photo's mask ends at the hairline or a forehead line drawn from the landmarks, the model's face area
    at a line of its own). Without a network also the face edges that are no visible boundary
    (:func:`ambiguous_edges`: skin-coloured pixels continue beyond them). Labels are kept on the ignored
    edge bands; ``face_mask`` is the face silhouette either way.

    Returns:
        :class:`ParsingResult` with labels [H, W, 7], valid [H, W], face_mask [H, W].
    """
    img, lm = _check_inputs(image, landmarks)
    H, W = img.shape[:2]
    spec = load_region_spec()
    polys = region_polygons(lm, spec)
    zone = fill_polygons([polys.zone], H, W)
    if classes is not None:
        cls = np.asarray(classes)
        if cls.shape != (H, W):
            raise InputError(f"parsing classes: expected a map [{H}, {W}] like the image, got {list(cls.shape)}")
        return parse_classes(cls, lm, zone)
    if network is not None:
        return _parse_with_network(img, lm, network, zone)
    feat_idx = paint_regions(polys, H, W, spec)
    features = feat_idx > 0
    skin, skin_model, _ = skin_silhouette(img, polys, features)
    face = skin | features
    index = np.where(features, feat_idx, np.where(skin, 0, -1)).astype(np.int8)
    valid = ~(zone & ~face)
    if skin_model is not None:
        valid &= ~ambiguous_edges(img, face, skin_model, polys.frame.scale)
    valid &= ~forehead_edge_band(face, lm)
    return ParsingResult(labels=one_hot(index), valid=valid, face_mask=face)


def _parse_with_network(img: np.ndarray, lm: np.ndarray, network, zone: np.ndarray) -> ParsingResult:
    probs = network(img, lm)  # [H, W, C]
    return parse_classes(probs.argmax(-1), lm, zone, network.region_table())


def parse_classes(cls: np.ndarray, lm: np.ndarray, zone: np.ndarray, table=None) -> ParsingResult:
    """Parsing maps from per-pixel classes [H, W] (``table``: :func:`~redafit.parsing.network.class_region_table`
    of the classes' names; default the CelebAMask-HQ table); ``zone`` [H, W] bool is the landmarks' face zone,
    where occluder classes become invalid."""
    from redafit.parsing.network import class_region_table

    region_of_class, occluder = table if table is not None else class_region_table()
    cls = np.asarray(cls).astype(np.int64)
    if cls.size and (cls.min() < 0 or cls.max() >= len(region_of_class)):
        raise InputError(f"parsing classes: values must lie in 0..{len(region_of_class) - 1}, got "
                         f"{int(cls.min())}..{int(cls.max())}")
    index = region_of_class[cls]  # -1 background / occluder
    valid = ~(zone & occluder[cls])
    index = np.where(valid, index, -1).astype(np.int8)
    face = index >= 0
    valid &= ~forehead_edge_band(face, lm)
    return ParsingResult(labels=one_hot(index), valid=valid, face_mask=face)


def colorize(result: ParsingResult, image: np.ndarray | None = None, alpha: float = 0.55) -> np.ndarray:
    """A colour-coded RGB picture [H, W, 3] in [0, 1] of a parsing result (invalid pixels in magenta hatching),
    blended over ``image`` when given."""
    idx = result.index
    H, W = idx.shape
    base = np.zeros((H, W, 3), np.float32) if image is None else np.asarray(image, np.float32).copy()
    col = base.copy()
    m = idx >= 0
    col[m] = REGION_COLORS[idx[m]]
    hatch = ((np.arange(H)[:, None] + np.arange(W)[None, :]) // 3) % 2 == 0
    col[~result.valid & hatch] = (1.0, 0.0, 1.0)
    a = np.where((m | ~result.valid)[..., None], alpha if image is not None else 1.0, 0.0)
    return (base * (1 - a) + col * a).astype(np.float32)


__all__ = [
    "N_REGIONS",
    "REGION_COLORS",
    "ParsingResult",
    "SkinColourModel",
    "colorize",
    "colour_features",
    "fit_skin_model",
    "forehead_edge_band",
    "parse_image",
    "skin_silhouette",
]
