"""A batch of photos in one command, one at a time or in worker processes: ``python -m benchmarks.run batch``.

Times the whole command ``redafit fit <the shared photos> -o DIR --jobs J`` (a fresh process each run, landmarks
detected, OBJ with a 1024 px texture, the default full fit) for J = 1 and 2 (``--jobs 1``: one fit at a time on
every thread; ``--jobs 2``: two worker processes, the threads shared out). Prints a markdown table; about 4
minutes on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from benchmarks._common import FACES, table

JOBS = (1, 2)


def _photos() -> list[str]:
    return sorted(str(p) for p in FACES.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def _batch(photos: list[str], out_dir: str, jobs: int) -> tuple[float, int]:
    """(seconds, photos written) for one whole `redafit fit` command."""
    args = [sys.executable, "-m", "redafit", "-q", "fit", *photos, "-o", out_dir, "--jobs", str(jobs), "--json"]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"redafit fit failed: {r.stderr.strip().splitlines()[-1:]}")
    return seconds, sum('"ok": true' in ln for ln in r.stdout.splitlines())


def main(argv=None) -> None:
    import torch

    photos = _photos()
    rows, base = [], None
    for jobs in JOBS:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, done = _batch(photos, tmp, jobs)
        base = base or seconds
        threads = max(1, torch.get_num_threads() // jobs)
        rows.append([f"--jobs {jobs}", f"{jobs} x {threads}", f"{done}/{len(photos)}", f"{seconds:.1f}",
                     f"{seconds / max(done, 1):.1f}", f"{base / seconds:.2f}"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"_the shared photos, detected landmarks, full fit, OBJ with a 1024 px texture; {cpus} CPUs_\n")
    print(table(["option", "processes x threads", "photos fitted", "seconds", "s per photo", "speed-up"], rows))


if __name__ == "__main__":
    main()
