"""How well does the simulator's continuous-batching engine model explain real rollout times?

Trains SAGCGRPOTrainer (SAGC choosing G in {2, 4, 8}) on the built-in arithmetic prompts with
the untrained built-in tiny model, once with TRL's default `generate` (static batching: every
row is padded until the longest completion ends) and once with TRL's
`use_transformers_continuous_batching=True`, then fits the engine to each run's rollout trace
(`sagc whatif --engine calibrate`, i.e. sagc.sim.calibrate) and prints the fit's error. The
output layer gets an <eos> bias so completion lengths vary (an untrained model would otherwise
run every completion to the cap, and the lengths would carry no information).

    python bench/bench_whatif_calibration.py [--steps 16 --max-tokens 64 --out bench/results/whatif_calibration.json]

CPU timings on a shared machine are noisy; the figure of merit is the relative RMSE of the fit.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from sagc._io import write_json_atomic  # noqa: E402
from sagc.integrations.trl import SAGCGRPOTrainer  # noqa: E402
from sagc.sim.calibrate import calibrate  # noqa: E402
from sagc.sim.whatif import load_records  # noqa: E402
from sagc.tasks import arith  # noqa: E402
from sagc.tasks.config import ModelConfig, TaskConfig  # noqa: E402
from sagc.tasks.machine import Compute, choose, machine_info, machine_line  # noqa: E402
from sagc.tasks.model import build_model  # noqa: E402
from sagc.tasks.tokenizer import build_tokenizer  # noqa: E402

EOS_BIAS = 4.0  # logit bias of <eos> on the untrained model: lengths spread over [1, max tokens]


def biased_model(tok, seed: int = 0):
    model = build_model(ModelConfig(), tok, seed=seed)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tok.eos_token_id] = EOS_BIAS
    model.lm_head = head
    return model


def run(backend: str, steps: int, max_tokens: int, folder: Path, compute: Compute) -> Path:
    tok = build_tokenizer()
    data = Dataset.from_list(arith.to_records(arith.sample_problems(TaskConfig(), "train", 256, seed=0)))
    extra = {}
    if backend == "cb":
        extra = {"use_transformers_continuous_batching": True,
                 "transformers_continuous_batching_config": {"page_size": 64, "num_blocks": 128,
                                                             "max_batch_tokens": 512}}
    args = GRPOConfig(output_dir=str(folder / backend), max_steps=steps, num_generations=4,
                      per_device_train_batch_size=16, max_completion_length=max_tokens, learning_rate=1e-5,
                      beta=0.0, logging_steps=1, report_to=[], save_strategy="no", seed=0, disable_tqdm=True,
                      **compute.grpo_args(), **extra)
    trace = folder / f"{backend}.jsonl"
    trainer = SAGCGRPOTrainer(model=biased_model(tok), processing_class=tok, reward_funcs=[arith.reward_fn],
                              args=args, train_dataset=data, group_controller={"kind": "sagc"},
                              group_sizes=[2, 4, 8], trace_path=str(trace))
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    trainer.train()
    return trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("bench/results/whatif_calibration.json"))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's choice)")
    a = ap.parse_args()
    compute = choose(threads=a.threads, cuda=False)  # the CPU benchmark: fp32 unless bf16 is faster here
    compute.apply()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("generate", "cb"):
            start = time.perf_counter()
            trace = run(backend, a.steps, a.max_tokens, Path(tmp), compute)
            records, sources = load_records([trace])
            records = records[1:]  # the first step pays one-off warm-up costs
            cal = calibrate(records, sources[1:])
            rows.append({"backend": backend, "steps": cal.steps, "wall_s": time.perf_counter() - start,
                         **cal.summary()})
    print(f"{'backend':<10}{'steps':>6}{'rollout rel RMSE':>18}{'max':>8}{'step rel RMSE':>15}{'max':>8}"
          f"{'s/iter':>10}{'s/seq-iter':>12}")
    for r in rows:
        f = r["fitted"]
        print(f"{r['backend']:<10}{r['steps']:>6}{r['rollout_rel_rmse']:>18.1%}{r['rollout_max_rel_err']:>8.1%}"
              f"{r['step_rel_rmse']:>15.1%}{r['step_max_rel_err']:>8.1%}{f['decode_s_per_iter']:>10.4f}"
              f"{f['decode_s_per_seq']:>12.6f}")
        for note in r["notes"]:
            print(f"  {r['backend']}: {note}")
    machine = machine_info(compute)
    line = machine_line(machine, {r["backend"]: r["steps"] / r["wall_s"] for r in rows})
    print(line)
    write_json_atomic(a.out, {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **machine},
                              "machine_line": line, "steps": a.steps, "max_tokens": a.max_tokens, "runs": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
