"""Fixtures for the evaluation tests: small meshes and a face model (real ICT when available)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED


def _ellipsoid_mesh(n_lat: int = 24, n_lon: int = 48, radii=(70.0, 90.0, 60.0)):
    """A closed ellipsoid (mm) with outward, counter-clockwise triangles: vertices [V, 3], faces [F, 3]."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    pts = np.stack([np.sin(la) * np.cos(lo), np.cos(la), np.sin(la) * np.sin(lo)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 1, 0]], pts, [[0, -1, 0]]]) * np.asarray(radii)
    top, bottom = 0, len(v) - 1
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)
    f = []
    for j in range(n_lon):
        f.append([top, idx(0, j + 1), idx(0, j)])
        f.append([bottom, idx(n_lat - 2, j), idx(n_lat - 2, j + 1)])
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j), idx(i + 1, j + 1)
            f += [[a, b, d], [a, d, c]]
    f = np.asarray(f, np.int64)
    # orient outward
    cen = v[f].mean(1)
    nrm = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    flip = (nrm * cen).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    return v, f


@pytest.fixture(scope="session")
def ellipsoid():
    return _ellipsoid_mesh()


def _model_from_npz(path):
    from redafit.model.face_model import FaceModel, ModelInfo

    d = np.load(path)
    s = 10.0  # cm -> mm
    lid = d["landmarks_multipie68"].astype(np.int64)
    return FaceModel(d["neutral"] * s, d["identity_basis"] * s, d["expression_basis"] * s, d["triangles"],
                     uv=d["uv"], uv_triangles=d["uv_triangles"], landmark_ids=lid,
                     contour_right=d["jawline_right_extended"], contour_left=d["jawline_left_extended"],
                     expression_names=[str(x) for x in d["expression_names"]],
                     info=ModelInfo(name="ict", expression_prior="unit", units_in_file="cm"))


@pytest.fixture(scope="session")
def face_model():
    """The ICT face model in mm: through the model store when it exists, else straight from the shared npz."""
    path = SHARED / "models" / "ict-face" / "ict_face.npz"
    if not path.exists():
        pytest.skip(f"shared ICT model not found at {path}")
    try:
        from redafit.model.store import load_model
    except ImportError:
        return _model_from_npz(path)
    return load_model(str(path))
