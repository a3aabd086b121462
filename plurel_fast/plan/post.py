"""Planning the post-processing of a table (DESIGN §4.5, §5).

Two kinds of decisions are taken once per database, from a planning
``numpy.random.Generator``:

- :class:`QuantizePlan`, per categorical column of a lazily propagated SCM
  (DESIGN §4.5): how many labels, whether and how the labels are permuted, and
  whether they are reversed. The boundary rows themselves are row-level
  randomness, drawn by the kernel from the plan's counter-RNG ``key``.
- :class:`TablePostPlan`, per table (DESIGN §5): the transform of every float
  feature column and the table's share of nulls; which rows become null is
  again drawn by the kernel, from ``nan_key``.

The kernels that carry these plans out live in ``plurel_fast.kernels.post``.
"""

from __future__ import annotations

import msgspec
import numpy as np

from plurel_fast.config import COL_TRANSFORMS

__all__ = ["QuantizePlan", "TablePostPlan", "plan_quantization", "plan_table_post"]


def _check_key(name: str, key) -> np.uint64:
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise ValueError(f"{name} must be an integer stream key, got {key!r}")
    if not 0 <= int(key) < 2**64:
        raise ValueError(f"{name} must fit in 64 unsigned bits, got {key}")
    return np.uint64(int(key))


class QuantizePlan(msgspec.Struct, frozen=True):
    """How one lazy-mode categorical column is cut into labels (DESIGN §4.5).

    A raw label ``r`` (number of boundaries strictly below the value) becomes
    ``permutation[r]``, and then ``k - 1 - permutation[r]`` when ``reverse``.

    Attributes
    ----------
    num_categories : int
        ``k >= 1``; the column gets labels ``0..k-1`` from ``k - 1`` boundaries.
    key : np.uint64
        Counter-RNG key: boundary ``i`` is the value at row
        ``floor(uniform(key, i, 0) · n)`` of the column.
    permutation : np.ndarray of int64, shape (k,)
        A permutation of ``0..k-1``; the identity when the labels are not permuted.
    reverse : bool
        Whether labels are mapped ``label -> k - 1 - label`` after the permutation.
    """

    num_categories: int
    key: np.uint64
    permutation: np.ndarray
    reverse: bool

    def __post_init__(self):
        k = self.num_categories
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"QuantizePlan.num_categories must be an int >= 1, got {k!r}")
        _check_key("QuantizePlan.key", self.key)
        perm = self.permutation
        if not (
            isinstance(perm, np.ndarray)
            and perm.dtype == np.int64
            and perm.shape == (k,)
            and np.array_equal(np.sort(perm), np.arange(k))
        ):
            raise ValueError(
                f"QuantizePlan.permutation must be an int64 permutation of 0..{k - 1}, "
                f"got {perm!r}"
            )
        if not isinstance(self.reverse, (bool, np.bool_)):
            raise ValueError(f"QuantizePlan.reverse must be a bool, got {self.reverse!r}")

    def __eq__(self, other):
        if not isinstance(other, QuantizePlan):
            return NotImplemented
        return (
            self.num_categories == other.num_categories
            and self.key == other.key
            and np.array_equal(self.permutation, other.permutation)
            and bool(self.reverse) == bool(other.reverse)
        )

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(
            (int(self.num_categories), int(self.key), tuple(self.permutation.tolist()),
             bool(self.reverse))
        )

    @property
    def permuted(self) -> bool:
        """Whether the permutation differs from the identity."""
        return not np.array_equal(self.permutation, np.arange(self.num_categories))

    def label_map(self) -> np.ndarray:
        """int64[k]: final label of each raw label (permutation, then reversal)."""
        labels = self.permutation.copy()
        if self.reverse:
            labels = self.num_categories - 1 - labels
        return labels


def plan_quantization(rng: np.random.Generator, scm_params, k: int, key) -> QuantizePlan:
    """Draw the label shuffles of one lazy-mode categorical column (DESIGN §4.5).

    Parameters
    ----------
    rng : numpy.random.Generator
        The planning generator of this column.
    scm_params : plurel_fast.config.SCMParams
        Reads ``cat_label_permute_prob_choices`` and ``cat_label_reverse_prob_choices``
        (any object with these two ``Choices`` attributes will do).
    k : int
        Number of categories, ``>= 1``.
    key : int or np.uint64
        Counter-RNG key of the boundary draws (``plurel_fast.plan.rng.stream_key``).

    Notes
    -----
    Draw order: p, the permute coin, the permutation, q, the reverse coin. The
    permutation is drawn whether or not it is used, so that the number of
    draws does not depend on the coin.
    """
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"number of categories must be an int >= 1, got {k!r}")
    k = int(k)
    p = float(scm_params.cat_label_permute_prob_choices.sample(rng))
    permute = bool(rng.random() < p)
    perm = rng.permutation(k).astype(np.int64)
    if not permute:
        perm = np.arange(k, dtype=np.int64)
    q = float(scm_params.cat_label_reverse_prob_choices.sample(rng))
    reverse = bool(rng.random() < q)
    return QuantizePlan(
        num_categories=k, key=_check_key("key", key), permutation=perm, reverse=reverse
    )


class TablePostPlan(msgspec.Struct, frozen=True):
    """Post-processing decisions of one table (DESIGN §5.1-5.2).

    Attributes
    ----------
    float_cols : list of str
        The float feature columns (no keys, no ``date``), in column order.
    transforms : list of str
        ``transforms[i]`` is the transform of ``float_cols[i]``, a name from
        ``plurel_fast.config.COL_TRANSFORMS``.
    nan_perc : float
        Share of null rows of every float feature column, in [0, 1]; each such
        column gets ``floor(nan_perc · n)`` nulls.
    nan_key : np.uint64
        Counter-RNG key of the null rows; column ``i`` of ``float_cols`` draws
        from ``subkey(nan_key, i)``.
    no_nulls : list of str
        Columns that get no nulls (SQL ``NOT NULL``); the others keep their rows.
    keep_constant : list of str
        Boolean columns kept even when single-valued (SQL ``BOOLEAN`` columns).
    """

    float_cols: list[str]
    transforms: list[str]
    nan_perc: float
    nan_key: np.uint64
    no_nulls: list[str] = []
    keep_constant: list[str] = []

    def __post_init__(self):
        if len(self.float_cols) != len(self.transforms):
            raise ValueError(
                f"TablePostPlan needs one transform per float column, got "
                f"{len(self.float_cols)} columns and {len(self.transforms)} transforms"
            )
        if len(set(self.float_cols)) != len(self.float_cols):
            raise ValueError(f"TablePostPlan.float_cols repeats a name: {self.float_cols}")
        for col, name in zip(self.float_cols, self.transforms):
            if name not in COL_TRANSFORMS:
                raise ValueError(
                    f"TablePostPlan: column {col!r} has unknown transform {name!r}; "
                    f"known transforms: {', '.join(COL_TRANSFORMS)}"
                )
        if not 0.0 <= self.nan_perc <= 1.0:
            raise ValueError(f"TablePostPlan.nan_perc must be in [0, 1], got {self.nan_perc}")
        _check_key("TablePostPlan.nan_key", self.nan_key)


def plan_table_post(
    rng: np.random.Generator, db_params, float_cols, key, *, no_nulls=(), keep_constant=()
) -> TablePostPlan:
    """Draw the column transforms and the null share of one table (DESIGN §5).

    Parameters
    ----------
    rng : numpy.random.Generator
        The planning generator of this table's post-processing.
    db_params : plurel_fast.config.DatabaseParams
        Reads ``col_transform_choices`` and ``column_nan_perc_choices``.
    float_cols : list of str
        The table's float feature columns in column order.
    key : int or np.uint64
        Counter-RNG key of the null rows.
    no_nulls, keep_constant : sequences of str
        See :class:`TablePostPlan`; empty for random schemas.

    Notes
    -----
    Draw order, as in the reference: one transform per column in column order,
    then the null share (drawn even when the table has no float column).
    """
    float_cols = [str(c) for c in float_cols]
    transforms = [str(db_params.col_transform_choices.sample(rng)) for _ in float_cols]
    nan_perc = float(db_params.column_nan_perc_choices.sample(rng))
    return TablePostPlan(
        float_cols=float_cols,
        transforms=transforms,
        nan_perc=nan_perc,
        nan_key=_check_key("key", key),
        no_nulls=[str(c) for c in no_nulls],
        keep_constant=[str(c) for c in keep_constant],
    )
