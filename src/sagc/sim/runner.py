"""Run controllers on a scenario: the numbers behind `sagc simulate`.

    result = run_scenario(load_scenario("heavy-tail"))
    for run in result["controllers"]:      # in the scenario's order
        print(run["label"], run["summary"]["straggler_rate"], run["summary"]["informative_groups_per_s"])
    result["hindsight"]["best_g_within_budget"]

Every controller sees the same steps (common random numbers, see sagc.sim.lengths), and every
run is scored by the scenario's straggler rule, whatever rule a controller uses internally, so
the rates are comparable. `hindsight` replays every allowed static G on the same steps: the
best fixed G one could have picked knowing the future, with and without the event budget.
Output is plain JSON types, floats rounded to 9 significant digits: the same scenario and
seed give byte-identical `to_json(result)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from sagc.controllers import Controller, StaticController
from sagc.rollout import RolloutPolicy, rollout_settings
from sagc.sim.engine import full_token_rate
from sagc.sim.lengths import LengthModel
from sagc.sim.scenario import Scenario, controller_from_entry
from sagc.sim.stepper import Stepper, StepResult, ragged_signal
from sagc.stats import StepStats
from sagc import _io
from sagc._io import clean_json
from sagc.trace import make_record, write_trace

FORMAT = "sagc.sim/1"
SCORE = "signal_per_s"  # what hindsight ranks static G by: the default utility's measure per second
Progress = Callable[[str, int, int], None]  # (controller label, steps done, steps in total)
_SERIES = ("group_size", "event", "figure", "queue", "risk", "step_s", "rollout_s", "informative", "signal",
           "tokens", "bubble", "truncated")
# per-step counts behind the tail-control measures (summed over the run, not kept as series)
_TALLY = ("trained_groups", "trained_tokens", "trained_rows", "trained_reward", "on_policy_tokens",
          "resumed_tokens", "wasted_tokens", "generated_tokens", "ref_tokens", "ref_reward", "ref_rows",
          "fresh_prompts", "dropped_prompts", "deferred_prompts", "max_token_age", "prefill_tokens", "fixed_s")


def informative_groups(reward: np.ndarray) -> int:
    """Rows of a (B, G) reward matrix with at least two scored rewards that differ."""
    return ragged_signal(np.repeat(np.arange(reward.shape[0]), reward.shape[1]), reward.ravel())[0]


def group_signal(reward: np.ndarray) -> float:
    """The 'signal' utility's realised count: informative groups weighted by 1 - 1/(scored)."""
    return ragged_signal(np.repeat(np.arange(reward.shape[0]), reward.shape[1]), reward.ravel())[1]


def iter_steps(scenario: Scenario, controller: Controller, model: LengthModel | None = None,
               steps: int | None = None, rollout: Any = None) -> Iterator[StepResult]:
    """Drive one controller (and its rollout policy, default `full`) through the scenario."""
    stepper = Stepper(scenario, controller, RolloutPolicy(rollout), model)
    for t in range(scenario.steps if steps is None else steps):
        yield stepper.step(t)


def trace_record(sr: StepResult, extra: Mapping[str, Any] | None = None) -> dict:
    """The rollout-trace record (sagc.trace) of one simulated step. Plain steps name groups
    "s{t}-p{i}"; under a tail-control policy groups are named by prompt ("p{id}", "-r{k}" for the
    k-th re-run of a deferred prompt) and each completion says whether it was cut (`aborted`) or
    continued from an earlier step (`resumed`), each group what became of it (`outcome`)."""
    plan = sr.plan
    if plan.kind == "full" and sr.plan.rate <= 1.0 and not sr.ran["resumed"].any():
        ids = [f"s{sr.step}-p{i}" for i in range(plan.groups["key"].shape[0])]
        return make_record(sr.step, sr.stats, sr.decision, sr.observation, extra=extra, group_ids=ids)
    g_of = plan.rows["group"][sr.ran["row"]]
    ran = StepStats(group_id=g_of, length=sr.ran["length"], reward=sr.ran["reward"], truncated=sr.ran["truncated"],
                    group_size=plan.group_size, rollout_s=sr.stats.rollout_s, step_s=sr.stats.step_s)
    present = np.unique(g_of)
    ids = [f"p{p}" + (f"-r{a}" if a else "") for p, a in zip(plan.groups["prompt"][present].tolist(),
                                                             plan.groups["attempt"][present].tolist())]
    trained = np.zeros(plan.groups["key"].shape[0], dtype=bool)
    trained[sr.outcome.trained_groups] = True
    fate = {"drop": "dropped", "defer": "deferred"}.get(sr.policy_name, "carried")
    flags = {"aborted": sr.ran["aborted"], "resumed": sr.ran["resumed"]}
    outcome = ["trained" if trained[p] else fate for p in present.tolist()]
    return make_record(sr.step, ran, sr.decision, sr.observation, extra=extra, group_ids=ids,
                       flags=flags, outcomes=outcome)


# ---- one controller -----------------------------------------------------------------------
def _run_one(scenario: Scenario, controller: Controller, label: str, model: LengthModel,
             progress: Progress | None, trace_path: Path | None, rollout: Any = None) -> dict:
    series: dict[str, list] = {k: [] for k in _SERIES}
    tally = dict.fromkeys(_TALLY, 0)
    waits: list[int] = []
    busy: list[float] = []
    steps = scenario.steps
    stepper = Stepper(scenario, controller, RolloutPolicy(rollout), model)
    pool = stepper.pool if stepper.pool is not None and not stepper.pool.trace else None
    if pool is not None:  # a learning pool: how far the run moved the dataset's mean pass rate
        series["pool_pass"] = []
        start_pass = pool.mean_pass_rate(0)

    def collect() -> Iterator[dict]:
        for t in range(steps):
            sr = stepper.step(t)
            if pool is not None:
                series["pool_pass"].append(pool.mean_pass_rate(t + 1))
            g = sr.decision.group_size
            out = sr.outcome
            trained_tokens = sr.trained_tokens
            series["group_size"].append(g)
            series["event"].append(sr.event)
            series["figure"].append(sr.figure)
            series["queue"].append(sr.observation.queue)
            series["risk"].append(sr.decision.risk.get(g, float("nan")))
            series["step_s"].append(sr.stats.step_s)
            series["rollout_s"].append(sr.rollout_s)
            series["informative"].append(sr.informative)
            series["signal"].append(sr.signal)
            series["tokens"].append(trained_tokens)
            series["bubble"].append(sr.bubble)
            series["truncated"].append(int(np.count_nonzero(sr.trained["truncated"])))
            busy.append(sr.busy_slot_s)
            for key, value in (("trained_groups", out.trained_groups.size), ("trained_tokens", trained_tokens),
                               ("trained_rows", sr.trained["length"].size),
                               ("trained_reward", float(np.nansum(sr.trained["reward"]))),
                               ("on_policy_tokens", out.on_policy_tokens),
                               ("resumed_tokens", int(sr.trained["length"][sr.trained["resumed"]].sum())),
                               ("wasted_tokens", out.wasted_tokens),
                               ("generated_tokens", int(sr.ran["length"].sum()) - int(sr.plan.rows["tokens"][sr.ran["row"]].sum())),
                               ("ref_tokens", sr.ref_tokens), ("ref_reward", sr.ref_reward), ("ref_rows", sr.ref_rows),
                               ("prefill_tokens", sr.ran["row"].size * scenario.lengths.prompt_tokens
                                + int(sr.plan.rows["tokens"][sr.ran["row"]].sum())),
                               ("fixed_s", sr.stats.step_s - sr.rollout_s),
                               ("fresh_prompts", sr.fresh_prompts), ("dropped_prompts", out.dropped_prompts),
                               ("deferred_prompts", out.deferred_prompts)):
                tally[key] += value
            tally["max_token_age"] = max(tally["max_token_age"], out.max_staleness)
            waits.extend(out.deferred_waits.tolist())
            if progress is not None:
                progress(label, t + 1, steps)
            if trace_path is not None:
                yield trace_record(sr, extra={"controller_name": label})

    if trace_path is not None:
        write_trace(trace_path, collect())  # streams to a temp file, then os.replace
    else:
        for _ in collect():
            pass
    summary = summarize(series, busy, scenario)
    summary.update(tail_measures(tally, waits, stepper.policy.pending_prompts))
    summary.update(batch_measures(summary, scenario))
    summary.update(full_engine_measures(summary, tally, scenario))
    if pool is not None:
        summary.update(pool_progress(start_pass, series["pool_pass"], series["step_s"]))
    return {"summary": summary, "series": series}


def tail_measures(tally: Mapping[str, float], waits: Sequence[int], pending: int) -> dict:
    """What a rollout policy costs (design section 9, point 3), over the run.

    on_policy_share: trained tokens sampled by the version that trains on them. resumed_share:
    trained tokens of completions generated over more than one step. length_bias / reward_bias:
    mean trained length (reward) over the mean would-be length (reward) of every prompt drawn
    in the run, run unaborted (first draws), minus 1. never_trained_share: prompts dropped for
    good over prompts drawn; pending_prompts: carried or deferred when the run ended."""
    rows = max(tally["trained_rows"], 1)
    ref_rows = max(tally["ref_rows"], 1)
    ref_len = tally["ref_tokens"] / ref_rows
    ref_rew = tally["ref_reward"] / ref_rows
    trained = max(tally["trained_tokens"], 1)
    return {
        "trained_groups": int(tally["trained_groups"]),
        "on_policy_share": tally["on_policy_tokens"] / trained,
        "resumed_share": tally["resumed_tokens"] / trained,
        "max_token_age": int(tally["max_token_age"]),
        "length_bias": (tally["trained_tokens"] / rows) / ref_len - 1.0 if ref_len > 0 else 0.0,
        "reward_bias": (tally["trained_reward"] / rows) / ref_rew - 1.0 if ref_rew > 0 else 0.0,
        "wasted_share": tally["wasted_tokens"] / max(tally["generated_tokens"], 1),
        "deferred_prompts": int(tally["deferred_prompts"]),
        "deferred_wait_mean": float(np.mean(waits)) if len(waits) else 0.0,
        "deferred_wait_max": int(max(waits)) if len(waits) else 0,
        "never_trained_share": tally["dropped_prompts"] / max(tally["fresh_prompts"], 1),
        "pending_prompts": int(pending),
    }


def batch_measures(summary: Mapping[str, Any], scenario: Scenario) -> dict:
    """Groups trained per step against the B the user set, and signal per second with the fixed
    per-step overhead charged once per B trained groups.

    A short step trains exactly B groups unless more than B are pinned by the staleness budget
    (every group that started and was cut is pinned at `max_staleness` 1), and a defer long
    round trains `long_round` prompts. Such a step spreads one step's overhead (optimizer step,
    weight sync) over a larger batch: measured at 2-4 x B per step for resume at 8x and
    staleness 1 (docs/benchmarks.md). Raising B would have bought that too, and a larger batch
    means fewer updates per trained group, which signal per second does not price. So the
    summary gives both: batch_growth = trained groups / (steps x B), and signal_per_s_at_b =
    signal / (seconds + overhead_s x (trained groups / B - steps)), which is signal_per_s
    wherever every step trains B groups."""
    steps, b = int(summary["steps"]), int(scenario.prompts_per_step)
    groups = float(summary["trained_groups"])
    seconds = float(summary["sim_seconds"]) + scenario.engine.overhead_s * (groups / b - steps)
    return {"batch_growth": groups / (steps * b) if steps else 0.0,
            "signal_per_s_at_b": float(summary["signal"]) / seconds if seconds > 0 else 0.0}


def full_engine_measures(summary: Mapping[str, Any], tally: Mapping[str, float], scenario: Scenario) -> dict:
    """Signal per second had every rollout of the run kept the engine full: its own generated
    tokens at the engine's full-batch token rate (engine.full_token_rate), its prefills, and its
    training and per-step overhead as they were.

    For a plain run (policy `full`) this is the ceiling of anything done inside the step that
    generates the same completions and trains them in the same steps: over-sampling, aborting,
    resuming or reordering can fill the idle slots, not make a full engine faster. It is not a
    ceiling for what changes the tokens per signal (skipping prompts, dropping the long
    completions, which biases what is trained) or trains more than B groups per step
    (batch_growth; signal_per_s_at_b charges that back). The best static G's ceiling is what a
    tail-control target can be held against (docs/rollout.md#the-full-engine-ceiling)."""
    eng = scenario.engine
    seconds = (tally["generated_tokens"] / full_token_rate(eng) + eng.prefill_s_per_token * tally["prefill_tokens"]
               + tally["fixed_s"])
    return {"full_engine_seconds": float(seconds),
            "signal_per_s_full_engine": float(summary["signal"]) / seconds if seconds > 0 else 0.0}


POOL_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # mean pass rates timed: 0.05 .. 0.95


def pool_progress(start: float, pool_pass: Sequence[float], step_s: Sequence[float]) -> dict:
    """Learning progress on a prompt pool (sagc.sim.prompts): the pool's mean pass rate before the
    run and after it, and the simulated seconds at which it first reached each level of
    POOL_LEVELS above the start ({"0.70": seconds, ...}; a level never reached is absent).

    Signal per second is a rate over the run; on a finite pool that the model learns, a
    controller that solves the learnable prompts sooner runs out of them sooner, and its signal
    per second falls while its progress is ahead. Time to a pass rate is that progress."""
    secs = np.cumsum(np.asarray(step_s, dtype=np.float64))  # (T,) seconds at the end of each step
    rate = np.asarray(pool_pass, dtype=np.float64)  # (T,) mean pass rate after each step
    reached = {}
    for level in POOL_LEVELS:
        hit = np.flatnonzero(rate >= level)
        if level > start and hit.size:
            reached[f"{level:.2f}"] = float(secs[hit[0]])
    return {"pool_pass_rate_start": float(start), "pool_pass_rate": float(rate[-1]) if rate.size else float(start),
            "pool_pass_seconds": reached}


def summarize(series: Mapping[str, Sequence], busy: Sequence[float], scenario: Scenario) -> dict:
    """Run-level measures (design section 7) from the per-step series."""
    g = np.asarray(series["group_size"], dtype=np.float64)  # (T,)
    step_s = np.asarray(series["step_s"], dtype=np.float64)  # (T,) seconds
    rollout_s = np.asarray(series["rollout_s"], dtype=np.float64)  # (T,) seconds
    events = int(np.count_nonzero(series["event"]))
    steps = int(g.shape[0])
    sim_s = float(step_s.sum())
    informative = int(np.sum(series["informative"]))
    tokens = int(np.sum(series["tokens"]))
    completions = float(np.sum(g) * scenario.prompts_per_step)
    eng = scenario.engine
    capacity = eng.slots * eng.replicas * float(rollout_s.sum())  # slot-seconds over all rollouts
    p50, p95 = np.percentile(step_s, [50, 95])
    sizes, counts = np.unique(g.astype(np.int64), return_counts=True)
    return {
        "steps": steps,
        "events": events,
        "straggler_rate": events / steps,
        "mean_group_size": float(g.mean()),
        "group_size_changes": int(np.count_nonzero(np.diff(g))),
        "group_size_counts": {str(int(s)): int(c) for s, c in zip(sizes, counts)},
        "sim_seconds": sim_s,
        "informative_groups": informative,
        "informative_groups_per_s": informative / sim_s,
        "signal": float(np.sum(series["signal"])),
        "signal_per_s": float(np.sum(series["signal"])) / sim_s,  # the default utility's measure
        "tokens": tokens,
        "tokens_per_s": tokens / sim_s,
        "bubble_fraction": 1.0 - float(np.sum(busy)) / capacity,
        "rollout_share": float(rollout_s.sum()) / sim_s,
        "mean_step_s": float(step_s.mean()),
        "p50_step_s": float(p50),
        "p95_step_s": float(p95),
        "max_step_s": float(step_s.max()),
        "truncated_rate": float(np.sum(series["truncated"])) / completions,
        "final_queue": float(series["queue"][-1]),
    }


# ---- a whole scenario ---------------------------------------------------------------------
def _entries(scenario: Scenario, controllers: Sequence[Any] | None) -> list[tuple[str, dict | None, Controller]]:
    """(label, config or None, fresh controller) for each controller to run, labels unique."""
    chosen = scenario.controllers if controllers is None else controllers
    out: list[tuple[str, dict | None, Controller]] = []
    used: set[str] = set()
    for item in chosen:
        if isinstance(item, Controller):
            ctrl, config, label = item, None, item.name
        elif isinstance(item, Mapping):
            config = dict(item)
            ctrl = controller_from_entry(config, scenario.straggler)
            label = config.get("label") or item["kind"]
            policy = rollout_settings(config.get("rollout")).policy
            if "label" not in config and policy != "full":
                label = f"{label}+{policy}"
        else:
            raise TypeError(f"controllers must be scenario entries (mappings) or Controller objects, got {item!r}")
        if isinstance(ctrl, StaticController) and label.split("+")[0] == "static":
            label = label.replace("static", f"static-G{ctrl.settings.group_size}", 1)
        base, k = label, 2
        while label in used:
            label, k = f"{base}-{k}", k + 1
        used.add(label)
        out.append((label, config, ctrl))
    return out


def run_scenario(scenario: Scenario, controllers: Sequence[Any] | None = None, progress: Progress | None = None,
                 hindsight: bool = True, include_series: bool = True,
                 trace_dir: str | Path | None = None, model: LengthModel | None = None) -> dict:
    """Run each controller (default: the scenario's) for `scenario.steps` steps, plus hindsight.

    Returns {"format", "scenario": the scenario as a dict, "controllers": [{"label", "config",
    "summary", "series"}, ...] in the order given, "hindsight": {"budget", "by_g": {G: summary},
    "best_g", "best_g_within_budget"}}. Series are per step: group_size, event, figure, queue,
    risk (predicted P(event) of the chosen G, null if the controller has none), step_s,
    rollout_s, informative, tokens, bubble, truncated.

    controllers: scenario-style entries ({"kind": "static", "group_size": 8}) or Controller
    objects (used as they are: they keep the state the run leaves in them).
    trace_dir: also write each controller's rollout trace there, as <label>.jsonl.
    model: the length model to draw steps from (default LengthModel(scenario); sagc.sim.whatif
    passes a step-aligned replay of recorded runs).
    """
    model = model if model is not None else LengthModel(scenario)
    runs: list[dict] = []
    static_cache: dict[int, dict] = {}  # static G -> summary: a static run does not depend on events
    entries = _entries(scenario, controllers)
    for label, config, ctrl in entries:
        path = Path(trace_dir) / f"{label}.jsonl" if trace_dir is not None else None
        rollout = (config or {}).get("rollout")
        run = _run_one(scenario, ctrl, label, model, progress, path, rollout)
        if isinstance(ctrl, StaticController) and rollout_settings(rollout).policy == "full":
            static_cache[run["series"]["group_size"][0]] = run["summary"]
        entry = {"label": label, "config": config if config is not None else {"kind": ctrl.name},
                 "summary": run["summary"]}
        if include_series:
            entry["series"] = run["series"]
        runs.append(entry)
    result: dict[str, Any] = {"format": FORMAT, "scenario": scenario.to_dict(), "controllers": runs}
    if hindsight:
        budgets = [float(c.settings.delta) for _, _, c in entries
                   if c.name == "sagc" and not isinstance(getattr(c.settings, "delta", "auto"), str)]
        result["hindsight"] = _hindsight(scenario, model, static_cache, min(budgets) if budgets else None, progress)
    return clean_json(result)


def _hindsight(scenario: Scenario, model: LengthModel, cache: dict[int, dict], budget: float | None,
               progress: Progress | None) -> dict:
    by_g: dict[str, dict] = {}
    for g in scenario.group_sizes:
        if g not in cache:
            ctrl = StaticController(group_size=g, straggler=scenario.straggler)
            cache[g] = _run_one(scenario, ctrl, f"static-G{g} (hindsight)", model, progress, None)["summary"]
        by_g[str(g)] = cache[g]

    def best(sizes: list[int], measure: str = SCORE) -> int | None:  # ties go to the smaller G
        return max(sizes, key=lambda g: (by_g[str(g)][measure], -g)) if sizes else None

    feasible = ([g for g in scenario.group_sizes if by_g[str(g)]["straggler_rate"] <= budget + 0.02]
                if budget is not None else [])
    return {"budget": budget, "measure": SCORE, "by_g": by_g, "best_g": best(list(scenario.group_sizes)),
            "best_g_informative": best(list(scenario.group_sizes), "informative_groups_per_s"),
            "best_g_within_budget": best(feasible) if budget is not None else None}


def to_json(result: Mapping[str, Any]) -> str:
    """Canonical JSON text of a run_scenario result (byte-identical for the same scenario + seed)."""
    return _io.to_json(result)


def write_run_trace(scenario: Scenario, path: str | Path, controller: Any = None, steps: int | None = None) -> Path:
    """Write one controller's simulated run as a rollout trace (atomic). Default controller:
    the scenario's first, else static at the largest allowed G."""
    if controller is None:
        controller = (scenario.controllers[0] if scenario.controllers
                      else {"kind": "static", "group_size": max(scenario.group_sizes)})
    label, config, ctrl = _entries(scenario, [controller])[0]
    rollout = (config or {}).get("rollout")
    return write_trace(path, (trace_record(sr, extra={"controller_name": label})
                              for sr in iter_steps(scenario, ctrl, steps=steps, rollout=rollout)))
