"""``auto``: the backend that picks, per operation, the fastest of the others (the rule and its measurements are
in :mod:`tinyconv.kernels`' docstring).

It is a backend like the others (same interface); its conv methods hand the call to the backend its rule
chooses, and :meth:`AutoBackend.choose` tells which one that is, so that a graph node can record the choice.
"""
from __future__ import annotations

from . import direct, im2col, numba_jit
from .backend import Backend

__all__ = ["AutoBackend", "backend", "CONV_OPS", "IM2COL_MIN_K", "IM2COL_MIN_OG"]

CONV_OPS = ("forward", "grad_input", "grad_weight")
IM2COL_MIN_K = 512   # forward: im2col from this many multiply-adds per output (C_in/groups * kh * kw)
IM2COL_MIN_OG = 32   # grad_input: im2col from this many output channels per group


class AutoBackend(Backend):
    """Delegates every call to ``numba`` or ``im2col`` by the rule (``im2col`` and NumPy pooling without JIT)."""

    name = "auto"

    def choose(self, op, x_shape, w_shape, stride):
        if not numba_jit.jit_enabled():
            if op not in CONV_OPS:
                raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
            return im2col.backend
        c_out, cg, kh, kw = w_shape
        unit_stride = stride[0] == 1 and stride[1] == 1
        taps = kh * kw
        og = c_out * cg // max(1, x_shape[1])  # output channels per group
        depthwise = numba_jit.is_depthwise(x_shape[1], c_out, cg, x_shape[1] // max(1, cg))
        if op == "forward":
            fast = depthwise or (unit_stride and taps > 1 and cg * taps < IM2COL_MIN_K)
        elif op == "grad_input":
            fast = depthwise or (taps > 1 and og < IM2COL_MIN_OG)
        elif op == "grad_weight":
            batch_last = x_shape[0] >= numba_jit.BATCH_LAST_MIN_N
            fast = depthwise or (unit_stride and (batch_last or cg * taps <= 160))
        else:
            raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
        return numba_jit.backend if fast else im2col.backend

    def choose_pool(self):
        return numba_jit.backend if numba_jit.jit_enabled() else direct.backend

    @property
    def pool_name(self):
        return self.choose_pool().pool_name

    def forward(self, x, w, args, bias=None):
        return self.choose("forward", x.shape, w.shape, args.stride).forward(x, w, args, bias)

    def grad_input(self, grad_y, w, input_hw, args):
        x_shape = (grad_y.shape[0], w.shape[1] * args.groups) + tuple(input_hw)
        return self.choose("grad_input", x_shape, w.shape, args.stride).grad_input(grad_y, w, input_hw, args)

    def grad_weight(self, x, grad_y, args):
        w_shape = (grad_y.shape[1], x.shape[1] // args.groups) + args.kernel_hw
        return self.choose("grad_weight", x.shape, w_shape, args.stride).grad_weight(x, grad_y, args)

    def max_pool(self, x, args):
        return self.choose_pool().max_pool(x, args)

    def max_pool_backward(self, grad_y, argmax, input_shape, non_overlapping=False):
        return self.choose_pool().max_pool_backward(grad_y, argmax, input_shape, non_overlapping)

    def avg_pool(self, x, args, count_include_pad=True, divisor_override=None):
        return self.choose_pool().avg_pool(x, args, count_include_pad, divisor_override)

    def avg_pool_backward(self, grad_y, input_shape, args, count_include_pad=True, divisor_override=None):
        return self.choose_pool().avg_pool_backward(grad_y, input_shape, args, count_include_pad,
                                                    divisor_override)


backend = AutoBackend()
