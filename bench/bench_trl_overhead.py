"""Step-time overhead of SAGCGRPOTrainer over TRL's GRPOTrainer at a fixed group size (CPU).

Target (issue 3): median step time of SAGCGRPOTrainer / GRPOTrainer <= 1.03 at the same G.

Both trainers (plus SAGCGRPOTrainer running the real SAGC controller with a single allowed G,
to show the controller's own cost) train the same tiny Llama in one process, interleaved in
short blocks (alternating order, so drift of the shared machine hits all alike). Each block is
one `train()` call of `--block` steps; the step time is the wall time between consecutive
optimizer-step ends, so it covers everything: data, generation, scoring, backward, optimizer,
our step-boundary work (StepStats, controller update, metrics, trace line) and logging. The
first step of each block (warm-up) is dropped. Completions always run to max length
(min_new_tokens), so generation cost is the same for every trainer and step.

    python bench/bench_trl_overhead.py [--blocks 16 --block 5 --out bench/results/trl_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import sagc  # noqa: E402
from sagc.integrations.trl import SAGCGRPOTrainer  # noqa: E402
from sagc.tasks.machine import Compute, choose, machine_info, machine_line  # noqa: E402

TARGET = 1.03


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *"0123456789+-*= abcdefghij"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", padding_side="left")


def model(tok: PreTrainedTokenizerFast, hidden: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))


def reward(completions, **kwargs):
    return [float(c.count("1") % 2) for c in completions]


class StepClock(TrainerCallback):
    """Wall and CPU clocks at every optimizer-step end; intervals within one train() call are steps.

    CPU time (this process, all threads) is reported next to wall time: on a machine shared with
    other jobs, wall time also measures the neighbours, CPU time only measures us.
    """

    def __init__(self) -> None:
        self.blocks: list[list[tuple[float, float]]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.blocks.append([])

    def on_step_end(self, args, state, control, **kwargs):
        self.blocks[-1].append((time.perf_counter(), time.process_time()))

    def block_steps(self, clock: int) -> list[list[float]]:
        # drop the first step of every block (warm-up after train() set up the run)
        return [[b[clock] - a[clock] for a, b in zip(ends[1:], ends[2:])] for ends in self.blocks]

    def steps(self, clock: int) -> list[float]:
        return [x for block in self.block_steps(clock) for x in block]


def build(kind: str, tok, opts, out_dir: Path, compute: Compute):
    clock = StepClock()
    config = GRPOConfig(output_dir=str(out_dir / kind), per_device_train_batch_size=opts.prompts * opts.group_size,
                        num_generations=opts.group_size, max_completion_length=opts.tokens,
                        generation_kwargs={"min_new_tokens": opts.tokens}, max_steps=opts.block, logging_steps=1,
                        report_to=[], save_strategy="no", learning_rate=1e-3, beta=0.0, seed=0,
                        dataloader_num_workers=0, disable_tqdm=True, **compute.grpo_args())
    data = Dataset.from_dict({"prompt": [f"{i}+{i % 7}=" for i in range(4096)]})
    common = dict(model=model(tok, opts.hidden), reward_funcs=reward, args=config, train_dataset=data,
                  processing_class=tok, callbacks=[clock])
    if kind == "GRPOTrainer":
        trainer = GRPOTrainer(**common)
    elif kind == "SAGCGRPOTrainer":
        trainer = SAGCGRPOTrainer(**common, group_controller="static", group_sizes=[opts.group_size])
    else:  # the SAGC controller itself in the loop, allowed set {G} so G stays fixed
        trainer = SAGCGRPOTrainer(**common, group_controller={"kind": "sagc", "delta": 0.1, "V": 10.0},
                                  group_sizes=[opts.group_size])
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer, clock


def summary(x: list[float]) -> dict:
    a = np.asarray(x) * 1e3
    return {"steps": int(a.size), "median_ms": float(np.median(a)), "mean_ms": float(a.mean()),
            "p10_ms": float(np.percentile(a, 10)), "p90_ms": float(np.percentile(a, 90))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=16, help="interleaved blocks per trainer")
    ap.add_argument("--block", type=int, default=5, help="steps per block (the first is warm-up)")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=16, help="completion length (every completion)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's choice)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: fp32 unless bf16 is measured faster here)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/trl_overhead.json"))
    opts = ap.parse_args()
    compute = choose(bf16=opts.bf16, threads=opts.threads, cuda=False)  # the CPU benchmark
    compute.apply()
    tok = tokenizer()
    kinds = ["GRPOTrainer", "SAGCGRPOTrainer", "SAGCGRPOTrainer+sagc"]
    with tempfile.TemporaryDirectory() as tmp:
        built = {k: build(k, tok, opts, Path(tmp), compute) for k in kinds}
        for block in range(opts.blocks):
            order = kinds if block % 2 == 0 else kinds[::-1]
            for k in order:
                built[k][0].train()
            print(f"block {block + 1}/{opts.blocks} done", file=sys.stderr)
        results = {k: {"wall": summary(built[k][1].steps(0)), "cpu": summary(built[k][1].steps(1))} for k in kinds}
    for clock in ("wall", "cpu"):
        base = results["GRPOTrainer"][clock]["median_ms"]
        for k in kinds:
            results[k][clock]["ratio_to_vanilla"] = results[k][clock]["median_ms"] / base
    ratio = results["SAGCGRPOTrainer"]["wall"]["ratio_to_vanilla"]
    cpu_ratio = results["SAGCGRPOTrainer"]["cpu"]["ratio_to_vanilla"]
    # paired: block k of each trainer ran next to block k of the vanilla one (same minute of machine
    # load), so the median over blocks of the per-block median ratio cancels slow drift
    van_blocks = built["GRPOTrainer"][1].block_steps(0)
    for k in kinds[1:]:
        pairs = [np.median(b) / np.median(v) for b, v in zip(built[k][1].block_steps(0), van_blocks)]
        results[k]["wall"]["paired_block_ratio"] = float(np.median(pairs))
    # sagc's own per-step work, timed inside the trainer (sagc/overhead_s): immune to machine noise
    base_ms = results["GRPOTrainer"]["wall"]["median_ms"]
    for k in kinds[1:]:
        own = summary([h["overhead_s"] for h in built[k][0].sagc_history])
        results[k]["own_overhead"] = {**own, "ratio_to_vanilla": 1.0 + own["median_ms"] / base_ms}
    machine = machine_info(compute)
    line = machine_line(machine, {k: 1e3 / results[k]["wall"]["median_ms"] for k in kinds})
    payload = {
        "benchmark": "trl_overhead", "machine_line": line, "target_ratio": TARGET, "ratio": ratio, "cpu_ratio": cpu_ratio,
        "own_overhead_ratio": results["SAGCGRPOTrainer"]["own_overhead"]["ratio_to_vanilla"],
        "paired_block_ratio": results["SAGCGRPOTrainer"]["wall"]["paired_block_ratio"],
        "meets_target": bool(ratio <= TARGET),
        "setup": {"group_size": opts.group_size, "prompts_per_step": opts.prompts, "completion_tokens": opts.tokens,
                  "hidden_size": opts.hidden, "layers": 2, "blocks": opts.blocks, "steps_per_block": opts.block,
                  "torch_threads": compute.threads, "bf16": compute.bf16},
        "results": results,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "trl": trl.__version__,
                     "transformers": transformers.__version__, "sagc": sagc.__version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **machine},
    }
    print(f"\nG = {opts.group_size}, B = {opts.prompts} prompts, {opts.tokens} tokens per completion, "
          f"hidden {opts.hidden}")
    print(line)
    print(f"{'trainer':<24}{'steps':>7}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'ratio':>8}"
          f"{'cpu median ms':>15}{'cpu ratio':>11}")
    for k in kinds:
        w, c = results[k]["wall"], results[k]["cpu"]
        print(f"{k:<24}{w['steps']:>7}{w['median_ms']:>11.2f}{w['p10_ms']:>9.2f}{w['p90_ms']:>9.2f}"
              f"{w['ratio_to_vanilla']:>8.3f}{c['median_ms']:>15.2f}{c['ratio_to_vanilla']:>11.3f}")
    for k in kinds[1:]:
        print(f"{k}: paired per-block wall ratio (median over blocks) {results[k]['wall']['paired_block_ratio']:.3f}")
    for k in kinds[1:]:
        o = results[k]["own_overhead"]
        print(f"{k}: sagc's own work {o['median_ms']:.2f} ms/step median (p90 {o['p90_ms']:.2f}) "
              f"-> {o['ratio_to_vanilla']:.4f} x the vanilla step")
    print(f"\nSAGCGRPOTrainer / GRPOTrainer, median step wall time = {ratio:.3f} (target <= {TARGET}): "
          f"{'OK' if ratio <= TARGET else 'ABOVE TARGET'}; CPU time ratio {cpu_ratio:.3f}")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=opts.out.parent, prefix=f".{opts.out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, opts.out)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
