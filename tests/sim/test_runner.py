"""Runs of whole scenarios: determinism, fair comparison, summaries, hindsight, traces, truth."""

import json

import numpy as np
import pytest

import sagc
from sagc.sim import (LengthModel, informative_groups, iter_steps, load_scenario, run_scenario, to_json,
                      true_event_prob, write_run_trace)
from sagc.trace import read_trace, record_to_stats

SUMMARY_KEYS = {"straggler_rate", "mean_group_size", "sim_seconds", "steps", "informative_groups_per_s",
                "tokens_per_s", "bubble_fraction", "p50_step_s", "p95_step_s", "events"}


def test_same_scenario_and_seed_give_byte_identical_json(scenario):
    a = to_json(run_scenario(scenario))
    b = to_json(run_scenario(scenario))
    assert a == b
    assert to_json(run_scenario(scenario.replace(seed=4))) != a
    json.loads(a)  # valid JSON (no NaN)


def test_shipped_scenario_with_all_its_controllers_is_deterministic():
    sc = load_scenario("light-tail").replace(steps=60)
    first = run_scenario(sc)
    assert [run["config"]["kind"] for run in first["controllers"]] == [c["kind"] for c in sc.controllers]
    assert to_json(first) == to_json(run_scenario(sc))


def test_summary_fields_are_present_and_consistent(scenario):
    result = run_scenario(scenario)
    assert [run["label"] for run in result["controllers"]] == ["static-G8", "static-G2"]  # scenario order
    assert result["controllers"][0]["config"] == {"kind": "static", "group_size": 8}
    for run in result["controllers"]:
        s, series = run["summary"], run["series"]
        assert SUMMARY_KEYS <= set(s)
        assert s["steps"] == scenario.steps == len(series["group_size"])
        assert s["events"] == sum(series["event"])
        assert s["straggler_rate"] == pytest.approx(s["events"] / s["steps"])
        assert s["mean_group_size"] == pytest.approx(np.mean(series["group_size"]))
        assert s["sim_seconds"] == pytest.approx(sum(series["step_s"]), rel=1e-8)
        assert s["informative_groups_per_s"] == pytest.approx(sum(series["informative"]) / s["sim_seconds"], rel=1e-8)
        assert s["tokens_per_s"] == pytest.approx(sum(series["tokens"]) / s["sim_seconds"], rel=1e-8)
        assert s["p50_step_s"] <= s["p95_step_s"] <= s["max_step_s"]
        assert 0.0 <= s["bubble_fraction"] < 1.0
        assert all(r > 0 for r in series["rollout_s"])
        assert all(st >= r + scenario.engine.overhead_s for st, r in zip(series["step_s"], series["rollout_s"]))


def test_listed_static_run_equals_its_hindsight_run(scenario):
    result = run_scenario(scenario)
    by_g = result["hindsight"]["by_g"]
    assert set(by_g) == {"2", "4", "8"}
    assert by_g["8"] == result["controllers"][0]["summary"]
    best = result["hindsight"]["best_g"]
    assert by_g[str(best)]["informative_groups_per_s"] == max(v["informative_groups_per_s"] for v in by_g.values())
    assert result["hindsight"]["budget"] is None and result["hindsight"]["best_g_within_budget"] is None


def test_budget_comes_from_sagc_controllers(scenario):
    if "sagc" not in sagc.REGISTRY:
        pytest.skip("the sagc controller is not registered yet")
    sc = scenario.replace(controllers=[{"kind": "sagc", "delta": 0.3, "V": 10}, {"kind": "sagc", "delta": 0.2, "V": 10}])
    h = run_scenario(sc)["hindsight"]
    assert h["budget"] == 0.2
    feasible = [int(g) for g, v in h["by_g"].items() if v["straggler_rate"] <= 0.22]
    if feasible:
        assert h["best_g_within_budget"] in feasible
        rates = {g: h["by_g"][str(g)]["informative_groups_per_s"] for g in feasible}
        assert rates[h["best_g_within_budget"]] == max(rates.values())
    else:
        assert h["best_g_within_budget"] is None


def test_runs_are_scored_by_the_scenario_rule_not_the_controllers(scenario):
    # a controller with its own (much laxer) rule must not change the run's straggler rate
    own = {"kind": "static", "group_size": 8, "straggler": {"kappa": 1000.0}}
    result = run_scenario(scenario.replace(controllers=[own, {"kind": "static", "group_size": 8}]), hindsight=False)
    runs = result["controllers"]
    assert runs[0]["summary"] == runs[1]["summary"]
    assert runs[0]["summary"]["events"] > 0


def test_controllers_see_common_random_numbers(scenario):
    small = list(iter_steps(scenario, sagc.make("static", group_size=2), steps=5))
    large = list(iter_steps(scenario, sagc.make("static", group_size=8), steps=5))
    for a, b in zip(small, large):
        assert np.array_equal(a.batch.length, b.batch.length[:, :2])


def test_informative_groups_matches_stepstats(scenario):
    for sr in iter_steps(scenario, sagc.make("static", group_size=4), steps=10):
        assert sr.informative == sr.stats.informative_groups()
    reward = np.array([[1, 0, np.nan], [np.nan, np.nan, 1], [1, 1, np.nan]])
    assert informative_groups(reward) == 1


def test_progress_is_reported_per_controller(scenario):
    calls = []
    run_scenario(scenario, progress=lambda name, done, total: calls.append((name, done, total)))
    finals = {name: done for name, done, total in calls if done == total}
    assert finals == {"static-G8": 40, "static-G2": 40, "static-G4 (hindsight)": 40}


def test_write_run_trace_replays_the_run(scenario, tmp_path):
    path = write_run_trace(scenario, tmp_path / "run.jsonl", {"kind": "static", "group_size": 4}, steps=6)
    records = list(read_trace(path))
    steps = list(iter_steps(scenario, sagc.make("static", group_size=4), steps=6))
    assert len(records) == 6
    for rec, sr in zip(records, steps):
        back = record_to_stats(rec)
        assert np.array_equal(back.length, sr.stats.length)
        assert rec["groups"][1]["id"] == f"s{sr.step}-p1"
        assert rec["controller"]["event"] == sr.observation.event
        assert rec["rollout_s"] == pytest.approx(sr.engine.rollout_s)


def test_trace_dir_writes_one_trace_per_controller(scenario, tmp_path):
    run_scenario(scenario.replace(steps=5), trace_dir=tmp_path, hindsight=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["static-G2.jsonl", "static-G8.jsonl"]
    assert len(list(read_trace(tmp_path / "static-G8.jsonl"))) == 5


def test_trace_replay_scenario_runs():
    sc = load_scenario("trace-replay").replace(steps=30)
    result = run_scenario(sc, controllers=[{"kind": "static", "group_size": 32}], hindsight=False)
    s = result["controllers"][0]["summary"]
    assert s["steps"] == 30 and s["tokens"] > 0 and s["informative_groups"] > 0
    pool_lengths = set(LengthModel(sc).pool.length.tolist())
    assert all(set(sr.batch.length.ravel().tolist()) <= pool_lengths
               for sr in iter_steps(sc, sagc.make("static", group_size=8), steps=3))


@pytest.mark.parametrize("rule", [{"rule": "reference"}, {"rule": ["group", "truncation"]}])
def test_true_event_prob_vectorised_equals_the_real_rule(make_scenario, rule):
    sc = make_scenario(straggler={"window": 3, "kappa": 3.0, **rule})
    for step in (0, 2, 5):
        fast = true_event_prob(sc, 4, step=step, n_mc=60, seed=1, method="vectorised")
        slow = true_event_prob(sc, 4, step=step, n_mc=60, seed=1, method="loop")
        assert fast == slow


def test_true_event_prob_rises_with_g_and_matches_a_static_run(make_scenario):
    sc = make_scenario(steps=800, prompts_per_step=4, group_sizes=[2, 16],
                       lengths={"sigma": 0.45, "prompt_sigma": 0.1, "runaway_prob": 0.0, "wrong_length_factor": 1.0},
                       controllers=[])
    p2, p16 = (true_event_prob(sc, g, n_mc=3000) for g in (2, 16))
    assert p2 < p16
    rate = run_scenario(sc, controllers=[{"kind": "static", "group_size": 16}], hindsight=False,
                        include_series=False)["controllers"][0]["summary"]["straggler_rate"]
    # run-to-run noise of a rate over 800 correlated steps, plus Monte Carlo error
    assert rate == pytest.approx(p16, abs=4 * np.sqrt(p16 * (1 - p16) / 800) + 0.02)


def test_plot_run_writes_a_png(scenario, tmp_path):
    pytest.importorskip("matplotlib")
    from sagc.sim.plot import plot_run

    result = run_scenario(scenario)
    out = plot_run(result, tmp_path / "fig" / "run.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="include_series=True"):
        plot_run(run_scenario(scenario, include_series=False), tmp_path / "x.png")
