"""Face-model loading and forward speed on the shared models (CPU): ``python -m benchmarks.run models``."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "models"


def _median_s(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    import logging

    import torch

    from redafit.model.formats import load_file, native

    if not SHARED.is_dir():
        print(f"shared models not found at {SHARED}; skipped")
        return
    logging.getLogger("redafit").setLevel(logging.ERROR)  # the 3-OBJ sample is partial on purpose
    print("| what | median time |")
    print("|---|---|")
    rows = [
        ("ICT face-area npz (cm -> mm)", lambda: load_file(SHARED / "ict-face" / "ict_face.npz"), 5),
        ("ICT upstream OBJ layout (3 OBJs)", lambda: load_file(SHARED / "ict-face" / "raw"), 3),
        ("SFM eos binaries", lambda: load_file(SHARED / "sfm"), 5),
    ]
    for name, fn, n in rows:
        print(f"| load: {name} | {_median_s(fn, n) * 1000:.0f} ms |")
    ict = load_file(SHARED / "ict-face" / "ict_face.npz")
    with tempfile.TemporaryDirectory() as d:
        p = native.save(ict, Path(d) / "model.npz")
        print(f"| load: installed native npz (ICT) | {_median_s(lambda: load_file(p)) * 1000:.0f} ms |")
    for B in (1, 8):
        a, b = torch.randn(B, ict.n_id), torch.rand(B, ict.n_exp)
        with torch.no_grad():
            t = _median_s(lambda a=a, b=b: ict(a, b), 20)
        print(f"| forward ICT (100 id + 53 exp), B={B} | {t * 1000:.2f} ms |")
        a.requires_grad_(True)
        t = _median_s(lambda a=a, b=b: ict(a, b).square().sum().backward(), 10)
        print(f"| forward+backward ICT, B={B} | {t * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
