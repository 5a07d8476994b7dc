"""Golden images of a small mesh (hard fragments, ReDA soft image, shaded z-buffer image).

Stored in ``tests/render/golden/*.npz``; regenerate (after an intended change, and look at the diff) with
``REDAFIT_REGEN_GOLDEN=1 pytest tests/render/test_golden.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from redafit.config import RenderConfig
from redafit.render import interpolate, rasterize, soft_render
from redafit.render.camera import (
    Intrinsics,
    euler_to_r,
    pose_rotation,
    to_clip,
    transform,
)
from redafit.render.shading import default_sh, shade, vertex_normals

from ._meshes import uv_sphere

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("REDAFIT_REGEN_GOLDEN") == "1"
RES = (32, 40)


def _scene():
    verts, tris = uv_sphere(6, 10, radius=50.0)
    verts = verts * torch.tensor([1.0, 1.3, 0.8])  # an ellipsoid, so that depth slices differ
    K = Intrinsics.default(RES[1], RES[0])
    r = euler_to_r(20.0, -10.0, 5.0)[None]
    cam = transform(verts[None], pose_rotation(r), torch.tensor([[5.0, -3.0, 400.0]]))
    colours = (verts - verts.min(0).values) / (verts.max(0).values - verts.min(0).values)
    return cam, to_clip(cam, K), tris, colours


def _render():
    cam, clip, tris, colours = _scene()
    fr = rasterize(clip, tris, RES)
    soft = soft_render(clip, tris, colours, RES, RenderConfig())
    normals = vertex_normals(cam, tris)
    albedo = interpolate(colours, fr, tris)
    n = torch.nn.functional.normalize(interpolate(normals, fr, tris), dim=-1)
    shaded = shade(albedo, n, default_sh(1)) * fr.mask[..., None]
    return {"tri_id": fr.tri_id.numpy().astype(np.int32), "bary": fr.bary.numpy(), "depth": fr.depth.numpy(),
            "soft_image": soft.image.numpy(), "soft_alpha": soft.alpha.numpy(), "shaded": shaded.numpy()}


def test_golden_small_mesh():
    path = GOLDEN / "ellipsoid.npz"
    with torch.no_grad():
        got = _render()
    if REGEN:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **got)
        pytest.skip(f"regenerated {path}")
    if not path.is_file():
        pytest.fail(f"golden file {path} missing; run with REDAFIT_REGEN_GOLDEN=1")
    ref = np.load(path)
    # hard visibility: identical up to a couple of pixels on exactly-tied edges
    assert (ref["tri_id"] != got["tri_id"]).sum() <= 2
    same = ref["tri_id"] == got["tri_id"]
    np.testing.assert_allclose(got["bary"][same], ref["bary"][same], atol=1e-5)
    np.testing.assert_allclose(got["depth"][same], ref["depth"][same], rtol=1e-5)
    for key in ("soft_image", "soft_alpha", "shaded"):
        assert np.abs(got[key] - ref[key]).max() < 1e-4, key
    assert got["tri_id"].max() > 0 and (got["tri_id"] >= 0).mean() > 0.15
