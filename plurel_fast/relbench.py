"""RelBench adapter: pandas / RelBench conversions and the drop-in `SyntheticDataset`.

Two directions, both through Arrow:

* out (`to_pandas`, `to_relbench`): Polars → Arrow is zero-copy, and Arrow → pandas
  is zero-copy for every numeric or time column held in one chunk without nulls.
  Those pandas columns are read-only views of the Polars buffers; pandas copies them
  on write (copy-on-write), so mutating the returned frames — as RelBench's
  `validate_and_correct_db` may — never reaches the source `Database`.
* in (`from_relbench`): pandas → Polars shares numeric buffers too, but pandas may
  then write into them in place and Polars would not notice. So ``copy=True`` (the
  default) takes one copy; ``copy=False`` shares memory for callers that promise not
  to mutate the source frames afterwards.

Missing values: a pandas NaN in a float column is a missing value (RelBench's
meaning), so it becomes a Polars null and back. Strings come out as ``object``
columns, as ``relbench.load_dataset`` hands them out (DuckDB reads those reliably).

`SyntheticDataset(seed, config)` is a `relbench.base.Dataset` with the constructor of
``plurel.SyntheticDataset``. Importing this module imports RelBench (about a second),
so `plurel_fast` exports it lazily.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
from relbench.base import Database as RelBenchDatabase
from relbench.base import Dataset as RelBenchDataset
from relbench.base import Table as RelBenchTable

from plurel_fast.config import Config
from plurel_fast.database import Database, Table
from plurel_fast.generate import DEFAULT_CHUNK_ROWS, config_record, generate, package_version
from plurel_fast.io.parquet import MANIFEST_FILE, SIDECAR_FILE, check_destination, read_provenance
from plurel_fast.plan.schema import plan_time_window

__all__ = [
    "CacheMismatchError",
    "SyntheticDataset",
    "database_from_relbench",
    "database_to_pandas",
    "database_to_relbench",
    "table_from_pandas",
    "table_from_relbench",
    "table_to_pandas",
    "table_to_relbench",
]


# ------------------------------------------------------------------ conversions: out


def table_to_pandas(table: Table) -> pd.DataFrame:
    """The table's frame in pandas, with the dtypes ``relbench.load_dataset`` gives.

    Integer keys stay ``int64`` (a key column with nulls becomes ``float64`` with NaN,
    as Arrow and RelBench do it), float features ``float64`` with NaN for nulls,
    booleans ``bool`` (``object`` if they hold nulls), time columns ``datetime64``
    in the Polars column's unit (``ns`` for generated tables), strings ``object``.
    """
    # split_blocks keeps one pandas block per column, so nothing is consolidated
    # (copied) into 2-D blocks.
    df = table.df.to_arrow().to_pandas(split_blocks=True)
    for col in df.columns:
        if isinstance(df[col].dtype, pd.StringDtype):
            df[col] = df[col].astype(object)
    return df


def table_to_relbench(table: Table) -> RelBenchTable:
    """A `relbench.base.Table` over `table_to_pandas` of `table`, with the same roles."""
    return RelBenchTable(
        df=table_to_pandas(table),
        fkey_col_to_pkey_table=dict(table.fkey_col_to_pkey_table),
        pkey_col=table.pkey_col,
        time_col=table.time_col,
    )


def database_to_pandas(db: Database) -> dict[str, pd.DataFrame]:
    """Table name → pandas frame (see `table_to_pandas`), in table order."""
    return {name: table_to_pandas(t) for name, t in db.table_dict.items()}


def database_to_relbench(db: Database) -> RelBenchDatabase:
    """A `relbench.base.Database` of the same tables (timestamps live on the dataset)."""
    return RelBenchDatabase({name: table_to_relbench(t) for name, t in db.table_dict.items()})


# ------------------------------------------------------------------- conversions: in


def table_from_pandas(
    df: pd.DataFrame,
    fkey_col_to_pkey_table: dict[str, str] | None = None,
    pkey_col: str | None = None,
    time_col: str | None = None,
    *,
    copy: bool = True,
    name: str = "table",
) -> Table:
    """A `Table` from a pandas frame and its roles.

    The index is dropped. Key columns stored as floats (RelBench keeps foreign keys
    with missing values as ``float64`` with NaN) become ``Int64`` with nulls, provided
    every value is a whole number. ``name`` only labels error messages.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"table {name!r}: expected a pandas DataFrame, got {type(df).__name__}")
    fkeys = dict(fkey_col_to_pkey_table or {})
    try:
        frame = pl.from_pandas(df.copy(deep=True) if copy else df, nan_to_null=True)
    except Exception as e:  # pyarrow / polars raise many types for unconvertible columns
        raise ValueError(f"table {name!r}: cannot convert the pandas frame to Polars: {e}") from e
    casts = [
        _key_to_int(frame, col, name)
        for col in (pkey_col, *fkeys)
        if col is not None and col in frame.columns and frame.schema[col].is_float()
    ]
    if casts:
        frame = frame.with_columns(casts)
    try:
        return Table(frame, fkeys, pkey_col, time_col)
    except (TypeError, ValueError) as e:
        raise ValueError(f"table {name!r}: {e}") from e


def table_from_relbench(table: RelBenchTable, *, copy: bool = True, name: str = "table") -> Table:
    """A `Table` from a `relbench.base.Table` (see `table_from_pandas`)."""
    return table_from_pandas(
        table.df,
        table.fkey_col_to_pkey_table,
        table.pkey_col,
        table.time_col,
        copy=copy,
        name=name,
    )


def database_from_relbench(
    db: RelBenchDatabase | RelBenchDataset,
    val_timestamp: Any = None,
    test_timestamp: Any = None,
    *,
    name: str | None = None,
    metadata: dict | None = None,
    copy: bool = True,
) -> Database:
    """A `Database` from a RelBench database or dataset.

    Parameters
    ----------
    db
        A `relbench.base.Database`, or a `relbench.base.Dataset` (e.g. what
        ``relbench.load_dataset`` returns), whose full database
        (``get_db(upto_test_timestamp=False)``) and split timestamps are taken.
    val_timestamp, test_timestamp
        Split times; required for a bare Database (it carries none), and override a
        dataset's.
    name
        Dataset name; defaults to the dataset's manifest name, or ``"relbench"``.
    metadata
        Provenance record kept on the result (saved in the manifest).
    copy
        Copy the frames (default). ``False`` shares numeric buffers with the pandas
        frames: then the source frames must not be mutated afterwards.
    """
    if isinstance(db, RelBenchDataset):
        dataset = db
        if val_timestamp is None:
            val_timestamp = dataset.val_timestamp
        if test_timestamp is None:
            test_timestamp = dataset.test_timestamp
        if name is None:
            name = getattr(getattr(dataset, "manifest", None), "name", None) or getattr(
                dataset, "name", None
            )
        db = dataset.get_db(upto_test_timestamp=False)
    if not isinstance(db, RelBenchDatabase):
        raise TypeError(
            "from_relbench needs a relbench.base.Database or relbench.base.Dataset, "
            f"got {type(db).__module__}.{type(db).__name__}"
        )
    if val_timestamp is None or test_timestamp is None:
        raise ValueError(
            "a relbench Database carries no split timestamps: pass val_timestamp= and "
            "test_timestamp=, or pass the relbench Dataset (e.g. relbench.load_dataset(...)) "
            "instead of its database"
        )
    tables = {
        tname: table_from_relbench(t, copy=copy, name=tname) for tname, t in db.table_dict.items()
    }
    return Database(
        tables,
        val_timestamp=_plain_timestamp(val_timestamp),
        test_timestamp=_plain_timestamp(test_timestamp),
        name=name or "relbench",
        metadata=metadata,
    )


def _key_to_int(frame: pl.DataFrame, col: str, table: str) -> pl.Expr:
    s = frame.get_column(col)
    # NaN was turned into null already; anything left must be a whole int64.
    ok = s.is_null() | (s.is_finite() & (s.round(0) == s) & (s.abs() < 2.0**63))
    if not ok.all():
        bad = s.filter(~ok).head(3).to_list()
        raise ValueError(
            f"table {table!r}: key column {col!r} holds floats that are not whole "
            f"row indices, e.g. {bad}"
        )
    return pl.col(col).cast(pl.Int64)


def _plain_timestamp(value: Any) -> Any:
    # RelBench timestamps are pandas Timestamps, possibly with nanoseconds; our
    # Database keeps microseconds, which every RelBench split time fits.
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime(warn=False) if value.nanosecond == 0 else value
    return value


# ------------------------------------------------------------------ SyntheticDataset


class CacheMismatchError(RuntimeError):
    """A cache folder holds a database that this dataset's seed and config did not make."""


class SyntheticDataset(RelBenchDataset):
    """The synthetic database ``plurel-<seed>`` as a RelBench dataset.

    Drop-in for ``plurel.SyntheticDataset``: same constructor, ``val_timestamp`` and
    ``test_timestamp`` set on construction (from the plan's time window, without
    generating anything), ``make_db()`` / ``get_db()`` returning a
    `relbench.base.Database` of pandas frames.

    The database is generated on first use and kept on the instance, so the repeated
    ``get_db`` calls of RelBench tasks cost a conversion, not a generation; every call
    still returns fresh frames. With ``config.cache_dir`` it is saved once to the folder
    ``cache_dir`` itself, as ``plurel`` does it (``cache_dir=f"out/plurel-{seed}"``
    gives ``out/plurel-<seed>/manifest.yaml``, a manifest named ``plurel-<seed>``), in
    RelBench's layout (``relbench.load_dataset`` reads that folder), and loaded from
    there afterwards. A folder made with another config (or seed) raises
    `CacheMismatchError`; it is never reused silently.

    Parameters
    ----------
    seed
        Non-negative database seed.
    config
        Generation parameters; ``Config()`` if omitted. ``cache_dir`` may start with ``~``.
    chunk_rows
        Rows per kernel call during generation; never changes the output.
    """

    def __init__(
        self, seed: int, config: Config | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ):
        if config is None:
            config = Config()
        if not isinstance(config, Config):
            raise TypeError(f"config must be a plurel_fast.Config, got {type(config).__name__}")
        db_min, db_max, val_ts, test_ts = plan_time_window(seed, config)  # validates seed
        self.seed = int(seed)
        self.config = config
        self.chunk_rows = chunk_rows
        self.min_timestamp = pd.Timestamp(db_min)
        self.max_timestamp = pd.Timestamp(db_max)
        self.val_timestamp = pd.Timestamp(val_ts)
        self.test_timestamp = pd.Timestamp(test_ts)
        self.cache_dir = (
            Path(config.cache_dir).expanduser().absolute() if config.cache_dir else None
        )
        self._database: Database | None = None

    @property
    def name(self) -> str:
        return f"plurel-{self.seed}"

    @property
    def cache_path(self) -> Path | None:
        """The database folder: ``cache_dir`` itself, or None without a cache_dir."""
        return self.cache_dir

    def __repr__(self) -> str:
        where = f", cache_path='{self.cache_path}'" if self.cache_dir is not None else ""
        return f"SyntheticDataset(seed={self.seed}, config_hash={self.config.config_hash!r}{where})"

    def get_database(self) -> Database:
        """The plurel_fast `Database` (Polars frames): generated, or loaded from the
        cache, on the first call and kept."""
        if self._database is None:
            self._database = self._load_or_generate()
        return self._database

    def make_db(self) -> RelBenchDatabase:
        """The whole database as a `relbench.base.Database` of fresh pandas frames."""
        return self.get_database().to_relbench()

    # ------------------------------------------------------------------ cache

    def _load_or_generate(self) -> Database:
        path = self.cache_path
        # An empty folder (made ahead by a job script, a temporary directory) is a cache
        # not written yet.
        empty = path is not None and path.is_dir() and not any(path.iterdir())
        if path is not None and (path.exists() or path.is_symlink()) and not empty:
            return self._load_cache(path)
        if path is not None:
            check_destination(path, overwrite=empty)  # an unwritable cache fails before the work
        db = generate(self.seed, self.config, chunk_rows=self.chunk_rows)
        if path is not None:
            try:
                db.save(path, overwrite=empty)
            except FileExistsError:
                # Another process saved the same seed meanwhile; use (and check) its copy.
                return self._load_cache(path)
        return db

    def _load_cache(self, path: Path) -> Database:
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise CacheMismatchError(
                f"cache folder {path} exists but holds no {MANIFEST_FILE}, so it is not a "
                f"saved database; delete it, or set Config.cache_dir to another folder"
            )
        try:
            stamp = read_provenance(path)
        except ValueError as e:
            raise CacheMismatchError(f"{e}; delete {path} to regenerate it") from None
        want_hash = self.config.config_hash
        have_hash, have_seed = stamp.get("config_hash"), stamp.get("seed")
        if have_seed != self.seed or have_hash != want_hash:
            raise CacheMismatchError(_mismatch_message(path, stamp, self.seed, self.config))
        have_version = stamp.get("plurel_fast_version")
        if have_version != package_version():
            warnings.warn(
                f"{path} was generated by plurel_fast {have_version}, this is "
                f"{package_version()}; same seed and config, but generator changes between "
                "versions may make its tables differ from a fresh run. Delete the folder "
                "to regenerate it.",
                stacklevel=4,
            )
        db = Database.load(path)
        db.name = self.name  # the folder's name is the manifest's; the dataset keeps its own
        if (db.val_timestamp, db.test_timestamp) != (
            self.val_timestamp.to_pydatetime(),
            self.test_timestamp.to_pydatetime(),
        ):
            raise CacheMismatchError(
                f"{manifest_path} has val/test timestamps {db.val_timestamp} / "
                f"{db.test_timestamp}, but seed {self.seed} with config {want_hash} gives "
                f"{self.val_timestamp} / {self.test_timestamp}; delete {path} to regenerate it"
            )
        return db


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _mismatch_message(path: Path, stamp: dict, seed: int, config: Config) -> str:
    want = config.config_hash
    if not stamp:
        what = (
            f"a database without our {SIDECAR_FILE} (not made by plurel_fast)"
        )
    else:
        what = f"plurel-{stamp.get('seed')} generated with config_hash {stamp.get('config_hash')!r}"
    detail = ""
    stored = stamp.get("config")
    if isinstance(stored, dict) and stamp.get("config_hash") != want:
        a, b = _flatten(stored), _flatten(config_record(config))
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k, None) != b.get(k, None))
        if differ:
            more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            shown = ", ".join(differ[:5]) + more
            detail = f" Fields that differ: {shown}."
    return (
        f"stale cache: {path} holds {what}, but this SyntheticDataset is seed {seed} with "
        f"config_hash {want!r}.{detail} Delete {path} to regenerate it with the current "
        "config, or set Config.cache_dir to a folder kept for this config."
    )

