"""Fit eos (Surrey Face Model, 63 shape modes + 6 expression blendshapes) to landmark files and time it.

Run by ``benchmarks/bench_fit.py`` inside a separate virtual environment that has ``eos-py`` (only the
benchmark needs it). Usage: ``python eos_runner.py SFM_DIR REPEATS IMAGE_W,IMAGE_H,PTS ...``; prints JSON.
"""

import json
import sys
import time

import numpy as np


def main():
    import eos

    sfm, repeats = sys.argv[1], int(sys.argv[2])
    model = eos.morphablemodel.load_model(f"{sfm}/sfm_shape_3448.bin")
    blend = eos.morphablemodel.load_blendshapes(f"{sfm}/expression_blendshapes_3448.bin")
    mm = eos.morphablemodel.MorphableModel(model.get_shape_model(), blend, color_model=eos.morphablemodel.PcaModel(),
                                           vertex_definitions=None,
                                           texture_coordinates=model.get_texture_coordinates())
    mapper = eos.core.LandmarkMapper(f"{sfm}/ibug_to_sfm.txt")
    edges = eos.morphablemodel.load_edge_topology(f"{sfm}/sfm_3448_edge_topology.json")
    contour = eos.fitting.ContourLandmarks.load(f"{sfm}/ibug_to_sfm.txt")
    mcontour = eos.fitting.ModelContour.load(f"{sfm}/sfm_model_contours.json")
    out = []
    for spec in sys.argv[3:]:
        w, h, pts = spec.split(",", 2)
        w, h = int(w), int(h)
        txt = open(pts).read()
        xy = np.array([[float(v) for v in ln.split()] for ln in txt[txt.index("{") + 1:txt.index("}")].split("\n")
                       if ln.strip()])
        lms = [eos.core.Landmark(str(i + 1), [float(x), float(y)]) for i, (x, y) in enumerate(xy)]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            mesh, pose, shape, expr = eos.fitting.fit_shape_and_pose(mm, lms, mapper, w, h, edges, contour, mcontour)
            times.append(time.perf_counter() - t0)
        # landmark error of the fixed (non-contour) mapped points
        V = np.asarray(mesh.vertices)
        P = np.asarray(pose.get_projection()) @ np.asarray(pose.get_modelview())
        errs = []
        for i, (x, y) in enumerate(xy):
            vid = mapper.convert(str(i + 1))
            if vid is None:
                continue
            p = P @ np.append(V[int(vid)], 1.0)
            u = (p[0] / p[3] + 1) * w / 2
            v = h - (p[1] / p[3] + 1) * h / 2
            errs.append(np.hypot(u - x, v - y))
        out.append({"pts": pts, "times": times, "mean_error_px_fixed_points": float(np.mean(errs))})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
