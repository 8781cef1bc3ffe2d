"""Shared by every test: the machine probe answers a fixed result (fp32, 1 thread) instead of
timing this machine, so trainer arguments are the same everywhere and no test spends a second
on it. Tests of the probe itself (tests/tasks/test_machine.py) call the real measurement.

Session-scoped, so module- and session-scoped fixtures (a warm-start checkpoint built once per
module) see the canned answer too: with a function-scoped patch they ran the real probe, and on a
machine where it picks 2 threads their checkpoint's cache key (threads are part of it) differed
from the tests' own."""

import pytest

CANNED_PROBE = {"version": 1, "fp32_ms": 10.0, "bf16_ms": 20.0, "threads_ms": {"1": 10.0, "2": 12.0},
                "when": "test", "load_avg": None}


@pytest.fixture(autouse=True, scope="session")
def canned_machine_probe():
    from sagc.tasks import machine

    patch = pytest.MonkeyPatch()
    patch.setattr(machine, "probe", lambda refresh=False: dict(CANNED_PROBE))
    yield CANNED_PROBE
    patch.undo()
