"""SAGCGRPOTrainer: TRL's GRPOTrainer with the group size G chosen online by a sagc controller.

    trainer = SAGCGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...),
                              train_dataset=..., group_controller={"kind": "sagc"})

Per generation round (one optimizer step with TRL's defaults) the trainer
  1. asks the controller for G on rank 0 and broadcasts it (all ranks use the same G);
  2. re-expands the sampler's prompt slots into contiguous groups of G rows and lets TRL
     generate, score and compute advantages with num_generations = G (groups reshape by G);
  3. optionally drops all-equal-reward groups and refills (DAPO dynamic sampling);
  4. at the optimizer-step boundary builds StepStats (lengths, truncation, rewards, group ids,
     rollout and step wall time), updates the controller, logs sagc/* metrics into TRL's
     metrics and appends a rollout-trace record (rank 0).
Controller state goes into every checkpoint (sagc_state.json) and comes back on resume.
With `rollout=` (tail control, tail.py) steps 2-3 are replaced: the rollout policy plans the step,
an engine that stops early generates it, and TRL scores the complete groups it kept.

Hooks (all call super(); none copies TRL code): `_get_train_sampler` / `get_train_dataloader`
(G-independent prompt slots), `_generate_and_score_completions` (G and group layout),
`_generate` (rollout time), `_generate_single_turn` (tail control's completions),
`_calculate_rewards` (lengths, truncation, rewards),
`_save_checkpoint` / `_load_optimizer_and_scheduler` (controller state), `train` (resume from
complete checkpoints only; relies on `resume_from_checkpoint` being its first parameter), and a
TrainerCallback for the step boundary. See sagc.integrations.trl.compat for the list checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, Iterator

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

import sagc
from sagc.integrations.trl import checkpoint as ckpt
from sagc.integrations.trl.compat import (TESTED_TRL, check_completion_count, check_ragged_compat, check_trl_compat,
                                          engine_outputs_unconverted, missing_attributes, trl_version,
                                          version_tested, warn_unsized_cpu_continuous_batching)
from sagc.integrations.trl.dispo import DISPOMixin
from sagc.integrations.trl.dynamic import PromptStream, dynamic_fill
from sagc.integrations.trl.layout import BatchSettings, GroupLayout, GroupOptions, plan_layout
from sagc.integrations.trl import per_prompt as pp
from sagc.integrations.trl import tail as tl
from sagc.integrations.trl.ragged import PROMPT_ID_COLUMN
from sagc.integrations.trl.rounds import _Round, log_round, resolve_controller
from sagc.rollout import rollout_settings
from sagc.stats import StepStats
from sagc.trace import TraceWriter

logger = logging.getLogger(__name__)


class _StepBoundary(TrainerCallback):
    """Forwards the Trainer's step events to the SAGC trainer (the optimizer-step boundary)."""

    def __init__(self, trainer: "SAGCGRPOTrainer") -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._sagc_train_begin()

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._sagc_step_end()

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer._sagc_train_end()


class SAGCGRPOTrainer(DISPOMixin, GRPOTrainer):
    """GRPOTrainer whose group size changes between optimizer steps, chosen by `group_controller`.

    Extra keyword arguments (all else as in GRPOTrainer):
        group_controller: a sagc controller, a registry name ("sagc", "static", ...) or a mapping
            {"kind": ..., settings...}. Default: static at GRPOConfig.num_generations.
        group_options: a GroupOptions (or mapping); the keywords below override its fields.
        group_mode: "fixed_prompts" (B = generation_batch_size / num_generations prompts per step,
            rows grow with G) or "fixed_completions" (generation_batch_size rows, B = rows / G).
        group_sizes / min_group_size / max_group_size: the allowed G (checked against the batch
            settings; default every compatible G in [2, 2 x num_generations]).
        dynamic_sampling, max_refill_rounds: DAPO dynamic sampling and its bound on extra rounds.
        trace_path: rollout trace JSONL ("auto": <output_dir>/sagc_trace.jsonl; None: no trace).
        rollout: tail control inside the step (sagc.rollout): a policy name ("full", "drop", "resume",
            "defer", "auto"), a mapping {policy: ..., knobs...} or a RolloutSettings; see tail.py.
        ragged_weight: with a controller that sizes each prompt ({"kind": "sagc", "per_prompt": True},
            "knapsack"): "prompt" (every trained prompt weighs the same) or "completion" (see ragged.py).
        prompt_lookahead: with such a controller, prompts offered per step as a multiple of B (default
            4): the dealt B, then candidates that take a skipped prompt's place (see per_prompt.py).
        dispo: DISPO loss settings (sagc.losses.DISPOSettings or a mapping); None: TRL's loss_type.
    """

    def __init__(self, *args: Any, group_controller: Any = None, group_options: Any = None,
                 group_mode: str | None = None, group_sizes: Any = None, min_group_size: int | None = None,
                 max_group_size: int | None = None, dynamic_sampling: bool | None = None,
                 max_refill_rounds: int | None = None, trace_path: str | None = None,
                 ragged_weight: str | None = None, prompt_lookahead: int | None = None, rollout: Any = None,
                 **kwargs: Any) -> None:
        problems = check_trl_compat()
        if problems:
            raise RuntimeError(
                f"SAGCGRPOTrainer was written against TRL {', '.join(TESTED_TRL)}; the installed TRL {trl_version()} "
                "changed methods it overrides or relies on: " + "; ".join(problems))
        if not version_tested():
            logger.warning("sagc: TRL %s has the methods SAGCGRPOTrainer hooks into, but it was tested with TRL %s "
                           "only", trl_version(), ", ".join(TESTED_TRL))
        options = GroupOptions.from_any(group_options, group_mode=group_mode, group_sizes=group_sizes,
                                        min_group_size=min_group_size, max_group_size=max_group_size,
                                        dynamic_sampling=dynamic_sampling, max_refill_rounds=max_refill_rounds,
                                        trace_path=trace_path, ragged_weight=ragged_weight,
                                        prompt_lookahead=prompt_lookahead)
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        controller = None
        tail_settings = rollout_settings(rollout)
        if config is not None:  # fail before loading models when the batch settings cannot work
            plan_layout(BatchSettings.from_args(config, config.world_size), options)
            controller = resolve_controller(group_controller, config.num_generations, tail_settings.policy)
            self._check_per_prompt(controller, options, config, kwargs.get("dispo") is not None)
            tl.check_tail(tail_settings, controller, options, config, kwargs)
        super().__init__(*args, **kwargs)

        missing = missing_attributes(self)
        if missing:
            raise RuntimeError(f"GRPOTrainer of TRL {trl_version()} lacks attributes SAGCGRPOTrainer needs: {missing}")
        self.group_options = options
        self.group_layout: GroupLayout = plan_layout(
            BatchSettings.from_args(self.args, self.accelerator.num_processes), options)
        self._generate_every = self.args.steps_per_generation * self.num_iterations
        if options.dynamic_sampling:
            if not (hasattr(self.train_dataset, "__getitem__") and hasattr(self.train_dataset, "__len__")):
                raise ValueError("dynamic_sampling=True refills steps with random prompts, so it needs a map-style "
                                 "train_dataset (datasets.Dataset), not an IterableDataset; set "
                                 "dynamic_sampling=False or materialise the dataset")
            if getattr(self, "_is_vlm", False):
                raise ValueError("dynamic_sampling=True does not support vision-language models yet; set "
                                 "dynamic_sampling=False")
        if controller is None:
            controller = resolve_controller(group_controller, self.args.num_generations, tail_settings.policy)
            self._check_per_prompt(controller, options, self.args, self.dispo is not None)
        self.group_controller = controller
        self._per_prompt = bool(getattr(controller, "uses_prompt_ids", False))
        if self._per_prompt:
            if getattr(self, "_is_vlm", False):
                raise ValueError("per-prompt group sizes do not support vision-language models yet; use a "
                                 "controller without per-prompt sizes")
            self.train_dataset = pp.with_prompt_ids(self.train_dataset)
        # candidates beyond the dealt B, the same on every process (per_prompt.py, step 2)
        self._lookahead = pp.Lookahead(self.train_dataset, self.args.seed, options.prompt_lookahead) \
            if self._per_prompt and options.prompt_lookahead > 1 else None
        self.rollout_settings = tail_settings
        self._tail: tl.TailControl | None = None
        self._prepared: list | None = None  # completions handed to TRL's scoring (tail control)
        if tail_settings.aborts:
            tl.check_tail(tail_settings, controller, options, self.args, kwargs, trainer=self)
            self.train_dataset = pp.with_prompt_ids(self.train_dataset)
            self._tail = tl.TailControl(tail_settings, self.train_dataset, self.args.seed,
                                        self.accelerator.process_index)
        self.sagc_history: list[dict] = []  # one dict per finished SAGC step (also in the trace)
        self._round: _Round | None = None
        self._rounds_done = 0
        self._stream = PromptStream(len(self.train_dataset), self.args.seed + 1) if options.dynamic_sampling else None
        self._refill_rows = None  # the train set with the loader's column filtering, built on first refill
        self._trace: TraceWriter | None = None
        self._trace_size_at_resume: int | None = None
        self._resumed = False
        if options.trace_path == "auto":
            self.trace_path: str | None = os.path.join(self.args.output_dir, "sagc_trace.jsonl")
        else:
            self.trace_path = options.trace_path
        self.add_callback(_StepBoundary(self))
        warn_unsized_cpu_continuous_batching(self.args, self.accelerator.device)

    @staticmethod
    def _check_per_prompt(controller: Any, options: GroupOptions, config: Any, dispo: bool) -> None:
        pp.check_per_prompt(controller, options, "vespo" if dispo else config.loss_type)
        if getattr(controller, "uses_prompt_ids", False):
            problems = check_ragged_compat()
            if problems:
                raise RuntimeError(f"per-prompt group sizes rely on TRL internals that changed in TRL {trl_version()}: "
                                   + "; ".join(problems))

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()  # remove_unused_columns=True must keep the prompt ids
        keep_ids = getattr(self, "_per_prompt", False) or getattr(self, "_tail", None) is not None
        if keep_ids and PROMPT_ID_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, PROMPT_ID_COLUMN]

    # ---- sampler: prompt slots that do not depend on G ------------------------------------------
    @contextlib.contextmanager
    def _num_generations(self, g: int) -> Iterator[None]:
        """TRL reads self.num_generations wherever it needs G; set it for one call only."""
        saved = self.num_generations
        self.num_generations = g
        try:
            yield
        finally:
            self.num_generations = saved

    def _get_train_sampler(self, dataset=None):
        # Batches are fetched before a step's G is known, so the sampler deals fixed prompt slots
        # (each prompt `slot_repeat` times, contiguous); generation re-expands them to G.
        with self._num_generations(self.group_layout.slot_repeat):
            return super()._get_train_sampler(dataset)

    def get_train_dataloader(self):
        with self._num_generations(self.group_layout.slot_repeat):  # iterable datasets repeat here
            return super().get_train_dataloader()

    # ---- generation with the step's G -------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        if not self.model.training:  # evaluation keeps TRL's fixed num_generations_eval
            return super()._generate_and_score_completions(inputs)
        layout = self.group_layout
        if self._round is not None:  # TRL regenerated inside a round (resume mid-round): close it
            self._sagc_end_round()
        if len(inputs) != layout.local_slots * layout.slot_repeat:
            raise RuntimeError(f"expected {layout.local_slots} prompts x {layout.slot_repeat} rows from the "
                               f"sampler on this process, got {len(inputs)} rows (was the sampler replaced?)")
        slots = inputs[::layout.slot_repeat]  # (local_slots,) one row per prompt
        if self._tail is not None:  # tail control: the policy plans, the engine stops early (tail.py)
            return tl.tail_step(self, slots, self._sagc_begin_round())
        if self._per_prompt:  # fixed_prompts: every slot is a prompt of this step, then candidates
            dealt = pp.gather_ids(self, pp.slot_ids(slots))
            extra, ends = self._lookahead.offer(dealt) if self._lookahead is not None else ([], [])
            rnd = self._sagc_begin_round(prompt_ids=dealt + extra, dealt=len(dealt))
            pp.settle_offer(self, rnd, len(dealt), ends)
            return pp.score_ragged(self, slots, rnd)
        rnd = self._sagc_begin_round()
        b_local = layout.local_prompts(rnd.group_size)
        rnd.skipped_prompts += (len(slots) - b_local) * layout.num_processes
        output = self._score_prompts(slots[:b_local], rnd.group_size)
        if self.group_options.dynamic_sampling:
            output = dynamic_fill(self, output, rnd, b_local)
        return output

    def _score_prompts(self, prompts: list, g: int) -> dict:
        """TRL's scoring of `prompts`, each expanded to g contiguous rows, with num_generations = g."""
        return self._score_rows([dict(p) for p in prompts for _ in range(g)], g)  # copies: TRL may write into a row

    def _score_rows(self, rows: list, g: int) -> dict:
        """TRL's scoring of `rows` (groups of g contiguous rows) with num_generations = g."""
        with self._num_generations(g):
            return super()._generate_and_score_completions(rows)

    def _generate(self, prompts):
        start = time.perf_counter()
        prepared = self._prepared is not None  # tail control generated these already (timed there)
        with engine_outputs_unconverted(self.model, self.args):  # transformers >= 5.24 with bf16 (compat)
            result = super()._generate(prompts)
        if self._round is not None and self.model.training:  # prompt lengths: what-if prices prefills per token
            self._round.prompt_tokens += [len(ids) for ids in result[0]] if isinstance(result, tuple) else []
        if self._round is not None and self.model.training and not prepared:
            self._round.rollout_s += time.perf_counter() - start
            check_completion_count(result, len(prompts), self.args)
        return result

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        prepared, self._prepared = self._prepared, None
        if prepared is None:
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)
        if len(prepared) != len(prompt_ids):
            raise RuntimeError(f"tail control prepared {len(prepared)} completions for {len(prompt_ids)} prompts")
        return prepared, None  # no sampler log-probs: the rows are scored as TRL scores its own

    def _refill_rows_all(self) -> Any:
        """The train set as the loader yields it (column filtering applied), for rows by index."""
        if self._refill_rows is None:
            self._refill_rows = self._remove_unused_columns(self.train_dataset, description="training")
        return self._refill_rows

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        rnd = self._round
        if rnd is not None and self.model.training:
            start = time.perf_counter()
            eos_and_pad = self._eos_and_pad()
            # A completion with no tokens (possible with some engines) counts as 1 token: StepStats
            # lengths are > 0, and such a completion cannot be a straggler anyway.
            local = torch.tensor([[max(len(ids), 1), int(len(ids) == 0 or int(ids[-1]) not in eos_and_pad)]
                                  for ids in completion_ids_list], dtype=torch.long, device=self.accelerator.device)
            both = self.accelerator.gather(local).cpu().numpy()  # (rows, 2) all processes, rank order
            rnd.lengths.append(both[:, 0].astype(np.int64))
            rnd.truncated.append(both[:, 1].astype(bool))
            # the reward TRL optimises: weighted sum over reward functions, NaN where none applied
            weighted = rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
            reward = torch.nansum(weighted, dim=1)
            reward[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")
            rnd.rewards.append(reward.double().cpu().numpy())
            if rnd.layout is not None or self._tail is not None:  # ragged groups: advantages recomputed from these
                rnd.rewards_per_func = rewards_per_func.double().cpu().numpy()
            rnd.overhead_s += time.perf_counter() - start
        return rewards_per_func

    def _controller_name(self) -> str:
        return str(getattr(self.group_controller, "name", type(self.group_controller).__name__))

    def _text_tokenizer(self) -> Any:
        return getattr(self, "_tokenizer", None) or getattr(self.processing_class, "tokenizer", self.processing_class)

    def _pad_token_id(self) -> int:
        return int(self._text_tokenizer().pad_token_id)

    def _eos_and_pad(self) -> set[int]:
        """Token ids that end a completion normally; a completion ending otherwise was truncated.

        The same rule as TRL's clipped_ratio: TRL >= 1.16 also honours every eos id of the
        model's generation config (eos_token_ids), older versions the tokenizer's eos only.
        """
        eos = getattr(self, "eos_token_ids", None) or [self._text_tokenizer().eos_token_id]
        return {int(i) for i in eos} | {self._pad_token_id()}

    # ---- the SAGC step: decide, observe, log --------------------------------------------------
    def _sagc_begin_round(self, prompt_ids: list[int] | None = None, dealt: int = 0) -> _Round:
        start = time.perf_counter()
        payload: dict[str, Any] | None = None
        if self.accelerator.is_main_process:
            try:
                extra = {} if prompt_ids is None else {"prompt_ids": prompt_ids}
                decision = self.group_controller.decide(self.group_layout.allowed,
                                                        prompts=self.group_layout.decide_prompts(), **extra)
                as_dict = getattr(decision, "as_dict", None)
                info = as_dict() if callable(as_dict) else {}
                g = self.group_layout.check(getattr(decision, "group_size", decision))
                payload = {"group_size": g, "decision": info}
                if prompt_ids is not None:  # G_i per offered prompt; one the decision does not name is skipped
                    named = getattr(decision, "group_sizes", None)  # a prefix of prompt_ids
                    payload["sizes"] = [g] * dealt + [0] * (len(prompt_ids) - dealt) if named is None else \
                        [int(named.get(p, 0)) for p in prompt_ids]
                    payload["taken"] = dealt if named is None else len(named)
            except Exception as exc:  # other ranks wait in the broadcast: tell them, then raise
                payload = {"error": f"{type(exc).__name__}: {exc}"}
                if self.accelerator.num_processes == 1:
                    raise
                self._broadcast(payload)
                raise
        payload = self._broadcast(payload)
        if "error" in payload:
            raise RuntimeError(f"the group controller failed on rank 0: {payload['error']}")
        g = int(payload["group_size"])
        self._round = _Round(index=self._rounds_done + 1, group_size=g, prompts=self.group_layout.prompts_per_step[g],
                             decision=payload["decision"], started=start, prompt_ids=prompt_ids,
                             sizes=None if prompt_ids is None else np.asarray(payload["sizes"], dtype=np.int64),
                             taken=int(payload.get("taken", 0)))
        metrics = self._metrics["train"]
        metrics["sagc/group_size"].append(float(g))
        metrics["sagc/prompts"].append(float(self._round.prompts))
        for size, p in payload["decision"].get("risk", {}).items():
            metrics[f"sagc/risk/G{size}"].append(float(p))
        self._round.overhead_s += time.perf_counter() - start
        return self._round

    def _broadcast(self, payload: Any) -> Any:
        if self.accelerator.num_processes == 1:
            return payload
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([payload], from_process=0)[0]

    def _sagc_step_end(self) -> None:
        # The round ends where TRL would generate next: after generate_every micro-steps, which is
        # an optimizer-step boundary (plan_layout checked the alignment).
        if self._round is not None and self._step % self._generate_every == 0:
            self._sagc_end_round()

    def _sagc_end_round(self) -> None:
        rnd, self._round = self._round, None
        start = time.perf_counter()
        step_s = start - rnd.started
        g = rnd.group_size
        prompt_ids, ragged = None, {}
        if rnd.layout is not None:  # per-prompt sizes: the real rows, one group per trained slot
            stats, prompt_ids, ids, ragged = pp.ragged_stats(rnd, rollout_s=rnd.rollout_s, step_s=step_s)
        elif rnd.tail_layout is not None:  # tail control: the trained complete groups
            stats, ids = tl.tail_stats(rnd, rollout_s=rnd.rollout_s, step_s=step_s)
        else:
            sizes = [len(x) // g for x in rnd.lengths]  # groups per scoring call (global)
            ids = [f"s{rnd.index}-g{k}" if c == 0 else f"s{rnd.index}-r{c}-g{k}" for c, n in enumerate(sizes)
                   for k in range(n)]
            stats = StepStats(group_id=np.repeat(np.arange(len(ids)), g), length=np.concatenate(rnd.lengths),
                              reward=np.concatenate(rnd.rewards), truncated=np.concatenate(rnd.truncated),
                              group_size=g, rollout_s=rnd.rollout_s, step_s=step_s)
        self._rounds_done += 1
        record = {"step": rnd.index, "global_step": int(self.state.global_step), "group_size": g,
                  "prompts": rnd.prompts, "rows": stats.n, "rollout_s": rnd.rollout_s, "step_s": step_s,
                  "informative_groups": stats.informative_groups(),
                  "reward_mean": float(np.nanmean(stats.reward)) if np.isfinite(stats.reward).any() else float("nan"),
                  "mean_length": float(stats.length.mean()), "max_length": int(stats.length.max()),
                  "lengths": stats.length.tolist(), "risk": dict(rnd.decision.get("risk", {})),
                  "infeasible": bool(rnd.decision.get("infeasible", False)),
                  "probe": bool(rnd.decision.get("probe", False)), **rnd.dynamic, **ragged}
        if rnd.tail is not None:
            record["tail"] = tl.trace_fields(rnd, self.rollout_settings)
            record["tail_rows"] = {k: list(rnd.tail[k]) for k in ("group_keys", "prompt_ids")}  # history only
        if self.group_layout.mode == "fixed_completions":
            record["skipped_prompts"] = rnd.skipped_prompts
        if rnd.tail is not None:  # every process: the policy's feedback must match across processes
            tl.log_step(self, rnd, stats, step_s, record["tail"])
        if not self.accelerator.is_main_process:
            record["overhead_s"] = rnd.overhead_s + (time.perf_counter() - start)
            self.sagc_history.append(record)
            return
        obs = self.group_controller.update(stats, **({} if prompt_ids is None else {"prompt_ids": prompt_ids}))
        record.update(event=bool(getattr(obs, "event", False)), figure=float(getattr(obs, "figure", float("nan"))),
                      queue=float(getattr(obs, "queue", 0.0)))
        self.sagc_history.append(record)
        log_round(self, rnd, stats, record, obs, ragged, ids)
        # sagc's own cost this step (decide, bookkeeping, update, metrics, trace), for the overhead budget
        record["overhead_s"] = rnd.overhead_s + (time.perf_counter() - start)
        self._metrics["train"]["sagc/overhead_s"].append(record["overhead_s"])

    def _sagc_train_begin(self) -> None:
        # A round left open by an interrupted train() is dropped; a resume restored its state already.
        self._round = None
        resumed, self._resumed = self._resumed, False
        if not resumed:
            self._rounds_done = 0  # a fresh run numbers its steps from 1 (the controller keeps its state)
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        if self.accelerator.is_main_process and self.trace_path is not None:
            self._trace = ckpt.open_trace(self.trace_path, resumed, self._trace_size_at_resume)

    def _sagc_train_end(self) -> None:
        if self._round is not None:  # training stopped inside a round: its rollout still counts
            self._sagc_end_round()
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    # ---- checkpoints ------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        # transformers would load a checkpoint a kill left half-written (and crash, or resume
        # without optimizer state): True means the newest *complete* one, a named partial one is
        # refused. DeepSpeed / FSDP keep optimizer state in their own layout: left to transformers.
        if resume_from_checkpoint not in (None, False) and not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            resume_from_checkpoint, skipped = ckpt.resolve_resume(self.args.output_dir, resume_from_checkpoint)
            for folder, problems in skipped:
                logger.warning("sagc: skipping %s, incomplete (%s): the run probably stopped while saving it",
                               folder, "; ".join(problems))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # sagc_state.json goes in first: transformers deletes older checkpoints (save_total_limit)
        # at the end of its save, so a kill in between must not leave the newest checkpoint without
        # controller state. A kill mid-save leaves a partial folder that ckpt.checkpoint_problems
        # recognises; resume then uses the previous, complete one.
        tail_state = None
        if self._tail is not None:  # every process's own queue and kept tokens (a collective: all call it)
            from accelerate.utils import gather_object

            mine = self._tail.state_dict()
            tail_state = [mine] if self.accelerator.num_processes == 1 else gather_object([mine])
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial),
                                  f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            state_dict = getattr(self.group_controller, "state_dict", None)
            ckpt.write_state(folder, {
                "controller": state_dict() if callable(state_dict) else None,
                "controller_name": self._controller_name(),
                "rounds": self._rounds_done,
                "group_mode": self.group_layout.mode,
                "allowed": list(self.group_layout.allowed),
                "stream": self._stream.state_dict() if self._stream is not None else None,
                "lookahead": self._lookahead.stream.state_dict() if self._lookahead is not None else None,
                "tail": tail_state,
                "trace": self._trace_at_save(),
            })
        super()._save_checkpoint(model, trial)

    def _trace_at_save(self) -> dict | None:
        if self._trace is None or self.trace_path is None or not os.path.exists(self.trace_path):
            return None
        return ckpt.trace_record(self.trace_path, self.args.output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        state = ckpt.read_state(checkpoint)
        if state.get("allowed") != list(self.group_layout.allowed) or state.get("group_mode") != self.group_layout.mode:
            logger.warning("sagc: the checkpoint was written with group_mode=%s, allowed G %s; this run uses %s, %s",
                           state.get("group_mode"), state.get("allowed"), self.group_layout.mode,
                           list(self.group_layout.allowed))
        if state.get("controller") is not None:
            self.group_controller.load_state_dict(state["controller"])
        self._rounds_done = int(state["rounds"])
        if self._stream is not None and state.get("stream") is not None:
            self._stream.load_state_dict(state["stream"])
        if self._lookahead is not None and state.get("lookahead") is not None:
            self._lookahead.stream.load_state_dict(state["lookahead"])
        tl.load_tail_state(self, state.get("tail"), checkpoint)
        trace = state.get("trace")
        same = trace and ckpt.same_trace(trace, self.trace_path, self.args.output_dir)
        self._trace_size_at_resume = int(trace["bytes"]) if same else None
        self._resumed = True
        self._round = None
