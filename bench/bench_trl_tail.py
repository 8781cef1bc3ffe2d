"""Tail control in SAGCGRPOTrainer on this CPU (issue 21): rollout seconds per trained group.

Side by side in one process, the same number of steps each, per seed:
  - `full`    every completion runs to the end (TRL's own continuous-batching generation);
  - `auto`    resume with the over-sampling chosen online (sagc.rollout defaults, nothing tuned);
  - `resume`  at its anchor's published defaults (APRIL: over_sample 2, max_staleness 64), with
              `--policies full auto resume` (not by default: 3 seeds x 14 steps of three policies took
              14 min on a 2-core machine at load average ~5; full and auto alone, about 10 min).
The model and task are the demo's: the warm-started tiny Llama (sagc.tasks.warmstart, cached
after the first run) on the arithmetic task, static G, B prompts per step, completions capped at
the warm start's 128 tokens (about 4% of sampled completions loop to the cap: the tail).
Generation is transformers' continuous batching (`use_transformers_continuous_batching=True`),
its KV cache sized to hold every completion a step can put in flight at the largest rate
(`--num-blocks`, `--max-batch-tokens`: see compat.warn_unsized_cpu_continuous_batching). fp32.
Policies run in a rotating order per seed, so drift of a shared machine hits all alike.

Per run: rollout seconds per trained group (sum of the steps' rollout_s over the trained complete
groups; the headline), whole-step seconds and process CPU seconds (all threads; less sensitive to
neighbours on a shared machine) per trained group, the rollout's share of the step, the on-policy
token share of trained tokens, the share of trained completions that were resumed, tokens wasted
(generated and never trained: drop/defer; 0 for resume/auto) and tokens still in flight at the
end, the mean length of trained completions against `full`'s at the same seed (length bias),
mean reward, and auto's rates. Median and [min, max] over seeds; ratios are paired per seed.

Then sagc's continuous-batching engine alone, outside training, with the runs' KV settings: one
call's fixed start-up (1 request, 1 token) and a step-sized call (B x G requests, 32 tokens).
Then the what-if: the `full` runs' traces replayed on a GPU engine preset (sagc.sim.whatif) with
every rollout policy at its defaults (simulated, not measured).

    python bench/bench_trl_tail.py [--seeds 0 1 2] [--steps 14] [--policies full auto [resume]]
                                   [--engine llama-8b-h100-vllm] [--out bench/results/bench_trl_tail.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402
from trl import GRPOConfig  # noqa: E402

import sagc  # noqa: E402
from sagc.integrations.trl import SAGCGRPOTrainer  # noqa: E402
from sagc.rollout import ANCHOR_DEFAULTS, rollout_settings  # noqa: E402
from sagc.sim.whatif import run_whatif  # noqa: E402
from sagc.tasks import arith, warmstart  # noqa: E402
from sagc.tasks.config import WarmStartConfig  # noqa: E402
from sagc.tasks.machine import choose, load_average, machine_info, machine_line  # noqa: E402

WHATIF_POLICIES = ["drop", "resume", "defer", "auto"]
SIM_MEASURES = ("signal_per_s", "mean_group_size", "bubble_fraction", "on_policy_share", "resumed_share",
                "length_bias", "reward_bias", "wasted_share", "p50_step_s")


def policy_spec(name: str) -> dict:
    """The policy's knobs: full and auto as named (auto: our defaults), the anchors at their
    published defaults (sagc.rollout.ANCHOR_DEFAULTS)."""
    return dict(ANCHOR_DEFAULTS[name])


def max_rate(name: str) -> float:
    s = rollout_settings(policy_spec(name))
    return max(s.over_sample_grid) if s.policy == "auto" else s.over_sample


def spread(values: list[float]) -> list[float] | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return [float(min(v)), float(np.median(v)), float(max(v))] if v else None


def one_run(policy: str, seed: int, opts, ckpt: Path, prompts: list, compute, work: Path) -> dict:
    model, tok = warmstart.load_checkpoint(ckpt)
    out_dir = work / f"{policy}-s{seed}"
    cb = {"num_blocks": opts.num_blocks, "page_size": opts.page_size, "max_batch_tokens": opts.max_batch_tokens}
    args = GRPOConfig(output_dir=str(out_dir), per_device_train_batch_size=opts.prompts * opts.group_size,
                      num_generations=opts.group_size, max_completion_length=opts.max_tokens, max_steps=opts.steps,
                      learning_rate=1e-4, temperature=1.0, beta=0.0, logging_steps=1, report_to=[],
                      save_strategy="no", seed=seed, dataloader_num_workers=0, disable_tqdm=True,
                      shuffle_dataset=False, use_transformers_continuous_batching=True,
                      transformers_continuous_batching_config=cb, **compute.grpo_args())
    trainer = SAGCGRPOTrainer(model=model, processing_class=tok, reward_funcs=[arith.reward_fn], args=args,
                              train_dataset=Dataset.from_list(prompts), group_controller="static",
                              group_sizes=[opts.group_size], rollout=policy_spec(policy), trace_path="auto")
    wall, cpu, load0 = timed_train(trainer)
    hist = trainer.sagc_history
    g = opts.group_size
    groups = [h["rows"] // g for h in hist]
    rollout = [float(h["rollout_s"]) for h in hist]
    step = [float(h["step_s"]) for h in hist]
    lengths = [x for h in hist for x in h["lengths"]]
    trained_tokens = [float(sum(h["lengths"])) for h in hist]
    tails = [h.get("tail") for h in hist]
    if any(t is not None for t in tails):
        on_tok = sum(t["on_policy_share"] * n for t, n in zip(tails, trained_tokens))
        resumed = sum(sum(t["resumed"]) for t in tails)
        aborted = [x for t in tails for x in t["aborted_lengths"]]
        rates = [float(t["rate"]) for t in tails]
    else:  # full: everything trained was sampled by the current policy, nothing resumed or aborted
        on_tok, resumed, aborted, rates = sum(trained_tokens), 0, [], [1.0] * len(hist)
    logs = trainer.state.log_history
    wasted = float(sum(x.get("sagc/tail/wasted_tokens", 0.0) for x in logs))
    tail = trainer._tail
    in_flight_end = int(sum(len(v["tokens"]) for v in tail.partial.values())) if tail is not None else 0
    # the engines differ (full: TRL's generate_batch; others: sagc's streamed requests), so auto's
    # steps at rate 1.0 (no over-sampling) show the engine's own difference from full's
    at1 = [i for i, r in enumerate(rates) if r == 1.0]
    trace = out_dir / "sagc_trace.jsonl"
    keep = opts.out.parent / "bench_trl_tail_traces" / f"{policy}-s{seed}.jsonl"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(trace, keep)
    return {
        "policy": policy, "seed": seed, "knobs": policy_spec(policy), "steps": len(hist), "wall_s": wall, "cpu_s": cpu,
        "load_before": load0, "load_after": load_average(), "trained_groups": int(sum(groups)),
        "rollout_s": float(sum(rollout)), "step_s": float(sum(step)),
        "rollout_s_per_group": float(sum(rollout) / max(sum(groups), 1)),
        "step_s_per_group": float(sum(step) / max(sum(groups), 1)),
        "cpu_s_per_group": float(cpu / max(sum(groups), 1)), "rollout_share_of_step": float(sum(rollout) / sum(step)),
        "rollout_s_per_group_at_rate_1": (float(sum(rollout[i] for i in at1) / max(sum(groups[i] for i in at1), 1))
                                          if at1 else None),
        "trained_tokens": float(sum(trained_tokens)), "on_policy_share": float(on_tok / max(sum(trained_tokens), 1)),
        "resumed_share": float(resumed / max(len(lengths), 1)), "aborted": len(aborted),
        "aborted_tokens": int(sum(aborted)), "wasted_tokens": wasted, "in_flight_tokens_at_end": in_flight_end,
        "mean_length": float(np.mean(lengths)), "max_length": int(max(lengths)),
        "capped_share": float(np.mean([x >= opts.max_tokens for x in lengths])),
        "mean_reward": float(np.nanmean([h["reward_mean"] for h in hist])),
        "rates": rates, "per_step": [{"rollout_s": r, "step_s": s, "groups": n, "rate": q}
                                     for r, s, n, q in zip(rollout, step, groups, rates)],
        "trace": str(keep),
    }


def summarise(runs: list[dict], policies: list[str]) -> dict:
    full = {r["seed"]: r for r in runs if r["policy"] == "full" and "error" not in r}
    out = {}
    for p in policies:
        rs = [r for r in runs if r["policy"] == p and "error" not in r]
        if not rs:
            out[p] = {"error": next((r["error"] for r in runs if r["policy"] == p), "no run")}
            continue
        s = {k: spread([r[k] for r in rs]) for k in
             ("rollout_s_per_group", "step_s_per_group", "cpu_s_per_group", "on_policy_share", "resumed_share",
              "wasted_tokens",
              "in_flight_tokens_at_end", "mean_length", "mean_reward", "capped_share", "cpu_s", "wall_s")}
        s["rollout_s_per_group_at_rate_1"] = spread([r["rollout_s_per_group_at_rate_1"] for r in rs])
        paired = [r for r in rs if r["seed"] in full]
        s["rollout_vs_full"] = spread([r["rollout_s_per_group"] / full[r["seed"]]["rollout_s_per_group"]
                                       for r in paired])
        s["rollout_share_of_step"] = spread([r["rollout_share_of_step"] for r in rs])
        s["cpu_vs_full"] = spread([r["cpu_s_per_group"] / full[r["seed"]]["cpu_s_per_group"] for r in paired])
        s["step_vs_full"] = spread([r["step_s_per_group"] / full[r["seed"]]["step_s_per_group"] for r in paired])
        s["length_bias"] = spread([r["mean_length"] / full[r["seed"]]["mean_length"] - 1.0 for r in paired])
        s["seeds"] = len(rs)
        out[p] = s
    return out


def fmt(x: list[float] | None, f: str) -> str:
    if x is None:
        return "-"
    return f"{format(x[1], f)} [{format(x[0], f)}, {format(x[2], f)}]"


def table(summary: dict) -> str:
    head = ["policy", "rollout s / trained group", "vs full", "step s / trained group", "vs full",
            "process CPU s / trained group", "vs full", "rollout share of step", "on-policy token share", "resumed share", "wasted tokens", "in flight at end (tokens)",
            "mean trained length", "length vs full", "mean reward"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p, s in summary.items():
        if "error" in s:
            lines.append(f"| {p} | failed: {s['error']} |" + " |" * (len(head) - 2))
            continue
        lines.append("| " + " | ".join([
            p, fmt(s["rollout_s_per_group"], ".3f"), fmt(s["rollout_vs_full"], ".2f") + "x",
            fmt(s["step_s_per_group"], ".2f"), fmt(s["step_vs_full"], ".2f") + "x",
            fmt(s["cpu_s_per_group"], ".2f"), fmt(s["cpu_vs_full"], ".2f") + "x", fmt(s["rollout_share_of_step"], ".2f"),
            fmt(s["on_policy_share"], ".2f"), fmt(s["resumed_share"], ".2f"), fmt(s["wasted_tokens"], ".0f"),
            fmt(s["in_flight_tokens_at_end"], ".0f"), fmt(s["mean_length"], ".1f"), fmt(s["length_bias"], "+.3f"),
            fmt(s["mean_reward"], ".3f")]) + " |")
    return "\n".join(lines)


def engine_probe(ckpt: Path, prompts: list, opts, reps: int = 3) -> dict:
    """What one call of sagc's continuous-batching engine costs here, outside training: its fixed
    start-up (1 request, 1 token) and a step-sized call (B x G requests, 32 tokens each at most),
    the same KV-cache settings as the runs. Medians of `reps` calls."""
    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    from sagc.integrations.trl.engines import run_continuous

    model, tok = warmstart.load_checkpoint(ckpt)
    model.eval()
    ids = [tok(p["prompt"])["input_ids"] for p in prompts]
    gen = GenerationConfig(do_sample=True, temperature=1.0, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id, max_new_tokens=opts.max_tokens)
    cb = ContinuousBatchingConfig(num_blocks=opts.num_blocks, page_size=opts.page_size,
                                  max_batch_tokens=opts.max_batch_tokens, max_memory_percent=0.5)
    out = {}
    n = opts.prompts * opts.group_size
    for name, inputs, budget in (("startup_1_request_1_token", ids[:1], 1),
                                 (f"{n}_requests_32_tokens", [ids[i % len(ids)] for i in range(n)], 32)):
        calls = []
        for _ in range(reps):
            torch.manual_seed(0)
            with torch.no_grad():
                r = run_continuous(model, inputs, [budget] * len(inputs), lambda f: bool(f.all()),
                                   generation_config=gen, cb_config=cb)
            calls.append((r.seconds, int(sum(len(x) for x in r.tokens))))
        out[name] = {"seconds": float(np.median([c[0] for c in calls])),
                     "tokens": float(np.median([c[1] for c in calls])), "calls": calls}
    return out


def whatif(traces: list[str], engine: str, steps: int) -> dict:
    res = run_whatif(traces, engine=engine, rollout=WHATIF_POLICIES, steps=steps)
    runs = res["sim"]["controllers"]
    statics = [r for r in runs if r["label"].startswith("static-G")]
    best = max(r["summary"]["signal_per_s"] for r in statics)
    rows = [{"label": r["label"], **{m: r["summary"].get(m) for m in SIM_MEASURES},
             "vs_best_static": r["summary"]["signal_per_s"] / best if best > 0 else None} for r in runs]
    return {"engine": res["engine"], "recorded": res["recorded"], "steps": steps,
            "hindsight_best_g": (res["sim"].get("hindsight") or {}).get("best_g"), "rows": rows}


def whatif_table(w: dict) -> str:
    head = ["run", "signal/s", "vs best static", "mean G", "bubble", "on-policy share", "resumed share",
            "length bias", "wasted share", "p50 step s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in w["rows"]:
        c = lambda k, f: "-" if r.get(k) is None else format(r[k], f)  # noqa: E731
        lines.append("| " + " | ".join([r["label"], c("signal_per_s", ".3f"), c("vs_best_static", ".2f") + "x",
                                        c("mean_group_size", ".1f"), c("bubble_fraction", ".2f"),
                                        c("on_policy_share", ".2f"), c("resumed_share", ".2f"),
                                        c("length_bias", "+.3f"), c("wasted_share", ".3f"),
                                        c("p50_step_s", ".1f")]) + " |")
    return "\n".join(lines)


def timed_train(trainer) -> tuple[float, float, list | None]:
    """trainer.train() without TRL's printers: (wall s, process CPU s, load average before)."""
    for c in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(c)
    load0 = load_average()
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    return time.perf_counter() - t0, time.process_time() - c0, load0


def cpu_setup(threads: int | None, max_tokens: int) -> tuple:
    """Quiet logs, fp32 on this CPU, and the demo's warm-started model (trained once, then cached):
    (compute, warm-start config, tokenizer, checkpoint). Shared by the TRL benchmarks."""
    for name in ("transformers", "trl", "accelerate", "datasets", "sagc.integrations.trl.trainer"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    transformers.utils.logging.set_verbosity_error()
    compute = choose(bf16=False, threads=threads, cuda=False)  # fp32, the CPU benchmark
    compute.apply()
    ws = WarmStartConfig(max_completion_tokens=max_tokens) if max_tokens != 128 else WarmStartConfig()
    _, tok, ckpt = warmstart.load_or_train(warmstart.resolved(ws, compute.threads))
    return compute, ws, tok, ckpt


def environment(machine: dict) -> dict:
    """The payload's versions and machine."""
    return {"versions": {"python": platform.python_version(), "torch": torch.__version__, "trl": trl.__version__,
                         "transformers": transformers.__version__, "sagc": sagc.__version__},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **machine}}


def write_json(path: Path, payload: dict) -> None:
    """Atomically: a temp file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmpf = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1, default=float)
    os.replace(tmpf, path)


def run_rotating(names: list[str], seeds: list[int], key: str, run, describe) -> list[dict]:
    """run(name, seed, work folder) for every seed and name, the names in a rotating order per seed
    (drift of a shared machine hits all alike), each reported on stderr with describe(result). A
    failure is recorded as {key: name, seed, error, traceback} and skipped: the report says what failed."""
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, seed in enumerate(seeds):
            for name in names[k % len(names):] + names[:k % len(names)]:
                try:
                    r = run(name, seed, Path(tmp))
                    print(f"seed {seed} {name:<13} {r['steps']} steps, {r['wall_s']:.0f} s wall: {describe(r)}",
                          file=sys.stderr, flush=True)
                except Exception as exc:
                    err = f"{type(exc).__name__}: {exc}"
                    print(f"seed {seed} {name}: FAILED {err}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
                    r = {key: name, "seed": seed, "error": err, "traceback": traceback.format_exc()}
                runs.append(r)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=14, help="optimizer steps per run (auto's start takes 8)")
    ap.add_argument("--policies", nargs="+", default=["full", "auto"], choices=list(ANCHOR_DEFAULTS))
    ap.add_argument("--prompts", type=int, default=4, help="B, prompts (trained groups) per step")
    ap.add_argument("--group-size", type=int, default=8, help="static G")
    ap.add_argument("--max-tokens", type=int, default=128, help="max_completion_length (the warm start's cap)")
    ap.add_argument("--num-blocks", type=int, default=None,
                    help="KV cache blocks (default: every completion of a step at the largest rate, at full length)")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--max-batch-tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's probe)")
    ap.add_argument("--engine", default="llama-8b-h100-vllm", help="what-if GPU engine preset (sagc.sim.engines)")
    ap.add_argument("--whatif-steps", type=int, default=300, help="simulated steps (the traces are cycled)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/bench_trl_tail.json"))
    opts = ap.parse_args()
    t_start = time.perf_counter()
    compute, ws, tok, ckpt = cpu_setup(opts.threads, opts.max_tokens)
    n_prompts = opts.steps * opts.prompts * 4 + 64  # the loader's prompts plus over-sampled ones
    prompts = arith.to_records(arith.sample_problems(ws.task, "train", n_prompts, seed=0))
    longest_prompt = max(len(tok(p["prompt"])["input_ids"]) for p in prompts) + 2
    if opts.num_blocks is None:
        top = max(max_rate(p) for p in opts.policies)
        in_flight = math.ceil(opts.prompts * top) * opts.group_size
        opts.num_blocks = in_flight * math.ceil((longest_prompt + opts.max_tokens) / opts.page_size)
    load_start = load_average()
    runs = run_rotating(opts.policies, opts.seeds, "policy",
                        lambda p, seed, work: one_run(p, seed, opts, ckpt, prompts, compute, work),
                        lambda r: (f"rollout {r['rollout_s_per_group']:.3f} s/group, step {r['step_s_per_group']:.2f} "
                                   f"s/group, on-policy {r['on_policy_share']:.2f}, resumed {r['resumed_share']:.2f}, "
                                   f"mean length {r['mean_length']:.1f}, rates {r['rates']}"))
    summary = summarise(runs, opts.policies)
    full_traces = [r["trace"] for r in runs if r["policy"] == "full" and "error" not in r]
    wi = whatif(full_traces, opts.engine, opts.whatif_steps) if full_traces else None
    probe = engine_probe(ckpt, prompts, opts)
    machine = machine_info(compute)
    machine["load_avg_start"] = load_start
    total = time.perf_counter() - t_start
    rates = {p: (1.0 / s["step_s_per_group"][1] / opts.prompts) for p, s in summary.items() if "error" not in s}
    line = machine_line(machine, rates)
    setup = {"model": "warm-started tiny Llama (sagc.tasks.warmstart defaults)", "checkpoint": str(ckpt),
             "task": "arithmetic (sagc.tasks.arith, train split)", "prompts_per_step": opts.prompts,
             "group_size": opts.group_size, "max_completion_length": opts.max_tokens, "steps": opts.steps,
             "seeds": opts.seeds, "temperature": 1.0, "learning_rate": 1e-4, "precision": "fp32",
             "torch_threads": compute.threads, "engine": "transformers continuous batching",
             "continuous_batching_config": {"num_blocks": opts.num_blocks, "page_size": opts.page_size,
                                            "max_batch_tokens": opts.max_batch_tokens},
             "policies": {p: policy_spec(p) for p in opts.policies}}
    payload = {"benchmark": "trl_tail", "machine_line": line, "setup": setup, "summary": summary, "runs": runs,
               "whatif": wi, "engine_probe": probe, "runtime_s": total, **environment(machine)}
    print(f"\nB = {opts.prompts} prompts, static G = {opts.group_size}, max {opts.max_tokens} tokens, {opts.steps} steps, "
          f"seeds {opts.seeds}; continuous batching {setup['continuous_batching_config']}; fp32")
    print(line + f"; load average at the start {' '.join(map(str, load_start or []))}")
    print("median [min, max] over seeds; 'vs full' paired per seed\n")
    print(table(summary))
    at1 = summary.get("auto", {}).get("rollout_s_per_group_at_rate_1")
    if at1:
        print(f"\nauto's steps at rate 1.0 (sagc's streamed engine, no over-sampling): {fmt(at1, '.3f')} s/group "
              f"(full, TRL's generate_batch: {fmt(summary['full']['rollout_s_per_group'], '.3f')})"
              if "full" in summary and "error" not in summary["full"] else "")
    print("\nsagc's continuous-batching engine alone (outside training, same KV settings), median of 3 calls: "
          + "; ".join(f"{k.replace('_', ' ')}: {v['seconds']:.2f} s ({v['tokens']:.0f} tokens)" for k, v in probe.items()))
    if wi:
        print(f"\nWhat-if (simulated, not measured): the full runs' traces ({wi['recorded']['steps']} steps) on "
              f"`{opts.engine}`, {opts.whatif_steps} simulated steps; best static G in hindsight "
              f"{wi['hindsight_best_g']}\n")
        print(whatif_table(wi))
    print(f"\ntotal runtime {total:.0f} s")
    write_json(opts.out, payload)
    print(f"JSON: {opts.out}")


if __name__ == "__main__":
    main()
