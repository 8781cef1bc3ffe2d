import numpy as np
import pytest

from sagc.utility import fit_beta, informative_prob, normalise, pass_rate_summary, utility

from core_streams import lognormal_step


def test_informative_prob_matches_monte_carlo():
    rng = np.random.default_rng(0)
    a, b = 1.0, 2.0
    p = rng.beta(a, b, 200_000)
    for g in (2, 4, 16):
        mc = np.mean(1 - p**g - (1 - p) ** g)
        assert informative_prob(a, b, [g])[0] == pytest.approx(mc, abs=0.005)


def test_fit_beta_recovers_pass_rate_distribution():
    rng = np.random.default_rng(1)
    sums = [pass_rate_summary(lognormal_step(rng, 32, 8, pass_rate=(2.0, 5.0)), 0.5) for _ in range(60)]
    a, b = fit_beta(sums)
    assert a / (a + b) == pytest.approx(2 / 7, abs=0.03)
    true_var = 2 * 5 / (49 * 8)
    assert a * b / ((a + b) ** 2 * (a + b + 1)) == pytest.approx(true_var, rel=0.35)


def test_fit_beta_without_data_is_the_prior():
    assert fit_beta([]) == (1.0, 1.0)


def test_utilities_shape_and_normalisation():
    sizes, bs = [2, 4, 8], [8, 8, 8]
    for kind in ("informative", "log", "inverse", lambda g, b: g * b):
        u = normalise(utility(kind, sizes, bs, (1.0, 1.0)))
        assert u.max() == pytest.approx(1.0) and np.all(np.diff(u) > 0)
    # fixed-completions mode: B = 64 / G, informative utility favours smaller G with easy prompts
    u = utility("informative", [2, 4, 8], [32, 16, 8], (1.0, 1.0))
    assert u[0] > u[2]


def test_bad_utility_callable_output_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        utility(lambda g, b: float("nan"), [2], [1], (1.0, 1.0))
