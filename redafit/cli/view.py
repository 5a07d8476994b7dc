"""``redafit view``: meshes drawn from several angles into one image, or into a video's frames
(:mod:`redafit.render.preview`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from redafit.errors import RedafitError, UsageError
from redafit.io.video import VIDEO_CODECS

log = logging.getLogger("redafit")

# redafit.render.preview.VIEW_FRAMES, spelled out so that the CLI does not import torch to start (a test compares)
VIEW_FRAME_CHOICES = ("auto", "camera", "head")
MAX_VIEWS = 12  # views side by side in an image
MAX_FRAMES = 3600  # yaws of a video (a turntable)


def _angles(ctx, param, value: str) -> tuple:
    """``--yaw -40,0,40`` or ``--yaw -60:60:5`` (from, to, step: both ends included), or a mix: finite angles in
    [-180, 180] degrees, at most :data:`MAX_FRAMES`."""
    import math

    out: list = []
    for part in value.split(","):
        try:
            nums = [float(x) for x in part.split(":")]
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected degrees separated by commas (e.g. -40,0,40) or a range "
                                     "from:to:step (e.g. -60:60:5)") from None
        if len(nums) == 3:
            a, b, step = nums
            if not (math.isfinite(step) and step > 0 and math.isfinite(a) and math.isfinite(b)):
                raise click.BadParameter(f"{part!r}: a range from:to:step needs a positive step")
            n = int(math.floor(abs(b - a) / step + 1e-9)) + 1
            if n > MAX_FRAMES:
                raise click.BadParameter(f"{part!r}: more than {MAX_FRAMES} angles")
            out += [a + math.copysign(k * step, b - a) for k in range(n)]
        elif len(nums) == 1:
            out += nums
        else:
            raise click.BadParameter(f"{part!r}: expected an angle or a range from:to:step")
    if not 1 <= len(out) <= MAX_FRAMES or not all(math.isfinite(a) and -180 <= a <= 180 for a in out):
        raise click.BadParameter(f"{value!r}: expected 1 to {MAX_FRAMES} angles between -180 and 180 degrees")
    return tuple(out)


@click.command("view")
@click.argument("meshes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The image to write (.png, .jpg, ...): per mesh a row of its colours and a row of grey shading; "
                   "or a video (.mp4, .avi): a frame per mesh and yaw, in order.")
@click.option("--yaw", "yaws", default="-40,0,40", show_default=True, callback=_angles,
              help="The views' turns about the vertical axis in degrees (positive: the mesh's right side comes "
                   "into view): a list (-40,0,40) or a range from:to:step (-60:60:5, a video's turntable).")
@click.option("--pitch", type=click.FloatRange(-89, 89), default=0.0, show_default=True,
              help="Degrees above (positive) or below the mesh.")
@click.option("--size", type=click.IntRange(64, 1024), default=384, show_default=True, help="Side of each view (px).")
@click.option("--frame", type=click.Choice(VIEW_FRAME_CHOICES), default="auto", show_default=True,
              help="The meshes' axes: camera - OpenCV camera axes (fit's default), the 0 view from the photo's "
                   "camera; head - y up, the face towards +z; auto - the frame redafit's own mesh files record, "
                   "else camera for a mesh in front of the origin (its centre farther than its depth), else head "
                   "(.glb: always y up).")
@click.option("--rows", type=click.Choice(["both", "colour", "shaded"]), default="both", show_default=True,
              help="What to draw: the mesh's colours (texture or vertex colours, unlit: they hold the photo's "
                   "light), grey shading (the shape alone), or both (by default; the shading alone when no mesh "
                   "has colours).")
@click.option("--lit", is_flag=True,
              help="Shade the colour row by the grey row's light: for colours that hold no light of their own "
                   "(fit --texture albedo), which drawn unlit look flat.")
@click.option("--expressions", default="", metavar="LIST",
              help="For a rig folder: also draw its neutral with each of these expressions at weight 1 "
                   "(comma-separated names, e.g. jawOpen,mouthSmile_L,eyeBlink_L).")
@click.option("--fps", type=click.FloatRange(1, 240), default=25.0, show_default=True,
              help="A video's frame rate.")
@click.pass_context
def view_cmd(ctx, meshes, output, yaws, pitch, size, frame, rows, lit, expressions, fps):
    """Draw meshes (.obj with its texture, .ply, .glb, .npz) or rig folders from several angles into one image or a
    video: a look at a fit's shape and texture without a 3D viewer.

    A rig folder (`redafit rig`) is drawn as its neutral, and with --expressions each of those expressions too;
    another folder stands for the meshes in it, in natural name order (retarget's frames). A video's frames all
    share one framing, so a head that moves from mesh to mesh moves in the video. A mesh that cannot be read is
    reported and left out (exit 1; the others are drawn).

    \b
    Examples:
      redafit view face.obj -o face_views.png
      redafit view a.obj b.obj --yaw -60,-30,0,30,60 --rows shaded -o compare.png
      redafit view rig/ --expressions jawOpen,eyeBlink_L --pitch 15 --size 512 -o rig_views.jpg
      redafit view face.obj --yaw -90:90:3 -o turntable.mp4
      redafit view relightable.glb --lit -o lit_views.png
      redafit view anim/ --yaw 0 --fps 30 -o anim.mp4
    """
    from redafit.cli.fit import refuse_overwriting_inputs
    from redafit.io.images import SAVE_EXTENSIONS

    ext = output.suffix.lower()
    video = ext in VIDEO_CODECS
    if not video and ext not in SAVE_EXTENSIONS:
        raise UsageError(f"-o {output}: unsupported extension (an image: {', '.join(sorted(SAVE_EXTENSIONS))}; a "
                         f"video: {', '.join(VIDEO_CODECS)})")
    if not video and len(yaws) > MAX_VIEWS:
        raise UsageError(f"--yaw: {len(yaws)} views, at most {MAX_VIEWS} side by side in an image (a video, "
                         f"-o {output.stem}.mp4, takes up to {MAX_FRAMES})")
    exprs = tuple(e.strip() for e in expressions.split(",") if e.strip())
    if exprs and not any(_is_rig(p) for p in meshes):
        raise UsageError("--expressions draws a rig's expressions: give a rig folder (redafit rig's output)")
    loaded, failures = _load(meshes, exprs)
    refuse_overwriting_inputs("view", [(output, "the output")],
                              [(f, f"the input {f}") for _, m in loaded for f in m.files], choose="name")
    from redafit.io.atomic import make_folder

    make_folder(output.parent)
    if rows == "both" and ctx.get_parameter_source("rows") == click.core.ParameterSource.DEFAULT and \
            not any(m.texture is not None or m.colors is not None for _, m in loaded):
        rows = "shaded"  # a colour row would be one flat grey
        log.info("no mesh has colours: the shaded row alone (--rows both draws a grey colour row too)")
    if lit and rows == "shaded":
        log.warning("--lit shades the colour row; --rows shaded draws none")
    kw = {"pitch": pitch, "size": size, "frame": frame, "shaded": rows != "colour", "coloured": rows != "shaded",
          "lit": lit}
    n = _write_video(output, loaded, yaws, fps, **kw) if video else _write_image(output, loaded, yaws, **kw)
    if (ctx.obj or {}).get("verbosity", 0) >= 0:
        what = f"{n} frame(s)" if video else f"{len(yaws)} view(s) each"
        click.echo(f"view: {len(loaded)} mesh(es), {what}; wrote {output}", err=True)
    if failures:
        sys.exit(1)


def _is_rig(path: Path) -> bool:
    return path.is_dir() and (path / "expressions.npz").is_file()


def _load(meshes, exprs) -> tuple[list, list]:
    """([(path, ViewMesh)], [exit codes of the meshes left out]): each argument once; a rig folder its neutral and
    ``exprs``; another folder its mesh files in natural name order. One argument that fails is its own error; of
    several, each failure is reported and left out, and all failing exits with their common code (else 1)."""
    from redafit.io.inputs import folder_files
    from redafit.render.preview import VIEW_FORMATS, read_view_mesh, rig_view_meshes

    loaded, failures, textures = [], [], {}
    paths = list(dict.fromkeys(meshes))
    for p in paths:
        try:
            if _is_rig(p):  # its neutral and the expressions asked for, each its own block
                loaded += [(p / name, m) for name, m in rig_view_meshes(p, exprs)]
            elif p.is_dir():
                files = folder_files(p, VIEW_FORMATS, "meshes", error=UsageError, hint=" and not a rig folder")
                loaded += [(f, read_view_mesh(f, textures)) for f in files]
            else:
                loaded.append((p, read_view_mesh(p, textures)))
        except RedafitError as e:
            if len(paths) == 1:
                raise
            failures.append(e.exit_code)
            click.echo(f"redafit: error: {e} (left out)", err=True)
    if not loaded:  # every one failed: their common exit code, else 1
        click.echo(f"redafit: none of the {len(paths)} meshes can be read", err=True)
        sys.exit(failures[0] if len(set(failures)) == 1 else 1)
    return loaded, failures


def _write_image(output: Path, loaded: list, yaws, **kw) -> int:
    """Each mesh's block of views one below the other, labelled when there are several."""
    import numpy as np

    from redafit.io.images import save_image
    from redafit.render.preview import render_views

    blocks = [render_views(m, yaws, **kw) for _, m in loaded]
    if len(loaded) > 1:  # each block named by its file's name, or by its path as given where names repeat
        names = [p.name for p, _ in loaded]
        names = [n if names.count(n) == 1 else str(p) for n, (p, _) in zip(names, loaded)]
        blocks = [_labelled(b, n) for b, n in zip(blocks, names)]
    save_image(output, np.vstack(blocks))
    return len(blocks)


def _write_video(output: Path, loaded: list, yaws, fps: float, **kw) -> int:
    """A frame per mesh and yaw (the meshes in order, each turned through the yaws), all in one framing: the
    sphere around every mesh. Written to a temporary file that replaces ``output`` once complete."""
    from redafit.io.video import video_writer
    from redafit.render.preview import render_views, view_bounds

    bounds = view_bounds([m for _, m in loaded], kw["frame"])
    n = 0
    with video_writer(output, fps) as write:
        for _, m in loaded:
            for yaw in yaws:
                write(render_views(m, (yaw,), bounds=bounds, **kw))
                n += 1
    return n


def _labelled(block, name: str):
    """``block`` with ``name`` written in its top-left corner (several meshes in one image)."""
    import cv2
    import numpy as np

    out = np.ascontiguousarray((block * 255).astype(np.uint8))
    scale = max(0.4, block.shape[0] / 900)
    cv2.putText(out, name, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return out.astype(np.float32) / 255


COMMANDS = [view_cmd]
