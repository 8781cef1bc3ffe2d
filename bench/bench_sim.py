"""Simulator speed: 2,000 steps of B=64 prompts x G=32 completions (2,048 sequences per step).

    .venv/bin/python bench/bench_sim.py [--steps 2000] [--out bench/results/sim.json]

Cases: the whole step loop on one 256-slot replica (requests queue: the heap path of the
engine) and on 8 replicas x 256 slots (everything fits), plus a per-phase split of the first
case (lengths, engine, StepStats + controller + scoring rule). Target: < 10 s for the
2,000-step queueing case on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import sagc
from sagc.sim import LengthModel, parse_scenario, run_scenario, simulate_rollout
from sagc.tasks.machine import cpu_info, machine_line
from sagc.trace import atomic_path

TARGET_S = 10.0


def scenario(steps: int, replicas: int, slots: int):
    return parse_scenario({
        "name": f"bench-B64-G32-{replicas}x{slots}", "steps": steps, "seed": 0, "prompts_per_step": 64,
        "group_sizes": [2, 4, 8, 16, 32],
        "lengths": {"model": "lognormal", "median": 400, "sigma": 0.8, "prompt_sigma": 0.5, "max_tokens": 8192,
                    "runaway_prob": 0.01, "wrong_length_factor": 1.3},
        "engine": {"replicas": replicas, "slots": slots},
        "controllers": [{"kind": "static", "group_size": 32}],
    })


def time_run(sc) -> float:
    t0 = time.perf_counter()
    run_scenario(sc, hindsight=False, include_series=False)
    return time.perf_counter() - t0


def phase_split(sc, steps: int) -> dict[str, float]:
    """Seconds spent in each phase over `steps` steps (same work as the step loop)."""
    model = LengthModel(sc)
    ctrl = sagc.make("static", group_size=32)
    rule = sagc.make_rule(sc.straggler)
    state = rule.init_state()
    out = {"lengths": 0.0, "engine": 0.0, "stats+controller+rule": 0.0}
    for t in range(steps):
        t0 = time.perf_counter()
        batch = model.sample_step(t, 32)
        t1 = time.perf_counter()
        res = simulate_rollout(batch.length, sc.engine, sc.lengths.prompt_tokens)
        t2 = time.perf_counter()
        g = ctrl.decide(allowed=sc.group_sizes, prompts=64).group_size
        stats = sagc.StepStats(group_id=np.repeat(np.arange(64), g), length=batch.length.ravel(),
                               reward=batch.reward.ravel(), truncated=batch.truncated.ravel(), group_size=g,
                               rollout_s=res.rollout_s, duration_s=res.finish_s)
        ctrl.update(stats)
        rule.observe(stats, state)
        t3 = time.perf_counter()
        out["lengths"] += t1 - t0
        out["engine"] += t2 - t1
        out["stats+controller+rule"] += t3 - t2
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="bench/results/sim.json")
    args = parser.parse_args(argv)

    cases = []
    for replicas, slots in ((1, 256), (8, 256)):
        sc = scenario(args.steps, replicas, slots)
        seconds = time_run(sc)
        cases.append({"case": f"B=64 G=32, {replicas} x {slots} slots", "steps": args.steps, "seconds": seconds,
                      "ms_per_step": 1e3 * seconds / args.steps, "sequences_per_s": args.steps * 2048 / seconds})
    split = phase_split(scenario(args.steps, 1, 256), min(args.steps, 500))
    n_split = min(args.steps, 500)

    print(f"{'case':<32} {'steps':>6} {'seconds':>9} {'ms/step':>8} {'seq/s':>11}")
    for c in cases:
        print(f"{c['case']:<32} {c['steps']:>6} {c['seconds']:>9.2f} {c['ms_per_step']:>8.2f} {c['sequences_per_s']:>11.0f}")
    print(f"\nper-phase split over {n_split} steps (1 x 256 slots):")
    for phase, s in split.items():
        print(f"  {phase:<24} {1e3 * s / n_split:7.3f} ms/step")
    ok = cases[0]["seconds"] < TARGET_S * args.steps / 2000
    print(f"\ntarget < {TARGET_S:g} s per 2000 steps (queueing case): {'met' if ok else 'MISSED'}")
    line = machine_line(cpu_info(), {c["case"]: 1e3 / c["ms_per_step"] for c in cases})  # simulated steps/s
    print(line)

    result = {
        "benchmark": "sagc.sim step loop", "target_s_per_2000_steps": TARGET_S, "target_met": ok, "cases": cases,
        "phase_ms_per_step": {k: 1e3 * v / n_split for k, v in split.items()},
        "machine": {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(),
                    "cpus": os.cpu_count(), **cpu_info()},
        "machine_line": line,
    }
    with atomic_path(args.out, suffix=".json") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
