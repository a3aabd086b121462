"""kernels/stream.py against NumPy on whole columns: sums, ranks and null rows computed
chunk by chunk must equal the whole-column results bit for bit."""

import numpy as np
import pytest

from plurel_fast.kernels.post import nan_rows
from plurel_fast.kernels.stream import (
    PairwiseSum,
    null_mask,
    null_threshold,
    rank_chunk,
    sorted_for_ranks,
)


def _chunks(n, rng):
    """Random chunk boundaries covering [0, n), sizes 1 to ~n/3 (and some empty)."""
    cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(0, 12)))
    bounds = [0, *cuts.tolist(), n]
    return list(zip(bounds[:-1], bounds[1:]))


def _streamed_sum(x, rng):
    s = PairwiseSum(len(x))
    for a, b in _chunks(len(x), rng):
        s.add(x[a:b])
    return s.result()


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8, 9, 127, 128, 129, 200, 1000, 4097, 65_537, 300_001])
def test_pairwise_sum_is_numpys_sum(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 9, n)
    assert _streamed_sum(x, rng) == x.sum()
    if n:
        mean = _streamed_sum(x, rng) / n
        assert mean == x.mean()
        d = x - mean
        assert np.sqrt(_streamed_sum(d * d, rng) / n) == x.std()


def test_pairwise_sum_checks_its_count():
    s = PairwiseSum(3)
    s.add(np.ones(2))
    with pytest.raises(ValueError):
        s.result()
    with pytest.raises(ValueError):
        s.add(np.ones(2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranks_are_the_stable_argsort(dtype):
    rng = np.random.default_rng(1)
    n = 5000
    # ties, signed zeros, NaN and infinities
    x = rng.choice(np.array([0.0, -0.0, 1.5, -2.0, np.nan, np.inf, -np.inf]), n).astype(dtype)
    x[::3] = rng.standard_normal(len(x[::3]))
    want = np.empty(n, dtype=np.int64)
    want[np.argsort(x, kind="stable")] = np.arange(n)
    state = sorted_for_ranks(x)
    got = np.concatenate([rank_chunk(state, x[a:b]) for a, b in _chunks(n, rng)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n,perc", [(10, 0.1), (1000, 0.05), (70_000, 0.01), (200_003, 0.1)])
def test_null_rows_match_nan_rows(n, perc):
    rng = np.random.default_rng(n)
    key = int(rng.integers(0, 2**63))
    rows = nan_rows(n, perc, key)
    m = len(rows)
    threshold, tied = null_threshold(key, n, m)
    valid = np.concatenate([null_mask(key, a, b, threshold, tied) for a, b in _chunks(n, rng)])
    np.testing.assert_array_equal(np.flatnonzero(~valid), rows)


def test_null_mask_breaks_ties_by_row():
    """Equal scores (practically never seen) are null in row order up to the count: a
    threshold equal to a row's own score with that row listed as tied makes it null."""
    from plurel_fast.kernels.rng import hash64

    key = 12345
    scores = np.array([hash64(np.uint64(key), r, 0) for r in range(50)], dtype=np.uint64)
    r = int(np.argsort(scores)[3])  # the 4th smallest score
    valid = null_mask(key, 0, 50, int(scores[r]), np.array([r]))
    assert np.flatnonzero(~valid).tolist() == sorted(np.argsort(scores)[:4].tolist())
    valid = null_mask(key, 0, 50, int(scores[r]), np.array([], dtype=np.int64))
    assert np.flatnonzero(~valid).tolist() == sorted(np.argsort(scores)[:3].tolist())


def test_warm_up_runs():
    from plurel_fast.stream import warm_up

    warm_up()
