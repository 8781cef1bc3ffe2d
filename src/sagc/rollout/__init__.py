"""Rollout policies: tail control inside a synchronous step (design section 9).

One implementation, numpy only, driven by the simulator (sagc.sim.stepper) and by the TRL
trainer. `RolloutSettings` holds the knobs; `RolloutPolicy` plans each step and keeps what a
step left unfinished.
"""

from sagc.rollout.policy import RolloutPolicy, StepOutcome, StepPlan
from sagc.rollout.settings import (ANCHOR_DEFAULTS, KNOBS, POLICIES, RolloutSettings, in_flight, policy_defaults,
                                   rollout_settings)

__all__ = ["RolloutPolicy", "RolloutSettings", "StepPlan", "StepOutcome", "POLICIES", "KNOBS",
           "rollout_settings", "in_flight", "ANCHOR_DEFAULTS", "policy_defaults"]
