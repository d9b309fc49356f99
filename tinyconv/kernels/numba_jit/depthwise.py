"""Depthwise convolution (``groups == C_in == C_out``: one ``kh x kw`` filter per channel) as compiled loops.

The general kernels see a depthwise layer as ``C`` groups of one channel each: im2col makes one tiny product
per group, the flat-rows and batch-last loops block over channels that are not there. Here each channel plane
is copied into a flat zero-padded scratch plane (no bounds tests in the inner loops). With
stride 1 each tap is then a constant offset into that plane, and the output plane, kept with the padded row
stride (the flat-rows trick of :mod:`.flat_rows`), is computed in blocks of 2 vectors (:mod:`.simd`) held in
registers while all the taps run; other strides run tap by tap along each output row. grad_input at stride 1 is
the same forward loop on grad_y (padded by ``(k - 1)*d - padding``, filters flipped), grad_weight at stride 1
keeps one vector of sums per tap in registers while it sweeps a plane. The forward is parallel over (image, group
of 8 channels), the strided grad_input over (image, channel) planes, grad_weight over channels (each task sums
its channel's taps over the batch in a fixed order: deterministic, no races). Any stride, padding and dilation;
one compilation per dtype.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import fma, hsum, lanes, load, splat, store

__all__ = ["forward", "grad_input", "grad_weight", "padded_size"]


def padded_size(n_in, before, n_out, stride, dilation, k):
    """Length of a padded axis that holds the input after ``before`` zeros and every position a window reads."""
    return max(before + n_in, (n_out - 1) * stride + (k - 1) * dilation + 1)


@njit(cache=True, inline="always")
def _load_plane(x, m, c, xp, top, left, wp):
    """Copy x[m, c] into the interior of the flat zero-padded plane xp (row stride wp)."""
    h, wd = x.shape[2], x.shape[3]
    for i in range(h):
        base = (top + i) * wp + left
        for j in range(wd):
            xp[base + j] = x[m, c, i, j]


@njit(cache=True, parallel=True, fastmath={"contract"})
def forward(x, w, bias, y, sh, sw, dh, dw, top, left, hp, wp):
    """y (N, C, Ho, Wo) = depthwise conv of x (N, C, H, W) with w (C, 1, kh, kw), + bias (C,)."""
    n, c_all = x.shape[0], x.shape[1]
    ho, wo = y.shape[2], y.shape[3]
    unit = sh == 1 and sw == 1
    vl = lanes(x[0, 0, 0])
    # stride 1: the output in the padded row stride, acc[i*wp + j], in blocks of 2 vectors held in registers
    # while the taps run (the zero slack past the plane covers the last block's reads)
    npos = (ho - 1) * wp + wo if unit else wo
    nblk = (npos + 2 * vl - 1) // (2 * vl)
    # a task: 8 planes (or fewer) of one image, its scratch plane zeroed once (each plane overwrites the interior,
    # the padding stays zero): no allocation per plane
    per = 8 if n * c_all >= 64 else 1  # (few planes: one a task, so that every thread gets some)
    chunks = (c_all + per - 1) // per
    for task in prange(n * chunks):
        m = task // chunks
        c0 = (task - m * chunks) * per
        xp = np.zeros(hp * wp + 2 * vl, dtype=x.dtype)
        acc = np.empty(nblk * 2 * vl if unit else npos, dtype=x.dtype)
        for c in range(c0, min(c0 + per, c_all)):
            _forward_plane(x, w, bias, y, m, c, xp, acc, sh, sw, dh, dw, top, left, wp, nblk, vl)


@njit(cache=True, fastmath={"contract"}, inline="always")
def _forward_plane(x, w, bias, y, m, c, xp, acc, sh, sw, dh, dw, top, left, wp, nblk, vl):
    """Plane c of image m of :func:`forward`; xp: the zero-padded scratch plane, acc: the output scratch."""
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    _load_plane(x, m, c, xp, top, left, wp)
    if sh == 1 and sw == 1:
        b0 = splat(xp, bias[c])
        for q in range(nblk):
            p0 = q * 2 * vl
            a0 = b0
            a1 = b0
            for a in range(kh):
                for b in range(kw):
                    wv = splat(xp, w[c, 0, a, b])
                    off = p0 + a * dh * wp + b * dw
                    a0 = fma(wv, load(xp, off), a0)
                    a1 = fma(wv, load(xp, off + vl), a1)
            store(acc, p0, a0)
            store(acc, p0 + vl, a1)
        for i in range(ho):
            for j in range(wo):
                y[m, c, i, j] = acc[i * wp + j]
        return
    for i in range(ho):
        for j in range(wo):
            acc[j] = bias[c]
        for a in range(kh):
            for b in range(kw):
                wv = w[c, 0, a, b]
                off = (i * sh + a * dh) * wp + b * dw
                for j in range(wo):
                    acc[np.uint64(j)] += wv * xp[np.uint64(off + j * sw)]
        for j in range(wo):
            y[m, c, i, j] = acc[j]


@njit(cache=True, parallel=True)
def grad_input(gy, w, gx, sh, sw, dh, dw, top, left, hp, wp):
    """gx (N, C, H, W) = the adjoint of :func:`forward` applied to gy (N, C, Ho, Wo)."""
    n, c_all, h, wd = gx.shape
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = gy.shape[2], gy.shape[3]
    for task in prange(n * c_all):
        m = task // c_all
        c = task - m * c_all
        gp = np.zeros(hp * wp, dtype=gx.dtype)
        # gy in the padded row stride, zero in the columns j >= wo (they must add nothing)
        g = np.zeros(ho * wp, dtype=gx.dtype)
        for i in range(ho):
            for j in range(wo):
                g[i * wp + j] = gy[m, c, i, j]
        for a in range(kh):
            for b in range(kw):
                wv = w[c, 0, a, b]
                if sh == 1 and sw == 1:
                    off = a * dh * wp + b * dw
                    for p in range((ho - 1) * wp + wo):
                        gp[np.uint64(p + off)] += wv * g[np.uint64(p)]
                else:
                    for i in range(ho):
                        off = (i * sh + a * dh) * wp + b * dw
                        for j in range(wo):
                            gp[np.uint64(off + j * sw)] += wv * g[np.uint64(i * wp + j)]
        for i in range(h):
            base = (top + i) * wp + left
            for j in range(wd):
                gx[m, c, i, j] = gp[base + j]


@njit(cache=True, parallel=True, fastmath={"contract"})
def grad_weight(x, gy, gw, sh, sw, dh, dw, top, left, hp, wp):
    """gw (C, 1, kh, kw) = sum over images and positions of gy * the input each tap read."""
    n = x.shape[0]
    c_all = x.shape[1]
    kh, kw = gw.shape[2], gw.shape[3]
    ntap = kh * kw
    ho, wo = gy.shape[2], gy.shape[3]
    unit = sh == 1 and sw == 1
    vl = lanes(x[0, 0, 0])
    npos = (ho - 1) * wp + wo if unit else wo
    nvec = (npos + vl - 1) // vl
    for c in prange(c_all):
        xp = np.zeros(hp * wp + vl, dtype=x.dtype)
        g = np.zeros(max(ho * wp, nvec * vl), dtype=x.dtype)
        if unit:
            # one vector of per-lane sums per tap, kept across images (in sums between them, in registers while
            # 4 taps run over a plane), added up lane by lane at the end: a fixed order, deterministic
            sums = np.zeros(ntap * vl, dtype=x.dtype)
            for m in range(n):
                _load_plane(x, m, c, xp, top, left, wp)
                for i in range(ho):
                    for j in range(wo):
                        g[i * wp + j] = gy[m, c, i, j]
                t = 0
                while t < ntap:
                    k = min(4, ntap - t)
                    o0 = (t // kw) * dh * wp + (t % kw) * dw
                    t1 = min(t + 1, ntap - 1)
                    t2 = min(t + 2, ntap - 1)
                    t3 = min(t + 3, ntap - 1)
                    o1 = (t1 // kw) * dh * wp + (t1 % kw) * dw
                    o2 = (t2 // kw) * dh * wp + (t2 % kw) * dw
                    o3 = (t3 // kw) * dh * wp + (t3 % kw) * dw
                    s0 = load(sums, t * vl)
                    s1 = load(sums, t1 * vl)
                    s2 = load(sums, t2 * vl)
                    s3 = load(sums, t3 * vl)
                    a0, a1, a2, a3 = s0, s1, s2, s3  # past the last tap: copies, computed and not stored
                    for v in range(nvec):
                        p = v * vl
                        gv = load(g, p)
                        a0 = fma(gv, load(xp, p + o0), a0)
                        a1 = fma(gv, load(xp, p + o1), a1)
                        a2 = fma(gv, load(xp, p + o2), a2)
                        a3 = fma(gv, load(xp, p + o3), a3)
                    store(sums, t * vl, a0)
                    if k > 1:
                        store(sums, t1 * vl, a1)
                    if k > 2:
                        store(sums, t2 * vl, a2)
                    if k > 3:
                        store(sums, t3 * vl, a3)
                    t += k
            for t in range(ntap):
                gw[c, 0, t // kw, t % kw] = hsum(load(sums, t * vl))
            continue
        acc = np.zeros((ntap, npos), dtype=x.dtype)  # elementwise products, summed once at the end
        for m in range(n):
            _load_plane(x, m, c, xp, top, left, wp)
            for i in range(ho):
                for j in range(wo):
                    g[i * wp + j] = gy[m, c, i, j]
            for a in range(kh):
                for b in range(kw):
                    t = a * kw + b
                    for i in range(ho):
                        off = (i * sh + a * dh) * wp + b * dw
                        for j in range(wo):
                            acc[t, np.uint64(j)] += g[np.uint64(i * wp + j)] * xp[np.uint64(off + j * sw)]
        for a in range(kh):
            for b in range(kw):
                s = acc[a * kw + b].sum()
                gw[c, 0, a, b] = s
