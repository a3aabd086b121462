"""Tabulated Beta noise (kernels/noise.py) against scipy's Beta law."""

import numpy as np
import pytest
from numba import njit
from scipy import stats

from plurel_fast.kernels import rng
from plurel_fast.kernels.noise import (
    NUM_GUIDE,
    NUM_KNOTS,
    TABLE_MIN_SHAPE,
    add_node_noise,
    beta_noise_block,
    beta_tables,
)

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


def _tables(a, b):
    from plurel_fast.kernels.noise import quantile_tables

    alphas, betas = np.array([a]), np.array([b])
    x, cdf, guide = beta_tables(alphas, betas, NUM_KNOTS, NUM_GUIDE)
    return quantile_tables(alphas, betas, x, cdf)[0], x[0], cdf[0], guide[0]


@njit(cache=False)
def _kernel_noise(acc, key, row0, a, b, q, x, cdf, guide, tile):
    """``add_node_noise`` over acc's rows in tiles of ``tile`` rows, as propagation calls it."""
    n, dim = acc.shape
    unif = np.empty(dim)
    for t0 in range(0, n, tile):
        add_node_noise(acc[t0:], min(tile, n - t0), dim, row0 + t0, key, a, b, q, x, cdf, guide, unif)


@pytest.mark.parametrize(
    "a, b, dim",
    [(2.0, 3.0, 32), (0.5, 5.0, 32), (0.7, 1.3, 7), (0.3, 2.0, 32), (2.0, 3.0, 16), (1.5, 0.9, 48),
     (2.5, 2.5, 18)],
)
def test_kernel_adds_the_reference_draws(a, b, dim):
    """add_node_noise adds float32(beta_noise_block / dim) bit for bit (tables or rejection),
    in any tiling, on its vector path (dim a multiple of 16) and its scalar one; 2000 x 32
    draws include ~250 in the outer quantile cells."""
    n, row0 = 2000, 10**9
    base = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
    if min(a, b) >= TABLE_MIN_SHAPE:
        draws = beta_noise_block(77, row0, n, a, b, n_draws=dim)
    else:
        draws = np.array([[rng.beta(77, row0 + i, j, a, b) for j in range(dim)] for i in range(n)])
    want = base + (draws / dim).astype(np.float32)
    for tile in (64, 37):
        acc = base.copy()
        _kernel_noise(acc, np.uint64(77), np.int64(row0), a, b, *_tables(max(a, 0.5), b), tile)
        assert np.array_equal(acc, want)


@njit(cache=False)
def _bits(key, n, n_draws):
    out = np.empty((n, n_draws), dtype=np.uint64)
    for i in range(n):
        for j in range(n_draws):
            out[i, j] = rng.hash32(key, i, j)
    return out


@pytest.mark.parametrize("a, b", [(0.5, 0.5), (3.3, 1.0)])
def test_draws_invert_32_bits_and_refine_the_outer_cells(a, b):
    """Inner-cell draws are the sampler at u = (bits + 1/2) 2^-32 exactly; outer-cell draws
    use a finer u inside [bits, bits + 1] 2^-32 (21 more bits from a second hash)."""
    from plurel_fast.kernels.noise import _EDGE_CELLS, NUM_QUANTILES, beta_from_quantiles

    n, n_draws = 20_000, 4
    tabs = _tables(a, b)
    d = beta_noise_block(5, 0, n, a, b, n_draws=n_draws).ravel()
    bits = _bits(np.uint64(5), n, n_draws).ravel().astype(np.float64)
    cell = (bits // 2**21).astype(np.int64)
    edge = (cell < _EDGE_CELLS) | (cell >= NUM_QUANTILES - _EDGE_CELLS)
    assert 150 < edge.sum() < 500  # 0.39 % of 80 000 draws: 312 +- 18
    inv = np.vectorize(lambda u: beta_from_quantiles(u, a, b, *tabs))
    assert np.array_equal(d[~edge], inv((bits[~edge] + 0.5) / 2**32))
    lo, hi = inv(bits[edge] / 2**32 + 2**-60), inv((bits[edge] + 1) / 2**32)
    assert np.all((lo <= d[edge]) & (d[edge] <= hi))
    assert np.mean(d[edge] != inv((bits[edge] + 0.5) / 2**32)) > 0.9
