"""Argument checks shared by the kernels' public wrappers."""

import operator

import numpy as np


def row_index(name: str, value) -> int:
    """``value`` as a Python int row index, or a ValueError naming ``name``."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        return int(operator.index(value))
    except TypeError:
        raise ValueError(f"{name} must be an integer row index, got {value!r}") from None
