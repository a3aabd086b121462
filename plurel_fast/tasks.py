"""The paper's pretraining targets as RelBench autocomplete tasks (DESIGN §9).

For pretraining, PluRel predicts masked cells: every boolean feature column is a
binary classification target and every float feature column a regression target.
A target lives on a table with a time column, so its rows split in time at the
dataset's ``val_timestamp`` / ``test_timestamp`` (train: ``t <= val``; val:
``val < t <= test``; test: ``t > test``). Databases with a table holding more than
five foreign keys are skipped (`is_valid_db`).

Each target is a `relbench.base.AutoCompleteTask`; RelBench's own ``get_db`` takes
the target column out of the database the task sees and keeps it as the label, so
nothing is passed in ``remove_columns`` for it.

Example::

    from plurel_fast import SyntheticDataset, Config
    from plurel_fast.tasks import is_valid_db, make_tasks

    dataset = SyntheticDataset(seed=0, config=Config())
    if is_valid_db(dataset):
        for name, task in make_tasks(dataset).items():
            train = task.get_table("train")
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
from relbench.base import AutoCompleteTask, TaskType
from relbench.base import Database as RelBenchDatabase
from relbench.base import Dataset as RelBenchDataset

from plurel_fast.database import Database
from plurel_fast.pretraining import pretraining_targets
from plurel_fast.relbench import SyntheticDataset

__all__ = [
    "MAX_FKEYS",
    "Target",
    "TargetTask",
    "is_valid_db",
    "list_targets",
    "make_task",
    "make_tasks",
]

MAX_FKEYS = 5
"""The paper skips databases with a table holding more foreign keys than this."""


class Target(NamedTuple):
    """One pretraining target: a feature column of a table with a time column."""

    table: str
    column: str
    task_type: TaskType

    @property
    def name(self) -> str:
        """Task name, ``<table>-<column>``."""
        return f"{self.table}-{self.column}"


class TargetTask(AutoCompleteTask):
    """An `AutoCompleteTask` that knows its target's name (``<table>-<column>``)."""

    def __init__(self, dataset: RelBenchDataset, target: Target):
        self.name = target.name
        super().__init__(
            dataset,
            task_type=target.task_type,
            entity_table=target.table,
            target_col=target.column,
        )

    def __repr__(self) -> str:
        return f"TargetTask({self.name!r}, {self.task_type.value}, dataset={self.dataset!r})"


def list_targets(db: Database | RelBenchDatabase | RelBenchDataset) -> list[Target]:
    """The pretraining targets of a database, in table then column order.

    Boolean feature columns give `TaskType.BINARY_CLASSIFICATION`, float feature columns
    `TaskType.REGRESSION`; only tables with a time column take part. Key columns are
    never targets. Integer and string feature columns (which imported RelBench data may
    hold, often as undeclared ids or codes) are not listed.

    Parameters
    ----------
    db
        A plurel_fast `Database`, a `relbench.base.Database`, or a RelBench dataset
        (its full database is read; a `SyntheticDataset` is generated or loaded once).
    """
    if isinstance(db, SyntheticDataset):
        db = db.get_database()
    elif isinstance(db, RelBenchDataset):
        db = db.get_db(upto_test_timestamp=False)
    if isinstance(db, Database):
        # The same list the saved folder's tasks/ holds (plurel_fast.pretraining).
        return [Target(t.table, t.column, TaskType(t.task_type)) for t in pretraining_targets(db)]
    targets = []
    if isinstance(db, RelBenchDatabase):
        for tname, table in db.table_dict.items():
            if table.time_col is None:
                continue
            skip = {table.pkey_col, table.time_col, *table.fkey_col_to_pkey_table}
            for col in table.df.columns:
                if col in skip:
                    continue
                kind = _pandas_kind(table.df[col].dtype)
                if kind is not None:
                    targets.append(Target(tname, col, kind))
        return targets
    raise TypeError(
        "list_targets needs a plurel_fast Database, a relbench.base.Database or a "
        f"relbench Dataset, got {type(db).__module__}.{type(db).__name__}"
    )


def _pandas_kind(dtype) -> TaskType | None:
    if pd.api.types.is_bool_dtype(dtype):
        return TaskType.BINARY_CLASSIFICATION
    if pd.api.types.is_float_dtype(dtype):
        return TaskType.REGRESSION
    return None


def is_valid_db(
    db: Database | RelBenchDatabase | RelBenchDataset, max_fkeys: int = MAX_FKEYS
) -> bool:
    """False if some table holds more than ``max_fkeys`` foreign-key columns.

    The paper skips such databases for pretraining (DESIGN §9). For a `SyntheticDataset`
    the answer comes from the schema plan, without generating the database.
    """
    if isinstance(max_fkeys, bool) or not isinstance(max_fkeys, int) or max_fkeys < 0:
        raise ValueError(f"max_fkeys must be a non-negative integer, got {max_fkeys!r}")
    if isinstance(db, SyntheticDataset):
        if db._database is None:
            from plurel_fast.plan.schema import plan_schema

            counts = [len(t.fkey_cols) for t in plan_schema(db.seed, db.config).tables]
            return max(counts, default=0) <= max_fkeys
        db = db.get_database()
    elif isinstance(db, RelBenchDataset):
        db = db.get_db(upto_test_timestamp=False)
    if not isinstance(db, (Database, RelBenchDatabase)):
        raise TypeError(
            "is_valid_db needs a plurel_fast Database, a relbench.base.Database or a "
            f"relbench Dataset, got {type(db).__module__}.{type(db).__name__}"
        )
    return all(len(t.fkey_col_to_pkey_table) <= max_fkeys for t in db.table_dict.values())


def make_task(dataset: RelBenchDataset, table: str, column: str) -> TargetTask:
    """The autocomplete task predicting ``table.column`` on ``dataset``.

    The task type follows the column's dtype (see `list_targets`); a column that is
    not a target raises ``ValueError`` listing the targets there are.
    """
    targets = {(t.table, t.column): t for t in list_targets(dataset)}
    try:
        target = targets[(table, column)]
    except KeyError:
        listed = ", ".join(t.name for t in targets.values()) or "(none)"
        raise ValueError(
            f"{table}.{column} is not a pretraining target of {dataset!r}: targets are "
            f"bool or float feature columns of tables with a time column. Targets: {listed}"
        ) from None
    return TargetTask(dataset, target)


def make_tasks(
    dataset: RelBenchDataset, targets: list[Target] | None = None
) -> dict[str, TargetTask]:
    """One `TargetTask` per target of ``dataset`` (default: all of `list_targets`),
    keyed by task name ``<table>-<column>``."""
    if not isinstance(dataset, RelBenchDataset):
        raise TypeError(
            f"make_tasks needs a relbench Dataset (e.g. SyntheticDataset), got "
            f"{type(dataset).__module__}.{type(dataset).__name__}"
        )
    if targets is None:
        targets = list_targets(dataset)
    return {t.name: TargetTask(dataset, Target(*t)) for t in targets}
