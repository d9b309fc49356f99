"""Explicit 64-byte vectors (16 float32 or 8 float64 lanes) inside numba kernels: load, store, splat, fma, sum, and
a vector of 2x2 max-pooling windows (``max_2x2``).

Why: numba hands its loops to LLVM's auto-vectoriser, which on Intel's AVX-512 CPUs keeps to 256-bit registers
("prefer-vector-width=256") and, in a loop nest, keeps accumulators in memory: every pass over a row of outputs
loads and stores them again. A register-blocked kernel (a tile of outputs held in registers while the sum over
channels and taps runs) needs the tile to be named values, which these vectors are: LLVM's ``<16 x float>``
(``<8 x double>``), one 512-bit register with AVX-512, two with AVX2 (the code is the same; LLVM splits it).

These are numba intrinsics, usable only inside ``@njit`` code; with ``NUMBA_DISABLE_JIT=1`` the same names are
NumPy functions on short arrays (at the end of this file), so the kernels still run, slowly. They do no bounds
checks: a caller guarantees that ``i .. i + lanes - 1`` is inside the array (``max_2x2``: the spans its docstring
names). Arrays are 1-D and contiguous.
"""
from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["Vector", "lanes", "load", "store", "splat", "fma", "hsum", "max_2x2", "vector_unit",
           "compiled_vector_unit"]

VECTOR_BYTES = 64


# A multiply-add of two 64-byte vectors; the assembly LLVM makes of it says what registers hold a Vector.
_PROBE_IR = """
define void @probe(<16 x float>* %p) {
  %a = load <16 x float>, <16 x float>* %p
  %b = call <16 x float> @llvm.fma.v16f32(<16 x float> %a, <16 x float> %a, <16 x float> %a)
  store <16 x float> %b, <16 x float>* %p
  ret void
}
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
"""


@functools.cache
def vector_unit(cpu_name: str, features: str, triple: str) -> str:
    """What a :class:`Vector` is in registers when LLVM compiles for this CPU name, feature string and target
    triple (numba's ``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES`` and the process's triple): ``"avx512"`` (one of 32
    512-bit registers, fused multiply-adds), ``"avx2"`` (two of 16 256-bit registers, fused multiply-adds) or
    ``"generic"`` (anything else: narrower registers, multiply-adds as library calls, another architecture).

    Asked from LLVM itself, from the assembly of one vector multiply-add, not from a table of CPU names: a name
    with its default features (``haswell``, ``skylake-avx512``) and an explicit feature list (``+avx2,+fma``, or
    the host's with ``+avx512f``) answer alike, whatever CPU the process runs on."""
    from llvmlite import binding

    machine = binding.Target.from_triple(triple).create_target_machine(cpu=cpu_name, features=features, opt=2)
    module = binding.parse_assembly(_PROBE_IR)
    module.triple = machine.triple
    asm = machine.emit_assembly(module)
    if "vfmadd" not in asm:
        return "generic"
    return "avx512" if "%zmm" in asm else "avx2" if "%ymm" in asm else "generic"


def compiled_vector_unit() -> str:
    """:func:`vector_unit` of the CPU numba compiles for: its target's triple, CPU name and features (the host's
    unless ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say otherwise; note that numba passes the host's features
    with a ``NUMBA_CPU_NAME`` unless ``NUMBA_CPU_FEATURES`` is set too)."""
    from numba.core.registry import cpu_target

    triple, cpu_name, features = cpu_target.target_context.codegen().magic_tuple()
    return vector_unit(cpu_name, features, triple)


class Vector(types.Type):
    """A vector of ``VECTOR_BYTES // itemsize`` lanes of a float dtype (float32: 16, float64: 8)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _check_array(arr, what):
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(arr.dtype, types.Float)):
        raise TypeError(f"{what} takes a 1-D float array, got {arr}")


def _pointer(context, builder, arrty, arr, idxty, idx):
    """Address of arr[idx], cast to a pointer to a vector."""
    ary = context.make_array(arrty)(context, builder, arr)
    idx = context.cast(builder, idx, idxty, types.intp)
    vec = context.get_value_type(Vector(arrty.dtype))
    return builder.bitcast(builder.gep(ary.data, [idx]), vec.as_pointer())


@intrinsic
def lanes(typingctx, arr):
    """The number of lanes of a vector of ``arr``'s dtype (a compile-time constant)."""
    _check_array(arr, "lanes")

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, Vector(sig.args[0].dtype).lanes)

    return types.intp(arr), codegen


@intrinsic
def load(typingctx, arr, i):
    """arr[i : i + lanes] as a vector (unaligned load)."""
    _check_array(arr, "load")

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load(ptr, align=sig.args[0].dtype.bitwidth // 8)

    return Vector(arr.dtype)(arr, i), codegen


@intrinsic
def store(typingctx, arr, i, v):
    """arr[i : i + lanes] = v (unaligned store)."""
    _check_array(arr, "store")
    if not isinstance(v, Vector) or v.dtype != arr.dtype:
        raise TypeError(f"store of {v} into an array of {arr.dtype}")

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        builder.store(args[2], ptr, align=sig.args[0].dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, i, v), codegen


@intrinsic
def splat(typingctx, dtype_of, x):
    """A vector of ``dtype_of``'s dtype (an array or a scalar of it) with x in every lane."""
    dtype = dtype_of.dtype if isinstance(dtype_of, types.Array) else dtype_of
    if not isinstance(dtype, types.Float):
        raise TypeError(f"splat needs a float dtype, got {dtype}")
    vt = Vector(dtype)

    def codegen(context, builder, sig, args):
        val = context.cast(builder, args[1], sig.args[1], dtype)
        vec = context.get_value_type(vt)
        one = builder.insert_element(ir.Constant(vec, ir.Undefined), val, ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), vt.lanes), [0] * vt.lanes)
        return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), mask)

    return vt(dtype_of, x), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c, lane by lane, rounded once (a fused multiply-add)."""
    if not (isinstance(a, Vector) and a == b == c):
        raise TypeError(f"fma of {a}, {b}, {c}: three vectors of one type")

    def codegen(context, builder, sig, args):
        vec = args[0].type
        name = f"llvm.fma.v{vec.count}f{sig.args[0].dtype.bitwidth}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]), name)
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def hsum(typingctx, v):
    """The sum of v's lanes, as a fixed tree: the upper half added to the lower half until one lane is left (the
    same order on every CPU, so results do not depend on the machine)."""
    if not isinstance(v, Vector):
        raise TypeError(f"hsum of {v}: a vector")

    def codegen(context, builder, sig, args):
        val, n = args[0], sig.args[0].lanes
        while n > 1:
            n //= 2
            lo = builder.shuffle_vector(val, val, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n))))
            hi = builder.shuffle_vector(val, val, ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                              list(range(n, 2 * n))))
            val = builder.fadd(lo, hi)
        return builder.extract_element(val, ir.Constant(ir.IntType(32), 0))

    return v.dtype(v), codegen


@intrinsic
def max_2x2(typingctx, src, s, row, bias, y, a, f, base, width):
    """``lanes`` 2x2 max-pooling windows side by side, pooled into ``y[f : f + lanes]`` and ``a[f : f + lanes]``.

    Window ``l`` holds ``src[s + 2l]``, ``src[s + 2l + 1]``, ``src[s + row + 2l]`` and ``src[s + row + 2l + 1]``
    (each plus ``bias``, a scalar, unless it is None); ``y[f + l]`` is its first maximum, or its last NaN (the max
    pooling's rule), and ``a[f + l]`` where that was: ``base + 2l`` plus 0, 1, ``width`` or ``width + 1`` (an int32
    array: max_pool2d's index into a plane ``width`` wide, for ``base`` the index of the first window's first
    value). Reads ``2*lanes`` values from ``s`` and from ``s + row``; writes whole vectors."""
    _check_array(src, "max_2x2")
    _check_array(y, "max_2x2")
    if y.dtype != src.dtype or not (isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.int32):
        raise TypeError(f"max_2x2 writes {src.dtype} maxima and int32 indices, got {y} and {a}")
    with_bias = not isinstance(bias, (types.NoneType, types.Omitted))

    def codegen(context, builder, sig, args):
        src_t, s_t, row_t, bias_t, y_t, a_t, f_t, base_t, width_t = sig.args
        src_a, s_a, row_a, bias_a, y_a, a_a, f_a, base_a, width_a = args
        n = Vector(src_t.dtype).lanes
        fvec = context.get_value_type(Vector(src_t.dtype))
        i32 = ir.IntType(32)
        ivec = ir.VectorType(i32, n)
        align = src_t.dtype.bitwidth // 8

        def broadcast(value, vec):
            one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), ir.Constant(ivec, [0] * n))

        s_i = context.cast(builder, s_a, s_t, types.intp)
        values = []
        for first in (s_i, builder.add(s_i, context.cast(builder, row_a, row_t, types.intp))):  # top, bottom row
            lo = builder.load(_pointer(context, builder, src_t, src_a, types.intp, first), align=align)
            nxt = builder.add(first, context.get_constant(types.intp, n))
            hi = builder.load(_pointer(context, builder, src_t, src_a, types.intp, nxt), align=align)
            for parity in (0, 1):  # even and odd values of the two vectors: the windows' left and right columns
                v = builder.shuffle_vector(lo, hi, ir.Constant(ivec, [2 * k + parity for k in range(n)]))
                if with_bias:
                    v = builder.fadd(v, broadcast(context.cast(builder, bias_a, bias_t, src_t.dtype), fvec))
                values.append(v)
        width = builder.trunc(context.cast(builder, width_a, width_t, types.int64), i32)
        offsets = (ir.Constant(i32, 1), width, builder.add(width, ir.Constant(i32, 1)))
        best, offset = values[0], ir.Constant(ivec, [0] * n)
        for v, off in zip(values[1:], offsets):  # take v where it is above the best so far, or NaN
            take = builder.or_(builder.fcmp_ordered(">", v, best), builder.fcmp_unordered("uno", v, v))
            best = builder.select(take, v, best)
            offset = builder.select(take, broadcast(off, ivec), offset)
        base = builder.trunc(context.cast(builder, base_a, base_t, types.int64), i32)
        index = builder.add(builder.add(broadcast(base, ivec), ir.Constant(ivec, [2 * k for k in range(n)])), offset)
        builder.store(best, _pointer(context, builder, y_t, y_a, f_t, f_a), align=align)
        ary = context.make_array(a_t)(context, builder, a_a)
        at = builder.gep(ary.data, [context.cast(builder, f_a, f_t, types.intp)])
        builder.store(index, builder.bitcast(at, ivec.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(src, s, row, bias, y, a, f, base, width), codegen

if config.DISABLE_JIT:  # pure Python: the same operations on NumPy arrays of `lanes` elements

    def lanes(arr):  # noqa: F811
        return VECTOR_BYTES // arr.itemsize

    def load(arr, i):  # noqa: F811
        return arr[i:i + lanes(arr)].copy()

    def store(arr, i, v):  # noqa: F811
        arr[i:i + len(v)] = v

    def splat(dtype_of, x):  # noqa: F811
        dtype = np.asarray(dtype_of).dtype
        return np.full(VECTOR_BYTES // dtype.itemsize, x, dtype=dtype)

    def fma(a, b, c):  # noqa: F811
        return a * b + c

    def hsum(v):  # noqa: F811
        while len(v) > 1:
            v = v[:len(v) // 2] + v[len(v) // 2:]
        return v[0]

    def max_2x2(src, s, row, bias, y, a, f, base, width):  # noqa: F811
        n = lanes(src)
        values = [src[s + row * (k // 2) + k % 2:][:2 * n:2] for k in range(4)]
        if bias is not None:
            values = [v + bias for v in values]
        best, offset = values[0].copy(), np.zeros(n, dtype=np.int32)
        for v, off in zip(values[1:], (1, width, width + 1)):
            take = (v > best) | np.isnan(v)
            best[take], offset[take] = v[take], off
        y[f:f + n], a[f:f + n] = best, base + 2 * np.arange(n, dtype=np.int32) + offset
