"""Depth maps for RGB-D input (`redafit.io.depth.load_depth`, `fit --depth`): the layouts read, the ones refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from redafit.errors import InputError
from redafit.io.depth import load_depth


def _face_depth() -> np.ndarray:
    """[60, 40] metres: a face ~0.6 m away (a bump of 5 cm), 0 (no measurement) in the corners."""
    y, x = np.mgrid[:60, :40]
    d = 0.6 - 0.05 * np.exp(-((x - 20) ** 2 + (y - 30) ** 2) / 200.0)
    d[:5, :5] = 0
    return d.astype(np.float32)


def test_the_layouts_read_as_millimetres(tmp_path):
    """.npy metres, a 16-bit PNG's millimetres, a grey map stored as a 16-bit colour PNG (every channel alike):
    all read as the same float millimetres, 0 where nothing was measured (a PNG's 65535 too)."""
    d = _face_depth()
    np.save(tmp_path / "m.npy", d)
    np.save(tmp_path / "f64.npy", d.astype(np.float64))
    mm = np.round(d * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "mm.png"), mm)
    cv2.imwrite(str(tmp_path / "grey3.png"), np.repeat(mm[..., None], 3, -1))
    sat = mm.copy()
    sat[:, :25] = 65535  # more than half the frame beyond the sensor's range: no measurement, not 65 m away
    cv2.imwrite(str(tmp_path / "sat.png"), sat)
    assert not load_depth(tmp_path / "sat.png")[:, :25].any()
    ref = load_depth(tmp_path / "m.npy")
    assert ref.dtype == np.float32 and ref[0, 0] == 0 and abs(ref[30, 20] - 550) < 0.01
    assert np.allclose(load_depth(tmp_path / "f64.npy"), ref)
    for name in ("mm.png", "grey3.png"):
        assert np.abs(load_depth(tmp_path / name) - ref).max() <= 0.5


@pytest.mark.parametrize("name, data, says", [
    ("mm.npy", lambda d: d * 1000, "median depth is 592.4 m; a .npy depth map holds metres (a map in mil"),
    ("huge.npy", lambda d: np.full_like(d, 1e30), "median depth is 1e+30 m"),
    ("complex.npy", lambda d: d.astype(np.complex64), "expected a real array in metres, got complex64"),
    ("bool.npy", lambda d: d > 0, "expected a real array in metres, got bool"),
    ("rgb.png", lambda d: np.stack([d * 1000, d * 900, d * 800], -1).astype(np.uint16), "3 channels that differ"),
    ("far.png", lambda d: np.full(d.shape, 30000, np.uint16), "a .png depth map holds whole millimetres"),
])
def test_a_map_in_the_wrong_unit_or_type_is_refused(tmp_path, name, data, says):
    """A map in millimetres saved as .npy (600 m away), a complex or boolean array, a colour 16-bit PNG: each an
    input error (exit 3) naming what is wrong, not a fit pulled towards nonsense."""
    p = tmp_path / name
    arr = data(_face_depth())
    if name.endswith(".npy"):
        np.save(p, arr)
    else:
        cv2.imwrite(str(p), arr)
    with pytest.raises(InputError, match=says.replace("+", r"\+").replace("(", r"\(")) as e:
        load_depth(p)
    assert e.value.exit_code == 3 and "\n" not in str(e.value)
