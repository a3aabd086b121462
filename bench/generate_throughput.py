"""End-to-end throughput of ``generate(seed, Config())`` (issue 3 targets).

Runs each seed once in this (warm) process after a warm-up database, the way
``generate`` does (``plan_database(..., scms=False)`` then ``execute``, which
plans each table's SCM when it runs it), and prints per seed: plan (schema and
foreign keys) and execute (SCMs, propagation, assembly) seconds, feature cells,
cells per second;
then the median and the pooled rate, and the process's peak RSS. Compare with
the reference figures quoted in bench/RESULTS.md (plurel 1.1.0, one thread,
same machine kind): 19.7 k feature cells/s median over seeds 0-7.

Usage: NUMBA_NUM_THREADS=1 python bench/generate_throughput.py [--seeds 0-7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numba

from plurel_fast import Config
from plurel_fast.generate import execute
from plurel_fast.plan.database import plan_database


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7", help="inclusive range, e.g. 0-7")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    config = Config.preset(args.preset)

    execute(plan_database(1000, config, scms=False))  # JIT warm-up (or cache load)
    print(f"threads={numba.get_num_threads()} preset={args.preset}")
    print(f"{'seed':>4} {'tables':>6} {'plan s':>7} {'exec s':>7} {'cells':>9} {'cells/s':>10}")
    rates, cells_all, secs_all = [], 0, 0.0
    for seed in _seeds(args.seeds):
        t0 = time.perf_counter()
        plan = plan_database(seed, config, scms=False)
        t1 = time.perf_counter()
        db = execute(plan)
        t2 = time.perf_counter()
        cells = sum(len(t.df) * len(t.feature_cols) for t in db.table_dict.values())
        rate = cells / (t2 - t0)
        rates.append(rate)
        cells_all += cells
        secs_all += t2 - t0
        print(f"{seed:>4} {len(db.table_dict):>6} {t1 - t0:>7.2f} {t2 - t1:>7.2f} {cells:>9} {rate:>10.0f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"median {statistics.median(rates):.0f} cells/s, pooled {cells_all / secs_all:.0f} cells/s, "
          f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
