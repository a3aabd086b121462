"""The SCM program of one table (DESIGN §4.1-4.4), packed for ``kernels.scm``.

An SCM is a DAG of nodes; ``k`` of them are the table's *column* nodes, the
in-degree-0 nodes are *source* nodes fed by exogenous signals, every other node
is an *inner* node: ``value_v = decoder_v(noise_v + AGG_v(inputs))`` with one
encoded input per parent node and, for each foreign key, the *collation*
encodings of the referenced table's column values.

Everything is drawn here once, from the table's planning stream, and packed into
flat arrays (op codes, CSR edge lists, ids into an ``MlpBankArrays`` and a
``SourceBank``) that a numba kernel walks. The kernel never sees a Config.
The MLP weight matrices are the exception: the bank is lazy (``MlpBank(lazy=True)``)
and keeps the counter-RNG key and index of each, which the propagation kernel
draws node by node; the bytes are those an eager bank would store.

Two exact savings are planned in:

- a categorical input goes through an embedding table and an MLP that depend
  on the category alone, so each such encoder is evaluated once per category
  at plan time into a (categories x 32) *encoder table*;
- the collation inputs from a parent table depend on the parent row only, and
  every aggregation is associative, so the parent's clamped, weighted
  collation encodings are pre-aggregated once per parent row (``kernels.scm``).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from plurel_fast.config import Config
from plurel_fast.kernels.codes import AGG_CODES, AGG_SUM  # noqa: F401 (AGG_SUM: re-export)
from plurel_fast.kernels.scm import encoder_tables
from plurel_fast.plan.layouts import build_dag
from plurel_fast.plan.mlp import MlpBank, MlpBankArrays
from plurel_fast.plan.post import QuantizePlan, plan_quantization
from plurel_fast.plan.rng import plan_rng, seed_sequence
from plurel_fast.plan.schema import ACTIVITY, TablePlan
from plurel_fast.plan.sources import SourceBank, plan_categorical_source, plan_numerical_source


NO_ID = -1


class ScmPlan(msgspec.Struct, frozen=True):
    """One table's SCM as arrays (n nodes, E edges, k columns, C child tables).

    Attributes
    ----------
    table : str
    mode : str
        ``type_eager`` or ``type_lazy``.
    layout : str
        The SCM graph's layout.
    emb_dim : int
        Width of embeddings (``mlp_emb_dim``, 32 by default).
    order : int64 (n,)
        Topological order of the nodes.
    run_order : int64 (<= n,)
        The nodes ``order`` lists that are column nodes or ancestors of one,
        in that order: the only nodes whose values can reach an output
        (a table's columns, and through them its children's collation
        inputs). Propagation evaluates these alone; skipping the others is
        exact, since every draw is keyed by its own node.
    is_source : bool (n,)
    num_categories : int64 (n,)
        Categories of a node *as propagated*: 0 for numerical nodes, and for
        every node in lazy mode.
    source_index : int64 (n,)
        Column of the node in ``sources`` (sources only, else -1).
    agg : int64 (n,)
        Aggregation code (index in ``config.AGGREGATIONS``) of inner nodes.
    noise_alpha, noise_beta : float64 (n,)
        Beta noise parameters of inner nodes.
    noise_key : uint64 (n,)
        Counter-RNG key of each node's noise.
    dec_mlp, dec_emb : int64 (n,)
        Decoder MLP id (32 -> 1 numerical, 32 -> 32 categorical) and, for a
        categorical decoder, the embedding table compared against.
    in_ptr : int64 (n + 1,)
        Edges into node v are ``in_ptr[v]:in_ptr[v + 1]`` (CSR by child).
    edge_src : int64 (E,)
    edge_weight : float32 (E,)
    edge_mlp : int64 (E,)
        Numerical encoder MLP (1 -> 32) of the edge, or -1.
    edge_table : int64 (E,)
        Offset into ``enc_tables`` of a categorical parent's encoder table, or -1.
    enc_tables : float32 (T,)
        Encoder tables (categories x 32 each, row-major) of categorical edges
        and collation encoders.
    cat_encoders : int64 (num_tables, 3)
        ``[emb_id, mlp_id, offset]``: the embedding and MLP each encoder table
        was evaluated from, and its offset in ``enc_tables`` (inspection, tests).
    col_nodes : int64 (k,)
        Node of each feature column, in column order.
    col_categories : int64 (k,)
        Categories of each column as planned by the schema (0: numerical).
    coll_mlp, coll_table : int64 (C, k)
        Collation encoder of column node ``col_nodes[i]`` for child table ``c``:
        a numerical MLP id or an encoder-table offset (the other is -1).
    children : tuple of str
        Child tables, aligned with the first axis of ``coll_*``.
    quantize : tuple of (QuantizePlan | None)
        Lazy mode: the quantization of each categorical column (DESIGN §4.5).
    mlp : MlpBankArrays
    sources : SourceBank
    """

    table: str
    mode: str
    layout: str
    emb_dim: int
    order: np.ndarray
    run_order: np.ndarray
    is_source: np.ndarray
    num_categories: np.ndarray
    source_index: np.ndarray
    agg: np.ndarray
    noise_alpha: np.ndarray
    noise_beta: np.ndarray
    noise_key: np.ndarray
    dec_mlp: np.ndarray
    dec_emb: np.ndarray
    in_ptr: np.ndarray
    edge_src: np.ndarray
    edge_weight: np.ndarray
    edge_mlp: np.ndarray
    edge_table: np.ndarray
    enc_tables: np.ndarray
    cat_encoders: np.ndarray
    col_nodes: np.ndarray
    col_categories: np.ndarray
    coll_mlp: np.ndarray
    coll_table: np.ndarray
    children: tuple[str, ...]
    quantize: tuple[QuantizePlan | None, ...]
    mlp: MlpBankArrays
    sources: SourceBank

    @property
    def num_nodes(self) -> int:
        return int(self.order.shape[0])

    @property
    def used_aggs(self) -> np.ndarray:
        """Sorted aggregation codes of the inner nodes (collation slots)."""
        return np.unique(self.agg[~self.is_source]).astype(np.int64)


def _ancestors_of(nodes, order, in_ptr, edge_src) -> np.ndarray:
    """bool (n,): ``nodes`` and every node with a path to one of them."""
    mark = np.zeros(order.shape[0], dtype=bool)
    mark[nodes] = True
    for v in order[::-1]:  # children before parents
        if mark[v]:
            mark[edge_src[in_ptr[v] : in_ptr[v + 1]]] = True
    return mark


class _Graph(msgspec.Struct, frozen=True):
    """The SCM's graph, drawn first: mode, layout, DAG, and which nodes are columns."""

    mode: str
    lazy: bool
    layout: str
    n: int
    dag: object
    col_nodes: np.ndarray


class _Mechanisms(msgspec.Struct, frozen=True):
    """Per node: categories (as planned and as propagated), source flag, aggregation,
    Beta noise shapes."""

    num_categories: np.ndarray
    is_source: np.ndarray
    inner: np.ndarray
    agg: np.ndarray
    noise_alpha: np.ndarray
    noise_beta: np.ndarray


class _Edges(msgspec.Struct, frozen=True):
    """The DAG's edges sorted by child, then parent (CSR by child: ``in_ptr``)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    in_ptr: np.ndarray


class _Mlps(msgspec.Struct, frozen=True):
    """Every MLP and embedding of the SCM, in a lazy bank. A categorical encoder is an
    (embedding, MLP) pair in ``pending``, evaluated into an encoder table once the bank
    is frozen; ``*_pending`` gives each encoder's row in ``pending`` (else NO_ID) and
    ``*_mlp`` the MLP of each numerical encoder (else NO_ID)."""

    bank: MlpBank
    dec_mlp: np.ndarray
    dec_emb: np.ndarray
    pending: np.ndarray
    coll_mlp: np.ndarray
    coll_pending: np.ndarray
    edge_mlp: np.ndarray
    edge_pending: np.ndarray


def _draw_graph(rng, p, config: Config, k: int) -> _Graph:
    mode = p.propagation_mode_choices.sample(rng)
    layout = p.scm_layout_choices.sample(rng)
    perc = float(p.scm_col_node_perc_choices.sample(rng))
    n = k + int(math.ceil(k / perc)) + 3
    dag = build_dag(layout, n, config.dag_params, rng)
    col_nodes = rng.choice(n, size=k, replace=False).astype(np.int64)
    return _Graph(mode, mode == "type_lazy", layout, n, dag, col_nodes)


def _draw_mechanisms(rng, p, table: TablePlan, graph: _Graph) -> _Mechanisms:
    n, col_nodes = graph.n, graph.col_nodes
    # Semantic type of every node: columns take their column's, others are drawn.
    sem_categories = np.zeros(n, dtype=np.int64)
    is_col = np.zeros(n, dtype=bool)
    is_col[col_nodes] = True
    sem_categories[col_nodes] = [c.num_categories for c in table.features]
    others = np.flatnonzero(~is_col)
    categorical = others[p.col_stype_choices.sample_many(rng, others.size) == "categorical"]
    sem_categories[categorical] = p.num_categories_choices.sample_many(rng, categorical.size)
    num_categories = np.zeros(n, dtype=np.int64) if graph.lazy else sem_categories

    is_source = graph.dag.in_degree() == 0
    inner = np.flatnonzero(~is_source)
    agg = np.zeros(n, dtype=np.int64)
    noise_alpha = np.ones(n)
    noise_beta = np.ones(n)
    noise_alpha[inner] = p.node_noise_alpha_choices.sample_many(rng, inner.size)
    noise_beta[inner] = p.node_noise_beta_choices.sample_many(rng, inner.size)
    agg_codes = np.array([AGG_CODES[name] for name in p.propagation_agg_choices.value], dtype=np.int64)
    agg[inner] = agg_codes[p.propagation_agg_choices.sample_indices(rng, inner.size)]
    return _Mechanisms(num_categories, is_source, inner, agg, noise_alpha, noise_beta)


def _edges_by_child(graph: _Graph) -> _Edges:
    edges = graph.dag.edges
    if len(edges):
        by_child = np.lexsort((edges[:, 0], edges[:, 1]))
        src = edges[by_child, 0].astype(np.int64)
        dst = edges[by_child, 1].astype(np.int64)
    else:
        by_child = src = dst = np.zeros(0, np.int64)
    weight = graph.dag.weights[by_child].astype(np.float32)
    in_ptr = np.zeros(graph.n + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst, minlength=graph.n), out=in_ptr[1:])
    return _Edges(src, dst, weight, in_ptr)


def _draw_mlps(rng, p, emb_dim: int, children: tuple, graph: _Graph, mech: _Mechanisms,
               edges: _Edges) -> _Mlps:
    """Every MLP, then every embedding table, each kind in one batched call (order in
    `plan_scm`'s docstring). Decoder of an inner node: MLP 32 -> 1, or MLP 32 -> 32 and
    an embedding table to compare with. Encoder of a node's values (collation and edge):
    MLP in -> 32, or an embedding table and an MLP 32 -> 32."""
    n, k, inner = graph.n, graph.col_nodes.size, mech.inner
    enc_nodes = np.concatenate([np.tile(graph.col_nodes, len(children)), edges.src])
    dec_cats, enc_cats = mech.num_categories[inner], mech.num_categories[enc_nodes]
    dec_cat, enc_cat = dec_cats > 0, enc_cats > 0
    bank = MlpBank(lazy=True)
    mlps = bank.add_mlps(
        rng,
        np.concatenate([np.full(inner.size, emb_dim), np.where(enc_cat, emb_dim, int(p.mlp_in_dim))]),
        emb_dim,
        np.concatenate([np.where(dec_cat, emb_dim, int(p.mlp_out_dim)), np.full(enc_nodes.size, emb_dim)]),
        p,
    )
    embs = bank.add_embeddings(rng, np.concatenate([dec_cats[dec_cat], enc_cats[enc_cat]]), emb_dim, p)
    dec_mlp = np.full(n, NO_ID, dtype=np.int64)
    dec_emb = np.full(n, NO_ID, dtype=np.int64)
    dec_mlp[inner] = mlps[: inner.size]
    num_dec_embs = int(dec_cat.sum())
    dec_emb[inner[dec_cat]] = embs[:num_dec_embs]
    enc_mlps = mlps[inner.size :]
    pending = np.stack([embs[num_dec_embs:], enc_mlps[enc_cat]], axis=1)  # (emb_id, mlp_id)
    enc_mlp = np.where(enc_cat, NO_ID, enc_mlps)
    enc_pending = np.where(enc_cat, np.cumsum(enc_cat) - 1, NO_ID)
    num_coll = len(children) * k
    return _Mlps(
        bank=bank,
        dec_mlp=dec_mlp,
        dec_emb=dec_emb,
        pending=pending,
        coll_mlp=enc_mlp[:num_coll].reshape(len(children), k),
        coll_pending=enc_pending[:num_coll].reshape(len(children), k),
        edge_mlp=enc_mlp[num_coll:],
        edge_pending=enc_pending[num_coll:],
    )


def _plan_sources(seed: int, p, table: TablePlan, mech: _Mechanisms):
    """Each source node's signal, from a stream of its own (so a change elsewhere does
    not shift it); returns (source_index per node, SourceBank)."""
    is_activity = table.kind == ACTIVITY
    source_nodes = np.flatnonzero(mech.is_source)
    source_index = np.full(mech.is_source.size, NO_ID, dtype=np.int64)
    specs, keys = [], []
    for s, v in enumerate(source_nodes):
        source_index[v] = s
        # the generator and the key of plan_rng / stream_key of the same path
        ss = seed_sequence(seed, "table", table.id, "source", int(v))
        srng = np.random.Generator(np.random.PCG64(ss))
        cats = int(mech.num_categories[v])
        if cats == 0:
            specs.append(plan_numerical_source(srng, p, table.num_rows, is_activity))
        else:
            specs.append(plan_categorical_source(srng, p, table.num_rows, cats, is_activity))
        keys.append(ss.generate_state(1, dtype=np.uint64)[0])
    return source_index, SourceBank.from_sources(
        table.num_rows, specs, np.asarray(keys, dtype=np.uint64)
    )


def _plan_quantizations(seed: int, p, table: TablePlan, lazy: bool) -> tuple:
    """Lazy mode: each categorical column's quantization, from a stream of its own."""
    quantize = []
    for i, col in enumerate(table.features):
        if lazy and col.num_categories > 0:
            ss = seed_sequence(seed, "table", table.id, "quantize", i)
            qrng = np.random.Generator(np.random.PCG64(ss))
            key = ss.generate_state(1, dtype=np.uint64)[0]
            quantize.append(plan_quantization(qrng, p, col.num_categories, key))
        else:
            quantize.append(None)
    return tuple(quantize)


def _table_offsets(pending_rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Encoder-table offsets of encoders given by their row in ``pending`` (NO_ID kept)."""
    out = np.full(pending_rows.shape, NO_ID, dtype=np.int64)
    has = pending_rows != NO_ID
    out[has] = offsets[pending_rows[has]]
    return out


def plan_scm(seed: int, table: TablePlan, config: Config) -> ScmPlan:
    """Draw the SCM of ``table`` (DESIGN §4.1-4.3) from its own planning stream.

    Order of the draws from the table's stream (`_draw_graph`, `_draw_mechanisms`,
    `_draw_mlps`): the mode, the layout, the column-node share, the DAG, the column
    nodes; one stype per non-column node, then the category counts of the categorical
    ones; per inner node (in node order) the noise α's, then the noise β's, then the
    aggregations; then the MLPs of all decoders (inner nodes in order), collation
    encoders (child by child, column by column) and edge encoders (edges by child,
    then parent), with one :meth:`MlpBank.add_mlps` call; then the embedding tables of
    the categorical decoders and encoders in the same order, with one
    :meth:`MlpBank.add_embeddings`; the weights at :meth:`MlpBank.freeze`. Sources,
    node noise keys and quantizations come from streams of their own. Each draw of a
    kind is i.i.d., so batching them keeps the law of one node, edge or MLP at a time
    (DESIGN §4.1-4.2). The golden-bytes test guards this order.
    """
    p = config.scm_params
    rng = plan_rng(seed, "table", table.id, "scm")
    emb_dim = int(p.mlp_emb_dim)
    children = tuple(table.children)

    graph = _draw_graph(rng, p, config, len(table.features))
    mech = _draw_mechanisms(rng, p, table, graph)
    edges = _edges_by_child(graph)
    mlps = _draw_mlps(rng, p, emb_dim, children, graph, mech, edges)
    source_index, sources = _plan_sources(seed, p, table, mech)
    # Word v of one seed sequence: a function of (seed, table, v) alone, as a
    # stream_key per node would be, for one hash instead of n.
    noise_key = seed_sequence(seed, "table", table.id, "noise").generate_state(graph.n, dtype=np.uint64)
    quantize = _plan_quantizations(seed, p, table, graph.lazy)

    mlp = mlps.bank.freeze()
    # Evaluate every categorical encoder once per category (exact: its output
    # depends on the category alone).
    enc_tables, offsets = encoder_tables(mlp, mlps.pending, emb_dim)

    order = graph.dag.topological_order().astype(np.int64)
    return ScmPlan(
        table=table.name,
        mode=graph.mode,
        layout=graph.layout,
        emb_dim=emb_dim,
        order=order,
        run_order=order[_ancestors_of(graph.col_nodes, order, edges.in_ptr, edges.src)[order]],
        is_source=mech.is_source,
        num_categories=mech.num_categories,
        source_index=source_index,
        agg=mech.agg,
        noise_alpha=mech.noise_alpha,
        noise_beta=mech.noise_beta,
        noise_key=noise_key,
        dec_mlp=mlps.dec_mlp,
        dec_emb=mlps.dec_emb,
        in_ptr=edges.in_ptr,
        edge_src=edges.src,
        edge_weight=edges.weight,
        edge_mlp=mlps.edge_mlp,
        edge_table=_table_offsets(mlps.edge_pending, offsets),
        enc_tables=enc_tables,
        cat_encoders=np.column_stack([mlps.pending, offsets]).astype(np.int64),
        col_nodes=graph.col_nodes,
        col_categories=np.asarray([c.num_categories for c in table.features], dtype=np.int64),
        coll_mlp=mlps.coll_mlp,
        coll_table=_table_offsets(mlps.coll_pending, offsets),
        children=children,
        quantize=quantize,
        mlp=mlp,
        sources=sources,
    )
