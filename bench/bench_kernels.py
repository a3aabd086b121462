"""pytest-benchmark suite for the row kernels, one group per kernel, 2-3 sizes each.

    pytest bench/bench_kernels.py --benchmark-only
    NUMBA_NUM_THREADS=1 pytest bench/bench_kernels.py --benchmark-only   # one core

Every SCM here is a real planned one: seed 2 of a two-table database with 12
feature columns per table (``CONFIG_FIELDS``) — ``table_1`` an entity table,
``table_0`` an activity table referencing it. The structure of a table's SCM
does not depend on its row count (a row count takes one planning draw whatever
its value), so the plan is redone per size with only the row counts changed.

- ``sources``: ``source_values`` of ``table_0``'s 11 sources (numerical,
  categorical ts and categorical i.i.d.) over all rows (DESIGN §4.3).
- ``propagate``: ``propagate`` of ``table_0`` (eager, 30 nodes, 29 edges) over
  all rows, sources precomputed; ``no_parent`` without collation input, the way
  a table without parents runs, ``one_parent`` with its foreign key's
  pre-aggregated collation input folded into every inner node (DESIGN §4.4).
- ``collation``: ``collation_partials`` of the entity table ``table_1`` for its
  child, 4 aggregation slots; 8 numerical columns (MLP encoders) and 4
  categorical ones (encoder tables) with synthetic values (DESIGN §4.2).
- ``post``: ``post_process_table`` on 5 float columns (one per transform) and
  3 categorical ones, and its parts: ``apply_transform`` per transform,
  ``nan_rows``, ``quantize`` (DESIGN §4.5, §5).

HSBM sampling is in ``bench_hsbm.py``. ``extra_info["ns_per_row"]`` is the
best round over the row count. The whole file takes about 1-2 minutes on 2
cores; the slow kernels (propagation, collation: tens of µs per row) run at
10^3-10^5 rows with fixed round counts, the fast ones at 10^4-10^6.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from plurel_fast import Choices, Config, DatabaseParams, SCMParams
from plurel_fast.config import COL_TRANSFORMS
from plurel_fast.generate import execute
from plurel_fast.kernels.post import apply_transform, nan_rows, post_process_table, quantize
from plurel_fast.kernels.scm import collation_partials, propagate
from plurel_fast.kernels.sources import source_values
from plurel_fast.plan.database import plan_database
from plurel_fast.plan.post import TablePostPlan, plan_quantization

SEED = 2
NUM_COLS = 12
ACTIVITY = "table_0"  # the child
ENTITY = "table_1"  # the parent
FIXED_ROWS = 1_000  # the other table's rows when one table's size varies
FAST_SIZES = [10**4, 10**5, 10**6]
SLOW_SIZES = [10**3, 10**4, 10**5]


def config(activity_rows: int, entity_rows: int) -> Config:
    """Two tables, 12 columns each, fixed row counts."""
    return Config(
        database_params=DatabaseParams(
            num_tables_choices=Choices("range", [2, 2]),
            num_cols_choices=Choices("range", [NUM_COLS, NUM_COLS]),
            num_rows_activity_table_choices=Choices("range", [activity_rows, activity_rows]),
            num_rows_entity_table_choices=Choices("range", [entity_rows, entity_rows]),
        )
    )


@functools.lru_cache(maxsize=None)
def planned(activity_rows: int, entity_rows: int):
    plan = plan_database(SEED, config(activity_rows, entity_rows))
    child, parent = plan.schema.table(ACTIVITY), plan.schema.table(ENTITY)
    assert child.parents == (ENTITY,) and parent.kind == "entity", "seed no longer gives parent -> child"
    return plan


@pytest.fixture(scope="module", autouse=True)
def _warm():
    # Compiles (or loads from numba's cache) every kernel used below.
    execute(plan_database(SEED, config(FIXED_ROWS, FIXED_ROWS)))
    quantize(np.linspace(0.0, 1.0, 100), _quantize_plan())


def _rounds(n: int) -> int:
    return 5 if n <= 10**4 else 3


def _record(benchmark, n: int, **info):
    benchmark.extra_info["ns_per_row"] = benchmark.stats.stats.min * 1e9 / n
    benchmark.extra_info.update(info)


# ----------------------------------------------------------------- sources (DESIGN §4.3)


@pytest.mark.benchmark(group="sources")
@pytest.mark.parametrize("n", FAST_SIZES)
def test_source_values(benchmark, n):
    plan = planned(n, FIXED_ROWS)
    bank = plan.scms[plan.schema.table(ACTIVITY).id].sources
    out = benchmark(source_values, bank, n, 0, n)
    assert out.shape == (n, bank.num_sources)
    _record(benchmark, n, sources=bank.num_sources)


# --------------------------------------------------------------- propagation (DESIGN §4.4)


def _node_slot(scm) -> np.ndarray:
    node_slot = np.zeros(scm.num_nodes, dtype=np.int64)
    for slot, code in enumerate(scm.used_aggs):
        node_slot[scm.agg == code] = slot
    return node_slot


def _synthetic_values(scm, n: int) -> np.ndarray:
    """float32 (n, k): labels for categorical column nodes, N(0, 1) otherwise."""
    rng = np.random.default_rng(0)
    cats = scm.num_categories[scm.col_nodes]
    values = np.empty((n, len(cats)), dtype=np.float32)
    for i, k in enumerate(cats):
        values[:, i] = rng.integers(0, k, n) if k else rng.standard_normal(n)
    return values


@pytest.mark.benchmark(group="propagate")
@pytest.mark.parametrize("with_parent", [False, True], ids=["no_parent", "one_parent"])
@pytest.mark.parametrize("n", SLOW_SIZES)
def test_propagate(benchmark, n, with_parent):
    plan = planned(n, FIXED_ROWS)
    table = plan.schema.table(ACTIVITY)
    scm = plan.scms[table.id]
    src = source_values(scm.sources, n, 0, n)
    node_slot = _node_slot(scm)
    if with_parent:
        parent_scm = plan.scms[plan.schema.table(ENTITY).id]
        partials = collation_partials(
            parent_scm, 0, _synthetic_values(parent_scm, FIXED_ROWS), scm.used_aggs
        )
        fk_rows = np.random.default_rng(1).integers(0, FIXED_ROWS, (1, n))
        fk_base = np.zeros(1, dtype=np.int64)
    else:
        partials = np.zeros((1, len(scm.used_aggs), scm.emb_dim), dtype=np.float32)
        fk_rows = np.empty((0, n), dtype=np.int64)
        fk_base = np.empty(0, dtype=np.int64)
    out = np.empty((n, len(table.features)), dtype=np.float32)
    args = (scm, 0, n, src, fk_rows, fk_base, partials, node_slot, out)
    benchmark.pedantic(propagate, args=args, rounds=_rounds(n), iterations=1)
    assert np.isfinite(out).all()
    _record(benchmark, n, nodes=scm.num_nodes, edges=len(scm.edge_src), mode=scm.mode)


@pytest.mark.benchmark(group="collation")
@pytest.mark.parametrize("n", SLOW_SIZES)
def test_collation_partials(benchmark, n):
    plan = planned(FIXED_ROWS, n)
    parent_scm = plan.scms[plan.schema.table(ENTITY).id]
    slot_aggs = plan.scms[plan.schema.table(ACTIVITY).id].used_aggs
    values = _synthetic_values(parent_scm, n)
    out = benchmark.pedantic(
        collation_partials, args=(parent_scm, 0, values, slot_aggs), rounds=_rounds(n), iterations=1
    )
    assert out.shape == (n, len(slot_aggs), parent_scm.emb_dim)
    _record(benchmark, n, columns=values.shape[1], slots=len(slot_aggs))


# ------------------------------------------------------------ post-processing (DESIGN §5)


NAN_PERC = 0.05
NAN_KEY = np.uint64(12345)


def _quantize_plan(k: int = 6):
    return plan_quantization(np.random.default_rng(0), SCMParams(), k, 777)


def _float_column(n: int) -> np.ndarray:
    return np.random.default_rng(2).standard_normal(n) * 10.0


@pytest.mark.benchmark(group="post_process_table")
@pytest.mark.parametrize("n", FAST_SIZES)
def test_post_process_table(benchmark, n):
    rng = np.random.default_rng(3)
    float_cols = {f"f_{name}": rng.standard_normal(n) for name in COL_TRANSFORMS}
    post = TablePostPlan(
        float_cols=list(float_cols), transforms=list(COL_TRANSFORMS),
        nan_perc=NAN_PERC, nan_key=NAN_KEY,
    )
    categorical = {
        "c_bool": (rng.integers(0, 2, n), 2, None),
        "c_int": (rng.integers(0, 7, n), 7, None),
        "c_str": (rng.integers(0, 4, n), 4, ["red", "green", "blue", "grey"]),
    }
    out = benchmark(post_process_table, post, float_cols, categorical)
    assert len(out) == 8
    _record(benchmark, n, float_columns=5, categorical_columns=3)


@pytest.mark.benchmark(group="apply_transform")
@pytest.mark.parametrize("name", COL_TRANSFORMS)
def test_apply_transform(benchmark, name):
    n = 10**6
    x = _float_column(n)
    benchmark(apply_transform, name, x)
    _record(benchmark, n)


@pytest.mark.benchmark(group="nan_rows")
@pytest.mark.parametrize("n", FAST_SIZES)
def test_nan_rows(benchmark, n):
    rows = benchmark(nan_rows, n, NAN_PERC, NAN_KEY)
    assert rows.shape == (int(NAN_PERC * n),)
    _record(benchmark, n)


@pytest.mark.benchmark(group="quantize")
@pytest.mark.parametrize("n", FAST_SIZES)
def test_quantize(benchmark, n):
    x = _float_column(n)
    labels = benchmark(quantize, x, _quantize_plan())
    assert labels.shape == (n,)
    _record(benchmark, n)
