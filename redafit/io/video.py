"""Videos written with OpenCV's encoders, atomically (``redafit view -o turn.mp4``, ``redafit track --overlay``).

The file is written under a temporary name beside its target (:func:`redafit.io.atomic.atomic_path`) and replaces
it only when every frame is in, so an error or Ctrl-C part-way leaves no half-written video.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # a video output's extension -> the FourCC OpenCV writes it with


def fit_frame(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` [h, w, 3] uint8 scaled to fit ``width`` x ``height`` without distortion, centred on black."""
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out


@contextmanager
def video_writer(path, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """Yields ``write(frame)`` for RGB frames (float [H, W, 3] in [0, 1] or uint8); the first frame sets the
    video's size, a later one of another size is fitted into it (:func:`fit_frame`). ``path``'s extension picks
    the codec (:data:`VIDEO_CODECS`); an :class:`~redafit.errors.OutputError` when OpenCV cannot encode it here."""
    import cv2

    from redafit.errors import OutputError
    from redafit.io.atomic import atomic_path

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_CODECS:
        raise OutputError(f"cannot write video {path}: unsupported extension {ext or '(none)'} "
                          f"(use one of {', '.join(VIDEO_CODECS)})")
    with atomic_path(path) as tmp:
        state: dict = {}

        def write(frame: np.ndarray) -> None:
            img = np.asarray(frame)
            if img.dtype != np.uint8:
                img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            if "writer" not in state:
                h, w = img.shape[:2]
                state["size"] = (w, h)
                state["writer"] = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext]), float(fps),
                                                  (w, h))
                if not state["writer"].isOpened():
                    raise OutputError(f"cannot write video {path}: OpenCV cannot encode {ext} here")
            img = fit_frame(img, *state["size"])
            state["writer"].write(np.ascontiguousarray(img[:, :, ::-1]))

        try:
            yield write
        finally:
            if "writer" in state:
                state["writer"].release()
