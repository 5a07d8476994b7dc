"""`rig`, `track` and `retarget` never write an output over one of their inputs: a photo in the output folder
under an output's name (``neutral.png``: the rig's texture), an output that is a symbolic link to an input, a
--files-from list or a --params file named like an output. Each is refused before any work (exit 2, one line
naming both files) and the input is left as it was; a photo in the output folder under another name is fine."""

import json
import shutil

import pytest

from .conftest import run_cli

FAST = ["--preset", "landmarks", "--texture-size", "64", "--init", "mean"]


@pytest.fixture
def views(faces_dir):
    """Two real photos of one person (rig_case1)."""
    return faces_dir / "rig_case1" / "sample12_view0.jpg", faces_dir / "rig_case1" / "sample12_view1.jpg"


def test_rig_refuses_photo_named_like_its_texture(views, model_home, tmp_path, monkeypatch):
    """The photo neutral.png in the rig folder would be replaced by the rig's texture neutral.png: refused before
    any fit (no photo is read, nothing is written), the photo's bytes unchanged."""
    import redafit.fit.pipeline as pipeline

    out = tmp_path / "shoot"
    out.mkdir()
    photo = out / "neutral.png"
    shutil.copy(views[0], photo)
    before = photo.read_bytes()
    read = []
    monkeypatch.setattr(pipeline, "load_input", lambda *a, **kw: read.append(a) or pytest.fail("a photo was read"))
    res = run_cli(["rig", photo, views[1], "-o", out, *FAST], model_home)
    assert res.exit_code == 2, res.output
    assert f"the rig's texture {out / 'neutral.png'} is also the input photo {photo}" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.output
    assert photo.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["neutral.png"]
    assert not read


@pytest.mark.parametrize("output", ["params.json", "expressions.npz", "rig.glb", "overlays/sample12_view1.png"])
def test_rig_refuses_output_linked_to_a_photo(views, model_home, tmp_path, output):
    """An output path that is a symbolic link to an input photo (under any name) is that photo: refused."""
    out = tmp_path / "rig"
    link = out / output
    link.parent.mkdir(parents=True)
    link.symlink_to(views[1])
    res = run_cli(["rig", *views, "-o", out, "--overlays", *FAST], model_home)
    assert res.exit_code == 2, res.output
    assert f"{link} is also the input photo {views[1]}" in res.stderr
    assert link.is_symlink() and link.resolve() == views[1]


def test_rig_refuses_landmark_file_named_like_an_output(views, model_home, tmp_path):
    """--landmarks DIR -o DIR: the landmark file params.json of a photo params.jpg would be replaced by the rig's
    params.json."""
    out = tmp_path / "rig"
    out.mkdir()
    photo = tmp_path / "params.jpg"
    shutil.copy(views[0], photo)
    (out / "params.json").write_text(json.dumps([[100.0 + i, 100.0 + i] for i in range(68)]))
    res = run_cli(["rig", photo, views[1], "-o", out, "--landmarks", out, *FAST], model_home)
    assert res.exit_code == 2, res.output
    assert "is also the input --landmarks file" in res.stderr


def test_rig_writes_beside_photos_with_other_names(views, model_home, tmp_path):
    """Photos in the rig folder under names the rig does not write are inputs like any other: the rig is written
    next to them and they are left as they were."""
    out = tmp_path / "shoot"
    out.mkdir()
    photos = [out / "front.jpg", out / "side.jpg"]
    for src, dst in zip(views, photos):
        shutil.copy(src, dst)
    res = run_cli(["rig", *photos, "-o", out, *FAST], model_home)
    assert res.exit_code == 0, res.output
    assert (out / "neutral.png").is_file() and (out / "params.json").is_file()
    assert [p.read_bytes() for p in photos] == [v.read_bytes() for v in views]


def test_track_refuses_list_named_like_its_output(views, model_home, tmp_path):
    """--files-from out/params.jsonl -o out/: the list of frames would be replaced by the tracked parameters."""
    out = tmp_path / "track"
    out.mkdir()
    listing = out / "params.jsonl"
    listing.write_text("".join(f"{v}\n" for v in views))
    before = listing.read_bytes()
    res = run_cli(["track", "--files-from", listing, "-o", out], model_home)
    assert res.exit_code == 2, res.output
    assert f"the track's parameters {listing} is also the --files-from list {listing}" in res.stderr
    assert listing.read_bytes() == before and not (out / "track.json").exists()


@pytest.mark.parametrize("fmt, name", [("glb", "anim.glb"), ("obj", "frame_00001.obj")])
def test_retarget_refuses_params_named_like_its_output(small_rig, ict, model_home, tmp_path, fmt, name):
    """--params out/anim.glb -o out/ (a params.jsonl under the name of an output): refused, the file kept."""
    out = tmp_path / "anim"
    out.mkdir()
    params = out / name
    rec = {"frame": 1, "time_s": 0.1, "ok": True, "expression": {n: 0.0 for n in ict.expression_names},
           "pose": {"axis_angle": [0.0, 0.0, 0.0], "translation_mm": [0.0, 0.0, 500.0]}}
    params.write_text(json.dumps(rec) + "\n")
    before = params.read_bytes()
    res = run_cli(["retarget", small_rig, "--params", params, "-o", out, "--format", fmt], model_home)
    assert res.exit_code == 2, res.output
    assert f"the output {params} is also the --params file {params}" in res.stderr
    assert params.read_bytes() == before and [p.name for p in out.iterdir()] == [name]
