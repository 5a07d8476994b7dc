"""Render-test fixtures: the ICT face as a renderable mesh."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def ict_mesh(request, models_src):
    """The ICT face model (mm). Uses the shared ``ict_model`` fixture; falls back to reading the npz directly
    while the model store is not available."""
    try:
        return request.getfixturevalue("ict_model")
    except (ImportError, AttributeError):
        pass
    from redafit.model import FaceModel

    d = np.load(models_src / "ict-face" / "ict_face.npz")
    return FaceModel(d["neutral"] * 10.0, None, None, d["triangles"], uv=d["uv"], uv_triangles=d["uv_triangles"])
