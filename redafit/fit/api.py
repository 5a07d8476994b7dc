"""Library entry points: :func:`fit_image` (one photo) and :func:`fit_batch` (several, optionally one identity)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from redafit.errors import InputError, LandmarkFileError, ModelError
from redafit.fit.config import FitConfig
from redafit.fit.correspondence import build_targets, gather_points
from redafit.fit.fitter import FitContext, StageReport, landmark_error_px, landmark_subset, run_stage
from redafit.fit.params import FitParams, camera_tensor, project_batch
from redafit.model.face_model import FaceModel
from redafit.render.camera import R_FLIP, Intrinsics, matrix_to_axis_angle, rotation_to_euler

ATTRIBUTE_LOSSES = {"color", "mask", "depth", "arap", "albedo_smooth", "albedo_sym", "albedo_skin", "sh_prior"}


def specular_record(strength: float, exponent: float) -> dict:
    """The fitted highlight as the parameter JSONs write it (a fit's ``--params``, a rig's ``params.json``)."""
    return {"strength": round(float(strength), 6), "exponent": float(exponent)}


@dataclass
class FitResult:
    """The outcome of fitting one image (numpy arrays, CPU)."""

    vertices_model: np.ndarray  # [V, 3] mm, model frame (identity + expression + free-form), no pose
    vertices_camera: np.ndarray  # [V, 3] mm, camera frame
    triangles: np.ndarray  # [F, 3]
    intrinsics: Intrinsics
    rot: np.ndarray  # [3] pose axis-angle (on top of the frontal flip)
    rotation: np.ndarray  # [3, 3] model-to-camera rotation
    trans: np.ndarray  # [3] mm
    id_coeffs: np.ndarray  # [Ki]
    exp_coeffs: np.ndarray  # [Ke]
    sh: np.ndarray  # [9, 3]
    landmarks_target: np.ndarray  # [N, 2] px (NaN = unknown)
    landmarks_fit: np.ndarray  # [N, 2] px, projected model landmarks
    landmark_error_px: float
    landmark_error_iod: float  # fraction of the inter-ocular distance
    stages: list[StageReport] = field(default_factory=list)
    seconds: float = 0.0
    model_name: str = ""
    expression_names: list = field(default_factory=list)
    albedo: np.ndarray | None = None  # [Ha, Wa, 3] UV albedo when the colour attribute was fitted
    albedo_regions: np.ndarray | None = None  # [7, 3] its region offsets (attribute_stages.ALBEDO_REGIONS)
    quality: dict = field(default_factory=dict)  # per-stage quality report (attribute fits)
    failure: str | None = None  # reason, when the fit looks implausible
    specular: float = 0.0  # strength of the fitted Blinn-Phong highlight (0: none fitted; FitConfig.specular)
    specular_exponent: float = 0.0  # its exponent (0 when no highlight was fitted)
    lighting_fitted: bool = False  # sh was fitted to the photo's colours (else it is the default lighting)
    occlusion: bool = False  # the fitted shading's ambient part was scaled by the mean shape's ambient occlusion

    @property
    def euler_deg(self) -> np.ndarray:
        return rotation_to_euler(torch.tensor(self.rotation)[None])[0].numpy()

    def to_json(self) -> dict:
        """Everything but the meshes, as JSON-ready plain types."""
        f = lambda a: np.round(np.asarray(a, dtype=np.float64), 6).tolist()  # noqa: E731
        yaw, pitch, roll = (float(x) for x in self.euler_deg)
        lt = np.where(np.isfinite(self.landmarks_target), self.landmarks_target, np.nan)
        return {
            "model": self.model_name,
            "camera": self.intrinsics.to_dict(),
            "pose": {"rotation": f(self.rotation), "axis_angle": f(self.rot), "translation_mm": f(self.trans),
                     "yaw_deg": yaw, "pitch_deg": pitch, "roll_deg": roll},
            "identity": f(self.id_coeffs),
            "expression": dict(zip(self.expression_names, f(self.exp_coeffs))),
            "lighting_sh": f(self.sh),
            "lighting_fitted": bool(self.lighting_fitted),
            "specular": specular_record(self.specular, self.specular_exponent),
            "landmarks": {"target": [[None if not np.isfinite(v) else float(v) for v in p] for p in lt],
                          "fit": f(self.landmarks_fit)},
            "landmark_error_px": float(self.landmark_error_px),
            "landmark_error_iod": float(self.landmark_error_iod),
            "stages": [{"name": s.name, "iters": s.iters, "seconds": round(s.seconds, 3), "loss": s.loss,
                        "terms": s.terms} for s in self.stages],
            "quality": self.quality,
            "failure": self.failure,
            "seconds": round(self.seconds, 3),
        }


ROLL_GUESS_DEG = 30.0  # a face rolled more than this also starts PnP turned by its eye line


def steep_roll(landmarks: np.ndarray) -> float:
    """The eye line's roll in the image (radians, :func:`redafit.landmarks.detect.eye_roll`) when it exceeds
    :data:`ROLL_GUESS_DEG` (a head on its side, upside down: the starts made for upright faces fail there), else 0."""
    from redafit.landmarks.detect import eye_roll

    a = np.radians(eye_roll(landmarks))
    return float(a) if abs(a) > np.radians(ROLL_GUESS_DEG) else 0.0


def about_optical_axis(a: float) -> np.ndarray:
    """[3, 3] the turn by ``a`` radians about the camera's optical axis (OpenCV axes: x right, y down), which turns
    the image by ``a`` (from x towards y), as a roll does."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def init_pose(landmarks: np.ndarray, model: FaceModel, K: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Rigid initialisation from 2-D landmarks: PnP on the mean face's fixed landmark vertices.

    Returns (axis-angle r [3], translation t [3] mm). Falls back to a frontal pose at the distance implied by
    the inter-ocular distance when PnP fails or lands behind the camera.
    """
    import cv2

    from redafit.fit.correspondence import FIVE_POINT_GROUPS
    from redafit.landmarks.files import inter_ocular

    mean = model.mean.detach().cpu().numpy().astype(np.float64)
    lid = model.landmark_ids.cpu().numpy()
    lm = np.asarray(landmarks, np.float64)
    if len(lm) == 68:
        obj = np.array([mean[lid[i]] if lid[i] >= 0 else [np.nan] * 3 for i in range(68)])
        use = np.isfinite(lm).all(1) & (lid >= 0)
        use[:17] = False  # the jaw outline moves with the pose: leave it to the contour sliding
    else:
        obj = np.array([mean[[lid[i] for i in g if lid[i] >= 0]].mean(0) if (lid[g] >= 0).any() else [np.nan] * 3
                        for g in FIVE_POINT_GROUPS])
        use = np.isfinite(lm).all(1) & np.isfinite(obj).all(1)
    Kmat = np.array([[K.fx, 0, K.cx], [0, K.fy, K.cy], [0, 0, 1]], np.float64)
    # frontal fallback / initial guess
    if len(lm) == 68 and lid[36] >= 0 and lid[45] >= 0:
        iod_mm = float(np.linalg.norm(mean[lid[36]] - mean[lid[45]]))
    else:
        iod_mm = 90.0
    iod_px = inter_ocular(lm)
    c = np.nanmean(lm[use], 0) if use.any() else np.array([K.cx, K.cy])
    z = K.fx * iod_mm / max(iod_px, 1e-3)
    objc = np.nanmean(obj[use], 0) if use.any() else np.zeros(3)
    objc_cam = R_FLIP.numpy().astype(np.float64) @ objc
    t0 = np.array([(c[0] - K.cx) * z / K.fx, (c[1] - K.cy) * z / K.fy, z]) - objc_cam
    flip = R_FLIP.numpy().astype(np.float64)
    r, t = np.zeros(3), t0
    if use.sum() >= 4:
        # PnP from an upright frontal guess and, for a face turned in the image plane by more than
        # ROLL_GUESS_DEG, from one turned by the eye line's roll (upside down, from the upright guess the
        # iteration ends in a wrong minimum, the head tens of metres away); the solution that reprojects best
        tilt = steep_roll(lm)
        best = np.inf
        for a in (0.0, tilt) if tilt else (0.0,):
            R0 = about_optical_axis(a) @ flip
            tg = t0 + objc_cam - R0 @ objc
            ok, rv, tv = cv2.solvePnP(obj[use], lm[use], Kmat, None, rvec=cv2.Rodrigues(R0)[0],
                                      tvec=tg.reshape(3, 1).copy(), useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
            if not (ok and np.isfinite(tv).all() and tv[2, 0] > 0):
                continue
            err = np.linalg.norm(cv2.projectPoints(obj[use], rv, tv, Kmat, None)[0][:, 0] - lm[use], axis=1).mean()
            if err < best - 1e-6:
                best = err
                Rm = cv2.Rodrigues(rv)[0] @ flip.T
                r = matrix_to_axis_angle(torch.tensor(Rm)).numpy()
                t = tv.reshape(3)
    return r.astype(np.float32), t.astype(np.float32)


def check_image(image: np.ndarray) -> None:
    """An :class:`InputError` unless ``image`` is a photo as the fit takes it: float RGB [H, W, 3] in [0, 1]."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise InputError(f"image: expected an array [H, W, 3], got {getattr(image, 'shape', type(image))}")
    if not np.issubdtype(image.dtype, np.floating):  # uint8 straight from cv2.imread / PIL
        raise InputError(f"image: expected float RGB values in [0, 1], got {image.dtype} (divide 8-bit values by 255, "
                         "or read it with redafit.io.images.load_image)")
    if not np.isfinite(image).all():
        raise InputError("image: contains NaN or infinite values")
    if float(image.max()) > 1.5:  # a float copy of 8-bit values: every colour term would be off by 255x
        raise InputError(f"image: expected float RGB values in [0, 1], got values up to {float(image.max()):g} "
                         "(divide 8-bit values by 255)")


def _check_landmarks(landmarks) -> np.ndarray:
    """``landmarks`` as a float32 array [N, 2] (pixels, NaN rows unknown); anything else (None, a file name, [68, 3]
    points) is a :class:`LandmarkFileError` here rather than a NumPy or OpenCV error in the pose initialisation."""
    try:
        lm = np.asarray(landmarks, dtype=np.float32)
    except (TypeError, ValueError):
        lm = None
    if lm is None or landmarks is None or lm.ndim != 2 or lm.shape[1] != 2:
        got = getattr(landmarks, "shape", None) or type(landmarks).__name__
        raise LandmarkFileError(f"landmarks: expected an array [68|5, 2] of pixel coordinates, got {got}")
    return lm


def check_intrinsics(intrinsics, images: list, focal: float | None) -> list[Intrinsics]:
    """One :class:`Intrinsics` per image, of its size: ``intrinsics`` (None: the default camera; an OpenCV 3x3
    matrix per image is taken as :meth:`Intrinsics.from_matrix`), checked rather than failing inside the fit."""
    if intrinsics is None:
        return [Intrinsics.default(im.shape[1], im.shape[0], focal) for im in images]
    if isinstance(intrinsics, Intrinsics) or (not isinstance(intrinsics, (list, tuple)) and np.ndim(intrinsics) == 2) \
            or (isinstance(intrinsics, (list, tuple)) and len(intrinsics) == 3 and _matrix_rows(intrinsics)):
        intrinsics = [intrinsics]  # one camera for the one image
    if len(intrinsics) != len(images):
        raise InputError(f"intrinsics: {len(intrinsics)} given for {len(images)} image(s): one per image")
    out = []
    for K, im in zip(intrinsics, images):
        h, w = im.shape[:2]
        if not isinstance(K, Intrinsics):
            if np.shape(K) != (3, 3):
                raise InputError(f"intrinsics: expected redafit.render.camera.Intrinsics or a 3x3 matrix per image, "
                                 f"got {type(K).__name__}")
            K = Intrinsics.from_matrix(K, w, h)
        if (K.width, K.height) != (w, h):
            raise InputError(f"intrinsics: a camera of a {K.width} x {K.height} image given for an image of "
                             f"{w} x {h} (Intrinsics.scaled({w}, {h}) is the same camera at its size)")
        out.append(K)
    return out


def _matrix_rows(rows) -> bool:
    """Whether ``rows`` (a list of 3) are a 3x3 matrix's rows (numbers each), not three cameras."""
    try:
        return np.shape(np.asarray(rows, dtype=np.float64)) == (3, 3)
    except (TypeError, ValueError):
        return False


def _check_model(model) -> None:
    if not isinstance(model, FaceModel):
        raise ModelError(f"model: expected a FaceModel (redafit.model.load_model), got {type(model).__name__}")
    if model.mean.dtype != torch.float32:
        raise ModelError(f"model: the fit runs in float32, the model's buffers are {model.mean.dtype} "
                         "(model.float() converts them)")


def check_config(config) -> FitConfig:
    """``config`` as a :class:`FitConfig`: None is the landmarks preset, a name any preset."""
    if config is None:
        return FitConfig.preset("landmarks")
    if isinstance(config, str):
        return FitConfig.preset(config)
    if not isinstance(config, FitConfig):
        raise InputError(f"config: expected a FitConfig or a preset name, got {type(config).__name__}")
    return config


def fit_batch(images: list[np.ndarray], landmarks: list[np.ndarray], model: FaceModel,
              config: FitConfig | None = None, intrinsics: list[Intrinsics] | None = None,
              shared_id: bool = False, progress=None, depths: list | None = None,
              init: dict | None = None, parsings: list | None = None) -> list[FitResult]:
    """Fit B images jointly (one identity when ``shared_id``) and return one :class:`FitResult` each.

    ``init`` optionally sets starting values {parameter name: array} (see :class:`FitParams`; a leading size of 1
    broadcasts over the batch), applied after the landmark pose initialisation; a given ``albedo`` or ``sh``
    replaces the attribute stages' own start (mean skin colour, least-squares lighting). Parameters that no stage
    trains keep these values: e.g. ``init={"id": ..., "disp": ...}`` with stages that train neither fits expression and
    pose for a known identity.

    ``depths`` and ``parsings`` optionally give per image (None entries allowed) a registered depth map in mm
    (:func:`redafit.io.depth.load_depth`) and a parsing map of class ids (:mod:`redafit.parsing.maps`), the latter
    replacing the attribute stages' own parsing of that photo.

    ``config``: a :class:`FitConfig` or a preset's name (default ``"landmarks"``). ``intrinsics``: one
    :class:`Intrinsics` per image, of its size, or an OpenCV 3x3 matrix each (:meth:`Intrinsics.from_matrix`);
    default, 1.6 x the longer side (``config.focal`` when set). The fit seeds its own random numbers
    (``config.seed``) and leaves torch's global generator as it found it.
    """
    config = check_config(config)
    _check_model(model)
    if images is None or not len(images):
        raise InputError("fit: no image given")
    for im in images:
        check_image(im)
    if landmarks is None or len(images) != len(landmarks):
        raise InputError("fit: need one landmark set per image")
    landmarks = [_check_landmarks(lm) for lm in landmarks]
    Ks = check_intrinsics(intrinsics, images, config.focal)
    dev = model.mean.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed)
        return _fit_batch(images, landmarks, model, config, Ks, shared_id, progress, depths, init, parsings)


def _fit_batch(images, landmarks, model, config, Ks, shared_id, progress, depths, init, parsings) -> list[FitResult]:
    t_start = time.perf_counter()
    dev = model.mean.device
    targets = build_targets(list(landmarks), model).to(dev)
    params = FitParams(model, len(images), config.n_id, config.n_exp, shared_id=shared_id,
                       albedo_size=config.albedo_size)
    with torch.no_grad():
        for b, (lm, K) in enumerate(zip(landmarks, Ks)):
            r, t = init_pose(lm, model, K)
            params.rot[b] = torch.from_numpy(r).to(dev)
            params.trans[b] = torch.from_numpy(t).to(dev)
        for name, value in (init or {}).items():
            dst = params.named(name)
            v = torch.as_tensor(np.asarray(value), dtype=dst.dtype, device=dev).reshape(-1, *dst.shape[1:])
            dst[:] = v[: dst.shape[0]].expand_as(dst) if v.shape[0] == 1 else v
    fixed_disp = init is not None and "disp" in init and not any("disp" in s.params for s in config.stages)
    fit_scale = torch.tensor([config.fit_size / max(im.shape[:2]) for im in images], device=dev)
    ctx = FitContext(model, params, targets, camera_tensor(Ks, dev), Ks, fit_scale)
    ctx.extras["subset"] = landmark_subset(model, targets)
    ctx.extras["landmark_sigma"] = float(config.landmark_sigma)  # the landmark guard's noise floor (redafit.fit.guard)
    ctx.extras["init_names"] = frozenset(init or ())  # the attribute stages keep given albedo/lighting values
    if fixed_disp:
        ctx.extras["disp_frozen"] = True
    needs_attributes = any(k in ATTRIBUTE_LOSSES for s in config.stages for k in s.losses)
    hooks = {}
    if needs_attributes:
        from redafit.fit import attribute_stages

        hooks = attribute_stages.prepare(ctx, images, config, depths=depths, parsings=parsings)
    reports = []
    for stage in config.stages:
        stage = config.stage_for_run(stage)
        reports.append(run_stage(ctx, stage, progress, hooks))
        if "disp" in stage.params:  # from here on the shape includes the free-form displacement: the quality
            ctx.extras["disp_frozen"] = True  # report, the landmark error and the output mesh all measure it
        if needs_attributes:
            attribute_stages.after_stage(ctx, stage, config)
    err = landmark_error_px(ctx).cpu().numpy()
    with torch.no_grad():
        ctx.cache.clear()
        vm = ctx.verts_model()
        vc = ctx.verts_camera()
        lm_fit = project_batch(gather_points(vc, targets.ids, targets.w), ctx.cam).cpu().numpy()
        R = params.rotation().cpu().numpy()
    seconds = time.perf_counter() - t_start
    results = []
    for b in range(len(images)):
        bi = 0 if shared_id else b
        res = FitResult(
            vertices_model=vm[b].cpu().numpy(), vertices_camera=vc[b].cpu().numpy(),
            triangles=model.triangles.cpu().numpy(), intrinsics=Ks[b],
            rot=params.rot[b].detach().cpu().numpy(), rotation=R[b], trans=params.trans[b].detach().cpu().numpy(),
            id_coeffs=params.id[bi].detach().cpu().numpy(), exp_coeffs=params.exp[b].detach().cpu().numpy(),
            sh=params.sh[b].detach().cpu().numpy(), landmarks_target=np.asarray(landmarks[b], np.float32),
            landmarks_fit=lm_fit[b], landmark_error_px=float(err[b]),
            landmark_error_iod=float(err[b] / float(targets.scale[b])), stages=reports, seconds=seconds,
            model_name=model.name, expression_names=model.expression_names[: params.exp.shape[1]],
        )
        if needs_attributes:
            attribute_stages.finish(ctx, res, b, config)
        flag_implausible(res)
        results.append(res)
    return results


MIN_KNOWN_68 = 20  # fewer known points of a 68-point set leave identity and pose to the priors


FACE_BRIGHTNESS = (0.02, 0.98)  # the photo's face's mean outside this: black or blown out, nothing to fit colour to


def colourless_face(res) -> float | None:
    """The photo's face's mean brightness when it lies outside :data:`FACE_BRIGHTNESS` (black or blown out: the
    fitted lighting and albedo mean nothing there), else None; None also for a fit without a colour report."""
    last = res.quality[list(res.quality)[-1]] if getattr(res, "quality", None) else {}
    bright = last.get("face_brightness")
    if bright is not None and not FACE_BRIGHTNESS[0] <= bright <= FACE_BRIGHTNESS[1]:
        return float(bright)
    return None


def flag_implausible(res: FitResult) -> None:
    """Set ``res.failure`` to the reasons a fit looks implausible, or None: the fitted landmarks more than 10 % of
    the eye distance from their targets, a face-skin IoU below 0.4 or the photo's face black or white
    (:data:`FACE_BRIGHTNESS`) in the last quality report (attribute fits), a
    pose no photo of a face shows (|yaw| > 80 or |pitch| > 60 degrees), or too few known landmarks to pin the
    face (fewer than :data:`MIN_KNOWN_68` of 68, any of a 5-point set unknown)."""
    reasons = []
    tgt = np.asarray(res.landmarks_target, np.float64)
    known = int(np.isfinite(tgt).all(1).sum())
    if (len(tgt) == 68 and known < MIN_KNOWN_68) or (len(tgt) != 68 and known < len(tgt)):
        reasons.append(f"only {known} of {len(tgt)} landmarks known")
    if res.landmark_error_iod > 0.10:
        reasons.append(f"landmark error {res.landmark_error_iod:.1%} of the eye distance")
    last = res.quality[list(res.quality)[-1]] if res.quality else {}
    skin = last.get("parsing_iou", {}).get("skin")
    if skin is not None and skin < 0.4:
        reasons.append(f"skin IoU {skin:.2f}")
    bright = colourless_face(res)
    if bright is not None:
        reasons.append(f"the face is {'black' if bright < FACE_BRIGHTNESS[0] else 'white'} in the photo (mean "
                       f"{bright:.3f}): no colour to fit the lighting and albedo to")
    yaw, pitch, _ = res.euler_deg
    if abs(yaw) > 80 or abs(pitch) > 60:
        reasons.append(f"implausible pose (yaw {yaw:.0f}, pitch {pitch:.0f} deg)")
    res.failure = "; ".join(reasons) or None


def fit_image(image: np.ndarray, landmarks: np.ndarray, model: FaceModel, config: FitConfig | None = None,
              intrinsics: Intrinsics | None = None, progress=None, depth=None, parsing=None) -> FitResult:
    """Fit the model to one image [H, W, 3] (float RGB in [0, 1]) given its landmarks [68|5, 2] (pixels); optional
    registered ``depth`` (mm) and ``parsing`` (class ids) maps as in :func:`fit_batch`."""
    return fit_batch([image], [landmarks], model, config, None if intrinsics is None else [intrinsics],
                     progress=progress, depths=[depth] if depth is not None else None,
                     parsings=[parsing] if parsing is not None else None)[0]
