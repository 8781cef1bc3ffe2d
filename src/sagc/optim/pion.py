"""Pion and Muon for hidden weight matrices, with AdamW for every other parameter, in one optimizer.

Pion (Fan et al., "Rethinking Muon Beyond Pretraining", arXiv 2605.19282; reference code
OPTML-Group/Pion, MIT, read, not copied) is Muon with a high-pass Newton-Schulz iteration.
Muon replaces a momentum matrix M = U diag(s) V^T by ~U V^T: every singular value is pushed to
1 ("uniform whitening"), which in RLVR amplifies the noisy tail directions of low-SNR
gradients. Pion normalises M by its Frobenius norm (so s <= 1) and applies to the singular
values, through odd matrix polynomials X -> p(X X^T) X,

    promotion   f_p(s) = 1.875 s - 1.25 s^3 + 0.375 s^5     k_p times (raises every s toward 1)
    suppression f_s(s) = 2.5 s^3 - 1.5 s^5                   k_s times

f_s has fixed points 0 and 1 (both super-attracting) and an unstable one at sqrt(2/3): values
above it go to 1, values below go to 0. So the map f_s^k_s o f_p^k_p is a high-pass filter on
the spectrum: dominant directions anchored at 1, the tail suppressed to 0; more promotion steps
lower the cut-off (`pass_band_threshold`). Per-head mode applies the iteration to each attention
head's block (rows of q/k/v_proj, columns of o_proj) so heads keep their own spectra.

The update of a matrix W (rows x cols) is, as in the reference code,
    W <- W (1 - lr * weight_decay) - lr * scale * sqrt(max(rows, cols)) * O
with O the filtered momentum (per head: the head block's dims). For an orthogonal O that makes
the update's RMS scale * lr, comparable to AdamW's at the same lr. `spectral="muon"` uses torch's
Newton-Schulz (torch.optim.Muon's quintic) instead: that is the `muon` optimizer of sagc.optim.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer

SQRT_2_3 = math.sqrt(2.0 / 3.0)  # the unstable fixed point of f_s: the cut-off after promotion
PROMOTION = (1.875, -1.25, 0.375)  # f_p(s) = a s + b s^3 + c s^5
SUPPRESSION = (0.0, 2.5, -1.5)  # f_s(s) = b s^3 + c s^5
SPECTRAL = ("pion", "muon")


def promotion_poly(s: Any) -> Any:
    a, b, c = PROMOTION
    return a * s + b * s ** 3 + c * s ** 5


def suppression_poly(s: Any) -> Any:
    _, b, c = SUPPRESSION
    return b * s ** 3 + c * s ** 5


def high_pass_scalar(s: Any, promotion_steps: int, suppression_steps: int) -> Any:
    """The map the matrix iteration applies to each (Frobenius-normalised) singular value."""
    for _ in range(promotion_steps):
        s = promotion_poly(s)
    for _ in range(suppression_steps):
        s = suppression_poly(s)
    return s


def pass_band_threshold(promotion_steps: int) -> float:
    """The normalised singular value that promotion sends to sqrt(2/3): above it the iteration
    converges to 1, below it to 0 (f_p is increasing on [0, 1], so bisection finds it)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if high_pass_scalar(mid, promotion_steps, 0) < SQRT_2_3:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def high_pass_ns(m: torch.Tensor, promotion_steps: int, suppression_steps: int, eps: float = 1e-7,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """Pion's iteration on m: (..., rows, cols), each trailing matrix normalised on its own.

    Returns the same shape in `dtype` (default m's dtype). Runs on the smaller Gram matrix.
    """
    x = m.to(dtype or m.dtype)
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)  # Frobenius: every s <= 1
    wide = x.size(-2) <= x.size(-1)
    if not wide:
        x = x.mT
    _, b_s, c_s = SUPPRESSION
    a_p, b_p, c_p = PROMOTION
    for _ in range(promotion_steps):
        gram = x @ x.mT  # (..., k, k), eigenvalues s^2
        x = a_p * x + (b_p * gram + c_p * gram @ gram) @ x
    for _ in range(suppression_steps):
        gram = x @ x.mT
        x = (b_s * gram + c_s * gram @ gram) @ x
    return x if wide else x.mT


def muon_ns(m: torch.Tensor, ns_steps: int, eps: float = 1e-7) -> torch.Tensor:
    """torch.optim.Muon's Newton-Schulz (U S' V^T with S' ~ 1) on a 2D matrix, in m's dtype."""
    try:  # reuse torch's implementation (private, hence the fallback message)
        from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, _zeropower_via_newtonschulz
    except ImportError as exc:  # pragma: no cover - depends on the torch version
        raise RuntimeError("spectral='muon' needs torch >= 2.9 (torch.optim.Muon)") from exc
    return _zeropower_via_newtonschulz(m, (DEFAULT_A, DEFAULT_B, DEFAULT_C), ns_steps, eps).to(m.dtype)


def head_blocks(m: torch.Tensor, axis: int, head_dim: int) -> torch.Tensor:
    """(rows, cols) -> (heads, block_rows, block_cols): heads along rows (axis 0) or columns (1)."""
    rows, cols = m.shape
    if axis == 0:
        return m.reshape(rows // head_dim, head_dim, cols)
    return m.reshape(rows, cols // head_dim, head_dim).permute(1, 0, 2)


def from_head_blocks(blocks: torch.Tensor, axis: int) -> torch.Tensor:
    heads, r, c = blocks.shape
    if axis == 0:
        return blocks.reshape(heads * r, c)
    return blocks.permute(1, 0, 2).reshape(r, heads * c)


def matrix_update(m: torch.Tensor, group: dict) -> torch.Tensor:
    """The scaled spectral update of one momentum matrix (rows, cols), per head if the group says."""
    dtype = group["ns_dtype"] or (torch.bfloat16 if m.is_cuda else torch.float32)
    axis, head_dim = group.get("head_axis"), group.get("head_dim")
    if group["spectral"] == "muon":
        o = muon_ns(m.to(torch.float32), group["ns_steps"])
        return o.to(m.dtype) * (group["scale"] * math.sqrt(max(m.shape)))
    suppression = group["ns_steps"] - group["promotion_steps"]
    if axis is not None and m.shape[axis] % head_dim == 0 and m.shape[axis] > head_dim:
        blocks = head_blocks(m, axis, head_dim)
        o = high_pass_ns(blocks, group["promotion_steps"], suppression, dtype=dtype)
        o = from_head_blocks(o, axis)
        return o.to(m.dtype) * (group["scale"] * math.sqrt(max(blocks.shape[-2:])))
    o = high_pass_ns(m, group["promotion_steps"], suppression, dtype=dtype)
    return o.to(m.dtype) * (group["scale"] * math.sqrt(max(m.shape)))


class Pion(Optimizer):
    """One optimizer over two kinds of parameter groups (see `pion_param_groups`):

    group["kind"] == "matrix": momentum (Nesterov by default) -> spectral filter -> scaled step;
    group["kind"] == "adamw":  AdamW (decoupled weight decay), for embeddings, norms, biases, heads.
    """

    def __init__(self, params: Iterable[dict], lr: float = 1e-5, momentum: float = 0.95, nesterov: bool = True,
                 promotion_steps: int = 0, ns_steps: int = 5, scale: float = 2.0, weight_decay: float = 0.0,
                 spectral: str = "pion", ns_dtype: torch.dtype | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if spectral not in SPECTRAL:
            raise ValueError(f"spectral must be one of {list(SPECTRAL)}, got {spectral!r}")
        if not 0 <= promotion_steps <= ns_steps:
            raise ValueError(f"promotion_steps must be in [0, ns_steps={ns_steps}], got {promotion_steps}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, promotion_steps=promotion_steps,
                        ns_steps=ns_steps, scale=scale, weight_decay=weight_decay, spectral=spectral,
                        ns_dtype=ns_dtype, betas=tuple(betas), eps=eps, kind="matrix", head_axis=None,
                        head_dim=None)
        super().__init__(list(params), defaults)
        for group in self.param_groups:
            if group["kind"] not in ("matrix", "adamw"):
                raise ValueError(f"param group kind must be 'matrix' or 'adamw', got {group['kind']!r}")
            if group["kind"] == "matrix" and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("matrix groups hold 2D parameters only; put others in an 'adamw' group")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (self._matrix_step if group["kind"] == "matrix" else self._adamw_step)(group)
        return loss

    def _matrix_step(self, group: dict) -> None:
        lr, mu = group["lr"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self.state[p]
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = torch.zeros_like(p)
            buf = st["momentum_buffer"]
            buf.lerp_(p.grad, 1 - mu)  # EMA of gradients, as torch.optim.Muon
            m = p.grad.lerp(buf, mu) if group["nesterov"] else buf
            p.mul_(1 - lr * group["weight_decay"])
            p.add_(matrix_update(m, group), alpha=-lr)

    def _adamw_step(self, group: dict) -> None:
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self.state[p]
            if "step" not in st:
                st["step"] = torch.zeros((), dtype=torch.float32)
                st["exp_avg"] = torch.zeros_like(p)
                st["exp_avg_sq"] = torch.zeros_like(p)
            st["step"] += 1
            t = float(st["step"])
            st["exp_avg"].lerp_(p.grad, 1 - b1)
            st["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (st["exp_avg_sq"] / (1 - b2 ** t)).sqrt_().add_(eps)
            p.mul_(1 - lr * group["weight_decay"])
            p.addcdiv_(st["exp_avg"], denom, value=-lr / (1 - b1 ** t))


HEAD_PROJ_AXIS = {"q_proj": 0, "k_proj": 0, "v_proj": 0, "o_proj": 1}  # Llama/Qwen/Mistral naming


def pion_param_groups(model: torch.nn.Module, per_head: bool = True, adamw_weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups for `Pion`: hidden 2D weights as "matrix" (per head for attention
    projections when `per_head`), everything else (embeddings, LM head, norms, biases) "adamw".

    Embeddings and the output layer are excluded from the matrix groups as in Muon/Pion: their
    rows are per-token vectors, not a linear map whose spectrum means anything.
    """
    excluded: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None:
            excluded |= {id(p) for p in module.parameters()}
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            excluded |= {id(p) for p in module.parameters()}
    config = getattr(model, "config", None)
    head_dim = getattr(config, "head_dim", None) if config is not None else None
    if not head_dim and config is not None and getattr(config, "num_attention_heads", None):
        head_dim = config.hidden_size // config.num_attention_heads
    whole, adamw, heads = [], [], {0: [], 1: []}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim != 2 or id(p) in excluded:
            adamw.append(p)
            continue
        proj = name.rsplit(".", 2)[-2] if name.endswith(".weight") and "." in name else ""
        if per_head and head_dim and proj in HEAD_PROJ_AXIS:
            heads[HEAD_PROJ_AXIS[proj]].append(p)
        else:
            whole.append(p)
    groups = [{"params": whole, "kind": "matrix"}]
    groups += [{"params": ps, "kind": "matrix", "head_axis": axis, "head_dim": head_dim}
               for axis, ps in heads.items() if ps]
    groups.append({"params": adamw, "kind": "adamw", "weight_decay": adamw_weight_decay})
    return [g for g in groups if g["params"]]
