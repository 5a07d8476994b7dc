"""The model store: model_dir, install (--from, downloads through file:// URLs, checksums), load_model and its cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from redafit.errors import ModelError
from redafit.model import store
from redafit.model.store import (
    KNOWN_MODELS,
    RemoteFile,
    install_model,
    load_model,
    model_dir,
)


@pytest.fixture
def mdir(tmp_path, monkeypatch):
    d = tmp_path / "models"
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(d))
    store.clear_cache()
    yield d
    store.clear_cache()


@pytest.fixture(scope="module")
def installed_ict(tmp_path_factory, models_src):
    """ict installed once from the shared folder into a module-wide model dir."""
    d = tmp_path_factory.mktemp("installed")
    old = os.environ.get("REDAFIT_MODEL_DIR")
    os.environ["REDAFIT_MODEL_DIR"] = str(d)
    try:
        path = install_model("ict", src_dir=models_src)
    finally:
        if old is None:
            del os.environ["REDAFIT_MODEL_DIR"]
        else:
            os.environ["REDAFIT_MODEL_DIR"] = old
    return d, path


def test_model_dir_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(tmp_path / "x"))
    assert model_dir() == tmp_path / "x"
    monkeypatch.delenv("REDAFIT_MODEL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert model_dir() == tmp_path / "cache" / "redafit" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_dir() == tmp_path / "home" / ".cache" / "redafit" / "models"


def test_known_models_registry():
    assert set(KNOWN_MODELS) == {"ict", "sfm", "bfm2009", "bfm2017", "flame"}
    assert KNOWN_MODELS["ict"].downloadable and "MIT" in KNOWN_MODELS["ict"].licence
    assert KNOWN_MODELS["sfm"].downloadable and "non-commercial" in KNOWN_MODELS["sfm"].licence
    assert all(len(f.sha256) == 64 for f in KNOWN_MODELS["sfm"].files)
    for name in ("bfm2009", "bfm2017", "flame"):
        assert not KNOWN_MODELS[name].downloadable and "--from" in KNOWN_MODELS[name].install_hint()


def test_install_ict_from_shared(installed_ict, ict_model, monkeypatch):
    d, path = installed_ict
    assert path == d / "ict" / "model.npz" and path.is_file()
    assert sorted(p.name for p in d.iterdir()) == ["ict"]  # no temporary folders left
    info = json.loads((d / "ict" / "info.json").read_text())
    assert info["name"] == "ict" and info["summary"]["vertices"] == 9409 and info["installed_from"].endswith(".npz")
    assert "Permission is hereby granted" in info["licence_text"]
    assert info["model_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(d))
    m = load_model("ict")
    for name, buf in ict_model.named_buffers():
        assert torch.equal(buf, getattr(m, name)), name
    assert m.expression_names == ict_model.expression_names and m.info.name == "ict"
    assert m.info.expression_prior == "unit" and m.info.units_in_file == "cm"


def test_load_model_returns_independent_copies(installed_ict, monkeypatch):
    d, _ = installed_ict
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(d))
    a = load_model("ict")
    b = load_model("ict")
    assert a is not b
    a.mean.add_(1.0)
    a.to(torch.float64)
    assert b.mean.dtype == torch.float32 and not torch.equal(a.mean.float(), b.mean)
    c = load_model("ict", device="cpu")
    assert torch.equal(c.mean, b.mean)
    assert store._load_cached.cache_info().hits >= 2


def test_cache_sees_file_changes(mdir, sfm_model):
    from redafit.model.formats import native

    p = mdir / "custom.npz"
    native.save(sfm_model, p)
    assert load_model(str(p)).n_exp == 6
    small = store.copy_model(sfm_model)
    small.info.name = "changed"
    native.save(small, p)
    os.utime(p, ns=(1, 1))  # make sure the stamp differs even on coarse clocks
    assert load_model(str(p)).info.name == "changed"


def test_missing_models_say_how_to_install(mdir, tmp_path):
    with pytest.raises(ModelError) as e:
        load_model("ict")
    assert str(e.value) == "model 'ict' is not installed; run: redafit models install ict [--from DIR]"
    assert e.value.exit_code == 7
    with pytest.raises(ModelError, match="registration.*--from DIR"):
        load_model("flame")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model("nope")
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "nope.npz"))
    with pytest.raises(ModelError, match="unknown model"):
        install_model("nope")


def test_install_from_paths_and_force(mdir, models_src, tmp_path):
    p = install_model("sfm", src_dir=models_src / "sfm" / "sfm_shape_3448.bin")  # a file works too
    assert load_model("sfm").n_exp == 6
    stamp = p.stat().st_mtime_ns
    assert install_model("sfm", src_dir=models_src) == p and p.stat().st_mtime_ns == stamp  # kept
    install_model("sfm", src_dir=models_src, force=True)
    assert sorted(x.name for x in mdir.iterdir()) == ["sfm"]
    with pytest.raises(ModelError, match="no flame model files"):
        install_model("flame", src_dir=models_src)
    with pytest.raises(ModelError, match="no such file"):
        install_model("sfm", src_dir=tmp_path / "missing", force=True)
    with pytest.raises(ModelError, match="registration required.*--from"):
        install_model("bfm2017")
    assert sorted(x.name for x in mdir.iterdir()) == ["sfm"]  # failures leave nothing behind


def test_force_reinstall_keeps_the_init_network_of_the_same_model(mdir, models_src, caplog):
    """`install --force` from the same source builds the same model.npz: the rig init network trained for it stays
    (it was silently deleted); when the model changed it is removed, with a warning to retrain."""
    import json

    install_model("sfm", src_dir=models_src)
    d = mdir / "sfm"
    (d / "initnet.pt").write_bytes(b"weights")
    (d / "initnet.json").write_text("{}")
    install_model("sfm", src_dir=models_src, force=True)
    assert (d / "initnet.pt").read_bytes() == b"weights" and (d / "initnet.json").is_file()
    info = json.loads((d / "info.json").read_text())
    (d / "info.json").write_text(json.dumps({**info, "model_sha256": "0" * 64}))  # installed from another source
    with caplog.at_level("WARNING", logger="redafit"):
        install_model("sfm", src_dir=models_src, force=True)
    assert not (d / "initnet.pt").exists() and not (d / "initnet.json").exists()
    assert "retrain" in caplog.text and "train-init --model sfm" in caplog.text


def test_install_ict_from_partial_upstream_layout_fails(mdir, models_src):
    with pytest.raises(ModelError, match="missing.*complete ICT-FaceKit"):
        install_model("ict", src_dir=models_src / "ict-face" / "raw")
    assert not (mdir / "ict").exists() and not [p for p in mdir.iterdir()]


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()


def test_install_sfm_by_download(mdir, models_src, monkeypatch):
    k = KNOWN_MODELS["sfm"]
    files = tuple(RemoteFile(_file_url(models_src / "sfm" / f.name), f.sha256, f.name) for f in k.files)
    monkeypatch.setitem(KNOWN_MODELS, "sfm", dataclasses.replace(k, files=files))
    path = install_model("sfm")
    info = json.loads((path.parent / "info.json").read_text())
    assert set(info["sha256"]) == {f.name for f in files}
    m = load_model("sfm")
    assert (m.n_vertices, m.n_id, m.n_exp, int(m.fixed_landmark_mask().sum())) == (3448, 63, 6, 50)


def test_download_checksum_and_failures(mdir, models_src, monkeypatch, tmp_path):
    k = KNOWN_MODELS["sfm"]
    bad = (RemoteFile(_file_url(models_src / "sfm" / "sfm_shape_3448.bin"), "0" * 64, "sfm_shape_3448.bin"),)
    monkeypatch.setitem(KNOWN_MODELS, "sfm", dataclasses.replace(k, files=bad))
    with pytest.raises(ModelError, match="checksum mismatch"):
        install_model("sfm")
    gone = (RemoteFile(_file_url(tmp_path / "gone.bin"), None, "sfm_shape_3448.bin"),)
    monkeypatch.setitem(KNOWN_MODELS, "sfm", dataclasses.replace(k, files=gone))
    with pytest.raises(ModelError, match="cannot download.*--from DIR"):
        install_model("sfm")
    # unpinned files are refused when checksums are required
    unpinned = (RemoteFile(_file_url(models_src / "sfm" / "sfm_shape_3448.bin"), None, "sfm_shape_3448.bin"),)
    monkeypatch.setitem(KNOWN_MODELS, "sfm", dataclasses.replace(k, files=unpinned))
    monkeypatch.setenv("REDAFIT_REQUIRE_CHECKSUM", "1")
    with pytest.raises(ModelError, match="no pinned checksum"):
        install_model("sfm")
    assert not [p for p in mdir.iterdir()]


def test_ict_archive_download_extracts_facexmodel(mdir, models_src, tmp_path, monkeypatch):
    """The ICT path: a GitHub-style zip, only FaceXModel/ (and LICENSE) extracted, converted from the OBJs."""
    raw = models_src / "ict-face" / "raw"
    z = tmp_path / "ICT-FaceKit.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in ("generic_neutral_mesh.obj", "identity000.obj", "jawOpen.obj", "vertex_indices.json"):
            zf.write(raw / f, f"ICT-FaceKit-abc/FaceXModel/{f}")
        zf.write(models_src / "ict-face" / "LICENSE", "ICT-FaceKit-abc/LICENSE")
        zf.writestr("ICT-FaceKit-abc/Scripts/other.py", "print('not extracted')")
    sha = hashlib.sha256(z.read_bytes()).hexdigest()
    k = KNOWN_MODELS["ict"]
    monkeypatch.setitem(KNOWN_MODELS, "ict", dataclasses.replace(
        k, files=(RemoteFile(_file_url(z), sha, "ICT-FaceKit.zip"),)))
    work = tmp_path / "work"
    src, digests = store._fetch(KNOWN_MODELS["ict"], work)
    assert digests == {"ICT-FaceKit.zip": sha}
    assert sorted(p.name for p in src.iterdir()) == ["generic_neutral_mesh.obj", "identity000.obj", "jawOpen.obj",
                                                      "vertex_indices.json"]
    assert (src.parent / "LICENSE").is_file() and not (work / "extracted" / "Scripts").exists()
    # the archive only holds 3 of the 154 shapes: installing refuses an incomplete model
    with pytest.raises(ModelError, match="missing"):
        install_model("ict")
    assert not [p for p in mdir.iterdir()]


def test_install_copies_nothing_outside_model_dir(mdir, models_src):
    before = sorted(p.name for p in models_src.rglob("*"))
    install_model("sfm", src_dir=models_src)
    assert sorted(p.name for p in models_src.rglob("*")) == before
    shutil.rmtree(mdir / "sfm")


def test_load_model_on_device(models_src, device):
    m = load_model(str(models_src / "sfm"), device=device)
    assert all(b.device.type == device.type for b in m.buffers())
    out = m(torch.randn(2, 63, device=device), torch.rand(2, 6, device=device))
    assert out.shape == (2, 3448, 3) and out.device.type == device.type
    back = store.copy_model(m, "cpu")
    assert back.mean.device.type == "cpu"
