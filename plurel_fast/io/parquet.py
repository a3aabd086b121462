"""Parquet + manifest in RelBench's on-disk layout, written atomically (SPEC §6).

Layout of a saved database::

    <dir>/manifest.yaml                 RelBench 3.x DatasetManifest, nothing else
    <dir>/db/<table>.parquet            one file per table, in table order
    <dir>/tasks/<table>-<col>/manifest.yaml
                                        one RelBench autocomplete task per pretraining
                                        target (`plurel_fast.pretraining`)
    <dir>/scores.json                   per feature column: is_source_node, n_unique,
                                        n_classes, majority_frac, std
    <dir>/plurel_fast.json              our provenance sidecar: seed, config_hash, config,
                                        generator version, source columns, timings

The manifest holds exactly the keys of RelBench's ``DatasetManifest`` because
relational-transformer's preprocessor refuses unknown keys, and its timestamps are
``'YYYY-MM-DD'`` (what that preprocessor parses) whenever they fall on midnight, as
generated ones do. Its ``name`` is the folder's name: the preprocessor writes its output
under that name, and RT's PluRel task lister finds the raw folder by it.

RelBench 3.x reads keys and time columns from the manifest only. RelBench 1.x/2.x
(`Table.load`) reads them from each file's Arrow schema metadata instead: keys
``fkey_col_to_pkey_table``, ``pkey_col``, ``time_col``, each ``json.dumps``-encoded,
as its `Table.save` wrote them. We write both, so `<dir>/db` also loads with the old
`Database.load`.

Files are byte-for-byte reproducible: same frame (whatever its chunking) → same bytes
with the same pyarrow version. Parquet carries no write time; pyarrow only records its
own version in ``created_by``. The sidecar's timings are the only bytes that differ
between two runs.
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

__all__ = [
    "DB_DIR",
    "MANIFEST_FILE",
    "SCORES_FILE",
    "SIDECAR_FILE",
    "TASKS_DIR",
    "read_database",
    "read_provenance",
    "table_to_arrow",
    "write_database",
]

MANIFEST_FILE = "manifest.yaml"
DB_DIR = "db"
TASKS_DIR = "tasks"
SCORES_FILE = "scores.json"
SIDECAR_FILE = "plurel_fast.json"
MANIFEST_VERSION = 1  # relbench.manifest.MANIFEST_VERSION
METADATA_KEY = "plurel_fast"  # where folders saved before the sidecar kept the metadata

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


def manifest_dict(db: Database, name: str | None = None) -> dict:
    """relbench.manifest.DatasetManifest.to_dict() of `db`, named ``name`` (default
    ``db.name``), and nothing else."""
    return {
        "name": db.name if name is None else name,
        "manifest_version": MANIFEST_VERSION,
        "val_timestamp": manifest_time(db.val_timestamp),
        "test_timestamp": manifest_time(db.test_timestamp),
        "tables": {
            tname: {
                "pkey": t.pkey_col,
                "time_col": t.time_col,
                "fkeys": dict(t.fkey_col_to_pkey_table),
            }
            for tname, t in db.table_dict.items()
        },
    }


def manifest_time(t: _dt.datetime) -> str:
    """``'YYYY-MM-DD'`` for a midnight (relational-transformer parses only that form),
    else the full ISO datetime, which RelBench reads and no split time loses."""
    if t == _dt.datetime(t.year, t.month, t.day):
        return t.date().isoformat()
    return t.isoformat()


def sidecar_dict(db: Database) -> dict:
    """Our provenance file: the metadata, plus the timings when there are any."""
    out = dict(db.metadata)
    if getattr(db, "timings", None):
        out["timings"] = db.timings
    return out


def write_database(
    db: Database, path: str | os.PathLike, *, overwrite: bool = False, pretraining: bool = True
) -> Path:
    """Save `db` to the folder `path`, all or nothing.

    The manifest is named after the folder (``path``'s last component). With
    ``pretraining`` (the default) the folder also gets one RelBench autocomplete task per
    pretraining target under ``tasks/`` and ``scores.json`` (`plurel_fast.pretraining`).

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
        _write_contents(db, tmp, target.absolute().name, pretraining)
        _move_into_place(tmp, target.absolute(), parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_database(path: str | os.PathLike) -> Database:
    """Load a folder written by `write_database` (or any RelBench 3.x dataset folder).

    Tables come back as Polars frames in manifest order, with the dtypes they were
    saved with; metadata and timings come from the ``plurel_fast.json`` sidecar
    (`read_provenance`; {} for a folder we did not write).
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
    provenance = read_provenance(root, manifest)
    timings = provenance.pop("timings", None)
    try:
        db = Database(
            table_dict,
            val_timestamp=_yaml_time(manifest["val_timestamp"]),
            test_timestamp=_yaml_time(manifest["test_timestamp"]),
            name=str(manifest["name"]),
            metadata=provenance,
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{manifest_path}: {e}") from e
    db.timings = timings if isinstance(timings, dict) else {}
    return db


def read_provenance(path: str | os.PathLike, manifest: dict | None = None) -> dict:
    """The provenance record of a saved database folder: its ``plurel_fast.json``
    (timings included), or for a folder saved before the sidecar existed the
    manifest's ``plurel_fast`` block; {} when there is neither.

    A sidecar that is not a JSON object raises ``ValueError`` naming the file.
    """
    root = Path(path)
    sidecar = root / SIDECAR_FILE
    if sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{sidecar} is not valid JSON: {e}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{sidecar}: expected a JSON object, got {type(record).__name__}")
        return record
    if manifest is None:
        manifest_path = root / MANIFEST_FILE
        if not manifest_path.is_file():
            return {}
        with open(manifest_path, encoding="utf-8") as f:
            manifest = yaml.safe_load(f)
    legacy = manifest.get(METADATA_KEY) if isinstance(manifest, dict) else None
    return dict(legacy) if isinstance(legacy, dict) else {}


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


def _write_contents(db: Database, root: Path, name: str, pretraining: bool) -> None:
    db_dir = root / DB_DIR
    os.mkdir(db_dir)
    for tname, table in db.table_dict.items():
        file = db_dir / f"{tname}.parquet"
        pq.write_table(table_to_arrow(table), file, **PARQUET_OPTIONS)
        _fsync_file(file)
    _fsync_dir(db_dir)
    if pretraining:
        _write_pretraining(db, root)
    _write_text(root / SIDECAR_FILE, json.dumps(sidecar_dict(db), indent=1, allow_nan=False) + "\n")
    # The manifest goes last: a folder with a manifest has all its tables.
    _write_text(root / MANIFEST_FILE, _yaml_text(manifest_dict(db, name)))
    _fsync_dir(root)


def _write_pretraining(db: Database, root: Path) -> None:
    from plurel_fast.pretraining import database_scores, pretraining_targets, task_manifest

    targets = [t for t in pretraining_targets(db) if _is_plain_name(t.name)]
    skipped = len(pretraining_targets(db)) - len(targets)
    if skipped:
        warnings.warn(
            f"{skipped} pretraining target(s) not written as tasks: their column names "
            "are not usable as folder names (a '/', '\\', NUL or a leading '.')",
            stacklevel=4,
        )
    if targets:
        tasks_dir = root / TASKS_DIR
        os.mkdir(tasks_dir)
        for target in targets:
            task_dir = tasks_dir / target.name
            os.mkdir(task_dir)
            time_col = db.table_dict[target.table].time_col
            _write_text(task_dir / MANIFEST_FILE, _yaml_text(task_manifest(target, time_col)))
            _fsync_dir(task_dir)
        _fsync_dir(tasks_dir)
    scores = database_scores(db)
    _write_text(root / SCORES_FILE, json.dumps(scores, indent=1, allow_nan=False) + "\n")


def _is_plain_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


def _yaml_text(data: dict) -> str:
    return yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


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
