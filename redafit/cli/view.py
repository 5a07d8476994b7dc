"""``redafit view``: meshes drawn from several angles into one image (:mod:`redafit.render.preview`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from redafit.errors import RedafitError, UsageError

log = logging.getLogger("redafit")

# redafit.render.preview.VIEW_FRAMES, spelled out so that the CLI does not import torch to start (a test compares)
VIEW_FRAME_CHOICES = ("auto", "camera", "head")
MAX_VIEWS = 12


def _angles(ctx, param, value: str) -> tuple:
    """``--yaw -40,0,40``: 1 to :data:`MAX_VIEWS` finite angles in [-180, 180] degrees."""
    import math

    try:
        angles = tuple(float(a) for a in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected degrees separated by commas (e.g. -40,0,40)") from None
    if not 1 <= len(angles) <= MAX_VIEWS or not all(math.isfinite(a) and -180 <= a <= 180 for a in angles):
        raise click.BadParameter(f"{value!r}: expected 1 to {MAX_VIEWS} angles between -180 and 180 degrees")
    return angles


@click.command("view")
@click.argument("meshes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The image to write (.png, .jpg, ...): per mesh a row of its colours and a row of grey shading.")
@click.option("--yaw", "yaws", default="-40,0,40", show_default=True, callback=_angles,
              help="The views' turns about the vertical axis, in degrees, separated by commas (positive: the mesh's "
                   "right side comes into view).")
@click.option("--pitch", type=click.FloatRange(-89, 89), default=0.0, show_default=True,
              help="Degrees above (positive) or below the mesh.")
@click.option("--size", type=click.IntRange(64, 1024), default=384, show_default=True, help="Side of each view (px).")
@click.option("--frame", type=click.Choice(VIEW_FRAME_CHOICES), default="auto", show_default=True,
              help="The meshes' axes: camera - OpenCV camera axes (fit's default), the 0 view from the photo's "
                   "camera; head - y up, the face towards +z; auto - camera for a mesh lying far in front of the "
                   "origin, else head (.glb: always y up).")
@click.option("--rows", type=click.Choice(["both", "colour", "shaded"]), default="both", show_default=True,
              help="What to draw: the mesh's colours (texture or vertex colours, unlit: they hold the photo's "
                   "light), grey shading (the shape alone), or both.")
@click.option("--expressions", default="", metavar="LIST",
              help="For a rig folder: also draw its neutral with each of these expressions at weight 1 "
                   "(comma-separated names, e.g. jawOpen,mouthSmile_L,eyeBlink_L).")
@click.pass_context
def view_cmd(ctx, meshes, output, yaws, pitch, size, frame, rows, expressions):
    """Draw meshes (.obj with its texture, .ply, .glb, .npz) or rig folders from several angles into one image: a
    look at a fit's shape and texture without a 3D viewer.

    A rig folder (`redafit rig`) is drawn as its neutral, and with --expressions each of those expressions too. A
    mesh that cannot be read is reported and left out (exit 1; the others are drawn).

    \b
    Examples:
      redafit view face.obj -o face_views.png
      redafit view a.obj b.obj --yaw -60,-30,0,30,60 --rows shaded -o compare.png
      redafit view rig/ --expressions jawOpen,eyeBlink_L --pitch 15 --size 512 -o rig_views.jpg
    """
    from redafit.cli.rig import refuse_overwriting_inputs
    from redafit.io.images import SAVE_EXTENSIONS

    if output.suffix.lower() not in SAVE_EXTENSIONS:
        raise UsageError(f"-o {output}: unsupported image extension (use one of {', '.join(sorted(SAVE_EXTENSIONS))})")
    from redafit.render.preview import read_view_mesh, rig_view_meshes

    exprs = tuple(e.strip() for e in expressions.split(",") if e.strip())
    if exprs and not any(Path(p).is_dir() for p in meshes):
        raise UsageError("--expressions draws a rig's expressions: give a rig folder (redafit rig's output)")
    loaded, failures = [], []
    paths = list(dict.fromkeys(meshes))  # each file once
    for p in paths:
        try:
            if p.is_dir():  # a rig folder: its neutral and the expressions asked for, each its own block
                loaded += [(p / name, m) for name, m in rig_view_meshes(p, exprs)]
            else:
                loaded.append((p, read_view_mesh(p)))
        except RedafitError as e:
            if len(paths) == 1:
                raise
            failures.append(e.exit_code)
            click.echo(f"redafit: error: {e} (left out)", err=True)
    if not loaded:  # every one failed: their common exit code, else 1
        click.echo(f"redafit: none of the {len(paths)} meshes can be read", err=True)
        sys.exit(failures[0] if len(set(failures)) == 1 else 1)
    refuse_overwriting_inputs("view", [(output, "the output")],
                              [(f, f"the input {f}") for _, m in loaded for f in m.files], choose="name")
    import numpy as np

    from redafit.io.atomic import make_folder
    from redafit.io.images import save_image
    from redafit.render.preview import render_views

    blocks = [render_views(m, yaws, pitch, size, frame, shaded=rows != "colour", coloured=rows != "shaded")
              for _, m in loaded]
    if len(loaded) > 1:  # each block named by its file's name, or by its path as given where names repeat
        names = [p.name for p, _ in loaded]
        names = [n if names.count(n) == 1 else str(p) for n, (p, _) in zip(names, loaded)]
        blocks = [_labelled(b, n) for b, n in zip(blocks, names)]
    make_folder(output.parent)
    save_image(output, np.vstack(blocks))
    if (ctx.obj or {}).get("verbosity", 0) >= 0:
        click.echo(f"view: {len(loaded)} mesh(es), {len(yaws)} view(s) each; wrote {output}", err=True)
    if failures:
        sys.exit(1)


def _labelled(block, name: str):
    """``block`` with ``name`` written in its top-left corner (several meshes in one image)."""
    import cv2
    import numpy as np

    out = np.ascontiguousarray((block * 255).astype(np.uint8))
    scale = max(0.4, block.shape[0] / 900)
    cv2.putText(out, name, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return out.astype(np.float32) / 255


COMMANDS = [view_cmd]
