"""Rig benchmark: identity accuracy of the multi-image rig vs single-image fits, the init network vs the
mean-face start, speed of `rig` (per image) and `track` (per frame), and the rig's texture merged from real photos.

``python -m benchmarks.bench_rig [--sets 8] [--views 5] [--seed 0] [--noise 1.0] [--full-sets 0]
[--track-frames 24] [--model ict]``

Synthetic multi-view sets (:func:`redafit.rig.synthetic.render_multiview`): one random identity, 5 views with their
own expression (0-3 ARKit blendshapes for ICT), yaw spread over ±45°, pitch ±15°, roll ±8°, landmarks with
Gaussian noise of ``--noise`` px (256 px images). Identity error = mean distance (mm) between the predicted and the
true neutral shape (expression 0) over the face vertices within 95 mm of the nose tip, after a similarity
(Umeyama) alignment on those vertices. ``--full-sets N`` also runs the full ReDA preset on N rendered sets (slow on
CPU). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from benchmarks._common import FACES, parse_options, table


def _model(name):
    from benchmarks.bench_eval import _model as load

    return load(name)


def neutral_error(pred: np.ndarray, gt: np.ndarray, model) -> float:
    """Mean vertex distance (mm) on the face region after similarity alignment of pred onto gt."""
    from redafit.eval.alignment import umeyama
    from redafit.eval.metrics import crop_mask

    nose = gt[int(model.landmark_ids[30])]
    keep = crop_mask(gt, nose, 95.0)
    T = umeyama(pred[keep], gt[keep], with_scale=True)
    return float(np.linalg.norm(T.apply(pred[keep]) - gt[keep], axis=1).mean())


def _neutral_of(res, model) -> np.ndarray:
    basis = model.exp_basis.detach().cpu().double().numpy()
    return res.vertices_model.astype(np.float64) - np.tensordot(res.exp_coeffs.astype(np.float64),
                                                                basis[: len(res.exp_coeffs)], 1)


def identity_table(model, sets, cfg, net, label: str):
    from redafit.fit.api import fit_batch
    from redafit.rig.fit import fit_rig

    rows = {"mean face": [], "single-image fits (mean of errors)": [], "single-image fits (averaged shape)": [],
            "rig, 5 images, mean-face start": []}
    if net is not None:
        rows["rig, 5 images, init-network start"] = []
    t_rig, t_single = [], []
    for mv in sets:
        gt = mv.neutral
        rows["mean face"].append(neutral_error(model.mean.cpu().double().numpy(), gt, model))
        t0 = time.perf_counter()
        singles = fit_batch(mv.images, mv.landmarks, model, cfg, mv.intrinsics, shared_id=False)
        t_single.append((time.perf_counter() - t0) / len(mv.images))
        ns = [_neutral_of(r, model) for r in singles]
        rows["single-image fits (mean of errors)"].append(np.mean([neutral_error(n, gt, model) for n in ns]))
        rows["single-image fits (averaged shape)"].append(neutral_error(np.mean(ns, 0), gt, model))
        rig = fit_rig(mv.images, mv.landmarks, model, cfg, mv.intrinsics, init="mean", texture_size=0)
        t_rig.append(rig.seconds / len(mv.images))
        rows["rig, 5 images, mean-face start"].append(neutral_error(rig.neutral, gt, model))
        if net is not None:
            rig = fit_rig(mv.images, mv.landmarks, model, cfg, mv.intrinsics, init=net, texture_size=0)
            rows["rig, 5 images, init-network start"].append(neutral_error(rig.neutral, gt, model))
    out = [[k, f"{np.mean(v):.3f}", f"{np.median(v):.3f}", f"{np.max(v):.3f}"] for k, v in rows.items()]
    print(f"\n### Identity (neutral shape) error, {label}: {len(sets)} sets x {len(sets[0].images)} views (mm)\n")
    print(table(["method", "mean", "median", "max"], out))
    rig_err = np.array(rows["rig, 5 images, mean-face start"])
    wins = np.mean(rig_err < np.array(rows["single-image fits (mean of errors)"]))
    print(f"\nrig better than the mean of single-image fits on {wins:.0%} of the sets; "
          f"time per image: rig {np.mean(t_rig):.3f} s, single fits {np.mean(t_single):.3f} s")
    return rows


def init_table(model, sets, net):
    """Landmark error after the rigid stage (shape as initialised) and after k LM iterations of the landmark stage,
    and the identity error of the start itself, for the network start vs the mean face."""
    from redafit.fit.api import fit_batch
    from redafit.fit.config import FitConfig
    from redafit.rig.initnet import predict_init

    base = FitConfig.preset("landmarks")
    rigid, lmk = base.stages[0], base.stages[1]
    adam = replace(lmk, optimizer="adam", iters=1)
    variants = [("after rigid stage", (rigid,))] + [
        (f"+ landmark stage, {k} LM it.", (rigid, replace(lmk, iters=k))) for k in (1, 3)] + [
        (f"+ landmark stage, {k} Adam it.", (rigid, replace(adam, iters=k))) for k in (25, 100)] + [
        ("full landmark preset (final)", base.stages)]
    rows = []
    starts = [predict_init(net, mv.landmarks, model, mv.intrinsics) for mv in sets]
    id_start = {"mean": [], "net": []}
    for mv, st in zip(sets, starts):
        with __import__("torch").no_grad():
            v = model(__import__("torch").as_tensor(st["id"]))[0].cpu().double().numpy()
        id_start["net"].append(neutral_error(v, mv.neutral, model))
        id_start["mean"].append(neutral_error(model.mean.cpu().double().numpy(), mv.neutral, model))
    rows.append(["identity error of the start (mm)", f"{np.mean(id_start['mean']):.3f}",
                 f"{np.mean(id_start['net']):.3f}"])
    for name, stages in variants:
        cfg = replace(base, stages=tuple(stages))
        err = {"mean": [], "net": []}
        ids = {"mean": [], "net": []}
        for mv, st in zip(sets, starts):
            for key, init in (("mean", None), ("net", st)):
                res = fit_batch(mv.images, mv.landmarks, model, cfg, mv.intrinsics, shared_id=True, init=init)
                err[key].append(np.mean([r.landmark_error_px for r in res]))
                ids[key].append(neutral_error(_neutral_of(res[0], model), mv.neutral, model))
        rows.append([f"{name}: landmark error (px)", f"{np.mean(err['mean']):.3f}", f"{np.mean(err['net']):.3f}"])
        if "final" in name or "rigid" in name:
            rows.append([f"{name}: identity error (mm)", f"{np.mean(ids['mean']):.3f}", f"{np.mean(ids['net']):.3f}"])
    print(f"\n### Init network vs mean-face start ({len(sets)} held-out sets x {len(sets[0].images)} views)\n")
    print(table(["measure", "mean-face start", "init-network start"], rows))


def track_table(model, n_frames: int):
    from redafit.rig.synthetic import render_sequence
    from redafit.rig.track import track

    seq = render_sequence(model, n_frames=n_frames, seed=0, size=256, yaw=40.0)
    frames = [(i, i / 30, im) for i, im in enumerate(seq.images)]
    t0 = time.perf_counter()
    res = track(frames, model, landmarks=seq.landmarks, id_every=10)
    total = time.perf_counter() - t0
    yaw = np.array([r["pose"]["yaw_deg"] for r in res.records])
    det = _detect_time()
    rows = [["track, per frame (fit + share of identity fits)", f"{total / n_frames:.3f}"],
            ["  of which per-frame expression/pose fit", f"{res.timings['fit_s_per_frame']:.3f}"],
            ["  identity fits on the cache (total)",
             f"{res.timings['identity_fit_s_total']:.2f} ({res.identity_fits} fits)"],
            ["dlib landmark detection, per 256 px frame", f"{det:.3f}" if det else "n/a"]]
    print(f"\n### track: {n_frames} synthetic frames (256 px, yaw ±40°; ground-truth landmarks) — seconds\n")
    print(table(["step", "s"], rows))
    err = np.abs(yaw - seq.euler_deg[:, 0])
    print(f"\nyaw tracking error: mean {err.mean():.2f}°, max {err.max():.2f}°; cache yaws "
          f"{', '.join(f'{seq.euler_deg[i, 0]:.0f}' for i in res.cache_frames)}")


def _detect_time():
    try:
        from redafit.io.images import load_image
        from redafit.landmarks import detect_landmarks

        ims = [load_image(p)[0] for p in sorted((FACES / "rig_case1").glob("*.jpg"))]
        detect_landmarks(ims[0])
        t0 = time.perf_counter()
        for im in ims:
            detect_landmarks(im)
        return (time.perf_counter() - t0) / len(ims)
    except Exception:  # noqa: BLE001 - dlib missing: report n/a
        return None


def rig_speed(model, sets):
    from redafit.fit.config import FitConfig
    from redafit.rig.fit import fit_rig

    mv = sets[0]
    cfg = FitConfig.preset("landmarks")
    t0 = time.perf_counter()
    fit_rig(mv.images, mv.landmarks, model, cfg, mv.intrinsics, init="mean", texture_size=0)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_rig(mv.images, mv.landmarks, model, cfg, mv.intrinsics, init="mean", texture_size=1024)
    t_tex = time.perf_counter() - t0
    n = len(mv.images)
    print(f"\n### rig speed ({n} images of 256 px, landmarks preset) — seconds per image\n")
    print(table(["step", "s / image"], [["fit (shared identity)", f"{t_fit / n:.3f}"],
                                         ["fit + merged 1024 px texture", f"{t_tex / n:.3f}"]]))


def texture_merge_table(model, size: int = 1024):
    """The rig's texture merged from the 7 real photos of rig_case1 (dlib landmarks, landmarks preset): its fine
    detail where the lead (most frontal) view sees the face well, against that view's own texture and against the
    views' confidence-weighted mean (the merge before session 27); and the largest colour step between neighbouring
    texels along the switches between views against elsewhere on the well-seen face."""
    import cv2

    from redafit.fit.api import fit_batch
    from redafit.fit.config import FitConfig
    from redafit.fit.outputs import unwrap_texture
    from redafit.io.images import load_image
    from redafit.landmarks import detect_landmarks
    from redafit.rig.fit import LEAD_WEIGHT, MERGE_SHARPNESS, lead_view, merge_textures

    try:
        images = [load_image(p)[0] for p in sorted((FACES / "rig_case1").glob("*.jpg"))]
        landmarks = [detect_landmarks(im) for im in images]
    except Exception as e:  # noqa: BLE001 - dlib missing: no table
        print(f"\n(texture merge table skipped: {e})")
        return
    results = fit_batch(images, landmarks, model, FitConfig.preset("landmarks"), shared_id=True)
    views = [unwrap_texture(im, r, model, size, return_weights=True) for im, r in zip(images, results)]
    t0 = time.perf_counter()
    merged = merge_textures(images, results, model, size)
    t_merge = time.perf_counter() - t0
    lead = lead_view(results, model)
    well = views[lead][1].quality > 0.6
    w = np.stack([np.clip(tw.confidence, 0, 1) ** 2 + 1e-4 for _, tw in views])[..., None]
    mean = (w * np.stack([t for t, _ in views])).sum(0) / w.sum(0)

    def detail(tex):
        grey = cv2.cvtColor(np.ascontiguousarray(tex, np.float32), cv2.COLOR_RGB2GRAY)
        return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[well].mean()) * 1000

    def step(tex):
        down, right = (np.abs(np.diff(tex, axis=a, append=np.take(tex, [-1], axis=a))) for a in (0, 1))
        return np.maximum(down, right).max(-1)

    q = np.stack([cv2.GaussianBlur(tw.quality, (0, 0), size / 256) for _, tw in views]) ** MERGE_SHARPNESS
    q[lead] *= LEAD_WEIGHT
    choice = np.argmax(q, 0)
    seen = np.stack([tw.quality for _, tw in views]).max(0) > 0.5
    switch = np.zeros_like(seen)
    switch[:, 1:] |= choice[:, 1:] != choice[:, :-1]
    switch[1:] |= choice[1:] != choice[:-1]
    switch &= seen
    hard = np.stack([t for t, _ in views])[choice, np.arange(size)[:, None], np.arange(size)[None]]
    print(f"\n### rig texture merge: rig_case1, 7 photos, {size} px texture (dlib landmarks, landmarks preset)\n")
    rows = [[f"the lead view's own texture (view {lead}, the most frontal)", f"{detail(views[lead][0]):.2f}", ""],
            ["merged (session 27: lead view + multi-band blend)", f"{detail(merged):.2f}",
             f"{step(merged)[switch].mean() / step(merged)[seen].mean():.2f}"],
            ["confidence-weighted mean of the views (before)", f"{detail(mean):.2f}", ""],
            ["hard switch between views (no blend)", f"{detail(hard):.2f}",
             f"{step(hard)[switch].mean() / step(hard)[seen].mean():.2f}"]]
    print(table(["texture", "detail (mean abs Laplacian x 1000)", "step at the switches / elsewhere"], rows))
    print(f"\nmerge of the 7 views (unwrapping each included): {t_merge:.1f} s")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench_rig")
    ap.add_argument("--sets", type=int, default=8)
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=1.0, help="landmark noise (px, 256 px images)")
    ap.add_argument("--full-sets", type=int, default=0, help="sets for the full ReDA preset (rendered; slow)")
    ap.add_argument("--track-frames", type=int, default=24)
    ap.add_argument("--model", default="ict")
    args = parse_options(ap, argv, "bench_rig")

    from redafit.fit.config import FitConfig
    from redafit.rig.initnet import load_initnet
    from redafit.rig.synthetic import render_multiview

    model = _model(args.model)
    net = None
    try:
        net = load_initnet(model)
    except Exception as e:  # noqa: BLE001
        print(f"(init network not usable: {e})")
    if net is None:
        print("(no init network installed for this model: run `redafit models train-init`; init rows skipped)")
    sets = [render_multiview(model, args.views, seed=args.seed, index=k, landmark_noise=args.noise, render=False)
            for k in range(args.sets)]
    identity_table(model, sets, FitConfig.preset("landmarks"), net, "landmarks preset")
    if args.full_sets > 0:
        from redafit.cli.fit import build_config

        full = [render_multiview(model, args.views, seed=args.seed + 1, index=k, landmark_noise=0.0)
                for k in range(args.full_sets)]
        full = [replace(mv, landmarks=[lm + np.random.default_rng(k).normal(0, args.noise, lm.shape).astype(np.float32)
                                       for lm in mv.landmarks]) for k, mv in enumerate(full)]
        identity_table(model, full, build_config("full", fit_size=128), net, "full ReDA preset (fit size 128)")
    if net is not None:
        held = [render_multiview(model, args.views, seed=args.seed + 1000, index=k, landmark_noise=args.noise,
                                 render=False) for k in range(args.sets)]
        init_table(model, held, net)
    rig_speed(model, sets)
    texture_merge_table(model)
    track_table(model, args.track_frames)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
