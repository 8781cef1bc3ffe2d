"""Prompt pools, ragged per-prompt groups and the per-prompt baselines in the simulator (issue 22)."""

import numpy as np
import pytest

from sagc._io import InputError
from sagc.sim import load_scenario, parse_scenario
from sagc.sim.prompts import PromptPool
from sagc.sim.runner import iter_steps, pool_progress, run_scenario, to_json
from sagc.sim.scenario import controller_from_entry
from sagc.sim.stepper import Stepper, ragged_signal
from sagc.utility import realised

POOL = {"pool": 24, "learning": {"per_visit": 0.3, "per_step": 0.001}}


@pytest.fixture
def pool_scenario(make_scenario):
    return lambda **changes: make_scenario(prompts=POOL, **changes)


def test_scenario_without_pool_has_no_prompts_key(make_scenario, pool_scenario):
    assert "prompts" not in make_scenario().to_dict()
    sc = pool_scenario()
    assert sc.to_dict()["prompts"] == POOL and parse_scenario(sc.to_dict()).prompts == sc.prompts


@pytest.mark.parametrize("prompts, key", [
    ({"pool": 0}, "prompts.pool"), ({"pool": 10, "bogus": 1}, "prompts.bogus"),
    ({"pool": 10, "learning": {"per_visit": -1}}, "prompts.learning.per_visit"),
    ({"learning": {}}, "prompts"), ({"pool": 10, "learning": {"rate": 1}}, "prompts.learning.rate"),
])
def test_bad_prompts_key_is_named_with_file_and_line(tmp_path, prompts, key, make_scenario):
    import yaml

    data = make_scenario().to_dict()
    data["prompts"] = prompts
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(InputError) as err:
        load_scenario(str(path))
    msg = str(err.value)
    assert msg.startswith(key) and "bad.yaml" in msg and "line" in msg


def test_trace_pool_refuses_learning_and_oversized_pool(tmp_path):
    import json

    trace = tmp_path / "t.jsonl"
    groups = [{"id": f"g{i}", "lengths": [10 + i, 20, 30, 40], "rewards": [0, 1, i % 2, 1]} for i in range(5)]
    trace.write_text(json.dumps({"step": 0, "group_size": 4, "groups": groups}) + "\n")
    base = {"name": "t", "steps": 5, "prompts_per_step": 2, "group_sizes": [2, 4],
            "lengths": {"model": "trace", "path": str(trace)}}
    with pytest.raises(InputError, match="prompts.pool must be <= the trace's 5"):
        parse_scenario({**base, "prompts": {"pool": 6}})
    with pytest.raises(InputError, match="prompts.learning is not used with model: trace"):
        parse_scenario({**base, "prompts": {"pool": 5, "learning": {"per_visit": 0.1}}})
    sc = parse_scenario({**base, "prompts": {"pool": 5}})
    ctrl = controller_from_entry({"kind": "static", "group_size": 4}, sc.straggler)
    seen = [sr.plan.groups["prompt"].tolist() for sr in iter_steps(sc, ctrl, steps=5)]
    assert sorted(sum(seen, [])) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # two epochs of the 5 recorded prompts


def test_pool_epochs_visit_every_prompt_once_and_learning_moves_pass_rates(pool_scenario):
    sc = pool_scenario()
    ctrl = controller_from_entry({"kind": "static", "group_size": 8}, sc.straggler)
    stepper = Stepper(sc, ctrl)
    before = stepper.pool.pass_rate(np.arange(24), 0)
    prompts = []
    for t in range(12):  # 12 steps x B 4 = two epochs of 24
        prompts += stepper.step(t).plan.groups["prompt"].tolist()
    assert sorted(prompts[:24]) == list(range(24)) and sorted(prompts[24:]) == list(range(24))
    assert prompts[:24] != prompts[24:]  # a fresh order each epoch
    after = stepper.pool.pass_rate(np.arange(24), 12)
    assert np.all(after >= before) and stepper.pool.visits.sum() > 0
    moved = stepper.pool.visits > 0
    expect = 1 / (1 + np.exp(-(stepper.pool.base + 0.001 * 12 + 0.3 * stepper.pool.visits)))
    np.testing.assert_allclose(after, expect)
    assert np.all(after[moved] > before[moved])


def test_ragged_signal_is_informative_times_one_minus_one_over_g():
    group = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3])
    reward = np.array([0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, np.nan])
    informative, signal = ragged_signal(group, reward)
    assert informative == 2  # groups 0 (G 2) and 2 (G 8); group 1 all equal; group 3 one scored reward
    assert signal == pytest.approx((1 - 1 / 2) + (1 - 1 / 8))


@pytest.mark.parametrize("kind", ["knapsack", "sagc-pp"])
def test_ragged_steps_count_signal_per_group(kind, pool_scenario):
    sc = pool_scenario(steps=30)
    entry = {"kind": "sagc", "per_prompt": True} if kind == "sagc-pp" else {"kind": kind}
    ctrl = controller_from_entry(entry, sc.straggler)
    ragged = 0
    for sr in iter_steps(sc, ctrl):
        g, r = sr.trained["group"], sr.trained["reward"]
        sizes = np.bincount(g)[np.unique(g)]
        ragged += np.unique(sizes).size > 1
        want = sum(realised("signal", [np.isfinite(r[g == k]).sum()]) for k in np.unique(g)
                   if np.nanmax(r[g == k]) > np.nanmin(r[g == k]))
        assert sr.signal == pytest.approx(want)
        if sr.decision.group_sizes:
            used = {p: s for p, s in sr.decision.group_sizes.items() if s > 0}
            got = dict(zip(sr.plan.groups["prompt"].tolist(), sr.plan.groups["size"].tolist()))
            assert all(got[p] == s for p, s in used.items() if p in got)
    assert ragged > 0


def test_dynamic_sampling_trains_only_informative_groups(pool_scenario):
    sc = pool_scenario(steps=10)
    for kind in ("dapo", "greso"):
        ctrl = controller_from_entry({"kind": kind}, sc.straggler)
        for sr in iter_steps(sc, ctrl):
            g = sr.trained["group"]
            assert np.unique(g).size <= sc.prompts_per_step
            assert sr.informative == np.unique(g).size  # every trained group is informative
            assert sr.outcome.dropped_prompts == sr.plan.groups["key"].size - np.unique(g).size


def test_dynamic_sampling_needs_policy_full(pool_scenario):
    sc = pool_scenario(steps=2)
    ctrl = controller_from_entry({"kind": "dapo"}, sc.straggler)
    with pytest.raises(ValueError, match="rollout policy full"):
        list(iter_steps(sc, ctrl, rollout={"policy": "resume"}))


def test_same_seed_same_json_with_pools_and_per_prompt_controllers(pool_scenario):
    sc = pool_scenario(steps=25, controllers=[{"kind": "sagc", "per_prompt": True}, {"kind": "dapo"},
                                              {"kind": "greso"}, {"kind": "knapsack"}])
    a = to_json(run_scenario(sc, hindsight=False))
    b = to_json(run_scenario(sc, hindsight=False))
    assert a == b
    c = to_json(run_scenario(sc.replace(seed=4), hindsight=False))
    assert a != c


def test_per_prompt_sagc_is_plain_sagc_where_prompts_do_not_recur(make_scenario):
    sc = make_scenario(steps=30)
    plain = run_scenario(sc, controllers=[{"kind": "sagc"}], hindsight=False)["controllers"][0]
    pp = run_scenario(sc, controllers=[{"kind": "sagc", "per_prompt": True}], hindsight=False)["controllers"][0]
    assert plain["series"] == pp["series"]


def test_prompt_pool_is_keyed_by_seed_only(pool_scenario):
    a, b = PromptPool(pool_scenario()), PromptPool(pool_scenario())
    np.testing.assert_array_equal(a.ids_at(20, 10), b.ids_at(20, 10))
    assert sorted(a.ids_at(0, 24).tolist()) == list(range(24))


def test_dynamic_sampling_survives_a_controller_that_skips_everything(pool_scenario):
    sc = pool_scenario(steps=12)
    ctrl = controller_from_entry({"kind": "greso", "p_easy": 0.0, "p_hard": 0.0, "p_min": 1e-9, "p_step": 0.0},
                                 sc.straggler)
    results = list(iter_steps(sc, ctrl))  # once every prompt is predicted all-equal, batches are skipped
    assert all(sr.stats.n > 0 for sr in results)


def test_pool_progress_times_the_first_step_at_each_level():
    out = pool_progress(0.52, [0.55, 0.61, 0.58, 0.66, 0.71], [10.0, 10.0, 5.0, 5.0, 20.0])
    assert out["pool_pass_rate_start"] == 0.52 and out["pool_pass_rate"] == 0.71
    assert out["pool_pass_seconds"] == {"0.55": 10.0, "0.60": 20.0, "0.65": 30.0, "0.70": 50.0}


def test_a_learning_pool_reports_its_progress_and_fresh_prompts_do_not(pool_scenario, make_scenario):
    res = run_scenario(pool_scenario(steps=40), controllers=[{"kind": "static", "group_size": 4}],
                       hindsight=False)
    s, series = res["controllers"][0]["summary"], res["controllers"][0]["series"]
    assert s["pool_pass_rate"] > s["pool_pass_rate_start"]  # training on mixed groups lifts pass rates
    assert len(series["pool_pass"]) == 40 and series["pool_pass"][-1] == s["pool_pass_rate"]
    levels = sorted(s["pool_pass_seconds"])
    assert levels and all(float(k) > s["pool_pass_rate_start"] for k in levels)
    assert [s["pool_pass_seconds"][k] for k in levels] == sorted(s["pool_pass_seconds"][k] for k in levels)
    plain = run_scenario(make_scenario(steps=5), controllers=[{"kind": "static", "group_size": 4}],
                         hindsight=False)["controllers"][0]
    assert "pool_pass" not in plain["series"] and "pool_pass_rate" not in plain["summary"]
