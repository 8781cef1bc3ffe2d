"""Sentences a demo report needs beside its table, read from metrics.json alone (so `sagc report`
re-renders them): runs whose budget was too short for this machine, and runs whose held-out
accuracy fell by more than the evaluation noise, each with its likely cause.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# A drop counts when it exceeds this many standard errors of the difference of two evaluations
# (binomial, n problems each): 2 x 2.7 = 5.5 points at 512 problems and 26% accuracy.
NOISE_SE = 2.0


def _runs(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    from sagc.demo.report import ordered_runs

    return ordered_runs(metrics)


def _min_steps(cfg: Mapping[str, Any]) -> int:
    return min(int(cfg.get("min_steps", 0) or 0), int(cfg.get("max_steps", 10**9)))


def budget_notes(metrics: Mapping[str, Any]) -> list[str]:
    """One line per run that made fewer than min_steps optimizer steps inside time_budget_s: what
    the demo did about it (trained on, up to max_time_s) and whether that was enough."""
    cfg = metrics.get("config") or {}
    budget, need = cfg.get("time_budget_s"), _min_steps(cfg)
    if not budget or not need:
        return []
    limit = cfg.get("max_time_s") or 1.5 * budget
    out = []
    for run in _runs(metrics):
        hist = run.get("history") or []
        if not hist or run.get("status") == "running":
            continue
        inside = sum(h["wall_s"] <= budget for h in hist)
        if inside >= need:
            continue
        rate = len(hist) / hist[-1]["wall_s"] if hist[-1]["wall_s"] else float("nan")
        g = hist[0].get("group_size")
        head = (f"{run['label']}: {inside} optimizer step{'s' * (inside != 1)} in the {budget:.0f} s budget "
                f"({rate:.2f} steps/s at G={g} on this machine), fewer than the {need} SAGC's models need (its "
                "step-time model acts from its 5th step)")
        if len(hist) >= need:
            out.append(f"{head}; the run trained on to {need} steps, {hist[-1]['wall_s']:.0f} s in all.")
        else:
            out.append(f"{head}; it made {len(hist)} by the {limit:.0f} s limit (max_time_s), too few to show what "
                       "SAGC does. The machine line says why this machine is slow; or give a longer --time-budget-s.")
    return out


def eval_noise(accuracy: float, n: int) -> float:
    """NOISE_SE standard errors of the difference of two evaluations of n problems at `accuracy`."""
    p = min(max(accuracy, 0.02), 0.98)
    return NOISE_SE * math.sqrt(2 * p * (1 - p) / n)


def accuracy_notes(metrics: Mapping[str, Any]) -> list[str]:
    """One line per run whose final held-out accuracy fell below the start by more than eval_noise,
    with the likely cause (see likely_cause)."""
    cfg = metrics.get("config") or {}
    n = cfg.get("eval_size")
    out = []
    for run in _runs(metrics):
        evals = [e for e in run.get("evals") or [] if e.get("accuracy") is not None]
        if not n or len(evals) < 2:
            continue
        before, after = evals[0]["accuracy"], evals[-1]["accuracy"]
        noise = eval_noise(before, n)
        if before - after <= noise:
            continue
        out.append(f"{run['label']}: held-out accuracy fell {before:.1%} -> {after:.1%} "
                   f"({100 * (after - before):+.1f} points; the evaluation noise is +-{100 * noise:.1f} points at "
                   f"{n} problems). Likely cause: {likely_cause(run, metrics)}")
    return out


def likely_cause(run: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """The measured causes of a drop on the built-in task (docs/benchmarks.md, issue 20)."""
    cfg = metrics.get("config") or {}
    machine = metrics.get("machine") or {}
    hist = run.get("history") or []
    causes = []
    if len(hist) < max(_min_steps(cfg), 1):
        causes.append(f"only {len(hist)} optimizer steps: AdamW's first steps at the full learning rate "
                      f"({cfg.get('learning_rate', '?')}) follow the few informative groups of each step, and "
                      "GRPO needs more steps to average them out (10 steps at G=4 moved held-out accuracy by "
                      "-2.3 to +3.1 points over 5 seeds, docs/benchmarks.md)")
    if machine.get("device", "cpu") == "cpu" and machine.get("bf16"):
        causes.append("bf16 autocast on a CPU: its rounding cost 0.7 points on average after 10 steps at G=4 "
                      "(5 seeds, within noise), and it makes every step slower where bf16 is not native")
    if not causes:
        causes.append("the policy drifted from the warm-start's answers (RL at this learning rate can trade "
                      "accuracy for shorter or longer completions; compare the mean lengths)")
    return "; ".join(causes) + ". One run is one sample: rerun with another --seed before reading much into it."
