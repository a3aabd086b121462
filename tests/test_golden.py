"""Golden bytes: the digest of every column of every table, pinned.

Output bytes are the project's contract (the same ``(seed, config)`` gives the same
tables on every machine, release after release, unless we decide otherwise). This
test fails on any change to any value of any column, including a change of dtype,
column order, table order, null placement or a table's roles.

A column's digest covers its name, its dtype and its values in an encoding that does
not depend on Parquet, pyarrow or Polars versions: the null mask as bytes, then the
values (numbers little-endian at their dtype's width with nulls as zero, datetimes as
int64 nanoseconds, booleans as one byte, strings length-prefixed UTF-8).

Changing output bytes on purpose: run ``python tests/test_golden.py`` (it prints the
new ``GOLDEN`` mapping), paste it below in a reviewed commit, and add a line to
``CHANGELOG.md`` saying which output changed and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import plurel_fast
from plurel_fast import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when run as a script
from conftest import SMALL  # noqa: E402

CASES = {
    "default": (Config, tuple(range(8))),
    "v1.0.0": (lambda: Config.preset("v1.0.0"), (0, 1, 2, 3)),
    "small": (lambda: SMALL, (0, 1, 2, 3, 4, 5, 6, 7)),
}


def column_digest(s: pl.Series) -> str:
    """sha256 of a column's name, dtype, null mask and values (see the module doc)."""
    h = hashlib.sha256()
    h.update(f"{s.name}\0{s.dtype}\0{len(s)}\0".encode())
    nulls = s.is_null().to_numpy()
    h.update(np.packbits(nulls).tobytes())
    dtype = s.dtype
    if dtype == pl.String:
        for v in s.to_list():
            b = b"" if v is None else v.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        if isinstance(dtype, pl.Datetime):
            s = s.dt.cast_time_unit("ns").cast(pl.Int64)
        elif dtype == pl.Boolean:
            s = s.cast(pl.UInt8)
        elif not dtype.is_numeric():
            raise TypeError(f"column {s.name!r}: no golden encoding for dtype {dtype}")
        values = s.fill_null(0).to_numpy()
        h.update(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def database_digests(db) -> dict[str, str]:
    """``{"<table>/<column>": digest}`` in table and column order, plus each table's roles."""
    out = {}
    for name, table in db.table_dict.items():
        roles = json.dumps(
            [table.pkey_col, table.time_col, table.fkey_col_to_pkey_table], sort_keys=True
        )
        out[f"{name}/@roles"] = hashlib.sha256(roles.encode()).hexdigest()
        for col in table.df.columns:
            out[f"{name}/{col}"] = column_digest(table.df.get_column(col))
    out["@splits"] = hashlib.sha256(
        f"{db.val_timestamp.isoformat()}|{db.test_timestamp.isoformat()}".encode()
    ).hexdigest()
    return out


def combined(digests: dict[str, str]) -> str:
    """One digest of an ordered digest mapping (what GOLDEN pins per database)."""
    return hashlib.sha256(json.dumps(list(digests.items())).encode()).hexdigest()


# Pinned output: case -> seed -> sha256 over database_digests (ordered). Edit only on
# purpose, with a CHANGELOG.md line (see the module doc).
GOLDEN: dict[str, dict[int, str]] = {
    'default': {
        0: '68f97fd58af61cde3ad4988bae4f2d92ceba09109cd686bc5164ade2f0128c05',
        1: '025f7230d4a9b4f4169dd29c649656fd8aafb82c071fec57806b86ce9a9ba9dd',
        2: 'e6d8a47e0002439574e26c95d71539ea540736e3f0ebce4f5e48d579dfb902bf',
        3: 'e2f5f28e4d0a4d031a866ec873deaeefcf27ebe32be8b6a61b167993d377c954',
        4: '4ce2047237aa0b313d19df94955afe826f70a722b800d713e8d0935906fff5f4',
        5: '610825907eb8fbe108abb4ee05b91f6d5b5f7e5042dd661e6aaeae66ae1cdb1b',
        6: 'cb1fab298565b75354075cef1b3dc105b5ede39b0881581a8d4b2596cf0ed2d2',
        7: 'edd3777d450da567043195290887f1730834d23a887e8b79804a530b3d54085a',
    },
    'v1.0.0': {
        0: 'd56ab177b1b58489875b7f749cbce46ee18ae1f6e4b52acf85f5e0289043e148',
        1: '02f968dd5939c72987c1133f908eb688bdffe18368dde89d7a70e80e9f02b901',
        2: '25d3975f83cf0d61ef1dd14949ef319b4c75ed646da7c70703dc4c378063b321',
        3: 'adb975c36aca680bcac407854f6f2d28fd746634c19c2632ba754df4c242a960',
    },
    'small': {
        0: '7e71b51612180ab68047f30622ba8d4a42983e8013d856f7c9dd8710af414d09',
        1: 'a4087c4a23c5c601fe7a13596989ba2591595776436c1da148d9ac8f7d0722bd',
        2: 'be108307640bc26f8b1095b88e1ef037f1361141464029172e528bec76841045',
        3: '2becf61f28eabeccfed917bafede11aa7a65610b41ca2e2a99d38762573cf1ed',
        4: '2a05afb95fab0faaa879a0e99417160b678582f20ca46816cebf29169d361b29',
        5: 'b3e7dfe266e0b6cc2557f99cd213ce1b131ab591f0d5de9efe9eba911988205c',
        6: '55bc64ce1a6cb723df8cd0b98c8fa733b17b8da71aab17dff5b5697ab8f70376',
        7: '7f698cb8730d14540990f55c24986dda72049fe12f48b31e6167e0a98c3db359',
    },
}


@pytest.mark.parametrize(
    "case,seed", [(c, s) for c, (_, seeds) in CASES.items() for s in seeds]
)
def test_golden_bytes(case, seed):
    make_config, _ = CASES[case]
    db = plurel_fast.generate(seed, make_config())
    digests = database_digests(db)
    assert len(digests) > 3
    got = combined(digests)
    want = GOLDEN[case][seed]
    assert got == want, (
        f"{case} seed {seed}: output bytes changed ({got} != pinned {want}). If this is "
        "deliberate, regenerate GOLDEN with `python tests/test_golden.py` and add a "
        "CHANGELOG.md line; otherwise a change altered generated values."
    )


def test_column_digest_sees_every_change():
    base = pl.Series("x", [1.0, None, 3.0])
    d = column_digest(base)
    assert column_digest(pl.Series("x", [1.0, None, 3.0])) == d
    assert column_digest(pl.Series("y", [1.0, None, 3.0])) != d  # name
    assert column_digest(pl.Series("x", [1.0, 0.0, 3.0])) != d  # null vs zero
    assert column_digest(pl.Series("x", [1.0, None, 3.0000002])) != d  # one ulp-ish
    assert column_digest(base.cast(pl.Float32)) != d  # dtype
    s = pl.Series("s", ["a", "bc", None])
    assert column_digest(s) != column_digest(pl.Series("s", ["ab", "c", None]))
    t = pl.Series("t", np.array([0, 1], dtype="datetime64[ns]"))
    assert column_digest(t) != column_digest(pl.Series("t", np.array([0, 2], dtype="datetime64[ns]")))


def _print_golden() -> None:
    out: dict[str, dict[int, str]] = {}
    for case, (make_config, seeds) in CASES.items():
        out[case] = {}
        for seed in seeds:
            out[case][seed] = combined(database_digests(plurel_fast.generate(seed, make_config())))
            print(f"# {case} {seed} done", file=sys.stderr)
    print("GOLDEN: dict[str, dict[int, str]] = {")
    for case, seeds in out.items():
        print(f"    {case!r}: {{")
        for seed, digest in seeds.items():
            print(f"        {seed}: {digest!r},")
        print("    },")
    print("}")


if __name__ == "__main__":
    _print_golden()


_PLAIN_X86_SCRIPT = """
import json, sys
from plurel_fast.compile_notice import recording_compiles
with recording_compiles() as compiled:
    sys.path.insert(0, sys.argv[1])
    import plurel_fast
    from plurel_fast.kernels import KERNELS
    from test_golden import CASES, combined, database_digests
    out = {"target": KERNELS.target}
    for case, seeds in json.loads(sys.argv[2]).items():
        make_config = CASES[case][0]
        out[case] = {s: combined(database_digests(plurel_fast.generate(s, make_config()))) for s in seeds}
out["compiled"] = len(compiled)
print(json.dumps(out))
"""


def test_golden_bytes_on_plain_x86_64(tmp_path):
    """The kernels compiled for plain x86-64 (SSE2, no FMA unit: every fused multiply-add
    through libm's fmaf, every vector intrinsic lowered to narrow or scalar code) give the
    pinned bytes too. They are the ones shipped precompiled for that target
    (kernels/prebuilt/, selected by NUMBA_CPU_NAME=x86-64 NUMBA_CPU_FEATURES=""), unpacked
    into an empty cache: nothing compiles while they match the kernel sources."""
    from conftest import digest_in_subprocess
    from plurel_fast.kernels import index_problems, read_index

    subset = {"default": [0], "small": [0, 1, 2, 3]}
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PLUREL_FAST_KERNELS")}
    env.update(NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="", XDG_CACHE_HOME=str(tmp_path))
    got = json.loads(digest_in_subprocess(
        _PLAIN_X86_SCRIPT, str(Path(__file__).resolve().parent), json.dumps(subset), threads=2,
        _env=env,
    ))
    assert got["target"] == "x86-64"
    for case, seeds in subset.items():
        for seed in seeds:
            assert got[case][str(seed)] == GOLDEN[case][seed], (case, seed)
    if not index_problems(read_index()):
        assert got["compiled"] == 0
