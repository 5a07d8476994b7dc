"""redafit: 3D face reconstruction from photographs by optimization.

Implements ReDA (Zhu et al., CVPR 2020) soft-rasterized differentiable attributes and riggable multi-image
reconstruction (Bai et al., CVPR 2021) on top of pure PyTorch (CPU or CUDA), with nvdiffrast as an optional
accelerator.
"""

__version__ = "0.1.0"

from redafit.errors import RedafitError  # noqa: E402,F401
