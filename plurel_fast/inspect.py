"""What a generated database, or a corpus of them, holds: ``plurel-fast inspect``.

`inspect_path(path)` tells a database folder (``manifest.yaml`` + ``db/*.parquet``)
from a corpus folder (``<prefix>-<seed>/`` databases and a ``corpus*.jsonl`` index) and
summarises it; `format_summary` prints that summary for a terminal, `to_mermaid` draws a
database's tables and foreign keys as a Mermaid ``erDiagram``.

Everything is read lazily: row counts, column types and null counts come from the
Parquet footers (their statistics), and only the columns a number needs are scanned
(the time column for its range, each foreign key for its in-degrees), so a summary of
a table of 10^8 rows reads two columns of it.

Roles follow DESIGN §1: a table that a foreign key references is an *entity* table, the
others are *activity* tables. Tokens are the non-null cells of the feature columns and
the time column (DESIGN §8, `Table.num_tokens`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from plurel_fast.io.parquet import DB_DIR, MANIFEST_FILE, load_manifest

__all__ = [
    "CorpusSummary",
    "DatabaseSummary",
    "EdgeSummary",
    "InspectError",
    "TableSummary",
    "column_type",
    "database_folders",
    "fkey_degrees",
    "format_summary",
    "inspect_corpus",
    "inspect_database",
    "inspect_path",
    "table_file",
    "to_mermaid",
]

COLUMN_TYPES = ("float", "int", "bool", "str", "datetime", "date", "other")


class InspectError(ValueError):
    """A path that cannot be inspected: not a database or corpus folder, a missing or
    unreadable Parquet file, a manifest that does not parse. The message names it."""


@dataclass
class TableSummary:
    """One table: its role, size, columns by kind and type, nulls and tokens.

    ``feature_types`` counts the feature columns (neither key nor time column) by type;
    ``null_share`` is the share of null cells among the feature columns;
    ``time_range`` is the first and last value of the time column (ISO strings).
    """

    name: str
    role: str
    rows: int
    columns: int
    pkey: str | None
    time_col: str | None
    fkeys: dict[str, str]
    column_types: dict[str, str]
    feature_types: dict[str, int]
    nulls: dict[str, int]
    null_share: float
    tokens: int
    time_range: tuple[str, str] | None = None


@dataclass
class EdgeSummary:
    """Foreign key ``child.column -> parent``: how many child rows point at each parent
    row (its in-degree), over all parent rows, so never referenced ones count as 0."""

    child: str
    column: str
    parent: str
    child_rows: int
    parent_rows: int
    null_refs: int
    mean: float
    max: int
    unreferenced_share: float


@dataclass
class DatabaseSummary:
    path: str
    name: str
    val_timestamp: str
    test_timestamp: str
    tables: list[TableSummary]
    edges: list[EdgeSummary]
    rows: int
    tokens: int
    null_share: float
    feature_types: dict[str, int]
    seed: int | None = None
    config_hash: str | None = None
    kind: str = "database"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CorpusSummary:
    """A corpus: one line per readable database, distributions across them, the seeds
    its index records as failed and the folders that could not be read."""

    path: str
    databases: list[dict]
    totals: dict[str, int]
    distributions: dict[str, dict[str, float]]
    feature_types: dict[str, int]
    failed: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    index_files: list[str] = field(default_factory=list)
    kind: str = "corpus"

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- reading


def column_type(dtype: pl.DataType) -> str:
    """The short type name a column is counted under: float, int, bool, str, datetime,
    date or other."""
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "str"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    return "other"


def inspect_path(path: str | os.PathLike, *, degrees: bool = True) -> DatabaseSummary | CorpusSummary:
    """Summarise a database folder or a corpus folder, whichever `path` is.

    Raises `InspectError` (one line naming the problem) for anything else."""
    root = Path(path).expanduser()
    kind = folder_kind(root)
    if kind == "database":
        return inspect_database(root, degrees=degrees)
    return inspect_corpus(root)


def folder_kind(root: Path) -> str:
    """``"database"`` or ``"corpus"``; `InspectError` when `root` is neither."""
    if not root.exists():
        raise InspectError(f"{root} does not exist")
    if not root.is_dir():
        raise InspectError(f"{root} is a file; inspect a database folder or a corpus folder")
    if (root / MANIFEST_FILE).is_file():
        return "database"
    if _index_files(root) or database_folders(root):
        return "corpus"
    raise InspectError(
        f"{root} is neither a database folder (it has no {MANIFEST_FILE}) nor a corpus "
        "folder (no corpus.jsonl index and no database folders inside)"
    )


def database_folders(root: Path) -> list[Path]:
    """The database folders of a corpus: subfolders holding a manifest, in seed order
    (``<prefix>-<seed>``), hidden (temporary) folders left out."""
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()]
    except OSError as e:
        raise InspectError(f"cannot list {root}: {e.strerror or e}") from None
    found = [p for p in entries if (p / MANIFEST_FILE).is_file()]

    def order(p: Path):
        m = re.search(r"-(\d+)$", p.name)
        return (p.name[: m.start()], int(m.group(1)), "") if m else (p.name, -1, p.name)

    return sorted(found, key=order)


def _index_files(root: Path) -> list[Path]:
    files = [root / "corpus.jsonl"] + sorted(root.glob("corpus-*-of-*.jsonl"))
    return [f for f in files if f.is_file()]


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST_FILE
    try:
        manifest = load_manifest(path)
    except (OSError, ValueError) as e:
        raise InspectError(str(e).splitlines()[0]) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise InspectError(f"{path} has no 'tables' mapping; it is not a RelBench manifest")
    return manifest


def table_file(root: Path, name: str) -> Path:
    """``<root>/db/<name>.parquet``; `InspectError` naming it when it is missing."""
    file = root / DB_DIR / f"{name}.parquet"
    if not file.is_file():
        raise InspectError(
            f"table {name!r} is listed in {root / MANIFEST_FILE} but its file {file} is missing"
        )
    return file


def _table_summary(root: Path, name: str, spec: dict, role: str) -> TableSummary:
    file = table_file(root, name)
    try:
        meta = pq.read_metadata(file)
        schema = pl.read_parquet_schema(file)
    except (OSError, ValueError) as e:
        raise InspectError(f"table {name!r}: {file} is not a readable Parquet file ({e})") from None
    rows = meta.num_rows
    pkey, time_col = spec.get("pkey"), spec.get("time_col")
    fkeys = dict(spec.get("fkeys") or {})
    for col in [pkey, time_col, *fkeys]:
        if col is not None and col not in schema:
            raise InspectError(
                f"table {name!r}: column {col!r} named in {root / MANIFEST_FILE} is not in {file}"
            )
    types = {c: column_type(t) for c, t in schema.items()}
    nulls = _null_counts(file, meta, list(schema))
    features = [c for c in schema if c not in {pkey, time_col, *fkeys}]
    feature_types = _add_counts([{types[c]: 1} for c in features])
    feature_nulls = sum(nulls[c] for c in features)
    token_cols = features + ([time_col] if time_col is not None else [])
    time_range = None
    if time_col is not None and rows:
        lo, hi = pl.scan_parquet(file).select(
            pl.col(time_col).min().alias("lo"), pl.col(time_col).max().alias("hi")
        ).collect().row(0)
        if lo is not None:
            time_range = (_iso(lo), _iso(hi))
    return TableSummary(
        name=name, role=role, rows=rows, columns=len(schema), pkey=pkey, time_col=time_col,
        fkeys=fkeys, column_types=types, feature_types=feature_types, nulls=nulls,
        null_share=feature_nulls / (rows * len(features)) if rows and features else 0.0,
        tokens=sum(rows - nulls[c] for c in token_cols), time_range=time_range,
    )


def _null_counts(file: Path, meta, columns: list[str]) -> dict[str, int]:
    """Null count per column from the row-group statistics; a scan of the columns whose
    statistics lack it (files written without statistics)."""
    counts = dict.fromkeys(columns, 0)
    missing = set()
    leaf = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for c in columns:
        i = leaf.get(c)
        if i is None:  # nested column: no flat statistics
            missing.add(c)
            continue
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(i).statistics
            if stats is None or not stats.has_null_count:
                missing.add(c)
                break
            counts[c] += stats.null_count
    if missing:
        scanned = pl.scan_parquet(file).select(pl.col(sorted(missing)).null_count()).collect()
        counts.update({c: int(scanned[c][0]) for c in missing})
    return counts


def _iso(value) -> str:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return str(value)


def fkey_degrees(root: str | os.PathLike, child: str, column: str, parent_rows: int) -> np.ndarray:
    """In-degree of every parent row under foreign key ``child.column``: how many child
    rows reference it, one entry per parent row (zeros for rows never referenced), in no
    particular order. Reads the one column."""
    file = table_file(Path(root), child)
    counts = (
        pl.scan_parquet(file).select(pl.col(column)).drop_nulls()
        .group_by(column).len().select("len").collect().to_series().to_numpy()
    )
    zeros = max(parent_rows - len(counts), 0)
    return np.concatenate([counts.astype(np.int64), np.zeros(zeros, dtype=np.int64)])


def _edge_summary(root: Path, child: TableSummary, column: str, parent: TableSummary) -> EdgeSummary:
    degrees = fkey_degrees(root, child.name, column, parent.rows)
    referenced = int(np.count_nonzero(degrees))
    non_null = int(degrees.sum())
    return EdgeSummary(
        child=child.name, column=column, parent=parent.name, child_rows=child.rows,
        parent_rows=parent.rows, null_refs=child.rows - non_null,
        mean=non_null / parent.rows if parent.rows else 0.0,
        max=int(degrees.max()) if len(degrees) else 0,
        unreferenced_share=1 - referenced / parent.rows if parent.rows else 0.0,
    )


def inspect_database(path: str | os.PathLike, *, degrees: bool = True) -> DatabaseSummary:
    """Summarise the database folder `path`: per table role, rows, columns by type,
    keys, time range, null share and tokens; with ``degrees`` also every foreign key's
    in-degree statistics (which scans each foreign-key column)."""
    root = Path(path).expanduser()
    if folder_kind(root) != "database":
        raise InspectError(f"{root} has no {MANIFEST_FILE}; it is not a database folder")
    manifest = _read_manifest(root)
    specs = {name: (spec or {}) for name, spec in manifest["tables"].items()}
    referenced = set()
    for name, spec in specs.items():
        for col, parent in (spec.get("fkeys") or {}).items():
            if parent not in specs:
                raise InspectError(
                    f"table {name!r}: foreign key {col!r} references {parent!r}, which "
                    f"{root / MANIFEST_FILE} does not list"
                )
            referenced.add(parent)
    tables = [
        _table_summary(root, name, spec, "entity" if name in referenced else "activity")
        for name, spec in specs.items()
    ]
    by_name = {t.name: t for t in tables}
    edges = [
        _edge_summary(root, t, col, by_name[parent])
        for t in tables for col, parent in t.fkeys.items()
    ] if degrees else []
    provenance = _sidecar(root)
    feature_cells = sum(t.rows * sum(t.feature_types.values()) for t in tables)
    feature_nulls = sum(t.null_share * t.rows * sum(t.feature_types.values()) for t in tables)
    return DatabaseSummary(
        path=str(root), name=str(manifest.get("name", root.name)),
        val_timestamp=str(manifest.get("val_timestamp")),
        test_timestamp=str(manifest.get("test_timestamp")),
        tables=tables, edges=edges, rows=sum(t.rows for t in tables),
        tokens=sum(t.tokens for t in tables),
        null_share=feature_nulls / feature_cells if feature_cells else 0.0,
        feature_types=_add_counts(t.feature_types for t in tables),
        seed=provenance.get("seed") if isinstance(provenance.get("seed"), int) else None,
        config_hash=provenance.get("config_hash"),
    )


def _sidecar(root: Path) -> dict:
    try:
        data = json.loads((root / "plurel_fast.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _add_counts(counts) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return {k: total[k] for k in sorted(total, key=_type_order)}


def _type_order(t: str) -> int:
    return COLUMN_TYPES.index(t) if t in COLUMN_TYPES else len(COLUMN_TYPES)


def distribution(values) -> dict[str, float]:
    """min, 10th percentile, median, mean, 90th percentile and max of `values`."""
    a = np.asarray(list(values), dtype=np.float64)
    if not len(a):
        return {}
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return {"min": float(a.min()), "p10": float(p10), "median": float(p50),
            "mean": float(a.mean()), "p90": float(p90), "max": float(a.max())}


def inspect_corpus(path: str | os.PathLike) -> CorpusSummary:
    """Summarise the corpus folder `path`: per database tables, rows, tokens and column
    types (from the Parquet footers; foreign keys are not scanned), their totals and
    distributions, the seeds its index files record as failed, and the folders that
    could not be read (named with the reason)."""
    from plurel_fast.corpus import read_index

    root = Path(path).expanduser()
    index_files = _index_files(root)
    records: dict[int, dict] = {}
    for f in index_files:
        for r in read_index(f):
            records[r["seed"]] = r
    seconds = {r.get("name"): r.get("seconds") for r in records.values() if r.get("status") == "ok"}
    databases, unreadable = [], []
    for folder in database_folders(root):
        try:
            s = inspect_database(folder, degrees=False)
        except InspectError as e:
            unreadable.append({"name": folder.name, "error": str(e)})
            continue
        databases.append({
            "name": folder.name, "seed": s.seed, "tables": len(s.tables),
            "entity_tables": sum(t.role == "entity" for t in s.tables),
            "activity_tables": sum(t.role == "activity" for t in s.tables),
            "foreign_keys": sum(len(t.fkeys) for t in s.tables), "rows": s.rows,
            "tokens": s.tokens, "null_share": s.null_share, "feature_types": s.feature_types,
            "table_rows": [t.rows for t in s.tables], "seconds": seconds.get(folder.name),
        })
    failed = [
        {"seed": r["seed"], "name": r.get("name"), "error": r.get("error")}
        for r in records.values() if r.get("status") != "ok"
    ]
    if not databases and not index_files:
        raise InspectError(f"{root}: no readable database inside ({unreadable[0]['error']})")
    dists = {k: distribution(d[k] for d in databases)
             for k in ("tables", "foreign_keys", "rows", "tokens", "null_share")}
    dists["table_rows"] = distribution(r for d in databases for r in d["table_rows"])
    secs = [d["seconds"] for d in databases if isinstance(d["seconds"], (int, float))]
    if secs:
        dists["seconds"] = distribution(secs)
    feature_types = _add_counts(d["feature_types"] for d in databases)
    for t in feature_types:
        dists[f"{t}_columns"] = distribution(d["feature_types"].get(t, 0) for d in databases)
    return CorpusSummary(
        path=str(root), databases=databases,
        totals={"databases": len(databases), "tables": sum(d["tables"] for d in databases),
                "rows": sum(d["rows"] for d in databases),
                "tokens": sum(d["tokens"] for d in databases),
                "failed": len(failed), "unreadable": len(unreadable)},
        distributions=dists, feature_types=feature_types, failed=failed,
        unreadable=unreadable, index_files=[f.name for f in index_files],
    )


# ----------------------------------------------------------------------------- output


def format_summary(summary: DatabaseSummary | CorpusSummary) -> str:
    """The terminal text of a summary."""
    if isinstance(summary, CorpusSummary):
        return _format_corpus(summary)
    return _format_database(summary)


def _types_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "-"


def _format_database(s: DatabaseSummary) -> str:
    roles = [t.role for t in s.tables]
    lines = [
        f"{s.name}: {len(s.tables)} tables ({roles.count('entity')} entity, "
        f"{roles.count('activity')} activity), {s.rows:,} rows, {s.tokens:,} tokens, "
        f"feature nulls {s.null_share:.1%}",
        f"  features: {_types_text(s.feature_types)}; split: val {s.val_timestamp}, "
        f"test {s.test_timestamp}" + (f"; seed {s.seed}" if s.seed is not None else ""),
        "",
    ]
    header = ("table", "role", "rows", "cols", "features", "keys", "time range", "nulls", "tokens")
    body = []
    for t in s.tables:
        keys = ", ".join(
            ([f"pk {t.pkey}"] if t.pkey else []) + ([f"{len(t.fkeys)} fk"] if t.fkeys else [])
        )
        span = "-"
        if t.time_range:
            span = f"{t.time_col} {t.time_range[0][:10]}..{t.time_range[1][:10]}"
        body.append((t.name, t.role, f"{t.rows:,}", str(t.columns), _types_text(t.feature_types),
                     keys or "-", span, f"{t.null_share:.1%}", f"{t.tokens:,}"))
    lines += _columns(header, body, right={2, 3, 7, 8})
    if s.edges:
        lines += ["", "foreign keys (in-degree of parent rows)"]
        header = ("child.column", "", "parent", "mean", "max", "never referenced")
        body = [(f"{e.child}.{e.column}", "->", e.parent, f"{e.mean:.2f}", str(e.max),
                 f"{e.unreferenced_share:.1%}") for e in s.edges]
        lines += _columns(header, body, right={3, 4, 5})
    return "\n".join(lines)


def _columns(header, body, right=frozenset()) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(row):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  " + "  ".join(cells).rstrip()

    return [line(header), *map(line, body)]


def _format_corpus(s: CorpusSummary) -> str:
    t = s.totals
    lines = [
        f"{s.path}: {t['databases']} databases, {t['tables']:,} tables, {t['rows']:,} rows, "
        f"{t['tokens']:,} tokens; {t['failed']} failed, {t['unreadable']} unreadable"
        + (f" (index: {', '.join(s.index_files)})" if s.index_files else " (no index)"),
        f"  features: {_types_text(s.feature_types)}",
        "",
    ]
    header = ("per database", "min", "p10", "median", "mean", "p90", "max")
    body = []
    for key, d in s.distributions.items():
        if not d:
            continue
        fmt = "{:.1%}" if key == "null_share" else "{:.2f}" if key == "seconds" else "{:,.0f}"
        mean_fmt = fmt if key in ("null_share", "seconds") else "{:,.1f}"
        body.append((key.replace("_", " "), *(fmt.format(d[k]) for k in ("min", "p10", "median")),
                     mean_fmt.format(d["mean"]), fmt.format(d["p90"]), fmt.format(d["max"])))
    lines += _columns(header, body, right={1, 2, 3, 4, 5, 6})
    for title, items in (("failed seeds (from the index)", s.failed), ("unreadable folders", s.unreadable)):
        if items:
            lines += ["", title]
            for item in items:
                who = f"seed {item['seed']} ({item.get('name')})" if "seed" in item else item["name"]
                error = (item.get("error") or "").strip().splitlines()
                lines.append(f"  {who}: {error[-1] if error else 'no error recorded'}")
    return "\n".join(lines)


_MERMAID_NAME = re.compile(r"[^A-Za-z0-9_]")


def _mermaid_name(name: str) -> str:
    clean = _MERMAID_NAME.sub("_", name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def to_mermaid(summary: DatabaseSummary) -> str:
    """A Mermaid ``erDiagram`` of the database: one entity per table with its columns
    (type, name, PK/FK), one ``||--o{`` relation per foreign key, labelled with it."""
    if not isinstance(summary, DatabaseSummary):
        raise InspectError("--mermaid draws one database; give a database folder, not a corpus")
    lines = ["erDiagram"]
    for t in summary.tables:
        lines.append(f"    {_mermaid_name(t.name)} {{")
        for col, typ in t.column_types.items():
            mark = " PK" if col == t.pkey else " FK" if col in t.fkeys else ""
            lines.append(f"        {typ} {_mermaid_name(col)}{mark}")
        lines.append("    }")
    for t in summary.tables:
        for col, parent in t.fkeys.items():
            label = col.replace('"', "'")
            lines.append(f'    {_mermaid_name(parent)} ||--o{{ {_mermaid_name(t.name)} : "{label}"')
    return "\n".join(lines)
