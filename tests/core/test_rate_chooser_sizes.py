"""auto's rate chooser compares rates at the coming step's G (sagc.rollout.auto._by_size).

SAGC chooses G beside the rate, so a rate's window can hold steps at other sizes (a probe, a
change of G). Before, those steps were pooled into the rate's signal per second: on
long-cot-filled two steps at G = 16 took 10,000 of a rate's 26,000 window seconds and pushed it
from first to below two other rates. These tests drive the chooser by hand: each step is planned at (rate, G), closed with
its own groups only, and observed.
"""

import json

import numpy as np
import pytest

from sagc.rollout import RolloutSettings
from sagc.rollout.auto import RateChooser, _by_size

GRID = (1.0, 2.0)


def _step(ch: RateChooser, step: int, rate: float, g: int, signal_per_s: float, seconds: float) -> None:
    ch.planned(step, rate, g)
    ch.closed(step, [(step, 100.0, 1.0)], [])
    ch.observe(rate, signal_per_s * seconds, seconds, 1.0)


def _chooser() -> RateChooser:
    return RateChooser(RolloutSettings(policy="auto", over_sample_grid=GRID, explore_every=1000))


def test_a_probe_at_another_size_does_not_count_against_its_rate():
    """At G = 4 rate 2 makes 1.2 signal/s and rate 1 makes 1.0; two long steps of rate 2 at
    G = 16 make 0.3. Pooled, rate 2 would read (1.2 x 40 + 0.3 x 120) / 160 = 0.53 and lose;
    compared at G = 4 it is 1.2 and wins."""
    ch = _chooser()
    t = 0
    for _ in range(4):
        _step(ch, t, 1.0, 4, 1.0, 10.0)
        t += 1
    for _ in range(4):
        _step(ch, t, 2.0, 4, 1.2, 10.0)
        t += 1
    for _ in range(2):
        _step(ch, t, 2.0, 16, 0.3, 60.0)
        t += 1
    assert ch.choose(4) == 2.0
    pooled = {r: sum(x[0] for x in ch.history[repr(r)]) / sum(x[1] for x in ch.history[repr(r)]) for r in GRID}
    assert pooled[1.0] > pooled[2.0]  # what the pooled score would have chosen


def test_one_size_is_the_plain_ratio_and_a_shared_size_carries_the_rates_ratio():
    rng = np.random.default_rng(0)
    one = {r: np.column_stack([rng.uniform(5, 15, 6), rng.uniform(8, 12, 6), np.ones(6), np.arange(6), np.full(6, 8)])
           for r in (1.0, 2.0, 4.0)}
    got = _by_size(one, 8)
    for r, h in one.items():
        assert got[r] == pytest.approx(h[:, 0].sum() / h[:, 1].sum())
    # two sizes, every rate at both, signal/s = a[G] x b[rate] exactly: the fit recovers b at the
    # reference size whatever the mix of sizes each rate ran at
    a, b = {4: 1.0, 16: 0.4}, {1.0: 1.0, 2.0: 1.5, 4.0: 1.3}
    rows = {}
    for i, r in enumerate(b):
        secs = {4: 10.0 * (i + 1), 16: 50.0 / (i + 1)}  # unequal mixes per rate
        rows[r] = np.asarray([[a[g] * b[r] * s, s, 1.0, 0.0, g] for g, s in secs.items()])
    got = _by_size(rows, 4)
    for r in b:
        assert got[r] == pytest.approx(b[r], rel=1e-6)
    assert _by_size(rows, 16)[2.0] == pytest.approx(0.4 * 1.5, rel=1e-6)


def test_steps_without_a_size_and_old_states_still_load():
    """Records saved before the size was kept ([signal, seconds, share, step], made as [step,
    rate]) load with G unknown, and compare as one size."""
    ch = _chooser()
    for t in range(6):
        _step(ch, t, GRID[t % 2], 8, 1.0 + 0.5 * (t % 2), 10.0)
    ch.planned(6, 2.0, 8)  # a step still in flight when the checkpoint is taken
    state = json.loads(json.dumps(ch.state_dict()))
    assert all(len(x) == 5 for v in state["history"].values() for x in v)
    assert state["made"][-1] == [6, 2.0, 8]
    again = _chooser()
    again.load_state_dict(state)
    assert again.state_dict() == ch.state_dict()
    old = dict(state, history={k: [x[:4] for x in v] for k, v in state["history"].items()},
               made=[x[:2] for x in state["made"]])
    back = _chooser()
    back.load_state_dict(old)
    assert all(x[4] == -1.0 for v in back.history.values() for x in v)
    assert back.made_g[6] == -1 and set(back.made_g.values()) == {-1}
    assert back.choose(8) == 2.0


def test_a_saved_size_that_is_not_a_whole_number_is_refused_by_name():
    from sagc.rollout import RolloutPolicy

    policy = RolloutPolicy({"policy": "auto", "over_sample_grid": list(GRID)})
    policy.chooser.planned(0, 2.0, 8)
    state = json.loads(json.dumps(policy.state_dict()))
    RolloutPolicy({"policy": "auto", "over_sample_grid": list(GRID)}).load_state_dict(state)
    state["chooser"]["made"][0][2] = "eight"
    with pytest.raises(ValueError, match="chooser.made"):
        RolloutPolicy({"policy": "auto", "over_sample_grid": list(GRID)}).load_state_dict(state)
