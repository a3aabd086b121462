"""Numba kernels of plurel_fast, imported as ``plurel_fast.kernels``.

Kernels take arrays and scalars only, never a Config; all row-level randomness
is counter-based (``rng``), so output does not depend on threads or chunking.

Which machine code runs, and where it is cached, is decided once, here, when this
package is imported, before any kernel module is compiled or loaded
(`choose_kernels`, result in `KERNELS`). That is the only place where this package
changes numba's process-wide settings (``numba.config.CPU_NAME`` and
``CPU_FEATURES``, read when numba sets up its CPU target, i.e. at the first
``@njit``); nothing else touches them.

Cache folders. Compiled kernels are cached on disk (``cache=True``). Numba checks
a cached function only against its own source file, not against the kernels it
inlines from other modules, so an edited ``rng.py`` could leave a stale
``sources`` kernel behind. The cache therefore lives in a folder named after a
digest of all kernel sources (`KERNEL_DIGEST`): any change to any kernel starts
a fresh cache. Under ``$XDG_CACHE_HOME/plurel_fast`` (default
``~/.cache/plurel_fast``):

- ``numba-<numba version>-<digest>``: kernels compiled for this machine's CPU
  ("native");
- ``numba-<numba version>-<digest>-<target>``: kernels for a portable CPU target
  (`TARGETS`), unpacked from the archive shipped in ``prebuilt/`` (or compiled
  there when none fits).

A cache locator of our own (`KernelCacheLocator`, first in numba's list of
locators) answers only for functions defined in this folder, so a user's own
``@njit(cache=True)`` functions keep numba's default place (``__pycache__``
beside their source). Numba's process-wide ``config.CACHE_DIR`` is left
untouched. With ``$NUMBA_CACHE_DIR`` set, numba's own rule applies instead and
our locator is not installed.

Shipped kernels. Compiling every kernel takes a minute or more, so the package
ships them precompiled (``prebuilt/<target>.tar.xz``, described by
``prebuilt/index.json``; made by ``python -m plurel_fast.prebuild``) for
portable targets: ``x86-64-v4`` (AVX-512: Intel server CPUs since 2017, AMD
since Zen 4), ``x86-64-v3`` (AVX2, FMA, BMI2: most x86 CPUs since 2013-2015) and
``x86-64`` (any x86-64 CPU). numba finds a cached function by (signature,
CPU name, CPU features, bytecode) and checks it against a hash of the source
file's content, so kernels compiled in one checkout load in any other with
the same sources, numba version and Python version. They give the same bytes
as native ones (no fastmath; every multiply-add an explicit fused one), but
run slower on CPUs that have more than the target (AVX-512 above all; figures in
docs/DESIGN.md §A.5).

The decision (`choose_kernels`), in this order:

1. ``$NUMBA_CACHE_DIR`` set: numba's own cache rule and whatever CPU settings
   numba has; nothing shipped is used.
2. ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` (or ``numba.config``) set: respected.
   When they name a shipped target exactly (its name, with its `TARGET_FEATURES`:
   ``-prefer-256-bit`` for ``x86-64-v4``, ``""`` for the others), that target's
   folder is used (unpacked from the archive); otherwise the native folder.
3. numba set up its CPU target before this package was imported (any ``@njit``
   function defined first, e.g. by another library): its settings stay, native folder.
4. ``PLUREL_FAST_KERNELS``: ``native`` compiles for this CPU (the behaviour
   before shipped kernels); ``portable`` uses the best shipped target this CPU
   runs (compiling for that target when no archive fits); ``auto`` (default):
   native when the native folder already holds kernels for this CPU, else the
   best shipped target whose archive fits this numba, Python, kernel sources
   and platform, else native.

Native kernels: on CPUs with AVX-512, LLVM's default tuning ("prefer-256-bit")
vectorises loops with 256-bit registers only. The element loops of the
kernels (activations, folds, noise) run 1.3-1.5x faster with 512-bit ones
(generation ~13% faster end to end), so for native kernels, unless CPU features
were set by the user, this package asks numba for the host's features plus
``-prefer-256-bit``.

The settings are numba's and process-wide (numba has no per-function CPU), and
take effect only if numba's CPU target was not set up before ``plurel_fast`` was
imported (case 3). numba re-reads its settings from the environment when a ``NUMBA_*``
variable changes between two compilations; a process that changes one after
importing ``plurel_fast`` may then compile kernels it would have loaded (never
wrong values: every target computes the same bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import numba
from llvmlite import binding as _llvm
from numba.core import caching as _caching

KERNELS_DIR = Path(__file__).resolve().parent
PREBUILT_DIR = KERNELS_DIR / "prebuilt"
"""The shipped archives and their ``index.json``."""

MODES = ("auto", "native", "portable")
"""Values of ``$PLUREL_FAST_KERNELS``."""

_V2 = frozenset({"cx16", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"})
_V3 = _V2 | {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe"}
TARGETS: dict[str, frozenset[str]] = {
    "x86-64-v4": _V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
    "x86-64-v3": _V3,
    "x86-64": frozenset(),
}
"""Portable targets, best first: LLVM CPU name -> host features (as llvmlite names
them) it needs."""

TARGET_FEATURES: dict[str, str] = {
    "x86-64-v4": "-prefer-256-bit",
    "x86-64-v3": "",
    "x86-64": "",
}
"""``NUMBA_CPU_FEATURES`` a target's kernels are compiled and loaded with: nothing but
what the CPU name implies, and for ``x86-64-v4`` 512-bit vectors (LLVM's tuning for
that name prefers 256-bit ones, which leaves the element loops ~1.4x slower: see
native kernels below)."""

PYTHON_TAG = "py%d%d%s" % (sys.version_info[0], sys.version_info[1], getattr(sys, "abiflags", ""))
"""The tag numba puts in cache file names (``...-<line>.py311.nbi``)."""

REBUILD_COMMAND = "python -m plurel_fast.prebuild"

_MARKER = "prebuilt.json"  # in an unpacked folder: the index entry it came from


def _kernel_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(KERNELS_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


KERNEL_DIGEST = _kernel_digest()
"""Digest of every ``kernels/*.py``: names the cache folders and the shipped archive."""


def cache_base() -> Path:
    """``$XDG_CACHE_HOME/plurel_fast`` (default ``~/.cache/plurel_fast``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plurel_fast"


def folder_name(target: str | None = None) -> str:
    """``numba-<version>-<digest>`` (native), ``...-<target>`` for a portable target."""
    name = f"numba-{numba.__version__}-{KERNEL_DIGEST}"
    return name if target is None else f"{name}-{target}"


NATIVE_CACHE_DIR = str(cache_base() / folder_name())
"""Where kernels compiled for this CPU are cached (unless ``$NUMBA_CACHE_DIR`` is set)."""


# ------------------------------------------------------------------------ the decision


@dataclasses.dataclass(frozen=True)
class KernelChoice:
    """What `choose_kernels` decided for this process.

    mode : "native" (this CPU's code, or numba's settings as found) or "portable".
    requested : what decided it: "auto", "native" or "portable" (``PLUREL_FAST_KERNELS``)
        or "numba" (numba's own settings: ``NUMBA_CACHE_DIR``, ``NUMBA_CPU_NAME``, ...).
    target : the portable target's name, else None.
    cpu_name, cpu_features : what to set ``numba.config.CPU_NAME`` / ``CPU_FEATURES``
        to; None leaves numba's value.
    cache_dir : our locator's folder; None when ``$NUMBA_CACHE_DIR`` rules.
    archive : the index entry of the shipped archive to unpack into ``cache_dir``
        (None: nothing to unpack, compile there when needed).
    reason : one line saying why.
    """

    mode: str
    requested: str
    target: str | None
    cpu_name: str | None
    cpu_features: str | None
    cache_dir: str | None
    archive: dict | None
    reason: str


def read_index(prebuilt_dir: Path = PREBUILT_DIR) -> dict | None:
    """The shipped ``index.json``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(prebuilt_dir) / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def index_problems(index: dict | None, triple: str | None = None) -> list[str]:
    """Why the shipped archives cannot serve this installation (empty: they can)."""
    if index is None:
        return ["no prebuilt/index.json"]
    want = {
        "numba": numba.__version__,
        "python": PYTHON_TAG,
        "kernel_digest": KERNEL_DIGEST,
    }
    if triple is not None:
        want["triple"] = triple
    return [
        f"{key} {index.get(key)!r} != {value!r} here"
        for key, value in want.items()
        if index.get(key) != value
    ]


def supported_targets(triple: str, host_features: dict) -> list[str]:
    """The portable targets this host runs, best first (none off x86-64)."""
    if not triple.startswith("x86_64"):
        return []
    return [t for t, needs in TARGETS.items() if all(host_features.get(f) for f in needs)]


def choose_kernels(
    environ,
    *,
    triple: str,
    host_features: dict,
    index: dict | None,
    config_cpu_name: str | None = None,
    config_cpu_features: str | None = None,
    codegen_ready: bool = False,
    native_warm=lambda: False,
    base: Path | None = None,
) -> KernelChoice:
    """Decide native or portable kernels and their cache folder (rules in the module doc).

    A pure function of its arguments: ``environ`` (a mapping like ``os.environ``),
    the host's LLVM triple and features (``{name: bool}``), the shipped index, the
    CPU settings numba has (``numba.config.CPU_NAME`` / ``CPU_FEATURES``, which
    include ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``), whether numba's CPU target
    exists already, and ``native_warm()`` (called only when needed).
    """
    base = cache_base() if base is None else Path(base)
    native_dir = str(base / folder_name())
    requested = (environ.get("PLUREL_FAST_KERNELS") or "auto").strip().lower()
    bad_request = ""
    if requested not in MODES:
        bad_request = f"PLUREL_FAST_KERNELS={requested!r} is none of {', '.join(MODES)}; "
        requested = "auto"
    fits = not index_problems(index, triple)
    archives = (index or {}).get("targets", {}) if fits else {}

    def native(reason, cache_dir=native_dir, by=requested):
        return KernelChoice("native", by, None, None, None, cache_dir, None,
                            bad_request + reason)

    def portable(target, reason, by=requested):
        return KernelChoice("portable", by, target, target, TARGET_FEATURES[target],
                            str(base / folder_name(target)), archives.get(target),
                            bad_request + reason)

    if environ.get("NUMBA_CACHE_DIR"):
        return native("NUMBA_CACHE_DIR is set: numba's own cache and CPU settings", None, "numba")
    if config_cpu_name is not None or config_cpu_features is not None:
        if (config_cpu_name in TARGETS
                and config_cpu_features == TARGET_FEATURES[config_cpu_name]):
            shown = config_cpu_features or "no features"
            return portable(config_cpu_name, f"NUMBA_CPU_NAME={config_cpu_name} with "
                            f"{shown}: that shipped target", "numba")
        return native("NUMBA_CPU_NAME / NUMBA_CPU_FEATURES are set: compiled with them",
                      by="numba")
    if codegen_ready:
        return native("numba set up its CPU target before plurel_fast was imported (an "
                      "@njit function was defined first): its settings stay", by="numba")
    if requested == "native":
        return native("PLUREL_FAST_KERNELS=native")
    supported = supported_targets(triple, host_features)
    if requested == "portable":
        if not supported:
            return native(f"PLUREL_FAST_KERNELS=portable, but no portable target runs on {triple}")
        shipped = [t for t in supported if t in archives]
        target = (shipped or supported)[0]
        how = "shipped" if shipped else "no archive fits: compiled for it"
        return portable(target, f"PLUREL_FAST_KERNELS=portable: {target} ({how})")
    if native_warm():
        return native("kernels for this CPU are cached")
    for target in supported:
        if target in archives:
            return portable(target, f"no kernels cached for this CPU: the shipped {target} ones")
    if not supported:
        why = f"no portable target runs on {triple}"
    elif not fits:
        why = "the shipped kernels do not fit (" + "; ".join(index_problems(index, triple)) + ")"
    else:
        why = "no shipped archive for " + " or ".join(supported)
    return native(f"{why}: compiling for this CPU")


# --------------------------------------------------------------- cache folder checks


def _pickled(text: str) -> bytes:
    """How pickle (protocol 4+) writes the string ``text``: numba's cache index holds
    each entry's (triple, CPU name, CPU features) as such strings."""
    data = text.encode()
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + len(data).to_bytes(4, "little") + data


def _index_has(path: Path, cpu_name: str, cpu_features: str) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return _pickled(cpu_name) in data and (not cpu_features or _pickled(cpu_features) in data)


def folder_is_warm(folder, cpu_name: str, cpu_features: str) -> bool:
    """Whether ``folder`` (searched recursively) holds the propagation kernel's cache
    index with an entry for this CPU name and features: then the other kernels are
    most probably there too, and loading them takes about a second."""
    try:
        found = list(Path(folder).rglob("scm._propagate_rows-*.nbi"))
    except OSError:
        return False
    return any(_index_has(p, cpu_name, cpu_features) for p in found)


def _native_cpu() -> tuple[str, str]:
    """The CPU name and features numba compiles with when left to itself (and with
    our 512-bit preference on AVX-512 hosts)."""
    from numba.core.codegen import get_host_cpu_features

    features = _wide_vector_features()
    return _llvm.get_host_cpu_name(), features if features is not None else get_host_cpu_features()


def _wide_vector_features() -> str | None:
    try:
        features = _llvm.get_host_cpu_features()
    except RuntimeError:  # llvmlite cannot read the features on this host
        return None
    if features.get("avx512f"):
        return features.flatten() + ",-prefer-256-bit"
    return None


def _codegen_ready() -> bool:
    from numba.core.registry import cpu_target

    return "_toplevel_target_context" in vars(cpu_target)


def _current_cpu() -> tuple[str, str]:
    """CPU name and features of this process's numba code generator."""
    from numba.core.registry import cpu_target

    if _codegen_ready():
        _, name, features = cpu_target.target_context.codegen().magic_tuple()
        return name, features
    if numba.config.CPU_NAME is None and numba.config.CPU_FEATURES is None:
        return _native_cpu()
    from numba.core.codegen import get_host_cpu_features

    name = numba.config.CPU_NAME or _llvm.get_host_cpu_name()
    features = numba.config.CPU_FEATURES
    return name, get_host_cpu_features() if features is None else features


# ----------------------------------------------------------------- unpacking archives


def unpack(archive: dict, dest: Path, prebuilt_dir: Path = PREBUILT_DIR) -> Path:
    """Unpack a shipped archive into ``dest`` (a cache folder), once.

    The files go to a temporary sibling that is renamed to ``dest``: other
    processes (corpus workers) see no folder or a complete one, and when several
    unpack at once one rename wins and the others drop their copy. A folder that
    exists already is used as it is. Raises OSError when ``dest``'s parent is not
    writable (the archive itself is only read).
    """
    dest = Path(dest)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        data = (Path(prebuilt_dir) / archive["archive"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != archive["sha256"]:
            raise OSError(f"{archive['archive']}: sha256 differs from prebuilt/index.json")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or "/" in name or name.startswith("."):
                    raise OSError(f"{archive['archive']}: unexpected member {name!r}")
                (tmp / name).write_bytes(tar.extractfile(member).read())
        (tmp / _MARKER).write_text(json.dumps(archive, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # not a lost race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _unpack_somewhere(choice: KernelChoice) -> KernelChoice:
    """``choice`` with its archive unpacked: into its cache folder, or, when that is
    not writable, into the same folder name under the temporary directory."""
    dest = Path(choice.cache_dir)
    errors = []
    user = getattr(os, "getuid", lambda: "user")()
    for folder in (dest, Path(tempfile.gettempdir()) / f"plurel_fast-{user}" / dest.name):
        try:
            unpack(choice.archive, folder)
            return dataclasses.replace(choice, cache_dir=str(folder))
        except (OSError, tarfile.TarError, KeyError) as err:
            errors.append(f"{folder}: {err}")
    raise OSError("; ".join(errors))


# ------------------------------------------------------------------------- at import


def _host() -> tuple[str, dict]:
    """This machine's LLVM triple and CPU features (``{name: bool}``; none when
    llvmlite cannot read them)."""
    try:
        features = dict(_llvm.get_host_cpu_features())
    except RuntimeError:
        features = {}
    return _llvm.get_process_triple(), features


def best_target() -> str | None:
    """The best portable target this machine runs (None off x86-64): the one whose
    shipped kernels ``auto`` picks when no native ones are cached and its archive fits."""
    supported = supported_targets(*_host())
    return supported[0] if supported else None


def _decide() -> KernelChoice:
    triple, features = _host()
    choice = choose_kernels(
        os.environ,
        triple=triple,
        host_features=features,
        index=read_index(),
        config_cpu_name=numba.config.CPU_NAME,
        config_cpu_features=numba.config.CPU_FEATURES,
        codegen_ready=_codegen_ready(),
        native_warm=lambda: folder_is_warm(NATIVE_CACHE_DIR, *_native_cpu()),
    )
    if choice.mode == "portable" and choice.archive is not None:
        try:
            choice = _unpack_somewhere(choice)
        except OSError as err:
            warnings.warn(f"plurel_fast: cannot unpack the shipped {choice.target} kernels "
                          f"({err}); compiling for this CPU", RuntimeWarning, stacklevel=2)
            choice = KernelChoice("native", choice.requested, None, None, None,
                                  NATIVE_CACHE_DIR, None,
                                  f"unpacking the shipped kernels failed: {err}")
    if choice.cpu_name is not None:
        numba.config.CPU_NAME = choice.cpu_name
        numba.config.CPU_FEATURES = choice.cpu_features
    elif (choice.mode == "native" and numba.config.CPU_NAME is None
          and numba.config.CPU_FEATURES is None and not _codegen_ready()):
        numba.config.CPU_FEATURES = _wide_vector_features()
    return choice


KERNELS = _decide()
"""This process's `KernelChoice` (mode, target, cache folder, reason)."""

CACHE_DIR = KERNELS.cache_dir or os.environ.get("NUMBA_CACHE_DIR", "")
"""Where our compiled kernels are loaded from and cached (``$NUMBA_CACHE_DIR`` when set)."""


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


if KERNELS.cache_dir is not None:
    _install_locator()


def _cache_folder() -> str:
    """Where this process's kernels are cached: ``$NUMBA_CACHE_DIR`` or `CACHE_DIR`."""
    return os.environ.get("NUMBA_CACHE_DIR") or CACHE_DIR


def cache_is_complete() -> bool:
    """Whether every kernel the package calls from Python (the list in the shipped
    ``index.json``) has a cache index in this process's cache folder with an entry for
    the CPU numba compiles for: then no call compiles (unless with argument types the
    cache lacks). False when the shipped index does not fit these kernel sources."""
    index = read_index()
    folder = _cache_folder()
    if index_problems(index) or not index["targets"] or not folder:
        return False
    names = set().union(*(entry["kernels"] for entry in index["targets"].values()))
    files: dict[str, list[Path]] = {}
    try:
        for path in Path(folder).rglob("*.nbi"):  # <module>.<kernel>-<line>.<python>.nbi
            files.setdefault(path.name.rsplit("-", 1)[0], []).append(path)
    except OSError:
        return False
    cpu = _current_cpu()
    return all(any(_index_has(p, *cpu) for p in files.get(name, ())) for name in names)


def cache_is_warm() -> bool:
    """Whether the kernels this process uses are probably on disk already (the
    propagation kernel's cache index in our cache folder, or in ``$NUMBA_CACHE_DIR``,
    has an entry for the CPU numba compiles for): then the first call loads them in
    about a second instead of compiling for a minute or more."""
    folder = _cache_folder()
    return bool(folder) and folder_is_warm(folder, *_current_cpu())
