"""Rollout traces: one JSON object per optimizer step, one step per line (design section 6).

    {"step": 12, "group_size": 8, "rollout_s": 3.1, "step_s": 4.0,
     "groups": [{"id": "p-1734", "lengths": [212, 198], "rewards": [1, 0],
                 "truncated": [false, false]}],
     "controller": {"event": false, "queue": 0.4, "risk": {"4": 0.03, "8": 0.07}, "figure": 1.9}}

Training integrations append a line per step as they go (`TraceWriter`); the simulator replays
recorded groups (`read_trace`) and writes whole traces at once (`write_trace`, atomic).

JSON has no NaN: a missing reward or an unknown time is written as null and read back as NaN.
Top-level keys other than the ones above are allowed (integrations may add their own, e.g.
"controller_name"); known keys are validated with messages that name file, line and field.
`controller.probe: true` (an extension of the design's format) marks a SAGC time-probe step.

Under a tail-control policy (sagc.rollout) a trainer adds `tail`: the policy, the step's kind and
rate, per trained completion (aligned with the completions of `groups`, groups in order, each
group's lengths in order) `resumed` / `deferred` flags and `stale_tokens`, and per completion
cancelled at the step's end its `aborted_lengths` (censored: a lower bound of its natural
length) and `aborted_fate`. See `_check_tail` for every rule; `tail_flags` gives the arrays.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from sagc._io import InputError, atomic_path, is_real, iter_jsonl
from sagc.rollout import POLICIES  # numpy only; it does not import this module
from sagc.stats import StepStats

OUTCOMES = ("trained", "carried", "dropped", "deferred")  # a group's fate under a tail-control policy
TAIL_KINDS = ("full", "short", "long")  # a step under a policy: every row to the end, cut at B groups, a long round
FATES = ("resume", "drop", "defer")  # what became of a completion cancelled at a step's end
# the fate each policy gives a cancelled completion (docs/rollout.md: only drop drops, defer re-queues)
_FATE_OF = {"drop": "drop", "resume": "resume", "auto": "resume", "defer": "defer"}
_RESERVED = ("step", "group_size", "rollout_s", "step_s", "groups", "controller")
_MAX_INT = 2**53  # counts (tokens, steps, G) above this are not exact as float64: a corrupt file


# ---- writing ------------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    """A float for JSON: NaN/None become null; 9 significant digits (no 32.663599999999995)."""
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else float(f"{v:.9g}")


def _reward(x: float) -> int | float | None:
    # 0/1 rewards are written as 0/1 (short, and what a reader of the file expects to see)
    if math.isnan(x):
        return None
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def make_record(
    step: int,
    stats: StepStats,
    decision: Any = None,
    observation: Any = None,
    extra: Mapping[str, Any] | None = None,
    group_ids: Sequence[str] | None = None,
    flags: Mapping[str, np.ndarray] | None = None,
    outcomes: Sequence[str] | None = None,
) -> dict:
    """The trace record of one finished step.

    `decision` (sagc.Decision) gives the controller's predicted risk per allowed G;
    `observation` (sagc.Observation) gives the event, the rule's figure and the queue after
    the step (the decision's queue is used when there is no observation). `group_ids` names
    the groups in `stats.group_index` order (default: the ids in `stats.group_id`).
    `extra` adds top-level keys; it may not overwrite the standard ones. Under a tail-control
    policy (sagc.rollout), `flags` gives per-completion booleans in `stats` order (`aborted`: cut
    at the step's end, its length is what it had generated; `resumed`: continued from an earlier
    step) and `outcomes` each group's fate (trained, carried, dropped or deferred).
    """
    gi = stats.group_index
    order = np.argsort(gi, kind="stable")  # completions grouped, original order kept inside a group
    bounds = np.flatnonzero(np.diff(gi[order])) + 1
    chunks = np.split(order, bounds)  # one index array per group, in first-seen order
    if group_ids is not None and len(group_ids) != len(chunks):
        raise ValueError(f"group_ids has {len(group_ids)} entries but the step has {len(chunks)} groups")
    groups = []
    for k, idx in enumerate(chunks):
        gid = group_ids[k] if group_ids is not None else str(int(stats.group_id[idx[0]]))
        group = {
            "id": gid,
            "lengths": stats.length[idx].tolist(),
            "rewards": [_reward(r) for r in stats.reward[idx].tolist()],
            "truncated": stats.truncated[idx].tolist(),
        }
        for name, values in (flags or {}).items():
            group[name] = np.asarray(values, dtype=bool)[idx].tolist()
        if outcomes is not None:
            group["outcome"] = outcomes[k]
        groups.append(group)
    record: dict[str, Any] = {
        "step": int(step),
        "group_size": int(stats.group_size),
        "rollout_s": _num(stats.rollout_s),
        "step_s": _num(stats.step_s),
        "groups": groups,
    }
    if decision is not None or observation is not None:
        queue = observation.queue if observation is not None else decision.queue
        record["controller"] = {
            "event": bool(observation.event) if observation is not None else None,
            "queue": _num(queue),
            "risk": {str(g): _num(p) for g, p in (decision.risk.items() if decision is not None else ())},
            "figure": _num(observation.figure) if observation is not None else None,
        }
        if decision is not None and getattr(decision, "probe", False):
            record["controller"]["probe"] = True  # a time-probe step (SAGC), not the controller's pick
    for key, value in (extra or {}).items():
        if key in _RESERVED:
            raise ValueError(f"extra key {key!r} would overwrite a standard trace field")
        record[key] = value
    return record


def _dumps(record: Mapping[str, Any]) -> str:
    # compact separators: traces are long; allow_nan=False so a NaN can never produce invalid JSON
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


class TraceWriter:
    """Appends one record per line and flushes, so a crash loses at most the step in flight.

    Every record goes out as a single `write(line + "\\n")`, never in pieces.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "a") -> None:
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'a' (append) or 'w' (truncate), got {mode!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, mode, encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        _check_record(record, str(self.path), None)  # never write a line the reader would reject
        self._file.write(_dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_trace(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write a whole trace atomically (temp file in the same folder, then os.replace).

    `records` may be a generator: it is consumed once, streaming to the temp file.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                _check_record(record, str(path), None)
                f.write(_dumps(record) + "\n")
    return Path(path)


# ---- reading ------------------------------------------------------------------------------
def read_trace(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the validated records of a trace, streaming (the file is read once, line by line).

    Blank lines are skipped. A malformed line raises ValueError naming the file, the line
    number and the offending field. Nulls in rewards / rollout_s / step_s become NaN.
    """
    path = Path(path)
    for lineno, record in iter_jsonl(path):
        _check_record(record, str(path), lineno)
        for key in ("rollout_s", "step_s"):
            if record.get(key) is None:
                record[key] = float("nan")
        for g in record["groups"]:
            if "rewards" in g:
                g["rewards"] = [float("nan") if r is None else float(r) for r in g["rewards"]]
        yield record


def record_to_stats(record: Mapping[str, Any]) -> StepStats:
    """The StepStats of one trace record (group ids kept as given, e.g. "p-1734")."""
    nan = float("nan")
    rollout = record.get("rollout_s")
    step = record.get("step_s")
    return StepStats.from_groups(
        record["groups"], group_size=int(record["group_size"]),
        rollout_s=nan if rollout is None else float(rollout), step_s=nan if step is None else float(step),
    )


# ---- validation ---------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and abs(x) < _MAX_INT


def _below(x: Any) -> str:
    return " below 2**53" if isinstance(x, int) and abs(x) >= _MAX_INT else ""


_is_num = is_real  # a real number that fits a float64 (a 400-digit integer does not)


def _check_record(record: Any, file: str, lineno: int | None) -> None:
    where = f"{file}, line {lineno}" if lineno is not None else file
    # reading (a line number): the user's file is bad; writing: the caller's record is (a bug)
    error = InputError if lineno is not None else ValueError

    def bad(field: str, why: str, value: Any) -> ValueError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return error(f"{where}: {field} {why}, got {shown}")

    if not isinstance(record, Mapping):
        raise bad("record", "must be a JSON object", record)
    for key in ("step", "group_size", "groups"):
        if key not in record:
            raise error(f"{where}: missing required field {key!r}")
    if not _is_int(record["step"]) or record["step"] < 0:
        raise bad("step", "must be an integer >= 0" + _below(record["step"]), record["step"])
    if not _is_int(record["group_size"]) or record["group_size"] < 1:
        raise bad("group_size", "must be an integer >= 1" + _below(record["group_size"]), record["group_size"])
    for key in ("rollout_s", "step_s"):
        v = record.get(key)
        if v is not None and not (_is_num(v) and (math.isnan(v) or 0 <= v < math.inf)):
            raise bad(key, "must be a number >= 0 or null" + (" (finite)" if _is_num(v) and v > 0 else ""), v)
    groups = record["groups"]
    if not isinstance(groups, list) or not groups:
        raise bad("groups", "must be a non-empty list", groups)
    for k, g in enumerate(groups):
        name = f"groups[{k}]"
        if not isinstance(g, Mapping):
            raise bad(name, "must be an object", g)
        if "id" in g and not (isinstance(g["id"], str) or _is_int(g["id"])):
            raise bad(f"{name}.id", "must be a string or an integer", g["id"])
        lengths = g.get("lengths")
        if not isinstance(lengths, list) or not lengths:
            raise bad(f"{name}.lengths", "must be a non-empty list", lengths)
        for j, n in enumerate(lengths):
            if not _is_int(n) or n <= 0:
                raise bad(f"{name}.lengths[{j}]", "must be a positive integer" + _below(n), n)
        if "outcome" in g and g["outcome"] not in OUTCOMES:
            raise bad(f"{name}.outcome", f"must be one of {list(OUTCOMES)}", g["outcome"])
        for key, ok, what in (("rewards", lambda r: r is None or (_is_num(r) and math.isfinite(r)), "a finite number or null"),
                              ("truncated", lambda b: isinstance(b, bool), "true or false"),
                              ("aborted", lambda b: isinstance(b, bool), "true or false"),
                              ("resumed", lambda b: isinstance(b, bool), "true or false")):
            if key not in g:
                continue
            vals = g[key]
            if not isinstance(vals, list) or len(vals) != len(lengths):
                raise bad(f"{name}.{key}", f"must be a list of {len(lengths)} entries (one per length)", vals)
            for j, v in enumerate(vals):
                if not ok(v):
                    raise bad(f"{name}.{key}[{j}]", f"must be {what}", v)
    if record.get("tail") is not None:
        _check_tail(record["tail"], [n for g in groups for n in g["lengths"]], bad)
    ctrl = record.get("controller")
    if ctrl is None:
        return
    if not isinstance(ctrl, Mapping):
        raise bad("controller", "must be an object", ctrl)
    if ctrl.get("event") is not None and not isinstance(ctrl["event"], bool):
        raise bad("controller.event", "must be true, false or null", ctrl["event"])
    for key in ("queue", "figure"):
        v = ctrl.get(key)
        if v is not None and not (_is_num(v) and math.isfinite(v)):
            raise bad(f"controller.{key}", "must be a finite number or null", v)
    if ctrl.get("probe") is not None and not isinstance(ctrl["probe"], bool):
        raise bad("controller.probe", "must be true or false", ctrl["probe"])
    risk = ctrl.get("risk", {})
    if not isinstance(risk, Mapping):
        raise bad("controller.risk", "must be an object mapping group size to probability", risk)
    for g, p in risk.items():
        if not (isinstance(g, str) and g.isdigit()):
            raise bad("controller.risk", "keys must be group sizes written as strings", g)
        if p is not None and not (_is_num(p) and 0.0 <= p <= 1.0):
            raise bad(f"controller.risk[{g!r}]", "must be a probability in [0, 1] or null", p)


def _is_flag(x: Any) -> bool:
    # 0/1 as the format shows them; true/false too (a writer that dumps numpy bools gives those)
    return isinstance(x, bool) or (isinstance(x, int) and x in (0, 1))


def _check_tail(tail: Any, lengths: list, bad: Any) -> None:
    """The optional `tail` object of a step run under a tail-control policy.

    `policy` is required (a tail with no policy says nothing); every other key is optional, checked
    when present, and unknown keys are allowed (as at the top level). Per-row lists have one entry
    per completion of `groups` (those are the trained rows: cancelled ones live in aborted_*)."""
    n = len(lengths)
    if not isinstance(tail, Mapping):
        raise bad("tail", "must be an object", tail)
    if "policy" not in tail:
        raise bad("tail", "must name its policy (tail.policy)", tail)
    policy = tail["policy"]
    if policy not in POLICIES:
        raise bad("tail.policy", f"must be one of {list(POLICIES)}", policy)
    kind = tail.get("kind")
    if kind is not None and kind not in TAIL_KINDS:
        raise bad("tail.kind", f"must be one of {list(TAIL_KINDS)}", kind)
    rate = tail.get("rate")
    if rate is not None and not (_is_num(rate) and 1.0 <= rate < math.inf):
        raise bad("tail.rate", "must be a finite number >= 1 (groups in flight per trained group)", rate)
    share = tail.get("on_policy_share")
    if share is not None and not (_is_num(share) and 0.0 <= share <= 1.0):
        raise bad("tail.on_policy_share", "must be a number in [0, 1] or null", share)
    for key in ("queue", "carried"):
        v = tail.get(key)
        if v is not None and not (_is_int(v) and v >= 0):
            raise bad(f"tail.{key}", "must be an integer >= 0" + _below(v), v)
    per_row = (("resumed", _is_flag, "0 or 1"), ("deferred", _is_flag, "0 or 1"),
               ("stale_tokens", lambda v: _is_int(v) and v >= 0, "an integer >= 0"))
    for key, ok, what in per_row:
        if key not in tail:
            continue
        vals = tail[key]
        if not isinstance(vals, list) or len(vals) != n:
            raise bad(f"tail.{key}", f"must be a list of {n} entries (one per completion in groups)", vals)
        for j, v in enumerate(vals):
            if not ok(v):
                raise bad(f"tail.{key}[{j}]", f"must be {what}" + _below(v), v)
    for j, (s, n_j) in enumerate(zip(tail.get("stale_tokens") or (), lengths)):
        if s > n_j:
            raise bad(f"tail.stale_tokens[{j}]", f"must be <= the completion's length {n_j}", s)
    for j, (r, d) in enumerate(zip(tail.get("resumed") or (), tail.get("deferred") or ())):
        if r and d:  # a deferred prompt is re-run from scratch: nothing of it is resumed
            raise bad(f"tail.resumed[{j}]", f"and tail.deferred[{j}] cannot both be 1", r)
    cut = tail.get("aborted_lengths")
    fate = tail.get("aborted_fate")
    if cut is None and fate is None:
        return
    if not isinstance(cut, list):
        raise bad("tail.aborted_lengths", "must be a list (tokens each cancelled completion held)", cut)
    for j, v in enumerate(cut):
        if not (_is_int(v) and v >= 0):
            raise bad(f"tail.aborted_lengths[{j}]", "must be an integer >= 0" + _below(v), v)
    if not isinstance(fate, list) or len(fate) != len(cut):
        raise bad("tail.aborted_fate", f"must be a list of {len(cut)} entries (one per aborted_lengths entry)", fate)
    if cut and (kind in ("full", "long") or policy == "full"):
        # a full step and a long round run every completion to its end: nothing is cancelled
        raise bad("tail.aborted_lengths", f"must be empty in a {kind or policy} step", cut)
    for j, v in enumerate(fate):
        if v not in FATES:
            raise bad(f"tail.aborted_fate[{j}]", f"must be one of {list(FATES)}", v)
        if v != _FATE_OF[policy]:
            raise bad(f"tail.aborted_fate[{j}]", f"must be {_FATE_OF[policy]!r} under policy {policy!r}", v)


def tail_flags(record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The `tail` of a validated record as arrays, or None when it has none.

    Keys: resumed, deferred (n,) bool and stale_tokens (n,) int64, one per completion of
    `groups` in order (zeros where the list is absent); aborted_lengths (k,) int64 and
    aborted_fate (k,) str, one per cancelled completion."""
    tail = record.get("tail")
    if tail is None:
        return None
    n = sum(len(g["lengths"]) for g in record["groups"])
    out = {key: np.asarray(tail[key], dtype=dt).reshape(n) if key in tail else np.zeros(n, dtype=dt)
           for key, dt in (("resumed", bool), ("deferred", bool), ("stale_tokens", np.int64))}
    out["aborted_lengths"] = np.asarray(tail.get("aborted_lengths") or [], dtype=np.int64)
    out["aborted_fate"] = np.asarray(tail.get("aborted_fate") or [], dtype=str)
    return out


__all__ = ["TraceWriter", "make_record", "read_trace", "record_to_stats", "write_trace", "atomic_path", "tail_flags",
           "FATES", "TAIL_KINDS"]
