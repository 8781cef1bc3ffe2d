"""The full-engine ceiling of tail control (issue 18): how far above the best static G anything
done inside the step can go, and where APRIL's default and SAGC `auto` stand under it.

A plain run's `signal_per_s_full_engine` (sagc.sim.runner.full_engine_measures) is its signal per
second had every rollout kept all slots decoding: its own generated tokens at the engine's
full-batch token rate, its training and per-step overhead as they were. Over-sampling, aborting,
resuming or reordering requests can fill idle slots; they cannot make a full engine faster. So
for any mechanism that trains the completions a static G would (no prompt skipped, nothing
dropped for being long) in steps of B groups, the best static G's ceiling bounds its signal per
second. A mechanism that trains more than B groups per step also spreads one step's overhead
over more groups, which raising B buys too; `signal_per_s_at_b` charges that back, and it is the
figure held against the ceiling here.

Per stream and seed, on the same steps (common random numbers): every static G (policy `full`),
`{kind: sagc, rollout: {policy: auto}}` with its defaults, and resume with APRIL's published
default knobs (sagc.rollout.ANCHOR_DEFAULTS: over_sample 2, max_staleness 64) at the best static G.
Streams as bench_tail.py: the three engine-filling scenarios and both real traces at B = 32.

    python bench/bench_ceiling.py [--streams ...] [--seeds 0 1 2] [--steps 2000] [--jobs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import TRACES  # noqa: E402
from bench_tail import AUTO, FILLED, _cell, load, run_tasks, spread  # noqa: E402

from sagc.rollout import ANCHOR_DEFAULTS  # noqa: E402
from sagc._io import write_json_atomic  # noqa: E402
from sagc.sim import run_scenario  # noqa: E402
from sagc.tasks.machine import cpu_info, machine_line  # noqa: E402

KEYS = ("signal_per_s", "signal_per_s_at_b", "signal_per_s_full_engine", "bubble_fraction", "batch_growth")


def one(stream: str, seed: int, steps: int) -> dict:
    t0 = time.perf_counter()
    sc = load(stream, seed, steps, None)
    statics = [{"kind": "static", "group_size": g} for g in sc.group_sizes]
    runs = {r["label"]: r["summary"] for r in
            run_scenario(sc, statics + [AUTO], hindsight=False, include_series=False)["controllers"]}
    by_g = {g: runs[f"static-G{g}"] for g in sc.group_sizes}
    best_g = max(by_g, key=lambda g: (by_g[g]["signal_per_s"], -g))
    best = by_g[best_g]["signal_per_s"]
    april = {"kind": "static", "group_size": best_g, "rollout": ANCHOR_DEFAULTS["resume"], "label": "april"}
    april_run = run_scenario(sc, [april], hindsight=False, include_series=False)["controllers"][0]["summary"]
    ceil_g = max(by_g, key=lambda g: by_g[g]["signal_per_s_full_engine"])
    return {"stream": stream, "seed": seed, "steps": steps, "prompts": sc.prompts_per_step, "best_g": best_g,
            "ceiling_g": ceil_g, "ceiling": by_g[ceil_g]["signal_per_s_full_engine"] / best,
            "ceiling_by_g": {str(g): s["signal_per_s_full_engine"] / best for g, s in by_g.items()},
            "static": {str(g): {k: s[k] for k in KEYS} for g, s in by_g.items()},
            "auto": {k: runs["sagc+auto"][k] for k in KEYS}, "april": {k: april_run[k] for k in KEYS},
            "wall_s": time.perf_counter() - t0}


def verdict(rows: list[dict]) -> dict:
    out = {}
    for stream in dict.fromkeys(r["stream"] for r in rows):
        sub = [r for r in rows if r["stream"] == stream]
        x = {name: {k: [r[name][k] / r["static"][str(r["best_g"])]["signal_per_s"] for r in sub]
                    for k in ("signal_per_s", "signal_per_s_at_b")} for name in ("auto", "april")}
        ceiling = [r["ceiling"] for r in sub]
        need = [1.1 * a for a in x["april"]["signal_per_s_at_b"]]  # what ">= 1.1x APRIL's default" asks
        out[stream] = {"seeds": len(sub), "prompts": sub[0]["prompts"], "best_g": sorted({r["best_g"] for r in sub}),
                       "ceiling_g": sorted({r["ceiling_g"] for r in sub}), "ceiling": spread(ceiling),
                       **{f"{n}_{k}": spread(v) for n, d in x.items() for k, v in d.items()},
                       "april_of_ceiling": spread([a / c for a, c in zip(x["april"]["signal_per_s_at_b"], ceiling)]),
                       "auto_of_ceiling": spread([a / c for a, c in zip(x["auto"]["signal_per_s_at_b"], ceiling)]),
                       "target_over_ceiling": spread([n / c for n, c in zip(need, ceiling)]),
                       "target_above_ceiling": all(n > c for n, c in zip(need, ceiling))}
    return out


def markdown(summary: dict) -> str:
    lines = ["| stream | B, best G | full-engine ceiling (at G) | APRIL default x (per B groups) | auto x (per B groups) "
             "| APRIL default / ceiling | auto / ceiling | 1.1x APRIL default / ceiling |",
             "|---|---|---|---|---|---|---|---|"]
    for name, v in summary.items():
        lines.append(f"| {name} | {v['prompts']}, {'/'.join(map(str, v['best_g']))} "
                     f"| {_cell(v['ceiling'], 'x')} ({'/'.join(map(str, v['ceiling_g']))}) "
                     f"| {v['april_signal_per_s'][1]:.2f}x ({v['april_signal_per_s_at_b'][1]:.2f}x) "
                     f"| {v['auto_signal_per_s'][1]:.2f}x ({v['auto_signal_per_s_at_b'][1]:.2f}x) "
                     f"| {_cell(v['april_of_ceiling'])} | {_cell(v['auto_of_ceiling'])} | {_cell(v['target_over_ceiling'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", nargs="+", default=None, help="filled scenarios / trace:<name> (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=2000, help="the filled scenarios' own length")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ceiling.json"))
    args = ap.parse_args()
    names = args.streams or FILLED + ([f"trace:{p.stem}" for p in sorted(TRACES.glob("*.jsonl"))]
                                      if TRACES.is_dir() else [])
    t0 = time.perf_counter()
    info = cpu_info()  # load average at the start
    rows = run_tasks(one, [(s, seed, args.steps) for s in names for seed in args.seeds], args.jobs)
    machine = (machine_line(info, {"simulated steps": len(rows) * args.steps / (time.perf_counter() - t0)})
               + f"; numpy float64 simulator, {args.jobs} worker(s)")
    print(machine)
    for r in rows:
        print(f"{r['stream']:<34}{r['seed']:>3}  best G {r['best_g']:>2}  ceiling {r['ceiling']:.3f}x (G {r['ceiling_g']})"
              f"  APRIL {r['april']['signal_per_s_at_b'] / r['static'][str(r['best_g'])]['signal_per_s']:.3f}x"
              f"  auto {r['auto']['signal_per_s_at_b'] / r['static'][str(r['best_g'])]['signal_per_s']:.3f}x")
    summary = verdict(rows)
    print()
    print(markdown(summary))
    cmd = f"python bench/bench_ceiling.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps}" + (
        f" --streams {' '.join(args.streams)}" if args.streams else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"machine": machine, "command": cmd, "wall_s": time.perf_counter() - t0,
                                 "rows": rows, "summary": summary})
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
