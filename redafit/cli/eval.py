"""``redafit eval``: accuracy benchmarks (synthetic, MICC, NoW, BU-3DFE, a CSV manifest) and ablations."""

from __future__ import annotations

import statistics
import sys

import click

from redafit.cli import FiniteRange


@click.command("eval")
@click.option("--dataset", type=click.Choice(["synthetic", "micc", "now", "bu3dfe"]), default="synthetic",
              show_default=True, help="Which benchmark (ignored with --manifest).")
@click.option("--root", type=click.Path(file_okay=False), default=None, help="Dataset folder (micc, now, bu3dfe).")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="CSV with columns image, scan[, landmarks, nose_tip, scan_landmarks, parsing, depth, id, "
                   "unit].")
@click.option("--n", "n", type=click.IntRange(min=1), default=20, show_default=True, help="Synthetic cases.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Synthetic dataset seed.")
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Synthetic image size (px).")
@click.option("--landmark-noise", type=FiniteRange(min=0), default=1.5, show_default=True,
              help="Gaussian noise (px) on the synthetic landmark files (1.5 at 256 px: about a 68-point detector's "
                   "error, the setting the fits' defaults are tuned for and the README's tables use; 0: exact).")
@click.option("--detail-mm", type=FiniteRange(min=0), default=0.0, show_default=True,
              help="Synthetic faces: RMS (mm) of smooth detail outside the model's span added to the shapes "
                   "(what the free-form stage is for).")
@click.option("--focal-factor", type=FiniteRange(0.2, 20), default=1.6, show_default=True, metavar="F",
              help="Synthetic cameras: focal length / image side (1.6: the fits' default, a ~50 mm lens; 0.8: a "
                   "phone's 24-26 mm lens, the face seen from closer, in stronger perspective).")
@click.option("--unknown-focal", is_flag=True,
              help="Fit with the default focal length (1.6 x the longer side) instead of each case's camera (the "
                   "synthetic cases' own, the manifest's focal column, the photo's EXIF): what a photo without "
                   "camera data gets.")
# the choices are redafit.eval.synthetic.SHADINGS, spelled out so that the CLI does not import torch to start (test)
@click.option("--shading", type=click.Choice(["physical", "model"]), default="physical", show_default=True,
              help="Synthetic images: 'physical' (per-pixel light with shadows, occlusion, highlights, fine "
                   "texture) or 'model' (per-vertex SH, the z-buffer fit's own image formation).")
# the choices are redafit.eval.synthetic.HIGHLIGHTS, spelled out for the same reason (test)
@click.option("--highlight", type=click.Choice(["microfacet", "blinn-phong"]), default="microfacet",
              show_default=True,
              help="Synthetic 'physical' images: the skin highlight's model, 'microfacet' (GGX with Fresnel, "
                   "varying over the face) or 'blinn-phong' (the uniform lobe of the images before session 12).")
@click.option("--landmark-sigma", type=FiniteRange(0.1, 20), default=None, metavar="PCT",
              help="The fits' expected landmark noise in % of the eye distance (see redafit fit --help).")
@click.option("--parsing-net", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="TorchScript face-parsing network for the full fits' parsing mask (see redafit fit --help).")
@click.option("--weight", "weights", multiple=True, metavar="[STAGE.]TERM=W",
              help="A loss weight for the fits whose stages have the term (see redafit fit --help); repeatable.")
@click.option("--given-parsing", is_flag=True,
              help="Fit with each case's own parsing map (the manifest's parsing column; each synthetic case's "
                   "true parsing) instead of parsing the photos; a case without one fails alone.")
@click.option("--given-depth", is_flag=True,
              help="RGB-D: fit with each case's depth map (the manifest's depth column; each synthetic case's true "
                   "depth, 1 mm sensor noise), the depth attribute added to the full fits'; a case without one fails "
                   "alone.")
@click.option("--detect-landmarks", is_flag=True,
              help="Fit from the landmark detector's output, as on a photo, even where the cases have landmarks "
                   "(these then measure the detection: printed as its mean error); a case without a detected face "
                   "fails alone.")
@click.option("--detector", type=click.Choice(["dlib", "dlib-cnn", "fan"]), default="dlib", show_default=True,
              help="Landmark detector for --detect-landmarks and for cases without landmarks.")
@click.option("--occlusion/--no-occlusion", default=None,
              help="The full fits' ambient occlusion in the colour shading (see redafit fit --help; default on).")
@click.option("--specular/--no-specular", default=None,
              help="The full fits' specular highlight in the colour shading (see redafit fit --help; default on).")
@click.option("--landmark-guard/--no-landmark-guard", default=None,
              help="The full fits' landmark guard (see redafit fit --help; default on).")
@click.option("--model", "model_name", default="ict", show_default=True, help="Installed face model (or path).")
@click.option("--out", "out_dir", type=click.Path(), default=None,
              help="Write per-case JSON, results.csv, summary.md and heat maps here.")
@click.option("--resume", is_flag=True, help="Skip cases whose JSON already exists in --out.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel processes.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N cases.")
# the choices are redafit.eval.runner.ABLATIONS' keys, spelled out for the same reason (test)
@click.option("--ablation", type=click.Choice(["attributes", "raster", "pyramid", "freeform", "occlusion",
                                              "specular", "guard"]),
              default=None,
              help="Also run the paper's ablation as configurations of the full fit.")
@click.option("--methods", default="mean,landmarks,full", show_default=True,
              help="Comma-separated: mean, landmarks, full, fast, oracle.")
@click.option("--heatmaps", type=click.IntRange(min=0), default=3, show_default=True,
              help="Error heat maps for the first N cases (with --out).")
@click.pass_context
def eval_cmd(ctx, dataset, root, manifest, n, seed, size, landmark_noise, detail_mm, focal_factor, unknown_focal,
             shading, highlight,
             landmark_sigma, parsing_net, weights, given_parsing, given_depth, detect_landmarks, detector, occlusion,
             specular, landmark_guard, model_name, out_dir, resume, jobs, limit, ablation, methods, heatmaps):
    """Measure reconstruction accuracy (mm) against ground-truth shapes.

    \b
    Examples:
      redafit eval --dataset synthetic --n 20
      redafit eval --dataset now --root NoW_Dataset/final_release_version --out now_eval/
      redafit eval --manifest cases.csv --methods mean,full --jobs 2
      redafit eval --dataset synthetic --n 10 --ablation pyramid --methods full
      redafit eval --dataset synthetic --n 10 --detail-mm 1 --ablation freeform --methods landmarks,full
      redafit eval --dataset synthetic --n 10 --given-parsing --ablation raster --methods full --weight mask=128
      redafit eval --dataset synthetic --n 10 --given-depth --ablation raster --methods landmarks   # RGB-D
      redafit eval --manifest cases.csv --detect-landmarks --detector fan --methods landmarks,full
      redafit eval --dataset synthetic --n 10 --focal-factor 0.8 --unknown-focal --methods landmarks,full
    """
    from rich.console import Console
    from rich.markup import escape

    from redafit.errors import UsageError
    from redafit.eval.runner import (
        FitMethod,
        ablation_table,
        load_cases,
        make_methods,
        markdown_table,
        run_eval,
    )
    from redafit.model.store import load_model

    if resume and out_dir is None:
        raise UsageError("--resume needs --out DIR")
    if given_parsing and parsing_net is not None:
        raise UsageError("--given-parsing and --parsing-net both replace the photos' parsing: give one")
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise UsageError(f"--methods {methods!r}: name at least one method")
    if out_dir is not None:  # before any case: a file in the way or a read-only place fails now (exit 10)
        from redafit.io.atomic import check_can_create

        check_can_create(out_dir)
    overrides = {} if landmark_sigma is None else {"landmark_sigma": landmark_sigma / 100.0}
    switches = {"occlusion": occlusion, "specular": specular, "landmark_guard": landmark_guard}
    overrides.update({k: bool(v) for k, v in switches.items() if v is not None})
    if parsing_net is not None:
        from redafit.parsing.network import cached_parsing_network

        cached_parsing_network(parsing_net)  # a missing or broken file fails here, not in every case
        overrides["parsing_net"] = str(parsing_net)
    from redafit.fit.config import parse_loss_weights

    method_objs = make_methods(names, ablation, overrides or None, given_parsing=given_parsing,
                               loss_weights=parse_loss_weights(weights), given_depth=given_depth,
                               detect_landmarks=detect_landmarks, detector=detector, unknown_focal=unknown_focal)
    model = load_model(model_name)
    err = Console(stderr=True, soft_wrap=True)  # a progress line stays one line in a log (not cut at 80 columns)
    label = "manifest" if manifest else dataset
    cases = load_cases(dataset, model, root=root, manifest=manifest, n=n, seed=seed, size=size,
                       landmark_noise=landmark_noise, limit=limit, detail_mm=detail_mm, shading=shading,
                       highlight=highlight, focal_factor=focal_factor)
    fits = [m for m in method_objs.values() if isinstance(m, FitMethod)]
    if detect_landmarks and not fits:
        raise UsageError("--detect-landmarks: no fit method among the methods (landmarks, full, fast)")
    if fits and (detect_landmarks or not all(c.has_landmarks for c in cases)):
        from redafit.landmarks.detect import get_detector

        get_detector(detector)  # a missing detector (face-alignment for fan) fails here, not in every case
    if out_dir is not None:  # every check passed: now the folder, and the synthetic cases themselves in it
        from pathlib import Path

        from redafit.io.atomic import check_writable, make_folder

        check_writable([make_folder(out_dir)])
        if manifest is None and dataset == "synthetic":
            from redafit.eval.synthetic import write_cases

            write_cases(cases, Path(out_dir) / "synthetic")  # with a manifest.csv that reruns them
    quiet = (ctx.obj or {}).get("verbosity", 0) < 0
    if not quiet:
        err.print(f"redafit eval: {len(cases)} {label} case(s) x {len(method_objs)} method(s)")

    def progress(done, total, r):
        if quiet:
            return
        status = f"error: {r.error}" if r.error else f"{r.point_to_plane:.3f} mm"
        err.print(escape(f"  [{done}/{total}] {r.method} {r.case_id}: {status}"), highlight=False)

    report = run_eval(cases, method_objs, model, out_dir=out_dir, resume=resume, jobs=jobs, heatmaps=heatmaps,
                      dataset=label, progress=progress)
    out = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 132)
    header, rows = report.table()
    out.print(rich_table(f"redafit eval — {label} ({len(cases)} cases, model {model.name})", header, rows))
    if ablation:
        h2, r2 = ablation_table(report, ablation)
        out.print(rich_table(f"ablation: {ablation} (mm)", h2, r2))
        if out_dir is not None:
            from pathlib import Path

            from redafit.io.atomic import atomic_write

            with atomic_write(Path(out_dir) / f"ablation_{ablation}.md", "w") as fh:
                fh.write(markdown_table(h2, r2, f"Ablation: {ablation}"))
    det = {r.case_id: r.info["detection_error_iod"] for r in report.results if "detection_error_iod" in r.info}
    if det and not quiet:
        err.print(f"redafit eval: detected landmarks {100 * statistics.fmean(det.values()):.2f} % of the eye "
                  f"distance from the cases' own on the mean ({len(det)} case(s))")
    failed = sum(1 for r in report.results if r.error)
    if failed:  # as fit's and rig's batches: the rest were measured, and the exit status says not all were
        if not quiet:
            where = f"{out_dir}/results.csv" if out_dir is not None else "the lines above"
            err.print(escape(f"redafit eval: {failed} of {len(report.results)} fit(s) failed (errors: {where})"))
        sys.exit(1)


def rich_table(title: str, header: list, rows: list):
    """A rich Table of plain strings, escaped: method names such as ``full[occlusion off]`` are not markup."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for h in header:
        table.add_column(escape(str(h)))
    for r in rows:
        table.add_row(*(escape(str(c)) for c in r))
    return table


COMMANDS = [eval_cmd]
