"""pytest-benchmark suite for HSBM foreign keys (DESIGN §3).

    pytest bench/bench_hsbm.py --benchmark-only

Fixed 3-level hierarchy, 10**5 parent rows, 10**4 to 10**6 child rows; plus the
planning cost of the largest default hierarchy (5 levels of 3 x 3 clusters).
"""

from __future__ import annotations

import numpy as np
import pytest

from plurel_fast.kernels.hsbm import sample_parents
from plurel_fast.plan.hsbm import HsbmPlan, level_matrix

NUM_PARENT_ROWS = 100_000
PARENT_HIERARCHY = [3, 2, 3]
CHILD_HIERARCHY = [2, 3, 2]


def fixed_plan(num_parent_rows, num_child_rows, parent_hierarchy, child_hierarchy):
    rng = np.random.default_rng(0)
    matrices = [level_matrix(a, b, rng) for a, b in zip(parent_hierarchy, child_hierarchy)]
    return HsbmPlan.from_hierarchies(
        num_parent_rows, num_child_rows, parent_hierarchy, child_hierarchy, matrices, key=1
    )


@pytest.mark.parametrize("num_child_rows", [10**4, 10**5, 10**6])
def test_sample_parents(benchmark, num_child_rows):
    plan = fixed_plan(NUM_PARENT_ROWS, num_child_rows, PARENT_HIERARCHY, CHILD_HIERARCHY)
    sample_parents(plan, 0, 1)  # compile or load from cache outside the timing
    parents = benchmark(sample_parents, plan)
    assert parents.shape == (num_child_rows,)
    benchmark.extra_info["ns_per_child_row"] = benchmark.stats.stats.min * 1e9 / num_child_rows


def test_plan_largest_default_hierarchy(benchmark):
    # 243 x 243 block pairs: the biggest table the default choices can ask for.
    benchmark(fixed_plan, NUM_PARENT_ROWS, 10**6, [3] * 5, [3] * 5)
