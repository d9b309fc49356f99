"""Convolution as one matrix multiplication: im2col + BLAS, col2im for the backward pass.

Every output position ``(i, j)`` of image ``n`` reads a ``C_g x kh x kw`` window of the
padded input.  Unfolding the windows into columns gives, per image, a matrix
``cols[n]`` of shape ``(K, P)`` with ``K = C_g*kh*kw`` and ``P = H_out*W_out``::

    cols[n, (c, a, b), (i, j)] = x_pad[n, c, i*sh + a*dh, j*sw + b*dw]

and the convolution of one group is a single (batched) matrix product::

    y[n] = W @ cols[n]            W = w.reshape(C_out_g, K)          -> (C_out_g, P)

The windows are a *view* of the padded input (``np.lib.stride_tricks.as_strided``: no
Python loop over pixels); one copy turns the view into the contiguous column buffer that
BLAS needs.  Backward:

* ``grad_w = sum_n grad_y[n] @ cols[n].T``  (C_out_g, P) @ (P, K), summed over the batch;
* ``grad_x``: ``dcols[n] = W.T @ grad_y[n]`` (K, P), then *col2im*: each of the kh*kw taps
  adds its ``(C_g, H_out, W_out)`` slab back into a strided slice of the padded gradient
  (a slice-add per tap, no ``np.add.at``), and the padding is cropped.

Layout choice (measured on LeNet's layers, float32, 2 cores): batch-major columns
``(N, K, P)`` let ``W @ cols`` write straight into the ``(N, C_out, H_out, W_out)`` output
(no transpose copy) and were the fastest of batch-major, channel-major ``(K, N*P)`` and
pixel-major ``(N*P, K)`` for the forward and grad_weight passes.  At most one column
buffer is alive at a time (one group at a time).  dtype is kept end to end.
Pooling: NumPy's (:mod:`.pooling`), inherited from :class:`~.backend.Backend`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import blas
from .backend import Backend
from .windows import pad, tap

__all__ = ["forward", "grad_input", "grad_weight", "Im2colBackend", "backend"]


def _windows(x_pad, kernel_hw, out_hw, stride, dilation):
    """View (N, C, kh, kw, H_out, W_out) of every window of the padded input (no copy)."""
    sn, sc, s_h, s_w = x_pad.strides
    (kh, kw), (ho, wo) = kernel_hw, out_hw
    (sh, sw), (dh, dw) = stride, dilation
    return as_strided(x_pad, shape=(x_pad.shape[0], x_pad.shape[1], kh, kw, ho, wo),
                      strides=(sn, sc, dh * s_h, dw * s_w, sh * s_h, sw * s_w),
                      writeable=False)


def _columns(windows, k):
    """Contiguous column buffer (N, K, P) of one group's windows."""
    n = windows.shape[0]
    return np.ascontiguousarray(windows).reshape(n, k, -1)


def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias.  x: (N, C_in, H, W), w: (C_out, C_in/groups, kh, kw), bias: (C_out,) or None."""
    dtype = x.dtype
    n, c_out, ho, wo = args.out_shape
    G = args.groups
    cg, og = w.shape[1], c_out // G
    k = cg * args.kernel_hw[0] * args.kernel_hw[1]
    y = np.empty((n, c_out, ho * wo), dtype=dtype)
    if y.size == 0:
        return y.reshape(args.out_shape)
    win = _windows(np.ascontiguousarray(pad(x, args.padding)), args.kernel_hw, (ho, wo), args.stride,
                   args.dilation)
    wmat = np.ascontiguousarray(w).reshape(c_out, k)
    for g in range(G):
        cols = _columns(win[:, g * cg:(g + 1) * cg], k)          # (N, K, P)
        blas.matmul(wmat[g * og:(g + 1) * og], cols, out=y[:, g * og:(g + 1) * og])
        del cols
    if bias is not None:
        y += bias.reshape(1, -1, 1)
    return y.reshape(args.out_shape)


def grad_input(grad_y, w, input_hw, args):
    """grad_x of conv2d (the adjoint of :func:`forward` for an input of size
    ``input_hw``, which may exceed the smallest one, as for output_padding)."""
    h, w_in = input_hw
    n, c_out = grad_y.shape[0], grad_y.shape[1]
    dtype = grad_y.dtype
    G = args.groups
    cg, og = w.shape[1], c_out // G
    kh, kw = args.kernel_hw
    (sh, sw), (dh, dw) = args.stride, args.dilation
    top, bottom, left, right = args.padding
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    k = cg * kh * kw
    grad_x_pad = np.zeros((n, cg * G, h + top + bottom, w_in + left + right), dtype=dtype)
    if grad_x_pad.size == 0:
        return grad_x_pad[:, :, top:top + h, left:left + w_in].copy()
    wmat = np.ascontiguousarray(w).reshape(c_out, k)
    gy = np.ascontiguousarray(grad_y).reshape(n, c_out, ho * wo)
    for g in range(G):
        # dcols[n] = W_g.T @ grad_y_g[n]: the gradient of every column entry
        dcols = blas.matmul(wmat[g * og:(g + 1) * og].T, gy[:, g * og:(g + 1) * og])
        dcols = dcols.reshape(n, cg, kh, kw, ho, wo)
        gxg = grad_x_pad[:, g * cg:(g + 1) * cg]
        for a in range(kh):           # col2im: one strided slice-add per tap
            for b in range(kw):
                gxg[:, :, tap(a, dh, sh, ho), tap(b, dw, sw, wo)] += dcols[:, :, a, b]
        del dcols
    return np.ascontiguousarray(grad_x_pad[:, :, top:top + h, left:left + w_in])


def grad_weight(x, grad_y, args):
    """grad_w of conv2d: (C_out, C_in/groups, kh, kw)."""
    c_out = grad_y.shape[1]
    w_shape = (c_out, x.shape[1] // args.groups) + args.kernel_hw
    dtype = x.dtype
    G = args.groups
    n = x.shape[0]
    _, cg, kh, kw = w_shape
    og = c_out // G
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    k = cg * kh * kw
    grad_w = np.zeros((c_out, k), dtype=dtype)
    if n == 0:
        return grad_w.reshape(w_shape)
    win = _windows(np.ascontiguousarray(pad(x, args.padding)), args.kernel_hw, (ho, wo), args.stride,
                   args.dilation)
    gy = np.ascontiguousarray(grad_y).reshape(n, c_out, ho * wo)
    for g in range(G):
        cols = _columns(win[:, g * cg:(g + 1) * cg], k)          # (N, K, P)
        # sum_n grad_y[n] @ cols[n].T
        grad_w[g * og:(g + 1) * og] = blas.matmul(gy[:, g * og:(g + 1) * og],
                                                cols.transpose(0, 2, 1)).sum(axis=0)
        del cols
    return grad_w.reshape(w_shape)


class Im2colBackend(Backend):
    """Windows unfolded into columns, one BLAS product per group; NumPy pooling."""

    name = "im2col"
    forward = staticmethod(forward)
    grad_input = staticmethod(grad_input)
    grad_weight = staticmethod(grad_weight)


backend = Im2colBackend()
