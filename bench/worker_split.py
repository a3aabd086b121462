"""Where a corpus worker's time goes: SCM propagation against everything else.

Runs what one corpus worker runs per seed, ``generate_to(seed, config, folder)``, over
seeds ``0 .. N-1`` in this process (one numba thread unless ``NUMBA_NUM_THREADS`` says
otherwise), after one untimed warm-up database, and times the propagation kernel
(``kernels.scm._propagate_rows``, wrapped) apart from the rest: planning, sources,
collation partials, noise tables, post-processing and the folder's files.

    python bench/worker_split.py --num-dbs 128 [--out DIR]

Prints the seconds and tokens, the share of propagation, and the tokens/s that the
propagation kernel alone would bound the worker to (everything else taking no time).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from plurel_fast import Config  # noqa: E402
from plurel_fast.kernels import scm  # noqa: E402
from plurel_fast.stream import generate_to  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-dbs", type=int, default=16, help="seeds 0 .. N-1 (default 16)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the databases (default: a temporary one, removed)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="worker-split-", dir=args.out))
    propagate = scm._propagate_rows
    spent = [0.0]

    def timed(*a):
        t = time.perf_counter()
        try:
            return propagate(*a)
        finally:
            spent[0] += time.perf_counter() - t

    try:
        config = Config()
        generate_to(10_000, config, out / "warm-up")
        scm._propagate_rows = timed  # propagate() looks it up in the module on every call
        tokens = 0
        t0 = time.perf_counter()
        for seed in range(args.num_dbs):
            tokens += generate_to(seed, config, out / f"plurel-{seed}").num_tokens
        total = time.perf_counter() - t0
    finally:
        scm._propagate_rows = propagate
        shutil.rmtree(out, ignore_errors=True)
    prop = spent[0]
    print(f"{args.num_dbs} databases, {tokens:,} tokens, {total:.1f} s: {tokens / total:,.0f} "
          f"tokens/s; propagation {prop:.1f} s ({prop / total:.0%}), the rest "
          f"{total - prop:.1f} s; propagation alone would allow {tokens / prop:,.0f} tokens/s")


if __name__ == "__main__":
    main()
