"""One self-contained HTML page that shows a database or a corpus: ``plurel-fast report``.

For a database: the schema diagram (RelBench's ``schema.svg`` when graphviz is there,
else a matplotlib drawing of the foreign-key graph), then one section per table with a
histogram or bar chart per column, the in-degree distribution of every foreign key the
table holds, and, for activity tables, each column over time. For a corpus: the
distributions across its databases (tables, rows, tokens, column types, seconds) and
its failed seeds.

Figures are matplotlib PNGs (the schema an SVG) embedded as base64 ``data:`` URIs, so
the page is one file that opens anywhere. Columns are read one table at a time.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
import polars as pl

from plurel_fast.inspect import (
    CorpusSummary,
    DatabaseSummary,
    TableSummary,
    fkey_degrees,
    format_summary,
    inspect_path,
    table_file,
)

__all__ = ["REPORT_INSTALL", "ReportError", "write_report"]

REPORT_INSTALL = "pip install 'plurel-fast[report]'"
_PANEL = (3.0, 2.1)  # inches per small-multiple panel
_COLS = 4  # panels per row
_TIME_BINS = 40
_TOP_CATEGORIES = 8


class ReportError(ValueError):
    """A report cannot be made (matplotlib missing); the message says how to fix it."""


def _figure_module():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError(f"the report needs matplotlib: {REPORT_INSTALL}") from None
    return Figure


def write_report(path: str | os.PathLike, out: str | os.PathLike, *, card: bool = True) -> tuple[Path, str | None]:
    """Write the HTML report of the database or corpus folder `path` to `out`.

    With ``card`` (the default) a database folder also gets RelBench's dataset card
    (``schema.svg`` + ``README.md``, `plurel_fast.card.write_card`), whose diagram the
    page shows. Returns the page's path and, when graphviz is missing, the one line
    saying so (the page then draws the schema with matplotlib)."""
    _figure_module()  # fail before any work
    summary = inspect_path(path)
    note = None
    if isinstance(summary, DatabaseSummary):
        schema_svg = None
        if card:
            from plurel_fast.card import SCHEMA_FILE, write_card

            note = write_card(summary.path)
            if note is None:
                schema_svg = (Path(summary.path) / SCHEMA_FILE).read_bytes()
        body = _database_body(summary, schema_svg)
        title = f"{summary.name}: plurel-fast report"
    else:
        body = _corpus_body(summary)
        title = f"{Path(summary.path).name}: plurel-fast corpus report"
    page = (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n<h1>{_esc(title)}</h1>\n{body}\n</body></html>\n"
    )
    out = Path(out).expanduser()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out, note


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;padding:0 1em;max-width:1300px;color:#222}"
    "img{max-width:100%}pre{background:#f4f5f7;padding:.8em;overflow-x:auto;font-size:12px}"
    "section{border-top:1px solid #ddd;margin-top:1.5em}h2 small{color:#667;font-weight:normal}"
)


def _esc(s) -> str:
    return html.escape(str(s))


def _img(data: bytes, mime: str, alt: str, cls: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f"<figure class='{cls}'><img alt='{_esc(alt)}' src='data:{mime};base64,{b64}'></figure>"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return buf.getvalue()


def _grid(n: int, title: str | None = None):
    """A figure of `n` small panels, `_COLS` per row; returns (figure, axes)."""
    Figure = _figure_module()
    cols = min(n, _COLS)
    rows = -(-n // cols)
    fig = Figure(figsize=(_PANEL[0] * cols, _PANEL[1] * rows + (0.3 if title else 0)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes[:n]


# ----------------------------------------------------------------------------- database


def _database_body(s: DatabaseSummary, schema_svg: bytes | None) -> str:
    parts = [f"<pre>{_esc(format_summary(s))}</pre>", "<h2>Schema</h2>"]
    if schema_svg is not None:
        parts.append(_img(schema_svg, "image/svg+xml", "schema diagram", "schema"))
    else:
        parts.append(_img(_png(_schema_figure(s)), "image/png", "schema diagram", "schema"))
    degrees = {
        (e.child, e.column): fkey_degrees(s.path, e.child, e.column, e.parent_rows)
        for e in s.edges
    }
    for t in s.tables:
        parts.append(_table_section(s, t, degrees))
    return "\n".join(parts)


def _schema_figure(s: DatabaseSummary):
    """The foreign-key graph when graphviz is missing: tables in layers (parents left of
    their children, as RelBench's diagram lays them out), one arrow per foreign key."""
    import networkx as nx

    Figure = _figure_module()
    g = nx.DiGraph()
    g.add_nodes_from(t.name for t in s.tables)
    g.add_edges_from((parent, t.name) for t in s.tables for parent in t.fkeys.values())
    layers = list(nx.topological_generations(g)) if nx.is_directed_acyclic_graph(g) else [list(g)]
    pos = {n: (x, -y + (len(layer) - 1) / 2) for x, layer in enumerate(layers)
           for y, n in enumerate(sorted(layer))}
    fig = Figure(figsize=(max(4, 2.6 * len(layers)), max(2.5, 1.1 * max(map(len, layers)))),
                 layout="constrained")
    ax = fig.subplots()
    by_name = {t.name: t for t in s.tables}
    for parent, child in g.edges:
        ax.annotate("", xy=pos[child], xytext=pos[parent],
                    arrowprops=dict(arrowstyle="-|>", color="#9aa7b8", shrinkA=38, shrinkB=38))
    for name, (x, y) in pos.items():
        t = by_name[name]
        ax.text(x, y, f"{name}\n{t.role}, {t.rows:,} rows\n{t.columns} columns", ha="center",
                va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="#dee8f6" if t.role == "entity" else "#dff1e1",
                          ec="#5273a6"))
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ys = [y for _, y in pos.values()]
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_axis_off()
    ax.set_title("schema (foreign key: parent -> child)", fontsize=9)
    return fig


def _table_section(s: DatabaseSummary, t: TableSummary, degrees: dict) -> str:
    file = table_file(Path(s.path), t.name)
    keys = {t.pkey, *t.fkeys}
    cols = [c for c in t.column_types if c not in keys]
    df = pl.read_parquet(file, columns=cols) if cols else pl.DataFrame()
    head = (f"<section class='table' id='table-{_esc(t.name)}'><h2>{_esc(t.name)} <small>"
            f"{t.role}, {t.rows:,} rows, {t.columns} columns, {t.tokens:,} tokens</small></h2>")
    parts = [head]
    if cols:
        parts.append("<h3>Columns</h3>")
        parts.append(_img(_png(_column_figure(t, df)), "image/png", f"{t.name} columns", "columns"))
    if t.fkeys:
        parts.append("<h3>Foreign keys: in-degree of parent rows</h3>")
        fig, axes = _grid(len(t.fkeys))
        for ax, (col, parent) in zip(axes, t.fkeys.items()):
            d = degrees.get((t.name, col))
            if d is None:
                d = fkey_degrees(s.path, t.name, col, next(x.rows for x in s.tables if x.name == parent))
            ax.hist(d, bins=np.arange(d.max() + 2) - 0.5 if d.max() < 60 else 60, color="#5273a6")
            ax.set_title(f"{col} -> {parent}", fontsize=9)
            ax.set_xlabel(f"child rows per {parent} row (mean {d.mean():.2f})", fontsize=8)
            ax.set_ylabel(f"{parent} rows", fontsize=8)
        parts.append(_img(_png(fig), "image/png", f"{t.name} foreign-key in-degrees", "degrees"))
    features = [c for c in cols if c != t.time_col]
    if t.role == "activity" and t.time_col is not None and features and t.rows:
        parts.append("<h3>Columns over time</h3>")
        parts.append(_img(_png(_time_figure(t, df, features)), "image/png",
                          f"{t.name} over time", "time"))
    parts.append("</section>")
    return "\n".join(parts)


def _column_figure(t: TableSummary, df: pl.DataFrame):
    fig, axes = _grid(df.width)
    for ax, col in zip(axes, df.columns):
        kind = t.column_types[col]
        series = df.get_column(col)
        nulls = series.null_count()
        values = series.drop_nulls()
        if kind in ("float", "int"):
            a = values.cast(pl.Float64).to_numpy()
            a = a[np.isfinite(a)]
            if len(a):
                ax.hist(a, bins=30, color="#5273a6")
                ax.locator_params(axis="x", nbins=4)
        elif kind in ("datetime", "date"):
            a = values.to_physical().to_numpy()
            if len(a):
                ax.hist(a.astype(np.float64), bins=30, color="#3b9b5b")
                _date_ticks(ax, series)
        else:
            counts = values.cast(pl.String).value_counts(sort=True, name="n")
            top = counts.head(_TOP_CATEGORIES)
            labels = [str(v) for v in top.get_column(col).to_list()]
            ax.barh(labels[::-1], top.get_column("n").to_list()[::-1], color="#b0791a")
            ax.tick_params(axis="y", labelsize=7)
            if counts.height > _TOP_CATEGORIES:
                kind += f", top {_TOP_CATEGORIES} of {counts.height}"
        ax.set_title(f"{col} ({kind}{', TIME' if col == t.time_col else ''})", fontsize=9)
        if nulls:
            ax.set_xlabel(f"{nulls / len(series):.1%} null", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


def _date_ticks(ax, series: pl.Series) -> None:
    lo, hi = series.min(), series.max()
    if lo is None:
        return
    ticks = np.linspace(series.drop_nulls().to_physical().min(),
                        series.drop_nulls().to_physical().max(), 3)
    ax.set_xticks(ticks)
    labels = pl.Series(ticks.astype(np.int64)).cast(series.dtype).dt.strftime("%Y-%m").to_list()
    ax.set_xticklabels(labels)


def _time_figure(t: TableSummary, df: pl.DataFrame, features: list[str]):
    """Each feature column against the time column, in `_TIME_BINS` equal time bins:
    mean and 10-90% band for numbers, share of True for bools, shares of the most
    frequent categories for strings."""
    time = df.get_column(t.time_col)
    phys = time.to_physical().cast(pl.Float64)
    lo, hi = phys.min(), phys.max()
    width = (hi - lo) / _TIME_BINS if hi is not None and hi > lo else 1.0
    binned = df.with_columns(
        ((phys - lo) / width).floor().clip(0, _TIME_BINS - 1).alias("_bin")
    ).filter(pl.col("_bin").is_not_null())
    centres = lo + (np.arange(_TIME_BINS) + 0.5) * width
    fig, axes = _grid(len(features))
    for ax, col in zip(axes, features):
        kind = t.column_types[col]
        if kind in ("float", "int"):
            g = binned.group_by("_bin").agg(
                pl.col(col).cast(pl.Float64).mean().alias("m"),
                pl.col(col).cast(pl.Float64).quantile(0.1).alias("lo"),
                pl.col(col).cast(pl.Float64).quantile(0.9).alias("hi"),
            ).sort("_bin")
            x = centres[g.get_column("_bin").cast(pl.Int64).to_numpy()]
            ax.fill_between(x, g["lo"].to_numpy(), g["hi"].to_numpy(), color="#dee8f6")
            ax.plot(x, g["m"].to_numpy(), color="#5273a6", lw=1.2)
            ax.set_ylabel("mean, 10-90%", fontsize=7)
        else:
            top = (binned.get_column(col).drop_nulls().cast(pl.String)
                   .value_counts(sort=True).head(5 if kind != "bool" else 2).get_column(col).to_list())
            if kind == "bool":
                top = ["true"]
            g = binned.group_by("_bin").agg(
                [(pl.col(col).cast(pl.String) == v).mean().alias(f"v{i}") for i, v in enumerate(top)]
            ).sort("_bin")
            x = centres[g.get_column("_bin").cast(pl.Int64).to_numpy()]
            for i, v in enumerate(top):
                ax.plot(x, g[f"v{i}"].to_numpy(), lw=1.2, label=str(v))
            ax.set_ylim(0, 1)
            ax.set_ylabel("share", fontsize=7)
            if kind != "bool":
                ax.legend(fontsize=6)
        ax.set_title(f"{col} ({kind})", fontsize=9)
        ticks = np.linspace(lo, hi, 3) if hi is not None else []
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            pl.Series(np.asarray(ticks).astype(np.int64)).cast(time.dtype).dt.strftime("%Y-%m").to_list()
        )
        ax.tick_params(labelsize=7)
    return fig


# ----------------------------------------------------------------------------- corpus


def _corpus_body(s: CorpusSummary) -> str:
    from matplotlib.ticker import NullFormatter

    parts = [f"<pre>{_esc(format_summary(s))}</pre>", "<h2>Across databases</h2>"]
    dbs = s.databases
    if dbs:
        panels = [
            ("tables per database", [d["tables"] for d in dbs], False),
            ("foreign keys per database", [d["foreign_keys"] for d in dbs], False),
            ("rows per database", [d["rows"] for d in dbs], True),
            ("tokens per database", [d["tokens"] for d in dbs], True),
            ("rows per table", [r for d in dbs for r in d["table_rows"]], True),
            ("feature null share", [d["null_share"] for d in dbs], False),
        ]
        secs = [d["seconds"] for d in dbs if isinstance(d.get("seconds"), (int, float))]
        if secs:
            panels.append(("seconds per database", secs, False))
        fig, axes = _grid(len(panels) + 1)
        for ax, (title, values, log) in zip(axes, panels):
            a = np.asarray(values, dtype=np.float64)
            if log and len(a) and a.min() > 0 and a.max() > 30 * a.min():  # spans decades
                bins = np.geomspace(a.min(), a.max() * 1.0001, 20) if a.max() > a.min() else 10
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
            elif len(a) and np.all(a == np.round(a)) and a.max() - a.min() < 60:
                bins = np.arange(a.min(), a.max() + 2) - 0.5  # one bar per count
            else:
                bins = 20
            ax.hist(a, bins=bins, color="#5273a6", edgecolor="white", linewidth=0.5)
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=7)
        ax = axes[-1]
        types = list(s.feature_types)
        ax.bar(types, [s.feature_types[k] for k in types], color="#b0791a")
        ax.set_title("feature columns by type (all databases)", fontsize=9)
        ax.tick_params(labelsize=7)
        parts.append(_img(_png(fig), "image/png", "distributions across databases", "corpus"))
        fig, axes = _grid(len(types), "feature columns of each type per database")
        for ax, k in zip(axes, types):
            a = np.asarray([d["feature_types"].get(k, 0) for d in dbs])
            ax.hist(a, bins=np.arange(a.max() + 2) - 0.5, color="#3b9b5b")
            ax.set_title(f"{k} columns per database", fontsize=9)
            ax.tick_params(labelsize=7)
        parts.append(_img(_png(fig), "image/png", "column types per database", "corpus"))
    return "\n".join(parts)
