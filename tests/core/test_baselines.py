import numpy as np

import sagc

from core_streams import lognormal_step


def test_aimd_halves_on_event_and_grows_after_clean_steps():
    ctrl = sagc.make("aimd", increase_after=3, straggler={"rule": "reference"})
    allowed = [2, 4, 8, 16]
    assert ctrl.decide(allowed).group_size == 16
    spike = sagc.StepStats(group_id=[0, 0], length=[100, 100], reward=[0, 1], truncated=[0, 0], group_size=2)
    ctrl.update(spike)
    ctrl.update(sagc.StepStats(group_id=[0, 0], length=[100, 1000], reward=[0, 1], truncated=[0, 0],
                               group_size=2))  # 10x the reference: event
    assert ctrl.decide(allowed).group_size == 8
    for _ in range(3):
        ctrl.update(spike)
    assert ctrl.decide(allowed).group_size == 16


def test_inverse_pass_rate_tracks_difficulty():
    hard, easy = sagc.make("inverse_pass_rate", c=2.0), sagc.make("inverse_pass_rate", c=2.0)
    rng = np.random.default_rng(0)
    allowed = [2, 4, 8, 16, 32]
    for _ in range(60):
        hard.update(lognormal_step(rng, 8, 8, pass_rate=(1.0, 9.0)))  # p ~ 0.1 -> G ~ 20
        easy.update(lognormal_step(rng, 8, 8, pass_rate=(8.0, 2.0)))  # p ~ 0.8 -> G ~ 2.5
    assert hard.decide(allowed).group_size in (16, 32)
    assert easy.decide(allowed).group_size in (2, 4)
