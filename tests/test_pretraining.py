"""Pretraining files beside the tables: tasks/ (RelBench autocomplete tasks) and scores.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
import relbench

import plurel_fast
from plurel_fast import Config, SyntheticDataset
from plurel_fast.plan.database import plan_database
from plurel_fast.pretraining import column_scores, pretraining_targets
from plurel_fast.relbench import CacheMismatchError
from plurel_fast.tasks import list_targets

from conftest import SMALL_PARAMS as SMALL
SEEDS = (0, 3, 4)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretraining")
    out = {}
    for seed in SEEDS:
        db = plurel_fast.generate(seed)
        out[seed] = (db, db.save(root / f"plurel-{seed}"))
    return out


def test_every_task_loads_in_relbench_with_the_column_as_label(saved):
    for seed, (db, folder) in saved.items():
        dataset = relbench.load_dataset(str(folder))
        targets = {t.name: t for t in pretraining_targets(db)}
        assert sorted(dataset.get_task_names()) == sorted(targets)
        assert [t.name for t in list_targets(db)] == list(targets)  # the same names
        for name, target in targets.items():
            # RelBench 3.x spells the get_task(name) as load_task(name).
            task = dataset.load_task(name)
            assert task.task_type.value == target.task_type
            assert (task.entity_table, task.target_col) == (target.table, target.column)
            val = task.get_table("val").df
            column = db.table_dict[target.table].df
            assert len(val) > 0
            expected = column.filter(
                (pl.col("date") > dataset.val_timestamp) & (pl.col("date") <= dataset.test_timestamp)
            ).drop_nulls(target.column)
            labels = dict(zip(val[task.entity_col], val[target.column]))
            assert len(labels) == expected.height
            for row, value in zip(expected["row_idx"].to_list()[:50],
                                  expected[target.column].to_list()[:50]):
                assert labels[row] == value


def test_entity_tables_get_no_tasks(saved):
    for db, folder in saved.values():
        tasks = {p.name for p in (folder / "tasks").iterdir()}
        for tname, table in db.table_dict.items():
            owned = {t for t in tasks if t.startswith(f"{tname}-")}
            if table.time_col is None:
                assert not owned
            else:
                assert owned == {f"{tname}-{c}" for c in table.feature_cols
                                 if table.df.schema[c] in (pl.Boolean, pl.Float64)}


def _naive_scores(values: np.ndarray, kind: str) -> dict:
    """Obvious NumPy statistics of a column read back from Parquet."""
    if kind == "numerical":
        x = values.astype(np.float64)
        x = x[~np.isnan(x)]
        return {"n_unique": len(set(x.tolist())),
                "std": float(np.sqrt(np.mean((x - x.mean()) ** 2))) if len(x) else 0.0}
    present = [v for v in values.tolist() if v is not None]
    counts: dict = {}
    for v in present:
        counts[v] = counts.get(v, 0) + 1
    return {"n_unique": len(counts), "n_classes": len(counts),
            "majority_frac": max(counts.values()) / len(present) if present else 1.0}


def test_scores_match_the_parquet_files(saved):
    for db, folder in saved.values():
        scores = json.loads((folder / "scores.json").read_text())
        assert set(scores) == set(db.table_dict)
        for tname, table in db.table_dict.items():
            assert list(scores[tname]) == table.feature_cols
            frame = pq.read_table(folder / "db" / f"{tname}.parquet").to_pandas()
            for col in table.feature_cols:
                got = scores[tname][col]
                assert set(got) == {"is_source_node", "n_unique", "n_classes", "majority_frac", "std"}
                series = frame[col]
                if pd.api.types.is_float_dtype(series):
                    want = _naive_scores(series.to_numpy(), "numerical")
                    assert got["n_unique"] == want["n_unique"]
                    assert got["std"] == pytest.approx(want["std"], rel=1e-9, abs=1e-12)
                    assert got["n_classes"] is None and got["majority_frac"] is None
                else:
                    want = _naive_scores(series.to_numpy(dtype=object), "categorical")
                    assert got["n_unique"] == want["n_unique"] == got["n_classes"]
                    assert got["majority_frac"] == pytest.approx(want["majority_frac"], rel=1e-12)
                    assert got["std"] is None


def test_is_source_node_follows_the_plan(saved):
    seen_source = seen_inner = 0
    for seed, (db, folder) in saved.items():
        scores = json.loads((folder / "scores.json").read_text())
        plan = plan_database(seed, Config())
        for table in plan.schema.tables:
            scm = plan.scm(table.id)
            for col, node in zip(table.features, scm.col_nodes):
                if col.name not in scores[table.name]:
                    continue  # post-processing dropped the column
                expected = bool(scm.is_source[node])
                assert scores[table.name][col.name]["is_source_node"] is expected
                seen_source += expected
                seen_inner += not expected
    assert seen_source > 0 and seen_inner > 0  # both kinds occur, so the check bites


def test_column_scores_edge_cases():
    empty = column_scores(pl.Series("x", [None, None], dtype=pl.Float64), is_source_node=False)
    assert empty == {"is_source_node": False, "n_unique": 0, "n_classes": None,
                     "majority_frac": None, "std": 0.0}
    nan = column_scores(pl.Series("x", [1.0, float("nan"), 3.0]), is_source_node=True)
    assert nan["n_unique"] == 2 and nan["std"] == 1.0 and nan["is_source_node"] is True
    flags = column_scores(pl.Series("b", [True, True, True, False, None]), is_source_node=False)
    assert flags["n_classes"] == 2 and flags["majority_frac"] == 0.75
    no_flags = column_scores(pl.Series("b", [None], dtype=pl.Boolean), is_source_node=False)
    assert no_flags["n_classes"] == 0 and no_flags["majority_frac"] == 1.0
    huge = column_scores(pl.Series("x", [-1e308, 1e308]), is_source_node=False)
    assert np.isfinite(huge["std"])  # JSON has no inf


def test_column_scores_of_floats_and_flags_are_those_of_polars():
    # Float and boolean columns are scored in NumPy: the counts must be Polars' own.
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(0, 40))
        x = rng.choice([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan], size=n)
        nulls = np.flatnonzero(rng.random(n) < 0.2)
        for s in (pl.Series(x), pl.Series(x, dtype=pl.Float32)):
            s = s.scatter(nulls, None)
            kept = s.filter(s.is_not_nan()).drop_nulls()
            assert column_scores(s, is_source_node=False)["n_unique"] == kept.n_unique()
        flags = pl.Series(rng.random(n) < 0.3).scatter(nulls, None)
        record = column_scores(flags, is_source_node=False)
        kept = flags.drop_nulls()
        counts = kept.value_counts(sort=True)
        assert record["n_unique"] == record["n_classes"] == kept.n_unique() == counts.height
        if len(kept):
            assert record["majority_frac"] == counts.get_column("count")[0] / len(kept)


def test_cache_dir_is_the_database_folder(tmp_path, monkeypatch):
    folder = tmp_path / "out" / "plurel-2"
    config = Config(database_params=SMALL, cache_dir=str(folder))
    SyntheticDataset(2, config).get_db()
    assert (folder / "manifest.yaml").is_file() and (folder / "db").is_dir()
    assert relbench.load_dataset(str(folder)).manifest.name == "plurel-2"

    calls = []
    monkeypatch.setattr("plurel_fast.relbench.generate", lambda *a, **k: calls.append(a))
    again = SyntheticDataset(2, config).get_db()
    assert calls == [] and len(again.table_dict) >= 3
    changed = Config(database_params=SMALL, cache_dir=str(folder), val_split=0.6)
    with pytest.raises(CacheMismatchError, match="val_split"):
        SyntheticDataset(2, changed).get_db()
