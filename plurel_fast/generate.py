"""``generate(seed, config)``: plan a database, execute it in row chunks, assemble it."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import polars as pl

from plurel_fast.config import Config
from plurel_fast.database import Database, Table
from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.plan.database import DatabasePlan, plan_database
from plurel_fast.plan.schema import TablePlan

DEFAULT_CHUNK_ROWS = 65_536


def package_version() -> str:
    try:
        return version("plurel-fast")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def generate(
    seed: int, config: Config | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Database:
    """Generate the synthetic database ``plurel-<seed>``.

    A pure function of ``(seed, config)``: the same pair gives identical tables
    whatever ``chunk_rows``, the thread count or the process, so worker
    processes of a corpus job can call it independently.

    Parameters
    ----------
    seed : int
        Non-negative database seed.
    config : Config, optional
        Generation parameters; ``Config()`` (the reference's defaults) if omitted.
    chunk_rows : int
        Rows produced per kernel call; bounds working memory, never changes output.

    Returns
    -------
    Database
        Tables in id order (``table_0``, ...), with key columns and, for
        activity tables, the ``date`` column. Feature columns (SPEC §4-5) come
        with the feature stage.
    """
    if config is None:
        config = Config()
    if not isinstance(config, Config):
        raise TypeError(f"config must be a plurel_fast.Config, got {type(config).__name__}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    plan = plan_database(seed, config)
    return execute(plan, chunk_rows=int(chunk_rows))


def execute(plan: DatabasePlan, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Database:
    """Run a plan: every table's columns, parents before children."""
    schema = plan.schema
    frames: dict[str, pl.DataFrame] = {}
    for name in schema.order:
        frames[name] = _table_frame(plan, schema.table(name), chunk_rows)
    tables = {
        t.name: Table(
            frames[t.name],
            fkey_col_to_pkey_table=t.fkey_col_to_pkey_table,
            pkey_col=t.pkey_col,
            time_col=t.time_col,
        )
        for t in schema.tables
    }
    return Database(
        tables,
        val_timestamp=schema.val_timestamp,
        test_timestamp=schema.test_timestamp,
        name=f"plurel-{plan.seed}",
        metadata={
            "seed": int(plan.seed),
            "config_hash": plan.config.config_hash,
            "plurel_fast_version": package_version(),
        },
    )


def _table_frame(plan: DatabasePlan, table: TablePlan, chunk_rows: int) -> pl.DataFrame:
    n = table.num_rows
    columns: dict[str, np.ndarray] = {}
    if table.pkey_col is not None:
        columns[table.pkey_col] = np.arange(n, dtype=np.int64)
    for fk in plan.foreign_keys_of(table.name):
        out = np.empty(n, dtype=np.int64)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            sample_parents(fk.hsbm, start, stop, out=out[start:stop])
        columns[fk.fkey_col] = out
    if table.time_col is not None:
        out = np.empty(n, dtype="datetime64[ns]")
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            out[start:stop] = activity_dates(plan.schema.db_min, plan.schema.db_max, n, start, stop)
        columns[table.time_col] = out
    return pl.DataFrame(columns)


def activity_dates(
    db_min: dt.datetime, db_max: dt.datetime, n: int, start: int = 0, stop: int | None = None
) -> np.ndarray:
    """Rows [start, stop) of n timestamps evenly spaced from db_min to db_max (SPEC §4.4).

    Each value depends only on its row index, so chunks concatenate exactly.
    """
    stop = n if stop is None else stop
    lo = np.datetime64(db_min, "ns").astype(np.int64)
    hi = np.datetime64(db_max, "ns").astype(np.int64)
    step = (hi - lo) / (n - 1) if n > 1 else 0.0
    offsets = np.rint(np.arange(start, stop, dtype=np.float64) * step).astype(np.int64)
    return (lo + offsets).astype("datetime64[ns]")
