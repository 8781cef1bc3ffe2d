"""`inverse_pass_rate`: G ~ c / (estimated pass rate), clipped (the sGPO-style rule).

The intuition: a group is informative only if it holds at least one success and one failure, so
hard prompts (low pass rate) need more samples. The pass rate is an exponential moving average
of the fraction of passing completions per step. Ignores stragglers entirely: a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sagc.controllers import _checks as S
from sagc.controllers.base import Controller, Decision, check_range, nearest
from sagc.rules import StragglerSettings
from sagc.stats import StepStats


@dataclass(frozen=True)
class InversePassRateSettings:
    c: float = 2.0  # target expected passes per group: G = c / p
    ema: float = 0.1  # weight of the newest step in the pass-rate average
    initial_pass_rate: float = 0.5  # prior before any step
    success_threshold: float = 0.5  # reward > this counts as a pass
    g_min: int | None = None  # clip (None: smallest allowed)
    g_max: int | None = None  # clip (None: largest allowed)
    straggler: StragglerSettings = field(default_factory=StragglerSettings)

    def __post_init__(self) -> None:
        check_range("c", self.c, 0.0, math.inf, lo_open=True, hi_open=True)
        check_range("ema", self.ema, 0.0, 1.0, lo_open=True)
        check_range("initial_pass_rate", self.initial_pass_rate, 0.0, 1.0, lo_open=True)
        for name in ("g_min", "g_max"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        if self.g_min is not None and self.g_max is not None and self.g_min > self.g_max:
            raise ValueError(f"g_min must be <= g_max, got g_min={self.g_min}, g_max={self.g_max}")


class InversePassRateController(Controller):
    name = "inverse_pass_rate"
    Settings = InversePassRateSettings
    state_schema = {"pass_rate": S.number(lo=0.0, hi=1.0)}

    def _init_state(self) -> dict[str, Any]:
        return {"pass_rate": float(self.settings.initial_pass_rate)}

    def _learn(self, stats: StepStats, event: bool) -> None:
        r = stats.reward[np.isfinite(stats.reward)]
        if r.size:
            p = float(np.mean(r > self.settings.success_threshold))
            a = self.settings.ema
            self._state["pass_rate"] = (1 - a) * self._state["pass_rate"] + a * p

    def _choose(self, allowed: tuple[int, ...], prompts: int | Mapping[int, int] | None) -> Decision:
        s = self.settings
        lo = s.g_min if s.g_min is not None else allowed[0]
        hi = s.g_max if s.g_max is not None else allowed[-1]
        target = s.c / max(self._state["pass_rate"], 1e-3)
        target = min(max(target, lo), hi)
        inside = [a for a in allowed if lo <= a <= hi] or list(allowed)
        return Decision(group_size=int(nearest(inside, target)))
