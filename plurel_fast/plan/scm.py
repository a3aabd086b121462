"""The SCM program of one table (SPEC §4.1-4.4), packed for ``kernels.scm``.

An SCM is a DAG of nodes; ``k`` of them are the table's *column* nodes, the
in-degree-0 nodes are *source* nodes fed by exogenous signals, every other node
is an *inner* node: ``value_v = decoder_v(noise_v + AGG_v(inputs))`` with one
encoded input per parent node and, for each foreign key, the *collation*
encodings of the referenced table's column values.

Everything is drawn here once, from the table's planning stream, and packed into
flat arrays (op codes, CSR edge lists, ids into an ``MlpBankArrays`` and a
``SourceBank``) that a numba kernel walks. The kernel never sees a Config.

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

from plurel_fast.config import AGGREGATIONS, Config
from plurel_fast.kernels.scm import encoder_tables
from plurel_fast.plan.layouts import build_dag
from plurel_fast.plan.mlp import MlpBank, MlpBankArrays
from plurel_fast.plan.post import QuantizePlan, plan_quantization
from plurel_fast.plan.rng import plan_rng, stream_key
from plurel_fast.plan.schema import ACTIVITY, TablePlan
from plurel_fast.plan.sources import SourceBank, plan_categorical_source, plan_numerical_source

AGG_CODES = {name: i for i, name in enumerate(AGGREGATIONS)}  # sum, max, product, logexp
AGG_SUM = AGG_CODES["sum"]

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
        Lazy mode: the quantization of each categorical column (SPEC §4.5).
    mlp : MlpBankArrays
    sources : SourceBank
    """

    table: str
    mode: str
    layout: str
    emb_dim: int
    order: np.ndarray
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


def _categorical_encoder_table(bank: MlpBank, rng, num_categories: int, emb_dim: int, scm_params):
    """Plan a categorical encoder (embedding + MLP 32 -> 32); return (emb_id, mlp_id)."""
    emb_id = bank.add_embedding(rng, num_categories, emb_dim, scm_params)
    mlp_id = bank.add_mlp(rng, emb_dim, emb_dim, emb_dim, scm_params)
    return emb_id, mlp_id


def plan_scm(seed: int, table: TablePlan, config: Config) -> ScmPlan:
    """Draw the SCM of ``table`` (SPEC §4.1-4.3) from its own planning stream."""
    p = config.scm_params
    rng = plan_rng(seed, "table", table.id, "scm")
    emb_dim = int(p.mlp_emb_dim)
    k = len(table.features)

    mode = p.propagation_mode_choices.sample(rng)
    lazy = mode == "type_lazy"
    layout = p.scm_layout_choices.sample(rng)
    perc = float(p.scm_col_node_perc_choices.sample(rng))
    n = k + int(math.ceil(k / perc)) + 3
    dag = build_dag(layout, n, config.dag_params, rng)
    col_nodes = rng.choice(n, size=k, replace=False).astype(np.int64)

    # Semantic type of every node: columns take their column's, others are drawn.
    sem_categories = np.zeros(n, dtype=np.int64)
    col_of_node = np.full(n, NO_ID, dtype=np.int64)
    for i, v in enumerate(col_nodes):
        col_of_node[v] = i
        sem_categories[v] = table.features[i].num_categories
    for v in range(n):
        if col_of_node[v] == NO_ID:
            if p.col_stype_choices.sample(rng) == "categorical":
                sem_categories[v] = int(p.num_categories_choices.sample(rng))
    num_categories = np.zeros(n, dtype=np.int64) if lazy else sem_categories

    in_degree = dag.in_degree()
    is_source = in_degree == 0
    bank = MlpBank()
    agg = np.zeros(n, dtype=np.int64)
    noise_alpha = np.ones(n)
    noise_beta = np.ones(n)
    dec_mlp = np.full(n, NO_ID, dtype=np.int64)
    dec_emb = np.full(n, NO_ID, dtype=np.int64)
    children = tuple(table.children)
    coll_mlp = np.full((len(children), k), NO_ID, dtype=np.int64)
    coll_table = np.full((len(children), k), NO_ID, dtype=np.int64)

    # Categorical encoders become tables once the bank is frozen; until then an
    # encoder slot holds the marker -2 - index into ``pending``.
    pending: list[tuple[int, int]] = []  # (emb_id, mlp_id)

    def encoder(v):
        """An encoder for node v's values: (mlp_id, -1) or (-1, table marker)."""
        cats = int(num_categories[v])
        if cats == 0:
            return bank.add_mlp(rng, int(p.mlp_in_dim), emb_dim, emb_dim, p), NO_ID
        pending.append(_categorical_encoder_table(bank, rng, cats, emb_dim, p))
        return NO_ID, -1 - len(pending)

    for v in range(n):
        if is_source[v]:
            continue
        noise_alpha[v] = float(p.node_noise_alpha_choices.sample(rng))
        noise_beta[v] = float(p.node_noise_beta_choices.sample(rng))
        agg[v] = AGG_CODES[p.propagation_agg_choices.sample(rng)]
        cats = int(num_categories[v])
        if cats == 0:
            dec_mlp[v] = bank.add_mlp(rng, emb_dim, emb_dim, int(p.mlp_out_dim), p)
        else:
            dec_mlp[v] = bank.add_mlp(rng, emb_dim, emb_dim, emb_dim, p)
            dec_emb[v] = bank.add_embedding(rng, cats, emb_dim, p)
    for c in range(len(children)):
        for i, v in enumerate(col_nodes):
            coll_mlp[c, i], coll_table[c, i] = encoder(v)

    edges = dag.edges
    by_child = np.lexsort((edges[:, 0], edges[:, 1])) if len(edges) else np.zeros(0, np.int64)
    edge_src = edges[by_child, 0].astype(np.int64) if len(edges) else np.zeros(0, np.int64)
    edge_dst = edges[by_child, 1].astype(np.int64) if len(edges) else np.zeros(0, np.int64)
    edge_weight = dag.weights[by_child].astype(np.float32)
    edge_mlp = np.full(len(edge_src), NO_ID, dtype=np.int64)
    edge_table = np.full(len(edge_src), NO_ID, dtype=np.int64)
    for e, u in enumerate(edge_src):
        edge_mlp[e], edge_table[e] = encoder(int(u))
    in_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(edge_dst, minlength=n), out=in_ptr[1:])

    # Sources, each from its own stream so a change elsewhere does not shift them.
    is_activity = table.kind == ACTIVITY
    source_nodes = np.flatnonzero(is_source)
    source_index = np.full(n, NO_ID, dtype=np.int64)
    specs, keys = [], []
    for s, v in enumerate(source_nodes):
        source_index[v] = s
        srng = plan_rng(seed, "table", table.id, "source", int(v))
        cats = int(num_categories[v])
        if cats == 0:
            specs.append(plan_numerical_source(srng, p, table.num_rows, is_activity))
        else:
            specs.append(plan_categorical_source(srng, p, table.num_rows, cats, is_activity))
        keys.append(stream_key(seed, "table", table.id, "source", int(v)))
    sources = SourceBank.from_sources(table.num_rows, specs, np.asarray(keys, dtype=np.uint64))

    noise_key = np.asarray(
        [stream_key(seed, "table", table.id, "noise", v) for v in range(n)], dtype=np.uint64
    )

    quantize = []
    for i, col in enumerate(table.features):
        if lazy and col.num_categories > 0:
            qrng = plan_rng(seed, "table", table.id, "quantize", i)
            quantize.append(
                plan_quantization(
                    qrng, p, col.num_categories, stream_key(seed, "table", table.id, "quantize", i)
                )
            )
        else:
            quantize.append(None)

    mlp = bank.freeze()
    # Evaluate every categorical encoder once per category (exact: its output
    # depends on the category alone).
    enc_tables, offsets = encoder_tables(mlp, np.asarray(pending, dtype=np.int64), emb_dim)

    def resolve(a):
        a = a.copy()
        marked = a < NO_ID
        a[marked] = offsets[-2 - a[marked]]
        return a

    return ScmPlan(
        table=table.name,
        mode=mode,
        layout=layout,
        emb_dim=emb_dim,
        order=dag.topological_order().astype(np.int64),
        is_source=is_source,
        num_categories=num_categories,
        source_index=source_index,
        agg=agg,
        noise_alpha=noise_alpha,
        noise_beta=noise_beta,
        noise_key=noise_key,
        dec_mlp=dec_mlp,
        dec_emb=dec_emb,
        in_ptr=in_ptr,
        edge_src=edge_src,
        edge_weight=edge_weight,
        edge_mlp=edge_mlp,
        edge_table=resolve(edge_table),
        enc_tables=enc_tables,
        cat_encoders=np.asarray(
            [(e, m, o) for (e, m), o in zip(pending, offsets)], dtype=np.int64
        ).reshape(-1, 3),
        col_nodes=col_nodes,
        col_categories=np.asarray([c.num_categories for c in table.features], dtype=np.int64),
        coll_mlp=coll_mlp,
        coll_table=resolve(coll_table),
        children=children,
        quantize=tuple(quantize),
        mlp=mlp,
        sources=sources,
    )
