"""Per-prompt group sizes in SAGCGRPOTrainer (issue 22): the torch side of `ragged.py`.

Turned on by a controller that sizes prompts one by one (`controller.uses_prompt_ids`: SAGC with
`per_prompt=True`, `knapsack`). One step then runs as follows (docs/per_prompt.md, "In TRL"):

1. The sampler deals the step's B prompt slots as usual. Each row carries its prompt id, the
   dataset column `sagc_prompt_id` (added as the row index when the dataset has none, so ids
   are stable across epochs and across a resume).
2. Every process gathers the B ids and appends (prompt_lookahead - 1) x B candidates from the
   lookahead stream (`Lookahead`: a deterministic stream over the train set, the same on every
   process). Rank 0 asks `decide(allowed, prompts=B, prompt_ids=dealt + candidates)` and
   broadcasts G_i per offered prompt (0 = skipped this epoch; a dealt prompt the decision does
   not name counts as skipped). The decision names a prefix of what was offered: the dealt
   prompts are used up whatever it says (the sampler dealt them), a candidate only when the
   prefix reaches it. A skipped prompt's place goes to the next kept candidate, so a step still
   trains B prompts, as in the simulator (sagc.sim.stepper.LOOKAHEAD). Measured there: offering
   only the dealt B makes per-prompt SAGC 1.10-1.17x the best static G on math-pool, against
   1.28-1.32x with candidates (docs/per_prompt.md).
3. `ragged.plan_ragged` deals the groups to processes and pads them to equal rows; the slots'
   rows are gathered (the candidates' are read by index) so any process can generate any prompt.
4. One TRL scoring call per process with `num_generations = 1`; then the advantages are
   replaced by the per-group ones times the loss weights (`ragged.group_advantages`,
   `ragged.loss_weights`), padding rows are masked, `num_items_in_batch` is recomputed, and
   the metrics TRL computed per row (frac_reward_zero_std, the logged advantages) are fixed.
5. At the step's end the controller sees the real rows only, with the prompt id of each group.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from sagc.stats import StepStats
from sagc.integrations.trl.dynamic import PromptStream
from sagc.integrations.trl.ragged import (PROMPT_ID_COLUMN, ROW_NORMALISED, TOKEN_NORMALISED, fill_empty,
                                          group_advantages, loss_weights, plan_ragged)


def check_per_prompt(controller: Any, options: Any, loss_type: str) -> None:
    """Named errors for a controller or settings the trainer cannot run (before any model loads)."""
    name = getattr(controller, "name", type(controller).__name__)
    if getattr(controller, "sampling", None) is not None:  # the simulator's dapo / greso baselines
        raise ValueError(f"group_controller {name!r} runs rounds of dynamic sampling inside a step, which "
                         "SAGCGRPOTrainer does with dynamic_sampling=True at one G per step; use "
                         "{'kind': 'sagc', 'per_prompt': True} or 'knapsack' for per-prompt group sizes")
    if not getattr(controller, "uses_prompt_ids", False):
        return
    if options.group_mode != "fixed_prompts":
        raise ValueError(f"group_controller {name!r} sizes each prompt, which needs group_mode='fixed_prompts' "
                         f"(B prompts per step, each with its own G); got group_mode={options.group_mode!r}")
    if options.dynamic_sampling:
        raise ValueError(f"group_controller {name!r} sizes each prompt (and may skip prompts predicted "
                         "all-equal), which replaces dynamic sampling: set dynamic_sampling=False")
    if loss_type not in ROW_NORMALISED | TOKEN_NORMALISED:
        raise ValueError(f"per-prompt group sizes weight the loss per prompt for TRL's loss types "
                         f"{sorted(ROW_NORMALISED | TOKEN_NORMALISED)}; GRPOConfig(loss_type={loss_type!r}) is "
                         "not one of them")


def with_prompt_ids(dataset: Any) -> Any:
    """The train set with a `sagc_prompt_id` column: kept when present, else the row index."""
    columns = getattr(dataset, "column_names", None) or []
    if PROMPT_ID_COLUMN in columns:
        return dataset
    if not hasattr(dataset, "add_column") or not hasattr(dataset, "__len__"):
        raise ValueError(f"per-prompt group sizes need a stable id per prompt: pass a map-style datasets.Dataset "
                         f"(the row index is the id), or give the dataset an integer column {PROMPT_ID_COLUMN!r} "
                         f"(got {type(dataset).__name__} without it)")
    return dataset.add_column(PROMPT_ID_COLUMN, np.arange(len(dataset), dtype=np.int64))


_LOOKAHEAD_SALT = 2  # the candidate stream's seed: args.seed + 2 on every process (dynamic sampling's is + 1)


class PromptIndex:
    """Prompt id <-> dataset row, for a train set with the `sagc_prompt_id` column (ids checked,
    the first bad one named). Ids equal to the row index (the default column) need no table: a
    dict per row of a dataset of millions would take ~100 bytes each."""

    def __init__(self, dataset: Any) -> None:
        ids = np.asarray(dataset[PROMPT_ID_COLUMN])  # (rows,) dataset row -> prompt id
        if ids.dtype.kind not in "iu" or (ids.size and ids.min() < 0):
            for value in dataset[PROMPT_ID_COLUMN]:
                _checked_id(value)
        self._ids = None if np.array_equal(ids, np.arange(ids.size)) else ids.astype(np.int64)
        self._rows = None if self._ids is None else {int(p): i for i, p in enumerate(self._ids)}

    def id_of(self, row: int) -> int:
        return int(row) if self._ids is None else int(self._ids[row])

    def row_of(self, prompt_id: int) -> int:
        return int(prompt_id) if self._rows is None else self._rows[int(prompt_id)]


class Lookahead:
    """Candidate prompts offered beyond the dealt B (GroupOptions.prompt_lookahead > 1).

    A PromptStream over the train set's rows, seeded alike on every process, so every process
    offers the same candidates and moves the stream by the same count. A candidate is consumed
    only when the decision's prefix reaches it; its state (three integers) is saved with every
    checkpoint. Candidates repeat no dealt prompt of the step; across steps the stream is its own
    pass over the data, so a prompt can be trained more than once in one pass of the loader (as
    with dynamic sampling's refill stream).
    """

    def __init__(self, dataset: Any, seed: int, factor: int) -> None:
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise ValueError("prompt_lookahead > 1 offers candidate prompts read by index, which needs a map-style "
                             "train_dataset (datasets.Dataset), not an IterableDataset; set prompt_lookahead=1 or "
                             "materialise the dataset")
        self.factor = int(factor)
        self.stream = PromptStream(len(dataset), seed + _LOOKAHEAD_SALT)
        self.index = PromptIndex(dataset)

    def offer(self, dealt: list[int]) -> tuple[list[int], list[int]]:
        """(candidate ids, stream positions used up through each) for a step that dealt `dealt`."""
        rows = self.stream.peek((self.factor - 1) * len(dealt))
        seen, ids, ends = set(dealt), [], []
        for k, row in enumerate(rows):
            p = self.index.id_of(row)
            if p not in seen:
                seen.add(p)
                ids.append(p)
                ends.append(k + 1)
        return ids, ends


def settle_offer(trainer: Any, rnd: Any, dealt: int, ends: list[int]) -> None:
    """After the broadcast (every process alike): keep the dealt prompts and the candidates the
    decision's prefix reached, move the lookahead stream past them, train at most B = `dealt`
    prompts (the first kept, in offer order), and read the candidates' rows."""
    taken = max(0, min(int(rnd.taken), len(rnd.prompt_ids)) - dealt)  # candidates consumed
    if taken:
        trainer._lookahead.stream.take(ends[taken - 1])
    rnd.prompt_ids = list(rnd.prompt_ids[:dealt + taken])
    sizes = np.asarray(rnd.sizes[:dealt + taken], dtype=np.int64).copy()
    sizes[np.flatnonzero(sizes > 0)[dealt:]] = 0  # a prefix keeping more than B: the first B run
    rnd.sizes = sizes
    rnd.replaced = int(np.count_nonzero(sizes[dealt:]))
    rows = trainer._refill_rows_all() if taken else None
    rnd.extra_rows = [rows[trainer._lookahead.index.row_of(p)] for p in rnd.prompt_ids[dealt:]] if taken else []


def slot_ids(slots: list[dict]) -> list[int]:
    """The prompt id of each slot row, checked (a named error for a bad id column)."""
    return [_checked_id(row.get(PROMPT_ID_COLUMN)) for row in slots]


def _checked_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"train_dataset column {PROMPT_ID_COLUMN!r} must hold integer ids >= 0, got {value!r}")
    return int(value)


def gather_ids(trainer: Any, ids: list[int]) -> list[int]:
    """Every process's slot ids, in rank order (the global slot order)."""
    if trainer.accelerator.num_processes == 1:
        return list(ids)
    local = torch.tensor(ids, dtype=torch.long, device=trainer.accelerator.device)
    return trainer.accelerator.gather(local).cpu().tolist()


def score_ragged(trainer: Any, slots: list[dict], rnd: Any) -> dict:
    """Generate and score the step's ragged groups on this process (steps 3-4 of the docstring)."""
    from accelerate.utils import gather_object

    acc = trainer.accelerator
    procs, rank = acc.num_processes, acc.process_index
    sizes = fill_empty(rnd.sizes, rnd.group_size)
    layout = plan_ragged(sizes, procs, trainer.args.steps_per_generation)
    rnd.sizes, rnd.layout = sizes, layout
    everyone = list(slots) if procs == 1 else gather_object(list(slots))  # (B,) slot rows, rank order
    everyone += list(rnd.extra_rows)  # the candidates consumed (settle_offer), in offer order
    mine = layout.local_prompts(rank)
    filler = everyone[int(mine[0]) if mine.size else int(layout.trained[0])]
    rows = [dict(everyone[k]) for k in mine for _ in range(int(sizes[k]))]
    rows += [dict(filler) for _ in range(layout.padding(rank))]  # generated, then masked out

    out = trainer._score_rows(rows, 1)  # one TRL call; TRL's own advantages are replaced below
    start = time.perf_counter()  # sagc's own time from here (TRL's scoring above is not overhead)
    row_slots = layout.row_slots()  # (procs * rows,) slot of each global row, -1 = padding
    adv = group_advantages(rnd.rewards_per_func, trainer.reward_weights.detach().cpu().numpy(), row_slots,
                           trainer.scale_rewards, trainer.multi_objective_aggregation)
    weight = loss_weights(row_slots, trainer.group_options.ragged_weight, trainer.loss_type)
    local = slice(rank * layout.rows, (rank + 1) * layout.rows)
    device = out["advantages"].device
    out["advantages"] = torch.as_tensor(adv[local] * weight[local], dtype=out["advantages"].dtype, device=device)
    if layout.padded_rows:  # the same on every process, so every process runs the collective below
        pad = torch.as_tensor(row_slots[local] < 0, device=device)
        out["completion_mask"] = out["completion_mask"].masked_fill(pad.unsqueeze(1), 0)
        mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
        out["num_items_in_batch"] = acc.gather(mask.sum().reshape(1)).sum().clamp(min=1)
    _fix_row_metrics(trainer, rnd, row_slots, adv)
    rnd.overhead_s += time.perf_counter() - start
    return out


def _fix_row_metrics(trainer: Any, rnd: Any, row_slots: np.ndarray, adv: np.ndarray) -> None:
    """TRL logged per-row figures computed with num_generations = 1; put in the per-group ones."""
    real = row_slots >= 0
    reward = np.nansum(rnd.rewards_per_func * trainer.reward_weights.detach().cpu().numpy()[None, :], axis=1)
    zero_std = np.zeros(row_slots.size, dtype=bool)
    for k in np.unique(row_slots[real]):
        rows = row_slots == k
        zero_std[rows] = np.ptp(reward[rows]) == 0
    metrics = trainer._metrics["train"]
    if metrics.get("frac_reward_zero_std"):
        metrics["frac_reward_zero_std"][-1] = float(zero_std[real].mean())
    logged = trainer._logs.get("advantages") if hasattr(trainer, "_logs") else None
    if logged is not None and len(logged) >= adv.size:
        for _ in range(adv.size):
            logged.pop()
        logged.extend(adv.tolist())


def ragged_stats(rnd: Any, rollout_s: float, step_s: float) -> tuple[StepStats, np.ndarray, list[str], dict]:
    """What the controller sees of a ragged step (real rows only; one group per trained slot), the
    prompt id of each group in sorted group-id order, the trace's group names, and record fields."""
    row_slots = rnd.layout.row_slots()  # (rows,) global, -1 = padding
    real = row_slots >= 0
    stats = StepStats(group_id=row_slots[real], length=np.concatenate(rnd.lengths)[real],
                      reward=np.concatenate(rnd.rewards)[real], truncated=np.concatenate(rnd.truncated)[real],
                      group_size=rnd.group_size, rollout_s=rollout_s, step_s=step_s)
    trained = np.unique(row_slots[real])  # sorted slot indices = sorted group ids
    prompt_ids = np.asarray(rnd.prompt_ids, dtype=np.int64)[trained]
    names = [f"s{rnd.index}-p{int(p)}" for p in prompt_ids]
    sizes = rnd.sizes[trained]
    record = {"group_sizes": sizes.tolist(), "prompt_ids": prompt_ids.tolist(),
              "skipped_prompts": int(np.count_nonzero(rnd.sizes == 0)), "replaced_prompts": int(rnd.replaced),
              "padded_rows": int(rnd.layout.padded_rows),
              "mean_group_size": float(sizes.mean())}
    return stats, prompt_ids, names, record
