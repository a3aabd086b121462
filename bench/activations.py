"""ns per element of every hidden-layer activation (kernels.mlp._activate_flat).

    NUMBA_NUM_THREADS=1 python bench/activations.py [--reps 2000] [--repeats 3] [--json]

One flat run of 2048 float32 values (a 64-row x 32-column tile) drawn from
N(0, 4^2), copied back before each call, so the figures include that copy
(~0.1 ns, about all the piecewise-linear activations cost). Minimum over
``--repeats``; compare versions by alternating runs, this machine drifts.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from numba import njit

from plurel_fast.kernels.mlp import ACTIVATION_NAMES, _activate_flat

# random_sine parameters: m = 5, then amplitudes, frequencies, phases
SINE_PARAMS = np.array([5, 1, -0.5, 0.3, 1, 0.7, 0.5, 2.0, 9.0, 0.2, 1.5, 0.1, 2.0, 3.0, 4.0, 5.0],
                       dtype=np.float32)


@njit
def _run(v, src, code, params, reps):
    for _ in range(reps):
        for i in range(v.shape[0]):
            v[i] = src[i]
        _activate_flat(v, code, np.float32(1.3), params, 0)


def measure(reps: int, repeats: int, n: int = 2048, sigma: float = 4.0) -> dict[str, float]:
    src = (np.random.default_rng(0).standard_normal(n) * sigma).astype(np.float32)
    v = src.copy()
    out = {}
    for code, name in enumerate(ACTIVATION_NAMES):
        _run(v, src, code, SINE_PARAMS, 1)
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            _run(v, src, code, SINE_PARAMS, reps)
            best = min(best, time.perf_counter() - t)
        out[name] = best / reps / n * 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="calls per timing")
    ap.add_argument("--repeats", type=int, default=3, help="timings per activation (min taken)")
    ap.add_argument("--sigma", type=float, default=4.0, help="standard deviation of the inputs")
    ap.add_argument("--json", action="store_true", help="print {name: ns} as JSON")
    args = ap.parse_args()
    res = measure(args.reps, args.repeats, sigma=args.sigma)
    if args.json:
        print(json.dumps(res))
        return
    for name, ns in sorted(res.items(), key=lambda kv: -kv[1]):
        print(f"{name:16s} {ns:6.3f} ns/elem")
    print(f"{'mean':16s} {np.mean(list(res.values())):6.3f}")


if __name__ == "__main__":
    main()
