"""Turning a :class:`~redafit.fit.FitResult` into files: textured mesh, parameters JSON, overlay image.

The texture is unwrapped from the photo onto the model's UVs: every texel's surface point is projected into the
photo and sampled where it is visible (depth test + facing the camera); texels hidden in the photo take the
colour of their mirror-symmetric point (x -> -x in the model frame) when that one is visible, and the rest is
inpainted from the well-seen texels around it, so the unseen half of a turned face looks plausible; weakly seen
texels blend their sample with that fill by its confidence (:data:`SOLID`), so the fill's edge is not a step.

A fit's outline is a few pixels off the face's in the photo, most on the far cheek of a turned face, where much
surface projects onto few pixels: sampled as it was, the background beside the face (a wall, foliage) was smeared
across the cheek and the jaw as a streak. So the face area's texels below the eyes take no sample from what is not
the face in the photo (:func:`photo_off_face`: outside the landmark and skin-colour face mask, and not
skin-coloured or cut off from the face's skin by an edge in the photo, with a soft edge): the weight the guard
takes from a sample goes to the mirror's and to a fill from the face's own texels, so its edge blends rather than
cuts; any texel's sample within a band of the mesh's outline in the photo (:data:`OUTLINE_BAND`) is weighted down
too. The model's neck reaches below a shirt's collar: its texels (:func:`neck_flag`) are guarded alike, so a
collar, a tie or a scarf in front of the neck is not painted on it (the neck's and the face's own unguarded texels
fill it).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from redafit.errors import OutputError
from redafit.render.camera import Intrinsics, project, to_clip

UNWRAP_BAND = 512  # texture rows unwrapped at a time
MAX_RENDER_SIDE = 1024  # overlays and visibility are rasterized at most this large (then resampled)


def _raster_cam(verts_cam: np.ndarray, tris: np.ndarray, K: Intrinsics, max_side: int = MAX_RENDER_SIDE):
    """Rasterize a camera-frame mesh at the image resolution (capped). Returns (frags, scale)."""
    from redafit.render import rasterize

    s = min(1.0, max_side / max(K.width, K.height))
    Ks = K.scaled(max(1, round(K.width * s)), max(1, round(K.height * s)))
    v = torch.as_tensor(verts_cam, dtype=torch.float32)[None]
    t = torch.as_tensor(tris, dtype=torch.long)
    frags = rasterize(to_clip(v, Ks), t, (Ks.height, Ks.width), backend="torch")
    return frags, Ks


class TexelWeights(NamedTuple):
    """What ``return_weights`` gives beside a texture, per texel [H, W] (used to merge several views' textures)."""

    confidence: np.ndarray  # in [0, 1]: the direct sample's confidence (facing-weighted visibility, saturating),
    #                         MIRROR_WEIGHT x the mirrored sample's where it fills in, 0 where inpainted
    quality: np.ndarray  # in [0, 1]: the direct sample's cosine between the surface normal and the view ray x
    #                      visibility x outline trust x the off-face guard's keep (not saturating: tells a view that
    #                      sees a texel face on from one that sees it at 40 degrees)


SOLID = 0.25  # a texel's sample confidence from which it is used as it is (and fills its neighbours' gaps)
MIRROR_WEIGHT = 0.3  # confidence of a texel filled from its mirrored point (``return_weights``)
# A photo sample this close to the mesh's outline in the photo is not trusted: a fit's outline is a few pixels off
# the face's (more on the far cheek, where much surface projects onto few pixels), and what lies just outside the
# face there - foliage, a wall - was smeared across the grazing cheek and the jaw. Distances in units of the
# projected mesh's size (the square root of its area in pixels): none within OUTLINE_BAND / 2, full weight from
# 3 / 2 OUTLINE_BAND; the mirror's sample (or the inpainting) fills in.
OUTLINE_BAND = 0.015


OFF_FACE_CROP = 256  # px: the face crop the photo is parsed at to find what beside the face is not the face
OFF_FACE_BLUR = 1.5  # crop px: the off-face map's soft edge
OFF_FACE_MIN_COVER = 0.5  # a parse whose face mask covers less of the fitted face than this is not used
# In a grey photo the parse's crop reaches this far (x the nose bridge -> chin vector) below the projected mesh,
# so that what is worn below the neck - a shirt - is in it, outside the mesh, where it seeds what is not the face.
NECK_CONTEXT = 0.6
SILHOUETTE_MARGIN = 0.03  # x the crop's side: the projected mesh grown by this before what lies outside it counts
FACE_SEED_ERODE = 0.02  # x the crop's side: the face mask shrunk by this seeds the face's skin
# In a colour photo a pixel darker than the face's skin by a factor f is held to f ** 0.5 of the chromaticity
# tolerance the parse gives it (f: :meth:`redafit.parsing.image.SkinColourModel.distance2`). Shared photos, neck
# texels whose chromaticity is off the face's: Breaking Bad's scarf 0.66 at the parse's f, 0.11 at f ** 0.5, 0.07
# at full tolerance; the neck in shadow the photos show (Amanda's, d3d_000037's) is kept better at f ** 0.5.
GUARD_DARK_RELAX = 0.5
# A neck is rarely lit brighter than the face's skin: a pixel beside the face brighter than this percentile of the face
# mask's intensities is not its skin (mica_carell's white collar: the share of neck texels brighter than the face's
# 98th percentile 0.040 -> 0; the other 12 shared photos' within 0.006 of before).
BRIGHTEST_SKIN: float | None = 99.0  # None: no cap


def photo_off_face(image: np.ndarray, result, K: Intrinsics, Ks: Intrinsics, tris=None) -> np.ndarray | None:
    """[Ks.height, Ks.width] float32 in [0, 1]: 1 where the photo shows something other than the face below the
    eyes - the background beside the cheek and jaw, a collar, a hand - in the frame of ``Ks`` (``K``, the image's
    camera, scaled). Above the eyes (hair, hats and their brims) 0: the face area's texels there keep what the
    photo shows. None without 68 landmarks or when the parse covers less than :data:`OFF_FACE_MIN_COVER` of the
    fitted face (see :func:`_unwrap`).

    Off the face is what lies outside the face mask of :func:`redafit.parsing.image.face_and_skin` at the fit's
    landmarks and is not the face's skin. In a colour photo that is what its skin colour model rejects, relaxing
    a dark pixel's chromaticity tolerance less than the parse does (:data:`GUARD_DARK_RELAX`: a shadow's colour
    is noisy, but the parse's tolerance took dark grey cloth, Breaking Bad's scarf, for the neck in shadow), and
    skin-coloured pixels brighter than the face's brightest (:data:`BRIGHTEST_SKIN`: a white collar, which the
    intensity tolerance that shading needs lets pass) or that no path of skin-coloured ones joins to the face mask
    (the highlights on a leather seat beside the neck, a background of the skin's hue seen past the shoulders). A
    grey photo has only intensity, whose tolerance shading widens (Takeo's white collar passed it): there, with
    the mesh's triangles ``tris``, it is what the face's skin does not reach without crossing an edge in the
    photo, by a marker watershed (:func:`cv2.watershed`) of the face's skin (its mask, shrunk, and the skin
    model's samples) against what is surely not the face (what is not skin-coloured, and whatever lies outside
    the projected mesh: the background, the hair beyond the scalp, the clothes below the neck,
    :data:`NECK_CONTEXT`): the edge between the chin and a collar stops the face's flood. (In colour photos the
    watershed took the neck from most of them: the jaw's shadow line is an edge too.) Parsed in a crop around the
    landmarks grown to take in the whole projected mesh, at the face crop's scale."""
    import cv2

    from redafit.errors import RedafitError
    from redafit.fit.attribute_stages import crop_resize, face_crop
    from redafit.parsing.image import face_and_skin, monochrome

    lm = np.asarray(result.landmarks_target, np.float64)
    if lm.shape != (68, 2) or np.isfinite(lm).all(1).sum() < 20 or not np.isfinite(lm[[8, 27]]).all():
        return None
    x0, y0, side = face_crop(lm)
    S = OFF_FACE_CROP
    # grown to take in the whole fitted mesh (the neck reaches below the face's crop), at the face crop's scale
    px = project(torch.as_tensor(np.asarray(result.vertices_camera), dtype=torch.float64)[None], K)[0].numpy()
    finite = np.isfinite(px).all(1)
    by_edges = tris is not None and finite.any() and monochrome(image)
    if finite.any():
        reach = px[finite]
        if by_edges:
            reach = np.concatenate([reach, reach + NECK_CONTEXT * (lm[8] - lm[27])])
        lo = np.minimum([x0, y0], reach.min(0))
        hi = np.maximum([x0 + side, y0 + side], reach.max(0))
        grown = float(max(hi - lo))
        S = int(min(OFF_FACE_CROP * grown / side, 2 * OFF_FACE_CROP))
        x0, y0, side = float((lo[0] + hi[0] - grown) / 2), float((lo[1] + hi[1] - grown) / 2), grown
    small, inside = crop_resize(image, x0, y0, side, S)
    lmc = ((lm - [x0, y0]) * S / side).astype(np.float32)
    try:
        # a grey photo's chromaticity carries nothing: its skin test stays the parse's
        found = face_and_skin(small, lmc, relax_dark=1.0 if by_edges else GUARD_DARK_RELAX)
    except RedafitError:
        return None
    face = found.face
    if by_edges:
        other = ~face & ~_face_side_of_the_edges(small, inside, found, (px - [x0, y0]) * S / side,
                                                 np.asarray(tris), finite)
    else:
        lum = small.mean(-1)
        capped = BRIGHTEST_SKIN is not None and face.any()
        dim = lum <= np.percentile(lum[face], BRIGHTEST_SKIN) if capped else np.ones_like(face)
        other = ~face & ~_connected_to(found.skin & dim, face)
    up = lmc[27] - lmc[8]
    eyes = lmc[36:48][np.isfinite(lmc[36:48]).all(1)]
    eye_c = eyes.mean(0) if len(eyes) else lmc[27]
    yy, xx = np.mgrid[0:S, 0:S]
    above = ((xx + 0.5 - eye_c[0]) * up[0] + (yy + 0.5 - eye_c[1]) * up[1]) > 0
    off = (other & ~above & ~_eye_zones(lmc, S) & inside).astype(np.float32)
    # the crop's pixel steps would show on the face's texels (the blur at the face crop's scale)
    off = cv2.GaussianBlur(off, (0, 0), OFF_FACE_BLUR * S / OFF_FACE_CROP)
    # raster pixel i (centre i + 0.5 in Ks) -> image x = (i + 0.5) K.width / Ks.width
    # -> crop pixel (x - x0) S / side - 0.5
    mx = ((np.arange(Ks.width) + 0.5) * (K.width / Ks.width) - x0) * S / side - 0.5
    my = ((np.arange(Ks.height) + 0.5) * (K.height / Ks.height) - y0) * S / side - 0.5
    map_x = np.broadcast_to(mx[None, :], (Ks.height, Ks.width)).astype(np.float32)
    map_y = np.broadcast_to(my[:, None], (Ks.height, Ks.width)).astype(np.float32)
    return cv2.remap(off, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


EYE_ZONE = 0.5  # x an eye's width: the lids and the skin around the eye that the off-face guard leaves alone


def _eye_zones(lm: np.ndarray, size: int) -> np.ndarray:
    """[size, size] bool: each eye's outline (68 landmarks ``lm`` 36-41, 42-47, in the crop's pixels) grown by
    :data:`EYE_ZONE` of its width. The lashes, the lids' creases and the shadow under an eye are no skin colour
    and the face mask leaves the eyes out, so the guard took them for something beside the face, and the texture
    painted pale goggles of the face's fill around the eyes (eos, an audit's finding); what lies there is the
    face's own, whatever its colour."""
    import cv2

    from redafit.parsing.image import disk_kernel

    zones = np.zeros((size, size), np.uint8)
    for eye in (lm[36:42], lm[42:48]):
        eye = eye[np.isfinite(eye).all(1)]
        if len(eye) < 3:
            continue
        width = float(np.ptp(eye[:, 0]))
        one = np.zeros_like(zones)
        cv2.fillConvexPoly(one, np.round(eye * 4).astype(np.int32), 1, lineType=cv2.LINE_8, shift=2)
        zones |= cv2.dilate(one, disk_kernel(EYE_ZONE * width))
    known = lm[np.isfinite(lm).all(1)]
    hull = np.zeros_like(zones)  # within the landmarks' outline: a far eye's zone does not reach past the cheek
    cv2.fillConvexPoly(hull, np.round(cv2.convexHull(known.astype(np.float32))[:, 0] * 4).astype(np.int32), 1,
                       lineType=cv2.LINE_8, shift=2)
    return (zones & hull).astype(bool)


def _connected_to(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` [H, W] bool connected (8-neighbours, through ``mask`` or ``seed``) to ``seed``."""
    import cv2

    _, lab = cv2.connectedComponents((mask | seed).astype(np.uint8), connectivity=8)
    ids = np.unique(lab[seed])
    return mask & np.isin(lab, ids[ids > 0])


def _face_side_of_the_edges(small, inside, found, px, tris, finite) -> np.ndarray:
    """[S, S] bool: the face's side of a marker watershed on the crop ``small`` (see :func:`photo_off_face`):
    seeded with the face mask shrunk by :data:`FACE_SEED_ERODE` and the skin samples on one side, and on the
    other with what is not skin-coloured, outside the crop's image, or outside the projected mesh (crop pixels
    ``px`` of the vertices, triangles ``tris``) grown by :data:`SILHOUETTE_MARGIN` (``found``: the crop's
    :func:`redafit.parsing.image.face_and_skin`)."""
    import cv2

    from redafit.parsing.image import disk_kernel

    S = small.shape[0]
    mesh = np.zeros((S, S), np.uint8)
    whole = tris[finite[tris].all(1)]
    corners = np.round(np.clip(px[whole], -S, 2 * S) * 4 - 2).astype(np.int32)  # 1/4 px, in int32's range
    cv2.fillPoly(mesh, list(corners), 1, lineType=cv2.LINE_8, shift=2)
    mesh = cv2.dilate(mesh, disk_kernel(SILHOUETTE_MARGIN * S)).astype(bool)
    markers = np.zeros((S, S), np.int32)
    markers[~found.face & (~found.skin | ~mesh) | ~inside] = 2
    markers[cv2.erode(found.face.astype(np.uint8), disk_kernel(FACE_SEED_ERODE * S)).astype(bool)
            | found.samples & inside] = 1
    bgr = np.ascontiguousarray((np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])
    cv2.watershed(bgr, markers)
    return markers == 1


def outline_distance(zbuf: np.ndarray) -> tuple[np.ndarray, float]:
    """(distance of every pixel to the mesh's outline in pixels, the mesh's size in pixels) from a z-buffer with
    ``inf`` off the mesh; holes inside the mesh (eyes, mouth) are not outline."""
    import cv2

    cover = np.isfinite(zbuf).astype(np.uint8)
    if not cover.any():
        return np.zeros_like(zbuf, np.float32), 0.0
    outside = np.pad(1 - cover, 1, constant_values=1)
    ff = np.zeros((outside.shape[0] + 2, outside.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, ff, (0, 0), 2)  # the background reached from the border; the rest are holes
    solid = (outside[1:-1, 1:-1] != 2).astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(solid, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return dist.astype(np.float32), float(np.sqrt(solid.sum()))


TEXTURE_KINDS = ("photo", "albedo")
DELIT_FLOOR = 0.5  # an albedo texture's samples are brightened at most 1 / this (their irradiance floored here)
DELIT_TRUST = (0.5, 0.9)  # shares of the face's median irradiance: a sample lit less than the first keeps the
# photo's colour, one lit more than the second is evened out in full (a smooth ramp between)


class Shading(NamedTuple):
    """The fitted image formation an albedo texture's samples are evened out by (:func:`fitted_shading`): the
    colour a fit draws is ``albedo * irradiance(n) + highlight(n, view)`` (:mod:`redafit.render.shading`)."""

    sh: torch.Tensor  # [9, 3] the fitted SH lighting
    strength: float  # the fitted Blinn-Phong highlight's strength (0: none)
    exponent: float
    occlusion: np.ndarray | None  # [V] per model vertex: the ambient occlusion the fit's shading used, or None
    reference: torch.Tensor  # [3] the median irradiance over the face's vertices seen in the photo
    # [V, 4]: the fit's own albedo (its UV map and region offsets) x the reference, and the skin's share of each
    # vertex (1 - its region weights): what a dim sample on the face's skin is evened out towards
    prior: np.ndarray | None = None


def seen_face_vertices(vertices_camera: np.ndarray, model, min_cos: float = 0.3) -> np.ndarray:
    """[V] bool: the model's face-area vertices (every vertex of a model without one) whose normal, at the
    camera-frame vertices [V, 3], faces the camera by a cosine above ``min_cos`` (all of them when none does)."""
    from redafit.errors import ModelError
    from redafit.parsing.model_labels import vertex_face_area
    from redafit.render.shading import vertex_normals

    vc = torch.as_tensor(np.asarray(vertices_camera), dtype=torch.float32)
    n = vertex_normals(vc[None], model.triangles.cpu())[0]
    seen = ((n * -torch.nn.functional.normalize(vc, dim=-1)).sum(-1) > min_cos).numpy()
    try:
        seen &= vertex_face_area(model).cpu().numpy()
    except ModelError:  # no face area: every vertex counts
        pass
    return seen if seen.any() else np.ones_like(seen)


def fitted_shading(result, model) -> Shading:
    """The shading ``result``'s fit drew its colours with; :class:`OutputError` when the fit did not fit a lighting
    (the landmarks preset, or attributes without colour): without one, an albedo texture would only be the photo
    divided by a guess."""
    from redafit.render.occlusion import mean_shape_occlusion
    from redafit.render.shading import occluded_basis, vertex_normals

    if not result.lighting_fitted:
        raise OutputError("an albedo texture needs the lighting fitted to the photo's colours: fit with the colour "
                          "attribute (--preset full or fast)")
    occ = mean_shape_occlusion(model).cpu().numpy().astype(np.float32) if result.occlusion else None
    sh = torch.as_tensor(np.asarray(result.sh), dtype=torch.float32)
    vc = torch.as_tensor(np.asarray(result.vertices_camera), dtype=torch.float32)
    n = vertex_normals(vc[None], model.triangles.cpu())[0]
    seen = torch.as_tensor(seen_face_vertices(result.vertices_camera, model))
    irr = (occluded_basis(n, None if occ is None else torch.as_tensor(occ))[..., None] * sh).sum(-2)[seen]
    ref = irr.median(0).values.clamp_min(1e-3)
    prior = None
    if result.albedo is not None and result.albedo_regions is not None:
        from redafit.fit.attribute_stages import _vertex_uv, albedo_basis, sample_albedo

        basis = albedo_basis(model).cpu().float()
        va = sample_albedo(torch.as_tensor(result.albedo)[None].float(),
                           torch.as_tensor(result.albedo_regions)[None].float(), _vertex_uv(model).cpu().float(),
                           basis)[0]
        skin = (1 - basis.sum(1)).clamp(0, 1)[:, None]  # the skin's share: lips, eyes, brows, mouth not guessed
        prior = torch.cat([va * ref, skin], 1).numpy().astype(np.float32)
    return Shading(sh, float(result.specular), float(result.specular_exponent), occ, ref, prior=prior)


def shading_terms(normals: torch.Tensor, view: torch.Tensor, occ: torch.Tensor | None,
                  shading: Shading) -> tuple[torch.Tensor, torch.Tensor]:
    """(irradiance, highlight), each [..., 3], of the fitted image formation (:class:`Shading`) at the unit
    ``normals`` [..., 3] (camera frame; ``view``: unit, surface to camera; ``occ`` [...]: the ambient occlusion,
    None for none): the colour the fit draws there is ``albedo * irradiance + highlight``."""
    from redafit.render.shading import occluded_basis, specular

    irr = (occluded_basis(normals, occ)[..., None] * shading.sh).sum(-2)
    if shading.strength > 0 and shading.exponent > 0:
        hl = specular(normals[None], view[None], shading.sh, torch.tensor([shading.strength]), shading.exponent)[0]
    else:
        hl = torch.zeros_like(irr)
    return irr, hl


def delit(col: np.ndarray, normals: torch.Tensor, view: torch.Tensor, occ: torch.Tensor | None,
           shading: Shading, prior=None, face=None, terms=None) -> tuple[np.ndarray, np.ndarray]:
    """The photo's colours ``col`` [..., 3] evenly lit, and the trust in that [...] in [0, 1]: the fitted
    highlight taken away and the rest scaled by ``median / irradiance``, the fitted irradiance at the unit
    ``normals`` (camera frame; ``view``: unit, surface to camera) against the face's median - the albedo times
    the median light, so the texture keeps the photo's exposure and white balance. Where the irradiance is low
    against the median (a shadowed or grazing surface: the photo holds little of the albedo there, and the fit's
    normals on the lips', lids', nostrils' and ears' rims are least sure), the trust falls from 1 to 0 between
    :data:`DELIT_TRUST` shares of it, and so does the scaling: such a sample gives way to a better-lit mirror
    sample (:func:`_unwrap`), and on the face's skin (``face`` [...]: the face-area flag times the skin's share)
    takes the fit's own albedo there (``prior`` [..., 3], times the median light) in the measure it is not
    trusted, elsewhere (lips, eyes, brows, scalp, ears, neck, whose albedo the fit does not hold or guess) keeps
    its colour; no sample is brightened more than 1 / :data:`DELIT_FLOOR`. ``terms``: :func:`shading_terms` there,
    when the caller has them."""
    irr, hl = shading_terms(normals, view, occ, shading) if terms is None else terms
    rel = (irr / shading.reference).min(-1).values.numpy()
    irr = torch.maximum(irr, DELIT_FLOOR * shading.reference)
    lit = torch.as_tensor(col) - hl
    trust = torch.as_tensor(_smoothstep(rel, *DELIT_TRUST), dtype=torch.float32)[..., None]
    gain = 1 + trust * (shading.reference / irr - 1)
    out = lit.clamp_min(0) * gain
    if prior is not None:
        w = (1 - trust) * torch.as_tensor(face, dtype=torch.float32)[..., None]
        out = (1 - w) * out + w * torch.as_tensor(prior)
    return out.numpy().astype(np.float32), trust[..., 0].numpy()


def photo_of_fit(image: np.ndarray, result) -> np.ndarray:
    """``image`` as the photo of ``result``'s fit, for its outputs: float RGB [H, W, 3] in [0, 1] as the fit takes it
    (:func:`redafit.fit.api.check_image`), of the fit's size, or of its aspect at another size (the photo before
    ``--max-side``'s downscaling, say), resampled to the fit's; anything else is an :class:`InputError` rather than
    a texture sampled from the wrong pixels."""
    import cv2

    from redafit.errors import InputError
    from redafit.fit.api import check_image

    check_image(image)
    K = result.intrinsics
    h, w = image.shape[:2]
    if (w, h) == (K.width, K.height):
        return image
    if abs(w * K.height - h * K.width) > 0.01 * w * K.height:
        raise InputError(f"image: {w} x {h}, but the fit was of a {K.width} x {K.height} photo: give the photo that "
                         "was fitted")
    return cv2.resize(np.asarray(image, np.float32), (K.width, K.height),
                      interpolation=cv2.INTER_AREA if w > K.width else cv2.INTER_LINEAR)


def unwrap_texture(image: np.ndarray, result, model, size: int = 1024, return_weights: bool = False,
                   kind: str = "photo"):
    """Texture [size, size, 3] float in [0, 1] (row 0 = v 1, as in an OBJ texture) sampled from ``image``.

    ``kind``: ``"photo"`` - the photo's colours as they are, lit as in the photo; ``"albedo"`` - each sample, less
    the fitted highlight, scaled by the face's median irradiance over the fitted irradiance at its normal (with the
    fit's ambient occlusion; :func:`fitted_shading`, :func:`delit`), so the texture holds the surface's own colour
    as if every point received the face's median light: the photo's shading, its highlight and the shadows the fit
    draws evened out, its exposure and white balance kept - a texture for a renderer with its own lights. The
    mirror's samples are scaled by the shading at the mirrored point, where they were seen.

    With ``return_weights`` also returns the per-texel :class:`TexelWeights` [size, size] (used to merge textures
    from several views): the confidence in [0, 1] (the facing-weighted visibility of a direct sample,
    ``MIRROR_WEIGHT`` x that of the mirrored sample where it fills in, 0 where the texel was inpainted) and the
    direct sample's quality.
    """
    if not model.has_uv:
        raise OutputError(f"model '{model.name}' has no UV coordinates: write .ply or .npz instead of a texture")
    from redafit.errors import ModelError
    from redafit.parsing.model_labels import vertex_face_area

    try:
        face = vertex_face_area(model).cpu()
    except ModelError:  # no landmark vertex ids to find the face area with: every texel sampled alike
        face = None
    tris = model.triangles.cpu()
    shading = _shading_of(kind, result, model)
    image = photo_of_fit(image, result)
    return _unwrap(image, result, result.vertices_camera, result.vertices_model, tris, tris, model.uv.cpu(),
                   model.uv_triangles.cpu(), (size, size), return_weights, face_vertices=face, shading=shading)


def _shading_of(kind: str, result, model) -> Shading | None:
    if kind not in TEXTURE_KINDS:
        raise ValueError(f"texture kind must be one of {TEXTURE_KINDS}, not {kind!r}")
    return fitted_shading(result, model) if kind == "albedo" else None


def unwrap_atlas(image: np.ndarray, result, model, caps, size: int = 1024, return_weights: bool = False,
                 kind: str = "photo"):
    """The texture of a mesh with caps (:mod:`redafit.model.caps`): the model's tile
    (:func:`unwrap_texture`) on top of the strip holding the caps, [size + strip_rows(size), size, 3]; with
    ``return_weights`` also the per-texel :class:`TexelWeights`, as :func:`unwrap_texture` gives them. ``kind``
    as there; but the fit never drew the caps (eyes, mouth), so its shading says nothing of them: an albedo
    texture keeps the photo's colours there."""
    from redafit.model.caps import strip_rows

    image = photo_of_fit(image, result)
    tile = unwrap_texture(image, result, model, size, return_weights, kind=kind)
    vc = np.concatenate([result.vertices_camera, caps.vertices(result.vertices_camera)])
    vm = np.concatenate([result.vertices_model, caps.vertices(result.vertices_model)])
    face = model.triangles.cpu()
    every = torch.cat([face, torch.as_tensor(caps.triangles)])  # normals of the loop vertices see both sides
    strip = _unwrap(image, result, vc, vm, torch.as_tensor(caps.triangles), every, torch.as_tensor(caps.uv),
                    torch.as_tensor(caps.uv_triangles), (strip_rows(size), size), return_weights, occluders=face)
    if return_weights:
        return np.concatenate([tile[0], strip[0]]), TexelWeights(*map(np.concatenate, zip(tile[1], strip[1])))
    return np.concatenate([tile, strip])


def _unwrap(image, result, verts_cam, verts_model, tris, normal_tris, uv, uvt, hw, return_weights, occluders=None,
            face_vertices=None, shading: Shading | None = None):
    """Sample ``image`` into an [H, W] texture of the triangles ``tris`` laid out by ``uv``/``uvt`` (see
    :func:`unwrap_texture`); vertex normals come from ``normal_tris``, the depth test from ``occluders`` (default
    ``tris``). ``face_vertices`` ([V] bool, the model's face area): their texels, and the neck's below them
    (:func:`neck_flag`), never take a sample from what is not the face in the photo (:func:`photo_off_face`).
    ``shading`` (per vertex of ``verts_cam``, the model's): each sample is evened out by it where it was seen
    (:func:`delit`)."""
    import cv2

    from redafit.render import interpolate
    from redafit.render.shading import vertex_normals

    K = result.intrinsics
    H, W = hw
    vc = torch.as_tensor(verts_cam, dtype=torch.float32)
    vm = torch.as_tensor(verts_model, dtype=torch.float32)
    uv = uv.float()
    corner_v = torch.zeros(len(uv), dtype=torch.long)
    corner_v[uvt.reshape(-1)] = tris.reshape(-1)  # the vertex of each UV coordinate
    # UV-space raster: clip = (2u - 1, 1 - 2v, 0, 1) so row 0 is v = 1
    clip_uv = torch.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1], torch.zeros(len(uv)), torch.ones(len(uv))], -1)[None]
    R = torch.as_tensor(result.rotation, dtype=torch.float32)
    t = torch.as_tensor(result.trans, dtype=torch.float32)
    n_cam = vertex_normals(vc[None], normal_tris)[0]
    fv = torch.zeros(len(vc)) if face_vertices is None else face_flag(face_vertices, tris)
    nv = torch.zeros(len(vc)) if face_vertices is None else neck_flag(vm, face_vertices, fv)
    ao = torch.ones(len(vc)) if shading is None or shading.occlusion is None else \
        torch.as_tensor(shading.occlusion, dtype=torch.float32)
    prior = torch.zeros(len(vc), 4) if shading is None or shading.prior is None else torch.as_tensor(shading.prior)
    attrs = torch.cat([vc[corner_v], n_cam[corner_v], vm[corner_v], fv[corner_v, None], nv[corner_v, None],
                       ao[corner_v, None], prior[corner_v]], -1)[None]  # [1, T, 16]

    occ = tris if occluders is None else occluders
    frags, Ks = _raster_cam(verts_cam, occ.numpy(), K)
    zbuf = frags.depth[0].numpy()
    zbuf = np.where(zbuf > 0, zbuf, np.inf).astype(np.float32)
    img = cv2.resize(image, (Ks.width, Ks.height), interpolation=cv2.INTER_AREA) if (Ks.width, Ks.height) != (
        K.width, K.height) else image
    img = np.ascontiguousarray(img, dtype=np.float32)
    dist, size_px = outline_distance(zbuf)
    band = max(OUTLINE_BAND * size_px, 1e-6)
    trust_map = np.clip(dist / band - 0.5, 0, 1).astype(np.float32)
    off_face = photo_off_face(image, result, K, Ks, occ.numpy()) if face_vertices is not None else None
    if off_face is not None:
        # the parse must leave most of the fitted face on it, or it is not used (a failed skin colour model)
        face_tris = tris[torch.as_tensor(face_vertices)[tris].all(1)].numpy()
        face_px = _raster_cam(verts_cam, face_tris, K)[0].depth[0].numpy() > 0
        if face_px.any() and float((off_face[face_px] < 0.5).mean()) < OFF_FACE_MIN_COVER:
            off_face = None

    def sample(points: torch.Tensor, facing: np.ndarray, inside: np.ndarray, face_weight: np.ndarray):
        """(colour, confidence in [0, 1] of a sample, the part of it the off-face guard keeps in [0, 1], its
        quality: the cosine between the surface normal and the view ray x visibility x outline trust x guard)"""
        p = points.numpy()
        z = np.maximum(p[..., 2], 1e-3)
        u = (Ks.fx * p[..., 0] / z + Ks.cx - 0.5).astype(np.float32)
        v = (Ks.fy * p[..., 1] / z + Ks.cy - 0.5).astype(np.float32)
        col = cv2.remap(img, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        zb = cv2.remap(zbuf, np.round(u), np.round(v), cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
        inb = (u >= 0) & (v >= 0) & (u <= Ks.width - 1) & (v <= Ks.height - 1)
        vis = inb & (z <= zb * 1.01 + 2.0) & inside
        trust = cv2.remap(trust_map, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        keep = np.ones_like(trust)
        if off_face is not None:
            off = cv2.remap(off_face, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            keep = 1 - face_weight * _smoothstep(off, 0.02, 0.3)
        w = np.clip(facing, 0, 1) * vis * trust
        return col, np.clip(w / 0.35, 0, 1), keep, w * keep

    # the texels in bands of rows (a large texture's per-texel tensors would take several GB at once)
    col, col_m = np.zeros((H, W, 3), np.float32), np.zeros((H, W, 3), np.float32)
    a, keep, b, keep_m, face_texel, neck_texel, quality = (np.zeros((H, W), np.float32) for _ in range(7))
    inside = np.zeros((H, W), bool)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    for r0 in range(0, H, UNWRAP_BAND):
        r1 = min(H, r0 + UNWRAP_BAND)
        # rows r0..r1 span clip y -1 + 2 r0 / H .. -1 + 2 r1 / H: stretched to the band's own viewport
        y = (clip_uv[..., 1] - (-1 + (r0 + r1) / H)) / ((r1 - r0) / H)
        fr = _uv_band(torch.stack([clip_uv[..., 0], y, clip_uv[..., 2], clip_uv[..., 3]], -1), uvt, (r1 - r0, W))
        ins = fr.mask[0].numpy()
        tex_attr = interpolate(attrs, fr, uvt)[0]  # [h, W, 16]
        p_cam, n_tex, p_mod = tex_attr[..., :3], tex_attr[..., 3:6], tex_attr[..., 6:9]
        ft = tex_attr[..., 9].numpy()
        nt = tex_attr[..., 10].numpy()
        fw = guard_weight(ft, nt)
        p_mir = (p_mod * flip) @ R.T + t  # mirrored point, in the camera frame
        view = -p_cam / p_cam.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        facing = (torch.nn.functional.normalize(n_tex, dim=-1) * view).sum(-1).numpy()
        rows = slice(r0, r1)
        col[rows], a[rows], keep[rows], quality[rows] = sample(p_cam, facing, ins, fw)
        # the mirrored point's facing: mirror its normal too
        n_mir = ((n_tex @ R) * flip) @ R.T  # camera -> model (R orthonormal), mirrored, back
        view_m = -p_mir / p_mir.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        facing_m = (torch.nn.functional.normalize(n_mir, dim=-1) * view_m).sum(-1).numpy()
        col_m[rows], b[rows], keep_m[rows], _ = sample(p_mir, facing_m, ins, fw)
        if shading is not None:  # each sample evened out by the shading where it was seen, trusted where well lit
            o = None if shading.occlusion is None else tex_attr[..., 11]
            pr = None if shading.prior is None else tex_attr[..., 12:15]
            pw = None if pr is None else np.clip(ft, 0, 1) * tex_attr[..., 15].numpy()
            col[rows], sure = delit(col[rows], torch.nn.functional.normalize(n_tex, dim=-1), view, o, shading,
                                     pr, pw)
            col_m[rows], sure_m = delit(col_m[rows], torch.nn.functional.normalize(n_mir, dim=-1), view_m, o,
                                          shading, pr, pw)
            # a sample the light barely reaches gives way to its mirror where that is better lit (a shadowed cheek
            # to the lit one), and otherwise keeps its weight, its colour evened towards the fit's albedo on the
            # skin (a fill from the texels around painted nostrils and lip rims with the lit colours beside them,
            # and hair in shadow with skin)
            ar, br = a[rows], b[rows]
            a[rows] = ar * (sure + (1 - sure) * (1 - br * sure_m))
            b[rows] = br * (sure_m + (1 - sure_m) * (1 - ar * sure))
            quality[rows] *= sure
        inside[rows], face_texel[rows], neck_texel[rows] = ins, ft, nt
    # smooth weights: trust direct samples where well seen, blend towards the mirror where grazing
    direct = a * keep
    mirror = (1 - direct) * b * keep_m
    known = direct + mirror
    tex = direct[..., None] * col + mirror[..., None] * col_m
    tex = np.where(known[..., None] > 1e-3, tex / np.maximum(known[..., None], 1e-3), 0)
    # the weight the off-face guard took from the samples goes to a fill from the face's own texels, so that a
    # weak sample of the background does not count whole once the weights are normalised, and the guard's edge
    # blends rather than cuts (the neck's and the ears' texels beside the face may show what the face's were kept
    # from, so the fill is from the face's alone)
    guarded = np.maximum(a + (1 - a) * b - known, 0) if off_face is not None else np.zeros_like(known)
    if off_face is not None:
        own = (face_texel > 0.5) | (neck_texel > 0.5)
        face_fill = _inpainted(tex, (known > SOLID) & (guarded < 0.05) & own)
        tex = (known[..., None] * tex + guarded[..., None] * face_fill) / np.maximum(known + guarded, 1e-3)[..., None]
    # texels seen weakly or not at all are filled from the well-seen ones, blended by their confidence, so the
    # fill's edge does not show as a step from detail to blur
    sampled = known + guarded
    fill = _inpainted(tex, sampled > SOLID)
    if off_face is not None:
        # the face's are filled from the face's own, blended across the face area's edge by its smoothed flag
        ft = np.clip(face_texel + neck_texel, 0, 1)[..., None]
        fill = ft * face_fill + (1 - ft) * fill
    alpha = _smoothstep(sampled, 0.02, SOLID)[..., None]
    tex = np.clip(alpha * tex + (1 - alpha) * fill, 0, 1).astype(np.float32)
    if return_weights:
        conf = (direct + MIRROR_WEIGHT * mirror) * inside * alpha[..., 0]
        return tex, TexelWeights(conf.astype(np.float32), (quality * inside).astype(np.float32))
    return tex


_UV_BANDS: OrderedDict = OrderedDict()  # the UV layout's rasterized bands, which depend on no fit: kept for reuse
UV_BAND_CACHE = 8  # bands kept (a 1024 px texture with caps: 3; about 8 MB each)


def _uv_band(clip: torch.Tensor, uvt: torch.Tensor, hw: tuple[int, int]):
    """The fragments of the texture-space band ``clip`` [1, T, 4] of the triangles ``uvt`` at (h, w), rasterized
    once per layout, band and size (the model's UVs, the caps' strip) and reused by every later texture of a
    process: a batch, a rig's views, each save of the same size. Read-only: the fragments are shared."""
    import hashlib

    key = (hashlib.sha1(clip.detach().cpu().numpy().tobytes()).hexdigest(),
           hashlib.sha1(uvt.cpu().numpy().tobytes()).hexdigest(), tuple(hw))
    hit = _UV_BANDS.get(key)
    if hit is not None:
        _UV_BANDS.move_to_end(key)
        return hit
    from redafit.render import rasterize

    fr = rasterize(clip, uvt, hw, backend="torch")
    _UV_BANDS[key] = fr
    while len(_UV_BANDS) > UV_BAND_CACHE:
        _UV_BANDS.popitem(last=False)
    return fr


FACE_FLAG_SMOOTHING = 5  # one-ring averages of the face-area flag: its 0.5 level a smooth curve over the mesh


def face_flag(face_vertices, tris: torch.Tensor) -> torch.Tensor:
    """The face-area flag per vertex [V] (0/1) smoothed over the mesh (:data:`FACE_FLAG_SMOOTHING` one-ring
    averages): interpolated over the triangles, its 0.5 level is a smooth curve, not the zigzag of the flagged
    triangles' edges, and its values between 0 and 1 blend the face's fill into the rest along it."""
    from redafit.parsing.model_labels import smooth_vertex_values

    flag = np.asarray(torch.as_tensor(face_vertices).cpu().numpy(), np.float64)[:, None]
    return torch.as_tensor(smooth_vertex_values(flag, tris.cpu().numpy(), FACE_FLAG_SMOOTHING)[:, 0]).float()


NECK_TOP = 0.25  # the neck's texels: below the chin + this x the face area's height (the ears' lobes are above)
NECK_RAMP = 0.1  # x the face area's height: the neck flag's soft upper edge


def neck_flag(verts_model, face_vertices, face_weight: torch.Tensor) -> torch.Tensor:
    """[V] in [0, 1]: how much each vertex is the neck's - below the face area (model frame, y up) by
    :data:`NECK_TOP`, with a soft edge of :data:`NECK_RAMP`, and not the face's (1 - its smoothed flag). A collar,
    a scarf or a hand in front of the neck is what the photo shows there: the guard keeps it off these texels as
    it keeps the background off the face's."""
    y = torch.as_tensor(verts_model, dtype=torch.float32)[:, 1]
    face = torch.as_tensor(face_vertices, dtype=torch.bool)
    if not face.any():
        return torch.zeros_like(y)
    lo, hi = float(y[face].min()), float(y[face].max())
    h = max(hi - lo, 1e-6)
    below = ((lo + NECK_TOP * h - y) / (NECK_RAMP * h)).clamp(0, 1)
    return below * (1 - face_weight.clamp(0, 1))


def guard_weight(face_texel: np.ndarray, neck_texel: np.ndarray) -> np.ndarray:
    """How much the off-face guard holds at a texel, in [0, 1], from its smoothed face flag (:func:`face_flag`)
    and neck flag (:func:`neck_flag`): the face's, steepened (smoothstep 0.25-0.75: the ears' and the scalp's
    texels beside it keep what the photo shows), and the face's and the neck's together, so that below the chin,
    where the face's flag fades as the neck's rises, the two add up to a whole guard (each alone is half of it
    there, and the background beside the chin - a window, a wall - was painted under it)."""
    return np.maximum(_smoothstep(face_texel, 0.25, 0.75), np.clip(face_texel + neck_texel, 0, 1))


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _inpainted(tex: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``tex`` [H, W, 3] with every texel filled from the ``known`` ones ([H, W] bool) by push-pull: the known
    texels averaged alone down an image pyramid (so the holes' zeros do not darken the islands' rims), then each
    level's holes filled from the coarser level's bilinear upsampling, blended by how much of a texel's footprint
    is known. A hole takes a smooth blend of the known texels around it, from every side, weighted by distance
    (Telea's inpainting, used before, carried each rim texel's colour straight across a large hole as a streak:
    the chin's highlight down a guarded neck). Also fills a margin outside the UV islands so bilinear lookups at
    seams stay clean."""
    import cv2

    def half(a):
        h, w = a.shape[:2]
        return cv2.resize(a, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA).reshape(
            max(h // 2, 1), max(w // 2, 1), *a.shape[2:])

    seen = known.astype(np.float32)
    num, den = [half(tex.astype(np.float32) * seen[..., None])], [half(seen)]  # level 0 is the texture itself
    while max(den[-1].shape) > 1:
        num.append(half(num[-1]))
        den.append(half(den[-1]))
    out = num[-1] / np.maximum(den[-1], 1e-12)[..., None]
    for n, d in zip(num[-2::-1], den[-2::-1]):
        up = cv2.resize(out, d.shape[::-1], interpolation=cv2.INTER_LINEAR).reshape(*d.shape, 3)
        cover = np.clip(d, 0, 1)[..., None]
        out = n / np.maximum(d, 1e-12)[..., None] * cover + up * (1 - cover)
    up = cv2.resize(out, known.shape[::-1], interpolation=cv2.INTER_LINEAR).reshape(*known.shape, 3)
    return np.clip(np.where(known[..., None], tex, up), 0, 1).astype(np.float32)


def render_overlay(image: np.ndarray, result, model, alpha: float = 0.55, draw_landmarks: bool = True) -> np.ndarray:
    """The photo with the fitted mesh drawn over it (grey Lambert shading), targets in green, fit in red; the size
    of ``image`` (the mesh is rasterized at most :data:`MAX_RENDER_SIDE` large and its shading resampled)."""
    import cv2

    from redafit.render import interpolate
    from redafit.render.shading import vertex_normals

    image = photo_of_fit(image, result)
    K = result.intrinsics
    frags, Ks = _raster_cam(result.vertices_camera, model.triangles.cpu().numpy(), K)
    v = torch.as_tensor(result.vertices_camera, dtype=torch.float32)[None]
    n = vertex_normals(v, model.triangles.cpu())
    nimg = torch.nn.functional.normalize(interpolate(n, frags, model.triangles.cpu())[0], dim=-1).numpy()
    light = np.array([0.3, -0.3, -1.0])
    light /= np.linalg.norm(light)
    shade = (np.clip(np.abs(nimg @ light), 0, 1) * 0.75 + 0.2).astype(np.float32)
    cover = frags.mask[0].numpy().astype(np.float32)
    shade *= cover
    if (Ks.width, Ks.height) != (K.width, K.height):
        shade = cv2.resize(shade, (K.width, K.height), interpolation=cv2.INTER_LINEAR)
        cover = cv2.resize(cover, (K.width, K.height), interpolation=cv2.INTER_LINEAR)
        shade = shade / np.maximum(cover, 1e-3)  # the coverage's edge blends, not the background's zeros
    mesh = shade[..., None] * np.array([0.85, 0.9, 1.0], np.float32)
    a = (alpha * cover)[..., None]
    out = (1 - a) * np.asarray(image, np.float32) + a * mesh
    out8 = (np.clip(out, 0, 1) * 255).astype(np.uint8)
    if draw_landmarks:
        r = max(1, round(max(K.width, K.height) / 300))
        for pts, colour in ((result.landmarks_target, (0, 255, 0)), (result.landmarks_fit, (255, 0, 0))):
            for x, y in np.asarray(pts):
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(out8, (int(round(x)), int(round(y))), r, colour, -1, cv2.LINE_AA)
    return out8.astype(np.float32) / 255


MESH_FRAMES = ("camera", "head")


def neutral_vertices(result, model) -> np.ndarray:
    """[V, 3] mm, model frame: the fitted head with its expression taken away - the identity and the free-form
    detail at expression 0 (the neutral face of a blendshape model as ICT's, the mean expression of a PCA one)."""
    basis = model.exp_basis.detach().cpu().double().numpy()  # [Ke, V, 3]
    e = np.asarray(result.exp_coeffs, np.float64)[: len(basis)]
    return np.asarray(result.vertices_model, np.float64) - np.tensordot(e, basis[: len(e)], axes=1)


def save_mesh(path, result, model, image: np.ndarray | None = None, texture_size: int = 1024,
              caps: bool = True, frame: str = "camera", neutral: bool = False, texture: str = "photo") -> list[Path]:
    """Write the fitted mesh (mm). ``.obj``/``.glb`` get a texture unwrapped from ``image``, ``.ply`` vertex colours
    read from such a texture (:data:`PLY_TEXTURE`; sampled from the photo directly for a model without UVs).

    ``frame``: ``"camera"`` - the camera frame (OpenCV axes: x right, y down, z forward), where the mesh lies over
    the photo; ``"head"`` - the head's own frame, the model's (y up, z out of the face), the fitted shape and
    expression without the head's pose: upright and facing the viewer in any mesh viewer, and the meshes of several
    photos line up.

    ``caps``: close the model's eye and mouth holes (:mod:`redafit.model.caps`; models without any are written as they
    are): the caps' vertices and triangles come after the model's, and a texture becomes the atlas of
    :func:`unwrap_atlas` (the model's tile on top of the eyes' strip). ``.npz`` always holds the model's own
    vertices and triangles.

    glTF is y-up in metres: a ``.glb`` holds the camera-frame mesh with OpenGL camera axes (x right, y up, z towards
    the viewer), i.e. y and z negated, scaled to metres by the writer, so it opens upright in any viewer (the head
    frame is y-up already: written as it is). It also holds the photo's camera (:func:`glb_camera`): looking
    through it, a viewer shows the mesh where it lies on the photo.

    ``neutral``: the head without its fitted expression (:func:`neutral_vertices`), in ``frame`` (posed as the
    photo in the camera frame); the texture is still unwrapped from the photo on the fitted head. A ``.glb`` then
    carries the model's expressions as morph targets (the caps moving with the lids and lips), named as the
    model names them: the head animates, and at the fitted weights (``--params``' ``expression``) it is the fit.

    ``texture``: ``"photo"`` (the photo's colours, lit as in the photo) or ``"albedo"`` (the fitted shading evened
    out, :func:`unwrap_texture`; needs a fit that fitted the lighting), for the texture and a PLY's colours alike.
    """
    from redafit.io.meshes import write_mesh
    from redafit.model.caps import hole_caps

    if frame not in MESH_FRAMES:
        raise ValueError(f"frame must be one of {MESH_FRAMES}, not {frame!r}")
    if texture not in TEXTURE_KINDS:
        raise ValueError(f"texture must be one of {TEXTURE_KINDS}, not {texture!r}")
    if isinstance(texture_size, bool) or not isinstance(texture_size, (int, np.integer)) or \
            not 16 <= texture_size <= 8192:
        raise ValueError(f"texture_size must be a whole number of pixels from 16 to 8192, got {texture_size!r}")
    path = Path(path)
    ext = path.suffix.lower()
    if image is not None:
        image = photo_of_fit(image, result)
    hc = hole_caps(model) if caps and ext != ".npz" else None
    R, t = np.asarray(result.rotation, np.float64), np.asarray(result.trans, np.float64)
    if neutral:
        head = neutral_vertices(result, model)
        verts = head @ R.T + t if frame == "camera" else head
    else:
        head = result.vertices_model
        verts = result.vertices_camera if frame == "camera" else result.vertices_model
    tris = result.triangles
    uv, uvt = (model.uv.cpu().numpy(), model.uv_triangles.cpu().numpy()) if model.has_uv else (None, None)
    if ext == ".ply":
        texture_size = PLY_TEXTURE  # the texture is only read for the vertex colours
    if hc is not None:
        verts, tris, uv, uvt = hc.extend(verts, tris, uv, uvt, texture_size)
    kw = {} if uv is None else {"uv": uv, "uv_triangles": uvt}
    if ext in (".obj", ".glb", ".ply") and image is not None and model.has_uv:
        tex = unwrap_texture(image, result, model, texture_size, kind=texture) if hc is None else \
            unwrap_atlas(image, result, model, hc, texture_size, kind=texture)
        if ext == ".ply":
            # the colours of the texture at each vertex (the hidden side's from its mirror, as in a texture), and no
            # per-face texture coordinates without a texture file: readers then drop the vertex colours
            kw = {"vertex_colors": texture_at_vertices(tex, uv, uvt, tris, len(verts))}
        else:
            kw["texture"] = tex
    elif ext == ".ply" and image is not None:  # no UVs: where the camera-frame vertices project, in any frame
        cam = result.vertices_camera if hc is None else hc.extend(result.vertices_camera, result.triangles)[0]
        kw["vertex_colors"] = vertex_colours(image, result, cam)
        if texture == "albedo":
            kw["vertex_colors"] = _delit_vertices(kw["vertex_colors"], cam, tris, result, model)
    to_gl = np.array([1.0, -1.0, -1.0]) if ext == ".glb" and frame == "camera" else np.ones(3)
    verts = verts * to_gl
    if ext == ".glb":
        kw["camera"] = glb_camera(result, frame)
        # the photo's colours hold its lighting: shown as they are; an albedo texture is for the viewer's lights
        kw["unlit"] = texture == "photo" and ("texture" in kw or "vertex_colors" in kw)
    if neutral and ext == ".glb" and model.n_exp:
        from redafit.io.meshes import write_glb
        from redafit.model.caps import morph_targets

        basis = model.exp_basis.detach().cpu().double().numpy()
        names = list(result.expression_names) or [f"expression{k}" for k in range(len(basis))]
        morphs = {n: (d @ R.T if frame == "camera" else d) * to_gl
                  for n, d in morph_targets(names, basis, head, hc).items()}
        return write_glb(path, verts, tris, morph_targets=morphs, name="face",
                         extras={"model": result.model_name, "units": "morph targets: the model's expressions"}, **kw)
    return write_mesh(path, verts, tris, frame=frame, **kw)


def glb_perspective(K: Intrinsics, name: str) -> dict:
    """The glTF perspective camera of intrinsics ``K`` (:func:`redafit.io.meshes.write_glb`'s ``camera``), at its
    node's origin looking down -z: the vertical field of view and aspect of the image, the pixel intrinsics kept in
    ``extras`` (glTF's principal point is the image centre, as the fit's)."""
    return {"name": name, "yfov": 2.0 * math.atan(K.height / 2.0 / K.fy),
            "aspectRatio": (K.width / K.fx) / (K.height / K.fy), "znear": 0.01,
            "extras": {"intrinsics_px": K.to_dict()}}


def glb_camera(result, frame: str = "camera", name: str = "photo") -> dict:
    """The photo's camera for :func:`redafit.io.meshes.write_glb`, in the frame :func:`save_mesh` writes a ``.glb``
    in: at the origin looking down -z for ``"camera"`` (the mesh is in OpenGL camera axes there), at the camera's
    place and turn in the head's frame for ``"head"`` (its OpenGL axes are R^T diag(1, -1, -1), its centre -R^T t)
    (:func:`glb_perspective`). ``result``: anything with ``intrinsics``, ``rotation`` (model to camera) and
    ``trans`` (mm), a fit's result or a rig's frame."""
    from scipy.spatial.transform import Rotation

    cam = glb_perspective(result.intrinsics, name)
    if frame == "head":
        R, t = np.asarray(result.rotation, np.float64), np.asarray(result.trans, np.float64)
        cam["rotation"] = Rotation.from_matrix(R.T @ np.diag([1.0, -1.0, -1.0])).as_quat().tolist()  # x, y, z, w
        cam["translation"] = (-R.T @ t).tolist()  # mm, as the mesh
    return cam


PLY_TEXTURE = 512  # the side of the texture a PLY's vertex colours are read from (a vertex is ~1 mm, 10 texels)


def _delit_vertices(colours: np.ndarray, cam: np.ndarray, tris: np.ndarray, result, model) -> np.ndarray:
    """Per-vertex colours [N, 3] of the camera-frame vertices ``cam`` [N, 3] (the model's, then any caps', which
    keep their colours, as in :func:`unwrap_atlas`) with the fitted shading evened out (:func:`delit`; a model
    without UVs has no texture to do it in)."""
    from redafit.render.shading import vertex_normals

    shading = fitted_shading(result, model)
    nm = len(result.vertices_camera)
    vc = torch.as_tensor(np.asarray(cam), dtype=torch.float32)
    n = vertex_normals(vc[None], torch.as_tensor(np.asarray(tris)).long())[0][:nm]
    view = -torch.nn.functional.normalize(vc[:nm], dim=-1)
    occ = None if shading.occlusion is None else torch.as_tensor(shading.occlusion)
    col = np.asarray(colours, np.float32)
    return np.clip(np.concatenate([delit(col[:nm], n, view, occ, shading)[0], col[nm:]]), 0, 1)


def texture_at_vertices(tex: np.ndarray, uv: np.ndarray, uvt: np.ndarray, tris: np.ndarray, n: int) -> np.ndarray:
    """[n, 3] colours of texture ``tex`` (row 0 = v 1) at each vertex's UV (bilinear; a vertex on a UV seam takes
    the mean of its corners'); a vertex in no triangle gets grey."""
    H, W = tex.shape[:2]
    vid, tid = np.asarray(tris).reshape(-1), np.asarray(uvt).reshape(-1)
    t = np.asarray(uv, np.float64)[tid]
    x = np.clip(t[:, 0] * W - 0.5, 0, W - 1)
    y = np.clip((1 - t[:, 1]) * H - 0.5, 0, H - 1)
    x0, y0 = np.minimum(x.astype(int), W - 2).clip(0), np.minimum(y.astype(int), H - 2).clip(0)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    tex = np.asarray(tex, np.float64)
    col = ((1 - fy) * ((1 - fx) * tex[y0, x0] + fx * tex[y0, x0 + 1])
           + fy * ((1 - fx) * tex[y0 + 1, x0] + fx * tex[y0 + 1, x0 + 1]))
    acc = np.zeros((n, 3))
    np.add.at(acc, vid, col)
    cnt = np.bincount(vid, minlength=n)[:, None]
    return np.where(cnt > 0, acc / np.maximum(cnt, 1), 0.5).astype(np.float32)


def vertex_colours(image: np.ndarray, result, vertices: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex colours [V, 3] sampled at the projections of ``vertices`` (default: the fit's camera-frame
    vertices; nearest pixel, clamped)."""
    K = result.intrinsics
    p = result.vertices_camera if vertices is None else np.asarray(vertices)
    z = np.maximum(p[:, 2], 1e-3)
    u = np.clip((K.fx * p[:, 0] / z + K.cx).astype(int), 0, image.shape[1] - 1)
    v = np.clip((K.fy * p[:, 1] / z + K.cy).astype(int), 0, image.shape[0] - 1)
    return image[v, u]


def save_params(path, result, extra: dict | None = None) -> Path:
    """``--params``: all coefficients, camera, pose, landmark errors (and the quality report) as JSON."""
    from redafit.io.atomic import atomic_write
    from redafit.io.jsonsafe import dump

    d = result.to_json()
    if extra:
        d.update(extra)
    with atomic_write(path, "w", encoding="utf-8") as f:
        dump(d, f, indent=1)
    return Path(path)


def save_overlay(path, image: np.ndarray, result, model) -> Path:
    from redafit.io.images import save_image

    save_image(path, render_overlay(image, result, model))
    return Path(path)
