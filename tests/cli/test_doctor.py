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


def test_doctor_reports_a_broken_model_and_missing_packages(tmp_path, model_home):
    """A damaged model file: the report with a FAIL line naming it, exit 7 (the command stopped with only the
    model's error, no report). Without torch or OpenCV - where doctor is most needed - the whole report, valid
    JSON, exit 8 (it crashed: "unexpected ModuleNotFoundError", exit 1, nothing on stdout)."""
    import os
    import shutil
    import subprocess
    import sys

    bad = tmp_path / "models"
    shutil.copytree(model_home / "ict", bad / "ict")
    (bad / "ict" / "model.npz").write_bytes(b"not a model" * 50)
    res = _doctor({"REDAFIT_MODEL_DIR": str(bad)}, "--json")
    assert res.exit_code == 7, res.output
    checks = {c["name"]: c for c in json.loads(res.output)["checks"]}
    assert not checks["model ict"]["ok"] and "model.npz" in checks["model ict"]["detail"]
    assert "render cpu/torch" not in checks
    for module in ("torch", "cv2"):
        fake = tmp_path / f"without_{module}" / module
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(f"raise ImportError('No module named {module}')\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]),
               "REDAFIT_MODEL_DIR": str(model_home)}
        r = subprocess.run([sys.executable, "-m", "redafit", "doctor", "--json", "--no-render"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 8, r.stderr
        out = json.loads(r.stdout)
        checks = {c["name"]: c for c in out["checks"]}
        name = "torch" if module == "torch" else "OpenCV"
        assert not out["ok"] and not checks[name]["ok"] and "pip install" in checks[name]["detail"]
        assert checks["dlib"]["ok"] and "Traceback" not in r.stderr
