"""No lost databases: concurrent saves, killed saves, bad destinations, tampered folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

import plurel_fast
from plurel_fast import Database
from plurel_fast.cli import main
from plurel_fast.io import parquet as io_parquet

from conftest import SMALL


@pytest.fixture(scope="module")
def dbs():
    return plurel_fast.generate(1, SMALL), plurel_fast.generate(2, SMALL)


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ durability


@pytest.mark.parametrize("stream", [False, True])
def test_every_file_and_folder_is_synced_before_the_folder_is_published(tmp_path, monkeypatch,
                                                                        stream):
    synced, published = set(), []
    real_fsync, real_rename = os.fsync, io_parquet._rename_noreplace

    def fsync(fd):
        real_fsync(fd)
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))

    def rename(src, dst):
        written = [src, *Path(src).rglob("*")]
        assert len(written) > 10
        for path in written:
            st = os.stat(path)
            assert (st.st_dev, st.st_ino) in synced, path
        published.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(io_parquet, "_rename_noreplace", rename)
    if stream:  # tables in row groups (written through a spill folder, removed first)
        monkeypatch.setitem(io_parquet.PARQUET_OPTIONS, "row_group_size", 300)
    plurel_fast.generate_to(1, SMALL, tmp_path / "plurel-1", stream=stream)
    assert published == [tmp_path / "plurel-1"]


# ------------------------------------------------------------------ concurrent writers


def test_folder_made_by_hand_mid_save_is_kept(tmp_path, dbs, monkeypatch):
    target = tmp_path / "plurel-1"
    real = io_parquet._write_contents

    def user_creates_it_meanwhile(*args):
        real(*args)
        target.mkdir()
        (target / "notes.txt").write_text("mine")

    monkeypatch.setattr(io_parquet, "_write_contents", user_creates_it_meanwhile)
    with pytest.raises(FileExistsError, match="another process"):
        dbs[0].save(target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert _hidden(tmp_path) == []


def test_an_empty_folder_made_mid_save_is_not_replaced(tmp_path, dbs, monkeypatch):
    target = tmp_path / "plurel-1"
    real = io_parquet._write_contents

    def user_creates_it_meanwhile(*args):
        real(*args)
        target.mkdir()

    monkeypatch.setattr(io_parquet, "_write_contents", user_creates_it_meanwhile)
    with pytest.raises(FileExistsError):
        dbs[0].save(target)
    assert target.is_dir() and list(target.iterdir()) == []


def test_second_of_two_overwriting_saves_fails_and_the_first_survives(tmp_path, dbs, monkeypatch):
    a, b = dbs
    target = tmp_path / "plurel-x"
    a.save(target)
    real = io_parquet._write_contents

    def another_process_replaces_it_meanwhile(*args):
        real(*args)
        monkeypatch.setattr(io_parquet, "_write_contents", real)
        a.save(target, overwrite=True)

    monkeypatch.setattr(io_parquet, "_write_contents", another_process_replaces_it_meanwhile)
    with pytest.raises(FileExistsError, match="another process"):
        b.save(target, overwrite=True)
    back = Database.load(target)
    assert back.metadata["seed"] == a.metadata["seed"]
    assert _hidden(tmp_path) == []


_RACE = """
import sys, time
from pathlib import Path
import plurel_fast
from conftest import SMALL
seed, target, go = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
db = plurel_fast.generate(seed, SMALL)
while not go.exists():
    time.sleep(0.001)
try:
    db.save(target)
except FileExistsError as e:
    print("lost:", e)
    sys.exit(3)
print("won")
"""


def test_two_processes_saving_one_folder_exactly_one_wins(tmp_path):
    target, go = tmp_path / "out" / "plurel-x", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent))
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(seed), str(target), str(go)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    time.sleep(3)  # both have generated and are waiting
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    winner = [seed for seed, p in zip((1, 2), procs) if p.returncode == 0][0]
    assert Database.load(target).metadata["seed"] == winner
    assert _hidden(target.parent) == []


# ------------------------------------------------------------------ killed saves


def test_stale_temporaries_of_dead_saves_are_removed(tmp_path, dbs):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = io_parquet._hostname()
    stale = tmp_path / f".plurel-1.tmp-{host}-{dead.pid}-0123abcd"
    (stale / "db").mkdir(parents=True)
    mine = tmp_path / f".plurel-1.tmp-{host}-{os.getpid()}-0123abcd"  # a live owner
    mine.mkdir()
    elsewhere = tmp_path / f".plurel-1.tmp-otherhost-{dead.pid}-0123abcd"  # can't check
    elsewhere.mkdir()
    dbs[0].save(tmp_path / "plurel-1")
    assert not stale.exists() and mine.exists() and elsewhere.exists()


_KILLED_SAVE = """
import sys, time
from pathlib import Path
from plurel_fast.io import parquet as io_parquet
from plurel_fast.cli import main
real = io_parquet.write_pretraining_files
def slow(*args):
    real(*args)
    Path(sys.argv[2]).touch()
    time.sleep(60)
io_parquet.write_pretraining_files = slow
sys.exit(main(["generate", "--seed", "1", "--out", sys.argv[1], "--config", sys.argv[3], "--quiet"]))
"""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_killed_save_leaves_nothing_after_the_next_save(tmp_path, dbs, how):
    config = SMALL.save(tmp_path / "small.toml")
    target, ready = tmp_path / "out" / "plurel-1", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(target), str(ready), str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert any(".tmp-" in n for n in _hidden(target.parent))
    proc.send_signal(getattr(signal, how))
    proc.communicate(timeout=60)
    assert not target.exists()
    if how == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM
        assert _hidden(target.parent) == []  # cleaned up by the process itself
    dbs[0].save(target)  # the next save removes what a SIGKILL left
    assert _hidden(target.parent) == []
    assert Database.load(target).metadata["seed"] == 1


# ------------------------------------------------------------------ bad destinations


def test_unwritable_destinations_fail_before_generating(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(sys.modules["plurel_fast.generate"], "generate",
                        lambda *a, **k: calls.append(a))
    (tmp_path / "file").write_text("x")
    cases = {
        str(tmp_path / "file" / "db"): "is a file",
        "/sys/plurel-out": "not writable",
        "/proc/plurel/out": "not writable",
    }
    for out, message in cases.items():
        assert main(["generate", "--seed", "0", "--out", out, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert calls == []


def test_full_disk_mid_write_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    config = SMALL.save(tmp_path / "small.toml")
    out = tmp_path / "out" / "db"
    assert main(["generate", "--seed", "0", "--out", str(out), "--config", str(config),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_overwrite_of_a_symlink_leaves_no_old_link(tmp_path, dbs):
    real = dbs[0].save(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    dbs[1].save(link, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    assert not link.is_symlink() and Database.load(link).metadata["seed"] == 2
    assert Database.load(real).metadata["seed"] == 1  # the link's target is untouched


# ------------------------------------------------------------------ tampered folders


def _tamper(folder: Path, table: str, column: str, values) -> None:
    file = folder / "db" / f"{table}.parquet"
    df = pl.read_parquet(file)
    df = df.with_columns(pl.Series(column, values, dtype=df.schema[column]))
    df.write_parquet(file)


def test_load_rejects_broken_keys_naming_table_and_column(tmp_path, dbs):
    db = dbs[0]
    child = next(n for n, t in db.table_dict.items() if t.fkey_col_to_pkey_table)
    fk, parent = next(iter(db.table_dict[child].fkey_col_to_pkey_table.items()))
    n_child, n_parent = len(db.table_dict[child]), len(db.table_dict[parent])
    cases = {
        "negative": (child, fk, [-1] + [0] * (n_child - 1), "negative"),
        "out of range": (child, fk, [n_parent] + [0] * (n_child - 1), "parent does not have"),
        "duplicate pkey": (parent, "row_idx", [0] * n_parent, "duplicates"),
        "null pkey": (parent, "row_idx", [None] + list(range(1, n_parent)), "nulls"),
    }
    for i, (table, column, values, message) in enumerate(cases.values()):
        folder = db.save(tmp_path / f"case{i}")
        _tamper(folder, table, column, values)
        with pytest.raises(ValueError, match=f"{message}") as err:
            Database.load(folder)
        assert repr(table) in str(err.value) and repr(column) in str(err.value)
    # A missing reference (null foreign key) is allowed: RelBench datasets hold them.
    folder = db.save(tmp_path / "nulls")
    _tamper(folder, child, fk, [None] + [0] * (n_child - 1))
    assert Database.load(folder).table_dict[child].df[fk].null_count() == 1


def test_load_rejects_an_unsorted_keyless_time_table(tmp_path):
    import datetime as dt

    from plurel_fast import Table

    times = [dt.datetime(2020, 1, d) for d in (1, 3, 2)]
    db = Database({"events": Table(pl.DataFrame({"t": times, "x": [1.0, 2.0, 3.0]}),
                                   time_col="t")}, times[0], times[1])
    folder = db.save(tmp_path / "events")
    with pytest.raises(ValueError, match="'events' has no primary key and its time column 't' is not sorted"):
        Database.load(folder)
    keyed = Database({"events": Table(pl.DataFrame({"id": [0, 1, 2], "t": times}), pkey_col="id",
                                      time_col="t")}, times[0], times[1])
    keyed.save(tmp_path / "keyed")
    assert len(Database.load(tmp_path / "keyed").table_dict["events"]) == 3  # allowed with a key


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, dbs):
    folder = dbs[0].save(tmp_path / "bomb")
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join(['*a%d' % (i - 1)] * 9)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(manifest, sort_keys=False)
    (folder / "manifest.yaml").write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="aliases are not allowed"):
        Database.load(folder)
    assert time.perf_counter() - t0 < 1.0
    (folder / "manifest.yaml").write_text("x" * (io_parquet.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(ValueError, match="at most"):
        Database.load(folder)


def test_check_destination_is_reusable(tmp_path):
    io_parquet.check_destination(tmp_path / "a" / "b" / "c")  # nothing there yet: fine
    assert not (tmp_path / "a").exists()  # and nothing made
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("k")
    with pytest.raises(FileExistsError, match="already exists"):
        io_parquet.check_destination(tmp_path / "x")
    with pytest.raises(FileExistsError, match="does not look like a saved database"):
        io_parquet.check_destination(tmp_path / "x", overwrite=True)
