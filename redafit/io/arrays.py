"""Arrays read from a file (a model's, a rig's, a mesh's): the file read whole (:func:`read_npz`), and what is wrong
with an array in words for a one-line error: its kind of values and its shape."""

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


def read_npz(path, expected: str) -> dict:
    """Every array of the ``.npz`` file ``path``, read now (a truncated or damaged member fails here, not later);
    :class:`~redafit.errors.InputError` naming the file when it is no readable archive of plain arrays (``expected``:
    what it should be, for the message)."""
    import zipfile
    import zlib

    from redafit.errors import InputError

    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not magic.startswith(b"PK"):  # a .npz is a zip archive; np.load would try a pickle
        raise InputError(f"{path}: not an .npz archive of arrays (expected {expected})")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(f"{path}: an array holds Python objects (pickled data), which are not read") from None
        raise InputError(f"{path}: damaged .npz archive ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InputError(f"{path}: truncated or damaged .npz archive ({type(e).__name__}: {e})") from None
