"""Whole-column statistics computed in row chunks, bit for bit as on the whole column
(DESIGN §5, §6.1): what writing a table in row groups needs where post-processing
reads every row (means, standard deviations, ranks, the null rows).

- :class:`PairwiseSum`: NumPy's ``np.add.reduce`` of a contiguous float64 array (its
  pairwise summation: blocks of at most 128 values, eight running sums each, halves
  split at multiples of 8), fed in chunks of any size. The same additions in the same
  order, so ``mean``/``std`` equal NumPy's on the whole column to the last bit.
- :func:`sorted_for_ranks`, :func:`rank_chunk`: the row's position in a stable sort
  (NaN last, ties by row order) from a sorted copy and a counter per position.
- :func:`null_threshold`, :func:`null_mask`: the rows of ``post.nan_rows`` (the
  ``m`` smallest ``hash64(key, row, 0)``) without holding a score per row: a
  histogram of the top 16 bits finds the ``m``-th score in two passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from plurel_fast.kernels.rng import hash64

__all__ = [
    "PairwiseSum",
    "null_mask",
    "null_threshold",
    "rank_chunk",
    "sorted_for_ranks",
]

_BLOCK = 128  # NumPy's PW_BLOCKSIZE


# ---------------------------------------------------------------------------
# NumPy's pairwise summation, streamed
# ---------------------------------------------------------------------------


@njit(cache=True)
def _leaf_starts(n):
    """Start of every leaf (a run of at most 128 values summed directly) of NumPy's
    pairwise recursion over n values, in order, and n at the end."""
    out = np.empty(n // 64 + 2, dtype=np.int64)
    count = 0
    stack_lo = np.empty(128, dtype=np.int64)
    stack_n = np.empty(128, dtype=np.int64)
    stack_lo[0] = 0
    stack_n[0] = n
    top = 1
    while top > 0:
        top -= 1
        lo = stack_lo[top]
        m = stack_n[top]
        if m <= _BLOCK:
            out[count] = lo
            count += 1
            continue
        half = m // 2
        half -= half % 8
        # right half pushed first: the left one is visited first
        stack_lo[top] = lo + half
        stack_n[top] = m - half
        stack_lo[top + 1] = lo
        stack_n[top + 1] = half
        top += 2
    out[count] = n
    return out[: count + 1]


@njit(cache=True)
def _leaf_sum(a, lo, n):
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    whole = n - (n % 8)
    while i < whole:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _leaf_sums(buf, base, starts, first, sums):
    """Sums of the leaves ``first, first+1, ...`` that lie wholly in ``buf`` (whose first
    value is value ``base`` of the column); returns the next leaf not summed."""
    leaf = first
    end = base + buf.shape[0]
    while leaf + 1 < starts.shape[0] and starts[leaf + 1] <= end:
        lo = starts[leaf]
        sums[leaf] = _leaf_sum(buf, lo - base, starts[leaf + 1] - lo)
        leaf += 1
    return leaf


@njit(cache=True)
def _combine(n, sums):
    """NumPy's recursion over n values with the leaf sums given in order."""
    # Post-order walk with an explicit stack; state 0: children not yet visited.
    stack_n = np.empty(128, dtype=np.int64)
    stack_state = np.empty(128, dtype=np.int64)
    values = np.empty(128, dtype=np.float64)
    nvals = 0
    leaf = 0
    top = 1
    stack_n[0] = n
    stack_state[0] = 0
    while top > 0:
        m = stack_n[top - 1]
        if m <= _BLOCK:
            top -= 1
            values[nvals] = sums[leaf]
            nvals += 1
            leaf += 1
            continue
        if stack_state[top - 1] == 0:
            stack_state[top - 1] = 1
            half = m // 2
            half -= half % 8
            stack_n[top] = m - half
            stack_state[top] = 0
            stack_n[top + 1] = half
            stack_state[top + 1] = 0
            top += 2
        else:
            top -= 1
            # the two children are the last two values, left before right
            values[nvals - 2] = values[nvals - 2] + values[nvals - 1]
            nvals -= 1
    return values[0]


class PairwiseSum:
    """``np.add.reduce`` of ``n`` float64 values handed over in chunks, in order.

    >>> s = PairwiseSum(len(x)); [s.add(c) for c in np.array_split(x, 7)]; s.result()
    equals ``x.sum()`` bit for bit (NumPy >= 1.9 on a contiguous float64 array).
    """

    def __init__(self, n: int):
        self.n = int(n)
        self._starts = _leaf_starts(np.int64(self.n)) if self.n > 0 else np.zeros(1, np.int64)
        self._sums = np.zeros(max(len(self._starts) - 1, 1), dtype=np.float64)
        self._next = 0  # next leaf to sum
        self._carry = np.empty(0, dtype=np.float64)
        self._seen = 0

    def add(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=np.float64)
        if self._seen + len(chunk) > self.n:
            raise ValueError(f"more than the {self.n} values announced")
        buf = chunk if not len(self._carry) else np.concatenate((self._carry, chunk))
        base = self._seen - len(self._carry)
        self._seen += len(chunk)
        self._next = _leaf_sums(buf, np.int64(base), self._starts, np.int64(self._next),
                                self._sums)
        done = int(self._starts[self._next]) - base
        self._carry = buf[done:].copy()

    def result(self) -> float:
        if self._seen != self.n:
            raise ValueError(f"{self._seen} values added, {self.n} announced")
        if self.n == 0:
            return 0.0
        return 0.0 + float(_combine(np.int64(self.n), self._sums))


# ---------------------------------------------------------------------------
# Stable ranks
# ---------------------------------------------------------------------------


@njit(cache=True)
def _less(a, b):
    # NaN sorts after every number, as in np.sort / np.argsort
    if np.isnan(a):
        return False
    if np.isnan(b):
        return True
    return a < b


_STRIDE = 256  # a coarse index of every 256th sorted value keeps searches in cache


@njit(cache=True)
def _lower_bound(a, lo, hi, v):
    """First position in a[lo:hi] whose value is not less than v (or hi)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if _less(a[mid], v):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _rank_chunk(sorted_values, coarse, counters, x, out):
    m = sorted_values.shape[0]
    for i in range(x.shape[0]):
        v = x[i]
        # coarse[j] = sorted_values[j * STRIDE]: the answer lies in the block after the
        # last coarse value less than v, so only that block of the big array is read.
        j = _lower_bound(coarse, 0, coarse.shape[0], v)
        lo = max(j - 1, 0) * _STRIDE
        hi = min(j * _STRIDE, m)
        if j == 0:
            lo = 0
            hi = 0
        p = _lower_bound(sorted_values, lo, hi, v)
        out[i] = p + counters[p]
        counters[p] += 1


def sorted_for_ranks(values: np.ndarray, copy: bool = True) -> tuple:
    """The state :func:`rank_chunk` needs: ``values`` sorted (NaN last; in place when
    ``copy`` is False), every 256th of them, and a zero counter per position (int32 when
    it can hold every rank)."""
    if copy:
        values = np.sort(values)
    else:
        values.sort()
    dtype = np.int32 if len(values) < 2**31 else np.int64
    return values, np.ascontiguousarray(values[::_STRIDE]), np.zeros(len(values), dtype=dtype)


def rank_chunk(state, x: np.ndarray) -> np.ndarray:
    """0-based positions in the stable sort (NaN last, ties in row order) of the next
    rows ``x`` of the column whose ``sorted_for_ranks`` state is given; chunks must
    come in row order. ``np.argsort(col, kind="stable")`` inverted, chunk by chunk."""
    sorted_values, coarse, counters = state
    out = np.empty(len(x), dtype=np.int64)
    _rank_chunk(sorted_values, coarse, counters,
                np.ascontiguousarray(x, dtype=sorted_values.dtype), out)
    return out


# ---------------------------------------------------------------------------
# Null rows
# ---------------------------------------------------------------------------


@njit(cache=True)
def _score_histogram(key, n):
    counts = np.zeros(1 << 16, dtype=np.int64)
    for r in range(n):
        counts[hash64(key, r, 0) >> np.uint64(48)] += 1
    return counts


@njit(cache=True)
def _bucket_scores(key, n, bucket, size):
    scores = np.empty(size, dtype=np.uint64)
    rows = np.empty(size, dtype=np.int64)
    k = 0
    for r in range(n):
        s = hash64(key, r, 0)
        if (s >> np.uint64(48)) == bucket:
            scores[k] = s
            rows[k] = r
            k += 1
    return scores, rows


def null_threshold(key, n: int, m: int) -> tuple[int, np.ndarray]:
    """``(threshold, tied_rows)``: the null rows of ``post.nan_rows(n, ·, key)`` with
    ``m`` nulls are the rows whose score ``hash64(key, row, 0)`` is below
    ``threshold``, plus ``tied_rows`` (rows scoring exactly ``threshold`` that are
    null, the first ones in row order). Needs ``0 < m < n``."""
    key = np.uint64(key)
    counts = _score_histogram(key, np.int64(n))
    cum = np.cumsum(counts)
    bucket = int(np.searchsorted(cum, m))  # first bucket with cum >= m
    below_bucket = int(cum[bucket - 1]) if bucket else 0
    scores, rows = _bucket_scores(key, np.int64(n), np.uint64(bucket), np.int64(counts[bucket]))
    threshold = np.partition(scores, m - below_bucket - 1)[m - below_bucket - 1]
    below = below_bucket + int((scores < threshold).sum())
    tied = np.sort(rows[scores == threshold])[: m - below]
    return int(threshold), tied.astype(np.int64)


@njit(cache=True)
def _null_mask(key, start, stop, threshold, tied, out):
    t = 0
    for r in range(start, stop):
        s = hash64(key, r, 0)
        null = s < threshold
        if s == threshold:
            while t < tied.shape[0] and tied[t] < r:
                t += 1
            null = t < tied.shape[0] and tied[t] == r
        out[r - start] = not null


def null_mask(key, start: int, stop: int, threshold: int, tied: np.ndarray) -> np.ndarray:
    """Validity (False = null) of rows ``[start, stop)`` for a `null_threshold`."""
    out = np.empty(stop - start, dtype=np.bool_)
    _null_mask(np.uint64(key), np.int64(start), np.int64(stop), np.uint64(threshold),
               np.ascontiguousarray(tied, dtype=np.int64), out)
    return out
