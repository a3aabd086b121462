"""The bulk weight kernel (``kernels/weights.py``, DESIGN §4.2): the ziggurat
normal, the law of each init with torch's fans, the density mask, the sparse
zero rows, the independence the counters give, the equality of the vectorised
kernel with its scalar per-entry definition, and identical bytes whatever the
thread count or chunking. Also the wiring of the banks ``plan_scm`` fills with
one ``add_mlps`` / ``add_embeddings`` call per SCM.

Statistical tests use fixed keys, so they are deterministic. Their bounds are
5 standard deviations of the statistic or p > 1e-6 (a correct kernel fails one
with probability below 1e-6 for a random key), and every law test also shows
that the same statistic on the same sample rejects the nearest wrong law, so
each test is able to fail.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from scipy import stats

from plurel_fast import Choices, Config, DatabaseParams, SCMParams
from plurel_fast.kernels import weights as W
from plurel_fast.kernels.rng import subkey, uniform
from plurel_fast.kernels.weights import INIT_NAMES, draw_weights
from plurel_fast.plan.database import plan_database
from plurel_fast.plan.mlp import ACTIVATION_CODES, INIT_CODES, MlpBank, MlpBankArrays
from conftest import thread_counts  # noqa: E402

SIGMAS = 5.0
P_MIN = 1e-6
CODE = INIT_CODES


def _ks_accepts_only_the_right_law(sample, right_cdf, wrong_cdf):
    """KS accepts ``right_cdf`` and, on the same sample, rejects ``wrong_cdf``."""
    sample = np.asarray(sample, dtype=np.float64)
    assert stats.kstest(sample, right_cdf).pvalue > P_MIN
    assert stats.kstest(sample, wrong_cdf).pvalue < P_MIN


def _within(observed, mean, sd):
    return abs(observed - mean) <= SIGMAS * sd


# ---------------------------------------------------------------------------
# the ziggurat
# ---------------------------------------------------------------------------


def test_ziggurat_layers_have_equal_areas():
    x = W._ZIG_W.astype(np.float64) * 2.0**52  # right edge of each layer
    f = np.exp(-0.5 * x**2)
    v = W._ZIG_V
    areas = x[1:] * (np.concatenate([[1.0], f[1:-1]]) - f[1:])  # layers 1..255
    np.testing.assert_allclose(areas, v, rtol=1e-9)
    # base strip + tail (the normal's tail beyond r)
    r = W._ZIG_R
    tail = math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    assert abs(r * math.exp(-0.5 * r * r) + tail - v) < 1e-15
    assert abs(x[0] * math.exp(-0.5 * r * r) - v) < 1e-15  # q f(r) = v
    assert np.all(np.diff(x[1:]) > 0) and x[-1] == r
    # the fast box of layer i is x < x_{i-1}: K[i] = x_{i-1} / x_i · 2^52
    assert W._ZIG_K[1] == 0
    np.testing.assert_allclose(W._ZIG_K[2:] / 2.0**52, x[1:-1] / x[2:], rtol=1e-15, atol=2**-52)
    assert abs(W._ZIG_K[0] / 2.0**52 - r / x[0]) < 1e-15


def test_standard_normal_law():
    # kaiming_normal on (n, 2): std sqrt(2 / fan_in) = 1
    n = 1 << 21
    z = draw_weights(11, [n // 2], [2], [CODE["kaiming_normal"]]).astype(np.float64)
    _ks_accepts_only_the_right_law(z, stats.norm.cdf, stats.norm(scale=1.01).cdf)
    # equiprobable bins catch a wrong wedge or layer edge the KS may average out
    bins = 2000
    counts = np.bincount(
        np.minimum((stats.norm.cdf(z) * bins).astype(np.int64), bins - 1), minlength=bins
    )
    assert stats.chisquare(counts).pvalue > P_MIN
    assert _within(z.mean(), 0.0, 1 / math.sqrt(n))
    assert _within((z**2).mean(), 1.0, math.sqrt(2 / n))
    assert _within((z**4).mean(), 3.0, math.sqrt((105 - 9) / n))
    # tails: beyond r every value comes from the tail algorithm
    for t in (2.0, W._ZIG_R, 4.5):
        p = 2 * stats.norm.sf(t)
        assert _within((np.abs(z) > t).sum(), n * p, math.sqrt(n * p * (1 - p))), t
    assert np.abs(z).max() > 4.5


def _scalar(fn, *args):
    return np.array([fn(*a) for a in zip(*args)])


def test_vectorised_kernel_equals_its_scalar_definition():
    # Entry j of matrix m is defined by the scalar draws of the module
    # docstring; the kernel's vectorised fast path + redo must give the same
    # bytes, masked or not, for every init (ziggurat and trunc_normal redos
    # included: thousands of entries take them here).
    key = np.uint64(2**64 - 12345)
    k_mask, k_value = subkey(key, W._SALT_MASK), subkey(key, W._SALT_VALUE)
    rows, cols, densities = [7, 40, 40, 9, 40, 3], [33, 40, 40, 1, 40, 50], [0.6, 1.0, 0.35, 0.9, 0.8, 1.0]
    for name in INIT_NAMES:
        inits = [CODE[name]] * len(rows)
        flat = draw_weights(key, rows, cols, inits, densities)
        offset = 0
        for m, (r, c, d) in enumerate(zip(rows, cols, densities)):
            got = flat[offset : offset + r * c]
            offset += r * c
            j = np.arange(r * c)
            ms = np.full(r * c, m)
            keep = _scalar(uniform, np.full(r * c, k_mask), ms, j) < d
            scale = W._init_scale(CODE[name], r, c) / d
            if name in ("kaiming_uniform", "xavier_uniform"):
                value = (2.0 * _scalar(uniform, np.full(r * c, k_value), ms, j) - 1.0) * scale
            elif name == "trunc_normal":
                value = _scalar(W._trunc_normal, np.full(r * c, k_value), ms, j) * scale
            else:
                value = _scalar(W.ziggurat_normal, np.full(r * c, k_value), ms, j) * scale
            want = np.where(keep, value.astype(np.float32), np.float32(0.0))
            if name == "sparse":  # the zeros are tested on their own below
                nonzero = got != 0
                assert np.array_equal(got[nonzero], want[nonzero]), (name, m)
            else:
                assert np.array_equal(got, want), (name, m)


# ---------------------------------------------------------------------------
# the inits (torch's fans for a matrix stored as (in, out): fan_in = cols)
# ---------------------------------------------------------------------------

ROWS, COLS = 64, 48  # fan_out, fan_in


def _laws(name):
    """(right law, nearest wrong law) of a non-zero entry at (ROWS, COLS)."""
    kaiming_std, xavier_std = math.sqrt(2 / COLS), math.sqrt(2 / (COLS + ROWS))
    kaiming_bound, xavier_bound = math.sqrt(6 / COLS), math.sqrt(6 / (COLS + ROWS))
    swapped_std, swapped_bound = math.sqrt(2 / ROWS), math.sqrt(6 / ROWS)  # fan_in = rows
    return {
        "kaiming_normal": (stats.norm(scale=kaiming_std), stats.norm(scale=swapped_std)),
        "xavier_normal": (stats.norm(scale=xavier_std), stats.norm(scale=kaiming_std)),
        "kaiming_uniform": (
            stats.uniform(-kaiming_bound, 2 * kaiming_bound),
            stats.uniform(-swapped_bound, 2 * swapped_bound),
        ),
        "xavier_uniform": (
            stats.uniform(-xavier_bound, 2 * xavier_bound),
            stats.uniform(-kaiming_bound, 2 * kaiming_bound),
        ),
        "trunc_normal": (stats.truncnorm(-2, 2), stats.truncnorm(-2.1, 2.1)),
        "sparse": (stats.norm(scale=0.01), stats.norm(scale=0.0102)),
    }[name]


@pytest.mark.parametrize("name", INIT_NAMES)
def test_init_law(name):
    count = 150
    w = draw_weights(INIT_NAMES.index(name), [ROWS] * count, [COLS] * count, [CODE[name]] * count)
    w = w.reshape(count, ROWS, COLS)
    right, wrong = _laws(name)
    if name == "sparse":
        # exactly ceil(rows / 2) zeros in every column, the rest N(0, 0.01²)
        assert np.all((w == 0).sum(axis=1) == ROWS // 2)
        w = w[w != 0]
    else:
        assert np.all(w != 0)
    _ks_accepts_only_the_right_law(w.ravel(), right.cdf, wrong.cdf)
    if name in ("kaiming_uniform", "xavier_uniform", "trunc_normal"):
        bound = right.support()[1]
        assert np.abs(w).max() <= np.float32(bound)
        assert np.abs(w).max() > bound * (1 - 20 / w.size)  # reached: P(miss) ~ e^-20


def test_embedding_tables_take_dim_as_fan_in():
    # a table is (categories, dim): kaiming's std is sqrt(2 / dim) whatever
    # the category count, not sqrt(2 / categories)
    for categories in (2, 10, 400):
        count = max(1, 2000 // categories)
        w = draw_weights(categories, [categories] * count, [32] * count, [CODE["kaiming_normal"]] * count)
        _ks_accepts_only_the_right_law(
            w, stats.norm(scale=math.sqrt(2 / 32)).cdf, stats.norm(scale=math.sqrt(2 / categories)).cdf
        )


# ---------------------------------------------------------------------------
# the density mask
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("density", [0.3, 0.55, 0.97])
def test_density_mask(density):
    # kaiming_uniform has no zeros of its own: the zeros are the mask's
    count, size = 400, 32 * 32
    w = draw_weights(int(density * 100), [32] * count, [32] * count, [CODE["kaiming_uniform"]] * count,
                     [density] * count).reshape(count, size)  # fmt: skip
    kept = (w != 0).sum(axis=1)
    n = count * size
    assert _within(kept.sum(), n * density, math.sqrt(n * density * (1 - density)))
    # per-matrix counts spread like Binomial(size, d): not one mask for all
    expected_var = size * density * (1 - density)
    chi2 = (count - 1) * kept.var(ddof=1) / expected_var
    assert P_MIN < stats.chi2.cdf(chi2, count - 1) < 1 - P_MIN
    # kept entries, times d, are the init's values: U(±sqrt(6 / 32))
    bound = math.sqrt(6 / 32)
    _ks_accepts_only_the_right_law(
        w[w != 0] * density, stats.uniform(-bound, 2 * bound).cdf,
        stats.uniform(-bound * 1.03, 2 * bound * 1.03).cdf,
    )  # fmt: skip
    assert np.all(np.abs(w) <= np.float32(bound / density) * (1 + 1e-6))


def test_density_one_and_no_mask_agree():
    args = ([32] * 20, [32] * 20, np.arange(20) % 6)
    assert np.array_equal(draw_weights(5, *args), draw_weights(5, *args, np.ones(20)))


def test_mask_and_sparse_zeros_combine():
    # sparse zeros ceil(R/2) per column, then the mask drops each other entry
    # with probability 1 - d
    count, rows, cols, d = 500, 9, 32, 0.6
    w = draw_weights(8, [rows] * count, [cols] * count, [CODE["sparse"]] * count, [d] * count)
    zeros = (w.reshape(count, rows, cols) == 0).sum(axis=1)
    assert np.all(zeros >= 5)
    candidates = count * cols * (rows - 5)
    masked = zeros.sum() - count * cols * 5
    assert _within(masked, candidates * (1 - d), math.sqrt(candidates * d * (1 - d)))


def test_sparse_zero_rows_are_uniform_and_independent():
    # 4 rows: each column zeroes 2, each of the 6 pairs equally likely,
    # columns independent of each other
    count = 3000
    w = draw_weights(12, [4] * count, [8] * count, [CODE["sparse"]] * count).reshape(count, 4, 8)
    zero = w == 0
    assert np.all(zero.sum(axis=1) == 2)
    pair = {p: i for i, p in enumerate([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])}
    rows_of = np.argsort(~zero, axis=1, kind="stable")[:, :2, :]
    codes = np.vectorize(lambda a, b: pair[(a, b)])(rows_of[:, 0, :], rows_of[:, 1, :])
    assert stats.chisquare(np.bincount(codes.ravel(), minlength=6)).pvalue > P_MIN
    joint = codes[:, 0] * 6 + codes[:, 2]
    assert stats.chisquare(np.bincount(joint, minlength=36)).pvalue > P_MIN
    # the same test rejects a rule that always zeroes the first two rows half the time
    biased = np.bincount(codes.ravel(), minlength=6) + np.array([len(codes.ravel()) // 20, 0, 0, 0, 0, 0])
    assert stats.chisquare(biased).pvalue < P_MIN
    for rows in (1, 2, 7, 33):
        z = draw_weights(rows, [rows] * 20, [5] * 20, [CODE["sparse"]] * 20).reshape(20, rows, 5) == 0
        assert np.all(z.sum(axis=1) == math.ceil(rows / 2)), rows


# ---------------------------------------------------------------------------
# counters: every matrix is a function of (key, its index, its own arguments)
# ---------------------------------------------------------------------------


def _mixed_case(seed=0, count=300):
    rng = np.random.default_rng(seed)
    rows = rng.choice([1, 2, 7, 32, 33, 100], count)
    cols = rng.choice([1, 5, 32, 64], count)
    inits = rng.integers(0, len(INIT_NAMES), count)
    densities = np.where(rng.random(count) < 0.2, 1.0, rng.uniform(0.3, 1.0, count))
    return rows, cols, inits, densities


def _split(flat, rows, cols):
    ends = np.cumsum(np.asarray(rows) * np.asarray(cols))
    return np.split(flat, ends[:-1])


def test_matrices_depend_only_on_key_index_and_own_arguments():
    rows, cols, inits, densities = _mixed_case()
    before = _split(draw_weights(77, rows, cols, inits, densities), rows, cols)
    rows2, inits2, densities2 = rows.copy(), inits.copy(), densities.copy()
    rows2[0], inits2[0], densities2[5] = 50, (inits[0] + 1) % 6, 0.5
    after = _split(draw_weights(77, rows2, cols, inits2, densities2), rows2, cols)
    for m in range(len(rows)):
        if m not in (0, 5):
            assert np.array_equal(before[m], after[m]), m
    other = _split(draw_weights(78, rows, cols, inits, densities), rows, cols)
    assert not any(np.array_equal(a, b) for a, b in zip(before, other) if np.count_nonzero(a) > 2)


def test_entries_and_matrices_are_uncorrelated():
    count = 400
    w = draw_weights(3, [32] * count, [32] * count, [CODE["xavier_normal"]] * count).reshape(count, 32, 32)
    w = w.astype(np.float64)

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    bound = SIGMAS / math.sqrt(w[:, :, 1:].size)
    assert abs(corr(w[:, :, 1:], w[:, :, :-1])) < bound  # neighbours in a row
    assert abs(corr(w[:, 1:, :], w[:, :-1, :])) < bound  # neighbours in a column
    assert abs(corr(w[1:], w[:-1])) < bound  # same entry of consecutive matrices
    # the mask of an entry does not depend on its value
    m = draw_weights(3, [32] * count, [32] * count, [CODE["xavier_normal"]] * count, [0.5] * count)
    kept = (m != 0).reshape(count, 32, 32)
    assert _within(np.abs(w[kept]).mean() - np.abs(w[~kept]).mean(), 0.0,
                   np.abs(w).std() * math.sqrt(4 / w.size))  # fmt: skip


def test_draw_weights_argument_errors():
    with pytest.raises(ValueError, match="one entry per matrix"):
        draw_weights(0, [2, 2], [3], [0, 0])
    with pytest.raises(ValueError, match="shapes must be >= 1"):
        draw_weights(0, [2], [0], [0])
    with pytest.raises(ValueError, match="init codes must index INIT_NAMES"):
        draw_weights(0, [2], [3], [-1])
    with pytest.raises(ValueError, match=r"one value in \(0, 1\] per matrix"):
        draw_weights(0, [2], [3], [0], [1.5])
    with pytest.raises(ValueError, match=r"key must be an integer in \[0, 2\*\*64\)"):
        draw_weights(-1, [2], [3], [0])
    with pytest.raises(ValueError, match="key must be"):
        draw_weights(0.5, [2], [3], [0])
    assert draw_weights(2**64 - 1, [], [], []).shape == (0,)


# ---------------------------------------------------------------------------
# threads and chunks
# ---------------------------------------------------------------------------


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_chunking_and_thread_count_do_not_change_bytes(monkeypatch):
    rows, cols, inits, densities = _mixed_case(1, 500)
    want = draw_weights(2**63 + 5, rows, cols, inits, densities)
    for chunk in (1, 100, 5000, 1 << 30):
        monkeypatch.setattr(W, "CHUNK_WEIGHTS", chunk)
        assert np.array_equal(draw_weights(2**63 + 5, rows, cols, inits, densities), want), chunk
    monkeypatch.setattr(W, "CHUNK_WEIGHTS", 64)
    for _ in thread_counts():
        assert np.array_equal(draw_weights(2**63 + 5, rows, cols, inits, densities), want)


_PLAN_DIGEST = """
import hashlib, sys, numba, numpy as np
from plurel_fast import Config
from plurel_fast.plan.database import plan_database
assert numba.get_num_threads() == int(sys.argv[2])
plan = plan_database(int(sys.argv[1]), Config())
h = hashlib.sha256()
for scm in plan.scms:
    for a in (scm.mlp.materialise().weights, scm.mlp.emb_weights, scm.mlp.layer_scale, scm.enc_tables):
        h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
"""


def test_plan_weights_are_identical_for_one_and_two_threads():
    seed = 3
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _PLAN_DIGEST, str(seed), str(threads)],
            env=dict(os.environ, NUMBA_NUM_THREADS=str(threads)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for threads in (1, 2)
    ]
    outputs = [run.communicate() for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err
    plan = plan_database(seed, Config())
    here = _digest(
        a for scm in plan.scms
        for a in (scm.mlp.materialise().weights, scm.mlp.emb_weights, scm.mlp.layer_scale, scm.enc_tables)
    )  # fmt: skip
    assert outputs[0][0].strip() == outputs[1][0].strip() == here


# ---------------------------------------------------------------------------
# the banks plan_scm fills: every decoder and encoder slot has its own MLP
# (and embedding table) of the right shape
# ---------------------------------------------------------------------------


def _check_scm_wiring(scm, p):
    mlp, emb, cats = scm.mlp, p.mlp_emb_dim, scm.num_categories
    encoders = {int(o): (int(e), int(m)) for e, m, o in scm.cat_encoders}
    mlps, tables = [], []
    for v in range(scm.num_nodes):
        if scm.is_source[v]:
            assert scm.dec_mlp[v] == -1 and scm.dec_emb[v] == -1
            continue
        mlps.append(int(scm.dec_mlp[v]))
        if cats[v] == 0:
            assert mlp.mlp_dims(mlps[-1]) == (emb, p.mlp_out_dim) and scm.dec_emb[v] == -1
        else:
            tables.append(int(scm.dec_emb[v]))
            assert mlp.mlp_dims(mlps[-1]) == (emb, emb)
            assert mlp.embedding_table(tables[-1]).shape == (cats[v], emb)

    def encoder(u, mlp_id, table):
        if cats[u] == 0:
            assert table == -1 and mlp.mlp_dims(int(mlp_id)) == (p.mlp_in_dim, emb)
            mlps.append(int(mlp_id))
        else:
            assert mlp_id == -1
            emb_id, enc_mlp = encoders[int(table)]
            assert mlp.embedding_table(emb_id).shape == (cats[u], emb)
            assert mlp.mlp_dims(enc_mlp) == (emb, emb)
            mlps.append(enc_mlp)
            tables.append(emb_id)

    for e, u in enumerate(scm.edge_src):
        encoder(u, scm.edge_mlp[e], scm.edge_table[e])
    for c in range(len(scm.children)):
        for i, u in enumerate(scm.col_nodes):
            encoder(u, scm.coll_mlp[c, i], scm.coll_table[c, i])
    assert sorted(mlps) == list(range(mlp.num_mlps))
    assert sorted(tables) == list(range(mlp.num_embeddings))
    assert len(encoders) == len(scm.cat_encoders)


@pytest.mark.parametrize("mode", ["type_eager", "type_lazy"])
def test_plan_scm_gives_every_slot_its_own_mlp(mode):
    config = Config(
        database_params=DatabaseParams(
            num_tables_choices=Choices("range", [3, 6]),
            num_rows_entity_table_choices=Choices("range", [40, 100]),
            num_rows_activity_table_choices=Choices("range", [40, 100]),
        ),
        scm_params=SCMParams(propagation_mode_choices=Choices("set", [mode])),
    )
    for seed in range(4):
        for scm in plan_database(seed, config).scms:
            assert scm.mode == mode
            _check_scm_wiring(scm, config.scm_params)


def _mlp_params(activations=("relu", "random_sine", "tanh"), inits=INIT_NAMES):
    """The MLP fields of SCMParams, unchecked (so that a bad name gets to the bank)."""
    return types.SimpleNamespace(
        mlp_num_layers_choices=Choices("range", [2, 4]),
        mlp_weight_density_choices=Choices("range", [0.3, 1.0]),
        initialization_choices=Choices("set", list(inits)),
        activation_choices=Choices("set", list(activations)),
    )


def test_add_mlp_is_add_mlps_of_one():
    params = _mlp_params()
    one, many = MlpBank(), MlpBank()
    one.add_mlp(np.random.default_rng(4), 1, 32, 5, params)
    ids = many.add_mlps(np.random.default_rng(4), [1], 32, [5], params)
    assert ids.tolist() == [0]
    a, b = one.freeze(), many.freeze()
    for field in MlpBankArrays.__struct_fields__:
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_add_mlps_draws_each_decision_with_its_law():
    # n MLPs planned at once: i.i.d. layer counts, inits, densities and
    # activations, random_sine parameters with the law of random_sine_params
    n = 4000
    params = _mlp_params()
    bank = MlpBank()
    rng = np.random.default_rng(6)
    in_dims, out_dims = rng.integers(1, 40, n), rng.integers(1, 40, n)
    ids = bank.add_mlps(rng, in_dims, 32, out_dims, params)
    assert ids.tolist() == list(range(n))
    emb = bank.add_embeddings(rng, np.full(n, 7), 32, params)
    assert emb.tolist() == list(range(n))
    frozen = bank.freeze()
    first, count = frozen.mlps.T
    assert stats.chisquare(np.bincount(count, minlength=5)[2:]).pvalue > P_MIN
    assert np.array_equal(frozen.layers[first, 1], in_dims)
    assert np.array_equal(frozen.layers[first + count - 1, 2], out_dims)
    assert stats.chisquare(np.bincount(frozen.layer_init, minlength=6)).pvalue > P_MIN
    assert stats.chisquare(np.bincount(frozen.emb_init, minlength=6)).pvalue > P_MIN
    d = frozen.layer_density.astype(np.float64)
    _ks_accepts_only_the_right_law(d, stats.uniform(0.3, 0.7).cdf, stats.uniform(0.3, 0.77).cdf)
    last = np.zeros(frozen.layers.shape[0], dtype=bool)
    last[first + count - 1] = True
    acts = frozen.layers[~last, 3]
    codes = [ACTIVATION_CODES[a] for a in ("relu", "random_sine", "tanh")]
    assert set(acts.tolist()) == set(codes) and np.all(frozen.layers[last, 3] == -1)
    assert stats.chisquare([(acts == c).sum() for c in codes]).pvalue > P_MIN
    # every random_sine layer points at its own block [m, a[m], f[m], phi[m]]
    sine = np.flatnonzero(frozen.layers[:, 3] == ACTIVATION_CODES["random_sine"])
    offsets = frozen.layers[sine, 4]
    ms = frozen.act_params[offsets].astype(np.int64)
    assert np.array_equal(np.diff(offsets), (1 + 3 * ms)[:-1]) and offsets[0] == 0
    assert frozen.act_params.size == offsets[-1] + 1 + 3 * ms[-1]
    assert np.all(frozen.layers[frozen.layers[:, 3] != ACTIVATION_CODES["random_sine"], 4] == -1)
    assert stats.chisquare(np.bincount(ms, minlength=8)[3:]).pvalue > P_MIN
    blocks = [frozen.act_params[o + 1 : o + 1 + 3 * m].reshape(3, m) for o, m in zip(offsets, ms)]
    amps, freqs, phases = (np.concatenate([b[i] for b in blocks]).astype(np.float64) for i in range(3))
    # (~10^4 values: the wrong laws are 10 % off)
    _ks_accepts_only_the_right_law(amps, stats.norm.cdf, stats.norm(scale=1.1).cdf)
    _ks_accepts_only_the_right_law(
        np.log(freqs), stats.uniform(math.log(0.1), math.log(100)).cdf,
        stats.uniform(math.log(0.1), 1.1 * math.log(100)).cdf,
    )  # fmt: skip
    _ks_accepts_only_the_right_law(
        phases, stats.uniform(0, 2 * math.pi).cdf, stats.uniform(0, 2 * math.pi * 1.1).cdf
    )


def test_add_mlps_checks_before_it_adds():
    bank = MlpBank()
    rng = np.random.default_rng(0)
    bank.add_mlps(rng, [1, 1], 32, [1, 1], _mlp_params())
    with pytest.raises(ValueError, match="activation_choices produced 'swish'"):
        bank.add_mlps(rng, [1] * 50, 32, [1] * 50, _mlp_params(activations=["relu", "swish"]))
    with pytest.raises(ValueError, match="in_dims and out_dims need one entry per MLP"):
        bank.add_mlps(rng, [1, 2], 32, [1], _mlp_params())
    with pytest.raises(ValueError, match="out_dims must be integers >= 1, got 0"):
        bank.add_mlps(rng, [1, 2], 32, [1, 0], _mlp_params())
    with pytest.raises(ValueError, match="num_categories must be integers >= 1"):
        bank.add_embeddings(rng, [3, -1], 32, _mlp_params())
    assert bank.num_mlps == 2 and bank.num_embeddings == 0
    assert bank.add_mlps(rng, [], 32, [], _mlp_params()).shape == (0,)
