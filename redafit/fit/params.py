"""Trainable fit parameters and the geometry they produce (pure functions + a small container)."""

from __future__ import annotations

import torch

from redafit.model.face_model import FaceModel
from redafit.render.camera import Intrinsics, pose_rotation, transform

PARAM_NAMES = ("rot", "trans", "id", "exp", "sh", "spec", "albedo", "albedo_reg", "disp")


def camera_tensor(intrinsics: list[Intrinsics], device=None, dtype=torch.float32) -> torch.Tensor:
    """[B, 4] (fx, fy, cx, cy) from a list of :class:`Intrinsics`."""
    return torch.tensor([[k.fx, k.fy, k.cx, k.cy] for k in intrinsics], device=device, dtype=dtype)


def project_batch(points_cam: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Camera-frame points [B, N, 3] and cam [B, 4] -> pixels [B, N, 2] (top-left-corner origin)."""
    z = points_cam[..., 2].clamp_min(1e-3)
    u = cam[:, None, 0] * points_cam[..., 0] / z + cam[:, None, 2]
    v = cam[:, None, 1] * points_cam[..., 1] / z + cam[:, None, 3]
    return torch.stack([u, v], -1)


class FitParams(torch.nn.Module):
    """All trainable quantities of a fit of B images.

    Attributes (``torch.nn.Parameter``):
        rot    [B, 3]          axis-angle on top of the frontal flip (see :mod:`redafit.render.camera`)
        trans  [B, 3]          mm, camera frame
        id     [Bi, Ki]        identity coefficients; Bi = 1 when ``shared_id`` (one person, several images)
        exp    [B, Ke]         expression coefficients
        sh     [B, 9, 3]       spherical-harmonics lighting
        spec   [B, 1]          strength of the specular highlight of the lighting's dominant light (>= 0; see
                               :func:`redafit.render.shading.specular`)
        albedo [Bi, Ha, Wa, 3] UV albedo map in [0, 1] (colour attribute only): the smooth skin albedo
        albedo_reg [Bi, 7, 3]  per-region albedo offsets added to the map on the model's face regions (brows, eyes,
                               lips, mouth interior; see :data:`redafit.fit.attribute_stages.ALBEDO_REGIONS`)
        disp   [Bi, V, 3]      free-form displacement in mm (model frame)
    """

    def __init__(self, model: FaceModel, batch: int, n_id: int | None = None, n_exp: int | None = None,
                 shared_id: bool = False, albedo_size: int = 64):
        super().__init__()
        dev = model.mean.device
        n_id = model.n_id if n_id is None else min(n_id, model.n_id)
        n_exp = model.n_exp if n_exp is None else min(n_exp, model.n_exp)
        bi = 1 if shared_id else batch
        self.batch, self.shared_id, self.unit_exp = batch, shared_id, model.info.expression_prior == "unit"
        P = torch.nn.Parameter
        self.rot = P(torch.zeros(batch, 3, device=dev))
        self.trans = P(torch.tensor([[0.0, 0.0, 600.0]], device=dev).repeat(batch, 1))
        self.id = P(torch.zeros(bi, n_id, device=dev))
        self.exp = P(torch.zeros(batch, n_exp, device=dev))
        from redafit.render.shading import default_sh

        self.sh = P(default_sh(batch, device=dev))  # ambient + a light from the camera
        self.spec = P(torch.zeros(batch, 1, device=dev))
        self.albedo = P(torch.full((bi, albedo_size, albedo_size, 3), 0.5, device=dev))
        from redafit.parsing.regions import N_REGIONS

        self.albedo_reg = P(torch.zeros(bi, N_REGIONS, 3, device=dev))
        self.disp = P(torch.zeros(bi, model.n_vertices, 3, device=dev))

    def named(self, name: str) -> torch.nn.Parameter:
        return getattr(self, name)

    def _expand(self, t: torch.Tensor) -> torch.Tensor:
        return t.expand(self.batch, *t.shape[1:]) if t.shape[0] == 1 and self.batch > 1 else t

    def shape_model(self, model: FaceModel, with_disp: bool = True, expression: bool = True) -> torch.Tensor:
        """Model-frame vertices [B, V, 3] mm (identity + expression [+ free-form displacement])."""
        v = model(self._expand(self.id), self.exp if expression else None, batch_size=self.batch)
        if with_disp:
            v = v + self._expand(self.disp)
        return v

    def rotation(self) -> torch.Tensor:
        """[B, 3, 3] model-to-camera rotation."""
        return pose_rotation(self.rot)

    def to_camera(self, verts_model: torch.Tensor) -> torch.Tensor:
        return transform(verts_model, self.rotation(), self.trans)

    @torch.no_grad()
    def project_constraints(self) -> None:
        """Keep parameters in their valid ranges after an optimiser step."""
        if self.unit_exp:
            self.exp.clamp_(0.0, 1.0)
        self.albedo.clamp_(0.0, 1.0)
        self.spec.clamp_(0.0, 1.0)
        self.albedo_reg.clamp_(-1.0, 1.0)
        self.trans[:, 2].clamp_(min=50.0)
