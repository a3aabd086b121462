"""Numba kernels of plurel_fast, imported as ``plurel_fast.kernels``.

Kernels take arrays and scalars only, never a Config; all row-level randomness
is counter-based (``rng``), so output does not depend on threads or chunking.

Compiled kernels are cached on disk (``cache=True``). Numba checks a cached
function only against its own source file, not against the kernels it inlines
from other modules, so an edited ``rng.py`` could leave a stale ``sources``
kernel behind. The cache therefore lives in a folder named after a digest of
all kernel sources: any change to any kernel starts a fresh cache. The folder
is ``$NUMBA_CACHE_DIR`` when set (then it is used as is), else
``$XDG_CACHE_HOME/plurel_fast`` (default ``~/.cache/plurel_fast``).
"""

import hashlib
import os
from pathlib import Path

import numba


def _kernel_cache_dir() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plurel_fast"
    return str(base / f"numba-{numba.__version__}-{digest.hexdigest()[:16]}")


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _kernel_cache_dir()
