"""SAGC's measured goodput (`goodput_from="measured"`): benefit per second measured per G.

Used under a tail-control rollout policy (sagc.controllers.tail_defaults), where a step ends at
the B-th complete group and trains carried groups, so neither the step-time fit (built for a step
that waits for its longest completion) nor the per-step benefit model describe what a size yields
per second. Measured on code-heavy-tail-filled (auto): the model put G=16 within 3% of G=8; G=16
made 0.76x G=8's signal per second (docs/benchmarks.md, issue 18).

Each size keeps its own last `window` steps (keep_per_size), so a size's measurement outlives
steps at other sizes. With one shared window of steps a size not run for `window` steps fell back
to the model's prediction, and the model, scaled to the sizes measured, underrates small sizes
under tail control: on heavy-tail-filled (auto, seed 0) G=4 (1.98x the best static G when held)
aged out while G=8 ran, read 0.53-0.66x G=8 from the model and was never run again (1.53x).
Measured over 25 streams x 3 seeds (docs/benchmarks.md): signal/s x1.05 (geometric mean).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sagc.stats import StepStats
from sagc.utility import GROUP_WEIGHTS, mixed_groups, realised


def realised_signal(stats: StepStats, kind: Any) -> float:
    """The step's realised benefit: informative groups (>= 2 scored rewards that differ) weighted
    by the utility's group weight at each group's scored size (ragged groups count right); the
    'signal' weight for a utility without a built-in measure."""
    reward = np.asarray(stats.reward, dtype=np.float64)
    if not np.isfinite(reward).any():
        return 0.0
    _, mixed, scored = mixed_groups(np.asarray(stats.group_id), reward)
    return realised(kind if isinstance(kind, str) and kind in GROUP_WEIGHTS else "signal", scored[mixed])


def measured_goodput(rows: Sequence[Sequence[float]], allowed: tuple[int, ...], predicted: np.ndarray,
                     min_steps: int) -> np.ndarray:
    """(k,) benefit per second per allowed size. rows: [G, signal, seconds] of the window's steps
    (G the size decided). A size run at least `min_steps` steps gets sum(signal) / sum(seconds);
    the others keep the model's prediction, scaled by the geometric mean of measured / predicted
    over the measured sizes (so the two compare)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    est = np.asarray(predicted, dtype=np.float64).copy()
    seen = np.zeros(len(allowed), dtype=bool)
    for k, g in enumerate(allowed):
        at = rows[rows[:, 0] == g]
        if at.shape[0] >= min_steps and at[:, 2].sum() > 0:
            est[k] = at[:, 1].sum() / at[:, 2].sum()
            seen[k] = True
    if not seen.any():
        return est
    ok = seen & (est > 0) & (predicted > 0)
    scale = float(np.exp(np.mean(np.log(est[ok] / predicted[ok])))) if ok.any() else 1.0
    return np.where(seen, est, scale * predicted)


def keep_per_size(rows: list[list[float]], per_size: int) -> list[list[float]]:
    """The last `per_size` rows of each size (G in column 0), in their order: at most
    per_size x (number of distinct sizes run) rows."""
    count: dict[float, int] = {}
    keep = []
    for row in reversed(rows):
        n = count.get(row[0], 0)
        if n < per_size:
            keep.append(row)
            count[row[0]] = n + 1
    return keep[::-1]
