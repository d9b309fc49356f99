"""Convolution as autograd Functions on arrays: ``Conv2d`` and ``ConvTranspose2d`` (graph names
``Conv2dBackward``, ``ConvTranspose2dBackward``), running the kernels of :mod:`tinyconv.kernels`.

* ``Conv2d``: ``conv2d_forward`` forward; backward ``conv2d_grad_input`` (only if the input needs a gradient,
  so a first layer never computes the images' gradient) and ``conv2d_grad_weight`` (only if the weight needs
  one). The kernel adds the bias while it writes the output; its gradient is ``grad_out`` summed over (N, H, W).
* ``ConvTranspose2d``: no fourth algorithm. The transposed convolution IS the adjoint of a convolution, so its
  forward is ``conv2d_grad_input`` (on the output size with ``output_padding``), the gradient of its input is
  ``conv2d_forward`` and the gradient of its weight is ``conv2d_grad_weight`` with the roles of the arrays
  swapped.

The arguments arrive normalised and checked by :mod:`tinyconv.functional` (a ``ConvArgs`` and a backend object);
nothing is checked again here or in the backends.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.shapes import conv_args
from .base import KernelFunction

__all__ = ["Conv2d", "ConvTranspose2d", "conv2d_forward", "conv2d_backward"]


def _cast(a, dtype):
    return None if a is None else a.astype(dtype, copy=False)


def _bias_grad(g: np.ndarray) -> np.ndarray:
    """grad_out summed over (N, H, W): one value per channel (einsum makes a single pass over g, where
    ``g.sum(axis=(0, 2, 3))`` makes several)."""
    # The positions' count is spelled out: reshape cannot infer -1 for an empty batch.
    return np.einsum("ncp->c", g.reshape(g.shape[0], g.shape[1], math.prod(g.shape[2:])))


def conv2d_forward(ctx, x, w, b, args, backend, max_pool=None):
    """The batched forward of :class:`Conv2d` (x ``(N, C_in, H, W)``), shared with the fused
    :class:`~tinyconv.functions.fused.Conv2dReluMaxPool2d`: runs the chosen backend, records on ``ctx`` the
    backends of the gradients it will need. Returns ``(y, (x or None, w or None))``, the arrays the backward
    needs (x only for grad_weight, w only for grad_input). With ``max_pool=(pool, pool_args)``, y is ``(out,
    argmax)``, the max pooling of the conv by the backend ``pool``: in the conv's own loops where its backend has
    them (:meth:`~tinyconv.kernels.Backend.forward_max_pool`, for the same pooling kernels), else the two in turn."""
    run = backend.choose("forward", x.shape, w.shape, args, x.dtype)
    if max_pool is None:
        y = run.forward(x, w, args, b)
    else:
        pool, pool_args = max_pool
        y = run.forward_max_pool(x, w, args, b, pool_args) if run.pool_name == pool.pool_name else None
        if y is None:
            y = pool.max_pool(run.forward(x, w, args, b), pool_args)
    need_x, need_w, _ = ctx.needs_input_grad
    ctx.args, ctx.x_shape, ctx.kernel_used = args, x.shape, run.name
    if need_x:
        ctx.grad_input_backend = backend.choose("grad_input", x.shape, w.shape, args, x.dtype)
    if need_w:
        ctx.grad_weight_backend = backend.choose("grad_weight", x.shape, w.shape, args, x.dtype)
    return y, (x if need_w else None, w if need_x else None)


def conv2d_backward(ctx, g, x, w):
    """``(grad_x, grad_w, grad_b)`` of :func:`conv2d_forward` for a batched, C-contiguous ``g``; None where
    ``ctx.needs_input_grad`` says no."""
    need_x, need_w, need_b = ctx.needs_input_grad
    gx = ctx.grad_input_backend.grad_input(g, w, ctx.x_shape[2:], ctx.args) if need_x else None
    gw = ctx.grad_weight_backend.grad_weight(x, g, ctx.args) if need_w else None
    gb = _bias_grad(g) if need_b else None
    return gx, gw, gb


class Conv2d(KernelFunction):
    """y = conv2d(x, w) + b on a chosen backend (graph name ``Conv2dBackward``).

    ``args`` are the normalised :class:`~tinyconv.kernels.shapes.ConvArgs` of the batched call, ``backend`` a
    :class:`~tinyconv.kernels.Backend` (``auto`` included): the backends that run the forward and the gradients
    are chosen here, once, and the node keeps them for the backward."""

    @staticmethod
    def forward(ctx, x, w, b, args, backend, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        y, saved = conv2d_forward(ctx, x[None] if unbatched else x, w, b, args, backend)
        ctx.save_for_backward(*saved)  # only what a gradient needs
        ctx.unbatched = unbatched
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx, gw, gb = conv2d_backward(ctx, Conv2d._grad_output(ctx, g), x, w)
        if gx is not None and ctx.unbatched:
            gx = gx[0]
        return gx, gw, gb


class ConvTranspose2d(KernelFunction):
    """y = conv_transpose2d(x, w) + b: the adjoint of conv2d, built from the same three backend methods.

    ``args`` are the :class:`~tinyconv.kernels.shapes.ConvArgs` of :func:`normalize_conv_transpose_args`: the
    stride, padding, dilation and groups of the convolution it is the adjoint of, and the output shape."""

    @staticmethod
    def forward(ctx, x, w, b, args, backend, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        if unbatched:
            x = x[None]
        x = np.ascontiguousarray(x)
        # the equivalent conv2d maps an image of the output's shape (C_out channels) to x (C_in channels);
        # w is its weight
        conv_x_shape = args.out_shape
        run = backend.choose("grad_input", conv_x_shape, w.shape, args, x.dtype)
        y = run.grad_input(x, w, conv_x_shape[2:], args)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        ctx.x_shape, ctx.unbatched, ctx.kernel_used = x.shape, unbatched, run.name
        ctx.conv_args = conv_args(conv_x_shape, w.shape, args.stride, args.padding, args.dilation, args.groups)
        if need_x:
            ctx.grad_input_backend = backend.choose("forward", conv_x_shape, w.shape, ctx.conv_args, x.dtype)
        if need_w:
            ctx.grad_weight_backend = backend.choose("grad_weight", conv_x_shape, w.shape, ctx.conv_args, x.dtype)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = ConvTranspose2d._grad_output(ctx, g)
        gx = gw = gb = None
        if need_x:
            gx = ctx.grad_input_backend.forward(g, w, ctx.conv_args)
            h, w_ = ctx.x_shape[2:]
            if gx.shape[2:] != (h, w_):  # output_padding >= stride: rows no input pixel reached
                gx = np.ascontiguousarray(gx[:, :, :h, :w_])
            if ctx.unbatched:
                gx = gx[0]
        if need_w:
            gw = ctx.grad_weight_backend.grad_weight(g, x, ctx.conv_args)
        if need_b:
            gb = _bias_grad(g)
        return gx, gw, gb
