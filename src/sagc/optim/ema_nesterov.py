"""EMA-Nesterov: Nesterov lookahead along an EMA of parameter updates, around any base optimizer.

Our reading of EMA-Nesterov (arXiv 2605.25395; only the abstract is public), with A_t one step
of the base optimizer (SGD, AdamW, Pion, ...) taken from the point it is given:

    y_t     = x_t + beta * m_t                               lookahead point
    x_{t+1} = A_t(y_t)                                       base step, gradient taken at y_t
    m_{t+1} = gamma * m_t + (1 - gamma) * (x_{t+1} - x_t)    EMA of the updates

The model's parameters hold y_t between steps, so the forward/backward pass that produces the
gradient for A_t runs at the lookahead point, as in Nesterov's method; the iterate x_t lives in
the optimizer state (`EMANesterov.iterate()` swaps it in, e.g. to evaluate or save it; the two
differ by beta * m_t). In a direction of slowly varying gradient the update settles at
d = A's step / (1 - beta): the lookahead multiplies the base step by up to 1 / (1 - beta), which
is what speeds up the flat directions of an ill-conditioned problem; gamma sets how much update
history the direction averages over. beta_t is constant here (m_0 = 0 makes the first step
the base step). Defaults (beta 0.5, gamma 0.9) are ours: on our ill-conditioned quadratic they
speed up both SGD and Adam without instability; the paper's values are not public.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch.optim import Optimizer

from sagc._settings import check_float


@dataclass(frozen=True)
class EMANesterovSettings:
    beta: float = 0.5  # lookahead along the EMA of updates, in [0, 1)
    gamma: float = 0.9  # EMA decay of the updates, in [0, 1)

    def __post_init__(self) -> None:
        check_float("EMANesterovSettings", "beta", self.beta, 0.0, 1.0, open_high=True)
        check_float("EMANesterovSettings", "gamma", self.gamma, 0.0, 1.0, open_high=True)


class EMANesterov(Optimizer):
    """Wraps `base` (a torch Optimizer). Shares its param_groups, so LR schedulers, gradient
    clipping and HF Trainer see the base optimizer's groups and learning rates."""

    def __init__(self, base: Optimizer, beta: float = 0.5, gamma: float = 0.9) -> None:
        if not isinstance(base, Optimizer):
            raise TypeError(f"EMANesterov wraps a torch.optim.Optimizer, got {type(base).__name__}")
        settings = EMANesterovSettings(beta=beta, gamma=gamma)
        self.base = base
        self.beta, self.gamma = settings.beta, settings.gamma
        super().__init__([p for g in base.param_groups for p in g["params"]], dict(base.defaults))
        # one set of groups: the base's (LR schedulers write lr there; the base reads it there)
        self.param_groups = base.param_groups
        self.defaults = base.defaults
        self.steps = 0

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        for p in self._params():
            st = self.state[p]
            if "x" not in st:  # m_0 = 0, so the parameter holds y_0 = x_0
                st["x"] = p.detach().clone()
                st["m"] = torch.zeros_like(p)
        with torch.enable_grad():
            loss = self.base.step(closure) if closure is not None else self.base.step()
        for p in self._params():  # p now holds x_{t+1} = A_t(y_t)
            st = self.state[p]
            x, m = st["x"], st["m"]
            m.mul_(self.gamma).add_(p - x, alpha=1.0 - self.gamma)
            x.copy_(p)
            p.add_(m, alpha=self.beta)  # the next gradient is taken at y_{t+1}
        self.steps += 1
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    @contextlib.contextmanager
    def iterate(self) -> Iterator[None]:
        """Within the block the parameters hold the iterate x_t (not the lookahead y_t)."""
        saved = []
        with torch.no_grad():
            for p in self._params():
                if "x" in self.state[p]:
                    saved.append((p, p.detach().clone()))
                    p.copy_(self.state[p]["x"])
        try:
            yield
        finally:
            with torch.no_grad():
                for p, y in saved:
                    p.copy_(y)

    def state_dict(self) -> dict[str, Any]:
        own = {i: {"x": self.state[p]["x"], "m": self.state[p]["m"]}
               for i, p in enumerate(self._params()) if "x" in self.state[p]}
        return {"base": self.base.state_dict(),
                "ema_nesterov": {"beta": self.beta, "gamma": self.gamma, "steps": self.steps, "state": own}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "base" not in state_dict or "ema_nesterov" not in state_dict:
            raise ValueError("not an EMANesterov state_dict (expected keys 'base' and 'ema_nesterov'), got keys "
                             f"{sorted(state_dict)}")
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups  # load_state_dict may rebuild the base's group dicts
        own = state_dict["ema_nesterov"]
        self.beta, self.gamma, self.steps = float(own["beta"]), float(own["gamma"]), int(own["steps"])
        params = self._params()
        self.state.clear()
        for i, st in own["state"].items():
            p = params[int(i)]
            if tuple(st["x"].shape) != tuple(p.shape):
                raise ValueError(f"EMANesterov state for parameter {i} has shape {tuple(st['x'].shape)}, the "
                                 f"parameter {tuple(p.shape)}")
            self.state[p] = {"x": st["x"].to(p.device, p.dtype).clone(), "m": st["m"].to(p.device, p.dtype).clone()}

    def __repr__(self) -> str:
        return f"EMANesterov(beta={self.beta}, gamma={self.gamma}, base={self.base!r})"
