"""Rollout-policy settings: what happens inside one synchronous step (design section 9).

    RolloutSettings(policy="resume", over_sample=1.5, max_staleness=1)

Policies (one registry, `POLICIES`; `sagc controllers` lists them with their knobs):

- `full`    every prompt's G completions run to the end; the step waits for the slowest one.
            Today's behaviour and the default.
- `drop`    over-sample, stop once `prompts` groups are complete, drop the rest for good
            (verl's `over_sample_rate`, PR 2929, at the group level: verl aborted the last
            requests of a fixed batch and padded them inside their groups, which trains partial
            groups; here whole groups are kept or dropped, so `over_sample` = 1 / (1 - rate)
            puts the same share of work at risk). On-policy, but the dropped groups are the slow
            ones, so what is trained is biased short (and, with wrong answers longer, towards
            correct ones): reported, not hidden.
- `resume`  over-sample, stop once `prompts` groups are complete, keep every unfinished
            completion's tokens and resume it first in the next step (APRIL, arXiv 2509.18521,
            slime's partial rollouts). Nothing is lost, but a resumed completion spans policy
            versions; `max_staleness` bounds how old a trained token may be: a group that would
            exceed it is not aborted again (the next step waits for it).
- `defer`   over-sample short rounds that keep the first `prompts` complete groups; the prompts
            of unfinished groups are deferred (their partial tokens discarded) and run together
            in a dedicated long round once `long_round` of them are waiting (RollPacker's tail
            batching, arXiv 2509.21009). On-policy; a step's prompt mix changes.
- `auto`    `resume` whose over-sampling is chosen online by SAGC's objective (learning signal
            per second, measured) among `over_sample_grid`, under the stated staleness budget
            (`max_staleness`) and an optional floor on the on-policy token share
            (`min_on_policy`). It never drops a prompt, so over a run it trains every prompt's
            complete group: no length or reward bias beyond the prompts still in flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sagc._settings import as_dict, check_choice, check_float, check_int, settings_from
from sagc.rollout.stale import STALE_MODES

POLICIES: dict[str, str] = {
    "full": "every completion runs to the end (no tail control); the default",
    "drop": "over-sample, stop at `prompts` complete groups, drop the rest (verl over_sample_rate)",
    "resume": "over-sample, stop at `prompts` complete groups, resume the rest next step (APRIL)",
    "defer": "over-sample short rounds; unfinished prompts wait for a long round (RollPacker)",
    "auto": "resume with the over-sampling chosen online by measured signal/s, under the budgets",
}

# what each knob means, for `sagc controllers`, the docs and error messages
KNOBS: dict[str, str] = {
    "policy": f"one of {list(POLICIES)}",
    "over_sample": "groups put in flight per trained group, >= 1 (drop, resume, defer)",
    "max_staleness": "resume/auto: a trained token was sampled at most this many policy versions ago, >= 1",
    "long_round": "defer: run a long round once this many prompts wait (default: prompts per step)",
    "over_sample_grid": "auto: the over-sampling rates it chooses among (1.0 = no over-sampling); up to 8x by "
                        "default: the best measured rate ranged from 1.5 to 8 by stream, and no token outlives the "
                        "staleness budget at any rate (docs/rollout.md)",
    "min_on_policy": "auto: keep the measured on-policy token share >= this (0 = no floor)",
    "window": "auto: recent credited steps of each rate that its measured signal/s averages",
    "block": "auto: steps a rate is held once chosen; above 1, the first (the transition) is not credited",
    "credit": "auto: 'carry' charges the work and signal of a carried group to the rate of the step that "
              "created it (a rate pays for the backlog it leaves); 'step' credits each step to its own rate",
    "explore_every": "auto: every this many steps, one block of the rate tried least recently",
    "stale_tokens": "trainers, resume/auto: tokens sampled by an older policy are importance-weighted "
                    "('tis'), masked out of the loss ('mask') or trained as on-policy ('keep')",
    "tis_clip": "trainers, stale_tokens 'tis': upper clip of the importance weight (slime --tis-clip)",
    "tis_clip_low": "trainers, stale_tokens 'tis': lower clip of the importance weight (slime --tis-clip-low)",
}


CREDITS = ("carry", "step")


@dataclass(frozen=True)
class RolloutSettings:
    """What one step's rollout does with its tail; see the module docstring."""

    policy: str = "full"
    over_sample: float = 1.0  # groups in flight / groups trained
    max_staleness: int = 1  # policy versions (optimizer steps)
    long_round: int | None = None  # prompts; None: the step's prompts (B)
    over_sample_grid: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    min_on_policy: float = 0.0  # share of trained tokens
    window: int = 16  # credited steps per rate
    block: int = 1  # steps a rate is held; with more than 1, the first is not credited
    explore_every: int = 50  # steps
    credit: str = "carry"  # carry | step (auto: who pays for a carried group)
    stale_tokens: str = "tis"  # trainers only (sagc.rollout.stale); the simulator does not train
    tis_clip: float = 2.0
    tis_clip_low: float = 0.0

    def __post_init__(self) -> None:
        check_choice("rollout", "policy", self.policy, tuple(POLICIES))
        check_float("rollout", "over_sample", self.over_sample, 1.0, 16.0)
        if self.policy == "full" and self.over_sample != 1.0:
            raise ValueError(f"rollout.over_sample must be 1 with policy 'full' (it waits for every "
                             f"completion), got {self.over_sample!r}; use policy drop, resume or defer")
        check_int("rollout", "max_staleness", self.max_staleness, 1, 64)
        if self.long_round is not None:
            check_int("rollout", "long_round", self.long_round, 1)
        grid = self.over_sample_grid
        if not isinstance(grid, (tuple, list)) or not grid:
            raise ValueError(f"rollout.over_sample_grid must be a non-empty list of rates >= 1, got {grid!r}")
        for i, r in enumerate(grid):
            check_float("rollout", f"over_sample_grid[{i}]", r, 1.0, 16.0)
        if len(set(grid)) != len(grid):
            raise ValueError(f"rollout.over_sample_grid must not repeat a rate, got {list(grid)}")
        object.__setattr__(self, "over_sample_grid", tuple(sorted(float(r) for r in grid)))
        check_float("rollout", "min_on_policy", self.min_on_policy, 0.0, 1.0)
        check_int("rollout", "window", self.window, 1)
        check_int("rollout", "block", self.block, 1)
        check_int("rollout", "explore_every", self.explore_every, 2)
        check_choice("rollout", "credit", self.credit, CREDITS)
        check_choice("rollout", "stale_tokens", self.stale_tokens, STALE_MODES)
        check_float("rollout", "tis_clip", self.tis_clip, 1.0, 100.0)
        check_float("rollout", "tis_clip_low", self.tis_clip_low, 0.0, 1.0)

    @property
    def aborts(self) -> bool:
        """Whether a step may end before every completion in flight has finished."""
        return self.policy != "full"

    def to_dict(self) -> dict[str, Any]:
        out = as_dict(self)
        out["over_sample_grid"] = list(self.over_sample_grid)
        return out


# Each anchor's published default knobs (what `sagc whatif --rollout` and bench/bench_tail.py run):
# - drop: verl's examples set over_sample_rate 0.1 (examples/sglang_multiturn/*gsm8k*.sh; the code
#   default 0 is off): 10% of the work at risk, i.e. over_sample 1 / (1 - 0.1) at the group level;
# - resume: the APRIL scripts over-sample 2x (--over-sampling-batch-size 64 for a rollout batch of
#   32, RLsys-Foundation/APRIL scripts/partial_rollout); slime has no staleness limit (64 here);
# - defer: RollPacker over-provisions prompts 1.25x and runs a long round once B prompts wait
#   (max_prompts_ratio 1.25, roll/pipeline/rlvr/rlvr_config.py; paper section 3).
ANCHOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": {"policy": "full"},
    "drop": {"policy": "drop", "over_sample": round(1.0 / 0.9, 4)},
    "resume": {"policy": "resume", "over_sample": 2.0, "max_staleness": 64},
    "defer": {"policy": "defer", "over_sample": 1.25},
    "auto": {"policy": "auto"},
}


def policy_defaults(name: str) -> dict[str, Any]:
    """The knobs a bare policy name stands for: its anchor's published defaults (auto: ours)."""
    if name not in ANCHOR_DEFAULTS:
        raise ValueError(f"unknown rollout policy {name!r}; valid policies are {list(POLICIES)}")
    return dict(ANCHOR_DEFAULTS[name])


def rollout_settings(value: Any, where: str = "rollout") -> RolloutSettings:
    """RolloutSettings from an instance, a mapping ({policy: resume, over_sample: 1.5}), a bare
    policy name, or None (the default, `full`). Unknown keys and bad values name the key."""
    if isinstance(value, str):
        value = {"policy": value}
    return settings_from(RolloutSettings, value, where)


def in_flight(groups: int, rate: float) -> int:
    """Groups to put in flight for `groups` trained ones at over-sampling `rate` (at least one
    more than trained when rate > 1, so a rate of 1.01 still over-samples)."""
    n = int(math.ceil(groups * rate - 1e-9))
    return max(n, groups + 1) if rate > 1.0 else groups


__all__ = ["RolloutSettings", "POLICIES", "KNOBS", "ANCHOR_DEFAULTS", "policy_defaults", "rollout_settings", "in_flight"]
