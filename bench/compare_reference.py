"""plurel_fast against the reference ``plurel`` 1.1.0: speed and fidelity (issue #5).

Needs the reference in a separate Python 3.11 virtualenv (bench/README.md gives
the commands; it is never a dependency of this project):

    python bench/compare_reference.py --mode both [--ref-python PATH] [--out FILE]
    python bench/compare_reference.py --mode speed --large

Every database is generated in a fresh subprocess (``python -c CHILD``) that
prints one JSON line; only small results cross the pipe. Per seed the runs
alternate between the generators, and which one goes first alternates too, so a
drift in the machine's load falls on both. The child reports:

- ``gen_s``: seconds of generation alone, ``plurel_fast.generate(seed, config)``
  or ``plurel.SyntheticDataset(seed, config).make_db()`` (constructor included),
  in a process that has imported the package and nothing else. For plurel_fast
  this includes loading the compiled kernels from numba's on-disk cache, which
  must be warm: one warm-up subprocess per generator runs first, and the output
  says so. ``--child-warmup`` instead generates a small database in the child
  before the timed one (steady-state throughput of a long-lived worker).
- ``import_s``: seconds to import the package; ``wall_s`` (measured by the
  parent): the whole subprocess, interpreter start-up to exit.
- ``cells``: feature cells, rows x feature columns (not keys, not the time
  column) summed over tables; ``cells/s`` = cells / gen_s. The two generators
  draw different databases for the same seed, so speed is compared as the ratio
  of cells/s, never of seconds.
- ``peak_rss_mb``: ``ru_maxrss`` of the child right after generation
  (``import_rss_mb``: the same after the import, i.e. the package's baseline).

Threads. plurel_fast runs once per ``--threads`` value (default 1 and 2) with
NUMBA_NUM_THREADS, POLARS_MAX_THREADS and the BLAS/OpenMP variables set to it;
the reference runs with ``torch.set_num_threads(1)`` and OMP/MKL/OpenBLAS at 1.
The per-core comparison is plurel_fast at 1 thread against the reference.

Fidelity (``--mode fidelity|both``). Each child also computes the statistics of
``bench/fidelity.py`` (see its docstring for the exact definitions) on its own
database, after the timing. For every statistic the report gives the
*per-database* value (the value itself for database-level statistics, otherwise
the median over that database's tables / foreign keys / columns / column pairs),
so each generator contributes one value per seed, and the two-sample
Kolmogorov-Smirnov p-value (``scipy.stats.ks_2samp``) of those per-database
values; p < 0.01 is flagged ``DIFF``. The KS p-value of the *pooled* raw values
(every column of every database) is printed as well, for information only: values
of one database are not independent, so that p-value is too small and is never
flagged.

Row counts. ``--config JSON`` holds DatabaseParams overrides that both packages
accept: field -> ``[kind, value]`` for a Choices, e.g.
``'{"num_tables_choices": ["range", [3, 5]]}'``, or an ISO string for the
timestamps. ``--large`` adds the configurations in ``LARGE_CONFIGS`` (entity
10^4 / activity 5*10^4 rows and entity 10^5 / activity 5*10^5 rows, 3-6 tables),
run for ``--large-seeds``, where the reference's dense n_parent x n_child foreign
key sampling dominates. A child that runs past ``--timeout`` is killed and
recorded as a timeout; where the reference timed out, the speed-up column shows
the lower bound timeout / plurel_fast's seconds (a time ratio: the databases
differ, but come from the same configuration). After the reference's first
timeout in a large configuration its remaining seeds there are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from childproc import machine_info  # noqa: E402
from fidelity import STATISTICS, per_database  # noqa: E402

DEFAULT_REF_PYTHON = os.environ.get("PLUREL_REF_PYTHON", "/work/refvenv/bin/python")
RESULT_PREFIX = "@@RESULT "

LARGE_CONFIGS = {
    "large-1e4": {
        "num_tables_choices": ["range", [3, 6]],
        "num_rows_entity_table_choices": ["range", [10_000, 10_000]],
        "num_rows_activity_table_choices": ["range", [50_000, 50_000]],
    },
    "large-1e5": {
        "num_tables_choices": ["range", [3, 6]],
        "num_rows_entity_table_choices": ["range", [100_000, 100_000]],
        "num_rows_activity_table_choices": ["range", [500_000, 500_000]],
    },
}

# A database small enough to load every kernel / warm torch, for --child-warmup.
WARMUP_OVERRIDES = {
    "num_tables_choices": ["range", [3, 3]],
    "num_rows_entity_table_choices": ["range", [50, 50]],
    "num_rows_activity_table_choices": ["range", [100, 100]],
}

# Runs in the child: argv = side seed overrides_json bench_dir want_stats warmup.
CHILD = r"""
import json, os, resource, sys, time

side, seed, overrides, bench_dir, want_stats, warmup = sys.argv[1:7]
seed, overrides = int(seed), json.loads(overrides)
want_stats, warmup = want_stats == "1", json.loads(warmup)

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

t0 = time.perf_counter()
if side == "ours":
    import numba
    import plurel_fast as pkg

    def make_config(over):
        fields = {}
        for k, v in over.items():
            fields[k] = pkg.Choices(v[0], v[1]) if isinstance(v, list) else v
        return pkg.Config(database_params=pkg.DatabaseParams(**fields))

    def run(seed, config):
        return pkg.generate(seed, config)

    threads = {"numba": numba.get_num_threads(), "layer": None}
else:
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import pandas as pd
    import plurel as pkg

    def make_config(over):
        fields = {}
        for k, v in over.items():
            if isinstance(v, list):
                fields[k] = pkg.Choices(kind=v[0], value=list(v[1]))
            elif k.endswith("_timestamp"):
                fields[k] = pd.Timestamp(v)
            else:
                fields[k] = v
        return pkg.Config(database_params=pkg.DatabaseParams(**fields))

    def run(seed, config):
        return pkg.SyntheticDataset(seed=seed, config=config).make_db()

    threads = {"torch": torch.get_num_threads()}
t1 = time.perf_counter()
import_rss = rss_mb()

config = make_config(overrides)
if warmup is not None:
    run(10**6 + 7, make_config(warmup))
t2 = time.perf_counter()
db = run(seed, config)
t3 = time.perf_counter()
peak_rss = rss_mb()
if side == "ours":
    try:
        threads["layer"] = numba.threading_layer()
    except ValueError:  # no parallel region ran
        pass

cells = 0
rows = 0
for t in db.table_dict.values():
    skip = {t.pkey_col, t.time_col, *t.fkey_col_to_pkey_table}
    n = len(t.df)
    rows += n
    cells += n * sum(1 for c in t.df.columns if c not in skip)

result = dict(
    side=side, seed=seed, import_s=t1 - t0, warmup_s=t2 - t1, gen_s=t3 - t2,
    cells=cells, rows=rows, tables=len(db.table_dict), import_rss_mb=import_rss,
    peak_rss_mb=peak_rss, threads=threads, pkg_version=getattr(pkg, "__version__", None),
)
if want_stats:
    sys.path.insert(0, bench_dir)
    from fidelity import database_stats, table_views
    t4 = time.perf_counter()
    result["stats"] = database_stats(table_views(db.table_dict))
    result["stats_s"] = time.perf_counter() - t4
print("@@RESULT " + json.dumps(result), flush=True)
"""


# ------------------------------------------------------------------------ running


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"3"`` or ``"0,2,5-6"`` -> list of ints (ranges inclusive)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in (
        "NUMBA_NUM_THREADS",
        "POLARS_MAX_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
    ):
        env[var] = str(threads)
    env["TQDM_DISABLE"] = "1"  # the reference draws progress bars on stderr
    return env


class Runner:
    def __init__(self, args):
        self.python = {"ours": sys.executable, "ref": args.ref_python}
        self.timeout = args.timeout
        self.warmup = WARMUP_OVERRIDES if args.child_warmup else None

    def run(self, side, seed, overrides, threads, want_stats):
        argv = [
            self.python[side],
            "-c",
            CHILD,
            side,
            str(seed),
            json.dumps(overrides),
            str(BENCH_DIR),
            "1" if want_stats else "0",
            json.dumps(self.warmup),
        ]
        label = f"{side} t={threads} seed={seed}"
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                env=thread_env(threads),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                cwd="/tmp",  # so neither side imports from the work tree by accident
            )
        except subprocess.TimeoutExpired:
            print(f"  {label}: killed after {self.timeout:.0f} s", file=sys.stderr)
            return dict(side=side, seed=seed, threads_req=threads, status="timeout",
                        wall_s=time.perf_counter() - t0)
        wall = time.perf_counter() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if proc.returncode != 0 or not lines:
            tail = "\n    ".join(proc.stderr.strip().splitlines()[-15:])
            print(f"  {label}: failed (exit {proc.returncode})\n    {tail}", file=sys.stderr)
            return dict(side=side, seed=seed, threads_req=threads, status="error",
                        wall_s=wall, stderr_tail=proc.stderr[-4000:])
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
        result.update(threads_req=threads, status="ok", wall_s=wall)
        rate = result["cells"] / result["gen_s"] if result["gen_s"] > 0 else float("nan")
        print(
            f"  {label}: gen {result['gen_s']:.2f} s, {result['cells']} cells, "
            f"{rate:,.0f} cells/s, peak RSS {result['peak_rss_mb']:.0f} MB, wall {wall:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return result


def run_config(runner, name, overrides, speed_seeds, fidelity_seeds, threads, skip_ref_after_timeout):
    """All runs of one configuration, alternating generators per seed."""
    records = []
    ref_timed_out = False
    speed_set = set(speed_seeds)
    for i, seed in enumerate(sorted(set(speed_seeds) | set(fidelity_seeds))):
        want_stats = seed in fidelity_seeds
        ours_threads = threads if seed in speed_set else threads[:1]
        jobs = [("ours", t, want_stats and j == 0) for j, t in enumerate(ours_threads)]
        ref_job = ("ref", 1, want_stats)
        jobs = [ref_job] + jobs if i % 2 else jobs + [ref_job]
        for side, t, stats in jobs:
            if side == "ref" and ref_timed_out and skip_ref_after_timeout:
                records.append(dict(side="ref", seed=seed, threads_req=1, status="skipped",
                                    config=name, in_speed=seed in speed_set))
                continue
            rec = runner.run(side, seed, overrides, t, stats)
            rec["config"] = name
            rec["in_speed"] = seed in speed_set
            records.append(rec)
            if side == "ref" and rec["status"] == "timeout":
                ref_timed_out = True
    return records


# ------------------------------------------------------------------------ reports


def _rate(r):
    return r["cells"] / r["gen_s"] if r.get("status") == "ok" and r["gen_s"] > 0 else None


def _fmt(x, spec=".2f"):
    return "–" if x is None else format(x, spec)


def speed_report(records, name, threads, timeout) -> dict:
    recs = [r for r in records if r["config"] == name and r.get("in_speed")]
    seeds = sorted({r["seed"] for r in recs})
    runs = [("ours", t) for t in threads] + [("ref", 1)]

    def find(side, t, seed):
        for r in recs:
            if r["side"] == side and r["threads_req"] == t and r["seed"] == seed:
                return r
        return None

    print(f"\n### Speed: {name}\n")
    print("| seed | generator | threads | tables | feature cells | gen (s) | cells/s "
          "| peak RSS (MB) | import (s) | wall (s) | speed-up vs ref |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    speedups = {t: [] for t in threads}
    for seed in seeds:
        ref = find("ref", 1, seed)
        ref_rate = _rate(ref) if ref else None
        for side, t in runs:
            r = find(side, t, seed)
            if r is None:
                continue
            label = "plurel_fast" if side == "ours" else "plurel (ref)"
            if r["status"] != "ok":
                gen = f"> {timeout:.0f}" if r["status"] == "timeout" else r["status"]
                if r["status"] == "skipped":
                    gen = "skipped (timed out before)"
                print(f"| {seed} | {label} | {t} | – | – | {gen} | – | – | – | – | – |")
                continue
            rate = _rate(r)
            up = "1"
            if side == "ours":
                if ref_rate:
                    up = f"{rate / ref_rate:.1f}"
                    speedups[t].append(rate / ref_rate)
                elif ref and ref["status"] == "timeout":
                    # The reference's database is unknown, so compare times: same config,
                    # same distribution of cells.
                    up = f"> {timeout / r['gen_s']:.0f} (time)"
                else:
                    up = "–"
            print(
                f"| {seed} | {label} | {t} | {r['tables']} | {r['cells']} | {r['gen_s']:.2f} "
                f"| {rate:,.0f} | {r['peak_rss_mb']:.0f} | {r['import_s']:.2f} "
                f"| {r['wall_s']:.1f} | {up} |"
            )

    summary = {}
    print(f"\nMedians over seeds {seeds[0]}-{seeds[-1]} ({name}):\n" if seeds else "")
    print("| generator | threads | gen (s) | cells/s | pooled cells/s | peak RSS (MB) "
          "| wall (s) | median speed-up | pooled speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side, t in runs:
        ok = [r for s in seeds if (r := find(side, t, s)) and r["status"] == "ok"]
        if not ok:
            continue
        med = lambda key: statistics.median(r[key] for r in ok)  # noqa: E731
        med_rate = statistics.median(_rate(r) for r in ok)
        pooled = sum(r["cells"] for r in ok) / sum(r["gen_s"] for r in ok)
        if side == "ours":
            med_up = statistics.median(speedups[t]) if speedups[t] else None
            # pooled over the seeds where both finished
            both = [s for s in seeds if (a := find("ours", t, s)) and a["status"] == "ok"
                    and (b := find("ref", 1, s)) and b["status"] == "ok"]
            if both:
                oc = sum(find("ours", t, s)["cells"] for s in both)
                og = sum(find("ours", t, s)["gen_s"] for s in both)
                rc = sum(find("ref", 1, s)["cells"] for s in both)
                rg = sum(find("ref", 1, s)["gen_s"] for s in both)
                pooled_up = (oc / og) / (rc / rg)
            else:
                pooled_up = None
        else:
            med_up = pooled_up = 1.0
        label = "plurel_fast" if side == "ours" else "plurel (ref)"
        print(
            f"| {label} | {t} | {med('gen_s'):.2f} | {med_rate:,.0f} | {pooled:,.0f} "
            f"| {med('peak_rss_mb'):.0f} | {med('wall_s'):.1f} | {_fmt(med_up, '.1f')} "
            f"| {_fmt(pooled_up, '.1f')} |"
        )
        summary[f"{side}_t{t}"] = dict(
            n=len(ok), median_gen_s=med("gen_s"), median_cells_per_s=med_rate,
            pooled_cells_per_s=pooled, median_peak_rss_mb=med("peak_rss_mb"),
            median_wall_s=med("wall_s"), median_speedup=med_up, pooled_speedup=pooled_up,
        )
    timeouts = sum(1 for r in recs if r["side"] == "ref" and r["status"] in ("timeout", "skipped"))
    if timeouts:
        print(f"\nThe reference timed out or was skipped on {timeouts} seed(s) "
              f"(limit {timeout:.0f} s per database); those seeds are out of the medians.")
    return summary


def fidelity_report(records, name, alpha=0.01) -> dict:
    from scipy.stats import ks_2samp
    import numpy as np

    recs = [r for r in records if r["config"] == name and r.get("status") == "ok" and "stats" in r]
    by_side = {"ours": [r for r in recs if r["side"] == "ours"],
               "ref": [r for r in recs if r["side"] == "ref"]}
    n_db = {s: len(v) for s, v in by_side.items()}
    print(f"\n### Fidelity: {name} ({n_db['ours']} plurel_fast and {n_db['ref']} reference "
          "databases)\n")
    print("Per-database value: the statistic itself, or its median over the database's units. "
          f"`DIFF`: KS p < {alpha} on per-database values. Pooled p: raw values of all "
          "databases, units not independent, for information only.\n")
    print("| statistic | unit | ours median [IQR] | ref median [IQR] | KS p (per-db) | "
          "flag | n ours / ref | pooled n ours / ref | KS p (pooled) |")
    print("|---|---|---|---|---:|---|---:|---:|---:|")

    def q(values):
        if not values:
            return "–"
        a = np.asarray(values)
        lo, med, hi = np.percentile(a, [25, 50, 75])
        return f"{med:.3g} [{lo:.3g}, {hi:.3g}]"

    out = {}
    for stat, unit in STATISTICS.items():
        per_db = {s: [v for r in rs if (v := per_database(r["stats"][stat], unit)) is not None]
                  for s, rs in by_side.items()}
        pooled = {s: [x for r in rs for x in r["stats"][stat]] for s, rs in by_side.items()}
        p = p_pool = None
        if per_db["ours"] and per_db["ref"]:
            p = float(ks_2samp(per_db["ours"], per_db["ref"]).pvalue)
        if unit != "database" and pooled["ours"] and pooled["ref"]:
            p_pool = float(ks_2samp(pooled["ours"], pooled["ref"]).pvalue)
        flag = "DIFF" if p is not None and p < alpha else ""
        print(
            f"| {stat} | {unit} | {q(per_db['ours'])} | {q(per_db['ref'])} | {_fmt(p, '.3g')} "
            f"| {flag} | {len(per_db['ours'])} / {len(per_db['ref'])} "
            f"| {len(pooled['ours'])} / {len(pooled['ref'])} | {_fmt(p_pool, '.3g')} |"
        )
        out[stat] = dict(unit=unit, ks_p=p, flagged=bool(flag), ks_p_pooled=p_pool,
                         per_db_ours=per_db["ours"], per_db_ref=per_db["ref"])
    flagged = [s for s, v in out.items() if v["flagged"]]
    print(f"\nFlagged (p < {alpha}): {', '.join(flagged) if flagged else 'none'}")
    if min(n_db.values()) < 32:
        print("(Fewer than 32 databases per side: a trial, not the acceptance figure.)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring and bench/README.md for what is measured.",
    )
    parser.add_argument("--ref-python", default=DEFAULT_REF_PYTHON,
                        help="python of the reference virtualenv (default $PLUREL_REF_PYTHON "
                             "or %(default)s)")
    parser.add_argument("--mode", choices=["speed", "fidelity", "both"], default="both")
    parser.add_argument("--seeds", default="0-7", help="speed seeds, e.g. 0-7 or 0,3,5-6")
    parser.add_argument("--fidelity-seeds", default="0-31",
                        help="fidelity seeds (>= 32 for the acceptance figure)")
    parser.add_argument("--threads", default="1,2",
                        help="plurel_fast thread counts (NUMBA_NUM_THREADS); the first one "
                             "is used for fidelity-only seeds")
    parser.add_argument("--config", default="{}",
                        help="DatabaseParams overrides as JSON, e.g. "
                             "'{\"num_tables_choices\": [\"range\", [3, 5]]}'")
    parser.add_argument("--large", action="store_true",
                        help="also run LARGE_CONFIGS (speed only) on --large-seeds")
    parser.add_argument("--large-only", action="store_true", help="run only LARGE_CONFIGS")
    parser.add_argument("--large-seeds", default="0-2")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a child is killed (default %(default)s)")
    parser.add_argument("--child-warmup", action="store_true",
                        help="generate a tiny database in each child before the timed one")
    parser.add_argument("--out", help="write every record and the summaries as JSON here")
    args = parser.parse_args()

    threads = [int(t) for t in args.threads.split(",")]
    overrides = json.loads(args.config)
    if not Path(args.ref_python).exists():
        sys.exit(f"reference python {args.ref_python!r} not found; create the virtualenv as "
                 "bench/README.md says, or pass --ref-python / set PLUREL_REF_PYTHON")

    info = machine_info(args.ref_python, sys.executable)
    print(f"# plurel_fast vs plurel — {info['date']}\n")
    print(f"Machine: {info['cpus']} CPUs, {info.get('cpu', '?')}; load average at start "
          f"{info['loadavg_start'][0]:.2f}")
    print(f"plurel_fast side: commit {info['commit']}, {info['ours_versions']}")
    if info["dirty_files"]:
        print(f"WARNING: uncommitted changes to the package ({', '.join(info['dirty_files'])}); "
              "figures are not reproducible from the commit")
    print(f"reference side ({args.ref_python}): {info['ref_versions']}")
    print(f"Config overrides: {json.dumps(overrides)}; plurel_fast threads {threads}, "
          "reference 1 torch thread")

    runner = Runner(args)
    print("\nWarm-up: one subprocess per generator (not measured). plurel_fast's figures "
          "assume a warm numba cache; this run fills it if it was cold.", flush=True)
    for side in ("ours", "ref"):
        w = runner.run(side, 10**6, WARMUP_OVERRIDES, threads[0], False)
        if w["status"] != "ok":
            sys.exit(f"warm-up of {side} failed; see the error above")
    if args.child_warmup:
        print("Each child generates a small database before the timed one (--child-warmup).")
    else:
        print("Each timed generation is the first in its process (kernels loaded from "
              "numba's cache inside gen time; torch's first calls likewise).")

    speed = args.mode in ("speed", "both")
    fidelity = args.mode in ("fidelity", "both")
    plan = []
    if not args.large_only:
        plan.append(("main", overrides,
                     parse_seeds(args.seeds) if speed else [],
                     parse_seeds(args.fidelity_seeds) if fidelity else []))
    if args.large or args.large_only:
        for name, over in LARGE_CONFIGS.items():
            plan.append((name, over, parse_seeds(args.large_seeds), []))

    records, summaries = [], {}
    for name, over, s_seeds, f_seeds in plan:
        print(f"\nRunning {name}: speed seeds {s_seeds or '-'}, fidelity seeds "
              f"{f_seeds or '-'} ...", flush=True)
        recs = run_config(runner, name, over, s_seeds, f_seeds, threads,
                          skip_ref_after_timeout=name != "main")
        records.extend(recs)
        summaries[name] = {}
        if s_seeds:
            summaries[name]["speed"] = speed_report(recs, name, threads, args.timeout)
        if f_seeds:
            summaries[name]["fidelity"] = fidelity_report(recs, name)

    info["loadavg_end"] = os.getloadavg()
    print(f"\nLoad average at end {info['loadavg_end'][0]:.2f}.")
    if args.out:
        Path(args.out).write_text(json.dumps(
            dict(machine=info, args=vars(args), configs={n: o for n, o, _, _ in plan},
                 summaries=summaries, records=records), indent=1))
        print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
