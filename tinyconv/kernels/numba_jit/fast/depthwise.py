"""Depthwise convolution (``groups == C_in == C_out``: one ``kh x kw`` filter per channel) as compiled loops.

The general kernels see a depthwise layer as ``C`` groups of one channel each: im2col makes one tiny product per
group, the flat-rows and batch-last loops block over channels that are not there. Here each channel plane is copied
into a flat zero-padded scratch plane (no bounds tests in the inner loops). With stride 1 each tap is then a
constant offset into that plane, and each output row is computed 2 vectors (:mod:`.simd`) at a time, held in
registers while all the taps run and written straight to the output (planes narrower than a vector go through a
scratch plane with the padded row stride, the flat-rows trick of :mod:`.flat_rows`); other strides run tap by tap
along each output row. grad_input at stride 1 is the same forward loop on grad_y
(padded by ``(k - 1)*d - padding``, filters flipped), grad_weight at stride 1 keeps one vector of sums per tap in
registers (up to 9 at a time) while it sweeps grad_y's rows in place. The forward is parallel over (image, group of
8 channels), the strided grad_input over (image, channel) planes, grad_weight over channels (each task sums its
channel's taps over the batch in a fixed order: deterministic, no races). Any stride, padding and dilation; one
compilation per dtype.
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
        xp[base:base + wd] = x[m, c, i]  # a row slice: numba copies it as one block


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
    if sh == 1 and sw == 1 and wo >= vl:
        # output rows written straight from registers, 2 vectors at a time; a row's last vector ends at the row's
        # end (overlapping the one before it when Wo is not a whole number of vectors: same values written twice)
        b0 = splat(xp, bias[c])
        for i in range(ho):
            yo = y[m, c, i]
            for j in range(0, wo, 2 * vl):
                j0 = min(j, wo - vl)
                j1 = min(j + vl, wo - vl)
                a0 = b0
                a1 = b0
                for a in range(kh):
                    row = (i + a * dh) * wp
                    for b in range(kw):
                        wv = splat(xp, w[c, 0, a, b])
                        a0 = fma(wv, load(xp, row + j0 + b * dw), a0)
                        a1 = fma(wv, load(xp, row + j1 + b * dw), a1)
                store(yo, j0, a0)
                store(yo, j1, a1)
        return
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


@njit(cache=True, inline="always")
def _tap_offset(t, k, ntap, kw, dh, dw, wp):
    """Offset in the padded plane of tap t + k (the last tap past the end)."""
    u = min(t + k, ntap - 1)
    return (u // kw) * dh * wp + (u % kw) * dw


@njit(cache=True, fastmath={"contract"}, inline="always")
def _fma9(gv, xp, p, o0, o1, o2, o3, o4, o5, o6, o7, o8, a0, a1, a2, a3, a4, a5, a6, a7, a8):
    """a_k + gv * xp[p + o_k : ... + lanes] for the 9 taps of a sweep."""
    return (fma(gv, load(xp, p + o0), a0), fma(gv, load(xp, p + o1), a1), fma(gv, load(xp, p + o2), a2),
            fma(gv, load(xp, p + o3), a3), fma(gv, load(xp, p + o4), a4), fma(gv, load(xp, p + o5), a5),
            fma(gv, load(xp, p + o6), a6), fma(gv, load(xp, p + o7), a7), fma(gv, load(xp, p + o8), a8))


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
    rows = unit and wo >= vl
    # lanes of a row's last vector that an earlier vector of the row already covered: 0, the others 1
    tail = load(np.array([0.0 if lane < (vl - wo % vl) % vl else 1.0 for lane in range(vl)], dtype=x.dtype), 0)
    zero = splat(x[0, 0, 0], 0.0)
    for c in prange(c_all):
        xp = np.zeros(hp * wp + vl, dtype=x.dtype)
        g = np.zeros(max(ho * wp, nvec * vl) if not rows else 0, dtype=x.dtype)
        if unit:
            # one vector of per-lane sums per tap, kept across images (in sums between them, in registers while
            # up to 9 taps run over a plane), added up lane by lane at the end: a fixed order, deterministic
            sums = np.zeros((ntap + 8) * vl, dtype=x.dtype)  # (+8: the copies' loads stay in bounds)
            for m in range(n):
                _load_plane(x, m, c, xp, top, left, wp)
                if not rows:
                    for i in range(ho):
                        for j in range(wo):
                            g[i * wp + j] = gy[m, c, i, j]
                t = 0
                while t < ntap:  # 9 taps a sweep (a 3x3 kernel in one); past the last tap: copies, not stored
                    k = min(9, ntap - t)
                    o0, o1, o2 = _tap_offset(t, 0, ntap, kw, dh, dw, wp), _tap_offset(t, 1, ntap, kw, dh, dw, wp), \
                        _tap_offset(t, 2, ntap, kw, dh, dw, wp)
                    o3, o4, o5 = _tap_offset(t, 3, ntap, kw, dh, dw, wp), _tap_offset(t, 4, ntap, kw, dh, dw, wp), \
                        _tap_offset(t, 5, ntap, kw, dh, dw, wp)
                    o6, o7, o8 = _tap_offset(t, 6, ntap, kw, dh, dw, wp), _tap_offset(t, 7, ntap, kw, dh, dw, wp), \
                        _tap_offset(t, 8, ntap, kw, dh, dw, wp)
                    a0, a1, a2 = load(sums, t * vl), load(sums, (t + 1) * vl), load(sums, (t + 2) * vl)
                    a3, a4, a5 = load(sums, (t + 3) * vl), load(sums, (t + 4) * vl), load(sums, (t + 5) * vl)
                    a6, a7, a8 = load(sums, (t + 6) * vl), load(sums, (t + 7) * vl), load(sums, (t + 8) * vl)
                    if rows:  # grad_y's rows read in place, each row's last vector masked where it overlaps
                        for i in range(ho):
                            gr = gy[m, c, i]
                            for j in range(0, wo, vl):
                                j0 = min(j, wo - vl)
                                gv = load(gr, j0) if j0 == j else fma(load(gr, j0), tail, zero)
                                p = i * wp + j0
                                a0, a1, a2, a3, a4, a5, a6, a7, a8 = _fma9(gv, xp, p, o0, o1, o2, o3, o4, o5, o6, o7,
                                                                           o8, a0, a1, a2, a3, a4, a5, a6, a7, a8)
                    else:  # grad_y copied into the padded row stride (zero past each row's end)
                        for v in range(nvec):
                            p = v * vl
                            a0, a1, a2, a3, a4, a5, a6, a7, a8 = _fma9(load(g, p), xp, p, o0, o1, o2, o3, o4, o5, o6,
                                                                       o7, o8, a0, a1, a2, a3, a4, a5, a6, a7, a8)
                    for j, a_j in enumerate((a0, a1, a2, a3, a4, a5, a6, a7, a8)):
                        if j < k:
                            store(sums, (t + j) * vl, a_j)
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
