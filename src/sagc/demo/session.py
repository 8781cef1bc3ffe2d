"""One GRPO training session with a group controller, as the demo and `sagc train` run it.

A TrainerCallback keeps a *training* wall clock (held-out evaluations pause it), stops at the
time budget (once the run has made `min_steps` steps, and at `max_time_s` whatever it made),
evaluates every `eval_every_s` seconds of training, and hands each finished step and evaluation
to `on_update` so the caller can write a report as it goes (an interrupted run still leaves
everything up to its last step on disk). With `keep_trl_logs`, TRL's logged metrics (the dicts
its console printer used to print) go to the session log too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from transformers import TrainerCallback

EvalFn = Callable[[Any], Mapping[str, Any]]  # model -> {"accuracy", "mean_length", "truncated_rate", ...}


@dataclass
class SessionLog:
    """Everything the report needs about one run (plain JSON types)."""

    label: str
    controller: Mapping[str, Any]
    status: str = "running"
    history: list = field(default_factory=list)  # per optimizer step
    evals: list = field(default_factory=list)  # held-out evaluations
    lengths: list = field(default_factory=list)  # completion lengths seen in training (tokens)
    trl_logs: list = field(default_factory=list)  # TRL's logged metrics, with "step" (sagc train)
    machine: Mapping[str, Any] | None = None  # sagc.tasks.machine.machine_info() (sagc train)

    @property
    def steps_per_s(self) -> float | None:
        """Optimizer steps per second of training (evaluations excluded)."""
        wall = self.history[-1]["wall_s"] if self.history else None
        return len(self.history) / wall if wall else None

    def as_dict(self) -> dict:
        out = {"label": self.label, "controller": dict(self.controller), "status": self.status,
               "history": self.history, "evals": self.evals, "lengths": self.lengths}
        if self.trl_logs:
            out["trl_logs"] = self.trl_logs
        if self.machine is not None:
            from sagc.tasks.machine import machine_line

            out["machine"] = dict(self.machine)
            out["machine_line"] = machine_line(self.machine, {self.label: self.steps_per_s})
        return out


class SessionCallback(TrainerCallback):
    """Budget, periodic evaluation and per-step logging for a SAGCGRPOTrainer."""

    def __init__(self, log: SessionLog, evaluate: EvalFn | None, time_budget_s: float, eval_every_s: float,
                 on_update: Callable[[], None], progress: Callable[[float, int], None] | None = None,
                 initial_eval: Mapping[str, Any] | None = None, min_steps: int = 0,
                 max_time_s: float = math.inf, keep_trl_logs: bool = False) -> None:
        self.log, self.evaluate = log, evaluate
        self.initial_eval = initial_eval  # the starting policy's result, if the caller already has it
        self.budget, self.every = time_budget_s, eval_every_s
        # past the budget until min_steps steps, but never past max_time_s of training
        self.min_steps, self.max_time_s = min_steps, max(max_time_s, time_budget_s)
        self.keep_trl_logs = keep_trl_logs
        self.on_update, self.progress = on_update, progress
        self.trainer: Any = None  # set by attach()
        self.clock = 0.0  # training seconds so far (evaluations excluded)
        self._mark: float | None = None
        self._next_eval = eval_every_s

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer
        trainer.add_callback(self)

    def run_eval(self, model: Any, step: int) -> None:
        if self.evaluate is None:
            return
        result = dict(self.evaluate(model))
        self.log.evals.append({"step": step, "wall_s": round(self.clock, 3), **result})

    # ---- TrainerCallback hooks -------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kw):
        if self.initial_eval is not None and self.evaluate is not None:  # same policy, same seed
            self.log.evals.append({"step": 0, "wall_s": 0.0, **dict(self.initial_eval)})
        else:
            self.run_eval(model, 0)
        self.on_update()
        self._mark = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kw):
        now = time.perf_counter()
        self.clock += now - (self._mark or now)
        hist = getattr(self.trainer, "sagc_history", [])
        if hist:
            h = dict(hist[-1])
            row = {"step": state.global_step, "wall_s": round(self.clock, 3),
                   "group_size": h.get("group_size"), "event": h.get("event"), "queue": h.get("queue"),
                   "figure": h.get("figure"), "rollout_s": h.get("rollout_s"), "step_s": h.get("step_s"),
                   "reward": h.get("reward_mean"), "completion_length": h.get("mean_length"),
                   "max_length": h.get("max_length"), "informative_groups": h.get("informative_groups"),
                   "risk": h.get("risk"), "infeasible": h.get("infeasible"),
                   "rows": h.get("rows")}  # completions this step: its share of `lengths`
            self.log.history.append(row)
            self.log.lengths.extend(h.get("lengths", []))
        if self.clock >= self._next_eval:
            self.run_eval(model, state.global_step)
            while self._next_eval <= self.clock:
                self._next_eval += self.every
        if (self.clock >= self.budget and len(self.log.history) >= self.min_steps) or self.clock >= self.max_time_s:
            control.should_training_stop = True
        if self.progress is not None:
            self.progress(self.clock, state.global_step)
        self.on_update()
        self._mark = time.perf_counter()  # evaluation and report writing do not count
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if self.keep_trl_logs and logs:
            self.log.trl_logs.append({"step": state.global_step, **logs})

    def on_train_end(self, args, state, control, model=None, **kw):
        last = self.log.evals[-1]["step"] if self.log.evals else -1
        if last != state.global_step:  # always end on an evaluation of the final policy
            self.run_eval(model, state.global_step)
        self.log.status = "finished"
        self.on_update()


def finite_mean(values: list) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")
