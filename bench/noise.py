"""Per-draw cost of the node noise (``kernels.noise.add_node_noise``), single core
(run with NUMBA_NUM_THREADS=1).

Calls ``add_node_noise`` the way propagation does: one call per 64-row tile of a
(64, 32) float32 accumulator, rows counting up, for several (alpha, beta) of the
default range [0.5, 5], and prints ns per draw (min over repeats).

    NUMBA_NUM_THREADS=1 python bench/noise.py [--rows 1000000] [--module FILE] [--cold]

``--cold`` times propagation's access pattern instead: per 256-row tile, one call for
each of 120 nodes with distinct (alpha, beta) tables, and a sweep over a 4 MB buffer
(standing in for the MLP weights; ``--evict-mb``) between nodes; the sweep alone is
timed too and subtracted. Uses rows / 25 rows. Measured (2026-11-27, one core):
1 node 3.34, 120 nodes 3.42, 120 nodes + 1 MB sweep 3.63, + 4 MB sweep 4.11 ns/draw,
against 1.84 for the default mode: the cold tables cost little; most of the gap is
code generation (this loop nest, like scm._propagate_chunk, compiles the noise
without vector gathers).

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


COLD_TILE = 256
COLD_NODES = 120
EVICT_BYTES = 4 << 20


def _cold_runner(mod):
    add = mod.add_node_noise

    # prange (sequential at one thread) and scratch allocated per tile, as in
    # scm._propagate_chunk. Even so, with the node loop inside, the noise compiles
    # without vector gathers (~3.3 ns a draw at one node, against ~1.9 in ``_runner``).
    @njit(parallel=True)
    def run(n_tiles, alphas, betas, q, x, cdf, guide, evict, noise):
        total = 0.0
        for tile in prange(n_tiles):
            acc = np.zeros((COLD_TILE, DIM), dtype=np.float32)
            unif = np.empty(DIM, dtype=np.float64)
            for v in range(alphas.shape[0]):
                if noise:
                    add(acc, COLD_TILE, DIM, tile * COLD_TILE, np.uint64(v + 1), alphas[v], betas[v],
                        q[v], x[v], cdf[v], guide[v], unif)
                for i in range(0, evict.shape[0], 8):  # one touch per 64-byte line
                    evict[i] += 1.0
            total += acc[tile % COLD_TILE, 0]
        return total

    return run


def _cold(runs, n_rows, repeats, evict_bytes=EVICT_BYTES, nodes=COLD_NODES):
    rng = np.random.default_rng(0)
    alphas = rng.uniform(0.5, 5.0, nodes)
    betas = rng.uniform(0.5, 5.0, nodes)
    evict = np.zeros(max(evict_bytes // 8, 8))
    n_tiles = max(1, n_rows * COLD_NODES // nodes // COLD_TILE)
    cold = []
    for name, mod, _ in runs:
        x, cdf, guide = mod.beta_tables(alphas, betas, mod.NUM_KNOTS, mod.NUM_GUIDE)
        q = mod.quantile_tables(alphas, betas, x, cdf)
        run = _cold_runner(mod)
        run(1, alphas, betas, q, x, cdf, guide, evict, True)
        cold.append((name, run, (alphas, betas, q, x, cdf, guide, evict)))
    best = {name: np.inf for name, _, _ in cold}
    base = np.inf
    for _ in range(repeats):
        for name, run, a in cold:
            t0 = time.perf_counter()
            run(n_tiles, *a, True)
            best[name] = min(best[name], time.perf_counter() - t0)
        t0 = time.perf_counter()
        cold[0][1](n_tiles, *cold[0][2], False)
        base = min(base, time.perf_counter() - t0)
    draws = n_tiles * COLD_TILE * nodes * DIM
    print(f"cold ({nodes} nodes, {evict_bytes / 2**20:g} MB sweep between nodes; sweep alone "
          f"{base / draws * 1e9:.2f} ns/draw subtracted):")
    for name, _, _ in cold:
        print(f"{name[-24:]:>24} {(best[name] - base) / draws * 1e9:8.2f} ns/draw")


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
    ap.add_argument("--cold", action="store_true", help="many nodes, caches swept between them")
    ap.add_argument("--evict-mb", type=float, default=4.0, help="sweep size of --cold")
    ap.add_argument("--nodes", type=int, default=COLD_NODES, help="distinct tables of --cold")
    args = ap.parse_args()
    mods = [("this", K)] + [(p, _load(p)) for p in args.module]
    runs = [(name, mod, _runner(mod)) for name, mod in mods]
    if args.cold:
        _cold(runs, args.rows // 25, args.repeats, int(args.evict_mb * 2**20), args.nodes)
        return
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
