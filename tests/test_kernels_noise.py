"""Tabulated Beta noise (kernels/noise.py) against scipy's Beta law."""

import numpy as np
import pytest
from scipy import stats

from plurel_fast.kernels.noise import NUM_GUIDE, NUM_KNOTS, beta_noise_block, beta_tables

SHAPES = [(0.5, 0.5), (0.5, 5.0), (5.0, 0.5), (2.0, 3.0), (1.0, 1.0), (5.0, 5.0), (0.7, 1.3), (3.3, 1.0)]


@pytest.mark.parametrize("a, b", SHAPES)
def test_table_cdf_is_accurate(a, b):
    x, cdf, _ = beta_tables(np.array([a]), np.array([b]), NUM_KNOTS, NUM_GUIDE)
    assert np.all(np.diff(cdf[0]) >= 0) and cdf[0, 0] == 0 and cdf[0, -1] == 1
    # 1e-5 in CDF is ten times below what KS on 10^6 draws can resolve.
    assert np.abs(cdf[0] - stats.beta(a, b).cdf(x[0])).max() < 2e-5


@pytest.mark.parametrize("a, b", SHAPES)
def test_draws_follow_beta(a, b):
    n = 400_000
    d = beta_noise_block(12345, 0, n, a, b)[:, 0]
    assert np.all((d >= 0) & (d <= 1))
    assert stats.kstest(d, stats.beta(a, b).cdf).pvalue > 1e-4  # false failure rate 1e-4 per case
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(d.mean() - mean) < 5 * np.sqrt(var / n)


def test_draws_are_counter_based():
    full = beta_noise_block(9, 0, 1000, 2.0, 3.0, n_draws=4)
    part = beta_noise_block(9, 500, 100, 2.0, 3.0, n_draws=4)
    assert np.array_equal(full[500:600], part)
    assert abs(np.corrcoef(full[:, 0], full[:, 1])[0, 1]) < 5 / np.sqrt(1000)


def test_bad_shapes():
    with pytest.raises(ValueError, match="beta shapes"):
        beta_noise_block(1, 0, 10, 0.0, 1.0)


@pytest.mark.parametrize("a, b", SHAPES)
def test_sampler_inverse_cdf_is_accurate(a, b):
    """The full sampler (quantile interpolation, tails from the knots) at many u."""
    from plurel_fast.kernels.noise import beta_from_quantiles, quantile_tables

    alphas, betas = np.array([a]), np.array([b])
    x, cdf, guide = beta_tables(alphas, betas, NUM_KNOTS, NUM_GUIDE)
    q = quantile_tables(alphas, betas, x, cdf)
    u = (np.arange(200_000) + 0.5) / 200_000
    got = np.array([beta_from_quantiles(ui, a, b, q[0], x[0], cdf[0], guide[0]) for ui in u[::97]])
    err = np.abs(stats.beta(a, b).cdf(got) - u[::97]).max()
    assert err < 3e-5
