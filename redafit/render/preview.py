"""Views of a mesh file from several angles, as one image (``redafit view``): what a 3D viewer would show, for a
look at a fit's shape and texture without one - in a batch's report, on a machine without a display.

:func:`read_view_mesh` reads what redafit writes (and other meshes of those formats): an OBJ with its MTL's
texture (``map_Kd``) or per-vertex colours, a PLY with vertex colours or texture coordinates and its
``TextureFile``, a binary glTF (``.glb``) with its embedded texture, an ``.npz`` of the mesh's arrays.
:func:`render_views` draws it with the torch rasterizer: one row of the colours as stored (a texture carries the
photo's light already: no shading is added; ``lit`` shades them as the grey row is, for colours that hold no light,
such as ``fit --texture albedo``'s) and one of grey Lambert shading, which shows the shape alone; back faces (an
open mesh's inside) darker.

Frames (``frame``): ``"camera"`` - OpenCV camera axes (x right, y down, z forward), how ``redafit fit`` writes a
mesh by default, seen from where the photo was taken; ``"head"`` - y up, the face towards +z (``fit --frame head``,
a rig's meshes, most meshes made elsewhere), seen from the front. ``"auto"`` takes a mesh lying in front of the
origin, farther than twice its own depth, for a camera-frame one. A ``.glb`` is y-up whatever it holds (glTF's
axes). Yaw turns the mesh about the vertical axis through its centre: positive yaw brings its right side (the
viewer's left at yaw 0) into view; positive pitch shows it from above.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from redafit.errors import InputError

log = logging.getLogger("redafit")

VIEW_FRAMES = ("auto", "camera", "head")
BACKGROUND = 0.15  # grey of the empty pixels
SUPERSAMPLE = 2  # each view rasterized this many times larger, then averaged down: smooth outlines
BACK_DIM = 0.45  # back faces (an open mesh's inside) drawn this much darker
_LIGHT = np.array([-0.4, -0.5, -0.77])  # from the viewer's upper left (camera axes: y down, z away from the viewer)


@dataclass
class ViewMesh:
    """A mesh to view: millimetres or any unit (the views fit it to the frame)."""

    vertices: np.ndarray  # [V, 3]
    triangles: np.ndarray  # [F, 3]
    uv: np.ndarray | None = None  # [T, 2], v up
    uv_triangles: np.ndarray | None = None  # [F, 3]
    texture: np.ndarray | None = None  # [Ht, Wt, 3] float RGB in [0, 1]
    colors: np.ndarray | None = None  # [V, 3] in [0, 1]
    y_up: bool | None = None  # the file says so (glTF; the frame redafit records in its own); None: the caller decides
    files: tuple = ()  # the files read: the mesh's, its material's and texture's


def read_view_mesh(path, textures: dict | None = None) -> ViewMesh:
    """The mesh file ``path`` (.obj, .ply, .glb, .npz) with its colours: an :class:`InputError` naming it when it
    is missing, unreadable or has no triangles. A texture it names but that cannot be read is left out with a
    warning (the mesh is still drawn, grey). ``textures``: a cache of the texture files read, shared by the calls
    given it (an animation's frames all wear one texture)."""
    from redafit.io.inputs import check_input_file

    path = Path(path)
    check_input_file(path, "mesh")
    ext = path.suffix.lower()
    reader = _READERS.get(ext)
    if reader is None:
        raise InputError(f"mesh {path}: unsupported extension {path.suffix or '(none)'} (use .obj, .ply, .glb or "
                         ".npz)")
    mesh = reader(path, {} if textures is None else textures)
    if mesh.y_up is None:  # the frame redafit recorded in its own mesh files
        from redafit.io.meshes import read_frame

        frame = read_frame(path)
        mesh.y_up = None if frame is None else frame == "head"
    if not len(mesh.triangles):
        raise InputError(f"mesh {path}: no triangles in it")
    if not np.isfinite(mesh.vertices).all():
        raise InputError(f"mesh {path}: its vertices are not all finite numbers")
    return mesh


def _texture_file(path: Path, name: str | None, textures: dict) -> tuple[np.ndarray | None, tuple]:
    """(the texture image ``name``, relative to ``path``'s folder; its path): None with a warning when it cannot
    be read. ``textures`` caches them by resolved path."""
    if not name:
        return None, ()
    from redafit.errors import RedafitError
    from redafit.io.images import load_image

    tex_path = path.parent / name
    key = tex_path.resolve()
    if key not in textures:
        try:
            textures[key] = load_image(tex_path, max_side=None)[0]
        except RedafitError as e:
            log.warning("%s: its texture is left out: %s", path, e)
            textures[key] = None
    return textures[key], (() if textures[key] is None else (tex_path,))


def _read_obj(path: Path, textures: dict) -> ViewMesh:
    from redafit.io.meshes import read_obj

    m = read_obj(path)
    tex, files = None, (path,)
    if m.mtllib and m.uv is not None:
        mtl = path.parent / m.mtllib
        try:
            lines = mtl.read_text(encoding="utf-8", errors="replace").splitlines() if mtl.is_file() else None
        except OSError:
            lines = None
        if lines is None:
            log.warning("%s: its material file %s cannot be read; drawn without its texture", path, mtl)
        else:
            name = next((ln.split(None, 1)[1].strip() for ln in lines if ln.split()[:1] == ["map_Kd"]
                         and len(ln.split()) > 1), None)
            tex, read = _texture_file(mtl, name, textures)
            files += (mtl,) + read
    return ViewMesh(m.vertices, m.triangles, m.uv if tex is not None else None,
                    m.uv_triangles if tex is not None else None, tex, m.vertex_colors, files=files)


def _read_npz(path: Path, textures: dict) -> ViewMesh:
    """A mesh's arrays (``redafit fit -o face.npz``, :func:`redafit.io.meshes.write_npz`): ``vertices`` and
    ``triangles``, with ``vertex_colors`` or ``texture`` + ``uv`` + ``uv_triangles`` when it has them."""
    from redafit.io.arrays import read_npz, shape_problem

    arrays = read_npz(path, "a mesh's arrays, as `redafit fit -o face.npz` writes them")

    for key, shape in (("vertices", (None, 3)), ("triangles", (None, 3))):
        if key not in arrays:
            raise InputError(f"mesh {path}: no '{key}' array in it")
        problem = shape_problem(arrays[key].shape, shape)
        if problem or not np.issubdtype(arrays[key].dtype, np.number):
            raise InputError(f"mesh {path}: '{key}': {problem or 'expected numbers'}")
    v, f = arrays["vertices"].astype(np.float64), arrays["triangles"].astype(np.int64)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"mesh {path}: a triangle index outside 0..{len(v) - 1}")
    tex = arrays.get("texture")
    uv, uvt = arrays.get("uv"), arrays.get("uv_triangles")
    textured = tex is not None and tex.ndim == 3 and uv is not None and uvt is not None and uvt.shape == f.shape
    colors = arrays.get("vertex_colors")
    if textured and tex.dtype == np.uint8:
        tex = tex / 255.0
    return ViewMesh(v, f, uv if textured else None, uvt if textured else None,
                    tex[..., :3].astype(np.float32) if textured else None,
                    colors[:, :3] if colors is not None and colors.shape[:1] == v.shape[:1] else None, files=(path,))


def _read_trimesh(path: Path, textures: dict) -> ViewMesh:
    """A PLY or glTF through trimesh's parsers, geometry and colours only: trimesh loads a texture with Pillow,
    which redafit does not need, so the texture is read here (:func:`_ply_texture`, :func:`_glb_texture`)."""
    import logging

    ext = path.suffix.lower()
    quiet = logging.getLogger("trimesh")  # it logs a traceback when it cannot open a PLY's TextureFile itself
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with open(path, "rb") as fh:
            if ext == ".ply":
                from trimesh.exchange.ply import load_ply

                kw = load_ply(fh)
            else:
                import trimesh

                kw = _glb_kwargs(trimesh.load(fh, file_type="glb", process=False, force="mesh"))
    except Exception as e:  # noqa: BLE001 - trimesh's parsers raise anything on a malformed file
        raise InputError(f"mesh {path}: cannot be read ({type(e).__name__}: {e})") from None
    finally:
        quiet.setLevel(level)
    v = np.asarray(kw["vertices"], np.float64).reshape(-1, 3)
    f = np.asarray(kw["faces"], np.int64).reshape(-1, 3)
    uv = colors = tex = None
    files = (path,)
    if getattr(kw.get("visual"), "uv", None) is not None:
        uv = np.asarray(kw["visual"].uv, np.float64)
        tex, read = _ply_texture(path, textures) if ext == ".ply" else (_glb_texture(path), ())
        files += read
    elif kw.get("vertex_colors") is not None and len(kw["vertex_colors"]) == len(v):
        colors = np.asarray(kw["vertex_colors"], np.float64)[:, :3] / 255.0
    if ext == ".glb" and np.ptp(v, axis=0).max() < 10:  # glTF is in metres; redafit's meshes are millimetres
        v = v * 1000.0
    return ViewMesh(v, f, uv if tex is not None else None, f if tex is not None else None, tex, colors,
                    y_up=True if ext == ".glb" else None, files=files)


def _glb_kwargs(m) -> dict:
    visual = getattr(m, "visual", None)
    out = {"vertices": m.vertices, "faces": m.faces}
    if getattr(visual, "kind", None) == "texture":
        out["visual"] = visual
    elif getattr(visual, "kind", None) == "vertex":
        out["vertex_colors"] = visual.vertex_colors
    return out


def _ply_texture(path: Path, textures: dict) -> tuple[np.ndarray | None, tuple]:
    with open(path, "rb") as fh:
        header = fh.read(1 << 16).split(b"end_header")[0].decode("utf-8", "replace")
    name = next((ln.split(None, 2)[2].strip() for ln in header.splitlines()
                 if ln.startswith("comment TextureFile ") and len(ln.split()) > 2), None)
    return _texture_file(path, name, textures)


def _glb_texture(path: Path) -> np.ndarray | None:
    """The first image embedded in a binary glTF (decoded here: trimesh needs Pillow for it)."""
    import cv2

    try:
        data = path.read_bytes()
        n = struct.unpack_from("<I", data, 12)[0]
        doc = json.loads(data[20:20 + n])
        view = doc["bufferViews"][doc["images"][0]["bufferView"]]
        start = 20 + n + 8 + view.get("byteOffset", 0)  # the BIN chunk's data follows its 8-byte header
        img = cv2.imdecode(np.frombuffer(data[start:start + view["byteLength"]], np.uint8), cv2.IMREAD_COLOR)
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error):
        return None
    return None if img is None else img[:, :, ::-1].astype(np.float32) / 255.0


# one reader per file format (by extension): each returns the ViewMesh of a file that passed check_input_file
_READERS = {".obj": _read_obj, ".ply": _read_trimesh, ".glb": _read_trimesh, ".npz": _read_npz}
VIEW_FORMATS = tuple(_READERS)


def rig_view_meshes(folder, expressions=()) -> list[tuple[str, ViewMesh]]:
    """(label, mesh) of a rig folder (``redafit rig``): its neutral, then the neutral with each of ``expressions``
    (the rig's expression names) at weight 1, each with the rig's texture and caps, in the head frame (y up)."""
    from redafit.rig.fit import load_rig, rig_files

    rig = load_rig(folder)
    unknown = [e for e in expressions if e not in rig.expression_names]
    if unknown:
        raise InputError(f"{folder}: the rig has no expression {unknown[0]!r} (its {len(rig.expression_names)} are "
                         f"e.g. {', '.join(rig.expression_names[:4])}; all in params.json's expression_names)")
    out = []
    files = rig_files(folder)
    for name in ("neutral", *expressions):
        w = np.zeros(len(rig.expression_names))
        if name != "neutral":
            w[rig.expression_names.index(name)] = 1.0
        v, f, uvkw = rig.mesh(rig.shape(w))
        tex = rig.texture if rig.textured else None
        out.append((name, ViewMesh(v, f, uvkw.get("uv") if tex is not None else None,
                                   uvkw.get("uv_triangles") if tex is not None else None, tex, y_up=True,
                                   files=files)))
    return out


def camera_frame(vertices: np.ndarray) -> bool:
    """Whether ``vertices`` look like a camera-frame mesh: all in front of the origin (z > 0), their centre farther
    than their own depth (a head-frame mesh lies about the origin; a whole head turned 35 cm from the camera is
    18 cm deep). For a file that does not say (:func:`redafit.io.meshes.read_frame`: redafit's own do)."""
    z = np.asarray(vertices)[:, 2]
    return bool(z.min() > 0 and z.mean() > np.ptp(z))


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    a, b = np.radians(yaw), np.radians(pitch)
    ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ ry


def _oriented(mesh: ViewMesh, frame: str) -> np.ndarray:
    """The mesh's vertices [V, 3] in camera axes (y down, the viewer's side towards -z), per ``frame``."""
    if frame not in VIEW_FRAMES:
        raise InputError(f"frame must be one of {VIEW_FRAMES}, not {frame!r}")
    v = np.asarray(mesh.vertices, np.float64)
    y_up = mesh.y_up if mesh.y_up is not None else (frame == "head" or (frame == "auto" and not camera_frame(v)))
    return v * np.array([1.0, -1.0, -1.0]) if y_up else v  # y up, the face towards +z -> camera axes


def view_bounds(meshes, frame: str = "auto") -> tuple[np.ndarray, float]:
    """(centre [3], radius) of a sphere around all ``meshes`` as :func:`render_views` orients them: pass it as its
    ``bounds`` to draw them all in one framing (an animation's frames, where the head moves)."""
    pts = [_oriented(m, frame)[np.unique(m.triangles)] for m in meshes]
    lo = np.min([p.min(0) for p in pts], axis=0)
    hi = np.max([p.max(0) for p in pts], axis=0)
    centre = (lo + hi) / 2
    return centre, max(max(float(np.linalg.norm(p - centre, axis=1).max()) for p in pts), 1e-9)


def render_views(mesh: ViewMesh, yaws=(-40.0, 0.0, 40.0), pitch: float = 0.0, size: int = 512,
                 frame: str = "auto", shaded: bool = True, coloured: bool = True, bounds=None,
                 lit: bool = False) -> np.ndarray:
    """One image [rows x size, len(yaws) x size, 3] float RGB: the mesh from each yaw (degrees) at ``pitch``, a row
    of its colours (``coloured``; grey where it has none) and a row of grey shading (``shaded``); see the module
    docstring for ``frame``. The mesh is fitted to the frame by its bounding sphere (``bounds``: another sphere,
    :func:`view_bounds`), seen in perspective; the views turn about the sphere's centre. ``lit``: the colours
    shaded by the grey row's light (white), for colours that hold no light of their own."""
    import cv2

    from redafit.render import interpolate, rasterize, texture
    from redafit.render.camera import Intrinsics, to_clip
    from redafit.render.shading import vertex_normals

    if not (shaded or coloured):
        raise InputError("render_views: nothing to draw (neither coloured nor shaded)")
    v = _oriented(mesh, frame)
    centre, radius = bounds if bounds is not None else view_bounds([mesh], frame)
    centre, radius = np.asarray(centre, np.float64), float(radius)
    dist = 4.0 * radius
    big = size * SUPERSAMPLE
    focal = 0.5 * big * dist / (1.08 * radius) * np.sqrt(1 - 1 / 16)  # the bounding sphere's outline, 8 % margin
    K = Intrinsics(fx=focal, fy=focal, cx=big / 2, cy=big / 2, width=big, height=big)
    tris = torch.as_tensor(mesh.triangles, dtype=torch.long)
    rows_c, rows_s = [], []
    for yaw in yaws:
        p = (v - centre) @ _rotation(float(yaw), float(pitch)).T + np.array([0.0, 0.0, dist])
        pt = torch.as_tensor(p, dtype=torch.float32)[None]
        frags = rasterize(to_clip(pt, K, near=dist - 1.5 * radius, far=dist + 1.5 * radius), tris, (big, big),
                          backend="torch")
        cover = frags.mask[0].numpy().astype(np.float32)[..., None]
        # the inside of an open mesh (a face mask seen from behind) drawn darker, as a viewer draws back faces
        n = torch.nn.functional.normalize(interpolate(vertex_normals(pt, tris), frags, tris)[0], dim=-1).numpy()
        ray = interpolate(pt, frags, tris)[0].numpy()
        dim = np.where(((n * ray).sum(-1) > 0)[..., None], BACK_DIM, 1.0)
        lam = np.abs(n @ (_LIGHT / np.linalg.norm(_LIGHT)))[..., None] * 0.75 + 0.2
        if coloured:
            if mesh.texture is not None and mesh.uv is not None:
                uvi = interpolate(torch.as_tensor(mesh.uv, dtype=torch.float32)[None], frags,
                                  torch.as_tensor(mesh.uv_triangles, dtype=torch.long))
                col = texture(torch.as_tensor(mesh.texture, dtype=torch.float32), uvi)[0].numpy()
            elif mesh.colors is not None:
                col = interpolate(torch.as_tensor(mesh.colors, dtype=torch.float32)[None], frags, tris)[0].numpy()
            else:
                col = np.full((big, big, 3), 0.7, np.float32)
            if lit:
                col = col * lam
            rows_c.append(col * dim * cover + BACKGROUND * (1 - cover))
        if shaded:
            rows_s.append(lam * np.array([0.85, 0.87, 0.9]) * dim * cover + BACKGROUND * (1 - cover))
    rows = [np.hstack(r) for r in (rows_c, rows_s) if r]
    out = np.vstack(rows).astype(np.float32)
    h, w = out.shape[:2]
    return np.clip(cv2.resize(out, (w // SUPERSAMPLE, h // SUPERSAMPLE), interpolation=cv2.INTER_AREA), 0, 1)
