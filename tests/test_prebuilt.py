"""The kernels shipped precompiled (kernels/prebuilt/) and the choice between them and
kernels compiled for this CPU (``plurel_fast.kernels.choose_kernels``).

The archives must match the kernel sources: any edit of ``kernels/*.py`` (or a new numba
or Python version) fails `test_shipped_kernels_match_the_sources` until they are rebuilt
with ``python -m plurel_fast.prebuild``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numba
import pytest
from llvmlite import binding as llvm

from plurel_fast import kernels
from plurel_fast.kernels import (
    KERNEL_DIGEST,
    PREBUILT_DIR,
    PYTHON_TAG,
    REBUILD_COMMAND,
    TARGET_FEATURES,
    TARGETS,
    choose_kernels,
    folder_is_warm,
    index_problems,
    read_index,
    unpack,
)

INDEX = read_index()
TRIPLE = llvm.get_process_triple()
HOST = dict(llvm.get_host_cpu_features())
SUPPORTED = kernels.supported_targets(TRIPLE, HOST)
FITS = not index_problems(INDEX, TRIPLE)


def test_shipped_kernels_match_the_sources():
    problems = index_problems(INDEX)
    assert not problems, (
        f"kernels/prebuilt/ does not fit these kernel sources ({'; '.join(problems)}): "
        f"rebuild it with `{REBUILD_COMMAND}` (about 4 minutes on 2 cores) and commit kernels/prebuilt/")
    assert set(INDEX["targets"]) == set(TARGETS), f"rebuild with `{REBUILD_COMMAND}`"
    for target, entry in INDEX["targets"].items():
        data = (PREBUILT_DIR / entry["archive"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], (
            f"{entry['archive']} is not the file index.json describes; `{REBUILD_COMMAND}`")
        assert (entry["cpu_name"], entry["features"]) == (target, TARGET_FEATURES[target])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
            names = [m.name for m in tar if m.isfile()]
        assert len(names) == entry["files"]
        assert all(f".{PYTHON_TAG}." in n for n in names)
        assert any(n.startswith("scm._propagate_rows-") and n.endswith(".nbi") for n in names)


# ------------------------------------------------------------------ from a fresh install

_FIRST_RUN = """
import json, sys
from plurel_fast.compile_notice import recording_compiles
with recording_compiles() as compiled:
    import plurel_fast
    from plurel_fast import kernels
    sys.path.insert(0, sys.argv[1])
    from test_golden import CASES, combined, database_digests
    out = {"choice": [kernels.KERNELS.mode, kernels.KERNELS.target], "cache": kernels.CACHE_DIR,
           "digests": {}}
    for case, seeds in json.loads(sys.argv[2]).items():
        config = CASES[case][0]()
        out["digests"][case] = {s: combined(database_digests(plurel_fast.generate(s, config)))
                                for s in seeds}
    plurel_fast.generate(0, plurel_fast.Config(schema_file=sys.argv[3]))
out["compiled"] = [str(c)[:200] for c in compiled]
print(json.dumps(out))
"""


def _fresh_env(tmp_path, **changes):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_") and k != "PLUREL_FAST_KERNELS"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), NUMBA_NUM_THREADS="2", **changes)
    return env


def _first_run(tmp_path, cases, **env):
    tests = Path(__file__).resolve().parent
    res = subprocess.run(
        [sys.executable, "-c", _FIRST_RUN, str(tests), json.dumps(cases),
         str(tests.parent / "examples" / "shop.sql")],
        env=_fresh_env(tmp_path, **env), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not (FITS and SUPPORTED), reason="no shipped kernels for this platform")
def test_first_database_after_install_compiles_nothing(tmp_path):
    """An empty kernel cache: import, a default, a small and a SQL-schema database load
    every kernel from the shipped archive (numba compiles nothing) with the golden bytes."""
    from test_golden import GOLDEN

    out = _first_run(tmp_path, {"default": [0], "small": [0]})
    assert out["choice"] == ["portable", SUPPORTED[0]]
    assert out["compiled"] == []
    assert out["digests"] == {"default": {"0": GOLDEN["default"][0]},
                              "small": {"0": GOLDEN["small"][0]}}
    folder = Path(out["cache"])
    assert folder.parent == tmp_path / "cache" / "plurel_fast"
    with tarfile.open(PREBUILT_DIR / INDEX["targets"][SUPPORTED[0]]["archive"]) as tar:
        shipped = {m.name for m in tar}
    assert {p.name for p in folder.iterdir()} == shipped | {"prebuilt.json"}  # nothing added


# ------------------------------------------------------------------------ the decision

V3_HOST = {f: True for f in TARGETS["x86-64-v3"]}
LINUX = "x86_64-unknown-linux-gnu"
FITTING = {"numba": numba.__version__, "python": PYTHON_TAG, "kernel_digest": KERNEL_DIGEST,
           "triple": LINUX, "targets": {t: {"archive": f"{t}.tar.xz"} for t in TARGETS}}


def choose(env=(), host=V3_HOST, index=FITTING, triple=LINUX, warm=False, **kw):
    def native_warm():
        return warm

    return choose_kernels(dict(env), triple=triple, host_features=host, index=index,
                          native_warm=native_warm, base=Path("/c"), **kw)


def test_auto_uses_native_kernels_once_they_are_cached():
    assert choose(warm=True).mode == "native"
    cold = choose(warm=False)
    assert (cold.mode, cold.target, cold.requested) == ("portable", "x86-64-v3", "auto")
    assert (cold.cpu_name, cold.cpu_features) == ("x86-64-v3", "")
    assert cold.cache_dir == f"/c/numba-{numba.__version__}-{KERNEL_DIGEST}-x86-64-v3"
    assert cold.archive == FITTING["targets"]["x86-64-v3"]


def test_the_best_target_the_host_runs():
    assert kernels.best_target() == (SUPPORTED[0] if SUPPORTED else None)  # this machine
    avx512 = choose(host={f: True for f in TARGETS["x86-64-v4"]})
    assert (avx512.target, avx512.cpu_name, avx512.cpu_features) == (
        "x86-64-v4", "x86-64-v4", "-prefer-256-bit")  # 512-bit vectors, as native kernels
    no_avx512bw = {f: True for f in TARGETS["x86-64-v4"] - {"avx512bw"}}
    assert choose(host=no_avx512bw).target == "x86-64-v3"
    no_avx2 = dict(V3_HOST, avx2=False)
    assert choose(host=no_avx2).target == "x86-64"
    assert choose(host={}).target == "x86-64"
    off_x86 = choose(triple="aarch64-unknown-linux-gnu")
    assert (off_x86.mode, off_x86.cpu_name) == ("native", None)
    only_baseline = dict(FITTING, targets={"x86-64": {"archive": "x86-64.tar.xz"}})
    assert choose(index=only_baseline).target == "x86-64"


def test_archives_for_other_sources_versions_or_platforms_are_not_used():
    for key, value in [("kernel_digest", "0" * 16), ("numba", "0.1.0"), ("python", "py39"),
                       ("triple", "x86_64-apple-darwin")]:
        c = choose(index=dict(FITTING, **{key: value}))
        assert c.mode == "native" and key in c.reason, c
    assert choose(index=None).mode == "native"


def test_numba_settings_of_the_user_are_respected():
    def never():
        raise AssertionError("native_warm must not be consulted")

    def pick(env=(), **kw):
        return choose_kernels(dict(env), triple=LINUX, host_features=V3_HOST, index=FITTING,
                              native_warm=never, base=Path("/c"), **kw)

    c = pick({"NUMBA_CACHE_DIR": "/x"})
    assert (c.mode, c.requested, c.cache_dir, c.cpu_name) == ("native", "numba", None, None)
    c = pick(config_cpu_name="haswell")
    assert (c.mode, c.requested, c.cpu_name) == ("native", "numba", None)
    assert pick(config_cpu_name="x86-64-v3").mode == "native"  # with the host's features
    assert pick(config_cpu_features="+avx2").mode == "native"
    c = pick(config_cpu_name="x86-64", config_cpu_features="")  # exactly a shipped target
    assert (c.mode, c.requested, c.target, c.archive) == (
        "portable", "numba", "x86-64", FITTING["targets"]["x86-64"])
    c = pick(config_cpu_name="x86-64-v4", config_cpu_features="-prefer-256-bit")
    assert (c.mode, c.target, c.cpu_features) == ("portable", "x86-64-v4", "-prefer-256-bit")
    assert pick(config_cpu_name="x86-64-v4", config_cpu_features="").mode == "native"
    assert pick(codegen_ready=True).mode == "native"
    assert pick({"PLUREL_FAST_KERNELS": "native"}).mode == "native"


def test_plurel_fast_kernels_variable():
    assert choose({"PLUREL_FAST_KERNELS": "native"}).mode == "native"
    forced = choose({"PLUREL_FAST_KERNELS": "Portable "}, warm=True)
    assert (forced.mode, forced.requested, forced.target) == ("portable", "portable", "x86-64-v3")
    stale = choose({"PLUREL_FAST_KERNELS": "portable"}, index=None)  # compiled for the target
    assert (stale.mode, stale.target, stale.archive) == ("portable", "x86-64-v3", None)
    assert choose({"PLUREL_FAST_KERNELS": "portable"}, triple="aarch64-linux").mode == "native"
    odd = choose({"PLUREL_FAST_KERNELS": "fast"})
    assert odd.requested == "auto" and "PLUREL_FAST_KERNELS='fast'" in odd.reason


# --------------------------------------------------------------- cache folders on disk


def _fake_index(folder: Path, *strings: str) -> None:
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scm._propagate_rows-396.py311.nbi").write_bytes(
        pickle.dumps(numba.__version__) + pickle.dumps(("stamp", {("sig", strings): "x"}),
                                                       protocol=-1))


def test_a_folder_is_warm_for_the_cpu_its_index_names(tmp_path):
    features = "+avx," * 60 + "+sse2"  # longer than 255 bytes
    _fake_index(tmp_path / "a", LINUX, "znver4", features)
    assert folder_is_warm(tmp_path / "a", "znver4", features)
    assert not folder_is_warm(tmp_path / "a", "skylake", features)
    assert not folder_is_warm(tmp_path / "a", "znver4", "+avx")
    _fake_index(tmp_path / "b" / "sub", LINUX, "x86-64-v3", "")
    assert folder_is_warm(tmp_path / "b", "x86-64-v3", "")
    assert not folder_is_warm(tmp_path / "b", "x86-64", "")
    assert not folder_is_warm(tmp_path / "missing", "x86-64", "")


@pytest.mark.skipif(not FITS, reason="no shipped kernels for this platform")
def test_unpacking_is_atomic_and_shared(tmp_path):
    entry = INDEX["targets"]["x86-64"]
    dest = tmp_path / "plurel_fast" / "numba-x-x86-64"
    results, errors = [], []

    def one():
        try:
            results.append(unpack(entry, dest))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [dest] * 6
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary left
    assert json.loads((dest / "prebuilt.json").read_text())["sha256"] == entry["sha256"]
    assert len(list(dest.glob("*.nb[ic]"))) == entry["files"]


@pytest.mark.skipif(not FITS, reason="no shipped kernels for this platform")
def test_an_unwritable_cache_folder_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    import tempfile

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    choice = kernels.KernelChoice("portable", "auto", "x86-64-v3", "x86-64-v3", "",
                                  str(blocked / "numba-x"), INDEX["targets"]["x86-64-v3"], "")
    got = kernels._unpack_somewhere(choice)
    assert Path(got.cache_dir).parent.parent == tmp_path / "tmp"
    assert (Path(got.cache_dir) / "prebuilt.json").is_file()
