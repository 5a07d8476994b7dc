"""`redafit doctor`: what the installation has, and an exit status a setup script can act on."""

import json

from click.testing import CliRunner

from redafit.cli import main


def _doctor(env, *args):
    return CliRunner().invoke(main, ["doctor", *args], env=env, catch_exceptions=False)


def test_doctor_reports_a_working_installation(model_home):
    """With the model installed (no init network in the test's model folder): exit 0, every required check
    passes, the CPU render draws the face; CUDA, nvdiffrast and the init network are optional."""
    res = _doctor({"REDAFIT_MODEL_DIR": str(model_home)}, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    checks = {c["name"]: c for c in out["checks"]}
    assert out["ok"] and all(c["ok"] for c in checks.values() if c["required"])
    assert checks["video (.mp4)"]["ok"] and "3 of 3 frames" in checks["video (.mp4)"]["detail"]
    for name in ("torch", "numpy", "OpenCV", "dlib", "dlib models", "model ict", "render cpu/torch", "CUDA",
                 "nvdiffrast"):
        assert name in checks, name
    assert not checks["CUDA"]["required"] and not checks["nvdiffrast"]["required"]
    assert not checks["rig init network"]["ok"] and "train-init" in checks["rig init network"]["detail"]
    assert "100.00 % agree" in checks["render cpu/torch"]["detail"]
    assert int(checks["render cpu/torch"]["detail"].split()[0]) > 2000  # the face covers a good part of 96 x 96
    text = _doctor({"REDAFIT_MODEL_DIR": str(model_home)}, "--no-render")
    assert text.exit_code == 0 and "redafit is ready" in text.output and "render" not in text.output


def test_doctor_names_what_is_missing(tmp_path, model_home):
    """No face model: exit 7 (a model error) naming the install command; no dlib model files: exit 8."""
    empty = tmp_path / "models"
    empty.mkdir()
    res = _doctor({"REDAFIT_MODEL_DIR": str(empty)})
    assert res.exit_code == 7, res.output
    assert "FAIL  model ict" in res.output and "redafit models install ict" in res.output
    assert "1 required part(s) missing: model ict" in res.output
    res = _doctor({"REDAFIT_MODEL_DIR": str(model_home), "REDAFIT_DLIB_MODELS": str(empty)}, "--no-render")
    assert res.exit_code == 8, res.output
    assert "FAIL  dlib models" in res.output and "shape_predictor_68_face_landmarks.dat" in res.output
