"""The numba backend's first layout: flat padded rows (all three conv operations).

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

All loops use plain ints; shapes are runtime values, so numba compiles once per dtype
(float32 / float64), never per shape.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["Layout", "forward_core", "grad_input_core", "grad_weight_core", "weight_block", "round_up", "taps_1",
           "taps_2", "weight_task"]

_JIT = dict(cache=True, fastmath=False)

# Flat position counts are rounded up to a multiple of _VEC so that the vectorised inner
# loops never fall into their scalar remainder (which, for LeNet's 136-position planes,
# cost as much as the vector part); buffers get _VEC elements of zero slack at the end.
_VEC = 16


def round_up(n, m=_VEC):
    return -(-n // m) * m


# ------------------------------------------------------------------ layout helpers

class Layout:
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
        return round_up(ho * self.row)

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
def taps_2(acc0, acc1, xc, w0, w1, offs, npos):
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
def taps_1(acc0, xc, w0, offs, npos):
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
def forward_core(src, wf, bias, offs, out, cg, og, row, npos):
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
                taps_2(acc0, acc1, src[n, g * cg + c], wf[o0, c], wf[o0 + 1, c], offs, npos)
            b0, b1 = bias[o0], bias[o0 + 1]
            for i in range(ho):
                for j in range(wo):
                    out[n, o0, i, j] = acc0[i * row + j] + b0
                    out[n, o0 + 1, i, j] = acc1[i * row + j] + b1
        else:
            for c in range(cg):
                taps_1(acc0, src[n, g * cg + c], wf[o0, c], offs, npos)
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
def grad_input_core(gyf, wt, offs, out, cg, rowpart, colpart, unit_stride, top, left, wp,
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
def weight_task(task, cg, nsplit, nblk, og, width):
    """Decode a grad_weight task index. Tasks run over (block of ``width`` output channels of
    a group, input channel of the group, split of the positions); ``nblk`` blocks per group of
    ``og`` channels. Returns (group, first output channel, input channel, split)."""
    blk = task // (cg * nsplit)
    rest = task % (cg * nsplit)
    g = blk // nblk
    return g, g * og + width * (blk % nblk), rest // nsplit, rest % nsplit


@njit(parallel=True, **_JIT)
def grad_weight_core(src, gyf, offs, part, cg, og, block):
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
        g, o, c, blk = weight_task(task, cg, nblk, npairs, og, 2)
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


def weight_block(ntap):
    """Positions per grad_weight task (a multiple of _VEC): the (T, block) float32
    buffer stays around 32 KiB."""
    return round_up(max(64, min(512, 8192 // max(ntap, 1))))
