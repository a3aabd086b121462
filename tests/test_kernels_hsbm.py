"""HSBM foreign keys (DESIGN §3): plan against the dense naive law, kernel statistics,
chunk and thread invariance, argument errors.

Statistical tests use fixed seeds, so they are deterministic; the p-value
thresholds say how often a *correct* implementation would fail for a random
seed (the false-failure rate quoted next to each).
"""

from __future__ import annotations

import hashlib
import math
import pickle
import sys
import types
from pathlib import Path

import msgspec
import numpy as np
import pytest
from scipy import stats

from plurel_fast.config import Choices
from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.plan.hsbm import (
    HsbmPlan,
    base_block_clusters,
    block_sizes,
    level_matrix,
    plan_hsbm,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive  # noqa: E402  (tests/naive.py, not part of the package)
from conftest import digest_in_subprocess, thread_counts  # noqa: E402

P_MIN = 1e-4

# Duck-typed stand-in for SCMParams: plan_hsbm reads only these two fields.
SCM_DEFAULTS = types.SimpleNamespace(
    bi_hsbm_levels_choices=Choices("range", [1, 5]),
    bi_hsbm_clusters_per_level_choices=Choices("range", [1, 3]),
)


def random_structure(rng, max_levels=3, max_clusters=3):
    levels = int(rng.integers(1, max_levels + 1))
    h_p = rng.integers(1, max_clusters + 1, size=levels)
    h_c = rng.integers(1, max_clusters + 1, size=levels)
    # Moderate affinities keep every cell visible in the statistics; a few
    # exact zeros exercise zero-weight blocks (one positive entry per column
    # keeps every child block able to reach a parent).
    matrices = []
    for a, b in zip(h_p, h_c):
        m = rng.uniform(0.1, 1.0, size=(a, b))
        m[rng.uniform(size=(a, b)) < 0.2] = 0.0
        m[rng.integers(a, size=b), np.arange(b)] = rng.uniform(0.1, 1.0, size=b)
        matrices.append(m)
    return h_p, h_c, matrices


def naive_block_probs(plan, child_row):
    """Naive P(parent block | child row), summing the dense column over each block."""
    dense = naive.naive_hsbm_parent_probs(
        plan.num_parent_rows,
        plan.num_child_rows,
        plan.parent_hierarchy,
        plan.child_hierarchy,
        plan.level_matrices,
    )
    num_blocks = plan.block_cdf.shape[1]
    block_of_row = np.arange(plan.num_parent_rows) // plan.parent_block_rows
    return np.bincount(block_of_row, weights=dense[:, child_row], minlength=num_blocks)


def pooled_chisquare(observed, expected):
    """scipy chi-square after pooling the cells with expected count < 5 into one."""
    small = expected < 5
    obs = observed[~small]
    exp = expected[~small]
    if small.any():
        obs = np.append(obs, observed[small].sum())
        exp = np.append(exp, expected[small].sum())
    if obs.size < 2:
        return 1.0
    # chisquare wants equal totals; they are, up to float rounding of expected.
    exp = exp * (obs.sum() / exp.sum())
    return stats.chisquare(obs, exp).pvalue


# ---------------------------------------------------------------------------
# (a) plan: block probabilities equal the dense law summed over parent blocks
# ---------------------------------------------------------------------------


def test_base_block_clusters_mixed_radix():
    clusters = base_block_clusters([2, 3, 2])
    assert clusters.shape == (12, 3)
    # Level 0 is the most significant digit, the last level the least.
    assert clusters[:, 0].tolist() == [0] * 6 + [1] * 6
    assert clusters[:, 1].tolist() == [0, 0, 1, 1, 2, 2] * 2
    assert clusters[:, 2].tolist() == [0, 1] * 6
    # Every cluster tuple appears exactly once.
    assert len({tuple(row) for row in clusters}) == 12


@pytest.mark.parametrize("num_rows", [0, 1, 5, 6, 7, 12, 13, 100])
def test_row_blocks_match_naive_clusters(num_rows):
    hierarchy = [2, 3]
    sizes = block_sizes(num_rows, 6)
    assert sizes.sum() == num_rows
    per_block = base_block_clusters(hierarchy)
    rows_per_block = max(1, math.ceil(num_rows / 6))
    rows = np.arange(num_rows)
    assert np.array_equal(
        per_block[rows // rows_per_block], naive.naive_hsbm_row_clusters(num_rows, hierarchy)
    )


def test_plan_block_probs_equal_naive_dense_law():
    rng = np.random.default_rng(20240601)
    checked_empty = checked_ragged = refused = 0
    for case in range(200):
        h_p, h_c, matrices = random_structure(rng)
        num_blocks_p = int(np.prod(h_p))
        # Row counts below, at and above the block count; often not divisible.
        n_p = int(rng.integers(1, 3 * num_blocks_p + 2))
        n_c = int(rng.integers(0, 3 * int(np.prod(h_c)) + 2))
        weights = np.ones((n_p, int(np.prod(h_c))))
        for level, m in enumerate(matrices):
            weights *= m[
                naive.naive_hsbm_row_clusters(n_p, h_p)[:, level][:, None],
                base_block_clusters(h_c)[:, level][None, :],
            ]
        if not (weights.sum(axis=0) > 0).all():
            # Zeros at several levels can leave a child block with no parent
            # row at all: the plan must refuse it rather than divide by zero.
            with pytest.raises(ValueError, match="has zero weight towards every parent"):
                HsbmPlan.from_hierarchies(n_p, n_c, h_p, h_c, matrices, key=case)
            refused += 1
            continue
        plan = HsbmPlan.from_hierarchies(n_p, n_c, h_p, h_c, matrices, key=case)
        sizes = block_sizes(n_p, num_blocks_p)
        checked_empty += bool((sizes == 0).any())
        checked_ragged += bool(n_p % num_blocks_p)
        probs = plan.block_probs()
        assert probs.shape == (int(np.prod(h_c)), num_blocks_p)
        assert np.all(probs[:, sizes == 0] == 0), "a block without rows got probability"
        assert np.all(plan.block_cdf[:, -1] == 1.0)
        for c in range(n_c):
            block = c // plan.child_block_rows
            np.testing.assert_allclose(
                probs[block], naive_block_probs(plan, c), rtol=1e-12, atol=1e-15
            )
    # The cases we meant to cover all occurred.
    assert checked_empty > 10 and checked_ragged > 10 and 0 < refused < 40


def test_plan_hsbm_draws_follow_the_spec():
    seen_levels, seen_clusters = set(), set()
    for seed in range(60):
        plan = plan_hsbm(50, 80, SCM_DEFAULTS, np.random.default_rng(seed), key=seed)
        levels = plan.num_levels
        seen_levels.add(levels)
        assert 1 <= levels <= 5
        assert plan.parent_hierarchy.dtype == np.int64
        assert plan.parent_hierarchy.shape == plan.child_hierarchy.shape == (levels,)
        seen_clusters.update(plan.parent_hierarchy.tolist() + plan.child_hierarchy.tolist())
        assert len(plan.level_matrices) == levels
        for m, a, b in zip(plan.level_matrices, plan.parent_hierarchy, plan.child_hierarchy):
            assert m.shape == (a, b)
            diagonal = np.zeros((a, b), dtype=bool)
            i = np.arange(max(a, b))
            diagonal[i % a, i % b] = True
            assert np.all(m[diagonal] == 0.9)
            assert np.all((m[~diagonal] >= 0.001) & (m[~diagonal] < 0.002))
        assert plan.parent_block_rows == math.ceil(50 / np.prod(plan.parent_hierarchy))
        assert plan.child_block_rows == math.ceil(80 / np.prod(plan.child_hierarchy))
        assert plan.key == np.uint64(seed)
    assert seen_levels == {1, 2, 3, 4, 5}
    assert seen_clusters == {1, 2, 3}


def test_plan_is_deterministic_frozen_and_picklable():
    a = plan_hsbm(30, 40, SCM_DEFAULTS, np.random.default_rng(7), key=np.uint64(2**63 + 5))
    b = plan_hsbm(30, 40, SCM_DEFAULTS, np.random.default_rng(7), key=np.uint64(2**63 + 5))
    assert np.array_equal(a.block_cdf, b.block_cdf)
    assert all(np.array_equal(x, y) for x, y in zip(a.level_matrices, b.level_matrices))
    with pytest.raises(AttributeError):
        a.num_child_rows = 3
    c = pickle.loads(pickle.dumps(a))
    assert c.key == a.key and np.array_equal(c.block_cdf, a.block_cdf)
    assert np.array_equal(sample_parents(c), sample_parents(a))


def test_level_matrix_when_one_side_has_one_cluster():
    m = level_matrix(1, 3, np.random.default_rng(0))
    assert m.tolist() == [[0.9, 0.9, 0.9]]
    m = level_matrix(3, 1, np.random.default_rng(0))
    assert m[:, 0].tolist() == [0.9, 0.9, 0.9]


# ---------------------------------------------------------------------------
# (b) kernel statistics against the naive law
# ---------------------------------------------------------------------------


def assert_frequencies_match_naive(plan, parents):
    """Per child block, parent-row counts against the dense naive law.

    Returns the number of chi-square tests made (one per non-empty child block).
    """
    n_p, n_c = plan.num_parent_rows, plan.num_child_rows
    dense = naive.naive_hsbm_parent_probs(
        n_p, n_c, plan.parent_hierarchy, plan.child_hierarchy, plan.level_matrices
    )
    child_block = np.arange(n_c) // plan.child_block_rows
    tests = 0
    for block in np.unique(child_block):
        rows = np.flatnonzero(child_block == block)
        observed = np.bincount(parents[rows], minlength=n_p)
        expected = dense[:, rows].sum(axis=1)
        assert np.all(observed[expected == 0] == 0), "a parent of probability 0 was drawn"
        p = pooled_chisquare(observed, expected)
        assert p > P_MIN, f"child block {block}: chi-square p = {p:.3g}"
        tests += 1
    return tests


def test_parent_frequencies_match_naive_law():
    rng = np.random.default_rng(11)
    h_p, h_c = [3, 2], [2, 3]
    matrices = [rng.uniform(0.05, 1.0, size=(a, b)) for a, b in zip(h_p, h_c)]
    n_p, n_c = 37, 50_000  # 6 parent blocks of 7 rows, the last one of 2
    plan = HsbmPlan.from_hierarchies(n_p, n_c, h_p, h_c, matrices, key=0xC0FFEE)
    # 6 chi-square tests at p > 1e-4: a correct sampler would fail for a random
    # seed with probability <= 6e-4.
    assert assert_frequencies_match_naive(plan, sample_parents(plan)) == 6


def test_parent_frequencies_with_the_plans_own_matrices():
    # plan_hsbm's matrices put almost all mass on the "diagonal"; the tiny
    # off-diagonal cells are pooled by the chi-square helper.
    plan = plan_hsbm(23, 40_000, SCM_DEFAULTS, np.random.default_rng(3), key=99)
    # k tests at p > 1e-4 (k = child blocks, reported by the helper): false-
    # failure rate <= k * 1e-4 for a random seed.
    tests = assert_frequencies_match_naive(plan, sample_parents(plan))
    assert tests == int(np.prod(plan.child_hierarchy))  # 3 here: no empty child block


def test_rows_uniform_within_blocks_including_the_short_last_block():
    # One child cluster and equal affinities: every parent row has probability
    # 1 / n_P, whatever block it sits in. 1001 rows in 3 blocks of 334, 334, 333.
    n_p, n_c = 1001, 300_000
    plan = HsbmPlan.from_hierarchies(n_p, n_c, [3], [1], [np.ones((3, 1))], key=5)
    counts = np.bincount(sample_parents(plan), minlength=n_p)
    assert counts.size == n_p
    # One test at p > 1e-4: false-failure rate 1e-4.
    assert stats.chisquare(counts).pvalue > P_MIN
    # The short last parent block of a 7-row table cut in 3 (3, 3, 1 rows).
    plan = HsbmPlan.from_hierarchies(7, 70_000, [3], [1], [np.ones((3, 1))], key=6)
    counts = np.bincount(sample_parents(plan), minlength=7)
    assert counts.size == 7
    assert stats.chisquare(counts).pvalue > P_MIN  # false-failure rate 1e-4


def test_draws_are_the_documented_uniforms():
    # Parent of child c: block by inverse CDF of uniform(key, c, 0), row in the
    # block by floor(uniform(key, c, 1) * size); checked in plain NumPy.
    from plurel_fast.kernels.rng import uniform_block

    rng = np.random.default_rng(8)
    h_p, h_c, matrices = random_structure(rng)
    plan = HsbmPlan.from_hierarchies(29, 500, h_p, h_c, matrices, key=1234)
    u = uniform_block(plan.key, 0, 500, 0, 2)
    child_block = np.arange(500) // plan.child_block_rows
    parent_block = np.array(
        [np.searchsorted(plan.block_cdf[b], x, side="right") for b, x in zip(child_block, u[:, 0])]
    )
    size = block_sizes(29, plan.block_cdf.shape[1])[parent_block]
    expected = parent_block * plan.parent_block_rows + np.floor(u[:, 1] * size).astype(np.int64)
    assert np.array_equal(sample_parents(plan), expected)


# ---------------------------------------------------------------------------
# (c) range, (d) chunk invariance, (e) thread invariance
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_p", [1, 2, 5, 37, 243, 244, 1000])
def test_parents_in_range(n_p):
    for seed in range(8):
        plan = plan_hsbm(n_p, 3000, SCM_DEFAULTS, np.random.default_rng(seed), key=seed)
        parents = sample_parents(plan)
        assert parents.dtype == np.int64 and parents.shape == (3000,)
        assert parents.min() >= 0 and parents.max() < n_p


def test_no_child_rows():
    plan = plan_hsbm(10, 0, SCM_DEFAULTS, np.random.default_rng(0), key=1)
    assert plan.child_block_rows == 1
    out = sample_parents(plan)
    assert out.dtype == np.int64 and out.shape == (0,)


def test_chunk_invariance():
    plan = plan_hsbm(500, 20_011, SCM_DEFAULTS, np.random.default_rng(4), key=77)
    whole = sample_parents(plan)
    # Splits at 0-length, 1-length, child-block and 4096-row part boundaries.
    edges = [0, 0, 1, 2, 4095, 4096, 4097, plan.child_block_rows, 9999, 20_010, 20_011]
    edges = sorted(set(edges)) + [20_011]
    pieces = [sample_parents(plan, a, b) for a, b in zip(edges[:-1], edges[1:])]
    assert np.array_equal(np.concatenate(pieces), whole)
    rng = np.random.default_rng(5)
    for _ in range(20):
        a, b = sorted(rng.integers(0, 20_012, size=2))
        assert np.array_equal(sample_parents(plan, a, b), whole[a:b])
    column = np.full(20_011, -1, dtype=np.int64)
    sample_parents(plan, 100, 5000, out=column[100:5000])
    assert np.array_equal(column[100:5000], whole[100:5000])
    assert np.all(column[:100] == -1) and np.all(column[5000:] == -1)


_THREAD_SCRIPT = """
import hashlib, numba, numpy as np
from plurel_fast.plan.hsbm import plan_hsbm
from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.config import Choices
import types
scm = types.SimpleNamespace(
    bi_hsbm_levels_choices=Choices("range", [1, 5]),
    bi_hsbm_clusters_per_level_choices=Choices("range", [1, 3]),
)
plan = plan_hsbm(777, 30_000, scm, np.random.default_rng(12), key=2**64 - 3)
assert numba.get_num_threads() == 1
print(hashlib.sha256(sample_parents(plan).tobytes()).hexdigest())
"""


def test_thread_invariance():
    plan = plan_hsbm(777, 30_000, SCM_DEFAULTS, np.random.default_rng(12), key=2**64 - 3)
    here = sample_parents(plan)
    assert digest_in_subprocess(_THREAD_SCRIPT) == hashlib.sha256(here.tobytes()).hexdigest()
    # And within this process, at every thread count numba allows here.
    for _ in thread_counts():
        assert np.array_equal(sample_parents(plan), here)


# ---------------------------------------------------------------------------
# (f) bad inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_p, n_c, match",
    [
        (0, 10, r"num_parent_rows must be >= 1 \(every child row needs a parent"),
        (-3, 10, "num_parent_rows must be >= 1"),
        (5, -1, "num_child_rows must be >= 0"),
        (5.0, 10, "num_parent_rows must be an integer"),
        (True, 10, "num_parent_rows must be an integer"),
        (5, "10", "num_child_rows must be an integer"),
    ],
)
def test_bad_row_counts(n_p, n_c, match):
    with pytest.raises(ValueError, match=match):
        plan_hsbm(n_p, n_c, SCM_DEFAULTS, np.random.default_rng(0), key=1)
    with pytest.raises(ValueError, match=match):
        HsbmPlan.from_hierarchies(n_p, n_c, [1], [1], [np.ones((1, 1))], key=1)


@pytest.mark.parametrize(
    "h_p, h_c, matrices, match",
    [
        ([2], [2, 1], [np.ones((2, 2))], "same number of levels"),
        ([], [], [], "non-empty 1-d sequence of integers"),
        ([2.0], [1], [np.ones((2, 1))], "parent_hierarchy must be a non-empty"),
        ([0], [1], [np.ones((0, 1))], r"needs >= 1 cluster per level, got \[0\]"),
        ([2], [3], [np.ones((3, 2))], r"level_matrices\[0\] must have shape \(h_P, h_C\) = \(2, 3\)"),
        ([2], [3], [], r"one level matrix per level \(1\), got 0"),
        ([2], [1], [np.array([[1.0], [-1.0]])], "finite and >= 0"),
        ([2], [1], [np.array([[1.0], [np.nan]])], "finite and >= 0"),
        ([2], [2], [np.array([[1.0, 0.0], [1.0, 0.0]])], "child base block 1 has zero weight"),
        ([9] * 8, [9] * 8, [np.ones((9, 9))] * 8, "block pairs"),
    ],
)
def test_bad_structure(h_p, h_c, matrices, match):
    with pytest.raises(ValueError, match=match):
        HsbmPlan.from_hierarchies(10, 10, h_p, h_c, matrices, key=1)


def test_zero_weight_from_empty_parent_blocks():
    # Child block 1 only likes parent block 1, which has no rows (1 row, 2 blocks).
    with pytest.raises(ValueError, match="child base block 1 has zero weight"):
        HsbmPlan.from_hierarchies(1, 4, [2], [2], [np.array([[1.0, 0.0], [0.0, 1.0]])], key=1)


@pytest.mark.parametrize("key", [-1, 2**64, 1.5, "7", None])
def test_bad_key(key):
    with pytest.raises(ValueError, match="key must"):
        HsbmPlan.from_hierarchies(3, 3, [1], [1], [np.ones((1, 1))], key=key)


def test_bad_level_choices():
    scm = types.SimpleNamespace(
        bi_hsbm_levels_choices=Choices("range", [0, 0]),
        bi_hsbm_clusters_per_level_choices=Choices("range", [1, 3]),
    )
    with pytest.raises(ValueError, match="produced 0 levels"):
        plan_hsbm(3, 3, scm, np.random.default_rng(0), key=1)


@pytest.mark.parametrize(
    "start, stop, match",
    [
        (-1, None, r"need 0 <= start <= stop <= num_child_rows=50, got start=-1, stop=50"),
        (0, 51, "got start=0, stop=51"),
        (10, 5, "got start=10, stop=5"),
        (1.0, None, "start must be an integer row index"),
        (0, "5", "stop must be an integer row index"),
    ],
)
def test_sample_parents_bad_range(start, stop, match):
    plan = HsbmPlan.from_hierarchies(3, 50, [1], [1], [np.ones((1, 1))], key=1)
    with pytest.raises(ValueError, match=match):
        sample_parents(plan, start, stop)


@pytest.mark.parametrize(
    "out",
    [
        np.empty(49, dtype=np.int64),
        np.empty(50, dtype=np.int32),
        np.empty(100, dtype=np.int64)[::2],
        [0] * 50,
    ],
)
def test_sample_parents_bad_out(out):
    plan = HsbmPlan.from_hierarchies(3, 50, [1], [1], [np.ones((1, 1))], key=1)
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous int64 array"):
        sample_parents(plan, out=out)


def test_plan_survives_msgspec_field_access():
    plan = HsbmPlan.from_hierarchies(3, 5, [1], [1], [np.ones((1, 1))], key=1)
    assert set(msgspec.structs.asdict(plan)) >= {
        "num_parent_rows",
        "num_child_rows",
        "parent_hierarchy",
        "child_hierarchy",
        "level_matrices",
        "key",
        "block_cdf",
    }
