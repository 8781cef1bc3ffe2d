"""Rollout engines that stop a step when the rollout policy says so (issue 21, docs/trl.md).

TRL generates a step's completions in one call and waits for the last one. Tail control needs
an engine that reports completions as they finish and can end the step early, keeping what the
unfinished ones have generated so far (for `resume`). Two engines, one contract:

    result = run_continuous(...)  or  run_generate(...)
    result.tokens[i]   tokens request i generated in this call (a prefix if unfinished)
    result.finished    (n,) bool: request i ended (EOS, or its token budget reached)
    result.order       (n,) int: the order in which requests finished (unfinished: n)

- `run_continuous`: transformers' continuous batching (`ContinuousBatchingManager`). Every
  completion is its own request (streamed, so a cancelled request's tokens are known); when
  the policy is satisfied the rest are cancelled with `cancel_request`. A finished request's
  slot is refilled at once, so ending early saves the tail's time.
- `run_generate`: plain `model.generate` on one left-padded batch. A stopping criterion ends
  the whole batch once the policy is satisfied; rows still running are unfinished, with the
  tokens they have so far. A padded batch runs every row until the batch stops, so what early
  stop saves is the decode steps after the stop, not slots refilled.

Several processes (`sync`): each runs its own requests, and the step ends for all of them at
the same moment: they agree with one all-reduce per poll (continuous batching, every `poll_s`
seconds) or per decode step (generate): stop once *every* process's policy is satisfied.
The generate engine runs with EOS handled by this module, not by `generate`, so that no process
leaves its decode loop before the others (a process whose rows all ended keeps stepping, as a
padded batch does anyway, until everyone stops).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

StopRule = Callable[[np.ndarray], bool]  # finished (n,) bool -> may this process end the step?
Sync = Callable[[bool], bool]  # this process's vote -> does everyone stop?


@dataclass
class EngineResult:
    tokens: list[list[int]]  # per request: tokens generated in this call
    finished: np.ndarray  # (n,) bool
    order: np.ndarray  # (n,) int finish order; n for unfinished
    seconds: float  # wall time of the call


def _alone(vote: bool) -> bool:
    return vote


def _check(inputs: Sequence[Sequence[int]], budgets: Sequence[int]) -> None:
    if len(inputs) != len(budgets):
        raise ValueError(f"one token budget per request: {len(inputs)} requests, {len(budgets)} budgets")
    if any(int(b) < 1 for b in budgets):
        raise ValueError(f"every request needs a token budget >= 1, got {min(budgets)}")


def run_continuous(model: Any, inputs: Sequence[Sequence[int]], budgets: Sequence[int], should_stop: StopRule,
                   generation_config: Any = None, cb_config: Any = None, sync: Sync | None = None,
                   poll_s: float = 0.02) -> EngineResult:
    """Run `inputs` (token ids, each a prompt plus any resumed tokens) on transformers' continuous
    batching, request i generating at most budgets[i] tokens; end once `should_stop` (and every
    process, through `sync`) agrees, cancelling the requests still running."""
    from transformers.generation.continuous_batching.utils import WorkloadHints

    _check(inputs, budgets)
    sync = sync or _alone
    n = len(inputs)
    start = time.perf_counter()
    tokens: list[list[int]] = [[] for _ in range(n)]
    finished = np.zeros(n, dtype=bool)
    order = np.full(n, n, dtype=np.int64)
    if n == 0:  # nothing to run here; still vote every poll until everyone stops (one vote would hang them)
        while not sync(True):
            time.sleep(poll_s)
        return EngineResult(tokens, finished, order, time.perf_counter() - start)
    hints = WorkloadHints(max_prompt_length=max(len(x) for x in inputs),
                             max_generated_length=int(max(budgets)), num_requests=n)
    ids = [f"sagc-{i}" for i in range(n)]
    index = {rid: i for i, rid in enumerate(ids)}
    done = 0
    with model.continuous_batching_context_manager(generation_config=generation_config, block=True, timeout=5,
                                                   continuous_batching_config=cb_config, workload_hints=hints) as mgr:
        for rid, x, b in zip(ids, inputs, budgets):
            mgr.add_request(input_ids=list(map(int, x)), request_id=rid, max_new_tokens=int(b), streaming=True)
        while True:
            deadline = time.perf_counter() + poll_s
            while done < n:
                wait = deadline - time.perf_counter()
                if wait <= 0:
                    break
                out = mgr.get_result(timeout=wait)
                if out is None:
                    if not mgr.is_running():
                        raise RuntimeError("transformers' continuous batching stopped before the step ended")
                    continue
                i = index.get(out.request_id)
                if i is None or finished[i]:
                    continue
                if out.error is not None:
                    raise RuntimeError(f"continuous batching request {out.request_id} failed: {out.error}")
                tokens[i] = list(out.generated_tokens)
                if out.is_finished():
                    finished[i], order[i] = True, done
                    done += 1
            if sync(bool(should_stop(finished))):
                break
        for i in np.flatnonzero(~finished):
            mgr.cancel_request(ids[i])
    return EngineResult(tokens, finished, order, time.perf_counter() - start)


class _PolicyStop:
    """A transformers StoppingCriteria: tracks which rows ended (EOS or budget) and ends the whole
    batch once the policy (and every process) agrees."""

    def __init__(self, prompt_len: int, budgets: np.ndarray, eos: set[int], should_stop: StopRule, sync: Sync):
        self.prompt_len, self.budgets, self.should_stop, self.sync = prompt_len, budgets, should_stop, sync
        self.eos = np.asarray(sorted(eos), dtype=np.int64)
        n = budgets.shape[0]
        self.finished = np.zeros(n, dtype=bool)
        self.order = np.full(n, n, dtype=np.int64)
        self.length = np.zeros(n, dtype=np.int64)  # tokens kept per row (up to and including its end)
        self.done = 0

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        step = int(input_ids.shape[1]) - self.prompt_len  # tokens generated so far
        last = input_ids[:, -1].cpu().numpy()
        live = ~self.finished
        self.length[live] = step
        ended = live & (np.isin(last, self.eos) | (step >= self.budgets))
        for i in np.flatnonzero(ended):  # rows ending at the same step: in row order
            self.finished[i], self.order[i] = True, self.done
            self.done += 1
        stop = self.sync(bool(self.should_stop(self.finished)))
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def run_generate(model: Any, inputs: Sequence[Sequence[int]], budgets: Sequence[int], should_stop: StopRule,
                 eos: set[int], pad_token_id: int, generation_config: Any = None, sync: Sync | None = None,
                 max_new_tokens: int | None = None) -> EngineResult:
    """Run `inputs` as one left-padded `generate` batch; end the batch once `should_stop` (and
    every process) agrees. `max_new_tokens` must be the same on every process (default: the
    largest budget)."""
    import copy

    import torch
    from transformers import StoppingCriteriaList

    _check(inputs, budgets)
    sync = sync or _alone
    n = len(inputs)
    start = time.perf_counter()
    if n == 0:  # this process has nothing to run; it still takes part in every vote
        for _ in range(int(max_new_tokens or 0)):
            if sync(True):
                break
        return EngineResult([], np.zeros(0, bool), np.zeros(0, np.int64), time.perf_counter() - start)
    device = next(model.parameters()).device
    width = max(len(x) for x in inputs)
    ids = torch.full((n, width), int(pad_token_id), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, x in enumerate(inputs):
        ids[i, width - len(x):] = torch.as_tensor(list(map(int, x)), dtype=torch.long)
        mask[i, width - len(x):] = 1
    b = np.asarray(budgets, dtype=np.int64)
    stop = _PolicyStop(width, b, eos, should_stop, sync)
    config = copy.deepcopy(generation_config) if generation_config is not None else copy.deepcopy(model.generation_config)
    # EOS is tracked by _PolicyStop, so every process steps until all agree. Not None: generate then
    # takes the model's own eos_token_id (measured with transformers 5.24); [] means none.
    config.eos_token_id = []
    config.max_new_tokens = int(max_new_tokens or b.max())
    config.min_new_tokens = None
    config.pad_token_id = int(pad_token_id)
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                             stopping_criteria=StoppingCriteriaList([stop]))
    new = out[:, width:].cpu()
    tokens = [new[i, :int(stop.length[i])].tolist() for i in range(n)]
    return EngineResult(tokens, stop.finished.copy(), stop.order.copy(), time.perf_counter() - start)


__all__ = ["EngineResult", "run_continuous", "run_generate"]
