"""The generic staged Adam loop. Stages are data (:class:`~redafit.fit.config.StageConfig`)."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from redafit.errors import FitError
from redafit.fit.adam import Adam
from redafit.fit.correspondence import LandmarkTargets, update_contour
from redafit.fit.guard import guard_reference, project_landmark_guard, update_guard_weight
from redafit.fit.losses import LOSSES
from redafit.fit.params import FitParams
from redafit.model.face_model import FaceModel


@dataclass
class FitContext:
    """What loss functions see. ``cache`` is cleared every iteration (shared intermediate results)."""

    model: FaceModel
    params: FitParams
    targets: LandmarkTargets
    cam: torch.Tensor  # [B, 4] fx fy cx cy at the input resolution
    intrinsics: list  # [B] Intrinsics at the input resolution
    fit_scale: torch.Tensor  # [B] (fit-resolution pixels) / (input pixels) for thresholds given at fit size
    extras: dict = field(default_factory=dict)  # attribute targets, parsing maps, ARAP state …
    cache: dict = field(default_factory=dict)
    stage: object = None
    iteration: int = 0  # of the running stage

    def verts_model(self) -> torch.Tensor:
        if "verts_model" not in self.cache:
            use_disp = self.stage is not None and "disp" in self.stage.params
            self.cache["verts_model"] = self.params.shape_model(self.model, with_disp=use_disp or self.extras.get(
                "disp_frozen", False))
        return self.cache["verts_model"]

    def verts_camera(self) -> torch.Tensor:
        if "verts_camera" not in self.cache:
            self.cache["verts_camera"] = self.params.to_camera(self.verts_model())
        return self.cache["verts_camera"]

    def points_camera(self, ids: torch.Tensor) -> torch.Tensor:
        """Camera-frame positions [B, ...ids, 3] of the vertices ``ids`` ([B, ...] long).

        Landmark-only stages evaluate the model on the small vertex subset the landmarks and jaw contours can
        use (``extras["subset"]``), which makes them ~50x cheaper than evaluating the whole mesh.
        """
        sub = self.extras.get("subset")
        use_disp = self.stage is not None and "disp" in self.stage.params
        if "verts_camera" in self.cache or sub is None or use_disp or self.extras.get("disp_frozen"):
            v = self.verts_camera()
            flat = ids.reshape(ids.shape[0], -1)
        else:
            if "sub_camera" not in self.cache:
                p = self.params
                vs = p._expand(p.id) @ sub["id"][: p.id.shape[1]].flatten(1)
                vs = vs + p.exp @ sub["exp"][: p.exp.shape[1]].flatten(1)
                vs = sub["mean"][None] + vs.reshape(p.batch, -1, 3)
                self.cache["sub_camera"] = p.to_camera(vs)
            v = self.cache["sub_camera"]
            flat = sub["map"][ids.reshape(ids.shape[0], -1)]
        g = torch.gather(v, 1, flat[..., None].expand(-1, -1, 3))
        return g.reshape(*ids.shape, 3)


@dataclass
class StageReport:
    name: str
    iters: int
    seconds: float
    loss: float
    terms: dict


ProgressFn = Callable[[str, int, int, float], None]  # stage name, iteration, total, loss


@contextmanager
def reproducible(device: torch.device):
    """On a CPU, torch's deterministic algorithms while the block runs (then the caller's setting again).

    The backward of indexing (``x[idx]``, everywhere in the renderer and the losses) sums the gradients of
    repeated indices with several threads in whatever order they finish: the same photo fitted twice with 2 threads
    ended up to 1.6 mm apart (Takeo's translation). Torch's deterministic mode sums them in a fixed order; with it
    every fit on a CPU repeats bit for bit for a given thread count, at no measurable cost (four annotated photos,
    full fits, twice each: median 9.15 s against 9.06 s without). On a GPU it stays off (cuBLAS and the atomics
    of other kernels would need more)."""
    if device.type != "cpu" or torch.are_deterministic_algorithms_enabled():
        yield
        return
    _deterministic(True)
    try:
        yield
    finally:
        _deterministic(False)


def _deterministic(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)`` without its import of ``torch._inductor`` (to
    set inductor's own flag, which the fit does not use): 1.1 s on the 2-core CPU, paid by the first fit of every
    process (a ``--preset landmarks`` run took 5.0 s instead of 3.5)."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None:  # another torch: the public call
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        set_flag(mode, warn_only=True)


def run_stage(ctx: FitContext, stage, progress: ProgressFn | None = None, hooks: dict | None = None) -> StageReport:
    """Optimise ``stage.params`` for ``stage.iters`` Adam steps on the weighted sum of ``stage.losses``
    (or Levenberg-Marquardt iterations when ``stage.optimizer == "lm"``); on a CPU :func:`reproducible`."""
    with reproducible(ctx.model.mean.device):
        return _run_stage(ctx, stage, progress, hooks)


def _run_stage(ctx: FitContext, stage, progress: ProgressFn | None, hooks: dict | None) -> StageReport:
    if stage.optimizer == "lm":
        from redafit.fit.lm import run_lm_stage

        ctx.extras.pop("adam_state", None)  # moments of an earlier Adam stage no longer describe the parameters
        return run_lm_stage(ctx, stage, progress)
    if stage.optimizer != "adam":
        raise FitError(f"stage {stage.name}: unknown optimizer {stage.optimizer!r} (adam or lm)")
    unknown = [k for k in stage.losses if k not in LOSSES]
    if unknown:
        raise FitError(f"stage {stage.name}: unknown loss term(s) {unknown}")
    groups = []
    for name in stage.params:
        p = ctx.params.named(name)
        groups.append({"params": [p], "lr": stage.lr.get(name, stage.lr_default)})
    opt = Adam(groups)
    # Adam's moments carry over from the previous Adam stage for the parameters both train: a fresh optimiser
    # moves every coefficient by ~lr on its first steps whatever its gradient, which undoes a converged stage.
    saved = ctx.extras.get("adam_state", {})
    for name in stage.params:
        if name in saved:
            opt.state[ctx.params.named(name)] = saved[name]
    ctx.stage = stage
    hooks = hooks or {}
    t0 = time.perf_counter()
    loss_val, terms = float("nan"), {}
    base_lr = [g["lr"] for g in opt.param_groups]
    decay = float(getattr(stage, "lr_final", 1.0))
    if stage.landmark_guard:
        guard_reference(ctx)  # taken before the first guarded step (redafit.fit.guard)
    for it in range(stage.iters):
        ctx.iteration = it
        if decay != 1.0:  # cosine schedule from lr to lr_final * lr
            f = decay + (1 - decay) * 0.5 * (1 + math.cos(math.pi * it / max(1, stage.iters - 1)))
            for g, lr0 in zip(opt.param_groups, base_lr):
                g["lr"] = lr0 * f
        ctx.cache.clear()
        if stage.contour_every and it % stage.contour_every == 0 and ctx.targets.kind == "68":
            with torch.no_grad():
                update_contour(ctx.targets, ctx, ctx.model)
            ctx.cache.clear()
        update_guard_weight(ctx, stage, it)
        for hook in hooks.get("before_step", []):
            hook(ctx, stage, it)
        opt.zero_grad(set_to_none=True)
        values = {k: LOSSES[k](ctx, stage) for k, w in stage.losses.items() if w != 0}
        loss = sum(stage.losses[k] * v for k, v in values.items())
        if not torch.isfinite(loss):
            raise FitError(f"stage {stage.name}: the loss became non-finite at iteration {it}")
        loss.backward()
        for hook in hooks.get("after_backward", []):  # may take a parameter's step itself (and clear its grad)
            hook(ctx, stage, it)
        opt.step()
        ctx.params.project_constraints()
        loss_val = float(loss.detach())
        if progress is not None:
            progress(stage.name, it + 1, stage.iters, loss_val)
    ctx.extras["adam_state"] = {name: opt.state[ctx.params.named(name)] for name in stage.params
                                if ctx.params.named(name) in opt.state}
    if stage.landmark_guard:
        project_landmark_guard(ctx, stage)
    ctx.cache.clear()
    with torch.no_grad():
        terms = {k: float(LOSSES[k](ctx, stage)) for k in stage.losses}
    ctx.cache.clear()
    ctx.stage = None
    return StageReport(stage.name, stage.iters, time.perf_counter() - t0, loss_val, terms)


def landmark_error_px(ctx: FitContext) -> torch.Tensor:
    """Per-image mean landmark error [B] in input pixels (known landmarks only)."""
    from redafit.fit.losses import landmark_residuals

    with torch.no_grad():
        ctx.cache.clear()
        r = landmark_residuals(ctx).norm(dim=-1)
        ctx.cache.clear()
    w = ctx.targets.weight
    return (r * w).sum(1) / w.sum(1).clamp_min(1)


_SUBSETS: dict = {}


def landmark_subset(model: FaceModel, targets: LandmarkTargets) -> dict:
    """The model restricted to the vertices landmarks can correspond to (fixed ids and the jaw outline
    candidates). Cached per model; the targets' own ids are included."""
    from redafit.fit.correspondence import jaw_pool

    key = (id(model), model.n_vertices, str(model.mean.device))
    base = _SUBSETS.get(key)
    if base is None:
        pool = jaw_pool(model)
        base = torch.unique(torch.cat([pool["ids"], pool["lid"][pool["lid"] >= 0]]))
        _SUBSETS[key] = base
    ids = base
    extra = targets.ids.flatten().to(model.mean.device)
    if not bool(torch.isin(extra, base).all()):
        ids = torch.unique(torch.cat([base, extra]))
    vmap = torch.full((model.n_vertices,), 0, dtype=torch.long, device=model.mean.device)
    vmap[ids] = torch.arange(len(ids), device=model.mean.device)
    return {"ids": ids, "map": vmap, "mean": model.mean[ids], "id": model.id_basis[:, ids],
            "exp": model.exp_basis[:, ids]}
