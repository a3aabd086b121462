"""What a pretraining consumer reads beside the tables: targets and column scores.

PluRel pretrains on masked cells: every boolean feature column of a table with a time
column is a binary classification target, every float feature column a regression
target (``<table>-<column>``). On disk each target is a RelBench 3.x autocomplete task
(``tasks/<name>/manifest.yaml``), which relational-transformer's preprocessor lists in
its ``meta.json``.

Tables without a time column get no targets. RelBench's ``AutoCompleteTask`` splits
its label rows by the entity table's time column (train up to ``val_timestamp``, val up
to ``test_timestamp``, test after); without one there is no split, and RelBench's
``make_table`` cannot even build the label table, so ``get_task(...).get_table(...)``
would fail. Their columns still appear in ``scores.json`` and still reach the model as
context through the foreign keys.

``scores.json`` describes every feature column so that a task lister can skip targets
with nothing to learn (relational-transformer's ``make_plurel_db_task_list`` reads it):

``is_source_node``
    The column's SCM node has no parents in its table's causal graph: its values are an
    exogenous signal (plus noise), so nothing in the database predicts them.
``n_unique``
    Distinct values, nulls and NaN left out.
``n_classes``, ``majority_frac``
    For bool and categorical (string) columns: classes present, and the share of the
    most frequent one among the non-null values (1.0 for an empty column); null for
    numerical columns.
``std``
    For numerical columns: population standard deviation of the finite values (0.0
    with none), summed in a fixed order so the file is reproducible; null for bool and
    categorical columns.

This module needs NumPy and Polars only (no RelBench import), so writing a database stays fast.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np
import polars as pl

__all__ = [
    "BINARY_CLASSIFICATION",
    "REGRESSION",
    "TargetSpec",
    "column_scores",
    "database_scores",
    "distinct_count",
    "pretraining_targets",
    "table_scores",
    "task_manifest",
]

BINARY_CLASSIFICATION = "binary_classification"
REGRESSION = "regression"


class TargetSpec(NamedTuple):
    """One pretraining target: table, column and RelBench task type (a string)."""

    table: str
    column: str
    task_type: str

    @property
    def name(self) -> str:
        """Task name, ``<table>-<column>``."""
        return f"{self.table}-{self.column}"


def target_kind(dtype: pl.DataType) -> str | None:
    """The task type of a feature column of this dtype, or None if it is no target."""
    if dtype == pl.Boolean:
        return BINARY_CLASSIFICATION
    if dtype.is_float():
        return REGRESSION
    return None


def pretraining_targets(db) -> list[TargetSpec]:
    """Targets of a plurel_fast `Database`, in table then column order (module doc)."""
    targets = []
    for tname, table in db.table_dict.items():
        if table.time_col is None:
            continue
        for col in table.feature_cols:
            kind = target_kind(table.df.schema[col])
            if kind is not None:
                targets.append(TargetSpec(tname, col, kind))
    return targets


def task_manifest(target: TargetSpec, time_col: str) -> dict:
    """RelBench 3.x ``TaskManifest.to_dict()`` of an autocomplete target, key for key."""
    return {
        "name": target.name,
        "kind": "autocomplete",
        "task_type": target.task_type,
        "entity_table": target.table,
        "target_col": target.column,
        "time_col": time_col,
        "manifest_version": 1,
    }


def column_scores(s: pl.Series, *, is_source_node: bool) -> dict:
    """The ``scores.json`` record of one feature column (see the module doc)."""
    dtype = s.dtype
    # Float and boolean columns (all that generation makes) are scored in NumPy and
    # with Polars aggregates that return a number: the Series operations of the general
    # path below cost tens of microseconds of dispatch each, more than the work itself
    # on a table of a few thousand rows.
    if dtype.is_float():
        raw = s.to_numpy()  # nulls come out as NaN, which is no value either
        values = raw[~np.isnan(raw)]
        return {
            "is_source_node": bool(is_source_node),
            "n_unique": distinct_count(values.copy()),
            "n_classes": None,
            "majority_frac": None,
            "std": _std(values.astype(np.float64, copy=False)),
        }
    if dtype == pl.Boolean:
        n = len(s) - s.null_count()
        true = int(s.sum())
        counts = [c for c in (true, n - true) if c]
        return {
            "is_source_node": bool(is_source_node),
            "n_unique": len(counts),
            "n_classes": len(counts),
            "majority_frac": max(counts) / n if n else 1.0,
            "std": None,
        }
    s = s.drop_nulls()
    n = len(s)
    record = {"is_source_node": bool(is_source_node), "n_unique": int(s.n_unique())}
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        if n:
            counts = s.value_counts(sort=True)
            top = int(counts.get_column(counts.columns[-1])[0])
            record["n_classes"] = int(counts.height)
            record["majority_frac"] = top / n
        else:
            record["n_classes"], record["majority_frac"] = 0, 1.0
        record["std"] = None
    elif dtype.is_numeric():
        record["n_classes"], record["majority_frac"] = None, None
        record["std"] = _std(s.cast(pl.Float64).to_numpy())
    else:
        record["n_classes"], record["majority_frac"], record["std"] = None, None, None
    return record


def distinct_count(values: np.ndarray) -> int:
    """Distinct values of a NumPy array without NaN, as Polars' ``n_unique`` counts them
    (0.0 and -0.0 are one value); sorts ``values`` in place."""
    if not len(values):
        return 0
    values.sort()
    return int(1 + np.count_nonzero(values[1:] != values[:-1]))


def _std(values: np.ndarray) -> float:
    """Population deviation of the finite float64 ``values`` (0.0 with none)."""
    # NumPy's sum over one contiguous array: the same additions in the same order
    # however the Polars column is chunked, so scores.json is reproducible too.
    values = np.ascontiguousarray(values)
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # capped below
        mean = values.sum() / len(values)
        std = float(np.sqrt(np.square(values - mean).sum() / len(values)))
    if not math.isfinite(std):  # finite values so large that the variance overflows
        std = sys.float_info.max
    return std


def database_scores(db, source_columns: dict[str, list[str]] | None = None) -> dict:
    """``{table: {column: record}}`` for every feature column of `db`.

    ``source_columns`` maps a table to its columns whose SCM node is a source node
    (generation records it in ``db.metadata["source_columns"]``); columns not listed,
    and every column of a database that was not generated here, count as inner nodes.
    """
    if source_columns is None:
        source_columns = db.metadata.get("source_columns") or {}
    return {
        tname: table_scores(table, source_columns.get(tname, ()))
        for tname, table in db.table_dict.items()
    }


def table_scores(table, sources) -> dict:
    """``{column: record}`` for every feature column of one `Table` held in memory;
    ``sources`` names its columns whose SCM node is a source node."""
    sources = set(sources)
    return {
        col: column_scores(table.df.get_column(col), is_source_node=col in sources)
        for col in table.feature_cols
    }
