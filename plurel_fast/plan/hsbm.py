"""Planning the foreign keys of one (parent, child) table pair: the HSBM (DESIGN §3).

The hierarchical stochastic block model cuts each side's rows into ``B = Π h[l]``
contiguous *base blocks* and gives every base block a cluster index at each of
the ``L`` levels. A child row ``c`` picks one parent row ``p`` with

    P(p | c) ∝ Π_l M_l[cluster_l(p), cluster_l(c)].

Rows inside a base block share all their cluster indices, so they are
exchangeable: the same law is "pick a parent block with probability
∝ |block| × Π_l M_l[...], then a row uniformly inside it". The plan therefore
stores, for every child base block, a cumulative distribution over the parent
base blocks (at most 243 × 243 entries with the default choices); the kernel
``plurel_fast.kernels.hsbm.sample_parents`` does the per-row work.
"""

from __future__ import annotations

import math
import operator

import msgspec
import numpy as np


# The (B_C, B_P) table costs 8 bytes per pair; the defaults need at most 243**2.
_MAX_BLOCK_PAIRS = 1 << 24


class HsbmPlan(msgspec.Struct, frozen=True):
    """Everything needed to draw the parent row of every child row (DESIGN §3).

    Build it with :func:`plan_hsbm` (random structure) or
    :meth:`HsbmPlan.from_hierarchies` (given structure); both derive the last
    three fields, so they always agree with the first six.

    Attributes
    ----------
    num_parent_rows, num_child_rows : int
        Row counts ``n_P >= 1`` and ``n_C >= 0`` of the two tables.
    parent_hierarchy, child_hierarchy : np.ndarray of int64, shape (L,)
        Clusters per level, ``h_P[l]`` and ``h_C[l]``.
    level_matrices : tuple of L np.ndarray of float64
        ``level_matrices[l]`` has shape ``(h_P[l], h_C[l])``; entry ``[i, j]`` is
        the affinity of parent cluster ``i`` and child cluster ``j`` at level ``l``.
    key : np.uint64
        Stream key of the counter-based row RNG.
    parent_block_rows, child_block_rows : int
        Rows per base block, ``ceil(n / B)`` (the last blocks may hold fewer
        rows or none). ``child_block_rows`` is 1 when ``n_C == 0``.
    block_cdf : np.ndarray of float64, shape (B_C, B_P)
        Row ``c`` is the cumulative distribution over parent base blocks for a
        child in base block ``c``, normalised so that its last entry is exactly
        1.0. Blocks without rows have zero probability (repeated entries).
    """

    num_parent_rows: int
    num_child_rows: int
    parent_hierarchy: np.ndarray
    child_hierarchy: np.ndarray
    level_matrices: tuple[np.ndarray, ...]
    key: np.uint64
    parent_block_rows: int
    child_block_rows: int
    block_cdf: np.ndarray

    @classmethod
    def from_hierarchies(
        cls,
        num_parent_rows: int,
        num_child_rows: int,
        parent_hierarchy,
        child_hierarchy,
        level_matrices,
        key,
    ) -> HsbmPlan:
        """Validate a given HSBM structure and derive the kernel's arrays.

        Parameters
        ----------
        num_parent_rows : int
            ``n_P >= 1``: every child row needs a parent row to point to.
        num_child_rows : int
            ``n_C >= 0``.
        parent_hierarchy, child_hierarchy : sequence of int, length L >= 1
            Clusters per level (each >= 1) of the parent and child side.
        level_matrices : sequence of L array-likes
            Level ``l`` has shape ``(h_P[l], h_C[l])``, finite entries >= 0.
        key : int or np.uint64
            Stream key of the row RNG (``plurel_fast.plan.rng.stream_key``).

        Returns
        -------
        HsbmPlan

        Raises
        ------
        ValueError
            On bad row counts, hierarchies or matrices, or when some child base
            block has no parent row it could reach (all its weights zero).
        """
        n_p = _row_count("num_parent_rows", num_parent_rows, minimum=1)
        n_c = _row_count("num_child_rows", num_child_rows, minimum=0)
        h_p = _hierarchy("parent_hierarchy", parent_hierarchy)
        h_c = _hierarchy("child_hierarchy", child_hierarchy)
        if h_p.shape != h_c.shape:
            raise ValueError(
                "parent_hierarchy and child_hierarchy need the same number of levels, "
                f"got {h_p.tolist()} ({h_p.size} levels) and {h_c.tolist()} ({h_c.size} levels)"
            )
        matrices = _level_matrices(level_matrices, h_p, h_c)
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
            raise ValueError(f"key must be an integer stream key, got {key!r}")
        if not 0 <= int(key) < 2**64:
            raise ValueError(f"key must fit in 64 unsigned bits, got {key}")

        num_blocks_p, num_blocks_c = math.prod(h_p.tolist()), math.prod(h_c.tolist())
        if num_blocks_p * num_blocks_c > _MAX_BLOCK_PAIRS:
            raise ValueError(
                f"{num_blocks_p} parent x {num_blocks_c} child base blocks is more than the "
                f"{_MAX_BLOCK_PAIRS} block pairs the plan tabulates (hierarchies "
                f"{h_p.tolist()} and {h_c.tolist()}); use fewer levels or clusters"
            )
        parent_block_rows = _block_rows(n_p, num_blocks_p)
        child_block_rows = max(1, _block_rows(n_c, num_blocks_c))
        weights = block_weights(n_p, h_p, h_c, matrices)
        totals = weights.sum(axis=1)
        dead = np.flatnonzero(~(totals > 0))
        if dead.size:
            raise ValueError(
                f"child base block {int(dead[0])} has zero weight towards every parent row "
                f"(n_P={n_p}, parent_hierarchy={h_p.tolist()}, "
                f"child_hierarchy={h_c.tolist()}): level matrices need a positive entry "
                "in each child cluster's column"
            )
        # x / x == 1.0 exactly, so each row ends at 1.0 and a uniform u in [0, 1)
        # always finds an entry > u that belongs to a block with rows.
        cumulative = np.cumsum(weights, axis=1)
        block_cdf = cumulative / cumulative[:, -1:]
        return cls(
            num_parent_rows=n_p,
            num_child_rows=n_c,
            parent_hierarchy=h_p,
            child_hierarchy=h_c,
            level_matrices=matrices,
            key=np.uint64(key),
            parent_block_rows=parent_block_rows,
            child_block_rows=child_block_rows,
            block_cdf=np.ascontiguousarray(block_cdf),
        )

    @property
    def num_levels(self) -> int:
        return int(self.parent_hierarchy.size)

    def block_probs(self) -> np.ndarray:
        """Parent base-block probabilities per child base block, shape (B_C, B_P)."""
        return np.diff(self.block_cdf, axis=1, prepend=0.0)


def plan_hsbm(
    num_parent_rows: int,
    num_child_rows: int,
    scm_params,
    rng: np.random.Generator,
    key,
) -> HsbmPlan:
    """Draw the HSBM structure of one (parent, child) table pair (DESIGN §3).

    Parameters
    ----------
    num_parent_rows : int
        ``n_P >= 1``.
    num_child_rows : int
        ``n_C >= 0``.
    scm_params : SCMParams-like
        Only ``bi_hsbm_levels_choices`` and ``bi_hsbm_clusters_per_level_choices``
        are read (each a ``Choices`` with ``.sample(rng)``).
    rng : np.random.Generator
        Planning generator of this table pair; consumed in a fixed order: the
        level count, then ``h_P[l], h_C[l]`` for each level, then the matrices.
    key : int or np.uint64
        Stream key for the row-level draws of the kernel.

    Returns
    -------
    HsbmPlan
    """
    # Row counts are checked first so that a bad call fails before drawing.
    _row_count("num_parent_rows", num_parent_rows, minimum=1)
    _row_count("num_child_rows", num_child_rows, minimum=0)
    num_levels = int(scm_params.bi_hsbm_levels_choices.sample(rng))
    if num_levels < 1:
        raise ValueError(
            f"bi_hsbm_levels_choices produced {num_levels} levels; the HSBM needs >= 1"
        )
    clusters = scm_params.bi_hsbm_clusters_per_level_choices
    h_p = np.empty(num_levels, dtype=np.int64)
    h_c = np.empty(num_levels, dtype=np.int64)
    for level in range(num_levels):
        h_p[level] = clusters.sample(rng)
        h_c[level] = clusters.sample(rng)
    matrices = tuple(
        level_matrix(int(a), int(b), rng) for a, b in zip(h_p.tolist(), h_c.tolist())
    )
    return HsbmPlan.from_hierarchies(
        num_parent_rows, num_child_rows, h_p, h_c, matrices, key
    )


def level_matrix(h_parent: int, h_child: int, rng: np.random.Generator) -> np.ndarray:
    """One level's affinity matrix, shape (h_parent, h_child) (DESIGN §3).

    Weak background affinities uniform in [0.001, 0.002), then a wrapped
    diagonal ``(i mod h_parent, i mod h_child)``, ``i < max(h_parent, h_child)``,
    of strong affinity 0.9, so every cluster on either side has one strong partner.
    """
    matrix = rng.uniform(0.001, 0.002, size=(h_parent, h_child))
    i = np.arange(max(h_parent, h_child))
    matrix[i % h_parent, i % h_child] = 0.9
    return matrix


def base_block_clusters(hierarchy) -> np.ndarray:
    """Cluster index of every base block at every level, shape (B, L), int64.

    Base block ``b`` has, at level ``l``, cluster ``(b div Π_{m>l} h[m]) mod h[l]``:
    the base blocks enumerate the cluster tuples in mixed radix, level 0 the
    most significant digit (DESIGN §3).
    """
    h = _hierarchy("hierarchy", hierarchy)
    # Π_{m>l} h[m] for each l: reversed cumulative product shifted by one.
    inner = np.ones_like(h)
    inner[:-1] = np.cumprod(h[::-1])[::-1][1:]
    b = np.arange(int(np.prod(h)), dtype=np.int64)[:, None]
    return (b // inner[None, :]) % h[None, :]


def block_sizes(num_rows: int, num_blocks: int) -> np.ndarray:
    """Rows in each of ``num_blocks`` contiguous blocks of ``ceil(n / B)`` rows."""
    size = _block_rows(num_rows, num_blocks)
    starts = np.arange(num_blocks, dtype=np.int64) * size
    return np.clip(num_rows - starts, 0, size)


def block_weights(num_parent_rows: int, parent_hierarchy, child_hierarchy, level_matrices):
    """Unnormalised parent-block weights per child block, shape (B_C, B_P).

    ``w[c, b] = |parent block b| × Π_l M_l[cluster_l(b), cluster_l(c)]``.
    """
    clusters_p = base_block_clusters(parent_hierarchy)
    clusters_c = base_block_clusters(child_hierarchy)
    weights = np.repeat(
        block_sizes(num_parent_rows, clusters_p.shape[0]).astype(np.float64)[None, :],
        clusters_c.shape[0],
        axis=0,
    )
    for level, matrix in enumerate(level_matrices):
        weights *= matrix[clusters_p[:, level][None, :], clusters_c[:, level][:, None]]
    return weights


def _block_rows(num_rows: int, num_blocks: int) -> int:
    return -(-num_rows // num_blocks)


def _row_count(name: str, value, minimum: int) -> int:
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        count = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if count < minimum:
        why = " (every child row needs a parent row to point to)" if minimum == 1 else ""
        raise ValueError(f"{name} must be >= {minimum}{why}, got {count}")
    return int(count)


def _hierarchy(name: str, hierarchy) -> np.ndarray:
    h = np.asarray(hierarchy)
    if h.ndim != 1 or h.size == 0 or h.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a non-empty 1-d sequence of integers, got {hierarchy!r}"
        )
    if (h < 1).any():
        raise ValueError(f"{name} needs >= 1 cluster per level, got {h.tolist()}")
    return h.astype(np.int64)


def _level_matrices(level_matrices, h_p: np.ndarray, h_c: np.ndarray) -> tuple:
    matrices = tuple(np.array(m, dtype=np.float64) for m in level_matrices)
    if len(matrices) != h_p.size:
        raise ValueError(
            f"need one level matrix per level ({h_p.size}), got {len(matrices)}"
        )
    for level, (matrix, a, b) in enumerate(zip(matrices, h_p.tolist(), h_c.tolist())):
        if matrix.shape != (a, b):
            raise ValueError(
                f"level_matrices[{level}] must have shape (h_P, h_C) = ({a}, {b}), "
                f"got {matrix.shape}"
            )
        if not (np.isfinite(matrix).all() and (matrix >= 0).all()):
            raise ValueError(
                f"level_matrices[{level}] entries must be finite and >= 0, got {matrix.tolist()}"
            )
    return matrices
