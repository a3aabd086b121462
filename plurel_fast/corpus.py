"""Corpus jobs: many ``generate(seed, config)`` databases, one worker process per core.

``run_corpus(out, num_dbs, ...)`` writes ``<out>/<prefix>-<seed>/`` for every seed of
its shard, each folder exactly what ``generate(seed, config).save(folder)`` writes, and
one line per finished or failed database to the corpus index
(``<out>/corpus.jsonl``, or ``corpus-<i>-of-<n>.jsonl`` for shard i of n). The
``plurel-fast corpus`` command is a thin layer over it.

Why it is laid out this way:

- One worker process per core, each with one numba thread: on two cores two
  single-thread workers make 1.2x the databases of one two-thread process
  (``bench/corpus_throughput.py``). Workers are started with ``spawn`` and
  ``NUMBA_NUM_THREADS=1`` in their environment, because numba reads it once, on import.
- The parent generates a few tiny databases first, so numba's on-disk kernel cache is
  filled once and workers only load kernels; compiling in every worker would cost
  minutes per worker on a cold cache. It skips them when every kernel is cached for
  this CPU already (`kernels.cache_is_complete`: always so with the shipped kernels),
  which saves the ~2 s of loading the kernels in a process that makes no database.
- Native kernels for long jobs, when the shipped ones are not the CPU's best. Kernels
  shipped for the best portable target a CPU runs (``x86-64-v4`` on an AVX-512 CPU) made
  1.03x the speed of kernels compiled for it, but on that CPU the ``x86-64-v3`` ones make
  0.57-0.61x their cells/s (``bench/kernel_targets.py``), which a single database does not
  notice but a corpus does. So when this process runs shipped kernels for a lesser target
  (the archive of the best one does not fit this installation) only because none were
  compiled for this CPU yet (``PLUREL_FAST_KERNELS`` unset), and the job has at least
  `NATIVE_MIN_DATABASES` databases to make, the parent first compiles native kernels
  (announced; a child process with ``PLUREL_FAST_KERNELS=native``, once per machine
  and version) and the workers, which decide when they start, load those.
  ``PLUREL_FAST_KERNELS=portable`` keeps the shipped ones.
- Crash safety comes from `Database.save`, which renames a finished temporary folder
  into place: a folder ``<prefix>-<seed>`` is complete whenever it exists. A rerun
  skips folders whose ``plurel_fast.json`` records the same config hash, removes the
  ``.<name>.tmp-*`` folders of dead runs and redoes their seeds. The preprocessed copy
  (``--preprocess``) is made the same way: in a temporary folder, renamed into place.
- Seeds are split between shards by ``seed % num_shards == shard``: a job array needs
  no coordination, and each shard has its own index file and lock.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import queue as _queue
import secrets
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plurel_fast.config import Choices, Config
from plurel_fast.io.parquet import MANIFEST_FILE, read_provenance

__all__ = [
    "CorpusError",
    "CorpusResult",
    "INDEX_FIELDS",
    "RT_INSTALL",
    "corpus_seeds",
    "index_path",
    "read_index",
    "run_corpus",
]

RT_INSTALL = "pip install 'plurel-fast[rt]'"
RAY_INSTALL = "pip install 'plurel-fast[ray]'"
INDEX_FIELDS = ("seed", "name", "config_hash", "plurel_fast_version", "tables", "rows",
                "tokens", "seconds", "worker", "status", "error")
_JOIN_SECONDS = 5.0  # a terminated worker's grace period before it is killed

NATIVE_MIN_DATABASES = 100
"""Jobs with at least this many databases to make compile native kernels first when only
the shipped portable ones are at hand (see the module doc): at ~1.8x the speed, the minute
or two of compiling pays for itself within about this many default databases on 2 cores."""


class CorpusError(ValueError):
    """A corpus job cannot start: bad arguments, or an output folder it must not touch.
    Raised before any database is generated (the CLI exits with status 2)."""


@dataclass
class CorpusResult:
    """What a `run_corpus` call did.

    ``records`` are this run's index lines (finished and failed databases), ``skipped``
    the seeds already complete with this config, ``target_reached`` whether
    ``target_tokens`` was met (None without a target), ``tokens`` the tokens of every
    complete database of the shard, ``interrupted`` whether Ctrl-C stopped the run.
    """

    records: list[dict] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    tokens: int = 0
    databases: int = 0
    seconds: float = 0.0
    target_reached: bool | None = None
    interrupted: bool = False
    index: Path | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] != "ok"]


def corpus_seeds(num_dbs: int, seed_offset: int = 0, shard: int = 0, num_shards: int = 1) -> list[int]:
    """The seeds of shard ``shard`` of ``num_shards``: those of
    ``seed_offset .. seed_offset + num_dbs - 1`` with ``seed % num_shards == shard``."""
    return [s for s in range(seed_offset, seed_offset + num_dbs) if s % num_shards == shard]


def index_path(out: str | os.PathLike, shard: int = 0, num_shards: int = 1) -> Path:
    """``<out>/corpus.jsonl``, or ``<out>/corpus-<i>-of-<n>.jsonl`` for a shard."""
    name = "corpus.jsonl" if num_shards == 1 else f"corpus-{shard}-of-{num_shards}.jsonl"
    return Path(out) / name


def read_index(path: str | os.PathLike) -> list[dict]:
    """The records of an index file, the last one per seed, in seed order. Lines a
    killed run left half-written are ignored."""
    latest: dict[int, dict] = {}
    p = Path(path)
    if not p.is_file():
        return []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seed"), int):
            latest[record["seed"]] = record
    return [latest[s] for s in sorted(latest)]


def default_num_proc() -> int:
    """The cores this process may run on (its affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def rt_available() -> bool:
    """Whether relational-transformer's compiled preprocessor ``rt.rustler`` imports."""
    try:
        return importlib.util.find_spec("rt.rustler") is not None
    except (ImportError, ValueError):
        return False


def ray_available() -> bool:
    """Whether Ray imports (the ``ray`` extra)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


# ----------------------------------------------------------------------------- parent


def run_corpus(
    out: str | os.PathLike,
    num_dbs: int,
    *,
    config: Config | None = None,
    seed_offset: int = 0,
    num_proc: int | None = None,
    db_prefix: str = "plurel",
    target_tokens: int | None = None,
    overwrite: bool = False,
    shard: int = 0,
    num_shards: int = 1,
    pre_dir: str | os.PathLike | None = None,
    on_record: Callable[[dict], None] | None = None,
    progress: bool = False,
    backend: str = "local",
    address: str | None = None,
) -> CorpusResult:
    """Generate the databases of one shard of a corpus into ``out``.

    Parameters
    ----------
    out : folder of the corpus; ``<out>/<db_prefix>-<seed>/`` per database.
    num_dbs : seeds ``seed_offset .. seed_offset + num_dbs - 1`` (of which this shard
        takes ``seed % num_shards == shard``).
    config : the Config of every database (default ``Config()``).
    num_proc : worker processes (default: one per core this process may use).
    target_tokens : stop launching seeds once the complete databases hold this many
        tokens; the databases already running finish.
    overwrite : replace complete databases made with another config instead of refusing.
    pre_dir : pass every database to ``rt.rustler.preprocess`` into this folder, in the
        worker that made it (also databases an earlier run finished but did not
        preprocess).
    on_record : called in the parent with each index record as it is written.
    progress : show a tqdm bar (databases, tokens, tokens/s, ETA) on stderr.
    backend : ``"local"`` (worker processes here) or ``"ray"``: the same per-seed task on
        a Ray cluster (``pip install 'plurel-fast[ray]'``), at most ``num_proc`` at a
        time (default: the cluster's CPUs), each on one CPU with one numba thread; ``out``
        (and ``pre_dir``) must be a path every node sees (a shared filesystem). The
        bytes are those of a local run.
    address : the Ray cluster to join (``"auto"``, ``"ray://host:10001"``); None starts
        a local Ray instance.

    Raises
    ------
    CorpusError
        Before any work, for bad arguments, a missing preprocessor, an output path that
        is a file, a complete database made with another config (without
        ``overwrite``), a folder that is not a database, or another run of the same
        shard holding the lock.
    """
    config = Config() if config is None else config
    if not isinstance(config, Config):
        raise CorpusError(f"config must be a plurel_fast.Config, got {type(config).__name__}")
    if backend not in ("local", "ray"):
        raise CorpusError(f"backend must be 'local' or 'ray', got {backend!r}")
    if backend == "ray" and not ray_available():
        raise CorpusError(f"--backend ray needs Ray, which is not installed; install it with: {RAY_INSTALL}")
    if address is not None and backend != "ray":
        raise CorpusError("--address is only used with --backend ray")
    ray_slots = num_proc if backend == "ray" else None  # None: the cluster's CPUs
    num_proc = default_num_proc() if num_proc is None else num_proc
    _check_arguments(num_dbs, seed_offset, num_proc, db_prefix, target_tokens, shard, num_shards)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise CorpusError(f"output folder {out} exists and is not a folder")
    if pre_dir is not None:
        if not rt_available():
            raise CorpusError(
                "--preprocess needs relational-transformer's preprocessor (rt.rustler), "
                f"which is not installed; install it with: {RT_INSTALL}"
            )
        pre_dir = Path(pre_dir).expanduser()
        if pre_dir.exists() and not pre_dir.is_dir():
            raise CorpusError(f"preprocessing folder {pre_dir} exists and is not a folder")

    out.mkdir(parents=True, exist_ok=True)
    index = index_path(out, shard, num_shards)
    with _shard_lock(index):
        return _run_locked(out, index, config, corpus_seeds(num_dbs, seed_offset, shard, num_shards),
                           num_proc, db_prefix, target_tokens, overwrite, pre_dir, on_record,
                           progress, backend, address, ray_slots)


def _check_arguments(num_dbs, seed_offset, num_proc, db_prefix, target_tokens, shard, num_shards):
    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not integer(num_dbs) or num_dbs < 1:
        raise CorpusError(f"--num-dbs must be at least 1, got {num_dbs!r}")
    if not integer(seed_offset) or seed_offset < 0:
        raise CorpusError(f"--seed-offset must be >= 0, got {seed_offset!r}")
    if not integer(num_proc) or num_proc < 1:
        raise CorpusError(f"--num-proc must be at least 1, got {num_proc!r}")
    if not integer(num_shards) or num_shards < 1:
        raise CorpusError(f"--num-shards must be at least 1, got {num_shards!r}")
    if not integer(shard) or not 0 <= shard < num_shards:
        raise CorpusError(f"--shard must be in 0..{num_shards - 1} (--num-shards {num_shards}), "
                          f"got {shard!r}")
    if target_tokens is not None and (not integer(target_tokens) or target_tokens < 1):
        raise CorpusError(f"--target-tokens must be at least 1, got {target_tokens!r}")
    if (not isinstance(db_prefix, str) or not db_prefix or db_prefix.startswith(".")
            or any(c in db_prefix for c in "/\\\0")):
        raise CorpusError(f"--db-prefix must be a plain folder name (no '/', no leading '.'), "
                          f"got {db_prefix!r}")


@contextlib.contextmanager
def _shard_lock(index: Path):
    # Two runs of the same shard would delete each other's temporary folders.
    lock_path = index.with_name(f".{index.name}.lock")
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CorpusError(
                f"another corpus run is writing {index} (it holds {lock_path}); "
                "wait for it or stop it"
            ) from None
        yield


@dataclass
class _Job:
    seed: int
    name: str
    folder: Path
    generate: bool  # False: the database is complete, only preprocessing is missing


def _plan_jobs(out, seeds, prefix, config_hash, overwrite, pre_dir):
    """Jobs to run and seeds to skip; refuses (CorpusError) before anything is touched."""
    jobs, skipped, refused = [], [], []
    for seed in seeds:
        name = f"{prefix}-{seed}"
        folder = out / name
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise CorpusError(f"{folder} exists and is not a database folder; remove it")
        if folder.is_dir() and (folder / MANIFEST_FILE).is_file():
            try:
                made_with = read_provenance(folder).get("config_hash")
            except ValueError as e:
                made_with = f"unreadable ({e})"
            made_with = made_with or "unknown (no plurel_fast.json)"
            if made_with == config_hash:
                pre_missing = pre_dir is not None and not (pre_dir / name).is_dir()
                (jobs.append(_Job(seed, name, folder, False)) if pre_missing
                 else skipped.append(seed))
                continue
            if not overwrite:
                refused.append((folder, made_with))
                continue
        elif folder.is_dir() and any(folder.iterdir()):
            raise CorpusError(f"{folder} is not empty and holds no {MANIFEST_FILE}, so it is not "
                              "a database this command wrote; remove it or choose another --out")
        jobs.append(_Job(seed, name, folder, True))
    if refused:
        folder, made_with = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise CorpusError(
            f"{folder}{more} was made with config {made_with}, not this config "
            f"{config_hash}; pass --overwrite to replace it, or choose another --out"
        )
    return jobs, skipped


def _remove_stale_temporaries(parent: Path, names) -> None:
    # Database.save writes `.<name>.tmp-<hex>` and, when replacing, `.<name>.old-<hex>`;
    # under our shard lock any such folder of our seeds is a dead run's.
    wanted = set(names)
    for entry in parent.glob(".*"):
        base, sep, _ = entry.name[1:].rpartition(".")
        if sep and base in wanted and entry.name.rsplit(".", 1)[1].startswith(("tmp-", "old-")):
            shutil.rmtree(entry, ignore_errors=True)


def _run_locked(out, index, config, seeds, num_proc, prefix, target_tokens, overwrite, pre_dir,
                on_record, progress, backend="local", address=None, ray_slots=None) -> CorpusResult:
    t0 = time.perf_counter()
    config_hash = config.config_hash
    jobs, skipped = _plan_jobs(out, seeds, prefix, config_hash, overwrite, pre_dir)
    names = [f"{prefix}-{s}" for s in seeds]
    _remove_stale_temporaries(out, names)
    if pre_dir is not None:
        pre_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(pre_dir, names)

    # The index: compact what earlier runs wrote (dropping a half-written last line),
    # and recover the records of complete databases a killed run did not get to index.
    previous = {r["seed"]: r for r in read_index(index)}
    for seed in skipped + [j.seed for j in jobs if not j.generate]:
        if previous.get(seed, {}).get("status") != "ok" or \
                previous[seed].get("config_hash") != config_hash:
            previous[seed] = _record_of_folder(out / f"{prefix}-{seed}", seed)
    # Records of seeds about to be generated again are dropped; they get new ones.
    redo = {j.seed for j in jobs if j.generate}
    keep = [r for s, r in sorted(previous.items()) if s not in redo]
    _write_index(index, keep)

    result = CorpusResult(skipped=skipped, index=index)
    done_tokens = sum(previous[s].get("tokens") or 0 for s in skipped)
    result.tokens = done_tokens
    if target_tokens is not None and done_tokens >= target_tokens:
        jobs = [j for j in jobs if not j.generate]
    if jobs:
        with open(index, "a", encoding="utf-8") as index_file:
            if backend == "ray":
                _run_ray(out, jobs, config, ray_slots, target_tokens, pre_dir, index_file,
                         result, previous, on_record, progress, address)
            else:
                _prepare_kernels(config, sum(j.generate for j in jobs), progress)
                _run_workers(out, jobs, config, min(num_proc, len(jobs)), target_tokens, pre_dir,
                             index_file, result, previous, on_record, progress)
        # One line per database, last record wins, in seed order.
        _write_index(index, read_index(index))
    result.databases = len(skipped) + sum(
        1 for r in result.records if r["status"] == "ok" and r["seed"] not in skipped)
    if target_tokens is not None:
        result.target_reached = result.tokens >= target_tokens
    result.seconds = time.perf_counter() - t0
    return result


def _record_of_folder(folder: Path, seed: int) -> dict:
    from plurel_fast.database import Database

    db = Database.load(folder)
    prov = db.metadata
    seconds = sum((db.timings or {}).get("tables_seconds", {}).values())
    return _record(seed, folder.name, prov.get("config_hash"), prov.get("plurel_fast_version"),
                   len(db.table_dict), db.num_rows, db.num_tokens, round(seconds, 3), None,
                   "ok", None)


def _record(seed, name, config_hash, version, tables, rows, tokens, seconds, worker, status,
            error) -> dict:
    return dict(zip(INDEX_FIELDS, (seed, name, config_hash, version, tables, rows, tokens,
                                   seconds, worker, status, error)))


def _write_index(index: Path, records: list[dict]) -> None:
    tmp = index.with_name(f".{index.name}.tmp-{secrets.token_hex(4)}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index)


def compile_native_first(choice, num_databases: int, best_target: str | None) -> bool:
    """Whether a job making ``num_databases`` databases compiles native kernels before its
    workers start: this process runs shipped portable kernels because ``auto`` found none
    compiled for this CPU, they are not for ``best_target`` (the best portable target
    this CPU runs, `kernels.best_target`: on an AVX-512 CPU those made 1.03x the speed of
    native ones, bench/RESULTS.md), and the job is long enough to repay the compilation."""
    return (choice.requested == "auto" and choice.mode == "portable"
            and choice.target != best_target and num_databases >= NATIVE_MIN_DATABASES)


_NATIVE_SCRIPT = """
import sys
from plurel_fast.config import Config
from plurel_fast.corpus import _warm_kernel_cache
from plurel_fast.kernels import KERNELS, cache_is_warm
_warm_kernel_cache(Config.from_json(sys.stdin.read()), broad=True)
print(KERNELS.mode == "native" and cache_is_warm())
"""


def _prepare_kernels(config: Config, num_databases: int, progress: bool) -> None:
    """Fill the kernel cache the workers will load from (see the module doc)."""
    from plurel_fast import kernels
    from plurel_fast.compile_notice import compiling_notice

    if compile_native_first(kernels.KERNELS, num_databases, kernels.best_target()):
        message = (
            "compiling the kernels for this CPU before the workers start, once per machine "
            "and version (about 1-2 minutes on 2 cores): they make up to ~1.8x the databases "
            "per second of the shipped portable ones (PLUREL_FAST_KERNELS=portable skips this)")
        with compiling_notice(enabled=progress, warm=False, message=message):
            res = subprocess.run(
                [sys.executable, "-c", _NATIVE_SCRIPT], input=config.to_json(indent=0),
                env=dict(os.environ, PLUREL_FAST_KERNELS="native"), capture_output=True,
                text=True)
        if res.returncode == 0 and res.stdout.strip().endswith("True"):
            return
        if progress:
            last = (res.stderr.strip().splitlines() or ["no native kernels in the cache"])[-1]
            print(f"plurel-fast: compiling native kernels failed ({last}); the workers use "
                  f"the shipped {kernels.KERNELS.target} ones", file=sys.stderr, flush=True)
    if kernels.cache_is_complete():
        return  # workers load every kernel; loading them here too would only cost ~2 s
    with compiling_notice(enabled=progress):
        _warm_kernel_cache(config)


def _tiny(config: Config) -> Config:
    """``config`` with 2-4 tables of 20-40 rows (itself when it cannot be shrunk)."""
    try:
        dp = config.database_params
        return config.replace(database_params=dp.replace(
            num_tables_choices=Choices("range", [2, max(2, min(4, dp.num_tables_choices.high))]),
            num_rows_entity_table_choices=Choices("range", [20, 40]),
            num_rows_activity_table_choices=Choices("range", [20, 40]),
        ))
    except (ValueError, TypeError, AttributeError):
        return config


def _warm_kernel_cache(config: Config, broad: bool | None = None) -> None:
    """Generate tiny databases of ``config``'s kind, so numba compiles (or loads) its
    kernels here, once, and the workers find them in the on-disk cache. ``broad``
    (default: when the kernel cache is cold) adds the default config's seed 0 and tiny
    databases: between them they call every kernel the package calls from Python
    (which kernels a database calls depends on its draws), so no worker compiles one."""
    from plurel_fast.generate import generate
    from plurel_fast.kernels import cache_is_warm

    if broad is None:
        broad = not cache_is_warm()
    runs = [(seed, _tiny(config)) for seed in range(8 if broad else 2)]
    if broad:
        runs += [(seed, _tiny(Config())) for seed in range(8)] + [(0, Config())]
    for seed, cfg in runs:
        try:
            generate(seed, cfg)
        except Exception:  # noqa: BLE001 - a seed's failure is reported by its worker
            pass
    from plurel_fast.stream import warm_up

    warm_up()  # the kernels of tables written in row groups


@contextlib.contextmanager
def _worker_environment():
    # A spawned child copies os.environ when it starts, and numba reads
    # NUMBA_NUM_THREADS once, on import, so it must be in the environment by then. Numba
    # rereads its configuration only when it compiles, which the parent does not do
    # while this is set.
    saved = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = saved


def _run_workers(out, jobs, config, num_proc, target_tokens, pre_dir, index_file, result,
                 previous, on_record, progress) -> None:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    config_json = config.to_json(indent=0)

    def start_worker(w: int):
        p = ctx.Process(target=_worker, name=f"plurel-corpus-{w}", daemon=True,
                        args=(w, config_json, str(pre_dir) if pre_dir else None, tasks, results))
        with _worker_environment():
            p.start()
        return p

    procs: dict[int, mp.Process] = {}
    bar = _progress_bar(len(jobs), target_tokens, result.tokens) if progress else None
    book = _Bookkeeper(jobs, target_tokens, index_file, result, previous, on_record, bar)
    in_flight = book.in_flight  # seed -> job, queued or running
    running: dict[int, int] = {}  # worker -> the seed it said it started
    startup_deaths = 0

    def launch() -> None:
        job = book.next_job()
        if job is not None:
            tasks.put((job.seed, job.name, str(job.folder), job.generate))

    def finish(record: dict) -> None:
        book.finish(record)
        launch()

    try:
        for w in range(num_proc):
            procs[w] = start_worker(w)
        for _ in range(num_proc):
            launch()
        while in_flight:
            try:
                kind, worker, payload = results.get(timeout=0.5)
            except _queue.Empty:
                for w, p in list(procs.items()):
                    if p.exitcode is None:
                        continue
                    # A worker that dies (out of memory, a crash in native code) fails
                    # the seed it was running; a fresh worker takes its place.
                    seed = running.pop(w, None)
                    if seed is None:
                        startup_deaths += 1
                        if startup_deaths > 2 * num_proc:
                            raise RuntimeError(
                                f"corpus workers keep dying before they take a seed (last exit "
                                f"code {p.exitcode}); their error is printed above")
                    elif seed in in_flight:
                        finish(_record(seed, in_flight[seed].name, config.config_hash, None,
                                       None, None, None, None, w, "failed",
                                       f"worker process died (exit code {p.exitcode})"))
                    procs[w] = start_worker(w)
                continue
            if kind == "start":
                running[worker] = payload
            else:
                running.pop(worker, None)
                finish(payload)
        for _ in procs:
            tasks.put(None)
        for p in procs.values():
            p.join(_JOIN_SECONDS)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        _stop(list(procs.values()))
        book.finish_saved(config.config_hash)
        if bar is not None:
            bar.close()
        # A terminated worker removes its temporary folder as it exits; one that had to
        # be killed could not, so sweep the seeds that were in flight.
        _remove_stale_temporaries(out, [j.name for j in in_flight.values()])
        if pre_dir is not None:
            _remove_stale_temporaries(pre_dir, [j.name for j in in_flight.values()])


class _Bookkeeper:
    """What both runners share: the queue of jobs (honouring the token budget), the
    index lines, the records, the tokens and the progress bar."""

    def __init__(self, jobs, target_tokens, index_file, result, previous, on_record, bar):
        self.pending = list(reversed(jobs))  # pop() gives the smallest seed first
        self.in_flight: dict[int, _Job] = {}
        self.target_tokens, self.index_file, self.result = target_tokens, index_file, result
        self.previous, self.on_record, self.bar = previous, on_record, bar
        self.t0 = time.perf_counter()
        self.new_tokens = 0

    def next_job(self):
        if self.target_tokens is not None and self.result.tokens >= self.target_tokens:
            self.pending[:] = [j for j in self.pending if not j.generate]
        if not self.pending:
            return None
        job = self.pending.pop()
        self.in_flight[job.seed] = job
        return job

    def finish_saved(self, config_hash: str) -> None:
        """Record the databases in flight that were saved although their worker's record
        never arrived (Ctrl-C, a lost worker after its save): the index then lists every
        complete folder of the run, as the folders say."""
        for job in list(self.in_flight.values()):
            if not job.generate or not (job.folder / MANIFEST_FILE).is_file():
                continue
            try:
                record = _record_of_folder(job.folder, job.seed)
            except (OSError, ValueError):  # not a folder we can read: the rerun redoes it
                continue
            if record["config_hash"] == config_hash:
                self.finish(record)

    def finish(self, record: dict) -> None:
        job = self.in_flight.pop(record["seed"])
        if not job.generate:  # preprocessing only: the database keeps its record
            if record["status"] == "ok":
                record = None
            else:
                record = {**self.previous[job.seed], "status": record["status"],
                          "error": record["error"], "worker": record["worker"]}
        if record is not None:
            self.index_file.write(json.dumps(record) + "\n")
            self.index_file.flush()
            os.fsync(self.index_file.fileno())
            self.result.records.append(record)
            if self.on_record is not None:
                self.on_record(record)
            if record["status"] == "ok":
                self.result.tokens += record["tokens"]
                self.new_tokens += record["tokens"]
        if self.bar is not None:
            _advance(self.bar, self.target_tokens, self.result.tokens, self.new_tokens,
                     time.perf_counter() - self.t0)


def _run_ray(out, jobs, config, num_proc, target_tokens, pre_dir, index_file, result,
             previous, on_record, progress, address) -> None:
    import ray

    env = {"NUMBA_NUM_THREADS": "1"}
    if not ray.is_initialized():
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                 include_dashboard=False)
    slots = num_proc or max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(num_cpus=1)(_ray_task)
    config_json = config.to_json(indent=0)
    pre = str(pre_dir) if pre_dir else None
    bar = _progress_bar(len(jobs), target_tokens, result.tokens) if progress else None
    book = _Bookkeeper(jobs, target_tokens, index_file, result, previous, on_record, bar)
    running = {}  # ObjectRef -> job

    def launch() -> None:
        job = book.next_job()
        if job is not None:
            ref = task.remote(config_json, pre, (job.seed, job.name, str(job.folder), job.generate))
            running[ref] = job

    try:
        for _ in range(min(slots, len(jobs))):
            launch()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a lost worker or node fails its seed
                    record = _record(job.seed, job.name, config.config_hash, None, None, None,
                                     None, None, None, "failed", f"{type(e).__name__}: {e}")
                book.finish(record)
                launch()
    except KeyboardInterrupt:
        result.interrupted = True
        for ref in running:
            ray.cancel(ref, force=True)
    finally:
        book.finish_saved(config.config_hash)
        if bar is not None:
            bar.close()
        # Workers that were cancelled or lost could not remove their temporary folders.
        _remove_stale_temporaries(out, [j.name for j in book.in_flight.values()])
        if pre_dir is not None:
            _remove_stale_temporaries(pre_dir, [j.name for j in book.in_flight.values()])


def _stop(procs) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + _JOIN_SECONDS
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _progress_bar(num_jobs, target_tokens, tokens):
    from tqdm import tqdm

    if target_tokens is not None:
        return tqdm(total=target_tokens, initial=min(tokens, target_tokens), unit="tok",
                    unit_scale=True, desc="tokens", file=sys.stderr, mininterval=0.5,
                    dynamic_ncols=True)
    return tqdm(total=num_jobs, unit="db", desc="databases", file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


def _advance(bar, target_tokens, tokens, new_tokens, seconds) -> None:
    rate = new_tokens / seconds if seconds > 0 else 0.0
    bar.set_postfix_str(f"{tokens:,} tokens, {rate:,.0f} tok/s", refresh=False)
    bar.update(max(0, min(tokens, target_tokens) - bar.n) if target_tokens is not None else 1)


def format_record(record: dict) -> str:
    """The reference script's line for a database: ``<name>: N tables, R rows, Xs``."""
    if record["status"] != "ok":
        return f"{record['name']}: failed after {record['seconds']:.1f}s: {record['error']}"
    return (f"{record['name']}: {record['tables']} tables, {record['rows']} rows, "
            f"{record['seconds']:.1f}s")


# ----------------------------------------------------------------------------- worker


def _worker(worker: int, config_json: str, pre_dir: str | None, tasks, results) -> None:
    """Take (seed, name, folder, generate) tasks until None; answer one record each."""
    # Ctrl-C reaches the whole process group; the parent decides, and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM unwinds through Database.save, which removes its temporary folder.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from plurel_fast.generate import package_version
    from plurel_fast.stream import generate_to

    config = Config.from_json(config_json)
    config_hash = config.config_hash
    version = package_version()
    rustler = None
    if pre_dir is not None:
        import rt.rustler as rustler
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(("start", worker, task[0]))
        results.put(("done", worker, _run_task(task, generate_to, config, config_hash, version,
                                               rustler, pre_dir, worker)))


def _run_task(task, generate_to, config, config_hash, version, rustler, pre_dir, worker) -> dict:
    """One seed: generate its database into its folder (unless complete; large tables
    in row groups, `plurel_fast.stream.generate_to`), preprocess it when asked; the
    index record, with the error of a failure (never raised)."""
    seed, name, folder, make = task
    started = time.perf_counter()
    tables = rows = tokens = None
    try:
        if make:
            saved = generate_to(seed, config, folder, overwrite=True)
            tables, rows, tokens = len(saved.tables), saved.num_rows, saved.num_tokens
        if rustler is not None:
            _preprocess(rustler, Path(folder), Path(pre_dir), name)
        status, error = "ok", None
    except Exception as e:  # noqa: BLE001 - recorded in the index, the job goes on
        status = "failed"
        error = f"{type(e).__name__}: {e}".strip()
        where = traceback.extract_tb(e.__traceback__)
        if where:
            error += f" ({Path(where[-1].filename).name}:{where[-1].lineno})"
    return _record(seed, name, config_hash, version, tables, rows, tokens,
                   round(time.perf_counter() - started, 3), worker, status, error)


def _ray_task(config_json: str, pre_dir: str | None, task) -> dict:
    """`_run_task` on a Ray worker (one CPU, ``NUMBA_NUM_THREADS=1`` in its environment);
    the worker's name in the index is ``<host>:<pid>``."""
    import socket

    from plurel_fast.generate import package_version
    from plurel_fast.stream import generate_to

    config = Config.from_json(config_json)
    rustler = None
    if pre_dir is not None:
        import rt.rustler as rustler
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return _run_task(task, generate_to, config, config.config_hash, package_version(), rustler,
                     pre_dir, worker)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _preprocess(rustler, folder: Path, pre_dir: Path, name: str) -> None:
    # RT writes <pre>/<name>/ file by file; doing it in a temporary folder and renaming
    # the result into place makes <pre_dir>/<name> complete whenever it exists.
    tmp = pre_dir / f".{name}.tmp-{secrets.token_hex(6)}"
    os.mkdir(tmp)
    try:
        rustler.preprocess(str(folder), str(tmp))
        target = pre_dir / name
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
