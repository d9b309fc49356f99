"""Functional interface (``from tinyconv import functional as F``), named and shaped like ``torch.nn.functional``.

The public door of every operation: it checks the arguments once (shapes, dtypes, conv arguments, kernel names),
normalises them, then calls an autograd ``Function`` of :mod:`tinyconv.functions` (which trusts them) or composes
a few of them.

Convolution: ``conv2d``, ``conv1d`` (``conv2d`` on ``H = 1``), ``conv_transpose2d``; pooling: ``max_pool2d``,
``avg_pool2d``, ``adaptive_avg_pool2d``; ``conv2d_relu_max_pool2d`` (the three in one fused node); and the
textbook ``corr2d``. The convolution algorithm is chosen per call
(``kernel=``), per block (``with tc.use_kernel(...)``), per process (``tc.set_default_kernel`` or
``TINYCONV_KERNEL``), default ``"auto"`` (see :mod:`tinyconv.kernels`). The choice in force when the forward runs
is recorded in the graph node and reused by its backward, even if the backward runs outside the ``use_kernel``
block. Unbatched inputs ``(C, H, W)`` (``(C, L)`` for conv1d) are accepted and give unbatched outputs, as in
PyTorch. A layer's input and its parameters must share one floating dtype, as in PyTorch: a float64 batch into a
float32 layer raises :class:`tinyconv.DTypeError` (convert one side with ``.float()`` / ``.double()``).
"""
from __future__ import annotations

import contextlib
import contextvars
import operator

import numpy as np

from . import kernels
from .errors import DTypeError, ShapeError
from .functions import conv as conv_fn
from .functions import fused as fused_fn
from .functions import ops
from .functions import pooling as pool_fn
from .functions.batch_norm import BatchNorm as _BatchNorm
from .kernels import shapes
from .random import default_generator
from .tensor import Tensor, as_tensor, where

__all__ = [
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "linear",
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "dropout",
    "batch_norm",
    "conv2d",
    "conv2d_relu_max_pool2d",
    "conv1d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "corr2d",
]


# ------------------------------------------------------------------------------------------------ activations
def relu(input: Tensor) -> Tensor:
    """max(x, 0), elementwise."""
    return ops.Relu.apply(as_tensor(input))


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else ``negative_slope * x``."""
    return ops.LeakyRelu.apply(as_tensor(input), negative_slope=float(negative_slope))


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    return ops.Sigmoid.apply(as_tensor(input))


def tanh(input: Tensor) -> Tensor:
    return ops.Tanh.apply(as_tensor(input))


def softmax(input: Tensor, dim: int) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim`` (numerically stable)."""
    input = as_tensor(input)
    return ops.Softmax.apply(input, dim=ops.one_dim(dim, input.ndim, "softmax"))


def log_softmax(input: Tensor, dim: int) -> Tensor:
    """log(softmax(x)) along ``dim``, computed as x - max - log(sum(exp(x - max))) so it never overflows."""
    input = as_tensor(input)
    return ops.LogSoftmax.apply(input, dim=ops.one_dim(dim, input.ndim, "log_softmax"))


# ------------------------------------------------------------------------------------------------------ layers
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + b. input (..., in_features), weight (out_features, in_features), bias (out_features,)."""
    input, weight = as_tensor(input), as_tensor(weight)
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"linear: input's last dimension must equal in_features={weight.shape[1]} (weight {tuple(weight.shape)}), "
            f"got input of shape {tuple(input.shape)}"
        )
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    _check_same_dtype("linear", input, weight=weight, bias=bias)
    return ops.Linear.apply(input, weight, bias)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity when not training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    input = as_tensor(input)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = default_generator().random(input.shape) >= p
    mask = Tensor((keep / (1.0 - p)).astype(input.dtype))
    return input * mask


def batch_norm(input: Tensor, running_mean, running_var, weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization over the channel dimension 1 of ``input`` (N, C) or (N, C, *spatial), PyTorch's
    ``F.batch_norm``.

    Training: normalise each channel with the batch's mean and biased variance, and update ``running_mean`` /
    ``running_var`` (Tensors or arrays of shape (C,), or None) in place as ``(1 - momentum)·running +
    momentum·batch`` with the *unbiased* batch variance. Eval (``training=False``): normalise with the running
    statistics. Then scale by ``weight`` γ (C,) and shift by ``bias`` β (C,) when given. One autograd node
    (``BatchNormBackward``) with a hand-derived backward: :class:`tinyconv.functions.batch_norm.BatchNorm`.
    """
    input = as_tensor(input)
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expected input of shape (N, C) or (N, C, *spatial), got shape {tuple(input.shape)}")
    if not np.issubdtype(input.dtype, np.floating):
        raise TypeError(f"batch_norm: input must be floating point, got dtype {input.dtype}")
    channels = input.shape[1]
    stats = []
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None:
            stats.append(None)
            continue
        arr = value._data if isinstance(value, Tensor) else value
        if not isinstance(arr, np.ndarray) or arr.shape != (channels,) or arr.dtype.kind != "f":
            got = f"shape {tuple(arr.shape)}, dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(value).__name__
            raise ShapeError(f"batch_norm: {name} must be a float array or Tensor of shape ({channels},) for "
                             f"input of shape {tuple(input.shape)}, got {got}")
        if arr.dtype != input.dtype and not _PROMOTING.get():
            raise DTypeError(f"batch_norm: Input type ({_type_name(input.dtype)}) and {name} type "
                             f"({_type_name(arr.dtype)}) should be the same; convert one with .float() or .double()")
        stats.append(arr)
    if training:
        count = input._data.size // channels if channels else 0
        if count == 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                             f"shape {tuple(input.shape)}")
    elif stats[0] is None or stats[1] is None:
        raise ValueError("batch_norm: running_mean and running_var must be given in evaluation mode "
                         "(training=False)")
    params = []
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None:
            value = as_tensor(value)
            if value.shape != (channels,):
                raise ShapeError(f"batch_norm: {name} must have shape ({channels},) for input of shape "
                                 f"{tuple(input.shape)}, got {tuple(value.shape)}")
        params.append(value)
    _check_same_dtype("batch_norm", input, weight=params[0], bias=params[1])
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating, np.integer)):
        raise TypeError(f"batch_norm: momentum must be a number (the module turns momentum=None into a "
                        f"cumulative-average factor), got {momentum!r}")
    if not float(eps) >= 0.0:
        raise ValueError(f"batch_norm: eps must be non-negative, got {eps}")
    return _BatchNorm.apply(input, params[0], params[1], running_mean=stats[0], running_var=stats[1],
                            training=bool(training), momentum=float(momentum), eps=float(eps))


# ------------------------------------------------------------------------------------------------------ losses
_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _class_targets(input: Tensor, target, fn: str, ignore_index: int | None = None) -> np.ndarray:
    """Integer class indices for (N, C) / (C,) / (N, C, d1, ...) scores, validated against C (a target equal to
    ``ignore_index`` may be any value)."""
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "f":
        if not np.all(np.mod(t, 1) == 0):
            raise TypeError(f"{fn}: target must hold integer class indices, got non-integer floats")
        t = t.astype(np.int64)
    elif t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class indices, got dtype {t.dtype}")
    if input.ndim < 1:
        raise ShapeError(f"{fn}: input must have a class dimension, got a 0-d tensor")
    expected = () if input.ndim == 1 else (input.shape[0], *input.shape[2:])
    if t.shape != expected:
        raise ShapeError(
            f"{fn}: expected target of shape {expected} for input of shape {tuple(input.shape)}, got {tuple(t.shape)}"
        )
    n_classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        bad = (t < 0) | (t >= n_classes)
        if ignore_index is not None:
            bad &= t != ignore_index
        if bad.any():
            raise IndexError(f"{fn}: target {t[bad].flat[0]} is out of bounds for {n_classes} classes")
    return t.astype(np.int64, copy=False)


def _classes_last(input: Tensor) -> Tensor:
    """(N, C, d1, ...) → (N, d1, ..., C), so the class axis is last for indexing."""
    if input.ndim <= 2:
        return input
    return input.permute((0,) + tuple(range(2, input.ndim)) + (1,))


def nll_loss(input: Tensor, target, weight: Tensor | None = None, reduction: str = "mean",
             ignore_index: int = -100) -> Tensor:
    """Negative log-likelihood of integer ``target`` under log-probabilities ``input`` (N, C) (or (C,), or
    (N, C, d1, ...) with targets (N, d1, ...)).

    With ``weight`` (C,) each sample counts ``weight[target]``; 'mean' divides by the sum of those weights.
    Targets equal to ``ignore_index`` count for nothing: no loss, no gradient, and not in the mean's divisor.
    """
    _check_reduction(reduction)
    input = as_tensor(input)
    if input.dtype.kind != "f":
        raise TypeError(f"nll_loss: input must be floating point log-probabilities, got dtype {input.dtype}")
    ignore_index = _check_ignore_index(ignore_index, "nll_loss")
    t = _class_targets(input, target, "nll_loss", ignore_index)
    return _nll(input, t, weight, reduction, "nll_loss", ignore_index)


def _check_ignore_index(ignore_index, fn: str) -> int:
    """``ignore_index`` as an int: anything with ``__index__`` (a NumPy integer, a one-value integer tensor), as
    PyTorch takes it, but not a bool."""
    if not isinstance(ignore_index, (bool, np.bool_)):
        try:
            return operator.index(ignore_index)
        except TypeError:
            pass
    raise TypeError(f"{fn}: ignore_index must be an int, got {ignore_index!r}")


def _nll(logp: Tensor, t: np.ndarray, weight, reduction: str, fn: str, ignore_index: int) -> Tensor:
    """:func:`nll_loss` of validated class indices ``t`` (one graph node, :class:`~tinyconv.functions.ops.NllLoss`)."""
    w = None
    if weight is not None:
        weight = as_tensor(weight)
        n_classes = logp.shape[0] if logp.ndim == 1 else logp.shape[1]
        if weight.shape != (n_classes,):
            raise ShapeError(f"{fn}: weight must have shape ({n_classes},), got {tuple(weight.shape)}")
        w = weight._data
    return ops.NllLoss.apply(logp, t, w, reduction, ignore_index)


def cross_entropy(
    input: Tensor, target, weight: Tensor | None = None, reduction: str = "mean", label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Tensor:
    """Cross-entropy of raw scores ``input`` (N, C) (or (C,), or (N, C, d1, ...)), PyTorch's ``F.cross_entropy``.

    ``target`` is either integer class indices of shape (N,) (or (), or (N, d1, ...)), or class probabilities of
    the input's own shape (floating point; e.g. mixup or distillation targets). Indices: equals
    ``nll_loss(log_softmax(input, 1), target)``, and 'mean' divides by the summed ``weight`` of the targets.
    Probabilities: ``-Σ_c weight_c · target_c · log_softmax(input)_c`` per sample, and 'mean' divides by the
    number of samples. With ``label_smoothing`` ε the target distribution is mixed with the uniform one,
    (1-ε)·target + ε/C, as in PyTorch (including how it combines with ``weight``). Class indices equal to
    ``ignore_index`` count for nothing (no loss, no gradient, not in the mean's divisor); it does not apply to
    probabilities.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    input = as_tensor(input)
    if input.dtype.kind != "f":
        raise TypeError(f"cross_entropy: input must be floating point scores, got dtype {input.dtype}")
    class_dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[class_dim] if input.ndim else 0
    if weight is not None:
        weight = as_tensor(weight)
        if weight.shape != (n_classes,):
            raise ShapeError(f"cross_entropy: weight must have shape ({n_classes},), got {tuple(weight.shape)}")
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
    ignore_index = _check_ignore_index(ignore_index, "cross_entropy")
    if t.dtype.kind == "f" and t.shape == input.shape and input.ndim:
        if ignore_index >= 0:  # PyTorch's rule: probabilities have no class to ignore
            raise ValueError(f"cross_entropy: ignore_index is not supported for floating point target (class "
                             f"probabilities); got ignore_index={ignore_index}")
        return _cross_entropy_probabilities(input, as_tensor(target).to(input.dtype), weight, reduction,
                                            label_smoothing, class_dim)
    try:
        t = _class_targets(input, target, "cross_entropy", ignore_index)  # validate before doing any work
    except (ShapeError, TypeError):
        expected = () if input.ndim <= 1 else (input.shape[0], *input.shape[2:])
        error = TypeError if t.shape == expected else ShapeError
        raise error(f"cross_entropy: expected integer class indices of shape {expected} or class probabilities of "
                    f"the input's shape {tuple(input.shape)} (floating point), got {t.dtype} of shape {t.shape} for "
                    f"input of shape {tuple(input.shape)}") from None
    logp = log_softmax(input, class_dim)
    nll = _nll(logp, t, weight, reduction, "cross_entropy", ignore_index)
    if label_smoothing == 0.0:
        return nll
    scores = _classes_last(logp)
    if weight is not None:
        scores = scores * weight.to(input.dtype)
    smooth = -scores.sum(dim=-1) / float(n_classes)  # per-sample ε-part: -Σ_c w_c log p_c / C
    keep = t != ignore_index
    if not keep.all():  # ignored targets: no ε-part either (nor a gradient through it, whatever divides it)
        smooth = where(keep, smooth, 0.0)
    if reduction == "sum":
        smooth = smooth.sum()
    elif reduction == "mean":
        if weight is None and keep.all():
            smooth = smooth.mean()
        else:
            kept = float(keep.sum()) if weight is None else float(weight._data[t[keep]].sum())
            smooth = smooth.sum() / kept if kept else smooth.sum() * float("nan")
    return nll * (1.0 - label_smoothing) + smooth * label_smoothing


def _cross_entropy_probabilities(input: Tensor, target: Tensor, weight, reduction: str, label_smoothing: float,
                                 class_dim: int) -> Tensor:
    """cross_entropy against class probabilities ``target`` (the input's shape)."""
    n_classes = input.shape[class_dim]
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
    terms = _classes_last(log_softmax(input, class_dim)) * _classes_last(target)
    if weight is not None:
        terms = terms * weight.to(input.dtype)
    losses = -terms.sum(dim=-1)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error; shapes must match exactly, as PyTorch expects."""
    _check_reduction(reduction)
    input, target = as_tensor(input), as_tensor(target)
    if input.shape != target.shape:
        raise ShapeError(f"mse_loss: input shape {tuple(input.shape)} and target shape {tuple(target.shape)} must be equal")
    diff = input - target
    sq = diff * diff
    if reduction == "none":
        return sq
    return sq.sum() if reduction == "sum" else sq.mean()


# ------------------------------------------------------------------------------------------------ convolution
#: dtype -> the name PyTorch's messages use for it
_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half", "int64": "long", "int32": "int",
               "int16": "short", "int8": "char", "uint8": "byte", "bool": "bool"}


def _type_name(dtype) -> str:
    return _TYPE_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)


#: Set (by :func:`promoting_dtypes`) while mixed float dtypes are computed in the wider one instead of refused.
_PROMOTING = contextvars.ContextVar("tinyconv_promoting_dtypes", default=False)


@contextlib.contextmanager
def promoting_dtypes():
    """Within the block, a layer whose input and parameters differ in float dtype computes in the wider one
    instead of raising :class:`tinyconv.DTypeError`. For tools that change a model's dtype behind the caller's
    code, such as the explorer's float64 numerical check; user code should convert instead."""
    token = _PROMOTING.set(True)
    try:
        yield
    finally:
        _PROMOTING.reset(token)


def _check_same_dtype(fn: str, input: Tensor, **params) -> np.dtype:
    """The dtype a layer runs in: its input's, which must be floating and equal to every given parameter's (as in
    PyTorch, which refuses a float64 batch into a float32 layer rather than promote it silently)."""
    if input.dtype.kind != "f":
        raise DTypeError(f"{fn}: expected a floating-point input (float32 or float64), got {input.dtype}; "
                         "convert it with .float()")
    if _PROMOTING.get():
        return np.result_type(input.dtype, *(p.dtype for p in params.values() if p is not None))
    for name, p in params.items():
        if p is not None and p.dtype != input.dtype:
            raise DTypeError(f"{fn}: Input type ({_type_name(input.dtype)}) and {name} type ({_type_name(p.dtype)}) "
                             "should be the same; convert one with .float() or .double() (a model: "
                             "model.double() / model.float())")
    return input.dtype


def _is_unbatched(input: Tensor, fn: str, spatial: int = 2) -> bool:
    """True if ``input`` is unbatched (one dim fewer), after checking its rank."""
    batched_dims = 2 + spatial
    if input.ndim == batched_dims:
        return False
    if input.ndim == batched_dims - 1:
        return True
    names = "(C, H, W)" if spatial == 2 else "(C, L)"
    bnames = "(N, C, H, W)" if spatial == 2 else "(N, C, L)"
    raise ShapeError(f"{fn}: expected a {batched_dims - 1}-D (unbatched {names}) or {batched_dims}-D "
                     f"(batched {bnames}) input, got input of shape {tuple(input.shape)}")


def _relabel(err: ValueError, batched_shape, shape) -> ValueError:
    """Re-word a shapes.* message about the batched view of an unbatched input."""
    msg = str(err).replace(str(tuple(batched_shape)), f"{tuple(shape)} (unbatched)")
    return type(err)(msg)


def _check_bias(bias, c_out: int, fn: str):
    if bias is None:
        return None
    bias = as_tensor(bias)
    if bias.shape != (c_out,):
        raise ShapeError(f"{fn}: bias must have shape ({c_out},) (one value per output channel), "
                         f"got shape {tuple(bias.shape)}")
    return bias


def _conv2d_call(input, weight, bias, stride, padding, dilation, groups, kernel):
    """conv2d's checks: (input, weight, bias, args, backend, unbatched, dtype) for ``conv_fn.Conv2d`` and the fused
    node (whose errors therefore read like conv2d's)."""
    input, weight = as_tensor(input), as_tensor(weight)
    unbatched = _is_unbatched(input, "conv2d")
    shape4 = (1,) + input.shape if unbatched else input.shape
    try:
        args = shapes.normalize_conv_args(shape4, weight.shape, stride, padding, dilation, groups)
    except ValueError as e:
        raise (_relabel(e, shape4, input.shape) if unbatched else e) from None
    bias = _check_bias(bias, weight.shape[0], "conv2d")
    backend = kernels.resolve_backend(kernel)
    return input, weight, bias, args, backend, unbatched, _check_same_dtype("conv2d", input, weight=weight,
                                                                             bias=bias)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, kernel=None) -> Tensor:
    """2-D convolution (cross-correlation), PyTorch's ``F.conv2d``.

    input ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; weight ``(C_out, C_in/groups, kh, kw)``; bias
    ``(C_out,)`` or None. ``padding``: int, ``(ph, pw)``, ``(top, bottom, left, right)``, ``'valid'`` or
    ``'same'`` (stride 1; odd total padding puts the extra pixel at the bottom/right). ``kernel``: "direct",
    "im2col", "numba" or "auto" (None: the default in force).
    """
    input, weight, bias, args, backend, unbatched, dtype = _conv2d_call(input, weight, bias, stride, padding,
                                                                        dilation, groups, kernel)
    return conv_fn.Conv2d.apply(input, weight, bias, args=args, backend=backend, unbatched=unbatched, dtype=dtype)


def conv2d_relu_max_pool2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                           pool_kernel_size, pool_stride=None, pool_dilation=1, pool_ceil_mode=False,
                           kernel=None, pool_kernel=None) -> Tensor:
    """``max_pool2d(relu(conv2d(input, weight, bias, ...)), pool_kernel_size, pool_stride, 0, pool_dilation,
    pool_ceil_mode)`` as one fused node (a tinyconv extension; PyTorch has no such function).

    Same results, bit for bit, with fewer passes over the conv output (see :mod:`tinyconv.functions.fused`).
    The conv arguments are :func:`conv2d`'s, the ``pool_*`` ones :func:`max_pool2d`'s (no padding: the fusion
    relies on every window holding an input pixel). ``nn.Sequential`` calls it for adjacent ``Conv2d, ReLU,
    MaxPool2d`` layers without hooks. input ``(N, C_in, H, W)`` or ``(C_in, H, W)`` → ``(N, C_out, H_pool,
    W_pool)``.
    """
    input, weight, bias, args, backend, unbatched, dtype = _conv2d_call(input, weight, bias, stride, padding,
                                                                        dilation, groups, kernel)
    try:
        pool_args = shapes.normalize_pool_args(args.out_shape, pool_kernel_size, pool_stride, 0, pool_dilation,
                                               pool_ceil_mode)
    except ValueError as e:
        raise type(e)(f"max_pool2d (on the conv2d output of shape {args.out_shape}): {e}") from None
    pool_backend = kernels.resolve_pool_backend(pool_kernel)
    return fused_fn.Conv2dReluMaxPool2d.apply(input, weight, bias, conv_args=args, pool_args=pool_args,
                                              backend=backend, pool_backend=pool_backend, unbatched=unbatched,
                                              dtype=dtype)


# ------------------------------------------------------------------------------------------------ conv1d
def _conv1d_padding(padding):
    if isinstance(padding, str):
        return padding
    if isinstance(padding, (tuple, list)):
        if len(padding) == 1:
            return (0, padding[0])
        raise ValueError(f"conv1d: padding must be an int, a 1-tuple, 'same' or 'valid', got {tuple(padding)!r}")
    return (0, padding)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, kernel=None) -> Tensor:
    """1-D convolution, PyTorch's ``F.conv1d``: input ``(N, C_in, L)`` or ``(C_in, L)``, weight
    ``(C_out, C_in/groups, k)``. Computed as :func:`conv2d` on images of height 1."""
    input, weight = as_tensor(input), as_tensor(weight)
    unbatched = _is_unbatched(input, "conv1d", spatial=1)
    if weight.ndim != 3:
        raise ShapeError(f"conv1d: expected a 3-D weight (C_out, C_in/groups, k), got a {weight.ndim}-D "
                         f"weight of shape {tuple(weight.shape)}")
    x = input if not unbatched else input.reshape((1,) + input.shape)
    n, c, length = x.shape
    y = conv2d(x.reshape(n, c, 1, length), weight.reshape(weight.shape[:2] + (1, weight.shape[2])), bias,
               stride=(1, shapes.single(stride, "stride")), padding=_conv1d_padding(padding),
               dilation=(1, shapes.single(dilation, "dilation")), groups=groups, kernel=kernel)
    y = y.reshape(y.shape[0], y.shape[1], y.shape[3])
    return y.reshape(y.shape[1:]) if unbatched else y


# ------------------------------------------------------------------------------------------------ conv_transpose2d
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     kernel=None) -> Tensor:
    """Transposed 2-D convolution, PyTorch's ``F.conv_transpose2d``.

    input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; weight ``(C_in, C_out/groups, kh, kw)``; output size
    ``(H - 1)·s - 2p + d·(k - 1) + output_padding + 1``. ``padding`` is an int, a pair or a 4-tuple (the padding
    of the convolution it is the adjoint of); ``output_padding`` must be smaller than the stride or the dilation.
    """
    input, weight = as_tensor(input), as_tensor(weight)
    unbatched = _is_unbatched(input, "conv_transpose2d")
    shape4 = (1,) + input.shape if unbatched else input.shape
    try:
        args = shapes.normalize_conv_transpose_args(shape4, weight.shape, stride, padding, output_padding,
                                                    groups, dilation)
    except ValueError as e:
        raise (_relabel(e, shape4, input.shape) if unbatched else e) from None
    bias = _check_bias(bias, args.out_shape[1], "conv_transpose2d")
    backend = kernels.resolve_backend(kernel)
    dtype = _check_same_dtype("conv_transpose2d", input, weight=weight, bias=bias)
    return conv_fn.ConvTranspose2d.apply(input, weight, bias, args=args, backend=backend, unbatched=unbatched,
                                         dtype=dtype)


# ------------------------------------------------------------------------------------------------ pooling
def _pool_input(input, fn):
    input = as_tensor(input)
    unbatched = _is_unbatched(input, fn)
    if input.dtype.kind != "f":
        raise TypeError(f"{fn}: expected a floating-point input (float32 or float64), got {input.dtype}")
    return input, unbatched


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               kernel=None):
    """2-D max pooling, PyTorch's ``F.max_pool2d`` (padding counts as -inf; ties go to the first maximum).

    With ``return_indices=True`` also returns the int64 flat indices ``h * W + w`` of the maxima."""
    input, unbatched = _pool_input(input, "max_pool2d")
    shape4 = (1,) + input.shape if unbatched else input.shape
    try:
        args = shapes.normalize_pool_args(shape4, kernel_size, stride, padding, dilation, ceil_mode)
    except ValueError as e:
        raise (_relabel(e, shape4, input.shape) if unbatched else e) from None
    backend = kernels.resolve_pool_backend(kernel)
    indices = [] if return_indices else None
    out = pool_fn.MaxPool2d.apply(input, args=args, backend=backend, unbatched=unbatched, indices_out=indices)
    return (out, Tensor(indices[0].astype(np.int64, copy=False))) if return_indices else out  # int64, as PyTorch


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, kernel=None) -> Tensor:
    """2-D average pooling, PyTorch's ``F.avg_pool2d`` (divisor rules: see :mod:`tinyconv.kernels.pooling`)."""
    input, unbatched = _pool_input(input, "avg_pool2d")
    shape4 = (1,) + input.shape if unbatched else input.shape
    try:
        args = shapes.normalize_pool_args(shape4, kernel_size, stride, padding, 1, ceil_mode)
    except ValueError as e:
        raise (_relabel(e, shape4, input.shape) if unbatched else e) from None
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"avg_pool2d: divisor_override must be an int, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError("avg_pool2d: divisor_override must be non-zero, got 0")
        divisor_override = int(divisor_override)
    backend = kernels.resolve_pool_backend(kernel)
    return pool_fn.AvgPool2d.apply(input, args=args, count_include_pad=bool(count_include_pad),
                                   divisor_override=divisor_override, backend=backend, unbatched=unbatched)


# ------------------------------------------------------------------------------------------------ adaptive
def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Average pooling to ``output_size`` (int or pair; None keeps that input size), PyTorch's windows."""
    input, unbatched = _pool_input(input, "adaptive_avg_pool2d")
    h, w = input.shape[-2:]
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        size = tuple(h if s is None and k == 0 else w if s is None else s for k, s in enumerate(output_size))
    else:
        size = output_size
    oh, ow = shapes.pair(size, "output_size")
    if oh <= 0 or ow <= 0:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {(oh, ow)}")
    if h == 0 or w == 0:
        raise ValueError(f"adaptive_avg_pool2d: input of shape {tuple(input.shape)} has an empty spatial dimension")
    return pool_fn.AdaptiveAvgPool2d.apply(input, output_size=(oh, ow), unbatched=unbatched)


# ------------------------------------------------------------------------------------------------ corr2d
def corr2d(X, K, kernel=None) -> Tensor:
    """The textbook 2-D cross-correlation of a 2-D array ``X`` (H, W) with a 2-D kernel ``K`` (kh, kw):
    ``Y[i, j] = Σ_a Σ_b X[i + a, j + b] · K[a, b]``, shape ``(H - kh + 1, W - kw + 1)``.

    Accepts arrays or tensors and returns a Tensor, differentiable with respect to both."""
    X, K = as_tensor(X), as_tensor(K)
    floats = [t.dtype for t in (X, K) if t.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float32)  # a textbook helper: promotes, as numpy
    X, K = X.to(dtype), K.to(dtype)
    if X.ndim != 2 or K.ndim != 2:
        raise ShapeError(f"corr2d: expected a 2-D input and a 2-D kernel, got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    if K.shape[0] > X.shape[0] or K.shape[1] > X.shape[1]:
        raise ShapeError(f"corr2d: kernel of shape {tuple(K.shape)} is larger than the input of shape {tuple(X.shape)}")
    y = conv2d(X.reshape(1, 1, *X.shape), K.reshape(1, 1, *K.shape), kernel=kernel)
    return y.reshape(y.shape[2:])
