"""Per-prompt group sizes in the core (issue 22): Decision.group_sizes, decide(prompt_ids=),
update(prompt_ids=), SAGC per_prompt, the dapo / greso / knapsack baselines, the bounded table."""

import json

import numpy as np
import pytest

import sagc
from sagc.controllers.base import Decision, GroupSizes, check_group_sizes
from sagc.controllers.prompts import BYTES_PER_PROMPT, PromptTable, allocate, completion_seconds, mixed_prob
from sagc.stats import StepStats

ALLOWED = [2, 4, 8, 16]


def stats_for(rewards, lengths=None):
    """A StepStats of ragged groups: rewards is a list of per-group reward lists."""
    gid = np.concatenate([np.full(len(r), i) for i, r in enumerate(rewards)])
    rew = np.concatenate([np.asarray(r, dtype=float) for r in rewards])
    length = np.full(rew.size, 100) if lengths is None else np.asarray(lengths)
    return StepStats(group_id=gid, length=length, reward=rew, truncated=np.zeros(rew.size, bool), group_size=8,
                     rollout_s=10.0, step_s=12.0)


def feed(ctrl, steps=6, b=8):
    """Prompts 0..b-1 recur every step: even ids always pass, odd ids are mixed."""
    for _ in range(steps):
        d = ctrl.decide(ALLOWED, prompts=b, prompt_ids=np.arange(4 * b))
        rewards = [[1.0] * 8 if p % 2 == 0 else [0.0, 1.0] * 4 for p in range(b)]
        ctrl.update(stats_for(rewards), prompt_ids=np.arange(b))
    return d


def test_decision_as_dict_unchanged_without_sizes():
    assert "group_sizes" not in Decision(group_size=8).as_dict()
    assert Decision(group_size=8, group_sizes={3: 4, 5: 0}).as_dict()["group_sizes"] == {"3": 4, "5": 0}


def test_group_sizes_is_a_read_only_mapping_in_offer_order():
    gs = GroupSizes(np.array([9, 3, 5]), np.array([4, 0, 8]))
    assert gs == {9: 4, 3: 0, 5: 8} and len(gs) == 3 and list(gs) == [9, 3, 5]
    assert list(gs.items()) == [(9, 4), (3, 0), (5, 8)] and gs.get(5) == 8 and gs.get(7, 0) == 0
    assert Decision(group_size=8, group_sizes=gs).as_dict()["group_sizes"] == {"9": 4, "3": 0, "5": 8}
    with pytest.raises(ValueError):  # a frozen decision's sizes cannot be changed behind its back
        gs.sizes[0] = 2
    with pytest.raises(ValueError, match="equally long"):
        GroupSizes(np.array([1, 2]), np.array([4]))


@pytest.mark.parametrize("sizes, message", [
    (GroupSizes(np.array([1, 0]), np.array([4, 4])), "not a prefix"),
    (GroupSizes(np.array([0, 1]), np.array([4, 3])), "G=3"),
    ({0: 4, 1: 3}, "G=3"),
    ({1: 4}, "not a prefix"),
])
def test_check_group_sizes_refuses_a_bad_allocation(sizes, message):
    with pytest.raises(RuntimeError, match=message):
        check_group_sizes(Decision(group_size=4, group_sizes=sizes), np.arange(4), (2, 4, 8), "ctrl")


@pytest.mark.parametrize("name", ["static", "sagc", "aimd", "inverse_pass_rate"])
def test_existing_controllers_ignore_prompt_ids(name):
    a, b = sagc.make(name), sagc.make(name)
    for _ in range(5):
        da = a.decide(ALLOWED, prompts=8)
        db = b.decide(ALLOWED, prompts=8, prompt_ids=list(range(32)))
        assert db.group_sizes is None and db.group_size == da.group_size
        st = stats_for([[0.0, 1.0] * 4] * 8)
        a.update(st)
        b.update(st, prompt_ids=np.arange(8))


def test_sagc_per_prompt_falls_back_without_history():
    plain, pp = sagc.make("sagc"), sagc.make("sagc", per_prompt=True)
    for _ in range(3):
        d1 = plain.decide(ALLOWED, prompts=8, prompt_ids=np.arange(100, 132))
        d2 = pp.decide(ALLOWED, prompts=8, prompt_ids=np.arange(100, 132))
        assert d2.group_sizes is None and d1 == d2
        st = stats_for([[0.0, 1.0] * 4] * 8)
        plain.update(st, prompt_ids=np.arange(8))
        pp.update(st, prompt_ids=np.arange(8))  # other ids than the ones offered: no history for these


def test_sagc_per_prompt_skips_predicted_all_equal_and_sizes_the_rest():
    ctrl = sagc.make("sagc", per_prompt=True, explore=0.0)
    d = feed(ctrl)
    sizes = d.group_sizes
    assert sizes is not None
    ids = list(sizes)
    assert ids == list(range(len(ids)))  # a prefix of the ids offered
    seen_even = [p for p in ids if p < 8 and p % 2 == 0]
    assert seen_even and all(sizes[p] == 0 for p in seen_even)  # always-pass prompts are skipped
    assert all(sizes[p] > 0 for p in ids if p % 2 == 1 or p >= 8)
    assert sum(g > 0 for g in sizes.values()) == 8  # B kept
    assert all(g == 0 or g in ALLOWED for g in sizes.values())


def test_sagc_per_prompt_state_round_trip():
    a = sagc.make("sagc", per_prompt=True)
    feed(a, steps=4)
    state = json.loads(json.dumps(a.state_dict()))  # plain JSON
    assert len(state["state"]["prompts"]["id"]) == 8
    b = sagc.make("sagc", per_prompt=True)
    b.load_state_dict(state)
    for _ in range(3):
        da = a.decide(ALLOWED, prompts=8, prompt_ids=np.arange(32))
        db = b.decide(ALLOWED, prompts=8, prompt_ids=np.arange(32))
        assert da == db
        st = stats_for([[0.0, 1.0, 1.0, 1.0]] * 8)
        a.update(st, prompt_ids=np.arange(8))
        b.update(st, prompt_ids=np.arange(8))
    assert a.state_dict() == b.state_dict()


def test_sagc_per_prompt_state_validated_on_load():
    a = sagc.make("sagc", per_prompt=True)
    feed(a, steps=2)
    good = a.state_dict()
    cases = {
        "prompts.id": lambda s: s["prompts"].__setitem__("id", [-1] + s["prompts"]["id"][1:]),
        "prompts.succ": lambda s: s["prompts"].__setitem__("succ", ["x"] + s["prompts"]["succ"][1:]),
        "equally long": lambda s: s["prompts"]["fail"].pop(),
        "'prompts' is missing": lambda s: s.pop("prompts"),
    }
    for message, spoil in cases.items():
        bad = json.loads(json.dumps(good))
        spoil(bad["state"])
        with pytest.raises(ValueError, match=message):
            sagc.make("sagc", per_prompt=True).load_state_dict(bad)
    with pytest.raises(ValueError, match="per_prompt=True"):
        sagc.make("sagc").load_state_dict(good)
    small = sagc.make("sagc", per_prompt=True, prompt_capacity=4)
    with pytest.raises(ValueError, match="more than prompt_capacity"):
        small.load_state_dict(good)
    plain = sagc.make("sagc")
    plain.load_state_dict(plain.state_dict())  # plain SAGC's state has no table and loads as before
    assert "prompts" not in plain.state_dict()["state"]


@pytest.mark.parametrize("settings, message", [
    ({"per_prompt": "yes"}, "per_prompt"), ({"prompt_capacity": 0}, "prompt_capacity"),
    ({"explore": 1.5}, "explore"), ({"skip_below": -0.1}, "skip_below"), ({"prompt_decay": 2.0}, "prompt_decay"),
])
def test_bad_per_prompt_settings_are_named(settings, message):
    with pytest.raises((ValueError, TypeError), match=message):
        sagc.make("sagc", **settings)


@pytest.mark.parametrize("kind, settings, message", [
    ("dapo", {"gen_batch_factor": 0.5}, "gen_batch_factor"), ("dapo", {"max_num_gen_batches": 0}, "max_num_gen_batches"),
    ("greso", {"p_easy": 1.5}, "p_easy"), ("greso", {"target_zero_variance": -1.0}, "target_zero_variance"),
    ("knapsack", {"budget_per_prompt": 0.5}, "budget_per_prompt"), ("knapsack", {"bogus": 1}, "unknown setting"),
])
def test_bad_baseline_settings_are_named(kind, settings, message):
    with pytest.raises((ValueError, TypeError), match=message):
        sagc.make(kind, **settings)


@pytest.mark.parametrize("ids, message", [([1, 1, 2], "repeat"), ([-1, 2], ">= 0"), (["a", "b"], "integer"),
                                          ([[1, 2]], "1-D")])
def test_bad_prompt_ids_are_named(ids, message):
    with pytest.raises(ValueError, match=message):
        sagc.make("sagc", per_prompt=True).decide(ALLOWED, prompts=2, prompt_ids=ids)


def test_update_prompt_ids_must_match_groups():
    with pytest.raises(ValueError, match="prompt_ids has 3 ids for 2 groups"):
        sagc.make("sagc").update(stats_for([[0, 1], [1, 1]]), prompt_ids=[0, 1, 2])


@pytest.mark.parametrize("kind", ["greso", "knapsack", "dapo"])
def test_baselines_round_trip(kind):
    a = sagc.make(kind)
    for _ in range(4):
        a.decide(ALLOWED, prompts=8, prompt_ids=np.arange(24))
        a.update(stats_for([[1.0] * 8 if p % 2 == 0 else [0.0, 1.0] * 4 for p in range(8)]), prompt_ids=np.arange(8))
    b = sagc.make(kind)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert a.decide(ALLOWED, prompts=8, prompt_ids=np.arange(24)) == b.decide(ALLOWED, prompts=8, prompt_ids=np.arange(24))


def test_greso_skips_all_equal_prompts_with_its_exploration_probability():
    ctrl = sagc.make("greso", p_easy=0.0, p_hard=0.0, p_min=1e-9, p_step=0.0)
    d = feed(ctrl, steps=2)
    assert all(d.group_sizes[p] == 0 for p in range(0, 8, 2))
    assert all(d.group_sizes[p] == 8 for p in range(1, 8, 2))
    assert ctrl.sampling.gen_factor == 1.5 and sagc.make("dapo").sampling.gen_factor == 3.0


def test_knapsack_spends_its_budget_on_mixed_prompts():
    ctrl = sagc.make("knapsack")
    d = feed(ctrl, steps=2)
    sizes = d.group_sizes
    assert len(sizes) == 8 and sum(sizes.values()) <= 8 * 8
    assert min(sizes[p] for p in range(1, 8, 2)) > max(sizes[p] for p in range(0, 8, 2))


def test_prompt_table_is_bounded_and_direct_mapped():
    t = PromptTable(capacity=16)
    assert t.nbytes == 0  # allocated on first use
    t.observe(np.arange(40), np.ones(40), np.full(40, 4.0), np.zeros(40))
    assert len(t) == 16 and t.nbytes == 16 * BYTES_PER_PROMPT
    found, _ = t.lookup(np.array([0, 24, 39]))
    assert found.tolist() == [False, True, True]  # slot 0 last held 32 (0 forgotten); slot 8: 24; slot 7: 39
    assert BYTES_PER_PROMPT == 25


def test_allocate_meets_the_budget_and_mixed_prob_matches_closed_form():
    rng = np.random.default_rng(0)
    value = np.sort(rng.random((50, 4)), axis=1)
    cost = np.tile([2.0, 4.0, 8.0, 16.0], (50, 1))
    level = allocate(value, cost, budget=50 * 6.0)
    assert cost[np.arange(50), level].sum() <= 50 * 6.0
    got = mixed_prob(np.array([2.0]), np.array([3.0]), np.array([0, 1, 4]))[0]
    p = np.random.default_rng(1).beta(2.0, 3.0, 400_000)
    assert got[0] == 0.0 and got[1] == pytest.approx(0.0, abs=1e-12)
    assert got[2] == pytest.approx(np.mean(1 - p**4 - (1 - p) ** 4), abs=3e-3)


def test_completion_seconds_charges_the_wait_for_the_longest_to_long_prompts():
    rel = np.array([0.5, 1.0, 2.0])  # relative length of each prompt's completions
    surv = np.array([1e-6, 1e-3, 1e-1])  # chance one completion outlasts the step's expected longest
    only_tokens = completion_seconds(rel, surv, np.array([0.0, 0.0, 1e-4, 0.0]), 5000.0, 0.2, 128.0, 600.0)
    assert only_tokens == pytest.approx(1e-4 * 600.0 * rel / rel.mean())  # proportional to length
    waits = completion_seconds(rel, surv, np.array([0.0, 0.02, 1e-4, 0.0]), 5000.0, 0.2, 128.0, 600.0)
    assert np.all(np.diff(waits) > 0) and waits[2] / waits[1] > 2 * rel[2] / rel[1]  # far more than length
    assert completion_seconds(rel, surv, np.array([0.0, -1.0, -1.0]), 5000.0, 0.2, 128.0, 600.0) is None


def test_sagc_per_prompt_gives_a_long_prompt_fewer_samples_than_a_short_one():
    """Mixed prompts alike but for one with completions 4x longer: once the step-time and risk models
    are fitted, the long one (what the step waits for) never gets more samples than the short ones,
    and gets fewer whenever the step's G leaves room to differ."""
    ctrl = sagc.make("sagc", per_prompt=True, explore=0.0)
    rng = np.random.default_rng(0)
    b, fewer = 8, 0
    for step in range(16):
        d = ctrl.decide(ALLOWED, prompts=b, prompt_ids=np.arange(4 * b))
        if step >= 8:  # models fitted
            sizes = d.group_sizes
            assert sizes is not None and sizes[1] > 0
            short = min(sizes[p] for p in (3, 5, 7))
            assert sizes[1] <= short
            fewer += sizes[1] < short
        rewards = [[1.0] * 8 if p % 2 == 0 else [0.0, 1.0] * 4 for p in range(b)]
        scale = np.where(np.arange(b) == 1, 4.0, 1.0)[:, None] * 300.0
        lengths = np.rint(scale * rng.lognormal(0.0, 0.5, (b, 8))).astype(int).ravel()
        st = StepStats(group_id=np.repeat(np.arange(b), 8), length=lengths, reward=np.concatenate(rewards),
                       truncated=np.zeros(8 * b, bool), group_size=8, rollout_s=0.02 * lengths.max(),
                       step_s=2.0 + 0.02 * lengths.max() + 1e-5 * lengths.sum())
        ctrl.update(st, prompt_ids=np.arange(b))
    assert fewer >= 2


def test_cached_predictions_equal_a_fresh_controllers():
    """update warms decide's predictions (risk, utility per predicted second); a controller
    restored from the same state, with nothing cached, decides the same floats every step."""
    ctrl = sagc.make("sagc", per_prompt=True)
    rng = np.random.default_rng(3)
    sized = 0
    for t in range(14):
        fresh = sagc.make("sagc", per_prompt=True)
        fresh.load_state_dict(json.loads(json.dumps(ctrl.state_dict())))
        d = ctrl.decide(ALLOWED, prompts=8, prompt_ids=np.arange(32))  # reads what update cached
        assert fresh.decide(ALLOWED, prompts=8, prompt_ids=np.arange(32)) == d
        sized += d.group_sizes is not None
        rewards = [list((rng.random(8) < (p % 4) / 3.0).astype(float)) for p in range(8)]
        lengths = rng.integers(50, 900 * (1 + t % 3), 64)
        ctrl.update(stats_for(rewards, lengths), prompt_ids=np.arange(8))
    assert sized >= 10
