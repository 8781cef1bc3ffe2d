"""SAGCGRPOTrainer.train(resume_from_checkpoint=...) after a kill during a checkpoint save.

transformers would pick the newest checkpoint-N folder even when a kill left it half-written,
and crash loading it (or resume silently without optimizer state). The trainer resumes from the
newest *complete* one for True, and refuses a named partial one, naming the one to use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_trl_trainer import make_trainer
from trl_helpers import make_config

import sagc
from sagc.integrations.trl import checkpoint as ckpt
from sagc.trace import read_trace

pytestmark = pytest.mark.trl

SAGC = dict(delta=0.2, V=1.0, seed=0, straggler={"rule": "reference", "kappa": 2.0, "window": 4})


def test_resume_true_skips_a_half_written_checkpoint_and_a_named_one_is_refused(tmp_path, tokenizer):
    def trainer():
        config = make_config(tmp_path, max_steps=4, max_completion_length=12, save_strategy="steps", save_steps=2)
        return make_trainer(tmp_path, tokenizer, sagc.make("sagc", **SAGC), config=config, max_group_size=8)

    first = trainer()
    first.train()
    out = Path(first.args.output_dir)
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # as if killed while writing the weights
    (problem,) = ckpt.checkpoint_problems(out / "checkpoint-4")
    assert problem.startswith("model.safetensors is truncated")

    with pytest.raises(ValueError, match=r"checkpoint-4 is incomplete .*model.safetensors.*checkpoint-2"):
        trainer().train(resume_from_checkpoint=str(out / "checkpoint-4"))

    resumed = trainer()
    resumed.train(resume_from_checkpoint=True)
    assert [h["step"] for h in resumed.sagc_history] == [3, 4]
    assert [h["group_size"] for h in resumed.sagc_history] == [h["group_size"] for h in first.sagc_history[2:]]
    assert [r["step"] for r in read_trace(resumed.trace_path)] == [1, 2, 3, 4]
    assert ckpt.checkpoint_problems(out / "checkpoint-4") == []  # written again, completely
