"""Every registered controller honours the interface contract."""

import copy
import json

import numpy as np
import pytest

import sagc
from sagc import REGISTRY

from core_streams import lognormal_step

ALLOWED = [2, 4, 8, 16]


def drive(ctrl, steps, seed=0, allowed=ALLOWED):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        g = ctrl.decide(allowed, prompts=8).group_size
        out.append(g)
        ctrl.update(lognormal_step(rng, 8, g))
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_decisions_allowed_and_deterministic(name):
    a = drive(sagc.make(name), 40)
    b = drive(sagc.make(name), 40)
    assert a == b
    assert set(a) <= set(ALLOWED)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_state_round_trips_through_json_and_restored_decides_identically(name):
    ctrl = sagc.make(name)
    drive(ctrl, 25, seed=1)
    saved = json.loads(json.dumps(ctrl.state_dict()))
    twin = sagc.make(name)
    twin.load_state_dict(saved)
    assert drive(ctrl, 30, seed=2) == drive(twin, 30, seed=2)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_inputs_not_mutated(name):
    ctrl = sagc.make(name)
    rng = np.random.default_rng(3)
    allowed = [16, 2, 8, 4]
    before = list(allowed)
    for _ in range(5):
        g = ctrl.decide(allowed, prompts=8).group_size
        stats = lognormal_step(rng, 8, g)
        snapshot = (stats.length.copy(), stats.reward.copy(), stats.group_id.copy(), stats.truncated.copy())
        ctrl.update(stats)
        for x, y in zip(snapshot, (stats.length, stats.reward, stats.group_id, stats.truncated)):
            np.testing.assert_array_equal(x, y)
    assert allowed == before


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_settings_frozen_and_state_for_other_controller_rejected(name):
    ctrl = sagc.make(name)
    with pytest.raises(Exception):
        ctrl.settings.straggler = None  # frozen dataclass
    other = next(n for n in REGISTRY if n != name)
    with pytest.raises(ValueError, match="state is for controller"):
        ctrl.load_state_dict(sagc.make(other).state_dict())


def test_registry_miss_lists_valid_names():
    with pytest.raises(ValueError, match="valid controllers are .*sagc.*static"):
        sagc.make("sagcc")


def test_unknown_setting_lists_valid_settings():
    with pytest.raises(ValueError, match="unknown setting.*'deltaa'.*valid settings"):
        sagc.make("sagc", deltaa=0.1)


@pytest.mark.parametrize("kw,needle", [
    ({"delta": 1.5}, r"delta must be in \(0, 1\), got 1.5"), ({"V": 0}, "V must be"),
    ({"utility": "entropy"}, "utility"), ({"objective": "speed"}, "objective"),
    ({"window": 0}, "window"), ({"hold": -1}, "hold"), ({"max_change_factor": 1.0}, "max_change_factor"),
    ({"straggler": {"kappa": 0.9}}, "kappa"),
])
def test_sagc_bad_settings_name_the_field(kw, needle):
    with pytest.raises(ValueError, match=needle):
        sagc.make("sagc", **kw)


@pytest.mark.parametrize("allowed", [[], [0, 2], ["a"]])
def test_bad_allowed_rejected(allowed):
    with pytest.raises(ValueError, match="allowed"):
        sagc.make("static").decide(allowed)


def test_decision_and_observation_are_json_ready(step_stream):
    ctrl = sagc.make("sagc")
    d = ctrl.decide(ALLOWED, prompts=8)
    obs = ctrl.update(step_stream(np.random.default_rng(0), 8, d.group_size))
    json.dumps(d.as_dict())
    json.dumps(obs.as_dict())
    assert copy.deepcopy(d) == d
