"""shading: vertex normals, SH basis (Lambertian constants), shade, default lighting."""

from __future__ import annotations

import math

import pytest
import torch

from redafit.errors import InputError
from redafit.render.shading import (
    DEFAULT_SH,
    default_sh,
    directional_sh,
    occluded_basis,
    sh_basis,
    shade,
    sh_light_direction,
    specular,
    vertex_normals,
)

from ._meshes import uv_sphere


def test_vertex_normals_plane_and_sphere():
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    n = vertex_normals(verts, torch.tensor([[0, 1, 2], [0, 2, 3]]))
    assert n.shape == (1, 4, 3) and torch.allclose(n, torch.tensor([0.0, 0.0, 1.0]).expand(1, 4, 3))
    v, t = uv_sphere(8, 12)
    n = vertex_normals(v[None], t)[0]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(v)), atol=1e-5)
    assert (n * v).sum(-1).min() > 0.95  # outward, close to the radial direction


def test_vertex_normals_area_weighted():
    # vertex 0 shared by a big triangle (normal +z) and a small one (normal +x): the big one dominates
    verts = torch.tensor([[[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0.1, 0], [0, 0, 0.1]]])
    n = vertex_normals(verts, torch.tensor([[0, 1, 2], [0, 3, 4]]))[0, 0]
    assert n[2] > 0.99 and n[0] > 0


def test_sh_basis_constants():
    n = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    b = sh_basis(n)
    assert b.shape == (2, 9)
    assert b[0, 0].item() == pytest.approx(math.pi / (2 * math.sqrt(math.pi)))  # A0 * Y00
    assert b[0, 2].item() == pytest.approx(2 * math.pi / 3 * math.sqrt(3) / (2 * math.sqrt(math.pi)))
    assert b[0, 6].item() == pytest.approx(math.pi / 4 * math.sqrt(5) / (4 * math.sqrt(math.pi)) * 2)
    assert b[1, 8].item() == pytest.approx(math.pi / 4 * math.sqrt(15) / (4 * math.sqrt(math.pi)))
    with pytest.raises(InputError):
        sh_basis(torch.zeros(4, 2))


def test_directional_light_irradiance_follows_cosine():
    sh = directional_sh((0.0, 0.0, -1.0), intensity=1.0)
    angles = torch.linspace(0, math.pi / 2, 7)
    n = torch.stack([torch.sin(angles), torch.zeros(7), -torch.cos(angles)], -1)
    irr = shade(torch.ones(1, 7, 3), n[None], sh[None])[0, :, 0]
    assert irr[0].item() == pytest.approx(1.0625, abs=1e-4)
    assert torch.all(irr[1:] < irr[:-1])  # decreasing with the angle
    assert (irr - torch.cos(angles)).abs().max() < 0.1  # order-2 approximation of the clamped cosine


def test_occlusion_scales_the_ambient_light_only():
    """``occlusion`` o scales the constant part of the irradiance: under an ambient light a alone a point shades
    to albedo * a * o; a directional light's cosine lobe above its own constant part is left as it is."""
    n = torch.nn.functional.normalize(torch.randn(1, 50, 3), dim=-1)
    o = torch.rand(1, 50)
    albedo = torch.rand(1, 50, 3)
    ambient = directional_sh(intensity=0.0, ambient=0.7)
    torch.testing.assert_close(shade(albedo, n, ambient[None], occlusion=o), albedo * 0.7 * o[..., None])
    light = directional_sh((0.3, -0.2, -0.9), intensity=1.0)
    lit, open_ = shade(albedo, n, light[None], occlusion=o), shade(albedo, n, light[None])
    band0 = albedo * (sh_basis(n)[..., :1] * light[None, None, 0])  # the light's constant part
    torch.testing.assert_close(lit, open_ - band0 * (1 - o[..., None]))
    torch.testing.assert_close(shade(albedo, n, light[None], occlusion=torch.ones(50)), open_)
    assert torch.equal(occluded_basis(n), sh_basis(n))


def test_default_sh_frontal_is_white_and_ambient_elsewhere():
    assert DEFAULT_SH.shape == (9, 3)
    sh = default_sh(2)
    assert sh.shape == (2, 9, 3)
    n = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]).expand(2, 2, 3)
    out = shade(torch.full((2, 2, 3), 0.5), n, sh)
    assert out.shape == (2, 2, 3)
    assert torch.allclose(out[:, 0], torch.full((2, 3), 0.5), atol=1e-5)  # facing the camera: albedo
    assert (out[:, 1] < 0.5 * 0.7).all()  # facing away: mostly ambient


def test_shade_image_shapes_and_errors():
    img = shade(torch.rand(2, 4, 5, 3), torch.nn.functional.normalize(torch.randn(2, 4, 5, 3), dim=-1),
                default_sh(2))
    assert img.shape == (2, 4, 5, 3)
    with pytest.raises(InputError):
        shade(torch.rand(2, 4, 3), torch.rand(2, 4, 3), torch.rand(2, 4, 3))
    with pytest.raises(InputError):
        shade(torch.rand(3, 4, 3), torch.rand(3, 4, 3), torch.rand(2, 9, 3))


def test_shade_gradients():
    alb = torch.rand(1, 3, 3, dtype=torch.float64, requires_grad=True)
    nrm = torch.nn.functional.normalize(torch.randn(1, 3, 3, dtype=torch.float64), dim=-1).requires_grad_()
    sh = torch.rand(1, 9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(shade, (alb, nrm, sh))


def test_sh_light_direction_recovers_a_directional_light():
    for d in [(0.0, 0.0, -1.0), (0.6, -0.3, -0.74), (-0.8, 0.1, -0.2)]:
        d = torch.tensor(d) / torch.tensor(d).norm()
        sh = directional_sh(tuple(d.tolist()), intensity=0.5, ambient=0.6)
        sh[:, 0] *= 0.8  # a tint does not move the direction
        assert torch.allclose(sh_light_direction(sh[None])[0], d, atol=1e-3)
    ambient_only = directional_sh((1.0, 0.0, 0.0), intensity=0.0, ambient=0.6)
    assert torch.allclose(sh_light_direction(ambient_only), torch.tensor([[0.0, 0.0, -1.0]]))


def test_specular_is_a_blinn_phong_lobe_of_the_dominant_light():
    """Light and camera straight ahead: the half vector is the view direction, so a normal tilted by a gets
    strength * cos(a)^p; normals the light does not reach get nothing; the lighting's colour tints it."""
    sh = directional_sh((0.0, 0.0, -1.0), intensity=0.4, ambient=0.6)
    a = torch.linspace(0, 1.2, 7)
    n = torch.stack([torch.sin(a), torch.zeros(7), -torch.cos(a)], -1)[None]
    view = torch.tensor([0.0, 0.0, -1.0]).expand(1, 7, 3)
    s = specular(n, view, sh[None], torch.tensor([0.3]), 20.0)
    assert s.shape == (1, 7, 3)
    assert torch.allclose(s[0, :, 0], 0.3 * torch.cos(a) ** 20, atol=1e-6)
    assert torch.allclose(s[0, :, 0], s[0, :, 1]) and torch.allclose(s[0, :, 1], s[0, :, 2])  # white light
    back = specular(-n, view, sh[None], torch.tensor([0.3]), 20.0)
    assert back.abs().max() == 0
    warm = sh.clone()
    warm[0] *= torch.tensor([1.2, 1.0, 0.8])
    t = specular(n[:, :1], view[:, :1], warm[None], torch.tensor([0.3]), 20.0)[0, 0]
    assert t[0] > t[1] > t[2] and t.mean().item() == pytest.approx(0.3, rel=1e-5)
    # differentiable in the strength and the normals
    k = torch.tensor([0.2], requires_grad=True)
    nn = n.clone().requires_grad_(True)
    specular(nn, view, sh[None], k, 20.0).sum().backward()
    assert k.grad.item() > 0 and torch.isfinite(nn.grad).all() and nn.grad.abs().sum() > 0
