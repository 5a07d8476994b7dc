"""Fixtures for the rig tests: the ICT model installed into a temporary model folder, rig_case1 photos with
their dlib landmarks (detected once per session, stored as .npy landmark files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def env_models(use_models):
    """REDAFIT_MODEL_DIR pointing at the session's model folder (tests/conftest.py)."""
    return use_models


@pytest.fixture(scope="session")
def ict(model_home):
    from redafit.model.store import load_model

    return load_model(str(model_home / "ict" / "model.npz"))


@pytest.fixture(scope="session")
def rig_case1(faces_dir, tmp_path_factory):
    """(image paths [7], landmark folder) for ../shared/data/faces/rig_case1 (dlib landmarks as .npy)."""
    pytest.importorskip("dlib")
    from redafit.io.images import load_image
    from redafit.landmarks import detect_landmarks

    images = sorted((faces_dir / "rig_case1").glob("*.jpg"))
    assert len(images) == 7
    lm_dir = tmp_path_factory.mktemp("rig_case1_lms")
    for p in images:
        lm = detect_landmarks(load_image(p)[0])
        np.save(lm_dir / f"{p.stem}.npy", np.asarray(lm, np.float32))
    return images, lm_dir


def class_map_of(image_path, landmarks_path) -> np.ndarray:
    """A parsing map (CelebAMask-HQ class ids) of a photo as a network might give it: the photo's own landmark +
    skin parsing, its regions written as the network's classes."""
    from redafit.io.images import load_image
    from redafit.parsing.image import parse_image
    from redafit.parsing.regions import load_region_spec

    names = load_region_spec()["network_classes"]["names"]
    cls_of_region = np.array([names.index(k) for k in ("skin", "l_brow", "l_eye", "nose", "u_lip", "l_lip", "mouth")])
    idx = parse_image(load_image(image_path)[0], np.load(landmarks_path)).index
    return np.where(idx >= 0, cls_of_region[np.clip(idx, 0, None)], 0)


def run_cli(args, env_dir: Path | None = None, quiet: bool = True):
    """``redafit [-q] args`` in-process; without ``quiet`` its warnings reach the ``redafit`` logger (caplog)."""
    from click.testing import CliRunner

    from redafit.cli import main

    runner = CliRunner()
    env = {"REDAFIT_MODEL_DIR": str(env_dir)} if env_dir else None
    return runner.invoke(main, ["-q"] * quiet + [*map(str, args)], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def small_rig(ict, tmp_path_factory):
    """A rig folder fitted to two synthetic views (landmarks preset, 64 px texture): what retarget drives."""
    from redafit.fit.config import FitConfig
    from redafit.rig.fit import fit_rig, save_rig
    from redafit.rig.synthetic import render_multiview

    mv = render_multiview(ict, n_views=2, seed=3, render=False)
    rig = fit_rig(mv.images, mv.landmarks, ict, FitConfig.preset("landmarks"), mv.intrinsics, init="mean",
                  texture_size=64)
    out = tmp_path_factory.mktemp("rig") / "rig"
    save_rig(rig, out)
    return out


def worn_texture(mesh: Path) -> Path:
    """The texture file a viewer finds for ``mesh``, as it finds it: an OBJ's ``mtllib``, then that MTL's
    ``map_Kd``; a PLY's ``comment TextureFile``; each relative to the file that names it."""
    from redafit.io.meshes import read_obj

    if mesh.suffix == ".obj":
        mtl = mesh.parent / read_obj(mesh).mtllib
        name = next(ln.split()[1] for ln in mtl.read_text().splitlines() if ln.startswith("map_Kd "))
        return mtl.parent / name
    header = mesh.read_bytes().split(b"end_header")[0].decode()
    return mesh.parent / next(ln.split()[2] for ln in header.splitlines() if ln.startswith("comment TextureFile "))
