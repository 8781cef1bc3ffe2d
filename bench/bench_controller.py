"""Controller decision cost: decide() and update() at B = 512 prompts, G up to 64, 64-step window.

Target (issues 2 and 9): one decision of the default controller <= 2 ms on a 2-core machine.
`update` refits the risk model and predicts for the last query, so a steady loop's `decide`
reads a cache. Prints a table, writes JSON.

    python bench/bench_controller.py [--out bench/results/controller.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import sagc
from sagc.tasks.machine import cpu_info, machine_line

ALLOWED = [2, 4, 8, 16, 32, 64]
B = 512


def step(rng: np.random.Generator, g: int) -> sagc.StepStats:
    a = rng.normal(0.0, 0.3, B)
    length = np.minimum(np.ceil(400 * np.exp(a[:, None] + rng.normal(0.0, 0.5, (B, g)))), 8192)
    reward = (rng.random((B, g)) < rng.beta(1, 2, B)[:, None]).astype(float)
    return sagc.StepStats(group_id=np.repeat(np.arange(B), g), length=length.ravel(), reward=reward.ravel(),
                          truncated=(length >= 8192).ravel(), group_size=g, rollout_s=60.0, step_s=80.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/controller.json"))
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    paper = {"objective": "utility", "utility": "informative", "delta": 0.1, "straggler": {"rule": "reference"}}
    for label, name, kw in [("sagc (default)", "sagc", {}), ("sagc/paper", "sagc", paper),
                            ("sagc/tail, delta 0.1", "sagc", {"delta": 0.1}), ("static", "static", {"group_size": 64}),
                            ("aimd", "aimd", {}), ("inverse_pass_rate", "inverse_pass_rate", {})]:
        ctrl = sagc.make(name, **kw)
        stats = [step(rng, 64) for _ in range(8)]
        for k in range(64):  # fill the 64-step window at G = 64 (the largest state)
            ctrl.decide(ALLOWED, prompts=B)
            ctrl.update(stats[k % 8])
        dec, upd = [], []
        for k in range(args.repeats):
            t0 = time.perf_counter()
            ctrl.decide(ALLOWED, prompts=B)
            t1 = time.perf_counter()
            ctrl.update(stats[k % 8])
            t2 = time.perf_counter()
            dec.append(t1 - t0)
            upd.append(t2 - t1)
        state_kb = len(json.dumps(ctrl.state_dict())) / 1024
        rows.append({"controller": label, "decide_ms_median": 1e3 * float(np.median(dec)),
                     "decide_ms_p95": 1e3 * float(np.percentile(dec, 95)),
                     "update_ms_median": 1e3 * float(np.median(upd)), "state_kb": state_kb})
    print(f"B={B}, G in {ALLOWED}, window 64 steps ({B * 64} completions/step), {args.repeats} repeats")
    print(f"{'controller':<22}{'decide ms (med)':>16}{'decide ms (p95)':>16}{'update ms':>12}{'state KiB':>12}")
    for r in rows:
        print(f"{r['controller']:<22}{r['decide_ms_median']:>16.3f}{r['decide_ms_p95']:>16.3f}"
              f"{r['update_ms_median']:>12.2f}{r['state_kb']:>12.0f}")
    target = rows[0]["decide_ms_median"] <= 2.0  # the default SAGC controller
    print(f"target: default sagc decide <= 2 ms: {'met' if target else 'NOT met'}")
    machine = cpu_info()  # numpy only: no precision or threads to report
    print(machine_line(machine))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                                    "cpu": machine, "machine_line": machine_line(machine),
                                    "B": B, "allowed": ALLOWED, "rows": rows, "target_met": target}, indent=2))


if __name__ == "__main__":
    main()
