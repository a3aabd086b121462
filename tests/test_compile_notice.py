"""The first run on a machine says it is compiling the kernels; a warm one says nothing."""

from __future__ import annotations

import io

import pytest

from plurel_fast import compile_notice
from plurel_fast.kernels import cache_is_warm


def test_warm_cache_prints_nothing(monkeypatch):
    monkeypatch.setattr(compile_notice, "cache_is_warm", lambda: True)
    out = io.StringIO()
    with compile_notice.compiling_notice(stream=out):
        pass
    assert out.getvalue() == ""


def test_cold_cache_says_what_is_happening_and_how_long_it_took(monkeypatch):
    monkeypatch.setattr(compile_notice, "cache_is_warm", lambda: False)
    out = io.StringIO()
    with compile_notice.compiling_notice(stream=out):
        pass
    lines = out.getvalue().strip().splitlines()
    assert "compiling the kernels for this CPU, once" in lines[0]
    assert lines[-1].startswith("plurel-fast: kernels ready after")
    quiet = io.StringIO()
    with compile_notice.compiling_notice(enabled=False, stream=quiet):
        pass
    assert quiet.getvalue() == ""


def test_cache_is_warm_follows_the_cache_folder(tmp_path, monkeypatch):
    import pickle

    import plurel_fast
    from plurel_fast.kernels import _current_cpu

    plurel_fast.generate(0)  # this process has compiled or loaded every kernel
    assert cache_is_warm()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # an empty cache elsewhere
    assert not cache_is_warm()
    index = tmp_path / "kernels_abc" / "scm._propagate_rows-327.py311.nbi"
    index.parent.mkdir()
    index.write_bytes(b"")
    assert not cache_is_warm()  # no entry for this CPU
    cpu_name, features = _current_cpu()
    index.write_bytes(pickle.dumps("0.68.1") + pickle.dumps(
        ("stamp", {(("sig",), ("triple", cpu_name, features), ("h", "")): "x.1.nbc"}), protocol=-1))
    assert cache_is_warm()


def test_cache_is_complete_when_every_kernel_called_from_python_is_there(tmp_path, monkeypatch):
    import pickle

    from plurel_fast import kernels

    index = kernels.read_index()
    if kernels.index_problems(index):
        pytest.skip("the shipped index does not fit: there is no list of kernels to check")
    names = sorted(set().union(*(e["kernels"] for e in index["targets"].values())))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not kernels.cache_is_complete()  # empty
    cpu_name, features = kernels._current_cpu()

    def fake(name, cpu):
        folder = tmp_path / "kernels_abc"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}-12.py311.nbi").write_bytes(pickle.dumps("0.68.1") + pickle.dumps(
            ("stamp", {(("sig",), ("triple", *cpu), ("h", "")): "x.1.nbc"}), protocol=-1))

    fake("scm._propagate_rows", (cpu_name, features))
    assert cache_is_warm() and not kernels.cache_is_complete()  # the rest is missing
    for name in names:
        fake(name, (cpu_name, features))
    assert kernels.cache_is_complete()
    fake(names[0], ("another-cpu", features))  # that kernel only for another CPU
    assert not kernels.cache_is_complete()


def test_a_kernel_compiled_unexpectedly_is_announced():
    """A warm cache prints nothing, until numba compiles one of our kernels (a
    specialization the cache lacks): then the notice appears, naming it."""
    from numba.core import event

    from plurel_fast.kernels.rng import subkey

    out = io.StringIO()
    with compile_notice.compiling_notice(stream=out, warm=True):
        assert out.getvalue() == ""
        data = {"dispatcher": subkey, "args": ("int64", "int64"), "return_type": None}
        event.start_event("numba:compile", data=data)
        event.end_event("numba:compile", data=data)
    lines = out.getvalue().strip().splitlines()
    assert "compiling the kernels" in lines[0] and "rng.subkey" in lines[0]
    assert lines[-1].startswith("plurel-fast: kernels ready after")


def test_recording_compiles_lists_top_level_kernel_compilations():
    from numba.core import event

    from plurel_fast.kernels.rng import mix64, subkey

    with compile_notice.recording_compiles() as compiled:
        outer = {"dispatcher": subkey, "args": ("a",), "return_type": None}
        inner = {"dispatcher": mix64, "args": ("b",), "return_type": None}
        event.start_event("numba:compile", data=outer)
        event.start_event("numba:compile", data=inner)  # compiled inside subkey's
        event.end_event("numba:compile", data=inner)
        event.end_event("numba:compile", data=outer)
    assert [(c.name, c.args) for c in compiled] == [("rng.subkey", ("a",))]
