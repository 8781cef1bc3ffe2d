"""Built-in verifiable task and tiny local policy for CPU-only GRPO demos (no network).

- `sagc.tasks.arith`: multi-step arithmetic with a scratchpad, long-tailed solution lengths,
  exact-match `reward_fn` in TRL's signature (numpy + python only).
- `sagc.tasks.tokenizer` / `sagc.tasks.model`: a character-level tokenizer and a ~1M-parameter
  Llama, built in code.
- `sagc.tasks.warmstart`: `load_or_train(config) -> (model, tokenizer, path)` (supervised
  warm-start, cached in ~/.cache/sagc) and `evaluate(...)`.

Importing this package does not import torch; the torch-backed names below load on first use.
"""

from __future__ import annotations

from typing import Any

from sagc.tasks.arith import Problem, parse_answer, reward_fn, sample_problems, score, to_records
from sagc.tasks.config import ModelConfig, TaskConfig, WarmStartConfig

_LAZY = {
    "load_or_train": "sagc.tasks.warmstart",
    "evaluate": "sagc.tasks.warmstart",
    "train": "sagc.tasks.warmstart",
    "load_checkpoint": "sagc.tasks.warmstart",
    "checkpoint_dir": "sagc.tasks.warmstart",
    "cache_root": "sagc.tasks.warmstart",
    "build_tokenizer": "sagc.tasks.tokenizer",
    "load_tokenizer": "sagc.tasks.tokenizer",
    "build_model": "sagc.tasks.model",
    "count_params": "sagc.tasks.model",
}

__all__ = ["Problem", "TaskConfig", "ModelConfig", "WarmStartConfig", "sample_problems",
           "parse_answer", "score", "reward_fn", "to_records", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sagc.tasks' has no attribute {name!r}")
