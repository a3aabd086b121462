"""``generate_to(seed, config, path)``: a database written straight to its folder, its
large tables in Parquet row groups with memory that does not grow with their rows
(DESIGN §6.1).

The folder is byte for byte what ``generate(seed, config).save(path)`` writes (the
seconds in ``plurel_fast.json`` aside). ``generate`` holds every table as a frame; here
a table of more than one row group (2^20 rows) never is one:

1. its SCM runs chunk by chunk (`assemble.scm_chunks`) into a float32 spill file of
   ``rows x features`` beside the output; children read their parents' rows from it;
2. whole-column steps run over the spill in chunks, with the same operations as on a
   whole column: lazy quantization (DESIGN §4.5, boundaries read at their rows), the
   standardize mean and deviation (NumPy's pairwise sums streamed,
   `kernels.stream.PairwiseSum`), ranks (a sorted copy of the one column and a counter
   per position; 8 bytes a row, the only per-row memory), null rows (a threshold on
   the row hashes), whether a boolean column is constant;
3. one row group at a time: keys (the HSBM draws are per row), post-processed features,
   dates, into a Parquet writer; ``scores.json`` is computed from the written file one
   column at a time.

Tables of at most one row group take the in-memory path table by table (their frame is
written and dropped at once). ``stream=None`` streams when the in-memory estimate of
`plan.limits` would not fit comfortably (see `generate_to`).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plurel_fast.assemble import (
    activity_dates,
    assemble_table,
    finite,
    key_columns,
    scm_chunks,
    scm_values,
    source_columns_of,
    table_frame,
)
from plurel_fast.config import Config, ConfigError
from plurel_fast.database import Database, Table
from plurel_fast.generate import (
    DEFAULT_CHUNK_ROWS,
    _check_args,
    database_of,
    execute,
    progress_plan,
)
from plurel_fast.io import parquet as _pq
from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.kernels.post import (
    _MIN_STD,
    _affine,
    _is_string_categories,
    apply_transform,
    boundary_rows,
    labels_to_strings,
    num_nulls,
    quantize_with,
)
from plurel_fast.kernels.rng import subkey
from plurel_fast.kernels.stream import (
    PairwiseSum,
    null_mask,
    null_threshold,
    rank_chunk,
    sorted_for_ranks,
)
from plurel_fast.plan.database import DatabasePlan, plan_database
from plurel_fast.plan.limits import (
    FIXED_BYTES,
    available_memory,
    check_memory,
    estimate_peak_bytes,
)
from plurel_fast.plan.schema import TablePlan
from plurel_fast.pretraining import distinct_count, table_scores

__all__ = ["SavedDatabase", "generate_to", "stream_peak_bytes"]

WORK_DIR = ".spill"  # inside the temporary folder; removed before it is renamed into place


class SavedDatabase(NamedTuple):
    """What `generate_to` wrote: the folder, the database name and its sizes."""

    path: Path
    name: str
    tables: dict  # table name -> (rows, {fkey col: parent table})
    num_rows: int
    num_tokens: int
    streamed: bool


def stream_peak_bytes(schema, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Peak memory of `generate_to` with streaming: the fixed part, one row group of the
    widest table being written (~40 bytes a cell with its frame and Arrow copy), chunk
    buffers, and 8 bytes a row of the largest table (ranks, distinct counts)."""
    rg = _pq.PARQUET_OPTIONS["row_group_size"]
    widest = max((len(t.features) + len(t.fkey_cols) + 2 for t in schema.tables), default=1)
    largest = max((t.num_rows for t in schema.tables), default=0)
    return FIXED_BYTES + 40 * widest * rg + 64 * widest * chunk_rows + 8 * largest


def generate_to(
    seed: int,
    config: Config | None,
    path: str | os.PathLike,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    overwrite: bool = False,
    pretraining: bool = True,
    on_table: Callable[[TablePlan, int, int], None] | None = None,
    stream: bool | None = None,
) -> SavedDatabase:
    """Generate database ``plurel-<seed>`` and save it to the folder ``path``.

    The folder equals ``generate(seed, config, chunk_rows=...).save(path, ...)`` byte
    for byte (but for the seconds in ``plurel_fast.json``), and is written all or
    nothing as `Database.save` does. With ``stream=True`` tables larger than one
    Parquet row group (2^20 rows) are generated and written in row groups, in memory
    that does not grow with their rows (module doc); ``stream=False`` builds each table
    in memory as `generate` does; ``None`` (default) streams when the in-memory
    estimate exceeds half of the available memory or a table has more rows than one
    row group. A database that cannot fit even when streamed raises `ConfigError`
    before anything is generated.
    """
    config = _check_args(config, chunk_rows)
    target = Path(path)
    _pq.check_destination(target, overwrite=overwrite)
    plan = plan_database(seed, config, scms=False, memory_check=False)
    rg = _pq.PARQUET_OPTIONS["row_group_size"]
    if stream is None:
        need, _ = estimate_peak_bytes(plan.schema)
        stream = need > available_memory() // 2 or any(
            t.num_rows > rg for t in plan.schema.tables
        )
    if not stream:
        check_memory(plan.schema)
        db = execute(plan, chunk_rows=int(chunk_rows), on_table=on_table)
        db.save(target, overwrite=overwrite, pretraining=pretraining)
        return _summary(target, db, streamed=False)
    _check_stream_memory(plan.schema, int(chunk_rows))
    _check_disk(plan.schema, target)

    result = {}

    def write(root: Path, name: str) -> None:
        result["out"] = _stream_database(plan, root, name, int(chunk_rows), pretraining,
                                         on_table)

    _pq.save_folder(target, write, overwrite=overwrite)
    db, lengths, tokens = result["out"]
    return _summary(target, db, lengths, tokens, streamed=True)


def _summary(target: Path, db, lengths=None, tokens=None, *, streamed: bool) -> SavedDatabase:
    if lengths is None:
        lengths = {name: len(t) for name, t in db.table_dict.items()}
        tokens = db.num_tokens
    tables = {
        name: (lengths[name], dict(t.fkey_col_to_pkey_table))
        for name, t in db.table_dict.items()
    }
    return SavedDatabase(target, db.name, tables, sum(lengths.values()), tokens, streamed)


def _check_stream_memory(schema, chunk_rows: int) -> None:
    need = stream_peak_bytes(schema, chunk_rows)
    have = available_memory()
    if need > have:
        largest = max(schema.tables, key=lambda t: t.num_rows)
        raise ConfigError(
            f"this database needs about {need / 2**30:.1f} GiB even written in row groups "
            f"(table {largest.name!r}: {largest.num_rows:,} rows x "
            f"{len(largest.features)} features; ranks and distinct counts take 8 bytes a "
            f"row), more than the {have / 2**30:.1f} GiB available; lower the row counts"
        )


SPILL_BYTES_PER_CELL = 4  # float32 SCM values of a table written in row groups
OUTPUT_BYTES_PER_CELL = 4  # Parquet, zstd: ~3 measured for 14-column tables


def disk_bytes(schema) -> int:
    """Disk `generate_to` needs at its peak: every spill file at once (an upper bound)
    and the finished Parquet files."""
    rg = _pq.PARQUET_OPTIONS["row_group_size"]
    spill = sum(t.num_rows * len(t.features) for t in schema.tables if t.num_rows > rg)
    cells = sum(t.num_rows * (len(t.features) + len(t.fkey_cols) + 2) for t in schema.tables)
    return SPILL_BYTES_PER_CELL * spill + OUTPUT_BYTES_PER_CELL * cells


def _free_disk(path: Path) -> int:
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def _check_disk(schema, target: Path) -> None:
    need, have = disk_bytes(schema), _free_disk(target)
    if need > have:
        largest = max(schema.tables, key=lambda t: t.num_rows)
        raise ConfigError(
            f"this database needs about {need / 2**30:.1f} GiB of disk beside {target} "
            f"(the tables and, while it is written, the SCM values of tables in row groups; "
            f"largest table {largest.name!r}: {largest.num_rows:,} rows x "
            f"{len(largest.features)} features), more than the {have / 2**30:.1f} GiB free"
        )


# ---------------------------------------------------------------------------
# The database, table by table
# ---------------------------------------------------------------------------


def _stream_database(plan: DatabasePlan, root: Path, name: str, chunk_rows: int,
                     pretraining: bool, on_table) -> tuple[Database, dict, int]:
    """Write every table into ``root`` (the temporary folder) and the files beside them;
    returns the database with zero-row tables (names, keys, dtypes), the row counts and
    the tokens."""
    schema = plan.schema
    work = root / WORK_DIR
    os.mkdir(work)
    db_dir = root / _pq.DB_DIR
    os.mkdir(db_dir)
    raw: dict[str, tuple] = {}
    readers_left = {t.name: len(t.children) for t in schema.tables}
    shells: dict[str, Table] = {}
    lengths: dict[str, int] = {}
    tokens = 0
    scores: dict[str, dict] = {}
    source_columns: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for tname in schema.order:
        started = time.perf_counter()
        table = schema.table(tname)
        scm = plan.scm(table.id)
        sources = source_columns_of(table, scm)
        file = db_dir / f"{tname}.parquet"
        rg = _pq.PARQUET_OPTIONS["row_group_size"]
        if table.num_rows <= rg:
            keys = key_columns(plan, table, chunk_rows)
            values = scm_values(plan, table, scm, keys, raw, chunk_rows)
            frame = assemble_table(plan, table, keys, values)
            done = Table(frame, fkey_col_to_pkey_table=table.fkey_col_to_pkey_table,
                         pkey_col=table.pkey_col, time_col=table.time_col)
            pq.write_table(_pq.table_to_arrow(done), file, **_pq.PARQUET_OPTIONS)
            tokens += done.num_tokens
            if pretraining:
                scores[tname] = table_scores(done, sources)
            shell = done.df.clear()
            del frame, done, keys
        else:
            values = _spill_values(plan, table, scm, raw, chunk_rows, work)
            shell, table_tokens = _write_streamed(plan, table, values, file, chunk_rows)
            tokens += table_tokens
            if pretraining:
                scores[tname] = _file_scores(file, shell, table, sources)
        lengths[tname] = table.num_rows
        for parent in table.parents:
            readers_left[parent] -= 1
            if readers_left[parent] == 0:
                _drop(raw.pop(parent))
        if readers_left[tname] > 0:
            raw[tname] = (scm, values)
        else:
            _drop((scm, values))
        del scm, values
        shells[tname] = Table(shell, fkey_col_to_pkey_table=table.fkey_col_to_pkey_table,
                              pkey_col=table.pkey_col, time_col=table.time_col)
        kept = [c for c in sources if c in shell.columns]
        source_columns[tname] = kept
        seconds[tname] = round(time.perf_counter() - started, 6)
        if on_table is not None:
            on_table(progress_plan(table, shell.columns), len(shells), len(schema.order))
    shutil.rmtree(work)

    db = database_of(plan, {t.name: shells[t.name] for t in schema.tables}, source_columns,
                     seconds)
    if pretraining:
        ordered = {t.name: scores[t.name] for t in schema.tables}
        _pq.write_pretraining_files(db, root, ordered)
    _pq.write_sidecar_and_manifest(db, root, name)
    return db, lengths, tokens


def _drop(entry) -> None:
    values = entry[1]
    if isinstance(values, _Spill):
        values.remove()


# ---------------------------------------------------------------------------
# A float32 rows x features file
# ---------------------------------------------------------------------------


class _Spill:
    """A table's raw SCM values on disk, row-major float32. ``self[rows]`` (an index
    array) and ``self[:]`` read like an array; the pages read are unmapped at once, so
    they never count towards this process's memory."""

    def __init__(self, path: Path, n: int, k: int):
        self.path, self.n, self.k = path, n, k
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, n * k * 4)

    def write(self, start: int, chunk: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(chunk, dtype=np.float32)).cast("B")
        offset = start * self.k * 4
        while len(data):
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.k), dtype=np.float32)
        view = memoryview(out).cast("B")
        offset, got = start * self.k * 4, 0
        while got < len(view):
            n = os.preadv(self._fd, [view[got:]], offset + got)
            if n == 0:
                raise OSError(f"{self.path}: short read")
            got += n
        return out

    def __getitem__(self, index):
        if isinstance(index, slice) and index == slice(None):
            return self.read(0, self.n)
        rows = np.asarray(index)
        mapped = np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.n, self.k))
        try:
            return np.array(mapped[rows])
        finally:
            mapped._mmap.close()
            del mapped

    def __len__(self) -> int:
        return self.n

    def blocks(self, chunk_rows: int):
        """Yield ``(start, stop, float32 rows)`` chunk by chunk."""
        for start in range(0, self.n, chunk_rows):
            stop = min(start + chunk_rows, self.n)
            yield start, stop, self.read(start, stop)

    def column(self, i: int, chunk_rows: int):
        """Yield ``(start, stop, float32 values of column i)`` chunk by chunk."""
        for start, stop, block in self.blocks(chunk_rows):
            yield start, stop, block[:, i]

    def remove(self) -> None:
        os.close(self._fd)
        self.path.unlink(missing_ok=True)


def _spill_values(plan, table, scm, raw, chunk_rows, work: Path) -> _Spill:
    """Run the SCM into a spill file, then quantize its lazy columns in place."""
    n, k = table.num_rows, len(table.features)
    spill = _Spill(work / f"{table.name}.f32", n, k)
    if n == 0 or k == 0:
        return spill
    fks = {fk.fkey_col: fk.hsbm for fk in plan.foreign_keys_of(table.name)}

    def fk_rows_of(col, a, b):
        return sample_parents(fks[col], a, b)

    for start, _, chunk in scm_chunks(plan, table, scm, fk_rows_of, raw, chunk_rows,
                                      lambda a, b: np.empty((b - a, k), dtype=np.float32)):
        spill.write(start, chunk)
    lazy = [(i, q) for i, q in enumerate(scm.quantize) if q is not None]
    if lazy:
        bounds = {}
        for i, q in lazy:
            rows = boundary_rows(q.key, n, q.num_categories)
            at = finite(spill[rows][:, i].astype(np.float64))
            bounds[i] = np.sort(at)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            block = spill.read(start, stop)
            for i, q in lazy:
                block[:, i] = quantize_with(finite(block[:, i].astype(np.float64)), bounds[i], q)
            spill.write(start, block)
    return spill


# ---------------------------------------------------------------------------
# Post-processing a spilled table, one row group at a time (DESIGN §5)
# ---------------------------------------------------------------------------


class _FloatColumn(NamedTuple):
    index: int  # feature index
    transform: str
    nulls: tuple | None  # None: no nulls; ("all",); ("none",); ("hash", key, thr, tied)
    affine: tuple | None  # standardize: (mean, scale), or (None, None) for a constant column
    ranks: Path | None  # rank_uniform: int64 positions per row, on disk


def _float_plans(plan, table, spill: _Spill, chunk_rows: int, work: Path) -> dict:
    post = plan.posts[table.id]
    transform_of = dict(zip(post.float_cols, post.transforms))
    index_of = {c.name: i for i, c in enumerate(table.features)}
    no_nulls = set(getattr(post, "no_nulls", ()))
    n = table.num_rows
    m = num_nulls(n, post.nan_perc)
    out = {}
    for j, col in enumerate(post.float_cols):
        i = index_of[col]
        name = transform_of[col]
        affine = ranks = None
        if name == "standardize":
            affine = _standardize_params(spill, i, n, chunk_rows)
        elif name == "rank_uniform":
            ranks = _rank_file(spill, i, n, chunk_rows, work / f"{table.name}.rank{i}")
        if col in no_nulls:
            nulls = None
        elif m == 0:
            nulls = ("none",)
        elif m >= n:
            nulls = ("all",)
        else:
            key = subkey(np.uint64(post.nan_key), np.uint64(j))
            thr, tied = null_threshold(key, n, m)
            nulls = ("hash", key, thr, tied)
        out[col] = _FloatColumn(i, name, nulls, affine, ranks)
    return out


def _standardize_params(spill: _Spill, i: int, n: int, chunk_rows: int):
    lo, hi = math.inf, -math.inf
    total = PairwiseSum(n)
    for _, _, x in spill.column(i, chunk_rows):
        x = finite(x.astype(np.float64))
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        total.add(x)
    if lo == hi:
        return (None, None)
    mean = float(total.result() / n)
    squares = PairwiseSum(n)
    for _, _, x in spill.column(i, chunk_rows):
        d = finite(x.astype(np.float64)) - mean
        squares.add(d * d)
    std = float(np.sqrt(squares.result() / n))
    return (mean, max(std, _MIN_STD))


def _rank_file(spill: _Spill, i: int, n: int, chunk_rows: int, path: Path) -> Path:
    column = np.empty(n, dtype=np.float32)
    for a, b, x in spill.column(i, chunk_rows):
        column[a:b] = x
    state = sorted_for_ranks(column, copy=False)  # sorts the one copy in place
    del column
    with open(path, "wb") as f:
        for _, _, x in spill.column(i, chunk_rows):
            f.write(rank_chunk(state, x).tobytes())
    return path


def _read_ranks(path: Path, start: int, stop: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.int64, count=stop - start, offset=start * 8)


def _float_chunk(spec: _FloatColumn, n: int, raw: np.ndarray, start: int, stop: int):
    """Post-processed values and validity of one float column for rows [start, stop),
    as `kernels.post.post_process_table` makes them for the whole column."""
    x = raw[:, spec.index].astype(np.float64)
    if spec.transform == "rank_uniform":
        values = (_read_ranks(spec.ranks, start, stop) + 1) / float(n + 1)
    else:
        x = finite(x)
        if spec.transform == "standardize":
            mean, scale = spec.affine
            values = np.zeros_like(x) if mean is None else _affine(x, mean, scale)
        else:
            values = apply_transform(spec.transform, x)
    if spec.nulls is None:
        return values, None
    if spec.nulls[0] == "none":
        valid = np.ones(stop - start, dtype=np.bool_)
    elif spec.nulls[0] == "all":
        valid = np.zeros(stop - start, dtype=np.bool_)
    else:
        _, key, thr, tied = spec.nulls
        valid = null_mask(key, start, stop, thr, tied)
    values[~valid] = np.nan
    return values, valid


def _categorical_plans(plan, table, spill: _Spill, chunk_rows: int) -> dict:
    """Per categorical column: ("strings", categories, total bytes), ("bool",) or
    ("drop",) (a single-valued boolean, DESIGN §5.3)."""
    post = plan.posts[table.id]
    keep_constant = set(getattr(post, "keep_constant", ()))
    out = {}
    cats = [(i, c) for i, c in enumerate(table.features) if c.num_categories]
    strings = [(i, c) for i, c in cats if _is_string_categories(c.categories)]
    bools = [(i, c) for i, c in cats if not _is_string_categories(c.categories)]
    counts = {i: np.zeros(c.num_categories, dtype=np.int64) for i, c in strings}
    seen = {i: [False, False] for i, _ in bools}
    if cats:
        for _, _, block in spill.blocks(chunk_rows):
            for i, c in strings:
                counts[i] += np.bincount(block[:, i].astype(np.int64), minlength=c.num_categories)
            for i, _ in bools:
                labels = block[:, i].astype(np.int64)
                seen[i][0] |= bool((labels > 0).any())
                seen[i][1] |= bool((labels <= 0).any())
    for i, c in strings:
        nbytes = sum(int(k) * len(s.encode()) for k, s in zip(counts[i], c.categories))
        out[c.name] = ("strings", list(c.categories), nbytes)
    for i, c in bools:
        keep = (all(seen[i]) or spill.n == 0 or c.name in keep_constant)
        out[c.name] = ("bool",) if keep else ("drop",)
    return out


def _date_rank_files(plan, table, spill, floats, chunk_rows, work) -> dict:
    """SQL datetime columns: each row's rank fraction among the column's non-null
    post-processed values (`sql_columns.date_rank_fractions`), on disk as float64."""
    out = {}
    n = table.num_rows
    for col in table.features:
        if col.dtype != "datetime" or col.name not in floats:
            continue
        spec = floats[col.name]
        ok_values = []
        for a, b, block in spill.blocks(chunk_rows):
            x, _ = _float_chunk(spec, n, block, a, b)
            ok_values.append(x[np.isfinite(x)])
        column = np.concatenate(ok_values) if ok_values else np.empty(0)
        count = len(column)
        del ok_values
        state = sorted_for_ranks(column, copy=False)
        del column
        path = work / f"{table.name}.date{spec.index}"
        denom = max(count - 1, 1)
        with open(path, "wb") as f:
            for a, b, block in spill.blocks(chunk_rows):
                x, _ = _float_chunk(spec, n, block, a, b)
                ok = np.isfinite(x)
                r = np.zeros(len(x))
                r[ok] = rank_chunk(state, x[ok]) / denom
                f.write(r.tobytes())
        out[col.name] = path
    return out


def _write_streamed(plan, table: TablePlan, spill: _Spill, file: Path, chunk_rows: int):
    """Write a spilled table in row groups; returns its zero-row frame and its tokens."""
    n = table.num_rows
    work = spill.path.parent
    floats = _float_plans(plan, table, spill, chunk_rows, work)
    cats = _categorical_plans(plan, table, spill, chunk_rows)
    date_files = _date_rank_files(plan, table, spill, floats, chunk_rows, work)
    large = {name for name, c in cats.items() if c[0] == "strings" and c[2] > _pq._INT32_MAX}
    fks = plan.foreign_keys_of(table.name)
    rg = _pq.PARQUET_OPTIONS["row_group_size"]
    options = {k: v for k, v in _pq.PARQUET_OPTIONS.items() if k != "row_group_size"}
    writer = None
    tokens = 0
    shell = None
    try:
        for start in range(0, n, rg):
            stop = min(start + rg, n)
            keys = {}
            if table.pkey_col is not None:
                keys[table.pkey_col] = np.arange(start, stop, dtype=np.int64)
            for fk in fks:
                keys[fk.fkey_col] = sample_parents(fk.hsbm, start, stop)
            raw = spill.read(start, stop)
            features = {}
            for i, c in enumerate(table.features):
                if c.name in floats:
                    features[c.name] = _float_chunk(floats[c.name], n, raw, start, stop)
                    continue
                kind = cats[c.name]
                labels = raw[:, i].astype(np.int64)
                if kind[0] == "strings":
                    features[c.name] = (labels_to_strings(labels, kind[1]), None)
                elif kind[0] == "bool":
                    features[c.name] = (labels > 0, None)
            del raw
            dates = None
            if table.time_col is not None:
                dates = activity_dates(plan.schema.db_min, plan.schema.db_max, n, start, stop)
            date_ranks = {
                name: np.fromfile(path, dtype=np.float64, count=stop - start, offset=start * 8)
                for name, path in date_files.items()
            }
            frame = table_frame(plan, table, keys, features, dates, date_ranks=date_ranks)
            part = Table(frame, fkey_col_to_pkey_table=table.fkey_col_to_pkey_table,
                         pkey_col=table.pkey_col, time_col=table.time_col)
            tokens += part.num_tokens
            at = _pq.table_to_arrow(part, large_strings=large)
            if shell is None:
                shell = frame.clear()
                writer = pq.ParquetWriter(file, at.schema, **options)
            writer.write_table(at, row_group_size=rg)
            del frame, part, at, keys, features
    finally:
        if writer is not None:
            writer.close()
        for spec in floats.values():
            if spec.ranks is not None:
                spec.ranks.unlink(missing_ok=True)
        for path in date_files.values():
            path.unlink(missing_ok=True)
    return shell, tokens


# ---------------------------------------------------------------------------
# scores.json from a written file, one column at a time
# ---------------------------------------------------------------------------


def _file_scores(file: Path, shell: pl.DataFrame, table: TablePlan, sources) -> dict:
    chosen = set(sources)
    shell_table = Table(shell, fkey_col_to_pkey_table=table.fkey_col_to_pkey_table,
                        pkey_col=table.pkey_col, time_col=table.time_col)
    out = {}
    pf = pq.ParquetFile(file)
    for col in shell_table.feature_cols:
        dtype = shell.schema[col]
        record = {"is_source_node": col in chosen}
        if dtype == pl.Boolean or dtype == pl.String:
            counts: dict = {}
            for g in range(pf.num_row_groups):
                vc = pc.value_counts(pf.read_row_group(g, columns=[col]).column(0).drop_null())
                for item in vc.to_pylist():
                    counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
            total = sum(counts.values())
            record["n_unique"] = len(counts)
            if total:
                record["n_classes"] = len(counts)
                record["majority_frac"] = max(counts.values()) / total
            else:
                record["n_classes"], record["majority_frac"] = 0, 1.0
            record["std"] = None
        else:
            values = _non_null(pf, col, dtype)
            if dtype.is_numeric():
                std = _std(values)  # before sorting
                record["n_unique"] = distinct_count(values)
                record["n_classes"], record["majority_frac"] = None, None
                record["std"] = std
            else:
                record["n_unique"] = distinct_count(values)
                record["n_classes"], record["majority_frac"], record["std"] = None, None, None
        # the key order of `pretraining.column_scores`, so scores.json has its bytes
        out[col] = {k: record[k] for k in _SCORE_KEYS}
    return out


_SCORE_KEYS = ("is_source_node", "n_unique", "n_classes", "majority_frac", "std")


def _non_null(pf, col: str, dtype) -> np.ndarray:
    """The column's non-null values (and, for floats, not NaN) in row order, in one
    array allocated once: the file is read a row group at a time."""
    j = pf.schema_arrow.get_field_index(col)
    meta = pf.metadata
    size = 0
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(j).statistics
        nulls = stats.null_count if stats is not None and stats.has_null_count else 0
        size += meta.row_group(g).num_rows - nulls
    out, filled = None, 0
    for g in range(meta.num_row_groups):
        arr = pf.read_row_group(g, columns=[col]).column(0).drop_null()
        if pa.types.is_timestamp(arr.type):
            arr = arr.cast(pa.int64())
        part = arr.to_numpy()
        if dtype.is_float():
            part = part[~np.isnan(part)]
        if out is None:
            out = np.empty(size, dtype=part.dtype)
        out[filled:filled + len(part)] = part
        filled += len(part)
    return out[:filled] if out is not None else np.empty(0)


def _std(values: np.ndarray) -> float:
    """`pretraining.column_scores`'s deviation (NumPy's sums) in chunks of the column."""
    step = 1 << 20
    finite_count = sum(int(np.isfinite(values[a:a + step]).sum())
                       for a in range(0, len(values), step))
    if not finite_count:
        return 0.0
    total = PairwiseSum(finite_count)
    for a in range(0, len(values), step):
        v = values[a:a + step].astype(np.float64, copy=False)
        total.add(v[np.isfinite(v)])
    with np.errstate(over="ignore", invalid="ignore"):
        mean = total.result() / finite_count
        squares = PairwiseSum(finite_count)
        for a in range(0, len(values), step):
            v = values[a:a + step].astype(np.float64, copy=False)
            d = v[np.isfinite(v)] - mean
            squares.add(np.square(d))
        std = float(np.sqrt(squares.result() / finite_count))
    if not math.isfinite(std):
        std = sys.float_info.max
    return std


def warm_up() -> None:
    """Call every kernel the streamed path uses once, on tiny inputs, so that numba's
    cache holds them (corpus jobs warm the cache in the parent before workers start)."""
    x = np.linspace(-1.0, 1.0, 300)
    total = PairwiseSum(len(x))
    total.add(x[:100])
    total.add(x[100:])
    total.result()
    for dtype in (np.float32, np.float64):
        rank_chunk(sorted_for_ranks(x.astype(dtype)), x.astype(dtype))
    threshold, tied = null_threshold(1, 1000, 10)
    null_mask(1, 0, 1000, threshold, tied)
