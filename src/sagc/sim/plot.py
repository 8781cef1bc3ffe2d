"""One figure of a simulated run: what each controller chose, and what it cost or earned.

    plot_run(run_scenario(load_scenario("heavy-tail")), "heavy-tail.png")

Four panels sharing one colour per controller: group size over steps; rolling straggler-event
rate against the budget (with the virtual queue); step time; cumulative informative groups
against simulated seconds (goodput is the slope; the best static G in hindsight is dashed).
Needs the per-step series (run_scenario(..., include_series=True), the default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sagc.trace import atomic_path


def _rolling(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` steps (shorter at the start)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    idx = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_run(result: Mapping[str, Any], path_png: str | os.PathLike, window: int | None = None) -> Path:
    """Draw the run's figure to a PNG (written atomically) and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    runs = result["controllers"]
    if not runs:
        raise ValueError("the result has no controller runs to plot")
    for run in runs:
        if "series" not in run:
            raise ValueError(f"run {run['label']!r} has no per-step series: use run_scenario(..., include_series=True)")
    scenario = result.get("scenario", {})
    hind = result.get("hindsight") or {}
    budget = hind.get("budget")
    steps = max(len(r["series"]["group_size"]) for r in runs)
    window = window or max(10, min(100, steps // 20))
    colours = plt.get_cmap("tab10").colors

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), constrained_layout=True)
    ax_g, ax_ev, ax_t, ax_gp = axes.ravel()
    queue_ax = None
    for k, run in enumerate(runs):
        label, s = run["label"], run["series"]
        colour = colours[k % len(colours)]
        t = np.arange(1, len(s["group_size"]) + 1)
        summ = run["summary"]
        ax_g.step(t, s["group_size"], where="post", color=colour, lw=1.4,
                  label=f"{label} (mean G {summ['mean_group_size']:.1f})")
        ev = _rolling(np.asarray(s["event"], dtype=np.float64), window)
        ax_ev.plot(t, ev, color=colour, lw=1.6, label=f"{label} ({summ['straggler_rate']:.3f} overall)")
        queue = np.asarray([q if q is not None else np.nan for q in s["queue"]], dtype=np.float64)
        if np.nanmax(queue, initial=0.0) > 0:
            queue_ax = queue_ax or ax_ev.twinx()
            queue_ax.plot(t, queue, color=colour, lw=0.8, ls=":", alpha=0.6)
        step_s = np.asarray(s["step_s"], dtype=np.float64)
        ax_t.plot(t, step_s, color=colour, lw=0.5, alpha=0.25)
        ax_t.plot(t, _rolling(step_s, window), color=colour, lw=1.6,
                  label=f"{label} (p50 {summ['p50_step_s']:.1f} s, p95 {summ['p95_step_s']:.1f} s)")
        ax_gp.plot(np.cumsum(step_s) / 3600.0, np.cumsum(s["informative"]), color=colour, lw=1.6,
                   label=f"{label} ({summ['informative_groups_per_s']:.3f} groups/s)")

    sizes = scenario.get("group_sizes") or sorted({g for r in runs for g in r["series"]["group_size"]})
    ax_g.set_yscale("log", base=2)
    ax_g.set_yticks(sizes, [str(g) for g in sizes])
    ax_g.minorticks_off()
    ax_g.set(title="Group size chosen", xlabel="optimizer step", ylabel="G (completions per prompt)")

    if budget is not None:
        ax_ev.axhline(budget, color="black", ls="--", lw=1.0, label=f"budget δ = {budget:g}")
    ax_ev.set(title=f"Straggler events, rolling mean over {window} steps", xlabel="optimizer step",
              ylabel="event rate (events / step)", ylim=(0, None))
    if queue_ax is not None:
        queue_ax.set_ylabel("virtual queue Q (dotted)")
        queue_ax.set_ylim(0, None)

    ax_t.set(title=f"Step time (faint: each step; solid: rolling mean over {window})", xlabel="optimizer step",
             ylabel="seconds per step", ylim=(0, None))

    best = hind.get("best_g")
    by_g = hind.get("by_g") or {}
    if best is not None and str(best) in by_g:
        rate = by_g[str(best)]["informative_groups_per_s"]
        x_end = max(sum(r["series"]["step_s"]) for r in runs) / 3600.0
        ax_gp.plot([0, x_end], [0, rate * x_end * 3600.0], color="grey", ls="--", lw=1.0,
                   label=f"best static G={best} in hindsight ({rate:.3f}/s)")
    ax_gp.set(title="Goodput: informative groups over simulated time", xlabel="simulated hours",
              ylabel="informative groups (cumulative)", xlim=(0, None), ylim=(0, None))

    for ax in (ax_g, ax_ev, ax_t, ax_gp):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.85)
    name = scenario.get("name", "scenario")
    fig.suptitle(f"sagc simulate: {name} — B={scenario.get('prompts_per_step', '?')} prompts/step, "
                 f"{steps} steps, seed {scenario.get('seed', '?')}", fontsize=13)

    path = Path(path_png)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path


__all__ = ["plot_run"]
