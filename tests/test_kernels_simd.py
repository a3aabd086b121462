"""Fused multiply-add micro-kernels (kernels/simd.py) against a NumPy reference.

``_dense_tile`` routes 32- and 16-column blocks through the register-blocked
intrinsics (8, 4 or 1 rows at a time) and the last columns through the gathering
column intrinsic (16 rows at a time) and a scalar ``fma32`` loop; every path must give exactly the chain
``acc = fma(x[k], W[k, j], acc)`` over k = 0, 1, ..., which the reference
computes from float64 (exact products; see tests/naive.py's ``fma32``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from naive import fma32 as fma32_reference
from plurel_fast.kernels import simd
from plurel_fast.kernels.mlp import _dense_tile


def _reference(x, w):
    acc = np.zeros((x.shape[0], w.shape[1]), np.float32)
    for k in range(x.shape[1]):
        acc = fma32_reference(x[:, k : k + 1], w[k][None, :], acc)
    return acc


@njit
def _fma32_array(a, b, c):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = simd.fma32(a[i], b[i], c[i])
    return out


@pytest.mark.parametrize(
    "rows, in_dim, out_dim",
    [(64, 32, 32), (7, 32, 32), (1, 1, 32), (13, 5, 48), (9, 32, 16), (6, 32, 1), (5, 3, 17),
     (64, 32, 64), (3, 33, 35), (37, 32, 1), (16, 7, 17), (40, 33, 35)],
)
def test_dense_tile_is_the_fused_chain_on_every_path(rows, in_dim, out_dim):
    rng = np.random.default_rng(rows * 1000 + in_dim * 10 + out_dim)
    # wide dynamic range so that rounding differences would show
    x = (rng.standard_normal((rows, in_dim)) * np.exp(rng.uniform(-8, 8, (rows, in_dim)))).astype(np.float32)
    w = rng.standard_normal((in_dim, out_dim)).astype(np.float32)
    flat = np.concatenate([rng.standard_normal(11).astype(np.float32), w.ravel()])  # w at offset 11
    out = np.full((rows, out_dim), np.nan, np.float32)
    _dense_tile(x, rows, in_dim, flat, 11, out_dim, out)
    want = _reference(x, w)
    assert np.array_equal(out, want)
    # and it is not the unfused float32 chain (which the old kernel computed)
    if in_dim > 1:
        unfused = np.zeros_like(want)
        for k in range(in_dim):
            unfused = unfused + x[:, k : k + 1] * w[k][None, :]
        assert not np.array_equal(unfused, want)


def test_dense_tile_rows_do_not_depend_on_their_neighbours():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((67, 32)).astype(np.float32)
    w = rng.standard_normal(32 * 32).astype(np.float32)
    full = np.empty((67, 32), np.float32)
    _dense_tile(x, 67, 32, w, 0, 32, full)
    for start, stop in [(0, 1), (1, 4), (3, 67), (64, 67), (5, 6)]:
        part = np.empty((stop - start, 32), np.float32)
        _dense_tile(x[start:stop], stop - start, 32, w, 0, 32, part)
        assert np.array_equal(part, full[start:stop])


def test_empty_aligned_starts_on_a_cache_line():
    for shape in [(0,), (1,), (15,), (16,), (1000,), (4097,), (3, 5), (2, 7, 32)]:
        a = simd.empty_aligned(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.ctypes.data % simd.CACHE_LINE == 0


def test_fma32_rounds_once():
    # 1 + 2^-23 squared is 1 + 2^-22 + 2^-46: a separate multiply rounds the
    # 2^-46 away, the fused operation keeps it in (x * x - (1 + 2^-22))
    x = np.float32(1.0 + 2.0**-23)
    a = np.array([x, 3.0, np.inf, np.nan], np.float32)
    b = np.array([x, 0.5, 0.0, 1.0], np.float32)
    c = np.array([-(1.0 + 2.0**-22), 0.25, 1.0, 0.0], np.float32)
    got = _fma32_array(a, b, c)
    assert got[0] == np.float32(2.0**-46)
    assert np.float32(a[0] * b[0] + c[0]) == 0.0  # unfused float32
    assert got[1] == np.float32(1.75)
    assert np.isnan(got[2]) and np.isnan(got[3])  # inf * 0 and nan propagate


_FEATURES_SCRIPT = "import numba, plurel_fast; print(repr(numba.config.CPU_FEATURES))"


def _features(env_extra: dict):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CACHE_DIR", "PLUREL_FAST_KERNELS")}
    env.update(env_extra)
    res = subprocess.run([sys.executable, "-c", _FEATURES_SCRIPT], env=env,
                         capture_output=True, text=True, check=True)
    return ast.literal_eval(res.stdout.strip().splitlines()[-1])


def test_wide_vectors_requested_only_when_the_user_did_not_choose():
    from llvmlite import binding as llvm

    host = llvm.get_host_cpu_features()
    got = _features({"PLUREL_FAST_KERNELS": "native"})  # kernels compiled for this CPU
    if host.get("avx512f"):
        assert got == host.flatten() + ",-prefer-256-bit"
    else:
        assert got is None
    assert _features({"NUMBA_CPU_FEATURES": "+avx2"}) == "+avx2"
    if llvm.get_process_triple().startswith("x86_64"):  # a portable target: its own features
        from plurel_fast.kernels import TARGET_FEATURES, supported_targets

        best = supported_targets(llvm.get_process_triple(), dict(host))[0]
        assert _features({"PLUREL_FAST_KERNELS": "portable"}) == TARGET_FEATURES[best]


def _fold_reference(fold, old, enc, w):
    """NumPy: old folded with clamp(w * enc, ±1e4) (DESIGN §4.4), float32 throughout."""
    y = (np.float32(w) * enc).astype(np.float32)
    y = np.where(y > 1e4, np.float32(1e4), np.where(y < -1e4, np.float32(-1e4), y)).astype(np.float32)
    if fold == 0:
        return (old + y).astype(np.float32)
    if fold == 1:
        return np.where(y > old, y, old)  # NaN y never wins, a NaN old stays
    return (old * y).astype(np.float32)


@pytest.mark.parametrize("fold", [0, 1, 2])
@pytest.mark.parametrize("rows, in_dim, out_dim", [(64, 32, 32), (13, 5, 48), (7, 1, 32), (6, 32, 17), (9, 32, 16)])
def test_dense_fold_tile_is_dense_tile_then_the_fold(fold, rows, in_dim, out_dim):
    from plurel_fast.kernels.mlp import _dense_fold_tile

    rng = np.random.default_rng(fold * 7 + rows + in_dim * 100 + out_dim)
    x = (rng.standard_normal((rows, in_dim)) * np.exp(rng.uniform(-3, 6, (rows, in_dim)))).astype(np.float32)
    w = rng.standard_normal((in_dim, out_dim)).astype(np.float32)
    old = rng.standard_normal((rows, out_dim)).astype(np.float32)
    old[0, 0] = np.nan  # NaN in the aggregate stays NaN (sum, product) or loses (max: stays)
    if rows > 2:
        x[2, :] = np.inf  # an infinite input: the clamp holds it at ±1e4 (or NaN from inf - inf)
    scale = np.float32(rng.uniform(0.2, 3.0))
    with np.errstate(invalid="ignore"):  # inf - inf in the reference's chains: NaN, as in the kernel
        enc = _reference(x, w)
    want = _fold_reference(fold, old, enc, scale)
    got = old.copy()
    _dense_fold_tile(x, rows, in_dim, w.ravel(), 0, out_dim, got, fold, scale)
    assert np.array_equal(got, want, equal_nan=True)
    assert not np.array_equal(want, old, equal_nan=True)  # something was folded


def test_mlp_forward_fold_tile_is_forward_then_the_fold():
    from plurel_fast.kernels.mlp import mlp_forward_fold_tile, mlp_forward_tile
    from plurel_fast.plan.mlp import MlpBank
    from test_kernels_mlp import scm_params

    params = scm_params(num_layers=(1, 4))
    bank = MlpBank(lazy=False)
    rng = np.random.default_rng(11)
    mlps = bank.add_mlps(rng, [1] * 12 + [32] * 4, 32, [32] * 16, params)
    frozen = bank.freeze()
    buf_a = np.empty((40, frozen.max_width), np.float32)
    buf_b = np.empty_like(buf_a)
    for m in mlps:
        in_dim = frozen.mlp_dims(int(m))[0]
        x = rng.standard_normal((37, in_dim)).astype(np.float32) * 3
        enc = np.empty((37, 32), np.float32)
        args = (frozen.mlps, frozen.layers, frozen.weights, frozen.layer_scale, frozen.act_params)
        mlp_forward_tile(x, int(m), *args, enc, buf_a, buf_b)
        for fold in (0, 1, 2):
            old = rng.standard_normal((37, 32)).astype(np.float32)
            got = old.copy()
            mlp_forward_fold_tile(x, int(m), *args, got, fold, np.float32(0.7), buf_a, buf_b)
            assert np.array_equal(got, _fold_reference(fold, old, enc, 0.7), equal_nan=True)
