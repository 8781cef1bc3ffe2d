"""Length and reward generation: common random numbers, caps, drift, and the trace model."""

import numpy as np
import pytest

from sagc.sim import LengthModel, load_scenario


def big(small_scenario, model="lognormal", **lengths):
    base = {"model": model, "median": 200, "prompt_sigma": 0.0, "max_tokens": 100000, "runaway_prob": 0.0,
            "wrong_length_factor": 1.0}
    base.update({"sigma": 0.5} if model == "lognormal" else {"alpha": 3.0, "sigma": None})
    base.update(lengths)
    return small_scenario(prompts_per_step=2000, group_sizes=[1, 2, 4], lengths=base, controllers=[])


@pytest.mark.parametrize("name", ["lognormal", "pareto", "trace"])
def test_first_g_completions_do_not_depend_on_g(make_scenario, name):
    small_scenario = make_scenario
    sc = {"lognormal": small_scenario(),
          "pareto": small_scenario(lengths={"model": "pareto", "alpha": 2.5, "sigma": None}),
          "trace": load_scenario("trace-replay")}[name]
    model = LengthModel(sc)
    for step in (0, 7):
        wide = model.sample_step(step, 8)
        for g in (1, 2, 4):
            narrow = model.sample_step(step, g)
            assert np.array_equal(narrow.length, wide.length[:, :g])
            assert np.array_equal(narrow.reward, wide.reward[:, :g], equal_nan=True)
            assert np.array_equal(narrow.truncated, wide.truncated[:, :g])
    # beyond the largest allowed G the stream goes on: still a prefix
    assert np.array_equal(model.sample_step(3, 20).length[:, :8], model.sample_step(3, 8).length)


def test_steps_and_seeds_give_different_draws_and_same_seed_repeats(make_scenario):
    small_scenario = make_scenario
    sc = small_scenario()
    a, b = LengthModel(sc), LengthModel(sc)
    assert np.array_equal(a.sample_step(5, 4).length, b.sample_step(5, 4).length)
    assert not np.array_equal(a.sample_step(5, 4).length, a.sample_step(6, 4).length)
    other = LengthModel(small_scenario(seed=4))
    assert not np.array_equal(a.sample_step(5, 4).length, other.sample_step(5, 4).length)


def test_shapes_truncation_and_truncated_reward_is_zero(make_scenario):
    small_scenario = make_scenario
    sc = small_scenario(lengths={"max_tokens": 150, "runaway_prob": 0.05})
    batch = LengthModel(sc).sample_step(0, 8)
    assert batch.length.shape == (4, 8) and batch.prompts == 4 and batch.group_size == 8
    assert batch.length.min() >= 1 and batch.length.max() <= 150
    assert np.array_equal(batch.truncated, batch.length == 150)
    assert np.all(batch.reward[batch.truncated] == 0)
    assert set(np.unique(batch.reward)) <= {0.0, 1.0}


def test_runaway_completions_hit_the_cap(make_scenario):
    small_scenario = make_scenario
    sc = small_scenario(lengths={"runaway_prob": 0.999999})
    batch = LengthModel(sc).sample_step(0, 8)
    assert np.all(batch.length == 2000) and np.all(batch.truncated)


def test_lognormal_median_and_spread(make_scenario):
    batch = LengthModel(big(make_scenario)).sample_step(0, 4)
    log_len = np.log(batch.length.ravel())
    assert np.median(batch.length) == pytest.approx(200, rel=0.03)
    assert np.std(log_len) == pytest.approx(0.5, rel=0.05)


def test_pareto_median_and_tail_index(make_scenario):
    batch = LengthModel(big(make_scenario, "pareto")).sample_step(0, 4)
    lengths = batch.length.ravel()
    assert np.median(lengths) == pytest.approx(200, rel=0.03)
    # Pareto scaled to median m: P(L > x m) = x^-alpha / 2
    assert np.mean(lengths > 400) == pytest.approx(2.0 ** -3 / 2, rel=0.1)


def test_prompt_effect_correlates_lengths_within_a_prompt(make_scenario):
    batch = LengthModel(big(make_scenario, prompt_sigma=0.8, sigma=0.2)).sample_step(0, 4)
    log_len = np.log(batch.length)
    within = log_len.var(axis=1, ddof=1).mean()
    between = log_len.mean(axis=1).var(ddof=1)
    assert within == pytest.approx(0.04, rel=0.1)
    assert between == pytest.approx(0.64 + 0.04 / 4, rel=0.1)


def test_wrong_answers_are_longer(make_scenario):
    batch = LengthModel(big(make_scenario, sigma=1e-6, wrong_length_factor=1.5)).sample_step(0, 4)
    assert np.all(batch.length[batch.reward == 1] == 200)
    assert np.all(batch.length[batch.reward == 0] == 300)


def test_pass_rate_follows_the_beta_prior(make_scenario):
    small_scenario = make_scenario
    sc = small_scenario(prompts_per_step=4000, group_sizes=[8], rewards={"pass_rate": {"beta": [2.0, 6.0]}},
                        controllers=[])
    batch = LengthModel(sc).sample_step(0, 8)
    assert batch.reward.mean() == pytest.approx(0.25, abs=0.01)
    # between-prompt spread of pass rates: Var(mean of 8) = p(1-p)/8 + (1 - 1/8) Var(p)
    var_p = 2 * 6 / (8 ** 2 * 9)
    assert batch.reward.mean(axis=1).var() == pytest.approx(0.25 * 0.75 / 8 + (7 / 8) * var_p, rel=0.1)


@pytest.mark.parametrize("drift,step,factor", [
    ({"kind": "sine", "amplitude": 0.5, "period": 400}, 100, np.exp(0.5)),
    ({"kind": "sine", "amplitude": 0.5, "period": 400}, 300, np.exp(-0.5)),
    ({"kind": "linear", "per_step": 0.001}, 500, np.exp(0.5)),
])
def test_drift_shifts_the_median(make_scenario, drift, step, factor):
    model = LengthModel(big(make_scenario, drift=drift))
    assert np.median(model.sample_step(step, 4).length) == pytest.approx(200 * factor, rel=0.04)


def test_tail_drift_widens_the_spread(make_scenario):
    model = LengthModel(big(make_scenario, drift={"kind": "sine", "amplitude": 0.0, "period": 400, "tail_amplitude": 0.4}))
    assert np.std(np.log(model.sample_step(100, 4).length)) == pytest.approx(0.5 * np.exp(0.4), rel=0.05)


def test_trace_model_replays_recorded_groups():
    sc = load_scenario("trace-replay")
    model = LengthModel(sc)
    pool = model.pool
    members = {}
    for k in range(pool.size.shape[0]):
        sl = slice(pool.offset[k], pool.offset[k] + pool.size[k])
        members[k] = set(zip(pool.length[sl].tolist(), pool.reward[sl].tolist(), pool.truncated[sl].tolist()))
    batch = model.sample_step(11, 32)
    assert batch.length.shape == (sc.prompts_per_step, 32)
    for i in range(batch.prompts):
        triples = set(zip(batch.length[i].tolist(), batch.reward[i].tolist(), batch.truncated[i].tolist()))
        assert any(triples <= m for m in members.values()), f"prompt {i} mixes recorded groups"


def test_monte_carlo_path_uses_the_same_model(make_scenario):
    sc = big(make_scenario)
    length, reward, trunc = LengthModel(sc).sample_replicates(np.random.default_rng(0), np.zeros(3), 4)
    assert length.shape == (3, 2000, 4) and reward.shape == trunc.shape == length.shape
    assert np.median(length) == pytest.approx(200, rel=0.03)
