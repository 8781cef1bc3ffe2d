"""sagc.tasks.machine: precision and threads chosen from a probe (mocked here: no timing
assertions), the user's explicit choice winning, the probe's cache, and the machine line."""

from dataclasses import replace

import pytest

from sagc.tasks import machine
from sagc.tasks.machine import Compute, bf16_from_probe, choose, machine_line, threads_from_probe

REAL_PROBE = machine.probe  # tests/conftest.py replaces it with a canned answer for every test

# A CPU without native bf16 (the Zen 3 EPYC of issue 20): bf16 autocast emulated, 12x fp32's time;
# two threads slower than one for these small ops.
NO_NATIVE_BF16 = {"version": machine.PROBE_VERSION, "fp32_ms": 14.0, "bf16_ms": 181.0, "threads_ms": {"1": 14.0, "2": 20.0}}


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(machine, "probe", lambda refresh=False: dict(NO_NATIVE_BF16))
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma"})


def test_fp32_where_bf16_is_not_measured_faster():
    assert bf16_from_probe(NO_NATIVE_BF16) is False
    assert bf16_from_probe({"fp32_ms": 10.0, "bf16_ms": 9.0}) is False  # within the margin: fp32
    assert bf16_from_probe({"fp32_ms": 10.0, "bf16_ms": 5.0}) is True  # AMX-like


@pytest.mark.parametrize("times,want", [
    ({"1": 10.0, "2": 12.0}, 1),  # more threads slower: 1
    ({"1": 10.0, "2": 9.5}, 1),  # barely faster: 1 when in doubt
    ({"1": 10.0, "2": 6.0, "4": 5.8}, 2),  # 4 ties with 2: the fewest
    ({"1": 10.0, "2": 6.0, "4": 3.0}, 4),
    ({}, 1),
])
def test_threads_from_probe(times, want):
    assert threads_from_probe({"threads_ms": times}) == want


def test_choice_from_the_probe_and_the_users_choice_wins(no_native_bf16):
    c = choose(cuda=False)
    assert (c.bf16, c.bf16_by, c.threads, c.threads_by) == (False, "probe", 1, "probe")
    assert c.grpo_args() == {"use_cpu": True, "bf16": False}
    user = choose(bf16=True, threads=3, cuda=False)
    assert (user.bf16, user.bf16_by, user.threads, user.threads_by) == (True, "user", 3, "user")
    assert user.grpo_args() == {"use_cpu": True, "bf16": True}
    assert choose(threads=2, cuda=False).threads_by == "user" and choose(threads=2, cuda=False).bf16 is False


def test_cuda_keeps_trl_and_torch_defaults(monkeypatch):
    monkeypatch.setattr(machine, "probe", lambda refresh=False: pytest.fail("probed on a GPU machine"))
    c = choose(cuda=True)
    assert c.bf16 is None and c.threads is None and c.grpo_args() == {}
    assert choose(bf16=False, cuda=True).grpo_args() == {"bf16": False}


@pytest.mark.parametrize("kw,needle", [({"bf16": "yes"}, "bf16"), ({"threads": 0}, "num_threads"),
                                       ({"threads": 2.0}, "num_threads")])
def test_bad_explicit_choices_name_the_setting(kw, needle):
    with pytest.raises(ValueError, match=needle):
        choose(cuda=False, **kw)


def test_probe_runs_once_per_machine_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGC_CACHE", str(tmp_path))
    monkeypatch.setattr(machine, "_MEMO", {})
    calls = []
    monkeypatch.setattr(machine, "measure", lambda: calls.append(1) or {**NO_NATIVE_BF16, "when": "now"})
    assert REAL_PROBE()["bf16_ms"] == 181.0
    monkeypatch.setattr(machine, "_MEMO", {})  # a new process: reads the file
    assert REAL_PROBE()["fp32_ms"] == 14.0 and len(calls) == 1
    files = list((tmp_path / "machine").glob("probe-*.json"))
    assert len(files) == 1
    REAL_PROBE(refresh=True)
    assert len(calls) == 2


def test_measure_reports_both_precisions_and_thread_counts():
    pytest.importorskip("torch")
    import torch

    threads = torch.get_num_threads()
    result = machine.measure(max_threads=2, repeats=1)
    assert result["fp32_ms"] > 0 and result["bf16_ms"] > 0
    assert set(result["threads_ms"]) <= {"1", "2"} and "1" in result["threads_ms"]
    assert torch.get_num_threads() == threads  # restored


def test_machine_line_holds_what_a_reader_needs(no_native_bf16):
    pytest.importorskip("torch")
    info = machine.machine_info(choose(cuda=False))
    line = machine_line(info, {"static-G16": 0.25, "sagc": 0.5})
    for part in ("machine: ", "cores", "avx512_bf16 no", "amx no", "fp32 (probe: bf16 12.9x fp32's time)",
                 "1 thread (probe)", "torch ", "steps/s: static-G16 0.25, sagc 0.50"):
        assert part in line, (part, line)
    if info["load_avg"] is not None:
        assert "load average" in line
    user = machine_line(machine.machine_info(choose(bf16=True, threads=2, cuda=False)))
    assert "bf16 (user), 2 threads (user)" in user
    assert machine_line(None).startswith("machine: unknown CPU")  # an old report: no crash


def test_warm_start_threads_resolve_to_the_machine_choice_and_explicit_wins():
    pytest.importorskip("torch")
    from sagc.tasks import warmstart
    from sagc.tasks.config import WarmStartConfig

    auto = WarmStartConfig()
    assert auto.num_threads is None
    assert warmstart.resolved(auto).num_threads == 1  # the canned probe's choice (tests/conftest.py)
    assert warmstart.resolved(auto, threads=3).num_threads == 3
    assert warmstart.resolved(replace(auto, num_threads=2), threads=3).num_threads == 2
    # the cache key names the threads the weights were trained with
    assert warmstart.config_key(auto) == warmstart.config_key(replace(auto, num_threads=1))
    assert warmstart.config_key(auto) != warmstart.config_key(replace(auto, num_threads=2))
    with pytest.raises(ValueError, match="WarmStartConfig.num_threads"):
        WarmStartConfig(num_threads=0)


def test_compute_as_dict_is_json():
    import json

    d = Compute(probe=NO_NATIVE_BF16).as_dict()
    assert json.loads(json.dumps(d))["probe"]["bf16_ms"] == 181.0
