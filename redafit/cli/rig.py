"""``redafit rig``, ``redafit track``, ``redafit retarget`` and ``redafit models train-init``."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from redafit.cli import FiniteRange, device_option, resolve_device, show_progress
from redafit.cli.fit import (
    MESH_FRAME_CHOICES,
    TEXTURE_CHOICES,
    NamedFiles,
    _Progress,
    build_config,
    check_texture_kind,
    check_output_folder,
    distinct_photos,
    files_from_option,
    fit_options,
    gather_photos,
    input_options,
    model_option,
    output_names,
    refuse_overwriting_inputs,
)
from redafit.cli.models import models as models_group
from redafit.errors import InputError, NoFaceError, RedafitError, UsageError
from redafit.io import jsonsafe

log = logging.getLogger("redafit")


def _batch_error(failures: list, total: int, what: str) -> RedafitError:
    """The error for a batch with too few usable inputs: the failures' own class when they all agree."""
    from redafit import errors

    codes = {e.exit_code for _, e in failures}
    first = failures[0][1] if failures else None
    cls = type(first) if first is not None and len(codes) == 1 else errors.RedafitError
    detail = "; ".join(f"{Path(p).name}: {e}" for p, e in failures[:3])
    return cls(f"{what}: {total - len(failures)} of {total} images usable, need at least 2"
               + (f" ({detail})" if detail else ""))


def _common_inputs(files_from, model_name) -> list:
    """(path, what) of the --files-from lists and a --model file: read, so never overwritten."""
    inputs = [(Path(f), f"the --files-from list {f}") for f in files_from or () if str(f) != "-"]
    if model_name and Path(model_name).is_file():
        inputs.append((Path(model_name), f"the --model file {model_name}"))
    return inputs


# ------------------------------------------------------------------------------------------------------------ rig
@click.command("rig")
@click.argument("images", nargs=-1, required=False, type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),  # a file there: exit 10
              help="Rig folder to write (neutral.obj, expressions.npz, params.json, rig.glb).")
@click.option("--landmarks", default=None, type=click.Path(path_type=Path),
              help="Folder of <stem>.pts|.txt|.npy|.json landmark files instead of detecting.")
@click.option("--init", "init", type=click.Choice(["auto", "net", "mean"]), default="auto", show_default=True,
              help="Start from the model's init network (auto: when trained, see `redafit models train-init`) "
                   "or from the mean face.")
@click.option("--parsing", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of <stem>.png|.npy parsing maps computed elsewhere (CelebAMask-HQ class ids, registered "
                   "to each photo) instead of parsing the photos; an image without one is left out.")
@click.option("--meshes", is_flag=True, help="Also write each image's mesh (with its expression) into meshes/.")
@click.option("--frame", type=click.Choice(MESH_FRAME_CHOICES), default="camera", show_default=True,
              help="The frame of --meshes' meshes: camera - each lying over its photo (OpenCV axes); head - the "
                   "neutral's frame without the image's pose (y up, z out of the face), the meshes lined up.")
@click.option("--overlays", is_flag=True, help="Also write each photo with the fitted mesh over it into overlays/.")
@click.option("--maps", "maps", is_flag=True,
              help="Also write each photo's maps (as fit --maps: depth, normals, parsing, mask, uv in the rig's "
                   "texture; albedo, shading, specular with --preset full or fast) into maps/<name>/.")
@click.option("--texture-size", type=click.IntRange(0, 4096), default=1024, show_default=True,
              help="Side of the merged texture (0: no texture; with caps a quarter taller: the caps' strip).")
@click.option("--texture", "texture_kind", type=click.Choice(TEXTURE_CHOICES), default="photo", show_default=True,
              help="What the merged texture holds: photo - the photos' colours, lit as in each; albedo - each "
                   "photo's fitted lighting evened out before merging: views lit differently agree, and the rig "
                   "carries no lighting (needs --preset full or fast).")
@click.option("--caps/--no-caps", default=True, show_default=True,
              help="Close the model's eye and mouth holes in the rig's meshes (new vertices after the model's; "
                   "expressions.npz keeps the model's topology and stores the caps).")
@click.option("--views", type=click.IntRange(2, 30), default=7, show_default=True,
              help="From a video: how many frames to fit, chosen to cover the widest range of yaw.")
@click.option("--start", type=FiniteRange(0, 10 ** 7), default=0.0, metavar="SECONDS",
              help="From a video: its frames from this time on.")
@click.option("--end", type=FiniteRange(0, 10 ** 7, min_open=True), default=None, metavar="SECONDS",
              help="From a video: its frames before this time.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@files_from_option
@model_option
@input_options
@fit_options
@device_option
@click.pass_context
def rig_cmd(ctx, images, output, landmarks, init, parsing, meshes, frame, overlays, maps, texture_size, texture_kind,
            caps, views, start, end, as_json, files_from, model_name, detector, face_index, max_side, focal, device,
            **fit_kw):
    """Fit one personalised rig (shared identity and texture, per-image expression, pose and lighting) to
    several photos of a person.

    \b
    A folder stands for the images in it (not its subfolders). Bad images (unreadable, no face) are reported and
    left out; at least 2 must remain. One video instead: --views frames of it (default 7) covering the widest range
    of yaw, as the tracker's cache chooses them, named frame_<N> after their index.
    The photo - is read from standard input (named stdin in the rig's outputs).
    Exit codes: 0 all images used; 1 some left out (the rig is still written); the error's own code otherwise.
    Examples:
      redafit rig imgs/*.jpg -o rig/
      redafit rig shoot/ -o rig/
      redafit rig head_turn.mp4 -o rig/ --views 7
      redafit rig imgs/*.jpg -o rig/ --landmarks lms/ --preset landmarks --meshes --frame head --overlays
      redafit rig imgs/*.jpg -o rig/ --maps
      redafit rig imgs/*.jpg -o rig/ --texture albedo
      redafit rig imgs/*.jpg -o rig/ --init mean --iters-scale 0.5
      redafit rig imgs/*.jpg -o rig/ --parsing parsings/
      ls shoot/*.jpg | redafit rig --files-from - -o rig/
    """
    import numpy as np
    import torch

    from redafit.fit.pipeline import InputOptions, load_input
    from redafit.io.images import STDIN
    from redafit.model.store import load_model
    from redafit.rig.fit import fit_rig, save_rig

    if landmarks is not None and not landmarks.is_dir():
        raise UsageError(f"--landmarks {landmarks}: expected a folder of <stem>.<ext> landmark files")
    if parsing is not None and not parsing.is_dir():
        raise UsageError(f"--parsing {parsing}: expected a folder of <stem>.png|.npy parsing maps")
    if frame != "camera" and not meshes:
        log.warning("--frame %s sets the frame of --meshes' meshes; ignored without --meshes", frame)
    video = _rig_video(images, files_from, landmarks, parsing)
    if video is None and (start or end is not None):
        raise UsageError("rig: --start and --end choose a video's frames; photos are given")
    if end is not None and end <= start:
        raise UsageError(f"--end {end} must come after --start {start}")
    if video is None:
        images = distinct_photos(gather_photos(images, files_from, "rig", folders=True), "rig")
        if len(images) < 2:
            missing = [p for p in images if str(p) != STDIN and not Path(p).exists()]
            if missing:  # a pattern the shell matched to nothing (`rig shoot/*.jpg` in an empty folder)
                raise InputError(f"image not found: {missing[0]}")
            raise UsageError("rig: give at least 2 images of the person")
    check_output_folder(output)
    if video is None:
        names = output_names(images)
        outputs = _rig_files(output, names, meshes, overlays, texture_size, maps)
        refuse_overwriting_inputs("rig", outputs, _rig_inputs(images, landmarks, parsing, files_from, model_name),
                                  stdin_photo=any(str(p) == STDIN for p in images))
    else:  # the frames' names are known once they are chosen; frame_<N> cannot be the video or the model
        outputs = _rig_files(output, [], meshes, overlays, texture_size, maps)
        refuse_overwriting_inputs("rig", outputs,
                                  [(video, f"the input video {video}")] + _common_inputs(files_from, model_name))
    from redafit.io.atomic import check_replaceable

    for f, _ in outputs:  # a read-only file in the way: now, not after the fits
        check_replaceable(f)
    dev = resolve_device(device)
    torch.set_grad_enabled(True)
    config = build_config(has_depth=None, **fit_kw)
    if texture_size:
        check_texture_kind(texture_kind, config)
    elif texture_kind != "photo":
        log.warning("--texture %s sets the merged texture's colours; --texture-size 0 writes none: ignored",
                    texture_kind)
    if parsing is not None and not config.attributes:
        log.warning("--parsing is used by the attribute stages of --preset full or fast; ignored here")
    model = load_model(model_name, device=dev)
    opts = InputOptions(detector=detector, face_index=face_index, max_side=max_side, focal=focal)
    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    loaded, parsings, failures = [], [], []
    with _Progress(show_progress(ctx)) as prog:
        if video is not None:
            from redafit.rig.views import pick_video_views

            loaded = [(v.name, v) for v in pick_video_views(video, model, views, detector=detector,
                                                             face_index=face_index, max_side=max_side, focal=focal,
                                                             progress=prog, start=start, end=end)]
            images = [video] * len(loaded)
        else:
            for p, name in zip(images, names):
                try:
                    inp = load_input(p, landmarks, opts)
                    if parsing is not None:
                        from redafit.parsing.maps import parsing_map_for

                        parsings.append(parsing_map_for(p, parsing, inp.image))
                    loaded.append((name, inp))
                except RedafitError as e:
                    failures.append((p, e))
                    prog.log(f"redafit: error: {p}: {e} (left out)")
        if len(loaded) < 2:
            raise _batch_error(failures, len(images), "rig")
        prog.start(f"rig ({len(loaded)} images)")
        rig = fit_rig([x.image for _, x in loaded], [x.landmarks for _, x in loaded], model, config,
                      intrinsics=[x.intrinsics for _, x in loaded], names=[n for n, _ in loaded], init=init,
                      texture_size=texture_size, progress=prog,
                      parsings=parsings if parsing is not None else None, caps=caps, texture=texture_kind)
        rig.excluded = [{"image": str(p), "error": str(e), "exit_code": e.exit_code} for p, e in failures]
        written = save_rig(rig, output, meshes=meshes, model=model, frame=frame,
                           overlays={n: x.image for n, x in loaded} if overlays else None, maps=maps,
                           images={n: x.image for n, x in loaded} if maps else None)
    flagged = [f for f in rig.frames if f.failure]
    for f in flagged:
        log.warning("rig: %s looks implausible: %s", f.name, f.failure)
    if as_json:
        click.echo(jsonsafe.dumps({"output": str(output), "images": len(images), "used": len(loaded),
                               "excluded": rig.excluded, "init": rig.init, "seconds": round(rig.seconds, 3),
                               "seconds_per_image": round(rig.seconds / len(loaded), 3),
                               "landmark_error_px": [round(f.landmark_error_px, 3) for f in rig.frames],
                               "files": [str(p) for p in written]}))
    elif not quiet:
        err = np.mean([f.landmark_error_px for f in rig.frames])
        used = f"{len(loaded)} of {len(images)} images" if video is None else f"{len(loaded)} frames of {video.name}"
        click.echo(f"rig: {used}, init {rig.init}, mean landmark error {err:.2f} px, {rig.seconds:.1f} s; wrote "
                   f"{output}/", err=True)
    if failures:
        click.echo(f"redafit: {len(failures)} of {len(images)} images left out", err=True)
        sys.exit(1)


def _rig_video(images, files_from, landmarks, parsing) -> Path | None:
    """The video of ``redafit rig clip.mp4`` (one video file, nothing else), else None (photos)."""
    from redafit.rig.track import VIDEO_EXTS

    videos = [p for p in images if Path(p).suffix.lower() in VIDEO_EXTS]
    if not videos:
        return None
    if len(images) > 1 or files_from:
        raise UsageError(f"rig: {videos[0]} is a video; give one video alone, or photos")
    if landmarks is not None or parsing is not None:
        raise UsageError("rig: --landmarks and --parsing are for photos; a video's frames are detected and parsed")
    if not Path(videos[0]).is_file():
        raise UsageError(f"rig: {videos[0]}: no such video file")
    return Path(videos[0])


def _rig_files(output: Path, names: list, meshes: bool, overlays: bool, texture_size: int, maps: bool = False) -> list:
    """(path, what) of the files :func:`redafit.rig.fit.save_rig` writes into the rig folder ``output``."""
    from redafit.io.meshes import mesh_files

    files = [(f, f"the rig's {what}") for f, what in mesh_files(output / "neutral.obj").items()
             if texture_size or what == "mesh"]
    files += [(output / "expressions.npz", "the rig's expressions"), (output / "params.json", "the rig's parameters"),
              (output / "rig.glb", "the rig's glTF")]
    if meshes:
        from redafit.io.meshes import shared_texture_files
        from redafit.rig.fit import MESHES_MATERIAL

        files += [(output / "meshes" / f"{n}.obj", f"the mesh of {n}") for n in names]
        if texture_size:
            files += [(f, "the meshes' material") for f in shared_texture_files(output / "meshes", ".obj",
                                                                                 MESHES_MATERIAL)]
    files += [(output / "overlays" / f"{n}.png", f"the overlay of {n}") for n in names if overlays]
    if maps:
        from redafit.render.maps import MAP_FILES

        files += [(output / "maps" / n / f, f"a map of {n}") for n in names for f in MAP_FILES]
    return files


def _rig_inputs(images, landmarks, parsing, files_from, model_name) -> list:
    """(path, what) of every file ``rig`` reads: the photos, their landmark files and parsing maps, the lists."""
    from redafit.cli.fit import input_files

    inputs = [(Path(p), f"the input photo {p}") for p in images]
    inputs += [(Path(f), f"the input {opt} file {f}") for f, opt in input_files(images, landmarks, None, parsing)]
    return inputs + _common_inputs(files_from, model_name)


# ---------------------------------------------------------------------------------------------------------- track
@click.command("track")
@click.argument("sources", metavar="[SOURCE]...", nargs=-1, required=False, type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),  # a file there: exit 10
              help="Folder for params.jsonl (one line per frame), track.json and livelink.csv (ARKit curves).")
@click.option("--every", type=click.IntRange(1, 10000), default=1, show_default=True, help="Use every N-th frame.")
@click.option("--max-frames", type=click.IntRange(1, 10 ** 7), default=None, help="Stop after this many frames.")
@click.option("--start", type=FiniteRange(0, 10 ** 7), default=0.0, metavar="SECONDS",
              help="Begin at this time of the video (or of the frames at --fps).")
@click.option("--end", type=FiniteRange(0, 10 ** 7, min_open=True), default=None, metavar="SECONDS",
              help="Stop at this time (the frame at it not included).")
@click.option("--fps", type=FiniteRange(0, 10000, min_open=True), default=None,
              help="Frame rate of the frames: an image sequence's (default 30), or a video's instead of its own.")
@click.option("--smooth", type=FiniteRange(0, 100), default=0.0, show_default=True,
              help="Temporal Gaussian smoothing of expression and pose (sigma in frames; 0 = off).")
@click.option("--cache-size", type=click.IntRange(2, 20), default=5, show_default=True,
              help="Frames kept for the identity (widest yaw coverage).")
@click.option("--id-every", type=click.IntRange(1, 100000), default=10, show_default=True,
              help="Re-fit the identity on the cache at most every N frames (when the cache changed).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per frame on stdout.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Look for each frame's face near the previous frame's (fast, the same person followed; the "
                   "whole frame when it is not there), or in the whole of every frame.")
@click.option("--overlay", default=None, type=click.Path(path_type=Path),
              help="Also draw the tracked mesh over the frames, as params.jsonl has it (after --smooth): a video "
                   "(.mp4, .avi) at the track's rate, or a folder of frame_<N>.png.")
@click.option("--maps", default=None, type=click.Path(path_type=Path),
              help="Also write each tracked frame's maps (as fit --maps: depth.png, depth.npy, normals.png, "
                   "parsing.png, mask.png, uv.png on the frame's pixels) into this folder's frame_<N>/.")
@click.option("--parsing", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of per-frame parsing maps computed elsewhere (CelebAMask-HQ class ids): <frame stem> for "
                   "a folder of frames, the 6-digit 0-based frame index (000042.png) for a video; a frame without "
                   "one is parsed itself. Used by the identity fits of --preset full or fast.")
@files_from_option(noun="frames")
@model_option
@input_options
@fit_options
@device_option
@click.pass_context
def track_cmd(ctx, sources, output, every, max_frames, start, end, fps, smooth, cache_size, id_every, as_json, follow,
              overlay, maps, parsing, files_from, model_name, detector, face_index, max_side, focal, device, **fit_kw):
    """Track expression and head pose through a video, a folder of frames or a list of frame images, with a
    shared identity.

    \b
    SOURCE: one video, one folder (its images in natural name order: f2.png before f10.png), or image files
    (in the order given, then those of --files-from).
    The identity is fitted jointly on a cache of frames covering the widest yaw range; each frame gets its own
    expression and pose (landmark stages). --preset sets how the identity is fitted (default: landmarks).
    Writes params.jsonl, track.json and, for a model with ARKit-named expressions (ICT), livelink.csv: the
    frames' 52 ARKit blendshapes and head angles in Live Link Face's CSV layout, for characters rigged for ARKit.
    Examples:
      redafit track clip.mp4 -o track/
      redafit track frames/ -o track/ --every 2 --smooth 1.5 --fps 25
      redafit track frames/ -o track/ --preset full --parsing parsings/
      redafit track clip.mp4 -o track/ --smooth 1.5 --overlay track/overlay.mp4
      redafit track clip.mp4 -o track/ --maps track/maps/
      ls -v shoot/*.png | redafit track --files-from - -o track/
      redafit retarget rig/ --params track/params.jsonl -o anim/ --format glb
    """
    import torch

    from redafit.io.atomic import atomic_group
    from redafit.io.video import VIDEO_CODECS
    from redafit.model.store import load_model
    from redafit.rig.overlay import frame_file, is_video, write_overlay
    from redafit.rig.track import (
        frame_files,
        frame_parsing_maps,
        frames_focal,
        open_frames,
        track,
        write_track,
    )

    if parsing is not None and not parsing.is_dir():
        raise UsageError(f"--parsing {parsing}: expected a folder of per-frame parsing maps")
    source, files, label = _track_source(sources, files_from)
    check_output_folder(output)  # before the frames are tracked
    if overlay is not None:
        if overlay.suffix and not is_video(overlay):
            raise UsageError(f"--overlay {overlay}: a video ({', '.join(VIDEO_CODECS)}) or a folder of PNGs")
        same = lambda a, b: Path(a).resolve() == Path(b).resolve()  # noqa: E731
        if is_video(overlay) and (overlay.is_dir() or same(overlay, output)):
            raise UsageError(f"--overlay {overlay}: that is a folder{' (-o)' if same(overlay, output) else ''}; "
                             "give the video a file name of its own (e.g. track/overlay.mp4)")
        if not is_video(overlay) and source is not None and Path(source).is_dir() and same(overlay, source):
            raise UsageError(f"--overlay {overlay}: that is the folder of the input frames (a later track of it would "
                             "take the overlay's frames for its own); choose another folder")
        check_output_folder(overlay.parent if is_video(overlay) else overlay)
    if maps is not None:
        check_output_folder(maps, "--maps")
    if source is not None and Path(source).is_dir():
        files = frame_files(source)  # listed once, for the frames and their maps
    inputs = [(Path(f), f"the input frame {f}") for f in files or []] + _common_inputs(files_from, model_name)
    if source is not None and not Path(source).is_dir():
        inputs.append((Path(source), f"the input video {source}"))
    outputs = [(output / "params.jsonl", "the track's parameters"), (output / "track.json", "the track's summary"),
               (output / "livelink.csv", "the track's ARKit curves")]
    if overlay is not None:  # a folder's frames are named by their index in the source
        outputs += ([(overlay, "the overlay video")] if is_video(overlay) else
                    [(frame_file(overlay, i), "an overlay frame") for i in range(len(files or []))])
    refuse_overwriting_inputs("track", outputs, inputs)
    if maps is not None:  # its frame_<N>/ folders go where none of the track's files is
        other = NamedFiles(outputs + inputs).get(maps)
        if other is not None:
            raise UsageError(f"--maps {maps}: that is also {other}; choose another folder")
    if end is not None and end <= start:
        raise UsageError(f"--end {end} must come after --start {start}")
    span = {"every": every, "max_frames": max_frames, "max_side": max_side, "files": files, "start": start, "end": end}
    frames, frames_fps = open_frames(source, fps=fps, **span)
    dev = resolve_device(device)
    torch.set_grad_enabled(True)
    config = build_config(has_depth=None, **fit_kw)
    parsing_for = None
    if parsing is not None and not config.attributes:
        log.warning("--parsing is used by the identity fits of --preset full or fast; ignored here")
    elif parsing is not None:
        parsing_for = frame_parsing_maps(source, parsing, files=files)
    model = load_model(model_name, device=dev)
    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    with _Progress(show_progress(ctx)) as prog:
        def on_frame(rec):
            if not rec.get("ok"):
                prog.log(f"redafit: frame {rec['frame']}: {rec.get('error')}")
            if as_json:
                click.echo(jsonsafe.dumps(rec))
            prog.start(f"frame {rec['frame'] + every}")

        prog.start("frame 0")
        result = track(frames, model, config, fps=frames_fps / every, cache_size=cache_size, id_every=id_every,
                       smooth=smooth, detector=detector, face_index=face_index, progress=prog, on_frame=on_frame,
                       parsing_for=parsing_for, files=files, focal=frames_focal(focal, files), follow=follow)
    with atomic_group():  # the overlay (a second pass over the frames) and the track appear together
        written = write_track(result, output, source=label)
        if overlay is not None:
            again, _ = open_frames(source, fps=fps, **span)
            with _Progress(show_progress(ctx)) as prog:
                prog.start(f"drawing {overlay}")
                drawn = write_overlay(result, model, again, overlay)
        if maps is not None:
            from redafit.rig.overlay import write_track_maps

            with _Progress(show_progress(ctx)) as prog:
                prog.start(f"maps into {maps}")
                write_track_maps(result, model, maps)
    ok = sum(1 for r in result.records if r.get("ok"))
    if not quiet:
        also = "" if overlay is None else (f" and {overlay}" if is_video(overlay) else
                                           f" and {len(drawn)} overlay frames to {overlay}/")
        also += "" if maps is None else f" and {ok} frames' maps to {maps}/"
        click.echo(f"track: {ok} of {len(result.records)} frames tracked, {result.identity_fits} identity fits, "
                   f"{result.seconds / max(1, len(result.records)):.2f} s per frame; wrote "
                   f"{', '.join(f.name for f in written)} to {output}/{also}", err=True)
    # as fit and rig: exit 1 when an input failed (an unreadable frame file, a bad parsing map; each reported above
    # and in params.jsonl); a frame with no face in it is part of a video, reported but not an error
    if any(not r.get("ok") and r.get("exit_code") != NoFaceError.exit_code for r in result.records):
        sys.exit(1)


def _track_source(sources, files_from) -> tuple:
    """(source, files, label) of ``redafit track``: one video or folder (``files`` None: a folder is listed later),
    or a list of frame images (``source`` None; the command line's in order, then ``--files-from``'s). A usage
    error for no source, a folder or video among other sources, or standard input as a frame."""
    from redafit.io.images import STDIN
    from redafit.io.images import IMAGE_EXTS
    from redafit.io.inputs import natural_key
    from redafit.rig.track import VIDEO_EXTS

    if any(str(s) == STDIN for s in sources):
        raise UsageError("track: a frame cannot be read from standard input; list the frames' files with "
                         "--files-from - (e.g. `ls -v frames/*.png | redafit track --files-from - -o track/`)")
    if not sources and not files_from:
        raise UsageError("track: give a video, a folder of frames, frame images, or --files-from FILE")
    if len(sources) == 1 and not files_from:
        one = Path(sources[0])
        if one.is_dir() or one.suffix.lower() not in IMAGE_EXTS:  # a video (or what is not an image: read as one)
            return one, None, str(one)
    paths = gather_photos(sources, files_from, "track", noun="frames")
    if any(str(p) == STDIN for p in paths):
        raise UsageError("track: a frame cannot be read from standard input (a list names the file -)")
    alone = [p for p in paths if p.is_dir() or p.suffix.lower() in VIDEO_EXTS]
    if alone:
        raise UsageError(f"track: {alone[0]} is a {'folder' if alone[0].is_dir() else 'video'}, tracked alone; "
                         "give one video or folder, or frame images")
    names = [natural_key(p.name) for p in paths]
    if names != sorted(names):
        log.warning("track: the %d frames are taken in the order given, which is not their names' order (%s before "
                    "%s); sort them (ls -v) if that is not meant", len(paths),
                    *next((paths[i].name, paths[i + 1].name) for i in range(len(paths) - 1) if names[i] > names[i + 1]))
    label = str(paths[0]) if len(paths) == 1 else f"{len(paths)} frame images ({paths[0]} ... {paths[-1]})"
    return None, list(paths), label


# the identity fit of `track` defaults to the fast landmark preset (`fit` and `rig` default to full)
for _p in track_cmd.params:
    if _p.name == "preset":
        _p.default = "landmarks"


# ------------------------------------------------------------------------------------------------------- retarget
@click.command("retarget")
@click.argument("rig", type=click.Path(path_type=Path))
@click.option("--params", "params", required=True, type=click.Path(path_type=Path),
              help="params.jsonl from `redafit track` (or its folder), a Live Link Face CSV (the app's take, or "
                   "a track's livelink.csv: ARKit curves and head rotation), or the --params JSON of `redafit fit` "
                   "(one frame: a photo's expression and pose).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),  # a file there: exit 10
              help="Output folder: frame_<source frame>.obj ... or anim.glb.")
@click.option("--format", "fmt", type=click.Choice(["obj", "ply", "glb"]), default="obj", show_default=True,
              help="Per-frame meshes (obj, ply) or one animated glTF: morph-target weights and head motion (glb).")
@click.option("--pose", type=click.Choice(["rotation", "full", "camera", "none"]), default="rotation",
              show_default=True,
              help="Head motion on the meshes or in the glTF: rotation, rotation + translation, none, or camera: "
                   "the head where the track saw it, in the video camera's frame (the glTF with that camera: "
                   "looking through it the animation lies over the video).")
@click.option("--fps", type=FiniteRange(0.1, 1000), default=None,
              help="Play the tracked frames at this rate (default: the track's own; a Live Link Face CSV's is its "
                   "frames a second as its timecodes count them, or the track's for a short livelink.csv, or 60 for a "
                   "take under a second; the glTF keys each frame at its own "
                   "time, so failed frames leave gaps of their length).")
@click.pass_context
def retarget_cmd(ctx, rig, params, output, fmt, pose, fps):
    """Drive a rig (from `redafit rig`) with the expressions and head poses tracked by `redafit track` (or fitted to
    a photo by `redafit fit`).

    \b
    Examples:
      redafit retarget rig/ --params track/params.jsonl -o anim/ --format glb
      redafit retarget rig/ --params track/params.jsonl -o meshes/ --format ply --pose full
      redafit retarget rig/ --params track/ -o matchmove/ --format glb --pose camera
      redafit retarget rig/ --params take.csv -o anim/ --format glb   # a Live Link Face recording
      redafit retarget rig/ --params smile.json -o smile/ --pose camera   # a photo's expression (fit --params)
    """
    from redafit.rig.fit import load_rig, rig_files
    from redafit.rig.retarget import retarget_files, write_retarget
    from redafit.rig.track import params_file, read_params, track_camera

    check_output_folder(output)  # a file in the way or a read-only place: exit 10 before the rig is read
    track = params_file(params)
    take = track.suffix.lower() == ".csv"  # a Live Link Face take: head rotation, no head position
    if take and pose == "camera":
        raise UsageError(f"--pose camera: {track} (a Live Link Face CSV) has no head position or camera; use a "
                         "track's params.jsonl")
    r = load_rig(rig)
    records, track_fps = read_params(params, names=r.expression_names)
    outputs = retarget_files(records, output, fmt, textured=r.textured)
    refuse_overwriting_inputs("retarget", [(f, "the output") for f in outputs],
                              [(track, f"the --params file {track}"),
                               (track.parent / "track.json", f"the track summary {track.parent / 'track.json'}")]
                              + [(f, f"the rig's file {f}") for f in rig_files(rig)])
    # --fps F plays the tracked frames as if recorded at F per second (their own times scaled by track_fps / F)
    camera = None if take else records[0].get("camera") if track.suffix.lower() == ".json" else track_camera(params)
    written = write_retarget(r, records, output, fmt=fmt, pose=pose, fps=fps or track_fps,
                             time_scale=track_fps / fps if fps else 1.0, camera=camera)
    if (ctx.obj or {}).get("verbosity", 0) >= 0:
        files = f"{len(written)} file" + ("s" if len(written) != 1 else "")
        frames = f"{len(records)} frame{'s' if len(records) != 1 else ''}"
        click.echo(f"retarget: {frames} onto {rig}; wrote {files} to {output}/", err=True)


# ---------------------------------------------------------------------------------------------- models train-init
@click.command("train-init")
@click.option("--model", "model_name", default="ict", show_default=True, help="Installed model name.")
@click.option("--views", type=click.IntRange(1, 16), default=5, show_default=True, help="Views per training set.")
@click.option("--samples", type=click.IntRange(16, 10 ** 7), default=12000, show_default=True,
              help="Synthetic training sets.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2 ** 63 - 1), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON on stdout.")
@click.option("--if-missing", is_flag=True,
              help="Do nothing when the model already has a network trained with these settings (`make setup`).")
@click.pass_context
def train_init_cmd(ctx, model_name, views, samples, epochs, seed, as_json, if_missing):
    """Train the rig initialisation network on synthetic landmarks of the installed model (CPU, deterministic).

    \b
    Saved as <model folder>/initnet.pt + initnet.json; `redafit rig` then starts from it.
    Examples:
      redafit models train-init --model ict
      redafit models train-init --model ict --samples 4000 --epochs 8 --seed 1
      redafit models train-init --if-missing
    """
    from redafit.errors import ModelError
    from redafit.model.store import is_installed, load_model
    from redafit.rig.initnet import InitNetConfig, save_initnet, train_initnet

    if not is_installed(model_name):
        raise ModelError(f"model '{model_name}' is not installed; run: redafit models install {model_name} "
                         "[--from DIR]")
    model = load_model(model_name, device="cpu")
    cfg = InitNetConfig(n_id=model.n_id, n_exp=model.n_exp, unit_exp=model.info.expression_prior == "unit",
                        views=views, samples=samples, epochs=epochs, seed=seed)
    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    if if_missing:
        from redafit.rig.initnet import load_initnet

        try:
            have = load_initnet(model)
        except ModelError:  # unreadable: train a new one
            have = None
        if have is not None and have.cfg == cfg:
            if as_json:
                from redafit.rig.initnet import initnet_paths

                click.echo(jsonsafe.dumps({"model": model_name, "files": [str(p) for p in initnet_paths(model.name)],
                                           "skipped": True}))
            elif not quiet:
                click.echo(f"train-init: {model_name} already has an init network with these settings", err=True)
            return
    t0 = time.perf_counter()

    def progress(ep, total, loss):
        if not quiet:
            click.echo(f"train-init: epoch {ep}/{total} loss {loss:.4g} ({time.perf_counter() - t0:.0f} s)", err=True)

    net, report = train_initnet(model, cfg, progress=progress)
    paths = save_initnet(net, model, report)
    if as_json:
        click.echo(jsonsafe.dumps({"model": model_name, "files": [str(p) for p in paths],
                                   "seconds": round(report.seconds, 2), "heldout": report.heldout}))
    elif not quiet:
        h = report.heldout
        click.echo(f"train-init: {report.seconds:.0f} s; held-out identity RMS {h['net']['identity_rms_mm']:.2f} mm "
                   f"(mean face {h['mean']['identity_rms_mm']:.2f}), pose {h['net']['pose_rms_deg']:.1f} deg "
                   f"(frontal {h['mean']['pose_rms_deg']:.1f}); wrote {paths[0]}", err=True)


models_group.add_command(train_init_cmd)

COMMANDS = [rig_cmd, track_cmd, retarget_cmd]
