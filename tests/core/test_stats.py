import numpy as np
import pytest

from sagc import StepStats


def make(**kw):
    base = dict(group_id=[0, 0, 1, 1], length=[10, 20, 30, 40], reward=[1.0, 0.0, 1.0, 1.0],
                truncated=[False, False, False, True], group_size=2)
    base.update(kw)
    return StepStats(**base)


def test_basic_views():
    s = make()
    assert s.n == 4 and s.num_groups == 2
    assert s.group_counts().tolist() == [2, 2]
    assert s.informative_groups() == 1  # group 0 mixed, group 1 all equal


@pytest.mark.parametrize("field,value,needle", [
    ("length", [10, 0, 30, 40], "length"),
    ("length", [10, -3, 30, 40], "length"),
    ("length", [10, 20, 30], "length"),
    ("reward", [1.0, 0.0, 1.0], "reward"),
    ("truncated", [False, True], "truncated"),
    ("group_id", [0, 0, 1], "group_id"),
    ("length", [[10, 20], [30, 40]], "length"),
    ("length", [1.5, 2, 3, 4], "length"),
    ("group_id", [0, 0.5, 1, 1], "group_id"),
    ("reward", [1.0, np.inf, 0.0, 1.0], "reward"),
    ("group_size", 0, "group_size"),
    ("rollout_s", -1.0, "rollout_s"),
    ("duration_s", [1.0, 2.0], "duration_s"),
])
def test_bad_input_names_the_field(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        make(**{field: value})


def test_empty_step_rejected():
    with pytest.raises(ValueError, match="empty"):
        StepStats(group_id=[], length=[], reward=[], truncated=[], group_size=2)


def test_nan_rewards_allowed_and_ignored():
    s = make(reward=[np.nan, np.nan, 1.0, 0.0])
    assert s.informative_groups() == 1  # group 0 has no scored rewards
    succ, scored = s.group_pass_counts()
    assert scored.tolist() == [0, 2] and succ.tolist() == [0, 1]


def test_inputs_not_aliased():
    length = np.array([10, 20, 30, 40])
    s = make(length=length)
    length[0] = 999
    assert s.length[0] == 10


def test_ragged_and_string_ids():
    s = StepStats(group_id=["p-7", "p-7", "p-7", "p-2"], length=[5, 6, 7, 8], reward=[1, 0, 1, 0],
                  truncated=[0, 0, 0, 0], group_size=3)
    assert s.num_groups == 2 and s.group_counts().tolist() == [3, 1]


def test_from_groups_trace_shape():
    s = StepStats.from_groups([{"id": "a", "lengths": [3, 4], "rewards": [1, None], "truncated": [False, True]}])
    assert s.n == 2 and np.isnan(s.reward[1]) and s.truncated.tolist() == [False, True]
