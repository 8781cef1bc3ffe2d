"""What a controller sees of one optimizer step: `StepStats` (design section 2).

Everything is a flat, ragged array over the step's completions; groups are identified by ids,
never by reshaping with a fixed G, so groups of unequal size (dropped completions, dynamic
sampling refills) work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Mapping, Sequence

import numpy as np


_MAX_COUNT = 2**53  # token counts and ids above this are not exact in float64 (and 2**63 wraps int64)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _as_1d(name: str, value: Any, dtype: Any) -> np.ndarray:
    """A 1-D copy as `dtype`; strings (and bools for numbers) are refused, not converted."""
    boolean = np.dtype(dtype).kind == "b"
    what = "true/false (or 0/1)" if boolean else "numbers"
    try:
        raw = np.asarray(value)
        if raw.dtype.kind == "O":  # a list mixing types: every entry must be a number (None: NaN reward)
            ok = (lambda v: isinstance(v, (bool, np.bool_)) or (_is_real(v) and v in (0, 1))) if boolean \
                else (lambda v: _is_real(v) or (v is None and name == "reward"))
            bad = next((v for v in raw.ravel() if not ok(v)), _NONE)
        elif raw.dtype.kind in "USV" or (raw.dtype.kind == "b" and not boolean):
            bad = raw.tolist()
        else:
            bad = _NONE
        if bad is _NONE:
            arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"StepStats.{name} must be a 1-D array of {what} ({exc})") from None
    if bad is not _NONE:
        shown = repr(bad.item() if isinstance(bad, np.generic) else bad)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ValueError(f"StepStats.{name} must be a 1-D array of {what}, got {shown}")
    if arr.ndim != 1:
        raise ValueError(f"StepStats.{name} must be 1-D (one entry per completion), got shape {arr.shape}")
    if boolean and raw.dtype.kind in "iuf" and not np.all((raw == 0) | (raw == 1)):
        raise ValueError(f"StepStats.{name} must hold true/false (or 0/1), got other numbers")
    return arr


_NONE = object()


def _scalar(name: str, value: Any, integer: bool) -> float:
    """A real number (not a string or bool): finite whole >= 1 for `integer`, else seconds >= 0 or NaN."""
    if value is None and not integer:
        return float("nan")  # an unknown time
    ok = _is_real(value)
    try:
        v = float(value) if ok else math.nan
    except OverflowError:
        ok, v = False, math.nan
    if integer:
        if not ok or not math.isfinite(v) or v != int(v) or v < 1 or v >= _MAX_COUNT:
            raise ValueError(f"StepStats.{name} must be an integer >= 1 (below 2**53), got {value!r}")
    elif not ok or v < 0 or v == math.inf:
        raise ValueError(f"StepStats.{name} must be a finite number >= 0 seconds (or NaN if unknown), got {value!r}")
    return v


@dataclass(frozen=True)
class StepStats:
    """Statistics of one synchronous optimizer step, one entry per completion.

    Arrays are copied on construction, so the caller's buffers are never mutated or aliased.
    """

    group_id: np.ndarray  # (n,) int   which prompt/group each completion belongs to
    length: np.ndarray  # (n,) int   completion tokens, > 0
    reward: np.ndarray  # (n,) float NaN = missing reward (allowed)
    truncated: np.ndarray  # (n,) bool  hit the completion-length cap
    group_size: int  # the G that was asked for (= num_generations in TRL)
    rollout_s: float = float("nan")  # wall seconds of the rollout phase
    step_s: float = float("nan")  # wall seconds of the whole step
    duration_s: np.ndarray | None = None  # (n,) float per-completion generation seconds, optional
    _groups: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        gid = None
        if not _is_str_ids(self.group_id):
            raw_ids = _as_1d("group_id", self.group_id, np.float64)
            if not np.all(np.isfinite(raw_ids)) or np.any(raw_ids != np.round(raw_ids)):
                raise ValueError("StepStats.group_id must hold integer (or string) ids, got non-integers")
            if np.any(np.abs(raw_ids) >= _MAX_COUNT):  # not exact in float64; 2**63 would wrap int64
                raise ValueError("StepStats.group_id must hold integer ids below 2**53 (or string ids)")
            gid = raw_ids.astype(np.int64)
        if gid is None:  # string ids (e.g. "p-1734") are mapped to dense ints in first-seen order
            raw = list(self.group_id)
            index: dict[Any, int] = {}
            gid = np.asarray([index.setdefault(g, len(index)) for g in raw], dtype=np.int64)
        length = _as_1d("length", self.length, np.float64)
        n = length.shape[0]
        if n == 0:
            raise ValueError("StepStats.length is empty: a step needs at least one completion")
        reward = _as_1d("reward", self.reward, np.float64)
        truncated = _as_1d("truncated", self.truncated, bool)
        for name, arr in (("group_id", gid), ("reward", reward), ("truncated", truncated)):
            if arr.shape[0] != n:
                raise ValueError(
                    f"StepStats.{name} has {arr.shape[0]} entries but length has {n}: "
                    "every array needs one entry per completion"
                )
        if not np.all(np.isfinite(length)):
            raise ValueError("StepStats.length must be finite (no NaN/inf token counts)")
        if np.any(length <= 0):
            bad = int(np.flatnonzero(length <= 0)[0])
            raise ValueError(f"StepStats.length must be > 0 tokens, got {length[bad]:g} at index {bad}")
        if np.any(length != np.round(length)):
            raise ValueError("StepStats.length must hold whole token counts")
        if np.any(length >= _MAX_COUNT):  # 2**63 would wrap negative as int64
            bad = int(np.flatnonzero(length >= _MAX_COUNT)[0])
            raise ValueError(f"StepStats.length must be below 2**53 tokens, got {length[bad]:g} at index {bad}")
        if np.any(np.isinf(reward)):
            raise ValueError("StepStats.reward must not be +/-inf (use NaN for a missing reward)")
        group_size = int(_scalar("group_size", self.group_size, integer=True))
        dur = None
        if self.duration_s is not None:
            dur = _as_1d("duration_s", self.duration_s, np.float64)
            if dur.shape[0] != n:
                raise ValueError(f"StepStats.duration_s has {dur.shape[0]} entries but length has {n}")
            if np.any(dur < 0):
                raise ValueError("StepStats.duration_s must be >= 0 seconds")
        for name in ("rollout_s", "step_s"):
            object.__setattr__(self, name, _scalar(name, getattr(self, name), integer=False))
        # Dense group index 0..k-1 in first-seen order; groups must be contiguous or not is irrelevant.
        _, first, inverse = np.unique(gid, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # rank of each unique id by first appearance
        dense = order[inverse]
        object.__setattr__(self, "group_id", gid.copy())
        object.__setattr__(self, "length", length.astype(np.int64))
        object.__setattr__(self, "reward", reward.copy())
        object.__setattr__(self, "truncated", truncated.copy())
        object.__setattr__(self, "group_size", group_size)
        object.__setattr__(self, "duration_s", dur.copy() if dur is not None else None)
        object.__setattr__(self, "_groups", (dense, int(dense.max()) + 1))

    # ---- derived views -------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.length.shape[0])

    @property
    def group_index(self) -> np.ndarray:  # (n,) int dense group index 0..num_groups-1
        return self._groups[0]

    @property
    def num_groups(self) -> int:  # = B, prompts in the step
        return self._groups[1]

    def group_counts(self) -> np.ndarray:  # (num_groups,) completions per group
        return np.bincount(self.group_index, minlength=self.num_groups)

    def group_pass_counts(self, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Per group: (successes, scored) counting reward > threshold, ignoring NaN rewards."""
        ok = np.isfinite(self.reward)
        succ = np.bincount(self.group_index, weights=(ok & (np.nan_to_num(self.reward) > threshold)),
                           minlength=self.num_groups)
        scored = np.bincount(self.group_index, weights=ok, minlength=self.num_groups)
        return succ, scored

    def informative_groups(self) -> int:
        """Groups whose (non-missing) rewards are not all equal: they carry GRPO signal."""
        count = 0
        gi = self.group_index
        order = np.argsort(gi, kind="stable")
        bounds = np.flatnonzero(np.diff(gi[order])) + 1
        for chunk in np.split(self.reward[order], bounds):
            r = chunk[np.isfinite(chunk)]
            if r.size >= 2 and np.ptp(r) > 0:
                count += 1
        return count

    # ---- constructors ------------------------------------------------------------------
    @classmethod
    def from_groups(
        cls,
        groups: Sequence[Mapping[str, Any]],
        group_size: int | None = None,
        rollout_s: float = float("nan"),
        step_s: float = float("nan"),
    ) -> "StepStats":
        """Build from a list of {"id", "lengths", "rewards", "truncated"} dicts (trace format)."""
        gid: list[Any] = []
        length: list[float] = []
        reward: list[float] = []
        trunc: list[bool] = []
        for k, g in enumerate(groups):
            lens = list(g["lengths"])
            rew = g.get("rewards")
            rew = [float("nan") if r is None else float(r) for r in rew] if rew is not None else [float("nan")] * len(lens)
            tr = g.get("truncated") or [False] * len(lens)
            if len(rew) != len(lens) or len(tr) != len(lens):
                raise ValueError(f"group {g.get('id', k)!r}: lengths, rewards and truncated differ in size")
            gid += [str(g.get("id", k))] * len(lens)
            length += lens
            reward += rew
            trunc += [bool(t) for t in tr]
        if group_size is None:
            group_size = max((len(g["lengths"]) for g in groups), default=1)
        return cls(group_id=np.asarray(gid, dtype=object), length=length, reward=reward, truncated=trunc,
                    group_size=group_size, rollout_s=rollout_s, step_s=step_s)


def _is_str_ids(value: Any) -> bool:
    arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    if arr.dtype.kind in "iub":
        return False
    if arr.dtype.kind == "f":
        return False
    return arr.size > 0 and any(isinstance(v, str) for v in arr.ravel()[:1])
