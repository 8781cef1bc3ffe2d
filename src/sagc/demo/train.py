"""`sagc train --config FILE.yaml`: the demo's trainer for a user's own setup.

    model: builtin                  # or a local Hugging Face model directory (never a hub id)
    dataset: builtin                # or a local .jsonl / .parquet file with a `prompt` column
    reward: exact_match             # exact_match | math_verify | "package.module:function"
    output_dir: runs/my-run
    controller: {kind: sagc, delta: 0.1, V: 10}
    group_sizes: [2, 4, 8, 16]
    prompts_per_step: 8             # B
    max_steps: 200
    trl: {learning_rate: 1.0e-5, loss_type: dapo, max_completion_length: 1024}  # -> GRPOConfig
    optimizer: {kind: pion}         # optional: adamw | muon | pion | ema_nesterov (docs/optim.md)
    loss: {kind: dispo}             # optional: grpo | dapo | dr_grpo | bnpo | cispo | dispo

Everything is validated before anything is written: a bad key or value is an error naming it
(and the file), a missing model directory or an unreadable dataset is reported as such.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from sagc._io import check_keys, iter_jsonl
from sagc.demo.config import LOSS_TYPES
from sagc.tasks.config import WarmStartConfig

REWARDS = ("exact_match", "math_verify")
GROUP_MODES = ("fixed_prompts", "fixed_completions")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "builtin"  # "builtin" (the warm-started tiny model) or a local model directory
    dataset: str = "builtin"  # "builtin" (the arithmetic task) or a local .jsonl / .parquet file
    reward: str = "exact_match"  # exact_match | math_verify | "module:function" (TRL signature)
    output_dir: str = "runs/sagc-train"
    controller: Mapping[str, Any] = field(default_factory=lambda: {"kind": "sagc", "delta": 0.1, "V": 10.0})
    group_sizes: tuple[int, ...] = (2, 4, 8, 16)  # allowed G
    group_mode: str = "fixed_prompts"  # or fixed_completions (rows per step fixed)
    dynamic_sampling: bool = False  # DAPO dynamic sampling (drop all-equal groups, refill)
    prompts_per_step: int = 8  # B (fixed_prompts); rows = B x num_generations (fixed_completions)
    max_steps: int = 100
    time_budget_s: float | None = None  # stop after this much training wall-clock (None: max_steps)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)  # for model: builtin
    trl: Mapping[str, Any] = field(default_factory=dict)  # any GRPOConfig field, passed through
    seed: int = 0
    optimizer: Any = None  # {kind: adamw|muon|pion|ema_nesterov, ...} (sagc.optim); None: HF's default AdamW
    loss: Any = None  # a TRL loss kind or {kind: dispo, eps_high_pos: ...} (sagc.losses); None: trl.loss_type

    def __post_init__(self) -> None:
        if self.reward not in REWARDS and not re.fullmatch(r"[\w.]+:\w+", self.reward):
            raise ValueError(f"reward must be one of {list(REWARDS)} or 'package.module:function', got {self.reward!r}")
        if self.group_mode not in GROUP_MODES:
            raise ValueError(f"group_mode must be one of {list(GROUP_MODES)}, got {self.group_mode!r}")
        sizes = tuple(int(g) for g in self.group_sizes)
        if not sizes or min(sizes) < 2:
            raise ValueError(f"group_sizes must be integers >= 2, got {list(self.group_sizes)}")
        object.__setattr__(self, "group_sizes", tuple(sorted(set(sizes))))
        for name in ("prompts_per_step", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 seconds, got {self.time_budget_s!r}")
        if not isinstance(self.trl, Mapping):
            raise ValueError("trl must be a mapping of GRPOConfig fields")
        if "loss_type" in self.trl and self.trl["loss_type"] not in LOSS_TYPES:
            raise ValueError(f"trl.loss_type must be one of {list(LOSS_TYPES)}, got {self.trl['loss_type']!r}")
        from sagc.demo.training import TrainingChoice

        TrainingChoice(optimizer=self.optimizer, loss=self.loss).check_trl(self.trl)
        import sagc

        if not isinstance(self.controller, Mapping):
            raise ValueError("controller must be a mapping with a 'kind' key")
        sagc.from_config(self.controller)


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ValueError(f"{path}{f', line {mark.line + 1}' if mark else ''}: not valid YAML ({exc})") from None
    check_keys(TrainConfig, data, str(path))
    data = dict(data)
    if isinstance(data.get("warmstart"), Mapping):
        try:
            data["warmstart"] = WarmStartConfig.from_dict(data["warmstart"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: warmstart: {exc}") from None
    try:
        config = TrainConfig(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    _check_trl_keys(config, str(path))
    return config


def _check_trl_keys(config: TrainConfig, where: str) -> None:
    from trl import GRPOConfig

    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(set(config.trl) - names)
    if unknown:
        raise ValueError(f"{where}: trl: unknown GRPOConfig field(s) {unknown}")
    owned = sorted(set(config.trl) & {"output_dir", "max_steps", "num_generations", "per_device_train_batch_size",
                                      "seed"})
    if owned:
        raise ValueError(f"{where}: trl: set {owned} at the top level of the config (output_dir, max_steps, "
                         "prompts_per_step, group_sizes, seed), not under trl")


# ---- data, model and reward, each failing with a clear message ------------------------------------
def load_dataset_file(path: str) -> Any:
    """A datasets.Dataset from a local .jsonl or .parquet file with a `prompt` column."""
    from datasets import Dataset

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dataset {path}: no such file (give a local .jsonl or .parquet file, or 'builtin')")
    if p.suffix == ".jsonl":
        rows = []
        for lineno, row in iter_jsonl(p, "dataset"):
            if not isinstance(row, dict) or "prompt" not in row:
                raise ValueError(f"dataset {path}, line {lineno}: each line needs a 'prompt' field")
            rows.append(row)
        if not rows:
            raise ValueError(f"dataset {path}: no rows")
        return Dataset.from_list(rows)
    if p.suffix == ".parquet":
        try:
            ds = Dataset.from_parquet(str(p))
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise ValueError(f"dataset {path}: cannot read as parquet ({type(exc).__name__}: {exc})") from None
        if "prompt" not in ds.column_names:
            raise ValueError(f"dataset {path}: needs a 'prompt' column, has {ds.column_names}")
        return ds
    raise ValueError(f"dataset {path}: unsupported file type {p.suffix!r} (use .jsonl or .parquet)")


def load_model(config: TrainConfig) -> tuple[Any, Any]:
    from sagc.tasks import warmstart

    if config.model == "builtin":
        _, _, ckpt = warmstart.load_or_train(config.warmstart)
        return warmstart.load_checkpoint(ckpt)
    p = Path(config.model)
    if not p.is_dir():
        raise FileNotFoundError(f"model {config.model}: no such directory (give a local Hugging Face model "
                                "directory with config.json, or 'builtin'; hub ids are not fetched)")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"model {config.model}: no config.json in it; not a Hugging Face model directory")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(p, local_files_only=True), \
        AutoTokenizer.from_pretrained(p, local_files_only=True)


def exact_match(prompts: Any, completions: Any, answer: Any = None, **kw: Any) -> list[float]:
    """1.0 when the completion's final answer ('#### X', else its last line) equals `answer`."""
    if answer is None:
        raise ValueError("reward exact_match needs an 'answer' column in the dataset")
    from sagc.tasks.arith import _text

    out = []
    for completion, target in zip(completions, answer):
        text = _text(completion).strip()
        final = text.rsplit("####", 1)[1] if "####" in text else (text.splitlines() or [""])[-1]
        out.append(float(final.strip() == str(target).strip()))
    return out


def math_verify_reward(prompts: Any, completions: Any, answer: Any = None, **kw: Any) -> list[float]:
    """1.0 when math-verify judges the completion equal to `answer` (LaTeX or plain)."""
    from math_verify import parse, verify

    from sagc.tasks.arith import _text

    if answer is None:
        raise ValueError("reward math_verify needs an 'answer' column in the dataset")
    return [float(bool(verify(parse(str(t)), parse(_text(c))))) for c, t in zip(completions, answer)]


def resolve_reward(spec: str, builtin_task: bool) -> Callable[..., list[float]]:
    if spec == "exact_match":
        if builtin_task:
            from sagc.tasks.arith import reward_fn

            return reward_fn
        return exact_match
    if spec == "math_verify":
        try:
            importlib.import_module("math_verify")
        except ImportError:
            raise ValueError("reward math_verify needs the math-verify package: pip install 'sagc[math]'") from None
        return math_verify_reward
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"reward {spec!r}: cannot import ({exc})") from None
    if not callable(fn):
        raise ValueError(f"reward {spec!r} is not callable")
    return fn


def run_train(config: TrainConfig, console: Any) -> dict:
    """Validate inputs, then train; returns the session log (also written to output_dir)."""
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                 ("TOKENIZERS_PARALLELISM", "false"), ("TRL_EXPERIMENTAL_SILENCE", "1")):
        os.environ.setdefault(k, v)
    from datasets import Dataset
    from trl import GRPOConfig

    from sagc._io import write_json_atomic
    from sagc.demo.session import SessionCallback, SessionLog
    from sagc.integrations.trl import SAGCGRPOTrainer
    from sagc.tasks import arith

    builtin = config.dataset == "builtin"
    reward = resolve_reward(config.reward, builtin)
    if builtin:
        dataset = Dataset.from_list(arith.to_records(arith.sample_problems(
            config.warmstart.task, "train", config.max_steps * config.prompts_per_step, seed=config.seed)))
    else:
        dataset = load_dataset_file(config.dataset)
    model, tokenizer = load_model(config)  # every input is checked before the output folder exists
    g_ref = config.group_sizes[len(config.group_sizes) // 2]
    trl_args = {"learning_rate": 1e-5, "beta": 0.0, "logging_steps": 1, "report_to": [], "save_strategy": "no",
                "max_completion_length": config.warmstart.max_completion_tokens if config.model == "builtin" else 256,
                **dict(config.trl)}
    import torch

    if not torch.cuda.is_available():  # TRL defaults to bf16 on GPU; on a CPU-only machine say so
        trl_args.setdefault("use_cpu", True)
        trl_args.setdefault("bf16", False)
    from sagc.demo.training import TrainingChoice

    choice = TrainingChoice(optimizer=config.optimizer, loss=config.loss)
    args = GRPOConfig(**choice.grpo_overrides(
        output_dir=config.output_dir, max_steps=config.max_steps, seed=config.seed, num_generations=g_ref,
        per_device_train_batch_size=config.prompts_per_step * g_ref, **trl_args))
    trainer = SAGCGRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[reward], args=args,
                              train_dataset=dataset, group_controller=dict(config.controller),
                              group_sizes=list(config.group_sizes), group_mode=config.group_mode,
                              dynamic_sampling=config.dynamic_sampling,
                              **choice.trainer_kwargs(model, args.learning_rate))
    log = SessionLog(label=str(config.controller.get("kind")), controller=dict(config.controller))
    out = Path(config.output_dir) / "sagc_session.json"
    SessionCallback(log, None, config.time_budget_s or math.inf, math.inf,
                    lambda: write_json_atomic(out, log.as_dict(), digits=None)).attach(trainer)
    trainer.train()
    console.print(f"done: {len(log.history)} steps; session log {out}; rollout trace "
                  f"{Path(config.output_dir) / 'sagc_trace.jsonl'}")
    return log.as_dict()
