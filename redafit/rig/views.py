"""Views for a rig from a video (``redafit rig clip.mp4``): the frames that cover the widest range of yaw.

The video is sampled at up to ``candidates`` evenly spaced frames; each gets its landmarks (the detector) and its
yaw (the landmark PnP estimate on the mean face, :func:`redafit.fit.api.init_pose`), and the frames pass through
the tracker's cache rule (:class:`redafit.rig.track.FrameCache`, size ``views``): a new frame joins, and when that
makes one too many the interior one closest in yaw to a neighbour leaves - so the most turned frames either way
stay and the others spread between them, as the paper's video cache keeps them. Frames without a face are skipped,
and so are blurred ones: a frame whose face is less than half as sharp as the median sampled face (the variance of
the Laplacian of the face's box scaled to 128 px: motion blur in a head turn) is not a candidate, unless that
would leave fewer than 2. The candidates are found in one pass (landmarks, yaw and sharpness, no images kept) and
the chosen frames decoded in a second, so a long HD video does not fill the memory.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from redafit.errors import InputError, NoFaceError, RedafitError

log = logging.getLogger("redafit")


@dataclass
class VideoView:
    name: str  # frame_<source frame index>
    frame: int
    image: np.ndarray  # [H, W, 3] float32 RGB
    landmarks: np.ndarray  # [68, 2]
    intrinsics: object  # redafit.render.camera.Intrinsics
    yaw: float  # estimated, degrees


def frame_count(source) -> tuple[int, float]:
    """The video's frame count and rate as its container states them (0 and 30 when it does not)."""
    import cv2

    from redafit.rig.track import video_capture

    cap = video_capture(source)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    cap.release()
    return max(0, n), fps if fps > 0 else 30.0


def face_sharpness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """The variance of the Laplacian of the face's box (the landmarks' bounds, 10 % wider), grey, scaled to 128 px
    wide: comparable between frames whatever the face's size; low for a blurred face."""
    import cv2

    lo, hi = landmarks.min(0), landmarks.max(0)
    pad = 0.1 * (hi - lo)
    h, w = image.shape[:2]
    x0, y0 = (int(max(0, v)) for v in lo - pad)
    x1, y1 = int(min(w, hi[0] + pad[0])), int(min(h, hi[1] + pad[1]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    grey = cv2.cvtColor((np.clip(image[y0:y1, x0:x1], 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    s = 128 / (x1 - x0)
    grey = cv2.resize(grey, (128, max(4, round((y1 - y0) * s))), interpolation=cv2.INTER_AREA if s < 1 else
                      cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F).var())


def pick_video_views(source, model, views: int = 7, candidates: int = 60, detector: str = "dlib",
                     face_index: int | None = None, max_side: int = 4096, focal=None, progress=None,
                     start: float = 0.0, end: float | None = None) -> list:
    """The :class:`VideoView` s of ``source`` (a video file; its frames from ``start`` to ``end`` seconds) covering
    the widest yaw range, in frame order (see the module's description). A :class:`NoFaceError` when fewer than 2
    frames show a face."""
    import torch

    from redafit.fit.api import init_pose
    from redafit.landmarks import detect_landmarks
    from redafit.render.camera import FocalSpec, pose_rotation, rotation_to_euler
    from redafit.rig.track import CacheEntry, FrameCache, open_frames

    n, rate = frame_count(source)
    n = max(0, min(n, math.ceil(end * rate)) if end is not None else n) - math.ceil(start * rate)
    every = max(1, math.ceil(n / candidates)) if n > 0 else 1
    span = {"every": every, "max_frames": candidates, "max_side": max_side, "start": start, "end": end}
    frames, _ = open_frames(source, **span)
    spec = FocalSpec.parse(focal if focal is not None else "auto")
    found, seen, why = [], 0, None  # (frame, yaw, landmarks, camera, sharpness) of the frames with a face
    for index, _, image in frames:
        seen += 1
        if progress is not None:
            progress.start(f"views: frame {index}")
        try:
            lm = np.asarray(detect_landmarks(image, detector=detector, face_index=face_index), np.float32)
        except RedafitError as e:  # a frame without a face (or an unusable one) is skipped
            log.debug("rig: frame %d: %s", index, e)
            why = why or str(e)
            continue
        K, _ = spec.intrinsics(image.shape[1], image.shape[0], 1.0, None)
        r, _ = init_pose(lm, model, K)
        yaw = float(rotation_to_euler(pose_rotation(torch.as_tensor(r)[None]))[0, 0])
        found.append((int(index), yaw, lm, K, face_sharpness(image, lm)))
    if not seen:
        raise InputError(f"rig: {Path(source).name}: no frames to sample (--start and --end leave none)")
    if len(found) < 2:
        reason = f" (the first without: {why})" if why else ""
        raise NoFaceError(f"rig: {Path(source).name}: a face in {len(found)} of the {seen} frames sampled; a rig "
                          f"needs at least 2{reason}")
    floor = 0.5 * float(np.median([f[4] for f in found]))
    sharp = [f for f in found if f[4] >= floor]
    if len(sharp) < 2:  # two faces, one blurred: a rig needs both
        sharp = found
    cache = FrameCache(views)
    for index, yaw, lm, _, _ in sharp:
        cache.add(CacheEntry(index, yaw, None, lm))
    chosen = {e.frame for e in cache.entries}
    images = {}
    again, _ = open_frames(source, **span)
    for index, _, image in again:
        if index in chosen:
            images[index] = image
        if len(images) == len(chosen):
            again.close()  # the video released now, not when the generator is collected
            break
    picked = [f for f in found if f[0] in chosen and f[0] in images]
    log.info("rig: %d views of %s (a face in %d of %d frames sampled, every %d-th; %d blurred left aside), yaws %s",
             len(picked), Path(source).name, len(found), seen, every, len(found) - len(sharp),
             ", ".join(f"{f[1]:.0f}" for f in picked))
    return [VideoView(f"frame_{index:05d}", index, images[index], lm, K, yaw)
            for index, yaw, lm, K, _ in picked]
