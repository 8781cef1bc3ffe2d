"""bench/bench_time_to_target.py's summaries: the figures docs/benchmarks.md quotes come from here."""

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_time_to_target.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_time_to_target", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(seed, evals, ttt=None, before=0.25, target=0.28, wall=120.0):
    """One row as main() builds it: evals are the accuracies after the start."""
    return {"seed": seed, "evals": evals, "time_to_target_s": ttt, "wall_s": wall, "target": target,
            "accuracy_before": before, "accuracy_after": evals[-1], "mean_eval_acc": sum(evals) / len(evals)}


def test_mean_eval_accuracy_skips_the_start_and_missing_values(bench):
    evals = [{"wall_s": 0.0, "accuracy": 0.9}, {"wall_s": 20.0, "accuracy": 0.2},
             {"wall_s": 40.0, "accuracy": None}, {"wall_s": 60.0, "accuracy": 0.4}]
    assert bench.mean_eval_accuracy(evals) == pytest.approx(0.3)
    assert math.isnan(bench.mean_eval_accuracy([{"wall_s": 0.0, "accuracy": 0.5}]))


def test_paired_differences_are_per_seed_not_differences_of_medians(bench):
    results = {"static-G4": [run(0, [0.30]), run(1, [0.20]), run(2, [0.25])],
               "static-G8": [run(0, [0.26]), run(1, [0.26]), run(2, [0.26])],
               "sagc": [run(0, [0.31]), run(1, [0.19]), run(2, [0.28])]}
    text = bench.paired(results)
    # vs G4 by seed: +1, -1, +3 points -> median +1.0, ahead on 2 of 3
    assert "+1.0 [-1.0, +3.0], 2/3 ahead" in text
    # vs G8: +5, -7, +2 -> median +2.0
    assert "+2.0 [-7.0, +5.0], 2/3 ahead" in text
    assert bench.paired({"static-G4": results["static-G4"]}) == ""  # nothing adaptive to compare


def test_noise_line_reports_rms_of_successive_evaluations_and_fallbacks(bench):
    results = {"static-G4": [run(0, [0.26, 0.30, 0.26], ttt=40.0), run(1, [0.27, 0.29, 0.29], ttt=40.0)],
               "sagc": [run(0, [0.25, 0.25, 0.25])]}
    text = bench.noise(results)
    # differences: 0.04, -0.04, 0.02, 0.0, 0.0, 0.0 -> RMS sqrt(0.0036 / 6) = 2.4 points, / sqrt 2 = 1.7
    assert "differ by 2.4 points (RMS, 6 pairs)" in text and "at most 1.7 points" in text
    assert "margin of +3 points" in text
    # seed 0's G4 reached 0.28 and ended at 0.26: it fell back; seed 1's ended at 0.29
    assert "1 of the 2 runs that reached the target ended the run below it" in text


def test_ratios_mark_censored_runs_as_bounds(bench):
    results = {"static-G4": [run(0, [0.3], ttt=60.0)], "static-G16": [run(0, [0.3], ttt=None)],
               "sagc": [run(0, [0.3], ttt=None)]}
    text = bench.ratios(results)
    assert "| sagc | 0 | neither reached | >= 2.00 (static-G4) |" in text


def test_markdown_and_summary_carry_the_machine_line(bench):
    """Issue 20: a reader of docs/benchmarks.md from another machine can tell why its numbers differ."""
    import argparse

    results = {"static-G4": [run(0, [0.3], ttt=60.0, wall=120.0) | {"steps": 96}, run(1, [0.3]) | {"steps": 72}],
               "sagc": [run(0, [0.3], wall=120.0) | {"steps": 60}, run(1, [0.3]) | {"steps": 48}]}
    for rows in results.values():
        for r in rows:
            r.update(straggler_rate=0.2, mean_group_size=4.0)
    summary = bench.summarize(results)
    assert summary["static-G4"]["median_steps_per_s"] == pytest.approx(0.7)  # (0.8 + 0.6) / 2
    machine = {"cpu": "AMD EPYC 7B13", "cores": 2, "flags": {"avx512_bf16": False, "amx_bf16": False},
               "bf16": False, "bf16_by": "probe", "threads": 1, "threads_by": "probe", "device": "cpu",
               "probe": {"fp32_ms": 14.0, "bf16_ms": 181.0}, "torch": "2.13.0", "load_avg": [1.9, 1.5, 1.2]}
    line = bench.machine_summary(machine, summary)
    assert line == ("machine: AMD EPYC 7B13, 2 cores (avx512_bf16 no, amx no); fp32 (probe: bf16 12.9x fp32's time), "
                    "1 thread (probe); torch 2.13.0; load average 1.9 1.5 1.2; steps/s: static-G4 0.70, sagc 0.45")
    args = argparse.Namespace(eval_kind="pass@1", target_gain=0.03, eval_every_s=60.0)
    text = bench.markdown(summary, args, 60.0, line)
    assert line in text
