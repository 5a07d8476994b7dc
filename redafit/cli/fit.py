"""``redafit fit``: fit the face model to one or more photos."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from redafit.cli import (
    LOG_FORMAT,
    FiniteRange,
    FocalType,
    Terminated,
    device_option,
    interruption,
    resolve_device,
    show_progress,
)
from redafit.errors import InputError, RedafitError, UsageError
from redafit.io import jsonsafe

log = logging.getLogger("redafit")

MESH_FORMATS = ("obj", "ply", "npz", "glb")


def model_option(f):
    return click.option("--model", "model_name", default="ict", show_default=True,
                        help="Installed model name (see `redafit models list`) or a model file/folder path.")(f)


def input_options(f):
    f = click.option("--detector", type=click.Choice(["dlib", "dlib-cnn", "fan"]), default="dlib",
                     show_default=True, help="Landmark detector for the photos without a landmark file.")(f)
    f = click.option("--face-index", type=int, default=None,
                     help="Which detected face to fit, counted left to right from 0 (default: the largest).")(f)
    f = click.option("--max-side", type=click.IntRange(64, 16384), default=4096, show_default=True,
                     help="Downscale larger images to this many pixels on their longer side first.")(f)
    return f


def fit_options(f):
    """Options shared by `fit`, `rig` and `track` that shape the FitConfig."""
    opts = [
        click.option("--preset", type=click.Choice(["full", "fast", "landmarks"]), default="full", show_default=True,
                     help="full: the ReDA four-stage fit; fast: the same stages and weights with the plain z-buffer "
                          "(25-40 % less time); landmarks: rigid + landmark identity/expression only."),
        click.option("--attributes", default=None, metavar="LIST",
                     help="ReDA attributes, any of color,mask,depth (default color,mask; depth needs fit's --depth)."),
        click.option("--raster", type=click.Choice(["reda", "zbuffer"]), default=None,
                     help="Soft ReDA rasterization (default) or the plain z-buffer baseline."),
        click.option("--raster-backend", type=click.Choice(["auto", "torch", "nvdiffrast"]), default="auto",
                     show_default=True, help="Rasterizer implementation (nvdiffrast needs CUDA and the package)."),
        click.option("--pyramid-levels", type=click.IntRange(1, 10), default=None,
                     help="ReDA pyramid levels (4: the coarsest 24 px at the 192 px fit size; the paper's 6)."),
        click.option("--slices", type=click.IntRange(1, 32), default=None, help="ReDA depth slices K (5)."),
        click.option("--no-freeform", is_flag=True, help="Skip the free-form (ARAP) deformation stage."),
        click.option("--focal", type=FocalType(), default="auto", show_default=True, metavar="auto|PX|MMmm|Fx",
                     help="The camera's focal length: auto - from the photo's EXIF (its 35 mm-equivalent focal "
                          "length, which phones write) unless it was cropped since, else 1.6 x the longer image "
                          "side (a ~50 mm lens); PX pixels of the photo as stored (1200); a 35 mm-equivalent length "
                          "(26mm); or a multiple of the longer side (1.6x: the default, ignoring EXIF)."),
        click.option("--fit-size", type=click.IntRange(64, 2048), default=None,
                     help="Render size (longer side, px) of the attribute stages (192)."),
        click.option("--landmark-drop", type=FiniteRange(0, 100), default=None, metavar="PX",
                     help="In the last stage, landmarks within PX pixels (at the fit size) stop pulling (the "
                          "paper's stage-3 rule; default 0: every landmark keeps pulling)."),
        click.option("--landmark-sigma", type=FiniteRange(0.1, 20), default=None, metavar="PCT",
                     help="Expected landmark noise per coordinate, in % of the eye distance (2.5: detector "
                          "landmarks). The shape priors scale with its square: lower it for precise landmarks "
                          "(manual or synthetic), raise it for poor ones."),
        click.option("--parsing-net", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     metavar="PATH", help="TorchScript face-parsing network (e.g. a BiSeNet exported with "
                          "torch.jit.trace) for the parsing mask of the full preset, instead of landmarks and skin "
                          "colour."),
        click.option("--occlusion/--no-occlusion", default=None,
                     help="Shade the colour attribute with the ambient occlusion of the model's mean shape "
                          "(default: on)."),
        click.option("--specular/--no-specular", default=None,
                     help="Add a Blinn-Phong highlight of the dominant light to the colour attribute, its strength "
                          "fitted per image (default: on)."),
        click.option("--landmark-guard/--no-landmark-guard", default=None,
                     help="Keep the attribute stages from leaving the fit further from the landmarks than the "
                          "landmark stage (or the --landmark-sigma noise) did (default: on)."),
        click.option("--iters-scale", type=FiniteRange(0.05, 20), default=1.0, show_default=True,
                     help="Multiply every stage's iteration count (speed/quality trade-off)."),
        click.option("--weight", "weights", multiple=True, metavar="[STAGE.]TERM=W",
                     help="Set a loss weight in every stage that has the term (mask=128) or in one stage "
                          "(attributes.landmarks=20); repeatable. Stages and terms: redafit.fit.config; an unknown "
                          "one is an error that lists them."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def build_config(preset, attributes=None, raster=None, raster_backend="auto", pyramid_levels=None, slices=None,
                 no_freeform=False, fit_size=None, iters_scale=1.0, has_depth=False,
                 landmark_drop=None, landmark_sigma=None, parsing_net=None, occlusion=None, specular=None,
                 landmark_guard=None, weights=()):
    """Options -> FitConfig (library call; no click types here). A ``parsing_net`` file is loaded here once, so
    a missing or broken one fails before any fitting (:class:`~redafit.errors.ModelError`). ``weights``:
    ``--weight`` items (:func:`redafit.fit.config.parse_loss_weights`). ``has_depth``: whether a depth map is given,
    or None for a command that takes none (``rig``, ``track``)."""
    from dataclasses import replace

    from redafit.fit.config import ATTRIBUTE_PRESETS, FitConfig

    try:
        config = FitConfig.preset(preset)
    except UsageError:
        if preset not in ATTRIBUTE_PRESETS:
            raise
        log.warning("the full ReDA fit is not available in this build; using the landmark preset")
        config = FitConfig.preset("landmarks")
    attrs = None
    if attributes is not None:
        attrs = tuple(a.strip() for a in attributes.split(",") if a.strip())
        bad = [a for a in attrs if a not in ("color", "mask", "depth")]
        if bad or not attrs:
            raise UsageError(f"--attributes: expected a list of color, mask, depth; got {attributes!r}")
        if "depth" in attrs and not has_depth:
            where = "--depth FILE" if has_depth is not None else "`redafit fit photo --depth FILE` (rig, track: none)"
            raise UsageError(f"--attributes depth needs a depth map: {where}")
    elif has_depth:
        attrs = tuple(config.attributes) + ("depth",)
    if preset in ATTRIBUTE_PRESETS:
        try:
            from redafit.fit.attribute_stages import configure
        except ImportError:
            configure = None
        if configure is not None:
            config = configure(config, attributes=attrs, raster=raster, raster_backend=raster_backend,
                               pyramid_levels=pyramid_levels, slices=slices,
                               freeform=False if no_freeform else None, fit_size=fit_size)
    if landmark_drop is not None and preset in ATTRIBUTE_PRESETS:
        config = replace(config, stages=config.stages[:-1] + (replace(config.stages[-1],
                                                                      landmark_drop_px=landmark_drop),))
    if landmark_sigma is not None:
        config = replace(config, landmark_sigma=landmark_sigma / 100.0)
    switches = {"occlusion": occlusion, "specular": specular, "landmark_guard": landmark_guard}
    config = replace(config, **{k: bool(v) for k, v in switches.items() if v is not None})
    if parsing_net is not None:
        from redafit.parsing.network import cached_parsing_network

        cached_parsing_network(parsing_net)
        if not config.attributes:
            log.warning("--parsing-net is used by the attribute stages of --preset full; ignored here")
        config = replace(config, parsing_net=str(parsing_net))
    if iters_scale != 1.0:
        config = replace(config, stages=tuple(replace(s, iters=max(1, round(s.iters * iters_scale)))
                                              for s in config.stages))
    if weights:
        from redafit.fit.config import parse_loss_weights

        config = config.with_loss_weights(parse_loss_weights(weights))
    return config


class _Progress:
    """Rich progress on stderr (stage and current loss as task fields), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.task = None
        self.label = ""

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.fields[label]}"), TextColumn("[cyan]{task.fields[stage]}"),
                                BarColumn(), TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, label: str):
        self.label = label
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task("", total=1, label=label, stage="", loss="")

    def __call__(self, stage: str, it: int, total: int, loss: float):
        if self.bar is not None:
            self.bar.update(self.task, completed=it, total=total, stage=stage, loss=f"{loss:.4g}")

    def log(self, msg: str):
        if self.bar is not None:
            self.bar.console.print(msg)
        else:
            click.echo(msg, err=True)


def resolved(path) -> Path:
    """``path`` made absolute with its symbolic links followed; where they loop, only made absolute (the file is
    then reported unreadable when it is read: ``Path.resolve`` raises RuntimeError on a loop)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


class NamedFiles:
    """Files a command reads or writes, each with how its messages name it, found by path (symbolic links followed,
    :func:`resolved`) and, for an existing regular file, by identity (device, inode): a hard link to it, or the file
    piped in on standard input (:func:`stdin_file`)."""

    def __init__(self, named=()):
        self._by_path: dict = {}
        self._by_file: dict = {}
        for f, what in named:
            self.add(f, what)

    def add(self, path, what: str) -> None:
        """Name ``path`` ``what``, unless it is named already."""
        self._by_path.setdefault(resolved(path), what)
        self.add_identity(file_id(path), what)

    def add_identity(self, ident, what: str) -> None:
        if ident is not None:
            self._by_file.setdefault(ident, what)

    def get(self, path) -> str | None:
        """How the file at ``path`` is named, None when it is none of these."""
        return self._by_path.get(resolved(path)) or self._by_file.get(file_id(path))


def refuse_overwriting_inputs(command: str, outputs, inputs, stdin_photo: bool = False,
                              choose: str = "output folder") -> None:
    """Before any work, a usage error when a file the command would write is one of the files it reads (``redafit
    rig shoot/neutral.png shoot/side.jpg -o shoot/``: the rig's texture is ``neutral.png``), as ``fit`` refuses
    one. ``outputs`` and ``inputs`` are (path, what) pairs; paths are compared with symbolic links resolved, and
    existing files by identity (a hard link; with ``stdin_photo``, the file piped in on standard input)."""
    from redafit.io.images import STDIN

    taken = NamedFiles((f, what) for f, what in inputs if f is not None and str(f) != STDIN)
    if stdin_photo:
        taken.add_identity(stdin_file(), "the photo piped in on standard input")
    for f, what in outputs:
        other = taken.get(f)
        if other is not None:
            raise UsageError(f"{command}: {what} {f} is also {other} (it would be overwritten); choose another "
                             f"{choose}")


def file_id(path):
    """(device, inode) of the regular file at ``path`` (links followed), None when there is none."""
    try:
        return _regular_file_id(os.stat(path))
    except (OSError, ValueError):
        return None


def _regular_file_id(st: os.stat_result):
    import stat

    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _named_inputs(jobs, inputs=()) -> NamedFiles:
    """The photos of ``jobs`` and ``inputs`` ((path, option) pairs for the landmark, depth and parsing files; a
    folder of them is not a file to overwrite), named for the messages; a photo piped in on standard input by its
    file's identity."""
    from redafit.io.images import STDIN

    given = [(img, f"the input photo {img}") for img, *_ in jobs if str(img) != STDIN]
    given += [(Path(f), f"the input {opt} {f}") for f, opt in inputs if f is not None and not Path(f).is_dir()]
    named = NamedFiles(given)
    if any(str(img) == STDIN for img, *_ in jobs):
        named.add_identity(stdin_file(), "the photo piped in on standard input")
    return named


def _named_outputs(mesh, par, ov) -> list:
    """(path, how a message names it) of one photo's outputs: the mesh's files, ``--params`` and ``--overlay``."""
    from redafit.io.meshes import mesh_files

    named = [(f, f"-o {mesh}" if what == "mesh" else f"the {what} of -o {mesh}")
             for f, what in mesh_files(mesh).items()]
    return named + [(f, f"{flag} {f}") for f, flag in ((par, "--params"), (ov, "--overlay")) if f is not None]


def _check_distinct(jobs, inputs=()) -> None:
    """A usage error when two outputs of the command are one file: ``-o face.obj --overlay face.png`` (the OBJ's
    texture is ``face.png``, so one would overwrite the other), ``--params`` and ``--overlay`` the same path, or,
    in a folder, one photo's overlay the texture of another's mesh; or when an output would overwrite an input
    (``redafit fit face.png``: the texture of ``face.obj`` is ``face.png``): the photos and ``inputs``, (path,
    option) pairs for the landmark, depth and parsing files."""
    seen = _named_inputs(jobs, inputs)
    for _, mesh, par, ov in jobs:
        for f, what in _named_outputs(mesh, par, ov):
            other = seen.get(f)
            if other is not None:
                hint = " (it would be overwritten)" if other.startswith("the ") and " of -o " not in other else ""
                raise UsageError(f"{what}: that is also {other}{hint}; choose another name")
            seen.add(f, what)


def _check_stage_images(folder, jobs, config, inputs=()) -> None:
    """A usage error, before any fit, when ``--save-stages`` names one of the command's other outputs (``-o x.obj
    --save-stages x.obj``: the stage images went into a folder ``x.obj/`` and the mesh could not be written) or
    when a stage image it will write (``<stage>_render.png``, ``_mask``, ``_error``; in a subfolder per photo for
    several) is an input or another output."""
    names = [f"{stage.name}_{kind}.png" for stage in config.stages for kind in ("render", "mask", "error")] \
        if config.attributes else []  # the landmark stages write no images
    _check_folder_files(folder, "--save-stages", names, jobs, inputs)


def _check_folder_files(folder, option: str, names, jobs, inputs=()) -> None:
    """A usage error, before any fit, when an option's output folder (``--save-stages``, ``--maps``) is one of the
    command's other outputs or inputs, or when a file ``names`` it will write there (in a subfolder per photo for
    several, named as the photo's mesh) is."""
    folder = Path(folder)
    taken = _named_inputs(jobs, inputs)
    for _, mesh, par, ov in jobs:
        for f, what in _named_outputs(mesh, par, ov):
            taken.add(f, what)
    other = taken.get(folder)
    if other is not None:
        raise UsageError(f"{option} {folder}: that is also {other}; choose another folder")
    for sub in _photo_folders(folder, jobs):
        for name in names:
            other = taken.get(sub / name)
            if other is not None:
                raise UsageError(f"{option} {folder}: its file {sub / name} would be {other}; choose another folder")


def _refuse_read_only_maps(folder, jobs, skip=()) -> None:
    """An :class:`~redafit.errors.OutputError` before any fit when a map ``--maps`` would write or remove
    (:data:`redafit.render.maps.MAP_FILES`, in a subfolder per photo for several) is a read-only file; the jobs
    numbered in ``skip`` (left out by --skip-existing) write nothing."""
    from redafit.io.atomic import check_replaceable
    from redafit.render.maps import MAP_FILES

    for i, sub in enumerate(_photo_folders(folder, jobs)):
        for name in MAP_FILES if i not in skip else ():
            check_replaceable(sub / name)


def _photo_folders(folder, jobs) -> list:
    """Where an output-folder option (``--save-stages``, ``--maps``) puts each photo's files: the folder itself for
    one photo, a subfolder named as its mesh for several."""
    folder = Path(folder)
    return [folder / Path(mesh).stem for _, mesh, *_ in jobs] if len(jobs) > 1 else [folder]


def stdin_file():
    """(device, inode) of the file standard input reads (``redafit fit - < me.png``), None for a pipe or a
    terminal."""
    try:
        return _regular_file_id(os.fstat(sys.stdin.fileno()))
    except (AttributeError, ValueError, OSError):  # no stdin, or a stream without a descriptor (an embedding)
        return None


def input_files(images, landmarks, depth, parsing) -> list:
    """(path, option) of every file the fit will read beside the photos: the landmark, depth and parsing files, and
    for a --landmarks or --parsing folder each photo's own file in it (``--parsing maps/ -o maps/`` would write a
    texture ``<stem>.png`` over a map ``<stem>.png``)."""
    from redafit.fit.pipeline import find_landmark_file
    from redafit.parsing.maps import find_parsing_map

    files = [(depth, "--depth")]
    for where, opt, find in ((landmarks, "--landmarks", find_landmark_file),
                             (parsing, "--parsing", lambda img, d: find_parsing_map(img, d, required=False))):
        if where is None:
            continue
        where = Path(where)
        if where.is_dir():
            files += [(find(Path(img), where), opt) for img in images]
        else:
            files.append((where, opt))
    return [(f, opt) for f, opt in files if f is not None]


# redafit.fit.outputs.MESH_FRAMES and TEXTURE_KINDS, spelled out so that the CLI does not import torch to start (a
# test compares them)
MESH_FRAME_CHOICES = ("camera", "head")
TEXTURE_CHOICES = ("photo", "albedo")


def check_texture_kind(kind: str, config) -> None:
    """``--texture albedo`` evens out the fitted lighting: a :class:`UsageError` before any fitting when
    ``config`` fits none (the landmarks preset, attributes without colour)."""
    if kind == "albedo" and "color" not in (config.attributes or ()):
        raise UsageError("--texture albedo evens out the lighting fitted to the photo's colours: it needs the "
                         "colour attribute (--preset full or fast, with color in --attributes)")
    if kind == "albedo" and not config.fits_lighting():
        raise UsageError("--texture albedo evens out the lighting fitted to the photo's colours: the colour "
                         "attribute's weight is 0 in every stage that fits the lighting (--weight color=...)")


def check_landmark_count(landmarks, config) -> None:
    """A :class:`UsageError` before any fitting when ``--landmarks`` names one file of 5 points and ``config`` fits
    the attributes, whose parsing mask and colour region need the 68 (a file that does not read is left to the
    fit's own error; a folder's files are read per photo)."""
    if landmarks is None or not config.attributes or Path(landmarks).is_dir():
        return
    from redafit.errors import RedafitError
    from redafit.landmarks import read_landmarks

    try:
        n = len(read_landmarks(landmarks))
    except (RedafitError, OSError, ValueError):
        return
    if n != 68:
        raise UsageError(f"--landmarks {landmarks}: {n} points; the attribute stages of --preset full and fast need "
                         "68: use --preset landmarks")


def files_from_option(f=None, *, noun: str = "photos"):
    """``--files-from FILE`` (:func:`gather_photos` reads it); ``noun``: what the list names in the help."""
    if f is None:
        return lambda g: files_from_option(g, noun=noun)
    return click.option("--files-from", multiple=True, metavar="FILE", type=click.Path(path_type=str),
                        help=f"Also take the {noun} listed in FILE (- for stdin; may be repeated): one path per line "
                             "or NUL-separated (find -print0), relative to the current folder; taken as written "
                             "(no comments), but a line's surrounding spaces are dropped unless the name with them "
                             "exists.")(f)


def _stdin_is_terminal() -> bool:
    return sys.stdin is None or sys.stdin.isatty()


_BINARY = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control bytes no list of paths holds


def parse_photo_list(data: bytes, source: str) -> tuple:
    """The photos a ``--files-from`` list names (see :func:`files_from_option`): NUL-separated when it holds a NUL
    byte, else one per line (LF or CRLF); UTF-8 or the file system's encoding, a UTF-8 BOM dropped, UTF-16 with a
    BOM (what Windows tools write) decoded; blank entries skipped. A usage error when it is not a list of paths
    (a photo, UTF-16 without a BOM, other binary data)."""
    import os

    what = f"--files-from {source}"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            data = os.fsencode(data.decode("utf-16"))
        except (UnicodeError, ValueError):
            raise UsageError(f"{what}: not a list of paths (undecodable UTF-16)") from None
    elif data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = b"\0" in data
    items = [x for x in (data.split(b"\0") if nul else data.splitlines()) if x.strip()]
    if _BINARY.search(data) or (nul and len(items) > 2 and sum(len(x) <= 1 for x in items) > len(items) // 2):
        raise UsageError(f"{what}: not a list of paths (it holds binary data: a photo, or UTF-16 text without a "
                         "BOM?); give one path per line, or NUL-separated")
    listed = []
    for x in items:
        name = os.fsdecode(x)
        if not nul and name != name.strip() and not Path(name).exists():
            name = name.strip()
        listed.append(Path(name))
    return tuple(listed)


def _photo_path(arg) -> Path:
    """A photo argument as a path: ``-`` is standard input (:data:`~redafit.io.images.STDIN`); a file named ``-``
    is reached as ``./-`` (which a path would shorten to ``-``)."""
    from redafit.io.images import STDIN

    arg = str(arg)
    if arg != STDIN and Path(arg) == Path(STDIN):
        return Path.cwd() / STDIN
    return Path(arg)


def gather_photos(images, files_from, command: str, noun: str = "photos", folders: bool = False) -> tuple:
    """The photos of the command line followed by those listed in each of ``files_from`` (files, or ``-``:
    standard input; :func:`parse_photo_list`). A usage error when no photo is given at all, when standard input
    would be read twice (``-`` as the photo and as a list, or as two lists) or is a terminal where it is read.
    ``noun``: what the lists name, in the messages (``track``'s are frames). ``folders``: a folder among them
    stands for the images in it (:func:`_folder_photos`: natural name order, no subfolders)."""
    from redafit.io.images import STDIN

    if isinstance(files_from, (str, Path)):
        files_from = (files_from,)
    files_from = tuple(str(f) for f in files_from or ())
    images = tuple(_photo_path(p) for p in images)
    stdin_photo = any(str(p) == STDIN for p in images)
    if files_from.count(STDIN) > 1:
        raise UsageError("--files-from - is given twice: standard input can be read once")
    if stdin_photo and STDIN in files_from:
        raise UsageError("--files-from - and the photo - would both read standard input; save the photo to a file")
    if stdin_photo and _stdin_is_terminal():
        raise UsageError(f"the photo is - (standard input), but nothing is piped in: use `redafit {command} - < "
                         f"photo.jpg` or `cat photo.jpg | redafit {command} -`")
    listed: tuple = ()
    for source in files_from:
        if source == STDIN:
            if _stdin_is_terminal():
                raise UsageError("--files-from -: nothing is piped in (e.g. `find imgs -name '*.jpg' | redafit "
                                 f"{command} --files-from - ...`)")
            data = sys.stdin.buffer.read()
        else:
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise InputError(f"--files-from {source}: cannot read it: {exc.strerror or exc}") from exc
        these = parse_photo_list(data, source)
        if not these:
            raise UsageError(f"--files-from {source}: it lists no {noun}")
        if any(str(p) == STDIN for p in these):
            if source == STDIN or stdin_photo or STDIN in files_from:
                raise UsageError(f"--files-from {source} lists the photo -, which would read standard input again")
            if _stdin_is_terminal():
                raise UsageError(f"--files-from {source} lists the photo - (standard input), but nothing is piped in")
            stdin_photo = True
        listed += these
    if not images and not listed:
        raise UsageError(f"{command}: give the photos (or --files-from FILE)")
    return tuple(q for p in images + listed for q in (_folder_photos(p) if folders and p.is_dir() else [p]))


def _folder_photos(folder: Path) -> list:
    """The images in ``folder`` (:func:`redafit.io.images.folder_images`), or the folder itself when it holds
    none (a glob's catch, ``shots/*.jpg`` matching a folder ``x.jpg``): then it fails as one bad input, and the rest
    of a batch goes on."""
    from redafit.io.images import folder_images

    try:
        return folder_images(folder)
    except InputError as e:
        log.warning("%s", e)
        return [folder]


def distinct_photos(images, command: str) -> tuple:
    """The photos with each file once (first mention kept, however it was spelled), and a warning when one was
    given more than once: fitted twice it would write the same outputs (``fit``) or weigh twice in a shared
    identity (``rig``)."""
    seen: set = set()
    unique = tuple(p for p in images if not (resolved(p) in seen or seen.add(resolved(p))))
    if len(unique) < len(images):
        log.warning("%s: %d photo(s) given more than once; each is used once", command, len(images) - len(unique))
    return unique


def refuse_stdout(value, opt: str = "-o") -> None:
    """A usage error for ``-`` as an output (it would become a file or folder named ``-``); ``--json`` prints results
    on stdout instead."""
    if value is not None and str(value) == "-":
        raise UsageError(f"{opt} -: writing to stdout is not supported; give a file or folder name (--json prints "
                         "results on stdout)")


def check_output_folder(output, opt: str = "-o") -> None:
    """Before any work: the output folder (option ``opt``) is not ``-``, and exists writable or could be made (a
    file in the way or a read-only place fails now, exit 10, not after the fits); nothing is created."""
    from redafit.io.atomic import check_can_create

    refuse_stdout(output, opt)
    check_can_create(output)


def output_names(images) -> list[str]:
    """One distinct output name per photo: its stem; where stems repeat, the folder's name before it
    (``a/img.jpg`` -> ``a_img``); where that repeats too (``b.jpg`` and ``b.png`` in one folder), the extension
    after it (``x_b_png``); then more of the folders above it (``2023/day1/img.jpg`` and ``2024/day1/img.jpg`` ->
    ``2023_day1_img_jpg``), and a number as the last resort, which also parts names that differ only in case or
    in spaces against underscores (``A.jpg``, ``a.jpg`` -> ``A``, ``a_2``: one file on a case-insensitive disk;
    ``my face``, ``my_face``: one OBJ texture name, see :func:`redafit.io.meshes.mesh_files`)."""
    from collections import Counter

    from redafit.io.images import STDIN, photo_stem
    from redafit.io.meshes import spaceless

    def same(n):
        return spaceless(n).casefold()

    def repeated(names, key=lambda n: n):
        counts = Counter(key(n) for n in names)
        return {n for n in names if counts[key(n)] > 1}

    paths = [Path(p) for p in images]
    names = [photo_stem(p) for p in paths]
    piped = [str(p) == STDIN for p in paths]  # stays "stdin": the other photo of that name is widened
    widen = [lambda p, n: f"{p.absolute().parent.name}_{n}", lambda p, n: f"{n}_{p.suffix.lstrip('.')}"]
    for step in widen:
        dup = repeated(names)
        names = [step(p, n) if n in dup and not pipe else n for p, n, pipe in zip(paths, names, piped)]
    folders = [() if pipe else p.absolute().parent.parts[1:] for p, pipe in zip(paths, piped)]
    for depth in range(2, max((len(f) for f in folders), default=0) + 1):
        dup = repeated(names)
        if not dup:
            break
        names = ["_".join([*f[-depth:], photo_stem(p), p.suffix.lstrip(".")]) if n in dup and f else n
                 for p, f, n in zip(paths, folders, names)]
    dup = repeated(names, same)  # the last resort also parts names that differ only in case or spaces
    if dup:
        taken, count, unique = {same(n) for n in names}, Counter(), []
        for n in names:
            if n in dup:
                count[same(n)] += 1
                if count[same(n)] > 1:
                    k = count[same(n)]
                    while same(f"{n}_{k}") in taken:
                        k += 1
                    count[same(n)] = k
                    n = f"{n}_{k}"
                    taken.add(same(n))
            unique.append(n)
        names = unique
    return names


def _every_face(images, detector: str, max_side: int) -> tuple[list, list, list]:
    """``fit --all-faces``: (image, output name, (face index, its box)) for every face the detector finds in each
    photo, left to right (the box is handed to the fit, which then does not detect again), named
    ``<stem>_face<N>`` (N: the face's ``--face-index``). dlib's HOG detector's faces are confirmed by its CNN
    detector (:func:`redafit.landmarks.detect.confirm_faces`: HOG finds faces in textures too, and with every face
    fitted a false one would become a mesh); a face it does not confirm is left out, said on stderr. A photo that
    cannot be read or shows no face keeps one job, which then fails with the reason, as a photo does in a
    batch."""
    from redafit.errors import RedafitError
    from redafit.io.images import load_image
    from redafit.landmarks import detect_faces
    from redafit.landmarks.detect import confirm_faces

    out_images, names, faces = [], [], []
    for p, stem in zip(images, output_names(images)):
        keep, found = [], []
        try:
            image = load_image(p, max_side=max_side)[0]
            found = detect_faces(image, detector)
            confirmed = confirm_faces(image, found) if detector == "dlib" else found  # the CNN once a face
            keep = [k for k, b in enumerate(found) if b in confirmed]
            if len(keep) < len(found):
                log.warning("%s: %d of the %d faces dlib's HOG detector found are not confirmed by its CNN "
                            "detector; left out", Path(p).name, len(found) - len(keep), len(found))
        except RedafitError:
            pass
        for k in keep or list(range(len(found))) or [0]:  # none confirmed: the detector's own, as fit takes them
            out_images.append(p)
            names.append(f"{stem}_face{k}")
            faces.append((k, found[k] if k < len(found) else None))
    return out_images, names, faces


def _resolve_outputs(images, output, fmt, params, overlay, inputs=(), names=None, noun: str = "photos",
                     check_files: bool = True):
    """Map every image to (mesh, params, overlay) paths; a folder output for several images. The output folders
    are created and checked to be writable before any fit (a read-only place fails now, not after minutes of
    fitting); ``inputs`` (see :func:`_check_distinct`) are never overwritten. ``names``: the outputs' names
    (default: :func:`output_names` of the images); ``noun``: what the jobs are, in messages. ``check_files``:
    refuse a read-only file in the way now (else the caller does, :func:`_refuse_read_only_outputs`, for the
    jobs it will run)."""
    for value, opt in ((output, "-o"), (params, "--params"), (overlay, "--overlay")):
        refuse_stdout(value, opt)
    many = len(images) > 1
    out = Path(output) if output else None

    def folder(value) -> bool:  # an output option names a folder: several photos, a trailing /, a folder
        return many or str(value).endswith(("/", "\\")) or Path(value).is_dir()

    as_dir = out is not None and (folder(output) or out.suffix == "")  # -o meshes: a folder
    # with -o a folder, --params and --overlay are folders too unless they name a file (p.json, check.png)
    par_dir = params is not None and (folder(params) or (as_dir and Path(params).suffix == ""))
    ov_dir = overlay is not None and (folder(overlay) or (as_dir and Path(overlay).suffix == ""))
    if out is not None and not as_dir and out.suffix.lower().lstrip(".") not in MESH_FORMATS:
        raise UsageError(f"-o {output}: unsupported mesh extension (use .obj, .ply, .npz or .glb, or a folder)")
    from redafit.io.images import SAVE_EXTENSIONS

    if many:  # a name for one file would become a folder of that name (face.obj/)
        for value, opt, exts, eg in ((output, "-o", {f".{f}" for f in MESH_FORMATS}, "meshes/"),
                                     (params, "--params", {".json"}, "params/"),
                                     (overlay, "--overlay", SAVE_EXTENSIONS, "overlays/")):
            v = Path(value) if value is not None else None
            if v is not None and v.suffix.lower() in exts and not v.is_dir() and not str(value).endswith(("/", "\\")):
                raise UsageError(f"{opt} {value} names one file, but {len(images)} {noun} are given: give a folder "
                                 f"(e.g. {opt} {eg})")
    if overlay and not ov_dir:
        if Path(overlay).suffix.lower() not in SAVE_EXTENSIONS:
            raise UsageError(f"--overlay {overlay}: unsupported image extension (use one of "
                             f"{', '.join(sorted(SAVE_EXTENSIONS))}, or a folder for several images)")
    jobs = []
    for p, name in zip(images, names or output_names(images)):
        mesh = out / f"{name}.{fmt}" if as_dir else out if out is not None else Path(f"{name}.{fmt}")
        par = Path(params) / f"{name}.json" if par_dir else Path(params) if params else None
        ov = Path(overlay) / f"{name}_overlay.png" if ov_dir else Path(overlay) if overlay else None
        jobs.append((Path(p), mesh, par, ov))
    _check_distinct(jobs, inputs)
    from redafit.io.atomic import check_can_create

    folders = sorted({f.parent for _, *outs in jobs for f in outs if f is not None}, key=str)
    for d in folders:  # checked now, made when a fit has something to write (a failed one leaves no empty folder)
        check_can_create(d)
    if check_files:
        _refuse_read_only_outputs(jobs)
    return jobs


def _refuse_read_only_outputs(jobs) -> None:
    """An :class:`~redafit.errors.OutputError` now when a file the jobs would write is read-only: the mesh's, its
    texture, ``--params``, ``--overlay``."""
    from redafit.io.atomic import check_replaceable

    for _, mesh, par, ov in jobs:
        for f, _ in _named_outputs(mesh, par, ov):
            check_replaceable(f)


@click.command("fit")
@click.argument("images", nargs=-1, required=False, type=click.Path(path_type=str))
@click.option("-o", "--output", default=None,
              help="Mesh file (.obj/.ply/.npz/.glb) for one image, or a folder for several.  [default: <stem>.obj; "
                   "stdin.obj for the photo -]")
@click.option("--format", "fmt", type=click.Choice(MESH_FORMATS), default="obj", show_default=True,
              help="Mesh format when -o is a folder.")
@click.option("--landmarks", "landmarks", default=None, type=click.Path(exists=False, path_type=Path),
              help="Landmark file (.pts, .txt, .npy, .json; 68 or 5 points) instead of detecting; "
                   "for several images, a folder of <stem>.<ext> files.")
@click.option("--params", default=None, type=click.Path(path_type=Path),
              help="Write all coefficients, camera, pose and errors as JSON (a folder for several images).")
@click.option("--overlay", default=None, type=click.Path(path_type=Path),
              help="Write the photo with the fitted mesh drawn over it (PNG; a folder for several images).")
@click.option("--save-stages", default=None, type=click.Path(path_type=Path),
              help="Write each stage's render, mask and error image into this folder (for several images, a "
                   "subfolder per photo, named as its outputs).")
@click.option("--maps", default=None, type=click.Path(path_type=Path),
              help="Also write maps of the fitted face on the photo's pixel grid into this folder: depth.png "
                   "(16-bit mm, the layout --depth reads), depth.npy (float metres), normals.png (camera frame, "
                   "OpenGL axes), parsing.png (CelebAMask-HQ class ids, the layout --parsing reads), mask.png and "
                   "uv.png (each pixel's texture coordinates, 16-bit); with a fitted lighting (--preset full or "
                   "fast) also the photo split as albedo.png x shading.png (16-bit, 16384 = the face's median "
                   "light) + specular.png; for several images, a subfolder per photo, named as its outputs.")
@click.option("--depth", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Depth map for RGB-D input, registered to the photo (16-bit PNG in mm, or float .npy/.exr in "
                   "metres; 0 = unknown); adds the depth attribute (weight 64; --weight depth=16 for a noisy "
                   "sensor).")
@click.option("--parsing", default=None, type=click.Path(path_type=Path),
              help="Parsing map computed elsewhere (grey PNG or .npy of CelebAMask-HQ class ids, registered to the "
                   "photo) instead of parsing the photo; for several images, a folder of <stem>.png|.npy files.")
@click.option("--texture-size", type=click.IntRange(64, 4096), default=1024, show_default=True,
              help="Side of the model's texture tile (with caps the PNG is a quarter taller: the caps' strip); "
                   "1024 takes ~1.5 s and 0.7 GB to write, 4096 ~25 s and 3 GB.")
@click.option("--texture", "texture_kind", type=click.Choice(TEXTURE_CHOICES), default="photo", show_default=True,
              help="What the texture (a .ply's colours) holds: photo - the photo's colours, lit as in the photo; "
                   "albedo - the fitted lighting evened out (its shading, the shadows it draws and its highlight; "
                   "the photo's exposure and white balance kept): the skin's own colour, for a renderer with its "
                   "own lights (needs --preset full or fast).")
@click.option("--caps/--no-caps", default=True, show_default=True,
              help="Close the model's eye and mouth holes with textured caps (new vertices after the model's; "
                   ".npz never).")
@click.option("--frame", type=click.Choice(MESH_FRAME_CHOICES), default="camera", show_default=True,
              help="The mesh's frame: camera - OpenCV camera axes (y down, z forward; a .glb y-up), the mesh "
                   "lying over the photo; head - the head's own frame without its pose (y up, z out of the face): "
                   "upright and frontal in any viewer, several photos' meshes lined up.")
@click.option("--neutral", is_flag=True,
              help="Write the head without its fitted expression (the identity and its detail, the mouth closed, "
                   "the eyes open; the texture still unwrapped from the photo). A .glb then carries the model's "
                   "expressions as "
                   "morph targets: an animatable head from one photo.")
@click.option("--all-faces", is_flag=True,
              help="Fit every face the detector finds in each photo, named <stem>_face<N> (N: its --face-index, "
                   "left to right from 0; dlib's faces confirmed by its CNN detector first); -o, --params and "
                   "--overlay are then folders when there are several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result line per image on stdout.")
@click.option("--skip-existing", is_flag=True,
              help="Leave out the photos whose outputs (the mesh, and --params, --overlay and --maps when given) all "
                   "exist: a batch run again after an interruption fits only what is left.")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Photos fitted at once, each in a worker process, the CPU threads shared out among them "
                   "(results still in the photos' order); pays where one fit cannot keep every core busy.")
@files_from_option
@model_option
@input_options
@fit_options
@device_option
@click.pass_context
def fit_cmd(ctx, images, output, fmt, landmarks, params, overlay, save_stages, maps, depth, parsing, texture_size,
            texture_kind, caps, frame, neutral, all_faces, as_json, skip_existing, n_jobs, files_from, model_name,
            detector, face_index, max_side, focal, device, **fit_kw):
    """Fit the face model to photos and write textured meshes.

    The photo - is read from standard input (its outputs are named stdin.* unless -o names them). A folder stands
    for the images in it (not its subfolders), in natural name order. With several photos -o, --params and
    --overlay are folders; a failed photo is reported and the rest go on (exit 1).

    \b
    Examples:
      redafit fit photo.jpg -o face.obj
      redafit fit photo.jpg --landmarks photo.pts -o face.obj --params face.json --overlay check.png
      redafit fit imgs/*.jpg -o meshes/ --json > results.jsonl
      redafit fit imgs/ -o meshes/ --overlay overlays/
      redafit fit photo.jpg --preset landmarks -o quick.ply
      redafit fit photo.jpg --frame head -o upright.obj
      redafit fit photo.jpg --neutral --frame head -o avatar.glb
      redafit fit photo.jpg --neutral --texture albedo -o relightable.glb
      redafit fit photo.jpg --parsing photo_parsing.png -o face.obj
      redafit fit photo.jpg -o face.obj --maps face_maps/
      redafit fit group.jpg --all-faces -o faces/
      redafit fit cropped_selfie.jpg --focal 26mm -o face.obj
      curl -fsS https://example.org/me.jpg | redafit fit - -o face.obj
      find shoot/ -name '*.jpg' -print0 | redafit fit --files-from - -o meshes/ --json
      redafit fit shoot/*.jpg -o meshes/ --jobs 4
      redafit fit shoot/ -o meshes/ --params params/ --skip-existing
    """
    import torch

    from redafit.fit.pipeline import InputOptions
    from redafit.model.store import load_model

    images = distinct_photos(gather_photos(images, files_from, "fit", folders=True), "fit")
    if len(images) > 1 and landmarks is not None and not landmarks.is_dir():
        raise UsageError("--landmarks: with several images, give a folder of <stem>.<ext> landmark files")
    if len(images) > 1 and depth is not None:
        raise UsageError("--depth goes with a single image")
    if len(images) > 1 and parsing is not None and not parsing.is_dir():
        raise UsageError("--parsing: with several images, give a folder of <stem>.png|.npy parsing maps")
    inputs = input_files(images, landmarks, depth, parsing)
    faces = None
    if all_faces:
        if landmarks is not None or face_index is not None:
            raise UsageError("--all-faces fits every detected face: not with --landmarks or --face-index")
        images, names, faces = _every_face(images, detector, max_side)
        jobs = _resolve_outputs(images, output, fmt, params, overlay, inputs=inputs, names=names, noun="faces",
                                check_files=not skip_existing)
        faces = {str(mesh): k for (_, mesh, _, _), k in zip(jobs, faces)}
    else:
        jobs = _resolve_outputs(images, output, fmt, params, overlay, inputs=inputs, check_files=not skip_existing)
    # --skip-existing: the photos whose outputs are all there are left out, and their files are not checked
    done = {i for i, (_, mesh, par, ov) in enumerate(jobs)
            if skip_existing and _outputs_exist(mesh, par, ov, _maps_folder(maps, mesh, len(jobs) > 1))}
    if skip_existing:
        _refuse_read_only_outputs([job for i, job in enumerate(jobs) if i not in done])
    dev = resolve_device(device)
    torch.set_grad_enabled(True)
    config = build_config(has_depth=depth is not None, **fit_kw)
    if texture_kind != "photo" and all(Path(mesh).suffix.lower() == ".npz" for _, mesh, _, _ in jobs):
        log.warning("--texture %s sets the texture's colours; a .npz holds none: ignored", texture_kind)
        texture_kind = "photo"
    check_texture_kind(texture_kind, config)
    check_landmark_count(landmarks, config)
    if parsing is not None and not config.attributes:
        log.warning("--parsing is used by the attribute stages of --preset full or fast; ignored here")
    if depth is not None and not config.attributes:
        log.warning("--depth is used by the attribute stages of --preset full or fast; ignored here")
    if save_stages is not None:
        from dataclasses import replace

        if not config.attributes:
            log.warning("--save-stages writes each stage's images when --preset full or fast fits the attributes; "
                        "nothing to write here")

        _check_stage_images(save_stages, jobs, config, inputs)
        check_output_folder(save_stages, "--save-stages")  # a file in the way, a read-only place: exit 10 now
        config = replace(config, save_stages=str(save_stages)) if hasattr(config, "save_stages") else config
    if maps is not None:
        from redafit.render.maps import GEOMETRY_FILES, MAP_FILES

        check_output_folder(maps, "--maps")
        # the intrinsic maps are written only by a fit with a lighting (and removed otherwise: read-only, refused)
        _check_folder_files(maps, "--maps", MAP_FILES if config.fits_lighting() else GEOMETRY_FILES, jobs, inputs)
        _refuse_read_only_maps(maps, jobs, skip=done)
    settings = _PhotoSettings(landmarks, depth, parsing, InputOptions(detector=detector, face_index=face_index,
                                                                       max_side=max_side, focal=focal),
                              config, texture_size, caps, frame, neutral, stages_per_photo=len(jobs) > 1,
                              faces=faces, maps=maps, texture=texture_kind)
    todo = [job for i, job in enumerate(jobs) if i not in done]
    model = load_model(model_name, device=dev) if todo else None
    verbose = (ctx.obj or {}).get("verbosity", 0) >= 0
    failures = []
    # closing: the worker pool ends with the loop, on an error too, not whenever the garbage collector finds it
    with _Progress(show_progress(ctx)) as prog, \
            contextlib.closing(_fitted(model, settings, todo, n_jobs, prog)) as fitted:
        for i, (img, mesh, *_) in enumerate(jobs):
            if i in done:  # in the photos' order, as the fitted ones
                if as_json:
                    face = {"face": faces[str(mesh)][0]} if faces is not None else {}
                    click.echo(jsonsafe.dumps({"image": str(img), "ok": True, "skipped": True, "mesh": str(mesh),
                                               **face}))
                elif verbose:
                    prog.log(f"{img.name}: skipped, its outputs exist (--skip-existing)")
                continue
            img, record = next(fitted)
            if "error" in record:
                if as_json:  # one line per image on stdout, a single image's failure too
                    click.echo(jsonsafe.dumps({"image": str(img), "ok": False, "error": record["error"],
                                               "exit_code": record["exit_code"]}))
                if len(jobs) == 1:
                    raise record["exception"]
                failures.append((img, record["exit_code"]))
                prog.log(f"redafit: error: {img}: {record['error']}")
                continue
            if record["failure"]:  # written (the user may still want it), but said on stderr, not only in --json
                log.warning("%s: the fit looks implausible: %s", img.name, record["failure"])
            if as_json:
                click.echo(jsonsafe.dumps({"image": str(img), "ok": True, **record}))
            elif verbose:
                prog.log(f"{img.name}: wrote {', '.join(record['outputs'])} "
                         f"(landmark error {record['landmark_error_px']:.2f} px, {record['seconds']:.1f} s)")
    if done and len(jobs) > 1 and verbose:  # a resumed batch's count (its lines went to stdout with --json)
        click.echo(f"redafit: {len(done)} of {len(jobs)} images skipped: their outputs exist (--skip-existing)",
                   err=True)
    if failures:
        codes = {code for _, code in failures}
        click.echo(f"redafit: {len(failures)} of {len(jobs)} images failed", err=True)
        sys.exit(codes.pop() if len(failures) == len(jobs) and len(codes) == 1 else 1)


@dataclass
class _PhotoSettings:
    """What fitting one photo of a ``fit`` command takes besides the model and the photo's own outputs."""

    landmarks: Path | None
    depth: Path | None
    parsing: Path | None
    opts: object  # redafit.fit.pipeline.InputOptions
    config: object  # redafit.fit.FitConfig
    texture_size: int
    caps: bool
    frame: str = "camera"  # the mesh's (redafit.fit.outputs.MESH_FRAMES)
    neutral: bool = False  # the mesh without its fitted expression (redafit.fit.outputs.save_mesh)
    stages_per_photo: bool = False  # --save-stages DIR/<the photo's output name>/ (a batch)
    faces: dict | None = None  # --all-faces: str(mesh path) -> (the face (left to right) its job fits, its box)
    maps: Path | None = None  # --maps DIR (DIR/<the photo's output name>/ in a batch)
    texture: str = "photo"  # --texture: what the texture holds (redafit.fit.outputs.TEXTURE_KINDS)


def _maps_folder(maps, mesh, many: bool) -> Path | None:
    """The --maps folder ``maps`` of the photo whose mesh is ``mesh`` (a subfolder named as its outputs when
    ``many`` photos are fitted)."""
    if maps is None:
        return None
    return Path(maps) / Path(mesh).stem if many else Path(maps)


def _outputs_exist(mesh, par, ov, maps) -> bool:
    """Whether every output a photo's fit writes is there (--skip-existing): the mesh's files (its material and
    texture), --params, --overlay and the --maps folder's depth map. They are written together, all or none
    (:func:`redafit.fit.pipeline.write_outputs`), so an interrupted fit leaves none of them."""
    from redafit.io.meshes import mesh_files
    from redafit.render.maps import GEOMETRY_FILES

    files = [*mesh_files(mesh), par, ov] + ([maps / GEOMETRY_FILES[0]] if maps is not None else [])
    return all(Path(f).is_file() for f in files if f is not None)


def _fit_photo(model, s: _PhotoSettings, img, mesh, par, ov, progress=None) -> dict:
    """Fit one photo and write its outputs; the ``--json`` record of the result (less ``image`` and ``ok``), or
    ``{"error", "exit_code", "exception"}`` for a :class:`~redafit.errors.RedafitError`."""
    from redafit.fit.pipeline import fit_loaded, focal_source, load_input, write_outputs

    t0 = time.perf_counter()
    try:
        opts = s.opts
        if s.faces is not None:
            from dataclasses import replace

            k, box = s.faces[str(mesh)]
            opts = replace(opts, face_index=k, confirmed=True, box=box)
        inp = load_input(img, s.landmarks, opts)
        depth_map = parsing_map = None
        if s.depth is not None:
            from redafit.io.depth import load_depth

            depth_map = load_depth(s.depth, size=(inp.image.shape[1], inp.image.shape[0]))
        if s.parsing is not None:
            from redafit.parsing.maps import parsing_map_for

            parsing_map = parsing_map_for(img, s.parsing, inp.image)
        config = s.config
        if s.stages_per_photo and getattr(config, "save_stages", None):
            from dataclasses import replace

            config = replace(config, save_stages=str(Path(config.save_stages) / Path(mesh).stem))
        result = fit_loaded(inp, model, config, progress=progress, depth=depth_map, parsing=parsing_map)
        written = write_outputs(inp, result, model, mesh, par, ov, s.texture_size, s.caps, s.frame, s.neutral,
                                maps_dir=_maps_folder(s.maps, mesh, s.stages_per_photo), texture=s.texture)
    except RedafitError as e:
        return {"error": str(e), "exit_code": e.exit_code, "exception": e}
    return {"mesh": str(mesh), "outputs": [str(p) for p in written], "seconds": round(time.perf_counter() - t0, 3),
            "landmark_error_px": round(result.landmark_error_px, 3),
            "landmark_error_iod": round(result.landmark_error_iod, 5),
            "pose_deg": [round(float(a), 2) for a in result.euler_deg], "focal_px": round(result.intrinsics.fx, 2),
            "focal_source": focal_source(inp, result),
            "failure": result.failure, **({"face": s.faces[str(mesh)][0]} if s.faces is not None else {})}


def _fitted(model, settings: _PhotoSettings, jobs: list, n_jobs: int, prog):
    """(photo, record of :func:`_fit_photo`) for every job (photo, mesh, params, overlay), in the jobs' order: one
    at a time here (the progress bar following each stage), or ``n_jobs`` at a time in worker processes, the CPU
    threads shared out among them (the bar naming the photo waited for; a worker's record has no ``exception``:
    an error's class need not survive pickling)."""
    if n_jobs == 1 or len(jobs) == 1:
        for i, (img, mesh, par, ov) in enumerate(jobs):
            prog.start(f"[{i + 1}/{len(jobs)}] {img.name}" if len(jobs) > 1 else img.name)
            yield img, _fit_photo(model, settings, img, mesh, par, ov, prog)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import torch

    n_jobs = min(n_jobs, len(jobs))
    threads = max(1, torch.get_num_threads() // n_jobs)
    device = model.mean.device
    # forked workers inherit the loaded model and the logging set-up; spawned ones (CUDA cannot be forked, and
    # some systems have no fork) get them through the initializer's arguments, the model as a CPU copy
    method = _START_METHOD or ("fork" if device.type == "cpu" and "fork" in multiprocessing.get_all_start_methods()
                               else "spawn")
    if method != "fork" and device.type != "cpu":
        from redafit.model.store import copy_model

        model = copy_model(model, "cpu")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context(method),
                             initializer=_init_fit_worker,
                             initargs=(model, str(device), settings, threads,
                                       logging.getLogger("redafit").level)) as ex:
        futures = []
        try:  # the submitting too: the first workers start fitting while the later photos are queued
            futures.extend((img, ex.submit(_fit_in_worker, img, mesh, par, ov)) for img, mesh, par, ov in jobs)
            for i, (img, fut) in enumerate(futures):
                prog.start(f"[{i + 1}/{len(jobs)}] {img.name} ({n_jobs} at a time)")
                try:
                    record = fut.result()
                except BrokenProcessPool:  # a worker was killed (out of memory?): this photo and all after it
                    record = {"error": "the worker process fitting it died (killed, or out of memory?)",
                              "exit_code": 1}
                yield img, record
        except BaseException as e:
            # an interrupt, a termination, or the caller closing this generator with photos left (an error): this
            # pool's workers stop the photos they are fitting (a Ctrl-C reached them already; a signal to this
            # process alone did not) and start no other, the queued ones are cancelled. Only this pool's own
            # workers are told: another pool's (a later command's in the same process) are not this one's business.
            if isinstance(e, KeyboardInterrupt) or len(futures) < len(jobs) or any(not f.done() for _, f in futures):
                sig = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
                for pid in _worker_pids(ex):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
            ex.shutdown(wait=True, cancel_futures=True)
            raise


def _worker_pids(ex) -> list[int]:
    """The process ids of a ProcessPoolExecutor's workers (CPython keeps them in ``_processes``, pid → process;
    None once it is shut down)."""
    return list(getattr(ex, "_processes", None) or {})


_START_METHOD = None  # the workers' start method when set ("fork", "spawn"); by default fork on a CPU
_WORKER: dict = {}


def _init_fit_worker(model, device: str, settings, threads: int, log_level: int) -> None:
    import torch

    if str(model.mean.device) != device:
        from redafit.model.store import copy_model

        model = copy_model(model, device)
    torch.set_num_threads(threads)
    torch.set_grad_enabled(True)
    if not logging.getLogger().handlers:  # spawned: the command's logging set-up is not inherited
        logging.basicConfig(level=log_level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("redafit").setLevel(log_level)
    _WORKER.update(model=model, settings=settings, busy=False, stop=None)
    signal.signal(signal.SIGINT, _stop_worker)
    signal.signal(signal.SIGTERM, _stop_worker)


def _stop_worker(signum, frame):
    """A worker's first SIGINT or SIGTERM: no photo is started after it, and the one being fitted is abandoned
    (its outputs cleaned up, as a command's are); later signals (the group's and the command's own) are ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WORKER["stop"] = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _WORKER["busy"]:  # between photos the pool's own code runs: it is left to take the next (refused) one
        raise _WORKER["stop"]()


def _fit_in_worker(img, mesh, par, ov) -> dict:
    if _WORKER["stop"] is not None:
        return _stopped()
    _WORKER["busy"] = True
    try:
        record = _fit_photo(_WORKER["model"], _WORKER["settings"], img, mesh, par, ov)
    except KeyboardInterrupt:
        return _stopped()
    finally:
        _WORKER["busy"] = False
    record.pop("exception", None)
    return record


def _stopped() -> dict:
    message, code = interruption(_WORKER["stop"] is Terminated)
    return {"error": message, "exit_code": code}


COMMANDS = [fit_cmd]
