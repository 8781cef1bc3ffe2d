"""Character tokenizer round-trip and the tiny model's size."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from sagc.tasks import arith  # noqa: E402
from sagc.tasks.config import ModelConfig, TaskConfig  # noqa: E402
from sagc.tasks.model import build_model, count_params  # noqa: E402
from sagc.tasks.tokenizer import CHARS, build_tokenizer, load_tokenizer, save_tokenizer  # noqa: E402

pytestmark = pytest.mark.trl


def test_round_trip_every_task_text(tmp_path):
    tok = build_tokenizer()
    texts = [p.prompt + p.solution for p in arith.sample_problems(TaskConfig(), "train", 50, seed=0)]
    texts += [CHARS, " 1  2 ,, ", "\n\nQ:\n"]
    save_tokenizer(tok, tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    for text in texts:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert len(ids) == 1 + len(text)  # <bos>, then one token per character
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert again(text)["input_ids"] == ids
        assert again.decode(ids, skip_special_tokens=True) == text
    plain = tok("1+2", add_special_tokens=False)["input_ids"]
    assert len(plain) == 3 and tok.bos_token_id not in plain
    assert tok.decode(plain + [tok.eos_token_id, tok.pad_token_id], skip_special_tokens=True) == "1+2"
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4
    assert again.padding_side == "left"
    batch = tok(["Q: 1", "Q: 12+3"], padding=True)
    assert batch["attention_mask"][0][0] == 0 and batch["input_ids"][0][0] == tok.pad_token_id


def test_unknown_characters_map_to_unk():
    tok = build_tokenizer()
    ids = tok("x?", add_special_tokens=False)["input_ids"]
    assert ids == [tok.unk_token_id, tok.unk_token_id]


def test_default_model_size_and_seeded_init():
    tok = build_tokenizer()
    model = build_model(ModelConfig(), tok, seed=0)
    assert 1_000_000 <= count_params(model) <= 5_000_000
    assert model.config.eos_token_id == tok.eos_token_id and model.config.vocab_size == len(tok)
    same = build_model(ModelConfig(), tok, seed=0)
    other = build_model(ModelConfig(), tok, seed=1)
    a, b, c = (dict(m.named_parameters()) for m in (model, same, other))
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)
    small = build_model(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), tok)
    assert count_params(small) < count_params(model) / 20
