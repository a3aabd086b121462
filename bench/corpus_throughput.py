"""Feature cells per second of a corpus job: W worker processes x T numba threads.

A corpus (thousands of seeds) is made of independent ``generate(seed, config)``
calls, so a machine's cores can be shared two ways: threads inside one
``generate`` (what issue 3's "two cores" figure measures) or one worker process
per core with one thread each. This script times both on the same seeds:

    python bench/corpus_throughput.py --seeds 0-31 --layouts 1x2,2x1 [--repeats 2]

Layout ``WxT``: W processes (``spawn``), each with ``NUMBA_NUM_THREADS=T``; each
worker first generates one warm-up database (seed 1000: numba's cache load and
first-call costs stay out of the timing, as a long-running corpus worker would
amortise them), then all workers start together and take seeds from a shared
queue, smallest seed first. Printed per layout: wall seconds from the common start to
the last database, feature cells, pooled cells per second (cells / wall), and
the largest worker's peak RSS. The databases are not written to disk.
Layouts are run in turn, ``--repeats`` times, alternating (this VM drifts).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _worker(threads: int, preset: str, queue, results, ready, start) -> None:
    os.environ["NUMBA_NUM_THREADS"] = str(threads)  # before numba is imported
    try:
        from plurel_fast import Config, generate

        config = Config.preset(preset)
        generate(1000, config)  # warm-up: kernels from numba's cache
    except BaseException as err:
        results.put(f"warm-up failed: {err!r}")
        raise
    finally:
        ready.release()
    start.wait()
    cells, seed = 0, None
    try:
        while True:
            seed = queue.get()
            if seed is None:
                break
            db = generate(seed, config)
            cells += sum(len(t.df) * len(t.feature_cols) for t in db.table_dict.values())
    except BaseException as err:
        results.put(f"seed {seed} failed: {err!r}")
        raise
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.put((cells, time.perf_counter(), rss_mb))


def run_layout(workers: int, threads: int, seeds: list[int], preset: str) -> dict:
    ctx = mp.get_context("spawn")
    queue, results = ctx.Queue(), ctx.Queue()
    ready, start = ctx.Semaphore(0), ctx.Event()
    for seed in seeds:
        queue.put(seed)
    for _ in range(workers):
        queue.put(None)
    procs = [ctx.Process(target=_worker, args=(threads, preset, queue, results, ready, start))
             for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in range(workers):
        ready.acquire()
    t0 = time.perf_counter()
    start.set()
    out = [results.get() for _ in range(workers)]
    for p in procs:
        p.join()
    failures = [item for item in out if isinstance(item, str)]
    if failures:
        raise RuntimeError("; ".join(failures))
    wall = max(t for _, t, _ in out) - t0
    cells = sum(c for c, _, _ in out)
    return {"wall": wall, "cells": cells, "rate": cells / wall, "rss": max(r for _, _, r in out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-31", help="inclusive range, e.g. 0-31")
    parser.add_argument("--layouts", default="1x2,2x1", help="comma-separated WxT")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    seeds = _seeds(args.seeds)
    layouts = [tuple(int(v) for v in item.split("x")) for item in args.layouts.split(",")]
    print(f"seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}), preset {args.preset}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'layout':>7} {'run':>3} {'wall s':>7} {'cells':>10} {'cells/s':>10} {'peak RSS MB':>12}")
    for r in range(args.repeats):
        for w, t in layouts:
            res = run_layout(w, t, seeds, args.preset)
            print(f"{w}x{t:<5} {r + 1:>3} {res['wall']:>7.2f} {res['cells']:>10} "
                  f"{res['rate']:>10.0f} {res['rss']:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
