"""sagc: Straggler-Aware Group Control for synchronous on-policy RL (GRPO, DAPO).

The core is numpy-only; heavy frameworks are imported only inside `sagc.integrations`.
"""

from sagc.controllers import (
    REGISTRY,
    AIMDController,
    AIMDSettings,
    Controller,
    Decision,
    InversePassRateController,
    InversePassRateSettings,
    Observation,
    SAGCController,
    SAGCSettings,
    StaticController,
    StaticSettings,
    from_config,
    make,
    register,
)
from sagc.controllers.sagc import InfeasibleBudgetWarning
from sagc.rules import StragglerSettings, make_rule
from sagc.stats import StepStats

__version__ = "0.1.0"

__all__ = [
    "StepStats", "StragglerSettings", "make_rule", "Controller", "Decision", "Observation",
    "REGISTRY", "make", "from_config", "register", "StaticController", "StaticSettings",
    "SAGCController", "SAGCSettings", "InfeasibleBudgetWarning", "AIMDController", "AIMDSettings",
    "InversePassRateController", "InversePassRateSettings", "__version__",
]
