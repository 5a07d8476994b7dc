"""Visibility of a distant light: cast shadows and ambient occlusion by shadow maps (numpy in, numpy out).

Both rasterize the mesh from a distant camera along a light direction with :func:`redafit.render.rasterize`
(any backend) and compare each point's depth along the light with the map's:

* :func:`shadow_visibility` - how much of a directional light reaches each point (3 x 3 percentage-closer
  filtering, a depth bias that grows with the surface's slope to the light);
* :func:`ambient_occlusion` - the cosine-weighted share of the sky each vertex sees, over directions spread
  evenly on the sphere;
* :func:`mean_shape_occlusion` - the ambient occlusion of a face model's mean shape, cached per model: the
  fitter's shading scales the ambient part of its lighting by it (:attr:`redafit.fit.FitConfig.occlusion`), so
  the eye sockets, the sides of the nose, the nostrils and the mouth corners are darkened by their own geometry
  instead of by a bent shape or a darker albedo.

The synthetic benchmark's physical shading (:mod:`redafit.eval.synthetic`) uses the first two at higher
resolution on the true shape of each case.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

SHADOW_MAP = 1024  # px, side of a shadow map
SHADOW_BIAS_MM = 1.0  # a point is lit when it lies at most this far behind the shadow map's surface
AO_DIRECTIONS = 32  # sky directions sampled for ambient occlusion
AO_MAP = 512  # px, side of each ambient-occlusion shadow map
FIT_AO_DIRECTIONS = 32  # mean_shape_occlusion: sky directions
FIT_AO_MAP = 256  # mean_shape_occlusion: px per map


def shadow_visibility(vc: np.ndarray, tris: np.ndarray, points: np.ndarray, direction: np.ndarray,
                      normals: np.ndarray | None = None, backend: str = "auto", size: int = SHADOW_MAP) -> np.ndarray:
    """[N] in [0, 1]: how much of the directional light from unit ``direction`` (camera frame, surface to light)
    reaches each camera-frame point [N, 3] (mm) of the mesh ``vc`` [V, 3] / ``tris`` - a shadow map seen from a
    distant camera along the light, 3 x 3 percentage-closer filtered (soft edges of about one map pixel).

    A point counts as lit up to :data:`SHADOW_BIAS_MM` behind the map's surface, plus - given the points' unit
    ``normals`` [N, 3] - two map pixels' worth of the surface's slope towards the light (a surface lit at a grazing
    angle does not shadow itself)."""
    from redafit.render import rasterize
    from redafit.render.camera import Intrinsics, to_clip

    centre = vc.mean(0)
    radius = float(np.linalg.norm(vc - centre, axis=1).max()) * 1.05
    z_axis = -np.asarray(direction, np.float64)
    up = np.array([0.0, 1.0, 0.0]) if abs(z_axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x_axis = np.cross(up, z_axis)
    x_axis /= np.linalg.norm(x_axis)
    R = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis])
    dist = 20.0 * radius  # far away: close to an orthographic view
    to_light = lambda p: (p - centre) @ R.T + np.array([0.0, 0.0, dist])  # noqa: E731
    f = 0.5 * size * dist / radius
    K = Intrinsics(f, f, size / 2.0, size / 2.0, size, size)
    vl = torch.tensor(to_light(vc), dtype=torch.float32)[None]
    depth = rasterize(to_clip(vl, K, near=dist - 2 * radius, far=dist + 2 * radius), torch.as_tensor(tris).long(),
                      (size, size), backend=backend).depth[0].cpu().double().numpy()
    depth[depth <= 0] = np.inf  # nothing there: lit
    pl = to_light(points)
    u = pl[:, 0] * f / pl[:, 2] + size / 2.0 - 0.5
    v = pl[:, 1] * f / pl[:, 2] + size / 2.0 - 0.5
    bias = np.full(len(points), SHADOW_BIAS_MM)
    if normals is not None:
        c = np.clip(np.abs(np.asarray(normals) @ np.asarray(direction, np.float64)), 0.1, 1.0)
        bias += 2.0 * (2.0 * radius / size) * np.sqrt(1.0 - c * c) / c
    lit = np.zeros(len(points))
    for du, dv in itertools.product((-1, 0, 1), repeat=2):
        iu = np.clip(np.rint(u + du).astype(np.int64), 0, size - 1)
        iv = np.clip(np.rint(v + dv).astype(np.int64), 0, size - 1)
        lit += pl[:, 2] <= depth[iv, iu] + bias
    return lit / 9.0


def sphere_directions(n: int) -> np.ndarray:
    """[n, 3] unit directions spread evenly over the sphere (a Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5 ** 0.5) * k
    return np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)


def ambient_occlusion(vc: np.ndarray, tris: np.ndarray, normals: np.ndarray, n_dirs: int = AO_DIRECTIONS,
                      backend: str = "auto", size: int = AO_MAP) -> np.ndarray:
    """[V] in [0, 1]: the cosine-weighted share of the sky each vertex of ``vc`` [V, 3] / ``tris`` (unit vertex
    ``normals`` [V, 3]) sees, from :func:`shadow_visibility` along ``n_dirs`` directions spread evenly over the
    sphere (:func:`sphere_directions`). Vertices facing no sampled direction get 1."""
    num = np.zeros(len(vc))
    den = np.zeros(len(vc))
    for d in sphere_directions(n_dirs):
        w = np.clip(normals @ d, 0.0, None)
        if not (w > 0).any():
            continue
        num += w * shadow_visibility(vc, tris, vc, d, normals, backend=backend, size=size)
        den += w
    return np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)


def mean_shape_occlusion(model, n_dirs: int = FIT_AO_DIRECTIONS, size: int = FIT_AO_MAP) -> torch.Tensor:
    """[V] float32 on the model's device: :func:`ambient_occlusion` of the model's mean shape (model frame, its own
    triangles). Computed once per model object and settings (about 0.7 s for the ICT face on 2 CPU cores at the
    defaults; :func:`redafit.model.face_model.derived_cache`) and recomputed if the model's buffers change."""
    from redafit.model.face_model import derived_cache
    from redafit.render.shading import vertex_normals

    entry = derived_cache(model)
    key = ("mean_shape_occlusion", int(n_dirs), int(size))
    if key not in entry:
        vm = model.mean.detach().double().cpu()
        tris = model.triangles.detach().cpu().long()
        normals = vertex_normals(vm[None], tris)[0].numpy()
        ao = ambient_occlusion(vm.numpy(), tris.numpy(), normals, n_dirs=n_dirs, size=size)
        entry[key] = torch.as_tensor(ao, dtype=torch.float32, device=model.mean.device)
    return entry[key]
