"""Policy losses for GRPO-style RLVR training (torch; the numpy core never imports this).

    from sagc.losses import DISPOSettings, resolve_loss
    kind, dispo = resolve_loss({"kind": "dispo", "eps_high_neg": 1.0})   # -> ("dispo", DISPOSettings)
    kind, dispo = resolve_loss("dapo")                                    # -> ("dapo", None): TRL's own

TRL's losses (LOSS_KINDS minus "dispo") are computed by TRL itself; DISPO rides on a TRL hook
(see sagc.integrations.trl.dispo and docs/optim.md).
"""

from __future__ import annotations

from typing import Any

from sagc._settings import settings_from, split_kind
from sagc.losses.dispo import DISPOSettings, dispo_per_token_loss, dispo_weights

TRL_LOSS_KINDS = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo")  # computed by TRL (loss_type)
LOSS_KINDS = TRL_LOSS_KINDS + ("dispo",)
DISPO_TRL_LOSS_TYPE = "vespo"  # DISPO runs TRL's vespo loss branch with its own weight (integrations.trl.dispo)


def resolve_loss(spec: Any, where: str = "loss") -> tuple[str, DISPOSettings | None]:
    """(kind, DISPOSettings or None) from "dapo", {kind: dispo, eps_high_neg: 1.0}, ...

    TRL's losses take no settings here (their knobs, e.g. epsilon, stay GRPOConfig fields).
    """
    kind, settings = split_kind(spec, where)
    if kind not in LOSS_KINDS:
        raise ValueError(f"{where}.kind must be one of {list(LOSS_KINDS)}, got {kind!r}")
    if kind == "dispo":
        return kind, settings_from(DISPOSettings, settings, where)
    if settings:
        raise ValueError(f"{where}: kind {kind} is TRL's own loss and takes no settings here, got "
                         f"{sorted(settings)}; set its knobs (epsilon, epsilon_high, ...) under trl:")
    return kind, None


__all__ = ["DISPO_TRL_LOSS_TYPE", "LOSS_KINDS", "TRL_LOSS_KINDS", "DISPOSettings", "dispo_per_token_loss",
           "dispo_weights", "resolve_loss"]
