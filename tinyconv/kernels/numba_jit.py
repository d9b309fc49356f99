"""Convolution as compiled loop nests (numba ``@njit(parallel=True)``).

Layout trick: "flat padded rows" (a.k.a. implicit GEMM on the padded width)
---------------------------------------------------------------------------
The padded input plane of one channel, ``x_pad[c]`` of shape ``(Hp, Wp)``, is stored as a
flat vector.  For stride 1, output pixel ``(i, j)`` and kernel tap ``(a, b)`` read
``x_pad[c].flat[i*Wp + j + (a*dh*Wp + b*dw)]``: every tap is a *constant offset*
``off[t]`` into the flat plane.  So with ``p = i*Wp + j`` the whole output plane is::

    acc[p] = sum_c sum_t w[o, c, t] * x_flat[c, p + off[t]]      for p in 0 .. (Ho-1)*Wp + Wo - 1

one long contiguous loop per tap, which the compiler vectorises.  The positions with
``j >= Wo`` are garbage that is simply not copied out (a waste of ``Wp/Wo``).
Several taps (4) and two output channels are handled per pass over ``acc`` so that each
load of ``x`` feeds 8 multiply-adds and ``acc`` is loaded/stored once per 4 taps.

Strides are handled by the *polyphase* decomposition: the padded input is split into
``sh*sw`` phase planes ``x_ph[r, s][i', j'] = x_pad[i'*sh + r, j'*sw + s]`` laid one after
another.  A tap ``(a, b)`` with ``a*dh = qa*sh + r``, ``b*dw = qb*sw + s`` reads phase
``(r, s)`` at ``(i + qa, j + qb)``, again a constant offset into the flat buffer (with the
phase width ``Wph = ceil(Wp / sw)`` as the row stride).  Stride 1 is the one-phase case.

The backward kernels reuse the layout:

* ``grad_input``: the adjoint, scattered: ``gx_flat[c, p + off[t]] += w[o, c, t] * gy_flat[o, p]``
  (``gy_flat`` has the phase row stride and zeros in the garbage columns), parallel over
  (image, pair of input channels) so that no two threads write the same plane; the result
  is then read back through the phase map and cropped.
* ``grad_weight``: ``gw[o, c, t] = sum_n sum_p gy_flat[n, o, p] * x_flat[n, c, p + off[t]]``.
  Without ``fastmath`` the compiler may not reorder a dot product, so each task (output
  channel, input channel, block of positions) accumulates the *elementwise* products in a
  small ``(T, block)`` buffer (vectorised over ``p``, 4 images per pass) and sums it once at
  the end; partial sums per block are added in the wrapper.  Race-free, deterministic.

For big batches (``N >= BATCH_LAST_MIN_N``) with a unit width stride, the forward (when the
flat-rows layout would waste many garbage positions) and grad_weight use a second layout,
batch-last, with register-blocked kernels: see the "batch-last layout" section below.

All loops use plain ints; shapes are runtime values, so numba compiles once per dtype
(float32 / float64), never per shape.  Everything also runs with ``NUMBA_DISABLE_JIT=1``
(``prange`` becomes ``range``), slowly.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from numba import config as _numba_config
from numba import njit, prange

from . import numba_pooling
from .backend import Backend
from .threads import ensure_thread_pool

__all__ = ["forward", "grad_input", "grad_weight", "NumbaBackend", "backend", "jit_enabled"]

_JIT = dict(cache=True, fastmath=False)

# Flat position counts are rounded up to a multiple of _VEC so that the vectorised inner
# loops never fall into their scalar remainder (which, for LeNet's 136-position planes,
# cost as much as the vector part); buffers get _VEC elements of zero slack at the end.
_VEC = 16


def _round_up(n, m=_VEC):
    return -(-n // m) * m


# ------------------------------------------------------------------ layout helpers

class _Layout:
    """Polyphase flat layout of the padded input for one conv configuration.

    Channel plane ``c`` of the flat buffer holds the ``sh*sw`` phase planes (each
    ``hph x wph``) one after another, then ``wph + _VEC`` elements of zero slack so that
    loops over the rounded-up position count ``npos(ho) = round_up(ho * wph)`` stay in
    bounds (what they read there lands in discarded garbage positions)."""

    def __init__(self, h, w, padding, stride, dilation, kernel_hw):
        top, bottom, left, right = padding
        sh, sw = stride
        dh, dw = dilation
        kh, kw = kernel_hw
        self.h, self.w = h, w
        self.stride = stride
        self.hp, self.wp = h + top + bottom, w + left + right
        self.hph, self.wph = -(-self.hp // sh), -(-self.wp // sw)
        self.lph = self.hph * self.wph
        self.length = sh * sw * self.lph + self.wph + _VEC  # flat length of one channel
        self.row = self.wph  # row stride of the flat output / grad_output
        offs = []
        for a in range(kh):
            qa, r = divmod(a * dh, sh)
            for b in range(kw):
                qb, s = divmod(b * dw, sw)
                offs.append((r * sw + s) * self.lph + qa * self.wph + qb)
        self.offs = np.array(offs, dtype=np.int64)
        # where input pixel (i, j) lives in the flat buffer: rowpart[i] + colpart[j]
        hpi = np.arange(h) + top
        wpj = np.arange(w) + left
        self.rowpart = ((hpi % sh) * sw * self.lph + (hpi // sh) * self.wph).astype(np.int64)
        self.colpart = ((wpj % sw) * self.lph + wpj // sw).astype(np.int64)
        self.unit_stride = sh == 1 and sw == 1
        self.top, self.left = top, left

    def npos(self, ho):
        """Flat output positions computed per plane (rows of width ``row``, rounded up)."""
        return _round_up(ho * self.row)

    def flat_input(self, x):
        """Zero-padded, phase-split copy of x: (N, C, length)."""
        n, c = x.shape[0], x.shape[1]
        sh, sw = self.stride
        flat = np.zeros((n, c, self.length), dtype=x.dtype)
        phases = flat[:, :, :sh * sw * self.lph].reshape(n, c, sh, sw, self.hph, self.wph)
        for r in range(sh):
            i0 = (r - self.top) % sh  # first input row in phase r
            if i0 >= self.h:
                continue
            ii = (i0 + self.top) // sh
            nr = len(range(i0, self.h, sh))
            for s_ in range(sw):
                j0 = (s_ - self.left) % sw
                if j0 >= self.w:
                    continue
                jj = (j0 + self.left) // sw
                nc = len(range(j0, self.w, sw))
                phases[:, :, r, s_, ii:ii + nr, jj:jj + nc] = x[:, :, i0::sh, j0::sw]
        return flat

    def flat_grad(self, grad_y):
        """grad_y laid out with row stride ``row`` and zeros elsewhere: (N, C_out, npos)."""
        n, o, ho, wo = grad_y.shape
        flat = np.zeros((n, o, self.npos(ho)), dtype=grad_y.dtype)
        flat[:, :, :ho * self.row].reshape(n, o, ho, self.row)[:, :, :, :wo] = grad_y
        return flat


# ------------------------------------------------------------------ forward

@njit(**_JIT)
def _taps_2(acc0, acc1, xc, w0, w1, offs, npos):
    """acc0[p] += sum_t w0[t] * xc[p + offs[t]]; the same for acc1 with w1 (4 taps a pass)."""
    ntap = offs.shape[0]
    t = 0
    while t + 4 <= ntap:
        a0, a1, a2, a3 = w0[t], w0[t + 1], w0[t + 2], w0[t + 3]
        b0, b1, b2, b3 = w1[t], w1[t + 1], w1[t + 2], w1[t + 3]
        x0 = xc[offs[t]:]
        x1 = xc[offs[t + 1]:]
        x2 = xc[offs[t + 2]:]
        x3 = xc[offs[t + 3]:]
        for p in range(npos):
            v0 = x0[p]
            v1 = x1[p]
            v2 = x2[p]
            v3 = x3[p]
            acc0[p] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            acc1[p] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        t += 4
    while t < ntap:
        a0 = w0[t]
        b0 = w1[t]
        x0 = xc[offs[t]:]
        for p in range(npos):
            v0 = x0[p]
            acc0[p] += a0 * v0
            acc1[p] += b0 * v0
        t += 1


@njit(**_JIT)
def _taps_1(acc0, xc, w0, offs, npos):
    """acc0[p] += sum_t w0[t] * xc[p + offs[t]] (4 taps a pass)."""
    ntap = offs.shape[0]
    t = 0
    while t + 4 <= ntap:
        a0, a1, a2, a3 = w0[t], w0[t + 1], w0[t + 2], w0[t + 3]
        x0 = xc[offs[t]:]
        x1 = xc[offs[t + 1]:]
        x2 = xc[offs[t + 2]:]
        x3 = xc[offs[t + 3]:]
        for p in range(npos):
            acc0[p] += a0 * x0[p] + a1 * x1[p] + a2 * x2[p] + a3 * x3[p]
        t += 4
    while t < ntap:
        a0 = w0[t]
        x0 = xc[offs[t]:]
        for p in range(npos):
            acc0[p] += a0 * x0[p]
        t += 1


@njit(parallel=True, **_JIT)
def _forward_core(src, wf, bias, offs, out, cg, og, row, npos):
    """out[n, o, i, j] = bias[o] + sum_c sum_t wf[o, c, t] * src[n, g*cg + c, i*row + j + offs[t]].

    src: (N, C_in, L) flat padded input; wf: (C_out, cg, T); out: (N, C_out, Ho, Wo).
    One task = one image and a pair of output channels of one group."""
    n_img, c_out, ho, wo = out.shape
    groups = c_out // og
    npairs = (og + 1) // 2
    for task in prange(n_img * groups * npairs):
        n = task // (groups * npairs)
        rest = task % (groups * npairs)
        g = rest // npairs
        o0 = g * og + 2 * (rest % npairs)
        acc0 = np.zeros(npos, dtype=src.dtype)
        if o0 + 1 < (g + 1) * og:
            acc1 = np.zeros(npos, dtype=src.dtype)
            for c in range(cg):
                _taps_2(acc0, acc1, src[n, g * cg + c], wf[o0, c], wf[o0 + 1, c], offs, npos)
            b0, b1 = bias[o0], bias[o0 + 1]
            for i in range(ho):
                for j in range(wo):
                    out[n, o0, i, j] = acc0[i * row + j] + b0
                    out[n, o0 + 1, i, j] = acc1[i * row + j] + b1
        else:
            for c in range(cg):
                _taps_1(acc0, src[n, g * cg + c], wf[o0, c], offs, npos)
            b0 = bias[o0]
            for i in range(ho):
                for j in range(wo):
                    out[n, o0, i, j] = acc0[i * row + j] + b0


# ------------------------------------------------------------------ grad_input

@njit(**_JIT)
def _scatter_2(acc0, acc1, gys, wt0, wt1, offs, npos):
    """acc0[p + offs[t]] += sum_o wt0[o, t] * gys[o, p]; the same for acc1 (4 o's a pass)."""
    n_o = gys.shape[0]
    ntap = offs.shape[0]
    o = 0
    while o + 4 <= n_o:
        g0 = gys[o]
        g1 = gys[o + 1]
        g2 = gys[o + 2]
        g3 = gys[o + 3]
        for t in range(ntap):
            a0, a1, a2, a3 = wt0[o, t], wt0[o + 1, t], wt0[o + 2, t], wt0[o + 3, t]
            b0, b1, b2, b3 = wt1[o, t], wt1[o + 1, t], wt1[o + 2, t], wt1[o + 3, t]
            d0 = acc0[offs[t]:]
            d1 = acc1[offs[t]:]
            for p in range(npos):
                v0 = g0[p]
                v1 = g1[p]
                v2 = g2[p]
                v3 = g3[p]
                d0[p] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                d1[p] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        o += 4
    while o < n_o:
        g0 = gys[o]
        for t in range(ntap):
            a0 = wt0[o, t]
            b0 = wt1[o, t]
            d0 = acc0[offs[t]:]
            d1 = acc1[offs[t]:]
            for p in range(npos):
                v0 = g0[p]
                d0[p] += a0 * v0
                d1[p] += b0 * v0
        o += 1


@njit(**_JIT)
def _scatter_1(acc0, gys, wt0, offs, npos):
    """acc0[p + offs[t]] += sum_o wt0[o, t] * gys[o, p] (4 o's a pass)."""
    n_o = gys.shape[0]
    ntap = offs.shape[0]
    o = 0
    while o + 4 <= n_o:
        g0 = gys[o]
        g1 = gys[o + 1]
        g2 = gys[o + 2]
        g3 = gys[o + 3]
        for t in range(ntap):
            a0, a1, a2, a3 = wt0[o, t], wt0[o + 1, t], wt0[o + 2, t], wt0[o + 3, t]
            d0 = acc0[offs[t]:]
            for p in range(npos):
                d0[p] += a0 * g0[p] + a1 * g1[p] + a2 * g2[p] + a3 * g3[p]
        o += 4
    while o < n_o:
        g0 = gys[o]
        for t in range(ntap):
            a0 = wt0[o, t]
            d0 = acc0[offs[t]:]
            for p in range(npos):
                d0[p] += a0 * g0[p]
        o += 1


@njit(parallel=True, **_JIT)
def _grad_input_core(gyf, wt, offs, out, cg, rowpart, colpart, unit_stride, top, left, wp,
                     length, npos):
    """out[n, c] = crop(phase-unmap(sum_o sum_t scatter(wt[c, o, t] * gyf[n, o]))).

    gyf: (N, C_out, npos) flat grad_output (zero garbage columns); wt: (C_in, og, T)
    (weights of c's group, transposed); out: (N, C_in, H, W).
    One task = one image and a pair of input channels of one group."""
    n_img, c_in, h, w = out.shape
    og = wt.shape[1]
    cg_ = cg
    groups = c_in // cg_
    npairs = (cg_ + 1) // 2
    for task in prange(n_img * groups * npairs):
        n = task // (groups * npairs)
        rest = task % (groups * npairs)
        g = rest // npairs
        c0 = g * cg_ + 2 * (rest % npairs)
        gys = gyf[n, g * og:(g + 1) * og]
        acc0 = np.zeros(length, dtype=gyf.dtype)
        two = c0 + 1 < (g + 1) * cg_
        if two:
            acc1 = np.zeros(length, dtype=gyf.dtype)
            _scatter_2(acc0, acc1, gys, wt[c0], wt[c0 + 1], offs, npos)
        else:
            acc1 = acc0
            _scatter_1(acc0, gys, wt[c0], offs, npos)
        for i in range(h):
            if unit_stride:
                base = (i + top) * wp + left
                for j in range(w):
                    out[n, c0, i, j] = acc0[base + j]
                if two:
                    for j in range(w):
                        out[n, c0 + 1, i, j] = acc1[base + j]
            else:
                rp = rowpart[i]
                for j in range(w):
                    out[n, c0, i, j] = acc0[rp + colpart[j]]
                if two:
                    for j in range(w):
                        out[n, c0 + 1, i, j] = acc1[rp + colpart[j]]


# ------------------------------------------------------------------ grad_weight

@njit(**_JIT)
def _wsum_1(tmp, gyf, src, o, ci, p0, m, offs):
    """tmp[t, p] += sum_n gyf[n, o, p0 + p] * src[n, ci, p0 + p + offs[t]] (4 images a pass)."""
    n_img = src.shape[0]
    ntap = offs.shape[0]
    n = 0
    while n + 4 <= n_img:
        g0 = gyf[n, o, p0:]
        g1 = gyf[n + 1, o, p0:]
        g2 = gyf[n + 2, o, p0:]
        g3 = gyf[n + 3, o, p0:]
        s0 = src[n, ci]
        s1 = src[n + 1, ci]
        s2 = src[n + 2, ci]
        s3 = src[n + 3, ci]
        for t in range(ntap):
            q = offs[t] + p0
            x0 = s0[q:]
            x1 = s1[q:]
            x2 = s2[q:]
            x3 = s3[q:]
            tt = tmp[t]
            for p in range(m):
                tt[p] += g0[p] * x0[p] + g1[p] * x1[p] + g2[p] * x2[p] + g3[p] * x3[p]
        n += 4
    while n < n_img:
        g0 = gyf[n, o, p0:]
        s0 = src[n, ci]
        for t in range(ntap):
            x0 = s0[offs[t] + p0:]
            tt = tmp[t]
            for p in range(m):
                tt[p] += g0[p] * x0[p]
        n += 1


@njit(**_JIT)
def _wsum_2(tmpa, tmpb, gyf, src, o, ci, p0, m, offs):
    """:func:`_wsum_1` for output channels o (into tmpa) and o + 1 (into tmpb) at once, so
    that every load of the input feeds both."""
    n_img = src.shape[0]
    ntap = offs.shape[0]
    n = 0
    while n + 4 <= n_img:
        a0 = gyf[n, o, p0:]
        a1 = gyf[n + 1, o, p0:]
        a2 = gyf[n + 2, o, p0:]
        a3 = gyf[n + 3, o, p0:]
        b0 = gyf[n, o + 1, p0:]
        b1 = gyf[n + 1, o + 1, p0:]
        b2 = gyf[n + 2, o + 1, p0:]
        b3 = gyf[n + 3, o + 1, p0:]
        s0 = src[n, ci]
        s1 = src[n + 1, ci]
        s2 = src[n + 2, ci]
        s3 = src[n + 3, ci]
        for t in range(ntap):
            q = offs[t] + p0
            x0 = s0[q:]
            x1 = s1[q:]
            x2 = s2[q:]
            x3 = s3[q:]
            ta = tmpa[t]
            tb = tmpb[t]
            for p in range(m):
                v0 = x0[p]
                v1 = x1[p]
                v2 = x2[p]
                v3 = x3[p]
                ta[p] += a0[p] * v0 + a1[p] * v1 + a2[p] * v2 + a3[p] * v3
                tb[p] += b0[p] * v0 + b1[p] * v1 + b2[p] * v2 + b3[p] * v3
        n += 4
    while n < n_img:
        a0 = gyf[n, o, p0:]
        b0 = gyf[n, o + 1, p0:]
        s0 = src[n, ci]
        for t in range(ntap):
            x0 = s0[offs[t] + p0:]
            ta = tmpa[t]
            tb = tmpb[t]
            for p in range(m):
                v0 = x0[p]
                ta[p] += a0[p] * v0
                tb[p] += b0[p] * v0
        n += 1


@njit(**_JIT)
def _row_sums(tmp, part, o, c, blk):
    for t in range(tmp.shape[0]):
        s = 0.0
        for p in range(tmp.shape[1]):
            s += tmp[t, p]
        part[o, c, blk, t] = s


@njit(**_JIT)
def _weight_task(task, cg, nsplit, nblk, og, width):
    """Decode a grad_weight task index. Tasks run over (block of ``width`` output channels of
    a group, input channel of the group, split of the positions); ``nblk`` blocks per group of
    ``og`` channels. Returns (group, first output channel, input channel, split)."""
    blk = task // (cg * nsplit)
    rest = task % (cg * nsplit)
    g = blk // nblk
    return g, g * og + width * (blk % nblk), rest // nsplit, rest % nsplit


@njit(parallel=True, **_JIT)
def _grad_weight_core(src, gyf, offs, part, cg, og, block):
    """part[o, c, blk, t] = sum_n sum_{p in blk} gyf[n, o, p] * src[n, g*cg + c, p + offs[t]].

    src: (N, C_in, L) flat padded input; gyf: (N, C_out, npos) flat grad_output with zero
    garbage columns.  One task = (pair of output channels of one group, input channel,
    block of positions); each task owns its slots of ``part``."""
    c_out = gyf.shape[1]
    npos = gyf.shape[2]
    ntap = offs.shape[0]
    nblk = (npos + block - 1) // block
    groups = c_out // og
    npairs = (og + 1) // 2
    for task in prange(groups * npairs * cg * nblk):
        g, o, c, blk = _weight_task(task, cg, nblk, npairs, og, 2)
        ci = g * cg + c
        p0 = blk * block
        m = min(npos, p0 + block) - p0
        tmpa = np.zeros((ntap, m), dtype=src.dtype)
        if o + 1 < (g + 1) * og:
            tmpb = np.zeros((ntap, m), dtype=src.dtype)
            _wsum_2(tmpa, tmpb, gyf, src, o, ci, p0, m, offs)
            _row_sums(tmpb, part, o + 1, c, blk)
        else:
            _wsum_1(tmpa, gyf, src, o, ci, p0, m, offs)
        _row_sums(tmpa, part, o, c, blk)


# ------------------------------------------------------------------ batch-last layout
#
# For a large batch (LeNet trains with 128 images of 14x14), the flat-rows layout wastes
# the garbage columns (29% of the positions of LeNet's conv2) and its short planes (144
# positions) leave little for the vector loops.  The batch-last layout puts the batch
# innermost: x_t[c, h, w, n].  With a stride of 1 along the width, output row i of ALL
# images, (j, n) for j < Wo, is then ONE contiguous vector of Wo*N values, and so is the
# input it reads through tap (a, b): row i*sh + a*dh of x_t[c], starting at column b*dw.
# Every tap is a constant offset again, with no garbage, and the loops run over 1280
# (conv2) to 3584 (conv1) contiguous values:
#
# * forward:     y_t[o, i, :]  = sum_{c, t} w[o, c, t] * x_t[c].flat[i*sh*Wp*N + off[t]:][:Wo*N]
#                (4 output channels x 4 taps a pass: 4 loads of x feed 16 multiply-adds)
# * grad_weight: gw[o, c, a, b] = sum_i dot(gy_t[o, i, :], x_t[c].flat[...row i, tap (a, b)...])
#                (4 output channels x 4 taps a pass: 8 loads feed 16 dot products)
#
# grad_weight uses it when N >= BATCH_LAST_MIN_N and the width stride is 1; forward when in
# addition more than 20% of the flat-rows positions would be garbage (the transpose of x
# is the price: LeNet's conv2 gains, conv1 with 12% garbage does not).  grad_input keeps
# the flat-rows scatter.
#
# These kernels let LLVM fuse multiply-adds (fastmath "contract"), and the dot products of
# grad_weight may be reassociated ("reassoc") so that they vectorise with several partial
# sums; neither flag assumes anything about NaN or infinity.  Results are deterministic
# and do not depend on the number of threads (each task owns its outputs).

BATCH_LAST_MIN_N = 32          # batch size from which the batch-last path is used
BATCH_LAST_MIN_GARBAGE = 0.2   # forward: only if more flat-rows positions are garbage

_JIT_FMA = dict(cache=True, fastmath={"contract"})
_JIT_DOT = dict(cache=True, fastmath={"contract", "reassoc"})


@njit(parallel=True, **_JIT)
def _to_batch_last(x, xt, top, left):
    """xt[c, h + top, w + left, n] = x[n, c, h, w]  (xt pre-zeroed: the padding)."""
    n_img, c_in, h, w = x.shape
    for task in prange(c_in * h):
        c = task // h
        i = task % h
        for j in range(w):
            d = xt[c, i + top, j + left]
            for n in range(n_img):
                d[n] = x[n, c, i, j]


@njit(**_JIT_FMA)
def _taps_4(acc0, acc1, acc2, acc3, xs, w0, w1, w2, w3, offs, m):
    """acc_k[p] += sum_t w_k[t] * xs[p + offs[t]] for k < 4, p < m (4 taps a pass)."""
    ntap = offs.shape[0]
    t = 0
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


@njit(parallel=True, **_JIT_FMA)
def _forward_rows_bl(xf, wf, bias, offs, row_step, y):
    """y[n, o, i, j] = bias[o] + sum_{c, t} wf[o, c, t] * xf[g*cg + c, i*row_step + offs[t] + j*N + n].

    xf: (C_in, Hp*Wp*N) batch-last padded input; wf: (C_out, cg, T); offs: (T,) tap offsets
    within a channel; y: (N, C_out, Ho, Wo), written directly (no batch-last output copy).
    One task = one output row i of up to 4 output channels of one group."""
    n_img, c_out, ho, wo = y.shape
    m = wo * n_img
    cg = wf.shape[1]
    groups = xf.shape[0] // cg
    og = c_out // groups
    nblk = (og + 3) // 4
    for task in prange(groups * nblk * ho):
        blk = task // ho
        i = task % ho
        g = blk // nblk
        o0 = g * og + 4 * (blk % nblk)
        nb = min(4, (g + 1) * og - o0)
        acc = np.zeros((4, m), dtype=y.dtype)
        for c in range(cg):
            xs = xf[g * cg + c, i * row_step:]
            if nb == 4:
                _taps_4(acc[0], acc[1], acc[2], acc[3], xs, wf[o0, c], wf[o0 + 1, c],
                        wf[o0 + 2, c], wf[o0 + 3, c], offs, m)
            else:
                if nb >= 2:
                    _taps_2(acc[0], acc[1], xs, wf[o0, c], wf[o0 + 1, c], offs, m)
                if nb != 2:
                    _taps_1(acc[nb - 1], xs, wf[o0 + nb - 1, c], offs, m)
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
def _grad_weight_rows_bl(xf, gyf, offs, row_step, rows, part, zero):
    """part[k, o, c, t] = sum over the output rows i of chunk k of
    dot(gyf[o, i, :], xf[g*cg + c, i*row_step + offs[t]:][:Wo*N]).

    xf: (C_in, Hp*Wp*N) batch-last padded input; gyf: (C_out, Ho, Wo*N) batch-last
    grad_output; offs: (T,) tap offsets within a channel; ``rows``: output rows per chunk;
    part: (chunks, C_out, cg, T); ``zero``: 0 in the dtype.
    One task = (4 output channels of one group, input channel, chunk of rows): 16 dot
    products (4 channels x 4 taps) a pass. A group with fewer than 4 channels left repeats
    its last one and drops the copies; partial sums are added in float64 across rows."""
    c_out, ho, m = gyf.shape
    nchunk, _, cg, ntap = part.shape
    groups = xf.shape[0] // cg
    og = c_out // groups
    nblk = (og + 3) // 4
    for task in prange(groups * nblk * cg * nchunk):
        g, o0, c, chunk = _weight_task(task, cg, nchunk, nblk, og, 4)
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
            t = 0
            while t + 4 <= ntap:
                s = _dots_4x4(g0, g1, g2, g3, xs[offs[t]:], xs[offs[t + 1]:],
                              xs[offs[t + 2]:], xs[offs[t + 3]:], m, zero)
                for k in range(16):
                    acc[k // 4, t + k % 4] += s[k]
                t += 4
            while t < ntap:
                s1 = _dots_4x1(g0, g1, g2, g3, xs[offs[t]:], m, zero)
                for k in range(4):
                    acc[k, t] += s1[k]
                t += 1
        for k in range(min(4, last - o0 + 1)):
            for t in range(ntap):
                part[chunk, o0 + k, c, t] = acc[k, t]


# Scratch buffers of the batch-last copies, kept between calls. Why: a fresh multi-megabyte
# array is fresh memory from the OS whenever glibc has just given the last one back, and the
# page faults of touching it cost as much as the kernel (LeNet conv1's grad_weight: 0.6 ms
# with a reused buffer, 1.1-1.2 ms in processes whose heap got trimmed between calls).
# Per thread, least recently used first out, at most WORKSPACE_MAX_BYTES in all.
WORKSPACE_MAX_BYTES = 256 * 2**20
_workspace = threading.local()


def _scratch_zeros(shape, dtype, key):
    """A zero-initialised array of ``shape`` that later calls with the same ``key`` get back.
    Callers only ever write the part of it that ``key`` identifies (the interior of a padded
    copy), so what must stay zero stays zero. Never returned to users."""
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = OrderedDict()
    key = (tuple(shape), np.dtype(dtype).str, key)
    buf = cache.pop(key, None)
    if buf is None:
        buf = np.zeros(shape, dtype=dtype)
    cache[key] = buf
    while sum(b.nbytes for b in cache.values()) > WORKSPACE_MAX_BYTES and len(cache) > 1:
        cache.popitem(last=False)
    return buf


def clear_workspace():
    """Drop this thread's cached scratch buffers (see WORKSPACE_MAX_BYTES)."""
    _workspace.buffers = OrderedDict()


def _batch_last(x, padding, role):
    """x (N, C, H, W) -> zero-padded batch-last copy (C, Hp, Wp, N) in a scratch buffer
    (``role`` tells apart two copies alive at once)."""
    n, c, h, w = x.shape
    top, bottom, left, right = padding
    # the key holds everything that decides which elements are padding (two inputs of different
    # sizes can have the same padded shape)
    xt = _scratch_zeros((c, h + top + bottom, w + left + right, n), x.dtype,
                        (role, x.shape, tuple(padding)))
    _to_batch_last(np.ascontiguousarray(x), xt, top, left)
    return xt


def _tap_offsets_bl(kernel_hw, dilation, wp, n):
    """Offsets of the taps (a, b) within one channel of the flat batch-last buffer: (kh, kw)."""
    (kh, kw), (dh, dw) = kernel_hw, dilation
    return np.array([[(a * dh * wp + b * dw) * n for b in range(kw)] for a in range(kh)],
                    dtype=np.int64)


def _forward_bl(x, w, bias, args, y):
    c_out, cg, kh, kw = w.shape
    n = x.shape[0]
    xt = _batch_last(x, args.padding, "x")
    c_in, hp, wp, _ = xt.shape
    offs = _tap_offsets_bl(args.kernel_hw, args.dilation, wp, n).reshape(-1)
    wf = np.ascontiguousarray(w).reshape(c_out, cg, kh * kw)
    ensure_thread_pool()
    _forward_rows_bl(xt.reshape(c_in, -1), wf, bias, offs, args.stride[0] * wp * n, y)
    return y


def _grad_weight_bl(x, grad_y, args, w_shape):
    c_out, cg, kh, kw = w_shape
    n = x.shape[0]
    xt = _batch_last(x, args.padding, "x")
    c_in, hp, wp, _ = xt.shape
    gyt = _batch_last(grad_y, (0, 0, 0, 0), "grad_y")
    ho = gyt.shape[1]
    offs = _tap_offsets_bl(args.kernel_hw, args.dilation, wp, n).reshape(-1)
    # enough tasks for every thread: split the output rows into chunks when there are few
    # (channel block, input channel) pairs; a fixed split, so results do not depend on threads
    pairs = args.groups * -(-(c_out // args.groups) // 4) * cg
    nchunk = max(1, min(ho, -(-16 // pairs)))
    rows = -(-ho // nchunk)
    nchunk = -(-ho // rows)
    part = np.empty((nchunk, c_out, cg, kh * kw), dtype=x.dtype)
    ensure_thread_pool()
    _grad_weight_rows_bl(xt.reshape(c_in, -1), gyt.reshape(c_out, ho, -1), offs,
                         args.stride[0] * wp * n, rows, part, np.zeros(1, dtype=x.dtype)[0])
    gw = part[0] if nchunk == 1 else part.sum(axis=0)
    return gw.reshape(w_shape)


# ------------------------------------------------------------------ wrappers

def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias.  x: (N, C_in, H, W), w: (C_out, C_in/groups, kh, kw), bias: (C_out,)
    or None.  The bias is added where the output is written (no extra pass over y)."""
    dtype = x.dtype
    y = np.empty(args.out_shape, dtype=dtype)
    if y.size == 0:
        return y
    c_out, cg, kh, kw = w.shape
    bias = np.zeros(c_out, dtype=dtype) if bias is None else np.ascontiguousarray(bias)
    lay = _Layout(x.shape[2], x.shape[3], args.padding, args.stride, args.dilation,
                  args.kernel_hw)
    if x.shape[0] >= BATCH_LAST_MIN_N and args.stride[1] == 1 and (y.shape[2] * y.shape[3] < (
            1 - BATCH_LAST_MIN_GARBAGE) * lay.npos(y.shape[2])):
        # a big batch, unit width stride and more than 20% garbage positions in the flat-rows layout
        return _forward_bl(x, w, bias, args, y)
    src = lay.flat_input(x)
    wf = np.ascontiguousarray(w).reshape(c_out, cg, kh * kw)
    npos = lay.npos(y.shape[2])
    ensure_thread_pool()
    _forward_core(src, wf, bias, lay.offs, y, cg, c_out // args.groups, lay.row, npos)
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
    lay = _Layout(h, w_in, args.padding, args.stride, args.dilation, args.kernel_hw)
    gyf = lay.flat_grad(grad_y)
    og = c_out // args.groups
    # wt[g*cg + c, o, t] = w[g*og + o, c, t]
    wt = np.ascontiguousarray(
        np.asarray(w).reshape(args.groups, og, cg, kh * kw).transpose(0, 2, 1, 3)
    ).reshape(args.groups * cg, og, kh * kw)
    ensure_thread_pool()
    _grad_input_core(gyf, wt, lay.offs, gx, cg, lay.rowpart, lay.colpart, lay.unit_stride,
                     lay.top, lay.left, lay.wp, lay.length, gyf.shape[2])
    return gx


def _weight_block(ntap):
    """Positions per grad_weight task (a multiple of _VEC): the (T, block) float32
    buffer stays around 32 KiB."""
    return _round_up(max(64, min(512, 8192 // max(ntap, 1))))


def grad_weight(x, grad_y, args):
    """grad_w of conv2d: (C_out, C_in/groups, kh, kw)."""
    c_out = grad_y.shape[1]
    w_shape = (c_out, x.shape[1] // args.groups) + args.kernel_hw
    dtype = x.dtype
    _, cg, kh, kw = w_shape
    if x.shape[0] == 0:
        return np.zeros(w_shape, dtype=dtype)
    if x.shape[0] >= BATCH_LAST_MIN_N and args.stride[1] == 1:
        return _grad_weight_bl(x, grad_y, args, w_shape)
    lay = _Layout(x.shape[2], x.shape[3], args.padding, args.stride, args.dilation,
                  args.kernel_hw)
    src = lay.flat_input(x)
    gyf = lay.flat_grad(grad_y)
    ntap = kh * kw
    block = _weight_block(ntap)
    pair_tasks = args.groups * -(-(c_out // args.groups) // 2) * cg
    while pair_tasks * -(-gyf.shape[2] // block) < 16 and block > 64:  # keep both cores busy
        block = _round_up(block // 2)
    nblk = -(-gyf.shape[2] // block)
    part = np.empty((c_out, cg, nblk, ntap), dtype=dtype)
    ensure_thread_pool()
    _grad_weight_core(src, gyf, lay.offs, part, cg, c_out // args.groups, block)
    gw = part[:, :, 0].copy() if nblk == 1 else part.sum(axis=2)
    return gw.reshape(w_shape)


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
