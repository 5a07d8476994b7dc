"""Views for a rig from a video (``redafit rig clip.mp4``): the frames that cover the widest range of yaw.

The video is sampled at up to ``candidates`` evenly spaced frames; each gets its landmarks (the detector) and its
yaw (the landmark PnP estimate on the mean face, :func:`redafit.fit.api.init_pose`), and the frames pass through
the tracker's cache rule (:class:`redafit.rig.track.FrameCache`, size ``views``): a new frame joins, and when that
makes one too many the interior one closest in yaw to a neighbour leaves - so the most turned frames either way
stay and the others spread between them, as the paper's video cache keeps them. Frames without a face are skipped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from redafit.errors import NoFaceError, RedafitError

log = logging.getLogger("redafit")


@dataclass
class VideoView:
    name: str  # frame_<source frame index>
    frame: int
    image: np.ndarray  # [H, W, 3] float32 RGB
    landmarks: np.ndarray  # [68, 2]
    intrinsics: object  # redafit.render.camera.Intrinsics
    yaw: float  # estimated, degrees


def frame_count(source) -> int:
    """The video's frame count as its container states it (0 when it does not)."""
    import cv2

    from redafit.io.images import quiet_opencv

    with quiet_opencv():
        cap = cv2.VideoCapture(str(source))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
        cap.release()
    return max(0, n)


def pick_video_views(source, model, views: int = 7, candidates: int = 60, detector: str = "dlib",
                     face_index: int | None = None, max_side: int = 4096, focal=None, progress=None) -> list:
    """The :class:`VideoView` s of ``source`` (a video file) covering the widest yaw range, in frame order (see the
    module's description). A :class:`NoFaceError` when fewer than 2 frames show a face."""
    import torch

    from redafit.fit.api import init_pose
    from redafit.landmarks import detect_landmarks
    from redafit.render.camera import FocalSpec, pose_rotation, rotation_to_euler
    from redafit.rig.track import CacheEntry, FrameCache, open_frames

    n = frame_count(source)
    every = max(1, math.ceil(n / candidates)) if n else 1
    frames, _ = open_frames(source, every=every, max_frames=candidates, max_side=max_side)
    spec = FocalSpec.parse(focal if focal is not None else "auto")
    cache, cameras, seen, faces = FrameCache(views), {}, 0, 0
    for index, _, image in frames:
        seen += 1
        if progress is not None:
            progress.start(f"views: frame {index}")
        try:
            lm = np.asarray(detect_landmarks(image, detector=detector, face_index=face_index), np.float32)
        except RedafitError as e:  # a frame without a face (or an unusable one) is skipped
            log.debug("rig: frame %d: %s", index, e)
            continue
        faces += 1
        K, _ = spec.intrinsics(image.shape[1], image.shape[0], 1.0, None)
        r, _ = init_pose(lm, model, K)
        yaw = float(rotation_to_euler(pose_rotation(torch.as_tensor(r)[None]))[0, 0])
        cache.add(CacheEntry(int(index), yaw, image, lm))
        cameras[int(index)] = K
    if faces < 2:
        raise NoFaceError(f"rig: {Path(source).name}: a face in {faces} of the {seen} frames sampled; a rig needs "
                          "at least 2")
    chosen = sorted(cache.entries, key=lambda e: e.frame)
    log.info("rig: %d views of %s (a face in %d of %d frames sampled, every %d-th), yaws %s", len(chosen),
             Path(source).name, faces, seen, every, ", ".join(f"{e.yaw:.0f}" for e in chosen))
    return [VideoView(f"frame_{e.frame:05d}", e.frame, e.image, e.landmarks, cameras[e.frame], e.yaw)
            for e in chosen]
