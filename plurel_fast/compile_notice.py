"""Say so when the first run on a machine compiles the kernels, instead of a silent wait.

numba compiles every kernel for the host CPU on first use and caches the result on disk
(`plurel_fast.kernels`), so the first database on a new machine, container or version
waits a minute or more; later processes load the kernels in about a second. The command
line wraps its first generation in `compiling_notice`, which prints one line when the
cache is cold and, on a terminal, the seconds elapsed while numba works.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

from plurel_fast.kernels import CACHE_DIR, cache_is_warm

__all__ = ["compiling_notice"]


@contextlib.contextmanager
def compiling_notice(enabled: bool = True, stream=None):
    """Around a block that may compile the kernels: one line before (when the kernel
    cache is cold), a ticking elapsed time on a terminal, and the time it took after."""
    stream = sys.stderr if stream is None else stream
    if not enabled or cache_is_warm():
        yield
        return
    print(
        "plurel-fast: compiling the kernels for this CPU, once per machine and version "
        f"(about 1-2 minutes on 2 cores; later runs load them in about a second from "
        f"{CACHE_DIR})",
        file=stream, flush=True,
    )
    start = time.perf_counter()
    done = threading.Event()
    ticker = None
    if getattr(stream, "isatty", lambda: False)():
        def tick():
            while not done.wait(1.0):
                print(f"\r  compiling... {time.perf_counter() - start:.0f} s", end="",
                      file=stream, flush=True)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
    try:
        yield
    finally:
        done.set()
        if ticker is not None:
            ticker.join()
            print("\r", end="", file=stream)
        print(f"plurel-fast: kernels ready after {time.perf_counter() - start:.0f} s",
              file=stream, flush=True)
