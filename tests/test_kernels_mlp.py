"""MLPs and embedding tables (DESIGN §4.2): activations and forward passes against
the naive NumPy reference, init and density statistics, thread invariance,
argument errors, and the bulk drawing of ``MlpBank.freeze`` against the
per-matrix reference (``init_matrix`` then ``apply_density``).

Statistical tests use fixed seeds, so they are deterministic; their bounds are
5 standard deviations of the statistic (a correct implementation fails one
with probability below 1e-6 for a random seed).
"""

from __future__ import annotations

import hashlib
import math
import pickle
import sys
import types
from pathlib import Path

from numba import njit
import numpy as np
import pytest
from scipy import stats

from plurel_fast.config import Choices
from plurel_fast.kernels import mlp as K
from plurel_fast.kernels import weights as kernel_weights
from plurel_fast.plan.mlp import (
    ACTIVATION_CODES,
    INIT_CODES,
    INIT_NAMES,
    MlpBank,
    MlpBankArrays,
    apply_density,
    draw_matrices,
    init_matrix,
    random_sine_params,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive as naive_mlp  # noqa: E402  (tests/naive.py, not part of the package)
from conftest import digest_in_subprocess, thread_counts  # noqa: E402

SIGMAS = 5.0

ACTIVATIONS = [
    "relu", "elu", "selu", "silu", "softsign", "tanh", "sigmoid", "hardswish",
    "mish", "leaky_relu", "gelu", "softplus", "hardsigmoid", "hardtanh", "celu",
    "tanhshrink", "rrelu", "logsigmoid", "softshrink", "hardshrink", "identity",
    "abs", "sin", "cos", "sign", "clamp", "signed_log1p", "bent_identity",
    "random_sine",
]  # fmt: skip
# Exactly representable results: the kernel must agree bit for bit.
EXACT = {"relu", "hardtanh", "clamp", "identity", "abs", "sign", "hardshrink"}


def scm_params(
    num_layers=(2, 4), density=(0.3, 1.0), inits=INIT_NAMES, activations=ACTIVATIONS
):
    """Duck-typed stand-in for SCMParams with the MLP fields only."""
    return types.SimpleNamespace(
        mlp_num_layers_choices=Choices("range", list(num_layers)),
        mlp_weight_density_choices=Choices("range", [float(d) for d in density]),
        initialization_choices=Choices("set", list(inits)),
        activation_choices=Choices("set", list(activations)),
        mlp_emb_dim=32,
        mlp_in_dim=1,
        mlp_out_dim=1,
    )


def sine_params(seed=3):
    return random_sine_params(np.random.default_rng(seed))


def activation_grid():
    """float32 values: a dense middle, the thresholds, and large magnitudes."""
    middle = np.linspace(-12.0, 12.0, 4801)
    special = [0.0, 1e-30, 1e-8, 1e-4, 0.5, 0.50001, 1.0, 3.0, 6.0, 19.999, 20.0, 20.001,
               25.0, 50.0, 88.0, 89.0, 100.0, 1e3, 1e4, 1e5, 1e6]  # fmt: skip
    logs = np.logspace(-6, 6, 400)
    x = np.concatenate([middle, special, [-v for v in special], logs, -logs])
    return x.astype(np.float32)


# ---------------------------------------------------------------------------
# (a) activations
# ---------------------------------------------------------------------------


def test_activation_codes_follow_spec_order():
    assert list(K.ACTIVATION_NAMES) == ACTIVATIONS
    assert ACTIVATION_CODES == {name: i for i, name in enumerate(ACTIVATIONS)}
    assert set(naive_mlp.NAIVE_ACTIVATIONS) | {"random_sine"} == set(ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_naive(name):
    x = activation_grid()
    params = sine_params() if name == "random_sine" else None
    got = K.apply_activation(name, x, params, 0 if params is not None else -1)
    want = naive_mlp.naive_activation(name, x, params)
    assert got.dtype == np.float32
    assert np.all(np.isfinite(got)), x[~np.isfinite(got)]
    if name in EXACT:
        assert np.array_equal(got, want.astype(np.float32))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_random_sine_reference_rounds_its_argument_like_fma32():
    # naive_random_sine forms f x + phi with one rounding, as the kernel's fma32
    from plurel_fast.kernels.simd import fma32

    @njit
    def kernel_fma(a, x, b):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = fma32(a, x[i], b)
        return out

    rng = np.random.default_rng(2)
    x = (rng.standard_normal(200_000) * np.exp(rng.uniform(-5, 14, 200_000))).astype(np.float32)
    for a, b in ((np.float32(0.37), np.float32(5.1)), (np.float32(9.9), np.float32(0.01))):
        want = kernel_fma(a, x, b)
        assert np.array_equal(naive_mlp.fma_float32(a, x, b), want)
        # and it is not the twice-rounded a * x + b
        assert not np.array_equal((a * x) + b, want)
    # the float64 sum lands on a float32 midpoint (the true value is 2^-48
    # below it) and ties-to-even would round it up
    a, b = np.float32(2**-16 + 2**-32), np.float32(256 + 2**-15)
    x = np.array([1 - 2**-16], dtype=np.float32)
    assert np.float32(np.float64(a) * np.float64(x[0]) + np.float64(b)) == np.float32(256 + 2**-14)
    assert naive_mlp.fma_float32(a, x, b)[0] == kernel_fma(a, x, b)[0] == np.float32(256 + 2**-15)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_finite_on_hidden_range(name):
    # Pre-activations of hidden layers can be anything the clamp lets through
    # times weights; every value in [-1e6, 1e6] (and well beyond) stays finite.
    x = np.concatenate(
        [np.linspace(-1e6, 1e6, 20001), np.logspace(-45, 8, 500), -np.logspace(-45, 8, 500)]
    ).astype(np.float32)
    params = sine_params(7) if name == "random_sine" else None
    got = K.apply_activation(name, x, params, 0 if params is not None else -1)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_tile_activation_equals_scalar_activation(name):
    # 1 -> 1 -> 1 MLP with unit weights: the output is clamp(s * act(x)), computed
    # by the tile path, which must agree bit for bit with the scalar ``activate``.
    bank = MlpBank()
    params = sine_params(11) if name == "random_sine" else None
    scale = np.float32(1.7)
    mlp = bank.add_mlp_layers([[[1.0]], [[1.0]]], [name], [scale], [params])
    frozen = bank.freeze()
    x = activation_grid()
    got = K.mlp_forward(frozen, mlp, x[:, None])[:, 0]
    scalar = K.apply_activation(name, x, frozen.act_params, int(frozen.layers[0, 4]))
    want = np.clip(scale * scalar, np.float32(-1e6), np.float32(1e6))
    assert np.array_equal(got, want)


# ---------------------------------------------------------------------------
# (b) forward passes against the naive reference
# ---------------------------------------------------------------------------


def _assert_forward_close(bank, mlp, x, names=ACTIVATIONS):
    got = K.mlp_forward(bank, mlp, x)
    want = naive_mlp.naive_mlp_forward(bank, mlp, x, names)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.all(np.isfinite(got))
    # rtol 1e-4 relative to the magnitude of this MLP's outputs
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_every_activation(name):
    rng = np.random.default_rng(ACTIVATIONS.index(name))
    bank = MlpBank()
    dims = [1, 32, 32, 1]
    mats = [init_matrix(rng, "xavier_uniform", dims[i], dims[i + 1]) for i in range(3)]
    params = [random_sine_params(rng) if name == "random_sine" else None for _ in range(2)]
    mlp = bank.add_mlp_layers(mats, [name, name], [0.8, 2.2], params)
    frozen = bank.freeze()
    x = rng.standard_normal((301, 1)).astype(np.float32) * 3
    _assert_forward_close(frozen, mlp, x)


def test_forward_random_banks_cover_inits_layers_and_dims():
    rng = np.random.default_rng(2024)
    params = scm_params(num_layers=(1, 4))
    bank = MlpBank()
    shapes = [(1, 32, 1), (32, 32, 32), (1, 32, 32), (32, 32, 1), (3, 5, 2)]
    mlps = [(bank.add_mlp(rng, *shape, params), shape) for shape in shapes for _ in range(12)]
    frozen = bank.freeze()
    # the draws reached every init, every layer count and every activation
    assert set(frozen.layer_init.tolist()) == set(range(len(INIT_NAMES)))
    assert set(frozen.mlps[:, 1].tolist()) == {1, 2, 3, 4}
    hidden_codes = frozen.layers[:, 3][frozen.layers[:, 3] >= 0]
    assert len(set(hidden_codes.tolist())) >= 25
    for mlp, (in_dim, _, out_dim) in mlps:
        assert frozen.mlp_dims(mlp) == (in_dim, out_dim)
        x = rng.standard_normal((97, in_dim)).astype(np.float32)
        _assert_forward_close(frozen, mlp, x)


def test_forward_single_linear_layer_is_a_matmul():
    rng = np.random.default_rng(5)
    bank = MlpBank()
    w = rng.standard_normal((32, 7)).astype(np.float32)
    mlp = bank.add_mlp_layers([w], [])
    x = rng.standard_normal((130, 32)).astype(np.float32)
    got = K.mlp_forward(bank.freeze(), mlp, x)
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


def test_hidden_clamp():
    bank = MlpBank()
    mlp = bank.add_mlp_layers([[[1e4]], [[1.0]]], ["identity"], [2.0])
    x = np.array([[-1e3], [-10.0], [0.0], [10.0], [1e3]], dtype=np.float32)
    got = K.mlp_forward(bank.freeze(), mlp, x)[:, 0]
    assert got.tolist() == [-1e6, -2e5, 0.0, 2e5, 1e6]


def test_forward_of_zero_rows():
    bank = MlpBank()
    mlp = bank.add_mlp(np.random.default_rng(0), 1, 32, 3, scm_params())
    out = K.mlp_forward(bank.freeze(), mlp, np.zeros((0, 1), dtype=np.float32))
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_several_mlps_in_one_bank_are_independent():
    rng = np.random.default_rng(9)
    params = scm_params()
    single = []
    bank = MlpBank()
    for i in range(4):
        seed_rng = np.random.default_rng(100 + i)
        alone = MlpBank()
        alone_id = alone.add_mlp(seed_rng, 1, 32, 1, params)
        single.append((alone.freeze(), alone_id))
        bank.add_mlp(np.random.default_rng(100 + i), 1, 32, 1, params)
    frozen = bank.freeze()
    x = rng.standard_normal((50, 1)).astype(np.float32)
    for mlp, (alone, alone_id) in enumerate(single):
        assert np.array_equal(K.mlp_forward(frozen, mlp, x), K.mlp_forward(alone, alone_id, x))


# ---------------------------------------------------------------------------
# (c) embedding tables: categorical decode and lookup
# ---------------------------------------------------------------------------


def test_categorical_decode_matches_naive():
    rng = np.random.default_rng(77)
    params = scm_params()
    bank = MlpBank()
    tables = [bank.add_embedding(rng, int(rng.integers(2, 11)), 32, params) for _ in range(12)]
    frozen = bank.freeze()
    assert set(frozen.emb_init.tolist()) <= set(range(len(INIT_NAMES)))
    for emb in tables:
        h = rng.standard_normal((500, 32)).astype(np.float32)
        got = K.categorical_decode(frozen, emb, h)
        want, sims = naive_mlp.naive_categorical_decode(frozen, emb, h)
        top2 = np.sort(sims, axis=1)[:, -2:]
        # float32 accumulation may only flip near-ties
        clear = (top2[:, 1] - top2[:, 0]) > 1e-5 * (1.0 + np.abs(sims).max(axis=1))
        assert clear.mean() > 0.95
        assert np.array_equal(got[clear], want[clear])
        assert got.min() >= 0 and got.max() < frozen.emb_offsets[emb, 1]


def test_categorical_decode_takes_first_maximum_on_ties():
    bank = MlpBank()
    table = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    emb = bank.add_embedding_table(table)
    h = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    got = K.categorical_decode(bank.freeze(), emb, h)
    # row 2: all similarities 0 -> 0; row 3: all 1 except the last, tie -> 0
    assert got.tolist() == [1, 0, 0, 0]


def test_embedding_lookup_and_table_views():
    rng = np.random.default_rng(4)
    bank = MlpBank()
    a = bank.add_embedding(rng, 3, 32, scm_params())
    b = bank.add_embedding(rng, 7, 32, scm_params())
    frozen = bank.freeze()
    assert frozen.emb_offsets.tolist() == [[0, 3, 32], [96, 7, 32]]
    labels = rng.integers(0, 7, size=1000)
    got = K.embedding_lookup(frozen, b, labels)
    assert np.array_equal(got, frozen.embedding_table(b)[labels])
    assert frozen.embedding_table(a).shape == (3, 32)


# ---------------------------------------------------------------------------
# (d) init and density statistics
# ---------------------------------------------------------------------------


def _check_second_moment(w, var, fourth):
    """mean(w^2) vs var with a bound from the sampling sd sqrt((E w^4 - var^2)/n)."""
    w = w.astype(np.float64).ravel()
    n = w.size
    assert abs(w.mean()) < SIGMAS * math.sqrt(var / n)
    assert abs(np.mean(w**2) - var) < SIGMAS * math.sqrt((fourth - var**2) / n)


@pytest.mark.parametrize("name", ["kaiming_normal", "xavier_normal"])
@pytest.mark.parametrize("rows, cols", [(300, 400), (2000, 32), (1, 5000)])
def test_normal_inits(name, rows, cols):
    w = init_matrix(np.random.default_rng(rows + cols), name, rows, cols)
    assert w.shape == (rows, cols) and w.dtype == np.float32
    fan_in, fan_out = cols, rows
    var = 2.0 / fan_in if name == "kaiming_normal" else 2.0 / (fan_in + fan_out)
    _check_second_moment(w, var, 3 * var**2)


@pytest.mark.parametrize("name", ["kaiming_uniform", "xavier_uniform"])
@pytest.mark.parametrize("rows, cols", [(300, 400), (2000, 32), (1, 5000)])
def test_uniform_inits(name, rows, cols):
    w = init_matrix(np.random.default_rng(rows * cols), name, rows, cols)
    fan_in, fan_out = cols, rows
    bound = math.sqrt(6.0 / fan_in) if name == "kaiming_uniform" else math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= np.float32(bound)
    # the bound is reached: P(max |w| < b (1 - 20/n)) = (1 - 20/n)^n ~ e^-20
    assert np.abs(w).max() > bound * (1.0 - 20.0 / w.size)
    _check_second_moment(w, bound**2 / 3.0, bound**4 / 5.0)


def test_trunc_normal_init():
    w = init_matrix(np.random.default_rng(1), "trunc_normal", 400, 300)
    assert np.abs(w).max() <= 2.0
    dist = stats.truncnorm(-2.0, 2.0)
    assert abs(dist.var() - 0.7737413) < 1e-6
    _check_second_moment(w, dist.var(), dist.moment(4))
    # and the shape is the truncated normal's, not just its variance
    assert stats.kstest(w.ravel()[:20000], dist.cdf).pvalue > 1e-6


@pytest.mark.parametrize("rows, cols", [(7, 5), (400, 300), (1, 40), (33, 32)])
def test_sparse_init(rows, cols):
    w = init_matrix(np.random.default_rng(rows), "sparse", rows, cols)
    zeros = (w == 0).sum(axis=0)
    assert np.all(zeros == math.ceil(0.5 * rows))
    nonzero = w[w != 0].astype(np.float64)
    if nonzero.size > 1000:
        _check_second_moment(nonzero, 0.01**2, 3 * 0.01**4)
    # zeroed rows differ between columns
    if rows > 10 and cols > 10:
        patterns = {tuple(np.flatnonzero(w[:, j] == 0)) for j in range(cols)}
        assert len(patterns) > cols // 2


def test_embedding_init_uses_dim_as_fan_in():
    # kaiming_normal on (categories, 32): var 2/32 whatever the category count
    bank = MlpBank()
    rng = np.random.default_rng(8)
    emb = bank.add_embedding(rng, 5000, 32, scm_params(inits=["kaiming_normal"]))
    table = bank.freeze().embedding_table(emb)
    _check_second_moment(table, 2.0 / 32, 3 * (2.0 / 32) ** 2)


def test_unknown_init_name():
    with pytest.raises(ValueError, match="unknown initialization 'orthogonal'"):
        init_matrix(np.random.default_rng(0), "orthogonal", 3, 3)


@pytest.mark.parametrize("density", [0.3, 0.55, 0.97, 1.0])
def test_density_mask(density):
    w = np.ones((500, 400), dtype=np.float32)
    got = apply_density(np.random.default_rng(int(density * 100)), w, density)
    n = w.size
    zero_frac = float((got == 0).mean())
    assert abs(zero_frac - (1.0 - density)) <= SIGMAS * math.sqrt(density * (1 - density) / n)
    assert np.all(got[got != 0] == np.float32(1.0 / density))


def test_density_mask_inside_add_mlp():
    # kaiming_uniform has no zeros of its own: the zeros are the mask's, and
    # the kept entries times d fall back inside the init's bound.
    rng = np.random.default_rng(31)
    params = scm_params(num_layers=(3, 3), inits=["kaiming_uniform"])
    bank = MlpBank()
    for _ in range(10):
        bank.add_mlp(rng, 32, 32, 32, params)
    frozen = bank.freeze()
    for layer in range(frozen.layers.shape[0]):
        w = frozen.weight_matrix(layer)
        d = float(frozen.layer_density[layer])
        assert 0.3 <= d <= 1.0
        zero_frac = float((w == 0).mean())
        assert abs(zero_frac - (1 - d)) <= SIGMAS * math.sqrt(d * (1 - d) / w.size) + 1e-12
        bound = math.sqrt(6.0 / w.shape[1])
        assert np.abs(w).max() * d <= bound * (1 + 1e-6)


# ---------------------------------------------------------------------------
# (e) structure drawn by add_mlp
# ---------------------------------------------------------------------------


def test_add_mlp_structure():
    rng = np.random.default_rng(123)
    params = scm_params(activations=["random_sine", "tanh", "relu"])
    bank = MlpBank()
    for _ in range(200):
        bank.add_mlp(rng, 1, 32, 1, params)
    frozen = bank.freeze()
    assert frozen.mlps.shape == (200, 2)
    assert set(frozen.mlps[:, 1].tolist()) == {2, 3, 4}
    lo, hi = np.float32(math.exp(-1.0)), np.float32(math.exp(1.0))
    sine_layers = 0
    for first, count in frozen.mlps.tolist():
        rows = frozen.layers[first : first + count]
        widths = [int(rows[0, 1])] + rows[:, 2].tolist()
        assert widths == [1] + [32] * (count - 1) + [1]
        assert np.all(rows[1:, 1] == rows[:-1, 2])
        assert rows[-1, 3] == -1 and rows[-1, 4] == -1 and frozen.layer_scale[first + count - 1] == 1
        for layer in range(first, first + count - 1):
            code, p_off = int(frozen.layers[layer, 3]), int(frozen.layers[layer, 4])
            assert lo <= frozen.layer_scale[layer] <= hi
            if code == ACTIVATION_CODES["random_sine"]:
                sine_layers += 1
                m = int(frozen.act_params[p_off])
                assert 3 <= m <= 7
                freqs = frozen.act_params[p_off + 1 + m : p_off + 1 + 2 * m]
                phases = frozen.act_params[p_off + 1 + 2 * m : p_off + 1 + 3 * m]
                assert np.all((freqs >= np.float32(0.1) * (1 - 1e-6)) & (freqs <= np.float32(10.0) * (1 + 1e-6)))
                assert np.all((phases >= 0) & (phases <= np.float32(2 * math.pi)))
            else:
                assert p_off == -1
    assert sine_layers > 50
    # weight offsets tile the weight array exactly
    sizes = frozen.layers[:, 1] * frozen.layers[:, 2]
    assert np.array_equal(frozen.layers[:, 0], np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    assert frozen.weights.size == sizes.sum()


def test_random_sine_parameter_laws():
    rng = np.random.default_rng(0)
    ms, amps, log_freqs, phases = [], [], [], []
    for _ in range(3000):
        p = random_sine_params(rng)
        m = int(p[0])
        ms.append(m)
        amps.extend(p[1 : 1 + m])
        log_freqs.extend(np.log(p[1 + m : 1 + 2 * m].astype(np.float64)))
        phases.extend(p[1 + 2 * m :])
    assert set(ms) == {3, 4, 5, 6, 7}
    assert stats.chisquare(np.bincount(ms)[3:]).pvalue > 1e-6
    assert stats.kstest(amps, "norm").pvalue > 1e-6
    assert stats.kstest(log_freqs, stats.uniform(math.log(0.1), math.log(100.0)).cdf).pvalue > 1e-6
    assert stats.kstest(phases, stats.uniform(0, 2 * math.pi).cdf).pvalue > 1e-6


def test_add_mlp_draw_order_is_fixed():
    params = scm_params()
    a, b = MlpBank(), MlpBank()
    a.add_mlp(np.random.default_rng(5), 1, 32, 1, params)
    b.add_mlp(np.random.default_rng(5), 1, 32, 1, params)
    fa, fb = a.freeze(), b.freeze()
    for field in ("weights", "layers", "layer_scale", "act_params", "mlps"):
        assert np.array_equal(getattr(fa, field), getattr(fb, field))


def test_bank_pickles_and_prints():
    rng = np.random.default_rng(1)
    bank = MlpBank()
    mlp = bank.add_mlp(rng, 1, 32, 1, scm_params())
    bank.add_embedding(rng, 4, 32, scm_params())
    frozen = bank.freeze()
    again = pickle.loads(pickle.dumps(frozen))
    assert isinstance(again, MlpBankArrays)
    x = np.linspace(-3, 3, 50, dtype=np.float32)[:, None]
    assert np.array_equal(K.mlp_forward(again, mlp, x), K.mlp_forward(frozen, mlp, x))
    text = repr(frozen)
    assert text.startswith("MlpBankArrays(1 mlps") and len(text) < 200
    assert "layer" in frozen.describe(mlp)
    empty = MlpBank().freeze()
    assert empty.num_mlps == 0 and empty.num_embeddings == 0


# ---------------------------------------------------------------------------
# (f) thread and tiling invariance
# ---------------------------------------------------------------------------


def _invariance_case():
    rng = np.random.default_rng(99)
    bank = MlpBank()
    mlp = bank.add_mlp_layers(
        [init_matrix(rng, "kaiming_normal", *shape) for shape in [(1, 32), (32, 32), (32, 32), (32, 1)]],
        ["gelu", "random_sine", "tanh"],
        [1.3, 0.7, 2.0],
        [None, random_sine_params(rng), None],
    )
    mlp2 = bank.add_mlp(rng, 32, 32, 32, scm_params(num_layers=(4, 4)))
    x = (rng.standard_normal((9001, 1)) * 2).astype(np.float32)
    x2 = rng.standard_normal((9001, 32)).astype(np.float32)
    return bank.freeze(), mlp, mlp2, x, x2


_THREAD_SCRIPT = """
import hashlib, pickle, sys, numba
from plurel_fast.kernels.mlp import mlp_forward
assert numba.get_num_threads() == 1
bank, mlp, mlp2, x, x2 = pickle.load(open(sys.argv[1], "rb"))
h = hashlib.sha256(mlp_forward(bank, mlp, x).tobytes())
h.update(mlp_forward(bank, mlp2, x2).tobytes())
print(h.hexdigest())
"""


def test_tiling_and_thread_invariance(tmp_path):
    bank, mlp, mlp2, x, x2 = _invariance_case()
    here, here2 = K.mlp_forward(bank, mlp, x), K.mlp_forward(bank, mlp2, x2)
    for tile_rows in (1, 3, 17, 64, 5000):
        assert np.array_equal(K.mlp_forward(bank, mlp, x, tile_rows=tile_rows), here)
        assert np.array_equal(K.mlp_forward(bank, mlp2, x2, tile_rows=tile_rows), here2)
    # any row range alone gives the same rows
    assert np.array_equal(K.mlp_forward(bank, mlp2, x2[4093:4101]), here2[4093:4101])
    # a single-threaded process
    case = tmp_path / "case.pkl"
    case.write_bytes(pickle.dumps((bank, mlp, mlp2, x, x2)))
    h = hashlib.sha256(here.tobytes())
    h.update(here2.tobytes())
    assert digest_in_subprocess(_THREAD_SCRIPT, case) == h.hexdigest()
    # and in this process at every thread count numba allows
    for _ in thread_counts():
        assert np.array_equal(K.mlp_forward(bank, mlp2, x2), here2)


# ---------------------------------------------------------------------------
# (g) bad inputs
# ---------------------------------------------------------------------------


def test_forward_argument_errors():
    bank = MlpBank()
    mlp = bank.add_mlp(np.random.default_rng(0), 1, 32, 1, scm_params())
    frozen = bank.freeze()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1\)"):
        K.mlp_forward(frozen, mlp, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1\)"):
        K.mlp_forward(frozen, mlp, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="mlp_id=1 is out of range: the bank has 1 MLPs"):
        K.mlp_forward(frozen, 1, np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError, match="mlp_id must be an integer"):
        K.mlp_forward(frozen, 0.0, np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError, match="numeric array"):
        K.mlp_forward(frozen, mlp, np.array([["a"]]))
    with pytest.raises(ValueError, match="tile_rows must be >= 1"):
        K.mlp_forward(frozen, mlp, np.zeros((4, 1)), tile_rows=0)
    # float64 input is accepted and converted
    assert K.mlp_forward(frozen, mlp, np.zeros((4, 1))).dtype == np.float32


def test_decode_and_lookup_argument_errors():
    bank = MlpBank()
    emb = bank.add_embedding(np.random.default_rng(0), 3, 32, scm_params())
    frozen = bank.freeze()
    with pytest.raises(ValueError, match=r"h must have shape \(N, 32\)"):
        K.categorical_decode(frozen, emb, np.zeros((2, 31)))
    with pytest.raises(ValueError, match="emb_id=2 is out of range"):
        K.categorical_decode(frozen, 2, np.zeros((2, 32)))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        K.embedding_lookup(frozen, emb, np.array([0, 3]))
    with pytest.raises(ValueError, match="1-D integer array"):
        K.embedding_lookup(frozen, emb, np.array([0.0]))


def test_bad_params_are_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="activation_choices produced 'swish'"):
        MlpBank().add_mlp(rng, 1, 32, 1, scm_params(num_layers=(2, 2), activations=["swish"]))
    with pytest.raises(ValueError, match="initialization_choices produced 'orthogonal'"):
        MlpBank().add_mlp(rng, 1, 32, 1, scm_params(inits=["orthogonal"]))
    with pytest.raises(ValueError, match="mlp_num_layers_choices produced 0"):
        MlpBank().add_mlp(rng, 1, 32, 1, scm_params(num_layers=(0, 0)))
    with pytest.raises(ValueError, match="density must be in"):
        MlpBank().add_mlp(rng, 1, 32, 1, scm_params(density=(0.0, 0.0)))
    with pytest.raises(ValueError, match="in_dim must be an integer >= 1"):
        MlpBank().add_mlp(rng, 0, 32, 1, scm_params())
    with pytest.raises(ValueError, match="need 1 activations, got 0"):
        MlpBank().add_mlp_layers([np.ones((1, 2)), np.ones((2, 1))], [])
    with pytest.raises(ValueError, match="has 3 input rows but the previous layer outputs 2"):
        MlpBank().add_mlp_layers([np.ones((1, 2)), np.ones((3, 1))], ["relu"])
    with pytest.raises(ValueError, match="random_sine but has no act_params"):
        MlpBank().add_mlp_layers([np.ones((1, 2)), np.ones((2, 1))], ["random_sine"])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        K.apply_activation("swish", np.zeros(3))


# ---------------------------------------------------------------------------
# (h) bulk drawing by freeze against the per-matrix reference
# ---------------------------------------------------------------------------

BOUND = {
    "kaiming_uniform": lambda rows, cols: math.sqrt(6.0 / cols),
    "xavier_uniform": lambda rows, cols: math.sqrt(6.0 / (rows + cols)),
    "trunc_normal": lambda rows, cols: 2.0,
}


@pytest.mark.parametrize("name", INIT_NAMES)
def test_bulk_draws_match_per_matrix_reference(name):
    # Same law as init_matrix + apply_density, layer by layer and for tables.
    # Entries of one matrix share its d, so pooling them is not an iid sample
    # of the mixture; instead: the kept entries times their own d pool to the
    # init's law (two-sample KS against init_matrix), and the kept counts are
    # Binomial(candidates, d) per matrix (candidates: all entries but sparse's
    # ceil(rows / 2) zeros per column).
    count = 150
    params = scm_params(num_layers=(3, 3), density=(0.3, 1.0), inits=[name])
    rng = np.random.default_rng(INIT_NAMES.index(name))
    bank = MlpBank()
    mlps = [bank.add_mlp(rng, 1, 32, 5, params) for _ in range(count)]
    tables = [bank.add_embedding(rng, 7, 32, params) for _ in range(count)]
    frozen = bank.freeze()
    ref_rng = np.random.default_rng(1000 + INIT_NAMES.index(name))
    for position, (rows, cols) in enumerate([(1, 32), (32, 32), (32, 5)]):
        layers = frozen.mlps[mlps, 0] + position
        bulk = np.stack([frozen.weight_matrix(int(layer)) for layer in layers])
        assert bulk.shape == (count, rows, cols) and bulk.dtype == np.float32
        d = frozen.layer_density[layers].astype(np.float64)
        assert np.all((d >= 0.3) & (d <= 1.0)) and np.unique(d).size == count
        unmasked = bulk * d[:, None, None]
        ref = np.stack([init_matrix(ref_rng, name, rows, cols) for _ in range(count)])
        if rows > 1 or name != "sparse":  # a 1-row sparse matrix is all zeros
            got = unmasked[bulk != 0]
            assert stats.ks_2samp(got, ref[ref != 0]).pvalue > 1e-6, (name, rows, cols)
        if name in BOUND:
            assert np.abs(unmasked).max() <= BOUND[name](rows, cols) * (1 + 1e-6)
        candidates = rows * cols
        if name == "sparse":
            assert np.all((bulk == 0).sum(axis=1) >= math.ceil(rows / 2))
            candidates = (rows - math.ceil(rows / 2)) * cols
        kept = (bulk != 0).sum()
        mean, var = candidates * d.sum(), candidates * (d * (1 - d)).sum()
        assert abs(kept - mean) <= SIGMAS * math.sqrt(var) + 1e-9, (name, rows, cols)
    bulk = np.stack([frozen.embedding_table(t) for t in tables])
    ref = np.stack([init_matrix(ref_rng, name, 7, 32) for _ in range(count)])
    assert stats.ks_2samp(bulk.ravel(), ref.ravel()).pvalue > 1e-6, (name, "table")
    if name == "sparse":
        assert np.all((bulk == 0).sum(axis=1) == 4)
    else:
        assert np.all(bulk != 0)  # tables have no mask
    assert np.all(frozen.emb_init == INIT_CODES[name])


@pytest.mark.parametrize("name", INIT_NAMES)
def test_bulk_draws_match_reference_at_one_density(name):
    # With one d for every matrix the pooled entries, zeros included, are a
    # sample of one law: compare them as a whole.
    params = scm_params(num_layers=(2, 2), density=(0.6, 0.6), inits=[name])
    rng = np.random.default_rng(50 + INIT_NAMES.index(name))
    bank = MlpBank()
    for _ in range(60):
        bank.add_mlp(rng, 32, 32, 32, params)
    bulk = bank.freeze().weights  # 120 matrices 32 x 32, one after another
    ref_rng = np.random.default_rng(60 + INIT_NAMES.index(name))
    ref = np.concatenate([
        apply_density(ref_rng, init_matrix(ref_rng, name, 32, 32), 0.6).ravel() for _ in range(120)
    ])  # fmt: skip
    assert bulk.size == ref.size
    assert stats.ks_2samp(bulk, ref).pvalue > 1e-6


def test_bulk_sparse_zero_rows_are_uniform_subsets():
    # 4 rows: each column zeroes exactly 2, each of the 6 pairs equally
    # likely, columns independent of each other.
    rng = np.random.default_rng(12)
    w = draw_matrices(rng, [4] * 3000, [8] * 3000, [INIT_CODES["sparse"]] * 3000).reshape(3000, 4, 8)
    zero = w == 0
    assert np.all(zero.sum(axis=1) == 2)
    pair = {p: i for i, p in enumerate([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])}
    rows_of = np.argsort(~zero, axis=1, kind="stable")[:, :2, :]  # the two zero rows, sorted
    codes = np.vectorize(lambda a, b: pair[(a, b)])(rows_of[:, 0, :], rows_of[:, 1, :])
    assert stats.chisquare(np.bincount(codes.ravel(), minlength=6)).pvalue > 1e-6
    joint = codes[:, 0] * 6 + codes[:, 1]
    assert stats.chisquare(np.bincount(joint, minlength=36)).pvalue > 1e-6
    # odd and tiny row counts: ceil(rows / 2) zeros per column, nothing else zero
    for rows in (1, 2, 7, 33):
        w = draw_matrices(rng, [rows] * 20, [5] * 20, [INIT_CODES["sparse"]] * 20)
        zeros = (w.reshape(20, rows, 5) == 0).sum(axis=1)
        assert np.all(zeros == math.ceil(rows / 2)), rows


def test_bulk_trunc_normal_shape():
    rng = np.random.default_rng(21)
    w = draw_matrices(rng, [200] * 10, [100] * 10, [INIT_CODES["trunc_normal"]] * 10).astype(np.float64)
    assert np.abs(w).max() <= 2.0
    dist = stats.truncnorm(-2.0, 2.0)
    _check_second_moment(w, dist.var(), dist.moment(4))
    assert stats.kstest(w[:50000], dist.cdf).pvalue > 1e-6


@pytest.mark.parametrize("chunk", [1, 100, 1000, 1 << 18])
def test_bulk_chunking_keeps_layout_and_law(chunk, monkeypatch):
    # Chunks (the threads' units of work) hold whole matrices and enter no
    # draw: any chunk size, even below one matrix, gives the same bytes, and
    # every matrix its own shape, init and density.
    shapes = [(32, 32), (1, 32), (32, 1), (3, 40), (33, 9)] * 40
    rows, cols = np.array(shapes).T
    inits = np.arange(len(shapes)) % len(INIT_NAMES)
    densities = np.linspace(0.3, 1.0, len(shapes))
    reference = draw_matrices(np.random.default_rng(5), rows, cols, inits, densities)
    monkeypatch.setattr(kernel_weights, "CHUNK_WEIGHTS", chunk)
    flat = draw_matrices(np.random.default_rng(5), rows, cols, inits, densities)
    assert np.array_equal(flat, reference)
    assert flat.dtype == np.float32 and flat.size == (rows * cols).sum()
    offsets = np.concatenate([[0], np.cumsum(rows * cols)])
    kept_frac, expected = [], []
    for k, (r, c) in enumerate(shapes):
        w = flat[offsets[k] : offsets[k + 1]].reshape(r, c)
        name, d = INIT_NAMES[inits[k]], densities[k]
        if name in BOUND:
            assert np.abs(w).max() * d <= BOUND[name](r, c) * (1 + 1e-6)
        if name == "sparse":
            assert np.all((w == 0).sum(axis=0) >= math.ceil(r / 2))
        else:
            kept_frac.append((w != 0).sum())
            expected.append((w.size, d))
    # kept counts across the non-sparse matrices: sum of Binomial(size, d)
    n = np.array([s for s, _ in expected])
    p = np.array([d for _, d in expected])
    mean, var = (n * p).sum(), (n * p * (1 - p)).sum()
    assert abs(sum(kept_frac) - mean) < SIGMAS * math.sqrt(var)


def test_bulk_draws_are_a_function_of_the_generator_state():
    args = ([32] * 50, [32] * 50, np.arange(50) % 6, np.full(50, 0.7))
    a = draw_matrices(np.random.default_rng(3), *args)
    b = draw_matrices(np.random.default_rng(3), *args)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, draw_matrices(np.random.default_rng(4), *args))


def test_freeze_is_idempotent_and_incremental():
    params = scm_params()
    rng = np.random.default_rng(17)
    bank = MlpBank()
    first = bank.add_mlp(rng, 1, 32, 1, params)
    given = [np.full((32, 4), 0.25, np.float32), np.full((4, 3), -2.0, np.float32)]
    hand = bank.add_mlp_layers(given, ["tanh"], [1.5])
    table = bank.add_embedding(rng, 6, 32, params)
    given_table = bank.add_embedding_table(np.arange(12, dtype=np.float32).reshape(4, 3))
    one = bank.freeze()
    two = bank.freeze()
    for field in MlpBankArrays.__struct_fields__:
        assert np.array_equal(getattr(one, field), getattr(two, field)), field
    # given weights sit exactly where their layers and tables say
    h0 = int(one.mlps[hand, 0])
    assert np.array_equal(one.weight_matrix(h0), given[0])
    assert np.array_equal(one.weight_matrix(h0 + 1), given[1])
    assert one.layer_scale[h0] == np.float32(1.5) and one.layer_init[h0] == -1
    assert np.array_equal(one.embedding_table(given_table), np.arange(12).reshape(4, 3))
    # adding after a freeze draws only the new parts; the old ones stay
    later = bank.add_mlp(rng, 32, 32, 32, params)
    three = bank.freeze()
    assert np.array_equal(three.weights[: one.weights.size], one.weights)
    assert np.array_equal(three.emb_weights, one.emb_weights)
    assert np.array_equal(three.layer_scale[: one.layer_scale.size], one.layer_scale)
    assert three.mlp_dims(later) == (32, 32) and three.mlp_dims(first) == (1, 1)
    assert three.embedding_table(table).shape == (6, 32)
    assert np.all(np.isfinite(three.layer_scale))


def test_bank_with_interleaved_generators():
    # Each MLP's weights come from its own generator: interleaving two
    # generators in one bank gives what each gives alone.
    params = scm_params()
    bank, alone_a, alone_b = MlpBank(), MlpBank(), MlpBank()
    ra, rb = np.random.default_rng(1), np.random.default_rng(2)
    ra2, rb2 = np.random.default_rng(1), np.random.default_rng(2)
    ids = []
    for i in range(6):
        if i % 2 == 0:
            ids.append((bank.add_mlp(ra, 1, 32, 1, params), alone_a, alone_a.add_mlp(ra2, 1, 32, 1, params)))
        else:
            ids.append((bank.add_mlp(rb, 1, 32, 1, params), alone_b, alone_b.add_mlp(rb2, 1, 32, 1, params)))
    frozen, fa, fb = bank.freeze(), alone_a.freeze(), alone_b.freeze()
    for mlp, alone, alone_id in ids:
        other = fa if alone is alone_a else fb
        first, count = frozen.mlps[mlp]
        other_first, other_count = other.mlps[alone_id]
        assert count == other_count
        for layer in range(count):
            assert np.array_equal(
                frozen.weight_matrix(first + layer), other.weight_matrix(other_first + layer)
            )
            assert frozen.layer_scale[first + layer] == other.layer_scale[other_first + layer]


def test_failed_add_mlp_leaves_the_bank_unchanged():
    rng = np.random.default_rng(0)
    bank = MlpBank()
    bank.add_mlp(rng, 1, 32, 1, scm_params())
    before = bank.freeze()
    with pytest.raises(ValueError, match="activation_choices produced 'swish'"):
        bank.add_mlp(rng, 1, 32, 1, scm_params(num_layers=(3, 3), activations=["swish"]))
    after = bank.freeze()
    assert after.num_mlps == 1 and after.layers.shape == before.layers.shape
    assert np.array_equal(after.weights, before.weights)


def test_draw_matrices_argument_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="one entry per matrix"):
        draw_matrices(rng, [2, 2], [3], [0, 0])
    with pytest.raises(ValueError, match="shapes must be >= 1"):
        draw_matrices(rng, [0], [3], [0])
    with pytest.raises(ValueError, match="init codes must index INIT_NAMES"):
        draw_matrices(rng, [2], [3], [6])
    with pytest.raises(ValueError, match=r"one value in \(0, 1\] per matrix"):
        draw_matrices(rng, [2], [3], [0], [0.0])
    assert draw_matrices(rng, [], [], []).shape == (0,)


def _filled_bank(lazy, seeds=(3, 4)):
    """Two generators interleaved, two freezes: MLPs of every shape and tables."""
    params = scm_params()
    bank = MlpBank(lazy=lazy)
    ra, rb = (np.random.default_rng(s) for s in seeds)
    bank.add_mlps(ra, [1, 32, 1, 32], 32, [32, 1, 1, 32], params)
    bank.add_embeddings(rb, [3, 7], 32, params)
    bank.add_mlps(rb, [1, 1], 32, [32, 1], params)
    bank.add_embedding_table(np.arange(6, dtype=np.float32).reshape(2, 3))
    first = bank.freeze()
    bank.add_mlps(ra, [32], 32, [32], params)
    bank.add_embeddings(ra, [5], 32, params)
    return first, bank.freeze()


def test_lazy_bank_draws_the_weights_an_eager_bank_stores():
    for eager, lazy in zip(_filled_bank(False), _filled_bank(True)):
        assert lazy.lazy and lazy.weights.size == 0 and not eager.lazy
        for field in MlpBankArrays.__struct_fields__:
            if field not in ("weights", "lazy"):
                assert np.array_equal(getattr(eager, field), getattr(lazy, field)), field
        assert lazy.materialise().weights.tobytes() == eager.weights.tobytes()
        for layer in range(eager.layers.shape[0]):
            assert np.array_equal(lazy.weight_matrix(layer), eager.weight_matrix(layer))
    eager, lazy = _filled_bank(False)[1], _filled_bank(True)[1]
    # weights_of: just the MLPs asked for, wherever the returned layers place them
    local_layers, local = lazy.weights_of([4, -1, 1])
    wanted = [layer for m in (1, 4) for layer in range(lazy.mlps[m, 0], lazy.mlps[m].sum())]
    assert local.size == sum(int(lazy.layers[layer, 1] * lazy.layers[layer, 2]) for layer in wanted)
    for m in (1, 4):
        first, count = lazy.mlps[m]
        for layer in range(first, first + count):
            off, rows, cols = local_layers[layer, :3]
            assert np.array_equal(local[off : off + rows * cols].reshape(rows, cols), eager.weight_matrix(layer))
        x = np.linspace(-2, 2, 40 * lazy.mlp_dims(m)[0], dtype=np.float32).reshape(40, -1)
        assert np.array_equal(K.mlp_forward(lazy, m, x), K.mlp_forward(eager, m, x))
    assert eager.weights_of([0])[1] is eager.weights
    assert "lazy weights" in repr(lazy)
    lazy_again = pickle.loads(pickle.dumps(lazy))
    assert lazy_again.lazy and lazy_again.materialise().weights.tobytes() == eager.weights.tobytes()


def test_lazy_bank_takes_no_given_matrices():
    bank = MlpBank(lazy=True)
    with pytest.raises(ValueError, match="lazy"):
        bank.add_mlp_layers([np.ones((2, 2), np.float32)], [])
    assert bank.num_mlps == 0
