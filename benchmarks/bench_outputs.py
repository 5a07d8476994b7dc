"""Writing the textured mesh: ``python -m benchmarks.run outputs``.

Fits Obama's photo once (910 x 1137 px; landmark preset, dlib's landmarks), then writes the textured OBJ (with
the caps' atlas) at each texture size in a fresh process, timing ``save_mesh`` and reading the process's peak
memory; a PLY (vertex colours read from a 512 px texture) and the overlay for comparison, and what ``redafit
view`` does with the 1024 px OBJ (read it, draw three 384 px views, save them), and ``fit --maps`` at the photo's
size and at 4x it each way (3640 x 4548: the face's window, rasterized alone, grows 16-fold), and the same for a
fast-preset fit, whose maps also split the photo by its lighting. Prints a markdown table. About two minutes on 2
cores.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import FACES, table

WRITE = """
import pickle, resource, sys, time
from redafit.fit.outputs import save_mesh, save_overlay
from redafit.model.store import load_model
model = load_model("ict")
inp, res, lit = pickle.load(open(sys.argv[1], "rb"))
image = inp.image
if sys.argv[3].startswith("lit:"):  # fit --maps of a fit with a lighting: the photo split by it too
    import cv2
    res, k = lit, int(sys.argv[3][4:])
    image = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR) if k > 1 else image
    sys.argv[3] = "maps:" + sys.argv[3][4:]
t0 = time.perf_counter()
if sys.argv[3] == "overlay":
    save_overlay(sys.argv[2], inp.image, res, model)
elif sys.argv[3].startswith("view:"):  # redafit view's work: read an OBJ written above, draw 3 views, save them
    from redafit.io.images import save_image
    from redafit.render.preview import read_view_mesh, render_views
    save_image(sys.argv[2], render_views(read_view_mesh(sys.argv[3][5:]), size=384))
elif sys.argv[3].startswith("maps:"):  # fit --maps; maps:4 - the photo 4x larger each way (the face too)
    import dataclasses
    from redafit.render.maps import render_maps, save_maps
    k, K = int(sys.argv[3][5:]), res.intrinsics
    res = dataclasses.replace(res, intrinsics=K.scaled(K.width * k, K.height * k))
    save_maps(sys.argv[2], render_maps(res, model, image=image if res.lighting_fitted else None))
else:
    save_mesh(sys.argv[2], res, model, inp.image, int(sys.argv[3]))
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
SIZES = (512, 1024, 2048, 4096)


def main(argv=None) -> None:
    from redafit.fit import FitConfig
    from redafit.fit.pipeline import InputOptions, fit_loaded, load_input
    from redafit.model.store import load_model

    model = load_model("ict")
    inp = load_input(FACES / "fr_obama.jpg", None, InputOptions())
    res = fit_loaded(inp, model, FitConfig.preset("landmarks"))
    lit = fit_loaded(inp, model, FitConfig.preset("fast"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pk = Path(tmp) / "fit.pkl"
        pk.write_bytes(pickle.dumps((inp, res, lit)))
        obj1024 = Path(tmp) / "face1024.obj"
        for what, name, arg in ([(f"OBJ, texture {s} px", f"face{s}.obj", str(s)) for s in SIZES]
                                + [("PLY, vertex colours", "face.ply", "0"), ("overlay PNG", "ov.png", "overlay"),
                                   ("view PNG (the 1024 px OBJ read, 3 views of 384 px)", "views.png",
                                    f"view:{obj1024}"),
                                   ("--maps (depth, normals, parsing, mask, uv)", "maps", "maps:1"),
                                   ("--maps, the photo 4x larger each way", "maps4", "maps:4"),
                                   ("--maps of a fast-preset fit (+ albedo, shading, specular)", "lmaps", "lit:1"),
                                   ("the same, the photo 4x larger each way", "lmaps4", "lit:4")]):
            r = subprocess.run([sys.executable, "-c", WRITE, str(pk), str(Path(tmp) / name), arg],
                               capture_output=True, text=True)
            if r.returncode != 0:
                rows.append([what, "failed", r.stderr.strip().splitlines()[-1][:60] if r.stderr.strip() else ""])
                continue
            secs, mb = map(float, r.stdout.split())
            rows.append([what, f"{secs:.2f}", f"{mb:.0f}"])
    print(f"_fr_obama ({inp.image.shape[1]} x {inp.image.shape[0]} px), ICT with caps, one process per row_\n")
    print(table(["output", "write s", "peak process MB"], rows))


if __name__ == "__main__":
    main(sys.argv[1:])
