"""Discrete-event simulator of synchronous GRPO steps (the engine behind `sagc simulate`).

    from sagc.sim import load_scenario, run_scenario, to_json
    result = run_scenario(load_scenario("heavy-tail"))

Numpy only; `sagc.sim.plot` imports matplotlib when called.
"""

from sagc.sim.engine import EngineResult, schedule, simulate_rollout, step_seconds
from sagc.sim.lengths import Batch, LengthModel
from sagc.sim.runner import (
    StepResult,
    informative_groups,
    iter_steps,
    run_scenario,
    summarize,
    to_json,
    trace_record,
    write_run_trace,
)
from sagc.sim.scenario import (
    DriftSettings,
    EngineSettings,
    LengthSettings,
    RewardSettings,
    Scenario,
    list_scenarios,
    load_scenario,
    parse_scenario,
)
from sagc.sim.truth import conditional_event_prob, true_event_curve, true_event_prob

__all__ = [
    "Scenario", "LengthSettings", "DriftSettings", "RewardSettings", "EngineSettings", "load_scenario",
    "list_scenarios", "parse_scenario", "LengthModel", "Batch", "EngineResult", "schedule", "simulate_rollout",
    "step_seconds", "run_scenario", "iter_steps", "StepResult", "summarize", "informative_groups", "to_json",
    "trace_record", "write_run_trace", "true_event_prob", "true_event_curve", "conditional_event_prob",
]
