"""Straggler rules: when does a step count as stalled? (design section 3)

A rule looks at one finished step and returns (event, figure, details): whether the step had a
straggler event, the rule's raw figure (for logs), and the figure of each composed part.
Rules compose with OR: `StragglerSettings(rule=("reference", "truncation"))`.

- tail (default): the step's *tail share* exceeds `tail_share` (default 0.5). The tail share is
  the fraction of the rollout's decode iterations that ran after `tail_quantile` (default 90%)
  of its completions had finished: 1 - L_(k) / L_max, k = ceil(q n), with all completions
  starting together (continuous batching with the step in the engine's slots; a padded batch
  `generate` alike). Those iterations keep the whole step waiting on a few sequences while the
  other slots idle, so the figure measures waste, not length. It is scale-free (no reference
  window: drift in lengths does not trigger it) and compares the step with itself (a hard
  prompt's long but *common* completions fill the top decile instead of standing out against a
  median over easy ones). P(event | G) still rises with G: more draws, a longer lone maximum.
  Public serving reports put the last 10% of requests at about half the rollout time, hence
  the defaults (q = 0.9, share 0.5).
- reference: longest completion > kappa x reference length, the median completion
  length over the trailing `window` steps. Because the threshold does not depend on the step's
  own G, P(event | G) rises with G as it physically should (more draws, higher max).
- group: some group's max/median length ratio > kappa (the "max/median rollout length" of the
  SAGC paper's summaries). Note: with G = 2 the ratio is at most 2.
- truncation: any completion hit the length cap.
- time: rollout_s > kappa x (reference seconds per decode token x reference length): catches
  slow steps even when lengths look normal (engine contention, preemption). Needs rollout_s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sagc.stats import StepStats

RULES = ("tail", "reference", "group", "truncation", "time")


@dataclass(frozen=True)
class StragglerSettings:
    """Which rule(s) define a straggler event, and their thresholds."""

    rule: str | tuple[str, ...] = "tail"  # one name or several (OR-ed)
    kappa: float = 4.0  # ratio threshold (reference / group / time rules)
    window: int = 8  # W: trailing steps behind the reference length
    tail_share: float = 0.5  # tail rule: event when this share of the rollout is the tail ...
    tail_quantile: float = 0.9  # ... the iterations after this fraction of completions finished

    def __post_init__(self) -> None:
        names = (self.rule,) if isinstance(self.rule, str) else tuple(self.rule)
        if not names:
            raise ValueError(f"straggler.rule must name at least one of {list(RULES)}")
        for r in names:
            if r not in RULES:
                raise ValueError(f"straggler.rule: unknown rule {r!r}; valid rules are {list(RULES)}")
        object.__setattr__(self, "rule", names[0] if len(names) == 1 else names)
        if not (self.kappa > 1.0):
            raise ValueError(f"straggler.kappa must be > 1, got {self.kappa!r}")
        if int(self.window) != self.window or self.window < 1:
            raise ValueError(f"straggler.window must be an integer >= 1, got {self.window!r}")
        for key in ("tail_share", "tail_quantile"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(f"straggler.{key} must be a number in (0, 1), got {value!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.rule,) if isinstance(self.rule, str) else tuple(self.rule)


def median(values: Sequence[float]) -> float:
    """float(np.median(values)) for a short sequence of numbers, without numpy's overhead (the
    same float: the middle value, or the two middle values' sum halved); NaNs go to numpy."""
    v = sorted(float(x) for x in values)
    if not v or any(x != x for x in v):
        return float(np.median(values))
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


class StragglerRule:
    """Evaluates the configured rules; its mutable part (the trailing windows) is a dict."""

    def __init__(self, settings: StragglerSettings) -> None:
        self.settings = settings
        self.names = settings.names

    def init_state(self) -> dict[str, Any]:
        return {"medians": [], "s_per_token": []}

    def reference_length(self, state: Mapping[str, Any]) -> float | None:
        """Median completion length over the trailing window (None before the first step)."""
        meds = state["medians"]
        return median(meds) if meds else None

    def threshold(self, state: Mapping[str, Any]) -> float | None:
        """Length above which a completion is a straggler at the next step (reference rule)."""
        ref = self.reference_length(state)
        return None if ref is None else self.settings.kappa * ref

    def observe(self, stats: StepStats, state: dict[str, Any]) -> tuple[bool, float, dict[str, float]]:
        """Evaluate the step against the window *before* it, then slide the window."""
        kappa, length = self.settings.kappa, stats.length
        step_median = float(np.median(length))
        ref = self.reference_length(state)
        if ref is None:  # first step: no history, compare against the step itself
            ref = step_median
        details: dict[str, float] = {}
        event = False
        for name in self.names:
            fig = _FIGURES[name](stats, ref, state) if name != "tail" else \
                tail_share(stats.length, self.settings.tail_quantile)
            details[name] = fig
            # truncation's figure is a count (>0 is an event); tail's a share; the others ratios
            if name == "truncation":
                hit = fig > 0
            elif name == "tail":
                hit = fig > self.settings.tail_share
            else:
                hit = fig > kappa
            event = event or bool(hit)
        figure = details[self.names[0]]
        w = self.settings.window
        state["medians"] = (state["medians"] + [step_median])[-w:]
        if np.isfinite(stats.rollout_s) and stats.rollout_s > 0:
            state["s_per_token"] = (state["s_per_token"] + [stats.rollout_s / float(length.max())])[-w:]
        return event, float(figure), details


def tail_index(n: int | np.ndarray, quantile: float) -> np.ndarray:
    """0-based index k - 1 of the order statistic L_(k), k = ceil(q n), clipped to [0, n - 1]."""
    n = np.asarray(n)
    return np.clip(np.ceil(quantile * n - 1e-9).astype(np.int64) - 1, 0, n - 1)


def tail_shares(lengths: np.ndarray, quantile: float) -> np.ndarray:
    """1 - L_(ceil(q n)) / L_max for each row of (R, n) lengths: the share of decode iterations
    that ran after q of the completions had ended (all starting together). (R,)"""
    lengths = np.asarray(lengths, dtype=np.float64)  # (R, n) tokens
    k = int(tail_index(lengths.shape[1], quantile))
    return 1.0 - np.partition(lengths, k, axis=1)[:, k] / lengths.max(axis=1)


def tail_share(length: np.ndarray, quantile: float) -> float:
    """The tail rule's figure of one step (see tail_shares)."""
    return float(tail_shares(np.asarray(length).reshape(1, -1), quantile)[0])


def _reference_figure(stats: StepStats, ref: float, state: Mapping[str, Any]) -> float:
    return float(stats.length.max()) / ref  # max length / reference length


def _group_figure(stats: StepStats, ref: float, state: Mapping[str, Any]) -> float:
    gi, length = stats.group_index, stats.length.astype(np.float64)
    order = np.lexsort((length, gi))  # sort by group, then length
    sorted_len, sorted_g = length[order], gi[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_g) != 0])
    counts = np.diff(np.r_[starts, len(sorted_g)])
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    med = 0.5 * (sorted_len[lo] + sorted_len[hi])  # (groups,) median length
    mx = sorted_len[starts + counts - 1]  # (groups,) max length
    return float(np.max(mx / med))


def _truncation_figure(stats: StepStats, ref: float, state: Mapping[str, Any]) -> float:
    return float(np.count_nonzero(stats.truncated))


def _time_figure(stats: StepStats, ref: float, state: Mapping[str, Any]) -> float:
    spt = state["s_per_token"]
    if not np.isfinite(stats.rollout_s):
        raise ValueError("the 'time' straggler rule needs StepStats.rollout_s (got NaN)")
    if not spt:  # no history yet: compare against this step's own speed
        return float(stats.length.max()) / ref
    expected = float(np.median(spt)) * ref  # seconds a step of reference length would take
    return stats.rollout_s / expected


_FIGURES: dict[str, Callable[[StepStats, float, Mapping[str, Any]], float]] = {
    "reference": _reference_figure,
    "group": _group_figure,
    "truncation": _truncation_figure,
    "time": _time_figure,
}


STRAGGLER_KEYS = ("rule", "kappa", "window", "tail_share", "tail_quantile")


def make_rule(settings: StragglerSettings | Mapping[str, Any] | None = None) -> StragglerRule:
    if settings is None:
        settings = StragglerSettings()
    elif isinstance(settings, Mapping):
        unknown = set(settings) - set(STRAGGLER_KEYS)
        if unknown:
            raise ValueError(f"straggler: unknown key(s) {sorted(unknown)}; valid keys are {', '.join(STRAGGLER_KEYS)}")
        settings = StragglerSettings(**settings)
    return StragglerRule(settings)


__all__ = ["StragglerSettings", "StragglerRule", "make_rule", "RULES", "STRAGGLER_KEYS", "tail_share", "tail_shares", "tail_index"]
