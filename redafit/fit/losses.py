"""Loss terms, registered by name. Each takes the :class:`~redafit.fit.fitter.FitContext` and the stage and
returns a scalar tensor. Attribute losses (colour, mask, depth) and ARAP register themselves from their modules.
"""

from __future__ import annotations

from typing import Callable

import torch


LOSSES: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        LOSSES[name] = fn
        return fn

    return deco


def landmark_residuals(ctx) -> torch.Tensor:
    """Projected model landmarks minus targets [B, N, 2] in pixels."""
    from redafit.fit.params import project_batch

    t = ctx.targets
    pts = (ctx.points_camera(t.ids) * t.w[..., None]).sum(2)  # [B, N, 3]
    return project_batch(pts, ctx.cam) - t.points


@register("landmarks")
def landmark_loss(ctx, stage) -> torch.Tensor:
    """Mean squared landmark error normalised by the inter-ocular distance squared (resolution-free)."""
    r = landmark_residuals(ctx)
    w = ctx.targets.weight
    if stage.landmark_drop_px > 0:
        # paper stage 3: landmarks already within the threshold stop pulling
        w = w * (r.detach().norm(dim=-1) > stage.landmark_drop_px * ctx.fit_scale[:, None]).float()
    e = (r * r).sum(-1) / (ctx.targets.scale[:, None] ** 2)
    boost = ctx.extras.get("landmark_boost")  # [B] the landmark guard's per-image factors (redafit.fit.guard)
    if boost is not None and stage.landmark_guard:
        w = w * boost[:, None]
    return (e * w).sum() / ctx.targets.weight.sum().clamp_min(1)


@register("id_prior")
def id_prior(ctx, stage) -> torch.Tensor:
    return (ctx.params.id ** 2).sum(-1).mean()


@register("exp_prior")
def exp_prior(ctx, stage) -> torch.Tensor:
    return (ctx.params.exp ** 2).sum(-1).mean()


@register("exp_l1")
def exp_l1(ctx, stage) -> torch.Tensor:
    """Sparsity prior of blendshape expressions: the sum of the weights (their L1 norm: ``"unit"`` models keep
    them in [0, 1]), the negative log of an exponential prior on each weight. An expression activates a few
    blendshapes; under a Gaussian prior alone a landmark fit spreads the landmark noise over dozens of them
    (ICT, 1.5 px noise: ~27 of 53 active, summing to 7-12 where the face showed 1-3 summing below 1.5). Zero for
    models with a Gaussian expression prior (``exp_prior`` is their prior)."""
    if not ctx.params.unit_exp:
        return ctx.params.exp.sum() * 0
    return ctx.params.exp.abs().sum(-1).mean()


@register("sh_prior")
def sh_prior(ctx, stage) -> torch.Tensor:
    """Keep lighting near ambient white: penalise higher bands and colour casts."""
    sh = ctx.params.sh
    return (sh[:, 1:] ** 2).mean() + ((sh[:, 0] - sh[:, 0].mean(-1, keepdim=True)) ** 2).mean()
