"""Per-prompt baselines at their published defaults (issue 22): `dapo`, `greso`, `knapsack`.

- `dapo`: DAPO dynamic sampling (arXiv 2503.14476; verl recipe/dapo): generate batches of
  gen_batch_factor x B prompts (the recipe: gen_batch_size 1536 = 3 x train_batch_size 512) at
  a fixed G (n = 16), drop groups whose rewards are all equal, and keep generating until B
  informative groups are in hand or max_num_gen_batches (10) batches ran; the step trains the
  first B. (verl stops with an error past the cap; here the step trains what it has.)
- `greso`: GRESO (arXiv 2506.02177; Infini-AI-Lab/GRESO train-scripts): before the rollout, skip a
  prompt whose last z visits all gave all-equal rewards with probability 1 - p^z, p the exploration
  probability of its kind (p_easy for all-correct, p_hard for all-wrong; both start at 0.5). After
  each step the probabilities move by p_step (0.01, our reading of the paper) so that the share of
  zero-variance groups approaches target_zero_variance (0.25). Rollout by dynamic sampling with a
  sampling batch 1.5 x the train batch (384 / 256 in its scripts), n = 8.
- `knapsack`: Knapsack RL (arXiv 2509.25849): a budget of budget_per_prompt (8) completions per
  prompt on average, split across the step's prompts to maximise sum_i value_i(n_i), value =
  P(non-zero gradient | n) x InfoGain, InfoGain(p) = p (1 - p)^2, p the prompt's success rate at
  its last visit (prompts not seen yet: the budget's mean). Sizes are the allowed G (the paper's
  integer budgets are coarser here); its fallback for unsolved prompts is not modelled.

A controller with a `sampling` attribute (DynamicSampling) asks the simulator (sagc.sim.stepper)
for rounds of dynamic sampling; the others give one round per step. All three learn per prompt
from `update(stats, prompt_ids=...)` (sagc.controllers.prompts.PromptTable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sagc.controllers import _checks as S
from sagc.controllers.base import Controller, Decision, GroupSizes, check_range, nearest
from sagc.controllers.prompts import PromptTable, allocate, check_table, group_outcomes, mixed_prob, table_form
from sagc.rules import StragglerSettings
from sagc.stats import StepStats


@dataclass(frozen=True)
class DynamicSampling:
    """Rounds of generation per step until B informative groups (DAPO's dynamic sampling)."""

    gen_factor: float  # prompts per generation batch / B
    max_rounds: int  # generation batches per step at most


def _check_sampling(factor: float, rounds: int, prefix: str) -> None:
    check_range(f"{prefix}gen_batch_factor", factor, 1.0, math.inf, hi_open=True)
    if rounds < 1:
        raise ValueError(f"{prefix}max_num_gen_batches must be an integer >= 1, got {rounds!r}")


class _PromptMemory(Controller):
    """A controller with a per-prompt table in its state (key 'prompts')."""

    state_schema = {"prompts": table_form}

    def _table(self) -> PromptTable:
        if getattr(self, "_tab", None) is None:
            self._tab = PromptTable(self.settings.prompt_capacity, self._decay)
        return self._tab

    _decay = 0.0  # only the last visit's pass counts

    def _learn_prompts(self, stats: StepStats, prompt_ids: np.ndarray) -> None:
        succ, scored, loglen = group_outcomes(stats, 0.5)
        self._table().observe(prompt_ids, succ, scored, loglen)

    def state_dict(self) -> dict:
        out = super().state_dict()
        out["state"]["prompts"] = self._table().state_dict()
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        old = self._state
        super().load_state_dict(state)  # every key's form, 'prompts' included (state_schema)
        table = self._state.pop("prompts")
        try:
            check_table(table, self.settings.prompt_capacity)
        except ValueError as exc:
            self._state = old  # a refused state changes nothing
            raise ValueError(f"{type(self).__name__}.load_state_dict: {exc}") from None
        self._tab = PromptTable(self.settings.prompt_capacity, self._decay)
        self._tab.load_state_dict(table)


@dataclass(frozen=True)
class DAPOSettings:
    group_size: int = 16  # n in the DAPO recipe
    gen_batch_factor: float = 3.0  # gen_batch_size / train_batch_size = 1536 / 512
    max_num_gen_batches: int = 10
    straggler: StragglerSettings = field(default_factory=StragglerSettings)

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {self.group_size!r}")
        _check_sampling(self.gen_batch_factor, self.max_num_gen_batches, "")


class DAPOController(Controller):
    """DAPO dynamic sampling at a fixed G (see the module docstring)."""

    name = "dapo"
    Settings = DAPOSettings

    @property
    def sampling(self) -> DynamicSampling:
        return DynamicSampling(self.settings.gen_batch_factor, self.settings.max_num_gen_batches)

    def _choose(self, allowed: tuple[int, ...], prompts: Any) -> Decision:
        return Decision(group_size=nearest(allowed, self.settings.group_size))


@dataclass(frozen=True)
class GRESOSettings:
    group_size: int = 8  # rollout.n in GRESO's scripts
    p_easy: float = 0.5  # initial exploration probability of all-correct prompts
    p_hard: float = 0.5  # ... and of all-wrong ones
    target_zero_variance: float = 0.25
    p_step: float = 0.01  # change of an exploration probability per step
    p_min: float = 0.01
    gen_batch_factor: float = 1.5  # sampling_batch_size / real_train_batch_size = 384 / 256
    max_num_gen_batches: int = 10
    prompt_capacity: int = 2**20
    seed: int = 0
    straggler: StragglerSettings = field(default_factory=StragglerSettings)

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {self.group_size!r}")
        for name in ("p_easy", "p_hard", "target_zero_variance", "p_step"):
            check_range(name, getattr(self, name), 0.0, 1.0)
        check_range("p_min", self.p_min, 0.0, 1.0, lo_open=True)
        _check_sampling(self.gen_batch_factor, self.max_num_gen_batches, "")
        if self.prompt_capacity < 1:
            raise ValueError(f"prompt_capacity must be an integer >= 1, got {self.prompt_capacity!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


class GRESOController(_PromptMemory):
    """GRESO's pre-rollout skipping with dynamic sampling (see the module docstring)."""

    name = "greso"
    Settings = GRESOSettings
    state_schema = {"p_easy": S.number(lo=0.0, hi=1.0), "p_hard": S.number(lo=0.0, hi=1.0)}

    def _init_state(self) -> dict[str, Any]:
        return {"p_easy": float(self.settings.p_easy), "p_hard": float(self.settings.p_hard)}

    @property
    def sampling(self) -> DynamicSampling:
        return DynamicSampling(self.settings.gen_batch_factor, self.settings.max_num_gen_batches)

    def _choose(self, allowed: tuple[int, ...], prompts: Any) -> Decision:
        return Decision(group_size=nearest(allowed, self.settings.group_size))

    def _per_prompt(self, decision: Decision, allowed: tuple[int, ...], prompts: int, ids: np.ndarray) -> Decision:
        found, rec = self._table().lookup(ids)
        streak = rec["streak"].astype(np.int64)
        p = np.where(streak > 0, self._state["p_easy"], self._state["p_hard"])
        keep_prob = np.where(found & (streak != 0), p ** np.abs(streak), 1.0)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            self.settings.seed, spawn_key=(self._state["step"], int(ids[0]) if ids.size else 0))))
        keep = rng.random(ids.size) < keep_prob
        g = decision.group_size
        return Decision(group_size=g, group_sizes=GroupSizes(ids, np.where(keep, g, 0)))

    def _learn_prompts(self, stats: StepStats, prompt_ids: np.ndarray) -> None:
        super()._learn_prompts(stats, prompt_ids)
        succ, scored, _ = group_outcomes(stats, 0.5)
        n = max(int(np.count_nonzero(scored)), 1)
        s, st = self.settings, self._state
        half = s.target_zero_variance / 2.0  # each kind's share of the target
        for kind, share in (("p_easy", np.count_nonzero((scored > 0) & (succ >= scored)) / n),
                            ("p_hard", np.count_nonzero((scored > 0) & (succ <= 0)) / n)):
            step = -s.p_step if share > half else s.p_step  # too many zero-variance: explore less
            st[kind] = float(min(max(st[kind] + step, s.p_min), 1.0))


@dataclass(frozen=True)
class KnapsackSettings:
    budget_per_prompt: float = 8.0  # the homogeneous baseline's N = 8
    prompt_capacity: int = 2**20
    straggler: StragglerSettings = field(default_factory=StragglerSettings)

    def __post_init__(self) -> None:
        check_range("budget_per_prompt", self.budget_per_prompt, 1.0, math.inf, hi_open=True)
        if self.prompt_capacity < 1:
            raise ValueError(f"prompt_capacity must be an integer >= 1, got {self.prompt_capacity!r}")


class KnapsackController(_PromptMemory):
    """Knapsack RL's per-prompt budget allocation (see the module docstring)."""

    name = "knapsack"
    Settings = KnapsackSettings

    def _choose(self, allowed: tuple[int, ...], prompts: Any) -> Decision:
        return Decision(group_size=nearest(allowed, self.settings.budget_per_prompt))

    def _per_prompt(self, decision: Decision, allowed: tuple[int, ...], prompts: int, ids: np.ndarray) -> Decision:
        ids = ids[:prompts]
        found, rec = self._table().lookup(ids)
        if not found.any():
            return decision
        levels = np.asarray(allowed, dtype=np.int64)
        tot = rec["succ"].astype(np.float64) + rec["fail"]
        p = (rec["succ"] / np.maximum(tot, 1e-9))[found]
        # P(non-zero gradient | n) for a known p: 1 - p^n - (1-p)^n (a point mass: a huge Beta)
        big = 1e6
        nonzero = mixed_prob(p * big + 1e-9, (1 - p) * big + 1e-9, levels)
        value = nonzero * (p * (1 - p) ** 2)[:, None]
        cost = np.broadcast_to(levels[None, :].astype(np.float64), value.shape)
        g0 = decision.group_size
        budget = float(self.settings.budget_per_prompt) * ids.size - g0 * int(np.count_nonzero(~found))
        sizes = np.full(ids.size, g0, dtype=np.int64)  # unseen prompts: the mean budget
        sizes[found] = levels[allocate(value, cost, budget)]
        return Decision(group_size=g0, group_sizes=GroupSizes(ids, sizes))


__all__ = ["DynamicSampling", "DAPOController", "DAPOSettings", "GRESOController", "GRESOSettings",
           "KnapsackController", "KnapsackSettings"]
