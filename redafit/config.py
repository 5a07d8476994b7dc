"""Configuration: frozen dataclasses with documented defaults (one per concern).

Library code takes these objects; the CLI builds them from options. Every field documents its unit and default.
Use :func:`dataclasses.replace` to derive variants (ablations are configurations, not code paths).
"""

from __future__ import annotations

from dataclasses import dataclass

from redafit.errors import UsageError

RENDER_MODES = ("reda", "zbuffer")
RASTER_BACKENDS = ("auto", "torch", "nvdiffrast")


@dataclass(frozen=True)
class RenderConfig:
    """How attribute images are rendered for the losses (:mod:`redafit.render.reda`).

    Attributes:
        mode: ``"reda"`` — the ReDA soft renderer (paper Sec. 4.2): depth slices, Gaussian softening,
            depth-weighted aggregation and an image pyramid; ``"zbuffer"`` — the paper's baseline: one hard
            z-buffered image, no softening, one pyramid level (``slices``/``pyramid_levels``/``kernel_size``/
            ``sigma``/``depth_temperature`` are then ignored).
        slices: K, number of depth zones the mesh is cut into, spread evenly over the mesh's camera-depth range
            (per batch entry). Default 5 (the paper's choice).
        pyramid_levels: L, number of pyramid levels compared by the loss; level 0 is full resolution, each next
            level is the previous one convolved with the same Gaussian kernel at stride 2. Default 6 (the paper's;
            the fit's attribute stages use :data:`redafit.fit.attribute_stages.FIT_PYRAMID_LEVELS` = 4 at their
            192 px image size).
        kernel_size: side of the (separable) Gaussian kernel in pixels, odd. Default 5.
        sigma: its standard deviation in pixels. Default 1.0 (the 5-tap kernel then holds 98.8% of the mass). The
            fit's attribute stages use 0.5 with 3 taps (``redafit.fit.attribute_stages.FIT_SIGMA``).
        depth_temperature: temperature of the depth softmax that aggregates slices, in units of the mesh's depth
            range (0 = nearest point, 1 = farthest). Default 0.05: two surfaces one slice (0.2) apart differ
            by a factor e^4 ~ 55 in weight, so the nearer one dominates where slices overlap.
        backend: rasterizer backend, ``"auto"`` (nvdiffrast on CUDA when it imports, else torch), ``"torch"``
            or ``"nvdiffrast"``. Default ``"auto"``.
        cull_backfaces: drop triangles facing away from the camera. Default False (both sides rendered).
    """

    mode: str = "reda"
    slices: int = 5
    pyramid_levels: int = 6
    kernel_size: int = 5
    sigma: float = 1.0
    depth_temperature: float = 0.05
    backend: str = "auto"
    cull_backfaces: bool = False

    def __post_init__(self):
        if self.mode not in RENDER_MODES:
            raise UsageError(f"render mode must be one of {', '.join(RENDER_MODES)}, got {self.mode!r}")
        if self.backend not in RASTER_BACKENDS:
            raise UsageError(f"raster backend must be one of {', '.join(RASTER_BACKENDS)}, got {self.backend!r}")
        if int(self.slices) < 1:
            raise UsageError(f"slices must be >= 1, got {self.slices}")
        if int(self.pyramid_levels) < 1:
            raise UsageError(f"pyramid_levels must be >= 1, got {self.pyramid_levels}")
        if int(self.kernel_size) < 1 or int(self.kernel_size) % 2 == 0:
            raise UsageError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if not float(self.sigma) > 0:
            raise UsageError(f"sigma must be > 0, got {self.sigma}")
        if not float(self.depth_temperature) > 0:
            raise UsageError(f"depth_temperature must be > 0, got {self.depth_temperature}")

    @staticmethod
    def zbuffer(**kw) -> RenderConfig:
        """The z-buffer baseline (one slice, no softening, one level)."""
        return RenderConfig(mode="zbuffer", slices=1, pyramid_levels=1, **kw)
