"""FaceModel forward math: batched, partial coefficients, differentiable, device moves; on a synthetic and a real
model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from redafit.errors import ModelError
from redafit.model import FaceModel, blend

from ._synthetic import grid_face


@pytest.fixture
def small():
    verts, tris = grid_face(n=4)
    V = verts.shape[0]
    g = torch.Generator().manual_seed(0)
    return FaceModel(mean=verts, id_basis=torch.randn(5, V, 3, generator=g),
                     exp_basis=torch.randn(3, V, 3, generator=g),
                     triangles=tris, albedo_mean=np.full((V, 3), 0.5), albedo_basis=torch.randn(2, V, 3, generator=g))


def test_forward_matches_explicit_sum(small):
    a, b = torch.randn(4, 5), torch.randn(4, 3)
    out = small(a, b)
    ref = small.mean + torch.einsum("bk,kvc->bvc", a, small.id_basis) + torch.einsum("bk,kvc->bvc", b, small.exp_basis)
    assert out.shape == (4, small.n_vertices, 3)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_forward_partial_and_missing_coefficients(small):
    a = torch.randn(2, 2)  # only the two leading identity modes
    ref = small.mean + torch.einsum("bk,kvc->bvc", a, small.id_basis[:2])
    torch.testing.assert_close(small(a), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small(None, None, batch_size=3), small.mean.expand(3, -1, -1))
    torch.testing.assert_close(small(torch.zeros(2, 0), torch.zeros(2, 0)), small.mean.expand(2, -1, -1))
    assert blend(small.mean, small.id_basis[:0], torch.zeros(3, 0)).shape == (3, small.n_vertices, 3)


def test_forward_gradients(small):
    m = small.double()
    a = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (a, b), fast_mode=True)
    c = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: m.albedo(c), (c,), fast_mode=True)


def test_device_move(small, device):
    m = small.to(device)
    assert all(b.device.type == device.type for b in m.buffers())
    out = m(torch.randn(2, 5, device=device), torch.randn(2, 3, device=device))
    assert out.device.type == device.type
    assert m.triangles.dtype == torch.long and m.landmark_ids.dtype == torch.long


def test_real_model_forward_batched(ict_model):
    a, b = torch.randn(3, 100) * 0.5, torch.rand(3, 53) * 0.3
    out = ict_model(a, b)
    assert out.shape == (3, 9409, 3) and torch.isfinite(out).all()
    # a sample stays a plausible face: within a few cm of the mean
    assert float((out - ict_model.mean).norm(dim=-1).max()) < 60.0
    # jawOpen moves the chin down (y decreases) by centimetres
    k = ict_model.expression_names.index("jawOpen")
    e = torch.zeros(1, 53)
    e[0, k] = 1.0
    chin = int(ict_model.landmark_ids[8])
    assert float(ict_model(None, e)[0, chin, 1] - ict_model.mean[chin, 1]) < -10.0


def test_constructor_checks():
    verts, tris = grid_face(n=3)
    with pytest.raises(ModelError, match="triangles"):
        FaceModel(mean=verts, id_basis=None, exp_basis=None, triangles=tris + 100)
    with pytest.raises(ModelError, match="68"):
        FaceModel(mean=verts, id_basis=None, exp_basis=None, triangles=tris, landmark_ids=[0, 1])


def test_derived_cache_lives_with_the_model_and_its_buffers(small):
    """Derived data is kept per model object and dropped when a geometry buffer is replaced."""
    from redafit.model.face_model import derived_cache

    derived_cache(small)["x"] = 1
    assert derived_cache(small)["x"] == 1
    other = FaceModel(small.mean, small.id_basis, small.exp_basis, small.triangles)
    assert "x" not in derived_cache(other)
    small.mean = small.mean.clone()
    assert "x" not in derived_cache(small)
