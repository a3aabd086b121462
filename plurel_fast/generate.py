"""``generate(seed, config)``: plan a database, execute it in row chunks, assemble it."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import msgspec
import numpy as np
import polars as pl

from plurel_fast.config import Config
from plurel_fast.database import Database, Table
from plurel_fast.assemble import assemble_table, key_columns, scm_values, source_columns_of
from plurel_fast.plan.database import DatabasePlan, plan_database
from plurel_fast.plan.schema import TablePlan

DEFAULT_CHUNK_ROWS = 65_536


def package_version() -> str:
    try:
        return version("plurel-fast")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def generate(
    seed: int,
    config: Config | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_table: Callable[[TablePlan, int, int], None] | None = None,
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
    on_table : callable, optional
        Progress hook, called as ``on_table(table_plan, done, total)`` after each
        table is generated (in generation order).

    Returns
    -------
    Database
        Tables in id order (``table_0``, ...), with key columns and, for
        activity tables, the ``date`` column. Feature columns (DESIGN §4-5) come
        with the feature stage.
    """
    config = _check_args(config, chunk_rows)
    plan = plan_database(seed, config, scms=False)
    return execute(plan, chunk_rows=int(chunk_rows), on_table=on_table)


def _check_args(config, chunk_rows) -> Config:
    """The config to use (``Config()`` for None); TypeError/ValueError for bad arguments."""
    if config is None:
        config = Config()
    if not isinstance(config, Config):
        raise TypeError(f"config must be a plurel_fast.Config, got {type(config).__name__}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return config


def execute(
    plan: DatabasePlan,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_table: Callable[[TablePlan, int, int], None] | None = None,
) -> Database:
    """Run a plan: every table's columns, parents before children.

    A table's SCM plan (planned here when the plan holds none) and its raw SCM
    values are kept only until its last child table has read them through the
    collation encoders.
    """
    schema = plan.schema
    frames: dict[str, pl.DataFrame] = {}
    raw: dict[str, tuple] = {}  # table -> (ScmPlan, raw values) while children need them
    readers_left = {t.name: len(t.children) for t in schema.tables}
    source_columns: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name in schema.order:
        started = time.perf_counter()
        table = schema.table(name)
        scm = plan.scm(table.id)
        sources = source_columns_of(table, scm)
        keys = key_columns(plan, table, chunk_rows)
        values = scm_values(plan, table, scm, keys, raw, chunk_rows)
        for parent in table.parents:
            readers_left[parent] -= 1
            if readers_left[parent] == 0:
                del raw[parent]
        if readers_left[name] > 0:
            raw[name] = (scm, values)
        del scm
        frames[name] = assemble_table(plan, table, keys, values)
        source_columns[name] = [c for c in sources if c in frames[name].columns]
        seconds[name] = round(time.perf_counter() - started, 6)
        if on_table is not None:
            shown = progress_plan(table, frames[name].columns)
            on_table(shown, len(frames), len(schema.order))
    tables = {
        t.name: Table(
            frames[t.name],
            fkey_col_to_pkey_table=t.fkey_col_to_pkey_table,
            pkey_col=t.pkey_col,
            time_col=t.time_col,
        )
        for t in schema.tables
    }
    return database_of(plan, tables, source_columns, seconds)


def progress_plan(table: TablePlan, columns) -> TablePlan:
    """The table's plan as generated, for ``on_table``: without the feature columns that
    post-processing dropped (single-valued booleans), so progress counts what the table
    holds (``columns``: the columns it was written with)."""
    kept = tuple(c for c in table.features if c.name in columns)
    if len(kept) == len(table.features):
        return table
    return msgspec.structs.replace(table, features=kept)


def database_of(plan: DatabasePlan, tables: dict, source_columns: dict, seconds: dict) -> Database:
    """The `Database` of a plan's tables (name -> `Table`), with its provenance metadata
    and per-table seconds; shared by `execute` and `stream.generate_to`."""
    schema = plan.schema
    db = Database(
        tables,
        val_timestamp=schema.val_timestamp,
        test_timestamp=schema.test_timestamp,
        name=f"plurel-{plan.seed}",
        metadata={
            "seed": int(plan.seed),
            "config_hash": plan.config.config_hash,
            "plurel_fast_version": package_version(),
            "config": config_record(plan.config),
            "source_columns": {t.name: source_columns[t.name] for t in schema.tables},
        },
    )
    db.timings = {"tables_seconds": {t.name: seconds[t.name] for t in schema.tables}}
    return db


def config_record(config: Config) -> dict:
    """The config as plain JSON data, without ``cache_dir`` (where a cache lives is not
    what it holds); what the sidecar file stores next to ``config_hash``."""
    data = msgspec.to_builtins(config)
    data.pop("cache_dir", None)
    return data
