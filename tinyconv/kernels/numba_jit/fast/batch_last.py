"""The numba backend's second layout: batch-last (forward and grad_weight for big batches).

For a large batch of small images, the flat-rows layout wastes
the garbage columns (a large share of the positions of a 10x10 output of a 5x5 kernel) and its short planes
leave little for the vector loops.  The batch-last layout puts the batch
innermost: x_t[c, h, w, n].  Output row i of ALL images, (j, n) for j < Wo, is then ONE
contiguous vector of Wo*N values, and with a stride of 1 along the width so is the input it
reads through tap (a, b): row i*sh + a*dh of x_t[c], starting at column b*dw. A width stride
sw splits each padded row into sw phases (x_t[c, h, w % sw, w // sw, n]): output column j of
tap (a, b) reads phase (b*dw) % sw at column j + (b*dw) // sw, contiguous in (j, n) again.
Every tap is a constant offset, with no garbage, and the loops run over Wo*N
contiguous values (thousands, for LeNet at batch 128):

* forward:     y_t[o, i, :]  = sum_{c, t} w[o, c, t] * x_t[c].flat[i*sh*Wp*N + off[t]:][:Wo*N]
               (4 output channels x 4 taps a pass: 4 loads of x feed 16 multiply-adds)
* grad_weight: gw[o, c, a, b] = sum_i dot(gy_t[o, i, :], x_t[c].flat[...row i, tap (a, b)...])
               (4 output channels x 4 taps a pass: 8 loads feed 16 dot products)

When they run is decided in :mod:`tinyconv.kernels.choose` (from ``BATCH_LAST_MIN_N`` images; the forward
on small outputs, or where much of the flat-rows layout would be garbage: the transpose of x is the price).
grad_input runs as forward convolutions of grad_y (:mod:`.adjoint`).

These kernels let LLVM fuse multiply-adds (fastmath "contract"), and the dot products of
grad_weight may be reassociated ("reassoc") so that they vectorise with several partial
sums; neither flag assumes anything about NaN or infinity.  Results are deterministic
and do not depend on the number of threads (each task owns its outputs).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...threads import ensure_thread_pool
from .flat_rows import taps_1, taps_2, weight_task  # (numba's cache does not see edits in there: clear it)
from .workspace import scratch_zeros

__all__ = ["forward", "grad_weight", "batch_last_copy"]

_JIT = dict(cache=True, fastmath=False)
_JIT_FMA = dict(cache=True, fastmath={"contract"})
_JIT_DOT = dict(cache=True, fastmath={"contract", "reassoc"})


@njit(parallel=True, **_JIT)
def _to_batch_last(x, xt, top, left):
    """xt[c, h + top, (w + left) % sw, (w + left) // sw, n] = x[n, c, h, w] for xt (C, Hp, sw, Wq, N), pre-zeroed
    (the padding)."""
    n_img, c_in, h, w = x.shape
    sw = xt.shape[2]
    for task in prange(c_in * h):
        c = task // h
        i = task % h
        for j in range(w):
            d = xt[c, i + top, (j + left) % sw, (j + left) // sw]
            for n in range(n_img):
                d[n] = x[n, c, i, j]


@njit(**_JIT_FMA)
def _taps_4(acc0, acc1, acc2, acc3, xs, w0, w1, w2, w3, offs, m):
    """acc_k[p] += sum_t w_k[t] * xs[p + offs[t]] for k < 4, p < m (8 taps a pass, then 4, then 1: each pass
    loads and stores the 4 accumulators once, so more taps a pass means fewer memory operations per
    multiply-add)."""
    ntap = offs.shape[0]
    t = 0
    while t + 8 <= ntap:
        x0 = xs[offs[t]:]
        x1 = xs[offs[t + 1]:]
        x2 = xs[offs[t + 2]:]
        x3 = xs[offs[t + 3]:]
        x4 = xs[offs[t + 4]:]
        x5 = xs[offs[t + 5]:]
        x6 = xs[offs[t + 6]:]
        x7 = xs[offs[t + 7]:]
        a0, a1, a2, a3, a4, a5, a6, a7 = w0[t], w0[t + 1], w0[t + 2], w0[t + 3], w0[t + 4], w0[t + 5], w0[t + 6], w0[t + 7]
        b0, b1, b2, b3, b4, b5, b6, b7 = w1[t], w1[t + 1], w1[t + 2], w1[t + 3], w1[t + 4], w1[t + 5], w1[t + 6], w1[t + 7]
        c0, c1, c2, c3, c4, c5, c6, c7 = w2[t], w2[t + 1], w2[t + 2], w2[t + 3], w2[t + 4], w2[t + 5], w2[t + 6], w2[t + 7]
        d0, d1, d2, d3, d4, d5, d6, d7 = w3[t], w3[t + 1], w3[t + 2], w3[t + 3], w3[t + 4], w3[t + 5], w3[t + 6], w3[t + 7]
        for p in range(m):
            v0 = x0[p]
            v1 = x1[p]
            v2 = x2[p]
            v3 = x3[p]
            v4 = x4[p]
            v5 = x5[p]
            v6 = x6[p]
            v7 = x7[p]
            acc0[p] += (a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3) + (a4 * v4 + a5 * v5 + a6 * v6 + a7 * v7)
            acc1[p] += (b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3) + (b4 * v4 + b5 * v5 + b6 * v6 + b7 * v7)
            acc2[p] += (c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3) + (c4 * v4 + c5 * v5 + c6 * v6 + c7 * v7)
            acc3[p] += (d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3) + (d4 * v4 + d5 * v5 + d6 * v6 + d7 * v7)
        t += 8
    while t + 4 <= ntap:
        x0 = xs[offs[t]:]
        x1 = xs[offs[t + 1]:]
        x2 = xs[offs[t + 2]:]
        x3 = xs[offs[t + 3]:]
        a0, a1, a2, a3 = w0[t], w0[t + 1], w0[t + 2], w0[t + 3]
        b0, b1, b2, b3 = w1[t], w1[t + 1], w1[t + 2], w1[t + 3]
        c0, c1, c2, c3 = w2[t], w2[t + 1], w2[t + 2], w2[t + 3]
        d0, d1, d2, d3 = w3[t], w3[t + 1], w3[t + 2], w3[t + 3]
        for p in range(m):
            v0 = x0[p]
            v1 = x1[p]
            v2 = x2[p]
            v3 = x3[p]
            acc0[p] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            acc1[p] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
            acc2[p] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
            acc3[p] += d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3
        t += 4
    while t < ntap:
        x0 = xs[offs[t]:]
        a0, b0, c0, d0 = w0[t], w1[t], w2[t], w3[t]
        for p in range(m):
            v0 = x0[p]
            acc0[p] += a0 * v0
            acc1[p] += b0 * v0
            acc2[p] += c0 * v0
            acc3[p] += d0 * v0
        t += 1


@njit(**_JIT)
def _real_tap_rows(i, sh, dh, kh, top, h):
    """The kernel rows [a0, a1) that put output row i on a real input row: (i*sh + a*dh) - top in [0, h).
    The others read padding only (zeros), so their taps are skipped."""
    base = i * sh - top
    a0 = 0 if base >= 0 else (-base + dh - 1) // dh
    a1 = 0 if h - base <= 0 else (h - 1 - base) // dh + 1
    if a1 > kh:
        a1 = kh
    if a0 > a1:
        a0 = a1
    return a0, a1


@njit(parallel=True, **_JIT_FMA)
def _forward_rows_bl(xf, wf, bias, offs, row_step, y, kh, sh, dh, top, h):
    """y[n, o, i, j] = bias[o] + sum_{c, t} wf[o, c, t] * xf[g*cg + c, i*row_step + offs[t] + j*N + n].

    xf: (C_in, Hp*Wp*N) batch-last padded input; wf: (C_out, cg, T); offs: (T,) tap offsets
    within a channel, kernel-row major (kh rows of T/kh taps); y: (N, C_out, Ho, Wo), written directly
    (no batch-last output copy). Kernel rows that read only padding rows of the input (the first
    ``top`` and the rows from ``top + h``) are skipped (sh, dh: the height stride and dilation).
    One task = one output row i of up to 4 output channels of one group."""
    n_img, c_out, ho, wo = y.shape
    m = wo * n_img
    cg = wf.shape[1]
    groups = xf.shape[0] // cg
    og = c_out // groups
    nblk = (og + 3) // 4
    kw = offs.shape[0] // kh
    nblocks = groups * nblk
    for task in prange(nblocks * ho):
        # blocks vary fastest: numba hands each thread a contiguous range of tasks, and with the rows outside
        # a 6-channel layer's two blocks (4 + 2 channels) would go one to each thread, two thirds of the work
        # to one of them
        blk = task % nblocks
        i = task // nblocks
        g = blk // nblk
        o0 = g * og + 4 * (blk % nblk)
        nb = min(4, (g + 1) * og - o0)
        acc = np.zeros((4, m), dtype=y.dtype)
        a0, a1 = _real_tap_rows(i, sh, dh, kh, top, h)
        t0 = a0 * kw
        t1 = a1 * kw
        ro = offs[t0:t1]
        for c in range(cg):
            xs = xf[g * cg + c, i * row_step:]
            if nb == 4:
                _taps_4(acc[0], acc[1], acc[2], acc[3], xs, wf[o0, c, t0:t1], wf[o0 + 1, c, t0:t1],
                        wf[o0 + 2, c, t0:t1], wf[o0 + 3, c, t0:t1], ro, m)
            else:
                if nb >= 2:
                    taps_2(acc[0], acc[1], xs, wf[o0, c, t0:t1], wf[o0 + 1, c, t0:t1], ro, m)
                if nb != 2:
                    taps_1(acc[nb - 1], xs, wf[o0 + nb - 1, c, t0:t1], ro, m)
        for k in range(nb):
            ak = acc[k]
            bk = bias[o0 + k]
            for n in range(n_img):
                yo = y[n, o0 + k, i]
                for j in range(wo):
                    yo[j] = ak[j * n_img + n] + bk


@njit(**_JIT_DOT)
def _dots_4x4(g0, g1, g2, g3, x0, x1, x2, x3, m, zero):
    """The 16 dot products dot(g_k[:m], x_l[:m]), k, l < 4 (row-major)."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for p in range(m):
        a0 = g0[p]
        a1 = g1[p]
        a2 = g2[p]
        a3 = g3[p]
        v0 = x0[p]
        v1 = x1[p]
        v2 = x2[p]
        v3 = x3[p]
        s00 += a0 * v0
        s01 += a0 * v1
        s02 += a0 * v2
        s03 += a0 * v3
        s10 += a1 * v0
        s11 += a1 * v1
        s12 += a1 * v2
        s13 += a1 * v3
        s20 += a2 * v0
        s21 += a2 * v1
        s22 += a2 * v2
        s23 += a2 * v3
        s30 += a3 * v0
        s31 += a3 * v1
        s32 += a3 * v2
        s33 += a3 * v3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@njit(**_JIT_DOT)
def _dots_4x1(g0, g1, g2, g3, x0, m, zero):
    """The 4 dot products dot(g_k[:m], x0[:m]), k < 4."""
    s0 = s1 = s2 = s3 = zero
    for p in range(m):
        v0 = x0[p]
        s0 += g0[p] * v0
        s1 += g1[p] * v0
        s2 += g2[p] * v0
        s3 += g3[p] * v0
    return s0, s1, s2, s3


@njit(parallel=True, **_JIT_DOT)
def _grad_weight_rows_bl(xf, gyf, offs, row_step, rows, part, zero, kh, sh, dh, top, h):
    """part[k, o, c, t] = sum over the output rows i of chunk k of
    dot(gyf[o, i, :], xf[g*cg + c, i*row_step + offs[t]:][:Wo*N]).

    xf: (C_in, Hp*Wp*N) batch-last padded input; gyf: (C_out, Ho, Wo*N) batch-last
    grad_output; offs: (T,) tap offsets within a channel; ``rows``: output rows per chunk;
    part: (chunks, C_out, cg, T); ``zero``: 0 in the dtype. Kernel rows that read only padding rows
    for an output row are skipped, as in :func:`_forward_rows_bl`.
    One task = (4 output channels of one group, input channel, chunk of rows): 16 dot
    products (4 channels x 4 taps) a pass. A group with fewer than 4 channels left repeats
    its last one and drops the copies; partial sums are added in float64 across rows."""
    c_out, ho, m = gyf.shape
    nchunk, _, cg, ntap = part.shape
    groups = xf.shape[0] // cg
    og = c_out // groups
    nblk = (og + 3) // 4
    kw = ntap // kh
    for task in prange(groups * nblk * cg * nchunk):
        g, o0, c, chunk = weight_task(task, cg, nchunk, nblk, og, 4)
        last = (g + 1) * og - 1
        o1 = min(o0 + 1, last)
        o2 = min(o0 + 2, last)
        o3 = min(o0 + 3, last)
        acc = np.zeros((4, ntap), dtype=np.float64)
        for i in range(chunk * rows, min(ho, (chunk + 1) * rows)):
            g0 = gyf[o0, i]
            g1 = gyf[o1, i]
            g2 = gyf[o2, i]
            g3 = gyf[o3, i]
            xs = xf[g * cg + c, i * row_step:]
            a0, a1 = _real_tap_rows(i, sh, dh, kh, top, h)
            t = a0 * kw
            t_end = a1 * kw
            while t + 4 <= t_end:
                s = _dots_4x4(g0, g1, g2, g3, xs[offs[t]:], xs[offs[t + 1]:],
                              xs[offs[t + 2]:], xs[offs[t + 3]:], m, zero)
                for k in range(16):
                    acc[k // 4, t + k % 4] += s[k]
                t += 4
            while t < t_end:
                s1 = _dots_4x1(g0, g1, g2, g3, xs[offs[t]:], m, zero)
                for k in range(4):
                    acc[k, t] += s1[k]
                t += 1
        for k in range(min(4, last - o0 + 1)):
            for t in range(ntap):
                part[chunk, o0 + k, c, t] = acc[k, t]


def batch_last_copy(x, padding, role, sw=1):
    """x (N, C, H, W) -> zero-padded batch-last copy (C, Hp, sw, Wq, N) in a scratch buffer, its padded
    columns split into ``sw`` phases of Wq = ceil(Wp / sw) (``role`` tells apart two copies alive at once)."""
    n, c, h, w = x.shape
    top, bottom, left, right = padding
    wq = -(-(w + left + right) // sw)
    # the key holds everything that decides which elements are padding (two inputs of different
    # sizes can have the same padded shape)
    xt = scratch_zeros((c, h + top + bottom, sw, wq, n), x.dtype, (role, x.shape, tuple(padding), sw))
    _to_batch_last(np.ascontiguousarray(x), xt, top, left)
    return xt


def _tap_offsets_bl(kernel_hw, dilation, sw, wq, n):
    """Offsets of the taps (a, b) within one channel of the flat batch-last buffer (C, Hp, sw, Wq, N): (kh, kw).
    Column j*sw + b*dw of a row is phase (b*dw) % sw, column j + (b*dw) // sw of that phase, so output column j
    of tap (a, b) is at a constant offset from j*N in the row."""
    (kh, kw), (dh, dw) = kernel_hw, dilation
    row = sw * wq * n
    return np.array([[a * dh * row + ((b * dw) % sw) * wq * n + ((b * dw) // sw) * n for b in range(kw)]
                     for a in range(kh)], dtype=np.int64)


def forward(x, w, bias, args, y):
    c_out, cg, kh, kw = w.shape
    n = x.shape[0]
    sw = args.stride[1]
    xt = batch_last_copy(x, args.padding, "x", sw)
    c_in, hp, _, wq, _ = xt.shape
    offs = _tap_offsets_bl(args.kernel_hw, args.dilation, sw, wq, n).reshape(-1)
    wf = np.ascontiguousarray(w).reshape(c_out, cg, kh * kw)
    ensure_thread_pool()
    _forward_rows_bl(xt.reshape(c_in, -1), wf, bias, offs, args.stride[0] * sw * wq * n, y, kh, args.stride[0],
                     args.dilation[0], args.padding[0], x.shape[2])
    return y


def grad_weight(x, grad_y, args, w_shape):
    c_out, cg, kh, kw = w_shape
    n = x.shape[0]
    sw = args.stride[1]
    xt = batch_last_copy(x, args.padding, "x", sw)
    c_in, hp, _, wq, _ = xt.shape
    gyt = batch_last_copy(grad_y, (0, 0, 0, 0), "grad_y")
    ho = gyt.shape[1]
    offs = _tap_offsets_bl(args.kernel_hw, args.dilation, sw, wq, n).reshape(-1)
    # enough tasks for every thread: split the output rows into chunks when there are few
    # (channel block, input channel) pairs; a fixed split, so results do not depend on threads
    pairs = args.groups * -(-(c_out // args.groups) // 4) * cg
    nchunk = max(1, min(ho, -(-16 // pairs)))
    rows = -(-ho // nchunk)
    nchunk = -(-ho // rows)
    part = np.empty((nchunk, c_out, cg, kh * kw), dtype=x.dtype)
    ensure_thread_pool()
    _grad_weight_rows_bl(xt.reshape(c_in, -1), gyt.reshape(c_out, ho, -1), offs,
                         args.stride[0] * sw * wq * n, rows, part, np.zeros(1, dtype=x.dtype)[0], kh,
                         args.stride[0], args.dilation[0], args.padding[0], x.shape[2])
    gw = part[0] if nchunk == 1 else part.sum(axis=0)
    return gw.reshape(w_shape)
