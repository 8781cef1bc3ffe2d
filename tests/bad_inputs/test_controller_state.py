"""Malformed controller states: load_state_dict refuses them, naming the key, for every key of
every registered controller's real state (so a new state key is covered without a new test)."""

import copy
import json
import re

import numpy as np
import pytest

import sagc
from sagc import REGISTRY, StepStats

ALLOWED = [2, 4, 8]
SETTINGS = {"sagc": {"delta": 0.2, "V": 5.0}}  # others: defaults


def trained(kind: str, steps: int = 14):
    """A controller after `steps` steps of long-tailed lengths, truncations and timings."""
    ctrl = sagc.make(kind, **SETTINGS.get(kind, {}))
    rng = np.random.default_rng(7)
    for t in range(steps):
        g = ctrl.decide(ALLOWED, prompts=3).group_size
        n = 3 * g
        length = np.minimum(np.exp(rng.normal(5.0, 0.9, n)).astype(int) + 1, 2000)
        if t % 5 == 4:
            length[0] = 2000  # a runaway, so events happen
        ctrl.update(StepStats(group_id=np.repeat(np.arange(3), g), length=length,
                              reward=rng.integers(0, 2, n).astype(float), truncated=length >= 2000,
                              group_size=g, rollout_s=float(length.max()) * 0.01, step_s=float(length.max()) * 0.012))
    return ctrl


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def kind_and_state(request):
    state = json.loads(json.dumps(trained(request.param).state_dict()))  # as saved in a checkpoint
    return request.param, state


# Values that no state key accepts (no key holds a string other than aimd's "down"/"up", a bare
# {"bogus"} mapping, a list of lists of strings, NaN or a bool).
UNIVERSAL = [("missing", None), ("string", "garbage"), ("mapping", {"bogus": 1}), ("nested-list", [["x"]]),
             ("nan", float("nan")), ("bool", True), ("none-list", [None])]
_MISSING = object()


def corruptions(value, path):
    """(corrupted value, path of the corrupted part) for `value` and each part inside it."""
    for name, bad in UNIVERSAL:
        if name != "missing":
            yield bad, path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield {k: v for k, v in value.items() if k != key}, f"{path}.{key}"  # a missing inner key
            for bad, where in corruptions(sub, f"{path}.{key}"):
                yield {**value, key: bad}, where
    elif isinstance(value, list) and value:
        for bad, where in corruptions(value[0], f"{path}[0]"):
            yield [bad, *value[1:]], where


def named_path(message: str) -> str:
    m = re.search(r"state key '([^']+)'", message)
    assert m, f"the message names no state key: {message}"
    return m.group(1)


def test_every_state_key_has_a_validator(kind_and_state):
    kind, state = kind_and_state
    schema = REGISTRY[kind].full_state_schema()
    undeclared = sorted(set(state["state"]) - set(schema))
    assert not undeclared, f"{kind}: state key(s) {undeclared} have no validator in state_schema"
    assert sorted(state["state"]) == sorted(schema)


def test_a_real_state_round_trips(kind_and_state):
    kind, state = kind_and_state
    original = trained(kind)
    fresh = sagc.make(kind, **SETTINGS.get(kind, {}))
    fresh.load_state_dict(state)
    for _ in range(3):
        assert fresh.decide(ALLOWED, prompts=3) == original.decide(ALLOWED, prompts=3)


def test_every_key_corrupted_every_way_is_refused_by_name(kind_and_state):
    kind, state = kind_and_state
    ctrl = sagc.make(kind, **SETTINGS.get(kind, {}))
    before = ctrl.state_dict()
    tried = 0
    for key, value in state["state"].items():
        cases = [({k: v for k, v in state["state"].items() if k != key}, key)]  # the key missing
        cases += [({**state["state"], key: bad}, where) for bad, where in corruptions(value, key)]
        for bad_state, where in cases:
            with pytest.raises(ValueError) as info:
                ctrl.load_state_dict({"controller": kind, "state": bad_state})
            message = str(info.value)
            named = named_path(message)
            # it names the corrupted key, the enclosing part a validator checks as one (e.g. rng),
            # or, for a wrong mapping, the first key that mapping lacks
            assert _within(where, named) or _within(named, where), \
                f"{kind}: corrupting {where!r} gave a message naming {named!r}: {message}"
            assert named.split(".")[0].split("[")[0] == key
            tried += 1
    assert tried > 10 * len(state["state"])
    assert ctrl.state_dict() == before  # a refused state changes nothing


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith(outer + ".") or path.startswith(outer + "[")


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_unknown_state_key_is_refused(kind):
    ctrl = sagc.make(kind)
    st = ctrl.state_dict()
    st["state"]["surprise"] = 1
    with pytest.raises(ValueError, match="'surprise'"):
        ctrl.load_state_dict(st)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
@pytest.mark.parametrize("key,value,names", [
    ("queue", -1.0, "'queue' must be >= 0"),
    ("queue", float("inf"), "'queue' must be a finite number"),
    ("step", -1, "'step' must be >= 0"),
    ("step", 3.0, "'step' must be an integer"),
    ("events", -2, "'events' must be >= 0"),
    ("events", 5, "'events' must be <= step"),
    ("current", 0, "'current' must be >= 1"),
    ("current", "8", "'current' must be an integer"),
    ("last_b", 0, "'last_b' must be >= 1"),
    ("rule", {"medians": [100.0]}, "'rule.s_per_token' is missing"),
    ("rule", {"medians": [-1.0], "s_per_token": []}, r"'rule.medians\[0\]' must be > 0"),
])
def test_specific_bad_values(kind, key, value, names):
    ctrl = sagc.make(kind)
    st = ctrl.state_dict()
    st["state"][key] = value
    with pytest.raises(ValueError, match=names):
        ctrl.load_state_dict(st)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
@pytest.mark.parametrize("state,names", [
    (None, "expected the mapping"), ([], "expected the mapping"), ("state", "expected the mapping"),
    ({"controller": "x"}, "expected the mapping"),
    ({"controller": "nope", "state": {}}, "state is for controller 'nope'"),
    ({"controller": "K", "state": None}, "'state' must be a mapping"),
    ({"controller": "K", "state": [1, 2]}, "'state' must be a mapping"),
    ({"controller": "K", "state": {}, "extra": 1}, "expected the mapping"),
])
def test_wrong_shapes(kind, state, names):
    if isinstance(state, dict) and state.get("controller") == "K":
        state = {**state, "controller": kind}
    with pytest.raises(ValueError, match=names):
        sagc.make(kind).load_state_dict(state)


def test_garbage_rng_states_are_refused():
    ctrl = trained("sagc", 6)
    good = ctrl.state_dict()
    rng = good["state"]["rng"]
    bad_rngs = [
        {**rng, "bit_generator": "MT19937"},
        {**rng, "state": {"state": -5, "inc": rng["state"]["inc"]}},
        {**rng, "state": {"state": 2**200, "inc": 1}},
        {**rng, "state": {"state": "x", "inc": 1}},
        {**rng, "has_uint32": 7},
        {**rng, "uinteger": -1},
        {k: v for k, v in rng.items() if k != "uinteger"},
        np.random.PCG64(0),
    ]
    for bad in bad_rngs:
        st = copy.deepcopy(good)
        st["state"]["rng"] = bad
        with pytest.raises(ValueError, match="'rng' must be a numpy PCG64 state"):
            ctrl.load_state_dict(st)


def test_sagc_summary_lists_must_pair_up():
    ctrl = trained("sagc", 6)
    st = ctrl.state_dict()
    st["state"]["summaries"][0]["w"] = st["state"]["summaries"][0]["w"][:-1] + [1.0, 1.0]
    with pytest.raises(ValueError, match=r"'summaries\[0\]\.w' must have as many entries"):
        ctrl.load_state_dict(st)
