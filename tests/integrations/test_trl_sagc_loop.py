"""SAGC in the training loop: decisions, metrics, the rollout trace, replay, kill and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from trl_helpers import make_config
from test_trl_trainer import make_trainer
from transformers import TrainerCallback

import sagc
from sagc.trace import read_trace

pytestmark = pytest.mark.trl

# kappa 2 over a 4-step reference: with lengths of 1..12 tokens, events happen and G moves; delta 0.4 is
# feasible here (at 0.2 no G is, and SAGC then keeps the best-goodput G rather than shrinking: no collapse)
# The paper's rule (objective "utility"): decisions depend only on lengths and rewards, so two real runs can be
# compared step by step (the default, goodput, also learns from measured wall-clock seconds).
SAGC = dict(delta=0.4, V=1.0, seed=0, objective="utility", utility="informative", straggler={"rule": "reference", "kappa": 2.0, "window": 4})


def test_sagc_in_the_loop_logs_decisions_and_writes_a_replayable_trace(tmp_path, tokenizer):
    config = make_config(tmp_path, max_steps=30, max_completion_length=12, report_to=["tensorboard"])
    trainer = make_trainer(tmp_path, tokenizer, sagc.make("sagc", **SAGC), config=config, max_group_size=8)
    trainer.train()
    allowed = trainer.group_layout.allowed
    history = trainer.sagc_history
    assert len(history) == 30 and all(h["group_size"] in allowed for h in history)
    assert len({h["group_size"] for h in history}) > 1  # the controller acted on what it saw
    assert sum(h["event"] for h in history) > 0

    logged = [e for e in trainer.state.log_history if "sagc/group_size" in e]
    assert len(logged) == 30
    for e, h in zip(logged, history):
        assert e["sagc/group_size"] == h["group_size"] and e["sagc/event"] == float(h["event"])
        assert e["sagc/queue"] == pytest.approx(h["queue"]) and e["sagc/figure"] == pytest.approx(h["figure"])
        assert all(f"sagc/risk/G{g}" in e for g in allowed)
        assert e["sagc/infeasible"] == float(h["infeasible"])
        assert e["sagc/probe"] == float(h["probe"]) and not h["probe"]  # objective "utility" never probes
        if h["infeasible"]:  # flagged only when every allowed G was predicted over the budget
            assert min(h["risk"].values()) > SAGC["delta"]

    records = list(read_trace(trainer.trace_path))
    assert [r["step"] for r in records] == list(range(1, 31))
    for r, h in zip(records, history):
        assert r["group_size"] == h["group_size"] and len(r["groups"]) == 2  # B = 4 / 2 prompts
        assert all(len(g["lengths"]) == h["group_size"] for g in r["groups"])
        assert r["controller"]["event"] == h["event"] and set(r["controller"]["risk"]) == {str(g) for g in allowed}
        assert r["rollout_s"] > 0 and r["step_s"] >= r["rollout_s"]
        assert r["controller"].get("probe", False) == h["probe"]

    # `sagc simulate` replays the recorded groups
    scenario = {"name": "replay", "steps": 20, "seed": 0, "prompts_per_step": 2, "group_sizes": list(allowed),
                "lengths": {"model": "trace", "path": str(trainer.trace_path)},
                "straggler": SAGC["straggler"], "controllers": [{"kind": "static", "group_size": 4}]}
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(scenario))
    from typer.testing import CliRunner

    from sagc.cli import app

    out = tmp_path / "replay.json"
    result = CliRunner().invoke(app, ["simulate", str(path), "--json", str(out), "--no-hindsight"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(out.read_text())["controllers"]
    assert run["summary"]["steps"] == 20 and run["summary"]["mean_group_size"] == 4

    # TensorBoard (report_to) got the sagc scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_file,) = [p for p in Path(config.output_dir).rglob("events.out.tfevents*")]  # <output_dir>/runs/...
    acc = EventAccumulator(str(event_file.parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/sagc/group_size", "train/sagc/event", "train/sagc/figure", "train/sagc/queue"} <= tags
    assert [int(s.value) for s in acc.Scalars("train/sagc/group_size")] == [h["group_size"] for h in history]


class Kill(TrainerCallback):
    """Stops the run abruptly in the middle of step `at` (after an earlier checkpoint)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("killed")


def test_kill_after_checkpoint_and_resume_continues_like_an_uninterrupted_run(tmp_path, tokenizer):
    def run(name, callbacks=None):
        config = make_config(tmp_path / name, max_steps=8, max_completion_length=12, save_strategy="steps",
                             save_steps=4, per_device_train_batch_size=8, num_generations=4)
        return make_trainer(tmp_path / name, tokenizer, sagc.make("sagc", **SAGC), config=config, max_group_size=8,
                            dynamic_sampling=True, callbacks=callbacks)

    reference = run("a")
    reference.train()

    killed = run("b", callbacks=[Kill(at=6)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    out = Path(killed.args.output_dir)
    state = json.loads((out / "checkpoint-4" / "sagc_state.json").read_text())
    assert state["rounds"] == 4 and state["controller"]["controller"] == "sagc" and state["stream"] is not None
    assert len(list(read_trace(killed.trace_path))) == 5  # steps 5 (and part of 6) ran after the checkpoint

    resumed = run("b")
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    assert [h["step"] for h in resumed.sagc_history] == [5, 6, 7, 8]
    assert [h["group_size"] for h in resumed.sagc_history] == [h["group_size"] for h in reference.sagc_history[4:]]
    assert [h["queue"] for h in resumed.sagc_history] == [h["queue"] for h in reference.sagc_history[4:]]

    ref_trace = list(read_trace(reference.trace_path))
    trace = list(read_trace(resumed.trace_path))
    assert [r["step"] for r in trace] == list(range(1, 9))  # steps after the checkpoint appear once
    for a, b in zip(ref_trace, trace):
        assert (a["group_size"], a["controller"]["risk"], a["controller"]["queue"]) == \
            (b["group_size"], b["controller"]["risk"], b["controller"]["queue"])
        assert [g["lengths"] for g in a["groups"]] == [g["lengths"] for g in b["groups"]]


def test_resume_from_a_checkpoint_without_sagc_state_is_an_error(tmp_path, tokenizer):
    config = make_config(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = make_trainer(tmp_path, tokenizer, "static", config=config)
    trainer.train()
    ckpt = Path(config.output_dir) / "checkpoint-2"
    (ckpt / "sagc_state.json").unlink()
    again = make_trainer(tmp_path, tokenizer, "static", config=make_config(tmp_path, max_steps=3))
    with pytest.raises(FileNotFoundError, match="sagc_state.json is missing"):
        again.train(resume_from_checkpoint=str(ckpt))



def test_resume_on_the_same_trainer_object_after_an_interruption(tmp_path, tokenizer):
    config = make_config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = make_trainer(tmp_path, tokenizer, sagc.make("sagc", **SAGC), config=config, max_group_size=8,
                           callbacks=[Kill(at=3)])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    trainer.remove_callback(Kill)
    trainer.train(resume_from_checkpoint=str(Path(config.output_dir) / "checkpoint-2"))
    assert [r["step"] for r in read_trace(trainer.trace_path)] == [1, 2, 3, 4]
    assert [h["step"] for h in trainer.sagc_history][-2:] == [3, 4]
    trainer.train()  # a fresh run on the same object starts a fresh trace, numbered from 1
    assert [r["step"] for r in read_trace(trainer.trace_path)] == [1, 2, 3, 4]


def test_rank0_decision_dict_carries_the_probe_flag_into_the_trace():
    """The trainer keeps rank 0's Decision as a dict; a time probe must still reach the trace."""
    import numpy as np

    from sagc.integrations.trl.rounds import _DecisionView
    from sagc.trace import make_record

    stats = sagc.StepStats(group_id=np.repeat([0, 1], 4), length=np.arange(1, 9), reward=np.zeros(8),
                           truncated=np.zeros(8, bool), group_size=4)
    probe = make_record(1, stats, _DecisionView({"risk": {"4": 0.1}, "queue": 0.0, "probe": True}))
    plain = make_record(2, stats, _DecisionView({"risk": {"4": 0.1}, "queue": 0.0}))
    assert probe["controller"]["probe"] is True and "probe" not in plain["controller"]
