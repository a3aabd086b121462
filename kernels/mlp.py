"""MLP forward passes and embedding decodes over row tiles (DESIGN §4.2).

The plan (``plurel_fast.plan.mlp.MlpBank.freeze``) packs every MLP and every
embedding table of one SCM into a few flat arrays (``MlpBankArrays``):

- ``weights`` float32 (W,): all weight matrices, each row-major with shape
  ``(in_dim, out_dim)``, so ``x @ W`` reads contiguous rows of ``W``;
- ``layers`` int64 (num_layers, 5): per layer ``[weight_offset, in_dim,
  out_dim, act_code, act_param_offset]``; ``act_code`` is -1 on the last
  (linear) layer of an MLP, ``act_param_offset`` is -1 unless the activation
  has parameters (``random_sine``);
- ``layer_scale`` float32 (num_layers,): the scale ``s`` of a hidden layer;
- ``act_params`` float32 (P,): per ``random_sine`` layer ``m`` then
  ``a[0..m)``, ``f[0..m)``, ``phi[0..m)``;
- ``mlps`` int64 (num_mlps, 2): ``[first_layer, num_layers]``;
- ``emb_offsets`` int64 (num_tables, 3): ``[offset, num_categories, dim]``
  into ``emb_weights`` float32, each table row-major (categories, dim).

Forward of one row: for a hidden layer ``x <- clamp(s * act(x W), -1e6, 1e6)``,
the last layer is ``x <- x W``; no biases. Everything is float32.

The scalar and tile functions are plain ``@njit(cache=True)`` so that other
parallel kernels (the SCM propagation) can call them on their own tiles; the
``mlp_forward`` / ``categorical_decode`` / ``embedding_lookup`` wrappers check
arguments and run a ``prange`` over row tiles. Every row is computed by the
same sequence of float32 operations whatever the tiling, so results do not
depend on the thread count or on how rows are split.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
from numba import njit, prange

from plurel_fast.kernels.codes import (
    ACTIVATIONS,
    EMB_CATEGORIES,
    EMB_DIM,
    EMB_OFFSET,
    FOLD_MAX,
    FOLD_SUM,
    LAYER_ACT,
    LAYER_ACT_PARAMS,
    LAYER_IN,
    LAYER_OUT,
    LAYER_WEIGHT_OFFSET,
    MLP_FIRST_LAYER,
    MLP_NUM_LAYERS,
)

from plurel_fast.kernels import simd, vmath

# ---------------------------------------------------------------------------
# Activation codes: the index in this tuple (DESIGN §4.2 order).
# ---------------------------------------------------------------------------

# The names are the configuration's (kernels.codes.ACTIVATIONS).
ACTIVATION_NAMES = ACTIVATIONS

(
    RELU,
    ELU,
    SELU,
    SILU,
    SOFTSIGN,
    TANH,
    SIGMOID,
    HARDSWISH,
    MISH,
    LEAKY_RELU,
    GELU,
    SOFTPLUS,
    HARDSIGMOID,
    HARDTANH,
    CELU,
    TANHSHRINK,
    RRELU,
    LOGSIGMOID,
    SOFTSHRINK,
    HARDSHRINK,
    IDENTITY,
    ABS,
    SIN,
    COS,
    SIGN,
    CLAMP,
    SIGNED_LOG1P,
    BENT_IDENTITY,
    RANDOM_SINE,
) = range(len(ACTIVATION_NAMES))

LINEAR = -1  # act_code of the last layer of an MLP

_F = np.float32
_ZERO = _F(0.0)
_ONE = _F(1.0)
_TWO = _F(2.0)
_HALF = _F(0.5)
_THREE = _F(3.0)
_SIX = _F(6.0)
_SOFTPLUS_THRESHOLD = _F(20.0)
_SELU_ALPHA = _F(1.6732632423543772)
_SELU_SCALE = _F(1.0507009873554805)
_LEAKY_SLOPE = _F(0.01)
_RRELU_SLOPE = _F((1.0 / 8.0 + 1.0 / 3.0) / 2.0)
_SHRINK_LAMBDA = _F(0.5)
_INV_SQRT2 = _F(1.0 / math.sqrt(2.0))
# Beyond this |x| the -1 in bent_identity's sqrt(x^2 + 1) - 1 is below float32
# resolution, and x^2 could overflow: the asymptote (|x| - 1) / 2 + x is used.
_BENT_LARGE = _F(1e8)
_CLAMP_HIDDEN = _F(1e6)

# Rows per tile of the public wrappers: two (tile, 32) float32 scratch buffers
# and a 32 x 32 weight matrix stay in L1.
TILE_ROWS = 64
# Rows per prange part; the part count depends on the row count only (calling
# numba.get_num_threads inside a cached kernel defeats the cache).
_ROWS_PER_PART = 4096


# ---------------------------------------------------------------------------
# Scalar activations (torch formulas, eval mode; float32 in, float32 out)
#
# Transcendentals come from ``vmath`` (branch-free float32 exp, expm1, log1p,
# tanh, erf, sin, cos: 1-3 ulp), not from ``math``, whose calls are scalar
# libm calls here (no SVML) and keep the loops of ``_activate_flat`` from
# vectorising. Helpers are written with selects instead of branches and
# ``np.divide`` instead of ``/`` (numba's ``/`` tests for a zero divisor and
# raises, a branch that stops the vectoriser) and inlined into those loops.
# ---------------------------------------------------------------------------


@njit(cache=True)
def _relu(x):
    return x if x > _ZERO else _ZERO


@njit(inline="always", cache=True)
def _elu(x):
    # alpha 1; the expm1 of x > 0 (inf for large x) is computed but not used
    e = vmath.expm1_88(x)
    return x if x > _ZERO else e


@njit(inline="always", cache=True)
def _selu(x):
    neg = _SELU_SCALE * (_SELU_ALPHA * vmath.expm1_88(x))
    return _SELU_SCALE * x if x > _ZERO else neg


@njit(inline="always", cache=True)
def _sigmoid(x):
    # x >= 0: 1 / (1 + exp(-x)); x < 0: e / (1 + e), e = exp(x) (no overflow)
    return vmath.sigmoid(x)


@njit(inline="always", cache=True)
def _silu(x):
    return x * vmath.sigmoid(x)


@njit(inline="always", cache=True)
def _softsign(x):
    return np.divide(x, _ONE + abs(x))


@njit(inline="always", cache=True)
def _tanh(x):
    return vmath.tanh(x)


@njit(cache=True)
def _hardswish(x):
    return x * min(max(x + _THREE, _ZERO), _SIX) / _SIX


@njit(inline="always", cache=True)
def _softplus(x):
    # beta 1, threshold 20 (linear above); below it exp cannot overflow
    return vmath.softplus(x)


@njit(inline="always", cache=True)
def _mish(x):
    # x * tanh(softplus(x)) with tanh(log1p(e)) = n / (n + 2), n = e (e + 2),
    # e = exp(x): one exp instead of exp, log1p and tanh. Above the softplus
    # threshold tanh(softplus(x)) = tanh(x) = 1 in float32, and so is n / (n + 2)
    # at x = 20, where the argument is clamped.
    e = vmath.exp88(min(x, _SOFTPLUS_THRESHOLD))
    n = e * (e + _TWO)
    return x * np.divide(n, n + _TWO)


@njit(cache=True)
def _leaky_relu(x):
    return x if x >= _ZERO else x * _LEAKY_SLOPE


@njit(inline="always", cache=True)
def _gelu(x):
    # exact (erf) form, torch's default approximate='none'
    return _HALF * x * (_ONE + vmath.erf(x * _INV_SQRT2))


@njit(cache=True)
def _hardsigmoid(x):
    return min(max(x + _THREE, _ZERO), _SIX) / _SIX


@njit(cache=True)
def _hardtanh(x):
    # also clamp(-1, 1)
    return min(max(x, -_ONE), _ONE)


@njit(inline="always", cache=True)
def _tanhshrink(x):
    return x - vmath.tanh(x)


@njit(cache=True)
def _rrelu(x):
    # outside training torch uses the mean slope (lower + upper) / 2
    return x if x >= _ZERO else x * _RRELU_SLOPE


@njit(inline="always", cache=True)
def _logsigmoid(x):
    # -softplus(-x) without overflow: min(x, 0) - log1p(exp(-|x|))
    return min(x, _ZERO) - vmath.log1p(vmath.exp88(-abs(x)))


@njit(cache=True)
def _softshrink(x):
    if x > _SHRINK_LAMBDA:
        return x - _SHRINK_LAMBDA
    if x < -_SHRINK_LAMBDA:
        return x + _SHRINK_LAMBDA
    return _ZERO


@njit(cache=True)
def _hardshrink(x):
    return x if abs(x) > _SHRINK_LAMBDA else _ZERO


@njit(cache=True)
def _identity(x):
    return x


@njit(cache=True)
def _abs(x):
    return abs(x)


@njit(inline="always", cache=True)
def _sin(x):
    return vmath.sin(x)


@njit(inline="always", cache=True)
def _cos(x):
    return vmath.cos(x)


@njit(cache=True)
def _sign(x):
    if x > _ZERO:
        return _ONE
    if x < _ZERO:
        return -_ONE
    return _ZERO


@njit(inline="always", cache=True)
def _signed_log1p(x):
    return _sign(x) * vmath.log1p(abs(x))


@njit(inline="always", cache=True)
def _bent_identity(x):
    # (sqrt(x^2 + 1) - 1) / 2 rewritten without the cancellation near 0; beyond
    # _BENT_LARGE the asymptote (x^2 may overflow there, and is not used)
    near = _HALF * np.divide(x * x, math.sqrt(x * x + _ONE) + _ONE) + x
    far = _HALF * (abs(x) - _ONE) + x
    return far if abs(x) > _BENT_LARGE else near


@njit(cache=True)
def _random_sine(x, params, p_off):
    # each term fused twice: the argument f x + phi and the sum a sin(.) + acc
    m = np.int64(params[p_off])
    acc = _ZERO
    for i in range(m):
        amplitude = params[p_off + 1 + i]
        freq = params[p_off + 1 + m + i]
        phase = params[p_off + 1 + 2 * m + i]
        acc = simd.fma32(amplitude, vmath.sin(simd.fma32(freq, x, phase)), acc)
    return acc


@njit(cache=True)
def activate(code, x, params, p_off):
    """One activation of a float32 scalar with torch's (eval-mode) formula.

    Parameters
    ----------
    code : int
        Index in ``ACTIVATION_NAMES`` (DESIGN §4.2); ``LINEAR`` (-1) returns ``x``.
    x : float32
        Pre-activation.
    params : float32 array
        ``act_params`` of the bank; read only by ``random_sine``.
    p_off : int
        Offset of this layer's parameters in ``params`` (``m`` first).

    Returns
    -------
    float32
        Finite for every finite ``x``: exponentials are only taken of
        arguments that cannot overflow.
    """
    if code == RELU:
        return _relu(x)
    if code == ELU or code == CELU:  # celu with alpha 1 is elu
        return _elu(x)
    if code == SELU:
        return _selu(x)
    if code == SILU:
        return _silu(x)
    if code == SOFTSIGN:
        return _softsign(x)
    if code == TANH:
        return _tanh(x)
    if code == SIGMOID:
        return _sigmoid(x)
    if code == HARDSWISH:
        return _hardswish(x)
    if code == MISH:
        return _mish(x)
    if code == LEAKY_RELU:
        return _leaky_relu(x)
    if code == GELU:
        return _gelu(x)
    if code == SOFTPLUS:
        return _softplus(x)
    if code == HARDSIGMOID:
        return _hardsigmoid(x)
    if code == HARDTANH or code == CLAMP:
        return _hardtanh(x)
    if code == TANHSHRINK:
        return _tanhshrink(x)
    if code == RRELU:
        return _rrelu(x)
    if code == LOGSIGMOID:
        return _logsigmoid(x)
    if code == SOFTSHRINK:
        return _softshrink(x)
    if code == HARDSHRINK:
        return _hardshrink(x)
    if code == ABS:
        return _abs(x)
    if code == SIN:
        return _sin(x)
    if code == COS:
        return _cos(x)
    if code == SIGN:
        return _sign(x)
    if code == SIGNED_LOG1P:
        return _signed_log1p(x)
    if code == BENT_IDENTITY:
        return _bent_identity(x)
    if code == RANDOM_SINE:
        return _random_sine(x, params, p_off)
    return x  # IDENTITY, LINEAR (other codes are rejected when a bank is built)


# ---------------------------------------------------------------------------
# Tile kernels
# ---------------------------------------------------------------------------


@njit(cache=True)
def _dense_tile(src, n_rows, in_dim, weights, w_off, out_dim, dst):
    """``dst[t, :out_dim] = src[t, :in_dim] @ W`` for ``t < n_rows`` (float32).

    Every output element is the fused chain ``acc = fma(x[k], W[k, j], acc)``
    over k = 0, 1, ... (``kernels.simd``): 32- and 16-column blocks go through
    the register-blocked micro-kernels, eight or four rows at a time, the last columns
    (e.g. the single output of a numerical decoder) 16 rows at a time along the
    vector lanes, and the last rows through a scalar loop with four independent
    chains. All paths give the same bytes, so a row's value
    does not depend on the tiling, and on any CPU (explicit FMA, no
    ``fastmath``). Rows of ``src`` and ``dst`` must be contiguous.
    """
    col = 0
    while col + 2 * simd.LANES <= out_dim:
        t = 0
        while t + 2 * simd.BLOCK_ROWS <= n_rows:
            simd.fma_block_8x2(src, t, in_dim, weights, w_off, out_dim, col, dst)
            t += 2 * simd.BLOCK_ROWS
        while t + simd.BLOCK_ROWS <= n_rows:
            simd.fma_block_4x2(src, t, in_dim, weights, w_off, out_dim, col, dst)
            t += simd.BLOCK_ROWS
        while t < n_rows:
            simd.fma_block_1x2(src, t, in_dim, weights, w_off, out_dim, col, dst)
            t += 1
        col += 2 * simd.LANES
    if col + simd.LANES <= out_dim:
        t = 0
        while t + simd.BLOCK_ROWS <= n_rows:
            simd.fma_block_4x1(src, t, in_dim, weights, w_off, out_dim, col, dst)
            t += simd.BLOCK_ROWS
        while t < n_rows:
            simd.fma_block_1x1(src, t, in_dim, weights, w_off, out_dim, col, dst)
            t += 1
        col += simd.LANES
    w = weights[w_off : w_off + in_dim * out_dim]
    for j in range(col, out_dim):
        t = 0
        while t + simd.LANES <= n_rows:
            simd.fma_column_16(src, t, in_dim, weights, w_off, out_dim, j, dst)
            t += simd.LANES
        while t + 4 <= n_rows:
            x0 = src[t]
            x1 = src[t + 1]
            x2 = src[t + 2]
            x3 = src[t + 3]
            a0 = _ZERO
            a1 = _ZERO
            a2 = _ZERO
            a3 = _ZERO
            for k in range(in_dim):
                wk = w[k * out_dim + j]
                a0 = simd.fma32(x0[k], wk, a0)
                a1 = simd.fma32(x1[k], wk, a1)
                a2 = simd.fma32(x2[k], wk, a2)
                a3 = simd.fma32(x3[k], wk, a3)
            dst[t, j] = a0
            dst[t + 1, j] = a1
            dst[t + 2, j] = a2
            dst[t + 3, j] = a3
            t += 4
        while t < n_rows:
            x0 = src[t]
            a0 = _ZERO
            for k in range(in_dim):
                a0 = simd.fma32(x0[k], w[k * out_dim + j], a0)
            dst[t, j] = a0
            t += 1


# Folds of ``mlp_forward_fold_tile`` (the codes of kernels.scm's aggregations).
_FOLD_CLAMP = _F(simd.FOLD_CLAMP)


@njit(inline="always", cache=True)
def _fold_scalar(fold, old, v, w):
    """``old`` folded with clamp(w * v, ±1e4), as ``simd``'s folding blocks do it."""
    y = w * v
    y = _FOLD_CLAMP if y > _FOLD_CLAMP else (-_FOLD_CLAMP if y < -_FOLD_CLAMP else y)
    if fold == FOLD_SUM:
        return old + y
    if fold == FOLD_MAX:
        return y if y > old else old
    return old * y


@njit(cache=True)
def _dense_fold_tile(src, n_rows, in_dim, weights, w_off, out_dim, acc, fold, w):
    """``acc[t, j] = fold(acc[t, j], clamp(w * (src[t] @ W)[j], ±1e4))`` for t < n_rows.

    ``_dense_tile`` with its results folded (sum, max or product) into ``acc``
    in registers instead of stored: the same chains, so the same bytes as
    ``_dense_tile`` followed by the fold in scalar code.
    """
    col = 0
    while col + 2 * simd.LANES <= out_dim:
        t = 0
        while t + 8 <= n_rows:
            simd.fold_8x2(src, t, in_dim, weights, w_off, out_dim, col, acc, w, fold)
            t += 8
        while t + 4 <= n_rows:
            simd.fold_4x2(src, t, in_dim, weights, w_off, out_dim, col, acc, w, fold)
            t += 4
        while t < n_rows:
            simd.fold_1x2(src, t, in_dim, weights, w_off, out_dim, col, acc, w, fold)
            t += 1
        col += 2 * simd.LANES
    if col + simd.LANES <= out_dim:
        t = 0
        while t + 4 <= n_rows:
            simd.fold_4x1(src, t, in_dim, weights, w_off, out_dim, col, acc, w, fold)
            t += 4
        while t < n_rows:
            simd.fold_1x1(src, t, in_dim, weights, w_off, out_dim, col, acc, w, fold)
            t += 1
        col += simd.LANES
    for j in range(col, out_dim):
        for t in range(n_rows):
            a = _ZERO
            for k in range(in_dim):
                a = simd.fma32(src[t, k], weights[w_off + k * out_dim + j], a)
            acc[t, j] = _fold_scalar(fold, acc[t, j], a, w)


@njit(cache=True)
def _clamp_hidden(v):
    return min(max(v, -_CLAMP_HIDDEN), _CLAMP_HIDDEN)


# Elements per block of ``_random_sine_flat`` and ``_sin_cos_flat``: the
# scratch stays small (one allocation of 1 KiB per call) and in L1 across the m
# passes, and one large value sends only its block down the slower path.
_SINE_BLOCK = 256
_SIN_NARROW_LIMIT64 = np.float64(vmath.SIN_NARROW_LIMIT)


@njit(cache=True)
def _sin_cos_block(x, quadrant_shift, out):
    """``out[i] = vmath.sin_cos(x[i], quadrant_shift)`` for a block with some
    |x| >= ``vmath.SIN_NARROW_LIMIT``: the float32 path everywhere, then the
    float64 one where needed, 16 values at a time (two loops that vectorise;
    one loop computing both runs the float32 half at the float64 width)."""
    n = x.shape[0]
    for i in range(n):
        out[i] = vmath.sin_cos_narrow(x[i], quadrant_shift)
    for lo in range(0, n, 16):
        xs = x[lo : min(lo + 16, n)]
        if vmath.abs_bits_max(xs) >= vmath.SIN_NARROW_LIMIT_BITS:
            dst = out[lo : min(lo + 16, n)]
            for i in range(xs.shape[0]):
                wide = vmath.sin_cos_wide(xs[i], quadrant_shift)
                dst[i] = wide if abs(xs[i]) >= vmath.SIN_NARROW_LIMIT else dst[i]


@njit(cache=True)
def _sin_cos_flat(v, quadrant_shift, scale):
    """``v <- clamp(scale * sin(v + quadrant_shift * pi/2), -1e6, 1e6)``.

    A block whose values are all below ``vmath.SIN_NARROW_LIMIT`` (nearly all)
    takes the float32 reduction alone; the others pick it per value. Either
    way a value gets ``vmath.sin_cos``'s bytes.
    """
    n = v.shape[0]
    tmp = np.empty(0, dtype=np.float32)
    for lo in range(0, n, _SINE_BLOCK):
        # a view, so that i >= 0 is evident (no wraparound test to stop LLVM)
        blk = v[lo : min(lo + _SINE_BLOCK, n)]
        nb = blk.shape[0]
        if vmath.abs_bits_max(blk) < vmath.SIN_NARROW_LIMIT_BITS:
            for i in range(nb):
                blk[i] = _clamp_hidden(scale * vmath.sin_cos_narrow(blk[i], quadrant_shift))
        else:
            if tmp.shape[0] < nb:
                tmp = np.empty(_SINE_BLOCK, dtype=np.float32)
            x = tmp[:nb]
            for i in range(nb):
                x[i] = blk[i]
            _sin_cos_block(x, quadrant_shift, blk)
            for i in range(nb):
                blk[i] = _clamp_hidden(scale * blk[i])


@njit(cache=True)
def _random_sine_flat(v, scale, params, p_off):
    """``v <- clamp(scale * random_sine(v), -1e6, 1e6)`` on a contiguous run.

    Term by term over a block, so that the sine loop is an element loop and
    vectorises; each element still sums its terms from 0 in the order
    0, 1, ..., m - 1, so its bytes equal ``_random_sine``'s. A term whose
    arguments in the block are all below ``vmath.SIN_NARROW_LIMIT`` (bounded
    from max |v|) takes the float32 reduction alone (same bytes).
    """
    n = v.shape[0]
    m = np.int64(params[p_off])
    nb0 = min(n, _SINE_BLOCK)
    acc = np.empty(nb0, dtype=np.float32)
    arg = np.empty(nb0, dtype=np.float32)
    sines = np.empty(nb0, dtype=np.float32)
    for lo in range(0, n, _SINE_BLOCK):
        blk = v[lo : min(lo + _SINE_BLOCK, n)]
        nb = blk.shape[0]
        # |fma(f, x, phi)| <= (|f| max|x| + |phi|)(1 + 2^-24); nan and inf fail
        max_abs = np.float64(np.int32(vmath.abs_bits_max(blk)).view(np.float32))
        for i in range(nb):
            acc[i] = _ZERO
        for j in range(m):
            amplitude = params[p_off + 1 + j]
            freq = params[p_off + 1 + m + j]
            phase = params[p_off + 1 + 2 * m + j]
            bound = abs(np.float64(freq)) * max_abs + abs(np.float64(phase))
            if bound * 1.000001 < _SIN_NARROW_LIMIT64:
                for i in range(nb):
                    s = vmath.sin_cos_narrow(simd.fma32(freq, blk[i], phase), 0)
                    acc[i] = simd.fma32(amplitude, s, acc[i])
            else:
                a = arg[:nb]
                sn = sines[:nb]
                for i in range(nb):
                    a[i] = simd.fma32(freq, blk[i], phase)
                _sin_cos_block(a, 0, sn)
                for i in range(nb):
                    acc[i] = simd.fma32(amplitude, sn[i], acc[i])
        for i in range(nb):
            blk[i] = _clamp_hidden(scale * acc[i])


@njit(cache=True)
def _activate_flat(v, code, scale, params, p_off):
    """``v <- clamp(scale * act(v), -1e6, 1e6)`` on a contiguous 1-D view.

    One loop per activation, so the piecewise-linear ones vectorise and no
    element pays for the dispatch. (A generic loop taking the scalar function
    as an argument would be shorter, but numba cannot cache such kernels.)
    """
    n = v.shape[0]
    if code == RELU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _relu(v[i]))
    elif code == ELU or code == CELU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _elu(v[i]))
    elif code == SELU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _selu(v[i]))
    elif code == SILU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _silu(v[i]))
    elif code == SOFTSIGN:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _softsign(v[i]))
    elif code == TANH:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _tanh(v[i]))
    elif code == SIGMOID:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _sigmoid(v[i]))
    elif code == HARDSWISH:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _hardswish(v[i]))
    elif code == MISH:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _mish(v[i]))
    elif code == LEAKY_RELU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _leaky_relu(v[i]))
    elif code == GELU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _gelu(v[i]))
    elif code == SOFTPLUS:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _softplus(v[i]))
    elif code == HARDSIGMOID:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _hardsigmoid(v[i]))
    elif code == HARDTANH or code == CLAMP:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _hardtanh(v[i]))
    elif code == TANHSHRINK:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _tanhshrink(v[i]))
    elif code == RRELU:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _rrelu(v[i]))
    elif code == LOGSIGMOID:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _logsigmoid(v[i]))
    elif code == SOFTSHRINK:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _softshrink(v[i]))
    elif code == HARDSHRINK:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _hardshrink(v[i]))
    elif code == ABS:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _abs(v[i]))
    elif code == SIN:
        _sin_cos_flat(v, 0, scale)
    elif code == COS:
        _sin_cos_flat(v, 1, scale)
    elif code == SIGN:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _sign(v[i]))
    elif code == SIGNED_LOG1P:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _signed_log1p(v[i]))
    elif code == BENT_IDENTITY:
        for i in range(n):
            v[i] = _clamp_hidden(scale * _bent_identity(v[i]))
    elif code == RANDOM_SINE:
        _random_sine_flat(v, scale, params, p_off)
    else:  # IDENTITY
        for i in range(n):
            v[i] = _clamp_hidden(scale * v[i])


@njit(cache=True)
def _hidden_layers(x, first, last, layers, weights, layer_scale, act_params, buf_a, buf_b):
    """Layers first .. last - 1 of an MLP on the rows of ``x``; returns the input
    of layer ``last`` (``x`` itself when first == last, else a view of a buffer)."""
    n_rows = x.shape[0]
    # Contiguous (n_rows, width) views of the scratch: the activation then
    # runs over one flat run of n_rows * width values.
    flat_a = buf_a.reshape(buf_a.size)
    flat_b = buf_b.reshape(buf_b.size)
    src = x
    use_a = True
    for layer in range(first, last):
        out_dim = layers[layer, LAYER_OUT]
        flat = flat_a[: n_rows * out_dim] if use_a else flat_b[: n_rows * out_dim]
        dst = flat.reshape((n_rows, out_dim))
        _dense_tile(src, n_rows, layers[layer, LAYER_IN], weights,
                    layers[layer, LAYER_WEIGHT_OFFSET], out_dim, dst)
        _activate_flat(flat, layers[layer, LAYER_ACT], layer_scale[layer], act_params,
                       layers[layer, LAYER_ACT_PARAMS])
        src = dst
        use_a = not use_a
    return src


@njit(cache=True)
def mlp_forward_tile(
    x, mlp_id, mlps, layers, weights, layer_scale, act_params, out, buf_a, buf_b
):
    """Forward pass of one MLP on a tile of rows (DESIGN §4.2).

    Parameters
    ----------
    x : float32 array, shape (T, in_dim), C-contiguous
        Input rows.
    mlp_id : int
        Row of ``mlps``.
    mlps, layers, weights, layer_scale, act_params : arrays
        The packed bank (module docstring).
    out : float32 array, shape (T, out_dim), C-contiguous
        Output rows; may not alias ``x`` or the buffers.
    buf_a, buf_b : float32 arrays, C-contiguous, e.g. shape (T, max_width)
        Scratch for the hidden layers, each with at least ``T`` times the
        widest hidden layer elements; nothing is allocated here.
    """
    first = mlps[mlp_id, MLP_FIRST_LAYER]
    last = first + mlps[mlp_id, MLP_NUM_LAYERS] - 1
    src = _hidden_layers(x, first, last, layers, weights, layer_scale, act_params, buf_a, buf_b)
    _dense_tile(src, x.shape[0], layers[last, LAYER_IN], weights,
                layers[last, LAYER_WEIGHT_OFFSET], layers[last, LAYER_OUT], out)


@njit(cache=True)
def mlp_forward_fold_tile(
    x, mlp_id, mlps, layers, weights, layer_scale, act_params, acc, fold, w, buf_a, buf_b
):
    """``acc[t] = fold(acc[t], clamp(w * mlp(x[t]), ±1e4))`` elementwise (DESIGN §4.4).

    ``mlp_forward_tile`` then the fold of an encoder's output into its node's
    aggregate, ``fold`` one of FOLD_SUM, FOLD_MAX, FOLD_PRODUCT, with the last
    layer's results folded in registers (``_dense_fold_tile``): the same bytes.
    ``acc`` (T, out_dim), C-contiguous; the other arguments as ``mlp_forward_tile``.
    """
    first = mlps[mlp_id, MLP_FIRST_LAYER]
    last = first + mlps[mlp_id, MLP_NUM_LAYERS] - 1
    src = _hidden_layers(x, first, last, layers, weights, layer_scale, act_params, buf_a, buf_b)
    _dense_fold_tile(src, x.shape[0], layers[last, LAYER_IN], weights,
                     layers[last, LAYER_WEIGHT_OFFSET], layers[last, LAYER_OUT],
                     acc, fold, w)


@njit(cache=True)
def categorical_decode_tile(h, emb_id, emb_offsets, emb_weights, out_labels):
    """Arg-max over categories of ``dot(E[c], h[t])`` per row (DESIGN §4.2).

    Parameters
    ----------
    h : float32 array, shape (T, dim)
        Rows to decode (the decoder MLP's output).
    emb_id : int
        Row of ``emb_offsets``.
    emb_offsets, emb_weights : arrays
        Packed embedding tables.
    out_labels : int64 array, shape (T,)
        The first category reaching the maximum similarity (``torch.argmax``
        on ties).
    """
    off = emb_offsets[emb_id, EMB_OFFSET]
    num_categories = emb_offsets[emb_id, EMB_CATEGORIES]
    dim = emb_offsets[emb_id, EMB_DIM]
    n = h.shape[0]
    # Rows along the vector lanes: h transposed once, then every similarity is
    # the same chain sim = sim + E[c, k] * h[t, k] over k = 0, 1, ... per row,
    # all rows at once (a chain per row one at a time is latency-bound).
    ht = simd.empty_aligned((dim, n))
    for k in range(dim):  # contiguous stores (half the time of contiguous loads)
        for t in range(n):
            ht[k, t] = h[t, k]
    sim = np.empty(n, dtype=np.float32)
    best_sim = np.empty(n, dtype=np.float32)
    for c in range(num_categories):
        base = off + c * dim
        for t in range(n):
            sim[t] = _ZERO
        for k in range(dim):
            e = emb_weights[base + k]
            for t in range(n):
                sim[t] += e * ht[k, t]
        if c == 0:
            for t in range(n):
                best_sim[t] = sim[t]
                out_labels[t] = 0
        else:
            # NaN never wins; the first of equal maxima stays
            for t in range(n):
                better = sim[t] > best_sim[t]
                best_sim[t] = sim[t] if better else best_sim[t]
                out_labels[t] = c if better else out_labels[t]


@njit(cache=True)
def embedding_lookup_tile(labels, emb_id, emb_offsets, emb_weights, out):
    """``out[t, :] = E[labels[t], :]`` (float32 rows of the embedding table)."""
    off = emb_offsets[emb_id, EMB_OFFSET]
    dim = emb_offsets[emb_id, EMB_DIM]
    for t in range(labels.shape[0]):
        base = off + labels[t] * dim
        for k in range(dim):
            out[t, k] = emb_weights[base + k]


# ---------------------------------------------------------------------------
# Parallel drivers
# ---------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _mlp_forward(x, mlp_id, mlps, layers, weights, layer_scale, act_params, max_width, tile_rows, out):
    n = x.shape[0]
    parts = (n + _ROWS_PER_PART - 1) // _ROWS_PER_PART
    for part in prange(parts):
        lo = part * _ROWS_PER_PART
        hi = min(lo + _ROWS_PER_PART, n)
        buf_a = simd.empty_aligned((tile_rows, max_width))
        buf_b = simd.empty_aligned((tile_rows, max_width))
        for start in range(lo, hi, tile_rows):
            stop = min(start + tile_rows, hi)
            mlp_forward_tile(
                x[start:stop], mlp_id, mlps, layers, weights, layer_scale, act_params,
                out[start:stop], buf_a, buf_b,
            )


@njit(parallel=True, cache=True)
def _categorical_decode(h, emb_id, emb_offsets, emb_weights, out):
    n = h.shape[0]
    parts = (n + _ROWS_PER_PART - 1) // _ROWS_PER_PART
    for part in prange(parts):
        lo = part * _ROWS_PER_PART
        hi = min(lo + _ROWS_PER_PART, n)
        categorical_decode_tile(h[lo:hi], emb_id, emb_offsets, emb_weights, out[lo:hi])


@njit(parallel=True, cache=True)
def _embedding_lookup(labels, emb_id, emb_offsets, emb_weights, out):
    n = labels.shape[0]
    parts = (n + _ROWS_PER_PART - 1) // _ROWS_PER_PART
    for part in prange(parts):
        lo = part * _ROWS_PER_PART
        hi = min(lo + _ROWS_PER_PART, n)
        embedding_lookup_tile(labels[lo:hi], emb_id, emb_offsets, emb_weights, out[lo:hi])


@njit(parallel=True, cache=True)
def _activate_array(code, x, params, p_off, out):
    for i in prange(x.shape[0]):
        out[i] = activate(code, x[i], params, p_off)


# ---------------------------------------------------------------------------
# Public wrappers
# ---------------------------------------------------------------------------


def _kernel_array(arr, dtype):
    """A C-contiguous, writeable array of ``dtype`` (one compiled signature)."""
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _float_rows(name, x, width, what):
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a numeric array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(
            f"{name} must have shape (N, {width}) ({what}), got shape {x.shape}"
        )
    return _kernel_array(x, np.float32)


def _bank_index(name, value, count, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer id, got {value!r}")
    if not 0 <= int(value) < count:
        raise ValueError(f"{name}={int(value)} is out of range: the bank has {count} {what}")
    return np.int64(value)


def _bank_arrays(bank):
    return (
        _kernel_array(bank.mlps, np.int64),
        _kernel_array(bank.layers, np.int64),
        _kernel_array(bank.weights, np.float32),
        _kernel_array(bank.layer_scale, np.float32),
        _kernel_array(bank.act_params, np.float32),
    )


def mlp_forward(bank, mlp_id, x, tile_rows: int = TILE_ROWS) -> np.ndarray:
    """Run MLP ``mlp_id`` of ``bank`` on every row of ``x`` (DESIGN §4.2).

    Parameters
    ----------
    bank : MlpBankArrays
        From ``plurel_fast.plan.mlp.MlpBank.freeze``.
    mlp_id : int
        Id returned by ``MlpBank.add_mlp``.
    x : array, shape (N, in_dim)
        Input rows; converted to float32.
    tile_rows : int
        Rows per tile (scratch is ``(tile_rows, max_width)`` per part). The
        result does not depend on it.

    Returns
    -------
    np.ndarray of float32, shape (N, out_dim)
    """
    mlp_id = _bank_index("mlp_id", mlp_id, bank.mlps.shape[0], "MLPs")
    if getattr(bank, "lazy", False):  # draw this MLP's matrices alone
        layers, weights = bank.weights_of([mlp_id])
        bank = msgspec.structs.replace(bank, layers=layers, weights=weights, lazy=False)
    mlps, layers, weights, layer_scale, act_params = _bank_arrays(bank)
    first, num_layers = int(mlps[mlp_id, MLP_FIRST_LAYER]), int(mlps[mlp_id, MLP_NUM_LAYERS])
    in_dim = int(layers[first, LAYER_IN])
    out_dim = int(layers[first + num_layers - 1, LAYER_OUT])
    x = _float_rows("x", x, in_dim, f"the input width of MLP {int(mlp_id)}")
    tile_rows = int(tile_rows)
    if tile_rows < 1:
        raise ValueError(f"tile_rows must be >= 1, got {tile_rows}")
    max_width = int(layers[first : first + num_layers, LAYER_OUT].max())
    out = np.empty((x.shape[0], out_dim), dtype=np.float32)
    _mlp_forward(
        x, mlp_id, mlps, layers, weights, layer_scale, act_params,
        np.int64(max_width), np.int64(tile_rows), out,
    )
    return out


def categorical_decode(bank, emb_id, h) -> np.ndarray:
    """Label of each row: arg-max over categories of ``E[c] · h[t]`` (DESIGN §4.2).

    Parameters
    ----------
    bank : MlpBankArrays
    emb_id : int
        Id returned by ``MlpBank.add_embedding``.
    h : array, shape (N, dim)
        Rows to decode; converted to float32.

    Returns
    -------
    np.ndarray of int64, shape (N,)
        Values in ``[0, num_categories)``; the first maximum wins on ties.
    """
    emb_offsets = _kernel_array(bank.emb_offsets, np.int64)
    emb_weights = _kernel_array(bank.emb_weights, np.float32)
    emb_id = _bank_index("emb_id", emb_id, emb_offsets.shape[0], "embedding tables")
    dim = int(emb_offsets[emb_id, EMB_DIM])
    h = _float_rows("h", h, dim, f"the width of embedding table {int(emb_id)}")
    out = np.empty(h.shape[0], dtype=np.int64)
    _categorical_decode(h, emb_id, emb_offsets, emb_weights, out)
    return out


def embedding_lookup(bank, emb_id, labels) -> np.ndarray:
    """Rows ``E[labels[t]]`` of embedding table ``emb_id``, float32 (N, dim)."""
    emb_offsets = _kernel_array(bank.emb_offsets, np.int64)
    emb_weights = _kernel_array(bank.emb_weights, np.float32)
    emb_id = _bank_index("emb_id", emb_id, emb_offsets.shape[0], "embedding tables")
    num_categories, dim = int(emb_offsets[emb_id, EMB_CATEGORIES]), int(emb_offsets[emb_id, EMB_DIM])
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_categories):
        raise ValueError(
            f"labels must be in [0, {num_categories}) for embedding table {int(emb_id)}, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    labels = _kernel_array(labels, np.int64)
    out = np.empty((labels.shape[0], dim), dtype=np.float32)
    _embedding_lookup(labels, emb_id, emb_offsets, emb_weights, out)
    return out


def apply_activation(code, x, params=None, p_off: int = -1) -> np.ndarray:
    """Elementwise ``activate`` on a 1-D array (float32), for tests and inspection.

    Parameters
    ----------
    code : int or str
        Activation code or name (``ACTIVATION_NAMES``).
    x : array, shape (N,)
    params : float32 array, optional
        Needed by ``random_sine``: ``m, a[m], f[m], phi[m]`` from ``p_off``.
    p_off : int
    """
    if isinstance(code, str):
        if code not in ACTIVATION_NAMES:
            raise ValueError(f"unknown activation {code!r}; known: {', '.join(ACTIVATION_NAMES)}")
        code = ACTIVATION_NAMES.index(code)
    code = int(code)
    if not (code == LINEAR or 0 <= code < len(ACTIVATION_NAMES)):
        raise ValueError(f"activation code must be in [-1, {len(ACTIVATION_NAMES)}), got {code}")
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    x = _kernel_array(x, np.float32)
    if params is None:
        params = np.zeros(1, dtype=np.float32)
    params = _kernel_array(params, np.float32)
    if code == RANDOM_SINE:
        if not 0 <= p_off < params.size:
            raise ValueError(f"random_sine needs params at p_off={p_off}, got {params.size} params")
        m = int(params[p_off])
        if p_off + 1 + 3 * m > params.size:
            raise ValueError(f"random_sine params at p_off={p_off} need {1 + 3 * m} values")
    out = np.empty_like(x)
    _activate_array(np.int64(code), x, params, np.int64(p_off), out)
    return out
