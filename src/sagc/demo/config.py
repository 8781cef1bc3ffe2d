"""The demo's settings: a frozen dataclass that YAML maps onto, validated up front."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sagc._io import check_keys
from sagc.demo._yaml import FieldError, InputError, load_config_mapping, located
from sagc.tasks.config import WarmStartConfig

LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_group_sizes(value: Any) -> tuple[int, ...]:
    """Allowed G: a list of distinct integers >= 2 (a float or a string is an error, not rounded)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise FieldError("group_sizes", f"group_sizes must be a list of integers >= 2, e.g. [2, 4, 8], got {value!r}")
    for i, g in enumerate(value):
        if not _is_int(g) or g < 2:
            raise FieldError(f"group_sizes[{i}]", f"group_sizes[{i}] must be an integer >= 2 (GRPO needs 2 "
                                                  f"completions per prompt), got {g!r} in {list(value)}")
    if len(set(value)) != len(value):
        raise FieldError("group_sizes", f"group_sizes lists a size twice: {list(value)}")
    return tuple(sorted(value))


@dataclass(frozen=True)
class DemoConfig:
    """`sagc demo`: GRPO on the built-in task, static G (the largest allowed) vs SAGC."""

    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)  # task, tiny model, SFT
    prompts_per_step: int = 8  # B: prompts per optimizer step
    group_sizes: tuple[int, ...] = (2, 4, 8, 16)  # allowed G (SAGC chooses among them)
    # static runs beside SAGC; None: the largest G, and G=4 where allowed: the G that SAGC's utility
    # picks most often on this task, and the fastest static G to the target over 5 seeds (median
    # 62 s; G=4, 8 and 16 are within noise of each other there: docs/benchmarks.md)
    static_group_sizes: tuple[int, ...] | None = None
    controller: Mapping[str, Any] = field(
        default_factory=lambda: {"kind": "sagc"})  # the adaptive run: SAGC with its defaults
    time_budget_s: float = 120.0  # training wall-clock per run (held-out evaluations excluded)
    max_steps: int = 400  # hard cap on optimizer steps per run
    # a run goes past time_budget_s until it has made min_steps optimizer steps (SAGC's step-time
    # model acts from its 5th step; a 3-step run shows nothing), for at most max_time_s of training
    min_steps: int = 20
    max_time_s: float | None = None  # None: 1.5 x time_budget_s
    bf16: bool | None = None  # None: fp32 unless bf16 is measured faster here (sagc.tasks.machine)
    num_threads: int | None = None  # torch threads; None: the machine's choice (sagc.tasks.machine)
    eval_every_s: float = 60.0  # held-out evaluation every this many training seconds
    eval_size: int = 512  # held-out problems per evaluation (SE of the accuracy ~2 points)
    eval_sampled: bool = True  # pass@1 sampled at `temperature` (what GRPO optimises); False: greedy
    learning_rate: float = 1e-4  # 60 steps at G=8 lifted held-out pass@1 26% -> 30%, greedy 33% -> 36%
    temperature: float = 1.0  # sampling temperature of the rollouts
    loss_type: str = "dapo"  # TRL loss: grpo | dapo | dr_grpo | bnpo
    target_accuracy: float | None = None  # time-to-target threshold; None: before + target_gain
    target_gain: float = 0.03  # held-out accuracy gain that counts as reaching the target
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_sizes", check_group_sizes(self.group_sizes))
        if self.static_group_sizes is None:
            object.__setattr__(self, "static_group_sizes",
                               tuple(dict.fromkeys([self.group_sizes[-1]] + [4] * (4 in self.group_sizes))))
        if not isinstance(self.static_group_sizes, (list, tuple)) or not self.static_group_sizes:
            raise FieldError("static_group_sizes", "static_group_sizes must be a list of allowed group sizes, "
                                                   f"e.g. [16, 4], got {self.static_group_sizes!r}")
        for i, g in enumerate(self.static_group_sizes):
            if g not in self.group_sizes or isinstance(g, bool):
                raise FieldError(f"static_group_sizes[{i}]", f"static_group_sizes[{i}] must be one of group_sizes "
                                                             f"{list(self.group_sizes)}, got {g!r}")
        object.__setattr__(self, "static_group_sizes", tuple(int(g) for g in self.static_group_sizes))
        for name in ("prompts_per_step", "max_steps", "eval_size", "min_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("time_budget_s", "eval_every_s", "learning_rate", "temperature"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if self.max_time_s is not None and (isinstance(self.max_time_s, bool) or not isinstance(self.max_time_s, (int, float))
                                            or not self.max_time_s >= self.time_budget_s):
            raise ValueError(f"max_time_s must be a number of seconds >= time_budget_s ({self.time_budget_s:g}) or "
                             f"null (1.5 x time_budget_s), got {self.max_time_s!r}")
        if self.bf16 is not None and not isinstance(self.bf16, bool):
            raise ValueError(f"bf16 must be true, false or null (fp32 unless bf16 is measured faster here), "
                             f"got {self.bf16!r}")
        nt = self.num_threads
        if nt is not None and (isinstance(nt, bool) or not isinstance(nt, int) or not 1 <= nt <= 256):
            raise ValueError(f"num_threads must be an integer in [1, 256] or null (the machine's choice), got {nt!r}")
        if not isinstance(self.eval_sampled, bool):
            raise ValueError(f"eval_sampled must be true or false, got {self.eval_sampled!r}")
        if not isinstance(self.target_gain, (int, float)) or not 0 < self.target_gain < 1:
            raise ValueError(f"target_gain must be in (0, 1), got {self.target_gain!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy!r}")
        if not isinstance(self.controller, Mapping) or "kind" not in self.controller:
            raise ValueError("controller must be a mapping with a 'kind' key, e.g. {kind: sagc} or {kind: sagc, delta: 0.2}")
        import sagc

        sagc.from_config(self.controller)  # bad controller settings fail here, naming the field

    @property
    def time_limit_s(self) -> float:
        """Most training seconds of one run (max_time_s, default 1.5 x time_budget_s)."""
        return float(self.max_time_s) if self.max_time_s is not None else 1.5 * self.time_budget_s

    @property
    def max_group_size(self) -> int:
        return self.group_sizes[-1]

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warmstart"] = self.warmstart.as_dict()
        d["group_sizes"] = list(self.group_sizes)
        d["static_group_sizes"] = list(self.static_group_sizes)
        d["controller"] = dict(self.controller)
        return d


def load_demo_config(path: str | Path | None = None, **overrides: Any) -> DemoConfig:
    """DemoConfig from a YAML file (or the defaults), with keyword overrides on top."""
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    where = "demo config"
    if path is not None:
        where = str(path)
        data, lines = load_config_mapping(path, "the keys of DemoConfig (src/sagc/demo/config.py)")  # no duplicates
    check_keys(DemoConfig, data, where)
    data = dict(data)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if "warmstart" in data and isinstance(data["warmstart"], Mapping):
        try:
            data["warmstart"] = WarmStartConfig.from_dict(data["warmstart"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: warmstart: {exc}") from None
    try:
        return DemoConfig(**data)
    except (TypeError, ValueError) as exc:
        raise InputError(located(exc, where, lines)) from None
