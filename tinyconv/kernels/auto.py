"""``auto``: the backend that hands each operation to the backend :func:`.choose.conv_backend` names.

It is a backend like the others (same interface); its conv methods hand the call to the backend the rule
chooses, and :meth:`AutoBackend.choose` tells which one that is, so that a graph node can record the choice.
"""
from __future__ import annotations

from . import choose, direct, im2col
from .backend import Backend
from .choose import CONV_OPS
from .numba_jit.fast import conv as numba_conv

__all__ = ["AutoBackend", "backend", "BACKENDS", "CONV_OPS"]

BACKENDS = {"numba": numba_conv.backend, "im2col": im2col.backend, "numpy": direct.backend}  # what choose names


class AutoBackend(Backend):
    """Delegates every call to ``numba`` or ``im2col`` by :mod:`.choose` (``im2col`` and NumPy pooling without
    JIT)."""

    name = "auto"

    def choose(self, op, x_shape, w_shape, args, dtype=None):
        return BACKENDS[choose.conv_backend(op, x_shape, w_shape, args)]

    def choose_pool(self):
        return BACKENDS[choose.pool_backend()]

    @property
    def pool_name(self):
        return self.choose_pool().pool_name

    def forward(self, x, w, args, bias=None):
        return self.choose("forward", x.shape, w.shape, args, x.dtype).forward(x, w, args, bias)

    def grad_input(self, grad_y, w, input_hw, args):
        x_shape = (grad_y.shape[0], w.shape[1] * args.groups) + tuple(input_hw)
        return self.choose("grad_input", x_shape, w.shape, args, grad_y.dtype).grad_input(grad_y, w, input_hw, args)

    def grad_weight(self, x, grad_y, args):
        w_shape = (grad_y.shape[1], x.shape[1] // args.groups) + args.kernel_hw
        return self.choose("grad_weight", x.shape, w_shape, args, x.dtype).grad_weight(x, grad_y, args)

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
