"""How much of the photo's lighting the texture keeps: ``fit --texture photo`` against ``--texture albedo``.

Synthetic faces (:mod:`redafit.eval.synthetic`, physically shaded: a directional light with cast shadows, ambient
occlusion, a microfacet highlight, a fine albedo texture; the light differs per face) with a known per-vertex
albedo. Each is fitted with the full preset from its noisy landmarks; the texture written from the fit is read
back at the model's vertices (:func:`redafit.fit.outputs.texture_at_vertices`) and compared with the true albedo
over the face area (:func:`redafit.eval.metrics.albedo_error`: the relative error after the best scale per colour
channel, as a fit's albedo and lighting share a scale): the shading a texture keeps (the lit side brighter, the
shadowed darker) counts in it, the albedo's own variation (brows, lips, the skin's slow changes) does not.
"Seen" vertices face the camera (cosine > 0.3 in the true pose), the "hidden side" ones do not (their texels come
from the mirror image or the fill). ``python -m benchmarks.bench_texture --n 10``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from benchmarks._common import table


def evaluate(case, res, model, size: int = 256) -> dict:
    """{(kind, part): relative error} for the textures of ``res`` (fitted to ``case``), plus ``seconds``."""
    from redafit.eval.metrics import albedo_error
    from redafit.fit.outputs import seen_face_vertices, texture_at_vertices, unwrap_texture
    from redafit.parsing.model_labels import vertex_face_area

    seen = seen_face_vertices(case.meta["vertices_camera"], model)
    face = vertex_face_area(model).cpu().numpy()
    albedo = np.asarray(case.meta["albedo_vertex"], np.float64)
    uv, uvt, tris = model.uv.cpu().numpy(), model.uv_triangles.cpu().numpy(), model.triangles.cpu().numpy()
    out = {}
    for kind in ("photo", "albedo"):
        t0 = time.perf_counter()
        tex = unwrap_texture(case.image, res, model, size, kind=kind)
        out[(kind, "seconds")] = time.perf_counter() - t0
        col = texture_at_vertices(tex, uv, uvt, tris, model.n_vertices).astype(np.float64)
        for part, sel in (("seen", seen), ("hidden side", face & ~seen)):
            if sel.sum() >= 50:
                out[(kind, part)] = albedo_error(col[sel], albedo[sel])
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_texture", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="synthetic faces (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=320, help="image side, px (default 320)")
    ap.add_argument("--shading", default="physical", choices=["physical", "model"])
    args = ap.parse_args(argv)

    from redafit.eval.synthetic import SyntheticConfig, render_case
    from redafit.fit import FitConfig, fit_image
    from redafit.model.store import load_model

    model = load_model("ict")
    cfg = SyntheticConfig(size=args.size, landmark_noise=1.5, shading=args.shading)
    per = {}
    for i in range(args.n):
        case = render_case(model, i, args.seed, cfg)
        res = fit_image(case.image, case.landmarks, model, FitConfig.preset("full"), intrinsics=case.intrinsics)
        for k, v in evaluate(case, res, model).items():
            per.setdefault(k, []).append(v)
        print(f"  {case.id}: photo {per[('photo', 'seen')][-1]:.3f}, albedo {per[('albedo', 'seen')][-1]:.3f}",
              file=sys.stderr, flush=True)

    def cell(k):
        v = per.get(k, [])
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}" if v else "-"

    better = [p > a for p, a in zip(per[("photo", "seen")], per[("albedo", "seen")])]
    print(f"_{args.n} synthetic faces ({args.shading} shading, {args.size} px, seed {args.seed}), full preset from "
          f"landmarks with 1.5 px noise; texture 256 px; relative error against the true albedo (mean ± sd)_\n")
    print(table(["texture", "seen", "hidden side", "unwrap s (256 px)"],
                [["--texture photo (lit as in the photo)", cell(("photo", "seen")), cell(("photo", "hidden side")),
                  f"{statistics.median(per[('photo', 'seconds')]):.2f}"],
                 ["--texture albedo (the fitted shading evened out)", cell(("albedo", "seen")),
                  cell(("albedo", "hidden side")), f"{statistics.median(per[('albedo', 'seconds')]):.2f}"]]))
    print(f"\nalbedo texture closer to the true albedo than the photo texture on the seen face: "
          f"{sum(better)}/{len(better)} faces")
    from benchmarks._common import median_time
    from redafit.fit.outputs import unwrap_atlas
    from redafit.model.caps import hole_caps

    caps = hole_caps(model)
    t = {k: median_time(lambda k=k: unwrap_atlas(case.image, res, model, caps, 1024, kind=k), repeats=3)
         for k in ("photo", "albedo")}
    print(f"\nthe texture as -o writes it (1024 px, with the caps' strip), the last face, median of 3: photo "
          f"{t['photo']:.2f} s, albedo {t['albedo']:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
