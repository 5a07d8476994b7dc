"""``redafit doctor``: what this installation has - versions, devices, accelerators, detectors, face models - and a
short render on every device, so that "will it use my GPU?" and "why does fit fail here?" have one answer.

Each check is required (a command needs it by default: torch, numpy, scipy, OpenCV, dlib and its model files, the
default face model) or optional (CUDA, nvdiffrast, the FAN detector, HEIC support, the rig's init network). The
exit status is 0 when every required check passes, else the first failing one's error code (8: a dependency, 7: a
model), so a setup script can run it.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from dataclasses import asdict, dataclass

import click

from redafit.io import jsonsafe


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    exit_code: int = 0  # the error code when a required check fails


def _version(module: str) -> str | None:
    try:
        m = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install is reported as missing, not as a crash
        return None
    return str(getattr(m, "__version__", None) or getattr(m, "VERSION", None) or "installed")


def _packages() -> list[Check]:
    from redafit.errors import DependencyError

    out = []
    for label, module, dist in (("torch", "torch", "torch"), ("numpy", "numpy", "numpy"), ("scipy", "scipy", "scipy"),
                                ("OpenCV", "cv2", "opencv-python"), ("trimesh", "trimesh", "trimesh")):
        v = _version(module)
        out.append(Check(label, v is not None, v or f"not installed: pip install {dist}",
                         exit_code=DependencyError.exit_code))
    return out


def _devices() -> list[Check]:
    import torch

    n = torch.get_num_threads()
    checks = [Check("CPU", True, f"{n} PyTorch thread{'s' if n != 1 else ''} (redafit --threads N sets it)")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("CUDA", True, f"{names} (CUDA {torch.version.cuda})", required=False))
    else:
        why = "this torch is a CPU build" if torch.version.cuda is None else "no CUDA device visible"
        checks.append(Check("CUDA", False, f"not available ({why}); everything runs on the CPU", required=False))
    from redafit.render import raster_nvdiffrast

    if raster_nvdiffrast._load() is not None:
        use = "used on CUDA by --raster-backend auto" if torch.cuda.is_available() else "installed, but needs CUDA"
        checks.append(Check("nvdiffrast", True, use, required=False))
    else:
        checks.append(Check("nvdiffrast", False, "not installed (optional GPU rasterizer; the torch one runs "
                            "everywhere): pip install git+https://github.com/NVlabs/nvdiffrast", required=False))
    return checks


def _detectors() -> list[Check]:
    from redafit.errors import DependencyError, RedafitError
    from redafit.landmarks.detect import DLIB_CNN, DLIB_PREDICTOR, dlib_model_dir

    v = _version("dlib")
    checks = [Check("dlib", v is not None, v or "not installed: pip install dlib-bin",
                    exit_code=DependencyError.exit_code)]
    try:
        folder = dlib_model_dir()
        missing = [f for f in (DLIB_PREDICTOR, DLIB_CNN) if not (folder / f).is_file()]
        checks.append(Check("dlib models", not missing, f"{folder}" + (f" lacks {', '.join(missing)}" if missing
                                                                       else " (68-point predictor, CNN detector)"),
                            exit_code=DependencyError.exit_code))
    except RedafitError as e:
        checks.append(Check("dlib models", False, str(e), exit_code=DependencyError.exit_code))
    else:
        from redafit.landmarks.identity import NETWORK_FILE

        known = (folder / NETWORK_FILE).is_file()
        checks.append(Check("face recognition", known, "dlib's network: rig warns of photos of another person" if known
                            else f"{folder} lacks {NETWORK_FILE} (optional): rig does not check that its photos show "
                            "one person", required=False))
    fan = _version("face_alignment")
    checks.append(Check("FAN detector", fan is not None, f"face-alignment {fan} (--detector fan; downloads its "
                        "weights on first use)" if fan else "not installed (optional): pip install 'redafit[fan]'",
                        required=False))
    heif = _version("pillow_heif")
    checks.append(Check("HEIC photos", heif is not None, f"pillow-heif {heif}" if heif else
                        "not installed (optional, for an iPhone's .heic): pip install 'redafit[heif]'",
                        required=False))
    return checks


def _video() -> list[Check]:
    """Whether OpenCV writes and reads back an .mp4 here (track, rig from a video, view's and track's videos)."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from redafit.errors import RedafitError
    from redafit.io.video import video_writer
    from redafit.rig.track import open_frames

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.mp4"
        try:
            with video_writer(path, 10.0) as write:
                for k in range(3):
                    write(np.full((64, 64, 3), 40 * k, np.uint8))
            frames, _ = open_frames(path)
            n = sum(1 for _ in frames)
        except RedafitError as e:
            return [Check("video (.mp4)", False, f"{e} (track and rig read videos through OpenCV's FFmpeg; frame "
                          "images work without it)", required=False)]
    return [Check("video (.mp4)", n == 3, f"OpenCV wrote and read back {n} of 3 frames", required=False)]


def _guarded(checks, name: str, required: bool = True, exit_code: int = 8) -> list[Check]:
    """``checks()``, or one failed check ``name`` saying what went wrong when it raised (a broken install is
    reported, not a crash that hides the rest of the report)."""
    try:
        return checks()
    except Exception as e:  # noqa: BLE001 - every failure is a finding here
        detail = (str(e).splitlines() or [""])[0] or type(e).__name__
        return [Check(name, False, f"could not be checked: {detail}", required=required, exit_code=exit_code)]


def _models(model_name: str) -> list[Check]:
    from redafit.errors import ModelError, RedafitError
    from redafit.model.store import TRAINED_FILES, installed_models, load_model, model_dir

    installed = installed_models()
    folder = model_dir()
    detail = f"not installed in {folder}: redafit models install {model_name}"
    ok = model_name in installed
    if ok:
        try:
            m = load_model(model_name)
            detail = f"{folder / model_name} ({m.n_vertices} vertices, {m.n_id} identity, {m.n_exp} expression modes)"
        except RedafitError as e:
            ok, detail = False, f"{e} (reinstall: redafit models install {model_name})"
    checks = [Check(f"model {model_name}", ok, detail, exit_code=ModelError.exit_code)]
    others = sorted(set(installed) - {model_name})
    if others:
        checks.append(Check("other models", True, ", ".join(others), required=False))
    if model_name in installed:
        trained = all((folder / model_name / f).is_file() for f in TRAINED_FILES)
        checks.append(Check("rig init network", trained, "trained" if trained else
                            f"not trained (rig starts from the mean face): redafit models train-init --model "
                            f"{model_name}", required=False))
    return checks


def _render_test(model_name: str) -> list[Check]:
    """Rasterize the model's mean face at 96 px on every device and backend there is; compare their coverage."""
    import torch

    from redafit.errors import RedafitError
    from redafit.model.store import is_installed, load_model
    from redafit.render.camera import Intrinsics, euler_to_r, pose_rotation, to_clip, transform
    from redafit.render.ops import rasterize

    if not is_installed(model_name):
        return []
    model = load_model(model_name)
    K = Intrinsics.default(96, 96)
    R = pose_rotation(euler_to_r(20, 5, 0)[None])
    v = transform(model.forward(), R, torch.tensor([[0.0, 0.0, 2.2 * K.fx]]))
    runs = [("cpu", "torch")]
    if torch.cuda.is_available():
        from redafit.render import raster_nvdiffrast

        runs += [("cuda", "torch")] + ([("cuda", "nvdiffrast")] if raster_nvdiffrast._load() is not None else [])
    checks, ref = [], None
    for device, backend in runs:
        try:
            clip = to_clip(v.to(device), K)
            tris = model.triangles.to(device)
            rasterize(clip, tris, (96, 96), backend)  # the first call builds kernels and contexts
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            frags = rasterize(clip, tris, (96, 96), backend)
            if device == "cuda":
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) * 1000
            cover = (frags.tri_id[0] >= 0).cpu()
        except (RedafitError, RuntimeError) as e:
            checks.append(Check(f"render {device}/{backend}", False, str(e).splitlines()[0],
                                required=device == "cpu", exit_code=1))
            continue
        if ref is None:
            ref = cover
        agree = float((cover == ref).float().mean()) * 100
        ok = bool(cover.any()) and agree > 99.0
        checks.append(Check(f"render {device}/{backend}", ok, f"{int(cover.sum())} face pixels of 96x96 in "
                            f"{ms:.1f} ms; {agree:.2f} % agree with cpu/torch", required=device == "cpu",
                            exit_code=1))
    return checks


@click.command("doctor")
@click.option("--model", "model_name", default="ict", show_default=True, help="The face model to check for.")
@click.option("--no-render", is_flag=True, help="Skip the render test (no model loaded, no kernels run).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def doctor_cmd(model_name, no_render, as_json):
    """Check this installation: packages, devices, the GPU rasterizer, landmark detectors, face models, and a short
    render on every device.

    \b
    Exit status: 0 when everything redafit needs by default is there; otherwise the first missing part's error
    code (8 a dependency, 7 the face model, 1 the render test).
    Examples:
      redafit doctor
      redafit doctor --json | jq '.checks[] | select(.ok | not)'
    """
    from redafit import __version__

    checks = _packages()
    have = {c.name for c in checks if c.ok}
    if "torch" in have:
        checks += _guarded(_devices, "devices")
    checks += _guarded(_detectors, "landmark detectors")
    if {"torch", "OpenCV"} <= have:
        checks += _guarded(_video, "video (.mp4)", required=False)
    if "torch" in have:
        checks += _guarded(lambda: _models(model_name), f"model {model_name}", exit_code=7)
    else:  # the model store reads models through torch
        checks.append(Check(f"model {model_name}", False, "not checked: it needs torch", exit_code=7))
    if not no_render and "torch" in have and all(c.ok for c in checks if c.name == f"model {model_name}"):
        checks += _guarded(lambda: _render_test(model_name), "render", exit_code=1)
    failed = [c for c in checks if c.required and not c.ok]
    code = failed[0].exit_code if failed else 0
    header = f"redafit {__version__}, Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    if as_json:
        click.echo(jsonsafe.dumps({"redafit": __version__, "python": platform.python_version(),
                                   "platform": f"{platform.system()} {platform.machine()}", "ok": not failed,
                                   "checks": [asdict(c) for c in checks]}))
    else:
        click.echo(header)
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = "ok" if c.ok else ("FAIL" if c.required else "--")
            click.echo(f"{mark:<4}  {c.name:<{width}}  {c.detail}")
        click.echo("redafit is ready" if not failed else f"{len(failed)} required part(s) missing: "
                   + ", ".join(c.name for c in failed), err=bool(failed))
    sys.exit(code)


COMMANDS = [doctor_cmd]
