"""The default SAGC (issue 9): tail rule, goodput objective, signal utility, delta="auto", no collapse.

Checked against Monte Carlo truth and against every static G on the same steps:
- the tail rule's risk model is calibrated after 50 steps, including sizes never used;
- a user-set delta with a feasible size holds (goodput objective, tail rule);
- an infeasible delta does not collapse G: goodput stays near the best static G, the warning
  fires once and every such decision is flagged.
"""

import warnings

import numpy as np
import pytest

import sagc
from sagc.controllers.sagc import InfeasibleBudgetWarning
from sagc.rules import tail_share
from sagc.sim import load_scenario, run_scenario, true_event_prob
from sagc.sim.runner import iter_steps

TAIL = {"rule": "tail", "tail_share": 0.5, "tail_quantile": 0.9}


def with_tail_rule(name, **changes):
    """A shipped scenario scored by the tail rule (the shipped new-suite scenarios already are)."""
    return load_scenario(name).replace(straggler=TAIL, **changes)


def test_tail_share_figure_and_event():
    assert tail_share(np.array([10, 10, 10, 10, 10, 10, 10, 10, 10, 40]), 0.9) == pytest.approx(0.75)
    assert tail_share(np.full(20, 7), 0.9) == 0.0
    rule = sagc.rules.make_rule({"rule": "tail", "tail_share": 0.5})
    state = rule.init_state()
    def step(lengths):
        return sagc.StepStats(group_id=np.repeat([0, 1], 5), length=lengths, reward=np.zeros(10),
                              truncated=np.zeros(10, dtype=bool), group_size=5)
    long_tail, even = step([10] * 9 + [40]), step([10] * 9 + [15])
    assert rule.observe(long_tail, state)[0] is True
    assert rule.observe(even, state)[0] is False


def test_default_is_time_aware_tail_rule_auto_budget():
    s = sagc.make("sagc").settings
    assert (s.objective, s.utility, s.delta, s.straggler.rule) == ("goodput", "signal", "auto", "tail")


# Measured misses, kept as strict xfails so a fix shows (docs/benchmarks.md has the figures):
RARE_RUNAWAYS = ("heavy-tail: its 0.02% runaways (worth +0.03 at G=16, +0.05 at G=32) are rarely seen in "
                 "50 steps, and its Pareto tail scale is known to about 5% from ~300 peaks: G=16 0.35 vs 0.41")
KNIFE_EDGE = ("code-heavy-tail: 2 x q90 sits at the 300-token cap, so P(event) moves 0.06 per 3% of q90, "
              "and 50 steps pin the step's q90 to about 3%: G=8 0.58 vs 0.47")


@pytest.mark.parametrize("name", ["light-tail", "prompt-correlated", "near-constant", "long-cot",
                                  pytest.param("heavy-tail", marks=pytest.mark.xfail(strict=True, reason=RARE_RUNAWAYS)),
                                  pytest.param("code-heavy-tail", marks=pytest.mark.xfail(strict=True, reason=KNIFE_EDGE))])
def test_tail_risk_calibrated_after_50_steps(name):
    sc = with_tail_rule(name)
    ctrl = sagc.make("sagc")
    used = {sr.decision.group_size for sr in iter_steps(sc, ctrl, steps=50)}
    decision = ctrl.decide(sc.group_sizes, prompts=sc.prompts_per_step)
    for g in sc.group_sizes:
        truth = true_event_prob(sc, g, step=50, n_mc=3000)
        assert abs(decision.risk[g] - truth) <= 0.05, \
            f"{name} G={g} (used {sorted(used)}): predicted {decision.risk[g]:.3f}, true {truth:.3f}"


@pytest.mark.parametrize("warm_g", [4, pytest.param(2, marks=pytest.mark.xfail(strict=True, reason=(
    "pairs show only the symmetrised within-prompt law (e1 - e2): the skew that longer wrong answers add "
    "is invisible at G=2, and the tail rule needs it: G=8 0.21 vs 0.16 on light-tail")))])
def test_tail_risk_extrapolates_to_sizes_never_used(warm_g):
    """Warm up at one small G only (a static run), then predict the tail rule for every G up to 32."""
    sc = with_tail_rule("light-tail")
    learner = sagc.make("sagc")
    for sr in iter_steps(sc, sagc.make("static", group_size=warm_g), steps=150):
        learner.update(sr.stats)
    decision = learner.decide(sc.group_sizes, prompts=sc.prompts_per_step)
    for g in sc.group_sizes:
        truth = true_event_prob(sc, g, step=150, n_mc=3000)
        assert abs(decision.risk[g] - truth) <= 0.05, f"G={g}: predicted {decision.risk[g]:.3f}, true {truth:.3f}"


@pytest.mark.parametrize("objective", ["goodput", "utility"])
def test_user_delta_holds_with_tail_rule(objective):
    """Guarantee for the new default rule: some G at true rate <= delta - 0.02 -> rate <= delta + 0.02."""
    delta = 0.1
    sc = with_tail_rule("light-tail")
    assert min(true_event_prob(sc, g, step=20, n_mc=3000) for g in sc.group_sizes) <= delta - 0.02
    ctrl = sagc.make("sagc", delta=delta, objective=objective)
    events = np.array([sr.event for sr in iter_steps(sc, ctrl)])
    assert events.size == sc.steps >= 2000
    assert events.mean() <= delta + 0.02, f"straggler rate {events.mean():.3f}"
    assert ctrl.settings.straggler.rule == "tail"  # the controller's own default, scored by the same rule


def test_infeasible_delta_does_not_collapse():
    """Every G's true tail-event rate exceeds 0.2 on code-heavy-tail (>= 0.37 measured): SAGC
    with delta=0.2 keeps goodput near the best static G, flags the steps and warns once."""
    sc = load_scenario("code-heavy-tail").replace(steps=600)
    assert min(true_event_prob(sc, g, step=20, n_mc=2000) for g in sc.group_sizes) > 0.2 + 0.1
    ctrl = sagc.make("sagc", delta=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_scenario(sc, controllers=[ctrl], include_series=False)
    warned = [w for w in caught if issubclass(w.category, InfeasibleBudgetWarning)]
    assert len(warned) == 1, [str(w.message) for w in warned]
    assert "best-goodput G" in str(warned[0].message)
    decision = ctrl.decide(sc.group_sizes, prompts=sc.prompts_per_step)
    assert decision.infeasible and decision.budget == 0.2
    summary = result["controllers"][0]["summary"]
    best = max(m["signal_per_s"] for m in result["hindsight"]["by_g"].values())
    assert summary["signal_per_s"] >= 0.95 * best, (summary["signal_per_s"], best)
    assert summary["mean_group_size"] > 4  # not pinned to the least risky size (G = 2)
    assert ctrl.queue < 5.0  # charged only for the unavoidable excess: no runaway queue


def test_auto_budget_stays_within_slowdown():
    """delta='auto' never takes a size outside auto_slowdown of the best predicted goodput, but
    for a time probe (one step at a neighbouring size, at most one per window of steps) and the
    start (the first TIME_FIT_STEPS steps, no G above the middle of allowed)."""
    from sagc.controllers.sagc import TIME_FIT_STEPS

    sc = load_scenario("growing-lengths").replace(steps=120)
    ctrl = sagc.make("sagc", auto_slowdown=0.05)
    probes = 0
    for t, sr in enumerate(iter_steps(sc, ctrl)):
        d = sr.decision
        probes += d.probe
        if d.budget is not None and not d.probe and t >= TIME_FIT_STEPS:
            assert d.utility[d.group_size] >= 0.95 - 1e-9
            assert d.risk[d.group_size] == pytest.approx(min(p for g, p in d.risk.items() if d.utility[g] >= 0.95 - 1e-9))
            assert not d.infeasible
    assert probes <= 1 + 120 // ctrl.settings.window


@pytest.mark.parametrize("kw, key", [
    ({"delta": "0.1"}, "delta"), ({"delta": "sometimes"}, "delta"), ({"delta": 1.5}, "delta"),
    ({"auto_slowdown": -0.1}, "auto_slowdown"), ({"auto_slowdown": 1.0}, "auto_slowdown"),
    ({"auto_slowdown": "x"}, "auto_slowdown"), ({"utility": "nope"}, "utility"), ({"objective": "speed"}, "objective"),
    ({"V": "10"}, "V"), ({"window": 2.5}, "window"), ({"seed": -1}, "seed"), ({"seed": "x"}, "seed"),
    ({"straggler": {"rule": "tail", "tail_share": 1.0}}, "straggler.tail_share"),
    ({"straggler": {"rule": "tail", "tail_quantile": 0}}, "straggler.tail_quantile"),
    ({"straggler": {"rule": "tail", "tail_share": "half"}}, "straggler.tail_share"),
])
def test_new_settings_named_in_errors(kw, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        sagc.make("sagc", **kw)


def test_trace_without_rewards_draws_them_from_the_law(tmp_path):
    """A length-only trace replays with rewards from the scenario's `rewards:` law."""
    import json

    trace = tmp_path / "lengths.jsonl"
    rng = np.random.default_rng(0)
    with trace.open("w") as f:
        for t in range(5):
            groups = [{"id": f"p{t}-{i}", "lengths": rng.integers(5, 200, 16).tolist()} for i in range(4)]
            f.write(json.dumps({"step": t, "group_size": 16, "groups": groups}) + "\n")
    from sagc.sim import parse_scenario

    def run(beta):
        sc = parse_scenario({"name": "t", "steps": 60, "prompts_per_step": 4, "group_sizes": [4, 8],
                             "lengths": {"model": "trace", "path": str(trace)},
                             "rewards": {"pass_rate": {"beta": beta}},
                             "controllers": [{"kind": "static", "group_size": 8}]})
        return run_scenario(sc, hindsight=False)["controllers"][0]["summary"]

    easy, mixed = run([20.0, 1.0]), run([1.0, 1.0])
    assert mixed["informative_groups"] > 0
    assert easy["informative_groups"] < mixed["informative_groups"]  # pass rates near 1: few mixed groups
