"""Shared by every test: the machine probe answers a fixed result (fp32, 1 thread) instead of
timing this machine, so trainer arguments are the same everywhere and no test spends a second
on it. Tests of the probe itself (tests/tasks/test_machine.py) call the real measurement."""

import pytest

CANNED_PROBE = {"version": 1, "fp32_ms": 10.0, "bf16_ms": 20.0, "threads_ms": {"1": 10.0, "2": 12.0},
                "when": "test", "load_avg": None}


@pytest.fixture(autouse=True)
def canned_machine_probe(monkeypatch):
    from sagc.tasks import machine

    monkeypatch.setattr(machine, "probe", lambda refresh=False: dict(CANNED_PROBE))
    return CANNED_PROBE
