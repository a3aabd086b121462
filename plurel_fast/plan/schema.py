"""Stage 1 — the schema plan: time window, table DAG, tables and their columns.

Everything here is decided once per database from planning generators keyed by
(seed, purpose) (``plan.rng``), so the plan is a pure function of the seed and
the config. A plan built from a SQL schema (``Config.schema_file`` /
``schema_sql``, DESIGN §7) fills the same structures: the tables, keys and column
meanings come from the SQL, row and label counts from the seed.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np

from plurel_fast.config import Config
from plurel_fast.plan.layouts import build_dag
from plurel_fast.plan.rng import plan_rng

ENTITY = "entity"
ACTIVITY = "activity"
PKEY_COL = "row_idx"
TIME_COL = "date"


class ColumnPlan(msgspec.Struct, frozen=True):
    """One feature column: its semantic type and, if categorical, its labels.

    ``num_categories`` is 0 for numerical columns. ``categories`` holds string
    labels when the schema names them (SQL enums); otherwise labels are the
    integers 0..num_categories-1.

    Columns of a SQL schema also say how they come out (random schemas keep the
    defaults): ``nullable=False`` (NOT NULL) columns get no implanted nulls, and
    ``dtype`` is ``"bool"`` (a boolean kept even when single-valued), ``"int64"``
    (numbers rounded, or numeric labels, as nullable Int64), ``"float64"`` (numeric
    labels as Float64) or ``"datetime"`` (a non-negative offset from the table's
    time column); None is the random pipeline's output.
    """

    name: str
    stype: str
    num_categories: int = 0
    categories: tuple[str, ...] | None = None
    nullable: bool = True
    dtype: str | None = None


class TablePlan(msgspec.Struct, frozen=True):
    """One table: its place in the table DAG, row count and columns."""

    id: int
    name: str
    kind: str  # ENTITY or ACTIVITY
    num_rows: int
    parents: tuple[str, ...]  # referenced tables, aligned with fkey_cols
    fkey_cols: tuple[str, ...]
    children: tuple[str, ...]  # tables referencing this one, in id order
    features: tuple[ColumnPlan, ...]
    pkey_col: str | None = PKEY_COL
    time_col: str | None = None
    column_order: tuple[str, ...] | None = None  # a SQL table's columns as written

    @property
    def fkey_col_to_pkey_table(self) -> dict[str, str]:
        return dict(zip(self.fkey_cols, self.parents))


class SchemaPlan(msgspec.Struct, frozen=True):
    """The database-level plan: window, split timestamps and tables.

    ``tables`` are in id order; ``order`` lists table names in the order they
    are generated (a topological order of the table DAG: parents first).
    """

    db_min: dt.datetime
    db_max: dt.datetime
    val_timestamp: dt.datetime
    test_timestamp: dt.datetime
    layout: str
    tables: tuple[TablePlan, ...]
    order: tuple[str, ...]

    def table(self, name: str) -> TablePlan:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in the plan; tables are {[t.name for t in self.tables]}")


def plan_time_window(seed: int, config: Config):
    """DESIGN §1 time window: two distinct days in [min, max), sorted, and the splits.

    Returns (db_min, db_max, val_timestamp, test_timestamp) as datetimes at midnight.
    """
    params = config.database_params
    start = _midnight(params.min_timestamp)
    total_days = (_midnight(params.max_timestamp) - start).days
    rng = plan_rng(seed, "time_window")
    d0, d1 = np.sort(rng.choice(total_days, size=2, replace=False))
    db_min = start + dt.timedelta(days=int(d0))
    db_max = start + dt.timedelta(days=int(d1))
    num_days = int(d1 - d0) + 1
    # With test_split == 1 the index would fall one past the window; keep the last day.
    val_idx = min(int(num_days * config.val_split), num_days - 1)
    test_idx = min(int(num_days * config.test_split), num_days - 1)
    return (
        db_min,
        db_max,
        db_min + dt.timedelta(days=val_idx),
        db_min + dt.timedelta(days=test_idx),
    )


def _schema_plan(seed: int, config: Config, layout: str, tables, order) -> SchemaPlan:
    """The plan of ``tables`` in generation ``order``, with the seed's time window."""
    db_min, db_max, val_ts, test_ts = plan_time_window(seed, config)
    return SchemaPlan(
        db_min=db_min,
        db_max=db_max,
        val_timestamp=val_ts,
        test_timestamp=test_ts,
        layout=layout,
        tables=tuple(tables),
        order=tuple(order),
    )


def _sample_rows(db_params, kind: str, rng) -> int:
    """A table's row count: one draw from its kind's row-count choices (DESIGN §1)."""
    choices = (
        db_params.num_rows_activity_table_choices
        if kind == ACTIVITY
        else db_params.num_rows_entity_table_choices
    )
    return int(choices.sample(rng))


def _midnight(t) -> dt.datetime:
    return dt.datetime(t.year, t.month, t.day)


def plan_schema(seed: int, config: Config) -> SchemaPlan:
    """Random schema (DESIGN §1): table DAG, entity/activity kinds, rows and columns.

    With ``config.schema_file`` or ``config.schema_sql`` the schema is the SQL one
    (:func:`plan_sql_schema`).
    """
    from plurel_fast.plan.limits import check_plausible

    check_plausible(config)  # before a sampler allocates for an absurd range
    if config.schema_text() is not None:
        return plan_sql_schema(seed, config)
    db_params = config.database_params
    scm_params = config.scm_params

    rng = plan_rng(seed, "schema")
    num_tables = int(db_params.num_tables_choices.sample(rng))
    layout = db_params.table_layout_choices.sample(rng)
    dag = build_dag(layout, num_tables, config.dag_params, rng)

    out_degree = dag.out_degree()
    names = [f"table_{i}" for i in range(num_tables)]
    tables = []
    for i in range(num_tables):
        kind = ACTIVITY if out_degree[i] == 0 else ENTITY
        trng = plan_rng(seed, "table", i, "columns")
        num_rows = _sample_rows(db_params, kind, trng)
        num_cols = db_params.num_cols_choices.sample_pl(trng)
        features = []
        for j in range(num_cols):
            stype = scm_params.col_stype_choices.sample(trng)
            k = int(scm_params.num_categories_choices.sample(trng)) if stype == "categorical" else 0
            features.append(ColumnPlan(name=f"feature_{j}", stype=stype, num_categories=k))
        parents = [int(p) for p in dag.parents(i)]  # sorted ids
        tables.append(
            TablePlan(
                id=i,
                name=names[i],
                kind=kind,
                num_rows=num_rows,
                parents=tuple(names[p] for p in parents),
                fkey_cols=tuple(f"foreign_row_{k}" for k in range(len(parents))),
                children=tuple(names[int(c)] for c in dag.children(i)),
                features=tuple(features),
                time_col=TIME_COL if kind == ACTIVITY else None,
            )
        )

    order = [names[int(v)] for v in dag.topological_order()]
    return _schema_plan(seed, config, layout, tables, order)



def plan_sql_schema(seed: int, config: Config) -> SchemaPlan:
    """The schema of ``config``'s SQL (DESIGN §7), with row and label counts for ``seed``.

    Tables keep their names, key and column names and statement order (ids). Roles
    follow the foreign-key graph as in DESIGN §1: a table no other table references is
    an activity table, the others are entity tables. Row counts and the number of
    synthetic labels of TEXT columns are drawn from the config's choices.
    """
    from plurel_fast.plan.sql_schema import (
        BOOLEAN, INTEGER, LABELS, NUMERICAL, TEXT, TIME, parse_cached,
    )

    sql = parse_cached(config.schema_text(), config.schema_dialect)
    db_params = config.database_params
    scm_params = config.scm_params
    children = {t.name: [] for t in sql.tables}
    for t in sql.tables:  # one entry per foreign key, in id order
        for fk in t.foreign_keys:
            children[fk.parent].append(t.name)

    tables = []
    for i, t in enumerate(sql.tables):
        kind = ACTIVITY if not children[t.name] else ENTITY
        trng = plan_rng(seed, "table", i, "columns")
        num_rows = _sample_rows(db_params, kind, trng)
        times = [c.name for c in t.columns if c.kind == TIME]
        features = []
        for c in t.columns:
            if c.name == (times[0] if times else None):
                continue
            nullable = not c.not_null
            if c.kind == LABELS:
                dtype = {"str": None, "int": "int64", "float": "float64"}[c.label_type]
                features.append(ColumnPlan(c.name, "categorical", len(c.labels), c.labels,
                                           nullable, dtype))
            elif c.kind == BOOLEAN:
                features.append(ColumnPlan(c.name, "categorical", 2, None, nullable, "bool"))
            elif c.kind == TEXT:
                k = int(scm_params.num_categories_choices.sample(trng))
                labels = tuple(f"{c.name}_{j}" for j in range(k))
                features.append(ColumnPlan(c.name, "categorical", k, labels, nullable))
            elif c.kind in (NUMERICAL, INTEGER, TIME):
                dtype = {NUMERICAL: None, INTEGER: "int64", TIME: "datetime"}[c.kind]
                features.append(ColumnPlan(c.name, "numerical", 0, None, nullable, dtype))
            else:  # pragma: no cover - sql_schema produces only the kinds above
                raise AssertionError(c.kind)
        tables.append(
            TablePlan(
                id=i,
                name=t.name,
                kind=kind,
                num_rows=num_rows,
                parents=tuple(fk.parent for fk in t.foreign_keys),
                fkey_cols=tuple(fk.column for fk in t.foreign_keys),
                children=tuple(children[t.name]),
                features=tuple(features),
                pkey_col=t.pkey,
                time_col=times[0] if times else None,
                column_order=t.column_order,
            )
        )

    order, placed = [], set()
    while len(order) < len(tables):  # parents first; ties in statement order
        for t in sql.tables:
            if t.name not in placed and all(fk.parent in placed for fk in t.foreign_keys):
                order.append(t.name)
                placed.add(t.name)
                break
    return _schema_plan(seed, config, "sql", tables, order)
