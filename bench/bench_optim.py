"""Optimizers and losses on the built-in task: AdamW vs Pion vs EMA-Nesterov(AdamW), DAPO vs DISPO (not CI).

Reuses bench_time_to_target's machinery: `run_demo` trains every run from the same warm-start
checkpoint with the same training wall-clock budget and prompts, and `summarize` turns the
per-seed rows into medians. The controller is static G (the optimizer and the loss are what
varies). Optimizers are compared on-policy (TRL's num_iterations = 1, DAPO); the losses with
num_iterations = 2, because on-policy every importance ratio is 1 and DISPO's gradient equals
DAPO's: the clip bounds only act on the second pass over a batch. Writes
bench/results/optim.json and the section between the bench_optim markers of docs/benchmarks.md.

    python bench/bench_optim.py                          # 2 seeds x 5 runs (~25 min on 2 shared cores)
    python bench/bench_optim.py --seeds 0 --budget 30    # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_time_to_target import machine_summary, summarize  # noqa: E402  (the same medians and censoring)

from sagc.demo.config import load_demo_config  # noqa: E402
from sagc.demo.report import load_metrics, table_rows  # noqa: E402
from sagc.demo.run import run_demo  # noqa: E402

START, END = "<!-- bench_optim:start -->", "<!-- bench_optim:end -->"


def make_runs(group_size: int) -> list[tuple[str, dict, dict]]:
    """(label, controller, training) triples; training = sagc.demo.training.TrainingChoice fields."""
    static = {"kind": "static", "group_size": group_size}
    off_policy = {"num_iterations": 2}
    return [
        ("adamw", static, {"optimizer": {"kind": "adamw"}, "loss": "dapo"}),
        ("pion", static, {"optimizer": {"kind": "pion"}, "loss": "dapo"}),
        ("ema_nesterov-adamw", static, {"optimizer": {"kind": "ema_nesterov", "base": {"kind": "adamw"}},
                                        "loss": "dapo"}),
        ("dapo-mu2", static, {"optimizer": {"kind": "adamw"}, "loss": "dapo", "trl": off_policy}),
        ("dispo-mu2", static, {"optimizer": {"kind": "adamw"}, "loss": {"kind": "dispo"}, "trl": off_policy}),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--budget", type=float, default=80.0, help="training seconds per run")
    ap.add_argument("--eval-every", type=float, default=40.0, help="seconds of training between evaluations")
    ap.add_argument("--eval-size", type=int, default=256, help="held-out problems per evaluation")
    ap.add_argument("--group-size", type=int, default=8, help="static G of every run")
    ap.add_argument("--config", type=Path, default=None, help="DemoConfig YAML (defaults otherwise)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these labels")
    ap.add_argument("--work", type=Path, default=Path("bench/results/optim"))
    ap.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    # On a shared, oversubscribed 2-core machine a forward pass took 2.1 s with 2 threads and 0.17 s
    # with 1 (measured during this benchmark); the machine's probe (sagc.tasks.machine) chooses
    # the count unless --threads is given.
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: the machine's choice)")
    args = ap.parse_args()
    console = Console()
    runs = make_runs(args.group_size)
    if args.only:
        unknown = sorted(set(args.only) - {r[0] for r in runs})
        if unknown:
            raise SystemExit(f"--only: unknown run(s) {unknown}; valid: {[r[0] for r in runs]}")
        runs = [r for r in runs if r[0] in args.only]
    results: dict[str, list[dict]] = {label: [] for label, *_ in runs}
    started = time.time()
    machine: dict = {}
    for seed in args.seeds:
        cfg = load_demo_config(args.config, seed=seed, time_budget_s=args.budget, eval_every_s=args.eval_every,
                               eval_size=args.eval_size, num_threads=args.threads)
        out = args.work / f"seed{seed}"
        if not (out / "metrics.json").is_file() or load_metrics(out).get("status") != "finished":
            run_demo(cfg, out, console, runs=runs)
        metrics = load_metrics(out)
        machine = metrics.get("machine") or machine
        done = {row["label"]: row for row in table_rows(metrics)}
        for label, run in metrics["runs"].items():  # optimizer steps (a round is num_iterations of them)
            if label in done and run.get("history"):
                done[label]["steps"] = run["history"][-1]["step"]
        missing = sorted(set(results) - set(done))
        if missing:
            raise SystemExit(f"{out} holds a finished seed without {missing}; pass a fresh --work")
        for label in results:
            results[label].append({**done[label], "seed": seed})
    summary = summarize(results)
    line = machine_summary(machine, summary)
    elapsed = time.time() - started
    cfg = load_demo_config(args.config, eval_every_s=args.eval_every, eval_size=args.eval_size)
    args.work.mkdir(parents=True, exist_ok=True)
    payload = {"runs": {label: {"controller": c, "training": t} for label, c, t in runs},
               "results": results, "summary": summary, "elapsed_s": elapsed, "argv": sys.argv[1:],
               "machine": machine, "machine_line": line}
    (args.work.parent / "optim.json").write_text(json.dumps(payload, indent=2))
    section = markdown(summary, runs, args, cfg, elapsed, line)
    write_section(args.doc, section)
    console.print(section)


def markdown(summary: dict, runs: list, args: argparse.Namespace, cfg, elapsed: float, line: str = "") -> str:
    training = {label: t for label, _, t in runs}
    lines = [START, "## Optimizers and losses: AdamW, Pion, EMA-Nesterov; DAPO vs DISPO", "",
             f"Command: `{shlex.join(['python', 'bench/bench_optim.py', *sys.argv[1:]])}`  ",
             f"{line or 'machine: not recorded'} (steps/s: medians over seeds)  ",
             f"{platform.platform()}, Python {sys.version.split()[0]}, CPU only (other jobs share the machine); "
             f"this invocation {elapsed / 60:.0f} min (seeds already finished under --work are re-used).", "",
             f"Static G = {args.group_size}, B = {cfg.prompts_per_step} prompts per step, learning rate "
             f"{cfg.learning_rate:g} for every optimizer, {args.budget:g} s of training per run, held-out "
             f"accuracy ({'pass@1 sampled at T=%g' % cfg.temperature if cfg.eval_sampled else 'greedy'}) on "
             f"{args.eval_size} problems every {args.eval_every:g} s of training; target = warm-start accuracy + "
             f"{cfg.target_gain * 100:g} points (a run that misses it counts as its budget).", "",
             "| run | optimizer | loss | num_iterations | seeds reaching target | median time to target s "
             "[min, max] | median final held-out acc | median optimizer steps |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for label, s in summary.items():
        t = training[label]
        opt = t["optimizer"]["kind"] + (f"({t['optimizer']['base']['kind']})" if "base" in t["optimizer"] else "")
        loss = t["loss"] if isinstance(t["loss"], str) else t["loss"]["kind"]
        spread = f"[{s['ttt_spread_s'][0]:.0f}, {s['ttt_spread_s'][1]:.0f}]" if s["ttt_spread_s"] else "-"
        lines.append(f"| {label} | {opt} | {loss} | {t.get('trl', {}).get('num_iterations', 1)} | "
                     f"{s['reached']}/{s['seeds']} | {s['median_ttt_s']:.0f} {spread} | "
                     f"{s['median_final_acc']:.1%} | {s['median_steps']:.0f} |")
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace the bench_optim section of `doc` (or append it); hand-written text around it stays."""
    text = doc.read_text() if doc.is_file() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section.rstrip("\n") + "\n" + END + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + END + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


if __name__ == "__main__":
    main()
