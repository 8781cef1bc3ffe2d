"""The rollout engine: hand-computed schedules, and agreement with a token-by-token simulation."""

import heapq

import numpy as np
import pytest

from sagc.sim.engine import schedule, simulate_rollout, step_seconds
from sagc.sim.scenario import EngineSettings


def eng(**kw):
    base = dict(replicas=1, slots=2, decode_s_per_iter=1.0, decode_s_per_seq=0.1, prefill_s_per_token=0.0,
                train_s_per_token=0.0, overhead_s=0.0)
    base.update(kw)
    return EngineSettings(**base)


def brute_force(lengths, e: EngineSettings, prompt_tokens=0):
    """Iteration-by-iteration reference: each replica admits FIFO into free slots, then decodes."""
    n = len(lengths)
    start = np.zeros(n)
    finish = np.zeros(n)
    total_busy, rollout = 0.0, 0.0
    for r in range(e.replicas):
        queue = list(range(r, n, e.replicas))
        running = {}  # request -> tokens left
        clock = 0.0
        while queue or running:
            new = []
            while queue and len(running) < e.slots:
                k = queue.pop(0)
                running[k] = lengths[k]
                start[k] = clock
                new.append(k)
            cost = e.decode_s_per_iter + e.decode_s_per_seq * len(running) + e.prefill_s_per_token * prompt_tokens * len(new)
            clock += cost
            total_busy += cost * len(running)
            for k in list(running):
                running[k] -= 1
                if running[k] == 0:
                    finish[k] = clock
                    del running[k]
        rollout = max(rollout, clock)
    return rollout, total_busy, start, finish


def test_three_requests_two_slots_by_hand():
    # slots: A runs [1] then [3] (starts at iteration 1); B runs [2]. Active per iteration: 2, 2, 1, 1.
    res = simulate_rollout(np.array([1, 2, 3]), eng())
    iter_cost = [1.2, 1.2, 1.1, 1.1]
    assert res.rollout_s == pytest.approx(sum(iter_cost))
    assert res.finish_s == pytest.approx([1.2, 2.4, 4.6])
    assert res.start_s == pytest.approx([0.0, 0.0, 1.2])
    busy = 2 * 1.2 + 2 * 1.2 + 1.1 + 1.1
    assert res.busy_slot_s == pytest.approx(busy)
    assert res.bubble_fraction == pytest.approx(1 - busy / (2 * 4.6))
    assert res.iterations == 4


def test_prefill_is_paid_in_the_starting_iteration():
    # prefill 0.01 s/token x 100 tokens = 1 s for each sequence that starts in an iteration
    res = simulate_rollout(np.array([1, 2, 3]), eng(prefill_s_per_token=0.01), prompt_tokens=100)
    # iteration 0: two starts (+2 s); iteration 1: one start (+1 s)
    assert res.rollout_s == pytest.approx(1.2 + 2 + 1.2 + 1 + 1.1 + 1.1)
    assert res.finish_s[0] == pytest.approx(3.2)


def test_all_fit_no_bubble_when_equal_lengths():
    res = simulate_rollout(np.array([5, 5]), eng())
    assert res.rollout_s == pytest.approx(5 * 1.2)
    assert res.bubble_fraction == pytest.approx(0.0, abs=1e-12)


def test_one_straggler_makes_the_bubble():
    # 1 slot of 2 is idle for 9 of 10 iterations
    res = simulate_rollout(np.array([1, 10]), eng(decode_s_per_seq=0.0))
    assert res.rollout_s == pytest.approx(10.0)
    assert res.bubble_fraction == pytest.approx(1 - 11 / 20)


def test_replicas_round_robin_and_idle_replica_counts_as_bubble():
    # replica 0 gets requests 0 and 2 (lengths 4, 4); replica 1 gets request 1 (length 1)
    res = simulate_rollout(np.array([4, 1, 4]), eng(replicas=2, decode_s_per_seq=0.0))
    assert res.rollout_s == pytest.approx(4.0)
    assert res.finish_s == pytest.approx([4.0, 1.0, 4.0])
    assert res.bubble_fraction == pytest.approx(1 - 9 / (2 * 2 * 4.0))


def test_schedule_matches_a_plain_heap():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 50, size=40)
    start, finish = schedule(lengths, 7)
    free = [0] * 7
    for k, n in enumerate(lengths):
        s = heapq.heappop(free)
        assert start[k] == s
        heapq.heappush(free, s + int(n))
    assert np.array_equal(finish, start + lengths)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_token_by_token_simulation(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    lengths = rng.integers(1, 40, size=n)
    e = eng(replicas=int(rng.integers(1, 4)), slots=int(rng.integers(1, 9)), decode_s_per_iter=0.02,
            decode_s_per_seq=0.003, prefill_s_per_token=0.0001)
    res = simulate_rollout(lengths, e, prompt_tokens=50)
    rollout, busy, start, finish = brute_force(lengths.tolist(), e, prompt_tokens=50)
    assert res.rollout_s == pytest.approx(rollout)
    assert res.busy_slot_s == pytest.approx(busy)
    assert res.start_s == pytest.approx(start)
    assert res.finish_s == pytest.approx(finish)
    assert 0.0 <= res.bubble_fraction < 1.0


@pytest.mark.parametrize("replicas", [1, 3])
def test_no_queueing_closed_form_agrees_with_token_by_token(replicas):
    lengths = np.random.default_rng(9).integers(1, 30, size=20)
    lengths[3] = lengths[7]  # ties make zero-width pieces
    e = eng(replicas=replicas, slots=32, decode_s_per_iter=0.02, decode_s_per_seq=0.003, prefill_s_per_token=0.001)
    res = simulate_rollout(lengths, e, prompt_tokens=10)
    rollout, busy, start, finish = brute_force(lengths.tolist(), e, prompt_tokens=10)
    assert res.rollout_s == pytest.approx(rollout)
    assert res.busy_slot_s == pytest.approx(busy)
    assert res.finish_s == pytest.approx(finish)
    assert np.all(res.start_s == 0)


def test_step_seconds_adds_training_and_overhead():
    e = eng(train_s_per_token=0.5, overhead_s=3.0)
    res = simulate_rollout(np.array([1, 2, 3]), e)
    assert step_seconds(res, 6, e) == pytest.approx(4.6 + 3.0 + 3.0)


def test_rejects_non_positive_lengths():  # an empty rollout is allowed: test_tail_control
    with pytest.raises(ValueError):
        simulate_rollout(np.array([3, 0]), eng())
