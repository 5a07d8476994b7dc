"""Fit benchmarks: landmark accuracy on the annotated photos, landmark-stage speed vs eos, full ReDA fit time.

``python -m benchmarks.run fit [--quick] [--no-eos]``. eos-py is installed only into a private virtual
environment under ``bench-out/`` (it is not a redafit dependency); without registry access that row is skipped.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import FACES, MODELS, PTS_PHOTOS, ROOT, detect_near, machine, median_time, table


def _load(name):
    from redafit.io.images import load_image
    from redafit.landmarks import read_landmarks

    img, _ = load_image(FACES / name)
    return img, read_landmarks(FACES / (Path(name).stem + ".pts"))


def accuracy(model) -> str:
    from redafit.fit import FitConfig, fit_image
    from redafit.landmarks import inter_ocular
    from redafit.landmarks import detect_landmarks

    rows, det_all, fit_all, fitdet_all = [], [], [], []
    for name in PTS_PHOTOS:
        img, lm = _load(name)
        iod = inter_ocular(lm)
        det = detect_landmarks(img)
        de = float(np.linalg.norm(det - lm, axis=1).mean())
        r = fit_image(img, lm, model, FitConfig.preset("landmarks"))
        fe = float(np.linalg.norm(r.landmarks_fit - lm, axis=1).mean())
        rd = fit_image(img, det, model, FitConfig.preset("landmarks"))
        fde = float(np.linalg.norm(rd.landmarks_fit - lm, axis=1).mean())
        det_all.append(de / iod)
        fit_all.append(fe / iod)
        fitdet_all.append(fde / iod)
        rows.append([name, f"{iod:.0f}", f"{de:.2f} ({de / iod:.1%})", f"{fe:.2f} ({fe / iod:.1%})",
                     f"{fde:.2f} ({fde / iod:.1%})"])
    rows.append(["**mean**", "", f"{np.mean(det_all):.1%}", f"**{np.mean(fit_all):.1%}**",
                 f"{np.mean(fitdet_all):.1%}"])
    return table(["photo", "eye dist px", "dlib detection vs .pts, px (% IOD)",
                  "fitted mesh (from .pts) vs .pts", "fitted mesh (from detection) vs .pts"], rows)


def _eos_python() -> str | None:
    venv = ROOT / "bench-out" / "eos-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                           capture_output=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "eos-py"], check=True, capture_output=True,
                           timeout=600)
        except (subprocess.SubprocessError, OSError):
            return None
    ok = subprocess.run([str(py), "-c", "import eos"], capture_output=True)
    return str(py) if ok.returncode == 0 else None


def speed(models: dict, repeats: int, use_eos: bool) -> str:
    from redafit.fit import FitConfig, fit_image

    rows = []
    data = [_load(n) for n in PTS_PHOTOS]
    for label, model in models.items():
        per, errs = [], []
        for img, lm in data:
            cfg = FitConfig.preset("landmarks")
            per.append(median_time(lambda im=img, pts=lm, mo=model, c=cfg: fit_image(im, pts, mo, c), repeats))
            r = fit_image(img, lm, model, FitConfig.preset("landmarks"))
            errs.append(r.landmark_error_px)
        rows.append([f"redafit ({label})", f"{model.n_id} + {model.n_exp}", f"{statistics.median(per) * 1000:.0f}",
                     f"{np.mean(errs):.2f} (all fitted points)"])
    if use_eos:
        py = _eos_python()
        if py is None:
            rows.append(["eos-py 1.5 (SFM)", "63 + 6", "not run (eos-py could not be installed)", ""])
        else:
            specs = []
            for name, (img, _) in zip(PTS_PHOTOS, data):
                specs.append(f"{img.shape[1]},{img.shape[0]},{FACES / (Path(name).stem + '.pts')}")
            out = subprocess.run([py, str(Path(__file__).with_name("eos_runner.py")), str(MODELS / "sfm"),
                                  str(repeats), *specs], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout)
            t = statistics.median(statistics.median(r["times"]) for r in res)
            e = np.mean([r["mean_error_px_fixed_points"] for r in res])
            rows.append(["eos-py 1.5 `fit_shape_and_pose` (SFM)", "63 + 6", f"{t * 1000:.0f}",
                         f"{e:.2f} (fixed points only)"])
    return table(["method", "modes (identity + expression)", "landmark fit, median ms / image",
                  "mean landmark error px"], rows)


def full_fit(model, names, iters_scale: float = 1.0, landmark_sigma: float | None = None, preset: str = "full",
             raster_backend: str | None = None, warmup: bool = False) -> str:
    """The fit of ``preset`` on the annotated photos ``names`` with ``model`` (on its device): time, stage times,
    landmark error, skin IoU, face PSNR. ``raster_backend`` sets the rasterizer (else the preset's, ``auto``);
    ``warmup`` fits the first photo once untimed first (a GPU's kernels and contexts are made on first use)."""
    from dataclasses import replace

    from redafit.fit import FitConfig, fit_image

    cfg = FitConfig.preset(preset)
    if landmark_sigma is not None:
        cfg = replace(cfg, landmark_sigma=landmark_sigma)
    if iters_scale != 1.0:
        cfg = replace(cfg, stages=tuple(replace(s, iters=max(1, round(s.iters * iters_scale))) for s in cfg.stages))
    if raster_backend is not None:
        from redafit.fit.attribute_stages import configure

        cfg = configure(cfg, raster_backend=raster_backend)
    if warmup and names:
        fit_image(*_load(names[0]), model, cfg)
    rows, times = [], []
    for name in names:
        img, lm = _load(name)
        t0 = time.perf_counter()
        r = fit_image(img, lm, model, cfg)
        dt = time.perf_counter() - t0
        times.append(dt)
        q = r.quality
        lm_stage = q["landmarks"]["landmark_error_iod"]
        last = q[list(q)[-1]]
        stage_t = " / ".join(f"{s.seconds:.1f}" for s in r.stages)
        rows.append([name, f"{dt:.1f}", stage_t, f"{lm_stage:.1%} → {r.landmark_error_iod:.1%}",
                     f"{q['landmarks']['parsing_iou'].get('skin', 0):.2f} → {last['parsing_iou'].get('skin', 0):.2f}",
                     f"{q['landmarks']['psnr_db']:.1f} → {last['psnr_db']:.1f}", r.failure or "-"])
    rows.append(["**median**", f"**{statistics.median(times):.1f}**", "", "", "", "", ""])
    return table(["photo", "full fit s", "stage s (rigid/landmarks/attributes/freeform)",
                  "landmark err (landmark stage → final)", "skin IoU", "face PSNR dB", "failure flag"], rows)


def detected_fit(model, names) -> str:
    """The fits' landmarks against the manual annotations when the input is dlib's detection (the real use):
    the detector itself, the landmark stage and the full fit (mean error, % of the eye distance)."""
    from redafit.fit import FitConfig, fit_image
    from redafit.landmarks import landmark_error_iod
    from redafit.landmarks.detect import get_detector

    det = get_detector("dlib")
    rows, cols = [], {"det": [], "lm": [], "full": []}
    for name in names:
        img, gt = _load(name)
        _, lm = detect_near(img, gt, det)
        if lm is None:
            rows.append([name, "no face", "", ""])
            continue
        e = {"det": landmark_error_iod(lm, gt)}
        for key, preset in (("lm", "landmarks"), ("full", "full")):
            e[key] = landmark_error_iod(fit_image(img, lm, model, FitConfig.preset(preset)).landmarks_fit, gt)
        for k, v in e.items():
            cols[k].append(v)
        rows.append([name] + [f"{e[k]:.2%}" for k in ("det", "lm", "full")])
    rows.append(["**mean**"] + [f"**{np.mean(cols[k]):.2%}**" if cols[k] else "" for k in ("det", "lm", "full")])
    return table(["photo", "dlib detection", "landmark fit", "full fit"], rows)


def main(argv=None):
    argv = argv or []
    quick = "--quick" in argv
    from redafit.model.store import load_model

    ict = load_model(str(MODELS / "ict-face" / "ict_face.npz"))
    sfm = load_model(str(MODELS / "sfm"))
    print(f"machine: {machine()}\n")
    print("### Landmark accuracy on the annotated photos (68 points, mean error)\n")
    print(accuracy(ict))
    print("\n### Landmark stage speed (rigid + identity/expression from 68 landmarks)\n")
    print(speed({"ICT": ict, "SFM": sfm}, 3 if quick else 7, "--no-eos" not in argv))
    print("\n### Full ReDA fit (four stages, default settings)\n")
    names = PTS_PHOTOS[:2] if quick else PTS_PHOTOS
    print(full_fit(ict, names))
    print("\n### Fitted landmarks vs the annotations, from dlib's detections (% of the eye distance)\n")
    print(detected_fit(ict, names))


if __name__ == "__main__":
    main(sys.argv[1:])
