"""Depth maps for RGB-D input (``redafit fit --depth``).

Accepted files (the depth map must be registered to the colour image: same camera, same pixel grid, or the
same aspect so that it can be resampled onto it):

* ``.png`` / ``.tif`` 16-bit single channel: depth in **millimetres** (0 = no measurement, as is 65535, the
  top of the range some sensors write beyond it), the common layout of Kinect / RealSense / Azure exports;
* ``.npy``: float array [H, W] in **metres** (0, negative or NaN = no measurement);
* ``.exr``: float single channel in **metres** (read through OpenCV's OpenEXR codec).

:func:`load_depth` returns float32 millimetres [H, W] with 0 where there is no measurement.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from redafit.errors import InputError


MAX_MEDIAN_DEPTH_MM = 20000.0  # a depth map whose median is beyond 20 m is in the wrong unit, not of a face


def load_depth(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a depth map -> float32 [H, W] millimetres (0 = unknown); resampled (nearest) to ``size`` (W, H)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"depth map not found: {path}")
    ext = path.suffix.lower()
    if ext == ".npy":
        try:
            d = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"cannot read depth map {path}: {e}") from None
        if d.dtype.kind not in "fiu":  # complex, bool, strings: no depth in metres
            raise InputError(f"depth map {path}: expected a real array in metres, got {d.dtype}")
        d = np.asarray(d, np.float32) * 1000.0
    elif ext in (".png", ".tif", ".tiff", ".exr"):
        if ext == ".exr":
            os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
        import cv2

        from redafit.io.images import read_image_file

        d = read_image_file(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if d is None:
            raise InputError(f"cannot read depth map {path}: not a readable image")
        if d.ndim == 3:  # a grey map stored as colour, every channel alike, is taken; a colour image is not
            if d.shape[2] == 1 or (d.shape[2] in (3, 4) and (d[..., 1:3] == d[..., :1]).all()):
                d = d[..., 0]
            else:
                raise InputError(f"depth map {path}: expected a single-channel image, got {d.shape[2]} channels "
                                 "that differ")
        if ext == ".exr":
            d = d.astype(np.float32) * 1000.0
        elif d.dtype == np.uint16:  # 65535, the format's top, is a sensor's "beyond range": no measurement
            d = np.where(d == 65535, 0, d).astype(np.float32)
        else:
            raise InputError(f"depth map {path}: expected a 16-bit single-channel image in mm, got {d.dtype}")
    else:
        raise InputError(f"depth map {path}: unsupported format {ext or '(none)'} (use .png 16-bit mm, .npy or "
                         f".exr metres)")
    hint = ("metres (a map in millimetres saved so? divide it by 1000)" if ext in (".npy", ".exr") else
            "whole millimetres (0 and 65535: no measurement)")
    return registered_depth(d, size, f"depth map {path}", f"a {ext} depth map holds {hint}")


def registered_depth(depth, size: tuple[int, int] | None = None, name: str = "depth map",
                     unit_hint: str = "a depth map array holds millimetres") -> np.ndarray:
    """A depth map array in millimetres [H, W] (0, NaN or negative: unknown) checked as :func:`load_depth` checks
    a file's (2-D, some depth, a median within :data:`MAX_MEDIAN_DEPTH_MM`) and resampled (nearest) to ``size``
    (W, H) when it is the photo's shape at another resolution; ``name`` and ``unit_hint`` go into the errors."""
    d = np.asarray(depth)
    if d.dtype.kind not in "fiu" or d.ndim != 2 or d.size == 0:
        raise InputError(f"{name}: expected a 2-D array of real numbers, got {d.dtype} shape {list(d.shape)}")
    d = d.astype(np.float64)
    d = np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)
    if not (d > 0).any():
        raise InputError(f"{name}: no valid depth values")
    far = float(np.median(d[d > 0]))
    if far > MAX_MEDIAN_DEPTH_MM:  # a face seen from tens of metres is no RGB-D capture: the unit is wrong
        raise InputError(f"{name}: its median depth is {far / 1000:.4g} m; {unit_hint}")
    if size is not None and (d.shape[1], d.shape[0]) != tuple(size):
        import cv2

        (w, h), (dw, dh) = size, (d.shape[1], d.shape[0])
        # registered at another resolution keeps the photo's aspect (up to a pixel's rounding on either side)
        if abs(dw / dh - w / h) > (w / h) * (1 / dh + 1 / h) + 1 / dh:
            raise InputError(f"{name}: {dw} x {dh} is not the photo's shape ({w} x {h}) at another "
                             f"resolution; it must be registered to the photo")
        d = cv2.resize(d, tuple(size), interpolation=cv2.INTER_NEAREST)
    return d
