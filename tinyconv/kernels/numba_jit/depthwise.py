"""Depthwise convolution (``groups == C_in == C_out``: one ``kh x kw`` filter per channel) as compiled loops.

The general kernels see a depthwise layer as ``C`` groups of one channel each: im2col makes one tiny product
per group, the flat-rows and batch-last loops block over channels that are not there. Here every task owns one
channel plane: it copies the plane into a flat zero-padded scratch plane (no bounds tests in the inner loops). With
stride 1 each tap is then a constant offset into that plane, and the whole output plane, kept with the padded row
stride (the flat-rows trick of :mod:`.flat_rows`), is one long vectorised loop per tap; other strides run tap by
tap along each output row. Forward and grad_input are parallel over (image, channel) planes, grad_weight over channels (each
task sums its channel's taps over the batch, products accumulated per row position and added up once at the
end, so the order of the sums is fixed: deterministic, no races). Any stride, padding and dilation; one
compilation per dtype.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

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


@njit(cache=True, parallel=True)
def forward(x, w, bias, y, sh, sw, dh, dw, top, left, hp, wp):
    """y (N, C, Ho, Wo) = depthwise conv of x (N, C, H, W) with w (C, 1, kh, kw), + bias (C,)."""
    n, c_all = x.shape[0], x.shape[1]
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    unit = sh == 1 and sw == 1
    # stride 1: the output in the padded row stride, acc[i*wp + j], is one long loop per tap
    npos = (ho - 1) * wp + wo if unit else wo
    for task in prange(n * c_all):
        m = task // c_all
        c = task - m * c_all
        xp = np.zeros(hp * wp, dtype=x.dtype)
        _load_plane(x, m, c, xp, top, left, wp)
        acc = np.empty(npos, dtype=x.dtype)
        if unit:
            for p in range(npos):
                acc[p] = bias[c]
            for a in range(kh):
                for b in range(kw):
                    wv = w[c, 0, a, b]
                    off = a * dh * wp + b * dw
                    for p in range(npos):  # unsigned indices: no wraparound test, so it vectorises
                        acc[np.uint64(p)] += wv * xp[np.uint64(p + off)]
            for i in range(ho):
                for j in range(wo):
                    y[m, c, i, j] = acc[i * wp + j]
            continue
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


@njit(cache=True, parallel=True)
def grad_weight(x, gy, gw, sh, sw, dh, dw, top, left, hp, wp):
    """gw (C, 1, kh, kw) = sum over images and positions of gy * the input each tap read."""
    n = x.shape[0]
    c_all = x.shape[1]
    kh, kw = gw.shape[2], gw.shape[3]
    ho, wo = gy.shape[2], gy.shape[3]
    unit = sh == 1 and sw == 1
    npos = (ho - 1) * wp + wo if unit else wo
    for c in prange(c_all):
        xp = np.zeros(hp * wp, dtype=x.dtype)
        g = np.zeros(ho * wp, dtype=x.dtype)
        acc = np.zeros((kh * kw, npos), dtype=x.dtype)  # elementwise products, summed once at the end
        for m in range(n):
            _load_plane(x, m, c, xp, top, left, wp)
            for i in range(ho):
                for j in range(wo):
                    g[i * wp + j] = gy[m, c, i, j]
            for a in range(kh):
                for b in range(kw):
                    t = a * kw + b
                    if unit:
                        off = a * dh * wp + b * dw
                        for p in range(npos):
                            acc[t, np.uint64(p)] += g[np.uint64(p)] * xp[np.uint64(p + off)]
                    else:
                        for i in range(ho):
                            off = (i * sh + a * dh) * wp + b * dw
                            for j in range(wo):
                                acc[t, np.uint64(j)] += g[np.uint64(i * wp + j)] * xp[np.uint64(off + j * sw)]
        for a in range(kh):
            for b in range(kw):
                s = acc[a * kw + b].sum()
                gw[c, 0, a, b] = s
