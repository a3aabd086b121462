"""Cold first database: how long a fresh process takes to import the package and produce
its first database, plurel_fast against the reference (issue #16 item 1).

    python bench/cold_start.py [--reps 3] [--seeds 0] [--threads default] \
        [--ref-python /work/refvenv/bin/python] [--ours-python .venv/bin/python] \
        [--json out.json] | tee cold_start.md

Per repetition and seed, three fresh processes (``python -c``), each reaped with
``wait4``:

(a) reference: ``import plurel`` (timed), then
    ``plurel.SyntheticDataset(seed=S, config=plurel.Config()).make_db()`` (timed; 1.1.0
    has no default config). The reference keeps no on-disk cache of its own: torch
    runs eagerly (no ``torch.compile``, nothing under ``$TORCH_HOME``) and RelBench
    caches databases only when given a ``cache_dir``, which the default Config does
    not. To check rather than assume, the child runs with ``XDG_CACHE_HOME`` and
    ``TORCH_HOME`` pointed at a fresh folder, and the report gives the number of files
    it left there (expected 0).
(b) ours, cold: ``import plurel_fast`` (timed), then ``plurel_fast.generate(S)``
    (timed), with an empty kernel cache: ``XDG_CACHE_HOME`` a fresh folder and
    ``NUMBA_CACHE_DIR`` unset, so numba compiles every kernel the database needs
    (``kernels/__init__.py``: the cache is ``$XDG_CACHE_HOME/plurel_fast/...``).
(c) ours, warm: the same in a second process on the cache (b) just filled.

Within a repetition (a) and (b)+(c) alternate which goes first, so drifts of the
machine's load fall on both. Python's own bytecode caches (``__pycache__``, written
at install time) are warm for both sides, as after any ``pip install``; both packages
are imported once, untimed, before the first repetition (``--no-prime`` skips it) so
neither side's first run pays for reading its libraries from disk.

Reported per run: import s and first-db s (inside the child), total s = the wall
time of the whole process as the parent sees it (interpreter start-up to exit, i.e.
what a user waits for), peak RSS (``ru_maxrss`` from ``wait4``), CPU s, and the size of
the database (tables, rows, tokens: non-null feature and time cells, DESIGN §8). The
summary gives medians over repetitions and the ratio ours-cold total / reference
total (and ours-warm / reference).

Threads: ``--threads default`` (the default) leaves every library at its default, as
a user's first run would (numba and torch use every core). ``--threads N`` pins both:
NUMBA_NUM_THREADS / POLARS_MAX_THREADS for ours, ``torch.set_num_threads(N)`` for the
reference, and OMP/MKL/OpenBLAS to N for both.

A repetition takes about 1.5 minutes per seed on a quiet two-core machine (reference
~10-13 s, ours cold ~70-80 s of compiling, ours warm ~3 s): the default run (3 reps,
seed 0) about 5 minutes. On a loaded machine the reference at its default two torch
threads slows down several-fold (OpenMP threads competing for the cores), which is
one more reason to check ``uptime`` first; ``--threads 1`` is less sensitive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from childproc import (  # noqa: E402
    DEFAULT_REF_PYTHON, default_ours_python, dir_summary, fresh_dir, log, print_header,
    run_child, side_env, start_run,
)

# argv: side seed threads. Prints one @@RESULT line.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
side, seed, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if side == "ref":
    import plurel
    t1 = time.perf_counter()
    if threads != "default":
        import torch
        torch.set_num_threads(int(threads))
    db = plurel.SyntheticDataset(seed=seed, config=plurel.Config()).make_db()
    t2 = time.perf_counter()
    tokens = 0
    for t in db.table_dict.values():
        keys = {t.pkey_col, *t.fkey_col_to_pkey_table}
        tokens += sum(int(t.df[c].notna().sum()) for c in t.df.columns if c not in keys)
    rows = sum(len(t.df) for t in db.table_dict.values())
else:
    import plurel_fast
    t1 = time.perf_counter()
    db = plurel_fast.generate(seed)
    t2 = time.perf_counter()
    tokens, rows = db.num_tokens, db.num_rows
print("@@RESULT " + json.dumps(dict(import_s=t1 - t0, first_db_s=t2 - t1,
                                    tables=len(db.table_dict), rows=int(rows),
                                    tokens=int(tokens))), flush=True)
"""

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: str) -> dict[str, str]:
    if threads == "default":
        return {}
    env = {v: threads for v in THREAD_VARS}
    env.update(NUMBA_NUM_THREADS=threads, POLARS_MAX_THREADS=threads)
    return env


def one(args, side: str, kind: str, seed: int, rep: int, cache: Path, scratch: Path) -> dict:
    exe = args.ref_python if side == "ref" else args.ours_python
    extra = thread_env(args.threads)
    if side == "ref":
        extra["TORCH_HOME"] = str(cache / "torch")
    before = dir_summary(cache)
    run = run_child([exe, "-c", CHILD, side, str(seed), args.threads], side_env(cache, extra),
                    scratch / f"{kind}-s{seed}-r{rep}", cwd="/tmp", timeout=args.timeout)
    res = run.result() or {}
    after = dir_summary(cache)
    rec = dict(kind=kind, seed=seed, rep=rep, returncode=run.returncode,
               total_s=run.wall_s, cpu_s=run.cpu_s, maxrss_mb=run.maxrss_mb,
               cache_files_before=before[0], cache_files_after=after[0],
               cache_mb_after=after[1], **res)
    if run.returncode != 0 or not res:
        log(f"WARNING: {kind} seed {seed} rep {rep} failed (exit {run.returncode})\n{run.tail()}")
    else:
        log(f"{kind} seed {seed} rep {rep}: import {res['import_s']:.1f} s, first db "
            f"{res['first_db_s']:.1f} s, total {run.wall_s:.1f} s, "
            f"{run.maxrss_mb:.0f} MB, cache files {before[0]} -> {after[0]}")
    return rec


def fmt(x, spec=".1f"):
    return "—" if x is None else format(x, spec)


def report(runs: list[dict], seeds: list[int]) -> None:
    print("### Every run\n")
    print("| seed | rep | run | import s | first db s | total s | CPU s | peak RSS MB | "
          "tables | rows | tokens | cache files after |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['seed']} | {r['rep']} | {r['kind']} | {fmt(r.get('import_s'), '.2f')} | "
              f"{fmt(r.get('first_db_s'), '.2f')} | {r['total_s']:.2f} | {r['cpu_s']:.1f} | "
              f"{r['maxrss_mb']:.0f} | {r.get('tables', '—')} | {r.get('rows', '—')} | "
              f"{r.get('tokens', '—')} | {r['cache_files_after']} |")
    print()
    print("### Medians over repetitions\n")
    print("| seed | run | import s | first db s | total s | peak RSS MB | total / ref total |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for seed in seeds:
        med = {}
        for kind in ("reference", "ours-cold", "ours-warm"):
            ok = [r for r in runs if r["seed"] == seed and r["kind"] == kind and "import_s" in r]
            if ok:
                med[kind] = {k: statistics.median(r[k] for r in ok)
                             for k in ("import_s", "first_db_s", "total_s", "maxrss_mb")}
        ref_total = med.get("reference", {}).get("total_s")
        for kind, m in med.items():
            ratio = m["total_s"] / ref_total if ref_total else None
            print(f"| {seed} | {kind} | {m['import_s']:.2f} | {m['first_db_s']:.2f} | "
                  f"{m['total_s']:.2f} | {m['maxrss_mb']:.0f} | {fmt(ratio, '.2f')} |")
    print()
    ref_files = [r["cache_files_after"] for r in runs if r["kind"] == "reference"]
    if ref_files:
        print(f"Files the reference left in its fresh XDG_CACHE_HOME/TORCH_HOME: "
              f"{max(ref_files)} (max over runs).\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--threads", default="default",
                        help="'default' (libraries' defaults) or a thread count for both sides")
    parser.add_argument("--ref-python", default=DEFAULT_REF_PYTHON,
                        help=f"the reference virtualenv's python (default {DEFAULT_REF_PYTHON})")
    parser.add_argument("--ours-python", default=default_ours_python(),
                        help="python of the environment with plurel_fast (default: this "
                        "checkout's .venv, else the running python)")
    parser.add_argument("--no-prime", dest="prime", action="store_false",
                        help="do not import both packages once before the timed runs")
    parser.add_argument("--timeout", type=float, default=None, help="per process, seconds")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="logs and caches (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    if args.threads != "default" and not args.threads.isdigit():
        parser.error("--threads is 'default' or a positive integer")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    scratch, info = start_run(args, "cold_start-")

    runs = []
    for rep in range(args.reps):
        for seed in seeds:
            def ref():
                cache = fresh_dir(scratch, "ref-cache")
                runs.append(one(args, "ref", "reference", seed, rep, cache, scratch))
                shutil.rmtree(cache, ignore_errors=True)

            def ours():
                cache = fresh_dir(scratch, "ours-cache")
                runs.append(one(args, "ours", "ours-cold", seed, rep, cache, scratch))
                runs.append(one(args, "ours", "ours-warm", seed, rep, cache, scratch))
                shutil.rmtree(cache, ignore_errors=True)

            for step in ((ref, ours) if rep % 2 == 0 else (ours, ref)):
                step()
    info["loadavg_end"] = os.getloadavg()

    print_header("Cold first database (issue #16 item 1)", info, [
        f"seeds {seeds}, {args.reps} repetitions; threads: {args.threads}; per repetition "
        "the reference and ours (cold, then warm) alternate which goes first",
        "load average at end " + " / ".join(f"{x:.2f}" for x in info["loadavg_end"]),
        "total s = wall time of the whole process (interpreter start to exit); import and "
        "first db are timed inside it",
    ])
    report(runs, seeds)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "runs": runs}, indent=1))
        log(f"wrote {args.json}")
    return 1 if any(r["returncode"] != 0 or "import_s" not in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
