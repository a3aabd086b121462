"""Row-wise SCM propagation (DESIGN §4.4) and cross-table collation partials.

``propagate(plan, ...)`` evaluates one table's SCM on a range of rows: sources
come from ``kernels.sources``, and every inner node v that can reach a column
(``ScmPlan.run_order``), in topological order, gets

    emb = noise_v + AGG_v(clamp(w_uv * enc_uv(value_u)) for parents u,
                          collation partial of each foreign key)
    value_v = decoder_v(emb)

with the Beta(alpha_v, beta_v)/32 noise drawn by the counter-based RNG at
(noise_key[v], row, dimension), by inverse CDF from a per-node table
(``kernels.noise``; exact rejection sampling for shapes below 1/2).

Propagation runs node by node over a *pass* of rows (one float32 per node and
row, at most ``PASS_BYTES``): a node's MLPs are drawn from the plan's lazy
bank (``kernels.weights.draw_layers``) just before the node runs, and stay in
cache while the pass's rows go through them in tiles, dealt to the threads.
So an SCM's weights are never all in memory (a wide one has ~100 MB), and
each is read from cache rather than streamed once per tile. Rows are
independent, so the result does not depend on passes, tiles, chunks or threads.

``collation_partials`` pre-aggregates, once per parent row, the clamped and
weighted collation encodings of all the parent's column nodes for one child
table and each aggregation the child uses. Sum, max, product and log-sum-exp
are associative, so combining that partial with the child's other inputs gives
the aggregate over all inputs (DESIGN §4.4 b), at the cost of one parent row
instead of one child row.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

from plurel_fast.kernels import vmath
from plurel_fast.kernels.codes import (
    AGG_LOGEXP,
    AGG_MAX,
    AGG_PRODUCT,
    AGG_SUM,
    EMB_CATEGORIES,
    EMB_OFFSET,
    LAYER_IN,
    LAYER_OUT,
    LAYER_WEIGHT_OFFSET,
    MLP_FIRST_LAYER,
    MLP_NUM_LAYERS,
    PENDING_EMB,
    PENDING_MLP,
)
from plurel_fast.kernels.mlp import (
    categorical_decode_tile,
    mlp_forward_fold_tile,
    mlp_forward_tile,
)
from plurel_fast.kernels.noise import (
    NUM_GUIDE,
    NUM_KNOTS,
    TABLE_MIN_SHAPE,
    add_node_noise,
    beta_tables,
    quantile_tables,
)
from plurel_fast.kernels.simd import empty_aligned
from plurel_fast.kernels.weights import draw_layers

TILE_ROWS = 64  # collation tiles
# Propagation tiles: each thread runs its share of a pass's rows through a node
# in tiles of this many rows (on seed 7's tables 256 was the best of 32-512 by a
# few %, at one and two threads; whole databases: no measurable difference).
MAX_TILE_ROWS = 256
# The fewest rows a propagation thread takes: smaller tables use fewer threads.
MIN_WORKER_ROWS = 64
# Propagation runs node by node over a pass of rows holding one float32 per
# (node, row): at most this many bytes...
PASS_BYTES = 16 << 20
# ...but at least this many rows (a pass re-draws a lazy bank's weights).
MIN_PASS_ROWS = 4096
# Weights of a lazy bank's categorical encoders drawn at once by encoder_tables.
ENCODER_BATCH_WEIGHTS = 1 << 20
INPUT_CLAMP = np.float32(1e4)
_NEG_INF = np.float32(-np.inf)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)

# ------------------------------------------------------------------ kernel argument bundles
# The propagation kernels take their arrays in a few named tuples (by keyword where
# built) rather than ~46 positional arguments: a signature says what a kernel reads,
# and two arrays of one dtype can no longer trade places unnoticed. numba accepts
# named tuples with cache=True and inside prange bodies, and lowers one to its fields,
# so the compiled loops are the same (same bytes, same speed: bench/RESULTS.md,
# session 6).

ScmGraph = namedtuple(
    "ScmGraph",
    "run_order is_source source_index num_categories agg noise_alpha noise_beta noise_key"
    " dec_mlp dec_emb in_ptr edge_src edge_weight edge_mlp edge_table enc_tables"
    " node_column emb_dim",
)
ScmGraph.__doc__ = """One table's SCM as propagation reads it: the ``ScmPlan`` arrays of the
same names, ``node_column`` (int64 (n,): the output column of each column node, else -1)
and ``emb_dim`` (int64: the embedding width)."""
_PLAN_GRAPH_FIELDS = ScmGraph._fields[:-2]  # the ScmPlan fields of the same names

MlpArrays = namedtuple(
    "MlpArrays", "mlps layers weights layer_scale act_params emb_offsets emb_weights"
)
MlpArrays.__doc__ = """The arrays of an ``MlpBankArrays`` that the MLP kernels read (same
names; ``layers``/``weights`` possibly from ``weights_of``, or a lazy bank's per-node
buffer)."""

LayerDraws = namedtuple("LayerDraws", ["lazy", "key", "draw", "init", "density"])
LayerDraws.__doc__ = """How a lazy bank draws its matrices on demand (``lazy`` true):
``MlpBankArrays.layer_key``, ``layer_draw``, ``layer_init``, ``layer_density``
(``kernels.weights.draw_layers``)."""

NoiseTables = namedtuple("NoiseTables", ["q", "x", "cdf", "guide"])
NoiseTables.__doc__ = """Per-node Beta noise tables (``noise_tables_of``): quantiles, knots,
CDF at the knots and guide table, one row per node (``kernels.noise``)."""

Collation = namedtuple("Collation", ["node_slot", "fk_rows", "fk_base", "partials"])
Collation.__doc__ = """The pre-aggregated collation inputs of a chunk's rows (``propagate``'s
arguments of the same names)."""

Tiling = namedtuple("Tiling", ["pass_rows", "tile_rows", "n_workers", "max_width"])
Tiling.__doc__ = """How propagation splits its rows (int64 each): rows per pass and per
tile, worker threads, and the width of the hidden-layer buffers (the bank's
``max_width``)."""

Scratch = namedtuple(
    "Scratch", "acc lse_sum enc h x1 y1 labels prows unif buf_a buf_b"
)
Scratch.__doc__ = """Propagation workers' scratch, one slice per worker along the first
axis (``_worker_scratch``)."""


@njit(inline="always", cache=True)
def _clamp_input(y):
    if y > INPUT_CLAMP:
        return INPUT_CLAMP
    if y < -INPUT_CLAMP:
        return -INPUT_CLAMP
    return y


@njit(cache=True)
def _agg_init(agg, acc, lse_sum, n_rows, dim):
    """Identity of the aggregation: 0 (sum), -inf (max, logexp), 1 (product)."""
    if agg == AGG_SUM:
        init = np.float32(0.0)
    elif agg == AGG_PRODUCT:
        init = np.float32(1.0)
    else:
        init = _NEG_INF
    for t in range(n_rows):
        for j in range(dim):
            acc[t, j] = init
    if agg == AGG_LOGEXP:  # the running sums only log-sum-exp reads
        for t in range(n_rows):
            for j in range(dim):
                lse_sum[t, j] = _ZERO


@njit(inline="always", cache=True)
def _lse_add(acc, lse_sum, t, j, y):
    """Fold y into a running log-sum-exp: maximum in ``acc``, sum of exp(x - max) in
    ``lse_sum``. One exponential of -|y - max| either way and selects instead of
    branches, so the loops over j vectorise (scalar libm exp cost ~20 ns each)."""
    m = acc[t, j]
    d = vmath.exp(-abs(y - m))  # m = -inf (no input yet): d = 0
    s = lse_sum[t, j]
    lse_sum[t, j] = s * d + _ONE if y > m else s + d
    acc[t, j] = max(y, m)


@njit(cache=True)
def _agg_finish(agg, acc, lse_sum, n_rows, dim):
    if agg == AGG_LOGEXP:
        for t in range(n_rows):
            for j in range(dim):
                acc[t, j] = acc[t, j] + vmath.log(lse_sum[t, j])


@njit(cache=True)
def _fold_edge(agg, acc, lse_sum, enc, w, n_rows, dim):
    """Fold clamp(w * enc[t]) into the aggregate of every row (one loop per aggregation,
    so the inner loop has no branch on the aggregation and vectorises)."""
    if agg == AGG_SUM:
        for t in range(n_rows):
            for j in range(dim):
                acc[t, j] += _clamp_input(w * enc[t, j])
    elif agg == AGG_MAX:
        for t in range(n_rows):
            for j in range(dim):
                y = _clamp_input(w * enc[t, j])
                if y > acc[t, j]:
                    acc[t, j] = y
    elif agg == AGG_PRODUCT:
        for t in range(n_rows):
            for j in range(dim):
                acc[t, j] *= _clamp_input(w * enc[t, j])
    else:
        _fold_edge_lse(acc, lse_sum, enc, w, n_rows, dim)


@njit(cache=True)
def _fold_edge_lse(acc, lse_sum, enc, w, n_rows, dim):
    # A function of its own: inside _fold_edge's aggregation switch LLVM
    # vectorised this loop badly (8 ns per element instead of 1).
    for t in range(n_rows):
        for j in range(dim):
            _lse_add(acc, lse_sum, t, j, _clamp_input(w * enc[t, j]))


@njit(cache=True)
def _fold_table_edge(agg, acc, lse_sum, value_row, table_off, enc_tables, w, n_rows, dim):
    """``_encode`` of a categorical edge (a table row per label) and ``_fold_edge``
    in one pass: the same operations on the same values, without the copy."""
    if agg == AGG_SUM:
        for t in range(n_rows):
            src = enc_tables[table_off + np.int64(value_row[t]) * dim:]
            for j in range(dim):
                acc[t, j] += _clamp_input(w * src[j])
    elif agg == AGG_MAX:
        for t in range(n_rows):
            src = enc_tables[table_off + np.int64(value_row[t]) * dim:]
            for j in range(dim):
                y = _clamp_input(w * src[j])
                if y > acc[t, j]:
                    acc[t, j] = y
    elif agg == AGG_PRODUCT:
        for t in range(n_rows):
            src = enc_tables[table_off + np.int64(value_row[t]) * dim:]
            for j in range(dim):
                acc[t, j] *= _clamp_input(w * src[j])
    else:
        for t in range(n_rows):
            src = enc_tables[table_off + np.int64(value_row[t]) * dim:]
            for j in range(dim):
                _lse_add(acc, lse_sum, t, j, _clamp_input(w * src[j]))


@njit(cache=True)
def _fold_partials(agg, acc, lse_sum, partials, prows, slot, n_rows, dim):
    """Fold the pre-aggregated collation input of parent row prows[t] into row t."""
    if agg == AGG_SUM:
        for t in range(n_rows):
            src = partials[prows[t], slot]
            for j in range(dim):
                acc[t, j] += src[j]
    elif agg == AGG_MAX:
        for t in range(n_rows):
            src = partials[prows[t], slot]
            for j in range(dim):
                if src[j] > acc[t, j]:
                    acc[t, j] = src[j]
    elif agg == AGG_PRODUCT:
        for t in range(n_rows):
            src = partials[prows[t], slot]
            for j in range(dim):
                acc[t, j] *= src[j]
    else:
        _fold_partials_lse(acc, lse_sum, partials, prows, slot, n_rows, dim)


@njit(cache=True)
def _fold_partials_lse(acc, lse_sum, partials, prows, slot, n_rows, dim):
    for t in range(n_rows):
        src = partials[prows[t], slot]
        for j in range(dim):
            _lse_add(acc, lse_sum, t, j, src[j])


@njit(cache=True)
def _encode(value_row, mlp_id, table_off, enc_tables, n_rows, dim, x1, enc, bank, buf_a, buf_b):
    """enc[t] = encoder(value_row[t]): a table row for categories, else the MLP."""
    if table_off >= 0:
        for t in range(n_rows):
            base = table_off + np.int64(value_row[t]) * dim
            for j in range(dim):
                enc[t, j] = enc_tables[base + j]
    else:
        for t in range(n_rows):
            x1[t, 0] = value_row[t]
        mlp_forward_tile(x1[:n_rows], mlp_id, bank.mlps, bank.layers, bank.weights,
                         bank.layer_scale, bank.act_params, enc[:n_rows], buf_a, buf_b)


@njit(parallel=True, nogil=True, cache=True)
def _node_tiles(v, n_rows, row0, fk_off, vals, graph, bank, noise, coll, scratch):
    """Inner node v on rows [0, n_rows) of ``vals`` (table rows row0 + t; row
    fk_off + t of ``coll.fk_rows``): each worker (first axis of ``scratch``)
    takes an equal share of the rows, in tiles of ``scratch``'s second axis,
    with its own scratch (equal shares: the threads meet at the end of every
    node, so a worker with one tile more would keep the other waiting)."""
    n_workers, tile_rows = scratch.acc.shape[0], scratch.acc.shape[1]
    dim = graph.emb_dim
    n_fk = coll.fk_rows.shape[0]
    a = graph.agg[v]
    slot = coll.node_slot[v]
    for w in prange(n_workers):
        acc, lse_sum, enc, h = scratch.acc[w], scratch.lse_sum[w], scratch.enc[w], scratch.h[w]
        x1, y1, labels = scratch.x1[w], scratch.y1[w], scratch.labels[w]
        prows, unif = scratch.prows[w], scratch.unif[w]
        buf_a, buf_b = scratch.buf_a[w], scratch.buf_b[w]
        share_end = (w + 1) * n_rows // n_workers
        t0 = w * n_rows // n_workers
        while t0 < share_end:
            tn = min(tile_rows, share_end - t0)
            _agg_init(a, acc, lse_sum, tn, dim)
            for e in range(graph.in_ptr[v], graph.in_ptr[v + 1]):
                u = graph.edge_src[e]
                mlp = graph.edge_mlp[e]
                table = graph.edge_table[e]
                weight = graph.edge_weight[e]
                if mlp >= 0 and a != AGG_LOGEXP:
                    # the encoder's last layer folds straight into the aggregate
                    for t in range(tn):
                        x1[t, 0] = vals[u, t0 + t]
                    mlp_forward_fold_tile(x1[:tn], mlp, bank.mlps, bank.layers, bank.weights,
                                          bank.layer_scale, bank.act_params, acc[:tn], a, weight,
                                          buf_a, buf_b)
                elif table >= 0:
                    _fold_table_edge(a, acc, lse_sum, vals[u, t0:], table, graph.enc_tables,
                                     weight, tn, dim)
                else:
                    _encode(vals[u, t0:], mlp, table, graph.enc_tables, tn, dim, x1, enc, bank,
                            buf_a, buf_b)
                    _fold_edge(a, acc, lse_sum, enc, weight, tn, dim)
            for f in range(n_fk):
                for t in range(tn):
                    prows[t] = coll.fk_base[f] + coll.fk_rows[f, fk_off + t0 + t]
                _fold_partials(a, acc, lse_sum, coll.partials, prows, slot, tn, dim)
            _agg_finish(a, acc, lse_sum, tn, dim)
            add_node_noise(acc, tn, dim, row0 + t0, graph.noise_key[v], graph.noise_alpha[v],
                           graph.noise_beta[v], noise.q[v], noise.x[v], noise.cdf[v],
                           noise.guide[v], unif)
            if graph.num_categories[v] > 0:
                mlp_forward_tile(acc[:tn], graph.dec_mlp[v], bank.mlps, bank.layers, bank.weights,
                                 bank.layer_scale, bank.act_params, h[:tn], buf_a, buf_b)
                categorical_decode_tile(h[:tn], graph.dec_emb[v], bank.emb_offsets,
                                        bank.emb_weights, labels[:tn])
                for t in range(tn):
                    vals[v, t0 + t] = np.float32(labels[t])
            else:
                mlp_forward_tile(acc[:tn], graph.dec_mlp[v], bank.mlps, bank.layers, bank.weights,
                                 bank.layer_scale, bank.act_params, y1[:tn], buf_a, buf_b)
                for t in range(tn):
                    vals[v, t0 + t] = y1[t, 0]
            t0 += tn


@njit(inline="always", cache=True)
def _node_layers(v, graph, mlps, layers, ids):
    """Layers of node v's decoder and numerical edge encoders into ``ids``;
    returns (count, total weights). With ``ids`` of size 0, only counts."""
    count = 0
    size = 0
    first_edge = graph.in_ptr[v]
    for k in range(graph.in_ptr[v + 1] - first_edge + 1):
        m = graph.dec_mlp[v] if k == 0 else graph.edge_mlp[first_edge + k - 1]
        if m < 0:
            continue
        first = mlps[m, MLP_FIRST_LAYER]
        for layer in range(first, first + mlps[m, MLP_NUM_LAYERS]):
            if ids.shape[0] > 0:
                ids[count] = layer
            count += 1
            size += layers[layer, LAYER_IN] * layers[layer, LAYER_OUT]
    return count, size


@njit(cache=True)
def _worker_scratch(n_workers, tile_rows, dim, width):
    """Each propagation worker's scratch (a ``Scratch``): a tile of aggregates,
    encodings, decoder outputs and hidden-layer buffers ``width`` wide."""
    return Scratch(
        empty_aligned((n_workers, tile_rows, dim)),
        empty_aligned((n_workers, tile_rows, dim)),
        empty_aligned((n_workers, tile_rows, dim)),
        empty_aligned((n_workers, tile_rows, dim)),
        np.empty((n_workers, tile_rows, 1), dtype=np.float32),
        np.empty((n_workers, tile_rows, 1), dtype=np.float32),
        np.empty((n_workers, tile_rows), dtype=np.int64),
        np.empty((n_workers, tile_rows), dtype=np.int64),
        np.empty((n_workers, dim), dtype=np.float64),
        empty_aligned((n_workers, tile_rows, width)),
        empty_aligned((n_workers, tile_rows, width)),
    )


@njit(nogil=True, cache=True)
def _propagate_rows(start, stop, src_vals, graph, bank, draws, noise, coll, tiling, out):
    """Rows [start, stop) node by node, in passes of at most ``tiling.pass_rows`` rows.

    A pass holds one float32 value per (node, row); with ``draws.lazy`` each
    node's MLPs are drawn into a buffer the size of the widest node's, just
    before the node runs on the pass's rows, so a node's weights stay in
    cache while every row goes through them.
    """
    n_rows = stop - start
    n_nodes = graph.is_source.shape[0]
    order = graph.run_order  # the nodes evaluated (ScmPlan.run_order)
    pass_rows = tiling.pass_rows
    vals = np.empty((n_nodes, min(pass_rows, n_rows)), dtype=np.float32)
    scratch = _worker_scratch(tiling.n_workers, tiling.tile_rows, graph.emb_dim, tiling.max_width)
    no_ids = np.empty(0, dtype=np.int64)
    max_count = 0
    max_size = 0
    if draws.lazy:
        for oi in range(order.shape[0]):
            count, size = _node_layers(order[oi], graph, bank.mlps, bank.layers, no_ids)
            max_count = max(max_count, count)
            max_size = max(max_size, size)
    ids = np.empty(max_count, dtype=np.int64)
    local = bank.layers.copy() if draws.lazy else bank.layers
    wbuf = empty_aligned((max_size,)) if draws.lazy else bank.weights
    # the bank the tiles read: its layers placed in the node's buffer when lazy
    node_bank = MlpArrays(bank.mlps, local, wbuf, bank.layer_scale, bank.act_params,
                          bank.emb_offsets, bank.emb_weights)
    for p0 in range(0, n_rows, pass_rows):
        pn = min(pass_rows, n_rows - p0)
        for oi in range(order.shape[0]):
            v = order[oi]
            if graph.is_source[v]:
                s = graph.source_index[v]
                for t in range(pn):
                    vals[v, t] = np.float32(src_vals[p0 + t, s])
            else:
                if draws.lazy:
                    count, size = _node_layers(v, graph, bank.mlps, bank.layers, ids)
                    off = 0
                    for i in range(count):
                        local[ids[i], LAYER_WEIGHT_OFFSET] = off
                        off += bank.layers[ids[i], LAYER_IN] * bank.layers[ids[i], LAYER_OUT]
                    draw_layers(ids[:count], local, draws.key, draws.draw, draws.init,
                                draws.density, wbuf)
                _node_tiles(v, pn, start + p0, p0, vals, graph, node_bank, noise, coll, scratch)
            c = graph.node_column[v]
            if c >= 0:
                for t in range(pn):
                    out[p0 + t, c] = vals[v, t]


@njit(parallel=True, nogil=True, cache=True)
def _collation_chunk(values, coll_mlp, coll_table, enc_tables, slot_aggs, bank, max_width, dim,
                     out):
    n_rows = values.shape[0]
    k = values.shape[1]
    n_slots = slot_aggs.shape[0]
    n_tiles = (n_rows + TILE_ROWS - 1) // TILE_ROWS
    w_sum = np.float32(1.0 / k)
    for tile in prange(n_tiles):
        t0 = tile * TILE_ROWS
        tn = min(TILE_ROWS, n_rows - t0)
        acc = empty_aligned((TILE_ROWS, dim))
        lse_sum = empty_aligned((TILE_ROWS, dim))
        enc = empty_aligned((k, TILE_ROWS, dim))
        col = np.empty(TILE_ROWS, dtype=np.float32)
        x1 = np.empty((TILE_ROWS, 1), dtype=np.float32)
        buf_a = empty_aligned((TILE_ROWS, max_width))
        buf_b = empty_aligned((TILE_ROWS, max_width))
        for i in range(k):
            for t in range(tn):
                col[t] = values[t0 + t, i]
            _encode(col, coll_mlp[i], coll_table[i], enc_tables, tn, dim, x1, enc[i], bank,
                    buf_a, buf_b)
        for s in range(n_slots):
            a = slot_aggs[s]
            w = w_sum if a == AGG_SUM else np.float32(1.0)
            _agg_init(a, acc, lse_sum, tn, dim)
            for i in range(k):
                _fold_edge(a, acc, lse_sum, enc[i], w, tn, dim)
            _agg_finish(a, acc, lse_sum, tn, dim)
            for t in range(tn):
                for j in range(dim):
                    out[t0 + t, s, j] = acc[t, j]


@njit(parallel=True, nogil=True, cache=True)
def _encoder_tables(pending, offsets, bank, max_width, dim, out):
    for p in prange(pending.shape[0]):
        emb_id = pending[p, PENDING_EMB]
        off = bank.emb_offsets[emb_id, EMB_OFFSET]
        cats = bank.emb_offsets[emb_id, EMB_CATEGORIES]
        x = bank.emb_weights[off:off + cats * dim].reshape((cats, dim))
        buf_a = empty_aligned((cats, max_width))
        buf_b = empty_aligned((cats, max_width))
        dst = out[offsets[p]:offsets[p] + cats * dim].reshape((cats, dim))
        mlp_forward_tile(x, pending[p, PENDING_MLP], bank.mlps, bank.layers, bank.weights,
                         bank.layer_scale, bank.act_params, dst, buf_a, buf_b)


def mlp_arrays(bank, layers=None, weights=None) -> MlpArrays:
    """The arrays of an ``MlpBankArrays`` the kernels read, with ``(layers, weights)``
    from ``bank.weights_of`` in place of the bank's own when given."""
    return MlpArrays(
        mlps=bank.mlps,
        layers=bank.layers if layers is None else layers,
        weights=bank.weights if weights is None else weights,
        layer_scale=bank.layer_scale,
        act_params=bank.act_params,
        emb_offsets=bank.emb_offsets,
        emb_weights=bank.emb_weights,
    )


def encoder_tables(bank, pending: np.ndarray, dim: int):
    """Evaluate categorical encoders once per category (DESIGN §4.2).

    Parameters
    ----------
    bank : MlpBankArrays
    pending : int64 (P, 2)
        ``[emb_id, mlp_id]`` of each categorical encoder.
    dim : int
        Embedding width.

    Returns
    -------
    (float32 (T,), int64 (P,))
        The tables (categories x dim each, row-major) back to back, and the
        offset of each.
    """
    pending = np.ascontiguousarray(pending, dtype=np.int64).reshape(-1, 2)
    sizes = bank.emb_offsets[pending[:, PENDING_EMB], EMB_CATEGORIES] * dim if len(pending) else np.zeros(0, np.int64)
    offsets = np.zeros(len(pending), dtype=np.int64)
    if len(pending):
        offsets[1:] = np.cumsum(sizes)[:-1]
    out = np.empty(int(sizes.sum()), dtype=np.float32)
    if not len(pending):
        return out, offsets
    # A lazy bank's encoder MLPs are drawn a batch at a time (a wide SCM has
    # thousands of categorical edges: tens of MB of weights at once).
    chosen = bank.mlps[pending[:, PENDING_MLP]]
    first, count = chosen[:, MLP_FIRST_LAYER], chosen[:, MLP_NUM_LAYERS]
    ends = np.zeros(bank.layers.shape[0] + 1, dtype=np.int64)
    np.cumsum(bank.layers[:, LAYER_IN] * bank.layers[:, LAYER_OUT], out=ends[1:])
    per_mlp = ends[first + count] - ends[first] if bank.lazy else np.zeros(len(pending), np.int64)
    batch = np.cumsum(per_mlp) // ENCODER_BATCH_WEIGHTS
    for b in np.unique(batch):
        rows = np.flatnonzero(batch == b)
        layers, weights = bank.weights_of(pending[rows, PENDING_MLP])
        _encoder_tables(pending[rows], offsets[rows], mlp_arrays(bank, layers, weights),
                        int(bank.max_width), np.int64(dim), out)
    return out, offsets


def collation_partials(parent_plan, child_index: int, values: np.ndarray, slot_aggs: np.ndarray):
    """Pre-aggregated collation inputs of one parent table for one child table.

    Parameters
    ----------
    parent_plan : ScmPlan
        The referenced (parent) table's SCM.
    child_index : int
        Position of the child table in ``parent_plan.children``.
    values : float32 (n_parent, k)
        The parent's column values as its SCM produced them (labels as floats;
        lazy categorical columns after quantization).
    slot_aggs : int64 (S,)
        Aggregation codes the child needs, one slot each.

    Returns
    -------
    float32 (n_parent, S, dim)
        ``out[r, s]`` = AGG_s over the parent's column nodes c of
        clamp(w * coll_c(values[r, c]), ±1e4), w = 1/k for sum, else 1.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    n, k = values.shape
    dim = int(parent_plan.emb_dim)
    out = np.empty((n, len(slot_aggs), dim), dtype=np.float32)
    if n == 0 or k == 0:
        return out
    m = parent_plan.mlp
    coll_mlp = parent_plan.coll_mlp[child_index]
    layers, weights = m.weights_of(coll_mlp)
    _collation_chunk(
        values, coll_mlp, parent_plan.coll_table[child_index], parent_plan.enc_tables,
        np.ascontiguousarray(slot_aggs, dtype=np.int64), mlp_arrays(m, layers, weights),
        int(m.max_width), dim, out,
    )
    return out


def noise_tables_of(plan) -> NoiseTables:
    """Per-node Beta noise tables (quantiles, knots, CDF, guide) of an SCM plan.

    Tabulated only for the nodes propagation draws from that way (inner nodes
    of ``run_order`` with both shapes >= ``TABLE_MIN_SHAPE``); the rows of the
    other nodes are zeros and never read.
    """
    run = plan.run_order[~plan.is_source[plan.run_order]]
    alpha, beta_ = plan.noise_alpha[run], plan.noise_beta[run]
    tab = np.minimum(alpha, beta_) >= TABLE_MIN_SHAPE
    run, alpha, beta_ = run[tab], alpha[tab], beta_[tab]
    x, cdf, guide = beta_tables(alpha, beta_, NUM_KNOTS, NUM_GUIDE)
    q = quantile_tables(alpha, beta_, x, cdf)
    tables = []
    for t in (q, x, cdf, guide):
        full = np.zeros((plan.num_nodes, t.shape[1]), dtype=t.dtype)
        full[run] = t
        tables.append(full)
    return NoiseTables(*tables)


def propagation_tile_rows(n_rows: int) -> int:
    """Rows per propagation tile for a pass of ``n_rows`` rows: ``MAX_TILE_ROWS``,
    or ``n_rows`` rounded up to a multiple of 8 (the dense micro-kernel's row
    block) if fewer. Rows are independent, so the tiling never changes a value."""
    return int(min(MAX_TILE_ROWS, -(-max(n_rows, 1) // 8) * 8))


def propagation_workers(n_rows: int) -> int:
    """Threads a propagation call on ``n_rows`` rows shares them among: all of
    numba's, as long as each gets at least ``MIN_WORKER_ROWS`` rows."""
    return int(max(1, min(numba.get_num_threads(), n_rows // MIN_WORKER_ROWS)))


def propagation_pass_rows(n_rows: int, n_nodes: int) -> int:
    """Rows per propagation pass: the pass holds a float32 per (node, row), at most
    ``PASS_BYTES`` (and never fewer than ``MIN_PASS_ROWS`` rows, which keep
    re-drawing a lazy bank's weights per pass cheap against the rows' work)."""
    return int(max(MIN_PASS_ROWS, min(max(n_rows, 1), PASS_BYTES // (4 * max(n_nodes, 1)))))


def propagate(plan, start: int, stop: int, src_vals: np.ndarray, fk_rows: np.ndarray,
              fk_base: np.ndarray, partials: np.ndarray, node_slot: np.ndarray,
              out: np.ndarray, noise_tables=None) -> None:
    """Fill ``out[i, c]`` with column c of the SCM at row ``start + i`` (DESIGN §4.4).

    Parameters
    ----------
    plan : ScmPlan
    start, stop : int
        Row range of the table.
    src_vals : float64 (stop - start, num_sources)
        ``kernels.sources.source_values`` for the same rows.
    fk_rows : int64 (F, stop - start)
        Parent row of every row, per foreign key with collation inputs.
    fk_base : int64 (F,)
        Offset of each foreign key's parent rows in ``partials``.
    partials : float32 (sum of parent rows, S, dim)
        Stacked ``collation_partials`` of the foreign keys.
    node_slot : int64 (n,)
        Slot of each inner node's aggregation in ``partials``.
    out : float32 (stop - start, k)
    noise_tables : NoiseTables (or a tuple in its order), optional
        ``noise_tables_of(plan)``, to build once per table rather than per chunk.
    """
    n = plan.num_nodes
    node_column = np.full(n, -1, dtype=np.int64)
    node_column[plan.col_nodes] = np.arange(len(plan.col_nodes))
    m = plan.mlp
    noise = NoiseTables(*(noise_tables_of(plan) if noise_tables is None else noise_tables))
    n_rows = stop - start
    pass_rows = propagation_pass_rows(n_rows, n)
    graph = ScmGraph(
        **{name: getattr(plan, name) for name in _PLAN_GRAPH_FIELDS},
        node_column=node_column,
        emb_dim=np.int64(plan.emb_dim),
    )
    draws = LayerDraws(lazy=bool(m.lazy), key=m.layer_key, draw=m.layer_draw,
                       init=m.layer_init, density=m.layer_density)
    coll = Collation(node_slot=node_slot, fk_rows=fk_rows, fk_base=fk_base, partials=partials)
    tiling = Tiling(
        pass_rows=np.int64(pass_rows),
        tile_rows=np.int64(propagation_tile_rows(min(pass_rows, n_rows))),
        n_workers=np.int64(propagation_workers(n_rows)),
        max_width=np.int64(m.max_width),
    )
    _propagate_rows(np.int64(start), np.int64(stop), src_vals, graph, mlp_arrays(m), draws,
                    noise, coll, tiling, out)
