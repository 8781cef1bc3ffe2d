"""`auto`: the over-sampling rate chosen online by SAGC's objective, measured.

SAGC's per-step controller picks G by predicted learning signal per second. Inside the step the
same objective picks the over-sampling rate, but from measurement rather than a model: how much
over-sampling pays depends on the engine (slots, replicas) and on the length law's tail, which a
step-time regression on G cannot see. Each candidate rate keeps its last `window` steps'
(signal, seconds); the rate with the highest sum(signal) / sum(seconds) is used, ties going to
the smaller rate (more on-policy). Every rate is tried twice at the start (smallest first), and
every `explore_every` steps the rate tried least recently is tried again, so a drifting stream
is followed. A rate whose measured on-policy token share is below `min_on_policy` is not
chosen. Deterministic: no random draws, so the same run makes the same choices.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

_START_TRIES = 2  # steps per rate before the first comparison


class RateChooser:
    def __init__(self, settings: Any) -> None:
        self.grid = tuple(settings.over_sample_grid)
        self.window = settings.window
        self.every = settings.explore_every
        self.floor = settings.min_on_policy
        self.reset()

    def reset(self) -> None:
        self.history: dict[str, list[list[float]]] = {repr(r): [] for r in self.grid}  # [signal, s, share]
        self.last_tried = {repr(r): -1 for r in self.grid}
        self.steps = 0

    def choose(self) -> float:
        for r in self.grid:  # start: every rate a few times, smallest first
            if len(self.history[repr(r)]) < _START_TRIES:
                return r
        if self.steps % self.every == self.every - 1:
            return min(self.grid, key=lambda r: (self.last_tried[repr(r)], r))
        return self.best()

    def best(self) -> float:
        """The rate with the highest measured signal per second (among those on-policy enough)."""
        def score(r: float) -> float:
            h = np.asarray(self.history[repr(r)][-self.window:], dtype=np.float64)
            if h.size == 0:
                return -np.inf
            if self.floor > 0 and np.mean(h[:, 2]) < self.floor:
                return -np.inf
            return float(h[:, 0].sum() / max(h[:, 1].sum(), 1e-12))

        scores = {r: score(r) for r in self.grid}
        top = max(scores.values())
        if not np.isfinite(top):
            return self.grid[0]
        return min(r for r in self.grid if scores[r] >= top)  # ties: the smaller rate

    def observe(self, rate: float, signal: float, seconds: float, on_policy_share: float) -> None:
        key = repr(float(rate))
        if key not in self.history:
            return  # a step not chosen by this chooser (e.g. a long round)
        self.history[key].append([float(signal), float(seconds), float(on_policy_share)])
        del self.history[key][:-self.window]
        self.last_tried[key] = self.steps
        self.steps += 1

    def state_dict(self) -> dict:
        return {"history": {k: [list(x) for x in v] for k, v in self.history.items()},
                "last_tried": dict(self.last_tried), "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = {k: [list(map(float, x)) for x in v] for k, v in state["history"].items()}
        self.last_tried = {k: int(v) for k, v in state["last_tried"].items()}
        self.steps = int(state["steps"])
