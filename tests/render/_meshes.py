"""Small synthetic meshes for the render tests."""

from __future__ import annotations

import math

import torch


def quad_clip(x0, y0, x1, y1, w, dtype=torch.float64, near=10.0, far=10000.0):
    """An axis-aligned quad [x0, x1] x [y0, y1] in NDC at camera depth w (clip z as
    :func:`redafit.render.camera.to_clip` makes it): clip [4, 4], tris [2, 3]."""
    pts = torch.tensor([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=dtype)
    zc = w * (far + near) / (far - near) - 2 * far * near / (far - near)
    clip = torch.cat([pts * w, torch.full((4, 1), zc, dtype=dtype), torch.full((4, 1), float(w), dtype=dtype)], -1)
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return clip, tris


def uv_sphere(n_lat=6, n_lon=8, radius=1.0):
    """A small closed UV sphere: verts [V, 3], tris [F, 3] (counter-clockwise seen from outside)."""
    verts = [[0.0, radius, 0.0]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append([radius * math.sin(th) * math.sin(ph), radius * math.cos(th),
                          radius * math.sin(th) * math.cos(ph)])
    verts.append([0.0, -radius, 0.0])
    tris = []
    ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)
    for j in range(n_lon):
        tris.append([0, ring(1, j), ring(1, j + 1)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            tris += [[a, c, d], [a, d, b]]
    last = len(verts) - 1
    for j in range(n_lon):
        tris.append([last, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(tris)


