"""GPU smoke test: the group size chosen by SAGCGRPOTrainer reaches vLLM's sampling.

Forces G = --sizes on successive steps (a scripted controller) and checks, from what the reward
function receives, that every step generated exactly B prompts x G completions in contiguous
groups, with G distinct samples per prompt (vLLM server mode samples them with n = G; colocate
mode samples G rows per prompt). Prints a table, writes JSON, exits 1 on a failed check.

On a GPU box with vLLM installed (pip install "trl[vllm]"):

    # colocate: vLLM shares the training GPU
    python bench/vllm_smoke.py --mode colocate --model Qwen/Qwen2.5-0.5B-Instruct

    # server: start vLLM on another GPU first, then train on this one
    CUDA_VISIBLE_DEVICES=1 trl vllm-serve --model Qwen/Qwen2.5-0.5B-Instruct &
    CUDA_VISIBLE_DEVICES=0 python bench/vllm_smoke.py --mode server --model Qwen/Qwen2.5-0.5B-Instruct

    # either mode with the SAGC controller deciding G instead of the script
    python bench/vllm_smoke.py --mode colocate --controller sagc --steps 20

    # no GPU, no vLLM: the same checks with transformers generation and a tiny local model
    python bench/vllm_smoke.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sagc  # noqa: E402
from sagc.controllers.base import Controller, Decision  # noqa: E402


@dataclass(frozen=True)
class ScriptSettings:
    sizes: tuple = (2, 4, 8, 4)


class Scripted(Controller):
    """G = sizes[t] at step t."""

    name = "scripted"
    Settings = ScriptSettings

    def _choose(self, allowed, prompts):
        return Decision(group_size=self.settings.sizes[self._state["step"] % len(self.settings.sizes)])


def tiny_model_and_tokenizer():
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = "0123456789+-*=?. abcdefghijklmnopqrstuvwxyzWA"
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *chars])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                  unk_token="<unk>", padding_side="left")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=2))
    return model, tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    ap.add_argument("--mode", choices=["colocate", "server"], default="colocate")
    ap.add_argument("--server-url", default=None, help="vLLM server base URL (server mode; default host:8000)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3, help="colocate mode")
    ap.add_argument("--sizes", default="2,4,8,4", help="scripted G per step")
    ap.add_argument("--controller", choices=["scripted", "sagc"], default="scripted")
    ap.add_argument("--steps", type=int, default=None, help="default: one per scripted size")
    ap.add_argument("--prompts", type=int, default=4, help="B, prompts per step")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: tiny local model, no vLLM")
    ap.add_argument("--out", type=Path, default=Path("bench/results/vllm_smoke.json"))
    args = ap.parse_args()

    from datasets import Dataset
    from trl import GRPOConfig

    from sagc.integrations.trl import SAGCGRPOTrainer
    from sagc.tasks.machine import choose, machine_info, machine_line

    sizes = tuple(int(s) for s in args.sizes.split(","))
    steps = args.steps or len(sizes)
    g0 = 2  # the reference num_generations: B = generation_batch_size / g0
    calls: list[tuple[list, list]] = []

    def reward(prompts, completions, answer, **kwargs):
        calls.append((list(map(str, prompts)), list(map(str, completions))))
        return [float(str(a) in str(c)) for a, c in zip(answer, completions)]

    rows = [{"prompt": f"What is {i} + {i % 9}? Answer with the number only.", "answer": str(i + i % 9)}
            for i in range(512)]
    data = Dataset.from_list(rows)
    config = dict(output_dir="/tmp/sagc_vllm_smoke", per_device_train_batch_size=args.prompts * g0,
                  num_generations=g0, max_completion_length=args.max_tokens, max_steps=steps, logging_steps=1,
                  report_to=[], save_strategy="no", learning_rate=1e-6, beta=0.0, seed=0, temperature=1.0,
                  remove_unused_columns=False)
    # precision and threads: the machine's choice on a CPU (sagc.tasks.machine), bf16 on the GPU
    compute = choose(cuda=False) if args.tiny else choose(bf16=True, cuda=True)
    compute.apply()
    config.update(compute.grpo_args())
    if args.tiny:
        model, tokenizer = tiny_model_and_tokenizer()
    else:
        model, tokenizer = args.model, None
        config.update(use_vllm=True, vllm_mode=args.mode)
        if args.mode == "colocate":
            config.update(vllm_gpu_memory_utilization=args.gpu_memory_utilization)
        elif args.server_url:
            config.update(vllm_server_base_url=args.server_url)
    controller = (Scripted(ScriptSettings(sizes=sizes)) if args.controller == "scripted"
                  else sagc.make("sagc", delta=0.2, V=10.0))
    trainer = SAGCGRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**config), train_dataset=data,
                              processing_class=tokenizer, group_controller=controller,
                              group_sizes=sorted(set(sizes) | {2}), trace_path="/tmp/sagc_vllm_smoke/trace.jsonl")
    trainer.train()

    report, ok = [], True
    for h, (prompts, completions) in zip(trainer.sagc_history, calls):
        g = h["group_size"]
        groups = [prompts[k:k + g] for k in range(0, len(prompts), g)]
        contiguous = all(len(set(grp)) == 1 for grp in groups) and len({grp[0] for grp in groups}) == len(groups)
        distinct = sum(len(set(completions[k:k + g])) for k in range(0, len(completions), g)) / max(len(groups), 1)
        checks = {"rows == B x G": len(prompts) == args.prompts * g, "groups contiguous": contiguous,
                  "scripted G used": args.controller != "scripted" or g == sizes[(h["step"] - 1) % len(sizes)]}
        ok &= all(checks.values())
        report.append({"step": h["step"], "group_size": g, "rows": len(prompts), "groups": len(groups),
                       "mean_distinct_completions_per_group": distinct, "rollout_s": h["rollout_s"],
                       "step_s": h["step_s"], "checks": checks})
    ok &= len(report) == steps
    print(f"{'step':>4} {'G':>3} {'rows':>5} {'distinct/grp':>13} {'rollout s':>10}  checks")
    for r in report:
        flags = ", ".join(f"{k}: {'ok' if v else 'FAIL'}" for k, v in r["checks"].items())
        print(f"{r['step']:>4} {r['group_size']:>3} {r['rows']:>5} {r['mean_distinct_completions_per_group']:>13.2f} "
              f"{r['rollout_s']:>10.3f}  {flags}")
    print("PASS" if ok else "FAIL")
    machine = machine_info(compute)
    seconds = sum(r["step_s"] for r in report)
    line = machine_line(machine, {args.controller: len(report) / seconds if seconds else None})
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"mode": "tiny" if args.tiny else args.mode,
                                    "model": None if args.tiny else args.model, "controller": args.controller,
                                    "pass": ok, "steps": report, "machine": machine, "machine_line": line},
                                   indent=1))
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
