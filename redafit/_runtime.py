"""Process-level tuning for the command line (a library never changes its host process on import)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("redafit")
_DONE = False


def tune_allocator() -> bool:
    """Keep freed large buffers in the process (glibc ``mallopt``) instead of returning them to the kernel.

    The soft renderer allocates a few tens of MB of slice buffers every iteration; with glibc's defaults each
    one is a fresh ``mmap`` that page-faults and zero-fills, which costs ~20-30% of a CPU iteration and makes
    timings erratic. Linux/glibc only; a no-op elsewhere. Returns True when applied.
    """
    global _DONE
    if _DONE or not sys.platform.startswith("linux"):
        return _DONE
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        return False
    _DONE = ok
    return ok


def _own_running() -> int:
    """This process's runnable threads (state R in ``/proc/self/task/*/stat``), at least 1: the caller."""
    n = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/stat") as fh:
                n += fh.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass
    return max(1, n)


def busy_threads(samples: int = 5, interval: float = 0.01) -> int | None:
    """How many other processes' threads want a CPU right now: the running count of ``/proc/loadavg`` (runnable
    threads, this process's included) less this process's own, the median of a few samples ``interval`` seconds
    apart. Instantaneous, unlike the load average, which still counts a command that ended a minute ago (a shell
    loop of fits). None where there is no ``/proc/loadavg`` (not Linux)."""
    import time

    counts = []
    for k in range(samples):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(running - _own_running())  # our own threads (NumPy's BLAS pool spins after import) aside
        if k + 1 < samples:
            time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


def choose_threads(explicit: int | None = None) -> int | None:
    """The CPU threads for PyTorch: ``explicit`` (``--threads``/``REDAFIT_THREADS``) when given; else, when other
    threads are busy on this machine, as many as the CPUs they leave free (at least 1); else None (PyTorch's
    own choice). PyTorch's OpenMP threads wait for each other by spinning: sharing the cores with another busy
    process, a 2-thread fit ran ~9x slower (86 s against 9.4 s quiet) and a 1-thread one 13 s (session 19,
    `fit --preset fast`, takeo, 2 cores). Leaves the choice to an OpenMP setting the user made (``OMP_NUM_THREADS``,
    ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``)."""
    if explicit:
        return int(explicit)
    if any(os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        return None
    others = busy_threads()
    if others is None or others <= 0:
        return None
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus - others)


def set_threads(explicit: int | None = None) -> int | None:
    """Set PyTorch's CPU threads as the command line does (:func:`choose_threads`: ``explicit``, or the CPUs that
    other busy processes leave free) and return the count set, or None when PyTorch's own choice stands (a quiet
    machine, or an OpenMP setting of the user's). ``redafit.set_threads()`` for library use; PyTorch missing:
    None."""
    return apply_threads(explicit)[0]


def apply_threads(explicit: int | None = None) -> tuple[int | None, int | None]:
    """:func:`set_threads`, also returning PyTorch's count before it (None when nothing was set), for a caller that
    puts it back afterwards (a command run inside another program's process)."""
    if explicit is not None and (isinstance(explicit, bool) or not isinstance(explicit, int) or explicit < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {explicit!r}")
    n = choose_threads(explicit)
    if n is None:
        return None, None
    try:
        import torch
    except ImportError:  # the commands that need it say so (exit 8); doctor reports it
        return None, None
    previous = torch.get_num_threads()
    if not explicit and n >= previous:
        return None, None  # more free CPUs than PyTorch's own choice: its choice stands
    if not explicit:
        log.info("other processes are busy on this machine: using %d CPU thread(s) (--threads sets it)", n)
    torch.set_num_threads(n)
    return n, previous
