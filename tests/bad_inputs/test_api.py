"""Bad inputs to the Python API: a ValueError that names the setting or field, never a raw
TypeError / OverflowError from deep inside, and never a silent conversion."""

import dataclasses
import math
import typing

import numpy as np
import pytest

import sagc
from sagc import REGISTRY, StepStats
from sagc.sim import parse_scenario
from sagc.trace import read_trace

# ---- controller settings -------------------------------------------------------------------
# Values no setting of any controller accepts (no setting is a list, a dict or NaN; strings are
# refused for numeric settings and are not a valid choice for the string ones).
WRONG_VALUES = ["abc", "0.1", [1], {"x": 1}, float("nan"), True, object()]


def _settings_cases():
    for kind, cls in sorted(REGISTRY.items()):
        hints = typing.get_type_hints(cls.Settings)
        for f in dataclasses.fields(cls.Settings):
            for value in WRONG_VALUES:
                if value is True and hints[f.name] is bool:
                    continue
                yield pytest.param(kind, f.name, value, id=f"{kind}-{f.name}-{type(value).__name__}:{value!r:.8}")


@pytest.mark.parametrize("kind,setting,value", list(_settings_cases()))
def test_every_setting_refuses_wrong_types_by_name(kind, setting, value):
    with pytest.raises(ValueError, match=rf"\b{setting}\b"):
        sagc.make(kind, **{setting: value})


@pytest.mark.parametrize("kind,settings,names", [
    ("sagc", {"delta": "0.1"}, "delta must be a number in"),
    ("sagc", {"V": None}, "V must be a number"),
    ("sagc", {"window": 5.5}, "window"),
    ("sagc", {"window": None}, "window must be an integer"),
    ("sagc", {"straggler": {"kappa": "4"}}, "straggler.kappa must be a number"),
    ("sagc", {"straggler": {"window": 2.5}}, "straggler.window"),
    ("sagc", {"straggler": {"rule": 3}}, "straggler.rule"),
    ("sagc", {"straggler": "reference"}, "straggler"),
    ("sagc", {"delta": 10**400}, "delta"),
    ("static", {"group_size": "8"}, "group_size must be an integer"),
    ("static", {"group_size": float("inf")}, "group_size"),
    ("aimd", {"increase_after": None}, "increase_after"),
    ("inverse_pass_rate", {"g_min": 8, "g_max": 2}, "g_min must be <= g_max"),
    ("inverse_pass_rate", {"g_min": 0}, "g_min must be an integer >= 1"),
    ("inverse_pass_rate", {"g_max": -4}, "g_max must be an integer >= 1"),
])
def test_named_setting_errors(kind, settings, names):
    with pytest.raises(ValueError, match=names.replace("(", r"\(").replace(".", r"\.")):
        sagc.make(kind, **settings)


def test_settings_dataclasses_check_types_directly():
    with pytest.raises(ValueError, match="delta must be a number"):
        sagc.SAGCSettings(delta="0.1")
    with pytest.raises(ValueError, match="straggler must be a StragglerSettings"):
        sagc.AIMDSettings(straggler={"kappa": 3.0})
    with pytest.raises(ValueError, match="straggler.kappa"):
        sagc.StragglerSettings(kappa="4")
    assert sagc.make("static", group_size=np.int64(4)).settings.group_size == 4  # numpy numbers are numbers


def test_unknown_controller_and_setting_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid controllers are"):
        sagc.make("pid")
    with pytest.raises(ValueError, match="valid settings are"):
        sagc.make("sagc", detla=0.1)


# ---- StepStats -----------------------------------------------------------------------------
GOOD = dict(group_id=[0, 0, 1, 1], length=[10, 20, 30, 40], reward=[1.0, 0.0, 1.0, float("nan")],
            truncated=[False, False, True, False], group_size=2)


@pytest.mark.parametrize("field,value,names", [
    ("group_size", float("nan"), "StepStats.group_size"),
    ("group_size", float("inf"), "StepStats.group_size"),
    ("group_size", 0, "StepStats.group_size"),
    ("group_size", 2.5, "StepStats.group_size"),
    ("group_size", "2", "StepStats.group_size"),
    ("group_size", True, "StepStats.group_size"),
    ("group_size", 2**63, "StepStats.group_size"),
    ("rollout_s", "abc", "StepStats.rollout_s"),
    ("rollout_s", "1.5", "StepStats.rollout_s"),
    ("rollout_s", -1.0, "StepStats.rollout_s"),
    ("rollout_s", float("inf"), "StepStats.rollout_s"),
    ("rollout_s", [1.0], "StepStats.rollout_s"),
    ("step_s", 10**400, "StepStats.step_s"),
    ("length", [10, 20, 30, 2**63], "StepStats.length"),
    ("length", [10, 20, 30, 2**64 + 5], "StepStats.length"),
    ("length", [10, 20, 30, 10**400], "StepStats.length"),
    ("length", [10, 20, 30, 0], "StepStats.length"),
    ("length", [10, 20, 30, -1], "StepStats.length"),
    ("length", [10, 20, 30, 4.5], "StepStats.length"),
    ("length", [10, 20, 30, float("nan")], "StepStats.length"),
    ("length", ["10", "20", "30", "40"], "StepStats.length"),
    ("length", [True, True, True, True], "StepStats.length"),
    ("length", [], "StepStats.length"),
    ("length", [[10, 20], [30, 40]], "StepStats.length"),
    ("length", np.array([10, 20, 30, 2**63], dtype=np.uint64), "StepStats.length"),
    ("reward", ["1", "0", "1", "0"], "StepStats.reward"),
    ("reward", [1.0, 0.0, 1.0, float("inf")], "StepStats.reward"),
    ("reward", [1.0, 0.0, 1.0], "StepStats.reward"),
    ("truncated", ["yes", "no", "no", "no"], "StepStats.truncated"),
    ("truncated", [0, 2, 0, 0], "StepStats.truncated"),
    ("truncated", [0.5, 0, 0, 0], "StepStats.truncated"),
    ("truncated", [None, False, False, False], "StepStats.truncated"),
    ("group_id", [0, 0, 1.5, 1], "StepStats.group_id"),
    ("group_id", [0, 0, 2**63, 2**63], "StepStats.group_id"),
    ("duration_s", [1.0, -1.0, 1.0, 1.0], "StepStats.duration_s"),
    ("duration_s", ["1", "1", "1", "1"], "StepStats.duration_s"),
])
def test_stepstats_refuses_by_field(field, value, names):
    with pytest.raises(ValueError, match=names.replace(".", r"\.")):
        StepStats(**{**GOOD, field: value})


def test_stepstats_edge_values_that_are_fine():
    s = StepStats(**{**GOOD, "truncated": np.array([0, 0, 1, 0]), "rollout_s": None, "reward": [1, 0, None, 1]})
    assert s.truncated.tolist() == [False, False, True, False] and math.isnan(s.rollout_s)
    big = StepStats(**{**GOOD, "length": [10, 20, 30, 2**52]})
    assert big.length.max() == 2**52 and big.length.min() > 0


# ---- Controller.decide ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(REGISTRY))
@pytest.mark.parametrize("prompts,names", [
    (0, "prompts must be an integer >= 1"), (-3, "prompts must be an integer >= 1"), (2.5, "prompts"),
    ("4", "prompts"), (True, "prompts"), (float("nan"), "prompts"), ({2: 4, 4: 0, 8: 2}, r"prompts\[4\]"),
    ({2: 4}, "prompts has no entry for allowed group size 4"),
])
def test_decide_refuses_bad_prompts(kind, prompts, names):
    ctrl = sagc.make(kind)
    with pytest.raises(ValueError, match=names):
        ctrl.decide([2, 4, 8], prompts=prompts)
    assert ctrl.decide([2, 4, 8], prompts=4).group_size in (2, 4, 8)  # nothing changed by the refusal


@pytest.mark.parametrize("allowed", [[], [0, 2], [2, 4.7], ["2", "4"], None, [-4]])
def test_decide_refuses_bad_allowed(allowed):
    with pytest.raises(ValueError, match="allowed"):
        sagc.make("sagc").decide(allowed)


def test_update_refuses_non_stepstats():
    with pytest.raises(TypeError, match="StepStats"):
        sagc.make("sagc").update({"length": [1, 2]})


# ---- scenario and trace readers through the API: ValueError, the file and line named ---------
def test_parse_scenario_names_the_key():
    with pytest.raises(ValueError, match=r"group_sizes\[1\]"):
        parse_scenario({"steps": 2, "prompts_per_step": 2, "group_sizes": [2, 4.7],
                        "lengths": {"model": "lognormal", "median": 10, "sigma": 0.5}})


def test_read_trace_is_a_value_error_with_file_and_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_bytes(b'{"step": 0, "group_size": 2, "groups": [{"lengths": [1, 2]}]}\n\xff\n')
    with pytest.raises(ValueError, match=r"t\.jsonl, line 2: not valid UTF-8"):
        list(read_trace(p))
    with pytest.raises(ValueError, match="does not exist"):
        list(read_trace(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="is a folder"):
        list(read_trace(tmp_path))


# ---- the shared YAML loader (sagc._io.load_yaml: scenarios and configs) ----------------------
def test_load_yaml_lines_and_refusals(tmp_path):
    from sagc._io import InputError, load_yaml

    p = tmp_path / "c.yaml"
    p.write_bytes(b"\xef\xbb\xbfa: 1\nb:\n  c: [1, 2]\n  d:\n    - x: 1\n")
    data, lines = load_yaml(p)
    assert data == {"a": 1, "b": {"c": [1, 2], "d": [{"x": 1}]}}
    assert lines == {"a": 1, "b": 2, "b.c": 3, "b.c[0]": 3, "b.c[1]": 3, "b.d": 4, "b.d[0]": 5, "b.d[0].x": 5}
    cases = [
        (b"a: 1\nb:\n  c: 1\n  c: 2\n", r"b\.c is given twice \(in .*c\.yaml, line 4\)"),
        (b"a: 1\nb: \xe9\n", r"c\.yaml, line 2: not valid UTF-8"),
        (b"a: [1\n", r"c\.yaml, line \d: not valid YAML"),
    ]
    for raw, pattern in cases:
        p.write_bytes(raw)
        with pytest.raises(InputError, match=pattern):
            load_yaml(p)
    with pytest.raises(InputError, match="config .*missing.yaml does not exist"):
        load_yaml(tmp_path / "missing.yaml", "config")
    with pytest.raises(InputError, match="is a folder"):
        load_yaml(tmp_path)
