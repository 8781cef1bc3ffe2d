"""Rollout policies (sagc.rollout) driven by hand-made finish times, no simulator.

A small "environment" stands in for the engine: every completion (group key, index) has a full
length fixed when its group is first seen, every step draws a speed per submitted row, and the
step's stop is the plan's own stop_time. Rows finished by the stop generate all they had left;
the others a partial count (strictly less than what they had left).
"""

import copy
import itertools
import json
from collections import Counter

import numpy as np
import pytest

from sagc.rollout import RolloutPolicy, RolloutSettings, rollout_settings
from sagc.rollout.auto import RateChooser

ABORTING = ("drop", "resume", "defer", "auto")


class Env:
    """Ground truth for the policy: full lengths per (group key, index), finish times per step."""

    def __init__(self, seed: int = 0, sizes=(4, 8)) -> None:
        self.seed = seed
        self.sizes = sizes
        self.next_prompt = 0
        self.drawn: list[int] = []
        self.full: dict[int, np.ndarray] = {}  # group key -> (size,) full lengths

    def take(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_prompt, self.next_prompt + n, dtype=np.int64)
        self.next_prompt += n
        self.drawn += ids.tolist()
        return ids

    def group_size(self, t: int) -> int:
        return int(np.random.default_rng([self.seed, 0, t]).choice(self.sizes))

    def lengths(self, key: int, size: int) -> np.ndarray:
        if key not in self.full:  # heavy tail: a few groups run far longer than the rest
            rng = np.random.default_rng([self.seed, 1, key])
            self.full[key] = np.clip(rng.lognormal(np.log(100) + 0.6 * rng.standard_normal(), 0.7, size), 1,
                                     4000).astype(np.int64)
        assert self.full[key].shape[0] == size
        return self.full[key]

    def finish(self, t: int, remaining: np.ndarray) -> np.ndarray:
        speed = np.random.default_rng([self.seed, 2, t]).uniform(0.5, 1.5, remaining.shape[0])
        return remaining * speed * 0.01


def full_lengths(env: Env, plan) -> np.ndarray:
    """(n,) full length of every row of the plan."""
    g, idx = plan.rows["group"], plan.rows["index"]
    keys, sizes = plan.groups["key"], plan.groups["size"]
    return np.array([env.lengths(int(keys[a]), int(sizes[a]))[i] for a, i in zip(g.tolist(), idx.tolist())],
                    dtype=np.int64)


def run_step(policy: RolloutPolicy, env: Env, t: int, prompts: int = 8) -> dict:
    plan = policy.plan(t, env.group_size(t), prompts, env.take)
    full = full_lengths(env, plan)
    sub = plan.submit
    remaining = full[sub] - plan.rows["tokens"][sub]
    assert np.all(remaining > 0)  # a submitted row still has tokens to generate
    finish = env.finish(t, remaining)
    stop = plan.stop_time(finish)
    finished = finish <= stop
    partial = np.floor(remaining * (stop / finish)).astype(np.int64)
    generated = np.where(finished, remaining, np.minimum(partial, remaining - 1))
    out = policy.close(plan, finished, generated)
    signal = float(out.trained_groups.size)
    policy.feedback(signal, stop + 1.0, out.on_policy_tokens / max(out.on_policy_tokens + out.stale_tokens, 1))
    return {"t": t, "plan": plan, "full": full, "finish": finish, "stop": stop, "finished": finished,
            "generated": generated, "out": out}


def drive(policy: RolloutPolicy, env: Env, steps: int, start: int = 0, prompts: int = 8) -> list[dict]:
    return [run_step(policy, env, t, prompts) for t in range(start, start + steps)]


def make(policy: str, **knobs) -> RolloutPolicy:
    if policy in ("drop", "resume", "defer") and "over_sample" not in knobs:
        knobs["over_sample"] = 1.5
    return RolloutPolicy({"policy": policy, **knobs})


# ---- settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, names", [
    ({"policy": "nope"}, ["rollout.policy", "'nope'", "full", "drop", "resume", "defer", "auto"]),
    ({"policy": "resume", "over_sample": 0.5}, ["rollout.over_sample", "0.5"]),
    ({"policy": "drop", "over_sample": 17}, ["rollout.over_sample"]),
    ({"policy": "full", "over_sample": 1.5}, ["rollout.over_sample", "full"]),
    ({"policy": "resume", "max_staleness": 0}, ["rollout.max_staleness", "0"]),
    ({"policy": "resume", "max_staleness": 1.5}, ["rollout.max_staleness"]),
    ({"policy": "auto", "over_sample_grid": []}, ["rollout.over_sample_grid"]),
    ({"policy": "auto", "over_sample_grid": [1.0, 1.5, 1.0]}, ["rollout.over_sample_grid", "repeat"]),
    ({"policy": "auto", "over_sample_grid": [1.0, 0.9]}, ["rollout.over_sample_grid[1]", "0.9"]),
    ({"policy": "auto", "min_on_policy": 1.5}, ["rollout.min_on_policy", "1.5"]),
    ({"policy": "auto", "min_on_policy": -0.1}, ["rollout.min_on_policy"]),
    ({"policy": "defer", "long_round": 0}, ["rollout.long_round"]),
    ({"policy": "auto", "explore_every": 1}, ["rollout.explore_every"]),
    ({"policy": "auto", "credit": "group"}, ["rollout.credit", "carry", "step"]),
])
def test_bad_settings_name_the_key(value, names):
    with pytest.raises(ValueError) as exc:
        rollout_settings(value)
    for name in names:
        assert name in str(exc.value), (name, str(exc.value))
    with pytest.raises(ValueError):
        RolloutPolicy(value)


def test_unknown_settings_key_is_named_and_valid_keys_listed():
    with pytest.raises(ValueError) as exc:
        rollout_settings({"policy": "resume", "oversample": 1.5})
    msg = str(exc.value)
    assert "oversample" in msg
    for key in ("policy", "over_sample", "max_staleness", "long_round", "over_sample_grid", "min_on_policy",
                "window", "explore_every"):
        assert key in msg


def test_settings_forms_and_defaults():
    assert rollout_settings(None) == RolloutSettings() and RolloutSettings().policy == "full"
    assert not RolloutSettings().aborts and RolloutSettings(policy="drop", over_sample=1.2).aborts
    assert rollout_settings("resume") == RolloutSettings(policy="resume")
    s = rollout_settings({"policy": "auto", "over_sample_grid": [2, 1, 1.5]})
    assert s.over_sample_grid == (1.0, 1.5, 2.0)  # sorted floats
    assert json.loads(json.dumps(s.to_dict())) == s.to_dict()
    assert rollout_settings(s.to_dict()) == s
    p = RolloutPolicy("resume", over_sample=2.0, max_staleness=2)  # keyword knobs override
    assert p.settings == RolloutSettings(policy="resume", over_sample=2.0, max_staleness=2)


# ---- the core invariants, for every aborting policy ----------------------------------------
@pytest.fixture(scope="module")
def runs():
    """40 steps of each policy on the same hand-made environment (B = 8, G in {4, 8})."""
    out = {}
    for name in ("full",) + ABORTING:
        policy, env = make(name), Env(seed=11)
        out[name] = (policy, env, drive(policy, env, 40))
    return out


@pytest.mark.parametrize("name", ("full",) + ABORTING)
def test_trained_groups_are_whole_and_have_full_lengths(runs, name):
    _, _, steps = runs[name]
    cut_somewhere = False
    for s in steps:
        plan, out, full = s["plan"], s["out"], s["full"]
        g_of_row = plan.rows["group"]
        expected_rows = np.flatnonzero(np.isin(g_of_row, out.trained_groups))
        assert np.array_equal(np.sort(out.trained_rows), expected_rows)
        for g in out.trained_groups.tolist():
            rows = np.flatnonzero(g_of_row == g)
            assert rows.shape[0] == plan.groups["size"][g]  # all G rows of the group
            assert np.array_equal(np.sort(plan.rows["index"][rows]), np.arange(plan.groups["size"][g]))
        assert np.array_equal(out.length[out.trained_rows], full[out.trained_rows])  # never a partial row
        assert np.all(out.length <= full)
        assert out.trained_groups.size >= min(plan.prompts, plan.groups["key"].shape[0])
        cut_somewhere |= bool((~s["finished"]).any())
    assert cut_somewhere == (name != "full")  # the aborting policies did cut rows (the test bites)


@pytest.mark.parametrize("name", ABORTING)
def test_every_prompt_is_trained_at_most_once_and_accounted_for(runs, name):
    policy, env, steps = runs[name]
    trained = Counter()
    dropped: set[int] = set()
    set_aside: set[int] = set()  # carried (resume/auto) or deferred (defer) at some step
    for s in steps:
        plan, out = s["plan"], s["out"]
        trained.update(plan.groups["prompt"][out.trained_groups].tolist())
        open_groups = np.setdiff1d(np.arange(plan.groups["key"].shape[0]), out.trained_groups)
        open_prompts = plan.groups["prompt"][open_groups].tolist()
        if name == "drop":
            assert out.dropped_prompts == len(open_prompts) and out.carried_groups == out.deferred_prompts == 0
            dropped.update(open_prompts)
        elif name == "defer":
            assert out.deferred_prompts == len(open_prompts) and out.dropped_prompts == out.carried_groups == 0
            set_aside.update(open_prompts)
        else:
            assert out.carried_groups == len(open_prompts) and out.dropped_prompts == out.deferred_prompts == 0
            set_aside.update(open_prompts)
    assert max(trained.values()) == 1, [p for p, c in trained.items() if c > 1]  # none trained twice
    pending = set(policy.carried["prompt"].tolist()) | set(policy.deferred["prompt"].tolist())
    assert policy.pending_prompts == len(pending)
    drawn = env.drawn
    assert len(set(drawn)) == len(drawn)
    assert not dropped & set(trained) and not pending & set(trained) and not dropped & pending
    assert len(drawn) == len(trained) + len(dropped) + policy.pending_prompts
    assert set(drawn) == set(trained) | dropped | pending
    if name == "drop":
        assert dropped
    else:
        assert set_aside - pending  # some prompts were set aside and trained later ...
        for p in set_aside - pending:
            assert trained[p] == 1  # ... each exactly once


@pytest.mark.parametrize("name", ("full",) + ABORTING)
def test_token_accounting(runs, name):
    for s in runs[name][2]:
        out = s["out"]
        trained_tokens = int(out.length[out.trained_rows].sum())
        assert out.on_policy_tokens + out.stale_tokens == trained_tokens
        assert out.on_policy_tokens >= 0 and out.stale_tokens >= 0
        assert np.array_equal(out.seg.sum(axis=1), out.length)  # per-version counts add up
        if name in ("full", "drop", "defer"):
            assert out.stale_tokens == 0 and out.max_staleness == 0
        if name in ("drop", "defer"):  # partial tokens of the groups let go are thrown away
            plan = s["plan"]
            open_rows = ~np.isin(plan.rows["group"], out.trained_groups)
            assert out.wasted_tokens == int(out.length[open_rows].sum())
        else:
            assert out.wasted_tokens == 0
    if name in ("resume", "auto"):
        assert sum(s["out"].stale_tokens for s in runs[name][2]) > 0


@pytest.mark.parametrize("name", ("full",) + ABORTING)
def test_should_stop_agrees_with_stop_time(runs, name):
    """An event-driven engine (ask should_stop after each finish) stops when stop_time says."""
    for s in runs[name][2]:
        plan, finish = s["plan"], s["finish"]
        event_stop = None
        for time in np.unique(finish):
            if plan.should_stop(finish <= time):
                event_stop = float(time)
                break
        assert event_stop == s["stop"]
        assert not plan.should_stop(finish < s["stop"])


def test_defer_long_rounds_run_every_deferred_prompt_to_the_end(runs):
    _, _, steps = runs["defer"]
    long_steps = [s for s in steps if s["plan"].kind == "long"]
    assert long_steps
    waits = np.concatenate([s["out"].deferred_waits for s in steps])
    assert waits.size and waits.min() >= 1
    for s in long_steps:
        assert s["finished"].all() and s["out"].trained_groups.size == s["plan"].groups["key"].shape[0]
        assert np.all(s["plan"].groups["attempt"] >= 1) and not s["plan"].new.any()


# ---- staleness ----------------------------------------------------------------------------
@pytest.mark.parametrize("max_staleness", [1, 2])
def test_resume_bounds_token_age_and_pinned_groups_hold_the_stop(max_staleness):
    policy, env = make("resume", over_sample=2.0, max_staleness=max_staleness), Env(seed=5)
    pinned_steps = 0
    ages = []
    for s in drive(policy, env, 60):
        plan, out, t = s["plan"], s["out"], s["t"]
        assert out.max_staleness <= max_staleness
        first = out.first[out.trained_rows]
        age = t - first[first >= 0]
        assert np.all(age <= max_staleness)
        ages.append(out.max_staleness)
        assert out.seg.shape[1] == max_staleness + 1
        pinned = plan.groups["pinned"]
        if pinned.any():
            pinned_steps += 1
            sub_group = plan.rows["group"][plan.submit]
            in_pinned = pinned[sub_group]
            if in_pinned.any():
                assert s["stop"] >= s["finish"][in_pinned].max()  # the stop waits for them
            assert set(np.flatnonzero(pinned).tolist()) <= set(out.trained_groups.tolist())
    assert pinned_steps > 0
    assert max(ages) == max_staleness  # the budget is used, not just respected


def test_pinned_group_makes_stop_time_wait():
    """A hand-built carried group that is pinned: the step ends only when it is complete, even
    though enough other groups finished much earlier."""
    policy = make("resume", over_sample=2.0, max_staleness=1)
    env = Env(seed=1, sizes=(2,))
    s0 = run_step(policy, env, 0, prompts=2)
    assert s0["out"].carried_groups > 0
    plan = policy.plan(1, 2, 2, env.take)
    assert plan.groups["pinned"].any()  # carried with tokens of version 0: pinned at max_staleness 1
    pinned_rows = plan.groups["pinned"][plan.rows["group"][plan.submit]]
    finish = np.where(pinned_rows, 100.0, 1.0)
    finish = finish + np.arange(finish.shape[0]) * 1e-3
    assert plan.stop_time(finish) == finish[pinned_rows].max()
    assert not plan.should_stop(finish <= 50.0)


# ---- state ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ABORTING)
def test_state_dict_round_trip_continues_identically(name):
    a, env_a = make(name), Env(seed=7)
    t = 0
    while t < 12 or (name != "drop" and a.pending_prompts == 0):  # stop with something carried over
        run_step(a, env_a, t)
        t += 1
    state = json.loads(json.dumps(a.state_dict()))
    b = RolloutPolicy(a.settings)
    b.load_state_dict(state)
    assert b.pending_prompts == a.pending_prompts
    env_b = copy.deepcopy(env_a)
    for t in range(t, t + 18):
        sa, sb = run_step(a, env_a, t), run_step(b, env_b, t)
        pa, pb = sa["plan"], sb["plan"]
        assert (pa.kind, pa.rate, pa.target, pa.group_size) == (pb.kind, pb.rate, pb.target, pb.group_size)
        for d1, d2 in ((pa.groups, pb.groups), (pa.rows, pb.rows)):
            assert d1.keys() == d2.keys() and all(np.array_equal(d1[k], d2[k]) for k in d1)
        assert np.array_equal(pa.seg, pb.seg) and sa["stop"] == sb["stop"]
        oa, ob = sa["out"], sb["out"]
        for field in oa.__dataclass_fields__:
            assert np.array_equal(np.asarray(getattr(oa, field)), np.asarray(getattr(ob, field))), field
    assert json.dumps(a.state_dict()) == json.dumps(b.state_dict())


@pytest.fixture(scope="module")
def saved_resume_state():
    policy, env = make("resume"), Env(seed=7)
    drive(policy, env, 12)
    state = json.loads(json.dumps(policy.state_dict()))
    assert state["carried_rows"]["tokens"] and any(state["carried_rows"]["tokens"])
    return policy.settings, state


def _refused(settings, state, *names):
    with pytest.raises(ValueError) as exc:
        RolloutPolicy(settings).load_state_dict(state)
    for name in names:
        assert name in str(exc.value), (name, str(exc.value))
    return str(exc.value)


@pytest.mark.parametrize("key", ["carried_rows", "carried_seg", "settings", "chooser", "next_key"])
def test_load_refuses_a_state_missing_a_key(saved_resume_state, key):
    settings, state = saved_resume_state
    damaged = copy.deepcopy(state)
    del damaged[key]
    _refused(settings, damaged, key)


def test_load_refuses_damaged_states(saved_resume_state):
    settings, state = saved_resume_state
    d = copy.deepcopy(state)
    row = next(i for i, n in enumerate(d["carried_rows"]["tokens"]) if n > 0)
    d["carried_seg"][row][0] += 1  # per-version counts no longer add up to the row's tokens
    _refused(settings, d, "carried_seg")
    d = copy.deepcopy(state)
    d["carried_seg"] = d["carried_seg"][:-1]  # one row short
    _refused(settings, d, "carried_seg")
    d = copy.deepcopy(state)
    d["carried_rows"]["group"][0] = len(d["carried"]["key"]) + 3  # points past the carried groups
    _refused(settings, d, "carried_rows")
    d = copy.deepcopy(state)
    del d["carried"]["pinned"]
    _refused(settings, d, "carried")
    d = copy.deepcopy(state)
    d["next_key"] = -1
    _refused(settings, d, "next_key")
    d = copy.deepcopy(state)
    d["chooser"] = {"history": {}, "last_tried": {}, "steps": 0}  # a chooser for a resume policy
    _refused(settings, d, "chooser")
    other = RolloutSettings(policy="resume", over_sample=2.0)
    _refused(other, state, "settings")
    policy = RolloutPolicy(settings)
    policy.load_state_dict(state)  # the undamaged state still loads
    assert policy.pending_prompts == len(state["carried"]["key"])


def test_load_refuses_damaged_auto_chooser():
    policy, env = make("auto"), Env(seed=3)
    drive(policy, env, 10)
    state = json.loads(json.dumps(policy.state_dict()))
    d = copy.deepcopy(state)
    d["chooser"]["history"].pop(next(iter(d["chooser"]["history"])))
    _refused(policy.settings, d, "chooser")
    d = copy.deepcopy(state)
    d["chooser"] = None
    _refused(policy.settings, d, "chooser")


# ---- auto's rate chooser -----------------------------------------------------------------
SIGNAL_PER_S = {1.0: 1.0, 1.25: 1.3, 1.5: 1.6, 2.0: 1.2}  # rate 1.5 is best
GRID = tuple(SIGNAL_PER_S)  # the rates these tests measure (the default grid goes to 8)


def _feed(chooser: RateChooser, steps: int, noise: float = 0.0, share=None, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(steps):
        r = chooser.choose()
        chosen.append(r)
        seconds = 10.0 + rng.uniform(0, 2)
        signal = SIGNAL_PER_S[r] * seconds * (1 + noise * rng.standard_normal())
        chooser.observe(r, signal, seconds, (share or {}).get(r, 1.0))
    return chosen


def test_rate_chooser_starts_with_every_rate_then_picks_the_best_measured():
    settings = RolloutSettings(policy="auto", over_sample_grid=GRID, explore_every=10)
    chosen = _feed(RateChooser(settings), 60)
    assert chosen[:8] == [1.0, 1.0, 1.25, 1.25, 1.5, 1.5, 2.0, 2.0]  # start-up, smallest first
    for i, r in enumerate(chosen[8:], start=8):
        if i % 10 == 0:  # exploration: the rate tried least recently, at each multiple of explore_every
            assert r in settings.over_sample_grid
        else:
            assert r == 1.5, (i, r)
    explored = [chosen[i] for i in range(10, 60, 10)]
    assert set(explored) - {1.5}  # it does re-measure the others


def test_rate_chooser_is_deterministic_and_robust_to_noise():
    settings = RolloutSettings(policy="auto", over_sample_grid=GRID)
    a = _feed(RateChooser(settings), 80, noise=0.05, seed=4)
    b = _feed(RateChooser(settings), 80, noise=0.05, seed=4)
    assert a == b
    assert Counter(a[8:]).most_common(1)[0][0] == 1.5


def test_rate_chooser_respects_the_on_policy_floor():
    settings = RolloutSettings(policy="auto", over_sample_grid=GRID, min_on_policy=0.6, explore_every=1000)
    chosen = _feed(RateChooser(settings), 30, share={1.5: 0.4, 2.0: 0.3})  # 1.5 fastest but too stale
    assert set(chosen[8:]) == {1.25}  # the best rate among those on-policy enough


def test_rate_chooser_ties_go_to_the_smaller_rate():
    settings = RolloutSettings(policy="auto", over_sample_grid=GRID, explore_every=1000)
    ch = RateChooser(settings)
    for r in settings.over_sample_grid:
        for _ in range(2):
            ch.observe(r, 5.0, 10.0, 1.0)
    assert ch.choose() == 1.0


def test_auto_policy_rates_follow_its_feedback():
    """Through the policy: plan.rate is what the chooser picks from policy.feedback."""
    policy, env = make("auto", explore_every=1000, over_sample_grid=GRID), Env(seed=2)
    rates = []
    for t in range(20):
        plan = policy.plan(t, 4, 8, env.take)
        rates.append(plan.rate)
        sub = plan.submit
        remaining = full_lengths(env, plan)[sub] - plan.rows["tokens"][sub]
        finish = env.finish(t, remaining)
        stop = plan.stop_time(finish)
        fin = finish <= stop
        policy.close(plan, fin, np.where(fin, remaining, 0))
        policy.feedback(SIGNAL_PER_S[plan.rate] * 10.0, 10.0, 1.0)
    assert rates[:8] == [1.0, 1.0, 1.25, 1.25, 1.5, 1.5, 2.0, 2.0]
    assert rates[8:] == [1.5] * 12


def test_rate_chooser_blocks_hold_a_rate_and_skip_the_transition_step():
    settings = RolloutSettings(policy="auto", over_sample_grid=GRID, block=3, explore_every=1000)
    ch = RateChooser(settings)
    chosen = []
    for _ in range(30):
        r = ch.choose()
        chosen.append(r)
        ch.observe(r, SIGNAL_PER_S[r] * 10.0, 10.0, 1.0)
    runs = [len(list(g)) for _, g in itertools.groupby(chosen)]
    assert all(n >= 3 for n in runs[:-1])  # a rate is held for whole blocks
    # each start-up block of 3 steps credits 2 (the first is the transition)
    assert all(len(ch.history[repr(r)]) >= 2 for r in settings.over_sample_grid)
    assert len(ch.history[repr(1.0)]) == 2
    assert Counter(chosen[12:]).most_common(1)[0][0] == 1.5


def _backlog_step(ch: RateChooser, step: int, rate: float, carried_in: int | None) -> None:
    """One step of a stream where a step at 2x leaves a carried group that the next step trains:
    its signal 4 and 6 s of its work (of the next step's 12 s) belong to the 2x step."""
    ch.planned(step, rate)
    parts = [(step, 6.0, 1.0)]  # this step's own groups: 6 s of tokens, signal weight 1
    if carried_in is not None:
        parts.append((carried_in, 6.0, 4.0))  # the carried group: tokens generated now, its signal
    ch.closed(step, parts, [step] if rate == 2.0 else [])
    ch.observe(rate, 1.0 + (4.0 if carried_in is not None else 0.0), 12.0 if carried_in is not None else 6.0, 1.0)


def test_carry_credit_charges_a_carried_group_to_the_rate_that_started_it():
    """Per-step credit gives the signal of the group a 2x step leaves behind to whichever rate runs
    next; carry credit gives it (and the seconds spent finishing it) back to 2x."""
    out = {}
    for credit in ("step", "carry"):
        ch = RateChooser(RolloutSettings(policy="auto", over_sample_grid=(1.0, 2.0), credit=credit, explore_every=1000))
        prev = None
        for t, rate in enumerate([1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]):
            _backlog_step(ch, t, rate, prev)
            prev = t if rate == 2.0 else None
        out[credit] = {r: np.asarray(ch.history[repr(r)])[:, :2].sum(axis=0) for r in (1.0, 2.0)}
    # per step: the 1x steps after a 2x step look better (signal 5 in 12 s) than 2x itself (1 in 6 s)
    assert out["step"][1.0][0] > out["step"][2.0][0]
    # carry: 2x holds its groups' whole signal (1 + 4) and the 6 s spent finishing them; 1x its own
    np.testing.assert_allclose(out["carry"][2.0], [3 * 5.0, 3 * 12.0])
    np.testing.assert_allclose(out["carry"][1.0], [5 * 1.0, 5 * 6.0])
    assert sum(v[0] for v in out["carry"].values()) == sum(v[0] for v in out["step"].values())  # nothing lost


def test_carry_credit_state_round_trips_and_old_states_load():
    policy, env = make("auto"), Env(seed=5)
    drive(policy, env, 12)
    state = json.loads(json.dumps(policy.state_dict()))
    assert {"made", "open", "pending"} <= set(state["chooser"])
    again = make("auto")
    again.load_state_dict(state)
    assert again.chooser.state_dict() == policy.chooser.state_dict()
    old = copy.deepcopy(state)  # saved before carry credit: 3-entry records, no made/open/pending
    for k in ("made", "open", "pending"):
        old["chooser"].pop(k)
    old["chooser"]["history"] = {k: [x[:3] for x in v] for k, v in old["chooser"]["history"].items()}
    old["settings"].pop("credit")
    step = make("auto", credit="step")
    step.load_state_dict(old)  # an old run resumes with the credit it ran under
    with pytest.raises(ValueError, match="settings"):
        make("auto").load_state_dict(old)


def test_merge_closed_makes_every_process_credit_the_whole_step():
    """Two ranks each closed their share of step 5 (groups started at steps 4 and 5): after the
    merge both hold the sums per creating step and the union of the carried steps."""
    settings = RolloutSettings(policy="auto", over_sample_grid=(1.0, 2.0))
    a, b = RateChooser(settings), RateChooser(settings)
    a.closed(5, [(4, 10.0, 1.0), (5, 6.0, 0.5)], [5])
    b.closed(5, [(5, 8.0, 1.5)], [3, 5])
    reports = [a.closed_state(), b.closed_state()]
    for ch in (a, b):
        ch.merge_closed(reports)
    assert a.pending == b.pending == [[5.0, 4.0, 10.0, 1.0], [5.0, 5.0, 14.0, 2.0]]
    assert a.open == b.open == [3, 5]
    a.merge_closed([(None, []), (None, [])])  # nothing closed anywhere (e.g. a long round)
    assert a.pending is None and a.open == []
