"""Retargeting: drive a rig with tracked expressions and head poses (``redafit retarget``).

Expression weights are matched by name (the tracked model's names against the rig's; with the same model all
match). Head pose (``pose``): ``"rotation"`` applies the tracked head rotation about the centre of the neutral mesh,
``"full"`` adds the translation relative to the first frame, ``"none"`` keeps the head still. Rotations are
expressed in the model frame (y up, +z towards the viewer): ``R_model = R_FLIP @ rodrigues(r) @ R_FLIP``.
``"camera"`` puts the head where the track saw it, in the video camera's frame (``rodrigues(r) @ R_FLIP`` and the
tracked translation; the glTF in OpenGL camera axes with the track's camera as a node at the origin).

The tracked records come from a track's ``params.jsonl`` or from a Live Link Face CSV
(:func:`redafit.rig.livelink.read_take`: ARKit curves and head rotation, no head position).

Outputs: one mesh per tracked frame, named by the frame's index in the source (``frame_00012.obj|ply``, model
frame, mm; a frame that failed to track leaves a gap in the numbering, so each file maps to its source frame; with
the rig's texture, ``rig.png``, through ``rig.mtl`` for OBJ), or
one animated glTF (``anim.glb``: the rig's morph targets, a morph-weight animation that follows the frames' own
times ``time_s``, and the head pose as the mesh node's rotation and translation keyed at the same times, the
vertices about the neutral's centre). The files appear together
or not at all (:func:`redafit.io.atomic.atomic_group`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from redafit.errors import InputError
from redafit.io.atomic import atomic_group, make_folder

log = logging.getLogger("redafit")

POSE_MODES = ("rotation", "full", "camera", "none")
FORMATS = ("obj", "ply", "glb")
MATERIAL = "rig"  # the frames' shared material (OBJ: rig.mtl) and texture, a copy of the rig's
TEXTURE_FILE = "rig.png"


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
    """Head rotations [T, 3, 3] and translations [T, 3] (mm) for ``mode``: model-frame motion about the neutral's
    centre for rotation|full|none (``v' = (v - c) R^T + c + t``), the tracked model-to-camera pose itself for
    ``camera`` (``v' = v R^T + t``: the OpenCV camera frame, where the head was in the video)."""
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
    with np.errstate(over="ignore", invalid="ignore"):  # finite but huge numbers (1e308) overflow: refused below
        if mode == "camera":
            R, tm = (rodrigues(r) @ F).numpy(), t
        else:
            R = (F @ rodrigues(r) @ F).numpy()
            tm = (t - t[0]) @ F.numpy().T if mode == "full" else np.zeros((T, 3))
        if not (np.isfinite(R).all() and (np.abs(tm) <= 1e6).all()):  # a head moving over 1 km: not a track
            raise InputError("retarget: the tracked head poses are out of range (rotation overflows or the head "
                             "moves by more than 1 km)")
    return R, tm


def frame_numbers(records: list, warn: bool = True) -> list[int]:
    """The records' own source frame indices (``frame``), so that file names map to source frames across the
    frames that failed to track; 0, 1, 2... when a record lacks one or they do not increase (said when ``warn``)."""
    f = [r.get("frame") for r in records]
    if all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in f) and all(np.diff(f) > 0):
        return f
    if warn:
        log.warning("retarget: the records lack increasing frame indices; frames numbered from 0")
    return list(range(len(records)))


def retarget_files(records: list, out, fmt: str = "obj", textured: bool = False) -> list[Path]:
    """The files :func:`write_retarget` writes into folder ``out`` for ``records`` (checked against the inputs
    before anything is written, so that no output replaces one); ``textured``: the rig has a texture."""
    out = Path(out)
    if fmt == "glb":
        return [out / "anim.glb"]
    from redafit.io.meshes import shared_texture_files

    shared = [out / TEXTURE_FILE, *shared_texture_files(out, f".{fmt}", MATERIAL)] if textured else []
    return shared + [out / f"frame_{f:05d}.{fmt}" for f in frame_numbers(records, warn=False)]


def frame_times(records: list, fps: float) -> np.ndarray:
    """The records' times in seconds: their ``time_s``, else ``frame / fps``, else ``k / fps`` (k-th record)."""
    for key, scale in (("time_s", 1.0), ("frame", 1.0 / fps)):
        try:
            t = np.array([float(r[key]) * scale for r in records])
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if np.isfinite(t).all() and (t >= 0).all() and (np.diff(t) > 0).all():
            return t
    log.warning("retarget: the records lack increasing time stamps; frames keyed at k / %g s", fps)
    return np.arange(len(records)) / fps


def glb_track_camera(camera: dict | None, name: str = "video") -> dict | None:
    """The glTF camera (:func:`redafit.fit.outputs.glb_perspective`) of a track's camera (``track.json``'s
    ``camera``, :meth:`~redafit.render.camera.Intrinsics.to_dict`), at the origin looking down -z; None when it has
    none or a malformed one."""
    from redafit.errors import RedafitError
    from redafit.fit.outputs import glb_perspective
    from redafit.render.camera import Intrinsics

    try:
        K = Intrinsics.from_dict(camera)
    except (TypeError, KeyError, ValueError, OverflowError, RedafitError):
        return None
    return glb_perspective(K, name)


def write_retarget(rig, records: list, out, fmt: str = "obj", pose: str = "rotation", fps: float = 30.0,
                   time_scale: float = 1.0, camera: dict | None = None) -> list[Path]:
    """Write the retargeted animation into folder ``out``; returns the files written. The glTF keys each record
    at its own time (:func:`frame_times`) times ``time_scale`` (a playback speed-up or slow-down). Everything is checked
    before the folder is made; the files appear together or, on an error or Ctrl-C part-way, not at all (a
    folder made here is removed again), so a failed run leaves no partial animation.

    ``pose="camera"`` puts the head where the track saw it: the meshes in the video camera's frame (OpenCV axes,
    mm, as ``redafit fit`` writes), the glTF in OpenGL camera axes with the track's ``camera`` (``track.json``) as
    a camera node at the origin, so that looking through it the animation lies over the video."""
    if fmt not in FORMATS:
        raise InputError(f"retarget: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"retarget: the frame rate must be positive, got {fps}")
    W = expression_weights(records, rig.expression_names)
    R, t = head_poses(records, pose)
    if fmt == "glb":
        names = None
        times = frame_times(records, fps) * time_scale
    else:
        names = frame_numbers(records)
        times = None
    glb_camera = None
    if pose == "camera" and fmt == "glb":
        glb_camera = glb_track_camera(camera, "photo" if len(records) == 1 and "camera" in records[0] else "video")
        if glb_camera is None:
            log.warning("retarget: the track names no camera (track.json from an older redafit): the glTF has no "
                        "camera node")
    return _write_files(rig, Path(out), fmt, W, R, t, names, times, pose == "camera", glb_camera)


@atomic_group()
def _write_files(rig, out: Path, fmt: str, W, R, t, names, times, in_camera: bool = False,
                 camera: dict | None = None) -> list[Path]:
    """The ``anim.glb``, or one mesh per frame (named by ``names``), all in one atomic group. ``in_camera``: R, t
    are the model-to-camera poses (no pivot); ``camera``: the glTF's camera node."""
    from redafit.io.images import save_image
    from redafit.io.meshes import shared_texture, write_glb, write_mesh

    make_folder(out)  # in the group: removed again if the writing fails
    centre = np.zeros(3) if in_camera else rig.neutral.mean(0)
    if fmt == "glb":
        # the head turns about the neutral's centre, as on the per-frame meshes: the vertices relative to it, the
        # node at it (plus the track's translation); no motion for --pose none. In the camera's frame: the head
        # model-to-camera, then to OpenGL's camera axes (y and z negated), the node resting at the first pose
        from scipy.spatial.transform import Rotation

        still = np.allclose(R, np.eye(3)) and not np.any(t)
        v, tris, uvkw = rig.mesh(rig.neutral if still else rig.neutral - centre)
        to_gl = np.diag([1.0, -1.0, -1.0]) if in_camera else np.eye(3)
        rot, move = to_gl @ R, (centre + t) @ to_gl.T
        quats = Rotation.from_matrix(rot).as_quat()
        motion = None if still else {"rest_translation": move[0] if in_camera else centre,
                                     "rest_rotation": quats[0] if in_camera else None,
                                     "rotation": quats, "translation": move}
        return write_glb(out / "anim.glb", v, tris, morph_targets=rig.morph_targets(), animation=W, times=times,
                         texture=rig.texture if uvkw else None, name="rig", motion=motion, camera=camera,
                         unlit=bool(uvkw) and rig.photo_textured, **uvkw)
    written, shared = [], {}
    if rig.textured:  # every frame wears one copy of the rig's texture
        save_image(out / TEXTURE_FILE, rig.texture)
        files, shared = shared_texture(out, f".{fmt}", TEXTURE_FILE, MATERIAL)
        written += [out / TEXTURE_FILE] + files
    for k, f in enumerate(names):
        v = rig.shape(W[k])
        v, tris, uvkw = rig.mesh((v - centre) @ R[k].T + centre + t[k])
        written += write_mesh(out / f"frame_{f:05d}.{fmt}", v, tris, frame="camera" if in_camera else "head", **uvkw,
                              **shared)
    _warn_other_frames(out, written)
    return written


def _warn_other_frames(out: Path, written: list) -> None:
    """A warning when ``out`` holds frame meshes this run does not write (an earlier run's, or another part of the
    same track's): they are left, but `view out/` plays them with these."""
    import re

    mine = {Path(p).name for p in written}
    other = sorted(p.name for p in out.glob("frame_*") if re.fullmatch(r"frame_\d{5,}\.(obj|ply|npz)", p.name)
                   and p.name not in mine)
    if other:
        log.warning("%s also holds %d frame mesh(es) this run does not write (%s%s), left as they are: `redafit view` "
                    "of the folder plays them too (an empty folder for a new animation)", out, len(other), other[0],
                    f" ... {other[-1]}" if len(other) > 1 else "")
