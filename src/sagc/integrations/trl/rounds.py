"""The bookkeeping of SAGCGRPOTrainer's generation rounds (one round = one SAGC step).

`resolve_controller` turns the trainer's `group_controller` argument into a controller; `_Round`
holds what a round gathered (global arrays over processes); `log_round` puts a finished round
into TRL's metrics and the rollout trace (rank 0), where `_DecisionView` lets a rank-0 decision
kept as a plain dict be written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

import sagc
from sagc.trace import make_record


def resolve_controller(spec: Any, default_group_size: int, policy: str = "full") -> Any:
    """A controller from an instance, a registry name or a {kind: ..., ...} mapping. A name or a
    mapping gets the defaults of rollout policy `policy` (sagc.controllers.tail_defaults: SAGC
    under tail control chooses G by measured signal per second); an instance is used as given."""
    from sagc.controllers import tail_defaults

    if spec is None or spec == "static":
        return sagc.make("static", group_size=default_group_size)
    if isinstance(spec, str):
        return sagc.from_config(tail_defaults({"kind": spec}, policy))
    if isinstance(spec, Mapping):
        return sagc.from_config(tail_defaults(spec, policy))
    if callable(getattr(spec, "decide", None)) and callable(getattr(spec, "update", None)):
        return spec  # a sagc.Controller, or any object with the same decide/update interface
    raise TypeError(f"group_controller must be a sagc controller, a registry name ({sorted(sagc.REGISTRY)}) or a "
                    f"mapping with a 'kind' key, got {type(spec).__name__}")


@dataclass
class _Round:
    """What one generation round (= one SAGC step) has gathered so far. Global arrays."""

    index: int  # 1-based SAGC step
    group_size: int
    prompts: int  # global B(G)
    decision: dict  # Decision.as_dict() from rank 0
    started: float  # perf_counter at the start of the round
    rollout_s: float = 0.0
    lengths: list = field(default_factory=list)  # per scoring call: (rows,) int64 tokens
    truncated: list = field(default_factory=list)  # per scoring call: (rows,) bool
    rewards: list = field(default_factory=list)  # per scoring call: (rows,) float, NaN = unscorable
    skipped_prompts: int = 0  # fixed_completions: slots dealt but not used at this G
    dynamic: dict = field(default_factory=dict)  # dynamic-sampling counters
    # per-prompt group sizes (per_prompt.py): ids and sizes of the offered prompts (the B slots in global
    # slot order, then the candidates)
    prompt_ids: list | None = None  # (n,) int: the B dealt prompts, then the candidates offered (consumed ones once settled)
    sizes: Any = None  # (n,) int completions per offered prompt, 0 = skipped
    taken: int = 0  # length of the decision's prefix of the offered prompts
    replaced: int = 0  # candidates trained in place of skipped prompts
    extra_rows: list = field(default_factory=list)  # the consumed candidates' dataset rows
    layout: Any = None  # ragged.RaggedLayout once planned
    rewards_per_func: Any = None  # (rows, k) float, TRL's gathered rewards of the ragged call
    prompt_tokens: list = field(default_factory=list)  # this process's prompt length of every row generated
    overhead_s: float = 0.0  # wall time spent in sagc's own code this round (not TRL's)
    # tail control (tail.py): the trained rows' group ids over processes, and the step's record
    tail_layout: Any = None
    tail: dict | None = None


@dataclass(frozen=True)
class _DecisionView:
    """make_record reads `.risk`, `.queue` and `.probe` of a Decision; rank 0 kept it as a dict."""

    data: dict

    @property
    def risk(self) -> dict:
        return {int(k): v for k, v in self.data.get("risk", {}).items()}

    @property
    def queue(self) -> float:
        return float(self.data.get("queue", 0.0))

    @property
    def probe(self) -> bool:
        return bool(self.data.get("probe", False))


def log_round(trainer: Any, rnd: _Round, stats: Any, record: dict, obs: Any, ragged: dict, ids: list) -> None:
    """Rank 0, after the controller's update: the round's sagc/* metrics into TRL's metrics, and
    its record into the rollout trace (when one is open)."""
    metrics = trainer._metrics["train"]
    for key in ("event", "figure", "queue", "rollout_s", "step_s", "informative_groups"):
        metrics[f"sagc/{key}"].append(float(record[key]))
    metrics["sagc/event_rate"].append(float(getattr(trainer.group_controller, "event_rate", float("nan"))))
    metrics["sagc/max_length"].append(float(stats.length.max()))
    metrics["sagc/infeasible"].append(float(record["infeasible"]))
    metrics["sagc/probe"].append(float(record["probe"]))
    if trainer.group_layout.mode == "fixed_completions":
        metrics["sagc/prompts_skipped"].append(float(rnd.skipped_prompts))
    for key, value in rnd.dynamic.items():
        metrics[f"sagc/dynamic/{key}"].append(float(value))
    for key in ("skipped_prompts", "replaced_prompts", "padded_rows", "mean_group_size"):
        if key in ragged:
            metrics[f"sagc/per_prompt/{key}"].append(float(ragged[key]))
    if trainer._trace is None:
        return
    extra = {"global_step": record["global_step"], "prompts": rnd.prompts,
             "group_mode": trainer.group_layout.mode, "controller_name": trainer._controller_name()}
    if rnd.dynamic:
        extra["dynamic"] = dict(rnd.dynamic)
    if ragged:
        extra["per_prompt"] = {k: ragged[k] for k in ("skipped_prompts", "replaced_prompts", "padded_rows")}
    if rnd.tail is not None:
        extra["tail"] = record["tail"]
    if rnd.prompt_tokens:  # rank 0's mean prompt length: `sagc whatif --engine calibrate` prices prefills
        extra["prompt_tokens"] = int(round(float(np.mean(rnd.prompt_tokens))))
    trainer._trace.write(make_record(rnd.index, stats, _DecisionView(rnd.decision),
                                     obs if hasattr(obs, "event") else None, extra=extra, group_ids=ids))
