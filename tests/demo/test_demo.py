"""The demo pipeline end to end on a shortened config, its report, and its failure modes."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("trl")

from sagc.demo.config import load_demo_config  # noqa: E402
from sagc.demo.report import load_metrics, render  # noqa: E402
from sagc.trace import read_trace  # noqa: E402

SHORT = {"warmstart": {"steps": 20, "batch_size": 16, "max_completion_tokens": 48},
         "time_budget_s": 600, "max_steps": 3, "eval_every_s": 1000, "eval_size": 8,
         "prompts_per_step": 4, "group_sizes": [2, 4, 8]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_demo_three_steps_writes_a_full_report(tmp_path, cache):
    from sagc.demo.run import run_demo

    out = tmp_path / "report"
    rows = run_demo(load_demo_config(None, **SHORT), out)
    assert [r["label"] for r in rows] == ["static-G8", "static-G4", "sagc"]  # largest G, G=4, SAGC
    metrics = load_metrics(out)
    assert metrics["status"] == "finished"
    for label, run in metrics["runs"].items():
        assert run["status"] == "finished"
        assert len(run["history"]) == 3
        assert {h["group_size"] for h in run["history"]} <= {2, 4, 8}
        assert run["evals"][0]["step"] == 0 and run["evals"][-1]["step"] == 3  # before and after
        records = list(read_trace(out / "traces" / f"{label}.jsonl"))
        assert [r["group_size"] for r in records] == [h["group_size"] for h in run["history"]]
    assert all(h["group_size"] == 8 for h in metrics["runs"]["static-G8"]["history"])
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    readme = (out / "README.md").read_text()
    assert "static-G8" in readme
    # the what-if section replays the static run's trace on a GPU engine preset, labelled as simulated
    assert "## These rollouts on a GPU engine (simulated)" in readme and "Simulated, not measured" in readme
    assert "| sagc |" in readme.split("GPU engine (simulated)")[1]
    assert all(f"| sagc+{p} |" in readme.split("beside what it costs")[1] for p in ("drop", "resume", "defer", "auto"))
    # the machine line: CPU, bf16 flags, precision and threads used (the canned probe: fp32, 1 thread),
    # each run's steps per second
    line = next(x for x in readme.splitlines() if x.startswith("machine: "))
    assert "fp32 (probe" in line and "1 thread (probe)" in line and "avx512_bf16" in line
    assert all(f"{label} " in line.split("steps/s: ")[1] for label in metrics["runs"])
    assert metrics["machine_line"] == line and metrics["machine"]["bf16"] is False
    # `sagc report` re-renders from metrics.json alone
    (out / "summary.png").unlink()
    assert len(render(out)) == 3 and (out / "summary.png").exists()


def test_interrupted_demo_leaves_a_readable_partial_report(tmp_path, cache, monkeypatch):
    from sagc.demo import run as demo_run
    from sagc.demo.session import SessionCallback

    original = SessionCallback.on_step_end
    calls = {"n": 0}

    def interrupt_on_second_step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    monkeypatch.setattr(SessionCallback, "on_step_end", interrupt_on_second_step)
    out = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        demo_run.run_demo(load_demo_config(None, **SHORT), out)
    metrics = load_metrics(out)
    assert metrics["status"] == "interrupted"
    assert metrics["runs"]["static-G8"]["status"] == "interrupted"
    assert len(metrics["runs"]["static-G8"]["history"]) == 1
    assert (out / "summary.png").exists() and "interrupted" in (out / "README.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("change,needle", [
    ({"group_sizes": [1, 4]}, "group_sizes"), ({"loss_type": "ppo"}, "loss_type"),
    ({"time_budget_s": -1}, "time_budget_s"), ({"controller": {"kind": "sagc", "delta": 2}}, "delta"),
    ({"warmstart": {"stepz": 3}}, "stepz"), ({"tiem_budget_s": 3}, "tiem_budget_s"),
    ({"eval_sampled": "yes"}, "eval_sampled"), ({"target_gain": 1.5}, "target_gain"),
])
def test_bad_demo_config_names_the_key(tmp_path, change, needle):
    import yaml

    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(change))
    with pytest.raises(ValueError, match=needle) as info:
        load_demo_config(path)
    assert str(path) in str(info.value)


def test_report_of_a_folder_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        render(tmp_path)
    (tmp_path / "metrics.json").write_text('{"runs": \n')
    with pytest.raises(ValueError, match="line"):
        render(tmp_path)


@pytest.mark.slow
def test_make_demo_style_cli_run_end_to_end(tmp_path):
    """`sagc demo` as `make demo` runs it, with a shortened config (still a real GRPO run)."""
    import yaml

    cfg = dict(SHORT, time_budget_s=60, max_steps=200, eval_every_s=20, eval_size=32)
    cfg["warmstart"] = {"steps": 120, "batch_size": 32}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, SAGC_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "report"
    res = subprocess.run([sys.executable, "-m", "sagc.cli", "demo", "--config", str(path), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["runs"]) == 3
    for run in metrics["runs"].values():
        assert run["history"][-1]["wall_s"] >= 60 or len(run["history"]) == 200
        assert len(run["evals"]) >= 3


def test_report_says_when_a_run_faced_an_infeasible_budget(tmp_path):
    def run(label, flags):
        hist = [{"step": i + 1, "wall_s": float(i + 1), "group_size": 2, "event": True, "queue": 1.0,
                 "reward": 0.5, "completion_length": 30.0, "infeasible": f} for i, f in enumerate(flags)]
        return {"label": label, "status": "finished", "history": hist, "evals": [], "lengths": []}

    metrics = {"status": "finished", "order": ["static-G16", "sagc"],
               "runs": {"static-G16": run("static-G16", [False] * 4), "sagc": run("sagc", [False, True, True, False])}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    rows = render(tmp_path)
    assert [r["infeasible_steps"] for r in rows] == [0, 2]
    text = (tmp_path / "README.md").read_text()
    assert "sagc: the straggler budget was infeasible on 2 of 4 steps" in text
    assert "static-G16: the straggler budget" not in text


def test_static_group_sizes_default_and_validation():
    assert load_demo_config(None).static_group_sizes == (16, 4)
    assert load_demo_config(None, group_sizes=[2, 8]).static_group_sizes == (8,)
    with pytest.raises(ValueError, match=r"static_group_sizes\[1\] must be one of group_sizes"):
        load_demo_config(None, static_group_sizes=[16, 32])


class _Stop(Exception):
    pass


@pytest.mark.parametrize("user,want", [({}, {"bf16": False, "bf16_by": "probe", "threads": 1}),
                                       ({"bf16": True, "num_threads": 2},
                                        {"bf16": True, "bf16_by": "user", "threads": 2})])
def test_demo_trains_in_fp32_without_native_bf16_unless_told(tmp_path, cache, monkeypatch, user, want):
    """Issue 20: TRL's default bf16 ran under CPU autocast, 12x slower where bf16 is emulated."""
    import torch

    from sagc.demo.run import run_demo
    from sagc.integrations import trl as sagc_trl
    from sagc.tasks import machine

    monkeypatch.setattr(machine, "probe", lambda refresh=False: {"version": 1, "fp32_ms": 14.0, "bf16_ms": 181.0,
                                                                 "threads_ms": {"1": 14.0, "2": 20.0}})
    seen = {}

    def trainer(*a, args=None, **kw):
        seen["args"] = args
        raise _Stop

    monkeypatch.setattr(sagc_trl, "SAGCGRPOTrainer", trainer)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(_Stop):
            run_demo(load_demo_config(None, **SHORT, **user), tmp_path / "report")
    finally:
        torch.set_num_threads(threads)
    assert seen["args"].bf16 is want["bf16"] and seen["args"].use_cpu is True
    got = load_metrics(tmp_path / "report")["machine"]
    assert {k: got[k] for k in want} == want
    assert got["threads_by"] == ("user" if user else "probe")


def test_slow_machine_runs_train_on_to_min_steps_and_the_report_says_so(tmp_path):
    """A run that made fewer than min_steps steps in its budget: a note with its rate and what the
    demo did; a held-out drop beyond the evaluation noise: a note with the likely cause."""
    def run(label, walls, accs, g=16):
        hist = [{"step": i + 1, "wall_s": w, "group_size": g, "event": False, "queue": 0.0, "reward": 0.3,
                 "completion_length": 30.0} for i, w in enumerate(walls)]
        evals = [{"step": 0, "wall_s": 0.0, "accuracy": accs[0]}, {"step": len(hist), "wall_s": walls[-1],
                                                                    "accuracy": accs[1]}]
        return {"label": label, "status": "finished", "history": hist, "evals": evals, "lengths": []}

    cfg = load_demo_config(None, time_budget_s=120, min_steps=20).as_dict()
    metrics = {"status": "finished", "config": cfg, "order": ["static-G16", "static-G4", "sagc"],
               "machine": {"cpu": "AMD EPYC 7B13", "cores": 2, "flags": {"avx512_bf16": False}, "bf16": True,
                           "bf16_by": "user", "threads": 2, "threads_by": "user", "device": "cpu"},
               "runs": {"static-G16": run("static-G16", [40.0 * (i + 1) for i in range(4)], [0.26, 0.25]),
                        "static-G4": run("static-G4", [7.0 * (i + 1) for i in range(20)], [0.26, 0.182], g=4),
                        "sagc": run("sagc", [1.0 * (i + 1) for i in range(30)], [0.26, 0.248])}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    render(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "machine: AMD EPYC 7B13, 2 cores (avx512_bf16 no, amx no); bf16 (user), 2 threads (user)" in text
    assert "steps/s: static-G16 0.03, static-G4 0.14, sagc 1.00" in text
    assert "static-G16: 3 optimizer steps in the 120 s budget (0.03 steps/s at G=16" in text
    assert "it made 4 by the 180 s limit" in text
    assert "static-G4: 17 optimizer steps in the 120 s budget" in text and "trained on to 20 steps, 140 s" in text
    assert "sagc: " not in text.split("static-G4: 17")[1].split("static-G4: held-out")[0]  # 30 steps in budget
    drop = next(x for x in text.splitlines() if "static-G4: held-out accuracy fell" in x)
    assert "26.0% -> 18.2%" in drop and "Likely cause" in drop and "bf16 autocast on a CPU" in drop
    assert "sagc: held-out accuracy fell" not in text and "static-G16: held-out accuracy fell" not in text


@pytest.mark.parametrize("change,needle", [({"min_steps": 0}, "min_steps"), ({"max_time_s": 60}, "max_time_s"),
                                           ({"bf16": "yes"}, "bf16"), ({"num_threads": 0}, "num_threads")])
def test_machine_settings_are_validated(change, needle):
    with pytest.raises(ValueError, match=needle):
        load_demo_config(None, **change)
