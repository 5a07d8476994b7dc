"""Mesh output (and a minimal OBJ reader), every file written atomically.

:func:`write_mesh` dispatches on the extension:

* ``.obj`` — Wavefront OBJ with ``v`` (and optional per-vertex colours as ``v x y z r g b``), ``vt``, smooth
  vertex normals ``vn`` (one per vertex, :func:`vertex_normals`) and ``f v/vt/vn`` (1-based), plus ``<stem>.mtl``
  and the texture ``<stem>.png`` when a texture is given. The texture and material are written first and the OBJ
  last, so an OBJ on disk always has its companions. Meshes that share one texture (a rig's per-image meshes,
  an animation's frames) refer to one material file instead (:func:`shared_texture`). OBJ's ``mtllib`` and
  MTL's ``map_Kd`` are lists of whitespace-separated names, so a stem with spaces gets companions named with
  underscores (``my face.obj`` -> ``my_face.mtl``, ``my_face.png``) that every reader takes whole.
* ``.ply`` — binary little-endian PLY: float32 x y z and normals nx ny nz, optional uchar red green blue, int32
  triangle lists and, with UVs, MeshLab-style per-face ``texcoord`` lists (``comment TextureFile <stem>.png`` when
  textured).
* ``.npz`` — the raw arrays (``vertices``, ``triangles`` and whatever optional arrays were given).
* ``.glb`` — :func:`write_glb` without morph targets.

Shapes: V vertices, F triangles, T UV coordinates (v up, OBJ convention), Ht Wt texture size.
Geometry is written as given (redafit's meshes are millimetres); only glTF converts units (metres by spec).
A mesh's ``frame`` (:data:`FRAMES`), when the writer is told it, is recorded with it - an OBJ comment line
``# frame: camera``, a PLY ``comment frame camera``, an npz ``frame`` array - so that a viewer draws it the right
way up (:func:`read_frame`); glTF is y up by spec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from redafit.errors import InputError, OutputError
from redafit.io.atomic import atomic_group, atomic_path, atomic_write
from redafit.io import jsonsafe

__all__ = ["write_mesh", "shared_texture", "shared_texture_files", "mesh_files", "spaceless", "write_obj",
           "write_material", "write_ply", "write_npz", "write_glb", "read_obj", "ObjMesh", "split_uv_seams",
           "vertex_normals"]

# the companion files a format writes beside the mesh (with a texture): suffix -> what it is
_COMPANIONS = {".obj": {".png": "texture", ".mtl": "material file"}, ".ply": {".png": "texture"}}


def spaceless(name: str) -> str:
    """``name`` with every whitespace character made ``_``: the name an OBJ's ``mtllib`` or an MTL's ``map_Kd``
    can give (both are lists of whitespace-separated names)."""
    return "".join("_" if c.isspace() else c for c in name)


def mesh_files(path) -> dict[Path, str]:
    """Every file :func:`write_mesh` may write for ``path``, with what it is: the companions first (texture,
    material; written when a texture is given), then ``"mesh"``."""
    path = Path(path)
    suffix = path.suffix.lower()
    stem = spaceless(path.stem) if suffix == ".obj" else path.stem  # the names an OBJ and its MTL give
    files = {path.with_name(stem + ext): what for ext, what in _COMPANIONS.get(suffix, {}).items()}
    files[path] = "mesh"
    return files


def _companion(path, what: str) -> Path:
    """The file of :func:`mesh_files` that is ``what`` ("texture", "material file") for ``path``."""
    return next(f for f, role in mesh_files(path).items() if role == what)


# -- validation -------------------------------------------------------------------------------------------------
def _arr(name, a, dtype, cols, rows=None):
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != cols or (rows is not None and a.shape[0] != rows):
        want = f"[{rows if rows is not None else '*'}, {cols}]"
        raise InputError(f"{name}: expected shape {want}, got {list(a.shape)}")
    a = a.astype(dtype)
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise InputError(f"{name}: contains NaN or infinite values")
    return a


def _check(vertices, triangles, uv, uv_triangles, vertex_colors):
    v = _arr("vertices", vertices, np.float64, 3)
    f = _arr("triangles", triangles, np.int64, 3)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"triangles: index outside 0..{len(v) - 1}")
    t = ft = None
    if uv is not None:
        t = _arr("uv", uv, np.float64, 2)
        ft = f if uv_triangles is None else _arr("uv_triangles", uv_triangles, np.int64, 3, rows=len(f))
        if ft.size and (ft.min() < 0 or ft.max() >= len(t)):
            raise InputError(f"uv_triangles: index outside 0..{len(t) - 1}")
    c = None
    if vertex_colors is not None:
        c = _arr("vertex_colors", vertex_colors, np.float64, 3, rows=len(v))
    return v, f, t, ft, c


def _texture_u8(texture) -> np.ndarray:
    tex = np.asarray(texture)
    if tex.ndim != 3 or tex.shape[2] not in (3, 4):
        raise InputError(f"texture: expected shape [Ht, Wt, 3], got {list(tex.shape)}")
    if tex.dtype != np.uint8:
        tex = (np.clip(np.nan_to_num(tex.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    return tex[:, :, :3]


def _png_bytes(texture) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(_texture_u8(texture)[:, :, ::-1]))
    if not ok:
        raise OutputError("cannot encode the texture as PNG")
    return buf.tobytes()


# -- OBJ --------------------------------------------------------------------------------------------------------
def _text_bytes(text: str) -> bytes:
    """UTF-8, with a file name that is not valid UTF-8 (read by Python as surrogate escapes) kept byte for byte, so
    that the OBJ's ``mtllib`` and the MTL's ``map_Kd`` name the files as they are on disk."""
    return text.encode("utf-8", "surrogateescape")


def write_material(path, texture_name: str, material_name: str = "face") -> list[Path]:
    """Write the MTL file ``path``: one material ``material_name`` whose colour is the texture ``texture_name``
    (a name relative to ``path``'s folder, without white space). Returns [path]."""
    path = Path(path)
    _check_reference("texture", texture_name)
    with atomic_write(path) as fh:
        fh.write(_text_bytes(f"# redafit\nnewmtl {material_name}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\n"
                             f"illum 1\nmap_Kd {texture_name}\n"))
    return [path]


def _check_reference(what: str, name: str) -> None:
    """A name an OBJ's ``mtllib``, an MTL's ``map_Kd`` or a PLY's ``TextureFile`` comment can carry."""
    if not name or spaceless(name) != name:
        raise InputError(f"{what} reference {name!r}: expected a file name without white space")


FRAMES = {
    "camera": "x right, y down, looking along +z from the camera at the origin",  # a fit's camera, a photo's pixels
    "head": "x to the face's left, y up, the face towards +z",  # the face model's own
}


def _check_frame(frame: str | None) -> None:
    if frame is not None and frame not in FRAMES:
        raise ValueError(f"frame must be one of {tuple(FRAMES)} or None, not {frame!r}")


def read_frame(path) -> str | None:
    """The frame (:data:`FRAMES`) a mesh file written by redafit records (an OBJ's ``# frame:`` comment, a PLY's
    ``comment frame``, an npz's ``frame`` array); None when it records none (another program's file, an older
    redafit's) or cannot be read."""
    path = Path(path)
    ext = path.suffix.lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                frame = str(z["frame"]) if "frame" in z.files else None
        else:
            with open(path, "rb") as fh:
                head = fh.read(4096)
            lines = head.split(b"end_header")[0].decode("utf-8", "replace").splitlines()
            key = "# frame:" if ext == ".obj" else "comment frame "
            frame = next((ln[len(key):].split()[0] for ln in lines if ln.startswith(key) and ln[len(key):].split()),
                         None)
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return frame if frame in FRAMES else None


@atomic_group()  # the mesh, its material and texture together or not at all
def write_obj(path, vertices, triangles, uv=None, uv_triangles=None, texture=None, vertex_colors=None,
              material_name: str = "face", material: str | None = None, frame: str | None = None) -> list[Path]:
    """Write ``path`` (.obj) and, with a texture, ``<stem>.mtl`` and ``<stem>.png`` (spaces in the stem made
    underscores: :func:`mesh_files`). ``material`` instead names an MTL file written elsewhere
    (:func:`write_material`, relative to ``path``'s folder) that the OBJ uses: meshes that share one texture
    (a rig's, an animation's frames) refer to it rather than each carry a copy. ``frame`` (:data:`FRAMES`) is
    recorded in a comment. Returns the paths written."""
    path = Path(path)
    _check_frame(frame)
    v, f, t, ft, c = _check(vertices, triangles, uv, uv_triangles, vertex_colors)
    if material is not None and texture is not None:
        raise InputError("write_obj: give a texture or the name of a material file, not both")
    written = []
    mtl = None
    if texture is not None:
        png, mtl = _companion(path, "texture"), _companion(path, "material file")
        data = _png_bytes(texture)
        with atomic_write(png) as fh:
            fh.write(data)
        written += [png] + write_material(mtl, png.name, material_name)
    lines = ["# redafit mesh", f"# {len(v)} vertices, {len(f)} triangles"]
    if frame is not None:
        lines.append(f"# frame: {frame} ({FRAMES[frame]}; millimetres)")
    if material is not None:
        _check_reference("material", material)
        lines.append(f"mtllib {material}")
    elif mtl is not None:
        lines.append(f"mtllib {mtl.name}")
    if c is not None:
        lines += [f"v {a:.6f} {b:.6f} {z:.6f} {r:.4f} {g:.4f} {bb:.4f}"
                  for (a, b, z), (r, g, bb) in zip(v, c, strict=True)]
    else:
        lines += [f"v {a:.6f} {b:.6f} {z:.6f}" for a, b, z in v]
    if t is not None:
        lines += [f"vt {a:.6f} {b:.6f}" for a, b in t]
    # smooth shading in any viewer (one without normals shades every triangle flat): vertex i's normal is vn i
    lines += [f"vn {a:.5f} {b:.5f} {z:.5f}" for a, b, z in vertex_normals(v, f)]
    if mtl is not None or material is not None:
        lines.append(f"usemtl {material_name}")
    f1 = f + 1
    if t is not None:
        ft1 = ft + 1
        lines += [f"f {a}/{ta}/{a} {b}/{tb}/{b} {cc}/{tc}/{cc}"
                  for (a, b, cc), (ta, tb, tc) in zip(f1, ft1, strict=True)]
    else:
        lines += [f"f {a}//{a} {b}//{b} {cc}//{cc}" for a, b, cc in f1]
    with atomic_write(path) as fh:
        fh.write(_text_bytes("\n".join(lines) + "\n"))
    return written + [path]


@dataclass
class ObjMesh:
    """What :func:`read_obj` returns (0-based indices; ``uv``/``uv_triangles`` are None without ``vt``)."""

    vertices: np.ndarray            # [V, 3]
    triangles: np.ndarray           # [F, 3]
    uv: np.ndarray | None = None    # [T, 2]
    uv_triangles: np.ndarray | None = None  # [F, 3]
    vertex_colors: np.ndarray | None = None  # [V, 3]
    mtllib: str | None = None


def read_obj(path) -> ObjMesh:
    """Minimal OBJ reader: ``v`` (optionally with colours), ``vt``, ``f`` with ``v``, ``v/vt``, ``v/vt/vn`` or
    ``v//vn`` corners, negative (relative) indices, polygons fan-triangulated. Other statements are ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read mesh {path}: {exc.strerror or exc}") from exc
    vs, cs, ts, faces, tfaces = [], [], [], [], []
    mtllib = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        parts = raw.split("#", 1)[0].split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key == "v":
                vs.append([float(x) for x in parts[1:4]])
                if len(parts) >= 7:
                    cs.append([float(x) for x in parts[4:7]])
            elif key == "vt":
                ts.append([float(x) for x in parts[1:3]])
            elif key == "f":
                corners = [p.split("/") for p in parts[1:]]
                if len(corners) < 3:
                    raise ValueError("a face needs 3 corners")
                vi = [_obj_index(c[0], len(vs)) for c in corners]
                ti = [_obj_index(c[1], len(ts)) if len(c) > 1 and c[1] else -1 for c in corners]
                for k in range(1, len(corners) - 1):
                    faces.append([vi[0], vi[k], vi[k + 1]])
                    tfaces.append([ti[0], ti[k], ti[k + 1]])
            elif key == "mtllib" and len(parts) > 1:
                mtllib = raw.split(None, 1)[1].strip()
        except (ValueError, IndexError) as exc:
            raise InputError(f"{path}:{lineno}: malformed OBJ line {raw.strip()[:60]!r} ({exc})") from exc
    v = np.asarray(vs, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"{path}: face index outside 1..{len(v)}")
    tf = np.asarray(tfaces, dtype=np.int64).reshape(-1, 3)
    has_uv = bool(ts) and tf.size > 0 and tf.min() >= 0
    return ObjMesh(
        vertices=v, triangles=f,
        uv=np.asarray(ts, dtype=np.float64).reshape(-1, 2) if has_uv else None,
        uv_triangles=tf if has_uv else None,
        vertex_colors=np.asarray(cs, dtype=np.float64) if len(cs) == len(vs) and cs else None,
        mtllib=mtllib,
    )


def _obj_index(token: str, count: int) -> int:
    k = int(token)
    return k - 1 if k > 0 else count + k


# -- PLY --------------------------------------------------------------------------------------------------------
@atomic_group()  # the mesh and its texture together
def write_ply(path, vertices, triangles, uv=None, uv_triangles=None, texture=None, vertex_colors=None,
              texture_file: str | None = None, frame: str | None = None) -> list[Path]:
    """Binary little-endian PLY (see module docstring). ``texture_file`` instead of ``texture`` names a texture
    written elsewhere (relative to ``path``'s folder) for the ``TextureFile`` comment. ``frame`` (:data:`FRAMES`)
    is recorded in a comment. Returns the paths written."""
    path = Path(path)
    _check_frame(frame)
    v, f, t, ft, c = _check(vertices, triangles, uv, uv_triangles, vertex_colors)
    if texture_file is not None and texture is not None:
        raise InputError("write_ply: give a texture or the name of a texture file, not both")
    written = []
    header = ["ply", "format binary_little_endian 1.0", "comment redafit mesh"]
    if frame is not None:
        header.append(f"comment frame {frame}")
    if texture_file is not None and t is not None:
        _check_reference("texture", texture_file)
        header.append(f"comment TextureFile {texture_file}")
    if texture is not None and t is not None:
        png = _companion(path, "texture")
        with atomic_write(png) as fh:
            fh.write(_png_bytes(texture))
        written.append(png)
        header.append(f"comment TextureFile {png.name}")
    header += [f"element vertex {len(v)}", "property float x", "property float y", "property float z",
               "property float nx", "property float ny", "property float nz"]
    vdt = [("xyz", "<f4", 3), ("n", "<f4", 3)]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        vdt.append(("rgb", "u1", 3))
    header += [f"element face {len(f)}", "property list uchar int vertex_indices"]
    fdt = [("n", "u1"), ("idx", "<i4", 3)]
    if t is not None:
        header.append("property list uchar float texcoord")
        fdt += [("m", "u1"), ("tc", "<f4", 6)]
    header.append("end_header")
    vert = np.zeros(len(v), dtype=vdt)
    vert["xyz"] = v
    vert["n"] = vertex_normals(v, f)  # smooth shading (see write_obj)
    if c is not None:
        vert["rgb"] = (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)
    face = np.zeros(len(f), dtype=fdt)
    face["n"] = 3
    face["idx"] = f
    if t is not None:
        face["m"] = 6
        face["tc"] = t[ft].reshape(len(f), 6)
    with atomic_write(path) as fh:
        fh.write(_text_bytes("\n".join(header) + "\n"))  # the texture's file name may be any bytes
        fh.write(vert.tobytes())
        fh.write(face.tobytes())
    return written + [path]


# -- NPZ --------------------------------------------------------------------------------------------------------
def write_npz(path, vertices, triangles, uv=None, uv_triangles=None, texture=None, vertex_colors=None,
              frame: str | None = None, **extra) -> list[Path]:
    """All arrays in one ``.npz`` (float32 geometry, int32 indices, texture as given; ``frame``
    (:data:`FRAMES`) as a string array). Returns [path]."""
    path = Path(path)
    _check_frame(frame)
    v, f, t, ft, c = _check(vertices, triangles, uv, uv_triangles, vertex_colors)
    arrays = {"vertices": v.astype(np.float32), "triangles": f.astype(np.int32)}
    if frame is not None:
        arrays["frame"] = np.array(frame)
    if t is not None:
        arrays["uv"] = t.astype(np.float32)
        arrays["uv_triangles"] = ft.astype(np.int32)
    if texture is not None:
        arrays["texture"] = np.asarray(texture)
    if c is not None:
        arrays["vertex_colors"] = c.astype(np.float32)
    arrays.update({k: np.asarray(a) for k, a in extra.items()})
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return [path]


# -- glTF binary ------------------------------------------------------------------------------------------------
def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (counter-clockwise triangles face outwards)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(triangles, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(norm > 0, n / np.maximum(norm, 1e-30), np.array([0.0, 0.0, 1.0]))
    return n


def split_uv_seams(triangles: np.ndarray, uv_triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One output vertex per distinct (vertex, uv) corner pair, as glTF needs a single index per vertex.

    Returns (vertex_ids [N], uv_ids [N], new_triangles [F, 3]): output vertex n copies vertex ``vertex_ids[n]``
    and UV ``uv_ids[n]``. Vertices on no seam keep one copy; the order follows first use.
    """
    pairs = np.stack([np.asarray(triangles).reshape(-1), np.asarray(uv_triangles).reshape(-1)], axis=1)
    uniq, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # renumber by first use for locality
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    uniq = uniq[order]
    new_tris = rank[inverse.reshape(-1)].reshape(-1, 3)
    return uniq[:, 0], uniq[:, 1], new_tris


class _GlbBuilder:
    def __init__(self):
        self.bin = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        v = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.bin += data
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, a: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        comp = {np.dtype("float32"): 5126, np.dtype("uint32"): 5125, np.dtype("uint16"): 5123}[a.dtype]
        acc = {"bufferView": self.view(np.ascontiguousarray(a).tobytes(), target), "componentType": comp,
               "count": int(a.shape[0]), "type": kind}
        if minmax:
            flat = a.reshape(a.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(axis=0)]
            acc["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


_VEC = {3: "VEC3", 4: "VEC4"}


def write_glb(path, neutral, triangles, morph_targets: dict | None = None, uv=None, uv_triangles=None,
              texture=None, animation=None, fps: float = 30.0, vertex_colors=None, unit_scale: float = 1e-3,
              name: str = "face", extras: dict | None = None, times=None, camera: dict | list | None = None,
              motion: dict | None = None, unlit: bool = False) -> list[Path]:
    """Binary glTF 2.0 (``.glb``) of one mesh with morph targets, an embedded PNG texture and an optional
    weights animation.

    neutral [V, 3] (model frame: y up, face towards +z, millimetres), triangles [F, 3],
    morph_targets {name: [V, 3] position deltas} (names kept in order in ``mesh.extras.targetNames``),
    uv [T, 2] + uv_triangles [F, 3] (v up; flipped to glTF's v down), texture [Ht, Wt, 3] float in [0, 1] or uint8,
    animation [Tf, M] morph weights per frame played at ``fps``, or at ``times`` [Tf] (seconds, increasing: frames
    that are not evenly spaced, e.g. a track with failed frames), vertex_colors [V, 3] in [0, 1].
    ``unit_scale`` multiplies positions and deltas (default 1e-3: millimetres -> metres, glTF's unit).
    ``motion``: the mesh node's ``rest_translation`` [3] and ``rest_rotation`` [4] (where a viewer that does not
    play the animation shows it) and its animated ``rotation`` [Tf, 4] (unit quaternions
    x, y, z, w) and/or ``translation`` [Tf, 3] per frame of ``animation``, keyed at the same times (translations in
    the mesh's units, scaled by ``unit_scale``; glTF rotates a node about its origin, so a head turning about its
    centre is written with the vertices relative to that centre and the centre as the translation).
    ``unlit``: the material is marked ``KHR_materials_unlit`` (its colours already hold the lighting, as a photo's
    do: a viewer that knows the extension shows them as they are instead of lighting them again; one that does not
    falls back to the PBR material).
    ``camera``: a perspective camera added to the scene, or a list of them (a viewer's "view through camera"):
    ``yfov`` (radians),
    ``aspectRatio``, ``znear`` (metres), optional ``name``, ``rotation`` (quaternion x, y, z, w) and
    ``translation`` (in the mesh's units, scaled by ``unit_scale``) of its node, and ``extras``; glTF cameras look
    down their -z axis with y up.

    Vertices on UV seams are split (one glTF vertex per distinct vertex/UV pair); normals are computed on the
    unsplit mesh so seams stay smooth.
    """
    path = Path(path)
    v, f, t, ft, c = _check(neutral, triangles, uv, uv_triangles, vertex_colors)
    morph_targets = dict(morph_targets or {})
    names = [str(k) for k in morph_targets]
    deltas = [_arr(f"morph target {k!r}", d, np.float64, 3, rows=len(v)) for k, d in morph_targets.items()]
    if t is not None:
        vid, tid, tris = split_uv_seams(f, ft)
    else:
        vid, tid, tris = np.arange(len(v)), None, f
    normals = vertex_normals(v, f)[vid].astype(np.float32)

    b = _GlbBuilder()
    ARRAY, ELEMENTS = 34962, 34963
    attrs = {"POSITION": b.accessor((v[vid] * unit_scale).astype(np.float32), "VEC3", ARRAY, minmax=True),
             "NORMAL": b.accessor(normals, "VEC3", ARRAY)}
    if t is not None:
        st = t[tid].astype(np.float32).copy()
        st[:, 1] = 1.0 - st[:, 1]
        attrs["TEXCOORD_0"] = b.accessor(st, "VEC2", ARRAY)
    if c is not None:
        attrs["COLOR_0"] = b.accessor(np.clip(c[vid], 0, 1).astype(np.float32), "VEC3", ARRAY)
    idx_dtype = np.uint16 if len(vid) < 65535 else np.uint32
    indices = b.accessor(tris.reshape(-1).astype(idx_dtype), "SCALAR", ELEMENTS)
    targets = [{"POSITION": b.accessor((d[vid] * unit_scale).astype(np.float32), "VEC3", ARRAY, minmax=True)}
               for d in deltas]

    prim = {"attributes": attrs, "indices": indices, "mode": 4}
    if targets:
        prim["targets"] = targets
    material = {"name": f"{name}_material", "doubleSided": False,
                "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0}}
    gltf: dict = {"asset": {"version": "2.0", "generator": "redafit"}, "scene": 0,
                  "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": name}]}
    if texture is not None and t is not None:
        img_view = b.view(_png_bytes(texture))
        gltf["images"] = [{"bufferView": img_view, "mimeType": "image/png", "name": f"{name}_texture"}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0, "texCoord": 0}
    if unlit:
        material["extensions"] = {"KHR_materials_unlit": {}}
        gltf["extensionsUsed"] = ["KHR_materials_unlit"]
    gltf["materials"] = [material]
    prim["material"] = 0
    mesh = {"name": name, "primitives": [prim]}
    if targets:
        mesh["weights"] = [0.0] * len(targets)
        mesh["extras"] = {"targetNames": names}
    gltf["meshes"] = [mesh]

    if animation is not None:
        w = np.asarray(animation, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != len(targets) or len(targets) == 0 or w.shape[0] == 0:
            raise InputError(f"animation: expected shape [frames, {len(targets)}], got {list(w.shape)}")
        if not np.all(np.isfinite(w)) or fps <= 0:
            raise InputError("animation: weights must be finite and fps positive")
        if times is None:
            times = np.arange(w.shape[0]) / float(fps)
        times = np.asarray(times, np.float64)
        if times.shape != (w.shape[0],) or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0) \
                or (len(times) and times[0] < 0):
            raise InputError(f"animation: times must be {w.shape[0]} increasing seconds >= 0")
        times = times.astype(np.float32)
        t_acc = b.accessor(times, "SCALAR", minmax=True)
        w_acc = b.accessor(w.astype(np.float32).reshape(-1), "SCALAR")
        samplers = [{"input": t_acc, "output": w_acc, "interpolation": "LINEAR"}]
        channels = [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]
        for path_, cols, scale in (("rotation", 4, 1.0), ("translation", 3, unit_scale)):
            keys = (motion or {}).get(path_)
            if keys is None:
                continue
            keys = np.asarray(keys, np.float64)
            if keys.shape != (w.shape[0], cols) or not np.isfinite(keys).all():
                raise InputError(f"animation: {path_} must be [{w.shape[0]}, {cols}] finite numbers, "
                                 f"got {list(keys.shape)}")
            if path_ == "rotation":
                norm = np.linalg.norm(keys, axis=1, keepdims=True)
                if (norm < 1e-6).any():
                    raise InputError("animation: a rotation quaternion is zero")
                keys = keys / norm
                for k in range(1, len(keys)):  # the shorter way round between keys (q and -q are one rotation)
                    if keys[k] @ keys[k - 1] < 0:
                        keys[k] = -keys[k]
            samplers.append({"input": t_acc, "output": b.accessor((keys * scale).astype(np.float32), _VEC[cols]),
                             "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": 0, "path": path_}})
        gltf["animations"] = [{"name": f"{name}_animation", "samplers": samplers, "channels": channels}]
    elif motion and any(motion.get(k) is not None for k in ("rotation", "translation")):
        raise InputError("animation: head motion needs the weights animation it is keyed with")
    if motion and motion.get("rest_translation") is not None:
        gltf["nodes"][0]["translation"] = [float(x) * unit_scale for x in motion["rest_translation"]]
    if motion and motion.get("rest_rotation") is not None:
        q = np.asarray(motion["rest_rotation"], np.float64)
        if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
            raise InputError(f"rest_rotation must be a non-zero quaternion (x, y, z, w), got {q.tolist()}")
        gltf["nodes"][0]["rotation"] = (q / np.linalg.norm(q)).tolist()
    for cam_in in ([camera] if isinstance(camera, dict) else list(camera or [])):
        persp = {k: float(cam_in[k]) for k in ("yfov", "aspectRatio", "znear")}
        if not all(np.isfinite(v) and v > 0 for v in persp.values()) or persp["yfov"] >= np.pi:
            raise InputError(f"camera: yfov in (0, pi), aspectRatio and znear must be positive, got {persp}")
        cam_name = str(cam_in.get("name", "camera"))
        cam = {"type": "perspective", "name": cam_name, "perspective": persp}
        if cam_in.get("extras"):
            cam["extras"] = cam_in["extras"]
        gltf.setdefault("cameras", []).append(cam)
        node = {"camera": len(gltf["cameras"]) - 1, "name": cam_name}
        if cam_in.get("rotation") is not None:
            node["rotation"] = [float(x) for x in cam_in["rotation"]]
        if cam_in.get("translation") is not None:
            node["translation"] = [float(x) * unit_scale for x in cam_in["translation"]]
        gltf["nodes"].append(node)
        gltf["scenes"][0]["nodes"].append(len(gltf["nodes"]) - 1)
    if extras:
        gltf["asset"]["extras"] = extras

    while len(b.bin) % 4:
        b.bin.append(0)
    gltf["buffers"] = [{"byteLength": len(b.bin)}]
    gltf["bufferViews"] = b.views
    gltf["accessors"] = b.accessors
    js = jsonsafe.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(b.bin)
    with atomic_write(path) as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, total))
        fh.write(struct.pack("<I4s", len(js), b"JSON"))
        fh.write(js)
        fh.write(struct.pack("<I4s", len(b.bin), b"BIN\x00"))
        fh.write(bytes(b.bin))
    return [path]


# -- dispatch ---------------------------------------------------------------------------------------------------
_WRITERS = {".obj": write_obj, ".ply": write_ply, ".npz": write_npz, ".glb": write_glb}


def write_mesh(path, vertices, triangles, uv=None, uv_triangles=None, texture=None, vertex_colors=None,
               frame: str | None = None, **shared) -> list[Path]:
    """Write a mesh; the format comes from the extension (.obj, .ply, .npz, .glb). Returns the paths written.

    vertices [V, 3], triangles [F, 3] (0-based, counter-clockwise), uv [T, 2] (v up) with uv_triangles [F, 3]
    (defaults to ``triangles`` when uv has one entry per vertex), texture [Ht, Wt, 3] float in [0, 1],
    vertex_colors [V, 3] in [0, 1]. ``shared``: what :func:`shared_texture` returns for this format, so that the
    mesh refers to a texture written once for many meshes. ``frame`` (:data:`FRAMES`): the vertices' frame,
    recorded in the file (a glTF's is y up by spec: converting is the caller's).
    """
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise OutputError(f"cannot write mesh {path}: unsupported extension {path.suffix or '(none)'} "
                          f"(use .obj, .ply, .npz or .glb)")
    _check_frame(frame)
    if path.suffix.lower() != ".glb":
        shared["frame"] = frame
    return writer(path, vertices, triangles, uv=uv, uv_triangles=uv_triangles, texture=texture,
                  vertex_colors=vertex_colors, **shared)


def shared_texture(folder, ext: str, texture: str, name: str) -> tuple[list[Path], dict]:
    """Make the meshes of format ``ext`` written into ``folder`` refer to one texture file, ``texture`` (a PNG
    written by the caller; its name relative to ``folder``, e.g. ``../neutral.png``), instead of each carrying
    a copy: an OBJ needs a material file, written here as ``<name>.mtl``; a PLY names the PNG itself; the other
    formats embed their texture or none. Returns (the files written, the keywords for :func:`write_mesh`)."""
    ext = ext.lower()
    if ext == ".obj":
        mtl = shared_texture_files(folder, ext, name)[0]
        return write_material(mtl, texture), {"material": mtl.name}
    if ext == ".ply":
        _check_reference("texture", texture)
        return [], {"texture_file": texture}
    return [], {}


def shared_texture_files(folder, ext: str, name: str) -> list[Path]:
    """The files :func:`shared_texture` writes for meshes of format ``ext`` in ``folder``: ``<name>.mtl`` for OBJ,
    none for the others."""
    return [Path(folder) / f"{name}.mtl"] if ext.lower() == ".obj" else []
