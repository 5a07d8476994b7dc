"""ReDA soft rasterization of vertex attributes and the pyramid loss (Zhu et al., CVPR 2020, Sec. 4.2, Eq. 4-5).

Pipeline of :func:`soft_render` in ``"reda"`` mode (shapes: B batch, K slices, C channels, H x W image):

1. **Depth slices.** The mesh is cut along camera depth into K zones spread evenly over its depth range (per
   batch entry); each triangle goes to the zone of its centroid depth. All K slices are rasterized in **one**
   batched call (slices are batch entries with per-entry triangle masks): B*K hard images.
2. **Slice images.** For each covered pixel of slice k: the attributes (interpolated with the *material*
   barycentrics, i.e. detached), coverage 1 and the normalized depth ``(z - z_min) / (z_max - z_min)``, all
   premultiplied by coverage: ``[M_k A_k, M_k, M_k D_k]``.
3. **Gaussian softening** of every slice image with the kernel G (``kernel_size``, ``sigma``). The blur treats the
   content of each covered pixel as attached to the surface point seen there: its screen position
   ``u_q = proj(sum_i b_i clip_i)`` moves with the vertices, and the piece of surface it stands for changes its
   projected area with its triangle's screen area ``a_f``, so ``soft_k(p) = sum_q G(p - u_q) (a_f / a_f°) V_k(q)``
   (° = the current value, held fixed). The forward value is the plain blur (u_q is the pixel centre, the area
   ratio is 1); the backward adds the transport term ``-V_k(q) (grad G * g)(q) . du_q`` and the area-change
   term, which is what makes silhouettes move: a loss on pixels *outside* a triangle's footprint (within the
   kernel reach) pulls its vertices. (The z-buffer mode has no such terms.)
4. **Aggregation** (Eq. 4-5): per pixel a softmax over slices of ``log M_k - D_k / T`` (softened coverage times
   ``exp(-depth / depth_temperature)``), so the nearer slice dominates where slices overlap, and
   ``image = alpha * sum_k w_k (G * M_k A_k) / (G * M_k)`` with ``alpha = G * U``, the softened union of the
   slices' coverage (the z-buffer mask; its content moves with the nearest surface at each pixel), so seams
   between adjacent slices do not show and the rendered mask matches an observed mask through the same kernel.
   Where the kernel's whole footprint is covered, ``alpha`` is 1 with derivative exactly 0 (``FULL_COVER_EXACT``).
   ``image`` is premultiplied by ``alpha``: it fades to 0 outside the silhouette, like the observed attribute map
   times its mask.
5. **Pyramid**: level 0 is the aggregate, level l+1 = G applied at stride 2 to level l (:func:`pyramid`); the
   observed image goes through the same pyramid (first softened by G once, like the slices).

:func:`reda_loss` sums over levels the mean L1 difference. ``"zbuffer"`` mode (the baseline) renders one hard
image (one slice, no softening, one level) whose gradients reach the vertices only through the barycentrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from redafit.config import RenderConfig
from redafit.errors import InputError
from redafit.render.ops import (
    _check_resolution,
    _check_tris,
    interpolate,
    rasterize,
    texture,
    visible_pixels,
)
from redafit.render.raster_torch import barycentrics

_TINY = 1e-8
_FULL = 1e-4  # coverage within this of 1: the whole kernel footprint is covered (the smallest tap is > 1e-3)
FULL_COVER_EXACT = True


@dataclass(frozen=True)
class SoftImage:
    """A rendered attribute image.

    Attributes:
        image: [B, H, W, C] attribute image premultiplied by coverage (0 outside the silhouette).
        alpha: [B, H, W, 1] (soft) coverage in [0, 1].
    """

    image: torch.Tensor
    alpha: torch.Tensor

    def to(self, *args, **kwargs) -> SoftImage:
        return SoftImage(self.image.to(*args, **kwargs), self.alpha.to(*args, **kwargs))

    def detach(self) -> SoftImage:
        return SoftImage(self.image.detach(), self.alpha.detach())


# ---------------------------------------------------------------------------------------------- Gaussian kernels
def gaussian_kernel(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalized 1D Gaussian [size] (size odd)."""
    r = size // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _kernels(cfg: RenderConfig, dtype, device):
    g = gaussian_kernel(cfg.kernel_size, cfg.sigma, torch.float64)
    t = torch.arange(-(cfg.kernel_size // 2), cfg.kernel_size // 2 + 1, dtype=torch.float64)
    dg = -t / cfg.sigma ** 2 * g  # derivative of the (sampled) Gaussian
    return g.to(dtype=dtype, device=device), dg.to(dtype=dtype, device=device)


def _taps(k) -> list[float]:
    return [float(v) for v in (k.tolist() if isinstance(k, torch.Tensor) else k)]


def _hpass(x: torch.Tensor, k, stride: int = 1) -> torch.Tensor:
    """Correlate along W (last axis) with the 1D kernel k (zero padding), optionally at a stride.

    Shifted multiply-adds: much faster on CPU than single-channel ``conv2d`` for these short kernels."""
    taps = _taps(k)
    r = len(taps) // 2
    W = x.shape[-1]
    Wo = (W - 1) // stride + 1
    xp = F.pad(x, (r, r))
    out = xp[..., 0:(Wo - 1) * stride + 1:stride] * taps[0]
    for i in range(1, len(taps)):
        out = out.add_(xp[..., i:i + (Wo - 1) * stride + 1:stride], alpha=taps[i])
    return out


def _vpass(x: torch.Tensor, k, stride: int = 1) -> torch.Tensor:
    """Correlate along H (second-last axis); see :func:`_hpass`."""
    taps = _taps(k)
    r = len(taps) // 2
    H = x.shape[-2]
    Ho = (H - 1) // stride + 1
    xp = F.pad(x, (0, 0, r, r))
    out = xp[..., 0:(Ho - 1) * stride + 1:stride, :] * taps[0]
    for i in range(1, len(taps)):
        out = out.add_(xp[..., i:i + (Ho - 1) * stride + 1:stride, :], alpha=taps[i])
    return out


def blur(x: torch.Tensor, k: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Separable Gaussian blur of x [N, C, H, W] with the symmetric 1D kernel k (zero padding)."""
    return _vpass(_hpass(x, k, stride), k, stride)


class _MovingBlur(torch.autograd.Function):
    """out = G * V, with the first-order effect of moving each pixel's content by (dx, dy) (zero in the forward
    pass) in the backward pass: d out(p) / d dx_q = -G_x(p - q) V(q)."""

    @staticmethod
    def forward(ctx, V, dx, dy, g, dg):
        ctx.save_for_backward(V, g, dg)
        return blur(V, g)

    @staticmethod
    def backward(ctx, grad):
        V, g, dg = ctx.saved_tensors
        grad = grad.contiguous()
        a = _hpass(grad, g)
        gV = _vpass(a, g) if ctx.needs_input_grad[0] else None
        gdx = gdy = None
        if ctx.needs_input_grad[1]:
            gdx = -(V * _vpass(_hpass(grad, dg), g)).sum(1, keepdim=True)
        if ctx.needs_input_grad[2]:
            gdy = -(V * _vpass(a, dg)).sum(1, keepdim=True)
        return gV, gdx, gdy, None, None


def moving_blur(V: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, cfg: RenderConfig) -> torch.Tensor:
    """Gaussian blur of V [N, C, H, W] whose pixel contents move by (dx, dy) [N, 1, H, W] pixels (see module)."""
    g, dg = _kernels(cfg, V.dtype, V.device)
    return _MovingBlur.apply(V, dx, dy, g, dg)


def moving_blur_reference(V, dx, dy, cfg: RenderConfig) -> torch.Tensor:
    """Autograd reference of :func:`moving_blur` (explicit first-order expansion; for tests)."""
    g, dg = _kernels(cfg, V.dtype, V.device)
    gx = _vpass(_hpass(dx * V, dg), g)
    gy = _vpass(_hpass(dy * V, g), dg)
    # out(p) = sum_t V(p+t) G(-t) - ... ; the derivative kernel is odd, so correlation flips its sign
    return blur(V, g) + gx + gy


# ------------------------------------------------------------------------------------------------- rendering
def depth_slices(clip: torch.Tensor, tris: torch.Tensor, K: int):
    """Slice index [B, F] (0 = nearest) of each triangle's centroid depth, and the depth range (z_min [B],
    z_range [B]) in mm over the vertices in front of the camera."""
    with torch.no_grad():
        w = clip[..., 3].detach()
        ok = w > 1e-6
        zmin = torch.where(ok, w, torch.full_like(w, math.inf)).amin(1)
        zmax = torch.where(ok, w, torch.full_like(w, -math.inf)).amax(1)
        empty = ~torch.isfinite(zmin)
        zmin = torch.where(empty, torch.zeros_like(zmin), zmin)
        zrng = torch.where(empty, torch.ones_like(zmax), (zmax - zmin)).clamp_min(1e-6)
        zc = w[:, tris].mean(-1)  # [B, F]
        sid = ((zc - zmin[:, None]) / zrng[:, None] * K).floor().clamp(0, K - 1).long()
    return sid, zmin, zrng


def _gather_attrs(attrs: torch.Tensor, b: torch.Tensor, vid: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    if attrs.ndim == 2:
        vals = attrs[vid]
    elif attrs.shape[0] == 1:
        vals = attrs[0][vid]
    else:
        vals = attrs[b[:, None], vid]
    return torch.einsum("nk,nkc->nc", bary.to(vals.dtype), vals)


def _sample_texture(tex: torch.Tensor, uvp: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bilinear samples [N, C] of tex [B|1, Ht, Wt, C] at uv [N, 2] of batch entries b [N]."""
    if tex.ndim == 3:
        tex = tex.unsqueeze(0)
    if tex.shape[0] == 1:
        return texture(tex, uvp.view(1, 1, -1, 2))[0, 0]
    out = uvp.new_zeros(uvp.shape[0], tex.shape[-1]).to(tex.dtype)
    for i in range(tex.shape[0]):
        sel = torch.nonzero(b == i).squeeze(1)
        if sel.numel():
            out = out.index_put((sel,), texture(tex[i:i + 1], uvp[sel].view(1, 1, -1, 2))[0, 0])
    return out


def _check_attrs(attrs, B, V):
    if not isinstance(attrs, torch.Tensor) or attrs.ndim not in (2, 3) or attrs.shape[-2] != V or (
            attrs.ndim == 3 and attrs.shape[0] not in (1, B)):
        got = list(attrs.shape) if isinstance(attrs, torch.Tensor) else type(attrs).__name__
        raise InputError(f"attrs: expected shape [B, V, C] or [V, C] with B={B}, V={V}, got {got}")


def soft_render(clip: torch.Tensor, tris: torch.Tensor, attrs: torch.Tensor | None, resolution,
                cfg: RenderConfig | None = None, *,
                textures: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = ()) -> SoftImage:
    """Render per-vertex (and optionally UV-textured) attributes, softly (ReDA) or hard (z-buffer).

    Args:
        clip: [B, V, 4] clip-space vertices.
        tris: [F, 3] long.
        attrs: [B, V, C] or [V, C] per-vertex attributes (colour, one channel per face region, depth…), or None.
        resolution: (H, W).
        cfg: :class:`~redafit.config.RenderConfig` (default: ReDA with the documented defaults).
        textures: extra channels looked up in UV maps: tuples ``(uv [T, 2], uv_tris [F, 3], tex [B|1, Ht, Wt,
            C2])`` (uv in [0, 1], v up), appended after ``attrs``' channels.

    Returns:
        :class:`SoftImage` (image premultiplied by coverage, alpha).
    """
    cfg = cfg or RenderConfig()
    if not isinstance(clip, torch.Tensor) or clip.ndim != 3 or clip.shape[-1] != 4:
        raise InputError(f"clip: expected shape [B, V, 4], got "
                         f"{list(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__}")
    B, V, _ = clip.shape
    tris = _check_tris(tris, V).to(clip.device)
    H, W = _check_resolution(resolution)
    if attrs is not None:
        _check_attrs(attrs, B, V)
    if attrs is None and not textures:
        raise InputError("soft_render: nothing to render (attrs is None and no textures)")
    for uv, uv_tris, tex in textures:
        if uv.ndim != 2 or uv.shape[1] != 2 or uv_tris.shape != tris.shape or tex.ndim not in (3, 4):
            raise InputError(f"textures: expected (uv [T, 2], uv_tris [F, 3], tex [B, Ht, Wt, C]), got "
                             f"{list(uv.shape)}, {list(uv_tris.shape)}, {list(tex.shape)}")
    dtype = clip.dtype

    if cfg.mode == "zbuffer":
        frags = rasterize(clip, tris, (H, W), cfg.backend, cull_backfaces=cfg.cull_backfaces)
        chans = [] if attrs is None else [interpolate(attrs, frags, tris)]
        for uv, uv_tris, tex in textures:
            uvi = interpolate(uv, frags, uv_tris.long())
            chans.append(texture(tex, uvi) * frags.mask[..., None])
        alpha = frags.mask[..., None].to(dtype)
        return SoftImage(torch.cat(chans, -1), alpha)

    K = int(cfg.slices)
    sid, zmin, zrng = depth_slices(clip, tris, K)
    tri_mask = (sid[:, None, :] == torch.arange(K, device=clip.device)[None, :, None]).reshape(B * K, -1)
    clip_k = clip.detach()[:, None].expand(B, K, V, 4).reshape(B * K, V, 4)
    with torch.no_grad():
        pix, f = visible_pixels(clip_k, tris, (H, W), cfg.backend, tri_mask=tri_mask,
                                cull_backfaces=cfg.cull_backfaces)  # [N] into B*K*H*W
        bk = torch.div(pix, H * W, rounding_mode="floor")
        b = torch.div(bk, K, rounding_mode="floor")
        rem = pix - bk * (H * W)
        py = torch.div(rem, W, rounding_mode="floor")
        px = rem - py * W
        cd = clip.detach()
        if cd.dtype not in (torch.float32, torch.float64):
            cd = cd.float()
        bary, _ = barycentrics(cd, tris, b, f, px.to(cd.dtype) + 0.5, py.to(cd.dtype) + 0.5, H, W)  # material
        vid = tris[f]  # [N, 3]
    # surface points of the covered pixels: they move with the vertices
    P = torch.einsum("nk,nkc->nc", bary.to(dtype), clip[b[:, None], vid])  # [N, 4]
    ux = (P[:, 0] / P[:, 3] + 1.0) * (0.5 * W)
    uy = (P[:, 1] / P[:, 3] + 1.0) * (0.5 * H)
    dx, dy = ux - ux.detach(), uy - uy.detach()
    # each pixel sample stands for a piece of surface whose projected area changes with the vertices: its weight
    # is the triangle's screen-area ratio (1 in the forward pass; the divergence term of the transport)
    cv = clip[b[:, None], vid]  # [N, 3, 4]
    sx, sy = cv[..., 0] / cv[..., 3], cv[..., 1] / cv[..., 3]
    area = (sx[:, 1] - sx[:, 0]) * (sy[:, 2] - sy[:, 0]) - (sx[:, 2] - sx[:, 0]) * (sy[:, 1] - sy[:, 0])
    jac = area / area.detach()  # [N]
    dn = (P[:, 3] - zmin[b]) / zrng[b]  # normalized depth in [0, 1]
    chans = []
    if attrs is not None:
        chans.append(_gather_attrs(attrs, b, vid, bary))
    for uv, uv_tris, tex in textures:
        uvp = torch.einsum("nk,nkc->nc", bary.to(uv.dtype), uv[uv_tris.long().to(uv.device)[f]])
        chans.append(_sample_texture(tex, uvp, b))
    A = torch.cat([c.to(dtype) for c in chans], -1)
    C = A.shape[1]
    if pix.numel() == 0:  # nothing visible: an empty image (still connected to the inputs' graph)
        zero = 0.0 * (A.sum() + dn.sum())
        return SoftImage(clip.new_zeros(B, H, W, C) + zero, clip.new_zeros(B, H, W, 1) + zero)
    # work on the covered pixels' bounding box grown by the kernel radius (zeros elsewhere: identical result)
    r = int(cfg.kernel_size) // 2
    with torch.no_grad():
        y0, y1 = max(int(py.min()) - r, 0), min(int(py.max()) + r, H - 1)
        x0, x1 = max(int(px.min()) - r, 0), min(int(px.max()) + r, W - 1)
        Hc, Wc = y1 - y0 + 1, x1 - x0 + 1
        lpix = bk * (Hc * Wc) + (py - y0) * Wc + (px - x0)
    vals = torch.cat([A, torch.ones_like(dn)[:, None], dn[:, None]], -1) * jac[:, None]  # [N, C + 2]
    n_pix = B * K * Hc * Wc
    dense = vals.new_zeros(n_pix, C + 2).index_put((lpix,), vals)
    dense = dense.view(B * K, Hc, Wc, C + 2).permute(0, 3, 1, 2)  # [BK, C+2, Hc, Wc]
    mv = torch.stack([dx, dy], -1)
    mv = mv.new_zeros(n_pix, 2).index_put((lpix,), mv).view(B * K, Hc, Wc, 2).permute(0, 3, 1, 2)
    soft = moving_blur(dense.contiguous(), mv[:, 0:1], mv[:, 1:2], cfg).view(B, K, C + 2, Hc, Wc)
    # coverage of the union of the slices (= the z-buffer mask), moving with the nearest surface at each pixel
    with torch.no_grad():
        upix = b * (Hc * Wc) + (py - y0) * Wc + (px - x0)  # [N] into B*Hc*Wc
        key = (P[:, 3].detach().float().view(torch.int32).long() << 32) | torch.arange(pix.numel(), device=pix.device)
        best = torch.full((B * Hc * Wc,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=pix.device)
        best.scatter_reduce_(0, upix, key, "amin", include_self=True)
        win = (best[upix] & 0xFFFFFFFF) == torch.arange(pix.numel(), device=pix.device)  # nearest entry per pixel
        wpix = upix[win]
    umv = dense.new_zeros(B * Hc * Wc, 2).index_put((wpix,), torch.stack([dx[win], dy[win]], -1))
    umv = umv.view(B, Hc, Wc, 2).permute(0, 3, 1, 2)
    union = dense.new_zeros(B * Hc * Wc).index_put((wpix,), jac[win])
    alpha = moving_blur(union.view(B, 1, Hc, Wc), umv[:, 0:1], umv[:, 1:2], cfg)  # [B, 1, Hc, Wc]
    if FULL_COVER_EXACT:
        # where the kernel's whole footprint is covered the coverage is 1 and stays 1 under any small motion: its
        # exact derivative is 0, but the transport and area terms, sampled at pixels on triangles of about a pixel,
        # cancel only on average and leave a noise ~20x the silhouette band's gradient (ICT mean face at 192 px)
        alpha = torch.where(alpha.detach() >= 1.0 - _FULL, alpha.detach(), alpha)
    As, Ms, Ds = soft[:, :, :C], soft[:, :, C:C + 1], soft[:, :, C + 1:]
    Mc = Ms.clamp_min(_TINY)
    logits = torch.log(Mc) - (Ds / Mc) / cfg.depth_temperature
    logits = torch.where(Ms > _TINY, logits, torch.full_like(logits, -1e4))  # empty slices get no weight
    wk = torch.softmax(logits, dim=1)  # [B, K, 1, Hc, Wc]
    image = alpha * (wk / Mc * As).sum(1)  # [B, C, Hc, Wc]
    pad = (x0, W - 1 - x1, y0, H - 1 - y1)
    image = F.pad(image.permute(0, 2, 3, 1), (0, 0) + pad)
    alpha = F.pad(alpha.permute(0, 2, 3, 1), (0, 0) + pad)
    return SoftImage(image, alpha)


# --------------------------------------------------------------------------------------------------- pyramid/loss
def pyramid(img: torch.Tensor, cfg: RenderConfig | None = None, *, presoftened: bool = False) -> list[torch.Tensor]:
    """The L-level Gaussian pyramid [[B, H_l, W_l, C]] of img [B, H, W, C].

    Level 0 is ``G * img`` (or ``img`` itself when ``presoftened``, e.g. a :func:`soft_render` output), level l+1
    is G applied to level l at stride 2. In ``"zbuffer"`` mode: ``[img]``.
    """
    cfg = cfg or RenderConfig()
    if not isinstance(img, torch.Tensor) or img.ndim != 4:
        raise InputError(f"img: expected shape [B, H, W, C], got "
                         f"{list(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
    if cfg.mode == "zbuffer":
        return [img]
    g, _ = _kernels(cfg, img.dtype, img.device)
    x = img.permute(0, 3, 1, 2)
    if not presoftened:
        x = blur(x, g)
    levels = [x]
    for _ in range(int(cfg.pyramid_levels) - 1):
        x = blur(x, g, stride=2)
        levels.append(x)
    return [lv.permute(0, 2, 3, 1) for lv in levels]


def render_pyramid(soft: SoftImage, cfg: RenderConfig | None = None) -> list[torch.Tensor]:
    """The pyramid of a rendered :class:`SoftImage` (already softened in ``"reda"`` mode)."""
    return pyramid(soft.image, cfg, presoftened=True)


def observed_pyramid(observed: torch.Tensor, valid: torch.Tensor, cfg: RenderConfig | None = None,
                     ) -> list[torch.Tensor]:
    """The pyramid of an observed attribute map [B, H, W, C] with ignored pixels (valid [B, H, W, 1] in [0, 1]).

    Level 0 is the softened map where it is valid and 0 elsewhere, softened from valid pixels only (normalized
    convolution ``G * (obs valid) / G * valid``); the next levels are built from it as usual. Paired with
    :func:`masked_render_pyramid`, the two pyramids agree at every level when the render equals the
    observation on the valid pixels: masking *before* the pyramid (instead of weighting each level by a
    blurred mask) keeps ignored regions from biasing the coarse levels.
    """
    cfg = cfg or RenderConfig()
    valid = valid.to(observed.dtype)
    if cfg.mode == "zbuffer":
        return [observed * valid]
    g, _ = _kernels(cfg, observed.dtype, observed.device)
    num = blur((observed * valid).permute(0, 3, 1, 2), g)
    den = blur(valid.permute(0, 3, 1, 2), g)
    lv0 = (num / den.clamp_min(1e-6)).permute(0, 2, 3, 1) * valid
    return pyramid(lv0, cfg, presoftened=True)


def masked_render_pyramid(image: torch.Tensor, valid: torch.Tensor, cfg: RenderConfig | None = None,
                          ) -> list[torch.Tensor]:
    """The pyramid of rendered channels [B, H, W, C] (a :class:`SoftImage`'s, already softened) masked by
    valid [B, H, W, 1] at level 0; the counterpart of :func:`observed_pyramid`."""
    return pyramid(image * valid.to(image.dtype), cfg, presoftened=True)


def reda_loss(rendered_pyramid: Sequence[torch.Tensor], observed_pyramid: Sequence[torch.Tensor],
              mask=None, level_weights: Sequence[float] | None = None) -> torch.Tensor:
    """Sum over levels of the mean L1 difference between two pyramids (lists of [B, H_l, W_l, C]).

    ``mask``: optional per-pixel weights, either a pyramid (list of [B, H_l, W_l, 1]) or one [B, H, W, 1] image at
    level-0 resolution (area-resampled to each level); each level is then the weighted mean.
    ``level_weights``: optional weight of each level's term (default 1 each; levels weighted 0 are skipped).
    """
    if isinstance(rendered_pyramid, torch.Tensor) or isinstance(observed_pyramid, torch.Tensor):
        raise InputError("reda_loss: expected two pyramids (lists of [B, H, W, C] levels: "
                         "redafit.render.reda.pyramid), got a tensor")
    if len(rendered_pyramid) != len(observed_pyramid) or not len(rendered_pyramid):
        raise InputError(f"reda_loss: pyramids have {len(rendered_pyramid)} and {len(observed_pyramid)} levels")
    if mask is not None and not isinstance(mask, torch.Tensor) and not isinstance(mask, (list, tuple)):
        raise InputError(f"reda_loss: mask must be a tensor [B, H, W, 1] or a pyramid of them, got "
                         f"{type(mask).__name__}")
    if isinstance(mask, torch.Tensor) and (mask.ndim != 4 or mask.shape[-1] != 1
                                           or mask.shape[:3] != rendered_pyramid[0].shape[:3]):
        raise InputError(f"reda_loss: mask must be [B, H, W, 1] at level 0's size "
                         f"{list(rendered_pyramid[0].shape[:3]) + [1]}, got {list(mask.shape)}")
    if level_weights is not None and len(level_weights) != len(rendered_pyramid):
        raise InputError(f"reda_loss: {len(level_weights)} level weights for {len(rendered_pyramid)} levels")
    total = rendered_pyramid[0].new_zeros(())
    for i, (r, o) in enumerate(zip(rendered_pyramid, observed_pyramid)):
        if r.shape != o.shape:
            raise InputError(f"reda_loss: level {i} shapes differ: {list(r.shape)} vs {list(o.shape)}")
        lw = 1.0 if level_weights is None else float(level_weights[i])
        if lw == 0.0:
            continue
        d = (r - o).abs()
        if lw != 1.0:
            d = d * lw
        if mask is None:
            total = total + d.mean()
            continue
        if isinstance(mask, torch.Tensor):
            m = mask if i == 0 else F.interpolate(mask.permute(0, 3, 1, 2).to(d.dtype), size=r.shape[1:3],
                                                  mode="area").permute(0, 2, 3, 1)
        else:
            m = mask[i]
        m = m.to(d.dtype)
        total = total + (d * m).sum() / (m.expand_as(d).sum().clamp_min(1e-12))
    return total


class ReDALoss(torch.nn.Module):
    """``loss = reda_loss(pyramid(soft_render(...)), pyramid(observed), mask)`` with one :class:`RenderConfig`."""

    def __init__(self, cfg: RenderConfig | None = None):
        super().__init__()
        self.cfg = cfg or RenderConfig()

    def forward(self, clip, tris, attrs, observed: torch.Tensor, mask=None, *, textures=()) -> torch.Tensor:
        """observed [B, H, W, C] (premultiplied by its own mask where that applies)."""
        H, W = observed.shape[1:3]
        soft = soft_render(clip, tris, attrs, (H, W), self.cfg, textures=textures)
        return reda_loss(render_pyramid(soft, self.cfg), pyramid(observed, self.cfg), mask)


def zbuffer_config(cfg: RenderConfig) -> RenderConfig:
    """The z-buffer baseline of ``cfg`` (same backend and culling)."""
    return replace(cfg, mode="zbuffer", slices=1, pyramid_levels=1)
