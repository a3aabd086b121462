"""Fail fast: sizes no machine can hold are refused while planning, not after minutes.

Two checks, both cheap:

* `check_plausible(config)` before anything is sampled: a number of tables, columns
  per table or categories per column beyond what any database here can use (the
  paper's corpora have at most 20 tables of at most 40 columns) is a typo or a unit
  mistake; sampling it alone would allocate gigabytes (the power-law column draw makes
  an array as long as its range).
* `check_memory(schema)` once the schema is planned: the peak memory `generate` needs
  for it (`estimate_peak_bytes`) against the memory this process may use (the cgroup
  limit, else physical memory). A database that cannot fit fails at once, naming its
  largest table, instead of being killed by the OOM killer much later.

The memory model (measured on this machine, `tests/test_limits.py` checks it within 30%
on a few configurations): a fixed ~260 MB (interpreter, NumPy, Polars, numba, loaded
kernels) plus, per cell, what the in-memory path holds at its peak. Every finished
table is kept as a Polars frame (~9 bytes a cell, nulls' bitmaps included); the table
being generated also holds its float32 SCM values, their float64 copies and the
post-processed columns while its frame is built (~14 more bytes a cell); a parent's
SCM values stay (4 bytes a cell) until its last child has read them.
"""

from __future__ import annotations

import os
from pathlib import Path

from plurel_fast.config import Choices, Config, ConfigError

__all__ = [
    "MAX_CATEGORIES",
    "MAX_COLUMNS",
    "MAX_TABLES",
    "available_memory",
    "check_memory",
    "check_plausible",
    "estimate_peak_bytes",
]

MAX_TABLES = 10_000
MAX_COLUMNS = 10_000
MAX_CATEGORIES = 1_000_000

FIXED_BYTES = 260 * 2**20
FRAME_BYTES_PER_CELL = 9
WORKING_BYTES_PER_CELL = 14
RAW_BYTES_PER_CELL = 4


def _upper(choices: Choices) -> float:
    values = [v for v in choices.value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(values) if values else 0


def check_plausible(config: Config) -> None:
    """Raise `ConfigError` for a config whose tables, columns or categories can reach
    sizes no database here can hold (see the module doc); a no-op otherwise."""
    db, scm = config.database_params, config.scm_params
    limits = (
        ("DatabaseParams.num_tables_choices", db.num_tables_choices, MAX_TABLES, "tables"),
        ("DatabaseParams.num_cols_choices", db.num_cols_choices, MAX_COLUMNS, "columns per table"),
        ("SCMParams.num_categories_choices", scm.num_categories_choices, MAX_CATEGORIES,
         "categories per column"),
    )
    for field, choices, limit, what in limits:
        top = _upper(choices)
        if top > limit:
            raise ConfigError(
                f"{field} reaches {top:,} {what}; at most {limit:,} are supported (the "
                "paper's corpora use at most 20 tables of 40 columns): check the value"
            )


def _cells(table) -> int:
    columns = len(table.features) + len(table.fkey_cols) + 1 + (table.time_col is not None)
    return table.num_rows * columns


def estimate_peak_bytes(schema) -> tuple[int, object]:
    """Peak resident memory of generating `schema` in memory, and the table at whose
    generation it is reached (see the module doc for the model)."""
    by_name = {t.name: t for t in schema.tables}
    frames = 0
    raw: dict[str, int] = {}
    readers = {t.name: len(t.children) for t in schema.tables}
    peak, at = FIXED_BYTES, None
    for name in schema.order:
        table = by_name[name]
        cells = _cells(table)
        now = (
            FIXED_BYTES
            + frames
            + sum(raw.values())
            + (FRAME_BYTES_PER_CELL + WORKING_BYTES_PER_CELL) * cells
        )
        if at is None or now > peak:
            peak, at = now, table
        frames += FRAME_BYTES_PER_CELL * cells
        for parent in table.parents:
            readers[parent] -= 1
            if readers[parent] == 0:
                raw.pop(parent, None)
        if readers[name] > 0:
            raw[name] = RAW_BYTES_PER_CELL * table.num_rows * len(table.features)
    return peak, at


def available_memory() -> int:
    """Bytes this process may use: the cgroup's limit (v2, then v1) when it is set and
    below physical memory, else physical memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return physical


def check_memory(schema, available: int | None = None) -> int:
    """Raise `ConfigError` when generating `schema` needs more memory than is available
    (`available_memory` unless given); returns the estimate otherwise."""
    need, table = estimate_peak_bytes(schema)
    have = available_memory() if available is None else available
    if need > have:
        raise ConfigError(
            f"this database needs about {need / 2**30:.1f} GiB at its peak (table "
            f"{table.name!r}: {table.num_rows:,} rows x {len(table.features)} features), "
            f"more than the {have / 2**30:.1f} GiB available; lower the row counts "
            "(num_rows_*_choices) or the column counts, or write the database straight to "
            "a folder, where large tables go in row groups (plurel_fast.generate_to, or "
            "the plurel-fast generate / corpus commands)."
        )
    return need
