"""Golden files: what a saved database folder holds, pinned file by file.

``tests/test_golden.py`` pins the generated values in memory; this test pins what the
writer makes of them (``Database.save``, which ``generate_to`` matches byte for byte:
``tests/test_stream.py``): every file of a folder, so a faster writer, YAML emitter or
scorer cannot change a manifest, a task, ``scores.json`` or a Parquet file unnoticed.

A file's digest is sha256 of its bytes, except:

- ``plurel_fast.json`` without ``timings`` (seconds) and ``plurel_fast_version``;
- Parquet files, whose bytes also depend on the pyarrow version (its name is written
  in them, and the flatbuffers of the stored Arrow schema): their digest covers the
  Arrow schema (field names, types, nullability) and its key-value metadata other
  than ``ARROW:schema``, the row groups (rows, and per column chunk the path, physical
  type, compression and statistics), and every column's values as
  ``test_golden.column_digest`` encodes them.

Changing folder contents on purpose: run ``python tests/test_golden_files.py`` (it prints
the new ``GOLDEN_FILES``), paste it below in a reviewed commit, and add a line to
``CHANGELOG.md`` saying what changed and why.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import plurel_fast
from plurel_fast import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when run as a script
from conftest import SMALL  # noqa: E402
from test_golden import combined, column_digest  # noqa: E402

CASES = {
    "default": (Config, (0,)),
    "small": (lambda: SMALL, (0, 1, 2, 3)),
}


def _statistics(stats) -> list | None:
    if stats is None:
        return None
    low, high = (stats.min, stats.max) if stats.has_min_max else (None, None)
    return [repr(low), repr(high), stats.null_count]


def parquet_digest(path: Path) -> str:
    """sha256 of a Parquet file's schema, layout and values (see the module doc)."""
    f = pq.ParquetFile(path)
    schema = f.schema_arrow
    meta = f.metadata
    described = {
        "fields": [[x.name, str(x.type), x.nullable] for x in schema],
        "metadata": sorted([k.decode(), v.decode()] for k, v in (schema.metadata or {}).items()
                           if k != b"ARROW:schema"),
        "row_groups": [
            [meta.row_group(g).num_rows,
             [[c.path_in_schema, c.physical_type, c.compression, _statistics(c.statistics)]
              for c in map(meta.row_group(g).column, range(meta.num_columns))]]
            for g in range(meta.num_row_groups)
        ],
    }
    frame = pl.read_parquet(path)
    values = [column_digest(frame.get_column(c)) for c in frame.columns]
    return hashlib.sha256(json.dumps([described, values]).encode()).hexdigest()


def folder_digests(root: Path) -> dict[str, str]:
    """``{relative path: digest}`` of every file under ``root``, in path order."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".parquet":
            out[rel] = parquet_digest(path)
            continue
        data = path.read_bytes()
        if path.name == "plurel_fast.json":
            sidecar = json.loads(data)
            sidecar.pop("timings", None)
            sidecar.pop("plurel_fast_version", None)
            data = json.dumps(sidecar, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def saved_digests(case: str, seed: int, where: Path) -> dict[str, str]:
    folder = where / f"plurel-{seed}"  # the name a corpus or `generate` gives it
    plurel_fast.generate(seed, CASES[case][0]()).save(folder)
    return folder_digests(folder)


# Pinned folders: case -> seed -> sha256 over folder_digests (ordered). Edit only on
# purpose, with a CHANGELOG.md line (see the module doc).
GOLDEN_FILES: dict[str, dict[int, str]] = {
    'default': {
        0: '4a20e82c64e120226de573f384b0289c0406ceb4ce1dae593e0519a144b5a057',
    },
    'small': {
        0: '1366ddcf89389a474c8b17afdaad5b32ecc3a19ba43d7b34a8a2e5f04b21440f',
        1: 'dc3b5f006350866f0606c77cd5ef0052598a907445f92bccfe5032cc1976fadd',
        2: '15874a06d9456b38671ae1a13609f948fcb12db93c1fc21a860b0e9f1ee85c02',
        3: '9e4a5ddd7a352420948a5ccfd215a3402a47faf01aabf2221d9772c0db6a1c8e',
    },
}


@pytest.mark.parametrize(
    "case,seed", [(c, s) for c, (_, seeds) in CASES.items() for s in seeds]
)
def test_golden_files(case, seed, tmp_path):
    digests = saved_digests(case, seed, tmp_path)
    assert {"manifest.yaml", "plurel_fast.json", "scores.json"} <= set(digests)
    assert any(p.startswith("db/") for p in digests) and any(p.startswith("tasks/") for p in digests)
    got = combined(digests)
    want = GOLDEN_FILES[case][seed]
    assert got == want, (
        f"{case} seed {seed}: the saved folder changed ({got} != pinned {want}). If this is "
        "deliberate, regenerate GOLDEN_FILES with `python tests/test_golden_files.py` and add "
        "a CHANGELOG.md line; otherwise a change altered what a save writes."
    )


def test_parquet_digest_sees_layout_and_values(tmp_path):
    table = pl.DataFrame({"x": [1.0, None, 3.0], "k": [0, 1, 2]})
    digests = set()
    for name, frame, options in [
        ("base", table, {}),
        ("value", table.with_columns(pl.Series("x", [1.0, None, 4.0])), {}),
        ("row groups", table, {"row_group_size": 2}),
        ("compression", table, {"compression": "snappy"}),
        ("type", table.with_columns(pl.col("k").cast(pl.Int32)), {}),
    ]:
        path = tmp_path / f"{name}.parquet"
        pq.write_table(frame.to_arrow(), path, **{"compression": "zstd", **options})
        digests.add(parquet_digest(path))
    assert len(digests) == 5
    again = tmp_path / "again.parquet"
    pq.write_table(table.to_arrow(), again, compression="zstd")
    assert parquet_digest(again) == parquet_digest(tmp_path / "base.parquet")


def _print_golden() -> None:
    import tempfile

    print("GOLDEN_FILES: dict[str, dict[int, str]] = {")
    for case, (_, seeds) in CASES.items():
        print(f"    {case!r}: {{")
        for seed in seeds:
            with tempfile.TemporaryDirectory() as where:
                digest = combined(saved_digests(case, seed, Path(where)))
            print(f"        {seed}: {digest!r},")
        print("    },")
    print("}")


if __name__ == "__main__":
    _print_golden()
