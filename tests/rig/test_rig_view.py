"""`redafit view` of a rig folder: its neutral and the expressions asked for, drawn with the rig's texture."""

from __future__ import annotations

import cv2
import numpy as np

from .conftest import run_cli


def test_view_a_rig_and_its_expressions(small_rig, model_home, tmp_path):
    out = tmp_path / "rig.png"
    res = run_cli(["view", small_rig, "--expressions", "jawOpen, eyeBlink_L", "--yaw", "0", "--size", "96",
                   "-o", out], model_home)
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(out)).astype(np.float32)
    assert img.shape == (3 * 2 * 96, 96, 3)  # neutral, jawOpen, eyeBlink_L; a row of colours and one of shading
    neutral, jaw, blink = (img[k * 192 + 96:(k + 1) * 192] for k in range(3))  # the shaded rows
    jaw_change = np.abs(jaw - neutral).max(-1) > 40
    blink_change = np.abs(blink - neutral).max(-1) > 40
    rows = np.arange(96)[:, None].repeat(96, 1)
    assert jaw_change.sum() > 30 and rows[jaw_change].mean() > 52  # the jaw opens below the face's middle
    assert blink_change.sum() > 3 and rows[blink_change].mean() < rows[jaw_change].mean()  # the lid above it
    textured = img[:96]
    face = np.abs(textured - 0.15 * 255).max(-1) > 6
    assert np.abs(textured[face] - textured[face].mean(0)).mean() > 2  # the rig's texture, not one flat grey


def test_view_rig_errors(small_rig, model_home, tmp_path):
    res = run_cli(["view", small_rig, "--expressions", "smirk", "-o", tmp_path / "v.png"], model_home)
    assert res.exit_code == 3 and "no expression 'smirk'" in res.output
    mesh = tmp_path / "m.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    res = run_cli(["view", mesh, "--expressions", "jawOpen", "-o", tmp_path / "v.png"], model_home)
    assert res.exit_code == 2 and "give a rig folder" in res.output
    res = run_cli(["view", small_rig, "-o", small_rig / "neutral.png"], model_home)  # the rig's own texture
    assert res.exit_code == 2 and "is also the input" in res.output
