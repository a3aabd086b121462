"""Post-processing (DESIGN §4.5, §5): lazy-mode quantization, column transforms,
null rows, categorical columns and whole tables; kernels against the naive
NumPy reference, plan sampling frequencies, argument errors.

Statistical tests use fixed seeds, so they are deterministic; thresholds are
five standard errors or p > 1e-4, i.e. a correct implementation would fail
them for fewer than about 1 random seed in 10^4 per check.
"""

from __future__ import annotations

import itertools
import math
import pickle
import sys
import types
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy import stats

from plurel_fast.config import COL_TRANSFORMS, Choices, DatabaseParams, SCMParams
from plurel_fast.kernels.post import (
    apply_transform,
    boundary_rows,
    categorical_to_bool,
    implant_nulls,
    labels_to_strings,
    nan_rows,
    num_nulls,
    post_process_table,
    quantize,
)
from plurel_fast.kernels.rng import subkey
from plurel_fast.plan.post import (
    QuantizePlan,
    TablePostPlan,
    plan_quantization,
    plan_table_post,
)
from plurel_fast.plan.rng import plan_rng, stream_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive  # noqa: E402  (tests/naive.py, not part of the package)

P_MIN = 1e-4


def key(*path):
    return stream_key(2024, "post", *path)


def qplan(k, perm=None, reverse=False, key_=None):
    perm = np.arange(k, dtype=np.int64) if perm is None else np.asarray(perm, dtype=np.int64)
    return QuantizePlan(
        num_categories=k, key=key("q") if key_ is None else key_, permutation=perm, reverse=reverse
    )


def scm(permute, reverse):
    return types.SimpleNamespace(
        cat_label_permute_prob_choices=permute, cat_label_reverse_prob_choices=reverse
    )


def five_sigma(count, trials, p):
    return abs(count - trials * p) <= 5 * math.sqrt(trials * p * (1 - p)) + 1e-9


# ---------------------------------------------------------------------------
# Quantization (DESIGN §4.5)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 37, 5000])
@pytest.mark.parametrize("k", [1, 2, 5, 10])
@pytest.mark.parametrize("ties", [False, True])
def test_quantize_matches_naive(n, k, ties):
    g = np.random.default_rng(n * 100 + k)
    values = g.normal(size=n) * 3
    if ties:
        values = np.round(values)  # many equal values, boundaries among them
    for j in range(4):
        perm = g.permutation(k) if j % 2 else np.arange(k)
        plan = qplan(k, perm, reverse=j >= 2, key_=key("match", n, k, j))
        got = quantize(values, plan)
        want = naive.naive_quantize(values, plan.key, k, perm, j >= 2)
        assert got.dtype == np.int64 and got.shape == (n,)
        assert np.array_equal(got, want)
        assert got.min() >= 0 and got.max() < k


def test_quantize_boundaries_come_from_the_column():
    g = np.random.default_rng(1)
    values = g.normal(size=300)
    k = 8
    plan = qplan(k, key_=key("from_column"))
    rows = boundary_rows(plan.key, values.size, k)
    assert rows.shape == (k - 1,) and rows.dtype == np.int64
    assert rows.min() >= 0 and rows.max() < values.size
    labels = quantize(values, plan)
    boundaries = np.sort(values[rows])
    # A value equal to a boundary is above only the boundaries strictly below it.
    for b in boundaries:
        assert labels[values == b][0] == np.sum(boundaries < b)
    # Each label's values lie between consecutive boundaries.
    edges = np.concatenate(([-np.inf], boundaries, [np.inf]))
    for lab in np.unique(labels):
        v = values[labels == lab]
        assert (v > edges[lab]).all() and (v <= edges[lab + 1]).all()


def test_boundary_rows_uniform_with_replacement():
    # Over many keys, each of the n rows is a boundary equally often.
    n, k, keys = 13, 4, 3000
    counts = np.zeros(n)
    for s in range(keys):
        np.add.at(counts, boundary_rows(key("brows", s), n, k), 1)
    assert stats.chisquare(counts).pvalue > P_MIN
    # With replacement: some key repeats a row (P(no repeat) = 13·12·11/13^3 ≈ 0.78).
    repeats = sum(
        len(set(boundary_rows(key("brows", s), n, k).tolist())) < k - 1 for s in range(200)
    )
    assert repeats > 0


def test_identity_quantize_is_monotone():
    g = np.random.default_rng(2)
    values = g.standard_cauchy(size=4000)
    for k in (2, 3, 7, 10):
        labels = quantize(values, qplan(k, key_=key("mono", k)))
        along = labels[np.argsort(values, kind="stable")]
        assert (np.diff(along) >= 0).all()
        assert along[0] == 0
        assert len(np.unique(labels)) <= k


def test_quantize_permutation_and_reversal():
    g = np.random.default_rng(3)
    values = g.uniform(size=2000)
    k = 6
    raw = quantize(values, qplan(k, key_=key("perm")))
    perm = np.array([3, 0, 5, 1, 4, 2])
    assert np.array_equal(quantize(values, qplan(k, perm, key_=key("perm"))), perm[raw])
    assert np.array_equal(
        quantize(values, qplan(k, perm, reverse=True, key_=key("perm"))), k - 1 - perm[raw]
    )
    assert np.array_equal(
        quantize(values, qplan(k, reverse=True, key_=key("perm"))), k - 1 - raw
    )
    assert np.array_equal(qplan(k, perm, reverse=True).label_map(), k - 1 - perm)


def test_quantize_thread_invariant_and_deterministic():
    values = np.random.default_rng(4).normal(size=20000)
    plan = qplan(9, np.random.default_rng(5).permutation(9), True, key("threads"))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = quantize(values, plan)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, quantize(values, plan))


def test_quantize_errors():
    with pytest.raises(ValueError, match="NaN-free"):
        quantize(np.array([1.0, np.nan]), qplan(3))
    with pytest.raises(ValueError, match="1-d"):
        quantize(np.zeros((2, 2)), qplan(3))
    assert quantize(np.zeros(0), qplan(3)).shape == (0,)


# ---------------------------------------------------------------------------
# Quantization plan
# ---------------------------------------------------------------------------


def test_plan_quantization_frequencies():
    # p ~ U[0.3, 1), q ~ U[0.2, 0.8): P(permute) = E[p] = 0.65, P(reverse) = 0.5.
    params = SCMParams()
    trials, k = 3000, 6
    permuted = reversed_ = 0
    first = np.zeros(k)
    for s in range(trials):
        plan = plan_quantization(plan_rng(7, "quant", s), params, k, key("qp", s))
        permuted += plan.permuted
        reversed_ += plan.reverse
        if plan.permuted:
            first[plan.permutation[0]] += 1
    # A uniformly random permutation is the identity with probability 1/k!.
    assert five_sigma(permuted, trials, 0.65 * (1 - 1 / math.factorial(k)))
    assert five_sigma(reversed_, trials, 0.5)
    assert stats.chisquare(first).pvalue > P_MIN


def test_plan_quantization_edges_and_determinism():
    always = scm(Choices("range", [1.0, 1.0]), Choices("range", [0.0, 0.0]))
    never = scm(Choices("range", [0.0, 0.0]), Choices("range", [1.0, 1.0]))
    perms = set()
    for s in range(50):
        a = plan_quantization(plan_rng(1, "a", s), always, 10, 5)
        b = plan_quantization(plan_rng(1, "a", s), never, 10, 5)
        assert not a.reverse and b.reverse
        assert not b.permuted and np.array_equal(b.permutation, np.arange(10))
        assert sorted(a.permutation.tolist()) == list(range(10))
        perms.add(tuple(a.permutation.tolist()))
    assert len(perms) == 50
    p1 = plan_quantization(plan_rng(3, "x"), SCMParams(), 5, key("det"))
    p2 = plan_quantization(plan_rng(3, "x"), SCMParams(), 5, key("det"))
    assert p1 == p2 and pickle.loads(pickle.dumps(p1)) == p1
    assert p1.key == key("det") and p1.num_categories == 5
    assert plan_quantization(plan_rng(3, "x"), SCMParams(), 1, 0).label_map().tolist() == [0]


def test_quantize_plan_errors():
    with pytest.raises(ValueError, match="int >= 1"):
        plan_quantization(plan_rng(0), SCMParams(), 0, 1)
    with pytest.raises(ValueError, match="permutation"):
        QuantizePlan(num_categories=3, key=np.uint64(1), permutation=np.array([0, 0, 1]),
                     reverse=False)
    with pytest.raises(ValueError, match="permutation"):
        QuantizePlan(num_categories=3, key=np.uint64(1), permutation=np.arange(4),
                     reverse=False)
    with pytest.raises(ValueError, match="key"):
        plan_quantization(plan_rng(0), SCMParams(), 3, -1)


# ---------------------------------------------------------------------------
# Column transforms (DESIGN §5.1)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", COL_TRANSFORMS)
@pytest.mark.parametrize("n", [1, 2, 101, 20000])
def test_transforms_match_naive(name, n):
    g = np.random.default_rng(n)
    x = g.standard_cauchy(size=n)
    x[::7] = np.round(x[::7])  # ties and exact zeros
    x[::11] = 0.0
    x0 = x.copy()
    got = apply_transform(name, x)
    want = naive.naive_transform(name, x)
    assert got.dtype == np.float64 and got.shape == (n,)
    assert np.array_equal(x, x0) and got is not x
    if name == "standardize" and n > 1:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    elif name == "standardize":
        assert np.array_equal(got, np.zeros(1))  # a single row is a constant column
    elif name == "log":
        # numba's log1p (libm) and numpy's differ by at most one ulp.
        np.testing.assert_allclose(got, want, rtol=5e-16, atol=0)
    else:
        assert np.array_equal(got, want)


def test_transform_formulas():
    x = np.array([3.0, 1.0, 3.0, 2.0, 1.0, -4.0, 0.0])
    n = len(x)
    # Ties ranked by row order (stable): the two 1s get 3, 4; the two 3s get 6, 7.
    assert np.array_equal(
        apply_transform("rank_uniform", x), np.array([6, 3, 7, 5, 4, 1, 2]) / (n + 1)
    )
    assert np.array_equal(apply_transform("identity", x), x)
    np.testing.assert_allclose(
        apply_transform("log", x), np.sign(x) * np.log(1 + np.abs(x)), rtol=1e-15
    )
    np.testing.assert_allclose(
        apply_transform("sqrt", x), [math.sqrt(3), 1, math.sqrt(3), math.sqrt(2), 1, -2, 0],
        rtol=1e-15,
    )
    mean = sum(x) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in x) / n)  # population std, ddof = 0
    np.testing.assert_allclose(apply_transform("standardize", x), (x - mean) / std, rtol=1e-13)
    z = apply_transform("standardize", np.random.default_rng(0).normal(5, 3, size=1000))
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12


def test_rank_uniform_values():
    n = 1234
    x = np.round(np.random.default_rng(1).normal(size=n), 1)  # heavy ties
    r = apply_transform("rank_uniform", x)
    assert np.array_equal(np.sort(r), np.arange(1, n + 1) / (n + 1))
    assert (np.diff(r[np.argsort(x, kind="stable")]) > 0).all()


def test_standardize_constant_and_tiny_spread():
    for c in (0.0, 0.1, -7.3, 1e300):
        assert np.array_equal(apply_transform("standardize", np.full(999, c)), np.zeros(999))
    # std below 1e-8 divides by 1e-8 instead.
    x = np.array([1.0, 1.0 + 2e-12])
    np.testing.assert_allclose(
        apply_transform("standardize", x), (x - x.mean()) / 1e-8, rtol=1e-6
    )


def test_transform_errors():
    with pytest.raises(ValueError, match="unknown column transform 'exp'"):
        apply_transform("exp", np.zeros(3))
    for name in COL_TRANSFORMS:
        assert apply_transform(name, np.zeros(0)).shape == (0,)


# ---------------------------------------------------------------------------
# Null rows (DESIGN §5.2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, perc", [(0, 0.5), (1, 0.5), (1, 1.0), (10, 0.0), (100, 0.07), (100, 0.29), (5000, 0.1),
                (7, 1.0), (999, 0.999)]
)
def test_nan_rows_match_naive(n, perc):
    k = key("nan", n, str(perc))
    rows = nan_rows(n, perc, k)
    m = math.floor(perc * n)  # e.g. 0.29 · 100 = 28.999… -> 28, as the reference
    assert rows.dtype == np.int64 and rows.shape == (m,) and num_nulls(n, perc) == m
    assert len(np.unique(rows)) == m and (np.diff(rows) > 0).all()
    assert m == 0 or (rows.min() >= 0 and rows.max() < n)
    assert np.array_equal(rows, naive.naive_nan_rows(n, perc, k))
    assert np.array_equal(rows, nan_rows(n, perc, k))


def test_nan_rows_uniform_over_rows_and_subsets():
    # Each row is null equally often...
    n, perc, keys = 40, 0.25, 2000
    counts = np.zeros(n)
    for s in range(keys):
        counts[nan_rows(n, perc, key("unif", s))] += 1
    assert counts.sum() == keys * 10
    assert stats.chisquare(counts).pvalue > P_MIN
    # ... and every 2-subset of 5 rows is equally likely.
    subsets = {c: 0 for c in itertools.combinations(range(5), 2)}
    for s in range(5000):
        subsets[tuple(nan_rows(5, 0.4, key("pairs", s)).tolist())] += 1
    assert stats.chisquare(list(subsets.values())).pvalue > P_MIN


def test_nan_rows_differ_between_keys():
    a = nan_rows(10000, 0.05, key("a"))
    b = nan_rows(10000, 0.05, key("b"))
    # Independent 500-subsets of 10000 rows share 25 rows on average.
    assert len(np.intersect1d(a, b)) < 60


def test_implant_nulls_and_errors():
    x = np.arange(6.0)
    valid = implant_nulls(x, np.array([1, 4]))
    assert valid.dtype == np.bool_
    assert valid.tolist() == [True, False, True, True, False, True]
    assert np.array_equal(x, np.arange(6.0))
    assert implant_nulls(x, np.zeros(0, dtype=np.int64)).all()
    with pytest.raises(ValueError, match="null rows"):
        implant_nulls(x, np.array([6]))
    with pytest.raises(ValueError, match="null share"):
        nan_rows(10, 1.5, 1)
    with pytest.raises(ValueError, match="row count"):
        nan_rows(-1, 0.5, 1)


# ---------------------------------------------------------------------------
# Categorical columns (DESIGN §5.3)
# ---------------------------------------------------------------------------


def test_categorical_to_bool_drop_rule():
    values, keep = categorical_to_bool(np.array([0, 2, 1, 0]))
    assert values.dtype == np.bool_ and values.tolist() == [False, True, True, False] and keep
    assert categorical_to_bool(np.array([1, 2, 3]))[1] is False  # all True
    assert categorical_to_bool(np.zeros(5, dtype=np.int64))[1] is False  # all False
    assert categorical_to_bool(np.zeros(0, dtype=np.int64))[1] is True


def test_labels_to_strings():
    out = labels_to_strings(np.array([2, 0, 1, 2]), ["open", "closed", "pending"])
    assert out.tolist() == ["pending", "open", "closed", "pending"]
    with pytest.raises(ValueError, match="labels must be in"):
        labels_to_strings(np.array([3]), ["a", "b", "c"])


# ---------------------------------------------------------------------------
# Table plan and whole tables (DESIGN §5)
# ---------------------------------------------------------------------------


def test_plan_table_post_draws():
    params = DatabaseParams()
    cols = [f"feature_{i}" for i in range(5)]
    counts = dict.fromkeys(COL_TRANSFORMS, 0)
    percs = []
    for s in range(1000):
        plan = plan_table_post(plan_rng(9, "post", s), params, cols, key("tp", s))
        assert plan.float_cols == cols and len(plan.transforms) == 5
        for t in plan.transforms:
            counts[t] += 1
        percs.append(plan.nan_perc)
    assert stats.chisquare(list(counts.values())).pvalue > P_MIN
    percs = np.array(percs)
    assert percs.min() >= 0.01 and percs.max() < 0.1
    assert stats.kstest(percs, stats.uniform(0.01, 0.09).cdf).pvalue > P_MIN
    # Draws: transforms first, then one null share per table (also with no columns).
    a = plan_table_post(plan_rng(1, "t"), params, [], 3)
    g = plan_rng(1, "t")
    assert a.transforms == [] and a.nan_perc == params.column_nan_perc_choices.sample(g)
    only = DatabaseParams(col_transform_choices=Choices("set", ["sqrt"]))
    assert plan_table_post(plan_rng(2), only, ["a", "b"], 3).transforms == ["sqrt", "sqrt"]
    p = plan_table_post(plan_rng(2), params, ["a"], 3)
    assert p == plan_table_post(plan_rng(2), params, ["a"], 3)
    assert pickle.loads(pickle.dumps(p)) == p


def test_table_post_plan_errors():
    good = dict(float_cols=["a"], transforms=["log"], nan_perc=0.1, nan_key=np.uint64(1))
    TablePostPlan(**good)
    with pytest.raises(ValueError, match="unknown transform 'exp'"):
        TablePostPlan(**{**good, "transforms": ["exp"]})
    with pytest.raises(ValueError, match="one transform per float column"):
        TablePostPlan(**{**good, "transforms": []})
    with pytest.raises(ValueError, match="nan_perc"):
        TablePostPlan(**{**good, "nan_perc": 1.5})
    with pytest.raises(ValueError, match="repeats"):
        TablePostPlan(**{**good, "float_cols": ["a", "a"], "transforms": ["log", "log"]})


def toy_table(n=2000):
    g = np.random.default_rng(11)
    plan = TablePostPlan(
        float_cols=["f0", "f1", "f2"],
        transforms=["rank_uniform", "standardize", "log"],
        nan_perc=0.05,
        nan_key=key("toy"),
    )
    floats = {"f0": g.normal(size=n), "f1": g.gamma(2.0, size=n), "f2": g.standard_cauchy(n)}
    cats = {
        "c_bool": (g.integers(0, 4, size=n), 4, list(range(4))),
        "c_const": (np.zeros(n, dtype=np.int64), 3, None),  # all False: dropped
        "c_enum": (g.integers(0, 3, size=n), 3, ["open", "closed", "pending"]),
    }
    return plan, floats, cats


def test_post_process_table_end_to_end():
    n = 2000
    plan, floats, cats = toy_table(n)
    copies = {c: v.copy() for c, v in floats.items()}
    order = ["c_enum", "f0", "c_const", "f1", "c_bool", "f2"]
    out = post_process_table(plan, floats, cats, order=order)
    assert list(out) == ["c_enum", "f0", "f1", "c_bool", "f2"]
    assert all(np.array_equal(floats[c], copies[c]) for c in floats)

    want = naive.naive_post_process_table(plan, floats, cats)
    assert set(want) == set(out)
    m = math.floor(0.05 * n)
    null_sets = []
    for col in plan.float_cols:
        values, valid = out[col]
        assert values.dtype == np.float64 and valid.dtype == np.bool_
        assert (~valid).sum() == m and np.array_equal(np.isnan(values), ~valid)
        np.testing.assert_allclose(values, want[col][0], rtol=1e-13, atol=1e-13, equal_nan=True)
        assert np.array_equal(valid, want[col][1])
        null_sets.append(frozenset(np.flatnonzero(~valid)))
    # Same count, different rows in each column.
    assert len(set(null_sets)) == 3
    i1 = plan.float_cols.index("f1")
    assert np.array_equal(
        np.flatnonzero(~out["f1"][1]), nan_rows(n, 0.05, subkey(plan.nan_key, i1))
    )
    # Transform before nulls: the non-null ranks are those of the full column.
    r = apply_transform("rank_uniform", floats["f0"])
    assert np.array_equal(out["f0"][0][out["f0"][1]], r[out["f0"][1]])

    assert out["c_bool"][1] is None and out["c_bool"][0].dtype == np.bool_
    assert np.array_equal(out["c_bool"][0], cats["c_bool"][0] > 0)
    assert out["c_enum"][0].tolist() == want["c_enum"][0].tolist()
    assert out["c_enum"][1] is None

    # Default order: float columns in plan order, then categorical ones.
    assert list(post_process_table(plan, floats, cats)) == ["f0", "f1", "f2", "c_bool", "c_enum"]


def test_post_process_table_polars_columns():
    pl = pytest.importorskip("polars")
    plan, floats, cats = toy_table(300)
    out = post_process_table(plan, floats, cats)
    values, valid = out["f0"]
    s = pl.Series("f0", values, nan_to_null=True)
    assert s.null_count() == (~valid).sum() == math.floor(0.05 * 300)
    assert pl.Series("c_enum", out["c_enum"][0]).dtype == pl.String
    assert pl.Series("c_bool", out["c_bool"][0]).dtype == pl.Boolean


def test_post_process_table_errors():
    plan, floats, cats = toy_table(50)
    with pytest.raises(ValueError, match="exactly the plan's float columns"):
        post_process_table(plan, {"f0": floats["f0"]}, cats)
    with pytest.raises(ValueError, match="same length"):
        post_process_table(plan, {**floats, "f2": floats["f2"][:10]}, cats)
    with pytest.raises(ValueError, match="order must name every column"):
        post_process_table(plan, floats, cats, order=["f0"])
    with pytest.raises(ValueError, match="labels must be in"):
        post_process_table(plan, floats, {"c": (np.full(50, 3), 3, None)})
    with pytest.raises(ValueError, match="both float and categorical"):
        post_process_table(plan, floats, {"f0": (np.zeros(50, dtype=np.int64), 2, None)})
