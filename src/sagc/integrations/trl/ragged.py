"""Ragged groups in TRL (per-prompt group sizes, issue 22): layout, advantages, loss weights.

numpy only, so every formula here is checked against a hand computation without a model.

When the controller sizes each prompt (`Decision.group_sizes`, docs/per_prompt.md), one step
holds groups of different sizes. TRL reshapes rewards by one `num_generations`, so the trainer
scores the whole step in one TRL call with `num_generations = 1` (every row its own "group",
which TRL's advantage code and every engine accept), then replaces TRL's advantages by the
per-group ones computed here, over the true groups.

Three things make this right:

1. **Layout over processes.** TRL slices its gathered rewards by `process_index * rows`, so
   every process must hold the same number of rows in a call, and a process's rows must split
   into `steps_per_generation` equal micro-batches. `plan_ragged` deals whole groups to
   processes, largest first, each to the least loaded process (LPT: within 4/3 of the optimum),
   then pads every process to the same row count, a multiple of `steps_per_generation`. Padding
   rows are generated (a copy of one of the process's prompts) but masked out of the loss: zero
   completion mask and zero advantage. With one process and steps_per_generation = 1 there is
   no padding at all.
2. **Advantages per group**, exactly TRL's formula (`sum_then_normalize` or
   `normalize_then_sum`, scale_rewards group / batch / none, TRL's Bessel-corrected nanstd, NaN
   rewards excluded and their advantage 0), over each group's own rows. `scale_rewards="batch"`
   takes the std over the real rows of the step, padding excluded.
3. **Loss weights** (`ragged_weight`), folded into the advantages: TRL's losses are positively
   homogeneous in the advantage (the clipped surrogate min(r A, clip(r) A) = c min(...) for
   c > 0; DISPO's and SAPO's weights read only its sign), so scaling a row's advantage by w
   scales its policy-gradient term by w. The KL term (beta > 0) is not weighted.
   - "prompt" (default): every trained prompt carries the same total weight, as if each group
     had the step's mean size. The allocation then changes the variance of each prompt's
     gradient estimate, not the objective: a controller that gives 8 samples to a prompt near
     50% pass rate does not thereby make that prompt count 4x a prompt given 2.
   - "completion": every completion carries the same weight (a larger group counts more), as
     Knapsack RL trains (arXiv 2509.25849: the budget changes each prompt's share of the batch).
   Row-normalised losses (grpo, sapo, luspo, dr_grpo: a mean over rows, padding rows included)
   get an extra factor rows / real rows so that padding does not dilute the step. With equal
   sizes and no padding every weight is 1, and the batch is TRL's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROMPT_ID_COLUMN = "sagc_prompt_id"  # dataset column with each prompt's stable id (its index by default)
RAGGED_WEIGHTS = ("prompt", "completion")
# TRL 1.16 `_compute_loss`: how each loss type aggregates per-token losses
ROW_NORMALISED = frozenset({"grpo", "sapo", "luspo", "dr_grpo"})  # mean over rows (padding rows count)
TOKEN_NORMALISED = frozenset({"bnpo", "dapo", "cispo", "vespo"})  # sum over tokens / tokens (padding: 0)
_EPS = 1e-4  # TRL's epsilon in (r - mean) / (std + eps)


@dataclass(frozen=True)
class RaggedLayout:
    """Which process generates which prompt of a step, and how many rows each process holds."""

    sizes: np.ndarray  # (B,) int completions per offered prompt, global slot order; 0 = skipped
    owner: np.ndarray  # (B,) int process that generates the prompt; -1 = skipped
    rows: int  # rows every process generates: its groups, then padding
    num_processes: int

    def local_prompts(self, rank: int) -> np.ndarray:
        """(b_rank,) slot indices this process generates, in slot order."""
        return np.flatnonzero(self.owner == rank)

    def padding(self, rank: int) -> int:
        return self.rows - int(self.sizes[self.owner == rank].sum())

    def row_slots(self) -> np.ndarray:
        """(num_processes * rows,) slot index of each global row (rank order), -1 for padding."""
        out = np.full(self.num_processes * self.rows, -1, dtype=np.int64)
        for rank in range(self.num_processes):
            mine = self.local_prompts(rank)
            slots = np.repeat(mine, self.sizes[mine])
            out[rank * self.rows: rank * self.rows + slots.size] = slots
        return out

    @property
    def trained(self) -> np.ndarray:
        """(B',) slot indices of the prompts that are generated, in slot order."""
        return np.flatnonzero(self.sizes > 0)

    @property
    def padded_rows(self) -> int:
        return self.num_processes * self.rows - int(self.sizes.sum())


def plan_ragged(sizes: np.ndarray, num_processes: int, multiple: int) -> RaggedLayout:
    """Deal groups of `sizes` (B,) to processes and pad each to the same rows, a multiple of `multiple`.

    Largest group first, each to the process with the fewest rows so far (ties: lowest rank);
    deterministic, so every process computes the same layout. A step with no rows at all still
    gets `multiple` rows of padding per process (callers avoid it: see `fill_empty`).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or np.any(sizes < 0):
        raise ValueError(f"group sizes must be a 1-D array of integers >= 0, got {sizes.tolist()}")
    if num_processes < 1 or multiple < 1:
        raise ValueError(f"num_processes and multiple must be >= 1, got {num_processes} and {multiple}")
    owner = np.full(sizes.size, -1, dtype=np.int64)
    load = np.zeros(num_processes, dtype=np.int64)
    for k in np.argsort(-sizes, kind="stable"):
        if sizes[k] == 0:
            break
        rank = int(np.argmin(load))  # argmin returns the first minimum: the lowest rank on ties
        owner[k] = rank
        load[rank] += sizes[k]
    rows = max(int(load.max()), 1)
    rows = -(-rows // multiple) * multiple
    return RaggedLayout(sizes=sizes, owner=owner, rows=rows, num_processes=int(num_processes))


def fill_empty(sizes: np.ndarray, group_size: int) -> np.ndarray:
    """A step never trains nothing: if every offered prompt was skipped, the first runs at `group_size`."""
    sizes = np.asarray(sizes, dtype=np.int64).copy()
    if sizes.size and not np.any(sizes > 0):
        sizes[0] = group_size
    return sizes


def _nanstd(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """TRL's nanstd: Bessel-corrected over the finite entries, NaN with fewer than two."""
    finite = np.isfinite(x)
    count = finite.sum(axis=axis, keepdims=True)
    mean = np.where(finite, x, 0.0).sum(axis=axis, keepdims=True) / np.maximum(count, 1)
    ss = np.where(finite, (x - mean) ** 2, 0.0).sum(axis=axis, keepdims=True)
    std = np.where(count > 1, np.sqrt(ss / np.maximum(count - 1, 1)), np.nan)
    return std.squeeze() if axis is None else std.squeeze(axis)


def _nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean over the finite entries (NaN where there are none), without numpy's empty-slice warning."""
    finite = np.isfinite(x)
    count = finite.sum(axis=axis)
    total = np.where(finite, x, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def group_advantages(rewards_per_func: np.ndarray, reward_weights: np.ndarray, group: np.ndarray,
                     scale_rewards: str = "group", aggregation: str = "sum_then_normalize") -> np.ndarray:
    """(n,) advantage of each row, computed as TRL does but over ragged groups.

    rewards_per_func: (n, k) reward of each row from each reward function, NaN where it did not apply.
    reward_weights: (k,). group: (n,) int group of each row, -1 for padding (advantage 0).
    """
    rpf = np.asarray(rewards_per_func, dtype=np.float64)
    w = np.asarray(reward_weights, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    if rpf.ndim != 2 or rpf.shape[0] != group.size or rpf.shape[1] != w.size:
        raise ValueError(f"rewards_per_func {rpf.shape}, reward_weights {w.shape} and group {group.shape} disagree")
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}")
    real = group >= 0
    unscorable = np.all(np.isnan(rpf), axis=1)
    adv = np.full(group.size, np.nan)
    groups = np.unique(group[real])
    if aggregation == "sum_then_normalize":
        reward = np.nansum(rpf * w[None, :], axis=1)
        reward[unscorable] = np.nan
        for g in groups:
            rows = np.flatnonzero(group == g)
            r = reward[rows]
            centred = r - _nanmean(r)
            if scale_rewards == "group":
                centred = centred / (_nanstd(r) + _EPS)
            adv[rows] = centred
        if scale_rewards == "batch":
            adv[real] = adv[real] / (_nanstd(reward[real]) + _EPS)
    elif aggregation == "normalize_then_sum":
        z = np.full_like(rpf, np.nan)
        for g in groups:
            rows = np.flatnonzero(group == g)
            x = rpf[rows]  # (G_i, k)
            z[rows] = (x - _nanmean(x, axis=0)) / (_nanstd(x, axis=0) + _EPS)
        reward = np.nansum(z * w[None, :], axis=1)
        reward[unscorable] = np.nan
        r = reward[real]
        adv[real] = (r - _nanmean(r)) / (_nanstd(r) + _EPS)
    else:
        raise ValueError(f"multi_objective_aggregation must be 'sum_then_normalize' or 'normalize_then_sum', "
                         f"got {aggregation!r}")
    adv[~real] = 0.0
    return np.nan_to_num(adv, nan=0.0)


def loss_weights(group: np.ndarray, mode: str, loss_type: str) -> np.ndarray:
    """(n,) weight of each row's advantage (see the module docstring); 0 for padding rows.

    group: (n,) int group of each global row, -1 for padding. With equal group sizes and no
    padding every weight is 1.
    """
    if mode not in RAGGED_WEIGHTS:
        raise ValueError(f"ragged_weight must be one of {list(RAGGED_WEIGHTS)}, got {mode!r}")
    if loss_type not in ROW_NORMALISED | TOKEN_NORMALISED:
        raise ValueError(f"per-prompt group sizes weight the loss for TRL's loss types "
                         f"{sorted(ROW_NORMALISED | TOKEN_NORMALISED)}; got loss_type={loss_type!r}")
    group = np.asarray(group, dtype=np.int64)
    real = group >= 0
    out = np.zeros(group.size)
    if not real.any():
        return out
    ids, inverse, counts = np.unique(group[real], return_inverse=True, return_counts=True)
    n_real = int(real.sum())
    if mode == "prompt":  # the group's total weight is that of a group of the mean size
        w = (n_real / ids.size) / counts[inverse]
    else:
        w = np.ones(n_real)
    if loss_type in ROW_NORMALISED:  # a mean over all rows: undo the padding's dilution
        w = w * (group.size / n_real)
    out[real] = w
    return out
