"""Two processes (accelerate launch, gloo on CPU): every rank uses the same G at every step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sagc.trace import read_trace

pytestmark = [pytest.mark.trl, pytest.mark.slow]

WORKER = Path(__file__).with_name("dist_worker.py")
STEPS = 6


def launch_two_ranks(tmp_path, port: int, *worker_args: str) -> list[dict]:
    """Run dist_worker.py on 2 ranks; each rank's rank<k>.json."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate CLI not installed")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    # --multi_gpu selects accelerate's torch.distributed launcher; with no GPU, use_cpu=True and
    # ddp_backend="gloo" in the GRPOConfig make it two CPU processes talking over gloo.
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           str(WORKER), str(tmp_path), *worker_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]


def test_two_ranks_agree_on_the_group_size_every_step(tmp_path):
    ranks = launch_two_ranks(tmp_path, 29517, str(STEPS))
    assert [r["processes"] for r in ranks] == [2, 2]
    assert all(r["global_step"] == STEPS for r in ranks)  # training completed on both
    decided = ranks[0]["decided"]
    assert len(decided) == STEPS and ranks[1]["decided"] == decided
    assert ranks[1]["refills"] == ranks[0]["refills"]  # dynamic sampling refills in lockstep
    # what each rank actually generated: its reward calls see 2 prompts (1 per refill) x G rows
    for r in ranks:
        calls = iter(zip(r["rows"], r["prompts"]))
        for g, refills in zip(decided, r["refills"]):
            for _ in range(1 + refills):
                rows, prompts = next(calls)
                assert rows == g * len(prompts)
    # the ranks generate for different prompts, and only rank 0 writes the trace
    assert ranks[0]["prompts"][0] != ranks[1]["prompts"][0]
    records = list(read_trace(tmp_path / "out" / "sagc_trace.jsonl"))
    assert [rec["group_size"] for rec in records] == decided
    assert all(len(g["lengths"]) == rec["group_size"] for rec in records for g in rec["groups"])


def test_two_ranks_train_ragged_groups_in_lockstep(tmp_path):
    """Per-prompt sizes 2, 0, 4, 8 for the 4 dealt prompts, 4 for the first candidate (it takes the
    skipped prompt's place): 18 rows dealt over 2 ranks (10 and 8, the short rank pads 2)."""
    ranks = launch_two_ranks(tmp_path, 29518, "4", "ragged")
    assert all(r["global_step"] == 4 for r in ranks)  # no hang: both finished
    assert ranks[0]["decided"] == ranks[1]["decided"]  # same prompt ids and sizes on both ranks
    assert all(sorted(sizes) == [2, 4, 4, 8] for _, sizes in ranks[0]["decided"])
    assert ranks[0]["rows"] == ranks[1]["rows"] == [10] * 4  # equal rows on both ranks, padding included
    assert ranks[0]["padded"] == [2] * 4
    assert ranks[0]["replaced"] == ranks[1]["replaced"] == [1] * 4  # one candidate trained each step
    assert ranks[0]["lookahead"] == ranks[1]["lookahead"]  # both ranks moved the candidate stream alike
    for step, (ids, sizes) in enumerate(ranks[0]["decided"]):
        generated = ranks[0]["ids"][step] + ranks[1]["ids"][step]
        for pid, g in zip(ids, sizes):  # every group generated whole, on one rank (padding repeats an id)
            assert generated.count(pid) >= g


def test_two_ranks_run_tail_control_in_lockstep(tmp_path):
    """rollout auto: each rank over-samples and stops its own share; the step ends for both together."""
    ranks = launch_two_ranks(tmp_path, 29519, "6", "tail")
    assert all(r["global_step"] == 6 for r in ranks)  # no hang: both finished
    assert ranks[0]["decided"] == ranks[1]["decided"]  # same G and over-sampling rate every step
    assert ranks[0]["chooser"] == ranks[1]["chooser"]  # auto learned from the same figures on both
    assert {rate for _, rate in ranks[0]["decided"]} == {1.0, 2.0}  # both rates tried
    assert ranks[0]["rows"] == ranks[1]["rows"] == [4] * 6  # each rank trains 2 complete groups of 2
    assert ranks[0]["trained_groups"] == [4] * 6  # 4 complete groups over both ranks each step
    records = list(read_trace(tmp_path / "out" / "sagc_trace.jsonl"))
    assert [r["step"] for r in records] == list(range(1, 7)) and all("tail" in r for r in records)
