"""Time to target on the built-in task: static G vs SAGC vs AIMD, several seeds (not CI).

Each seed runs every controller from the same warm-start checkpoint with the same training
wall-clock budget (held-out evaluations excluded) and records when held-out accuracy first
reaches the target. Writes docs/benchmarks.md (table, spread over seeds, per-seed ratios, the
mean accuracy over each run paired by seed, the evaluations' noise, command, machine) and
bench/results/time_to_target.json.

    python bench/bench_time_to_target.py                       # defaults: 3 seeds x 6 runs x 180 s (~1.3 h on 2 cores)
    python bench/bench_time_to_target.py --seeds 0 1 2 3 4 --budget 120 --eval-every 20 \
        --only static-G2 static-G4 static-G8 static-G16 sagc  # docs/benchmarks.md (88 min)
    python bench/bench_time_to_target.py --seeds 0 --budget 60  # a quick look
    python bench/bench_time_to_target.py --deltas 0.35 --only sagc-d0.35 --work /tmp/d035 --doc /tmp/d035.md
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

from sagc.demo.config import load_demo_config
from sagc.demo.report import load_metrics, table_rows
from sagc.demo.run import run_demo
from sagc.tasks.machine import machine_line


def make_runs(deltas: list[float], only: list[str] | None) -> list[tuple[str, dict]]:
    """(label, controller) pairs: static G in {2, 4, 8, 16}, SAGC with its defaults, SAGC at each
    explicit delta (--deltas; none by default), AIMD."""
    runs = [(f"static-G{g}", {"kind": "static", "group_size": g}) for g in (2, 4, 8, 16)] + \
           [("sagc", {"kind": "sagc"})] + \
           [(f"sagc-d{d:g}", {"kind": "sagc", "delta": d, "V": 10.0}) for d in deltas] + \
           [("aimd", {"kind": "aimd"})]
    if only:
        labels = [label for label, _ in runs]
        missing = [o for o in only if o not in labels]
        if missing:
            raise SystemExit(f"--only: unknown run(s) {missing}; valid: {labels}")
        runs = [r for r in runs if r[0] in only]
    return runs


FINDINGS = "<!-- findings: hand-written, kept when the tables above are regenerated -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=float, default=180.0, help="training seconds per run")
    ap.add_argument("--eval-every", type=float, default=None, help="seconds of training between evaluations")
    ap.add_argument("--config", type=Path, default=None, help="DemoConfig YAML (defaults otherwise)")
    ap.add_argument("--deltas", nargs="*", type=float, default=[], help="explicit SAGC budgets to run too")
    ap.add_argument("--only", nargs="+", default=None, help="run only these labels, e.g. sagc-d0.35")
    ap.add_argument("--work", type=Path, default=Path("bench/results/time_to_target"))
    ap.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    args = ap.parse_args()
    console = Console()
    runs = make_runs(args.deltas, args.only)
    results: dict[str, list[dict]] = {label: [] for label, _ in runs}
    started = time.time()
    machine: dict = {}
    for seed in args.seeds:
        cfg = load_demo_config(args.config, seed=seed, time_budget_s=args.budget, eval_every_s=args.eval_every)
        out = args.work / f"seed{seed}"
        if not (out / "metrics.json").is_file() or load_metrics(out).get("status") != "finished":
            run_demo(cfg, out, console, runs=runs)
        metrics = load_metrics(out)
        machine = metrics.get("machine") or machine  # the newest seed's (each run_demo records its own)
        done = {row["label"]: row for row in table_rows(metrics)}
        if any(label not in done for label in results):
            raise SystemExit(f"{out} holds a finished seed without {sorted(set(results) - set(done))}; "
                             "pass a fresh --work for a different set of runs")
        for label in results:
            evals = metrics["runs"][label]["evals"]
            results[label].append({**done[label], "seed": seed, "target": metrics["target_accuracy"],
                                   "evals": accuracies_after_start(evals),
                                   "mean_eval_acc": mean_eval_accuracy(evals)})
    summary = summarize(results)
    line = machine_summary(machine, summary)
    cfg = load_demo_config(args.config, eval_every_s=args.eval_every)
    args.eval_kind = "pass@1 sampled at T=%g" % cfg.temperature if cfg.eval_sampled else "greedy"
    args.target_gain, args.eval_every_s = cfg.target_gain, cfg.eval_every_s
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work.parent / "time_to_target.json").write_text(json.dumps(
        {"machine": machine, "machine_line": line, "results": results, "summary": summary}, indent=2))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    # hand-written findings below the marker survive a re-run; the tables above it are regenerated
    kept = args.doc.read_text().partition(FINDINGS)[2] if args.doc.is_file() else ""
    body = (markdown(summary, args, time.time() - started, line) + verdict(summary) + ratios(results)
            + paired(results) + noise(results))
    args.doc.write_text(body + (f"\n{FINDINGS}{kept}" if kept else ""))
    console.print(args.doc.read_text())


def accuracies_after_start(evals: list[dict]) -> list[float]:
    """A run's held-out accuracies after the warm-start's (every eval_every seconds of training)."""
    return [e["accuracy"] for e in evals if e["wall_s"] > 0 and e.get("accuracy") is not None]


def mean_eval_accuracy(evals: list[dict]) -> float:
    """Mean held-out accuracy over a run's evaluations after the start: the area under its
    accuracy-vs-time curve per second. It reads every evaluation, not only the first that crosses
    the target, so it is the less noisy of the two measures."""
    accs = accuracies_after_start(evals)
    return statistics.fmean(accs) if accs else float("nan")


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for label, rows in results.items():
        ttt = [r["time_to_target_s"] for r in rows]
        reached = [t for t in ttt if t is not None]
        # a run that never reached the target counts as its whole budget (a lower bound)
        filled = [t if t is not None else r["wall_s"] for t, r in zip(ttt, rows)]
        out[label] = {
            "seeds": len(rows), "reached": len(reached),
            "median_ttt_s": statistics.median(filled) if filled else None,
            "ttt_spread_s": [min(filled), max(filled)] if filled else None,
            "median_final_acc": statistics.median([r["accuracy_after"] for r in rows]) if rows else None,
            "median_straggler_rate": statistics.median([r["straggler_rate"] for r in rows]) if rows else None,
            "median_mean_g": statistics.median([r["mean_group_size"] for r in rows]) if rows else None,
            "median_steps": statistics.median([r["steps"] for r in rows]) if rows else None,
            "median_steps_per_s": statistics.median([r["steps"] / r["wall_s"] for r in rows if r["wall_s"]])
            if any(r["wall_s"] for r in rows) else None,
        }
    return out


def machine_summary(machine: dict, summary: dict[str, dict]) -> str:
    """The machine line (sagc.tasks.machine) with each run's median steps per second over seeds."""
    return machine_line(machine, {label: s.get("median_steps_per_s") for label, s in summary.items()})


def markdown(summary: dict[str, dict], args: argparse.Namespace, elapsed: float, line: str = "") -> str:
    lines = ["# Benchmarks: time to target on the built-in task", "",
             f"Command: `{shlex.join(['python', 'bench/bench_time_to_target.py', *sys.argv[1:]])}`  ",
             f"{line or 'machine: not recorded'} (steps/s: medians over seeds)  ",
             f"{platform.platform()}, Python {sys.version.split()[0]}; this invocation {elapsed / 60:.0f} min "
             "(seeds already finished under --work are re-used, not re-run).", "",
             f"Time to target = training wall-clock seconds until held-out accuracy ({args.eval_kind}) first "
             f"reaches the warm-start accuracy + {args.target_gain * 100:g} points, read at the evaluations "
             f"(every {args.eval_every_s:g} s of training); a run that never reaches it counts as its full "
             "budget (a lower bound). Each seed runs every controller from the same warm-start checkpoint.",
             "",
             "| run | seeds reaching target | median time to target s [min, max] | median final held-out acc "
             "| median straggler rate | median mean G | median steps |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, s in summary.items():
        spread = f"[{s['ttt_spread_s'][0]:.0f}, {s['ttt_spread_s'][1]:.0f}]" if s["ttt_spread_s"] else "-"
        lines.append(f"| {label} | {s['reached']}/{s['seeds']} | {s['median_ttt_s']:.0f} {spread} | "
                     f"{s['median_final_acc']:.1%} | {s['median_straggler_rate']:.2f} | {s['median_mean_g']:.1f} | "
                     f"{s['median_steps']:.0f} |")
    return "\n".join(lines) + "\n"


# The aims of issue 12, on medians over seeds: time to target <= static G_max's and <= 1.1x the
# fastest static G's; final held-out accuracy within 2 points of the best static G's.
AIM_VS_GMAX, AIM_VS_FASTEST, AIM_ACC_POINTS = 1.0, 1.1, 2.0


def verdict(summary: dict[str, dict]) -> str:
    """Each adaptive run's medians against the static runs' medians, with met / missed per aim."""
    statics = {k: s for k, s in summary.items() if k.startswith("static-G")}
    if not statics:
        return ""
    g_max = max(statics, key=lambda k: int(k.removeprefix("static-G")))
    fastest = min(statics, key=lambda k: statics[k]["median_ttt_s"])
    best_acc = max(statics, key=lambda k: statics[k]["median_final_acc"])
    lines = ["", f"Aims on medians over seeds: time to target <= {g_max}'s and <= {AIM_VS_FASTEST:g}x the fastest "
             f"static G's (here {fastest}); final held-out accuracy within {AIM_ACC_POINTS:g} points of the best "
             f"static G's (here {best_acc}). Medians of censored times are bounds, as above.", "",
             f"| run | median time vs {g_max} | vs {fastest} | final acc - {best_acc} (points) |",
             "|---|---:|---:|---:|"]
    for label, s in summary.items():
        if label in statics:
            continue
        r_max = s["median_ttt_s"] / statics[g_max]["median_ttt_s"]
        r_fast = s["median_ttt_s"] / statics[fastest]["median_ttt_s"]
        d_acc = 100 * (s["median_final_acc"] - statics[best_acc]["median_final_acc"])
        mark = lambda ok: "met" if ok else "**missed**"  # noqa: E731
        lines.append(f"| {label} | {r_max:.2f} ({mark(r_max <= AIM_VS_GMAX)}) | {r_fast:.2f} "
                     f"({mark(r_fast <= AIM_VS_FASTEST)}) | {d_acc:+.1f} ({mark(d_acc >= -AIM_ACC_POINTS)}) |")
    return "\n".join(lines) + "\n"


def ratios(results: dict[str, list[dict]]) -> str:
    """Per-seed ratios against static G_max and the best static G of that seed (the issue's aims)."""
    statics = [k for k in results if k.startswith("static-G")]
    if not statics:
        return ""
    g_max = max(statics, key=lambda k: int(k.removeprefix("static-G")))
    filled = {k: {r["seed"]: (r["time_to_target_s"] if r["time_to_target_s"] is not None else r["wall_s"])
                  for r in rows} for k, rows in results.items()}
    hit = {k: {r["seed"]: r["time_to_target_s"] is not None for r in rows} for k, rows in results.items()}
    acc = {k: {r["seed"]: r["accuracy_after"] for r in rows} for k, rows in results.items()}

    def ratio(label: str, ref: str, seed: int) -> str:
        # a run that missed the target counts as its budget: its time is a lower bound, so a ratio
        # with a censored numerator is ">=", with a censored denominator "<=", with both unknown
        a, b = hit[label][seed], hit[ref][seed]
        r = filled[label][seed] / filled[ref][seed]
        return f"{r:.2f}" if a and b else f">= {r:.2f}" if b else f"<= {r:.2f}" if a else "neither reached"

    lines = ["", f"Per seed, time to target relative to {g_max} and to that seed's fastest static G, and final "
             "accuracy minus that seed's best static G. A run that missed the target counts as its budget, "
             "so such ratios are bounds:", "",
             f"| run | seed | vs {g_max} | vs fastest static | final acc - best static (points) |",
             "|---|---:|---:|---:|---:|"]
    for label in results:
        if label in statics:
            continue
        for seed in filled[label]:
            reached = [k for k in statics if hit[k].get(seed)]
            best = min(reached, key=lambda k: filled[k][seed]) if reached else None
            best_acc = max(acc[k].get(seed, 0.0) for k in statics)
            vs_best = f"{ratio(label, best, seed)} ({best})" if best else "no static G reached"
            lines.append(f"| {label} | {seed} | {ratio(label, g_max, seed)} | {vs_best} | "
                         f"{100 * (acc[label][seed] - best_acc):+.1f} |")
    return "\n".join(lines) + "\n"


def paired(results: dict[str, list[dict]]) -> str:
    """Each adaptive run against each static G on the same seeds: the difference in mean held-out
    accuracy over the run (mean_eval_accuracy), median and range over seeds, and seeds ahead."""
    statics = [k for k in results if k.startswith("static-G")]
    others = [k for k in results if k not in statics]
    if not statics or not others:
        return ""
    lines = ["", "Paired by seed, mean held-out accuracy over each run's evaluations after the start "
             "(the area under its accuracy curve over the budget; every evaluation counts, not only the first "
             "to cross the target): the adaptive run minus each static G, in points, median [min, max] over "
             "seeds, and the seeds on which the adaptive run was ahead:", "",
             "| run | " + " | ".join(f"vs {k}" for k in statics) + " |", "|---|" + "---:|" * len(statics)]
    for label in others:
        mine = {r["seed"]: r["mean_eval_acc"] for r in results[label]}
        cells = []
        for ref in statics:
            d = [100 * (mine[r["seed"]] - r["mean_eval_acc"]) for r in results[ref] if r["seed"] in mine]
            ahead = sum(x > 0 for x in d)
            cells.append(f"{statistics.median(d):+.1f} [{min(d):+.1f}, {max(d):+.1f}], {ahead}/{len(d)} ahead")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    mean_acc = {k: statistics.median([r["mean_eval_acc"] for r in rows]) for k, rows in results.items()}
    lines += ["", "Median over seeds of the mean held-out accuracy over the run: "
              + ", ".join(f"{k} {v:.1%}" for k, v in mean_acc.items()) + "."]
    return "\n".join(lines) + "\n"


def noise(results: dict[str, list[dict]]) -> str:
    """How far one evaluation moves from the next within a run, against the target's margin: the
    RMS of successive differences, / sqrt(2) per evaluation (an upper bound on one evaluation's
    noise: the policy also moves between them), and the runs that reached the target but ended
    below it. When these are of the target's size, first-crossing times are mostly noise."""
    diffs = [b - a for rows in results.values() for r in rows for a, b in zip(r["evals"], r["evals"][1:])]
    runs = [r for rows in results.values() for r in rows]
    fell = [r for r in runs if r["time_to_target_s"] is not None and r["accuracy_after"] < r["target"]]
    reached = sum(r["time_to_target_s"] is not None for r in runs)
    if not diffs:
        return ""
    sd = (statistics.fmean(d * d for d in diffs) / 2) ** 0.5
    return (f"\nEvaluation noise: successive held-out evaluations within a run differ by {100 * sd * 2 ** 0.5:.1f} "
            f"points (RMS, {len(diffs)} pairs), i.e. at most {100 * sd:.1f} points of noise per evaluation, "
            f"against the target's margin of +{100 * (runs[0]['target'] - runs[0]['accuracy_before']):.0f} points over "
            f"the warm-start; {len(fell)} of the {reached} runs that reached the target ended the run below it.\n")


if __name__ == "__main__":
    main()
