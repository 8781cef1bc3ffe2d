"""Which group sizes a GRPO trainer can run, and how one step's rows are laid out (no torch).

A TRL generation round hands every process `per_device_train_batch_size * steps_per_generation`
dataset rows (its share of `generation_batch_size`, R). The rows are fetched *before* the step
starts, so the sampler that produces them must not depend on G. We therefore let TRL's
RepeatSampler deal out prompts in fixed "slots" (each prompt repeated `slot_repeat` times, its
rows contiguous and never split across processes) and re-expand each prompt to the chosen G at
generation time:

    fixed_prompts (default)  B = R / num_generations prompts every step, G completions each:
                             the step has B*G rows, growing with G (memory grows with G).
                             slot_repeat = num_generations, so the sampler is TRL's own.
    fixed_completions        R rows every step, B(G) = R / G prompts. The sampler deals
                             R / G_min prompts; a step with a larger G uses the first B(G) of
                             them and skips the rest (logged as sagc/prompts_skipped).

Constraints (each violation is a ValueError that names the settings to change):
  * G changes only between optimizer steps: steps_per_generation * num_iterations must be a
    multiple of gradient_accumulation_steps (a generation round spans whole optimizer steps).
  * every process holds whole groups, the same number on every process;
  * a process's rows split into steps_per_generation equal micro-batches (TRL's
    split_tensor_dict silently drops a remainder, so we refuse uneven splits up front).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sagc.integrations.trl.ragged import RAGGED_WEIGHTS

GROUP_MODES = ("fixed_prompts", "fixed_completions")


@dataclass(frozen=True)
class GroupOptions:
    """How SAGCGRPOTrainer varies G (everything not about G stays in GRPOConfig)."""

    group_mode: str = "fixed_prompts"  # or "fixed_completions" (see the module docstring)
    group_sizes: tuple[int, ...] | None = None  # explicit allowed G; None: all compatible G in range
    min_group_size: int = 2  # range of candidate G when group_sizes is None
    max_group_size: int | None = None  # None: 2 x GRPOConfig.num_generations
    dynamic_sampling: bool = False  # DAPO: drop all-equal-reward groups and refill
    max_refill_rounds: int = 2  # bound on extra generation rounds per step (dynamic sampling)
    trace_path: str | None = "auto"  # rollout trace JSONL; "auto": <output_dir>/sagc_trace.jsonl
    ragged_weight: str = "prompt"  # per-prompt G: each prompt weighs the same ("prompt") or each completion
    # per-prompt G: prompts offered to the controller per step, as a multiple of B. The B dealt
    # prompts come first, then (prompt_lookahead - 1) x B candidates from a deterministic stream
    # over the train set; a skipped prompt's place goes to the next kept candidate. 1: the dealt
    # prompts only, so a skip makes the step smaller.
    prompt_lookahead: int = 4

    def __post_init__(self) -> None:
        if self.group_mode not in GROUP_MODES:
            raise ValueError(f"group_mode must be one of {list(GROUP_MODES)}, got {self.group_mode!r}")
        if self.group_sizes is not None:
            sizes = _int_tuple("group_sizes", self.group_sizes)
            if not sizes:
                raise ValueError("group_sizes must name at least one group size (or be None)")
            object.__setattr__(self, "group_sizes", tuple(sorted(set(sizes))))
        if not _is_int(self.min_group_size) or self.min_group_size < 2:
            raise ValueError(f"min_group_size must be an integer >= 2 (GRPO needs 2 completions per "
                             f"prompt for an advantage), got {self.min_group_size!r}")
        if self.max_group_size is not None and (not _is_int(self.max_group_size)
                                                or self.max_group_size < self.min_group_size):
            raise ValueError(f"max_group_size must be an integer >= min_group_size ({self.min_group_size}), "
                             f"got {self.max_group_size!r}")
        if not isinstance(self.dynamic_sampling, bool):
            raise ValueError(f"dynamic_sampling must be True or False, got {self.dynamic_sampling!r}")
        if not _is_int(self.max_refill_rounds) or self.max_refill_rounds < 0:
            raise ValueError(f"max_refill_rounds must be an integer >= 0, got {self.max_refill_rounds!r}")
        if self.ragged_weight not in RAGGED_WEIGHTS:
            raise ValueError(f"ragged_weight must be 'prompt' (every trained prompt weighs the same) or 'completion' "
                             f"(every completion weighs the same), got {self.ragged_weight!r}")
        if not _is_int(self.prompt_lookahead) or self.prompt_lookahead < 1:
            raise ValueError(f"prompt_lookahead must be an integer >= 1 (prompts offered per step to a per-prompt "
                             f"controller, as a multiple of B; 1 offers the dealt prompts only), got "
                             f"{self.prompt_lookahead!r}")
        if self.trace_path is not None and not isinstance(self.trace_path, str):
            raise ValueError(f"trace_path must be a path string, 'auto' or None, got {self.trace_path!r}")

    @classmethod
    def from_any(cls, value: "GroupOptions | Mapping[str, Any] | None", **overrides: Any) -> "GroupOptions":
        """Build from an instance, a mapping or None, then apply keyword overrides (None = unset)."""
        base: dict[str, Any] = {}
        if isinstance(value, GroupOptions):
            base = {f: getattr(value, f) for f in value.__dataclass_fields__}
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"unknown group option(s) {unknown}; valid options are "
                                 f"{sorted(cls.__dataclass_fields__)}")
            base = dict(value)
        elif value is not None:
            raise ValueError(f"group_options must be a GroupOptions, a mapping or None, got {type(value).__name__}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(base.get("group_sizes"), list):
            base["group_sizes"] = tuple(base["group_sizes"])
        return cls(**base)


@dataclass(frozen=True)
class BatchSettings:
    """The trainer settings that constrain G (read from a GRPOConfig and the process count)."""

    num_generations: int  # G0: GRPOConfig.num_generations, the reference group size
    generation_batch_size: int  # R: global rows of one generation round at G0
    steps_per_generation: int  # S: micro-batches one generation round is split into
    gradient_accumulation_steps: int
    num_iterations: int  # optimisation passes over one generation round
    num_processes: int  # N

    @classmethod
    def from_args(cls, args: Any, num_processes: int) -> "BatchSettings":
        return cls(num_generations=int(args.num_generations),
                   generation_batch_size=int(args.generation_batch_size),
                   steps_per_generation=int(args.steps_per_generation),
                   gradient_accumulation_steps=int(args.gradient_accumulation_steps),
                   num_iterations=int(args.num_iterations), num_processes=int(num_processes))

    @property
    def rounds_per_step(self) -> int:
        """Optimizer steps one generation round spans (1 with TRL's defaults)."""
        return self.steps_per_generation * self.num_iterations // self.gradient_accumulation_steps


@dataclass(frozen=True)
class GroupLayout:
    """The planned layout: allowed G and prompts per step for each."""

    mode: str
    allowed: tuple[int, ...]  # sorted allowed group sizes
    prompts_per_step: Mapping[int, int]  # G -> B(G), global prompts of a step with that G
    slot_repeat: int  # rows per prompt dealt by the sampler (its mini_repeat_count)
    sampler_prompts: int  # global prompts the sampler deals per generation round
    num_processes: int

    def local_prompts(self, g: int) -> int:
        """Prompts each process generates for at G."""
        return self.prompts_per_step[g] // self.num_processes

    @property
    def local_slots(self) -> int:
        """Prompts each process receives from the sampler per generation round."""
        return self.sampler_prompts // self.num_processes

    def decide_prompts(self) -> int | dict[int, int]:
        """The `prompts` argument of Controller.decide: B, or the map G -> B(G)."""
        if self.mode == "fixed_prompts":
            return int(self.prompts_per_step[self.allowed[0]])
        return {g: int(b) for g, b in self.prompts_per_step.items()}

    def check(self, g: Any) -> int:
        """Validate a controller's choice: a clear error instead of a broken batch."""
        if not _is_int(g) or int(g) not in self.prompts_per_step:
            raise ValueError(f"group controller chose G={g!r}, which is not an allowed group size for this "
                             f"trainer; allowed sizes are {list(self.allowed)} (from the batch settings and "
                             "group_sizes / min_group_size / max_group_size)")
        return int(g)


def plan_layout(batch: BatchSettings, options: GroupOptions) -> GroupLayout:
    """Allowed group sizes and prompt counts for these settings, or a ValueError saying what to change."""
    n, s, r, g0 = batch.num_processes, batch.steps_per_generation, batch.generation_batch_size, batch.num_generations
    generate_every = s * batch.num_iterations
    if generate_every % batch.gradient_accumulation_steps != 0:
        raise ValueError(
            f"steps_per_generation * num_iterations = {s} * {batch.num_iterations} = {generate_every} must be a "
            f"multiple of gradient_accumulation_steps = {batch.gradient_accumulation_steps}, so that a generation "
            "round spans whole optimizer steps and G only changes between optimizer steps; set "
            "steps_per_generation to a multiple of gradient_accumulation_steps (leaving steps_per_generation and "
            "generation_batch_size unset does this)")
    if r % n != 0:  # GRPOConfig guarantees this; checked so a hand-made BatchSettings fails clearly too
        raise ValueError(f"generation_batch_size = {r} is not divisible by the {n} processes")

    if options.group_mode == "fixed_prompts":
        if r % g0 != 0:
            raise ValueError(f"generation_batch_size = {r} must be divisible by num_generations = {g0}")
        b = r // g0
        if b % n != 0:
            raise ValueError(
                f"group_mode='fixed_prompts' keeps B = generation_batch_size / num_generations = {r} / {g0} = {b} "
                f"prompts per step, which must be a multiple of the {n} processes so that every process holds "
                "whole groups; change per_device_train_batch_size, steps_per_generation or num_generations, or "
                "use group_mode='fixed_completions'")
        b_local = b // n

        def why_not(g: int) -> str | None:
            if (b_local * g) % s != 0:
                return (f"each process would generate B_local * G = {b_local} * {g} = {b_local * g} completions, "
                        f"which do not split into steps_per_generation = {s} equal micro-batches")
            return None

        def prompts(g: int) -> int:
            return b
    else:
        r_local = r // n

        def why_not(g: int) -> str | None:
            if r_local % g != 0:
                return (f"each process generates generation_batch_size / processes = {r} / {n} = {r_local} "
                        f"completions, which is not a whole number of groups of {g}")
            return None

        def prompts(g: int) -> int:
            return r // g

    if options.group_sizes is not None:
        bad = {g: ("GRPO needs at least 2 completions per prompt" if g < 2 else why_not(g))
               for g in options.group_sizes}
        bad = {g: why for g, why in bad.items() if why}
        if bad:
            lines = "; ".join(f"G={g}: {why}" for g, why in bad.items())
            raise ValueError(
                f"group_sizes {list(options.group_sizes)} has sizes this trainer cannot run ({lines}); remove them "
                f"from group_sizes or change per_device_train_batch_size / steps_per_generation / "
                f"gradient_accumulation_steps / num_generations")
        allowed = tuple(options.group_sizes)
    else:
        hi = options.max_group_size if options.max_group_size is not None else 2 * g0
        allowed = tuple(g for g in range(options.min_group_size, hi + 1) if why_not(g) is None)
        if not allowed:
            raise ValueError(
                f"no group size in [{options.min_group_size}, {hi}] is compatible with the batch settings "
                f"(group_mode={options.group_mode!r}, generation_batch_size={r}, num_generations={g0}, "
                f"steps_per_generation={s}, processes={n}); widen min_group_size/max_group_size or change "
                "per_device_train_batch_size / steps_per_generation")

    if options.group_mode == "fixed_prompts":
        slot_repeat, sampler_prompts = g0, r // g0
    else:
        slot_repeat, sampler_prompts = allowed[0], r // allowed[0]
    return GroupLayout(mode=options.group_mode, allowed=allowed,
                       prompts_per_step={g: prompts(g) for g in allowed}, slot_repeat=slot_repeat,
                       sampler_prompts=sampler_prompts, num_processes=n)


def _is_int(x: Any) -> bool:
    # numbers.Integral covers numpy integers (controllers may return them); bool is not a size
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _int_tuple(name: str, values: Sequence[Any]) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers, got {values!r}") from None
    for v in items:
        if not _is_int(v):
            raise ValueError(f"{name} must hold integers, got {v!r} in {list(items)!r}")
    return items
