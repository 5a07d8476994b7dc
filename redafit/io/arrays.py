"""What is wrong with an array read from a file (a model's, a rig's), in words for a one-line error: its kind of
values and its shape."""

from __future__ import annotations

import numpy as np

KIND_WORDS = {"U": "text", "S": "bytes", "b": "booleans", "O": "objects", "c": "complex numbers", "M": "dates",
              "m": "time spans", "V": "raw records", "f": "floats", "i": "integers", "u": "integers"}


def kind_words(dtype) -> str:
    """How a message names the values of ``dtype`` ("text", "booleans", ...; the dtype itself when unnamed)."""
    dtype = np.dtype(dtype)
    return KIND_WORDS.get(dtype.kind, str(dtype))


def shape_problem(shape, expected: tuple, note: str = "") -> str | None:
    """``"expected shape [n, *, 3]<note>, got [...]"`` when ``shape`` does not match ``expected`` (ints, or None for
    any size), else None."""
    shape = tuple(shape)
    if len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape)):
        return None
    want = ", ".join("*" if e is None else str(e) for e in expected)
    return f"expected shape [{want}]{note}, got {list(shape)}"
