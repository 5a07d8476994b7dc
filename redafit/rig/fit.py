"""Multi-image rig fitting: one identity (neutral shape + shared free-form correction) and one albedo from several
photos of a person, per-image expression, pose and lighting (riggable reconstruction, Bai et al. CVPR 2021).

:func:`fit_rig` runs the same staged fitter as ``redafit fit`` over all images at once
(:func:`redafit.fit.api.fit_batch` with ``shared_id=True``), optionally started from the init network
(:mod:`redafit.rig.initnet`), and merges the texture from all views. :func:`save_rig` writes the rig folder,
:func:`load_rig` reads it back.

Rig folder::

    neutral.obj/.mtl/.png  neutral mesh (model frame, mm), texture merged from all views; the eye and mouth holes
                           closed by caps after the model's vertices, the texture their atlas (redafit.model.caps)
    expressions.npz        neutral [V,3], basis [Ke,V,3] mm, names [Ke], triangles, uv, uv_triangles, identity,
                           displacement [V,3] (the model's topology), cap_* (the caps, when made)
    params.json            per image: expression, pose, camera, lighting, landmark error; excluded images
    rig.glb                glTF 2.0 with one morph target per expression (the model's names: ARKit for ICT)
    meshes/<name>.obj      (optional) each image's mesh with its expression: camera frame (aligned to the photo) or
                           head frame (the neutral's, posed by nothing: the meshes line up); params.json's
                           mesh_frame says which. They wear neutral.png through meshes/rig.mtl

Shapes: B images, V vertices, Ke expression modes, S texture side.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from redafit.errors import InputError, ModelError
from redafit.render.camera import Intrinsics
from redafit.io import jsonsafe
from redafit.io.arrays import kind_words, read_npz, shape_problem
from redafit.io.atomic import atomic_group, make_folder

log = logging.getLogger("redafit")

INIT_CHOICES = ("auto", "net", "mean")


@dataclass
class RigFrame:
    """One image's parameters in the rig."""

    name: str
    expression: np.ndarray  # [Ke]
    rot: np.ndarray  # [3] axis-angle (on top of the frontal flip)
    rotation: np.ndarray  # [3, 3] model-to-camera
    trans: np.ndarray  # [3] mm
    sh: np.ndarray  # [9, 3]
    intrinsics: Intrinsics
    landmark_error_px: float = float("nan")
    landmark_error_iod: float = float("nan")
    euler_deg: np.ndarray = field(default_factory=lambda: np.zeros(3))
    failure: str | None = None
    lighting_fitted: bool = False  # sh fitted to the photo's colours (FitResult.lighting_fitted)
    specular: float = 0.0  # the fitted highlight's strength and exponent (FitResult.specular*)
    specular_exponent: float = 0.0

    def to_json(self, names: list) -> dict:
        from redafit.fit.api import specular_record

        f = lambda a: np.round(np.asarray(a, np.float64), 6).tolist()  # noqa: E731
        return {"name": self.name, "camera": self.intrinsics.to_dict(),
                "pose": {"rotation": f(self.rotation), "axis_angle": f(self.rot), "translation_mm": f(self.trans),
                         "yaw_deg": float(self.euler_deg[0]), "pitch_deg": float(self.euler_deg[1]),
                         "roll_deg": float(self.euler_deg[2])},
                "expression": dict(zip(names, f(self.expression))), "lighting_sh": f(self.sh),
                "lighting_fitted": bool(self.lighting_fitted),
                "specular": specular_record(self.specular, self.specular_exponent),
                "landmark_error_px": _num(self.landmark_error_px), "landmark_error_iod": _num(self.landmark_error_iod),
                "failure": self.failure}

    @staticmethod
    def from_json(d: dict, names: list) -> "RigFrame":
        pose = d["pose"]
        cam = d["camera"]
        spec = d.get("specular") if isinstance(d.get("specular"), dict) else {}
        return RigFrame(name=d["name"], expression=np.array([d["expression"].get(n, 0.0) for n in names]),
                        rot=np.asarray(pose["axis_angle"], np.float64), rotation=np.asarray(pose["rotation"]),
                        trans=np.asarray(pose["translation_mm"]), sh=np.asarray(d.get("lighting_sh", np.zeros((9, 3)))),
                        intrinsics=Intrinsics.from_dict(cam),
                        landmark_error_px=_num(d.get("landmark_error_px"), np.nan),
                        landmark_error_iod=_num(d.get("landmark_error_iod"), np.nan),
                        euler_deg=np.array([pose.get("yaw_deg", 0.0), pose.get("pitch_deg", 0.0),
                                            pose.get("roll_deg", 0.0)]),
                        failure=d.get("failure"), lighting_fitted=d.get("lighting_fitted") is True,
                        specular=_num(spec.get("strength"), 0.0), specular_exponent=_num(spec.get("exponent"), 0.0))


def _num(x, default=None):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return default
    return x if np.isfinite(x) else default


@dataclass
class Rig:
    """A personalised face rig (numpy, model frame, millimetres)."""

    model_name: str
    neutral: np.ndarray  # [V, 3] identity + shared free-form, expression 0
    triangles: np.ndarray  # [F, 3]
    expression_basis: np.ndarray  # [Ke, V, 3] mm per unit weight (the model's blendshapes)
    expression_names: list
    identity: np.ndarray  # [Ki]
    displacement: np.ndarray  # [V, 3] shared free-form correction (0 without the free-form stage)
    frames: list  # [B] RigFrame
    uv: np.ndarray | None = None  # [T, 2]
    uv_triangles: np.ndarray | None = None  # [F, 3]
    texture: np.ndarray | None = None  # [S, S, 3] float in [0, 1]; with caps the atlas [S + S/4, S, 3]
    caps: object | None = None  # redafit.model.caps.Caps closing the eye/mouth holes in written meshes
    albedo: np.ndarray | None = None  # [Ha, Wa, 3] fitted UV albedo (colour attribute)
    excluded: list = field(default_factory=list)  # [{"image", "error", "exit_code"}]
    init: str = "mean"  # how the fit was initialised: "net" or "mean"
    texture_kind: str = "photo"  # what the texture holds (redafit.fit.outputs.TEXTURE_KINDS)
    seconds: float = 0.0
    results: list = field(default_factory=list, repr=False)  # FitResult per frame (not saved)

    def shape(self, weights) -> np.ndarray:
        """Model-frame vertices [V, 3] for expression weights [Ke] (missing trailing weights are 0)."""
        w = np.zeros(len(self.expression_names))
        w[: len(weights)] = np.asarray(weights, np.float64)[: len(w)]
        return self.neutral + np.tensordot(w, self.expression_basis, axes=1)

    def posed(self, i: int) -> np.ndarray:
        """Camera-frame vertices [V, 3] of frame ``i`` (aligned with its photo)."""
        fr = self.frames[i]
        return self.shape(fr.expression) @ np.asarray(fr.rotation).T + np.asarray(fr.trans)

    def mesh(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """The mesh to write for rig vertices [V, 3]: (vertices, triangles, {uv, uv_triangles} or {}), with the eye
        caps appended when the rig has them (:meth:`redafit.model.caps.Caps.extend`)."""
        uv = self.uv if self.uv is not None and len(self.uv) else None
        v, f, uvt = vertices, self.triangles, self.uv_triangles
        if self.caps is not None:
            size = self.texture.shape[1] if self.texture is not None else 1024
            v, f, uv, uvt = self.caps.extend(vertices, self.triangles, uv, uvt, size)
        return v, f, ({} if uv is None else {"uv": uv, "uv_triangles": uvt})

    @property
    def textured(self) -> bool:
        """Whether the rig's meshes wear a texture: it has one, and UVs to lay it on."""
        return self.texture is not None and self.uv is not None and len(self.uv) > 0

    @property
    def photo_textured(self) -> bool:
        """Whether the rig wears its photos' colours, lit as they were (a glTF material marked unlit shows them so),
        not an albedo texture (:attr:`texture_kind`)."""
        return self.textured and self.texture_kind == "photo"

    def morph_targets(self) -> dict:
        """{expression name: delta [V (+ the caps' vertices), 3]} for the glTF, in the model's order."""
        from redafit.model.caps import morph_targets

        return morph_targets(self.expression_names, self.expression_basis, self.neutral, self.caps)


# ----------------------------------------------------------------------------------------------------------------
# fitting
# ----------------------------------------------------------------------------------------------------------------
def resolve_initnet(model, init: str = "auto"):
    """The init network to use for ``init`` (auto|net|mean), or None."""
    if init not in INIT_CHOICES:
        raise InputError(f"init: expected one of {', '.join(INIT_CHOICES)}, got {init!r}")
    if init == "mean":
        return None
    from redafit.rig.initnet import initnet_paths, load_initnet

    try:
        net = load_initnet(model)
    except ModelError as e:  # trained for another model of this name (a model given by path), or unreadable
        if init == "net":
            raise
        log.warning("%s; starting from the mean face", e)
        return None
    if net is None and init == "net":
        raise ModelError(f"no init network for model '{model.name}' (looked for {initnet_paths(model.name)[0]}); "
                         f"train one with: redafit models train-init --model {model.name}")
    return net


def _check_names(names, n: int) -> list[str]:
    """The views' names (default image000, image001, ...): one per image, distinct, each usable as a file name
    (the rig's meshes/<name>.obj, maps/<name>/)."""
    if names is None:
        return [f"image{i:03d}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise InputError(f"rig: {len(names)} names given for {n} images: one per image")
    if len(set(names)) != n:
        raise InputError("rig: the images' names must differ (each names the view's files)")
    bad = [x for x in names if not x or x in (".", "..") or "/" in x or "\\" in x or "\0" in x]
    if bad:
        raise InputError(f"rig: {bad[0]!r} cannot name a view's files (no path separators, not empty)")
    return names


def fit_rig(images: list, landmarks: list, model, config=None, intrinsics: list | None = None,
            names: list | None = None, init="auto", texture_size: int = 1024, progress=None,
            parsings: list | None = None, caps: bool = True, texture: str = "photo") -> Rig:
    """Fit one rig to B >= 2 images [H, W, 3] (float RGB in [0, 1]) with their landmarks [68|5, 2] (px).

    ``parsings`` optionally gives per image (None entries allowed) a parsing map of class ids registered to it
    (:mod:`redafit.parsing.maps`), used by the attribute stages instead of parsing that photo.

    ``init``: ``"auto"`` (the model's init network when installed, else the mean face), ``"net"`` (required),
    ``"mean"``, or an already loaded :class:`~redafit.rig.initnet.InitNet`. ``texture_size`` 0 skips the texture.
    ``caps``: close the model's eye and mouth holes in the rig's meshes (:mod:`redafit.model.caps`; the texture is then
    the atlas of :func:`redafit.fit.outputs.unwrap_atlas`). ``texture``: ``"photo"`` or ``"albedo"`` (each view's
    fitted shading evened out before the views are merged: :func:`merge_textures`).
    """
    from redafit.fit.api import check_config, check_intrinsics, check_image, fit_batch
    from redafit.fit.outputs import TEXTURE_KINDS

    t0 = time.perf_counter()
    if len(images) < 2:
        raise InputError(f"rig: need at least 2 images of the person, got {len(images)}")
    if len(landmarks) != len(images):
        raise InputError("rig: need one landmark set per image")
    config = check_config(config)
    for im in images:
        check_image(im)
    names = _check_names(names, len(images))
    if texture not in TEXTURE_KINDS:
        raise InputError(f"rig: texture must be one of {', '.join(TEXTURE_KINDS)}, not {texture!r}")
    if texture == "albedo" and texture_size and not config.fits_lighting():
        raise InputError("rig: an albedo texture needs the lighting fitted to the photos' colours: a config with the "
                         "colour attribute (the full or fast preset)")
    Ks = check_intrinsics(intrinsics, images, config.focal)
    _warn_other_people(images, landmarks, names)
    net = init if hasattr(init, "cfg") else resolve_initnet(model, init)
    start = None
    if net is not None and all(len(lm) == 68 for lm in landmarks):
        from redafit.rig.initnet import predict_init

        log.info("rig: initialising identity, expressions and poses with the init network (%s)",
                 getattr(net, "path", "in memory"))
        start = predict_init(net, landmarks, model, Ks)
        n_id = config.n_id or model.n_id
        n_exp = config.n_exp or model.n_exp
        start["id"] = start["id"][:, :n_id]
        start["exp"] = start["exp"][:, :n_exp]
    elif net is not None:
        log.warning("rig: the init network needs 68 landmarks per image; starting from the mean face")
    if parsings is not None and len(parsings) != len(images):
        raise InputError("rig: need one parsing map (or None) per image")
    results = fit_batch(list(images), list(landmarks), model, config, Ks, shared_id=True, progress=progress,
                        init=start, parsings=parsings)
    rig = rig_from_results(results, model, names)
    rig.init = "net" if start is not None else "mean"
    if caps:
        from redafit.model.caps import hole_caps

        rig.caps = hole_caps(model)
    if texture_size and model.has_uv:
        rig.texture = merge_textures(images, results, model, texture_size, caps=rig.caps, kind=texture)
        rig.texture_kind = texture
    rig.seconds = time.perf_counter() - t0
    return rig


def _warn_other_people(images: list, landmarks: list, names: list) -> None:
    """A warning when the photos' faces do not look like one person's (:func:`redafit.landmarks.identity.other_people`):
    the rig's one identity fitted to two people is neither, and its texture a patchwork of their faces."""
    from redafit.landmarks.identity import SAME_PERSON, comparable, other_people

    odd = other_people(images, landmarks)
    if not odd:
        return
    if len(odd) == len(comparable(landmarks)):
        log.warning("rig: the photos may not show one person: their faces lie %.2f-%.2f apart by dlib's face "
                    "recognition (one person's within %.1f); the rig's one identity is fitted to all of them",
                    min(m for _, m in odd), max(m for _, m in odd), SAME_PERSON)
        return
    for i, m in odd:
        log.warning("rig: %s may show another person than the other photos: its face lies %.2f from theirs by "
                    "dlib's face recognition (one person's within %.1f); leave it out if so", names[i], m,
                    SAME_PERSON)


def rig_from_results(results: list, model, names: list) -> Rig:
    """Assemble a :class:`Rig` from a shared-identity :func:`fit_batch` run (one FitResult per image)."""
    import torch

    basis = model.exp_basis.detach().cpu().double().numpy()  # [Ke, V, 3]
    r0 = results[0]
    ke = len(r0.exp_coeffs)
    neutral = r0.vertices_model.astype(np.float64) - np.tensordot(r0.exp_coeffs.astype(np.float64), basis[:ke], 1)
    with torch.no_grad():
        idc = torch.as_tensor(r0.id_coeffs, dtype=torch.float32, device=model.mean.device)[None]
        base = model(idc)[0].cpu().double().numpy()
    frames = [RigFrame(name=n, expression=np.asarray(r.exp_coeffs, np.float64),
                       rot=np.asarray(r.rot, np.float64), rotation=np.asarray(r.rotation, np.float64),
                       trans=np.asarray(r.trans, np.float64), sh=np.asarray(r.sh, np.float64),
                       intrinsics=r.intrinsics, landmark_error_px=r.landmark_error_px,
                       landmark_error_iod=r.landmark_error_iod, euler_deg=np.asarray(r.euler_deg, np.float64),
                       failure=r.failure, lighting_fitted=bool(r.lighting_fitted), specular=float(r.specular),
                       specular_exponent=float(r.specular_exponent)) for n, r in zip(names, results)]
    return Rig(model_name=model.name, neutral=neutral, triangles=model.triangles.cpu().numpy(),
               expression_basis=basis[:ke], expression_names=list(model.expression_names[:ke]),
               identity=np.asarray(r0.id_coeffs, np.float64), displacement=neutral - base, frames=frames,
               uv=model.uv.cpu().numpy() if model.has_uv else None,
               uv_triangles=model.uv_triangles.cpu().numpy() if model.has_uv else None,
               albedo=r0.albedo, results=list(results))


MERGE_SHARPNESS = 8.0  # each view's weight at a texel: its sample's quality (TexelWeights.quality) to this power
LEAD_WEIGHT = 1e3  # x the lead view's weight: it gives each texel it sees with over 1e3 ** (-1 / 8) = 0.42 x
#                    the quality of another view's sample of it
MERGE_LEVELS = 6  # bands of the blend (each view's detail switches within a few texels, its mean colour broadly)
LEAD_MIN_SCALE = 0.5  # the lead view is the most frontal of those whose face is at least this x the largest's
LEAD_NEUTRAL_MM = 1.5  # ... and whose expression moves the face by at most this much more than the most neutral's
IMPLAUSIBLE_WEIGHT = 1e-12  # x the weight of a view whose fit looks implausible (FitResult.failure), unless all
#                             do: under the plausible views' fallback, so it gives only what none of them has
MERGE_BLUR = 1 / 256  # x the texture's side: the Gaussian blur of the quality maps (no speckle of views' choices)


def lead_view(results: list, model=None) -> int:
    """Which view's texture the merged texture keeps wherever that view sees the surface well
    (:func:`merge_textures`): the most frontal (cosine of yaw x cosine of pitch) of the plausible fits whose face
    is at least :data:`LEAD_MIN_SCALE` as large in its photo (pixels per mm: focal length / depth) as the largest
    and, given the ``model``, whose expression is near neutral (:func:`expression_offset` within
    :data:`LEAD_NEUTRAL_MM` of the smallest): the texture goes on the neutral mesh, and a smile or a blink in it
    would stay there."""
    scale = np.array([r.intrinsics.fx / max(float(np.asarray(r.trans)[2]), 1e-6) for r in results])
    yaw, pitch = np.radians(np.array([np.asarray(r.euler_deg, np.float64)[:2] for r in results])).T
    frontal = np.cos(yaw) * np.cos(pitch)
    ok = np.array([r.failure is None for r in results])
    ok = ok if ok.any() else np.ones_like(ok)
    ok &= scale >= LEAD_MIN_SCALE * scale[ok].max()
    if model is not None:
        offset = np.array([expression_offset(model, r) for r in results])
        ok &= offset <= offset[ok].min() + LEAD_NEUTRAL_MM
    frontal[~ok] = -np.inf
    return int(np.argmax(frontal))


def expression_offset(model, result) -> float:
    """How far (mm) the fitted expression moves the face from neutral: the 98th percentile of the face area's
    vertices' movement, so that a blink or a raised brow, which move few vertices far, count as well as an open jaw
    (ICT: both eyes closed 5.8 mm, a smile 14.7, the jaw open 39.5)."""
    import torch

    from redafit.parsing.model_labels import vertex_face_area

    beta = torch.as_tensor(np.asarray(result.exp_coeffs, np.float64), dtype=model.exp_basis.dtype,
                           device=model.exp_basis.device)
    k = min(len(beta), model.n_exp)
    moved = torch.einsum("k,kvc->vc", beta[:k], model.exp_basis[:k]).norm(dim=-1)
    try:
        moved = moved[vertex_face_area(model).to(moved.device)]
    except ModelError:  # no landmark vertex ids to find the face area with: every vertex
        pass
    return float(torch.quantile(moved.float(), 0.98)) if moved.numel() else 0.0


def merge_textures(images: list, results: list, model, size: int = 1024, caps=None, kind: str = "photo") -> np.ndarray:
    """One texture [S, S, 3] from all views (with eye ``caps``, the atlas [S + S/4, S, 3] of
    :func:`redafit.fit.outputs.unwrap_atlas`).

    Averaging the views' textures blurs them: the fits are a few texels apart from view to view, and the face's
    expression differs. So one view leads (:func:`lead_view`: the most frontal of the near-neutral ones) and gives
    every texel it sees well; the others give what it sees at a grazing angle or not at all (its far cheek, where it
    only has its mirror image), each texel from the views that see it most nearly face on. Each view's weight is its
    samples' quality (:class:`redafit.fit.outputs.TexelWeights`) to the power :data:`MERGE_SHARPNESS`, the lead's
    times :data:`LEAD_WEIGHT`, and the views are blended band by band (Burt and Adelson's multi-band blend: each
    band of detail of the textures' Laplacian pyramids weighted by the same band of the weights' Gaussian pyramids),
    so a switch between views is sharp in the fine detail and gradual in the colour, and shows no seam. Texels no
    view sees directly (a guarded neck, the hidden side in every view) take the mean of the views' fills, weighted
    by their confidence. A view whose fit looks implausible (``failure``) gives only what no other view can.
    ``kind`` ``"albedo"``: each view's texture has its own fitted shading evened out
    (:func:`redafit.fit.outputs.unwrap_texture`), so views lit differently agree and the merge shows no lighting.
    """
    import cv2

    from redafit.fit.outputs import unwrap_atlas, unwrap_texture

    lead = lead_view(results, model)
    all_doubtful = all(r.failure is not None for r in results)
    acc = den = None
    for i, (im, res) in enumerate(zip(images, results)):
        tex, tw = unwrap_texture(im, res, model, size, return_weights=True, kind=kind) if caps is None else \
            unwrap_atlas(im, res, model, caps, size, return_weights=True, kind=kind)
        q = cv2.GaussianBlur(np.clip(tw.quality, 0, 1), (0, 0), max(MERGE_BLUR * size, 0.5))
        w = q.astype(np.float32) ** MERGE_SHARPNESS * (LEAD_WEIGHT if i == lead else 1.0)
        w = w + np.float32(1e-9) * (np.clip(tw.confidence, 0, 1) ** 2 + 1e-3)  # where no view sees a texel
        if res.failure is not None and not all_doubtful:
            w *= IMPLAUSIBLE_WEIGHT
        bands = _laplacian_pyramid(tex.astype(np.float32), MERGE_LEVELS)
        wp = _gaussian_pyramid(w, MERGE_LEVELS)
        acc = [wl[..., None] * b for wl, b in zip(wp, bands)] if acc is None else \
            [a + wl[..., None] * b for a, wl, b in zip(acc, wp, bands)]
        den = wp if den is None else [d + wl for d, wl in zip(den, wp)]
    levels = [a / d[..., None] for a, d in zip(acc, den)]
    out = levels[-1]
    for band in levels[-2::-1]:
        out = cv2.pyrUp(out, dstsize=band.shape[1::-1]) + band
    return np.clip(out, 0, 1).astype(np.float32)


def _gaussian_pyramid(a: np.ndarray, levels: int) -> list:
    import cv2

    out = [a]
    for _ in range(levels):
        out.append(cv2.pyrDown(out[-1]))
    return out


def _laplacian_pyramid(a: np.ndarray, levels: int) -> list:
    """Band-pass levels [a - up(down(a)), ...] and the coarsest Gaussian level last; sum of the upsampled levels = a."""
    import cv2

    g = _gaussian_pyramid(a, levels)
    return [g[i] - cv2.pyrUp(g[i + 1], dstsize=g[i].shape[1::-1]) for i in range(levels)] + [g[-1]]


# ----------------------------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------------------------
MESHES_MATERIAL = "rig"  # meshes/rig.mtl: the per-image meshes' material, neutral.png
MAX_META_BYTES = 1 << 30  # a rig's params.json (a few KB per image) larger than this is refused unread


def save_rig(rig: Rig, folder, meshes: bool = False, overlays: dict | None = None, model=None,
             frame: str = "camera", maps: bool = False, images: dict | None = None) -> list[Path]:
    """Write the rig folder (see the module docstring), all files or none (they replace their targets together,
    :func:`redafit.io.atomic.atomic_group`). ``meshes`` writes each image's mesh in ``frame`` (one of
    :data:`redafit.fit.outputs.MESH_FRAMES`: ``"camera"``, aligned with its photo, or ``"head"``, the model's frame
    without the image's pose). ``overlays`` {frame name: image} writes ``overlays/<name>.png``, ``maps`` each image's
    maps (:func:`redafit.render.maps.save_maps`, the texture coordinates in the rig's texture) into
    ``maps/<name>/`` (both need ``model`` and the rig's fit results), with its albedo, shading and highlight where
    ``images`` {frame name: image} gives its photo and its fit fitted a lighting."""
    earlier = _earlier_names(Path(folder))
    written = _save_rig(rig, folder, meshes, overlays, model, frame, maps, images, earlier)
    for sub in ("meshes", "overlays", *(f"maps/{n}" for n in earlier), "maps"):
        try:  # a subfolder the files of an earlier rig were removed from (_remove_stale), now empty
            (Path(folder) / sub).rmdir()
        except OSError:  # not there, or not empty
            pass
    return written


@atomic_group()
def _save_rig(rig: Rig, folder, meshes: bool, overlays: dict | None, model, frame: str, maps: bool,
              images: dict | None, earlier: list[str]) -> list[Path]:
    from redafit.fit.outputs import MESH_FRAMES
    from redafit.io.atomic import atomic_path, atomic_write
    from redafit.io.meshes import shared_texture, write_glb, write_mesh

    if frame not in MESH_FRAMES:
        raise ValueError(f"frame must be one of {MESH_FRAMES}, not {frame!r}")
    if (overlays or maps) and (model is None or len(rig.results) != len(rig.frames)):
        raise InputError("save_rig: overlays and maps need the model and the rig's fit results (a rig fit_rig "
                         "returns; load_rig reads none)")

    out = Path(folder)
    make_folder(out)
    _remove_stale(out, earlier, rig, meshes, overlays, maps)
    written: list[Path] = []
    v, f, uvkw = rig.mesh(rig.neutral)
    written += write_mesh(out / "neutral.obj", v, f, texture=rig.texture if uvkw else None, frame="head", **uvkw)
    arrays = {"neutral": rig.neutral.astype(np.float32), "basis": rig.expression_basis.astype(np.float32),
              "names": np.array(rig.expression_names, dtype=str), "triangles": rig.triangles.astype(np.int32),
              "identity": rig.identity.astype(np.float32), "displacement": rig.displacement.astype(np.float32)}
    if rig.uv is not None and len(rig.uv):
        arrays.update(uv=rig.uv.astype(np.float32), uv_triangles=rig.uv_triangles.astype(np.int32))
    if rig.caps is not None:
        arrays.update(rig.caps.to_arrays())
    with atomic_path(out / "expressions.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    written.append(out / "expressions.npz")
    meta = {"model": rig.model_name, "n_images": len(rig.frames), "init": rig.init,
            "seconds": round(rig.seconds, 3), "expression_names": rig.expression_names,
            "identity": np.round(rig.identity, 6).tolist(),
            "images": [fr.to_json(rig.expression_names) for fr in rig.frames], "excluded": rig.excluded}
    if rig.texture is not None:
        meta["texture"] = rig.texture_kind
    if meshes:
        meta["mesh_frame"] = frame
    with atomic_write(out / "params.json", "w", encoding="utf-8") as fh:
        jsonsafe.dump(meta, fh, indent=1)
    written.append(out / "params.json")
    from redafit.fit.outputs import glb_camera

    # each photo's camera where it stood in the head's frame (the neutral seen from each photo's viewpoint)
    written += write_glb(out / "rig.glb", v, f, morph_targets=rig.morph_targets(),
                         texture=rig.texture if uvkw else None, name="rig",
                         unlit=bool(uvkw) and rig.photo_textured,
                         extras={"model": rig.model_name, "units": "morph targets: the model's expressions"},
                         camera=[glb_camera(fr, "head", name=fr.name) for fr in rig.frames], **uvkw)
    if meshes:
        make_folder(out / "meshes")
        shared = {}
        if rig.textured:  # the meshes wear neutral.png (the same UVs), through meshes/rig.mtl
            files, shared = shared_texture(out / "meshes", ".obj", "../neutral.png", MESHES_MATERIAL)
            written += files
        for i, fr in enumerate(rig.frames):
            pv, pf, _ = rig.mesh(rig.posed(i) if frame == "camera" else rig.shape(fr.expression))
            written += write_mesh(out / "meshes" / f"{fr.name}.obj", pv, pf, frame=frame, **uvkw, **shared)
    if overlays:
        from redafit.fit.outputs import render_overlay
        from redafit.io.images import save_image

        make_folder(out / "overlays")
        for fr, res in zip(rig.frames, rig.results):
            if fr.name in overlays:
                p = out / "overlays" / f"{fr.name}.png"
                save_image(p, render_overlay(overlays[fr.name], res, model))
                written.append(p)
    if maps:
        from redafit.render.maps import render_maps, save_maps

        size = rig.texture.shape[1] if rig.textured else 1024
        for fr, res in zip(rig.frames, rig.results):
            written += save_maps(out / "maps" / fr.name, render_maps(res, model, rig.caps is not None, size,
                                                                      image=(images or {}).get(fr.name)))
    return written


def _earlier_names(out: Path) -> list[str]:
    """The image names of the rig an earlier run saved in ``out`` (its params.json), those a rig's files can have;
    none when there is no rig there, or none redafit can read."""
    try:
        if (out / "params.json").stat().st_size > MAX_META_BYTES:
            return []
        with open(out / "params.json", encoding="utf-8") as fh:
            names = [im["name"] for im in json.load(fh)["images"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [n for n in names if isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")]


def _remove_stale(out: Path, earlier: list[str], rig: Rig, meshes: bool, overlays: dict | None, maps: bool) -> None:
    """Remove, with the rig's files (:func:`redafit.io.atomic.atomic_remove`: put back if the writing fails), the
    per-image files the earlier rig in ``out`` wrote (``earlier``: its images' names) that this one does not write
    again: its meshes (which would wear the new neutral.png), overlays and maps. A folder holds one rig: the photos
    of another run's rig, or its meshes without ``--meshes``, lay beside the new one's before."""
    from redafit.io.atomic import atomic_remove
    from redafit.render.maps import MAP_FILES

    if not earlier:
        return
    names = {fr.name for fr in rig.frames}
    stale = []
    for name in earlier:
        if not meshes or name not in names:
            stale.append(out / "meshes" / f"{name}.obj")
        if not overlays or name not in overlays:
            stale.append(out / "overlays" / f"{name}.png")
        if not maps or name not in names:
            stale += [out / "maps" / name / m for m in MAP_FILES]
    if not meshes or not rig.textured:
        stale.append(out / "meshes" / f"{MESHES_MATERIAL}.mtl")
    gone = [p for p in stale if p.is_file()]
    kept = [p for p in gone if not p.is_symlink() and not p.stat().st_mode & 0o222]  # read-only: the user's to keep
    gone = [p for p in gone if p not in kept]
    for p in gone:
        atomic_remove(p)
    if kept:
        log.warning("%s: %d read-only file(s) of the rig made there before are left as they are (%s)", out, len(kept),
                    kept[0])
    if gone:
        log.info("%s: removed %d file(s) of the rig made there before that this one does not write again", out,
                 len(gone))


def _checked_caps(arrays: dict, npz: Path):
    """The caps stored in a rig's arrays (None when it has none): their types, shapes and indices checked against
    the rig's vertices; :class:`InputError` naming ``npz`` otherwise."""
    from redafit.model.caps import Caps

    if "cap_triangles" not in arrays:
        return None
    V = len(arrays["neutral"])
    try:
        for key in sorted(k for k in arrays if k.startswith("cap_")):
            kinds = "US" if key == "cap_kinds" else "fiu" if key == "cap_uv" else "iu"
            if arrays[key].dtype.kind not in kinds:
                raise ValueError(f"'{key}' holds {arrays[key].dtype}")
        caps = Caps.from_arrays(arrays)
        if not caps.loops or any(loop.ndim != 1 or len(loop) < 3 for loop in caps.loops):
            raise ValueError("expected loops of 3 or more vertex ids")
        if caps.triangles.ndim != 2 or caps.triangles.shape[1] != 3 or caps.uv.ndim != 2 or caps.uv.shape[1] != 2 \
                or caps.uv_triangles.shape != caps.triangles.shape:
            raise ValueError(f"the shapes of cap_triangles {list(caps.triangles.shape)}, cap_uv "
                             f"{list(caps.uv.shape)} and cap_uv_triangles {list(caps.uv_triangles.shape)} do not fit")
        if not np.isfinite(caps.uv).all():
            raise ValueError("cap_uv contains NaN or infinite values")
        if any(loop.min() < 0 or loop.max() >= V for loop in caps.loops) or caps.triangles.min() < 0 \
                or caps.triangles.max() >= V + caps.n_new or caps.uv_triangles.min() < 0 \
                or caps.uv_triangles.max() >= len(caps.uv):
            raise ValueError("eye cap indices out of range")
    except KeyError as e:
        raise InputError(f"{npz}: malformed eye caps (no array {e})") from None
    except (ValueError, TypeError) as e:
        raise InputError(f"{npz}: malformed eye caps ({e})") from None
    return caps


_KINDS = {"float": ("fiu", "numbers"), "int": ("iu", "integers"), "str": ("US", "text")}


def _rig_array(arrays: dict, npz: Path, key: str, kind: str, shape: tuple, note: str = "") -> np.ndarray:
    """The array ``key`` of a rig's ``expressions.npz``: of ``kind`` (float: finite numbers, int, str) and ``shape``
    (ints, or None for any size); :class:`InputError` naming the file, the array and what is wrong otherwise."""
    if key not in arrays:
        raise InputError(f"{npz}: lacks the array '{key}' (make the rig again with `redafit rig`)")
    a = arrays[key]
    kinds, words = _KINDS[kind]
    if a.dtype.kind not in kinds:
        raise InputError(f"{npz}: array '{key}': expected {words}, got {kind_words(a.dtype)} ({a.dtype})")
    problem = shape_problem(a.shape, shape, note)
    if problem:
        raise InputError(f"{npz}: array '{key}': {problem}")
    if kind == "float" and not np.isfinite(a).all():
        raise InputError(f"{npz}: array '{key}' contains NaN or infinite values")
    return a


def _rig_ids(arrays: dict, npz: Path, key: str, shape: tuple, n: int, into: str) -> np.ndarray:
    """Integer ids [``shape``] into ``n`` items (the array ``into``)."""
    a = _rig_array(arrays, npz, key, "int", shape).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise InputError(f"{npz}: array '{key}' has ids outside 0..{n - 1} (the rows of '{into}')")
    return a


def _rig_arrays(npz: Path) -> dict:
    """The checked arrays of a rig's ``expressions.npz``: shapes consistent with ``neutral`` [V, 3] and ``names``
    [Ke], finite numbers, ids in range (see the module docstring)."""
    d = read_npz(npz, "the file `redafit rig` writes")
    neutral = _rig_array(d, npz, "neutral", "float", (None, 3))
    V = len(neutral)
    if V == 0:
        raise InputError(f"{npz}: array 'neutral' has no vertices")
    names = _rig_array(d, npz, "names", "str", (None,))
    if len(set(names.tolist())) < len(names):
        raise InputError(f"{npz}: array 'names' repeats an expression name")
    vs = f" ({V} vertices of 'neutral')"
    out = {"neutral": neutral, "names": [str(n) for n in names],
           "basis": _rig_array(d, npz, "basis", "float", (len(names), V, 3),
                               f" ({len(names)} expressions of 'names', {V} vertices of 'neutral')"),
           "triangles": _rig_ids(d, npz, "triangles", (None, 3), V, "neutral"),
           "identity": _rig_array(d, npz, "identity", "float", (None,)),
           "displacement": _rig_array(d, npz, "displacement", "float", (V, 3), vs)}
    if len(out["triangles"]) == 0:
        raise InputError(f"{npz}: array 'triangles' has no triangles")
    out["uv"] = out["uv_triangles"] = None
    if "uv" in d or "uv_triangles" in d:
        uv = _rig_array(d, npz, "uv", "float", (None, 2))
        if len(uv):
            out["uv"] = uv
            out["uv_triangles"] = _rig_ids(d, npz, "uv_triangles", (len(out["triangles"]), 3), len(uv), "uv")
    out["caps"] = _checked_caps(d, npz)
    return out


def _frame_error(d, names: list) -> str | None:
    """What is wrong with one image of a rig's ``params.json`` (None when nothing): an object with a name, a pose
    (3x3 rotation, 3-vector axis-angle and translation), a camera (positive focal lengths and image size, finite
    principal point), finite expression weights and lighting."""
    from redafit.rig.track import _vector

    if not isinstance(d, dict):
        return "expected an object"
    if not isinstance(d.get("name"), str):
        return "'name' must be a string"
    pose = d.get("pose")
    if not isinstance(pose, dict):
        return "'pose' must be an object"
    for key, shape in (("rotation", (3, 3)), ("axis_angle", (3,)), ("translation_mm", (3,))):
        if not _vector(pose.get(key), shape):
            return f"'pose.{key}' must be a {'x'.join(map(str, shape))} list of finite numbers"
    bad = [k for k in ("yaw_deg", "pitch_deg", "roll_deg") if k in pose and not _vector(pose[k], ())]
    if bad:
        return f"'pose.{bad[0]}' must be a finite number"
    cam = d.get("camera")
    if not isinstance(cam, dict):
        return "'camera' must be an object"
    bad = [k for k in ("fx", "fy", "cx", "cy", "width", "height") if not _vector(cam.get(k), ())]
    if bad or min(cam["fx"], cam["fy"], cam["width"], cam["height"]) <= 0:
        return "'camera' must hold positive focal lengths fx, fy and image size width, height, and cx, cy"
    expr = d.get("expression")
    if not isinstance(expr, dict) or not all(_vector(expr.get(n, 0.0), ()) for n in names):
        return "'expression' must map the expression names to finite numbers"
    if "lighting_sh" in d and not _vector(d["lighting_sh"], (9, 3)):
        return "'lighting_sh' must be a 9x3 list of finite numbers"
    if d.get("failure") is not None and not isinstance(d["failure"], str):
        return "'failure' must be a string or null"
    return None


def _rig_meta(par: Path, names: list) -> dict:
    """A rig's ``params.json``, checked: an object whose ``images`` (:func:`_frame_error`) and ``excluded`` are lists,
    ``model`` and ``init`` strings and ``seconds`` a number when present."""
    from redafit.io.inputs import read_text_file

    try:
        meta = json.loads(read_text_file(par, "rig params file", MAX_META_BYTES))
    except json.JSONDecodeError as e:
        raise InputError(f"{par}: not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{par}: expected a JSON object (the rig's parameters), got {type(meta).__name__} "
                         f"{jsonsafe.dumps(meta)[:40]}")
    for key, kind, what in (("images", list, "a list"), ("excluded", list, "a list"), ("model", str, "a string"),
                            ("init", str, "a string")):
        if key in meta and not isinstance(meta[key], kind):
            raise InputError(f"{par}: '{key}' must be {what}, got {jsonsafe.dumps(meta[key])[:40]}")
    if "seconds" in meta and _num(meta["seconds"]) is None:
        raise InputError(f"{par}: 'seconds' must be a finite number, got {jsonsafe.dumps(meta['seconds'])[:40]}")
    for k, im in enumerate(meta.get("images", [])):
        err = _frame_error(im, names)
        if err:
            name = f" ({im['name']})" if isinstance(im, dict) and isinstance(im.get("name"), str) else ""
            raise InputError(f"{par}: image {k}{name}: {err}")
    return meta


def rig_files(folder) -> tuple[Path, Path, Path]:
    """The files of a rig folder that :func:`load_rig` reads: ``expressions.npz``, ``params.json`` and the texture
    ``neutral.png`` (when there is one)."""
    folder = Path(folder)
    return folder / "expressions.npz", folder / "params.json", folder / "neutral.png"


def load_rig(folder) -> Rig:
    """Read a rig folder written by :func:`save_rig` (texture from ``neutral.png`` when present). Every file is
    checked here (types, shapes against each other, finite values, ids in range), so that a malformed one is an
    :class:`InputError` naming it rather than a crash while the rig is used."""
    folder = Path(folder)
    npz, par, png = rig_files(folder)
    if not folder.is_dir() or not npz.is_file() or not par.is_file():
        raise InputError(f"{folder}: not a rig folder (expected expressions.npz and params.json; "
                         "make one with `redafit rig`)")
    a = _rig_arrays(npz)
    names = a["names"]
    meta = _rig_meta(par, names)
    try:
        frames = [RigFrame.from_json(f, names) for f in meta.get("images", [])]
    except InputError as e:  # the camera's own checks
        raise InputError(f"{par}: {e}") from None
    texture = None
    if png.is_file():
        from redafit.io.images import load_image

        try:
            texture = load_image(png)[0]
        except InputError as e:  # an ImageError (exit 4) too: here it is a malformed rig file
            raise InputError(f"the rig's texture: {e}") from None
    return Rig(model_name=str(meta.get("model", "")), neutral=a["neutral"].astype(np.float64),
               triangles=a["triangles"], expression_basis=a["basis"].astype(np.float64),
               expression_names=names, identity=a["identity"].astype(np.float64),
               displacement=a["displacement"].astype(np.float64), frames=frames,
               uv=a["uv"], uv_triangles=a["uv_triangles"], texture=texture, caps=a["caps"],
               excluded=meta.get("excluded", []), init=meta.get("init", "mean"),
               texture_kind="albedo" if meta.get("texture") == "albedo" else "photo",
               seconds=float(meta.get("seconds", 0.0)))
