"""The ``numba`` backend: convolution as compiled loop nests arranged for speed, and which of them runs.

The sums are those of :mod:`..plain`; the loops here compute them in layouts that keep the vector units busy:

* :mod:`.flat_rows`: every kernel tap a constant offset into a channel's flattened padded plane, strides by a
  polyphase split; the backward kernels on the same layout (the default layout).
* :mod:`.blocked`: the flat-rows layout at stride 1 with register-blocked tiles of explicit 512-bit vectors
  (:mod:`.simd`), where a plane fills its blocks.
* :mod:`.batch_last`: the batch innermost, for big batches (forward and grad_weight; grad_input as forward
  convolutions of grad_y, one per phase of the stride, :mod:`.adjoint`), with scratch buffers in :mod:`.workspace`.
* :mod:`.depthwise`: per-plane loops for ``groups == C_in == C_out``.

Pooling comes from :mod:`tinyconv.kernels.numba_pooling`. All loops use plain ints; shapes are runtime values, so
numba compiles once per dtype (float32 / float64), never per shape. Everything also runs with
``NUMBA_DISABLE_JIT=1`` (``prange`` becomes ``range``), slowly.
"""
from __future__ import annotations

import numpy as np
from numba import config as _numba_config

from ... import numba_pooling
from ...backend import Backend
from ...threads import ensure_thread_pool
from . import adjoint, batch_last, blocked, depthwise, flat_rows
from .workspace import clear_workspace

__all__ = ["forward", "grad_input", "grad_weight", "NumbaBackend", "backend", "jit_enabled", "clear_workspace",
           "BATCH_LAST_MIN_N", "BATCH_LAST_MIN_GARBAGE", "BATCH_LAST_MAX_POS", "is_depthwise", "uses_blocked",
           "uses_batch_last_forward",
           "grad_input_phases", "grad_input_runs_as_forward"]

BATCH_LAST_MIN_N = 32          # batch size from which the batch-last path is used
BATCH_LAST_MIN_GARBAGE = 0.2   # forward on larger outputs: only if more flat-rows positions are garbage
BATCH_LAST_MAX_POS = 784       # forward: batch-last whatever the garbage up to this many output positions (28x28)


def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias.  x: (N, C_in, H, W), w: (C_out, C_in/groups, kh, kw), bias: (C_out,)
    or None.  The bias is added where the output is written (no extra pass over y)."""
    dtype = x.dtype
    y = np.empty(args.out_shape, dtype=dtype)
    if y.size == 0:
        return y
    c_out, cg, kh, kw = w.shape
    bias = np.zeros(c_out, dtype=dtype) if bias is None else np.ascontiguousarray(bias)
    if is_depthwise(x.shape[1], c_out, cg, args.groups):
        ensure_thread_pool()
        depthwise.forward(np.ascontiguousarray(x), np.ascontiguousarray(w), bias, y, *_depthwise_args(
            x.shape[2:], y.shape[2:], args))
        return y
    if uses_blocked("forward", x.shape, w.shape, y.shape[2:], args):
        ensure_thread_pool()
        return blocked.forward(x, w, bias, args, y)
    if uses_batch_last_forward(x.shape, y.shape[2:], args):
        return batch_last.forward(x, w, bias, args, y)
    lay = flat_rows.Layout(x.shape[2], x.shape[3], args.padding, args.stride, args.dilation, args.kernel_hw)
    src = lay.flat_input(x)
    wf = np.ascontiguousarray(w).reshape(c_out, cg, kh * kw)
    npos = lay.npos(y.shape[2])
    ensure_thread_pool()
    flat_rows.forward_core(src, wf, bias, lay.offs, y, cg, c_out // args.groups, lay.row, npos)
    return y


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
    if is_depthwise(cg * args.groups, c_out, cg, args.groups):
        ensure_thread_pool()
        (dh, dw), (top, bottom, left, right) = args.dilation, args.padding
        if args.stride == (1, 1) and max(top, bottom) <= (kh - 1) * dh and max(left, right) <= (kw - 1) * dw:
            # the adjoint of a stride-1 depthwise conv: the forward loops on grad_y padded by (k - 1)*d - padding,
            # with the filters flipped (register-blocked there; the scatter below keeps its accumulators in memory)
            pt, pl = (kh - 1) * dh - top, (kw - 1) * dw - left
            hp = depthwise.padded_size(grad_y.shape[2], pt, h, 1, dh, kh)
            wp = depthwise.padded_size(grad_y.shape[3], pl, w_in, 1, dw, kw)
            depthwise.forward(np.ascontiguousarray(grad_y), np.ascontiguousarray(w[:, :, ::-1, ::-1]),
                              np.zeros(c_out, dtype=dtype), gx, 1, 1, dh, dw, pt, pl, hp, wp)
            return gx
        depthwise.grad_input(np.ascontiguousarray(grad_y), np.ascontiguousarray(w), gx,
                             *_depthwise_args((h, w_in), grad_y.shape[2:], args))
        return gx
    if uses_blocked("grad_input", gx.shape, w.shape, grad_y.shape[2:], args):
        ensure_thread_pool()
        return blocked.grad_input(grad_y, w, input_hw, args)
    phases = grad_input_phases(grad_y.shape, input_hw, args)
    if phases is not None:
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


def uses_blocked(op, x_shape, w_shape, out_hw, args) -> bool:
    """Whether ``op`` runs on the register-blocked kernels (:mod:`.blocked`): JIT on, a CPU with 512-bit vector
    registers (``blocked.ENABLED``), stride 1, not depthwise, at
    least ``blocked.MIN_BLOCK_USE`` of the computed positions are outputs and (forward, grad_input) two thirds of
    the tiles' output channels are used (a grad_input onto 1 channel, LeNet's conv1, batch 128: 1.1 vs 0.62 ms for the
    scatter; onto 6, conv2: 0.83 vs 0.84). grad_input also needs a padding of at most ``(k - 1) * dilation`` on
    every side (its grad_y is padded by the difference); grad_weight, from BATCH_LAST_MIN_N images, outputs of
    at least BATCH_LAST_MAX_POS positions (batch 128, 32->32 3x3 on 7x7: 2.7 vs 0.91 ms for the batch-last
    kernel; 1->6 5x5 on 28x28 0.42 vs 0.50; batch 32, 64->64 on 32x32 13.5 vs 19.1). ``x_shape``: the conv's
    input (for grad_input, grad_x's shape); ``out_hw``: its output size."""
    if not (jit_enabled() and blocked.ENABLED) or args.stride != (1, 1):
        return False
    c_out, cg, kh, kw = w_shape
    if is_depthwise(x_shape[1], c_out, cg, args.groups):
        return False
    (dh, dw), (top, bottom, left, right) = args.dilation, args.padding
    if op == "grad_input":
        if max(top, bottom) > (kh - 1) * dh or max(left, right) > (kw - 1) * dw or not _fills_tile(cg):
            return False
        # the kernel's output is grad_x, its planes grad_y padded to x's width plus the kernel's reach
        return blocked.block_use(x_shape[2:], x_shape[3] + (kw - 1) * dw) >= blocked.MIN_BLOCK_USE
    if op == "forward" and not _fills_tile(c_out // args.groups):
        return False
    if op == "grad_weight" and x_shape[0] >= BATCH_LAST_MIN_N and out_hw[0] * out_hw[1] < BATCH_LAST_MAX_POS:
        return False
    return blocked.block_use(out_hw, x_shape[3] + left + right) >= blocked.MIN_BLOCK_USE


def _fills_tile(channels) -> bool:
    """At least two thirds of the output channels a blocked forward computes (whole tiles) are real."""
    tc = blocked.tile_channels(channels)
    return 3 * channels >= 2 * (-(-channels // tc) * tc)


def uses_batch_last_forward(x_shape, out_hw, args) -> bool:
    """Whether :func:`forward` takes the batch-last path: a big batch, and an output of at most
    BATCH_LAST_MAX_POS positions or more than BATCH_LAST_MIN_GARBAGE of the flat-rows layout's positions garbage
    (batch 128, 2 threads: 16->16 3x3 on 14x14 0.8 vs 1.4 ms flat-rows; 64->64 3x3 on 32x32 at batch 32 the
    other way round, 24-31 vs 15-16 ms)."""
    if x_shape[0] < BATCH_LAST_MIN_N:
        return False
    if out_hw[0] * out_hw[1] <= BATCH_LAST_MAX_POS:
        return True
    lay = flat_rows.Layout(x_shape[2], x_shape[3], args.padding, args.stride, args.dilation, args.kernel_hw)
    return out_hw[0] * out_hw[1] < (1 - BATCH_LAST_MIN_GARBAGE) * lay.npos(out_hw[0])


def grad_input_phases(gy_shape, input_hw, args):
    """The phases (:mod:`.adjoint`) in which :func:`grad_input` runs as forward convolutions of grad_y, when
    each of those takes the batch-last path (register-blocked; 64->64 3x3 on 4x4, batch 128, 2 threads: 1.5 vs
    5.7 ms for the flat-rows grad_input; 32->32 on 7x7 1.1 vs 2.0 ms), else None."""
    if gy_shape[0] < BATCH_LAST_MIN_N:
        return None
    (sh, sw), (dh, dw), (kh, kw) = args.stride, args.dilation, args.kernel_hw
    top, _, left, _ = args.padding
    rows = adjoint.axis_phases(input_hw[0], gy_shape[2], kh, sh, dh, top)
    cols = adjoint.axis_phases(input_hw[1], gy_shape[3], kw, sw, dw, left)
    for ph in rows:
        for pw in cols:
            if ph.taps and pw.taps:
                a = adjoint.phase_args(ph, pw, gy_shape[0], 1, 1)
                gy_hw = (gy_shape[2] - ph.crop_lo - ph.crop_hi, gy_shape[3] - pw.crop_lo - pw.crop_hi)
                if not uses_batch_last_forward((gy_shape[0], 1) + gy_hw, a.out_shape[2:], a):
                    return None
    return rows, cols


def grad_input_runs_as_forward(gy_shape, input_hw, args) -> bool:
    """Whether :func:`grad_input` runs as batch-last forward convolutions (see grad_input_phases)."""
    return grad_input_phases(gy_shape, input_hw, args) is not None


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
    if is_depthwise(x.shape[1], c_out, cg, args.groups):
        gw = np.empty(w_shape, dtype=dtype)
        ensure_thread_pool()
        depthwise.grad_weight(np.ascontiguousarray(x), np.ascontiguousarray(grad_y), gw,
                              *_depthwise_args(x.shape[2:], grad_y.shape[2:], args))
        return gw
    if uses_blocked("grad_weight", x.shape, w_shape, grad_y.shape[2:], args):
        ensure_thread_pool()
        return blocked.grad_weight(x, grad_y, args, w_shape)
    if x.shape[0] >= BATCH_LAST_MIN_N:
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


def is_depthwise(c_in, c_out, cg, groups) -> bool:
    """One filter per channel (groups == C_in == C_out, more than one group): :mod:`.depthwise`'s kernels."""
    return groups > 1 and cg == 1 and c_out == groups == c_in


def _depthwise_args(input_hw, out_hw, args):
    """(sh, sw, dh, dw, top, left, Hp, Wp) of :mod:`.depthwise`'s kernels."""
    (sh, sw), (dh, dw), (kh, kw) = args.stride, args.dilation, args.kernel_hw
    top, _, left, _ = args.padding
    hp = depthwise.padded_size(input_hw[0], top, out_hw[0], sh, dh, kh)
    wp = depthwise.padded_size(input_hw[1], left, out_hw[1], sw, dw, kw)
    return sh, sw, dh, dw, top, left, hp, wp


def jit_enabled() -> bool:
    """False when numba runs in pure-Python mode (``NUMBA_DISABLE_JIT=1``)."""
    return not _numba_config.DISABLE_JIT


class NumbaBackend(Backend):
    """Compiled, parallel loop nests for convolution and pooling (:mod:`.numba_pooling`)."""

    name = "numba"
    pool_name = "numba"
    forward = staticmethod(forward)
    grad_input = staticmethod(grad_input)
    grad_weight = staticmethod(grad_weight)
    max_pool = staticmethod(numba_pooling.max_pool)
    max_pool_backward = staticmethod(numba_pooling.max_pool_backward)
    avg_pool = staticmethod(numba_pooling.avg_pool)
    avg_pool_backward = staticmethod(numba_pooling.avg_pool_backward)


backend = NumbaBackend()
