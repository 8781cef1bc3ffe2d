"""`auto`: the over-sampling rate chosen online by SAGC's objective, measured.

SAGC's per-step controller picks G by predicted learning signal per second. Inside the step the
same objective picks the over-sampling rate, but from measurement rather than a model: how much
over-sampling pays depends on the engine (slots, replicas, B x G) and on the length law's tail,
which a step-time regression on G cannot see.

Steps under `resume` are not independent: a step at a high rate carries more unfinished groups
into the next one. A rate can be held for a block of `block` steps with only the block's later
steps credited to it (the first, the transition from the previous rate, is not). Measured at a
fixed G on the three filled scenarios (300 steps): blocks of 4 gave 1.7-2.9% less signal/s than
per-step credit (block 1, the default), which came within 0.5-2.4% of the best fixed rate: the
carry-over blurs little, and longer exploration blocks cost more. Each rate keeps its last
`window` credited steps (signal, seconds,
on-policy share); the rate with the highest sum(signal) / sum(seconds) is used, ties going to
the smaller rate (more on-policy). At the start every rate runs until it has two credited steps
(smallest first), and the first block starting at or after each multiple of `explore_every` steps
goes to the rate tried least recently, so a drifting stream is followed. A rate whose measured on-policy token share is below
`min_on_policy` is not chosen. No random draws: the same run makes the same choices.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

_START_CREDITS = 2  # credited steps every rate gets before the first comparison

class RateChooser:
    def __init__(self, settings: Any) -> None:
        self.grid = tuple(settings.over_sample_grid)
        self.window = settings.window
        self.every = settings.explore_every
        self.block = settings.block
        self.floor = settings.min_on_policy
        self.reset()

    def reset(self) -> None:
        self.history: dict[str, list[list[float]]] = {repr(r): [] for r in self.grid}  # [signal, s, share]
        self.last_tried = {repr(r): -1 for r in self.grid}
        self.steps = 0  # steps observed
        self.current = self.grid[0]
        self.in_block = 0  # steps of the current block observed so far
        self.explored = 0  # exploration blocks started

    def choose(self) -> float:
        if 0 < self.in_block < self.block:
            return self.current
        untried = [r for r in self.grid if len(self.history[repr(r)]) < _START_CREDITS]
        if untried:  # start: every rate until it has a few credited steps, smallest first
            rate = untried[0]
        elif self.steps // self.every > self.explored:
            self.explored = self.steps // self.every
            rate = min(self.grid, key=lambda r: (self.last_tried[repr(r)], r))
        else:
            rate = self.best()
        if self.in_block == 0 or rate != self.current or self.in_block >= self.block:
            self.in_block = 0
        self.current = rate
        return rate

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
        if self.in_block > 0 or self.block == 1:  # the block's first step is the transition
            self.history[key].append([float(signal), float(seconds), float(on_policy_share)])
            del self.history[key][:-self.window]
        self.last_tried[key] = self.steps
        self.in_block += 1
        self.steps += 1

    def state_dict(self) -> dict:
        return {"history": {k: [list(x) for x in v] for k, v in self.history.items()},
                "last_tried": dict(self.last_tried), "steps": self.steps, "current": self.current,
                "in_block": self.in_block, "explored": self.explored}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = {k: [list(map(float, x)) for x in v] for k, v in state["history"].items()}
        self.last_tried = {k: int(v) for k, v in state["last_tried"].items()}
        self.steps = int(state["steps"])
        self.current = float(state["current"])
        self.in_block = int(state["in_block"])
        self.explored = int(state["explored"])
