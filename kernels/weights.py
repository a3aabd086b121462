"""Weight matrices of the SCM MLPs and embedding tables, drawn in bulk (DESIGN §4.2).

``draw_weights(key, rows, cols, inits, densities)`` fills K matrices, one after
another, each row-major with shape (rows, cols) = (in, out). Matrix ``m`` gets
the init ``inits[m]`` with torch's fan convention for a matrix stored as (in,
out): fan_in = cols, fan_out = rows. Then, when ``densities[m] < 1``, a
Bernoulli(d) mask and a division by d.

Every number is a pure function of ``(key, m, j)``, with ``j`` the entry's
position in its matrix, drawn by the counter-based RNG of ``kernels.rng``
(``hash64(subkey(key, purpose), m, j)``). Matrices are cut into chunks of
about ``CHUNK_WEIGHTS`` weights that the threads share, but the cut does not
enter any draw: the bytes are the same for any thread count. The purposes:

- mask: entry j is kept when ``uniform(k_mask, m, j) < d`` (always at d = 1);
- value: the uniform inits take ``2 uniform(k_value, m, j) - 1``; the normal
  inits a standard normal from the 64 bits ``hash64(k_value, m, j)`` by the
  ziggurat of Marsaglia & Tsang (2000), 256 layers, the rare rejections
  drawing again from sub-streams of ``k_value``;
- trunc_normal: attempt t >= 1 for an entry whose normal fell outside ±2 is a
  fresh ziggurat normal under ``subkey(k_value, SALT_TRUNC + t)``, until one
  falls inside (rejection: exactly the normal conditioned on [-2, 2]);
- sparse: column c of an R-row matrix zeroes ceil(0.5 R) rows chosen uniformly
  by selection sampling (Knuth's Algorithm S): row i is picked when
  ``uniform(k_sparse, m, i·cols + c) · (R - i) <`` (zeros still to pick).
  The other entries are N(0, 0.01²), then masked.

Values are computed in float64 and rounded once to float32. Every entry is
drawn, masked or not (the loops are branch-free, see ``_draw_matrix``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from plurel_fast.kernels.codes import INITIALIZATIONS, LAYER_IN, LAYER_OUT, LAYER_WEIGHT_OFFSET
from plurel_fast.kernels.rng import hash64, subkey, uniform, uniform_open

# Init codes: the index in this tuple (the configuration's names).
INIT_NAMES = INITIALIZATIONS
KAIMING_NORMAL = INIT_NAMES.index("kaiming_normal")
KAIMING_UNIFORM = INIT_NAMES.index("kaiming_uniform")
XAVIER_NORMAL = INIT_NAMES.index("xavier_normal")
XAVIER_UNIFORM = INIT_NAMES.index("xavier_uniform")
TRUNC_NORMAL = INIT_NAMES.index("trunc_normal")
SPARSE = INIT_NAMES.index("sparse")

SPARSE_STD = 0.01
SPARSITY = 0.5
TRUNC_BOUND = 2.0

# Weights per unit of parallel work (whole matrices): small enough to share a
# bank of ~10^7 weights among threads, large enough to cost nothing to schedule.
CHUNK_WEIGHTS = 1 << 15

_U = np.uint64
_SALT_MASK = _U(0x6A09E667F3BCC908)
_SALT_VALUE = _U(0xBB67AE8584CAA73B)
_SALT_SPARSE = _U(0x3C6EF372FE94F82B)
_SALT_TRUNC = _U(0xA54FF53A5F1D36F1)
_SALT_ZIG_BITS = _U(0x510E527FADE682D1)
_SALT_ZIG_WEDGE = _U(0x9B05688C2B3E6C1F)
_SALT_ZIG_TAIL = _U(0x1F83D9ABFB41BD6B)
_SALT_ZIG_TAIL_Y = _U(0x5BE0CD19137E2179)

# ---------------------------------------------------------------------------
# Ziggurat tables (Marsaglia & Tsang 2000, "The ziggurat method for generating
# random variables", J. Stat. Softw. 5(8)), 256 layers of equal area under
# f(x) = exp(-x²/2), for a 52-bit magnitude and a separate sign bit.
# Layer i >= 1 is the box [0, x_i] x [f(x_i), f(x_{i-1})] (x_0 = 0), layer 0
# the box [0, r] x [0, f(r)] plus the tail beyond r, seen as a box of width
# q = v / f(r). A 52-bit integer u gives x = u · W[i]; x < x_{i-1} (u < K[i])
# lies under the curve whatever y is.
# ---------------------------------------------------------------------------

_ZIG_LAYERS = 256
_ZIG_R = 3.6541528853610088  # x_255, the r for which 256 layers of area v close at the top
_M52 = float(1 << 52)


def _ziggurat_tables():
    r = _ZIG_R
    f_r = math.exp(-0.5 * r * r)
    v = r * f_r + math.sqrt(math.pi / 2.0) * math.erfc(r / math.sqrt(2.0))
    k = np.zeros(_ZIG_LAYERS, dtype=np.uint64)
    w = np.zeros(_ZIG_LAYERS, dtype=np.float64)
    f = np.zeros(_ZIG_LAYERS, dtype=np.float64)
    q = v / f_r
    k[0] = int(r / q * _M52)
    w[0] = q / _M52
    f[0] = 1.0
    x = [0.0] * _ZIG_LAYERS  # x[i] = right edge of layer i
    x[_ZIG_LAYERS - 1] = r
    for i in range(_ZIG_LAYERS - 2, 0, -1):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i + 1] + math.exp(-0.5 * x[i + 1] ** 2)))
    for i in range(1, _ZIG_LAYERS):
        w[i] = x[i] / _M52
        f[i] = math.exp(-0.5 * x[i] ** 2)
        k[i] = int(x[i - 1] / x[i] * _M52) if i > 1 else 0
    return k, w, f, v


_ZIG_K, _ZIG_W, _ZIG_F, _ZIG_V = _ziggurat_tables()
_ZIG_INV_R = 1.0 / _ZIG_R
_MASK52 = _U((1 << 52) - 1)
_MASK8 = _U(0xFF)
_S8 = _U(8)
_S9 = _U(9)
_ONE = _U(1)
_MAX_ATTEMPTS = 1 << 20


@njit(cache=True)
def _ziggurat_slow(key, row, draw, bits):
    """The ziggurat's rejection path: ``bits`` missed the fast box; try again.

    Attempt ``a`` (from 0) tests the wedge or tail of the layer of ``bits``
    with uniforms of ``subkey(key, SALT + a)``, then draws fresh bits from
    ``subkey(key, _SALT_ZIG_BITS + a)``.
    """
    for attempt in range(_MAX_ATTEMPTS):
        a = _U(attempt)
        idx = int(bits & _MASK8)
        rabs = (bits >> _S9) & _MASK52
        negative = ((bits >> _S8) & _ONE) == _ONE
        x = float(rabs) * _ZIG_W[idx]
        if rabs < _ZIG_K[idx]:
            return -x if negative else x
        if idx == 0:
            # tail beyond r (Marsaglia 1964): r + e1 / r with 2 e2 > (e1 / r)²
            kt = subkey(key, _SALT_ZIG_TAIL + a)
            for t in range(_MAX_ATTEMPTS):
                kk = subkey(kt, _U(t))
                xx = -math.log(uniform_open(kk, row, draw)) * _ZIG_INV_R
                yy = -math.log(uniform_open(kk ^ _SALT_ZIG_TAIL_Y, row, draw))
                if yy + yy > xx * xx:
                    return -(_ZIG_R + xx) if negative else _ZIG_R + xx
        else:
            y = _ZIG_F[idx] + (_ZIG_F[idx - 1] - _ZIG_F[idx]) * uniform(
                subkey(key, _SALT_ZIG_WEDGE + a), row, draw
            )
            if y < math.exp(-0.5 * x * x):
                return -x if negative else x
        bits = hash64(subkey(key, _SALT_ZIG_BITS + a), row, draw)
    return 0.0  # unreachable: fresh bits miss the fast box with probability 0.015


@njit(inline="always", cache=True)
def ziggurat_normal(key, row, draw):
    """Standard normal for (key, row, draw), by the ziggurat (module docstring).

    One hash and one table look-up 98.5 % of the time: several times cheaper
    than Box-Muller's log, sqrt and cos. Bits 0-7 pick the layer, bit 8 the
    sign, bits 9-60 the magnitude.
    """
    bits = hash64(key, row, draw)
    idx = int(bits & _MASK8)
    rabs = (bits >> _S9) & _MASK52
    if rabs < _ZIG_K[idx]:
        x = float(rabs) * _ZIG_W[idx]
        return -x if ((bits >> _S8) & _ONE) == _ONE else x
    return _ziggurat_slow(key, row, draw, bits)


@njit(inline="always", cache=True)
def _init_scale(init, rows, cols):
    """Std of a normal init, bound of a uniform one (torch's fans, module docstring)."""
    fan_in = float(cols)
    fan_out = float(rows)
    if init == KAIMING_NORMAL:
        return math.sqrt(2.0 / fan_in)
    if init == KAIMING_UNIFORM:
        return math.sqrt(6.0 / fan_in)
    if init == XAVIER_NORMAL:
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == XAVIER_UNIFORM:
        return math.sqrt(6.0 / (fan_in + fan_out))
    if init == TRUNC_NORMAL:
        return 1.0
    return SPARSE_STD


@njit(inline="always", cache=True)
def _trunc_normal(k_value, m, j):
    """N(0, 1) conditioned on [-2, 2], by drawing again while outside."""
    z = ziggurat_normal(k_value, m, j)
    attempt = 0
    while abs(z) > TRUNC_BOUND and attempt < _MAX_ATTEMPTS:
        attempt += 1
        z = ziggurat_normal(subkey(k_value, _SALT_TRUNC + _U(attempt)), m, j)
    return z


# Each matrix is filled by straight loops that LLVM vectorises (AVX2 /
# AVX-512: 64-bit multiplies and table gathers): the mask is applied by a
# select, not a branch (a Bernoulli(d) branch is mispredicted so often that
# it costs more than a wasted draw), and the ziggurat's fast path is taken for
# every entry, the ~1.5 % it rejects (and the trunc_normal entries outside ±2,
# 4.6 %) being flagged and drawn again by the scalar ``ziggurat_normal`` /
# ``_trunc_normal``. Those return the fast path's value whenever it is
# accepted, so each entry stays the same function of (key, m, j).


@njit(inline="always", cache=True)
def _uniform_entries(k_mask, k_value, m, scale, density, out):
    for j in range(out.shape[0]):
        v = np.float32((2.0 * uniform(k_value, m, j) - 1.0) * scale)
        out[j] = v if uniform(k_mask, m, j) < density else np.float32(0.0)


@njit(inline="always", cache=True)
def _normal_entries(k_mask, k_value, m, scale, density, bound, out, redo):
    """Masked ziggurat fast path; flags in ``redo`` the kept entries it cannot
    settle (rejected, or beyond ``bound``); returns how many."""
    count = 0
    for j in range(out.shape[0]):
        bits = hash64(k_value, m, j)
        idx = bits & _MASK8
        rabs = (bits >> _S9) & _MASK52
        x = float(rabs) * _ZIG_W[idx]
        x = -x if ((bits >> _S8) & _ONE) == _ONE else x
        keep = uniform(k_mask, m, j) < density
        out[j] = np.float32(x * scale) if keep else np.float32(0.0)
        unsettled = keep & ((rabs >= _ZIG_K[idx]) | (abs(x) > bound))
        redo[j] = unsettled
        count += unsettled
    return count


@njit(inline="always", cache=True)
def _redo_entries(k_value, m, scale, trunc, out, redo):
    """Draw again the entries flagged in ``redo`` (uint8, a multiple of 8 long).

    The flags are read 8 at a time, as uint64 words: most words are 0.
    """
    n = out.shape[0]
    redo[n : (n + 7) // 8 * 8] = 0
    words = redo[: (n + 7) // 8 * 8].view(np.uint64)
    for w in range(words.shape[0]):
        if words[w] != 0:
            for j in range(8 * w, min(8 * w + 8, n)):
                if redo[j]:
                    z = _trunc_normal(k_value, m, j) if trunc else ziggurat_normal(k_value, m, j)
                    out[j] = np.float32(z * scale)


@njit(inline="always", cache=True)
def _sparse_zeros(k_sparse, m, rows, cols, out, to_pick):
    """Zero ceil(0.5 rows) uniformly chosen rows of every column (Algorithm S).

    Row by row, all columns at once: ``to_pick[c]`` zeros are still to place
    in column c, and row i takes one with probability to_pick[c] / (rows - i).
    """
    to_pick[:cols] = float(math.ceil(SPARSITY * rows))
    for i in range(rows):
        left = float(rows - i)
        for c in range(cols):
            j = i * cols + c
            zero = uniform(k_sparse, m, j) * left < to_pick[c]
            to_pick[c] -= 1.0 if zero else 0.0
            out[j] = np.float32(0.0) if zero else out[j]


@njit(cache=True)
def _draw_matrix(k_mask, k_value, k_sparse, m, rows, cols, init, density, out, redo, to_pick):
    """Matrix m into ``out`` (float32 (rows * cols,), row-major).

    ``redo`` (uint8, >= rows * cols rounded up to a multiple of 8) and
    ``to_pick`` (float64, >= cols) are scratch space.
    """
    scale = _init_scale(init, rows, cols) / density
    if init == KAIMING_UNIFORM or init == XAVIER_UNIFORM:
        _uniform_entries(k_mask, k_value, m, scale, density, out)
        return
    trunc = init == TRUNC_NORMAL
    bound = TRUNC_BOUND if trunc else np.inf
    if _normal_entries(k_mask, k_value, m, scale, density, bound, out, redo):
        _redo_entries(k_value, m, scale, trunc, out, redo)
    if init == SPARSE:
        _sparse_zeros(k_sparse, m, rows, cols, out, to_pick)


@njit(parallel=True, nogil=True, cache=True)
def _draw_weights(key, rows, cols, inits, densities, starts, chunks, out):
    k_mask = subkey(key, _SALT_MASK)
    k_value = subkey(key, _SALT_VALUE)
    k_sparse = subkey(key, _SALT_SPARSE)
    for c in prange(chunks.shape[0] - 1):
        first, stop = chunks[c], chunks[c + 1]
        redo = np.empty((np.max(rows[first:stop] * cols[first:stop]) + 7) // 8 * 8, dtype=np.uint8)
        to_pick = np.empty(np.max(cols[first:stop]), dtype=np.float64)
        for m in range(first, stop):
            _draw_matrix(
                k_mask, k_value, k_sparse, m, rows[m], cols[m], inits[m], densities[m],
                out[starts[m] : starts[m + 1]], redo, to_pick,
            )  # fmt: skip


@njit(parallel=True, nogil=True, cache=True)
def draw_layers(ids, layers, layer_key, layer_draw, layer_init, layer_density, out):
    """Draw the matrices ``ids`` of a bank whose weights are drawn on demand.

    Matrix ``l = ids[i]`` is matrix ``layer_draw[l]`` of the ``draw_weights``
    call under key ``layer_key[l]``, with shape ``layers[l, 1:3]``, init
    ``layer_init[l]`` and density ``layer_density[l]`` (float64, as drawn):
    the same bytes ``draw_weights`` gives it. It goes to
    ``out[off : off + rows * cols]`` (``off = layers[l, LAYER_WEIGHT_OFFSET]``), so a caller places
    the matrices where it likes by rewriting column 0 of (a copy of) the
    bank's ``layers``. The matrices are shared among the threads; each is a
    function of its own counters alone.
    """
    for i in prange(ids.shape[0]):
        layer = ids[i]
        rows = layers[layer, LAYER_IN]
        cols = layers[layer, LAYER_OUT]
        off = layers[layer, LAYER_WEIGHT_OFFSET]
        key = layer_key[layer]
        redo = np.empty((rows * cols + 7) // 8 * 8, dtype=np.uint8)
        to_pick = np.empty(cols, dtype=np.float64)
        _draw_matrix(
            subkey(key, _SALT_MASK), subkey(key, _SALT_VALUE), subkey(key, _SALT_SPARSE),
            layer_draw[layer], rows, cols, layer_init[layer], layer_density[layer],
            out[off : off + rows * cols], redo, to_pick,
        )  # fmt: skip


def draw_weights(key, rows, cols, inits, densities=None) -> np.ndarray:
    """K weight matrices, one after another (DESIGN §4.2; law in the module docstring).

    Parameters
    ----------
    key : int
        64-bit key (``numpy.uint64`` or a Python int in [0, 2^64)); every
        weight is a function of the key, its matrix index and its position.
    rows, cols : int array (K,)
        Shapes (in, out), all >= 1; fan_in = cols, fan_out = rows.
    inits : int array (K,)
        Codes in ``INIT_NAMES``.
    densities : float array (K,), optional
        Mask densities in (0, 1]; None: no mask (embedding tables).

    Returns
    -------
    np.ndarray of float32, shape (sum(rows * cols),)
        The matrices one after another, each row-major (in, out).
    """
    rows, cols, inits = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (rows, cols, inits))
    if not rows.shape == cols.shape == inits.shape:
        raise ValueError(
            f"rows, cols and inits need one entry per matrix, got {rows.size}, {cols.size}, {inits.size}"
        )
    if rows.size and min(rows.min(), cols.min()) < 1:
        raise ValueError(f"matrix shapes must be >= 1, got rows >= {rows.min()}, cols >= {cols.min()}")
    if rows.size and not 0 <= inits.min() <= inits.max() < len(INIT_NAMES):
        raise ValueError(
            f"init codes must index INIT_NAMES (0..{len(INIT_NAMES) - 1}), got {inits.min()}..{inits.max()}"
        )
    if densities is None:
        densities = np.ones(rows.size)
    else:
        densities = np.asarray(densities, dtype=np.float64).reshape(-1)
        if densities.shape != rows.shape or not np.all((densities > 0.0) & (densities <= 1.0)):
            raise ValueError(f"densities need one value in (0, 1] per matrix, got {densities!r}")
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) or not (
        0 <= int(key) < 1 << 64
    ):
        raise ValueError(f"key must be an integer in [0, 2**64), got {key!r}")
    starts = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(rows * cols, out=starts[1:])
    total = int(starts[-1])
    out = np.empty(total, dtype=np.float32)
    if rows.size:
        cuts = np.searchsorted(starts[:-1], np.arange(0, total, CHUNK_WEIGHTS))
        chunks = np.unique(np.append(cuts, rows.size)).astype(np.int64)
        _draw_weights(np.uint64(int(key)), rows, cols, inits, densities, starts, chunks, out)
    return out
