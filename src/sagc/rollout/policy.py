"""One rollout policy object per run: plans each step's requests, ends the step, keeps the tail.

    policy = RolloutPolicy(RolloutSettings(policy="resume", over_sample=1.5))
    for t in range(T):
        G = controller.decide(...).group_size
        plan = policy.plan(t, G, prompts=B, take_prompts=lambda n: next_ids(n))
        # run plan.submit (completion rows, resumed ones first) on the engine; stop when
        # plan.should_stop(finished) says so (or at plan.stop_time(finish_s) in a simulator)
        out = policy.close(plan, finished, generated)      # out.trained: rows to train on
        policy.feedback(signal, step_s)                    # what `auto` learns from

The simulator (sagc.sim.stepper) and the TRL trainer drive this same object; neither knows
what a policy does with its tail. Everything is numpy arrays over completion rows; groups are
identified by keys (a prompt re-run after deferral gets a new key, the same prompt id).

Versions: tokens generated during step t were sampled by policy version t. A completion that is
resumed carries its tokens per version (`seg[:, k]` = tokens of version first + k), so a
trainer can mask or importance-weight the stale ones, and the on-policy share is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sagc.rollout.settings import RolloutSettings, in_flight, rollout_settings
from sagc.rollout import auto as _auto

_GROUP_FIELDS = ("key", "prompt", "size", "drawn", "attempt", "deferred", "pinned")
_ROW_FIELDS = ("group", "index", "tokens", "done", "first")


@dataclass
class StepPlan:
    """One step's groups in flight and their completion rows (held and to run)."""

    step: int
    group_size: int  # G of the groups this step creates
    prompts: int  # B: complete groups the step trains (a target, not a cap)
    rate: float  # over-sampling used this step
    kind: str  # "full" (wait for all) | "short" (stop at the target) | "long" (a deferred round)
    target: int | None  # stop once this many groups are complete; None: wait for every row
    groups: dict[str, np.ndarray]  # (m,) each: key, prompt, size, drawn, attempt, deferred, pinned
    rows: dict[str, np.ndarray]  # (n,) each: group (position in groups), index, tokens, done, first
    seg: np.ndarray  # (n, K) int64 tokens per version first + k, K = max_staleness + 1
    new: np.ndarray  # (m,) bool: groups created this step (fresh prompts)

    @property
    def submit(self) -> np.ndarray:
        """Row indices to run, in submission order (resumed rows first, then long-round, then new)."""
        return np.flatnonzero(~self.rows["done"])

    def group_done(self, finished: np.ndarray) -> np.ndarray:
        """(m,) bool: every row of the group finished (before or during this step)."""
        done = self.rows["done"].copy()
        done[self.submit] = np.asarray(finished, dtype=bool)
        m = self.groups["key"].shape[0]
        missing = np.bincount(self.rows["group"], weights=~done, minlength=m)
        return missing == 0

    def should_stop(self, finished: np.ndarray) -> bool:
        """For an event-driven engine: can the step end now? `finished` is (len(submit),) bool."""
        finished = np.asarray(finished, dtype=bool)
        if self.target is None:
            return bool(finished.all())
        complete = self.group_done(finished)
        pinned_ok = bool(complete[self.groups["pinned"]].all())
        return pinned_ok and int(complete.sum()) >= min(self.target, complete.shape[0])

    def stop_time(self, finish_s: np.ndarray) -> float:
        """For an engine that knows every submitted row's finish time (a simulator): the time the
        step ends. finish_s: (len(submit),) seconds from the step's start."""
        finish_s = np.asarray(finish_s, dtype=np.float64)
        if finish_s.size == 0:
            return 0.0
        if self.target is None:
            return float(finish_s.max())
        m = self.groups["key"].shape[0]
        t = np.zeros(self.rows["group"].shape[0])
        t[self.submit] = finish_s
        group_t = np.zeros(m)
        np.maximum.at(group_t, self.rows["group"], t)  # (m,) when each group is complete
        k = min(self.target, m)
        stop = float(np.partition(group_t, k - 1)[k - 1])
        if self.groups["pinned"].any():
            stop = max(stop, float(group_t[self.groups["pinned"]].max()))
        return stop


@dataclass(frozen=True)
class StepOutcome:
    """What `close` decided: rows trained, what was carried, dropped or deferred, and counts."""

    trained_rows: np.ndarray  # row indices of the plan whose groups are trained this step
    trained_groups: np.ndarray  # group positions trained
    length: np.ndarray  # (n,) tokens of every row after this step
    seg: np.ndarray  # (n, K) tokens per version of every row after this step
    first: np.ndarray  # (n,) version of each row's first token (-1: none yet)
    on_policy_tokens: int  # trained tokens sampled by this step's version
    stale_tokens: int  # trained tokens sampled by an older version (resumed)
    wasted_tokens: int  # generated tokens thrown away (dropped groups, deferred prompts' partials)
    dropped_prompts: int  # prompts dropped for good this step
    deferred_prompts: int  # prompts sent to the long-round queue this step
    carried_groups: int  # groups carried to the next step (resume)
    deferred_waits: np.ndarray  # steps each trained deferred prompt waited
    max_staleness: int  # oldest trained token's age in versions (0: all on-policy)


def _empty_groups() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=bool if k == "pinned" else np.int64) for k in _GROUP_FIELDS}


def _empty_rows(k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rows = {f: np.zeros(0, dtype=bool if f == "done" else np.int64) for f in _ROW_FIELDS}
    return rows, np.zeros((0, k), dtype=np.int64)


def _cat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class RolloutPolicy:
    """A rollout policy (see sagc.rollout.settings for the policies and their knobs)."""

    def __init__(self, settings: RolloutSettings | Mapping[str, Any] | str | None = None, **kwargs: Any) -> None:
        if kwargs:
            base = rollout_settings(settings).to_dict() if settings is not None else {}
            settings = {**base, **kwargs}
        self.settings = rollout_settings(settings)
        self._k = self.settings.max_staleness + 1
        self.reset()

    # ---- state ------------------------------------------------------------------------
    def reset(self) -> None:
        self.next_key = 0
        self.carried = _empty_groups()  # groups waiting to be resumed (resume / auto)
        self.carried_rows, self.carried_seg = _empty_rows(self._k)
        self.deferred = _empty_groups()  # prompts waiting for a long round (defer)
        self.chooser = _auto.RateChooser(self.settings) if self.settings.policy == "auto" else None
        self._last_rate = 1.0

    @property
    def pending_prompts(self) -> int:
        """Prompts in the policy's hands between steps (carried or deferred), not yet trained."""
        return int(self.carried["key"].shape[0] + self.deferred["key"].shape[0])

    def state_dict(self) -> dict:
        def plain(d: Mapping[str, np.ndarray]) -> dict:
            return {k: v.tolist() for k, v in d.items()}

        return {"settings": self.settings.to_dict(), "next_key": self.next_key,
                "carried": plain(self.carried), "carried_rows": plain(self.carried_rows),
                "carried_seg": self.carried_seg.tolist(), "deferred": plain(self.deferred),
                "chooser": self.chooser.state_dict() if self.chooser is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from sagc.rollout.state import check_state

        check_state(state, self.settings, self._k)
        self.next_key = int(state["next_key"])
        self.carried = {k: np.asarray(state["carried"][k], dtype=bool if k == "pinned" else np.int64)
                        for k in _GROUP_FIELDS}
        self.carried_rows = {k: np.asarray(state["carried_rows"][k], dtype=bool if k == "done" else np.int64)
                             for k in _ROW_FIELDS}
        self.carried_seg = np.asarray(state["carried_seg"], dtype=np.int64).reshape(-1, self._k)
        self.deferred = {k: np.asarray(state["deferred"][k], dtype=bool if k == "pinned" else np.int64)
                         for k in _GROUP_FIELDS}
        if self.chooser is not None:
            self.chooser.load_state_dict(state["chooser"])

    # ---- one step -----------------------------------------------------------------------
    def plan(self, step: int, group_size: int, prompts: int,
             take_prompts: Callable[[int], Sequence[int] | np.ndarray],
             sizes: Mapping[int, int] | None = None) -> StepPlan:
        """Plan step `step`: what to submit and when to stop. `take_prompts(n)` returns the ids
        of n fresh prompts (the data loader's next ones). `sizes`: per-prompt G of fresh prompts
        (prompt id -> G >= 1, e.g. `Decision.group_sizes` without its skips); a prompt not named
        gets `group_size`."""
        s = self.settings
        g, b = int(group_size), int(prompts)
        if g < 1 or b < 1:
            raise ValueError(f"group_size and prompts must be >= 1, got {g} and {b}")
        long_due = s.policy == "defer" and self.deferred["key"].shape[0] >= (s.long_round or b)
        if long_due:  # RollPacker's long round: the deferred prompts alone, each run to the end
            take = min(self.deferred["key"].shape[0], max(b, s.long_round or b))
            chosen = {k: v[:take] for k, v in self.deferred.items()}
            self.deferred = {k: v[take:] for k, v in self.deferred.items()}
            regen = self._new_groups(step, g, chosen["prompt"], attempt=chosen["attempt"] + 1,
                                     deferred=chosen["deferred"])
            rows, seg = self._fresh_rows(regen, 0)
            return StepPlan(step=step, group_size=g, prompts=b, rate=1.0, kind="long", target=None,
                            groups=regen, rows=rows, seg=seg, new=np.zeros(take, dtype=bool))
        rate = self._rate(g)
        carried, crows, cseg = self.carried, self.carried_rows, self.carried_seg
        self.carried = _empty_groups()
        self.carried_rows, self.carried_seg = _empty_rows(self._k)
        want = in_flight(b, rate)
        fresh = max(want - carried["key"].shape[0], 0)
        ids = np.asarray(take_prompts(fresh), dtype=np.int64).ravel() if fresh else np.zeros(0, dtype=np.int64)
        if ids.shape[0] != fresh:
            raise ValueError(f"take_prompts({fresh}) returned {ids.shape[0]} prompt ids")
        new = self._new_groups(step, g, ids)
        if sizes:
            new["size"] = np.asarray([int(sizes.get(int(p), g)) for p in ids.tolist()], dtype=np.int64)
            if np.any(new["size"] < 1):
                raise ValueError(f"per-prompt sizes must be >= 1 (skip a prompt by not taking it), got "
                                 f"{int(new['size'].min())}")
        nrows, nseg = self._fresh_rows(new, carried["key"].shape[0])
        groups = _cat([carried, new])
        rows = _cat([crows, nrows])
        seg = np.concatenate([cseg, nseg])
        is_new = np.concatenate([np.zeros(carried["key"].shape[0], bool), np.ones(new["key"].shape[0], bool)])
        if self.chooser is not None:
            self.chooser.planned(step, rate, g)
        kind = "full" if s.policy == "full" or rate <= 1.0 else "short"
        target = None if kind == "full" else b
        self._last_rate = rate
        return StepPlan(step=step, group_size=g, prompts=b, rate=rate, kind=kind, target=target,
                        groups=groups, rows=rows, seg=seg, new=is_new)

    def close(self, plan: StepPlan, finished: np.ndarray, generated: np.ndarray, cap: int | None = None,
              finish_order: np.ndarray | None = None) -> StepOutcome:
        """End the step: `finished` (len(submit),) bool, `generated` (len(submit),) tokens each
        submitted row produced during this step. Returns what to train; keeps the tail.

        `cap` (short steps only): train at most this many complete groups, the first to complete
        by `finish_order` ((len(submit),) int, the order in which rows finished; ties by group
        position), pinned groups first. A complete group beyond the cap is treated as the tail
        (carried, dropped or deferred). An engine that ends a step a little after its target (a
        real one polls; several ranks end together) uses it to train exactly the target."""
        sub = plan.submit
        finished = np.asarray(finished, dtype=bool).ravel()
        generated = np.asarray(generated, dtype=np.int64).ravel()
        if finished.shape[0] != sub.shape[0] or generated.shape[0] != sub.shape[0]:
            raise ValueError(f"close needs one finished flag and one token count per submitted row "
                             f"({sub.shape[0]}), got {finished.shape[0]} and {generated.shape[0]}")
        if np.any(generated < 0):
            raise ValueError("generated token counts must be >= 0")
        if cap is not None and (plan.target is None or int(cap) < 0):
            raise ValueError(f"cap applies to a short step and must be >= 0, got {cap!r} for a {plan.kind} step")
        t = plan.step
        rows = {k: v.copy() for k, v in plan.rows.items()}
        seg = plan.seg.copy()
        rows["tokens"][sub] += generated
        rows["done"][sub] = finished
        got = sub[generated > 0]
        rows["first"][got] = np.where(rows["first"][got] < 0, t, rows["first"][got])
        col = t - rows["first"][got]  # version offset of this step's tokens
        if np.any(col >= self._k):
            raise AssertionError("a row outlived max_staleness: the plan should have pinned it")
        seg[got, col] += generated[generated > 0]
        complete = plan.group_done(finished)
        if cap is not None and int(complete.sum()) > int(cap):
            complete = self._first_complete(plan, complete, finished, finish_order, int(cap))
        if plan.target is None and not complete.all():
            raise ValueError(f"a {plan.kind} step must run every row to the end; "
                             f"{int((~complete).sum())} groups are unfinished")
        g_of_row = rows["group"]
        trained_rows = np.flatnonzero(complete[g_of_row])
        open_groups = np.flatnonzero(~complete)
        open_rows = np.flatnonzero(~complete[g_of_row])
        cur = t - rows["first"][trained_rows]
        ok = (rows["first"][trained_rows] >= 0)
        on_policy = int(seg[trained_rows[ok], cur[ok]].sum())
        trained_tokens = int(rows["tokens"][trained_rows].sum())
        age = int(cur[ok].max()) if ok.any() else 0
        waits = t - plan.groups["deferred"][complete]
        waits = waits[plan.groups["deferred"][complete] >= 0]
        wasted = dropped = deferred = carried = 0
        policy = self.settings.policy
        if open_groups.size:
            if policy == "drop":
                wasted, dropped = int(rows["tokens"][open_rows].sum()), int(open_groups.size)
            elif policy == "defer":
                wasted, deferred = int(rows["tokens"][open_rows].sum()), int(open_groups.size)
                keep = {k: v[open_groups] for k, v in plan.groups.items()}
                keep["deferred"] = np.where(keep["deferred"] >= 0, keep["deferred"], t)
                self.deferred = _cat([self.deferred, keep])
            else:  # resume / auto: carry the whole group, finished rows held, partial tokens kept
                carried = int(open_groups.size)
                self._carry(plan, open_groups, open_rows, rows, seg, t)
        if self.chooser is not None:
            self._note(plan, generated, complete)
        return StepOutcome(trained_rows=trained_rows, trained_groups=np.flatnonzero(complete),
                           length=rows["tokens"], seg=seg, first=rows["first"], on_policy_tokens=on_policy,
                           stale_tokens=trained_tokens - on_policy, wasted_tokens=wasted,
                           dropped_prompts=dropped, deferred_prompts=deferred, carried_groups=carried,
                           deferred_waits=waits.astype(np.int64), max_staleness=age)

    def feedback(self, signal: float, seconds: float, on_policy_share: float = 1.0) -> None:
        """What the step achieved (learning signal, its wall seconds, its on-policy token share):
        `auto` chooses its over-sampling from these."""
        if self.chooser is not None:
            self.chooser.observe(self._last_rate, signal, seconds, on_policy_share)

    # ---- helpers ------------------------------------------------------------------------
    def _note(self, plan: StepPlan, generated: np.ndarray, complete: np.ndarray) -> None:
        """Tell `auto` what the step did per step that created its groups (tokens generated,
        trained signal weight 1 - 1/size), and which steps' groups are still carried."""
        drawn = plan.groups["drawn"]
        sub = plan.submit
        steps, inv = np.unique(drawn, return_inverse=True)
        tok = np.bincount(inv[plan.rows["group"][sub]], weights=generated, minlength=steps.shape[0])
        size = np.maximum(plan.groups["size"], 1)
        w = np.bincount(inv, weights=np.where(complete, 1.0 - 1.0 / size, 0.0), minlength=steps.shape[0])
        parts = [(int(d), float(a), float(b)) for d, a, b in zip(steps.tolist(), tok.tolist(), w.tolist())]
        self.chooser.closed(plan.step, parts, self.carried["drawn"].tolist())

    @staticmethod
    def _first_complete(plan: StepPlan, complete: np.ndarray, finished: np.ndarray,
                        finish_order: np.ndarray | None, cap: int) -> np.ndarray:
        """(m,) bool: the `cap` complete groups that completed first (pinned ones always kept)."""
        sub = plan.submit
        order = np.zeros(sub.shape[0], np.int64) if finish_order is None else \
            np.asarray(finish_order, dtype=np.int64).ravel()
        if order.shape[0] != sub.shape[0]:
            raise ValueError(f"finish_order needs one entry per submitted row ({sub.shape[0]}), got {order.shape[0]}")
        m = complete.shape[0]
        t_row = np.full(plan.rows["group"].shape[0], -1, dtype=np.int64)  # rows done before the step: -1
        t_row[sub] = np.where(finished, order, np.iinfo(np.int64).max)
        done_at = np.full(m, -1, dtype=np.int64)
        np.maximum.at(done_at, plan.rows["group"], t_row)  # (m,) when each group completed
        pinned = plan.groups["pinned"]
        cand = np.flatnonzero(complete)
        rank = np.lexsort((cand, done_at[cand], ~pinned[cand]))  # pinned first, then by completion
        keep = cand[rank[:max(cap, int((complete & pinned).sum()))]]
        out = np.zeros(m, dtype=bool)
        out[keep] = True
        return out

    def _rate(self, group_size: int) -> float:
        s = self.settings
        if s.policy == "auto":
            return self.chooser.choose(group_size)
        return s.over_sample if s.policy != "full" else 1.0

    def _new_groups(self, step: int, g: int, prompt_ids: np.ndarray, attempt: Any = 0,
                    deferred: Any = -1) -> dict[str, np.ndarray]:
        n = prompt_ids.shape[0]
        keys = np.arange(self.next_key, self.next_key + n, dtype=np.int64)
        self.next_key += n
        return {"key": keys, "prompt": prompt_ids.astype(np.int64), "size": np.full(n, g, np.int64),
                "drawn": np.full(n, step, np.int64), "attempt": np.broadcast_to(attempt, (n,)).astype(np.int64),
                "deferred": np.broadcast_to(deferred, (n,)).astype(np.int64), "pinned": np.zeros(n, bool)}

    def _fresh_rows(self, groups: Mapping[str, np.ndarray], offset: int) -> tuple[dict, np.ndarray]:
        size = groups["size"]
        n = int(size.sum())
        pos = np.repeat(np.arange(size.shape[0]), size)
        index = np.arange(n) - np.repeat(np.cumsum(size) - size, size)
        rows = {"group": pos + offset, "index": index, "tokens": np.zeros(n, np.int64),
                "done": np.zeros(n, bool), "first": np.full(n, -1, np.int64)}
        return rows, np.zeros((n, self._k), dtype=np.int64)

    def _carry(self, plan: StepPlan, open_groups: np.ndarray, open_rows: np.ndarray,
               rows: Mapping[str, np.ndarray], seg: np.ndarray, t: int) -> None:
        keep = {k: v[open_groups] for k, v in plan.groups.items()}
        # A group whose oldest token would be more than max_staleness versions old when trained
        # after the next step is pinned: the next step does not end until it is complete.
        first = rows["first"]
        oldest = np.full(plan.groups["key"].shape[0], t + 1, dtype=np.int64)
        started = first >= 0
        np.minimum.at(oldest, rows["group"][started], first[started])
        keep["pinned"] = (t + 2 - oldest[open_groups]) > self.settings.max_staleness
        remap = np.full(plan.groups["key"].shape[0], -1, dtype=np.int64)
        remap[open_groups] = np.arange(open_groups.shape[0])
        crows = {k: v[open_rows].copy() for k, v in rows.items()}
        crows["group"] = remap[crows["group"]]
        self.carried, self.carried_rows, self.carried_seg = keep, crows, seg[open_rows].copy()


__all__ = ["RolloutPolicy", "StepPlan", "StepOutcome"]
