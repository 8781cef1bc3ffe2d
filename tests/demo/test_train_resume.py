"""`sagc train --resume`: a run killed while saving a checkpoint, moved to another folder and resumed
makes the uninterrupted run's decisions, with every step once in the trace and the session log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("trl")

import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from sagc.integrations.trl import checkpoint as ckpt  # noqa: E402
from sagc.trace import read_trace  # noqa: E402

pytestmark = pytest.mark.trl

# AIMD on the reference rule moves G on this tiny task within a few steps (8, 4, 2, 2, ...), so
# equal G sequences say something; the warm-start is short (cached per test module).
CONFIG = {"controller": {"kind": "aimd", "increase_after": 1,
                         "straggler": {"rule": "reference", "kappa": 1.3, "window": 2}},
          "group_sizes": [2, 4, 8], "prompts_per_step": 2, "max_steps": 4,
          "warmstart": {"steps": 20, "batch_size": 16, "max_completion_tokens": 40, "num_threads": 1},
          "trl": {"save_strategy": "steps", "save_steps": 1, "learning_rate": 1.0e-4}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and leaves the shared cores alone
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGC_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
    torch.set_num_threads(threads)


def train(tmp_path: Path, out: Path, *extra: str, **changes):
    from sagc.cli import app

    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output_dir": str(out), **changes}))
    return CliRunner().invoke(app, ["train", "--config", str(path), *extra])


def steps(out: Path) -> tuple[list, dict]:
    trace = list(read_trace(out / "sagc_trace.jsonl"))
    session = json.loads((out / "sagc_session.json").read_text())
    return trace, session


def dies_saving_step_3(trainer_cls):
    """Trainer._save_optimizer_and_scheduler killed while writing checkpoint-3 (weights on disk only)."""
    original = trainer_cls._save_optimizer_and_scheduler

    def save(self, output_dir):
        if output_dir.endswith("checkpoint-3"):
            raise KeyboardInterrupt
        return original(self, output_dir)

    return save


def test_kill_during_a_checkpoint_save_move_and_resume_loses_nothing(tmp_path, cache, monkeypatch):
    from transformers import Trainer

    res = train(tmp_path, tmp_path / "reference")
    assert res.exit_code == 0, res.output
    ref, ref_session = steps(tmp_path / "reference")
    assert [r["step"] for r in ref] == [1, 2, 3, 4] and len({r["group_size"] for r in ref}) > 1

    # killed while writing checkpoint-3: its weights are on disk, its optimizer state is not
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", dies_saving_step_3(Trainer))
    res = train(tmp_path, tmp_path / "killed")
    monkeypatch.undo()
    assert res.exit_code == 130 and "--resume auto" in res.output, res.output
    trace, session = steps(tmp_path / "killed")
    assert len(trace) == 3 and len(session["history"]) == 3 and session["status"] == "interrupted"
    assert set(ckpt.checkpoint_problems(tmp_path / "killed" / "checkpoint-3")) == {
        "trainer_state.json is missing", "optimizer.pt is missing", "scheduler.pt is missing",
        "rng_state.pth is missing"}

    # the run folder moves; the state holds no absolute trace path that would stop matching
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "killed"), str(moved))

    res = train(tmp_path, moved, "--resume", str(moved / "checkpoint-3"))  # named: refused, with the way out
    assert res.exit_code == 2 and "checkpoint-3 is incomplete" in res.output, res.output
    assert "checkpoint-2" in res.output and "Traceback" not in res.output

    res = train(tmp_path, moved, "--resume", "auto")
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "checkpoint-3 is incomplete" in flat and "resuming from" in flat and "(step 2)" in flat

    trace, session = steps(moved)
    assert [r["step"] for r in trace] == [1, 2, 3, 4]  # every step once, none lost or repeated
    for a, b in zip(ref, trace):
        assert (a["group_size"], a["controller"]["event"]) == (b["group_size"], b["controller"]["event"])
        assert [g["lengths"] for g in a["groups"]] == [g["lengths"] for g in b["groups"]]
    hist = session["history"]
    assert [h["step"] for h in hist] == [1, 2, 3, 4] and session["status"] == "finished"
    assert [h["group_size"] for h in hist] == [h["group_size"] for h in ref_session["history"]]
    assert len(session["lengths"]) == sum(h["rows"] for h in hist) == sum(
        len(g["lengths"]) for r in trace for g in r["groups"])
    assert all(a["wall_s"] <= b["wall_s"] for a, b in zip(hist, hist[1:]))  # the clock continues
    assert ckpt.checkpoint_problems(moved / "checkpoint-3") == []  # rewritten by the resumed run
    assert ckpt.latest_complete_checkpoint(moved)[0] == moved / "checkpoint-4"

    # nothing left to do: refused rather than a silent 0-step run
    res = train(tmp_path, moved, "--resume", "auto")
    assert res.exit_code == 2 and "max_steps" in res.output, res.output

    # a truncated file anywhere makes a checkpoint incomplete; auto then takes the one before
    for name, cut in (("model.safetensors", 100), ("optimizer.pt", 50), ("trainer_state.json", 10),
                      ("rng_state.pth", 0), ("sagc_state.json", 5)):
        folder = moved / "checkpoint-4"
        backup = (folder / name).read_bytes()
        (folder / name).write_bytes(backup[:cut])
        problems = ckpt.checkpoint_problems(folder)
        assert len(problems) == 1 and name in problems[0], (name, problems)
        newest, skipped = ckpt.latest_complete_checkpoint(moved)
        assert newest == moved / "checkpoint-3" and [f for f, _ in skipped] == [folder]
        (folder / name).write_bytes(backup)
    assert ckpt.checkpoint_problems(moved / "checkpoint-4") == []


def test_resume_request_from_flag_or_trl_key():
    from sagc.demo.train_resume import resume_request

    assert resume_request(None, {}) is None
    assert resume_request(None, {"resume_from_checkpoint": True}) == "auto"
    assert resume_request(None, {"resume_from_checkpoint": False}) is None
    assert resume_request(None, {"resume_from_checkpoint": "run/checkpoint-2"}) == "run/checkpoint-2"
    assert resume_request("auto", {"resume_from_checkpoint": True}) == "auto"
    with pytest.raises(ValueError, match="disagree"):
        resume_request("run/checkpoint-4", {"resume_from_checkpoint": "run/checkpoint-2"})


def test_kill_and_resume_with_tail_control_keeps_the_partial_completions(tmp_path, cache, monkeypatch):
    """rollout resume: the completions cut at step 2's end are saved with checkpoint-2 and continued
    after the resume exactly as in the uninterrupted run (same lengths, same resumed flags)."""
    from transformers import Trainer

    tail = {"rollout": {"policy": "resume", "over_sample": 2.0}}
    res = train(tmp_path, tmp_path / "reference", **tail)
    assert res.exit_code == 0, res.output
    ref, _ = steps(tmp_path / "reference")
    assert sum(sum(r["tail"]["resumed"]) for r in ref[2:]) > 0  # steps 3-4 continue cut completions

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", dies_saving_step_3(Trainer))
    res = train(tmp_path, tmp_path / "killed", **tail)
    monkeypatch.undo()
    assert res.exit_code == 130, res.output
    state = ckpt.read_state(tmp_path / "killed" / "checkpoint-2")["tail"][0]
    assert state["partial"] or state["policy"]["carried"]["key"]  # something was carried over step 2

    res = train(tmp_path, tmp_path / "killed", "--resume", "auto", **tail)
    assert res.exit_code == 0, res.output
    trace, session = steps(tmp_path / "killed")
    assert [r["step"] for r in trace] == [1, 2, 3, 4]  # every step once
    for a, b in zip(ref, trace):
        assert [g["lengths"] for g in a["groups"]] == [g["lengths"] for g in b["groups"]]
        for key in ("resumed", "deferred", "stale_tokens", "aborted_lengths", "aborted_fate"):
            assert a["tail"][key] == b["tail"][key], (a["step"], key)
    assert [h["step"] for h in session["history"]] == [1, 2, 3, 4]
