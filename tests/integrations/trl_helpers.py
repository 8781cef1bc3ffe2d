"""Helpers for the TRL integration tests: a tiny model and tokenizer built in code (no hub).

The model is a 2-layer Llama with hidden size 32 over a character-level vocabulary whose output
layer favours <eos>, so a random model writes completions of varied length well before
max_completion_length: the length statistics SAGC feeds on are not all equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from sagc.controllers.base import Controller, Decision  # noqa: E402

import trl  # noqa: E402
from packaging.version import Version  # noqa: E402

# TRL supports iterable (streaming) train sets from 1.14 on
needs_iterable_datasets = pytest.mark.skipif(Version(trl.__version__) < Version("1.14"),
                                             reason="TRL < 1.14 has no IterableDataset support")

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CHARS = list("0123456789+-*=? abcdefghij")
EOS_BIAS = 2.0  # logit bias of <eos>: a random model ends a completion with p ~ 0.2 per token


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token per char
    core.decoder = decoders.Fuse()  # decode without separators
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", padding_side="left")


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    # An output layer with a bias favouring <eos>: completions end at varied lengths well before
    # max_completion_length, so the length statistics SAGC feeds on are not all equal.
    head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = EOS_BIAS
    model.lm_head = head
    return model


def build_dataset(n: int = 64) -> Dataset:
    """Distinct plain-text prompts (contiguity checks compare prompts)."""
    return Dataset.from_dict({"prompt": [f"{i}+{i % 7}=" for i in range(n)]})


def parity_reward(completions, **kwargs):
    """0/1 by the parity of the count of '1' characters: random completions give mixed groups."""
    return [float(c.count("1") % 2) for c in completions]


def length_reward(completions, **kwargs):
    """Continuous reward (length), so groups almost never have all-equal rewards."""
    return [float(len(c)) for c in completions]


def make_config(tmp_path, **overrides) -> GRPOConfig:
    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2,
                    max_completion_length=8, max_steps=4, logging_steps=1, report_to=[], save_strategy="no",
                    use_cpu=True, learning_rate=1e-2, beta=0.0, seed=0, dataloader_num_workers=0,
                    disable_tqdm=True)
    settings.update(overrides)
    return GRPOConfig(**settings)


@dataclass(frozen=True)
class RaggedScript:
    cycle: tuple = (2, 4, 8)  # G_i by position of the prompt in the step (0 = skip)


class ScriptedRagged(Controller):
    """A per-prompt controller: step G 4; cycle[k] for the k-th offered prompt, named up to the
    prefix that keeps `prompts` (as SAGC's per-prompt part does). Records what update() saw."""

    name = "scripted_ragged"
    Settings = RaggedScript

    def _choose(self, allowed, prompts):
        return Decision(group_size=4)

    def _per_prompt(self, decision, allowed, prompts, ids):
        cycle, named = self.settings.cycle, {}
        for k, p in enumerate(ids):
            named[int(p)] = cycle[k % len(cycle)]
            if sum(1 for g in named.values() if g > 0) == prompts:
                break
        return replace(decision, group_sizes=named)

    def _learn_prompts(self, stats, prompt_ids):
        self.__dict__.setdefault("learned", []).append((prompt_ids.tolist(), np.bincount(stats.group_index).tolist()))
