"""Deliberately naive NumPy versions of the math, for tests to compare against.

Slow and obvious on purpose, written straight from SPEC.md; never imported by
the package. Each concept keeps its functions under its own name prefix.
"""

from __future__ import annotations

import math

import numpy as np

from plurel_fast.kernels import rng
from plurel_fast.plan import sources as ps

# ---------------------------------------------------------------------------
# HSBM foreign keys (SPEC §3)
# ---------------------------------------------------------------------------


def naive_hsbm_row_clusters(num_rows, hierarchy):
    """Cluster of every row at every level, shape (num_rows, L), row by row."""
    hierarchy = [int(h) for h in hierarchy]
    num_blocks = int(np.prod(hierarchy))
    rows_per_block = int(np.ceil(num_rows / num_blocks))
    clusters = np.zeros((num_rows, len(hierarchy)), dtype=np.int64)
    for row in range(num_rows):
        block = row // rows_per_block
        for level in range(len(hierarchy)):
            below = math.prod(hierarchy[level + 1 :])  # prod of [] is 1
            clusters[row, level] = (block // below) % hierarchy[level]
    return clusters


def naive_hsbm_parent_probs(
    num_parent_rows, num_child_rows, parent_hierarchy, child_hierarchy, level_matrices
):
    """P(parent row p | child row c) as a dense (n_P, n_C) matrix; columns sum to 1."""
    clusters_p = naive_hsbm_row_clusters(num_parent_rows, parent_hierarchy)
    clusters_c = naive_hsbm_row_clusters(num_child_rows, child_hierarchy)
    probs = np.ones((num_parent_rows, num_child_rows), dtype=np.float64)
    for level, matrix in enumerate(level_matrices):
        # entry [p, c] = M_l[cluster_l(p), cluster_l(c)]
        probs *= np.asarray(matrix)[clusters_p[:, level][:, None], clusters_c[:, level][None, :]]
    return probs / probs.sum(axis=0, keepdims=True)


# ---------------------------------------------------------------------------
# Source generators (SPEC §4.3)
# ---------------------------------------------------------------------------
# Same counter-based draws as the kernel (the compiled scalar functions of
# ``plurel_fast.kernels.rng``, called one row at a time) (generator ``j`` of a source draws from
# ``subkey(key, j)``, draw 0 of each row; the source key's draw 0 picks the mixed
# generator or the category), but the AR(1) noise is the exact recursion from
# ``e_{-1} = 0`` at row 0, with no blocks and no warm-up window. Slow and obvious
# on purpose; never imported by the package.


def naive_gen_key(key, j):
    """Key of generator ``j`` of a source with key ``key``."""
    return np.uint64(rng.subkey(np.uint64(key), np.uint64(j)))


def naive_ts_values(gen, key, num_rows, return_state=False):
    """Every row of one ts generator row ``gen`` on generator key ``key``."""
    lo, hi = gen[ps.COL_LO], gen[ps.COL_HI]
    alpha, s_t = gen[ps.COL_TREND_ALPHA], gen[ps.COL_TREND_SCALE]
    f, s_c = gen[ps.COL_CYCLE_FREQ], gen[ps.COL_CYCLE_SCALE]
    sigma, rho = gen[ps.COL_NOISE_SCALE], gen[ps.COL_AR_RHO]
    key = np.uint64(key)
    values = np.empty(num_rows)
    states = np.empty(num_rows)
    e = 0.0
    for r in range(num_rows):
        trend = min(s_t * math.pow(r / num_rows, alpha) + lo, hi)
        cycle = min(max(s_c * math.sin((r / f) * math.pi), lo), hi)
        e = rho * e + sigma * rng.normal(key, r, 0)
        states[r] = e
        noise = min(max(e, lo), hi)
        values[r] = (trend + cycle + noise) / 3.0
    return (values, states) if return_state else values


def naive_iid_values(gen, key, num_rows):
    """Every row of one uniform / gaussian / beta generator row on key ``key``."""
    lo, hi = gen[ps.COL_LO], gen[ps.COL_HI]
    code = int(gen[ps.COL_TYPE])
    key = np.uint64(key)
    values = np.empty(num_rows)
    if code == ps.GEN_UNIFORM:
        for r in range(num_rows):
            values[r] = lo + (hi - lo) * rng.uniform(key, r, 0)
    elif code == ps.GEN_GAUSSIAN:
        for r in range(num_rows):
            z = rng.normal(key, r, 0)
            values[r] = min(max(gen[ps.COL_MEAN] + gen[ps.COL_STD] * z, lo), hi)
    elif code == ps.GEN_BETA:
        a, b = gen[ps.COL_BETA_A], gen[ps.COL_BETA_B]
        for r in range(num_rows):
            values[r] = lo + (hi - lo) * rng.beta(key, r, 0, a, b)
    else:
        raise ValueError(f"not an i.i.d. generator type code: {code}")
    return values


def naive_gen_values(gen, key, num_rows):
    if int(gen[ps.COL_TYPE]) == ps.GEN_TS:
        return naive_ts_values(gen, key, num_rows)
    return naive_iid_values(gen, key, num_rows)


def naive_mixed_choice(key, num_rows, k):
    """Index of the generator each row of a mixed source uses."""
    key = np.uint64(key)
    return np.array(
        [min(int(rng.uniform(key, r, 0) * k), k - 1) for r in range(num_rows)], dtype=np.int64
    )


def naive_numerical_source(source, key, num_rows):
    """Values of a NumericalSource at every row."""
    k = source.gens.shape[0]
    per_gen = [naive_gen_values(source.gens[j], naive_gen_key(key, j), num_rows) for j in range(k)]
    if k == 1:
        return per_gen[0]
    choice = naive_mixed_choice(key, num_rows, k)
    return np.array([per_gen[choice[r]][r] for r in range(num_rows)])


def naive_inverse_cdf(u, cdf):
    """First index whose cumulative weight exceeds u · total."""
    target = u * cdf[-1]
    for i, c in enumerate(cdf):
        if c > target:
            return i
    return len(cdf) - 1


def naive_softmax(values):
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = 0.0
    for e in exps:
        total += e
    return [e / total for e in exps]


def naive_cumsum(probs):
    out, acc = [], 0.0
    for p in probs:
        acc += p
        out.append(acc)
    return np.array(out)


def naive_categorical_ts_probs(source, key, num_rows):
    """Softmax probabilities of a ts CategoricalSource, shape (num_rows, k)."""
    k = source.num_categories
    series = [naive_ts_values(source.gens[j], naive_gen_key(key, j), num_rows) for j in range(k)]
    return np.array([naive_softmax([series[j][r] for j in range(k)]) for r in range(num_rows)])


def naive_categorical_source(source, key, num_rows):
    """Category labels (int64) of a CategoricalSource at every row."""
    u = [rng.uniform(np.uint64(key), r, 0) for r in range(num_rows)]
    if source.gen_type == "ts":
        probs = naive_categorical_ts_probs(source, key, num_rows)
        return np.array(
            [naive_inverse_cdf(u[r], naive_cumsum(probs[r])) for r in range(num_rows)],
            dtype=np.int64,
        )
    cdf = np.cumsum(source.probs)
    return np.array([naive_inverse_cdf(u[r], cdf) for r in range(num_rows)], dtype=np.int64)


def naive_source(source, key, num_rows):
    """Float64 values of any source, categorical labels as floats (as the kernel)."""
    if isinstance(source, ps.CategoricalSource):
        return naive_categorical_source(source, key, num_rows).astype(np.float64)
    return naive_numerical_source(source, key, num_rows)
