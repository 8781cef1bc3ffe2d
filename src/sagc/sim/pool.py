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
from sagc.trace import FATES, read_trace, tail_flags


def finished_groups(record: dict) -> list[dict]:
    """A trace record's groups with only the completions that ran to their end: a completion cut
    by a tail-control policy (`aborted`) holds the tokens it had so far, not a length. Groups
    left empty are skipped. A record with a `tail` field (the TRL trainer's form) lists trained
    rows only, each at its natural length (a resumed one at its full length); its cancelled
    completions are counts in `tail.aborted_lengths`, never rows, so they are neither replayed
    nor counted twice when a resumed one comes back as a trained row."""
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


def step_work(record: dict) -> np.ndarray:
    """(n,) tokens each completion generated during the recorded step, in submission order (what
    the engine ran, for calibration). A plain record: every length. A `tail` record: the trained
    rows' tokens of this step's version (length - stale_tokens; rows already done before the step
    ran nothing), resumed rows first as they were submitted, then the cancelled completions' tokens.
    A cancelled completion that was itself resumed counts its older tokens too (the record does
    not split them): at most one version old under the default max_staleness of 1, so rare."""
    lengths = np.concatenate([np.asarray(g["lengths"], dtype=np.int64) for g in record["groups"]])
    flags = tail_flags(record)
    if flags is None:
        return lengths
    new = lengths - flags["stale_tokens"]
    order = np.argsort(~flags["resumed"], kind="stable")  # resumed rows first, recorded order kept
    ran = np.concatenate([new[order], flags["aborted_lengths"]])
    return ran[ran > 0]


def tail_summary(records: list[dict]) -> dict | None:
    """What a tail-control policy did in recorded steps (None when no record says): completions
    trained, resumed, re-run after a deferral, and cancelled by fate. Reads the `tail` field and
    the simulator's per-group `aborted` / `resumed` / `outcome` flags alike.

    Cancelled completions with fate `resume` come back as trained rows (counted there, once);
    those dropped or deferred never finish: `censored` counts them and `censored_mean_tokens` is
    the mean of their lower bounds, beside `trained_mean_length`, to show how short the replayed
    sample is biased."""
    fate_of = {"carried": "resume", "dropped": "drop", "deferred": "defer"}  # simulator outcome -> fate
    policies: set[str] = set()
    n_rec = trained = resumed = deferred = tokens = stale = 0
    by_fate = dict.fromkeys(FATES, 0)
    censored_tokens: list[int] = []
    last = None
    for rec in records:
        flags = tail_flags(rec)
        marked = any("aborted" in g or "outcome" in g for g in rec["groups"])
        if flags is None and not marked:
            continue
        n_rec += 1
        if flags is not None:
            last = rec["tail"]
            policies.add(rec["tail"]["policy"])
            lengths = [n for g in rec["groups"] for n in g["lengths"]]
            trained += len(lengths)
            tokens += sum(lengths)
            resumed += int(flags["resumed"].sum())
            deferred += int(flags["deferred"].sum())
            stale += int(flags["stale_tokens"].sum())
            for n, fate in zip(flags["aborted_lengths"].tolist(), flags["aborted_fate"].tolist()):
                by_fate[fate] += 1
                if fate != "resume":
                    censored_tokens.append(n)
            continue
        for g in rec["groups"]:  # the simulator's form: cut rows are listed, with their group's fate
            k = len(g["lengths"])
            cut = g.get("aborted") or [False] * k
            res = g.get("resumed") or [False] * k
            for n, a, r in zip(g["lengths"], cut, res):
                if a:
                    fate = fate_of.get(g.get("outcome"), "resume")
                    by_fate[fate] += 1
                    if fate != "resume":
                        censored_tokens.append(n)
                elif g.get("outcome", "trained") in ("trained", "carried"):  # carried: trained later
                    trained += 1
                    tokens += n
                    resumed += int(r)
    if n_rec == 0:
        return None
    return {"records": n_rec, "policies": sorted(policies), "trained": trained, "resumed": resumed,
            "deferred_reruns": deferred, "aborted": sum(by_fate.values()), "aborted_by_fate": by_fate,
            "censored": len(censored_tokens),
            "censored_mean_tokens": float(np.mean(censored_tokens)) if censored_tokens else None,
            "trained_mean_length": tokens / trained if trained else None,
            "stale_share": stale / tokens if tokens and last is not None else None,
            "pending_groups_at_end": int(last.get("carried") or 0) if last is not None else None,
            "queued_prompts_at_end": int(last.get("queue") or 0) if last is not None else None}


__all__ = ["recorded_pool", "finished_groups", "step_work", "tail_summary"]
