"""Parsing maps computed outside redafit (``redafit fit --parsing``): reading, checking, and their regions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from redafit.errors import InputError
from redafit.parsing.image import parse_image
from redafit.parsing.maps import find_parsing_map, load_parsing_map, save_parsing_map
from redafit.parsing.regions import REGION_NAMES, fill_polygons, load_region_spec, region_polygons

NAMES = load_region_spec()["network_classes"]["names"]


def _face_map(H=120, W=100):
    """A drawn parsing: skin ellipse, a nose box, lips, hair over the top, neck below."""
    m = np.zeros((H, W), np.uint8)
    cv2.ellipse(m, (50, 60), (30, 40), 0, 0, 360, NAMES.index("skin"), -1)
    m[50:70, 45:55] = NAMES.index("nose")
    m[78:82, 40:60] = NAMES.index("u_lip")
    m[82:86, 40:60] = NAMES.index("l_lip")
    m[15:32, 20:80] = NAMES.index("hair")
    m[55:75, 22:32] = NAMES.index("hair")  # a lock over the cheek
    m[100:, 35:65] = NAMES.index("neck")
    return m


def _landmarks():
    """68 points on the drawn face's outline and features (enough for the face zone and the forehead band)."""
    t = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    jaw = np.stack([50 - 30 * np.cos(t), 60 + 40 * np.sin(t) * 0.9], 1)
    rest = np.stack([np.linspace(30, 70, 51), np.tile(np.linspace(45, 85, 17), 3)], 1)
    return np.concatenate([jaw, rest]).astype(np.float64)


def test_save_load_round_trip_and_resampling(tmp_path):
    m = _face_map()
    save_parsing_map(tmp_path / "p.png", m)
    got = load_parsing_map(tmp_path / "p.png")
    assert got.dtype == np.int64 and np.array_equal(got, m)
    np.save(tmp_path / "p.npy", m.astype(np.int32))
    assert np.array_equal(load_parsing_map(tmp_path / "p.npy"), m)
    # a grey map saved as three equal channels is a label map too
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([m, m, m]))
    assert np.array_equal(load_parsing_map(tmp_path / "rgb.png"), m)
    # registered to a downscaled photo: nearest resampling keeps class ids (no blends between classes)
    half = load_parsing_map(tmp_path / "p.png", size=(50, 60))
    assert half.shape == (60, 50) and set(np.unique(half)) <= set(np.unique(m))
    assert half[30, 25] == m[60, 50]


@pytest.mark.parametrize("case,msg", [
    ("missing", "not found"), ("colour", "colour picture"), ("range", "0..18"), ("aspect", "aspect"),
    ("float", "integer class ids"), ("format", "unsupported format"), ("undecodable", "not a readable image"),
])
def test_bad_parsing_maps_fail_with_one_clear_error(tmp_path, case, msg):
    m = _face_map()
    p = tmp_path / "p.png"
    size = None
    if case == "colour":
        cv2.imwrite(str(p), np.dstack([m, m * 2, m]))
    elif case == "range":
        cv2.imwrite(str(p), m + 19 * (m == NAMES.index("hair")).astype(np.uint8))
    elif case == "aspect":
        save_parsing_map(p, m)
        size = (120, 120)
    elif case == "float":
        p = tmp_path / "p.npy"
        np.save(p, m.astype(np.float32) + 0.5)
    elif case == "format":
        p = tmp_path / "p.jpg"
        p.write_bytes(b"x")
    elif case == "undecodable":
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(InputError, match=msg):
        load_parsing_map(p, size=size)


def test_find_parsing_map_by_stem(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    assert find_parsing_map(tmp_path / "imgs" / "a.jpg", tmp_path) == tmp_path / "a.npy"
    assert find_parsing_map(tmp_path / "imgs" / "b.jpg", tmp_path) == tmp_path / "b.png"
    assert find_parsing_map("x.jpg", tmp_path / "b.png") == tmp_path / "b.png"
    with pytest.raises(InputError, match="no parsing map for c.jpg"):
        find_parsing_map("c.jpg", tmp_path)
    assert find_parsing_map("c.jpg", tmp_path, required=False) is None


def test_given_classes_become_regions_occluders_and_background():
    """A given map is read as a network's output would be: classes map to our regions, hair inside the face zone
    is an occluder (invalid, not skin), the neck is background (valid)."""
    m = _face_map()
    image = np.full(m.shape + (3,), 0.5, np.float32)
    r = parse_image(image, _landmarks(), classes=m)
    idx = r.index
    for cls, region in (("skin", "skin"), ("nose", "nose"), ("u_lip", "upper_lip"), ("l_lip", "lower_lip")):
        sel = (m == NAMES.index(cls)) & r.valid
        assert sel.sum() > 10 and (idx[sel] == REGION_NAMES.index(region)).all(), cls
    hair = m == NAMES.index("hair")
    zone = fill_polygons([region_polygons(_landmarks()).zone], *m.shape)
    assert (hair & zone).sum() > 100 and not r.valid[hair & zone].any()  # hair in the face zone is ignored ...
    assert not r.face_mask[hair].any()  # ... and never forced to skin
    neck = m == NAMES.index("neck")
    assert r.valid[neck].all() and not r.face_mask[neck].any() and (idx[neck] == -1).all()
    assert np.array_equal(r.face_mask, np.isin(m, [NAMES.index(c) for c in ("skin", "nose", "u_lip", "l_lip")]))
    with pytest.raises(InputError, match="like the image"):
        parse_image(image, _landmarks(), classes=m[:-1])
