"""The synthetic benchmark: photos rendered from the installed face model, with exact ground truth.

Each case (fully determined by ``(seed, index)``):

* identity ``N(0, 1) * id_scale`` on every identity mode; expression from the model's prior - ``"unit"``
  models (blendshape weights in [0, 1], e.g. ICT): 1-3 random blendshapes with weights in [0, 1];
  ``"gaussian"`` models: ``N(0, 0.5)`` on every mode;
* pose: yaw ±45°, pitch ±20°, roll ±10° (uniform); the camera (``Intrinsics.default``, focal 1.6 x the image
  side) sits at the distance at which the jaw width fills ``face_fill`` (~50 %) of the image width, with a small
  random offset of the face centre;
* lighting: 2nd-order SH (ambient + one directional light from the camera's hemisphere, slightly tinted);
* albedo: a skin tone from a light-to-dark palette with low-frequency variation, darker brows, redder lips,
  dark eyes and mouth interior - regions from :func:`redafit.parsing.model_labels.vertex_labels` when available,
  else from the landmark vertices (polygons and polylines of the frontal landmark layout);
* background: smooth colour noise, a gradient and finer noise; sensor noise on the final image;
* rendered with :mod:`redafit.render`'s hard rasterizer at ``supersample`` x the size, then area-downscaled;
  ``shading="physical"`` (default) shades every pixel - interpolated normals, ambient plus the exact max(cos, 0)
  directional light with cast shadows (a shadow map along the light), ambient occlusion on the ambient light, a
  white highlight (a microfacet skin reflectance with Fresnel, its strength varying over the face;
  ``highlight="blinn-phong"`` draws the uniform Blinn-Phong lobe of sessions 10-18) and a fine multiplicative
  albedo texture (wavelengths 2-10 mm), none of which a fit's renderer draws exactly (the fit approximates the
  occlusion with its mean shape's, ``FitConfig.occlusion``, and the highlight with one Blinn-Phong lobe,
  ``FitConfig.specular``; its own random streams, so geometry, pose, lighting and albedo match ``"model"``);
  ``shading="model"`` draws per-vertex SH (Gouraud) shading, the z-buffer fit's own image formation;
* out-of-span detail (``detail_mm`` > 0): a sum of Gaussian bumps (radius 8-18 mm, random signs) on the face
  area, displacing the vertices along their normals, scaled to ``detail_mm`` RMS over the face area and faded out
  towards the area's rim; drawn from its own random stream, so the rest of a case does not change with it;
* 68 landmarks: the projected landmark vertices; on the *occluding* side (the cheek turned away from the
  camera) the jaw points 0-7 / 9-16 move to the visible outline - among the vertices near the point's
  frontal vertex (same height ±``JAW_BAND_MM``, within ``JAW_RADIUS_MM``, same side) the one with the extreme
  projected x towards that side (:func:`redafit.fit.correspondence.outline_jaw_ids`, the annotation rule the
  fitter also follows); then Gaussian noise of ``landmark_noise`` px for the landmark file.

Ground truth per case: the model-frame mesh (mm) - what the evaluation compares - and the camera-frame mesh.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from redafit.errors import InputError
from redafit.eval.datasets import Case
from redafit.fit.correspondence import (  # noqa: F401 - default_landmark_vertices: part of this module's API
    JAW_BAND_MM,
    JAW_POINTS,
    JAW_RADIUS_MM,
    MIN_TURN,
    default_landmark_vertices,
    outline_jaw_ids,
)
from redafit.render.camera import DEFAULT_FOCAL_FACTOR
from redafit.render.maps import render_depth, render_parsing  # noqa: F401 - also this module's API (bench, tests)
from redafit.render.occlusion import ambient_occlusion, shadow_visibility  # noqa: F401 - also this module's API
from redafit.io import jsonsafe

SKIN_TONES = np.array([  # linear-ish RGB albedo in [0, 1], light to dark
    [0.87, 0.70, 0.60], [0.80, 0.60, 0.50], [0.72, 0.52, 0.40], [0.62, 0.44, 0.32],
    [0.50, 0.34, 0.24], [0.38, 0.25, 0.18],
])


@dataclass(frozen=True)
class SyntheticConfig:
    """How synthetic cases are drawn (documented defaults)."""

    size: int = 256  # image width = height, px (256-512 are sensible)
    id_scale: float = 1.0  # identity coefficients ~ N(0, 1) * id_scale
    n_id: int | None = None  # identity modes used (None: all)
    exp_max_active: int = 3  # "unit" prior: 1..exp_max_active blendshapes active
    exp_gaussian_std: float = 0.5  # "gaussian" prior: N(0, std) per mode
    yaw: float = 45.0  # uniform in ±yaw degrees
    pitch: float = 20.0
    roll: float = 10.0
    face_fill: float = 0.5  # jaw width / image width
    # the camera's focal length / the image side (the fits' default, 1.6, is a ~50 mm full-frame lens; a phone's
    # main camera is ~0.8 here, 24-26 mm equivalent): the camera moves closer with a shorter one, so that the face
    # fills the same share of the image and is seen in stronger perspective
    focal_factor: float = DEFAULT_FOCAL_FACTOR
    landmark_noise: float = 0.0  # px, Gaussian noise added to the landmark file
    supersample: int = 2  # render at this factor, then area-downscale (1 = no antialiasing)
    image_noise: float = 0.01  # Gaussian sensor noise (std, [0, 1] scale)
    # "physical": per-pixel shading - the exact clamped-cosine light with cast shadows, ambient occlusion, a
    # Blinn-Phong highlight and a fine albedo texture (what no fitting renderer draws); "model": per-vertex SH
    # (Gouraud) shading, the very image formation of redafit's z-buffer fit (an inverse crime: kept to reproduce
    # the numbers measured with it)
    shading: str = "physical"
    specular: float = 0.25  # "physical": mean highlight strength (per case U(0.5, 1.5) x this; 0: none)
    # "physical": the highlight's reflectance model - "microfacet": Torrance-Sparrow with a GGX lobe (roughness
    # U(0.25, 0.45) per case), Schlick's Fresnel for skin (F0 0.028) and Smith shadowing, its strength varying
    # over the face (an oiliness map, 30-80 mm wavelengths, x0.5-2); "blinn-phong": one white Blinn-Phong lobe
    # (exponent U(12, 40)) of uniform strength, the highlight of the images measured in sessions 10-18 (the fit's
    # own specular term, FitConfig.specular, is a Blinn-Phong lobe: on those images it would be exact)
    highlight: str = "microfacet"
    shadows: bool = True  # "physical": the directional light casts shadows (shadow map)
    occlusion: bool = True  # "physical": ambient occlusion darkens the ambient light in eye sockets, nostrils...
    texture: float = 0.03  # "physical": std of the fine multiplicative albedo texture (wavelengths 2-10 mm)
    # RMS (mm, over the face area) of a smooth displacement along the normals added to the drawn shape: real faces
    # lie outside any model's span, which is what the free-form stage is for; 0 keeps the cases inside the span
    detail_mm: float = 0.0
    # the true depth map written with each case (an RGB-D sensor's view, ``redafit eval --given-depth``): Gaussian
    # noise of this std (mm) on the camera-frame z, then rounded to whole millimetres as in a 16-bit depth image
    depth_noise_mm: float = 1.0
    backend: str = "auto"


# ---------------------------------------------------------------------------------------------------------------
# albedo
# ---------------------------------------------------------------------------------------------------------------
def _points_in_polygon(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """[N] bool, even-odd rule; p [N, 2], poly [M, 2]."""
    inside = np.zeros(len(p), bool)
    x, y = p[:, 0], p[:, 1]
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        cross = (a[1] > y) != (b[1] > y)
        xi = a[0] + (y - a[1]) * (b[0] - a[0]) / np.where(b[1] != a[1], b[1] - a[1], 1e-12)
        inside ^= cross & (x < xi)
    return inside


def _dist_to_polyline(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    d = np.full(len(p), np.inf)
    for a, b in itertools.pairwise(line):
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        d = np.minimum(d, np.linalg.norm(p - (a + t[:, None] * ab), axis=1))
    return d


def region_labels(model) -> np.ndarray:
    """Per-vertex region index [V]: 0 skin, 1 brows, 2 eyes, 3 nose, 4 upper lip, 5 lower lip, 6 mouth interior.

    From :func:`redafit.parsing.model_labels.vertex_region_index` when available; else from the landmark
    vertices of the mean shape seen frontally (brow polylines, eye and lip polygons).
    """
    try:
        from redafit.parsing.model_labels import vertex_region_index

        return vertex_region_index(model).cpu().numpy()
    except ImportError:
        pass
    mean = model.mean.detach().cpu().numpy().astype(np.float64)
    lid = model.landmark_ids.cpu().numpy()
    lab = np.zeros(len(mean), np.int64)
    if (lid[17:68] < 0).any():
        return lab
    L = mean[lid]
    xy = mean[:, :2]
    front = mean[:, 2] > L[:, 2].min() - 15.0  # not the back/sides of the head
    for a, b in ((17, 22), (22, 27)):
        lab[(_dist_to_polyline(xy, L[a:b, :2]) < 4.0) & front] = 1
    for a, b in ((36, 42), (42, 48)):
        lab[_points_in_polygon(xy, L[a:b, :2]) & front] = 2
    outer, inner = L[48:60, :2], L[60:68, :2]
    in_outer = _points_in_polygon(xy, outer) & front
    in_inner = _points_in_polygon(xy, inner)
    mid_y = 0.5 * (L[62, 1] + L[66, 1])
    lab[in_outer & ~in_inner & (xy[:, 1] >= mid_y)] = 4
    lab[in_outer & ~in_inner & (xy[:, 1] < mid_y)] = 5
    lab[in_outer & in_inner] = 6
    return lab


def skin_albedo(model, rng: np.random.Generator, labels: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Per-vertex albedo [V, 3] in [0, 1] and a description (tone index, colours)."""
    from redafit.parsing.model_labels import smooth_vertex_values

    mean = model.mean.detach().cpu().numpy().astype(np.float64)
    tris = model.triangles.cpu().numpy()
    labels = region_labels(model) if labels is None else labels
    k = int(rng.integers(len(SKIN_TONES)))
    skin = np.clip(SKIN_TONES[k] * (1 + rng.normal(0, 0.04, 3)), 0.05, 0.95)
    # low-frequency blotches: a few random plane waves over the surface
    var = np.zeros(len(mean))
    for _ in range(4):
        w = rng.normal(0, 1, 3)
        w *= rng.uniform(0.02, 0.08) / np.linalg.norm(w)
        var += np.sin(mean @ w + rng.uniform(0, 2 * np.pi))
    alb = skin[None] * (1 + 0.03 * var[:, None])
    hair = np.array([0.18, 0.12, 0.09]) * rng.uniform(0.6, 1.4)
    colours = {1: hair, 2: np.array([0.20, 0.16, 0.15]), 4: skin * [0.85, 0.58, 0.58],
               5: skin * [0.88, 0.60, 0.60], 6: np.array([0.30, 0.10, 0.10])}
    w = np.zeros((len(mean), 7))
    w[np.arange(len(mean)), np.clip(labels, 0, 6)] = 1.0
    w = smooth_vertex_values(w, tris, 2)
    out = w[:, :1] * alb
    for r, c in colours.items():
        out = out + w[:, r:r + 1] * (0.8 * np.asarray(c)[None] + 0.2 * alb * (r in (4, 5)))
    out = out + w[:, 3:4] * alb  # nose: skin
    return np.clip(out, 0.0, 1.0), {"tone": k, "skin": skin.round(4).tolist()}


# ---------------------------------------------------------------------------------------------------------------
# scene pieces
# ---------------------------------------------------------------------------------------------------------------
def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured background [h, w, 3] float32 in [0, 1]: smooth colour noise + gradient + finer noise."""
    import cv2

    base = rng.uniform(0.15, 0.85, 3)
    coarse = cv2.resize(rng.normal(0, 0.15, (4, 4, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    mid = cv2.resize(rng.normal(0, 0.06, (24, 24, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    grad = ((np.cos(ang) * gx / w + np.sin(ang) * gy / h) - 0.5)[..., None] * rng.uniform(-0.3, 0.3, 3)
    return np.clip(base[None, None] + coarse + mid + grad, 0, 1).astype(np.float32)


def random_light(rng: np.random.Generator) -> dict:
    """Ambient + one directional light from the camera's hemisphere, slightly tinted: ``direction`` [3] (unit,
    camera frame, surface to light), ``ambient`` and ``intensity`` (irradiance), ``tint`` [3], and ``sh`` [9, 3] -
    the same light as 2nd-order SH (what a fit's lighting can represent exactly: all of it under ``"model"``
    shading; the SH projection of the unshadowed diffuse light under ``"physical"``)."""
    from redafit.render.shading import directional_sh

    d = np.array([rng.normal(0, 0.6), rng.normal(-0.2, 0.5), -1.0])
    d /= np.linalg.norm(d)
    ambient = rng.uniform(0.45, 0.7)
    inten = rng.uniform(0.25, 0.5)
    tint = 1 + rng.normal(0, 0.04, 3)
    sh = directional_sh(tuple(d), intensity=inten, ambient=ambient).numpy() * tint[None]
    return {"direction": d, "ambient": float(ambient), "intensity": float(inten), "tint": tint,
            "sh": sh.astype(np.float32)}


def random_sh(rng: np.random.Generator) -> np.ndarray:
    """SH lighting [9, 3] of :func:`random_light`."""
    return random_light(rng)["sh"]


SHADINGS = ("physical", "model")  # SyntheticConfig.shading
TEXTURE_WAVES = 48  # plane waves summed for the fine albedo texture


def albedo_texture(points_model: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """[N] multiplicative albedo detail (mean 1, std ``std``) at model-frame points [N, 3] (mm): a sum of
    :data:`TEXTURE_WAVES` random plane waves with wavelengths 2-10 mm - pores, freckles and fine blotches that a
    low-resolution albedo map cannot draw."""
    out = np.zeros(len(points_model))
    for _ in range(TEXTURE_WAVES):
        w = rng.normal(0, 1, 3)
        w *= 2 * np.pi / (np.linalg.norm(w) * rng.uniform(2.0, 10.0))
        out += np.sin(points_model @ w + rng.uniform(0, 2 * np.pi))
    return 1.0 + std * out * np.sqrt(2.0 / TEXTURE_WAVES)


HIGHLIGHTS = ("microfacet", "blinn-phong")  # SyntheticConfig.highlight
SKIN_F0 = 0.028  # Fresnel reflectance of skin at normal incidence (refractive index ~1.4)
OILINESS_WAVES = 8


def microfacet_highlight(n: np.ndarray, d: np.ndarray, view: np.ndarray, roughness: float,
                         f0: float = SKIN_F0) -> np.ndarray:
    """[N] Torrance-Sparrow specular radiance per unit light irradiance, ``D F G / (4 (n.l)(n.v)) * (n.l)``,
    divided by its value at normal incidence (n = l = v), so that 1 is the peak of a highlight seen head-on:
    GGX (Trowbridge-Reitz) normal distribution of ``roughness`` (alpha), Schlick's Fresnel from ``f0`` (brighter
    towards grazing angles) and the Schlick-GGX form of Smith's shadowing-masking. n [N, 3], d [3] (towards the
    light), view [N, 3] (towards the camera), all unit vectors."""
    a2 = roughness ** 2
    h = d[None] + view
    h /= np.linalg.norm(h, axis=1, keepdims=True).clip(1e-12)
    nh = np.clip((n * h).sum(1), 0.0, 1.0)
    nl = np.clip(n @ d, 0.0, 1.0)
    nv = np.clip((n * view).sum(1), 0.0, 1.0)
    vh = np.clip((view * h).sum(1), 0.0, 1.0)
    D = a2 / (np.pi * (nh * nh * (a2 - 1) + 1) ** 2)
    F = f0 + (1 - f0) * (1 - vh) ** 5
    k = roughness / 2
    G = nl / (nl * (1 - k) + k) * nv / (nv * (1 - k) + k).clip(1e-12)
    spec = D * F * G / (4 * nl * nv).clip(1e-6) * nl
    peak = f0 / (np.pi * a2 * 4)  # n = l = v: D = 1 / (pi a2), F = f0, G = 1
    return np.where(nl > 0, spec / peak, 0.0)


def oiliness(points_model: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N] smooth multiplicative variation of the highlight's strength over the face, 0.5-2 (log-normal-ish,
    median 1): :data:`OILINESS_WAVES` random plane waves of 30-80 mm wavelength at model-frame points [N, 3]."""
    out = np.zeros(len(points_model))
    for _ in range(OILINESS_WAVES):
        w = rng.normal(0, 1, 3)
        w *= 2 * np.pi / (np.linalg.norm(w) * rng.uniform(30.0, 80.0))
        out += np.sin(points_model @ w + rng.uniform(0, 2 * np.pi))
    return np.exp(np.clip(0.35 * out * np.sqrt(2.0 / OILINESS_WAVES), -np.log(2), np.log(2)))


def physical_shading(vm: np.ndarray, vc: np.ndarray, tris: np.ndarray, albedo: np.ndarray, normals: np.ndarray,
                     light: dict, frags, cfg: SyntheticConfig, rng: np.random.Generator,
                     highlight_rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict]:
    """The ``"physical"`` image [H, W, 3] of the rasterized mesh ``frags`` (background left black) and a
    description. Per pixel: interpolated normals; albedo, modulated by :func:`albedo_texture`, x (ambient x
    :func:`ambient_occlusion` + the exact max(cos, 0) directional light x :func:`shadow_visibility`); plus a
    shadowed white highlight (``cfg.highlight``: :func:`microfacet_highlight` times :func:`oiliness`, drawn from
    ``highlight_rng``, or one Blinn-Phong lobe); all tinted by the light's colour. vm / vc [V, 3] model / camera
    frame (mm), albedo / normals [V, 3] per vertex."""
    from redafit.render import interpolate

    H, W = frags.tri_id.shape[1:]
    tris_t = torch.as_tensor(tris).long()
    ao = ambient_occlusion(vc, tris, normals, backend=cfg.backend) if cfg.occlusion else np.ones(len(vc))
    attrs = torch.tensor(np.concatenate([normals, albedo, vm, vc, ao[:, None]], 1), dtype=torch.float64)[None]
    fr = type(frags)(bary=frags.bary.double(), tri_id=frags.tri_id, depth=frags.depth, pix=frags.pix)
    per_px = interpolate(attrs, fr, tris_t)[0].numpy()  # [H, W, 12]
    cov = frags.tri_id[0].cpu().numpy() >= 0
    px = per_px[cov]
    n = px[:, 0:3] / np.linalg.norm(px[:, 0:3], axis=1, keepdims=True).clip(1e-12)
    alb, pm, pc, occ = px[:, 3:6], px[:, 6:9], px[:, 9:12], px[:, 12]
    d = np.asarray(light["direction"], np.float64)
    ks = float(cfg.specular) * rng.uniform(0.5, 1.5)
    shininess = rng.uniform(12.0, 40.0)
    vis = shadow_visibility(vc, tris, pc, d, n, backend=cfg.backend) if cfg.shadows else np.ones(len(pc))
    if cfg.texture > 0:
        alb = alb * albedo_texture(pm, rng, float(cfg.texture))[:, None]
    cos = np.clip(n @ d, 0.0, None)
    view = -pc / np.linalg.norm(pc, axis=1, keepdims=True)
    if cfg.highlight == "microfacet":
        hr = highlight_rng if highlight_rng is not None else np.random.default_rng(0)
        roughness = float(hr.uniform(0.25, 0.45))
        spec = ks * light["intensity"] * microfacet_highlight(n, d, view, roughness) * oiliness(pm, hr)
    else:
        roughness = None
        h = d[None] + view
        h /= np.linalg.norm(h, axis=1, keepdims=True).clip(1e-12)
        spec = ks * light["intensity"] * np.clip((n * h).sum(1), 0.0, None) ** shininess * (cos > 0)
    irr = light["ambient"] * occ + light["intensity"] * cos * vis
    rgb = (np.clip(alb, 0, 1) * irr[:, None] + (spec * vis)[:, None]) * np.asarray(light["tint"])[None]
    img = np.zeros((H, W, 3))
    img[cov] = rgb
    return np.clip(img, 0, 1).astype(np.float32), {
        "shading": "physical", "highlight": cfg.highlight, "specular": round(ks, 4),
        **({"roughness": round(roughness, 4)} if roughness is not None else {"shininess": round(float(shininess), 2)}),
        "cast_shadow_fraction": round(float(((vis < 0.5) & (cos > 0)).mean()) if len(vis) else 0.0, 4),
        "texture": float(cfg.texture), "mean_occlusion": round(float(1 - occ.mean()) if len(occ) else 0.0, 4)}


def _normals_np(v: np.ndarray, tris: np.ndarray) -> np.ndarray:
    from redafit.eval.metrics import vertex_normals

    return vertex_normals(v, tris)


def jaw_landmarks(verts_model: np.ndarray, verts_cam: np.ndarray, uv: np.ndarray, tris: np.ndarray,
                  lid: np.ndarray, min_turn: float = MIN_TURN,
                  allowed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Vertex ids [68] for the projected landmarks with the occluding-side jaw points moved to the outline
    (:func:`redafit.fit.correspondence.outline_jaw_ids`, the rule the fitter uses, on the exact mesh).

    verts_model / verts_cam [V, 3] (model / camera frame, mm), uv [V, 2] projected pixels, lid [68] default ids.
    ``allowed`` [V] bool restricts the outline to the face (an annotator marks the jaw, not the neck or ear).
    """
    ids = lid.copy()
    t = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    jaw = torch.as_tensor(lid[JAW_POINTS])
    centre_u = float(uv[lid[lid >= 0]].mean(0)[0])
    new, side = outline_jaw_ids(t(verts_model), t(verts_cam), t(_normals_np(verts_cam, tris)), t(uv), jaw,
                                centre_u, None if allowed is None else torch.as_tensor(allowed), min_turn)
    ids[JAW_POINTS] = new.numpy()
    return ids, {"occluding": side}


def view_landmark_ids(model, verts_model: np.ndarray, verts_cam: np.ndarray,
                      uv: np.ndarray) -> tuple[np.ndarray, dict]:
    """The 68 landmark vertex ids of one rendered view of ``model`` (:func:`jaw_landmarks` with the model's
    default ids and the jaw outline restricted to its face area): the one rule every synthetic generator uses."""
    return jaw_landmarks(verts_model, verts_cam, uv, model.triangles.cpu().numpy(), default_landmark_vertices(model),
                         allowed=_face_area(model))


def _face_area(model) -> np.ndarray | None:
    """[V] bool: the model's face area (jaw outline and forehead line), or None when unavailable."""
    try:
        from redafit.parsing.model_labels import vertex_face_area

        return vertex_face_area(model).cpu().numpy()
    except Exception:  # noqa: BLE001 - models without the 68 landmark ids: no restriction
        return None


def _write_obj(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    from redafit.io.atomic import atomic_write

    with atomic_write(path, "w") as fh:
        fh.write("# redafit synthetic ground truth (mm)\n")
        np.savetxt(fh, v, fmt="v %.5f %.5f %.5f")
        np.savetxt(fh, f + 1, fmt="f %d %d %d")


# ---------------------------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------------------------
DETAIL_BUMPS = 16  # Gaussian bumps of the out-of-span detail
DETAIL_RADIUS_MM = (8.0, 18.0)


def detail_displacement(model, verts: np.ndarray, rng: np.random.Generator, rms_mm: float) -> np.ndarray:
    """A smooth out-of-span displacement [V, 3] (mm) for the shape ``verts`` [V, 3]: :data:`DETAIL_BUMPS` Gaussian
    bumps centred on random face-area vertices, along the vertex normals, faded to zero over the last 10 mm
    inside the face area's rim and scaled to ``rms_mm`` RMS over the area (no face area: all vertices)."""
    tris = model.triangles.cpu().numpy()
    area = _face_area(model)
    area = np.ones(len(verts), bool) if area is None else area
    idx = np.flatnonzero(area)
    height = np.zeros(len(verts))
    for c in rng.choice(idx, size=min(DETAIL_BUMPS, len(idx)), replace=False):
        r = rng.uniform(*DETAIL_RADIUS_MM)
        d2 = ((verts - verts[c]) ** 2).sum(1)
        height += rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * np.exp(-0.5 * d2 / r ** 2)
    if area.all():
        fade = np.ones(len(verts))
    else:  # distance to the nearest vertex outside the area, ramped over 10 mm
        from scipy.spatial import cKDTree

        fade = np.clip(cKDTree(verts[~area]).query(verts)[0] / 10.0, 0.0, 1.0) * area
    height *= fade
    rms = float(np.sqrt((height[idx] ** 2).mean()))
    if rms <= 0:
        return np.zeros_like(verts)
    return (height * (rms_mm / rms))[:, None] * _normals_np(verts, tris)


def _sample_params(model, cfg: SyntheticConfig, rng: np.random.Generator) -> dict:
    n_id = model.n_id if cfg.n_id is None else min(cfg.n_id, model.n_id)
    alpha = rng.normal(0, 1, n_id) * cfg.id_scale
    beta = np.zeros(model.n_exp)
    if model.n_exp:
        if model.info.expression_prior == "unit":
            k = int(rng.integers(1, cfg.exp_max_active + 1))
            idx = rng.choice(model.n_exp, size=min(k, model.n_exp), replace=False)
            beta[idx] = rng.uniform(0, 1, len(idx))
        else:
            beta = rng.normal(0, cfg.exp_gaussian_std, model.n_exp)
    yaw, pitch, roll = (float(rng.uniform(-a, a)) for a in (cfg.yaw, cfg.pitch, cfg.roll))
    return {"id": alpha, "exp": beta, "yaw": yaw, "pitch": pitch, "roll": roll,
            "fill": float(cfg.face_fill * rng.uniform(0.85, 1.15)), "offset": rng.uniform(-0.05, 0.05, 2)}


def render_case(model, index: int, seed: int, cfg: SyntheticConfig) -> Case:
    """One synthetic case, deterministic in (seed, index)."""
    if cfg.shading not in SHADINGS:
        raise InputError(f"SyntheticConfig.shading: expected one of {', '.join(SHADINGS)}, got {cfg.shading!r}")
    if cfg.highlight not in HIGHLIGHTS:
        raise InputError(f"SyntheticConfig.highlight: expected one of {', '.join(HIGHLIGHTS)}, got {cfg.highlight!r}")
    from redafit.render import interpolate, rasterize
    from redafit.render.camera import (
        Intrinsics,
        euler_to_r,
        pose_rotation,
        project,
        to_clip,
    )
    from redafit.render.shading import shade, vertex_normals

    rng = np.random.default_rng([int(seed), int(index)])
    P = _sample_params(model, cfg, rng)
    tris_t = model.triangles.cpu()
    tris = tris_t.numpy()
    with torch.no_grad():
        vm = model(torch.tensor(P["id"], dtype=torch.float32)[None],
                    torch.tensor(P["exp"], dtype=torch.float32)[None])[0].cpu().double().numpy()
    if cfg.detail_mm > 0:
        vm = vm + detail_displacement(model, vm, np.random.default_rng([int(seed), int(index), 1]), cfg.detail_mm)
    lid = default_landmark_vertices(model)
    W = H = int(cfg.size)
    K = Intrinsics.default(W, H, cfg.focal_factor * max(W, H))
    R = pose_rotation(euler_to_r(P["yaw"], P["pitch"], P["roll"], dtype=torch.float64)[None])[0].numpy()
    known = lid >= 0
    jaw_w = float(np.linalg.norm(vm[lid[0]] - vm[lid[16]])) if known[0] and known[16] else float(np.ptp(vm[:, 0]))
    z = K.fx * jaw_w / (P["fill"] * W)
    c = vm[lid[known]].mean(0)
    off = P["offset"] * W
    t = np.array([off[0] * z / K.fx, off[1] * z / K.fy, z]) - R @ c
    vc = vm @ R.T + t
    vc_t = torch.tensor(vc, dtype=torch.float32)[None]
    uv = project(vc_t, K)[0].double().numpy()

    # appearance
    albedo, alb_info = skin_albedo(model, rng)
    light = random_light(rng)
    sh = light["sh"]
    s = max(1, int(cfg.supersample))
    K2 = K.scaled(W * s, H * s)
    frags = rasterize(to_clip(vc_t, K2), tris_t, (H * s, W * s), backend=cfg.backend)
    normals = vertex_normals(vc_t, tris_t)
    if cfg.shading == "model":
        colour = shade(torch.tensor(albedo, dtype=torch.float32)[None], normals, torch.tensor(sh)[None])
        img = interpolate(colour, frags, tris_t)[0].clamp(0, 1).cpu().numpy()
        look = {"shading": "model"}
    else:
        img, look = physical_shading(vm, vc, tris, albedo, normals[0].double().numpy(), light, frags, cfg,
                                     np.random.default_rng([int(seed), int(index), 2]),
                                     np.random.default_rng([int(seed), int(index), 3]))
    mask = (frags.tri_id[0] >= 0).cpu().numpy()[..., None]
    bg = background(rng, H * s, W * s)
    img = np.where(mask, img, bg)
    if s > 1:
        import cv2

        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    img = img + rng.normal(0, cfg.image_noise, img.shape)
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).astype(np.float32) / 255.0  # as if read from PNG

    # landmarks
    ids, jaw_info = view_landmark_ids(model, vm, vc, uv)
    lm_gt = np.where((ids >= 0)[:, None], uv[np.clip(ids, 0, None)], np.nan)
    lm_noisy = lm_gt + rng.normal(0, cfg.landmark_noise, lm_gt.shape) if cfg.landmark_noise > 0 else lm_gt.copy()
    lm3d = np.where((model.landmark_ids.cpu().numpy() >= 0)[:, None], vm[np.clip(model.landmark_ids.cpu().numpy(),
                                                                                   0, None)], np.nan)
    case_id = f"synth_s{int(seed)}_{int(index):04d}"
    params = {
        "id": case_id, "seed": int(seed), "index": int(index), "model": model.name,
        "identity": np.round(P["id"], 6).tolist(),
        "expression": {model.expression_names[i]: round(float(P["exp"][i]), 6) for i in np.nonzero(P["exp"])[0]},
        "pose": {"yaw_deg": P["yaw"], "pitch_deg": P["pitch"], "roll_deg": P["roll"],
                 "rotation": np.round(R, 8).tolist(), "translation_mm": np.round(t, 4).tolist()},
        "camera": K.to_dict(), "sh": np.round(sh, 6).tolist(), "albedo": alb_info, "jaw": jaw_info, "look": look,
        "landmark_noise_px": float(cfg.landmark_noise), "config": asdict(cfg),
    }
    parsing = render_parsing(model, vc, tris, K, (H, W))
    depth = render_depth(vc, tris, K, (H, W), cfg.depth_noise_mm, np.random.default_rng([int(seed), int(index), 4]))
    return Case(id=case_id, image=img.astype(np.float32), landmarks=lm_noisy.astype(np.float64), parsing=parsing,
                depth=depth,
                scan_vertices=vm, scan_faces=tris.astype(np.int64), scan_landmarks=lm3d,
                scan_landmark_ids=tuple(range(68)), nose_tip=lm3d[30] if np.isfinite(lm3d[30]).all() else None,
                unit="mm", protocol="micc", intrinsics=K,
                meta={"params": params, "landmarks_gt": lm_gt, "vertices_camera": vc, "mask_fraction":
                      float(mask.mean()), "albedo_vertex": albedo.astype(np.float32)})


def write_case(case: Case, out_dir) -> Path:
    """Write a synthetic case under ``out_dir/<id>/``: image.png, landmarks.pts (with the configured noise),
    landmarks_gt.pts, parsing.png (the true parsing, :func:`true_parsing`), depth.png (the true depth, 16-bit mm,
    :func:`render_depth`), mesh_model.obj (ground truth, model frame, mm), landmarks_3d.npy (its 68 landmarks, the
    scoring's ICP start), gt.npz (model and camera frame meshes,
    triangles, 2D/3D landmarks) and params.json, all or none (:func:`redafit.io.atomic.atomic_group`). Returns the
    folder."""
    from redafit.io.atomic import atomic_group

    with atomic_group():
        return _write_case(case, out_dir)


def _write_case(case: Case, out_dir) -> Path:
    from redafit.io.atomic import atomic_path, atomic_write, make_folder
    from redafit.io.images import save_image, write_image_file
    from redafit.landmarks.files import write_landmarks

    d = make_folder(Path(out_dir) / case.id)
    save_image(d / "image.png", (np.clip(case.image, 0, 1) * 255 + 0.5).astype(np.uint8))
    write_landmarks(d / "landmarks.pts", case.landmarks)
    write_landmarks(d / "landmarks_gt.pts", case.meta["landmarks_gt"])
    if case.parsing is not None:
        from redafit.parsing.maps import save_parsing_map

        save_parsing_map(d / "parsing.png", case.parsing)
    if case.depth is not None:  # 16-bit mm
        write_image_file(d / "depth.png", np.clip(np.round(case.depth), 0, 65535).astype(np.uint16))
    _write_obj(d / "mesh_model.obj", case.scan_vertices, case.scan_faces)
    with atomic_write(d / "landmarks_3d.npy") as fh:  # the ICP start, as in memory
        np.save(fh, np.asarray(case.scan_landmarks, np.float64), allow_pickle=False)
    with atomic_path(d / "gt.npz") as tmp:
        np.savez_compressed(tmp, vertices_model=case.scan_vertices.astype(np.float32),
                            vertices_camera=case.meta["vertices_camera"].astype(np.float32),
                            triangles=case.scan_faces.astype(np.int32), landmarks_2d=case.meta["landmarks_gt"],
                            landmarks_3d=case.scan_landmarks)
    with atomic_write(d / "params.json", "w") as fh:
        fh.write(jsonsafe.dumps(case.meta["params"], indent=1))
    return d


def true_parsing(case: Case, model) -> np.ndarray:
    """The true parsing map of a synthetic case (:func:`redafit.render.maps.render_parsing`)."""
    return render_parsing(model, np.asarray(case.meta["vertices_camera"]), np.asarray(case.scan_faces),
                          case.intrinsics, case.image.shape[:2])


def true_parameters(case: Case, model) -> dict:
    """The parameters a synthetic case was drawn with, as a fit's ``init`` dict (``id``, ``exp``, ``rot``,
    ``trans``, each with a leading batch axis of 1), e.g. to start a stage at the truth and see where its loss
    terms pull (a biased term drifts away)."""
    import torch

    from redafit.render.camera import R_FLIP, matrix_to_axis_angle

    P = case.meta["params"]
    R = torch.tensor(P["pose"]["rotation"], dtype=torch.float64)
    rot = matrix_to_axis_angle((R @ R_FLIP.double().T)[None])[0].numpy()
    exp = np.zeros(model.n_exp)
    for name, value in P["expression"].items():
        exp[model.expression_names.index(name)] = value
    ident = np.zeros(model.n_id)
    ident[:len(P["identity"])] = P["identity"]
    return {"id": ident[None], "exp": exp[None], "rot": rot[None],
            "trans": np.asarray(P["pose"]["translation_mm"], np.float64)[None]}


def true_appearance(case: Case, model, albedo_size: int | None = None) -> dict:
    """The lighting a synthetic case was rendered with and its per-vertex albedo as the fit draws albedo (the
    least-squares UV map + region offsets of :func:`redafit.fit.attribute_stages.project_albedo`; map side
    ``albedo_size``, default the fit's), as ``init`` entries ``sh`` [1, 9, 3], ``albedo`` [1, A, A, 3],
    ``albedo_reg`` [1, 7, 3]."""
    from redafit.fit import FitConfig
    from redafit.fit.attribute_stages import project_albedo

    albedo_size = FitConfig().albedo_size if albedo_size is None else albedo_size

    if "albedo_vertex" not in case.meta:
        raise InputError(f"case {case.id}: no true albedo (only cases made by render_case carry it)")
    alb, reg = project_albedo(model, case.meta["albedo_vertex"], int(albedo_size))
    return {"sh": np.asarray(case.meta["params"]["sh"], np.float32)[None], "albedo": alb, "albedo_reg": reg}


@dataclass(frozen=True)
class TruthStartMethod:
    """An evaluation method for synthetic cases that measures where loss terms pull a face *from the truth*.

    One Adam stage - the full preset's attribute stage (its weights, priors, iterations and learning rates) with
    only the loss ``terms`` (any of ``landmarks``, ``color``, ``mask``) and the shape priors - starts at the case's
    true identity, expression and pose. ``appearance`` says what the colour term works with: ``"true"`` (the
    case's lighting and its albedo as the fit's albedo model draws it, both fixed), ``"true_light"`` (true
    lighting, albedo estimated) or ``"estimated"`` (both estimated from their usual starts, as in a real fit).
    A term whose minimum is the truth leaves the face there; the error it ends with is its bias plus what the
    noisy landmarks pull in - the floor a fit that starts elsewhere cannot go below with these terms.
    ``albedo_size`` (None: the fit's :attr:`FitConfig.albedo_size`) is the side of the UV albedo map: with
    ``"true"`` appearance a finer map draws the case's albedo more exactly (least-squares residual ~0.01 at 4²,
    ~0.003 at 16² on ICT), which separates what the albedo model cannot draw from the colour term's own bias.
    ``occlusion`` (None: the fit's default, :attr:`FitConfig.occlusion`) switches the fit's ambient occlusion.
    """

    terms: tuple = ("landmarks", "color")
    appearance: str = "estimated"
    label: str = ""
    albedo_size: int | None = None
    occlusion: bool | None = None

    @property
    def name(self) -> str:
        return self.label or "truth-start " + "+".join(self.terms) + f" ({self.appearance})"

    def config(self):
        from dataclasses import replace

        from redafit.fit.attribute_stages import PRIORS, full_preset

        if self.appearance not in ("true", "true_light", "estimated"):
            raise InputError(f"TruthStartMethod: appearance must be true, true_light or estimated, got "
                             f"{self.appearance!r}")
        attrs = tuple(t for t in self.terms if t in ("color", "mask", "depth"))
        cfg = full_preset(attrs or ("color",), freeform=False)
        stage = cfg.stage("attributes")
        colour = "color" in self.terms
        shape_priors = {k for k in PRIORS if not k.startswith(("albedo", "sh"))}
        params = ["rot", "trans", "id", "exp"]
        keep = set(self.terms) | shape_priors
        if colour:  # the fit's highlight (FitConfig.specular) draws no true quantity: estimated in every case
            params += ["spec"]
        if colour and self.appearance != "true":
            params += ["albedo", "albedo_reg"]
            keep |= {k for k in PRIORS if k.startswith("albedo")}
        if colour and self.appearance == "estimated":
            params += ["sh"]
            keep.add("sh_prior")
        stage = replace(stage, name="truth_start", params=tuple(params),
                        losses={k: v for k, v in stage.losses.items() if k in keep})
        cfg = replace(cfg, stages=(stage,), attributes=attrs)
        if self.occlusion is not None:
            cfg = replace(cfg, occlusion=bool(self.occlusion))
        return cfg if self.albedo_size is None else replace(cfg, albedo_size=int(self.albedo_size))

    def __call__(self, case, model):
        import time

        from redafit.eval.runner import fit_prediction
        from redafit.fit.api import fit_batch

        cfg = self.config()
        init = true_parameters(case, model)
        if "color" in self.terms and self.appearance != "estimated":
            app = true_appearance(case, model, cfg.albedo_size)
            init.update({"sh": app["sh"]} if self.appearance == "true_light" else app)
        t = time.perf_counter()
        res = fit_batch([case.load_image()], [case.load_landmarks()], model, cfg, [case.intrinsics], init=init)[0]
        return fit_prediction(res, time.perf_counter() - t)


def generate_synthetic(model, n: int, seed: int = 0, out_dir=None, size: int = 256, landmark_noise: float = 0.0,
                       config: SyntheticConfig | None = None, **overrides) -> list[Case]:
    """``n`` synthetic cases from ``model`` (any :class:`~redafit.model.FaceModel`), deterministic in ``seed``.

    ``size`` and ``landmark_noise`` (px) override ``config``; so do other :class:`SyntheticConfig` fields given
    as keywords. With ``out_dir`` each case is also written (see :func:`write_case`) plus a ``manifest.csv``
    that ``redafit eval --manifest`` accepts.
    """
    if n < 0:
        raise InputError(f"synthetic: n must be >= 0, got {n}")
    cfg = config or SyntheticConfig()
    from dataclasses import replace

    cfg = replace(cfg, size=int(size), landmark_noise=float(landmark_noise), **overrides)
    if cfg.size < 32:
        raise InputError(f"synthetic: image size must be >= 32 px, got {cfg.size}")
    cases = [render_case(model, i, seed, cfg) for i in range(n)]
    if out_dir is not None:
        write_cases(cases, out_dir)
    return cases


def write_cases(cases, out_dir) -> Path:
    """Write each synthetic case (:func:`write_case`) and a ``manifest.csv`` that ``redafit eval --manifest`` reads
    back to the same cases (and scores to the same numbers), all or none. Returns the manifest's path."""
    from redafit.io.atomic import atomic_group, make_folder

    with atomic_group():
        return _write_cases(cases, make_folder(out_dir))


def _write_cases(cases, out: Path) -> Path:
    from redafit.io.atomic import atomic_write

    rows = ["id,image,scan,landmarks,nose_tip,unit,parsing,depth,scan_landmarks,focal"]
    for c in cases:
        d = write_case(c, out)
        nose = " ".join(f"{x:.4f}" for x in c.nose_tip) if c.nose_tip is not None else ""
        parsing = f"{d.name}/parsing.png" if c.parsing is not None else ""
        depth = f"{d.name}/depth.png" if c.depth is not None else ""
        rows.append(f"{c.id},{d.name}/image.png,{d.name}/mesh_model.obj,{d.name}/landmarks.pts,{nose},mm,"
                    f"{parsing},{depth},{d.name}/landmarks_3d.npy,{c.intrinsics.fx:.6g}px")
    with atomic_write(out / "manifest.csv", "w") as fh:
        fh.write("\n".join(rows) + "\n")
    return out / "manifest.csv"
