"""Writing the textured mesh: ``python -m benchmarks.run outputs``.

Fits Obama's photo once (910 x 1137 px; landmark preset, dlib's landmarks), then writes the textured OBJ (with
the caps' atlas) at each texture size in a fresh process, timing ``save_mesh`` and reading the process's peak
memory; a PLY (vertex colours read from a 512 px texture) and the overlay for comparison, and what ``redafit
view`` does with the 1024 px OBJ (read it, draw three 384 px views, save them), and ``fit --maps`` at the photo's
size and at 4x it each way (3640 x 4548: the face's window, rasterized alone, grows 16-fold). Prints a markdown
table. About a minute on 2 cores.
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
inp, res = pickle.load(open(sys.argv[1], "rb"))
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
    save_maps(sys.argv[2], render_maps(res, model))
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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pk = Path(tmp) / "fit.pkl"
        pk.write_bytes(pickle.dumps((inp, res)))
        obj1024 = Path(tmp) / "face1024.obj"
        for what, name, arg in ([(f"OBJ, texture {s} px", f"face{s}.obj", str(s)) for s in SIZES]
                                + [("PLY, vertex colours", "face.ply", "0"), ("overlay PNG", "ov.png", "overlay"),
                                   ("view PNG (the 1024 px OBJ read, 3 views of 384 px)", "views.png",
                                    f"view:{obj1024}"),
                                   ("--maps (depth, normals, parsing, mask, uv)", "maps", "maps:1"),
                                   ("--maps, the photo 4x larger each way", "maps4", "maps:4")]):
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
