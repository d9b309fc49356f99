"""tinyconv: a small convolutional-network framework on NumPy and numba, with its own reverse-mode autograd.

Public face::

    import tinyconv as tc
    from tinyconv import nn, functional as F

Tensors are (N, C, H, W) for image batches; see the README for a tour.
"""
from . import autograd, data, functional, functions, random
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .functional import corr2d
from .functions import ops
from .gradcheck import GradcheckError, gradcheck
from .graph import print_graph, to_dot
from .kernels import (get_default_kernel, get_default_pool_kernel, set_default_kernel, set_default_pool_kernel,
                      use_kernel, use_pool_kernel)
from .profiler import profile
from .random import get_rng_state, manual_seed, set_rng_state
from . import summary  # a callable module: tc.summary(model, input_shape) is tc.summary.summary(...)
from .tensor import (
    ShapeError,
    Tensor,
    arange,
    as_tensor,
    bool_,
    cat,
    float32,
    float64,
    full,
    int32,
    int64,
    matmul,
    ones,
    ones_like,
    rand,
    randn,
    stack,
    tensor,
    uint8,
    where,
    zeros,
    zeros_like,
)

from . import nn, optim  # noqa: E402  (after the tensor names: nn and optim import them)
from .serialization import load, save  # noqa: E402

__version__ = "0.1.0"
