"""`sagc whatif`: engine calibration from a trace's timings, step-aligned replay, presets, the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sagc.cli import app
from sagc.sim import load_scenario, write_run_trace
from sagc.sim.calibrate import calibrate, nnls_small
from sagc.sim.engines import REGISTRY, get_engine
from sagc.sim.scenario import EngineSettings
from sagc.sim.whatif import ReplayModel, demo_whatif_section, load_records, run_whatif, whatif_markdown
from sagc.trace import read_trace, write_trace

ENGINE = EngineSettings(replicas=1, slots=64, decode_s_per_iter=0.02, decode_s_per_seq=0.0002,
                        prefill_s_per_token=0.00001, train_s_per_token=0.00003, overhead_s=1.5)
FITTED = ("decode_s_per_iter", "decode_s_per_seq", "prefill_s_per_token", "train_s_per_token", "overhead_s")


def simulated_trace(tmp_path, engine=ENGINE, controller=None, steps=40, name="run.jsonl"):
    sc = load_scenario("heavy-tail").replace(steps=steps)
    sc = dataclasses.replace(sc, engine=engine)
    path = write_run_trace(sc, tmp_path / name, controller=controller or {"kind": "static", "group_size": 16})
    return path, sc


def with_noise(src, dst, rel_sd, seed=0):
    """The same trace with rollout_s and the training part of step_s scaled by (1 + rel_sd * N(0, 1))."""
    rng = np.random.default_rng(seed)
    out = []
    for rec in read_trace(src):
        train = rec["step_s"] - rec["rollout_s"]
        rec["rollout_s"] *= 1 + rel_sd * rng.standard_normal()
        rec["step_s"] = rec["rollout_s"] + train * (1 + rel_sd * rng.standard_normal())
        out.append(rec)
    return write_trace(dst, out)


@pytest.mark.parametrize("engine, controller", [
    (ENGINE, {"kind": "sagc"}),  # G varies from step to step
    (dataclasses.replace(ENGINE, replicas=2, slots=16), {"kind": "static", "group_size": 16}),  # queueing, 2 replicas
])
def test_calibrate_recovers_the_engine_that_wrote_the_trace(tmp_path, engine, controller):
    path, sc = simulated_trace(tmp_path, engine, controller)
    records, sources = load_records([path])
    cal = calibrate(records, sources, slots=engine.slots, replicas=engine.replicas,
                    prompt_tokens=sc.lengths.prompt_tokens)
    for key in FITTED:
        want, got = getattr(engine, key), getattr(cal.engine, key)
        assert abs(got - want) <= 0.05 * want, (key, got, want)
    assert cal.rollout_rel_rmse < 1e-6 and cal.step_rel_rmse < 1e-6 and not cal.notes


def test_calibrate_with_noisy_timings_stays_within_five_percent(tmp_path):
    path, sc = simulated_trace(tmp_path, controller={"kind": "sagc"}, steps=120)
    noisy = with_noise(path, tmp_path / "noisy.jsonl", 0.01)
    records, sources = load_records([noisy])
    cal = calibrate(records, sources, slots=ENGINE.slots, prompt_tokens=sc.lengths.prompt_tokens)
    for key in ("decode_s_per_iter", "decode_s_per_seq", "train_s_per_token", "overhead_s"):
        want, got = getattr(ENGINE, key), getattr(cal.engine, key)
        assert abs(got - want) <= 0.05 * want, (key, got, want)
    assert 0.003 < cal.rollout_rel_rmse < 0.02  # the noise, not a misfit


def test_trace_without_timings_is_a_clear_error(tmp_path):
    path, _ = simulated_trace(tmp_path, steps=5)
    records = list(read_trace(path))
    for rec in records:
        rec["rollout_s"] = None
        rec["step_s"] = None
    bare = write_trace(tmp_path / "bare.jsonl", records)
    with pytest.raises(ValueError, match=r"bare\.jsonl: no step records rollout_s"):
        run_whatif([bare], engine="calibrate")
    result = CliRunner().invoke(app, ["whatif", str(bare)])
    assert result.exit_code == 2
    assert "rollout_s" in result.output and "bare.jsonl" in result.output
    # a preset engine needs no timings
    assert run_whatif([bare], engine="llama-8b-h100-vllm")["recorded"]["steps"] == 5


def test_replaying_a_static_run_at_its_own_g_reproduces_its_step_times(tmp_path):
    path, sc = simulated_trace(tmp_path, steps=60)
    noisy = with_noise(path, tmp_path / "noisy.jsonl", 0.02, seed=3)
    for trace, exact in ((path, True), (noisy, False)):
        result = run_whatif([trace], engine="calibrate", slots=ENGINE.slots, prompt_tokens=sc.lengths.prompt_tokens)
        cal = result["engine"]["calibration"]
        chk = result["replay_check"]
        assert chk["group_size"] == 16 and chk["steps"] == 60
        assert chk["step_rel_rmse"] <= cal["step_rel_rmse"] + 1e-6  # within the calibration error
        recorded = [r["step_s"] for r in read_trace(trace)]
        run = next(r for r in result["sim"]["controllers"] if r["label"] == "static-G16")
        if exact:
            np.testing.assert_allclose(run["series"]["step_s"], recorded, rtol=1e-6)
        else:
            assert 0.005 < chk["step_rel_rmse"] < 0.05


def test_replay_serves_the_recorded_completions_first_and_common_numbers_beyond(tmp_path):
    path, _ = simulated_trace(tmp_path, steps=4)
    records, _ = load_records([path])
    result = run_whatif([path], engine="llama-8b-h100-vllm", group_sizes=[4, 16, 32], steps=4)
    assert [r["label"] for r in result["sim"]["controllers"]] == ["static-G4", "static-G16", "static-G32", "sagc"]
    assert result["resampled_share"]["static-G16"] == 0.0 and result["resampled_share"]["static-G32"] == 0.5
    sc = load_scenario("heavy-tail").replace(group_sizes=[4, 16, 32])
    model = ReplayModel(sc, records)
    for t, rec in enumerate(records):
        full = model.sample_step(t, 32)
        for i, grp in enumerate(rec["groups"]):
            assert full.length[i, :16].tolist() == grp["lengths"]  # recorded order, all of them
            assert set(full.length[i, 16:].tolist()) <= set(grp["lengths"])  # extras drawn from the group
        np.testing.assert_array_equal(model.sample_step(t, 4).length, full.length[:, :4])  # first G kept
        np.testing.assert_array_equal(model.sample_step(t, 20).length, full.length[:, :20])


def test_sagc_runs_with_its_own_defaults_and_optional_delta(tmp_path):
    import sagc

    path, _ = simulated_trace(tmp_path, steps=30)
    default = run_whatif([path], engine="llama-8b-h100-vllm")
    delta = sagc.make("sagc").settings.delta  # "auto": no fixed budget for hindsight to rank against
    assert default["sim"]["hindsight"]["budget"] == (None if isinstance(delta, str) else delta)
    custom = run_whatif([path], engine="llama-8b-h100-vllm", delta=0.3)
    assert custom["sim"]["hindsight"]["budget"] == 0.3


def test_engine_presets_are_valid_and_cite_sources():
    assert len(REGISTRY) >= 3
    for preset in REGISTRY.values():
        assert preset.sources and preset.derivation and preset.settings.slots >= 1
        assert preset.settings.decode_s_per_iter > 0 and preset.settings.decode_s_per_seq > 0
    with pytest.raises(ValueError, match=r"unknown engine 'h100'; valid engines are \['llama"):
        get_engine("h100")


def test_nnls_small_keeps_coefficients_non_negative():
    rng = np.random.default_rng(0)
    x = rng.random((50, 3))
    y = x @ np.array([1.0, -0.5, 2.0])  # the unconstrained fit has a negative coefficient
    coef, used = nnls_small(x, y)
    assert np.all(coef >= 0) and 1 not in used
    coef, used = nnls_small(x, x @ np.array([0.5, 0.25, 3.0]))
    np.testing.assert_allclose(coef, [0.5, 0.25, 3.0], rtol=1e-9) and used == (0, 1, 2)


def test_cli_whatif_writes_json_and_plot_and_simulate_writes_traces(tmp_path):
    runner = CliRunner()
    scen = tmp_path / "s.yaml"
    scen.write_text("steps: 12\nprompts_per_step: 4\ngroup_sizes: [2, 8]\n"
                    "lengths: {model: lognormal, median: 100, sigma: 0.8, max_tokens: 2000}\n"
                    "engine: {slots: 64, overhead_s: 1.0}\ncontrollers: [{kind: static, group_size: 8}]\n")
    res = runner.invoke(app, ["simulate", str(scen), "--trace-dir", str(tmp_path / "tr"), "--no-hindsight"])
    assert res.exit_code == 0, res.output
    trace = tmp_path / "tr" / "static-G8.jsonl"
    assert len(list(read_trace(trace))) == 12
    res = runner.invoke(app, ["whatif", str(trace), "--slots", "64", "--json", str(tmp_path / "w.json"),
                              "--plot", str(tmp_path / "w.png"), "--group-sizes", "2,4,8"])
    assert res.exit_code == 0, res.output
    assert "SIMULATED" in res.output and "fit error" in res.output
    data = json.loads((tmp_path / "w.json").read_text())
    # the headroom line names the static G with the highest full-engine ceiling and its ratio
    by_g = data["sim"]["hindsight"]["by_g"]
    g = max(by_g, key=lambda k: by_g[k]["signal_per_s_full_engine"])
    ratio = by_g[g]["signal_per_s_full_engine"] / max(s["signal_per_s"] for s in by_g.values())
    assert ratio > 1.0 and f"Full-engine ceiling: with every rollout keeping all slots busy, static G = {g}" in " ".join(
        res.output.split()) and f"{ratio:.2f}x the best" in " ".join(res.output.split())
    assert data["label"] == "simulated" and data["group_sizes"] == [2, 4, 8]
    assert (tmp_path / "w.png").stat().st_size > 0
    res = runner.invoke(app, ["whatif", str(trace), "--engine", "nope"])
    assert res.exit_code == 2 and "valid engines are" in res.output


def test_demo_report_section_replays_the_largest_static_run(tmp_path):
    (tmp_path / "traces").mkdir()
    simulated_trace(tmp_path / "traces", steps=10, name="static-G16.jsonl")
    simulated_trace(tmp_path / "traces", steps=10, controller={"kind": "sagc"}, name="sagc.jsonl")
    text = demo_whatif_section(tmp_path)
    assert text.startswith("## These rollouts on a GPU engine (simulated)")
    assert "Simulated, not measured" in text and "static-G16.jsonl" in text and "| sagc |" in text
    # SAGC under every tail-control policy, each gain beside its costs (a second table)
    costs = text.split("what each gains, beside what it costs")[1]
    for label in ("sagc", "sagc+drop", "sagc+resume", "sagc+defer", "sagc+auto"):
        assert f"| {label} |" in costs
    assert "on-policy tokens" in costs and "prompts dropped" in costs and "mean deferral wait" in costs
    assert "sagc+" not in demo_whatif_section(tmp_path, rollout=())
    assert demo_whatif_section(tmp_path / "nothing") is None
    assert "What-if" in whatif_markdown(run_whatif([tmp_path / "traces" / "sagc.jsonl"], engine="llama-8b-h100-vllm"))


def test_constants_the_trace_cannot_separate_are_named(tmp_path):
    # every completion of a step has the same length: A = n * I, so the per-iteration and the
    # per-sequence decode costs are collinear; no step_s: training and overhead are not fitted
    records = []
    for t in range(6):
        length = 10 + 7 * t
        records.append({"step": t, "group_size": 4, "rollout_s": 0.5 + 0.01 * length * 4, "step_s": None,
                        "groups": [{"id": f"p{i}", "lengths": [length] * 4} for i in range(2)]})
    path = write_trace(tmp_path / "flat.jsonl", records)
    recs, sources = load_records([path])
    cal = calibrate(recs, sources)
    text = " ".join(cal.notes)
    assert "not identifiable" in text and "flat.jsonl: step_s is not recorded" in text
    assert cal.engine.train_s_per_token == 0 and cal.engine.overhead_s == 0
    assert cal.rollout_rel_rmse < 1e-9  # what it could fit, it fitted exactly
    assert np.isnan(cal.step_rel_rmse)
