"""Per-database statistics for comparing plurel_fast with the reference ``plurel``.

Used by ``bench/compare_reference.py``, inside each generator's own subprocess, so
it needs only NumPy and pandas (both virtualenvs have them) and reads a database
as plain pandas frames plus key metadata: :class:`TableView`. Every statistic
returns *raw values*, one per database, table, foreign key, column or column pair
(its ``unit``, see ``STATISTICS``); the caller pools or aggregates them.

Definitions (a *feature column* is neither the primary key, a foreign key nor the
time column; an *activity* table is one with a time column, DESIGN §1):

tables
    Number of tables.                                                 [database]
activity_share
    Activity tables / tables.                                         [database]
rows_entity, rows_activity
    Row count of each entity / activity table.                        [table]
feature_cols
    Feature columns of each table (after post-processing, DESIGN §5, so
    single-valued boolean columns are already dropped).               [table]
bool_share, float_share
    Share of a table's feature columns that are boolean / float; tables with no
    feature column are left out. A column of ``object`` dtype whose non-null
    values are all ``bool`` counts as boolean.                        [table]
nan_share
    Null (NaN) share of each float feature column.                    [column]
fk_dispersion
    For each foreign key: the number of children of every parent row (0 included),
    population variance / mean (1 for Poisson-like links, larger when a few
    parents take most children).                                      [foreign key]
never_referenced
    For each foreign key: share of parent rows with no child.         [foreign key]
float_skewness
    Sample skewness mean(z**3), z = (x - mean) / std (population std), of each
    float feature column over its finite values; columns with fewer than 3 finite
    values or zero or non-finite std are left out.                    [column]
lag1_autocorr
    Pearson correlation of x[t] and x[t+1] for each float feature column of an
    activity table, rows sorted by the time column (stable), over the pairs where
    both values are finite; needs 3 pairs and non-zero variance.      [column]
fk_abs_corr
    For each foreign key, |Pearson correlation| between child float feature
    column c and parent float feature column p read at the referenced row,
    over child rows where both are finite, for the first ``MAX_CORR_COLS`` float
    feature columns of each side (at most 64 pairs per key).          [column pair]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

MAX_CORR_COLS = 8

# name -> unit of one raw value. The order is the order of the report.
STATISTICS = {
    "tables": "database",
    "activity_share": "database",
    "rows_entity": "table",
    "rows_activity": "table",
    "feature_cols": "table",
    "bool_share": "table",
    "float_share": "table",
    "nan_share": "column",
    "fk_dispersion": "foreign key",
    "never_referenced": "foreign key",
    "float_skewness": "column",
    "lag1_autocorr": "column",
    "fk_abs_corr": "column pair",
}


class TableView(NamedTuple):
    """One table as both generators can hand it over: a pandas frame and its roles."""

    df: pd.DataFrame
    pkey_col: str | None
    fkey_col_to_pkey_table: dict
    time_col: str | None

    @property
    def feature_cols(self) -> list[str]:
        skip = {self.pkey_col, self.time_col, *self.fkey_col_to_pkey_table}
        return [c for c in self.df.columns if c not in skip]


def table_views(table_dict) -> dict[str, TableView]:
    """`TableView`s of a RelBench or plurel_fast ``table_dict`` (name -> table).

    Both have ``df``, ``pkey_col``, ``fkey_col_to_pkey_table`` and ``time_col``;
    a plurel_fast table's Polars frame is converted with ``Table.to_pandas``.
    """
    views = {}
    for name, t in table_dict.items():
        df = t.df if isinstance(t.df, pd.DataFrame) else t.to_pandas()
        views[name] = TableView(df, t.pkey_col, dict(t.fkey_col_to_pkey_table), t.time_col)
    return views


def _is_bool(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    if s.dtype == object:
        values = s.dropna()
        return len(values) > 0 and all(isinstance(v, (bool, np.bool_)) for v in values)
    return False


def _is_float(s: pd.Series) -> bool:
    return pd.api.types.is_float_dtype(s.dtype)


def _float_cols(view: TableView) -> list[str]:
    return [c for c in view.feature_cols if _is_float(view.df[c])]


def _values(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    a, b = a[ok], b[ok]
    with np.errstate(all="ignore"):
        sa, sb = a.std(), b.std()
        if not (np.isfinite(sa) and np.isfinite(sb)) or sa == 0 or sb == 0:
            return None
        r = float(np.mean((a - a.mean()) / sa * ((b - b.mean()) / sb)))
    return r if np.isfinite(r) else None


def _skewness(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    if x.size < 3:
        return None
    with np.errstate(all="ignore"):
        sd = x.std()
        if not np.isfinite(sd) or sd == 0:
            return None
        g = float(np.mean(((x - x.mean()) / sd) ** 3))
    return g if np.isfinite(g) else None


def _row_positions(parent: TableView, keys: np.ndarray) -> np.ndarray:
    """Row positions of primary-key values (both generators use 0..n-1 in row order,
    which this checks rather than assumes)."""
    if parent.pkey_col is None:
        return keys
    pk = parent.df[parent.pkey_col].to_numpy(dtype=np.int64)
    if np.array_equal(pk, np.arange(len(pk))):
        return keys
    pos = np.full(int(pk.max()) + 1, -1, dtype=np.int64)
    pos[pk] = np.arange(len(pk))
    return pos[keys]


def database_stats(views: dict[str, TableView]) -> dict[str, list[float]]:
    """Raw values of every statistic in ``STATISTICS`` for one database.

    Parameters
    ----------
    views : table name -> `TableView`.

    Returns
    -------
    dict
        Statistic name -> list of floats (one per unit; may be empty).
    """
    out: dict[str, list[float]] = {name: [] for name in STATISTICS}
    n_tables = len(views)
    out["tables"].append(float(n_tables))
    out["activity_share"].append(
        sum(v.time_col is not None for v in views.values()) / max(n_tables, 1)
    )

    for view in views.values():
        df, feats = view.df, view.feature_cols
        n = len(df)
        out["rows_activity" if view.time_col is not None else "rows_entity"].append(float(n))
        out["feature_cols"].append(float(len(feats)))
        if feats:
            out["bool_share"].append(sum(_is_bool(df[c]) for c in feats) / len(feats))
            out["float_share"].append(sum(_is_float(df[c]) for c in feats) / len(feats))
        floats = _float_cols(view)
        for c in floats:
            x = _values(df[c])
            if n:
                out["nan_share"].append(float(np.isnan(x).mean()))
            g = _skewness(x)
            if g is not None:
                out["float_skewness"].append(g)
        if view.time_col is not None and floats:
            order = np.argsort(df[view.time_col].to_numpy(), kind="stable")
            for c in floats:
                x = _values(df[c])[order]
                r = _pearson(x[:-1], x[1:])
                if r is not None:
                    out["lag1_autocorr"].append(r)

        for fk, parent_name in view.fkey_col_to_pkey_table.items():
            parent = views[parent_name]
            n_parent = len(parent.df)
            if n_parent == 0:
                continue
            keys = df[fk].to_numpy(dtype=np.float64, na_value=np.nan)
            valid = np.isfinite(keys) & (keys >= 0) & (keys < n_parent)
            idx = _row_positions(parent, keys[valid].astype(np.int64))
            counts = np.bincount(idx, minlength=n_parent)
            mean = counts.mean()
            if mean > 0:
                out["fk_dispersion"].append(float(counts.var() / mean))
            out["never_referenced"].append(float((counts == 0).mean()))
            parent_floats = _float_cols(parent)[:MAX_CORR_COLS]
            child_floats = floats[:MAX_CORR_COLS]
            if not (parent_floats and child_floats):
                continue
            parent_at_child = {
                p: _values(parent.df[p])[idx] for p in parent_floats
            }
            for c in child_floats:
                x = _values(df[c])[valid]
                for p in parent_floats:
                    r = _pearson(x, parent_at_child[p])
                    if r is not None:
                        out["fk_abs_corr"].append(abs(r))
    return out


def per_database(values: list[float], unit: str) -> float | None:
    """One number per database: the value itself, or the median over its units."""
    if not values:
        return None
    return float(values[0]) if unit == "database" else float(np.median(values))
