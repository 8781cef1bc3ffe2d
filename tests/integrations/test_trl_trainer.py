"""SAGCGRPOTrainer on CPU with a tiny model: G per step, group layout, advantages, errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from transformers.trainer_callback import PrinterCallback
from trl_helpers import (build_dataset, build_model, length_reward, make_config, needs_iterable_datasets,
                      parity_reward)

import sagc
from sagc.controllers.base import Controller, Decision
from sagc.integrations.trl import SAGCGRPOTrainer

pytestmark = pytest.mark.trl


@dataclass(frozen=True)
class ScriptSettings:
    sizes: tuple = (2, 4, 8, 4, 2)


class Scripted(Controller):
    """Forces G = sizes[t] at step t (a real Controller: update/state_dict come from the base)."""

    name = "scripted"
    Settings = ScriptSettings

    def _choose(self, allowed, prompts):
        return Decision(group_size=self.settings.sizes[self._state["step"] % len(self.settings.sizes)])


class Recording(SAGCGRPOTrainer):
    """Keeps what TRL scored each step (test-only: the trainer itself stores nothing of this)."""

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.scored.append({k: v.detach().clone() for k, v in out.items() if torch.is_tensor(v)})
        return out


def recording_reward(log):
    def reward(prompts, completions, **kwargs):
        values = parity_reward(completions)
        log.append((list(prompts), values))
        return values
    return reward


def make_trainer(tmp_path, tokenizer, controller, reward=parity_reward, cls=SAGCGRPOTrainer, config=None, **kw):
    config = config or make_config(tmp_path)
    trainer = cls(model=build_model(tokenizer), reward_funcs=reward, args=config, train_dataset=build_dataset(),
                  processing_class=tokenizer, group_controller=controller, **kw)
    trainer.remove_callback(PrinterCallback)  # keep the per-step log dicts out of the test output
    if cls is Recording:
        trainer.scored = []
    return trainer


def test_scripted_group_sizes_give_contiguous_groups_and_per_group_advantages(tmp_path, tokenizer):
    calls = []
    config = make_config(tmp_path, max_steps=5, scale_rewards="none", per_device_train_batch_size=4,
                         num_generations=2)  # B = 4 / 2 = 2 prompts per step
    trainer = make_trainer(tmp_path, tokenizer, Scripted(), reward=recording_reward(calls), cls=Recording,
                           config=config, max_group_size=8)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()

    sizes = [2, 4, 8, 4, 2]
    assert [h["group_size"] for h in trainer.sagc_history] == sizes
    assert len(calls) == len(sizes) and len(trainer.scored) == len(sizes)
    for g, (prompts, rewards), scored in zip(sizes, calls, trainer.scored):
        assert len(prompts) == 2 * g  # rows grow with G: B = 2 prompts, G completions each
        groups = [prompts[k:k + g] for k in range(0, len(prompts), g)]
        assert all(len(set(grp)) == 1 for grp in groups)  # contiguous, exactly G rows per prompt
        assert len({grp[0] for grp in groups}) == len(groups)  # one group per prompt
        r = np.asarray(rewards).reshape(-1, g)
        adv = scored["advantages"].numpy().reshape(-1, g)
        np.testing.assert_allclose(adv.sum(axis=1), 0.0, atol=1e-5)  # scale_rewards="none": r - group mean
        np.testing.assert_allclose(adv, r - r.mean(axis=1, keepdims=True), atol=1e-5)
    logged = [e["sagc/group_size"] for e in trainer.state.log_history if "sagc/group_size" in e]
    assert logged == sizes
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))


def test_fixed_completions_keeps_rows_and_varies_prompts(tmp_path, tokenizer):
    calls = []
    config = make_config(tmp_path, max_steps=3, per_device_train_batch_size=8, num_generations=2)
    trainer = make_trainer(tmp_path, tokenizer, Scripted(ScriptSettings(sizes=(2, 4, 8))),
                           reward=recording_reward(calls), config=config, group_mode="fixed_completions",
                           max_group_size=8)
    assert trainer.group_layout.allowed == (2, 4, 8)
    trainer.train()
    assert [len(p) for p, _ in calls] == [8, 8, 8]
    assert [h["prompts"] for h in trainer.sagc_history] == [4, 2, 1]
    assert [h["skipped_prompts"] for h in trainer.sagc_history] == [0, 2, 3]  # sampler deals 8 / 2 = 4 slots
    for g, (prompts, _) in zip((2, 4, 8), calls):
        assert all(len(set(prompts[k:k + g])) == 1 for k in range(0, 8, g))


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo", "bnpo"])
def test_dapo_settings_and_loss_types_train(tmp_path, tokenizer, loss_type):
    # clip-higher (epsilon_high) and overlong masking (mask_truncated_completions) as in DAPO
    config = make_config(tmp_path, max_steps=2, loss_type=loss_type, epsilon_high=0.28,
                         mask_truncated_completions=True)
    trainer = make_trainer(tmp_path, tokenizer, Scripted(ScriptSettings(sizes=(4, 2))), reward=length_reward,
                           config=config, max_group_size=4)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert trainer.loss_type == loss_type and [h["group_size"] for h in trainer.sagc_history] == [4, 2]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(np.isfinite(losses))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))


class OffListController:
    """Duck-typed controller (not a sagc.Controller) that returns a size it was not offered."""

    def decide(self, allowed, prompts=None):
        return Decision(group_size=3)

    def update(self, stats):
        return None


class OffListSubclass(Controller):
    name = "off-list"
    Settings = ScriptSettings

    def _choose(self, allowed, prompts):
        return Decision(group_size=3)


def test_group_size_outside_the_allowed_set_is_a_clear_error(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, OffListController(), group_sizes=[2, 4])
    with pytest.raises(ValueError, match=r"chose G=3.*allowed sizes are \[2, 4\]"):
        trainer.train()
    trainer = make_trainer(tmp_path, tokenizer, OffListSubclass(), group_sizes=[2, 4])
    with pytest.raises(RuntimeError, match=r"chose G=3, not in allowed \[2, 4\]"):
        trainer.train()


def test_incompatible_batch_settings_fail_at_construction(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        make_trainer(tmp_path, tokenizer, "static",
                     config=make_config(tmp_path, gradient_accumulation_steps=2, steps_per_generation=1,
                                        per_device_train_batch_size=4))
    with pytest.raises(ValueError, match=r"G=3: .*not a whole number of groups"):
        make_trainer(tmp_path, tokenizer, "static", group_mode="fixed_completions", group_sizes=[2, 3])
    with pytest.raises(ValueError, match="group_mode"):
        make_trainer(tmp_path, tokenizer, "static", group_mode="prompts")


def test_controller_specs(tmp_path, tokenizer):
    assert make_trainer(tmp_path, tokenizer, None).group_controller.settings.group_size == 2  # num_generations
    assert make_trainer(tmp_path, tokenizer, "sagc").group_controller.name == "sagc"
    ctrl = make_trainer(tmp_path, tokenizer, {"kind": "static", "group_size": 4}).group_controller
    assert (ctrl.name, ctrl.settings.group_size) == ("static", 4)
    with pytest.raises(ValueError, match="unknown controller"):
        make_trainer(tmp_path, tokenizer, "nope")
    with pytest.raises(TypeError, match="group_controller"):
        make_trainer(tmp_path, tokenizer, 42)


def test_static_controller_matches_vanilla_layout(tmp_path, tokenizer):
    # with a static controller at num_generations the sampler is TRL's own
    trainer = make_trainer(tmp_path, tokenizer, sagc.make("static", group_size=2))
    sampler = trainer._get_train_sampler()
    assert (sampler.mini_repeat_count, sampler.batch_size) == (2, 2)
    assert trainer.num_generations == 2


@pytest.mark.parametrize("settings, rounds", [
    ({"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}, 4),  # G rows per micro-batch
    ({"num_iterations": 2}, 2),  # one generation round serves two optimizer steps
])
def test_rounds_follow_trl_generation_schedule(tmp_path, tokenizer, settings, rounds):
    calls = []
    config = make_config(tmp_path, max_steps=4, **settings)
    trainer = make_trainer(tmp_path, tokenizer, Scripted(ScriptSettings(sizes=(2, 4, 8, 4))),
                           reward=recording_reward(calls), config=config, max_group_size=8)
    trainer.train()
    sizes = [2, 4, 8, 4][:rounds]
    assert [h["group_size"] for h in trainer.sagc_history] == sizes
    assert [len(p) for p, _ in calls] == [2 * g for g in sizes]  # B = 2 prompts per round
    per_round = 4 // rounds
    assert [h["global_step"] for h in trainer.sagc_history] == [per_round * (k + 1) for k in range(rounds)]


@needs_iterable_datasets
def test_iterable_dataset_and_evaluation(tmp_path, tokenizer):
    calls = []
    config = make_config(tmp_path, max_steps=3, eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=4)
    trainer = SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=recording_reward(calls), args=config,
                              train_dataset=build_dataset().to_iterable_dataset(),
                              eval_dataset=build_dataset(8), processing_class=tokenizer,
                              group_controller=Scripted(ScriptSettings(sizes=(4, 2, 6))), max_group_size=8)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    assert [h["group_size"] for h in trainer.sagc_history] == [4, 2, 6]
    rows = [len(p) for p, _ in calls]
    # training: 2 prompts x G = 4, 2, 6 rows; evaluation (after steps 2 and 3): batches of 4 rows at
    # TRL's own num_generations_eval = 2, untouched by the controller
    assert rows[:2] == [8, 4] and rows.count(12) == 1 and set(rows) == {4, 8, 12} and rows.index(12) > 2
    assert any("eval_loss" in e for e in trainer.state.log_history)
    for prompts, _ in calls:
        g = len(prompts) // len(set(prompts))
        assert all(len(set(prompts[k:k + g])) == 1 for k in range(0, len(prompts), g))
