"""Small scenarios built in code, shared by the simulator tests."""

import pytest

from sagc.sim import parse_scenario


def small_scenario(**changes):
    data = {
        "name": "unit", "steps": 40, "seed": 3, "prompts_per_step": 4, "group_sizes": [2, 4, 8],
        "lengths": {"model": "lognormal", "median": 100, "sigma": 0.5, "prompt_sigma": 0.3, "max_tokens": 2000,
                    "runaway_prob": 0.01, "wrong_length_factor": 1.3},
        "rewards": {"pass_rate": {"beta": [1.0, 1.0]}},
        "engine": {"slots": 16, "decode_s_per_iter": 0.01, "decode_s_per_seq": 0.001, "overhead_s": 1.0},
        "controllers": [{"kind": "static", "group_size": 8}, {"kind": "static", "group_size": 2}],
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {k: v for k, v in {**data[key], **value}.items() if v is not None}  # None drops a key
        else:
            data[key] = value
    return parse_scenario(data)


@pytest.fixture
def make_scenario():
    """small_scenario(**changes): top-level keys replace, nested mappings merge."""
    return small_scenario


@pytest.fixture
def scenario():
    return small_scenario()
