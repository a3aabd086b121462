"""Planning randomness: one numpy Generator per (database seed, purpose path).

Structural choices (how many tables, which layout, MLP weights, ...) are drawn
from ``numpy.random.Generator``s keyed by the database seed and a *path* of
names and numbers, e.g. ``("table", 3, "scm")``. Paths map to SeedSequence spawn
keys through a stable hash, so adding a table or a purpose never shifts the
draws of another one (DESIGN §A.1). Row-level draws instead use
counter-based kernels (``plurel_fast.kernels.rng``) keyed by ``stream_key``.
"""

from __future__ import annotations

import hashlib

import numpy as np

PathPart = str | int


def _part_to_int(part: PathPart) -> int:
    if isinstance(part, bool) or not isinstance(part, (str, int, np.integer)):
        raise TypeError(f"RNG path parts are str or int, got {part!r}")
    if isinstance(part, str):
        digest = hashlib.blake2b(part.encode(), digest_size=8).digest()
        # Strings live above 2**63 so they never collide with small integers.
        return int.from_bytes(digest, "little") | (1 << 63)
    if part < 0:
        raise ValueError(f"RNG path integers must be >= 0, got {part}")
    return int(part)


def seed_sequence(seed: int, *path: PathPart) -> np.random.SeedSequence:
    """The SeedSequence of ``seed`` for one purpose path."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=tuple(_part_to_int(p) for p in path))


def plan_rng(seed: int, *path: PathPart) -> np.random.Generator:
    """A fresh numpy Generator for one planning purpose of database ``seed``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *path)))


def stream_key(seed: int, *path: PathPart) -> np.uint64:
    """A 64-bit key for the counter-based row RNG of one purpose."""
    return seed_sequence(seed, *path).generate_state(1, dtype=np.uint64)[0]
