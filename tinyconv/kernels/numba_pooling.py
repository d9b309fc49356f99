"""Max and average 2-D pooling as compiled loops (numba): PyTorch's CPU loops line by line, except the max
pooling of general windows, which takes a window's taps one at a time over a whole plane (see :func:`_max_fwd`).

Same functions, arguments and results as :mod:`tinyconv.kernels.pooling` (see there for
the semantics); parallel over the ``N*C`` planes, so no two threads write the same
memory.  The Python wrappers take the normalised :class:`~.shapes.PoolArgs` (checked at the
public door) and pass plain ints, so numba compiles once per dtype, never per shape.  Runs (slowly) under ``NUMBA_DISABLE_JIT=1``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .pooling import is_fast_2x2
from .threads import ensure_thread_pool

__all__ = ["max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward"]

_JIT = dict(cache=True, fastmath=False)
MAX_POOL_CHUNKS = 256  # the general max pooling's parallel loop: chunks of planes, each with its own scratch
PLANES_LAST_SCRATCH = 16384  # _max_fwd_planes_last: pixels of a task's batch-last copy (64 KiB of float32),
                            # in chunks of 16 to 256 planes


@njit(inline="always", **_JIT)
def _first_max(v, best, t, k):
    """(best, k) after value ``v`` of tap ``t``: v and t where v is above best or NaN, else best and k, so that
    the window's first maximum (or its last NaN, PyTorch's rule) wins. Selects, not branches (``v != v`` is the
    NaN test), so that loops over windows vectorise."""
    take = (v > best) | (v != v)
    return (v if take else best), (t if take else k)


@njit(parallel=True, **_JIT)
def _max_fwd(x, y, argmax, kh, kw, sh, sw, ph, pw, dh, dw):
    """Any window, stride, padding, dilation and ceil_mode, a plane at a time, in three steps:

    1. the plane, padded with -inf, is split into ``sh * sw`` phase planes (input row ``r`` of the padded plane is
       row ``r // sh`` of the phases ``r % sh``, likewise the columns), flat with row stride ``wq``: then output
       ``(i, j)`` reads tap ``(a, b)`` at a constant offset from ``p = i*wq + j`` in one of them;
    2. per tap, in PyTorch's order (rows, then columns), one pass over every ``p`` keeps the maximum and which tap
       gave it, as selects (``v > best or v != v``: the first maximum, the last NaN) that vectorise, where a
       branch per value would be a coin toss the CPU mispredicts (PyTorch's loop, one window at a time);
    3. the outputs and their flat input indices are written out (columns ``j >= Wo`` of ``p`` were spare).

    A window of padding only (or of -inf only) keeps PyTorch's start index when it falls inside the plane (its
    gradient lands there, as in PyTorch) and -1 otherwise (its gradient goes nowhere)."""
    n_img, n_ch, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    hq = ho + ((kh - 1) * dh) // sh + 1
    wq = wo + ((kw - 1) * dw) // sw + 1
    npos = ho * wq
    ntask = n_img * n_ch
    nchunk = min(ntask, MAX_POOL_CHUNKS)
    tap_offset = np.empty(kh * kw, dtype=np.int64)  # tap t's flat offset from its window's first pixel
    for t in range(kh * kw):
        tap_offset[t] = (t // kw) * dh * w + (t % kw) * dw
    for chunk in prange(nchunk):  # the scratch planes once per chunk of planes, not per plane
        planes = np.empty((sh * sw, hq * wq), dtype=x.dtype)
        best = np.empty(npos, dtype=x.dtype)
        tap = np.empty(npos, dtype=np.int32)
        for task in range(chunk * ntask // nchunk, (chunk + 1) * ntask // nchunk):
            _max_plane(x, y, argmax, task, planes, best, tap, tap_offset, kh, kw, sh, sw, ph, pw, dh, dw, hq, wq)


@njit(inline="always", **_JIT)
def _max_plane(x, y, argmax, task, planes, best, tap, tap_offset, kh, kw, sh, sw, ph, pw, dh, dw, hq, wq):
    """Plane ``task`` (image, channel) of :func:`_max_fwd`, in its chunk's scratch arrays: ``planes`` (the phase
    planes, row stride ``wq``, ``hq`` rows), ``best`` and ``tap`` (one entry per position ``p = i*wq + j``);
    ``tap_offset``: each tap's flat offset in the input plane (no division per output)."""
    n_ch, h, w = x.shape[1], x.shape[2], x.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    npos = best.shape[0]
    n = task // n_ch
    c = task % n_ch
    xs = x[n, c]
    planes[:] = -np.inf
    for i in range(h):
        r = i + ph
        if r // sh >= hq:
            continue
        row = planes[(r % sh) * sw:, (r // sh) * wq:]
        for ps in range(sw):
            j0 = (ps - pw) % sw  # the first column j with (j + pw) % sw == ps
            dst = row[ps, (j0 + pw) // sw:]
            for q in range(min((w - j0 + sw - 1) // sw, wq - (j0 + pw) // sw)):
                dst[q] = xs[i, j0 + q * sw]
    best[:] = -np.inf
    tap[:] = -1
    for a in range(kh):
        for b in range(kw):
            src = planes[((a * dh) % sh) * sw + (b * dw) % sw, ((a * dh) // sh) * wq + (b * dw) // sw:]
            t = np.int32(a * kw + b)
            for p in range(npos):
                best[p], tap[p] = _first_max(src[p], best[p], t, tap[p])
    for i in range(ho):
        for j in range(wo):
            p = i * wq + j
            y[n, c, i, j] = best[p]
            t = tap[p]
            if t >= 0:
                argmax[n, c, i, j] = (i * sh - ph) * w + j * sw - pw + tap_offset[t]
            else:
                argmax[n, c, i, j] = _window_start(i, j, sh, sw, ph, pw, dh, dw, h, w)


@njit(inline="always", **_JIT)
def _window_start(i, j, sh, sw, ph, pw, dh, dw, h, w):
    """What output (i, j)'s argmax is when no pixel of its window is above -inf (padding or -inf only): PyTorch's
    start index, the window's first tap inside the plane, or -1 where that is past the plane (its gradient then
    goes nowhere)."""
    hs = i * sh - ph
    while hs < 0:
        hs += dh
    ws = j * sw - pw
    while ws < 0:
        ws += dw
    first = hs * w + ws
    return first if first < h * w else -1


@njit(parallel=True, **_JIT)
def _max_fwd_planes_last(x, y, argmax, kh, kw, sh, sw, ph, pw, dh, dw, chunk):
    """:func:`_max_fwd` for small planes (below 2**31 pixels), many at a time: a task copies ``chunk`` planes
    batch-last into its scratch (``xs[k, q]``: pixel ``k`` of plane ``q``), so that each tap of an output is one
    pass over the chunk's planes, long and vectorised, where one plane's passes would be a few values each. Taps
    in padding are skipped (they are -inf, never taken); the same selects, first-maximum / last-NaN rule and
    start index of a window of padding (or -inf) only."""
    n_img, n_ch, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    nplanes = n_img * n_ch
    xf = x.reshape(nplanes, h * w)
    yf = y.reshape(nplanes, ho * wo)
    af = argmax.reshape(nplanes, ho * wo)
    for task in prange((nplanes + chunk - 1) // chunk):
        p0 = task * chunk
        m = min(chunk, nplanes - p0)
        xs = np.empty((h * w, chunk), dtype=x.dtype)
        best = np.empty(chunk, dtype=x.dtype)
        arg = np.empty(chunk, dtype=np.int32)  # beside float32 values (int64 ones keep the loop scalar)
        for q in range(m):
            plane = xf[p0 + q]
            for k in range(h * w):
                xs[k, q] = plane[k]
        for i in range(ho):
            for j in range(wo):
                best[:m] = -np.inf
                arg[:m] = -1
                for a in range(kh):
                    r = i * sh - ph + a * dh
                    if r < 0 or r >= h:
                        continue
                    for b in range(kw):
                        c = j * sw - pw + b * dw
                        if c < 0 or c >= w:
                            continue
                        k = np.int32(r * w + c)
                        row = xs[k]
                        for q in range(m):
                            best[q], arg[q] = _first_max(row[q], best[q], k, arg[q])
                start = _window_start(i, j, sh, sw, ph, pw, dh, dw, h, w)
                o = i * wo + j
                for q in range(m):
                    yf[p0 + q, o] = best[q]
                    af[p0 + q, o] = arg[q] if arg[q] >= 0 else start


@njit(inline="always", **_JIT)
def _max_2x2(top, bottom, p, w):
    """(value, offset) of the first maximum of the window top[p], top[p + 1], bottom[p], bottom[p + 1] (offsets 0,
    1, w, w + 1), or of its last NaN: selects, not branches (``v != v`` is the NaN test), so that loops over
    windows vectorise."""
    best = top[p]
    k = 0
    v = top[p + 1]
    take = (v > best) | (v != v)
    best = v if take else best
    k = 1 if take else k
    v = bottom[p]
    take = (v > best) | (v != v)
    best = v if take else best
    k = w if take else k
    v = bottom[p + 1]
    take = (v > best) | (v != v)
    best = v if take else best
    k = w + 1 if take else k
    return best, k


@njit(parallel=True, **_JIT)
def _max_fwd_2x2(x, y, argmax):
    """The common case (2x2 window, stride 2, no padding, no dilation) without any bounds logic: every
    window is inside the input. Same first-maximum / last-NaN rule as :func:`_max_fwd`, written with
    selects instead of branches (``v != v`` is the NaN test) so that the row loop vectorises."""
    n_img, n_ch, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        xs = x[n, c]
        for i in range(ho):
            top = xs[2 * i]
            bottom = xs[2 * i + 1]
            yrow = y[n, c, i]
            arow = argmax[n, c, i]
            r0 = 2 * i * w
            for j in range(wo):
                best, k = _max_2x2(top, bottom, 2 * j, w)
                yrow[j] = best
                arow[j] = r0 + 2 * j + k


@njit(parallel=True, **_JIT)
def _max_fwd_2x2_flat(x, y, argmax):
    """:func:`_max_fwd_2x2` as one loop per plane over the positions ``q = i*W + j`` (rows of W, not Wo): the
    window of ``q`` starts at flat input ``2*q``, so the loop is as long as the plane, and vectorises however short
    its rows are (the columns ``Wo <= j < W`` are computed and dropped). For CPUs whose row loop vectorises only
    from rows of a few vectors and takes the short ones value by value, with a branch per select
    (:func:`~tinyconv.kernels.choose.max_pool_flat` says where)."""
    n_img, n_ch, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    span = (ho - 1) * w + wo  # the last row's dropped columns are not computed: their windows leave the plane
    ntask = n_img * n_ch
    nchunk = min(ntask, MAX_POOL_CHUNKS)
    for chunk in prange(nchunk):
        best = np.empty(span, dtype=x.dtype)
        first = np.empty(span, dtype=argmax.dtype)
        for task in range(chunk * ntask // nchunk, (chunk + 1) * ntask // nchunk):
            n = task // n_ch
            c = task % n_ch
            top = x[n, c].reshape(-1)
            bottom = top[w:]
            for q in range(span):
                b, k = _max_2x2(top, bottom, 2 * q, w)
                best[q] = b
                first[q] = 2 * q + k
            for i in range(ho):
                yrow = y[n, c, i]
                arow = argmax[n, c, i]
                for j in range(wo):
                    yrow[j] = best[i * w + j]
                    arow[j] = first[i * w + j]


@njit(parallel=True, **_JIT)
def _max_bwd(gy, argmax, gx):
    """gx (N, C, H*W; not initialised) = the gradients of gy scattered to their argmax (a flat index into the
    plane). Each task zeroes its own plane first, while it is in cache (a separate np.zeros was one more pass over
    gx), and indexes the plane flat (no division per element)."""
    n_img, n_ch, ho, wo = gy.shape
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        gxs = gx[n, c]
        gxs[:] = 0
        for i in range(ho):
            for j in range(wo):
                k = argmax[n, c, i, j]
                if k >= 0:
                    gxs[k] += gy[n, c, i, j]


@njit(**_JIT)
def _avg_window(i, s, p, k, n_in, count_include_pad):
    """(start, end, count) of one axis of PyTorch's avg_pool2d window."""
    start = i * s - p
    end = min(start + k, n_in + p)
    size = end - start
    start = max(start, 0)
    end = min(end, n_in)
    if count_include_pad:
        return start, end, size
    return start, end, end - start


@njit(parallel=True, **_JIT)
def _avg_fwd(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    n_img, n_ch, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        xs = x[n, c]
        for i in range(ho):
            hs, he, hc = _avg_window(i, sh, ph, kh, h, count_include_pad)
            for j in range(wo):
                ws, we, wc = _avg_window(j, sw, pw, kw, w, count_include_pad)
                total = 0.0
                for ih in range(hs, he):
                    for iw in range(ws, we):
                        total += xs[ih, iw]
                div = divisor_override if divisor_override != 0 else hc * wc
                y[n, c, i, j] = total / div


@njit(parallel=True, **_JIT)
def _avg_fwd_2x2(x, y):
    """The common case (2x2 window, stride 2, no padding): every window is inside the input and has 4
    elements, whatever count_include_pad says. Sums in the input's dtype (the general loop sums in
    float64), so float32 results may differ from it in the last bit."""
    n_img, n_ch = x.shape[0], x.shape[1]
    ho, wo = y.shape[2], y.shape[3]
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        xs = x[n, c]
        ys = y[n, c]
        for i in range(ho):
            top = xs[2 * i]
            bottom = xs[2 * i + 1]
            row = ys[i]
            for j in range(wo):
                row[j] = ((top[2 * j] + top[2 * j + 1]) + (bottom[2 * j] + bottom[2 * j + 1])) * 0.25


@njit(parallel=True, **_JIT)
def _avg_bwd_2x2(gy, gx):
    """Adjoint of :func:`_avg_fwd_2x2`: each input pixel of a window gets a quarter of its gradient; the
    last row/column of an odd-sized input (in no window) gets zero. gx need not be zeroed."""
    n_img, n_ch, h, w = gx.shape
    ho, wo = gy.shape[2], gy.shape[3]
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        gys = gy[n, c]
        gxs = gx[n, c]
        for i in range(ho):
            g = gys[i]
            top = gxs[2 * i]
            bottom = gxs[2 * i + 1]
            for j in range(wo):
                v = g[j] * 0.25
                top[2 * j] = v
                top[2 * j + 1] = v
                bottom[2 * j] = v
                bottom[2 * j + 1] = v
            for j in range(2 * wo, w):
                top[j] = 0
                bottom[j] = 0
        for i in range(2 * ho, h):
            for j in range(w):
                gxs[i, j] = 0


@njit(parallel=True, **_JIT)
def _avg_bwd(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    n_img, n_ch, h, w = gx.shape
    ho, wo = gy.shape[2], gy.shape[3]
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        gxs = gx[n, c]
        for i in range(ho):
            hs, he, hc = _avg_window(i, sh, ph, kh, h, count_include_pad)
            for j in range(wo):
                ws, we, wc = _avg_window(j, sw, pw, kw, w, count_include_pad)
                div = divisor_override if divisor_override != 0 else hc * wc
                g = gy[n, c, i, j] / div
                for ih in range(hs, he):
                    for iw in range(ws, we):
                        gxs[ih, iw] += g


def max_pool(x, args, flat=False, planes_last=False):
    """Return ``(y, argmax)``; see :func:`tinyconv.kernels.pooling.max_pool`. ``argmax`` is int32 when a plane
    has fewer than 2**31 pixels (always, in practice): with int64 indices next to float32 values the 2x2 loop
    does not vectorise (``benchmarks/bench_conv.py`` times the pooling kernels). ``flat``: the 2x2 case in
    :func:`_max_fwd_2x2_flat`'s loop, one per plane, instead of one per row; ``planes_last``: the other windows
    in :func:`_max_fwd_planes_last`'s loops, many small planes at a time."""
    y = np.empty(args.out_shape, dtype=x.dtype)
    small = x.shape[2] * x.shape[3] < 2**31
    argmax = np.empty(args.out_shape, dtype=np.int32 if small else np.int64)
    if y.size:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (args.kernel_size, args.stride, args.padding,
                                                  args.dilation)
        ensure_thread_pool()
        if is_fast_2x2(args, x.shape):
            (_max_fwd_2x2_flat if flat else _max_fwd_2x2)(np.ascontiguousarray(x), y, argmax)
        elif planes_last:
            chunk = max(16, min(256, PLANES_LAST_SCRATCH // (x.shape[2] * x.shape[3]) // 16 * 16))
            _max_fwd_planes_last(np.ascontiguousarray(x), y, argmax, kh, kw, sh, sw, ph, pw, dh, dw, chunk)
        else:
            _max_fwd(np.ascontiguousarray(x), y, argmax, kh, kw, sh, sw, ph, pw, dh, dw)
    return y, argmax


def max_pool_backward(grad_y, argmax, input_shape, non_overlapping=False):
    """grad_x; see :func:`tinyconv.kernels.pooling.max_pool_backward`."""
    if not grad_y.size:
        return np.zeros(input_shape, dtype=grad_y.dtype)
    gx = np.empty(input_shape, dtype=grad_y.dtype)
    ensure_thread_pool()
    index_type = argmax.dtype if argmax.dtype in (np.int32, np.int64) else np.int64
    _max_bwd(np.ascontiguousarray(grad_y), np.ascontiguousarray(argmax, dtype=index_type),
             gx.reshape(gx.shape[0], gx.shape[1], -1))
    return gx


def avg_pool(x, args, count_include_pad=True, divisor_override=None):
    """Average pooling; see :func:`tinyconv.kernels.pooling.avg_pool`."""
    y = np.empty(args.out_shape, dtype=x.dtype)
    if y.size:
        (kh, kw), (sh, sw), (ph, pw) = args.kernel_size, args.stride, args.padding
        ensure_thread_pool()
        if is_fast_2x2(args, x.shape) and not divisor_override:
            _avg_fwd_2x2(np.ascontiguousarray(x), y)
        else:
            _avg_fwd(np.ascontiguousarray(x), y, kh, kw, sh, sw, ph, pw, bool(count_include_pad),
                     int(divisor_override or 0))
    return y


def avg_pool_backward(grad_y, input_shape, args, count_include_pad=True, divisor_override=None):
    """grad_x; see :func:`tinyconv.kernels.pooling.avg_pool_backward`."""
    (kh, kw), (sh, sw), (ph, pw) = args.kernel_size, args.stride, args.padding
    if grad_y.size and is_fast_2x2(args, input_shape) and not divisor_override:
        gx = np.empty(input_shape, dtype=grad_y.dtype)
        ensure_thread_pool()
        _avg_bwd_2x2(np.ascontiguousarray(grad_y), gx)
        return gx
    gx = np.zeros(input_shape, dtype=grad_y.dtype)
    if grad_y.size:
        ensure_thread_pool()
        _avg_bwd(np.ascontiguousarray(grad_y), gx, kh, kw, sh, sw, ph, pw,
                 bool(count_include_pad), int(divisor_override or 0))
    return gx
