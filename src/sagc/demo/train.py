"""`sagc train --config FILE.yaml`: the demo's trainer for a user's own setup.

    model: builtin                  # or a local Hugging Face model directory (never a hub id)
    dataset: builtin                # or a local .jsonl / .parquet file with a `prompt` column
    reward: exact_match             # exact_match | math_verify | "package.module:function"
    output_dir: runs/my-run
    controller: {kind: sagc}          # its defaults; or e.g. {kind: sagc, delta: 0.1, V: 10}
    group_sizes: [2, 4, 8, 16]
    prompts_per_step: 8             # B
    max_steps: 200
    trl: {learning_rate: 1.0e-5, loss_type: dapo, max_completion_length: 1024}  # -> GRPOConfig
    optimizer: {kind: pion}         # optional: adamw | muon | pion | ema_nesterov (docs/optim.md)
    loss: {kind: dispo}             # optional: grpo | dapo | dr_grpo | bnpo | cispo | dispo
    rollout: full                   # optional tail control: full | drop | resume | defer | auto, or e.g.
                                    # {policy: resume, over_sample: 1.5} (docs/trl.md "Tail control")

Everything is validated before anything is written: a bad key or value is an error naming it
(and the file), a missing model directory or an unreadable dataset is reported as such.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from rich.markup import escape

from sagc._io import check_keys, iter_jsonl
from sagc.demo._yaml import FieldError, InputError, load_config_mapping, located
from sagc.demo.config import LOSS_TYPES, _is_int, check_group_sizes
from sagc.demo.train_checks import build_grpo_config, check_model_dir, check_rows, check_trl_values
from sagc.rollout.settings import KNOBS, POLICIES, RolloutSettings, rollout_settings
from sagc.tasks.config import WarmStartConfig

REWARDS = ("exact_match", "math_verify")
GROUP_MODES = ("fixed_prompts", "fixed_completions")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "builtin"  # "builtin" (the warm-started tiny model) or a local model directory
    dataset: str = "builtin"  # "builtin" (the arithmetic task) or a local .jsonl / .parquet file
    reward: str = "exact_match"  # exact_match | math_verify | "module:function" (TRL signature)
    output_dir: str = "runs/sagc-train"
    controller: Mapping[str, Any] = field(default_factory=lambda: {"kind": "sagc"})
    group_sizes: tuple[int, ...] = (2, 4, 8, 16)  # allowed G
    group_mode: str = "fixed_prompts"  # or fixed_completions (rows per step fixed)
    dynamic_sampling: bool = False  # DAPO dynamic sampling (drop all-equal groups, refill)
    ragged_weight: str = "prompt"  # per-prompt G ({kind: sagc, per_prompt: true}): prompt | completion
    prompt_lookahead: int = 4  # per-prompt G: prompts offered per step / B (candidates replace skipped ones)
    prompts_per_step: int = 8  # B (fixed_prompts); rows = B x num_generations (fixed_completions)
    max_steps: int = 100
    time_budget_s: float | None = None  # stop after this much training wall-clock (None: max_steps)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)  # for model: builtin
    trl: Mapping[str, Any] = field(default_factory=dict)  # any GRPOConfig field, passed through
    seed: int = 0
    optimizer: Any = None  # {kind: adamw|muon|pion|ema_nesterov, ...} (sagc.optim); None: HF's default AdamW
    loss: Any = None  # a TRL loss kind or {kind: dispo, eps_high_pos: ...} (sagc.losses); None: trl.loss_type
    num_threads: int | None = None  # torch threads on a CPU; None: the machine's choice (sagc.tasks.machine)
    # tail control inside a step (sagc.rollout): a policy name or {policy: ..., knob: ...}; kept as
    # RolloutSettings; full (the default) waits for every completion, as before
    rollout: Any = "full"

    def __post_init__(self) -> None:
        # Each check raises FieldError(key, ...) so the loader can add the key's line; a new key
        # adds one check here (and its default above).
        for name in ("model", "dataset", "output_dir", "reward"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise FieldError(name, f"{name} must be a non-empty string, got {v!r}")
        if self.reward not in REWARDS and not re.fullmatch(r"[\w.]+:\w+", self.reward):
            raise FieldError("reward", f"reward must be one of {list(REWARDS)} or 'package.module:function', "
                                       f"got {self.reward!r}")
        if self.group_mode not in GROUP_MODES:
            raise FieldError("group_mode", f"group_mode must be one of {list(GROUP_MODES)}, got {self.group_mode!r}")
        object.__setattr__(self, "group_sizes", check_group_sizes(self.group_sizes))
        if not isinstance(self.dynamic_sampling, bool):
            raise FieldError("dynamic_sampling",
                             f"dynamic_sampling must be true or false, got {self.dynamic_sampling!r}")
        for name in ("prompts_per_step", "max_steps"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise FieldError(name, f"{name} must be an integer >= 1, got {v!r}")
        nt = self.num_threads
        if nt is not None and (not _is_int(nt) or not 1 <= nt <= 256):
            raise FieldError("num_threads", f"num_threads must be an integer in [1, 256] or null (the machine's "
                                            f"choice), got {nt!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise FieldError("seed", f"seed must be an integer >= 0, got {self.seed!r}")
        t = self.time_budget_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf):
            raise FieldError("time_budget_s", f"time_budget_s must be a number of seconds > 0 (or null for no "
                                              f"budget), got {t!r}")
        if not isinstance(self.warmstart, WarmStartConfig):
            raise FieldError("warmstart", f"warmstart must be a mapping of warm-start settings, got {self.warmstart!r}")
        if not isinstance(self.trl, Mapping):
            raise FieldError("trl", f"trl must be a mapping of GRPOConfig fields, got {self.trl!r}")
        if "loss_type" in self.trl and self.trl["loss_type"] not in LOSS_TYPES:
            raise FieldError("trl.loss_type", f"trl.loss_type must be one of {list(LOSS_TYPES)}, "
                                              f"got {self.trl['loss_type']!r}")
        if not isinstance(self.controller, Mapping) or "kind" not in self.controller:
            raise FieldError("controller", "controller must be a mapping with a 'kind' key, e.g. {kind: sagc}, "
                                           f"got {self.controller!r}")
        from sagc.demo.training import TrainingChoice

        try:
            TrainingChoice(optimizer=self.optimizer, loss=self.loss).check_trl(self.trl)
        except ValueError as exc:  # messages start with the key they are about
            raise FieldError("optimizer" if str(exc).startswith("optimizer") else "loss", str(exc)) from None
        import sagc

        try:
            controller = sagc.from_config(self.controller)
        except (TypeError, ValueError) as exc:
            raise FieldError("controller", f"controller: {exc}") from None
        self._check_per_prompt(controller)
        object.__setattr__(self, "rollout", _rollout_settings(self.rollout))
        self._check_tail(controller)

    def _check_tail(self, controller: Any) -> None:
        """What SAGCGRPOTrainer refuses with tail control (tail.check_tail), named by config key."""
        settings = self.rollout
        if not settings.aborts:
            return
        where = f"rollout policy {settings.policy!r}"
        if getattr(controller, "uses_prompt_ids", False):
            raise FieldError("rollout", f"{where} runs at one G per step; controller {self.controller['kind']!r} "
                                        "sizes each prompt (per-prompt G), which tail control does not support "
                                        "yet: use rollout: full or a controller without per-prompt sizes")
        if self.dynamic_sampling:
            raise FieldError("rollout", f"{where} cannot be combined with dynamic_sampling: true (both refill the "
                                        "step with other prompts); set dynamic_sampling: false or rollout: full")
        if self.trl.get("use_vllm"):
            raise FieldError("rollout", f"{where} needs an engine that reports completions as they finish and "
                                        "cancels the rest: set trl.use_vllm: false (transformers' continuous "
                                        "batching, trl.use_transformers_continuous_batching: true, or plain "
                                        "generate) or rollout: full")

    def _check_per_prompt(self, controller: Any) -> None:
        """What SAGCGRPOTrainer refuses (per_prompt.check_per_prompt), named by config key."""
        if self.ragged_weight not in ("prompt", "completion"):
            raise FieldError("ragged_weight", f"ragged_weight must be 'prompt' or 'completion', got {self.ragged_weight!r}")
        if isinstance(self.prompt_lookahead, bool) or not isinstance(self.prompt_lookahead, int) \
                or self.prompt_lookahead < 1:
            raise FieldError("prompt_lookahead", "prompt_lookahead must be an integer >= 1 (prompts offered per step "
                                                 f"as a multiple of B; 1: the dealt prompts only), got "
                                                 f"{self.prompt_lookahead!r}")
        kind = self.controller["kind"]
        if getattr(controller, "sampling", None) is not None:
            raise FieldError("controller", f"controller kind {kind!r} runs dynamic-sampling rounds (simulator "
                                           "baseline); for DAPO in training set dynamic_sampling: true with "
                                           "{kind: static} or {kind: sagc}")
        if getattr(controller, "uses_prompt_ids", False):
            if self.group_mode != "fixed_prompts":
                raise FieldError("group_mode", f"controller {kind!r} sizes each prompt, which needs group_mode: "
                                               f"fixed_prompts, got {self.group_mode!r}")
            if self.dynamic_sampling:
                raise FieldError("dynamic_sampling", f"controller {kind!r} sizes each prompt (and skips prompts "
                                                     "predicted all-equal), which replaces dynamic sampling: set "
                                                     "dynamic_sampling: false")


def _rollout_settings(value: Any) -> RolloutSettings:
    """The config's `rollout:` (a policy name, a mapping of knobs, or RolloutSettings) as
    RolloutSettings; a bad value is a FieldError naming its key (rollout.over_sample, ...)."""
    if isinstance(value, RolloutSettings):
        return value
    if value is None:  # `rollout:` with no value: the default
        return RolloutSettings()
    if isinstance(value, str):
        if value not in POLICIES:
            raise FieldError("rollout", f"rollout must be a policy name, one of {list(POLICIES)}, or a mapping "
                                        f"{{policy: ..., knob: ...}}, got {value!r}")
        value = {"policy": value}
    if not isinstance(value, Mapping):
        raise FieldError("rollout", f"rollout must be a policy name, one of {list(POLICIES)}, or a mapping "
                                    f"{{policy: ..., knob: ...}}, got {value!r}")
    unknown = [k for k in value if k not in KNOBS]
    if unknown:
        raise FieldError(f"rollout.{unknown[0]}", f"rollout.{unknown[0]} is not a rollout setting; valid keys "
                                                  f"are {list(KNOBS)}")
    try:
        return rollout_settings(value)
    except (TypeError, ValueError) as exc:  # "rollout: rollout.KEY must be ..."
        msg = str(exc).removeprefix("rollout: ")
        m = re.match(r"rollout\.(\w+)(\[\d+\])?", msg)
        key = m.group(0) if m and m.group(1) in value else "rollout"
        raise FieldError(key, msg) from None


EXAMPLE = "examples/train-builtin-cpu.yaml"


def load_train_config(path: str | Path) -> TrainConfig:
    """TrainConfig from a YAML file; every error names the file, the key and its line."""
    data, lines = load_config_mapping(path, EXAMPLE)
    try:
        check_keys(TrainConfig, data, str(path))
        data = dict(data)
        if isinstance(data.get("warmstart"), Mapping):
            try:
                data["warmstart"] = WarmStartConfig.from_dict(data["warmstart"])
            except (TypeError, ValueError) as exc:
                raise FieldError("warmstart", f"warmstart: {exc}") from None
        config = TrainConfig(**data)
        _check_trl_keys(config)
    except (TypeError, ValueError) as exc:
        raise InputError(located(exc, path, lines)) from None
    object.__setattr__(config, "_source", (str(path), lines))  # later checks (run_train) name file and line
    return config


@contextlib.contextmanager
def _located(config: TrainConfig) -> Iterator[None]:
    """A FieldError about a key of a config loaded from a file gets the file and the key's line."""
    try:
        yield
    except FieldError as exc:
        source = getattr(config, "_source", None)
        if source is None:
            raise
        raise InputError(located(exc, *source)) from None


OWNED = {"output_dir": "output_dir", "max_steps": "max_steps", "num_generations": "group_sizes",
         "per_device_train_batch_size": "prompts_per_step", "seed": "seed"}


def _check_trl_keys(config: TrainConfig) -> None:
    from trl import GRPOConfig

    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    for key in config.trl:
        if key not in names:
            raise FieldError(f"trl.{key}", f"trl.{key} is not a GRPOConfig field")
        if key in OWNED:
            raise FieldError(f"trl.{key}", f"trl.{key}: set {OWNED[key]} at the top level of the config, not "
                                           "under trl")
    rfc = config.trl.get("resume_from_checkpoint")
    if rfc is not None and not isinstance(rfc, (bool, str)):
        raise FieldError("trl.resume_from_checkpoint", "trl.resume_from_checkpoint must be true (the latest "
                         f"complete checkpoint), a checkpoint folder, or false, got {rfc!r}")
    check_trl_values({k: v for k, v in config.trl.items() if k != "resume_from_checkpoint"})
    settings = grpo_settings(config)
    build_grpo_config(settings, [k for k in config.trl if k in settings])


def on_cpu(config: TrainConfig) -> bool:
    """Training runs on the CPU: no CUDA, or trl.use_cpu."""
    import torch

    return bool(config.trl.get("use_cpu")) or not torch.cuda.is_available()


def train_compute(config: TrainConfig) -> Any:
    """Precision and threads (sagc.tasks.machine.choose): trl.bf16 and num_threads where given."""
    from sagc.tasks.machine import choose

    return choose(bf16=config.trl.get("bf16"), threads=config.num_threads, cuda=not on_cpu(config))


def grpo_settings(config: TrainConfig, compute: Any = None) -> dict[str, Any]:
    """GRPOConfig keywords for this config (all but output_dir): our defaults, the compute choice
    (use_cpu and bf16 on a CPU, nothing on a GPU), then the user's `trl:`. Without `compute`
    (validation) fp32 on a CPU: what is valid does not depend on the machine's probe."""
    from sagc.tasks.machine import Compute

    if compute is None:
        compute = Compute() if on_cpu(config) else Compute(device="cuda", bf16=None, threads=None)
    g_ref = config.group_sizes[len(config.group_sizes) // 2]
    trl_args = {"learning_rate": 1e-5, "beta": 0.0, "logging_steps": 1, "report_to": [], "save_strategy": "no",
                "max_completion_length": config.warmstart.max_completion_tokens if config.model == "builtin" else 256,
                **compute.grpo_args(), **{k: v for k, v in config.trl.items() if k != "resume_from_checkpoint"}}
    return training_choice(config).grpo_overrides(
        max_steps=config.max_steps, seed=config.seed, num_generations=g_ref,
        per_device_train_batch_size=config.prompts_per_step * g_ref, **trl_args)  # loss: sets loss_type


def training_choice(config: TrainConfig) -> Any:
    """The config's optimizer and loss (sagc.demo.training.TrainingChoice, validated)."""
    from sagc.demo.training import TrainingChoice

    return TrainingChoice(optimizer=config.optimizer, loss=config.loss)


# ---- data, model and reward, each failing with a clear message ------------------------------------
def load_dataset_file(path: str, needs_answer: str | None = None) -> Any:
    """A datasets.Dataset from a local .jsonl or .parquet file with a `prompt` column.

    Every row's prompt must be text or a chat; with `needs_answer` (the reward's name) every row
    also needs an `answer`. A bad row is named by its line (.jsonl) or row number (.parquet).
    """
    from datasets import Dataset

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dataset {path}: no such file (give a local .jsonl or .parquet file, or 'builtin')")
    if p.suffix == ".jsonl":
        rows, lines = [], []
        for lineno, row in iter_jsonl(p, "dataset"):
            if not isinstance(row, dict) or "prompt" not in row:
                raise InputError(f"dataset {path}, line {lineno}: each line needs a 'prompt' field")
            rows.append(row)
            lines.append(lineno)
        if not rows:
            raise InputError(f"dataset {path}: no rows")
        check_rows(rows, path, needs_answer, lambda i: f"line {lines[i]}")
        try:
            return Dataset.from_list(rows)
        except Exception as exc:  # pyarrow: a column whose type changes from row to row
            raise InputError(f"dataset {path}: the rows do not form a table ({type(exc).__name__}: {exc}); "
                             "give every row the same fields with the same types") from None
    if p.suffix == ".parquet":
        try:
            ds = Dataset.from_parquet(str(p))
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(f"dataset {path}: cannot read as parquet ({type(exc).__name__}: {exc})") from None
        if "prompt" not in ds.column_names:
            raise InputError(f"dataset {path}: needs a 'prompt' column, has {ds.column_names}")
        if len(ds) == 0:
            raise InputError(f"dataset {path}: no rows")
        if needs_answer and "answer" not in ds.column_names:
            raise InputError(f"dataset {path}: reward {needs_answer} needs an 'answer' column, has {ds.column_names}")
        cols = ["prompt"] + (["answer"] if needs_answer else [])
        check_rows(ds.select_columns(cols), path, needs_answer, lambda i: f"row {i + 1}")
        return ds
    raise InputError(f"dataset {path}: unsupported file type {p.suffix!r} (use .jsonl or .parquet)")


def load_model(config: TrainConfig, threads: int | None = None) -> tuple[Any, Any]:
    from sagc.tasks import warmstart

    if config.model == "builtin":  # its warm-start trains with num_threads' threads where given
        _, _, ckpt = warmstart.load_or_train(warmstart.resolved(config.warmstart, threads))
        return warmstart.load_checkpoint(ckpt)
    p = check_model_dir(config.model)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        return AutoModelForCausalLM.from_pretrained(p, local_files_only=True), \
            AutoTokenizer.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # what transformers raises for a broken folder
        raise InputError(f"model {config.model}: cannot be loaded ({type(exc).__name__}: {exc})") from None


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
            raise InputError("reward math_verify needs the math-verify package: pip install 'sagc[math]'") from None
        return math_verify_reward
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"reward {spec!r}: cannot import ({exc})") from None
    if not callable(fn):
        raise ValueError(f"reward {spec!r} is not callable")
    return fn


def run_train(config: TrainConfig, console: Any, resume: str | None = None) -> dict:
    """Validate every input, then train; returns the session log (also written to output_dir).

    `resume`: "auto" (the newest complete checkpoint in output_dir) or a checkpoint folder; the
    config's trl.resume_from_checkpoint means the same. Nothing is written before training starts.
    """
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                 ("TOKENIZERS_PARALLELISM", "false"), ("TRL_EXPERIMENTAL_SILENCE", "1")):
        os.environ.setdefault(k, v)
    from datasets import Dataset

    from sagc._io import write_json_atomic
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from sagc.demo import train_resume
    from sagc.demo.progress import RunProgress
    from sagc.demo.session import SessionCallback, SessionLog
    from sagc.demo.train_checks import check_output_dir
    from sagc.integrations.trl import SAGCGRPOTrainer
    from sagc.integrations.trl.layout import BatchSettings, GroupOptions, plan_layout
    from sagc.tasks import arith
    from sagc.tasks.machine import machine_info, machine_line

    with _located(config):
        request = train_resume.resume_request(resume, config.trl)
        check_output_dir(config.output_dir, resuming=request is not None)
        compute = train_compute(config)
        args = build_grpo_config(grpo_settings(config, compute), [], output_dir=config.output_dir)
        layout = plan_layout(BatchSettings.from_args(args, args.world_size),
                             GroupOptions(group_mode=config.group_mode, group_sizes=config.group_sizes))
        builtin = config.dataset == "builtin"
        reward = resolve_reward(config.reward, builtin)
        if builtin:
            dataset = Dataset.from_list(arith.to_records(arith.sample_problems(
                config.warmstart.task, "train", config.max_steps * config.prompts_per_step, seed=config.seed)))
        else:
            needs_answer = config.reward if config.reward in REWARDS else None  # a custom reward: its own business
            dataset = load_dataset_file(config.dataset, needs_answer=needs_answer)
        if len(dataset) < layout.sampler_prompts:  # TRL's sampler drops a short batch: the run would do 0 steps
            raise InputError(f"dataset {config.dataset} has {len(dataset)} prompts, fewer than the "
                             f"{layout.sampler_prompts} one training step draws (prompts_per_step: "
                             f"{config.prompts_per_step}, group_mode: {config.group_mode}); add prompts or lower "
                             "prompts_per_step")
        out = Path(config.output_dir)
        label = str(config.controller.get("kind"))
        checkpoint, log = None, SessionLog(label=label, controller=dict(config.controller))
        if request is not None:
            checkpoint, notes = train_resume.find_checkpoint(config.output_dir, request)
            step = train_resume.check_fits(checkpoint, config, layout.allowed, layout.mode, out / "sagc_trace.jsonl")
            log, note = train_resume.restore_session(config.output_dir, step, label, config.controller)
            for line in notes + ([note] if note else []):
                console.print(f"[yellow]note:[/] {escape(line)}")
            console.print(f"resuming from {checkpoint} (step {step})")
    compute.apply()
    log.machine = machine_info(compute)
    console.print(escape(machine_line(log.machine)))
    model, tokenizer = load_model(config, compute.threads)  # every input is checked before the output folder exists
    trainer = SAGCGRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[reward], args=args,
                              train_dataset=dataset, group_controller=dict(config.controller),
                              group_sizes=list(config.group_sizes), group_mode=config.group_mode,
                              dynamic_sampling=config.dynamic_sampling, ragged_weight=config.ragged_weight,
                              prompt_lookahead=config.prompt_lookahead,
                              rollout=config.rollout,
                              **training_choice(config).trainer_kwargs(model, args.learning_rate))
    for printer in (PrinterCallback, ProgressCallback):  # TRL's raw metric dicts: to report_to and the log only
        trainer.remove_callback(printer)
    session = out / train_resume.SESSION_FILE
    save = lambda: write_json_atomic(session, log.as_dict(), digits=None)  # noqa: E731
    clock = float(log.history[-1]["wall_s"]) if log.history else 0.0  # the budget counts both parts
    with RunProgress(console, log, budget_s=config.time_budget_s, max_steps=config.max_steps,
                     start_clock=clock) as bar:
        callback = SessionCallback(log, None, config.time_budget_s or math.inf, math.inf, save, bar,
                                   keep_trl_logs=True)
        callback.clock = clock
        callback.attach(trainer)
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
        except KeyboardInterrupt:
            if out.is_dir():
                log.status = "interrupted"
                save()
            raise
    console.print(f"done: {len(log.history)} steps; session log {session}; rollout trace {out / 'sagc_trace.jsonl'}")
    console.print(escape(machine_line(log.machine, {label: log.steps_per_s})))
    return log.as_dict()
