"""BFM 2009, BFM 2017 and FLAME loaders on small synthetic files the tests write in each format's real layout;
landmark sidecars; the native format's round trip."""

from __future__ import annotations

import json
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from redafit.errors import ModelError, OutputError
from redafit.model import FaceModel, ModelInfo
from redafit.model.formats import detect_format, load_file
from redafit.model.formats._common import face_normal_z, read_sidecar

from ._synthetic import grid_face, orthonormal_basis


def _np(t):
    return t.detach().cpu().numpy()


# -- BFM 2009 ---------------------------------------------------------------------------------------------------------
def _write_bfm2009(folder, k=5, clockwise=True):
    import scipy.io

    verts_mm, tris = grid_face()
    V = verts_mm.shape[0]
    pc = orthonormal_basis(3 * V, k, seed=1)
    ev = np.linspace(3000.0, 500.0, k)  # standard deviations, micrometres
    tpc = orthonormal_basis(3 * V, k, seed=2)
    tev = np.linspace(20.0, 5.0, k)
    tex = np.tile([200.0, 150.0, 120.0], V)
    tl = (tris[:, [0, 2, 1]] if clockwise else tris) + 1  # MATLAB: 1-based
    d = {"shapeMU": (verts_mm * 1000.0).reshape(-1, 1), "shapePC": pc, "shapeEV": ev.reshape(-1, 1),
         "texMU": tex.reshape(-1, 1), "texPC": tpc, "texEV": tev.reshape(-1, 1), "tl": tl.astype(np.float64)}
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "01_MorphableModel.mat", d)
    return verts_mm, tris, pc, ev, tpc, tev


def test_bfm2009_units_basis_albedo_orientation(tmp_path):
    verts, tris, pc, ev, tpc, tev = _write_bfm2009(tmp_path / "PublicMM1")
    assert detect_format(tmp_path) == "bfm2009"
    m = load_file(tmp_path)
    V = verts.shape[0]
    assert (m.n_vertices, m.n_triangles, m.n_id, m.n_exp) == (V, tris.shape[0], 5, 0)
    np.testing.assert_allclose(_np(m.mean), verts, atol=1e-3)  # micrometres -> millimetres
    np.testing.assert_allclose(_np(m.id_basis[2]).reshape(-1), pc[:, 2] * ev[2] / 1000.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(m.albedo_mean[0]), np.array([200, 150, 120]) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(_np(m.albedo_basis[1]).reshape(-1), tpc[:, 1] * tev[1] / 255.0, rtol=1e-5, atol=1e-7)
    # the file's clockwise (1-based) triangles become 0-based and counter-clockwise from the front
    assert int(m.triangles.min()) == 0 and face_normal_z(_np(m.mean), _np(m.triangles)) > 0
    assert (_np(m.landmark_ids) == -1).all() and not m.has_uv
    assert m.info.units_in_file == "um" and m.info.expression_prior == "gaussian" and "registration" in m.info.licence


def test_bfm2009_landmark_sidecar_and_bad_file(tmp_path):
    import scipy.io

    verts, *_ = _write_bfm2009(tmp_path)
    ids = [i % verts.shape[0] for i in range(68)]
    ids[3] = -1
    (tmp_path / "landmarks.txt").write_text("# 68 vertex ids\n" + "\n".join(map(str, ids)) + "\n")
    m = load_file(tmp_path / "01_MorphableModel.mat")
    np.testing.assert_array_equal(_np(m.landmark_ids), ids)
    assert m.info.extra["landmark_sidecar"].endswith("landmarks.txt")
    scipy.io.savemat(tmp_path / "other.mat", {"shapeMU": np.zeros((6, 1)), "shapePC": np.zeros((6, 1))})
    with pytest.raises(ModelError, match="missing shapeEV, tl"):
        load_file(tmp_path / "other.mat")


# -- BFM 2017 ---------------------------------------------------------------------------------------------------------
def _write_bfm2017(path, k=4, ke=3, with_color=True):
    h5py = pytest.importorskip("h5py")
    verts, tris = grid_face()
    V = verts.shape[0]
    pc, var = orthonormal_basis(3 * V, k, seed=3), np.linspace(16.0, 1.0, k)
    epc, evar = orthonormal_basis(3 * V, ke, seed=4), np.linspace(9.0, 4.0, ke)
    emean = np.full(3 * V, 0.5)
    with h5py.File(path, "w") as f:
        f["shape/model/mean"] = verts.reshape(-1).astype(np.float32)
        f["shape/model/pcaBasis"] = pc.astype(np.float32)
        f["shape/model/pcaVariance"] = var.astype(np.float32)
        f["shape/model/noiseVariance"] = np.float32(0.0)
        f["shape/representer/points"] = verts.T.astype(np.float32)
        f["shape/representer/cells"] = tris.T.astype(np.uint32)
        f["expression/model/mean"] = emean.astype(np.float32)
        f["expression/model/pcaBasis"] = epc.astype(np.float32)
        f["expression/model/pcaVariance"] = evar.astype(np.float32)
        if with_color:
            f["color/model/mean"] = np.full(3 * V, 0.6, np.float32)
            f["color/model/pcaBasis"] = orthonormal_basis(3 * V, 2, seed=5).astype(np.float32)
            f["color/model/pcaVariance"] = np.array([0.01, 0.004], np.float32)
    return verts, tris, pc, var, epc, evar, emean


def test_bfm2017_units_bases_expression_albedo(tmp_path):
    path = tmp_path / "model2017-1_face12_nomouth.h5"
    verts, tris, pc, var, epc, evar, emean = _write_bfm2017(path)
    assert detect_format(path) == "bfm2017" and detect_format(tmp_path) == "bfm2017"
    m = load_file(tmp_path)
    V = verts.shape[0]
    assert (m.n_vertices, m.n_triangles, m.n_id, m.n_exp) == (V, tris.shape[0], 4, 3)
    np.testing.assert_allclose(_np(m.mean), verts + emean.reshape(V, 3), atol=1e-4)  # mm; expression mean added
    np.testing.assert_allclose(_np(m.id_basis[1]).reshape(-1), pc[:, 1] * np.sqrt(var[1]), atol=1e-5)
    np.testing.assert_allclose(_np(m.exp_basis[2]).reshape(-1), epc[:, 2] * np.sqrt(evar[2]), atol=1e-5)
    assert m.has_albedo and m.n_albedo == 2 and np.allclose(_np(m.albedo_mean), 0.6)
    np.testing.assert_array_equal(_np(m.triangles), tris)  # [3, F] cells read as [F, 3], already CCW
    assert m.info.units_in_file == "mm" and m.info.expression_prior == "gaussian"
    assert (_np(m.landmark_ids) == -1).all()


def test_bfm2017_json_sidecar_and_not_bfm(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model2017-1_bfm_nomouth.h5"
    _write_bfm2017(path, with_color=False)
    ids = [5] * 68
    (tmp_path / "model2017-1_bfm_nomouth.landmarks.json").write_text(
        json.dumps({"landmark_ids": ids, "contour_right": [0, 6, 12], "contour_left": [5, 11]}))
    m = load_file(path)
    assert (_np(m.landmark_ids) == 5).all() and _np(m.contour_right).tolist() == [0, 6, 12]
    assert not m.has_albedo
    other = tmp_path / "other" / "x.h5"
    other.parent.mkdir()
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ModelError):
        load_file(other)


# -- FLAME ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_chumpy(monkeypatch):
    """A stand-in ``chumpy.ch.Ch`` class so the test can write a pickle that references chumpy like FLAME's does."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()
            self._itr = None

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch.Ch = Ch
    chumpy.ch = ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
    return Ch


def _write_flame(path, Ch, n_id=300, n_exp=100):
    import scipy.sparse

    verts_mm, tris = grid_face(n=5)
    V = verts_mm.shape[0]
    rng = np.random.default_rng(7)
    shapedirs = rng.normal(scale=1e-3, size=(V, 3, n_id + n_exp))  # metres per unit coefficient
    d = {
        "v_template": Ch(verts_mm / 1000.0),
        "shapedirs": Ch(shapedirs),
        "f": tris.astype(np.uint32),
        "posedirs": Ch(np.zeros((V, 3, 36))),
        "J_regressor": scipy.sparse.csc_matrix(np.eye(5, V)),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": Ch(np.full((V, 5), 0.2)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return verts_mm, tris, shapedirs


def test_flame_without_chumpy(tmp_path, fake_chumpy, monkeypatch):
    path = tmp_path / "generic_model.pkl"
    verts, tris, shapedirs = _write_flame(path, fake_chumpy)
    for mod in ("chumpy", "chumpy.ch"):  # the loader must not need chumpy
        monkeypatch.delitem(sys.modules, mod)
    assert detect_format(path) == "flame" and detect_format(tmp_path) == "flame"
    m = load_file(tmp_path)
    V = verts.shape[0]
    assert (m.n_vertices, m.n_triangles, m.n_id, m.n_exp) == (V, tris.shape[0], 300, 100)
    np.testing.assert_allclose(_np(m.mean), verts, atol=1e-4)  # metres -> millimetres
    np.testing.assert_allclose(_np(m.id_basis[7]), shapedirs[:, :, 7] * 1000.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(m.exp_basis[0]), shapedirs[:, :, 300] * 1000.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_np(m.triangles), tris)
    assert not m.has_uv and (_np(m.landmark_ids) == -1).all()
    assert m.info.units_in_file == "m" and m.info.expression_prior == "gaussian"


def test_flame_texture_sidecar(tmp_path, fake_chumpy):
    _, tris, _ = _write_flame(tmp_path / "flame2020.pkl", fake_chumpy, n_id=10, n_exp=0)
    vt = np.random.default_rng(0).uniform(size=(40, 2))
    ft = np.random.default_rng(1).integers(0, 40, size=tris.shape)
    np.savez(tmp_path / "FLAME_texture.npz", vt=vt, ft=ft)
    m = load_file(tmp_path / "flame2020.pkl")
    assert m.n_id == 10 and m.n_exp == 0
    assert m.uv.shape == (40, 2) and np.array_equal(_np(m.uv_triangles), ft)


def test_flame_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(ModelError, match="refusing"):
        load_file(path)
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}, protocol=2))
    with pytest.raises(ModelError, match="shapedirs"):
        load_file(path)


# -- sidecars ---------------------------------------------------------------------------------------------------------
def test_sidecar_parsing_errors(tmp_path):
    p = tmp_path / "landmarks.txt"
    p.write_text(", ".join(["1"] * 67))
    with pytest.raises(ModelError, match="expected 68"):
        read_sidecar(p, 100)
    p.write_text(" ".join(["100"] * 68))
    with pytest.raises(ModelError, match="outside"):
        read_sidecar(p, 100)
    j = tmp_path / "landmarks.json"
    j.write_text("{not json")
    with pytest.raises(ModelError, match="invalid JSON"):
        read_sidecar(j, 100)
    j.write_text(json.dumps(list(range(68))))
    assert read_sidecar(j, 100)["landmark_ids"].tolist() == list(range(68))


# -- native -----------------------------------------------------------------------------------------------------------
def _small_model(with_albedo=True) -> FaceModel:
    verts, tris = grid_face()
    V = verts.shape[0]
    rng = np.random.default_rng(0)
    return FaceModel(
        mean=verts, id_basis=rng.normal(size=(4, V, 3)), exp_basis=rng.normal(size=(2, V, 3)), triangles=tris,
        uv=rng.uniform(size=(V, 2)), uv_triangles=tris, landmark_ids=np.arange(68) % V - (np.arange(68) > 60),
        contour_right=[0, 1, 2], contour_left=[3, 4], expression_names=["smile", "frown"],
        albedo_mean=np.full((V, 3), 0.5) if with_albedo else None,
        albedo_basis=rng.normal(size=(3, V, 3)) if with_albedo else None,
        info=ModelInfo(name="tiny", source="test", licence="CC0", units_in_file="cm", expression_prior="unit",
                       extra={"k": [1, 2]}),
    )


@pytest.mark.parametrize("with_albedo", [True, False])
def test_native_round_trip(tmp_path, with_albedo):
    from redafit.model.formats import native

    m = _small_model(with_albedo)
    path = native.save(m, tmp_path / "sub" / "tiny.npz")
    assert detect_format(path) == "native" and not list(path.parent.glob("*.tmp"))
    r = load_file(path)
    for name, buf in m.named_buffers():
        assert torch.equal(buf, getattr(r, name)), name
    assert r.expression_names == m.expression_names
    assert (r.info.name, r.info.source, r.info.licence, r.info.units_in_file, r.info.expression_prior) == \
        ("tiny", "test", "CC0", "cm", "unit")
    assert r.info.extra == {"k": [1, 2]} and r.has_albedo == with_albedo


def test_native_round_trip_real_sfm(sfm_model, tmp_path):
    from redafit.model.formats import native

    r = load_file(native.save(sfm_model, tmp_path / "sfm.npz"))
    for name, buf in sfm_model.named_buffers():
        assert torch.equal(buf, getattr(r, name)), name
    assert r.summary() == sfm_model.summary()


def test_native_bad_files(tmp_path):
    from redafit.model.formats import native

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError):
        native.load(bad)
    np.savez(tmp_path / "partial.npz", format=np.array("redafit-face-model-1"), mean=np.zeros((3, 3)))
    with pytest.raises(ModelError, match="lacks"):
        load_file(tmp_path / "partial.npz")
    np.savez(tmp_path / "future.npz", format=np.array("redafit-face-model-9"))
    with pytest.raises(ModelError, match="newer"):
        load_file(tmp_path / "future.npz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        native.save(_small_model(), tmp_path / "file" / "m.npz")
