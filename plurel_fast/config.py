"""Configuration of the generator (DESIGN §0-4).

Parameter names and defaults are those of the reference ``plurel`` package, so a
``plurel`` user can switch by changing an import. What differs is the representation:
every struct here is a frozen :class:`msgspec.Struct` that checks itself on
construction *and* on decoding, compares by value, round-trips through JSON and TOML,
and has a stable content hash (:attr:`Config.config_hash`). Functions that the
reference stores in its choice sets (activations, initialisations, stypes) are
named by strings here; the names are the tuples ``ACTIVATIONS``,
``INITIALIZATIONS`` and ``STYPES`` below.

Every validation failure raises :class:`ConfigError` (a ``ValueError``) whose message
names ``Struct.field``, the offending value and what would be accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Literal

import msgspec
import numpy as np
from msgspec.structs import force_setattr

__all__ = [
    "ACTIVATIONS",
    "AGGREGATIONS",
    "COL_TRANSFORMS",
    "EDGE_WEIGHT_DISTS",
    "INITIALIZATIONS",
    "LAYOUTS",
    "PRESETS",
    "PROPAGATION_MODES",
    "SOURCE_TYPES",
    "SQL_DIALECTS",
    "STYPES",
    "Choices",
    "Config",
    "ConfigError",
    "DAGParams",
    "DatabaseParams",
    "SCMParams",
]

# Names a configuration may use (DESIGN §1, §2, §4): owned by kernels.codes, where the
# kernels read the same tables.
from plurel_fast.kernels.codes import (  # noqa: E402
    ACTIVATIONS,
    AGGREGATIONS,
    COL_TRANSFORMS,
    EDGE_WEIGHT_DISTS,
    INITIALIZATIONS,
    LAYOUTS,
    PROPAGATION_MODES,
    SOURCE_TYPES,
    SQL_DIALECTS,
    STYPES,
)


class ConfigError(ValueError):
    """A configuration value is wrong; the message says where, what and what would be right."""


def _plain(v):
    """NumPy scalars become the Python scalars msgspec can encode and compare."""
    return v.item() if isinstance(v, np.generic) else v


class FrozenList(list):
    """A list that cannot change: the type of :attr:`Choices.value`.

    A list rather than a tuple so that ``value`` stays what ``plurel`` users and
    serialisers expect (``== [1, 5]``, ``msgspec.to_builtins`` gives a plain list,
    YAML and TOML write a sequence); every method that would change it raises
    ``TypeError``, since an in-place edit would skip validation and change a
    config after its ``config_hash`` was taken. Hashable, by content.
    """

    __slots__ = ()

    def __new__(cls, items=()):
        self = super().__new__(cls)
        list.extend(self, items)
        return self

    def __init__(self, items=()):  # filled by __new__; re-running __init__ must not refill
        pass

    def _immutable(self, *args, **kwargs):
        raise TypeError(
            "Choices.value cannot be changed in place (a config is immutable once "
            "validated); build a new one, e.g. Choices('range', [lo, hi]), and use "
            "config.replace(...)"
        )

    append = extend = insert = remove = pop = clear = sort = reverse = _immutable
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _immutable

    def __hash__(self):
        return hash(tuple(self))

    def __reduce__(self):  # pickle and copy without the list protocol's appends
        return (FrozenList, (list(self),))


def _frozen(values) -> FrozenList:
    """A FrozenList of the values, lists inside it frozen too, NumPy scalars made plain."""
    return FrozenList(
        _frozen(v) if isinstance(v, (list, tuple)) else _plain(v) for v in values
    )


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _typed_key(v):
    """Hashable key that tells 1, 1.0 and True apart (they sample differently)."""
    if isinstance(v, (list, tuple)):
        return ("list", tuple(_typed_key(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((str(k), _typed_key(x)) for k, x in v.items())))
    try:
        hash(v)
    except TypeError:
        return (type(v).__name__, repr(v))
    return (type(v).__name__, v)


# --------------------------------------------------------------------------- Choices


class Choices(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A sampling rule for one parameter (DESIGN §0).

    ``Choices(kind="range", value=[lo, hi])`` draws a uniform integer in [lo, hi] when
    ``lo`` is an int and a uniform real in [lo, hi) when it is a float, so
    ``[1, 5]`` and ``[1.0, 5.0]`` are different rules (and compare unequal).
    ``Choices(kind="set", value=[...])`` picks one element uniformly.

    ``value`` is copied on construction into a :class:`FrozenList` (a list or
    tuple is accepted, and so are lists inside it; NumPy scalars become Python
    scalars): a validated config cannot be edited in place.
    """

    kind: Literal["range", "set"]
    value: list[Any]

    def __post_init__(self):
        if self.kind not in ("range", "set"):
            raise ConfigError(f"Choices.kind must be 'range' or 'set', got {self.kind!r}")
        if not isinstance(self.value, (list, tuple)):
            raise ConfigError(
                f"Choices.value must be a list, got {type(self.value).__name__} {self.value!r}"
            )
        values = _frozen(self.value)
        for v in values:
            try:
                hash(v)
            except TypeError:
                raise ConfigError(
                    "Choices.value elements must be numbers, strings or lists of them "
                    f"(a config is immutable), got {type(v).__name__} {v!r}"
                ) from None
        force_setattr(self, "value", values)
        if self.kind == "set":
            if not values:
                raise ConfigError("Choices(kind='set') needs at least one value, got []")
            return
        if len(values) != 2:
            raise ConfigError(
                f"Choices(kind='range') needs value=[lo, hi], got {len(values)} values {values!r}"
            )
        lo, hi = values
        if not (_is_number(lo) and _is_number(hi)):
            raise ConfigError(f"Choices(kind='range') bounds must be numbers, got {values!r}")
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"Choices(kind='range') bounds must be finite, got {values!r}")
        if lo > hi:
            raise ConfigError(f"Choices(kind='range') needs lo <= hi, got value={values!r}")

    def __eq__(self, other):
        if not isinstance(other, Choices):
            return NotImplemented
        return self.kind == other.kind and _typed_key(self.value) == _typed_key(other.value)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash((self.kind, _typed_key(self.value)))

    @property
    def is_int_range(self) -> bool:
        """True for a range whose draws are integers (``lo`` is an int)."""
        return self.kind == "range" and isinstance(self.value[0], int)

    @property
    def low(self):
        """Smallest value this rule can produce (ranges and numeric sets)."""
        return self.value[0] if self.kind == "range" else min(self.value)

    @property
    def high(self):
        """Largest value this rule can produce (ranges and numeric sets)."""
        return self.value[1] if self.kind == "range" else max(self.value)

    def sample(self, rng: np.random.Generator):
        """One draw as a plain Python value.

        One ``rng.random()`` per draw, scaled: planning makes ~10^5 of these
        per database and ``Generator.integers`` costs several times more per
        call. The 53-bit uniform makes the index bias below 1e-13.
        """
        u = rng.random()
        value = self.value
        if self.kind == "set":
            return value[int(u * len(value))]
        lo, hi = value
        if isinstance(lo, int):
            return int(lo) + int(u * (int(hi) - int(lo) + 1))
        return float(lo) + (float(hi) - float(lo)) * u

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n independent draws at once: the values of n successive :meth:`sample` calls.

        One ``rng.random(n)`` (the same uniforms as n calls of ``rng.random()``)
        scaled by the same formulas, so the values, and the generator state
        after, are exactly those of ``[self.sample(rng) for _ in range(n)]``.

        Returns
        -------
        np.ndarray (n,)
            int64 for an int range, float64 for a float range, and for a set
            an object array of its (plain Python) values.
        """
        u = rng.random(n)
        if self.kind == "set":
            values = np.empty(len(self.value), dtype=object)
            for i, v in enumerate(self.value):  # element by element: a value may be a list
                values[i] = v
            return values[(u * len(self.value)).astype(np.int64)]
        lo, hi = self.value
        if self.is_int_range:
            return int(lo) + (u * (int(hi) - int(lo) + 1)).astype(np.int64)
        return float(lo) + (float(hi) - float(lo)) * u

    def sample_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """For a set: the positions in ``value`` of n successive :meth:`sample` draws (int64)."""
        if self.kind != "set":
            raise ConfigError(f"sample_indices needs Choices(kind='set'), got {self!r}")
        return (rng.random(n) * len(self.value)).astype(np.int64)

    def sample_pl(self, rng: np.random.Generator, exponent: float = 1.0) -> int:
        """Power-law draw on an int range: P(k) proportional to 1 / k**exponent."""
        if not self.is_int_range:
            raise ConfigError(
                f"power-law sampling needs Choices(kind='range') of ints, got {self!r}"
            )
        lo, hi = int(self.value[0]), int(self.value[1])
        if lo < 1:
            raise ConfigError(f"power-law sampling needs lo >= 1, got value={list(self.value)!r}")
        ks = np.arange(lo, hi + 1, dtype=np.float64)
        p = ks ** (-float(exponent))
        return int(lo + rng.choice(ks.size, p=p / p.sum()))


def _range(lo, hi):
    return msgspec.field(default_factory=lambda: Choices("range", [lo, hi]))


def _set(*values):
    return msgspec.field(default_factory=lambda: Choices("set", list(values)))


# ------------------------------------------------------------------ validation helpers


class _Bounds(msgspec.Struct, frozen=True):
    """An interval of allowed numbers; ``None`` means unbounded on that side."""

    lo: float | None = None
    hi: float | None = None
    lo_closed: bool = True
    hi_closed: bool = True

    def __contains__(self, x) -> bool:
        if self.lo is not None and (x < self.lo or (x == self.lo and not self.lo_closed)):
            return False
        if self.hi is not None and (x > self.hi or (x == self.hi and not self.hi_closed)):
            return False
        return True

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>=' if self.lo_closed else '>'} {self.lo}"
        left = "[" if self.lo_closed else "("
        right = "]" if self.hi_closed else ")"
        return f"in {left}{self.lo}, {self.hi}{right}"


_PROB = _Bounds(0, 1)
_FRACTION_NO_ONE = _Bounds(0, 1, hi_closed=False)  # [0, 1)
_FRACTION_NO_ZERO = _Bounds(0, 1, lo_closed=False)  # (0, 1]
_POSITIVE = _Bounds(0, lo_closed=False)
_NON_NEGATIVE = _Bounds(0)
_ANY = _Bounds()


def _at_least(n: int) -> _Bounds:
    return _Bounds(n)


def _check_choices(
    obj,
    name: str,
    *,
    names: tuple[str, ...] | None = None,
    bounds: _Bounds = _ANY,
    integer: bool = False,
    range_only: bool = False,
    why: str = "",
) -> None:
    """Check that ``obj.name`` is a Choices whose every possible draw is allowed."""
    where = f"{type(obj).__name__}.{name}"
    why = f" ({why})" if why else ""
    ch = getattr(obj, name)
    if not isinstance(ch, Choices):
        example = f"Choices(kind='set', value={list(names[:2])!r})" if names else (
            "Choices(kind='range', value=[lo, hi])"
        )
        raise ConfigError(f"{where} must be a Choices such as {example}, got {ch!r}")
    try:
        ch.__post_init__()  # a Choices may have been altered after construction
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if names is not None:
        if ch.kind != "set":
            raise ConfigError(
                f"{where} must be Choices(kind='set', value=[...]) of names, got {ch!r}; "
                f"known names: {', '.join(names)}"
            )
        unknown = [v for v in ch.value if not isinstance(v, str) or v not in names]
        if unknown:
            raise ConfigError(
                f"{where} has unknown name(s) {unknown!r}; known names: {', '.join(names)}"
            )
        return
    if range_only and ch.kind != "range":
        raise ConfigError(
            f"{where} must be Choices(kind='range', value=[lo, hi]){why}, got {ch!r}"
        )
    for v in ch.value:
        if not _is_number(v) or not math.isfinite(v):
            raise ConfigError(f"{where} values must be finite numbers, got {v!r} in {ch!r}")
        if integer and not isinstance(v, int):
            raise ConfigError(
                f"{where} values must be integers{why}, got {v!r} in {ch!r}; "
                f"write e.g. value=[{int(ch.low)}, {int(ch.high)}]"
            )
    for v in (ch.low, ch.high):
        if v not in bounds:
            raise ConfigError(f"{where} values must be {bounds}{why}, got {v!r} in {ch!r}")


def _check_number(
    obj, name: str, *, bounds: _Bounds = _ANY, integer: bool = False, why: str = ""
) -> None:
    """Check a scalar field; floats are stored as ``float`` so equal configs hash equally."""
    where = f"{type(obj).__name__}.{name}"
    why = f" ({why})" if why else ""
    v = _plain(getattr(obj, name))
    if not _is_number(v):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind}, got {type(v).__name__} {v!r}")
    if integer and not isinstance(v, int):
        raise ConfigError(f"{where} must be an integer{why}, got {v!r}")
    if not integer:
        v = float(v)
        if not math.isfinite(v):
            raise ConfigError(f"{where} must be finite, got {v!r}")
    if v not in bounds:
        raise ConfigError(f"{where} must be {bounds}{why}, got {v!r}")
    force_setattr(obj, name, v)


def _to_datetime(v) -> dt.datetime:
    if isinstance(v, np.datetime64):
        v = v.astype("datetime64[us]").item()
    if isinstance(v, dt.datetime):  # also pandas.Timestamp, a datetime subclass
        return dt.datetime(
            v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, v.tzinfo
        )
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        return dt.datetime.fromisoformat(v.strip())
    raise TypeError(type(v).__name__)


# The whole days datetime64[ns] holds (1677-09-21 00:12:43 to 2262-04-11 23:47:16).
_EARLIEST_TIMESTAMP = dt.datetime(1677, 9, 22)
_LATEST_TIMESTAMP = dt.datetime(2262, 4, 11)


def _check_timestamp(obj, name: str) -> None:
    where = f"{type(obj).__name__}.{name}"
    v = getattr(obj, name)
    try:
        t = _to_datetime(v)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where} must be a datetime, date, pandas.Timestamp or ISO string such as "
            f"'1990-01-01', got {v!r}"
        ) from None
    if t.tzinfo is not None:
        raise ConfigError(f"{where} must be a naive time (no time zone), got {v!r}")
    force_setattr(obj, name, t)


def _check_instance(obj, name: str, cls: type) -> None:
    v = getattr(obj, name)
    if not isinstance(v, cls):
        raise ConfigError(
            f"{type(obj).__name__}.{name} must be a {cls.__name__}, got {type(v).__name__} {v!r}"
        )


def _check_path(obj, name: str) -> None:
    v = getattr(obj, name)
    if v is None:
        return
    if not isinstance(v, (str, os.PathLike)):
        raise ConfigError(
            f"{type(obj).__name__}.{name} must be a path string or None, "
            f"got {type(v).__name__} {v!r}"
        )
    force_setattr(obj, name, os.fspath(v))


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    def replace(self, **changes):
        """A copy with some fields changed; the copy is validated like a new one."""
        return msgspec.structs.replace(self, **changes)


# ---------------------------------------------------------------------- parameter sets


class DatabaseParams(_Struct, frozen=True):
    """Database-level choices (DESIGN §1).

    Attributes
    ----------
    table_layout_choices : set of names from ``LAYOUTS``; the class of the table DAG.
    num_tables_choices : ints >= 1.
    num_rows_entity_table_choices, num_rows_activity_table_choices : ints >= 1, rows
        of an entity (referenced) / activity (sink) table.
    num_cols_choices : int range, lo >= 1; feature columns per table, drawn with
        P(k) proportional to 1/k so most tables are narrow.
    min_timestamp, max_timestamp : naive datetimes (a date, ``pandas.Timestamp`` or ISO
        string is accepted and converted) at least 2 days apart, within
        1677-09-22 .. 2262-04-11 (what the datetime64[ns] date columns hold); each
        database picks its own time window of two distinct days between them.
    column_nan_perc_choices : fraction of nulls per float column, in [0, 1).
    col_transform_choices : set of names from ``COL_TRANSFORMS`` (DESIGN §5).
    """

    table_layout_choices: Choices = _set("BarabasiAlbert", "ReverseRandomTree", "WattsStrogatz")
    num_tables_choices: Choices = _range(3, 20)
    num_rows_entity_table_choices: Choices = _range(500, 1000)
    num_rows_activity_table_choices: Choices = _range(2000, 5000)
    num_cols_choices: Choices = _range(3, 40)
    min_timestamp: dt.datetime = dt.datetime(1990, 1, 1)
    max_timestamp: dt.datetime = dt.datetime(2025, 1, 1)
    column_nan_perc_choices: Choices = _range(0.01, 0.1)
    col_transform_choices: Choices = _set(*COL_TRANSFORMS)

    def __post_init__(self):
        _check_choices(self, "table_layout_choices", names=LAYOUTS)
        _check_choices(self, "num_tables_choices", integer=True, bounds=_at_least(1))
        for name in ("num_rows_entity_table_choices", "num_rows_activity_table_choices"):
            _check_choices(
                self, name, integer=True, bounds=_at_least(1), why="a table needs a row"
            )
        _check_choices(
            self,
            "num_cols_choices",
            integer=True,
            range_only=True,
            bounds=_at_least(1),
            why="column counts are drawn by a power law over an int range starting at 1 or more",
        )
        _check_timestamp(self, "min_timestamp")
        _check_timestamp(self, "max_timestamp")
        lo, hi = self.min_timestamp, self.max_timestamp
        # Dates are datetime64[ns]; out of its range they would wrap around. A
        # window's days lie in [midnight(min), midnight(max)), so these bounds
        # keep every day (and the split timestamps) representable.
        if lo < _EARLIEST_TIMESTAMP:
            raise ConfigError(
                f"DatabaseParams.min_timestamp must be {_EARLIEST_TIMESTAMP.date()} or later, "
                f"got {lo}: the date columns are datetime64[ns], which holds "
                "1677-09-21 00:12:43 to 2262-04-11 23:47:16"
            )
        if hi > _LATEST_TIMESTAMP:
            raise ConfigError(
                f"DatabaseParams.max_timestamp must be {_LATEST_TIMESTAMP.date()} or earlier, "
                f"got {hi}: the date columns are datetime64[ns], which holds "
                "1677-09-21 00:12:43 to 2262-04-11 23:47:16"
            )
        if not lo < hi:
            raise ConfigError(
                f"DatabaseParams.min_timestamp ({lo}) must be earlier than "
                f"DatabaseParams.max_timestamp ({hi})"
            )
        if (hi.date() - lo.date()).days < 2:
            raise ConfigError(
                f"DatabaseParams.min_timestamp ({lo}) and max_timestamp ({hi}) must be at "
                "least 2 days apart: each database picks two distinct days between them"
            )
        _check_choices(self, "column_nan_perc_choices", bounds=_FRACTION_NO_ONE)
        _check_choices(self, "col_transform_choices", names=COL_TRANSFORMS)


class SCMParams(_Struct, frozen=True):
    """Choices for the per-table structural causal models (DESIGN §3-4).

    Attributes
    ----------
    scm_layout_choices : set of names from ``LAYOUTS``; the class of each SCM graph.
    scm_col_node_perc_choices : in (0, 1]; share of column nodes, sets the graph size.
    num_categories_choices : ints >= 2; categories of a categorical node.
    col_stype_choices : set from ``STYPES``.
    initialization_choices : set from ``INITIALIZATIONS``; MLP weight inits.
    activation_choices : set from ``ACTIVATIONS``; hidden-layer activations.
    node_noise_alpha_choices, node_noise_beta_choices : > 0; Beta noise of each node.
    bi_hsbm_levels_choices, bi_hsbm_clusters_per_level_choices : ints >= 1; the
        hierarchical block model of foreign keys (DESIGN §3).
    ts_trend_alpha_choices : >= 0; exponent of the time-series trend.
    activity_table_ts_trend_scale_choices, entity_table_ts_trend_scale : trend scale
        of activity tables (a choice) and entity tables (a constant).
    ts_cycle_freq_perc_choices : in (0, 1]; cycle period as a share of the rows.
    activity_table_ts_cycle_scale_choices, entity_table_ts_cycle_scale : cycle scale.
    activity_table_ts_noise_scale, entity_table_ts_noise_scale : >= 0; AR(1) noise.
    ts_ar_rho_choices : in [0, 1); AR(1) coefficient.
    ts_value_scale_choices : > 0; scale of a source's value range.
    propagation_agg_choices : set from ``AGGREGATIONS``.
    mlp_in_dim, mlp_out_dim : 1, the only width implemented: the input of a column's
        encoder MLP and the output of its decoder MLP (kept so that ``plurel``
        configs load unchanged).
    mlp_emb_dim : int >= 1.
    mlp_num_layers_choices : ints >= 1.
    mlp_weight_density_choices : in (0, 1]; share of non-zero MLP weights.
    source_gen_type_choices : set from ``SOURCE_TYPES``.
    source_beta_alpha_choices, source_beta_beta_choices : > 0; Beta sources.
    propagation_mode_choices : set from ``PROPAGATION_MODES``.
    cat_label_permute_prob_choices, cat_label_reverse_prob_choices : in [0, 1];
        lazy-mode label shuffles (DESIGN §4.5).
    propagate_batch_size : int >= 1. Kept so that ``plurel`` configs load unchanged;
        it has no effect on what plurel_fast generates.
    """

    scm_layout_choices: Choices = _set(
        "ErdosRenyi",
        "BarabasiAlbert",
        "RandomTree",
        "ReverseRandomTree",
        "Layered",
        "WattsStrogatz",
        "RandomCauchy",
    )
    scm_col_node_perc_choices: Choices = _range(0.3, 0.9)
    num_categories_choices: Choices = _range(2, 10)
    col_stype_choices: Choices = _set(*STYPES)
    initialization_choices: Choices = _set(*INITIALIZATIONS)
    activation_choices: Choices = _set(*ACTIVATIONS)
    node_noise_alpha_choices: Choices = _range(0.5, 5.0)
    node_noise_beta_choices: Choices = _range(0.5, 5.0)

    bi_hsbm_levels_choices: Choices = _range(1, 5)
    bi_hsbm_clusters_per_level_choices: Choices = _range(1, 3)

    ts_trend_alpha_choices: Choices = _range(0.0, 2.0)
    activity_table_ts_trend_scale_choices: Choices = _set(-1, 1)
    entity_table_ts_trend_scale: float = 0.0

    ts_cycle_freq_perc_choices: Choices = _set(*(i / 10 for i in range(1, 11)))
    activity_table_ts_cycle_scale_choices: Choices = _set(-1, 1)
    entity_table_ts_cycle_scale: float = 0.0

    activity_table_ts_noise_scale: float = 0.05
    entity_table_ts_noise_scale: float = 1.0

    ts_ar_rho_choices: Choices = _range(0.0, 0.9)
    ts_value_scale_choices: Choices = _set(0.01, 0.1, 1, 10, 100)

    propagation_agg_choices: Choices = _set(*AGGREGATIONS)

    mlp_in_dim: int = 1
    mlp_out_dim: int = 1
    mlp_emb_dim: int = 32
    mlp_num_layers_choices: Choices = _range(2, 4)
    mlp_weight_density_choices: Choices = _range(0.3, 1.0)
    source_gen_type_choices: Choices = _set(*SOURCE_TYPES)
    source_beta_alpha_choices: Choices = _range(0.5, 5.0)
    source_beta_beta_choices: Choices = _range(0.5, 5.0)
    propagation_mode_choices: Choices = _set(*PROPAGATION_MODES)
    cat_label_permute_prob_choices: Choices = _range(0.3, 1.0)
    cat_label_reverse_prob_choices: Choices = _range(0.2, 0.8)

    propagate_batch_size: int = 4096

    def __post_init__(self):
        _check_choices(self, "scm_layout_choices", names=LAYOUTS)
        _check_choices(self, "scm_col_node_perc_choices", bounds=_FRACTION_NO_ZERO)
        _check_choices(
            self,
            "num_categories_choices",
            integer=True,
            bounds=_at_least(2),
            why="a categorical column needs two labels",
        )
        _check_choices(self, "col_stype_choices", names=STYPES)
        _check_choices(self, "initialization_choices", names=INITIALIZATIONS)
        _check_choices(self, "activation_choices", names=ACTIVATIONS)
        _check_choices(self, "node_noise_alpha_choices", bounds=_POSITIVE, why="a Beta parameter")
        _check_choices(self, "node_noise_beta_choices", bounds=_POSITIVE, why="a Beta parameter")
        _check_choices(self, "bi_hsbm_levels_choices", integer=True, bounds=_at_least(1))
        _check_choices(
            self, "bi_hsbm_clusters_per_level_choices", integer=True, bounds=_at_least(1)
        )
        _check_choices(self, "ts_trend_alpha_choices", bounds=_NON_NEGATIVE)
        _check_choices(self, "activity_table_ts_trend_scale_choices")
        _check_number(self, "entity_table_ts_trend_scale")
        _check_choices(self, "ts_cycle_freq_perc_choices", bounds=_FRACTION_NO_ZERO)
        _check_choices(self, "activity_table_ts_cycle_scale_choices")
        _check_number(self, "entity_table_ts_cycle_scale")
        _check_number(self, "activity_table_ts_noise_scale", bounds=_NON_NEGATIVE)
        _check_number(self, "entity_table_ts_noise_scale", bounds=_NON_NEGATIVE)
        _check_choices(
            self, "ts_ar_rho_choices", bounds=_FRACTION_NO_ONE, why="keeps the AR(1) noise stable"
        )
        _check_choices(self, "ts_value_scale_choices", bounds=_POSITIVE)
        _check_choices(self, "propagation_agg_choices", names=AGGREGATIONS)
        for name in ("mlp_in_dim", "mlp_out_dim", "mlp_emb_dim"):
            _check_number(self, name, integer=True, bounds=_at_least(1))
        for name in ("mlp_in_dim", "mlp_out_dim"):
            if getattr(self, name) != 1:
                raise ConfigError(
                    f"SCMParams.{name} must be 1, got {getattr(self, name)!r}: a column node "
                    "holds one value per row, so its encoder MLP reads 1 input and its "
                    "decoder MLP writes 1 output; wider encoders/decoders are not implemented "
                    "(the kernels would read and write values no row owns)"
                )
        _check_choices(self, "mlp_num_layers_choices", integer=True, bounds=_at_least(1))
        _check_choices(self, "mlp_weight_density_choices", bounds=_FRACTION_NO_ZERO)
        _check_choices(self, "source_gen_type_choices", names=SOURCE_TYPES)
        _check_choices(self, "source_beta_alpha_choices", bounds=_POSITIVE, why="a Beta parameter")
        _check_choices(self, "source_beta_beta_choices", bounds=_POSITIVE, why="a Beta parameter")
        _check_choices(self, "propagation_mode_choices", names=PROPAGATION_MODES)
        _check_choices(self, "cat_label_permute_prob_choices", bounds=_PROB)
        _check_choices(self, "cat_label_reverse_prob_choices", bounds=_PROB)
        _check_number(self, "propagate_batch_size", integer=True, bounds=_at_least(1))


class DAGParams(_Struct, frozen=True):
    """Parameters of the DAG layouts (DESIGN §2), shared by table and SCM graphs.

    Attributes
    ----------
    ba_sink_edge_dropout, ba_flip_leaf_edge_prob : probabilities in [0, 1].
    ba_max_in_degree, ba_m : ints >= 1.
    er_p_choices, ws_rewire_p_choices : probabilities in [0, 1].
    layered_depth_choices : ints >= 1.
    layered_edge_dropout_p : probability in [0, 1].
    edge_weight_dist_choices : set from ``EDGE_WEIGHT_DISTS``.
    """

    ba_sink_edge_dropout: float = 0.4
    ba_flip_leaf_edge_prob: float = 0.0
    ba_max_in_degree: int = 4
    ba_m: int = 2
    er_p_choices: Choices = _range(0.3, 0.8)
    ws_rewire_p_choices: Choices = _range(0.1, 0.3)
    layered_depth_choices: Choices = _range(2, 8)
    layered_edge_dropout_p: float = 0.1
    edge_weight_dist_choices: Choices = _set(*EDGE_WEIGHT_DISTS)

    def __post_init__(self):
        _check_number(self, "ba_sink_edge_dropout", bounds=_PROB)
        _check_number(self, "ba_flip_leaf_edge_prob", bounds=_PROB)
        _check_number(self, "ba_max_in_degree", integer=True, bounds=_at_least(1))
        _check_number(self, "ba_m", integer=True, bounds=_at_least(1))
        _check_choices(self, "er_p_choices", bounds=_PROB)
        _check_choices(self, "ws_rewire_p_choices", bounds=_PROB)
        _check_choices(self, "layered_depth_choices", integer=True, bounds=_at_least(1))
        _check_number(self, "layered_edge_dropout_p", bounds=_PROB)
        _check_choices(self, "edge_weight_dist_choices", names=EDGE_WEIGHT_DISTS)


# ------------------------------------------------------------------------------ Config


class Config(_Struct, frozen=True):
    """Everything that decides what a seed generates.

    Attributes
    ----------
    database_params, scm_params, dag_params : the parameter sets above.
    val_split, test_split : 0 < val_split < test_split <= 1; the validation and test
        timestamps sit at these fractions of each database's daily time window.
    cache_dir : where generated databases are cached, or None. Not part of
        :attr:`config_hash`: the place of a cache does not change its content.
    schema_file : a SQL file whose CREATE TABLE statements give the schema instead of
        a random one (parsed, never executed; DESIGN §7), or None.
    schema_sql : the same SQL as a string, or None; at most one of the two.
    schema_dialect : the SQL's dialect, one of ``SQL_DIALECTS``, or None to detect it
        (PostgreSQL when nothing tells).
        :attr:`config_hash` covers the schema's text and dialect, not the file's path.

    Examples
    --------
    >>> cfg = Config(
    ...     database_params=DatabaseParams(num_tables_choices=Choices("range", [5, 10])),
    ...     cache_dir="~/.cache/plurel",
    ... )
    >>> Config.from_json(cfg.to_json()) == cfg
    True
    """

    database_params: DatabaseParams = msgspec.field(default_factory=DatabaseParams)
    scm_params: SCMParams = msgspec.field(default_factory=SCMParams)
    dag_params: DAGParams = msgspec.field(default_factory=DAGParams)
    val_split: float = 0.8
    test_split: float = 0.9
    cache_dir: str | None = None
    schema_file: str | None = None
    schema_sql: str | None = None
    schema_dialect: str | None = None

    def __post_init__(self):
        _check_instance(self, "database_params", DatabaseParams)
        _check_instance(self, "scm_params", SCMParams)
        _check_instance(self, "dag_params", DAGParams)
        _check_number(self, "val_split", bounds=_Bounds(0, 1, lo_closed=False, hi_closed=False))
        _check_number(self, "test_split", bounds=_FRACTION_NO_ZERO)
        if not self.val_split < self.test_split:
            raise ConfigError(
                f"Config.val_split ({self.val_split}) must be smaller than "
                f"Config.test_split ({self.test_split}): validation comes before test"
            )
        _check_path(self, "cache_dir")
        _check_path(self, "schema_file")
        if self.schema_sql is not None and not isinstance(self.schema_sql, str):
            raise ConfigError(
                f"Config.schema_sql must be SQL text or None, got {type(self.schema_sql).__name__}"
            )
        if self.schema_file is not None and self.schema_sql is not None:
            raise ConfigError(
                "Config.schema_file and Config.schema_sql are both set; give the schema once"
            )
        if self.schema_dialect is not None and self.schema_dialect not in SQL_DIALECTS:
            raise ConfigError(
                f"Config.schema_dialect must be one of {', '.join(SQL_DIALECTS)} or None "
                f"(detect), got {self.schema_dialect!r}"
            )

    def schema_text(self) -> str | None:
        """The SQL schema's text (``schema_sql``, or ``schema_file`` read), or None."""
        if self.schema_sql is not None:
            return self.schema_sql
        if self.schema_file is None:
            return None
        path = Path(self.schema_file).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"Config.schema_file {str(path)!r} cannot be read: {err}") from None

    # ----------------------------------------------------------------- presets

    @classmethod
    def preset(cls, name: str) -> Config:
        """A named configuration; ``PRESETS`` lists the names."""
        try:
            factory = PRESETS[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}"
            ) from None
        return factory()

    # ----------------------------------------------------------- serialisation

    def to_json(self, indent: int = 2) -> str:
        """JSON text with every field (``indent=0`` for a single line)."""
        return msgspec.json.format(msgspec.json.encode(self), indent=indent).decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> Config:
        """Decode and validate JSON; unknown or bad fields raise ConfigError with their path."""
        return _decode(msgspec.json.decode, data, "JSON")

    def to_toml(self) -> str:
        """TOML text; fields that are None are left out (TOML has no null)."""
        data = _drop_none(msgspec.to_builtins(self, builtin_types=(dt.datetime,)))
        return msgspec.toml.encode(data).decode()

    @classmethod
    def from_toml(cls, data: str | bytes) -> Config:
        """Decode and validate TOML; unknown or bad fields raise ConfigError with their path."""
        return _decode(msgspec.toml.decode, data, "TOML")

    def save(self, path: str | os.PathLike) -> Path:
        """Write to a ``.json`` or ``.toml`` file (chosen by suffix); returns the path."""
        path = Path(path).expanduser()
        fmt = _format_of(path)
        path.write_text(self.to_json() if fmt == "json" else self.to_toml(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """Read a ``.json`` or ``.toml`` file written by :meth:`save` (or by hand)."""
        path = Path(path).expanduser()
        fmt = _format_of(path)
        data = path.read_bytes()
        decode = msgspec.json.decode if fmt == "json" else msgspec.toml.decode
        return _decode(decode, data, str(path))

    # -------------------------------------------------------------------- hash

    @property
    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of the config's canonical JSON.

        Equal configs give equal hashes in any process. ``cache_dir`` is left out:
        where a database is cached does not change its content. A SQL schema counts
        by its text and dialect, not by its file's path (so the file is read here).
        Adding a field to these structs in a later version changes every hash; the
        SQL fields are left out when unset, so configs without a schema keep theirs.
        """
        data = msgspec.to_builtins(self)
        data.pop("cache_dir", None)
        text = self.schema_text()
        for name in ("schema_file", "schema_sql", "schema_dialect"):
            data.pop(name, None)
        data["schema_file"] = None  # where the hash of a schema-less config had it
        if text is not None:
            data["schema_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
            data["schema_dialect"] = self.schema_dialect
        canonical = msgspec.json.encode(data, order="sorted")
        return hashlib.sha256(canonical).hexdigest()[:16]


def _drop_none(obj):
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(
            f"cannot tell the config format of {str(path)!r} from its suffix "
            f"{suffix or '(none)'!r}; use a .json or .toml file"
        )
    return suffix[1:]


class _DuplicateKeys(dict):
    """A JSON object in which ``duplicate`` appeared more than once."""

    duplicate: str


def _no_duplicates(pairs):
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen = set()
    for key, _ in pairs:
        if key in seen:
            obj = _DuplicateKeys(obj)
            obj.duplicate = key
            return obj
        seen.add(key)


def _duplicate_key_path(obj, path="$"):
    """``$.a.b.key`` of the first key found twice in one object, or None."""
    if isinstance(obj, _DuplicateKeys):
        return f"{path}.{obj.duplicate}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        found = _duplicate_key_path(value, f"{path}[{key}]" if isinstance(obj, list) else f"{path}.{key}")
        if found:
            return found
    return None


def _check_json_keys(data, source: str) -> None:
    """JSON itself allows a key twice in an object (the last one wins), so a config
    with a field given twice would silently use one of them: refuse it."""
    try:
        tree = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, TypeError, RecursionError):
        return  # not JSON: msgspec's decoder says where
    path = _duplicate_key_path(tree)
    if path is not None:
        raise ConfigError(
            f"invalid config in {source}: key `{path}` is given more than once; "
            "write each field once"
        )


def _decode(decode: Callable, data, source: str) -> Config:
    if decode is msgspec.json.decode:
        _check_json_keys(data, source)
    try:
        return decode(data, type=Config)
    except msgspec.ValidationError as e:
        hint = ""
        if "RFC3339" in str(e):
            hint = " (write times in full, e.g. 1990-01-01T00:00:00)"
        raise ConfigError(f"invalid config in {source}: {e}{hint}") from None
    except msgspec.DecodeError as e:
        raise ConfigError(f"cannot parse {source} as a config: {e}") from None


def _paper_v1_0_0() -> Config:
    """The workload of the PluRel paper's v1.0.0 corpus."""
    return Config(
        scm_params=SCMParams(
            # The paper's corpus leaves out WattsStrogatz and RandomCauchy SCM graphs.
            scm_layout_choices=Choices(
                "set",
                ["ErdosRenyi", "BarabasiAlbert", "RandomTree", "ReverseRandomTree", "Layered"],
            ),
            activation_choices=Choices("set", ["relu", "elu", "selu", "silu", "softsign", "tanh"]),
            mlp_num_layers_choices=Choices("range", [2, 2]),
            mlp_weight_density_choices=Choices("range", [1.0, 1.0]),
            source_gen_type_choices=Choices("set", ["ts"]),
            ts_ar_rho_choices=Choices("range", [0.0, 0.0]),
            ts_value_scale_choices=Choices("set", [1]),
            propagation_agg_choices=Choices("set", ["sum"]),
            propagation_mode_choices=Choices("set", ["type_eager"]),
        ),
        database_params=DatabaseParams(col_transform_choices=Choices("set", ["identity"])),
        dag_params=DAGParams(edge_weight_dist_choices=Choices("set", ["gaussian"])),
    )


PRESETS: MappingProxyType[str, Callable[[], Config]] = MappingProxyType(
    {"default": Config, "v1.0.0": _paper_v1_0_0}
)
"""Named configurations: name -> function returning a fresh Config."""
