"""``plurel-fast kernels``: the kernel cache folders, and pruning the stale ones."""

from __future__ import annotations

import os
import sys

from plurel_fast import cache_folders, kernels
from plurel_fast.cli import main


def _folders(base, now):
    made = {
        "native": base / kernels.folder_name(),
        "target": base / kernels.folder_name("x86-64"),
        "old sources": base / "numba-0.68.1-0000000000000000",
        "old numba": base / f"numba-0.1.0-{kernels.KERNEL_DIGEST}",
        "dead unpack": base / ".numba-x-x86-64.tmp-1-ab",
        "live unpack": base / ".numba-x-x86-64.tmp-2-cd",
        "not ours": base / "something-else",
    }
    for path in made.values():
        path.mkdir(parents=True)
        (path / "f.nbi").write_bytes(b"x" * 1000)
    old = now - cache_folders.STALE_TEMPORARY_SECONDS - 10
    os.utime(made["dead unpack"], (old, old))
    os.utime(made["live unpack"], (now, now))
    return made


def test_prune_removes_only_what_this_installation_cannot_use(tmp_path):
    import time

    now = time.time()
    made = _folders(tmp_path, now)
    listed = {f.path.name: f for f in cache_folders.cache_folders(tmp_path)}
    assert set(listed) == {p.name for k, p in made.items() if k != "not ours"}
    assert listed[made["native"].name].usable and listed[made["target"].name].usable
    assert not listed[made["old sources"].name].usable
    assert listed[made["old numba"].name].bytes == 1000
    removed = {f.path for f in cache_folders.prune(tmp_path, now=now)}
    assert removed == {made["old sources"], made["old numba"], made["dead unpack"]}
    assert {p for p in made.values() if p.exists()} == {
        made["native"], made["target"], made["live unpack"], made["not ours"]}


def test_kernels_command_lists_and_prunes(tmp_path, monkeypatch, capsys):
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    made = _folders(tmp_path / "plurel_fast", time.time())
    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kernels: ") and "stale" in out and made["old numba"].name in out
    assert made["old numba"].exists()
    assert main(["kernels", "--prune"]) == 0
    out = capsys.readouterr().out
    assert "removed 3 stale folder(s)" in out
    assert not made["old numba"].exists() and made["native"].exists()


def test_output_into_a_closed_pipe_is_not_an_error(monkeypatch, capsys):
    """`plurel-fast kernels | head -1`: the reader is gone before the output ends."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with capsys.disabled(), open(write_end, "w", buffering=1) as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["kernels"]) == 0
