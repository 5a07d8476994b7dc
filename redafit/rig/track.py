"""Video tracking with a yaw-diverse frame cache (paper supplementary B.2).

Every frame is reconstructed with an identity estimated jointly from a cache of up to 5 earlier frames chosen to
cover the widest range of yaw. Cache rule (:func:`cache_drop_index`): add the new frame; when that makes 6, sort
them by estimated yaw and drop the one whose smaller yaw gap to a neighbour is the smallest - never the first
or the last (the extremes), so the cache keeps the widest yaw coverage.

Speed choice (documented): the paper reconstructs every frame jointly with the cache. Here the identity (and the
shared free-form correction) is re-fitted jointly on the cache only when the cache changed and at least
``id_every`` frames passed since the last identity fit (and on every change while the cache is filling up);
each frame then gets its own expression and pose with that identity fixed, through the landmark stages only
(Levenberg-Marquardt: tens of milliseconds). The yaw that orders the cache is the landmark PnP estimate on the
mean face (:func:`redafit.fit.api.init_pose`), available before any fit. Each frame's face is looked for near the
previous frame's (:class:`redafit.landmarks.FaceFollower`: a fraction of a whole HD frame's detection), the whole
frame searched when it is not there.

Output (:func:`write_track`): ``params.jsonl`` (one JSON object per frame: frame index, time, expression by
name, pose, landmark error; ``"ok": false`` with the error for frames without a usable face) and
``track.json`` (source, fps, model, final identity, cache, timings); with ARKit-named expressions (ICT's),
``livelink.csv``: the same frames as ARKit blendshape curves in Live Link Face's CSV layout
(:mod:`redafit.rig.livelink`), for characters rigged for ARKit.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from redafit.errors import ImageError, InputError, RedafitError
from redafit.io import jsonsafe
from redafit.io.atomic import atomic_group, make_folder
from redafit.io.images import folder_images

log = logging.getLogger("redafit")

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
LANDMARK_ONLY_LOSSES = {"landmarks", "id_prior", "exp_prior", "exp_l1"}
LOST_IOD = 0.2  # a frame's fit this far from its landmarks (x the eye distance): the next frame's face is searched anew


# ----------------------------------------------------------------------------------------------------------------
# the cache rule (pure)
# ----------------------------------------------------------------------------------------------------------------
def cache_drop_index(yaws, size: int = 5) -> int | None:
    """Which of ``yaws`` (the cache plus the new frame, in any order) to drop so ``size`` remain, or None when
    there are at most ``size``. Sorted by yaw, the dropped one is the interior element (never the smallest or
    largest yaw) whose gap to its nearer neighbour is the smallest; ties drop the earlier entry in ``yaws``."""
    yaws = [float(y) for y in yaws]
    if len(yaws) <= size:
        return None
    if size < 2:
        raise ValueError("cache size must be at least 2")
    order = sorted(range(len(yaws)), key=lambda i: (yaws[i], i))
    best, best_gap = None, np.inf
    for k in range(1, len(order) - 1):
        i = order[k]
        gap = min(yaws[i] - yaws[order[k - 1]], yaws[order[k + 1]] - yaws[i])
        if gap < best_gap or (gap == best_gap and i < best):
            best, best_gap = i, gap
    return best


@dataclass
class CacheEntry:
    frame: int
    yaw: float
    image: np.ndarray = field(repr=False)
    landmarks: np.ndarray = field(repr=False)
    parsing: np.ndarray | None = field(default=None, repr=False)  # a parsing map given for the frame


class FrameCache:
    """Up to ``size`` frames covering the widest yaw range (see :func:`cache_drop_index`)."""

    def __init__(self, size: int = 5):
        if size < 2:
            raise InputError(f"cache size must be at least 2, got {size}")
        self.size = size
        self.entries: list[CacheEntry] = []

    def add(self, entry: CacheEntry) -> bool:
        """Add a frame; returns True when the cache's membership changed (the new frame was kept)."""
        cand = self.entries + [entry]
        drop = cache_drop_index([e.yaw for e in cand], self.size)
        if drop is not None:
            cand.pop(drop)
        changed = any(e is entry for e in cand)
        self.entries = cand
        return changed

    @property
    def frames(self) -> list[int]:
        return [e.frame for e in self.entries]

    @property
    def yaws(self) -> list[float]:
        return [e.yaw for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)


# ----------------------------------------------------------------------------------------------------------------
# frames
# ----------------------------------------------------------------------------------------------------------------
def frame_files(folder) -> list[Path]:
    """The frames of a folder source: its images in natural name order (``f2.png`` before ``f10.png``; frame i
    is the i-th; :func:`redafit.io.images.folder_images`)."""
    return folder_images(folder)


def frame_parsing_maps(source, folder, files: list | None = None):
    """``parsing_for(index, image)`` for :func:`track`: the parsing map given for frame ``index`` in ``folder``
    (``redafit track --parsing``), resampled to the frame, or None when the folder has none for it. A folder
    source's frame is named by its file's stem (``frames/0042.jpg`` -> ``0042.png|.npy``), a video's by its
    0-based frame index in 6 digits (``000042.png``, as ``ffmpeg -i clip.mp4 -start_number 0 %06d.png`` names
    them). An unreadable or mismatched map is an :class:`~redafit.errors.InputError` (the frame fails alone).
    ``files``: the frame files as :func:`open_frames` was given them (a folder source's listed once for both, so a
    frame added meanwhile cannot shift the names; a list of files, ``source`` None, is named the same way)."""
    from redafit.parsing.maps import find_parsing_map, load_parsing_map

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--parsing {folder}: expected a folder of per-frame parsing maps")
    if files is None and source is not None and Path(source).is_dir():
        files = frame_files(source)

    def parsing_for(index: int, image: np.ndarray) -> np.ndarray | None:
        name = files[index] if files is not None else Path(f"{int(index):06d}")
        path = find_parsing_map(name, folder, required=False)
        return None if path is None else load_parsing_map(path, size=(image.shape[1], image.shape[0]))

    return parsing_for


def open_frames(source, every: int = 1, max_frames: int | None = None, max_side: int = 4096,
                files: list | None = None, fps: float | None = None, start: float = 0.0, end: float | None = None):
    """(frames iterator, fps) for a video file (OpenCV), a folder of images (:func:`frame_files`' order) or a list
    of image files (``source`` None, ``files`` the frames in order: ``redafit track --files-from``).

    The iterator yields (frame index in the source, time in seconds, float32 RGB [H, W, 3]); ``every`` keeps every
    N-th frame, ``max_frames`` stops after that many kept frames. ``start`` and ``end`` (seconds, the source's
    own time: index / fps) keep the frames from ``start`` up to, not including, ``end``; ``every`` counts from the
    first of them. ``fps``: the frames' rate (an image sequence's default 30; a video's own rate unless given). A
    frame file that cannot be read is yielded as its error (the frame fails alone). A video's frames that are not
    kept are only grabbed, not converted.
    """
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise InputError(f"frame rate must be positive, got {fps}")
    if not (np.isfinite(start) and start >= 0) or (end is not None and not (np.isfinite(end) and end > start)):
        raise InputError(f"the frames' time span must have 0 <= start < end, got start {start}, end {end}")
    every = max(1, int(every))

    def span(fps: float):
        """(the first frame index kept, a test of whether index i is past the end)."""
        first = int(np.ceil(start * fps - 1e-9))
        return first, (lambda i: end is not None and i / fps >= end - 1e-9)

    src = None if source is None else Path(source)
    if src is None or src.is_dir():
        if src is not None and files is None:
            files = frame_files(src)  # ``files``: listed by the caller (see frame_parsing_maps)
        if not files:
            raise InputError("track: no frames given")
        fps = float(fps or 30.0)
        first, past = span(fps)

        def gen_dir():
            from redafit.io.images import load_image

            kept = 0
            for i, p in enumerate(files):
                if i < first or (i - first) % every:
                    continue
                if past(i) or (max_frames is not None and kept >= max_frames):
                    return
                kept += 1
                try:
                    img = load_image(p, max_side=max_side)[0]
                except RedafitError as e:
                    yield i, i / fps, e
                    continue
                yield i, i / fps, img

        return gen_dir(), fps
    if not src.is_file():
        raise InputError(f"{src}: no such video file or folder")
    import cv2

    from redafit.io.images import quiet_opencv

    cap = video_capture(src)
    with quiet_opencv():
        first_frame = cap.read() if cap.isOpened() else (False, None)
    if not first_frame[0]:  # a file OpenCV opens but cannot decode a frame of is as unreadable as one it cannot open
        cap.release()
        raise ImageError(f"{src}: OpenCV cannot read a frame of this video (unsupported codec or not a video)")
    fps = float(fps or cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
    first, past = span(fps)

    def gen_video():
        kept, i = 0, 0
        try:
            ok, frame = first_frame
            while ok:
                if past(i) or (max_frames is not None and kept >= max_frames):
                    return
                if i >= first and not (i - first) % every:
                    kept += 1
                    img = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
                    h, w = img.shape[:2]
                    if max(h, w) > max_side:
                        s = max_side / max(h, w)
                        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                                         interpolation=cv2.INTER_AREA)
                    yield i, i / fps, img
                i += 1
                nxt = i >= first and not (i - first) % every  # the next frame is kept: decode it, else grab only
                ok, frame = cap.read() if nxt else (cap.grab(), None)
            declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # an estimate in some containers: a margin
            if declared - i > max(2, 0.02 * declared):
                log.warning("%s: the video stopped decoding at frame %d of the %d it declares (damaged or cut "
                            "short?): the rest is left out", src, i, declared)
        finally:
            cap.release()

    return gen_video(), fps


def video_capture(src):
    """An OpenCV capture of the video ``src`` (check ``isOpened``), opened without FFmpeg's own messages ("moov
    atom not found" beside a one-line error): its log level is read before the first capture opens, and a user's
    own setting wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    import cv2

    from redafit.io.images import quiet_opencv

    with quiet_opencv():
        return cv2.VideoCapture(str(src))


def frames_focal(focal, files: list | None):
    """The frames' :class:`~redafit.render.camera.FocalSpec`: ``focal`` itself unless it is ``auto`` and the frames
    are image files whose first one's EXIF gives a 35 mm-equivalent focal length (a phone's burst or time-lapse,
    not cropped since: :meth:`FocalSpec.resolve`), which then holds for every frame; a video's frames carry no
    EXIF (``auto`` is then the default factor)."""
    from redafit.errors import RedafitError
    from redafit.io.images import load_image
    from redafit.render.camera import FocalSpec

    spec = FocalSpec.parse(focal if focal is not None else "auto")
    if spec.kind != "auto" or not files:
        return spec
    try:
        image, meta = load_image(files[0])
    except RedafitError:  # the frame fails on its own when tracked
        return spec
    _, source = spec.resolve(image.shape[1], image.shape[0], meta.scale, meta.camera)
    if not source.startswith("EXIF"):
        return spec
    log.info("track: focal length from %s's EXIF, %g mm (35 mm equivalent), for every frame", Path(files[0]).name,
             meta.camera.focal_35mm)
    return FocalSpec("mm", float(meta.camera.focal_35mm))


# ----------------------------------------------------------------------------------------------------------------
# tracking
# ----------------------------------------------------------------------------------------------------------------
def frame_config(config):
    """Per-frame config: the landmark-only stages of ``config`` with identity, free-form and albedo frozen."""
    from redafit.fit.config import FitConfig

    stages = [s for s in config.stages if set(s.losses) <= LANDMARK_ONLY_LOSSES]
    if not stages:
        stages = list(FitConfig.preset("landmarks").stages)
    stages = tuple(replace(s, params=tuple(p for p in s.params if p not in ("id", "disp", "albedo", "albedo_reg")))
                   for s in stages)
    return replace(config, stages=stages, freeform=False, attributes=())


@dataclass
class TrackResult:
    records: list  # one dict per frame (see write_track)
    identity: np.ndarray | None  # [Ki]
    displacement: np.ndarray | None  # [V, 3]
    cache_frames: list
    identity_fits: int
    fps: float
    seconds: float
    model_name: str = ""
    expression_names: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    parsing_maps: int = 0  # frames a parsing map was given for (track --parsing; the cache's identity fits use them)
    # the camera of the first tracked frame (Intrinsics.to_dict: the frames' poses are in its frame), None when none
    camera: dict | None = None
    # each record's target landmarks [68, 2] (detected or given; None where there were none), for overlays only
    landmarks: list = field(default_factory=list, repr=False)


class Tracker:
    """Stateful per-frame tracker; feed frames with :meth:`step`."""

    def __init__(self, model, config=None, cache_size: int = 5, id_every: int = 10, detector: str = "dlib",
                 face_index: int | None = None, progress=None, parsing_for=None, focal=None, follow: bool = True):
        from redafit.fit.config import FitConfig
        from redafit.landmarks import FaceFollower

        self.model = model
        # the frames' focal length (a redafit.render.camera.FocalSpec, resolved on each frame's size: "auto" is the
        # default factor here, frames_focal having read any EXIF); None: the config's focal
        self.focal = focal
        self.first_camera = None  # the first tracked frame's Intrinsics
        self.last_landmarks = None  # the last frame's target landmarks (None when it had none)
        self.config = config or FitConfig.preset("landmarks")
        self.frame_cfg = frame_config(self.config)
        self.cache = FrameCache(cache_size)
        self.id_every = max(1, int(id_every))
        self.detector, self.face_index = detector, face_index
        # the face looked for near the last frame's (redafit.landmarks.FaceFollower), or in every whole frame
        self.follower = FaceFollower(detector, face_index) if follow else None
        self.progress = progress
        self.parsing_for = parsing_for  # (index, image) -> given parsing map or None (see frame_parsing_maps)
        self.parsing_maps = 0
        self.identity = None  # [1, Ki]
        self.disp = None  # [1, V, 3]
        self.identity_fits = 0
        self.last_id_fit = -10 ** 9
        self.prev_exp = None
        self.count = 0
        self.t_id = 0.0
        self.t_frame = 0.0
        self.t_detect = 0.0

    def camera(self, image):
        """The :class:`~redafit.render.camera.Intrinsics` of a frame (``focal``, else the config's focal): ``auto``
        is the default factor here (:func:`frames_focal` turns a first frame's EXIF into a 35 mm equivalent for
        all), and pixels are those of the frames as tracked (after ``--max-side``)."""
        from redafit.render.camera import FocalSpec, Intrinsics

        h, w = image.shape[:2]
        if self.focal is None:
            return Intrinsics.default(w, h, self.config.focal)
        return FocalSpec.parse(self.focal).intrinsics(w, h)[0]

    def _fit_identity(self):
        from redafit.fit.api import fit_batch

        ims = [e.image for e in self.cache.entries]
        lms = [e.landmarks for e in self.cache.entries]
        init = {"id": self.identity} if self.identity is not None else None
        parsings = [e.parsing for e in self.cache.entries]
        t0 = time.perf_counter()
        res = fit_batch(ims, lms, self.model, self.config, [self.camera(im) for im in ims], shared_id=True,
                        init=init, progress=self.progress,
                        parsings=parsings if any(m is not None for m in parsings) else None)
        self.t_id += time.perf_counter() - t0
        r0 = res[0]
        basis = self.model.exp_basis.detach().cpu().numpy()
        ke = len(r0.exp_coeffs)
        neutral = r0.vertices_model - np.tensordot(r0.exp_coeffs, basis[:ke], 1)
        import torch

        with torch.no_grad():
            base = self.model(torch.as_tensor(r0.id_coeffs, device=self.model.mean.device)[None])[0].cpu().numpy()
        self.identity = r0.id_coeffs[None].astype(np.float32)
        self.disp = (neutral - base)[None].astype(np.float32)
        self.identity_fits += 1
        self.last_id_fit = self.count
        log.info("track: identity fitted on cache frames %s (yaw %s)", self.cache.frames,
                 ", ".join(f"{y:.0f}" for y in self.cache.yaws))

    def step(self, index: int, t: float, image, landmarks=None) -> dict:
        """Track one frame; returns its record (``ok`` False with ``error`` when it cannot be tracked)."""
        from redafit.fit.api import check_image, _check_landmarks, fit_batch, init_pose
        from redafit.render.camera import pose_rotation, rotation_to_euler

        self.count += 1
        self.last_landmarks = None
        rec = {"frame": int(index), "time_s": round(float(t), 4)}
        try:
            if isinstance(image, Exception):
                raise image
            check_image(image)
            parsing = None if self.parsing_for is None else self.parsing_for(index, image)
            if landmarks is None:
                from redafit.landmarks import detect_landmarks

                t0 = time.perf_counter()
                try:
                    landmarks = (self.follower(image) if self.follower is not None else
                                 detect_landmarks(image, detector=self.detector, face_index=self.face_index))
                finally:
                    self.t_detect += time.perf_counter() - t0
            landmarks = _check_landmarks(landmarks)
            self.last_landmarks = np.asarray(landmarks, np.float32)
            K = self.camera(image)
            self.first_camera = self.first_camera or K
            import torch

            r, _ = init_pose(landmarks, self.model, K)
            yaw = float(rotation_to_euler(pose_rotation(torch.as_tensor(r)[None]))[0, 0])
            changed = self.cache.add(CacheEntry(int(index), yaw, image, landmarks, parsing))
            self.parsing_maps += parsing is not None
            filling = len(self.cache) < self.cache.size or self.identity_fits < self.cache.size
            if self.identity is None or (changed and (filling or self.count - self.last_id_fit >= self.id_every)):
                self._fit_identity()
            init = {"id": self.identity, "disp": self.disp}
            if self.prev_exp is not None:
                init["exp"] = self.prev_exp
            t0 = time.perf_counter()
            res = fit_batch([image], [landmarks], self.model, self.frame_cfg, [K], init=init)[0]
            self.t_frame += time.perf_counter() - t0
        except RedafitError as e:
            rec.update(ok=False, error=str(e), exit_code=e.exit_code)
            return rec
        self.prev_exp = res.exp_coeffs[None]
        if self.follower is not None and res.landmark_error_iod > LOST_IOD:  # the landmarks fit no face: look again
            self.follower.reset()
        rec.update(ok=True, **_pose_record(res.rot, res.trans, res.exp_coeffs, res.expression_names),
                   camera=K.to_dict(), landmark_error_px=round(float(res.landmark_error_px), 3),
                   landmark_error_iod=round(float(res.landmark_error_iod), 5), yaw_estimate_deg=round(yaw, 2),
                   cache=self.cache.frames, identity_fit=self.identity_fits)
        return rec


def _pose_record(rot, trans, exp, names) -> dict:
    import torch

    from redafit.render.camera import pose_rotation, rotation_to_euler

    R = pose_rotation(torch.as_tensor(np.asarray(rot, np.float32))[None])
    yaw, pitch, roll = (float(a) for a in rotation_to_euler(R)[0])
    f = lambda a: np.round(np.asarray(a, np.float64), 6).tolist()  # noqa: E731
    return {"expression": dict(zip(names, f(exp))),
            "pose": {"axis_angle": f(rot), "rotation": f(R[0].numpy()), "translation_mm": f(trans),
                     "yaw_deg": round(yaw, 4), "pitch_deg": round(pitch, 4), "roll_deg": round(roll, 4)}}


def track(frames, model, config=None, fps: float = 30.0, cache_size: int = 5, id_every: int = 10,
          smooth: float = 0.0, detector: str = "dlib", face_index: int | None = None, landmarks=None,
          progress=None, on_frame=None, parsing_for=None, files=None, focal=None, follow: bool = True) -> TrackResult:
    """Track ``frames`` (an iterable of (index, time_s, image)); ``landmarks`` optionally gives them per frame
    (a list aligned with the frames) instead of detecting. ``smooth`` > 0: Gaussian temporal smoothing (sigma in
    frames) of expression, rotation and translation. ``on_frame(record)`` is called after each frame.
    ``parsing_for(index, image)`` gives a frame's parsing map made elsewhere (:func:`frame_parsing_maps`) or None
    (the frame is parsed itself); only the identity fits on the cache use it, with a preset that has the mask
    attribute. ``files``: the image files the frames were read from (frame index -> file); each record then names
    its ``file``. ``focal``: the frames' focal length (:class:`~redafit.render.camera.FocalSpec` or its text;
    ``auto`` is the default factor here: :func:`frames_focal` reads a first frame image's EXIF), else the
    config's. ``follow``: look for each frame's face near the previous frame's
    (:class:`~redafit.landmarks.FaceFollower`), else in the whole frame every time."""
    t0 = time.perf_counter()
    tr = Tracker(model, config, cache_size, id_every, detector, face_index, progress, parsing_for, focal, follow)
    records, targets = [], []
    for k, (index, t, image) in enumerate(frames):
        lm = landmarks[k] if landmarks is not None else None
        rec = tr.step(index, t, image, lm)
        targets.append(tr.last_landmarks)
        if files is not None:
            rec = {"frame": rec.pop("frame"), "file": str(files[index]), **rec}
        records.append(rec)
        if on_frame is not None:
            on_frame(rec)
    if not any(r.get("ok") for r in records):
        if not records:
            raise InputError("track: no frames to track (the source has none, or --start, --end and --every "
                             "leave none)")
        codes = {r.get("exit_code", 1) for r in records}
        err = records[0].get("error", "no usable frame")
        from redafit import errors

        cls = next((c for c in (errors.NoFaceError, errors.ImageError, errors.InputError) if {c.exit_code} == codes),
                   errors.RedafitError)
        raise cls(f"track: no frame could be tracked ({len(records)} frames; first error: {err})")
    if smooth and smooth > 0:
        records = smooth_records(records, smooth, unit_exp=model.info.expression_prior == "unit")
    n = max(1, tr.count)
    timings = {"detect_s_per_frame": round(tr.t_detect / n, 4), "fit_s_per_frame": round(tr.t_frame / n, 4),
               "identity_fit_s_total": round(tr.t_id, 3)}
    if tr.follower is not None:
        timings.update(faces_found_near=tr.follower.near, faces_searched_whole=tr.follower.whole)
    return TrackResult(records, None if tr.identity is None else tr.identity[0],
                       None if tr.disp is None else tr.disp[0], tr.cache.frames, tr.identity_fits, fps,
                       time.perf_counter() - t0, model.name, list(model.expression_names), timings, tr.parsing_maps,
                       None if tr.first_camera is None else tr.first_camera.to_dict(), targets)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth [T, D] along T with a normalised Gaussian (edges renormalised)."""
    r = max(1, int(round(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    T = len(x)
    out = np.empty_like(x)
    for i in range(T):
        lo, hi = max(0, i - r), min(T, i + r + 1)
        w = k[lo - i + r: hi - i + r]
        out[i] = (w[:, None] * x[lo:hi]).sum(0) / w.sum()
    return out


def smooth_records(records: list, sigma: float, unit_exp: bool = True) -> list:
    """Gaussian temporal smoothing (sigma in frames) of the tracked frames' expression, axis-angle rotation and
    translation; rotation matrices and Euler angles are recomputed. Untracked frames are left out of (and kept
    unchanged by) the smoothing."""
    ok = [r for r in records if r.get("ok")]
    if len(ok) < 2:
        return records
    names = list(ok[0]["expression"])
    E = np.array([[r["expression"][n] for n in names] for r in ok])
    Rt = np.array([r["pose"]["axis_angle"] for r in ok])
    Tt = np.array([r["pose"]["translation_mm"] for r in ok])
    E, Rt, Tt = (_gaussian_smooth(a, sigma) for a in (E, Rt, Tt))
    if unit_exp:
        E = np.clip(E, 0, 1)
    out = []
    j = 0
    for r in records:
        if not r.get("ok"):
            out.append(r)
            continue
        new = dict(r)
        new.update(_pose_record(Rt[j], Tt[j], E[j], names))
        new["smoothed_sigma"] = float(sigma)
        out.append(new)
        j += 1
    return out


@atomic_group()
def write_track(result: TrackResult, folder, source: str = "") -> list[Path]:
    """``params.jsonl`` (one line per frame), ``track.json`` (summary) and, for a model with ARKit-named
    expressions, ``livelink.csv`` (the frames' ARKit curves in Live Link Face's layout: :mod:`redafit.rig.livelink`),
    all or none (:func:`redafit.io.atomic.atomic_group`)."""
    from redafit.io.atomic import atomic_write
    from redafit.rig import livelink

    out = Path(folder)
    make_folder(out)
    with atomic_write(out / "params.jsonl", "w", encoding="utf-8") as fh:
        for r in result.records:
            fh.write(jsonsafe.dumps(r) + "\n")
    ok = sum(1 for r in result.records if r.get("ok"))
    meta = {"source": str(source), "model": result.model_name, "fps": result.fps, "frames": len(result.records),
            "tracked": ok, "identity_fits": result.identity_fits, "cache_frames": result.cache_frames,
            "identity": None if result.identity is None else np.round(result.identity, 6).tolist(),
            "expression_names": result.expression_names, "seconds": round(result.seconds, 3),
            "seconds_per_frame": round(result.seconds / max(1, len(result.records)), 4), "timings": result.timings,
            "parsing_maps": result.parsing_maps, "camera": result.camera}
    with atomic_write(out / "track.json", "w", encoding="utf-8") as fh:
        jsonsafe.dump(meta, fh, indent=1)
    written = [out / "params.jsonl", out / "track.json"]
    if livelink.drives_arkit(result.expression_names):
        with atomic_write(out / livelink.FILE, "w", encoding="utf-8") as fh:
            fh.write(livelink.livelink_csv(result.records, result.expression_names, result.fps))
        written.append(out / livelink.FILE)
    elif (out / livelink.FILE).is_file():  # an earlier track's curves would not be this one's
        (out / livelink.FILE).unlink()
        log.warning("track: removed %s of an earlier track: this model's expressions are not ARKit-named",
                    out / livelink.FILE)
    return written


def _vector(x, shape: tuple) -> bool:
    """``x`` is a nested list of finite numbers (not booleans) of ``shape``."""
    if len(shape) == 0:
        try:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(float(x)))
        except OverflowError:  # an integer too large for a float
            return False
    return isinstance(x, list) and len(x) == shape[0] and all(_vector(v, shape[1:]) for v in x)


MAX_WEIGHT = 100.0  # an expression weight beyond this (a blendshape's 0-1, a PCA mode's few std) is not one


def _record_error(r: dict, prev: dict | None) -> str | None:
    """What is wrong with a tracked record (None when nothing): finite numeric weights within ±:data:`MAX_WEIGHT`,
    a pose with a 3-vector axis-angle and translation (and a 3x3 rotation when given), frame indices and times
    increasing."""
    bad = [k for k, v in r["expression"].items() if not _vector(v, ())]
    if bad:
        return f"expression weight {bad[0]!r} is {r['expression'][bad[0]]!r}, expected a finite number"
    wild = [k for k, v in r["expression"].items() if abs(v) > MAX_WEIGHT]
    if wild:
        return f"expression weight {wild[0]!r} is {r['expression'][wild[0]]!r}, beyond ±{MAX_WEIGHT:g}"
    pose = r["pose"]
    if not isinstance(pose, dict):
        return "'pose' must be an object"
    for key, shape in (("axis_angle", (3,)), ("translation_mm", (3,)), ("rotation", (3, 3))):
        if (key != "rotation" or key in pose) and not _vector(pose.get(key), shape):
            return f"pose {key!r} must be {' x '.join(map(str, shape))} finite numbers, got {pose.get(key)!r}"
    for key, kind in (("frame", "a non-negative integer"), ("time_s", "a non-negative number")):
        if key not in r:
            continue
        v = r[key]
        if not _vector(v, ()) or v < 0 or (key == "frame" and not isinstance(v, int)):
            return f"{key!r} must be {kind}, got {v!r}"
        if prev is not None and key in prev and v <= prev[key]:
            return f"{key!r} {v} does not follow the previous tracked frame's {prev[key]}"
    return None


def read_fit_params(path) -> dict:
    """The ``--params`` JSON of ``redafit fit`` as one tracked frame (frame 0 at time 0, with the fit's expression,
    pose and camera): a photo's expression and head pose to drive a rig with. :class:`InputError` when it is not
    such a file."""
    from redafit.io.inputs import read_text_file

    text = read_text_file(path, "fit params file", 64 << 20)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(d, dict) or not isinstance(d.get("expression"), dict) or "pose" not in d:
        raise InputError(f"{path}: not the --params JSON of redafit fit (expected 'expression' (name -> weight) and "
                         "'pose')")
    rec = {"frame": 0, "time_s": 0.0, "ok": True, "expression": d["expression"], "pose": d["pose"]}
    err = _record_error(rec, None)
    if err:
        raise InputError(f"{path}: {err}")
    if "camera" in d:
        from redafit.render.camera import Intrinsics

        try:
            Intrinsics.from_dict(d["camera"])
        except (TypeError, KeyError, ValueError, OverflowError, RedafitError) as e:
            raise InputError(f"{path}: 'camera' is not a camera ({str(e) or type(e).__name__}); expected fx, fy, cx, "
                             "cy, width, height") from None
        rec["camera"] = d["camera"]
    return rec


MAX_PARAMS_BYTES = 4 << 30  # a track's params.jsonl (about 2 KB a frame: 4 GB is a day at 25 fps), unread beyond


def params_file(path) -> Path:
    """The ``params.jsonl`` that ``path`` names: the file itself, or the one in the folder ``path``."""
    path = Path(path)
    return path / "params.jsonl" if path.is_dir() else path


def track_camera(path) -> dict | None:
    """The camera of the track whose ``params.jsonl`` ``path`` names (``track.json``'s ``camera`` beside it:
    :meth:`~redafit.render.camera.Intrinsics.to_dict`); None when there is none (an older track) or it cannot be
    read. (A fit's ``--params`` JSON carries its camera in its one record: :func:`read_fit_params`.)"""
    meta = params_file(path).parent / "track.json"
    try:
        cam = json.loads(meta.read_text()).get("camera") if meta.is_file() else None
    except (ValueError, OSError, AttributeError):
        return None
    return cam if isinstance(cam, dict) else None


def read_params(path, names=None) -> tuple[list, float]:
    """The tracked frames of a ``params.jsonl`` (ok records only) and their frame rate (from ``track.json``
    beside it, else 30). Every tracked record is checked here (the one place), so that a malformed one is an
    :class:`InputError` naming its line rather than a crash in the retargeting. A ``.csv`` is read as a Live Link
    Face take (:func:`redafit.rig.livelink.read_take`) for a rig with expression ``names``; a ``.json`` as the
    one frame of a photo's fit (:func:`read_fit_params`)."""
    from redafit.io.inputs import read_text_file

    path = params_file(path)
    if path.suffix.lower() == ".csv":
        from redafit.rig.livelink import read_take

        if names is None:
            raise InputError(f"{path}: a Live Link Face CSV is read for a rig's expression names")
        return read_take(path, names, MAX_PARAMS_BYTES)
    if path.suffix.lower() == ".json":
        return [read_fit_params(path)], 30.0
    text = read_text_file(path, "track params file", MAX_PARAMS_BYTES)
    recs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        if not isinstance(r, dict):
            raise InputError(f"{path}:{n}: expected a JSON object per line")
        if r.get("ok", True) and "expression" in r:
            if not isinstance(r["expression"], dict) or "pose" not in r:
                raise InputError(f"{path}:{n}: expected 'expression' (name -> weight) and 'pose'")
            err = _record_error(r, recs[-1] if recs else None)
            if err:
                raise InputError(f"{path}:{n}: {err}")
            recs.append(r)
    if not recs:
        raise InputError(f"{path}: no tracked frames in the file")
    return recs, track_fps(path.parent) or 30.0


def track_fps(folder) -> float | None:
    """The frame rate ``track.json`` in ``folder`` records (a finite positive number), else None (none there, or
    unreadable)."""
    meta = Path(folder) / "track.json"
    try:
        fps = float(json.loads(meta.read_text())["fps"]) if meta.is_file() else None
    except (ValueError, KeyError, TypeError, OSError, OverflowError):
        return None
    return fps if fps is not None and np.isfinite(fps) and fps > 0 else None
