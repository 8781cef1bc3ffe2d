"""`sagc whatif` on traces recorded under a tail-control policy (the `tail` field of sagc.trace)."""

from __future__ import annotations

import numpy as np
import pytest

from sagc.sim.calibrate import calibrate, replica_regressors
from sagc.sim.pool import step_work, tail_summary
from sagc.sim.scenario import parse_scenario
from sagc.sim.whatif import ReplayModel, load_records, rollout_rows, run_whatif, whatif_markdown
from sagc.trace import write_trace

CUT = 3000  # cancelled completions hold more tokens than this; trained rows stay below: never replayed
COEF = np.array([0.02, 0.0004, 0.05])  # seconds per iteration, per active sequence-iteration, per request


def tail_trace(path, policy="resume", steps=12, seed=0):
    """4 groups of 4 trained rows per step. Under resume: each step resumes 2 rows cancelled in the
    previous one (stale tokens = what they had then) and cancels 2 more; under drop: 2 cancelled
    completions per step are dropped. rollout_s follows the engine model on what each step ran."""
    rng = np.random.default_rng(seed)
    records = []
    for t in range(steps):
        lengths = rng.integers(20, 3000, size=(4, 4))
        resumed = np.zeros(16, int)
        stale = np.zeros(16, int)
        if policy == "resume" and t > 0:
            resumed[[1, 6]] = 1
            stale[[1, 6]] = np.minimum(lengths.ravel()[[1, 6]], 15)
        cut = rng.integers(CUT + 1, 2 * CUT, size=2).tolist()
        rec = {"step": t, "group_size": 4, "rollout_s": None, "step_s": None,
               "groups": [{"id": f"s{t}-p{i}", "lengths": lengths[i].tolist(), "rewards": [1, 0, 1, 0]}
                          for i in range(4)],
               "tail": {"policy": policy, "rate": 1.5, "kind": "short", "resumed": resumed.tolist(),
                        "deferred": [0] * 16, "stale_tokens": stale.tolist(), "aborted_lengths": cut,
                        "aborted_fate": [{"resume": "resume", "drop": "drop", "defer": "defer"}[policy]] * 2,
                        "on_policy_share": 0.9, "queue": 0, "carried": 2 if policy == "resume" else 0}}
        x = replica_regressors(step_work(rec), slots=64, replicas=1)[0]
        rec["rollout_s"] = float(x @ COEF)
        rec["step_s"] = rec["rollout_s"] + 1.0 + 1e-5 * float(lengths.sum())
        records.append(rec)
    return write_trace(path, records)


def test_replay_takes_trained_rows_only_and_never_a_cancelled_length(tmp_path):
    path = tail_trace(tmp_path / "resume.jsonl")
    records, _ = load_records([path])
    sc = parse_scenario({"name": "t", "steps": 12, "prompts_per_step": 4, "group_sizes": [2, 4, 8],
                         "lengths": {"model": "trace", "path": str(path)}})
    model = ReplayModel(sc, records)
    for t in range(12):
        batch = model.sample_step(t, 8)
        assert batch.length.max() <= CUT  # G 8 resamples within a group: still only trained rows
        want = np.array([g["lengths"] for g in records[t]["groups"]])
        assert np.array_equal(model.sample_step(t, 4).length, want)  # each trained row once, at its length


def test_whatif_reports_what_the_policy_did_and_skips_the_replay_check(tmp_path):
    path = tail_trace(tmp_path / "resume.jsonl")
    result = run_whatif([path], engine="calibrate", slots=64)
    t = result["recorded"]["tail"]
    assert t["policies"] == ["resume"] and t["records"] == 12 and t["trained"] == 12 * 16
    assert t["resumed"] == 11 * 2 and t["aborted"] == 24 and t["aborted_by_fate"] == {"resume": 24, "drop": 0, "defer": 0}
    assert t["censored"] == 0 and t["pending_groups_at_end"] == 2
    assert result["replay_check"] is None  # a cut run is not what a full replay at its G submits
    text = whatif_markdown(result)
    assert "Recorded under tail control (resume, 12 steps): 192 trained completions, 22 of them resumed" in text
    assert "24 completions cancelled" in text and "24 resumed later" in text and "biased short" not in text
    # calibration sees what each step ran (this step's tokens plus the cancelled ones): an exact fit
    cal = result["engine"]["calibration"]
    assert cal["rollout_rel_rmse"] < 1e-6


def test_calibration_on_trained_lengths_alone_would_misfit(tmp_path):
    # the check that step_work matters: the same fit on the trained rows' full lengths is off
    path = tail_trace(tmp_path / "resume.jsonl")
    records, sources = load_records([path])
    for rec in records:
        del rec["tail"]
    assert calibrate(records, sources, slots=64).rollout_rel_rmse > 1e-3


def test_dropped_completions_are_counted_as_censored_not_invented(tmp_path):
    path = tail_trace(tmp_path / "drop.jsonl", policy="drop")
    result = run_whatif([path], engine="llama-8b-h100-vllm", group_sizes=[2, 4], rollout=["resume", "drop"])
    t = result["recorded"]["tail"]
    records, _ = load_records([path])
    cut = [n for r in records for n in r["tail"]["aborted_lengths"]]
    assert t["aborted_by_fate"]["drop"] == 24 and t["censored"] == 24 and t["censored_mean_tokens"] == np.mean(cut)
    text = whatif_markdown(result)
    assert "The 24 dropped or deferred never finished" in text and "groups of the 24 dropped completions are missing" in text
    assert "biased short" in text
    rows = {r["label"]: r for r in rollout_rows(result)}
    assert set(rows) == {"sagc", "sagc+resume", "sagc+drop"}
    assert rows["sagc"]["vs_sagc"] == pytest.approx(1.0) and rows["sagc"]["on_policy_share"] == 1.0
    assert rows["sagc+drop"]["never_trained_share"] > 0 and rows["sagc+resume"]["never_trained_share"] == 0
    assert "| sagc+drop |" in text and "on-policy tokens" in text


def test_deferred_completions_are_censored_but_their_prompts_come_back(tmp_path):
    result = run_whatif([tail_trace(tmp_path / "defer.jsonl", policy="defer")], engine="llama-8b-h100-vllm",
                        group_sizes=[2, 4])
    assert result["recorded"]["tail"]["aborted_by_fate"]["defer"] == 24
    text = whatif_markdown(result)
    assert "replayed from their re-runs" in text and "biased short" not in text


def test_simulator_flags_are_summarised_too(tmp_path):
    rec = {"step": 0, "group_size": 2, "groups": [
        {"id": "p1", "lengths": [5, 9], "aborted": [False, True], "resumed": [False, False], "outcome": "carried"},
        {"id": "p2", "lengths": [4, 6], "aborted": [True, False], "resumed": [False, False], "outcome": "dropped"},
        {"id": "p3", "lengths": [3, 8], "aborted": [False, False], "resumed": [True, False], "outcome": "trained"}]}
    t = tail_summary([rec])
    assert t["aborted_by_fate"] == {"resume": 1, "drop": 1, "defer": 0} and t["censored_mean_tokens"] == 4
    assert t["trained"] == 3 and t["resumed"] == 1 and t["policies"] == []
    assert tail_summary([{"step": 0, "group_size": 2, "groups": [{"lengths": [3, 4]}]}]) is None


def test_recorded_prompt_tokens_is_the_median_or_zero_when_a_record_lacks_it():
    from sagc.sim.whatif import recorded_prompt_tokens

    assert recorded_prompt_tokens([{"prompt_tokens": 10}, {"prompt_tokens": 30}, {"prompt_tokens": 12}]) == 12
    assert recorded_prompt_tokens([{"prompt_tokens": 10}, {}]) == 0
    assert recorded_prompt_tokens([{"prompt_tokens": True}]) == 0 and recorded_prompt_tokens([]) == 0
