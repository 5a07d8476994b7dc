"""Photo-aligned maps of a mesh: depth, normals, parsing classes and coverage, on the photo's own pixel grid.

``redafit fit --maps DIR`` writes them for a fitted face (:func:`render_maps`, :func:`save_maps`); the synthetic
benchmark draws its true depth and parsing maps with the same functions (:func:`render_depth`,
:func:`render_parsing`). Every value is taken at a pixel's centre from the visible surface (the hard z-buffer
rasterizer, :func:`redafit.render.rasterize`); a pixel the mesh does not cover is 0 in every map.

Only the window of the image the mesh projects into is rasterized (:func:`face_window`: the camera's principal
point shifted into it), and pasted into a full-size map: a face in a 24-megapixel photo costs what its own
pixels cost, not the photo's.

Conventions of the files :func:`save_maps` writes (``DIR/``):

* ``depth.png``: 16-bit grey, camera-frame depth (the z of the photo's camera, not the distance along the ray)
  in whole millimetres, 0 off the mesh: the layout of a Kinect / RealSense export, which ``fit --depth`` reads;
* ``depth.npy``: the same depth as float32 metres (not rounded), 0 off the mesh (``fit --depth`` reads it too);
* ``normals.png``: 8-bit RGB, the surface's unit normal in the camera's frame with OpenGL axes (x right, y up, z
  towards the camera) encoded as ``(n + 1) / 2``: a surface facing the camera is (128, 128, 255), the usual
  normal-map colouring; black off the mesh;
* ``parsing.png``: 8-bit grey CelebAMask-HQ class ids (``assets/regions.json``), the layout ``fit --parsing``
  reads: the model's face area by region (skin, brows, eyes, nose, lips, mouth; both eyes ``l_eye``, both brows
  ``l_brow``: the model's regions do not tell the sides), the eye caps ``l_eye``, the mouth's cap ``mouth``, the
  model's surface outside its face area (the neck, the ears, the scalp) ``neck``, 0 off the mesh;
* ``mask.png``: 8-bit grey, 255 where the mesh covers the pixel;
* ``uv.png`` (a model with texture coordinates): 16-bit RGB, the texture coordinates of the mesh's texture (the
  OBJ's or glTF's ``-o`` writes: the atlas with caps; for a PLY or NPZ, which have none, the OBJ's at
  ``--texture-size``) at the pixel, ``R = u``, ``G = v`` (v up, as OBJ counts it; a glTF's ``TEXCOORD_0`` is
  ``(u, 1 - v)``: the texel is column ``u W``, row ``(1 - v) H``) scaled to 0-65535, ``B`` 65535 on the mesh:
  each photo pixel's place in the texture, to carry an edit of the texture back onto the photo or the photo's
  pixels into it;
* with the fit's photo and a fitted lighting (:func:`intrinsic_maps`), the photo split by the fitted image
  formation: ``albedo.png`` (8-bit RGB, what ``fit --texture albedo`` holds at the pixel), ``shading.png`` (16-bit
  RGB, the fitted irradiance over the face's median, :data:`SHADING_SCALE` = 1) and ``specular.png`` (8-bit RGB,
  the fitted highlight): photo = albedo x shading + specular where the fitted light is trusted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from redafit.render.camera import Intrinsics, to_clip

log = logging.getLogger(__name__)

# what save_maps writes: the geometry's maps, then (a fit that fitted a lighting, given its photo) its intrinsic ones
GEOMETRY_FILES = ("depth.png", "depth.npy", "normals.png", "parsing.png", "mask.png", "uv.png")
INTRINSIC_FILES = ("albedo.png", "shading.png", "specular.png")
MAP_FILES = GEOMETRY_FILES + INTRINSIC_FILES
SHADING_SCALE = 16384  # shading.png's (16-bit) value of the face's median light (1.0): up to 4x it is representable

# the parsing class (assets/regions.json's CelebAMask-HQ order) that stands for each of the model's regions
REGION_CLASS = {"skin": "skin", "brows": "l_brow", "eyes": "l_eye", "nose": "nose", "upper_lip": "u_lip",
                "lower_lip": "l_lip", "mouth_interior": "mouth"}
CAP_CLASS = {"eye": "l_eye", "mouth": "mouth"}  # the class of a cap (redafit.model.caps) by its kind
OUTSIDE_FACE_CLASS = "neck"  # the model's surface outside its face area (neck, ears, scalp): seen, not face


def face_window(vertices_camera: np.ndarray, K: Intrinsics, margin: int = 2) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the pixels of ``K``'s image the mesh can cover (its vertices' projections' bounding box,
    grown by ``margin`` px, clipped to the image); the whole image when a vertex lies at or behind the camera's
    plane (its projection is not bounded); None when the box misses the image."""
    v = np.asarray(vertices_camera, np.float64)
    if len(v) == 0:
        return None
    if not (v[:, 2] > 1e-6).all():
        return 0, 0, K.width, K.height
    u = K.fx * v[:, 0] / v[:, 2] + K.cx
    w = K.fy * v[:, 1] / v[:, 2] + K.cy
    x0, x1 = max(0, int(np.floor(u.min())) - margin), min(K.width, int(np.ceil(u.max())) + margin)
    y0, y1 = max(0, int(np.floor(w.min())) - margin), min(K.height, int(np.ceil(w.max())) + margin)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _window_camera(K: Intrinsics, window: tuple[int, int, int, int]) -> Intrinsics:
    x0, y0, x1, y1 = window
    return Intrinsics(K.fx, K.fy, K.cx - x0, K.cy - y0, x1 - x0, y1 - y0)


def _rasterized(vertices_camera, triangles, K: Intrinsics, size, window: bool):
    """(clip [1, V, 4], triangles [F, 3] long, fragments, (x0, y0, x1, y1)) of the mesh over the image of size (H, W)
    (``K``'s camera) or, with ``window``, over :func:`face_window` only; fragments None when the mesh misses the
    image."""
    from redafit.render import rasterize

    H, W = (int(x) for x in size)
    if (K.width, K.height) != (W, H):
        K = K.scaled(W, H)
    tris = torch.as_tensor(np.asarray(triangles), dtype=torch.long)
    vc = torch.as_tensor(np.asarray(vertices_camera), dtype=torch.float32)[None]
    box = face_window(vertices_camera, K) if window else (0, 0, W, H)
    if box is None:
        return None, tris, None, None
    Kw = _window_camera(K, box) if window else K
    clip = to_clip(vc, Kw)
    frags = rasterize(clip, tris, (box[3] - box[1], box[2] - box[0]))
    return clip, tris, frags, box


def _paste(values: np.ndarray, box, size, dtype) -> np.ndarray:
    H, W = (int(x) for x in size)
    out = np.zeros((H, W) + values.shape[2:], dtype)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = values
    return out


def _depth(clip, frags, tris) -> np.ndarray:
    """[h, w] camera-frame z (mm, the clip coordinates' w) of the fragments' surface, 0 where none."""
    from redafit.render import interpolate

    hit = frags.mask[0].cpu().numpy() > 0
    return np.where(hit, interpolate(clip[..., 3:4], frags, tris)[0, ..., 0].cpu().numpy(), 0.0)


def render_depth(vertices_camera: np.ndarray, triangles: np.ndarray, K: Intrinsics, size, noise_mm: float = 0.0,
                 rng: np.random.Generator | None = None, window: bool = False) -> np.ndarray:
    """What an RGB-D sensor registered to the image would measure of the mesh: [H, W] float32 camera-frame depth
    (z, mm) of the visible surface at the pixel centres, 0 where the mesh does not cover the pixel (the background
    is unknown, as beyond a sensor's range); with ``noise_mm`` > 0, Gaussian noise of that std from ``rng`` and
    rounding to whole millimetres (a 16-bit mm depth image). ``K`` the camera's
    :class:`~redafit.render.camera.Intrinsics`, ``size`` (H, W); ``window``: rasterize the mesh's window only
    (:func:`face_window`; the same map but for a rare edge pixel, as the window's clip coordinates round
    differently)."""
    clip, tris, frags, box = _rasterized(vertices_camera, triangles, K, size, window)
    if frags is None:
        return np.zeros(tuple(int(x) for x in size), np.float32)
    z = _paste(_depth(clip, frags, tris), box, size, np.float64)
    if noise_mm > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        z = np.where(z > 0, np.round(z + rng.normal(0.0, noise_mm, z.shape)), 0.0)
    return z.astype(np.float32)


def _class_ids() -> dict:
    from redafit.parsing.regions import load_region_spec

    names = load_region_spec()["network_classes"]["names"]
    return {name: names.index(name) for name in names}


def triangle_classes(model, caps=None) -> np.ndarray:
    """[F] int64 parsing class per triangle of the model's mesh (and, with ``caps``
    (:class:`redafit.model.caps.Caps`), of its caps after them) for :func:`render_parsing`: a face-area triangle
    is -1 (its class is its nearest corner's region, per pixel), a cap's its kind's (:data:`CAP_CLASS`), any other
    ``neck`` (:data:`OUTSIDE_FACE_CLASS`)."""
    from redafit.model.caps import RINGS
    from redafit.parsing.model_labels import vertex_face_area

    ids = _class_ids()
    t = model.triangles.cpu().numpy()
    face_v = vertex_face_area(model).cpu().numpy()
    out = np.where(face_v[t].all(-1), -1, ids[OUTSIDE_FACE_CLASS]).astype(np.int64)
    if caps is None:
        return out
    V = len(face_v)
    # a cap triangle's new vertices (ids >= V) lie in its cap's block of Caps.vertices (the rings and a centre)
    sizes = np.array([len(RINGS) * len(loop) + 1 for loop in caps.loops])
    ends = V + np.cumsum(sizes)
    which = np.searchsorted(ends, caps.triangles.max(1), side="right")
    cap = np.array([ids[CAP_CLASS[caps.kinds[k]]] for k in which], np.int64)
    return np.concatenate([out, cap])


def _pixel_classes(model, frags, tris: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """[h, w] int64 class ids of the fragments' pixels (:func:`render_parsing`'s rule), 0 where none."""
    from redafit.parsing.model_labels import vertex_region_index
    from redafit.parsing.regions import REGION_NAMES

    ids = _class_ids()
    region_class = np.array([ids[REGION_CLASS[r]] for r in REGION_NAMES], np.int64)
    hit = frags.tri_id[0].cpu().numpy() >= 0
    tid = np.clip(frags.tri_id[0].cpu().numpy(), 0, None)
    corner = frags.bary[0].argmax(-1).cpu().numpy()
    tc = classes[tid]
    vid = np.take_along_axis(np.asarray(tris)[tid], corner[..., None], -1)[..., 0]
    by_region = hit & (tc < 0)
    out = np.where(hit, tc, 0)
    out[by_region] = region_class[vertex_region_index(model).cpu().numpy()[vid[by_region]]]
    return out


def render_parsing(model, vertices_camera: np.ndarray, triangles: np.ndarray, K: Intrinsics, size,
                   classes: np.ndarray | None = None, window: bool = False) -> np.ndarray:
    """The parsing map a perfect parser would give an image of the model: [H, W] int64 class ids (the class order of
    ``assets/regions.json``) at the image's pixel centres. The visible surface of the mesh takes the region of the
    nearest corner of its triangle (:func:`redafit.parsing.model_labels.vertex_region_index`) where the triangle
    lies in the model's face area (:func:`~redafit.parsing.model_labels.vertex_face_area`), and the class "neck"
    elsewhere on the model (not face, not an occluder); background is class 0. ``classes``: per triangle of
    ``triangles``, :func:`triangle_classes` (default: that of the model's own triangles); ``window`` as for
    :func:`render_depth`.

    As a synthetic case's truth it is an upper bound on what a parsing network gives: its face area ends where the
    model's does, which no photo shows (a real parser's skin runs on to the ears and the hairline). ``K`` the
    camera's :class:`~redafit.render.camera.Intrinsics`, ``size`` (H, W)."""
    classes = triangle_classes(model) if classes is None else np.asarray(classes, np.int64)
    _, tris, frags, box = _rasterized(vertices_camera, triangles, K, size, window)
    if frags is None:
        return np.zeros(tuple(int(x) for x in size), np.int64)
    out = _pixel_classes(model, frags, tris.numpy(), classes)
    return _paste(out, box, size, np.int64)


@dataclass
class FaceMaps:
    """A fitted face's maps on the photo's pixel grid (:func:`render_maps`)."""

    depth: np.ndarray  # [H, W] float32 camera-frame z, mm; 0 off the mesh
    normals: np.ndarray  # [H, W, 3] float32 unit normals, OpenCV camera axes; 0 off the mesh
    parsing: np.ndarray  # [H, W] int64 CelebAMask-HQ class ids; 0 off the mesh
    uv: np.ndarray | None = None  # [H, W, 2] float32 texture coordinates (u, v up); 0 off the mesh; None: no UVs
    # the photo split by the fitted image formation (photo ~ albedo * shading + specular), [H, W, 3] float32, 0 off
    # the mesh; None when the fit fitted no lighting or no photo was given (:func:`intrinsic_maps`)
    albedo: np.ndarray | None = None  # the albedo texture's colour (fit --texture albedo) at the pixel
    shading: np.ndarray | None = None  # the fitted irradiance over the face's median irradiance (1: median light)
    specular: np.ndarray | None = None  # the fitted highlight, in the photo's colour units

    @property
    def mask(self) -> np.ndarray:
        """[H, W] bool: the mesh covers the pixel."""
        return self.depth > 0


def render_maps(result, model, caps: bool = True, texture_size: int = 1024,
                image: np.ndarray | None = None) -> FaceMaps:
    """The maps of a fit (:class:`~redafit.fit.FitResult`) at its photo's size: the mesh as ``redafit fit`` writes
    it in the camera frame (with the eye and mouth caps unless ``caps`` is False, :mod:`redafit.model.caps`),
    rasterized once over its window (:func:`face_window`). ``uv``: the texture coordinates of the texture
    :func:`redafit.fit.outputs.save_mesh` writes at ``texture_size`` (with caps, an atlas whose layout depends on
    it). With the fit's photo ``image`` ([H, W, 3] RGB in [0, 1], the fit's size) and a fit that fitted a lighting
    (``result.lighting_fitted``), also its ``albedo``, ``shading`` and ``specular`` (:func:`intrinsic_maps`), unless
    the face is black or white in the photo (:func:`redafit.fit.api.colourless_face`, a warning)."""
    from redafit.model.caps import hole_caps
    from redafit.render import interpolate
    from redafit.render.shading import vertex_normals

    if image is not None:
        from redafit.fit.outputs import photo_of_fit

        image = photo_of_fit(image, result)  # checked (and resampled) before any work
    K = result.intrinsics
    size = (K.height, K.width)
    verts, tris = np.asarray(result.vertices_camera), np.asarray(result.triangles)
    uv, uvt = (model.uv.cpu().numpy(), model.uv_triangles.cpu().numpy()) if model.has_uv else (None, None)
    hc = hole_caps(model) if caps else None
    if hc is not None:
        verts, tris, uv, uvt = hc.extend(verts, tris, uv, uvt, texture_size)
    classes = triangle_classes(model, hc)
    clip, t, frags, box = _rasterized(verts, tris, K, size, window=True)
    if frags is None:
        return FaceMaps(np.zeros(size, np.float32), np.zeros(size + (3,), np.float32), np.zeros(size, np.int64),
                        None if uv is None else np.zeros(size + (2,), np.float32))
    hit = frags.mask[0].cpu().numpy() > 0
    depth = _depth(clip, frags, t)
    v = torch.as_tensor(verts, dtype=torch.float32)[None]
    n = torch.nn.functional.normalize(interpolate(vertex_normals(v, t), frags, t)[0], dim=-1).cpu().numpy()
    n = np.where(hit[..., None], n, 0.0)
    parsing = _pixel_classes(model, frags, tris, classes)
    texcoords = None
    if uv is not None:
        u = interpolate(torch.as_tensor(uv, dtype=torch.float32), frags, torch.as_tensor(uvt, dtype=torch.long))
        texcoords = _paste(np.where(hit[..., None], u[0].cpu().numpy(), 0.0), box, size, np.float32)
    maps = FaceMaps(_paste(depth, box, size, np.float32), _paste(n, box, size, np.float32),
                    _paste(parsing, box, size, np.int64), texcoords)
    if image is not None and getattr(result, "lighting_fitted", False):
        from redafit.fit.api import colourless_face

        bright = colourless_face(result)
        if bright is not None:  # a black or white face: no light to split the photo by
            log.warning("no albedo, shading or specular map: the face is %s in the photo (mean %.3f)",
                        "black" if bright < 0.5 else "white", bright)
            return maps
        parts = intrinsic_maps(image, result, model, verts, t, frags, box)
        maps.albedo, maps.shading, maps.specular = (_paste(x, box, size, np.float32) for x in parts)
    return maps


def intrinsic_maps(image: np.ndarray, result, model, verts: np.ndarray, tris: torch.Tensor, frags, box):
    """(albedo, shading, specular), each [h, w, 3] float32 over the window ``box`` (x0, y0, x1, y1) of the fit's
    photo ``image`` that ``frags`` rasterized of the mesh ``verts`` / ``tris`` (the model's vertices and triangles
    first, then any caps'): the photo split by the fitted image formation
    (:func:`redafit.fit.outputs.fitted_shading`), 0 off the mesh.

    ``shading`` is the fitted irradiance (with the fit's ambient occlusion) over the face's median irradiance, and
    ``specular`` the fitted highlight. ``albedo`` is what ``fit --texture albedo`` holds at the pixel's surface
    point (:func:`redafit.fit.outputs.delit`): the photo less the highlight, over the shading, where the light is
    trusted; a dim sample on the face's skin is taken towards the fit's own albedo. So photo = albedo * shading +
    specular (times the face's median light, which the albedo keeps) wherever the fitted light is trusted. The
    caps (eyes, mouth), which the fit never drew, keep the photo's colours, with shading 1 and no highlight."""
    from redafit.errors import ModelError
    from redafit.fit.outputs import delit, face_flag, fitted_shading, photo_of_fit, shading_terms
    from redafit.parsing.model_labels import vertex_face_area
    from redafit.render import interpolate
    from redafit.render.shading import vertex_normals

    shading = fitted_shading(result, model)
    img = np.asarray(photo_of_fit(image, result), np.float32)  # at the fit's size (render_maps has resampled it)
    x0, y0, x1, y1 = box
    col = img[y0:y1, x0:x1, :3]
    nm, fm = len(result.vertices_camera), len(model.triangles)
    vc = torch.as_tensor(np.asarray(verts), dtype=torch.float32)
    nv = len(vc)
    n = vertex_normals(vc[None], tris)[0]  # a cap's from its triangles and the face's around it, as the texture's
    n[:nm] = vertex_normals(vc[None, :nm], model.triangles.cpu())[0]  # the fit's own (the rims not bent by the caps)
    occ = torch.ones(nv)
    if shading.occlusion is not None:
        occ[:nm] = torch.as_tensor(shading.occlusion)
    prior = torch.zeros(nv, 4)
    if shading.prior is not None:
        prior[:nm] = torch.as_tensor(shading.prior)
    face = torch.zeros(nv)
    try:
        face[:nm] = face_flag(vertex_face_area(model).cpu(), model.triangles.cpu())
    except ModelError:  # no face area: no sample is taken towards the fit's albedo
        pass
    attrs = torch.cat([vc, n, occ[:, None], prior, face[:, None]], -1)[None]  # [1, V, 12]
    px = interpolate(attrs, frags, tris)[0]
    hit = frags.mask[0].cpu().numpy() > 0
    fitted = hit & (frags.tri_id[0].cpu().numpy() < fm)  # the model's own surface, not a cap
    p = px[..., :3]
    normals = torch.nn.functional.normalize(px[..., 3:6], dim=-1)
    view = -p / p.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    o = None if shading.occlusion is None else px[..., 6]
    pr = None if shading.prior is None else px[..., 7:10]
    pw = None if pr is None else np.clip(px[..., 11].numpy(), 0, 1) * px[..., 10].numpy()
    irr, hl = shading_terms(normals, view, o, shading)
    albedo = np.clip(delit(col, normals, view, o, shading, pr, pw, terms=(irr, hl))[0], 0, 1)
    shade = (irr / shading.reference).numpy()
    on, fit = hit[..., None], fitted[..., None]
    albedo = np.where(fit, albedo, np.where(on, col, 0.0))
    shade = np.where(fit, shade, np.where(on, 1.0, 0.0))
    spec = np.where(fit, hl.numpy(), 0.0)
    return albedo.astype(np.float32), shade.astype(np.float32), spec.astype(np.float32)


def save_maps(folder, maps: FaceMaps) -> list[Path]:
    """Write :data:`MAP_FILES` into ``folder`` (made if missing; ``uv.png`` only for a model with UVs, the
    intrinsic maps only when ``maps`` has them), each atomically (see the module docstring for their conventions);
    the paths written. A map of :data:`MAP_FILES` not written this time that an earlier run left in the folder is
    removed with them (:func:`redafit.io.atomic.atomic_remove`): the folder never mixes two fits."""
    from redafit.io.atomic import atomic_remove, atomic_write, make_folder
    from redafit.io.images import write_image_file
    from redafit.parsing.maps import save_parsing_map

    folder = make_folder(folder)
    paths = [folder / name for name in MAP_FILES]
    mask = maps.mask
    write_image_file(paths[0], np.clip(np.round(maps.depth), 0, 65535).astype(np.uint16))
    with atomic_write(paths[1]) as fh:
        np.save(fh, (maps.depth / 1000.0).astype(np.float32), allow_pickle=False)
    gl = maps.normals * np.array([1.0, -1.0, -1.0], np.float32)  # OpenCV camera axes -> OpenGL's
    rgb = np.where(mask[..., None], np.clip(np.round((gl + 1.0) * 127.5), 0, 255), 0).astype(np.uint8)
    write_image_file(paths[2], np.ascontiguousarray(rgb[..., ::-1]))  # cv2 writes BGR
    save_parsing_map(paths[3], maps.parsing)
    write_image_file(paths[4], (mask * 255).astype(np.uint8))
    written = paths[:5]
    if maps.uv is not None:
        rgb = np.concatenate([np.clip(maps.uv, 0, 1), mask[..., None]], -1) * mask[..., None]
        write_image_file(paths[5], np.ascontiguousarray(np.round(rgb * 65535).astype(np.uint16)[..., ::-1]))
        written.append(paths[5])
    if maps.albedo is not None:
        for name, x, scale, dtype in (("albedo.png", maps.albedo, 255, np.uint8),
                                      ("shading.png", maps.shading, SHADING_SCALE, np.uint16),
                                      ("specular.png", maps.specular, 255, np.uint8)):
            top = np.iinfo(dtype).max
            rgb = np.where(mask[..., None], np.clip(np.round(x * scale), 0, top), 0).astype(dtype)
            write_image_file(folder / name, np.ascontiguousarray(rgb[..., ::-1]))  # cv2 writes BGR
            written.append(folder / name)
    for name in MAP_FILES:
        if folder / name not in written:
            atomic_remove(folder / name)
    return written
