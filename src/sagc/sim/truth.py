"""Ground truth for calibration: Monte Carlo P(straggler event | G) under a scenario's rule.

The event of a step depends on the step and on the rule's trailing window (the reference length
is the median of the previous `window` step medians). `true_event_prob` draws `n_mc`
independent histories: the `window` steps before `step` (at G = `window_group_size`, default
the same G, as in a static run) and the step itself, and counts how often the step is an event.
The tail, reference, group and truncation rules are evaluated vectorised over the replicates
(the tail rule needs no history: it compares a step with itself); the time rule (which needs rollout times) goes through the engine and the real StragglerRule.
"""

from __future__ import annotations

import numpy as np

from sagc.rules import StragglerRule, tail_shares
from sagc.sim.engine import simulate_rollout
from sagc.sim.lengths import LengthModel
from sagc.sim.scenario import Scenario
from sagc.stats import StepStats


def _draw(model: LengthModel, rng: np.random.Generator, step: int, g: int, n_mc: int, g_window: int):
    """History steps and the scored step: [(length (R,B,G'), truncated)] * H, then (L, R, T) of the step."""
    rule = model.scenario.straggler
    # only the reference and time rules look back (their reference length); skip the rest
    w = rule.window if ("reference" in rule.names or "time" in rule.names) else 0
    history = [model.sample_replicates(rng, np.full(n_mc, h), g_window) for h in range(max(0, step - w), step)]
    return history, model.sample_replicates(rng, np.full(n_mc, step), g)


def true_event_prob(scenario: Scenario, group_size: int, step: int | None = None, n_mc: int = 4000,
                    seed: int = 0, window_group_size: int | None = None, method: str = "auto") -> float:
    """P(event | G) at `step` (default: the first step with a full window), by Monte Carlo.

    Standard error is about sqrt(p (1 - p) / n_mc). method: "auto", "vectorised" (reference /
    group / truncation rules only) or "loop" (the real StragglerRule on real StepStats; slow).
    """
    rule = scenario.straggler
    step = rule.window if step is None else int(step)
    g = int(group_size)
    g_window = g if window_group_size is None else int(window_group_size)
    if step < 0 or g < 1 or g_window < 1 or n_mc < 1:
        raise ValueError(f"need step >= 0, group sizes >= 1 and n_mc >= 1, got step={step}, G={g}, n_mc={n_mc}")
    if method not in ("auto", "vectorised", "loop"):
        raise ValueError(f"method must be 'auto', 'vectorised' or 'loop', got {method!r}")
    if method == "auto":
        method = "loop" if "time" in rule.names else "vectorised"
    if method == "vectorised" and "time" in rule.names:
        raise ValueError("the time rule needs rollout times: use method='loop'")
    model = LengthModel(scenario)
    rng = np.random.default_rng([seed, step, g])
    history, (length, _, trunc) = _draw(model, rng, step, g, n_mc, g_window)
    if method == "loop":
        return float(np.mean(_events_loop(scenario, history, length, trunc)))
    return float(np.mean(_events_vectorised(scenario, history, length, trunc)))


def true_event_curve(scenario: Scenario, step: int | None = None, n_mc: int = 4000, seed: int = 0) -> dict[int, float]:
    """P(event | G) for every allowed G of the scenario."""
    return {g: true_event_prob(scenario, g, step=step, n_mc=n_mc, seed=seed) for g in scenario.group_sizes}


def _events_vectorised(scenario: Scenario, history: list, length: np.ndarray, trunc: np.ndarray) -> np.ndarray:
    rule = scenario.straggler
    r = length.shape[0]
    flat = length.reshape(r, -1).astype(np.float64)  # (R, B*G)
    if history:  # median of the trailing step medians, exactly as StragglerRule computes it
        meds = np.stack([np.median(h[0].reshape(r, -1).astype(np.float64), axis=1) for h in history])  # (H, R)
        ref = np.median(meds, axis=0)  # (R,)
    else:  # first step: the rule compares the step with itself
        ref = np.median(flat, axis=1)
    event = np.zeros(r, dtype=bool)
    for name in rule.names:
        if name == "reference":
            event |= flat.max(axis=1) / ref > rule.kappa
        elif name == "group":
            lf = length.astype(np.float64)  # (R, B, G)
            event |= np.max(lf.max(axis=2) / np.median(lf, axis=2), axis=1) > rule.kappa
        elif name == "truncation":
            event |= trunc.reshape(r, -1).any(axis=1)
        elif name == "tail":
            event |= tail_shares(flat, rule.tail_quantile) > rule.tail_share
    return event



def _stats(length: np.ndarray, trunc: np.ndarray, scenario: Scenario) -> StepStats:
    b, g = length.shape
    rollout = simulate_rollout(length, scenario.engine, scenario.lengths.prompt_tokens).rollout_s
    return StepStats(group_id=np.repeat(np.arange(b), g), length=length.ravel(), reward=np.zeros(b * g),
                     truncated=trunc.ravel(), group_size=g, rollout_s=rollout)


def _events_loop(scenario: Scenario, history: list, length: np.ndarray, trunc: np.ndarray) -> np.ndarray:
    rule = StragglerRule(scenario.straggler)
    out = np.zeros(length.shape[0], dtype=bool)
    for i in range(length.shape[0]):
        state = rule.init_state()
        for h_len, _, h_trunc in history:
            rule.observe(_stats(h_len[i], h_trunc[i], scenario), state)
        out[i] = rule.observe(_stats(length[i], trunc[i], scenario), state)[0]
    return out


__all__ = ["true_event_prob", "true_event_curve"]


def conditional_event_prob(scenario: Scenario, group_size: int, step: int, threshold: float,
                           n_mc: int = 4000, seed: int = 0) -> float:
    """P(event at `step` | G, the reference threshold known before the step), by Monte Carlo.

    This is what a controller can predict at decision time: the reference length (so the
    threshold kappa x reference) is already fixed by the steps before; only the new step's
    lengths are random. Reference and truncation rules only (per-completion rules).
    """
    names = scenario.straggler.names
    if any(n not in ("reference", "truncation") for n in names):
        raise ValueError(f"conditional_event_prob supports the reference/truncation rules, got {list(names)}")
    model = LengthModel(scenario)
    rng = np.random.default_rng([seed, int(step), int(group_size), 7])
    length, _, trunc = model.sample_replicates(rng, np.full(n_mc, int(step)), int(group_size))
    event = np.zeros(n_mc, dtype=bool)
    if "reference" in names:
        event |= length.reshape(n_mc, -1).max(axis=1) > threshold
    if "truncation" in names:
        event |= trunc.reshape(n_mc, -1).any(axis=1)
    return float(event.mean())
