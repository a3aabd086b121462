"""Our folders through relational-transformer's own reader and task lister.

RT (``relational-transformer`` on PyPI) pretrains on PluRel corpora. Its compiled
preprocessor refuses a manifest with keys outside RelBench's ``DatasetManifest`` and
timestamps it cannot parse; its PluRel task lister reads ``scores.json`` and the
manifest of each raw folder. Both run here on databases we write (see
``tests/rt_consumer.py`` for how they are loaded without installing RT and torch).
"""

from __future__ import annotations

import json

import pytest
import yaml
from rt_consumer import rt_preprocess, rt_task_lister

import plurel_fast
from plurel_fast.pretraining import pretraining_targets

# Seed 37 of the default config has a table with 6 foreign keys (more than the
# lister's max_fkeys=5); every default database has entity tables (no time column).
SEEDS = (0, 1, 37)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    raw, pre = root / "raw", root / "pre"
    dbs, metas = {}, {}
    for seed in SEEDS:
        db = plurel_fast.generate(seed)
        name = f"plurel-{seed}"
        db.save(raw / name)
        dbs[name] = db
        metas[name] = rt_preprocess(raw / name, pre)
    return raw, pre, dbs, metas


def test_rt_preprocesses_every_database_and_lists_our_tasks(corpus):
    raw, pre, dbs, metas = corpus
    for name, db in dbs.items():
        meta = metas[name]
        assert meta["name"] == name
        assert meta["num_db_tables"] == len(db.table_dict)
        ours = {t.name: t for t in pretraining_targets(db)}
        assert ours, f"{name} has no pretraining targets"
        listed = {t["name"]: t for t in meta["tasks"]}
        assert set(listed) == set(ours)
        for task_name, t in listed.items():
            target = ours[task_name]
            assert t["kind"] == "autocomplete"
            assert t["task_type"] == target.task_type
            assert (t["entity_table"], t["target_col"]) == (target.table, target.column)
            assert t["time_col"] == db.table_dict[target.table].time_col


def test_rt_reads_entity_tables_and_every_feature_column(corpus):
    raw, pre, dbs, metas = corpus
    for name, db in dbs.items():
        index = json.loads((pre / name / "column_index.json").read_text())
        entity_tables = [t for t, table in db.table_dict.items() if table.time_col is None]
        assert entity_tables, f"{name}: expected entity tables without a time column"
        for tname in entity_tables:
            for col in db.table_dict[tname].feature_cols:
                assert f"{col} of {tname}" in index


def test_rt_plurel_task_lister_filters_as_intended(corpus):
    raw, pre, dbs, metas = corpus
    lister = rt_task_lister()
    wide = [n for n, db in dbs.items()
            if max(len(t.fkey_col_to_pkey_table) for t in db.table_dict.values()) > 5]
    assert wide == ["plurel-37"]
    pairs = lister.make_plurel_db_task_list(str(pre), str(raw), num_dbs=len(dbs) - 1)
    kept_dbs = {db for db, _ in pairs}
    assert kept_dbs == set(dbs) - set(wide)
    with pytest.raises(AssertionError, match="pass the filter"):
        lister.make_plurel_db_task_list(str(pre), str(raw), num_dbs=len(dbs))

    total = sum(len(metas[n]["tasks"]) for n in kept_dbs)
    share = len(pairs) / total
    assert 0.3 <= share <= 1.0, f"the lister kept {len(pairs)} of {total} tasks"
    for db_name, task_name in pairs:
        scores = json.loads((raw / db_name / "scores.json").read_text())
        task = next(t for t in metas[db_name]["tasks"] if t["name"] == task_name)
        stats = scores[task["entity_table"]][task["target_col"]]
        assert not stats["is_source_node"] and stats["n_unique"] >= 2
    # What it dropped, it dropped for a reason the scores give.
    listed = {(n, t["name"]) for n in kept_dbs for t in metas[n]["tasks"]}
    for db_name, task_name in listed - set(pairs):
        scores = json.loads((raw / db_name / "scores.json").read_text())
        task = next(t for t in metas[db_name]["tasks"] if t["name"] == task_name)
        stats = scores[task["entity_table"]][task["target_col"]]
        assert (
            stats["is_source_node"]
            or stats["n_unique"] < 2
            or (stats["majority_frac"] or 0) > 0.99
            or (stats["std"] is not None and stats["std"] < 1e-4)
        )


def test_manifest_is_relbench_dataset_manifest_only(corpus):
    raw, pre, dbs, metas = corpus
    for name in dbs:
        manifest = yaml.safe_load((raw / name / "manifest.yaml").read_text())
        assert set(manifest) == {
            "name", "manifest_version", "val_timestamp", "test_timestamp", "tables"
        }
        for key in ("val_timestamp", "test_timestamp"):
            value = (raw / name / "manifest.yaml").read_text().split(f"{key}: ")[1].split("\n")[0]
            assert len(value.strip("'")) == 10 and value.strip("'")[4] == "-"
