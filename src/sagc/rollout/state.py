"""Validation of a saved rollout policy's state (`RolloutPolicy.load_state_dict`).

A resumed run must get back exactly the groups it carried and the prompts it deferred, or refuse
the state with the key that is wrong; a half-valid state would silently train a prompt twice or
lose it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

_GROUPS = ("key", "prompt", "size", "drawn", "attempt", "deferred", "pinned")
_ROWS = ("group", "index", "tokens", "done", "first")
_TOP = ("settings", "next_key", "carried", "carried_rows", "carried_seg", "deferred", "chooser")


def _fail(path: str, why: str) -> ValueError:
    return ValueError(f"rollout state: {path} {why}")


def _table(value: Any, path: str, fields: tuple[str, ...]) -> int:
    if not isinstance(value, Mapping) or sorted(value) != sorted(fields):
        got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
        raise _fail(path, f"must be a mapping with keys {sorted(fields)}, got {got}")
    sizes = set()
    for k in fields:
        v = value[k]
        if not isinstance(v, list) or not all(isinstance(x, (int, bool)) for x in v):
            raise _fail(f"{path}.{k}", "must be a list of integers")
        sizes.add(len(v))
    if len(sizes) > 1:
        raise _fail(path, f"has columns of different lengths {sorted(sizes)}")
    return sizes.pop()


def check_state(state: Any, settings: Any, k: int) -> None:
    if not isinstance(state, Mapping):
        raise _fail("", f"must be a mapping, got {type(state).__name__}")
    missing, unknown = sorted(set(_TOP) - set(state)), sorted(set(state) - set(_TOP))
    if missing or unknown:
        raise _fail("", f"has missing keys {missing} and unknown keys {unknown}")
    saved = state["settings"]
    if isinstance(saved, Mapping) and "credit" not in saved:  # saved before `credit` existed: per-step credit
        saved = {**saved, "credit": "step"}
    if saved != settings.to_dict():
        raise _fail("settings", f"were {state['settings']}, but this policy has {settings.to_dict()}; "
                                "resume with the settings the run was saved with")
    if not isinstance(state["next_key"], int) or state["next_key"] < 0:
        raise _fail("next_key", f"must be an integer >= 0, got {state['next_key']!r}")
    m = _table(state["carried"], "carried", _GROUPS)
    n = _table(state["carried_rows"], "carried_rows", _ROWS)
    _table(state["deferred"], "deferred", _GROUPS)
    seg = state["carried_seg"]
    if not isinstance(seg, list) or len(seg) != n or not all(isinstance(r, list) and len(r) == k for r in seg):
        raise _fail("carried_seg", f"must be {n} lists of {k} token counts")
    group = np.asarray(state["carried_rows"]["group"], dtype=np.int64)
    if n and (group.min() < 0 or group.max() >= m):
        raise _fail("carried_rows.group", f"must index the {m} carried groups")
    sizes = np.bincount(group, minlength=m) if m else np.zeros(0)
    if m and not np.array_equal(sizes, np.asarray(state["carried"]["size"])):
        raise _fail("carried_rows", "do not hold every carried group's completions")
    tokens = np.asarray(state["carried_rows"]["tokens"], dtype=np.int64)
    if n and not np.array_equal(np.asarray(seg, dtype=np.int64).sum(axis=1), tokens):
        raise _fail("carried_seg", "does not add up to carried_rows.tokens")
    chooser = state["chooser"]
    if (settings.policy == "auto") != isinstance(chooser, Mapping):
        raise _fail("chooser", "must be a mapping for policy auto and null otherwise")
    if isinstance(chooser, Mapping):
        grid = {repr(float(r)) for r in settings.over_sample_grid}
        old = ["current", "explored", "history", "in_block", "last_tried", "steps"]
        keys = sorted(old + ["made", "open", "pending"])
        if sorted(chooser) not in (old, keys) or set(chooser["history"]) != grid or set(chooser["last_tried"]) != grid:
            raise _fail("chooser", f"must hold history and last_tried for the rates {sorted(grid)}, and "
                                   "current, explored, in_block, steps, made, open and pending")
        _check_credit(chooser, grid)


def _check_credit(chooser: Mapping[str, Any], grid: set) -> None:
    """auto's credit state: records [signal, seconds, share, step, G], the rate (and G) of each
    step whose groups may be in flight, the steps still carried, and the last closed step's parts."""
    for k, recs in chooser["history"].items():
        if not isinstance(recs, list) or not all(isinstance(x, list) and len(x) in (3, 4, 5)
                                                 and all(isinstance(v, (int, float)) for v in x) for x in recs):
            raise _fail(f"chooser.history[{k}]", "must be a list of [signal, seconds, share, step, G] records")
    made = chooser.get("made", [])
    if not isinstance(made, list) or not all(isinstance(x, list) and len(x) in (2, 3) and isinstance(x[0], int)
                                             and repr(float(x[1])) in grid and all(isinstance(v, int) for v in x[2:])
                                             for x in made):
        raise _fail("chooser.made", "must be a list of [step, rate, G] rows with rates of the grid")
    open_steps = chooser.get("open", [])
    if not isinstance(open_steps, list) or not all(isinstance(x, int) for x in open_steps):
        raise _fail("chooser.open", "must be a list of steps")
    pending = chooser.get("pending")
    if pending is not None and (not isinstance(pending, list) or not all(
            isinstance(x, list) and len(x) == 4 and all(isinstance(v, (int, float)) for v in x) for x in pending)):
        raise _fail("chooser.pending", "must be null or a list of [step, drawn, tokens, weight] rows")
