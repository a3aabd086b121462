"""Counter-based random draws for row-level randomness (DESIGN §A.1).

Every draw is a pure function of ``(key, row, draw)``: a 64-bit stream key chosen
at planning time, the row index inside the table, and the index of the draw made
for that row (e.g. the noise dimension 0..31). No state is carried between calls,
so any row range can be generated alone, by any thread or process, with identical
bytes. This is what makes the output independent of thread count and chunk size.

The hash is two rounds of the splitmix64 finaliser (Steele, Lea & Flood 2014)
over the key combined with the row and draw counters by odd multipliers.
Non-uniform draws are built on top of it:

- ``normal``: Box-Muller from two uniforms of two salted sub-streams;
- ``gamma``: Marsaglia & Tsang (2000) squeeze-rejection, each attempt on its own
  salted sub-stream; shape < 1 through the boost ``G(a) = G(a+1) * U^(1/a)``;
- ``beta``: Cheng's (1978) rejection algorithms BB and BC;
- ``categorical``: inverse CDF over cumulative probabilities.

All functions here are scalar ``@njit`` building blocks meant to be inlined in
other kernels; the ``*_block`` functions fill arrays in parallel (tests, sources).
"""

import numpy as np
from numba import njit, prange

_U = np.uint64
_GOLDEN = _U(0x9E3779B97F4A7C15)
_ROW_MUL = _U(0xD1B54A32D192ED03)
_DRAW_MUL = _U(0xAEF17502108EF2D9)
_M1 = _U(0xBF58476D1CE4E5B9)
_M2 = _U(0x94D049BB133111EB)
_S30 = _U(30)
_S27 = _U(27)
_S31 = _U(31)
_S11 = _U(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53

# Salts separating the sub-streams that compound draws consume.
_SALT_NORMAL_A = _U(0x243F6A8885A308D3)
_SALT_NORMAL_B = _U(0x13198A2E03707344)
_SALT_GAMMA = _U(0xA4093822299F31D0)
_SALT_GAMMA_BOOST = _U(0x082EFA98EC4E6C89)
_SALT_BETA_A = _U(0x452821E638D01377)
_SALT_BETA_B = _U(0xBE5466CF34E90C6C)

_MAX_GAMMA_ATTEMPTS = 64


@njit(inline="always", cache=True)
def mix64(z):
    """splitmix64 finaliser: a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def row_hash(key, row):
    """``hash64``'s first round, shared by all draws of a row (for vector code
    that finishes the second round itself, ``kernels.noise``)."""
    return mix64(_U(key) ^ (_U(row) * _ROW_MUL + _GOLDEN))


@njit(inline="always", cache=True)
def hash64(key, row, draw):
    """64 random bits for (key, row, draw). All arguments are cast to uint64."""
    return mix64(row_hash(key, row) ^ (_U(draw) * _DRAW_MUL + _GOLDEN))


@njit(inline="always", cache=True)
def hash32(key, row, draw):
    """32 random bits for (key, row, draw): draws 2k and 2k + 1 are the low and
    high halves of ``hash64(key, row, k)``, so a loop over draws hashes once per pair.

    The halves are as good as independent draws: the last step of ``mix64`` is
    ``z ^ (z >> 31)`` after a full-avalanche multiply, so each output bit, low
    ones included, depends on every input bit, and a bijection with that mixing
    is as good as a random function for this purpose. ``tests/test_kernels_rng.py``
    checks the halves' joint law and correlation.
    """
    h = hash64(key, row, _U(draw) >> _U(1))
    return (h >> (_U(draw & 1) << _U(5))) & _U(0xFFFFFFFF)


@njit(inline="always", cache=True)
def subkey(key, salt):
    """A key for an independent sub-stream of ``key`` (salt: any uint64)."""
    return mix64(_U(key) ^ mix64(_U(salt) + _GOLDEN))


@njit(inline="always", cache=True)
def uniform(key, row, draw):
    """Uniform float64 in [0, 1) with 53 random bits."""
    return float(hash64(key, row, draw) >> _S11) * _INV53


@njit(inline="always", cache=True)
def uniform_open(key, row, draw):
    """Uniform float64 in (0, 1): safe to take the log of."""
    return (float(hash64(key, row, draw) >> _S11) + 0.5) * _INV53


@njit(inline="always", cache=True)
def normal(key, row, draw):
    """Standard normal draw (Box-Muller, cosine branch)."""
    k = _U(key)
    u1 = uniform_open(k ^ _SALT_NORMAL_A, row, draw)
    u2 = uniform(k ^ _SALT_NORMAL_B, row, draw)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def _gamma_ge1(key, row, draw, alpha):
    """Gamma(alpha, 1) for alpha >= 1 by Marsaglia-Tsang rejection."""
    d = alpha - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    for attempt in range(_MAX_GAMMA_ATTEMPTS):
        k = subkey(key, _SALT_GAMMA + _U(attempt))
        z = normal(k, row, draw)
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform_open(k ^ _SALT_GAMMA_BOOST, row, draw)
        if u < 1.0 - 0.0331 * z * z * z * z:
            return d * v
        if np.log(u) < 0.5 * z * z + d * (1.0 - v + np.log(v)):
            return d * v
    # Acceptance is >= 95 % per attempt, so 64 rejections in a row has
    # probability < 1e-80; the mean is a harmless fallback.
    return alpha


@njit(cache=True)
def gamma(key, row, draw, alpha):
    """Gamma(alpha, 1) draw, alpha > 0."""
    if alpha >= 1.0:
        return _gamma_ge1(key, row, draw, alpha)
    g = _gamma_ge1(key, row, draw, alpha + 1.0)
    u = uniform_open(_U(key) ^ _SALT_GAMMA_BOOST, row, draw)
    return g * np.exp(np.log(u) / alpha)


_SALT_CHENG = _U(0x3F84D5B5B5470917)
_LOG4 = np.log(4.0)
_ONE_PLUS_LOG5 = 1.0 + np.log(5.0)


@njit(cache=True)
def _cheng_uniforms(key, row, draw, attempt):
    k = subkey(key, _SALT_CHENG + _U(attempt))
    return uniform_open(k, row, draw), uniform_open(k ^ _SALT_BETA_B, row, draw)


@njit(cache=True)
def _beta_bb(key, row, draw, a0, b0):
    """Cheng (1978) algorithm BB, for min(a0, b0) > 1."""
    a = min(a0, b0)
    b = max(a0, b0)
    alpha = a + b
    beta_ = np.sqrt((alpha - 2.0) / (2.0 * a * b - alpha))
    gamma_ = a + 1.0 / beta_
    for attempt in range(_MAX_GAMMA_ATTEMPTS):
        u1, u2 = _cheng_uniforms(key, row, draw, attempt)
        v = beta_ * np.log(u1 / (1.0 - u1))
        w = a * np.exp(v)
        z = u1 * u1 * u2
        r = gamma_ * v - _LOG4
        s = a + r - w
        if s + _ONE_PLUS_LOG5 >= 5.0 * z:
            break
        t = np.log(z)
        if s > t:
            break
        if r + alpha * np.log(alpha / (b + w)) >= t:
            break
    if a == a0:
        return w / (b + w)
    return b / (b + w)


@njit(cache=True)
def _beta_bc(key, row, draw, a0, b0):
    """Cheng (1978) algorithm BC, for min(a0, b0) <= 1."""
    a = max(a0, b0)
    b = min(a0, b0)
    alpha = a + b
    beta_ = 1.0 / b
    delta = 1.0 + a - b
    k1 = delta * (0.0138889 + 0.0416667 * b) / (a * beta_ - 0.777778)
    k2 = 0.25 + (0.5 + 0.25 / delta) * b
    w = a
    for attempt in range(_MAX_GAMMA_ATTEMPTS):
        u1, u2 = _cheng_uniforms(key, row, draw, attempt)
        if u1 < 0.5:
            y = u1 * u2
            z = u1 * y
            if 0.25 * u2 + z - y >= k1:
                continue
        else:
            z = u1 * u1 * u2
            if z <= 0.25:
                v = beta_ * np.log(u1 / (1.0 - u1))
                w = a * np.exp(v) if v < 700.0 else np.inf
                break
            if z >= k2:
                continue
        v = beta_ * np.log(u1 / (1.0 - u1))
        w = a * np.exp(v) if v < 700.0 else np.inf
        if alpha * (np.log(alpha / (b + w)) + v) - 1.3862944 >= np.log(z):
            break
    if w == np.inf:
        return 1.0 if a == a0 else 0.0
    if a == a0:
        return w / (b + w)
    return b / (b + w)


@njit(cache=True)
def beta(key, row, draw, a, b):
    """Beta(a, b) draw by Cheng's rejection algorithms BB / BC (exact law).

    About two uniforms, one log and one exp per draw: several times cheaper
    than the ratio of two gammas, which matters for the 32 noise draws per
    SCM node and row (DESIGN §4.4).
    """
    if a > 1.0 and b > 1.0:
        return _beta_bb(_U(key), row, draw, a, b)
    return _beta_bc(_U(key), row, draw, a, b)


@njit(cache=True)
def beta_gamma_ratio(key, row, draw, a, b):
    """Beta(a, b) draw as X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b) (reference law)."""
    x = gamma(subkey(key, _SALT_BETA_A), row, draw, a)
    y = gamma(subkey(key, _SALT_BETA_B), row, draw, b)
    s = x + y
    if s <= 0.0:  # both underflowed (tiny shapes): the limit is a fair coin
        return 1.0 if uniform(key, row, draw) < a / (a + b) else 0.0
    return x / s


@njit(inline="always", cache=True)
def categorical(key, row, draw, cdf):
    """Index i with probability cdf[i] - cdf[i-1]; ``cdf`` is cumulative, ends ~1."""
    u = uniform(key, row, draw) * cdf[cdf.shape[0] - 1]
    lo = 0
    hi = cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ---------------------------------------------------------------------------
# Parallel block fills: out[i, j] is the draw for (key, row0 + i, draw0 + j).
# ---------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _uniform_block(key, row0, n_rows, draw0, n_draws):
    out = np.empty((n_rows, n_draws), dtype=np.float64)
    for i in prange(n_rows):
        for j in range(n_draws):
            out[i, j] = uniform(key, row0 + i, draw0 + j)
    return out


@njit(parallel=True, cache=True)
def _normal_block(key, row0, n_rows, draw0, n_draws):
    out = np.empty((n_rows, n_draws), dtype=np.float64)
    for i in prange(n_rows):
        for j in range(n_draws):
            out[i, j] = normal(key, row0 + i, draw0 + j)
    return out


@njit(parallel=True, cache=True)
def _gamma_block(key, row0, n_rows, draw0, n_draws, alpha):
    out = np.empty((n_rows, n_draws), dtype=np.float64)
    for i in prange(n_rows):
        for j in range(n_draws):
            out[i, j] = gamma(key, row0 + i, draw0 + j, alpha)
    return out


@njit(parallel=True, cache=True)
def _beta_block(key, row0, n_rows, draw0, n_draws, a, b):
    out = np.empty((n_rows, n_draws), dtype=np.float64)
    for i in prange(n_rows):
        for j in range(n_draws):
            out[i, j] = beta(key, row0 + i, draw0 + j, a, b)
    return out


@njit(parallel=True, cache=True)
def _categorical_block(key, row0, n_rows, draw0, n_draws, cdf):
    out = np.empty((n_rows, n_draws), dtype=np.int64)
    for i in prange(n_rows):
        for j in range(n_draws):
            out[i, j] = categorical(key, row0 + i, draw0 + j, cdf)
    return out


def _check(key, row0, n_rows, draw0, n_draws):
    if n_rows < 0 or n_draws < 0 or row0 < 0 or draw0 < 0:
        raise ValueError(
            f"rows and draws must be non-negative, got row0={row0}, n_rows={n_rows}, "
            f"draw0={draw0}, n_draws={n_draws}"
        )
    return np.uint64(key), np.int64(row0), np.int64(n_rows), np.int64(draw0), np.int64(n_draws)


def uniform_block(key, row0, n_rows, draw0=0, n_draws=1):
    """Uniform [0, 1) draws, shape (n_rows, n_draws), for rows row0.. and draws draw0.."""
    return _uniform_block(*_check(key, row0, n_rows, draw0, n_draws))


def normal_block(key, row0, n_rows, draw0=0, n_draws=1):
    """Standard normal draws, shape (n_rows, n_draws)."""
    return _normal_block(*_check(key, row0, n_rows, draw0, n_draws))


def gamma_block(key, row0, n_rows, alpha, draw0=0, n_draws=1):
    """Gamma(alpha, 1) draws, shape (n_rows, n_draws)."""
    if not alpha > 0:
        raise ValueError(f"gamma shape must be > 0, got {alpha}")
    return _gamma_block(*_check(key, row0, n_rows, draw0, n_draws), float(alpha))


def beta_block(key, row0, n_rows, a, b, draw0=0, n_draws=1):
    """Beta(a, b) draws, shape (n_rows, n_draws)."""
    if not (a > 0 and b > 0):
        raise ValueError(f"beta shapes must be > 0, got a={a}, b={b}")
    return _beta_block(*_check(key, row0, n_rows, draw0, n_draws), float(a), float(b))


def categorical_block(key, row0, n_rows, probs, draw0=0, n_draws=1):
    """Category indices drawn with probabilities ``probs`` (need not sum to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or probs.size == 0 or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError(f"probs must be a non-empty 1-d array of weights >= 0, got {probs}")
    cdf = np.cumsum(probs)
    return _categorical_block(*_check(key, row0, n_rows, draw0, n_draws), cdf)
