import json

import yaml
from typer.testing import CliRunner

from sagc.cli import app

runner = CliRunner()

SCENARIO = {
    "name": "cli-unit", "steps": 30, "seed": 1, "prompts_per_step": 4, "group_sizes": [2, 4, 8],
    "lengths": {"model": "lognormal", "median": 100, "sigma": 0.5, "prompt_sigma": 0.3, "max_tokens": 2000,
                "runaway_prob": 0.01, "wrong_length_factor": 1.3},
    "rewards": {"pass_rate": {"beta": [1.0, 1.0]}},
    "engine": {"slots": 16, "decode_s_per_iter": 0.01, "decode_s_per_seq": 0.001, "overhead_s": 1.0},
    "straggler": {"rule": "reference", "kappa": 3.0, "window": 4},
    "controllers": [{"kind": "static", "group_size": 8}, {"kind": "sagc", "delta": 0.2, "V": 5}],
}


def test_simulate_writes_table_json_and_plot(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = runner.invoke(app, ["simulate", str(path), "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "sagc" in res.output and "stragglers" in res.output
    data = json.loads(out.read_text())
    labels = [c["label"] for c in data["controllers"]]
    assert len(labels) == 2 and any("sagc" in lab for lab in labels)
    for run in data["controllers"]:
        for key in ("straggler_rate", "mean_group_size", "sim_seconds", "steps", "informative_groups_per_s",
                    "tokens_per_s", "bubble_fraction", "p50_step_s", "p95_step_s"):
            assert key in run["summary"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "r2.json"
    assert runner.invoke(app, ["simulate", str(path), "--json", str(again)]).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # same scenario and seed: byte-identical


def test_simulate_bad_scenario_names_the_key(tmp_path):
    bad = dict(SCENARIO, lengths=dict(SCENARIO["lengths"], sigma=-1))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    res = runner.invoke(app, ["simulate", str(path)])
    assert res.exit_code == 2
    assert "lengths.sigma" in res.output


def test_simulate_bad_override_is_validated(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    res = runner.invoke(app, ["simulate", str(path), "--steps", "0"])
    assert res.exit_code == 2 and "steps" in res.output


def test_listing_commands():
    res = runner.invoke(app, ["scenarios"])
    assert res.exit_code == 0 and "heavy-tail" in res.output
    res = runner.invoke(app, ["controllers"])
    assert res.exit_code == 0 and "delta" in res.output and "aimd" in res.output
