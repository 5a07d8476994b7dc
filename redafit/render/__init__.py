"""Differentiable rendering: the rasterizer contract, shading, and the ReDA soft renderer.

* :func:`rasterize` (clip [B, V, 4], tris [F, 3], (H, W)) -> :class:`Fragments`; :func:`interpolate`;
  :func:`texture` — nvdiffrast-shaped ops with a pure-torch backend and an optional nvdiffrast backend.
* :mod:`redafit.render.shading` — vertex normals, SH lighting.
* :mod:`redafit.render.reda` — ReDA soft rasterization (depth slices, Gaussian pyramid) and its loss.
* :mod:`redafit.render.camera` — frames, pose and projection conventions.
"""

from redafit.render.fragments import Fragments  # noqa: F401
from redafit.render.ops import (  # noqa: F401
    BACKENDS,
    interpolate,
    rasterize,
    resolve_backend,
    texture,
)
from redafit.render.reda import (  # noqa: F401
    ReDALoss,
    SoftImage,
    pyramid,
    reda_loss,
    render_pyramid,
    soft_render,
)
from redafit.render.shading import default_sh, sh_basis, shade, vertex_normals  # noqa: F401
