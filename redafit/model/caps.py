"""Caps: surfaces that close a face model's eye and mouth holes in the meshes redafit writes.

Face-area models such as ICT's stop at the eyelid margins and the inner lips (upstream the eyeballs and the mouth
are separate meshes), so a fitted mesh opened in a viewer shows holes where the photo shows eyes, and a see-through
gap where a smile shows teeth. :func:`hole_caps` finds the boundary loops of the model's mesh nearest its eye
landmarks (iBUG points 36-41 and 42-47) and inner-lip landmarks (60-67) and builds for each a cap of two inner
rings and a centre vertex: an eye's bulges out of the loop's plane like the eyeball behind the lids, the mouth's
is recessed into the head like the teeth behind the lips. The caps are *appended*: the model's vertices,
triangles and UV coordinates keep their indices, so a written mesh still corresponds vertex for vertex to the
model; only new vertices, triangles and UVs come after them.

Texture: the model's UV tile has no room for them (ICT's eye holes are slits a few texels high in UV space), so a
textured mesh with caps uses an *atlas*: the model's tile on top, a strip a quarter of its height below with an
island per cap (eye, mouth, eye from left to right; :data:`STRIP`, :meth:`Caps.atlas_uv`: the model's ``v``
becomes ``s + (1 - s) v`` with ``s`` the strip's share of the atlas height, 0.2).

A model with no hole near each eye (a closed mesh, no landmark ids) has no caps: :func:`hole_caps` returns None;
the mouth's cap is made when the model has a hole there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

STRIP = 0.25  # the caps' strip's height, in the model tile's (a 1024 px tile: a 1024 x 1280 atlas)
RINGS = (2.0 / 3.0, 1.0 / 3.0)  # relative radii of the inner rings (the loop is 1, the centre 0)
BULGE = 0.3  # an eye cap's centre over the loop's plane, in rms loop radii (~3 mm for ICT's eyes)
RECESS = 0.15  # the mouth cap's centre behind the loop's centre, in mouth widths (~7 mm for ICT)
_MARGIN = 0.01  # of the atlas width, around each island in the strip
_EYES = (tuple(range(36, 42)), tuple(range(42, 48)))  # iBUG-68 eye contours (the subject's right, left)
_MOUTH = tuple(range(60, 68))  # iBUG-68 inner lip contour
_COLUMNS = {2: ((0.0, 0.5), (0.5, 0.5)), 3: ((0.0, 0.36), (0.36, 0.28), (0.64, 0.36))}  # (u start, width) per island


@dataclass(frozen=True)
class Caps:
    """Caps for a model with V vertices and T UV coordinates (see the module docstring).

    Attributes:
        loops: per cap, the loop's vertex ids [n], ordered along the face triangles' boundary edges.
        kinds: per cap, ``"eye"`` or ``"mouth"``.
        triangles: [Fc, 3] cap triangles; ids >= V are the new vertices (:meth:`vertices` order).
        uv: [Tc, 2] the caps' UV coordinates in the strip (u across the atlas, v in [0, 1] up the strip; one per
            new vertex and per loop vertex).
        uv_triangles: [Fc, 3] into ``uv`` (0-based within the caps' own UVs; offset by T when appended).
    """

    loops: tuple[np.ndarray, ...]
    kinds: tuple[str, ...]
    triangles: np.ndarray
    uv: np.ndarray
    uv_triangles: np.ndarray

    @property
    def n_new(self) -> int:
        """New vertices: two inner rings and a centre per cap."""
        return sum(len(RINGS) * len(loop) + 1 for loop in self.loops)

    def vertices(self, vertices: np.ndarray) -> np.ndarray:
        """The new vertices [n_new, 3] for a mesh of the model (any frame: they follow it rigidly)."""
        v = np.asarray(vertices, np.float64)
        centroid = v.mean(0)
        forward = _forward(v, self.loops, self.kinds, centroid)
        out = []
        for loop, kind in zip(self.loops, self.kinds):
            p = v[loop]
            c = p.mean(0)
            normal, width_axis = _frame(p, c, centroid, kind, forward)
            if kind == "mouth":  # into the head, by a share of the mouth's width (defined however closed the lips)
                height = -RECESS * np.ptp((p - c) @ width_axis)
            else:
                height = BULGE * np.sqrt(((p - c) ** 2).sum(1).mean())
            for r in RINGS:
                out.append(c + r * (p - c) + height * (1 - r * r) * normal)
            out.append((c + height * normal)[None])
        return np.concatenate(out).astype(np.asarray(vertices).dtype, copy=False)

    def morph(self, base: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The new vertices' morph-target delta [n_new, 3] for a delta [V, 3] of the model's vertices at ``base``:
        exact at weight 1 (the caps of ``base + delta``), linear in between, as glTF blends it."""
        return self.vertices(np.asarray(base) + delta) - self.vertices(base)

    def extend(self, vertices, triangles, uv=None, uv_triangles=None, size: int = 1024):
        """A mesh of the model with the caps appended: (vertices, triangles, uv, uv_triangles), the UVs in the atlas
        of a ``size``-wide texture (None when ``uv`` is None)."""
        v = np.concatenate([vertices, self.vertices(vertices)])
        f = np.concatenate([triangles, self.triangles])
        if uv is None:
            return v, f, None, None
        return v, f, self.atlas_uv(uv, size), np.concatenate([uv_triangles, self.uv_triangles + len(uv)])

    def to_arrays(self, prefix: str = "cap_") -> dict:
        """The caps as named arrays (for an ``.npz``; :meth:`from_arrays` reads them back)."""
        out = {f"{prefix}loop{k}": loop.astype(np.int32) for k, loop in enumerate(self.loops)}
        out.update({f"{prefix}kinds": np.array(self.kinds, dtype=str),
                    f"{prefix}triangles": self.triangles.astype(np.int32), f"{prefix}uv": self.uv.astype(np.float32),
                    f"{prefix}uv_triangles": self.uv_triangles.astype(np.int32)})
        return out

    @staticmethod
    def from_arrays(arrays, prefix: str = "cap_") -> Caps | None:
        """The caps stored by :meth:`to_arrays` in ``arrays`` (a dict or an open ``.npz``), or None."""
        if f"{prefix}triangles" not in arrays:
            return None
        loops, k = [], 0
        while f"{prefix}loop{k}" in arrays:
            loops.append(np.asarray(arrays[f"{prefix}loop{k}"], np.int64))
            k += 1
        kinds = tuple(str(k) for k in np.asarray(arrays[f"{prefix}kinds"]).tolist())
        if len(kinds) != len(loops) or not set(kinds) <= {"eye", "mouth"}:
            raise ValueError("cap kinds do not match the loops")
        return Caps(tuple(loops), kinds, np.asarray(arrays[f"{prefix}triangles"], np.int64),
                    np.asarray(arrays[f"{prefix}uv"], np.float32),
                    np.asarray(arrays[f"{prefix}uv_triangles"], np.int64))

    def atlas_uv(self, uv: np.ndarray, size: int) -> np.ndarray:
        """The model's UVs [T, 2] moved to the top of a ``size``-wide atlas (:func:`strip_rows`), then the caps' UVs:
        [T + Tc, 2]."""
        s = strip_rows(size) / (size + strip_rows(size))
        top = np.asarray(uv, np.float64) * [1.0, 1.0 - s] + [0.0, s]
        return np.concatenate([top, self.uv * [1.0, s]]).astype(np.float32)


def strip_rows(size: int) -> int:
    """Rows of the caps' strip under a ``size`` x ``size`` model tile."""
    return max(1, round(size * STRIP))


def _boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """The mesh's boundary loops, each ordered along its triangles' directed edges."""
    tri = np.asarray(triangles, np.int64)
    directed = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    und = np.sort(directed, 1)
    _, inv, counts = np.unique(und, axis=0, return_inverse=True, return_counts=True)
    nxt: dict[int, int] = {}
    starts = defaultdict(int)
    for a, b in directed[counts[inv.reshape(-1)] == 1]:
        nxt[int(a)] = int(b)
        starts[int(a)] += 1
    if any(n > 1 for n in starts.values()):  # a vertex on two holes: not a simple boundary, no caps
        return []
    loops, seen = [], set()
    for s in nxt:
        if s in seen:
            continue
        loop = [s]
        seen.add(s)
        cur = nxt[s]
        while cur != s:
            if cur in seen or cur not in nxt:
                return []
            loop.append(cur)
            seen.add(cur)
            cur = nxt[cur]
        loops.append(np.array(loop, np.int64))
    return loops


def _cap_triangles(loop: np.ndarray, first_new: int) -> np.ndarray:
    """Triangles of one cap: bands between the loop and the inner rings, then a fan to the centre. The loop runs
    along the face triangles' edges, so each band's triangles traverse those edges the other way (consistent
    winding with the face)."""
    n = len(loop)
    rings = [loop] + [first_new + k * n + np.arange(n) for k in range(len(RINGS))]
    centre = first_new + len(RINGS) * n
    out = []
    for outer, inner in zip(rings[:-1], rings[1:]):
        o1, i1 = np.roll(outer, -1), np.roll(inner, -1)
        out += [np.stack([o1, outer, inner], 1), np.stack([o1, inner, i1], 1)]
    last = rings[-1]
    out.append(np.stack([np.roll(last, -1), last, np.full(n, centre)], 1))
    return np.concatenate(out).astype(np.int64)


def _forward(v: np.ndarray, loops, kinds, centroid: np.ndarray) -> np.ndarray:
    """The face's forward direction: the mean of the eye loops' plane normals (out of the head)."""
    f = np.zeros(3)
    for loop, kind in zip(loops, kinds):
        if kind == "eye":
            p = v[loop]
            n = np.linalg.svd(p - p.mean(0), full_matrices=False)[2][2]
            f += n if n @ (p.mean(0) - centroid) > 0 else -n
    return f / max(np.linalg.norm(f), 1e-12)


def _frame(p: np.ndarray, c: np.ndarray, centroid: np.ndarray, kind: str,
           forward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outward normal, width axis) of a cap's loop ``p`` with centre ``c``. An eye's normal is its loop's plane's
    (the lids' opening is a well-defined ellipse); the mouth's is the face's ``forward`` direction, since closed
    lips make its loop a line whose plane is any through it. The width axis is the loop's longest direction across
    the normal."""
    axes = np.linalg.svd(p - c, full_matrices=False)[2]
    normal = axes[2] if kind == "eye" else forward
    if normal @ (c - centroid) < 0:  # out of the head
        normal = -normal
    width = axes[0] - (axes[0] @ normal) * normal
    return normal, width / max(np.linalg.norm(width), 1e-12)


def _cap_uv(mean: np.ndarray, centroid: np.ndarray, forward: np.ndarray, loop: np.ndarray, kind: str,
            new: np.ndarray, column: tuple[float, float]) -> np.ndarray:
    """UVs of a cap's loop and new vertices ([n + n_new, 2]): the mean shape's cap projected on the plane across
    its normal (first axis its width, pointing away from the face's midline, second up), scaled to fit its
    ``column`` (u start, width) of the strip: an eye with the same texel density along u and v, the mouth filling
    it."""
    pts = np.concatenate([mean[loop], new])
    c = mean[loop].mean(0)
    normal, a1 = _frame(mean[loop], c, centroid, kind, forward)
    side = c[0] - centroid[0] if kind == "eye" else 1.0  # eyes: outwards (mirror-symmetric layouts); mouth: +x
    if a1[0] * side < 0:
        a1 = -a1
    a2 = np.cross(normal, a1)
    if a2[1] < 0:  # height axis up (v up)
        a2 = -a2
    x, y = (pts - c) @ a1, (pts - c) @ a2
    u0, width = column
    # in atlas-width units the column is `width` wide and STRIP high
    w, h = width - 2 * _MARGIN, STRIP - 2 * _MARGIN
    kx, ky = w / max(np.ptp(x), 1e-9), h / max(np.ptp(y), 1e-9)
    if kind == "eye":
        kx = ky = min(kx, ky)
    # else the mouth fills its column: the lips of the mean shape are nearly closed, and an open mouth's inside
    # needs the texels across
    u = u0 + width / 2 + (x - (x.max() + x.min()) / 2) * kx
    v = 0.5 + (y - (y.max() + y.min()) / 2) * ky / STRIP
    return np.stack([u, v], 1)


def hole_caps(model) -> Caps | None:
    """The caps of ``model``'s eye (and mouth) holes (cached with the model), or None when it has no eye holes."""
    from redafit.model.face_model import derived_cache

    entry = derived_cache(model)
    if "hole_caps" not in entry:
        entry["hole_caps"] = _build(model)
    return entry["hole_caps"]


def _nearest_loop(centres: np.ndarray, target: np.ndarray, reach: float, taken: list) -> int | None:
    d = np.linalg.norm(centres - target, axis=1)
    k = int(d.argmin())
    return None if d[k] > reach or k in taken else k


def _build(model) -> Caps | None:
    mean = model.mean.detach().cpu().double().numpy().reshape(-1, 3)
    tris = model.triangles.cpu().numpy()
    lm = model.landmark_ids.cpu().numpy()
    loops = _boundary_loops(tris)
    if len(loops) < 3:  # the outline and two eyes at least
        return None
    loops = sorted(loops, key=len)[:-1]  # the longest is the face's outline
    centres = np.array([mean[loop].mean(0) for loop in loops])
    if (lm[list(_EYES[0] + _EYES[1])] < 0).any():
        return None
    eye_centres = [mean[lm[list(ids)]].mean(0) for ids in _EYES]
    reach = 0.35 * np.linalg.norm(eye_centres[0] - eye_centres[1])
    chosen, kinds = [], []
    for ec in eye_centres:
        k = _nearest_loop(centres, ec, reach, chosen)
        if k is None:
            return None
        chosen.append(k)
        kinds.append("eye")
    mouth_ids = lm[list(_MOUTH)]
    if (mouth_ids >= 0).all():
        k = _nearest_loop(centres, mean[mouth_ids].mean(0), reach, chosen)
        if k is not None:
            chosen.append(k)
            kinds.append("mouth")
    # islands from left to right by model x: eye, (mouth,) eye
    order = sorted(range(len(chosen)), key=lambda i: centres[chosen[i]][0])
    cap_loops = tuple(loops[chosen[i]] for i in order)
    cap_kinds = tuple(kinds[i] for i in order)
    V = len(mean)
    centroid = mean.mean(0)
    forward = _forward(mean, cap_loops, cap_kinds, centroid)
    caps = Caps(cap_loops, cap_kinds, np.zeros((0, 3), np.int64), np.zeros((0, 2)), np.zeros((0, 3), np.int64))
    new = caps.vertices(mean)
    tri_parts, uv_parts, uvt_parts = [], [], []
    first, uv_base, new_at = V, 0, 0
    for loop, kind, column in zip(cap_loops, cap_kinds, _COLUMNS[len(cap_loops)]):
        n = len(loop)
        n_new = len(RINGS) * n + 1
        t = _cap_triangles(loop, first)
        tri_parts.append(t)
        uv_parts.append(_cap_uv(mean, centroid, forward, loop, kind, new[new_at:new_at + n_new], column))
        # the cap's own UV ids: the loop's vertices first (0..n-1), then the new vertices (n..)
        local = np.where(t >= V, t - first + n, 0)
        pos = {int(vid): i for i, vid in enumerate(loop)}
        for j in range(3):
            old = t[:, j] < V
            local[old, j] = [pos[int(x)] for x in t[old, j]]
        uvt_parts.append(local + uv_base)
        first += n_new
        new_at += n_new
        uv_base += n + n_new
    return Caps(cap_loops, cap_kinds, np.concatenate(tri_parts), np.concatenate(uv_parts).astype(np.float32),
                np.concatenate(uvt_parts))


def morph_targets(names, basis, base, caps: Caps | None = None) -> dict:
    """{name: position delta [V (+ the caps' new vertices), 3]} of each expression of ``basis`` [Ke, V, 3] over the
    mesh ``base`` [V, 3], for a glTF's morph targets: with ``caps``, their new vertices' deltas appended
    (:meth:`Caps.morph`: exact at weight 1, linear in between)."""
    return {n: d if caps is None else np.concatenate([d, caps.morph(base, d)]) for n, d in zip(names, basis)}
