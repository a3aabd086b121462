"""Output types of a SQL schema's columns (DESIGN §7), applied after post-processing.

The pipeline produces floats, booleans and string labels; a table planned from SQL
then gets the types its ``CREATE TABLE`` asked for (``ColumnPlan.dtype``) and its
columns in the order written.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from plurel_fast.plan.schema import SchemaPlan, TablePlan

__all__ = ["finish_sql_table", "MAX_OFFSET_SHARE"]

MAX_OFFSET_SHARE = 0.1
"""A second date column lies 0 to this share of the database's time window after
the table's time column (at least one day)."""

_INT64_BOUND = 2.0**62  # rounded values are clipped here so the cast cannot overflow


def finish_sql_table(
    table: TablePlan, frame: pl.DataFrame, schema: SchemaPlan, date_ranks: dict | None = None
) -> pl.DataFrame:
    """``frame`` with SQL column types and order.

    - ``int64``: numerical values rounded half to even (numeric labels: parsed) as
      nullable Int64;
    - ``float64``: numeric labels as Float64;
    - ``datetime``: the table's time column plus a non-negative offset that grows
      with the column's value (rank in the column), of at most ``MAX_OFFSET_SHARE``
      of the time window; a null value stays null.

    ``date_ranks`` (for a run of a table's rows, written in row groups) maps a datetime
    column to its rows' rank fraction in the whole column (position among the
    non-null values in a stable sort / (count - 1)); by default it is computed from
    ``frame``, the whole table.
    """
    columns = {}
    for col in table.features:
        s = frame[col.name]
        if col.dtype == "int64":
            columns[col.name] = _to_int(s)
        elif col.dtype == "float64":
            columns[col.name] = s.cast(pl.Float64)
        elif col.dtype == "datetime":
            rank = None if date_ranks is None else date_ranks[col.name]
            columns[col.name] = _offset_dates(s, frame[table.time_col], schema, rank)
    if columns:
        frame = frame.with_columns(**columns)
    return frame.select(table.column_order)


def _to_int(s: pl.Series) -> pl.Series:
    if s.dtype == pl.String:
        return s.cast(pl.Int64)
    x = s.cast(pl.Float64).to_numpy()
    ok = np.isfinite(x)
    out = np.rint(np.clip(np.where(ok, x, 0.0), -_INT64_BOUND, _INT64_BOUND)).astype(np.int64)
    return pl.Series(s.name, out, dtype=pl.Int64).scatter(np.flatnonzero(~ok), None)


def date_rank_fractions(x: np.ndarray) -> np.ndarray:
    """Rank fraction of each finite value among the finite ones (stable order), 0 elsewhere."""
    ok = np.isfinite(x)
    rank = np.zeros(len(x))
    if ok.any():
        order = np.argsort(x[ok], kind="stable")
        r = np.empty(order.size)
        r[order] = np.arange(order.size) / max(order.size - 1, 1)
        rank[ok] = r
    return rank


def _offset_dates(s: pl.Series, time: pl.Series, schema: SchemaPlan, rank=None) -> pl.Series:
    x = s.cast(pl.Float64).to_numpy()
    ok = np.isfinite(x)
    if rank is None:
        rank = date_rank_fractions(x)
    window = np.timedelta64(schema.db_max - schema.db_min, "s").astype(np.int64)
    max_offset = max(int(window * MAX_OFFSET_SHARE), 86_400)
    offset = np.rint(rank * max_offset).astype(np.int64) * 1_000_000_000  # whole seconds
    base = time.cast(pl.Datetime("ns")).to_numpy().astype("datetime64[ns]")
    dates = base + offset.astype("timedelta64[ns]")
    return pl.Series(s.name, dates).scatter(np.flatnonzero(~ok), None)
