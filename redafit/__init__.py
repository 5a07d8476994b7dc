"""redafit: 3D face reconstruction from photographs by optimization.

Implements ReDA (Zhu et al., CVPR 2020) soft-rasterized differentiable attributes and riggable multi-image
reconstruction (Bai et al., CVPR 2021) on top of pure PyTorch (CPU or CUDA), with nvdiffrast as an optional
accelerator.
"""

__version__ = "0.1.0"

from redafit.errors import RedafitError  # noqa: E402,F401


def __getattr__(name: str):
    """``redafit.fit_photo`` (:func:`redafit.fit.pipeline.fit_photo`) and ``redafit.set_threads``
    (:func:`redafit._runtime.set_threads`) on first use: ``import redafit`` stays light."""
    if name in ("fit_photo", "PhotoFit"):
        from redafit.fit import pipeline

        return getattr(pipeline, name)
    if name == "set_threads":
        from redafit._runtime import set_threads

        return set_threads
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
