"""Per-prompt state and per-prompt allocation (issue 22: ragged groups).

`PromptTable` is what a controller remembers of each prompt it has seen: a pass-rate posterior
(decayed success and failure counts), a length history (running mean of log length) and how many
visits in a row gave all-equal rewards (GRESO's predictor). It is a fixed-size, direct-mapped
table: prompt id k lives in slot k mod capacity, and a new prompt that lands on an occupied slot
replaces the old one (forgetting it). So the memory bound is fixed whatever the dataset size:

    capacity x 25 bytes (id int64, succ/fail/loglen float32, visits int32, streak int8),
    allocated on first use: 26.2 MB at the default capacity 2**20 (1,048,576 prompts).

With dataset indices as ids (0..N-1) and N <= capacity nothing is ever forgotten.

`allocate` solves the per-prompt knapsack max sum_i v_i(n_i) s.t. sum_i c_i(n_i) <= budget
greedily on marginal value per cost (the Lagrangian solution; one sort), vectorised over prompts.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

_FIELDS = ("id", "succ", "fail", "loglen", "visits", "streak")
_DTYPES = {"id": np.int64, "succ": np.float32, "fail": np.float32, "loglen": np.float32, "visits": np.int32,
           "streak": np.int8}
BYTES_PER_PROMPT = sum(np.dtype(t).itemsize for t in _DTYPES.values())  # 25


class PromptTable:
    """Bounded per-prompt memory (see the module docstring for the bound)."""

    def __init__(self, capacity: int, decay: float = 1.0) -> None:
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"prompt_capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self.decay = float(decay)  # weight of a prompt's old pass counts at each new visit
        self._a: dict[str, np.ndarray] | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self._a is None else sum(v.nbytes for v in self._a.values())

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._a is None:
            self._a = {k: np.zeros(self.capacity, dtype=t) for k, t in _DTYPES.items()}
            self._a["id"][:] = -1
        return self._a

    def __len__(self) -> int:
        return 0 if self._a is None else int(np.count_nonzero(self._a["id"] >= 0))

    def lookup(self, ids: np.ndarray, fields: tuple[str, ...] = _FIELDS[1:]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(found (n,) bool, {field: (n,) values}) for prompt ids (values of unseen prompts: 0);
        `fields`: the fields wanted (default: all but the id)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._a is None:
            zero = {k: np.zeros(ids.shape[0], dtype=_DTYPES[k]) for k in fields}
            return np.zeros(ids.shape[0], dtype=bool), zero
        slot = ids % self.capacity
        found = self._a["id"][slot] == ids
        return found, {k: np.where(found, self._a[k][slot], 0) for k in fields}

    def observe(self, ids: np.ndarray, succ: np.ndarray, scored: np.ndarray, loglen: np.ndarray) -> None:
        """One visit of each prompt: successes of `scored` rewards, mean log length of its completions."""
        a = self._arrays()
        ids = np.asarray(ids, dtype=np.int64)
        keep = np.asarray(scored) > 0
        ids, succ, scored, loglen = ids[keep], np.asarray(succ)[keep], np.asarray(scored)[keep], np.asarray(loglen)[keep]
        slot = ids % self.capacity
        seen = a["id"][slot] == ids
        for k in _FIELDS[1:]:  # a new prompt (or one that evicts another) starts from nothing
            a[k][slot[~seen]] = 0
        a["id"][slot] = ids
        fail = scored - succ
        a["succ"][slot] = self.decay * a["succ"][slot] + succ
        a["fail"][slot] = self.decay * a["fail"][slot] + fail
        v = a["visits"][slot].astype(np.float64)
        a["loglen"][slot] = (a["loglen"][slot] * v + loglen) / (v + 1.0)
        a["visits"][slot] = np.minimum(v + 1, 2**31 - 1)
        old = a["streak"][slot].astype(np.int64)
        allc, allw = succ >= scored, succ <= 0
        a["streak"][slot] = np.where(allc, np.clip(np.maximum(old, 0) + 1, 1, 100),
                                     np.where(allw, np.clip(np.minimum(old, 0) - 1, -100, -1), 0))

    def state_dict(self) -> dict:
        if self._a is None:
            return {k: [] for k in _FIELDS}
        used = np.flatnonzero(self._a["id"] >= 0)
        return {k: self._a[k][used].tolist() for k in _FIELDS}

    def load_state_dict(self, state: Any, path: str = "prompts") -> None:
        """Restore `state_dict()`; a malformed table is refused (ValueError naming the key)."""
        check_table(state, self.capacity, path)
        self._a = None
        if state["id"]:
            a = self._arrays()
            ids = np.asarray(state["id"], dtype=np.int64)
            for k in _FIELDS:
                a[k][ids % self.capacity] = np.asarray(state[k], dtype=_DTYPES[k])


def check_table(state: Any, capacity: int | None, path: str = "prompts") -> None:
    """A saved table (PromptTable.state_dict()), refused with a ValueError naming the key; without
    a capacity only its form is checked (the state_schema validator)."""
    if not isinstance(state, Mapping) or set(state) != set(_FIELDS):
        raise ValueError(f"state key {path!r} must be a mapping with the keys {list(_FIELDS)}")
    cols = {}
    for k in _FIELDS:
        v = state[k]
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise ValueError(f"state key '{path}.{k}' must be a list of numbers")
        cols[k] = np.asarray(v, dtype=np.float64)
    n = cols["id"].size
    if any(c.size != n for c in cols.values()):
        raise ValueError(f"state key {path!r}: its lists must be equally long")
    ids = cols["id"]
    if n and (np.any(ids < 0) or np.any(ids != np.floor(ids)) or np.any(ids >= 2**53)):
        raise ValueError(f"state key '{path}.id' must hold integer prompt ids >= 0")
    for k in ("succ", "fail", "visits"):
        if n and (not np.all(np.isfinite(cols[k])) or np.any(cols[k] < 0)):
            raise ValueError(f"state key '{path}.{k}' must hold finite numbers >= 0")
    if n and not np.all(np.isfinite(cols["loglen"])):
        raise ValueError(f"state key '{path}.loglen' must hold finite numbers")
    if n and (np.any(np.abs(cols["streak"]) > 100) or np.any(cols["streak"] != np.floor(cols["streak"]))):
        raise ValueError(f"state key '{path}.streak' must hold integers in [-100, 100]")
    if capacity is None:
        return
    if n > capacity:
        raise ValueError(f"state key {path!r} holds {n} prompts, more than prompt_capacity {capacity}")
    if np.unique(ids.astype(np.int64) % capacity).size != n:
        raise ValueError(f"state key '{path}.id': two prompts share a slot (ids must differ mod {capacity})")


def table_form(value: Any, path: str) -> None:
    """state_schema validator of a saved table (its form; the capacity is checked on load)."""
    check_table(value, None, path)


def group_outcomes(stats: Any, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group of a StepStats (sorted group ids): successes, scored rewards, mean log length."""
    succ, scored = stats.group_pass_counts(threshold)
    gi = stats.group_index
    logl = np.bincount(gi, weights=np.log(np.maximum(stats.length, 1)), minlength=stats.num_groups)
    cnt = np.bincount(gi, minlength=stats.num_groups)
    return succ, scored, logl / np.maximum(cnt, 1)


def mixed_prob(a: np.ndarray, b: np.ndarray, sizes: np.ndarray, moments: np.ndarray | None = None) -> np.ndarray:
    """E_p[1 - p^n - (1-p)^n] for p ~ Beta(a_i, b_i), per prompt i and size n. (m,) x (L,) -> (m, L)

    E[p^n] = prod_{k<n} (a + k) / (a + b + k). Sizes may include 0 (value 0). `moments`: the
    first columns of `mixed_moments(a, b, ...)` when already at hand (the rest are computed)."""
    s = np.asarray(sizes, dtype=np.int64)
    e = mixed_moments(a, b, int(max(np.max(sizes), 1)), moments)
    idx = np.maximum(s - 1, 0)
    out = (1.0 - e[0, idx] - e[1, idx]).T
    return np.where(s[None, :] > 0, np.maximum(out, 0.0), 0.0)


def mixed_moments(a: np.ndarray, b: np.ndarray, top: int, moments: np.ndarray | None = None) -> np.ndarray:
    """E[p^n], E[(1-p)^n] for n = 1..top, p ~ Beta(a_i, b_i). (m,) -> (2, top, m)

    `moments`: its first columns (2, j, m), j <= top, from an earlier call on the same a, b;
    the columns after them are the same floats as without it (one product at a time, in order)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    j = 0 if moments is None else min(moments.shape[1], top)
    k = np.arange(j, top, dtype=np.float64)[:, None]  # (top - j, 1)
    inv = 1.0 / (a + b + k)  # (top - j, m)
    e = np.empty((2, top, a.shape[0]))
    e[:, j:] = (np.stack([a, b])[:, None, :] + k) * inv  # factors (a + k) / (a + b + k), (b + k) / ...
    if j:
        e[:, :j] = moments[:, :j]
    # running products over k, in cumprod's order (the same floats either way): e[:, k] is
    # E[p^(k+1)], E[(1-p)^(k+1)]. Many prompts: one product per k over all of them; few: cumprod.
    start = max(j, 1)
    if a.shape[0] >= _ROW_PRODUCTS_FROM:
        for i in range(start, top):
            np.multiply(e[:, i - 1], e[:, i], out=e[:, i])
    elif start < top:
        e[:, start - 1:] = np.cumprod(e[:, start - 1:], axis=1)
    return e


def mixed_prob_one(a: float, b: float, n: int) -> float:
    """float(mixed_prob([a], [b], [n])[0, 0]) in plain floats: the same operations in the same
    order (IEEE doubles either way), without numpy's overhead on one value."""
    if n <= 0:
        return 0.0
    a, b = float(a), float(b)
    pa = pb = 1.0
    for k in range(n):
        inv = 1.0 / (a + b + float(k))
        pa *= (a + float(k)) * inv
        pb *= (b + float(k)) * inv
    out = 1.0 - pa - pb
    return out if out != out else max(out, 0.0)


def completion_seconds(rel: np.ndarray, surv: np.ndarray, coef: np.ndarray, longest: float, elasticity: float,
                       completions: float, mean_len: float) -> np.ndarray | None:
    """Predicted step seconds of one more completion of each prompt: SAGC's step-time model
    T = c0 + c1 M + c2 N L + c3 M N (M the longest completion, N completions, L their mean length)
    linearised at the step's uniform allocation. Tokens: c2 L rel_i (+ c3 M, padding). The longest:
    N dM/dN = M x elasticity (the risk model's E[M] at 2G against G) is shared among completions in
    proportion to surv_i, the chance that one of prompt i's completions outlasts E[M] (the fitted
    residual law at the prompt's own length). A completion of a prompt twice as long as most costs
    far more than twice: it is what the step waits for. None when the model gives no positive cost.

    rel, surv: (m,) relative length and P(length > E[M]) per prompt; coef: 3 or 4 fitted terms."""
    c3 = float(coef[3]) if coef.size > 3 else 0.0
    wait = max((float(coef[1]) + c3 * completions) * longest * elasticity / completions, 0.0)
    work = max(float(coef[2]) * mean_len, 0.0)
    per = wait * surv / max(float(np.mean(surv)), 1e-300) + work * rel / float(np.mean(rel)) + max(c3 * longest, 0.0)
    return per if bool(np.all(np.isfinite(per)) and np.all(per > 0)) else None


def completion_cost(rel: np.ndarray, model: Any, coef: np.ndarray, mean_len: float, exp_max: np.ndarray,
                    allowed: tuple[int, ...], g0: int, prompts: int) -> np.ndarray:
    """`completion_seconds` of the kept prompts at the step's G0 (B = prompts), from SAGC's fitted
    step-time coefficients and its risk model (a sagc.risk.RiskModel: `res.survival`, `mu_next`);
    exp_max: the model's E[longest] at each allowed G. `rel` when the model gives no positive cost."""
    k = allowed.index(g0)
    j = k + 1 if k + 1 < len(allowed) else k - 1  # elasticity d log E[M] / d log N from a neighbouring G
    slope = (math.log(max(exp_max[j], 1e-9) / max(exp_max[k], 1e-9)) / math.log(allowed[j] / allowed[k])
             if j >= 0 else 0.0)
    surv = model.res.survival(math.log(exp_max[k]) - model.mu_next - np.log(rel))  # (m,)
    per = completion_seconds(rel, surv, coef, float(exp_max[k]), max(slope, 0.0), float(prompts * g0), mean_len)
    return rel if per is None else per


_ROW_PRODUCTS_FROM = 256  # prompts from which mixed_moments multiplies a whole column at a time


def allocate(value: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:
    """Level per prompt for max sum_i value_i - s.t. sum_i cost_i <= budget (a multiple-choice
    knapsack), by the greedy on marginal value per marginal cost: every prompt starts at its first
    level; the step up to the next level with the best ratio is taken while the budget allows.
    Each row's ratios are made non-increasing first (its concave envelope, to the conservative
    side), so a row's steps are taken in order; this is the Lagrangian solution of the knapsack,
    one sort over prompts x levels (well under a millisecond at B = 512).

    value, cost: (m, L) per prompt and level (cost increasing in the level). Returns (m,) levels."""
    m, levels = value.shape
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    spent = float(cost[:, 0].sum())
    if levels == 1 or spent >= budget:
        return np.zeros(m, dtype=np.int64)
    dc = np.diff(cost, axis=1)  # (m, L-1) > 0
    ratio = np.minimum.accumulate(np.diff(value, axis=1) / dc, axis=1)
    step = np.broadcast_to(np.arange(levels - 1), ratio.shape)
    useful = ratio > 0
    r, c, st = ratio[useful], dc[useful], step[useful]
    rows = np.broadcast_to(np.arange(m)[:, None], ratio.shape)[useful]
    order = np.lexsort((st, -r))  # best ratio first; a row's lower step first on ties
    fits = spent + np.cumsum(c[order]) <= budget + 1e-9
    stop = int(np.argmin(fits)) if not fits.all() else fits.size  # a prefix: each row's steps stay in order
    return np.bincount(rows[order[:stop]], minlength=m).astype(np.int64)


__all__ = ["PromptTable", "BYTES_PER_PROMPT", "allocate", "mixed_prob", "mixed_prob_one", "mixed_moments",
           "completion_seconds", "completion_cost", "group_outcomes", "check_table", "table_form"]
