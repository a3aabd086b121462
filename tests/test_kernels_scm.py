"""SCM propagation kernel (DESIGN §4.4) against the naive row-by-row forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from naive import naive_collation, naive_scm_rows
from plurel_fast import Choices, Config, DatabaseParams, SCMParams
from plurel_fast.config import ACTIVATIONS, INITIALIZATIONS
from plurel_fast.assemble import key_columns, scm_values
from plurel_fast.kernels.scm import collation_partials
from plurel_fast.kernels.sources import source_values
from plurel_fast.plan.database import plan_database


def _config(agg, mode, entity_rows=(30, 60), activity_rows=(60, 90), num_cols=(2, 5), **scm):
    return Config(
        database_params=DatabaseParams(
            num_tables_choices=Choices("range", [3, 4]),
            num_rows_entity_table_choices=Choices("range", list(entity_rows)),
            num_rows_activity_table_choices=Choices("range", list(activity_rows)),
            num_cols_choices=Choices("range", list(num_cols)),
        ),
        scm_params=SCMParams(
            propagation_agg_choices=Choices("set", [agg]),
            propagation_mode_choices=Choices("set", [mode]),
            mlp_num_layers_choices=Choices("range", [1, 3]),
            **scm,
        ),
    )


def _run(plan, chunk_rows=37):
    """Raw SCM values of every table, in generation order, as generate() makes them."""
    raw, keys_of = {}, {}
    for name in plan.schema.order:
        table = plan.schema.table(name)
        keys_of[name] = key_columns(plan, table, 10_000)
        scm = plan.scm(table.id)
        parents = {p: (plan.scm(plan.schema.table(p).id), raw[p]) for p in table.parents}
        raw[name] = scm_values(plan, table, scm, keys_of[name], parents, chunk_rows)
    return raw, keys_of


CASES = [(agg, mode) for agg in ("sum", "max", "product", "logexp") for mode in ("type_eager", "type_lazy")]


def _check_against_naive(plan):
    raw, keys_of = _run(plan)
    checked = 0
    for table in plan.schema.tables:
        scm = plan.scms[table.id]
        if len(table.features) == 0:
            continue
        rows = np.arange(0, table.num_rows, max(1, table.num_rows // 6))
        src = source_values(scm.sources, table.num_rows)[rows]
        foreign = []
        for fkey_col, parent in zip(table.fkey_cols, table.parents):
            pscm = plan.scms[plan.schema.table(parent).id]
            foreign.append((pscm, pscm.children.index(table.name), raw[parent], keys_of[table.name][fkey_col][rows]))
        want = naive_scm_rows(scm, rows, src, foreign)
        got = raw[table.name][rows]
        for c, col in enumerate(table.features):
            if scm.quantize[c] is not None:
                continue  # quantization runs on the whole column, after propagation
            if col.num_categories:
                assert np.array_equal(got[:, c], want[:, c]), (table.name, col.name)
            else:
                np.testing.assert_allclose(got[:, c], want[:, c], rtol=1e-3, atol=1e-4)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("agg,mode", CASES)
def test_kernel_matches_naive(agg, mode):
    _check_against_naive(plan_database(11, _config(agg, mode)))


LEAN_ACTIVATIONS = ("tanh", "gelu", "sign", "random_sine", "hardshrink")


@pytest.mark.parametrize(
    "activation",
    [a if a in LEAN_ACTIVATIONS else pytest.param(a, marks=pytest.mark.slow) for a in ACTIVATIONS],
)
def test_kernel_matches_naive_per_activation(activation):
    config = _config("sum", "type_eager", activation_choices=Choices("set", [activation]))
    _check_against_naive(plan_database(4, config))


@pytest.mark.parametrize("init", INITIALIZATIONS)
def test_kernel_matches_naive_per_init(init):
    config = _config(
        "logexp", "type_eager", initialization_choices=Choices("set", [init]),
        mlp_weight_density_choices=Choices("range", [0.5, 1.0]),
    )
    _check_against_naive(plan_database(6, config))


@pytest.mark.parametrize("agg", ["sum", "max", "product", "logexp"])
def test_collation_partials_match_naive(agg):
    plan = plan_database(5, _config(agg, "type_eager"))
    raw, _ = _run(plan)
    code = {"sum": 0, "max": 1, "product": 2, "logexp": 3}[agg]
    for table in plan.schema.tables:
        scm = plan.scms[table.id]
        if not table.children or len(table.features) == 0:
            continue
        got = collation_partials(scm, 0, raw[table.name], np.array([code]))
        for r in range(0, table.num_rows, 7):
            want = naive_collation(scm, 0, raw[table.name][r], code)
            np.testing.assert_allclose(got[r, 0], want, rtol=1e-5, atol=1e-6)


def test_values_independent_of_chunk_size():
    plan = plan_database(3, _config("sum", "type_eager"))
    for name in plan.schema.order:
        table = plan.schema.table(name)
        keys = key_columns(plan, table, 10_000)
        if table.parents:
            continue
        a = scm_values(plan, table, plan.scm(table.id), keys, {}, 7)
        b = scm_values(plan, table, plan.scm(table.id), keys, {}, 10_000)
        assert a.tobytes() == b.tobytes()


def test_run_order_is_the_columns_and_their_ancestors():
    import networkx as nx

    pruned = 0
    for seed in range(4):
        plan = plan_database(seed, _config("sum", "type_eager"))
        for scm in plan.scms:
            graph = nx.DiGraph()
            graph.add_nodes_from(range(scm.num_nodes))
            dst = np.repeat(np.arange(scm.num_nodes), np.diff(scm.in_ptr))
            graph.add_edges_from(zip(scm.edge_src.tolist(), dst.tolist()))
            want = set(scm.col_nodes.tolist())
            for c in scm.col_nodes.tolist():
                want |= nx.ancestors(graph, c)
            assert sorted(scm.run_order.tolist()) == sorted(want)
            position = np.argsort(scm.order)
            assert np.all(np.diff(position[scm.run_order]) > 0)  # in topological order
            pruned += scm.num_nodes - len(scm.run_order)
    assert pruned > 0  # the kernel-against-naive checks (naive: every node) see pruned plans


def test_propagation_tile_rows_and_workers():
    import numba

    from plurel_fast.kernels.scm import (
        MAX_TILE_ROWS,
        MIN_WORKER_ROWS,
        propagation_tile_rows,
        propagation_workers,
    )

    for n in (0, 1, 63, 64, 500, 2047, 2048, 2049, 10**6):
        tile = propagation_tile_rows(n)
        assert tile % 8 == 0 and 8 <= tile <= MAX_TILE_ROWS
        assert tile >= min(n, MAX_TILE_ROWS)  # a small pass is one tile
        workers = propagation_workers(n)
        assert 1 <= workers <= numba.get_num_threads()
        assert workers == 1 or n // workers >= MIN_WORKER_ROWS


@pytest.mark.parametrize("tile, workers", [(4, None), (68, None), (8, 3), (256, 1), (None, 5)])
def test_values_independent_of_tiles_and_thread_shares(tile, workers, monkeypatch):
    # rows are split into per-thread shares, then tiles: neither changes a value
    from plurel_fast.kernels import scm as scm_kernels

    config = _config("logexp", "type_eager", entity_rows=(300, 400), activity_rows=(500, 700), num_cols=(3, 6))
    plan = plan_database(2, config)
    want, _ = _run(plan, 10_000)  # whole tables: 256-row tiles, numba's threads
    if tile is not None:
        monkeypatch.setattr(scm_kernels, "propagation_tile_rows", lambda n: tile)
    if workers is not None:
        monkeypatch.setattr(scm_kernels, "propagation_workers", lambda n: workers)
    got, _ = _run(plan, 10_000)
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name


def test_propagation_pass_rows():
    from plurel_fast.kernels.scm import MIN_PASS_ROWS, PASS_BYTES, propagation_pass_rows

    for n_rows in (0, 1, 500, 10**5, 10**7):
        for n_nodes in (1, 40, 150, 2000):
            p = propagation_pass_rows(n_rows, n_nodes)
            assert p >= 1 and (p <= max(n_rows, 1) or p == MIN_PASS_ROWS)
            if p > MIN_PASS_ROWS:  # the node values of a pass stay within PASS_BYTES
                assert 4 * n_nodes * p <= PASS_BYTES


@pytest.mark.parametrize("pass_rows", [5, 37])
def test_values_independent_of_pass_rows(pass_rows, monkeypatch):
    # passes re-draw every node's weights: same bytes however many passes a chunk takes
    from plurel_fast.kernels import scm as scm_kernels

    config = _config("max", "type_eager", entity_rows=(80, 120), activity_rows=(150, 200), num_cols=(3, 6))
    plan = plan_database(5, config)
    want, _ = _run(plan, 10_000)
    monkeypatch.setattr(scm_kernels, "propagation_pass_rows", lambda n, nodes: pass_rows)
    got, _ = _run(plan, 10_000)
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name


def test_lazy_and_stored_weights_give_the_same_values():
    import msgspec

    plan = plan_database(4, _config("product", "type_lazy", num_cols=(3, 6)))
    for name in plan.schema.order:
        table = plan.schema.table(name)
        if table.parents:
            continue
        scm = plan.scm(table.id)
        assert scm.mlp.lazy and scm.mlp.weights.size == 0
        stored = msgspec.structs.replace(scm, mlp=scm.mlp.materialise())
        assert not stored.mlp.lazy and stored.mlp.weights.size > 0
        keys = key_columns(plan, table, 10_000)
        a = scm_values(plan, table, scm, keys, {}, 10_000)
        b = scm_values(plan, table, stored, keys, {}, 10_000)
        assert a.tobytes() == b.tobytes()


def test_encoder_tables_independent_of_batching(monkeypatch):
    # a lazy bank's categorical encoders are drawn and evaluated in batches
    from plurel_fast.kernels import scm as scm_kernels

    config = _config("sum", "type_eager", num_cols=(4, 7))
    want = plan_database(6, config).scms
    monkeypatch.setattr(scm_kernels, "ENCODER_BATCH_WEIGHTS", 3000)  # ~1 MLP per batch
    got = plan_database(6, config).scms
    tables = 0
    for a, b in zip(want, got):
        assert a.enc_tables.tobytes() == b.enc_tables.tobytes()
        tables += len(a.cat_encoders)
    assert tables > 10


def test_wide_scm_plans_stay_small_and_pickle():
    # Seed 2 of the default config has a 147-node SCM with ~9 000 edges: 96 MB of
    # weight matrices, which the plan keeps as keys (drawn node by node when run).
    import pickle

    plan = plan_database(2, Config())
    widest = max(plan.scms, key=lambda s: len(s.edge_src))
    stored = widest.mlp.materialise().weights
    blob = pickle.dumps(widest)
    assert stored.nbytes > 50e6 and len(blob) < stored.nbytes / 5
    again = pickle.loads(blob)
    assert again.mlp.lazy and again.mlp.materialise().weights.tobytes() == stored.tobytes()
    assert again.enc_tables.tobytes() == widest.enc_tables.tobytes()
