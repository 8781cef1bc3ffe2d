"""EMA-Nesterov: faster than its base on an ill-conditioned quadratic; state round-trips and resumes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sagc.optim import make_optimizer, optimizer_settings  # noqa: E402
from sagc.optim.ema_nesterov import EMANesterov  # noqa: E402

CURVATURE = torch.logspace(0, 2, 20)  # f(x) = 1/2 sum lambda_i x_i^2, condition number 100


def steps_to_threshold(make, wrap: bool, threshold: float = 1e-3, limit: int = 2000) -> int:
    x = torch.nn.Parameter(torch.ones(20))
    opt = make([x])
    if wrap:
        opt = EMANesterov(opt)  # the defaults
    for t in range(limit):
        opt.zero_grad()
        loss = 0.5 * (CURVATURE * x * x).sum()
        if loss.item() < threshold:
            return t
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    return limit


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_wrapped_optimizer_reaches_the_threshold_in_fewer_steps(base):
    make = (lambda ps: torch.optim.SGD(ps, lr=1 / 100)) if base == "sgd" else (lambda ps: torch.optim.Adam(ps, lr=0.01))
    plain, wrapped = steps_to_threshold(make, False), steps_to_threshold(make, True)
    assert plain < 2000  # the base gets there too, just slower
    assert wrapped < 0.75 * plain, (base, plain, wrapped)


def test_update_rule_matches_the_definition():
    # one parameter, SGD base: x_{t+1} = y_t - lr * g(y_t), y_t = x_t + beta m_t,
    # m_{t+1} = gamma m_t + (1 - gamma)(x_{t+1} - x_t); the parameter holds y between steps
    lr, beta, gamma, c = 0.1, 0.5, 0.9, 3.0
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = EMANesterov(torch.optim.SGD([p], lr=lr), beta=beta, gamma=gamma)
    x, m = 1.0, 0.0
    for _ in range(5):
        opt.zero_grad()
        (0.5 * c * p * p).sum().backward()
        opt.step()
        y = x + beta * m
        x_next = y - lr * c * y
        m = gamma * m + (1 - gamma) * (x_next - x)
        x = x_next
        assert p.item() == pytest.approx(x + beta * m, rel=1e-12)
        with opt.iterate():
            assert p.item() == pytest.approx(x, rel=1e-12)
        assert p.item() == pytest.approx(x + beta * m, rel=1e-12)


def _train(model, opt, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=g)
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()


@pytest.mark.parametrize("base", ["adamw", "pion"])
def test_state_dict_round_trips_and_resumes(base, tiny_llama, tmp_path):
    spec = {"kind": "ema_nesterov", "base": {"kind": base}}
    model = tiny_llama()
    opt = make_optimizer(spec, model, lr=1e-3)
    _train(model, opt, 3, seed=1)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    _train(model, opt, 3, seed=2)  # the uninterrupted run

    resumed = tiny_llama(seed=5)  # different init: everything must come from the checkpoint
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    resumed.load_state_dict(saved["model"])
    opt2 = make_optimizer(spec, resumed, lr=1e-3)
    opt2.load_state_dict(saved["opt"])
    assert opt2.steps == 3
    _train(resumed, opt2, 3, seed=2)
    for (n, a), b in zip(model.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, msg=n)


def test_scheduler_and_groups_are_the_base_optimizers():
    p = torch.nn.Parameter(torch.zeros(3))
    base = torch.optim.AdamW([p], lr=1.0)
    opt = EMANesterov(base)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert base.param_groups[0]["lr"] == 0.5 and opt.param_groups is base.param_groups
    p.grad = torch.ones(3)
    opt.step()
    sched.step()
    with pytest.raises(ValueError, match="not an EMANesterov state_dict"):
        opt.load_state_dict(base.state_dict())


def test_settings_are_validated_by_name():
    with pytest.raises(ValueError, match="beta"):
        optimizer_settings({"kind": "ema_nesterov", "beta": 1.0})
    with pytest.raises(ValueError, match="cannot itself be ema_nesterov"):
        optimizer_settings({"kind": "ema_nesterov", "base": {"kind": "ema_nesterov"}})
    with pytest.raises(ValueError, match="PionSettings.scale"):
        optimizer_settings({"kind": "ema_nesterov", "base": {"kind": "pion", "scale": -1}})
    with pytest.raises(ValueError, match="optimizer.kind must be one of .*'adamw', 'muon', 'pion', 'ema_nesterov'"):
        optimizer_settings({"kind": "lion"})
    with pytest.raises(ValueError, match="promotion_steps"):
        optimizer_settings({"kind": "pion", "promotion_steps": 6})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['momentm'\]"):
        optimizer_settings({"kind": "muon", "momentm": 0.9})
