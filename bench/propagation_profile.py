"""Where the SCM propagation time of one database goes, and its GFLOP/s on the MLP work.

For every table of ``plan_database(seed, config)``, in generation order, times the
table's SCM values as ``generate`` computes them (``scm_values``: collation
partials, sources, propagation, quantization), then runs every MLP the table's SCM
evaluates per row (numerical edge encoders and decoders of the nodes in ``run_order``) alone over the same number
of rows with ``kernels.mlp.mlp_forward``, once as planned and once with every
activation replaced by the identity (the dense layers and their memory traffic only).

MLP work is counted as 2 * rows * sum(in * out) flops over those MLPs' layers; it
leaves out the collation encoders (once per parent row) and the categorical encoder
tables (once per category), so the GFLOP/s figure slightly undercounts.

    NUMBA_NUM_THREADS=1 python bench/propagation_profile.py --seed 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from plurel_fast import Config
from plurel_fast.assemble import key_columns, scm_values
from plurel_fast.generate import execute
from plurel_fast.kernels import mlp as K
from plurel_fast.plan.database import plan_database


def _mlp_ids(scm) -> list[int]:
    """The MLPs propagation runs per row: those of the nodes in ``run_order``."""
    inner = [int(v) for v in scm.run_order if not scm.is_source[v]]
    encoders = [int(m) for v in inner for m in scm.edge_mlp[scm.in_ptr[v] : scm.in_ptr[v + 1]] if m >= 0]
    return encoders + [int(scm.dec_mlp[v]) for v in inner]


def _time_mlps(bank, mlp_ids, n_rows: int, layers) -> float:
    total = 0.0
    rng = np.random.default_rng(0)
    for mlp_id in mlp_ids:
        first, count = (int(v) for v in bank.mlps[mlp_id])
        x = rng.standard_normal((n_rows, int(bank.layers[first, 1]))).astype(np.float32)
        out = np.empty((n_rows, int(bank.layers[first + count - 1, 2])), dtype=np.float32)
        t0 = time.perf_counter()
        K._mlp_forward(x, mlp_id, bank.mlps, layers, bank.weights, bank.layer_scale,
                       bank.act_params, int(bank.max_width), K.TILE_ROWS, out)
        total += time.perf_counter() - t0
    return total


def _flops(bank, mlp_ids, n_rows: int) -> int:
    flops = 0
    for mlp_id in mlp_ids:
        first, count = (int(v) for v in bank.mlps[mlp_id])
        dims = bank.layers[first : first + count, 1:3]
        flops += 2 * n_rows * int((dims[:, 0] * dims[:, 1]).sum())
    return flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    plan = plan_database(args.seed, Config())
    execute(plan)  # loads or compiles every kernel
    raw = {}
    totals = dict(prop=0.0, mlp=0.0, dense=0.0, flops=0)
    print(f"{'table':>9} {'rows':>6} {'nodes':>5} {'edges':>5} {'mlps':>5} {'prop s':>7} "
          f"{'mlp s':>6} {'dense s':>7} {'GFLOP':>6}")
    for name in plan.schema.order:
        table = plan.schema.table(name)
        scm = plan.scm(table.id)
        n = table.num_rows
        keys = key_columns(plan, table, 65_536)
        parents = {p: raw[p] for p in table.parents}
        t0 = time.perf_counter()
        values = scm_values(plan, table, scm, keys, parents, 65_536)
        prop = time.perf_counter() - t0
        raw[name] = (scm, values)
        bank = scm.mlp.materialise()  # lazy in the plan: all weights stored for the timing
        ids = _mlp_ids(scm)
        identity = bank.layers.copy()
        identity[identity[:, 3] >= 0, 3] = K.IDENTITY
        mlp = _time_mlps(bank, ids, n, bank.layers)
        dense = _time_mlps(bank, ids, n, identity)
        flops = _flops(bank, ids, n)
        for key, value in (("prop", prop), ("mlp", mlp), ("dense", dense), ("flops", flops)):
            totals[key] += value
        print(f"{name:>9} {n:6d} {scm.num_nodes:5d} {len(scm.edge_src):5d} {len(ids):5d} "
              f"{prop:7.3f} {mlp:6.3f} {dense:7.3f} {flops / 1e9:6.2f}")
    gflop = totals["flops"] / 1e9
    print(f"\nseed {args.seed}: MLP work {gflop:.1f} GFLOP")
    print(f"propagation {totals['prop']:.2f} s: {gflop / totals['prop']:.1f} GFLOP/s on the MLP work")
    print(f"the same MLPs alone {totals['mlp']:.2f} s; identity activations "
          f"{totals['dense']:.2f} s ({gflop / totals['dense']:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
