"""Shared test setup: tests/ on the import path (for ``naive`` and the helpers below),
the small configurations most tests generate with, and the two determinism patterns
("the same digest in a one-thread process", "the same result at every thread count").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plurel_fast import Choices, Config, DatabaseParams  # noqa: E402

SMALL_PARAMS = DatabaseParams(
    num_tables_choices=Choices("range", [3, 6]),
    num_rows_entity_table_choices=Choices("range", [40, 200]),
    num_rows_activity_table_choices=Choices("range", [100, 400]),
)
"""3-6 tables of 40-200 entity / 100-400 activity rows: a whole database in ~0.1 s."""

SMALL = Config(database_params=SMALL_PARAMS)


def digest_in_subprocess(script: str, *args: str, threads: int = 1, _env=None,
                         **env_vars: str) -> str:
    """Run ``python -c script *args`` with ``NUMBA_NUM_THREADS=threads`` (and any other
    environment variables given, on top of ``_env`` or this process's environment) and
    return the last line it printed: the digest a test compares with the one computed
    in this process."""
    env = dict(os.environ if _env is None else _env, NUMBA_NUM_THREADS=str(threads), **env_vars)
    res = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def thread_counts():
    """Every numba thread count this process allows, set in turn; restored afterwards."""
    before = numba.get_num_threads()
    try:
        for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(threads)
            yield threads
    finally:
        numba.set_num_threads(before)


@pytest.fixture
def small_config() -> Config:
    return SMALL
