"""Tail control in SAGCGRPOTrainer (issue 21, docs/trl.md "Tail control"): the torch side.

`SAGCGRPOTrainer(..., rollout="resume")` (or a `rollout:` section in `sagc train`) runs each
step through the same `sagc.rollout.RolloutPolicy` the simulator drives. Per step, per process:

1. The loader's prompts for the step join this process's queue of prompts not yet started
   (`pending`); the policy plans the step (carried groups first, then fresh prompts from the
   queue; when over-sampling needs more than the queue holds, a seeded stream over the train
   set supplies the rest, saved with checkpoints like dynamic sampling's).
2. The engine (`engines.py`: transformers' continuous batching, or `generate`) runs every
   submitted completion, resumed ones continuing from their kept tokens, and ends the step when
   the policy is satisfied on every process.
3. `policy.close(..., cap=B)` keeps exactly B complete groups per process (the first to
   complete). Unfinished completions are kept (resume / auto: tokens, the version that sampled
   each, and for stale_tokens="tis" their sampler log-probs), or dropped, or their prompts
   deferred, as the policy says.
4. The B groups are scored in one TRL call with num_generations = 1 (the completions are handed
   to TRL through `_generate_single_turn`, nothing is generated twice); TRL's advantages are
   replaced by per-group ones over complete groups only (`ragged.group_advantages`), rows are
   padded to the same count on every process (masked), and each token's loss weight
   (`sagc.rollout.stale`) goes in TRL's per-token loss mask (`tool_mask`): stale tokens stay in
   the context but are masked or importance-weighted.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np
import torch
from accelerate.utils import gather_object

from sagc.integrations.trl.dynamic import PromptStream
from sagc.integrations.trl.engines import run_continuous, run_generate
from sagc.integrations.trl.per_prompt import PromptIndex, _fix_row_metrics
from sagc.integrations.trl.ragged import group_advantages, loss_weights
from sagc.rollout import RolloutPolicy, RolloutSettings
from sagc.rollout.stale import stale_weights
from sagc.stats import StepStats

_STREAM_SALT = 7919  # each process's extra-prompt stream: seed + salt * (rank + 1)


class TailControl:
    """One process's tail-control state: the policy, the prompt queue, the kept partial tokens."""

    def __init__(self, settings: RolloutSettings, dataset: Any, seed: int, rank: int) -> None:
        self.settings = settings
        self.policy = RolloutPolicy(settings)
        self.pending: list[int] = []  # prompt ids dealt by the loader, not started yet (FIFO)
        self.stream = PromptStream(len(dataset), seed + _STREAM_SALT * (rank + 1))
        self.extra_prompts = 0  # prompts drawn from the stream (over-sampling beyond the loader)
        # (group key, row index) -> kept tokens of an unfinished completion
        self.partial: dict[tuple[int, int], dict[str, list]] = {}
        self.index = PromptIndex(dataset)  # prompt id <-> dataset row

    def take(self, n: int) -> list[int]:
        out = self.pending[:n]
        del self.pending[:n]
        if len(out) < n:
            extra = self.stream.take(n - len(out))
            self.extra_prompts += len(extra)
            out += [self.index.id_of(i) for i in extra]
        return out

    # ---- checkpoint state ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "pending": list(self.pending), "stream": self.stream.state_dict(),
                "extra_prompts": self.extra_prompts,
                "partial": [[k, i, v["tokens"], v["version"], [None if x != x else x for x in v["logp"]]]
                            for (k, i), v in sorted(self.partial.items())]}  # NaN (no log-prob kept) as null

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.pending = [int(p) for p in state["pending"]]
        self.stream.load_state_dict(state["stream"])
        self.extra_prompts = int(state["extra_prompts"])
        self.partial = {(int(k), int(i)): {"tokens": list(map(int, t)), "version": list(map(int, v)),
                                           "logp": [float("nan") if x is None else float(x) for x in lp]}
                        for k, i, t, v, lp in state["partial"]}
        rows = self.policy.carried_rows
        keys = self.policy.carried["key"]
        want = {(int(keys[g]), int(i)) for g, i, n in zip(rows["group"], rows["index"], rows["tokens"]) if n > 0}
        if want != set(self.partial):
            raise ValueError("tail-control state: the kept partial completions do not match the policy's carried "
                             f"rows ({len(self.partial)} kept, {len(want)} expected)")


# ---- one step ------------------------------------------------------------------------------
def tail_step(trainer: Any, slots: list[dict], rnd: Any) -> dict:
    """Plan, generate, close and score one step on this process (the module docstring's 1-4)."""
    from sagc.integrations.trl.per_prompt import slot_ids

    tc: TailControl = trainer._tail
    g, b_local, t = rnd.group_size, trainer.group_layout.local_prompts(rnd.group_size), rnd.index
    tc.pending.extend(slot_ids(slots))
    plan = tc.policy.plan(t, g, b_local, take_prompts=tc.take)
    keys, prompts = plan.groups["key"], plan.groups["prompt"]
    sub = plan.submit
    rows = trainer._refill_rows_all()
    texts = {int(p): rows[tc.index.row_of(p)] for p in np.unique(prompts)}
    prompt_tokens = _prompt_tokens(trainer, texts)
    row_key = [(int(keys[plan.rows["group"][r]]), int(plan.rows["index"][r])) for r in range(plan.rows["group"].size)]
    row_prompt = [int(prompts[plan.rows["group"][r]]) for r in range(plan.rows["group"].size)]
    kept = [tc.partial.get(row_key[r], {"tokens": [], "version": [], "logp": []}) for r in range(len(row_key))]
    max_len = int(trainer.max_completion_length)
    inputs = [prompt_tokens[row_prompt[r]] + kept[r]["tokens"] for r in sub]
    budgets = [max_len - len(kept[r]["tokens"]) for r in sub]

    start = time.perf_counter()
    result = _run_engine(trainer, inputs, budgets, plan.should_stop, max_len)
    rnd.rollout_s += time.perf_counter() - start
    generated = np.asarray([len(x) for x in result.tokens], dtype=np.int64)
    cap = b_local if plan.target is not None else None
    out = tc.policy.close(plan, result.finished, generated, cap=cap, finish_order=result.order)

    # every row's tokens after this step (kept + new), with the version that sampled each
    tokens = {r: list(kept[r]["tokens"]) for r in range(len(row_key))}
    version = {r: list(kept[r]["version"]) for r in range(len(row_key))}
    logp = {r: list(kept[r]["logp"]) for r in range(len(row_key))}
    for j, r in enumerate(sub):
        tokens[r] += list(result.tokens[j])
        version[r] += [t] * len(result.tokens[j])
        logp[r] += [float("nan")] * len(result.tokens[j])
    trained = set(int(r) for r in out.trained_rows)
    carried_keys = set(int(k) for k in tc.policy.carried["key"])
    carried_rows = [r for r in range(len(row_key)) if r not in trained and row_key[r][0] in carried_keys
                    and tokens[r]]
    t0 = time.perf_counter()
    if carried_rows and tc.settings.stale_tokens == "tis":  # the sampler's log-probs of this step's tokens
        fresh = _token_logps(trainer, [prompt_tokens[row_prompt[r]] for r in carried_rows],
                             [tokens[r] for r in carried_rows])
        for r, lp in zip(carried_rows, fresh):
            logp[r] = [x if v != t else float(y) for x, y, v in zip(logp[r], lp, version[r])]
    rnd.overhead_s += time.perf_counter() - t0  # sagc's own work (the forward above), not the engine's
    for r in range(len(row_key)):
        tc.partial.pop(row_key[r], None)
    for r in carried_rows:
        tc.partial[row_key[r]] = {"tokens": tokens[r], "version": version[r], "logp": logp[r]}

    # the trained rows, grouped (group position order; rows of a group contiguous)
    order = sorted(trained, key=lambda r: (int(plan.rows["group"][r]), int(plan.rows["index"][r])))
    groups = np.asarray([int(plan.rows["group"][r]) for r in order], dtype=np.int64)
    aborted = [int(sub[j]) for j in np.flatnonzero(~result.finished)]  # cancelled at the step's end
    fate = {"resume": "resume", "auto": "resume", "drop": "drop", "defer": "defer"}.get(tc.settings.policy, "resume")
    first = plan.rows["first"]  # version of each row's first token before this step (-1: none)
    procs, rank = trainer.accelerator.num_processes, trainer.accelerator.process_index
    info = {"group_keys": [int(keys[plan.rows["group"][r]]) * procs + rank for r in order],  # unique over ranks
            "prompt_ids": [row_prompt[r] for r in order],
            "resumed": [int(0 <= first[r] < t) for r in order],
            "deferred": [int(plan.groups["deferred"][plan.rows["group"][r]] >= 0) for r in order],
            "stale_tokens": [sum(1 for v in version[r] if v != t) for r in order],
            "aborted_lengths": [len(tokens[r]) for r in aborted], "aborted_fate": [fate] * len(aborted),
            "submitted": int(len(sub)), "generated_tokens": int(generated.sum()),
            "bubble": float(1.0 - generated.sum() / max(len(sub) * max(int(generated.max(initial=0)), 1), 1)),
            "on_policy_tokens": out.on_policy_tokens, "stale": out.stale_tokens, "wasted_tokens": out.wasted_tokens,
            "dropped_prompts": out.dropped_prompts, "deferred_prompts": out.deferred_prompts,
            "carried": out.carried_groups, "queue": int(tc.policy.deferred["key"].shape[0]),
            "deferred_waits": out.deferred_waits.tolist(), "rate": float(plan.rate), "kind": plan.kind,
            "extra_prompts": tc.extra_prompts,
            # groups trained against this process's share of B (more when more are pinned)
            "trained_groups": int(np.unique(groups).size), "prompts": int(b_local)}
    return _score(trainer, rnd, [texts[row_prompt[r]] for r in order], [tokens[r] for r in order],
                  [version[r] for r in order], [logp[r] for r in order], groups, info)


def _run_engine(trainer: Any, inputs: list, budgets: list, should_stop: Any, max_len: int) -> Any:
    acc = trainer.accelerator
    sync = None
    if acc.num_processes > 1:
        def sync(vote: bool) -> bool:  # everyone stops once every process's policy is satisfied
            flag = torch.tensor([int(vote)], device=acc.device)
            return bool(acc.gather(flag).min().item() == 1)
    with _generation_model(trainer) as model:
        if trainer.use_transformers_continuous_batching:
            return run_continuous(model, inputs, budgets, should_stop, generation_config=trainer.generation_config,
                                  cb_config=trainer.continuous_batching_config, sync=sync)
        return run_generate(model, inputs, budgets, should_stop, eos=trainer._eos_and_pad() - {trainer._pad_token_id()},
                            pad_token_id=trainer._pad_token_id(), generation_config=trainer.generation_config,
                            sync=sync, max_new_tokens=max_len)


@contextlib.contextmanager
def _generation_model(trainer: Any) -> Iterator[Any]:
    """The model as TRL's own generation paths prepare it (unwrapped, no grad, eval)."""
    from trl.models import unwrap_model_for_generation

    from sagc.integrations.trl.compat import engine_outputs_unconverted

    args = trainer.args
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     gather_deepspeed3_params=args.ds3_gather_for_generation) as model, \
            torch.no_grad(), engine_outputs_unconverted(trainer.model, args):
        if trainer.use_transformers_continuous_batching:  # as TRL's own continuous-batching path does
            if args.bf16:
                model.to(torch.bfloat16)
            elif args.fp16:
                model.to(torch.float16)
            if getattr(args, "cast_lm_head_to_fp32", False):
                model.lm_head.to(torch.float32)
        was_training = model.training
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)


def _prompt_tokens(trainer: Any, rows: dict[int, dict]) -> dict[int, list[int]]:
    """Each prompt's token ids, as TRL tokenizes them (chat template included)."""
    ids = list(rows)
    prompt_ids, _, _ = trainer._tokenize_prompts([rows[p]["prompt"] for p in ids])
    return {p: list(map(int, x)) for p, x in zip(ids, prompt_ids)}


def _token_logps(trainer: Any, prompts: list[list[int]], completions: list[list[int]]) -> list[np.ndarray]:
    """Per-token log-probs of each completion under the current model (TRL's own function)."""
    device = trainer.accelerator.device
    pad = trainer._pad_token_id()
    width_p = max(len(p) for p in prompts)
    width_c = max(max(len(c) for c in completions), 1)
    n = len(prompts)
    ids = torch.full((n, width_p + width_c), pad, dtype=torch.long)
    mask = torch.zeros((n, width_p + width_c), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, width_p - len(p):width_p] = torch.as_tensor(p)
        mask[i, width_p - len(p):width_p] = 1
        ids[i, width_p:width_p + len(c)] = torch.as_tensor(c, dtype=torch.long)
        mask[i, width_p:width_p + len(c)] = 1
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids.to(device), mask.to(device), width_c, batch_size=trainer.args.per_device_train_batch_size)
    logps = logps.float().cpu().numpy()
    return [logps[i, :len(c)] for i, c in enumerate(completions)]


def _score(trainer: Any, rnd: Any, rows: list[dict], completions: list[list[int]], versions: list[list[int]],
           logps: list[list[float]], groups: np.ndarray, info: dict) -> dict:
    """Score the trained groups in one TRL call (padded to equal rows on every process)."""
    acc = trainer.accelerator
    procs, rank = acc.num_processes, acc.process_index
    counts = [len(rows)] if procs == 1 else gather_object([len(rows)])
    multiple = trainer.args.steps_per_generation
    width = max(max(counts), 1)
    width = -(-width // multiple) * multiple
    pad = width - len(rows)
    if not rows:
        raise RuntimeError("a tail-control step trained no group on this process")
    local_groups = np.concatenate([groups, np.full(pad, -1, np.int64)])
    everyone = [local_groups.tolist()] if procs == 1 else gather_object([local_groups.tolist()])
    offset = 0
    row_groups = []
    for part in everyone:  # unique group ids over processes; -1 = padding
        part = np.asarray(part, dtype=np.int64)
        uniq = {gid: k for k, gid in enumerate(sorted(set(part[part >= 0].tolist())))}
        row_groups.append(np.asarray([offset + uniq[x] if x >= 0 else -1 for x in part.tolist()], np.int64))
        offset += len(uniq)
    row_groups = np.concatenate(row_groups)  # (procs * width,) global
    rows = [dict(r) for r in rows] + [dict(rows[-1]) for _ in range(pad)]
    trainer._prepared = [list(c) for c in completions] + [list(completions[-1]) for _ in range(pad)]
    rnd.tail_layout = {"row_groups": row_groups, "width": width}
    out = trainer._score_rows(rows, 1)
    start = time.perf_counter()
    adv = group_advantages(rnd.rewards_per_func, trainer.reward_weights.detach().cpu().numpy(), row_groups,
                           trainer.scale_rewards, trainer.multi_objective_aggregation)
    weight = loss_weights(row_groups, trainer.group_options.ragged_weight, trainer.loss_type)
    local = slice(rank * width, (rank + 1) * width)
    device = out["advantages"].device
    out["advantages"] = torch.as_tensor(adv[local] * weight[local], dtype=out["advantages"].dtype, device=device)
    # per-token weights: stale tokens masked or importance-weighted; padding rows 0
    T = out["completion_ids"].shape[1]
    version = np.full((width, T), -1, dtype=np.int64)
    sampler = np.full((width, T), np.nan)
    for i, (v, lp) in enumerate(zip(versions, logps)):
        k = min(len(v), T)
        version[i, :k], sampler[i, :k] = v[:k], lp[:k]
    now = None
    mode = trainer._tail.settings.stale_tokens
    stale_rows = np.flatnonzero(((version >= 0) & (version < rnd.index)).any(axis=1))
    if mode == "tis" and stale_rows.size:
        now = np.full((width, T), np.nan)
        if "old_per_token_logps" in out:
            now[:] = out["old_per_token_logps"].float().cpu().numpy()
        else:  # as TRL computes old_per_token_logps: the scored batch's own layout
            idx = torch.as_tensor(stale_rows, device=device)
            ids = torch.cat([out["prompt_ids"][idx], out["completion_ids"][idx]], dim=1)
            att = torch.cat([out["prompt_mask"][idx], out["completion_mask"][idx]], dim=1)
            with torch.no_grad():
                got, _, _ = trainer._get_per_token_logps_and_entropies(
                    trainer.model, ids, att, T, batch_size=trainer.args.per_device_train_batch_size)
            now[stale_rows] = got.float().cpu().numpy()
    s = trainer._tail.settings
    w = stale_weights(version, rnd.index, mode, logp_now=now, logp_sampler=sampler, clip=s.tis_clip,
                      clip_low=s.tis_clip_low)
    mask = out["completion_mask"].float() * torch.as_tensor(w, dtype=torch.float32, device=device)
    out["tool_mask"] = torch.as_tensor(w, dtype=torch.float32, device=device) if "tool_mask" not in out else \
        out["tool_mask"] * torch.as_tensor(w, dtype=out["tool_mask"].dtype, device=device)
    items = (mask > 0).sum().reshape(1).float()
    out["num_items_in_batch"] = acc.gather(items).sum().clamp(min=1)
    _fix_row_metrics(trainer, rnd, row_groups, adv)
    info["weights"] = {"stale_rows": int(stale_rows.size),
                       "mean_stale_weight": float(w[(version >= 0) & (version < rnd.index)].mean())
                       if stale_rows.size else None}
    rnd.tail = info if procs == 1 else _join_info(gather_object([info]))
    rnd.overhead_s += time.perf_counter() - start
    return out


_PER_ROW = ("group_keys", "prompt_ids", "resumed", "deferred", "stale_tokens", "aborted_lengths", "aborted_fate", "deferred_waits")


def _join_info(parts: list[dict]) -> dict:
    """Every process's step record, joined in rank order (per-row lists concatenated, counts summed)."""
    out = dict(parts[0])
    for key, value in parts[0].items():
        if key in _PER_ROW:
            out[key] = [x for p in parts for x in p[key]]
        elif key == "bubble":
            out[key] = float(np.mean([p[key] for p in parts]))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "rate":
            out[key] = type(value)(sum(p[key] for p in parts))
    out["weights"] = [p["weights"] for p in parts]
    return out


def tail_stats(rnd: Any, rollout_s: float, step_s: float) -> tuple[StepStats, list[str]]:
    """What the controller sees of a tail-control step: the trained rows (padding excluded)."""
    row_groups = rnd.tail_layout["row_groups"]
    real = row_groups >= 0
    stats = StepStats(group_id=row_groups[real], length=np.concatenate(rnd.lengths)[real],
                      reward=np.concatenate(rnd.rewards)[real], truncated=np.concatenate(rnd.truncated)[real],
                      group_size=rnd.group_size, rollout_s=rollout_s, step_s=step_s)
    names = [f"s{rnd.index}-t{int(k)}" for k in np.unique(row_groups[real])]
    return stats, names


# ---- settings checks, step record, metrics, checkpoint state ------------------------------------
def check_tail(settings: RolloutSettings, controller: Any, options: Any, config: Any, kwargs: dict,
               trainer: Any = None) -> None:
    """Named errors for what tail control cannot run with (before any model loads where possible)."""
    if not settings.aborts:
        return
    where = f"rollout policy {settings.policy!r}"
    from sagc.integrations.trl.compat import check_tail_compat, trl_version

    problems = check_tail_compat()
    if problems:
        raise RuntimeError(f"tail control relies on TRL internals that changed in TRL {trl_version()}: "
                           + "; ".join(problems))
    if getattr(controller, "uses_prompt_ids", False):
        raise ValueError(f"{where} runs at one G per step; per-prompt group sizes ({controller.name!r} with "
                         "per_prompt) are not supported with tail control yet: use rollout='full' or a controller "
                         "without per-prompt sizes")
    if options.dynamic_sampling:
        raise ValueError(f"{where} cannot be combined with dynamic_sampling=True (both refill the step with other "
                         "prompts); set dynamic_sampling=False or rollout='full'")
    if getattr(config, "use_vllm", False):
        raise ValueError(f"{where} needs an engine that reports completions as they finish and cancels the rest: "
                         "set use_vllm=False (use_transformers_continuous_batching=True, or plain generate)")
    if kwargs.get("rollout_func") is not None or kwargs.get("tools"):
        raise ValueError(f"{where} generates single-turn completions itself: rollout_func and tools are not "
                         "supported with it; use rollout='full'")
    if trainer is None:
        return
    if getattr(trainer, "_is_vlm", False):
        raise ValueError(f"{where} does not support vision-language models yet; use rollout='full'")
    ds = trainer.train_dataset
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise ValueError(f"{where} draws prompts by id (resumed, deferred and over-sampled ones), so it needs a "
                         "map-style train_dataset (datasets.Dataset), not an IterableDataset; materialise the "
                         "dataset or use rollout='full'")


def trace_fields(rnd: Any, settings: RolloutSettings) -> dict:
    """The step's `tail` trace field (sagc.trace): per trained row flags and the step's counts."""
    info = rnd.tail
    trained = info["on_policy_tokens"] + info["stale"]
    return {"policy": settings.policy, "rate": float(info["rate"]), "kind": info["kind"],
            "resumed": list(info["resumed"]), "deferred": list(info["deferred"]),
            "stale_tokens": list(info["stale_tokens"]), "aborted_lengths": list(info["aborted_lengths"]),
            "aborted_fate": list(info["aborted_fate"]),
            "on_policy_share": float(info["on_policy_tokens"] / trained) if trained else 1.0,
            "queue": int(info["queue"]), "carried": int(info["carried"])}


def log_step(trainer: Any, rnd: Any, stats: StepStats, step_s: float, fields: dict) -> None:
    """Metrics in TRL's logs and the policy's feedback; called on every process with the same
    global figures (rank 0's step seconds), so `auto` makes the same choice everywhere."""
    from sagc.sim.stepper import ragged_signal

    info = rnd.tail
    seconds = float(trainer._broadcast(step_s))
    _, signal = ragged_signal(stats.group_id, stats.reward)
    chooser = trainer._tail.policy.chooser
    if chooser is not None and trainer.accelerator.num_processes > 1:
        # auto's carry credit splits the step by what each process's groups did: add them up, so
        # every process credits the same figures and keeps choosing the same rate
        chooser.merge_closed(gather_object([chooser.closed_state()]))
    trainer._tail.policy.feedback(signal, seconds, fields["on_policy_share"])
    rows = max(len(info["resumed"]), 1)
    m = trainer._metrics["train"]
    m["sagc/tail/on_policy_share"].append(fields["on_policy_share"])
    m["sagc/tail/resumed_share"].append(float(sum(info["resumed"]) / rows))
    m["sagc/tail/deferred_queue"].append(float(info["queue"]))
    m["sagc/tail/carried_groups"].append(float(info["carried"]))
    m["sagc/tail/bubble"].append(float(info["bubble"]))
    m["sagc/tail/rate"].append(float(info["rate"]))
    m["sagc/tail/aborted"].append(float(len(info["aborted_lengths"])))
    m["sagc/tail/wasted_tokens"].append(float(info["wasted_tokens"]))
    m["sagc/tail/batch_growth"].append(float(info["trained_groups"] / max(info["prompts"], 1)))


def load_tail_state(trainer: Any, saved: Any, checkpoint: str) -> None:
    """This process's tail-control state from a checkpoint (named errors for a mismatch)."""
    if trainer._tail is None:
        if saved:
            logger_warning(f"{checkpoint} holds tail-control state, but this run uses rollout='full': the "
                           "partial completions and deferred prompts it kept are not resumed")
        return
    if not saved:
        raise ValueError(f"{checkpoint}: sagc_state.json has no tail-control state, but this run uses rollout policy "
                         f"{trainer.rollout_settings.policy!r}; resume with the settings the run was saved with")
    procs, rank = trainer.accelerator.num_processes, trainer.accelerator.process_index
    if len(saved) != procs:
        raise ValueError(f"{checkpoint}: tail-control state was saved by {len(saved)} processes, this run has {procs}")
    try:
        trainer._tail.load_state_dict(saved[rank])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{checkpoint}/sagc_state.json: tail[{rank}]: {exc}") from exc


def logger_warning(message: str) -> None:
    import logging

    logging.getLogger(__name__).warning("sagc: %s", message)
