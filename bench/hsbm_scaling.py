"""Scaling of HSBM foreign-key sampling with the child row count (DESIGN §3).

    python bench/hsbm_scaling.py [--repeats 3] [--max-exponent 7]

Prints markdown tables for bench/RESULTS.md:

1. ns per child row of ``sample_parents`` for 10**4 .. 10**7 child rows and
   10**5 parent rows (fixed 3-level hierarchy, best of ``--repeats``, JIT warmed
   up first), with the ratio to the 10**4 figure: flat means linear time.
2. Peak traced memory of one call (tracemalloc sees NumPy's allocations) over
   the bytes of the returned int64 column: ~1 means nothing beyond the output.
3. At the reference's own size (5 000 child x 1 000 parent rows), plan + kernel
   against a dense O(n_P x n_C) NumPy sampler doing what the reference does
   (log affinity matrix, per-column softmax, cumulative sum, inverse CDF), and
   against the reference's ``sample_bipartite_assignments`` itself when its source
   is found (``$PLUREL_REF_BIPARTITE``, default /tmp/ref/src/plurel/bipartite.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time
import tracemalloc

import numba
import numpy as np

from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.plan.hsbm import HsbmPlan, base_block_clusters, level_matrix

PARENT_HIERARCHY = [3, 2, 3]
CHILD_HIERARCHY = [2, 3, 2]
REF_PATH = os.environ.get("PLUREL_REF_BIPARTITE", "/tmp/ref/src/plurel/bipartite.py")


def make_matrices(seed=0):
    rng = np.random.default_rng(seed)
    return [level_matrix(a, b, rng) for a, b in zip(PARENT_HIERARCHY, CHILD_HIERARCHY)]


def make_plan(num_parent_rows, num_child_rows, matrices):
    return HsbmPlan.from_hierarchies(
        num_parent_rows, num_child_rows, PARENT_HIERARCHY, CHILD_HIERARCHY, matrices, key=1
    )


def best_of(repeats, fn, *args):
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def peak_bytes(fn, *args):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def dense_sample_parents(num_parent_rows, num_child_rows, hierarchy_p, hierarchy_c, matrices, rng):
    """The reference's method in plain NumPy: one n_P-long distribution per child row."""

    def row_clusters(n, hierarchy):
        rows_per_block = max(1, -(-n // math.prod(hierarchy)))
        return base_block_clusters(hierarchy)[np.arange(n) // rows_per_block]

    clusters_p = row_clusters(num_parent_rows, hierarchy_p)
    clusters_c = row_clusters(num_child_rows, hierarchy_c)
    log_probs = np.zeros((num_parent_rows, num_child_rows))
    for level, matrix in enumerate(matrices):
        log_probs += np.log(matrix)[clusters_p[:, level][:, None], clusters_c[:, level][None, :]]
    log_probs -= log_probs.max(axis=0, keepdims=True)
    probs = np.exp(log_probs)
    probs /= probs.sum(axis=0, keepdims=True)
    cdf = np.cumsum(probs, axis=0)
    u = rng.uniform(size=(1, num_child_rows))
    return np.minimum((cdf < u).sum(axis=0), num_parent_rows - 1)


def load_reference():
    if not os.path.exists(REF_PATH):
        return None
    spec = importlib.util.spec_from_file_location("plurel_reference_bipartite", REF_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sample_bipartite_assignments


def scaling(args, matrices):
    num_parent_rows = 100_000
    sample_parents(make_plan(num_parent_rows, 10**5, matrices))  # JIT compile / cache load, thread pool start
    print(f"### sample_parents, {num_parent_rows:,} parent rows, hierarchies "
          f"{PARENT_HIERARCHY} / {CHILD_HIERARCHY}, best of {args.repeats}\n")
    print("| child rows | time (ms) | ns / child row | ratio to 10^4 | peak traced memory / output bytes |")
    print("|---:|---:|---:|---:|---:|")
    base = None
    for exponent in range(4, args.max_exponent + 1):
        n = 10**exponent
        plan = make_plan(num_parent_rows, n, matrices)
        seconds = best_of(args.repeats, sample_parents, plan)
        ns = seconds * 1e9 / n
        base = base or ns
        memory = peak_bytes(sample_parents, plan) / (8 * n)
        print(f"| 10^{exponent} | {seconds * 1e3:.2f} | {ns:.2f} | {ns / base:.2f} | {memory:.3f} |")
    print(f"\nplan size: block_cdf {plan.block_cdf.shape} = {plan.block_cdf.nbytes} bytes, "
          "independent of the row counts\n")


def versus_dense(args, matrices):
    n_p, n_c = 1_000, 5_000
    rng = np.random.default_rng(0)

    def ours():
        return sample_parents(make_plan(n_p, n_c, matrices))

    def dense():
        return dense_sample_parents(n_p, n_c, PARENT_HIERARCHY, CHILD_HIERARCHY, matrices, rng)

    ours()
    rows = [
        ("plurel_fast plan + sample_parents", best_of(args.repeats, ours), peak_bytes(ours)),
        ("plurel_fast sample_parents only", best_of(args.repeats, sample_parents, make_plan(n_p, n_c, matrices)),
         peak_bytes(sample_parents, make_plan(n_p, n_c, matrices))),
        ("dense NumPy, reference's method", best_of(args.repeats, dense), peak_bytes(dense)),
    ]
    reference = load_reference()
    if reference is not None:
        np.random.seed(0)

        def ref():
            return reference(n_p, n_c, PARENT_HIERARCHY, CHILD_HIERARCHY)

        rows.append(("reference sample_bipartite_assignments", best_of(args.repeats, ref), peak_bytes(ref)))
    ours_seconds = rows[0][1]
    print(f"### {n_c:,} child x {n_p:,} parent rows (the reference's size), best of {args.repeats}\n")
    print("| implementation | time (ms) | time / plurel_fast plan + kernel | peak traced memory (MB) |")
    print("|---|---:|---:|---:|")
    for name, seconds, memory in rows:
        print(f"| {name} | {seconds * 1e3:.3f} | {seconds / ours_seconds:.1f} | {memory / 1e6:.2f} |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-exponent", type=int, default=7)
    args = parser.parse_args()
    print(f"numba {numba.__version__}, numpy {np.__version__}, "
          f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS} (threads in use: {numba.get_num_threads()})\n")
    matrices = make_matrices()
    scaling(args, matrices)
    versus_dense(args, matrices)


if __name__ == "__main__":
    main()
