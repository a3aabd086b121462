"""Numba kernels of plurel_fast, imported as ``plurel_fast.kernels``.

Kernels take arrays and scalars only, never a Config; all row-level randomness
is counter-based (``rng``), so output does not depend on threads or chunking.
"""
