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

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera for the image resampled to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def matrix(self) -> torch.Tensor:
        """3x3 K."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width,
                "height": self.height}


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

    Positive yaw turns the face towards the image's right.
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
