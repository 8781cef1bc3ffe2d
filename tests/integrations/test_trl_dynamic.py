"""DAPO dynamic sampling: all-equal groups are dropped and refilled, within the bound."""

from __future__ import annotations

import numpy as np
import pytest
from trl_helpers import make_config, needs_iterable_datasets, parity_reward
from test_trl_trainer import Recording, ScriptSettings, Scripted, make_trainer

pytestmark = pytest.mark.trl


def prompt_index(prompt: str) -> int:
    return int(prompt.split("+")[0])


def make_reward(log):
    """Prompts i % 4 == 0 always score 1, i % 4 == 1 always 0, the others by completion parity."""

    def reward(prompts, completions, **kwargs):
        fixed = {0: 1.0, 1: 0.0}
        values = [fixed.get(prompt_index(p) % 4, parity_reward([c])[0]) for p, c in zip(prompts, completions)]
        log.append((list(prompts), values))
        return values
    return reward


def all_equal_groups(values, g):
    r = np.asarray(values).reshape(-1, g)
    return int((r.max(axis=1) == r.min(axis=1)).sum())


def test_all_equal_groups_are_dropped_and_refilled(tmp_path, tokenizer):
    calls = []
    config = make_config(tmp_path, max_steps=4, per_device_train_batch_size=8, num_generations=4,
                         scale_rewards="none")  # B = 2 prompts per step
    trainer = make_trainer(tmp_path, tokenizer, Scripted(ScriptSettings(sizes=(4,))), reward=make_reward(calls),
                           cls=Recording, config=config, dynamic_sampling=True, max_refill_rounds=3)
    trainer.train()
    assert "sagc/dynamic/dropped_groups" in trainer.state.log_history[0]

    call = 0
    total_dropped = 0
    for h, scored in zip(trainer.sagc_history, trainer.scored):
        rounds = h["refill_rounds"]
        assert 0 <= rounds <= 3
        step_calls = calls[call:call + 1 + rounds]  # one reward call per generation round
        call += 1 + rounds
        for prompts, _ in step_calls:
            assert all(len(set(prompts[k:k + 4])) == 1 for k in range(0, len(prompts), 4))  # refills contiguous too
        dropped = sum(all_equal_groups(v, 4) for _, v in step_calls)
        assert h["dropped_groups"] == dropped
        assert h["generated_groups"] == sum(len(p) // 4 for p, _ in step_calls)
        total_dropped += dropped
        # the trained batch: B = 2 groups of 4; a padded group (shortfall after the bound) has no tokens
        adv = scored["advantages"].numpy().reshape(-1, 4)
        assert adv.shape == (2, 4)
        masked = scored["completion_mask"].numpy().reshape(2, 4, -1).sum(axis=(1, 2)) == 0
        assert int(masked.sum()) == h["padded_groups"]
        informative = np.abs(adv).sum(axis=1) > 0
        assert np.all(informative | masked)  # every kept group carries signal
        if rounds < 3:
            assert h["padded_groups"] == 0  # refilling stopped because the step was full
    assert call == len(calls)
    assert total_dropped > 0  # half of the prompts always give all-equal rewards


def test_refill_rounds_are_bounded(tmp_path, tokenizer):
    calls = []

    def constant(prompts, completions, **kwargs):
        calls.append(len(prompts))
        return [1.0] * len(prompts)  # every group all-equal: dynamic sampling never fills the step

    config = make_config(tmp_path, max_steps=2, per_device_train_batch_size=4, num_generations=2)
    trainer = make_trainer(tmp_path, tokenizer, Scripted(ScriptSettings(sizes=(2,))), reward=constant,
                           cls=Recording, config=config, dynamic_sampling=True, max_refill_rounds=2)
    trainer.train()
    assert len(calls) == 2 * (1 + 2)  # each step: the first round and exactly 2 refills
    for h, scored in zip(trainer.sagc_history, trainer.scored):
        assert (h["refill_rounds"], h["dropped_groups"], h["padded_groups"]) == (2, 2 + 2 + 2, 2)
        # no tokens in the loss; the token count is floored at 1 so token-normalised losses stay finite
        assert int(scored["completion_mask"].sum()) == 0 and int(scored["num_items_in_batch"]) == 1
    dropped = [e["sagc/dynamic/dropped_groups"] for e in trainer.state.log_history
               if "sagc/dynamic/dropped_groups" in e]
    assert dropped == [6.0, 6.0]


@needs_iterable_datasets
def test_dynamic_sampling_needs_a_map_style_dataset(tmp_path, tokenizer):
    from trl_helpers import build_dataset, build_model

    from sagc.integrations.trl import SAGCGRPOTrainer

    stream = build_dataset().to_iterable_dataset()
    with pytest.raises(ValueError, match="map-style train_dataset"):
        SAGCGRPOTrainer(model=build_model(tokenizer), reward_funcs=parity_reward,
                        args=make_config(tmp_path), train_dataset=stream, processing_class=tokenizer,
                        dynamic_sampling=True)
