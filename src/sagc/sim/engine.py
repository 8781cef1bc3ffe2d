"""One synchronous rollout on `replicas` x `slots` with continuous batching.

Model (what a vLLM-style engine does, reduced to what matters for stragglers):
- Requests are submitted together at t = 0 and dealt round-robin over the replicas
  (request k -> replica k % replicas), in prompt-major order.
- Each replica runs its requests FIFO with at most `slots` in flight. A decode iteration
  advances every active sequence by one token and takes
      decode_s_per_iter + decode_s_per_seq * active
  seconds. A sequence of L tokens is active for L consecutive iterations; the iteration in
  which it starts also pays its prefill, prefill_s_per_token * prompt_tokens (the whole batch
  waits for it, as in an engine that mixes prefill into the decode batch).
- When a sequence ends, the next queued request takes its slot at the next iteration.

Exact and fast: the schedule in *iteration units* does not depend on timing. It is list
scheduling of the lengths on `slots` machines (all start at 0 when they fit; a heap only when
requests queue). The number of active sequences is then piecewise constant between start /
finish points, so wall time is a sum over those pieces, never a loop over tokens.

Measures: rollout_s = the slowest replica's time; busy = sum over sequences of the seconds they
hold a slot; bubble_fraction = 1 - busy / (slots * replicas * rollout_s), the idle slot-time share
(free slots while the last sequences finish, and replicas that finished early).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from sagc.sim.scenario import EngineSettings


@dataclass(frozen=True)
class EngineResult:
    rollout_s: float  # wall seconds of the rollout (slowest replica)
    busy_slot_s: float  # slot-seconds held by sequences, all replicas
    bubble_fraction: float  # 1 - busy / (slots * replicas * rollout_s)
    start_s: np.ndarray  # (n,) seconds from submission to the start of a request's first iteration
    finish_s: np.ndarray  # (n,) seconds from submission to a request's last token (its duration_s)
    iterations: int  # decode iterations of the slowest replica (by time)
    # per replica: (request indices, breakpoints in iterations (P,), wall clock at each (P,)),
    # for tokens_by (what each request had generated when a step was cut short)
    timeline: tuple = ()
    start_iter: np.ndarray | None = None  # (n,) iteration at which each request started, on its replica

    def tokens_by(self, length: np.ndarray, stop_s: float) -> np.ndarray:
        """(n,) tokens each request had generated `stop_s` seconds after submission (to the
        iteration: the breakpoint clock is interpolated inside a piece of constant batch size)."""
        length = np.asarray(length, dtype=np.int64)
        out = np.empty_like(length)
        for idx, points, clock in self.timeline:
            it = np.floor(np.interp(stop_s, clock, points) + 1e-9)  # iterations done by stop_s
            st = self.start_iter[idx]
            partial = np.clip(it - st, 0, length[idx]).astype(np.int64)
            out[idx] = np.where(self.finish_s[idx] <= stop_s, length[idx], partial)
        return out

    def busy_by(self, stop_s: float) -> float:
        """Slot-seconds held by requests between submission and `stop_s`."""
        return float(np.sum(np.clip(np.minimum(self.finish_s, stop_s) - np.minimum(self.start_s, stop_s), 0.0, None)))


def schedule(length: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """FIFO list schedule in iteration units: (start, finish) per request, finish = start + length."""
    length = np.asarray(length, dtype=np.int64)  # (m,) tokens
    n = length.shape[0]
    if n <= slots:  # everything fits: all start at iteration 0
        return np.zeros(n, dtype=np.int64), length.copy()
    lens = length.tolist()
    free = lens[:slots]  # finish iteration of each busy slot (a min-heap)
    heapq.heapify(free)
    later: list[int] = []  # start iteration of requests slots, slots+1, ...
    push, replace = later.append, heapq.heapreplace  # local names: this loop is the hot path
    for tokens in lens[slots:]:
        s = free[0]  # the earliest slot to free up takes the next request (FIFO)
        push(s)
        replace(free, s + tokens)
    start_arr = np.concatenate([np.zeros(slots, dtype=np.int64), np.asarray(later, dtype=np.int64)])
    return start_arr, start_arr + length


def _replica_times(start: np.ndarray, finish: np.ndarray, settings: EngineSettings,
                   prompt_tokens: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wall times of one replica's schedule: (total_s, busy_slot_s, start_s, finish_s, breakpoints,
    clock at each). prompt_tokens: (n,) tokens each request prefills (a resumed one: its prompt
    and the tokens it had already generated).

    Sort the 2n start/finish events once; equal iteration indices form one breakpoint, and
    between breakpoints the number of active sequences is constant.
    """
    n = start.shape[0]
    if not start.any():  # no queueing: closed form over the sorted lengths
        return _all_at_once(finish, settings, prompt_tokens)
    events = np.concatenate([start, finish])  # (2n,) iteration indices
    order = np.argsort(events, kind="stable")
    ev = events[order]
    is_start = order < n  # (2n,) sorted events: a start (+1) or a finish (-1)
    first = np.empty(2 * n, dtype=bool)  # first event of each distinct breakpoint
    first[0] = True
    np.not_equal(ev[1:], ev[:-1], out=first[1:])
    point_of_event = np.cumsum(first) - 1  # (2n,) breakpoint index of each sorted event
    head = np.flatnonzero(first)  # (P,) index of each breakpoint's first event
    tail = np.append(head[1:], 2 * n) - 1  # (P,) ... and of its last event
    points = ev[head]  # (P,) breakpoints, iterations
    active = np.cumsum(np.where(is_start, 1, -1))[tail][:-1]  # (P-1,) active after each breakpoint
    at = np.empty(2 * n, dtype=np.int64)
    at[order] = point_of_event  # breakpoint of each request's start (first n) and finish (last n)
    width = np.diff(points)  # (P-1,) iterations per piece
    per_iter = settings.decode_s_per_iter + settings.decode_s_per_seq * active  # (P-1,) seconds
    fill = np.bincount(at[:n], weights=prompt_tokens, minlength=points.shape[0])  # (P,) tokens prefilled
    prefill = settings.prefill_s_per_token * fill[:-1]  # (P-1,) seconds, in each piece's 1st iteration
    piece_s = width * per_iter + prefill  # (P-1,) seconds
    clock = np.concatenate([[0.0], np.cumsum(piece_s)])  # (P,) wall time at each breakpoint
    busy = float(np.dot(active, piece_s))
    return float(clock[-1]), busy, clock[at[:n]], clock[at[n:]], points, clock


def _all_at_once(length: np.ndarray, settings: EngineSettings,
                 prompt_tokens: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All n sequences start at iteration 0: between the k-th and (k+1)-th shortest finish,
    n - k sequences are active (equal lengths make zero-width pieces, which cost nothing)."""
    n = length.shape[0]
    order = np.argsort(length)
    points = np.concatenate([[0], length[order]])  # (n+1,) iterations
    active = np.arange(n, 0, -1)  # (n,) active in each piece
    piece_s = np.diff(points) * (settings.decode_s_per_iter + settings.decode_s_per_seq * active)
    piece_s[0] += settings.prefill_s_per_token * float(np.sum(prompt_tokens))  # every prefill in iteration 0
    clock = np.cumsum(piece_s)  # (n,) wall time at each sorted finish
    finish_s = np.empty(n, dtype=np.float64)
    finish_s[order] = clock
    return (float(clock[-1]), float(np.dot(active, piece_s)), np.zeros(n), finish_s, points,
            np.concatenate([[0.0], clock]))


def simulate_rollout(length: np.ndarray, settings: EngineSettings,
                     prompt_tokens: int | np.ndarray = 0) -> EngineResult:
    """Run one rollout of the given completion lengths (submission order) on the engine.
    prompt_tokens: tokens each request prefills, one number for all or (n,)."""
    length = np.asarray(length, dtype=np.int64).ravel()  # (n,) tokens
    if np.any(length <= 0):
        raise ValueError("simulate_rollout needs lengths > 0")
    n = length.shape[0]
    if n == 0:  # nothing to run (a step whose carried groups are all complete): no time passes
        empty = np.zeros(0, dtype=np.float64)
        return EngineResult(rollout_s=0.0, busy_slot_s=0.0, bubble_fraction=0.0, start_s=empty, finish_s=empty,
                            iterations=0, timeline=(), start_iter=np.zeros(0, dtype=np.int64))
    prompt = np.broadcast_to(np.asarray(prompt_tokens, dtype=np.float64), (n,))  # (n,) tokens
    start_iter = np.zeros(n, dtype=np.int64)
    timeline = []
    reps = settings.replicas
    start_s = np.empty(n, dtype=np.float64)
    finish_s = np.empty(n, dtype=np.float64)
    rollout = busy = 0.0
    iterations = 0
    for r in range(min(reps, n)):
        idx = np.arange(r, n, reps)  # round-robin share of replica r
        st, fi = schedule(length[idx], settings.slots)
        total, b, s_s, f_s, points, clock = _replica_times(st, fi, settings, prompt[idx])
        start_s[idx], finish_s[idx], start_iter[idx] = s_s, f_s, st
        timeline.append((idx, points, clock))
        busy += b
        if total > rollout:
            rollout, iterations = total, int(fi.max())
    capacity = settings.slots * reps * rollout
    bubble = 1.0 - busy / capacity if capacity > 0 else 0.0
    return EngineResult(rollout_s=rollout, busy_slot_s=busy, bubble_fraction=bubble, start_s=start_s,
                        finish_s=finish_s, iterations=iterations, timeline=tuple(timeline), start_iter=start_iter)


def full_token_rate(settings: EngineSettings) -> float:
    """Tokens per second of the engine at its fullest: every slot of every replica decoding. An
    iteration of n sequences takes decode_s_per_iter + decode_s_per_seq x n seconds for n tokens,
    a rate that grows with n, so no schedule generates faster than at n = slots."""
    slots = settings.slots
    return settings.replicas * slots / (settings.decode_s_per_iter + settings.decode_s_per_seq * slots)


def step_seconds(result: EngineResult, completion_tokens: int, settings: EngineSettings) -> float:
    """Whole optimizer step: rollout + training (per completion token) + fixed overhead."""
    return result.rollout_s + settings.train_s_per_token * completion_tokens + settings.overhead_s


__all__ = ["EngineResult", "full_token_rate", "schedule", "simulate_rollout", "step_seconds"]
