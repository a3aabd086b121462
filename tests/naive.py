"""Deliberately naive NumPy versions of the math, for tests to compare against.

Slow and obvious on purpose, written straight from the method (docs/DESIGN.md); never imported by
the package. Each concept keeps its functions under its own name prefix.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from plurel_fast.config import ACTIVATIONS
from plurel_fast.kernels import rng
from plurel_fast.kernels.mlp import apply_activation
from plurel_fast.kernels.noise import beta_noise_block
from plurel_fast.plan import sources as ps

# ---------------------------------------------------------------------------
# HSBM foreign keys (DESIGN §3)
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
# Source generators (DESIGN §4.3)
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


# ---------------------------------------------------------------------------
# Post-processing (DESIGN §4.5, §5)
# ---------------------------------------------------------------------------
# Same counter-based draws as ``plurel_fast.kernels.post`` (the compiled scalar
# functions of ``plurel_fast.kernels.rng``, one call per row), but the obvious
# NumPy: quantization by counting boundaries in a Python loop, ranks by a double
# stable argsort, null rows by fully sorting every row's score. Slow on purpose.


def naive_boundary_rows(key, n, k):
    key = np.uint64(key)
    return np.array(
        [min(math.floor(rng.uniform(key, i, 0) * n), n - 1) for i in range(k - 1)],
        dtype=np.int64,
    )


def naive_quantize(values, key, k, permutation, reverse):
    values = np.asarray(values, dtype=np.float64)
    boundaries = values[naive_boundary_rows(key, values.shape[0], k)]
    labels = np.zeros(values.shape[0], dtype=np.int64)
    for b in boundaries:
        labels += values > b
    labels = np.asarray(permutation, dtype=np.int64)[labels]
    if reverse:
        labels = k - 1 - labels
    return labels


def naive_transform(name, x):
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return x.copy()
    if name == "rank_uniform":
        ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable") + 1
        return ranks / (len(x) + 1)
    if name == "log":
        return np.sign(x) * np.log1p(np.abs(x))
    if name == "sqrt":
        return np.sign(x) * np.sqrt(np.abs(x))
    if name == "standardize":
        return (x - x.mean()) / max(x.std(), 1e-8)
    raise ValueError(name)


def naive_nan_rows(n, perc, key):
    m = int(math.floor(perc * n))
    key = np.uint64(key)
    scores = np.array([rng.hash64(key, r, 0) for r in range(n)], dtype=np.uint64)
    return np.sort(np.argsort(scores, kind="stable")[:m]).astype(np.int64)


def naive_post_process_table(plan, float_columns, categorical_columns):
    """DESIGN §5 for one table; returns name -> (values, validity or None), dict order
    float columns (plan order) then categorical ones, dropped columns left out."""
    out = {}
    for i, col in enumerate(plan.float_cols):
        x = naive_transform(plan.transforms[i], float_columns[col])
        rows = naive_nan_rows(len(x), plan.nan_perc, rng.subkey(plan.nan_key, i))
        valid = np.ones(len(x), dtype=bool)
        valid[rows] = False
        x[rows] = np.nan
        out[col] = (x, valid)
    for col, (labels, k, categories) in categorical_columns.items():
        if categories is not None and isinstance(categories[0], str):
            out[col] = (np.array([categories[i] for i in labels]), None)
        else:
            values = np.asarray(labels) > 0
            if len(np.unique(values)) != 1:
                out[col] = (values, None)
    return out

# ===========================================================================
# MLPs, activations and categorical decoding (DESIGN §4.2)
# ===========================================================================
# ---------------------------------------------------------------------------
# Activations: float64 math on the given values, torch's formulas as written
# ---------------------------------------------------------------------------

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _softplus(x):
    # torch: beta 1, threshold 20
    return np.where(x > 20.0, x, np.logaddexp(0.0, np.minimum(x, 20.0)))


def fma_float32(a, x, b):
    """float32 a * x + b rounded once (IEEE fusedMultiplyAdd), elementwise.

    a * x is exact in float64; the float64 sum s is off by e (TwoSum), which
    only matters when s lies exactly halfway between two float32s."""
    p = np.float64(np.float32(a)) * np.asarray(x, dtype=np.float32).astype(np.float64)
    b = np.float64(np.float32(b))
    s = p + b
    bb = s - p
    e = (p - (s - bb)) + (b - bb)
    r = s.astype(np.float32)
    lo = np.nextafter(r, np.float32(-np.inf))
    hi = np.nextafter(r, np.float32(np.inf))
    down = (e < 0) & (s == (r.astype(np.float64) + lo) / 2)
    up = (e > 0) & (s == (r.astype(np.float64) + hi) / 2)
    return np.where(down, lo, np.where(up, hi, r))


def naive_random_sine(x, m, amplitudes, freqs, phases):
    """sum_i a_i sin(f_i x + phi_i); the argument is rounded to float32 first,
    as the kernel computes it: one fused multiply-add in float32."""
    x32 = np.asarray(x, dtype=np.float32)
    out = np.zeros(x32.shape, dtype=np.float64)
    for i in range(int(m)):
        arg = fma_float32(freqs[i], x32, phases[i])
        out += np.float64(amplitudes[i]) * np.sin(arg.astype(np.float64))
    return out


NAIVE_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "silu": lambda x: x / (1.0 + np.exp(np.minimum(-x, 700.0))),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(np.minimum(-x, 700.0))),
    "hardswish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
    "softplus": _softplus,
    "hardsigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hardtanh": lambda x: np.clip(x, -1.0, 1.0),
    "celu": lambda x: np.maximum(0.0, x) + np.minimum(0.0, np.expm1(np.minimum(x, 0.0))),
    "tanhshrink": lambda x: x - np.tanh(x),
    "rrelu": lambda x: np.where(x >= 0, x, x * (1.0 / 8.0 + 1.0 / 3.0) / 2.0),
    "logsigmoid": lambda x: -np.logaddexp(0.0, -x),
    "softshrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hardshrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "identity": lambda x: x,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    "sign": np.sign,
    "clamp": lambda x: np.clip(x, -1.0, 1.0),
    "signed_log1p": lambda x: np.sign(x) * np.log1p(np.abs(x)),
    "bent_identity": lambda x: (np.sqrt(x * x + 1.0) - 1.0) / 2.0 + x,
}


def naive_activation(name, x, sine_params=None):
    """Activation ``name`` of float32 values ``x``, computed in float64.

    ``sine_params`` is ``[m, a[m], f[m], phi[m]]`` for ``random_sine``.
    """
    x = np.asarray(x, dtype=np.float32)
    if name == "random_sine":
        p = np.asarray(sine_params, dtype=np.float32)
        m = int(p[0])
        return naive_random_sine(x, m, p[1 : 1 + m], p[1 + m : 1 + 2 * m], p[1 + 2 * m : 1 + 3 * m])
    with np.errstate(over="ignore", invalid="ignore"):
        return NAIVE_ACTIVATIONS[name](x.astype(np.float64))


# ---------------------------------------------------------------------------
# MLP forward and categorical decode from the packed bank arrays
# ---------------------------------------------------------------------------


def fma32(a, b, c):
    """Elementwise float32 ``a * b + c`` with one rounding, from float64.

    The float64 product of two float32 values is exact; the float64 sum is
    rounded once more before float32, which differs from a single rounding
    only when the sum falls exactly halfway between two float32 values after
    the first rounding (probability ~2**-29 per operation).
    """
    exact = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    return (exact + np.asarray(c, np.float64)).astype(np.float32)


_STORED: dict[int, tuple] = {}


def _stored(bank):
    """``bank`` with its weights stored (a lazy bank materialised once, then cached)."""
    if not getattr(bank, "lazy", False):
        return bank
    hit = _STORED.get(id(bank))
    if hit is None or hit[0] is not bank:
        if len(_STORED) > 16:
            _STORED.clear()
        hit = _STORED[id(bank)] = (bank, bank.materialise())
    return hit[1]


def naive_mlp_forward(bank, mlp_id, x, activation_names, exact_matmul=True, activation=None):
    """Forward of MLP ``mlp_id`` of a frozen bank, layer by layer.

    Hidden layer: ``x <- clip(s * act(x @ W), -1e6, 1e6)``; last layer
    ``x @ W``. With ``exact_matmul`` the products are accumulated in float32
    by fused multiply-adds in the order k = 0, 1, ... (as the kernel does), so that discontinuous
    activations see the same pre-activations; the activations are float64
    rounded to float32. Returns float32 (N, out_dim).
    """
    bank = _stored(bank)
    first, num_layers = (int(v) for v in bank.mlps[mlp_id])
    h = np.asarray(x, dtype=np.float32)
    for layer in range(first, first + num_layers):
        off, rows, cols, code, p_off = (int(v) for v in bank.layers[layer])
        w = bank.weights[off : off + rows * cols].reshape(rows, cols)
        if exact_matmul:
            z = np.zeros((h.shape[0], cols), dtype=np.float32)
            for k in range(rows):
                z = fma32(h[:, k : k + 1], w[k][None, :], z)
        else:
            z = (h.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)
        if code < 0:
            h = z
            continue
        name = activation_names[code]
        params = None
        if name == "random_sine":
            m = int(bank.act_params[p_off])
            params = bank.act_params[p_off : p_off + 1 + 3 * m]
        a = (activation or naive_activation)(name, z, params).astype(np.float32)
        h = np.clip(np.float32(bank.layer_scale[layer]) * a, -1e6, 1e6).astype(np.float32)
    return h


def naive_categorical_decode(bank, emb_id, h):
    """argmax_c E[c] · h[t] in float64 (first maximum on ties), int64 (N,)."""
    off, num_categories, dim = (int(v) for v in bank.emb_offsets[emb_id])
    table = bank.emb_weights[off : off + num_categories * dim].reshape(num_categories, dim)
    sims = np.asarray(h, dtype=np.float64) @ table.astype(np.float64).T  # (N, C)
    return np.argmax(sims, axis=1).astype(np.int64), sims


# ===========================================================================
# SCM forward pass (DESIGN §4.4)
# ===========================================================================
# Naive SCM forward pass (DESIGN §4.4), row by row and node by node.
# 
# Shares the plan and the counter-based noise draws with the kernel, but takes
# no shortcut: every encoder (categorical ones too) is evaluated from its
# embedding and MLP for each row, and the collation inputs are encoded from the
# parent's values for each child row. Inputs of a node are folded in the order
# parents (CSR order), then per foreign key the aggregate of that parent's
# column inputs — the grouping is the associativity the kernel relies on, done
# here per row instead of once per parent row.

CLAMP = np.float32(1e4)


def _kernel_activation(name, z, params):
    out = apply_activation(name, np.ascontiguousarray(z, np.float32).ravel(), params, 0)
    return out.reshape(z.shape)


def _mlp(bank, mlp_id, x):
    # The activations themselves are checked against float64 formulas in
    # test_kernels_mlp / test_kernels_vmath; here the kernel's float32 activation
    # is reused so that arg-max decisions (categorical decoders) see the same
    # values and the check of the propagation itself can be exact.
    return naive_mlp_forward(
        bank, mlp_id, np.asarray(x, np.float32)[None, :], ACTIVATIONS,
        activation=_kernel_activation,
    )[0]


def _encode(plan, value, cats, mlp_id, table_off):
    if table_off >= 0:
        emb_id, enc_mlp = next(
            (int(e), int(m)) for e, m, o in plan.cat_encoders if o == table_off
        )
        return _mlp(plan.mlp, enc_mlp, plan.mlp.embedding_table(emb_id)[int(value)])
    return _mlp(plan.mlp, mlp_id, [value])


def _aggregate(code, inputs):
    stack = np.stack(inputs).astype(np.float32)
    if code == 0:
        out = np.zeros(stack.shape[1], np.float32)
        for x in stack:
            out = out + x
        return out
    if code == 1:
        return stack.max(axis=0)
    if code == 2:
        out = np.ones(stack.shape[1], np.float32)
        for x in stack:
            out = out * x
        return out
    s64 = stack.astype(np.float64)
    m = s64.max(axis=0)
    return (m + np.log(np.exp(s64 - m).sum(axis=0))).astype(np.float32)


def naive_collation(parent_plan, child_index, parent_values, code):
    """AGG over the parent's column nodes of clamp(w * coll_c(value)) for one parent row."""
    k = len(parent_plan.col_nodes)
    w = np.float32(1.0 / k) if code == 0 else np.float32(1.0)
    inputs = []
    for i, node in enumerate(parent_plan.col_nodes):
        enc = _encode(
            parent_plan, parent_values[i], parent_plan.num_categories[node],
            parent_plan.coll_mlp[child_index, i], parent_plan.coll_table[child_index, i],
        )
        inputs.append(np.clip(w * enc, -CLAMP, CLAMP))
    return _aggregate(code, inputs)


def naive_scm_rows(plan, rows, src_vals, foreign):
    """Column values of ``plan`` at ``rows`` (float32 (len(rows), k)).

    ``src_vals[i, s]``: source s at rows[i]. ``foreign``: list of
    (parent_plan, child_index, parent_values (n_P, k_P), parent_rows (len(rows),)).
    """
    dim = plan.emb_dim
    out = np.zeros((len(rows), len(plan.col_nodes)), np.float32)
    for i, r in enumerate(rows):
        val = {}
        for v in plan.order:
            v = int(v)
            if plan.is_source[v]:
                val[v] = np.float32(src_vals[i, plan.source_index[v]])
                continue
            code = int(plan.agg[v])
            inputs = []
            for e in range(plan.in_ptr[v], plan.in_ptr[v + 1]):
                u = int(plan.edge_src[e])
                enc = _encode(plan, val[u], plan.num_categories[u], plan.edge_mlp[e], plan.edge_table[e])
                inputs.append(np.clip(plan.edge_weight[e] * enc, -CLAMP, CLAMP))
            if inputs:
                acc = [_aggregate(code, inputs)]
            else:
                acc = []
            for parent_plan, child_index, parent_values, parent_rows in foreign:
                acc.append(naive_collation(parent_plan, child_index, parent_values[parent_rows[i]], code))
            agg = _aggregate(code, acc) if acc else np.zeros(dim, np.float32)
            a, b = plan.noise_alpha[v], plan.noise_beta[v]
            if min(a, b) >= 0.5:  # tabulated inverse CDF, checked against scipy elsewhere
                draws = beta_noise_block(plan.noise_key[v], r, 1, a, b, n_draws=dim)[0]
            else:
                draws = np.array([rng.beta(plan.noise_key[v], r, j, a, b) for j in range(dim)])
            noise = (draws / dim).astype(np.float32)
            emb = agg + noise
            if plan.num_categories[v] > 0:
                h = _mlp(plan.mlp, plan.dec_mlp[v], emb)
                labels, _ = naive_categorical_decode(plan.mlp, plan.dec_emb[v], h[None, :])
                val[v] = np.float32(labels[0])
            else:
                val[v] = _mlp(plan.mlp, plan.dec_mlp[v], emb)[0]
        for c, node in enumerate(plan.col_nodes):
            out[i, c] = val[int(node)]
    return out
