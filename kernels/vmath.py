"""Branch-free float32 elementary functions that LLVM vectorises (DESIGN §4.2).

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
- polynomials (Horner) and range reductions use explicit fused multiply-adds
  (``simd.fma32``, ``llvm.fma``: one IEEE rounding, vfmadd in vector code,
  libm's ``fmaf`` on a CPU without FMA) and no fastmath, no approximate
  reciprocal: a value's bytes are the same in the scalar and the vector code
  and on every x86-64 CPU.

Polynomials are minimax fits (weighted Lawson iterations in float64, then
rounded to float32) on the reduced intervals. Maximum errors against float64
(libm), measured on every 17th float32 of both signs (2.5e8 inputs per
function; tests/test_kernels_vmath.py asserts them on coarser grids):

==========  ========  =======================
function    max ulp   max relative (normal)
==========  ========  =======================
exp         1.00      8.4e-8
expm1       1.40      1.2e-7
log         0.89      8.3e-8
log1p       1.44      1.3e-7
tanh        2.42      1.8e-7
sigmoid     2.34      1.8e-7
softplus    2.11      1.8e-7
erf         1.17      8.2e-8
sin, cos    1.53      1.6e-7  (|x| < 3.3e9)
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

``sin`` and ``cos`` reduce the argument by pi/2 in float32 with FMAs below
``SIN_NARROW_LIMIT`` = 2^18 (three-part constant, 24 + 24 + 24 bits; checked
against float64 on every float32 there, max 1.54 ulp) and in float64 above
(three-part Cody-Waite constant, 22 + 22 + 53 bits), exact for |x| < 3.3e9.
The path depends on |x| only, so a value's bytes do too; element loops that
know a block is below the limit run the float32 path alone (``kernels.mlp``). Hidden-layer inputs are clamped to ±1e6, so a pre-activation (or
random-sine argument) beyond that needs 32 inputs at the clamp and weights
times frequency of ~100. Beyond it the absolute error grows like |x| * 2^-53
(below 1e-3 at 1e13); for |x| >= 2^51 the result is only guaranteed to lie
in [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from plurel_fast.kernels.simd import fma32

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
# ln2 = _LN2_HI + _LN2_LO, _LN2_HI = float32(ln2). x - n * _LN2_HI is exact for
# |n| <= 150 (both are multiples of 2^-25 and the difference is below 1/2), so
# one fused multiply-add gives it; a second one subtracts n * _LN2_LO.
_LN2_HI = _F(math.log(2.0))
_LN2_LO = _F(math.log(2.0) - float(_LN2_HI))
# log's k ln2 keeps the 9-bit split: k * _LOG_LN2_HI is exact without FMA.
_LOG_LN2_HI = _F(0.693359375)
_LOG_LN2_LO = _F(math.log(2.0) - 0.693359375)

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
    t = fma32(x, _LOG2E, _SHIFT32)
    nf = t - _SHIFT32
    r = fma32(-nf, _LN2_LO, fma32(-nf, _LN2_HI, x))
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
def _exp_poly(r):
    """e^r on the reduced interval."""
    z = r * r
    p = fma32(_EXP_P4, r, _EXP_P3)
    p = fma32(p, r, _EXP_P2)
    p = fma32(p, r, _EXP_P1)
    p = fma32(p, r, _EXP_P0)
    return fma32(p, z, r) + _ONE


@njit(inline="always", cache=True)
def _expm1_poly(r):
    """e^r - 1 on the reduced interval."""
    z = r * r
    q = fma32(_EXPM1_Q4, r, _EXPM1_Q3)
    q = fma32(q, r, _EXPM1_Q2)
    q = fma32(q, r, _EXPM1_Q1)
    q = fma32(q, r, _EXPM1_Q0)
    return fma32(q, z * r, _HALF * z) + r


@njit(inline="always", cache=True)
def _pow2(n):
    """2^n as one float32, for n in [-126, 127] (inf at 128)."""
    return np.int32((n + 127) << 23).view(np.float32)


@njit(inline="always", cache=True)
def exp(x):
    """e^x of a float32; inf above 88.72, 0 below -87 (flush, module docstring)."""
    r, n = _exp_reduce(x, _EXP_LO)
    e = _exp_poly(r)
    s1, s2 = _pow2_pair(n)
    res = (e * s1) * s2
    return _ZERO if x < _EXP_LO else res


@njit(inline="always", cache=True)
def exp88(x):
    """``exp(x)`` for x <= 88 with one scale factor (n <= 127); inf above 88.37.

    Same bytes as ``exp`` up to 88: e^r 2^n is normal, so scaling by 2^n in
    one or two steps is exact. For the activations, whose arguments are <= 20.
    """
    r, n = _exp_reduce(x, _EXP_LO)
    res = _exp_poly(r) * _pow2(n)
    return _ZERO if x < _EXP_LO else res


@njit(inline="always", cache=True)
def expm1(x):
    """e^x - 1 of a float32, accurate (relative) near 0; -1 below -17.3."""
    # below -17.3 the float32 result is -1; clamping at -24 keeps 2^n expm1(r)
    # in the normal range (no subnormal, module docstring)
    r, n = _exp_reduce(x, _EXPM1_LO)
    p = _expm1_poly(r)
    s1, s2 = _pow2_pair(n)
    # 2^n expm1(r) + (2^n - 1): exact for n = 0, one rounding otherwise; the
    # two terms only cancel when the result is near 0, i.e. when n = 0. Above
    # n = 24 the -1 is below half an ulp, and 2^n alone may overflow (n = 128).
    small = (p * s1) * s2 + ((s1 * s2) - _ONE)
    large = ((p + _ONE) * s1) * s2
    return large if n > 24 else small


@njit(inline="always", cache=True)
def expm1_88(x):
    """``expm1(x)`` for x <= 88 with one scale factor; same bytes there.

    (2^n expm1(r) is exact, so the fused ``2^n expm1(r) + (2^n - 1)`` rounds
    like ``expm1``'s sum.) Above 88.37 the result is inf or nan: for elu and
    selu, which use it only for x <= 0, and tanh (x <= 20).
    """
    r, n = _exp_reduce(x, _EXPM1_LO)
    p = _expm1_poly(r)
    s = _pow2(n)
    small = fma32(p, s, s - _ONE)
    large = (p + _ONE) * s
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
    pe = fma32(_LOG_L6, z, _LOG_L4)
    pe = fma32(pe, z, _LOG_L2)
    pe = fma32(pe, z, _LOG_L0)
    po = fma32(_LOG_L7, z, _LOG_L5)
    po = fma32(po, z, _LOG_L3)
    po = fma32(po, z, _LOG_L1)
    p = fma32(po, f, pe)
    y = fma32(p, f * z, fma32(kf, _LOG_LN2_LO, -_HALF * z))
    res = fma32(kf, _LOG_LN2_HI, f + y)  # kf * _LOG_LN2_HI is exact
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
    t = expm1_88(a + a)
    return math.copysign(np.divide(t, t + _TWO), x)


@njit(inline="always", cache=True)
def sigmoid(x):
    """1 / (1 + e^-x) of a float32, from e^-|x| only (no overflow)."""
    e = exp88(-abs(x))
    num = _ONE if x >= _ZERO else e
    return np.divide(num, _ONE + e)


@njit(inline="always", cache=True)
def softplus(x):
    """torch's softplus (beta 1, threshold 20): log1p(e^x), x itself above 20."""
    xc = _SOFTPLUS_THRESHOLD if x > _SOFTPLUS_THRESHOLD else x
    sp = log1p(exp88(xc))
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
    p = fma32(_ERF_E5, z, _ERF_E4)
    p = fma32(p, z, _ERF_E3)
    p = fma32(p, z, _ERF_E2)
    p = fma32(p, z, _ERF_E1)
    p = fma32(p, z, _ERF_E0)
    near = fma32(x, p, x)
    a = abs(x)
    t = _ERF_SATURATION if a > _ERF_SATURATION else a
    g = fma32(_ERF_G6, t, _ERF_G5)
    g = fma32(g, t, _ERF_G4)
    g = fma32(g, t, _ERF_G3)
    g = fma32(g, t, _ERF_G2)
    g = fma32(g, t, _ERF_G1)
    g = fma32(g, t, _ERF_G0)
    far = math.copysign(_ONE - exp88(g), x)
    return near if a < _ERF_SPLIT else far


# ---------------------------------------------------------------------------
# sin / cos: x = k pi/2 + r, |r| <= pi/4 (+ slack), then float32 polynomials
# ---------------------------------------------------------------------------

# Narrow reduction, |x| < SIN_NARROW_LIMIT: k = x * 2/pi rounded by the shifter
# (one fused rounding), then x - k pi/2 with pi/2 = _PIO2_F1 + _PIO2_F2 +
# _PIO2_F3 (+ 1.1e-23), each product exact inside its FMA. The first step is
# exact (x and k _PIO2_F1 are multiples of 2^-24 and differ by less than 1);
# the other two round once each, ~1 ulp of r in all. The float32 2/pi may pick
# the neighbouring k near a half-integer, so |r| reaches pi/4 + 0.008 at 2^18.
# Checked against float64 on every float32 below the limit (module docstring).
SIN_NARROW_LIMIT = _F(262144.0)  # 2^18
SIN_NARROW_LIMIT_BITS = np.int32(0x48800000)
_TWO_OVER_PI32 = _F(2.0 / math.pi)
_PIO2_F1 = _F(float.fromhex("0x1.921fb6p+0"))
_PIO2_F2 = _F(float.fromhex("-0x1.777a5cp-25"))
_PIO2_F3 = _F(float.fromhex("-0x1.ee59dap-50"))
# Wide reduction, in float64 with a three-part Cody-Waite constant. pi/2 =
# _PIO2_1 + _PIO2_2 + _PIO2_3 (+ 8e-32): the first two have 22 significant
# bits, so k * _PIO2_1, k * _PIO2_2 and the first two subtractions are exact
# for |k| < 2^31.
_TWO_OVER_PI = _D(2.0 / math.pi)
_SHIFT64 = _D(6755399441055744.0)  # 1.5 * 2^52
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
def _sin_cos_poly(r, q, x):
    """sin(r + q pi/2) for x reduced to r (only q mod 4 counts)."""
    z = r * r
    s = fma32(fma32(_SIN_S2, z, _SIN_S1), z, _SIN_S0)
    sin_r = fma32(s, z * r, r)
    # sin(-0) = -0: r + r^3 S would be +0, and the narrow reduction's r too
    sin_r = x if x == _ZERO else sin_r
    c = fma32(fma32(fma32(_COS_C2, z, _COS_C1), z, _COS_C0), z, -_HALF)
    cos_r = fma32(c, z, _ONE)
    v = cos_r if (q & 1) != 0 else sin_r
    return -v if (q & 2) != 0 else v


@njit(inline="always", cache=True)
def sin_cos_narrow(x, quadrant_shift):
    """sin(x + quadrant_shift * pi/2) for |x| < SIN_NARROW_LIMIT (float32 only)."""
    t = fma32(x, _TWO_OVER_PI32, _SHIFT32)
    k = t - _SHIFT32
    r = fma32(-k, _PIO2_F1, x)
    r = fma32(-k, _PIO2_F2, r)
    r = fma32(-k, _PIO2_F3, r)
    q = np.int32(np.float32(t).view(np.int32) + quadrant_shift)
    return _sin_cos_poly(r, q, x)


@njit(inline="always", cache=True)
def sin_cos_wide(x, quadrant_shift):
    """sin(x + quadrant_shift * pi/2), reduced in float64 (any x)."""
    xd = np.float64(x)
    t = xd * _TWO_OVER_PI + _SHIFT64
    k = t - _SHIFT64
    rd = ((xd - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    q = np.int32(np.float64(t).view(np.int64) & 3) + quadrant_shift  # low bits: k mod 4
    r = np.float32(rd)
    r = _R_BOUND if r > _R_BOUND else r
    r = -_R_BOUND if r < -_R_BOUND else r
    return _sin_cos_poly(r, q, x)


@njit(inline="always", cache=True)
def sin_cos(x, quadrant_shift):
    """sin(x + quadrant_shift * pi/2), quadrant_shift 0 or 1.

    The narrow reduction below SIN_NARROW_LIMIT, the float64 one from there on
    (and for inf and nan); chosen per value, so a loop that knows its values
    are all below the limit may call ``sin_cos_narrow`` instead, same bytes.
    """
    narrow = sin_cos_narrow(x, quadrant_shift)
    wide = sin_cos_wide(x, quadrant_shift)
    return narrow if abs(x) < SIN_NARROW_LIMIT else wide


@njit(inline="always", cache=True)
def sin(x):
    """sin of a float32 (exact reduction for |x| < 3.3e9, module docstring)."""
    return sin_cos(x, 0)


@njit(inline="always", cache=True)
def cos(x):
    """cos of a float32 (exact reduction for |x| < 3.3e9, module docstring)."""
    return sin_cos(x, 1)


@njit(inline="always", cache=True)
def abs_bits_max(v):
    """max over v of |v[i]|'s bits as int32 (nan above inf); an int
    reduction, which LLVM vectorises (a float max would need fastmath)."""
    b = np.int32(0)
    for i in range(v.shape[0]):
        a = np.int32(np.float32(v[i]).view(np.int32) & 0x7FFFFFFF)
        b = a if a > b else b
    return b
