"""Mesh writers: OBJ(+MTL+PNG), PLY, NPZ, GLB round-trips, checked with our reader, trimesh and pygltflib."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from redafit.errors import InputError, OutputError
from redafit.io.meshes import mesh_files, read_obj, split_uv_seams, write_glb, write_mesh


@pytest.fixture
def cube():
    """A unit cube (mm) with a cross-shaped UV layout: 8 vertices, 14 UV points, seams on several edges."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
                 dtype=np.float64) * 10.0
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [2, 3, 7], [2, 7, 6], [1, 2, 6], [1, 6, 5], [0, 4, 7], [0, 7, 3]])
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 1, (14, 2))
    ft = rng.integers(0, 14, f.shape)
    tex = rng.uniform(0, 1, (16, 32, 3)).astype(np.float32)
    return v, f, uv, ft, tex


def test_meshes_sharing_one_texture(tmp_path, cube):
    """shared_texture: OBJs name one material file (written once), PLYs the PNG itself, NPZ and GLB nothing; no
    mesh writes a texture of its own, and a name a reader would split at white space is refused."""
    from redafit.io.meshes import shared_texture

    v, f, uv, ft, tex = cube
    files, kw = shared_texture(tmp_path, ".obj", "../skin.png", "shared")
    assert files == [tmp_path / "shared.mtl"] and kw == {"material": "shared.mtl"}
    assert "map_Kd ../skin.png" in (tmp_path / "shared.mtl").read_text()
    for name in ("a.obj", "b.obj"):
        assert write_mesh(tmp_path / name, v, f, uv=uv, uv_triangles=ft, **kw) == [tmp_path / name]
        assert read_obj(tmp_path / name).mtllib == "shared.mtl"
        assert "usemtl face" in (tmp_path / name).read_text()
    files, kw = shared_texture(tmp_path, ".PLY", "skin.png", "shared")
    assert files == [] and kw == {"texture_file": "skin.png"}
    assert write_mesh(tmp_path / "c.ply", v, f, uv=uv, uv_triangles=ft, **kw) == [tmp_path / "c.ply"]
    assert b"comment TextureFile skin.png" in (tmp_path / "c.ply").read_bytes()[:300]
    assert shared_texture(tmp_path, ".npz", "skin.png", "shared") == ([], {})
    assert sorted(os.listdir(tmp_path)) == ["a.obj", "b.obj", "c.ply", "shared.mtl"]
    with pytest.raises(InputError, match="without white space"):
        shared_texture(tmp_path, ".obj", "my skin.png", "x")
    with pytest.raises(InputError, match="not both"):
        write_mesh(tmp_path / "d.obj", v, f, uv=uv, uv_triangles=ft, texture=tex, material="shared.mtl")


def test_obj_with_texture_round_trip(tmp_path, cube):
    v, f, uv, ft, tex = cube
    written = write_mesh(tmp_path / "m.obj", v, f, uv=uv, uv_triangles=ft, texture=tex)
    assert sorted(p.name for p in written) == ["m.mtl", "m.obj", "m.png"]
    assert sorted(os.listdir(tmp_path)) == ["m.mtl", "m.obj", "m.png"]  # no temp files left
    m = read_obj(tmp_path / "m.obj")
    np.testing.assert_allclose(m.vertices, v, atol=1e-6)
    np.testing.assert_array_equal(m.triangles, f)
    np.testing.assert_allclose(m.uv, uv, atol=1e-6)
    np.testing.assert_array_equal(m.uv_triangles, ft)
    assert m.mtllib == "m.mtl"
    assert "map_Kd m.png" in (tmp_path / "m.mtl").read_text()
    import cv2

    png = cv2.imread(str(tmp_path / "m.png"))[..., ::-1] / 255.0
    np.testing.assert_allclose(png, tex, atol=1 / 255 + 1e-6)


def test_obj_loads_in_trimesh_with_texture(tmp_path, cube):
    import trimesh

    v, f, uv, ft, tex = cube
    write_mesh(tmp_path / "m.obj", v, f, uv=uv, uv_triangles=ft, texture=tex)
    tm = trimesh.load(tmp_path / "m.obj", process=False, force="mesh")
    assert len(tm.faces) == len(f)
    assert tm.visual.kind == "texture"
    # trimesh splits seams itself: every corner's UV must match ours (v up, as in OBJ)
    corner_uv = tm.visual.uv[tm.faces]
    np.testing.assert_allclose(corner_uv, uv[ft], atol=1e-6)
    np.testing.assert_allclose(tm.vertices[tm.faces], v[f], atol=1e-6)
    # (trimesh decodes the texture image only when Pillow is installed; the PNG is checked above with OpenCV)


def test_obj_plain_and_vertex_colours(tmp_path, cube):
    v, f, *_ = cube
    c = np.linspace(0, 1, 24).reshape(8, 3)
    write_mesh(tmp_path / "p.obj", v, f, vertex_colors=c)
    assert sorted(os.listdir(tmp_path)) == ["p.obj"]
    m = read_obj(tmp_path / "p.obj")
    np.testing.assert_allclose(m.vertices, v, atol=1e-6)
    np.testing.assert_allclose(m.vertex_colors, c, atol=1e-4)
    assert m.uv is None


def test_read_obj_quads_negative_indices_and_normals(tmp_path):
    (tmp_path / "q.obj").write_text(
        "# quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
        "f 1/1/1 2/2/1 3/3/1 4/4/1\nf -4//1 -3//1 -2//1\n")
    m = read_obj(tmp_path / "q.obj")
    np.testing.assert_array_equal(m.triangles, [[0, 1, 2], [0, 2, 3], [0, 1, 2]])
    assert m.uv is None  # the last face has no vt: mixed faces give no per-corner UVs


def test_read_obj_malformed(tmp_path):
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 x 0\n")
    with pytest.raises(InputError, match=r"bad.obj:2"):
        read_obj(tmp_path / "bad.obj")
    (tmp_path / "bad2.obj").write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(InputError, match="face index"):
        read_obj(tmp_path / "bad2.obj")


def test_obj_and_ply_carry_smooth_outward_normals(tmp_path, cube):
    """Both carry one unit normal per vertex, the area-weighted mean of its triangles' (a viewer without them
    shades every triangle flat): at the cube's corner 0 the diagonal away from the cube; every OBJ corner names
    its vertex's normal."""
    import trimesh

    from redafit.io.meshes import vertex_normals

    v, f, uv, ft, tex = cube
    write_mesh(tmp_path / "m.obj", v, f, uv=uv, uv_triangles=ft, texture=tex)
    write_mesh(tmp_path / "m.ply", v, f)
    lines = (tmp_path / "m.obj").read_text().splitlines()
    vn = np.array([ln.split()[1:] for ln in lines if ln.startswith("vn ")], float)
    np.testing.assert_allclose(vn, vertex_normals(v, f), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vn, axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(vn[0], -np.ones(3) / np.sqrt(3), atol=1e-5)
    for ln in (ln for ln in lines if ln.startswith("f ")):
        assert all(c.split("/")[0] == c.split("/")[2] for c in ln.split()[1:]), ln
    assert read_obj(tmp_path / "m.obj").triangles.tolist() == f.tolist()
    ply = trimesh.load(tmp_path / "m.ply", process=False)
    np.testing.assert_allclose(ply.vertex_normals, vertex_normals(v, f), atol=1e-5)
    raw = (tmp_path / "m.ply").read_bytes()
    assert b"property float nx" in raw[:400]


def test_ply_binary_round_trip(tmp_path, cube):
    import trimesh

    v, f, uv, ft, tex = cube
    c = np.linspace(0, 1, 24).reshape(8, 3)
    write_mesh(tmp_path / "m.ply", v, f, vertex_colors=c)
    raw = (tmp_path / "m.ply").read_bytes()
    assert b"format binary_little_endian 1.0" in raw[:200]
    tm = trimesh.load(tmp_path / "m.ply", process=False)
    np.testing.assert_allclose(tm.vertices, v, atol=1e-5)
    np.testing.assert_array_equal(tm.faces, f)
    np.testing.assert_allclose(tm.visual.vertex_colors[:, :3] / 255.0, c, atol=1 / 255 + 1e-6)


def test_ply_with_uv_and_texture(tmp_path, cube):
    import trimesh

    v, f, uv, ft, tex = cube
    written = write_mesh(tmp_path / "t.ply", v, f, uv=uv, uv_triangles=ft, texture=tex)
    assert sorted(p.name for p in written) == ["t.ply", "t.png"]
    assert b"comment TextureFile t.png" in (tmp_path / "t.ply").read_bytes()[:300]
    tm = trimesh.load(tmp_path / "t.ply", process=False)
    assert len(tm.faces) == len(f)


def test_mesh_files_names_what_each_writer_writes(tmp_path, cube):
    """mesh_files (what the CLI checks its other outputs against) lists exactly the files a textured write makes."""
    v, f, uv, ft, tex = cube
    for name in ("a.obj", "b.ply", "c.npz", "d.glb"):
        written = write_mesh(tmp_path / name, v, f, uv=uv, uv_triangles=ft, texture=tex)
        assert set(written) == set(mesh_files(tmp_path / name)), name
    assert mesh_files(tmp_path / "a.obj") == {tmp_path / "a.png": "texture", tmp_path / "a.mtl": "material file",
                                              tmp_path / "a.obj": "mesh"}


def test_obj_named_with_spaces_names_its_companions_without(tmp_path, cube):
    """OBJ's mtllib and MTL's map_Kd are whitespace-separated lists: `my face.obj` names `my_face.mtl` and
    `my_face.png`, which a strict reader (split on spaces) and trimesh both find."""
    import trimesh

    v, f, uv, ft, tex = cube
    path = tmp_path / "my face\tv2.obj"
    written = write_mesh(path, v, f, uv=uv, uv_triangles=ft, texture=tex)
    assert set(written) == set(mesh_files(path)) == {path, tmp_path / "my_face_v2.mtl", tmp_path / "my_face_v2.png"}
    obj = path.read_text()
    assert "mtllib my_face_v2.mtl\n" in obj
    mtllib = next(line for line in obj.splitlines() if line.startswith("mtllib")).split()
    assert mtllib == ["mtllib", "my_face_v2.mtl"]  # one name however the line is split
    assert (tmp_path / "my_face_v2.mtl").read_text().splitlines()[-1].split() == ["map_Kd", "my_face_v2.png"]
    tm = trimesh.load(path, process=False, force="mesh")
    assert tm.visual.kind == "texture" and len(tm.faces) == len(f)
    assert mesh_files(tmp_path / "my face.ply")[tmp_path / "my face.png"] == "texture"  # a PLY's comment is whole


def test_npz_round_trip(tmp_path, cube):
    v, f, uv, ft, tex = cube
    write_mesh(tmp_path / "m.npz", v, f, uv=uv, uv_triangles=ft, texture=tex)
    assert os.listdir(tmp_path) == ["m.npz"]
    d = np.load(tmp_path / "m.npz")
    np.testing.assert_allclose(d["vertices"], v, atol=1e-6)
    np.testing.assert_array_equal(d["triangles"], f)
    np.testing.assert_array_equal(d["uv_triangles"], ft)
    np.testing.assert_allclose(d["texture"], tex)


def test_bad_inputs(tmp_path, cube):
    v, f, uv, ft, tex = cube
    with pytest.raises(OutputError, match="extension"):
        write_mesh(tmp_path / "m.stl", v, f)
    with pytest.raises(InputError, match="vertices"):
        write_mesh(tmp_path / "m.obj", v[:, :2], f)
    with pytest.raises(InputError, match="index"):
        write_mesh(tmp_path / "m.obj", v, f + 8)
    with pytest.raises(InputError, match="NaN"):
        write_mesh(tmp_path / "m.ply", np.full_like(v, np.nan), f)
    with pytest.raises(InputError, match="uv_triangles"):
        write_mesh(tmp_path / "m.obj", v, f, uv=uv, uv_triangles=ft[:3])
    assert os.listdir(tmp_path) == []


def test_split_uv_seams(cube):
    v, f, uv, ft, tex = cube
    vid, tid, tris = split_uv_seams(f, ft)
    np.testing.assert_array_equal(vid[tris], f)
    np.testing.assert_array_equal(tid[tris], ft)
    assert len(vid) == len({(a, b) for a, b in zip(f.ravel(), ft.ravel(), strict=True)})
    # without seams (uv per vertex) nothing is split
    vid2, _, tris2 = split_uv_seams(f, f)
    assert len(vid2) == 8


# -- glTF -------------------------------------------------------------------------------------------------------
def _glb_parts(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen, jtype = struct.unpack("<I4s", data[12:20])
    assert jtype == b"JSON" and jlen % 4 == 0
    doc = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack("<I4s", data[20 + jlen:28 + jlen])
    assert btype == b"BIN\x00"
    return doc, data[28 + jlen:28 + jlen + blen]


def test_glb_morph_targets_pygltflib(tmp_path, cube):
    pygltflib = pytest.importorskip("pygltflib")
    v, f, uv, ft, tex = cube
    rng = np.random.default_rng(1)
    targets = {"jawOpen": rng.normal(size=v.shape), "eyeBlinkLeft": rng.normal(size=v.shape),
               "mouthSmile": np.zeros_like(v)}
    anim = rng.uniform(0, 1, (5, 3))
    write_glb(tmp_path / "r.glb", v, f, targets, uv=uv, uv_triangles=ft, texture=tex, animation=anim, fps=25)
    g = pygltflib.GLTF2().load(str(tmp_path / "r.glb"))
    prim = g.meshes[0].primitives[0]
    assert len(prim.targets) == 3
    assert g.meshes[0].extras["targetNames"] == ["jawOpen", "eyeBlinkLeft", "mouthSmile"]
    assert g.meshes[0].weights == [0.0, 0.0, 0.0]
    blob = g.binary_blob()

    def read(acc_id, cols):
        acc = g.accessors[acc_id]
        bv = g.bufferViews[acc.bufferView]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}[acc.componentType]
        a = np.frombuffer(blob, dtype=dtype, count=acc.count * cols, offset=bv.byteOffset + (acc.byteOffset or 0))
        return a.reshape(acc.count, cols) if cols > 1 else a

    pos = read(prim.attributes.POSITION, 3)
    idx = read(prim.indices, 1).reshape(-1, 3)
    st = read(prim.attributes.TEXCOORD_0, 2)
    vid, tid, tris = split_uv_seams(f, ft)
    np.testing.assert_array_equal(idx, tris)
    np.testing.assert_allclose(pos, v[vid] * 1e-3, atol=1e-7)  # millimetres -> metres
    np.testing.assert_allclose(st[:, 0], uv[tid, 0], atol=1e-6)
    np.testing.assert_allclose(st[:, 1], 1 - uv[tid, 1], atol=1e-6)  # glTF v points down
    d0 = read(prim.targets[0]["POSITION"], 3)
    np.testing.assert_allclose(d0, targets["jawOpen"][vid] * 1e-3, atol=1e-7)
    acc = g.accessors[prim.attributes.POSITION]
    np.testing.assert_allclose(acc.min, pos.min(0)) and np.testing.assert_allclose(acc.max, pos.max(0))
    # texture embedded as PNG, animation of the weights
    assert g.images[0].mimeType == "image/png"
    assert g.materials[0].pbrMetallicRoughness.baseColorTexture.index == 0
    ch = g.animations[0].channels[0]
    assert ch.target.path == "weights" and ch.target.node == 0
    times = read(g.animations[0].samplers[0].input, 1)
    np.testing.assert_allclose(times, np.arange(5) / 25, atol=1e-7)
    np.testing.assert_allclose(read(g.animations[0].samplers[0].output, 1), anim.ravel(), atol=1e-7)


def test_glb_loads_in_trimesh(tmp_path, cube):
    import trimesh

    v, f, uv, ft, tex = cube
    targets = {f"t{k}": np.full_like(v, k) for k in range(4)}
    write_glb(tmp_path / "r.glb", v, f, targets, uv=uv, uv_triangles=ft, texture=tex, unit_scale=1.0)
    scene = trimesh.load(tmp_path / "r.glb", process=False)
    geoms = list(scene.geometry.values())
    assert len(geoms) == 1
    m = geoms[0]
    vid, tid, tris = split_uv_seams(f, ft)
    np.testing.assert_allclose(m.vertices, v[vid], atol=1e-5)
    assert len(m.faces) == len(f)
    assert m.visual.kind == "texture"
    np.testing.assert_allclose(m.visual.uv, uv[tid], atol=1e-6)  # trimesh flips glTF's v back up
    doc, blob = _glb_parts(tmp_path / "r.glb")
    import cv2

    view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    png = cv2.imdecode(np.frombuffer(blob[view["byteOffset"]:view["byteOffset"] + view["byteLength"]], np.uint8),
                       cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    np.testing.assert_allclose(png, tex, atol=1 / 255 + 1e-6)
    assert len(doc["meshes"][0]["primitives"][0]["targets"]) == 4
    assert doc["meshes"][0]["extras"]["targetNames"] == ["t0", "t1", "t2", "t3"]


def test_glb_without_uv_and_via_write_mesh(tmp_path, cube):
    import trimesh

    v, f, *_ = cube
    write_mesh(tmp_path / "plain.glb", v, f)
    doc, _ = _glb_parts(tmp_path / "plain.glb")
    assert "targets" not in doc["meshes"][0]["primitives"][0]
    m = list(trimesh.load(tmp_path / "plain.glb", process=False).geometry.values())[0]
    np.testing.assert_allclose(m.vertices, v * 1e-3, atol=1e-7)


def test_glb_real_model_size(tmp_path, ict_model):
    """The ICT face (tens of thousands of vertices, 53 ARKit targets) writes and reads back."""
    pygltflib = pytest.importorskip("pygltflib")
    m = ict_model
    names = m.expression_names[:8]
    targets = {n: m.exp_basis[k].numpy() for k, n in enumerate(names)}
    write_glb(tmp_path / "ict.glb", m.mean.numpy(), m.triangles.numpy(), targets, uv=m.uv.numpy(),
              uv_triangles=m.uv_triangles.numpy())
    g = pygltflib.GLTF2().load(str(tmp_path / "ict.glb"))
    assert g.meshes[0].extras["targetNames"] == names
    assert g.accessors[g.meshes[0].primitives[0].attributes.POSITION].count >= m.n_vertices


def test_glb_bad_animation(tmp_path, cube):
    v, f, *_ = cube
    with pytest.raises(InputError, match="animation"):
        write_glb(tmp_path / "a.glb", v, f, {"a": np.zeros_like(v)}, animation=np.zeros((4, 2)))
    with pytest.raises(InputError, match="morph target"):
        write_glb(tmp_path / "a.glb", v, f, {"a": np.zeros((3, 3))})
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="file names as raw bytes are a POSIX matter")
def test_obj_with_a_non_utf8_file_name(tmp_path, cube):
    """A photo named in Latin-1 (``caf\\xe9.jpg``) gives an output name Python holds as surrogate escapes: the OBJ's
    mtllib and the MTL's map_Kd name the companion files byte for byte, and all three are written."""
    v, f, uv, ft, tex = cube
    name = os.fsdecode(b"caf\xe9")
    written = write_mesh(tmp_path / f"{name}.obj", v, f, uv=uv, uv_triangles=ft, texture=tex)
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"caf\xe9.mtl", b"caf\xe9.obj", b"caf\xe9.png"]
    assert len(written) == 3
    assert b"mtllib caf\xe9.mtl\n" in (tmp_path / f"{name}.obj").read_bytes()
    assert b"map_Kd caf\xe9.png\n" in (tmp_path / f"{name}.mtl").read_bytes()
    m = read_obj(tmp_path / f"{name}.obj")
    np.testing.assert_allclose(m.vertices, v, atol=1e-6)


def test_obj_failure_part_way_leaves_no_companions(tmp_path, cube, monkeypatch):
    """The OBJ, its material and texture appear together: a failure writing the last leaves none of them."""
    import redafit.io.meshes as meshes

    v, f, uv, ft, tex = cube

    def boom(text):
        if text.startswith("# redafit mesh"):
            raise OSError(28, "No space left on device")
        return text.encode("utf-8", "surrogateescape")

    monkeypatch.setattr(meshes, "_text_bytes", boom)
    with pytest.raises(OutputError, match="No space left"):
        write_mesh(tmp_path / "m.obj", v, f, uv=uv, uv_triangles=ft, texture=tex)
    assert os.listdir(tmp_path) == []


def test_glb_camera_node(tmp_path, cube):
    """A camera given to write_glb becomes a perspective camera on a node of the scene, its translation in the
    mesh's units scaled like the positions; an impossible one is refused before anything is written."""
    v, f, uv, ft, tex = cube
    cam = {"name": "photo", "yfov": 0.6, "aspectRatio": 0.75, "znear": 0.01, "rotation": [0.0, 0.0, 0.0, 1.0],
           "translation": [0.0, 0.0, 500.0], "extras": {"intrinsics_px": {"fx": 800.0}}}
    write_glb(tmp_path / "c.glb", v, f, uv=uv, uv_triangles=ft, texture=tex, camera=cam)
    doc, _ = _glb_parts(tmp_path / "c.glb")
    assert doc["cameras"] == [{"type": "perspective", "name": "photo", "extras": {"intrinsics_px": {"fx": 800.0}},
                               "perspective": {"yfov": 0.6, "aspectRatio": 0.75, "znear": 0.01}}]
    assert doc["nodes"][1] == {"camera": 0, "name": "photo", "rotation": [0.0, 0.0, 0.0, 1.0],
                               "translation": [0.0, 0.0, 0.5]}  # mm -> m
    assert doc["scenes"][0]["nodes"] == [0, 1]
    write_glb(tmp_path / "n.glb", v, f)
    assert "cameras" not in _glb_parts(tmp_path / "n.glb")[0]
    for bad in ({"yfov": 3.5}, {"yfov": float("nan")}, {"znear": 0.0}, {"aspectRatio": -1.0}):
        with pytest.raises(InputError, match="camera"):
            write_glb(tmp_path / "bad.glb", v, f, camera={**cam, **bad})
    assert not (tmp_path / "bad.glb").exists()


def test_glb_node_motion(tmp_path, cube):
    """Rotation and translation keys of the mesh node ride on the weights animation's times: quaternions
    normalised and kept on one hemisphere (q and -q are one rotation; LINEAR slerps the short way between keys),
    translations scaled like the positions; a wrong shape, a zero quaternion or motion without the weights
    animation is refused."""
    v, f, uv, ft, tex = cube
    targets = {"a": np.ones_like(v)}
    anim = np.array([[0.0], [0.5], [1.0]])
    quats = np.array([[0.0, 0.0, 0.0, 2.0], [0.0, -0.1, 0.0, -0.995], [0.0, 0.2, 0.0, 0.98]])
    moves = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    write_glb(tmp_path / "m.glb", v, f, targets, animation=anim, fps=10,
              motion={"rest_translation": [1.0, 2.0, 3.0], "rotation": quats, "translation": moves})
    doc, blob = _glb_parts(tmp_path / "m.glb")
    assert doc["nodes"][0]["translation"] == pytest.approx([1e-3, 2e-3, 3e-3])
    anim_doc = doc["animations"][0]
    assert [c["target"] for c in anim_doc["channels"]] == [{"node": 0, "path": p}
                                                          for p in ("weights", "rotation", "translation")]
    assert len({s["input"] for s in anim_doc["samplers"]}) == 1  # one time axis

    def read(acc_id, cols):
        acc = doc["accessors"][acc_id]
        bv = doc["bufferViews"][acc["bufferView"]]
        return np.frombuffer(blob, np.float32, acc["count"] * cols, bv.get("byteOffset", 0)).reshape(-1, cols)

    q = read(anim_doc["samplers"][1]["output"], 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    assert (np.sum(q[1:] * q[:-1], axis=1) > 0).all() and q[1, 3] > 0  # the second key flipped to -q
    np.testing.assert_allclose(read(anim_doc["samplers"][2]["output"], 3), moves * 1e-3, atol=1e-7)
    for bad, says in (({"rotation": quats[:2]}, "rotation must be"), ({"translation": moves[:, :2]}, "translation"),
                      ({"rotation": np.zeros((3, 4))}, "zero"), ({"rotation": quats * np.nan}, "rotation must be")):
        with pytest.raises(InputError, match=says):
            write_glb(tmp_path / "bad.glb", v, f, targets, animation=anim, motion=bad)
    with pytest.raises(InputError, match="needs the weights animation"):
        write_glb(tmp_path / "bad.glb", v, f, targets, motion={"rotation": quats})
    assert not (tmp_path / "bad.glb").exists()
