"""Warm-start: reproducible cached checkpoints, and evaluation (the full run is marked slow)."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sagc.tasks import warmstart as ws  # noqa: E402
from sagc.tasks.config import ModelConfig, TaskConfig, WarmStartConfig  # noqa: E402

pytestmark = pytest.mark.trl

# a few seconds of training: enough to exercise every code path, not to learn the task
SHORT = WarmStartConfig(
    task=TaskConfig(max_steps=6), steps=12, batch_size=16, warmup_steps=2,
    model=ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
)


@pytest.fixture(scope="module")
def short_ckpt(tmp_path_factory):
    return ws.load_or_train(SHORT, cache_dir=tmp_path_factory.mktemp("cache"))


def test_same_seed_same_weights_other_seed_differs(short_ckpt, tmp_path):
    _, _, path = short_ckpt
    manifest = json.loads((path / ws.MANIFEST).read_text())
    assert manifest["weights_sha256"] == ws.file_sha256(path / ws.WEIGHTS)
    _, _, again = ws.load_or_train(SHORT, cache_dir=tmp_path / "a")
    assert ws.file_sha256(again / ws.WEIGHTS) == manifest["weights_sha256"]
    other = replace(SHORT, seed=1)
    _, _, third = ws.load_or_train(other, cache_dir=tmp_path / "b")
    assert ws.file_sha256(third / ws.WEIGHTS) != manifest["weights_sha256"]
    assert third.name != again.name  # the seed is part of the cache key


def test_cache_hit_skips_training_and_leaves_no_temp_dirs(short_ckpt, monkeypatch):
    _, _, path = short_ckpt
    monkeypatch.setattr(ws, "train", lambda *a, **k: pytest.fail("trained despite a cached checkpoint"))
    model, tok, again = ws.load_or_train(SHORT, cache_dir=path.parent.parent)
    assert again == path and not model.training
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_corrupt_or_partial_cache_is_retrained(tmp_path):
    _, _, path = ws.load_or_train(SHORT, cache_dir=tmp_path)
    good = ws.file_sha256(path / ws.WEIGHTS)
    with open(path / ws.WEIGHTS, "ab") as f:
        f.write(b"junk")
    _, _, again = ws.load_or_train(SHORT, cache_dir=tmp_path)
    assert again == path and ws.file_sha256(path / ws.WEIGHTS) == good
    (path / ws.MANIFEST).unlink()  # as if a copy had been cut short
    _, _, again = ws.load_or_train(SHORT, cache_dir=tmp_path)
    assert (again / ws.MANIFEST).is_file() and ws.file_sha256(again / ws.WEIGHTS) == good
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_training_restores_torch_settings(tmp_path):
    threads = torch.get_num_threads()
    cfg = replace(SHORT, steps=2, num_threads=1)
    ws.train(cfg, tmp_path / "ck")
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_cache_location_and_key(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGC_CACHE", str(tmp_path / "s"))
    assert ws.cache_root() == tmp_path / "s"
    monkeypatch.delenv("SAGC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ws.cache_root() == tmp_path / "x" / "sagc"
    keys = {ws.config_key(c) for c in (
        SHORT, replace(SHORT, lr=1e-3),
        replace(SHORT, task=TaskConfig(max_steps=7)),
        replace(SHORT, model=ModelConfig(hidden_size=64)),
    )}
    assert len(keys) == 4 and ws.config_key(SHORT) == ws.config_key(replace(SHORT))


def test_packed_batch_has_the_padded_batch_loss(short_ckpt):
    model, tok, _ = short_ckpt
    prompts, targets, ends = ws.training_texts(SHORT)
    prompts, targets = prompts[:24], targets[:24]
    p_ids = tok(prompts)["input_ids"]
    t_ids = [t + [tok.eos_token_id] for t in tok(targets, add_special_tokens=False)["input_ids"]]
    packed = ws.pack(p_ids, t_ids, tok.pad_token_id)
    rows, width = packed["input_ids"].shape
    assert width == max(len(p) + len(t) for p, t in zip(p_ids, t_ids)) and rows < 24
    assert int((packed["labels"] != -100).sum()) == sum(len(t) for t in t_ids)
    assert int((packed["position_ids"] == 0).sum()) >= 24  # every example restarts its positions
    ids = torch.full((24, width), tok.pad_token_id)  # the plain right-padded batch
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for r, (p, t) in enumerate(zip(p_ids, t_ids)):
        ids[r, :len(p) + len(t)] = torch.tensor(p + t)
        mask[r, :len(p) + len(t)] = 1
        labels[r, len(p):len(p) + len(t)] = torch.tensor(t)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        got = model(**packed, use_cache=False).loss
    assert torch.allclose(got, want, atol=1e-5), (got, want)


def test_evaluate_reports_lengths_and_is_seeded(short_ckpt):
    model, tok, _ = short_ckpt
    kw = dict(split="heldout", n=12, max_new_tokens=24, task=SHORT.task, batch_size=5)
    r = ws.evaluate(model, tok, sample=True, seed=3, **kw)
    assert r["n"] == 12 and len(r["lengths"]) == 12 and 0 <= r["accuracy"] <= 1
    assert all(1 <= x <= 24 for x in r["lengths"])
    assert r["truncated_rate"] == np.mean(r["truncated"])
    assert all(x == 24 for x, t in zip(r["lengths"], r["truncated"]) if t)
    assert ws.evaluate(model, tok, sample=True, seed=3, **kw)["completions"] == r["completions"]
    state = torch.random.get_rng_state()
    ws.evaluate(model, tok, sample=True, seed=4, **kw)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    with pytest.raises(ValueError, match="max_new_tokens"):
        ws.evaluate(model, tok, max_new_tokens=0)


def test_left_padded_generation_matches_unpadded(short_ckpt):
    """TRL generates from left-padded batches; the first token's logits must not depend on padding."""
    model, tok, _ = short_ckpt
    prompts = ["Q: 3+4=\nA: ", "Q: 12+3+9+1+4=\nA: "]
    kw = dict(max_new_tokens=1, do_sample=False, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        batch = model.generate(**tok(prompts, return_tensors="pt", padding=True), **kw).scores[0]
        for i, p in enumerate(prompts):
            single = model.generate(**tok([p], return_tensors="pt"), **kw).scores[0]
            assert torch.allclose(batch[i], single[0], atol=1e-4)


@pytest.mark.slow
def test_full_warm_start_accuracy_band_and_length_tail(tmp_path):
    cfg = WarmStartConfig()
    model, tok, path = ws.load_or_train(cfg, cache_dir=tmp_path)
    greedy = ws.evaluate(model, tok, n=256, max_new_tokens=cfg.max_completion_tokens, sample=False)
    sampled = ws.evaluate(model, tok, n=512, max_new_tokens=cfg.max_completion_tokens, sample=True, seed=1)
    for r in (greedy, sampled):
        assert 0.2 <= r["accuracy"] <= 0.6, r["accuracy"]
    length = np.asarray(sampled["lengths"])
    assert 0 < sampled["truncated_rate"] < 0.2  # some completions run to the cap, most stop
    assert np.percentile(length, 99) >= 2.5 * np.median(length)
