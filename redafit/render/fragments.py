"""The rasterizer output: :class:`Fragments` (nvdiffrast-shaped, one triangle per pixel)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class Fragments:
    """Per-pixel result of hard rasterization.

    Attributes:
        bary:   [B, H, W, 3] perspective-correct barycentrics of the visible triangle's three corners (zeros
                where empty). Differentiable w.r.t. the clip-space vertex positions: recomputed from the vertices
                for the pixels that the (non-differentiable) visibility pass selected.
        tri_id: [B, H, W] long, index of the visible triangle, -1 where empty.
        depth:  [B, H, W] camera depth z (= clip w) of the visible surface in mm, 0 where empty; differentiable.
        pix:    [N] long, optional: flat indices into B*H*W of the covered pixels (a cache for
                :func:`~redafit.render.interpolate`; computed on demand when absent).
    """

    bary: torch.Tensor
    tri_id: torch.Tensor
    depth: torch.Tensor
    pix: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def mask(self) -> torch.Tensor:
        """[B, H, W] bool, True where a triangle covers the pixel."""
        return self.tri_id >= 0

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.tri_id.shape[1]), int(self.tri_id.shape[2])

    def covered(self) -> torch.Tensor:
        """[N] long, flat indices into B*H*W of the covered pixels."""
        if self.pix is not None:
            return self.pix
        return torch.nonzero(self.tri_id.reshape(-1) >= 0).squeeze(1)

    def to(self, *args, **kwargs) -> Fragments:
        """Move/cast like ``Tensor.to`` (dtype casts apply to the float fields only)."""
        f = lambda t: None if t is None else t.to(*args, **kwargs)
        dev = lambda t: None if t is None else t.to(device=f(self.bary).device)
        return Fragments(f(self.bary), dev(self.tri_id), f(self.depth), dev(self.pix))

    def detach(self) -> Fragments:
        return replace(self, bary=self.bary.detach(), depth=self.depth.detach())
