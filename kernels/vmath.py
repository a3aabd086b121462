"""Branch-free float32 elementary functions that LLVM vectorises (SPEC §4.2).

Numba has no SVML on our machines, so ``math.exp`` and friends inside an
element loop are scalar libm calls (5-20 ns each) and the loop does not
vectorise: the transcendental activations of ``kernels/mlp.py`` ran 4-15x
slower than ``relu``. The functions here are straight-line float32 code
that, inlined into such a loop (``inline="always"``), LLVM turns into vector
instructions:

- no branches, only selects (``a if c else b`` on values already computed);
- ``np.divide`` instead of ``/``: numba's ``/`` checks for a zero divisor and
  raises, and that branch stops the vectoriser (``np.divide`` follows IEEE);
- 2^n and exponent/mantissa splits by integer operations on the float bits
  (scalar ``.view``), range reductions by the round-to-nearest of an added
  shifter constant, whose low mantissa bits then hold the integer;
- no FMA and no fastmath: a value's bytes are the same in the scalar and the
  vector code and on every x86-64 CPU.

Polynomials are minimax fits (weighted Lawson iterations in float64, then
rounded to float32) on the reduced intervals. Maximum errors against float64,
measured on every 17th float32 of both signs (2.5e8 inputs per function;
tests/test_kernels_vmath.py asserts them on coarser grids):

==========  ========  =======================
function    max ulp   max relative (normal)
==========  ========  =======================
exp         0.97      8.1e-8
expm1       1.38      1.1e-7
log         0.87      8.2e-8
log1p       1.44      1.3e-7
tanh        2.40      1.7e-7
sigmoid     2.36      1.7e-7
softplus    1.98      1.8e-7
erf         1.30      1.0e-7
sin, cos    1.54      1.2e-7  (|x| < 3.3e9)
==========  ========  =======================

Results below e^-87 ~ 1.6e-38 (exp, sigmoid and softplus of x < -87) are
flushed to +0 instead of underflowing gradually: on x86 every operation that
produces a subnormal float takes a microcode assist of ~100 cycles, and one
such lane stalls a whole vector. Activations of wide-ranged pre-activations
(elu, silu, sigmoid, mish, softplus, ...) ran ~10x slower for it. Nothing
downstream can tell 1e-39 from 0 at float32 precision.

Special values: overflow to ``inf``, flush below e^-87, ``nan`` in gives
``nan`` out, and the saturating functions (tanh, sigmoid, erf, expm1 below
-17.3) reach their limits exactly; no ``inf`` or ``nan`` for a finite input
whose true result is finite.

``sin`` and ``cos`` reduce the argument by pi/2 in float64 with a three-part
Cody-Waite constant (22 + 22 + 53 bits); the reduction is exact for
|x| < 3.3e9. Hidden-layer inputs are clamped to ±1e6, so a pre-activation (or
random-sine argument) beyond that needs 32 inputs at the clamp and weights
times frequency of ~100. Beyond it the absolute error grows like |x| * 2^-53
(below 1e-3 at 1e13); for |x| >= 2^51 the result is only guaranteed to lie
in [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_F = np.float32
_D = np.float64

_ZERO = _F(0.0)
_ONE = _F(1.0)
_TWO = _F(2.0)
_HALF = _F(0.5)
_INF = _F(np.inf)
_NAN = _F(np.nan)

# ---------------------------------------------------------------------------
# exp / expm1: x = n ln2 + r, |r| <= ln2 / 2, exp(x) = 2^n exp(r)
# ---------------------------------------------------------------------------

# Clamps keeping n in [-126, 128]: exp(89) overflows to inf; below -87 exp
# flushes to 0 (module docstring), and 2^n, e^r and their product stay normal.
_EXP_HI = _F(89.0)
_EXP_LO = _F(-87.0)
_EXPM1_LO = _F(-24.0)
_LOG2E = _F(1.0 / math.log(2.0))
# 1.5 * 2^23: t = y + shifter rounds y to an integer n held in t's low bits.
_SHIFT32 = _F(12582912.0)
_SHIFT32_BITS = np.int32(0x4B400000)
# ln2 = _LN2_HI + _LN2_LO; _LN2_HI has 9 significant bits, so n * _LN2_HI and
# x - n * _LN2_HI are exact for |n| <= 150.
_LN2_HI = _F(0.693359375)
_LN2_LO = _F(math.log(2.0) - 0.693359375)

# exp(r) = 1 + r + r^2 * P(r) on |r| <= ln2/2 (+ slack), relative error 3.1e-9
_EXP_P0 = _F(0.4999999403953552)
_EXP_P1 = _F(0.1666652113199234)
_EXP_P2 = _F(0.04166838899254799)
_EXP_P3 = _F(0.00836874544620514)
_EXP_P4 = _F(0.0013814540579915047)

# expm1(r) = r + r^2 / 2 + r^3 * Q(r) on the same interval, relative error 3.9e-10
_EXPM1_Q0 = _F(0.1666666567325592)
_EXPM1_Q1 = _F(0.041666481643915176)
_EXPM1_Q2 = _F(0.0083334194496274)
_EXPM1_Q3 = _F(0.0013933288864791393)
_EXPM1_Q4 = _F(0.00019824111950583756)


@njit(inline="always", cache=True)
def _exp_reduce(x, lo):
    """``(r, n)`` with ``x = n ln2 + r``; ``x`` clamped to [lo, 89], nan kept."""
    x = _EXP_HI if x > _EXP_HI else x
    x = lo if x < lo else x
    t = x * _LOG2E + _SHIFT32
    nf = t - _SHIFT32
    r = (x - nf * _LN2_HI) - nf * _LN2_LO
    n = np.float32(t).view(np.int32) - _SHIFT32_BITS
    return r, n


@njit(inline="always", cache=True)
def _pow2_pair(n):
    """2^n as two normal float32 factors, for n in [-150, 128].

    Multiplying by them in turn rounds a subnormal result once and lets
    n = 128 overflow to inf, where a single factor would not exist.
    """
    n1 = n >> 1
    s1 = np.int32((n1 + 127) << 23).view(np.float32)
    s2 = np.int32((n - n1 + 127) << 23).view(np.float32)
    return s1, s2


@njit(inline="always", cache=True)
def exp(x):
    """e^x of a float32; inf above 88.72, 0 below -87 (flush, module docstring)."""
    r, n = _exp_reduce(x, _EXP_LO)
    z = r * r
    p = _EXP_P4
    p = p * r + _EXP_P3
    p = p * r + _EXP_P2
    p = p * r + _EXP_P1
    p = p * r + _EXP_P0
    e = (p * z + r) + _ONE
    s1, s2 = _pow2_pair(n)
    res = (e * s1) * s2
    return _ZERO if x < _EXP_LO else res


@njit(inline="always", cache=True)
def expm1(x):
    """e^x - 1 of a float32, accurate (relative) near 0; -1 below -17.3."""
    # below -17.3 the float32 result is -1; clamping at -24 keeps 2^n expm1(r)
    # in the normal range (no subnormal, module docstring)
    r, n = _exp_reduce(x, _EXPM1_LO)
    z = r * r
    q = _EXPM1_Q4
    q = q * r + _EXPM1_Q3
    q = q * r + _EXPM1_Q2
    q = q * r + _EXPM1_Q1
    q = q * r + _EXPM1_Q0
    p = (q * z * r + _HALF * z) + r  # expm1(r)
    s1, s2 = _pow2_pair(n)
    # 2^n expm1(r) + (2^n - 1): exact for n = 0, one rounding otherwise; the
    # two terms only cancel when the result is near 0, i.e. when n = 0. Above
    # n = 24 the -1 is below half an ulp, and 2^n alone may overflow (n = 128).
    small = (p * s1) * s2 + ((s1 * s2) - _ONE)
    large = ((p + _ONE) * s1) * s2
    return large if n > 24 else small


# ---------------------------------------------------------------------------
# log / log1p: x = 2^k m, m in [sqrt(1/2), sqrt(2)), log x = k ln2 + log1p(m - 1)
# ---------------------------------------------------------------------------

_MIN_NORMAL = _F(1.1754943508222875e-38)
_TWO25 = _F(33554432.0)
_SQRT_HALF_BITS = 0x3F3504F3  # bits of sqrt(1/2)
_LOG_OFFSET = 0x3F800000 - _SQRT_HALF_BITS
# log1p(f) = f - f^2 / 2 + f^3 * L(f) on [sqrt(1/2) - 1, sqrt(2) - 1],
# relative error 5.8e-9
_LOG_L0 = _F(0.3333333134651184)
_LOG_L1 = _F(-0.2500081956386566)
_LOG_L2 = _F(0.20001226663589478)
_LOG_L3 = _F(-0.16623356938362122)
_LOG_L4 = _F(0.14201757311820984)
_LOG_L5 = _F(-0.13160182535648346)
_LOG_L6 = _F(0.1276157796382904)
_LOG_L7 = _F(-0.07634498178958893)
# From 2^24 on, w - 1 is no longer exact (and inf - inf would be nan); the
# correction is then far below an ulp of log(w) anyway.
_LOG1P_EXACT_LIMIT = _F(16777216.0)


@njit(inline="always", cache=True)
def log(x):
    """Natural log of a float32: -inf at 0, nan below 0, subnormals scaled first."""
    sub = x < _MIN_NORMAL
    xs = x * _TWO25 if sub else x
    # int32 throughout (numba widens int arithmetic to int64; truncating each
    # result lets LLVM keep 8 lanes per ymm register)
    i = np.int32(np.float32(xs).view(np.int32) + _LOG_OFFSET)
    k = np.int32((i >> 23) - 127)
    k = np.int32(k - 25) if sub else k
    m = np.int32((i & 0x007FFFFF) + _SQRT_HALF_BITS).view(np.float32)
    f = m - _ONE
    kf = np.float32(k)
    z = f * f
    # even and odd coefficients in two independent chains (half the latency)
    pe = _LOG_L6
    pe = pe * z + _LOG_L4
    pe = pe * z + _LOG_L2
    pe = pe * z + _LOG_L0
    po = _LOG_L7
    po = po * z + _LOG_L5
    po = po * z + _LOG_L3
    po = po * z + _LOG_L1
    p = po * f + pe
    y = p * f * z + kf * _LN2_LO - _HALF * z
    res = (f + y) + kf * _LN2_HI
    res = res if x > _ZERO else (-_INF if x == _ZERO else _NAN)
    return _INF if x == _INF else res


@njit(inline="always", cache=True)
def log1p(u):
    """log(1 + u) of a float32, accurate (relative) near 0; nan below -1."""
    w = u + _ONE
    # w = 1 + u rounded; log(1 + u) = log(w) + (u - (w - 1)) / w to first order
    c = np.divide(u - (w - _ONE), w)
    c = c if (w < _LOG1P_EXACT_LIMIT) & (w > _ZERO) else _ZERO
    return log(w) + c


# ---------------------------------------------------------------------------
# Functions of exp / expm1 / log1p
# ---------------------------------------------------------------------------

# tanh(10) is 1 in float32; clamping there keeps expm1(2|x|) finite.
_TANH_SATURATION = _F(10.0)
_SOFTPLUS_THRESHOLD = _F(20.0)


@njit(inline="always", cache=True)
def tanh(x):
    """tanh of a float32: expm1(2|x|) / (expm1(2|x|) + 2) with x's sign."""
    a = abs(x)
    a = _TANH_SATURATION if a > _TANH_SATURATION else a
    t = expm1(a + a)
    return math.copysign(np.divide(t, t + _TWO), x)


@njit(inline="always", cache=True)
def sigmoid(x):
    """1 / (1 + e^-x) of a float32, from e^-|x| only (no overflow)."""
    e = exp(-abs(x))
    num = _ONE if x >= _ZERO else e
    return np.divide(num, _ONE + e)


@njit(inline="always", cache=True)
def softplus(x):
    """torch's softplus (beta 1, threshold 20): log1p(e^x), x itself above 20."""
    xc = _SOFTPLUS_THRESHOLD if x > _SOFTPLUS_THRESHOLD else x
    sp = log1p(exp(xc))
    return x if x > _SOFTPLUS_THRESHOLD else sp


# ---------------------------------------------------------------------------
# erf: odd polynomial near 0, 1 - exp(G(|x|)) beyond
# ---------------------------------------------------------------------------

_ERF_SPLIT = _F(0.921875)
_ERF_SATURATION = _F(4.0)  # erf(3.92) already rounds to 1
# erf(x) = x + x * E(x^2) on |x| <= 0.921875, relative error 1.6e-8
_ERF_E0 = _F(0.12837915122509003)
_ERF_E1 = _F(-0.37612494826316833)
_ERF_E2 = _F(0.1128181666135788)
_ERF_E3 = _F(-0.026766620576381683)
_ERF_E4 = _F(0.004993184469640255)
_ERF_E5 = _F(-0.0005990872741676867)
# log(erfc(t)) = G(t) on [0.921875, 4], error 1.5e-9 weighted by erfc(t)
# (so the error of 1 - exp(G) is absolute)
_ERF_G0 = _F(-0.00020992248028051108)
_ERF_G1 = _F(-1.1276154518127441)
_ERF_G2 = _F(-0.6372858285903931)
_ERF_G3 = _F(-0.10383884608745575)
_ERF_G4 = _F(0.022181367501616478)
_ERF_G5 = _F(-0.003031592583283782)
_ERF_G6 = _F(0.0001947336277225986)


@njit(inline="always", cache=True)
def erf(x):
    """Error function of a float32 (for the exact, erf form of gelu)."""
    z = x * x
    p = _ERF_E5
    p = p * z + _ERF_E4
    p = p * z + _ERF_E3
    p = p * z + _ERF_E2
    p = p * z + _ERF_E1
    p = p * z + _ERF_E0
    near = x * p + x
    a = abs(x)
    t = _ERF_SATURATION if a > _ERF_SATURATION else a
    g = _ERF_G6
    g = g * t + _ERF_G5
    g = g * t + _ERF_G4
    g = g * t + _ERF_G3
    g = g * t + _ERF_G2
    g = g * t + _ERF_G1
    g = g * t + _ERF_G0
    far = math.copysign(_ONE - exp(g), x)
    return near if a < _ERF_SPLIT else far


# ---------------------------------------------------------------------------
# sin / cos: x = k pi/2 + r in float64, |r| <= pi/4, then float32 polynomials
# ---------------------------------------------------------------------------

_TWO_OVER_PI = _D(2.0 / math.pi)
_SHIFT64 = _D(6755399441055744.0)  # 1.5 * 2^52
# pi/2 = _PIO2_1 + _PIO2_2 + _PIO2_3 (+ 8e-32): the first two have 22
# significant bits, so k * _PIO2_1, k * _PIO2_2 and the first two
# subtractions are exact for |k| < 2^31.
_PIO2_1 = _D(float.fromhex("0x1.921fb00000000p+0"))
_PIO2_2 = _D(float.fromhex("0x1.5110b00000000p-22"))
_PIO2_3 = _D(float.fromhex("0x1.18469898cc517p-44"))
# Only reached when the reduction is no longer exact (|x| >= 3.3e9).
_R_BOUND = _F(0.7854)
# sin(r) = r + r^3 * S(r^2), relative error 3.8e-9
_SIN_S0 = _F(-0.16666655242443085)
_SIN_S1 = _F(0.00833216030150652)
_SIN_S2 = _F(-0.00019515218446031213)
# cos(r) = 1 - r^2 / 2 + r^4 * C(r^2), relative error 1.2e-10
_COS_C0 = _F(0.04166664555668831)
_COS_C1 = _F(-0.0013887315290048718)
_COS_C2 = _F(2.4433082217001356e-05)


@njit(inline="always", cache=True)
def _sin_cos_reduced(x, quadrant_shift):
    """sin(x + quadrant_shift * pi/2) for a float32 x; shift 0 or 1."""
    xd = np.float64(x)
    t = xd * _TWO_OVER_PI + _SHIFT64
    k = t - _SHIFT64
    rd = ((xd - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    q = np.float64(t).view(np.int64) + quadrant_shift  # low bits: k mod 4
    r = np.float32(rd)
    r = _R_BOUND if r > _R_BOUND else r
    r = -_R_BOUND if r < -_R_BOUND else r
    z = r * r
    s = _SIN_S2
    s = s * z + _SIN_S1
    s = s * z + _SIN_S0
    sin_r = s * z * r + r
    sin_r = r if r == _ZERO else sin_r  # sin(-0) = -0 (-0 + 0 would be +0)
    c = _COS_C2
    c = c * z + _COS_C1
    c = c * z + _COS_C0
    cos_r = (c * z * z - _HALF * z) + _ONE
    v = cos_r if (q & 1) != 0 else sin_r
    return -v if (q & 2) != 0 else v


@njit(inline="always", cache=True)
def sin(x):
    """sin of a float32 (exact reduction for |x| < 3.3e9, module docstring)."""
    return _sin_cos_reduced(x, 0)


@njit(inline="always", cache=True)
def cos(x):
    """cos of a float32 (exact reduction for |x| < 3.3e9, module docstring)."""
    return _sin_cos_reduced(x, 1)
