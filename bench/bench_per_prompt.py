"""Per-prompt group sizes (issue 22): SAGC per-prompt against every static G and the per-prompt anchors.

Per stream, B and seed, on the same prompt stream (common random numbers; a pool's epoch order is
keyed by the seed only):
  - every allowed static G (the best in hindsight is the reference), plain default SAGC;
  - `{kind: sagc, per_prompt: true}` (defaults, nothing tuned);
  - each anchor at its published defaults (sagc.controllers.per_prompt): `dapo` (DAPO dynamic
    sampling, verl recipe: gen batch 3 x B, n 16, max_num_gen_batches 10), `greso` (GRESO:
    p_easy = p_hard = 0.5, target zero-variance 0.25, sampling batch 1.5 x B, n 8), `knapsack`
    (Knapsack RL: 8 completions per prompt on average, value P(non-zero gradient) x p (1 - p)^2).
Streams:
  - pool:math-pool, the shipped prompt-pool scenario (1024 prompts, recurring over epochs), at its
    B (16) and at B = 32 (B x G >= 256 slots at the best static G: an engine-filling B);
  - pool:game24, the Game of 24 / GPT-4 trace in ../shared/traces (100 prompts with their real
    completions and pass rates, read in place, skipped when absent) cycled over epochs, at B = 8 and 32;
  - norecur:heavy-tail, prompts that never recur (the shipped heavy-tail at B 8): per-prompt SAGC
    has no history there and must match plain SAGC (>= 0.98x the best static G).
Targets: per-prompt >= 1.3x the best static G on the pool streams; >= 1.1x each anchor;
>= 0.98x the best static G where prompts do not recur. Signal/s = informative groups x (1 - 1/G_i)
per simulated second.
Then a memory and speed check: the per-prompt table after 10^6 prompts (its bound: capacity x 25
bytes), and `decide` at B = 512 with 4 x 512 prompt ids offered, all with history.

    python bench/bench_per_prompt.py [--seeds 0 1 2] [--steps 300] [--jobs 2] [--lookahead 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulate import TRACES, trace_scenario  # noqa: E402
from bench_tail import run_tasks  # noqa: E402

from sagc._io import write_json_atomic  # noqa: E402
from sagc.tasks.machine import cpu_info, machine_line  # noqa: E402

import sagc  # noqa: E402
from sagc.sim import load_scenario, parse_scenario, run_scenario  # noqa: E402
from sagc.sim import stepper  # noqa: E402

GAME24 = "tot-game24-gpt4"
ANCHORS = ("dapo", "greso", "knapsack")
CONTROLLERS = [{"kind": "sagc", "per_prompt": True, "label": "sagc-pp"}, {"kind": "sagc", "label": "sagc"},
               *({"kind": k, "label": k} for k in ANCHORS)]
FILL_B = 32


def streams() -> list[tuple[str, int | None]]:
    out = [("pool:math-pool", None), ("pool:math-pool", FILL_B)]
    if (TRACES / f"{GAME24}.jsonl").is_file():
        out += [("pool:game24", None), ("pool:game24", FILL_B)]
    out.append(("norecur:heavy-tail", None))
    return out


def load(stream: str, seed: int, steps: int, b: int | None):
    if stream == "pool:game24":
        data = trace_scenario(GAME24)
        data["prompts"] = {"pool": 100}
        sc = parse_scenario(data)
    else:
        sc = load_scenario(stream.split(":", 1)[1])
    changes = {"seed": seed, "steps": steps}
    if b:
        changes["prompts_per_step"] = b
    return sc.replace(**changes)


def one(stream: str, seed: int, steps: int, b: int | None, lookahead: int = stepper.LOOKAHEAD) -> dict:
    # set per task: a worker process is reused across tasks and would keep the last task's value
    stepper.LOOKAHEAD = lookahead
    sc = load(stream, seed, steps, b)
    t0 = time.perf_counter()
    res = run_scenario(sc, controllers=CONTROLLERS, include_series=False)
    by_g = res["hindsight"]["by_g"]
    best_g = res["hindsight"]["best_g"]
    best = by_g[str(best_g)]["signal_per_s"]
    runs = {c["label"]: c["summary"] for c in res["controllers"]}
    pp = runs["sagc-pp"]["signal_per_s"]
    keep = ("signal_per_s", "informative_groups_per_s", "mean_group_size", "straggler_rate", "trained_groups",
            "never_trained_share", "bubble_fraction")
    pool = "pool_pass_seconds" in next(iter(by_g.values()))  # a learning pool reports its progress
    progress = {label: to_level(by_g, summ) for label, summ in runs.items()} if pool else None
    return {"stream": stream, "prompts": sc.prompts_per_step, "seed": seed, "steps": steps, "best_g": best_g,
            "lookahead": lookahead,
            "progress": progress,
            "best_static": best, "static": {g: v["signal_per_s"] for g, v in by_g.items()},
            "runs": {k: {m: v[m] for m in keep} for k, v in runs.items()},
            "pp_vs_best": pp / best, "sagc_vs_best": runs["sagc"]["signal_per_s"] / best,
            **{f"pp_vs_{a}": pp / runs[a]["signal_per_s"] for a in ANCHORS},
            "wall_s": time.perf_counter() - t0}


LEVELS = ("0.60", "0.70", "0.80")  # pool mean pass rates timed (math-pool starts near 0.5)


def to_level(by_g: dict, run: dict) -> dict:
    """Learning progress (runner.pool_progress): per level, the best static G's seconds to bring
    the pool's mean pass rate to it (the static G fastest to it, in hindsight) over this run's;
    None where this run or every static G never got there."""
    out = {}
    for level in LEVELS:
        static = [v["pool_pass_seconds"][level] for v in by_g.values() if level in v["pool_pass_seconds"]]
        mine = run["pool_pass_seconds"].get(level)
        out[level] = min(static) / mine if static and mine else None
    return out


def progress_markdown(rows: list[dict]) -> str:
    """Time to a pool pass rate, per-prompt SAGC and each anchor over the best static G: median [min, max]."""
    lines = [f"| stream | B | steps | controller | {' | '.join(f'to {x}' for x in LEVELS)} |",
             "|---|---|---|---|" + "---|" * len(LEVELS)]
    for key in dict.fromkeys((r["stream"], r["prompts"], r["steps"]) for r in rows if r["progress"]):
        rs = [r for r in rows if (r["stream"], r["prompts"], r["steps"]) == key]
        for label in ("sagc-pp", "sagc", *ANCHORS):
            cells = []
            for level in LEVELS:
                v = [r["progress"][label][level] for r in rs]
                cells.append("not reached" if any(x is None for x in v) else
                             f"{np.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]")
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["stream"], r["prompts"]) for r in rows):
        rs = [r for r in rows if (r["stream"], r["prompts"]) == key]
        mean = {m: float(np.mean([r[m] for r in rs])) for m in
                ("pp_vs_best", "sagc_vs_best", *(f"pp_vs_{a}" for a in ANCHORS))}
        lo = {m: float(np.min([r[m] for r in rs])) for m in mean}
        recur = key[0].startswith("pool:")
        targets = ({"best static >= 1.3x": lo["pp_vs_best"] >= 1.3,
                    "anchors >= 1.1x": all(lo[f"pp_vs_{a}"] >= 1.1 for a in ANCHORS)} if recur
                   else {"best static >= 0.98x": lo["pp_vs_best"] >= 0.98})
        out.append({"stream": key[0], "prompts": key[1], "seeds": len(rs),
                    "best_g": sorted({r["best_g"] for r in rs}), "mean": mean, "min": lo, "targets": targets})
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| stream | B | best static G | per-prompt / best static | plain SAGC / best static "
             "| / DAPO | / GRESO | / Knapsack | targets |", "|---|---|---|---|---|---|---|---|---|"]
    for v in summary:
        m, lo = v["mean"], v["min"]
        t = "; ".join(f"{k}: {'met' if ok else 'missed'}" for k, ok in v["targets"].items())
        cell = lambda k: f"{m[k]:.2f} (min {lo[k]:.2f})"  # noqa: E731
        lines.append(f"| {v['stream']} | {v['prompts']} | {'/'.join(map(str, v['best_g']))} | {cell('pp_vs_best')} "
                     f"| {cell('sagc_vs_best')} | {cell('pp_vs_dapo')} | {cell('pp_vs_greso')} "
                     f"| {cell('pp_vs_knapsack')} | {t} |")
    return "\n".join(lines)


def memory_check(prompts: int = 10**6, b: int = 512, repeats: int = 200) -> dict:
    """Per-prompt state after `prompts` prompts, and decide() at B = b with every offered prompt seen."""
    ctrl = sagc.make("sagc", per_prompt=True)
    rng = np.random.default_rng(0)
    chunk = 4096
    from sagc.stats import StepStats
    for start in range(0, prompts, chunk):  # one visit of every prompt, straight into the table
        ids = np.arange(start, min(start + chunk, prompts))
        succ = rng.integers(0, 9, ids.size).astype(float)
        ctrl.prompt_table.observe(ids, succ, np.full(ids.size, 8.0), rng.normal(6.0, 0.5, ids.size))
    rew = (rng.random((b, 8)) < 0.5).astype(float)
    stats = StepStats(group_id=np.repeat(np.arange(b), 8), length=rng.integers(50, 2000, b * 8),
                      reward=rew.ravel(), truncated=np.zeros(b * 8, bool), group_size=8, rollout_s=60.0, step_s=65.0)
    for _ in range(8):  # a few steps so the step-level models are fitted
        ctrl.decide([2, 4, 8, 16, 32], prompts=b)
        ctrl.update(stats, prompt_ids=np.arange(b))
    offered = np.arange(4 * b) * 7 % prompts
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        d = ctrl.decide([2, 4, 8, 16, 32], prompts=b, prompt_ids=offered)
        times.append(time.perf_counter() - t0)
    t_plain = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ctrl.decide([2, 4, 8, 16, 32], prompts=b)
        t_plain.append(time.perf_counter() - t0)
    # In training every decide follows an update, which drops the controller's cached risk model:
    # the "cold" figures time decide right after an (untimed) update with fresh step statistics.
    steps = []
    for k in range(16):
        r = np.random.default_rng(100 + k)
        steps.append(StepStats(group_id=np.repeat(np.arange(b), 8), length=r.integers(50, 2000, b * 8),
                               reward=(r.random(b * 8) < 0.5).astype(float), truncated=np.zeros(b * 8, bool),
                               group_size=8, rollout_s=60.0 + r.random(), step_s=65.0 + r.random()))
    # update refits the step-level models and predicts risk and step time for the last query, so
    # the controller's whole cost per training step is update + decide: timed too.
    cold = {True: [], False: []}
    upd = {True: [], False: []}
    for i in range(2 * repeats):
        with_ids = i % 2 == 0
        t0 = time.perf_counter()
        ctrl.update(steps[i % len(steps)], prompt_ids=np.arange(b))
        t1 = time.perf_counter()
        ctrl.decide([2, 4, 8, 16, 32], prompts=b, **({"prompt_ids": offered} if with_ids else {}))
        cold[with_ids].append(time.perf_counter() - t1)
        upd[with_ids].append(t1 - t0)
    table = ctrl.prompt_table
    return {"prompts": prompts, "capacity": table.capacity, "stored": len(table), "table_bytes": table.nbytes,
            "bound_bytes": table.capacity * 25, "state_json_bytes": len(json.dumps(table.state_dict())),
            "decide_ms_median": 1e3 * float(np.median(times)), "decide_ms_p95": 1e3 * float(np.percentile(times, 95)),
            "decide_plain_ms_median": 1e3 * float(np.median(t_plain)), "per_prompt_sizes": d.group_sizes is not None,
            "decide_cold_ms_median": 1e3 * float(np.median(cold[True])),
            "decide_cold_ms_p95": 1e3 * float(np.percentile(cold[True], 95)),
            "decide_cold_plain_ms_median": 1e3 * float(np.median(cold[False])),
            "decide_cold_plain_ms_p95": 1e3 * float(np.percentile(cold[False], 95)),
            "update_ms_median": 1e3 * float(np.median(upd[True])),
            "step_overhead_ms_median": 1e3 * float(np.median(np.add(upd[True], cold[True])))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--lookahead", type=int, default=stepper.LOOKAHEAD,
                    help="prompt ids offered per step / B (sagc.sim.stepper.LOOKAHEAD; 1: only the B a step "
                         "trains, so a skip makes the step smaller)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/per_prompt.json"))
    args = ap.parse_args()
    if args.lookahead < 1:
        ap.error(f"--lookahead must be an integer >= 1, got {args.lookahead}")
    tasks = [(s, seed, args.steps, b, args.lookahead) for s, b in streams() for seed in args.seeds]
    t0 = time.perf_counter()
    info = cpu_info()  # load average at the start
    rows = run_tasks(one, tasks, args.jobs)
    machine = machine_line(info) + f"; numpy float64 simulator, {args.jobs} worker(s)"
    print(machine)
    print(f"{'stream':<22}{'B':>4}{'seed':>5}{'best G':>7}{'pp/best':>9}{'sagc/best':>10}"
          + "".join(f"{'pp/' + a:>12}" for a in ANCHORS))
    for r in rows:
        print(f"{r['stream']:<22}{r['prompts']:>4}{r['seed']:>5}{r['best_g']:>7}{r['pp_vs_best']:>9.3f}"
              f"{r['sagc_vs_best']:>10.3f}" + "".join(f"{r[f'pp_vs_{a}']:>12.3f}" for a in ANCHORS))
    summary = verdict(rows)
    print()
    print(markdown(summary))
    print("\nTime to a pool mean pass rate, over the best static G's (learning progress; > 1 is faster):")
    print(progress_markdown(rows))
    mem = memory_check()
    print(f"\nper-prompt table: {mem['stored']} prompts stored of {mem['prompts']:,} seen, {mem['table_bytes'] / 2**20:.1f} "
          f"MiB (bound {mem['bound_bytes'] / 2**20:.1f} MiB); decide at B=512 with 2048 ids offered: median "
          f"{mem['decide_ms_median']:.2f} ms, p95 {mem['decide_ms_p95']:.2f} ms (plain decide {mem['decide_plain_ms_median']:.2f} ms); "
          f"right after an update (as in training): median {mem['decide_cold_ms_median']:.2f} ms, p95 "
          f"{mem['decide_cold_ms_p95']:.2f} ms (plain {mem['decide_cold_plain_ms_median']:.2f} / "
          f"{mem['decide_cold_plain_ms_p95']:.2f} ms); the update before it: median {mem['update_ms_median']:.2f} ms, "
          f"update + decide {mem['step_overhead_ms_median']:.2f} ms")
    cmd = (f"python bench/bench_per_prompt.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} "
           f"--jobs {args.jobs}" + (f" --lookahead {args.lookahead}" if args.lookahead != stepper.LOOKAHEAD else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"machine": machine, "command": cmd, "wall_s": time.perf_counter() - t0, "rows": rows,
                                 "summary": summary, "memory": mem})
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
