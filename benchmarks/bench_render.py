"""Rendering benchmark: hard rasterization, ReDA forward, ReDA forward+backward, peak memory (ICT face).

For the ICT face (18k triangles) at 256^2 and 512^2, on CPU and (when available) CUDA, with the torch backend and
nvdiffrast where it imports. The ReDA workload is the full colour + face-region loss: C = 3 (SH-shaded colour) + 7
(region label channels), K = 5 slices, L = 6 levels, gradients w.r.t. pose and per-vertex albedo.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the peak resident set size (VmHWM,
reset through /proc/self/clear_refs) over one forward+backward, measured in a fresh subprocess.

    python -m benchmarks.bench_render [--quick] [--res 256,512] [--repeats N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
N_REGIONS = 7


def load_ict(device="cpu"):
    """(verts [V, 3] mm, tris [F, 3]) of the ICT face: the installed model, else the shared npz."""
    try:
        from redafit.model.store import load_model

        m = load_model("ict")
        return m.mean.to(device), m.triangles.to(device)
    except Exception as e:  # noqa: BLE001 - any failure: fall back to the shared npz
        print(f"(model store unavailable: {e}; reading the shared npz)", file=sys.stderr)
    shared = Path(os.environ.get("REDAFIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
    d = np.load(shared / "models" / "ict-face" / "ict_face.npz")
    scale = 10.0 if str(d["units"]) == "cm" else 1.0
    return (torch.tensor(d["neutral"] * scale, device=device),
            torch.tensor(d["triangles"], dtype=torch.long, device=device))


class Workload:
    """The ICT face at a fixed pose; ``hard()``, ``forward()`` and ``step()`` (forward + backward)."""

    def __init__(self, res: int, device: str, backend: str):
        from redafit.config import RenderConfig
        from redafit.render import pyramid
        from redafit.render.camera import Intrinsics, euler_to_r

        self.device, self.res = torch.device(device), res
        self.verts, self.tris = load_ict(self.device)
        self.verts = self.verts - self.verts.mean(0)
        self.K = Intrinsics.default(res, res)
        self.cfg = RenderConfig(backend=backend)
        V = self.verts.shape[0]
        g = torch.Generator().manual_seed(0)
        self.albedo = (0.4 + 0.4 * torch.rand(1, V, 3, generator=g)).to(self.device).requires_grad_()
        x = self.verts[:, 0]
        edges = torch.quantile(x, torch.linspace(0, 1, N_REGIONS + 1, device=self.device)[1:-1])
        bins = torch.bucketize(x.contiguous(), edges)
        self.labels = torch.nn.functional.one_hot(bins, N_REGIONS).float()  # [V, 7]
        self.r = euler_to_r(8.0, -5.0, 2.0)[None].to(self.device).requires_grad_()
        self.t = torch.tensor([[3.0, 5.0, 600.0]], device=self.device).requires_grad_()
        with torch.no_grad():
            obs = self._render(euler_to_r(0.0, 0.0, 0.0)[None].to(self.device),
                               torch.tensor([[0.0, 0.0, 600.0]], device=self.device)).image
        self.observed = pyramid(obs, self.cfg)

    def _clip(self, r, t):
        from redafit.render.camera import pose_rotation, to_clip, transform

        return to_clip(transform(self.verts[None], pose_rotation(r), t), self.K)

    def _render(self, r, t):
        from redafit.render import soft_render
        from redafit.render.camera import pose_rotation
        from redafit.render.shading import default_sh, shade, vertex_normals

        clip = self._clip(r, t)
        R = pose_rotation(r)
        normals = vertex_normals(self.verts[None] @ R.transpose(-1, -2), self.tris)
        colour = shade(self.albedo, normals, default_sh(1, self.device))
        attrs = torch.cat([colour, self.labels[None]], -1)  # [1, V, 10]
        return soft_render(clip, self.tris, attrs, (self.res, self.res), self.cfg)

    def hard(self):
        from redafit.render import rasterize

        with torch.no_grad():
            return rasterize(self._clip(self.r, self.t), self.tris, (self.res, self.res), self.cfg.backend)

    def forward(self):
        from redafit.render import reda_loss, render_pyramid

        return reda_loss(render_pyramid(self._render(self.r, self.t), self.cfg), self.observed)

    def step(self):
        for p in (self.r, self.t, self.albedo):
            p.grad = None
        loss = self.forward()
        loss.backward()
        return loss


def _time(fn, device, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts), 1e3 * min(ts)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_peak_worker(res: int, backend: str) -> None:
    """Subprocess entry: print the peak RSS growth (MiB) over one (first) forward+backward."""
    w = Workload(res, "cpu", backend)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _status_kb("VmRSS")
    except OSError:
        base = _status_kb("VmHWM")
    w.step()
    print(json.dumps({"peak_mib": max(_status_kb("VmHWM") - base, 0) / 1024}))


def _cpu_peak(res: int, backend: str) -> float | None:
    try:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_render", "--mem-worker", str(res), backend],
                             cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    except Exception as e:  # noqa: BLE001 - report, do not fail the whole benchmark
        print(f"(memory worker failed: {e})", file=sys.stderr)
        return None


def main(argv=None):
    from redafit._runtime import tune_allocator

    tune_allocator()
    ap = argparse.ArgumentParser(prog="bench_render")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 256^2 only")
    ap.add_argument("--res", default="256,512")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: torch's choice; 1 is steadier on a loaded machine)")
    ap.add_argument("--mem-worker", nargs=2, metavar=("RES", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv or [])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mem_worker:
        _cpu_peak_worker(int(args.mem_worker[0]), args.mem_worker[1])
        return
    resolutions = [256] if args.quick else [int(r) for r in args.res.split(",")]
    repeats = 3 if args.quick else args.repeats

    from redafit.render.raster_nvdiffrast import available as nvdr_available

    configs = [("cpu", "torch")]
    if torch.cuda.is_available():
        configs.append(("cuda", "torch"))
        if nvdr_available():
            configs.append(("cuda", "nvdiffrast"))
    verts, tris = load_ict()
    print(f"ICT face: {verts.shape[0]} vertices, {tris.shape[0]} triangles; ReDA K=5, L=6, C=3+{N_REGIONS}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; median (min) of {repeats} runs\n")
    print("| device | backend | res | hard raster ms | ReDA fwd ms | ReDA fwd+bwd ms | peak mem MiB |")
    print("|---|---|---|---|---|---|---|")
    for device, backend in configs:
        dev = torch.device(device)
        for res in resolutions:
            w = Workload(res, device, backend)
            hard = _time(w.hard, dev, repeats)
            with torch.no_grad():
                fwd = _time(w.forward, dev, repeats)
            step = _time(w.step, dev, repeats)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                w.step()
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() / 2 ** 20
            else:
                peak = _cpu_peak(res, backend)
            mem = "n/a" if peak is None else f"{peak:.0f}"
            print(f"| {device} | {backend} | {res}² | {hard[0]:.1f} ({hard[1]:.1f}) | {fwd[0]:.1f} ({fwd[1]:.1f}) | "
                  f"{step[0]:.1f} ({step[1]:.1f}) | {mem} |", flush=True)
    print("\nTargets (2-core CPU, 256²): hard pass <= 15 ms, ReDA colour+mask forward+backward <= 80 ms; "
          "one H100: <= 2 ms forward+backward.")


if __name__ == "__main__":
    main(sys.argv[1:])
