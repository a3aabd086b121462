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

Vector width: on CPUs with AVX-512, LLVM's default tuning ("prefer-256-bit")
vectorises loops with 256-bit registers only. The element loops of the
kernels (activations, folds, noise) run 1.3-1.5x faster with 512-bit ones
(generation ~13% faster end to end), so unless ``NUMBA_CPU_FEATURES`` is set
this package asks numba for the host's features plus ``-prefer-256-bit``. The
setting is numba's, process-wide, and takes effect only if nothing was compiled
before ``plurel_fast`` was imported. It changes speed only, never values: no
kernel uses fastmath, so LLVM may not reorder or fuse float operations.
"""

import hashlib
import os
from pathlib import Path

import numba
from llvmlite import binding as _llvm


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


def _prefer_wide_vectors() -> None:
    if os.environ.get("NUMBA_CPU_FEATURES") is not None or numba.config.CPU_FEATURES is not None:
        return
    try:
        features = _llvm.get_host_cpu_features()
    except RuntimeError:  # llvmlite cannot read the features on this host
        return
    if features.get("avx512f"):
        numba.config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


_prefer_wide_vectors()
