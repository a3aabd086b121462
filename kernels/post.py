"""Post-processing of finished columns (DESIGN §4.5, §5).

- :func:`quantize`: lazy-mode categorical labels from a numerical column
  (DESIGN §4.5), boundaries drawn with the counter-based RNG.
- :func:`apply_transform`: the column transforms of DESIGN §5.1.
- :func:`nan_rows`, :func:`implant_nulls`: which rows of a float column are null
  (DESIGN §5.2); a null is a ``False`` in a validity mask, from which Polars
  builds a nullable column.
- :func:`categorical_to_bool`, :func:`labels_to_strings`: DESIGN §5.3.
- :func:`post_process_table`: all of DESIGN §5 for one table, from a
  ``plurel_fast.plan.post.TablePostPlan``.

These work on whole columns (ranks, means and boundaries need every row), after
the row-chunked SCM has produced them. Randomness is counter-based: a column's
nulls and boundaries are a pure function of its key and its length.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from plurel_fast.kernels.codes import COL_TRANSFORMS
from plurel_fast.kernels.rng import hash64, subkey, uniform

__all__ = [
    "apply_transform",
    "boundary_rows",
    "categorical_to_bool",
    "implant_nulls",
    "labels_to_strings",
    "nan_rows",
    "num_nulls",
    "post_process_table",
    "quantize",
    "quantize_with",
]

_MIN_STD = 1e-8


def _as_float_column(name: str, x) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {x.shape}")
    return x


# ---------------------------------------------------------------------------
# Lazy-mode quantization (DESIGN §4.5)
# ---------------------------------------------------------------------------


@njit(cache=True)
def _boundary_rows(key, n, m):
    rows = np.empty(m, dtype=np.int64)
    for i in range(m):
        r = np.int64(math.floor(uniform(key, i, 0) * n))
        # u < 1, but u·n may round up to n for some n.
        rows[i] = min(r, n - 1)
    return rows


@njit(parallel=True, nogil=True, cache=True)
def _quantize(values, boundaries, label_map):
    n = values.shape[0]
    m = boundaries.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in prange(n):
        v = values[i]
        # Number of boundaries strictly below v (searchsorted, side="left").
        lo = 0
        hi = m
        while lo < hi:
            mid = (lo + hi) // 2
            if boundaries[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = label_map[lo]
    return out


def boundary_rows(key, n: int, num_categories: int) -> np.ndarray:
    """Rows whose values are the quantization boundaries (DESIGN §4.5).

    Returns
    -------
    np.ndarray of int64, shape (num_categories - 1,)
        Row ``i`` is ``floor(uniform(key, i, 0) · n)``: uniform over ``0..n-1``,
        with replacement. Empty when ``n == 0``.
    """
    m = int(num_categories) - 1
    if n <= 0 or m <= 0:
        return np.empty(0, dtype=np.int64)
    return _boundary_rows(np.uint64(key), np.int64(n), np.int64(m))


def quantize(values, plan) -> np.ndarray:
    """Categorical labels of a lazily propagated column (DESIGN §4.5).

    Parameters
    ----------
    values : np.ndarray of float64, shape (n,)
        The column node's numerical values, NaN-free.
    plan : plurel_fast.plan.post.QuantizePlan
        ``k`` categories, the boundary key and the label shuffles.

    Returns
    -------
    np.ndarray of int64, shape (n,)
        ``label_map[r]`` where ``r`` is the number of boundaries strictly below
        the value, the boundaries being the values at :func:`boundary_rows`, and
        ``label_map`` the plan's permutation followed by its optional reversal.
        Labels are in ``[0, k)``.
    """
    values = _as_float_column("values", values)
    if np.isnan(values).any():
        raise ValueError("quantize needs NaN-free values; it runs before nulls are implanted")
    k = int(plan.num_categories)
    rows = boundary_rows(plan.key, values.shape[0], k)
    return quantize_with(values, np.sort(values[rows]), plan)


def quantize_with(values, boundaries, plan) -> np.ndarray:
    """`quantize` with its sorted boundaries given (the values at `boundary_rows`, e.g.
    read from a file): labels of any run of rows, equal to those of the whole column."""
    values = _as_float_column("values", values)
    return _quantize(values, boundaries, np.ascontiguousarray(plan.label_map(), dtype=np.int64))


# ---------------------------------------------------------------------------
# Column transforms (DESIGN §5.1)
# ---------------------------------------------------------------------------


@njit(parallel=True, nogil=True, cache=True)
def _signed_log1p(x):
    out = np.empty_like(x)
    for i in prange(x.shape[0]):
        out[i] = np.sign(x[i]) * np.log1p(np.abs(x[i]))
    return out


@njit(parallel=True, nogil=True, cache=True)
def _signed_sqrt(x):
    out = np.empty_like(x)
    for i in prange(x.shape[0]):
        out[i] = np.sign(x[i]) * np.sqrt(np.abs(x[i]))
    return out


@njit(parallel=True, nogil=True, cache=True)
def _affine(x, shift, scale):
    out = np.empty_like(x)
    for i in prange(x.shape[0]):
        out[i] = (x[i] - shift) / scale
    return out


@njit(parallel=True, nogil=True, cache=True)
def _scatter_ranks(order, denom):
    n = order.shape[0]
    out = np.empty(n, dtype=np.float64)
    for j in prange(n):
        out[order[j]] = (j + 1) / denom
    return out


def _rank_uniform(x):
    # The rank of row i is its position in the stable sort, so ties go by row
    # order: the same as a stable double argsort, without the second sort.
    order = np.argsort(x, kind="stable")
    return _scatter_ranks(order, float(x.shape[0] + 1))


def _standardize(x):
    if x.shape[0] == 0:
        return x.copy()
    if x.min() == x.max():
        # A constant column is exactly zero; the formula would leave the
        # rounding error of the mean divided by 1e-8.
        return np.zeros_like(x)
    return _affine(x, float(x.mean()), max(float(x.std()), _MIN_STD))


def _identity(x):
    return x.copy()


_TRANSFORMS = {
    "identity": _identity,
    "rank_uniform": _rank_uniform,
    "log": _signed_log1p,
    "sqrt": _signed_sqrt,
    "standardize": _standardize,
}
assert tuple(_TRANSFORMS) == COL_TRANSFORMS


def apply_transform(name: str, x) -> np.ndarray:
    """One column transform of DESIGN §5.1, on a NaN-free column.

    Parameters
    ----------
    name : str
        ``identity``; ``rank_uniform``: rank / (n + 1) with ranks 1..n, ties
        ranked by row order; ``log``: sign(x) · log1p(|x|); ``sqrt``:
        sign(x) · sqrt(|x|); ``standardize``: (x - mean) / max(std, 1e-8) with
        the population std (ddof = 0), exactly 0 for a constant column.
    x : np.ndarray of float64, shape (n,)

    Returns
    -------
    np.ndarray of float64, shape (n,)
        A new array; ``x`` is not modified.
    """
    try:
        fn = _TRANSFORMS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown column transform {name!r}; known transforms: {', '.join(COL_TRANSFORMS)}"
        ) from None
    return fn(_as_float_column("x", x))


# ---------------------------------------------------------------------------
# Nulls (DESIGN §5.2)
# ---------------------------------------------------------------------------


@njit(parallel=True, nogil=True, cache=True)
def _row_scores(key, n):
    out = np.empty(n, dtype=np.uint64)
    for i in prange(n):
        out[i] = hash64(key, i, 0)
    return out


def num_nulls(n: int, perc: float) -> int:
    """``floor(perc · n)``: nulls of every float column of an ``n``-row table."""
    return int(math.floor(float(perc) * int(n)))


def nan_rows(n: int, perc: float, key) -> np.ndarray:
    """The null rows of one float column (DESIGN §5.2).

    Every row gets the score ``hash64(key, row, 0)``; the ``m = floor(perc · n)``
    rows of smallest score (ties, practically impossible, by row index) are
    null. That is a uniformly random ``m``-subset, a pure function of
    ``(n, perc, key)``, in O(n).

    Returns
    -------
    np.ndarray of int64, shape (m,)
        Distinct row indices in ``[0, n)``, ascending.
    """
    n = int(n)
    perc = float(perc)
    if n < 0:
        raise ValueError(f"row count must be >= 0, got {n}")
    if not 0.0 <= perc <= 1.0:
        raise ValueError(f"null share must be in [0, 1], got {perc}")
    m = num_nulls(n, perc)
    if m == 0:
        return np.empty(0, dtype=np.int64)
    if m >= n:
        return np.arange(n, dtype=np.int64)
    scores = _row_scores(np.uint64(key), np.int64(n))
    threshold = np.partition(scores, m - 1)[m - 1]
    below = np.flatnonzero(scores < threshold)
    tied = np.flatnonzero(scores == threshold)[: m - below.shape[0]]
    rows = np.concatenate((below, tied))
    rows.sort()
    return rows.astype(np.int64, copy=False)


def implant_nulls(values, rows) -> np.ndarray:
    """Validity mask of a column whose ``rows`` are null.

    Parameters
    ----------
    values : np.ndarray, shape (n,)
        The column (only its length is read; it is not modified).
    rows : np.ndarray of int, shape (m,)
        Null rows, e.g. from :func:`nan_rows`.

    Returns
    -------
    np.ndarray of bool, shape (n,)
        ``False`` at the null rows, ``True`` elsewhere; e.g.
        ``pl.Series(name, values).set(pl.Series(~valid), None)`` or pyarrow's
        ``pa.array(values, mask=~valid)`` build the nullable column.
    """
    n = np.shape(values)[0]
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"null rows must be in [0, {n}), got range [{rows.min()}, {rows.max()}]")
    valid = np.ones(n, dtype=np.bool_)
    valid[rows] = False
    return valid


# ---------------------------------------------------------------------------
# Categorical columns (DESIGN §5.3)
# ---------------------------------------------------------------------------


def categorical_to_bool(labels) -> tuple[np.ndarray, bool]:
    """Integer labels as booleans (label > 0), and whether to keep the column.

    Returns
    -------
    values : np.ndarray of bool, shape (n,)
    keep : bool
        ``False`` when the booleans hold a single value (all True or all
        False): DESIGN §5.3 drops such a column. An empty column is kept.
    """
    values = np.asarray(labels) > 0
    keep = not (values.size > 0 and (values.all() or not values.any()))
    return values, keep


def labels_to_strings(labels, categories) -> np.ndarray:
    """String labels (SQL enums): ``categories[label]`` per row.

    Returns
    -------
    np.ndarray of str (numpy unicode), shape (n,)
    """
    labels = np.asarray(labels, dtype=np.int64)
    cats = np.asarray(list(categories), dtype=str)
    if labels.size and (labels.min() < 0 or labels.max() >= cats.shape[0]):
        raise ValueError(
            f"labels must be in [0, {cats.shape[0]}) for {cats.shape[0]} categories, "
            f"got range [{labels.min()}, {labels.max()}]"
        )
    return cats[labels]


# ---------------------------------------------------------------------------
# A whole table (DESIGN §5)
# ---------------------------------------------------------------------------


def _is_string_categories(categories) -> bool:
    return (
        categories is not None
        and len(categories) > 0
        and isinstance(categories[0], (str, np.str_))
    )


def post_process_table(plan, float_columns, categorical_columns, order=None) -> dict:
    """Post-process the feature columns of one table (DESIGN §5).

    Steps, in the order of DESIGN §5: every float column ``plan.float_cols[i]``
    is transformed by ``plan.transforms[i]``, then gets
    ``floor(plan.nan_perc · n)`` nulls at ``nan_rows(n, nan_perc,
    subkey(plan.nan_key, i))`` (the same count, different rows per column);
    then categorical columns with integer labels become booleans (dropped when
    single-valued) and columns with string categories become strings. Columns in
    ``plan.no_nulls`` get no nulls, and booleans in ``plan.keep_constant`` are kept
    when single-valued (SQL schemas).

    Parameters
    ----------
    plan : plurel_fast.plan.post.TablePostPlan
    float_columns : dict[str, np.ndarray of float64, shape (n,)]
        Exactly the columns named in ``plan.float_cols``; NaN-free, unmodified.
    categorical_columns : dict[str, tuple[labels, num_categories, categories]]
        ``labels`` int64[n] in ``[0, num_categories)``; ``categories`` is None
        or a list of ints (labels become booleans) or a list of
        ``num_categories`` strings (labels become those strings).
    order : sequence of str, optional
        Output column order, naming every input column once. Default: the float
        columns in plan order, then the categorical ones in dict order.

    Returns
    -------
    dict[str, tuple[np.ndarray, np.ndarray | None]]
        Column name -> (values, validity), in ``order`` minus dropped columns.
        Float columns: float64 values with NaN at the null rows and a bool
        validity mask (False = null). Boolean columns: bool values, validity
        None. String columns: numpy unicode values, validity None.
    """
    float_names = list(plan.float_cols)
    if set(float_columns) != set(float_names):
        raise ValueError(
            f"float_columns must be exactly the plan's float columns {float_names}, "
            f"got {list(float_columns)}"
        )
    both = set(float_columns) & set(categorical_columns)
    if both:
        raise ValueError(f"columns {sorted(both)} are both float and categorical")
    names = float_names + list(categorical_columns)
    if order is None:
        order = names
    else:
        order = list(order)
        if sorted(order) != sorted(names):
            raise ValueError(
                f"order must name every column once: columns {sorted(names)}, got {order}"
            )

    lengths = {np.shape(v)[0] for v in float_columns.values()}
    lengths |= {np.shape(c[0])[0] for c in categorical_columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"all columns of a table must have the same length, got {lengths}")
    n = lengths.pop() if lengths else 0

    # Plans made before these fields existed (and duck-typed test plans) lack them.
    no_nulls = set(getattr(plan, "no_nulls", ()))
    keep_constant = set(getattr(plan, "keep_constant", ()))
    out = {}
    for i, (col, name) in enumerate(zip(float_names, plan.transforms)):
        try:
            x = apply_transform(name, float_columns[col])
        except ValueError as e:
            raise ValueError(f"column {col!r}: {e}") from None
        if col in no_nulls:
            out[col] = (x, None)
            continue
        rows = nan_rows(n, plan.nan_perc, subkey(np.uint64(plan.nan_key), np.uint64(i)))
        valid = implant_nulls(x, rows)
        x[rows] = np.nan
        out[col] = (x, valid)

    for col, spec in categorical_columns.items():
        if len(spec) != 3:
            raise ValueError(
                f"categorical column {col!r} must be (labels, num_categories, categories), "
                f"got a tuple of {len(spec)}"
            )
        labels, k, categories = spec
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"categorical column {col!r}: labels must be in [0, {k}), "
                f"got range [{labels.min()}, {labels.max()}]"
            )
        if _is_string_categories(categories):
            if len(categories) != k:
                raise ValueError(
                    f"categorical column {col!r}: {k} categories but {len(categories)} names"
                )
            out[col] = (labels_to_strings(labels, categories), None)
        else:
            values, keep = categorical_to_bool(labels)
            if keep or col in keep_constant:
                out[col] = (values, None)

    return {col: out[col] for col in order if col in out}
