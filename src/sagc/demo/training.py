"""The optimizer and loss of a GRPO run, as `sagc train` configs and the benchmarks choose them.

    optimizer: {kind: pion, promotion_steps: 1}     # adamw | muon | pion | ema_nesterov (sagc.optim)
    loss: {kind: dispo, eps_high_neg: 1.0}          # grpo | dapo | dr_grpo | bnpo | cispo | dispo

Both optional: without `optimizer` HF Trainer builds its default AdamW from GRPOConfig; without
`loss` GRPOConfig.loss_type decides. A TRL loss kind sets GRPOConfig.loss_type (its knobs stay
under trl:); `dispo` runs TRL's loss_type "vespo" branch with DISPO's weight (see
sagc.integrations.trl.dispo). Validated without building anything (`TrainingChoice.from_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sagc._io import check_keys


@dataclass(frozen=True)
class TrainingChoice:
    optimizer: Any = None  # None, a kind name or {kind: ..., settings...}
    loss: Any = None  # None, a kind name or {kind: ..., settings...}
    trl: Mapping[str, Any] = field(default_factory=dict)  # GRPOConfig overrides (benchmarks)

    def __post_init__(self) -> None:
        from sagc.losses import resolve_loss
        from sagc.optim import optimizer_settings

        if self.optimizer is not None:
            optimizer_settings(self.optimizer, "optimizer")
        if self.loss is not None:
            resolve_loss(self.loss, "loss")
        if not isinstance(self.trl, Mapping):
            raise ValueError(f"trl must be a mapping of GRPOConfig fields, got {self.trl!r}")

    def check_trl(self, trl: Any) -> None:
        """A `loss` that contradicts trl.loss_type is an error naming both keys."""
        kind = self.loss_kind
        if kind is None or not isinstance(trl, Mapping) or "loss_type" not in trl:
            return
        from sagc.losses import DISPO_TRL_LOSS_TYPE

        wanted = DISPO_TRL_LOSS_TYPE if kind == "dispo" else kind
        if trl["loss_type"] != wanted:
            raise ValueError(f"loss.kind {kind!r} contradicts trl.loss_type {trl['loss_type']!r}: give the loss in "
                             "one place (loss: sets trl's loss_type)")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> "TrainingChoice":
        check_keys(cls, spec, where)
        try:
            return cls(**spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    @property
    def loss_kind(self) -> str | None:
        from sagc.losses import resolve_loss

        return None if self.loss is None else resolve_loss(self.loss)[0]

    def grpo_overrides(self, **base: Any) -> dict[str, Any]:
        """GRPOConfig keyword arguments: `base`, then the trl overrides, then the loss's loss_type."""
        from sagc.losses import DISPO_TRL_LOSS_TYPE

        out = {**base, **dict(self.trl)}
        kind = self.loss_kind
        if kind is not None:
            out["loss_type"] = DISPO_TRL_LOSS_TYPE if kind == "dispo" else kind
        return out

    def trainer_kwargs(self, model: Any, learning_rate: float) -> dict[str, Any]:
        """Extra SAGCGRPOTrainer / DISPOGRPOTrainer keyword arguments: optimizers=, dispo=."""
        from sagc.losses import resolve_loss
        from sagc.optim import make_optimizer

        out: dict[str, Any] = {}
        if self.optimizer is not None:
            # scheduler None: HF Trainer builds GRPOConfig's schedule around this optimizer
            out["optimizers"] = (make_optimizer(self.optimizer, model, lr=learning_rate), None)
        if self.loss is not None:
            kind, dispo = resolve_loss(self.loss)
            if kind == "dispo":
                out["dispo"] = dispo
        return out
