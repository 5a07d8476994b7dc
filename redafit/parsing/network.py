"""Optional face-parsing network (e.g. a BiSeNet trained on CelebAMask-HQ), loaded from a TorchScript file.

redafit ships no weights. Export your checkpoint once to TorchScript (``torch.jit.trace(net.eval(),
torch.zeros(1, 3, 512, 512)).save("parsing.pt")``) and pass the file by path. The module must map a batch of
RGB images [1, 3, S, S] (ImageNet-normalised, S = ``input_size``) to per-pixel class logits [1, C, h, w]
(a tuple/list output uses its first element, a dict its ``"out"`` entry). Classes default to the 19
CelebAMask-HQ labels, mapped to our 7 regions by the ``network_classes`` table of ``assets/regions.json``:

=================  ==========================
network class      region
=================  ==========================
skin               skin
l_brow, r_brow     brows
l_eye, r_eye       eyes
nose               nose
u_lip              upper_lip
l_lip              lower_lip
mouth              mouth_interior
eye_g, hair, hat,  occluder (valid = False inside the face zone)
ear_r
everything else    background
=================  ==========================

The fit uses a network given as ``FitConfig.parsing_net`` (``redafit fit --parsing-net PATH``), loaded once per
file and device by :func:`cached_parsing_network`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from redafit.errors import ModelError
from redafit.parsing.regions import REGION_NAMES, load_region_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FACTOR = 2.2  # square crop side as a multiple of the landmarks' bounding-box size (CelebA-HQ framing)


def class_region_table(class_names=None) -> tuple[np.ndarray, np.ndarray]:
    """Per parsing class (default: the 19 CelebAMask-HQ names of ``assets/regions.json``): our region index [C]
    (-1 background/occluder) and occluder flag [C] bool."""
    spec = load_region_spec()["network_classes"]
    names = list(class_names or spec["names"])
    to_region, occluders = spec["to_region"], set(spec["occluder"])
    region = np.array([REGION_NAMES.index(to_region[c]) if c in to_region else -1 for c in names], np.int8)
    occ = np.array([c in occluders for c in names], bool)
    return region, occ


class ParsingNetwork:
    """A per-pixel classifier wrapped for :func:`redafit.parsing.parse_image`."""

    def __init__(self, module, class_names=None, input_size: int = 512, device=None):
        import torch

        spec = load_region_spec()["network_classes"]
        self.module = module.eval()
        self.class_names = list(class_names or spec["names"])
        self.input_size = int(input_size)
        self.device = torch.device(device or "cpu")
        self.module.to(self.device)

    def region_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Per class: region index [C] (-1 background/occluder) and occluder flag [C] bool."""
        return class_region_table(self.class_names)

    def _crop(self, landmarks: np.ndarray, H: int, W: int) -> np.ndarray:
        """2x3 affine from image pixels to the network's input square around the face."""
        lm = landmarks[np.isfinite(landmarks).all(1)]
        if len(lm):
            lo, hi = lm.min(0), lm.max(0)
            c, side = (lo + hi) / 2, CROP_FACTOR * float(max(hi - lo))
            c = c - np.array([0.0, 0.1 * side])  # a little more forehead and hair than chin
        else:
            c, side = np.array([W / 2, H / 2]), float(max(H, W))
        s = self.input_size / max(side, 1.0)
        return np.array([[s, 0, self.input_size / 2 - s * c[0]], [0, s, self.input_size / 2 - s * c[1]]])

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Class probabilities [H, W, C] float32 for image [H, W, 3] in [0, 1] (outside the crop: background)."""
        import torch

        H, W = image.shape[:2]
        A = self._crop(np.asarray(landmarks, np.float64), H, W)
        S = self.input_size
        # corner convention -> cv2's centre convention: x_cv = x - 0.5 on both sides cancels for a similarity
        # with the +0.5 shifts applied explicitly
        T = A.copy()
        T[:, 2] += A[:, :2].sum(1) * 0.5 - 0.5
        crop = cv2.warpAffine(image.astype(np.float32), T, (S, S), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
        x = (crop - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        x = torch.from_numpy(x).permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            try:
                out = self.module(x)
            except RuntimeError as e:  # TorchScript reports a bad graph, dtype or device as RuntimeError
                # its message ends with the original error, after the TorchScript traceback
                msg = str(e).strip().splitlines()
                raise ModelError(f"parsing network failed on a [1, 3, {S}, {S}] input: "
                                 f"{msg[-1] if msg else type(e).__name__}") from e
        if isinstance(out, (tuple, list)):
            out = out[0]
        elif isinstance(out, dict):
            out = out["out"]
        if not torch.is_tensor(out) or out.ndim != 4 or out.shape[1] != len(self.class_names):
            shape = list(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ModelError(f"parsing network: expected logits [1, {len(self.class_names)}, h, w], got {shape}")
        out = torch.nn.functional.interpolate(out.float(), size=(S, S), mode="bilinear", align_corners=False)
        prob = torch.softmax(out[0], 0).permute(1, 2, 0).cpu().numpy()  # [S, S, C]
        Ti = cv2.invertAffineTransform(T)
        C = prob.shape[-1]
        back = np.stack([cv2.warpAffine(np.ascontiguousarray(prob[..., k]), Ti, (W, H), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=1.0 if k == 0 else 0.0)
                         for k in range(C)], -1)
        return back.astype(np.float32)


def load_parsing_network(path, class_names=None, input_size: int = 512, device=None) -> ParsingNetwork:
    """Load a TorchScript face-parsing network from ``path`` (see the module docstring for the contract).

    Raises :class:`~redafit.errors.ModelError` if the file is missing or is not a TorchScript module (e.g. a
    bare ``state_dict`` checkpoint - export it to TorchScript first).
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"parsing network not found: {p}")
    import warnings

    try:
        with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError/ValueError/zipfile errors for non-TorchScript files
        raise ModelError(f"parsing network {p}: not a TorchScript file ({type(e).__name__}); export the "
                         "checkpoint with torch.jit.trace(model.eval(), torch.zeros(1, 3, 512, 512)).save(path)"
                         ) from e
    return ParsingNetwork(module, class_names=class_names, input_size=input_size, device=device)


def cached_parsing_network(path, device=None) -> ParsingNetwork:
    """:func:`load_parsing_network` (default classes and input size), loaded once per file and device: a batch,
    a rig or a video track prepares many fits with the same network. A file changed on disk is loaded again.

    Raises :class:`~redafit.errors.ModelError` as :func:`load_parsing_network` does.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"parsing network not found: {p}")
    st = p.stat()
    return _load_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int, device: str) -> ParsingNetwork:
    return load_parsing_network(path, device=device)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ParsingNetwork", "cached_parsing_network", "class_region_table",
           "load_parsing_network"]
