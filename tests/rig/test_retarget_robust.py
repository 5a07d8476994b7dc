"""`redafit retarget` robustness: output files keyed to the source frames and times across a failed frame, a
malformed params line is exit 3 naming the line (and makes no output folder), so is a malformed rig file (naming the
file), a failure part-way writes nothing."""

import json
import shutil
import struct

import numpy as np
import pytest

from .conftest import run_cli


def _record(i, names, w):
    """A tracked record as `redafit track` writes it (10 fps): weight ``w`` on the first expression."""
    return {"frame": i, "time_s": round(i / 10, 4), "ok": True, "expression": {n: (w if k == 0 else 0.0)
            for k, n in enumerate(names)}, "pose": {"axis_angle": [0.0, 0.05 * i, 0.0], "translation_mm": [0, 0, 500]}}


@pytest.fixture
def params_gap(ict, tmp_path):
    """params.jsonl of frames 0-4 with frame 2 failed (weights 0, 0.2, -, 0.6, 0.8), track.json at 10 fps."""
    d = tmp_path / "track"
    d.mkdir()
    lines = [_record(i, ict.expression_names, 0.2 * i) for i in (0, 1)]
    lines.append({"frame": 2, "time_s": 0.2, "ok": False, "error": "no face found", "exit_code": 5})
    lines += [_record(i, ict.expression_names, 0.2 * i) for i in (3, 4)]
    (d / "params.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (d / "track.json").write_text(json.dumps({"fps": 10.0}))
    return d / "params.jsonl"


def _glb(path):
    """(glTF JSON, accessor reader) of a .glb file."""
    data = path.read_bytes()
    n, kind = struct.unpack("<I4s", data[12:20])
    assert data[:4] == b"glTF" and kind == b"JSON"
    gl = json.loads(data[20:20 + n])
    binary = data[20 + n + 8:]

    def accessor(i):
        a = gl["accessors"][i]
        v = gl["bufferViews"][a["bufferView"]]
        assert a["componentType"] == 5126 and a["type"] == "SCALAR"
        return np.frombuffer(binary, np.float32, a["count"], v["byteOffset"] + a.get("byteOffset", 0))

    return gl, accessor


def test_meshes_named_by_source_frame(small_rig, params_gap, tmp_path, model_home):
    from redafit.io.meshes import read_obj

    out = tmp_path / "anim"
    res = run_cli(["retarget", small_rig, "--params", params_gap, "-o", out], model_home)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("frame_*")) == [f"frame_0000{i}.obj" for i in (0, 1, 3, 4)]
    v = {i: read_obj(out / f"frame_0000{i}.obj").vertices for i in (0, 1, 3, 4)}
    assert not np.allclose(v[3], v[1])  # frame 3's pose and expression, not frame 2's slot filled with frame 1's
    # a file where the output folder should be: exit 10 (an output that cannot be written), one line, before work
    (tmp_path / "afile").write_text("x")
    res = run_cli(["retarget", small_rig, "--params", params_gap, "-o", tmp_path / "afile"], model_home)
    assert res.exit_code == 10 and "is a file" in res.output and "Traceback" not in res.output


def test_glb_keyed_by_time(small_rig, params_gap, tmp_path, model_home):
    out = tmp_path / "anim"
    res = run_cli(["retarget", small_rig, "--params", params_gap, "-o", out, "--format", "glb"], model_home)
    assert res.exit_code == 0, res.output
    gl, acc = _glb(out / "anim.glb")
    sampler = gl["animations"][0]["samplers"][0]
    times, w = acc(sampler["input"]), acc(sampler["output"]).reshape(-1, len(gl["meshes"][0]["weights"]))
    # keys at the frames' own times: frame 3 plays at 0.3 s (not early at 0.2 s), the failed frame 2 is a gap
    assert times == pytest.approx([0.0, 0.1, 0.3, 0.4], abs=1e-6)
    assert w[:, 0] == pytest.approx([0.0, 0.2, 0.6, 0.8], abs=1e-6)
    assert np.abs(w[:, 1:]).max() == 0
    # --fps plays them faster: twice the track's 10 frames/s halves every time
    res = run_cli(["retarget", small_rig, "--params", params_gap, "-o", tmp_path / "fast", "--format", "glb",
                   "--fps", "20"], model_home)
    assert res.exit_code == 0, res.output
    gl, acc = _glb(tmp_path / "fast" / "anim.glb")
    assert acc(gl["animations"][0]["samplers"][0]["input"]) == pytest.approx([0.0, 0.05, 0.15, 0.2], abs=1e-6)


def test_records_without_frame_or_time_fall_back(small_rig, ict, tmp_path):
    from redafit.rig.fit import load_rig
    from redafit.rig.retarget import write_retarget

    recs = [_record(i, ict.expression_names, 0.1 * i) for i in range(3)]
    for r in recs:
        del r["frame"], r["time_s"]
    files = write_retarget(load_rig(small_rig), recs, tmp_path / "o", fmt="ply")
    assert [p.name for p in files] == ["rig.png"] + [f"frame_0000{i}.ply" for i in range(3)]  # the texture first


@pytest.mark.parametrize("change, words", [
    (lambda r: r["pose"].update(axis_angle=[0, 0]), "axis_angle"),
    (lambda r: r["pose"].update(translation_mm=[0, 0, "x"]), "translation_mm"),
    (lambda r: r["pose"].update(rotation=[[1, 0, 0], [0, 1, 0]]), "rotation"),
    (lambda r: r.update(pose=[0, 0, 0]), "pose"),
    (lambda r: r["expression"].update(jawOpen="abc"), "jawOpen"),
    (lambda r: r["expression"].update(jawOpen=float("nan")), "jawOpen"),
    (lambda r: r["expression"].update(jawOpen=True), "jawOpen"),
    (lambda r: r.update(frame=1), "frame"),  # not after the previous tracked frame 1
    (lambda r: r.update(time_s="0.3"), "time_s"),
])
def test_malformed_record_is_input_error(small_rig, params_gap, tmp_path, model_home, change, words):
    lines = params_gap.read_text().splitlines()
    r = json.loads(lines[3])
    change(r)
    lines[3] = json.dumps(r)
    params_gap.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    res = run_cli(["retarget", small_rig, "--params", params_gap, "-o", out], model_home)
    assert res.exit_code == 3, res.output
    assert f"{params_gap}:4:" in res.output and words in res.output and "unexpected" not in res.output
    assert not out.exists()


@pytest.mark.parametrize("key, value, pose", [
    ("axis_angle", [1e308, 1e308, 1e308], "rotation"),
    ("translation_mm", [1e300, 1e300, 1e300], "full"),
])
def test_overflowing_pose_is_input_error(small_rig, params_gap, tmp_path, model_home, key, value, pose):
    """Finite but huge pose numbers pass the record check, then overflow: an axis-angle of 1e308 made a NaN
    rotation (exit 1 "unexpected LinAlgError: SVD did not converge" in the eye caps), a translation of 1e300 NumPy
    overflow warnings and NaN vertices. Both are now exit 3 before any output."""
    lines = params_gap.read_text().splitlines()
    r = json.loads(lines[3])
    r["pose"][key] = value
    lines[3] = json.dumps(r)
    params_gap.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    res = run_cli(["retarget", small_rig, "--params", params_gap, "-o", out, "--pose", pose], model_home)
    assert res.exit_code == 3, res.output
    assert "out of range" in res.output and "unexpected" not in res.output and "Warning" not in res.output
    assert not out.exists()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_failure_part_way_writes_nothing(small_rig, ict, tmp_path, monkeypatch, exc):
    import redafit.io.meshes as meshes
    from redafit.rig.fit import load_rig
    from redafit.rig.retarget import write_retarget

    real, calls = meshes.write_mesh, []

    def failing(*a, **kw):
        calls.append(a[0])
        if len(calls) == 3:
            raise exc("interrupted on the 3rd frame")
        return real(*a, **kw)

    monkeypatch.setattr(meshes, "write_mesh", failing)
    rig = load_rig(small_rig)
    recs = [_record(i, ict.expression_names, 0.1 * i) for i in range(5)]
    with pytest.raises(exc):
        write_retarget(rig, recs, tmp_path / "new", fmt="obj")
    assert len(calls) == 3 and not (tmp_path / "new").exists()  # no frame, and the folder made for it removed
    old = tmp_path / "old"
    old.mkdir()
    (old / "frame_00001.obj").write_text("old\n")
    calls.clear()
    with pytest.raises(exc):
        write_retarget(rig, recs, old, fmt="obj")
    assert [p.name for p in old.iterdir()] == ["frame_00001.obj"]  # the files already there left as they were
    assert (old / "frame_00001.obj").read_text() == "old\n"


@pytest.mark.parametrize("damage", ["loop out of range", "no caps"])
def test_rig_caps_on_load(small_rig, params_gap, tmp_path, model_home, damage):
    """A rig folder's stored caps are checked on load (a bad index is exit 3 naming the folder, not an
    IndexError while writing); a rig folder without them (made before the caps, or --no-caps) retargets to
    the model's own topology."""
    import shutil

    from redafit.io.meshes import read_obj

    rig = tmp_path / "rig"
    shutil.copytree(small_rig, rig)
    d = dict(np.load(rig / "expressions.npz"))
    if damage == "loop out of range":
        d["cap_loop0"] = d["cap_loop0"] + len(d["neutral"])
    else:
        d = {k: v for k, v in d.items() if not k.startswith("cap_")}
    np.savez(rig / "expressions.npz", **d)
    out = tmp_path / "anim"
    res = run_cli(["retarget", rig, "--params", params_gap, "-o", out, "--format", "obj"], model_home)
    if damage == "loop out of range":
        assert res.exit_code == 3 and "malformed" in res.stderr and not out.exists()
    else:
        assert res.exit_code == 0, res.output
        assert read_obj(sorted(out.glob("*.obj"))[0]).vertices.shape == d["neutral"].shape


def _npz_edit(change):
    """A damage to expressions.npz: ``change`` applied to its arrays (a dict), saved back."""
    def damage(rig):
        d = dict(np.load(rig / "expressions.npz"))
        change(d)
        np.savez(rig / "expressions.npz", **d)
    return damage


def _params_edit(change):
    """A damage to params.json: ``change`` applied to its parsed object, written back."""
    def damage(rig):
        meta = json.loads((rig / "params.json").read_text())
        (rig / "params.json").write_text(json.dumps(change(meta) or meta))
    return damage


def _truncate(rig):
    data = (rig / "expressions.npz").read_bytes()
    (rig / "expressions.npz").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, file, words", [
    (lambda rig: (rig / "params.json").write_text("[1, 2, 3]"), "params.json", "expected a JSON object"),
    (lambda rig: (rig / "params.json").write_text("{\"images\": "), "params.json", "not JSON"),
    (_params_edit(lambda m: m["images"][0]["pose"].update(rotation=[1, 2])), "params.json", "pose.rotation"),
    (_params_edit(lambda m: m["images"][1].update(expression=[0.5])), "params.json", "image 1"),
    (_params_edit(lambda m: m.update(seconds="soon")), "params.json", "seconds"),
    (_truncate, "expressions.npz", "truncated"),
    (lambda rig: (rig / "expressions.npz").write_text("neutral basis names\n"), "expressions.npz",
     "not an .npz archive"),
    (_npz_edit(lambda d: d["neutral"].fill(np.nan)), "expressions.npz", "'neutral' contains NaN"),
    (_npz_edit(lambda d: d.update(basis=d["basis"][:, :100])), "expressions.npz", "array 'basis': expected shape"),
    (_npz_edit(lambda d: d.update(names=d["names"][:3])), "expressions.npz", "array 'basis': expected shape [3,"),
    (_npz_edit(lambda d: d.update(triangles=d["triangles"] + 0.5)), "expressions.npz", "expected integers"),
    (_npz_edit(lambda d: d["uv_triangles"].__setitem__((0, 0), 10 ** 6)), "expressions.npz", "'uv_triangles' has ids"),
    (_npz_edit(lambda d: d.update(displacement=d["displacement"][:5])), "expressions.npz", "'displacement'"),
    (_npz_edit(lambda d: d.pop("basis")), "expressions.npz", "lacks the array 'basis'"),
    (_npz_edit(lambda d: d.update(cap_triangles=d["cap_triangles"] + 0.5)), "expressions.npz", "malformed eye caps"),
    (lambda rig: (rig / "neutral.png").write_text("not a png"), "neutral.png", "texture"),
], ids=["params-list", "params-cut", "rotation-2", "expression-list", "seconds-text", "npz-truncated", "npz-text",
        "neutral-nan", "basis-vertices", "names-short", "triangles-float", "uv-id-range", "displacement-rows",
        "no-basis", "caps-float", "texture-text"])
def test_malformed_rig_is_input_error(small_rig, params_gap, tmp_path, model_home, damage, file, words):
    """Every malformed rig file (a JSON list for params.json, a truncated or text expressions.npz, NaN in the neutral
    shape, arrays whose shapes or types do not fit together, a texture that is no image) is exit 3 with one line
    naming the file and what is wrong, before any output: not a crash ("unexpected ...", exit 1) while writing."""
    rig = tmp_path / "rig"
    shutil.copytree(small_rig, rig)
    damage(rig)
    out = tmp_path / "anim"
    res = run_cli(["retarget", rig, "--params", params_gap, "-o", out, "--format", "obj"], model_home)
    assert res.exit_code == 3, res.output
    assert str(rig / file) in res.stderr and words in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "unexpected" not in res.stderr and "pickled" not in res.stderr
    assert not out.exists()


def test_binary_params_file_is_input_error(small_rig, tmp_path, model_home):
    """A --params file that is no text (a glTF given by mistake) is exit 3 naming it, not a UnicodeDecodeError."""
    params = tmp_path / "anim.glb"
    params.write_bytes(b"glTF\x02\x00\x00\x00\x94\xff\x00binary")
    res = run_cli(["retarget", small_rig, "--params", params, "-o", tmp_path / "o"], model_home)
    assert res.exit_code == 3, res.output
    assert f"{params} is not UTF-8 text" in res.stderr and "unexpected" not in res.stderr


def test_frames_of_another_run_in_the_folder_are_warned_of(small_rig, ict, tmp_path, caplog):
    """Frames already in the folder that this run does not write (an earlier, longer run's) are left, with a warning
    naming them: `view` of the folder would play them with the new ones."""
    import logging

    from redafit.rig.fit import load_rig
    from redafit.rig.retarget import write_retarget

    rig, out = load_rig(small_rig), tmp_path / "anim"
    with caplog.at_level(logging.WARNING, logger="redafit"):
        write_retarget(rig, [_record(i, ict.expression_names, 0.1 * i) for i in range(5)], out, fmt="obj")
        assert "frame mesh" not in caplog.text
        write_retarget(rig, [_record(i, ict.expression_names, 0.1 * i) for i in range(2)], out, fmt="obj")
    assert "3 frame mesh(es) this run does not write (frame_00002.obj ... frame_00004.obj)" in caplog.text
    assert (out / "frame_00004.obj").is_file()


def test_a_rig_saved_over_another_removes_the_other_s_image_files(small_rig, ict, tmp_path, caplog):
    """A rig folder holds one rig: saving a rig where another was removes the earlier one's per-image meshes,
    overlays and maps that the new one does not write (they wore the new texture), but not a read-only one, and
    not files it did not make."""
    import json
    import logging
    import os
    import shutil

    from redafit.rig.fit import load_rig, save_rig

    out = tmp_path / "rig"
    shutil.copytree(small_rig, out)
    rig = load_rig(out)
    names = [fr.name for fr in rig.frames]
    save_rig(rig, out, meshes=True)
    meta = json.loads((out / "params.json").read_text())
    meta["images"].append({**meta["images"][0], "name": "gone"})  # an earlier rig with a photo this one lacks
    (out / "params.json").write_text(json.dumps(meta))
    for f in ("meshes/gone.obj", "overlays/gone.png", "overlays/kept.png", "maps/gone/depth.png", "notes.txt"):
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        (out / f).write_text("earlier")
    (out / "overlays" / "kept.png").rename(out / "overlays" / f"{names[0]}.png")
    os.chmod(out / "overlays" / f"{names[0]}.png", 0o444)
    with caplog.at_level(logging.WARNING, logger="redafit"):
        save_rig(rig, out, meshes=True)
    assert sorted(p.name for p in (out / "meshes").iterdir()) == sorted([f"{n}.obj" for n in names] + ["rig.mtl"])
    assert not (out / "maps").exists() and (out / "notes.txt").is_file()
    assert [p.name for p in (out / "overlays").iterdir()] == [f"{names[0]}.png"]  # read-only: kept, said
    assert "1 read-only file(s)" in caplog.text
    save_rig(rig, out)  # without --meshes: the meshes go too, and their folder
    assert not (out / "meshes").exists() and (out / "neutral.obj").is_file()
