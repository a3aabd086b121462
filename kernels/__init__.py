"""Numba kernels of plurel_fast, imported as ``plurel_fast.kernels``.

Kernels take arrays and scalars only, never a Config; all row-level randomness
is counter-based (``rng``), so output does not depend on threads or chunking.

Compiled kernels are cached on disk (``cache=True``). Numba checks a cached
function only against its own source file, not against the kernels it inlines
from other modules, so an edited ``rng.py`` could leave a stale ``sources``
kernel behind. The cache therefore lives in a folder named after a digest of
all kernel sources: any change to any kernel starts a fresh cache. The folder
is ``$XDG_CACHE_HOME/plurel_fast`` (default ``~/.cache/plurel_fast``), or
``$NUMBA_CACHE_DIR`` when that is set (then used as is, by numba's own rule).

The cache folder is ours alone: a cache locator of our own (`KernelCacheLocator`,
first in numba's list of locators) answers only for functions defined in this
folder, so a user's own ``@njit(cache=True)`` functions keep numba's default
place (``__pycache__`` beside their source). Numba's process-wide
``config.CACHE_DIR`` is left untouched.

Vector width: on CPUs with AVX-512, LLVM's default tuning ("prefer-256-bit")
vectorises loops with 256-bit registers only. The element loops of the
kernels (activations, folds, noise) run 1.3-1.5x faster with 512-bit ones
(generation ~13% faster end to end), so unless ``NUMBA_CPU_FEATURES`` is set
this package asks numba for the host's features plus ``-prefer-256-bit``. The
setting is numba's, process-wide (numba has no per-function CPU features), and
takes effect only if nothing was compiled before ``plurel_fast`` was imported.
It changes speed only, never values: no kernel uses fastmath, so LLVM may not
reorder or fuse float operations.
"""

import hashlib
import os
from pathlib import Path

import numba
from llvmlite import binding as _llvm
from numba.core import caching as _caching

KERNELS_DIR = Path(__file__).resolve().parent


def _kernel_cache_dir() -> str:
    digest = hashlib.sha256()
    for path in sorted(KERNELS_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plurel_fast"
    return str(base / f"numba-{numba.__version__}-{digest.hexdigest()[:16]}")


CACHE_DIR = _kernel_cache_dir()
"""Where our compiled kernels are cached (unless ``$NUMBA_CACHE_DIR`` is set)."""


class KernelCacheLocator(_caching._SourceFileBackedLocatorMixin, _caching._CacheLocator):
    """Numba cache locator for the functions of this folder only: their cache goes to
    `CACHE_DIR` (named after a digest of every kernel source); any other function gets
    None, so numba asks its next locator as if we were not there."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = CACHE_DIR

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            ours = Path(py_file).resolve().parent == KERNELS_DIR
        except (OSError, TypeError, ValueError):
            return None
        if not ours:
            return None
        return super().from_function(py_func, py_file)


def _install_locator() -> None:
    impl = getattr(_caching, "CacheImpl", None) or getattr(_caching, "_CacheImpl")
    if KernelCacheLocator not in impl._locator_classes:
        impl._locator_classes.insert(0, KernelCacheLocator)


if not os.environ.get("NUMBA_CACHE_DIR"):
    _install_locator()


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


def cache_is_warm() -> bool:
    """Whether compiled kernels are probably on disk already (the propagation kernel's
    cache index exists in our cache folder, or in ``$NUMBA_CACHE_DIR``): then the first
    call loads them in about a second instead of compiling for a minute or more."""
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or CACHE_DIR)
    try:
        return next(base.rglob("scm._propagate_rows-*.nbi"), None) is not None
    except OSError:
        return False

