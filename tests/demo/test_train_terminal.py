"""`sagc train` on a terminal: one progress line (step, G, reward, informative groups, straggler
rate, step seconds, time left) and the machine line, no raw TRL metric dicts; those go to the
session log (and report_to)."""

import io
import json

import pytest

pytest.importorskip("trl")

import yaml  # noqa: E402

from sagc.demo.progress import progress_line  # noqa: E402
from sagc.demo.session import SessionLog  # noqa: E402

CONFIG = {"model": "builtin", "dataset": "builtin", "controller": {"kind": "static", "group_size": 2},
          "group_sizes": [2, 4], "prompts_per_step": 2, "max_steps": 3,
          "warmstart": {"steps": 4, "batch_size": 8, "max_completion_tokens": 24,
                        "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32}},
          "trl": {"max_completion_length": 12, "learning_rate": 1.0e-3}}  # tqdm left on, as a user has it
FIELDS = ("step 3", "G=2", "reward ", "informative ", "stragglers ", " s/step", "left ")


def test_progress_line_fields():
    log = SessionLog(label="sagc", controller={"kind": "sagc"})
    log.history = [{"step": 1, "group_size": 4, "reward": 0.25, "informative_groups": 3, "rows": 32, "event": True,
                    "step_s": 1.5, "wall_s": 1.5},
                   {"step": 2, "group_size": 4, "reward": 0.5, "informative_groups": 5, "rows": 32, "event": False,
                    "step_s": 1.25, "wall_s": 2.75}]
    line = progress_line(log, clock=2.75, step=2, budget_s=120.0)
    assert line == "step 2  G=4  reward 0.50  informative 5/8  stragglers 50%  1.2 s/step  left 1:57"
    # no budget: time left from max_steps at the mean step time; past the budget: steps owed to min_steps
    assert progress_line(log, 2.75, 2, max_steps=10).endswith("left 0:11")
    assert progress_line(log, 130.0, 2, budget_s=120.0, min_steps=20).endswith("left 18 steps (min 20)")
    assert "held-out -" in progress_line(log, 2.75, 2, held_out=True)
    assert progress_line(SessionLog(label="x", controller={}), 0.0, 0).startswith("step 0  G=-  reward -")


def test_sagc_train_terminal_shows_the_progress_line_not_metric_dicts(tmp_path, monkeypatch, capfd):
    from rich.console import Console

    from sagc.demo.train import load_train_config, run_train

    monkeypatch.setenv("SAGC_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output_dir": str(tmp_path / "out")}))
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=250, color_system=None)
    run_train(load_train_config(path), console)
    shown = screen.getvalue()
    printed = capfd.readouterr()
    for text in (shown, printed.out, printed.err):  # TRL's printer and tqdm's dicts: "{'loss': ..."
        assert "{'loss'" not in text and "'reward'" not in text and "{'train_runtime'" not in text
    last = [x for x in shown.replace("\r", "\n").splitlines() if "step 3" in x][-1]
    assert all(f in last for f in FIELDS), last
    assert "machine: " in shown and "fp32 (probe" in shown and "steps/s: static " in shown
    session = json.loads((tmp_path / "out" / "sagc_session.json").read_text())
    assert session["machine_line"].startswith("machine: ") and "steps/s: static " in session["machine_line"]
    logged = session["trl_logs"]  # the full metrics are kept, with their step
    assert [m["step"] for m in logged if "loss" in m] == [1, 2, 3] and "reward" in logged[0]
