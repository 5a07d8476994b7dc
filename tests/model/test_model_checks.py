"""A face model's arrays are checked against each other when it is loaded: a model file with a truncated basis, NaN,
text, fractional or out-of-range indices is a ModelError (exit 7) naming the file, the array and the expected
against the actual shape, not a crash in the fit. And a bare --model name that exists as a file or folder (but is
no installed model) is taken as that path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from redafit.cli import main
from redafit.errors import ModelError
from redafit.model import store
from redafit.model.store import load_model


@pytest.fixture
def ict_arrays(model_home):
    """The arrays of the ICT model as `redafit models install` writes it (model.npz, native format)."""
    with np.load(model_home / "ict" / "model.npz") as z:
        return {k: z[k] for k in z.files}


def _saved(arrays, path, change):
    """``arrays`` with ``change`` applied (to a copy), saved as the native model file ``path``."""
    d = {k: v.copy() for k, v in arrays.items()}
    change(d)
    np.savez(path, **d)
    return path


def _run(args, model_dir):
    # no -q: it would leave the "redafit" logger at ERROR for the tests after this one (caplog of warnings)
    return CliRunner().invoke(main, list(map(str, args)), env={"REDAFIT_MODEL_DIR": str(model_dir)},
                              catch_exceptions=False)


def test_fit_with_truncated_identity_basis_is_exit_7(ict_arrays, faces_dir, model_home, tmp_path):
    """The audit's case: the identity basis cut to 9000 of the 9409 vertices. `redafit fit` stops at once with one
    line naming the file, the array and both shapes (it was exit 1, "unexpected RuntimeError: shape ... is
    invalid"), and writes nothing."""
    bad = _saved(ict_arrays, tmp_path / "bad.npz", lambda d: d.update(id_basis=d["id_basis"][:, :9000]))
    out = tmp_path / "face.obj"
    res = _run(["fit", faces_dir / "rig_case1" / "sample12_view0.jpg", "--model", bad, "--preset", "landmarks",
                "-o", out], model_home)
    assert res.exit_code == 7, res.output
    assert res.stderr == (f"redafit: error: {bad}: model id_basis: expected shape [*, 9409, 3] (9409 vertices, as "
                          "the mean), got [100, 9000, 3]\n")
    assert not out.exists()


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(exp_basis=d["exp_basis"][:, :100]), "exp_basis: expected shape [*, 9409, 3]"),
    (lambda d: d.update(id_basis=d["id_basis"].reshape(100, -1)[:, :-5]), "id_basis: expected shape"),
    (lambda d: d.update(expression_names=d["expression_names"][:50]), "expression_names: 50 names for the 53"),
    (lambda d: d["mean"].__setitem__((7, 1), np.nan), "mean: contains NaN"),
    (lambda d: d["exp_basis"].__setitem__((3, 7, 1), np.inf), "exp_basis: contains NaN or infinite"),
    (lambda d: d.update(mean=d["mean"].astype(str)), "mean: expected numbers, got text"),
    (lambda d: d.update(triangles=d["triangles"] + 0.5), "triangles: expected whole-number indices"),
    (lambda d: d["triangles"].__setitem__((5, 2), 9409), "triangles: index outside 0..9408"),
    (lambda d: d.update(uv=d["uv"][:, :1]), "uv: expected shape [*, 2]"),
    (lambda d: d.update(uv_triangles=d["uv_triangles"][:100]), "uv_triangles: expected shape [18460, 3]"),
    (lambda d: d["uv_triangles"].__setitem__((0, 0), 10 ** 6), "uv_triangles: index outside 0..9546"),
    (lambda d: d["landmark_ids"].__setitem__(30, 10 ** 6), "landmark_ids: index outside -1..9408"),
    (lambda d: d["contour_left"].__setitem__(0, -1), "contour_left: index outside 0..9408"),
    (lambda d: d.update(albedo_mean=np.full((9409, 3), 0.5, np.float32),
                        albedo_basis=np.zeros((5, 100, 3), np.float32)), "albedo_basis: expected shape"),
    (lambda d: d.update(albedo_mean=np.full((100, 3), 0.5, np.float32),
                        albedo_basis=np.zeros((5, 9409, 3), np.float32)), "albedo_mean: expected shape [9409, 3]"),
], ids=["exp-vertices", "id-flat-cut", "names-short", "mean-nan", "exp-inf", "mean-text", "triangles-fractional",
        "triangles-range", "uv-columns", "uv-triangles-rows", "uv-triangles-range", "landmark-range", "contour-range",
        "albedo-basis", "albedo-mean"])
def test_malformed_model_arrays_are_model_errors(ict_arrays, tmp_path, change, words):
    """Each malformed array of a model file is a ModelError naming the file and the array (what it expected and
    got), raised on load."""
    bad = _saved(ict_arrays, tmp_path / "bad.npz", change)
    with pytest.raises(ModelError) as e:
        load_model(str(bad))
    assert str(e.value).startswith(f"{bad}: model ") and words in str(e.value), str(e.value)
    assert e.value.exit_code == 7


def test_intact_copy_still_loads(ict_arrays, ict_model, tmp_path):
    """The checks refuse nothing the installer writes: an unchanged copy loads as the shared model."""
    m = load_model(str(_saved(ict_arrays, tmp_path / "same.npz", lambda d: None)))
    assert m.summary()["vertices"] == 9409 and m.n_id == 100 and m.n_exp == 53
    assert np.array_equal(m.id_basis.numpy(), ict_model.id_basis.numpy())


def test_bare_name_of_an_existing_path(model_home, tmp_path, monkeypatch):
    """--model NAME for a file or folder NAME in the current folder (and no installed model NAME) is that path:
    an empty folder is "not a face model" (as ./emptydir), a folder holding a model loads; an installed model's
    name still means the installed model, and a name that is neither is still an unknown model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDAFIT_MODEL_DIR", str(model_home))
    store.clear_cache()
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ModelError, match="emptydir: not a face model"):
        load_model("emptydir")
    res = _run(["models", "info", "emptydir"], model_home)
    assert res.exit_code == 7 and "not a face model" in res.stderr and "unknown model" not in res.stderr
    (tmp_path / "mymodel").mkdir()
    shutil.copy(model_home / "ict" / "model.npz", tmp_path / "mymodel" / "model.npz")
    assert load_model("mymodel").n_vertices == 9409
    (tmp_path / "ict").mkdir()  # an empty folder named like the installed model: the installed one is meant
    assert load_model("ict").n_vertices == 9409
    with pytest.raises(ModelError, match="unknown model 'nosuch'"):
        load_model("nosuch")
