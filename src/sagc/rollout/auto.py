"""`auto`: the over-sampling rate chosen online by SAGC's objective, measured.

SAGC's per-step controller picks G by predicted learning signal per second. Inside the step the
same objective picks the over-sampling rate, but from measurement rather than a model: how much
over-sampling pays depends on the engine (slots, replicas, B x G) and on the length law's tail,
which a step-time regression on G cannot see.

Steps under `resume` are not independent: a step at a high rate carries more unfinished groups
into the next one, and since a step trains exactly B groups (the trainer's `close(..., cap=B)`),
groups that completed beyond B too. With `credit="carry"` (the default) the chooser charges each
carried group to the rate of the step that started it: the next step's seconds are split over the
steps that created its groups by the tokens each one's groups generated, and its signal by the
trained groups' weight (1 - 1/G); the carried groups' shares are added to the record of the step
(and rate) that created them, and a rate is scored on its steps whose groups have all been
trained, when it has any. Measured under the trainer's close (300 steps, grid to 8, 6 streams x 3
seeds, docs/rollout.md): the worst seed rose on 5 of 6 streams (Game of 24 trace 1.26x -> 1.51x
the best static G; long-cot-filled 1.63x -> 1.61x) and the median fell on heavy-tail-filled
(1.58x -> 1.53x). With `credit="step"` each step is credited to its own rate.

A rate can be held for a block of `block` steps with only the block's later
steps credited to it (the first, the transition from the previous rate, is not). Measured at a
fixed G on the three filled scenarios (300 steps): blocks of 4 gave 1.7-2.9% less signal/s than
per-step credit (block 1, the default), which came within 0.5-2.4% of the best fixed rate: the
carry-over blurs little, and longer exploration blocks cost more. Each rate keeps its last
`window` credited steps (signal, seconds, on-policy share, and the step's G); the rate with the
highest signal per second at the coming step's G is used, ties going to the smaller rate (more
on-policy). With every step at one G that is sum(signal) / sum(seconds) per rate. SAGC chooses G
beside the rate, and a step at another G (a probe, a change of size) says little about its rate:
on long-cot-filled (G = 4 on nearly every step) two steps at G = 16 made 10,000 of a rate's
26,000 window seconds and pushed it from first to below two other rates. So the records are
fitted as signal ~ seconds x a[G] x b[rate] (`_by_size`), and a step at another size counts for
its rate only against that size's other steps. Measured (docs/rollout.md): x1.02 signal/s over
7 streams x 3 seeds at 2,000 steps (long-cot-filled +1% to +5%, code-heavy-tail-filled up to
+16%), x1.00 over 25 streams at 300.

At the start every rate runs until it has two credited steps (smallest first), and the first
block starting at or after each multiple of `explore_every` steps goes to the rate tried least
recently, so a drifting stream is followed. A rate whose measured on-policy token share is below
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
        self.carry = settings.credit == "carry"
        self.reset()

    def reset(self) -> None:
        # per rate: [signal, seconds, on-policy share, step] of each credited step (step -1: unknown)
        self.history: dict[str, list[list[float]]] = {repr(r): [] for r in self.grid}
        self.last_tried = {repr(r): -1 for r in self.grid}
        self.steps = 0  # steps observed
        self.current = self.grid[0]
        self.in_block = 0  # steps of the current block observed so far
        self.explored = 0  # exploration blocks started
        self.made: dict[int, float] = {}  # step -> rate, for steps whose groups may still be in flight
        self.made_g: dict[int, int] = {}  # step -> its G (-1: unknown)
        self.open: list[int] = []  # steps that created a group still carried (their credit is not final)
        self.pending: list[list[float]] | None = None  # [step, drawn, tokens, weight] of the step closed last
        self.g_next = -1  # G of the step being chosen for (-1: unknown); set by choose(), not saved

    def choose(self, group_size: int = -1) -> float:
        """The rate for the next step; `group_size`: its G (the size the rates are compared at)."""
        self.g_next = int(group_size)
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
        open_steps = set(self.open)
        used: dict[float, np.ndarray] = {}
        for r in self.grid:
            h = np.asarray([(x + [-1.0])[:5] for x in self.history[repr(r)][-self.window:]],
                           dtype=np.float64).reshape(-1, 5)
            if self.carry and h.size:  # only steps whose groups were all trained, when there are any
                settled = np.asarray([int(x) not in open_steps for x in h[:, 3]])
                if settled.any():
                    h = h[settled]
            if h.size == 0 or (self.floor > 0 and np.mean(h[:, 2]) < self.floor):
                continue
            used[r] = h
        scores = dict.fromkeys(self.grid, -np.inf)
        scores.update(_by_size(used, self.g_next))
        top = max(scores.values())
        if not np.isfinite(top):
            return self.grid[0]
        return min(r for r in self.grid if scores[r] >= top)  # ties: the smaller rate

    def planned(self, step: int, rate: float, group_size: int = -1) -> None:
        """Step `step` runs at `rate` with G = `group_size`: the groups it creates are charged to it."""
        self.made[int(step)] = float(rate)
        self.made_g[int(step)] = int(group_size)

    def closed(self, step: int, parts: Any, open_steps: Any) -> None:
        """What step `step` did, by the step that created each group (`parts`: rows of [drawn step,
        tokens generated this step, trained signal weight]); `open_steps`: the steps that created
        the groups still carried."""
        self.pending = [[float(step), float(d), float(tok), float(w)] for d, tok, w in parts]
        self.open = sorted({int(x) for x in open_steps})

    def merge_closed(self, closed: Any) -> None:
        """Several processes each ran a share of the step (a trainer's ranks): make the last
        `closed` report the whole step's, the same on every process. `closed`: each process's
        (pending, open) as `closed_state()` gave them, in rank order. Tokens and signal weights add
        up per creating step; the carried steps are the union."""
        rows: dict[tuple[float, float], list[float]] = {}
        opened: set[int] = set()
        for pending, open_steps in closed:
            for step, drawn, tok, w in pending or []:
                acc = rows.setdefault((float(step), float(drawn)), [0.0, 0.0])
                acc[0] += float(tok)
                acc[1] += float(w)
            opened |= {int(x) for x in open_steps}
        self.pending = [[k[0], k[1], v[0], v[1]] for k, v in sorted(rows.items())] or None
        self.open = sorted(opened)

    def closed_state(self) -> tuple[list[list[float]] | None, list[int]]:
        """This process's report of the step it closed last (for merge_closed)."""
        return self.pending, list(self.open)

    def observe(self, rate: float, signal: float, seconds: float, on_policy_share: float) -> None:
        key = repr(float(rate))
        pending, self.pending = self.pending, None
        if key not in self.history:
            return  # a step not chosen by this chooser (e.g. a long round)
        step = int(pending[0][0]) if pending else -1
        own = [float(signal), float(seconds), float(on_policy_share), float(step), float(self.made_g.get(step, -1))]
        if self.in_block > 0 or self.block == 1:  # the block's first step is the transition
            self.history[key].append(own)
        if self.carry and pending:
            self._charge(key, own, pending, float(signal), float(seconds))
        del self.history[key][:-self.window]
        keep = set(self.open) | {step}
        self.made = {d: r for d, r in self.made.items() if d in keep}
        self.made_g = {d: g for d, g in self.made_g.items() if d in keep}
        self.last_tried[key] = self.steps
        self.in_block += 1
        self.steps += 1

    def _charge(self, key: str, own: list[float], pending: list[list[float]], signal: float, seconds: float) -> None:
        """Split the step's (signal, seconds) over the steps that created its groups: seconds by
        the tokens each one's groups generated, signal by the trained groups' weight. A carried
        group's share goes to the credited record of the step that created it (so a rate that
        leaves a backlog pays for it), the rest stays with this step."""
        tok = np.asarray([p[2] for p in pending])
        w = np.asarray([p[3] for p in pending])
        sec = seconds * tok / tok.sum() if tok.sum() > 0 else np.zeros_like(tok)
        sig = signal * w / w.sum() if w.sum() > 0 else np.zeros_like(w)
        own[0] = signal - float(sig[[int(p[1]) != int(p[0]) for p in pending]].sum())
        own[1] = seconds - float(sec[[int(p[1]) != int(p[0]) for p in pending]].sum())
        for p, s_sig, s_sec in zip(pending, sig, sec):
            d = int(p[1])
            if d == int(p[0]):
                continue
            target = self._record(d)
            if target is None:  # the creating step was not credited (or is gone): this step keeps it
                own[0] += float(s_sig)
                own[1] += float(s_sec)
            else:
                target[0] += float(s_sig)
                target[1] += float(s_sec)

    def _record(self, step: int) -> list[float] | None:
        rate = self.made.get(step)
        if rate is None or repr(rate) not in self.history:
            return None
        h = self.history[repr(rate)]
        for x in reversed(h):
            if int(x[3]) == step:
                return x
        return h[-1] if h else None  # pruned from the window: the rate's latest record pays

    def state_dict(self) -> dict:
        return {"history": {k: [list(x) for x in v] for k, v in self.history.items()},
                "last_tried": dict(self.last_tried), "steps": self.steps, "current": self.current,
                "in_block": self.in_block, "explored": self.explored,
                "made": [[d, r, self.made_g.get(d, -1)] for d, r in sorted(self.made.items())],
                "open": list(self.open),
                "pending": None if self.pending is None else [list(x) for x in self.pending]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = {k: [list(map(float, x)) + [-1.0] * (5 - len(x)) for x in v]
                        for k, v in state["history"].items()}
        self.last_tried = {k: int(v) for k, v in state["last_tried"].items()}
        self.steps = int(state["steps"])
        self.current = float(state["current"])
        self.in_block = int(state["in_block"])
        self.explored = int(state["explored"])
        made = [list(x) + [-1] * (3 - len(x)) for x in state.get("made", [])]
        self.made = {int(x[0]): float(x[1]) for x in made}
        self.made_g = {int(x[0]): int(x[2]) for x in made}
        self.open = [int(x) for x in state.get("open", [])]
        pending = state.get("pending")
        self.pending = None if pending is None else [list(map(float, x)) for x in pending]


def _by_size(used: Mapping[float, np.ndarray], g_ref: int, iters: int = 50) -> dict[float, float]:
    """Each rate's signal per second at G = `g_ref`, from records [signal, seconds, share, step, G]
    of every rate and size: signal ~ seconds x a[G] x b[rate] (a Poisson fit with the seconds as
    exposure, by alternating the two factors). A step at another size (a SAGC probe) then counts
    for its rate only against that size's other steps, not against the rate. With one size this is
    sum(signal) / sum(seconds) per rate, as before."""
    cells: dict[tuple[int, float], list[float]] = {}
    for r, h in used.items():
        for row in h:
            c = cells.setdefault((int(row[4]), r), [0.0, 0.0])
            c[0] += float(row[0])
            c[1] += float(row[1])
    if not cells:
        return {}
    sizes = sorted({g for g, _ in cells})
    rates = sorted(used)
    sig = np.zeros((len(sizes), len(rates)))
    sec = np.zeros_like(sig)
    for (g, r), (a_, b_) in cells.items():
        sig[sizes.index(g), rates.index(r)] = a_
        sec[sizes.index(g), rates.index(r)] = b_
    a = np.ones(len(sizes))
    b = sig.sum(0) / np.maximum(sec.sum(0), 1e-12)
    for _ in range(iters):
        a = sig.sum(1) / np.maximum((sec * b[None, :]).sum(1), 1e-12)
        b = sig.sum(0) / np.maximum((sec * a[:, None]).sum(0), 1e-12)
    ref = sizes.index(g_ref) if g_ref in sizes else int(np.argmax(sec.sum(1)))
    b = b * a[ref]
    return {r: float(v) for r, v in zip(rates, b)}

