"""DAG layouts: the graph families behind table schemas and SCM graphs (DESIGN §2).

``build_dag(layout, num_nodes, dag_params, rng)`` draws one weighted DAG of a named
layout. All randomness comes from the ``numpy.random.Generator`` passed in; where a
networkx generator does the work it receives an integer seed drawn from that
generator, so the same generator state always yields the same ``Dag``.

Every DAG with at least two nodes is weakly connected. Layouts that start from an
undirected graph make it so by *connecting* (joining consecutive components, ordered
by their smallest node, through an edge between a random node of each) and then
*orienting* every edge from the lower to the higher node id.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx
import numpy as np

from plurel_fast.config import LAYOUTS


_WEIGHT_SAMPLERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gaussian": lambda rng, size: rng.standard_normal(size),
    "lognormal": lambda rng, size: rng.lognormal(0.0, 1.0, size),
    "cauchy": lambda rng, size: rng.standard_cauchy(size),
    "uniform": lambda rng, size: rng.uniform(-2.0, 2.0, size),
}

_EMPTY_EDGES = np.empty((0, 2), dtype=np.int64)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Dag:
    """A weighted directed acyclic graph on the nodes ``0 .. num_nodes - 1``.

    Parameters
    ----------
    layout : str
        The layout it was drawn from, one of ``LAYOUTS``.
    num_nodes : int
        Number of nodes; isolated nodes count.
    edges : np.ndarray
        int64, shape (E, 2); row ``(parent, child)``. Stored sorted lexicographically;
        duplicates, self-loops and cycles are rejected.
    weights : np.ndarray
        float64, shape (E,); the weight of the edge in the same row of ``edges``.
    weight_dist : str
        The distribution all weights were drawn from (``gaussian``, ``lognormal``,
        ``cauchy`` or ``uniform``).
    node_layer : np.ndarray or None
        int64, shape (num_nodes,): the layer of each node for ``Layered`` DAGs,
        otherwise None.

    Arrays are read-only. Unsorted edges given to the constructor are sorted, with
    their weights carried along.
    """

    layout: str
    num_nodes: int
    edges: np.ndarray
    weights: np.ndarray
    weight_dist: str
    node_layer: np.ndarray | None = None
    # Adjacency in CSR form, derived once from ``edges``.
    _parent_ptr: np.ndarray = field(init=False, repr=False)
    _parent_ids: np.ndarray = field(init=False, repr=False)
    _child_ptr: np.ndarray = field(init=False, repr=False)
    _topo: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        setattr_ = object.__setattr__  # frozen: fields are settled here only
        n = self.num_nodes
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"Dag.num_nodes must be an integer >= 0, got {n!r}")
        n = int(n)
        setattr_(self, "num_nodes", n)

        edges = np.asarray(self.edges)
        if edges.size == 0:
            edges = _EMPTY_EDGES.copy()
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise ValueError(
                f"Dag.edges must have shape (E, 2) of (parent, child) rows, got {edges.shape}"
            )
        if not np.issubdtype(edges.dtype, np.integer):
            raise ValueError(f"Dag.edges must hold integer node ids, got dtype {edges.dtype}")
        edges = edges.astype(np.int64)
        weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        if weights.shape[0] != edges.shape[0]:
            raise ValueError(
                f"Dag.weights needs one weight per edge: {edges.shape[0]} edges, "
                f"{weights.shape[0]} weights"
            )
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise ValueError(
                f"Dag.edges must use node ids in [0, {n - 1}], "
                f"got ids from {edges.min()} to {edges.max()}"
            )
        loops = edges[:, 0] == edges[:, 1]
        if loops.any():
            raise ValueError(f"Dag.edges holds a self-loop on node {edges[loops][0, 0]}")
        order = np.lexsort((edges[:, 1], edges[:, 0]))
        edges, weights = edges[order], weights[order]
        dup = np.all(edges[1:] == edges[:-1], axis=1)
        if dup.any():
            raise ValueError(f"Dag.edges holds the edge {tuple(edges[1:][dup][0])} twice")
        setattr_(self, "edges", _readonly(edges))
        setattr_(self, "weights", _readonly(weights))

        if self.node_layer is not None:
            layer = np.array(self.node_layer, dtype=np.int64).reshape(-1)
            if layer.shape[0] != n:
                raise ValueError(
                    f"Dag.node_layer needs one layer per node: {n} nodes, {layer.shape[0]} layers"
                )
            setattr_(self, "node_layer", _readonly(layer))

        out_deg = np.bincount(edges[:, 0], minlength=n)
        in_deg = np.bincount(edges[:, 1], minlength=n)
        by_child = np.lexsort((edges[:, 0], edges[:, 1]))
        setattr_(self, "_child_ptr", _readonly(np.concatenate([[0], np.cumsum(out_deg)])))
        setattr_(self, "_parent_ptr", _readonly(np.concatenate([[0], np.cumsum(in_deg)])))
        setattr_(self, "_parent_ids", _readonly(edges[by_child, 0]))
        setattr_(self, "_topo", _readonly(self._kahn(in_deg)))

    def _kahn(self, in_deg: np.ndarray) -> np.ndarray:
        # Kahn's algorithm, always releasing the smallest ready node, so the order is a
        # function of the graph alone.
        remaining = in_deg.copy()
        ready = np.flatnonzero(remaining == 0).tolist()
        heapq.heapify(ready)
        order = []
        children, ptr = self.edges[:, 1], self._child_ptr
        while ready:
            v = heapq.heappop(ready)
            order.append(v)
            kids = children[ptr[v] : ptr[v + 1]]
            if kids.size:
                remaining[kids] -= 1
                for c in kids[remaining[kids] == 0].tolist():
                    heapq.heappush(ready, c)
        if len(order) < self.num_nodes:
            stuck = np.flatnonzero(remaining > 0)
            raise ValueError(
                f"Dag.edges contain a cycle through some of the nodes {stuck[:10].tolist()}"
            )
        return np.asarray(order, dtype=np.int64)

    def _check_node(self, v) -> int:
        if not 0 <= v < self.num_nodes:
            raise IndexError(f"node {v} is not in this Dag of {self.num_nodes} nodes")
        return int(v)

    @property
    def num_edges(self) -> int:
        return int(self.edges.shape[0])

    def parents(self, v: int) -> np.ndarray:
        """Sorted ids of the nodes with an edge into ``v``."""
        v = self._check_node(v)
        return self._parent_ids[self._parent_ptr[v] : self._parent_ptr[v + 1]]

    def children(self, v: int) -> np.ndarray:
        """Sorted ids of the nodes ``v`` has an edge to."""
        v = self._check_node(v)
        return self.edges[self._child_ptr[v] : self._child_ptr[v + 1], 1]

    def in_degree(self) -> np.ndarray:
        """int64, shape (num_nodes,): number of parents of each node."""
        return np.diff(self._parent_ptr)

    def out_degree(self) -> np.ndarray:
        """int64, shape (num_nodes,): number of children of each node."""
        return np.diff(self._child_ptr)

    def topological_order(self) -> np.ndarray:
        """All nodes, parents before children; ties go to the smallest id."""
        return self._topo

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` with edge attribute ``weight`` (and node attribute
        ``layer`` for layered DAGs)."""
        g = nx.DiGraph()
        if self.node_layer is None:
            g.add_nodes_from(range(self.num_nodes))
        else:
            g.add_nodes_from((v, {"layer": int(l)}) for v, l in enumerate(self.node_layer))
        g.add_weighted_edges_from(
            zip(self.edges[:, 0].tolist(), self.edges[:, 1].tolist(), self.weights.tolist())
        )
        return g

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dag):
            return NotImplemented
        if (self.node_layer is None) != (other.node_layer is None):
            return False
        return (
            self.layout == other.layout
            and self.num_nodes == other.num_nodes
            and self.weight_dist == other.weight_dist
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.weights, other.weights)
            and (self.node_layer is None or np.array_equal(self.node_layer, other.node_layer))
        )

    __hash__ = None  # type: ignore[assignment]


def build_dag(layout: str, num_nodes: int, dag_params: Any, rng: np.random.Generator) -> Dag:
    """Draw one weighted DAG of the given layout (DESIGN §2).

    Parameters
    ----------
    layout : str
        One of ``LAYOUTS``.
    num_nodes : int
        Number of nodes, >= 0. Fewer than two nodes give isolated nodes, no edges.
    dag_params : DAGParams-like
        Any object with the ``DAGParams`` attributes (``ba_*``, ``er_p_choices``,
        ``ws_rewire_p_choices``, ``layered_*``, ``edge_weight_dist_choices``).
    rng : np.random.Generator
        The only source of randomness.

    Returns
    -------
    Dag
        A weakly connected DAG (for ``num_nodes >= 2``) whose edge weights all come
        from one distribution picked from ``dag_params.edge_weight_dist_choices``.
    """
    builder = _BUILDERS.get(layout)
    if builder is None:
        raise ValueError(f"unknown DAG layout {layout!r}; expected one of: {', '.join(LAYOUTS)}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
        raise ValueError(f"num_nodes must be an integer, got {num_nodes!r}")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes} (layout {layout})")
    n = int(num_nodes)

    weight_dist = dag_params.edge_weight_dist_choices.sample(rng)
    sampler = _WEIGHT_SAMPLERS.get(weight_dist)
    if sampler is None:
        raise ValueError(
            f"dag_params.edge_weight_dist_choices gave {weight_dist!r}; "
            f"expected one of: {', '.join(_WEIGHT_SAMPLERS)}"
        )

    node_layer = None
    if n < 2:
        edges = _EMPTY_EDGES
        if layout == "Layered":
            node_layer = np.zeros(n, dtype=np.int64)
    else:
        edges, node_layer = builder(n, dag_params, rng)
    weights = sampler(rng, len(edges))
    return Dag(
        layout=layout,
        num_nodes=n,
        edges=edges,
        weights=weights,
        weight_dist=weight_dist,
        node_layer=node_layer,
    )


# --------------------------------------------------------------------------- helpers


def _nx_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**32))


def _component_roots(n: int, edges: np.ndarray) -> np.ndarray:
    """For each node, the smallest node id of its undirected component.

    Min-label hooking with pointer jumping: every pass hooks the larger root of each
    edge under the smaller, then flattens the trees; a pass that changes nothing ends.
    """
    root = np.arange(n)
    if len(edges) == 0:
        return root
    u, v = edges[:, 0], edges[:, 1]
    while True:
        ru, rv = root[u], root[v]
        low = np.minimum(ru, rv)
        hooked = root.copy()
        np.minimum.at(hooked, ru, low)
        np.minimum.at(hooked, rv, low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, root):
            return root
        root = hooked


def _components(n: int, edges: np.ndarray) -> list[np.ndarray]:
    """Undirected components as sorted node arrays, ordered by their smallest node."""
    root = _component_roots(n, edges)
    order = np.argsort(root, kind="stable")
    cuts = np.flatnonzero(np.diff(root[order])) + 1
    return np.split(order, cuts)


def _connect(n: int, edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``edges`` plus one edge between random nodes of each pair of consecutive
    components (by smallest node), which makes the undirected graph connected."""
    comps = _components(n, edges)
    if len(comps) == 1:
        return edges
    sizes = np.array([c.size for c in comps])
    # Each join draws fresh endpoints, as a middle component takes part in two joins.
    a = rng.integers(sizes[:-1])
    b = rng.integers(sizes[1:])
    links = np.array(
        [(comps[i][a[i]], comps[i + 1][b[i]]) for i in range(len(comps) - 1)], dtype=np.int64
    )
    return np.concatenate([edges.reshape(-1, 2).astype(np.int64), links])


def _orient(n: int, edges: np.ndarray) -> np.ndarray:
    """Direct each undirected edge from its lower to its higher id, dropping repeats."""
    if len(edges) == 0:
        return _EMPTY_EDGES
    lo = np.minimum(edges[:, 0], edges[:, 1]).astype(np.int64)
    hi = np.maximum(edges[:, 0], edges[:, 1]).astype(np.int64)
    key = np.unique(lo * n + hi)
    return np.stack([key // n, key % n], axis=1)


def _from_pairs(i: np.ndarray, j: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int64)


def _nx_edges(g: nx.Graph) -> np.ndarray:
    edges = np.array(list(g.edges()), dtype=np.int64)
    return edges.reshape(-1, 2)


# --------------------------------------------------------------------------- layouts


def _erdos_renyi(n, params, rng):
    p = float(params.er_p_choices.sample(rng))
    i, j = np.triu_indices(n, k=1)
    # The reference draws a *directed* G(n, p) and forgets directions, so an
    # unordered pair is linked when either of two independent Bernoulli(p) fires.
    p_pair = 1.0 - (1.0 - p) ** 2
    edges = _from_pairs(i, j, rng.random(i.size) < p_pair)
    return _orient(n, _connect(n, edges, rng)), None


def _random_cauchy(n, params, rng):
    a = rng.standard_cauchy()
    b = rng.standard_cauchy(n)
    c = rng.standard_cauchy(n)
    i, j = np.triu_indices(n, k=1)
    logit = np.clip(a + b[i] + c[j], -500.0, 500.0)
    p_pair = 1.0 / (1.0 + np.exp(-logit))
    edges = _from_pairs(i, j, rng.random(i.size) < p_pair)
    return _orient(n, _connect(n, edges, rng)), None


def _watts_strogatz(n, params, rng):
    p = float(params.ws_rewire_p_choices.sample(rng))
    k = (2, 4)[int(rng.integers(2))]
    if k > n:
        k = n if n % 2 == 0 else n - 1
    k = max(k, 2)
    g = nx.watts_strogatz_graph(n=n, k=k, p=p, seed=_nx_seed(rng))
    return _orient(n, _connect(n, _nx_edges(g), rng)), None


def _prufer_tree(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Undirected edges of a uniformly random labelled tree on n >= 2 nodes."""
    seq = rng.integers(n, size=n - 2).tolist()
    degree = [1] * n
    for x in seq:
        degree[x] += 1
    leaves = [v for v in range(n) if degree[v] == 1]
    heapq.heapify(leaves)
    edges = []
    for x in seq:
        leaf = heapq.heappop(leaves)
        edges.append((leaf, x))
        degree[x] -= 1
        if degree[x] == 1:
            heapq.heappush(leaves, x)
    edges.append((heapq.heappop(leaves), heapq.heappop(leaves)))
    return edges


def _rooted_tree_edges(n: int, rng: np.random.Generator) -> np.ndarray:
    """(parent, child) rows of a uniform random tree hung from a uniform root."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v in _prufer_tree(n, rng):
        adj[u].append(v)
        adj[v].append(u)
    root = int(rng.integers(n))
    seen = [False] * n
    seen[root] = True
    queue = deque([root])
    edges = []
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if not seen[v]:
                seen[v] = True
                edges.append((u, v))
                queue.append(v)
    return np.array(edges, dtype=np.int64)


def _random_tree(n, params, rng):
    return _rooted_tree_edges(n, rng), None


def _reverse_random_tree(n, params, rng):
    return _rooted_tree_edges(n, rng)[:, ::-1].copy(), None


def _still_linked_without(
    u: int, v: int, parents: list[set[int]], children: list[set[int]]
) -> bool:
    """Whether u reaches v in the undirected graph once the edge u-v is removed."""
    seen = {u}
    stack = [u]
    while stack:
        x = stack.pop()
        for y in (*parents[x], *children[x]):
            if x == u and y == v:
                continue
            if y == v:
                return True
            if y not in seen:
                seen.add(y)
                stack.append(y)
    return False


def _barabasi_albert(n, params, rng):
    ba_m = int(params.ba_m)
    if ba_m < 1:
        raise ValueError(f"dag_params.ba_m must be >= 1, got {params.ba_m!r}")
    m = min(ba_m, n - 1)
    g = nx.barabasi_albert_graph(n=n, m=m, seed=_nx_seed(rng))
    edges = _orient(n, _connect(n, _nx_edges(g), rng))
    perm = rng.permutation(n)
    edges = perm[edges]

    parents: list[set[int]] = [set() for _ in range(n)]
    children: list[set[int]] = [set() for _ in range(n)]
    for u, v in edges.tolist():
        parents[v].add(u)
        children[u].add(v)

    # Sinks with several parents lose one at random. An edge whose removal would split
    # the graph is kept (the reference would fail its connectivity check there). With
    # networkx's growth that never happens: before relabelling, every node but 0 has a
    # path to 0 through lower ids, none of which runs through a sink's in-edge.
    dropout = float(params.ba_sink_edge_dropout)
    for v in [x for x in range(n) if not children[x]]:
        if len(parents[v]) > 1 and rng.random() < dropout:
            ps = sorted(parents[v])
            u = ps[int(rng.integers(len(ps)))]
            if _still_linked_without(u, v, parents, children):
                parents[v].discard(u)
                children[u].discard(v)

    # A sink with one parent may turn that edge around, becoming a source. The cap
    # keeps the parent's in-degree after the flip at most ba_max_in_degree (the
    # reference tests the sink's own in-degree, always 1, so never refuses). Reversing
    # the only edge of a sink cannot close a cycle.
    flip_p = float(params.ba_flip_leaf_edge_prob)
    max_in = int(params.ba_max_in_degree)
    for v in [x for x in range(n) if not children[x]]:
        if len(parents[v]) == 1 and rng.random() < flip_p:
            (u,) = parents[v]
            if len(parents[u]) >= max_in:
                continue
            parents[v].discard(u)
            children[u].discard(v)
            parents[u].add(v)
            children[v].add(u)

    rows = [(u, v) for u in range(n) for v in children[u]]
    return np.array(rows, dtype=np.int64).reshape(-1, 2), None


def _layered(n, params, rng):
    depth = int(params.layered_depth_choices.sample(rng))
    # At least two layers: a single layer of n >= 2 nodes has no edges to connect it.
    depth = min(max(depth, 2), n)
    sizes = 1 + np.bincount(rng.integers(depth, size=n - depth), minlength=depth)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    node_layer = np.repeat(np.arange(depth, dtype=np.int64), sizes)
    drop = float(params.layered_edge_dropout_p)

    blocks = []
    for l in range(depth - 1):
        n_src, n_dst = int(sizes[l]), int(sizes[l + 1])
        keep = rng.random((n_src, n_dst)) >= drop
        orphans = np.flatnonzero(~keep.any(axis=0))
        keep[rng.integers(n_src, size=orphans.size), orphans] = True
        childless = np.flatnonzero(~keep.any(axis=1))
        keep[childless, rng.integers(n_dst, size=childless.size)] = True
        src, dst = np.nonzero(keep)
        blocks.append(np.stack([src + starts[l], dst + starts[l + 1]], axis=1))
    edges = np.concatenate(blocks).astype(np.int64)

    # Parent and child guarantees do not make the graph connected (two layers of two
    # nodes can pair off). Every component reaches from the first to the last layer,
    # so consecutive components are joined by an edge from a random node of one in a
    # random layer l to a random node of the next in layer l + 1.
    comps = _components(n, edges)
    links = []
    for left, right in zip(comps[:-1], comps[1:]):
        l = int(rng.integers(depth - 1))
        ups = left[node_layer[left] == l]
        downs = right[node_layer[right] == l + 1]
        links.append((ups[rng.integers(ups.size)], downs[rng.integers(downs.size)]))
    if links:
        edges = np.concatenate([edges, np.array(links, dtype=np.int64)])
    return edges, node_layer


_BUILDERS = {
    "ErdosRenyi": _erdos_renyi,
    "BarabasiAlbert": _barabasi_albert,
    "RandomTree": _random_tree,
    "ReverseRandomTree": _reverse_random_tree,
    "WattsStrogatz": _watts_strogatz,
    "RandomCauchy": _random_cauchy,
    "Layered": _layered,
}
