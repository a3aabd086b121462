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
def _encode(value_row, mlp_id, table_off, enc_tables, n_rows, dim, x1, enc,
            mlps, layers, weights, layer_scale, act_params, buf_a, buf_b):
    """enc[t] = encoder(value_row[t]): a table row for categories, else the MLP."""
    if table_off >= 0:
        for t in range(n_rows):
            base = table_off + np.int64(value_row[t]) * dim
            for j in range(dim):
                enc[t, j] = enc_tables[base + j]
    else:
        for t in range(n_rows):
            x1[t, 0] = value_row[t]
        mlp_forward_tile(x1[:n_rows], mlp_id, mlps, layers, weights, layer_scale,
                         act_params, enc[:n_rows], buf_a, buf_b)


@njit(parallel=True, nogil=True, cache=True)
def _node_tiles(
    v, n_rows, row0, fk_off, tile_rows, vals,
    agg, num_categories, noise_alpha, noise_beta, noise_key,
    dec_mlp, dec_emb, in_ptr, edge_src, edge_weight, edge_mlp, edge_table, enc_tables,
    node_slot, fk_rows, fk_base, partials,
    mlps, layers, weights, layer_scale, act_params, emb_offsets, emb_weights,
    dim, noise_q, noise_x, noise_cdf, noise_guide,
    acc_w, lse_w, enc_w, h_w, x1_w, y1_w, labels_w, prows_w, unif_w, buf_a_w, buf_b_w,
):
    """Inner node v on rows [0, n_rows) of ``vals`` (table rows row0 + t): each
    worker takes an equal share of the rows, in tiles of at most ``tile_rows``,
    with its own scratch (equal shares: the threads meet at the end of every
    node, so a worker with one tile more would keep the other waiting)."""
    n_workers = acc_w.shape[0]
    n_fk = fk_rows.shape[0]
    a = agg[v]
    slot = node_slot[v]
    for w in prange(n_workers):
        acc, lse_sum, enc, h = acc_w[w], lse_w[w], enc_w[w], h_w[w]
        x1, y1, labels, prows, unif = x1_w[w], y1_w[w], labels_w[w], prows_w[w], unif_w[w]
        buf_a, buf_b = buf_a_w[w], buf_b_w[w]
        share_end = (w + 1) * n_rows // n_workers
        t0 = w * n_rows // n_workers
        while t0 < share_end:
            tn = min(tile_rows, share_end - t0)
            _agg_init(a, acc, lse_sum, tn, dim)
            for e in range(in_ptr[v], in_ptr[v + 1]):
                u = edge_src[e]
                if edge_mlp[e] >= 0 and a != AGG_LOGEXP:
                    # the encoder's last layer folds straight into the aggregate
                    for t in range(tn):
                        x1[t, 0] = vals[u, t0 + t]
                    mlp_forward_fold_tile(x1[:tn], edge_mlp[e], mlps, layers, weights,
                                          layer_scale, act_params, acc[:tn], a, edge_weight[e],
                                          buf_a, buf_b)
                elif edge_table[e] >= 0:
                    _fold_table_edge(a, acc, lse_sum, vals[u, t0:], edge_table[e], enc_tables,
                                     edge_weight[e], tn, dim)
                else:
                    _encode(vals[u, t0:], edge_mlp[e], edge_table[e], enc_tables,
                            tn, dim, x1, enc, mlps, layers, weights, layer_scale, act_params,
                            buf_a, buf_b)
                    _fold_edge(a, acc, lse_sum, enc, edge_weight[e], tn, dim)
            for f in range(n_fk):
                for t in range(tn):
                    prows[t] = fk_base[f] + fk_rows[f, fk_off + t0 + t]
                _fold_partials(a, acc, lse_sum, partials, prows, slot, tn, dim)
            _agg_finish(a, acc, lse_sum, tn, dim)
            add_node_noise(acc, tn, dim, row0 + t0, noise_key[v], noise_alpha[v], noise_beta[v],
                           noise_q[v], noise_x[v], noise_cdf[v], noise_guide[v], unif)
            if num_categories[v] > 0:
                mlp_forward_tile(acc[:tn], dec_mlp[v], mlps, layers, weights, layer_scale,
                                 act_params, h[:tn], buf_a, buf_b)
                categorical_decode_tile(h[:tn], dec_emb[v], emb_offsets, emb_weights, labels[:tn])
                for t in range(tn):
                    vals[v, t0 + t] = np.float32(labels[t])
            else:
                mlp_forward_tile(acc[:tn], dec_mlp[v], mlps, layers, weights, layer_scale,
                                 act_params, y1[:tn], buf_a, buf_b)
                for t in range(tn):
                    vals[v, t0 + t] = y1[t, 0]
            t0 += tn


@njit(inline="always", cache=True)
def _node_layers(v, dec_mlp, in_ptr, edge_mlp, mlps, layers, ids):
    """Layers of node v's decoder and numerical edge encoders into ``ids``;
    returns (count, total weights). With ``ids`` of size 0, only counts."""
    count = 0
    size = 0
    for k in range(in_ptr[v + 1] - in_ptr[v] + 1):
        m = dec_mlp[v] if k == 0 else edge_mlp[in_ptr[v] + k - 1]
        if m < 0:
            continue
        first = mlps[m, MLP_FIRST_LAYER]
        for layer in range(first, first + mlps[m, MLP_NUM_LAYERS]):
            if ids.shape[0] > 0:
                ids[count] = layer
            count += 1
            size += layers[layer, LAYER_IN] * layers[layer, LAYER_OUT]
    return count, size


@njit(nogil=True, cache=True)
def _propagate_rows(
    start, stop, pass_rows, tile_rows, n_workers, src_vals,
    order, is_source, num_categories, source_index, agg, noise_alpha, noise_beta, noise_key,
    dec_mlp, dec_emb, in_ptr, edge_src, edge_weight, edge_mlp, edge_table, enc_tables,
    node_column, node_slot, fk_rows, fk_base, partials,
    mlps, layers, weights, layer_scale, act_params, max_width, emb_offsets, emb_weights,
    lazy, layer_key, layer_draw, layer_init, layer_density,
    dim, noise_q, noise_x, noise_cdf, noise_guide, out,
):
    """Rows [start, stop) node by node, in passes of at most ``pass_rows`` rows.

    A pass holds one float32 value per (node, row); each node's MLPs are
    drawn (lazy bank) into a buffer the size of the widest node's, just
    before the node runs on the pass's rows, so a node's weights stay in
    cache while every row goes through them.
    """
    n_rows = stop - start
    n_nodes = is_source.shape[0]
    n_run = order.shape[0]  # the nodes evaluated (ScmPlan.run_order)
    vals = np.empty((n_nodes, min(pass_rows, n_rows)), dtype=np.float32)
    acc_w = empty_aligned((n_workers, tile_rows, dim))
    lse_w = empty_aligned((n_workers, tile_rows, dim))
    enc_w = empty_aligned((n_workers, tile_rows, dim))
    h_w = empty_aligned((n_workers, tile_rows, dim))
    x1_w = np.empty((n_workers, tile_rows, 1), dtype=np.float32)
    y1_w = np.empty((n_workers, tile_rows, 1), dtype=np.float32)
    labels_w = np.empty((n_workers, tile_rows), dtype=np.int64)
    prows_w = np.empty((n_workers, tile_rows), dtype=np.int64)
    unif_w = np.empty((n_workers, dim), dtype=np.float64)
    buf_a_w = empty_aligned((n_workers, tile_rows, max_width))
    buf_b_w = empty_aligned((n_workers, tile_rows, max_width))
    no_ids = np.empty(0, dtype=np.int64)
    max_count = 0
    max_size = 0
    if lazy:
        for oi in range(n_run):
            count, size = _node_layers(order[oi], dec_mlp, in_ptr, edge_mlp, mlps, layers, no_ids)
            max_count = max(max_count, count)
            max_size = max(max_size, size)
    ids = np.empty(max_count, dtype=np.int64)
    local = layers.copy() if lazy else layers
    wbuf = empty_aligned((max_size,)) if lazy else weights
    for p0 in range(0, n_rows, pass_rows):
        pn = min(pass_rows, n_rows - p0)
        for oi in range(n_run):
            v = order[oi]
            if is_source[v]:
                s = source_index[v]
                for t in range(pn):
                    vals[v, t] = np.float32(src_vals[p0 + t, s])
            else:
                if lazy:
                    count, size = _node_layers(v, dec_mlp, in_ptr, edge_mlp, mlps, layers, ids)
                    off = 0
                    for i in range(count):
                        local[ids[i], 0] = off
                        off += layers[ids[i], LAYER_IN] * layers[ids[i], LAYER_OUT]
                    draw_layers(ids[:count], local, layer_key, layer_draw, layer_init,
                                layer_density, wbuf)
                _node_tiles(
                    v, pn, start + p0, p0, tile_rows, vals,
                    agg, num_categories, noise_alpha, noise_beta, noise_key,
                    dec_mlp, dec_emb, in_ptr, edge_src, edge_weight, edge_mlp, edge_table,
                    enc_tables, node_slot, fk_rows, fk_base, partials,
                    mlps, local, wbuf, layer_scale, act_params, emb_offsets, emb_weights,
                    dim, noise_q, noise_x, noise_cdf, noise_guide,
                    acc_w, lse_w, enc_w, h_w, x1_w, y1_w, labels_w, prows_w, unif_w,
                    buf_a_w, buf_b_w,
                )  # fmt: skip
            c = node_column[v]
            if c >= 0:
                for t in range(pn):
                    out[p0 + t, c] = vals[v, t]


@njit(parallel=True, nogil=True, cache=True)
def _collation_chunk(
    values, coll_mlp, coll_table, enc_tables, slot_aggs,
    mlps, layers, weights, layer_scale, act_params, max_width, dim, out,
):
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
            _encode(col, coll_mlp[i], coll_table[i], enc_tables, tn, dim,
                    x1, enc[i], mlps, layers, weights, layer_scale, act_params, buf_a, buf_b)
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
def _encoder_tables(pending, offsets, mlps, layers, weights, layer_scale, act_params, max_width,
                    emb_offsets, emb_weights, dim, out):
    for p in prange(pending.shape[0]):
        emb_id = pending[p, PENDING_EMB]
        off = emb_offsets[emb_id, EMB_OFFSET]
        cats = emb_offsets[emb_id, EMB_CATEGORIES]
        x = emb_weights[off:off + cats * dim].reshape((cats, dim))
        buf_a = empty_aligned((cats, max_width))
        buf_b = empty_aligned((cats, max_width))
        dst = out[offsets[p]:offsets[p] + cats * dim].reshape((cats, dim))
        mlp_forward_tile(x, pending[p, PENDING_MLP], mlps, layers, weights, layer_scale, act_params,
                         dst, buf_a, buf_b)


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
        _encoder_tables(pending[rows], offsets[rows], bank.mlps, layers, weights,
                        bank.layer_scale, bank.act_params, int(bank.max_width),
                        bank.emb_offsets, bank.emb_weights, np.int64(dim), out)
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
        np.ascontiguousarray(slot_aggs, dtype=np.int64),
        m.mlps, layers, weights, m.layer_scale, m.act_params, int(m.max_width), dim, out,
    )
    return out


def noise_tables_of(plan):
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
    return tuple(tables)


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
    noise_tables : tuple, optional
        ``noise_tables_of(plan)``, to build once per table rather than per chunk.
    """
    n = plan.num_nodes
    node_column = np.full(n, -1, dtype=np.int64)
    node_column[plan.col_nodes] = np.arange(len(plan.col_nodes))
    m = plan.mlp
    if noise_tables is None:
        noise_tables = noise_tables_of(plan)
    n_rows = stop - start
    pass_rows = propagation_pass_rows(n_rows, n)
    tile_rows = propagation_tile_rows(min(pass_rows, n_rows))
    n_workers = propagation_workers(n_rows)
    _propagate_rows(
        np.int64(start), np.int64(stop), np.int64(pass_rows), np.int64(tile_rows),
        np.int64(n_workers), src_vals,
        plan.run_order, plan.is_source, plan.num_categories, plan.source_index, plan.agg,
        plan.noise_alpha, plan.noise_beta, plan.noise_key,
        plan.dec_mlp, plan.dec_emb, plan.in_ptr, plan.edge_src, plan.edge_weight,
        plan.edge_mlp, plan.edge_table, plan.enc_tables,
        node_column, node_slot, fk_rows, fk_base, partials,
        m.mlps, m.layers, m.weights, m.layer_scale, m.act_params, int(m.max_width),
        m.emb_offsets, m.emb_weights,
        bool(m.lazy), m.layer_key, m.layer_draw, m.layer_init, m.layer_density,
        np.int64(plan.emb_dim), *noise_tables, out,
    )
