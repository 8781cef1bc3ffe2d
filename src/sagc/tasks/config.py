"""Settings of the built-in task, the tiny model and its supervised warm-start.

Pure python (no torch), so a scenario file or a CLI can build and validate them cheaply. Every
dataclass is frozen and validated up front; messages name the field, e.g.
"TaskConfig.max_steps must be an integer >= min_steps (1), got 0". `from_dict` builds one from a
plain mapping (YAML/JSON) and rejects unknown keys by name. `as_dict` is the canonical,
JSON-serialisable form that the warm-start cache key is hashed from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from sagc._io import check_keys

KINDS = ("add", "mul")  # problem families of sagc.tasks.arith


def _int(owner: str, name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}.{name} must be an integer {span}, got {value!r}")


def _float(owner: str, name: str, value: Any, low: float, high: float, *, open_low: bool = False,
           open_high: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    above = v > low if open_low else v >= low
    below = v < high if open_high else v <= high
    if isinstance(value, bool) or not (above and below):
        span = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"{owner}.{name} must be in {span}, got {value!r}")


def _from_dict(cls: type, data: Mapping[str, Any], nested: Mapping[str, type] | None = None) -> Any:
    check_keys(cls, data, cls.__name__)
    kwargs = dict(data)
    for key, sub in (nested or {}).items():
        if key in kwargs and not isinstance(kwargs[key], sub):
            kwargs[key] = sub.from_dict(kwargs[key])
    for key, value in kwargs.items():  # YAML gives lists where the dataclass wants tuples
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    return cls(**kwargs)


@dataclass(frozen=True)
class TaskConfig:
    """Multi-step arithmetic with a written scratchpad (see sagc.tasks.arith).

    A problem needs `steps` additions, drawn from P(steps = s) ~ s**-tail on [min_steps,
    max_steps]: most problems are short, a few are long, so solution lengths are long-tailed.
    """

    kinds: tuple[str, ...] = KINDS  # "add": a+b+c+...=  "mul": a*b= by repeated addition
    kind_weights: tuple[float, ...] = (0.7, 0.3)  # sampling weight of each kind
    min_steps: int = 1  # fewest additions in a solution
    max_steps: int = 12  # most additions in a solution
    tail: float = 1.0  # exponent of the power law over steps; smaller = heavier tail
    max_operand: int = 9  # operands of "add" and the multiplicand of "mul" are in [1, max_operand]
    heldout_fraction: float = 0.1  # share of the problem space (by hash of the question) held out

    def __post_init__(self) -> None:
        own = "TaskConfig"
        kinds = tuple(self.kinds)
        if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(f"{own}.kinds must be distinct names from {list(KINDS)}, got {self.kinds!r}")
        weights = tuple(self.kind_weights)
        if len(weights) != len(kinds):
            raise ValueError(
                f"{own}.kind_weights needs one weight per kind ({len(kinds)}), got {len(weights)}"
            )
        for w in weights:
            _float(own, "kind_weights", w, 0.0, float("inf"), open_high=True)
        if sum(float(w) for w in weights) <= 0:
            raise ValueError(f"{own}.kind_weights must not all be 0, got {self.kind_weights!r}")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "kind_weights", tuple(float(w) for w in weights))
        _int(own, "min_steps", self.min_steps, 1)
        _int(own, "max_steps", self.max_steps, self.min_steps, 64)
        _float(own, "tail", self.tail, 0.0, 10.0)
        _int(own, "max_operand", self.max_operand, 2, 999)
        _float(own, "heldout_fraction", self.heldout_fraction, 0.0, 0.5, open_low=True)

    def as_dict(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "kind_weights": list(self.kind_weights),
                "min_steps": self.min_steps, "max_steps": self.max_steps, "tail": self.tail,
                "max_operand": self.max_operand, "heldout_fraction": self.heldout_fraction}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ModelConfig:
    """A tiny Llama-style causal LM (transformers LlamaConfig); the defaults give ~1.05M parameters,
    small enough that sampling 64 completions of 128 tokens takes ~2 s on 2 CPU cores."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 256  # prompt + completion tokens; the task needs < 200
    tie_embeddings: bool = True  # input and output embeddings share weights

    def __post_init__(self) -> None:
        own = "ModelConfig"
        _int(own, "hidden_size", self.hidden_size, 8, 4096)
        _int(own, "num_layers", self.num_layers, 1, 64)
        _int(own, "num_heads", self.num_heads, 1, 64)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"{own}.hidden_size ({self.hidden_size}) must be num_heads ({self.num_heads}) times "
                "an even head size (rotary embeddings rotate pairs of channels)"
            )
        _int(own, "intermediate_size", self.intermediate_size, 8, 65536)
        _int(own, "max_position_embeddings", self.max_position_embeddings, 32, 65536)
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"{own}.tie_embeddings must be true or false, got {self.tie_embeddings!r}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class WarmStartConfig:
    """Supervised warm-start of the tiny model on scratchpad solutions.

    It is deliberately short and noisy: a fraction `loop_prob` of the targets never reach an
    answer (the scratchpad keeps going to `max_completion_tokens`) and `error_prob` carry one
    arithmetic slip, so the policy starts with a held-out accuracy well below 100% and a
    realistic tail of runaway completions; RL then has something to fix. With the defaults
    (~2 min on 2 cores): held-out greedy accuracy 33%, sampled pass@1 26%, 3.7% of sampled
    completions run to the cap. With loop_prob 0.01 / error_prob 0.1 the policy was stronger
    (43% greedy) but 60 GRPO steps did not move its held-out accuracy: too little left to fix.
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 300  # optimizer steps
    batch_size: int = 64  # sequences per step, freshly sampled from the train split
    lr: float = 3e-3  # peak AdamW learning rate (linear warm-up, cosine decay to 10%)
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    loop_prob: float = 0.06  # share of targets that loop without an answer up to the cap
    error_prob: float = 0.15  # share of targets with one wrong addition (and a wrong answer)
    max_completion_tokens: int = 128  # cap of looping targets; use it as max_new_tokens too
    seed: int = 0
    # torch intra-op threads while training; None: the machine's choice (sagc.tasks.machine).
    # Part of the cache key once resolved, so a machine that chooses 2 keeps the checkpoints
    # cached under the old default of 2
    num_threads: int | None = None

    def __post_init__(self) -> None:
        own = "WarmStartConfig"
        if not isinstance(self.task, TaskConfig):
            raise ValueError(f"{own}.task must be a TaskConfig, got {type(self.task).__name__}")
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"{own}.model must be a ModelConfig, got {type(self.model).__name__}")
        _int(own, "steps", self.steps, 0)
        _int(own, "batch_size", self.batch_size, 1)
        _float(own, "lr", self.lr, 0.0, 1.0, open_low=True)
        _int(own, "warmup_steps", self.warmup_steps, 0)
        _float(own, "weight_decay", self.weight_decay, 0.0, 1.0)
        _float(own, "grad_clip", self.grad_clip, 0.0, float("inf"), open_high=True)
        _float(own, "loop_prob", self.loop_prob, 0.0, 1.0)
        _float(own, "error_prob", self.error_prob, 0.0, 1.0)
        if self.loop_prob + self.error_prob > 1.0:
            raise ValueError(f"{own}.loop_prob + error_prob must be <= 1, got "
                             f"{self.loop_prob} + {self.error_prob}")
        _int(own, "max_completion_tokens", self.max_completion_tokens, 16)
        # longest prompt: BOS + "Q: " + (max_steps + 1) operands with their signs + "=\nA: "
        prompt = 1 + 3 + (self.task.max_steps + 1) * (len(str(self.task.max_operand)) + 1) + 4
        if self.max_completion_tokens + prompt > self.model.max_position_embeddings:
            raise ValueError(
                f"{own}.max_completion_tokens ({self.max_completion_tokens}) plus the longest prompt "
                f"({prompt} tokens) must fit in model.max_position_embeddings "
                f"({self.model.max_position_embeddings})"
            )
        _int(own, "seed", self.seed, 0)
        if self.num_threads is not None:
            _int(own, "num_threads", self.num_threads, 1, 256)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["task"] = self.task.as_dict()
        out["model"] = self.model.as_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WarmStartConfig":
        return _from_dict(cls, data, nested={"task": TaskConfig, "model": ModelConfig})
