"""Convolution and pooling layers: ``Conv2d``, ``Conv1d``, ``ConvTranspose2d``, ``MaxPool2d``, ``AvgPool2d``,
``AdaptiveAvgPool2d`` (PyTorch's names, arguments, weight layouts and default initialisation).

Every layer takes an optional ``kernel=`` naming the algorithm it runs ("direct", "im2col", "numba", "auto";
"numpy"/"numba" for pooling); None follows the default in force (``tc.use_kernel`` / ``tc.set_default_kernel``).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import kernels
from ..kernels import shapes
from ..tensor import DEFAULT_DTYPE, Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Conv2d", "Conv1d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _positive_int(v, name, layer):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {v!r}")
    return int(v)


def _check_kernel_name(kernel, pool=False):
    if kernel is None:
        return None
    if pool:
        kernels.get_pool_kernel(kernel)
    else:
        kernels.get_kernel(kernel)
    return kernel.lower()


class _ConvNd(Module):
    """Shared parameters and checks of the convolution layers."""

    _layer = "Conv"

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 kernel, transposed, dtype):
        super().__init__()
        layer = self._layer
        self.in_channels = _positive_int(in_channels, "in_channels", layer)
        self.out_channels = _positive_int(out_channels, "out_channels", layer)
        self.groups = _positive_int(groups, "groups", layer)
        if self.in_channels % self.groups:
            raise ValueError(f"{layer}: in_channels={in_channels} must be divisible by groups={groups}")
        if self.out_channels % self.groups:
            raise ValueError(f"{layer}: out_channels={out_channels} must be divisible by groups={groups}")
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        for name, v in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
            if min(v) <= 0:
                raise ValueError(f"{layer}: {name} must be positive, got {name}={v}")
        self.padding = padding
        self.kernel = _check_kernel_name(kernel)
        dt = np.dtype(dtype or DEFAULT_DTYPE)
        if transposed:  # PyTorch's layout for transposed convolutions
            weight_shape = (self.in_channels, self.out_channels // self.groups) + tuple(kernel_size)
        else:
            weight_shape = (self.out_channels, self.in_channels // self.groups) + tuple(kernel_size)
        self.weight = Parameter(np.empty(weight_shape, dtype=dt))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=√5) on the weight, bias ~ U(-1/√fan_in, 1/√fan_in)."""
        init.default_init_(self.weight, self.bias)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in (0, (0, 0), (0, 0, 0, 0), (0,)):
            s += f", padding={self.padding!r}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if getattr(self, "output_padding", None) not in (None, (0, 0)):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.kernel is not None:
            s += f", kernel={self.kernel!r}"
        return s


def _conv_padding(padding, kernel_size, stride, dilation, layer):
    """Validate a Conv2d padding at construction; keep it in PyTorch's form (str, or a pair / 4-tuple)."""
    if isinstance(padding, str):
        shapes.normalize_padding(padding, kernel_size, stride, dilation)  # 'same' + stride > 1, unknown
        return padding.lower()
    p = shapes.normalize_padding(padding, kernel_size, stride, dilation)
    return (p[0], p[2]) if (p[0] == p[1] and p[2] == p[3]) else p


class Conv2d(_ConvNd):
    """2-D convolution layer. weight ``(out_channels, in_channels/groups, kh, kw)``, bias ``(out_channels,)``.

    Input ``(N, C_in, H, W)`` (or ``(C_in, H, W)``) → output ``(N, C_out, H_out, W_out)`` with
    ``H_out = floor((H + p_top + p_bottom - dilation·(kh - 1) - 1) / stride) + 1``.
    """

    _layer = "Conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, kernel=None, *, dtype=None):
        ks = shapes.pair(kernel_size, "kernel_size")
        st = shapes.pair(stride, "stride")
        dl = shapes.pair(dilation, "dilation")
        pad = _conv_padding(padding, ks, st, dl, "Conv2d")
        super().__init__(in_channels, out_channels, ks, st, pad, dl, groups, bias, kernel, False, dtype)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        kernel=self.kernel)


class Conv1d(_ConvNd):
    """1-D convolution layer (e.g. over audio frames or word vectors). weight ``(out, in/groups, k)``.

    Input ``(N, C_in, L)`` (or ``(C_in, L)``) → output ``(N, C_out, L_out)``."""

    _layer = "Conv1d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, kernel=None, *, dtype=None):
        ks = (shapes.single(kernel_size, "kernel_size"),)
        st = (shapes.single(stride, "stride"),)
        dl = (shapes.single(dilation, "dilation"),)
        for name, v in (("kernel_size", ks[0]), ("stride", st[0]), ("dilation", dl[0])):
            _positive_int(v, name, "Conv1d")
        if isinstance(padding, str):
            shapes.normalize_padding(padding, (1,) + ks, (1,) + st, (1,) + dl)
            pad = padding.lower()
        else:
            p = shapes.single(padding, "padding")
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
                raise ValueError(f"Conv1d: padding must be a non-negative int, 'same' or 'valid', got {padding!r}")
            pad = (int(p),)
        super().__init__(in_channels, out_channels, ks, st, pad, dl, groups, bias, kernel, False, dtype)

    def forward(self, input: Tensor) -> Tensor:
        padding = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(input, self.weight, self.bias, self.stride[0], padding, self.dilation[0], self.groups,
                        kernel=self.kernel)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution (upsampling). weight ``(in_channels, out_channels/groups, kh, kw)`` as in
    PyTorch; output ``(H - 1)·stride - 2·padding + dilation·(kh - 1) + output_padding + 1``."""

    _layer = "ConvTranspose2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, kernel=None, *, dtype=None):
        ks = shapes.pair(kernel_size, "kernel_size")
        st = shapes.pair(stride, "stride")
        dl = shapes.pair(dilation, "dilation")
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair, got {padding!r}")
        pad = _conv_padding(padding, ks, st, dl, "ConvTranspose2d")
        op = shapes.pair(output_padding, "output_padding")
        for i in range(2):
            if op[i] < 0 or not (op[i] < st[i] or op[i] < dl[i]):
                raise ValueError(f"ConvTranspose2d: output_padding must be smaller than either stride or "
                                 f"dilation, got output_padding={op}, stride={st}, dilation={dl}")
        super().__init__(in_channels, out_channels, ks, st, pad, dl, groups, bias, kernel, True, dtype)
        self.output_padding = op

    def forward(self, input: Tensor) -> Tensor:
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation, kernel=self.kernel)


# ------------------------------------------------------------------------------------------------ pooling
def _check_pool_window(layer, kernel_size, stride, padding, dilation):
    """The window arguments, checked at construction by the one pooling check of :mod:`tinyconv.kernels.shapes`."""
    try:
        shapes.normalize_pool_window(kernel_size, stride, padding, dilation)
    except ValueError as e:
        raise ValueError(f"{layer}: {e}") from None


class MaxPool2d(Module):
    """2-D max pooling (no parameters). ``return_indices=True`` makes it return ``(output, indices)``."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False,
                 kernel=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)
        self.kernel = _check_kernel_name(kernel, pool=True)
        _check_pool_window("MaxPool2d", kernel_size, self.stride, padding, dilation)

    def forward(self, input: Tensor):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices, kernel=self.kernel)

    def extra_repr(self) -> str:
        s = (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
             f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")
        return s + (f", kernel={self.kernel!r}" if self.kernel else "")


class AvgPool2d(Module):
    """2-D average pooling (no parameters)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, kernel=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override
        self.kernel = _check_kernel_name(kernel, pool=True)
        _check_pool_window("AvgPool2d", kernel_size, self.stride, padding, 1)

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override, kernel=self.kernel)

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return s + (f", kernel={self.kernel!r}" if self.kernel else "")


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size (int or pair; None keeps that input size)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
