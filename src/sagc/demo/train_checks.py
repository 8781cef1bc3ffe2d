"""Up-front checks of `sagc train` inputs: the `trl:` section, dataset rows, model folder, output folder.

Everything here runs before the output folder is created, so a bad input costs nothing and
leaves nothing behind. Each failure is an InputError naming the key (`trl.<field>`), the file
and, where there is one, the line or row.

The `trl:` section is checked in three layers, because GRPOConfig itself accepts almost anything
(a negative temperature or a string learning rate fail only mid-training, with a traceback):
  1. the value's type against GRPOConfig's annotation (`learning_rate: 1e-5` is a *string* in
     YAML 1.1, a classic trap, and is named as such);
  2. the ranges below (one line per field; extend TRL_RANGES when a field deserves one);
  3. GRPOConfig(**settings) itself, in a throw-away folder; a failure is pinned on the key that
     fails on its own.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

from sagc.demo._yaml import FieldError, InputError

# field -> (test on a number, what it must be); None values pass where the annotation allows None
TRL_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "temperature": (lambda v: v > 0, "> 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": (lambda v: v >= 0, ">= 0 (0 disables it)"),
    "min_p": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "repetition_penalty": (lambda v: v > 0, "> 0"),
    "max_completion_length": (lambda v: v >= 1, ">= 1 token"),
    "max_prompt_length": (lambda v: v >= 1, ">= 1 token"),
    "learning_rate": (lambda v: v >= 0, ">= 0"),
    "beta": (lambda v: v >= 0, ">= 0"),
    "epsilon": (lambda v: v > 0, "> 0"),
    "epsilon_high": (lambda v: v > 0, "> 0"),
    "num_iterations": (lambda v: v >= 1, ">= 1"),
    "steps_per_generation": (lambda v: v >= 1, ">= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, ">= 1"),
    "save_steps": (lambda v: v > 0, "> 0"),
    "logging_steps": (lambda v: v > 0, "> 0"),
    "save_total_limit": (lambda v: v >= 1, ">= 1"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "warmup_steps": (lambda v: v >= 0, ">= 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "dataloader_num_workers": (lambda v: v >= 0, ">= 0"),
}


def _hints() -> dict[str, Any]:
    from trl import GRPOConfig

    return typing.get_type_hints(GRPOConfig)


def _type_ok(value: Any, hint: Any) -> bool:
    """Does a YAML value fit a GRPOConfig annotation? Unknown annotations accept anything."""
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list:
        return isinstance(value, list)
    if hint is dict or origin is dict:
        return isinstance(value, Mapping)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, (str, hint))
    return True


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}
    return names.get(hint, names.get(typing.get_origin(hint), getattr(hint, "__name__", str(hint))))


def check_trl_values(trl: Mapping[str, Any]) -> None:
    """Layers 1 and 2: each value's type and range (FieldError naming `trl.<field>`)."""
    hints = _hints()
    for name, value in trl.items():
        key = f"trl.{name}"
        hint = hints.get(name)
        if hint is not None and not _type_ok(value, hint):
            trap = ""
            if isinstance(value, str):
                try:
                    float(value)
                    fixed = re.sub(r"^([+-]?\d+)([eE])", r"\1.0\2", value.strip())
                    trap = (f" (a string: YAML reads numbers like {value} without a dot as text; write {fixed})"
                            if fixed != value.strip() else " (a string; remove the quotes)")
                except ValueError:
                    pass
            raise FieldError(key, f"{key} must be {_describe(hint)}, got {value!r}{trap}")
        rule = TRL_RANGES.get(name)
        if rule is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            test, what = rule
            if not (math.isfinite(value) and test(value)):
                raise FieldError(key, f"{key} must be {what}, got {value!r}")


def build_grpo_config(settings: Mapping[str, Any], user_keys: list[str], output_dir: str | None = None) -> Any:
    """Layer 3: GRPOConfig(**settings). With output_dir None it is built in a throw-away folder
    (nothing is created where the run will write); a failure names the user's key that fails alone."""
    from trl import GRPOConfig

    def build(kwargs: Mapping[str, Any], where: str) -> Any:
        return GRPOConfig(**{**kwargs, "output_dir": where})

    if output_dir is not None:
        return build(settings, output_dir)
    with tempfile.TemporaryDirectory(prefix="sagc-check-") as tmp:
        where = os.path.join(tmp, "out")
        try:
            return build(settings, where)
        except Exception as exc:  # transformers raises ValueError, TypeError, ImportError, ...
            base = {k: v for k, v in settings.items() if k not in user_keys}
            for name in user_keys:
                try:
                    build({**base, name: settings[name]}, where)
                except Exception as alone:
                    raise FieldError(f"trl.{name}", f"trl.{name}: GRPOConfig refuses it: {alone}") from None
            raise InputError(f"trl: GRPOConfig refuses the combination of {sorted(user_keys)}: {exc}") from None


# ---- dataset rows ------------------------------------------------------------------------------
def prompt_problem(prompt: Any) -> str | None:
    """Why a `prompt` value cannot be trained on (None: fine). TRL takes text or a chat (list of messages)."""
    if isinstance(prompt, str):
        return None if prompt.strip() else "'prompt' is empty"
    if isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) and "content" in m for m in prompt):
        return None
    return (f"'prompt' must be text or a list of chat messages ({{role, content}}), got "
            f"{'null' if prompt is None else type(prompt).__name__} {json.dumps(prompt, default=str)[:60]}")


def check_rows(rows: Any, path: str, needs_answer: str | None, where: Callable[[int], str]) -> None:
    """Every row has a usable prompt (and an `answer` when the reward needs one)."""
    for i, row in enumerate(rows):
        problem = prompt_problem(row.get("prompt"))
        if problem is None and needs_answer and row.get("answer") is None:
            problem = f"reward {needs_answer} needs an 'answer' field in every row"
        if problem:
            raise InputError(f"dataset {path}, {where(i)}: {problem}")


# ---- model folder and output folder -------------------------------------------------------------
def check_model_dir(model: str) -> Path:
    p = Path(model)
    if not p.is_dir():
        raise FileNotFoundError(f"model {model}: no such directory (give a local Hugging Face model directory "
                                "with config.json, or 'builtin'; hub ids are not fetched)")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"model {model}: no config.json in it; not a Hugging Face model directory")
    try:
        json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"model {cfg}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(f"model {cfg}: cannot be read ({exc})") from None
    return p


RUN_FILES = ("sagc_session.json", "sagc_trace.jsonl")


def previous_run(output_dir: str | os.PathLike) -> list[str]:
    """What of an earlier run `output_dir` holds (checkpoints, session log, trace)."""
    p = Path(output_dir)
    if not p.is_dir():
        return []
    found = sorted(q.name for q in p.iterdir() if q.is_dir() and q.name.startswith("checkpoint-"))
    return found + [name for name in RUN_FILES if (p / name).exists()]


def check_output_dir(output_dir: str, resuming: bool) -> None:
    """The output folder can be created (or is a folder) and a fresh run would overwrite nothing."""
    p = Path(output_dir)
    if p.exists() and not p.is_dir():
        raise FieldError("output_dir", f"output_dir {output_dir} is a file, not a folder")
    parent = p.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise FieldError("output_dir", f"output_dir {output_dir}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FieldError("output_dir", f"output_dir {output_dir}: cannot write in {parent} (permission denied)")
    earlier = previous_run(p)
    if earlier and not resuming:
        shown = earlier if len(earlier) <= 4 else earlier[:3] + [f"... ({len(earlier)} in all)"]
        raise FieldError("output_dir", f"output_dir {output_dir} already holds a run ({', '.join(shown)}); a fresh "
                         "run would overwrite it. Continue it with `sagc train --config FILE --resume auto`, or set "
                         "another output_dir (or delete this one) to start afresh")

