"""Per-prompt group sizes in SAGCGRPOTrainer (issue 22): ragged groups on CPU with a tiny model.

The formulas (layout, advantages, loss weights) are checked against hand computations; the
trainer is checked end to end on both engines, against a per-group loss reference, and across a
resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.trainer_callback import PrinterCallback
from trl_helpers import (RaggedScript, build_dataset, build_model, length_reward, make_config, parity_reward,
                         ScriptedRagged)

import sagc
from sagc.integrations.trl import SAGCGRPOTrainer
from sagc.integrations.trl.dynamic import PromptStream
from sagc.integrations.trl.ragged import group_advantages, loss_weights, plan_ragged
from sagc.trace import read_trace

pytestmark = pytest.mark.trl

CB = {"num_blocks": 32, "page_size": 16, "max_batch_tokens": 256}


# ---- formulas ---------------------------------------------------------------------------------
def test_layout_balances_groups_over_processes_and_pads_to_equal_rows():
    layout = plan_ragged(np.array([2, 8, 4, 2, 0]), num_processes=2, multiple=1)
    assert layout.owner.tolist() == [1, 0, 1, 1, -1]  # 8 -> rank 0; 4, 2, 2 -> rank 1 (the lighter one)
    assert layout.rows == 8 and layout.padded_rows == 0
    assert layout.row_slots().tolist() == [1] * 8 + [0] * 2 + [2] * 4 + [3] * 2  # each rank in slot order
    odd = plan_ragged(np.array([4, 2, 2, 2]), num_processes=2, multiple=2)  # loads 6 and 4 (tie: rank 0)
    assert odd.rows == 6 and [odd.padding(r) for r in (0, 1)] == [0, 2] and odd.padded_rows == 2
    assert plan_ragged(np.array([3, 2]), 1, multiple=4).rows == 8  # a multiple of steps_per_generation
    with pytest.raises(ValueError, match="integers >= 0"):
        plan_ragged(np.array([2, -1]), 1, 1)


def test_group_advantages_match_a_hand_computation():
    reward = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 5.0, 5.0])  # groups of 2, 4 and 2 (one padding row)
    group = np.array([0, 0, 1, 1, 1, 1, 2, -1])
    adv = group_advantages(reward[:, None], np.ones(1), group, scale_rewards="group")
    s0 = np.std([1, 0], ddof=1)
    s1 = np.std([1, 1, 0, 0], ddof=1)
    expect = [0.5 / (s0 + 1e-4), -0.5 / (s0 + 1e-4), 0.5 / (s1 + 1e-4), 0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4),
              -0.5 / (s1 + 1e-4), 0.0, 0.0]  # a group of one finite reward: NaN std, advantage 0
    np.testing.assert_allclose(adv, expect, rtol=1e-12)
    none = group_advantages(reward[:, None], np.ones(1), group, scale_rewards="none")
    np.testing.assert_allclose(none, [0.5, -0.5, 0.5, 0.5, -0.5, -0.5, 0.0, 0.0])
    batch = group_advantages(reward[:, None], np.ones(1), group, scale_rewards="batch")
    np.testing.assert_allclose(batch[:6], none[:6] / (np.std(reward[:7], ddof=1) + 1e-4))
    # NaN rewards (no reward function applied) are left out of the group mean and get advantage 0
    two = np.array([[1.0, np.nan], [np.nan, np.nan], [0.0, 2.0], [np.nan, 1.0]])
    adv2 = group_advantages(two, np.array([1.0, 0.5]), np.array([0, 0, 0, 0]), scale_rewards="none")
    summed = np.array([1.0, np.nan, 1.0, 0.5])
    np.testing.assert_allclose(adv2, [1 - 2.5 / 3, 0.0, 1 - 2.5 / 3, 0.5 - 2.5 / 3])
    assert np.isnan(summed[1])


def test_group_advantages_equal_trls_on_equal_groups():
    # TRL's own formula (trl.trainer.utils.nanstd) on groups of 4: the ragged code must agree
    from trl.trainer.utils import nanstd

    rng = np.random.default_rng(0)
    r = rng.integers(0, 2, size=(6, 4)).astype(float)
    t = torch.tensor(r)
    trl_adv = ((t - t.mean(1, keepdim=True)) / (nanstd(t, dim=1, keepdim=True) + 1e-4)).nan_to_num(0.0).ravel()
    ours = group_advantages(r.reshape(-1, 1), np.ones(1), np.repeat(np.arange(6), 4), scale_rewards="group")
    np.testing.assert_allclose(ours, trl_adv.numpy(), rtol=1e-6)


def test_loss_weights():
    group = np.array([0, 0, 1, 1, 1, 1, -1, -1])  # sizes 2 and 4, two padding rows
    np.testing.assert_allclose(loss_weights(group, "prompt", "dapo"), [1.5, 1.5, 0.75, 0.75, 0.75, 0.75, 0, 0])
    np.testing.assert_allclose(loss_weights(group, "prompt", "grpo"), [2, 2, 1, 1, 1, 1, 0, 0])  # x 8 / 6
    np.testing.assert_allclose(loss_weights(group, "completion", "dapo"), [1] * 6 + [0, 0])
    np.testing.assert_allclose(loss_weights(group, "completion", "grpo"), [8 / 6] * 6 + [0, 0])
    equal = np.repeat(np.arange(3), 4)
    for mode in ("prompt", "completion"):
        for loss in ("grpo", "dapo", "dr_grpo", "bnpo"):
            np.testing.assert_allclose(loss_weights(equal, mode, loss), 1.0)  # TRL's batch unchanged
    with pytest.raises(ValueError, match="ragged_weight"):
        loss_weights(group, "row", "grpo")


# ---- the trainer ------------------------------------------------------------------------------
class Recording(SAGCGRPOTrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.scored.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in out.items()})
        return out


def index_of(prompt: str) -> int:
    return int(prompt.split("+")[0])  # build_dataset: row i is f"{i}+{i % 7}="


def make_trainer(tmp_path, tokenizer, controller, config, calls, cls=Recording, score=parity_reward, **kw):
    def reward(prompts, completions, **kwargs):
        values = score(completions)
        calls.append((list(prompts), values, list(kwargs.get("sagc_prompt_id", []))))
        return values

    trainer = cls(model=build_model(tokenizer), reward_funcs=reward, args=config, train_dataset=build_dataset(),
                  processing_class=tokenizer, group_controller=controller, max_group_size=8, **kw)
    trainer.remove_callback(PrinterCallback)
    trainer.scored = []
    return trainer


@pytest.mark.parametrize("engine", ["generate", "continuous_batching"])
def test_groups_of_2_4_and_8_in_one_step(tmp_path, tokenizer, engine):
    extra = {} if engine == "generate" else dict(use_transformers_continuous_batching=True,
                                                 transformers_continuous_batching_config=dict(CB))
    config = make_config(tmp_path, max_steps=3, per_device_train_batch_size=6, num_generations=2,
                         loss_type="grpo", **extra)  # B = 6 / 2 = 3 prompts per step
    calls, controller = [], ScriptedRagged()
    trainer = make_trainer(tmp_path, tokenizer, controller, config, calls, trace_path=str(tmp_path / "t.jsonl"))
    trainer.train()

    assert len(calls) == 3 and [h["group_sizes"] for h in trainer.sagc_history] == [[2, 4, 8]] * 3
    for (prompts, rewards, ids), scored, hist in zip(calls, trainer.scored, trainer.sagc_history):
        assert len(prompts) == 14 and hist["padded_rows"] == 0 and hist["rows"] == 14
        groups = [prompts[0:2], prompts[2:6], prompts[6:14]]
        assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == 3
        assert ids == [index_of(p) for p in prompts]  # the id column is the dataset index
        assert hist["prompt_ids"] == [index_of(g[0]) for g in groups]
        # advantages: per group (r - mean) / (std + 1e-4), times the prompt weight 14 / (3 G_i)
        r = np.asarray(rewards)
        expect = []
        for lo, hi in ((0, 2), (2, 6), (6, 14)):
            x = r[lo:hi]
            std = np.std(x, ddof=1)
            expect += list((x - x.mean()) / (std + 1e-4) * 14 / (3 * (hi - lo)))
        np.testing.assert_allclose(scored["advantages"].numpy(), expect, rtol=1e-5, atol=1e-6)
    # the controller learned one entry per group, with the group's prompt id and size
    assert [sizes for _, sizes in controller.learned] == [[2, 4, 8]] * 3
    assert [ids for ids, _ in controller.learned] == [h["prompt_ids"] for h in trainer.sagc_history]
    trace = list(read_trace(tmp_path / "t.jsonl"))
    assert [[len(g["lengths"]) for g in rec["groups"]] for rec in trace] == [[2, 4, 8]] * 3
    assert trace[0]["groups"][2]["id"] == f"s1-p{trainer.sagc_history[0]['prompt_ids'][2]}"
    if engine == "generate":  # `sagc whatif` replays a ragged trace
        from sagc.sim.whatif import run_whatif

        result = run_whatif([tmp_path / "t.jsonl"], engine="calibrate", group_sizes=[2, 4, 8], steps=6)
        assert result["recorded"]["steps"] == 3 and len(result["sim"]["controllers"]) >= 3


@pytest.mark.parametrize("engine", ["generate", "continuous_batching"])
def test_a_skipped_prompt_is_replaced_by_the_next_kept_candidate(tmp_path, tokenizer, engine):
    """B = 3 dealt prompts sized (0, 4, 2); the candidates continue the cycle (0, 4, ...): the first
    is skipped, the second takes the skipped prompt's place, so the step still trains B prompts."""
    extra = {} if engine == "generate" else dict(use_transformers_continuous_batching=True,
                                                 transformers_continuous_batching_config=dict(CB))
    config = make_config(tmp_path, max_steps=2, per_device_train_batch_size=6, num_generations=2, **extra)
    calls = []
    trainer = make_trainer(tmp_path, tokenizer, ScriptedRagged(RaggedScript(cycle=(0, 4, 2))), config, calls)
    offered = []
    decide = trainer.group_controller.decide

    def spy(allowed, prompts=None, prompt_ids=None):
        offered.append(list(prompt_ids))
        return decide(allowed, prompts=prompts, prompt_ids=prompt_ids)

    trainer.group_controller.decide = spy
    stream = trainer._lookahead.stream
    trainer.train()
    assert len(offered) == 2  # each: B dealt + up to 3 x B candidates (prompt_lookahead 4), checked below
    hist = trainer.sagc_history
    assert [h["group_sizes"] for h in hist] == [[4, 2, 4]] * 2
    assert [(h["skipped_prompts"], h["replaced_prompts"]) for h in hist] == [(2, 1)] * 2
    assert [len(p) for p, _, _ in calls] == [10, 10]
    for o, h in zip(offered, hist):  # the trained prompts: the dealt 2nd and 3rd, then the 5th offered
        assert h["prompt_ids"] == [o[1], o[2], o[4]] and not set(o[:3]) & set(o[3:])
    # candidates are the stream's next rows (the id is the row), less the step's dealt prompts; the
    # second step's start right after the last candidate the first step's prefix reached
    seq = PromptStream(64, config.seed + 2).take(64)
    start = 0
    for o in offered:
        assert o[3:] == [p for p in seq[start:start + 9] if p not in o[:3]]
        start = seq.index(o[4]) + 1
    assert stream.state_dict()["cursor"] == start

    # prompt_lookahead=1: the dealt prompts only, so a skip makes the step smaller
    only = make_trainer(tmp_path / "one", tokenizer, ScriptedRagged(RaggedScript(cycle=(0, 4, 2))),
                        make_config(tmp_path / "one", max_steps=2, per_device_train_batch_size=6, num_generations=2),
                        calls := [], prompt_lookahead=1)
    only.train()
    assert only._lookahead is None and [len(p) for p, _, _ in calls] == [6, 6]
    assert [(h["skipped_prompts"], h["replaced_prompts"]) for h in only.sagc_history] == [(1, 0)] * 2
    assert [h["group_sizes"] for h in only.sagc_history] == [[4, 2]] * 2
    everything_skipped = make_trainer(tmp_path / "b", tokenizer, ScriptedRagged(RaggedScript(cycle=(0,))),
                                      make_config(tmp_path / "b", max_steps=1, per_device_train_batch_size=6,
                                                  num_generations=2), calls := [])
    everything_skipped.train()  # a step never trains nothing: the first prompt runs at the step's G
    assert [len(p) for p, _, _ in calls] == [4] and everything_skipped.sagc_history[0]["group_sizes"] == [4]


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_loss_gradient_equals_the_per_group_reference(tmp_path, tokenizer, loss_type):
    """The ragged batch's loss gradient = per-prompt-weighted sum of each group's TRL loss at its own G."""
    config = make_config(tmp_path, max_steps=1, per_device_train_batch_size=6, num_generations=2,
                         loss_type=loss_type, bf16=False)  # fp32: bf16 autocast differs by batch composition
    trainer = make_trainer(tmp_path, tokenizer, ScriptedRagged(), config, [], score=length_reward)  # mixed groups
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = next(iter(trainer.get_train_dataloader()))
    out = trainer._generate_and_score_completions(batch)
    sizes = [2, 4, 8]
    bounds = np.cumsum([0] + sizes)

    def grads(loss):
        trainer.model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.ravel() for p in trainer.model.parameters() if p.grad is not None]).clone()

    full = grads(trainer._compute_loss(trainer.model, out))
    # reference: each group alone, with TRL's own advantages at G_i (no weights), then combined
    raw = group_advantages(trainer._round.rewards_per_func, np.ones(1), np.repeat(np.arange(3), sizes))
    tokens = out["completion_mask"].sum(dim=1)
    total = 0.0
    for k, g in enumerate(sizes):
        rows = torch.arange(bounds[k], bounds[k + 1])
        sub = {key: (v.index_select(0, rows) if torch.is_tensor(v) and v.dim() > 0 else v) for key, v in out.items()}
        sub["advantages"] = torch.as_tensor(raw[bounds[k]:bounds[k + 1]], dtype=out["advantages"].dtype)
        sub["num_items_in_batch"] = tokens[rows].sum()
        loss_k = trainer._compute_loss(trainer.model, sub)
        if loss_type == "grpo":  # row mean: every prompt weighs 1 / B
            total = total + loss_k / 3
        else:  # token sum / all tokens, each group as if it had the mean size 14 / 3
            total = total + loss_k * (14 / 3 / g) * tokens[rows].sum() / tokens.sum()
    reference = grads(total)
    assert full.abs().max() > 1e-6  # a real gradient, not two zeros
    torch.testing.assert_close(full, reference, rtol=1e-4, atol=1e-7)


def test_resume_keeps_the_per_prompt_state(tmp_path, tokenizer):
    def run(**kw):
        config = make_config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2,
                             per_device_train_batch_size=6, num_generations=2)
        return make_trainer(tmp_path, tokenizer, sagc.make("sagc", per_prompt=True, seed=0), config, [],
                            cls=SAGCGRPOTrainer, **kw)

    first = run()
    first.train()
    saved = json.loads((Path(first.args.output_dir) / "checkpoint-2" / "sagc_state.json").read_text())
    table = saved["controller"]["state"]["prompts"]
    assert len(table["id"]) == 6  # two steps of three prompts, each learned under its dataset index
    resumed = run()
    resumed.train(resume_from_checkpoint=str(Path(first.args.output_dir) / "checkpoint-2"))
    assert [h["step"] for h in resumed.sagc_history] == [3, 4]
    assert [h["prompt_ids"] for h in resumed.sagc_history] == [h["prompt_ids"] for h in first.sagc_history[2:]]
    # the per-prompt table came back and learned the same steps (the rest of SAGC's state holds timings)
    assert resumed.group_controller.state_dict()["state"]["prompts"] == \
        first.group_controller.state_dict()["state"]["prompts"]
    assert saved["lookahead"]["size"] == 64 and saved["lookahead"]["cursor"] == 0  # no skips: nothing consumed


def test_resume_offers_the_same_candidates(tmp_path, tokenizer):
    """Every step skips a dealt prompt and trains a candidate in its place: the candidate stream's
    position is saved with the checkpoint, so a resumed run trains the same prompts."""
    def run():
        config = make_config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2,
                             per_device_train_batch_size=6, num_generations=2)
        return make_trainer(tmp_path, tokenizer, ScriptedRagged(RaggedScript(cycle=(0, 4, 2))), config, [])

    first = run()
    first.train()
    saved = json.loads((Path(first.args.output_dir) / "checkpoint-2" / "sagc_state.json").read_text())
    assert saved["lookahead"]["cursor"] >= 4  # two steps, each used up at least two candidates
    resumed = run()
    resumed.train(resume_from_checkpoint=str(Path(first.args.output_dir) / "checkpoint-2"))
    assert [h["replaced_prompts"] for h in first.sagc_history] == [1] * 4
    assert [h["prompt_ids"] for h in resumed.sagc_history] == [h["prompt_ids"] for h in first.sagc_history[2:]]
    assert resumed._lookahead.stream.state_dict() == first._lookahead.stream.state_dict()


def test_bad_per_prompt_settings_are_named_errors(tmp_path, tokenizer):
    config = make_config(tmp_path, per_device_train_batch_size=6, num_generations=2)
    with pytest.raises(ValueError, match="dynamic sampling inside a step"):
        make_trainer(tmp_path, tokenizer, "dapo", config, [])
    with pytest.raises(ValueError, match="group_mode='fixed_prompts'"):
        make_trainer(tmp_path, tokenizer, ScriptedRagged(), config, [], group_mode="fixed_completions")
    with pytest.raises(ValueError, match="dynamic_sampling=False"):
        make_trainer(tmp_path, tokenizer, ScriptedRagged(), config, [], dynamic_sampling=True)
    with pytest.raises(ValueError, match="ragged_weight must be"):
        make_trainer(tmp_path, tokenizer, ScriptedRagged(), config, [], ragged_weight="rows")
    with pytest.raises(ValueError, match="prompt_lookahead must be an integer >= 1"):
        make_trainer(tmp_path, tokenizer, ScriptedRagged(), config, [], prompt_lookahead=0)
    bad_ids = build_dataset().add_column("sagc_prompt_id", ["x"] * 64)
    with pytest.raises(ValueError, match="'sagc_prompt_id' must hold integer ids"):  # read up front for the lookahead
        SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=config, train_dataset=bad_ids,
                        processing_class=tokenizer, group_controller=ScriptedRagged(), max_group_size=8)
    trainer = SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=config,
                              train_dataset=bad_ids, processing_class=tokenizer, group_controller=ScriptedRagged(),
                              max_group_size=8, prompt_lookahead=1)
    with pytest.raises(ValueError, match="'sagc_prompt_id' must hold integer ids"):  # the dealt slots' ids
        trainer.train()
    streamed = bad_ids.remove_columns("sagc_prompt_id").add_column("sagc_prompt_id", list(range(64)))
    with pytest.raises(ValueError, match="prompt_lookahead > 1 .* map-style"):
        SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward, args=config,
                        train_dataset=streamed.to_iterable_dataset(), processing_class=tokenizer,
                        group_controller=ScriptedRagged(), max_group_size=8)
