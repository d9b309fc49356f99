"""Convolution as autograd Functions on arrays: ``Conv2d`` and ``ConvTranspose2d`` (graph names
``Conv2dBackward``, ``ConvTranspose2dBackward``), running the kernels of :mod:`tinyconv.kernels`.

* ``Conv2d``: ``conv2d_forward`` forward; backward ``conv2d_grad_input`` (only if the input needs a gradient,
  so a first layer never computes the images' gradient) and ``conv2d_grad_weight`` (only if the weight needs
  one). The kernel adds the bias while it writes the output; its gradient is ``grad_out`` summed over (N, H, W).
* ``ConvTranspose2d``: no fourth algorithm. The transposed convolution IS the adjoint of a convolution, so its
  forward is ``conv2d_grad_input`` (on the output size with ``output_padding``), the gradient of its input is
  ``conv2d_forward`` and the gradient of its weight is ``conv2d_grad_weight`` with the roles of the arrays
  swapped.

The arguments arrive normalised and checked by :mod:`tinyconv.functional`; nothing is checked again here.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels as K
from .base import KernelFunction

__all__ = ["Conv2d", "ConvTranspose2d"]


def _cast(a, dtype):
    return None if a is None else a.astype(dtype, copy=False)


def _bias_grad(g: np.ndarray) -> np.ndarray:
    """grad_out summed over (N, H, W): one value per channel (einsum's single pass is ~3x
    faster than ``g.sum(axis=(0, 2, 3))`` on LeNet's (128, 6, 28, 28))."""
    # The positions' count is spelled out: reshape cannot infer -1 for an empty batch.
    return np.einsum("ncp->c", g.reshape(g.shape[0], g.shape[1], math.prod(g.shape[2:])))


class _ConvFunction(KernelFunction):
    """What Conv2d and ConvTranspose2d also share: what the forward keeps for the backward (only what
    a requested gradient needs)."""

    @staticmethod
    def _keep(ctx, x, w, args, kernel, name, unbatched):
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        ctx.args = args
        ctx.x_shape, ctx.w_shape = x.shape, w.shape
        ctx.kernel, ctx.kernel_used, ctx.unbatched = kernel, name, unbatched


class Conv2d(_ConvFunction):
    """y = conv2d(x, w) + b with kernel-selectable forward/backward (graph name ``Conv2dBackward``)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, kernel, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        if unbatched:
            x = x[None]
        name = K.choose_kernel(x.shape, w.shape, stride, padding, dilation, groups, op="forward",
                               kernel=kernel)
        y = K.KERNELS[name].conv2d_forward(x, w, stride, padding, dilation, groups, bias=b)
        Conv2d._keep(ctx, x, w, (stride, padding, dilation, groups), kernel, name, unbatched)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = Conv2d._grad_output(ctx, g)
        stride, padding, dilation, groups = ctx.args
        gx = gw = gb = None
        if need_x:
            name = K.choose_kernel(ctx.x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="grad_input", kernel=ctx.kernel)
            gx = K.KERNELS[name].conv2d_grad_input(g, w, ctx.x_shape[2:], *ctx.args)
            if ctx.unbatched:
                gx = gx[0]
        if need_w:
            name = K.choose_kernel(ctx.x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="grad_weight", kernel=ctx.kernel)
            gw = K.KERNELS[name].conv2d_grad_weight(x, g, ctx.w_shape[2:], *ctx.args)
        if need_b:
            gb = _bias_grad(g)
        return gx, gw, gb


class ConvTranspose2d(_ConvFunction):
    """y = conv_transpose2d(x, w) + b: the adjoint of conv2d, built from the same three kernels."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, out_hw, kernel, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        if unbatched:
            x = x[None]
        x = np.ascontiguousarray(x)
        # the equivalent conv2d maps an image of out_hw (C_out channels) to x (C_in channels); w is its weight
        conv_x_shape = (x.shape[0], w.shape[1] * groups) + tuple(out_hw)
        name = K.choose_kernel(conv_x_shape, w.shape, stride, padding, dilation, groups, op="grad_input",
                               kernel=kernel)
        y = K.KERNELS[name].conv2d_grad_input(x, w, out_hw, stride, padding, dilation, groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        ConvTranspose2d._keep(ctx, x, w, (stride, padding, dilation, groups), kernel, name, unbatched)
        ctx.conv_x_shape = conv_x_shape
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = ConvTranspose2d._grad_output(ctx, g)
        stride, padding, dilation, groups = ctx.args
        gx = gw = gb = None
        if need_x:
            name = K.choose_kernel(ctx.conv_x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="forward", kernel=ctx.kernel)
            gx = K.KERNELS[name].conv2d_forward(g, w, *ctx.args)
            h, w_ = ctx.x_shape[2:]
            if gx.shape[2:] != (h, w_):  # output_padding >= stride: rows no input pixel reached
                gx = np.ascontiguousarray(gx[:, :, :h, :w_])
            if ctx.unbatched:
                gx = gx[0]
        if need_w:
            name = K.choose_kernel(ctx.conv_x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="grad_weight", kernel=ctx.kernel)
            gw = K.KERNELS[name].conv2d_grad_weight(g, x, ctx.w_shape[2:], *ctx.args)
        if need_b:
            gb = _bias_grad(g)
        return gx, gw, gb
