"""Parquet + manifest in RelBench's on-disk layout, written atomically (DESIGN §6).

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

import ctypes
import datetime as _dt
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
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
    "save_folder",
    "table_to_arrow",
    "write_database",
    "write_pretraining_files",
    "write_sidecar_and_manifest",
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


def table_to_arrow(table: Table, large_strings: set | None = None) -> pa.Table:
    """The Arrow table we write: plain ``string`` columns and the legacy key metadata.

    ``large_strings`` names the string columns to keep as ``large_string`` (for a run
    of a table's rows, decided on the whole column); by default those whose bytes
    overflow 32-bit offsets."""
    at = table.df.to_arrow()
    fields = []
    for field, column in zip(at.schema, at.columns):
        if pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type):
            # Polars hands out large_string / string_view; pandas writes plain string,
            # which every Arrow reader knows. Keep large_string only where 32-bit offsets
            # would overflow.
            if large_strings is not None:
                large = field.name in large_strings
            else:
                large = (pc.sum(pc.binary_length(column)).as_py() or 0) > _INT32_MAX
            field = field.with_type(pa.large_string() if large else pa.string())
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

    Everything is written to a hidden sibling ``.<name>.tmp-<host>-<pid>-<random>``,
    fsynced (every file and folder, `_sync_tree`), and renamed into place, so a folder
    at `path` is always complete. An existing `path` raises `FileExistsError` unless
    ``overwrite=True``; then the old folder is renamed aside, the new one renamed in,
    and only then is the old one deleted. Only folders that are empty or hold a
    ``manifest.yaml`` are ever replaced.

    Concurrent saves to one `path` (two processes, or a folder made by hand meanwhile):
    the final rename happens under a lock on the parent folder, after checking that
    `path` is still what this save found when it started. Exactly one save wins; a save
    that finds `path` created or replaced meanwhile raises `FileExistsError` and leaves
    the other's folder as it is.

    Temporary folders of saves killed before they finished (their process on this host
    is gone) are removed by the next save to the same parent.

    Returns the path of the written folder.
    """
    if not isinstance(db, Database):
        raise TypeError(f"write_database needs a plurel_fast Database, got {type(db).__name__}")
    return save_folder(
        path, lambda root, name: _write_contents(db, root, name, pretraining), overwrite=overwrite
    )


def save_folder(path, write_contents, *, overwrite: bool = False) -> Path:
    """The all-or-nothing save of `write_database` around ``write_contents(root, name)``,
    which fills the temporary folder ``root`` for a database to be named ``name``
    (without syncing anything: the whole folder is synced here before it is published)."""
    target = Path(path)
    check_destination(target, overwrite=overwrite)
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    found = _identity(target)
    remove_stale_temporaries(parent, target.name)

    tmp = parent / f".{target.name}.tmp-{_owner_tag()}-{secrets.token_hex(4)}"
    os.mkdir(tmp)
    try:
        write_contents(tmp, target.absolute().name)
        _sync_tree(tmp)
        with _locked(parent):
            if _identity(target) != found:
                raise FileExistsError(
                    f"{target} was created or replaced by another process while this save "
                    "was writing; left it as it is (this save is discarded)"
                )
            _move_into_place(tmp, target.absolute(), parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def check_destination(target: Path, *, overwrite: bool = False) -> None:
    """Raise now, before any work, if a database cannot be saved at `target`: it
    exists (without ``overwrite``, or is no saved database to replace), a parent is a
    file, or the nearest existing parent folder is not writable (read-only mount,
    ``/sys``, permissions). Nothing is left behind."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{target} already exists; pass overwrite=True to replace it, or choose "
                "another path"
            )
        _check_replaceable(target)
    ancestor = target.absolute().parent
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise FileExistsError(f"{ancestor} is a dangling symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot save to {target}: {ancestor} is a file, not a folder")
    probe = ancestor / f".plurel_fast-probe-{_owner_tag()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(probe)
    except OSError as e:
        raise PermissionError(
            f"cannot save to {target}: {ancestor} is not writable ({e.strerror or e})"
        ) from None
    os.rmdir(probe)


def remove_stale_temporaries(parent: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary folders that saves killed mid-write left in `parent`
    (``.<name>.tmp-<host>-<pid>-*`` / ``.<name>.old-<host>-<pid>-*`` whose process on
    this host no longer runs); only those of `name` when given. Returns what it removed.
    Folders of other hosts (a shared filesystem) are left alone: their owners cannot be
    checked from here."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    host = _hostname()
    for entry in entries:
        stem, kind, tag = _split_temporary(entry.name)
        if stem is None or (name is not None and stem != name):
            continue
        owner_host, _, pid = tag.rpartition("-")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _split_temporary(name: str):
    # ".<stem>.tmp-<host>-<pid>-<hex>" -> (stem, "tmp", "<host>-<pid>")
    if not name.startswith("."):
        return None, None, None
    for kind in (".tmp-", ".old-"):
        stem, sep, rest = name[1:].rpartition(kind)
        if sep and stem:
            tag, _, suffix = rest.rpartition("-")
            if tag and len(suffix) == 8:
                return stem, kind, tag
    return None, None, None


def _hostname() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _owner_tag() -> str:
    return f"{_hostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _identity(path: Path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


class _locked:
    """An exclusive flock on a folder for the few renames that publish a save."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        self.fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock: the identity check still runs
            pass
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock


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
    manifest = load_manifest(manifest_path)
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
    _check_keys(table_dict, manifest_path)
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
        manifest = load_manifest(manifest_path)
    legacy = manifest.get(METADATA_KEY) if isinstance(manifest, dict) else None
    return dict(legacy) if isinstance(legacy, dict) else {}


MAX_MANIFEST_BYTES = 16 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases: a manifest never needs them,
    and a few kilobytes of nested aliases expand to gigabytes (a "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases are not allowed in a manifest ({event.start_mark})")
        return super().compose_node(parent, index)


def load_manifest(path: Path):
    """Parse a manifest (ours, a task's or any RelBench one) with size and alias limits."""
    size = os.path.getsize(path)
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{path} is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    with open(path, encoding="utf-8") as f:
        try:
            return yaml.load(f, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not a valid manifest: {e}") from None


def _check_keys(tables: dict, where: Path) -> None:
    """Keys a folder's tables must satisfy (cheap, vectorised): primary keys without
    nulls or duplicates; foreign keys non-negative and naming an existing parent row; a
    table without a primary key sorted by its time column (RelBench's rule). Null
    foreign keys (a missing reference, which RelBench datasets hold) are allowed, and so
    is a table with a primary key whose rows are not in time order."""
    for name, table in tables.items():
        df = table.df
        if table.pkey_col is None and table.time_col is not None:
            # Without a primary key a row's identity is its position, which RelBench's
            # time cuts keep only when the rows are in time order.
            t = df.get_column(table.time_col)
            if t.null_count() or not t.is_sorted():
                raise ValueError(
                    f"{where}: table {name!r} has no primary key and its time column "
                    f"{table.time_col!r} is not sorted (or has nulls), so its rows have no "
                    "identity that survives RelBench's time cuts; sort it by time"
                )
        if table.pkey_col is not None:
            pk = df.get_column(table.pkey_col)
            if pk.null_count():
                raise ValueError(f"{where}: table {name!r}: primary key {table.pkey_col!r} has nulls")
            if pk.n_unique() != len(pk):
                dup = pk.filter(pk.is_duplicated()).head(3).to_list()
                raise ValueError(
                    f"{where}: table {name!r}: primary key {table.pkey_col!r} has duplicates, "
                    f"e.g. {dup}"
                )
    for name, table in tables.items():
        for col, parent_name in table.fkey_col_to_pkey_table.items():
            fk = table.df.get_column(col).drop_nulls()
            if not len(fk):
                continue
            parent = tables[parent_name]
            where_col = f"{where}: table {name!r}: foreign key {col!r} -> {parent_name!r}"
            if fk.min() < 0:
                raise ValueError(f"{where_col} has negative values, e.g. {fk.filter(fk < 0).head(3).to_list()}")
            if parent.pkey_col is None:
                bad = fk.filter(fk >= len(parent))
            else:
                pk = parent.df.get_column(parent.pkey_col)
                n = len(pk)
                if n and pk.min() == 0 and pk.max() == n - 1:  # unique, so exactly 0..n-1
                    bad = fk.filter(fk >= n)
                else:
                    bad = fk.filter(~fk.is_in(pk.implode()))
            if len(bad):
                raise ValueError(
                    f"{where_col} names rows the parent does not have, e.g. {bad.head(3).to_list()}"
                )


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
        pq.write_table(table_to_arrow(table), db_dir / f"{tname}.parquet", **PARQUET_OPTIONS)
    if pretraining:
        write_pretraining_files(db, root)
    write_sidecar_and_manifest(db, root, name)


def write_sidecar_and_manifest(db: Database, root: Path, name: str) -> None:
    """``plurel_fast.json``, then ``manifest.yaml`` (last: a folder with a manifest has
    all its tables)."""
    _write_text(root / SIDECAR_FILE, json.dumps(sidecar_dict(db), indent=1, allow_nan=False) + "\n")
    _write_text(root / MANIFEST_FILE, _yaml_text(manifest_dict(db, name)))


def write_pretraining_files(db: Database, root: Path, scores: dict | None = None) -> None:
    """``tasks/`` and ``scores.json`` of `db` into ``root``; ``scores`` when already
    computed (`pretraining.database_scores`' result), else computed from `db`'s frames."""
    from plurel_fast.pretraining import database_scores, pretraining_targets, task_manifest

    listed = pretraining_targets(db)
    targets = [t for t in listed if _is_plain_name(t.name)]
    skipped = len(listed) - len(targets)
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
    if scores is None:
        scores = database_scores(db)
    _write_text(root / SCORES_FILE, json.dumps(scores, indent=1, allow_nan=False) + "\n")


def _is_plain_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


# libyaml's C emitter, when PyYAML was built with it: ~4x faster than PyYAML's own, which
# took ~0.17 ms per task manifest, a few dozen of them per database.
_C_DUMPER = getattr(yaml, "CSafeDumper", None)


def _yaml_text(data: dict) -> str:
    """The YAML text of a manifest, the same bytes with or without libyaml."""
    dumper = _C_DUMPER if _C_DUMPER is not None and _emits_alike(data) else yaml.SafeDumper
    return yaml.dump(
        data, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
        width=4096,
    )


def _emits_alike(data) -> bool:
    """Whether both emitters write `data` alike: mappings of ints, None and non-empty
    printable ASCII strings. The C emitter escapes characters beyond the BMP and quotes
    some control characters and empty keys differently, so such text (a folder named by
    hand, say) goes through PyYAML's emitter."""
    if isinstance(data, dict):
        return all(_emits_alike(k) and _emits_alike(v) for k, v in data.items())
    if isinstance(data, str):
        return data.isascii() and data.isprintable() and data != ""
    return data is None or type(data) is int


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _move_into_place(tmp: Path, target: Path, parent: Path) -> None:
    if not (target.exists() or target.is_symlink()):
        _rename_noreplace(tmp, target)
        _fsync_dir(parent)
        return
    old = parent / f".{target.name}.old-{_owner_tag()}-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        _rename_noreplace(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    _fsync_dir(parent)
    try:
        if old.is_symlink():  # the replaced path was a link: drop the link, not its target
            os.unlink(old)
        else:
            shutil.rmtree(old)
    except OSError as e:
        warnings.warn(f"saved {target}, but could not delete the replaced copy {old}: {e}",
                      stacklevel=3)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename that fails if `dst` exists, even as an empty folder (which a plain rename
    would silently replace): Linux renameat2(RENAME_NOREPLACE), else a checked rename."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        res = renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if res == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(
                f"{dst} appeared while this save was writing (made by another process or "
                "by hand); left it as it is"
            )
        if err not in (errno.EINVAL, errno.ENOSYS):  # unsupported here: plain rename below
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(f"{dst} appeared while this save was writing; left it as it is")
    os.rename(src, dst)


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC or None


# fsyncs in flight at once in `_sync_tree`: enough for the filesystem to serve them with
# a few journal commits (ext4: 8 halved the waiting of one at a time; more did not help)
_SYNC_THREADS = 8


def _sync_tree(root: Path) -> None:
    """fsync every file and folder in ``root`` and ``root`` itself: the durability of a
    save, done once before the rename that publishes it.

    The same fsyncs as syncing each file and folder as soon as it is written, all at
    the end and several at a time: concurrent fsyncs share the filesystem's journal
    commits instead of waiting for one each (~80 per database). Any that fails raises,
    after all have finished. (A single ``syncfs`` would be cheaper still, but it also
    waits for every other writer on the filesystem, and on some (FUSE) does nothing.)
    """
    paths = []
    for folder, _, names in os.walk(root, onerror=_raise):
        paths.append((folder, _fsync_dir))
        paths.extend((os.path.join(folder, name), _fsync_file) for name in names)
    with ThreadPoolExecutor(min(_SYNC_THREADS, len(paths))) as pool:
        for done in [pool.submit(sync, path) for path, sync in paths]:
            done.result()


def _raise(error: OSError):
    raise error


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
