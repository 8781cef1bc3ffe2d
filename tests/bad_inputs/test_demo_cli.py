"""`sagc demo`: bad configs fail cleanly, and a Ctrl-C in any phase leaves a readable report.

An interrupted demo exits 130 with a message saying where the partial report is; its README.md
says "interrupted" and in which phase, and metrics.json holds what ran up to then.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

import yaml  # noqa: E402
from bad_input_cli import assert_clean_failure, run_cli  # noqa: E402

pytestmark = pytest.mark.trl

# the shortest real demo: a few warm-start steps, one GRPO step per run, tiny evaluations
SHORT = {"warmstart": {"steps": 20, "batch_size": 16, "max_completion_tokens": 32, "num_threads": 1},
         "time_budget_s": 600, "max_steps": 1, "eval_every_s": 1000, "eval_size": 4,
         "prompts_per_step": 2, "group_sizes": [2, 4]}

BAD = {
    "empty file": ("", ["d.yaml", "empty"]),
    "duplicate key": ("seed: 1\nseed: 2\n", ["seed", "twice", "line 2"]),
    "float group size": ("group_sizes: [2, 4.7]\n", ["d.yaml, line 1", "group_sizes[1]", "4.7"]),
    "group_sizes as text": ("group_sizes: '2,4'\n", ["group_sizes", "'2,4'"]),
    "unknown key": ("tiem_budget_s: 3\n", ["tiem_budget_s"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_demo_config_fails_cleanly(tmp_path, name):
    text, needles = BAD[name]
    (tmp_path / "d.yaml").write_text(text)
    res = run_cli(["demo", "--config", "d.yaml", "--out", "report"], cwd=tmp_path)
    assert_clean_failure(res, *needles, left_behind=[tmp_path / "report"])


def test_demo_out_that_is_a_file(tmp_path):
    (tmp_path / "report").write_text("x")
    res = run_cli(["demo", "--out", "report"], cwd=tmp_path)
    assert_clean_failure(res, "--out report", "is a file")
    assert (tmp_path / "report").read_text() == "x"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGC_CACHE", str(tmp_path_factory.mktemp("cache")))  # one warm-start for the module
        yield


def interrupt(monkeypatch, phase: str) -> None:
    """Make the demo receive a Ctrl-C in `phase`."""
    from sagc.demo import report
    from sagc.demo.session import SessionCallback
    from sagc.tasks import warmstart

    def ctrl_c(*a, **kw):
        raise KeyboardInterrupt

    if phase == "warm-start":
        monkeypatch.setattr(warmstart, "load_or_train", ctrl_c)
    elif phase == "held-out evaluation before RL":
        monkeypatch.setattr(warmstart, "evaluate", ctrl_c)
    elif phase == "GRPO run static-G4":
        monkeypatch.setattr(SessionCallback, "on_step_end", ctrl_c)
    elif phase == "evaluation after a run":  # the first run's final evaluation (the 2nd evaluate call)
        original, calls = warmstart.evaluate, []

        def second_call_interrupted(*a, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return original(*a, **kw)

        monkeypatch.setattr(warmstart, "evaluate", second_call_interrupted)
    elif phase == "plots":
        monkeypatch.setattr(report, "_plot", ctrl_c)


@pytest.mark.parametrize("phase,readme_says,runs", [
    ("warm-start", "during warm-start", {}),
    ("held-out evaluation before RL", "during the held-out evaluation before RL", {}),
    ("GRPO run static-G4", "during the GRPO run static-G4", {"static-G4": "interrupted"}),
    ("evaluation after a run", "during the GRPO run static-G4", {"static-G4": "interrupted"}),
    ("plots", "during the plots", {"static-G4": "finished", "sagc": "finished"}),
])
def test_interrupted_demo_leaves_a_readable_report(tmp_path, cache, monkeypatch, phase, readme_says, runs):
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(SHORT))
    interrupt(monkeypatch, phase)
    res = run_cli(["demo", "--config", "d.yaml", "--out", "report"], cwd=tmp_path)
    assert res.exit_code == 130 and res.exception is None, res.output
    assert "Traceback" not in res.output
    flat = " ".join(res.output.split())
    assert "interrupted" in flat and "report" in flat and "README.md" in flat
    out = tmp_path / "report"
    readme = " ".join((out / "README.md").read_text().split())
    assert "status: **interrupted**" in readme and readme_says in readme, readme
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert {label: run["status"] for label, run in metrics["runs"].items()} == runs
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_messages_keep_their_square_brackets(tmp_path):
    """Rich would eat `[math]` as markup (the math-verify install hint lost it): messages are escaped."""
    res = run_cli(["report", "no[math]here"], cwd=tmp_path)
    assert_clean_failure(res, "no[math]here", "metrics.json")


@pytest.mark.parametrize("content, names", [
    ("[1, 2]", ["the file must be a JSON object"]),
    ('{"runs": 3}', ["runs must be an object"]),
    ('{"runs": {"a": []}}', ["runs.a must be an object"]),
    ('{"runs": {"a": {"history": [{"group_size": "x", "wall_s": 1}]}}}', ["runs.a.history[0].group_size"]),
    ('{"runs": {"a": {"evals": [{"wall_s": 1}]}}}', ["runs.a.evals[0].accuracy"]),
    ('{"runs": {}, "target_accuracy": "high"}', ["target_accuracy must be a number"]),
    ('{"runs": ', ["line 1", "not valid JSON"]),
])
def test_report_on_a_damaged_metrics_json(tmp_path, content, names):
    """`sagc report` on a damaged metrics.json: exit 2, the file and the key named, nothing written."""
    (tmp_path / "metrics.json").write_text(content)
    result = run_cli(["report", tmp_path])
    assert_clean_failure(result, "metrics.json", *names, left_behind=[tmp_path / "README.md", tmp_path / "summary.png"])
