"""Synthetic step streams shared by the core tests."""

import numpy as np

from sagc import StepStats


def lognormal_step(rng, b, g, median=400.0, sigma=0.5, prompt_sigma=0.3, runaway=0.002, cap=4096,
                   pass_rate=(1.0, 2.0)):
    """A hierarchical-lognormal step: log L = log median + a_i + e_ij, runaways to the cap."""
    a = rng.normal(0.0, prompt_sigma, b)  # (B,) prompt effect
    e = rng.normal(0.0, sigma, (b, g))  # (B, G) within-prompt
    length = np.minimum(np.ceil(median * np.exp(a[:, None] + e)), cap)
    run = rng.random((b, g)) < runaway
    length = np.where(run, cap, length)
    p = rng.beta(*pass_rate, size=b)
    reward = (rng.random((b, g)) < p[:, None]).astype(float)
    return StepStats(group_id=np.repeat(np.arange(b), g), length=length.ravel(), reward=reward.ravel(),
                     truncated=(length >= cap).ravel(), group_size=g, rollout_s=float(length.max()) * 0.01,
                     step_s=float(length.max()) * 0.01 + 1.0)
