"""`plurel-fast corpus`: worker processes, the index, resume, shards, token budgets,
and RT's preprocessor, on a small config (3-6 tables of 40-400 rows).

Corpus runs go through a subprocess (`python -m plurel_fast.cli corpus ...`), as a user
runs them: spawned workers, a process group the resume test can kill.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import relbench
from rt_consumer import _extract

from plurel_fast import Choices, Config, Database, DatabaseParams
from plurel_fast.cli import main
from plurel_fast.corpus import INDEX_FIELDS, corpus_seeds, read_index

SMALL = Config(
    database_params=DatabaseParams(
        num_tables_choices=Choices("range", [3, 6]),
        num_rows_entity_table_choices=Choices("range", [40, 200]),
        num_rows_activity_table_choices=Choices("range", [100, 400]),
    )
)
NUM_DBS = 8


def corpus(out: Path, config: Path, *args, env=None, check=True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "plurel_fast.cli", "corpus", "--out", str(out),
           "--config", str(config), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, **(env or {})})
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a database folder; the sidecar without its timings."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "plurel_fast.json":
                record = json.loads(data)
                record.pop("timings", None)
                data = json.dumps(record, sort_keys=True).encode()
            out[str(path.relative_to(folder))] = data
    return out


def databases(root: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: folder_bytes(p) for p in sorted(root.glob("plurel-*"))}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    return SMALL.save(tmp_path_factory.mktemp("cfg") / "small.toml")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, config_file):
    """An uninterrupted corpus of seeds 0-7 made by 2 workers, and its output."""
    out = tmp_path_factory.mktemp("clean") / "corpus"
    res = corpus(out, config_file, "--num-dbs", NUM_DBS, "--num-proc", 2)
    return out, res


def test_corpus_with_two_workers_writes_databases_and_an_index(clean):
    out, res = clean
    names = [f"plurel-{s}" for s in range(NUM_DBS)]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        names + ["corpus.jsonl"])
    index = pl.read_ndjson(out / "corpus.jsonl")
    assert index.columns == list(INDEX_FIELDS)
    assert index["seed"].to_list() == list(range(NUM_DBS))
    assert set(index["status"]) == {"ok"} and index["error"].null_count() == NUM_DBS
    assert set(index["worker"]) == {0, 1}
    assert set(index["config_hash"]) == {SMALL.config_hash}
    for row in index.iter_rows(named=True):
        db = Database.load(out / row["name"])
        assert (row["tables"], row["rows"], row["tokens"]) == (
            len(db.table_dict), db.num_rows, db.num_tokens)
        assert db.metadata["seed"] == row["seed"] and db.name == row["name"]
        dataset = relbench.load_dataset(str(out / row["name"]))
        assert set(dataset.get_db().table_dict) == set(db.table_dict)
        # The reference script's line per database.
        assert f"{row['name']}: {row['tables']} tables, {row['rows']} rows, " in res.stdout
    assert f"{NUM_DBS} databases generated" in res.stdout
    assert "databases:" in res.stderr  # the progress bar


def test_one_worker_makes_the_same_bytes_and_a_rerun_skips(clean, tmp_path, config_file):
    out, _ = clean
    one = tmp_path / "one"
    res = corpus(one, config_file, "--num-dbs", NUM_DBS, "--num-proc", 1, "--quiet")
    assert res.stderr == "" and "databases:" not in res.stdout
    assert databases(one) == databases(out)
    before = (one / "corpus.jsonl").read_text()
    again = corpus(one, config_file, "--num-dbs", NUM_DBS, "--num-proc", 1, "--quiet")
    assert f"0 databases generated, {NUM_DBS} already complete" in again.stdout
    assert (one / "corpus.jsonl").read_text() == before


def _start_and_wait(out: Path, config_file: Path, num_proc: int) -> subprocess.Popen:
    """A corpus run in its own process group, once it has indexed two databases."""
    cmd = [sys.executable, "-m", "plurel_fast.cli", "corpus", "--out", str(out),
           "--config", str(config_file), "--num-dbs", str(NUM_DBS), "--num-proc",
           str(num_proc), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    index = out / "corpus.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if index.is_file() and len(index.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the corpus finished before it could be stopped"
    return proc


def test_ctrl_c_stops_workers_and_leaves_only_complete_databases(tmp_path, config_file):
    out = tmp_path / "interrupted"
    proc = _start_and_wait(out, config_file, 2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted; rerun the same command to finish" in stderr
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    done = sorted(p.name for p in out.glob("plurel-*"))
    assert len(done) < NUM_DBS
    for name in done:
        Database.load(out / name)
    assert sorted(r["name"] for r in read_index(out / "corpus.jsonl")) == done


def test_databases_saved_while_interrupted_are_indexed(tmp_path):
    """A worker that saved its database but was stopped before its record reached the
    parent (Ctrl-C between the two): the parent indexes it from the folder."""
    from plurel_fast import generate
    from plurel_fast.corpus import CorpusResult, _Bookkeeper, _Job

    saved, unsaved, other = (_Job(s, f"plurel-{s}", tmp_path / f"plurel-{s}", True)
                             for s in (0, 1, 2))
    generate(0, SMALL).save(saved.folder)
    generate(2, Config()).save(other.folder)  # another config: not this run's
    unsaved.folder.mkdir()  # a save that never finished has no manifest
    result = CorpusResult()
    with open(tmp_path / "corpus.jsonl", "a", encoding="utf-8") as index:
        book = _Bookkeeper([saved, unsaved, other], None, index, result, {}, None, None)
        for _ in range(3):
            book.next_job()
        book.finish_saved(SMALL.config_hash)
    lines = read_index(tmp_path / "corpus.jsonl")
    assert [(r["seed"], r["status"]) for r in lines] == [(0, "ok")]
    assert lines[0]["tokens"] == Database.load(saved.folder).num_tokens == result.tokens
    assert set(book.in_flight) == {1, 2}


def test_kill_of_the_process_group_then_rerun_equals_a_clean_run(clean, tmp_path, config_file):
    out, _ = clean
    killed = tmp_path / "killed"
    proc = _start_and_wait(killed, config_file, 1)
    index = killed / "corpus.jsonl"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = [p for p in killed.glob("plurel-*")]
    assert 2 <= len(done) < NUM_DBS
    for p in done:  # whatever is there under its own name is complete
        assert (p / "manifest.yaml").is_file()
        Database.load(p)
    # A dead run's temporary folder, as a kill during Database.save leaves it.
    stale = killed / ".plurel-7.tmp-0123456789ab"
    (stale / "db").mkdir(parents=True)
    res = corpus(killed, config_file, "--num-dbs", NUM_DBS, "--num-proc", 2, "--quiet")
    assert f"{len(done)} already complete" in res.stdout
    assert not stale.exists()
    assert not [p for p in killed.iterdir() if ".tmp-" in p.name]
    assert databases(killed) == databases(out)
    records = read_index(index)
    assert [r["seed"] for r in records] == list(range(NUM_DBS))
    assert len(index.read_text().splitlines()) == NUM_DBS  # one line per database
    for p in killed.glob("plurel-*"):
        relbench.load_dataset(str(p)).get_db()


def test_shards_together_equal_the_whole(clean, tmp_path, config_file):
    out, _ = clean
    sharded = tmp_path / "sharded"
    for shard in (0, 1):
        corpus(sharded, config_file, "--num-dbs", NUM_DBS, "--num-proc", 1, "--quiet",
               "--shard", shard, "--num-shards", 2)
        seeds = [r["seed"] for r in read_index(sharded / f"corpus-{shard}-of-2.jsonl")]
        assert seeds == corpus_seeds(NUM_DBS, 0, shard, 2) == list(range(shard, NUM_DBS, 2))
    assert not (sharded / "corpus.jsonl").exists()
    assert databases(sharded) == databases(out)


def test_target_tokens_stops_near_the_budget(clean, tmp_path, config_file):
    out, _ = clean
    tokens = [r["tokens"] for r in read_index(out / "corpus.jsonl")]
    target = sum(tokens[:3])
    budget = tmp_path / "budget"
    res = corpus(budget, config_file, "--num-dbs", 40, "--num-proc", 2, "--quiet",
                 "--target-tokens", target)
    made = [r["tokens"] for r in read_index(budget / "corpus.jsonl")]
    assert sum(made) >= target
    # Seeds stop being launched once the budget is met: only the databases running at
    # that moment (at most one per worker) come on top.
    assert sum(made) - sum(sorted(made)[-2:]) < target
    assert len(made) < 40
    assert f"target of {target:,} tokens reached: {sum(made):,} tokens in {len(made)} databases" \
        in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-dbs", "0"], "--num-dbs must be at least 1, got 0"),
        (["--num-dbs", "2", "--num-proc", "0"], "--num-proc must be at least 1, got 0"),
        (["--num-dbs", "2", "--config", "{tmp}/missing.toml"], "missing.toml does not exist"),
        (["--num-dbs", "2", "--shard", "2", "--num-shards", "2"], "--shard must be in 0..1"),
        (["--num-dbs", "2", "--target-tokens", "0"], "--target-tokens must be at least 1"),
        (["--num-dbs", "2", "--preprocess"], "--preprocess needs --pre-dir"),
        (["--num-dbs", "2", "--preprocess", "--pre-dir", "{tmp}/pre"],
         "pip install 'plurel-fast[rt]'"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["corpus", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "pre").exists()


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("not a folder")
    assert main(["corpus", "--out", str(out), "--num-dbs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"output folder {out} exists and is not a folder" in err
    assert len(err.strip().splitlines()) == 1


def test_a_database_of_another_config_is_refused_unless_overwrite(clean, tmp_path, capsys):
    out, _ = clean
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copytree(out / "plurel-1", mixed / "plurel-1")
    other = SMALL.replace(val_split=0.7)
    other_file = other.save(tmp_path / "other.json")
    args = ["corpus", "--out", str(mixed), "--config", str(other_file), "--num-dbs", "2",
            "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(mixed / "plurel-1") in err and SMALL.config_hash in err and "--overwrite" in err
    assert not (mixed / "plurel-0").exists()  # refused before generating anything
    corpus(mixed, other_file, "--num-dbs", 2, "--num-proc", 1, "--quiet", "--overwrite")
    for seed in (0, 1):
        assert Database.load(mixed / f"plurel-{seed}").metadata["config_hash"] == other.config_hash


def _rt_path(tmp_path: Path, rustler_py: str | None = None) -> str:
    """A folder holding package ``rt``: RT's compiled ``rustler`` module from its wheel,
    or a stand-in written from ``rustler_py``."""
    root = tmp_path / "rt_path"
    (root / "rt").mkdir(parents=True)
    (root / "rt" / "__init__.py").write_text("")
    if rustler_py is None:
        shutil.copy(_extract("rt/rustler.abi3.so"), root / "rt" / "rustler.abi3.so")
    else:
        (root / "rt" / "rustler.py").write_text(rustler_py)
    return str(root)


def test_preprocess_with_relational_transformers_preprocessor(tmp_path, config_file):
    out, pre = tmp_path / "raw", tmp_path / "pre"
    env = {"PYTHONPATH": os.pathsep.join([_rt_path(tmp_path), os.environ.get("PYTHONPATH", "")])}
    corpus(out, config_file, "--num-dbs", 3, "--num-proc", 2, "--quiet", "--preprocess",
           "--pre-dir", pre, env=env)
    assert sorted(p.name for p in pre.iterdir()) == ["plurel-0", "plurel-1", "plurel-2"]
    for seed in range(3):
        db = Database.load(out / f"plurel-{seed}")
        meta = json.loads((pre / f"plurel-{seed}" / "meta.json").read_text())
        assert meta["name"] == f"plurel-{seed}"
        assert meta["num_db_tables"] == len(db.table_dict)


def test_a_failing_seed_is_recorded_and_a_rerun_finishes_it(tmp_path, config_file):
    out, pre = tmp_path / "raw", tmp_path / "pre"
    # A preprocessor that fails on one database and writes a marker for the others.
    flaky = _rt_path(tmp_path, (
        "import pathlib\n"
        "def preprocess(db, pre):\n"
        "    name = pathlib.Path(db).name\n"
        "    if name == 'plurel-1':\n"
        "        raise RuntimeError('cannot read ' + name)\n"
        "    (pathlib.Path(pre) / name).mkdir()\n"
        "    (pathlib.Path(pre) / name / 'meta.json').write_text('{}')\n"
    ))
    res = corpus(out, config_file, "--num-dbs", 3, "--num-proc", 2, "--quiet", "--preprocess",
                 "--pre-dir", pre, env={"PYTHONPATH": flaky}, check=False)
    assert res.returncode == 1
    assert "1 database(s) failed (seeds 1)" in res.stderr
    records = read_index(out / "corpus.jsonl")
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert records[1]["error"].startswith("RuntimeError: cannot read plurel-1")
    assert sorted(p.name for p in pre.iterdir()) == ["plurel-0", "plurel-2"]
    # The rerun keeps the three databases and preprocesses only the missing one.
    raw_before = databases(out)
    corpus(out, config_file, "--num-dbs", 3, "--num-proc", 2, "--quiet", "--preprocess",
           "--pre-dir", pre, env={"PYTHONPATH": _rt_path(tmp_path / "real")})
    assert databases(out) == raw_before
    assert json.loads((pre / "plurel-1" / "meta.json").read_text())["name"] == "plurel-1"
    assert (pre / "plurel-0" / "meta.json").read_text() == "{}"  # not redone
    assert [r["status"] for r in read_index(out / "corpus.jsonl")] == ["ok"] * 3


def test_config_command_prints_a_config_file(tmp_path, capsys):
    assert main(["config", "--preset", "default"]) == 0
    text = capsys.readouterr().out
    assert Config.from_toml(text) == Config.preset("default")
    (tmp_path / "cfg.toml").write_text(text)
    assert Config.load(tmp_path / "cfg.toml") == Config()
    assert main(["config", "--preset", "v1.0.0", "--format", "json"]) == 0
    assert Config.from_json(capsys.readouterr().out) == Config.preset("v1.0.0")


def test_a_second_run_of_the_same_shard_is_refused(tmp_path, capsys):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".corpus.jsonl.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["corpus", "--out", str(out), "--num-dbs", "2", "--quiet"]) == 2
    assert "another corpus run is writing" in capsys.readouterr().err
    assert not list(out.glob("plurel-*"))


def test_ray_backend_needs_ray_and_address_needs_ray(tmp_path, capsys, monkeypatch):
    import plurel_fast.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "ray_available", lambda: False)
    out = tmp_path / "out"
    assert main(["corpus", "--out", str(out), "--num-dbs", "2", "--backend", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'plurel-fast[ray]'" in err and len(err.strip().splitlines()) == 1
    assert main(["corpus", "--out", str(out), "--num-dbs", "2", "--address", "auto"]) == 2
    assert "--address is only used with --backend ray" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_ray_backend_makes_the_bytes_of_a_local_run(clean, tmp_path, config_file):
    """A local Ray instance started by the run (ray.init()), two task slots: the same
    folders, byte for byte, as the local workers' run. Needs `pip install -e '.[ray]'`."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise AssertionError("this test needs Ray: pip install -e '.[ray]'") from None
    out = tmp_path / "corpus"
    res = corpus(out, config_file, "--num-dbs", NUM_DBS, "--num-proc", 2, "--backend", "ray",
                 "--quiet")
    assert f"{NUM_DBS} databases generated" in res.stdout
    assert databases(out) == databases(clean[0])
    records = read_index(out / "corpus.jsonl")
    assert [r["seed"] for r in records] == list(range(NUM_DBS))
    assert all(r["status"] == "ok" and ":" in r["worker"] for r in records)


def test_the_parent_warms_the_kernel_cache_only_when_a_kernel_is_missing(monkeypatch):
    from plurel_fast import corpus, kernels

    warmed = []
    monkeypatch.setattr(corpus, "_warm_kernel_cache", lambda config: warmed.append(config))
    monkeypatch.setattr(corpus, "compile_native_first", lambda *a: False)
    monkeypatch.setattr(kernels, "cache_is_complete", lambda: True)
    corpus._prepare_kernels(Config(), 5, progress=False)
    assert warmed == []  # every worker loads every kernel itself
    monkeypatch.setattr(kernels, "cache_is_complete", lambda: False)
    corpus._prepare_kernels(Config(), 5, progress=False)
    assert warmed == [Config()]


def test_long_jobs_compile_native_kernels_when_only_the_shipped_ones_are_at_hand():
    from plurel_fast.corpus import NATIVE_MIN_DATABASES, compile_native_first
    from plurel_fast.kernels import KernelChoice

    def choice(mode, requested, target="x86-64-v3"):
        return KernelChoice(mode, requested, target if mode == "portable" else None,
                            None, None, None, None, "")

    def native_first(c, n, best="x86-64-v4"):
        return compile_native_first(c, n, best)

    long_job, short_job = NATIVE_MIN_DATABASES, NATIVE_MIN_DATABASES - 1
    assert native_first(choice("portable", "auto"), long_job)
    assert not native_first(choice("portable", "auto"), short_job)
    assert not native_first(choice("native", "auto"), long_job)  # native cached
    assert not native_first(choice("portable", "portable"), long_job)  # asked for
    assert not native_first(choice("portable", "numba"), long_job)  # NUMBA_CPU_NAME
    # the shipped kernels are the best this CPU runs: as fast as native ones
    assert not native_first(choice("portable", "auto", "x86-64-v4"), long_job)
    assert not native_first(choice("portable", "auto"), long_job, best="x86-64-v3")
    assert native_first(choice("portable", "auto", "x86-64"), long_job, best="x86-64-v3")
