"""Fused multiply-add primitives emitted as LLVM intrinsics (numba ``@intrinsic``).

Why not plain numba loops: a float32 ``acc += x * w`` loop nest over a row tile
keeps its accumulators in memory (numba arrays carry no aliasing guarantees, so
LLVM cannot hold them in registers across the reduction loop) and, without
``fastmath``, never fuses the multiply and the add: it runs at ~25 GFLOP/s per
core here. ``fastmath={'contract'}`` would let LLVM fuse *some* products, which
CPU and loop shape decide, so the bytes of a result would depend on the machine.

Here every product is fused explicitly with ``llvm.fma`` (one rounding, IEEE
754 ``fusedMultiplyAdd``): the result is the same on every CPU. Where the CPU
has no FMA unit LLVM calls libm's ``fmaf``, slower but identical.

``fma_block(R, H)`` is a register-blocked micro-kernel: for R rows and 16·H
output columns it keeps R·H vectors of 16 float32 accumulators in registers
across the whole reduction and, for each k, loads one row of W (H vectors) and
broadcasts R inputs. Every output element is the chain

    acc = 0;  for k in 0, 1, ..., K-1:  acc = fma(x[k], W[k, j], acc)

so a value's bytes do not depend on R, H, the tiling or the thread count, and a
scalar loop over ``fma32`` gives the same bytes (``kernels.mlp`` uses both).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from plurel_fast.kernels.codes import FOLD_MAX, FOLD_PRODUCT, FOLD_SUM

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
LANES = 16
_VEC = ir.VectorType(_F32, LANES)


# Bytes of a cache line, and of a 16-float vector: a vector load or store at an
# address that is not a multiple of this spans two lines and costs about two.
CACHE_LINE = 64


@njit(cache=True)
def empty_aligned(shape):
    """An uninitialised C-contiguous float32 array of ``shape`` (a tuple) starting
    on a cache line.

    numba's ``np.empty`` aligns to 32 bytes, so half of the 16-float vectors of
    a buffer it returns straddle two cache lines; scratch tiles whose rows are
    multiples of 16 floats come from here (~10 % faster dense layers).
    """
    n = 1
    for size in shape:
        n *= size
    buf = np.empty(n + CACHE_LINE // 4, dtype=np.float32)
    skip = ((CACHE_LINE - buf.ctypes.data % CACHE_LINE) % CACHE_LINE) // 4
    return buf[skip:skip + n].reshape(shape)


@intrinsic
def fma32(typingctx, a, b, c):
    """``a * b + c`` with a single rounding (float32)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_F32, [_F32, _F32, _F32]), "llvm.fma.f32"
        )
        return builder.call(fn, args)

    return sig, codegen


def row_pointer(context, builder, arr_type, arr_value, row):
    """Address of ``arr[row, 0]`` of a 2-D float32 array (any row stride)."""
    arr = context.make_array(arr_type)(context, builder, arr_value)
    row_stride = cgutils.unpack_tuple(builder, arr.strides, 2)[0]
    base = builder.ptrtoint(arr.data, _I64)
    addr = builder.add(base, builder.mul(row, row_stride))
    return builder.inttoptr(addr, _F32.as_pointer()), row_stride


# The folds a block can apply to its results instead of storing them (DESIGN §4.4:
# an encoder's output, weighted and clamped, folded into its node's aggregate).
FOLD_CLAMP = 1e4


def broadcast(builder, value, vec_type):
    """A vector of ``vec_type`` (e.g. 16 x float32) holding copies of ``value``."""
    v = builder.insert_element(ir.Constant(vec_type, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vec_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, vec_type.count), [0] * vec_type.count))


def splat(builder, value):
    """A vector of 16 copies of a float32 value."""
    return broadcast(builder, value, _VEC)


def _fold_vector(builder, fold, old, value, scale):
    """``old`` folded with clamp(scale * value, ±FOLD_CLAMP), as the scalar code does it:
    ``y = w * v``; ``C if y > C else (-C if y < -C else y)``; then ``old + y``,
    ``y if y > old else old`` or ``old * y`` (so NaN propagates the same way)."""
    y = builder.fmul(scale, value)
    hi = ir.Constant(_VEC, [FOLD_CLAMP] * LANES)
    lo = ir.Constant(_VEC, [-FOLD_CLAMP] * LANES)
    y = builder.select(builder.fcmp_ordered(">", y, hi), hi,
                       builder.select(builder.fcmp_ordered("<", y, lo), lo, y))
    if fold == FOLD_SUM:
        return builder.fadd(old, y)
    if fold == FOLD_MAX:
        return builder.select(builder.fcmp_ordered(">", y, old), y, old)
    return builder.fmul(old, y)


def _fma_block_intrinsic(rows: int, vectors: int, fold: bool = False):
    """The block intrinsic for ``rows`` x 16·``vectors`` outputs; with ``fold`` it
    takes two more arguments, a float32 ``scale`` and an int64 fold code
    (FOLD_SUM, FOLD_MAX, FOLD_PRODUCT), and folds ``clamp(scale * out)`` into
    ``dst`` instead of storing ``out`` (one branch per call picks the fold)."""

    def typer(src, row0, in_dim, weights, w_off, w_stride, col0, dst):
        args = [src, types.int64, types.int64, weights, types.int64, types.int64, types.int64, dst]
        if fold:
            args += [types.float32, types.int64]
        return types.void(*args)

    def codegen(context, builder, signature, args):
        src_v, row0_v, k_v, w_v, w_off_v, w_stride_v, col0_v, dst_v = args[:8]
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), "llvm.fma.v16f32"
        )
        vptr = _VEC.as_pointer()
        src_ptr, src_stride = row_pointer(context, builder, signature.args[0], src_v, row0_v)
        dst_ptr, dst_stride = row_pointer(context, builder, signature.args[7], dst_v, row0_v)
        w_arr = context.make_array(signature.args[3])(context, builder, w_v)
        w_base = builder.gep(w_arr.data, [builder.add(w_off_v, col0_v)])
        zero = ir.Constant(_VEC, None)
        accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)]
                for _ in range(rows)]
        src_int = builder.ptrtoint(src_ptr, _I64)
        with cgutils.for_range(builder, k_v) as loop:
            k = loop.index
            w_row = builder.gep(w_base, [builder.mul(k, w_stride_v)])
            w_vecs = [
                builder.load(builder.bitcast(
                    builder.gep(w_row, [ir.Constant(_I64, LANES * h)]), vptr), align=4)
                for h in range(vectors)
            ]
            for r in range(rows):
                row_addr = builder.add(src_int, builder.mul(ir.Constant(_I64, r), src_stride))
                x_ptr = builder.gep(builder.inttoptr(row_addr, _F32.as_pointer()), [k])
                x = splat(builder, builder.load(x_ptr))
                for h in range(vectors):
                    builder.store(builder.call(fma, [x, w_vecs[h], builder.load(accs[r][h])]),
                                  accs[r][h])
        dst_int = builder.ptrtoint(dst_ptr, _I64)
        row_ptrs = []
        for r in range(rows):
            row_addr = builder.add(dst_int, builder.mul(ir.Constant(_I64, r), dst_stride))
            row_ptr = builder.gep(builder.inttoptr(row_addr, _F32.as_pointer()), [col0_v])
            row_ptrs.append([
                builder.bitcast(builder.gep(row_ptr, [ir.Constant(_I64, LANES * h)]), vptr)
                for h in range(vectors)
            ])

        def store(fold_code):
            for r in range(rows):
                for h in range(vectors):
                    p = row_ptrs[r][h]
                    value = builder.load(accs[r][h])
                    if fold_code is not None:
                        value = _fold_vector(builder, fold_code, builder.load(p, align=4), value, scale)
                    builder.store(value, p, align=4)

        if not fold:
            store(None)
            return context.get_dummy_value()
        scale = splat(builder, args[8])
        end = builder.append_basic_block("fold_end")
        cases = [builder.append_basic_block(f"fold_{code}") for code in (FOLD_SUM, FOLD_MAX, FOLD_PRODUCT)]
        switch = builder.switch(args[9], cases[2])  # any other code: product
        switch.add_case(ir.Constant(_I64, FOLD_SUM), cases[0])
        switch.add_case(ir.Constant(_I64, FOLD_MAX), cases[1])
        for code, bb in zip((FOLD_SUM, FOLD_MAX, FOLD_PRODUCT), cases):
            builder.position_at_end(bb)
            store(code)
            builder.branch(end)
        builder.position_at_end(end)
        return context.get_dummy_value()

    if not fold:
        @intrinsic
        def block(typingctx, src, row0, in_dim, weights, w_off, w_stride, col0, dst):
            """``dst[row0 + r, col0 + j] = sum_k src[row0 + r, k] * W[k, col0 + j]``
            for r < rows, j < 16 * vectors, W[k, j] = weights[w_off + k * w_stride + j];
            fused, in order k = 0, 1, ... Rows of ``src`` and ``dst`` must be contiguous."""
            return typer(src, row0, in_dim, weights, w_off, w_stride, col0, dst), codegen
    else:
        @intrinsic
        def block(typingctx, src, row0, in_dim, weights, w_off, w_stride, col0, dst, scale, fold_code):
            """As the plain block, but ``dst[...] = fold(dst[...], clamp(scale * sum))``
            for the fold ``fold_code`` (FOLD_SUM, FOLD_MAX, FOLD_PRODUCT)."""
            return typer(src, row0, in_dim, weights, w_off, w_stride, col0, dst), codegen

    return block


_I1 = ir.IntType(1)
_I64_VEC = ir.VectorType(_I64, LANES)
_PTR_VEC = ir.VectorType(_F32.as_pointer(), LANES)
_ALL_LANES = ir.Constant(ir.VectorType(_I1, LANES), [1] * LANES)


def _lane_addresses(builder, base_ptr, stride):
    """The 16 addresses ``base + lane * stride`` (bytes) as an i64 vector."""
    lanes = ir.Constant(_I64_VEC, list(range(LANES)))
    return builder.add(broadcast(builder, builder.ptrtoint(base_ptr, _I64), _I64_VEC),
                       builder.mul(lanes, broadcast(builder, stride, _I64_VEC)))


@intrinsic
def fma_column_16(typingctx, src, row0, in_dim, weights, w_off, w_stride, col, dst):
    """``dst[row0 + r, col] = sum_k src[row0 + r, k] * W[k, col]`` for 16 rows r,
    W[k, j] = weights[w_off + k * w_stride + j]: one output column with the rows
    along the vector lanes (a gather of 16 rows per k), the same fused chain
    over k = 0, 1, ... as the blocks. For the single output of a numerical
    decoder, where the scalar chains are bound by their latency and loads."""
    sig = types.void(src, types.int64, types.int64, weights, types.int64, types.int64,
                     types.int64, dst)

    def codegen(context, builder, signature, args):
        src_v, row0_v, k_v, w_v, w_off_v, w_stride_v, col_v, dst_v = args
        mod = builder.module
        mask_t = ir.VectorType(_I1, LANES)
        fma = cgutils.get_or_insert_function(
            mod, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), "llvm.fma.v16f32")
        gather = cgutils.get_or_insert_function(
            mod, ir.FunctionType(_VEC, [_PTR_VEC, _I32, mask_t, _VEC]),
            "llvm.masked.gather.v16f32.v16p0f32")
        scatter = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [_VEC, _PTR_VEC, _I32, mask_t]),
            "llvm.masked.scatter.v16f32.v16p0f32")
        src_ptr, src_stride = row_pointer(context, builder, signature.args[0], src_v, row0_v)
        dst_ptr, dst_stride = row_pointer(context, builder, signature.args[7], dst_v, row0_v)
        rows = _lane_addresses(builder, src_ptr, src_stride)
        w_arr = context.make_array(signature.args[3])(context, builder, w_v)
        w_base = builder.gep(w_arr.data, [builder.add(w_off_v, col_v)])
        acc = cgutils.alloca_once_value(builder, ir.Constant(_VEC, None))
        align = ir.Constant(_I32, 4)
        with cgutils.for_range(builder, k_v) as loop:
            k = loop.index
            addrs = builder.add(rows, broadcast(builder, builder.mul(k, ir.Constant(_I64, 4)), _I64_VEC))
            x = builder.call(gather, [builder.inttoptr(addrs, _PTR_VEC), align, _ALL_LANES,
                                      ir.Constant(_VEC, ir.Undefined)])
            w = splat(builder, builder.load(builder.gep(w_base, [builder.mul(k, w_stride_v)])))
            builder.store(builder.call(fma, [x, w, builder.load(acc)]), acc)
        out = _lane_addresses(builder, builder.gep(dst_ptr, [col_v]), dst_stride)
        builder.call(scatter, [builder.load(acc), builder.inttoptr(out, _PTR_VEC), align,
                               _ALL_LANES])
        return context.get_dummy_value()

    return sig, codegen


# Rows x 16-float vectors per call. 4 x 2 keeps 8 accumulators in flight, enough
# to cover the FMA latency on two FMA ports (~150 GFLOP/s per core on 32 x 32
# layers here, against ~25 for the plain loop nest); 8 x 2 loads 10 vectors per
# 16 FMAs instead of 6 per 8, so the loads no longer compete with the FMAs
# (~2-3 % of a default database's propagation; 12 x 2 was no better).
BLOCK_ROWS = 4
fma_block_8x2 = _fma_block_intrinsic(8, 2)
fma_block_4x2 = _fma_block_intrinsic(4, 2)
fma_block_1x2 = _fma_block_intrinsic(1, 2)
fma_block_4x1 = _fma_block_intrinsic(4, 1)
fma_block_1x1 = _fma_block_intrinsic(1, 1)
# Folding blocks (``kernels.mlp._dense_fold_tile``), the fold a run-time argument.
fold_8x2 = _fma_block_intrinsic(8, 2, fold=True)
fold_4x2 = _fma_block_intrinsic(4, 2, fold=True)
fold_1x2 = _fma_block_intrinsic(1, 2, fold=True)
fold_4x1 = _fma_block_intrinsic(4, 1, fold=True)
fold_1x1 = _fma_block_intrinsic(1, 1, fold=True)
