"""How much of per-prompt SAGC's shortfall on a finite prompt pool is its estimates (issue 22): the
same controller given each prompt's true pass rate and length effect, against the shipped one.

Per-prompt SAGC sizes prompts from a pass-rate posterior built from each prompt's past visits
(sagc.controllers.prompts.PromptTable). The oracle here replaces that table with the simulator's
truth: a copy of the scenario's prompt pool (sagc.sim.prompts.PromptPool, drawn from the same
seed) kept in step with training (a prompt trained with mixed rewards gains one visit, as in the
simulator), read at the current step, as a Beta posterior worth `--strength` observations. Every
prompt counts as seen, so none falls back to the step's G. Everything else (skip rule, knapsack,
step G, straggler budget) is the shipped controller. If even the oracle misses a target, no
better estimate of pass rates meets it with this allocation rule; what remains is the pool.

    python bench/bench_per_prompt_oracle.py [--prompts 16 32] [--seeds 0 1 2] [--steps 600 300] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_per_prompt import load  # noqa: E402
from bench_tail import run_tasks  # noqa: E402

from sagc._io import write_json_atomic  # noqa: E402
from sagc.sim import run_scenario  # noqa: E402
from sagc.sim.prompts import PromptPool  # noqa: E402
from sagc.sim.scenario import controller_from_entry  # noqa: E402
from sagc.tasks.machine import cpu_info, machine_line  # noqa: E402

STREAM = "pool:math-pool"
PP = {"kind": "sagc", "per_prompt": True}


class TruthTable:
    """PromptTable's lookup / observe, answered from the simulator's own pool."""

    def __init__(self, scenario, controller, strength: float) -> None:
        self.pool = PromptPool(scenario)
        self.controller = controller
        self.strength = strength
        self.sigma = scenario.lengths.prompt_sigma

    def lookup(self, ids: np.ndarray, fields: tuple[str, ...]) -> tuple[np.ndarray, dict]:
        ids = np.asarray(ids, dtype=np.int64)
        p = self.pool.pass_rate(ids, self.controller._state["step"])  # (n,) the pass rate this step samples at
        rec = {"succ": p * self.strength, "fail": (1.0 - p) * self.strength, "loglen": self.sigma * self.pool.z[ids]}
        return np.ones(ids.size, dtype=bool), {k: rec[k] for k in fields}

    def observe(self, ids: np.ndarray, succ: np.ndarray, scored: np.ndarray, loglen: np.ndarray) -> None:
        succ, scored = np.asarray(succ), np.asarray(scored)
        self.pool.learn(ids, (succ > 0) & (succ < scored))  # mixed rewards: one visit more, as the simulator counts


def one(prompts: int, seed: int, steps: int, strength: float) -> dict:
    t0 = time.perf_counter()
    sc = load(STREAM, seed, steps, prompts)
    oracle = controller_from_entry(PP, sc.straggler)
    oracle._table = TruthTable(sc, oracle, strength)  # PerPromptMixin.prompt_table reads it
    if not isinstance(oracle.prompt_table, TruthTable):  # else the "oracle" would silently be SAGC
        raise SystemExit("PerPromptMixin no longer reads _table: update TruthTable's hook")
    res = run_scenario(sc, [{**PP, "label": "sagc-pp"}, oracle], include_series=False)
    best_g = res["hindsight"]["best_g"]
    best = res["hindsight"]["by_g"][str(best_g)]["signal_per_s"]
    runs = {c["label"]: c["summary"] for c in res["controllers"]}
    oracle_run = runs[next(k for k in runs if k != "sagc-pp")]
    return {"prompts": prompts, "seed": seed, "steps": steps, "best_g": best_g,
            "pp_vs_best": runs["sagc-pp"]["signal_per_s"] / best, "oracle_vs_best": oracle_run["signal_per_s"] / best,
            "pool_pass_rate": {"sagc-pp": runs["sagc-pp"]["pool_pass_rate"], "oracle": oracle_run["pool_pass_rate"]},
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", nargs="+", type=int, default=[16, 32], help="B: math-pool's own and engine-filling")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", nargs="+", type=int, default=[600, 300], help="run lengths (600: the scenario's own)")
    ap.add_argument("--strength", type=float, default=1000.0, help="observations the true pass rate is worth")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/per_prompt_oracle.json"))
    args = ap.parse_args()
    if args.strength <= 0:
        ap.error(f"--strength must be > 0, got {args.strength}")
    t0 = time.perf_counter()
    info = cpu_info()
    rows = run_tasks(one, [(b, s, n, args.strength) for n in args.steps for b in args.prompts for s in args.seeds],
                     args.jobs)
    machine = machine_line(info) + f"; numpy float64 simulator, {args.jobs} worker(s)"
    print(machine)
    print("| B | steps | per-prompt SAGC / best static (per seed) | oracle pass rates / best static (per seed) "
          "| per-prompt / oracle | >= 1.3x met by the oracle |\n|---|---|---|---|---|---|")
    for n in args.steps:
        for b in args.prompts:
            rs = [r for r in rows if r["steps"] == n and r["prompts"] == b]
            pp, orc = [r["pp_vs_best"] for r in rs], [r["oracle_vs_best"] for r in rs]
            print(f"| {b} | {n} | {' / '.join(f'{x:.3f}' for x in pp)} | {' / '.join(f'{x:.3f}' for x in orc)} "
                  f"| {np.mean(np.divide(pp, orc)):.3f} | {'yes' if min(orc) >= 1.3 else 'no'} |")
    cmd = (f"python bench/bench_per_prompt_oracle.py --prompts {' '.join(map(str, args.prompts))} --seeds "
           f"{' '.join(map(str, args.seeds))} --steps {' '.join(map(str, args.steps))} --strength {args.strength:g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"machine": machine, "command": cmd, "wall_s": time.perf_counter() - t0, "rows": rows})
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
