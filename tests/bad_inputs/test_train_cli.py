"""Bad inputs to `sagc train --config`: exit 2, one message naming the key / file / line, nothing written.

Each case is (config text, files to create next to it, substrings the message must hold). The
output folder `out/` must not exist afterwards: every input is checked before it is created.
Add a case here when a new key or input appears.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from bad_input_cli import assert_clean_failure, run_cli  # noqa: E402

pytestmark = pytest.mark.trl

ROWS = [json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(16)]
GOOD_ROWS = "".join(ROWS)
BASE = "output_dir: out\nmax_steps: 2\n"  # every case writes (or must not write) ./out
DATA = f"{BASE}dataset: data.jsonl\n"

CASES = {
    # class 3: silent substitutions
    "empty file": ("", {}, ["c.yaml", "empty"]),
    "only comments": ("# model: builtin\n", {}, ["c.yaml", "empty"]),
    "float group size": (BASE + "group_sizes: [2, 4.7]\n", {}, ["c.yaml, line 3", "group_sizes[1]", "4.7"]),
    "duplicate key": (BASE + "seed: 1\nseed: 2\n", {}, ["seed", "twice", "c.yaml, line 4"]),
    "duplicate trl key": (BASE + "trl:\n  temperature: 1.0\n  temperature: 0.7\n", {},
                          ["trl.temperature", "twice", "line 5"]),
    "dataset smaller than one step": (f"{BASE}dataset: data.jsonl\nprompts_per_step: 8\n",
                                      {"data.jsonl": "".join(ROWS[:3])},
                                      ["dataset data.jsonl has 3 prompts", "prompts_per_step: 8"]),
    "not a mapping": ("[1, 2]\n", {}, ["c.yaml", "mapping"]),
    # class 5: late validation
    "negative temperature": (BASE + "trl: {temperature: -1.0}\n", {}, ["trl.temperature", "> 0", "line 3"]),
    "negative max_completion_length": (BASE + "trl:\n  max_completion_length: -5\n", {},
                                       ["trl.max_completion_length", "line 4"]),
    "string learning rate": (BASE + "trl: {learning_rate: fast}\n", {}, ["trl.learning_rate", "'fast'"]),
    "yaml 1e-5 is a string": (BASE + "trl: {learning_rate: 1e-5}\n", {}, ["trl.learning_rate", "write 1.0e-5"]),
    "string logging_steps": (BASE + "trl: {logging_steps: x}\n", {}, ["trl.logging_steps"]),
    "top_p above 1": (BASE + "trl: {top_p: 1.5}\n", {}, ["trl.top_p"]),
    "GRPOConfig refuses a value": (BASE + "trl: {lr_scheduler_type: sideways}\n", {},
                                   ["trl.lr_scheduler_type", "sideways"]),
    "unknown trl field": (BASE + "trl: {temprature: 1.0}\n", {}, ["trl.temprature", "GRPOConfig"]),
    "trl owns no top-level key": (BASE + "trl: {seed: 3}\n", {}, ["trl.seed", "top level"]),
    "bad resume_from_checkpoint": (BASE + "trl: {resume_from_checkpoint: 3}\n", {},
                                   ["trl.resume_from_checkpoint"]),
    "null prompt": (DATA, {"data.jsonl": GOOD_ROWS + '{"prompt": null, "answer": "1"}\n'},
                    ["data.jsonl, line 17", "prompt", "null"]),
    "integer prompt": (DATA, {"data.jsonl": '{"prompt": 7, "answer": "1"}\n' + GOOD_ROWS},
                       ["data.jsonl, line 1", "prompt", "int"]),
    "no answer for exact_match": (DATA, {"data.jsonl": GOOD_ROWS + '{"prompt": "2+2="}\n'},
                                  ["data.jsonl, line 17", "answer", "exact_match"]),
    "model config.json not JSON": (BASE + "model: m\n", {"m/config.json": '{"model_type": "llama",\n  oops}\n'},
                                   ["config.json, line 2", "not valid JSON"]),
    "model folder missing": (BASE + "model: nowhere\n", {}, ["model nowhere", "no such directory"]),
    "output_dir is a file": ("output_dir: out.txt\n", {"out.txt": "x"}, ["output_dir out.txt", "is a file"]),
    "output_dir under a file": ("output_dir: out.txt/run\n", {"out.txt": "x"}, ["output_dir out.txt/run",
                                                                               "not a folder"]),
    "math_verify hint keeps its brackets": (BASE + "reward: math_verify\n", {}, ["sagc[math]"]),
    # class 6: messages that name the key
    "seed is text": (BASE + "seed: x\n", {}, ["seed", "line 3", "'x'"]),
    "group_sizes as text": (BASE + 'group_sizes: "2,4"\n', {}, ["group_sizes", "line 3", "'2,4'"]),
    "time_budget_s is text": (BASE + "time_budget_s: abc\n", {}, ["time_budget_s", "line 3", "'abc'"]),
    "dynamic_sampling is text": (BASE + "dynamic_sampling: maybe\n", {}, ["dynamic_sampling", "line 3"]),
    "ragged_weight unknown": (BASE + "ragged_weight: rows\n", {}, ["ragged_weight", "line 3", "'rows'"]),
    "prompt_lookahead zero": (BASE + "prompt_lookahead: 0\n", {}, ["prompt_lookahead", "line 3", "integer >= 1"]),
    "per-prompt G with fixed_completions": (BASE + "controller: {kind: sagc, per_prompt: true}\n"
                                                   "group_mode: fixed_completions\n", {},
                                            ["group_mode", "line 4", "fixed_prompts"]),
    "per-prompt G with dynamic sampling": (BASE + "controller: {kind: knapsack}\ndynamic_sampling: true\n", {},
                                           ["dynamic_sampling", "line 4", "replaces dynamic sampling"]),
    "rollout policy unknown": (BASE + "rollout: fastest\n", {}, ["rollout", "line 3", "'fastest'", "resume"]),
    "rollout policy unknown in a mapping": (BASE + "rollout:\n  policy: fastest\n", {},
                                            ["rollout.policy", "line 4", "'fastest'"]),
    "rollout over_sample below 1": (BASE + "rollout:\n  policy: resume\n  over_sample: 0.5\n", {},
                                    ["rollout.over_sample", "line 5", "[1, 16]", "0.5"]),
    "rollout unknown key": (BASE + "rollout: {policy: resume, over_sampel: 1.5}\n", {},
                            ["rollout.over_sampel", "line 3", "valid keys", "over_sample"]),
    "rollout over_sample with policy full": (BASE + "rollout:\n  over_sample: 2.0\n", {},
                                             ["rollout.over_sample", "line 4", "policy 'full'"]),
    "rollout stale_tokens unknown": (BASE + "rollout:\n  policy: resume\n  stale_tokens: drop\n", {},
                                     ["rollout.stale_tokens", "line 5", "'drop'", "tis"]),
    "rollout over_sample_grid entry": (BASE + "rollout:\n  policy: auto\n  over_sample_grid: [1.0, 0.9]\n", {},
                                       ["rollout.over_sample_grid[1]", "line 5", "0.9"]),
    "rollout is a number": (BASE + "rollout: 2\n", {}, ["rollout", "line 3", "policy name"]),
    "rollout with per-prompt G": (BASE + "controller: {kind: sagc, per_prompt: true}\nrollout: resume\n", {},
                                  ["rollout", "line 4", "per-prompt", "rollout: full"]),
    "rollout with dynamic sampling": (BASE + "dynamic_sampling: true\nrollout: {policy: drop, over_sample: 1.5}\n",
                                      {}, ["rollout", "line 4", "dynamic_sampling: true", "rollout: full"]),
    "rollout with vLLM": (BASE + "rollout: defer\ntrl: {use_vllm: true}\n", {},
                          ["rollout", "line 3", "trl.use_vllm: false"]),
    "simulator-only dapo controller": (BASE + "controller: {kind: dapo}\n", {}, ["controller", "line 3",
                                                                                   "dynamic_sampling: true"]),
    "max_steps is a float": ("output_dir: out\nmax_steps: 2.5\n", {}, ["max_steps", "line 2"]),
    "unknown key": (BASE + "modle: builtin\n", {}, ["modle", "c.yaml"]),
    "bad YAML": (BASE + "model: [unclosed\n", {}, ["c.yaml, line", "YAML"]),
    # resume without anything to resume
    "resume from nothing": (BASE + "trl: {resume_from_checkpoint: true}\n", {},
                            ["output_dir out", "nothing to resume"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_train_input_fails_cleanly_before_writing(tmp_path, name):
    if name == "math_verify hint keeps its brackets":
        import importlib.util

        if importlib.util.find_spec("math_verify") is not None:
            pytest.skip("math-verify is installed: no hint to show")
    text, files, needles = CASES[name]
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    (tmp_path / "c.yaml").write_text(text)
    res = run_cli(["train", "--config", "c.yaml"], cwd=tmp_path)
    assert_clean_failure(res, *needles, left_behind=[tmp_path / "out", tmp_path / "out.txt" / "run"])


def test_parquet_rows_are_named(tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"prompt": "1+1=", "answer": "2"}] * 3 + [{"prompt": None, "answer": "2"}]).to_parquet(
        str(tmp_path / "d.parquet"))
    Dataset.from_list([{"prompt": "1+1="}] * 4).to_parquet(str(tmp_path / "noanswer.parquet"))
    (tmp_path / "c.yaml").write_text(BASE + "dataset: d.parquet\n")
    assert_clean_failure(run_cli(["train", "--config", "c.yaml"], cwd=tmp_path), "d.parquet, row 4", "prompt",
                         left_behind=[tmp_path / "out"])
    (tmp_path / "c.yaml").write_text(BASE + "dataset: noanswer.parquet\n")
    assert_clean_failure(run_cli(["train", "--config", "c.yaml"], cwd=tmp_path), "noanswer.parquet", "'answer'",
                         left_behind=[tmp_path / "out"])


def test_a_fresh_run_never_overwrites_an_earlier_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sagc_trace.jsonl").write_text("{}\n")
    (tmp_path / "c.yaml").write_text(BASE)
    flat = assert_clean_failure(run_cli(["train", "--config", "c.yaml"], cwd=tmp_path), "output_dir out",
                                "sagc_trace.jsonl", "--resume auto")
    assert "line 1" in flat
    assert (out / "sagc_trace.jsonl").read_text() == "{}\n" and sorted(p.name for p in out.iterdir()) == [
        "sagc_trace.jsonl"]


def test_resume_flag_and_trl_key_must_agree(tmp_path):
    (tmp_path / "c.yaml").write_text(BASE + "trl: {resume_from_checkpoint: out/checkpoint-2}\n")
    res = run_cli(["train", "--config", "c.yaml", "--resume", "out/checkpoint-4"], cwd=tmp_path)
    assert_clean_failure(res, "--resume", "disagree", left_behind=[tmp_path / "out"])
