"""TRL integration: `SAGCGRPOTrainer`, a GRPOTrainer whose group size is chosen online.

    from sagc.integrations.trl import SAGCGRPOTrainer

Needs the [trl] extra (torch, transformers, trl, accelerate, datasets). See docs/trl.md.
"""

from sagc.integrations.trl.compat import TESTED_TRL, check_trl_compat
from sagc.integrations.trl.dispo import DISPOGRPOTrainer, DISPOMixin
from sagc.integrations.trl.layout import GROUP_MODES, BatchSettings, GroupLayout, GroupOptions, plan_layout
from sagc.integrations.trl.trainer import SAGCGRPOTrainer, resolve_controller

__all__ = [
    "SAGCGRPOTrainer", "GroupOptions", "GroupLayout", "BatchSettings", "plan_layout", "GROUP_MODES",
    "resolve_controller", "check_trl_compat", "TESTED_TRL", "DISPOMixin", "DISPOGRPOTrainer",
]
