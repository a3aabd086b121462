"""Values of the SCM source nodes for a range of rows (DESIGN §4.3).

``source_values(bank, num_rows, start, stop)`` evaluates every source of a
``plurel_fast.plan.sources.SourceBank`` (layout in that module's docstring) at
the rows ``[start, stop)`` of a table of ``num_rows`` rows. All randomness is
counter-based: generator ``j`` of source ``s`` draws from
``subkey(keys[s], j)`` (draw 0 of row ``r``: the uniform, the normal ``z_r``,
the beta), and the source key itself gives draw 0 for the choice of a mixed
generator or the category of a categorical source.

AR(1) noise and chunking
------------------------
The ts noise state ``e_r = ρ e_{r-1} + σ z_r`` is sequential. So that a row's
value does not depend on how rows are chunked or threaded, the rows are cut into
fixed blocks of ``BLOCK_ROWS = 4096`` rows counted from row 0 (not from
``start``), and the state of every row of block ``b`` is computed by running the
recursion from state 0 at row ``max(0, b·4096 - W)``, where ``W`` is the
smallest window with ρ^W <= 1e-18 (``plan.sources.ar_window``; W = 0 for ρ = 0,
W <= 394 for ρ <= 0.9). Block 0 is the exact recursion from ``e_{-1} = 0``; in
the other blocks the state differs from the exact infinite recursion by at most
ρ^W |e_{b·4096-W-1}|, i.e. less than 1e-18 relative to the state: far below the
float64 resolution of the values (so the results match the exact recursion to
the last bit or within a few ulps). The cost is at most W extra normal draws per
block (<10 % for ρ = 0.9). A row's value depends only on its block, so any
``[start, stop)`` split and any thread count give identical bytes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from plurel_fast.kernels.args import row_index
from plurel_fast.kernels.rng import beta, categorical, normal, subkey, uniform
from plurel_fast.kernels.codes import (
    CATEGORICAL_IID,
    CATEGORICAL_TS,
    COL_AR_RHO,
    COL_AR_WINDOW,
    COL_BETA_A,
    COL_BETA_B,
    COL_CYCLE_FREQ,
    COL_CYCLE_SCALE,
    COL_HI,
    COL_LO,
    COL_MEAN,
    COL_NOISE_SCALE,
    COL_STD,
    COL_TREND_ALPHA,
    COL_TREND_SCALE,
    COL_TYPE,
    GEN_GAUSSIAN,
    GEN_TS,
    GEN_UNIFORM,
    GEN_WIDTH,
    NUMERICAL,
)

BLOCK_ROWS = 4096


def source_values(bank, num_rows, start=0, stop=None, out=None) -> np.ndarray:
    """Values of all sources of ``bank`` at rows ``[start, stop)`` (DESIGN §4.3).

    Parameters
    ----------
    bank : plurel_fast.plan.sources.SourceBank
        The packed sources of one SCM.
    num_rows : int
        ``n``, rows of the whole table; must equal ``bank.num_rows`` (the trend
        is evaluated at ``r / n``).
    start, stop : int
        Row range, ``0 <= start <= stop <= num_rows``; ``stop=None`` means
        ``num_rows``.
    out : np.ndarray of float64, shape (stop - start, num_sources), optional
        Writeable C-contiguous array to fill.

    Returns
    -------
    np.ndarray of float64, shape (stop - start, num_sources)
        ``result[i, s]`` is source ``s`` at row ``start + i``. Numerical sources
        give their value; categorical sources give the category label as an
        exactly represented integer ``0 <= label < num_categories[s]`` (cast
        with ``astype(np.int64)``). Independent of ``start``, ``stop`` and the
        thread count, byte for byte.

    Raises
    ------
    ValueError
        If ``num_rows`` differs from the bank's, the range is outside
        ``[0, num_rows]``, or ``out`` does not fit.
    """
    num_rows = row_index("num_rows", num_rows)
    if num_rows != bank.num_rows:
        raise ValueError(
            f"num_rows={num_rows} but the bank was planned for {bank.num_rows} rows"
        )
    start = row_index("start", start)
    stop = num_rows if stop is None else row_index("stop", stop)
    if not 0 <= start <= stop <= num_rows:
        raise ValueError(
            f"need 0 <= start <= stop <= num_rows={num_rows}, got start={start}, stop={stop}"
        )
    num_sources = int(bank.kind.shape[0])
    shape = (stop - start, num_sources)
    if out is None:
        out = np.empty(shape, dtype=np.float64)
    elif not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float64
        and out.shape == shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError(
            f"out must be a writeable C-contiguous float64 array of shape {shape}, "
            f"got {getattr(out, 'dtype', type(out).__name__)} "
            f"of shape {getattr(out, 'shape', None)}"
        )
    gens = _array(bank.gens, np.float64)
    if gens.ndim != 2 or gens.shape[1] != GEN_WIDTH:
        raise ValueError(f"bank.gens must have shape (G, {GEN_WIDTH}), got {gens.shape}")
    _source_values_chunk(
        _array(bank.kind, np.int64),
        _array(bank.gen_start, np.int64),
        _array(bank.gen_stop, np.int64),
        gens,
        _array(bank.cdf_start, np.int64),
        _array(bank.cdf_stop, np.int64),
        _array(bank.cdfs, np.float64),
        _array(bank.keys, np.uint64),
        np.int64(num_rows),
        np.int64(start),
        np.int64(stop),
        out,
    )
    return out


def _array(a, dtype):
    # One compiled signature (DESIGN §A.5): read-only or foreign
    # arrays (e.g. after unpickling a buffer) get a private contiguous copy.
    if (
        isinstance(a, np.ndarray)
        and a.dtype == dtype
        and a.flags.c_contiguous
        and a.flags.writeable
    ):
        return a
    return np.array(a, dtype=dtype, order="C", copy=True)


@njit(parallel=True, nogil=True, cache=True)
def _source_values_chunk(
    kind, gen_start, gen_stop, gens, cdf_start, cdf_stop, cdfs, keys, num_rows, start, stop, out
):
    """Fill ``out[i, s]`` with source ``s`` at row ``start + i``.

    Parameters
    ----------
    kind, gen_start, gen_stop, cdf_start, cdf_stop : int64 arrays, shape (S,)
    gens : float64 array, shape (G, GEN_WIDTH)
    cdfs : float64 array, shape (C,)
    keys : uint64 array, shape (S,)
        The ``SourceBank`` fields (plan/sources.py).
    num_rows, start, stop : int64
        Table rows and the row range.
    out : float64 array, shape (stop - start, S)
    """
    if stop <= start:
        return
    num_sources = kind.shape[0]
    first_block = start // BLOCK_ROWS
    num_blocks = (stop - 1) // BLOCK_ROWS - first_block + 1
    # One task per (source, fixed block): consecutive tasks share a source, so
    # threads mostly write different columns of ``out``.
    for task in prange(num_sources * num_blocks):
        s = task // num_blocks
        block_first = (first_block + task % num_blocks) * BLOCK_ROWS
        lo_r = max(start, block_first)
        hi_r = min(stop, block_first + BLOCK_ROWS)
        key = keys[s]
        g0 = gen_start[s]
        k = gen_stop[s] - g0
        if kind[s] == NUMERICAL:
            if int(gens[g0, COL_TYPE]) == GEN_TS:
                _ts_fill(gens[g0], subkey(key, 0), num_rows, block_first, lo_r, hi_r, out, s, start)
            elif k == 1:
                gk = subkey(key, 0)
                for r in range(lo_r, hi_r):
                    out[r - start, s] = _iid_value(gens[g0], gk, r)
            else:  # mixed: each row picks one of its k generators
                gkeys = np.empty(k, dtype=np.uint64)
                for j in range(k):
                    gkeys[j] = subkey(key, j)
                for r in range(lo_r, hi_r):
                    j = min(np.int64(uniform(key, r, 0) * k), k - 1)
                    out[r - start, s] = _iid_value(gens[g0 + j], gkeys[j], r)
        elif kind[s] == CATEGORICAL_TS:
            buf = np.empty((hi_r - lo_r, k), dtype=np.float64)
            for j in range(k):
                gk = subkey(key, j)
                _ts_fill(gens[g0 + j], gk, num_rows, block_first, lo_r, hi_r, buf, j, lo_r)
            cdf = np.empty(k, dtype=np.float64)
            for r in range(lo_r, hi_r):
                i = r - lo_r
                top = buf[i, 0]
                for j in range(1, k):
                    top = max(top, buf[i, j])
                total = 0.0
                for j in range(k):
                    cdf[j] = math.exp(buf[i, j] - top)
                    total += cdf[j]
                acc = 0.0
                for j in range(k):
                    acc += cdf[j] / total
                    cdf[j] = acc
                out[r - start, s] = categorical(key, r, 0, cdf)
        elif kind[s] == CATEGORICAL_IID:
            cdf = cdfs[cdf_start[s] : cdf_stop[s]]
            for r in range(lo_r, hi_r):
                out[r - start, s] = categorical(key, r, 0, cdf)


@njit(cache=True)
def _iid_value(g, gk, r):
    """Row ``r`` of a uniform, gaussian or beta generator row ``g`` on key ``gk``."""
    code = int(g[COL_TYPE])
    lo = g[COL_LO]
    hi = g[COL_HI]
    if code == GEN_UNIFORM:
        return lo + (hi - lo) * uniform(gk, r, 0)
    if code == GEN_GAUSSIAN:
        v = g[COL_MEAN] + g[COL_STD] * normal(gk, r, 0)
        return min(max(v, lo), hi)
    return lo + (hi - lo) * beta(gk, r, 0, g[COL_BETA_A], g[COL_BETA_B])


@njit(cache=True)
def _ts_fill(g, gk, num_rows, block_first, lo_r, hi_r, dst, col, row0):
    """``dst[r - row0, col]`` = ts value at each row r in [lo_r, hi_r) of one block.

    The AR(1) state starts at 0 at row ``max(0, block_first - W)``, whatever
    ``lo_r`` is, so the value of a row depends on its block only.
    """
    lo = g[COL_LO]
    hi = g[COL_HI]
    alpha = g[COL_TREND_ALPHA]
    trend_scale = g[COL_TREND_SCALE]
    freq = g[COL_CYCLE_FREQ]
    cycle_scale = g[COL_CYCLE_SCALE]
    sigma = g[COL_NOISE_SCALE]
    rho = g[COL_AR_RHO]
    window = np.int64(g[COL_AR_WINDOW])
    state = 0.0
    for r in range(max(0, block_first - window), lo_r):
        state = rho * state + sigma * normal(gk, r, 0)
    for r in range(lo_r, hi_r):
        state = rho * state + sigma * normal(gk, r, 0)
        trend = min(trend_scale * (r / num_rows) ** alpha + lo, hi)
        cycle = min(max(cycle_scale * math.sin((r / freq) * math.pi), lo), hi)
        noise = min(max(state, lo), hi)
        dst[r - row0, col] = (trend + cycle + noise) / 3.0
