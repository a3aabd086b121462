"""DAG layouts (DESIGN §2): structural invariants, layout shapes, determinism and the
distributions that are cheap to check."""

from __future__ import annotations

import pickle
from collections import Counter
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
from scipy import stats

from plurel_fast.config import Choices
from plurel_fast.plan.layouts import LAYOUTS, Dag, build_dag

_DAG_FIELDS = (
    "ba_sink_edge_dropout",
    "ba_flip_leaf_edge_prob",
    "ba_max_in_degree",
    "ba_m",
    "er_p_choices",
    "ws_rewire_p_choices",
    "layered_depth_choices",
    "layered_edge_dropout_p",
    "edge_weight_dist_choices",
)

try:
    from plurel_fast.config import DAGParams

    DEFAULTS = DAGParams()
except ImportError:  # DAGParams not merged yet: the DESIGN §2 defaults by hand.
    DEFAULTS = SimpleNamespace(
        ba_sink_edge_dropout=0.4,
        ba_flip_leaf_edge_prob=0.0,
        ba_max_in_degree=4,
        ba_m=2,
        er_p_choices=Choices("range", [0.3, 0.8]),
        ws_rewire_p_choices=Choices("range", [0.1, 0.3]),
        layered_depth_choices=Choices("range", [2, 8]),
        layered_edge_dropout_p=0.1,
        edge_weight_dist_choices=Choices("set", ["gaussian", "lognormal", "cauchy", "uniform"]),
    )


def params(**overrides):
    """The defaults with some fields replaced (build_dag only reads attributes)."""
    fields = {name: getattr(DEFAULTS, name) for name in _DAG_FIELDS}
    fields.update(overrides)
    return SimpleNamespace(**fields)


def fixed(x) -> Choices:
    return Choices("set", [x])


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_invariants(dag: Dag, layout: str, n: int) -> None:
    assert dag.layout == layout
    assert dag.num_nodes == n
    e, w = dag.edges, dag.weights
    assert e.dtype == np.int64 and e.ndim == 2 and e.shape[1] == 2
    assert w.dtype == np.float64 and w.shape == (e.shape[0],)
    assert np.isfinite(w).all()
    if n < 2:
        assert e.shape[0] == 0
    if e.shape[0]:
        assert e.min() >= 0 and e.max() < n
        assert (e[:, 0] != e[:, 1]).all()
        key = e[:, 0] * n + e[:, 1]
        assert (np.diff(key) > 0).all(), "edges must be sorted and unique"
    assert dag.weight_dist in ("gaussian", "lognormal", "cauchy", "uniform")
    if dag.weight_dist == "uniform":
        assert (np.abs(w) <= 2).all()
    if dag.weight_dist == "lognormal":
        assert (w > 0).all()
    if layout == "Layered":
        assert dag.node_layer is not None and dag.node_layer.shape == (n,)
    else:
        assert dag.node_layer is None
    g = dag.to_networkx()
    assert sorted(g.nodes) == list(range(n))
    assert g.number_of_edges() == e.shape[0]
    assert nx.is_directed_acyclic_graph(g)
    if n >= 2:
        assert nx.is_weakly_connected(g)


# --------------------------------------------------------------------- invariants


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_is_a_connected_dag_for_sizes_0_to_60(layout):
    for n in range(61):
        for seed in range(4):
            check_invariants(build_dag(layout, n, DEFAULTS, rng(1000 * n + seed)), layout, n)


EXTREME = {
    "sparse": params(
        er_p_choices=fixed(0.0),
        ws_rewire_p_choices=fixed(1.0),
        layered_edge_dropout_p=1.0,
        layered_depth_choices=Choices("range", [1, 40]),
        ba_sink_edge_dropout=1.0,
        ba_flip_leaf_edge_prob=1.0,
        ba_max_in_degree=1,
        ba_m=1,
    ),
    "dense": params(
        er_p_choices=fixed(1.0),
        ws_rewire_p_choices=fixed(0.0),
        layered_edge_dropout_p=0.0,
        layered_depth_choices=fixed(2),
        ba_sink_edge_dropout=0.0,
        ba_m=50,
    ),
    "patchy": params(
        layered_edge_dropout_p=0.7,
        ba_flip_leaf_edge_prob=0.5,
        ba_max_in_degree=2,
        ba_m=3,
    ),
}


@pytest.mark.parametrize("name", EXTREME)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_extreme_parameters_still_give_connected_dags(layout, name):
    for n in (0, 1, 2, 3, 4, 5, 7, 12, 25):
        for seed in range(3):
            dag = build_dag(layout, n, EXTREME[name], rng(seed))
            check_invariants(dag, layout, n)


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_invariants_broad_sweep(layout):
    for seed in range(400):
        r = rng(seed)
        n = int(r.integers(0, 200))
        check_invariants(build_dag(layout, n, DEFAULTS, r), layout, n)


# --------------------------------------------------------------------- determinism


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_generator_state_gives_the_same_dag(layout):
    for n in (1, 2, 9, 40):
        a = build_dag(layout, n, DEFAULTS, rng(7))
        b = build_dag(layout, n, DEFAULTS, rng(7))
        assert a == b
        np.testing.assert_array_equal(a.edges, b.edges)
        np.testing.assert_array_equal(a.weights, b.weights)
    differ = [build_dag(layout, 40, DEFAULTS, rng(s)) for s in range(3)]
    assert not (differ[0] == differ[1] == differ[2])


def test_build_dag_reads_only_the_generator_it_is_given():
    np.random.seed(0)
    a = build_dag("WattsStrogatz", 30, DEFAULTS, rng(3))
    np.random.seed(1)
    b = build_dag("WattsStrogatz", 30, DEFAULTS, rng(3))
    assert a == b


# --------------------------------------------------------------------- layout shapes


@pytest.mark.parametrize("layout", ["ErdosRenyi", "WattsStrogatz", "RandomCauchy", "Layered"])
def test_oriented_layouts_point_from_lower_to_higher_id(layout):
    for seed in range(20):
        dag = build_dag(layout, 30, DEFAULTS, rng(seed))
        assert (dag.edges[:, 0] < dag.edges[:, 1]).all()


@pytest.mark.parametrize("layout", ["RandomTree", "ReverseRandomTree"])
def test_trees_have_one_root_and_one_link_per_other_node(layout):
    for n in range(2, 40):
        dag = build_dag(layout, n, DEFAULTS, rng(n))
        assert dag.num_edges == n - 1
        towards_root = dag.out_degree() if layout == "ReverseRandomTree" else dag.in_degree()
        assert (towards_root == 0).sum() == 1
        assert (towards_root[towards_root != 0] == 1).all()


def test_random_tree_root_is_uniform():
    n, draws = 6, 3000
    roots = [
        int(np.flatnonzero(build_dag("RandomTree", n, DEFAULTS, rng(s)).in_degree() == 0)[0])
        for s in range(draws)
    ]
    counts = np.bincount(roots, minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_random_tree_is_uniform_over_labelled_trees():
    # Cayley: 4**2 = 16 labelled trees on 4 nodes, each equally likely.
    draws = 3200
    shapes = Counter()
    for s in range(draws):
        dag = build_dag("ReverseRandomTree", 4, DEFAULTS, rng(s))
        shapes[frozenset(frozenset(e) for e in dag.edges.tolist())] += 1
    assert len(shapes) == 16
    assert stats.chisquare(list(shapes.values())).pvalue > 1e-4


def test_layered_structure():
    for seed in range(150):
        r = rng(seed)
        n = int(r.integers(2, 60))
        lo = int(r.integers(1, 10))
        hi = lo + int(r.integers(0, 6))
        drop = float(r.choice([0.0, 0.1, 0.5, 0.9]))
        p = params(layered_depth_choices=Choices("range", [lo, hi]), layered_edge_dropout_p=drop)
        dag = build_dag("Layered", n, p, r)
        check_invariants(dag, "Layered", n)
        layer = dag.node_layer
        depth = int(layer.max()) + 1
        # Every layer is used, nodes are numbered layer by layer.
        assert np.array_equal(np.unique(layer), np.arange(depth))
        assert (np.diff(layer) >= 0).all()
        # depth drawn from [lo, hi], at least 2 (a single layer has no edges), at most n
        assert min(max(lo, 2), n) <= depth <= min(max(hi, 2), n)
        pl, cl = layer[dag.edges[:, 0]], layer[dag.edges[:, 1]]
        assert (cl == pl + 1).all()
        has_parent = np.zeros(n, bool)
        has_parent[dag.edges[:, 1]] = True
        has_child = np.zeros(n, bool)
        has_child[dag.edges[:, 0]] = True
        assert has_parent[layer > 0].all() and not has_parent[layer == 0].any()
        assert has_child[layer < depth - 1].all() and not has_child[layer == depth - 1].any()


def test_layered_without_dropout_is_complete_between_layers():
    p = params(layered_edge_dropout_p=0.0)
    for seed in range(30):
        dag = build_dag("Layered", 25, p, rng(seed))
        sizes = np.bincount(dag.node_layer)
        assert dag.num_edges == int((sizes[:-1] * sizes[1:]).sum())


def test_barabasi_albert_edge_count_without_dropout():
    # networkx grows from a star on m + 1 nodes, then adds m edges per new node.
    for n in range(2, 40):
        for ba_m in (1, 2, 3):
            m = min(ba_m, n - 1)
            p = params(ba_sink_edge_dropout=0.0, ba_m=ba_m)
            dag = build_dag("BarabasiAlbert", n, p, rng(n))
            assert dag.num_edges == m * (n - m)


def test_barabasi_albert_sink_dropout_removes_edges():
    p = params(ba_sink_edge_dropout=1.0)
    kept = [build_dag("BarabasiAlbert", 40, p, rng(s)).num_edges for s in range(20)]
    assert max(kept) < 2 * 38


@pytest.mark.parametrize("max_in", [1, 2, 3, 4])
def test_barabasi_albert_flips_respect_the_in_degree_cap(max_in):
    # With the same seed the flip pass sees the same graph whatever its probability,
    # so the graph without flips tells which edges were turned around.
    flipped_any = False
    for seed in range(60):
        base = build_dag("BarabasiAlbert", 30, params(ba_flip_leaf_edge_prob=0.0), rng(seed))
        dag = build_dag(
            "BarabasiAlbert",
            30,
            params(ba_flip_leaf_edge_prob=1.0, ba_max_in_degree=max_in),
            rng(seed),
        )
        before = set(map(tuple, base.edges.tolist()))
        after = set(map(tuple, dag.edges.tolist()))
        flips = before - after
        assert {(v, u) for u, v in flips} == after - before
        in_deg = dag.in_degree()
        base_out = base.out_degree()
        for u, v in flips:
            assert base_out[v] == 0 and base.in_degree()[v] == 1
            assert in_deg[u] <= max_in
        for v in np.flatnonzero((base_out == 0) & (base.in_degree() == 1)):
            (u,) = base.parents(v)
            if (u, v) in after:  # refused: the parent was (and stays) at the cap
                assert in_deg[u] >= max_in
        flipped_any |= bool(flips)
    assert flipped_any


def test_watts_strogatz_without_rewiring_is_a_ring_lattice_with_k_2_or_4():
    p = params(ws_rewire_p_choices=fixed(0.0))
    ks = set()
    for seed in range(40):
        dag = build_dag("WattsStrogatz", 20, p, rng(seed))
        degree = dag.in_degree() + dag.out_degree()
        assert len(set(degree.tolist())) == 1
        ks.add(int(degree[0]))
    assert ks == {2, 4}


def test_erdos_renyi_with_p_zero_is_the_connecting_path():
    # No pair is drawn, so every node is its own component and connecting joins
    # consecutive singletons: the path 0 - 1 - ... - n-1.
    dag = build_dag("ErdosRenyi", 12, params(er_p_choices=fixed(0.0)), rng(0))
    np.testing.assert_array_equal(dag.edges, np.stack([np.arange(11), np.arange(1, 12)], 1))


def test_erdos_renyi_pair_density():
    # The reference draws a directed G(n, p) and drops directions: a pair is linked
    # with probability 1 - (1 - p)**2. At p = 0.5, n = 40 connecting adds no edge.
    p, n, dags = 0.5, 40, 60
    pairs = dags * n * (n - 1) // 2
    edges = sum(
        build_dag("ErdosRenyi", n, params(er_p_choices=Choices("range", [p, p])), rng(s)).num_edges
        for s in range(dags)
    )
    q = 1 - (1 - p) ** 2
    assert abs(edges / pairs - q) < 5 * np.sqrt(q * (1 - q) / pairs)


def test_random_cauchy_density_spans_sparse_to_dense():
    pairs = 30 * 29 / 2
    density = [build_dag("RandomCauchy", 30, DEFAULTS, rng(s)).num_edges / pairs for s in range(60)]
    assert min(density) < 0.1 and max(density) > 0.9


# --------------------------------------------------------------------- edge weights

WEIGHT_LAWS = {
    "gaussian": stats.norm(),
    "lognormal": stats.lognorm(s=1.0),
    "cauchy": stats.cauchy(),
    "uniform": stats.uniform(loc=-2.0, scale=4.0),
}


@pytest.mark.parametrize("dist", WEIGHT_LAWS)
def test_edge_weights_follow_the_chosen_law(dist):
    p = params(edge_weight_dist_choices=fixed(dist))
    weights = np.concatenate(
        [build_dag(layout, 25, p, rng(s)).weights for s in range(40) for layout in LAYOUTS]
    )
    assert weights.size > 2000
    assert stats.kstest(weights, WEIGHT_LAWS[dist].cdf).pvalue > 1e-4


def test_weight_law_is_picked_uniformly_once_per_dag():
    picks = Counter(build_dag("ErdosRenyi", 5, DEFAULTS, rng(s)).weight_dist for s in range(2000))
    assert set(picks) == set(WEIGHT_LAWS)
    assert stats.chisquare(list(picks.values())).pvalue > 1e-4


# --------------------------------------------------------------------- Dag methods


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dag_queries_agree_with_networkx(layout):
    dag = build_dag(layout, 35, DEFAULTS, rng(11))
    g = dag.to_networkx()
    for v in range(dag.num_nodes):
        np.testing.assert_array_equal(dag.parents(v), sorted(g.predecessors(v)))
        np.testing.assert_array_equal(dag.children(v), sorted(g.successors(v)))
    np.testing.assert_array_equal(dag.in_degree(), [g.in_degree(v) for v in range(35)])
    np.testing.assert_array_equal(dag.out_degree(), [g.out_degree(v) for v in range(35)])
    assert dag.topological_order().tolist() == list(nx.lexicographical_topological_sort(g))
    for (u, v), w in zip(dag.edges.tolist(), dag.weights.tolist()):
        assert g.edges[u, v]["weight"] == w


def test_dag_pickles_and_arrays_are_read_only():
    dag = build_dag("Layered", 20, DEFAULTS, rng(5))
    assert pickle.loads(pickle.dumps(dag)) == dag
    with pytest.raises(ValueError):
        dag.edges[0, 0] = 3
    with pytest.raises(AttributeError):
        dag.num_nodes = 3


def test_dag_sorts_edges_with_their_weights():
    edges, weights = np.array([[2, 3], [0, 2], [0, 1]]), np.array([3.0, 2.0, 1.0])
    dag = Dag("custom", 4, edges, weights, "gaussian")
    assert dag.edges.tolist() == [[0, 1], [0, 2], [2, 3]]
    assert dag.weights.tolist() == [1.0, 2.0, 3.0]
    assert dag.parents(3).tolist() == [2] and dag.children(0).tolist() == [1, 2]
    assert dag.topological_order().tolist() == [0, 1, 2, 3]
    with pytest.raises(IndexError, match="node 4"):
        dag.parents(4)


@pytest.mark.parametrize(
    "edges, match",
    [
        ([[0, 1], [1, 2], [2, 0]], "cycle"),
        ([[0, 1], [0, 1]], "twice"),
        ([[0, 3]], r"\[0, 2\]"),
        ([[1, 1]], "self-loop"),
    ],
)
def test_dag_rejects_what_is_not_a_dag(edges, match):
    with pytest.raises(ValueError, match=match):
        Dag("custom", 3, np.array(edges), np.zeros(len(edges)), "gaussian")


# --------------------------------------------------------------------- errors


def test_unknown_layout_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match="'Star'.*ErdosRenyi.*Layered"):
        build_dag("Star", 5, DEFAULTS, rng(0))


def test_negative_size_is_rejected():
    with pytest.raises(ValueError, match="num_nodes must be >= 0, got -1"):
        build_dag("RandomTree", -1, DEFAULTS, rng(0))


def test_tiny_graphs_are_isolated_nodes():
    for layout in LAYOUTS:
        for n in (0, 1):
            dag = build_dag(layout, n, DEFAULTS, rng(0))
            assert dag.num_nodes == n and dag.num_edges == 0
            assert dag.topological_order().tolist() == list(range(n))
