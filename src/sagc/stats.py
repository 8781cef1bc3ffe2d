"""What a controller sees of one optimizer step: `StepStats` (design section 2).

Everything is a flat, ragged array over the step's completions; groups are identified by ids,
never by reshaping with a fixed G, so groups of unequal size (dropped completions, dynamic
sampling refills) work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np


def _as_1d(name: str, value: Any, dtype: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"StepStats.{name} must be a 1-D array of {np.dtype(dtype).name}: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"StepStats.{name} must be 1-D (one entry per completion), got shape {arr.shape}")
    return arr


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
        if np.any(np.isinf(reward)):
            raise ValueError("StepStats.reward must not be +/-inf (use NaN for a missing reward)")
        if int(self.group_size) != self.group_size or int(self.group_size) < 1:
            raise ValueError(f"StepStats.group_size must be an integer >= 1, got {self.group_size!r}")
        dur = None
        if self.duration_s is not None:
            dur = _as_1d("duration_s", self.duration_s, np.float64)
            if dur.shape[0] != n:
                raise ValueError(f"StepStats.duration_s has {dur.shape[0]} entries but length has {n}")
            if np.any(dur < 0):
                raise ValueError("StepStats.duration_s must be >= 0 seconds")
        for name in ("rollout_s", "step_s"):
            v = float(getattr(self, name))
            if v < 0:
                raise ValueError(f"StepStats.{name} must be >= 0 seconds (or NaN if unknown), got {v}")
            object.__setattr__(self, name, v)
        # Dense group index 0..k-1 in first-seen order; groups must be contiguous or not is irrelevant.
        _, first, inverse = np.unique(gid, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # rank of each unique id by first appearance
        dense = order[inverse]
        object.__setattr__(self, "group_id", gid.copy())
        object.__setattr__(self, "length", length.astype(np.int64))
        object.__setattr__(self, "reward", reward.copy())
        object.__setattr__(self, "truncated", truncated.copy())
        object.__setattr__(self, "group_size", int(self.group_size))
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
