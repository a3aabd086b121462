"""pytest-benchmark: end-to-end generate() on the default config.

Run: pytest bench/bench_generate.py --benchmark-only
"""

import pytest

from plurel_fast import Config
from plurel_fast.generate import execute
from plurel_fast.plan.database import plan_database


@pytest.fixture(scope="module", autouse=True)
def _warm():
    execute(plan_database(1000, Config()))


@pytest.mark.parametrize("seed", range(8))
def test_generate_default(benchmark, seed):
    config = Config()
    benchmark.pedantic(lambda: execute(plan_database(seed, config)), rounds=1, iterations=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_plan_default(benchmark, seed):
    benchmark(plan_database, seed, Config())
