"""Supervised warm-start of the tiny model, a checkpoint cache, and a held-out evaluation.

`load_or_train(WarmStartConfig())` returns a policy that a GRPO demo can start from on a laptop
CPU: it knows the scratchpad format and gets a fraction of held-out problems right, but not most
of them, and it sometimes loops until the token cap (it was trained on a few looping targets), so
RL has both accuracy and length to fix.

The checkpoint lives in the user's cache (`$SAGC_CACHE`, else `$XDG_CACHE_HOME/sagc`, else
`~/.cache/sagc`) under `warmstart/ws<FORMAT>-<key>`, key = hash of the whole config and the
format version. It is trained into a temporary folder next to its final place and moved there
with one os.replace, so a crash or a concurrent run never leaves a half-written checkpoint.
Training is reproducible: same config (seed included) and same machine/library versions give
byte-identical weights; `sagc_warmstart.json` in the folder records the weights' sha256.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from sagc.tasks import arith
from sagc.tasks.config import TaskConfig, WarmStartConfig
from sagc.tasks.machine import cache_root, choose
from sagc.tasks.model import build_model, count_params
from sagc.tasks.tokenizer import build_tokenizer, load_tokenizer

FORMAT_VERSION = 1  # bump when training or the folder layout changes: old caches are then ignored
MANIFEST = "sagc_warmstart.json"
WEIGHTS = "model.safetensors"
log = logging.getLogger("sagc.tasks")


# --------------------------------------------------------------------------------------- cache

def resolved(config: WarmStartConfig, threads: int | None = None) -> WarmStartConfig:
    """The config with num_threads set: its own, else `threads` (the caller's choice), else this
    machine's (sagc.tasks.machine), so the cache key names the thread count the weights were
    trained with."""
    if config.num_threads is not None:
        return config
    return dataclasses.replace(config, num_threads=threads or choose(threads=None, cuda=False).threads)


def config_key(config: WarmStartConfig) -> str:
    """16 hex digits identifying (format version, full config, threads resolved); names the cache folder."""
    blob = json.dumps({"format": FORMAT_VERSION, "config": resolved(config).as_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_dir(config: WarmStartConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "warmstart" / f"ws{FORMAT_VERSION}-{config_key(config)}"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _complete(path: Path) -> bool:
    return (path / MANIFEST).is_file() and (path / WEIGHTS).is_file() and (path / "tokenizer.json").is_file()


def load_checkpoint(path: str | os.PathLike) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    path = Path(path)
    if not _complete(path):
        raise FileNotFoundError(f"{path} is not a complete warm-start checkpoint ({MANIFEST}, {WEIGHTS}, "
                                "tokenizer.json expected)")
    model = LlamaForCausalLM.from_pretrained(str(path))
    model.eval()
    return model, load_tokenizer(path)


def _intact(path: Path) -> bool:
    """Complete, and the weights still have the hash recorded when they were written."""
    if not _complete(path):
        return False
    try:
        recorded = json.loads((path / MANIFEST).read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError):
        return False
    return recorded == file_sha256(path / WEIGHTS)


def load_or_train(config: WarmStartConfig | None = None, cache_dir: str | os.PathLike | None = None,
                  retrain: bool = False, progress: Callable[[int, float], None] | None = None,
                  ) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase, Path]:
    """(model in eval mode, tokenizer, checkpoint folder); trains and caches on a miss.

    A cached folder that is incomplete or whose weights no longer match their recorded hash is
    trained again; so is any folder when retrain=True. progress(step, loss) is passed to train().
    """
    config = config or WarmStartConfig()
    final = checkpoint_dir(config, cache_dir)
    if not retrain and _intact(final):
        log.info("warm-start: using cached %s", final)
        model, tokenizer = load_checkpoint(final)
        return model, tokenizer, final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        train(config, tmp, progress=progress)
        if final.exists() and (retrain or not _intact(final)):  # os.replace needs a free name
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / "ckpt")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not _complete(final):  # not "another process finished first": a real failure
                raise
            log.info("warm-start: another process cached %s first; using it", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op once moved
    model, tokenizer = load_checkpoint(final)
    return model, tokenizer, final


# ------------------------------------------------------------------------------------ training

@contextlib.contextmanager
def deterministic_torch(num_threads: int) -> Iterator[None]:
    """Fixed thread count + deterministic kernels for the block; the caller's settings come back."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, on CPU ops without one
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)


def training_texts(config: WarmStartConfig) -> tuple[list[str], list[str], list[bool]]:
    """(prompts, targets, ends) for all steps * batch_size examples, in training order.

    ends[i] is False for looping targets: they are cut at the cap and get no <eos>.
    """
    n = config.steps * config.batch_size
    problems = arith.sample_problems(config.task, "train", n, seed=config.seed)
    rng = np.random.default_rng([config.seed, 0x5A6C])  # noise draws, independent of the problems
    prompts, targets, ends = [], [], []
    for problem in problems:
        u = rng.random()
        if u < config.loop_prob:
            target, end = arith.looping_solution(problem, config.max_completion_tokens), False
        elif u < config.loop_prob + config.error_prob:
            target, end = arith.erroneous_solution(problem, rng), True
        else:
            target, end = problem.solution, True
        prompts.append(problem.prompt)
        targets.append(target)
        ends.append(end)
    return prompts, targets, ends


def pack(prompt_ids: list[list[int]], target_ids: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    """Pack one batch of examples into as few rows as fit, for a forward pass with use_cache=False.

    Lengths are long-tailed, so a right-padded batch is mostly padding up to its one long
    example. Instead, whole examples are placed first-fit (longest first) into rows as wide as the
    longest example, and position_ids restart at 0 for each one: transformers then builds a
    block-diagonal causal mask (no attention across examples), so the loss equals that of the
    padded batch at ~2x less compute. The loss covers target tokens only (labels -100 elsewhere).
    """
    seqs = [p + t for p, t in zip(prompt_ids, target_ids)]
    width = max(len(s) for s in seqs)
    rows: list[list[int]] = []  # example indices per row
    room: list[int] = []  # free tokens per row
    for i in sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i)):
        r = next((r for r, free in enumerate(room) if free >= len(seqs[i])), None)
        if r is None:
            rows.append([])
            room.append(width)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= len(seqs[i])
    ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (rows, width)
    labels = torch.full_like(ids, -100)  # (rows, width)
    # (rows, width) the tail padding counts up from 0 as one more (label-free) sequence
    position = torch.zeros_like(ids)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n, n_prompt = len(seqs[i]), len(prompt_ids[i])
            ids[r, at:at + n] = torch.tensor(seqs[i])
            labels[r, at + n_prompt:at + n] = torch.tensor(target_ids[i])
            position[r, at:at + n] = torch.arange(n)
            at += n
        position[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "position_ids": position, "labels": labels}


def _lr_factor(step: int, config: WarmStartConfig) -> float:
    """Linear warm-up, then cosine decay from 1 to 0.1."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - config.warmup_steps) / span))


def train(config: WarmStartConfig, out_dir: str | os.PathLike,
          progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train from scratch and write model + tokenizer + manifest into out_dir; returns the manifest.

    progress(step, loss) is called after every optimizer step (for a progress bar).
    """
    out = Path(out_dir)
    config = resolved(config)
    started, cpu_started = time.perf_counter(), time.process_time()
    tokenizer = build_tokenizer()
    prompts, targets, ends = training_texts(config)
    prompt_ids = tokenizer(prompts)["input_ids"]  # with <bos>, as TRL tokenizes prompts
    target_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    target_ids = [t + [tokenizer.eos_token_id] if end else t for t, end in zip(target_ids, ends)]
    losses: list[float] = []
    with deterministic_torch(config.num_threads):
        model = build_model(config.model, tokenizer, seed=config.seed)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98),
                                weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
        b = config.batch_size
        for step in range(config.steps):
            batch = pack(prompt_ids[step * b:(step + 1) * b], target_ids[step * b:(step + 1) * b],
                         tokenizer.pad_token_id)
            loss = model(**batch, use_cache=False).loss  # no cache: lets HF see the packing
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
            if step % 50 == 0 or step == config.steps - 1:
                log.info("warm-start step %d/%d loss %.4f", step + 1, config.steps, losses[-1])
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    import transformers  # only for the version string

    manifest = {
        "format": FORMAT_VERSION,
        "key": config_key(config),
        "config": config.as_dict(),
        "weights_sha256": file_sha256(out / WEIGHTS),
        "params": count_params(model),
        "train_seconds": round(time.perf_counter() - started, 2),
        "train_cpu_seconds": round(time.process_time() - cpu_started, 2),
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "loss_every_10": [round(x, 4) for x in losses[::10]],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    tmp = out / (MANIFEST + ".tmp")  # the manifest marks the folder complete: write it last
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, out / MANIFEST)
    return manifest


# ---------------------------------------------------------------------------------- evaluation

def evaluate(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, split: str = "heldout",
             n: int = 256, max_new_tokens: int = 128, sample: bool = False, seed: int = 0, *,
             task: TaskConfig | None = None, temperature: float = 1.0,
             batch_size: int = 64) -> dict[str, Any]:
    """Accuracy and completion lengths of the policy on n problems of a split.

    Greedy by default; sample=True draws at `temperature` (top-k/top-p off) with torch seeded from
    `seed` (the caller's RNG state is restored afterwards). A completion's length counts its
    tokens up to and including <eos>, as TRL's completion mask does; one with no <eos> within
    max_new_tokens is truncated and has length max_new_tokens.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    problems = arith.sample_problems(task or TaskConfig(), split, n, seed=seed)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    lengths: list[int] = []
    rewards: list[float] = []
    truncated: list[bool] = []  # no <eos> within max_new_tokens
    texts: list[str] = []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            chunk = problems[start:start + batch_size]
            enc = tokenizer([p.prompt for p in chunk], return_tensors="pt", padding=True,
                            padding_side="left")
            extra = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} \
                if sample else {"do_sample": False}
            out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                 pad_token_id=pad, **extra)
            new = out[:, enc["input_ids"].shape[1]:].tolist()  # (b, <= max_new_tokens)
            for problem, ids in zip(chunk, new):
                stop = ids.index(eos) + 1 if eos in ids else None
                kept = ids[:stop] if stop else ids[:max_new_tokens]
                text = tokenizer.decode(kept, skip_special_tokens=True)
                lengths.append(stop if stop else max_new_tokens)
                truncated.append(stop is None)
                rewards.append(arith.score(text, problem.answer))
                texts.append(text)
    model.train(was_training)
    length = np.asarray(lengths)  # (n,) tokens
    return {
        "split": split, "n": n, "sample": sample, "temperature": temperature if sample else 0.0,
        "accuracy": float(np.mean(rewards)),
        "mean_length": float(length.mean()),
        "median_length": float(np.median(length)),
        "p90_length": float(np.percentile(length, 90)),
        "truncated_rate": float(np.mean(truncated)),
        "lengths": lengths,
        "truncated": truncated,
        "rewards": rewards,
        "steps": [p.steps for p in problems],
        "completions": texts,
    }
