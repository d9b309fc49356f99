"""conv2d + bias + ReLU + max_pool2d as one autograd Function: ``Conv2dReluMaxPool2d``.

The layers a LeNet stacks, ``Conv2d -> ReLU -> MaxPool2d``, computed with fewer passes over the conv output (the
largest tensor of the step) and one graph node instead of three. It rests on one identity: ReLU is monotone, so
``max_pool(relu(y)) == relu(max_pool(y))`` for windows that hold at least one input pixel (pooling without
padding, as here). So:

* forward: ``y = conv2d(x, w) + b`` (the kernel adds the bias as it writes y), ``(p, argmax) = max_pool(y)``,
  ``out = relu(p)`` on the pooled tensor, 4x smaller for 2x2 windows. y is freed at once: the node keeps only
  ``out`` and ``argmax``, where the unfused layers keep the ReLU's full-size output. Where the conv runs on numba's
  register tiles and the pooling is 2x2 / stride 2, the tiles pool their own outputs and y is never written
  (:meth:`~tinyconv.kernels.Backend.forward_max_pool`).
* backward: ``g`` masked by ``out > 0`` (on the pooled tensor again), sent to each window's argmax, then the
  conv's backward. The unfused ReLU backward pass over the full-size gradient is gone.

The results are those of ``max_pool2d(relu(conv2d(x, w, b)))``, bit for bit: forward values, NaN propagation,
and gradients (the argmax of y and of relu(y) agree wherever the mask lets a gradient through). The tests
compare the two on every backend; :mod:`tinyconv.nn` uses this node for adjacent ``Conv2d, ReLU, MaxPool2d``
layers of a ``Sequential`` that have no hooks (``tinyconv.nn.set_fusion(False)`` turns that off), and
:func:`tinyconv.graph.print_graph` still shows the three steps (see :meth:`Conv2dReluMaxPool2d.stages`).
"""
from __future__ import annotations

import numpy as np

from ..kernels import activations
from .base import KernelFunction
from .conv import _cast, conv2d_backward, conv2d_forward

__all__ = ["Conv2dReluMaxPool2d"]


class Conv2dReluMaxPool2d(KernelFunction):
    """``relu(max_pool2d(conv2d(x, w) + b))`` = ``max_pool2d(relu(conv2d(x, w) + b))`` (graph name
    ``Conv2dReluMaxPool2dBackward``; :func:`~tinyconv.graph.print_graph` shows its three stages).

    ``conv_args``/``pool_args``: normalised ConvArgs of the batched conv and PoolArgs of the pooling of its output
    (no padding); ``backend``/``pool_backend``: the conv and pooling backends (``auto`` chooses here, once)."""

    @staticmethod
    def forward(ctx, x, w, b, conv_args, pool_args, backend, pool_backend, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        pool = pool_backend.choose_pool()
        (out, argmax), (x_saved, w_saved) = conv2d_forward(ctx, x[None] if unbatched else x, w, b, conv_args,
                                                           backend, max_pool=(pool, pool_args))
        np.maximum(out, 0, out=out)  # ReLU on the pooled values (NaN stays NaN, as in relu_forward)
        ctx.y_shape, ctx.pool, ctx.pool_used = tuple(conv_args.out_shape), pool, pool.pool_name
        ctx.unbatched = unbatched
        result = out[0] if unbatched else out
        if any(ctx.needs_input_grad):
            ctx.saved_argmax = argmax  # freed by the engine after backward, like the saved tensors
            ctx.non_overlapping = all(s >= d * (k - 1) + 1 for k, s, d in
                                      zip(pool_args.kernel_size, pool_args.stride, pool_args.dilation))
            ctx.save_for_backward(x_saved, w_saved, result)  # the output: the engine watches it for in-place writes
        return result

    @staticmethod
    def backward(ctx, g):
        x, w, out = ctx.saved_tensors
        g = Conv2dReluMaxPool2d._grad_output(ctx, g)
        if ctx.unbatched:
            out = out[None]
        g = activations.relu_backward(g, out, overwrite_grad=ctx.owns_grad and g.base is None)
        gy = ctx.pool.max_pool_backward(g, ctx.saved_argmax, ctx.y_shape, ctx.non_overlapping)
        gx, gw, gb = conv2d_backward(ctx, gy, x, w)
        if gx is not None and ctx.unbatched:
            gx = gx[0]
        return gx, gw, gb

    def extra_repr(self) -> str:
        used = getattr(self, "kernel_used", None)
        return f"kernel={used}, pool={self.pool_used}" if used else ""

    def stages(self) -> list:
        """The layers this node stands for, from its output back to its input, as
        ``(name, output shape, dtype)``: what :mod:`tinyconv.graph` prints for it."""
        dtype = self.output_meta[1] if len(self.output_meta) == 2 else None
        y_shape = self.y_shape[1:] if self.unbatched else self.y_shape
        return [(f"MaxPool2dBackward(kernel={self.pool_used})", self.output_meta[0] if self.output_meta else None,
                 dtype),
                ("ReluBackward", y_shape, dtype),
                (f"Conv2dBackward(kernel={self.kernel_used})", y_shape, dtype)]
