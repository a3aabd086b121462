"""Foreign keys from the hierarchical SBM: the parent row of every child row (DESIGN §3).

The plan (``plurel_fast.plan.hsbm.HsbmPlan``) has already folded the level
matrices and the block sizes into one cumulative distribution over parent base
blocks per child base block. Per child row the kernel does two counter-based
draws: the first picks the parent block by binary search in that distribution,
the second a row uniformly inside the block. That is O(log B_P) time per row and
no memory beyond the output, against the n_P × n_C matrix of the reference.

Draw ``j`` of child row ``c`` is ``uniform(plan.key, c, j)``, so the parent of a
row depends only on the plan and the row index: any row range, thread count or
process gives the same bytes.
"""

from __future__ import annotations


import numpy as np
from numba import njit, prange

from plurel_fast.kernels.args import row_index
from plurel_fast.kernels.rng import uniform

_ROWS_PER_PART = 4096


def sample_parents(plan, start: int = 0, stop: int | None = None, out=None) -> np.ndarray:
    """Parent row index of each child row in ``[start, stop)`` (DESIGN §3).

    Parameters
    ----------
    plan : HsbmPlan
        From ``plurel_fast.plan.hsbm.plan_hsbm`` (or ``HsbmPlan.from_hierarchies``).
    start, stop : int
        Child row range, ``0 <= start <= stop <= plan.num_child_rows``;
        ``stop=None`` means ``plan.num_child_rows``.
    out : np.ndarray of int64, shape (stop - start,), optional
        C-contiguous array to write into (e.g. a slice of the whole column).

    Returns
    -------
    np.ndarray of int64, shape (stop - start,)
        ``result[i]`` is the parent row, in ``[0, plan.num_parent_rows)``, of child
        row ``start + i``. The value for a row does not depend on ``start``,
        ``stop`` or the number of threads.

    Raises
    ------
    ValueError
        If the range is outside ``[0, plan.num_child_rows]`` or ``out`` does
        not fit.
    """
    num_child_rows = plan.num_child_rows
    start = row_index("start", start)
    stop = num_child_rows if stop is None else row_index("stop", stop)
    if not 0 <= start <= stop <= num_child_rows:
        raise ValueError(
            f"need 0 <= start <= stop <= num_child_rows={num_child_rows}, "
            f"got start={start}, stop={stop}"
        )
    if out is None:
        out = np.empty(stop - start, dtype=np.int64)
    elif not (
        isinstance(out, np.ndarray)
        and out.dtype == np.int64
        and out.shape == (stop - start,)
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError(
            f"out must be a writeable C-contiguous int64 array of shape ({stop - start},), "
            f"got {getattr(out, 'dtype', type(out).__name__)} "
            f"of shape {getattr(out, 'shape', None)}"
        )
    cdf = plan.block_cdf
    if cdf.dtype != np.float64 or not cdf.flags.c_contiguous or not cdf.flags.writeable:
        # Keep one compiled signature (rule 5): plans that went through a
        # read-only buffer get a private copy.
        cdf = np.ascontiguousarray(cdf, dtype=np.float64).copy()
    sizes = (
        np.int64(plan.parent_block_rows),
        np.int64(plan.num_parent_rows),
        np.int64(plan.child_block_rows),
    )
    key, lo, hi = np.uint64(plan.key), np.int64(start), np.int64(stop)
    if stop - start > _ROWS_PER_PART:
        _sample_parents_chunk(cdf, *sizes, key, lo, hi, out)
    else:
        # A single part: a parallel region would only add its start-up cost
        # (and, on a busy machine, a wait for a descheduled worker thread).
        _fill_parents(cdf, *sizes, key, lo, hi, lo, out)
    return out


@njit(parallel=True, nogil=True, cache=True)
def _sample_parents_chunk(
    cdf, parent_block_rows, num_parent_rows, child_block_rows, key, start, stop, out
):
    """Fill ``out[i]`` with the parent row of child row ``start + i`` (DESIGN §3).

    Parameters
    ----------
    cdf : float64 array, shape (B_C, B_P)
        Per child base block, the cumulative distribution over parent base
        blocks; each row is non-decreasing and ends at exactly 1.0.
    parent_block_rows : int64
        Rows per parent base block, ``ceil(n_P / B_P)``.
    num_parent_rows : int64
        ``n_P``; it cuts the last non-empty parent block short.
    child_block_rows : int64
        Rows per child base block, ``ceil(n_C / B_C)`` (>= 1).
    key : uint64
        Stream key of the counter-based RNG.
    start, stop : int64
        Child row range.
    out : int64 array, shape (stop - start,)
        Output.
    """
    n = stop - start
    # Contiguous ranges of about _ROWS_PER_PART rows, shared out among the
    # threads by prange. The part count is fixed by n, not by the thread count
    # (numba.get_num_threads inside a kernel defeats caching); it only affects
    # speed, since every row's draws are keyed by the row itself.
    parts = max((n + _ROWS_PER_PART - 1) // _ROWS_PER_PART, 0)
    for part in prange(parts):
        lo = start + n * part // parts
        hi = start + n * (part + 1) // parts
        _fill_parents(
            cdf, parent_block_rows, num_parent_rows, child_block_rows, key, lo, hi, start, out
        )


@njit(cache=True)
def _fill_parents(
    cdf, parent_block_rows, num_parent_rows, child_block_rows, key, lo, hi, start, out
):
    """Serial part of the kernel: child rows ``[lo, hi)`` into ``out[lo - start:hi - start]``.

    Arguments as in :func:`_sample_parents_chunk`. Called directly for ranges
    of one part, where a parallel region would add only its start-up cost.
    """
    num_blocks_p = cdf.shape[1]
    # Inside a contiguous range the child block changes only at block
    # boundaries: track it instead of dividing per row.
    block = lo // child_block_rows
    next_block_start = (block + 1) * child_block_rows
    block_cdf = cdf[block]
    for c in range(lo, hi):
        if c == next_block_start:
            block += 1
            next_block_start += child_block_rows
            block_cdf = cdf[block]
        # First parent block whose cumulative probability exceeds u. Empty
        # blocks repeat the previous entry and so are never the first.
        u = uniform(key, c, 0)
        left = 0
        right = num_blocks_p - 1
        while left < right:
            mid = (left + right) >> 1
            if block_cdf[mid] > u:
                right = mid
            else:
                left = mid + 1
        first_row = left * parent_block_rows
        size = min(parent_block_rows, num_parent_rows - first_row)
        offset = np.int64(uniform(key, c, 1) * size)
        if offset >= size:  # cannot happen for u < 1; a guard costs nothing
            offset = size - 1
        out[c - start] = first_row + offset
