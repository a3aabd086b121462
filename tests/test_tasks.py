"""Pretraining targets as RelBench autocomplete tasks (DESIGN §9)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest
import relbench
from relbench.base import AutoCompleteTask, TaskType

import plurel_fast.relbench as prb
from plurel_fast import Choices, Config, Database, DatabaseParams, SyntheticDataset, Table
from plurel_fast.tasks import MAX_FKEYS, Target, is_valid_db, list_targets, make_task, make_tasks

SMALL = DatabaseParams(
    num_tables_choices=Choices("range", [3, 4]),
    num_rows_entity_table_choices=Choices("range", [50, 100]),
    num_rows_activity_table_choices=Choices("range", [100, 200]),
    num_cols_choices=Choices("range", [2, 6]),
)


def small_dataset(seed: int, **config) -> SyntheticDataset:
    return SyntheticDataset(seed, Config(database_params=SMALL, **config))


def _expected_targets(db: Database) -> list[Target]:
    out = []
    for tname, table in db.table_dict.items():
        if table.time_col is None:
            continue
        for col in table.feature_cols:
            dtype = table.df.schema[col]
            if dtype == pl.Boolean:
                out.append(Target(tname, col, TaskType.BINARY_CLASSIFICATION))
            elif dtype == pl.Float64:
                out.append(Target(tname, col, TaskType.REGRESSION))
    return out


@pytest.mark.parametrize("seed, default", [(0, False), (1, False), (3, False), (4, False), (0, True)])
def test_every_task_builds_its_splits_with_relbench(seed, default):
    ds = SyntheticDataset(seed, Config()) if default else small_dataset(seed)
    db = ds.get_database()
    targets = list_targets(ds)
    assert targets == _expected_targets(db)
    # Every feature column of a timed table is a target (generated columns are bool/float).
    timed = [t for t in db.table_dict.values() if t.time_col is not None]
    assert len(targets) == sum(len(t.feature_cols) for t in timed)

    tasks = make_tasks(ds)
    assert list(tasks) == [f"{t.table}-{t.column}" for t in targets]
    val, test = ds.val_timestamp, ds.test_timestamp
    for target, (name, task) in zip(targets, tasks.items()):
        assert isinstance(task, AutoCompleteTask)
        assert task.task_type == target.task_type and task.name == name
        assert (task.entity_table, task.target_col, task.entity_col) == (
            target.table,
            target.column,
            "row_idx",
        )
        # The task never sees its own target; the dataset still has it.
        assert target.column not in task.get_db().table_dict[target.table].df.columns
        assert target.column in ds.get_db().table_dict[target.table].df.columns

        table = db.table_dict[target.table]
        time_col = table.time_col
        source = table.df.filter(pl.col(target.column).is_not_null())
        windows = {
            "train": pl.col(time_col) <= val.to_pydatetime(),
            "val": (pl.col(time_col) > val.to_pydatetime()) & (pl.col(time_col) <= test.to_pydatetime()),
            "test": pl.col(time_col) > test.to_pydatetime(),
        }
        label_dtype = np.bool_ if target.task_type == TaskType.BINARY_CLASSIFICATION else np.float64
        for split, window in windows.items():
            got = task.get_table(split, mask_input_cols=False).df
            times = got[time_col]
            if split == "train":
                assert (times <= val).all()
            elif split == "val":
                assert ((times > val) & (times <= test)).all()
            else:
                assert (times > test).all()
            assert got[target.column].dtype == label_dtype, (name, split)
            assert got[target.column].notna().all()
            # Exactly the rows of the window that have a label, with their values.
            expected = source.filter(window).select("row_idx", target.column).sort("row_idx")
            got_sorted = got.sort_values("row_idx").reset_index(drop=True)
            assert got_sorted["row_idx"].tolist() == expected["row_idx"].to_list()
            np.testing.assert_array_equal(
                got_sorted[target.column].to_numpy(), expected[target.column].to_numpy()
            )
        masked = task.get_table("test")
        assert list(masked.df.columns) == [time_col, "row_idx"]


def test_tasks_evaluate_with_relbench_metrics():
    ds = small_dataset(1)
    evaluated = 0
    for task in make_tasks(ds).values():
        test = task.get_table("test", mask_input_cols=False)
        labels = test.df[task.target_col]
        if task.task_type == TaskType.REGRESSION:
            if not task.nmae_std > 0:  # a constant train target has no NMAE
                continue
            pred = np.full(len(labels), float(labels.mean()))
            assert set(task.evaluate(pred)) == {"nmae"}
        elif labels.nunique() == 2:
            assert task.evaluate(labels.to_numpy().astype(float))["roc_auc"] == pytest.approx(1.0)
        else:
            continue
        evaluated += 1
    assert evaluated > 0


def test_targets_of_both_kinds_occur():
    kinds = set()
    for seed in range(6):
        kinds |= {t.task_type for t in list_targets(small_dataset(seed))}
    assert kinds == {TaskType.BINARY_CLASSIFICATION, TaskType.REGRESSION}


def test_tasks_on_a_loaded_folder(tmp_path):
    ds = small_dataset(4, cache_dir=str(tmp_path))
    expected = list_targets(ds)
    loaded = relbench.load_dataset(str(ds.cache_path))
    assert list_targets(loaded) == expected
    assert list_targets(loaded.get_db()) == expected  # the pandas path agrees
    target = expected[0]
    ours = make_task(ds, target.table, target.column).get_table("val").df
    theirs = make_task(loaded, target.table, target.column).get_table("val").df
    pd.testing.assert_frame_equal(ours, theirs)


def test_make_task_rejects_non_targets():
    ds = small_dataset(1)
    db = ds.get_database()
    first = list_targets(ds)[0]
    with pytest.raises(ValueError, match=rf"{first.table}\.row_idx is not a pretraining target.*{first.name}"):
        make_task(ds, first.table, "row_idx")
    untimed = [(n, t) for n, t in db.table_dict.items() if t.time_col is None and t.feature_cols]
    for name, table in untimed:
        with pytest.raises(ValueError, match="not a pretraining target"):
            make_task(ds, name, table.feature_cols[0])
    with pytest.raises(TypeError, match="relbench Dataset"):
        make_tasks(db)


def test_list_targets_skips_keys_strings_ints_and_untimed_tables():
    t0 = dt.datetime(2020, 1, 1)
    events = Table(
        pl.DataFrame(
            {
                "row_idx": [0, 1, 2],
                "user": [0, 1, 0],
                "amount": [1.0, None, 2.0],
                "ok": [True, False, True],
                "code": ["a", "b", "c"],
                "count": [1, 2, 3],
                "date": pl.Series([t0, t0, t0], dtype=pl.Datetime("ns")),
            }
        ),
        {"user": "users"},
        "row_idx",
        "date",
    )
    users = Table(pl.DataFrame({"row_idx": [0, 1], "x": [0.5, 1.5], "b": [True, False]}), pkey_col="row_idx")
    db = Database({"users": users, "events": events}, t0, t0)
    expected = [
        Target("events", "amount", TaskType.REGRESSION),
        Target("events", "ok", TaskType.BINARY_CLASSIFICATION),
    ]
    assert list_targets(db) == expected
    assert list_targets(db.to_relbench()) == expected
    assert [t.name for t in expected] == ["events-amount", "events-ok"]
    with pytest.raises(TypeError, match="list_targets needs"):
        list_targets({"events": events})


def _fan_in_db(num_parents: int) -> Database:
    t0 = dt.datetime(2020, 1, 1)
    parents = {f"p{i}": Table(pl.DataFrame({"row_idx": [0]}), pkey_col="row_idx") for i in range(num_parents)}
    child = Table(
        pl.DataFrame({"row_idx": [0], **{f"fk{i}": [0] for i in range(num_parents)}}),
        {f"fk{i}": f"p{i}" for i in range(num_parents)},
        "row_idx",
    )
    return Database({**parents, "child": child}, t0, t0)


def test_is_valid_db_counts_foreign_keys_per_table():
    assert MAX_FKEYS == 5
    assert is_valid_db(_fan_in_db(5))
    assert not is_valid_db(_fan_in_db(6))
    assert is_valid_db(_fan_in_db(6), max_fkeys=6)
    assert not is_valid_db(_fan_in_db(6).to_relbench())
    assert is_valid_db(_fan_in_db(5).to_relbench())
    with pytest.raises(ValueError, match="max_fkeys"):
        is_valid_db(_fan_in_db(1), max_fkeys=-1)


def test_is_valid_db_on_a_dataset_needs_no_generation(monkeypatch):
    wide = DatabaseParams(
        num_tables_choices=Choices("range", [8, 12]),
        num_rows_entity_table_choices=Choices("range", [20, 30]),
        num_rows_activity_table_choices=Choices("range", [20, 30]),
        num_cols_choices=Choices("range", [1, 2]),
    )
    datasets = [SyntheticDataset(seed, Config(database_params=wide)) for seed in range(8)]

    def forbidden(*args, **kwargs):
        raise AssertionError("is_valid_db generated a database")

    monkeypatch.setattr(prb, "generate", forbidden)
    planned = [[is_valid_db(ds, max_fkeys=k) for k in (0, 1, 2, 3, MAX_FKEYS)] for ds in datasets]
    monkeypatch.undo()
    generated = [
        [is_valid_db(ds.get_database(), max_fkeys=k) for k in (0, 1, 2, 3, MAX_FKEYS)]
        for ds in datasets
    ]
    assert planned == generated
    assert len({tuple(p) for p in planned}) > 1  # the seeds do not all answer alike
    assert all(not p[0] for p in planned)  # every database has a foreign key somewhere
    # Once the database is in memory, it is what is checked.
    assert [is_valid_db(ds) for ds in datasets] == [p[-1] for p in planned]
