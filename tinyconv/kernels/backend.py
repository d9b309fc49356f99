"""``Backend``: the one interface of every convolution/pooling backend (``direct``, ``im2col``, ``numba``,
``auto``, and any you add).

A backend is one object. What it implements works on NumPy arrays and *trusts* its arguments: they were checked
and normalised once, at the public door (:mod:`tinyconv.functional`), into :class:`~.shapes.ConvArgs` /
:class:`~.shapes.PoolArgs`::

    forward(x, w, args, bias=None) -> y                   x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw)
    grad_input(grad_y, w, input_hw, args) -> grad_x       the adjoint of forward on an input of input_hw
    grad_weight(x, grad_y, args) -> grad_w                (C_out, C_in/groups, kh, kw)
    forward_max_pool(x, w, args, bias, pool_args)         (y, argmax) of max_pool(forward(...)) in one pass, or
        -> (y, argmax) or None                            None where the backend has no such loop (the default)
    max_pool(x, args) -> (y, argmax)                      argmax: flat index h*W + w per output (int32/int64)
    max_pool_backward(grad_y, argmax, input_shape, non_overlapping=False) -> grad_x
    avg_pool(x, args, count_include_pad=True, divisor_override=None) -> y
    avg_pool_backward(grad_y, input_shape, args, count_include_pad=True, divisor_override=None) -> grad_x
    choose(op, x_shape, w_shape, args, dtype=None) -> Backend   the backend that runs op: itself, except for
                                                          "auto" and "tune"
    choose_pool() -> Backend                              the same for pooling

The grad_input's ``grad_y`` may be spatially smaller than ``args.out_shape`` (a transposed convolution with
``output_padding``): the rows no window reaches get zero. float32 stays float32, float64 stays float64. Pooling is
NumPy's (:mod:`.pooling`) unless a backend brings its own (``numba`` does).

For use outside autograd (tests, benchmarks, notebooks) every backend also has *checked* doors with PyTorch-like
arguments (ints, pairs, padding as int / pair / 4-tuple / "same"), which validate with :mod:`.shapes` and then
call the methods above::

    conv2d_forward(x, w, stride, padding, dilation, groups, bias=None)
    conv2d_grad_input(grad_y, w, input_hw, stride, padding, dilation, groups)
    conv2d_grad_weight(x, grad_y, kernel_hw, stride, padding, dilation, groups)
    max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False)
    max_pool2d_backward(grad_y, argmax, input_shape, *, non_overlapping=False)
    avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None)
    avg_pool2d_backward(grad_y, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None)

A new backend subclasses :class:`Backend`, sets ``name``, implements the three conv methods and is registered with
:func:`tinyconv.kernels.register` (see docs/architecture.md).
"""
from __future__ import annotations

import numpy as np

from . import pooling
from .shapes import (
    ConvArgs,
    check_avg_pool_grad,
    check_bias,
    check_divisor_override,
    check_float_dtypes,
    check_grad_output_shape,
    check_max_pool_grad,
    check_pool_float,
    grad_weight_shape,
    normalize_conv_args,
    normalize_pool_args,
    pair,
)

__all__ = ["Backend"]


class Backend:
    """Base class of the backends: the interface (see the module docstring), NumPy pooling, checked doors."""

    name = "?"
    pool_name = "numpy"  # the name of the pooling it runs (the pooling kernels are chosen by these names)

    def __repr__(self) -> str:
        return f"<tinyconv backend {self.name!r}>"

    # ---------------------------------------------------------------- what a backend implements (trusted)
    def forward(self, x: np.ndarray, w: np.ndarray, args: ConvArgs, bias=None) -> np.ndarray:
        raise NotImplementedError(f"backend {self.name!r} has no conv forward")

    def grad_input(self, grad_y: np.ndarray, w: np.ndarray, input_hw, args: ConvArgs) -> np.ndarray:
        raise NotImplementedError(f"backend {self.name!r} has no conv grad_input")

    def grad_weight(self, x: np.ndarray, grad_y: np.ndarray, args: ConvArgs) -> np.ndarray:
        raise NotImplementedError(f"backend {self.name!r} has no conv grad_weight")

    def forward_max_pool(self, x, w, args: ConvArgs, bias, pool_args):
        """``(y, argmax)`` of ``max_pool(forward(x, w, args, bias), pool_args)`` in one pass where this backend has
        such a loop for these shapes, else None (the caller then runs the two)."""
        return None

    def choose(self, op: str, x_shape, w_shape, args: ConvArgs, dtype=None) -> "Backend":
        """The backend that runs ``op`` ("forward", "grad_input", "grad_weight") of the convolution of an input
        of ``x_shape`` with a weight of ``w_shape`` and these arguments, on arrays of ``dtype`` (None: float32)."""
        return self

    def choose_pool(self) -> "Backend":
        """The backend whose pooling runs."""
        return self

    # NumPy pooling, unless a backend brings its own
    max_pool = staticmethod(pooling.max_pool)
    max_pool_backward = staticmethod(pooling.max_pool_backward)
    avg_pool = staticmethod(pooling.avg_pool)
    avg_pool_backward = staticmethod(pooling.avg_pool_backward)

    # ---------------------------------------------------------------- checked doors (PyTorch-like arguments)
    def conv2d_forward(self, x, w, stride, padding, dilation, groups, bias=None):
        """y = conv2d(x, w) + bias, after checking every argument."""
        args = normalize_conv_args(x.shape, w.shape, stride, padding, dilation, groups)
        dtype = check_float_dtypes(x=x, w=w)
        return self.forward(x, w, args, check_bias(bias, w.shape[0], dtype))

    def conv2d_grad_input(self, grad_y, w, input_hw, stride, padding, dilation, groups):
        """grad_x of conv2d for an input of size ``input_hw``, after checking every argument."""
        h, w_in = pair(input_hw, "input_hw")
        args = normalize_conv_args((grad_y.shape[0], w.shape[1] * groups, h, w_in), w.shape, stride, padding,
                                   dilation, groups)
        check_grad_output_shape(grad_y.shape, args.out_shape)
        check_float_dtypes(grad_y=grad_y, w=w)
        return self.grad_input(grad_y, w, (h, w_in), args)

    def conv2d_grad_weight(self, x, grad_y, kernel_hw, stride, padding, dilation, groups):
        """grad_w of conv2d, after checking every argument."""
        w_shape = grad_weight_shape(x.shape, grad_y.shape[1], kernel_hw, groups)
        args = normalize_conv_args(x.shape, w_shape, stride, padding, dilation, groups)
        check_grad_output_shape(grad_y.shape, args.out_shape)
        check_float_dtypes(x=x, grad_y=grad_y)
        return self.grad_weight(x, grad_y, args)

    def max_pool2d_forward(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        """``(y, argmax)`` of max pooling, after checking every argument."""
        check_pool_float(x)
        return self.max_pool(x, normalize_pool_args(x.shape, kernel_size, stride, padding, dilation, ceil_mode))

    def max_pool2d_backward(self, grad_y, argmax, input_shape, *, non_overlapping=False):
        """grad_x of max pooling, after checking every argument."""
        input_shape = check_max_pool_grad(grad_y, argmax, input_shape)
        return self.max_pool_backward(grad_y, argmax, input_shape, non_overlapping)

    def avg_pool2d_forward(self, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                           count_include_pad=True, divisor_override=None):
        """Average pooling (no dilation, as in PyTorch), after checking every argument."""
        check_pool_float(x)
        check_divisor_override(divisor_override)
        args = normalize_pool_args(x.shape, kernel_size, stride, padding, 1, ceil_mode)
        return self.avg_pool(x, args, count_include_pad, divisor_override)

    def avg_pool2d_backward(self, grad_y, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None):
        """grad_x of average pooling, after checking every argument."""
        check_divisor_override(divisor_override)
        input_shape, args = check_avg_pool_grad(grad_y, input_shape, kernel_size, stride, padding, ceil_mode)
        return self.avg_pool_backward(grad_y, input_shape, args, count_include_pad, divisor_override)

