"""Parquet + manifest in RelBench's on-disk layout, written atomically (SPEC §6).

Layout of a saved database::

    <dir>/manifest.yaml           RelBench 3.x DatasetManifest (+ our `plurel_fast` key)
    <dir>/db/<table>.parquet      one file per table, in table order

RelBench 3.x reads keys and time columns from the manifest only. RelBench 1.x/2.x
(`Table.load`) reads them from each file's Arrow schema metadata instead: keys
``fkey_col_to_pkey_table``, ``pkey_col``, ``time_col``, each ``json.dumps``-encoded,
as its `Table.save` wrote them. We write both, so `<dir>/db` also loads with the old
`Database.load`.

Files are byte-for-byte reproducible: same frame (whatever its chunking) → same bytes
with the same pyarrow version. Parquet carries no write time; pyarrow only records its
own version in ``created_by``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
import warnings
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from plurel_fast.database import Database, Table

__all__ = ["read_database", "write_database", "table_to_arrow", "MANIFEST_FILE", "DB_DIR"]

MANIFEST_FILE = "manifest.yaml"
DB_DIR = "db"
MANIFEST_VERSION = 1  # relbench.manifest.MANIFEST_VERSION
METADATA_KEY = "plurel_fast"

# Fixed so that output bytes do not drift with pyarrow's defaults.
PARQUET_OPTIONS = dict(
    version="2.6",  # keeps timestamp[ns] as nanoseconds
    compression="zstd",
    compression_level=1,
    row_group_size=1 << 20,
    use_dictionary=True,
    write_statistics=True,
    data_page_version="1.0",
    store_schema=True,
)

_INT32_MAX = 2**31 - 1


def table_to_arrow(table: Table) -> pa.Table:
    """The Arrow table we write: plain ``string`` columns and the legacy key metadata."""
    at = table.df.to_arrow()
    fields = []
    for field, column in zip(at.schema, at.columns):
        if pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type):
            # Polars hands out large_string / string_view; pandas writes plain string,
            # which every Arrow reader knows. Keep large_string only where 32-bit offsets
            # would overflow.
            nbytes = pc.sum(pc.binary_length(column)).as_py() or 0
            if nbytes <= _INT32_MAX:
                field = field.with_type(pa.string())
        fields.append(field)
    schema = pa.schema(fields)
    if schema != at.schema:
        at = at.cast(schema)
    legacy = {
        "fkey_col_to_pkey_table": table.fkey_col_to_pkey_table,
        "pkey_col": table.pkey_col,
        "time_col": table.time_col,
    }
    # Exactly relbench 1.x Table.save's encoding: json.dumps(value).encode("utf-8").
    meta = {k.encode("utf-8"): json.dumps(v).encode("utf-8") for k, v in legacy.items()}
    return at.replace_schema_metadata({**(at.schema.metadata or {}), **meta})


def manifest_dict(db: Database) -> dict:
    """relbench.manifest.DatasetManifest.to_dict() of `db`, plus our metadata key."""
    return {
        "name": db.name,
        "manifest_version": MANIFEST_VERSION,
        "val_timestamp": db.val_timestamp.isoformat(),
        "test_timestamp": db.test_timestamp.isoformat(),
        "tables": {
            name: {
                "pkey": t.pkey_col,
                "time_col": t.time_col,
                "fkeys": dict(t.fkey_col_to_pkey_table),
            }
            for name, t in db.table_dict.items()
        },
        METADATA_KEY: db.metadata,
    }


def write_database(db: Database, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save `db` to the folder `path`, all or nothing.

    Everything is written to a hidden sibling ``.<name>.tmp-<random>``, fsynced, and
    renamed into place, so a folder at `path` is always complete. An existing `path`
    raises `FileExistsError` unless ``overwrite=True``; then the old folder is renamed
    aside, the new one renamed in, and only then is the old one deleted. Only folders
    that are empty or hold a ``manifest.yaml`` are ever replaced.

    Returns the path of the written folder.
    """
    if not isinstance(db, Database):
        raise TypeError(f"write_database needs a plurel_fast Database, got {type(db).__name__}")
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{target} already exists; pass overwrite=True to replace it, or choose "
                "another path"
            )
        _check_replaceable(target)
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)

    tmp = parent / f".{target.name}.tmp-{secrets.token_hex(6)}"
    os.mkdir(tmp)
    try:
        _write_contents(db, tmp)
        _move_into_place(tmp, target.absolute(), parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_database(path: str | os.PathLike) -> Database:
    """Load a folder written by `write_database` (or any RelBench 3.x dataset folder).

    Tables come back as Polars frames in manifest order, with the dtypes they were
    saved with; metadata is the manifest's ``plurel_fast`` mapping ({} if absent).
    """
    root = Path(path)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        what = "does not exist" if not root.exists() else f"has no {MANIFEST_FILE}"
        raise FileNotFoundError(
            f"{root} {what}; a saved database is a folder holding {MANIFEST_FILE} and "
            f"{DB_DIR}/<table>.parquet"
        )
    with open(manifest_path, encoding="utf-8") as f:
        manifest = yaml.safe_load(f)
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: expected a mapping at top level, got {manifest!r}")
    for key in ("name", "val_timestamp", "test_timestamp", "tables"):
        if key not in manifest:
            raise ValueError(f"{manifest_path}: missing required key {key!r}")
    version = manifest.get("manifest_version", MANIFEST_VERSION)
    if version != MANIFEST_VERSION:
        raise ValueError(
            f"{manifest_path}: manifest_version {version!r} is not supported "
            f"(this reader knows version {MANIFEST_VERSION})"
        )
    specs = manifest["tables"] or {}
    if not isinstance(specs, dict):
        raise ValueError(f"{manifest_path}: 'tables' must be a mapping of name → spec")

    table_dict: dict[str, Table] = {}
    for name, spec in specs.items():
        spec = spec or {}
        file = root / DB_DIR / f"{name}.parquet"
        if not file.is_file():
            raise FileNotFoundError(
                f"table {name!r} is listed in {manifest_path} but its file {file} is missing"
            )
        df = pl.read_parquet(file)
        try:
            table_dict[name] = Table(
                df,
                fkey_col_to_pkey_table=dict(spec.get("fkeys") or {}),
                pkey_col=spec.get("pkey"),
                time_col=spec.get("time_col"),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"table {name!r} ({file}) does not match {manifest_path}: {e}") from e
    try:
        return Database(
            table_dict,
            val_timestamp=_yaml_time(manifest["val_timestamp"]),
            test_timestamp=_yaml_time(manifest["test_timestamp"]),
            name=str(manifest["name"]),
            metadata=manifest.get(METADATA_KEY) or {},
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{manifest_path}: {e}") from e


def _yaml_time(value):
    # A hand-written manifest may hold an unquoted date, which YAML parses itself.
    if isinstance(value, (_dt.date, _dt.datetime, str)):
        return value
    return str(value)


def _check_replaceable(target: Path) -> None:
    # overwrite=True deletes the old folder, so refuse anything that is not plainly a
    # previous save: a guard against `save("~", overwrite=True)`.
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder; refusing to replace it")
    if (target / MANIFEST_FILE).is_file() or not any(target.iterdir()):
        return
    raise FileExistsError(
        f"{target} is not empty and holds no {MANIFEST_FILE}, so it does not look like a "
        "saved database; refusing to delete it"
    )


def _write_contents(db: Database, root: Path) -> None:
    db_dir = root / DB_DIR
    os.mkdir(db_dir)
    for name, table in db.table_dict.items():
        file = db_dir / f"{name}.parquet"
        pq.write_table(table_to_arrow(table), file, **PARQUET_OPTIONS)
        _fsync_file(file)
    _fsync_dir(db_dir)
    # The manifest goes last: a folder with a manifest has all its tables.
    text = yaml.safe_dump(
        manifest_dict(db),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )
    manifest_path = root / MANIFEST_FILE
    with open(manifest_path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(root)


def _move_into_place(tmp: Path, target: Path, parent: Path) -> None:
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        _fsync_dir(parent)
        return
    old = parent / f".{target.name}.old-{secrets.token_hex(6)}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    _fsync_dir(parent)
    try:
        shutil.rmtree(old)
    except OSError as e:
        warnings.warn(f"saved {target}, but could not delete the replaced copy {old}: {e}",
                      stacklevel=3)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Makes renames and new entries durable; directories cannot be opened on Windows.
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
