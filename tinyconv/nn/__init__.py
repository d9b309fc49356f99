"""Layers and models (``from tinyconv import nn``), named like ``torch.nn``."""
from . import init
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, ConvTranspose2d, MaxPool2d
from .layers import (
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MSELoss,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    fusion_enabled,
    set_fusion,
)
from .module import Module, Parameter, UninitializedBuffer, UninitializedParameter
from .lazy import LazyBatchNorm1d, LazyBatchNorm2d, LazyConv2d, LazyConvTranspose2d, LazyLinear
from . import models  # noqa: E402  (LeNet; after the layers it is built from)

# ``import tinyconv.nn.functional as F`` (PyTorch's path) is the same module as ``tinyconv.functional``.
import sys as _sys  # noqa: E402

from .. import functional  # noqa: E402

_sys.modules[__name__ + ".functional"] = functional
