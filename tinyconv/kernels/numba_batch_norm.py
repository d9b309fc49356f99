"""Batch norm's per-channel passes as compiled loops (numba): statistics, the affine map, the backward sums and
the input gradient, each one pass over memory.

Arrays are (N, C, L) views (L = H·W, or 1 for (N, C) input). The reductions run one channel per task and
accumulate in float64; the elementwise passes run one (image, channel) row per task. The reductions may
reassociate their sums (``fastmath`` reassoc/contract only, no assumptions about NaN or infinity) so that LLVM
vectorises them. Used by :mod:`tinyconv.functions.batch_norm` when numba's JIT is on; runs (slowly) under
``NUMBA_DISABLE_JIT=1``, where the NumPy formulation is used instead.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .threads import ensure_thread_pool

__all__ = ["channel_stats", "affine", "grad_sums", "grad_input"]

_SUMS = dict(cache=True, fastmath={"reassoc", "contract"})
_ELEMENTWISE = dict(cache=True, fastmath=False)


@njit(parallel=True, **_SUMS)
def _stats(x, mean, var):
    n, c, l = x.shape
    count = n * l
    for ch in prange(c):
        s = 0.0
        for i in range(n):
            for j in range(l):
                s += x[i, ch, j]
        m = s / count
        q = 0.0
        for i in range(n):
            for j in range(l):
                d = x[i, ch, j] - m
                q += d * d
        mean[ch] = m
        var[ch] = q / count


@njit(parallel=True, **_ELEMENTWISE)
def _affine(x, scale, shift, y):
    n, c, l = x.shape
    for task in prange(n * c):
        i = task // c
        ch = task % c
        a = scale[ch]
        b = shift[ch]
        for j in range(l):
            y[i, ch, j] = x[i, ch, j] * a + b


@njit(parallel=True, **_SUMS)
def _grad_sums(g, x, mean, sum_g, sum_gx):
    n, c, l = g.shape
    for ch in prange(c):
        m = mean[ch]
        s = 0.0
        sx = 0.0
        for i in range(n):
            for j in range(l):
                gv = g[i, ch, j]
                s += gv
                sx += gv * (x[i, ch, j] - m)
        sum_g[ch] = s
        sum_gx[ch] = sx


@njit(parallel=True, **_ELEMENTWISE)
def _grad_input(g, x, mean, a, b, k, dx):
    n, c, l = g.shape
    for task in prange(n * c):
        i = task // c
        ch = task % c
        m = mean[ch]
        ga = a[ch]
        xb = b[ch]
        kk = k[ch]
        for j in range(l):
            dx[i, ch, j] = g[i, ch, j] * ga + (x[i, ch, j] - m) * xb + kk


def channel_stats(x3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance (float64, shape (C,)) of each channel of an (N, C, L) array (two passes)."""
    ensure_thread_pool()
    c = x3.shape[1]
    mean, var = np.empty(c), np.empty(c)
    _stats(x3, mean, var)
    return mean, var


def affine(x3: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x·scale[c] + shift[c], a new array of x's dtype."""
    ensure_thread_pool()
    y = np.empty_like(x3)
    _affine(x3, scale.astype(x3.dtype), shift.astype(x3.dtype), y)
    return y


def grad_sums(g3: np.ndarray, x3: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ g and Σ g·(x - mean) per channel, float64 (one pass over both)."""
    ensure_thread_pool()
    c = g3.shape[1]
    sum_g, sum_gx = np.empty(c), np.empty(c)
    _grad_sums(g3, x3.astype(g3.dtype, copy=False), mean, sum_g, sum_gx)
    return sum_g, sum_gx


def grad_input(g3, x3, mean, a, b, k) -> np.ndarray:
    """g·a[c] + (x - mean[c])·b[c] + k[c], a new array of g's dtype (x is centred before scaling, so a large
    mean costs no precision)."""
    ensure_thread_pool()
    dx = np.empty_like(g3)
    dt = g3.dtype
    _grad_input(g3, x3.astype(dt, copy=False), mean.astype(dt), a.astype(dt), b.astype(dt), k.astype(dt), dx)
    return dx
