"""Small synthetic face-like meshes for the format tests (written by the tests in each format's real layout)."""

from __future__ import annotations

import numpy as np


def grid_face(n: int = 6, size_mm: float = 100.0):
    """A bump facing +z: vertices [n*n, 3] in mm and triangles [F, 3] counter-clockwise seen from +z."""
    xs = np.linspace(-size_mm / 2, size_mm / 2, n)
    X, Y = np.meshgrid(xs, xs)  # rows go up in y
    Z = 30.0 * np.exp(-(X**2 + Y**2) / (2 * (size_mm / 4) ** 2))
    verts = np.stack([X, Y, Z], -1).reshape(-1, 3)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
            tris += [[a, b, c], [a, c, d]]  # x right, y up: a->b->c is counter-clockwise seen from +z
    return verts, np.array(tris, dtype=np.int64)


def orthonormal_basis(rows: int, k: int, seed: int = 0) -> np.ndarray:
    """[rows, k] with orthonormal columns."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(rows, k)))
    return q
