"""The demo's report folder: metrics JSON in, a table and PNG plots out (`sagc report DIR`).

Folder layout (everything written atomically, so an interrupted run leaves a readable report):

    report/
      metrics.json      {"status", "config", "machine", "machine_line", "before": {...}, "runs": {label: run}}
      traces/LABEL.jsonl   rollout traces (design section 6), replayable by `sagc simulate`
      summary.png       reward and held-out accuracy vs wall-clock, G over steps,
                        completion-length distribution, straggler events
      README.md         the table, for people who open the folder; an interrupted demo says
                        so and in which phase ("phase" in metrics.json)

A run is {"label", "controller", "status", "history": [per-step dicts], "evals": [{"step",
"wall_s", "accuracy", "mean_length", "truncated_rate"}], "lengths": [sampled completion lengths]}.
Per-step dicts hold at least step, wall_s, group_size, event, queue, reward, completion_length
(and `infeasible`, SAGC's flag that no allowed G met the budget, where the run recorded it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from rich.table import Table

from sagc._io import InputError, atomic_path, is_real, write_json_atomic, write_text_atomic

METRICS = "metrics.json"


def save_metrics(folder: Path, metrics: Mapping[str, Any]) -> None:
    write_json_atomic(Path(folder) / METRICS, metrics, digits=None)


def load_metrics(folder: Path) -> dict:
    path = Path(folder) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {METRICS} here; is this a report folder written by `sagc demo`?")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    check_metrics(metrics, path)
    return metrics


def check_metrics(metrics: Any, path: Path) -> None:
    """The shape `render` relies on, so a damaged metrics.json gets a message, not a traceback."""
    def bad(key: str, want: str, got: Any) -> InputError:
        return InputError(f"{path}: {key} must be {want}, got {type(got).__name__} {str(got)[:60]!r}")

    if not isinstance(metrics, dict):
        raise bad("the file", "a JSON object", metrics)
    runs = metrics.get("runs", {})
    if not isinstance(runs, dict):
        raise bad("runs", "an object of runs by label", runs)
    for key in ("target_accuracy",):
        if metrics.get(key) is not None and not is_real(metrics[key]):
            raise bad(key, "a number or null", metrics[key])
    if not isinstance(metrics.get("order", list(runs)), list):
        raise bad("order", "a list of run labels", metrics["order"])
    for label, run in runs.items():
        if not isinstance(run, dict):
            raise bad(f"runs.{label}", "an object", run)
        for part, needs in (("history", ("group_size", "wall_s")), ("evals", ("accuracy", "wall_s"))):
            rows = run.get(part, [])
            if not isinstance(rows, list):
                raise bad(f"runs.{label}.{part}", "a list", rows)
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise bad(f"runs.{label}.{part}[{i}]", "an object", row)
                for k in needs:
                    if k not in row or (row[k] is not None and not is_real(row[k])):
                        raise bad(f"runs.{label}.{part}[{i}].{k}", "a number", row.get(k))


def time_to_target(evals: Sequence[Mapping[str, Any]], target: float) -> float | None:
    """Wall seconds until held-out accuracy first reaches target (None: never)."""
    for e in evals:
        if e.get("accuracy") is not None and e["accuracy"] >= target:
            return float(e["wall_s"])
    return None


def summarize_run(run: Mapping[str, Any], target: float | None) -> dict:
    """One row of the side-by-side table."""
    hist, evals = run.get("history", []), run.get("evals", [])
    events = [bool(h["event"]) for h in hist if h.get("event") is not None]
    gs = [h["group_size"] for h in hist]
    lens = [h["completion_length"] for h in hist if h.get("completion_length") is not None]
    first = evals[0]["accuracy"] if evals else None
    last = evals[-1]["accuracy"] if evals else None
    return {
        "label": run["label"], "status": run.get("status", "unknown"),
        "wall_s": float(hist[-1]["wall_s"]) if hist else 0.0, "steps": len(hist),
        "straggler_rate": float(np.mean(events)) if events else None,
        "mean_group_size": float(np.mean(gs)) if gs else None,
        "mean_completion_length": float(np.mean(lens)) if lens else None,
        "accuracy_before": first, "accuracy_after": last,
        "time_to_target_s": time_to_target(evals, target) if target is not None else None,
        "mean_rollout_s": float(np.mean([h["rollout_s"] for h in hist])) if hist and "rollout_s" in hist[0] else None,
        "infeasible_steps": sum(bool(h.get("infeasible")) for h in hist),
    }


def run_notes(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any] | None = None) -> list[str]:
    """Sentences a reader needs next to the table: runs whose straggler budget could not be met,
    and with `metrics` (sagc.demo.notes) runs too slow for their budget and accuracy drops."""
    from sagc.demo.notes import accuracy_notes, budget_notes

    # a flagged step is not necessarily at the smallest G: the queue needs a few steps to grow
    notes = [f"{r['label']}: the straggler budget was infeasible on {r['infeasible_steps']} of {r['steps']} "
             "steps (every allowed G predicted to straggle more often than delta); on those steps SAGC took "
             "the best-goodput G instead of shrinking G; raise delta or use delta='auto'."
             for r in rows if r.get("infeasible_steps")]
    return notes + (budget_notes(metrics) + accuracy_notes(metrics) if metrics is not None else [])


def machine_line_of(metrics: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The report's machine line (sagc.tasks.machine.machine_line) with each run's steps per second."""
    from sagc.tasks.machine import machine_line

    if not metrics.get("machine"):
        return "machine: not recorded (a report from before sagc recorded it)"
    rows = table_rows(metrics) if rows is None else rows
    rates = {r["label"]: r["steps"] / r["wall_s"] for r in rows if r.get("steps") and r.get("wall_s")}
    return machine_line(metrics.get("machine"), rates)


COLUMNS = [("wall_s", "wall-clock s", "{:.0f}"), ("steps", "steps", "{}"),
           ("straggler_rate", "straggler rate", "{:.2f}"), ("mean_group_size", "mean G", "{:.1f}"),
           ("mean_completion_length", "mean length", "{:.1f}"),
           ("accuracy_before", "held-out acc before", "{:.1%}"), ("accuracy_after", "after", "{:.1%}"),
           ("time_to_target_s", "time to target s", "{:.0f}")]


def fmt(value: Any, pattern: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def table_rows(metrics: Mapping[str, Any]) -> list[dict]:
    target = metrics.get("target_accuracy")
    return [summarize_run(run, target) for run in ordered_runs(metrics)]


def ordered_runs(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Runs in the order they were run (JSON objects are written with sorted keys)."""
    runs = metrics.get("runs", {})
    order = [k for k in metrics.get("order", []) if k in runs] + [k for k in runs if k not in metrics.get("order", [])]
    return [runs[k] for k in order]


def render(folder: Path) -> list[dict]:
    """Re-render the table (README.md) and plots (summary.png + one PNG per panel) from metrics.json."""
    folder = Path(folder)
    metrics = load_metrics(folder)
    rows = write_readme(folder, metrics)
    _plot(metrics, folder)
    return rows


def write_readme(folder: Path, metrics: Mapping[str, Any]) -> list[dict]:
    """README.md (status, table, notes) from `metrics`; fast, so an interrupted demo always gets one."""
    rows = table_rows(metrics)
    status = metrics.get("status", "unknown")
    md = ["# sagc demo report", "", f"status: **{status}**"]
    if status in ("interrupted", "failed"):
        md[-1] += (f" (during {metrics.get('phase', 'an unknown phase')}): what ran up to then is below; "
                   f"re-render with `sagc report {folder}`")
    md += ["", machine_line_of(metrics, rows), ""]
    if metrics.get("target_accuracy") is not None:
        cfg = metrics.get("config") or {}
        how = (f"pass@1 sampled at T={cfg.get('temperature', 1.0):g}" if cfg.get("eval_sampled", False)
               else "greedy") + (f", {cfg['eval_size']} held-out problems" if "eval_size" in cfg else "")
        md.append(f"target held-out accuracy: {metrics['target_accuracy']:.1%} ({how})")
        md.append("")
    md.append("| run | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    md.append("|---|" + "---:|" * len(COLUMNS))
    for r in rows:
        md.append(f"| {r['label']} ({r['status']}) | " + " | ".join(fmt(r[k], p) for k, _, p in COLUMNS) + " |")
    notes = run_notes(rows, metrics)
    md += ([""] + [f"- {note}" for note in notes]) if notes else []
    md += ["", "Plots: `summary.png`; traces: `traces/` (replay with `sagc simulate`)."]
    if status not in ("interrupted", "failed", "running"):  # a finished run: replay it on a GPU engine
        section = whatif_section(Path(folder))
        if section:
            md += ["", section]
    write_text_atomic(Path(folder) / "README.md", "\n".join(md) + "\n")
    return rows


def whatif_section(folder: Path, engine: str = "llama-8b-h100-vllm") -> str | None:
    """The section "these rollouts on a GPU engine (simulated)": the largest static run's trace
    replayed by `sagc whatif` on a GPU engine preset (None when the folder has no usable trace)."""
    from sagc.sim.whatif import demo_whatif_section

    try:
        return demo_whatif_section(folder, engine=engine)
    except (ValueError, OSError) as exc:  # a report must still render; say why the section is missing
        return f"## These rollouts on a GPU engine (simulated)\n\nNot available: {exc}\n"


def _plot(metrics: Mapping[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = ordered_runs(metrics)
    colors = {run["label"]: f"C{i}" for i, run in enumerate(runs)}
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    (ax_r, ax_a, ax_g), (ax_l, ax_e, ax_t) = axes
    for run in runs:
        c, label = colors[run["label"]], run["label"]
        hist = run.get("history", [])
        if hist:
            wall = np.array([h["wall_s"] for h in hist])
            rew = np.array([h.get("reward", np.nan) for h in hist], dtype=float)
            ax_r.plot(wall, rew, color=c, alpha=0.25, lw=0.8)
            ax_r.plot(wall, _rolling(rew, 10), color=c, lw=2, label=label)
            steps = np.array([h["step"] for h in hist])
            ax_g.step(steps, [h["group_size"] for h in hist], where="post", color=c, label=label)
            ev = np.array([bool(h.get("event")) for h in hist])
            ax_e.plot(steps, np.cumsum(ev), color=c, label=f"{label} ({ev.mean():.0%} of steps)")
            if "rollout_s" in hist[0]:
                ax_t.plot(steps, [h["rollout_s"] for h in hist], color=c, alpha=0.8, lw=1, label=label)
        evals = run.get("evals", [])
        if evals:
            ax_a.plot([e["wall_s"] for e in evals], [e["accuracy"] for e in evals], "o-", color=c, label=label)
        lengths = run.get("lengths") or []
        if lengths:
            bins = np.arange(0, max(lengths) + 8, 4)
            ax_l.hist(lengths, bins=bins, histtype="step", lw=2, color=c, density=True, label=label)
    if metrics.get("target_accuracy") is not None:
        ax_a.axhline(metrics["target_accuracy"], ls="--", color="gray", label="target")
    ax_r.set(title="Training reward (smoothed over 10 steps)", xlabel="wall-clock s", ylabel="mean reward")
    ax_a.set(title="Held-out accuracy", xlabel="wall-clock s", ylabel="exact match")
    ax_g.set(title="Group size G per step", xlabel="optimizer step", ylabel="G")
    ax_l.set(title="Completion lengths (sampled during training)", xlabel="tokens", ylabel="density")
    ax_e.set(title="Straggler events (cumulative)", xlabel="optimizer step", ylabel="events")
    ax_t.set(title="Rollout time per step", xlabel="optimizer step", ylabel="seconds")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    fig.suptitle(f"sagc demo: static G vs SAGC on the built-in task ({metrics.get('status', '')})")
    fig.tight_layout()
    _save_fig(fig, folder / "summary.png")
    plt.close(fig)


def _save_fig(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)


def _rolling(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan, dtype=float)
    for i in range(len(x)):
        window = x[max(0, i - k + 1): i + 1]
        window = window[np.isfinite(window)]
        out[i] = window.mean() if window.size else np.nan
    return out


def demo_table(rows: list[dict], target: float | None) -> Table:
    title = "sagc demo: GRPO on the built-in task" + (f" (target held-out accuracy {target:.1%})" if target else "")
    table = Table(title=title)
    table.add_column("run")
    for _, name, _ in COLUMNS:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(f"{r['label']}" + ("" if r["status"] == "finished" else f" ({r['status']})"),
                      *[fmt(r[k], p) for k, _, p in COLUMNS])
    return table
