"""DAPO dynamic sampling for TRL: drop groups whose rewards are all equal and refill the step.

A group whose rewards are all equal has zero advantage for every completion, so it adds no
policy gradient (DAPO, arXiv 2503.14476, section 3.2). TRL's GRPOTrainer has no dynamic
sampling (trl#3708), so SAGCGRPOTrainer adds it around TRL's own scoring method:

1. score the step's prompts as usual (one call of TRL's `_generate_and_score_completions`);
2. every process keeps its informative groups, in order; if some process holds fewer than its
   share of prompts, every process generates `shortage` more prompts (the largest shortage over
   processes, so all processes run the same collectives with the same shapes) drawn from a
   deterministic refill stream over the training set, and scores them the same way;
3. repeat at most `max_refill_rounds` times; a process still short after the bound fills its
   share with dropped groups whose loss mask is zeroed ("padded" groups: zero advantage and no
   tokens, so they add nothing to the loss and shapes stay equal across processes);
4. the kept rows of all calls are concatenated, re-padded to a common width.

Each call computes advantages over its own complete groups, so per-group advantages are exact.
(With scale_rewards="batch" the batch std is that of the call the group came from.)
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# How each key of TRL's scored batch is re-padded when rows of several calls are joined.
_LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}  # prompts are left-padded
_RIGHT_PADDED = {"completion_ids": "pad", "completion_mask": 0, "tool_mask": 1, "old_per_token_logps": 0.0,
                 "ref_per_token_logps": 0.0, "sampling_per_token_logps": 0.0, "importance_sampling_ratio": 0.0,
                 "advantages": 0.0}
_RECOMPUTED = {"num_items_in_batch"}


def informative_groups(reward: np.ndarray, group_size: int, rtol: float = 1e-6) -> np.ndarray:
    """(num_groups,) bool: the group's finite rewards are not all equal.

    `reward` is (n,) with n a multiple of group_size, groups contiguous. NaN (unscorable)
    rewards are ignored; a group needs two finite rewards that differ by more than
    rtol * max(1, |reward|) (float noise of continuous rewards must not count as signal).
    """
    r = np.asarray(reward, dtype=np.float64).reshape(-1, group_size)  # (groups, G)
    finite = np.isfinite(r)
    hi = np.where(finite, r, -np.inf).max(axis=1)
    lo = np.where(finite, r, np.inf).min(axis=1)
    scale = np.maximum(1.0, np.maximum(np.abs(np.where(np.isfinite(hi), hi, 0)),
                                       np.abs(np.where(np.isfinite(lo), lo, 0))))
    spread = np.where(finite.sum(axis=1) >= 2, hi - lo, 0.0)
    return spread > rtol * scale


def select_groups(informative: Sequence[np.ndarray], need: int, rank: int) -> tuple[list[tuple[int, int, bool]], int]:
    """Pick `need` groups for process `rank` from the calls scored so far.

    informative[c] is (processes, groups_per_process) bool for call c (identical on every
    process, since rewards are gathered). Returns the picks of `rank` as (call, local group,
    padded) in generation order, and the largest shortage of informative groups over all
    processes (0 when everyone is full).
    """
    procs = informative[0].shape[0]
    shortage = 0
    picks: list[tuple[int, int, bool]] = []
    for p in range(procs):
        kept = [(c, j) for c, inf in enumerate(informative) for j in np.flatnonzero(inf[p])]
        shortage = max(shortage, need - len(kept))
        if p == rank:
            picks = [(c, int(j), False) for c, j in kept[:need]]
            if len(picks) < need:  # still short after the bound: pad with dropped groups
                dropped = [(c, int(j)) for c, inf in enumerate(informative) for j in np.flatnonzero(~inf[p])]
                picks += [(c, j, True) for c, j in dropped[:need - len(picks)]]
    return picks, max(shortage, 0)


class PromptStream:
    """Deterministic refill prompts: an endless sequence of dataset indices, reshuffled each pass.

    Pass k is a permutation drawn from a generator seeded by (seed, k); the state is three
    integers, so it is saved with a checkpoint and a resumed run draws the same prompts.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError("dynamic sampling needs a non-empty train_dataset to refill from")
        self.size = int(size)
        self._state = {"seed": int(seed), "pass": 0, "cursor": 0}
        self._perm: np.ndarray | None = None  # (size,) permutation of the current pass

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        st = self._state
        while len(out) < count:
            if self._perm is None:
                rng = np.random.default_rng([st["seed"], st["pass"]])
                self._perm = rng.permutation(self.size)
            k = min(count - len(out), self.size - st["cursor"])
            out += self._perm[st["cursor"]:st["cursor"] + k].tolist()
            st["cursor"] += k
            if st["cursor"] == self.size:
                st["pass"], st["cursor"], self._perm = st["pass"] + 1, 0, None
        return out

    def peek(self, count: int) -> list[int]:
        """The next `count` indices, without moving the stream (take(count) would return them)."""
        saved, perm = dict(self._state), self._perm
        try:
            return self.take(count)
        finally:
            self._state, self._perm = saved, perm

    def state_dict(self) -> dict:
        return dict(self._state, size=self.size)

    def load_state_dict(self, state: dict) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"refill stream state is for a dataset of {state['size']} rows, this one has {self.size}")
        self._state = {k: int(state[k]) for k in ("seed", "pass", "cursor")}
        self._perm = None


def join_groups(outputs: Sequence[dict[str, Any]], picks: Sequence[tuple[int, int, bool]], group_size: int,
                pad_token_id: int, gather_sum: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
    """The scored batch made of the picked groups (rows of several TRL calls), re-padded.

    Padded picks get a zero completion mask. `num_items_in_batch` (tokens in the loss over all
    processes, at least 1) is recomputed with `gather_sum`, a collective every process must call.
    """
    first = outputs[0]
    if len(outputs) == 1 and not any(p for _, _, p in picks) and \
            [(c, j) for c, j, _ in picks] == [(0, j) for j in range(first["advantages"].shape[0] // group_size)]:
        return first  # nothing dropped: TRL's batch unchanged
    unknown = sorted(k for k in first if k not in _LEFT_PADDED and k not in _RIGHT_PADDED and k not in _RECOMPUTED)
    if unknown:
        raise ValueError(f"dynamic sampling cannot join scored batches with key(s) {unknown} (vision or "
                         "multimodal inputs are not supported with dynamic_sampling=True)")
    rows_by_call: dict[int, list[int]] = {}
    order: list[tuple[int, int]] = []  # (call, position in that call's selected rows), final row order
    for c, j, _ in picks:
        rows = rows_by_call.setdefault(c, [])
        order += [(c, len(rows) + i) for i in range(group_size)]
        rows += range(j * group_size, (j + 1) * group_size)
    calls = sorted(rows_by_call)
    index = {c: torch.tensor(rows_by_call[c], dtype=torch.long, device=first["advantages"].device) for c in calls}
    # position of each final row in the concatenation of the per-call selections
    offsets = {c: sum(len(rows_by_call[d]) for d in calls[:i]) for i, c in enumerate(calls)}
    perm = torch.tensor([offsets[c] + i for c, i in order], dtype=torch.long, device=first["advantages"].device)

    out: dict[str, Any] = {}
    for key in first:
        if key in _RECOMPUTED:
            continue
        parts = [outputs[c][key].index_select(0, index[c]) for c in calls]
        if parts[0].dim() == 2:
            width = max(p.shape[1] for p in parts)
            left = key in _LEFT_PADDED
            fill = (_LEFT_PADDED if left else _RIGHT_PADDED)[key]
            fill = pad_token_id if fill == "pad" else fill
            parts = [F.pad(p, (width - p.shape[1], 0) if left else (0, width - p.shape[1]), value=fill) for p in parts]
        out[key] = torch.cat(parts, dim=0).index_select(0, perm)
    padded_rows = [r for k, (_, _, pad) in enumerate(picks) if pad for r in range(k * group_size, (k + 1) * group_size)]
    if padded_rows:
        out["completion_mask"] = out["completion_mask"].clone()
        out["completion_mask"][torch.tensor(padded_rows, dtype=torch.long, device=out["completion_mask"].device)] = 0
    mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
    # at least 1: a step of padded groups only has no tokens, and token-normalised losses divide by this
    out["num_items_in_batch"] = gather_sum(mask.sum()).clamp(min=1)
    return out


def dynamic_fill(trainer: Any, output: dict[str, Any], rnd: Any, b_local: int) -> dict[str, Any]:
    """Steps 2-4 of the module docstring for SAGCGRPOTrainer: refill until every process holds
    `b_local` informative groups (or the refill bound), then join. Records the counters in
    `rnd.dynamic` and sagc's own time (not TRL's scoring of refills) in `rnd.overhead_s`."""
    start, scoring = time.perf_counter(), 0.0
    acc = trainer.accelerator
    g, procs, rank = rnd.group_size, acc.num_processes, acc.process_index
    outputs = [output]
    informative = [informative_groups(rnd.rewards[-1], g).reshape(procs, -1)]  # (procs, groups/proc)
    refills = 0
    while True:
        picks, shortage = select_groups(informative, b_local, rank)
        if shortage == 0 or refills >= trainer.group_options.max_refill_rounds:
            break
        indices = trainer._stream.take(shortage * procs)  # same on every process
        if trainer._refill_rows is None:
            trainer._refill_rows = trainer._remove_unused_columns(trainer.train_dataset, description="training")
        prompts = [trainer._refill_rows[i] for i in indices[rank * shortage:(rank + 1) * shortage]]
        t0 = time.perf_counter()
        outputs.append(trainer._score_prompts(prompts, g))
        scoring += time.perf_counter() - t0
        informative.append(informative_groups(rnd.rewards[-1], g).reshape(procs, -1))
        refills += 1
    per_proc = np.concatenate(informative, axis=1)  # (procs, groups generated per process)
    rnd.dynamic = {"generated_groups": int(per_proc.size), "dropped_groups": int((~per_proc).sum()),
                   "refill_rounds": refills,
                   # groups still missing after the bound, over all processes (filled by padding)
                   "padded_groups": int(np.maximum(b_local - per_proc.sum(axis=1), 0).sum())}
    joined = join_groups(outputs, picks, g, trainer._pad_token_id(), lambda x: acc.gather(x.reshape(1)).sum())
    rnd.overhead_s += time.perf_counter() - start - scoring
    return joined
