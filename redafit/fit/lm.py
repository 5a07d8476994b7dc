"""Levenberg-Marquardt for the landmark stages (``StageConfig.optimizer = "lm"``).

The landmark stages have few parameters (pose, identity, expression: ~160 for ICT) and few residuals (2 per
landmark plus the priors), so damped Gauss-Newton steps with an analytic Jacobian converge in ~10 iterations
where Adam needs hundreds: the landmark stage costs tens of milliseconds. The objective is the *same* weighted
sum as the Adam path (the ``landmarks``, ``id_prior``, ``exp_prior`` and ``exp_l1`` terms of
:mod:`redafit.fit.losses`), written as residuals whose squared sum equals it plus, for ``exp_l1`` on blendshape
weights held in [0, 1], the linear term ``w * sum(exp)`` (a constant gradient; the bound constraints of the
active set keep weights at 0 where it pushes them below). Rotations are updated multiplicatively
(``R <- exp([d]_x) R``), so the Jacobian w.r.t. the rotation is ``-[R p]_x``.
"""

from __future__ import annotations

import math
import time

import torch

from redafit.errors import FitError
from redafit.fit.correspondence import update_contour
from redafit.render.camera import R_FLIP, matrix_to_axis_angle, pose_rotation, rodrigues

LM_LOSSES = ("landmarks", "id_prior", "exp_prior", "exp_l1")
LM_PARAMS = ("rot", "trans", "id", "exp")
STOP_REL = 2e-3  # stop once an iteration improves the cost by less than this fraction …
MIN_ITERS = 6  # … and the contour correspondences have settled (or this many iterations have run)


def _skew(v: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 3, 3] cross-product matrices."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*v.shape, 3)


class _Problem:
    """Residuals and their Jacobian for the current correspondences (double precision)."""

    def __init__(self, ctx, stage):
        p, sub = ctx.params, ctx.extras["subset"]
        self.ctx, self.p = ctx, p
        self.B, self.shared = p.batch, p.id.shape[0] == 1 and p.batch > 1
        self.nid, self.nexp = p.id.shape[1], p.exp.shape[1]
        dt = torch.float64
        self.mean = sub["mean"].to(dt)  # [S, 3]
        self.bid = sub["id"][: self.nid].to(dt)  # [Ki, S, 3]
        self.bexp = sub["exp"][: self.nexp].to(dt)
        self.map = sub["map"]
        self.cam = ctx.cam.to(dt)
        self.w_lm = math.sqrt(stage.losses.get("landmarks", 0.0))
        self.w_id = math.sqrt(stage.losses.get("id_prior", 0.0))
        self.w_exp = math.sqrt(stage.losses.get("exp_prior", 0.0))
        # exp_l1 (blendshape models): linear in the weights, which the bounds keep >= 0
        self.w_l1 = float(stage.losses.get("exp_l1", 0.0)) if p.unit_exp and "exp" in stage.params else 0.0
        self.train = set(stage.params)

    def _gathered(self):
        """Correspondence-weighted mean and bases at the landmarks: ([B, N, 3], [Ki, B, N, 3], [Ke, B, N, 3]).
        Recomputed only when the correspondences change (after a contour update)."""
        t = self.ctx.targets
        key = getattr(self, "_key", None)
        if key is None or not (torch.equal(key[0], t.ids) and torch.equal(key[1], t.w)):
            B = self.B
            N, M = t.ids.shape[1:]
            flat = self.map[t.ids.reshape(B, -1)]  # [B, N*M]
            w = t.w.to(torch.float64).reshape(B, N, M, 1)
            mean_g = (self.mean[flat].reshape(B, N, M, 3) * w).sum(2)
            bid_g = (self.bid[:, flat].reshape(-1, B, N, M, 3) * w[None]).sum(3)
            bexp_g = (self.bexp[:, flat].reshape(-1, B, N, M, 3) * w[None]).sum(3)
            self._key, self._g = (t.ids.clone(), t.w.clone()), (mean_g, bid_g, bexp_g)
        return self._g

    def _points(self, idc, expc):
        idb = idc.expand(self.B, -1) if self.shared else idc
        mean_g, bid_g, bexp_g = self._gathered()
        return mean_g + torch.einsum("bk,kbnc->bnc", idb, bid_g) + torch.einsum("bk,kbnc->bnc", expc, bexp_g)

    def linear(self, expc) -> float:
        """The linear part of the cost: ``w_l1 * mean over images of sum(exp)``."""
        return self.w_l1 * float(expc.sum()) / self.B if self.w_l1 else 0.0

    def residuals(self, R, trans, idc, expc, jacobian=False):
        t = self.ctx.targets
        B = self.B
        P = self._points(idc, expc)
        X = P @ R.transpose(-1, -2) + trans[:, None]  # [B, N, 3]
        z = X[..., 2].clamp_min(1e-3)
        fx, fy, cx, cy = (self.cam[:, i, None] for i in range(4))
        u = fx * X[..., 0] / z + cx
        v = fy * X[..., 1] / z + cy
        known = t.weight.to(torch.float64)
        c = self.w_lm * torch.sqrt(known / known.sum().clamp_min(1)) / t.scale.to(torch.float64)[:, None]  # [B, N]
        r_lm = (torch.stack([u, v], -1) - t.points.to(torch.float64)) * c[..., None]  # [B, N, 2]
        nid_rows = idc.shape[0]
        r = torch.cat([r_lm.reshape(-1), (self.w_id / math.sqrt(nid_rows)) * idc.reshape(-1),
                       (self.w_exp / math.sqrt(B)) * expc.reshape(-1)])
        if not jacobian:
            return r
        # d(u, v)/dX: [B, N, 2, 3], scaled by c
        D = torch.zeros(*X.shape[:2], 2, 3, dtype=X.dtype)
        D[..., 0, 0] = fx / z
        D[..., 0, 2] = -fx * X[..., 0] / z ** 2
        D[..., 1, 1] = fy / z
        D[..., 1, 2] = -fy * X[..., 1] / z ** 2
        D = D * c[..., None, None]
        N = X.shape[1]
        # columns: per image rot(3) trans(3) exp(Ke), then the identity columns (shared or per image)
        RP = X - trans[:, None]
        J_rot = -D @ _skew(RP)  # [B, N, 2, 3]
        J_t = D
        DR = D @ R[:, None]  # [B, N, 2, 3]
        _, bid_g, bexp_g = self._gathered()  # [Ki|Ke, B, N, 3]
        J_exp = torch.einsum("bnij,kbnj->bnik", DR, bexp_g)  # [B, N, 2, Ke]
        J_id = torch.einsum("bnij,kbnj->bnik", DR, bid_g)  # [B, N, 2, Ki]
        cols = []
        if "rot" in self.train:
            cols.append(("rot", J_rot))
        if "trans" in self.train:
            cols.append(("trans", J_t))
        if "exp" in self.train:
            cols.append(("exp", J_exp))
        n_res = r.shape[0]
        per = sum(j.shape[-1] for _, j in cols)
        n_idcols = (self.nid * nid_rows) if "id" in self.train else 0
        J = torch.zeros(n_res, B * per + n_idcols, dtype=X.dtype)
        rows_lm = torch.arange(B * N * 2).reshape(B, N * 2)
        for b in range(B):
            off = b * per
            for _, jb in cols:
                k = jb.shape[-1]
                J[rows_lm[b], off:off + k] = jb[b].reshape(N * 2, k)
                off += k
            if "id" in self.train:
                ib = 0 if self.shared else b
                c0 = B * per + ib * self.nid
                J[rows_lm[b], c0:c0 + self.nid] = J_id[b].reshape(N * 2, self.nid)
        # prior rows
        r0 = B * N * 2
        if "id" in self.train:
            idx = torch.arange(self.nid * nid_rows)
            J[r0 + idx, B * per + idx] = self.w_id / math.sqrt(nid_rows)
        r0 += self.nid * nid_rows
        if "exp" in self.train:
            e_off = [k for k, (nm, _) in enumerate(cols) if nm == "exp"]
            start = sum(cols[k][1].shape[-1] for k in range(e_off[0]))
            for b in range(B):
                idx = torch.arange(self.nexp)
                J[r0 + b * self.nexp + idx, b * per + start + idx] = self.w_exp / math.sqrt(B)
        return r, J, cols, per


def run_lm_stage(ctx, stage, progress=None):
    """Minimise the stage's landmark objective over ``stage.params`` with Levenberg-Marquardt.

    Runs single-threaded: the problem is a few hundred numbers, and a thread pool only adds synchronisation
    (10-20x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_lm_stage(ctx, stage, progress)
    finally:
        torch.set_num_threads(threads)


def _run_lm_stage(ctx, stage, progress=None):
    from redafit.fit.fitter import StageReport
    from redafit.fit.losses import LOSSES

    bad = [k for k in stage.losses if k not in LM_LOSSES] + [k for k in stage.params if k not in LM_PARAMS]
    if bad:
        raise FitError(f"stage {stage.name}: the lm optimizer handles only {LM_LOSSES} on {LM_PARAMS}, got {bad}")
    t0 = time.perf_counter()
    p = ctx.params
    dt = torch.float64
    prob = _Problem(ctx, stage)
    with torch.no_grad():
        R = pose_rotation(p.rot.detach()).to(dt)
        trans = p.trans.detach().to(dt).clone()
        idc = p.id.detach().to(dt).clone()
        expc = p.exp.detach().to(dt).clone()
    flip = R_FLIP.to(dt)

    def commit():
        with torch.no_grad():
            p.rot.copy_(matrix_to_axis_angle(R @ flip.T).to(p.rot.dtype))
            p.trans.copy_(trans.to(p.trans.dtype))
            p.id.copy_(idc.to(p.id.dtype))
            p.exp.copy_(expc.to(p.exp.dtype))
        ctx.cache.clear()

    lam = 1e-3
    with torch.no_grad():
        r0 = prob.residuals(R, trans, idc, expc)
    cost = float((r0 * r0).sum()) + prob.linear(expc)
    prev = float("inf")
    B = p.batch
    done = 0
    for it in range(stage.iters):
        moved = False
        sliding = bool(stage.contour_every) and ctx.targets.kind == "68"
        checked = not sliding or it % stage.contour_every == 0
        if sliding and it % stage.contour_every == 0:
            commit()
            ctx.stage = stage
            before = ctx.targets.ids.clone()
            with torch.no_grad():
                update_contour(ctx.targets, ctx, ctx.model)
            moved = not torch.equal(before, ctx.targets.ids)
            ctx.stage = None
            ctx.cache.clear()
        with torch.no_grad():
            r, J, cols, per = prob.residuals(R, trans, idc, expc, jacobian=True)
            cost = float((r * r).sum()) + prob.linear(expc)
            JtJ = J.T @ J
            g = J.T @ r
            names = [nm for nm, _ in cols]
            # column of image 0's first expression coefficient (image b's: b * per later)
            exp0 = sum(j.shape[-1] for _, j in cols[: names.index("exp")]) if "exp" in names else 0
            if prob.w_l1:  # half the gradient of the linear term (g is half the gradient of r.r)
                for b in range(B):
                    g[b * per + exp0:b * per + exp0 + prob.nexp] += 0.5 * prob.w_l1 / B
            diag = JtJ.diagonal().clamp_min(1e-9)
            free = torch.ones(len(g), dtype=torch.bool)
            if p.unit_exp and "exp" in prob.train:
                # bound constraints (blendshape weights in [0, 1]): variables at a bound whose descent direction
                # points outwards are held fixed for this step (an active set), so steps are not wasted on clamping
                for b in range(B):
                    off = b * per + exp0
                    e = expc[b]
                    at_lo = (e <= 0) & (g[off:off + len(e)] > 0)
                    at_hi = (e >= 1) & (g[off:off + len(e)] < 0)
                    free[off:off + len(e)] = ~(at_lo | at_hi)
            fi = free.nonzero().squeeze(1)
            for _ in range(10):
                try:
                    step = torch.zeros_like(g)
                    A = JtJ[fi][:, fi] + lam * torch.diag(diag[fi])
                    step[fi] = torch.linalg.solve(A, -g[fi])
                except RuntimeError:
                    lam *= 10
                    continue
                nR, nt, nid, nexp = R.clone(), trans.clone(), idc.clone(), expc.clone()
                for b in range(B):
                    off = b * per
                    for name, jb in cols:
                        k = jb.shape[-1]
                        s = step[off:off + k]
                        if name == "rot":
                            nR[b] = rodrigues(s[None])[0] @ R[b]
                        elif name == "trans":
                            nt[b] = trans[b] + s
                        else:
                            nexp[b] = expc[b] + s
                        off += k
                if "id" in prob.train:
                    nid = idc + step[B * per:].reshape(idc.shape)
                if p.unit_exp:
                    nexp = nexp.clamp(0.0, 1.0)
                nt[:, 2] = nt[:, 2].clamp_min(50.0)
                nr = prob.residuals(nR, nt, nid, nexp)
                new_cost = float((nr * nr).sum()) + prob.linear(nexp)
                if math.isfinite(new_cost) and new_cost <= cost:
                    R, trans, idc, expc, cost = nR, nt, nid, nexp, new_cost
                    lam = max(lam / 3, 1e-9)
                    break
                lam *= 4
        done = it + 1
        if progress is not None:
            progress(stage.name, it + 1, stage.iters, cost)
        # converged: the cost stopped improving and the contour correspondences stopped moving
        if ((checked and not moved) or it >= MIN_ITERS) and prev - cost <= STOP_REL * max(cost, 1e-12):
            break
        prev = cost
    if not math.isfinite(cost):
        raise FitError(f"stage {stage.name}: the landmark objective became non-finite")
    commit()
    ctx.stage = stage
    with torch.no_grad():
        terms = {k: float(LOSSES[k](ctx, stage)) for k in stage.losses}
    ctx.stage = None
    ctx.cache.clear()
    return StageReport(stage.name, done, time.perf_counter() - t0, cost, terms)
