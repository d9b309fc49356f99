"""``auto``: the backend that picks, per operation, the fastest of the others (the rule and its measurements are
in :mod:`tinyconv.kernels`' docstring).

It is a backend like the others (same interface); its conv methods hand the call to the backend its rule
chooses, and :meth:`AutoBackend.choose` tells which one that is, so that a graph node can record the choice.
"""
from __future__ import annotations

from . import direct, im2col
from .backend import Backend
from .numba_jit.fast import conv as numba_jit
from .shapes import conv_output_size

__all__ = ["AutoBackend", "backend", "CONV_OPS", "IM2COL_MIN_K", "IM2COL_MIN_OG", "NUMBA_MIN_IN_POS",
           "NUMBA_MIN_IN_POS_CHANNELS", "BLOCKED_GW_MAX_K",
           "NUMBA_MAX_STRIDED_OUT_POS"]

CONV_OPS = ("forward", "grad_input", "grad_weight")
IM2COL_MIN_K = 512   # forward: im2col from this many multiply-adds per output (C_in/groups * kh * kw)
IM2COL_MIN_OG = 32   # grad_input: im2col from this many output channels per group
NUMBA_MIN_IN_POS = 1024  # grad_input: numba from inputs of this many positions ...
NUMBA_MIN_IN_POS_CHANNELS = 8  # ... with at least this many input channels per group
NUMBA_MAX_STRIDED_OUT_POS = 256  # grad_weight, strided: numba's batch-last kernel up to this many output positions
BLOCKED_GW_MAX_K = 1024  # grad_weight: numba's blocked kernel up to this many multiply-adds per output


class AutoBackend(Backend):
    """Delegates every call to ``numba`` or ``im2col`` by the rule (``im2col`` and NumPy pooling without JIT)."""

    name = "auto"

    def choose(self, op, x_shape, w_shape, args):
        if not numba_jit.jit_enabled():
            if op not in CONV_OPS:
                raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
            return im2col.backend
        c_out, cg, kh, kw = w_shape
        unit_stride = args.stride[0] == 1 and args.stride[1] == 1
        taps = kh * kw
        og = c_out * cg // max(1, x_shape[1])  # output channels per group
        depthwise = numba_jit.is_depthwise(x_shape[1], c_out, cg, x_shape[1] // max(1, cg))
        # the conv's output size (args.out_shape is not it inside a transposed convolution)
        top, bottom, left, right = args.padding
        out_hw = (conv_output_size(x_shape[2], kh, args.stride[0], top + bottom, args.dilation[0]),
                  conv_output_size(x_shape[3], kw, args.stride[1], left + right, args.dilation[1]))
        # the register-blocked kernels (grad_weight: their position-major one, from 32 output channels per group and
        # up to BLOCKED_GW_MAX_K multiply-adds per output; 64->64 3x3 on 8x8, batch 16: 0.58 vs 1.27 ms for
        # im2col; 256->256 3x3 on 16x16, batch 31: 62 vs 50 ms the other way round; narrower ones by the rule below)
        blocked = taps > 1 and numba_jit.uses_blocked(op, x_shape, w_shape, out_hw, args)
        if op == "forward":
            fast = depthwise or blocked or (taps > 1 and (
                (unit_stride and cg * taps < IM2COL_MIN_K) or numba_jit.uses_batch_last_forward(x_shape, out_hw, args)))
        elif op == "grad_input":
            gy_shape = (x_shape[0], c_out) + out_hw
            fast = depthwise or blocked or (taps > 1 and (
                og < IM2COL_MIN_OG or (x_shape[2] * x_shape[3] >= NUMBA_MIN_IN_POS and cg >= NUMBA_MIN_IN_POS_CHANNELS)
                or (unit_stride and numba_jit.grad_input_runs_as_forward(gy_shape, x_shape[2:], args))))
        elif op == "grad_weight":
            batch_last = x_shape[0] >= numba_jit.BATCH_LAST_MIN_N and (
                unit_stride or out_hw[0] * out_hw[1] <= NUMBA_MAX_STRIDED_OUT_POS)
            fast = depthwise or (blocked and og >= 32 and cg * taps <= BLOCKED_GW_MAX_K) or (taps > 1 and batch_last) \
                or (unit_stride and cg * taps <= 160)
        else:
            raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
        return numba_jit.backend if fast else im2col.backend

    def choose_pool(self):
        return numba_jit.backend if numba_jit.jit_enabled() else direct.backend

    @property
    def pool_name(self):
        return self.choose_pool().pool_name

    def forward(self, x, w, args, bias=None):
        return self.choose("forward", x.shape, w.shape, args).forward(x, w, args, bias)

    def grad_input(self, grad_y, w, input_hw, args):
        x_shape = (grad_y.shape[0], w.shape[1] * args.groups) + tuple(input_hw)
        return self.choose("grad_input", x_shape, w.shape, args).grad_input(grad_y, w, input_hw, args)

    def grad_weight(self, x, grad_y, args):
        w_shape = (grad_y.shape[1], x.shape[1] // args.groups) + args.kernel_hw
        return self.choose("grad_weight", x.shape, w_shape, args).grad_weight(x, grad_y, args)

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
