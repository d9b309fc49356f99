"""Pooling as autograd Functions on arrays: ``MaxPool2d``, ``AvgPool2d`` (running the pooling kernels of
:mod:`tinyconv.kernels`) and ``AdaptiveAvgPool2d``. The arguments arrive normalised and checked by
:mod:`tinyconv.functional`.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from .base import KernelFunction

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(KernelFunction):
    """Max pooling; the node keeps the argmax of every window (graph name ``MaxPool2dBackward``).

    ``args``: normalised :class:`~tinyconv.kernels.shapes.PoolArgs`; ``backend``: the one whose pooling runs
    (``auto`` chooses here, once)."""

    @staticmethod
    def forward(ctx, x, args, backend, unbatched, indices_out=None):
        if unbatched:
            x = x[None]
        pool = backend.choose_pool()
        y, argmax = pool.max_pool(x, args)
        if indices_out is not None:
            indices_out.append(argmax[0] if unbatched else argmax)
        if ctx.needs_input_grad[0]:
            ctx.saved_argmax = argmax  # "saved_*" attributes are freed by the engine after backward
        ctx.x_shape, ctx.unbatched, ctx.pool, ctx.kernel_used = x.shape, unbatched, pool, pool.pool_name
        # non-overlapping windows: every input pixel is in at most one window -> a plain scatter
        ctx.non_overlapping = all(s >= d * (k - 1) + 1
                                  for k, s, d in zip(args.kernel_size, args.stride, args.dilation))
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        _ = ctx.saved_tensors  # raises the usual error if the graph was already freed
        g = MaxPool2d._grad_output(ctx, g)
        gx = ctx.pool.max_pool_backward(g, ctx.saved_argmax, ctx.x_shape, ctx.non_overlapping)
        return (gx[0] if ctx.unbatched else gx,)


class AvgPool2d(KernelFunction):
    """Average pooling (graph name ``AvgPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, args, count_include_pad, divisor_override, backend, unbatched):
        if unbatched:
            x = x[None]
        pool = backend.choose_pool()
        y = pool.avg_pool(x, args, count_include_pad, divisor_override)
        ctx.args, ctx.count_include_pad, ctx.divisor_override = args, count_include_pad, divisor_override
        ctx.x_shape, ctx.unbatched, ctx.pool, ctx.kernel_used = x.shape, unbatched, pool, pool.pool_name
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        g = AvgPool2d._grad_output(ctx, g)
        gx = ctx.pool.avg_pool_backward(g, ctx.x_shape, ctx.args, ctx.count_include_pad, ctx.divisor_override)
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
