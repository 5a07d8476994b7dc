"""The initialisation network: 68 landmarks of N images -> one identity + per-image expression and pose.

Architecture (after the paper's multi-image encoder, landmarks only): each view's landmarks, normalised per view
(centred on their mean, divided by the inter-ocular distance), go through a shared MLP encoder; the features are
max-pooled across views (order-free, any number of views); an identity head reads the pooled feature; per-view
heads read [view feature, pooled feature] and give the expression coefficients and the pose (yaw, pitch, roll).

Trained by :func:`train_initnet` on :class:`~redafit.rig.synthetic.LandmarkSampler` data from the installed face
model (random identities, expressions and poses, landmark noise, 1..N views per set), deterministic for a seed on
CPU. Saved as ``<model_dir>/<name>/initnet.pt`` (weights) + ``initnet.json`` (config and training report).
The losses are geometric: identity and expression errors are measured on the vertices (mm), pose in degrees.

Shapes: S sets, N views, Ki identity modes, Ke expression modes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from redafit.errors import ModelError
from redafit.io import jsonsafe
from redafit.io.atomic import atomic_group
from redafit.model.store import TRAINED_FILES, load_model, model_dir

log = logging.getLogger("redafit")

WEIGHTS_FILE, CONFIG_FILE = TRAINED_FILES  # beside the installed model; `models install --force` keeps them
N_IN = 136  # 68 x 2


@dataclass(frozen=True)
class InitNetConfig:
    """Network and training settings (documented defaults: ~2-4 minutes on 2 CPU cores)."""

    n_id: int
    n_exp: int
    unit_exp: bool = True  # expression weights in [0, 1] (clamped at inference) or Gaussian
    hidden: int = 256
    feature: int = 256
    views: int = 5  # views per training set (sets use 1..views)
    samples: int = 12000  # training sets
    epochs: int = 20
    batch: int = 256
    lr: float = 2e-3
    noise_iod: float = 0.015  # landmark noise, fraction of the inter-ocular distance
    seed: int = 0
    loss_vertices: int = 500  # vertices the geometric losses are measured on


def normalize_landmarks(lm: torch.Tensor) -> torch.Tensor:
    """[..., 68, 2] px -> [..., 136]: centred on the mean of the known points, divided by the inter-ocular
    distance (eye centres); unknown (NaN) points become 0."""
    ok = torch.isfinite(lm).all(-1, keepdim=True)
    z = torch.where(ok, lm, torch.zeros_like(lm))
    n = ok.sum(-2, keepdim=True).clamp_min(1)
    c = z.sum(-2, keepdim=True) / n
    eye_r = z[..., 36:42, :].mean(-2)
    eye_l = z[..., 42:48, :].mean(-2)
    iod = (eye_r - eye_l).norm(dim=-1).clamp_min(1e-3)[..., None, None]
    out = torch.where(ok, (z - c) / iod, torch.zeros_like(z))
    return out.flatten(-2)


class InitNet(nn.Module):
    """Shared per-view encoder, max pooling across views, identity head, per-view expression/pose heads."""

    def __init__(self, cfg: InitNetConfig):
        super().__init__()
        self.cfg = cfg
        H, F = cfg.hidden, cfg.feature
        # input whitening (PCA of the training landmarks): pose dominates the raw coordinates and the identity
        # signal lies in low-variance directions, which plain gradient descent otherwise hardly reaches
        self.register_buffer("in_mean", torch.zeros(N_IN))
        self.register_buffer("in_whiten", torch.eye(N_IN))
        self.encoder = nn.Sequential(nn.Linear(N_IN, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, F))
        self.id_head = nn.Sequential(nn.ReLU(), nn.Linear(F, H), nn.ReLU(), nn.Linear(H, cfg.n_id))
        self.view_head = nn.Sequential(nn.ReLU(), nn.Linear(2 * F, H), nn.ReLU(), nn.Linear(H, cfg.n_exp + 3))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """x [S, N, 136] normalised landmarks, mask [S, N] bool (views present) ->
        (identity [S, Ki], expression [S, N, Ke], euler [S, N, 3] degrees)."""
        f = self.encoder((x - self.in_mean) @ self.in_whiten)  # [S, N, F]
        if mask is not None:
            pooled = f.masked_fill(~mask[..., None], float("-inf")).max(1).values
        else:
            pooled = f.max(1).values
        idc = self.id_head(pooled)
        v = self.view_head(torch.cat([f, pooled[:, None].expand_as(f)], -1))
        exp = v[..., : self.cfg.n_exp]
        exp = exp.clamp(0.0, 1.0) if (self.cfg.unit_exp and not self.training) else exp
        euler = 30.0 * v[..., self.cfg.n_exp:]
        return idc, exp, euler


@dataclass
class TrainReport:
    seconds: float
    epochs: list = field(default_factory=list)  # per epoch: loss
    heldout: dict = field(default_factory=dict)


def _loss_bases(model, n: int, seed: int):
    g = np.random.default_rng(seed)
    ids = np.sort(g.choice(model.n_vertices, size=min(n, model.n_vertices), replace=False))
    idt = torch.as_tensor(ids)
    return (model.id_basis.detach().cpu()[:, idt].flatten(1), model.exp_basis.detach().cpu()[:, idt].flatten(1))


def _losses(pred, batch, bases, mask):
    idc, exp, euler = pred
    Bid, Bexp = bases
    m = mask.float()
    did = ((idc - batch["identity"]) @ Bid).reshape(idc.shape[0], -1, 3)
    l_id = (did ** 2).sum(-1).mean()  # mm^2
    dex = ((exp - batch["expression"]) @ Bexp).reshape(*exp.shape[:2], -1, 3)
    l_exp = (((dex ** 2).sum(-1).mean(-1)) * m).sum() / m.sum()
    l_pose = ((((euler - batch["euler"]) / 5.0) ** 2).sum(-1) * m).sum() / m.sum()
    return l_id, l_exp, l_pose


def _make_data(model, cfg: InitNetConfig, n_sets: int, seed: int):
    from redafit.rig.synthetic import LandmarkSampler

    sampler = LandmarkSampler(model)
    g = torch.Generator().manual_seed(int(seed))
    chunks = []
    for start in range(0, n_sets, 2048):
        chunks.append(sampler.sample(min(2048, n_sets - start), cfg.views, g, noise_iod=cfg.noise_iod))
    data = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    data["x"] = normalize_landmarks(data.pop("landmarks"))
    # 1..views views per set (the first k are present)
    k = torch.randint(1, cfg.views + 1, (n_sets, 1), generator=g)
    data["mask"] = torch.arange(cfg.views)[None] < k
    return data


def train_initnet(model, cfg: InitNetConfig | None = None, progress=None, **overrides) -> tuple[InitNet, TrainReport]:
    """Train the init network for ``model`` on synthetic landmark sets. Deterministic for ``cfg.seed`` (CPU).

    ``progress(epoch, epochs, loss)`` is called after each epoch.
    """
    from dataclasses import replace

    cfg = cfg or InitNetConfig(n_id=model.n_id, n_exp=model.n_exp,
                               unit_exp=model.info.expression_prior == "unit")
    cfg = replace(cfg, **overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identical results whatever the machine's core count (and no oversubscription)
    try:
        with torch.random.fork_rng(devices=[]):  # seeded here; the caller's generator left as it was
            return _train(load_model(model, "cpu"), cfg, progress)  # on the CPU: a copy, the caller's not moved
    finally:
        torch.set_num_threads(threads)


def _train(model, cfg: InitNetConfig, progress):
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = _make_data(model, cfg, cfg.samples, cfg.seed)
    bases = _loss_bases(model, cfg.loss_vertices, cfg.seed)
    net = InitNet(cfg)
    with torch.no_grad():
        X = data["x"][data["mask"]].double()
        mu = X.mean(0)
        lam, V = torch.linalg.eigh(torch.cov((X - mu).T))
        net.in_mean.copy_(mu.float())
        net.in_whiten.copy_((V / torch.sqrt(lam.clamp_min(0) + 1e-6 * lam.max())).float())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps_per_epoch = max(1, math.ceil(cfg.samples / cfg.batch))
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    report = TrainReport(0.0)
    net.train()
    for ep in range(cfg.epochs):
        perm = torch.randperm(cfg.samples, generator=g)
        tot, n = 0.0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch:(s + 1) * cfg.batch]
            if len(idx) == 0:
                continue
            batch = {k: v[idx] for k, v in data.items()}
            pred = net(batch["x"], batch["mask"])
            l_id, l_exp, l_pose = _losses(pred, batch, bases, batch["mask"])
            loss = l_id / 4.0 + l_exp / 4.0 + l_pose
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        report.epochs.append(round(tot / max(n, 1), 5))
        if progress is not None:
            progress(ep + 1, cfg.epochs, report.epochs[-1])
    net.eval()
    report.heldout = evaluate_initnet(net, model, n_sets=256, seed=cfg.seed + 12345)
    report.seconds = time.perf_counter() - t0
    return net, report


@torch.no_grad()
def evaluate_initnet(net: InitNet, model, n_sets: int = 256, seed: int = 12345, views: int | None = None) -> dict:
    """Held-out synthetic sets: RMS vertex errors (mm) of the predicted identity and expression against the
    mean-face start (all coefficients 0), and the pose error (deg) against a frontal start."""
    cfg = net.cfg
    from dataclasses import replace

    c = replace(cfg, views=views or cfg.views, noise_iod=cfg.noise_iod)
    model = load_model(model, "cpu")  # itself on the CPU, else a copy
    data = _make_data(model, c, n_sets, seed)
    data["mask"][:] = True
    bases = _loss_bases(model, 4000, seed)
    pred = net(data["x"], data["mask"])
    zero = (torch.zeros_like(pred[0]), torch.zeros_like(pred[1]), torch.zeros_like(pred[2]))
    out = {}
    for name, p in (("net", pred), ("mean", zero)):
        l_id, l_exp, l_pose = _losses(p, data, bases, data["mask"])
        out[name] = {"identity_rms_mm": round(float(l_id.sqrt()), 4),
                     "expression_rms_mm": round(float(l_exp.sqrt()), 4),
                     "pose_rms_deg": round(float(l_pose.sqrt() * 5.0 / math.sqrt(3)), 4)}
    return out


# ----------------------------------------------------------------------------------------------------------------
# storage
# ----------------------------------------------------------------------------------------------------------------
def initnet_paths(model_name: str) -> tuple[Path, Path]:
    d = model_dir() / model_name
    return d / WEIGHTS_FILE, d / CONFIG_FILE


@atomic_group()  # weights and config together: --if-missing compares the config with the weights beside it
def save_initnet(net: InitNet, model, report: TrainReport | None = None, folder=None) -> list[Path]:
    """Write the weights and the JSON config next to the installed model (or into ``folder``), atomically."""
    from redafit.io.atomic import atomic_path, atomic_write

    if folder is None:
        wpath, cpath = initnet_paths(model.name)
    else:
        wpath, cpath = Path(folder) / WEIGHTS_FILE, Path(folder) / CONFIG_FILE
    wpath.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(wpath) as tmp:
        torch.save(net.state_dict(), tmp)
    meta = {"model": model.name, "n_vertices": int(model.n_vertices), "config": asdict(net.cfg),
            "expression_names": list(model.expression_names[: net.cfg.n_exp])}
    if report is not None:
        meta["training"] = {"seconds": round(report.seconds, 2), "epoch_loss": report.epochs,
                            "heldout": report.heldout}
    with atomic_write(cpath, "w", encoding="utf-8") as fh:
        jsonsafe.dump(meta, fh, indent=1)
    return [wpath, cpath]


def load_initnet(model, folder=None) -> InitNet | None:
    """The init network saved for ``model`` (None when there is none); raises ModelError when the files exist
    but do not match the model or cannot be read."""
    if folder is None:
        wpath, cpath = initnet_paths(model.name)
    else:
        wpath, cpath = Path(folder) / WEIGHTS_FILE, Path(folder) / CONFIG_FILE
    if not wpath.is_file() or not cpath.is_file():
        return None
    try:
        meta = json.loads(cpath.read_text(encoding="utf-8"))
        cfg = InitNetConfig(**meta["config"])
        state = torch.load(wpath, map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ModelError(f"init network {wpath}: cannot be read ({e}); "
                         "retrain with `redafit models train-init`") from None
    if cfg.n_id != model.n_id or cfg.n_exp != model.n_exp or meta.get("n_vertices") != model.n_vertices:
        raise ModelError(f"init network {wpath} was trained for another model ({cfg.n_id} identity / {cfg.n_exp} "
                         f"expression modes); retrain with `redafit models train-init --model {model.name}`")
    net = InitNet(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"init network {wpath}: weights do not match its config ({e})") from None
    net.eval()
    net.path = wpath
    return net


# ----------------------------------------------------------------------------------------------------------------
# inference -> fit initialisation
# ----------------------------------------------------------------------------------------------------------------
def solve_translation(points: np.ndarray, pixels: np.ndarray, R: np.ndarray, K) -> np.ndarray:
    """Least-squares translation t [3] (mm) such that ``R @ X + t`` projects onto ``pixels`` [N, 2] (linear)."""
    X = np.asarray(points, np.float64) @ np.asarray(R, np.float64).T
    ok = np.isfinite(pixels).all(1) & np.isfinite(X).all(1)
    X, p = X[ok], np.asarray(pixels, np.float64)[ok]
    a = (p[:, 0] - K.cx) / K.fx
    b = (p[:, 1] - K.cy) / K.fy
    # x + tx = a (z + tz);  y + ty = b (z + tz)
    n = len(X)
    A = np.zeros((2 * n, 3))
    rhs = np.zeros(2 * n)
    A[:n, 0], A[:n, 2], rhs[:n] = 1.0, -a, a * X[:, 2] - X[:, 0]
    A[n:, 1], A[n:, 2], rhs[n:] = 1.0, -b, b * X[:, 2] - X[:, 1]
    t, *_ = np.linalg.lstsq(A, rhs, rcond=None)
    return t


def _turned(lm: np.ndarray, a: float) -> np.ndarray:
    """Landmarks [N, 2] turned by ``a`` radians in the image about their centre (unknown points stay NaN)."""
    from redafit.fit.api import about_optical_axis

    if not a:
        return lm
    c = np.nanmean(lm, 0)
    return (lm - c) @ about_optical_axis(a)[:2, :2].T + c


@torch.no_grad()
def predict_init(net: InitNet, landmarks: list, model, intrinsics: list) -> dict:
    """Fit initialisation for :func:`redafit.fit.api.fit_batch` (``init=``) from the images' 68 landmarks:
    {"id" [1, Ki], "exp" [B, Ke], "rot" [B, 3], "trans" [B, 3]} (translation solved for the predicted shape)."""
    from redafit.fit.api import about_optical_axis, steep_roll
    from redafit.render.camera import R_FLIP, euler_to_r, matrix_to_axis_angle, pose_rotation

    # a view rolled past ROLL_GUESS_DEG (a head on its side, upside down: the network trained on rolls within
    # 12 degrees) is shown to the network levelled, and its roll put back into the predicted pose
    rolls = [steep_roll(x) for x in landmarks]
    shown = [_turned(np.asarray(x, np.float64), -a) for x, a in zip(landmarks, rolls)]
    lm = torch.as_tensor(np.stack([np.asarray(x, np.float32) for x in shown]))[None]  # [1, B, 68, 2]
    idc, exp, euler = net(normalize_landmarks(lm))
    idc, exp, euler = idc.float(), exp[0].float(), euler[0].float()
    dev = model.mean.device
    with torch.no_grad():
        verts = model(idc.to(dev).expand(exp.shape[0], -1), exp.to(dev)).cpu().numpy()  # [B, V, 3]
    lid = model.landmark_ids.cpu().numpy()
    rots, trans = [], []
    for b, K in enumerate(intrinsics):
        r = euler_to_r(*(float(a) for a in euler[b]))
        R = pose_rotation(r[None])[0].numpy()
        if rolls[b]:  # the image's roll is a turn about the camera's axis (r: the rotation before the flip)
            R = about_optical_axis(rolls[b]) @ R
            r = matrix_to_axis_angle(torch.as_tensor(R @ R_FLIP.double().numpy().T)).float()
        inner = np.arange(17, 68)
        inner = inner[lid[inner] >= 0]
        t = solve_translation(verts[b][lid[inner]], np.asarray(landmarks[b])[inner], R, K)
        rots.append(r.numpy())
        trans.append(t)
    return {"id": idc.numpy(), "exp": exp.numpy(), "rot": np.stack(rots).astype(np.float32),
            "trans": np.stack(trans).astype(np.float32)}
