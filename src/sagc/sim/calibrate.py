"""Fit the simulator's engine constants to a run's own timings (`sagc whatif --engine calibrate`).

Given the schedule, the engine model (sagc.sim.engine) is linear in its constants. For one
replica that received the completion lengths L_1..L_n (in submission order) on `slots` slots,
the list schedule gives, in iteration units,
    I = iterations until its last sequence finishes    (every iteration pays decode_s_per_iter)
    A = sum_k L_k = active-sequence iterations          (each pays decode_s_per_seq)
    N = n sequences                                     (each start pays prefill_s_per_token * P)
so its time is a*I + b*A + c*N with c = prefill_s_per_token * P, and a step's
    rollout_s = max over replicas of that time
    step_s    = rollout_s + train_s_per_token * tokens + overhead_s.
We fit (a, b, c) to the recorded rollout_s and (train, overhead) to step_s - rollout_s by
non-negative least squares on relative errors (a 2-second and a 200-second step count alike).
With several replicas the slowest one depends on the constants: we start from the replica
with the most iterations and refit with the slowest replica under the current fit until the
choice stops changing (a few rounds).

NNLS here is exact by enumeration: with at most 3 unknowns, try every subset of columns, keep
the least-squares solutions whose coefficients are all >= 0 and whose columns are independent,
take the best. A constant the data cannot separate (e.g. the two decode constants when every
completion of a step has the same length, so A = N * I) is reported as not identifiable and set
to 0; one the best fit would make negative is reported as fitted at the bound 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sagc.sim.engine import schedule
from sagc.sim.pool import step_work
from sagc.sim.scenario import EngineSettings

ROLLOUT_PARAMS = ("decode_s_per_iter", "decode_s_per_seq", "prefill_s_per_seq")
TRAIN_PARAMS = ("train_s_per_token", "overhead_s")


@dataclass(frozen=True)
class Calibration:
    """A fitted engine and how well it explains the recorded step times."""

    engine: EngineSettings
    prompt_tokens: int  # prefill_s_per_token = prefill_s_per_seq / prompt_tokens
    fitted: dict[str, float]  # constant -> fitted value (prefill as prefill_s_per_seq)
    notes: tuple[str, ...]  # constants that could not be fitted, and why
    steps: int  # records with timings used
    rollout_rel_rmse: float
    rollout_max_rel_err: float
    step_rel_rmse: float  # NaN when the trace has no step_s
    step_max_rel_err: float
    predicted_rollout_s: np.ndarray  # (steps,) seconds
    recorded_rollout_s: np.ndarray  # (steps,)
    predicted_step_s: np.ndarray  # (steps,)
    recorded_step_s: np.ndarray  # (steps,) NaN where not recorded

    def summary(self) -> dict[str, Any]:
        """Plain-JSON view (no per-step arrays)."""
        return {"engine": dataclasses.asdict(self.engine), "prompt_tokens": self.prompt_tokens,
                "fitted": dict(self.fitted), "notes": list(self.notes), "steps": self.steps,
                "rollout_rel_rmse": self.rollout_rel_rmse, "rollout_max_rel_err": self.rollout_max_rel_err,
                "step_rel_rmse": self.step_rel_rmse, "step_max_rel_err": self.step_max_rel_err}

    def describe(self) -> str:
        """One paragraph for the console: the constants and the fit's error."""
        e = self.engine
        parts = [f"calibrated engine from {self.steps} steps ({e.replicas} replica(s) x {e.slots} slots): "
                 f"decode_s_per_iter={e.decode_s_per_iter:.4g}, decode_s_per_seq={e.decode_s_per_seq:.4g}, "
                 f"prefill_s_per_seq={self.fitted.get('prefill_s_per_seq', 0.0):.4g}, "
                 f"train_s_per_token={e.train_s_per_token:.4g}, overhead_s={e.overhead_s:.4g}",
                 f"fit error: rollout_s relative RMSE {self.rollout_rel_rmse:.1%} (max {self.rollout_max_rel_err:.1%})"]
        if math.isfinite(self.step_rel_rmse):
            parts[-1] += f", step_s relative RMSE {self.step_rel_rmse:.1%} (max {self.step_max_rel_err:.1%})"
        return "\n".join(parts + list(self.notes))


def replica_regressors(length: np.ndarray, slots: int, replicas: int) -> np.ndarray:
    """(replicas, 3) array of (I, A, N) per replica for one step's lengths in submission order
    (request k goes to replica k % replicas, as in sagc.sim.engine)."""
    length = np.asarray(length, dtype=np.int64).ravel()  # (n,) tokens
    out = np.zeros((replicas, 3), dtype=np.float64)
    for r in range(min(replicas, length.shape[0])):
        share = length[r::replicas]
        _, finish = schedule(share, slots)
        out[r] = (float(finish.max()), float(share.sum()), float(share.shape[0]))
    return out


def nnls_small(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """min ||x b - y|| subject to b >= 0 for a few columns, by enumerating column subsets.

    Returns (b, the columns used). Columns are scaled to unit norm first (conditioning);
    subsets whose scaled columns are not independent are skipped."""
    k = x.shape[1]
    norm = np.linalg.norm(x, axis=0)  # (k,)
    usable = [j for j in range(k) if norm[j] > 0]
    xs = x[:, usable] / norm[usable]
    best: tuple[float, np.ndarray, tuple[int, ...]] | None = None
    for size in range(len(usable), 0, -1):
        for subset in itertools.combinations(range(len(usable)), size):
            sub = xs[:, subset]
            if np.linalg.matrix_rank(sub, tol=1e-9 * max(1.0, float(np.abs(sub).max()))) < size:
                continue
            coef, *_ = np.linalg.lstsq(sub, y, rcond=None)
            if np.any(coef < 0):
                continue
            resid = float(np.sum((sub @ coef - y) ** 2))
            if best is None or resid < best[0] * (1 - 1e-12) - 1e-300:
                full = np.zeros(k)
                cols = tuple(usable[j] for j in subset)
                full[list(cols)] = coef / norm[list(cols)]
                best = (resid, full, cols)
    if best is None:
        return np.zeros(k), ()
    return best[1], best[2]


def _unused_notes(x: np.ndarray, used: tuple[int, ...], names: Sequence[str]) -> list[str]:
    """Why each constant outside `used` is 0: the data cannot separate it (its column is zero or a
    combination of the others), or the best fit wants it negative and it sits at the bound 0."""
    norm = np.linalg.norm(x, axis=0)
    scaled = x[:, norm > 0] / norm[norm > 0]
    full_rank = np.linalg.matrix_rank(scaled, tol=1e-9) == x.shape[1]
    notes = []
    for j in range(x.shape[1]):
        if j in used:
            continue
        if full_rank:
            notes.append(f"{names[j]} fitted as 0 (the bound: a positive value does not reduce the error)")
        else:
            notes.append(f"{names[j]} not identifiable from this trace (it moves with the other constants); "
                         "set to 0")
    return notes


def _trained_tokens(record: dict) -> float:
    return float(sum(sum(g["lengths"]) for g in record["groups"]))


def calibrate(records: Sequence[dict], sources: Sequence[str], slots: int | None = None, replicas: int = 1,
              prompt_tokens: int = 0, max_rounds: int = 20) -> Calibration:
    """Fit engine constants to the records' rollout_s / step_s (records as sagc.trace.read_trace yields).

    sources: the file each record came from (for error messages). slots: concurrent sequences
    per replica (default: the most completions any step had, i.e. every request starts at once).
    prompt_tokens: if > 0, the fitted per-sequence prefill is divided by it to give
    prefill_s_per_token; otherwise the prefill is kept per sequence (prompt_tokens = 1).
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if not records:
        raise ValueError("calibrate needs at least one trace record")
    rollout = np.array([r.get("rollout_s", float("nan")) for r in records], dtype=np.float64)  # (R,)
    step = np.array([r.get("step_s", float("nan")) for r in records], dtype=np.float64)  # (R,)
    files = sorted(set(sources))
    if not np.any(np.isfinite(rollout) & (rollout > 0)):
        raise ValueError(f"{', '.join(files)}: no step records rollout_s (null or absent on every line); "
                         "--engine calibrate fits the engine to the recorded rollout_s and step_s of each step. "
                         "Record them (SAGCGRPOTrainer and `sagc train` do), or pick a preset with --engine NAME")
    keep = np.flatnonzero(np.isfinite(rollout) & (rollout > 0))  # (K,) records with a rollout time
    if keep.shape[0] < 3:
        raise ValueError(f"{', '.join(files)}: only {keep.shape[0]} step(s) record rollout_s > 0; "
                         "calibrate needs at least 3 to fit the engine")
    # what the engine ran in each step: under a tail-control policy (a `tail` field) not the trained
    # lengths but this step's tokens of them plus the cancelled completions' (sagc.sim.pool.step_work)
    lengths = [step_work(records[i]) for i in keep]
    slots = int(slots) if slots is not None else max(int(x.shape[0]) for x in lengths)
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    reg = np.stack([replica_regressors(x, slots, replicas) for x in lengths])  # (K, replicas, 3)
    y = rollout[keep]  # (K,) seconds
    w = 1.0 / y  # relative least squares
    pick = np.argmax(reg[:, :, 0], axis=1)  # (K,) start: the replica with the most iterations
    coef = np.zeros(3)
    for _ in range(max_rounds):
        x = reg[np.arange(keep.shape[0]), pick]  # (K, 3)
        coef, _ = nnls_small(x * w[:, None], y * w)
        new_pick = np.argmax(reg @ coef, axis=1)
        if np.array_equal(new_pick, pick):
            break
        pick = new_pick
    x = reg[np.arange(keep.shape[0]), pick]
    coef, used = nnls_small(x * w[:, None], y * w)
    notes = _unused_notes(x, used, ROLLOUT_PARAMS)
    pred_rollout = (reg @ coef).max(axis=1)  # (K,) seconds
    tokens = np.array([_trained_tokens(records[i]) for i in keep])  # (K,) trained tokens: what training costs
    s = step[keep]
    has_step = np.isfinite(s)
    train = np.zeros(2)
    if has_step.sum() >= 2:
        extra = s[has_step] - y[has_step]  # (K',) seconds outside the rollout
        x2 = np.stack([tokens[has_step], np.ones(int(has_step.sum()))], axis=1)
        w2 = 1.0 / s[has_step]
        train, used2 = nnls_small(x2 * w2[:, None], extra * w2)
        notes += _unused_notes(x2, used2, TRAIN_PARAMS)
    else:
        notes.append(f"{', '.join(files)}: step_s is not recorded, so train_s_per_token and overhead_s are 0 "
                     "(simulated steps are rollouts only)")
    pred_step = pred_rollout + train[0] * tokens + train[1]
    per_seq = float(coef[2])
    p = int(prompt_tokens) if prompt_tokens and prompt_tokens > 0 else 1
    if float(coef[0]) + float(coef[1]) <= 0:
        raise ValueError(f"{', '.join(files)}: the fit found no decode cost (both decode constants 0); "
                         "the recorded rollout_s do not grow with completion lengths")
    engine = EngineSettings(replicas=replicas, slots=slots, decode_s_per_iter=float(coef[0]),
                            decode_s_per_seq=float(coef[1]), prefill_s_per_token=per_seq / p,
                            train_s_per_token=float(train[0]), overhead_s=float(train[1]))
    rel_r = (pred_rollout - y) / y
    rel_s = (pred_step[has_step] - s[has_step]) / s[has_step]
    nan = float("nan")
    return Calibration(
        engine=engine, prompt_tokens=p,
        fitted={"decode_s_per_iter": float(coef[0]), "decode_s_per_seq": float(coef[1]),
                "prefill_s_per_seq": per_seq, "train_s_per_token": float(train[0]), "overhead_s": float(train[1])},
        notes=tuple(notes), steps=int(keep.shape[0]),
        rollout_rel_rmse=float(np.sqrt(np.mean(rel_r ** 2))), rollout_max_rel_err=float(np.max(np.abs(rel_r))),
        step_rel_rmse=float(np.sqrt(np.mean(rel_s ** 2))) if rel_s.size else nan,
        step_max_rel_err=float(np.max(np.abs(rel_s))) if rel_s.size else nan,
        predicted_rollout_s=pred_rollout, recorded_rollout_s=y, predicted_step_s=pred_step, recorded_step_s=s)


__all__ = ["Calibration", "calibrate", "nnls_small", "replica_regressors", "ROLLOUT_PARAMS", "TRAIN_PARAMS"]
