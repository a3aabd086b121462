"""Fail fast: implausible and oversized configs are refused in planning, in well under a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import plurel_fast
from plurel_fast import Choices, Config, DatabaseParams, SCMParams
from plurel_fast.config import ConfigError
from plurel_fast.cli import main
from plurel_fast.plan.limits import available_memory, check_memory, estimate_peak_bytes
from plurel_fast.plan.schema import plan_schema


def _rows(n: int, cols: int = 14) -> Config:
    return Config(database_params=DatabaseParams(
        num_tables_choices=Choices("range", [2, 2]),
        num_rows_activity_table_choices=Choices("range", [n, n]),
        num_rows_entity_table_choices=Choices("range", [1000, 1000]),
        num_cols_choices=Choices("range", [cols, cols]),
    ))


@pytest.mark.parametrize("config, field", [
    (Config(database_params=DatabaseParams(num_cols_choices=Choices("range", [10**9, 10**9]))),
     "num_cols_choices"),
    (Config(database_params=DatabaseParams(num_tables_choices=Choices("range", [3, 10**6]))),
     "num_tables_choices"),
    (Config(scm_params=SCMParams(num_categories_choices=Choices("range", [2, 10**9]))),
     "num_categories_choices"),
])
def test_implausible_sizes_fail_in_planning_within_a_second(config, field):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=field):
        plurel_fast.generate(0, config)
    assert time.perf_counter() - t0 < 1.0


def test_database_larger_than_memory_fails_at_once_naming_the_table():
    config = _rows(10**9)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        plurel_fast.generate(0, config)
    assert time.perf_counter() - t0 < 1.0
    message = str(err.value)
    activity = next(t for t in plan_schema(0, config).tables if t.num_rows == 10**9)
    assert repr(activity.name) in message and "1,000,000,000 rows" in message
    assert "GiB" in message and "available" in message


def test_cli_reports_it_in_one_line(tmp_path, capsys):
    # The command line writes large tables in row groups, which still need 8 bytes a
    # row (ranks, distinct counts): 10^10 rows cannot fit on this machine either way.
    cfg = _rows(10**10).save(tmp_path / "huge.toml")
    assert main(["generate", "--seed", "0", "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "GiB" in err
    assert not (tmp_path / "o").exists()


def test_streamed_database_larger_than_memory_fails_at_once(tmp_path):
    from plurel_fast.stream import generate_to

    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        generate_to(0, _rows(10**10), tmp_path / "o")
    assert time.perf_counter() - t0 < 1.0
    assert "10,000,000,000 rows" in str(err.value) and "row groups" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_streamed_database_larger_than_the_disk_fails_at_once(tmp_path, monkeypatch):
    import plurel_fast.stream as stream

    monkeypatch.setattr(stream, "_free_disk", lambda path: 10 * 2**20)  # 10 MiB left
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="disk"):
        stream.generate_to(0, _rows(2 * 10**6), tmp_path / "o")
    assert time.perf_counter() - t0 < 1.0
    assert list(tmp_path.iterdir()) == []


def test_check_memory_compares_with_what_is_available():
    schema = plan_schema(0, _rows(10**5))
    need, table = estimate_peak_bytes(schema)
    assert table.num_rows == 10**5
    assert check_memory(schema, available=need) == need
    with pytest.raises(ConfigError, match="more than"):
        check_memory(schema, available=need - 1)
    assert available_memory() > 2**28


def test_estimate_grows_with_rows_and_columns():
    small, _ = estimate_peak_bytes(plan_schema(0, _rows(10**5)))
    more_rows, _ = estimate_peak_bytes(plan_schema(0, _rows(10**6)))
    more_cols, _ = estimate_peak_bytes(plan_schema(0, _rows(10**5, cols=40)))
    assert more_rows > small and more_cols > small


_PEAK = """
import json, resource, sys
import plurel_fast
from plurel_fast import Config
from plurel_fast.plan.limits import estimate_peak_bytes
from plurel_fast.plan.schema import plan_schema
cfg, seed = Config.from_json(sys.argv[1]), int(sys.argv[2])
est, _ = estimate_peak_bytes(plan_schema(seed, cfg))
plurel_fast.generate(seed, cfg)
print(json.dumps([est, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("config, seed", [
    (Config(), 0), (Config(), 7), (Config.preset("v1.0.0"), 2), (_rows(10**6), 0), (_rows(3 * 10**6), 0),
])
def test_estimate_within_30_percent_of_the_measured_peak(config, seed):
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _PEAK, config.to_json(), str(seed)],
                         env=env, capture_output=True, text=True, cwd=Path(__file__).parent)
    assert res.returncode == 0, res.stderr
    est, peak = json.loads(res.stdout.strip().splitlines()[-1])
    assert 0.7 <= est / peak <= 1.3, (est / 2**20, peak / 2**20)
