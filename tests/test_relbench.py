"""RelBench adapter: drop-in SyntheticDataset, its cache, and the conversions (DESIGN §6)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import relbench
import yaml
from relbench.base import Database as RelBenchDatabase
from relbench.base import Dataset as RelBenchDataset
from relbench.base import Table as RelBenchTable

import plurel_fast
import plurel_fast.relbench as prb
from plurel_fast import Choices, Config, Database, DatabaseParams, SyntheticDataset, Table

SMALL = DatabaseParams(
    num_tables_choices=Choices("range", [3, 4]),
    num_rows_entity_table_choices=Choices("range", [50, 100]),
    num_rows_activity_table_choices=Choices("range", [100, 200]),
    num_cols_choices=Choices("range", [2, 6]),
)

# The two snippets of issue #4, exactly as `plurel` users write them but for the
# package name; the README shows them too.
SNIPPET_DATASET = textwrap.dedent(
    """\
    from plurel_fast import SyntheticDataset, Config
    dataset = SyntheticDataset(seed=0, config=Config())
    db = dataset.make_db()
    """
)
SNIPPET_CONFIG = textwrap.dedent(
    """\
    from plurel_fast import Config, DatabaseParams, Choices
    config = Config(database_params=DatabaseParams(num_tables_choices=Choices(kind="range", value=[5, 10])), cache_dir="~/.cache/plurel/plurel-7")
    """
)


def small_config(cache_dir=None, **changes) -> Config:
    return Config(database_params=SMALL, cache_dir=None if cache_dir is None else str(cache_dir), **changes)


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_relbench_dbs_equal(a: RelBenchDatabase, b: RelBenchDatabase) -> None:
    assert list(a.table_dict) == list(b.table_dict)
    for name, ta in a.table_dict.items():
        tb = b.table_dict[name]
        assert (ta.pkey_col, ta.time_col, ta.fkey_col_to_pkey_table) == (
            tb.pkey_col,
            tb.time_col,
            tb.fkey_col_to_pkey_table,
        ), name
        pd.testing.assert_frame_equal(
            ta.df.reset_index(drop=True), tb.df.reset_index(drop=True), check_dtype=True
        )


@pytest.fixture
def no_generate(monkeypatch):
    """Make any call of `generate` from the adapter fail the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("generate() was called, but the database should come from the cache")

    monkeypatch.setattr(prb, "generate", forbidden)


@pytest.fixture
def count_generate(monkeypatch):
    calls = []
    real = prb.generate

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(prb, "generate", counting)
    return calls


# --------------------------------------------------------------------------- drop-in API


def test_snippet_dataset_runs_unchanged():
    scope: dict = {}
    exec(SNIPPET_DATASET, scope)
    dataset, db = scope["dataset"], scope["db"]
    assert isinstance(dataset, RelBenchDataset)
    assert isinstance(db, RelBenchDatabase)
    assert len(db.table_dict) >= 3
    expected = plurel_fast.generate(0, Config())
    assert list(db.table_dict) == list(expected.table_dict)
    assert sum(len(t) for t in db.table_dict.values()) == expected.num_rows


def test_snippet_config_runs_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    scope: dict = {}
    exec(SNIPPET_CONFIG, scope)
    config = scope["config"]
    assert config.cache_dir == "~/.cache/plurel/plurel-7"
    assert config.database_params.num_tables_choices == Choices("range", [5, 10])
    dataset = SyntheticDataset(seed=7, config=config)
    # plurel's meaning: cache_dir is the database folder itself.
    assert dataset.cache_path == tmp_path / ".cache" / "plurel" / "plurel-7"
    # Generate with the snippet's cache_dir (small tables keep it quick).
    small = SyntheticDataset(seed=7, config=config.replace(database_params=SMALL))
    db = small.get_db()
    assert (tmp_path / ".cache" / "plurel" / "plurel-7" / "manifest.yaml").is_file()
    assert isinstance(db, RelBenchDatabase)


def test_snippet_config_generates_into_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    scope: dict = {}
    exec(SNIPPET_CONFIG, scope)
    db = SyntheticDataset(seed=7, config=scope["config"]).get_db()
    folder = tmp_path / ".cache" / "plurel" / "plurel-7"
    assert 5 <= len(db.table_dict) <= 10
    assert sorted(p.name for p in (folder / "db").iterdir()) == sorted(
        f"{n}.parquet" for n in db.table_dict
    )


def test_readme_shows_both_snippets():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "## Using with RelBench" in readme
    assert SNIPPET_DATASET in readme
    assert SNIPPET_CONFIG in readme


def test_public_names():
    for name in ("SyntheticDataset", "Config", "DatabaseParams", "SCMParams", "DAGParams", "Choices"):
        assert name in plurel_fast.__all__
        assert getattr(plurel_fast, name) is not None
    assert issubclass(plurel_fast.SyntheticDataset, RelBenchDataset)


def test_construction_is_lazy_and_knows_its_timestamps(no_generate):
    cfg = small_config()
    ds = SyntheticDataset(seed=5, config=cfg)
    assert isinstance(ds.val_timestamp, pd.Timestamp)
    assert isinstance(ds.test_timestamp, pd.Timestamp)
    assert ds.min_timestamp < ds.val_timestamp < ds.test_timestamp <= ds.max_timestamp
    assert ds.name == "plurel-5" and ds.cache_path is None
    assert "seed=5" in repr(ds) and cfg.config_hash in repr(ds)


def test_timestamps_match_the_generated_database():
    for seed in (0, 4):
        ds = SyntheticDataset(seed, small_config())
        db = ds.get_database()
        assert pd.Timestamp(db.val_timestamp) == ds.val_timestamp
        assert pd.Timestamp(db.test_timestamp) == ds.test_timestamp


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        SyntheticDataset(seed=-1, config=small_config())
    with pytest.raises(TypeError, match="plurel_fast.Config"):
        SyntheticDataset(seed=0, config={"num_tables": 3})


# --------------------------------------------------------------------------- get_db


def test_get_db_without_cache_dir(count_generate):
    cfg = small_config()
    ds = SyntheticDataset(seed=2, config=cfg)
    ours = plurel_fast.generate(2, cfg)
    count_generate.clear()

    full = ds.get_db(upto_test_timestamp=False)  # runs RelBench's key validation
    cut = ds.get_db()
    again = ds.get_db()
    assert len(count_generate) == 1  # kept on the instance; every call converts afresh
    assert again is not cut and again.table_dict["table_0"].df is not cut.table_dict["table_0"].df

    assert list(full.table_dict) == list(ours.table_dict)
    for name, table in ours.table_dict.items():
        rb = full.table_dict[name]
        assert isinstance(rb, RelBenchTable)
        assert (rb.pkey_col, rb.time_col, rb.fkey_col_to_pkey_table) == (
            table.pkey_col,
            table.time_col,
            table.fkey_col_to_pkey_table,
        )
        for col, dtype in rb.df.dtypes.items():
            pl_dtype = table.df.schema[col]
            if col == table.pkey_col or col in table.fkey_col_to_pkey_table:
                assert dtype == np.int64, (name, col)
            elif col == table.time_col:
                assert dtype == np.dtype("datetime64[ns]"), (name, col)
            elif pl_dtype == pl.Boolean:
                assert dtype == np.bool_, (name, col)
            else:
                assert pl_dtype == pl.Float64 and dtype == np.float64, (name, col)
        # Nulls are NaN; every value equal.
        pd.testing.assert_frame_equal(rb.df, table.df.to_pandas(), check_dtype=False)

        kept = cut.table_dict[name].df
        if table.time_col is None:
            assert len(kept) == len(table)
        else:
            assert (kept[table.time_col] <= ds.test_timestamp).all()
            expected = table.df.filter(pl.col(table.time_col) <= ds.test_timestamp.to_pydatetime())
            assert len(kept) == expected.height < len(table)


def test_get_db_with_cache_dir_writes_once_then_loads(tmp_path, count_generate, monkeypatch):
    folder = tmp_path / "cache" / "plurel-1"
    cfg = small_config(folder)
    first = SyntheticDataset(seed=1, config=cfg)
    db1 = first.get_db()
    assert len(count_generate) == 1
    assert first.cache_path == folder
    assert {"db", "manifest.yaml", "plurel_fast.json", "scores.json"} <= {
        p.name for p in folder.iterdir()
    }
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert manifest["name"] == "plurel-1" and "plurel_fast" not in manifest
    stamp = json.loads((folder / "plurel_fast.json").read_text())
    assert stamp["seed"] == 1 and stamp["config_hash"] == cfg.config_hash
    assert stamp["config"]["database_params"]["num_tables_choices"] == {"kind": "range", "value": [3, 4]}
    assert "cache_dir" not in stamp["config"]
    before = _file_hashes(folder)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    def forbidden(*args, **kwargs):
        raise AssertionError("regenerated although the cache holds this database")

    monkeypatch.setattr(prb, "generate", forbidden)
    second = SyntheticDataset(seed=1, config=cfg)
    db2 = second.get_db()
    _assert_relbench_dbs_equal(db1, db2)
    assert second.get_database().equals(first.get_database())
    assert _file_hashes(folder) == before
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == mtimes


def test_cache_dir_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    ds = SyntheticDataset(seed=0, config=small_config("~/plurel-cache/plurel-0"))
    assert ds.cache_path == tmp_path / "plurel-cache" / "plurel-0"
    ds.get_db()
    assert (tmp_path / "plurel-cache" / "plurel-0" / "manifest.yaml").is_file()
    assert list((tmp_path / "work").iterdir()) == []  # no folder literally named '~'


def test_stale_cache_from_another_config_is_reported(tmp_path):
    folder = tmp_path / "plurel-0"
    old = small_config(folder)
    SyntheticDataset(seed=0, config=old).get_db()
    before = _file_hashes(folder)

    new = small_config(folder, val_split=0.7)
    assert new.config_hash != old.config_hash
    ds = SyntheticDataset(seed=0, config=new)
    with pytest.raises(prb.CacheMismatchError) as err:
        ds.get_db()
    message = str(err.value)
    assert str(folder) in message
    assert old.config_hash in message and new.config_hash in message
    assert "val_split" in message  # the field that differs
    assert "Delete" in message and "cache_dir" in message
    assert _file_hashes(folder) == before  # reported, not overwritten
    assert isinstance(err.value, plurel_fast.CacheMismatchError)


def test_foreign_cache_folders_are_reported(tmp_path):
    def cfg(seed):
        return small_config(tmp_path / f"plurel-{seed}")

    # A folder that is not a saved database.
    (tmp_path / "plurel-0").mkdir()
    (tmp_path / "plurel-0" / "notes.txt").write_text("mine")
    with pytest.raises(prb.CacheMismatchError, match="no manifest.yaml"):
        SyntheticDataset(0, cfg(0)).get_db()
    # A database of another seed in the folder.
    SyntheticDataset(1, cfg(1)).get_db()
    (tmp_path / "plurel-1").rename(tmp_path / "plurel-2")
    with pytest.raises(prb.CacheMismatchError, match="holds plurel-1 .* seed 2"):
        SyntheticDataset(2, cfg(2)).get_db()
    # A plain RelBench folder (no plurel_fast.json sidecar).
    (tmp_path / "plurel-2" / "plurel_fast.json").unlink()
    with pytest.raises(prb.CacheMismatchError, match="not made by plurel_fast"):
        SyntheticDataset(2, cfg(2)).get_db()
    # A sidecar that is not JSON.
    (tmp_path / "plurel-2" / "plurel_fast.json").write_text("{oops")
    with pytest.raises(prb.CacheMismatchError, match="plurel_fast.json is not valid JSON"):
        SyntheticDataset(2, cfg(2)).get_db()


def test_cache_from_another_version_warns(tmp_path):
    cfg = small_config(tmp_path / "plurel-0")
    SyntheticDataset(0, cfg).get_db()
    sidecar = tmp_path / "plurel-0" / "plurel_fast.json"
    raw = json.loads(sidecar.read_text())
    raw["plurel_fast_version"] = "0.0.1"
    sidecar.write_text(json.dumps(raw))
    with pytest.warns(UserWarning, match="0.0.1"):
        SyntheticDataset(0, cfg).get_db()


def test_concurrent_writer_wins_the_race(tmp_path, monkeypatch):
    cfg = small_config(tmp_path / "plurel-0")
    real = plurel_fast.generate

    def other_process_saves_first(seed, config, **kwargs):
        db = real(seed, config, **kwargs)
        real(seed, config, **kwargs).save(tmp_path / f"plurel-{seed}")
        return db

    monkeypatch.setattr(prb, "generate", other_process_saves_first)
    ds = SyntheticDataset(0, cfg)
    db = ds.get_db(upto_test_timestamp=False)
    _assert_relbench_dbs_equal(db, plurel_fast.generate(0, cfg).to_relbench())


def test_load_dataset_reads_our_cache_folder(tmp_path):
    for seed in (0, 3):
        ours = SyntheticDataset(seed, small_config(tmp_path / f"plurel-{seed}"))
        made = ours.make_db()
        theirs = relbench.load_dataset(str(ours.cache_path))
        assert theirs.val_timestamp == ours.val_timestamp
        assert theirs.test_timestamp == ours.test_timestamp
        _assert_relbench_dbs_equal(theirs.make_db(), made)
        _assert_relbench_dbs_equal(theirs.get_db(), ours.get_db())


# --------------------------------------------------------------------------- conversions

T0 = dt.datetime(2022, 5, 1)


def mixed_db() -> Database:
    """Strings, nullable floats and bools, a null foreign key, a keyless table."""
    users = Table(
        pl.DataFrame(
            {
                "row_idx": pl.Series(range(5), dtype=pl.Int64),
                "score": pl.Series([0.5, None, 2.0, float("nan"), -1.0], dtype=pl.Float64),
                "vip": pl.Series([True, False, True, True, False]),
                "tier": pl.Series(["a", None, "b", "c", "a"], dtype=pl.String),
            }
        ),
        pkey_col="row_idx",
    )
    events = Table(
        pl.DataFrame(
            {
                "row_idx": pl.Series(range(8), dtype=pl.Int64),
                "user": pl.Series([0, 1, None, 3, 4, 0, 1, 2], dtype=pl.Int64),
                "amount": pl.Series([1.0, 2.0, None, 4.0, 5.0, 6.0, None, 8.0]),
                "flag": pl.Series([True, None, False, True, False, True, True, False]),
                "date": pl.Series(
                    [T0 + dt.timedelta(days=i) for i in range(8)], dtype=pl.Datetime("ns")
                ),
            }
        ),
        {"user": "users"},
        "row_idx",
        "date",
    )
    log = Table(pl.DataFrame({"note": ["x", "y"], "n": [1, 2]}))
    return Database(
        {"users": users, "events": events, "log": log},
        val_timestamp=T0 + dt.timedelta(days=4),
        test_timestamp=T0 + dt.timedelta(days=6),
        name="mixed",
    )


def test_to_pandas_dtypes_match_relbench_loader(tmp_path):
    db = mixed_db()
    frames = db.to_pandas()
    assert list(frames) == ["users", "events", "log"]
    users, events = frames["users"], frames["events"]
    assert users["row_idx"].dtype == np.int64
    assert users["score"].dtype == np.float64
    assert np.isnan(users["score"].iloc[1]) and np.isnan(users["score"].iloc[3])
    assert users["vip"].dtype == np.bool_
    assert users["tier"].dtype == object
    assert events["user"].dtype == np.float64 and np.isnan(events["user"].iloc[2])
    assert events["date"].dtype == np.dtype("datetime64[ns]")
    # Exactly what RelBench's own loader makes of the saved folder.
    loaded = relbench.load_dataset(str(db.save(tmp_path / "mixed"))).make_db()
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(loaded.table_dict[name].df, frame, check_dtype=True)
    assert db.table_dict["users"].to_pandas().equals(users)


def test_to_pandas_is_zero_copy_and_isolated():
    db = mixed_db()
    table = db.table_dict["events"]
    frame = table.to_pandas()
    assert np.shares_memory(frame["row_idx"].to_numpy(), table.df["row_idx"].to_numpy())
    assert np.shares_memory(
        frame["date"].to_numpy().view(np.int64), table.df["date"].to_numpy().view(np.int64)
    )
    # RelBench writes into its frames (dangling keys → None); ours must not change.
    frame.loc[frame["row_idx"] >= 6, "row_idx"] = None
    frame.loc[0, "amount"] = 99.0
    assert db.table_dict["events"].df.equals(mixed_db().table_dict["events"].df, null_equal=True)


def test_to_relbench_roles():
    rdb = mixed_db().to_relbench()
    assert isinstance(rdb, RelBenchDatabase)
    events = rdb.table_dict["events"]
    assert isinstance(events, RelBenchTable)
    assert (events.pkey_col, events.time_col, events.fkey_col_to_pkey_table) == (
        "row_idx",
        "date",
        {"user": "users"},
    )
    assert rdb.table_dict["log"].pkey_col is None
    assert rdb.max_timestamp == pd.Timestamp(T0 + dt.timedelta(days=7))


def relbench_style_db() -> RelBenchDatabase:
    """As RelBench data looks in pandas: float foreign keys with NaN, microsecond
    times, object strings, a frame with a non-default index."""
    drivers = pd.DataFrame(
        {
            "driverId": np.arange(4, dtype=np.int64),
            "name": np.array(["ann", "bo", None, "cy"], dtype=object),
            "rating": [1.5, np.nan, 3.0, 4.25],
        }
    )
    results = pd.DataFrame(
        {
            "resultId": np.arange(6, dtype=np.int64),
            "driverId": [0.0, 1.0, np.nan, 3.0, 2.0, 0.0],
            "position": [1.0, 2.0, 3.0, np.nan, 1.0, 2.0],
            "won": [True, False, False, False, True, False],
            "date": pd.to_datetime(
                ["2001-01-01", "2001-02-01", "2001-03-01", "2001-04-01", "2001-05-01", "2001-06-01"]
            ).astype("datetime64[us]"),
        },
        index=np.arange(10, 16),
    )
    return RelBenchDatabase(
        {
            "drivers": RelBenchTable(drivers, {}, "driverId", None),
            "results": RelBenchTable(results, {"driverId": "drivers"}, "resultId", "date"),
        }
    )


def test_round_trip_from_relbench_to_relbench():
    source = relbench_style_db()
    ours = Database.from_relbench(source, "2001-03-15", "2001-04-15", name="f1-mini")
    assert ours.name == "f1-mini"
    assert ours.val_timestamp == dt.datetime(2001, 3, 15)
    results = ours.table_dict["results"]
    assert results.df.schema["driverId"] == pl.Int64  # float keys become integers
    assert results.df["driverId"].null_count() == 1
    assert results.df.schema["date"] == pl.Datetime("us")
    assert ours.table_dict["drivers"].df.schema["name"] == pl.String

    back = ours.to_relbench()
    assert list(back.table_dict) == list(source.table_dict)
    for name, src in source.table_dict.items():
        got = back.table_dict[name]
        assert (got.pkey_col, got.time_col, got.fkey_col_to_pkey_table) == (
            src.pkey_col,
            src.time_col,
            src.fkey_col_to_pkey_table,
        )
        expected = src.df.reset_index(drop=True)
        for col in expected.columns:
            # pandas 3 stores strings as `str`; RelBench's loader (and we) hand out object.
            if isinstance(expected[col].dtype, pd.StringDtype):
                expected[col] = expected[col].astype(object)
        pd.testing.assert_frame_equal(got.df, expected, check_dtype=True)


def test_round_trip_of_a_generated_database():
    db = plurel_fast.generate(0, small_config())
    rdb = db.to_relbench()
    again = Database.from_relbench(rdb, db.val_timestamp, db.test_timestamp, name=db.name, metadata=db.metadata)
    assert again.equals(db)
    _assert_relbench_dbs_equal(again.to_relbench(), rdb)


def test_from_relbench_dataset_then_save_in_our_layout(tmp_path):
    ds = SyntheticDataset(4, small_config(tmp_path / "cache" / "plurel-4"))
    ds.get_database()  # generates and saves the folder
    loaded = relbench.load_dataset(str(ds.cache_path))
    ours = Database.from_relbench(loaded)  # timestamps and name from the dataset
    assert ours.name == "plurel-4"
    assert pd.Timestamp(ours.val_timestamp) == ds.val_timestamp
    assert ours.equals(ds.get_database(), check_metadata=False)

    rb_only = Database.from_relbench(relbench_style_db(), T0, T0, name="f1-mini")
    out = rb_only.save(tmp_path / "f1-mini")
    assert Database.load(out).equals(rb_only)
    _assert_relbench_dbs_equal(
        relbench.load_dataset(str(out)).make_db(), rb_only.to_relbench()
    )
    assert Database.from_relbench(ds).equals(ds.get_database(), check_metadata=False)


def test_from_relbench_copies_unless_told_not_to():
    source = relbench_style_db()
    copied = Database.from_relbench(source, T0, T0)
    shared = Database.from_relbench(source, T0, T0, copy=False)
    src_ids = source.table_dict["drivers"].df["driverId"]
    assert not np.shares_memory(src_ids.to_numpy(), copied.table_dict["drivers"].df["driverId"].to_numpy())
    assert np.shares_memory(src_ids.to_numpy(), shared.table_dict["drivers"].df["driverId"].to_numpy())
    source.table_dict["drivers"].df.loc[0, "rating"] = 100.0
    assert copied.table_dict["drivers"].df["rating"][0] == 1.5


def test_from_relbench_errors_say_what_to_do():
    with pytest.raises(ValueError, match="val_timestamp= and test_timestamp="):
        Database.from_relbench(relbench_style_db())
    with pytest.raises(TypeError, match="relbench.base.Database"):
        Database.from_relbench({"t": pd.DataFrame()}, T0, T0)
    bad = relbench_style_db()
    bad.table_dict["results"].df["driverId"] = [0.5, 1.0, 2.0, 3.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="table 'results'.*'driverId'.*0.5"):
        Database.from_relbench(bad, T0, T0)
    bad = relbench_style_db()
    bad.table_dict["results"].df["date"] = ["2001-01-01"] * 6
    with pytest.raises(ValueError, match="table 'results'.*time column 'date'"):
        Database.from_relbench(bad, T0, T0)


def test_table_from_relbench():
    src = relbench_style_db().table_dict["results"]
    table = Table.from_relbench(src)
    assert (table.pkey_col, table.time_col, table.fkey_col_to_pkey_table) == (
        "resultId",
        "date",
        {"driverId": "drivers"},
    )
    assert table.feature_cols == ["position", "won"]
    rb = table.to_relbench()
    pd.testing.assert_frame_equal(rb.df, src.df.reset_index(drop=True))
