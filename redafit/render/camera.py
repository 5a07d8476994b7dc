"""Camera conventions, pose and projection (pure functions).

Frames and units, documented once:

* **Model frame**: millimetres, y up, the face looks along +z (what :class:`~redafit.model.FaceModel` returns).
* **Camera frame** (OpenCV): millimetres, x right, y down, z forward (away from the camera). A model point X
  maps to ``R @ X + t``. The frontal pose is ``R = R_FLIP = diag(1, -1, -1)`` (180 degrees about x).
* **Pixels**: (0, 0) is the top-left corner of the top-left pixel; pixel (i, j) has its centre at
  (j + 0.5, i + 0.5). ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.
* **Clip space** (the rasterizer contract, nvdiffrast-shaped): ``[x_c, y_c, z_c, w]`` with ``w = z`` (camera
  depth, mm), ``x_c / w = 2 u / W - 1`` and ``y_c / w = 2 v / H - 1``, so image row 0 is at NDC y = -1 — the
  same storage order as nvdiffrast, and images come out top row first with no flip. ``z_c / w`` maps
  [near, far] to [-1, 1].

Pose parameters are an axis-angle vector ``r`` applied on top of the frontal flip: ``R = rodrigues(r) @ R_FLIP``,
so r = 0 is a frontal face and yaw/pitch/roll are small numbers for typical photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Default focal length as a multiple of the larger image side: 1.6 gives a ~35 degree field of view across the
# larger side (a typical portrait lens; ~50 mm full-frame equivalent). Override with --focal.
DEFAULT_FOCAL_FACTOR = 1.6

R_FLIP = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        import math

        from redafit.errors import InputError

        if not all(math.isfinite(v) and v > 0 for v in (self.fx, self.fy)):
            raise InputError(f"camera: the focal length must be a positive number of pixels, got fx={self.fx}, "
                             f"fy={self.fy}")
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)) or self.width < 1 or self.height < 1:
            raise InputError(f"camera: expected a finite principal point and a positive image size, got "
                             f"cx={self.cx}, cy={self.cy}, {self.width} x {self.height}")

    @staticmethod
    def default(width: int, height: int, focal: float | None = None) -> "Intrinsics":
        """Principal point at the image centre, ``focal`` in pixels (default 1.6 x the larger side)."""
        f = float(focal) if focal else DEFAULT_FOCAL_FACTOR * max(width, height)
        return Intrinsics(f, f, width / 2.0, height / 2.0, int(width), int(height))

    @staticmethod
    def from_matrix(K, width: int, height: int) -> "Intrinsics":
        """From an OpenCV 3x3 camera matrix ``K`` (pixel centres at integer coordinates, as ``cv2.calibrateCamera``
        gives) of an image of ``width`` x ``height``: its principal point moved half a pixel into the corner
        convention redafit's pixels use (the image's centre at ``width / 2``)."""
        import numpy as np

        from redafit.errors import InputError

        try:
            k = np.asarray(K, dtype=np.float64)
        except (TypeError, ValueError):
            k = np.zeros(0)
        if k.shape != (3, 3) or not np.isfinite(k).all():
            raise InputError(f"camera: expected a finite 3x3 matrix K, got {getattr(K, 'shape', type(K).__name__)}")
        tol = 1e-9 * max(abs(k[0, 0]), abs(k[1, 1]), 1.0)
        if abs(k[1, 0]) > tol or abs(k[2, 0]) > tol or abs(k[2, 1]) > tol or abs(k[2, 2] - 1) > 1e-9:
            raise InputError("camera: not a pinhole camera matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (transposed, "
                             "or scaled?)")
        if abs(k[0, 1]) > 1e-6 * abs(k[0, 0]):
            raise InputError(f"camera: a skewed camera matrix (K[0, 1] = {k[0, 1]:g}) is not supported")
        return Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]) + 0.5, float(k[1, 2]) + 0.5, int(width),
                          int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera for the image resampled to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def opencv_matrix(self):
        """The OpenCV 3x3 camera matrix (NumPy, float64; pixel centres at integer coordinates): the inverse of
        :meth:`from_matrix`."""
        import numpy as np

        return np.array([[self.fx, 0.0, self.cx - 0.5], [0.0, self.fy, self.cy - 0.5], [0.0, 0.0, 1.0]])

    def matrix(self) -> torch.Tensor:
        """3x3 K in redafit's corner convention (pixel centres at half-integers: :meth:`opencv_matrix` for
        OpenCV's)."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width,
                "height": self.height}

    @staticmethod
    def from_dict(d: dict) -> "Intrinsics":
        """The camera :meth:`to_dict` wrote (a KeyError, TypeError or ValueError when ``d`` is not such a dict; an
        InputError when its values are out of range)."""
        return Intrinsics(*(float(d[k]) for k in ("fx", "fy", "cx", "cy")), int(d["width"]), int(d["height"]))


# The diagonal of a 35 mm film frame (36 x 24 mm): a 35 mm-equivalent focal length f (EXIF's FocalLengthIn35mmFilm)
# gives the same diagonal field of view on any image as f on that frame, so in pixels it is f x the image's
# diagonal / this (the equivalence by the diagonal, as camera makers compute it)
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
# a 35 mm-equivalent focal length outside this range is a wrong tag, not a lens (fisheyes start at ~8 mm; the longest
# phone and compact zooms reach ~2000 mm)
EXIF_FOCAL_RANGE_MM = (8.0, 2400.0)
# a photo whose aspect ratio differs from the image the camera wrote by more than this was cropped since
CROP_ASPECT_TOLERANCE = 0.02
FOCAL_KINDS = ("auto", "px", "mm", "x")


@dataclass(frozen=True)
class FocalSpec:
    """How a photo's focal length is chosen (``redafit fit --focal``).

    ``kind``:

    * ``"auto"``: the photo's EXIF 35 mm-equivalent focal length when it has one and was not cropped since (its
      shape is the one the camera wrote), else ``DEFAULT_FOCAL_FACTOR`` x the longer side;
    * ``"px"``: ``value`` pixels of the photo as stored (scaled with the image when it is downscaled on load);
    * ``"mm"``: a 35 mm-equivalent focal length of ``value`` mm (a phone's main camera: 24-28);
    * ``"x"``: ``value`` x the image's longer side (``1.6x``: the default, ignoring EXIF).

    The text forms (:meth:`parse`): ``auto``, ``1200`` or ``1200px``, ``26mm``, ``1.6x``.
    """

    kind: str = "auto"
    value: float = 0.0

    @staticmethod
    def parse(text) -> "FocalSpec":
        """``auto``, ``<pixels>[px]``, ``<mm>mm`` or ``<factor>x`` -> FocalSpec; a :class:`UsageError` naming the
        forms otherwise."""
        from redafit.errors import UsageError

        if isinstance(text, FocalSpec):
            return text
        t = str(text).strip().lower().replace(" ", "")
        if t == "auto":
            return FocalSpec()
        for suffix, kind in (("px", "px"), ("mm", "mm"), ("x", "x"), ("", "px")):
            if suffix and not t.endswith(suffix):
                continue
            try:
                v = float(t[:len(t) - len(suffix)])
            except ValueError:
                break
            if not (math.isfinite(v) and v > 0):
                break
            return FocalSpec(kind, v)
        raise UsageError(f"--focal: expected auto, a focal length in pixels (1200 or 1200px), a 35 mm-equivalent "
                         f"one (26mm) or a multiple of the longer image side (1.6x); got {text!r}")

    def __str__(self) -> str:
        return "auto" if self.kind == "auto" else f"{self.value:g}{self.kind}"

    def resolve(self, width: int, height: int, scale: float = 1.0, camera=None) -> tuple[float, str]:
        """(the focal length in pixels of the image of ``width`` x ``height`` as loaded, a note on where it came
        from). ``scale``: loaded size / the photo's own (:class:`~redafit.io.images.ImageMeta`); ``camera``: its
        EXIF (:class:`~redafit.io.images.ExifCamera`), for ``auto``."""
        diag = math.hypot(width, height)
        if self.kind == "px":
            return self.value * scale, f"--focal {self.value:g} px"
        if self.kind == "mm":
            return self.value * diag / FULL_FRAME_DIAGONAL_MM, f"--focal {self.value:g} mm (35 mm equivalent)"
        if self.kind == "x":
            return self.value * max(width, height), f"--focal {self.value:g} x the longer side"
        default = DEFAULT_FOCAL_FACTOR * max(width, height)
        f35 = getattr(camera, "focal_35mm", None)
        if not f35:
            return default, "default"
        if not EXIF_FOCAL_RANGE_MM[0] <= f35 <= EXIF_FOCAL_RANGE_MM[1]:
            return default, f"default (EXIF's {f35:g} mm equivalent is no lens's)"
        shot = getattr(camera, "pixel_size", None)
        if shot:
            aspect, shot_aspect = min(width, height) / max(width, height), min(shot) / max(shot)
            if abs(aspect / shot_aspect - 1) > CROP_ASPECT_TOLERANCE:
                return default, (f"default (EXIF's {f35:g} mm equivalent left aside: the photo, {width}x{height}, "
                                 f"is cropped from the camera's {shot[0]}x{shot[1]})")
        return f35 * diag / FULL_FRAME_DIAGONAL_MM, f"EXIF: {f35:g} mm (35 mm equivalent)"

    def intrinsics(self, width: int, height: int, scale: float = 1.0, camera=None) -> tuple["Intrinsics", str]:
        """(:class:`Intrinsics` of the image as loaded, principal point at its centre; the focal's source)."""
        f, source = self.resolve(width, height, scale, camera)
        return Intrinsics.default(width, height, f), source


def rodrigues(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle [B, 3] -> rotation matrices [B, 3, 3]; smooth (and differentiable) at r = 0."""
    theta2 = (r * r).sum(-1, keepdim=True)  # [B, 1]
    theta = torch.sqrt(theta2 + 1e-12)
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos t)/t^2 with Taylor fallbacks near zero
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = r.unbind(-1)
    zero = torch.zeros_like(x)
    Kx = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*r.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(Kx)
    return eye + a[..., None] * Kx + b[..., None] * (Kx @ Kx)


def pose_rotation(r: torch.Tensor) -> torch.Tensor:
    """Full model-to-camera rotation [B, 3, 3] from the pose parameter r [B, 3] (frontal flip included)."""
    return rodrigues(r) @ R_FLIP.to(r)


def rotation_to_euler(R: torch.Tensor) -> torch.Tensor:
    """Yaw, pitch, roll in degrees [B, 3] of ``R @ R_FLIP^T`` (y-x-z order: yaw about y, pitch x, roll z).

    Positive yaw turns the face towards the image's left (the person's own right), positive pitch makes it look
    down, positive roll turns it clockwise in the image.
    """
    M = R @ R_FLIP.to(R).T
    yaw = torch.atan2(M[..., 0, 2], M[..., 2, 2])
    pitch = torch.asin((-M[..., 1, 2]).clamp(-1, 1))
    roll = torch.atan2(M[..., 1, 0], M[..., 1, 1])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], -1))


def euler_to_r(yaw: float, pitch: float, roll: float, dtype=torch.float32) -> torch.Tensor:
    """Axis-angle pose parameter [3] for yaw, pitch, roll in degrees (inverse of :func:`rotation_to_euler`)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    Ry = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]], dtype=dtype)
    Rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]], dtype=dtype)
    Rz = torch.tensor([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]], dtype=dtype)
    return matrix_to_axis_angle(Ry @ Rx @ Rz)


def matrix_to_axis_angle(M: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [..., 3, 3] -> axis-angle [..., 3] (not differentiable at pi; used for initialisation)."""
    cos = ((M[..., 0, 0] + M[..., 1, 1] + M[..., 2, 2] - 1) / 2).clamp(-1, 1)
    theta = torch.acos(cos)
    v = torch.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]], -1)
    s = torch.sin(theta)
    axis = torch.where(s.abs()[..., None] > 1e-6, v / (2 * s[..., None]).clamp_min(1e-12) * (s.sign()[..., None]),
                       torch.zeros_like(v))
    # near pi: axis from the diagonal
    near_pi = theta > math.pi - 1e-3
    if bool(near_pi.any()):
        d = ((torch.diagonal(M, dim1=-2, dim2=-1) + 1) / 2).clamp_min(0).sqrt()
        sign = torch.sign(v + 1e-12)
        axis = torch.where(near_pi[..., None], d * torch.where(sign == 0, torch.ones_like(sign), sign), axis)
    return axis * theta[..., None]


def transform(vertices: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Model [B, V, 3] -> camera frame [B, V, 3]: ``R @ X + t`` with R [B, 3, 3], t [B, 3] (mm)."""
    return vertices @ R.transpose(-1, -2) + t.unsqueeze(-2)


def project(points_cam: torch.Tensor, K: Intrinsics) -> torch.Tensor:
    """Camera-frame points [B, V, 3] -> pixel coordinates [B, V, 2] (top-left-corner origin)."""
    z = points_cam[..., 2:3].clamp_min(1e-6)
    u = K.fx * points_cam[..., 0:1] / z + K.cx
    v = K.fy * points_cam[..., 1:2] / z + K.cy
    return torch.cat([u, v], -1)


def to_clip(points_cam: torch.Tensor, K: Intrinsics, near: float = 10.0, far: float = 10000.0) -> torch.Tensor:
    """Camera-frame points [B, V, 3] (mm) -> clip-space [B, V, 4] per the module's convention."""
    x, y, z = points_cam.unbind(-1)
    xc = (2 * K.fx / K.width) * x + (2 * K.cx / K.width - 1) * z
    yc = (2 * K.fy / K.height) * y + (2 * K.cy / K.height - 1) * z
    zc = z * (far + near) / (far - near) - 2 * far * near / (far - near)
    return torch.stack([xc, yc, zc, z], -1)
