"""Allowed group sizes, option validation and the dynamic-sampling helpers (no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sagc.integrations.trl.dynamic import PromptStream, informative_groups, join_groups, select_groups
from sagc.integrations.trl.layout import BatchSettings, GroupOptions, plan_layout


def batch(**kw) -> BatchSettings:
    base = dict(num_generations=4, generation_batch_size=16, steps_per_generation=1, gradient_accumulation_steps=1,
                num_iterations=1, num_processes=1)
    base.update(kw)
    return BatchSettings(**base)


def test_fixed_prompts_allows_every_size_that_splits_into_micro_batches():
    lay = plan_layout(batch(steps_per_generation=4, generation_batch_size=16, gradient_accumulation_steps=4),
                      GroupOptions())
    # B = 16 / 4 = 4 prompts per step; 4 * G rows split into 4 micro-batches for every G
    assert lay.allowed == tuple(range(2, 9))
    assert set(lay.prompts_per_step.values()) == {4}
    assert (lay.slot_repeat, lay.sampler_prompts) == (4, 4)
    lay = plan_layout(batch(num_generations=2, generation_batch_size=8, steps_per_generation=4,
                            gradient_accumulation_steps=4), GroupOptions(max_group_size=8))
    # B = 8 / 2 = 4 prompts: 4 * G rows always split into 4 micro-batches
    assert lay.allowed == tuple(range(2, 9))
    lay = plan_layout(batch(num_generations=4, generation_batch_size=8, steps_per_generation=4,
                            gradient_accumulation_steps=4), GroupOptions())
    # B = 2: 2 * G must be divisible by 4, so only even G
    assert lay.allowed == (2, 4, 6, 8)


def test_fixed_completions_allows_divisors_of_the_per_process_rows():
    lay = plan_layout(batch(generation_batch_size=24, num_processes=2), GroupOptions(group_mode="fixed_completions",
                                                                                  max_group_size=12))
    assert lay.allowed == (2, 3, 4, 6, 12)  # divisors of 24 / 2 = 12
    assert lay.prompts_per_step == {2: 12, 3: 8, 4: 6, 6: 4, 12: 2}
    assert lay.local_prompts(3) == 4
    assert (lay.slot_repeat, lay.sampler_prompts, lay.local_slots) == (2, 12, 6)
    assert lay.decide_prompts() == {2: 12, 3: 8, 4: 6, 6: 4, 12: 2}


def test_incompatible_settings_name_what_to_change():
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        plan_layout(batch(steps_per_generation=2, gradient_accumulation_steps=4, generation_batch_size=8),
                    GroupOptions())
    with pytest.raises(ValueError, match="multiple of the 4 processes.*per_device_train_batch_size"):
        plan_layout(batch(num_generations=4, generation_batch_size=8, num_processes=4), GroupOptions())
    with pytest.raises(ValueError, match=r"G=3: .*steps_per_generation = 4"):
        plan_layout(batch(num_generations=4, generation_batch_size=8, steps_per_generation=4,
                          gradient_accumulation_steps=4), GroupOptions(group_sizes=(2, 3, 4)))
    with pytest.raises(ValueError, match="no group size in"):
        plan_layout(batch(generation_batch_size=16), GroupOptions(group_mode="fixed_completions", min_group_size=5,
                                                                  max_group_size=7))


@pytest.mark.parametrize("kw, field", [
    ({"group_mode": "fixed"}, "group_mode"), ({"min_group_size": 1}, "min_group_size"),
    ({"max_group_size": 1}, "max_group_size"), ({"max_refill_rounds": -1}, "max_refill_rounds"),
    ({"group_sizes": (2, 2.5)}, "group_sizes"), ({"dynamic_sampling": 1}, "dynamic_sampling"),
])
def test_options_are_validated_up_front(kw, field):
    with pytest.raises(ValueError, match=field):
        GroupOptions(**kw)


def test_options_from_mapping_rejects_unknown_keys_and_applies_overrides():
    opts = GroupOptions.from_any({"group_mode": "fixed_completions", "group_sizes": [4, 2]}, max_refill_rounds=5)
    assert opts.group_sizes == (2, 4) and opts.max_refill_rounds == 5
    with pytest.raises(ValueError, match="unknown group option"):
        GroupOptions.from_any({"group_size": 4})


def test_layout_check_rejects_sizes_outside_the_allowed_set():
    lay = plan_layout(batch(), GroupOptions(group_sizes=(2, 4, 8)))
    assert lay.check(np.int64(4)) == 4
    with pytest.raises(ValueError, match=r"G=3.*allowed sizes are \[2, 4, 8\]"):
        lay.check(3)


def test_informative_groups_ignores_nan_and_float_noise():
    r = np.array([1, 1, 1, 1,  0, 1, 0, 0,  np.nan, 1, np.nan, np.nan,  0.5, 0.5 + 1e-12, 0.5, 0.5,
                  np.nan, 0, 1, np.nan])
    assert informative_groups(r, 4).tolist() == [False, True, False, False, True]


def test_select_groups_keeps_informative_first_and_reports_the_largest_shortage():
    # two processes, two calls; process 1 has only one informative group
    call0 = np.array([[True, False, True], [False, False, True]])
    picks, short = select_groups([call0], need=3, rank=0)
    assert short == 2 and [p[:2] for p in picks] == [(0, 0), (0, 2), (0, 1)] and picks[-1][2]
    call1 = np.array([[True, True], [True, True]])
    picks, short = select_groups([call0, call1], need=3, rank=1)
    assert short == 0 and picks == [(0, 2, False), (1, 0, False), (1, 1, False)]


def test_prompt_stream_is_deterministic_and_resumable():
    a = PromptStream(5, seed=3)
    first = a.take(7)  # crosses into the second pass
    assert sorted(first[:5]) == list(range(5)) and len(first) == 7
    state = a.state_dict()
    rest = a.take(6)
    b = PromptStream(5, seed=3)
    b.load_state_dict(state)
    assert b.take(6) == rest
    with pytest.raises(ValueError, match="dataset of 5 rows"):
        PromptStream(4, seed=3).load_state_dict(state)
    c = PromptStream(5, seed=3)
    c.load_state_dict(state)
    assert c.peek(6) == rest and c.peek(6) == rest and c.state_dict() == state  # peek does not move it
    assert c.take(6) == rest


def test_lookahead_offers_the_streams_next_prompts_less_the_dealt_ones():
    from datasets import Dataset

    from sagc.integrations.trl.per_prompt import Lookahead

    own = Dataset.from_dict({"prompt": ["p"] * 6, "sagc_prompt_id": [50, 51, 52, 53, 54, 55]})  # ids not rows
    look = Lookahead(own, seed=0, factor=3)
    rows = PromptStream(6, seed=2).take(6)  # the candidate stream is seeded args.seed + 2
    dealt = [50 + rows[1]]
    ids, ends = look.offer(dealt)  # 2 x 1 candidates, the dealt one left out
    assert ids == [50 + rows[0]] and ends == [1]
    assert look.index.row_of(ids[0]) == rows[0] and look.index.id_of(rows[0]) == ids[0]
    assert look.stream.state_dict()["cursor"] == 0  # offering consumes nothing
    default = Lookahead(Dataset.from_dict({"prompt": ["p"] * 6, "sagc_prompt_id": list(range(6))}), 0, 4)
    assert default.index._rows is None and default.index.row_of(4) == 4  # ids = rows: no table
    for bad in (["x"] * 6, [1, 2, -3, 4, 5, 6], [0.5] * 6):
        with pytest.raises(ValueError, match="'sagc_prompt_id' must hold integer ids >= 0"):
            Lookahead(Dataset.from_dict({"prompt": ["p"] * 6, "sagc_prompt_id": bad}), 0, 4)


def test_join_groups_repads_and_masks_padded_groups():
    g = 2

    def scored(prompt_w, comp_w, base):
        rows = 4
        return {
            "prompt_ids": torch.arange(rows * prompt_w).reshape(rows, prompt_w) + base,
            "prompt_mask": torch.ones(rows, prompt_w, dtype=torch.long),
            "completion_ids": torch.arange(rows * comp_w).reshape(rows, comp_w) + base,
            "completion_mask": torch.ones(rows, comp_w, dtype=torch.long),
            "advantages": torch.arange(rows, dtype=torch.float) + base,
            "num_items_in_batch": torch.tensor(999),
        }

    a, b = scored(3, 2, 0), scored(2, 4, 100)
    out = join_groups([a, b], [(1, 1, False), (0, 0, False), (0, 1, True)], g, pad_token_id=-1,
                      gather_sum=lambda x: x * 1)
    assert out["advantages"].tolist() == [102, 103, 0, 1, 2, 3]
    assert out["prompt_ids"].shape == (6, 3) and out["prompt_ids"][0].tolist() == [-1, 104, 105]
    assert out["completion_ids"].shape == (6, 4) and out["completion_ids"][2].tolist() == [0, 1, -1, -1]
    assert out["completion_mask"][2].tolist() == [1, 1, 0, 0]
    assert out["completion_mask"][4:].sum() == 0  # padded group: no tokens in the loss
    assert int(out["num_items_in_batch"]) == 4 + 4 + 2 + 2
    with pytest.raises(ValueError, match="pixel_values"):
        join_groups([dict(a, pixel_values=torch.zeros(4, 1)), b], [(1, 0, False)], g, -1, lambda x: x)
