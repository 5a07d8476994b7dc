"""The landmark guard (``StageConfig.landmark_guard``, on in the attribute and free-form stages): those stages may
not leave any image's fit as a whole further from its landmarks than the landmark stage left it, or than the
landmarks' assumed noise would leave it, whichever is more. Single landmarks may move; the mean may not rise.

* The reference ``ref_b`` of image b is taken before the first guarded stage's first step (:func:`guard_reference`):
  the larger of its mean landmark distance ``e_b`` (a fraction of its eye distance) and
  ``landmark_sigma * sqrt(pi / 2)``, the mean length of the 2-D error that Gaussian noise of ``landmark_sigma`` per
  coordinate leaves (:attr:`~redafit.fit.FitConfig.landmark_sigma`). A fit closer to noisy landmarks than their
  noise follows the noise (the discrepancy principle), so the attribute terms may take it back to that distance;
  with precise landmarks (a small ``landmark_sigma``) the reference is the landmark stage's own result. The same
  moment's pose, identity, expression and displacement are kept as the anchor.
* While a stage runs, every :data:`BOOST_EVERY` iterations each image's landmark weight is doubled while ``e_b`` is
  over ``ref_b`` and halved (down to its configured value) once well under (:func:`update_guard_weight`), so the
  stage settles near the constrained optimum with the attribute terms free in every direction that costs no
  landmark accuracy.
* At the stage's end, :func:`project_landmark_guard` moves any image still over its reference the smallest fraction
  of the way back to the anchor (a straight line in the coefficients, the geodesic for the rotation; bisection,
  the jaw correspondences re-picked at each point) that brings it within; the anchor itself, with its own jaw
  correspondences, satisfies it.

Measured alternatives (session 12): a stiff penalty on the excess fights Adam (its gradient spikes inflate Adam's
second moments, which then freeze the other terms: the landmarks ended closer than the reference, i.e. following
the noise, +12 % shape error on the synthetic tuning faces); a Lagrange multiplier updated every step overshot the
same way; projecting after every Adam step (with Gauss-Newton or Levenberg-Marquardt pull-backs) fought Adam's
momentum, whose steps then grew.
"""

from __future__ import annotations

import torch

# sqrt(pi / 2): the mean length of a 2-D vector whose coordinates are Gaussian with standard deviation 1
NOISE_MEAN_LENGTH = 1.2533141373155003
GUARD_BISECTIONS = 8  # halvings of the blend fraction searched (precision 1/256)
GUARD_TOL = 1e-5  # excess (fraction of the eye distance) that counts as on the constraint
GUARD_FIELDS = ("rot", "trans", "id", "exp", "disp")  # the parameters that place the landmarks
BOOST_EVERY = 10  # iterations between updates of the per-image landmark weight factor
BOOST_STEP = 2.0  # its factor while over the reference (and its divisor, down to 1, once well under)
BOOST_SLACK = 0.97  # "well under": below this fraction of the reference


def _error(ctx, contour: bool = False) -> torch.Tensor:
    """The mean landmark distances [B] at the current parameters as fractions of the eye distance
    (:func:`~redafit.fit.fitter.landmark_error_px` / the targets' scale); ``contour``: with the jaw correspondences
    re-picked for them first, as the stages do every ``contour_every`` iterations."""
    from redafit.fit.correspondence import update_contour
    from redafit.fit.fitter import landmark_error_px

    if contour:
        ctx.cache.clear()
        with torch.no_grad():
            update_contour(ctx.targets, ctx, ctx.model)
    return landmark_error_px(ctx) / ctx.targets.scale


def guard_reference(ctx) -> torch.Tensor:
    """The guard's reference [B], set on first use with a snapshot of the parameters that place the landmarks
    (:data:`GUARD_FIELDS`); both are kept in ``ctx.extras`` for the rest of the fit."""
    ex = ctx.extras
    ref = ex.get("landmark_ref")
    if ref is None or ref.shape[0] != ctx.params.batch:
        floor = float(ex.get("landmark_sigma", 0.0)) * NOISE_MEAN_LENGTH
        ref = ex["landmark_ref"] = _error(ctx).clamp_min(floor)
        ex["landmark_snapshot"] = {n: ctx.params.named(n).detach().clone() for n in GUARD_FIELDS}
        ex["landmark_snapshot_ids"] = (ctx.targets.ids.clone(), ctx.targets.w.clone())
    return ref


def _blend(ctx, start: dict, anchor: dict, a: float) -> None:
    """Set the landmark-placing parameters to the fraction ``a`` of the way from ``start`` to ``anchor`` (rotations
    along the geodesic)."""
    from redafit.render.camera import R_FLIP, matrix_to_axis_angle, pose_rotation, rodrigues

    p = ctx.params
    with torch.no_grad():
        R0, R1 = pose_rotation(start["rot"]), pose_rotation(anchor["rot"])
        d = matrix_to_axis_angle(R1 @ R0.transpose(-1, -2))  # [B, 3]
        R = rodrigues(a * d) @ R0
        p.rot.copy_(matrix_to_axis_angle(R @ R_FLIP.to(R.dtype).T).to(p.rot.dtype))
        for n in GUARD_FIELDS[1:]:
            p.named(n).copy_(start[n] + a * (anchor[n] - start[n]))
        p.project_constraints()
    ctx.cache.clear()


def project_landmark_guard(ctx, stage) -> None:
    """Bring every image's mean landmark distance back within its reference by the smallest blend towards the
    anchor (see the module); a no-op where every image already is within."""
    ref = guard_reference(ctx) + GUARD_TOL
    if bool((_error(ctx) <= ref).all()):
        return
    anchor = ctx.extras["landmark_snapshot"]
    contour = bool(stage.contour_every)
    start = {n: ctx.params.named(n).detach().clone() for n in GUARD_FIELDS}
    lo, hi = 0.0, 1.0
    for _ in range(GUARD_BISECTIONS):
        mid = 0.5 * (lo + hi)
        _blend(ctx, start, anchor, mid)
        if bool((_error(ctx, contour) <= ref).all()):
            hi = mid
        else:
            lo = mid
    _blend(ctx, start, anchor, hi)
    if hi == 1.0:  # the anchor itself, with its own jaw correspondences: exactly the reference's fit
        ids, w = ctx.extras["landmark_snapshot_ids"]
        ctx.targets.ids.copy_(ids)
        ctx.targets.w.copy_(w)
    else:
        _error(ctx, contour)
    ctx.cache.clear()


def update_guard_weight(ctx, stage, it: int) -> None:
    """Every :data:`BOOST_EVERY` iterations of a guarded stage, double each image's landmark weight factor
    (``ctx.extras["landmark_boost"]`` [B], read by the ``landmarks`` loss) while its mean landmark distance is over
    the reference, and halve it (down to 1) once below :data:`BOOST_SLACK` x the reference."""
    if not stage.landmark_guard or it == 0 or it % BOOST_EVERY:
        return
    ref = guard_reference(ctx)
    ex = ctx.extras
    boost = ex.get("landmark_boost")
    if boost is None or boost.shape != ref.shape:
        boost = torch.ones_like(ref)
    e = _error(ctx)
    boost = torch.where(e > ref, boost * BOOST_STEP, torch.where(e < BOOST_SLACK * ref, boost / BOOST_STEP, boost))
    ex["landmark_boost"] = boost.clamp_min(1.0)
