"""Cold start and the speed of shipped portable kernels against native ones (#16 item 1).

1. Cold: for each kernel mode, a fresh process with an empty kernel cache (a new
   ``XDG_CACHE_HOME``) imports ``plurel_fast`` and generates ``generate(0)``; prints the
   import and first-database seconds and the process's wall time. ``auto`` picks the
   shipped portable kernels; ``native`` compiles for this CPU (what every first run did
   before kernels were shipped).
2. Warm: ``bench/generate_throughput.py`` (one thread, seeds 0-7, after a warm-up
   database, which compiles native kernels if ``--warm-xdg`` has none yet) alternately
   with ``PLUREL_FAST_KERNELS=native`` and ``=portable``; prints each run's median and
   pooled cells/s and the ratio.

Usage: python bench/kernel_targets.py [--rounds 3] [--seeds 0-7] [--modes auto,native]
       [--warm-xdg DIR] [--no-warm]
With another checkout's interpreter (the cold start before shipped kernels):
       /work/main/.venv/bin/python bench/kernel_targets.py --modes auto --no-warm
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_COLD = """
import json, time
t0 = time.perf_counter()
import plurel_fast
t1 = time.perf_counter()
plurel_fast.generate(0)
t2 = time.perf_counter()
from plurel_fast import kernels
choice = getattr(kernels, "KERNELS", None)
print(json.dumps({"import": t1 - t0, "generate": t2 - t1,
                  "kernels": [choice.mode, choice.target] if choice else ["native", None]}))
"""


def _env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_") and k != "PLUREL_FAST_KERNELS"}
    env.update(changes)
    return env


def cold(mode: str, xdg: str) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _COLD], env=_env(XDG_CACHE_HOME=xdg,
                         PLUREL_FAST_KERNELS=mode), capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall"] = time.perf_counter() - t0
    return out


def warm(mode: str, xdg: str, seeds: str) -> tuple[float, float]:
    script = Path(__file__).resolve().parent / "generate_throughput.py"
    res = subprocess.run([sys.executable, str(script), "--seeds", seeds], env=_env(
        XDG_CACHE_HOME=xdg, PLUREL_FAST_KERNELS=mode, NUMBA_NUM_THREADS="1"),
        capture_output=True, text=True, check=True)
    m = re.search(r"median (\d+) cells/s, pooled (\d+) cells/s", res.stdout)
    return float(m.group(1)), float(m.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="auto,native")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--no-warm", action="store_true")
    parser.add_argument("--warm-xdg", help="XDG_CACHE_HOME of the warm runs (default: the "
                        "cold native run's, else a new one)")
    args = parser.parse_args()
    native_xdg = None
    print(f"cold start ({sys.executable}, {os.cpu_count()} cores, default threads):")
    for mode in args.modes.split(","):
        xdg = tempfile.mkdtemp(prefix=f"plurel-cold-{mode}-")
        r = cold(mode, xdg)
        print(f"  {mode:<8} kernels {r['kernels'][0]:<8} {r['kernels'][1] or '':<10} "
              f"import {r['import']:6.2f} s  first database {r['generate']:6.2f} s  "
              f"process {r['wall']:6.2f} s", flush=True)
        if mode == "native":
            native_xdg = xdg
    if args.no_warm:
        return
    native_xdg = args.warm_xdg or native_xdg or tempfile.mkdtemp(prefix="plurel-warm-")
    print(f"warm, one thread, seeds {args.seeds} (median / pooled cells/s):")
    rates = {"native": [], "portable": []}
    for r in range(args.rounds):
        for mode in ("native", "portable"):
            median, pooled = warm(mode, native_xdg, args.seeds)
            rates[mode].append(pooled)
            print(f"  round {r + 1} {mode:<8} {median:9.0f} {pooled:9.0f}", flush=True)
    n, p = statistics.median(rates["native"]), statistics.median(rates["portable"])
    print(f"pooled, median over rounds: native {n:.0f}, portable {p:.0f} cells/s: "
          f"portable = {p / n:.2f} x native")


if __name__ == "__main__":
    main()
