"""Rigid and similarity alignment of point sets and meshes (numpy + scipy, float64).

* :func:`umeyama` — weighted least-squares similarity (or rigid) transform between corresponding points.
* :func:`icp` — iterative closest point with scale (point-to-point), initialised from landmarks when both
  sides have them, else from centroids and principal axes (every proper axis assignment tried, best kept).
* :func:`align_landmarks_then_surface` — the NoW-style alignment: a transform from a few corresponding
  landmarks, refined by minimising the distance from scan points to the *surface* of the mesh.

Conventions: a :class:`Similarity` maps *source* points onto *target* points, ``y = s R x + t``. Points are
``[N, 3]`` arrays in millimetres.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from redafit.errors import InputError


@dataclass(frozen=True)
class Similarity:
    """``y = scale * R @ x + t`` (R [3, 3] proper rotation, t [3] mm, scale > 0)."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    @staticmethod
    def identity() -> Similarity:
        return Similarity(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] -> [N, 3]."""
        return self.scale * np.asarray(points, np.float64) @ self.R.T + self.t

    def compose(self, first: Similarity) -> Similarity:
        """The transform ``self ∘ first`` (apply ``first``, then ``self``)."""
        return Similarity(self.scale * first.scale, self.R @ first.R, self.scale * self.R @ first.t + self.t)

    def inverse(self) -> Similarity:
        Rt = self.R.T
        return Similarity(1.0 / self.scale, Rt, -(Rt @ self.t) / self.scale)

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "R": np.round(self.R, 8).tolist(), "t": np.round(self.t, 6).tolist()}


def _as_points(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise InputError(f"{name}: expected points [N, 3], got {list(a.shape)}")
    return a


def umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None,
            with_scale: bool = True) -> Similarity:
    """Least-squares ``argmin sum_i w_i |s R x_i + t - y_i|^2`` over similarity (or rigid) transforms.

    source, target [N, 3] corresponding points (rows with NaN are ignored); weights [N] >= 0 (default 1).
    Umeyama (1991): SVD of the weighted cross-covariance, with the reflection fixed by a sign on the last
    singular direction.
    """
    x, y = _as_points("source", source), _as_points("target", target)
    if x.shape != y.shape:
        raise InputError(f"umeyama: source {list(x.shape)} and target {list(y.shape)} differ")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    ok = np.isfinite(x).all(1) & np.isfinite(y).all(1) & np.isfinite(w) & (w > 0)
    x, y, w = x[ok], y[ok], w[ok]
    if len(x) < 3:
        raise InputError(f"umeyama: need at least 3 valid correspondences, got {len(x)}")
    w = w / w.sum()
    mx, my = w @ x, w @ y
    xc, yc = x - mx, y - my
    cov = (yc * w[:, None]).T @ xc  # [3, 3] sum w y x^T
    U, S, Vt = np.linalg.svd(cov)
    D = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2] = -1.0
    R = U @ np.diag(D) @ Vt
    var_x = float(w @ (xc * xc).sum(1))
    s = float((S * D).sum() / var_x) if (with_scale and var_x > 0) else 1.0
    t = my - s * R @ mx
    return Similarity(s, R, t)


@dataclass
class AlignmentResult:
    """An alignment of source onto target and how well it fits."""

    transform: Similarity
    mean_distance: float  # mm, mean correspondence distance at the end
    iterations: int
    converged: bool
    history: list = field(default_factory=list)  # mean distance per iteration

    def to_dict(self) -> dict:
        return {"transform": self.transform.to_dict(), "mean_distance": float(self.mean_distance),
                "iterations": int(self.iterations), "converged": bool(self.converged)}


def _signed_permutations() -> list[np.ndarray]:
    """The 48 matrices mapping coordinate axes onto signed coordinate axes."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            M = np.zeros((3, 3))
            M[np.arange(3), perm] = signs
            out.append(M)
    return out


def principal_axes_init(source: np.ndarray, target: np.ndarray, with_scale: bool = True,
                        sample: int = 2000, trial_iters: int = 8, seed: int = 0) -> Similarity:
    """Initial transform from centroids and principal axes.

    The principal axes of each cloud are known only up to order and sign, so every assignment giving a proper
    rotation (24 of the 48 signed permutations) is tried with a few ICP iterations on a subsample; the one with
    the smallest mean distance wins.
    """
    rng = np.random.default_rng(seed)
    xs = source[rng.choice(len(source), min(sample, len(source)), replace=False)]
    ys = target[rng.choice(len(target), min(sample, len(target)), replace=False)]
    mx, my = source.mean(0), target.mean(0)
    _, Sx, Vx = np.linalg.svd(source - mx, full_matrices=False)
    _, Sy, Vy = np.linalg.svd(target - my, full_matrices=False)
    s0 = float(np.sqrt((Sy ** 2).sum() / len(target)) / max(np.sqrt((Sx ** 2).sum() / len(source)), 1e-12))
    if not with_scale:
        s0 = 1.0
    best, best_d = None, np.inf
    for M in _signed_permutations():
        R = Vy.T @ M @ Vx  # source principal frame -> target principal frame
        if np.linalg.det(R) < 0:
            continue
        T = Similarity(s0, R, my - s0 * R @ mx)
        res = icp(xs, ys, init=T, with_scale=with_scale, max_iter=trial_iters, tol=1e-2)
        if res.mean_distance < best_d:
            best, best_d = res.transform, res.mean_distance
    return best


def icp(source: np.ndarray, target: np.ndarray, init: Similarity | None = None,
        source_landmarks: np.ndarray | None = None, target_landmarks: np.ndarray | None = None,
        with_scale: bool = True, tol: float = 1e-3, max_iter: int = 100,
        direction: str = "target") -> AlignmentResult:
    """Align ``source`` [N, 3] onto ``target`` [M, 3] by point-to-point ICP (with scale by default).

    Initialisation: ``init`` when given; else :func:`umeyama` on the landmark pairs when both
    ``source_landmarks`` and ``target_landmarks`` ([K, 3], NaN rows ignored) are given; else
    :func:`principal_axes_init`. Each iteration pairs points with their nearest neighbours (cKDTree) and solves
    :func:`umeyama`; it stops when the mean distance improves by less than ``tol`` mm, or after ``max_iter``.

    ``direction``: "target" pairs every target point with its nearest transformed source point (use it when the
    source covers more than the target, e.g. a predicted face against a cropped scan); "source" pairs every
    source point with its nearest target point.
    """
    x, y = _as_points("source", source), _as_points("target", target)
    if len(x) < 3 or len(y) < 3:
        raise InputError(f"icp: need at least 3 points on each side, got {len(x)} and {len(y)}")
    if direction not in ("target", "source"):
        raise InputError(f"icp: direction must be 'target' or 'source', got {direction!r}")
    if init is not None:
        T = init
    elif source_landmarks is not None and target_landmarks is not None:
        T = umeyama(source_landmarks, target_landmarks, with_scale=with_scale)
    else:
        T = principal_axes_init(x, y, with_scale=with_scale)
    y_tree = cKDTree(y) if direction == "source" else None
    history: list[float] = []
    converged = False
    best_T, best_d = T, np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        xt = T.apply(x)
        if direction == "source":
            d, j = y_tree.query(xt)
            src, dst = x, y[j]
        else:
            d, j = cKDTree(xt).query(y)
            src, dst = x[j], y
        history.append(float(d.mean()))
        if history[-1] < best_d:
            best_T, best_d = T, history[-1]
        if len(history) > 1 and history[-2] - history[-1] < tol:
            converged = True
            break
        T = umeyama(src, dst, with_scale=with_scale)
    return AlignmentResult(best_T, float(best_d), it, converged, history)


def align_landmarks_then_surface(mesh_vertices: np.ndarray, mesh_faces: np.ndarray, mesh_landmarks: np.ndarray,
                                 scan_points: np.ndarray, scan_landmarks: np.ndarray, with_scale: bool = True,
                                 tol: float = 1e-3, max_iter: int = 50) -> AlignmentResult:
    """NoW-style: align a mesh onto a scan from landmark pairs, then minimise scan-to-mesh *surface* distance.

    mesh_vertices [V, 3], mesh_faces [F, 3], mesh_landmarks [K, 3] (e.g. 7: eye corners, nose tip, mouth
    corners), scan_points [N, 3], scan_landmarks [K, 3]. Each refinement step finds, for every scan point, the
    closest point on the transformed mesh surface (kept in barycentric form, so it moves with the mesh) and
    re-solves :func:`umeyama` from those surface points to the scan points.
    """
    from redafit.eval.metrics import closest_points_on_mesh

    v = _as_points("mesh vertices", mesh_vertices)
    f = np.asarray(mesh_faces, np.int64)
    p = _as_points("scan points", scan_points)
    T = umeyama(mesh_landmarks, scan_landmarks, with_scale=with_scale)
    history: list[float] = []
    converged = False
    best_T, best_d = T, np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        cp = closest_points_on_mesh(p, T.apply(v), f)
        history.append(float(cp.distances.mean()))
        if history[-1] < best_d:
            best_T, best_d = T, history[-1]
        if len(history) > 1 and history[-2] - history[-1] < tol:
            converged = True
            break
        # the same surface points on the untransformed mesh
        tri = f[cp.triangles]  # [N, 3]
        src = (v[tri] * cp.barycentric[:, :, None]).sum(1)
        T = umeyama(src, p, with_scale=with_scale)
    return AlignmentResult(best_T, float(best_d), it, converged, history)
