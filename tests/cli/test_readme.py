"""The README's library example runs as written, on a shared photo."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_library_example_runs(use_models, faces_dir, tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text[text.index("## Library use"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "photo.jpg" in code and "face.obj" in code
    (tmp_path / "photo.jpg").write_bytes((faces_dir / "fr_obama.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip()
    assert (tmp_path / "face.obj").is_file() and (tmp_path / "face.png").is_file()
    import trimesh

    mesh = trimesh.load(tmp_path / "face.obj", process=False, force="mesh")
    assert mesh.vertices[:, 2].min() > 0 and len(mesh.faces) > 18000
    head = trimesh.load(tmp_path / "head.ply", process=False, force="mesh")
    assert len(head.faces) == len(mesh.faces) and abs(head.vertices.mean(0)[2]) < 100  # about the origin
