"""Atomic file output: a file is either fully written or not there at all.

Two context managers:

* :func:`atomic_write` yields an open file object on a temporary file in the target's folder; on a clean exit
  the data are flushed, ``fsync``-ed and the temporary file is renamed over the target (``os.replace`` is atomic
  on POSIX and Windows within one file system). On any exception the temporary file is removed and the target
  is left untouched.
* :func:`atomic_path` yields a temporary *path* for libraries that insist on writing by file name
  (``cv2.imwrite``, ``np.savez``, ``trimesh.export``). The temporary name keeps the target's extension, because
  these libraries choose the format from it (and ``np.savez`` appends ``.npz`` to names without it).

Inside :func:`atomic_group` the renames wait for the group's end: a command's outputs (a mesh, its material and
texture, the parameters, the overlay) then appear together or, on any error or interrupt, not at all (files
already there are left as they were).

Operating-system failures become :class:`~redafit.errors.OutputError` (exit code 10) naming the target.
The target's folder must exist: we do not create folders behind the caller's back.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO

from redafit.errors import OutputError, RedafitError


def _umask() -> int:
    # Reading the umask requires setting it; done once at import (not thread-safe, but import is serialized).
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _prepare(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    check_replaceable(path)
    return path


def check_replaceable(path) -> None:
    """An :class:`OutputError` when ``path`` is an existing file that nobody may write (no write permission bit:
    ``chmod a-w``, a dataset's annotations): it is kept from being replaced, as ``rm`` asks first, and even for
    root, whom the permission itself does not stop (a rename over a file needs only its folder writable). A
    symbolic link is replaced itself, never its target: not refused."""
    import stat

    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return
    if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:
        raise OutputError(f"cannot write {path}: the file is read-only (make it writable, or remove it, to replace "
                          "it)")


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777  # keep an existing file's permissions
    except OSError:
        return _FILE_MODE


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(p: str | Path | None) -> None:
    if p is None:  # a removal's pending entry (atomic_remove) has no temporary file
        return
    try:
        os.unlink(p)
    except OSError:
        pass


class _Group:
    """The open :func:`atomic_group`'s pending (temporary file, target) pairs."""

    def __init__(self):
        self.pending: list[tuple[Path, Path]] = []
        self.closed = False
        self.made: list[Path] = []  # folders make_folder created in the group (removed again if it fails, if empty)


def _remove_made(made: list) -> None:
    """Remove the folders of ``made`` that are empty, the deepest first (a folder a failed group created for its
    files is not left behind; one that something else filled meanwhile stays)."""
    for folder in sorted(set(made), key=lambda f: len(f.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass


_GROUP: ContextVar[_Group | None] = ContextVar("redafit_atomic_group", default=None)


def _commit(tmp, path: Path) -> None:
    """Rename ``tmp`` over ``path`` now, or at the end of the open :func:`atomic_group`; ``tmp`` None: remove
    ``path`` (:func:`atomic_remove`)."""
    group = _GROUP.get()
    if group is None:
        if tmp is None:
            os.unlink(path)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        return
    if group.closed:  # a write that outlived its group (a thread or generator it leaked into): refuse, not lose
        raise OutputError(f"cannot write {path}: its atomic_group has already ended")
    group.pending.append((None if tmp is None else Path(tmp), path))


def _backup_name(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    os.close(fd)
    return Path(name)


def _replace_all(pending: list) -> None:
    """Rename every temporary file over its target; if any rename fails (a target turned into a folder, a file
    held open on Windows, Ctrl-C between two renames) the targets renamed so far get their old files back (kept
    under a backup name until the end) and the remaining temporary files are removed."""
    done: list[tuple[Path, Path | None]] = []  # (target, its old file's backup or None)
    try:
        for tmp, path in pending:
            backup = None
            if path.is_file() or path.is_symlink():
                backup = _backup_name(path)
                os.replace(path, backup)
            done.append((path, backup))
            if tmp is not None:  # None: the target is only removed (atomic_remove)
                os.replace(tmp, path)
    except BaseException as exc:
        for path, backup in reversed(done):
            try:
                if backup is not None:
                    os.replace(backup, path)
                elif path.is_file():
                    _remove(path)
            except OSError:
                pass
        for tmp, _ in pending:
            _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, RedafitError):
            raise _os_error(done[-1][0] if done else pending[0][1], exc) from exc
        raise
    for _, backup in done:
        if backup is not None:
            _remove(backup)


@contextmanager
def atomic_group() -> Iterator[None]:
    """All :func:`atomic_write` / :func:`atomic_path` files of the block replace their targets together when the
    block ends cleanly; on any exception (an error, a full disk, Ctrl-C) every temporary file is removed, no
    target is touched and the folders :func:`make_folder` created in the block are removed again where empty, and
    if one of the final renames fails the targets already renamed get their old files back. Groups nest: an inner
    group's files wait for the outermost group, and an inner group that fails drops its own files even when the
    caller catches the error. One thread, no ``yield`` inside the block: a write
    from another thread does not join the group, and one after the group's end is an error. Also a decorator
    (``@atomic_group()``) for a function that writes several files."""
    group = _GROUP.get()
    if group is not None:  # nested
        start, made = len(group.pending), len(group.made)
        try:
            yield
        except BaseException:
            for tmp, _ in group.pending[start:]:
                _remove(tmp)
            del group.pending[start:]
            _remove_made(group.made[made:])
            del group.made[made:]
            raise
        return
    group = _Group()
    token = _GROUP.set(group)
    try:
        yield
    except BaseException:
        group.closed = True
        _GROUP.reset(token)
        for tmp, _ in group.pending:
            _remove(tmp)
        _remove_made(group.made)
        raise
    group.closed = True
    _GROUP.reset(token)
    _replace_all(group.pending)
    for folder in {path.parent for _, path in group.pending}:
        _fsync_dir(folder)


def make_folder(folder) -> Path:
    """Create ``folder`` (and its parents) if needed; an :class:`OutputError` naming it when that fails (a file in
    the way, no permission). Inside an :func:`atomic_group` the folders it creates are removed again (when empty)
    if the group fails."""
    folder = Path(folder)
    group = _GROUP.get()
    new = []  # the folders this call creates, when an atomic_group is open: removed again if it fails
    if group is not None and not group.closed:
        p = folder.absolute()
        while not p.exists() and p != p.parent:
            new.append(p)
            p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:  # FileExistsError / NotADirectoryError when a file is in the way
        _remove_made(new)
        reason = getattr(e, "strerror", None) or str(e)
        raise OutputError(f"cannot create the folder {folder}: {reason}") from None
    if new:
        group.made.extend(new)
    return folder


def check_writable(folders) -> None:
    """An :class:`OutputError` unless a file can be created in each folder (tried, not guessed from permission
    bits: a read-only file system or an ACL says no only when asked). For a command to fail before its work, not
    after."""
    for d in sorted({Path(f) for f in folders}, key=str):
        try:
            with tempfile.TemporaryFile(dir=d, prefix=".redafit-check."):
                pass
        except OSError as e:
            raise OutputError(f"cannot write into {d}: {e.strerror or e}") from None


def check_can_create(folder) -> None:
    """An :class:`OutputError` unless ``folder`` exists and is writable or could be created (its nearest existing
    ancestor is a writable folder), without creating anything: a command checks its output folder before its work
    and makes it only when it has something to write."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create the folder {folder}: {probe} is a file")
    check_writable([probe])


def _os_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}")


def atomic_remove(path) -> None:
    """Remove the file ``path`` (a stale output of an earlier run that this one does not write again), if there is
    one: at the end of the open :func:`atomic_group`, together with its files (and put back if the group fails),
    or now outside one. A read-only file is refused as a replaced one is (:func:`check_replaceable`)."""
    path = Path(path)
    if not path.is_file() and not path.is_symlink():
        return
    check_replaceable(path)
    try:
        _commit(None, path)
    except OSError as e:
        raise _os_error(path, e) from e


@contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; replace ``path`` with it on success.

    ``mode`` is ``"wb"`` (default) or ``"w"`` (text; ``encoding`` defaults to UTF-8).
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = _prepare(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        _commit(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, RedafitError):
            raise _os_error(path, exc) from exc
        raise


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path (same folder, same extension) to write; it replaces ``path`` on success.

    The block must create the file; if it is missing or empty afterwards (``cv2.imwrite`` reports failure by
    returning False instead of raising) an :class:`OutputError` is raised and nothing is replaced.
    """
    path = _prepare(path)
    suffix = "".join(path.suffixes[-1:])  # the real extension, e.g. ".png" or ".npz"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OutputError(f"cannot write {path}: the writer produced no data")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _mode_for(path))
        _commit(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise _os_error(path, exc) from exc
        raise
