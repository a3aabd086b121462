"""Corpus throughput: ``plurel-fast corpus`` against the reference's own corpus workload
(issue #14).

    python bench/corpus_vs_reference.py --num-dbs 32 --workers 1,2 \
        [--seed-offset 0] [--ref-python /work/refvenv/bin/python] \
        [--ours-python .venv/bin/python] [--json out.json] | tee corpus_vs_ref.md

For every worker count W (``--workers``, in that order), one after the other:

1. reference, W workers: ``bench/reference_corpus.py`` in the reference's virtualenv, a
   fresh process running the reference's corpus script's workload (a
   ``multiprocessing.Pool`` of W workers, one torch thread each, ``get_db()`` of
   ``SyntheticDataset(seed)`` for seeds S..S+N-1, saved as parquet; see that file's
   docstring). Nothing is cached between runs: every run writes into fresh folders.
2. ours, cold: ``plurel-fast corpus --out DIR --num-dbs N --seed-offset S --num-proc W``
   with an empty kernel cache (``XDG_CACHE_HOME`` a fresh folder, ``NUMBA_CACHE_DIR``
   unset), so the wall time includes compiling the numba kernels once.
3. ours, warm (unless ``--no-warm``): the same command into a fresh output folder, on
   the kernel cache step 2 filled: the steady state of any later corpus job.

So the order is ref W=1, ours W=1 (cold, warm), ref W=2, ours W=2 (cold, warm), ...
Before the first timed run both packages are imported once, untimed, with a
throwaway cache (``--no-prime`` skips this), so that neither side's first run pays
for reading its libraries from disk. Each side's environment is the caller's, minus
``NUMBA_CACHE_DIR`` and ``PYTHONPATH``, with ``XDG_CACHE_HOME`` pointed at a fresh
folder.

Measured, per run: wall seconds of the whole command (interpreter start-up, imports,
compile, pool start-up and teardown included), CPU seconds of the process tree
(``wait4``), databases, tokens and per-database seconds (the reference's from
``reference_corpus.py``, ours from ``corpus.jsonl``). A token is a non-null cell of a
feature column or of the time column, keys excluded (DESIGN §8); both sides count the
database they save.

Reported: tokens/s = tokens / wall; tokens/s per core = tokens/s / W (one worker per
core); ours/ref = the ratio of tokens/s at the same W (the two generators draw
different databases for the same seed, so throughput is compared, never seconds);
scaling efficiency = tokens/s at W / (W x tokens/s at the first W). Compile seconds
= ours cold wall - ours warm wall at the same W.

Projection for the paper's corpus (1,024 databases) on a node of C cores, one worker
per core: hours = 1024 / (C x r) / 3600, r the databases per second per core measured
at W (r = databases / wall / W); ours cold adds one compile (measured at that W),
since the parent compiles once before its workers start. It assumes throughput per
core stays what it was at W (no memory-bandwidth contention beyond what W showed) and
ignores the tail of the last, largest databases; use it for orders of magnitude.

Logs and outputs go to ``--work-dir`` (default a temporary folder, databases deleted
after each run unless ``--keep``). Progress goes to stderr, the Markdown report to
stdout. Duration on a quiet 2-core machine: the reference takes ~7-10 s per database
per core plus ~2-3 s of imports per run; ours ~70-80 s of compiling per cold run, then
~0.5-1 s per database per core plus ~5 s of start-up. N=32 with W=1,2 (six runs): about
12-15 minutes; N=4: about 5 minutes (mostly our two compiles). Other jobs on the
machine distort everything: check ``uptime`` first.
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
    BENCH_DIR, DEFAULT_REF_PYTHON, default_ours_python, dir_summary, fresh_dir, log,
    ours_cli, print_header, run_child, side_env, start_run,
)

PAPER_DBS = 1024
NODE_CORES = (2, 16, 64)


def read_jsonl(path: Path) -> list[dict]:
    latest: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("seed"), int):
                latest[rec["seed"]] = rec
    return [latest[s] for s in sorted(latest)]


def summarise(kind: str, w: int, run, records: list[dict], seeds: list[int], **extra) -> dict:
    ok = [r for r in records if r.get("status") == "ok"]
    missing = sorted(set(seeds) - {r["seed"] for r in ok})
    tokens = sum(r["tokens"] for r in ok)
    secs = [r["seconds"] for r in ok]
    out = dict(
        kind=kind, workers=w, returncode=run.returncode, timed_out=run.timed_out,
        wall_s=run.wall_s, cpu_s=run.cpu_s, maxrss_mb=run.maxrss_mb,
        databases=len(ok), missing_seeds=missing, tokens=tokens,
        rows=sum(r["rows"] for r in ok),
        tokens_per_s=tokens / run.wall_s if run.wall_s else None,
        db_seconds_median=statistics.median(secs) if secs else None,
        db_seconds_sum=sum(secs),
        records=records, stdout=str(run.stdout), stderr=str(run.stderr),
    )
    out.update(extra)
    if run.returncode != 0 or missing:
        log(f"WARNING: {kind} W={w}: exit {run.returncode}, missing seeds {missing}\n"
            f"{run.tail()}")
    return out


def run_reference(args, w: int, scratch: Path, seeds: list[int]) -> dict:
    out_dir = fresh_dir(scratch, f"ref-w{w}-dbs")
    cache = fresh_dir(scratch, f"ref-w{w}-cache")
    cmd = [args.ref_python, str(BENCH_DIR / "reference_corpus.py"),
           "--seed-offset", str(args.seed_offset), "--num-dbs", str(args.num_dbs),
           "--num-proc", str(w), "--out-dir", str(out_dir)]
    log(f"reference W={w}: {' '.join(cmd)}")
    run = run_child(cmd, side_env(cache), scratch / f"ref-w{w}", cwd="/tmp",
                    timeout=args.timeout)
    result = run.result() or {}
    records = result.get("records", [])
    disk = dir_summary(out_dir)
    cache_files = dir_summary(cache)
    s = summarise("reference", w, run, records, seeds, import_s=result.get("import_seconds"),
                  pool_s=result.get("pool_seconds"), out_mb=disk[1],
                  cache_files_written=cache_files[0])
    log(f"reference W={w}: {s['databases']} dbs, {s['tokens']:,} tokens, {run.wall_s:.1f} s")
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return s


def run_ours(args, w: int, scratch: Path, seeds: list[int], cache: Path, label: str) -> dict:
    out_dir = scratch / f"ours-w{w}-{label}-dbs"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cmd = [*ours_cli(args.ours_python), "corpus", "--out", str(out_dir),
           "--num-dbs", str(args.num_dbs), "--seed-offset", str(args.seed_offset),
           "--num-proc", str(w)]
    kernel_files_before = dir_summary(cache)[0]
    log(f"ours W={w} {label} (kernel cache files {kernel_files_before}): {' '.join(cmd)}")
    run = run_child(cmd, side_env(cache), scratch / f"ours-w{w}-{label}", cwd="/tmp",
                    timeout=args.timeout)
    records = read_jsonl(out_dir / "corpus.jsonl")
    disk = dir_summary(out_dir)
    s = summarise(f"ours-{label}", w, run, records, seeds, out_mb=disk[1],
                  kernel_cache_files_before=kernel_files_before,
                  kernel_cache_files_after=dir_summary(cache)[0])
    log(f"ours W={w} {label}: {s['databases']} dbs, {s['tokens']:,} tokens, {run.wall_s:.1f} s")
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return s


# ------------------------------------------------------------------------ report


def fmt(x, spec=",.0f", none="—"):
    return none if x is None else format(x, spec)


def hours(databases_per_s_per_core: float | None, cores: int, fixed_s: float = 0.0):
    if not databases_per_s_per_core:
        return None
    return (PAPER_DBS / (cores * databases_per_s_per_core) + fixed_s) / 3600


def report(runs: list[dict], workers: list[int], n: int) -> None:
    by = {(r["kind"], r["workers"]): r for r in runs}
    first_w = workers[0]

    def tps(kind, w):
        r = by.get((kind, w))
        return r["tokens_per_s"] if r else None

    print("### Cold: each side from a fresh process, ours with an empty kernel cache\n")
    print("| W | generator | databases | tokens | wall s | CPU s | CPU util | tokens/s "
          "| tokens/s per core | ours/ref | scaling eff. | median s/db | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in workers:
        for kind in ("reference", "ours-cold"):
            r = by.get((kind, w))
            if r is None:
                continue
            ratio = None
            if kind != "reference" and tps("reference", w):
                ratio = r["tokens_per_s"] / tps("reference", w)
            base = tps(kind, first_w)
            eff = r["tokens_per_s"] * first_w / (w * base) if base and w != first_w else None
            flag = "" if r["returncode"] == 0 and not r["missing_seeds"] else " (INCOMPLETE)"
            print(f"| {w} | {kind}{flag} | {r['databases']} | {r['tokens']:,} | "
                  f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['cpu_s'] / (w * r['wall_s']):.2f} | "
                  f"{fmt(r['tokens_per_s'])} | "
                  f"{fmt(r['tokens_per_s'] / w)} | {fmt(ratio, '.2f')} | {fmt(eff, '.2f')} | "
                  f"{fmt(r['db_seconds_median'], '.2f')} | {r['maxrss_mb']:.0f} |")
    print("\nCPU util = CPU s / (W x wall s) of the whole process tree: well below 1 for the "
          "reference means its workers waited for a core (other load on the machine); ours "
          "cold includes a one-thread compile. At equal W the per-core ratio is the ours/ref "
          "column (both sides run one worker per core).\n")

    warm = [w for w in workers if ("ours-warm", w) in by]
    if warm:
        print("### Warm: ours on a filled kernel cache (no compile), against the same "
              "reference runs\n")
        print("| W | ours warm wall s | tokens/s | tokens/s per core | ours/ref | "
              "compile s (cold - warm) | ref import s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for w in warm:
            r, c, ref = by[("ours-warm", w)], by.get(("ours-cold", w)), by.get(("reference", w))
            ratio = r["tokens_per_s"] / ref["tokens_per_s"] if ref and ref["tokens_per_s"] else None
            comp = c["wall_s"] - r["wall_s"] if c else None
            print(f"| {w} | {r['wall_s']:.1f} | {fmt(r['tokens_per_s'])} | "
                  f"{fmt(r['tokens_per_s'] / w)} | {fmt(ratio, '.2f')} | {fmt(comp, '.0f')} | "
                  f"{fmt(ref.get('import_s') if ref else None, '.1f')} |")
        print("\nThe reference caches nothing between runs, so its warm figures are its cold "
              "ones (its import, about the figure above, is paid once per run).\n")

    print(f"### Projection: the paper's corpus of {PAPER_DBS:,} databases\n")
    print("hours = 1024 / (C x r) / 3600, r = databases / wall / W at the measured W (one "
          "worker per core); ours cold adds one kernel compile (cold - warm wall at that "
          "W). Assumes per-core throughput stays as measured.\n")
    cores_hdr = " | ".join(f"{c} cores" for c in NODE_CORES)
    print(f"| basis | generator | s/db per core | {cores_hdr} |")
    print("|---|---|---:|" + "---:|" * len(NODE_CORES))
    for w in workers:
        ref = by.get(("reference", w))
        cold, warm_r = by.get(("ours-cold", w)), by.get(("ours-warm", w))
        rows = []
        if ref and ref["databases"]:
            rows.append(("reference", ref["databases"] / ref["wall_s"] / w, 0.0))
        if warm_r and warm_r["databases"]:
            r = warm_r["databases"] / warm_r["wall_s"] / w
            rows.append(("ours warm", r, 0.0))
            if cold:
                rows.append(("ours incl. one compile", r, max(0.0, cold["wall_s"] - warm_r["wall_s"])))
        elif cold and cold["databases"]:
            rows.append(("ours cold (compile spread over N)", cold["databases"] / cold["wall_s"] / w,
                         0.0))
        for name, rate, fixed in rows:
            cells = " | ".join(fmt(hours(rate, c, fixed), ".2f") for c in NODE_CORES)
            print(f"| W={w} | {name} | {1 / rate:.2f} | {cells} |")
    print()
    if n < 32:
        print(f"(N = {n} databases per run: a trial of the harness, not a measurement.)\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-dbs", type=int, default=32, help="databases per run (default 32)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts, run in this order (default 1,2)")
    parser.add_argument("--ref-python", default=DEFAULT_REF_PYTHON,
                        help=f"the reference virtualenv's python (default {DEFAULT_REF_PYTHON}, "
                        "or $PLUREL_REF_PYTHON)")
    parser.add_argument("--ours-python", default=default_ours_python(),
                        help="python of the environment with plurel_fast installed (default: "
                        "this checkout's .venv, else the running python)")
    parser.add_argument("--no-warm", dest="warm", action="store_false",
                        help="skip ours' warm runs (no warm table, no compile figure)")
    parser.add_argument("--no-prime", dest="prime", action="store_false",
                        help="do not import both packages once before the timed runs")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill a run after this many seconds (default: none)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="logs and outputs (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    seeds = list(range(args.seed_offset, args.seed_offset + args.num_dbs))

    scratch, info = start_run(args, "corpus_vs_ref-")

    runs = []
    for w in workers:
        runs.append(run_reference(args, w, scratch, seeds))
        cache = fresh_dir(scratch, f"ours-w{w}-cache")
        runs.append(run_ours(args, w, scratch, seeds, cache, "cold"))
        if args.warm:
            runs.append(run_ours(args, w, scratch, seeds, cache, "warm"))
        shutil.rmtree(cache, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()

    print_header(
        "Corpus throughput against the reference's corpus workload (issue #14)", info,
        [f"seeds {seeds[0]}..{seeds[-1]} (N = {len(seeds)}), workers {workers}; order per W: "
         "reference, ours cold" + (", ours warm" if args.warm else ""),
         "load average at end " + " / ".join(f"{x:.2f}" for x in info["loadavg_end"]),
         "tokens: non-null cells of feature and time columns, keys excluded (DESIGN §8), "
         "counted on the saved databases"])
    report(runs, workers, args.num_dbs)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "args": {k: str(v) for k, v in
                                                                 vars(args).items()},
                                         "runs": runs}, indent=1))
        log(f"wrote {args.json}")
    log(f"logs in {scratch}")
    bad = [r for r in runs if r["returncode"] != 0 or r["missing_seeds"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
