"""A track drawn over its frames (``redafit track --overlay``): what ``params.jsonl`` says, seen on the video.

Each tracked frame is drawn as ``redafit fit --overlay`` draws a photo (:func:`redafit.fit.outputs.render_overlay`:
the mesh in grey, the frame's landmarks in green, the mesh's own landmark points in red - the inner 51; the jaw's
follow the outline and are not drawn) from the record as written (after ``--smooth``), with the track's final
identity, the identity the records are meant with (:mod:`redafit.rig.retarget`, ``track.json``). A frame without a
usable face is written as it is, captioned. The frames are read a second time (:func:`redafit.rig.track.open_frames`)
so that the overlay follows the smoothed records rather than the raw per-frame fits.

Output: a video (:data:`redafit.io.video.VIDEO_CODECS`) at the track's rate, the size of the first frame, or a
folder of ``frame_<source frame>.png``. Either appears whole or not at all.

``redafit track --maps DIR`` writes each tracked frame's maps (:mod:`redafit.render.maps`: depth, normals,
parsing, mask on the frame's pixel grid) of the same mesh into ``DIR/frame_<source frame>/``
(:func:`write_track_maps`); they need the records only, not the frames.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from redafit.io.video import VIDEO_CODECS

INNER = slice(17, 68)  # iBUG-68: brows, nose, eyes, mouth (the jaw's 0-16 slide along the outline)


def is_video(path) -> bool:
    """Whether ``--overlay path`` names a video (else a folder of PNGs)."""
    return Path(path).suffix.lower() in VIDEO_CODECS


def frame_file(folder, index: int) -> Path:
    return Path(folder) / f"frame_{int(index):05d}.png"


def record_camera_vertices(record: dict, model, identity, displacement=None) -> np.ndarray:
    """[V, 3] mm, camera frame: the model with ``identity`` (and the shared free-form ``displacement``), the
    record's expression (by name) and pose."""
    import torch

    from redafit.render.camera import pose_rotation, transform

    names = list(model.expression_names)
    exp = torch.tensor([[float(record["expression"].get(n, 0.0)) for n in names]], dtype=torch.float32)
    idc = None if identity is None else torch.as_tensor(np.asarray(identity, np.float32))[None]
    v = model.forward(idc, exp).detach().cpu()
    if displacement is not None:
        v = v + torch.as_tensor(np.asarray(displacement, np.float32))[None]
    r = torch.tensor([record["pose"]["axis_angle"]], dtype=torch.float32)
    t = torch.tensor([record["pose"]["translation_mm"]], dtype=torch.float32)
    return transform(v, pose_rotation(r), t)[0].numpy()


def draw_record(image: np.ndarray, record: dict, landmarks, model, identity, displacement=None) -> np.ndarray:
    """``image`` with the tracked mesh of ``record`` over it (float RGB in [0, 1])."""
    import torch

    from redafit.fit.outputs import render_overlay
    from redafit.render.camera import Intrinsics, project

    K = Intrinsics.from_dict(record["camera"])
    v = record_camera_vertices(record, model, identity, displacement)
    ids = np.asarray(model.landmark_ids.cpu() if hasattr(model.landmark_ids, "cpu") else model.landmark_ids)
    fit = np.full((len(ids), 2), np.nan)
    fit[INNER] = project(torch.as_tensor(v[ids[INNER]])[None], K)[0].numpy()
    target = np.full((0, 2), np.nan) if landmarks is None else np.asarray(landmarks, np.float64)
    res = SimpleNamespace(intrinsics=K, vertices_camera=v, landmarks_target=target, landmarks_fit=fit)
    return render_overlay(image, res, model)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` in its top-left corner (red on a dark band), float RGB in [0, 1]."""
    import cv2

    out = np.ascontiguousarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    scale = max(0.35, out.shape[0] / 700)
    h = int(24 * scale) + 6
    out[:h] = (out[:h] * 0.4).astype(np.uint8)
    cv2.putText(out, text, (6, h - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 80, 80), 1, cv2.LINE_AA)
    return out.astype(np.float32) / 255


def overlay_frames(result, model, frames):
    """(frame index, overlay image) for each of ``frames`` (an :func:`~redafit.rig.track.open_frames` iterator of
    the tracked source) that has a record in ``result``; an unreadable frame is left out."""
    by_frame = {r["frame"]: (r, lm) for r, lm in zip(result.records, result.landmarks or [None] * len(result.records))}
    for index, _, image in frames:
        if index not in by_frame or isinstance(image, Exception):
            continue
        rec, lm = by_frame[index]
        if rec.get("ok"):
            yield index, draw_record(image, rec, lm, model, result.identity, result.displacement)
        else:
            yield index, caption(image, f"frame {index}: no face tracked")


def write_overlay(result, model, frames, path) -> list[Path]:
    """Write the track's overlay (see the module's description) to ``path``: a video, or a folder of PNGs. The
    files are part of the caller's :func:`~redafit.io.atomic.atomic_group` when there is one."""
    from redafit.io.atomic import atomic_group, make_folder
    from redafit.io.images import save_image
    from redafit.io.video import video_writer

    path = Path(path)
    if is_video(path):
        make_folder(path.parent)
        with video_writer(path, result.fps) as write:
            for _, img in overlay_frames(result, model, frames):
                write(img)
        return [path]
    written = []
    make_folder(path)
    with atomic_group():
        for index, img in overlay_frames(result, model, frames):
            save_image(frame_file(path, index), img)
            written.append(frame_file(path, index))
    return written


def write_track_maps(result, model, folder, caps: bool = True) -> list[Path]:
    """Write every tracked frame's maps (:func:`redafit.render.maps.save_maps`) of the mesh :func:`draw_record`
    draws (with the eye and mouth caps unless ``caps`` is False) into ``folder/frame_<source frame>/``; a frame
    without a face gets none. Part of the caller's :func:`~redafit.io.atomic.atomic_group` when there is one."""
    from redafit.io.atomic import atomic_group
    from redafit.render.camera import Intrinsics
    from redafit.render.maps import render_maps, save_maps

    tris = model.triangles.cpu().numpy()
    written = []
    with atomic_group():
        for rec in result.records:
            if not rec.get("ok"):
                continue
            v = record_camera_vertices(rec, model, result.identity, result.displacement)
            res = SimpleNamespace(intrinsics=Intrinsics.from_dict(rec["camera"]), vertices_camera=v, triangles=tris)
            written += save_maps(frame_file(folder, rec["frame"]).with_suffix(""), render_maps(res, model, caps))
    return written
