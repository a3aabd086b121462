"""`generate_to`: a database written straight to its folder, large tables in Parquet
row groups (DESIGN §6.1), byte for byte the folder `generate(...).save(...)` writes.

Default tables have a few thousand rows, so the tests shrink the row group (the unit
of streaming) to a few hundred rows: every table of more than one row group then takes
the streamed path, with its spill file, chunked whole-column steps and row-group writer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from conftest import SMALL
from plurel_fast import Choices, Config, DatabaseParams
from plurel_fast.generate import generate
from plurel_fast.io import parquet as io_parquet
from plurel_fast.stream import generate_to

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

MID = Config(database_params=DatabaseParams(
    num_tables_choices=Choices("range", [3, 7]),
    num_rows_entity_table_choices=Choices("range", [200, 800]),
    num_rows_activity_table_choices=Choices("range", [800, 2500]),
))
"""Tables of a few hundred to a few thousand rows: several row groups of 300 rows."""


def folder_digests(root: Path) -> dict:
    """sha256 of every file under ``root``; the sidecar without its seconds."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == io_parquet.SIDECAR_FILE:
                record = json.loads(data)
                record.pop("timings", None)
                data = json.dumps(record, sort_keys=True).encode()
            out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture
def row_groups(monkeypatch):
    def set_rows(rows: int) -> None:
        monkeypatch.setitem(io_parquet.PARQUET_OPTIONS, "row_group_size", rows)

    return set_rows


def _both(tmp_path, seed, config, chunk_rows, **kw):
    generate(seed, config, chunk_rows=chunk_rows).save(tmp_path / "mem" / "db", **kw)
    saved = generate_to(seed, config, tmp_path / "st" / "db", chunk_rows=chunk_rows,
                        stream=True, **kw)
    return folder_digests(tmp_path / "mem" / "db"), folder_digests(tmp_path / "st" / "db"), saved


@pytest.mark.parametrize("config,seed,rows,chunk_rows", [
    (None, 0, 1000, 65_536), (MID, 0, 300, 333), (MID, 8, 256, 4096), (MID, 9, 700, 1000),
    (MID, 10, 300, 250),
])
def test_streamed_folder_equals_saved_generate(tmp_path, row_groups, config, seed, rows,
                                               chunk_rows):
    row_groups(rows)
    mem, st, saved = _both(tmp_path, seed, config, chunk_rows)
    assert mem == st
    assert saved.streamed
    db = generate(seed, config)
    assert saved.num_rows == db.num_rows and saved.num_tokens == db.num_tokens
    assert {t: r for t, (r, _) in saved.tables.items()} == {
        t: len(x) for t, x in db.table_dict.items()}


def test_streamed_row_groups_are_bounded(tmp_path, row_groups):
    row_groups(500)
    saved = generate_to(10, MID, tmp_path / "db", stream=True)
    multi = 0
    for file in (tmp_path / "db" / "db").glob("*.parquet"):
        meta = pq.ParquetFile(file).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert all(0 < s <= 500 for s in sizes), (file.name, sizes)
        multi += len(sizes) > 1
    assert multi >= 2  # several tables really went through the row-group writer
    assert not any(p.name == ".spill" for p in (tmp_path / "db").rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # no temporaries left
    assert saved.path == tmp_path / "db"


def test_streamed_sql_schema(tmp_path, row_groups, monkeypatch):
    """Int64 and second-date columns (their offsets rank the whole column), enums,
    NOT NULL columns."""
    row_groups(300)
    calls = _count_calls(monkeypatch, "_date_rank_files", "_categorical_plans")
    config = Config(schema_file=str(EXAMPLES / "shop.sql"))
    for seed in (0, 3):
        mem, st, _ = _both(tmp_path / str(seed), seed, config, 1000)
        assert mem == st
    assert calls["_date_rank_files"] > 0 and calls["_categorical_plans"] > 0


@pytest.mark.parametrize("preset_seed", [1])
def test_streamed_v1_preset_and_no_pretraining_files(tmp_path, row_groups, preset_seed):
    row_groups(400)
    config = Config.preset("v1.0.0")
    mem, st, _ = _both(tmp_path, preset_seed, config, 2048, pretraining=False)
    assert any(k.startswith("db/") for k in st)
    assert mem == st
    assert not any(k.startswith("tasks") or k == "scores.json" for k in st)


def test_small_database_takes_the_in_memory_path(tmp_path):
    saved = generate_to(3, SMALL, tmp_path / "db")
    assert not saved.streamed
    generate(3, SMALL).save(tmp_path / "ref" / "db")
    assert folder_digests(tmp_path / "db") == folder_digests(tmp_path / "ref" / "db")


def test_failure_leaves_nothing(tmp_path, row_groups):
    row_groups(500)

    def boom(table, done, total):
        if done == 2:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        generate_to(10, MID, tmp_path / "db", stream=True, on_table=boom)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_before_work(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_to(0, SMALL, tmp_path / "db")
    assert (tmp_path / "db" / "keep.txt").exists()


@pytest.mark.parametrize("transform", ["identity", "rank_uniform", "log", "sqrt", "standardize"])
def test_streamed_transforms_one_at_a_time(tmp_path, row_groups, monkeypatch, transform):
    """Every float column under one transform, and the lazy propagation mode (quantized
    categorical columns): each whole-column step of the streamed path meets many columns
    (counted, so the test fails if a step stops being reached)."""
    row_groups(300)
    calls = _count_calls(monkeypatch, "quantize_with", "null_threshold", "_rank_file",
                         "_standardize_params")
    db_params = msgspec.structs.replace(
        MID.database_params, col_transform_choices=Choices("set", [transform]))
    scm_params = msgspec.structs.replace(
        MID.scm_params, propagation_mode_choices=Choices("set", ["type_lazy"]))
    config = msgspec.structs.replace(MID, database_params=db_params, scm_params=scm_params)
    mem, st, saved = _both(tmp_path, 11, config, 512)
    assert saved.streamed and mem == st
    assert calls["quantize_with"] > 0 and calls["null_threshold"] > 0
    assert (calls["_rank_file"] > 0) == (transform == "rank_uniform")
    assert (calls["_standardize_params"] > 0) == (transform == "standardize")


def _count_calls(monkeypatch, *names) -> dict:
    import plurel_fast.stream as stream

    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(stream, name)

        def counted(*args, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(stream, name, counted)
    return calls


def test_streamed_constant_and_null_edge_cases(tmp_path, row_groups):
    """Null shares of 0 and 1 (no null rows; every row null) and standardized constant
    columns take their own branches."""
    row_groups(300)
    for perc in (0.0, 0.9):
        db_params = msgspec.structs.replace(
            MID.database_params,
            column_nan_perc_choices=Choices("range", [perc, perc]),
            col_transform_choices=Choices("set", ["standardize", "rank_uniform"]))
        config = msgspec.structs.replace(MID, database_params=db_params)
        mem, st, _ = _both(tmp_path / str(perc), 10, config, 700)
        assert mem == st
