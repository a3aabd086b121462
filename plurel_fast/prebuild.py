"""Build the precompiled kernels shipped in ``kernels/prebuilt/``: ``python -m plurel_fast.prebuild``.

Any change to any ``kernels/*.py`` (or a new numba or Python version) makes the
shipped archives useless: ``tests/test_prebuilt.py`` then fails and names this
command. Run it from a source checkout installed with ``pip install -e '.[test]'``
and commit what it writes (``kernels/prebuilt/<target>.tar.xz`` and ``index.json``).

For each portable target (``plurel_fast.kernels.TARGETS``), in parallel:

1. compile: a fresh process with ``NUMBA_CPU_NAME=<target>``,
   ``NUMBA_CPU_FEATURES=<its TARGET_FEATURES>`` and an empty ``NUMBA_CACHE_DIR`` runs `WORKLOAD`,
   which calls every kernel the package calls from Python with every argument
   type it uses (every preset, the golden configs, SQL schemas of every dialect,
   small and one-row tables, chunked and whole-table collation, every source
   type, propagation mode, aggregation and transform, extreme values), and
   checks the pinned digests of ``tests/test_golden.py`` (the same bytes as
   native kernels). It keeps the cache files of the kernels called from Python
   (``recording_compiles``: numba announces each compilation), only for the
   argument types called: the kernels they call are compiled into them.
2. pack: those files into ``<target>.tar.xz`` (xz, strongest preset).
3. verify: the archive is unpacked the way an installation does it, and a
   second fresh process that uses it runs the same workload: it must compile
   nothing and give the golden bytes again.

Only then are the archives and ``index.json`` written (``--dry-run``: into the work
folder). On 2 cores it takes about 4 minutes (two targets at once; ``--jobs 1`` one
after the other), nearly all of it numba compiling.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# The workload's configurations -------------------------------------------------------

SLOW_TARGETS = ("x86-64",)
"""Targets whose kernels run so much slower (no AVX, no FMA unit) that their compile
step checks a subset of the golden databases: two per golden config and step, all of
the small one."""

SQL_SCHEMAS = {
    # one per dialect (tests/test_sql_schema.py), enums, booleans, numeric types,
    # several date columns, a key-only table, a single-label enum
    "postgres": """
        CREATE TYPE mood AS ENUM ('Happy', 'so  sad', 'OK');
        CREATE TABLE people (id SERIAL PRIMARY KEY, name TEXT, ok BOOLEAN NOT NULL,
                             joined DATE NOT NULL, left_at DATE, stars SMALLINT);
        CREATE TABLE posts (
            id BIGSERIAL PRIMARY KEY,
            author INTEGER NOT NULL REFERENCES people (id),
            feeling mood NOT NULL,
            at TIMESTAMPTZ,
            edited TIMESTAMP,
            body VARCHAR(200),
            score DOUBLE PRECISION,
            price NUMERIC(8, 2) CHECK (price IN (0.5, 1.5)),
            grade INT NOT NULL CHECK (grade IN (1, 2, 3, -4))
        );
        CREATE TABLE likes (post_id INT REFERENCES posts (id), by_id INT REFERENCES people (id));""",
    "mysql": """
        CREATE TABLE `people` (
            `id` INT UNSIGNED NOT NULL AUTO_INCREMENT, `name` VARCHAR(40),
            `joined` DATETIME NOT NULL, PRIMARY KEY (`id`)
        ) ENGINE=InnoDB;
        CREATE TABLE `posts` (
            `id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, `author` INT UNSIGNED NOT NULL,
            `feeling` ENUM('Happy', 'so  sad', 'OK') NOT NULL, `at` TIMESTAMP NULL,
            `body` TEXT, `score` DECIMAL(8, 3), `flag` TINYINT(1),
            CONSTRAINT `fk_author` FOREIGN KEY (`author`) REFERENCES `people` (`id`)
        ) ENGINE=InnoDB;""",
    "sqlite": """
        CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, only_one TEXT CHECK (only_one IN ('x')));
        CREATE TABLE link (a_id INT REFERENCES a (id), b_id INT REFERENCES a (id));
        CREATE TABLE r (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a, x REAL, t TEXT);""",
    "duckdb": """
        CREATE TYPE mood AS ENUM ('Happy', 'so  sad', 'OK');
        CREATE OR REPLACE TABLE people (id UBIGINT PRIMARY KEY, name VARCHAR, joined DATE NOT NULL);
        CREATE OR REPLACE TABLE posts (id UBIGINT PRIMARY KEY,
            author UBIGINT NOT NULL REFERENCES people (id), feeling mood NOT NULL,
            at TIMESTAMP, body VARCHAR, score DOUBLE, ok BOOLEAN);""",
}


def _option_configs(small):
    """Small configs that each pin one option, plus extremes: values, not types, differ
    between them, but which kernels run and with what arrays depends on them."""
    from plurel_fast import Choices
    from plurel_fast.config import (
        AGGREGATIONS,
        COL_TRANSFORMS,
        PROPAGATION_MODES,
        SOURCE_TYPES,
        STYPES,
    )

    def with_scm(**kw):
        return small.replace(scm_params=small.scm_params.replace(**kw))

    def with_db(**kw):
        return small.replace(database_params=small.database_params.replace(**kw))

    def one(value):
        return Choices("set", [value])

    configs = {}
    for name in SOURCE_TYPES:
        configs[f"source {name}"] = with_scm(source_gen_type_choices=one(name))
    for name in PROPAGATION_MODES:
        configs[f"mode {name}"] = with_scm(propagation_mode_choices=one(name))
    for name in AGGREGATIONS:
        configs[f"aggregation {name}"] = with_scm(propagation_agg_choices=one(name))
    for name in STYPES:
        configs[f"stype {name}"] = with_scm(col_stype_choices=one(name))
    for name in COL_TRANSFORMS:
        configs[f"transform {name}"] = with_db(col_transform_choices=one(name))
    configs["one-row tables"] = with_db(
        num_tables_choices=Choices("range", [1, 4]),
        num_rows_entity_table_choices=Choices("range", [1, 2]),
        num_rows_activity_table_choices=Choices("range", [1, 3]),
        num_cols_choices=Choices("range", [1, 3]),
    )
    configs["wide and deep"] = with_scm(
        mlp_num_layers_choices=Choices("range", [1, 8]), mlp_emb_dim=1,
        mlp_weight_density_choices=Choices("range", [0.001, 0.01]),
        num_categories_choices=Choices("range", [2, 40]),
    ).replace(database_params=small.database_params.replace(
        num_cols_choices=Choices("range", [20, 40]), column_nan_perc_choices=Choices("set", [0.0, 0.9])))
    configs["extremes"] = with_scm(
        ts_value_scale_choices=Choices("set", [1e-30, 1e30]),
        node_noise_alpha_choices=Choices("range", [0.01, 0.4]),
        node_noise_beta_choices=Choices("range", [0.01, 20.0]),
        source_beta_alpha_choices=Choices("range", [0.01, 0.4]),
        ts_ar_rho_choices=Choices("range", [0.99, 0.999]),
        bi_hsbm_levels_choices=Choices("range", [1, 6]),
        bi_hsbm_clusters_per_level_choices=Choices("range", [1, 4]),
        mlp_emb_dim=48,
    )
    return configs


def workload(root: Path, light: bool = False, slow_target: bool = False):
    """``(label, [(config, seed, chunk_rows, golden)])`` steps; ``golden`` is the
    ``(case, seed)`` of ``tests/test_golden.py`` whose digest the database must have,
    or None. A run may also be a function of no arguments, called as it is (for
    kernels that ``generate`` does not reach: add every new path that calls kernels
    from Python here, or its users compile it). ``light``: the first database of each step only (the same kernels and
    argument types, in a fraction of the time). ``slow_target`` (plain x86-64, ~6x
    slower): two databases per step, all of the small golden config."""
    from plurel_fast import Config
    from plurel_fast.config import PRESETS
    from conftest import SMALL  # tests/ is on sys.path (run_workload)
    from test_golden import CASES

    steps = []
    for case, (make_config, seeds) in CASES.items():
        steps.append((f"golden {case} {seeds[0]}-{seeds[-1]}",
                      [(make_config(), s, None, (case, s)) for s in seeds]))
    steps.append(("presets", [(Config.preset(name), s, None, None)
                              for name in PRESETS if name not in CASES for s in (0, 1)]))
    steps.append(("chunked collation", [
        (Config(), 0, 997, ("default", 0)),
        *[(SMALL, s, 37, ("small", s)) for s in (0, 1, 2, 3)],
        (SMALL, 4, 1, ("small", 4)),
    ]))
    shop = root / "examples" / "shop.sql"
    sql = [(SMALL.replace(schema_file=str(shop)), s, None, None) for s in (0, 1)]
    sql += [(Config(schema_file=str(shop)), 0, None, None)]
    sql += [(SMALL.replace(schema_sql=text, schema_dialect=dialect), s, None, None)
            for dialect, text in SQL_SCHEMAS.items() for s in (0, 1)]
    steps.append(("SQL schemas", sql))
    for label, config in _option_configs(SMALL).items():
        steps.append((label, [(config, s, None, None) for s in (0, 1, 2)]))
    steps.append(("streamed row groups", [_streamed_run]))
    if light:
        steps = [(label, runs[:1]) for label, runs in steps]
    elif slow_target:
        steps = [(label, runs if label.startswith("golden small") else runs[:2])
                 for label, runs in steps]
    return steps


def _streamed_run() -> None:
    """The kernels only `generate_to`'s row-group path calls (plurel_fast.stream), and a
    small database written in row groups of 300 rows."""
    from conftest import SMALL

    from plurel_fast.io import parquet as io_parquet
    from plurel_fast.stream import generate_to, warm_up

    warm_up()
    saved = io_parquet.PARQUET_OPTIONS["row_group_size"]
    io_parquet.PARQUET_OPTIONS["row_group_size"] = 300
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in (0, 1):
                generate_to(seed, SMALL, Path(tmp) / f"db{seed}", stream=True)
    finally:
        io_parquet.PARQUET_OPTIONS["row_group_size"] = saved


def run_workload(root: Path, log, light: bool = False,
                 slow_target: bool = False) -> tuple[list, list[str]]:
    """Run `workload`; returns the kernels compiled (`recording_compiles`) and the
    golden mismatches."""
    import plurel_fast
    from plurel_fast.compile_notice import recording_compiles

    sys.path.insert(0, str(root / "tests"))
    from test_golden import GOLDEN, combined, database_digests

    mismatches = []
    start, count = time.perf_counter(), 0
    with recording_compiles() as compiled:
        for label, runs in workload(root, light, slow_target):
            count += len(runs)
            t0, before = time.perf_counter(), len(compiled)
            for run in runs:
                if callable(run):
                    run()
                    continue
                config, seed, chunk_rows, golden = run
                kw = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
                db = plurel_fast.generate(seed, config, **kw)
                if golden is not None:
                    got, want = combined(database_digests(db)), GOLDEN[golden[0]][golden[1]]
                    if got != want:
                        mismatches.append(f"{label}: {golden[0]} seed {golden[1]} (chunk_rows "
                                          f"{chunk_rows}) gives {got}, pinned {want}")
            if len(compiled) > before or time.perf_counter() - t0 > 10:
                log(f"{label}: {len(runs)} runs, {time.perf_counter() - t0:.1f} s, "
                    f"{len(compiled) - before} kernels compiled")
    log(f"{'light ' if light else ''}workload: {count} runs in "
        f"{time.perf_counter() - start:.1f} s, {len(compiled)} kernels compiled, "
        f"{len(mismatches)} golden mismatches")
    return compiled, mismatches


# The worker processes ---------------------------------------------------------------------


def _compile_worker(args) -> None:
    """Compile the workload for the target numba was started with; copy the cache files
    of the kernels called from Python, with their index cut to the signatures called,
    into ``args.stage``; write a manifest."""
    from numba.core.caching import IndexDataCacheFile
    from numba.core.registry import cpu_target

    root, stage = Path(args.root), Path(args.stage)
    log = _logger(args.target, "compile")
    t0 = time.perf_counter()
    compiled, mismatches = run_workload(root, log, slow_target=args.target in SLOW_TARGETS)
    if mismatches:
        _fail(log, "golden bytes differ", mismatches)
    by_dispatcher = {}
    for c in compiled:
        by_dispatcher.setdefault(c.dispatcher, (c.name, set()))[1].add(c.args)
    stage.mkdir(parents=True)
    kernels = {}
    for dispatcher, (name, signatures) in by_dispatcher.items():
        cache = dispatcher._cache
        magic = dispatcher.targetctx.codegen().magic_tuple()
        index = cache._cache_file._load_index()
        keep = {k: v for k, v in index.items() if k[0] in signatures and k[1] == magic}
        if len(keep) != len(signatures):
            _fail(log, f"{name}: {len(signatures)} signatures compiled, {len(keep)} in its cache "
                       f"index {cache._cache_file._index_path}", [])
        out = IndexDataCacheFile(str(stage), cache._impl.filename_base,
                                 cache._cache_file._source_stamp)
        out._save_index(keep)
        for data_name in keep.values():
            shutil.copy2(Path(cache.cache_path) / data_name, stage / data_name)
        kernels[name] = sorted(str(s) for s in signatures)
    _write_json(args.result, {
        "kernels": dict(sorted(kernels.items())),
        "seconds": round(time.perf_counter() - t0, 1),
        "magic": list(cpu_target.target_context.codegen().magic_tuple()),
    })


def _verify_worker(args) -> None:
    """Use the unpacked archive (the folder an installation unpacks it to) for the
    workload's first database of each step: nothing may compile, and every kernel and
    signature the compile step kept must have been loaded from it."""
    from plurel_fast import kernels

    log = _logger(args.target, "verify")
    t0 = time.perf_counter()
    try:
        marker = json.loads((Path(kernels.CACHE_DIR) / "prebuilt.json").read_text())
    except (OSError, ValueError):
        marker = {}
    if kernels.KERNELS.target != args.target or marker.get("sha256") != args.sha256:
        _fail(log, f"the unpacked {args.target} kernels are not used: {kernels.KERNELS}", [])
    kept = json.loads(Path(args.stage).read_text())["kernels"]
    for light in (True, False):  # the whole workload only if the light one misses a kernel
        compiled, mismatches = run_workload(Path(args.root), log, light=light,
                                            slow_target=args.target in SLOW_TARGETS)
        if compiled:
            _fail(log, "kernels missing from the archive were compiled",
                  [str(c)[:300] for c in compiled])
        if mismatches:
            _fail(log, "golden bytes differ", mismatches)
        loaded = _loaded_signatures()
        unused = [f"{k}{s}"[:300] for k, sigs in kept.items() for s in sigs
                  if s not in loaded.get(k, ())]
        if not unused:
            break
        log(f"{len(unused)} kept signatures not loaded by the light workload: the whole one")
    if unused:
        _fail(log, "kernels kept by the compile step were not loaded", unused)
    _write_json(args.result, {"seconds": round(time.perf_counter() - t0, 1)})


def _loaded_signatures() -> dict[str, set[str]]:
    """Kernel name -> signatures this process loaded from the cache."""
    from numba.core.registry import CPUDispatcher

    loaded = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("plurel_fast.kernels."):
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher) and obj.stats.cache_hits:
                    kname = f"{obj.py_func.__module__.rsplit('.', 1)[-1]}.{obj.py_func.__qualname__}"
                    loaded.setdefault(kname, set()).update(str(s) for s in obj.stats.cache_hits)
    return loaded


def _logger(target, stage):
    def log(message):
        print(f"[{target} {stage}] {message}", file=sys.stderr, flush=True)

    return log


def _fail(log, what, details):
    log(f"FAILED: {what}")
    for line in details:
        log(f"  {line}")
    raise SystemExit(1)


def _write_json(path, data) -> None:
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")


# The parent ---------------------------------------------------------------------------


def _pack(stage: Path) -> bytes:
    """The staged files as a tar (sorted, no owners or times), xz-compressed hard."""
    import lzma

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(stage.iterdir()):
            info = tarfile.TarInfo(path.name)
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ,
                         preset=9 | lzma.PRESET_EXTREME, check=lzma.CHECK_CRC64)


def _environment(**changes) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_") and k not in ("PLUREL_FAST_KERNELS", "XDG_CACHE_HOME")}
    env.update(changes)
    return env


def _build(target: str, root: Path, work: Path, threads: int) -> dict:
    """Compile, pack and verify one target in ``work``; returns its index entry."""
    from plurel_fast import kernels

    work.mkdir(parents=True)
    features = kernels.TARGET_FEATURES[target]
    base = [sys.executable, "-m", "plurel_fast.prebuild", "--root", str(root), "--for", target]
    threads_env = {"NUMBA_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run(base + ["--worker", "compile", "--stage", str(work / "stage"),
                           "--result", str(work / "compile.json")], check=True,
                   env=_environment(NUMBA_CPU_NAME=target, NUMBA_CPU_FEATURES=features,
                                    NUMBA_CACHE_DIR=str(work / "numba"), **threads_env))
    compile_seconds = time.perf_counter() - t0
    made = json.loads((work / "compile.json").read_text())
    stage = work / "stage"
    files = sorted(stage.iterdir())
    data = _pack(stage)
    name = f"{target}.tar.xz"
    (work / name).write_bytes(data)
    entry = {
        "cpu_name": target,
        "features": features,
        "archive": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "unpacked_bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "kernels": {k: len(v) for k, v in made["kernels"].items()},
    }
    # Unpack it as an installation would and use it from a fresh process.
    xdg = work / "xdg"
    kernels.unpack(entry, xdg / "plurel_fast" / kernels.folder_name(target), prebuilt_dir=work)
    t1 = time.perf_counter()
    subprocess.run(base + ["--worker", "verify", "--result", str(work / "verify.json"),
                           "--sha256", entry["sha256"], "--stage", str(work / "compile.json")],
                   check=True, env=_environment(NUMBA_CPU_NAME=target, NUMBA_CPU_FEATURES=features,
                                                XDG_CACHE_HOME=str(xdg), **threads_env))
    entry["_times"] = (compile_seconds, time.perf_counter() - t1)
    entry["_signatures"] = made["kernels"]
    entry["_magic"] = made["magic"]
    return entry


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv=None) -> int:
    from plurel_fast import kernels

    parser = argparse.ArgumentParser(
        prog="python -m plurel_fast.prebuild",
        description="Build the precompiled kernels shipped in kernels/prebuilt/.")
    parser.add_argument("--target", action="append", choices=list(kernels.TARGETS),
                        help="build only this target (repeatable; default: all)")
    parser.add_argument("--jobs", "-j", type=int, default=None,
                        help="targets built at once (default: as many as cores, at most all)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="build and verify, but write nothing to kernels/prebuilt/")
    parser.add_argument("--worker", choices=["compile", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--for", dest="for_target", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.target = args.for_target
        (_compile_worker if args.worker == "compile" else _verify_worker)(args)
        return 0

    root = kernels.KERNELS_DIR.parent
    if not (root / "tests" / "test_golden.py").is_file() or not (root / "pyproject.toml").is_file():
        print(f"prebuild: {kernels.KERNELS_DIR} is not in a source checkout (no tests/ or "
              "pyproject.toml beside it); run it where `pip install -e '.[test]'` installed "
              "plurel_fast from", file=sys.stderr)
        return 2
    import llvmlite
    import numba

    targets = args.target or list(kernels.TARGETS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = max(1, min(len(targets), args.jobs or cores or 1))
    threads = max(1, (cores or 1) // jobs)
    work = Path(tempfile.mkdtemp(prefix="plurel-prebuild-"))
    print(f"prebuild: {', '.join(targets)} for numba {numba.__version__}, {kernels.PYTHON_TAG}, "
          f"kernels {kernels.KERNEL_DIGEST}; {jobs} at once, {threads} numba threads each; "
          f"work folder {work}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            futures = {t: pool.submit(_build, t, root, work / t, threads) for t in targets}
            entries = {}
            for t, f in futures.items():
                try:
                    entries[t] = f.result()
                except subprocess.CalledProcessError:
                    print(f"prebuild: {t} failed (see above); nothing written", file=sys.stderr)
                    return 1
        magic_triple = {e["_magic"][0] for e in entries.values()}
        if len(magic_triple) != 1:
            print(f"prebuild: targets disagree on the platform: {magic_triple}", file=sys.stderr)
            return 1
        old = kernels.read_index() or {}
        index = {
            "format": 1,
            "rebuild": kernels.REBUILD_COMMAND,
            "numba": numba.__version__,
            "llvmlite": llvmlite.__version__,
            "python": kernels.PYTHON_TAG,
            "kernel_digest": kernels.KERNEL_DIGEST,
            "triple": magic_triple.pop(),
            "targets": {},
        }
        keep_old = not kernels.index_problems(old, index["triple"])
        for t in kernels.TARGETS:
            if t in entries:
                entry = {k: v for k, v in entries[t].items() if not k.startswith("_")}
                index["targets"][t] = entry
            elif keep_old and t in old.get("targets", {}):
                index["targets"][t] = old["targets"][t]
        out = kernels.PREBUILT_DIR
        if args.dry_run:
            out = work / "prebuilt"
        out.mkdir(exist_ok=True)
        for t, entry in entries.items():
            _write_atomic(out / entry["archive"], (work / t / entry["archive"]).read_bytes())
        for stale in out.glob("*.tar.xz"):
            if stale.name not in {e["archive"] for e in index["targets"].values()}:
                stale.unlink()
        _write_atomic(out / "index.json", (json.dumps(index, indent=1) + "\n").encode())
        print(f"prebuild: wrote {out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for t, e in entries.items():
            compile_s, verify_s = e["_times"]
            sigs = sum(len(v) for v in e["_signatures"].values())
            print(f"  {t:<10} {e['bytes'] / 1e3:7.0f} kB ({e['unpacked_bytes'] / 1e6:.1f} MB "
                  f"unpacked, {e['files']} files), {len(e['kernels'])} kernels / {sigs} "
                  f"signatures; compile {compile_s:.0f} s, verify {verify_s:.0f} s",
                  file=sys.stderr)
        return 0
    finally:
        if args.keep:
            print(f"prebuild: work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
