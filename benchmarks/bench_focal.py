"""What knowing the camera's focal length is worth: synthetic faces drawn through lenses from a phone's to a
short telephoto, each fitted with its true focal length (what EXIF or ``--focal`` gives) and with the default
1.6 x the longer side (a photo without camera data, ``redafit eval --unknown-focal``).

``python -m benchmarks.bench_focal [--n 10] [--seed 0] [--size 256] [--jobs 2] [--factors 0.8,1.2,3.2]
[--full-factors 0.8] [--landmark-noise 1.5]``

A factor F is focal length / image side (the default 1.6 is a ~49 mm full-frame lens on a square photo, 0.8 a
phone's ~24 mm one); the camera stands closer for a shorter lens, so the face fills the same share of the image.
The same computation as ``redafit eval --dataset synthetic --focal-factor F [--unknown-focal]``. Prints a markdown
table: mean point-to-plane error (mm, MICC protocol) per lens and method, and in how many cases the default
focal length is worse.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from benchmarks._common import parse_options


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None):
    from benchmarks.bench_eval import _model

    ap = argparse.ArgumentParser(prog="bench_focal")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--factors", type=_floats, default=[0.8, 1.2, 3.2],
                    help="focal length / image side of the synthetic cameras (landmark fits)")
    ap.add_argument("--full-factors", type=_floats, default=[0.8], help="those also measured with the full fit")
    ap.add_argument("--landmark-noise", type=float, default=1.5)
    ap.add_argument("--model", default="ict")
    args = parse_options(ap, argv, "bench_focal")

    from redafit.eval.runner import available_methods, load_cases, make_methods, markdown_table, run_eval
    from redafit.render.camera import DEFAULT_FOCAL_FACTOR, FULL_FRAME_DIAGONAL_MM

    model = _model(args.model)
    rows = []
    t0 = time.perf_counter()
    for f in args.factors:
        names = ["landmarks"] + (["full"] if f in args.full_factors else [])
        names = available_methods(names)
        cases = load_cases("synthetic", model, n=args.n, seed=args.seed, size=args.size,
                           landmark_noise=args.landmark_noise, focal_factor=f)
        known = run_eval(cases, make_methods(names), model, jobs=args.jobs, heatmaps=0)
        unknown = run_eval(cases, make_methods(names, unknown_focal=True), model, jobs=args.jobs, heatmaps=0)
        lens_mm = f * FULL_FRAME_DIAGONAL_MM / math.sqrt(2)  # a square image's 35 mm equivalent
        for name in names:
            # paired by case: a case that failed either way (no number) is left out of both means, and counted
            a_of = {r.case_id: r.point_to_plane for r in known.by_method(name) if r.error is None}
            b_of = {r.case_id: r.point_to_plane for r in unknown.by_method(name) if r.error is None}
            both = [c for c in a_of if c in b_of and np.isfinite(a_of[c]) and np.isfinite(b_of[c])]
            a, b = np.array([a_of[c] for c in both]), np.array([b_of[c] for c in both])
            failed = len(known.by_method(name)) - len(both)
            if not len(both):
                rows.append([f"{f:g} (~{lens_mm:.0f} mm)", name, "-", "-", "-", "-", str(failed)])
                continue
            rows.append([f"{f:g} (~{lens_mm:.0f} mm)", name, f"{a.mean():.3f}", f"{b.mean():.3f}",
                         f"{100 * (b.mean() / a.mean() - 1):+.1f} %", f"{int((b > a).sum())}/{len(a)}", str(failed)])
    print(markdown_table(
        ["lens: focal / side", "method", "true focal (mm)", f"default {DEFAULT_FOCAL_FACTOR:g}x (mm)",
         "default vs true", "default worse", "failed"], rows,
        f"Focal length: {args.n} synthetic faces per lens, seed {args.seed}, {args.size}px, landmark noise "
        f"{args.landmark_noise:g} px, model {model.name} (mean point-to-plane error, MICC protocol)"))
    print(f"_{time.perf_counter() - t0:.0f} s, jobs {args.jobs}_")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
