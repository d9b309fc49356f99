"""Layers without convolution: Linear, activations, Flatten, Dropout, Identity, Sequential and the losses.

Convolution and pooling layers are in :mod:`tinyconv.nn.conv`. ``Sequential`` runs adjacent ``Conv2d, ReLU,
MaxPool2d`` layers as one fused node (:func:`set_fusion`).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..environment import env_switch
from ..tensor import DEFAULT_DTYPE, Tensor
from . import init
from .conv import Conv2d, MaxPool2d
from .module import Module, Parameter

__all__ = [
    "Linear",
    "Identity",
    "Flatten",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "Sequential",
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "set_fusion",
    "fusion_enabled",
]


class Linear(Module):
    """y = x Wᵀ + b. Input (..., in_features) → output (..., out_features); PyTorch's default initialisation."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Linear: {name} must be a positive integer, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        dt = np.dtype(dtype or DEFAULT_DTYPE)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dt))
        self.bias = Parameter(np.empty(out_features, dtype=dt)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_init_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def forward(self, input):
        return input


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim``: (N, C, H, W) → (N, C·H·W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(Module):
    def forward(self, input):
        return F.relu(input)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input):
        return F.tanh(input)


class Softmax(Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, input):
        return F.log_softmax(input, self.dim)


class Dropout(Module):
    """Zero elements with probability ``p`` while training (scaling the rest by 1/(1-p)); identity in eval()."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


_fusion = env_switch("TINYCONV_FUSE", default=True)


def set_fusion(enabled: bool) -> bool:
    """Let ``Sequential`` run adjacent ``Conv2d, ReLU, MaxPool2d`` layers as one fused node
    (:func:`tinyconv.functional.conv2d_relu_max_pool2d`: the same results, bit for bit, with fewer passes over
    memory). On by default; ``TINYCONV_FUSE=0`` (or ``off``) in the environment starts a process with it off.
    Returns the previous setting."""
    global _fusion
    previous, _fusion = _fusion, bool(enabled)
    return previous


def fusion_enabled() -> bool:
    """Whether ``Sequential`` fuses ``Conv2d, ReLU, MaxPool2d`` (see :func:`set_fusion`)."""
    return _fusion


def _plain(m: Module) -> bool:
    """No hooks and no forward of its own: running the layer is exactly running its class's forward."""
    return not (m._forward_pre_hooks or m._forward_hooks or m._backward_hooks or "forward" in m.__dict__)


def _fusable(conv: Module, act: Module, pool: Module) -> bool:
    """Conv2d, ReLU, MaxPool2d (these classes, not subclasses), no hooks (a hook must see each layer's own
    input and output), a pool without padding (see :mod:`tinyconv.functions.fused`) that returns no indices."""
    return (type(conv) is Conv2d and type(act) is ReLU and type(pool) is MaxPool2d
            and not pool.return_indices and not np.any(pool.padding)
            and _plain(conv) and _plain(act) and _plain(pool))


class Sequential(Module):
    """Modules applied in order. ``Sequential(a, b, c)`` names them '0', '1', '2'; an OrderedDict keeps its names.

    Adjacent ``Conv2d, ReLU, MaxPool2d`` layers without hooks run as one fused node (same results; see
    :func:`set_fusion`). Registering any hook on one of them runs the three one by one again, so that the hook
    sees what it expects; :func:`tinyconv.print_graph` shows the three steps either way."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
                self.add_module(str(i), m)

    def forward(self, input):
        modules = tuple(self._modules.values())
        i, n = 0, len(modules)
        while i < n:
            m = modules[i]
            if _fusion and i + 2 < n and _fusable(m, modules[i + 1], modules[i + 2]):
                pool = modules[i + 2]
                input = F.conv2d_relu_max_pool2d(
                    input, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups,
                    pool_kernel_size=pool.kernel_size, pool_stride=pool.stride, pool_dilation=pool.dilation,
                    pool_ceil_mode=pool.ceil_mode, kernel=m.kernel, pool_kernel=pool.kernel)
                i += 3
            else:
                input = m(input)
                i += 1
        return input

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        if not -len(items) <= idx < len(items):
            raise IndexError(f"index {idx} is out of range for Sequential of length {len(items)}")
        return items[idx][1]

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self._modules)), module)
        return self


class CrossEntropyLoss(Module):
    def __init__(self, weight=None, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100):
        super().__init__()
        self.weight, self.reduction, self.label_smoothing = weight, reduction, label_smoothing
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.reduction, self.label_smoothing, self.ignore_index)


class NLLLoss(Module):
    def __init__(self, weight=None, reduction: str = "mean", ignore_index: int = -100):
        super().__init__()
        self.weight, self.reduction, self.ignore_index = weight, reduction, ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.reduction, self.ignore_index)


class MSELoss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
