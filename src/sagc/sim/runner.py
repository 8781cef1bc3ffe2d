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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from sagc.controllers import Controller, Decision, Observation, StaticController
from sagc.rules import StragglerRule
from sagc.sim.engine import EngineResult, simulate_rollout, step_seconds
from sagc.sim.lengths import Batch, LengthModel
from sagc.sim.scenario import Scenario, controller_from_entry
from sagc.stats import StepStats
from sagc import _io
from sagc._io import clean_json
from sagc.trace import make_record, write_trace
from sagc.utility import realised

FORMAT = "sagc.sim/1"
SCORE = "signal_per_s"  # what hindsight ranks static G by: the default utility's measure per second
Progress = Callable[[str, int, int], None]  # (controller label, steps done, steps in total)
_SERIES = ("group_size", "event", "figure", "queue", "risk", "step_s", "rollout_s", "informative", "signal",
           "tokens", "bubble", "truncated")


@dataclass(frozen=True)
class StepResult:
    step: int
    decision: Decision
    batch: Batch
    engine: EngineResult
    stats: StepStats
    observation: Observation  # the controller's own view of the step
    event: bool  # straggler event by the scenario's rule (what the run is scored on)
    figure: float  # the scenario rule's figure
    informative: int  # groups whose rewards are not all equal
    signal: float  # what the default utility counts: informative groups weighted by 1 - 1/G


def _mixed(reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mixed (B,) bool, scored (B,) int) of a (B, G) reward matrix."""
    fin = np.isfinite(reward)
    hi = np.where(fin, reward, -np.inf).max(axis=1)
    lo = np.where(fin, reward, np.inf).min(axis=1)
    scored = fin.sum(axis=1)
    return (scored >= 2) & (hi > lo), scored


def informative_groups(reward: np.ndarray) -> int:
    """Rows of a (B, G) reward matrix with at least two scored rewards that differ."""
    return int(np.count_nonzero(_mixed(reward)[0]))


def group_signal(reward: np.ndarray) -> float:
    """The 'signal' utility's realised count: informative groups weighted by 1 - 1/(scored)."""
    mixed, scored = _mixed(reward)
    return realised("signal", scored[mixed])


def iter_steps(scenario: Scenario, controller: Controller, model: LengthModel | None = None,
               steps: int | None = None) -> Iterator[StepResult]:
    """Drive one controller through the scenario, one synchronous step at a time."""
    model = model or LengthModel(scenario)
    rule = StragglerRule(scenario.straggler)
    rule_state = rule.init_state()
    b = scenario.prompts_per_step
    eng = scenario.engine
    for t in range(scenario.steps if steps is None else steps):
        decision = controller.decide(allowed=scenario.group_sizes, prompts=b)
        g = decision.group_size
        batch = model.sample_step(t, g)
        result = simulate_rollout(batch.length, eng, scenario.lengths.prompt_tokens)
        tokens = int(batch.length.sum())
        stats = StepStats(group_id=np.repeat(np.arange(b), g), length=batch.length.ravel(),
                          reward=batch.reward.ravel(), truncated=batch.truncated.ravel(), group_size=g,
                          rollout_s=result.rollout_s, step_s=step_seconds(result, tokens, eng),
                          duration_s=result.finish_s)
        observation = controller.update(stats)
        event, figure, _ = rule.observe(stats, rule_state)
        yield StepResult(step=t, decision=decision, batch=batch, engine=result, stats=stats,
                         observation=observation, event=bool(event), figure=float(figure),
                         informative=informative_groups(batch.reward), signal=group_signal(batch.reward))


def trace_record(sr: StepResult, extra: Mapping[str, Any] | None = None) -> dict:
    """The rollout-trace record (sagc.trace) of one simulated step; groups named "s{t}-p{i}"."""
    ids = [f"s{sr.step}-p{i}" for i in range(sr.batch.prompts)]
    return make_record(sr.step, sr.stats, sr.decision, sr.observation, extra=extra, group_ids=ids)


# ---- one controller -----------------------------------------------------------------------
def _run_one(scenario: Scenario, controller: Controller, label: str, model: LengthModel,
             progress: Progress | None, trace_path: Path | None) -> dict:
    series: dict[str, list] = {k: [] for k in _SERIES}
    busy: list[float] = []
    steps = scenario.steps

    def collect() -> Iterator[dict]:
        for sr in iter_steps(scenario, controller, model):
            g = sr.decision.group_size
            series["group_size"].append(g)
            series["event"].append(sr.event)
            series["figure"].append(sr.figure)
            series["queue"].append(sr.observation.queue)
            series["risk"].append(sr.decision.risk.get(g, float("nan")))
            series["step_s"].append(sr.stats.step_s)
            series["rollout_s"].append(sr.engine.rollout_s)
            series["informative"].append(sr.informative)
            series["signal"].append(sr.signal)
            series["tokens"].append(int(sr.batch.length.sum()))
            series["bubble"].append(sr.engine.bubble_fraction)
            series["truncated"].append(int(np.count_nonzero(sr.batch.truncated)))
            busy.append(sr.engine.busy_slot_s)
            if progress is not None:
                progress(label, sr.step + 1, steps)
            if trace_path is not None:
                yield trace_record(sr, extra={"controller_name": label})

    if trace_path is not None:
        write_trace(trace_path, collect())  # streams to a temp file, then os.replace
    else:
        for _ in collect():
            pass
    return {"summary": summarize(series, busy, scenario), "series": series}


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
        else:
            raise TypeError(f"controllers must be scenario entries (mappings) or Controller objects, got {item!r}")
        if isinstance(ctrl, StaticController) and label == "static":
            label = f"static-G{ctrl.settings.group_size}"
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
        run = _run_one(scenario, ctrl, label, model, progress, path)
        if isinstance(ctrl, StaticController):
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
    label, _, ctrl = _entries(scenario, [controller])[0]
    return write_trace(path, (trace_record(sr, extra={"controller_name": label})
                              for sr in iter_steps(scenario, ctrl, steps=steps)))
