"""Configuration: the reference's parameter names and defaults (SPEC §0-4)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np


class Choices(msgspec.Struct, frozen=True):
    """A sampling rule for one parameter (SPEC §0).

    ``Choices(kind="range", value=[lo, hi])``: uniform integer in [lo, hi] when
    ``lo`` is an int, uniform real in [lo, hi) when it is a float.
    ``Choices(kind="set", value=[...])``: uniform pick from the list.
    """

    kind: Literal["range", "set"]
    value: list[Any]

    def __post_init__(self):
        if self.kind not in ("range", "set"):
            raise ValueError(
                f"Choices.kind must be 'range' or 'set', got {self.kind!r}"
            )
        if not isinstance(self.value, (list, tuple)):
            raise ValueError(
                f"Choices.value must be a list, got {type(self.value).__name__} {self.value!r}"
            )
        if self.kind == "set":
            if len(self.value) == 0:
                raise ValueError("Choices(kind='set') needs at least one value, got []")
            return
        if len(self.value) != 2:
            raise ValueError(
                f"Choices(kind='range') needs value=[lo, hi], got {len(self.value)} "
                f"values {list(self.value)!r}"
            )
        lo, hi = self.value
        numeric = (int, float, np.integer, np.floating)
        if isinstance(lo, bool) or isinstance(hi, bool) or not (
            isinstance(lo, numeric) and isinstance(hi, numeric)
        ):
            raise ValueError(
                f"Choices(kind='range') bounds must be numbers, got {list(self.value)!r}"
            )
        if lo > hi:
            raise ValueError(
                f"Choices(kind='range') needs lo <= hi, got value={list(self.value)!r}"
            )

    @property
    def is_int_range(self) -> bool:
        return self.kind == "range" and isinstance(self.value[0], (int, np.integer))

    @property
    def low(self):
        """Smallest value this rule can produce (ranges and numeric sets)."""
        return self.value[0] if self.kind == "range" else min(self.value)

    @property
    def high(self):
        """Largest value this rule can produce (ranges and numeric sets)."""
        return self.value[1] if self.kind == "range" else max(self.value)

    def sample(self, rng: np.random.Generator):
        """One draw as a plain Python value."""
        if self.kind == "set":
            return self.value[int(rng.integers(len(self.value)))]
        lo, hi = self.value
        if self.is_int_range:
            return int(rng.integers(int(lo), int(hi) + 1))
        return float(rng.uniform(float(lo), float(hi)))

    def sample_pl(self, rng: np.random.Generator, exponent: float = 1.0) -> int:
        """Power-law draw on an int range: P(k) proportional to 1 / k**exponent."""
        if not self.is_int_range:
            raise ValueError(
                f"power-law sampling needs Choices(kind='range') of ints, got {self!r}"
            )
        lo, hi = int(self.value[0]), int(self.value[1])
        if lo < 1:
            raise ValueError(f"power-law sampling needs lo >= 1, got value={list(self.value)!r}")
        ks = np.arange(lo, hi + 1, dtype=np.float64)
        p = ks ** (-float(exponent))
        return int(lo + rng.choice(ks.size, p=p / p.sum()))
