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
import re
from collections import Counter
from pathlib import Path

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
MAX_DEGREES = 360.0  # a head angle beyond this (in degrees, or 2 Live Link units) is not an angle
_TIMECODE = re.compile(r"(\d+):(\d+):(\d+):(\d+(?:\.\d*)?)")


def _parse_timecode(code: str) -> tuple[int, float]:
    """(whole seconds, frame within the second + its fraction) of ``HH:MM:SS:FF[.mmm]``; ValueError if malformed."""
    m = _TIMECODE.fullmatch(code.strip())
    if m is None:
        raise ValueError(f"timecode {code!r} is not HH:MM:SS:FF.mmm")
    h, mi, sec = (int(x) for x in m.groups()[:3])
    ff = float(m.group(4))
    if mi > 59 or sec > 59 or ff >= 1000:
        raise ValueError(f"timecode {code!r} is out of range")
    return h * 3600 + mi * 60 + sec, ff


def _take_rate(seconds: np.ndarray, frames: np.ndarray, hint: float | None) -> tuple[float, str]:
    """The rate the timecodes count frames at, and how it was found: the most common number of frames in the
    take's whole seconds (neither its first nor its last, which it may fill only in part; a dropped frame leaves
    one second short, a mistyped frame number changes none), the larger on a tie; for a take over at most two
    seconds its largest frame number + 1 when it crosses a second; else ``hint`` (``track.json``'s rate beside a
    track's ``livelink.csv``) or :data:`DEFAULT_RATE`."""
    counts = Counter(seconds.tolist())
    inner = sorted(counts)[1:-1]
    if inner:
        per = Counter(counts[s] for s in inner)
        return float(max(per, key=lambda r: (per[r], r))), "counted in its whole seconds"
    if hint:
        return float(hint), "track.json"
    if len(counts) > 1:
        return float(frames.max() // 1 + 1), "its largest frame number"
    return DEFAULT_RATE, "Live Link Face's default (the take is under a second)"


def _track_rate(path) -> float | None:
    """The rate of the track a ``livelink.csv`` was written with (``track.json`` beside it; rounded, as its
    timecodes count frames), else None."""
    from redafit.rig.track import track_fps

    fps = track_fps(Path(path).parent)
    return round(fps) if fps else None


def read_take(path, names, max_bytes: int = 4 << 30) -> tuple[list, float]:
    """The frames of a Live Link Face CSV (the app's recording, or a track's ``livelink.csv``) as tracked records
    for a model with expression ``names`` (each driven by its ARKit shape, both sides of a one-sided pair by the
    one curve), and their frame rate. Head rotation from ``HeadYaw/Pitch/Roll`` (degrees / 180 with
    :data:`SIGNS`, as written here; a take with an angle beyond 1 is read as written in degrees; one beyond
    :data:`MAX_DEGREES` is an error); no head position (translation 0). Blendshape weights are clipped to 0-1
    (with a warning). The rate the timecodes count frames at: :func:`_take_rate` (a frame number at or beyond it
    is an error). A row the app wrote without values (``BlendShapeCount`` 0, the values missing: no face) is left
    out, a gap in the frames (``frame`` is the row's index). Lines may end in LF, CRLF or CR. Malformed input:
    :class:`InputError` naming the line."""
    import torch

    from redafit.io.inputs import read_text_file
    from redafit.render.camera import euler_to_r

    text = read_text_file(path, "Live Link Face CSV", max_bytes)
    lines = text.splitlines()  # LF, CRLF and the old Macs' CR alike
    del text
    reader = csv.reader(lines)
    header = None
    stamps, rows, empty = [], [], 0  # every row's (line, timecode, seconds, frame); the rows with curves' values
    try:
        for r in reader:
            n = reader.line_num
            if not any(c.strip() for c in r):
                continue
            if header is None:
                header = _take_header(path, r)
                head, first, cols = header
                idx = np.array(list(cols.values()))
                continue
            cells = [c.strip() for c in r]
            try:
                sec, ff = _parse_timecode(cells[0])
            except ValueError as e:
                raise InputError(f"{path}:{n}: {e}") from None
            stamps.append((n, cells[0], sec, ff))
            if len(cells) <= first or (first == 2 and cells[1] in ("0", "")) or not any(cells[first:]):
                empty += 1  # a frame the app recorded without a face (BlendShapeCount 0, its values missing)
                continue
            if len(cells) != len(head):
                raise InputError(f"{path}:{n}: {len(cells)} values, the header has {len(head)}")
            try:
                v = np.array([float(cells[i]) for i in idx])
            except ValueError as e:
                raise InputError(f"{path}:{n}: {e}") from None
            if not np.isfinite(v).all():
                k = int(np.argmin(np.isfinite(v)))
                raise InputError(f"{path}:{n}: {list(cols)[k]} is {cells[idx[k]]!r}, expected a finite number")
            rows.append((len(stamps) - 1, v))
    except csv.Error as e:
        raise InputError(f"{path}:{reader.line_num}: {e}") from None
    if header is None:
        raise InputError(f"{path}: not a Live Link Face CSV (expected a header starting Timecode,BlendShapeCount)")
    if not rows:
        raise InputError(f"{path}: no frames in the file" if not stamps else f"{path}: none of its {len(stamps)} "
                         "frames has the curves' values")
    seconds = np.array([s for _, _, s, _ in stamps], np.int64)
    frames = np.array([ff for *_, ff in stamps])
    rate, how = _take_rate(seconds, frames, _track_rate(path) if Path(path).name == FILE else None)
    beyond = np.flatnonzero(frames >= rate)
    if len(beyond):
        n, code = stamps[beyond[0]][:2]
        raise InputError(f"{path}:{n}: timecode {code} counts frame {int(frames[beyond[0]])}, but the take has "
                         f"{rate:g} frames a second ({how})")
    log.info("%s: %g frames a second (%s)", path, rate, how)
    t = seconds + frames / rate
    t = t - t[0]
    for k in range(1, len(t)):
        if t[k] <= t[k - 1]:
            raise InputError(f"{path}:{stamps[k][0]}: timecode {stamps[k][1]} does not follow the previous frame's")
    if empty:
        log.warning("%s: %d of %d frames have no values (no face tracked): left out", path, empty, len(stamps))
    drive = [(name, hit[0]) for name, hit in ((n, shape_of(n)) for n in names) if hit is not None and hit[0] in cols]
    if not drive:
        raise InputError(f"{path}: none of its ARKit curves drives the rig's expressions (e.g. {list(names)[:3]})")
    at = {c: k for k, c in enumerate(cols)}
    V = np.stack([v for _, v in rows])  # [T, columns]
    angles = np.stack([V[:, at[c]] if c in at else np.zeros(len(V)) for c in ("HeadYaw", "HeadPitch", "HeadRoll")],
                      1)
    wild = np.flatnonzero(np.abs(angles).max(1) > MAX_DEGREES)
    if len(wild):
        n = stamps[rows[wild[0]][0]][0]
        raise InputError(f"{path}:{n}: a head angle of {angles[wild[0]][np.abs(angles[wild[0]]).argmax()]:g} is "
                         f"beyond {MAX_DEGREES:g} degrees")
    to_deg = 1.0 if np.abs(angles).max() > 1.0 else UNIT_DEG  # beyond a half turn: the take is in degrees
    if to_deg == 1.0:
        log.info("%s: head angles beyond 1: read as degrees", path)
    shape_cols = [at[shape] for _, shape in drive]
    W = V[:, shape_cols]
    off = int(((W < -1e-6) | (W > 1 + 1e-6)).sum())
    if off:
        log.warning("%s: %d blendshape weights outside 0-1 (as far as %.3g): clipped", path, off,
                    float(np.abs(W - W.clip(0, 1)).max()))
    W = W.clip(0.0, 1.0)
    records = []
    for (k, _), w, (yaw, pitch, roll) in zip(rows, W, angles * to_deg * SIGNS):
        r = euler_to_r(float(yaw), float(pitch), float(roll), dtype=torch.float64).numpy()
        records.append({"frame": k, "time_s": float(t[k]), "ok": True,
                        "expression": {name: float(x) for (name, _), x in zip(drive, w)},
                        "pose": {"axis_angle": r.tolist(), "translation_mm": [0.0, 0.0, 0.0], "yaw_deg": float(yaw),
                                 "pitch_deg": float(pitch), "roll_deg": float(roll)}})
    return records, rate


def _take_header(path, r: list) -> tuple[list, int, dict]:
    """(the header's columns as known names or None, the first value column, known name -> column) of a Live
    Link Face CSV's first row; InputError if it is not one."""
    if r[0].strip().lower() != "timecode":
        raise InputError(f"{path}: not a Live Link Face CSV (expected a header starting Timecode,BlendShapeCount)")
    known = {c.lower(): c for c in (*SHAPES, *ROTATIONS)}
    head = [known.get(c.strip().lower()) for c in r]
    first = 2 if len(r) > 1 and r[1].strip().lower() == "blendshapecount" else 1  # values from
    if not any(h in SHAPES for h in head):
        raise InputError(f"{path}: none of the header's columns is an ARKit blendshape (EyeBlinkLeft, JawOpen, ...)")
    return head, first, {h: i for i, h in enumerate(head) if h is not None}


def read_livelink_csv(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(timecodes, curve name -> [T] values) of a Live Link Face CSV (for checks and scripts)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:2]) != HEADER[:2]:
        raise InputError(f"{path}: not a Live Link Face CSV (its header starts {rows[0][:2] if rows else []})")
    head = rows[0]
    vals = np.array([[float(v) for v in r[2:]] for r in rows[1:]]).reshape(len(rows) - 1, len(head) - 2)
    return [r[0] for r in rows[1:]], {n: vals[:, i] for i, n in enumerate(head[2:])}
