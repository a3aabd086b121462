"""Counter-based row RNG (``plurel_fast.kernels.rng``): distributions, independence,
determinism.

Every check uses fixed keys, so the suite is deterministic. Tolerances are
derived, not tuned: sample means and correlations are held to 5 standard
errors (two-sided false-failure rate 5.7e-7 per check for a correct generator
and a random key) and goodness-of-fit tests to p > 1e-4 (false-failure rate
1e-4 per test). With about 40 such checks the whole file would fail by chance
for a random choice of keys with probability below 5e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from plurel_fast.kernels import rng

P_MIN = 1e-4
SIGMAS = 5.0
KEY = np.uint64(0x5DEECE66D1234567)
BIG_KEY = np.uint64(2**64 - 12345)  # keys above 2**63 must work as well
N = 1_000_000


def within(value, expected, standard_error, what):
    assert abs(value - expected) <= SIGMAS * standard_error, (
        f"{what}: {value:.6g} vs {expected:.6g} (tolerance {SIGMAS} x {standard_error:.3g})"
    )


def corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@njit(cache=False)
def _hash_column(key, row0, n, draw):
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = rng.hash64(key, row0 + i, draw)
    return out


# ---------------------------------------------------------------------------
# uniform
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key, row0", [(KEY, 0), (BIG_KEY, 2**40)])
def test_uniform_histogram_mean_variance(key, row0):
    u = rng.uniform_block(key, row0, N)[:, 0]
    assert u.dtype == np.float64
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.bincount((u * 100).astype(np.int64), minlength=100)
    assert stats.chisquare(counts).pvalue > P_MIN
    within(u.mean(), 0.5, np.sqrt(1 / 12 / N), "uniform mean")
    # Var(s^2) ~ (mu4 - sigma^4) / n with mu4 = 1/80, sigma^4 = 1/144 for U(0, 1).
    within(u.var(), 1 / 12, np.sqrt((1 / 80 - 1 / 144) / N), "uniform variance")


def test_uniform_open_excludes_both_ends():
    u = np.array([rng.uniform_open(KEY, r, 3) for r in range(2000)])
    assert u.min() > 0.0 and u.max() < 1.0
    # The open variant is the closed one shifted by half a step of 2**-53
    # (before rounding to the float grid).
    closed = rng.uniform_block(KEY, 0, 2000, 3)[:, 0]
    assert np.all((u >= closed) & (u - closed <= 2.0**-53))


def test_uniform_lag1_and_cross_stream_correlations():
    n = N
    se = 1 / np.sqrt(n)
    block = rng.uniform_block(KEY, 0, n + 1, 0, 2)
    within(corr(block[:-1, 0], block[1:, 0]), 0.0, se, "consecutive rows")
    within(corr(block[:-1, 0], block[:-1, 1]), 0.0, se, "consecutive draws of a row")
    within(corr(block[:-1, 1], block[1:, 0]), 0.0, se, "last draw of a row vs next row")
    neighbour = rng.uniform_block(KEY + np.uint64(1), 0, n)[:, 0]
    within(corr(block[:-1, 0], neighbour), 0.0, se, "keys k and k + 1")
    flipped = rng.uniform_block(KEY ^ np.uint64(1 << 63), 0, n)[:, 0]
    within(corr(block[:-1, 0], flipped), 0.0, se, "keys differing in the top bit")


def test_row_and_draw_roles_are_not_symmetric():
    # (row=i, draw=j) and (row=j, draw=i) must be different draws.
    a = rng.uniform_block(KEY, 0, 200, 0, 200)
    off_diagonal = ~np.eye(200, dtype=bool)
    assert not np.any(a[off_diagonal] == a.T[off_diagonal])


def test_hash_bits_are_balanced():
    n = 200_000
    h = _hash_column(KEY, np.int64(0), np.int64(n), np.int64(7))
    bits = (h[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    freq = bits.mean(axis=0)
    se = 0.5 / np.sqrt(n)
    assert np.all(np.abs(freq - 0.5) <= SIGMAS * se), f"unbalanced bits: {freq}"
    assert np.unique(h).size == n  # a bijection of the row counter, no collisions


@njit(cache=False)
def _hash32_pairs(key, n, draw):
    out = np.empty((n, 2), dtype=np.uint64)
    for i in range(n):
        out[i, 0] = rng.hash32(key, i, 2 * draw)
        out[i, 1] = rng.hash32(key, i, 2 * draw + 1)
    return out


def test_hash32_is_the_halves_of_hash64():
    h = _hash_column(KEY, np.int64(0), np.int64(1000), np.int64(5))
    pairs = _hash32_pairs(KEY, np.int64(1000), np.int64(5))
    assert np.array_equal(pairs[:, 0], h & np.uint64(0xFFFFFFFF))
    assert np.array_equal(pairs[:, 1], h >> np.uint64(32))


@pytest.mark.parametrize("shift", [27, 0])  # top 5 bits, bottom 5 bits of each half
def test_hash32_halves_are_independent(shift):
    # Noise draws 2k and 2k + 1 share one hash64: the joint law of their 32-bit
    # halves must be uniform on 32 x 32 cells (expected count ~977 per cell).
    n = N
    pairs = _hash32_pairs(BIG_KEY, np.int64(n), np.int64(3))
    lo = ((pairs[:, 0] >> np.uint64(shift)) & np.uint64(31)).astype(np.int64)
    hi = ((pairs[:, 1] >> np.uint64(shift)) & np.uint64(31)).astype(np.int64)
    counts = np.bincount(lo * 32 + hi, minlength=1024)
    assert stats.chisquare(counts).pvalue > P_MIN
    u = pairs.astype(np.float64) / 2.0**32
    within(corr(u[:, 0], u[:, 1]), 0.0, 1 / np.sqrt(n), "halves of one hash")
    within(corr(u[:-1, 1], u[1:, 0]), 0.0, 1 / np.sqrt(n), "high half vs next row's low half")


# ---------------------------------------------------------------------------
# normal
# ---------------------------------------------------------------------------


def test_normal_moments_and_ks():
    z = rng.normal_block(KEY, 0, N)[:, 0]
    within(z.mean(), 0.0, 1 / np.sqrt(N), "normal mean")
    within(z.var(), 1.0, np.sqrt(2 / N), "normal variance")  # Var(s^2) = 2 sigma^4 / n
    assert stats.kstest(z, "norm").pvalue > P_MIN
    # Tails, where KS is weak: P(|Z| > 3) against its binomial standard error.
    p3 = 2 * stats.norm.sf(3)
    within(np.mean(np.abs(z) > 3), p3, np.sqrt(p3 * (1 - p3) / N), "P(|Z| > 3)")
    within(corr(z[:-1], z[1:]), 0.0, 1 / np.sqrt(N), "normal lag-1 rows")


# ---------------------------------------------------------------------------
# gamma and beta
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.5, 1.0, 2.5, 7.0, 30.0])
def test_gamma_ks(alpha):
    n = 200_000
    g = rng.gamma_block(KEY, 0, n, alpha)[:, 0]
    assert np.all(g >= 0) and np.all(np.isfinite(g))
    assert stats.kstest(g, stats.gamma(alpha).cdf).pvalue > P_MIN
    # Mean alpha, variance alpha: the mean's standard error is sqrt(alpha / n).
    within(g.mean(), alpha, np.sqrt(alpha / n), f"Gamma({alpha}) mean")


# Shapes are kept where float64 can hold the law: with b = 0.1, say, about 2 %
# of Beta(0.2, 0.1) lies within 1e-16 of 1 and must round to 1.0, an atom that
# KS (rightly, for a continuous law) rejects.
@pytest.mark.parametrize(
    "a, b",
    [(0.5, 0.5), (5.0, 0.5), (0.5, 5.0), (2.0, 3.0), (4.9, 1.1), (1.0, 1.0), (0.2, 0.3), (1.0, 4.0), (3.0, 1.0), (1.5, 1.5)],
)
def test_beta_ks(a, b):
    n = 200_000
    x = rng.beta_block(BIG_KEY, 0, n, a, b)[:, 0]
    assert np.all((x >= 0) & (x <= 1))
    assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > P_MIN
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    within(x.mean(), mean, np.sqrt(var / n), f"Beta({a}, {b}) mean")


def test_gamma_and_beta_draws_are_independent_across_draw_index():
    g = rng.gamma_block(KEY, 0, N // 4, 2.5, 0, 2)
    within(corr(g[:, 0], g[:, 1]), 0.0, 1 / np.sqrt(N // 4), "gamma draw 0 vs 1")
    x = rng.beta_block(KEY, 0, N // 4, 2.0, 3.0, 0, 2)
    within(corr(x[:, 0], x[:, 1]), 0.0, 1 / np.sqrt(N // 4), "beta draw 0 vs 1")


# ---------------------------------------------------------------------------
# categorical
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights",
    [
        [1.0, 0.0, 3.0, 6.0],  # unnormalised, a zero in the middle
        [0.0, 0.0, 2.0, 0.0],  # all mass on one inner category
        [0.0, 0.5, 0.5, 0.0, 0.0],  # zeros at both ends
        list(np.random.default_rng(0).dirichlet(np.ones(50))),
    ],
)
def test_categorical_frequencies(weights):
    weights = np.asarray(weights)
    n = 500_000
    draws = rng.categorical_block(KEY, 0, n, weights)[:, 0]
    counts = np.bincount(draws, minlength=weights.size)
    assert counts.size == weights.size
    positive = weights > 0
    assert np.all(counts[~positive] == 0), "a category of weight 0 was drawn"
    if positive.sum() > 1:
        expected = n * weights[positive] / weights.sum()
        assert stats.chisquare(counts[positive], expected).pvalue > P_MIN


# ---------------------------------------------------------------------------
# determinism: a draw is a pure function of (key, row, draw)
# ---------------------------------------------------------------------------


BLOCKS = [
    ("uniform", lambda row0, n, d0, nd: rng.uniform_block(KEY, row0, n, d0, nd)),
    ("normal", lambda row0, n, d0, nd: rng.normal_block(KEY, row0, n, d0, nd)),
    ("gamma", lambda row0, n, d0, nd: rng.gamma_block(KEY, row0, n, 0.7, d0, nd)),
    ("beta", lambda row0, n, d0, nd: rng.beta_block(KEY, row0, n, 0.5, 2.0, d0, nd)),
    (
        "categorical",
        lambda row0, n, d0, nd: rng.categorical_block(KEY, row0, n, [0.2, 0.5, 0.3], d0, nd),
    ),
]


@pytest.mark.parametrize("name, block", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_blocks_are_slices_of_bigger_blocks(name, block):
    big = block(0, 5000, 0, 6)
    assert big.shape == (5000, 6)
    assert np.array_equal(block(0, 5000, 0, 6), big)  # same arguments, same values
    assert np.array_equal(block(1234, 2000, 0, 6), big[1234:3234])
    assert np.array_equal(block(4999, 1, 2, 3), big[4999:, 2:5])
    assert block(10, 0, 0, 6).shape == (0, 6)


def test_scalar_functions_equal_block_entries():
    rows, draws = [0, 1, 77, 2**33], [0, 5]
    k = np.uint64(KEY)
    cdf = np.cumsum([0.2, 0.5, 0.3])
    for r in rows:
        for d in draws:
            assert rng.uniform(k, r, d) == rng.uniform_block(k, r, 1, d)[0, 0]
            assert rng.normal(k, r, d) == rng.normal_block(k, r, 1, d)[0, 0]
            assert rng.gamma(k, r, d, 0.7) == rng.gamma_block(k, r, 1, 0.7, d)[0, 0]
            assert rng.beta(k, r, d, 0.5, 2.0) == rng.beta_block(k, r, 1, 0.5, 2.0, d)[0, 0]
            assert (
                rng.categorical(k, r, d, cdf)
                == rng.categorical_block(k, r, 1, [0.2, 0.5, 0.3], d)[0, 0]
            )


def test_different_keys_give_different_streams():
    a = rng.uniform_block(KEY, 0, 1000)
    b = rng.uniform_block(KEY + np.uint64(1), 0, 1000)
    assert not np.any(a == b)


# ---------------------------------------------------------------------------
# argument errors of the block wrappers
# ---------------------------------------------------------------------------


def test_block_argument_errors():
    with pytest.raises(ValueError, match="must be non-negative"):
        rng.uniform_block(KEY, -1, 10)
    with pytest.raises(ValueError, match="must be non-negative"):
        rng.normal_block(KEY, 0, -10)
    with pytest.raises(ValueError, match="gamma shape must be > 0"):
        rng.gamma_block(KEY, 0, 10, 0.0)
    with pytest.raises(ValueError, match="beta shapes must be > 0"):
        rng.beta_block(KEY, 0, 10, 1.0, -2.0)
    for bad in ([], [0.0, 0.0], [0.5, -0.1], [[0.5, 0.5]]):
        with pytest.raises(ValueError, match="probs must be a non-empty 1-d array"):
            rng.categorical_block(KEY, 0, 10, bad)
