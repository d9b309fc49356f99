"""The textbook convolution: the definition, written as loops over kernel taps.

Read this file next to the formula (cross-correlation, as every deep-learning library
computes it)::

    y[n, o, i, j] = sum_c sum_a sum_b  x_pad[n, g*Cg + c, i*sh + a*dh, j*sw + b*dw] * w[o, c, a, b]

where ``g = o // Og`` is the group of output channel ``o``, ``Cg = C_in / groups`` and
``Og = C_out / groups``.  We loop over groups ``g`` and kernel taps ``(a, b)`` in
Python; for one tap, the input pixels it touches for ALL output positions form one
strided slice of the padded input (rows ``a*dh, a*dh + sh, ...``), so the sums over
the batch, the channels and the output positions are done by NumPy on whole arrays.

The backward pass is the same loop read the other way:

* ``grad_x_pad[n, c, i*sh + a*dh, j*sw + b*dw] += grad_y[n, o, i, j] * w[o, c, a, b]``
  (scatter each tap's contribution into a padded buffer with a slice-add, crop at the end);
* ``grad_w[o, c, a, b] = sum_n sum_i sum_j grad_y[n, o, i, j] * x_pad[n, c, i*sh + a*dh, j*sw + b*dw]``.

This kernel is the reference the others are tested against: it is correct for every
stride / padding / dilation / groups and fast enough for tests, not for training.
Pooling: NumPy's (:mod:`.pooling`), inherited from :class:`~.backend.Backend`.
"""
from __future__ import annotations

import numpy as np

from .backend import Backend
from .windows import pad, tap

__all__ = ["forward", "grad_input", "grad_weight", "DirectBackend", "backend"]


def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias.  x: (N, C_in, H, W), w: (C_out, C_in/groups, kh, kw), bias: (C_out,) or None."""
    dtype = x.dtype
    (sh, sw), (dh, dw), G = args.stride, args.dilation, args.groups
    kh, kw = args.kernel_hw
    n, c_out, ho, wo = args.out_shape
    cg, og = x.shape[1] // G, c_out // G

    x_pad = pad(x, args.padding)
    y = np.zeros(args.out_shape, dtype=dtype)
    for g in range(G):
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for a in range(kh):
            for b in range(kw):
                # x_pad[n, c, i*sh + a*dh, j*sw + b*dw] for every n, c in group g, i, j
                patch = x_pad[:, ins, tap(a, dh, sh, ho), tap(b, dw, sw, wo)]
                # sum over the group's input channels c, weighted by w[o, c, a, b]
                y[:, outs] += np.einsum("nchw,oc->nohw", patch, w[outs, :, a, b])
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def grad_input(grad_y, w, input_hw, args):
    """grad_x of conv2d (the adjoint of :func:`forward` for an input of size
    ``input_hw``).  ``input_hw`` may be larger than the smallest input giving grad_y's
    size (transposed convolution with output_padding): rows no window covers get 0."""
    h, w_in = input_hw
    n, c_out = grad_y.shape[0], grad_y.shape[1]
    dtype = grad_y.dtype
    (sh, sw), (dh, dw), G = args.stride, args.dilation, args.groups
    top, bottom, left, right = args.padding
    kh, kw = args.kernel_hw
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    c_in = w.shape[1] * G
    cg, og = w.shape[1], c_out // G

    grad_x_pad = np.zeros((n, c_in, h + top + bottom, w_in + left + right), dtype=dtype)
    for g in range(G):
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for a in range(kh):
            for b in range(kw):
                # every output position (i, j) sends grad_y * w[o, c, a, b] back to the
                # input pixel that tap (a, b) read: x_pad[n, c, i*sh + a*dh, j*sw + b*dw]
                grad_x_pad[:, ins, tap(a, dh, sh, ho), tap(b, dw, sw, wo)] += np.einsum(
                    "nohw,oc->nchw", grad_y[:, outs], w[outs, :, a, b])
    return np.ascontiguousarray(grad_x_pad[:, :, top:top + h, left:left + w_in])


def grad_weight(x, grad_y, args):
    """grad_w of conv2d: (C_out, C_in/groups, kh, kw)."""
    c_out = grad_y.shape[1]
    w_shape = (c_out, x.shape[1] // args.groups) + args.kernel_hw
    dtype = x.dtype
    (sh, sw), (dh, dw), G = args.stride, args.dilation, args.groups
    kh, kw = args.kernel_hw
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    cg, og = x.shape[1] // G, c_out // G

    x_pad = pad(x, args.padding)
    grad_w = np.zeros(w_shape, dtype=dtype)
    for g in range(G):
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for a in range(kh):
            for b in range(kw):
                patch = x_pad[:, ins, tap(a, dh, sh, ho), tap(b, dw, sw, wo)]
                # sum over the batch and the output positions
                grad_w[outs, :, a, b] = np.einsum("nohw,nchw->oc", grad_y[:, outs], patch)
    return grad_w


class DirectBackend(Backend):
    """The reference: loops over the kernel taps, NumPy for everything else."""

    name = "direct"
    forward = staticmethod(forward)
    grad_input = staticmethod(grad_input)
    grad_weight = staticmethod(grad_weight)


backend = DirectBackend()
