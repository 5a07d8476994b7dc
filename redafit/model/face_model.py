"""The in-memory 3D morphable face model.

A :class:`FaceModel` is a ``torch.nn.Module`` holding buffers only (``.to(device)`` just works); its forward
is the pure function :func:`blend`. Every loader in :mod:`redafit.model.formats` returns one, with geometry
converted to **millimetres**, y up, the face looking along +z (the model frame).

Shapes: V vertices, F triangles, T UV coordinates, Ki identity modes, Ke expression modes, Ka albedo modes.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from redafit.errors import ModelError
from redafit.io.arrays import kind_words, shape_problem

N_LANDMARKS = 68


def blend(mean: torch.Tensor, basis: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Linear blend ``mean + sum_k coeffs[:, k] * basis[k]``.

    mean [V, 3], basis [K, V, 3], coeffs [B, K] -> [B, V, 3]. K may be 0.
    """
    B = coeffs.shape[0]
    if basis.shape[0] == 0:
        return mean.unsqueeze(0).expand(B, -1, -1)
    flat = basis.reshape(basis.shape[0], -1)  # [K, V*3]
    return mean.unsqueeze(0) + (coeffs @ flat).reshape(B, *mean.shape)


class ModelArrayError(ModelError):
    """A model's arrays are malformed or do not fit together (wrong shapes, NaN, text, indices out of range): raised
    by the :class:`FaceModel` constructor, which knows no file; :func:`redafit.model.formats.load_file` adds the
    file's name."""


def _numbers(name: str, a, index: bool = False) -> np.ndarray:
    """``a`` (array-like or tensor) as a numpy array of real numbers: float32 and finite, or (``index``) int64 of
    whole numbers; :class:`ModelArrayError` naming the array otherwise."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise ModelArrayError(f"model {name}: expected numbers, got {kind_words(a.dtype)}")
    if index:
        if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise ModelArrayError(f"model {name}: expected whole-number indices, got fractional or non-finite values")
        return a.astype(np.int64, copy=False)
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused below
        a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ModelArrayError(f"model {name}: contains NaN or infinite values")
    return a


def _check_shape(name: str, a: np.ndarray, expected: tuple, note: str = "") -> None:
    """:class:`ModelArrayError` unless ``a.shape`` matches ``expected`` (ints, or None for any size)."""
    problem = shape_problem(a.shape, expected, note)
    if problem:
        raise ModelArrayError(f"model {name}: {problem}")


def _basis(name: str, a, V: int) -> np.ndarray:
    """A basis [K, V, 3] (also given flattened [K, V*3]); None is an empty one [0, V, 3]."""
    if a is None:
        return np.zeros((0, V, 3), np.float32)
    a = _numbers(name, a)
    if a.ndim == 2 and a.shape[1] == 3 * V:
        a = a.reshape(-1, V, 3)
    _check_shape(name, a, (None, V, 3), f" ({V} vertices, as the mean)")
    return a


def _indices(name: str, a, expected: tuple, n: int, low: int = 0, note: str = "") -> np.ndarray:
    """Whole-number ids [``expected``] into ``n`` items (``low``: the smallest allowed, -1 for "none")."""
    a = _numbers(name, a, index=True)
    _check_shape(name, a, expected, note)
    if a.size and (a.min() < low or a.max() >= n):
        raise ModelArrayError(f"model {name}: index outside {low}..{n - 1} (got {a.min()}..{a.max()})")
    return a


@dataclass
class ModelInfo:
    """Descriptive metadata of a model (not used by the math)."""

    name: str
    source: str = ""
    licence: str = ""
    units_in_file: str = "mm"
    expression_prior: str = "gaussian"  # "gaussian" (N(0,1) weights) or "unit" (blendshape weights in [0, 1])
    extra: dict = field(default_factory=dict)


class FaceModel(torch.nn.Module):
    """A linear face model: ``vertices = mean + B_id @ alpha + B_exp @ beta`` (millimetres).

    Buffers:
        mean            [V, 3]      float, mm
        id_basis        [Ki, V, 3]  float, mm per unit coefficient (coefficients ~ N(0, 1))
        exp_basis       [Ke, V, 3]  float, mm per unit coefficient
        triangles       [F, 3]      long, 0-based, counter-clockwise seen from the front (outward normals)
        uv              [T, 2]      float in [0, 1], v up (OBJ convention)
        uv_triangles    [F, 3]      long, per-corner ids into ``uv``
        landmark_ids    [68]        long, vertex id of each iBUG-68 point, -1 where the model has none fixed
                                    (e.g. jaw points that slide along the contour)
        contour_right   [Nr]        long, jaw contour candidates for points 0-7 (subject's right = image left)
        contour_left    [Nl]        long, jaw contour candidates for points 9-16
        albedo_mean     [V, 3]      float in [0, 1] (optional: zero-size when the model has none)
        albedo_basis    [Ka, V, 3]  float (optional)
    """

    def __init__(
        self,
        mean,
        id_basis,
        exp_basis,
        triangles,
        uv=None,
        uv_triangles=None,
        landmark_ids=None,
        contour_right=None,
        contour_left=None,
        expression_names=None,
        albedo_mean=None,
        albedo_basis=None,
        info: ModelInfo | None = None,
    ):
        super().__init__()
        mean = _numbers("mean", mean)
        if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] == 0:
            raise ModelArrayError(f"model mean: expected shape [V, 3], got {list(mean.shape)}")
        V = mean.shape[0]
        id_basis = _basis("id_basis", id_basis, V)
        exp_basis = _basis("exp_basis", exp_basis, V)
        triangles = _indices("triangles", triangles, (None, 3), V)
        if triangles.shape[0] == 0:
            raise ModelArrayError("model triangles: expected shape [F, 3] with F > 0, got [0, 3]")
        F = triangles.shape[0]
        uv = _numbers("uv", uv) if uv is not None else np.zeros((0, 2), np.float32)
        _check_shape("uv", uv, (None, 2))
        if uv.shape[0] == 0:  # no UVs: the UV triangles are the triangles
            uv_triangles = triangles.copy()
        else:
            uv_triangles = _indices("uv_triangles", uv_triangles if uv_triangles is not None else triangles,
                                    (F, 3), uv.shape[0], note=f" (one per triangle, ids into the {uv.shape[0]} uv)")
        landmark_ids = (_indices("landmark_ids", landmark_ids, (N_LANDMARKS,), V, low=-1)
                        if landmark_ids is not None else np.full(N_LANDMARKS, -1, np.int64))
        contour_right = _indices("contour_right", contour_right if contour_right is not None else [], (None,), V)
        contour_left = _indices("contour_left", contour_left if contour_left is not None else [], (None,), V)
        albedo_mean = _numbers("albedo_mean", albedo_mean) if albedo_mean is not None else np.zeros(0)
        if albedo_mean.size == 0:  # no albedo
            albedo_mean = np.zeros((0, 3), np.float32)
        else:
            _check_shape("albedo_mean", albedo_mean, (V, 3), f" ({V} vertices, as the mean)")
        albedo_basis = _basis("albedo_basis", albedo_basis, V)
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        i = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
        mean, id_basis, exp_basis, uv = f(mean), f(id_basis), f(exp_basis), f(uv)
        triangles, uv_triangles, landmark_ids = i(triangles), i(uv_triangles), i(landmark_ids)
        self.register_buffer("mean", mean)
        self.register_buffer("id_basis", id_basis)
        self.register_buffer("exp_basis", exp_basis)
        self.register_buffer("triangles", triangles)
        self.register_buffer("uv", uv)
        self.register_buffer("uv_triangles", uv_triangles)
        self.register_buffer("landmark_ids", landmark_ids)
        self.register_buffer("contour_right", i(contour_right))
        self.register_buffer("contour_left", i(contour_left))
        self.register_buffer("albedo_mean", f(albedo_mean))
        self.register_buffer("albedo_basis", f(albedo_basis))
        self.expression_names = list(expression_names) if expression_names is not None else [
            f"exp{k:03d}" for k in range(exp_basis.shape[0])
        ]
        if len(self.expression_names) != exp_basis.shape[0]:
            raise ModelArrayError(f"model expression_names: {len(self.expression_names)} names for the "
                                  f"{exp_basis.shape[0]} modes of exp_basis")
        self.info = info or ModelInfo(name="custom")

    # -- sizes -------------------------------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def n_triangles(self) -> int:
        return self.triangles.shape[0]

    @property
    def n_id(self) -> int:
        return self.id_basis.shape[0]

    @property
    def n_exp(self) -> int:
        return self.exp_basis.shape[0]

    @property
    def n_albedo(self) -> int:
        return self.albedo_basis.shape[0]

    @property
    def has_albedo(self) -> bool:
        return self.albedo_mean.shape[0] == self.n_vertices

    @property
    def has_uv(self) -> bool:
        return self.uv.shape[0] > 0

    @property
    def name(self) -> str:
        return self.info.name

    # -- math ----------------------------------------------------------------------------------------------------
    def forward(self, id_coeffs: torch.Tensor | None = None, exp_coeffs: torch.Tensor | None = None,
                batch_size: int | None = None) -> torch.Tensor:
        """Vertices [B, V, 3] in mm (model frame) from id_coeffs [B, Ki'] and exp_coeffs [B, Ke'].

        Either may be None (zeros); fewer columns than the model has use the leading modes only.
        """
        B = batch_size or (id_coeffs.shape[0] if id_coeffs is not None else
                           exp_coeffs.shape[0] if exp_coeffs is not None else 1)
        v = self.mean.unsqueeze(0).expand(B, -1, -1)
        if id_coeffs is not None and id_coeffs.shape[1] > 0:
            v = v + blend(torch.zeros_like(self.mean), self.id_basis[: id_coeffs.shape[1]], id_coeffs)
        if exp_coeffs is not None and exp_coeffs.shape[1] > 0:
            v = v + blend(torch.zeros_like(self.mean), self.exp_basis[: exp_coeffs.shape[1]], exp_coeffs)
        return v

    def albedo(self, albedo_coeffs: torch.Tensor | None = None, batch_size: int = 1) -> torch.Tensor:
        """Per-vertex albedo [B, V, 3] in [0, 1] from the model's albedo basis (requires ``has_albedo``)."""
        if not self.has_albedo:
            raise ModelError(f"model '{self.name}' has no albedo basis")
        if albedo_coeffs is None:
            return self.albedo_mean.unsqueeze(0).expand(batch_size, -1, -1)
        return blend(self.albedo_mean, self.albedo_basis[: albedo_coeffs.shape[1]], albedo_coeffs)

    def fixed_landmark_mask(self) -> torch.Tensor:
        """[68] bool: landmarks with a fixed vertex (``landmark_ids >= 0``)."""
        return self.landmark_ids >= 0

    def summary(self) -> dict:
        """Counts, units and licence as a plain dict (what ``redafit models info`` prints)."""
        return {
            "name": self.name,
            "vertices": self.n_vertices,
            "triangles": self.n_triangles,
            "identity_modes": self.n_id,
            "expression_modes": self.n_exp,
            "albedo_modes": self.n_albedo if self.has_albedo else 0,
            "uv_coordinates": int(self.uv.shape[0]),
            "landmarks_fixed": int(self.fixed_landmark_mask().sum()),
            "contour_candidates": [int(self.contour_right.numel()), int(self.contour_left.numel())],
            "units": "mm",
            "units_in_file": self.info.units_in_file,
            "expression_prior": self.info.expression_prior,
            "source": self.info.source,
            "licence": self.info.licence,
        }

    # -- canonical storage ----------------------------------------------------------------------------------------
    def to_npz_dict(self) -> dict:
        """Arrays of redafit's own canonical ``.npz`` format (see :mod:`redafit.model.formats.native`)."""
        c = lambda t: t.detach().cpu().numpy()  # noqa: E731
        d = {
            "format": np.array("redafit-face-model-1"),
            "name": np.array(self.info.name),
            "source": np.array(self.info.source),
            "licence": np.array(self.info.licence),
            "units_in_file": np.array(self.info.units_in_file),
            "expression_prior": np.array(self.info.expression_prior),
            "mean": c(self.mean),
            "id_basis": c(self.id_basis),
            "exp_basis": c(self.exp_basis),
            "expression_names": np.array(self.expression_names, dtype=str),
            "triangles": c(self.triangles).astype(np.int32),
            "uv": c(self.uv),
            "uv_triangles": c(self.uv_triangles).astype(np.int32),
            "landmark_ids": c(self.landmark_ids).astype(np.int32),
            "contour_right": c(self.contour_right).astype(np.int32),
            "contour_left": c(self.contour_left).astype(np.int32),
        }
        if self.has_albedo:
            d["albedo_mean"] = c(self.albedo_mean)
            d["albedo_basis"] = c(self.albedo_basis)
        return d


_DERIVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def derived_cache(model: FaceModel) -> dict:
    """A dict that keeps data derived from ``model``'s geometry (region labels, ambient occlusion) with the model
    object; it starts empty again when the mean shape, triangles, landmark ids, UVs or UV triangles are replaced
    (``.to(device)``, a new buffer) or resized. Callers store their results under keys of their own."""
    key = tuple((b.data_ptr(), tuple(b.shape), str(b.device)) for b in
                (model.mean, model.triangles, model.landmark_ids, model.uv, model.uv_triangles))
    entry = _DERIVED.get(model)
    if entry is None or entry.get("_key") != key:
        entry = {"_key": key}
        _DERIVED[model] = entry
    return entry
