"""The ReDA attribute stages (paper Sec. 6.2): colour, face-parsing mask and depth through the soft rasterizer,
and the free-form ARAP stage.

* :func:`full_preset` / :func:`configure` build the four-stage :class:`~redafit.fit.config.FitConfig`:
  (1) rigid pose from landmarks, (2) identity + expression from landmarks, (3) attributes + landmarks on pose,
  identity, expression, lighting and albedo, (4) everything plus the per-vertex displacement regularised by
  ARAP, with the landmark loss dropped for landmarks already within ``landmark_drop_px``.
* :func:`prepare` turns the photos into the observed attribute pyramids (resampled to ``fit_size``), parses the
  faces (landmarks + skin colour, or the network of ``FitConfig.parsing_net``), and sets up the model-side
  labels, albedo and ARAP state on the fit context; the registered loss terms read them.
* :func:`finish` writes the per-stage quality report (landmark error, parsing IoU per region, photometric
  L2,1 error and PSNR over the face region) and a failure flag into the :class:`~redafit.fit.FitResult`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from redafit.config import RenderConfig
from redafit.errors import InputError
from redafit.fit import arap
from redafit.fit.config import _LR, LANDMARKS, RIGID, FitConfig, StageConfig
from redafit.fit.losses import register

log = logging.getLogger("redafit")

ATTRIBUTES = ("color", "mask", "depth")
# Face regions whose albedo differs from the skin by a colour of their own (``albedo_reg``), blended in over
# ``ALBEDO_BORDER_RINGS`` vertex rings: the smooth low-resolution map alone cannot draw dark brows or red lips, and
# the shape then bent to move the shading onto them (started at the true shape with exact landmarks, the colour
# term alone drifted 0.95 mm away with the 16^2 map, 0.77 mm with a 64^2 map). The nose is skin coloured: an
# offset of its own would only absorb the nose's shading.
ALBEDO_REGIONS = ("brows", "eyes", "upper_lip", "lower_lip", "mouth_interior")
ALBEDO_BORDER_RINGS = 2
# The colour and depth terms compare only pixels the rendered face area fully covers (soft coverage >= this;
# 0 = every valid pixel, the silhouette band included). The model's face area ends where the photo's skin goes on
# (forehead, neck, towards the ears), so at its rim the render fades to black over skin: comparing there pulled
# the outline towards the parsed face mask (started at the true shape with exact landmarks: 0.38 -> 0.26 mm
# drift, landmarks alone 0.14). Silhouettes are the mask term's job; colour informs through the shading inside.
# The depth term (RGB-D) compares the same pixels (depth_loss): premultiplied by the coverage, its rim would fade
# towards z_ref, the face's median depth (session 17).
INTERIOR_COVERAGE = 0.99
DEPTH_UNIT_MM = 50.0  # depth attribute = (z - z_ref) / DEPTH_UNIT_MM

# Tuned on synthetic seeds 1-2 with 1.5 px landmark noise (2.5 % of the eye distance, about what a 68-point
# detector leaves; the benchmark reports seed 0): the landmark weight and the shape priors follow the same noise
# level as the landmark stage (their ratio sets how far the shape may follow noisy landmarks: the earlier 200 / 1e-4,
# tuned on noise-free landmarks, made the full fit 13 % worse than the landmark-only fit at 1.5 px). The colour
# weight rose 1 -> 10 once the colour term stopped being biased (region albedo, interior-only comparison): tuning
# set 0.841 mm at 1, 0.807 at 4, 0.771 at 10, 0.777 at 25 (landmark-only 0.853); a mask weight of 3 or 0.5 was
# worse than 1. With the 4^2 albedo map (FitConfig.albedo_size) the tuning set preferred more colour weight
# (0.704 at 10, 0.686 at 20, 0.754 at 40 with two faces astray), but on seed 0 weight 20 sent faces astray even
# when started at the truth with the true lighting and albedo (1.05 mm vs 0.77 at 10): kept at 10.
# Session 12, with the landmark guard (StageConfig.landmark_guard) and the ambient occlusion, Blinn-Phong highlights:
# colour weight 20 read 0.670 mm on seeds 1-2 against 0.689 at 10 (the z-buffer at the same weights: 0.719 against
# 0.735), 40 0.690, 40 with mask 2 0.683, 80 with mask 4 0.732; with the specular term on microfacet highlights 20
# 0.600, 30 0.592, 20 with mask 2 0.600. Session 11 had found 20 better on the tuning seeds too (0.665 / 0.650 on
# seeds 1-2 / 3) but it moved the photos' landmarks off their annotations, which the guard now prevents.
# Session 13: the colour term had compared the render premultiplied by its soft coverage, whose gradient inside the
# face is discretisation noise ~20x the silhouette band's (see soft_render's FULL_COVER_EXACT and color_loss): the
# noise grew with the colour weight and was why ReDA got worse above weight 20-30 while the z-buffer kept improving
# to 160. Compared unpremultiplied (seeds 1-2, microfacet images, 1 pyramid level, Gaussian sigma 0.5): colour/mask
# 160/4 0.544 -> 0.492 mm; then 80/4 0.528, 160/4 0.492, 320/4 0.470 (the z-buffer at 160/1 0.489, 160/4 0.502,
# 160/16 0.510); mask 1 0.557 and 16 0.547 at 160 (premultiplied). 160/4 with the coarse-to-fine pyramid
# (COARSE_LEVELS, 4 levels, sigma 0.5): 0.496 (the former defaults, 20/1 with 4 levels at sigma 1: 0.600); then
# mask 16 0.489, 32 0.493, colour alone 0.500: mask 16, the clearest gain over colour alone. 320 was not taken: a
# heavier colour weight is rewarded in this near-Lambertian synthetic world beyond what real photos (hair,
# make-up, complex light) would bear.
# Session 17, RGB-D (the synthetic cases' true depth, 1 mm sensor noise, whole mm; the photo's own parsing; depth
# compared on the interior, depth_loss): depth weight 4 / 16 / 64 / 256 -> ReDA 0.405 / 0.331 / 0.304 / 0.353 mm,
# the z-buffer 0.418 / 0.346 / 0.284 / 0.289 (colour + mask alone: 0.491 / 0.510). 64: a registered sensor's depth
# is the most direct evidence of shape there is; a noisier or badly registered one may want --weight depth=16.
ATTR_WEIGHTS = {"color": 160.0, "mask": 16.0, "depth": 64.0}
LANDMARK_WEIGHT = 50.0
# exp_l1: the landmark stage's sparsity weight (3e-4) times the landmark weight ratio (50); 0.005 and 0.05 were level
# albedo_smooth (per unit of UV, any map size): with the 8^2 map 0.16 and 0.47 were level on seeds 1-2 (0.676 /
# 0.674 mm), 0.05 worse (0.698); the 16^2 map was worse at 0.16 and 0.47 (0.727 / 0.700); the 4^2 map with the old,
# 25x weaker 0.00625 read 0.699 (see FitConfig.albedo_size for why the map resolution matters)
PRIORS = {"id_prior": 1e-3, "exp_prior": 5e-4, "exp_l1": 0.015, "sh_prior": 1e-3, "albedo_smooth": 0.16,
          "albedo_sym": 0.5, "albedo_skin": 0.05}


def _attribute_stage(attributes, weights=None) -> StageConfig:
    w = {**ATTR_WEIGHTS, **(weights or {})}
    losses = {"landmarks": LANDMARK_WEIGHT, **{a: w[a] for a in attributes}}
    losses.update({k: v for k, v in PRIORS.items() if "color" in attributes or not k.startswith(("albedo", "sh"))})
    params = ("rot", "trans", "id", "exp") + (("sh", "spec", "albedo", "albedo_reg") if "color" in attributes else ())
    return StageConfig(name="attributes", params=params, losses=losses, iters=120, lr=_LR, contour_every=10,
                       landmark_guard=True, coarse_levels=COARSE_LEVELS)


FREEFORM_SMOOTH = 30.0  # lambda of the displacement preconditioner (I + lambda L), L with mean edge weight 1
FREEFORM_LR = 0.1  # mm: the largest per-step move (uniform Adam) of the preconditioned displacement


def _freeform_stage(attributes, weights=None) -> StageConfig:
    base = _attribute_stage(attributes, weights)
    losses = dict(base.losses, arap=2e-3, disp_l2=1e-5)
    # The displacement is optimised through the Laplacian preconditioner with one step scale per image
    # (``disp_smooth``, uniform Adam): plain per-vertex Adam moves every displacement by ~lr per step whatever its
    # gradient, so 0.05 mm let the vertices with little image evidence wander (+15 % shape error on the tuning
    # set) and 0.003 mm, which kept the stage neutral, moved the surface by < 0.2 mm (a no-op). Tuned on seeds 1-2
    # with and without out-of-span detail (SyntheticConfig.detail_mm 1.0; free-form off 0.967 / 0.714 mm):
    # lambda 30 with lr 0.1 mm 0.941 / 0.699, lr 0.2 0.937 / 0.702; the plain 0.003 mm steps 0.954 / 0.704.
    # The paper's landmark drop (landmarks within a threshold stop pulling) is ``landmark_drop_px``; with
    # accurate landmarks any threshold let the attribute terms drag them (0.5 px: +2.5 % on seeds 1-2), so it is off.
    return replace(base, name="freeform", params=base.params + ("disp",), losses=losses, iters=30,
                   lr=dict(base.lr, disp=FREEFORM_LR), landmark_drop_px=0.0, arap_every=5,
                   disp_smooth=FREEFORM_SMOOTH, coarse_levels=(COARSE_LEVELS[1],) * 2)


FIT_SIZE = 192  # same accuracy as 256 on the tuning set, ~1.6x faster per iteration
# Pyramid levels of the fit's attribute losses. The paper's 6 levels at the 192 px fit size go down to a 6 px
# image, which holds no face left to compare; the tuning set (seeds 1-2, full fit, 8^2 albedo map) read 0.670 mm
# at 3 levels, 0.658 at 4 (coarsest level 24 px), 0.664 at 5, 0.676 at 6, 0.687 at 7. Keep the coarsest level
# near 24 px when changing the fit size (--pyramid-levels). With 4 levels these were level (0.655-0.662): 3 slices,
# mask weight 2, albedo_smooth 0.47, attribute-stage id/exp steps doubled; worse: kernel sigma 1.25 (0.674) and, at
# 6 levels, sigma 0.7 (0.693) or 1.5 (0.703), depth temperature 0.02 (0.685); id_prior 5e-4 read 0.650 but 2.5e-4
# sent two faces astray (0.762) and 2e-3 one (0.748), so it stays 1e-3.
FIT_PYRAMID_LEVELS = 4
# Session 13, at colour/mask 160/4 (seeds 1-2): the Gaussian at sigma 0.5 (3 taps) 0.492 mm vs sigma 1 (5 taps)
# 0.515 (1 level); the plain sum over 4 levels 0.581 (sigma 1) / 0.535 (sigma 0.5) against a coarse-to-fine pass
# whose coarse levels fade from weight 1 to 0 over the attribute stage, the free-form stage on level 0 only, 0.522
# (sigma 1) / 0.497 (sigma 0.5); switching them off at mid-stage 0.533 (sigma 1). At heavy colour weights the
# coarse levels' low-frequency residuals (the light the fit cannot draw) bend the shape; the pass keeps their wide
# basin for the first iterations and ends on the full-resolution level. Mask weight 16 / 32 at colour 160: 0.489 /
# 0.493 (the z-buffer at 160/32: 0.498): level.
FIT_SIGMA, FIT_KERNEL = 0.5, 3
COARSE_LEVELS = (1.0, 0.0)


def fit_render_config(**kw) -> RenderConfig:
    """The attribute stages' default :class:`RenderConfig`: ReDA with :data:`FIT_PYRAMID_LEVELS` levels and the
    fit's Gaussian (:data:`FIT_SIGMA`, :data:`FIT_KERNEL`) (``kw`` overrides any field)."""
    return RenderConfig(**{"pyramid_levels": FIT_PYRAMID_LEVELS, "sigma": FIT_SIGMA, "kernel_size": FIT_KERNEL,
                           **kw})


def full_preset(attributes=("color", "mask"), freeform: bool = True, render: RenderConfig | None = None,
                fit_size: int = FIT_SIZE, weights: dict | None = None) -> FitConfig:
    """The ReDA four-stage fit (three without ``freeform``); ``weights`` overrides :data:`ATTR_WEIGHTS`."""
    stages = [RIGID, LANDMARKS, _attribute_stage(attributes, weights)]
    if freeform:
        stages.append(_freeform_stage(attributes, weights))
    return FitConfig(stages=tuple(stages), attributes=tuple(attributes), freeform=freeform,
                     render=render or fit_render_config(), fit_size=fit_size)


def fast_preset() -> FitConfig:
    """The same four stages and weights with the plain z-buffer: 25-40 % less time than ReDA, and level with it
    on the synthetic benchmark (see the README). Sessions 12-13 gave it weights of its own, 8x ReDA's of then; since
    ReDA takes the same ones (docs/ABLATIONS.md, session 13) it has none."""
    return full_preset(render=RenderConfig.zbuffer())


def attribute_weights(config: FitConfig) -> dict:
    """The attribute weights {attribute: weight} of a full-type config's attribute stage; attributes it does not use
    get :data:`ATTR_WEIGHTS` scaled as its colour weight is (e.g. the depth of a config built with other weights)."""
    try:
        losses = config.stage("attributes").losses
    except KeyError:
        return {}
    scale = losses["color"] / ATTR_WEIGHTS["color"] if "color" in losses else 1.0
    return {a: float(losses[a]) if a in losses else ATTR_WEIGHTS[a] * scale for a in ATTRIBUTES}


def configure(config: FitConfig, attributes=None, raster=None, raster_backend="auto", pyramid_levels=None,
              slices=None, freeform=None, fit_size=None) -> FitConfig:
    """Rebuild a full-type (``full`` or ``fast``) config with ablation options (None keeps the config's value; the
    attribute weights are kept, :func:`attribute_weights`)."""
    attributes = tuple(attributes) if attributes else tuple(config.attributes) or ("color", "mask")
    freeform = config.freeform if freeform is None else freeform
    render = config.render or fit_render_config()
    if raster == "zbuffer":
        render = RenderConfig.zbuffer(backend=raster_backend)
    elif raster == "reda" and render.mode != "reda":
        render = fit_render_config(backend=raster_backend)
    kw = {"backend": raster_backend}
    if render.mode == "reda":
        if pyramid_levels is not None:
            kw["pyramid_levels"] = pyramid_levels
        if slices is not None:
            kw["slices"] = slices
    render = replace(render, **kw)
    new = full_preset(attributes, freeform, render, fit_size or config.fit_size, attribute_weights(config))
    return replace(new, n_id=config.n_id, n_exp=config.n_exp, focal=config.focal, seed=config.seed,
                   albedo_size=config.albedo_size, texture_size=config.texture_size,
                   landmark_sigma=config.landmark_sigma, save_stages=config.save_stages,
                   parsing_net=config.parsing_net, occlusion=config.occlusion,
                   specular=config.specular, specular_exponent=config.specular_exponent,
                   landmark_guard=config.landmark_guard)


# ------------------------------------------------------------------------------------------------- preparation
def face_crop(landmarks: np.ndarray, margin: float = 1.9) -> tuple[float, float, float]:
    """Square crop (x0, y0, side) in pixels around the face: the landmarks' box, grown to take in the forehead
    and some background (``margin`` x its larger side), centred a little above the box centre."""
    p = landmarks[np.isfinite(landmarks).all(1)]
    lo, hi = p.min(0), p.max(0)
    side = float(max(hi - lo) * margin)
    cx, cy = (lo + hi) / 2
    cy -= 0.12 * (hi[1] - lo[1])
    return float(cx - side / 2), float(cy - side / 2), max(side, 8.0)


SHRINK_FIRST = 1 / 64  # output/crop scale below which crop_resize area-shrinks the image before its prefilter


def crop_resize(img: np.ndarray, x0: float, y0: float, side: float, size: int, nearest: bool = False):
    """The square (x0, y0, side) of img resampled to size x size (zeros outside the image) and the [size, size]
    bool map of canvas pixels that lie inside the image.

    The mapping is exact to sub-pixel precision - canvas coordinate ``u = (x - x0) * size / side`` in the
    corner convention of :mod:`redafit.render.camera` (pixel i covers [i, i + 1)) - because the attribute losses
    compare the photo with a render through the same camera (the earlier crop, rounded to whole source pixels, could
    shift the photo by up to a pixel against the render; on the 10-case synthetic benchmark the exact crop
    measured level with it, 1.033 vs 1.043 mm, within noise). Downscaling is antialiased by a Gaussian prefilter
    matched to the box of an area resize (variance (1/s^2 - 1) / 12 per axis, s = size / side)."""
    import cv2

    s = size / side
    h, w = img.shape[:2]
    src = np.ascontiguousarray(img, dtype=np.float32)
    if src.ndim == 2:
        src = src[..., None]
    C = src.shape[2]
    fx = fy = 1.0  # the source's scale against img's, per axis
    if not nearest and s < SHRINK_FIRST:
        # a crop dozens of times the output's size (a diverged fit's mesh, an absurd focal length): the prefilter's
        # kernel would span thousands of pixels (a negative focal length hung here for minutes, gigabytes growing),
        # so the image is area-shrunk first to four times the output's scale
        nh, nw = max(1, round(h * 4 * s)), max(1, round(w * 4 * s))
        src = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA).reshape(nh, nw, C)
        fx, fy = nw / w, nh / h
    sx, sy = s / fx, s / fy
    if not nearest and min(sx, sy) < 1:
        sig_x, sig_y = (math.sqrt(max(1 / v ** 2 - 1, 0.0) / 12) for v in (sx, sy))
        src = cv2.GaussianBlur(src, (0, 0), sigmaX=sig_x, sigmaY=sig_y, borderType=cv2.BORDER_REFLECT)
        src = src.reshape(src.shape[0], src.shape[1], C)
    # pixel indices (centres at integer coordinates): dst = s * (x + 0.5 - x0) - 0.5 for the image's x, where
    # x + 0.5 = (x_src + 0.5) / fx for the source's
    M = np.array([[sx, 0.0, (0.5 / fx - x0) * s - 0.5], [0.0, sy, (0.5 / fy - y0) * s - 0.5]])
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    chans = [cv2.warpAffine(np.ascontiguousarray(src[..., c]), M, (size, size), flags=interp,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) for c in range(C)]
    out = np.stack(chans, -1).astype(np.float32)
    u = (np.arange(size) + 0.5) / s
    inside_x = (x0 + u >= 0) & (x0 + u <= w)
    inside_y = (y0 + u >= 0) & (y0 + u <= h)
    inside = inside_y[:, None] & inside_x[None, :]
    out[~inside] = 0
    return out, inside


def _vertex_uv(model) -> torch.Tensor:
    """One UV coordinate per vertex [V, 2] (the first corner that uses it)."""
    tris = model.triangles.reshape(-1)
    uvt = model.uv_triangles.reshape(-1)
    vid = torch.zeros(model.n_vertices, dtype=torch.long, device=tris.device)
    vid[tris.flip(0)] = uvt.flip(0)
    return model.uv[vid] if model.has_uv else torch.zeros(model.n_vertices, 2, device=tris.device)


def _mirror_index(model) -> torch.Tensor:
    """For each vertex, the nearest vertex of the mirrored mean shape (x -> -x): a symmetry map [V]."""
    from scipy.spatial import cKDTree

    m = model.mean.detach().cpu().numpy()
    _, idx = cKDTree(m).query(m * np.array([-1.0, 1.0, 1.0]))
    return torch.as_tensor(idx, dtype=torch.long, device=model.mean.device)


def prepare(ctx, images: list[np.ndarray], config: FitConfig, depths=None, parsings=None) -> dict:
    """Observed attributes at the fit resolution and the model-side data; returns the fitter hooks.

    The photos are parsed by :func:`redafit.parsing.parse_image`, with the network of ``config.parsing_net``
    when set (loaded once per file, :func:`redafit.parsing.network.cached_parsing_network`), or from a given
    parsing map of class ids per image (``parsings[b]``, registered to the photo: :mod:`redafit.parsing.maps`)."""
    from redafit.parsing.image import parse_image
    from redafit.parsing.maps import check_parsing_map
    from redafit.parsing.model_labels import vertex_face_area, vertex_labels
    from redafit.parsing.network import cached_parsing_network
    from redafit.parsing.regions import LANDMARK_ONLY_REGIONS, merge_into_skin
    from redafit.render.occlusion import mean_shape_occlusion
    from redafit.render.reda import observed_pyramid

    model, dev = ctx.model, ctx.model.mean.device
    cfg = config.render or fit_render_config()
    B = len(images)
    S = int(config.fit_size)
    Hc = Wc = S
    colour = np.zeros((B, S, S, 3), np.float32)
    labels = np.zeros((B, S, S, 7), np.float32)
    valid = np.zeros((B, S, S, 1), np.float32)
    face = np.zeros((B, S, S, 1), np.float32)
    depth_obs = np.zeros((B, S, S, 1), np.float32)
    depth_ok = np.zeros((B, S, S, 1), np.float32)
    cam = ctx.cam.clone()
    z_ref = torch.zeros(B, device=dev)
    if ctx.targets.kind != "68":
        raise InputError("the attribute stages need 68 landmarks; with 5-point landmarks use --preset landmarks")
    if parsings is not None and len(parsings) != B:
        raise InputError(f"parsings: expected one map (or None) per image, got {len(parsings)} for {B}")
    maps = [None if p is None else check_parsing_map(p, f"parsing map of image {b}")
            for b, p in enumerate(parsings or [None] * B)]
    for b, (m, im) in enumerate(zip(maps, images)):
        if m is not None and m.shape != im.shape[:2]:
            raise InputError(f"parsing map of image {b}: {m.shape[1]}x{m.shape[0]} does not match the image "
                             f"({im.shape[1]}x{im.shape[0]})")
    net_path = getattr(config, "parsing_net", None)
    network = cached_parsing_network(net_path, dev) if net_path and not all(m is not None for m in maps) else None
    # landmark-drawn nose and brow regions are compared as skin on both sides (see LANDMARK_ONLY_REGIONS); a
    # network's or a given map's are image regions of their own, and both sides keep all 7 regions. The model side
    # is shared by the batch: when some photos are parsed from landmarks, every photo merges them
    merged = () if network is not None or all(m is not None for m in maps) else LANDMARK_ONLY_REGIONS
    for b, im in enumerate(images):
        lm_full = ctx.targets.points[b].cpu().numpy().copy()
        lm_full[ctx.targets.weight[b].cpu().numpy() == 0] = np.nan
        x0, y0, side = face_crop(lm_full)
        sc = S / side
        cam[b] = cam[b] * sc - torch.tensor([0, 0, x0 * sc, y0 * sc], device=dev, dtype=cam.dtype)
        small, inside = crop_resize(im, x0, y0, side, S)
        lm = (lm_full - np.array([x0, y0], np.float32)) * sc
        cls = None
        if maps[b] is not None:
            cls = crop_resize(maps[b].astype(np.float32), x0, y0, side, S, nearest=True)[0][..., 0]
            cls = np.rint(cls).astype(np.int64)
        par = parse_image(small, lm, network=network, classes=cls)
        colour[b] = small
        labels[b] = merge_into_skin(par.labels, merged) * inside[..., None]
        # eyes are ignored by the attribute losses: models such as ICT have holes there, and the landmarks
        # already pin the eye corners and lids
        valid[b, ..., 0] = par.valid & inside & ~par.region("eyes")
        face[b, ..., 0] = par.face_mask & inside
        if depths is not None and depths[b] is not None:
            dd, _ = crop_resize(np.asarray(depths[b], np.float32)[..., None], x0, y0, side, S, nearest=True)
            dd = dd[..., 0]
            ok = (dd > 0) & np.isfinite(dd) & inside
            fm = ok & par.face_mask
            zr = float(np.median(dd[fm])) if fm.any() else float(ctx.params.trans[b, 2].detach())
            z_ref[b] = zr
            depth_ok[b, ..., 0] = fm
            depth_obs[b, ..., 0] = np.where(ok, (dd - zr) / DEPTH_UNIT_MM, 0)
        else:
            z_ref[b] = float(ctx.params.trans[b, 2].detach())
    sizes = [(S, S)] * B
    t = lambda a: torch.as_tensor(a, device=dev)  # noqa: E731
    colour_t, labels_t, valid_t, face_t = t(colour), t(labels), t(valid), t(face)
    ex = ctx.extras
    ex.update(render_cfg=cfg, canvas=(Hc, Wc), cam_fit=cam, image_fit=colour_t, labels_obs=labels_t, valid=valid_t,
              face_obs=face_t, z_ref=z_ref, sizes=sizes, attributes=tuple(config.attributes))
    ex["obs_colour"] = colour_t * face_t  # its pyramid depends on the render (INTERIOR_COVERAGE): see color_loss
    ex["pyr_labels"] = observed_pyramid(labels_t, valid_t, cfg)
    if depths is not None:
        ex["depth_ok"] = t(depth_ok)
        ex["obs_depth"] = t(depth_obs)  # its pyramid depends on the render (INTERIOR_COVERAGE): see depth_loss
    # model side
    face_v = vertex_face_area(model)
    tris = model.triangles
    ex["tris_face"] = tris[face_v[tris].all(1)]
    vlabels = vertex_labels(model)
    ex["vlabels"] = merge_into_skin(vlabels, merged)
    ex["vuv"] = _vertex_uv(model)
    ex["mirror"] = _mirror_index(model)
    ex["skin_v"] = (vlabels[:, 0] > 0.5) & face_v
    ex["albedo_basis"] = albedo_basis(model)  # [V, 7]
    ex["occlusion"] = mean_shape_occlusion(model) if getattr(config, "occlusion", False) else None
    ex["specular_exponent"] = float(config.specular_exponent) if getattr(config, "specular", False) else 0.0
    # albedo initialisation (unless the fit was given one): the mean observed skin colour
    skin_px = labels_t[..., 0:1] * valid_t
    mean_skin = (colour_t * skin_px).sum((0, 1, 2)) / skin_px.sum().clamp_min(1)
    if "albedo" not in ex.get("init_names", ()):
        with torch.no_grad():
            ctx.params.albedo[:] = mean_skin.clamp(0.05, 0.95)
    ex["mean_skin"] = mean_skin
    ex["quality"] = {}
    ex["save_stages"] = getattr(config, "save_stages", None)
    hooks = {"before_step": [_lighting_hook, _arap_hook], "after_backward": [_smooth_step_hook]}
    return hooks


# ---------------------------------------------------------------------------------------------------- rendering
def _clip_batch(points_cam: torch.Tensor, cam: torch.Tensor, H: int, W: int, near=10.0, far=10000.0):
    """Camera-frame [B, V, 3] -> clip [B, V, 4] with per-image intrinsics cam [B, 4] on an H x W canvas."""
    x, y, z = points_cam.unbind(-1)
    fx, fy, cx, cy = (cam[:, i:i + 1] for i in range(4))
    xc = (2 * fx / W) * x + (2 * cx / W - 1) * z
    yc = (2 * fy / H) * y + (2 * cy / H - 1) * z
    zc = z * (far + near) / (far - near) - 2 * far * near / (far - near)
    return torch.stack([xc, yc, zc, z], -1)


def albedo_basis(model) -> torch.Tensor:
    """Blend weights [V, 7] of the region albedo offsets: the soft region labels of the :data:`ALBEDO_REGIONS`
    (zero for the skin and nose channels)."""
    from redafit.parsing.model_labels import soft_vertex_labels
    from redafit.parsing.regions import REGION_NAMES

    keep = torch.tensor([n in ALBEDO_REGIONS for n in REGION_NAMES], device=model.mean.device, dtype=torch.float32)
    return soft_vertex_labels(model, ALBEDO_BORDER_RINGS) * keep


def sample_albedo(albedo: torch.Tensor, albedo_reg: torch.Tensor, vuv: torch.Tensor,
                  basis: torch.Tensor | None) -> torch.Tensor:
    """Per-vertex albedo [B, V, 3] of a UV albedo map [B, A, A, 3] (bilinear at the vertex UVs [V, 2]) plus the
    region offsets [B, 7, 3] blended by ``basis`` [V, 7] (None: no offsets). Linear in the map and offsets.

    The map's edge texels extend to the UV square's border: with zero padding the vertices within half a texel
    of it (ICT: the face's sides and forehead top, 1.7 % of its vertices at 16^2, 15 % at 4^2) got a darkened
    albedo, which the shape then bent to explain."""
    grid = torch.stack([vuv[:, 0] * 2 - 1, 1 - 2 * vuv[:, 1]], -1)[None, None].expand(albedo.shape[0], 1, -1, 2)
    out = F.grid_sample(albedo.permute(0, 3, 1, 2), grid.to(albedo.dtype), mode="bilinear", padding_mode="border",
                        align_corners=False)
    out = out[:, :, 0].permute(0, 2, 1)
    if basis is not None:
        out = out + torch.einsum("vr,brc->bvc", basis.to(albedo.dtype), albedo_reg)
    return out


def vertex_albedo(ctx) -> torch.Tensor:
    """Per-vertex albedo [B, V, 3] of the fit (:func:`sample_albedo` of the fitted map and region offsets)."""
    p = ctx.params
    return sample_albedo(p._expand(p.albedo), p._expand(p.albedo_reg), ctx.extras["vuv"],
                         ctx.extras.get("albedo_basis"))


@torch.no_grad()
def project_albedo(model, albedo_v: np.ndarray, size: int, ridge: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """The fit's albedo parameters closest to a per-vertex albedo ``albedo_v`` [V, 3]: least squares over the
    model's face-area vertices (the part the attribute stages render) of :func:`sample_albedo`, which is linear in
    the ``size`` x ``size`` map and the 7 region offsets; a small ridge pulls texels no vertex uses to the mean
    colour.
    Returns (map [1, size, size, 3], offsets [1, 7, 3]) - e.g. to start a fit at a synthetic face's true
    appearance, as far as the albedo model can draw it."""
    from redafit.parsing.model_labels import vertex_face_area

    dev = model.mean.device
    vuv = _vertex_uv(model)
    basis = albedo_basis(model)
    sel = vertex_face_area(model)
    n_map, n_reg = size * size, basis.shape[1]
    # the design matrix, one column per unknown (the sampling is the same for the three channels)
    eye = torch.eye(n_map + n_reg, dtype=torch.float64, device=dev)
    maps = eye[:, :n_map].reshape(-1, size, size, 1)
    regs = eye[:, n_map:].reshape(-1, n_reg, 1)
    J = sample_albedo(maps, regs, vuv.double(), basis.double())[:, sel, 0].T  # [Vsel, n_map + n_reg]
    y = torch.as_tensor(np.asarray(albedo_v), dtype=torch.float64, device=dev)[sel]  # [Vsel, 3]
    mean = y.mean(0)
    prior = torch.cat([mean.expand(n_map, 3), torch.zeros(n_reg, 3, dtype=torch.float64, device=dev)])
    A = J.T @ J + ridge * torch.eye(J.shape[1], dtype=torch.float64, device=dev)
    x = torch.linalg.solve(A, J.T @ y + ridge * prior)
    return (x[:n_map].reshape(1, size, size, 3).float().cpu().numpy(),
            x[n_map:].reshape(1, n_reg, 3).float().cpu().numpy())


def render_attributes(ctx):
    """The soft (or z-buffer) render of [colour(3), labels(7), depth(1)] channels as needed; cached per iteration."""
    if "soft" in ctx.cache:
        return ctx.cache["soft"]
    from redafit.render.reda import soft_render
    from redafit.render.shading import shade, specular, vertex_normals

    ex = ctx.extras
    vc = ctx.verts_camera()
    H, W = ex["canvas"]
    clip = _clip_batch(vc, ex["cam_fit"], H, W)
    attrs, layout = [], {}
    n = 0
    need = set(k for k in ctx.stage.losses if k in ATTRIBUTES) if ctx.stage is not None else set(ex["attributes"])
    need |= {"color", "mask"} if ctx.cache.get("_all_channels") else set()
    if "color" in need:
        normals = vertex_normals(vc, ctx.model.triangles)
        col = shade(vertex_albedo(ctx), normals, ctx.params.sh, occlusion=ex.get("occlusion"))
        if ex.get("specular_exponent"):
            view = -vc / vc.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            col = col + specular(normals, view, ctx.params.sh, ctx.params.spec, ex["specular_exponent"])
        attrs.append(col)
        layout["color"] = (n, n + 3)
        n += 3
    if "mask" in need:
        attrs.append(ex["vlabels"][None].expand(vc.shape[0], -1, -1))
        layout["mask"] = (n, n + 7)
        n += 7
    if "depth" in need:
        attrs.append(((vc[..., 2] - ex["z_ref"][:, None]) / DEPTH_UNIT_MM)[..., None])
        layout["depth"] = (n, n + 1)
        n += 1
    soft = soft_render(clip, ex["tris_face"], torch.cat(attrs, -1), (H, W), ex["render_cfg"])
    ctx.cache["soft"] = (soft, layout)
    return ctx.cache["soft"]


def _channels_pyramid(ctx, name, valid, unpremultiply: bool = False):
    """The pyramid of the rendered channels of one attribute, masked by ``valid`` at level 0 (``unpremultiply``:
    the channels divided by the render's coverage first)."""
    from redafit.render.reda import masked_render_pyramid

    soft, layout = render_attributes(ctx)
    a, b = layout[name]
    img = soft.image[..., a:b]
    if unpremultiply:
        img = img / soft.alpha.clamp_min(1e-3)
    return masked_render_pyramid(img, valid, ctx.extras["render_cfg"])


def _interior_pyramids(ctx, name, observed, valid):
    """(rendered, observed) pyramids of one attribute on the ``valid`` pixels the render fully covers (soft
    coverage >= :data:`INTERIOR_COVERAGE`), the rendered channels unpremultiplied by the coverage; the observed
    pyramid follows the render's interior, so it is rebuilt at each iteration."""
    from redafit.render.reda import observed_pyramid

    soft, _ = render_attributes(ctx)
    v = valid * (soft.alpha.detach() >= INTERIOR_COVERAGE).to(valid.dtype)
    return (_channels_pyramid(ctx, name, v, unpremultiply=True),
            observed_pyramid(observed, v, ctx.extras["render_cfg"]))


def level_weights(ctx, stage) -> list[float] | None:
    """The attribute pyramids' level weights at the current iteration (``StageConfig.coarse_levels``; None =
    all 1)."""
    first, last = (float(w) for w in getattr(stage, "coarse_levels", (1.0, 1.0)))
    cfg = ctx.extras["render_cfg"]
    if cfg.mode == "zbuffer" or first == last == 1.0:
        return None
    t = ctx.iteration / max(1, stage.iters - 1)
    return [1.0] + [first + (last - first) * t] * (int(cfg.pyramid_levels) - 1)


@register("color")
def color_loss(ctx, stage):
    from redafit.render.reda import observed_pyramid, reda_loss

    ex = ctx.extras
    lw = level_weights(ctx, stage)
    if not INTERIOR_COVERAGE:  # every valid pixel: the observed pyramid is fixed for the fit
        if "pyr_colour" not in ex:
            ex["pyr_colour"] = observed_pyramid(ex["obs_colour"], ex["valid"], ex["render_cfg"])
        return reda_loss(_channels_pyramid(ctx, "color", ex["valid"]), ex["pyr_colour"], level_weights=lw)
    # the colour itself, not premultiplied by the soft coverage: silhouettes are the mask term's job (see
    # INTERIOR_COVERAGE), and the coverage brought its gradient along - 0.99-1 on the compared rim pixels (a darkening
    # the L1 loss pulled outwards at the full colour weight), and discretisation noise where it is exactly 1
    # (before soft_render's FULL_COVER_EXACT): 0.544 -> 0.492 mm on the tuning faces at colour weight 160
    return reda_loss(*_interior_pyramids(ctx, "color", ex["obs_colour"], ex["valid"]), level_weights=lw)


@register("mask")
def mask_loss(ctx, stage):
    from redafit.render.reda import reda_loss

    ex = ctx.extras
    return reda_loss(_channels_pyramid(ctx, "mask", ex["valid"]), ex["pyr_labels"],
                     level_weights=level_weights(ctx, stage))


@register("depth")
def depth_loss(ctx, stage):
    from redafit.render.reda import reda_loss

    ex = ctx.extras
    if "obs_depth" not in ex:
        raise InputError("the depth attribute needs a depth map (--depth FILE)")
    # compared like the colour (see color_loss, INTERIOR_COVERAGE): the depth itself where the face area covers the
    # whole kernel footprint; premultiplied by the soft coverage, the rim's depth faded towards z_ref and the L1 loss
    # pulled the outline (RGB-D tuning faces, true depth with 1 mm noise, ReDA at depth weight 16 / 64: 0.377 /
    # 0.416 -> 0.331 / 0.304 mm; the z-buffer, whose coverage is 0 or 1, is unchanged)
    return reda_loss(*_interior_pyramids(ctx, "depth", ex["obs_depth"], ex["depth_ok"]),
                     level_weights=level_weights(ctx, stage))


@register("albedo_smooth")
def albedo_smooth(ctx, stage):
    """The albedo map's mean squared gradient per unit of UV (texel differences times the map side), so one
    weight means the same smoothness at any :attr:`FitConfig.albedo_size`."""
    a = ctx.params.albedo
    n = a.shape[1]
    return (((a[:, 1:] - a[:, :-1]) ** 2).mean() + ((a[:, :, 1:] - a[:, :, :-1]) ** 2).mean()) * n * n


@register("albedo_sym")
def albedo_sym(ctx, stage):
    alb = vertex_albedo(ctx)
    return ((alb - alb[:, ctx.extras["mirror"]]) ** 2).mean()


@register("albedo_skin")
def albedo_skin(ctx, stage):
    """Skin vertices stay near one skin tone (chroma), so lighting explains the shading."""
    alb = vertex_albedo(ctx)[:, ctx.extras["skin_v"]]
    mean = alb.mean(1, keepdim=True)
    chroma = alb / alb.sum(-1, keepdim=True).clamp_min(1e-3)
    return ((alb - mean) ** 2).mean() + 10 * ((chroma - chroma.mean(1, keepdim=True)) ** 2).mean()


@register("arap")
def arap_loss(ctx, stage):
    st = ctx.extras.get("arap")
    if st is None:
        return ctx.params.disp.sum() * 0
    rest = ctx.extras["arap_rest"]
    return arap.arap_energy(st, rest, rest + ctx.params._expand(ctx.params.disp))


@register("disp_l2")
def disp_l2(ctx, stage):
    return (ctx.params.disp ** 2).sum(-1).mean()


# The least-squares lighting start ignores FitConfig.occlusion (it solves for the unoccluded SH): with the occlusion
# in it as well the full fits ended further from the truth on the physically shaded tuning faces (seeds 1-2,
# 12 faces: 0.738 mm vs 0.681; seed 3, 12 faces: 0.765 vs 0.694; occlusion off 0.749 and 0.790), session 11.
_INIT_OCCLUSION = False


@torch.no_grad()
def init_lighting(ctx, ridge: float = 0.1) -> None:
    """Least-squares SH lighting [B, 9, 3] for the current geometry, with the albedo at its initial skin colour:
    the colours of visible skin vertices (facing the camera, labelled skin on both sides) explain
    ``albedo * (basis(n) . sh)``; a ridge term keeps the coefficients near the default lighting. Gives the
    attribute stage a lighting consistent with the photo's shading from its first iteration, so the early
    shape updates are not spent explaining a wrong light."""
    from redafit.render.shading import occluded_basis, vertex_normals

    ex, p = ctx.extras, ctx.params
    ao = ex.get("occlusion") if _INIT_OCCLUSION else None
    ctx.cache.clear()
    vc = ctx.verts_camera()
    ctx.cache.clear()
    n = vertex_normals(vc, ctx.model.triangles)  # [B, V, 3]
    cam = ex["cam_fit"]
    H, W = ex["canvas"]
    z = vc[..., 2].clamp_min(1e-3)
    u = (cam[:, None, 0] * vc[..., 0] / z + cam[:, None, 2]).long()
    v = (cam[:, None, 1] * vc[..., 1] / z + cam[:, None, 3]).long()
    facing = (n * -torch.nn.functional.normalize(vc, dim=-1)).sum(-1) > 0.35
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    alb = vertex_albedo(ctx)  # [B, V, 3]
    for b in range(vc.shape[0]):
        ok = facing[b] & inside[b] & ex["skin_v"]
        uu, vv = u[b, ok], v[b, ok]
        px_ok = (ex["labels_obs"][b, vv, uu, 0] > 0.5) & (ex["valid"][b, vv, uu, 0] > 0.5)
        if int(px_ok.sum()) < 50:
            continue
        obs = ex["image_fit"][b, vv[px_ok], uu[px_ok]]  # [N, 3]
        basis = occluded_basis(n[b, ok][px_ok], None if ao is None else ao[ok][px_ok])  # [N, 9]
        a = alb[b, ok][px_ok]  # [N, 3]
        s0 = p.sh[b]
        for c in range(3):
            A = basis * a[:, c:c + 1]
            lhs = A.T @ A + ridge * len(A) * 1e-2 * torch.eye(9, device=A.device)
            rhs = A.T @ obs[:, c] + ridge * len(A) * 1e-2 * s0[:, c]
            p.sh[b, :, c] = torch.linalg.solve(lhs, rhs)


def _lighting_hook(ctx, stage, it):
    """Initialise the lighting by least squares at the start of the first stage that trains it (unless the fit
    was given a lighting, ``init={"sh": ...}``)."""
    ex = ctx.extras
    if it != 0 or "sh" not in stage.params or ex.get("lighting_done") or "sh" in ex.get("init_names", ()):
        return
    init_lighting(ctx)
    ctx.extras["lighting_done"] = True


def _arap_hook(ctx, stage, it):
    """Alternate: re-solve the per-vertex rotations every ``arap_every`` iterations of a stage training disp."""
    if "disp" not in stage.params or "arap" not in stage.losses:
        return
    ex = ctx.extras
    if it == 0 or "arap" not in ex:
        with torch.no_grad():
            rest = ctx.params.shape_model(ctx.model, with_disp=False).detach()
        ex["arap_rest"] = rest
        ex["arap"] = arap.init_state(rest[0], ctx.model.triangles, rest.shape[0])
    if it % max(1, stage.arap_every) == 0:
        with torch.no_grad():
            rest = ex["arap_rest"]
            arap.solve_rotations(ex["arap"], rest, rest + ctx.params._expand(ctx.params.disp))


def _smoother(ctx, stage):
    """The (I + lambda L)^-1 solver of a stage with ``disp_smooth`` > 0 training ``disp`` (None otherwise), built
    once per lambda from the cotangent edges of the fit's current shape."""
    lam = float(stage.disp_smooth)
    if lam <= 0 or "disp" not in stage.params or ctx.params.disp.grad is None:
        return None
    ex = ctx.extras
    if ex.get("smoother_lam") != lam:
        rest = ctx.params.shape_model(ctx.model, with_disp=False).detach()[0]
        edges, weights = arap.cotangent_edges(rest, ctx.model.triangles)
        ex["smoother"] = arap.LaplacianSmoother(edges, weights, ctx.model.n_vertices, lam)
        ex["smoother_lam"] = lam
    return ex["smoother"]


def _smooth_step_hook(ctx, stage, it):
    """``disp_smooth``: one "uniform Adam" step of u = (I + lambda L) d, applied to d as (I + lambda L)^-1 du.

    The gradient with respect to u is (I + lambda L)^-1 dE/dd. Adam's moments are kept per coordinate but the step
    is normalised by the largest second moment of the image's displacement (one scale per image, not one per
    coordinate): per-coordinate normalisation moves every vertex by ~lr whatever its gradient, so vertices with
    little image evidence would wander as far as those with much. The step is taken here and the gradient
    cleared, so the stage's own Adam leaves ``disp`` alone (its learning rate is ``stage.lr["disp"]``, constant:
    the stage's ``lr_final`` schedule does not apply to it)."""
    solve = _smoother(ctx, stage)
    if solve is None:
        return
    d = ctx.params.disp
    g = solve(d.grad)
    ex = ctx.extras
    st = ex.get("disp_adam")
    if st is None or st["m"].shape != g.shape:
        st = ex["disp_adam"] = {"m": torch.zeros_like(g), "v": torch.zeros_like(g), "t": 0}
    b1, b2, eps = 0.9, 0.999, 1e-12
    st["t"] += 1
    st["m"].mul_(b1).add_(g, alpha=1 - b1)
    st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
    m_hat = st["m"] / (1 - b1 ** st["t"])
    v_max = (st["v"] / (1 - b2 ** st["t"])).flatten(1).amax(1)
    step = -stage.lr.get("disp", stage.lr_default) * m_hat / (v_max.sqrt() + eps)[:, None, None]
    with torch.no_grad():
        d.add_(solve(step))
    d.grad = None


# ------------------------------------------------------------------------------------------------ quality report
@torch.no_grad()
def stage_quality(ctx) -> list[dict]:
    """Per image: landmark error, parsing IoU per region, photometric L2,1 and PSNR over the face region, and with a
    depth map the mean absolute depth error (mm) where the face area and the measurement overlap."""
    from redafit.fit.fitter import landmark_error_px
    from redafit.parsing.regions import REGION_NAMES

    ex = ctx.extras
    ctx.cache.clear()
    stage, ctx.stage = ctx.stage, None
    ctx.cache["_all_channels"] = True
    cfg = ex["render_cfg"]
    ex["render_cfg"] = RenderConfig.zbuffer(backend=cfg.backend)
    try:
        soft, layout = render_attributes(ctx)
    finally:
        ex["render_cfg"] = cfg
    err = landmark_error_px(ctx)
    ctx.cache.clear()
    ctx.stage = stage
    img = soft.image
    a, b = layout["color"]
    rend = img[..., a:b]
    a, b = layout["mask"]
    lab = img[..., a:b]
    valid = ex["valid"][..., 0] > 0.5
    obs = ex["labels_obs"]
    out = []
    for i in range(img.shape[0]):
        ious = {}
        for r, name in enumerate(REGION_NAMES):
            pr = (lab[i, ..., r] > 0.5) & valid[i]
            ob = (obs[i, ..., r] > 0.5) & valid[i]
            union = (pr | ob).sum()
            if union > 0:
                ious[name] = round(float((pr & ob).sum() / union), 4)
        facepx = (ex["face_obs"][i, ..., 0] > 0.5) & valid[i] & (soft.alpha[i, ..., 0] > 0.5)
        diff = (rend[i] - ex["image_fit"][i])[facepx]
        l21 = float(diff.norm(dim=-1).mean()) if len(diff) else float("nan")
        mse = float((diff ** 2).mean()) if len(diff) else float("nan")
        psnr = 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
        q = {"landmark_error_px": round(float(err[i]), 3),
             "landmark_error_iod": round(float(err[i] / ctx.targets.scale[i]), 5),
             "parsing_iou": ious, "photometric_l21": round(l21, 5) if math.isfinite(l21) else None,
             "psnr_db": round(psnr, 3) if math.isfinite(psnr) else None}
        seen = ex["image_fit"][i][facepx]
        q["face_brightness"] = round(float(seen.mean()), 4) if len(seen) else None  # the photo's face, mean in [0, 1]
        if "depth" in layout and "obs_depth" in ex:  # RGB-D: mean |rendered - measured| depth where both exist
            a, b = layout["depth"]
            dpx = (ex["depth_ok"][i, ..., 0] > 0.5) & (soft.alpha[i, ..., 0] > 0.5)
            dd = (img[i, ..., a] - ex["obs_depth"][i, ..., 0])[dpx].abs() * DEPTH_UNIT_MM
            q["depth_error_mm"] = round(float(dd.mean()), 3) if len(dd) else None
        out.append(q)
    ex["_last_render"] = (soft, layout)
    return out


def after_stage(ctx, stage, config) -> None:
    q = stage_quality(ctx)
    ctx.extras["quality"][stage.name] = q
    if ctx.extras.get("save_stages"):
        _save_stage_images(ctx, stage.name, Path(ctx.extras["save_stages"]))


def _save_stage_images(ctx, name: str, folder: Path) -> None:
    from redafit.io.images import save_image
    from redafit.parsing.image import REGION_COLORS

    folder.mkdir(parents=True, exist_ok=True)
    soft, layout = ctx.extras["_last_render"]
    ex = ctx.extras
    for i in range(soft.image.shape[0]):
        h, w = ex["sizes"][i]
        a, b = layout["color"]
        alpha = soft.alpha[i, :h, :w].cpu().numpy()
        photo = ex["image_fit"][i, :h, :w].cpu().numpy()
        rend = soft.image[i, :h, :w, a:b].cpu().numpy()
        comp = alpha * rend + (1 - alpha) * photo
        a, b = layout["mask"]
        lab = soft.image[i, :h, :w, a:b].cpu().numpy()
        cols = np.asarray(REGION_COLORS, np.float32)
        cols = cols / 255.0 if cols.max() > 1 else cols
        mask_img = (lab @ cols[: lab.shape[-1]]) + (1 - alpha) * photo * 0.5
        err = np.abs(comp - photo).sum(-1, keepdims=True).repeat(3, -1).clip(0, 1)
        tag = f"_{i}" if soft.image.shape[0] > 1 else ""
        save_image(folder / f"{name}{tag}_render.png", np.clip(comp, 0, 1))
        save_image(folder / f"{name}{tag}_mask.png", np.clip(mask_img, 0, 1))
        save_image(folder / f"{name}{tag}_error.png", err)


def finish(ctx, result, b: int, config) -> None:
    """Fill the result's quality report and albedo for image ``b`` (the failure flag reads the report after, in
    :func:`redafit.fit.api.flag_implausible`)."""
    q = {name: per[b] for name, per in ctx.extras["quality"].items()}
    result.quality = q
    bi = 0 if ctx.params.shared_id else b
    result.albedo = ctx.params.albedo[bi].detach().cpu().numpy()
    result.albedo_regions = ctx.params.albedo_reg[bi].detach().cpu().numpy()
    result.lighting_fitted = config.fits_lighting()
    result.occlusion = result.lighting_fitted and ctx.extras.get("occlusion") is not None
    if ctx.extras.get("specular_exponent") and any("spec" in s.params for s in config.stages):
        result.specular = float(ctx.params.spec[b, 0].detach())
        result.specular_exponent = float(ctx.extras["specular_exponent"])
