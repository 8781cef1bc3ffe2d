"""DISPO in TRL's GRPOTrainer through its narrowest hook: the per-token weight of the VESPO loss.

TRL's `_compute_loss` has one REINFORCE-shaped branch whose weight is a method we can override:
for `loss_type="vespo"` it computes

    phi = self.get_gamma_weights(advantages=..., log_ratio_per_token=log_ratio, mask=..., ...)
    per_token_loss = -phi * advantages * per_token_logps

and aggregates it token-level like DAPO and CISPO. DISPO (sagc.losses.dispo) is exactly that
shape with phi = the sign-dependent clipped ratio, so the mixin overrides `get_gamma_weights`
(and nothing else of the loss) and runs TRL's loss with `loss_type="vespo"`. Everything else of
`_compute_loss` (masking, KL, entropy, aggregation, metrics) stays TRL's. With a vLLM sampler
and importance-sampling correction TRL hands the sampler ratio to the hook instead of
multiplying the loss by it (as it does for CISPO); the hook multiplies it in, so the two agree.

    from trl import GRPOConfig, GRPOTrainer
    from sagc.integrations.trl.dispo import DISPOGRPOTrainer          # plain TRL + DISPO
    trainer = DISPOGRPOTrainer(model=..., args=GRPOConfig(...), reward_funcs=..., train_dataset=...,
                               dispo={"eps_high_neg": 1.0})
    class MyTrainer(DISPOMixin, SomeGRPOTrainerSubclass): ...         # any GRPOTrainer subclass

SAGCGRPOTrainer includes the mixin: pass `dispo=` to it as well. Without `dispo=` the mixin
does nothing (TRL's own loss_type runs, VESPO included). compat.DISPO_SIGNATURES lists what
this relies on; `check_dispo_compat()` runs before training and the test suite runs the real
`_compute_loss` against the formula (tests/integrations/test_dispo.py).
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from sagc._settings import settings_from
from sagc.integrations.trl.compat import check_dispo_compat, trl_version
from sagc.losses import DISPO_TRL_LOSS_TYPE as HOOK_LOSS_TYPE  # the TRL branch whose weight DISPO replaces
from sagc.losses.dispo import DISPOSettings, clip_fractions, dispo_weights


class DISPOMixin:
    """Adds `dispo=` (DISPOSettings, a mapping, or None) to a GRPOTrainer subclass."""

    def __init__(self, *args: Any, dispo: Any = None, **kwargs: Any) -> None:
        settings = None if dispo is None else settings_from(DISPOSettings, dispo, "dispo")
        if settings is not None:
            problems = check_dispo_compat()
            if problems:
                raise RuntimeError(f"DISPO rides on TRL's loss_type='{HOOK_LOSS_TYPE}' weight hook; the installed TRL "
                                   f"{trl_version()} changed it: " + "; ".join(problems))
        super().__init__(*args, **kwargs)
        self.dispo: DISPOSettings | None = settings
        if settings is not None:
            if self.args.importance_sampling_level != "token":
                raise ValueError("DISPO clips token-level importance ratios: set GRPOConfig("
                                 f"importance_sampling_level='token'), got {self.args.importance_sampling_level!r}")
            # _compute_loss reads self.loss_type (args.loss_type only feeds __init__'s checks)
            self.loss_type = HOOK_LOSS_TYPE

    def get_gamma_weights(self, advantages: torch.Tensor, log_ratio_per_token: torch.Tensor, mask: torch.Tensor,
                          importance_sampling_ratio: torch.Tensor | None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """DISPO's weight (B, T) when `dispo` is set, else TRL's VESPO weights."""
        if getattr(self, "dispo", None) is None:
            return GRPOTrainer.get_gamma_weights(advantages, log_ratio_per_token, mask, importance_sampling_ratio,
                                                 *args, **kwargs)
        w = dispo_weights(log_ratio_per_token, advantages, self.dispo)
        if importance_sampling_ratio is not None:  # TRL multiplies CISPO's loss by it; VESPO hands it here
            w = w * importance_sampling_ratio.detach()
        self._log_dispo_clips(log_ratio_per_token, advantages, mask)
        return w

    def _log_dispo_clips(self, log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> None:
        counts = clip_fractions(log_ratio, advantages, mask, self.dispo)
        keys = sorted(counts)
        totals = self.accelerator.reduce(torch.stack([counts[k].float() for k in keys]), reduction="sum")
        got = dict(zip(keys, totals.tolist()))
        mode = "train" if self.model.training else "eval"
        for sign in ("pos", "neg"):
            n = max(got[f"{sign}_tokens"], 1.0)
            for side in ("low", "high"):
                self._metrics[mode][f"dispo/clip_ratio/{sign}_{side}"].append(got[f"{sign}_{side}"] / n)


class DISPOGRPOTrainer(DISPOMixin, GRPOTrainer):
    """TRL's GRPOTrainer with `dispo=` (see the module docstring)."""
