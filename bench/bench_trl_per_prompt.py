"""Per-prompt group sizes in SAGCGRPOTrainer on this CPU (issue 22): learning signal per second.

The simulator's per-prompt figures (bench_per_prompt.py) assume prompts recur, so SAGC can learn
each one. The demo's task does not recur within a short run, so this benchmark trains on a small
pool of the arithmetic task's prompts (`--pool`, default 48: with B = 8 an epoch is 6 steps) for
`--steps` optimizer steps, side by side in one process, per seed:
  - `static-G`      G for every prompt, each allowed G (the best in hindsight per seed is the
                    reference, as in the simulator's benchmarks);
  - `sagc`          plain SAGC (one G per step), its defaults;
  - `sagc-largest`  plain SAGC with `start: largest`, the start before 2026-12-02 (G_max until step
                    times are known); only when named in --runs;
  - `per-prompt`    `{kind: sagc, per_prompt: true}`, the trainer's default prompt_lookahead 4 (the
                    dealt B, then candidates that take a skipped prompt's place);
  - `per-prompt-1`  the same with prompt_lookahead 1 (only the dealt B: a skip makes the step smaller;
                    the trainer before 2026-12-02);
  - the anchors at their published defaults, as the trainer runs them: `dapo` (DAPO's dynamic
    sampling, n = 16, all-equal groups dropped and the step refilled, at most 2 refill rounds:
    `dynamic_sampling=True`) and `knapsack` (Knapsack RL, 8 completions per prompt on average).
The model is the demo's warm-started tiny Llama (sagc.tasks.warmstart, cached after the first
run), fp32, plain `generate`, allowed G {2, 4, 8, 16}, temperature 1, lr 1e-4. Runs go in a
rotating order per seed, so drift of a shared machine hits all alike.

Per run, from its rollout trace: signal (informative groups x (1 - 1/G_i), the simulator's measure)
per second of the steps (`step_s` summed: rollout, scoring, backward, optimizer), informative
groups and completions per step, prompts skipped and replaced per step, and the mean reward of the
first and last epoch (what the model learned). Median and [min, max] over seeds; ratios paired.

    python bench/bench_trl_per_prompt.py [--seeds 0 1 2] [--steps 30] [--pool 48] [--prompts 8]
                                         [--runs static-2 ... knapsack] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trl_tail import cpu_setup, environment, run_rotating, timed_train, write_json  # noqa: E402  (sets offline mode first)

import numpy as np  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from sagc.integrations.trl import SAGCGRPOTrainer  # noqa: E402
from sagc.tasks import arith, warmstart  # noqa: E402
from sagc.tasks.machine import load_average, machine_info, machine_line  # noqa: E402
from sagc.trace import read_trace  # noqa: E402

ALLOWED = [2, 4, 8, 16]
STATIC = tuple(f"static-{g}" for g in ALLOWED)
RUNS = (*STATIC, "sagc", "per-prompt", "per-prompt-1", "dapo", "knapsack")
EXTRA_RUNS = ("sagc-largest",)  # run only when named in --runs
NUM_GENERATIONS = 8  # GRPOConfig's: B prompt slots of 8 rows each (fixed_prompts); G is the run's


def spec(name: str) -> tuple[dict, dict]:
    """(group_controller, extra trainer keywords) of a run."""
    if name in STATIC:
        return {"kind": "static", "group_size": int(name.split("-")[1])}, {}
    if name == "sagc":
        return {"kind": "sagc"}, {}
    if name == "sagc-largest":
        return {"kind": "sagc", "start": "largest"}, {}
    if name == "dapo":  # DAPO's n = 16 (arXiv 2503.14476), dynamic sampling as the trainer runs it
        return {"kind": "static", "group_size": 16}, {"dynamic_sampling": True}
    if name == "knapsack":
        return {"kind": "knapsack"}, {}
    return {"kind": "sagc", "per_prompt": True}, {"prompt_lookahead": 1 if name == "per-prompt-1" else 4}


def signal_of(record: dict) -> tuple[float, int, int]:
    """(signal, informative groups, completions) of one trace record. Under dynamic sampling the
    record holds every group generated, and the step trains B of them: its informative groups
    less the dropped ones padded in."""
    if record.get("dynamic"):
        g = int(record["group_size"])
        trained = int(record["prompts"]) - int(record["dynamic"]["padded_groups"])
        rows = sum(len(x["rewards"]) for x in record["groups"])
        return trained * (1.0 - 1.0 / g), trained, rows
    sig, informative, rows = 0.0, 0, 0
    for g in record["groups"]:
        r = np.asarray([np.nan if x is None else x for x in g["rewards"]], dtype=np.float64)
        rows += r.size
        finite = r[np.isfinite(r)]
        if finite.size >= 2 and np.ptp(finite) > 0:
            informative += 1
            sig += 1.0 - 1.0 / r.size
    return sig, informative, rows


def one_run(name: str, seed: int, opts, ckpt: Path, prompts: list, compute, work: Path) -> dict:
    model, tok = warmstart.load_checkpoint(ckpt)
    out_dir = work / f"{name}-s{seed}"
    controller, extra = spec(name)
    args = GRPOConfig(output_dir=str(out_dir), per_device_train_batch_size=opts.prompts * NUM_GENERATIONS,
                      num_generations=NUM_GENERATIONS, max_completion_length=opts.max_tokens, max_steps=opts.steps,
                      learning_rate=1e-4, temperature=1.0, beta=0.0, logging_steps=1, report_to=[],
                      save_strategy="no", seed=seed, dataloader_num_workers=0, disable_tqdm=True,
                      **compute.grpo_args())
    trainer = SAGCGRPOTrainer(model=model, processing_class=tok, reward_funcs=[arith.reward_fn], args=args,
                              train_dataset=Dataset.from_list(prompts), group_controller=controller,
                              group_sizes=ALLOWED, trace_path="auto", **extra)
    wall, cpu, load0 = timed_train(trainer)
    hist = trainer.sagc_history
    records = list(read_trace(trainer.trace_path))
    per = np.asarray([signal_of(r) for r in records], dtype=np.float64)  # (steps, 3)
    step_s = float(sum(h["step_s"] for h in hist))
    epoch = max(1, opts.pool // opts.prompts)  # steps per pass of the loader
    reward = [float(h["reward_mean"]) for h in hist]
    return {"run": name, "seed": seed, "steps": len(hist), "wall_s": wall, "cpu_s": cpu, "step_s": step_s,
            "load_avg": [load0, load_average()],
            "signal": float(per[:, 0].sum()), "signal_per_s": float(per[:, 0].sum() / step_s),
            "signal_per_cpu_s": float(per[:, 0].sum() / cpu),
            "informative_per_step": float(per[:, 1].mean()), "completions_per_step": float(per[:, 2].mean()),
            "signal_per_completion": float(per[:, 0].sum() / per[:, 2].sum()),
            "mean_group_size": float(np.mean([h.get("mean_group_size", h["group_size"]) for h in hist])),
            "skipped_per_step": float(np.mean([h.get("skipped_prompts", 0) for h in hist])),
            "replaced_per_step": float(np.mean([h.get("replaced_prompts", 0) for h in hist])),
            "reward_first_epoch": float(np.nanmean(reward[:epoch])),
            "reward_last_epoch": float(np.nanmean(reward[-epoch:]))}


def spread(values: list[float]) -> list[float]:
    v = [x for x in values if np.isfinite(x)]
    return [float(min(v)), float(np.median(v)), float(max(v))] if v else [float("nan")] * 3


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    base = {}  # per seed: the best static G in hindsight (by signal per step second)
    for r in ok:
        if r["run"] in STATIC and (r["seed"] not in base or r["signal_per_s"] > base[r["seed"]]["signal_per_s"]):
            base[r["seed"]] = r
    out = {"best static G": {"per seed": {str(k): v["run"] for k, v in sorted(base.items())}}}
    for name in (*RUNS, *EXTRA_RUNS):
        rs = [r for r in ok if r["run"] == name]
        if not rs:
            continue
        keys = ("signal_per_s", "signal_per_cpu_s", "informative_per_step", "completions_per_step",
                "signal_per_completion", "mean_group_size", "skipped_per_step", "replaced_per_step",
                "reward_first_epoch", "reward_last_epoch", "step_s")
        out[name] = {k: spread([r[k] for r in rs]) for k in keys}
        out[name]["vs_static"] = spread([r["signal_per_s"] / base[r["seed"]]["signal_per_s"]
                                         for r in rs if r["seed"] in base])
        out[name]["cpu_vs_static"] = spread([r["signal_per_cpu_s"] / base[r["seed"]]["signal_per_cpu_s"]
                                             for r in rs if r["seed"] in base])  # the same run as the reference
    return out


def cell(v: list[float], f: str) -> str:
    return f"{v[1]:{f}} [{v[0]:{f}}, {v[2]:{f}}]"


def table(summary: dict) -> str:
    head = ["run", "signal / step s", "vs best static", "signal / CPU s vs it", "informative groups / step",
            "completions / step", "signal / completion", "mean G", "skipped / step", "replaced / step",
            "mean reward, first -> last epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary.items():
        if name == "best static G":
            continue
        lines.append("| " + " | ".join([
            name, cell(s["signal_per_s"], ".3f"), cell(s["vs_static"], ".2f"), cell(s["cpu_vs_static"], ".2f"),
            cell(s["informative_per_step"], ".1f"), cell(s["completions_per_step"], ".0f"),
            cell(s["signal_per_completion"], ".4f"), cell(s["mean_group_size"], ".1f"),
            cell(s["skipped_per_step"], ".1f"), cell(s["replaced_per_step"], ".1f"),
            f"{s['reward_first_epoch'][1]:.2f} -> {s['reward_last_epoch'][1]:.2f}"]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    ap.add_argument("--pool", type=int, default=48, help="distinct prompts (they recur every pool / B steps)")
    ap.add_argument("--prompts", type=int, default=8, help="B, prompts per step")
    ap.add_argument("--max-tokens", type=int, default=128, help="max_completion_length (the warm start's cap)")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=[*RUNS, *EXTRA_RUNS])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's probe)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/bench_trl_per_prompt.json"))
    opts = ap.parse_args()
    if opts.pool < opts.prompts or opts.steps < 1:
        ap.error(f"--pool must be >= --prompts and --steps >= 1, got pool {opts.pool}, prompts {opts.prompts}, "
                 f"steps {opts.steps}")
    t_start = time.perf_counter()
    compute, ws, _, ckpt = cpu_setup(opts.threads, opts.max_tokens)
    prompts = arith.to_records(arith.sample_problems(ws.task, "train", opts.pool, seed=0))
    load_start = load_average()
    runs = run_rotating(list(opts.runs), opts.seeds, "run",
                        lambda name, seed, work: one_run(name, seed, opts, ckpt, prompts, compute, work),
                        lambda r: (f"signal/s {r['signal_per_s']:.3f}, informative/step {r['informative_per_step']:.1f}, "
                                   f"completions/step {r['completions_per_step']:.0f}, skipped/step "
                                   f"{r['skipped_per_step']:.1f}, replaced/step {r['replaced_per_step']:.1f}"))
    summary = summarise(runs)
    machine = machine_info(compute)
    machine["load_avg_start"] = load_start
    line = machine_line(machine)
    total = time.perf_counter() - t_start
    setup = {"model": "warm-started tiny Llama (sagc.tasks.warmstart defaults)", "checkpoint": str(ckpt),
             "task": f"arithmetic (sagc.tasks.arith, train split), a pool of {opts.pool} prompts",
             "prompts_per_step": opts.prompts, "num_generations": NUM_GENERATIONS, "allowed": ALLOWED,
             "max_completion_length": opts.max_tokens, "steps": opts.steps, "seeds": opts.seeds,
             "temperature": 1.0, "learning_rate": 1e-4, "precision": "fp32", "torch_threads": compute.threads,
             "engine": "TRL generate"}
    print(f"\nB = {opts.prompts}, pool {opts.pool} prompts, allowed G {ALLOWED}, "
          f"max {opts.max_tokens} tokens, {opts.steps} steps, seeds {opts.seeds}; fp32, TRL generate")
    print(line + f"; load average at the start {' '.join(map(str, load_start or []))}")
    print(f"median [min, max] over seeds; 'vs best static' paired per seed (best: "
          f"{summary['best static G']['per seed']})\n")
    print(table(summary))
    print(f"\ntotal runtime {total:.0f} s")
    payload = {"benchmark": "trl_per_prompt", "machine_line": line, "setup": setup, "summary": summary, "runs": runs,
               "runtime_s": total, **environment(machine)}
    write_json(opts.out, payload)
    print(f"JSON: {opts.out}")


if __name__ == "__main__":
    main()
