"""DISPO: a CISPO-style REINFORCE loss whose importance-weight clipping is decoupled four ways.

Our reading of DISPO (arXiv 2602.00983; only the abstract is public, so the formula below is
ours, stated so it can be checked). Per completion token t of a response with advantage A:

    r_t   = pi_theta(y_t | .) / pi_old(y_t | .)                 importance ratio
    w_t   = clip(r_t, 1 - eps_low_pos, 1 + eps_high_pos)   if A > 0   (correct responses)
            clip(r_t, 1 - eps_low_neg, 1 + eps_high_neg)   if A < 0   (incorrect responses)
    L_t   = - sg(w_t) * A * log pi_theta(y_t | .)                 sg = stop-gradient

so dL_t / d log pi_theta(y_t) = -w_t * A. As in CISPO (MiniMax-M1, arXiv 2506.13585) clipping
never switches a token's gradient off (PPO's min(.) does); it only bounds the weight, and the
four bounds let correct and incorrect responses get different trust regions: e.g. a wide
up-clip for incorrect responses pushes down harder on tokens whose probability has already
risen on a wrong answer. With eps_*_pos == eps_*_neg it is CISPO with a two-sided clip; with no
lower bound (eps_low = 1) and the upper bound 1 + eps_high = TRL's `epsilon_high` it is exactly
TRL's `loss_type="cispo"` (tested).

The defaults are ours, not the paper's (its values are not public): DAPO's asymmetric trust
region (0.2 down, 0.28 up) for both signs, so out of the box DISPO is "CISPO with DAPO's clip";
decouple by sign from there. Token-level aggregation (sum over tokens / tokens in the batch), as
TRL aggregates DAPO and CISPO.

Note: fully on-policy (TRL's num_iterations = 1 and one optimizer step per generation batch)
every r_t is 1 and DISPO's gradient equals DAPO's and CISPO's; the clip bounds act only on
off-policy updates (num_iterations > 1, steps_per_generation > gradient_accumulation_steps) or
with a vLLM sampler whose probabilities differ from the trainer's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from sagc._settings import check_float

MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: bounds the weight when an upper clip is off (None)


@dataclass(frozen=True)
class DISPOSettings:
    """The four clip offsets: weight bounds are [1 - eps_low_*, 1 + eps_high_*].

    eps_low_* in [0, 1] (1: no lower bound, the weight may fall to 0); eps_high_* > 0, or None
    for no upper bound. *_pos applies to tokens of positive-advantage (correct) responses,
    *_neg to negative-advantage (incorrect) ones; zero-advantage tokens carry no gradient.
    """

    eps_low_pos: float = 0.2
    eps_high_pos: float | None = 0.28
    eps_low_neg: float = 0.2
    eps_high_neg: float | None = 0.28

    def __post_init__(self) -> None:
        for sign in ("pos", "neg"):
            check_float("DISPOSettings", f"eps_low_{sign}", getattr(self, f"eps_low_{sign}"), 0.0, 1.0)
            high = getattr(self, f"eps_high_{sign}")
            if high is not None:
                check_float("DISPOSettings", f"eps_high_{sign}", high, 0.0, math.inf, open_low=True)

    def bounds(self, sign: str) -> tuple[float, float]:
        """(lower, upper) weight bounds for "pos" or "neg" responses."""
        high = getattr(self, f"eps_high_{sign}")
        return 1.0 - getattr(self, f"eps_low_{sign}"), math.inf if high is None else 1.0 + high


def dispo_weights(log_ratio: torch.Tensor, advantages: torch.Tensor, settings: DISPOSettings) -> torch.Tensor:
    """w_t = clip(r_t, bounds by the sign of A), detached.

    log_ratio: (B, T) log pi_theta - log pi_old per token; advantages: (B, 1) or (B, T).
    Returns (B, T) float, no gradient.
    """
    with torch.no_grad():
        ratio = torch.exp(log_ratio.clamp(max=MAX_LOG_RATIO))
        lo_pos, hi_pos = settings.bounds("pos")
        lo_neg, hi_neg = settings.bounds("neg")
        positive = (advantages > 0).expand_as(ratio)
        lo = torch.where(positive, lo_pos, lo_neg).to(ratio.dtype)
        hi = torch.where(positive, hi_pos, hi_neg).to(ratio.dtype)
        return torch.minimum(torch.maximum(ratio, lo), hi)


def dispo_per_token_loss(per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor,
                         advantages: torch.Tensor, settings: DISPOSettings) -> torch.Tensor:
    """L_t = -sg(w_t) * A * log pi_theta(y_t): (B, T), before masking and aggregation."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    w = dispo_weights(per_token_logps - old_per_token_logps, advantages, settings)
    return -w * advantages * per_token_logps


def clip_fractions(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   settings: DISPOSettings) -> dict[str, torch.Tensor]:
    """Local (sum, count) of tokens clipped low/high, per sign, for logging. Values: 0-d tensors."""
    with torch.no_grad():
        ratio = torch.exp(log_ratio.clamp(max=MAX_LOG_RATIO))
        m = mask.to(ratio.dtype)
        out: dict[str, Any] = {}
        for sign, pick in (("pos", advantages > 0), ("neg", advantages < 0)):
            lo, hi = settings.bounds(sign)
            sel = pick.expand_as(ratio).to(ratio.dtype) * m
            out[f"{sign}_low"] = ((ratio < lo).to(ratio.dtype) * sel).sum()
            out[f"{sign}_high"] = ((ratio > hi).to(ratio.dtype) * sel).sum()
            out[f"{sign}_tokens"] = sel.sum()
        return out
