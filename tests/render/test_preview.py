"""Views of a mesh (redafit.render.preview): the axes of each frame, the yaw's direction, and every kind of colour
redafit writes (OBJ + MTL texture, shared material, PLY vertex colours and TextureFile, glTF's embedded texture),
checked on small meshes of known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.errors import InputError
from redafit.io.meshes import shared_texture, write_glb, write_mesh
from redafit.render.preview import VIEW_FRAMES, ViewMesh, camera_frame, read_view_mesh, render_views

RED, GREEN, BLUE, GREY = (0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.6, 0.6, 0.6)


def _box(colours: dict) -> ViewMesh:
    """A 20 mm cube about the origin, y up, each side its own colour (vertices not shared between sides): "+x",
    "-x", "+y", "-y", "+z" (towards the viewer of a head-frame mesh), "-z"; counter-clockwise seen from outside."""
    verts, tris, cols = [], [], []
    for axis in range(3):
        for sign in (1, -1):
            n = np.zeros(3)
            n[axis] = sign
            u = np.roll(n, 1) * 10
            w = np.cross(n, u / 10) * 10
            c = n * 10
            k = len(verts)
            verts += [c - u - w, c + u - w, c + u + w, c - u + w]
            tris += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
            cols += [colours.get(("+" if sign > 0 else "-") + "xyz"[axis], GREY)] * 4
    v, f = np.array(verts, float), np.array(tris)
    # counter-clockwise from outside: the triangle's normal points away from the centre
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    flip = (fn * v[f].mean(1)).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    return ViewMesh(v, f, colors=np.array(cols, float))


def _share(img: np.ndarray, colour) -> float:
    """The share of the image's pixels within 0.08 of ``colour``."""
    return float((np.abs(img - np.array(colour)).max(-1) < 0.08).mean())


def test_head_frame_front_and_yaw_direction():
    box = _box({"+z": RED, "-x": GREEN, "+x": BLUE, "+y": GREY})
    front = render_views(box, yaws=(0,), size=96, frame="head", shaded=False)
    assert front.shape == (96, 96, 3)
    assert _share(front, RED) > 0.2 and _share(front, GREEN) == 0 and _share(front, BLUE) == 0
    # positive yaw brings the mesh's right side (-x, the viewer's left at yaw 0) into view
    turned = render_views(box, yaws=(40,), size=96, frame="head", shaded=False)
    assert _share(turned, GREEN) > 0.05 and _share(turned, BLUE) == 0 and _share(turned, RED) > 0.05
    g = np.argwhere(np.abs(turned - np.array(GREEN)).max(-1) < 0.08)[:, 1].mean()
    r = np.argwhere(np.abs(turned - np.array(RED)).max(-1) < 0.08)[:, 1].mean()
    assert g < r  # the right side on the left of the front
    other = render_views(box, yaws=(-40,), size=96, frame="head", shaded=False)
    assert _share(other, BLUE) > 0.05 and _share(other, GREEN) == 0


def test_pitch_shows_the_top_and_frames_agree():
    box = _box({"+z": RED, "+y": GREEN, "-y": BLUE})
    above = render_views(box, yaws=(0,), pitch=40, size=96, frame="head", shaded=False)
    assert _share(above, GREEN) > 0.05 and _share(above, BLUE) == 0
    assert np.argwhere(np.abs(above - np.array(GREEN)).max(-1) < 0.08)[:, 0].mean() < 48  # the top on top
    # the same box in camera axes (y down, the viewer's side towards -z), 500 mm in front of the camera: the same
    # view, found by "auto"
    cam = ViewMesh(box.vertices * np.array([1, -1, -1]) + np.array([0, 0, 500]), box.triangles, colors=box.colors)
    assert camera_frame(cam.vertices) and not camera_frame(box.vertices)
    np.testing.assert_allclose(render_views(cam, yaws=(0,), pitch=40, size=96, shaded=False), above, atol=1e-4)
    np.testing.assert_allclose(render_views(box, yaws=(0,), pitch=40, size=96, shaded=False), above, atol=1e-4)



@pytest.mark.parametrize("ext", [".obj", ".ply", ".npz"])
def test_a_mesh_file_s_recorded_frame_decides_its_axes(tmp_path, ext):
    """A deep mesh near the camera (a whole head turned, 35 cm away: 18 cm deep) was taken for a head-frame mesh
    by "auto" and drawn upside down and from behind (`retarget --pose camera`, then `view`). redafit's own files
    now record their frame, and the guess for other files asks only that the centre be farther than the depth."""
    from redafit.io.meshes import read_frame

    box = _box({"+z": RED, "+y": GREEN, "-y": BLUE})
    deep = box.vertices * np.array([1.0, 1.0, 9.0])  # 180 mm deep
    head = ViewMesh(deep, box.triangles, colors=box.colors)
    cam_v = deep * np.array([1, -1, -1]) + np.array([0, 0, 150])  # its centre 150 mm away, its front 60 mm
    assert not camera_frame(cam_v)  # nearer than it is deep: only the file can say
    assert camera_frame(cam_v + np.array([0, 0, 200]))  # 350 mm away (the guess wanted 360 before)
    for frame, v in (("camera", cam_v), ("head", deep), (None, deep)):
        path = tmp_path / f"{frame}{ext}"
        write_mesh(path, v, box.triangles, vertex_colors=box.colors if ext != ".npz" else None, frame=frame)
        assert read_frame(path) == frame
        got = read_view_mesh(path)
        assert got.y_up is (None if frame is None else frame == "head")
        if ext != ".npz":
            want = render_views(head, yaws=(0,), pitch=40, size=96, frame="head", shaded=False)
            np.testing.assert_allclose(render_views(got, yaws=(0,), pitch=40, size=96, shaded=False), want,
                                       atol=2 / 255)
    with pytest.raises(ValueError, match="frame must be"):
        write_mesh(tmp_path / f"bad{ext}", deep, box.triangles, frame="model")
    assert read_frame(tmp_path / "missing.obj") is None


def test_shared_bounds_keep_a_moving_mesh_moving():
    """view_bounds: one framing for several meshes (an animation's frames) - a box moved 20 mm to the right is drawn
    to the right of the first, where each framed alone is drawn in the middle."""
    from redafit.render.preview import view_bounds

    a = _box({"+z": RED})
    b = ViewMesh(a.vertices + np.array([20.0, 0, 0]), a.triangles, colors=a.colors)
    bounds = view_bounds([a, b], "head")
    assert np.allclose(bounds[0], [10, 0, 0])

    def centre_x(mesh, bounds=None):
        img = render_views(mesh, yaws=(0,), size=96, frame="head", shaded=False, bounds=bounds)
        return np.argwhere(np.abs(img - 0.15).max(-1) > 0.02)[:, 1].mean()

    assert abs(centre_x(a) - centre_x(b)) < 1  # each alone: centred
    assert centre_x(b, bounds) - centre_x(a, bounds) > 20  # together: the second to the right


def test_shaded_row_is_grey_and_lit_from_the_upper_left():
    img = render_views(_box({}), yaws=(30,), pitch=30, size=96, frame="head", coloured=False)
    face = np.abs(img - 0.15).max(-1) > 0.02
    assert face.mean() > 0.2
    rgb = img[face]
    assert np.abs(rgb[:, 0] - rgb[:, 2]).max() < 0.1  # grey (slightly blue)
    # three sides seen (front, right side, top), each one flat shade: three distinct levels
    assert len(np.unique(np.round(rgb[:, 1], 2))) >= 3
    with pytest.raises(InputError, match="nothing to draw"):
        render_views(_box({}), coloured=False, shaded=False)
    with pytest.raises(InputError, match="frame must be"):
        render_views(_box({}), frame="side")
    assert VIEW_FRAMES == ("auto", "camera", "head")


def _textured_quad():
    v = np.array([[-10, -10, 0], [10, -10, 0], [10, 10, 0], [-10, 10, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    tex = np.zeros((8, 8, 3), np.float32)
    tex[:4] = RED  # the top half (v up: the top rows are v near 1)
    tex[4:] = BLUE
    return v, f, uv, tex


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb", "npz", "shared_obj", "shared_ply"])
def test_every_written_kind_of_texture_is_read(tmp_path, fmt):
    v, f, uv, tex = _textured_quad()
    if fmt.startswith("shared"):
        ext = fmt.split("_")[1]
        from redafit.io.images import save_image

        (tmp_path / "m").mkdir()
        save_image(tmp_path / "skin.png", tex)
        _, kw = shared_texture(tmp_path / "m", f".{ext}", "../skin.png", "shared")
        path = tmp_path / "m" / f"q.{ext}"
        write_mesh(path, v, f, uv=uv, uv_triangles=f, **kw)
    elif fmt == "glb":
        path = tmp_path / "q.glb"
        write_glb(path, v, f, uv=uv, uv_triangles=f, texture=tex)
    else:
        path = tmp_path / f"q.{fmt}"
        write_mesh(path, v, f, uv=uv, uv_triangles=f, texture=tex)
    mesh = read_view_mesh(path)
    assert mesh.texture is not None and mesh.uv is not None
    img = render_views(mesh, yaws=(0,), size=64, frame="head", shaded=False)
    covered = np.abs(img - 0.15).max(-1) > 0.02
    red, blue = (np.abs(img - np.array(c)).max(-1) < 0.08 for c in (RED, BLUE))
    assert red.sum() + blue.sum() > 0.7 * covered.sum() and covered.mean() > 0.3, fmt  # the rest: blends
    assert min(red.sum(), blue.sum()) > 0.3 * covered.sum(), fmt
    assert np.argwhere(red)[:, 0].max() < np.argwhere(blue)[:, 0].min(), fmt  # upright: the texture's top on top
    assert path in mesh.files


def test_back_faces_are_dimmed():
    """An open mesh seen from behind (a face mask's inside) is drawn darker, as viewers draw back faces."""
    from redafit.render.preview import BACK_DIM

    v, f, _, _ = _textured_quad()
    quad = ViewMesh(v, f, colors=np.tile(np.array(RED), (4, 1)))
    front, back = (render_views(quad, yaws=(y,), size=64, frame="head", shaded=False) for y in (0, 180))
    assert _share(front, RED) > 0.3 and _share(back, np.array(RED) * BACK_DIM) > 0.3


def test_vertex_colours_and_untextured(tmp_path):
    box = _box({"+z": RED})
    write_mesh(tmp_path / "c.ply", box.vertices, box.triangles, vertex_colors=box.colors)
    write_mesh(tmp_path / "c.obj", box.vertices, box.triangles, vertex_colors=box.colors)
    for p in (tmp_path / "c.ply", tmp_path / "c.obj"):
        img = render_views(read_view_mesh(p), yaws=(0,), size=64, frame="head", shaded=False)
        assert _share(img, RED) > 0.2, p
    write_mesh(tmp_path / "plain.obj", box.vertices, box.triangles)
    plain = read_view_mesh(tmp_path / "plain.obj")
    assert plain.texture is None and plain.colors is None
    img = render_views(plain, yaws=(0,), size=64, frame="head", shaded=False)
    assert _share(img, (0.7, 0.7, 0.7)) > 0.2  # grey where there is no colour


def test_missing_texture_is_drawn_grey_with_a_warning(tmp_path, caplog):
    v, f, uv, tex = _textured_quad()
    write_mesh(tmp_path / "q.obj", v, f, uv=uv, uv_triangles=f, texture=tex)
    (tmp_path / "q.png").unlink()
    with caplog.at_level("WARNING", logger="redafit"):
        mesh = read_view_mesh(tmp_path / "q.obj")
    assert mesh.texture is None and "texture is left out" in caplog.text


@pytest.mark.parametrize("content,words", [
    (None, "not found"), (b"v 0 0 0\nv 1 0 0\n", "no triangles"), (b"v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
                                                                  "not all finite"),
    (b"v 0 0 x\n", "malformed OBJ line"),
])
def test_bad_meshes_are_input_errors(tmp_path, content, words):
    p = tmp_path / "m.obj"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=words):
        read_view_mesh(p)
    (tmp_path / "m.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not an .npz archive of arrays"):
        read_view_mesh(tmp_path / "m.npz")
    np.savez(tmp_path / "m.npz", vertices=np.zeros((300, 3)), triangles=np.zeros((100, 3), int))
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "m.npz").write_bytes(data[: len(data) // 2])  # cut short: a zip without its directory
    with pytest.raises(InputError, match="truncated or damaged .npz archive"):
        read_view_mesh(tmp_path / "m.npz")
    np.savez(tmp_path / "m.npz", vertices=np.zeros((3, 3)), triangles=np.array([[0, 1, 3]]))
    with pytest.raises(InputError, match="triangle index outside"):
        read_view_mesh(tmp_path / "m.npz")
    np.savez(tmp_path / "m.npz", vertices=np.zeros((3, 2)), triangles=np.array([[0, 1, 2]]))
    with pytest.raises(InputError, match="'vertices': expected shape"):
        read_view_mesh(tmp_path / "m.npz")
    (tmp_path / "m.stl").write_text("solid")
    with pytest.raises(InputError, match="unsupported extension"):
        read_view_mesh(tmp_path / "m.stl")
