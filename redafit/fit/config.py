"""Fitting configuration: stages as data (frozen dataclasses with documented defaults).

A :class:`FitConfig` is a tuple of :class:`StageConfig` plus global settings. Each stage names its trainable
parameters, the loss terms with their weights, the iteration count and the learning rates. The fitter loop
(:mod:`redafit.fit.fitter`) is generic; ablations are configurations made with :func:`dataclasses.replace`.

Parameter names (see :class:`redafit.fit.params.FitParams`):
    ``rot`` axis-angle pose [B,3]; ``trans`` translation [B,3] mm; ``id`` identity coefficients [B|1,Ki];
    ``exp`` expression coefficients [B,Ke]; ``sh`` lighting [B,9,3]; ``albedo`` UV albedo map [1,Ha,Wa,3];
    ``albedo_reg`` per-region albedo offsets [1,7,3];
    ``disp`` free-form per-vertex displacement [B|1,V,3] mm.

Loss names (see :mod:`redafit.fit.losses`):
    ``landmarks`` squared 2-D landmark error / inter-ocular distance^2; ``id_prior``, ``exp_prior`` Gaussian
    priors; ``exp_l1`` sparsity prior of blendshape weights (sum of the weights; zero for Gaussian-prior models);
    ``color``, ``mask``, ``depth`` ReDA attribute pyramid losses; ``albedo_smooth``, ``albedo_sym``, ``albedo_skin``
    albedo priors; ``sh_prior``; ``arap`` as-rigid-as-possible energy of ``disp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class StageConfig:
    """One optimisation stage.

    Attributes:
        name: shown in progress and reports.
        params: trainable parameter names.
        losses: loss name -> weight.
        iters: Adam iterations.
        lr: parameter name -> learning rate (Adam); names not listed use ``lr_default``.
        lr_default: learning rate for parameters not in ``lr``.
        contour_every: re-pick sliding jaw-contour correspondences every N iterations (0 = never).
        landmark_drop_px: in this stage, landmarks already within this error (pixels at the fit resolution) get
            weight 0 (paper Sec. 6.2, stage 3); 0 keeps all landmarks.
        arap_every: re-solve the ARAP per-vertex rotations every N iterations (when ``disp`` is trained).
        optimizer: ``"adam"`` (any losses) or ``"lm"`` (Levenberg-Marquardt, for stages made only of the
            landmark and prior terms on pose/identity/expression: same objective, ~20x faster).
        lr_final: Adam learning rates follow a cosine schedule from ``lr`` down to ``lr_final x lr`` over the
            stage (1.0 = constant; lower lets the last iterations settle instead of jittering by ~lr).
        disp_smooth: lambda > 0 preconditions the free-form displacement d: it is optimised as u = (I + lambda L) d
            (L the mesh's cotangent Laplacian, weights normalised to mean 1), each step of u applied to d as
            (I + lambda L)^-1 du, with Adam's step normalised by the largest second moment of the image's
            displacement instead of per coordinate (the "large steps" reparameterisation and uniform Adam of
            Nicolet et al. 2021): the surface moves by millimetres where the image asks for it while vertices
            with little evidence stay put. 0 = plain per-vertex Adam updates.
        landmark_guard: the stage may not leave any image's mean landmark distance above a reference - its value
            when the first guarded stage starts (the landmark stage's result) or the distance the assumed landmark
            noise (:attr:`FitConfig.landmark_sigma`) would leave, whichever is larger (:mod:`redafit.fit.guard`):
            the landmark weight rises per image while it is over, and the stage ends with a projection back onto
            the constraint. The attribute terms may move single landmarks, not the fit as a whole away from them.
        coarse_levels: (first, last) weight of the attribute pyramids' coarser levels (1 and up) relative to level
            0, going linearly from ``first`` at the stage's first iteration to ``last`` at its last: (1, 1) is the
            paper's plain sum over levels; (1, 0) a coarse-to-fine pass that ends on the full-resolution level.
            Ignored by the z-buffer, which has one level.
    """

    name: str
    params: tuple[str, ...]
    losses: dict = field(default_factory=dict)
    iters: int = 100
    lr: dict = field(default_factory=dict)
    lr_default: float = 0.01
    contour_every: int = 10
    landmark_drop_px: float = 0.0
    arap_every: int = 5
    optimizer: str = "adam"
    lr_final: float = 1.0
    disp_smooth: float = 0.0
    landmark_guard: bool = False
    coarse_levels: tuple[float, float] = (1.0, 1.0)


# Learning rates tuned on the shared photos and the synthetic benchmark (coefficients are ~N(0, 1)).
_LR = {"rot": 0.02, "trans": 2.0, "id": 0.1, "exp": 0.05, "sh": 0.02, "spec": 0.01, "albedo": 0.02, "albedo_reg": 0.02,
       "disp": 0.05}

# Per-coordinate landmark noise (fraction of the inter-ocular distance) the stages' shape-prior weights are set
# for: about what 68-point detectors (dlib, FAN) leave on real photos. A Gaussian noise model makes the prior
# weight relative to the landmark weight grow with sigma^2, which is how :attr:`FitConfig.landmark_sigma` rescales.
LANDMARK_SIGMA = 0.025
PRIOR_LOSSES = ("id_prior", "exp_prior", "exp_l1")

RIGID = StageConfig(
    name="rigid",
    params=("rot", "trans"),
    losses={"landmarks": 1.0},
    iters=8,
    lr=_LR,
    contour_every=2,
    optimizer="lm",
)

LANDMARKS = StageConfig(
    name="landmarks",
    params=("rot", "trans", "id", "exp"),
    losses={"landmarks": 1.0, "id_prior": 1e-5, "exp_prior": 5e-6, "exp_l1": 3e-4},
    iters=20,
    lr=_LR,
    contour_every=2,
    optimizer="lm",
)


@dataclass(frozen=True)
class FitConfig:
    """Everything a fit needs besides the image, landmarks and model.

    Attributes:
        stages: the stages, run in order.
        n_id: identity modes used (None = all of the model's).
        n_exp: expression modes used (None = all).
        focal: focal length in pixels at the input resolution (None = 1.6 x the larger image side).
        fit_size: the image is resampled so its larger side is this many pixels for the attribute stages.
        attributes: which ReDA attributes the attribute stages use (subset of color, mask, depth).
        freeform: whether the free-form (ARAP-regularised displacement) stage runs.
        render: :class:`redafit.config.RenderConfig` for the attribute stages (None = defaults).
        seed: torch seed. Fits are bit-for-bit repeatable on CPU with one thread (``--threads 1``); with
            several threads the attribute stages' float sums may run in another order (two runs of one full fit
            on 2 threads differed by up to 0.4-0.7 mm at single vertices).
        albedo_size: side of the low-resolution UV albedo map (pixels); the feature colours (brows, eyes, lips,
            mouth) are region offsets on top of it, so the map holds only the skin's slow variation, under a
            smoothness prior (``albedo_smooth``, per unit of UV, so the same at every size). Default 8. The map's
            resolution sets how much of the colour term's pull on the shape is real: started at the truth of
            synthetic faces with their true lighting, the best 4^2 map (albedo rms error 0.01) leaves the shape at
            0.645 mm, the best 16^2 one (0.003) at 0.406, the exact per-vertex albedo at 0.418 (seed 1, 4 faces);
            but a finer map also explains shading that belongs to the shape. Full fit, 1.5 px landmark noise,
            synthetic seeds 1-2: 4 -> 0.699 (the old, 25x weaker smoothness), 8 -> 0.676, 16 -> 0.700 mm (the
            better of two smoothness weights each); with an almost unsmoothed map (session 6) 2 -> 0.813,
            4 -> 0.704, 8 -> 0.735, 16 -> 0.770.
        texture_size: side of the output texture map (pixels).
        save_stages: folder where each stage's render, mask and error images are written (None = off).
        landmark_sigma: expected per-coordinate noise of the input landmarks as a fraction of the inter-ocular
            distance (default :data:`LANDMARK_SIGMA` = 0.025, detector landmarks). The identity and expression
            prior weights of every stage scale with ``(landmark_sigma / 0.025)^2``: precise landmarks (manual
            annotation, synthetic data) want a small value, noisy ones a large one.
        parsing_net: path of a TorchScript face-parsing network (:mod:`redafit.parsing.network`) for the
            image-side labels of the mask attribute (None = landmarks + skin colour). With a network the nose and
            brows are image regions of their own on both the photo and the model side; without one they are
            drawn from the landmarks and compared as skin.
        occlusion: the ambient (constant, band-0) part of the colour attribute's SH lighting is scaled per vertex by
            the ambient occlusion of the model's mean shape (:func:`redafit.render.occlusion.mean_shape_occlusion`,
            computed once per model; :func:`redafit.render.shading.shade`'s ``occlusion``): the eye sockets,
            nostrils, the sides of the nose and the mouth corners are darkened by their geometry instead of by a
            bent shape or a darker albedo map. Default on: full fits on the physically shaded synthetic tuning faces
            0.749 -> 0.681 mm (seeds 1-2, 12 faces) and 0.790 -> 0.694 (seed 3, 12 faces), session 11.
        specular: the colour attribute adds a Blinn-Phong highlight of the lighting's dominant light
            (:func:`redafit.render.shading.specular`: white, tinted by the light, ``specular_exponent``, its strength
            the fit parameter ``spec``, one per image, from 0): skin is shiny, and without it a fit explains the
            highlights on forehead, nose and cheeks with a bent shape or a lighter albedo. Default on: on synthetic
            faces with microfacet skin highlights (not the fit's lobe; seeds 1-2, 12 faces) 0.647 -> 0.600 mm,
            seed 0 0.698 -> 0.667 (session 12).
        landmark_guard: honour the stages' :attr:`StageConfig.landmark_guard` (the attribute and free-form stages
            of the full preset): they may not leave an image's mean landmark distance above the landmark stage's or,
            if larger, the distance the assumed landmark noise leaves (``landmark_sigma * sqrt(pi / 2)``;
            :mod:`redafit.fit.guard`). False lets the attribute terms move the fit away from the landmarks freely
            (the behaviour before session 12).
        specular_exponent: the highlight's Blinn-Phong exponent (sharpness). Seeds 1-2 (microfacet highlights of
            GGX roughness 0.25-0.45): 12 -> 0.639 mm, 20 -> 0.617, 30 -> 0.604, 45 -> 0.606, 70 -> 0.623.
    """

    stages: tuple[StageConfig, ...] = (RIGID, LANDMARKS)
    n_id: int | None = None
    n_exp: int | None = None
    focal: float | None = None
    fit_size: int = 256
    attributes: tuple[str, ...] = ("color", "mask")
    freeform: bool = True
    render: object = None
    seed: int = 0
    albedo_size: int = 8
    texture_size: int = 1024
    save_stages: str | None = None
    landmark_sigma: float = LANDMARK_SIGMA
    parsing_net: str | None = None
    occlusion: bool = True
    specular: bool = True
    specular_exponent: float = 32.0
    landmark_guard: bool = True

    def stage_for_run(self, stage: StageConfig) -> StageConfig:
        """The stage as the fit runs it: the shape priors rescaled by ``landmark_sigma`` (:meth:`stage_losses`) and
        the landmark guard only where :attr:`landmark_guard` allows it."""
        return replace(stage, losses=self.stage_losses(stage),
                       landmark_guard=bool(stage.landmark_guard and self.landmark_guard))

    def stage_losses(self, stage: StageConfig) -> dict:
        """The loss weights a stage runs with: its own, the shape priors rescaled by ``landmark_sigma``."""
        f = (float(self.landmark_sigma) / LANDMARK_SIGMA) ** 2
        return {k: v * f if k in PRIOR_LOSSES else v for k, v in stage.losses.items()}

    @staticmethod
    def preset(name: str, **overrides) -> "FitConfig":
        """Named presets: ``landmarks`` (stages 1-2: rigid + landmark identity/expression), ``full`` (the ReDA
        four-stage optimiser, when the attribute stages are available) and ``fast`` (those four stages and weights
        with the plain z-buffer)."""
        from redafit.errors import UsageError

        presets = _presets()
        if name not in presets:
            raise UsageError(f"unknown fit preset {name!r}; choose from {', '.join(sorted(presets))}")
        return replace(presets[name], **overrides)

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def loss_stages(self, key: str) -> list[int]:
        """Indices of the stages a loss weight key reaches: ``"mask"`` every stage with that term,
        ``"attributes.landmarks"`` the named stage only (empty when none has it)."""
        stage_name, _, term = key.rpartition(".")
        return [i for i, s in enumerate(self.stages) if term in s.losses and stage_name in ("", s.name)]

    def fits_lighting(self) -> bool:
        """Whether a stage trains the SH lighting with the colour attribute weighted above 0: only then is the
        lighting fitted to the photo (``FitResult.lighting_fitted``, what ``--texture albedo`` needs)."""
        return any("sh" in s.params and s.losses.get("color", 0) > 0 for s in self.stages)

    def has_loss(self, key: str) -> bool:
        """Whether :meth:`with_loss_weights` accepts ``key`` for this configuration."""
        return bool(self.loss_stages(key))

    def missing_loss_message(self, key: str) -> str:
        """Why ``key`` reaches no stage, naming the stages or terms that exist (for a one-line error)."""
        stage_name, _, term = key.rpartition(".")
        if stage_name and stage_name not in {s.name for s in self.stages}:
            return f"loss weight {key}: no stage {stage_name!r} (stages: {', '.join(s.name for s in self.stages)})"
        where = f"stage {stage_name!r} has no" if stage_name else "no stage has the"
        known = sorted({k for s in self.stages if stage_name in ("", s.name) for k in s.losses})
        if term == "depth" and "depth" not in (self.attributes or ()) and self.attributes:
            return (f"loss weight {key}: the depth term compares with a depth map, which this fit has none of "
                    "(fit --depth, eval --given-depth)")
        return f"loss weight {key}: {where} term {term!r} (terms: {', '.join(known)})"

    def with_loss_weights(self, weights: dict) -> "FitConfig":
        """A copy with loss weights set: ``{"mask": 128}`` in every stage that has the term, ``{"attributes.
        landmarks": 20}`` in the named stage only (``redafit fit --weight``). An unknown term or stage is a
        :class:`~redafit.errors.UsageError` naming the known ones; weights must be finite and >= 0."""
        import math

        from redafit.errors import UsageError

        stages = list(self.stages)
        for key, w in weights.items():
            term = key.rpartition(".")[2]
            try:
                w = float(w)
            except (TypeError, ValueError):
                w = float("nan")
            if not (math.isfinite(w) and w >= 0):
                raise UsageError(f"loss weight {key}: expected a number >= 0, got {weights[key]!r}")
            hit = self.loss_stages(key)
            if not hit:
                raise UsageError(self.missing_loss_message(key))
            for i in hit:
                stages[i] = replace(stages[i], losses={**stages[i].losses, term: w})
        return replace(self, stages=tuple(stages))


def parse_loss_weights(items) -> dict:
    """``["mask=128", "attributes.landmarks=20"]`` -> ``{"mask": 128.0, "attributes.landmarks": 20.0}``
    (:class:`~redafit.errors.UsageError` for a malformed item)."""
    import math

    from redafit.errors import UsageError

    out = {}
    for item in items or ():
        key, sep, val = str(item).partition("=")
        try:
            w = float(val)
        except ValueError:
            w = None
        if not sep or not key.strip() or w is None:
            raise UsageError(f"--weight {item!r}: expected [STAGE.]TERM=VALUE, e.g. mask=128")
        if not (math.isfinite(w) and w >= 0):
            raise UsageError(f"--weight {item!r}: the weight must be a number >= 0")
        out[key.strip()] = w
    return out


# the presets built from the four-stage attribute fit (redafit.fit.attribute_stages): the ablation options apply
ATTRIBUTE_PRESETS = ("full", "fast")


def _presets() -> dict:
    presets = {"landmarks": FitConfig(stages=(RIGID, LANDMARKS), freeform=False, attributes=())}
    try:
        from redafit.fit.attribute_stages import fast_preset, full_preset
    except ImportError:
        return presets
    presets["full"] = full_preset()
    presets["fast"] = fast_preset()
    return presets
