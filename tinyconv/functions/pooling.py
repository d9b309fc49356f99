"""Pooling as autograd Functions on arrays: ``MaxPool2d``, ``AvgPool2d`` (running the pooling kernels of
:mod:`tinyconv.kernels`) and ``AdaptiveAvgPool2d``. The arguments arrive normalised and checked by
:mod:`tinyconv.functional`.
"""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from ..autograd import Function
from .base import KernelFunction

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(KernelFunction):
    """Max pooling; the node keeps the argmax of every window (graph name ``MaxPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, kernel, unbatched, indices_out=None):
        if unbatched:
            x = x[None]
        name = K.choose_pool_kernel(x.shape, kernel=kernel)
        y, argmax = K.POOL_KERNELS[name].max_pool2d_forward(x, kernel_size, stride, padding, dilation,
                                                            ceil_mode)
        if indices_out is not None:
            indices_out.append(argmax[0] if unbatched else argmax)
        if ctx.needs_input_grad[0]:
            ctx.saved_argmax = argmax  # "saved_*" attributes are freed by the engine after backward
        ctx.x_shape, ctx.unbatched, ctx.kernel, ctx.kernel_used = x.shape, unbatched, kernel, name
        # non-overlapping windows: every input pixel is in at most one window -> a plain scatter
        ctx.non_overlapping = all(s >= d * (k - 1) + 1 for k, s, d in zip(kernel_size, stride, dilation))
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        ctx.saved_tensors  # raises the usual error if the graph was already freed
        g = MaxPool2d._grad_output(ctx, g)
        name = K.choose_pool_kernel(ctx.x_shape, kernel=ctx.kernel)
        gx = K.POOL_KERNELS[name].max_pool2d_backward(g, ctx.saved_argmax, ctx.x_shape,
                                                      non_overlapping=ctx.non_overlapping)
        return (gx[0] if ctx.unbatched else gx,)


class AvgPool2d(KernelFunction):
    """Average pooling (graph name ``AvgPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, kernel,
                unbatched):
        if unbatched:
            x = x[None]
        name = K.choose_pool_kernel(x.shape, kernel=kernel)
        y = K.POOL_KERNELS[name].avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode,
                                                    count_include_pad, divisor_override)
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        ctx.x_shape, ctx.unbatched, ctx.kernel, ctx.kernel_used = x.shape, unbatched, kernel, name
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        g = AvgPool2d._grad_output(ctx, g)
        name = K.choose_pool_kernel(ctx.x_shape, kernel=ctx.kernel)
        gx = K.POOL_KERNELS[name].avg_pool2d_backward(g, ctx.x_shape, *ctx.args)
        return (gx[0] if ctx.unbatched else gx,)


def _adaptive_bounds(n_in: int, n_out: int):
    """PyTorch's adaptive windows: [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))."""
    i = np.arange(n_out)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


class AdaptiveAvgPool2d(Function):
    """Adaptive average pooling to a fixed output size (graph name ``AdaptiveAvgPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, output_size, unbatched):
        if unbatched:
            x = x[None]
        n, c, h, w = x.shape
        oh, ow = output_size
        hs, he = _adaptive_bounds(h, oh)
        ws, we = _adaptive_bounds(w, ow)
        ctx.bounds, ctx.x_shape, ctx.unbatched = (hs, he, ws, we), x.shape, unbatched
        if h % oh == 0 and w % ow == 0:  # equal, non-overlapping windows: one reshape
            y = x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5), dtype=x.dtype)
        else:
            y = np.empty((n, c, oh, ow), dtype=x.dtype)
            for i in range(oh):
                for j in range(ow):
                    y[:, :, i, j] = x[:, :, hs[i]:he[i], ws[j]:we[j]].mean(axis=(2, 3), dtype=x.dtype)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        if ctx.unbatched:
            g = g[None]
        hs, he, ws, we = ctx.bounds
        gx = np.zeros(ctx.x_shape, dtype=g.dtype)
        for i in range(len(hs)):
            for j in range(len(ws)):
                area = (he[i] - hs[i]) * (we[j] - ws[j])
                gx[:, :, hs[i]:he[i], ws[j]:we[j]] += (g[:, :, i, j] / area)[:, :, None, None]
        return (gx[0] if ctx.unbatched else gx,)
