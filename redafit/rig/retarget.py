"""Retargeting: drive a rig with tracked expressions and head poses (``redafit retarget``).

Expression weights are matched by name (the tracked model's names against the rig's; with the same model all
match). Head pose (``pose``): ``"rotation"`` applies the tracked head rotation about the centre of the neutral mesh,
``"full"`` adds the translation relative to the first frame, ``"none"`` keeps the head still. Rotations are
expressed in the model frame (y up, +z towards the viewer): ``R_model = R_FLIP @ rodrigues(r) @ R_FLIP``.

Outputs: one mesh per frame (``frame_00000.obj|ply``, model frame, mm) or one animated glTF (``anim.glb``:
the rig's morph targets and a morph-weight animation at the track's frame rate; the glTF carries the expression
animation only, not the head pose).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from redafit.errors import InputError, OutputError

log = logging.getLogger("redafit")

POSE_MODES = ("rotation", "full", "none")
FORMATS = ("obj", "ply", "glb")


def expression_weights(records: list, names: list) -> np.ndarray:
    """[T, Ke] weights for the rig's expression ``names`` from tracked records (missing names -> 0)."""
    tracked = set()
    for r in records:
        tracked.update(r["expression"])
    common = [n for n in names if n in tracked]
    if not common:
        raise InputError("retarget: none of the tracked expression names matches the rig's "
                         f"(tracked e.g. {sorted(tracked)[:3]}, rig e.g. {list(names)[:3]})")
    if len(common) < len(names) or len(common) < len(tracked):
        log.warning("retarget: %d of the rig's %d expressions are driven (%d tracked names)", len(common),
                    len(names), len(tracked))
    W = np.zeros((len(records), len(names)))
    for t, r in enumerate(records):
        for k, n in enumerate(names):
            v = r["expression"].get(n)
            if v is not None:
                W[t, k] = float(v)
    if not np.isfinite(W).all():
        raise InputError("retarget: the tracked expression weights contain NaN or infinite values")
    return W


def head_poses(records: list, mode: str = "rotation") -> tuple[np.ndarray, np.ndarray]:
    """Model-frame head rotations [T, 3, 3] and translations [T, 3] (mm) for ``mode`` (rotation|full|none)."""
    import torch

    from redafit.render.camera import R_FLIP, rodrigues

    if mode not in POSE_MODES:
        raise InputError(f"retarget: pose mode must be one of {', '.join(POSE_MODES)}, got {mode!r}")
    T = len(records)
    if mode == "none":
        return np.repeat(np.eye(3)[None], T, 0), np.zeros((T, 3))
    try:
        r = torch.tensor([rec["pose"]["axis_angle"] for rec in records], dtype=torch.float64)
        t = np.array([rec["pose"]["translation_mm"] for rec in records], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"retarget: malformed pose in the params ({e})") from None
    F = R_FLIP.double()
    R = (F @ rodrigues(r) @ F).numpy()
    tm = (t - t[0]) @ F.numpy().T if mode == "full" else np.zeros((T, 3))
    return R, tm


def write_retarget(rig, records: list, out, fmt: str = "obj", pose: str = "rotation", fps: float = 30.0) -> list[Path]:
    """Write the retargeted animation into folder ``out``; returns the files written."""
    from redafit.io.meshes import write_glb, write_mesh

    if fmt not in FORMATS:
        raise InputError(f"retarget: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    W = expression_weights(records, rig.expression_names)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder {out}: {e.strerror}") from None
    uvkw = {"uv": rig.uv, "uv_triangles": rig.uv_triangles} if rig.uv is not None and len(rig.uv) else {}
    if fmt == "glb":
        if pose != "none":
            log.info("retarget: the glTF animation carries the expressions; head pose is not animated")
        morphs = {n: rig.expression_basis[k] for k, n in enumerate(rig.expression_names)}
        return write_glb(out / "anim.glb", rig.neutral, rig.triangles, morph_targets=morphs, animation=W, fps=fps,
                         texture=rig.texture if uvkw else None, name="rig", **uvkw)
    R, t = head_poses(records, pose)
    centre = rig.neutral.mean(0)
    written = []
    for k in range(len(records)):
        v = rig.shape(W[k])
        v = (v - centre) @ R[k].T + centre + t[k]
        written += write_mesh(out / f"frame_{k:05d}.{fmt}", v, rig.triangles, **uvkw)
    return written
