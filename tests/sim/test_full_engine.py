"""The full-engine ceiling (runner.full_engine_measures): signal per second had every rollout kept
all slots decoding. Checked by hand on constant lengths, and as a ceiling on plain runs."""

import pytest

from sagc.sim import load_scenario, run_scenario, simulate_rollout
from sagc.sim.engine import full_token_rate
from sagc.sim.scenario import EngineSettings

# every completion 100 tokens: lognormal with no spread to speak of, no runaways, wrong = right length
CONSTANT = {"model": "lognormal", "median": 100, "sigma": 1e-9, "prompt_sigma": 0.0, "runaway_prob": 0.0,
            "wrong_length_factor": 1.0}


def test_full_token_rate_is_the_rate_of_a_full_engine():
    e = EngineSettings(replicas=2, slots=8, decode_s_per_iter=0.5, decode_s_per_seq=0.25, prefill_s_per_token=0.0,
                       train_s_per_token=0.0, overhead_s=0.0)
    assert full_token_rate(e) == pytest.approx(2 * 8 / (0.5 + 0.25 * 8))
    res = simulate_rollout([40] * 16, e)  # 8 per replica: every slot busy for all 40 iterations
    assert res.rollout_s == pytest.approx(16 * 40 / full_token_rate(e))
    half = simulate_rollout([40] * 8, e)  # 4 per replica: a half-full engine is slower per token
    assert half.rollout_s > 8 * 40 / full_token_rate(e)


def test_a_full_engine_run_is_at_its_ceiling_and_a_half_empty_one_below(make_scenario):
    sc = make_scenario(lengths=CONSTANT, steps=6, prompts_per_step=4)  # 16 slots
    runs = run_scenario(sc, [{"kind": "static", "group_size": 4}, {"kind": "static", "group_size": 2}],
                        hindsight=False)["controllers"]
    full, half = (r["summary"] for r in runs)
    assert full["bubble_fraction"] == pytest.approx(0.0, abs=1e-12)
    # summaries keep 9 significant digits
    assert full["signal_per_s_full_engine"] == pytest.approx(full["signal_per_s"], rel=1e-7)
    # by hand: 8 completions x 100 tokens at 16 / (0.01 + 0.016) tokens/s, plus the step's
    # training (per token) and overhead, per step
    e = sc.engine
    seconds = 6 * (800 / (16 / (e.decode_s_per_iter + 16 * e.decode_s_per_seq)) + 800 * e.train_s_per_token
                   + e.overhead_s)
    assert half["full_engine_seconds"] == pytest.approx(seconds, rel=1e-7)
    assert half["signal_per_s_full_engine"] == pytest.approx(half["signal"] / seconds, rel=1e-7)
    assert half["signal_per_s_full_engine"] > half["signal_per_s"] * 1.2


@pytest.mark.parametrize("name", ["long-cot-filled", "heavy-tail", "math-pool"])
def test_a_plain_run_never_beats_its_full_engine_ceiling(name):
    sc = load_scenario(name).replace(steps=30)
    for g, s in run_scenario(sc, [], include_series=False)["hindsight"]["by_g"].items():
        assert 0 < s["signal_per_s"] <= s["signal_per_s_full_engine"] * (1 + 1e-9), g
        # the idle share of the rollout is what the ceiling takes away, and no more
        assert s["full_engine_seconds"] <= s["sim_seconds"]


def test_prefill_counts_in_the_ceiling(make_scenario):
    base = make_scenario(lengths=CONSTANT, steps=4, prompts_per_step=4)
    slow = make_scenario(lengths={**CONSTANT, "prompt_tokens": 50}, engine={"prefill_s_per_token": 0.001}, steps=4,
                          prompts_per_step=4)
    a, b = (run_scenario(sc, [{"kind": "static", "group_size": 4}], hindsight=False)["controllers"][0]["summary"]
            for sc in (base, slow))
    assert b["full_engine_seconds"] == pytest.approx(a["full_engine_seconds"] + 4 * 16 * 50 * 0.001, rel=1e-7)
