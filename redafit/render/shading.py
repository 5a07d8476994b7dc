"""Lambertian shading under spherical-harmonics lighting (pure functions).

Lighting model: ``colour = albedo * sum_k sh[k] * sh_basis(n)[k]`` per colour channel, where ``sh_basis`` is the
real 2nd-order spherical-harmonics basis (9 functions) *with the Lambertian convolution constants folded in*
(Ramamoorthi & Hanrahan 2001): band l is scaled by ``A_0 = pi``, ``A_1 = 2 pi / 3``, ``A_2 = pi / 4``. So ``sh``
holds the SH coefficients of the incoming radiance and the product is the irradiance; a directional light of
intensity I from unit direction d has coefficients ``I * Y(d)`` (the basis without the constants), see
:func:`directional_sh`. Basis order (x, y, z = unit normal):

====  =========================  ==================================
k     function                   constant
====  =========================  ==================================
0     1                          pi * 1/(2 sqrt(pi))
1-3   y, z, x                    2pi/3 * sqrt(3)/(2 sqrt(pi))
4     x y                        pi/4 * sqrt(15)/(2 sqrt(pi))
5     y z                        pi/4 * sqrt(15)/(2 sqrt(pi))
6     3 z^2 - 1                  pi/4 * sqrt(5)/(4 sqrt(pi))
7     x z                        pi/4 * sqrt(15)/(2 sqrt(pi))
8     x^2 - y^2                  pi/4 * sqrt(15)/(4 sqrt(pi))
====  =========================  ==================================

Normals and light directions are in the **camera frame** (OpenCV: z forward): a surface facing the camera has
normal ~ (0, 0, -1), and a light "from the camera" has direction d = (0, 0, -1) (pointing from the surface to the
light).
"""

from __future__ import annotations

import math

import torch

from redafit.errors import InputError

_C0 = 1.0 / (2.0 * math.sqrt(math.pi))
_C1 = math.sqrt(3.0) / (2.0 * math.sqrt(math.pi))
_C2 = math.sqrt(15.0) / (2.0 * math.sqrt(math.pi))
_C3 = math.sqrt(5.0) / (4.0 * math.sqrt(math.pi))
_C4 = math.sqrt(15.0) / (4.0 * math.sqrt(math.pi))
_A0, _A1, _A2 = math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0


def vertex_normals(verts: torch.Tensor, tris: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals [B, V, 3] of verts [B, V, 3] and tris [F, 3] (counter-clockwise =
    outward). Vertices in no triangle get a zero normal."""
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise InputError(f"verts: expected shape [B, V, 3], got {list(verts.shape)}")
    tris = tris.to(verts.device).long()
    v0, v1, v2 = verts[:, tris[:, 0]], verts[:, tris[:, 1]], verts[:, tris[:, 2]]
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)  # [B, F, 3], length = 2 * area
    B, V = verts.shape[:2]
    idx = (tris.reshape(1, -1) + V * torch.arange(B, device=verts.device)[:, None]).reshape(-1)  # [B*F*3]
    n = verts.new_zeros(B * V, 3).index_add(0, idx, fn.repeat_interleave(3, dim=1).reshape(-1, 3)).view(B, V, 3)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(eps)


def _basis_raw(n: torch.Tensor) -> torch.Tensor:
    """Real SH basis Y_k(n) [..., 9] without the Lambertian constants."""
    x, y, z = n.unbind(-1)
    one = torch.ones_like(x)
    return torch.stack([
        _C0 * one, _C1 * y, _C1 * z, _C1 * x,
        _C2 * x * y, _C2 * y * z, _C3 * (3 * z * z - 1), _C2 * x * z, _C4 * (x * x - y * y),
    ], -1)


_BAND = torch.tensor([_A0, _A1, _A1, _A1, _A2, _A2, _A2, _A2, _A2])


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Irradiance SH basis [..., 9] of unit normals [..., 3] (Lambertian constants folded in; see module doc)."""
    if normals.shape[-1] != 3:
        raise InputError(f"normals: expected shape [..., 3], got {list(normals.shape)}")
    return _basis_raw(normals) * _BAND.to(normals)


def directional_sh(direction=(0.0, 0.0, -1.0), intensity: float = 1.0, ambient: float = 0.0) -> torch.Tensor:
    """SH coefficients [9, 3] (grey) of a directional light plus an ambient term.

    ``ambient`` is the irradiance it adds everywhere; a normal facing the light receives ``ambient + 1.0625 *
    intensity`` (the order-2 approximation of max(cos, 0) peaks at 1.0625).
    """
    d = torch.as_tensor(direction, dtype=torch.float32)
    d = d / d.norm()
    coeffs = intensity * _basis_raw(d)
    coeffs[0] = coeffs[0] + ambient / (_A0 * _C0)
    return coeffs[:, None].repeat(1, 3)


# Default lighting: ambient 0.6 plus a light from the camera scaled so a surface facing the camera gets 1.0.
DEFAULT_SH = directional_sh((0.0, 0.0, -1.0), intensity=0.4 / 1.0625, ambient=0.6)  # [9, 3]


def default_sh(batch_size: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """:data:`DEFAULT_SH` as [B, 9, 3] (a fresh tensor, safe to optimise)."""
    return DEFAULT_SH.to(device=device, dtype=dtype).unsqueeze(0).repeat(batch_size, 1, 1)


def occluded_basis(normals: torch.Tensor, occlusion: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`sh_basis` [..., 9] with its constant (band-0) function scaled by ``occlusion`` [...] (None: 1)."""
    basis = sh_basis(normals)
    if occlusion is None:
        return basis
    return torch.cat([basis[..., :1] * occlusion.to(basis)[..., None], basis[..., 1:]], -1)


def shade(albedo: torch.Tensor, normals: torch.Tensor, sh: torch.Tensor,
          occlusion: torch.Tensor | None = None) -> torch.Tensor:
    """Lambertian colour [..., 3] = albedo [..., 3] * irradiance(normals [..., 3]) under sh [B, 9, 3] or [9, 3].

    The leading dimension of ``albedo``/``normals`` is the batch B when ``sh`` is batched (e.g. per-vertex
    [B, V, 3] or per-pixel [B, H, W, 3]). ``occlusion`` (ambient occlusion in [0, 1], shaped like ``normals``
    without its last dimension, or broadcastable to that) scales the constant (band-0, ambient) part of the
    irradiance: the share of a uniform sky each point sees (:mod:`redafit.render.occlusion`).
    """
    if sh.ndim == 2:
        sh = sh.unsqueeze(0)
    if sh.ndim != 3 or sh.shape[1:] != (9, 3):
        raise InputError(f"sh: expected shape [B, 9, 3], got {list(sh.shape)}")
    if albedo.shape[-1] != 3 or normals.shape[-1] != 3:
        raise InputError(f"albedo/normals: expected [..., 3], got {list(albedo.shape)} and {list(normals.shape)}")
    basis = occluded_basis(normals, occlusion)  # [B, ..., 9]
    B = sh.shape[0]
    if basis.ndim < 2 or (basis.shape[0] != B and B != 1):
        raise InputError(f"normals: leading (batch) dimension must be {B}, got {list(normals.shape)}")
    mid = basis.ndim - 2
    shb = sh.reshape(sh.shape[0], *([1] * mid), 9, 3)
    irr = (basis.unsqueeze(-1) * shb).sum(-2)  # [B, ..., 3]
    return albedo * irr


def sh_light_direction(sh: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit direction [B, 3] (camera frame, surface to light) of the SH lighting's linear band, luminance-weighted
    over the colour channels: for one directional light, its direction (band-1 coefficients are ``I Y_1(d)``,
    i.e. proportional to (d_y, d_z, d_x)). A lighting with no linear part (pure ambient) gets the direction of the
    camera, (0, 0, -1)."""
    if sh.ndim == 2:
        sh = sh.unsqueeze(0)
    lin = sh[:, 1:4].mean(-1)  # [B, 3] in the basis order (y, z, x)
    d = torch.stack([lin[:, 2], lin[:, 0], lin[:, 1]], -1)
    d = d + eps * d.new_tensor([0.0, 0.0, -1.0])
    return d / d.norm(dim=-1, keepdim=True)


def specular(normals: torch.Tensor, view: torch.Tensor, sh: torch.Tensor, strength: torch.Tensor,
             exponent: float) -> torch.Tensor:
    """A Blinn-Phong highlight [B, ..., 3] of the SH lighting's dominant light (:func:`sh_light_direction`):
    ``strength * tint * max(n . h, 0)^exponent`` on the side the light reaches (n . d > 0), h the half vector of
    the light and ``view`` (unit, surface to camera), ``tint`` the lighting's colour (its constant band per
    channel over their mean). normals / view [B, ..., 3], strength [B] or [B, 1] (>= 0)."""
    if sh.ndim == 2:
        sh = sh.unsqueeze(0)
    B = sh.shape[0]
    mid = normals.ndim - 2
    d = sh_light_direction(sh).reshape(B, *([1] * mid), 3)
    h = d + view
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    lit = ((normals * d).sum(-1, keepdim=True) > 0).to(normals.dtype)
    s = (normals * h).sum(-1, keepdim=True).clamp_min(0.0) ** exponent * lit  # [B, ..., 1]
    c0 = sh[:, 0]  # [B, 3]
    tint = (c0 / c0.mean(-1, keepdim=True).clamp_min(1e-6)).reshape(B, *([1] * mid), 3)
    return strength.reshape(B, *([1] * (mid + 1))) * tint * s
