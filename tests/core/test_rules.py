import numpy as np
import pytest

from sagc import StepStats, StragglerSettings, make_rule


def step(lengths, groups=None, truncated=None, rollout_s=float("nan")):
    n = len(lengths)
    return StepStats(group_id=groups if groups is not None else [0] * n, length=lengths, reward=[0.0] * n,
                     truncated=truncated if truncated is not None else [False] * n, group_size=n,
                     rollout_s=rollout_s)


def test_reference_rule_uses_window_before_the_step():
    rule = make_rule({"rule": "reference", "kappa": 4.0, "window": 2})
    state = rule.init_state()
    ev, fig, _ = rule.observe(step([100, 100, 100]), state)  # first step: own median
    assert not ev and fig == pytest.approx(1.0)
    ev, fig, _ = rule.observe(step([100, 100, 500]), state)  # ref = 100 -> 5.0 > 4
    assert ev and fig == pytest.approx(5.0)
    ev, fig, _ = rule.observe(step([100, 100, 350]), state)  # ref = median(100, 100) -> 3.5
    assert not ev and fig == pytest.approx(3.5)
    assert rule.threshold(state) == pytest.approx(400.0)  # window of 2 medians: 100, 100


def test_group_rule_max_over_median():
    rule = make_rule({"rule": "group", "kappa": 3.0})
    ev, fig, _ = rule.observe(step([10, 10, 40, 5, 6, 7], groups=[0, 0, 0, 1, 1, 1]), rule.init_state())
    assert ev and fig == pytest.approx(4.0)


def test_truncation_rule_counts_and_composes():
    rule = make_rule({"rule": ["reference", "truncation"], "kappa": 4.0})
    ev, fig, details = rule.observe(step([10, 12, 11], truncated=[False, True, False]), rule.init_state())
    assert ev and details["truncation"] == 1.0 and details["reference"] < 4.0


def test_time_rule_flags_slow_step_with_normal_lengths():
    rule = make_rule({"rule": "time", "kappa": 2.0, "window": 4})
    state = rule.init_state()
    for _ in range(3):
        ev, _, _ = rule.observe(step([100, 120], rollout_s=1.2), state)
        assert not ev
    ev, fig, _ = rule.observe(step([100, 120], rollout_s=6.0), state)
    assert ev and fig == pytest.approx(6.0 / (0.01 * 110), rel=1e-6)


@pytest.mark.parametrize("kw,needle", [
    ({"rule": "median"}, "rule"), ({"kappa": 0.5}, "kappa"), ({"window": 0}, "window"),
    ({"rule": []}, "rule"),
])
def test_bad_settings_name_the_key(kw, needle):
    with pytest.raises(ValueError, match=needle):
        StragglerSettings(**kw)


def test_unknown_key_in_mapping():
    with pytest.raises(ValueError, match="kapa"):
        make_rule({"kapa": 3})
