"""Planning the source nodes of an SCM: generator types and parameters (DESIGN §4.3).

A *source* is the exogenous signal of one SCM source node, evaluated at the row
index ``r`` of a table of ``n`` rows. Planning draws, once per database, the
generator type and every parameter from a numpy ``Generator``; the kernel
``plurel_fast.kernels.sources.source_values`` turns them into values with the
counter-based row RNG.

Generators
----------
Every elementary *generator* is one row of ``GEN_WIDTH`` float64 numbers:

==========  =================  =========================================
column      name               meaning
==========  =================  =========================================
0           ``COL_TYPE``       ``GEN_TS``, ``GEN_UNIFORM``, ``GEN_GAUSSIAN``
                               or ``GEN_BETA`` (small integer as float)
1, 2        ``COL_LO/COL_HI``  value bounds, ``0 <= lo <= hi < scale``
3..9        type parameters    see below; unused columns hold 0.0
==========  =================  =========================================

- ts: 3 ``COL_TREND_ALPHA`` α, 4 ``COL_TREND_SCALE`` s_t, 5 ``COL_CYCLE_FREQ``
  f = ceil(n · perc), 6 ``COL_CYCLE_SCALE`` s_c, 7 ``COL_NOISE_SCALE`` σ,
  8 ``COL_AR_RHO`` ρ, 9 ``COL_AR_WINDOW`` the AR(1) warm-up window
  (:func:`ar_window`: the smallest W with ρ^W <= 1e-18, 0 for ρ = 0);
- gaussian: 3 ``COL_MEAN`` (lo+hi)/2, 4 ``COL_STD`` max((hi-lo)/4, 1e-6);
- beta: 3 ``COL_BETA_A`` a, 4 ``COL_BETA_B`` b;
- uniform: nothing more.

Sources
-------
A numerical source (:class:`NumericalSource`) is one generator, or for the
*mixed* type 2 or 3 generators of the types uniform/gaussian/beta, of which each
row uses one picked uniformly. A categorical source (:class:`CategoricalSource`,
eager propagation only) of type ts holds one ts generator per category, and each
row samples a category from the softmax of their values; any other type gives
i.i.d. categories with probabilities from a flat Dirichlet.

The bank
--------
:class:`SourceBank` packs all sources of one SCM into flat arrays (``S`` sources,
``G`` generators in total):

- ``kind``: int64[S], ``NUMERICAL``, ``CATEGORICAL_TS`` or ``CATEGORICAL_IID``;
- ``gen_start``, ``gen_stop``: int64[S], source ``s`` owns generator rows
  ``gens[gen_start[s]:gen_stop[s]]`` (none for ``CATEGORICAL_IID``);
- ``gens``: float64[G, GEN_WIDTH], the generator rows above;
- ``cdf_start``, ``cdf_stop``: int64[S], a ``CATEGORICAL_IID`` source owns
  ``cdfs[cdf_start[s]:cdf_stop[s]]``, the cumulative sum of its category
  probabilities (empty range for the other kinds);
- ``cdfs``: float64[C];
- ``num_categories``: int64[S], 0 for numerical sources;
- ``keys``: uint64[S], the counter-RNG stream key of each source, given by the
  caller (e.g. ``stream_key(seed, "table", t, "source", node)``). Generator
  ``j`` of source ``s`` draws from ``subkey(keys[s], j)``; the source's own
  key is used for the per-row choice of a mixed generator or of a category.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

# Codes and the generator row layout are kernels.codes' (re-exported here for planners).
from plurel_fast.kernels.codes import (  # noqa: E402, F401
    CATEGORICAL_IID,
    CATEGORICAL_TS,
    COL_AR_RHO,
    COL_AR_WINDOW,
    COL_BETA_A,
    COL_BETA_B,
    COL_CYCLE_FREQ,
    COL_CYCLE_SCALE,
    COL_HI,
    COL_LO,
    COL_MEAN,
    COL_NOISE_SCALE,
    COL_STD,
    COL_TREND_ALPHA,
    COL_TREND_SCALE,
    COL_TYPE,
    GEN_BETA,
    GEN_GAUSSIAN,
    GEN_TS,
    GEN_UNIFORM,
    GEN_WIDTH,
    MIXED_SUB_TYPES,
    NUMERICAL,
)
from plurel_fast.kernels.codes import GEN_TYPE_CODES as _TYPE_CODES  # noqa: E402
from plurel_fast.kernels.codes import SOURCE_TYPES as SOURCE_GEN_TYPES  # noqa: E402, F401

# ρ^W below this is treated as zero by the AR(1) warm-up (see ar_window).
AR_TOLERANCE = 1e-18
_MIN_GAUSSIAN_STD = 1e-6


# ---------------------------------------------------------------------------
# Generator rows
# ---------------------------------------------------------------------------


def ar_window(rho: float) -> int:
    """Smallest W >= 0 with ρ^W <= 1e-18 (0 for ρ = 0): the AR(1) warm-up length.

    Starting the recursion ``e_r = ρ e_{r-1} + σ z_r`` from state 0 W rows early
    instead of at row 0 changes every later state by at most ρ^W times the
    state dropped, i.e. by less than 1e-18 relative: far below float64
    resolution of the values.
    """
    rho = float(rho)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"AR coefficient rho must be in [0, 1), got {rho}")
    if rho == 0.0:
        return 0
    # The log ratio is within rounding of the answer; step up to the exact one.
    w = max(int(math.floor(math.log(AR_TOLERANCE) / math.log(rho))), 0)
    while rho**w > AR_TOLERANCE:
        w += 1
    return w


def ts_generator(
    lo, hi, trend_alpha, trend_scale, cycle_freq, cycle_scale, noise_scale, ar_rho
) -> np.ndarray:
    """Generator row of a ts source (trend + cycle + AR(1) noise, DESIGN §4.3)."""
    row = _row(GEN_TS, lo, hi)
    row[COL_TREND_ALPHA] = trend_alpha
    row[COL_TREND_SCALE] = trend_scale
    row[COL_CYCLE_FREQ] = cycle_freq
    row[COL_CYCLE_SCALE] = cycle_scale
    row[COL_NOISE_SCALE] = noise_scale
    row[COL_AR_RHO] = ar_rho
    row[COL_AR_WINDOW] = ar_window(ar_rho)
    return row


def uniform_generator(lo, hi) -> np.ndarray:
    """Generator row of U[lo, hi)."""
    return _row(GEN_UNIFORM, lo, hi)


def gaussian_generator(lo, hi) -> np.ndarray:
    """Generator row of N((lo+hi)/2, max((hi-lo)/4, 1e-6)) clipped to [lo, hi]."""
    row = _row(GEN_GAUSSIAN, lo, hi)
    row[COL_MEAN] = (float(lo) + float(hi)) / 2.0
    row[COL_STD] = max((float(hi) - float(lo)) / 4.0, _MIN_GAUSSIAN_STD)
    return row


def beta_generator(lo, hi, a, b) -> np.ndarray:
    """Generator row of lo + (hi - lo) · Beta(a, b)."""
    row = _row(GEN_BETA, lo, hi)
    row[COL_BETA_A] = a
    row[COL_BETA_B] = b
    return row


def _row(code, lo, hi):
    row = np.zeros(GEN_WIDTH, dtype=np.float64)
    row[COL_TYPE] = code
    row[COL_LO] = lo
    row[COL_HI] = hi
    return row


# ---------------------------------------------------------------------------
# Source specs
# ---------------------------------------------------------------------------


class NumericalSource(msgspec.Struct, frozen=True):
    """A numerical source node's generator(s) (DESIGN §4.3).

    Attributes
    ----------
    gen_type : str
        One of ``ts``, ``uniform``, ``gaussian``, ``beta``, ``mixed``.
    num_rows : int
        ``n``, the row count of the table (the ts trend and cycle depend on it).
    gens : np.ndarray of float64, shape (k, GEN_WIDTH)
        Generator rows; k = 1, or 2-3 for ``mixed`` (each row picks one).
    """

    gen_type: str
    num_rows: int
    gens: np.ndarray

    def __post_init__(self):
        _check_num_rows(self.num_rows)
        if self.gen_type not in SOURCE_GEN_TYPES:
            raise ValueError(
                f"NumericalSource.gen_type must be one of {SOURCE_GEN_TYPES}, got {self.gen_type!r}"
            )
        k = _check_gens("NumericalSource.gens", self.gens, self.num_rows)
        codes = self.gens[:, COL_TYPE].astype(np.int64)
        if self.gen_type == "mixed":
            if not 1 <= k <= 3 or (codes == GEN_TS).any():
                raise ValueError(
                    "NumericalSource.gens of a mixed source must hold 1 to 3 uniform/gaussian/"
                    f"beta generators, got type codes {codes.tolist()}"
                )
        elif k != 1 or codes[0] != _TYPE_CODES[self.gen_type]:
            raise ValueError(
                f"NumericalSource.gens of a {self.gen_type} source must be one "
                f"{self.gen_type} generator (code {_TYPE_CODES[self.gen_type]}), "
                f"got type codes {codes.tolist()}"
            )


class CategoricalSource(msgspec.Struct, frozen=True):
    """A categorical source node of an eagerly propagated SCM (DESIGN §4.3).

    Attributes
    ----------
    gen_type : str
        The sampled source type; ``ts`` gives softmax-of-ts categories, the
        others i.i.d. categories.
    num_rows : int
        ``n``, the row count of the table.
    num_categories : int
        ``k >= 1``.
    gens : np.ndarray of float64, shape (k, GEN_WIDTH) for ``ts``, else (0, GEN_WIDTH)
        One ts generator per category.
    probs : np.ndarray of float64, shape (k,) for i.i.d. types, else (0,)
        Category probabilities (flat Dirichlet draw).
    """

    gen_type: str
    num_rows: int
    num_categories: int
    gens: np.ndarray
    probs: np.ndarray

    def __post_init__(self):
        _check_num_rows(self.num_rows)
        if self.gen_type not in SOURCE_GEN_TYPES:
            raise ValueError(
                f"CategoricalSource.gen_type must be one of {SOURCE_GEN_TYPES}, "
                f"got {self.gen_type!r}"
            )
        k = self.num_categories
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"CategoricalSource.num_categories must be an int >= 1, got {k!r}")
        num_gens = _check_gens("CategoricalSource.gens", self.gens, self.num_rows)
        probs = self.probs
        if not (isinstance(probs, np.ndarray) and probs.dtype == np.float64 and probs.ndim == 1):
            raise ValueError(
                f"CategoricalSource.probs must be a 1-d float64 array, got {probs!r}"
            )
        if self.gen_type == "ts":
            codes = self.gens[:, COL_TYPE].astype(np.int64)
            if num_gens != k or (codes != GEN_TS).any() or probs.size != 0:
                raise ValueError(
                    f"a ts CategoricalSource needs {k} ts generators (one per category) and "
                    f"empty probs, got type codes {codes.tolist()} and {probs.size} probs"
                )
        elif (
            num_gens != 0
            or probs.size != k
            or not np.isfinite(probs).all()
            or (probs < 0).any()
            or probs.sum() <= 0
        ):
            raise ValueError(
                f"an i.i.d. CategoricalSource needs no generators and {k} finite probs >= 0 "
                f"with a positive sum, got {num_gens} generators and probs {probs.tolist()}"
            )


def _check_num_rows(num_rows):
    if (
        isinstance(num_rows, (bool, np.bool_))
        or not isinstance(num_rows, (int, np.integer))
        or num_rows < 0
    ):
        raise ValueError(f"num_rows must be an int >= 0, got {num_rows!r}")


def _check_gens(name, gens, num_rows) -> int:
    """Validate generator rows; return their count."""
    if not (
        isinstance(gens, np.ndarray)
        and gens.dtype == np.float64
        and gens.ndim == 2
        and gens.shape[1] == GEN_WIDTH
    ):
        raise ValueError(
            f"{name} must be a float64 array of shape (k, {GEN_WIDTH}), "
            f"got {getattr(gens, 'dtype', type(gens).__name__)} "
            f"of shape {getattr(gens, 'shape', None)}"
        )
    if not np.isfinite(gens).all():
        raise ValueError(f"{name} must be finite, got {gens.tolist()}")
    for i, row in enumerate(gens):
        where = f"{name}[{i}]"
        code = row[COL_TYPE]
        if code not in (GEN_TS, GEN_UNIFORM, GEN_GAUSSIAN, GEN_BETA):
            raise ValueError(f"{where}: unknown generator type code {code}")
        if not row[COL_LO] <= row[COL_HI]:
            raise ValueError(f"{where}: need lo <= hi, got lo={row[COL_LO]}, hi={row[COL_HI]}")
        if code == GEN_TS:
            f, rho = row[COL_CYCLE_FREQ], row[COL_AR_RHO]
            if num_rows > 0 and not (f >= 1 and f == math.floor(f)):
                raise ValueError(f"{where}: cycle frequency must be an integer >= 1, got {f}")
            if row[COL_TREND_ALPHA] < 0 or row[COL_NOISE_SCALE] < 0:
                raise ValueError(
                    f"{where}: trend alpha and noise scale must be >= 0, got "
                    f"{row[COL_TREND_ALPHA]} and {row[COL_NOISE_SCALE]}"
                )
            if row[COL_AR_WINDOW] != ar_window(rho):
                raise ValueError(
                    f"{where}: AR window {row[COL_AR_WINDOW]} does not match rho={rho} "
                    f"(expected {ar_window(rho)}); build rows with ts_generator()"
                )
        elif code == GEN_GAUSSIAN and not row[COL_STD] > 0:
            raise ValueError(f"{where}: gaussian std must be > 0, got {row[COL_STD]}")
        elif code == GEN_BETA and not (row[COL_BETA_A] > 0 and row[COL_BETA_B] > 0):
            raise ValueError(
                f"{where}: beta shapes must be > 0, got a={row[COL_BETA_A]}, b={row[COL_BETA_B]}"
            )
    return gens.shape[0]


# ---------------------------------------------------------------------------
# Plan-time sampling
# ---------------------------------------------------------------------------


def plan_numerical_source(rng, scm_params, num_rows, is_activity) -> NumericalSource:
    """Draw the generator type and parameters of one numerical source (DESIGN §4.3).

    Parameters
    ----------
    rng : np.random.Generator
        The planning stream of this source node.
    scm_params : SCMParams (or any object with its source fields)
        Reads ``source_gen_type_choices`` and the ``ts_*``, ``*_table_ts_*`` and
        ``source_beta_*`` fields.
    num_rows : int
        Rows of the table.
    is_activity : bool
        Activity tables draw the ts trend and cycle scales from their choices
        and use the activity noise scale; entity tables use the entity constants.

    Returns
    -------
    NumericalSource
    """
    _check_num_rows(num_rows)
    gen_type = _gen_type(rng, scm_params)
    if gen_type == "mixed":
        count = int(rng.integers(2, 4))
        sub_types = [MIXED_SUB_TYPES[int(rng.integers(len(MIXED_SUB_TYPES)))] for _ in range(count)]
    else:
        sub_types = [gen_type]
    gens = np.stack(
        [_plan_generator(rng, scm_params, t, num_rows, is_activity) for t in sub_types]
    )
    return NumericalSource(gen_type=gen_type, num_rows=int(num_rows), gens=gens)


def plan_categorical_source(
    rng, scm_params, num_rows, num_categories, is_activity
) -> CategoricalSource:
    """Draw a categorical source of ``num_categories`` categories (DESIGN §4.3, eager mode).

    Type ts gives one ts generator per category (softmax sampling per row); the
    other types give i.i.d. categories with flat-Dirichlet probabilities.
    Parameters as :func:`plan_numerical_source`.
    """
    _check_num_rows(num_rows)
    if isinstance(num_categories, (bool, np.bool_)) or not isinstance(
        num_categories, (int, np.integer)
    ) or num_categories < 1:
        raise ValueError(f"num_categories must be an int >= 1, got {num_categories!r}")
    k = int(num_categories)
    gen_type = _gen_type(rng, scm_params)
    if gen_type == "ts":
        gens = np.stack(
            [_plan_generator(rng, scm_params, "ts", num_rows, is_activity) for _ in range(k)]
        )
        probs = np.zeros(0, dtype=np.float64)
    else:
        gens = np.zeros((0, GEN_WIDTH), dtype=np.float64)
        probs = rng.dirichlet(np.ones(k)).astype(np.float64)
    return CategoricalSource(
        gen_type=gen_type, num_rows=int(num_rows), num_categories=k, gens=gens, probs=probs
    )


def _gen_type(rng, scm_params) -> str:
    gen_type = scm_params.source_gen_type_choices.sample(rng)
    if gen_type not in SOURCE_GEN_TYPES:
        raise ValueError(
            f"scm_params.source_gen_type_choices produced {gen_type!r}; "
            f"allowed types are {SOURCE_GEN_TYPES}"
        )
    return gen_type


def _plan_generator(rng, p, gen_type, num_rows, is_activity) -> np.ndarray:
    scale = float(p.ts_value_scale_choices.sample(rng))
    lo, hi = np.sort(rng.uniform(size=2) * scale).tolist()
    if gen_type == "uniform":
        return uniform_generator(lo, hi)
    if gen_type == "gaussian":
        return gaussian_generator(lo, hi)
    if gen_type == "beta":
        a = float(p.source_beta_alpha_choices.sample(rng))
        b = float(p.source_beta_beta_choices.sample(rng))
        return beta_generator(lo, hi, a, b)
    if is_activity:
        trend_scale = float(p.activity_table_ts_trend_scale_choices.sample(rng))
        cycle_scale = float(p.activity_table_ts_cycle_scale_choices.sample(rng))
        noise_scale = float(p.activity_table_ts_noise_scale)
    else:
        trend_scale = float(p.entity_table_ts_trend_scale)
        cycle_scale = float(p.entity_table_ts_cycle_scale)
        noise_scale = float(p.entity_table_ts_noise_scale)
    trend_alpha = float(p.ts_trend_alpha_choices.sample(rng))
    perc = float(p.ts_cycle_freq_perc_choices.sample(rng))
    # f >= 1 keeps sin(π r / f) defined for tiny tables (n · perc < 1 only when n = 0).
    cycle_freq = max(math.ceil(num_rows * perc), 1)
    ar_rho = float(p.ts_ar_rho_choices.sample(rng))
    return ts_generator(
        lo, hi, trend_alpha, trend_scale, cycle_freq, cycle_scale, noise_scale, ar_rho
    )


# ---------------------------------------------------------------------------
# The packed bank
# ---------------------------------------------------------------------------


class SourceBank(msgspec.Struct, frozen=True):
    """All sources of one SCM as flat arrays for the kernel (layout: module docstring).

    Build it with :meth:`SourceBank.from_sources`.
    """

    num_rows: int
    kind: np.ndarray
    gen_start: np.ndarray
    gen_stop: np.ndarray
    gens: np.ndarray
    cdf_start: np.ndarray
    cdf_stop: np.ndarray
    cdfs: np.ndarray
    num_categories: np.ndarray
    keys: np.ndarray

    @property
    def num_sources(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def from_sources(cls, num_rows, sources, keys) -> SourceBank:
        """Pack ``sources`` of one table of ``num_rows`` rows.

        Parameters
        ----------
        num_rows : int
            Rows of the table; every source must have been planned for it.
        sources : sequence of NumericalSource | CategoricalSource
            In the order of the output columns of ``source_values``.
        keys : sequence of uint64, same length
            Counter-RNG stream key of each source.

        Returns
        -------
        SourceBank
        """
        _check_num_rows(num_rows)
        sources = list(sources)
        keys = list(keys)
        if len(keys) != len(sources):
            raise ValueError(
                f"need one key per source, got {len(keys)} keys for {len(sources)} sources"
            )
        key_arr = np.zeros(len(keys), dtype=np.uint64)
        for i, key in enumerate(keys):
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
                raise ValueError(f"keys[{i}] must be an integer stream key, got {key!r}")
            if not 0 <= int(key) < 2**64:
                raise ValueError(f"keys[{i}] must fit in 64 unsigned bits, got {key}")
            key_arr[i] = np.uint64(int(key))

        num = len(sources)
        kind = np.zeros(num, dtype=np.int64)
        gen_start = np.zeros(num, dtype=np.int64)
        gen_stop = np.zeros(num, dtype=np.int64)
        cdf_start = np.zeros(num, dtype=np.int64)
        cdf_stop = np.zeros(num, dtype=np.int64)
        num_categories = np.zeros(num, dtype=np.int64)
        gens, cdfs = [], []
        num_gens = num_cdf = 0
        for i, src in enumerate(sources):
            if not isinstance(src, (NumericalSource, CategoricalSource)):
                raise ValueError(
                    f"sources[{i}] must be a NumericalSource or CategoricalSource, "
                    f"got {type(src).__name__}"
                )
            if src.num_rows != num_rows:
                raise ValueError(
                    f"sources[{i}] was planned for {src.num_rows} rows, the bank has {num_rows}"
                )
            if isinstance(src, NumericalSource):
                kind[i] = NUMERICAL
            else:
                num_categories[i] = src.num_categories
                kind[i] = CATEGORICAL_TS if src.gen_type == "ts" else CATEGORICAL_IID
            gens.append(src.gens)
            gen_start[i] = num_gens
            num_gens += src.gens.shape[0]
            gen_stop[i] = num_gens
            cdf_start[i] = num_cdf
            if kind[i] == CATEGORICAL_IID:
                cdfs.append(np.cumsum(src.probs))
                num_cdf += src.probs.size
            cdf_stop[i] = num_cdf
        gens_arr = (
            np.ascontiguousarray(np.concatenate(gens), dtype=np.float64)
            if gens
            else np.zeros((0, GEN_WIDTH), dtype=np.float64)
        )
        cdfs_arr = np.concatenate(cdfs) if cdfs else np.zeros(0, dtype=np.float64)
        return cls(
            num_rows=int(num_rows),
            kind=kind,
            gen_start=gen_start,
            gen_stop=gen_stop,
            gens=gens_arr,
            cdf_start=cdf_start,
            cdf_stop=cdf_stop,
            cdfs=np.ascontiguousarray(cdfs_arr, dtype=np.float64),
            num_categories=num_categories,
            keys=key_arr,
        )

