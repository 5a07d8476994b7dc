"""ARKit blendshape curves in the Live Link Face CSV layout (``livelink.csv`` beside a track's ``params.jsonl``).

Epic's Live Link Face app records a take as a CSV: ``Timecode,BlendShapeCount``, the 52 ARKit blendshapes in its
own order (PascalCase: ``EyeBlinkLeft`` ...), then ``HeadYaw,HeadPitch,HeadRoll`` and the two eyes' yaw, pitch
and roll - 61 curves. Importers into Unreal (MetaHumans), Blender, Maya and Unity read that layout, so a track
written in it drives any ARKit-rigged character without a redafit rig.

The model's expressions are matched by name, case aside: ``eyeBlink_L`` or ``eyeBlinkLeft`` -> ``EyeBlinkLeft``;
a model that splits one ARKit shape into sides (ICT's ``browInnerUp_L``/``_R``, ``cheekPuff_L``/``_R``) gives it
the sides' mean; a shape the model lacks (ICT: ``TongueOut``) stays 0. Weights are clipped to ARKit's 0-1.

Head angles are in radians, the track's ``yaw_deg``, ``pitch_deg`` and ``roll_deg`` (the head's rotation from
facing the camera, :func:`redafit.render.camera.rotation_to_euler`: yaw about the vertical, positive turning the
face towards the image's left, the person's own right; pitch positive looking down; roll positive turning the face
clockwise in the image); an importer that reads the other way negates them. The eyes' rotations are 0: the gaze,
as far as a fit sees it, is in the ``EyeLook*`` shapes. A frame that failed to track gets its neighbours' curves
interpolated linearly (held before the first and after the last tracked frame), so that every frame has a row;
``params.jsonl`` still says which frames were tracked.

``Timecode`` is ``HH:MM:SS:FF.mmm``: hours, minutes, seconds, the frame within the second at the track's rate
(rounded to a whole number: 29.97 counts as 30) and the thousandths of a frame, from each frame's ``time_s``.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from redafit.errors import InputError

#: the 52 ARKit blendshapes in Live Link Face's column order
SHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
#: the head's and the eyes' rotations (radians) after the shapes
ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll")
HEADER = ("Timecode", "BlendShapeCount", *SHAPES, *ROTATIONS)
FILE = "livelink.csv"
MIN_SHAPES = 26  # a model whose names give fewer of the 52 is not ARKit-named: no file

_SIDES = {"_l": "left", "_r": "right", ".l": "left", ".r": "right"}


def shape_of(name: str) -> tuple[str, bool] | None:
    """The ARKit shape (a name of :data:`SHAPES`) that a model's expression ``name`` drives, and whether it is
    one side of it (a model's ``browInnerUp_L`` of ARKit's two-sided ``BrowInnerUp``); None when there is none."""
    lower = {s.lower(): s for s in SHAPES}
    n = str(name).strip().lower()
    if n in lower:
        return lower[n], False
    side = _SIDES.get(n[-2:])
    if side is None:
        return None
    base = n[:-2]
    if base + side in lower:
        return lower[base + side], False
    if base in lower:
        return lower[base], True
    return None


def shape_matrix(names) -> np.ndarray:
    """[52, K] weights from a model's K expression weights to the ARKit shapes (a one-sided pair's mean)."""
    M = np.zeros((len(SHAPES), len(names)))
    for k, n in enumerate(names):
        hit = shape_of(n)
        if hit is not None:
            M[SHAPES.index(hit[0]), k] = 1.0
    counts = M.sum(1, keepdims=True)
    return np.divide(M, counts, out=np.zeros_like(M), where=counts > 0)


def drives_arkit(names) -> bool:
    """Whether a model's expression ``names`` give at least :data:`MIN_SHAPES` of the ARKit shapes."""
    return int((shape_matrix(names).sum(1) > 0).sum()) >= MIN_SHAPES


def timecode(t: float, rate: float) -> str:
    """``HH:MM:SS:FF.mmm`` of time ``t`` (s) at ``rate`` frames per second (rounded to a whole number)."""
    r = max(1, int(round(rate)))
    n = max(0.0, float(t)) * r
    if abs(n - round(n)) <= 1e-4 * r:  # on a frame, but for the 0.1 ms to which a track rounds its times
        n = float(round(n))
    whole = int(math.floor(n))
    sub = min(999, int((n - whole) * 1000))
    s, ff = divmod(whole, r)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{sub:03d}"


def _fill_untracked(X: np.ndarray, ok: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows of ``X`` [T, D] where ``ok`` is False, interpolated in time ``t`` from the tracked ones."""
    if ok.all():
        return X
    out = X.copy()
    for d in range(X.shape[1]):
        out[~ok, d] = np.interp(t[~ok], t[ok], X[ok, d])
    return out


def curves(records: list, names, fps: float) -> tuple[list[str], np.ndarray]:
    """The timecodes [T] and the 61 curves [T, 61] (52 shapes, then the rotations) of a track's ``records``
    (every frame, in order: tracked ones with ``expression`` and ``pose``, the others with ``"ok": false``)."""
    ok = np.array([bool(r.get("ok", True)) and "expression" in r for r in records])
    if not ok.any():
        raise InputError("livelink: no tracked frame to write")
    t = np.array([float(r["time_s"]) if "time_s" in r else r.get("frame", k) / fps for k, r in enumerate(records)])
    M = shape_matrix(names)
    E = np.zeros((len(records), len(names)))
    H = np.zeros((len(records), 3))
    for k, r in enumerate(records):
        if ok[k]:
            E[k] = [float(r["expression"].get(n, 0.0)) for n in names]
            H[k] = [math.radians(float(r["pose"][a])) for a in ("yaw_deg", "pitch_deg", "roll_deg")]
    X = np.concatenate([np.clip(E @ M.T, 0.0, 1.0), H, np.zeros((len(records), 6))], 1)
    return [timecode(x, fps) for x in t], _fill_untracked(X, ok, t)


def livelink_csv(records: list, names, fps: float) -> str:
    """The text of a Live Link Face CSV of a track (see the module's description)."""
    codes, X = curves(records, names, fps)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for code, row in zip(codes, X):
        w.writerow([code, len(SHAPES) + len(ROTATIONS), *(f"{v:.6f}" for v in row)])
    return buf.getvalue()


def read_livelink_csv(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(timecodes, curve name -> [T] values) of a Live Link Face CSV (for checks and scripts)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:2]) != HEADER[:2]:
        raise InputError(f"{path}: not a Live Link Face CSV (its header starts {rows[0][:2] if rows else []})")
    head = rows[0]
    vals = np.array([[float(v) for v in r[2:]] for r in rows[1:]]).reshape(len(rows) - 1, len(head) - 2)
    return [r[0] for r in rows[1:]], {n: vals[:, i] for i, n in enumerate(head[2:])}
