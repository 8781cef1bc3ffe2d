"""Bad inputs to `sagc simulate`: exit 2, one message naming field, file and line, nothing written."""

import json
import os

import pytest
import yaml
from bad_input_cli import assert_clean_failure, run_cli

GOOD_LINES = [
    {"step": 0, "group_size": 2, "rollout_s": 1.5, "step_s": 2.0,
     "groups": [{"id": "a", "lengths": [120, 300], "rewards": [1, 0], "truncated": [False, False]}]},
    {"step": 1, "group_size": 2, "groups": [{"id": "b", "lengths": [80, 95], "rewards": [0, 0]}]},
    {"step": 2, "group_size": 2, "groups": [{"lengths": [400, 60]}]},
]

SCENARIO = {
    "steps": 4, "seed": 1, "prompts_per_step": 2, "group_sizes": [2, 4],
    "lengths": {"model": "lognormal", "median": 100, "sigma": 0.5, "max_tokens": 2000},
    "engine": {"slots": 16},
    "controllers": [{"kind": "static", "group_size": 4}, {"kind": "sagc", "delta": 0.2}],
}


def write_trace_scenario(folder, line2: bytes):
    """A trace-replay scenario whose trace has `line2` as its line 2 (lines 1 and 3 are good)."""
    lines = [json.dumps(GOOD_LINES[0]).encode(), line2, json.dumps(GOOD_LINES[2]).encode()]
    trace = folder / "t.jsonl"
    trace.write_bytes(b"\n".join(lines) + b"\n")
    sc = dict(SCENARIO, lengths={"model": "trace", "path": "t.jsonl"})
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    return path, trace


def line(**changes) -> bytes:
    rec = json.loads(json.dumps(GOOD_LINES[1]))
    for key, value in changes.items():
        if key.startswith("g_"):
            rec["groups"][0][key[2:]] = value
        elif value is None:
            rec.pop(key, None)
        else:
            rec[key] = value
    return json.dumps(rec).encode()


# (id, line 2 of the trace, what the message must name besides file and line)
BAD_TRACE_LINES = [
    ("bad-json", b'{"step": 1, "group_size": 2,', "not valid JSON"),
    ("json-array", b"[1, 2, 3]", "must be a JSON object"),
    ("json-null", b"null", "must be a JSON object"),
    ("json-string", b'"hello"', "must be a JSON object"),
    ("missing-step", line(step=None), "'step'"),
    ("missing-group-size", line(group_size=None), "'group_size'"),
    ("missing-groups", line(groups=None), "'groups'"),
    ("missing-lengths", b'{"step": 1, "group_size": 2, "groups": [{"rewards": [1]}]}', "groups[0].lengths"),
    ("empty-groups", line(groups=[]), "groups"),
    ("length-zero", line(g_lengths=[80, 0]), "groups[0].lengths[1]"),
    ("length-negative", line(g_lengths=[80, -5]), "groups[0].lengths[1]"),
    ("length-float", line(g_lengths=[80, 95.5]), "groups[0].lengths[1]"),
    ("length-string", line(g_lengths=[80, "95"]), "groups[0].lengths[1]"),
    ("length-bool", line(g_lengths=[80, True]), "groups[0].lengths[1]"),
    ("length-nan", b'{"step": 1, "group_size": 2, "groups": [{"lengths": [80, NaN]}]}', "NaN"),
    ("length-inf", b'{"step": 1, "group_size": 2, "groups": [{"lengths": [80, Infinity]}]}', "Infinity"),
    ("length-1e999", b'{"step": 1, "group_size": 2, "groups": [{"lengths": [80, 1e999]}]}', "groups[0].lengths[1]"),
    ("length-10**30", line(g_lengths=[80, 10**30]), "groups[0].lengths[1]"),
    ("length-10**400", line(g_lengths=[80, 10**400]), "groups[0].lengths[1]"),
    ("rewards-shorter", line(g_rewards=[1]), "groups[0].rewards"),
    ("truncated-longer", line(g_truncated=[False, False, True]), "groups[0].truncated"),
    ("reward-nan", b'{"step": 1, "group_size": 2, "groups": [{"lengths": [8, 9], "rewards": [NaN, 1]}]}', "NaN"),
    ("reward-string", line(g_rewards=["1", 0]), "groups[0].rewards[0]"),
    ("reward-huge-int", line(g_rewards=[10**400, 0]), "groups[0].rewards[0]"),
    ("truncated-string", line(g_truncated=["no", "no"]), "groups[0].truncated[0]"),
    ("group-size-zero", line(group_size=0), "group_size"),
    ("group-size-10**30", line(group_size=10**30), "group_size"),
    ("step-negative", line(step=-1), "step"),
    ("step-float", line(step=1.5), "step"),
    ("rollout-negative", line(rollout_s=-1), "rollout_s"),
    ("rollout-string", line(rollout_s="fast"), "rollout_s"),
    ("rollout-inf", b'{"step": 1, "group_size": 2, "rollout_s": 1e999, "groups": [{"lengths": [8]}]}', "rollout_s"),
    ("rollout-10**400", line(rollout_s=10**400), "rollout_s"),
    ("group-not-object", line(groups=[[80, 95]]), "groups[0]"),
    ("group-id-list", line(g_id=["x"]), "groups[0].id"),
    ("controller-queue-string", line(controller={"queue": "x"}), "controller.queue"),
    ("controller-risk-key", line(controller={"risk": {"four": 0.1}}), "controller.risk"),
    ("non-utf8", b'{"step": 1, "group_size": 2, "groups": [{"id": "\xff\xfe", "lengths": [8]}]}', "UTF-8"),
    ("deep-nesting", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
]


@pytest.mark.parametrize("content,names", [pytest.param(c, n, id=i) for i, c, n in BAD_TRACE_LINES])
def test_bad_trace_line(tmp_path, content, names):
    scenario, trace = write_trace_scenario(tmp_path, content)
    out = tmp_path / "out" / "r.json"
    res = run_cli(["simulate", scenario, "--json", out], cwd=tmp_path)
    assert_clean_failure(res, names, str(trace), "line 2", left_behind=[out, out.parent])


def test_trace_with_a_bom_names_it(tmp_path):
    scenario, trace = write_trace_scenario(tmp_path, line())
    trace.write_bytes(b"\xef\xbb\xbf" + trace.read_bytes())
    assert_clean_failure(run_cli(["simulate", scenario], cwd=tmp_path), "byte-order mark", str(trace), "line 1")


def test_trace_with_no_steps(tmp_path):
    scenario, trace = write_trace_scenario(tmp_path, b"")
    trace.write_text("\n  \n")
    assert_clean_failure(run_cli(["simulate", scenario], cwd=tmp_path), "no steps", str(trace))


def test_trace_error_also_names_the_scenario_key(tmp_path):
    scenario, trace = write_trace_scenario(tmp_path, line(g_lengths=[1, 0]))
    at = scenario.read_text().splitlines().index("  path: t.jsonl") + 1
    assert_clean_failure(run_cli(["simulate", scenario], cwd=tmp_path), "lengths.path", str(scenario), f"line {at}")


def test_good_trace_runs(tmp_path):  # the fixture itself is valid: the failures above come from line 2
    scenario, _ = write_trace_scenario(tmp_path, line())
    res = run_cli(["simulate", scenario, "--no-hindsight"], cwd=tmp_path)
    assert res.exit_code == 0, res.output


# ---- scenario files ------------------------------------------------------------------------
def scenario_file(folder, text: str | bytes, name="s.yaml"):
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GOOD_YAML = yaml.safe_dump(SCENARIO, sort_keys=False)


def with_key(key, value):
    return yaml.safe_dump({**SCENARIO, key: value}, sort_keys=False)


# (id, scenario text, what the message must name; every case also names the file)
BAD_SCENARIOS = [
    ("non-utf8", GOOD_YAML.encode() + b"# caf\xe9\n", ["UTF-8", "line 19"]),
    ("duplicate-top-key", GOOD_YAML + "steps: 9\n", ["steps is given twice", "line 19"]),
    ("duplicate-nested-key", GOOD_YAML.replace("  sigma: 0.5\n", "  sigma: 0.5\n  sigma: 0.7\n"),
     ["lengths.sigma is given twice", "line 11"]),
    ("not-yaml", GOOD_YAML + "engine: [1, 2\n", ["not valid YAML"]),
    ("a-list", "- 1\n- 2\n", ["YAML mapping"]),
    ("empty", "", ["YAML mapping"]),
    ("static-g-not-allowed", with_key("controllers", [{"kind": "static", "group_size": 8}]),
     ["controllers[0].group_size", "[2, 4]", "got 8"]),
    ("sagc-initial-g-not-allowed", with_key("controllers", [{"kind": "sagc", "initial_group_size": 3}]),
     ["controllers[0].initial_group_size"]),
    ("aimd-initial-g-not-allowed", with_key("controllers", [{"kind": "aimd", "initial_group_size": 16}]),
     ["controllers[0].initial_group_size"]),
    ("group-size-float", with_key("group_sizes", [2, 4.7]), ["group_sizes[1]", "4.7"]),
    ("group-sizes-string", with_key("group_sizes", "2,4"), ["group_sizes", "'2,4'"]),
    ("group-size-huge", with_key("group_sizes", [2, 10**30]), ["group_sizes[1]"]),
    ("steps-inf", GOOD_YAML.replace("steps: 4", "steps: .inf"), ["steps", "inf", "line 1"]),
    ("steps-nan", GOOD_YAML.replace("steps: 4", "steps: .nan"), ["steps", "nan", "line 1"]),
    ("steps-huge", with_key("steps", 10**30), ["steps", "must be <="]),
    ("seed-string", with_key("seed", "x"), ["seed", "'x'"]),
    ("seed-negative", with_key("seed", -1), ["seed", ">= 0"]),
    ("prompts-bool", with_key("prompts_per_step", True), ["prompts_per_step"]),
    ("sagc-delta-string", with_key("controllers", [{"kind": "sagc", "delta": "0.1"}]),
     ["controllers[0]", "delta must be a number", "'0.1'"]),
    ("sagc-window-null", with_key("controllers", [{"kind": "sagc", "window": None}]), ["window"]),
    ("aimd-factor-string", with_key("controllers", [{"kind": "aimd", "decrease_factor": "half"}]),
     ["decrease_factor"]),
    ("unknown-controller", with_key("controllers", [{"kind": "pid"}]), ["controllers[0]", "pid"]),
    ("unknown-setting", with_key("controllers", [{"kind": "sagc", "detla": 0.1}]), ["detla"]),
    ("controller-label-number", with_key("controllers", [{"kind": "sagc", "label": 3}]), ["controllers[0].label"]),
    ("straggler-kappa-string", with_key("straggler", {"kappa": "x"}), ["straggler.kappa"]),
    ("controller-straggler-kappa", with_key("controllers", [{"kind": "sagc", "straggler": {"kappa": "4"}}]),
     ["straggler.kappa", "controllers[0]"]),
    ("unknown-key", with_key("stpes", 3), ["stpes", "valid keys"]),
    ("engine-slots-zero", with_key("engine", {"slots": 0}), ["engine.slots"]),
    ("median-string", with_key("lengths", {"model": "lognormal", "median": "100", "sigma": 0.5}), ["lengths.median"]),
    ("engine-huge-int", with_key("engine", {"overhead_s": 10**400}), ["engine.overhead_s", "finite number"]),
    ("drift-kind-unknown", with_key("lengths", {"model": "lognormal", "median": 100, "sigma": 0.5,
                                                "drift": {"kind": "zigzag"}}), ["lengths.drift.kind", "zigzag"]),
    ("beta-string", with_key("rewards", {"pass_rate": {"beta": ["1", 1]}}), ["rewards.pass_rate.beta[0]"]),
    ("trace-is-a-folder", with_key("lengths", {"model": "trace", "path": "."}), ["lengths.path", "a folder"]),
    ("trace-missing", with_key("lengths", {"model": "trace", "path": "nope.jsonl"}), ["lengths.path", "nope.jsonl"]),
]


@pytest.mark.parametrize("text,names", [pytest.param(t, n, id=i) for i, t, n in BAD_SCENARIOS])
def test_bad_scenario(tmp_path, text, names):
    path = scenario_file(tmp_path, text)
    out = tmp_path / "r.json"
    res = run_cli(["simulate", path, "--json", out], cwd=tmp_path)
    assert_clean_failure(res, *names, str(path), left_behind=[out])


def test_scenario_path_problems(tmp_path):
    assert_clean_failure(run_cli(["simulate", tmp_path / "nope.yaml"]), "nope.yaml", "does not exist")
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert_clean_failure(run_cli(["simulate", folder]), str(folder))
    assert_clean_failure(run_cli(["simulate", "no-such-shipped-name"]), "no-such-shipped-name", "heavy-tail")


def test_scenario_with_a_bom_is_read(tmp_path):  # YAML allows a BOM: not an error
    path = scenario_file(tmp_path, b"\xef\xbb\xbf" + GOOD_YAML.encode())
    res = run_cli(["simulate", path, "--no-hindsight"])
    assert res.exit_code == 0, res.output


# ---- options -------------------------------------------------------------------------------
@pytest.mark.parametrize("args,names", [
    (["--steps", "0"], ["steps", ">= 1"]),
    (["--steps", "-5"], ["steps"]),
    (["--steps", "abc"], ["Invalid value", "--steps"]),
    (["--steps", "1.5"], ["--steps"]),
    (["--steps", str(10**12)], ["steps", "must be <="]),
    (["--seed", "-1"], ["seed", ">= 0"]),
    (["--seed", "x"], ["--seed"]),
    (["--seed", str(10**30)], ["seed", "must be <="]),
    (["--bogus"], ["--bogus"]),
])
def test_bad_options(tmp_path, args, names):
    path = scenario_file(tmp_path, GOOD_YAML)
    out = tmp_path / "r.json"
    assert_clean_failure(run_cli(["simulate", path, "--json", out, *args]), *names, left_behind=[out])


# ---- output paths: checked before the simulation, written all or nothing -------------------
def test_output_path_problems_are_found_before_the_work(tmp_path):
    path = scenario_file(tmp_path, GOOD_YAML)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    good_json = tmp_path / "r.json"
    cases = [
        (["--json", a_dir], ["--json", str(a_dir), "folder"]),
        (["--json", a_file / "r.json"], ["--json", str(a_file), "not a folder"]),
        (["--plot", a_dir], ["--plot", "must end in .png"]),
        (["--plot", tmp_path / "dir.png"], ["--plot"]),
        (["--plot", tmp_path / "r.pdf"], ["--plot", ".png"]),
        (["--plot", a_file / "r.png"], ["--plot", "not a folder"]),
        (["--json", good_json, "--plot", tmp_path / "r.txt"], ["--plot", ".png"]),
        (["--json", tmp_path / "x.png", "--plot", tmp_path / "x.png"], ["same file"]),
    ]
    (tmp_path / "dir.png").mkdir()
    for args, names in cases:
        res = run_cli(["simulate", path, *args])
        flat = assert_clean_failure(res, *names, left_behind=[good_json, tmp_path / "r.pdf", tmp_path / "x.png"])
        assert "stragglers" not in flat  # no results table: the simulation did not run


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path):
    path = scenario_file(tmp_path, GOOD_YAML)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        res = run_cli(["simulate", path, "--json", locked / "r.json"])
        assert_clean_failure(res, "--json", "permission denied", left_behind=[locked / "r.json"])
    finally:
        locked.chmod(0o700)


def test_failing_plot_leaves_no_json_and_no_new_folder(tmp_path, monkeypatch):
    """Even a failure while drawing (after every check passed) leaves nothing of the outputs."""
    import sagc.sim.plot
    from sagc._io import InputError

    def broken(result, path):
        open(path, "wb").write(b"half a png")
        raise InputError("--plot: cannot draw this figure")

    monkeypatch.setattr(sagc.sim.plot, "plot_run", broken)
    path = scenario_file(tmp_path, GOOD_YAML)
    out = tmp_path / "new" / "deeper" / "r.json"
    png = tmp_path / "new" / "r.png"
    res = run_cli(["simulate", path, "--no-hindsight", "--json", out, "--plot", png])
    assert_clean_failure(res, "cannot draw", left_behind=[out, png, tmp_path / "new"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_outputs_written_together_when_all_succeed(tmp_path):
    path = scenario_file(tmp_path, GOOD_YAML)
    out, png = tmp_path / "a" / "r.json", tmp_path / "b" / "r.png"
    res = run_cli(["simulate", path, "--no-hindsight", "--json", out, "--plot", png])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["scenario"]["steps"] == 4
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.json"]  # no temp files


def test_a_bug_still_shows_its_traceback(tmp_path, monkeypatch):
    """Only input errors become messages: anything else escapes (exit 1) so it gets reported."""
    import sagc.sim

    def bug(*a, **k):
        raise ZeroDivisionError("a real bug")

    monkeypatch.setattr(sagc.sim, "run_scenario", bug)
    res = run_cli(["simulate", scenario_file(tmp_path, GOOD_YAML)])
    assert isinstance(res.exception, ZeroDivisionError) and res.exit_code == 1


@pytest.mark.parametrize("json_name, plot_name, names", [("w.json", "w.svg", ["--plot", ".png"]),
                                                         ("w.png", "w.png", ["same file"])])
def test_whatif_output_paths_are_checked_before_the_work(tmp_path, json_name, plot_name, names):
    """`sagc whatif` refuses outputs up front like `sagc simulate`, and leaves no JSON behind."""
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"step": 0, "group_size": 2, "rollout_s": 1.0, "step_s": 2.0,
                                 "groups": [{"id": "a", "lengths": [5, 9]}]}) + "\n")
    out = tmp_path / json_name
    result = run_cli(["whatif", trace, "--json", out, "--plot", tmp_path / plot_name])
    assert_clean_failure(result, *names, left_behind=[out])
