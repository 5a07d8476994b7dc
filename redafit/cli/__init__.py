"""Command line: a Click group whose commands only parse options into configs and call the library.

Logs and progress go to stderr, results to stdout. A :class:`~redafit.errors.RedafitError` becomes one line
``redafit: error: …`` on stderr and its exit code; anything else unexpected becomes exit code 1 with one line
(``-v`` shows the traceback). An interrupt (Ctrl-C, SIGINT) exits 130 and a SIGTERM (``timeout``, ``kill``) 143,
each after the outputs being written are cleaned up (no temporary file left, no target half-replaced).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click

from redafit import __version__
from redafit.errors import RedafitError

log = logging.getLogger("redafit")
LOG_FORMAT = "redafit: %(levelname)s: %(message)s"  # every log line on stderr (the command's and its workers')

# Sub-command modules, each defining one or more Click commands registered below. Importing them is cheap:
# heavy imports (torch, cv2, dlib) happen inside the command functions.
_COMMAND_MODULES = ["redafit.cli.models", "redafit.cli.fit", "redafit.cli.eval", "redafit.cli.rig", "redafit.cli.view",
                    "redafit.cli.doctor"]


class _OneLineError(click.ClickException):
    """A usage error found while parsing redafit's own options (before any command runs), shown as one line."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"redafit: error: {self.format_message()}", err=True)


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler of a running command: a KeyboardInterrupt, so that whatever cleans up after an
    interrupt (:mod:`redafit.io.atomic`) cleans up after a termination too."""


def _terminate(signum, frame):
    raise Terminated()


def interruption(terminated: bool) -> tuple[str, int]:
    """(message, exit code) of a command stopped by a signal: a termination (SIGTERM) 143, an interrupt (Ctrl-C,
    SIGINT) 130."""
    return ("terminated", 143) if terminated else ("interrupted", 130)


class _Group(click.Group):
    def make_context(self, info_name, args, parent=None, **extra):
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
            ctx.meta["redafit.help"] = _asks_for_help(self, argv)  # before the command parses its own options
            return ctx
        except click.UsageError as e:  # `redafit --threads 0 ...`, `redafit --bogus ...`
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `redafit`: Click shows the help itself
                raise
            raise _OneLineError(f"{e.format_message()} (see: redafit --help)") from None

    def invoke(self, ctx):
        previous = None
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # not when the caller has chosen otherwise
            try:
                previous = signal.signal(signal.SIGTERM, _terminate)
            except ValueError:  # not the main thread: SIGTERM keeps its default
                pass
        try:
            return super().invoke(ctx)
        except RedafitError as e:
            _fail(ctx, str(e), e.exit_code, e)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
            _fail(ctx, *interruption(isinstance(e, Terminated)), None)
        except click.UsageError as e:  # Click's own option checks: one line too, naming the command's --help
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare sub-group (`redafit models`): its help
                raise
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            _fail(ctx, f"{e.format_message()} (see: {where} --help)", e.exit_code, None)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # stdout closed by the reader (`redafit models list | head -1`): stop quietly
            _stdout_gone()
            ctx.exit(141)  # 128 + SIGPIPE, what a shell tool killed by the closed pipe reports
        except Exception as e:  # noqa: BLE001 - last-resort guard: one line, never a bare traceback
            _fail(ctx, f"unexpected {type(e).__name__}: {e} (run with -v for details)", 1, e)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of a closed pipe prints nothing either."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush
        pass


def _fail(ctx, message: str, code: int, exc):
    verbose = (ctx.obj or {}).get("verbosity", 0) > 0
    if verbose and exc is not None:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(f"redafit: error: {message}", err=True)
    ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="redafit")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, envvar="REDAFIT_THREADS",
              help="CPU threads for PyTorch (default: PyTorch's choice, or the CPUs other busy processes leave "
                   "free). Env: REDAFIT_THREADS.")
@click.pass_context
def main(ctx, verbose: int, quiet: bool, threads: int | None):
    """redafit: 3D face reconstruction from photographs (ReDA soft rasterization, riggable rigs).

    \b
    Examples:
      redafit fit photo.jpg -o face.obj
      redafit fit imgs/*.jpg -o out/ --json
      redafit view face.obj -o face_views.png
      redafit rig imgs/*.jpg -o rig/
      redafit eval --dataset synthetic --n 20
      redafit models install ict --from ../shared/data/models
      redafit doctor
    """
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = -1 if quiet else verbose
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    previous_level = log.level
    log.setLevel(level)
    ctx.call_on_close(lambda: log.setLevel(previous_level))  # run inside a program, the command leaves it as found
    if ctx.resilient_parsing or ctx.meta.get("redafit.help"):
        return  # help or completion only: no torch to load (a second of start-up) and no threads to set
    ctx.obj["threads"] = threads
    if ctx.invoked_subcommand == "models":
        return  # its group sets the threads for every command but list, which reads files only (no torch)
    set_command_threads(ctx, threads)


def set_command_threads(ctx: click.Context, explicit: int | None) -> None:
    """Set PyTorch's CPU threads for a command (:func:`redafit._runtime.set_threads`: ``--threads``, or the CPUs
    other busy processes leave free) and put PyTorch's count back when the command ends: a command run inside
    another program's process (``main(args, standalone_mode=False)``, a test's ``CliRunner``) leaves it as it was."""
    from redafit._runtime import apply_threads, tune_allocator

    tune_allocator()
    n, previous = apply_threads(explicit)
    if n is not None and previous is not None:
        import torch

        ctx.find_root().call_on_close(lambda: torch.set_num_threads(previous))


def _asks_for_help(command: click.Command, args) -> bool:
    """Whether the command line ``args`` of ``command`` (a group: its options, a sub-command and its arguments)
    asks for a command's help (``redafit fit --help``), which the command's own parsing, after this group's,
    answers without running it. An option's value (``-o -h``) and what follows ``--`` are not asking."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return False
        if a in ("-h", "--help"):
            return True
        if a.startswith("-") and a != "-":
            name = a.split("=", 1)[0]
            opt = next((p for p in command.params if isinstance(p, click.Option) and name in p.opts), None)
            if opt is not None and not opt.is_flag and not opt.count and "=" not in a:
                i += max(opt.nargs, 1)  # its value(s)
        elif isinstance(command, click.Group) and a in command.commands:
            command = command.commands[a]
        i += 1
    return False


class FiniteRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses ``nan`` and ``inf`` (a NaN passes every range comparison)."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class FocalType(click.ParamType):
    """``--focal``: ``auto``, pixels (``1200``, ``1200px``), a 35 mm-equivalent length (``26mm``) or a multiple of
    the longer image side (``1.6x``) -> :class:`redafit.render.camera.FocalSpec`."""

    name = "focal"

    def convert(self, value, param, ctx):
        from redafit.errors import UsageError
        from redafit.render.camera import FocalSpec

        try:
            return FocalSpec.parse(value)
        except UsageError as e:
            self.fail(str(e).split(": ", 1)[-1], param, ctx)


def device_option(f):
    """``--device auto|cpu|cuda`` (auto = CUDA when available)."""
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                        help="Where to compute.")(f)


def resolve_device(name: str):
    import torch

    from redafit.errors import DependencyError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DependencyError("--device cuda: no CUDA device is available to this PyTorch build")
    return torch.device(name)


def show_progress(ctx) -> bool:
    """Progress bars only on an interactive stderr and unless -q."""
    return (ctx.obj or {}).get("verbosity", 0) >= 0 and sys.stderr.isatty()


for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _e:  # a command module not written yet
        if _e.name != _name:
            raise
        continue
    for _cmd in getattr(_mod, "COMMANDS", []):
        main.add_command(_cmd)
