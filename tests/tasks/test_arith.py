"""The arithmetic task: deterministic generation, disjoint splits, exact-match reward."""

import subprocess
import sys

import numpy as np
import pytest

from sagc.tasks import arith
from sagc.tasks.config import ModelConfig, TaskConfig, WarmStartConfig


def test_generation_is_deterministic_and_prefix_stable():
    task = TaskConfig()
    a = arith.sample_problems(task, "train", 300, seed=3)
    b = arith.sample_problems(task, "train", 300, seed=3)
    assert a == b
    assert arith.sample_problems(task, "train", 120, seed=3) == a[:120]
    c = arith.sample_problems(task, "train", 300, seed=4)
    assert [p.question for p in c] != [p.question for p in a]


def test_splits_are_disjoint_for_any_seed():
    task = TaskConfig()
    train = {p.question for s in (0, 1) for p in arith.sample_problems(task, "train", 3000, seed=s)}
    held = {p.question for s in (0, 7) for p in arith.sample_problems(task, "heldout", 600, seed=s)}
    assert len(held) > 200 and len(train) > 2000
    assert not train & held
    for q in held:
        assert arith.split_of(q, task.heldout_fraction) == "heldout"


def test_solutions_are_correct_and_steps_long_tailed():
    task = TaskConfig(max_steps=12, tail=1.0)
    problems = arith.sample_problems(task, "train", 4000, seed=0)
    for p in problems[:500]:
        terms = arith.addends(p.kind, p.operands)
        assert p.answer == sum(terms) and p.steps == len(terms) - 1
        assert arith.score(p.solution, p.answer) == 1.0
        assert p.solution.count("=") == p.steps
        assert arith.problem_from_prompt(p.prompt) == p
    steps = np.array([p.steps for p in problems])
    assert steps.min() == task.min_steps and steps.max() == task.max_steps
    assert np.mean(steps == 1) > 3 * np.mean(steps >= 10)  # most are short ...
    length = np.array([len(p.solution) for p in problems])
    assert np.percentile(length, 99) > 3 * np.median(length)  # ... and a few are long
    assert {p.kind for p in problems} == {"add", "mul"}


def test_reward_right_wrong_garbage_missing():
    p = arith.make_problem("add", (12, 7, 30))
    assert p.prompt == "Q: 12+7+30=\nA: " and p.solution == "12+7=19,19+30=49 #### 49"
    completions = [
        "12+7=19,19+30=49 #### 49",  # right
        "12+7=19,19+30=48 #### 48",  # wrong
        "%%garbage 49",  # garbage
        "12+7=19,19+30=49",  # no answer mark
        "12+7=19,19+30=49,49+12=61,61+7=",  # looped to the cap
        "#### 49 and then more text",  # text after the answer
        "",  # empty
        "12+7=19 ####  49 \n",  # spacing is tolerated
    ]
    expected = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert [arith.score(c, 49) for c in completions] == expected
    prompts = [p.prompt] * len(completions)
    assert arith.reward_fn(prompts, completions) == expected  # answer recomputed from the prompt
    assert arith.reward_fn(prompts, completions, answer=[49] * len(completions)) == expected
    assert arith.reward_fn(prompts, completions, answer=[48] * len(completions))[1] == 1.0
    conversational = [[{"role": "assistant", "content": completions[0]}]]
    assert arith.reward_fn([p.prompt], conversational) == [1.0]


def test_reward_fn_rejects_unknown_prompt_and_mismatch():
    with pytest.raises(ValueError, match="prompt 0"):
        arith.reward_fn(["hello"], ["#### 1"])
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        arith.reward_fn(["Q: 1+2=\nA: "] * 2, ["#### 3"] * 2, answer=[3])


def test_mul_and_noisy_targets():
    p = arith.make_problem("mul", (7, 4))
    assert p.solution == "7+7=14,14+7=21,21+7=28 #### 28" and p.steps == 3
    loop = arith.looping_solution(p, 60)
    assert len(loop) == 60 and arith.parse_answer(loop) is None and loop.startswith("7+7=14,14+7=21,21+7=28,28+7=35")
    rng = np.random.default_rng(0)
    for q in arith.sample_problems(TaskConfig(), "train", 200, seed=1):
        bad = arith.erroneous_solution(q, rng)
        got = arith.parse_answer(bad)
        assert got is not None and got != q.answer and arith.score(bad, q.answer) == 0.0


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="TaskConfig.max_steps"):
        TaskConfig(max_steps=0)
    with pytest.raises(ValueError, match="TaskConfig.kinds"):
        TaskConfig(kinds=("div",), kind_weights=(1.0,))
    with pytest.raises(ValueError, match="TaskConfig.kind_weights"):
        TaskConfig(kind_weights=(1.0,))
    with pytest.raises(ValueError, match="TaskConfig.heldout_fraction"):
        TaskConfig(heldout_fraction=0.0)
    with pytest.raises(ValueError, match="ModelConfig.hidden_size"):
        ModelConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="WarmStartConfig.loop_prob"):
        WarmStartConfig(loop_prob=1.5)
    with pytest.raises(ValueError, match="WarmStartConfig.max_completion_tokens"):
        WarmStartConfig(max_completion_tokens=250)
    with pytest.raises(ValueError, match="unknown key.*'stpes'"):
        WarmStartConfig.from_dict({"stpes": 10})
    cfg = WarmStartConfig.from_dict({"steps": 10, "task": {"kinds": ["add"], "kind_weights": [1]}})
    assert cfg.task.kinds == ("add",) and cfg.steps == 10
    assert WarmStartConfig.from_dict(cfg.as_dict()) == cfg
    with pytest.raises(ValueError, match="split must be one of"):
        arith.sample_problems(TaskConfig(), "test", 3)


def test_task_module_imports_without_torch():
    code = "import sys, sagc.tasks, sagc.tasks.arith; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
