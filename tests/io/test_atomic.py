"""Atomic writes: all or nothing, temp files cleaned up, OS errors become OutputError."""

from __future__ import annotations

import os

import numpy as np
import pytest

from redafit.errors import OutputError
from redafit.io.atomic import atomic_group, atomic_path, atomic_remove, atomic_write


def test_atomic_write_creates_and_replaces(tmp_path):
    p = tmp_path / "a.txt"
    with atomic_write(p, "w") as f:
        f.write("one")
    assert p.read_text() == "one"
    with atomic_write(p, "w") as f:
        f.write("two")
    assert p.read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_atomic_write_binary(tmp_path):
    p = tmp_path / "b.bin"
    with atomic_write(p) as f:
        f.write(b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"


def test_atomic_write_error_keeps_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_write_new_file_error_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "n.txt", "w") as f:
            f.write("x")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with atomic_write(tmp_path / "nope" / "a.txt", "w") as f:
            f.write("x")


def test_target_is_a_folder(tmp_path):
    with pytest.raises(OutputError, match="folder"):
        with atomic_path(tmp_path):
            pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_is_output_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            with atomic_write(ro / "a.txt", "w") as f:
                f.write("x")
    finally:
        ro.chmod(0o755)


def test_a_read_only_file_is_not_replaced_even_by_root(tmp_path):
    """A file nobody may write (a dataset's annotations, chmod a-w) is kept: a rename over it needs only its folder
    writable, so the permission alone would not stop root; an ordinary file is replaced, its mode kept."""
    ro = tmp_path / "lm.pts"
    ro.write_text("version: 1\n")
    ro.chmod(0o444)
    for writer in (lambda: atomic_write(ro, "w"), lambda: atomic_path(ro)):
        with pytest.raises(OutputError, match="lm.pts: the file is read-only"):
            with writer() as f:
                if hasattr(f, "write"):
                    f.write("{}")
    assert ro.read_text() == "version: 1\n" and sorted(os.listdir(tmp_path)) == ["lm.pts"]
    ro.chmod(0o644)
    with atomic_write(ro, "w") as f:
        f.write("{}")
    assert ro.read_text() == "{}" and ro.stat().st_mode & 0o777 == 0o644


def test_a_stale_output_is_removed_with_the_group_or_kept_when_it_fails(tmp_path):
    """atomic_remove: a stale file goes when its group's files are written, and stays when the group fails; a
    read-only one is refused; a symbolic link is replaced or removed itself, never its read-only target."""
    old, new = tmp_path / "albedo.png", tmp_path / "depth.png"
    old.write_text("stale")
    with pytest.raises(RuntimeError):
        with atomic_group():
            with atomic_write(new, "w") as f:
                f.write("new")
            atomic_remove(old)
            raise RuntimeError("fails")
    assert old.read_text() == "stale" and not new.exists()
    with atomic_group():
        with atomic_write(new, "w") as f:
            f.write("new")
        atomic_remove(old)
        atomic_remove(tmp_path / "missing.png")  # nothing there: nothing to do
        assert old.exists()  # until the group ends
    assert not old.exists() and new.read_text() == "new"
    ro = tmp_path / "ro.png"
    ro.write_text("keep")
    ro.chmod(0o444)
    with pytest.raises(OutputError, match="read-only"):
        atomic_remove(ro)
    link = tmp_path / "link.txt"
    link.symlink_to(ro)
    with atomic_write(link, "w") as f:
        f.write("replaces the link")
    assert not link.is_symlink() and link.read_text() == "replaces the link" and ro.read_text() == "keep"


def test_os_error_inside_block_becomes_output_error(tmp_path):
    with pytest.raises(OutputError, match="a.txt"):
        with atomic_write(tmp_path / "a.txt", "w"):
            raise OSError(28, "No space left on device")
    assert os.listdir(tmp_path) == []


def test_atomic_path_keeps_extension_for_np_savez(tmp_path):
    p = tmp_path / "arrays.npz"
    with atomic_path(p) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))  # would append .npz to a name without it
    assert sorted(os.listdir(tmp_path)) == ["arrays.npz"]
    assert np.load(p)["x"].tolist() == [0, 1, 2]


def test_atomic_path_writer_that_writes_nothing_is_output_error(tmp_path):
    # e.g. cv2.imwrite returning False: the temp file stays empty; nothing must replace the target
    p = tmp_path / "img.png"
    p.write_bytes(b"old")
    with pytest.raises(OutputError, match="no data"):
        with atomic_path(p):
            pass
    assert os.listdir(tmp_path) == ["img.png"] and p.read_bytes() == b"old"


def test_atomic_path_error_removes_temp(tmp_path):
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "x.png") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyError
    assert os.listdir(tmp_path) == []


def test_file_mode_is_not_private(tmp_path):
    p = tmp_path / "m.txt"
    with atomic_write(p, "w") as f:
        f.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_group_writes_all_files_together_or_none(tmp_path):
    """Inside atomic_group the targets change only when the block ends cleanly; an error (or Ctrl-C) part-way leaves
    every target as it was and no temporary file behind."""
    old = tmp_path / "params.json"
    old.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_group():
            with atomic_write(tmp_path / "mesh.obj", "w") as fh:
                fh.write("v 0 0 0\n")
            with atomic_path(tmp_path / "tex.npy") as tmp:
                np.save(tmp, np.zeros(3))
            assert not (tmp_path / "mesh.obj").exists()  # written, not yet in place
            with atomic_write(old, "w") as fh:
                fh.write("new")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.json"] and old.read_text() == "old"
    with atomic_group():
        with atomic_group():  # nested: the outer group commits
            with atomic_write(tmp_path / "mesh.obj", "w") as fh:
                fh.write("v 0 0 0\n")
        assert not (tmp_path / "mesh.obj").exists()
        with atomic_write(old, "w") as fh:
            fh.write("new")
    assert (tmp_path / "mesh.obj").read_text() == "v 0 0 0\n" and old.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.obj", "params.json"]


def test_json_safe_writes_no_nan_tokens():
    import json
    import math

    from redafit.io.jsonsafe import dumps, json_safe

    d = {"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, -np.inf, 2], "d": np.arange(2), "e": (np.bool_(1),),
         7: None, True: 1, None: 2, np.int64(3): 4}
    assert json_safe(d) == {"a": None, "b": 1.5, "c": [None, None, 2], "d": [0, 1], "e": [True], "7": None,
                            "true": 1, "null": 2, "3": 4}
    assert json.loads(dumps({True: 1, None: 2, 7: 3})) == json.loads(json.dumps({True: 1, None: 2, 7: 3}))
    text = dumps(d)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["b"] == 1.5 and not math.isnan(json.loads(text)["c"][2])


def test_group_restores_targets_when_a_final_rename_fails(tmp_path):
    """If one of the renames at the group's end fails (here the second target has turned into a folder), the
    targets renamed before it get their old contents back and no temporary or backup file is left."""
    a = tmp_path / "a.txt"
    a.write_text("old a")
    b = tmp_path / "b.txt"
    with pytest.raises(OutputError):
        with atomic_group():
            with atomic_write(a, "w") as fh:
                fh.write("new a")
            with atomic_write(b, "w") as fh:
                fh.write("new b")
            b.mkdir()
            (b / "x").write_text("keeps the folder non-empty")
    assert a.read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"] and b.is_dir()


def test_failed_inner_group_drops_its_files_inside_an_outer_group(tmp_path):
    with atomic_group():
        with atomic_write(tmp_path / "kept.txt", "w") as fh:
            fh.write("kept")
        try:
            with atomic_group():
                with atomic_write(tmp_path / "inner.txt", "w") as fh:
                    fh.write("inner")
                raise ValueError("the inner writer failed")
        except ValueError:
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


def test_write_after_the_group_ended_is_refused(tmp_path):
    """A generator that leaked the group's context writes after the group ended: an error, not a lost file."""
    import contextvars

    with atomic_group():
        ctx = contextvars.copy_context()

    def late_write():
        with atomic_write(tmp_path / "late.txt", "w") as fh:
            fh.write("x")

    with pytest.raises(OutputError, match="already ended"):
        ctx.run(late_write)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_group_removes_the_folders_it_made(tmp_path):
    """The folders make_folder created inside a group that fails go with its files (a failed track left empty
    frame_<N>/ folders of its maps); a folder that was there, or that something else filled meanwhile, stays; a
    group that succeeds keeps its folders."""
    from redafit.io.atomic import atomic_group, atomic_write, make_folder

    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError):
        with atomic_group():
            make_folder(tmp_path / "a" / "b")
            with atomic_write(tmp_path / "a" / "b" / "f.txt", "w") as fh:
                fh.write("x")
            make_folder(kept / "c")
            make_folder(tmp_path / "filled")
            (tmp_path / "filled" / "other.txt").write_text("not the group's")
            with atomic_group():  # a nested group's folders go too
                make_folder(tmp_path / "inner")
            raise RuntimeError("stop")
    assert sorted(os.listdir(tmp_path)) == ["filled", "kept"] and os.listdir(kept) == []
    with pytest.raises(RuntimeError):  # an inner group that fails, its error caught: its own folders go
        with atomic_group():
            make_folder(tmp_path / "outer")
            try:
                with atomic_group():
                    make_folder(tmp_path / "inner2" / "deep")
                    raise ValueError("inner")
            except ValueError:
                assert not (tmp_path / "inner2").exists() and (tmp_path / "outer").is_dir()
            raise RuntimeError("outer")
    with atomic_group():
        make_folder(tmp_path / "made")
    assert (tmp_path / "made").is_dir()
