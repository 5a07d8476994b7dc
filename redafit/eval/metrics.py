"""Shape-error metrics and the two evaluation protocols (numpy + scipy, float64, millimetres).

Distances:

* :func:`point_to_plane` — each scan point to the tangent plane of its nearest predicted vertex (vertex
  normals), absolute value.
* :func:`point_to_point` — nearest-neighbour distances; :func:`symmetric_point_to_point` averages both
  directions (mean of the scan->prediction mean and the prediction->scan mean).
* :func:`closest_points_on_mesh` — exact closest points on a triangle mesh (point-to-surface): candidate
  triangles from a KD-tree on triangle centroids, widened until the bound ``|p - c| - r_max`` proves no
  other triangle can be closer, then a vectorised point-triangle distance.

Protocols:

* :func:`micc_protocol` (MICC Florence / GANFit style): crop the ground truth to points within ``radius``
  (95 mm) of its nose tip, align the prediction onto it by ICP with scale (landmark or principal-axes
  initialisation), crop the aligned prediction with the same ball, report point-to-plane and symmetric
  point-to-point means (and scan-to-mesh for reference).
* :func:`now_protocol` (NoW style): similarity alignment from 7 landmarks (eye corners, nose tip, mouth
  corners), refined by minimising scan-to-mesh distance; report median, mean and std of the distances from
  every (optionally cropped) scan point to the predicted surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from redafit.errors import InputError
from redafit.eval.alignment import (
    AlignmentResult,
    Similarity,
    align_landmarks_then_surface,
    icp,
)

CROP_RADIUS_MM = 95.0
# iBUG-68 indices of the NoW benchmark's 7 scan landmarks, in NoW's order:
# right eye outer corner, right eye inner, left eye inner, left eye outer, nose tip, mouth right, mouth left.
NOW_LANDMARKS_68 = (36, 39, 42, 45, 30, 48, 54)
NOSE_TIP_68 = 30


# ---------------------------------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------------------------------
def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] of a mesh (vertices [V, 3], faces [F, 3])."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # [F, 3], |fn| = 2 area
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(norm > 0, norm, 1.0)


def crop_mask(points: np.ndarray, center: np.ndarray, radius: float = CROP_RADIUS_MM) -> np.ndarray:
    """[N] bool: points within ``radius`` mm of ``center`` [3]."""
    return np.linalg.norm(np.asarray(points, np.float64) - np.asarray(center, np.float64).reshape(1, 3),
                          axis=1) <= radius


def estimate_nose_tip(points: np.ndarray, window_mm: float = 30.0) -> np.ndarray:
    """Heuristic nose tip [3] of a frontal face scan that looks along +z (the model frame's convention).

    The most forward (max z) point among those within ``window_mm`` (in x, y) of the median x, y.
    Prefer a nose tip from landmarks or a dataset file; this is the fallback.
    """
    p = np.asarray(points, np.float64)
    c = np.median(p[:, :2], axis=0)
    near = np.linalg.norm(p[:, :2] - c, axis=1) <= window_mm
    if not near.any():
        near[:] = True
    q = p[near]
    return q[np.argmax(q[:, 2])]


# ---------------------------------------------------------------------------------------------------------------
# point-triangle distance
# ---------------------------------------------------------------------------------------------------------------
def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest points on triangles (a, b, c) to points p, all [N, 3] (paired row by row).

    Returns (closest [N, 3], barycentric [N, 3]); classic Voronoi-region case analysis, vectorised. Degenerate
    triangles are handled (they fall into an edge or vertex region).
    """
    ab, ac, ap = b - a, c - a, p - a
    d1 = (ab * ap).sum(1)
    d2 = (ac * ap).sum(1)
    bp = p - b
    d3 = (ab * bp).sum(1)
    d4 = (ac * bp).sum(1)
    cp = p - c
    d5 = (ab * cp).sum(1)
    d6 = (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-300

    def safe_div(n, d):
        return n / np.where(np.abs(d) > eps, d, eps)

    # interior (default)
    denom = va + vb + vc
    v = safe_div(vb, denom)
    w = safe_div(vc, denom)
    bary = np.stack([1.0 - v - w, v, w], 1)
    # regions in reverse priority: the first test of the sequential algorithm must win, so it is written last
    m_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    wbc = np.clip(safe_div(d4 - d3, (d4 - d3) + (d5 - d6)), 0, 1)
    bary[m_bc] = np.stack([np.zeros_like(wbc), 1 - wbc, wbc], 1)[m_bc]
    m_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    wac = np.clip(safe_div(d2, d2 - d6), 0, 1)
    bary[m_ac] = np.stack([1 - wac, np.zeros_like(wac), wac], 1)[m_ac]
    m_c = (d6 >= 0) & (d5 <= d6)
    bary[m_c] = (0.0, 0.0, 1.0)
    m_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    vab = np.clip(safe_div(d1, d1 - d3), 0, 1)
    bary[m_ab] = np.stack([1 - vab, vab, np.zeros_like(vab)], 1)[m_ab]
    m_b = (d3 >= 0) & (d4 <= d3)
    bary[m_b] = (0.0, 1.0, 0.0)
    m_a = (d1 <= 0) & (d2 <= 0)
    bary[m_a] = (1.0, 0.0, 0.0)
    closest = bary[:, 0:1] * a + bary[:, 1:2] * b + bary[:, 2:3] * c
    return closest, bary


@dataclass
class ClosestPoints:
    """Closest surface points of a mesh to query points."""

    distances: np.ndarray  # [N] mm
    points: np.ndarray  # [N, 3]
    triangles: np.ndarray  # [N] triangle index
    barycentric: np.ndarray  # [N, 3]


class MeshQuery:
    """Exact point-to-surface queries against one triangle mesh (build once, query many)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, k: int = 8):
        self.v = np.asarray(vertices, np.float64)
        self.f = np.asarray(faces, np.int64)
        if self.f.ndim != 2 or self.f.shape[1] != 3 or len(self.f) == 0:
            raise InputError(f"mesh faces: expected [F, 3], got {list(self.f.shape)}")
        tri = self.v[self.f]  # [F, 3, 3]
        self.centroids = tri.mean(1)
        self.radii = np.linalg.norm(tri - self.centroids[:, None], axis=2).max(1)  # [F]
        self.r_max = float(self.radii.max())
        self.tree = cKDTree(self.centroids)
        self.k = int(min(k, len(self.f)))

    def _eval(self, p: np.ndarray, cand: np.ndarray, max_pairs: int = 400000):
        """p [N, 3], cand [N, k] triangle ids -> best (d, closest, tri, bary) per row."""
        N, k = cand.shape
        if N * k > max_pairs and N > 1:
            step = max(1, max_pairs // k)
            parts = [self._eval(p[i:i + step], cand[i:i + step], max_pairs) for i in range(0, N, step)]
            return tuple(np.concatenate(x) for x in zip(*parts))
        pr = np.repeat(p, k, axis=0)
        t = self.f[cand.reshape(-1)]
        cl, ba = closest_point_on_triangles(pr, self.v[t[:, 0]], self.v[t[:, 1]], self.v[t[:, 2]])
        d = np.linalg.norm(cl - pr, axis=1).reshape(N, k)
        j = d.argmin(1)
        rows = np.arange(N)
        flat = rows * k + j
        return d[rows, j], cl[flat], cand[rows, j], ba[flat]

    def _candidates(self, q: np.ndarray, rows: np.ndarray, k: int):
        """Best of the k triangles with the nearest centroids; also which rows are not proven exact."""
        dk, cand = self.tree.query(q, k=k)
        if k == 1:
            dk, cand = dk[:, None], cand[:, None]
        d, cl, t, b = self._eval(q, cand)
        exact = (k >= len(self.f)) | (dk[:, -1] - self.r_max >= d)
        return d, cl, t, b, np.nonzero(~exact)[0]

    def _refine(self, q, rows, d, cl, t, b, max_pairs: int = 400000):
        """Exact answers for ``rows``: every triangle whose centroid lies within d + r_max (in place).

        Pairs whose own bound ``|p - c_t| - r_t`` cannot beat the current distance are dropped before the exact
        point-triangle test.
        """
        for s0 in range(0, len(rows), 4000):
            r = rows[s0:s0 + 4000]
            lists = self.tree.query_ball_point(q[r], d[r] + self.r_max + 1e-9)
            counts = np.fromiter((len(x) for x in lists), np.int64, len(lists))
            tri = np.concatenate([np.asarray(x, np.int64) for x in lists]) if counts.sum() else np.zeros(0, np.int64)
            owner = np.repeat(np.arange(len(r)), counts)
            qq = q[r][owner]
            lower = np.linalg.norm(qq - self.centroids[tri], axis=1) - self.radii[tri]
            keep = lower < d[r][owner]
            tri, owner, qq = tri[keep], owner[keep], qq[keep]
            if len(tri) == 0:
                continue
            for c0 in range(0, len(tri), max_pairs):
                tt, oo, pp = tri[c0:c0 + max_pairs], owner[c0:c0 + max_pairs], qq[c0:c0 + max_pairs]
                f = self.f[tt]
                c, ba = closest_point_on_triangles(pp, self.v[f[:, 0]], self.v[f[:, 1]], self.v[f[:, 2]])
                dd = np.linalg.norm(c - pp, axis=1)
                order = np.lexsort((dd, oo))  # by owner, then distance
                first = order[np.r_[0, np.nonzero(np.diff(oo[order]))[0] + 1]]
                o = oo[first]
                better = dd[first] < d[r[o]]
                sel, rr = first[better], r[o[better]]
                d[rr], cl[rr], t[rr], b[rr] = dd[sel], c[sel], tt[sel], ba[sel]

    def query(self, points: np.ndarray, chunk: int = 20000) -> ClosestPoints:
        p = np.asarray(points, np.float64)
        N = len(p)
        out_d, out_p = np.empty(N), np.empty((N, 3))
        out_t, out_b = np.empty(N, np.int64), np.empty((N, 3))
        for s in range(0, N, chunk):
            q = p[s:s + chunk]
            d, cl, t, b, bad = self._candidates(q, np.arange(len(q)), self.k)
            # exactness: a triangle outside the candidates has centroid distance >= the k-th one, hence surface
            # distance >= that - r_max; rows where the bound does not beat d are redone with more candidates
            if len(bad):
                self._refine(q, bad, d, cl, t, b)
            out_d[s:s + chunk], out_p[s:s + chunk], out_t[s:s + chunk], out_b[s:s + chunk] = d, cl, t, b
        return ClosestPoints(out_d, out_p, out_t, out_b)


def closest_points_on_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> ClosestPoints:
    """Exact closest points on the mesh (vertices [V, 3], faces [F, 3]) to ``points`` [N, 3]."""
    return MeshQuery(vertices, faces).query(points)


# ---------------------------------------------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------------------------------------------
def point_to_point(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[N] distance from each source point to its nearest target point."""
    return cKDTree(np.asarray(target, np.float64)).query(np.asarray(source, np.float64))[0]


def symmetric_point_to_point(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of the two directed mean nearest-neighbour distances (a->b and b->a), mm."""
    return 0.5 * (float(point_to_point(a, b).mean()) + float(point_to_point(b, a).mean()))


def point_to_plane(points: np.ndarray, vertices: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """[N] |(p - v_j) . n_j| with v_j the vertex nearest to each point p (vertices, normals [V, 3])."""
    p = np.asarray(points, np.float64)
    v = np.asarray(vertices, np.float64)
    j = cKDTree(v).query(p)[1]
    return np.abs(((p - v[j]) * np.asarray(normals, np.float64)[j]).sum(1))


def point_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[N] exact distance from each point to the mesh surface."""
    return closest_points_on_mesh(points, vertices, faces).distances


def albedo_error(colours: np.ndarray, albedo: np.ndarray) -> float:
    """Relative error of colours [N, 3] (e.g. a texture read at the vertices) against a true albedo [N, 3]:
    ``rms(s * colours - albedo) / rms(albedo)`` after the best scale ``s`` per channel, since a fit's albedo and
    lighting share a scale (only their product is seen). Shading left in the colours counts in it; the albedo's
    own variation does not."""
    c, a = np.asarray(colours, np.float64), np.asarray(albedo, np.float64)
    s = (c * a).sum(0) / np.maximum((c * c).sum(0), 1e-12)
    return float(np.sqrt(((s * c - a) ** 2).mean()) / max(np.sqrt((a ** 2).mean()), 1e-12))


def summarize(values) -> dict:
    """{"mean", "std", "median", "n"} of the finite values (NaN when there are none)."""
    a = np.asarray(values, np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(np.median(a)), "n": int(a.size)}


# ---------------------------------------------------------------------------------------------------------------
# protocols
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ShapeError:
    """The errors of one predicted shape against its ground truth, after alignment (mm)."""

    protocol: str
    point_to_plane: float  # mean |scan point to tangent plane of nearest predicted vertex|
    point_to_point: float  # symmetric mean nearest-neighbour distance
    scan_to_mesh: dict  # summarize() of scan point -> predicted surface distances
    alignment: AlignmentResult
    n_scan_points: int
    vertex_errors: np.ndarray = field(repr=False)  # [V] aligned predicted vertex -> ground truth, NaN outside crop

    @property
    def transform(self) -> Similarity:
        return self.alignment.transform

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "point_to_plane_mm": float(self.point_to_plane),
                "point_to_point_mm": float(self.point_to_point),
                "scan_to_mesh_mm": self.scan_to_mesh, "alignment": self.alignment.to_dict(),
                "n_scan_points": int(self.n_scan_points)}


def _check_mesh(name, v, f):
    v = np.asarray(v, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
        raise InputError(f"{name} vertices: expected [V, 3] with V >= 3, got {list(v.shape)}")
    if f is not None:
        f = np.asarray(f, np.int64)
        if f.ndim != 2 or f.shape[1] != 3:
            raise InputError(f"{name} faces: expected [F, 3], got {list(f.shape)}")
        if len(f) and (f.min() < 0 or f.max() >= len(v)):
            raise InputError(f"{name} faces: index outside 0..{len(v) - 1}")
    return v, f


def _vertex_errors(pred_aligned, keep, gt_points, gt_faces_query):
    err = np.full(len(pred_aligned), np.nan)
    if keep.any():
        if gt_faces_query is not None:
            err[keep] = gt_faces_query.query(pred_aligned[keep]).distances
        else:
            err[keep] = point_to_point(pred_aligned[keep], gt_points)
    return err


def micc_protocol(pred_vertices: np.ndarray, pred_faces: np.ndarray, gt_vertices: np.ndarray,
                  gt_faces: np.ndarray | None = None, nose_tip: np.ndarray | None = None,
                  pred_landmarks: np.ndarray | None = None, gt_landmarks: np.ndarray | None = None,
                  radius: float = CROP_RADIUS_MM, with_scale: bool = True, tol: float = 1e-3,
                  max_iter: int = 100) -> ShapeError:
    """MICC-style shape error of a prediction (pred [V, 3], faces [F, 3]) against ground truth gt [M, 3].

    ``nose_tip`` [3] of the ground truth (estimated with :func:`estimate_nose_tip` when None); landmark pairs
    ``pred_landmarks`` / ``gt_landmarks`` [K, 3] (NaN rows ignored) initialise ICP when both are given.
    """
    pv, pf = _check_mesh("prediction", pred_vertices, pred_faces)
    gv, gf = _check_mesh("ground truth", gt_vertices, gt_faces)
    nose = estimate_nose_tip(gv) if nose_tip is None else np.asarray(nose_tip, np.float64).reshape(3)
    keep_gt = crop_mask(gv, nose, radius)
    if keep_gt.sum() < 3:
        raise InputError(f"ground truth: fewer than 3 points within {radius} mm of the nose tip")
    gt_c = gv[keep_gt]
    use_lm = pred_landmarks is not None and gt_landmarks is not None
    al = icp(pv, gt_c, source_landmarks=pred_landmarks if use_lm else None,
             target_landmarks=gt_landmarks if use_lm else None, with_scale=with_scale, tol=tol,
             max_iter=max_iter, direction="target")
    pa = al.transform.apply(pv)
    keep_p = crop_mask(pa, nose, radius)
    if keep_p.sum() < 3:
        keep_p[:] = True
    normals = vertex_normals(pa, pf)
    p2plane = point_to_plane(gt_c, pa, normals)
    p2p = symmetric_point_to_point(gt_c, pa[keep_p])
    s2m = MeshQuery(pa, pf).query(gt_c).distances
    verr = _vertex_errors(pa, keep_p, gt_c, _cropped_query(gv, gf, keep_gt))
    return ShapeError("micc", float(p2plane.mean()), p2p, summarize(s2m), al, len(gt_c), verr)


def _cropped_query(verts: np.ndarray, faces: np.ndarray | None, keep: np.ndarray) -> MeshQuery | None:
    """A closest-point query on the triangles whose vertices all lie in the crop ``keep``; None without any."""
    if faces is None or not len(faces):
        return None
    fk = faces[keep[faces].all(1)]
    return MeshQuery(verts, fk) if len(fk) else None


def now_protocol(pred_vertices: np.ndarray, pred_faces: np.ndarray, pred_landmarks: np.ndarray,
                 scan_vertices: np.ndarray, scan_landmarks: np.ndarray, scan_faces: np.ndarray | None = None,
                 nose_tip: np.ndarray | None = None, radius: float | None = None, with_scale: bool = True,
                 tol: float = 1e-3, max_iter: int = 50) -> ShapeError:
    """NoW-style scan-to-mesh error. pred_landmarks / scan_landmarks [7, 3] in :data:`NOW_LANDMARKS_68` order.

    The scan is cropped to ``radius`` mm around ``nose_tip`` (default: the 5th scan landmark) when ``radius``
    is given; NoW's own scans come pre-cropped, so the default is no crop.
    """
    pv, pf = _check_mesh("prediction", pred_vertices, pred_faces)
    sv, sf = _check_mesh("scan", scan_vertices, scan_faces)
    pl = np.asarray(pred_landmarks, np.float64)
    sl = np.asarray(scan_landmarks, np.float64)
    if pl.shape != sl.shape or pl.ndim != 2 or pl.shape[1] != 3:
        raise InputError(f"now protocol: landmark sets must both be [K, 3], got {list(pl.shape)} and {list(sl.shape)}")
    keep = np.ones(len(sv), bool)
    nose = sl[4] if nose_tip is None and len(sl) == 7 else nose_tip
    if radius is not None:
        if nose is None:
            nose = estimate_nose_tip(sv)
        keep = crop_mask(sv, nose, radius)
    pts = sv[keep]
    al = align_landmarks_then_surface(pv, pf, pl, pts, sl, with_scale=with_scale, tol=tol, max_iter=max_iter)
    pa = al.transform.apply(pv)
    s2m = MeshQuery(pa, pf).query(pts).distances
    p2plane = point_to_plane(pts, pa, vertex_normals(pa, pf))
    keep_p = crop_mask(pa, nose, radius) if (radius is not None and nose is not None) else np.ones(len(pa), bool)
    p2p = symmetric_point_to_point(pts, pa[keep_p])
    verr = _vertex_errors(pa, keep_p, pts, _cropped_query(sv, sf, keep))
    return ShapeError("now", float(p2plane.mean()), p2p, summarize(s2m), al, len(pts), verr)
