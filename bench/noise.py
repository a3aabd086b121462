"""Per-draw cost of the node noise (``kernels.noise.add_node_noise``), single core
(run with NUMBA_NUM_THREADS=1).

Calls ``add_node_noise`` the way propagation does: one call per 64-row tile of a
(64, 32) float32 accumulator, rows counting up, for several (alpha, beta) of the
default range [0.5, 5], and prints ns per draw (min over repeats).

    NUMBA_NUM_THREADS=1 python bench/noise.py [--rows 1000000] [--module FILE]

``--module FILE`` times the ``add_node_noise`` of another copy of ``noise.py``
(e.g. the previous version), for alternating A/B runs in one process.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time

import numpy as np
from numba import njit, prange

import plurel_fast.kernels.noise as K

SHAPES = [(0.5, 0.5), (0.6, 4.0), (2.0, 3.0), (1.0, 1.0), (5.0, 5.0), (4.5, 0.8)]
TILE = 64
DIM = 32


def _load(path):
    name = "noise_alt_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # numba's cache pickles refer to the module by name
    spec.loader.exec_module(mod)
    return mod


def _runner(mod):
    add = mod.add_node_noise

    # Scratch allocated per tile inside the kernel, as in scm._propagate_chunk: passed
    # in as an argument, LLVM must assume it aliases the tables, and the old loop ran
    # 10x slower than in propagation.
    @njit(parallel=True)
    def run(n_rows, key, a, b, q, x, cdf, guide):
        total = 0.0
        for tile in prange(n_rows // TILE):
            acc = np.zeros((TILE, DIM), dtype=np.float32)
            unif = np.empty(DIM, dtype=np.float64)
            add(acc, TILE, DIM, tile * TILE, key, a, b, q, x, cdf, guide, unif)
            total += acc[tile % TILE, 0]
        return total

    return run


def _tables(mod, a, b):
    al, be = np.array([a]), np.array([b])
    x, cdf, guide = mod.beta_tables(al, be, mod.NUM_KNOTS, mod.NUM_GUIDE)
    q = mod.quantile_tables(al, be, x, cdf)
    return tuple(t[0] for t in (q, x, cdf, guide))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--module", action="append", default=[], help="another noise.py to time too")
    args = ap.parse_args()
    mods = [("this", K)] + [(p, _load(p)) for p in args.module]
    runs = [(name, mod, _runner(mod)) for name, mod in mods]
    tables = {(name, s): _tables(mod, *s) for name, mod, _ in runs for s in SHAPES}
    for name, mod, run in runs:  # compile
        run(TILE, np.uint64(1), 2.0, 3.0, *tables[name, (2.0, 3.0)])
    n = args.rows - args.rows % TILE
    best = {(name, s): np.inf for name, _, _ in runs for s in SHAPES}
    for _ in range(args.repeats):
        for s in SHAPES:
            for name, mod, run in runs:  # alternate versions within each shape
                t0 = time.perf_counter()
                run(n, np.uint64(12345), s[0], s[1], *tables[name, s])
                best[name, s] = min(best[name, s], time.perf_counter() - t0)
    print(f"{'shape':>12} " + " ".join(f"{name[-24:]:>24}" for name, _, _ in runs) + "   ns/draw")
    for s in SHAPES:
        print(f"{str(s):>12} " + " ".join(f"{best[name, s] / (n * DIM) * 1e9:24.2f}" for name, _, _ in runs))
    means = [np.mean([best[name, s] for s in SHAPES]) / (n * DIM) * 1e9 for name, _, _ in runs]
    print(f"{'mean':>12} " + " ".join(f"{m:24.2f}" for m in means))


if __name__ == "__main__":
    main()
