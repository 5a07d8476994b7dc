"""Optional nvdiffrast backend (CUDA): only the visibility pass runs in nvdiffrast.

nvdiffrast is imported lazily; importing redafit never needs it. ``dr.rasterize(glctx, pos, tri, resolution)``
returns ``rast`` [B, H, W, 4] = (u, v, z/w, triangle_id + 1) with 0 for empty pixels, in the same storage order as
redafit's clip-space convention (row 0 = NDC y -1), so no flip is needed. From it we take the triangle ids only;
the barycentrics and depth are recomputed differentiably by the torch code (same gradients as the torch backend).
Per-instance triangle masks (``tri_mask``) are honoured by rasterizing each batch entry with its own triangle
subset (one nvdiffrast call per entry; they are cheap on the GPU).
"""

from __future__ import annotations

import warnings

import torch

from redafit.errors import DependencyError
from redafit.render.fragments import Fragments

_dr = None
_import_error: Exception | None = None
_contexts: dict = {}
_warned = False


def _load():
    global _dr, _import_error
    if _dr is None and _import_error is None:
        try:
            import nvdiffrast.torch as dr

            _dr = dr
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken CUDA/JIT build: reported on use
            _import_error = e
    return _dr


def available() -> bool:
    """True when ``nvdiffrast.torch`` imports (warns once when it does not)."""
    global _warned
    ok = _load() is not None
    if not ok and not _warned and torch.cuda.is_available():
        _warned = True
        warnings.warn(f"nvdiffrast not available ({_import_error}); using the torch rasterizer", stacklevel=3)
    return ok


def require():
    if _load() is None:
        raise DependencyError(
            "the nvdiffrast backend needs nvdiffrast: pip install git+https://github.com/NVlabs/nvdiffrast "
            f"(on a CUDA machine), or use --raster-backend torch ({_import_error})")
    return _dr


def _context(device: torch.device):
    dr = require()
    key = str(device)
    if key not in _contexts:
        _contexts[key] = dr.RasterizeCudaContext(device=device)
    return _contexts[key]


def _tri_ids(glctx, pos: torch.Tensor, tri: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """[B, H, W] long triangle index into ``tri`` (-1 empty)."""
    dr = require()
    rast, _ = dr.rasterize(glctx, pos.contiguous(), tri.int().contiguous(), (H, W), grad_db=False)
    return rast[..., 3].round().long() - 1


def rasterize_nvdiffrast(clip: torch.Tensor, tris: torch.Tensor, resolution, *, tri_mask=None,
                         cull_backfaces: bool = False) -> Fragments:
    """See :func:`redafit.render.rasterize` (inputs already validated; CUDA tensors)."""
    from redafit.render.raster_torch import W_EPS, barycentrics

    H, W = resolution
    B = clip.shape[0]
    glctx = _context(clip.device)
    with torch.no_grad():
        pos = clip.detach().float()
        # drop triangles we do not draw (behind the camera, culled, masked) the same way as the torch backend
        v = pos[:, tris]  # [B, F, 3, 4]
        keep = (v[..., 3] > W_EPS).all(-1)
        if cull_backfaces:
            sx, sy = v[..., 0] / v[..., 3], v[..., 1] / v[..., 3]
            area = (sx[..., 1] - sx[..., 0]) * (sy[..., 2] - sy[..., 0]) - (sx[..., 2] - sx[..., 0]) * (
                sy[..., 1] - sy[..., 0])
            keep &= area < 0
        if tri_mask is not None:
            keep &= tri_mask
        if bool(keep.all()):
            tri_id = _tri_ids(glctx, pos, tris, H, W)
        else:
            tri_id = torch.full((B, H, W), -1, dtype=torch.long, device=clip.device)
            for b in range(B):
                sub = torch.nonzero(keep[b]).squeeze(1)
                if sub.numel() == 0:
                    continue
                ids = _tri_ids(glctx, pos[b:b + 1], tris[sub], H, W)[0]
                tri_id[b] = torch.where(ids >= 0, sub[ids.clamp_min(0)], ids)
        flat = tri_id.reshape(-1)
        pix = torch.nonzero(flat >= 0).squeeze(1)
        f = flat[pix]
        bi = torch.div(pix, H * W, rounding_mode="floor")
        rem = pix - bi * (H * W)
        py = torch.div(rem, W, rounding_mode="floor")
        px = rem - py * W
    cl = clip if clip.dtype in (torch.float32, torch.float64) else clip.float()
    bary_v, depth_v = barycentrics(cl, tris, bi, f, px.to(cl.dtype) + 0.5, py.to(cl.dtype) + 0.5, H, W)
    bary = cl.new_zeros(B * H * W, 3).index_put((pix,), bary_v).view(B, H, W, 3)
    depth = cl.new_zeros(B * H * W).index_put((pix,), depth_v).view(B, H, W)
    return Fragments(bary, tri_id, depth, pix)
