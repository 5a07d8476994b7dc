"""The rasterizer contract: :func:`rasterize`, :func:`interpolate`, :func:`texture` (nvdiffrast-shaped ops).

Backends: ``"torch"`` (:mod:`redafit.render.raster_torch`, CPU and CUDA, the reference) and ``"nvdiffrast"``
(:mod:`redafit.render.raster_nvdiffrast`, CUDA, optional). ``"auto"`` picks nvdiffrast for CUDA tensors when it
imports, torch otherwise. Both return the same :class:`~redafit.render.fragments.Fragments`; the barycentrics are
always recomputed differentiably by the same torch code, so gradients do not depend on the backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from redafit.errors import InputError, UsageError
from redafit.render.fragments import Fragments

BACKENDS = ("auto", "torch", "nvdiffrast")


def _check_resolution(resolution) -> tuple[int, int]:
    try:
        H, W = (int(r) for r in resolution)
        whole = all(float(r) == int(r) for r in resolution)
    except (TypeError, ValueError):
        raise InputError(f"resolution: expected (H, W), got {resolution!r}") from None
    if not whole:
        raise InputError(f"resolution: expected whole numbers of pixels (H, W), got {tuple(resolution)!r}")
    if H < 1 or W < 1:
        raise InputError(f"resolution: expected positive (H, W), got {(H, W)}")
    return H, W


def _check_tris(tris: torch.Tensor, n_vertices: int, name: str = "tris") -> torch.Tensor:
    if not isinstance(tris, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(tris).__name__}")
    if tris.ndim != 2 or tris.shape[1] != 3:
        raise InputError(f"{name}: expected shape [F, 3], got {list(tris.shape)}")
    if tris.dtype.is_floating_point or tris.dtype == torch.bool:
        raise InputError(f"{name}: expected an integer tensor, got {tris.dtype}")
    tris = tris.long()
    if tris.numel() and (int(tris.min()) < 0 or int(tris.max()) >= n_vertices):
        raise InputError(f"{name}: indices must lie in 0..{n_vertices - 1}, got {int(tris.min())}..{int(tris.max())}")
    return tris


def rasterize(clip: torch.Tensor, tris: torch.Tensor, resolution, backend: str = "auto", *,
              tri_mask: torch.Tensor | None = None, cull_backfaces: bool = False) -> Fragments:
    """Hard rasterization of clip-space triangles (one visible triangle per pixel).

    Args:
        clip: [B, V, 4] clip-space vertices (``to_clip`` of camera-frame points, see :mod:`.camera`).
        tris: [F, 3] long vertex indices.
        resolution: (H, W) in pixels.
        backend: ``"auto"`` | ``"torch"`` | ``"nvdiffrast"``.
        tri_mask: optional [B, F] or [F] bool: only these triangles are drawn (per batch entry) — e.g. depth
            slices rendered as batch entries in one call.
        cull_backfaces: drop triangles facing away from the camera (default: render both sides).

    Returns:
        :class:`Fragments` with ``bary`` [B, H, W, 3] (perspective-correct, differentiable w.r.t. ``clip``),
        ``tri_id`` [B, H, W] (-1 empty) and ``depth`` [B, H, W] (camera z in mm, 0 empty). Images are stored top
        row first (row 0 = NDC y -1), pixel centres at +0.5.
    """
    if not isinstance(clip, torch.Tensor):
        raise InputError(f"clip: expected a torch.Tensor, got {type(clip).__name__}")
    if clip.ndim != 3 or clip.shape[-1] != 4:
        raise InputError(f"clip: expected shape [B, V, 4], got {list(clip.shape)}")
    if not clip.dtype.is_floating_point:
        raise InputError(f"clip: expected a floating-point tensor, got {clip.dtype}")
    tris = _check_tris(tris, clip.shape[1]).to(clip.device)
    H, W = _check_resolution(resolution)
    B, F_ = clip.shape[0], tris.shape[0]
    if tri_mask is not None:
        tri_mask = torch.as_tensor(tri_mask, device=clip.device)
        if tri_mask.dtype != torch.bool:
            raise InputError(f"tri_mask: expected a bool tensor, got {tri_mask.dtype}")
        if tri_mask.ndim == 1:
            tri_mask = tri_mask.unsqueeze(0)
        if tri_mask.ndim != 2 or tri_mask.shape[1] != F_ or tri_mask.shape[0] not in (1, B):
            raise InputError(f"tri_mask: expected shape [B, F] = [{B}, {F_}] or [F], got {list(tri_mask.shape)}")
        tri_mask = tri_mask.expand(B, F_)
    name = resolve_backend(backend, clip.device)
    if B == 0 or F_ == 0:
        z = clip.new_zeros(B, H, W)
        return Fragments(clip.new_zeros(B, H, W, 3), torch.full((B, H, W), -1, dtype=torch.long,
                                                                  device=clip.device), z)
    if name == "nvdiffrast":
        from redafit.render.raster_nvdiffrast import rasterize_nvdiffrast

        return rasterize_nvdiffrast(clip, tris, (H, W), tri_mask=tri_mask, cull_backfaces=cull_backfaces)
    from redafit.render.raster_torch import rasterize_torch

    return rasterize_torch(clip, tris, (H, W), tri_mask=tri_mask, cull_backfaces=cull_backfaces)


def visible_pixels(clip: torch.Tensor, tris: torch.Tensor, resolution, backend: str = "auto", *,
                   tri_mask: torch.Tensor | None = None, cull_backfaces: bool = False):
    """The hard (visibility) pass only, for callers that recompute barycentrics themselves (the ReDA renderer):
    ``(pix [N] flat indices into B*H*W of the covered pixels, tri [N] their triangle ids)``. Inputs as
    :func:`rasterize` (validated by the caller)."""
    H, W = resolution
    name = resolve_backend(backend, clip.device)
    if name == "nvdiffrast":
        frags = rasterize(clip, tris, (H, W), "nvdiffrast", tri_mask=tri_mask, cull_backfaces=cull_backfaces)
        pix = frags.covered()
        return pix, frags.tri_id.reshape(-1)[pix]
    from redafit.render.raster_torch import visible_torch

    tri_id, pix = visible_torch(clip, tris, (H, W), tri_mask=tri_mask, cull_backfaces=cull_backfaces)
    return pix, tri_id[pix]


def resolve_backend(backend: str, device: torch.device | str = "cpu") -> str:
    """``"auto"`` -> ``"nvdiffrast"`` on CUDA when it imports, else ``"torch"``; validates explicit names."""
    if backend not in BACKENDS:
        raise UsageError(f"raster backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = torch.device(device)
    if backend == "auto":
        if device.type == "cuda":
            from redafit.render.raster_nvdiffrast import available

            if available():
                return "nvdiffrast"
        return "torch"
    if backend == "nvdiffrast":
        from redafit.render.raster_nvdiffrast import require

        require()
        if device.type != "cuda":
            raise UsageError("the nvdiffrast backend needs CUDA tensors; use --raster-backend torch on CPU")
    return backend


def interpolate(attr: torch.Tensor, frags: Fragments, tris: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes over the image with the fragments' barycentrics.

    Args:
        attr: [B, V, C] or [V, C] (shared by the batch); e.g. colours, normals, or UV coordinates [T, 2] together
            with the model's separate ``uv_triangles`` as ``tris``.
        frags: from :func:`rasterize`.
        tris: [F, 3] indices into ``attr``'s V axis, one row per triangle of the rasterized mesh (same F).

    Returns:
        [B, H, W, C], zeros where empty. Differentiable w.r.t. ``attr`` and the barycentrics.
    """
    if not isinstance(attr, torch.Tensor) or attr.ndim not in (2, 3):
        raise InputError(f"attr: expected shape [B, V, C] or [V, C], got "
                         f"{list(attr.shape) if isinstance(attr, torch.Tensor) else type(attr).__name__}")
    B, H, W = frags.tri_id.shape
    V = attr.shape[-2]
    tris = _check_tris(tris, V).to(attr.device)
    if attr.ndim == 3 and attr.shape[0] not in (1, B):
        raise InputError(f"attr: batch size {attr.shape[0]} does not match the fragments' {B}")
    C = attr.shape[-1]
    pix = frags.covered()
    out = attr.new_zeros(B * H * W, C)
    if pix.numel() == 0:
        return out.view(B, H, W, C)
    f = frags.tri_id.reshape(-1)[pix]
    if int(f.max()) >= tris.shape[0]:
        raise InputError(f"tris: has {tris.shape[0]} rows but the fragments reference triangle {int(f.max())}")
    vid = tris[f]  # [N, 3]
    if attr.ndim == 2:
        vals = attr[vid]  # [N, 3, C]
    elif attr.shape[0] == 1:
        vals = attr[0][vid]
    else:
        b = torch.div(pix, H * W, rounding_mode="floor")
        vals = attr[b[:, None], vid]
    w = frags.bary.reshape(-1, 3)[pix].to(attr.dtype)
    res = torch.einsum("nk,nkc->nc", w, vals)
    return out.index_put((pix,), res).view(B, H, W, C)


def texture(tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookup.

    Args:
        tex: [B, Ht, Wt, C] (or [Ht, Wt, C]) texture image, top row first.
        uv: [B, H, W, 2] texture coordinates in [0, 1], v up (OBJ convention: v = 1 is the top row of ``tex``);
            values outside are clamped to the border.

    Returns:
        [B, H, W, C]; differentiable w.r.t. ``tex`` and ``uv``.
    """
    if not isinstance(tex, torch.Tensor) or tex.ndim not in (3, 4):
        raise InputError(f"tex: expected shape [B, Ht, Wt, C], got "
                         f"{list(tex.shape) if isinstance(tex, torch.Tensor) else type(tex).__name__}")
    if not isinstance(uv, torch.Tensor) or uv.ndim != 4 or uv.shape[-1] != 2:
        raise InputError(f"uv: expected shape [B, H, W, 2], got "
                         f"{list(uv.shape) if isinstance(uv, torch.Tensor) else type(uv).__name__}")
    if tex.ndim == 3:
        tex = tex.unsqueeze(0)
    B = uv.shape[0]
    if tex.shape[0] not in (1, B):
        raise InputError(f"tex: batch size {tex.shape[0]} does not match uv's {B}")
    t = tex.expand(B, -1, -1, -1).permute(0, 3, 1, 2)  # [B, C, Ht, Wt]
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1).to(t.dtype)
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)
