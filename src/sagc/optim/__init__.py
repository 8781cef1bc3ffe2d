"""Optimizers for RLVR fine-tuning, by name (torch; the numpy core never imports this).

    from sagc.optim import make_optimizer
    opt = make_optimizer("pion", model, lr=1e-5)                          # Pion + AdamW for the rest
    opt = make_optimizer({"kind": "ema_nesterov", "base": {"kind": "adamw"}}, model, lr=1e-5)
    trainer = SAGCGRPOTrainer(..., optimizers=(opt, None))                # HF Trainer builds the LR schedule

Kinds (OPTIMIZERS): adamw (torch.optim.AdamW), muon (torch's Newton-Schulz on hidden matrices,
AdamW elsewhere), pion (high-pass Newton-Schulz, per attention head by default, AdamW
elsewhere), ema_nesterov (lookahead along an EMA of updates around a base kind). Settings are
frozen dataclasses validated before any model is built (`optimizer_settings`); `lr` omitted
means the caller's learning rate (GRPOConfig.learning_rate in `sagc train`). See docs/optim.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sagc._settings import as_dict, check_float, check_int, settings_from, split_kind

OPTIMIZERS = ("adamw", "muon", "pion", "ema_nesterov")


def _check_common(owner: str, s: Any) -> None:
    if s.lr is not None:
        check_float(owner, "lr", s.lr, 0.0, open_low=True)
    for name in ("weight_decay", "adamw_weight_decay"):
        if hasattr(s, name):
            check_float(owner, name, getattr(s, name), 0.0)
    for name in ("betas", "adamw_betas"):
        if hasattr(s, name):
            betas = getattr(s, name)
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise ValueError(f"{owner}.{name} must be two numbers in [0, 1), got {betas!r}")
            for i, b in enumerate(betas):
                check_float(owner, f"{name}[{i}]", b, 0.0, 1.0, open_high=True)
    for name in ("eps", "adamw_eps"):
        if hasattr(s, name):
            check_float(owner, name, getattr(s, name), 0.0, open_low=True)
    if hasattr(s, "momentum"):
        check_float(owner, "momentum", s.momentum, 0.0, 1.0, open_high=True)
        if not isinstance(s.nesterov, bool):
            raise ValueError(f"{owner}.nesterov must be true or false, got {s.nesterov!r}")
        check_int(owner, "ns_steps", s.ns_steps, 1, 50)
        check_float(owner, "scale", s.scale, 0.0, open_low=True)


@dataclass(frozen=True)
class AdamWSettings:
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0  # HF TrainingArguments' default

    def __post_init__(self) -> None:
        _check_common("AdamWSettings", self)


@dataclass(frozen=True)
class MuonSettings:
    """Muon on hidden matrices (torch.optim.Muon's Newton-Schulz), AdamW on the rest."""

    lr: float | None = None
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5
    scale: float = 0.2  # x sqrt(max(rows, cols)): Moonshot's match-AdamW-RMS rule (torch's match_rms_adamw)
    weight_decay: float = 0.0
    adamw_betas: tuple[float, float] = (0.9, 0.999)
    adamw_eps: float = 1e-8
    adamw_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_common("MuonSettings", self)


@dataclass(frozen=True)
class PionSettings:
    """Pion on hidden matrices, AdamW on the rest. Defaults: the reference code's (pure
    suppression, 5 steps, scale 2.0) with per-head mode on, which its authors recommend for RLVR."""

    lr: float | None = None
    momentum: float = 0.95
    nesterov: bool = True
    promotion_steps: int = 0  # k_p; suppression steps k_s = ns_steps - k_p
    ns_steps: int = 5
    scale: float = 2.0  # x sqrt(max(rows, cols)) of the matrix (or head block)
    per_head: bool = True  # q/k/v_proj by rows, o_proj by columns, one block per attention head
    weight_decay: float = 0.0
    adamw_betas: tuple[float, float] = (0.9, 0.999)
    adamw_eps: float = 1e-8
    adamw_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_common("PionSettings", self)
        check_int("PionSettings", "promotion_steps", self.promotion_steps, 0, self.ns_steps)
        if not isinstance(self.per_head, bool):
            raise ValueError(f"PionSettings.per_head must be true or false, got {self.per_head!r}")


@dataclass(frozen=True)
class EMANesterovOptSettings:
    beta: float = 0.5
    gamma: float = 0.9
    base: Mapping[str, Any] = field(default_factory=lambda: {"kind": "adamw"})  # any kind but ema_nesterov

    def __post_init__(self) -> None:
        from sagc.optim.ema_nesterov import EMANesterovSettings

        EMANesterovSettings(beta=self.beta, gamma=self.gamma)
        kind, settings = split_kind(self.base, "EMANesterovOptSettings.base")
        if kind == "ema_nesterov":
            raise ValueError("EMANesterovOptSettings.base cannot itself be ema_nesterov")
        object.__setattr__(self, "base", {"kind": kind, **as_dict(optimizer_settings(
            {"kind": kind, **settings}, "EMANesterovOptSettings.base")[1])})


SETTINGS: dict[str, type] = {"adamw": AdamWSettings, "muon": MuonSettings, "pion": PionSettings,
                             "ema_nesterov": EMANesterovOptSettings}


def optimizer_settings(spec: Any, where: str = "optimizer") -> tuple[str, Any]:
    """(kind, validated settings) from "pion" or {kind: pion, promotion_steps: 1, ...}; no torch work."""
    kind, raw = split_kind(spec, where)
    if kind not in SETTINGS:
        raise ValueError(f"{where}.kind must be one of {list(OPTIMIZERS)}, got {kind!r}")
    return kind, settings_from(SETTINGS[kind], raw, f"{where} ({kind})")


def make_optimizer(spec: Any, model: Any, lr: float | None = None, **settings: Any) -> Any:
    """A torch Optimizer for `model` (an nn.Module; adamw also takes a parameter iterable).

    spec: a kind name or a {kind: ..., settings...} mapping; keyword settings override it.
    lr: used when the settings give none.
    """
    import torch

    kind, raw = split_kind(spec, "optimizer")
    kind, s = optimizer_settings({"kind": kind, **raw, **settings})
    if kind == "ema_nesterov":
        from sagc.optim.ema_nesterov import EMANesterov

        return EMANesterov(make_optimizer(s.base, model, lr=lr), beta=s.beta, gamma=s.gamma)
    rate = s.lr if s.lr is not None else lr
    if rate is None:
        raise ValueError(f"optimizer {kind}: no learning rate (give lr in its settings or to make_optimizer)")
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=rate, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay)
    from sagc.optim.pion import Pion, pion_param_groups

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"optimizer {kind} routes parameters by module (matrices vs embeddings): pass the model")
    per_head = bool(getattr(s, "per_head", False))
    groups = pion_param_groups(model, per_head=per_head, adamw_weight_decay=s.adamw_weight_decay)
    for g in groups:
        if g["kind"] == "adamw":
            g.update(betas=tuple(s.adamw_betas), eps=s.adamw_eps)
    return Pion(groups, lr=rate, momentum=s.momentum, nesterov=s.nesterov,
                promotion_steps=getattr(s, "promotion_steps", 0), ns_steps=s.ns_steps, scale=s.scale,
                weight_decay=s.weight_decay, spectral="muon" if kind == "muon" else "pion")


__all__ = ["OPTIMIZERS", "SETTINGS", "AdamWSettings", "MuonSettings", "PionSettings", "EMANesterovOptSettings",
           "make_optimizer", "optimizer_settings"]
