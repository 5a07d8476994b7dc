"""`make bench`: run every benchmark module (benchmarks/bench_*.py) and print its tables.

Each module defines ``main(argv: list[str] | None = None) -> None`` that prints markdown tables to stdout.
``python -m benchmarks.run render fit`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    from redafit._runtime import tune_allocator

    tune_allocator()  # as the CLI does
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if "-h" in argv or "--help" in argv:  # not handed to every benchmark (which would start them all)
        print(f"usage: python -m benchmarks.run [NAME ...] [--options of the named benchmarks, with their values]\n"
              f"runs the named benchmarks (default: all) and prints their markdown tables; names: {', '.join(names)}"
              f"\n(each benchmark's own options: python -m benchmarks.bench_NAME --help)")
        return 0
    # the names come first; from the first option on, the options and their values go to each named benchmark
    # (`run eval --n 2`, `run render --quick --res 512`)
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    chosen, options = argv[:first] or names, argv[first:]
    for name in chosen:
        if name not in names:
            print(f"unknown benchmark {name!r}; have: {', '.join(names)} (names come before the options)",
                  file=sys.stderr)
            return 2
    for name in chosen:
        t0 = time.perf_counter()
        print(f"\n## {name}\n", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main(list(options))
        print(f"\n_({name}: {time.perf_counter() - t0:.0f} s)_", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
