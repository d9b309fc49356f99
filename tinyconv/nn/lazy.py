"""Lazy layers: ``LazyConv2d``, ``LazyConvTranspose2d``, ``LazyLinear``, ``LazyBatchNorm1d``, ``LazyBatchNorm2d``.

A lazy layer is built without its input size (``nn.LazyConv2d(96, kernel_size=11)``); its parameters are
``UninitializedParameter``s until the first forward, which reads the size from the input (dimension 1: channels
or features; the last dimension for ``LazyLinear``), creates the parameters, initialises them as the ordinary
layer does, and turns the module into that ordinary layer (``type(m) is nn.Conv2d`` afterwards), as PyTorch's
``cls_to_become``. Parameters keep their identity through this, but their values exist only after the dry run,
so ``apply(init_fn)`` comes after it; an optimizer may be built before it (it holds the same objects, as in
PyTorch). ``state_dict()`` before it holds the uninitialised parameters themselves, and ``load_state_dict``
before it gives the parameters the checkpoint's shapes.
"""
from __future__ import annotations

from ..errors import ShapeError
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d, ConvTranspose2d
from .layers import Linear
from .module import UninitializedBuffer, UninitializedParameter, is_lazy

__all__ = ["LazyModuleMixin", "LazyConv2d", "LazyConvTranspose2d", "LazyLinear", "LazyBatchNorm1d",
           "LazyBatchNorm2d"]


def _infer_parameters(module, args):
    """The forward pre-hook of a lazy module: create its parameters from the first input, then become
    ``cls_to_become`` and drop the hook."""
    if not args:
        raise TypeError(f"{type(module).__name__}: the first forward needs an input to infer the parameters' shapes")
    module.initialize_parameters(*args)
    if module.has_uninitialized_params():
        raise RuntimeError(f"module {type(module).__name__} has not been fully initialized")
    module._initialize_hook.remove()
    object.__delattr__(module, "_initialize_hook")
    if module.cls_to_become is not None:
        module.__class__ = module.cls_to_become
    return None


class LazyModuleMixin:
    """What lazy modules share: ``has_uninitialized_params()`` and the forward pre-hook that calls the
    subclass's ``initialize_parameters(input)`` once."""

    cls_to_become = None

    def _register_lazy_hook(self) -> None:
        object.__setattr__(self, "_initialize_hook", self.register_forward_pre_hook(_infer_parameters))

    def has_uninitialized_params(self) -> bool:
        tensors = list(self._parameters.values()) + list(self._buffers.values())
        return any(is_lazy(t) for t in tensors)

    def initialize_parameters(self, *args) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define initialize_parameters()")

    def reset_parameters(self) -> None:
        # Nothing to draw until the shapes are known (nor while the ordinary constructor runs): the dry run calls
        # the ordinary layer's reset_parameters once the parameters exist.
        if "_initialize_hook" in self.__dict__ and not self.has_uninitialized_params():
            super().reset_parameters()

    def _input_size(self, input, dim: int, what: str) -> int:
        if input.ndim == 0 or input.ndim <= (dim if dim >= 0 else -dim - 1):
            raise ValueError(f"{type(self).__name__}: cannot infer {what} from an input of shape "
                             f"{tuple(input.shape)}")
        return int(input.shape[dim])


class _LazyConvMixin(LazyModuleMixin):
    _transposed = False

    def _make_lazy(self, bias: bool, dtype) -> None:
        self.in_channels = 0
        self.weight = UninitializedParameter(dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(dtype=dtype)
        self._register_lazy_hook()

    def initialize_parameters(self, input) -> None:
        spatial = len(self.kernel_size)
        if input.ndim not in (spatial + 1, spatial + 2):  # checked before anything is made: the module stays lazy
            raise ShapeError(f"Expected {spatial + 1}D (unbatched) or {spatial + 2}D (batched) input to "
                             f"{type(self).__name__}, but got input of size: {list(input.shape)}")
        # unbatched (C, H, W) input has its channels first
        dim = 0 if input.ndim == spatial + 1 else 1
        in_channels = self._input_size(input, dim, "in_channels")
        if in_channels % self.groups:
            raise ValueError(f"{type(self).__name__}: the input's {in_channels} channels must be divisible by "
                             f"groups={self.groups}")
        self.in_channels = in_channels
        if not self.has_uninitialized_params():  # loaded from a state_dict before the first forward
            return
        if self._transposed:
            shape = (in_channels, self.out_channels // self.groups) + tuple(self.kernel_size)
        else:
            shape = (self.out_channels, in_channels // self.groups) + tuple(self.kernel_size)
        self.weight.materialize(shape)
        if self.bias is not None:
            self.bias.materialize((self.out_channels,))
        self.reset_parameters()


class LazyConv2d(_LazyConvMixin, Conv2d):
    """``Conv2d`` whose ``in_channels`` is read from the first input's dimension 1 (``(N, C_in, H, W)``)."""

    cls_to_become = Conv2d

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 kernel=None, *, dtype=None):
        # the ordinary constructor with the smallest valid in_channels checks the arguments; no values are drawn
        super().__init__(groups, out_channels, kernel_size, stride, padding, dilation, groups, bias, kernel,
                         dtype=dtype)
        self._make_lazy(bias, dtype)


class LazyConvTranspose2d(_LazyConvMixin, ConvTranspose2d):
    """``ConvTranspose2d`` whose ``in_channels`` is read from the first input's dimension 1."""

    cls_to_become = ConvTranspose2d
    _transposed = True

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
                 dilation=1, kernel=None, *, dtype=None):
        super().__init__(groups, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, kernel, dtype=dtype)
        self._make_lazy(bias, dtype)


class LazyLinear(LazyModuleMixin, Linear):
    """``Linear`` whose ``in_features`` is read from the first input's last dimension (``(..., in_features)``)."""

    cls_to_become = Linear

    def __init__(self, out_features: int, bias: bool = True, dtype=None):
        super().__init__(1, out_features, bias, dtype=dtype)
        self.in_features = 0
        self.weight = UninitializedParameter(dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(dtype=dtype)
        self._register_lazy_hook()

    def initialize_parameters(self, input) -> None:
        self.in_features = self._input_size(input, -1, "in_features")
        if not self.has_uninitialized_params():  # loaded from a state_dict before the first forward
            return
        self.weight.materialize((self.out_features, self.in_features))
        if self.bias is not None:
            self.bias.materialize((self.out_features,))
        self.reset_parameters()


class _LazyBatchNormMixin(LazyModuleMixin):
    def _make_lazy(self, dtype) -> None:
        self.num_features = 0
        if self.affine:
            self.weight = UninitializedParameter(dtype=dtype)
            self.bias = UninitializedParameter(dtype=dtype)
        if self.track_running_stats:
            # num_batches_tracked needs no shape: it stays the ordinary int64 scalar (as in PyTorch)
            self.register_buffer("running_mean", UninitializedBuffer(dtype=dtype))
            self.register_buffer("running_var", UninitializedBuffer(dtype=dtype))
        self._register_lazy_hook()

    def initialize_parameters(self, input) -> None:
        self.num_features = self._input_size(input, 1, "num_features")
        if not self.has_uninitialized_params():  # loaded from a state_dict before the first forward
            return
        for t in (self.weight, self.bias, self.running_mean, self.running_var):
            if t is not None:
                t.materialize((self.num_features,))
        self.reset_parameters()


class LazyBatchNorm1d(_LazyBatchNormMixin, BatchNorm1d):
    """``BatchNorm1d`` whose ``num_features`` is read from the first input's dimension 1 ((N, C) or (N, C, L))."""

    cls_to_become = BatchNorm1d

    def __init__(self, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None):
        super().__init__(1, eps, momentum, affine, track_running_stats, dtype=dtype)
        self._make_lazy(dtype)


class LazyBatchNorm2d(_LazyBatchNormMixin, BatchNorm2d):
    """``BatchNorm2d`` whose ``num_features`` is read from the first input's dimension 1 ((N, C, H, W))."""

    cls_to_become = BatchNorm2d

    def __init__(self, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None):
        super().__init__(1, eps, momentum, affine, track_running_stats, dtype=dtype)
        self._make_lazy(dtype)
