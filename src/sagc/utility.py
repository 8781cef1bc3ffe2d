"""Utility models U_t(G): the benefit of group size G (design section 4.2).

All return the *total* benefit of a step with B(G) prompts, later normalised so max over the
allowed sizes is 1. Built in:

- signal (default, for verifiable 0/1 rewards): expected informative groups per step, each
  weighted by 1 - 1/G: B * E_p[1 - p^G - (1-p)^G] * (1 - 1/G). Only a group with mixed rewards
  carries a GRPO gradient, and the group-mean baseline keeps a share 1 - 1/G of a completion's
  advantage (r_j - mean_i r = (1 - 1/G) (r_j - mean_{-j} r)), so a pair (G = 2) carries half
  the signal of a large group. Chosen by evidence: on the built-in task's measured step rates
  (docs/benchmarks.md) its per-second argmax is G = 4, the fastest static G to a target in the
  first benchmark and over 5 seeds (G = 8 in a 3-seed run: G = 4, 8 and 16 are within noise), where
  `informative` ties G = 2 with G = 4 and `completions` picks G = 16.
- informative: expected informative groups per step,
  B * E_p[1 - p^G - (1-p)^G], with the prompt pass rate p ~ Beta(a, b) fitted to recent groups
  by beta-binomial moments. A group whose G rewards are all equal has zero advantage in
  GRPO, so this counts the groups that carry a gradient (cf. DAPO's dynamic sampling).
- completions: completions in informative groups times 1 - 1/G, B * E[...] * (G - 1): counts
  every completion's signal as if a step's update summed them (TRL's loss averages them).
- log: B * log(1 + G)   (diminishing returns).
- inverse: B * (1 - 1/G)   (variance reduction of the group-mean baseline).
- a callable f(G, B) -> float for anything else.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sagc.stats import StepStats

UTILITIES = ("signal", "informative", "completions", "log", "inverse")
UtilityFn = Callable[[int, int], float]


def pass_rate_summary(stats: StepStats, threshold: float) -> dict[str, float]:
    """Per-step sums for beta-binomial moments: K groups, sum p_i, sum p_i^2, sum 1/n_i."""
    succ, scored = stats.group_pass_counts(threshold)
    has = scored > 0
    p = succ[has] / scored[has]  # (K,) observed pass rate per group
    return {"k": float(has.sum()), "s1": float(p.sum()), "s2": float(np.sum(p * p)),
            "h": float(np.sum(1.0 / scored[has]))}


def fit_beta(summaries: Sequence[Mapping[str, float]], prior: tuple[float, float] = (1.0, 1.0),
             prior_groups: float = 4.0) -> tuple[float, float]:
    """Beta(a, b) of prompt pass rates from group pass rates (moments, binomial noise removed).

    The prior acts as `prior_groups` pseudo-groups so early estimates are not degenerate.
    """
    k = sum(s["k"] for s in summaries)
    a0, b0 = prior
    m0 = a0 / (a0 + b0)
    v0 = m0 * (1 - m0) / (a0 + b0 + 1)
    if k <= 0:
        return a0, b0
    s1 = sum(s["s1"] for s in summaries)
    s2 = sum(s["s2"] for s in summaries)
    h = sum(s["h"] for s in summaries)
    m = (s1 + prior_groups * m0) / (k + prior_groups)
    # E[p_hat^2] = m^2 + v + (m - m^2 - v) / n   =>  solve for the between-prompt variance v
    hk = h / k
    v_obs = s2 / k - m * m - (m - m * m) * hk
    v = v_obs / (1.0 - hk) if hk < 0.999 else v0
    w = k / (k + prior_groups)
    v = w * v + (1 - w) * v0
    m = min(max(m, 1e-4), 1 - 1e-4)
    v = min(max(v, 1e-6), m * (1 - m) * 0.999)
    conc = m * (1 - m) / v - 1.0  # a + b
    return m * conc, (1 - m) * conc


def informative_prob(a: float, b: float, sizes: Sequence[int]) -> np.ndarray:
    """E_p[1 - p^G - (1-p)^G] for p ~ Beta(a, b): P(a group of G has mixed rewards). (k,)"""
    out = []
    for g in sizes:
        k = np.arange(g, dtype=np.float64)
        log_pg = np.sum(np.log(a + k) - np.log(a + b + k))  # log E[p^G]
        log_qg = np.sum(np.log(b + k) - np.log(a + b + k))  # log E[(1-p)^G]
        out.append(max(1.0 - math.exp(log_pg) - math.exp(log_qg), 0.0))
    return np.asarray(out)


def utility(kind: str | UtilityFn, sizes: Sequence[int], prompts: Sequence[int],
            beta: tuple[float, float]) -> np.ndarray:
    """Un-normalised total benefit per step for each G in sizes (with B = prompts[k])."""
    g = np.asarray(sizes, dtype=np.float64)
    b = np.asarray(prompts, dtype=np.float64)
    if callable(kind):
        vals = np.asarray([float(kind(int(gi), int(bi))) for gi, bi in zip(sizes, prompts)])
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"utility callable returned a non-finite value: {vals.tolist()}")
        return vals
    if kind in GROUP_WEIGHTS:
        return b * informative_prob(beta[0], beta[1], sizes) * group_weight(kind, g)
    if kind == "log":
        return b * np.log1p(g)
    if kind == "inverse":
        return b * (1.0 - 1.0 / g)
    raise ValueError(f"utility: unknown {kind!r}; valid utilities are {list(UTILITIES)} or a callable f(G, B)")


GROUP_WEIGHTS = ("signal", "informative", "completions")


def group_weight(kind: str, g: np.ndarray) -> np.ndarray:
    """What one informative group of size G counts for, by utility: 1 - 1/G, 1, or G - 1."""
    return {"signal": 1.0 - 1.0 / g, "informative": np.ones_like(g), "completions": g - 1.0}[kind]


def mixed_groups(group: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (sorted ids): (ids, mixed rewards (>= 2 scored that differ), scored rewards).
    group: (n,) ids; reward: (n,) float, NaN = unscored. Ragged groups are fine."""
    if group.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64)
    uniq, gi = np.unique(group, return_inverse=True)
    m = int(gi.max()) + 1
    fin = np.isfinite(reward)
    hi = np.full(m, -np.inf)
    lo = np.full(m, np.inf)
    np.maximum.at(hi, gi[fin], reward[fin])
    np.minimum.at(lo, gi[fin], reward[fin])
    scored = np.bincount(gi[fin], minlength=m)
    mixed = (scored >= 2) & (hi > lo)
    return uniq, mixed, scored


def realised(kind: str, group_sizes: np.ndarray) -> float:
    """What a built-in utility counts, measured on a finished step's informative groups.

    group_sizes: (K,) scored completions of each informative group. (The simulator reports this
    per second next to informative groups per second.)
    """
    if kind not in GROUP_WEIGHTS:
        raise ValueError(f"realised: no measure for utility {kind!r}; built-in counts are {list(GROUP_WEIGHTS)}")
    return float(np.sum(group_weight(kind, np.asarray(group_sizes, dtype=np.float64))))


def normalise(values: np.ndarray) -> np.ndarray:
    """Scale so max is 1 (all-zero stays zero: then only risk decides)."""
    top = float(np.max(values)) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def check_utility(kind: Any) -> None:
    if not callable(kind) and kind not in UTILITIES:
        raise ValueError(f"utility must be one of {list(UTILITIES)} or a callable f(G, B), got {kind!r}")
