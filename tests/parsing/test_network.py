"""The optional parsing network path, with a tiny TorchScript module standing in for a BiSeNet checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from redafit.errors import ModelError
from redafit.parsing import load_parsing_network, parse_image
from redafit.parsing.network import IMAGENET_MEAN, IMAGENET_STD

from ._helpers import eye_distance, load_photo


class _GreenIsHair(torch.nn.Module):
    """19 CelebAMask-HQ logits at quarter resolution: 'hair' where the pixel is green, else 'skin'."""

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.n = n_classes

    def forward(self, x):
        rgb = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        rgb = torch.nn.functional.avg_pool2d(rgb, 4)
        green = rgb[:, 1:2] - rgb[:, 0:1]
        chans = [green * 0.0 - 10.0 for _ in range(self.n)]
        chans[1] = green * 0.0
        if self.n > 17:
            chans[17] = 40.0 * green
        logits = torch.cat(chans, 1)
        return logits, logits  # BiSeNet-style tuple: the first element is used


class _FixedSize(torch.nn.Module):
    """A module that only runs at the traced input size (a reshape with the size baked in)."""

    def forward(self, x):
        return x.reshape(1, 3, 64 * 64)[:, :1].reshape(1, 1, 64, 64).expand(1, 19, 64, 64)


def _export(module, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(module.eval(), torch.zeros(1, 3, 64, 64)).save(str(path))


@pytest.fixture()
def scripted(tmp_path):
    path = tmp_path / "parsing.pt"
    _export(_GreenIsHair(), path)
    return path


def test_network_labels_and_occluders(faces_dir, scripted):
    img, lm = load_photo(faces_dir, "eos_image_0010.jpg")
    s = eye_distance(lm)
    c = (lm[2] + lm[31] + lm[48] + lm[41]) / 4
    x0, y0 = (c - 0.18 * s).astype(int)
    x1, y1 = (c + 0.18 * s).astype(int)
    img[y0:y1, x0:x1] = (0.05, 0.95, 0.1)
    net = load_parsing_network(scripted)
    r = parse_image(img, lm, network=net)
    H, W = img.shape[:2]
    assert r.labels.shape == (H, W, 7) and r.valid.shape == (H, W)
    inner = np.s_[y0 + 8: y1 - 8, x0 + 8: x1 - 8]
    assert (~r.valid[inner]).all() and not r.face_mask[inner].any()
    nose_tip = lm[30].astype(int)
    assert r.region("skin")[nose_tip[1], nose_tip[0]]
    assert r.valid[:20, :20].all() and not r.face_mask[:20, :20].any()  # outside the crop: background


def test_network_errors(tmp_path, scripted):
    with pytest.raises(ModelError, match="not found"):
        load_parsing_network(tmp_path / "missing.pt")
    bad = tmp_path / "state_dict.pth"
    torch.save({"w": torch.zeros(3)}, bad)
    with pytest.raises(ModelError, match="TorchScript"):
        load_parsing_network(bad)
    wrong = tmp_path / "wrong.pt"
    _export(_GreenIsHair(5), wrong)
    img = np.zeros((64, 64, 3), np.float32)
    lm = np.stack(np.meshgrid(np.linspace(16, 48, 17), np.linspace(16, 48, 4)), -1).reshape(-1, 2)[:68]
    with pytest.raises(ModelError, match=r"\[1, 19, h, w\]"):
        parse_image(img, lm, network=load_parsing_network(wrong))
    fixed = tmp_path / "fixed.pt"  # traced with a size baked into a reshape: fails at the real input size
    _export(_FixedSize(), fixed)
    with pytest.raises(ModelError, match=r"parsing network failed .*shape '\[1, 3, 4096\]' is invalid"):
        parse_image(img, lm, network=load_parsing_network(fixed))



def test_network_path_ignores_the_forehead_edge(faces_dir, tmp_path):
    """With a network the face mask ends where the network says (here: a disc of skin around the crop centre,
    reaching above the brows). The model's face area ends at a line of its own above the brows, so the band
    along the mask's edge there is invalid; the edge below the brows (a silhouette) stays valid."""
    from redafit.parsing.image import FOREHEAD_BAND, forehead_edge_band

    from ._helpers import export_disc_network

    net = load_parsing_network(export_disc_network(tmp_path / "disc.pt"))
    img, lm = load_photo(faces_dir, "eos_image_0010.jpg")
    r = parse_image(img, lm, network=net)
    x = int(lm[27, 0])
    col = np.nonzero(r.face_mask[:, x])[0]
    top, bottom = col.min(), col.max()
    assert top < lm[17:27, 1].min() and bottom > lm[17:27, 1].max() + eye_distance(lm)
    half = FOREHEAD_BAND * float(np.linalg.norm(lm[27] - lm[8]))
    for d in (-0.7 * half, -1, 0, 1, 0.7 * half):
        assert not r.valid[int(round(top + d)), x], d
    for d in (-3, 0, 3):
        assert r.valid[bottom + d, x], d
    band = forehead_edge_band(r.face_mask, lm)
    assert band.any() and not r.valid[band].any()
    assert r.valid[r.face_mask & ~band].all()  # no occluder classes: nothing else is ignored
    assert r.region("skin")[band & r.face_mask].all()  # labels are kept on the ignored band


def test_cached_network_loads_once_per_file(tmp_path, scripted):
    from redafit.parsing.network import cached_parsing_network

    a = cached_parsing_network(scripted)
    assert cached_parsing_network(str(scripted)) is a and isinstance(a.module, torch.jit.ScriptModule)
    _export(_GreenIsHair(), scripted)  # rewritten on disk: loaded again
    st = os.stat(scripted)
    os.utime(scripted, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert cached_parsing_network(scripted) is not a
    with pytest.raises(ModelError, match="not found"):
        cached_parsing_network(tmp_path / "missing.pt")
