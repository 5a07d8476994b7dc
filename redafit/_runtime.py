"""Process-level tuning for the command line (a library never changes its host process on import)."""

from __future__ import annotations

import ctypes
import sys

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
