"""sagc.optim.make_optimizer: kinds by name, settings validated, the learning rate's source."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sagc.optim import OPTIMIZERS, make_optimizer  # noqa: E402
from sagc.optim.ema_nesterov import EMANesterov  # noqa: E402
from sagc.optim.pion import Pion  # noqa: E402


def test_every_kind_builds_on_a_model(tiny_llama):
    built = {kind: make_optimizer(kind, tiny_llama(), lr=1e-3) for kind in OPTIMIZERS}
    assert isinstance(built["adamw"], torch.optim.AdamW)
    assert isinstance(built["muon"], Pion) and built["muon"].param_groups[0]["spectral"] == "muon"
    assert isinstance(built["pion"], Pion) and built["pion"].param_groups[0]["spectral"] == "pion"
    assert isinstance(built["ema_nesterov"], EMANesterov) and isinstance(built["ema_nesterov"].base,
                                                                          torch.optim.AdamW)


def test_learning_rate_comes_from_settings_else_the_caller(tiny_llama):
    assert make_optimizer({"kind": "pion", "lr": 0.5}, tiny_llama(), lr=1e-3).param_groups[0]["lr"] == 0.5
    assert make_optimizer("pion", tiny_llama(), lr=1e-3).param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="no learning rate"):
        make_optimizer("adamw", tiny_llama())


def test_misses_list_the_valid_names(tiny_llama):
    with pytest.raises(ValueError, match=r"must be one of \['adamw', 'muon', 'pion', 'ema_nesterov'\], got 'sgdd'"):
        make_optimizer("sgdd", tiny_llama(), lr=1e-3)
    with pytest.raises(TypeError, match="pass the model"):
        make_optimizer("pion", list(tiny_llama().parameters()), lr=1e-3)
    assert isinstance(make_optimizer("adamw", list(tiny_llama().parameters()), lr=1e-3), torch.optim.AdamW)
