"""Compiled column copies for :mod:`tinyconv.kernels.im2col`: build the channel-major column matrix of a chunk
of images, add a column gradient back (col2im), and move a chunk between the (N, C, P) layout of arrays and the
(C, N*P) layout of the matrix products. Each reads an unpadded input and tests the padding per row and per run
of columns (no padded copy); the column loops are unit-stride reads when the width stride is 1, which the
compiler vectorises.

Layout: ``cols[(c, a, b), m*P + i*W_out + j] = x[n0 + m, c0 + c, i*sh + a*dh - top, j*sw + b*dw - left]``
(0 outside the input), ``P = H_out*W_out``. Serial loops that release the GIL: :mod:`..im2col` runs its chunks
of images on tinyconv's worker threads (:mod:`..workers`), each thread copying its own chunk and making its own
one-thread product, so the copies are parallel without a numba parallel region between the products.
Shapes are runtime values: one compilation per dtype.

For big batches grad_input uses a batch-last column layout instead (:func:`col2im_batch_last`): column
``(i*W_out + j)*N + n`` holds image n, so adding a column block back to its pixel is a contiguous vector of N
values into a batch-last grad_x (C, H, W, N), whatever the stride; those two loops are parallel over channels.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["im2col_chunk", "col2im_chunk", "to_matrix", "from_matrix", "col2im_batch_last", "from_batch_last"]


@njit(cache=True, inline="always")
def _col_range(b, dw, sw, left, w, wo):
    """Output columns j with 0 <= j*sw + b*dw - left < w, as [lo, hi)."""
    off = b * dw - left
    lo = 0 if off >= 0 else (-off + sw - 1) // sw
    hi = 0 if w - off <= 0 else (w - off + sw - 1) // sw
    if hi > wo:
        hi = wo
    if lo > hi:
        lo = hi
    return lo, hi, off


@njit(cache=True, nogil=True)
def im2col_chunk(x, cols, c0, n0, nb, kh, kw, sh, sw, dh, dw, top, left, ho, wo):
    """Fill ``cols`` (cg*kh*kw, nb*ho*wo) from images n0..n0+nb-1, channels c0..c0+cg-1 of x (N, C, H, W)."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    taps = kh * kw
    npos = ho * wo
    length = cols.shape[1]
    for r in range(cols.shape[0]):  # one row per task: the index arithmetic (divisions) once per row
        c = c0 + r // taps
        t = r % taps
        a = t // kw
        b = t - a * kw
        lo, hi, off = _col_range(b, dw, sw, left, w, wo)
        for m in range(nb):
            plane = ((n0 + m) * c_in + c) * h * w
            for i in range(ho):
                hh = i * sh + a * dh - top
                o = r * length + m * npos + i * wo
                if hh < 0 or hh >= h:
                    for j in range(wo):
                        cf[o + j] = 0
                    continue
                src = plane + hh * w + off  # >= 0 wherever it is read (j >= lo)
                for j in range(lo):
                    cf[o + j] = 0
                if sw == 1:  # unsigned indices: no negative-index wraparound test, so the copy vectorises
                    for j in range(lo, hi):
                        cf[np.uint64(o + j)] = xf[np.uint64(src + j)]
                else:
                    for j in range(lo, hi):
                        cf[np.uint64(o + j)] = xf[np.uint64(src + j * sw)]
                for j in range(hi, wo):
                    cf[o + j] = 0


@njit(cache=True, nogil=True)
def col2im_chunk(dcols, gx, c0, n0, nb, cg, kh, kw, sh, sw, dh, dw, top, left, ho, wo):
    """gx[n0+m, c0+c] += the column gradient ``dcols`` (cg*kh*kw, nb*ho*wo) added back to the pixels it read."""
    c_in, h, w = gx.shape[1], gx.shape[2], gx.shape[3]
    gf = gx.reshape(-1)
    df = dcols.reshape(-1)
    npos = ho * wo
    length = dcols.shape[1]
    for c in range(cg):  # each task owns its channel's planes: no races
        for m in range(nb):
            plane = ((n0 + m) * c_in + c0 + c) * h * w
            for a in range(kh):
                for b in range(kw):
                    r = (c * kh + a) * kw + b
                    lo, hi, off = _col_range(b, dw, sw, left, w, wo)
                    for i in range(ho):
                        hh = i * sh + a * dh - top
                        if hh < 0 or hh >= h:
                            continue
                        o = r * length + m * npos + i * wo
                        dst = plane + hh * w + off
                        if sw == 1:
                            for j in range(lo, hi):
                                gf[np.uint64(dst + j)] += df[np.uint64(o + j)]
                        else:
                            for j in range(lo, hi):
                                gf[np.uint64(dst + j * sw)] += df[np.uint64(o + j)]


@njit(cache=True, nogil=True)
def to_matrix(a, out, n0, nb, o0):
    """out[o, m*P + p] = a[n0 + m, o0 + o, p] for a (N, C, P) and out (rows, nb*P)."""
    npos = a.shape[2]
    for o in range(out.shape[0]):
        for m in range(nb):
            for p in range(npos):
                out[o, m * npos + p] = a[n0 + m, o0 + o, p]


@njit(cache=True, nogil=True)
def from_matrix(mat, y, bias, n0, nb, o0):
    """y[n0 + m, o0 + o, p] = mat[o, m*P + p] + bias[o0 + o] for mat (rows, nb*P) and y (N, C, P)."""
    npos = y.shape[2]
    for m in range(nb):
        for o in range(mat.shape[0]):
            bv = bias[o0 + o]
            for p in range(npos):
                y[n0 + m, o0 + o, p] = mat[o, m * npos + p] + bv


@njit(parallel=True, cache=True)
def col2im_batch_last(dcols, gxt, c0, kh, kw, sh, sw, dh, dw, top, left, ho, wo):
    """gxt[c0 + c, hh, ww, :] += dcols[(c, a, b), (i*wo + j)*N:][:N] for every tap (a, b) and output (i, j)
    that read pixel (hh, ww) = (i*sh + a*dh - top, j*sw + b*dw - left); dcols (cg*kh*kw, ho*wo*N), gxt
    (C, H, W, N) batch-last. One task per channel: no two tasks write the same pixel."""
    h, w, n = gxt.shape[1], gxt.shape[2], gxt.shape[3]
    cg = dcols.shape[0] // (kh * kw)
    for c in prange(cg):
        for a in range(kh):
            for b in range(kw):
                r = (c * kh + a) * kw + b
                for i in range(ho):
                    hh = i * sh + a * dh - top
                    if hh < 0 or hh >= h:
                        continue
                    for j in range(wo):
                        ww = j * sw + b * dw - left
                        if ww < 0 or ww >= w:
                            continue
                        src = dcols[r, (i * wo + j) * n:(i * wo + j + 1) * n]
                        dst = gxt[c0 + c, hh, ww]
                        for m in range(n):
                            dst[m] += src[m]


@njit(parallel=True, cache=True)
def from_batch_last(xt, x):
    """x[n, c, h, w] = xt[c, h, w, n]: a batch-last array back to (N, C, H, W)."""
    n_img, c_in, h, w = x.shape
    for task in prange(c_in * h):
        c = task // h
        i = task % h
        for j in range(w):
            src = xt[c, i, j]
            for n in range(n_img):
                x[n, c, i, j] = src[n]
