"""Say so when numba compiles kernels, instead of a silent wait.

Kernels come precompiled for portable CPU targets, or are compiled once per machine
for its CPU and cached on disk (`plurel_fast.kernels`: which, and why, is decided at
import). When the first run on a machine has to compile them it waits a minute or
more; later processes load them in about a second. The command line wraps its first
generation in `compiling_notice`, which prints one line when the kernel cache is
cold, or at the first kernel numba actually compiles (a specialization missing from
the cache), and, on a terminal, ticks the seconds elapsed while numba works.

`recording_compiles` lists the kernels compiled in a block (tests and
``python -m plurel_fast.prebuild`` use it): numba announces every compilation as a
``numba:compile`` event; a kernel called from Python with argument types that its
cache lacks is one "top-level" compilation (the kernels it calls compile inside it).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass

from numba.core import event as _event

from plurel_fast.kernels import CACHE_DIR, cache_is_warm

__all__ = ["KernelCompile", "compiling_notice", "recording_compiles"]

_OURS = "plurel_fast.kernels."


@dataclass(frozen=True)
class KernelCompile:
    """One kernel numba compiled because Python called it with new argument types."""

    name: str  # "<module>.<function>", e.g. "scm._propagate_rows"
    args: tuple  # numba types of the arguments
    dispatcher: object

    def __str__(self) -> str:
        return f"{self.name}{self.args}"


class _Listener(_event.Listener):
    def __init__(self, on_compile):
        self._on_compile = on_compile
        self._depth = 0

    def on_start(self, event):
        self._depth += 1
        if self._depth > 1:
            return
        dispatcher = event.data["dispatcher"]
        module = getattr(dispatcher.py_func, "__module__", "")
        if module.startswith(_OURS):
            name = f"{module[len(_OURS):]}.{dispatcher.py_func.__qualname__}"
            self._on_compile(KernelCompile(name, tuple(event.data["args"]), dispatcher))

    def on_end(self, event):
        self._depth -= 1


@contextlib.contextmanager
def recording_compiles():
    """Within the block, every top-level compilation of one of our kernels is appended
    to the list this yields (empty when every kernel came from the cache)."""
    compiled: list[KernelCompile] = []
    with _event.install_listener("numba:compile", _Listener(compiled.append)):
        yield compiled


class _Notice:
    def __init__(self, stream, message):
        self.stream = stream
        self.message = message
        self.start = None
        self.done = threading.Event()
        self.ticker = None

    def begin(self, detail: str = "") -> None:
        if self.start is not None:
            return
        print(f"plurel-fast: {self.message}{detail}", file=self.stream, flush=True)
        self.start = time.perf_counter()
        if getattr(self.stream, "isatty", lambda: False)():
            def tick():
                while not self.done.wait(1.0):
                    print(f"\r  compiling... {time.perf_counter() - self.start:.0f} s", end="",
                          file=self.stream, flush=True)

            self.ticker = threading.Thread(target=tick, daemon=True)
            self.ticker.start()

    def end(self) -> None:
        self.done.set()
        if self.start is None:
            return
        if self.ticker is not None:
            self.ticker.join()
            print("\r", end="", file=self.stream)
        print(f"plurel-fast: kernels ready after {time.perf_counter() - self.start:.0f} s",
              file=self.stream, flush=True)


@contextlib.contextmanager
def compiling_notice(enabled: bool = True, stream=None, *, warm: bool | None = None,
                     message: str | None = None):
    """Around a block that may compile kernels: one line before it when the kernel cache
    is cold (``warm``: whether it is, default `cache_is_warm()`), or at the first kernel
    numba compiles in it; a ticking elapsed time on a terminal; the time it took after.
    Prints nothing when nothing compiles."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        yield
        return
    notice = _Notice(stream, message or (
        "compiling the kernels for this CPU, once per machine and version "
        f"(about 1-2 minutes on 2 cores; later runs load them in about a second from "
        f"{CACHE_DIR})"))
    if not (cache_is_warm() if warm is None else warm):
        notice.begin()

    def on_compile(compiled: KernelCompile) -> None:
        notice.begin(f" [{compiled.name}: not in the kernel cache]")

    try:
        with _event.install_listener("numba:compile", _Listener(on_compile)):
            yield
    finally:
        notice.end()
