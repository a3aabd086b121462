"""The assemble stage: a planned table's columns, computed in row chunks and assembled
into a Polars frame (DESIGN §1, §3, §4, §5).

`generate.execute` runs it table by table, parents before children:

1. `key_columns`: the primary key and the foreign keys (HSBM draws, DESIGN §3);
2. `scm_values`: the table's SCM, chunk by chunk, reading its parents' raw values
   through the collation encoders (DESIGN §4); lazy categorical columns quantized;
3. `assemble_table`: post-processing (transforms, nulls, categorical output, DESIGN §5)
   and the time column, into one frame.

Every function is a pure function of the plan and its arguments; ``chunk_rows`` bounds
working memory and never changes a value.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.kernels.post import post_process_table, quantize
from plurel_fast.kernels.scm import collation_partials, noise_tables_of, propagate
from plurel_fast.kernels.sources import source_values
from plurel_fast.plan.database import DatabasePlan
from plurel_fast.plan.schema import TablePlan
from plurel_fast.sql_columns import finish_sql_table

__all__ = [
    "activity_dates",
    "assemble_table",
    "finite",
    "key_columns",
    "scm_chunks",
    "scm_values",
    "source_columns_of",
    "table_frame",
]


def source_columns_of(table: TablePlan, scm) -> list[str]:
    """The table's feature columns whose SCM node is a source node (no parents in the
    table's causal graph): pure exogenous signals, which ``scores.json`` flags."""
    if not table.features:
        return []
    return [
        col.name
        for col, node in zip(table.features, scm.col_nodes)
        if bool(scm.is_source[node])
    ]


def _chunks(n: int, chunk_rows: int):
    for start in range(0, n, chunk_rows):
        yield start, min(start + chunk_rows, n)


def key_columns(plan: DatabasePlan, table: TablePlan, chunk_rows: int) -> dict[str, np.ndarray]:
    """Primary key and foreign keys (DESIGN §1, §3)."""
    n = table.num_rows
    columns: dict[str, np.ndarray] = {}
    if table.pkey_col is not None:
        columns[table.pkey_col] = np.arange(n, dtype=np.int64)
    for fk in plan.foreign_keys_of(table.name):
        out = np.empty(n, dtype=np.int64)
        for start, stop in _chunks(n, chunk_rows):
            sample_parents(fk.hsbm, start, stop, out=out[start:stop])
        columns[fk.fkey_col] = out
    return columns


def scm_values(plan, table: TablePlan, scm, keys, raw, chunk_rows: int) -> np.ndarray:
    """The table's column values as its SCM ``scm`` produces them (DESIGN §4), float32 (n, k).

    ``raw`` maps each parent table's name to its ``(ScmPlan, raw values)``.
    Categorical labels are stored as exact small floats; lazy-mode categorical
    columns are quantized (DESIGN §4.5) before children read them.
    """
    n = table.num_rows
    k = len(table.features)
    values = np.empty((n, k), dtype=np.float32)
    if n == 0 or k == 0:
        return values
    for _ in scm_chunks(plan, table, scm, lambda col, a, b: keys[col][a:b], raw, chunk_rows,
                        lambda a, b: values[a:b]):
        pass
    for i, qplan in enumerate(scm.quantize):
        if qplan is not None:
            values[:, i] = quantize(finite(values[:, i].astype(np.float64)), qplan)
    return values


def scm_chunks(plan, table: TablePlan, scm, fk_rows_of, raw, chunk_rows: int, buffer_of):
    """Run the table's SCM chunk by chunk (DESIGN §4.4), before quantization.

    ``fk_rows_of(fkey_col, start, stop)`` gives the foreign key's parent rows of rows
    ``[start, stop)``; ``raw[parent]`` is ``(ScmPlan, values)`` where ``values[rows]``
    gives a parent's float32 values at an index array and ``values[:]`` all of them;
    ``buffer_of(start, stop)`` gives the float32 ``(stop - start, k)`` array the chunk
    is written into. Yields ``(start, stop, chunk)`` after each chunk.
    """
    n = table.num_rows
    slot_aggs = scm.used_aggs
    node_slot = np.zeros(scm.num_nodes, dtype=np.int64)
    for slot, code in enumerate(slot_aggs):
        node_slot[scm.agg == code] = slot
    # Collation inputs per foreign key (DESIGN §4.4 b), pre-aggregated per parent
    # row: for a parent of at most chunk_rows rows once for the whole table,
    # else per chunk for the parent rows that chunk references (so memory stays
    # O(chunk_rows) however large the parent is).
    foreign = []
    for fkey_col, parent_name in zip(table.fkey_cols, table.parents):
        parent = plan.schema.table(parent_name)
        if len(parent.features) == 0:
            continue
        parent_scm, parent_values = raw[parent_name]
        child_index = parent_scm.children.index(table.name)
        whole = None
        if parent.num_rows <= chunk_rows:
            whole = collation_partials(parent_scm, child_index,
                                       np.asarray(parent_values[:]), slot_aggs)
        foreign.append((fkey_col, parent_scm, child_index, parent_values, whole))

    all_whole = all(f[-1] is not None for f in foreign)
    stacked = None

    noise = noise_tables_of(scm)
    for start, stop in _chunks(n, chunk_rows):
        src = source_values(scm.sources, n, start, stop)
        fk_rows = np.empty((len(foreign), stop - start), dtype=np.int64)
        fk_base = np.zeros(len(foreign), dtype=np.int64)
        partials = []
        base = 0
        for f, (fkey_col, parent_scm, child_index, parent_values, whole) in enumerate(foreign):
            col = fk_rows_of(fkey_col, start, stop)
            if whole is not None:
                part = whole
                fk_rows[f] = col
            else:
                rows, fk_rows[f] = np.unique(col, return_inverse=True)
                part = collation_partials(parent_scm, child_index, parent_values[rows], slot_aggs)
            partials.append(part)
            fk_base[f] = base
            base += len(part)
        if stacked is None or not all_whole:  # whole-table partials: stacked once
            stacked = _stack(partials, len(slot_aggs), scm.emb_dim)
        chunk = buffer_of(start, stop)
        propagate(scm, start, stop, src, fk_rows, fk_base, stacked, node_slot, chunk,
                  noise_tables=noise)
        yield start, stop, chunk


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite(x: np.ndarray) -> np.ndarray:
    """``x`` with ±inf saturated at ±float32 max and NaN as 0; ``x`` itself when finite.

    SCM values can overflow float32: a node of a dense SCM with product
    aggregation multiplies one clamped input (up to 1e4) per parent, and an
    infinite aggregate comes out of the decoder as ±inf or NaN (inf * 0,
    inf - inf); extreme source scales overflow the same way. Such values made
    NaN/inf features and crashed lazy quantization in ~1% of the tables of
    random valid configs (issue 17). They are made finite where they leave the
    SCM (features, quantization), not inside it: every value that was finite
    keeps its bytes, and children read their parents' values as before.
    """
    if np.isfinite(x).all():
        return x
    return np.nan_to_num(x, nan=0.0, posinf=_FLOAT32_MAX, neginf=-_FLOAT32_MAX)


def _stack(partials: list, num_slots: int, dim: int) -> np.ndarray:
    """The foreign keys' collation partials one after another (a placeholder if none)."""
    if len(partials) == 1:
        return partials[0]
    if partials:
        return np.concatenate(partials, axis=0)
    return np.zeros((1, max(num_slots, 1), dim), dtype=np.float32)


def assemble_table(plan, table: TablePlan, keys, values: np.ndarray) -> pl.DataFrame:
    """Key columns, post-processed features (DESIGN §5) and the date column."""
    n = table.num_rows
    post = plan.posts[table.id]
    transform_of = dict(zip(post.float_cols, post.transforms))
    float_columns = {}
    categorical_columns = {}
    for i, col in enumerate(table.features):
        if col.num_categories == 0:
            x = values[:, i].astype(np.float64)
            # Ranks are finite whatever the values (NaN ranks last): that column's
            # input stays as it was, so its output keeps its bytes.
            float_columns[col.name] = x if transform_of[col.name] == "rank_uniform" else finite(x)
        else:
            categorical_columns[col.name] = (
                values[:, i].astype(np.int64),
                col.num_categories,
                list(col.categories) if col.categories is not None else None,
            )
    features = post_process_table(
        post, float_columns, categorical_columns,
        order=[c.name for c in table.features],
    )
    dates = None
    if table.time_col is not None:
        dates = activity_dates(plan.schema.db_min, plan.schema.db_max, n)
    return table_frame(plan, table, keys, features, dates)


def table_frame(plan, table: TablePlan, keys, features, dates, date_ranks=None) -> pl.DataFrame:
    """The frame of a table, or of a run of its rows: key columns, the post-processed
    ``features`` (name -> (values, validity or None), as `post_process_table` returns
    them), the time column ``dates`` (None for entity tables), then a SQL table's types
    and column order (``date_ranks``: see `finish_sql_table`)."""
    series = [pl.Series(name, col) for name, col in keys.items()]
    for name, (col, valid) in features.items():
        s = pl.Series(name, col)
        if valid is not None:
            s = s.scatter(np.flatnonzero(~valid), None)
        series.append(s)
    if table.time_col is not None:
        series.append(pl.Series(table.time_col, dates))
    frame = pl.DataFrame(series)
    if table.column_order is not None:  # a SQL table: its column types and order
        frame = finish_sql_table(table, frame, plan.schema, date_ranks=date_ranks)
    return frame


def activity_dates(
    db_min: dt.datetime, db_max: dt.datetime, n: int, start: int = 0, stop: int | None = None
) -> np.ndarray:
    """Rows [start, stop) of n timestamps evenly spaced from db_min to db_max (DESIGN §4.4).

    Each value depends only on its row index, so chunks concatenate exactly.
    """
    stop = n if stop is None else stop
    lo = int(np.datetime64(db_min, "ns").astype(np.int64))
    hi = int(np.datetime64(db_max, "ns").astype(np.int64))
    # Python ints: a window of more than 292 years (up to the 584 that datetime64[ns]
    # holds) overflows int64 in hi - lo and in the offsets, which then wrapped
    # around. Offsets are below 2**64, so unsigned arithmetic modulo 2**64 gives
    # lo + offset exactly; for shorter windows the values are those of int64.
    step = (hi - lo) / (n - 1) if n > 1 else 0.0
    offsets = np.rint(np.arange(start, stop, dtype=np.float64) * step).astype(np.uint64)
    return (np.uint64(lo % 2**64) + offsets).view(np.int64).astype("datetime64[ns]")
