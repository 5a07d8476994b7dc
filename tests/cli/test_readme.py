"""The README's library example runs as written, on a shared photo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _library_examples() -> list[str]:
    text = README.read_text()
    return re.findall(r"```python\n(.*?)```", text[text.index("## Library use"):text.index("## Exit codes")], re.S)


def _run_photo_example(k: int, words, faces_dir, tmp_path, monkeypatch, capsys) -> str:
    """Run the library section's example ``k`` (which must hold ``words``) on Obama's photo as photo.jpg in a
    scratch folder; what it printed."""
    code = _library_examples()[k]
    assert all(w in code for w in words)
    (tmp_path / "photo.jpg").write_bytes((faces_dir / "fr_obama.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    return capsys.readouterr().out


def test_library_one_call_example_runs(use_models, faces_dir, tmp_path, monkeypatch, capsys):
    """The first example: redafit.fit_photo and PhotoFit.save write what `redafit fit` would."""
    printed = _run_photo_example(0, ("fit_photo", "photo.jpg"), faces_dir, tmp_path, monkeypatch, capsys)
    err, failure, source = printed.split()
    assert float(err) < 10 and failure == "None" and source in ("default", "exif")
    for name in ("face.obj", "face.png", "face.json", "check.png", "maps/depth.png", "maps/albedo.png"):
        assert (tmp_path / name).is_file(), name


def test_library_example_runs(use_models, faces_dir, tmp_path, monkeypatch, capsys):
    printed = _run_photo_example(1, ("photo.jpg", "face.obj"), faces_dir, tmp_path, monkeypatch, capsys)
    assert printed.strip()
    assert (tmp_path / "face.obj").is_file() and (tmp_path / "face.png").is_file()
    import trimesh

    mesh = trimesh.load(tmp_path / "face.obj", process=False, force="mesh")
    assert mesh.vertices[:, 2].min() > 0 and len(mesh.faces) > 18000
    head = trimesh.load(tmp_path / "head.ply", process=False, force="mesh")
    assert len(head.faces) == len(mesh.faces) and abs(head.vertices.mean(0)[2]) < 100  # about the origin


def test_library_rig_example_runs(use_models, faces_dir, tmp_path, monkeypatch, capsys):
    """The second example: a rig of the photos in shoot/ (two of rig_case1's here), written and read back."""
    code = _library_examples()[2]
    assert "fit_rig" in code and "shoot/*.jpg" in code
    (tmp_path / "shoot").mkdir()
    pytest.importorskip("dlib")
    for p in sorted((faces_dir / "rig_case1").glob("*.jpg"))[:2]:
        (tmp_path / "shoot" / p.name).write_bytes(p.read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    n, err, shape = capsys.readouterr().out.split(" ", 2)
    assert n == "2" and float(err) < 10 and "9409, 3" in shape
    assert len(list((tmp_path / "rig" / "meshes").glob("*.obj"))) == 2
    assert (tmp_path / "rig" / "rig.glb").is_file() and (tmp_path / "rig" / "neutral.png").is_file()


def test_shell_completion_as_the_readme_says():
    """The README's completion line works: Click's bash script, and completion of a command's options."""
    import os
    import subprocess
    import sys

    assert "_REDAFIT_COMPLETE=bash_source redafit" in README.read_text()
    env = {**os.environ, "_REDAFIT_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-m", "redafit"], env=env, capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_redafit_completion()" in script.stdout
    env.update(_REDAFIT_COMPLETE="bash_complete", COMP_WORDS="redafit view --ro", COMP_CWORD="2")
    words = subprocess.run([sys.executable, "-m", "redafit"], env=env, capture_output=True, text=True, timeout=60)
    assert words.stdout.split() == ["plain,--rows"]
