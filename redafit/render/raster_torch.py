"""Pure-torch rasterizer backend (reference; CPU and CUDA).

Two passes:

1. **Visibility** (no gradient). Every (batch entry, triangle) instance that survives the filters (all three
   vertices in front of the camera, finite, non-degenerate, optionally front-facing, optionally selected by a
   per-instance mask) enumerates the pixel centres of its clamped screen bounding box *exactly*
   (``repeat_interleave`` over the per-triangle box sizes, so there is no padding and no Python loop over
   triangles or pixels). Edge functions decide coverage; the depth of each covered candidate - NDC z = z_c / w,
   affine in screen space, as nvdiffrast's depth test uses (with redafit's perspective camera the same order as
   camera depth; an orthographic clip with w = 1 is depth-tested by its z too) - is packed with the triangle id
   into one int64 key: the float32 bits of the depth made order-preserving as a signed integer in the high 32
   bits, the triangle id in the low 32 bits, so integer order = depth order, ties to the lower id; and
   ``scatter_reduce(amin)`` resolves the z-buffer.
2. **Barycentrics** (differentiable). For the covered pixels only, the barycentrics and depth are recomputed
   from the clip-space vertices with autograd, and scattered into dense images.

Screen mapping (see :mod:`redafit.render.camera`): pixel x = (x_c / w + 1) W / 2, y = (y_c / w + 1) H / 2, pixel
(i, j) has its centre at (j + 0.5, i + 0.5), row 0 is NDC y = -1. Triangles with a vertex at w <= 1e-6 (behind
or on the camera plane) are dropped, not clipped: meshes are expected in front of the camera.

Front-facing, with redafit's camera (``R = rodrigues(r) @ R_FLIP``) and counter-clockwise model triangles, means
a *negative* signed area in pixel coordinates (x right, y down); ``cull_backfaces`` drops the others.
"""

from __future__ import annotations

import torch

from redafit.render.fragments import Fragments

W_EPS = 1e-6  # smallest clip w (camera depth, mm) a vertex may have
AREA_EPS = 1e-10  # triangles with |screen area| below this (pixels^2) are degenerate and skipped
INSIDE_EPS = 1e-7  # edge-function tolerance (shared edges are covered by both sides; depth picks one)
_EMPTY = torch.iinfo(torch.int64).max


def _visibility(clip: torch.Tensor, tris: torch.Tensor, H: int, W: int, tri_mask, cull_backfaces: bool):
    """Hard pass: [B*H*W] long triangle id (-1 empty). No gradient."""
    B = clip.shape[0]
    dev = clip.device
    c = clip.detach()
    if c.dtype not in (torch.float32, torch.float64):
        c = c.float()
    out = torch.full((B * H * W,), _EMPTY, dtype=torch.int64, device=dev)
    if tri_mask is not None:  # gather only the selected instances
        bi, fi = torch.nonzero(tri_mask, as_tuple=True)
        vv = c[bi[:, None], tris[fi]]  # [N, 3, 4]
    else:
        vv = c[:, tris].reshape(-1, 3, 4)  # [B*F, 3, 4]
        bi = torch.arange(B, device=dev).repeat_interleave(tris.shape[0])
        fi = torch.arange(tris.shape[0], device=dev).repeat(B)
    ok = (vv[..., 3] > W_EPS).all(-1) & torch.isfinite(vv).flatten(1).all(-1)
    if not bool(ok.all()):
        sel = torch.nonzero(ok).squeeze(1)
        bi, fi, vv = bi[sel], fi[sel], vv[sel]
    if bi.numel() == 0:
        return out
    ww = vv[..., 3]
    sx = (vv[..., 0] / ww + 1.0) * (0.5 * W)  # [N, 3] pixels
    sy = (vv[..., 1] / ww + 1.0) * (0.5 * H)
    x0, x1, x2 = sx.unbind(-1)
    y0, y1, y2 = sy.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)  # signed, pixels^2 (x2)
    keep = area.abs() > AREA_EPS
    if cull_backfaces:
        keep &= area < 0
    # bounding boxes of pixel centres, clamped to the image (clamp floats first: no int overflow)
    bx0 = torch.ceil(sx.amin(-1).clamp(-1.0, W + 1.0) - 0.5).long().clamp_min(0)
    bx1 = torch.floor(sx.amax(-1).clamp(-1.0, W + 1.0) - 0.5).long().clamp_max(W - 1)
    by0 = torch.ceil(sy.amin(-1).clamp(-1.0, H + 1.0) - 0.5).long().clamp_min(0)
    by1 = torch.floor(sy.amax(-1).clamp(-1.0, H + 1.0) - 0.5).long().clamp_max(H - 1)
    nx = (bx1 - bx0 + 1).clamp_min(0)
    ny = (by1 - by0 + 1).clamp_min(0)
    n = nx * ny * keep
    sel = torch.nonzero(n).squeeze(1)
    if sel.numel() == 0:
        return out
    n, nx, bx0, by0 = n[sel], nx[sel], bx0[sel], by0[sel]
    bi, fi = bi[sel], fi[sel]
    x0, x1, x2, y0, y1, y2 = (t[sel] for t in (x0, x1, x2, y0, y1, y2))
    inv_area = 1.0 / area[sel]
    iw = 1.0 / ww[sel]  # [N, 3]
    # edge functions l_i(x, y) = a_i x + b_i y + c_i (screen-space barycentrics), packed per triangle
    a = torch.stack([y1 - y2, y2 - y0, y0 - y1], -1) * inv_area[:, None]
    b = torch.stack([x2 - x1, x0 - x2, x1 - x0], -1) * inv_area[:, None]
    cc = torch.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], -1) * inv_area[:, None]
    base = (bi * (H * W) + by0 * W + bx0)
    zw = vv[sel][..., 2] * iw  # NDC z of each vertex
    per_tri = torch.cat([a, b, cc, iw, zw], -1)  # [N, 15]
    # enumerate every pixel centre of every box, exactly
    inst = torch.repeat_interleave(torch.arange(n.numel(), device=dev), n)  # [T]
    start = torch.cumsum(n, 0) - n
    k = torch.arange(inst.numel(), device=dev) - start[inst]
    nxi = nx[inst]
    dy = torch.div(k, nxi, rounding_mode="floor")
    dx = k - dy * nxi
    px = (bx0[inst] + dx).to(c.dtype) + 0.5
    py = (by0[inst] + dy).to(c.dtype) + 0.5
    p = per_tri[:, 0:9][inst]  # [T, 9]: the edge functions only, for every candidate
    lam = p[:, 0:3] * px[:, None] + p[:, 3:6] * py[:, None] + p[:, 6:9]  # [T, 3]
    del p
    idx = torch.nonzero((lam >= -INSIDE_EPS).all(-1)).squeeze(1)
    lam, ti = lam[idx], inst[idx]  # the covered candidates
    q = per_tri[ti, 9:15]  # [N, 6]: 1 / w and z / w of the corners
    ok = (lam * q[:, 0:3]).sum(-1) > 0  # in front of the camera at the pixel
    if not bool(ok.all()):
        idx, lam, ti, q = idx[ok], lam[ok], ti[ok], q[ok]
    if idx.numel() == 0:
        return out
    # NDC z, affine in screen space; normalised by the barycentrics' sum, whose float error (a sliver's large edge
    # coefficients) would otherwise shift z by about its value, far more than the gap between two surfaces
    depth = ((lam * q[:, 3:6]).sum(-1) / lam.sum(-1)).float()
    bits = depth.view(torch.int32)
    order = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # IEEE bits -> a signed integer in the floats' order
    key = (order.long() << 32) | fi[ti]
    pix = base[ti] + dy[idx] * W + dx[idx]
    out.scatter_reduce_(0, pix, key, "amin", include_self=True)
    return out


def barycentrics(clip: torch.Tensor, tris: torch.Tensor, b: torch.Tensor, f: torch.Tensor, px: torch.Tensor,
                 py: torch.Tensor, H: int, W: int):
    """Differentiable perspective-correct barycentrics [N, 3] and depth [N] at pixel points (px, py) (pixels)
    of triangle f in batch entry b; gradients flow to ``clip`` [B, V, 4]."""
    vv = clip[b[:, None], tris[f]]  # [N, 3, 4]
    w = vv[..., 3]
    sx = (vv[..., 0] / w + 1.0) * (0.5 * W)
    sy = (vv[..., 1] / w + 1.0) * (0.5 * H)
    ex = sx - px[:, None]
    ey = sy - py[:, None]
    # sub-areas opposite each corner: l_i ~ cross(v_{i+1} - p, v_{i+2} - p)
    e1x, e2x = ex.roll(-1, 1), ex.roll(-2, 1)
    e1y, e2y = ey.roll(-1, 1), ey.roll(-2, 1)
    sub = e1x * e2y - e2x * e1y  # [N, 3]
    lw = sub / w  # l_i / w_i up to the common factor 1/area
    s = lw.sum(-1, keepdim=True)
    bary = lw / s
    area = sub.sum(-1, keepdim=True)
    depth = (area / s).squeeze(-1)  # 1 / sum(l_i / w_i)
    return bary, depth


def visible_torch(clip: torch.Tensor, tris: torch.Tensor, resolution: tuple[int, int], *, tri_mask=None,
                  cull_backfaces: bool = False):
    """Hard pass only: (tri_id [B*H*W] long with -1 empty, pix [N] flat indices of the covered pixels)."""
    H, W = resolution
    with torch.no_grad():
        key = _visibility(clip, tris, H, W, tri_mask, cull_backfaces)
        hit = key != _EMPTY
        tri_id = torch.where(hit, key & 0xFFFFFFFF, torch.full_like(key, -1))
        pix = torch.nonzero(hit).squeeze(1)
    return tri_id, pix


def rasterize_torch(clip: torch.Tensor, tris: torch.Tensor, resolution: tuple[int, int], *, tri_mask=None,
                    cull_backfaces: bool = False) -> Fragments:
    """See :func:`redafit.render.rasterize` (inputs already validated)."""
    H, W = resolution
    B = clip.shape[0]
    tri_id, pix = visible_torch(clip, tris, resolution, tri_mask=tri_mask, cull_backfaces=cull_backfaces)
    with torch.no_grad():
        f = tri_id[pix]
        b = torch.div(pix, H * W, rounding_mode="floor")
        rem = pix - b * (H * W)
        py = torch.div(rem, W, rounding_mode="floor")
        px = rem - py * W
    fdtype = clip.dtype if clip.dtype in (torch.float32, torch.float64) else torch.float32
    cl = clip.to(fdtype)
    bary_v, depth_v = barycentrics(cl, tris, b, f, px.to(fdtype) + 0.5, py.to(fdtype) + 0.5, H, W)
    bary = cl.new_zeros(B * H * W, 3).index_put((pix,), bary_v).view(B, H, W, 3)
    depth = cl.new_zeros(B * H * W).index_put((pix,), depth_v).view(B, H, W)
    return Fragments(bary, tri_id.view(B, H, W), depth, pix)
