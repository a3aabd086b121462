"""Peak memory and time of one database with one large activity table, written by
`plurel_fast.generate_to` in row groups (issue 16 item 2), against its row count.

Each size runs in a fresh process (peak RSS is the child's ``ru_maxrss``), kernels
loaded from the cache first. Prints a markdown table and the log-log slopes of time and
peak memory against rows.

    python bench/stream_scale.py --rows 1e6,3e6,1e7,3e7,1e8 [--num-cols 14] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def _config(rows: int, num_cols: int):
    from plurel_fast import Choices, Config, DatabaseParams

    return Config(database_params=DatabaseParams(
        num_tables_choices=Choices("range", [1, 1]),
        num_cols_choices=Choices("range", [num_cols, num_cols]),
        num_rows_activity_table_choices=Choices("range", [rows, rows]),
    ))


def _child(rows: int, num_cols: int, seed: int, out: str, stream: bool) -> None:
    import plurel_fast
    from plurel_fast.stream import generate_to

    generate_to(seed, _config(1000, num_cols), os.path.join(out, "warm"), stream=stream)
    t0 = time.perf_counter()
    saved = generate_to(seed, _config(rows, num_cols), os.path.join(out, "db"), stream=stream)
    seconds = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(saved.path) for f in fs)
    print(json.dumps({
        "rows": saved.num_rows, "tokens": saved.num_tokens, "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "folder_mb": size / 2**20, "streamed": saved.streamed,
        "version": plurel_fast.__version__ if hasattr(plurel_fast, "__version__") else "",
    }))


def _slope(xs, ys) -> float:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y > 0]
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1e6,3e6,1e7")
    p.add_argument("--num-cols", type=int, default=14)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--in-memory", action="store_true", help="stream=False, for comparison")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(int(args.child[0]), args.num_cols, args.seed, args.child[1], args.child[2] == "1")
        return
    env = dict(os.environ)
    if args.threads:
        env["NUMBA_NUM_THREADS"] = str(args.threads)
    results = []
    print("| rows | tokens | seconds | rows/s | peak RSS (MB) | folder (MB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in [int(float(x)) for x in args.rows.split(",")]:
        out = tempfile.mkdtemp(prefix="stream_scale-", dir=os.environ.get("TMPDIR"))
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--num-cols", str(args.num_cols), "--seed",
                 str(args.seed), "--child", str(r), out, "0" if args.in_memory else "1"],
                env=env, stdout=subprocess.PIPE, text=True, check=True)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"| {res['rows']:,} | {res['tokens']:,} | {res['seconds']:.1f} | "
              f"{res['rows'] / res['seconds']:,.0f} | {res['peak_mb']:.0f} | "
              f"{res['folder_mb']:.0f} |", flush=True)
    if len(results) > 1:
        xs = [r["rows"] for r in results]
        print(f"\nlog-log slope: time {_slope(xs, [r['seconds'] for r in results]):.3f}, "
              f"peak RSS {_slope(xs, [r['peak_mb'] for r in results]):.3f}")


if __name__ == "__main__":
    main()
