"""The assembled output: a `Database` of `Table`s held as Polars frames (DESIGN §6, §8).

The nouns and attribute names are RelBench's (`Table.df`, `pkey_col`,
`fkey_col_to_pkey_table`, `time_col`; `Database.table_dict`, `val_timestamp`,
`test_timestamp`), so code written against RelBench reads ours unchanged; only the frames
are Polars. Conversion to pandas / RelBench objects happens at the boundary
(`to_pandas`, `to_relbench`, `from_relbench`, implemented in `plurel_fast.relbench`),
saving and loading in `plurel_fast.io.parquet`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["Database", "Table"]


class Table:
    """One table: a Polars frame plus its relational roles.

    Parameters
    ----------
    df
        The rows. Missing values are Polars nulls (a NaN is a value, not a gap).
    fkey_col_to_pkey_table
        Foreign-key column → name of the table whose primary key it holds.
    pkey_col
        Primary-key column (RelBench wants it to be exactly 0..n-1 in row order), or None.
    time_col
        Time column (a Polars ``Datetime``; ``date`` for activity tables), or None.
    """

    def __init__(
        self,
        df: pl.DataFrame,
        fkey_col_to_pkey_table: dict[str, str] | None = None,
        pkey_col: str | None = None,
        time_col: str | None = None,
    ):
        if not isinstance(df, pl.DataFrame):
            hint = " (convert with polars.from_pandas(df))" if _is_pandas(df) else ""
            raise TypeError(
                f"Table needs a polars.DataFrame, got {type(df).__module__}."
                f"{type(df).__name__}{hint}"
            )
        fkeys = dict(fkey_col_to_pkey_table or {})
        schema = df.schema
        where = f"columns are {list(schema)}"

        if pkey_col is not None:
            if pkey_col not in schema:
                raise ValueError(f"primary key column {pkey_col!r} is not in the frame; {where}")
            if not schema[pkey_col].is_integer():
                raise ValueError(
                    f"primary key column {pkey_col!r} must hold integers, got {schema[pkey_col]}"
                )
        for col, target in fkeys.items():
            if col not in schema:
                raise ValueError(f"foreign key column {col!r} is not in the frame; {where}")
            if not schema[col].is_integer():
                raise ValueError(
                    f"foreign key column {col!r} must hold integers (row indices of "
                    f"{target!r}), got {schema[col]}"
                )
            if not isinstance(target, str) or not target:
                raise ValueError(
                    f"foreign key column {col!r} must name the table it references, "
                    f"got {target!r}"
                )
            if col == pkey_col:
                raise ValueError(f"column {col!r} cannot be both the primary key and a foreign key")
        if time_col is not None:
            if time_col not in schema:
                raise ValueError(f"time column {time_col!r} is not in the frame; {where}")
            if not isinstance(schema[time_col], pl.Datetime):
                raise ValueError(
                    f"time column {time_col!r} must be a polars Datetime (RelBench compares "
                    f"it with pandas Timestamps), got {schema[time_col]}"
                )
            if time_col == pkey_col or time_col in fkeys:
                raise ValueError(f"time column {time_col!r} cannot also be a key column")

        self.df = df
        self.fkey_col_to_pkey_table = fkeys
        self.pkey_col = pkey_col
        self.time_col = time_col

    @property
    def feature_cols(self) -> list[str]:
        """Columns that are neither the primary key, a foreign key nor the time column."""
        skip = {self.pkey_col, self.time_col, *self.fkey_col_to_pkey_table}
        return [c for c in self.df.columns if c not in skip]

    @property
    def num_tokens(self) -> int:
        """Non-null cells of the feature columns and the time column (DESIGN §8).

        Keys are not tokens: primary keys carry no information and foreign keys are
        edges. NaN is a value, so it counts; only nulls are gaps.
        """
        cols = self.feature_cols + ([self.time_col] if self.time_col is not None else [])
        n = self.df.height
        return int(sum(n - self.df.get_column(c).null_count() for c in cols))

    def __len__(self) -> int:
        return self.df.height

    def __repr__(self) -> str:
        parts = [f"{self.df.height} rows × {self.df.width} cols"]
        if self.pkey_col is not None:
            parts.append(f"pkey_col={self.pkey_col!r}")
        if self.fkey_col_to_pkey_table:
            parts.append(f"fkey_col_to_pkey_table={self.fkey_col_to_pkey_table!r}")
        if self.time_col is not None:
            parts.append(f"time_col={self.time_col!r}")
        return f"Table({', '.join(parts)})"

    def equals(self, other: Table) -> bool:
        """Same roles, same column names, order and dtypes, same values (nulls equal)."""
        return (
            isinstance(other, Table)
            and self.pkey_col == other.pkey_col
            and self.time_col == other.time_col
            and self.fkey_col_to_pkey_table == other.fkey_col_to_pkey_table
            and self.df.schema == other.df.schema
            and self.df.equals(other.df, null_equal=True)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return self.equals(other)

    __hash__ = None  # mutable, compared by value

    # Conversions live in plurel_fast.relbench (which imports pandas and RelBench).

    def to_pandas(self):
        """The frame as pandas, with RelBench's dtypes (see `plurel_fast.relbench`).

        Numeric and time columns without nulls are read-only views of the Polars
        buffers (zero-copy); pandas copies them on write.
        """
        from plurel_fast.relbench import table_to_pandas

        return table_to_pandas(self)

    def to_relbench(self):
        """A `relbench.base.Table` with the same roles over `to_pandas`."""
        from plurel_fast.relbench import table_to_relbench

        return table_to_relbench(self)

    @classmethod
    def from_relbench(cls, table, *, copy: bool = True) -> Table:
        """A `Table` from a `relbench.base.Table`; float key columns become Int64.

        ``copy=False`` shares numeric buffers with the pandas frame, which must then
        not be mutated.
        """
        from plurel_fast.relbench import table_from_relbench

        return table_from_relbench(table, copy=copy)


class Database:
    """Named tables linked by foreign keys, with RelBench's split timestamps.

    Parameters
    ----------
    table_dict
        Table name → `Table`, in the order tables are saved and listed.
    val_timestamp, test_timestamp
        Split times; a `datetime.datetime`, `datetime.date`, pandas Timestamp,
        `numpy.datetime64` or ISO string, stored as a naive `datetime.datetime`.
    name
        Dataset name written to the manifest (the paper uses ``plurel-<seed>``).
    metadata
        Small JSON-able provenance record (seed, config hash, package version, config,
        source columns), saved in the folder's ``plurel_fast.json`` sidecar, which
        RelBench and relational-transformer ignore.
    """

    def __init__(
        self,
        table_dict: dict[str, Table],
        val_timestamp: Any,
        test_timestamp: Any,
        name: str = "plurel-fast",
        metadata: dict | None = None,
    ):
        if not isinstance(table_dict, dict):
            raise TypeError(f"table_dict must be a dict of name → Table, got {type(table_dict).__name__}")
        for tname, table in table_dict.items():
            _check_table_name(tname)
            if not isinstance(table, Table):
                raise TypeError(
                    f"table {tname!r} must be a plurel_fast Table, got {type(table).__name__}"
                )
        for tname, table in table_dict.items():
            for col, target in table.fkey_col_to_pkey_table.items():
                if target not in table_dict:
                    raise ValueError(
                        f"table {tname!r}: foreign key {col!r} references table {target!r}, "
                        f"which is not in the database (tables: {list(table_dict)})"
                    )
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")

        self.table_dict = dict(table_dict)
        self.val_timestamp = _to_datetime(val_timestamp, "val_timestamp")
        self.test_timestamp = _to_datetime(test_timestamp, "test_timestamp")
        if self.val_timestamp > self.test_timestamp:
            raise ValueError(
                f"val_timestamp ({self.val_timestamp.isoformat()}) must not be after "
                f"test_timestamp ({self.test_timestamp.isoformat()})"
            )
        self.name = name
        self.metadata = _json_normalise(metadata)
        # Seconds spent generating, saved beside the metadata but never compared:
        # two runs of the same (seed, config) make equal databases in unequal time.
        self.timings: dict = {}

    @property
    def num_rows(self) -> int:
        return sum(len(t) for t in self.table_dict.values())

    @property
    def num_tokens(self) -> int:
        """Tokens over all tables (DESIGN §8), the unit corpus sizes are counted in."""
        return sum(t.num_tokens for t in self.table_dict.values())

    def __repr__(self) -> str:
        tables = ", ".join(f"{n}={len(t)}" for n, t in self.table_dict.items())
        return f"Database({self.name!r}: {tables}; tokens={self.num_tokens})"

    def equals(self, other: Database, *, check_metadata: bool = True) -> bool:
        """Same tables in the same order (see `Table.equals`), same timestamps and name;
        with ``check_metadata`` also the same metadata."""
        if not isinstance(other, Database):
            return False
        if (
            self.name != other.name
            or self.val_timestamp != other.val_timestamp
            or self.test_timestamp != other.test_timestamp
            or list(self.table_dict) != list(other.table_dict)
            or (check_metadata and self.metadata != other.metadata)
        ):
            return False
        return all(t.equals(other.table_dict[n]) for n, t in self.table_dict.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Database):
            return NotImplemented
        return self.equals(other)

    __hash__ = None  # mutable, compared by value

    def save(
        self, path: str | os.PathLike, *, overwrite: bool = False, pretraining: bool = True
    ) -> Path:
        """Write RelBench's layout (``manifest.yaml`` + ``db/<table>.parquet``) atomically,
        with the pretraining tasks and ``scores.json`` unless ``pretraining=False``.

        The manifest's name is the folder's name. See
        `plurel_fast.io.parquet.write_database`.
        """
        from plurel_fast.io.parquet import write_database

        return write_database(self, path, overwrite=overwrite, pretraining=pretraining)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Database:
        """Read a folder written by `save` (or any RelBench 3.x dataset folder)."""
        from plurel_fast.io.parquet import read_database

        return read_database(path)

    def to_pandas(self) -> dict:
        """Table name → pandas frame, with RelBench's dtypes (zero-copy where Arrow allows)."""
        from plurel_fast.relbench import database_to_pandas

        return database_to_pandas(self)

    def to_relbench(self):
        """A `relbench.base.Database` of the same tables, keys and time columns.

        The split timestamps belong to a RelBench *dataset*; wrap the result in one, or
        use `plurel_fast.SyntheticDataset` / ``relbench.load_dataset`` on a saved folder.
        """
        from plurel_fast.relbench import database_to_relbench

        return database_to_relbench(self)

    @classmethod
    def from_relbench(
        cls,
        db,
        val_timestamp: Any = None,
        test_timestamp: Any = None,
        *,
        name: str | None = None,
        metadata: dict | None = None,
        copy: bool = True,
    ) -> Database:
        """A `Database` from a `relbench.base.Database` or `relbench.base.Dataset`.

        A dataset brings its full database and split timestamps (and its manifest
        name); a bare database needs ``val_timestamp`` and ``test_timestamp``. See
        `plurel_fast.relbench.database_from_relbench`.
        """
        from plurel_fast.relbench import database_from_relbench

        return database_from_relbench(
            db, val_timestamp, test_timestamp, name=name, metadata=metadata, copy=copy
        )


def _is_pandas(obj: object) -> bool:
    return type(obj).__module__.startswith("pandas")


def _check_table_name(name: object) -> None:
    # Table names become file names (db/<name>.parquet), so keep them to one plain component.
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or any(ch in name for ch in "/\\\0")
    ):
        raise ValueError(
            f"table name {name!r} is not usable as a file name: use a non-empty string "
            "without '/', '\\' or a leading '.'"
        )


def _to_datetime(value: Any, field: str) -> _dt.datetime:
    """A naive `datetime.datetime` from the usual spellings of a point in time."""
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError(f"{field} is NaT; give a point in time")
        as_us = value.astype("datetime64[us]")
        if as_us != value:
            raise ValueError(f"{field}={value} is finer than a microsecond; round it first")
        value = as_us.item()
    elif isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{field}={value!r} is not an ISO date/datetime such as '2020-01-31T00:00:00'"
            ) from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            raise ValueError(
                f"{field}={value} has a time zone; time columns are naive, so give a "
                "naive datetime"
            )
        if getattr(value, "nanosecond", 0):
            raise ValueError(f"{field}={value} is finer than a microsecond; round it first")
        # Drop subclasses (pandas Timestamp) so values compare and print plainly.
        return _dt.datetime(
            value.year, value.month, value.day,
            value.hour, value.minute, value.second, value.microsecond,
        )
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    raise TypeError(
        f"{field} must be a datetime, date, pandas Timestamp, numpy datetime64 or ISO "
        f"string, got {type(value).__name__} {value!r}"
    )


def _json_normalise(metadata: dict | None) -> dict:
    # A JSON round trip makes the dict canonical (tuples → lists, keys → str), so what
    # `load` returns equals what was saved.
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be JSON-able (no NaN/inf): {e}") from None
