"""Completion lengths and 0/1 rewards of simulated GRPO steps.

Generative model (lognormal / pareto), for step t, prompt i, completion j:

    mu_i      = log(median) + drift(t) + prompt_sigma * z_i          z_i ~ N(0, 1)   (prompt effect)
    p_i       ~ Beta(a, b)                                            per-prompt pass rate
    correct   = u_ij < p_i                                            reward 1 if correct
    log L_ij  = mu_i + spread(t) * e_ij + log(wrong_length_factor) * (not correct)
                e_ij ~ N(0, sigma^2) (lognormal) or log of a Pareto(alpha) draw scaled to median 1
    runaway (prob runaway_prob) -> L = max_tokens;  L = clip(round(L), 1, max_tokens)
    truncated = L >= max_tokens, and a truncated completion gets reward 0 (no final answer).

Trace model: prompt i replays one recorded group (uniformly), and its completions are drawn with
replacement from that group's (length, reward, truncated). A recorded group without rewards
(length-only traces, e.g. public model outputs) gets them from the scenario's `rewards:` law:
p_i ~ Beta(a, b) for the prompt, reward 1 when correct, 0 when truncated.

Common random numbers (fair comparison of controllers): the draws of step t come from one
generator seeded by (seed, t) only, and the per-completion draws are laid out completion-major
in fixed-size blocks, so completion j of prompt i is the same whatever G is used: the first G
completions of a prompt never depend on G or on which controller runs (given B).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sagc.sim.pool import recorded_pool
from sagc.sim.scenario import Scenario

_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Batch:
    """One step's completions, prompt-major: prompt i's G completions are contiguous."""

    length: np.ndarray  # (B, G) int64 tokens
    reward: np.ndarray  # (B, G) float 0/1 (NaN possible with the trace model)
    truncated: np.ndarray  # (B, G) bool
    prompt: dict | None = None  # the prompt-level draws, (B,) arrays: to regenerate a prompt later

    @property
    def prompts(self) -> int:
        return int(self.length.shape[0])

    @property
    def group_size(self) -> int:
        return int(self.length.shape[1])


class LengthModel:
    """Draws the completions of a scenario's steps (see the module docstring for the model)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.settings = scenario.lengths
        self.pool = recorded_pool(self.settings.resolved_path) if self.settings.model == "trace" else None

    # ---- the simulator's path: common random numbers keyed by (seed, step) --------------
    def sample_step(self, step: int, group_size: int, prompts: int | None = None, stream: int = 0) -> Batch:
        """Completions of step `step` with G = group_size (B = prompts, default the scenario's).

        stream: 0 is the step's own draw; another number draws independent extra prompts for
        the same step (over-sampling), so the first B prompts stay those of stream 0."""
        b = self.scenario.prompts_per_step if prompts is None else int(prompts)
        g = int(group_size)
        if g < 1 or b < 1:
            raise ValueError(f"group_size and prompts must be >= 1, got G={g}, B={b}")
        rng = self._rng(step, stream)
        if self.pool is not None:
            params = {"pick": rng.integers(0, self.pool.size.shape[0], size=b)}  # (B,) recorded group
        else:
            a, bb = self.scenario.rewards.beta
            z = rng.standard_normal(b)  # (B,) prompt effect
            params = {"z": z, "pass_rate": rng.beta(a, bb, size=b)}  # (B,)
        return self._complete(rng, step, params, g)

    def sample_params(self, step: int, params: dict, group_size: int, stream: int = 0) -> Batch:
        """Completions of given prompts (prompt-level draws `params`, e.g. a prompt pool's: z and
        pass_rate, or pick for a trace) at step `step`, G = group_size, drawn from (seed, step, stream)."""
        return self._complete(self._rng(step, stream), step, dict(params), int(group_size))

    def regenerate(self, step: int, prompt: dict, group_size: int, stream: int) -> Batch:
        """New completions of prompts drawn earlier (their `Batch.prompt` draws), at step `step`:
        a deferred prompt re-run in a long round keeps its difficulty, not its old samples."""
        return self._complete(self._rng(step, stream), step, prompt, int(group_size))

    def _rng(self, step: int, stream: int) -> np.random.Generator:
        key = (int(step),) if stream == 0 else (int(step), int(stream))
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.scenario.seed, spawn_key=key)))

    def _complete(self, rng: np.random.Generator, step: int, params: dict, g: int) -> Batch:
        # Prompt-level draws came first; then completions in blocks of `cap` rows, each block
        # (cap, B) within-prompt draws then (cap, B, 2) uniforms. Rows are completions, so the
        # first G rows never depend on G.
        b = next(iter(params.values())).shape[0]
        cap = max(self.scenario.group_sizes)
        within, unif = [], []
        for _ in range(-(-g // cap)):
            within.append(rng.standard_normal((cap, b)) if self.settings.model == "lognormal"
                          else rng.random((cap, b)))  # (cap, B)
            unif.append(rng.random((cap, b, 2)))  # (cap, B, [correct, runaway])
        w = np.concatenate(within)[:g]  # (G, B)
        u = np.concatenate(unif)[:g]  # (G, B, 2)
        if self.pool is not None:
            pick = params["pick"]
            length, reward, trunc = self._replay(pick, w)  # w is uniform for the trace model
            if not self.pool.has_reward.all():  # drawn last: recorded rewards keep their stream
                if "law" not in params:
                    params = {**params, "law": rng.beta(*self.scenario.rewards.beta, size=b)}
                reward = self._law_rewards(pick, reward, trunc, u[..., 0], params["law"])
        else:
            length, reward, trunc = self._transform(np.asarray(float(step)), params["z"], params["pass_rate"],
                                                    w, u[..., 0], u[..., 1])
        return Batch(length=length.T.copy(), reward=reward.T.copy(), truncated=trunc.T.copy(), prompt=params)

    # ---- Monte Carlo path: R independent replicates at once ---------------------------
    def sample_replicates(self, rng: np.random.Generator, steps: np.ndarray, group_size: int,
                          prompts: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Independent steps (one per entry of `steps`): arrays (R, B, G) of length, reward, truncated."""
        steps = np.asarray(steps, dtype=np.float64)  # (R,)
        r = steps.shape[0]
        b = self.scenario.prompts_per_step if prompts is None else int(prompts)
        g = int(group_size)
        if self.pool is not None:
            pick = rng.integers(0, self.pool.size.shape[0], size=(r, b))
            length, reward, trunc = self._replay(pick[:, None, :], rng.random((r, g, b)))
            if not self.pool.has_reward.all():
                reward = self._law_rewards(pick[:, None, :], reward, trunc, rng.random((r, g, b)),
                                           rng.beta(*self.scenario.rewards.beta, size=(r, b)))
        else:
            a, bb = self.scenario.rewards.beta
            z = rng.standard_normal((r, b))
            pass_rate = rng.beta(a, bb, size=(r, b))
            within = (rng.standard_normal((r, g, b)) if self.settings.model == "lognormal"
                      else rng.random((r, g, b)))
            length, reward, trunc = self._transform(steps, z, pass_rate, within, rng.random((r, g, b)),
                                                    rng.random((r, g, b)))
        return (np.swapaxes(length, -1, -2), np.swapaxes(reward, -1, -2), np.swapaxes(trunc, -1, -2))

    # ---- the model itself: random draws -> completions ----------------------------------
    def _transform(self, step: np.ndarray, z: np.ndarray, pass_rate: np.ndarray, within: np.ndarray,
                   u_correct: np.ndarray, u_runaway: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """step: (...,) ; z, pass_rate: (..., B) ; within, u_*: (..., G, B). Returns (..., G, B)."""
        s = self.settings
        drift = s.drift
        shift = np.asarray(drift.shift(step))[..., None]  # (..., 1)
        spread = np.asarray(drift.spread(step))[..., None, None]  # (..., 1, 1)
        mu = math.log(s.median) + shift + s.prompt_sigma * z  # (..., B) log-median of each prompt
        if s.model == "lognormal":
            eps = (s.sigma * spread) * within
        else:  # Pareto(alpha) scaled to median 1: log X = (Exp(1) - log 2) / alpha
            eps = (spread / s.alpha) * (-np.log1p(-within) - _LOG2)
        correct = u_correct < pass_rate[..., None, :]  # (..., G, B)
        log_len = mu[..., None, :] + eps + np.where(correct, 0.0, math.log(s.wrong_length_factor))
        cap = float(s.max_tokens)
        length = np.exp(np.minimum(log_len, math.log(cap) + 1.0))  # clip before exp: no overflow
        length = np.where(u_runaway < s.runaway_prob, cap, length)
        length = np.clip(np.rint(length), 1.0, cap).astype(np.int64)
        truncated = length >= s.max_tokens
        reward = np.where(truncated, 0.0, correct.astype(np.float64))
        return length, reward, truncated

    def _law_rewards(self, pick: np.ndarray, reward: np.ndarray, trunc: np.ndarray, u_correct: np.ndarray,
                     pass_rate: np.ndarray) -> np.ndarray:
        """Rewards for replayed groups recorded without any: pick (..., 1 or G, B); pass_rate (..., B)."""
        drawn = np.where(trunc, 0.0, (u_correct < pass_rate[..., None, :]).astype(np.float64))
        return np.where(self.pool.has_reward[pick], reward, drawn)

    def _replay(self, pick: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """pick: recorded group per prompt (..., B) ; u: (..., G, B) uniforms -> members."""
        pool = self.pool
        member = pool.offset[pick] + np.floor(u * pool.size[pick]).astype(np.int64)  # (..., G, B)
        return pool.length[member], pool.reward[member], pool.truncated[member]


__all__ = ["LengthModel", "Batch", "recorded_pool"]
