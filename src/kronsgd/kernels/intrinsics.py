"""LLVM intrinsics for the numba kernels: a software prefetch and a 16-wide vector compare.

Each is checked once at import against a plain numba twin; an LLVM that rejects it (the
names of intrinsics change between versions) gets the twin instead: slower, never wrong.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_JIT = dict(nopython=True, nogil=True, cache=True)

FANOUT = 16  # entries compared at once: 16 float32 fill one 64-byte cache line


@intrinsic
def _prefetch_intrinsic(typingctx, arr, idx):
    """llvm.prefetch of &arr[idx] (1-D contiguous array): read, keep in all cache levels."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@nb.jit(nopython=True)
def _prefetch_probe(a):
    _prefetch_intrinsic(a, 0)
    return a[0]


try:  # a numba/LLVM that names the intrinsic otherwise gets no prefetch: slower, never wrong
    _prefetch_probe(np.zeros(1))
    prefetch = _prefetch_intrinsic
except Exception:  # pragma: no cover - depends on the installed LLVM

    @nb.jit(**_JIT)
    def prefetch(arr, idx):
        pass


@intrinsic
def _compare16_intrinsic(typingctx, col, start, threshold):
    """Bit c set when col[start + c] > threshold, c < 16: one vector compare (col 1-D contiguous)."""
    sig = types.uint32(col, start, threshold)

    def codegen(context, builder, signature, args):
        aryty, _, thrty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        element = context.get_value_type(aryty.dtype)
        vector = ir.VectorType(element, FANOUT)
        pointer = builder.bitcast(builder.gep(ary.data, [args[1]]), vector.as_pointer())
        values = builder.load(pointer, align=aryty.dtype.bitwidth // 8)
        double = ir.DoubleType()
        if element != double:
            values = builder.fpext(values, ir.VectorType(double, FANOUT))
        limit = context.cast(builder, args[2], thrty, types.float64)
        lanes = ir.VectorType(double, FANOUT)
        splat = builder.insert_element(ir.Constant(lanes, None), limit, ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(ir.IntType(32), FANOUT), [0] * FANOUT))
        above = builder.fcmp_ordered(">", values, splat)  # as the scalar `>`: NaN never passes
        bits = builder.bitcast(above, ir.IntType(FANOUT))
        return builder.zext(bits, ir.IntType(32))

    return sig, codegen


@nb.jit(**_JIT)
def compare16_scalar(col, start, threshold):
    mask = np.uint32(0)
    for c in range(FANOUT):
        if col[start + c] > threshold:
            mask |= np.uint32(1) << np.uint32(c)
    return mask


@nb.jit(nopython=True)
def _compare16_probe(col):
    return _compare16_intrinsic(col, 0, 0.5) == compare16_scalar(col, 0, 0.5)


try:  # as for the prefetch: a numba/LLVM without it compares one child at a time
    if not (_compare16_probe(np.arange(FANOUT, dtype=np.float32) % 3 - 0.2) and _compare16_probe(np.ones(FANOUT))):
        raise ValueError("the vector compare disagrees with the scalar one")
    compare16 = _compare16_intrinsic
except Exception:  # pragma: no cover - depends on the installed LLVM
    compare16 = compare16_scalar


