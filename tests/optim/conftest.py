"""Fixtures for sagc.optim tests: a tiny Llama built in code (no hub, no tokenizer)."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread is faster and leaves the shared cores alone


@pytest.fixture
def tiny_llama():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def build(seed: int = 0):
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                          tie_word_embeddings=False)
        return transformers.LlamaForCausalLM(config)

    return build
