"""Tail control inside a synchronous step (sagc.rollout) in the simulator: reproduction of the plain
run, determinism, what each policy buys and costs on long-cot, the engine's cut-short measures,
scenario validation of `rollout:`, and traces written under a policy."""

import json

import numpy as np
import pytest
import yaml

import sagc
from sagc._io import InputError
from sagc.sim import iter_steps, load_scenario, run_scenario, simulate_rollout, to_json, trace_record, write_run_trace
from sagc.sim.lengths import LengthModel
from sagc.sim.pool import finished_groups, recorded_pool
from sagc.sim.scenario import EngineSettings
from sagc.trace import OUTCOMES, read_trace

G8 = {"kind": "static", "group_size": 8}


@pytest.fixture(scope="module")
def long_cot():
    """long-cot at B = 32, G = 8: 256 completions, exactly the engine's 256 slots."""
    return load_scenario("long-cot").replace(steps=40, prompts_per_step=32)


@pytest.fixture(scope="module")
def long_cot_runs(long_cot):
    policies = {"full": None, "resume": {"policy": "resume", "over_sample": 1.5},
                "drop": {"policy": "drop", "over_sample": 1.5}, "defer": {"policy": "defer", "over_sample": 1.5},
                "auto": {"policy": "auto"}}
    entries = [dict(G8, **({"rollout": ro} if ro else {})) for ro in policies.values()]
    result = run_scenario(long_cot, entries, hindsight=False)
    return {name: run for name, run in zip(policies, result["controllers"])}


# ---- `full` is the plain run ----------------------------------------------------------------
def test_full_policy_reproduces_the_plain_run(long_cot, scenario):
    for sc in (long_cot, scenario):
        result = run_scenario(sc, [G8, dict(G8, rollout={"policy": "full"}), dict(G8, rollout="full")],
                              hindsight=False)
        plain, *others = result["controllers"]
        assert plain["label"] == "static-G8"
        for run in others:
            assert run["summary"] == plain["summary"]
            assert run["series"] == plain["series"]
        s = plain["summary"]
        assert s["on_policy_share"] == 1.0 and s["pending_prompts"] == 0 and s["max_token_age"] == 0
        assert s["trained_groups"] == sc.steps * sc.prompts_per_step


def test_full_policy_trace_records_are_the_plain_ones(scenario):
    plain = [trace_record(sr) for sr in iter_steps(scenario, sagc.make("static", group_size=4), steps=5)]
    full = [trace_record(sr) for sr in iter_steps(scenario, sagc.make("static", group_size=4), steps=5,
                                                   rollout={"policy": "full"})]
    assert plain == full
    assert all("aborted" not in g and "outcome" not in g for rec in full for g in rec["groups"])


# ---- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("rollout", [{"policy": "resume", "over_sample": 1.5},
                                     {"policy": "defer", "over_sample": 1.5, "long_round": 16},
                                     {"policy": "auto", "max_staleness": 2}])
def test_same_scenario_seed_and_policy_give_byte_identical_json(rollout):
    sc = load_scenario("long-cot").replace(steps=30, prompts_per_step=16)
    entries = [dict(G8, rollout=rollout), {"kind": "sagc", "rollout": rollout}]
    a = to_json(run_scenario(sc, entries, hindsight=False))
    assert a == to_json(run_scenario(sc, entries, hindsight=False))
    json.loads(a)  # valid JSON (no NaN)
    assert to_json(run_scenario(sc.replace(seed=1), entries, hindsight=False)) != a


# ---- what each policy buys and costs (long-cot, engine-filling B) ------------------------------
def test_resume_cuts_the_bubble_and_raises_signal_per_s(long_cot_runs):
    full, resume = long_cot_runs["full"]["summary"], long_cot_runs["resume"]["summary"]
    assert resume["bubble_fraction"] < full["bubble_fraction"] - 0.1
    assert resume["signal_per_s"] > 1.1 * full["signal_per_s"]
    assert resume["on_policy_share"] < 1.0
    assert abs(resume["length_bias"]) <= 0.05  # nothing dropped: no length bias beyond the tail in flight
    assert resume["never_trained_share"] == 0.0 and resume["wasted_share"] == 0.0
    assert 1 <= resume["max_token_age"] <= 1  # the default max_staleness
    assert resume["resumed_share"] > 0 and resume["pending_prompts"] > 0
    assert resume["trained_groups"] >= 40 * 32


def test_drop_is_biased_short_and_never_trains_some_prompts(long_cot_runs):
    drop = long_cot_runs["drop"]["summary"]
    assert drop["length_bias"] < 0 and drop["never_trained_share"] > 0
    assert drop["on_policy_share"] == 1.0 and drop["max_token_age"] == 0
    assert drop["wasted_share"] > 0 and drop["pending_prompts"] == 0


def test_defer_waits_but_stays_on_policy(long_cot_runs):
    defer = long_cot_runs["defer"]["summary"]
    assert defer["deferred_wait_mean"] > 0 and defer["deferred_wait_max"] >= 1 and defer["deferred_prompts"] > 0
    assert defer["on_policy_share"] == 1.0 and defer["max_token_age"] == 0
    assert defer["never_trained_share"] == 0.0


def test_auto_stays_within_its_staleness_budget_and_drops_nothing(long_cot_runs):
    auto = long_cot_runs["auto"]["summary"]
    assert auto["max_token_age"] <= 1 and auto["never_trained_share"] == 0.0
    assert auto["signal_per_s"] > long_cot_runs["full"]["summary"]["signal_per_s"]


def test_batch_growth_and_signal_with_one_overhead_per_b_groups(long_cot, long_cot_runs):
    """Pinned groups make a step train more than B groups; batch_growth says how many, and
    signal_per_s_at_b charges one step's overhead per B of them (equal to signal_per_s where
    every step trains B)."""
    b, overhead = long_cot.prompts_per_step, long_cot.engine.overhead_s
    assert overhead > 0
    full = long_cot_runs["full"]["summary"]
    assert full["batch_growth"] == 1.0 and full["signal_per_s_at_b"] == pytest.approx(full["signal_per_s"], rel=1e-8)
    sc = long_cot.replace(steps=20)
    run = run_scenario(sc, [dict(G8, rollout={"policy": "resume", "over_sample": 4.0, "max_staleness": 1})],
                       hindsight=False)["controllers"][0]
    s = run["summary"]
    assert s["batch_growth"] == pytest.approx(s["trained_groups"] / (20 * b)) and s["batch_growth"] > 1.2
    extra = overhead * (s["trained_groups"] / b - 20)  # by hand: the overhead of the B-group steps not taken
    assert s["signal_per_s_at_b"] == pytest.approx(s["signal"] / (sum(run["series"]["step_s"]) + extra), rel=1e-8)
    assert s["signal_per_s_at_b"] < s["signal_per_s"]


def test_stepper_trains_whole_groups_and_keeps_token_age(long_cot):
    sc = long_cot.replace(steps=12, prompts_per_step=16)
    for sr in iter_steps(sc, sagc.make("static", group_size=16), rollout={"policy": "resume", "over_sample": 2.0,
                                                                          "max_staleness": 2}):
        plan, out = sr.plan, sr.outcome
        sizes = np.bincount(sr.trained["group"], minlength=plan.groups["key"].shape[0])
        assert np.array_equal(sizes[out.trained_groups], plan.groups["size"][out.trained_groups])
        assert out.trained_groups.size >= sc.prompts_per_step
        assert out.max_staleness <= 2
        assert sr.rollout_s <= sr.engine.rollout_s + 1e-9  # the step ends no later than the whole rollout
        assert np.all(sr.ran["length"] > 0) and np.all(np.isnan(sr.ran["reward"][sr.ran["aborted"]]))
        assert 0.0 <= sr.bubble < 1.0


@pytest.mark.parametrize("rollout", [{"policy": "auto", "over_sample_grid": [4.0, 8.0]},
                                     {"policy": "drop", "over_sample": 3.0},
                                     {"policy": "resume", "over_sample": 4.0, "max_staleness": 1}])
def test_a_short_step_trains_exactly_b_groups_as_the_trl_trainer_does(long_cot, rollout):
    """The simulator closes a short step with cap = B, as integrations/trl/tail.py does: B complete
    groups trained (more only when more are pinned), pinned first, then the first to complete;
    a group complete beyond B is the tail. A step with nothing left to run takes no rollout time."""
    sc = long_cot.replace(steps=30, prompts_per_step=16)
    b, seen, empty = sc.prompts_per_step, set(), 0
    for sr in iter_steps(sc, sagc.make("static", group_size=8), rollout=rollout):
        plan, out = sr.plan, sr.outcome
        pinned = int(plan.groups["pinned"].sum())
        if plan.target is not None:
            assert out.trained_groups.size == max(b, pinned)
        assert plan.groups["pinned"][out.trained_groups].sum() == pinned  # every pinned group is trained
        keys = set(plan.groups["key"][out.trained_groups].tolist())
        assert not keys & seen  # a group is trained once
        seen |= keys
        if plan.submit.size == 0:
            empty += 1
            assert sr.rollout_s == 0.0 and sr.engine.rollout_s == 0.0
    assert len(seen) >= 30 * b


def test_an_engine_with_nothing_to_run_takes_no_time():
    res = simulate_rollout(np.zeros(0, dtype=np.int64), _engine())
    assert res.rollout_s == 0.0 and res.finish_s.size == 0 and res.tokens_by(np.zeros(0, np.int64), 5.0).size == 0
    with pytest.raises(ValueError, match="lengths > 0"):
        simulate_rollout(np.array([3, 0]), _engine())


# ---- the engine's measures of a step cut short --------------------------------------------------
def _engine(**kw):
    base = dict(replicas=1, slots=2, decode_s_per_iter=1.0, decode_s_per_seq=0.1, prefill_s_per_token=0.0,
                train_s_per_token=0.0, overhead_s=0.0)
    return EngineSettings(**{**base, **kw})


def test_tokens_by_hand_computed():
    # slots 2: requests 0 and 1 run from iteration 0 (1.2 s per iteration with 2 active); request 0
    # ends after 3 iterations (3.6 s), request 2 takes its slot; 1 and 2 end at iteration 5 (6.0 s).
    length = np.array([3, 5, 2])
    res = simulate_rollout(length, _engine())
    assert res.finish_s == pytest.approx([3.6, 6.0, 6.0])
    assert res.tokens_by(length, 0.0).tolist() == [0, 0, 0]
    assert res.tokens_by(length, 2.5).tolist() == [2, 2, 0]
    assert res.tokens_by(length, 4.8).tolist() == [3, 4, 1]
    assert res.tokens_by(length, 6.0).tolist() == [3, 5, 2]
    assert res.tokens_by(length, 100.0).tolist() == [3, 5, 2]


@pytest.mark.parametrize("kw, n", [({"slots": 64}, 40),  # all at once
                                   ({"slots": 8}, 60),  # queueing
                                   ({"slots": 8, "replicas": 3, "prefill_s_per_token": 1e-4}, 70)])
def test_tokens_by_and_busy_by_are_consistent(kw, n):
    rng = np.random.default_rng(n)
    length = np.clip(rng.lognormal(4.0, 0.8, n), 1, 2000).astype(np.int64)
    e = _engine(decode_s_per_iter=0.02, decode_s_per_seq=0.001, **kw)
    res = simulate_rollout(length, e, prompt_tokens=rng.integers(10, 200, n))
    assert res.tokens_by(length, 0.0).tolist() == [0] * n
    stops = np.concatenate([np.linspace(0, res.rollout_s * 1.1, 50), np.sort(res.finish_s)])
    stops.sort()
    prev = np.zeros(n, dtype=np.int64)
    prev_busy = 0.0
    for stop in stops:
        got = res.tokens_by(length, stop)
        done = res.finish_s <= stop
        assert np.array_equal(got[done], length[done])
        assert np.all(got[~done] < length[~done]) and np.all(got >= 0)
        assert np.all(got >= prev)  # monotone in the stop
        prev = got
        busy = res.busy_by(stop)
        assert prev_busy - 1e-9 <= busy <= e.slots * e.replicas * stop + 1e-9
        prev_busy = busy
    assert res.busy_by(res.rollout_s) == pytest.approx(res.busy_slot_s, rel=1e-9)
    assert res.busy_by(0.0) == 0.0


# ---- `rollout:` in a scenario file ------------------------------------------------------------
SCENARIO_TEXT = """\
steps: 4
prompts_per_step: 2
group_sizes: [2, 4]
lengths:
  model: lognormal
  median: 100
  sigma: 0.5
controllers:
  - kind: sagc
    rollout:
      policy: resume
      {key}: {value}
"""


def _write(tmp_path, key, value):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO_TEXT.format(key=key, value=value))
    return path


def test_rollout_in_a_scenario_file_is_validated_and_kept(tmp_path):
    sc = load_scenario(_write(tmp_path, "over_sample", 1.5))
    assert sc.controllers[0]["rollout"]["policy"] == "resume"
    assert sc.controllers[0]["rollout"]["over_sample"] == 1.5
    result = run_scenario(sc, hindsight=False)
    assert result["controllers"][0]["label"] == "sagc+resume"


def test_unknown_rollout_key_is_named_with_file_and_line(tmp_path):
    path = _write(tmp_path, "oversample", 1.5)
    with pytest.raises(InputError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "controllers[0].rollout.oversample" in msg and "over_sample" in msg  # valid keys listed
    assert str(path) in msg and "line 12" in msg


@pytest.mark.parametrize("key, value", [("over_sample", 0.5), ("max_staleness", 0), ("policy", "nope")])
def test_bad_rollout_value_names_the_key_file_and_line(tmp_path, key, value):
    text = SCENARIO_TEXT.replace("      policy: resume\n", "") if key == "policy" else SCENARIO_TEXT
    path = tmp_path / "s.yaml"
    path.write_text(text.format(key=key, value=value))
    line = 11 if key == "policy" else 12
    with pytest.raises(InputError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert str(value) in msg and str(path) in msg
    assert f"controllers[0].rollout.{key} " in msg, msg
    assert f"line {line})" in msg, msg


def test_bad_rollout_value_is_an_input_error_naming_file(tmp_path):
    """What holds today, bug or not: an InputError naming the knob, the file and a line."""
    path = _write(tmp_path, "over_sample", 0.5)
    with pytest.raises(InputError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "over_sample" in msg and "0.5" in msg and str(path) in msg and "line " in msg


# ---- traces written under a policy ------------------------------------------------------------
RESUME_G4 = {"kind": "static", "group_size": 4, "rollout": {"policy": "resume", "over_sample": 1.5}}


@pytest.fixture
def resume_trace(scenario, tmp_path):
    path = write_run_trace(scenario, tmp_path / "run.jsonl", RESUME_G4, steps=30)
    return path, list(read_trace(path))


def test_trace_under_a_policy_is_valid_and_flags_completions(resume_trace):
    path, records = resume_trace
    assert len(records) == 30
    aborted = resumed = 0
    outcomes = set()
    for rec in records:
        for g in rec["groups"]:
            n = len(g["lengths"])
            assert len(g["aborted"]) == n and len(g["resumed"]) == n
            assert g["outcome"] in OUTCOMES
            outcomes.add(g["outcome"])
            if any(g["aborted"]):
                assert g["outcome"] == "carried"  # a group with a cut completion is not trained
            aborted += sum(g["aborted"])
            resumed += sum(g["resumed"])
    assert aborted > 0 and resumed > 0
    assert outcomes == {"trained", "carried"}


def test_trace_under_a_policy_replays_only_finished_completions(resume_trace, tmp_path):
    path, records = resume_trace
    kept = [n for rec in records for g in rec["groups"]
            for n, a in zip(g["lengths"], g.get("aborted") or [False] * len(g["lengths"])) if not a]
    cut = [n for rec in records for g in rec["groups"] for n, a in zip(g["lengths"], g["aborted"]) if a]
    assert sorted(n for rec in records for g in finished_groups(rec) for n in g["lengths"]) == sorted(kept)
    assert sorted(recorded_pool(str(path)).length.tolist()) == sorted(kept)
    only_cut = set(cut) - set(kept)
    assert only_cut  # some cut lengths appear nowhere else: the check below would see them
    sc_path = tmp_path / "replay.yaml"
    sc_path.write_text(yaml.safe_dump({
        "steps": 20, "seed": 2, "prompts_per_step": 4, "group_sizes": [2, 4, 8],
        "lengths": {"model": "trace", "path": path.name}, "engine": {"slots": 16},
        "controllers": [{"kind": "static", "group_size": 4}]}, sort_keys=False))
    sc = load_scenario(sc_path)
    model = LengthModel(sc)
    replayed = np.concatenate([model.sample_step(t, 8).length.ravel() for t in range(20)])
    assert set(replayed.tolist()) <= set(kept)
    assert not set(replayed.tolist()) & only_cut
    run = run_scenario(sc, hindsight=False)["controllers"][0]["summary"]
    assert run["steps"] == 20 and run["tokens"] > 0


# ---- StepResult.batch with groups of different sizes ------------------------------------------
def _ragged_step():
    """The first step of sagc + resume on heavy-tail whose trained groups have different sizes (a
    group carried from a step at another G is trained with its own G)."""
    sc = load_scenario("heavy-tail").replace(steps=10)
    for sr in iter_steps(sc, sagc.make("sagc"), rollout={"policy": "resume", "over_sample": 2.0, "max_staleness": 3}):
        sizes = np.bincount(np.unique(sr.trained["group"], return_inverse=True)[1])
        if len(set(sizes.tolist())) > 1:
            return sr, sizes
    return None, None


def test_resume_with_a_changing_g_trains_groups_of_different_sizes():
    sr, sizes = _ragged_step()
    assert sr is not None
    assert sr.trained["length"].shape[0] == sizes.sum()


def test_batch_of_ragged_groups_is_refused_or_kept_by_group():
    sr, sizes = _ragged_step()
    assert sr is not None
    try:
        batch = sr.batch
    except ValueError:
        return  # refusing is fine: a (groups, G) Batch cannot hold groups of different sizes
    order = np.argsort(sr.trained["group"], kind="stable")
    per_group = np.split(sr.trained["length"][order], np.cumsum(sizes)[:-1])
    assert batch.length.shape[0] == len(per_group)
    for row, group in zip(batch.length, per_group):
        assert row.tolist() == group.tolist()


# ---- SAGC under tail control chooses G by measured signal per second ---------------------------
def test_sagc_under_a_tail_policy_gets_the_measured_goodput_defaults(scenario):
    from sagc.sim.scenario import controller_from_entry

    under = controller_from_entry({"kind": "sagc", "rollout": {"policy": "auto"}}, scenario.straggler)
    assert under.settings.goodput_from == "measured" and under.settings.auto_slowdown == 0.0
    plain = controller_from_entry({"kind": "sagc", "rollout": "full"}, scenario.straggler)
    assert plain.settings == controller_from_entry({"kind": "sagc"}, scenario.straggler).settings
    assert plain.settings.goodput_from == "model" and plain.settings.auto_slowdown == 0.05
    mine = controller_from_entry({"kind": "sagc", "goodput_from": "model", "rollout": "resume"}, scenario.straggler)
    assert mine.settings.goodput_from == "model" and mine.settings.auto_slowdown == 0.0
    sc = scenario.replace(steps=12)
    a, b = run_scenario(sc, [{"kind": "sagc", "rollout": "auto"},
                             {"kind": "sagc", "goodput_from": "measured", "auto_slowdown": 0.0, "rollout": "auto"}],
                        hindsight=False)["controllers"]
    assert a["series"] == b["series"]
