"""SAGC's per-prompt group sizes (issue 22; docs/per_prompt.md): the part of `SAGCController`
that allocates samples per prompt, as a mixin so that sagc.py reads as the per-step controller.

With `per_prompt=True`, after SAGC chose the step's G as always: skip the seen prompts predicted
all-equal at G (a skipped prompt is replaced by the next one offered), then size the kept seen
prompts by a knapsack priced in predicted step seconds (`prompts.completion_cost`). Prompts never
seen keep the step's G, so without history this is the per-step decision.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sagc.controllers.base import Decision, GroupSizes
from sagc.controllers.prompts import (PromptTable, allocate, completion_cost, group_outcomes, mixed_moments,
                                     mixed_prob, mixed_prob_one)
from sagc.stats import StepStats


class PerPromptMixin:
    """Per-prompt state and allocation of SAGCController (needs its settings, state and models)."""

    @property
    def prompt_table(self) -> PromptTable:
        if getattr(self, "_table", None) is None:
            self._table = PromptTable(self.settings.prompt_capacity, self.settings.prompt_decay)
        return self._table

    @property
    def uses_prompt_ids(self) -> bool:
        return bool(self.settings.per_prompt)

    def _learn_prompts(self, stats: StepStats, prompt_ids: np.ndarray) -> None:
        if self.settings.per_prompt:
            succ, scored, loglen = group_outcomes(stats, self.settings.success_threshold)
            self.prompt_table.observe(prompt_ids, succ, scored, loglen)

    def _per_prompt(self, decision: Decision, allowed: tuple[int, ...], prompts: int, ids: np.ndarray) -> Decision:
        """Skip seen prompts predicted all-equal at the step's G (unless exploring), then size the
        kept seen prompts by a knapsack: value P(mixed | n) x (1 - 1/n) (the signal utility), cost
        n x the predicted step seconds of one of its completions (_completion_cost), budget what
        they would cost at the step's G. Prompts never seen keep the step's G, so without history
        this is the per-step decision."""
        s = self.settings
        if not s.per_prompt or ids.size == 0:
            return decision
        found, rec = self.prompt_table.lookup(ids, ("succ", "fail", "loglen"))
        if not found.any():
            return decision
        g0 = decision.group_size
        a0, b0 = self._fit_beta()
        scale = min(1.0, 2.0 / (a0 + b0))  # the population law as a prior worth <= 2 observations
        a = a0 * scale + rec["succ"].astype(np.float64)
        b = b0 * scale + rec["fail"].astype(np.float64)
        levels = np.asarray(allowed, dtype=np.int64)
        p_new = mixed_prob_one(a0, b0, g0)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(s.seed, spawn_key=(self._state["step"], 7))))
        explore = rng.random(ids.size) < s.explore
        # P(mixed | G) to skip by (the first 2B offered first: usually enough to keep B)
        head = min(ids.size, 2 * prompts)
        moments = mixed_moments(a[:head], b[:head], g0)  # (2, G, head): reused for the sizes below
        p_mixed = _mixed_at(moments, g0)  # (head,)
        skip = found[:head] & (p_mixed < s.skip_below * p_new) & ~explore[:head]
        if head < ids.size and np.count_nonzero(~skip) < prompts:
            rest = mixed_moments(a[head:], b[head:], g0)  # (2, G, n - head)
            moments = np.concatenate([moments, rest], axis=2)
            p_mixed = np.concatenate([p_mixed, _mixed_at(rest, g0)])
            skip = found & (p_mixed < s.skip_below * p_new) & ~explore
        kept_at = np.cumsum(~skip)
        n_take = int(np.searchsorted(kept_at, prompts) + 1) if kept_at[-1] >= prompts else skip.size
        take = np.arange(n_take)
        keep = take[~skip[:n_take]]
        sizes = np.zeros(n_take, dtype=np.int64)
        sizes[keep] = g0
        seen = keep[found[keep]]
        if seen.size:
            logl = rec["loglen"].astype(np.float64)
            rel = np.exp(logl[seen] - float(np.mean(logl[found])))  # (m,) relative length of a completion
            value = mixed_prob(a[seen], b[seen], levels, moments[:, :, seen]) * (1.0 - 1.0 / levels)[None, :]
            per = self._completion_cost(rel, allowed, g0, prompts)  # (m,) predicted step seconds per completion
            pick = allocate(value, per[:, None] * levels[None, :], float(np.sum(per) * g0))
            sizes[seen] = levels[pick]
        return _with_sizes(decision, GroupSizes(ids[:n_take], sizes))

    def _completion_cost(self, rel: np.ndarray, allowed: tuple[int, ...], g0: int, prompts: int) -> np.ndarray:
        """prompts.completion_cost: step seconds per completion of each prompt (rel until fitted)."""
        fit = self._time_fit()
        if fit is None:
            return rel
        em = self._expected_max(allowed, [prompts] * len(allowed), fit[3])  # (k,) as _choose asked
        return completion_cost(rel, self.risk_model, fit[0], fit[4], em, allowed, g0, prompts)


def _with_sizes(decision: Decision, sizes: GroupSizes) -> Decision:
    return dataclasses.replace(decision, group_sizes=sizes)


def _mixed_at(moments: np.ndarray, g: int) -> np.ndarray:
    """mixed_prob(a, b, [g], moments)[:, 0] from moments (2, >= g, m) already at hand (same floats)."""
    return np.maximum(1.0 - moments[0, g - 1] - moments[1, g - 1], 0.0)
