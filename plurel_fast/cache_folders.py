"""The kernel cache folders under ``~/.cache/plurel_fast`` (``plurel-fast kernels``).

Every edit of the kernels, numba version or shipped target gets a folder of its own
(``numba-<numba version>-<kernel digest>[-<target>]``, `plurel_fast.kernels`), so the
folders of earlier versions stay behind, tens of MB each. `cache_folders` lists them and
`prune` removes those this installation cannot use: another numba version or other
kernel sources, and the temporary folders of unpacks that were killed midway. A folder
another installation still uses (two versions side by side) is only recompiled or
unpacked again by it when it next runs; nothing is ever wrong for it.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from plurel_fast import kernels

STALE_TEMPORARY_SECONDS = 3600
"""A temporary unpack folder older than this belongs to a process that died."""


@dataclasses.dataclass(frozen=True)
class CacheFolder:
    path: Path
    bytes: int
    usable: bool  # made for this numba version and these kernel sources
    in_use: bool  # this process's folder


def _size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def cache_folders(base: Path | None = None) -> list[CacheFolder]:
    """The ``numba-*`` folders (and temporary unpacks) under ``base`` (default
    `kernels.cache_base`), by name."""
    base = kernels.cache_base() if base is None else Path(base)
    current = kernels.folder_name()
    mine = Path(kernels.CACHE_DIR).resolve() if kernels.CACHE_DIR else None
    out = []
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    for path in entries:
        name = path.name
        temporary = name.startswith(".numba-") and ".tmp-" in name
        if not (name.startswith("numba-") or temporary) or not path.is_dir() or path.is_symlink():
            continue
        usable = not temporary and (name == current or name.startswith(current + "-"))
        out.append(CacheFolder(path, _size(path), usable, path.resolve() == mine))
    return out


def prune(base: Path | None = None, *, now: float | None = None) -> list[CacheFolder]:
    """Remove the folders this installation cannot use (see the module doc); returns them.
    Temporary unpack folders younger than `STALE_TEMPORARY_SECONDS` are left alone (an
    unpack may be running)."""
    now = time.time() if now is None else now
    removed = []
    for folder in cache_folders(base):
        if folder.usable or folder.in_use:
            continue
        if folder.path.name.startswith("."):
            try:
                if now - folder.path.stat().st_mtime < STALE_TEMPORARY_SECONDS:
                    continue
            except OSError:
                continue
        shutil.rmtree(folder.path, ignore_errors=True)
        if not folder.path.exists():
            removed.append(folder)
    return removed


def describe(folders: list[CacheFolder]) -> list[str]:
    """One line per folder: size, what it is, path."""
    lines = []
    for f in folders:
        what = "in use" if f.in_use else "usable" if f.usable else "stale"
        lines.append(f"{f.bytes / 1e6:8.1f} MB  {what:<6}  {f.path}")
    return lines
