"""A finite dataset of prompts, visited epoch after epoch (issue 22; scenario key `prompts:`).

Prompt k of a pool of N has, drawn once from the scenario's seed:
  - a base pass rate p_k0 ~ Beta(a, b) (the scenario's `rewards.pass_rate` law) and a length
    effect z_k ~ N(0, 1) (scaled by `lengths.prompt_sigma`, as for fresh prompts);
  - with model: trace, recorded group k (its real completions, lengths and rewards).
Pass rates move as the model learns, in log-odds:

    logit p_k(t) = logit p_k0 + per_step * t + per_visit * v_k(t)

v_k(t) = times prompt k was trained on with mixed rewards before step t (an all-equal group has
no gradient, so it teaches nothing: an unsolved prompt stays unsolved unless per_step lifts it).
Each epoch visits every prompt once, in a fresh order keyed by (seed, epoch): the order does not
depend on the controller, only on how many prompts it has consumed.
"""

from __future__ import annotations

import numpy as np

from sagc.sim.scenario import Scenario

_POOL_KEY, _ORDER_KEY = (1, 0, 0), 2  # SeedSequence spawn keys apart from the steps' (t,) and (t, stream)


class PromptPool:
    def __init__(self, scenario: Scenario) -> None:
        ps = scenario.prompts
        if ps.pool is None:
            raise ValueError("PromptPool needs a scenario with prompts: {pool: N}")
        self.n = int(ps.pool)
        self.seed = scenario.seed
        self.per_visit, self.per_step = ps.per_visit, ps.per_step
        self.trace = scenario.lengths.model == "trace"
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(scenario.seed, spawn_key=_POOL_KEY)))
        a, b = scenario.rewards.beta
        p0 = np.clip(rng.beta(a, b, size=self.n), 1e-4, 1 - 1e-4)  # (N,)
        self.base = np.log(p0) - np.log1p(-p0)  # (N,) log-odds
        self.z = rng.standard_normal(self.n)  # (N,) prompt length effect
        self.visits = np.zeros(self.n, dtype=np.int64)
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(_ORDER_KEY, epoch, 0))))
            self._orders = {epoch: rng.permutation(self.n)}  # keep one epoch: positions only move forward
        return self._orders[epoch]

    def ids_at(self, start: int, n: int) -> np.ndarray:
        """Prompt ids at positions start .. start + n - 1 of the endless epoch-after-epoch stream."""
        pos = np.arange(start, start + n, dtype=np.int64)
        out = np.empty(n, dtype=np.int64)
        for e in np.unique(pos // self.n).tolist():
            at = pos // self.n == e
            out[at] = self.order(int(e))[pos[at] % self.n]
        return out

    def pass_rate(self, ids: np.ndarray, step: int) -> np.ndarray:
        x = self.base[ids] + self.per_step * step + self.per_visit * self.visits[ids]
        return 1.0 / (1.0 + np.exp(-x))

    def mean_pass_rate(self, step: int) -> float:
        """The pool's mean pass rate at step `step` (before it): how much of the dataset is solved."""
        return float(np.mean(self.pass_rate(np.arange(self.n), step)))

    def params(self, ids: np.ndarray, step: int) -> dict:
        """Prompt-level draws for LengthModel.sample_params."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.trace:
            return {"pick": ids}
        return {"z": self.z[ids], "pass_rate": self.pass_rate(ids, step)}

    def learn(self, ids: np.ndarray, mixed: np.ndarray) -> None:
        """Prompts trained on this step with mixed rewards: one visit more each."""
        np.add.at(self.visits, np.asarray(ids, dtype=np.int64)[np.asarray(mixed, dtype=bool)], 1)


__all__ = ["PromptPool"]
