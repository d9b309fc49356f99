"""Max and average 2-D pooling on NumPy arrays (forward and backward), PyTorch semantics.

Pooling works per channel on ``(N, C, H, W)`` arrays.  Like the direct convolution, the
general path loops over the ``kh*kw`` window taps in Python and handles all images,
channels and output positions of one tap with a strided slice; the common LeNet case
(2x2 windows, stride 2, no padding / dilation) has a reshape fast path.

Max pooling
    Padding counts as ``-inf``.  ``argmax`` holds, for every output, the flat index
    ``h * W + w`` into the (unpadded) input plane of the FIRST maximum met in row-major
    window order, exactly PyTorch's rule: a later tap replaces the current best only when
    it is strictly larger or NaN (so NaN propagates, and the last NaN wins).  A window of
    only ``-inf`` reports its first in-input position.  ``max_pool2d_backward`` sends each
    output's gradient to its argmax, accumulating where windows overlap (``np.bincount``
    over the flat indices, no ``np.add.at``).

Average pooling
    ``y = sum(window) / divisor`` where, as in PyTorch, the window is first clipped to the
    padded input (``ceil_mode`` windows that hang off the end do not count the part beyond
    it), ``divisor`` = that clipped size when ``count_include_pad`` is true, else the number
    of real input pixels in the window; ``divisor_override`` replaces both.

The functions trust their arguments (normalised :class:`~.shapes.PoolArgs`, float arrays): they are checked at the
public door (:mod:`tinyconv.functional`, or a backend's checked ``max_pool2d_forward``...).
"""
from __future__ import annotations

import numpy as np

from .windows import pad, tap

__all__ = ["max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward", "avg_pool_divisor",
           "is_fast_2x2"]


def is_fast_2x2(args, shape) -> bool:
    """2x2 windows, stride 2, no padding, no dilation, no window hanging off the end."""
    return (args.kernel_size == (2, 2) and args.stride == (2, 2) and args.padding == (0, 0)
            and args.dilation == (1, 1)
            and 2 * args.out_shape[2] <= shape[2] and 2 * args.out_shape[3] <= shape[3])


def _padded(x, args, fill):
    """x padded with ``fill``: ``padding`` on the top/left, and on the bottom/right as much
    as the last (ceil_mode) window needs.  Returns (x_pad, (top, left))."""
    h, w = x.shape[2], x.shape[3]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = args.kernel_size, args.stride, args.padding, args.dilation
    ho, wo = args.out_shape[2], args.out_shape[3]
    hp = max(h + 2 * ph, (ho - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + 2 * pw, (wo - 1) * sw + dw * (kw - 1) + 1)
    if hp == h and wp == w:
        return x, (0, 0)
    return pad(x, (ph, hp - h - ph, pw, wp - w - pw), fill), (ph, pw)


def _first_inside(start, d):
    """Window starts moved forward by steps of ``d`` until they are >= 0."""
    return np.where(start < 0, start + (-start + d - 1) // d * d, start)


# ----------------------------------------------------------------------------- max

def max_pool(x, args):
    """Return ``(y, argmax)``; ``argmax`` (int64) indexes the flattened H*W input plane."""
    n, c, ho, wo = args.out_shape
    h, w = x.shape[2], x.shape[3]
    if is_fast_2x2(args, x.shape):
        x6 = x[:, :, :2 * ho, :2 * wo].reshape(n, c, ho, 2, wo, 2)
        v00, v01 = x6[:, :, :, 0, :, 0], x6[:, :, :, 0, :, 1]
        v10, v11 = x6[:, :, :, 1, :, 0], x6[:, :, :, 1, :, 1]
        y = np.maximum(np.maximum(v00, v01), np.maximum(v10, v11))  # NaN propagates
        # offset of the FIRST tap equal to the maximum, in row-major window order
        off = np.where(v00 == y, 0, np.where(v01 == y, 1, np.where(v10 == y, w, w + 1)))
        nan = np.isnan(y)
        if nan.any():  # PyTorch keeps the LAST NaN of the window
            last_nan = np.where(np.isnan(v11), w + 1,
                                np.where(np.isnan(v10), w, np.where(np.isnan(v01), 1, 0)))
            off = np.where(nan, last_nan, off)
        base = (2 * np.arange(ho) * w)[:, None] + (2 * np.arange(wo))[None, :]
        return y, (off + base).astype(np.int64, copy=False)

    (kh, kw), (sh, sw), (dh, dw) = args.kernel_size, args.stride, args.dilation
    xp, (ph, pw) = _padded(x, args, -np.inf)
    y = np.full(args.out_shape, -np.inf, dtype=x.dtype)
    # PyTorch starts from the first window position inside the input (stepping the
    # window start by the dilation past the padding); it stays the answer when every
    # value in the window is -inf (or, in degenerate windows, when no tap is inside).
    first_row = _first_inside(np.arange(ho) * sh - ph, dh)
    first_col = _first_inside(np.arange(wo) * sw - pw, dw)
    argmax = np.empty(args.out_shape, dtype=np.int64)
    # A window of padding only keeps PyTorch's start index when it falls inside the plane (its gradient lands
    # there, as in PyTorch) and -1 otherwise (its gradient goes nowhere).
    start = first_row[:, None] * w + first_col[None, :]
    argmax[...] = np.where(start < h * w, start, -1)
    for a in range(kh):
        rows = np.arange(ho) * sh + a * dh - ph            # input row of this tap
        row_ok = (rows >= 0) & (rows < h)
        for b in range(kw):
            cols = np.arange(wo) * sw + b * dw - pw
            col_ok = (cols >= 0) & (cols < w)
            valid = row_ok[:, None] & col_ok[None, :]      # tap inside the real input
            if not valid.any():
                continue
            flat = rows[:, None] * w + cols[None, :]
            v = xp[:, :, tap(a, dh, sh, ho), tap(b, dw, sw, wo)]
            # PyTorch's rule: a later tap wins only if strictly larger, or NaN
            better = valid & ((v > y) | np.isnan(v))
            np.copyto(y, v, where=better)
            np.copyto(argmax, np.broadcast_to(flat, argmax.shape), where=better)
    return y, argmax


def max_pool_backward(grad_y, argmax, input_shape, non_overlapping=False):
    """grad_x: each output's gradient added to the input pixel its argmax names.

    ``non_overlapping=True`` promises that no input pixel is in two windows (stride >=
    dilated kernel), so the indices are unique and a plain scatter is used."""
    n, c, h, w = input_shape
    plane = h * w
    planes = n * c
    if grad_y.size == 0:
        return np.zeros((n, c, h, w), dtype=grad_y.dtype)
    argmax = argmax.reshape(planes, -1)
    idx = argmax + (np.arange(planes, dtype=np.int64) * plane)[:, None]
    if (argmax < 0).any():  # windows of padding only send their gradient nowhere
        keep = argmax >= 0
        idx, grad_y = idx[keep], grad_y.reshape(planes, -1)[keep]
    if non_overlapping:
        gx = np.zeros(planes * plane, dtype=grad_y.dtype)
        gx[idx.ravel()] = grad_y.ravel()
    else:
        gx = np.bincount(idx.ravel(), weights=grad_y.ravel(), minlength=planes * plane)
        gx = gx.astype(grad_y.dtype, copy=False)
    return gx.reshape(n, c, h, w)


# ----------------------------------------------------------------------------- average

def _window_counts(n_in, n_out, k, s, p, count_include_pad):
    """Per-output-position window extent along one axis (PyTorch's avg_pool2d rule)."""
    start = np.arange(n_out) * s - p
    end = np.minimum(start + k, n_in + p)
    size = end - start                          # clipped to the padded input
    if count_include_pad:
        return size
    return np.minimum(end, n_in) - np.maximum(start, 0)  # real pixels only


def avg_pool_divisor(input_hw, args, count_include_pad, divisor_override=None, dtype=np.float64):
    """(H_out, W_out) array of divisors for average pooling (or the override)."""
    if divisor_override is not None:
        return np.asarray(divisor_override, dtype=dtype)
    h, w = input_hw
    (kh, kw), (sh, sw), (ph, pw) = args.kernel_size, args.stride, args.padding
    ho, wo = args.out_shape[2], args.out_shape[3]
    rh = _window_counts(h, ho, kh, sh, ph, count_include_pad)
    rw = _window_counts(w, wo, kw, sw, pw, count_include_pad)
    return (rh[:, None] * rw[None, :]).astype(dtype)


def avg_pool(x, args, count_include_pad=True, divisor_override=None):
    """Average pooling (no dilation, as in PyTorch)."""
    n, c, ho, wo = args.out_shape
    if is_fast_2x2(args, x.shape) and divisor_override is None:
        x6 = x[:, :, :2 * ho, :2 * wo].reshape(n, c, ho, 2, wo, 2)
        s = x6[:, :, :, 0, :, 0] + x6[:, :, :, 0, :, 1]
        s += x6[:, :, :, 1, :, 0]
        s += x6[:, :, :, 1, :, 1]
        s /= x.dtype.type(4)
        return s
    (kh, kw), (sh, sw) = args.kernel_size, args.stride
    xp, _ = _padded(x, args, 0)
    y = np.zeros(args.out_shape, dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            y += xp[:, :, tap(a, 1, sh, ho), tap(b, 1, sw, wo)]
    y /= avg_pool_divisor(x.shape[2:], args, count_include_pad, divisor_override, x.dtype)
    return y


def avg_pool_backward(grad_y, input_shape, args, count_include_pad=True, divisor_override=None):
    """grad_x of :func:`avg_pool` (its exact adjoint)."""
    n, c, h, w = input_shape
    ho, wo = args.out_shape[2], args.out_shape[3]
    dtype = grad_y.dtype
    if is_fast_2x2(args, input_shape) and divisor_override is None:
        g = grad_y / dtype.type(4)
        g6 = np.broadcast_to(g[:, :, :, None, :, None], (n, c, ho, 2, wo, 2))
        if (2 * ho, 2 * wo) == (h, w):
            return np.ascontiguousarray(g6).reshape(input_shape)
        gx = np.zeros(input_shape, dtype=dtype)
        gx[:, :, :2 * ho, :2 * wo] = g6.reshape(n, c, 2 * ho, 2 * wo)
        return gx
    (kh, kw), (sh, sw), (ph, pw) = args.kernel_size, args.stride, args.padding
    g = grad_y / avg_pool_divisor((h, w), args, count_include_pad, divisor_override, dtype)
    hp = max(h + 2 * ph, (ho - 1) * sh + kh)
    wp = max(w + 2 * pw, (wo - 1) * sw + kw)
    gxp = np.zeros((n, c, hp, wp), dtype=dtype)
    for a in range(kh):
        for b in range(kw):
            gxp[:, :, tap(a, 1, sh, ho), tap(b, 1, sw, wo)] += g
    return np.ascontiguousarray(gxp[:, :, ph:ph + h, pw:pw + w])
