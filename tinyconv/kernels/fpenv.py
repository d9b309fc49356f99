"""Subnormal floats flushed to zero inside one compiled kernel, and the thread's setting restored after it.

Why. Late in training Adam's moments of weights whose gradient stays zero decay by ``beta1`` / ``beta2`` every step
until they are subnormal (below 1.2e-38 in float32), and Intel CPUs take a microcode assist of some hundred
cycles for every operation with a subnormal input or result, so the last epochs of a run slow down
(``benchmarks/bench_epoch.py`` times whole runs epoch by epoch).

What. :func:`flush_begin` sets the x86 MXCSR's flush-to-zero and denormals-are-zero bits on the calling thread and
returns the previous register; :func:`flush_end` puts it back, so code outside the kernel (NumPy, the user's
program, hypothesis, which refuses to run under a global flush) keeps IEEE subnormals. Values that would be
subnormal inside the kernel are 0 instead. numba intrinsics, usable only inside ``@njit`` code; on other
architectures they compile to nothing (``flush_begin`` returns 0).
"""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["flush_begin", "flush_end", "FLUSH_BITS"]

FLUSH_BITS = 0x8040  # MXCSR: flush-to-zero (bit 15) | denormals-are-zero (bit 6)
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def _mxcsr_functions(builder):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    return (cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr"),
            cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr"))


@intrinsic
def flush_begin(typingctx):
    """Turn the flush on for this thread; returns the MXCSR value to hand to :func:`flush_end`."""
    def codegen(context, builder, sig, args):
        if not _X86:
            return context.get_constant(types.int64, 0)
        stmxcsr, ldmxcsr = _mxcsr_functions(builder)
        i32, i8p = ir.IntType(32), ir.IntType(8).as_pointer()
        slot = cgutils.alloca_once(builder, i32)
        builder.call(stmxcsr, [builder.bitcast(slot, i8p)])
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(i32, FLUSH_BITS)), slot)
        builder.call(ldmxcsr, [builder.bitcast(slot, i8p)])
        return builder.zext(old, ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def flush_end(typingctx, old):
    """Restore the MXCSR value :func:`flush_begin` returned."""
    def codegen(context, builder, sig, args):
        if _X86:
            _, ldmxcsr = _mxcsr_functions(builder)
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            builder.call(ldmxcsr, [builder.bitcast(slot, ir.IntType(8).as_pointer())])
        return context.get_dummy_value()

    return types.none(types.int64), codegen
