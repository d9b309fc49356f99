"""The ``numba`` backend: convolution as compiled loop nests arranged for speed.

The sums are those of :mod:`..plain`; the loops here compute them in layouts that keep the vector units busy:

* :mod:`.flat_rows`: every kernel tap a constant offset into a channel's flattened padded plane, strides by a
  polyphase split; the backward kernels on the same layout (the default layout).
* :mod:`.blocked`: the flat-rows layout at stride 1 with register-blocked tiles of explicit 64-byte vectors
  (:mod:`.simd`), sized for the CPU's registers (AVX-512 or AVX2), where a plane fills its blocks;
  :mod:`.blocked_batch_last`: the same tiles on batch-last planes, for small planes in small batches.
* :mod:`.batch_last`: the batch innermost, for big batches (forward and grad_weight; grad_input as forward
  convolutions of grad_y, one per phase of the stride, :mod:`.adjoint`), with scratch buffers in :mod:`.workspace`.
* :mod:`.depthwise`: per-plane loops for ``groups == C_in == C_out``.

Which of them runs for a shape is decided in :mod:`tinyconv.kernels.choose` (:func:`~tinyconv.kernels.choose.
numba_layout`); the functions below ask it and run the answer.

Pooling comes from :mod:`tinyconv.kernels.numba_pooling`. All loops use plain ints; shapes are runtime values, so
numba compiles once per dtype (float32 / float64), never per shape. Everything also runs with
``NUMBA_DISABLE_JIT=1`` (``prange`` becomes ``range``), slowly.
"""
from __future__ import annotations

import numpy as np

from ... import choose, numba_pooling
from ...backend import Backend
from ...pooling import is_fast_2x2
from ...threads import ensure_thread_pool
from . import adjoint, batch_last, blocked, blocked_batch_last, depthwise, flat_rows
from .workspace import clear_workspace

__all__ = ["forward", "grad_input", "grad_weight", "max_pool", "NumbaBackend", "backend", "clear_workspace"]


def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias.  x: (N, C_in, H, W), w: (C_out, C_in/groups, kh, kw), bias: (C_out,)
    or None.  The bias is added where the output is written (no extra pass over y)."""
    dtype = x.dtype
    y = np.empty(args.out_shape, dtype=dtype)
    if y.size == 0:
        return y
    c_out, cg, kh, kw = w.shape
    bias = np.zeros(c_out, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    layout = choose.numba_layout("forward", x.shape, w.shape, y.shape[2:], args)
    if layout == "depthwise":
        ensure_thread_pool()
        depthwise.forward(np.ascontiguousarray(x), np.ascontiguousarray(w), bias, y, *_depthwise_args(
            x.shape[2:], y.shape[2:], args))
        return y
    if layout in ("blocked", "blocked_batch_last"):
        ensure_thread_pool()
        kernels = blocked if layout == "blocked" else blocked_batch_last
        return kernels.forward(x, w, bias, args, y, choose.BLOCKED_TILES)
    if layout == "batch_last":
        return batch_last.forward(x, w, bias, args, y)
    lay = flat_rows.Layout(x.shape[2], x.shape[3], args.padding, args.stride, args.dilation, args.kernel_hw)
    src = lay.flat_input(x)
    wf = np.ascontiguousarray(w).reshape(c_out, cg, kh * kw)
    npos = lay.npos(y.shape[2])
    ensure_thread_pool()
    flat_rows.forward_core(src, wf, bias, lay.offs, y, cg, c_out // args.groups, lay.row, npos)
    return y


def forward_max_pool(x, w, args, bias, pool_args):
    """``(y, argmax)`` of the max pooling ``pool_args`` of conv2d(x, w) + bias in one pass, where the conv runs on
    the register tiles (:mod:`.blocked`) and the pooling is 2x2 / stride 2 without padding; else None."""
    ho, wo = args.out_shape[2], args.out_shape[3]
    if not is_fast_2x2(pool_args, args.out_shape) or ho * wo >= 2**31:  # (int32 indices, as numba's pooling)
        return None
    if choose.numba_layout("forward", x.shape, w.shape, (ho, wo), args) != "blocked":
        return None
    # the bias in x's dtype, as forward adds it: the pooled values are then forward's bit for bit
    bias = np.zeros(w.shape[0], dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    ensure_thread_pool()
    return blocked.forward_max_pool(x, w, bias, args, choose.BLOCKED_TILES)


def grad_input(grad_y, w, input_hw, args):
    """grad_x of conv2d: the exact adjoint of :func:`forward` for an input of size
    ``input_hw`` (which may exceed the smallest one, as for output_padding)."""
    h, w_in = input_hw
    n, c_out = grad_y.shape[0], grad_y.shape[1]
    c_out_w, cg, kh, kw = w.shape
    dtype = grad_y.dtype
    gx = np.empty((n, cg * args.groups, h, w_in), dtype=dtype)
    if gx.size == 0:
        return gx
    layout, phases = choose.numba_grad_input_layout(gx.shape, w.shape, grad_y.shape[2:], args)
    if layout in ("depthwise", "depthwise_as_forward"):
        return _depthwise_grad_input(grad_y, w, gx, args, as_forward=layout == "depthwise_as_forward")
    if layout in ("blocked", "blocked_batch_last"):
        ensure_thread_pool()
        kernels = blocked if layout == "blocked" else blocked_batch_last
        return kernels.grad_input(grad_y, w, input_hw, args, choose.BLOCKED_TILES)
    if layout == "phases":
        return _grad_input_by_phases(grad_y, w, input_hw, args, phases)
    lay = flat_rows.Layout(h, w_in, args.padding, args.stride, args.dilation, args.kernel_hw)
    gyf = lay.flat_grad(grad_y)
    og = c_out // args.groups
    # wt[g*cg + c, o, t] = w[g*og + o, c, t]
    wt = np.ascontiguousarray(
        np.asarray(w).reshape(args.groups, og, cg, kh * kw).transpose(0, 2, 1, 3)
    ).reshape(args.groups * cg, og, kh * kw)
    ensure_thread_pool()
    flat_rows.grad_input_core(gyf, wt, lay.offs, gx, cg, lay.rowpart, lay.colpart, lay.unit_stride,
                              lay.top, lay.left, lay.wp, lay.length, gyf.shape[2])
    return gx


def _depthwise_grad_input(grad_y, w, gx, args, as_forward):
    """grad_x of a depthwise convolution into ``gx``: at stride 1 (``as_forward``), the forward loops on grad_y
    padded by (k - 1)*d - padding with the filters flipped (register-blocked there); else the per-plane scatter."""
    (kh, kw), (dh, dw), (top, _, left, _) = args.kernel_hw, args.dilation, args.padding
    h, w_in = gx.shape[2], gx.shape[3]
    ensure_thread_pool()
    if as_forward:
        pt, pl = (kh - 1) * dh - top, (kw - 1) * dw - left
        hp = depthwise.padded_size(grad_y.shape[2], pt, h, 1, dh, kh)
        wp = depthwise.padded_size(grad_y.shape[3], pl, w_in, 1, dw, kw)
        depthwise.forward(np.ascontiguousarray(grad_y), np.ascontiguousarray(w[:, :, ::-1, ::-1]),
                          np.zeros(grad_y.shape[1], dtype=gx.dtype), gx, 1, 1, dh, dw, pt, pl, hp, wp)
    else:
        depthwise.grad_input(np.ascontiguousarray(grad_y), np.ascontiguousarray(w), gx,
                             *_depthwise_args((h, w_in), grad_y.shape[2:], args))
    return gx


def _grad_input_by_phases(grad_y, w, input_hw, args, phases):
    """grad_x, phase by phase, each a forward convolution of (a crop of) grad_y (:mod:`.adjoint`)."""
    rows, cols = phases
    n, groups = grad_y.shape[0], args.groups
    c_in = w.shape[1] * groups
    (sh, sw), ho, wo = args.stride, grad_y.shape[2], grad_y.shape[3]
    single = len(rows) * len(cols) == 1 and rows[0].taps and cols[0].taps  # the forward's output is grad_x
    gx = None if single else np.empty((n, c_in) + tuple(input_hw), dtype=grad_y.dtype)
    for ph in rows:
        for pw in cols:
            if not (ph.taps and pw.taps):
                gx[:, :, ph.first::sh, pw.first::sw] = 0
                continue
            gy = np.ascontiguousarray(grad_y[:, :, ph.crop_lo:ho - ph.crop_hi, pw.crop_lo:wo - pw.crop_hi])
            part = forward(gy, adjoint.phase_weight(w, ph, pw, groups), adjoint.phase_args(ph, pw, n, c_in, groups))
            if gx is None:
                return part
            gx[:, :, ph.first::sh, pw.first::sw] = part
    return gx


def grad_weight(x, grad_y, args):
    """grad_w of conv2d: (C_out, C_in/groups, kh, kw)."""
    c_out = grad_y.shape[1]
    w_shape = (c_out, x.shape[1] // args.groups) + args.kernel_hw
    dtype = x.dtype
    _, cg, kh, kw = w_shape
    if x.shape[0] == 0:
        return np.zeros(w_shape, dtype=dtype)
    layout = choose.numba_layout("grad_weight", x.shape, w_shape, grad_y.shape[2:], args)
    if layout == "depthwise":
        gw = np.empty(w_shape, dtype=dtype)
        ensure_thread_pool()
        depthwise.grad_weight(np.ascontiguousarray(x), np.ascontiguousarray(grad_y), gw,
                              *_depthwise_args(x.shape[2:], grad_y.shape[2:], args))
        return gw
    if layout in ("blocked", "blocked_batch_last"):
        ensure_thread_pool()
        kernels = blocked if layout == "blocked" else blocked_batch_last
        return kernels.grad_weight(x, grad_y, args, w_shape, choose.BLOCKED_TILES)
    if layout == "batch_last":
        return batch_last.grad_weight(x, grad_y, args, w_shape)
    lay = flat_rows.Layout(x.shape[2], x.shape[3], args.padding, args.stride, args.dilation, args.kernel_hw)
    src = lay.flat_input(x)
    gyf = lay.flat_grad(grad_y)
    ntap = kh * kw
    block = flat_rows.weight_block(ntap)
    pair_tasks = args.groups * -(-(c_out // args.groups) // 2) * cg
    while pair_tasks * -(-gyf.shape[2] // block) < 16 and block > 64:  # keep both cores busy
        block = flat_rows.round_up(block // 2)
    nblk = -(-gyf.shape[2] // block)
    part = np.empty((c_out, cg, nblk, ntap), dtype=dtype)
    ensure_thread_pool()
    flat_rows.grad_weight_core(src, gyf, lay.offs, part, cg, c_out // args.groups, block)
    gw = part[:, :, 0].copy() if nblk == 1 else part.sum(axis=2)
    return gw.reshape(w_shape)


def max_pool(x, args):
    """Max pooling (:func:`.numba_pooling.max_pool`) in the loops :func:`~tinyconv.kernels.choose.max_pool_flat`
    and :func:`~tinyconv.kernels.choose.max_pool_planes_last` pick."""
    return numba_pooling.max_pool(x, args, flat=choose.max_pool_flat(args.out_shape[3]),
                                  planes_last=choose.max_pool_planes_last(x.shape[2:]))


def _depthwise_args(input_hw, out_hw, args):
    """(sh, sw, dh, dw, top, left, Hp, Wp) of :mod:`.depthwise`'s kernels."""
    (sh, sw), (dh, dw), (kh, kw) = args.stride, args.dilation, args.kernel_hw
    top, _, left, _ = args.padding
    hp = depthwise.padded_size(input_hw[0], top, out_hw[0], sh, dh, kh)
    wp = depthwise.padded_size(input_hw[1], left, out_hw[1], sw, dw, kw)
    return sh, sw, dh, dw, top, left, hp, wp


class NumbaBackend(Backend):
    """Compiled, parallel loop nests for convolution and pooling (:mod:`.numba_pooling`)."""

    name = "numba"
    pool_name = "numba"
    forward = staticmethod(forward)
    forward_max_pool = staticmethod(forward_max_pool)
    grad_input = staticmethod(grad_input)
    grad_weight = staticmethod(grad_weight)
    max_pool = staticmethod(max_pool)
    max_pool_backward = staticmethod(numba_pooling.max_pool_backward)
    avg_pool = staticmethod(numba_pooling.avg_pool)
    avg_pool_backward = staticmethod(numba_pooling.avg_pool_backward)


backend = NumbaBackend()
