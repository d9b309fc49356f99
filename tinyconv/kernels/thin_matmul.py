"""Matrix products with a thin side: few rows (a fully connected layer's batch) or a short sum (its weight
gradient), where the large operand or the result is streamed through memory once.

A fully connected layer of a chapter-7 network at batch 16 multiplies a 16-row matrix by a weight of millions of
values: ``x @ W.T`` (forward), ``g @ W`` (grad_input), ``x.T @ g`` (grad_weight, a sum of 16 terms per value).
Each reads (or writes) the weight once and does 16 multiply-adds per value: the time is the memory traffic. A
general BLAS product packs the large operand into panels first (one more pass over it) and splits the work into
blocks sized for long sums; on two threads it moves the weight at half the machine's bandwidth or less
(``benchmarks/bench_d2l_ch7.py`` times AlexNet and VGG-11, whose fully connected layers these are). Here:

* :func:`_dot_tiles` for ``a @ b`` with ``b`` the transpose of a C-contiguous matrix (``x @ W.T``): every value
  is a dot product of two contiguous rows; a task holds a 4 x 4 tile of vector sums (4 rows of ``a`` against 4
  rows of ``b.T``) over the whole sum, its 8 rows read side by side, so each row of ``W`` is read once per 4 rows
  of ``a`` and stays in cache for the others;
* :func:`_column_tiles` for ``a @ b`` with few rows and ``b`` C-contiguous (``g @ W``): a task takes a block of
  columns, and tiles of 8 rows of the result x 2 vectors of columns sum runs of rows of ``b`` in registers (each
  step 2 vector loads of a row of ``b`` and 8 values of ``a`` broadcast) into the block's rows, kept in cache: the
  block's part of each row of ``b`` is read once;
* :func:`_row_tiles` for ``a @ b`` with a short sum and ``b`` C-contiguous (``x.T @ g``): a task writes 8 whole
  rows of the result, in the same register tiles over the whole sum; ``b`` stays in cache.

Columns past the kernels' last whole stripe or block (fewer than 256 float32 ones) go to BLAS. Every value is
computed by one task in a fixed order (vector lanes summed by a fixed tree), so the bits do not depend on the
thread count; they differ from NumPy's product by rounding only. :func:`matmul` says whether a product is one of
these (:data:`THIN`, and at least :data:`MIN_MACS` multiply-adds: smaller products stay with BLAS on one
thread, see :mod:`.workers`).
"""
from __future__ import annotations

import numpy as np
from numba import config, njit, prange

from . import blas, workers
from .numba_jit.fast.simd import fma, hsum, lanes, load, splat, store
from .threads import ensure_thread_pool

__all__ = ["matmul", "THIN", "MIN_MACS"]

THIN = 32             # a product is thin when its result has at most this many rows or its sum this many terms
MIN_MACS = workers.SMALL_MATMUL_MACS  # ... and at least this many multiply-adds (below: BLAS on the calling thread)
COLUMN_BLOCK = 8      # few rows: a task's stripes of columns (8 x 32 float32: 1 KiB of a row of b)
ROW_RUN = 64          # ... and the rows of b summed in registers before their tiles are added to the task's buffer
MIN_BLOCKS = 8        # ... and at least this many blocks where the columns allow (work for every thread)

_JIT = dict(cache=True, fastmath={"contract"})


@njit(parallel=True, **_JIT)
def _dot_tiles(a, bt, out):
    """out[i, j] = dot(a[i], bt[j]): a (M, K), bt (N, K), both C-contiguous; out (M, N). A task: 4 rows of bt
    (columns of out) against every row of a, 4 at a time (a row past the last stands for the last, its sums
    dropped)."""
    m, k = a.shape
    n = bt.shape[0]
    vl = lanes(a[0])
    kv = k - k % vl
    sums = np.empty((n + 3) // 4 * 16, dtype=out.dtype)  # each task's 4 x 4 sums, in its own slot
    for tj in prange((n + 3) // 4):
        j0 = tj * 4
        b0, b1, b2, b3 = bt[j0], bt[min(j0 + 1, n - 1)], bt[min(j0 + 2, n - 1)], bt[min(j0 + 3, n - 1)]
        tile = sums[tj * 16:tj * 16 + 16]
        for i0 in range(0, m, 4):
            a0, a1, a2, a3 = a[i0], a[min(i0 + 1, m - 1)], a[min(i0 + 2, m - 1)], a[min(i0 + 3, m - 1)]
            z = splat(out, 0.0)
            s00, s01, s02, s03, s10, s11, s12, s13 = z, z, z, z, z, z, z, z
            s20, s21, s22, s23, s30, s31, s32, s33 = z, z, z, z, z, z, z, z
            for p in range(0, kv, vl):
                u0, u1, u2, u3 = load(a0, p), load(a1, p), load(a2, p), load(a3, p)
                v = load(b0, p)
                s00, s10, s20, s30 = fma(u0, v, s00), fma(u1, v, s10), fma(u2, v, s20), fma(u3, v, s30)
                v = load(b1, p)
                s01, s11, s21, s31 = fma(u0, v, s01), fma(u1, v, s11), fma(u2, v, s21), fma(u3, v, s31)
                v = load(b2, p)
                s02, s12, s22, s32 = fma(u0, v, s02), fma(u1, v, s12), fma(u2, v, s22), fma(u3, v, s32)
                v = load(b3, p)
                s03, s13, s23, s33 = fma(u0, v, s03), fma(u1, v, s13), fma(u2, v, s23), fma(u3, v, s33)
            tile[0], tile[1], tile[2], tile[3] = hsum(s00), hsum(s01), hsum(s02), hsum(s03)
            tile[4], tile[5], tile[6], tile[7] = hsum(s10), hsum(s11), hsum(s12), hsum(s13)
            tile[8], tile[9], tile[10], tile[11] = hsum(s20), hsum(s21), hsum(s22), hsum(s23)
            tile[12], tile[13], tile[14], tile[15] = hsum(s30), hsum(s31), hsum(s32), hsum(s33)
            for p in range(kv, k):  # the sum's last terms, fewer than a vector
                for r in range(4):
                    ar = a[min(i0 + r, m - 1), p]
                    tile[r * 4] += ar * b0[p]
                    tile[r * 4 + 1] += ar * b1[p]
                    tile[r * 4 + 2] += ar * b2[p]
                    tile[r * 4 + 3] += ar * b3[p]
            for r in range(min(4, m - i0)):
                for c in range(min(4, n - j0)):
                    out[i0 + r, j0 + c] = tile[r * 4 + c]


@njit(inline="always", **_JIT)
def _row(a, i, m, kk):
    """a[i, kk] for a row index that may run past the last row (it then stands for the last)."""
    return a[min(i, m - 1), kk]


@njit(inline="always", **_JIT)
def _tile_8x2(a, b, i0, m, j0, k0, k1):
    """The 8 x 2-vector tile sum_{k0 <= kk < k1} a[i0 + r, kk] * b[kk, j0:j0 + 2 vectors], r < 8, in registers:
    per step 2 vector loads of a row of b, 8 values of a broadcast, 16 multiply-adds."""
    vl = lanes(b[0])
    z = splat(b, 0.0)
    c0, c1, c2, c3, c4, c5, c6, c7 = z, z, z, z, z, z, z, z
    d0, d1, d2, d3, d4, d5, d6, d7 = z, z, z, z, z, z, z, z
    for kk in range(k0, k1):
        bk = b[kk]
        u = load(bk, j0)
        v = load(bk, j0 + vl)
        w = splat(b, _row(a, i0, m, kk))
        c0, d0 = fma(w, u, c0), fma(w, v, d0)
        w = splat(b, _row(a, i0 + 1, m, kk))
        c1, d1 = fma(w, u, c1), fma(w, v, d1)
        w = splat(b, _row(a, i0 + 2, m, kk))
        c2, d2 = fma(w, u, c2), fma(w, v, d2)
        w = splat(b, _row(a, i0 + 3, m, kk))
        c3, d3 = fma(w, u, c3), fma(w, v, d3)
        w = splat(b, _row(a, i0 + 4, m, kk))
        c4, d4 = fma(w, u, c4), fma(w, v, d4)
        w = splat(b, _row(a, i0 + 5, m, kk))
        c5, d5 = fma(w, u, c5), fma(w, v, d5)
        w = splat(b, _row(a, i0 + 6, m, kk))
        c6, d6 = fma(w, u, c6), fma(w, v, d6)
        w = splat(b, _row(a, i0 + 7, m, kk))
        c7, d7 = fma(w, u, c7), fma(w, v, d7)
    return ((c0, d0), (c1, d1), (c2, d2), (c3, d3), (c4, d4), (c5, d5), (c6, d6), (c7, d7))


@njit(parallel=True, **_JIT)
def _row_tiles(a, b, out):
    """out[:, :S*w] = a @ b[:, :S*w] for a short sum, S the whole stripes of w = 2 vectors of columns: a (M, K) of
    any layout, K small, b (K, N) C-contiguous, out (M, N) C-contiguous. A task: 8 whole rows of out, written
    stripe after stripe, so the result, the large side, is written once and in order; b stays in cache."""
    m, k = a.shape
    vl = lanes(b[0])
    width = 2 * vl
    nstripe = b.shape[1] // width
    for g in prange((m + 7) // 8):
        i0 = g * 8
        for s in range(nstripe):
            j0 = s * width
            tile = _tile_8x2(a, b, i0, m, j0, 0, k)
            for r, (lo, hi) in enumerate(tile):
                if i0 + r < m:
                    store(out[i0 + r], j0, lo)
                    store(out[i0 + r], j0 + vl, hi)


@njit(parallel=True, **_JIT)
def _column_tiles(a, b, out, stripes):
    """out[:, :B*c] = a @ b[:, :B*c] for few rows, B the whole blocks of c = ``stripes`` stripes of 2 vectors of
    columns: a (M, K) of any layout, M small, b (K, N) C-contiguous, out (M, N) C-contiguous. A task: a block, its
    M rows of sums in a buffer (cache) while the rows of b go by in runs of :data:`ROW_RUN`: each run's tiles of 8
    rows x a stripe sum in registers from zero and are added to the buffer, so each value is a sum of runs (its
    rounding grows with K / ROW_RUN + ROW_RUN terms, not K)."""
    m, k = a.shape
    vl = lanes(b[0])
    width = 2 * vl
    cols = stripes * width
    one = splat(b, 1.0)
    for blk in prange(b.shape[1] // cols):
        j0 = blk * cols
        buf = np.zeros((m, cols), dtype=out.dtype)
        for k0 in range(0, k, ROW_RUN):
            k1 = min(k, k0 + ROW_RUN)
            for s in range(stripes):
                for i0 in range(0, m, 8):
                    tile = _tile_8x2(a, b, i0, m, j0 + s * width, k0, k1)
                    for r, (lo, hi) in enumerate(tile):
                        if i0 + r < m:
                            row = buf[i0 + r]
                            store(row, s * width, fma(lo, one, load(row, s * width)))
                            store(row, s * width + vl, fma(hi, one, load(row, s * width + vl)))
        out[:, j0:j0 + cols] = buf


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None):
    """``a @ b`` for two matrices of one float dtype where the product is thin (see the module docstring), into
    ``out`` (C-contiguous, of the result's shape and sharing no memory with ``a`` or ``b``; None: a new array),
    else None: the caller runs another product (NumPy's, which also reports mismatched shapes)."""
    if config.DISABLE_JIT or a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.dtype not in (np.float32,
                                                                                                   np.float64):
        return None
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or m * k * n < MIN_MACS or min(m, k) > THIN:
        return None
    if out is not None and (out.shape != (m, n) or out.dtype != a.dtype or not out.flags.c_contiguous
                            or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        return None
    if m <= THIN and b.T.flags.c_contiguous and a.flags.c_contiguous:
        kernel = "dot"
    elif b.flags.c_contiguous:
        kernel = "columns" if m <= THIN else "rows"
    else:
        return None
    if out is None:
        out = np.empty((m, n), dtype=a.dtype)
    ensure_thread_pool()
    if kernel == "dot":
        _dot_tiles(a, b.T, out)
        return out
    width = 2 * (64 // a.dtype.itemsize)  # a stripe: 2 vectors of columns
    stripes = n // width
    if kernel == "columns":
        # blocks of up to COLUMN_BLOCK stripes, fewer where that would make fewer than MIN_BLOCKS blocks (tasks);
        # a function of the shapes only, so that the same columns go to BLAS whatever the thread count
        per = max(1, min(COLUMN_BLOCK, stripes // MIN_BLOCKS))
        done = stripes // per * per * width
        if done:
            _column_tiles(a, b, out, per)
    else:
        done = stripes * width
        if done:
            _row_tiles(a, b, out)
    if done < n:  # the last columns, fewer than a block: BLAS, on this thread
        with blas.single_thread():
            np.matmul(a, b[:, done:], out=out[:, done:])
    return out
