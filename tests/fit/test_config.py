"""FitConfig.with_loss_weights / parse_loss_weights (``--weight [STAGE.]TERM=W``)."""

import numpy as np
import pytest

from redafit.errors import UsageError
from redafit.fit import FitConfig
from redafit.fit.config import parse_loss_weights


def test_loss_weights_in_every_stage_or_one():
    base = FitConfig.preset("landmarks")
    cfg = base.with_loss_weights({"id_prior": np.float32(0.5), "rigid.landmarks": 3})
    assert [s.losses.get("id_prior") for s in cfg.stages] == [None, 0.5]
    assert [s.losses["landmarks"] for s in cfg.stages] == [3.0, 1.0]
    assert [s.losses.get("id_prior") for s in base.stages] == [None, 1e-5]  # the original is untouched (frozen)
    assert cfg.stages[1].losses["exp_prior"] == base.stages[1].losses["exp_prior"] and cfg.stages[1].iters == \
        base.stages[1].iters
    assert base.with_loss_weights({}) == base


@pytest.mark.parametrize("weights, says", [
    ({"colour": 1}, "no stage has the term 'colour' (terms: exp_l1, exp_prior, id_prior, landmarks)"),
    ({"rigid.id_prior": 1}, "stage 'rigid' has no term 'id_prior' (terms: landmarks)"),
    ({"attributes.color": 1}, "no stage 'attributes' (stages: rigid, landmarks)"),
    ({"landmarks": -1}, ">= 0"), ({"landmarks": float("inf")}, ">= 0"), ({"landmarks": "x"}, ">= 0"),
])
def test_unknown_terms_stages_and_bad_weights(weights, says):
    with pytest.raises(UsageError) as e:
        FitConfig.preset("landmarks").with_loss_weights(weights)
    assert says in str(e.value) and e.value.exit_code == 2


def test_parse_loss_weights():
    assert parse_loss_weights(["mask=128", " attributes.landmarks = 2e1", "mask=64"]) == \
        {"mask": 64.0, "attributes.landmarks": 20.0}
    assert parse_loss_weights(()) == {}
    for bad in ("mask", "=3", "mask=", "mask=lots", "mask=nan", "mask=-1"):
        with pytest.raises(UsageError):
            parse_loss_weights([bad])
