"""Database / Table and their Parquet + manifest sink (DESIGN §6, §8)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from plurel_fast.database import Database, Table

T0 = dt.datetime(2021, 3, 1)


def _dates(n: int, step: dt.timedelta = dt.timedelta(hours=6)) -> pl.Series:
    return pl.Series("date", [T0 + i * step for i in range(n)], dtype=pl.Datetime("ns"))


def make_db(n_users: int = 6, n_items: int = 4, n_events: int = 10, metadata=None) -> Database:
    users = Table(
        pl.DataFrame(
            {
                "row_idx": pl.Series(range(n_users), dtype=pl.Int64),
                "age": pl.Series([20.5 + i if i % 3 else None for i in range(n_users)], dtype=pl.Float64),
                "vip": pl.Series([i % 2 == 0 for i in range(n_users)], dtype=pl.Boolean),
                "tier": pl.Series([("gold", "silver", None)[i % 3] for i in range(n_users)], dtype=pl.String),
            }
        ),
        pkey_col="row_idx",
    )
    items = Table(
        pl.DataFrame(
            {
                "row_idx": pl.Series(range(n_items), dtype=pl.Int64),
                "price": pl.Series([1.25 * i for i in range(n_items)], dtype=pl.Float64),
            }
        ),
        {},
        "row_idx",
    )
    events = Table(
        pl.DataFrame(
            {
                "row_idx": pl.Series(range(n_events), dtype=pl.Int64),
                "user_id": pl.Series([None if i == 2 else i % n_users for i in range(n_events)], dtype=pl.Int64),
                "item_id": pl.Series([(3 * i) % n_items for i in range(n_events)], dtype=pl.Int64),
                "amount": pl.Series([None if i % 4 == 1 else 0.5 * i - 2 for i in range(n_events)], dtype=pl.Float64),
                "returned": pl.Series([i % 3 == 0 for i in range(n_events)], dtype=pl.Boolean),
                "date": _dates(n_events),
            }
        ),
        {"user_id": "users", "item_id": "items"},
        "row_idx",
        "date",
    )
    return Database(
        {"users": users, "items": items, "events": events},
        val_timestamp=T0 + dt.timedelta(hours=6 * (n_events // 2)),
        test_timestamp=T0 + dt.timedelta(hours=6 * (n_events - 3)),
        name="plurel-7",
        metadata=metadata if metadata is not None else {"seed": 7, "config_hash": "abc123", "version": "0.1.0"},
    )


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- Table


def test_table_roles_and_tokens():
    db = make_db()
    events = db.table_dict["events"]
    assert events.feature_cols == ["amount", "returned"]
    assert len(events) == 10
    # amount: 10 rows, nulls at i = 1, 5, 9; returned: 10; date: 10. Keys excluded.
    assert events.num_tokens == 7 + 10 + 10
    users = db.table_dict["users"]
    # age null at i = 0, 3; vip 6; tier null at i = 2, 5.
    assert users.num_tokens == 4 + 6 + 4
    assert db.table_dict["items"].num_tokens == 4
    assert db.num_tokens == 27 + 14 + 4
    assert db.num_rows == 6 + 4 + 10


def test_nan_is_a_token_null_is_not():
    t = Table(pl.DataFrame({"x": [1.0, float("nan"), None]}))
    assert t.num_tokens == 2
    assert t.feature_cols == ["x"]


def test_repr_is_short():
    db = make_db()
    assert repr(db) == "Database('plurel-7': users=6, items=4, events=10; tokens=45)"
    assert "time_col='date'" in repr(db.table_dict["events"])
    assert "\n" not in repr(db.table_dict["events"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pkey_col="id"), "primary key column 'id' is not in the frame"),
        (dict(fkey_col_to_pkey_table={"u": "users"}), "foreign key column 'u' is not in the frame"),
        (dict(time_col="when"), "time column 'when' is not in the frame"),
        (dict(pkey_col="name"), "primary key column 'name' must hold integers"),
        (dict(fkey_col_to_pkey_table={"x": "users"}), "foreign key column 'x' must hold integers"),
        (dict(time_col="x"), "time column 'x' must be a polars Datetime"),
        (dict(pkey_col="k", fkey_col_to_pkey_table={"k": "t"}), "both the primary key and a foreign key"),
    ],
)
def test_table_validation(kwargs, message):
    df = pl.DataFrame({"k": [0, 1], "x": [0.5, 1.5], "name": ["a", "b"], "date": _dates(2)})
    with pytest.raises(ValueError, match=message):
        Table(df, **kwargs)


def test_table_needs_polars():
    with pytest.raises(TypeError, match="polars.from_pandas"):
        Table(pd.DataFrame({"a": [1]}))


# --------------------------------------------------------------------------- Database


def test_database_validation():
    t = Table(pl.DataFrame({"row_idx": [0, 1], "p": [0, 1]}), {"p": "parents"}, "row_idx")
    with pytest.raises(ValueError, match="references table 'parents'"):
        Database({"kids": t}, T0, T0)
    with pytest.raises(ValueError, match="not usable as a file name"):
        Database({"a/b": Table(pl.DataFrame({"x": [1]}))}, T0, T0)
    with pytest.raises(ValueError, match="must not be after"):
        Database({}, T0 + dt.timedelta(days=1), T0)
    with pytest.raises(ValueError, match="JSON-able"):
        Database({}, T0, T0, metadata={"bad": float("nan")})
    with pytest.raises(ValueError, match="time zone"):
        Database({}, "2021-03-01T00:00:00+02:00", T0 + dt.timedelta(days=1))


@pytest.mark.parametrize(
    "stamp",
    [
        T0,
        pd.Timestamp(T0),
        np.datetime64("2021-03-01T00:00:00.000000000"),
        "2021-03-01",
        "2021-03-01T00:00:00",
        dt.date(2021, 3, 1),
    ],
)
def test_timestamps_are_normalised(stamp):
    db = Database({}, stamp, stamp)
    assert type(db.val_timestamp) is dt.datetime
    assert db.val_timestamp == T0 == db.test_timestamp


def test_equals_sees_dtype_value_and_role_changes():
    a, b = make_db(), make_db()
    assert a == b and a.equals(b)
    b.table_dict["items"] = Table(
        b.table_dict["items"].df.with_columns(pl.col("price").cast(pl.Float32)), {}, "row_idx"
    )
    assert a != b
    b = make_db()
    b.table_dict["users"].df = b.table_dict["users"].df.with_columns(
        pl.when(pl.col("row_idx") == 1).then(None).otherwise(pl.col("vip")).alias("vip")
    )
    assert a != b
    b = make_db()
    b.table_dict["events"].time_col = None
    assert a != b
    b = make_db(metadata={"seed": 8})
    assert a != b and a.equals(b, check_metadata=False)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    db = make_db(metadata={"seed": 7, "config": {"tables": [1, 2], "name": "x"}, "version": "0.1.0"})
    out = db.save(tmp_path / "plurel-7")
    assert out == tmp_path / "plurel-7"
    assert sorted(p.name for p in out.iterdir()) == [
        "db", "manifest.yaml", "plurel_fast.json", "scores.json", "tasks"
    ]
    assert sorted(p.name for p in (out / "tasks").iterdir()) == [
        "events-amount", "events-returned"
    ]
    assert sorted(p.name for p in (out / "db").iterdir()) == [
        "events.parquet",
        "items.parquet",
        "users.parquet",
    ]
    back = Database.load(out)
    assert back == db
    assert list(back.table_dict) == ["users", "items", "events"]
    assert back.metadata == {"seed": 7, "config": {"tables": [1, 2], "name": "x"}, "version": "0.1.0"}
    assert back.val_timestamp == db.val_timestamp and back.test_timestamp == db.test_timestamp
    assert back.table_dict["events"].df.schema["date"] == pl.Datetime("ns")
    assert back.table_dict["users"].df.schema["tier"] == pl.String
    assert back.num_tokens == db.num_tokens


def test_manifest_matches_relbench_schema(tmp_path):
    from relbench.manifest import DatasetManifest, validate_dataset_manifest

    db = make_db()
    out = db.save(tmp_path / "d")
    raw = yaml.safe_load((out / "manifest.yaml").read_text())
    manifest = DatasetManifest.load(out / "manifest.yaml")
    validate_dataset_manifest(manifest, out / "db")
    # Exactly what relbench itself would write (relational-transformer refuses any
    # other key); our provenance is in the sidecar.
    assert raw == manifest.to_dict()
    assert json.loads((out / "plurel_fast.json").read_text()) == db.metadata
    assert raw["name"] == "d"  # the folder's name
    assert manifest.tables["events"].fkeys == {"user_id": "users", "item_id": "items"}
    assert manifest.tables["users"].time_col is None
    assert pd.Timestamp(manifest.val_timestamp) == pd.Timestamp(db.val_timestamp)


@pytest.mark.skipif(getattr(yaml, "CSafeDumper", None) is None, reason="PyYAML without libyaml")
def test_manifest_text_is_the_same_with_and_without_libyaml(monkeypatch):
    from plurel_fast.io import parquet as io_parquet
    from plurel_fast.pretraining import pretraining_targets, task_manifest

    def pure(data):  # PyYAML's own emitter, all a manifest was ever written with
        return yaml.dump(data, Dumper=yaml.SafeDumper, sort_keys=False,
                         default_flow_style=False, allow_unicode=True, width=4096)

    def with_names(text):
        return {"name": text, "manifest_version": 1, "val_timestamp": "2020-01-01",
                "tables": {text: {"pkey": text, "time_col": None, "fkeys": {text: text}}}}

    db = make_db()
    generated = [io_parquet.manifest_dict(db, "plurel-7")]
    generated += [task_manifest(t, "date") for t in pretraining_targets(db)]
    # ASCII names YAML must quote or may not fold (SQL schemas name tables and columns)
    quoted = ["null", "Yes", "off", "~", "1", "1.5", "0x1f", "1e3", ".inf", "2020-01-01", "12:30",
              "-", "- a", "a: b", "a:b", "#x", "a #b", "x#", " lead", "trail ", "'q'", '"d"',
              "@a", "`b", "%p", "!t", "&a", "*a", "|", ">", "? a", "[", "{", "a,b", "...",
              "---", "<<", "a\\b", "table_0", "foreign_row_1", "x " * 3000]
    fast = generated + [with_names(t) for t in quoted]
    for data in fast:
        assert io_parquet._emits_alike(data)
        assert yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=4096) == pure(data)
    # the rest goes through PyYAML's emitter (the C one escapes emoji and writes some
    # control characters and empty keys otherwise)
    other = [with_names(t) for t in ("données", "emoji😀", "cr\rx", "\x85", "tab\tx", "")]
    for data in other:
        assert not io_parquet._emits_alike(data)
    for data in fast + other:
        assert io_parquet._yaml_text(data) == pure(data)
        monkeypatch.setattr(io_parquet, "_C_DUMPER", None)  # PyYAML built without libyaml
        assert io_parquet._yaml_text(data) == pure(data)
        monkeypatch.undo()


def test_relbench_load_dataset_reads_it(tmp_path):
    import relbench

    db = make_db()
    out = db.save(tmp_path / "d")
    ds = relbench.load_dataset(str(out))
    assert ds.val_timestamp == pd.Timestamp(db.val_timestamp)
    assert ds.test_timestamp == pd.Timestamp(db.test_timestamp)

    rdb = ds.get_db()  # runs upto(test_timestamp) and validate_and_correct_db
    assert list(rdb.table_dict) == list(db.table_dict)
    for name, ours in db.table_dict.items():
        theirs = rdb.table_dict[name]
        assert theirs.pkey_col == ours.pkey_col
        assert theirs.time_col == ours.time_col
        assert theirs.fkey_col_to_pkey_table == ours.fkey_col_to_pkey_table
        df = ours.df
        if ours.time_col is not None:
            df = df.filter(pl.col(ours.time_col) <= db.test_timestamp)
        expected = df.to_pandas()
        assert len(theirs.df) == len(expected)
        # pandas widens nullable ints to float and strings to object: compare values.
        pd.testing.assert_frame_equal(
            theirs.df.reset_index(drop=True), expected, check_dtype=False
        )
    assert rdb.table_dict["events"].df["date"].dtype == np.dtype("datetime64[ns]")

    assert len(rdb.table_dict["events"].df) < len(db.table_dict["events"])
    full = ds.get_db(upto_test_timestamp=False)
    assert len(full.table_dict["events"].df) == len(db.table_dict["events"])


def _legacy_relbench_table_load(path: Path) -> dict:
    # The body of relbench 1.x/2.x `Table.load` (snap-stanford/relbench,
    # relbench/base/table.py): pyarrow read, to_pandas, JSON-decode three schema keys.
    table = pq.read_table(path)
    df = table.to_pandas()
    metadata = {
        key.decode("utf-8"): json.loads(value.decode("utf-8"))
        for key, value in table.schema.metadata.items()
        if key in [b"fkey_col_to_pkey_table", b"pkey_col", b"time_col"]
    }
    return dict(df=df, **metadata)


def test_legacy_schema_metadata(tmp_path):
    db = make_db()
    out = db.save(tmp_path / "d")
    for name, ours in db.table_dict.items():
        file = out / "db" / f"{name}.parquet"
        meta = pq.read_schema(file).metadata
        assert meta[b"pkey_col"] == json.dumps(ours.pkey_col).encode()
        assert meta[b"time_col"] == json.dumps(ours.time_col).encode()
        assert json.loads(meta[b"fkey_col_to_pkey_table"]) == ours.fkey_col_to_pkey_table
        legacy = _legacy_relbench_table_load(file)
        assert legacy["pkey_col"] == ours.pkey_col
        assert legacy["time_col"] == ours.time_col
        assert legacy["fkey_col_to_pkey_table"] == ours.fkey_col_to_pkey_table
        pd.testing.assert_frame_equal(legacy["df"], ours.df.to_pandas(), check_dtype=False)
    assert pq.read_schema(out / "db" / "items.parquet").metadata[b"time_col"] == b"null"
    assert pq.read_schema(out / "db" / "items.parquet").metadata[b"fkey_col_to_pkey_table"] == b"{}"


def test_column_types_on_disk(tmp_path):
    out = make_db().save(tmp_path / "d")
    schema = pq.read_schema(out / "db" / "events.parquet")
    assert schema.field("row_idx").type == pa.int64()
    assert schema.field("user_id").type == pa.int64()
    assert schema.field("amount").type == pa.float64()
    assert schema.field("returned").type == pa.bool_()
    assert schema.field("date").type == pa.timestamp("ns")
    assert pq.read_schema(out / "db" / "users.parquet").field("tier").type == pa.string()
    assert pq.ParquetFile(out / "db" / "events.parquet").metadata.row_group(0).column(0).compression == "ZSTD"


def test_same_database_same_bytes(tmp_path):
    # Same folder name (the manifest carries it) in two places; the sidecar differs
    # only where it records timings, which a hand-made database has none of.
    a = make_db().save(tmp_path / "a" / "db")
    b = make_db().save(tmp_path / "b" / "db")
    assert _file_hashes(a) == _file_hashes(b)


def test_bytes_do_not_depend_on_chunking(tmp_path):
    rng = np.random.default_rng(0)
    n = 50_000
    df = pl.DataFrame(
        {
            "row_idx": np.arange(n),
            "x": rng.normal(size=n),
            "s": pl.Series(rng.integers(0, 30, n)).cast(pl.String),
            "date": pl.Series(np.datetime64("2020-01-01", "ns") + np.arange(n) * np.timedelta64(60, "s")),
        }
    )
    parts = [df[0:777], df[777:20_001], df[20_001:]]
    chunked = pl.concat(parts, rechunk=False)
    assert chunked.n_chunks() > 1
    a = Database({"t": Table(df, None, "row_idx", "date")}, T0, T0).save(tmp_path / "a" / "d")
    b = Database({"t": Table(chunked, None, "row_idx", "date")}, T0, T0).save(tmp_path / "b" / "d")
    assert _file_hashes(a) == _file_hashes(b)


def test_existing_target_without_overwrite(tmp_path):
    target = tmp_path / "d"
    make_db().save(target)
    before = _file_hashes(target)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_db(n_events=12).save(target)
    assert _file_hashes(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_overwrite_replaces(tmp_path):
    target = tmp_path / "plurel-7"
    make_db().save(target)
    new = make_db(n_events=12, metadata={"seed": 9})
    assert new.save(target, overwrite=True) == target
    assert Database.load(target) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plurel-7"]  # no temp or old copies


def test_overwrite_refuses_foreign_folders(tmp_path):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(FileExistsError, match="does not look like a saved database"):
        make_db().save(target, overwrite=True)
    assert (target / "cat.jpg").read_bytes() == b"meow"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        make_db().save(tmp_path / "file", overwrite=True)
    empty = tmp_path / "plurel-7"
    empty.mkdir()
    make_db().save(empty, overwrite=True)
    assert Database.load(empty) == make_db()


@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch, existing):
    target = tmp_path / "d"
    if existing:
        make_db(n_events=12).save(target)
        before = _file_hashes(target)
    real = pq.write_table
    calls = []

    def flaky(table, where, **kwargs):
        calls.append(where)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", flaky)
    with pytest.raises(OSError, match="injected"):
        make_db().save(target, overwrite=True)
    assert len(calls) == 2
    if existing:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
        assert _file_hashes(target) == before
    else:
        assert list(tmp_path.iterdir()) == []


def test_save_creates_parents_and_accepts_str(tmp_path):
    out = make_db().save(str(tmp_path / "a" / "b" / "plurel-7"))
    assert Database.load(str(out)) == make_db()


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Database.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no manifest.yaml"):
        Database.load(tmp_path / "empty")
    out = make_db().save(tmp_path / "d")
    missing = out / "db" / "items.parquet"
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=f"table 'items'.*{missing}"):
        Database.load(out)


def test_load_plain_relbench_folder(tmp_path):
    # A folder without our sidecar (as relbench writes it) loads with empty metadata;
    # an unquoted YAML date is accepted too.
    out = make_db().save(tmp_path / "d")
    os.remove(out / "plurel_fast.json")
    text = (out / "manifest.yaml").read_text().replace("'2021-03-02T06:00:00'", "2021-03-02")
    (out / "manifest.yaml").write_text(text)
    back = Database.load(out)
    assert back.metadata == {}
    assert back.val_timestamp == dt.datetime(2021, 3, 2)


def test_load_folder_saved_before_the_sidecar(tmp_path):
    # Earlier versions kept the metadata in the manifest's plurel_fast block.
    db = make_db()
    out = db.save(tmp_path / "plurel-7")
    os.remove(out / "plurel_fast.json")
    raw = yaml.safe_load((out / "manifest.yaml").read_text())
    raw["plurel_fast"] = db.metadata
    (out / "manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert Database.load(out) == db


def test_midnight_split_times_are_dates_in_the_manifest(tmp_path):
    db = make_db()
    db.val_timestamp, db.test_timestamp = dt.datetime(2020, 3, 1), dt.datetime(2020, 9, 19)
    out = db.save(tmp_path / "plurel-7")
    text = (out / "manifest.yaml").read_text()
    assert "val_timestamp: '2020-03-01'\n" in text and "test_timestamp: '2020-09-19'\n" in text
    assert Database.load(out) == db


def test_sidecar_keeps_timings_out_of_equality(tmp_path):
    db = make_db()
    db.timings = {"tables_seconds": {"users": 0.5}}
    out = db.save(tmp_path / "plurel-7")
    back = Database.load(out)
    assert back.timings == db.timings and back == make_db()
    assert json.loads((out / "plurel_fast.json").read_text())["timings"] == db.timings
    assert "timings" not in back.metadata


def test_pretraining_false_writes_tables_only(tmp_path):
    out = make_db().save(tmp_path / "plurel-7", pretraining=False)
    assert sorted(p.name for p in out.iterdir()) == ["db", "manifest.yaml", "plurel_fast.json"]


def test_empty_and_keyless_tables_round_trip(tmp_path):
    empty = Table(
        pl.DataFrame(
            {"row_idx": pl.Series([], dtype=pl.Int64), "s": pl.Series([], dtype=pl.String), "date": _dates(0)}
        ),
        None,
        "row_idx",
        "date",
    )
    loose = Table(pl.DataFrame({"v": [True, None, False]}))
    db = Database({"empty": empty, "loose": loose}, T0, T0)
    back = Database.load(db.save(tmp_path / "plurel-fast"))
    assert back == db
    assert back.table_dict["loose"].pkey_col is None


def test_failed_swap_restores_the_old_folder(tmp_path, monkeypatch):
    target = tmp_path / "d"
    make_db(n_events=12).save(target)
    before = _file_hashes(target)
    from plurel_fast.io import parquet as io_parquet

    def rename(src, dst):
        raise OSError("rename failed (injected)")

    monkeypatch.setattr(io_parquet, "_rename_noreplace", rename)
    with pytest.raises(OSError, match="injected"):
        make_db().save(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert _file_hashes(target) == before
