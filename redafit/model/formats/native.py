"""redafit's own canonical model file: an uncompressed ``.npz`` with the arrays of ``FaceModel.to_npz_dict()``.

Keys (``format = "redafit-face-model-1"``): ``mean [V,3]`` mm, ``id_basis [Ki,V,3]``, ``exp_basis [Ke,V,3]``,
``expression_names [Ke]``, ``triangles [F,3]`` int32, ``uv [T,2]``, ``uv_triangles [F,3]``, ``landmark_ids [68]``
(-1 = none), ``contour_right``, ``contour_left``, optional ``albedo_mean [V,3]`` / ``albedo_basis [Ka,V,3]``, and
the metadata strings ``name``, ``source``, ``licence``, ``units_in_file``, ``expression_prior``, ``extra_json``.
Everything is already in the model frame (mm), so loading is a straight copy.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from redafit.errors import ModelError, OutputError
from redafit.model.face_model import FaceModel, ModelInfo
from redafit.model.formats import register
from redafit.io import jsonsafe

FORMAT_TAG = "redafit-face-model-1"
MODEL_FILE = "model.npz"  # the file name inside an installed model folder


def _npz_has_tag(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "format" in z.files and str(z["format"]).startswith("redafit-face-model")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


def detect(path: Path) -> bool:
    if path.is_dir():
        return (path / MODEL_FILE).is_file() and _npz_has_tag(path / MODEL_FILE)
    return path.suffix.lower() == ".npz" and _npz_has_tag(path)


def save(model: FaceModel, path) -> Path:
    """Write ``model`` to ``path`` (``.npz``) atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    d = model.to_npz_dict()
    d["format"] = np.array(FORMAT_TAG)
    d["extra_json"] = np.array(jsonsafe.dumps(model.info.extra, default=str))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **d)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise OutputError(f"cannot write model file {path}: {e}") from None
    return path


def load(path: Path) -> FaceModel:
    if path.is_dir():
        path = path / MODEL_FILE
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{path}: cannot read model file ({e})") from None
    with z:
        try:
            tag = str(z["format"])
            if not tag.startswith("redafit-face-model"):
                raise ModelError(f"{path}: not a redafit model file (format '{tag}')")
            if tag != FORMAT_TAG:
                raise ModelError(f"{path}: model format '{tag}' is newer than this redafit reads ({FORMAT_TAG})")
            s = lambda k, default="": str(z[k]) if k in z.files else default
            try:
                extra = json.loads(s("extra_json", "{}"))
            except json.JSONDecodeError:
                extra = {}
            info = ModelInfo(name=s("name", "custom"), source=s("source"), licence=s("licence"),
                             units_in_file=s("units_in_file", "mm"),
                             expression_prior=s("expression_prior", "gaussian"), extra=extra)
            has_albedo = "albedo_mean" in z.files
            return FaceModel(
                mean=z["mean"], id_basis=z["id_basis"], exp_basis=z["exp_basis"], triangles=z["triangles"],
                uv=z["uv"], uv_triangles=z["uv_triangles"], landmark_ids=z["landmark_ids"],
                contour_right=z["contour_right"], contour_left=z["contour_left"],
                expression_names=[str(n) for n in z["expression_names"]],
                albedo_mean=z["albedo_mean"] if has_albedo else None,
                albedo_basis=z["albedo_basis"] if has_albedo else None,
                info=info,
            )
        except KeyError as e:  # numpy says "'<key> is not a file in the archive'"
            key = str(e.args[0] if e.args else e).split(" is not a file")[0]
            raise ModelError(f"{path}: model file lacks the array '{key}'") from None
        except (ValueError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise ModelError(f"{path}: corrupt model file ({e})") from None


register("native", detect, load, "redafit's canonical .npz (what `redafit models install` writes)")
