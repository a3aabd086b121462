"""Beta noise by inverse CDF from a per-node table (DESIGN §4.4 node noise).

Every inner SCM node adds 32 Beta(alpha, beta)/32 draws per row: the largest
count of random draws in a database. A rejection sampler costs ~80 ns a draw
here; inverting a tabulated CDF costs a hash, a table look-up and a linear
interpolation.

The table of one (alpha, beta) holds the CDF at M knots
``x_i = (1 - cos(pi t_i)) / 2``, ``t_i = i / (M - 1)``, which crowd towards 0
and 1 where the density may be singular. The CDF is integrated in ``t``
(trapezoid rule on ``f(x(t)) dx/dt``, bounded for shapes >= 1/2), except the
two end cells, integrated from the leading power law of the density
(``x^a / a`` near 0, ``(1-x)^b / b`` near 1) and inverted by that power law
too. Inside a cell the CDF is interpolated linearly in ``t`` (where it is
smooth, unlike in ``x`` near a singular end). With M = 512 the CDF error
is below 1e-5 for shapes in [0.5, 5] (the default range), far below what a
test of a million draws can see; ``tests/test_kernels_noise.py`` checks this
against scipy.

Draws interpolate linearly between Q = 2048 quantiles tabulated at u = j/Q
(one look-up, no search); the four outer quantile cells at each end go back to the
knot table, where a guide table (Chen & Asau 1974) and bisection find the cell and
the power-law tails are inverted exactly.

Each draw takes 32 bits of a hash, two draws per 64-bit hash (``rng.hash32``):
u = (bits + 1/2) 2^-32 resolves a quantile cell to 2^-21 of its width, and the
0.4 % of draws in the outer cells get 21 more bits from a second hash. Per row,
``add_node_noise`` interpolates all draws in one vectorised, branch-free pass and
redoes the outer-cell ones in a scalar pass: ~1.8 ns a draw on one core, against
~3.8 ns for a float64 uniform per draw and a branch per draw. The vectorised pass
is written out as LLVM vector code (``_noise_16``): inside the propagation kernel
LLVM left the same loop scalar (~3.4 ns a draw there; now ~2).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from plurel_fast.kernels import rng
from plurel_fast.kernels.rng import beta, hash32, hash64, row_hash
from plurel_fast.kernels.simd import broadcast, row_pointer

# Noise shapes below this use the exact rejection sampler (``rng.beta``): the
# tabulated inverse CDF is accurate to 1e-5 only from 1/2 up.
TABLE_MIN_SHAPE = 0.5
NUM_KNOTS = 512
NUM_GUIDE = 512
NUM_QUANTILES = 2048
_EDGE_CELLS = 4


@njit(cache=True)
def _knot_constants(m):
    """What every law's table shares: the knots x_i, log x_i, log(1 - x_i) and
    dx/dt at the knots (computed once per call of ``beta_tables``)."""
    x = np.empty(m)
    log_x = np.zeros(m)
    log_1mx = np.zeros(m)
    dxdt = np.zeros(m)
    for i in range(m):
        t = i / (m - 1)
        x[i] = 0.5 * (1.0 - np.cos(np.pi * t))
    for i in range(1, m - 1):
        log_x[i] = np.log(x[i])
        log_1mx[i] = np.log1p(-x[i])
        dxdt[i] = 0.5 * np.pi * np.sin(np.pi * i / (m - 1))
    return x, log_x, log_1mx, dxdt


@njit(cache=True)
def _fill_table(a, b, knots, log_x, log_1mx, dxdt, x, cdf, guide):
    m = x.shape[0]
    dens = np.empty(m)
    x[:] = knots
    # Integrand in t: f(x) dx/dt with f(x) = x^(a-1) (1-x)^(b-1) (unnormalised).
    for i in range(1, m - 1):
        dens[i] = np.exp((a - 1.0) * log_x[i] + (b - 1.0) * log_1mx[i]) * dxdt[i]
    h = 1.0 / (m - 1)
    cdf[0] = 0.0
    # End cells from the leading power laws of the density.
    cdf[1] = x[1] ** a / a * (1.0 - 0.5 * x[1]) ** (b - 1.0)
    for i in range(2, m - 1):
        cdf[i] = cdf[i - 1] + 0.5 * h * (dens[i - 1] + dens[i])
    tail = (1.0 - x[m - 2]) ** b / b * (1.0 - 0.5 * (1.0 - x[m - 2])) ** (a - 1.0)
    cdf[m - 1] = cdf[m - 2] + tail
    total = cdf[m - 1]
    for i in range(m):
        cdf[i] /= total
    cdf[m - 1] = 1.0
    g = guide.shape[0]
    i = 0
    for j in range(g):
        target = j / g
        while i < m - 2 and cdf[i + 1] <= target:
            i += 1
        guide[j] = i


@njit(parallel=True, cache=True)
def beta_tables(alphas, betas, num_knots, num_guide):
    """Tables for every (alpha, beta): knots (n, M), cdf (n, M), guide (n, G)."""
    n = alphas.shape[0]
    x = np.zeros((n, num_knots))
    cdf = np.zeros((n, num_knots))
    guide = np.zeros((n, num_guide), dtype=np.int64)
    knots, log_x, log_1mx, dxdt = _knot_constants(num_knots)
    for v in prange(n):
        _fill_table(alphas[v], betas[v], knots, log_x, log_1mx, dxdt, x[v], cdf[v], guide[v])
    return x, cdf, guide


@njit(inline="always", cache=True)
def _knot_x(i, w, m):
    """x at fraction w of knot cell [i, i+1]: linear in t, where the CDF is smooth."""
    t = (i + w) / (m - 1)
    return 0.5 * (1.0 - np.cos(np.pi * t))


@njit(inline="always", cache=True)
def _invert_cell(u, i, a, b, x, cdf):
    """Inverse CDF at u inside knot cell i (power laws in the two end cells)."""
    m = x.shape[0]
    if i == 0:
        return x[1] * (u / cdf[1]) ** (1.0 / a)
    if i == m - 2:
        return 1.0 - (1.0 - x[m - 2]) * ((1.0 - u) / (1.0 - cdf[m - 2])) ** (1.0 / b)
    return _knot_x(i, (u - cdf[i]) / (cdf[i + 1] - cdf[i]), m)


@njit(inline="always", cache=True)
def beta_from_table(u, a, b, x, cdf, guide):
    """Inverse of the tabulated Beta(a, b) CDF at u in (0, 1)."""
    m = x.shape[0]
    g = guide.shape[0]
    k = min(int(u * g), g - 1)
    # The cell is the first i >= guide[k] with cdf[i + 1] >= u; it is at most
    # guide[k + 1]. Bisect: near a steep end a guide cell spans ~100 knots.
    lo = guide[k]
    hi = guide[k + 1] if k + 1 < g else m - 2
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid + 1] < u:
            lo = mid + 1
        else:
            hi = mid
    return _invert_cell(u, lo, a, b, x, cdf)


@njit(parallel=True, cache=True)
def quantile_tables(alphas, betas, x, cdf):
    """Quantiles at u = j / Q, j = 0..Q, of every tabulated law: (n, Q + 1).

    Built in one monotone pass over the knots per law. Draws in the first and
    last quantile cell go back to ``beta_from_table`` (power-law tails).
    """
    n = alphas.shape[0]
    m = x.shape[1]
    q_count = NUM_QUANTILES
    q = np.empty((n, q_count + 1))
    for v in prange(n):
        a = alphas[v]
        b = betas[v]
        xv = x[v]
        cv = cdf[v]
        q[v, 0] = 0.0
        q[v, q_count] = 1.0
        i = 0
        for j in range(1, q_count):
            u = j / q_count
            while i < m - 2 and cv[i + 1] < u:
                i += 1
            q[v, j] = _invert_cell(u, i, a, b, xv, cv)
    return q


@njit(inline="always", cache=True)
def beta_from_quantiles(u, a, b, q, x, cdf, guide):
    """Inverse CDF at u by linear interpolation between tabulated quantiles."""
    q_count = q.shape[0] - 1
    s = u * q_count
    j = int(s)
    # The quantile function bends most in the outer cells: take those (0.4 % of
    # draws) from the knot table, keeping the CDF error below 2e-5 everywhere.
    if j < _EDGE_CELLS or j >= q_count - _EDGE_CELLS:
        return beta_from_table(u, a, b, x, cdf, guide)
    return q[j] + (s - j) * (q[j + 1] - q[j])


# Draws take 32 random bits (``rng.hash32``): the top 11 pick the quantile cell
# (NUM_QUANTILES = 2^11), the low 21 the position in it, so u = (bits + 1/2) 2^-32
# and the interpolation needs no float uniform. The outer cells invert power-law
# tails, where u near 0 or 1 needs more than 32 bits of resolution: there a second
# hash supplies 21 more low bits (a 53-bit u with the same top 32 bits, hence the
# same cell). Both are functions of (key, row, draw) only.
_CELL_SHIFT = np.uint64(21)
_FRAC_MASK = np.uint64((1 << 21) - 1)
_INV21 = 1.0 / (1 << 21)
_INV32 = 1.0 / (1 << 32)
_INV53 = 1.0 / (1 << 53)
_LOW_EDGE = _EDGE_CELLS
_HIGH_EDGE = NUM_QUANTILES - _EDGE_CELLS
_SALT_TAIL = np.uint64(0x6A09E667F3BCC909)


@njit(inline="always", cache=True)
def _is_edge(bits):
    c = np.int64(bits >> _CELL_SHIFT)
    return (c < _LOW_EDGE) | (c >= _HIGH_EDGE)


@njit(inline="always", cache=True)
def _interp_bits(bits, q):
    """``beta_from_quantiles((bits + 1/2) 2^-32)`` outside the outer cells, bit for bit."""
    c = np.int64(bits >> _CELL_SHIFT)
    w = (float(bits & _FRAC_MASK) + 0.5) * _INV21
    return q[c] + w * (q[c + 1] - q[c])


_PAIRS = 8  # draw pairs per vector: 8 hashes of 64 bits, 16 draws
_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
_F32, _F64 = ir.FloatType(), ir.DoubleType()


def _u64(value) -> ir.Constant:
    """A uint64 constant as LLVM's (signed) i64."""
    value = int(value)
    return ir.Constant(_I64, value - (1 << 64) if value >= 1 << 63 else value)


@intrinsic
def _noise_16(typingctx, acc, t, col0, q, first_round, pair0, inv_dim):
    """``acc[t, col0 + i] += noise draw (pair0 + i // 2, half i % 2)`` for i < 16,
    outer-cell draws adding 0; returns how many of the 16 were outer-cell draws.

    The vector form of ``add_node_noise``'s loop body for 8 pairs of draws: the
    8 hashes ``mix64(first_round ^ (p * DRAW_MUL + GOLDEN))`` (``first_round``
    is ``rng.row_hash(key, row)``, ``hash64``'s first round), their low and high
    halves through ``_is_edge`` and ``_interp_bits`` with gathers from the quantile table,
    the same float64 operations in the same order, then the float32 add. Written
    out because numba's loop of the same code stays scalar inside the propagation
    kernel (LLVM cannot prove the accumulator apart from the table).
    """
    sig = types.int64(acc, types.int64, types.int64, q, types.uint64, types.int64, types.float64)

    def codegen(context, builder, signature, args):
        acc_v, t_v, col0_v, q_v, x_v, pair0_v, inv_v = args
        mod = builder.module
        n = _PAIRS
        i64v, f64v, f32v = ir.VectorType(_I64, n), ir.VectorType(_F64, n), ir.VectorType(_F32, n)
        ptrv = ir.VectorType(_F64.as_pointer(), n)
        gather = cgutils.get_or_insert_function(
            mod, ir.FunctionType(f64v, [ptrv, _I32, ir.VectorType(_I1, n), f64v]),
            "llvm.masked.gather.v8f64.v8p0f64")
        reduce_add = cgutils.get_or_insert_function(
            mod, ir.FunctionType(_I64, [i64v]), "llvm.vector.reduce.add.v8i64")

        def splat(value):
            return broadcast(builder, value, i64v)

        def const(value):
            return splat(_u64(value))

        # z = first_round ^ (p * DRAW_MUL + GOLDEN), p = pair0 + lane; then mix64
        lanes = ir.Constant(i64v, list(range(n)))
        p = builder.add(splat(pair0_v), lanes)
        z = builder.xor(splat(x_v), builder.add(builder.mul(p, const(rng._DRAW_MUL)), const(rng._GOLDEN)))
        z = builder.mul(builder.xor(z, builder.lshr(z, const(30))), const(rng._M1))
        z = builder.mul(builder.xor(z, builder.lshr(z, const(27))), const(rng._M2))
        h = builder.xor(z, builder.lshr(z, const(31)))

        q_arr = context.make_array(signature.args[3])(context, builder, q_v)
        q_base = builder.ptrtoint(q_arr.data, _I64)
        inv = broadcast(builder, inv_v, f64v)
        all_lanes = ir.Constant(ir.VectorType(_I1, n), [1] * n)
        edges = []

        def draws(bits):
            c = builder.lshr(bits, const(_CELL_SHIFT))
            edge = builder.or_(builder.icmp_signed("<", c, const(_LOW_EDGE)),
                               builder.icmp_signed(">=", c, const(_HIGH_EDGE)))
            edges.append(builder.zext(edge, i64v))
            frac = builder.sitofp(builder.and_(bits, const(_FRAC_MASK)), f64v)
            w = builder.fmul(builder.fadd(frac, broadcast(builder, ir.Constant(_F64, 0.5), f64v)),
                             broadcast(builder, ir.Constant(_F64, _INV21), f64v))
            addr = builder.add(splat(q_base), builder.mul(c, const(8)))
            q0 = builder.call(gather, [builder.inttoptr(addr, ptrv), ir.Constant(_I32, 8), all_lanes,
                                       ir.Constant(f64v, ir.Undefined)])
            q1 = builder.call(gather, [builder.inttoptr(builder.add(addr, const(8)), ptrv),
                                       ir.Constant(_I32, 8), all_lanes, ir.Constant(f64v, ir.Undefined)])
            v = builder.fmul(builder.fadd(q0, builder.fmul(w, builder.fsub(q1, q0))), inv)
            return builder.select(edge, ir.Constant(f32v, None), builder.fptrunc(v, f32v))

        lo = draws(builder.and_(h, const(0xFFFFFFFF)))
        hi = draws(builder.lshr(h, const(32)))
        # draws 2p (low half) and 2p + 1 (high half) side by side
        noise = builder.shuffle_vector(lo, hi, ir.Constant(
            ir.VectorType(_I32, 2 * n), [i // 2 + (n if i % 2 else 0) for i in range(2 * n)]))
        row, _ = row_pointer(context, builder, signature.args[0], acc_v, t_v)
        dst = builder.bitcast(builder.gep(row, [col0_v]), ir.VectorType(_F32, 2 * n).as_pointer())
        builder.store(builder.fadd(builder.load(dst, align=4), noise), dst, align=4)
        return builder.call(reduce_add, [builder.add(edges[0], edges[1])])

    return sig, codegen


@njit(inline="always", cache=True)
def _draw_of_bits(bits, key, row, draw, a, b, q, x, cdf, guide):
    """Beta draw (key, row, draw) from its 32 bits ``hash32(key, row, draw)``."""
    if _is_edge(bits):
        low = hash64(np.uint64(key) ^ _SALT_TAIL, row, draw) >> np.uint64(43)
        u = (float((bits << _CELL_SHIFT) | low) + 0.5) * _INV53
        return beta_from_table(u, a, b, x, cdf, guide)
    return _interp_bits(bits, q)


@njit(inline="always", cache=True)
def beta_noise(key, row, draw, a, b, q, x, cdf, guide):
    """Counter-based Beta(a, b) draw from the node's tables (reference of ``add_node_noise``).

    ``beta_from_quantiles`` at u = (bits + 1/2) 2^-32, with 21 more bits in the
    outer cells (see above).
    """
    return _draw_of_bits(hash32(key, row, draw), key, row, draw, a, b, q, x, cdf, guide)


@njit(inline="always", cache=True)
def add_node_noise(acc, n_rows, dim, row0, key, a, b, q, x, cdf, guide, unif):
    """``acc[t, j] += float32(Beta(a, b) draw (key, row0 + t, j) / dim)``, t < n_rows, j < dim.

    The node noise of DESIGN §4.4 for a tile of rows: from the node's tables
    (``beta_tables``, ``quantile_tables``) when both shapes are at least
    ``TABLE_MIN_SHAPE``, else by exact rejection (``rng.beta``). ``unif`` is
    float64 scratch of at least ``dim`` values.

    Table draws equal ``beta_noise``'s. Per row, a branch-free pass (vector code,
    ``_noise_16``, when dim is a multiple of 16: one hash per pair of draws, table
    gathers) interpolates every draw and counts those in the outer cells; only
    rows with such draws (~12 % of rows for 32 draws) take a scalar pass that
    redoes those few from the knot table.
    """
    inv_dim = 1.0 / dim
    if min(a, b) >= TABLE_MIN_SHAPE:
        half = dim >> 1
        vectors = dim // (2 * _PAIRS)
        whole = vectors * 2 * _PAIRS == dim
        for t in range(n_rows):
            row = row0 + t
            n_edge = 0
            if whole:  # 16 draws at a time, written out as vector code
                first = row_hash(key, row)
                for c in range(vectors):
                    n_edge += _noise_16(acc, t, c * 2 * _PAIRS, q, first, c * _PAIRS, inv_dim)
            else:
                for p in range(half):
                    h = hash64(key, row, p)
                    lo = h & np.uint64(0xFFFFFFFF)
                    hi = h >> np.uint64(32)
                    e_lo = _is_edge(lo)
                    e_hi = _is_edge(hi)
                    # Outer-cell draws add 0 here and their value below:
                    # (acc + 0) + v == acc + v in float32 (v >= 0), the same sum.
                    acc[t, 2 * p] += np.float32(0.0 if e_lo else _interp_bits(lo, q) * inv_dim)
                    acc[t, 2 * p + 1] += np.float32(0.0 if e_hi else _interp_bits(hi, q) * inv_dim)
                    n_edge += np.int64(e_lo) + np.int64(e_hi)
            if n_edge:  # ~12 % of rows of 32 draws: hash again (vectorised) to find them
                for p in range(half):
                    h = hash64(key, row, p)
                    unif[2 * p] = float(h & np.uint64(0xFFFFFFFF))
                    unif[2 * p + 1] = float(h >> np.uint64(32))
                for j in range(2 * half):
                    bits = np.uint64(unif[j])
                    if _is_edge(bits):
                        v = _draw_of_bits(bits, key, row, j, a, b, q, x, cdf, guide)
                        acc[t, j] += np.float32(v * inv_dim)
            if dim & 1:
                acc[t, dim - 1] += np.float32(beta_noise(key, row, dim - 1, a, b, q, x, cdf, guide) * inv_dim)
    else:
        for t in range(n_rows):
            row = row0 + t
            for j in range(dim):
                acc[t, j] += np.float32(beta(key, row, j, a, b) * inv_dim)


@njit(parallel=True, cache=True)
def _noise_block(key, row0, n_rows, n_draws, a, b, q, x, cdf, guide):
    out = np.empty((n_rows, n_draws))
    for i in prange(n_rows):
        for j in range(n_draws):
            out[i, j] = beta_noise(key, row0 + i, j, a, b, q, x, cdf, guide)
    return out


def beta_noise_block(key, row0: int, n_rows: int, a: float, b: float, n_draws: int = 1):
    """Table-based Beta(a, b) draws, shape (n_rows, n_draws) (tests, inspection)."""
    if not (a > 0 and b > 0):
        raise ValueError(f"beta shapes must be > 0, got a={a}, b={b}")
    alphas, betas = np.array([float(a)]), np.array([float(b)])
    x, cdf, guide = beta_tables(alphas, betas, NUM_KNOTS, NUM_GUIDE)
    q = quantile_tables(alphas, betas, x, cdf)
    return _noise_block(np.uint64(key), np.int64(row0), np.int64(n_rows), np.int64(n_draws),
                        float(a), float(b), q[0], x[0], cdf[0], guide[0])
