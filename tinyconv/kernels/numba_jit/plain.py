"""The numba convolution to read first: forward, grad_input and grad_weight as plain compiled loops.

Shapes: x (N, C_in, H, W), w (C_out, cg, kh, kw) with cg = C_in/groups, y (N, C_out, H_out, W_out). Output channel
``o`` belongs to group ``g = o // (C_out/groups)`` and reads that group's input channels ``g*cg ... g*cg + cg - 1``.
With stride (sh, sw), dilation (dh, dw) and ``top`` / ``left`` zeros of padding before the input, tap (a, b) of
output position (i, j) reads the input pixel::

    h = i*sh + a*dh - top,    v = j*sw + b*dw - left       (nothing where that falls outside the input)

so the three operations are three sums over the same index set, each loop nest owning what it writes:

* forward:      y[n, o, i, j]  = bias[o] + sum_{c, a, b}  w[o, c, a, b] * x[n, g*cg + c, h, v]
* grad_input:   gx[n, c, h, v] = sum_{o in c's group, a, b}  w[o, c - g*cg, a, b] * gy[n, o, i, j]
                                 over the (i, j) whose tap (a, b) reads (h, v): i = (h + top - a*dh) / sh whole
* grad_weight:  gw[o, c, a, b] = sum_{n, i, j}  gy[n, o, i, j] * x[n, g*cg + c, h, v]

The outer loop of each is ``prange`` (numba runs its iterations on all cores): one (image, output channel) plane of
y, one (image, input channel) plane of grad_x, one (output channel, input channel) filter of grad_w. No two
iterations write the same element, so there are no races and the sums are the same whatever the thread count.
Shapes are runtime values: numba compiles each function once per dtype (float32, float64), and with
``NUMBA_DISABLE_JIT=1`` the same code runs as Python (``prange`` is ``range``).

The backward pass is these two gradients of the forward's sum: grad_input collects, for every input pixel, the
outputs it contributed to; grad_weight correlates the output gradient with the input, one tap at a time.

This backend is registered as ``kernel="numba-plain"``. The ``numba`` backend computes the same three sums with
faster loop orders and layouts (:mod:`.fast`); the tests check that every backend agrees with ``direct``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..backend import Backend

__all__ = ["forward", "grad_input", "grad_weight", "PlainNumbaBackend", "backend"]


@njit(parallel=True, cache=True)
def _forward(x, w, bias, y, sh, sw, dh, dw, top, left):
    n_img, c_in, h_in, w_in = x.shape
    c_out, cg, kh, kw = w.shape
    og = c_out // (c_in // cg)  # output channels per group
    for task in prange(n_img * c_out):
        n, o = task // c_out, task % c_out
        c0 = (o // og) * cg  # the first input channel of o's group
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                acc = bias[o]
                for c in range(cg):
                    for a in range(kh):
                        h = i * sh + a * dh - top
                        if h < 0 or h >= h_in:
                            continue
                        for b in range(kw):
                            v = j * sw + b * dw - left
                            if 0 <= v < w_in:
                                acc += w[o, c, a, b] * x[n, c0 + c, h, v]
                y[n, o, i, j] = acc


@njit(parallel=True, cache=True)
def _grad_input(gy, w, gx, sh, sw, dh, dw, top, left):
    n_img, c_in, h_in, w_in = gx.shape
    c_out, cg, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    og = c_out // (c_in // cg)
    for task in prange(n_img * c_in):
        n, c = task // c_in, task % c_in
        g, cl = c // cg, c % cg  # c's group, and its index inside the group's filters
        for h in range(h_in):
            for v in range(w_in):
                acc = gx[n, c, h, v]  # zero: gx arrives zeroed (and the sum keeps its dtype)
                for a in range(kh):
                    ri = h + top - a * dh  # = i*sh for the output row i that tap row a reads h from
                    if ri < 0 or ri % sh != 0 or ri // sh >= ho:
                        continue
                    for b in range(kw):
                        rj = v + left - b * dw
                        if rj < 0 or rj % sw != 0 or rj // sw >= wo:
                            continue
                        for o in range(g * og, (g + 1) * og):
                            acc += w[o, cl, a, b] * gy[n, o, ri // sh, rj // sw]
                gx[n, c, h, v] = acc


@njit(parallel=True, cache=True)
def _grad_weight(x, gy, gw, sh, sw, dh, dw, top, left):
    n_img, c_in, h_in, w_in = x.shape
    c_out, cg, kh, kw = gw.shape
    og = c_out // (c_in // cg)
    for task in prange(c_out * cg):
        o, c = task // cg, task % cg
        xc = (o // og) * cg + c  # the input channel this filter row reads
        for a in range(kh):
            for b in range(kw):
                acc = gw[o, c, a, b]  # zero: gw arrives zeroed
                for n in range(n_img):
                    for i in range(gy.shape[2]):
                        h = i * sh + a * dh - top
                        if h < 0 or h >= h_in:
                            continue
                        for j in range(gy.shape[3]):
                            v = j * sw + b * dw - left
                            if 0 <= v < w_in:
                                acc += gy[n, o, i, j] * x[n, xc, h, v]
                gw[o, c, a, b] = acc


def _geometry(args):
    """(sh, sw, dh, dw, top, left): the numbers the loops need (bottom and right padding only set the sizes)."""
    (sh, sw), (dh, dw) = args.stride, args.dilation
    top, _, left, _ = args.padding
    return sh, sw, dh, dw, top, left


def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias: (N, C_out, H_out, W_out), x's dtype."""
    y = np.empty(args.out_shape, dtype=x.dtype)
    bias = np.zeros(w.shape[0], dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    if y.size:
        _forward(np.ascontiguousarray(x), np.ascontiguousarray(w), bias, y, *_geometry(args))
    return y


def grad_input(grad_y, w, input_hw, args):
    """grad_x (N, C_in, *input_hw): the adjoint of :func:`forward` (input_hw may exceed the smallest input that
    gives grad_y's size, as a transposed convolution's output_padding asks)."""
    n, (h, w_in) = grad_y.shape[0], input_hw
    gx = np.zeros((n, w.shape[1] * args.groups, h, w_in), dtype=grad_y.dtype)
    if gx.size and grad_y.size:
        _grad_input(np.ascontiguousarray(grad_y), np.ascontiguousarray(w), gx, *_geometry(args))
    return gx


def grad_weight(x, grad_y, args):
    """grad_w (C_out, C_in/groups, kh, kw)."""
    gw = np.zeros((grad_y.shape[1], x.shape[1] // args.groups) + tuple(args.kernel_hw), dtype=x.dtype)
    if x.size and grad_y.size:
        _grad_weight(np.ascontiguousarray(x), np.ascontiguousarray(grad_y), gw, *_geometry(args))
    return gw


class PlainNumbaBackend(Backend):
    """The three convolution loops above; NumPy pooling."""

    name = "numba-plain"
    forward = staticmethod(forward)
    grad_input = staticmethod(grad_input)
    grad_weight = staticmethod(grad_weight)


backend = PlainNumbaBackend()
