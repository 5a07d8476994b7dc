"""Dataset adapters on tiny fake datasets written in each layout."""

from __future__ import annotations

import numpy as np
import pytest

from redafit.errors import DatasetError
from redafit.eval.datasets import (
    DATASETS,
    load_mesh,
    open_dataset,
    read_points3d,
    unit_scale,
)
from redafit.eval.metrics import NOW_LANDMARKS_68

TRI_V = np.array([[0.0, 0, 0], [100.0, 0, 0], [0.0, 120, 0], [50.0, 60, 40]])
TRI_F = np.array([[0, 1, 3], [1, 2, 3], [2, 0, 3]])


def _obj(path, v=TRI_V, f=TRI_F, quad=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {a} {b} {c}" for a, b, c in v]
    lines += ["vt 0 0"]
    lines += [f"f {a + 1}/1 {b + 1}/1 {c + 1}/1" for a, b, c in f]
    if quad:
        lines.append("f 1 2 3 4")
    path.write_text("\n".join(lines) + "\n")


def _wrl(path, v=TRI_V, f=TRI_F):
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = ",\n".join(f"{a} {b} {c}" for a, b, c in v)
    idx = ", ".join(f"{a}, {b}, {c}, -1" for a, b, c in f)
    path.write_text("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet {\n coord Coordinate { point [\n"
                    f"{pts}\n ] }}\n coordIndex [ {idx} ]\n }}\n")


def _img(path):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), 128, np.uint8))


def _pts(path):
    rows = "\n".join(f"{10 + i} {20 + i}" for i in range(68))
    path.write_text(f"version: 1\nn_points: 68\n{{\n{rows}\n}}\n")


def _pp(path, pts):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f' <point x="{x}" y="{y}" z="{z}" name="{i}" active="1"/>' for i, (x, y, z) in enumerate(pts))
    path.write_text(f"<!DOCTYPE PickedPoints>\n<PickedPoints>\n <DocumentData>\n  <DataFileName name=\"s.obj\"/>\n"
                    f" </DocumentData>\n{body}\n</PickedPoints>\n")


def test_registry_names():
    assert {"micc", "now", "bu3dfe", "manifest"} <= set(DATASETS)


def test_mesh_readers_and_units(tmp_path):
    _obj(tmp_path / "a.obj", quad=True)
    v, f = load_mesh(tmp_path / "a.obj")
    np.testing.assert_allclose(v, TRI_V)
    assert f.shape == (5, 3)  # 3 triangles + a fan-triangulated quad
    _wrl(tmp_path / "a.wrl")
    v2, f2 = load_mesh(tmp_path / "a.wrl")
    np.testing.assert_allclose(v2, TRI_V)
    np.testing.assert_array_equal(f2, TRI_F)
    assert unit_scale(TRI_V) == 1.0 and unit_scale(TRI_V / 10) == 10.0 and unit_scale(TRI_V / 1000) == 1000.0
    with pytest.raises(DatasetError):
        load_mesh(tmp_path / "missing.obj")
    (tmp_path / "bad.obj").write_text("v 1 2\n")
    with pytest.raises(DatasetError):
        load_mesh(tmp_path / "bad.obj")


def test_micc_layout(tmp_path):
    root = tmp_path / "MICC"
    _obj(root / "subject_01" / "Model" / "frontal1" / "obj" / "scan01.obj")
    _img(root / "subject_01" / "images" / "frame_000.jpg")
    _pts(root / "subject_01" / "images" / "frame_000.pts")
    _img(root / "subject_01" / "images" / "frame_010.jpg")
    (root / "subject_01" / "nose_tip.txt").write_text("50 60 40\n")
    _wrl(root / "subject_02" / "Model" / "frontal1" / "vrml" / "scan02.wrl", v=TRI_V / 10)  # cm
    _img(root / "subject_02" / "Model" / "frontal1" / "vrml" / "scan02.bmp")
    _img(root / "subject_02" / "Model" / "frontal1" / "obj" / "texture.jpg")  # no obj beside it: ignored
    (root / "subject_03").mkdir()  # no scan: skipped
    cases = open_dataset("micc", root=root).cases()
    assert [c.id for c in cases] == ["subject_01/frame_000", "subject_01/frame_010", "subject_02/scan02"]
    assert cases[0].landmarks_path.name == "frame_000.pts" and cases[1].landmarks_path is None
    gt = cases[0].load_ground_truth()
    np.testing.assert_allclose(gt.nose_tip, [50, 60, 40])
    gt2 = cases[2].load_ground_truth()
    np.testing.assert_allclose(gt2.vertices, TRI_V)  # cm -> mm
    assert cases[0].load_image().shape == (8, 8, 3)
    assert cases[0].load_landmarks().shape == (68, 2)


def test_now_layout(tmp_path):
    root = tmp_path / "NoW"
    subj = "FaMoS_180424_03335_TA"
    lm7 = TRI_V[[0, 1, 2, 3, 3, 0, 1]] / 1000.0  # scan in metres
    _obj(root / "scans" / subj / "natural_head_rotation.000001.obj", v=TRI_V / 1000.0)
    _pp(root / "scans_lmks_onlypp" / subj / "natural_head_rotation.000001_picked_points.pp", lm7)
    for ch in ("multiview_neutral", "selfie"):
        _img(root / "iphone_pictures" / subj / ch / "IMG_0001.jpg")
    (root / "imagepathsvalidation.txt").write_text(f"{subj}/multiview_neutral/IMG_0001.jpg\n"
                                                    f"{subj}/selfie/IMG_0001.jpg\n")
    cases = open_dataset("now", root=root).cases()
    assert [c.id for c in cases] == [f"{subj}/multiview_neutral/IMG_0001", f"{subj}/selfie/IMG_0001"]
    assert cases[0].protocol == "now" and cases[0].scan_landmark_ids == NOW_LANDMARKS_68
    gt = cases[0].load_ground_truth()
    np.testing.assert_allclose(gt.vertices, TRI_V, atol=1e-9)  # m -> mm
    np.testing.assert_allclose(gt.landmarks, lm7 * 1000, atol=1e-9)
    np.testing.assert_allclose(gt.nose_tip, lm7[4] * 1000, atol=1e-9)
    only = open_dataset("now", root=root, challenge="selfie").cases()
    assert len(only) == 1
    # without the list file every image is used; a missing folder is an error
    (root / "imagepathsvalidation.txt").unlink()
    assert len(open_dataset("now", root=root).cases()) == 2
    _pp(root / "scans_lmks_onlypp" / subj / "natural_head_rotation.000001_picked_points.pp", lm7[:5])
    with pytest.raises(DatasetError, match="expected 7"):
        open_dataset("now", root=root).cases()
    import shutil

    shutil.rmtree(root / "scans")
    with pytest.raises(DatasetError, match="scans"):
        open_dataset("now", root=root)


def test_bu3dfe_layout(tmp_path):
    root = tmp_path / "BU3DFE"
    for name in ("F0001_NE00WH", "F0001_AN01WH"):
        _wrl(root / "F0001" / f"{name}_F3D.wrl")
        _img(root / "F0001" / f"{name}_F2D.bmp")
        (root / "F0001" / f"{name}_F3D.bnd").write_text("\n".join(f"{i} 1 2 3" for i in range(83)))
    _wrl(root / "M0001" / "M0001_NE00BL_F3D.wrl")  # no image: skipped
    cases = open_dataset("bu3dfe", root=root).cases()
    assert [c.id for c in cases] == ["F0001/F0001_AN01WH", "F0001/F0001_NE00WH"]
    assert [c.id for c in open_dataset("bu3dfe", root=root, expressions=("NE00",)).cases()] == ["F0001/F0001_NE00WH"]
    assert read_points3d(root / "F0001" / "F0001_NE00WH_F3D.bnd").shape == (83, 3)
    assert cases[0].load_ground_truth().faces.shape == (3, 3)


def test_manifest(tmp_path):
    _obj(tmp_path / "m" / "scan.obj")
    _img(tmp_path / "m" / "a.png")
    _pts(tmp_path / "m" / "a.pts")
    _pp(tmp_path / "m" / "lm7.pp", TRI_V[[0, 1, 2, 3, 3, 0, 1]])
    (tmp_path / "cases.csv").write_text(
        "image,scan,landmarks,nose_tip,scan_landmarks,id\n"
        "m/a.png,m/scan.obj,m/a.pts,50 60 40,,first\n"
        f"{tmp_path / 'm' / 'a.png'},m/scan.obj,,,m/lm7.pp,\n")
    cases = open_dataset("micc", manifest=tmp_path / "cases.csv").cases()
    assert [c.id for c in cases] == ["first", "a"]
    np.testing.assert_allclose(cases[0].load_ground_truth().nose_tip, [50, 60, 40])
    assert cases[0].landmarks_path.name == "a.pts"
    assert cases[1].protocol == "now" and cases[1].load_ground_truth().landmarks.shape == (7, 3)
    (tmp_path / "bad.csv").write_text("picture,mesh\nx,y\n")
    with pytest.raises(DatasetError, match="columns image, scan"):
        open_dataset("x", manifest=tmp_path / "bad.csv").cases()
    (tmp_path / "bad2.csv").write_text("image,scan\nm/a.png,m/nothere.obj\n")
    with pytest.raises(DatasetError, match="line 2"):
        open_dataset("x", manifest=tmp_path / "bad2.csv").cases()


def test_manifest_parsing_and_depth_columns(tmp_path):
    """Optional parsing and depth columns name each image's parsing map and depth map (read lazily, resampled to
    the image on request); a named map that is not there is the manifest's error, with its line."""
    import cv2

    from redafit.parsing.maps import save_parsing_map

    _obj(tmp_path / "m" / "scan.obj")
    _img(tmp_path / "m" / "a.png")
    labels = np.zeros((20, 40), np.int64)
    labels[5:15, 10:30] = 1  # skin
    labels[8:10, 14:18] = 10  # nose
    save_parsing_map(tmp_path / "m" / "a_parsing.png", labels)
    depth = np.zeros((20, 40), np.uint16)
    depth[5:15, 10:30] = 612  # mm
    cv2.imwrite(str(tmp_path / "m" / "a_depth.png"), depth)
    (tmp_path / "cases.csv").write_text("image,scan,parsing,depth\nm/a.png,m/scan.obj,m/a_parsing.png,m/a_depth.png\n"
                                        "m/a.png,m/scan.obj,,\n")
    with_map, without = open_dataset("micc", manifest=tmp_path / "cases.csv").cases()
    assert without.load_parsing() is None and without.load_depth() is None
    np.testing.assert_array_equal(with_map.load_depth(), depth.astype(np.float32))
    assert with_map.load_depth(size=(80, 40))[17, 30] == 612
    np.testing.assert_array_equal(with_map.load_parsing(), labels)
    big = with_map.load_parsing(size=(80, 40))
    assert big.shape == (40, 80) and big[17, 30] == 10 and big[0, 0] == 0
    (tmp_path / "bad3.csv").write_text("image,scan,parsing\nm/a.png,m/scan.obj,m/none.png\n")
    with pytest.raises(DatasetError, match="line 2: parsing map not found"):
        open_dataset("x", manifest=tmp_path / "bad3.csv").cases()
    (tmp_path / "bad4.csv").write_text("image,scan,depth\nm/a.png,m/scan.obj,m/none.png\n")
    with pytest.raises(DatasetError, match="line 2: depth map not found"):
        open_dataset("x", manifest=tmp_path / "bad4.csv").cases()


def test_manifest_focal_column(tmp_path):
    """The focal column takes ``redafit fit --focal``'s forms; empty is auto: the photo's EXIF 35 mm-equivalent
    focal length, else the default; a bad one is the manifest's error, with its line."""
    import math

    from tests.conftest import write_jpeg_with_exif

    _obj(tmp_path / "m" / "scan.obj")
    _img(tmp_path / "m" / "a.png")  # 8 x 8
    write_jpeg_with_exif(tmp_path / "m" / "phone.jpg", np.full((20, 40, 3), 128, np.uint8), focal_35mm=26,
                         pixel_size=(40, 20))
    (tmp_path / "cases.csv").write_text("image,scan,focal\nm/a.png,m/scan.obj,26mm\nm/a.png,m/scan.obj,\n"
                                        "m/phone.jpg,m/scan.obj,\nm/phone.jpg,m/scan.obj,1.6x\n"
                                        "m/a.png,m/scan.obj,1000px\n")
    cases = open_dataset("micc", manifest=tmp_path / "cases.csv").cases()
    fx = [c.load_image_camera()[1].fx for c in cases]
    diag = math.hypot(36, 24)
    assert fx == pytest.approx([26 * math.hypot(8, 8) / diag, 12.8, 26 * math.hypot(40, 20) / diag, 64.0, 1000.0])
    (tmp_path / "bad.csv").write_text("image,scan,focal\nm/a.png,m/scan.obj,26\nm/a.png,m/scan.obj,wide\n")
    with pytest.raises(DatasetError, match="line 3: bad focal 'wide'"):
        open_dataset("x", manifest=tmp_path / "bad.csv").cases()


@pytest.mark.parametrize("name", ["micc", "now", "bu3dfe"])
def test_bad_roots(tmp_path, name):
    with pytest.raises(DatasetError) as e:
        open_dataset(name, root=tmp_path / "nope").cases()
    assert e.value.exit_code == 11 and "\n" not in str(e.value)
    with pytest.raises(DatasetError, match=f"--dataset {name} needs --root DIR: the folder of .*cannot download"):
        open_dataset(name).cases()  # no root: what the folder is and that it is not fetched
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError):
        open_dataset(name, root=tmp_path / "empty").cases()
    with pytest.raises(DatasetError):
        open_dataset(name, root=None)


def test_unknown_dataset_and_missing_manifest(tmp_path):
    with pytest.raises(DatasetError):
        open_dataset("lfw", root=tmp_path)
    with pytest.raises(DatasetError):
        open_dataset("micc", manifest=tmp_path / "none.csv")


def test_a_manifest_without_rows_or_columns_says_which(tmp_path):
    """A manifest with its header and no rows said it "needs a header with at least the columns image, scan"."""
    empty, wrong = tmp_path / "empty.csv", tmp_path / "wrong.csv"
    empty.write_text("image,scan\n")
    wrong.write_text("photo,mesh\na.jpg,a.obj\n")
    with pytest.raises(DatasetError, match="no cases"):
        open_dataset("micc", manifest=empty).cases()
    with pytest.raises(DatasetError, match="columns image, scan"):
        open_dataset("micc", manifest=wrong).cases()
