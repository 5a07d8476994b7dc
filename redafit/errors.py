"""Typed errors. Every user-facing failure is a :class:`RedafitError` with a one-line message and an exit code.

The CLI catches ``RedafitError`` and prints ``redafit: error: <message>`` on stderr, then exits with
``err.exit_code``. Library users can catch the subclasses they care about.

Exit codes (stable, documented in the README):

====  ===========================  =====================================================
code  class                        meaning
====  ===========================  =====================================================
1     RedafitError                 generic failure / some inputs of a batch failed
2     UsageError                   bad command-line usage (Click's own code)
3     InputError                   an input file is missing, unreadable or malformed
4     ImageError                   the image cannot be decoded or has an unsupported form
5     NoFaceError                  no face found in the image
6     LandmarkFileError            a landmark file is malformed
7     ModelError                   face model or parsing network missing, not installed or malformed
8     DependencyError              an optional dependency (nvdiffrast, face-alignment…) is missing
9     FitError                     the optimization failed (non-finite values, …)
10    OutputError                  an output cannot be written
11    DatasetError                 an evaluation dataset is missing or malformed
====  ===========================  =====================================================
"""

from __future__ import annotations


class RedafitError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str):
        # Keep messages on one line: the CLI prints exactly one line per error.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(RedafitError):
    exit_code = 2


class InputError(RedafitError):
    exit_code = 3


class ImageError(InputError):
    exit_code = 4


class NoFaceError(RedafitError):
    exit_code = 5


class LandmarkFileError(InputError):
    exit_code = 6


class ModelError(RedafitError):
    exit_code = 7


class DependencyError(RedafitError):
    exit_code = 8


class FitError(RedafitError):
    exit_code = 9


class OutputError(RedafitError):
    exit_code = 10


class DatasetError(InputError):
    exit_code = 11


def check_shape(name: str, tensor, expected: tuple) -> None:
    """Raise :class:`InputError` unless ``tensor.shape`` matches ``expected``.

    ``expected`` holds ints or ``None`` (any size) per dimension, e.g. ``(None, None, 3)`` for ``[B, V, 3]``.
    """
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise InputError(f"{name}: expected shape {want}, got {list(shape)}")
