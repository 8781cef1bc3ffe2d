"""Recorded groups of a rollout trace, flattened for replay (the `trace` length model).

Its own module so that scenario validation (which reads a trace once, to fail early on a bad
line) and the length model both import it, and neither imports the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sagc._io import InputError
from sagc.trace import read_trace


def finished_groups(record: dict) -> list[dict]:
    """A trace record's groups with only the completions that ran to their end: a completion cut
    by a tail-control policy (`aborted`) holds the tokens it had so far, not a length. Groups
    left empty are skipped."""
    out = []
    for g in record["groups"]:
        cut = g.get("aborted")
        if not cut or not any(cut):
            out.append(g)
            continue
        keep = [j for j, a in enumerate(cut) if not a]
        if keep:
            out.append({k: ([v[j] for j in keep] if isinstance(v, list) else v) for k, v in g.items()})
    return out


@dataclass(frozen=True)
class _Pool:
    """Recorded groups of a trace, flattened."""

    offset: np.ndarray  # (K,) start of group k in the flat arrays
    size: np.ndarray  # (K,) completions recorded for group k
    length: np.ndarray  # (N,) int64
    reward: np.ndarray  # (N,) float
    truncated: np.ndarray  # (N,) bool
    has_reward: np.ndarray  # (K,) bool: the group was recorded with rewards


@lru_cache(maxsize=8)
def _load_pool(path: str, mtime_ns: int, size: int) -> _Pool:  # mtime/size: a changed file reloads
    lengths: list[int] = []
    rewards: list[float] = []
    truncs: list[bool] = []
    sizes: list[int] = []
    has: list[bool] = []
    for record in read_trace(path):
        for g in finished_groups(record):
            n = len(g["lengths"])
            lengths += g["lengths"]
            recorded = g.get("rewards") is not None
            rewards += g["rewards"] if recorded else [float("nan")] * n
            truncs += g.get("truncated") or [False] * n
            sizes.append(n)
            has.append(recorded)
    if not sizes:
        raise InputError(f"{path}: the trace holds no steps to replay")
    size_arr = np.asarray(sizes, dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(size_arr)[:-1]]).astype(np.int64)
    return _Pool(offset=offset, size=size_arr, length=np.asarray(lengths, dtype=np.int64),
                 reward=np.asarray(rewards, dtype=np.float64), truncated=np.asarray(truncs, dtype=bool),
                 has_reward=np.asarray(has, dtype=bool))


def recorded_pool(path: str) -> _Pool:
    st = os.stat(path)
    return _load_pool(str(path), st.st_mtime_ns, st.st_size)


__all__ = ["recorded_pool", "finished_groups"]
