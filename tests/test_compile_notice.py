"""The first run on a machine says it is compiling the kernels; a warm one says nothing."""

from __future__ import annotations

import io

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
    import plurel_fast

    plurel_fast.generate(0)  # this process has compiled or loaded every kernel
    assert cache_is_warm()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # an empty cache elsewhere
    assert not cache_is_warm()
    (tmp_path / "kernels_abc").mkdir()
    (tmp_path / "kernels_abc" / "scm._propagate_rows-327.py311.nbi").write_bytes(b"")
    assert cache_is_warm()
