"""ARKit blendshape curves in the Live Link Face CSV layout (``livelink.csv`` beside a track's ``params.jsonl``).

Epic's Live Link Face app records a take as a CSV: ``Timecode,BlendShapeCount``, the 52 ARKit blendshapes in its
own order (PascalCase: ``EyeBlinkLeft`` ...), then ``HeadYaw,HeadPitch,HeadRoll`` and the two eyes' yaw, pitch
and roll - 61 curves. Importers into Unreal (MetaHumans), Blender, Maya and Unity read that layout, so a track
written in it drives any ARKit-rigged character without a redafit rig.

The model's expressions are matched by name, case aside: ``eyeBlink_L`` or ``eyeBlinkLeft`` -> ``EyeBlinkLeft``;
a model that splits one ARKit shape into sides (ICT's ``browInnerUp_L``/``_R``, ``cheekPuff_L``/``_R``) gives it
the sides' mean; a shape the model lacks (ICT: ``TongueOut``) stays 0. Weights are clipped to ARKit's 0-1.

Head angles are in Unreal's Live Link units, the ARKit face support's: degrees / 180, so -1 to 1 spans a whole
turn (a head turned 30 degrees reads 0.167). Their axes are ARKit's face frame (x to the face's own left, y up,
z out of the face towards the camera; the model frame here, :mod:`redafit.render.camera`), their signs
right-handed about them: ``HeadYaw`` positive turns the face to its own left (the image's right), ``HeadPitch``
positive makes it look down, ``HeadRoll`` positive lifts its left side (anticlockwise in the image). So they are
``-yaw_deg / 180``, ``pitch_deg / 180`` and ``-roll_deg / 180`` of the track's records
(:func:`redafit.render.camera.rotation_to_euler`'s angles, which turn the other way about yaw and roll). An
importer that reads the other way negates them. The eyes' rotations are 0: the gaze, as far as a fit sees it, is
in the ``EyeLook*`` shapes. A frame that failed to track gets its neighbours' curves interpolated linearly (held
before the first and after the last tracked frame), so that every frame has a row; ``params.jsonl`` still says
which frames were tracked.

``Timecode`` is ``HH:MM:SS:FF.mmm``: hours, minutes, seconds, the frame within the second at the track's rate
(rounded to a whole number: 29.97 counts as 30) and the thousandths of a frame, from each frame's ``time_s``.
"""

from __future__ import annotations

import csv
import io
import logging
import math

import numpy as np

from redafit.errors import InputError

log = logging.getLogger("redafit")

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
#: the head's and the eyes' rotations (degrees / 180, :data:`SIGNS`) after the shapes
ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll")
HEADER = ("Timecode", "BlendShapeCount", *SHAPES, *ROTATIONS)
SIGNS = np.array([-1.0, 1.0, -1.0])  # HeadYaw, HeadPitch, HeadRoll against the records' yaw_deg, pitch_deg, roll_deg
UNIT_DEG = 180.0  # degrees per unit of a Live Link head angle
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
            H[k] = SIGNS * [float(r["pose"][a]) for a in ("yaw_deg", "pitch_deg", "roll_deg")] / UNIT_DEG
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


DEFAULT_RATE = 60.0  # Live Link Face's recording rate, for a take too short to tell its own


def _parse_timecode(code: str) -> tuple[int, float]:
    """(whole seconds, frame within the second + its fraction) of ``HH:MM:SS:FF[.mmm]``; ValueError if malformed."""
    parts = code.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode {code!r} is not HH:MM:SS:FF.mmm")
    h, m, sec = (int(x) for x in parts[:3])
    ff = float(parts[3])
    if min(h, m, sec) < 0 or m > 59 or sec > 59 or not (0 <= ff < 1000):
        raise ValueError(f"timecode {code!r} is out of range")
    return h * 3600 + m * 60 + sec, ff


def read_take(path, names, max_bytes: int = 4 << 30) -> tuple[list, float]:
    """The frames of a Live Link Face CSV (the app's recording, or a track's ``livelink.csv``) as tracked records
    for a model with expression ``names`` (each driven by its ARKit shape, both sides of a one-sided pair by the
    one curve), and their frame rate. Head rotation from ``HeadYaw/Pitch/Roll`` (degrees / 180 with
    :data:`SIGNS`, as written here; a take with an angle beyond 1 is read as written in degrees); no head
    position (translation 0). The rate the timecodes count frames at is the largest frame number + 1 when the
    take crosses a second, else :data:`DEFAULT_RATE`. A row the app wrote without values (``BlendShapeCount``
    0, the values missing: no face) is left out, a gap in the frames (``frame`` is the row's index). Malformed
    input: :class:`InputError` naming the line."""
    import torch

    from redafit.io.inputs import read_text_file
    from redafit.render.camera import euler_to_r

    text = read_text_file(path, "Live Link Face CSV", max_bytes)
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), 1) if any(c.strip() for c in r)]
    if not rows or rows[0][1][0].strip().lower() != "timecode":
        raise InputError(f"{path}: not a Live Link Face CSV (expected a header starting Timecode,BlendShapeCount)")
    known = {c.lower(): c for c in (*SHAPES, *ROTATIONS)}
    head = [known.get(c.strip().lower()) for c in rows[0][1]]
    first = 2 if len(rows[0][1]) > 1 and rows[0][1][1].strip().lower() == "blendshapecount" else 1  # values from
    if not any(h in SHAPES for h in head):
        raise InputError(f"{path}: none of the header's columns is an ARKit blendshape (EyeBlinkLeft, JawOpen, ...)")
    cols = {h: i for i, h in enumerate(head) if h is not None}
    stamps, values, empty = [], [], 0  # every row's (line, timecode, parsed); the rows with curves' values
    for n, r in rows[1:]:
        cells = [c.strip() for c in r]
        try:
            stamps.append((n, cells[0], _parse_timecode(cells[0])))
        except ValueError as e:
            raise InputError(f"{path}:{n}: {e}") from None
        if len(cells) <= first or (first == 2 and cells[1] in ("0", "")) or not any(cells[first:]):
            empty += 1  # a frame the app recorded without a face (BlendShapeCount 0, its values missing)
            continue
        if len(cells) != len(head):
            raise InputError(f"{path}:{n}: {len(cells)} values, the header has {len(head)}")
        try:
            v = {h: float(cells[i]) for h, i in cols.items()}
        except ValueError as e:
            raise InputError(f"{path}:{n}: {e}") from None
        bad = [h for h, x in v.items() if not math.isfinite(x)]
        if bad:
            raise InputError(f"{path}:{n}: {bad[0]} is {cells[cols[bad[0]]]!r}, expected a finite number")
        values.append((len(stamps) - 1, v))
    if not values:
        raise InputError(f"{path}: no frames in the file" if not stamps else f"{path}: none of its {len(stamps)} "
                         "frames has the curves' values")
    whole = [s for _, _, (s, _) in stamps]
    rate = max(int(ff) for _, _, (_, ff) in stamps) + 1.0 if max(whole) > min(whole) else DEFAULT_RATE
    t = np.array([s + ff / rate for _, _, (s, ff) in stamps])
    t -= t[0]
    for k in range(1, len(t)):
        if t[k] <= t[k - 1]:
            raise InputError(f"{path}:{stamps[k][0]}: timecode {stamps[k][1]} does not follow the previous frame's")
    if empty:
        log.warning("%s: %d of %d frames have no values (no face tracked): left out", path, empty, len(stamps))
    drive = [(name, hit[0]) for name, hit in ((n, shape_of(n)) for n in names) if hit is not None and hit[0] in cols]
    if not drive:
        raise InputError(f"{path}: none of its ARKit curves drives the rig's expressions (e.g. {list(names)[:3]})")
    angles = np.array([[v.get(f"Head{a}", 0.0) for a in ("Yaw", "Pitch", "Roll")] for _, v in values])
    to_deg = 1.0 if np.abs(angles).max() > 1.0 else UNIT_DEG  # beyond a half turn: the take is in degrees
    if to_deg == 1.0:
        log.info("%s: head angles beyond 1: read as degrees", path)
    records = []
    for (k, v), (yaw, pitch, roll) in zip(values, angles * to_deg * SIGNS):
        r = euler_to_r(float(yaw), float(pitch), float(roll), dtype=torch.float64).numpy()
        records.append({"frame": k, "time_s": float(t[k]), "ok": True,
                        "expression": {name: v[shape] for name, shape in drive},
                        "pose": {"axis_angle": r.tolist(), "translation_mm": [0.0, 0.0, 0.0], "yaw_deg": float(yaw),
                                 "pitch_deg": float(pitch), "roll_deg": float(roll)}})
    return records, rate


def read_livelink_csv(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(timecodes, curve name -> [T] values) of a Live Link Face CSV (for checks and scripts)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:2]) != HEADER[:2]:
        raise InputError(f"{path}: not a Live Link Face CSV (its header starts {rows[0][:2] if rows else []})")
    head = rows[0]
    vals = np.array([[float(v) for v in r[2:]] for r in rows[1:]]).reshape(len(rows) - 1, len(head) - 2)
    return [r[0] for r in rows[1:]], {n: vals[:, i] for i, n in enumerate(head[2:])}
