"""As-rigid-as-possible regularisation of the free-form displacement (ReDA Sec. 5.2).

Energy, with rest shape p (the morphable-model shape) and deformed shape p' = p + d:

    E(d, R) = sum_(i,j) w_ij || (p'_i - p'_j) - R_i (p_i - p_j) ||^2  +  lambda sum_(i,j) || R_i - R_j ||_F^2

with cotangent weights w_ij. The per-vertex rotations R_i are solved in closed form (the SVD polar factor of
S_i = sum_j w_ij e'_ij e_ij^T + lambda sum_j R_j, with the neighbours' current rotations: the smooth-rotation
local step), alternating with Adam updates of d (the global step done by gradient descent).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

ROTATION_SMOOTHNESS = 1e-3  # lambda, the paper's value


@dataclass
class ArapState:
    edges: torch.Tensor  # [E, 2] long, each undirected edge once
    weights: torch.Tensor  # [E] cotangent weights (clamped positive), normalised to mean 1
    rotations: torch.Tensor  # [B, V, 3, 3]
    lam: float = ROTATION_SMOOTHNESS


_EDGES: dict = {}  # id(tris) -> (weak reference to tris, its version, unique edges, inverse index)


def _unique_edges(tris: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unique undirected edges [E, 2] of ``tris`` and, for each of its 3F corner-opposite edges (in the order
    :func:`cotangent_edges` lists them), its index among them; cached per triangle tensor (the sort behind it took
    ~0.2 s for ICT, twice per fit)."""
    hit = _EDGES.get(id(tris))
    if hit is None or hit[0]() is not tris or hit[1] != tris._version:
        i, j, k = tris[:, 0], tris[:, 1], tris[:, 2]
        pairs = ((i, j), (j, k), (k, i))
        e = torch.cat([torch.stack([torch.minimum(a, b), torch.maximum(a, b)], -1) for a, b in pairs])
        uniq, inv = torch.unique(e, dim=0, return_inverse=True)
        if len(_EDGES) >= 8:
            _EDGES.clear()
        hit = (weakref.ref(tris), tris._version, uniq, inv)
        _EDGES[id(tris)] = hit
    return hit[2], hit[3]


def cotangent_edges(verts: torch.Tensor, tris: torch.Tensor, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique edges [E, 2] and their cotangent weights [E] of a mesh verts [V, 3], tris [F, 3]."""
    v = verts.detach().double()
    i, j, k = tris[:, 0], tris[:, 1], tris[:, 2]
    out_w = []
    for a, b, c in ((i, j, k), (j, k, i), (k, i, j)):  # the angle at c is opposite edge (a, b)
        u, w = v[a] - v[c], v[b] - v[c]
        cot = (u * w).sum(-1) / torch.linalg.cross(u, w).norm(dim=-1).clamp_min(1e-12)
        out_w.append(0.5 * cot)
    wts = torch.cat(out_w)
    uniq, inv = _unique_edges(tris)
    W = torch.zeros(len(uniq), dtype=wts.dtype, device=wts.device).index_add_(0, inv, wts)
    W = W.clamp_min(eps)
    return uniq, (W / W.mean()).float()


def init_state(rest: torch.Tensor, tris: torch.Tensor, batch: int, lam: float = ROTATION_SMOOTHNESS) -> ArapState:
    edges, w = cotangent_edges(rest, tris)
    V = rest.shape[0]
    R = torch.eye(3, device=rest.device).expand(batch, V, 3, 3).clone()
    return ArapState(edges.to(rest.device), w.to(rest.device), R, lam)


@torch.no_grad()
def solve_rotations(state: ArapState, rest: torch.Tensor, deformed: torch.Tensor) -> None:
    """Local step: R_i = polar(S_i + lambda sum_j R_j) for rest/deformed [B, V, 3] (in place on ``state``)."""
    e0, e1 = state.edges[:, 0], state.edges[:, 1]
    er = rest[:, e0] - rest[:, e1]  # [B, E, 3]
    ed = deformed[:, e0] - deformed[:, e1]
    outer = state.weights[None, :, None, None] * ed[..., :, None] * er[..., None, :]  # [B, E, 3, 3]
    B, V = rest.shape[:2]
    S = torch.zeros(B, V, 3, 3, dtype=rest.dtype, device=rest.device)
    S.index_add_(1, e0, outer)
    S.index_add_(1, e1, outer)
    if state.lam > 0:
        # neighbours' rotations, scaled like the data term (per-vertex weight sums ~ valence * |e|^2)
        scale = (state.weights[None, :] * (er * er).sum(-1)).mean()
        nb = torch.zeros_like(S)
        nb.index_add_(1, e0, state.rotations[:, e1])
        nb.index_add_(1, e1, state.rotations[:, e0])
        S = S + state.lam * scale * nb
    state.rotations = nearest_rotation(S)


def _cofactor(X: torch.Tensor) -> torch.Tensor:
    """Cofactor matrices [..., 3, 3] (= det(X) inv(X)^T), elementwise: fast for many small matrices."""
    a, b, c = X[..., 0, :], X[..., 1, :], X[..., 2, :]
    return torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], -2)


def nearest_rotation(S: torch.Tensor, iters: int = 8) -> torch.Tensor:
    """argmax_R tr(R^T S) over rotations, for S [..., 3, 3]: the polar factor by scaled Newton iterations
    (X <- (g X + X^-T / g) / 2), with an SVD fallback for the few matrices whose polar factor is a reflection
    or that are near-singular."""
    X = S / S.flatten(-2).norm(dim=-1).clamp_min(1e-12)[..., None, None]
    for _ in range(iters):
        C = _cofactor(X)
        det = (X[..., 0, :] * C[..., 0, :]).sum(-1)
        ok = det.abs() > 1e-9
        detc = torch.where(ok, det, torch.ones_like(det))
        Xinv_t = C / detc[..., None, None]
        g = (Xinv_t.flatten(-2).norm(dim=-1) / X.flatten(-2).norm(dim=-1).clamp_min(1e-12)).sqrt()
        Xn = 0.5 * (g[..., None, None] * X + Xinv_t / g[..., None, None])
        X = torch.where(ok[..., None, None], Xn, X)
    det = torch.linalg.det(X)
    bad = (det < 0.5) | ~torch.isfinite(det)
    if bool(bad.any()):
        U, _, Vh = torch.linalg.svd(S[bad])
        fix = torch.ones_like(U[..., 0, :])
        fix[..., 2] = torch.where(torch.linalg.det(U @ Vh) < 0, -1.0, 1.0)
        X[bad] = (U * fix[..., None, :]) @ Vh
    return X


def arap_energy(state: ArapState, rest: torch.Tensor, deformed: torch.Tensor) -> torch.Tensor:
    """Mean over edges of the ARAP term (both directions, each with its own rotation) plus the rotation
    smoothness term, for rest/deformed [B, V, 3]; differentiable w.r.t. ``deformed``."""
    e0, e1 = state.edges[:, 0], state.edges[:, 1]
    er = rest[:, e0] - rest[:, e1]
    ed = deformed[:, e0] - deformed[:, e1]
    R0, R1 = state.rotations[:, e0], state.rotations[:, e1]
    r0 = ed - (R0 @ er[..., None])[..., 0]
    r1 = ed - (R1 @ er[..., None])[..., 0]
    data = (state.weights[None] * ((r0 * r0).sum(-1) + (r1 * r1).sum(-1))).mean() * 0.5
    smooth = ((R0 - R1) ** 2).sum((-1, -2)).mean()
    return data + state.lam * smooth


class LaplacianSmoother:
    """Solves (I + lam L) x = b for x, b [B, V, 3], with L the cotangent Laplacian of the ARAP edges (weights
    normalised to mean 1): the preconditioner of the free-form displacement updates (``StageConfig.disp_smooth``).
    M is symmetric positive definite; it is factorised once (sparse LU, float64, on the CPU)."""

    def __init__(self, edges: torch.Tensor, weights: torch.Tensor, n_vertices: int, lam: float):
        import numpy as np
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        e = edges.cpu().numpy()
        w = weights.detach().double().cpu().numpy()
        W = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                    np.concatenate([e[:, 1], e[:, 0]]))),
                          shape=(n_vertices, n_vertices)).tocsr()
        L = sp.diags(np.asarray(W.sum(1)).ravel()) - W
        self.lam = float(lam)
        self._lu = splu((sp.identity(n_vertices) + self.lam * L).tocsc())  # COLAMD ordering: ~0.1 s for 10k vertices

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        import numpy as np

        x = b.detach().double().cpu().numpy()
        out = np.stack([self._lu.solve(np.ascontiguousarray(xb)) for xb in x])
        return torch.from_numpy(out).to(device=b.device, dtype=b.dtype)
