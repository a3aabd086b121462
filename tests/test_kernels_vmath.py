"""Branch-free float32 math (kernels/vmath.py) and the activations built on it
(DESIGN §4.2): accuracy against float64 on grids that cover every binade,
special values and saturation, finiteness, that the activation loops
vectorise with no libm call left, and that the activations still match the
naive float64 reference.
"""

from __future__ import annotations

import re
import sys
import math
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from scipy.special import erf as erf64
from scipy.special import expit

from plurel_fast.kernels import mlp as K
from plurel_fast.kernels import vmath as V
from plurel_fast.plan.mlp import MlpBank, random_sine_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive  # noqa: E402  (tests/naive.py, not part of the package)

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal
FLUSH_BELOW = math.exp(-87.0)  # vmath flushes results below this to +0


def _elementwise(fn):
    @njit
    def run(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
        return out

    return run


_RUNNERS = {}


def evaluate(name, x):
    """``vmath.<name>`` on every element of a float32 array, in a loop."""
    if name not in _RUNNERS:
        _RUNNERS[name] = _elementwise(getattr(V, name))
    return _RUNNERS[name](np.ascontiguousarray(x, dtype=np.float32))


def binade_grid(hi, stride=1021, lo_bits=1):
    """Every ``stride``-th float32 in [2^-149, hi], both signs: ~8000 values a
    binade, subnormals included."""
    top = int(np.float32(hi).view(np.int32))
    pos = np.arange(lo_bits, top + 1, stride, dtype=np.int64).astype(np.int32).view(np.float32)
    return np.concatenate([pos, [np.float32(hi)], -pos, [-np.float32(hi)]]).astype(np.float32)


def ulp_error(got, ref):
    """|got - ref| in float32 ulps of the float64 reference (2^-149 floor)."""
    _, e = np.frexp(np.abs(ref))
    ulp = np.maximum(np.ldexp(1.0, e - 24), 2.0**-149)
    return np.abs(got.astype(np.float64) - ref) / ulp


def _softplus64(x):
    return np.where(x > 20.0, x, np.logaddexp(0.0, np.minimum(x, 20.0)))


# name: (float64 reference, largest |x| of the grid, max ulp error asserted).
# The bounds hold with a small margin the maxima measured on every 17th
# float32 (vmath's docstring).
ACCURACY = {
    "exp": (np.exp, F32_MAX, 1.0),
    "expm1": (np.expm1, F32_MAX, 1.5),
    "log": (np.log, F32_MAX, 1.0),
    "log1p": (np.log1p, F32_MAX, 1.5),
    "tanh": (np.tanh, F32_MAX, 2.5),
    "sigmoid": (expit, F32_MAX, 2.5),
    "softplus": (_softplus64, F32_MAX, 2.2),
    "erf": (erf64, F32_MAX, 1.25),
    "sin": (np.sin, 3.3e9, 1.6),
    "cos": (np.cos, 3.3e9, 1.6),
}


@pytest.mark.parametrize("name", list(ACCURACY))
def test_accuracy_on_every_binade(name):
    ref_fn, hi, bound = ACCURACY[name]
    x = binade_grid(hi)
    if name in ("sin", "cos", "tanh", "erf", "sigmoid", "softplus", "exp", "expm1"):
        # plus a dense run where the function is not trivial
        x = np.concatenate([x, np.linspace(-120.0, 120.0, 1_000_001, dtype=np.float32)])
    got = evaluate(name, x)
    with np.errstate(all="ignore"):
        ref = ref_fn(x.astype(np.float64))
        ref32 = ref.astype(np.float32)
    # results below e^-87 may be flushed to +0 (vmath's docstring), no others
    assert not np.any((got == 0.0) & (np.abs(ref) >= FLUSH_BELOW))
    ref = np.where((got == 0.0) & (np.abs(ref) < FLUSH_BELOW), 0.0, ref)
    ref32 = ref.astype(np.float32)
    finite = np.isfinite(ref32)
    # where float32 overflows or the value is nan, the result is exactly that
    assert np.array_equal(got[~finite], ref32[~finite], equal_nan=True), x[~finite][
        got[~finite] != ref32[~finite]
    ][:5]
    err = ulp_error(got[finite], ref[finite])
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (
        f"{name}: {err[worst]:.3f} ulp at x={x[finite][worst]!r}: "
        f"got {got[finite][worst]!r}, want {ref[finite][worst]!r}"
    )
    normal = np.abs(ref[finite]) >= F32_TINY
    rel = np.abs(got[finite][normal] - ref[finite][normal]) / np.abs(ref[finite][normal])
    assert rel.max() <= 2.5e-7


def test_sin_cos_accuracy_up_to_reduction_limit():
    # the hidden-layer range and what weights and frequencies make of it
    x = np.concatenate(
        [np.linspace(-1e6, 1e6, 2_000_001), np.logspace(6, np.log10(3.3e9), 200_000)]
    ).astype(np.float32)
    x = np.concatenate([x, -x])
    for name, ref_fn in (("sin", np.sin), ("cos", np.cos)):
        err = ulp_error(evaluate(name, x), ref_fn(x.astype(np.float64)))
        assert err.max() <= 1.6, (name, x[np.argmax(err)], err.max())


def test_sin_cos_narrow_reduction_on_its_whole_range():
    # every 7th float32 below SIN_NARROW_LIMIT (all 1.2e9 positive ones were
    # checked once, vmath's docstring), through the float32 path alone, and
    # the same bytes as the per-value choice of sin / cos
    top = int(V.SIN_NARROW_LIMIT.view(np.int32))
    assert np.float32(np.int32(top).view(np.float32)) == V.SIN_NARROW_LIMIT
    assert V.SIN_NARROW_LIMIT_BITS == top
    x = np.arange(1, top, 7, dtype=np.int64).astype(np.int32).view(np.float32)
    x = np.concatenate([x, -x])
    for shift, name, ref_fn in ((0, "sin", np.sin), (1, "cos", np.cos)):
        got = _narrow(x, shift)
        err = ulp_error(got, ref_fn(x.astype(np.float64)))
        assert err.max() <= 1.6, (name, x[np.argmax(err)], err.max())
        assert np.array_equal(got, evaluate(name, x))


@njit
def _narrow(x, shift):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = V.sin_cos_narrow(x[i], shift)
    return out


def test_sin_cos_switch_reduction_at_the_limit():
    # just below the limit the float32 path, from it on the float64 one; both
    # accurate, so the switch is invisible in the values
    lim = V.SIN_NARROW_LIMIT
    x = np.array([np.nextafter(lim, np.float32(0)), lim, np.nextafter(lim, np.float32(np.inf))],
                 dtype=np.float32)
    x = np.concatenate([x, -x])
    wide = _wide(x)
    narrow = _narrow(x, 0)
    got = evaluate("sin", x)
    big = np.abs(x) >= lim
    assert np.array_equal(got[big], wide[big]) and np.array_equal(got[~big], narrow[~big])
    assert ulp_error(got, np.sin(x.astype(np.float64))).max() <= 1.6


@njit
def _wide(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = V.sin_cos_wide(x[i], 0)
    return out


def test_sin_cos_beyond_reduction_limit_degrade_gracefully():
    x = binade_grid(F32_MAX, stride=1009, lo_bits=int(np.float32(3.3e9).view(np.int32)))
    for name, ref_fn in (("sin", np.sin), ("cos", np.cos)):
        got = evaluate(name, x)
        assert np.all(np.abs(got) <= 1.0)
        # absolute error ~|x| 2^-53 while the float64 steps are exact
        mid = np.abs(x) < 1e12
        err = np.abs(got[mid] - ref_fn(x[mid].astype(np.float64)))
        assert err.max() <= 1e-4


# ---------------------------------------------------------------------------
# Special values, saturation, finiteness
# ---------------------------------------------------------------------------

INF, NAN = np.inf, np.nan
REF = None  # the float64 reference of ACCURACY, rounded to float32
SPECIAL = {
    "exp": [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), (88.72283, REF),
            (88.72284, INF), (89.0, INF), (1e6, INF), (-86.9, REF), (-87.5, 0.0), (-103.0, 0.0), (-104.0, 0.0),
            (-1e6, 0.0), (1.0, np.e)],
    "expm1": [(0.0, 0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (-17.4, -1.0), (-1e6, -1.0),
              (88.72284, INF), (1e-30, 1e-30), (-1e-30, -1e-30), (88.7, REF)],
    "log": [(0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF), (NAN, NAN), (1.0, 0.0),
            (1e-45, -103.27893), (F32_MAX, 88.72284), (np.e, 1.0)],
    "log1p": [(0.0, 0.0), (-1.0, -INF), (-2.0, NAN), (INF, INF), (NAN, NAN),
              (1e-30, 1e-30), (-1e-30, -1e-30), (F32_MAX, 88.72284)],
    "tanh": [(0.0, 0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (9.1, 1.0), (-9.1, -1.0),
             (1e6, 1.0), (-1e6, -1.0), (1e-30, 1e-30), (-1e-30, -1e-30)],
    "sigmoid": [(0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), (17.5, 1.0), (1e6, 1.0),
                (-1e6, 0.0), (-104.0, 0.0)],
    "softplus": [(INF, INF), (-INF, 0.0), (NAN, NAN), (20.001, 20.001), (1e6, 1e6),
                 (F32_MAX, F32_MAX), (-1e6, 0.0), (0.0, np.log(2.0))],
    "erf": [(0.0, 0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (3.92, 1.0), (-3.92, -1.0),
            (1e6, 1.0), (-1e6, -1.0), (1e-30, 1.1283792e-30)],
    "sin": [(0.0, 0.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (1e-30, 1e-30)],
    "cos": [(0.0, 1.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (1e-30, 1.0)],
}  # fmt: skip


@pytest.mark.parametrize("name", list(SPECIAL))
def test_special_values(name):
    x = np.array([p[0] for p in SPECIAL[name]], dtype=np.float32)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # special inputs on purpose
        ref = ACCURACY[name][0](x.astype(np.float64)).astype(np.float32)
    want = np.array([ref[i] if p[1] is REF else p[1] for i, p in enumerate(SPECIAL[name])],
                    dtype=np.float32)
    got = evaluate(name, x)
    close = np.isclose(got, want, rtol=2e-7, atol=0.0) | (got == want)
    close |= np.isnan(got) & np.isnan(want)
    assert close.all(), list(zip(x[~close], got[~close], want[~close]))


@pytest.mark.parametrize("name", ["tanh", "erf", "sin"])
def test_odd_functions_keep_the_sign_of_zero(name):
    got = evaluate(name, np.array([-0.0, 0.0], dtype=np.float32))
    assert np.signbit(got).tolist() == [True, False]


def test_saturation_is_exact():
    x = np.linspace(9.1, 1e6, 100_001, dtype=np.float32)
    assert np.all(evaluate("tanh", x) == 1.0) and np.all(evaluate("tanh", -x) == -1.0)
    assert np.all(evaluate("sigmoid", x + np.float32(8.3)) == 1.0)
    assert np.all(evaluate("erf", x) == 1.0) and np.all(evaluate("erf", -x) == -1.0)
    assert np.all(evaluate("expm1", -x - np.float32(8.3)) == -1.0)
    assert np.array_equal(evaluate("softplus", x + np.float32(11.0)), x + np.float32(11.0))
    # sigmoid, exp and softplus flush to +0 below -87, never below 0
    tail = -np.linspace(80.0, 1e6, 100_001, dtype=np.float32)
    for name in ("sigmoid", "exp", "softplus"):
        got = evaluate(name, tail)
        assert np.all(got >= 0.0) and np.all((got == 0.0) == (tail < -87.0)), name


@pytest.mark.parametrize("name", ["expm1", "tanh", "sigmoid", "softplus", "erf", "sin", "cos"])
def test_finite_for_finite_inputs(name):
    x = np.concatenate(
        [np.linspace(-1e6, 1e6, 200_001), np.logspace(-45, 38.5, 2000), -np.logspace(-45, 38.5, 2000)]
    ).astype(np.float32)
    if name == "expm1":
        x = x[x < 88.7]
    assert np.all(np.isfinite(evaluate(name, x)))


def test_log_family_finite_on_its_domain():
    x = np.concatenate([np.logspace(-45, 38.5, 5000), np.linspace(1e-6, 1e6, 100_001)]).astype(np.float32)
    assert np.all(np.isfinite(evaluate("log", x)))
    assert np.all(np.isfinite(evaluate("log1p", x))) and np.all(np.isfinite(evaluate("log1p", -x[x < 1])))


# ---------------------------------------------------------------------------
# The activation loops: vectorised, no libm call, same values as before
# ---------------------------------------------------------------------------

# Activations whose helpers use vmath (and softsign / bent_identity, whose
# division was made vectorisable).
VMATH_ACTIVATIONS = [
    "elu", "selu", "silu", "softsign", "tanh", "sigmoid", "mish", "gelu", "softplus", "celu",
    "tanhshrink", "logsigmoid", "sin", "cos", "signed_log1p", "bent_identity",
]  # fmt: skip
_HELPER = {"celu": "elu"}
_LIBM = re.compile(r"\$(exp|expm1|log|log1p|tanh|erf|erfc|sin|cos|pow)f?\b")
_PACKED_FLOAT = re.compile(r"\bv?(mul|add|sub)ps\b")


def _helper_loop(name):
    helper = getattr(K, "_" + _HELPER.get(name, name))

    @njit
    def loop(v, scale):
        # the loop body of kernels.mlp._activate_flat
        for i in range(v.shape[0]):
            v[i] = K._clamp_hidden(scale * helper(v[i]))

    v = np.linspace(-5.0, 5.0, 64, dtype=np.float32)
    loop(v, np.float32(1.5))
    return loop.inspect_asm(loop.signatures[0])


@pytest.mark.parametrize("name", VMATH_ACTIVATIONS)
def test_activation_loop_vectorises_without_libm(name):
    asm = _helper_loop(name)
    assert not _LIBM.findall(asm), f"{name}: libm calls left: {set(_LIBM.findall(asm))}"
    assert _PACKED_FLOAT.search(asm), f"{name}: the element loop did not vectorise"


def test_activate_flat_calls_no_libm():
    # a fresh (uncached) compile of the kernel that holds every activation loop
    fresh = njit(K._activate_flat.py_func)
    v = np.ones(16, dtype=np.float32)
    params = np.zeros(1, dtype=np.float32)
    fresh(v, np.int64(K.RELU), np.float32(1.0), params, np.int64(-1))
    asm = fresh.inspect_asm(fresh.signatures[0])
    assert not _LIBM.findall(asm), set(_LIBM.findall(asm))


def _dense_activation_grid():
    x = np.concatenate(
        [np.linspace(-30.0, 30.0, 600_001), np.logspace(-8, 6, 20_000), -np.logspace(-8, 6, 20_000)]
    )
    return x.astype(np.float32)


@pytest.mark.parametrize("name", VMATH_ACTIVATIONS + ["random_sine"])
def test_activation_matches_naive_on_dense_grid(name):
    # the tolerance of tests/test_kernels_mlp.py::test_activation_matches_naive
    x = _dense_activation_grid()
    params = random_sine_params(np.random.default_rng(5)) if name == "random_sine" else None
    got = K.apply_activation(name, x, params, 0 if params is not None else -1)
    want = naive.naive_activation(name, x, params)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", VMATH_ACTIVATIONS + ["random_sine"])
@pytest.mark.parametrize("rows, tile_rows", [(1000, 64), (333, 5)])
def test_tile_loop_equals_scalar_activation_on_wide_layers(name, rows, tile_rows):
    # 32 -> 32 -> 32 with identity weights: the hidden layer sees x itself, in
    # flat runs of up to tile_rows * 32 values (several random-sine blocks)
    rng = np.random.default_rng(K.ACTIVATION_NAMES.index(name))
    bank = MlpBank()
    params = random_sine_params(rng) if name == "random_sine" else None
    scale = np.float32(0.7)
    eye = np.eye(32, dtype=np.float32)
    mlp = bank.add_mlp_layers([eye, eye], [name], [scale], [params])
    frozen = bank.freeze()
    x = (rng.standard_normal((rows, 32)) * np.exp(rng.uniform(-3, 8, (rows, 32)))).astype(np.float32)
    got = K.mlp_forward(frozen, mlp, x, tile_rows=tile_rows)
    scalar = K.apply_activation(name, x.ravel(), frozen.act_params, int(frozen.layers[0, 4]))
    want = np.clip(scale * scalar, np.float32(-1e6), np.float32(1e6)).reshape(rows, 32)
    assert np.array_equal(got, want)
