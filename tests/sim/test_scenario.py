"""Scenario files: shipped ones load; every kind of bad input names its key (and file line)."""

import textwrap

import pytest

from sagc.sim import list_scenarios, load_scenario, parse_scenario
from sagc.sim.scenario import SHIPPED_DIR

GOOD = """\
name: t
steps: 10
seed: 1
prompts_per_step: 4
group_sizes: [2, 4]
lengths:
  model: lognormal
  median: 300
  sigma: 0.5
  max_tokens: 4096
rewards:
  pass_rate: {beta: [1.0, 2.0]}
engine:
  slots: 8
straggler: {rule: reference, kappa: 4.0, window: 8}
controllers:
  - {kind: static, group_size: 4}
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_shipped_scenarios_load_by_name():
    names = list_scenarios()
    assert {"light-tail", "heavy-tail", "drifting", "prompt-correlated", "trace-replay"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
        assert sc.group_sizes == (2, 4, 8, 16, 32)
        assert [c["kind"] for c in sc.controllers][0] == "static"
    assert load_scenario("trace-replay").lengths.resolved_path == str((SHIPPED_DIR / "recorded-trace.jsonl").resolve())


def test_unknown_name_lists_shipped_scenarios():
    with pytest.raises(ValueError, match="shipped scenarios are .*heavy-tail"):
        load_scenario("no-such-scenario")


def test_good_file_parses(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.steps == 10 and sc.prompts_per_step == 4 and sc.lengths.sigma == 0.5
    assert sc.rewards.beta == (1.0, 2.0) and sc.engine.slots == 8 and sc.engine.replicas == 1
    assert sc.controllers == ({"kind": "static", "group_size": 4},)


def test_to_dict_round_trips(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    again = parse_scenario(sc.to_dict(), source=sc.source)
    assert again == sc


def test_replace_revalidates(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.replace(steps=3, seed=9).steps == 3
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        sc.replace(steps=0)
    trace = load_scenario("trace-replay").replace(steps=5)
    assert trace.lengths.path == "recorded-trace.jsonl" and trace.steps == 5


def test_unknown_top_level_key_names_key_and_line(tmp_path):
    text = GOOD.replace("seed: 1\n", "seed: 1\nsteps_per_epoch: 3\n")
    p = write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"steps_per_epoch is not a known key.*{p}.*line {line_of(text, 'steps_per_epoch')}"):
        load_scenario(p)


def test_unknown_nested_key_names_path(tmp_path):
    text = GOOD.replace("  slots: 8\n", "  slots: 8\n  slotz: 9\n")
    with pytest.raises(ValueError, match=rf"engine.slotz is not a known key.*line {line_of(text, 'slotz')}"):
        load_scenario(write(tmp_path, text))


@pytest.mark.parametrize("old,new,message", [
    ("sigma: 0.5", "sigma: -1", r"lengths.sigma must be > 0, got -1"),
    ("median: 300", "median: 0", r"lengths.median must be > 0, got 0"),
    ("steps: 10", "steps: 2.5", r"steps must be an integer >= 1, got 2.5"),
    ("prompts_per_step: 4", "prompts_per_step: 0", r"prompts_per_step must be >= 1, got 0"),
    ("group_sizes: [2, 4]", "group_sizes: [2, 0]", r"group_sizes\[1\] must be >= 1, got 0"),
    ("group_sizes: [2, 4]", "group_sizes: []", r"group_sizes must be a non-empty list"),
    ("max_tokens: 4096", "max_tokens: 200", r"lengths.max_tokens must be > lengths.median \(300\), got 200"),
    ("beta: [1.0, 2.0]", "beta: [1.0, -2.0]", r"rewards.pass_rate.beta\[1\] must be > 0, got -2.0"),
    ("slots: 8", "slots: 0", r"engine.slots must be >= 1, got 0"),
    ("kappa: 4.0", "kappa: 0.5", r"straggler.kappa must be > 1"),
])
def test_out_of_range_values_name_the_key_and_line(tmp_path, old, new, message):
    text = GOOD.replace(old, new)
    key = new.split(":")[0].strip()
    with pytest.raises(ValueError, match=rf"{message}.*line {line_of(text, key)}"):
        load_scenario(write(tmp_path, text))


def test_runaway_prob_range(tmp_path):
    text = GOOD.replace("  max_tokens: 4096\n", "  max_tokens: 4096\n  runaway_prob: 1.0\n")
    with pytest.raises(ValueError, match=r"lengths.runaway_prob must be in \[0, 1\), got 1.0"):
        load_scenario(write(tmp_path, text))


@pytest.mark.parametrize("lengths,message", [
    ("model: pareto\n  median: 300\n  sigma: 0.5", r"lengths.sigma is not used with model: pareto; pareto uses alpha"),
    ("model: pareto\n  median: 300", r"lengths needs the key 'alpha' with model: pareto"),
    ("model: pareto\n  median: 300\n  alpha: 1.0", r"lengths.alpha must be > 1, got 1.0"),
    ("model: lognormal\n  median: 300\n  alpha: 2.0", r"lengths.alpha is not used with model: lognormal"),
    ("model: lognormal\n  median: 300", r"lengths needs the key 'sigma' with model: lognormal"),
    ("model: trace\n  path: t.jsonl\n  median: 300", r"lengths.median is not used with model: trace"),
    ("model: weibull\n  median: 300", r"lengths.model must be one of \['lognormal', 'pareto', 'trace'\], got 'weibull'"),
    ("model: lognormal\n  median: 300\n  sigma: 0.5\n  drift: {kind: sine, amplitude: 0.5}",
     r"lengths.drift needs the key 'period' with kind: sine"),
    ("model: lognormal\n  median: 300\n  sigma: 0.5\n  drift: {kind: sine, amplitude: 0.5, period: 9, per_step: 1}",
     r"lengths.drift.per_step is not a known key"),
    ("model: lognormal\n  median: 300\n  sigma: 0.5\n  drift: {kind: wobble}", r"lengths.drift.kind must be one of"),
])
def test_wrong_model_key_combinations(tmp_path, lengths, message):
    text = GOOD.replace("model: lognormal\n  median: 300\n  sigma: 0.5", lengths)
    (tmp_path / "t.jsonl").write_text('{"step": 0, "group_size": 1, "groups": [{"id": "a", "lengths": [5]}]}\n')
    with pytest.raises(ValueError, match=message):
        load_scenario(write(tmp_path, text))


def test_trace_model_missing_file_and_rewards_law(tmp_path):
    trace_lengths = "model: trace\n  path: missing.jsonl"
    text = GOOD.replace("model: lognormal\n  median: 300\n  sigma: 0.5\n  max_tokens: 4096", trace_lengths)
    with pytest.raises(ValueError, match=rf"lengths.path names a trace file that does not exist: .*missing.jsonl.*line {line_of(text, 'path:')}"):
        load_scenario(write(tmp_path, text))
    (tmp_path / "missing.jsonl").write_text('{"step": 0, "group_size": 1, "groups": [{"id": "a", "lengths": [5]}]}\n')
    sc = load_scenario(write(tmp_path, text))  # rewards: is the law for groups recorded without rewards
    assert sc.rewards.beta == (1.0, 2.0)
    sc = load_scenario(write(tmp_path, text.replace("rewards:\n  pass_rate: {beta: [1.0, 2.0]}\n", "")))
    assert sc.lengths.resolved_path == str((tmp_path / "missing.jsonl").resolve())
    assert sc.rewards.beta == (1.0, 1.0)


def test_bad_controller_is_named_by_index(tmp_path):
    text = GOOD.replace("  - {kind: static, group_size: 4}\n", "  - {kind: static, group_size: 4}\n  - {kind: nope}\n")
    with pytest.raises(ValueError, match=rf"controllers\[1\]: unknown controller 'nope'.*line {line_of(text, 'nope')}"):
        load_scenario(write(tmp_path, text))
    text = GOOD.replace("group_size: 4}", "group_size: 4, speed: 3}")
    with pytest.raises(ValueError, match=r"controllers\[0\]: controller 'static': unknown setting\(s\) \['speed'\]"):
        load_scenario(write(tmp_path, text))


def test_duplicate_key_and_invalid_yaml(tmp_path):
    text = GOOD.replace("seed: 1\n", "seed: 1\nseed: 2\n")
    with pytest.raises(ValueError, match=rf"seed is given twice .*line {line_of(text, 'seed: 2')}"):
        load_scenario(write(tmp_path, text))
    with pytest.raises(ValueError, match=r"line 2: not valid YAML"):
        load_scenario(write(tmp_path, "steps: 3\nseed: 1: 2\n"))


def test_missing_required_key(tmp_path):
    text = GOOD.replace("prompts_per_step: 4\n", "")
    with pytest.raises(ValueError, match="scenario needs the key 'prompts_per_step'"):
        load_scenario(write(tmp_path, text))


def test_controller_inherits_scenario_straggler_rule():
    from sagc.sim.scenario import controller_from_entry

    sc = parse_scenario({"steps": 1, "prompts_per_step": 1, "group_sizes": [2],
                         "lengths": {"model": "lognormal", "median": 10, "sigma": 1.0},
                         "straggler": {"rule": "group", "kappa": 3.0, "window": 4}})
    ctrl = controller_from_entry({"kind": "static", "group_size": 2}, sc.straggler)
    assert ctrl.settings.straggler == sc.straggler
    own = controller_from_entry({"kind": "static", "group_size": 2, "straggler": {"kappa": 9.0}}, sc.straggler)
    assert own.settings.straggler.kappa == 9.0
