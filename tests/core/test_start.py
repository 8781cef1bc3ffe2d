"""SAGC's start (setting `start`): no G above the middle of allowed until step times are known.

Before the step-time model has its 4 timed steps, the goodput objective has no time to divide
by, and the plain utility takes G_max. Where a step's cost grows with G (TRL on a CPU: 5.8 s at
G=16 against 1.2 s at G=4), those steps are the most expensive of the run. The default start caps
them at the middle of allowed; the step-time model decides from then on.
"""

import dataclasses

import numpy as np
import pytest

import sagc
from sagc.controllers.sagc import TIME_FIT_STEPS, middle_size

from core_streams import lognormal_step

ALLOWED = (2, 4, 8, 16, 32)


def run(steps: int, seconds, **kw) -> list:
    """seconds(step stats) -> the step's seconds; 8 prompts a step."""
    rng = np.random.default_rng(5)
    ctrl = sagc.make("sagc", **kw)
    decisions = []
    for _ in range(steps):
        d = ctrl.decide(ALLOWED, prompts=8)
        decisions.append(d)
        st = lognormal_step(rng, 8, d.group_size, median=300.0, sigma=0.4, prompt_sigma=0.3)
        s = seconds(st)
        ctrl.update(dataclasses.replace(st, rollout_s=0.8 * s, step_s=s))
    return decisions


def per_completion(st):  # a step costs in proportion to its completions (a CPU)
    return 0.05 * st.n


def flat(st):  # a step costs the same at every G (a large fixed overhead)
    return 30.0


def test_middle_size():
    assert middle_size((2, 4, 8, 16, 32)) == 8
    assert middle_size((2, 4, 8, 16)) == 4  # 4 and 8 are equally far in log: the smaller
    assert middle_size((2, 3, 4, 6, 8, 12, 16)) == 6
    assert middle_size((4,)) == 4


def test_first_steps_stay_at_or_below_the_middle_then_the_model_decides():
    decisions = run(12, per_completion)
    first = [d.group_size for d in decisions[:TIME_FIT_STEPS]]
    assert first[0] == 8 and max(first) <= 8, first
    assert any(d.probe for d in decisions[:TIME_FIT_STEPS]), "the time probe no longer runs in the start"
    # cost ~ completions: the step-time model then prefers small sizes, never G_max
    assert max(d.group_size for d in decisions) <= 8


def test_the_cap_lifts_once_step_times_are_known():
    """Where time does not grow with G, SAGC reaches G_max after the start."""
    decisions = run(20, flat)
    assert max(d.group_size for d in decisions[:TIME_FIT_STEPS]) <= 8
    assert [d.group_size for d in decisions[-5:]] == [32] * 5


def test_start_largest_is_the_plain_rule():
    decisions = run(TIME_FIT_STEPS, per_completion, start="largest")
    assert decisions[0].group_size == 32


def test_utility_objective_has_no_start_cap():
    """The paper's rule has no time model, so nothing to wait for."""
    decisions = run(3, per_completion, objective="utility")
    assert decisions[0].group_size == 32


def test_bad_start_is_named():
    with pytest.raises(ValueError, match=r"start must be one of \['middle', 'largest'\], got 'small'"):
        sagc.make("sagc", start="small")


def test_tail_control_keeps_the_largest_start():
    """Under a tail-control policy SAGC's defaults (TAIL_DEFAULTS) start at G_max: measured goodput
    learns the sizes it runs, from G_max down (docs/sagc.md)."""
    from sagc.controllers import tail_defaults

    ctrl = sagc.from_config(tail_defaults({"kind": "sagc"}, "auto"))
    assert ctrl.settings.start == "largest"
    assert ctrl.decide(ALLOWED, prompts=8).group_size == 32
    assert sagc.from_config(tail_defaults({"kind": "sagc"}, "full")).decide(ALLOWED, prompts=8).group_size == 8
