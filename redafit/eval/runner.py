"""Run methods over evaluation cases, score them, and report (library side: data in, data out; no rich/click).

Methods (``method(case, model) -> Prediction``; picklable objects so ``jobs > 1`` can ship them to processes):

* ``mean`` — the model's mean face (the baseline every fit must beat);
* ``landmarks`` — :func:`redafit.fit.fit_image` with ``FitConfig.preset("landmarks")``;
* ``full`` — the full ReDA fit, ``FitConfig.preset("full")``;
* ``fast`` — the same stages and weights with the plain z-buffer, ``FitConfig.preset("fast")``;
* ``oracle`` — the ground truth itself (a protocol sanity check: error 0 on synthetic data).

Ablations are configurations of the ``full`` fit (:data:`ABLATIONS`), named ``full[<label>]``.

Scoring: cases with ``protocol == "now"`` use :func:`~redafit.eval.metrics.now_protocol`, the others
:func:`~redafit.eval.metrics.micc_protocol` (for synthetic data the ground truth is the model-frame mesh and
ICP is initialised from the 68 landmark vertices).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, is_dataclass, replace
from pathlib import Path

import numpy as np

from redafit.errors import DatasetError, InputError, NoFaceError, RedafitError, UsageError
from redafit.eval.metrics import (
    NOW_LANDMARKS_68,
    micc_protocol,
    now_protocol,
    summarize,
)
from redafit.io import jsonsafe
from redafit.io.atomic import atomic_group, atomic_write, make_folder

log = logging.getLogger("redafit")
METHOD_NAMES = ("mean", "landmarks", "full", "fast", "oracle")
HEATMAP_MAX_MM = 5.0


# ---------------------------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """A method's predicted shape in the model frame (mm)."""

    vertices: np.ndarray  # [V, 3]
    faces: np.ndarray  # [F, 3]
    seconds: float = 0.0  # fit time
    info: dict = field(default_factory=dict)


class MeanMethod:
    """The model's mean face."""

    name = "mean"

    def __call__(self, case, model) -> Prediction:
        t = time.perf_counter()
        v = model.mean.detach().cpu().double().numpy()
        return Prediction(v, model.triangles.cpu().numpy(), time.perf_counter() - t)


class OracleMethod:
    """The ground truth itself (only for cases whose ground truth is in the model's topology)."""

    name = "oracle"

    def __call__(self, case, model) -> Prediction:
        gt = case.load_ground_truth()
        if len(gt.vertices) != model.n_vertices:
            raise InputError(f"oracle: case {case.id} ground truth is not in the model's topology")
        return Prediction(gt.vertices.copy(), model.triangles.cpu().numpy(), 0.0)


@dataclass
class FitMethod:
    """:func:`redafit.fit.fit_image` with a preset, optionally modified by ``FitConfig`` field overrides.

    ``overrides`` maps FitConfig field names to values; ``render_overrides`` modifies its RenderConfig;
    ``loss_overrides`` sets loss weights ({term: weight} in every stage that has the term, {"stage.term": weight}
    in one stage; :meth:`~redafit.fit.FitConfig.with_loss_weights`). ``given_parsing``:
    fit with the case's own parsing map (:meth:`Case.load_parsing`, e.g. a synthetic case's true parsing) instead
    of parsing the photo. ``given_depth``: fit with the case's depth map (:meth:`Case.load_depth`; RGB-D), the
    depth attribute added to the preset's attributes. ``detect_landmarks``: fit from the landmark detector's
    output (:func:`redafit.landmarks.detect_landmarks`) even where the case has landmarks, which then measure the
    detection (``info["detection_error_iod"]``, mean distance / eye distance; a synthetic case's noise-free
    landmarks, ``meta["landmarks_gt"]``): the whole pipeline as a user runs
    it on a photo; a case the detector finds no face in fails for this method alone. ``detector``: which one
    (:func:`redafit.landmarks.detect_landmarks`: ``dlib``, ``dlib-cnn``, ``fan``), also for cases without landmarks.
    """

    preset: str = "landmarks"
    overrides: dict = field(default_factory=dict)
    render_overrides: dict = field(default_factory=dict)
    label: str = ""
    loss_overrides: dict = field(default_factory=dict)
    given_parsing: bool = False
    given_depth: bool = False
    detect_landmarks: bool = False
    detector: str = "dlib"
    # fit with the default focal length (1.6 x the longer side) whatever the case's camera: what a photo without
    # camera data gets (``redafit eval --unknown-focal``)
    unknown_focal: bool = False

    @property
    def name(self) -> str:
        return self.label or self.preset

    def config(self):
        try:
            from redafit.fit import FitConfig
            from redafit.fit.config import ATTRIBUTE_PRESETS
        except ImportError as e:  # the fitter is not part of this installation
            raise RedafitError(f"method {self.name!r} needs redafit.fit, which cannot be imported ({e})") from e
        cfg = FitConfig.preset(self.preset)
        rebuild = bool({"attributes", "freeform"} & set(self.overrides))
        if self.overrides:
            cfg = replace(cfg, **self.overrides)
        if self.given_depth and cfg.attributes and "depth" not in cfg.attributes:
            cfg = replace(cfg, attributes=tuple(cfg.attributes) + ("depth",))
            rebuild = True
        if rebuild and self.preset in ATTRIBUTE_PRESETS:
            # the stages are built from these fields: rebuild them (replacing the fields alone changed nothing)
            from redafit.fit.attribute_stages import configure

            cfg = configure(cfg, attributes=cfg.attributes, freeform=cfg.freeform)
        if self.render_overrides:
            from redafit.fit.attribute_stages import fit_render_config

            cfg = replace(cfg, render=replace(cfg.render or fit_render_config(), **self.render_overrides))
        if self.loss_overrides:
            try:
                cfg = cfg.with_loss_weights(self.loss_overrides)
            except UsageError as e:
                raise UsageError(f"method {self.name!r}: {e}") from e
        return cfg

    def __call__(self, case, model) -> Prediction:
        from redafit.fit import fit_image

        image, K = case.load_image_camera()
        if self.unknown_focal or K is None:
            from redafit.render.camera import Intrinsics

            K = Intrinsics.default(image.shape[1], image.shape[0])
        lm = case.load_landmarks()
        detection_error = None
        if lm is None or self.detect_landmarks:
            from redafit.landmarks import landmark_error_iod

            truth = case.meta.get("landmarks_gt") if case.meta else None  # synthetic: the noise-free landmarks
            given = lm if truth is None else np.asarray(truth, np.float64)
            lm = detect_cached(image, self.detector, name=case.id)
            detection_error = landmark_error_iod(lm, given)
        parsing = depth = None
        if self.given_parsing:
            parsing = case.load_parsing(size=(image.shape[1], image.shape[0]))
            if parsing is None:
                raise DatasetError(f"case {case.id}: no parsing map (method {self.name!r} fits with the case's own)")
        if self.given_depth:
            depth = case.load_depth(size=(image.shape[1], image.shape[0]))
            if depth is None:
                raise DatasetError(f"case {case.id}: no depth map (method {self.name!r} fits with the case's depth)")
        config = self.config()
        t = time.perf_counter()
        res = fit_image(image, lm, model, config, intrinsics=None if config.focal else K, parsing=parsing,
                        depth=depth)
        pred = fit_prediction(res, time.perf_counter() - t)
        if detection_error is not None:
            pred.info["detection_error_iod"] = detection_error
        return pred


# a case's detection, kept for the other methods that fit it (per process; a few hundred 68 x 2 arrays at most)
_DETECTIONS: OrderedDict = OrderedDict()
_DETECTIONS_MAX = 512


def detect_cached(image: np.ndarray, detector: str, name: str | None = None) -> np.ndarray:
    """:func:`redafit.landmarks.detect_landmarks` of ``image``, run once per image content and detector in this
    process: every fit method of an evaluation starts from the same detection (the detectors are deterministic),
    and a slow one (FAN on the CPU) runs once per case instead of once per method. A face not found is remembered
    too and raised again. Returns a copy the caller may modify."""
    from redafit.landmarks import detect

    img = np.ascontiguousarray(image)
    key = (str(detector), img.shape, str(img.dtype), hashlib.sha1(img.view(np.uint8).reshape(-1)).hexdigest())
    hit = _DETECTIONS.get(key)
    if hit is None:
        try:
            hit = detect.detect_landmarks(img, detector, name=name)
        except NoFaceError as e:
            hit = NoFaceError(str(e))  # the message only: a traceback would keep the image's frames alive
        _DETECTIONS[key] = hit
        while len(_DETECTIONS) > _DETECTIONS_MAX:
            _DETECTIONS.popitem(last=False)
    else:
        _DETECTIONS.move_to_end(key)
    if isinstance(hit, NoFaceError):
        raise NoFaceError(str(hit))
    return hit.copy()


def fit_prediction(res, seconds: float) -> Prediction:
    """A :class:`Prediction` of a :class:`~redafit.fit.FitResult` (model-frame mesh, landmark error, failure)."""
    info = {"landmark_error_px": float(res.landmark_error_px), "failure": res.failure,
            "focal_px": float(res.intrinsics.fx)}
    return Prediction(np.asarray(res.vertices_model, np.float64), np.asarray(res.triangles), seconds, info)


# Ablations: (label, FitConfig overrides, RenderConfig overrides) applied to the "full" preset (ReDA Tables 1-3).
ABLATIONS = {
    "attributes": [("color", {"attributes": ("color",)}, {}), ("mask", {"attributes": ("mask",)}, {}),
                   ("color+mask", {"attributes": ("color", "mask")}, {})],
    "raster": [("z-buffer", {}, {"mode": "zbuffer"}), ("ReDA", {}, {"mode": "reda"})],
    "pyramid": [(f"levels={n}", {}, {"pyramid_levels": n}) for n in (1, 2, 3, 4, 6)],
    "freeform": [("free-form off", {"freeform": False}, {}), ("free-form on", {"freeform": True}, {})],
    "occlusion": [("occlusion off", {"occlusion": False}, {}), ("occlusion on", {"occlusion": True}, {})],
    "specular": [("specular off", {"specular": False}, {}), ("specular on", {"specular": True}, {})],
    "guard": [("guard off", {"landmark_guard": False}, {}), ("guard on", {"landmark_guard": True}, {})],
}


def make_methods(names, ablation: str | None = None, fit_overrides: dict | None = None,
                 given_parsing: bool = False, loss_weights: dict | None = None, given_depth: bool = False,
                 detect_landmarks: bool = False, detector: str = "dlib", unknown_focal: bool = False) -> dict:
    """Method objects by name (``mean``, ``landmarks``, ``full``, ``oracle``), plus the ablation's configurations
    of the full fit (named ``full[<label>]``) when ``ablation`` is given. ``fit_overrides`` (FitConfig fields,
    e.g. ``landmark_sigma``) apply to every fit method; ``given_parsing``: the fits use each case's own parsing
    map (:attr:`FitMethod.given_parsing`), ``given_depth`` its depth map (RGB-D, :attr:`FitMethod.given_depth`),
    ``detect_landmarks`` the ``detector``'s landmarks instead of the case's (:attr:`FitMethod.detect_landmarks`),
    ``unknown_focal`` the default focal length instead of the case's camera (:attr:`FitMethod.unknown_focal`);
    ``loss_weights`` (``eval --weight``, keys as in
    :meth:`~redafit.fit.FitConfig.with_loss_weights`) apply to each fit method whose stages have the term (the
    landmark-only fit has no ``mask``), and one that applies to none is a :class:`UsageError`."""
    out = {}
    fo = dict(fit_overrides or {})
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n == "mean":
            out[n] = MeanMethod()
        elif n == "oracle":
            out[n] = OracleMethod()
        elif n in ("landmarks", "full", "fast"):
            out[n] = FitMethod(n, dict(fo), given_parsing=given_parsing, given_depth=given_depth,
                               detect_landmarks=detect_landmarks, detector=detector, unknown_focal=unknown_focal)
        else:
            raise UsageError(f"unknown method {n!r}; choose from {', '.join(METHOD_NAMES)}")
    if ablation:
        if ablation not in ABLATIONS:
            raise UsageError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
        for label, ov, rov in ABLATIONS[ablation]:
            name = f"full[{label}]"
            out[name] = FitMethod("full", {**fo, **ov}, dict(rov), label=name, given_parsing=given_parsing,
                                  given_depth=given_depth, detect_landmarks=detect_landmarks, detector=detector,
                                  unknown_focal=unknown_focal)
    if loss_weights:
        fits = [m for m in out.values() if isinstance(m, FitMethod)]
        if not fits:
            raise UsageError("--weight: no fit method among the methods")
        configs = [m.config() for m in fits]
        for key, w in loss_weights.items():
            takers = [m for m, cfg in zip(fits, configs) if cfg.has_loss(key)]
            if not takers:
                raise UsageError(configs[-1].missing_loss_message(key))
            for m in takers:
                m.loss_overrides[key] = float(w)
    return out


def available_methods(names) -> list[str]:
    """The subset of ``names`` that can run here (fit methods need :mod:`redafit.fit` and its preset)."""
    ok = []
    for n in names:
        if n in ("mean", "oracle"):
            ok.append(n)
            continue
        try:
            FitMethod(n).config()
        except Exception:  # noqa: BLE001 - missing fitter or preset: the method is not available here
            ok_n = False
        else:
            ok_n = True
        if ok_n:
            ok.append(n)
    return ok


# ---------------------------------------------------------------------------------------------------------------
# scoring one case
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """One (case, method) outcome."""

    case_id: str
    method: str
    metrics: dict = field(default_factory=dict)  # ShapeError.to_dict()
    fit_seconds: float = float("nan")
    eval_seconds: float = float("nan")
    error: str | None = None
    info: dict = field(default_factory=dict)
    settings: str = ""  # fingerprint of the case and method settings (--resume reruns a case whose differ)
    vertex_errors: np.ndarray | None = field(default=None, repr=False)  # [V] mm (not serialised)
    vertices: np.ndarray | None = field(default=None, repr=False)  # [V, 3] aligned prediction (not serialised)

    @property
    def point_to_plane(self) -> float:
        return float(self.metrics.get("point_to_plane_mm", float("nan")))

    @property
    def point_to_point(self) -> float:
        return float(self.metrics.get("point_to_point_mm", float("nan")))

    @property
    def scan_to_mesh_median(self) -> float:
        return float(self.metrics.get("scan_to_mesh_mm", {}).get("median", float("nan")))

    def to_dict(self) -> dict:
        return {"case": self.case_id, "method": self.method, "metrics": self.metrics,
                "fit_seconds": _finite(self.fit_seconds), "eval_seconds": _finite(self.eval_seconds),
                "error": self.error, "info": self.info, "settings": self.settings}

    @staticmethod
    def from_dict(d: dict) -> CaseResult:
        nan = float("nan")
        return CaseResult(d["case"], d["method"], d.get("metrics") or {}, _num(d.get("fit_seconds"), nan),
                          _num(d.get("eval_seconds"), nan), d.get("error"), d.get("info") or {},
                          str(d.get("settings") or ""))


def settings_fingerprint(case, method) -> str:
    """What a (case, method) result depends on besides the code: the method's settings (preset, overrides, loss
    weights, given maps, detector) and the case's (a synthetic case's generation settings and parameters, a real
    case's files), hashed. ``--resume`` reuses a stored result only when this matches, so a rerun at another
    ``--size``, ``--landmark-noise`` or ``--weight`` does not report the old numbers."""
    meta = case.meta or {}
    # a dataclass's repr lists its fields; a plain method object (mean, oracle) is named by its class
    described = repr(method) if is_dataclass(method) else type(method).__qualname__
    what = [described, case.id, jsonsafe.dumps(meta.get("params"), sort_keys=True),
            *(str(getattr(case, k, None)) for k in ("image_path", "landmarks_path", "scan_path", "focal"))]
    return hashlib.sha1("\n".join(what).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _finite(x):
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


def _num(x, default):
    return default if x is None else float(x)


def _landmarks3d(model, vertices: np.ndarray) -> np.ndarray:
    lid = model.landmark_ids.cpu().numpy()
    return np.where((lid >= 0)[:, None], vertices[np.clip(lid, 0, None)], np.nan)


def score(case, pred: Prediction, model) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score a prediction against the case's ground truth -> (metrics dict, vertex errors [V], aligned [V, 3])."""
    gt = case.load_ground_truth()
    plm = _landmarks3d(model, pred.vertices) if len(pred.vertices) == model.n_vertices else None
    if case.protocol == "now":
        if plm is None or gt.landmarks is None:
            raise InputError(f"case {case.id}: the NoW protocol needs landmarks on both meshes")
        ids = list(gt.landmark_ids or NOW_LANDMARKS_68)
        r = now_protocol(pred.vertices, pred.faces, plm[ids], gt.vertices, gt.landmarks,
                         scan_faces=gt.faces if len(gt.faces) else None, nose_tip=gt.nose_tip)
    else:
        p_lm = g_lm = None
        if plm is not None and gt.landmarks is not None and gt.landmark_ids is not None:
            p_lm, g_lm = plm[list(gt.landmark_ids)], gt.landmarks
            ok = np.isfinite(p_lm).all(1) & np.isfinite(g_lm).all(1)
            if ok.sum() < 3:
                p_lm = g_lm = None
        r = micc_protocol(pred.vertices, pred.faces, gt.vertices, gt.faces if len(gt.faces) else None,
                          nose_tip=gt.nose_tip, pred_landmarks=p_lm, gt_landmarks=g_lm)
    return r.to_dict(), r.vertex_errors, r.transform.apply(pred.vertices)


def run_case(case, method_name: str, method, model, keep_arrays: bool = True) -> CaseResult:
    """Run one method on one case and score it; failures become ``CaseResult.error`` (one line)."""
    res = CaseResult(case.id, method_name)
    try:
        pred = method(case, model)
        res.fit_seconds, res.info = float(pred.seconds), dict(pred.info)
        t = time.perf_counter()
        res.metrics, verr, aligned = score(case, pred, model)
        res.eval_seconds = time.perf_counter() - t
        if keep_arrays:
            res.vertex_errors, res.vertices = verr, aligned
    except RedafitError as e:
        res.error = f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - one bad case must not end a benchmark run
        res.error = " ".join(f"{type(e).__name__}: {e}".split())
    return res


# worker-process state for jobs > 1
_WORKER: dict = {}


def _init_worker(model, methods):
    import torch

    torch.set_num_threads(1)
    _WORKER["model"], _WORKER["methods"] = model, methods


def _work(case, method_name, keep_arrays):
    return run_case(case, method_name, _WORKER["methods"][method_name], _WORKER["model"], keep_arrays)


# ---------------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------------
def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", s).strip("_") or "x"


@dataclass
class EvalReport:
    """All results of a run, with summaries and writers."""

    results: list
    methods: list
    dataset: str = ""
    title: str = ""

    def by_method(self, method: str) -> list:
        return [r for r in self.results if r.method == method]

    def summary(self) -> dict:
        """method -> {"n", "failed", "point_to_plane", "point_to_point", "scan_to_mesh_median", "fit_seconds"}
        (each a :func:`~redafit.eval.metrics.summarize` over the cases)."""
        out = {}
        for m in self.methods:
            rs = self.by_method(m)
            ok = [r for r in rs if r.error is None]
            out[m] = {"n": len(ok), "failed": len(rs) - len(ok),
                      "point_to_plane": summarize([r.point_to_plane for r in ok]),
                      "point_to_point": summarize([r.point_to_point for r in ok]),
                      "scan_to_mesh_median": summarize([r.scan_to_mesh_median for r in ok]),
                      "fit_seconds": summarize([r.fit_seconds for r in ok])}
        return out

    def table(self) -> tuple[list, list]:
        """(header, rows) of the summary table: mean ± SD in mm per method, median scan-to-mesh, fit time."""
        header = ["method", "cases", "point-to-plane (mm)", "point-to-point (mm)", "scan-to-mesh median (mm)",
                  "fit (s)", "failed"]
        rows = []
        for m, s in self.summary().items():
            f = lambda d: "n/a" if d["n"] == 0 else f"{d['mean']:.3f} ± {d['std']:.3f}"
            g = lambda d, k="mean", p=3: "n/a" if d["n"] == 0 else f"{d[k]:.{p}f}"
            rows.append([m, str(s["n"]), f(s["point_to_plane"]), f(s["point_to_point"]),
                         g(s["scan_to_mesh_median"], "mean"), g(s["fit_seconds"], "mean", 2), str(s["failed"])])
        return header, rows

    def to_markdown(self) -> str:
        header, rows = self.table()
        lines = []
        if self.title:
            lines += [f"### {self.title}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["case", "method", "point_to_plane_mm", "point_to_point_mm", "scan_to_mesh_mean_mm",
                    "scan_to_mesh_median_mm", "scan_to_mesh_std_mm", "icp_scale", "icp_iterations", "fit_seconds",
                    "eval_seconds", "error"])
        for r in self.results:
            s2m = r.metrics.get("scan_to_mesh_mm", {})
            al = r.metrics.get("alignment", {})
            fmt = lambda x: "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.5g}"
            w.writerow([r.case_id, r.method, fmt(r.metrics.get("point_to_plane_mm")),
                        fmt(r.metrics.get("point_to_point_mm")), fmt(s2m.get("mean")), fmt(s2m.get("median")),
                        fmt(s2m.get("std")), fmt(al.get("transform", {}).get("scale")), al.get("iterations", ""),
                        fmt(r.fit_seconds), fmt(r.eval_seconds), r.error or ""])
        return buf.getvalue()

    def write(self, out_dir) -> None:
        """``summary.md``, ``results.csv`` and ``summary.json`` under ``out_dir`` (per-case JSON is written as the
        run goes, see :func:`run_eval`)."""
        out = make_folder(out_dir)
        with atomic_group():
            for name, text in (("summary.md", self.to_markdown()), ("results.csv", self.to_csv()),
                               ("summary.json", jsonsafe.dumps({"dataset": self.dataset, "summary": self.summary()},
                                                               indent=1))):
                with atomic_write(out / name, "w") as fh:
                    fh.write(text)


def case_json_path(out_dir, method: str, case_id: str) -> Path:
    return Path(out_dir) / "cases" / _slug(method) / f"{_slug(case_id)}.json"


def _write_case_json(out_dir, r: CaseResult) -> None:
    p = case_json_path(out_dir, r.method, r.case_id)
    make_folder(p.parent)
    with atomic_write(p, "w") as fh:
        fh.write(jsonsafe.dumps(r.to_dict(), indent=1))


def run_eval(cases, methods: dict, model, out_dir=None, resume: bool = False, jobs: int = 1,
             heatmaps: int = 3, dataset: str = "", progress=None) -> EvalReport:
    """Run every method on every case and score it.

    ``methods``: name -> method object (see :func:`make_methods`). ``out_dir``: per-case JSON
    (``cases/<method>/<case>.json``, written as each finishes), ``results.csv``, ``summary.md``, ``summary.json``
    and heat maps of the first ``heatmaps`` cases per method (``heatmaps/<method>/<case>.png``). ``resume``:
    cases whose JSON exists are read back instead of run. ``jobs > 1``: a process pool (torch threads 1 per
    worker). ``progress(done, total, result)`` is called after each case.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    cases = list(cases)
    todo, results = [], []
    fingerprints: dict = {}
    stale = 0
    heat_ids = {c.id for c in cases[: max(0, heatmaps)]}
    for m in methods:
        for c in cases:
            fingerprints[(m, c.id)] = settings_fingerprint(c, methods[m])
            if resume and out_dir is not None and case_json_path(out_dir, m, c.id).is_file():
                try:
                    old = CaseResult.from_dict(json.loads(case_json_path(out_dir, m, c.id).read_text()))
                except (ValueError, KeyError):
                    old = None  # unreadable: run it again
                if old is not None and old.settings == fingerprints[(m, c.id)]:
                    results.append(old)
                    continue
                stale += old is not None  # made with other settings: run it again
            todo.append((c, m))
    total, done = len(todo), 0

    if stale:
        log.warning("--resume: %d stored result(s) were made with other settings; running them again", stale)

    def finish(r: CaseResult):
        nonlocal done
        done += 1
        r.settings = fingerprints.get((r.method, r.case_id), "")
        if out_dir is not None:
            _write_case_json(out_dir, r)
            if r.vertex_errors is not None and r.case_id in heat_ids:
                p = Path(out_dir) / "heatmaps" / _slug(r.method) / f"{_slug(r.case_id)}.png"
                write_heatmap(p, r.vertices, model.triangles.cpu().numpy(), r.vertex_errors,
                              title=f"{r.method} {r.case_id}")
        r.vertices = None
        if r.case_id not in heat_ids:
            r.vertex_errors = None
        results.append(r)
        if progress is not None:
            progress(done, total, r)

    if jobs == 1 or total <= 1:
        for c, m in todo:
            finish(run_case(c, m, methods[m], model))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(model, methods)) as ex:
            futs = [ex.submit(_work, c, m, out_dir is not None and c.id in heat_ids) for c, m in todo]
            for f in futs:
                finish(f.result())
    order = {(m, c.id): i for i, (m, c) in enumerate((m, c) for m in methods for c in cases)}
    results.sort(key=lambda r: order.get((r.method, r.case_id), 1 << 30))
    report = EvalReport(results, list(methods), dataset)
    if out_dir is not None:
        report.write(out_dir)
    return report


# ---------------------------------------------------------------------------------------------------------------
# heat maps
# ---------------------------------------------------------------------------------------------------------------
def heatmap_image(vertices: np.ndarray, faces: np.ndarray, errors: np.ndarray, size: int = 384,
                  max_mm: float = HEATMAP_MAX_MM) -> np.ndarray:
    """A frontal orthographic render [size, size + bar, 3] uint8 RGB of the mesh coloured by per-vertex error.

    Painter's algorithm (triangles drawn back to front by mean z; the model frame looks along +z), colour map
    0..``max_mm`` (JET), grey where the error is NaN (outside the crop), with a colour bar.
    """
    import cv2

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    e = np.asarray(errors, np.float64)
    lo, hi = v[:, :2].min(0), v[:, :2].max(0)
    scale = 0.9 * size / max(float((hi - lo).max()), 1e-9)
    xy = (v[:, :2] - (lo + hi) / 2) * scale
    px = np.stack([xy[:, 0] + size / 2, size / 2 - xy[:, 1]], 1)  # y up -> image rows down
    img = np.full((size, size, 3), 255, np.uint8)
    ef = e[f]  # [F, 3]
    cnt = np.isfinite(ef).sum(1)
    fe = np.where(cnt > 0, np.nansum(ef, axis=1) / np.maximum(cnt, 1), np.nan)
    vals = np.clip(np.nan_to_num(fe, nan=0.0) / max_mm, 0, 1)
    cmap = cv2.applyColorMap((vals * 255).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]  # RGB
    # light shading from the normal's z so the shape reads
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    nz = n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
    order = np.argsort(v[f].mean(1)[:, 2])
    pts = np.round(px[f] * 16).astype(np.int32)
    for i in order:
        if nz[i] <= 0:
            continue
        col = (np.array([150, 150, 150]) if not np.isfinite(fe[i]) else cmap[i]) * (0.55 + 0.45 * nz[i])
        cv2.fillConvexPoly(img, pts[i], tuple(int(c) for c in col), lineType=cv2.LINE_8, shift=4)
    bar = np.zeros((size, 48, 3), np.uint8) + 255
    ramp = cv2.applyColorMap(np.linspace(255, 0, size - 40).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, :, ::-1]
    bar[20:size - 20, 6:18] = ramp
    cv2.putText(bar, f"{max_mm:g}", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(bar, "0 mm", (2, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    return np.concatenate([img, bar], 1)


def write_heatmap(path, vertices, faces, errors, title: str = "", max_mm: float = HEATMAP_MAX_MM) -> None:
    import cv2

    img = heatmap_image(vertices, faces, errors, max_mm=max_mm)
    if title:
        cv2.putText(img, title[:60], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    from redafit.io.images import save_image

    make_folder(Path(path).parent)
    save_image(path, img)


def ablation_table(report: EvalReport, ablation: str) -> tuple[list, list]:
    """The paper's table shape: rows = configurations, columns = mean and SD (mm) of both metrics."""
    header = [ablation, "point-to-plane mean", "point-to-plane SD", "point-to-point mean", "point-to-point SD",
              "cases"]
    rows = []
    for m, s in report.summary().items():
        if not m.startswith("full["):
            continue
        a, b = s["point_to_plane"], s["point_to_point"]
        rows.append([m[5:-1], f"{a['mean']:.3f}", f"{a['std']:.3f}", f"{b['mean']:.3f}", f"{b['std']:.3f}",
                     str(s["n"])])
    return header, rows


def markdown_table(header, rows, title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def load_cases(dataset: str, model=None, root=None, manifest=None, n: int = 20, seed: int = 0, size: int = 256,
               landmark_noise: float = 0.0, limit: int | None = None, synthetic_dir=None,
               detail_mm: float = 0.0, shading: str = "physical", highlight: str = "microfacet",
               focal_factor: float | None = None) -> list:
    """Cases of ``dataset`` ("synthetic" or a registered adapter; ``manifest`` overrides), first ``limit`` only.
    ``detail_mm``: synthetic shapes get that much smooth detail outside the model's span
    (:attr:`redafit.eval.synthetic.SyntheticConfig.detail_mm`); ``shading``: how synthetic images are drawn
    (:attr:`~redafit.eval.synthetic.SyntheticConfig.shading`) and their highlight
    (:attr:`~redafit.eval.synthetic.SyntheticConfig.highlight`); ``focal_factor``: their camera's focal length
    over the image side (:attr:`~redafit.eval.synthetic.SyntheticConfig.focal_factor`; None: its default)."""
    if manifest is not None:
        from redafit.eval.datasets import open_dataset

        cases = open_dataset("manifest", manifest=manifest).cases()
    elif dataset == "synthetic":
        from redafit.eval.synthetic import generate_synthetic

        if model is None:
            raise UsageError("the synthetic dataset needs a face model")
        count = n if limit is None else min(n, limit)
        cases = generate_synthetic(model, count, seed=seed, out_dir=synthetic_dir, size=size,
                                   landmark_noise=landmark_noise, detail_mm=detail_mm, shading=shading,
                                   highlight=highlight,
                                   **({} if focal_factor is None else {"focal_factor": focal_factor}))
    else:
        from redafit.eval.datasets import open_dataset

        cases = open_dataset(dataset, root=root).cases()
    return cases[:limit] if limit is not None else cases
