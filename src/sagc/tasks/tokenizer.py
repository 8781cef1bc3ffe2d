"""A character-level tokenizer for the arithmetic task, built in code (nothing from a hub).

One token per character of CHARS, plus <pad>, <bos>, <eos>, <unk>. It is a regular
transformers `PreTrainedTokenizerFast` (backed by the `tokenizers` library), so TRL and
`generate` use it like any other: `save_pretrained(dir)` / `load_tokenizer(dir)` round-trip it.

Encoding text adds <bos> in front (TRL 1.x tokenizes plain-text prompts with the tokenizer's
default special tokens, and the warm-start trains on exactly that form); pass
`add_special_tokens=False` to get the characters alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")  # ids 0..3, in this order
CHARS = "0123456789+-*=,.#: \nQA"  # everything the task writes, and a few spare symbols


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # every single character (newline included: "." alone would skip it) becomes one pre-token
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()  # join tokens with no separator
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        padding_side="left",  # batched generation continues from the right edge
        clean_up_tokenization_spaces=False,  # "4 #### 4" must decode to itself
        model_max_length=4096,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | os.PathLike) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return path


def load_tokenizer(directory: str | os.PathLike) -> PreTrainedTokenizerFast:
    path = Path(directory)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path}")
    return PreTrainedTokenizerFast.from_pretrained(str(path))
