"""tinyconv: a small convolutional-network framework on NumPy and numba, with its own reverse-mode autograd.

Public face::

    import tinyconv as tc
    from tinyconv import nn, functional as F

Tensors are (N, C, H, W) for image batches; see the README for a tour.

Importing tinyconv fixes glibc's malloc thresholds so a training step's large arrays are reused instead of
page-faulted in again every step; ``TINYCONV_MALLOC=0`` turns that off (see ``tinyconv.memory``, and
docs/architecture.md, "What importing tinyconv changes").
"""
from . import memory

memory.tune_malloc()  # first: before anything allocates (process-wide; opt out with TINYCONV_MALLOC=0)

from . import autograd, cuda, data, functional, functions, random  # noqa: E402
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
from .device import device
from .errors import DTypeError, ShapeError
from .tensor import (
    Size,
    Tensor,
    allclose,
    as_tensor,
    bmm,
    bool_,
    cat,
    equal,
    float32,
    float64,
    int32,
    int64,
    matmul,
    meshgrid,
    multinomial,
    maximum,
    minimum,
    mm,
    mv,
    dot,
    outer,
    stack,
    tensor,
    uint8,
    where,
)
from .creation import (
    BoolTensor,
    ByteTensor,
    DoubleTensor,
    FloatTensor,
    IntTensor,
    LongTensor,
    arange,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randn,
    randn_like,
    randint,
    randperm,
    zeros,
    zeros_like,
)
from .methods import *  # noqa: E402,F403  (tc.abs, tc.sum, tc.argmax, ...: the Tensor methods as functions)

from . import distributions, nn, optim, utils  # noqa: E402  (after the tensor names, which they import)
from .serialization import CheckpointError, load, save  # noqa: E402
from . import explorer  # noqa: E402  (tc.explore: the backward pass as an offline page)
from .explorer import explore  # noqa: E402

# PyTorch's dtype aliases (torch.float, torch.long, ...), after every import that needs the builtins' names.
float, double, long, int, bool, uint8 = float32, float64, int64, int32, bool_, uint8  # noqa: A001


def get_default_dtype():
    """float32, the dtype of tensors made from Python floats (not settable in tinyconv)."""
    return float32

__version__ = "0.1.0"
