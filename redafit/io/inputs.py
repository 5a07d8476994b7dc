"""Reading an input file's bytes without surprises: what is not a regular file is refused before it is opened, and
so is a file larger than a cap.

``Path.read_bytes`` on a named path reads whatever is there, whole: ``/dev/zero`` never ends (the process grows
until the system kills it), a FIFO with no writer blocks forever, and a 3 GB file is held in memory before any
check could see it is no photo. A symbolic link loop makes ``Path.exists`` say False ("not found") and ``open``
raise ``OSError(ELOOP)``. :func:`read_input_file` checks all of that on ``os.stat`` first and raises one-line
:class:`~redafit.errors.InputError` s (or the caller's subclasses) instead.

Standard input (the photo ``-``) is not read here: it may legitimately be a pipe, see
:func:`redafit.io.images.read_stdin_bytes`.
"""

from __future__ import annotations

import errno
import os
import stat

from redafit.errors import InputError

__all__ = ["special_file_kind", "check_input_file", "read_input_file", "read_text_file", "natural_key",
           "folder_files"]

_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)


def special_file_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is, in words, when it is not a regular file ("a folder", "a FIFO (named
    pipe)", ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)


def _amount(n: int) -> str:
    """A byte count for a message: ``3.0 GiB (3221225472 bytes)``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{round(n / scale, 1):g} {unit} ({n} bytes)"
    return f"{n} bytes"


def _os_error(exc: OSError, path, what: str, error, read_error) -> InputError:
    if exc.errno in _NOT_FOUND:
        return error(f"{what} not found: {path}")
    return (error if exc.errno == errno.ELOOP else read_error)(f"cannot read {what} {path}: {_reason(exc)}")


def _check_mode(mode: int, path, what: str, error, read_error, hint: str) -> None:
    kind = special_file_kind(mode)
    if kind == "a folder":
        raise read_error(f"cannot read {what} {path}: it is a folder")
    if kind is not None:
        raise error(f"cannot read {what} {path}: it is {kind}, not a regular file{hint}")


def check_input_file(path, what: str, *, error: type[InputError] = InputError,
                     read_error: type[InputError] | None = None, hint: str = "") -> os.stat_result:
    """``os.stat`` of the input file ``path`` (following symbolic links), refusing with one line

    * ``error``: ``"<what> not found: <path>"`` (also a dangling link), a symbolic link loop, a name the system
      cannot take (a NUL byte), and anything that is not a regular file nor a folder (a FIFO, a device, a
      socket: reading one could block forever or never end), the latter followed by ``hint``;
    * ``read_error`` (default ``error``): a folder, and other errors of ``stat`` (permission denied, ...).

    Nothing is opened."""
    read_error = read_error or error
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_error(exc, path, what, error, read_error) from None
    except ValueError as exc:  # an embedded NUL byte
        raise error(f"cannot read {what} {path}: {exc}") from None
    _check_mode(st.st_mode, path, what, error, read_error, hint)
    return st


def read_input_file(path, what: str, max_bytes: int, *, error: type[InputError] = InputError,
                    read_error: type[InputError] | None = None, size_error: type[InputError] | None = None,
                    hint: str = "") -> bytes:
    """The bytes of the regular file ``path``, after :func:`check_input_file` (``error``, ``read_error``,
    ``hint`` as there); a file of more than ``max_bytes`` is refused with ``size_error`` (default ``read_error``)
    before it is read, and reading stops at ``max_bytes + 1`` should it grow meanwhile. Errors of ``open`` and
    ``read`` (permission denied, ...) are ``read_error``; an empty file gives ``b""``."""
    read_error = read_error or error
    size_error = size_error or read_error

    def too_large(size: str) -> InputError:
        return size_error(f"{what} {path} is too large: {size}, more than the limit of {_amount(max_bytes)}")

    st = check_input_file(path, what, error=error, read_error=read_error, hint=hint)
    if st.st_size > max_bytes:
        raise too_large(_amount(st.st_size))
    # O_NONBLOCK: should the name have become a FIFO since the check, opening it does not wait for a writer.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_error(exc, path, what, error, read_error) from None
    try:
        with os.fdopen(fd, "rb") as fh:
            fd = None
            _check_mode(os.fstat(fh.fileno()).st_mode, path, what, error, read_error, hint)  # what was opened
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise read_error(f"cannot read {what} {path}: {_reason(exc)}") from None
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > max_bytes:
        raise too_large(f"it grew past {max_bytes} bytes while being read")
    return data


def read_text_file(path, what: str, max_bytes: int, *, error: type[InputError] = InputError,
                   read_error: type[InputError] | None = None) -> str:
    """The text of the UTF-8 file ``path`` (a leading byte-order mark dropped), read by :func:`read_input_file`
    (``error``, ``read_error`` as there); ``"<what> <path> is not UTF-8 text (byte N)"`` (``read_error``) when
    it cannot be decoded."""
    data = read_input_file(path, what, max_bytes, error=error, read_error=read_error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise (read_error or error)(f"{what} {path} is not UTF-8 text (byte {e.start})") from None


def natural_key(name: str) -> tuple:
    """Sort key that orders the runs of digits in ``name`` by value (``f2`` before ``f10``, as a frame counter
    without leading zeros means), the rest by text; ties (``f02``, ``f2``) by the name itself."""
    import re

    parts = re.split(r"(\d+)", name)
    return tuple((0, int(x), "") if i % 2 else (1, 0, x) for i, x in enumerate(parts) if x), name


def folder_files(folder, exts, what: str, *, error: type[InputError] = InputError, hint: str = "") -> list:
    """The files directly in ``folder`` whose extension (any case) is one of ``exts``, hidden ones left aside, in
    natural name order (:func:`natural_key`); ``error`` when the folder cannot be listed, or holds none of them
    (``"<folder>: no <what> in the folder (expected <exts>)<hint>"``)."""
    from pathlib import Path

    folder = Path(folder)
    try:
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in exts and not p.name.startswith(".")
                        and p.is_file()), key=lambda p: natural_key(p.name))
    except OSError as exc:
        raise error(f"{folder}: cannot list the folder: {exc.strerror or exc}") from exc
    if not files:
        raise error(f"{folder}: no {what} in the folder (expected {', '.join(exts)}){hint}")
    return files
