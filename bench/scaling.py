"""Time and peak memory of one table's generation as its row count grows.

Two cases, each with the table's SCM fixed across sizes (same seed, same
structure; only the row counts change):

- ``activity``: a one-table database; its only table is an activity table
  without parents.
- ``entity``: a two-table database, an entity table of ``n`` rows referenced by
  an activity table of ``--child-rows`` rows. The entity table's own
  generation is the measured figure; the child is generated afterwards and
  reported apart (``child s``, ``peak+child MB``), since its collation input is
  pre-aggregated over all ``n`` parent rows (O(n) time and n x slots x 32
  float32 of memory).

Why the SCM stays fixed: a table's row count is one planning draw whatever its
value, and every later structural draw (columns, SCM graph, MLPs, sources)
comes from its own stream, so ``Choices("range", [n, n])`` changes nothing but
the row counts. Each child checks this by a digest of the table's column plan,
its post-processing plan and every array of its ``ScmPlan`` except the
source parameters that depend on ``n`` by design (the ts cycle period
``ceil(n * perc)``, DESIGN §4.3, and the bank's row count); the script prints the
digest per size and fails if they differ.

Every size runs in a fresh subprocess, after one warm-up subprocess (numba's
on-disk cache is then warm). Inside a child: imports, then the same tables
at 1 000 rows (loads the kernels from the cache), then ``baseline`` =
``ru_maxrss``; then the measured table as ``generate.execute`` does it (key
columns, SCM values in row chunks, post-processing and Polars assembly) and
``peak`` = ``ru_maxrss``. ``RSS/row`` is ``(peak - baseline) / rows``.
Planning is timed apart (``plan s``) and left out of ``s`` and ``ns/row``.

The slopes are least-squares fits of log(seconds) and log(peak - baseline)
against log(rows) over the sizes >= 10^4: 1.0 is linear.

Usage:
    python bench/scaling.py                       # 10^3 .. 10^6 rows, both cases
    python bench/scaling.py --max-rows 1e7        # the full run (about 25 min per case)
    NUMBA_NUM_THREADS=1 python bench/scaling.py   # one core
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import subprocess
import sys
import time

WARM_ROWS = 1_000
FIT_FROM = 10**4


# ---------------------------------------------------------------------- child side


def _config(case: str, rows: int, child_rows: int, num_cols: int, layout: str | None):
    from plurel_fast import Choices, Config, DatabaseParams

    fields = dict(
        num_tables_choices=Choices("range", [1, 1] if case == "activity" else [2, 2]),
        num_cols_choices=Choices("range", [num_cols, num_cols]),
        num_rows_activity_table_choices=Choices(
            "range", [rows, rows] if case == "activity" else [child_rows, child_rows]
        ),
        num_rows_entity_table_choices=Choices("range", [rows, rows]),
    )
    if layout:
        fields["table_layout_choices"] = Choices("set", [layout])
    return Config(database_params=DatabaseParams(**fields))


def _measured_table(plan, case: str):
    kind = "activity" if case == "activity" else "entity"
    tables = [t for t in plan.schema.tables if t.kind == kind and not t.parents]
    if len(tables) != 1 or (case == "entity" and len(tables[0].children) != 1):
        raise SystemExit(
            f"seed {plan.seed} does not give the {case} case its shape (tables: "
            f"{[(t.name, t.kind, t.parents, t.children) for t in plan.schema.tables]}); "
            "try another --seed"
        )
    return tables[0]


def _structure(plan, table) -> dict:
    """Shape and digest of everything planned for ``table`` that must not depend on n."""
    import hashlib

    import msgspec
    import numpy as np

    from plurel_fast.plan.sources import COL_CYCLE_FREQ, COL_TYPE, GEN_TS

    scm = plan.scms[table.id]
    digest = hashlib.sha256()

    def feed(name, value):
        digest.update(name.encode())
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, msgspec.Struct):
            for f in msgspec.structs.fields(value):
                feed(f"{name}.{f.name}", getattr(value, f.name))
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                feed(f"{name}[{i}]", v)
        else:
            digest.update(repr(value).encode())

    for f in msgspec.structs.fields(scm):
        if f.name != "sources":
            feed(f.name, getattr(scm, f.name))
    gens = scm.sources.gens.copy()
    gens[gens[:, COL_TYPE] == GEN_TS, COL_CYCLE_FREQ] = 0.0  # ceil(n * perc) by design
    for f in msgspec.structs.fields(scm.sources):
        if f.name not in ("num_rows", "gens"):
            feed(f"sources.{f.name}", getattr(scm.sources, f.name))
    feed("sources.gens", gens)
    feed("features", table.features)
    feed("post", plan.posts[table.id])
    return {
        "mode": scm.mode,
        "layout": scm.layout,
        "nodes": scm.num_nodes,
        "edges": int(len(scm.edge_src)),
        "columns": len(table.features),
        "categorical": sum(c.num_categories > 0 for c in table.features),
        "sources": scm.sources.num_sources,
        "mlps": int(scm.mlp.mlps.shape[0]),
        "digest": digest.hexdigest()[:16],
    }


def _generate_table(plan, table, raw, chunk_rows: int):
    """One table exactly as ``generate.execute`` makes it; returns its raw values."""
    from plurel_fast.assemble import assemble_table, key_columns, scm_values

    keys = key_columns(plan, table, chunk_rows)
    parents = {p: (plan.scm(plan.schema.table(p).id), raw[p]) for p in table.parents}
    values = scm_values(plan, table, plan.scm(table.id), keys, parents, chunk_rows)
    frame = assemble_table(plan, table, keys, values)
    assert frame.height == table.num_rows
    return values


def _child(args) -> dict:
    import gc
    import resource

    import numba

    from plurel_fast.plan.database import plan_database

    def maxrss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def run(plan):
        table = _measured_table(plan, args.case)
        t0 = time.perf_counter()
        values = _generate_table(plan, table, {}, args.chunk_rows)
        t1 = time.perf_counter()
        peak = maxrss_mb()
        child_s = None
        if args.case == "entity":
            child = plan.schema.table(table.children[0])
            _generate_table(plan, child, {table.name: values}, args.chunk_rows)
            child_s = time.perf_counter() - t1
        return table, t1 - t0, peak, child_s

    cfg = lambda rows: _config(args.case, rows, args.child_rows, args.num_cols, args.layout)  # noqa: E731
    run(plan_database(args.seed, cfg(WARM_ROWS)))  # loads every kernel from numba's cache
    gc.collect()
    baseline = maxrss_mb()

    t0 = time.perf_counter()
    plan = plan_database(args.seed, cfg(args.rows))
    plan_s = time.perf_counter() - t0
    best = None
    for _ in range(args.repeats):
        table, seconds, peak, child_s = run(plan)
        if best is None or seconds < best["seconds"]:
            best = {"seconds": seconds, "child_seconds": child_s}
    return {
        "case": args.case,
        "rows": args.rows,
        "table": table.name,
        "plan_seconds": plan_s,
        **best,
        "baseline_mb": baseline,
        "peak_mb": peak,
        "peak_with_child_mb": maxrss_mb(),
        "threads": numba.get_num_threads(),
        "structure": _structure(plan, table),
    }


# --------------------------------------------------------------------- parent side


def _sizes(min_rows: int, max_rows: int, per_decade: int) -> list[int]:
    lo, hi = math.log10(min_rows), math.log10(max_rows)
    steps = int(round((hi - lo) * per_decade))
    return sorted({int(round(10 ** (lo + i / per_decade))) for i in range(steps + 1)})


def _slope(xs, ys) -> float:
    """Least-squares slope of log(y) on log(x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else float("nan")


def _spawn(args, case: str, rows: int) -> dict:
    cmd = [
        sys.executable, os.path.abspath(__file__), "--child", "--case", case,
        "--rows", str(rows), "--seed", str(args.seed), "--num-cols", str(args.num_cols),
        "--child-rows", str(args.child_rows), "--chunk-rows", str(args.chunk_rows),
        "--repeats", str(args.repeats),
    ]
    if args.layout:
        cmd += ["--layout", args.layout]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child for {case} at {rows} rows failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(case: str, results: list[dict]) -> None:
    s = results[0]["structure"]
    who = "activity table, no parents" if case == "activity" else (
        f"entity table with one child table of {results[0].get('child_rows', '?')} rows"
    )
    print(f"\n### {case}: {results[0]['table']} ({who})")
    print(
        f"SCM: {s['mode']}, {s['layout']}, {s['nodes']} nodes, {s['edges']} edges, "
        f"{s['columns']} columns ({s['categorical']} categorical), {s['sources']} sources, "
        f"{s['mlps']} MLPs; digest {s['digest']}"
    )
    digests = {r["structure"]["digest"] for r in results}
    same = len(digests) == 1 and all(r["structure"] == s for r in results)
    print(f"SCM structure identical across sizes: {'yes' if same else 'NO'}")
    if not same:
        for r in results:
            print(f"  {r['rows']:>10}: {r['structure']}")

    base = min(r["baseline_mb"] for r in results)
    print(f"baseline RSS (imports + kernels loaded, after a {WARM_ROWS}-row warm-up): "
          f"{base:.0f}-{max(r['baseline_mb'] for r in results):.0f} MB")
    entity = case == "entity"
    head = (f"| {'rows':>10} | {'plan s':>6} | {'s':>9} | {'ns/row':>8} | {'peak RSS MB':>11} "
            f"| {'RSS/row B':>9} |")
    rule = "|" + "|".join("-" * (len(c) - 1) + ":" for c in head.split("|")[1:-1]) + "|"
    if entity:
        head += f" {'child s':>8} | {'peak+child MB':>13} |"
        rule += "-" * 9 + ":|" + "-" * 14 + ":|"
    print(head)
    print(rule)
    for r in results:
        extra = r["peak_mb"] - r["baseline_mb"]
        line = (
            f"| {r['rows']:>10} | {r['plan_seconds']:>6.2f} | {r['seconds']:>9.3f} "
            f"| {r['seconds'] * 1e9 / r['rows']:>8.0f} | {r['peak_mb']:>11.0f} "
            f"| {extra * 2**20 / r['rows']:>9.1f} |"
        )
        if entity:
            line += f" {r['child_seconds']:>8.3f} | {r['peak_with_child_mb']:>13.0f} |"
        print(line)

    fit = [r for r in results if r["rows"] >= FIT_FROM]
    rows = [r["rows"] for r in fit]
    text = (
        f"log-log slope over rows >= {FIT_FROM:.0e} ({len(fit)} sizes): "
        f"time {_slope(rows, [r['seconds'] for r in fit]):.3f}, "
        f"RSS beyond baseline {_slope(rows, [r['peak_mb'] - r['baseline_mb'] for r in fit]):.3f}"
    )
    if entity:
        text += (
            f", child time {_slope(rows, [r['child_seconds'] for r in fit]):.3f}, "
            f"RSS with child beyond baseline "
            f"{_slope(rows, [r['peak_with_child_mb'] - r['baseline_mb'] for r in fit]):.3f}"
        )
    print(text)


def _header(args) -> None:
    env = " ".join(
        f"{k}={os.environ[k]}" for k in ("NUMBA_NUM_THREADS",) if k in os.environ
    )
    print("command:", (env + " " if env else "") + "python " + shlex.join(sys.argv))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "kernels", "plurel_fast"],
            capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}"
        f"{' (+ uncommitted changes in kernels/ or plurel_fast/)' if dirty else ''}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    print(
        f"seed {args.seed}, {args.num_cols} columns per table, chunk_rows {args.chunk_rows}, "
        f"child table {args.child_rows} rows (entity case), best of {args.repeats}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-rows", type=float, default=1e3)
    parser.add_argument("--max-rows", type=float, default=1e6, help="e.g. 1e7 for the full run")
    parser.add_argument("--per-decade", type=int, default=2, help="sizes per factor of 10")
    parser.add_argument("--cases", default="activity,entity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-cols", type=int, default=12, help="feature columns of every table")
    parser.add_argument("--child-rows", type=int, default=1_000, help="entity case: child table rows")
    parser.add_argument("--layout", default=None, help="fix the table layout (default: drawn)")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many, per child")
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write every child's result here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chunk_rows is None:
        from plurel_fast.generate import DEFAULT_CHUNK_ROWS

        args.chunk_rows = DEFAULT_CHUNK_ROWS
    if args.child:
        print(json.dumps(_child(args)))
        return

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in ("activity", "entity")]
    if bad:
        parser.error(f"--cases: unknown case(s) {bad}; known: activity, entity")
    sizes = _sizes(int(args.min_rows), int(args.max_rows), args.per_decade)
    _header(args)
    print(f"sizes: {sizes}", flush=True)
    everything = []
    for case in cases:
        _spawn(args, case, WARM_ROWS)  # fills numba's on-disk cache if it is cold
        results = []
        for rows in sizes:
            t0 = time.perf_counter()
            r = _spawn(args, case, rows)
            r["child_rows"] = args.child_rows
            results.append(r)
            print(f"  {case} {rows} rows: {r['seconds']:.2f} s "
                  f"(child process {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        print(f"threads: {results[0]['threads']}")
        _report(case, results)
        everything += results
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
