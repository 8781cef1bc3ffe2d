"""`sagc train --config`: bad configs and inputs fail clearly, before anything is written."""

import pytest

pytest.importorskip("trl")

from sagc.demo.train import TrainConfig, load_dataset_file, load_model, load_train_config, resolve_reward  # noqa: E402


def write(tmp_path, text, name="train.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ("modle: builtin\n", "modle"),
    ("reward: nonsense\n", "reward"),
    ("group_mode: sideways\n", "group_mode"),
    ("max_steps: 0\n", "max_steps"),
    ("trl: {learnin_rate: 3}\n", "learnin_rate"),
    ("trl: {max_steps: 3}\n", "max_steps"),
    ("controller: {kind: sagc, V: -1}\n", "V must be"),
    ("model: [unclosed\n", "line"),
])
def test_bad_keys_and_values_are_named(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=needle) as info:
        load_train_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("example", ["train-builtin-cpu.yaml", "train-gpu-vllm.yaml"])
def test_shipped_examples_pass_validation(example):
    from pathlib import Path

    config = load_train_config(Path(__file__).resolve().parents[2] / "examples" / example)
    assert config.trl["save_strategy"] == "steps"  # so that `--resume auto` has checkpoints


def test_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_model(TrainConfig(model=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(TrainConfig(model=str(tmp_path / "empty")))


def test_unreadable_datasets_name_file_and_line(tmp_path):
    bad = write(tmp_path, '{"prompt": "1+1=", "answer": 2}\n{oops\n', "d.jsonl")
    with pytest.raises(ValueError, match=r"d.jsonl, line 2"):
        load_dataset_file(str(bad))
    nocol = write(tmp_path, '{"question": "1+1="}\n', "n.jsonl")
    with pytest.raises(ValueError, match="prompt"):
        load_dataset_file(str(nocol))
    with pytest.raises(ValueError, match="parquet"):
        load_dataset_file(str(write(tmp_path, "not parquet", "x.parquet")))
    with pytest.raises(FileNotFoundError):
        load_dataset_file(str(tmp_path / "missing.jsonl"))
    ok = load_dataset_file(str(write(tmp_path, '{"prompt": "1+1=", "answer": 2}\n', "ok.jsonl")))
    assert ok.column_names == ["prompt", "answer"]


def test_rewards_resolve_and_score():
    exact = resolve_reward("exact_match", builtin_task=False)
    assert exact(None, ["so 1+1=2 #### 2", "#### 3", "2"], answer=[2, 2, 2]) == [1.0, 0.0, 1.0]
    assert resolve_reward("sagc.tasks.arith:reward_fn", builtin_task=False)([], [], answer=[]) == []
    with pytest.raises(ValueError, match="cannot import"):
        resolve_reward("no.such.module:f", builtin_task=False)


def test_failed_validation_writes_nothing(tmp_path):
    from rich.console import Console

    from sagc.demo.train import run_train

    out = tmp_path / "out"
    cfg = TrainConfig(dataset=str(tmp_path / "missing.jsonl"), output_dir=str(out))
    with pytest.raises(FileNotFoundError):
        run_train(cfg, Console())
    assert not out.exists()


@pytest.mark.parametrize("text,want", [
    ("max_steps: 3\n", {"bf16": False, "use_cpu": True, "threads": 1, "by": ("probe", "probe")}),
    ("trl: {bf16: true}\nnum_threads: 3\n", {"bf16": True, "use_cpu": True, "threads": 3, "by": ("user", "user")}),
])
def test_train_uses_fp32_on_a_cpu_without_native_bf16_unless_told(tmp_path, monkeypatch, text, want):
    """Issue 20: the probe (mocked: bf16 emulated, 12x fp32's time) picks fp32; the user's trl.bf16 and
    num_threads win."""
    import torch

    from sagc.demo.train import grpo_settings, train_compute
    from sagc.tasks import machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(machine, "probe", lambda refresh=False: {"version": 1, "fp32_ms": 14.0, "bf16_ms": 181.0,
                                                                 "threads_ms": {"1": 14.0, "2": 20.0}})
    config = load_train_config(write(tmp_path, text))
    compute = train_compute(config)
    settings = grpo_settings(config, compute)
    assert (settings["bf16"], settings["use_cpu"]) == (want["bf16"], want["use_cpu"])
    assert compute.threads == want["threads"] and (compute.bf16_by, compute.threads_by) == want["by"]


@pytest.mark.parametrize("text", ["num_threads: 0\n", "num_threads: two\n", "num_threads: true\n"])
def test_bad_num_threads_is_named(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="num_threads") as info:
        load_train_config(path)
    assert f"{path}, line 1" in str(info.value) or str(path) in str(info.value)


@pytest.mark.parametrize("text,want,lookahead", [
    ("", {"policy": "full", "over_sample": 1.0}, 4),
    ("rollout: defer\n", {"policy": "defer", "over_sample": 1.0}, 4),
    ("rollout:\n  policy: resume\n  over_sample: 1.5\n  max_staleness: 2\n  stale_tokens: mask\n",
     {"policy": "resume", "over_sample": 1.5, "max_staleness": 2, "stale_tokens": "mask"}, 4),
    ("controller: {kind: sagc, per_prompt: true}\nprompt_lookahead: 2\n", {"policy": "full"}, 2),
])
def test_rollout_section_reaches_the_trainer(tmp_path, monkeypatch, text, want, lookahead):
    """`rollout:` is handed to SAGCGRPOTrainer as rollout= (RolloutSettings), and `prompt_lookahead`
    as prompt_lookahead=; no model is built, nothing trains."""
    import torch
    from rich.console import Console

    import sagc.integrations.trl as sagc_trl
    from sagc.demo import train as train_mod
    from sagc.rollout import RolloutSettings
    from sagc.tasks import machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(machine, "probe", lambda refresh=False: {"version": 1, "fp32_ms": 14.0, "bf16_ms": 181.0,
                                                                 "threads_ms": {"1": 14.0}})
    monkeypatch.setattr(machine.Compute, "apply", lambda self: None)  # leave this process's torch threads alone
    monkeypatch.setattr(train_mod, "load_model", lambda config, threads=None: (object(), object()))
    seen = {}

    class Stop(Exception):
        pass

    class FakeTrainer:
        def __init__(self, **kwargs):
            seen.update(kwargs)
            raise Stop

    monkeypatch.setattr(sagc_trl, "SAGCGRPOTrainer", FakeTrainer)
    monkeypatch.chdir(tmp_path)
    config = load_train_config(write(tmp_path, "output_dir: out\nmax_steps: 2\n" + text))
    with pytest.raises(Stop):
        train_mod.run_train(config, Console(file=open(tmp_path / "console.txt", "w")))
    got = seen["rollout"]
    assert isinstance(got, RolloutSettings)
    assert {k: getattr(got, k) for k in want} == want
    assert seen["prompt_lookahead"] == lookahead
    assert not (tmp_path / "out").exists()


def test_rollout_resume_needs_tail_state_in_the_checkpoint(tmp_path):
    """A checkpoint written with rollout: full cannot be resumed with tail control (named before any model loads)."""
    import json

    from sagc.demo.train_resume import check_fits
    from sagc.integrations.trl import checkpoint as ckpt

    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    ckpt.write_state(str(folder), {"controller": None, "controller_name": "sagc", "allowed": [2, 4, 8, 16],
                                   "group_mode": "fixed_prompts", "tail": None, "trace": {}})
    config = TrainConfig(max_steps=4, rollout="resume")
    with pytest.raises(ValueError, match="rollout policy is 'resume'") as info:
        check_fits(folder, config, (2, 4, 8, 16), "fixed_prompts", tmp_path / "trace.jsonl")
    assert getattr(info.value, "key", None) == "rollout"
