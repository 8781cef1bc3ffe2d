"""Tail control in SAGCGRPOTrainer (issue 21): over-sample, stop early, resume or defer, on both
engines with a tiny model on CPU.

Checked against hand computations: the stale-token weights (sagc.rollout.stale), the per-group
advantages of what is trained, and, end to end, that every trained group is complete and of its
decided size and that no group is trained twice or lost (also across a resume).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_trl_trainer import make_trainer
from trl_helpers import build_dataset, build_model, length_reward, make_config

from sagc.integrations.trl import SAGCGRPOTrainer
from sagc.integrations.trl.engines import run_continuous, run_generate
from sagc.rollout import RolloutPolicy, RolloutSettings
from sagc.rollout.stale import stale_weights
from sagc.trace import read_trace

pytestmark = pytest.mark.trl

CB = {"use_transformers_continuous_batching": True,
      "transformers_continuous_batching_config": {"num_blocks": 32, "page_size": 16, "max_batch_tokens": 256}}


# ---- formulas ---------------------------------------------------------------------------------
def test_stale_weights_match_their_formula():
    version = np.array([[3, 3, 4, 4], [4, 4, -1, -1]])  # row 0 resumed: two tokens of version 3
    now = np.array([[-1.0, -2.0, -1.0, -1.0], [-1.0, -1.0, 0.0, 0.0]])
    sampler = np.array([[-1.5, -0.5, np.nan, np.nan], [np.nan, np.nan, np.nan, np.nan]])
    tis = stale_weights(version, 4, "tis", logp_now=now, logp_sampler=sampler, clip=2.0, clip_low=0.0)
    np.testing.assert_allclose(tis, [[np.exp(0.5), np.exp(-1.5), 1, 1], [1, 1, 0, 0]])
    capped = stale_weights(version, 4, "tis", logp_now=now + 5, logp_sampler=sampler, clip=2.0)
    np.testing.assert_allclose(capped[0, :2], [2.0, 2.0])  # truncated at tis_clip
    np.testing.assert_allclose(stale_weights(version, 4, "mask"), [[0, 0, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_allclose(stale_weights(version, 4, "keep"), [[1, 1, 1, 1], [1, 1, 0, 0]])
    with pytest.raises(ValueError, match="stale_tokens must be one of"):
        stale_weights(version, 4, "ignore")
    with pytest.raises(ValueError, match="finite sampler log-prob"):
        stale_weights(version, 4, "tis", logp_now=now, logp_sampler=np.full((2, 4), np.nan))


def test_close_with_a_cap_trains_the_first_groups_to_complete_and_carries_the_rest():
    policy = RolloutPolicy({"policy": "resume", "over_sample": 2.0})
    plan = policy.plan(1, 2, prompts=2, take_prompts=lambda n: list(range(n)))  # 4 groups of 2
    finished = np.ones(8, dtype=bool)
    order = np.array([6, 7, 0, 1, 4, 5, 2, 3])  # group 1 completes first, then group 3, 2, 0
    out = policy.close(plan, finished, np.full(8, 3), cap=2, finish_order=order)
    assert out.trained_groups.tolist() == [1, 3]
    assert sorted(policy.carried["key"].tolist()) == [0, 2] and out.carried_groups == 2
    with pytest.raises(ValueError, match="cap applies to a short step"):
        full = RolloutPolicy("full")
        p = full.plan(1, 2, 2, lambda n: list(range(n)))
        full.close(p, np.ones(4, bool), np.ones(4), cap=1)


# ---- engines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["generate", "continuous"])
def test_engines_end_the_call_when_the_rule_says_and_keep_the_unfinished_tokens(tokenizer, engine):
    from transformers import ContinuousBatchingConfig, GenerationConfig

    model = build_model(tokenizer).eval()
    inputs = [tokenizer(f"{i}+{i}=")["input_ids"] for i in range(6)]
    config = GenerationConfig(do_sample=True, max_new_tokens=12, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    if engine == "generate":
        res = run_generate(model, inputs, [12, 12, 12, 12, 12, 3], lambda f: f.sum() >= 3,
                           eos={tokenizer.eos_token_id}, pad_token_id=tokenizer.pad_token_id, generation_config=config)
        assert res.finished.sum() >= 3 and len(res.tokens[5]) <= 3
        live = np.flatnonzero(~res.finished)
        assert all(tokenizer.eos_token_id not in res.tokens[i] for i in live)  # unfinished: a prefix, no EOS
    else:
        cb = ContinuousBatchingConfig(num_blocks=32, page_size=16, max_batch_tokens=256)
        res = run_continuous(model, inputs, [12] * 6, lambda f: f.sum() >= 3, generation_config=config, cb_config=cb)
        assert res.finished.sum() >= 3
    for i in np.flatnonzero(res.finished):  # a finished request ended at EOS or at its budget
        assert res.tokens[i][-1] == tokenizer.eos_token_id or len(res.tokens[i]) == 12 or i == 5
    order = res.order[res.finished]
    assert sorted(order.tolist()) == list(range(int(res.finished.sum())))


def test_a_process_with_nothing_to_run_keeps_voting_until_everyone_stops():
    votes = []

    def sync(vote):  # the other processes agree on the third poll
        votes.append(vote)
        return len(votes) == 3

    res = run_continuous(None, [], [], lambda f: True, sync=sync, poll_s=0.0)
    assert votes == [True, True, True] and res.tokens == []
    votes.clear()
    res = run_generate(None, [], [], lambda f: True, eos={1}, pad_token_id=0, sync=sync, max_new_tokens=8)
    assert votes == [True, True, True] and res.tokens == []


# ---- the trainer ----------------------------------------------------------------------------------
class Capture(SAGCGRPOTrainer):
    """Records, per step, TRL's gathered rewards, the row groups, and the scored batch."""

    def _generate_and_score_completions(self, inputs):
        tail = self._tail
        before = {k: dict(v) for k, v in tail.partial.items()} if tail is not None else {}
        out = super()._generate_and_score_completions(inputs)
        rnd = self._round
        self.captured.append({"rewards": rnd.rewards_per_func.copy(), "groups": rnd.tail_layout["row_groups"].copy(),
                              "step": rnd.index, "advantages": out["advantages"].detach().cpu().numpy().copy(),
                              "tool_mask": out["tool_mask"].detach().cpu().numpy().copy(),
                              "completion_mask": out["completion_mask"].detach().cpu().numpy().copy(),
                              "prompt_ids": out["prompt_ids"].cpu(), "prompt_mask": out["prompt_mask"].cpu(),
                              "completion_ids": out["completion_ids"].cpu(), "kept_before": before,
                              "keys": list(rnd.tail["group_keys"]), "info": dict(rnd.tail), "model": [p.detach().clone()
                                                                               for p in self.model.parameters()]})
        return out


def _run(tmp_path, tokenizer, engine: str, rollout, steps: int = 4, **config_kw):
    kw = dict(CB) if engine == "continuous" else {}
    kw.update(config_kw)
    config = make_config(tmp_path, max_steps=steps, max_completion_length=10, per_device_train_batch_size=4,
                         num_generations=2, scale_rewards="group", **kw)  # B = 2 prompts of G = 2 per step
    trainer = make_trainer(tmp_path, tokenizer, "static", reward=length_reward, cls=Capture, config=config,
                           rollout=rollout, trace_path="auto")
    trainer.captured = []
    trainer.train()
    return trainer


def _hand_advantages(rewards: np.ndarray, groups: np.ndarray) -> np.ndarray:
    r = rewards.sum(axis=1)
    adv = np.zeros_like(r)
    for gid in np.unique(groups[groups >= 0]):
        m = groups == gid
        adv[m] = (r[m] - r[m].mean()) / (np.std(r[m], ddof=1) + 1e-4)
    return adv


@pytest.mark.parametrize("engine", ["generate", "continuous"])
@pytest.mark.parametrize("policy", ["resume", "defer"])
def test_tail_control_trains_complete_groups_once_with_hand_checked_advantages(tmp_path, tokenizer, engine, policy):
    rollout = {"policy": policy, "over_sample": 2.0, "stale_tokens": "mask"}
    trainer = _run(tmp_path, tokenizer, engine, rollout)
    hist = trainer.sagc_history
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    trained_keys = []
    for h, cap in zip(hist, trainer.captured):
        groups = cap["groups"]
        sizes = np.bincount(groups[groups >= 0])
        assert sizes.tolist() == [2, 2]  # B = 2 complete groups, each of its decided size G = 2
        assert h["rows"] == 4 and len(h["tail"]["resumed"]) == 4
        np.testing.assert_allclose(cap["advantages"], _hand_advantages(cap["rewards"], groups), rtol=1e-5, atol=1e-6)
        trained_keys += sorted(set(cap["keys"]))
        if policy == "defer":  # on-policy: every trained token was sampled by this step's policy
            assert (cap["tool_mask"][cap["completion_mask"] > 0] == 1).all()
    assert len(trained_keys) == len(set(trained_keys))  # no group trained twice
    tail = trainer._tail
    held = set(tail.policy.carried["key"].tolist()) | set(tail.policy.deferred["key"].tolist())
    assert not held & set(trained_keys)
    created = set(range(tail.policy.next_key))
    if policy == "resume":  # nothing lost: every group created was trained or is still carried
        assert created == set(trained_keys) | held
    else:  # every deferred prompt is trained once, in a later round, or is still waiting
        sent = sum(c["info"]["deferred_prompts"] for c in trainer.captured)
        rerun = sum(sum(c["info"]["deferred"]) for c in trainer.captured) // 2  # rows of G = 2
        assert sent == rerun + tail.policy.deferred["key"].shape[0]
        assert all(c["info"]["kind"] in ("short", "long") for c in trainer.captured)
    records = list(read_trace(trainer.trace_path))
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all("tail" in r for r in records)
    # the prompt length lets `sagc whatif --engine calibrate` price a resumed row's prefill per token
    from sagc.sim.whatif import recorded_prompt_tokens

    assert all(r["prompt_tokens"] > 0 for r in records) and recorded_prompt_tokens(records) > 0


def test_resumed_tokens_are_masked_or_weighted_by_their_formula(tmp_path, tokenizer):
    trainer = _run(tmp_path, tokenizer, "generate", {"policy": "resume", "over_sample": 2.0, "stale_tokens": "tis"},
                   steps=6, bf16=False)  # fp32: the hand forward below matches to float rounding
    checked = 0
    for cap in trainer.captured:
        step, w, cmask = cap["step"], cap["tool_mask"], cap["completion_mask"]
        stale_seen = False
        for (key, idx), kept in cap["kept_before"].items():
            rows = [i for i, k in enumerate(cap["keys"]) if k == key]
            if not rows:
                continue  # carried again (not trained this step)
            stale_seen = True
            n_old = sum(1 for v in kept["version"] if v < step)
            row = rows[idx]
            # an independent forward of the policy being updated (before this step's update), on the
            # row as scored (its left padding included, as TRL's old log-probs are computed)
            model = build_model(trainer.processing_class)
            model.load_state_dict(dict(zip(dict(trainer.model.named_parameters()), cap["model"])))
            with torch.no_grad(), trainer.accelerator.autocast():  # the precision TRL's forward runs in
                p, pm = cap["prompt_ids"][row], cap["prompt_mask"][row]
                c = cap["completion_ids"][row][: int(cmask[row].sum())]
                ids = torch.cat([p, c])[None]
                att = torch.cat([pm, torch.ones_like(c)])[None]
                logits = model(input_ids=ids, attention_mask=att).logits[0, len(p) - 1:-1].float()
                now = torch.log_softmax(logits, -1).gather(1, c[:, None])[:, 0].numpy()
            expect = np.clip(np.exp(now[:n_old] - np.asarray(kept["logp"][:n_old])), 0.0, 2.0)
            np.testing.assert_allclose(w[row, :n_old], expect, rtol=1e-4, atol=1e-5)
            assert (w[row, n_old:int(cmask[row].sum())] == 1).all()  # this step's tokens: on-policy
            checked += 1
        if not stale_seen:
            assert (w[cmask > 0] == 1).all()
    assert checked > 0, "no resumed completion was trained in 6 steps"


def test_auto_at_its_highest_default_rate_trains_complete_groups_once(tmp_path, tokenizer):
    """auto's default grid goes to 4x or more: at its top rate the trainer puts that many x B groups
    in flight and trains at least B groups a step (exactly B unless more are pinned by the
    staleness budget, docs/rollout.md), every one complete, none twice; `batch_growth` logs how
    many over B."""
    top = max(RolloutSettings().over_sample_grid)
    assert top >= 4.0
    trainer = _run(tmp_path, tokenizer, "generate", {"policy": "auto", "over_sample_grid": [top]}, steps=3)
    assert trainer.captured[0]["info"]["submitted"] == int(top * 2) * 2  # 4 x B groups of G = 2, B = 2
    keys = []
    for cap in trainer.captured:
        groups = cap["groups"]
        sizes = np.bincount(groups[groups >= 0])
        assert sizes.size >= 2 and (sizes == 2).all()  # >= B groups, each of its G = 2
        assert cap["info"]["trained_groups"] == sizes.size and cap["info"]["prompts"] == 2
        keys += sorted(set(cap["keys"]))
    assert len(keys) == len(set(keys))
    logged = [h["sagc/tail/batch_growth"] for h in trainer.state.log_history if "sagc/tail/batch_growth" in h]
    grown = [np.bincount(c["groups"][c["groups"] >= 0]).size / 2 for c in trainer.captured]
    assert logged and min(logged) >= 1.0 and max(logged) <= max(grown)


def test_resume_keeps_the_deferred_queue_and_partial_completions(tmp_path, tokenizer):
    rollout = {"policy": "resume", "over_sample": 2.0, "stale_tokens": "mask"}
    extra = dict(save_strategy="steps", save_steps=2)
    first = _run(tmp_path / "a", tokenizer, "generate", rollout, steps=4, **extra)
    out = Path(first.args.output_dir)
    from sagc.integrations.trl import checkpoint as ckpt

    saved = ckpt.read_state(out / "checkpoint-2")["tail"][0]
    config = make_config(tmp_path / "a", max_steps=4, max_completion_length=10, per_device_train_batch_size=4,
                         num_generations=2, scale_rewards="group", **extra)
    resumed = make_trainer(tmp_path / "a", tokenizer, "static", reward=length_reward, cls=Capture, config=config,
                           rollout=rollout, trace_path="auto")
    resumed.captured = []
    loaded = {}
    orig = resumed._load_optimizer_and_scheduler

    def spy(checkpoint):
        orig(checkpoint)
        loaded.update(resumed._tail.state_dict())

    resumed._load_optimizer_and_scheduler = spy
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert loaded["partial"] == saved["partial"] and loaded["pending"] == saved["pending"]
    assert loaded["policy"] == saved["policy"]
    assert [h["step"] for h in resumed.sagc_history] == [3, 4]
    keys_first = [sorted(set(c["keys"])) for c in first.captured]
    keys_resumed = [sorted(set(c["keys"])) for c in resumed.captured]
    assert keys_resumed == keys_first[2:]  # the same groups trained once, as without the interruption
    assert [r["step"] for r in read_trace(resumed.trace_path)] == [1, 2, 3, 4]


def test_tail_control_refuses_what_it_cannot_run(tmp_path, tokenizer):
    config = make_config(tmp_path)
    with pytest.raises(ValueError, match="rollout.over_sample must be a number"):
        make_trainer(tmp_path, tokenizer, "static", config=config, rollout={"policy": "resume", "over_sample": 0.5})
    with pytest.raises(ValueError, match="dynamic_sampling"):
        make_trainer(tmp_path, tokenizer, "static", config=config, rollout="resume", dynamic_sampling=True)
    with pytest.raises(ValueError, match="per-prompt group sizes"):
        make_trainer(tmp_path, tokenizer, {"kind": "sagc", "per_prompt": True}, config=config, rollout="resume")
    with pytest.raises(ValueError, match="unknown rollout policy|rollout.policy must be one of"):
        make_trainer(tmp_path, tokenizer, "static", config=config, rollout="abort")
