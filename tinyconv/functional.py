"""Functional interface (``from tinyconv import functional as F``), named and shaped like ``torch.nn.functional``.

Thin by design: validate the arguments, then call an autograd ``Function`` (see :mod:`tinyconv.ops`) or compose
a few of them. Convolution and pooling live in :mod:`tinyconv.conv` and are re-exported here.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .autograd import Function
from .functions.batch_norm import BatchNorm as _BatchNorm
from .random import default_generator
from .tensor import ShapeError, Tensor, as_tensor, matmul

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
    "conv1d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
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


class _Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim=-1):
        shifted = x - x.max(axis=dim, keepdims=True)  # subtracting the max keeps exp() from overflowing
        e = np.exp(shifted)
        out = e / e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (out * (g - (g * out).sum(axis=ctx.dim, keepdims=True)),)


class _LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim=-1):
        shifted = x - x.max(axis=dim, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g - np.exp(out) * g.sum(axis=ctx.dim, keepdims=True),)


def _one_dim(dim, ndim, fn):
    if dim is None:
        raise TypeError(f"{fn}() needs an explicit dim (implicit dim choice is deprecated in PyTorch too)")
    return ops._normalize_dims(dim, ndim)[0]


def softmax(input: Tensor, dim: int) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim`` (numerically stable)."""
    input = as_tensor(input)
    return _Softmax.apply(input, dim=_one_dim(dim, input.ndim, "softmax"))


def log_softmax(input: Tensor, dim: int) -> Tensor:
    """log(softmax(x)) along ``dim``, computed as x - max - log(sum(exp(x - max))) so it never overflows."""
    input = as_tensor(input)
    return _LogSoftmax.apply(input, dim=_one_dim(dim, input.ndim, "log_softmax"))


# ------------------------------------------------------------------------------------------------------ layers
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + b. input (..., in_features), weight (out_features, in_features), bias (out_features,)."""
    input, weight = as_tensor(input), as_tensor(weight)
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"linear: input's last dimension must equal in_features={weight.shape[1]} (weight {weight.shape}), "
            f"got input of shape {input.shape}"
        )
    out = matmul(input, weight.T)
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        out = out + bias
    return out


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
        raise ShapeError(f"batch_norm: expected input of shape (N, C) or (N, C, *spatial), got shape {input.shape}")
    if not np.issubdtype(input.dtype, np.floating):
        raise TypeError(f"batch_norm: input must be floating point, got dtype {input.dtype}")
    channels = input.shape[1]
    stats = []
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None:
            stats.append(None)
            continue
        arr = value.data if isinstance(value, Tensor) else value
        if not isinstance(arr, np.ndarray) or arr.shape != (channels,) or arr.dtype.kind != "f":
            got = f"shape {arr.shape}, dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(value).__name__
            raise ShapeError(f"batch_norm: {name} must be a float array or Tensor of shape ({channels},) for "
                             f"input of shape {input.shape}, got {got}")
        stats.append(arr)
    if training:
        count = input.data.size // channels if channels else 0
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                             f"shape {input.shape}")
    elif stats[0] is None or stats[1] is None:
        raise ValueError("batch_norm: running_mean and running_var must be given in evaluation mode "
                         "(training=False)")
    params = []
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None:
            value = as_tensor(value)
            if value.shape != (channels,):
                raise ShapeError(f"batch_norm: {name} must have shape ({channels},) for input of shape "
                                 f"{input.shape}, got {value.shape}")
        params.append(value)
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


def _class_targets(input: Tensor, target, fn: str) -> np.ndarray:
    """Integer class indices for (N, C) / (C,) / (N, C, d1, ...) scores, validated against C."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "f":
        if not np.all(np.mod(t, 1) == 0):
            raise TypeError(f"{fn}: target must hold integer class indices, got non-integer floats")
        t = t.astype(np.int64)
    elif t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class indices, got dtype {t.dtype}")
    if input.ndim < 1:
        raise ShapeError(f"{fn}: input must have a class dimension, got a 0-d tensor")
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if t.shape != expected:
        raise ShapeError(
            f"{fn}: expected target of shape {expected} for input of shape {input.shape}, got {t.shape}"
        )
    n_classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        bad = t[(t < 0) | (t >= n_classes)].flat[0]
        raise IndexError(f"{fn}: target {bad} is out of bounds for {n_classes} classes")
    return t.astype(np.int64, copy=False)


def _classes_last(input: Tensor) -> Tensor:
    """(N, C, d1, ...) → (N, d1, ..., C), so the class axis is last for indexing."""
    if input.ndim <= 2:
        return input
    return input.permute((0,) + tuple(range(2, input.ndim)) + (1,))


def nll_loss(input: Tensor, target, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer ``target`` under log-probabilities ``input`` (N, C).

    With ``weight`` (C,) each sample counts ``weight[target]``; 'mean' divides by the sum of those weights.
    """
    _check_reduction(reduction)
    input = as_tensor(input)
    t = _class_targets(input, target, "nll_loss")
    scores = _classes_last(input)
    picked = scores[(*np.indices(t.shape, sparse=True), t)] if t.ndim else scores[t]
    w = None
    if weight is not None:
        weight = as_tensor(weight)
        n_classes = scores.shape[-1]
        if weight.shape != (n_classes,):
            raise ShapeError(f"nll_loss: weight must have shape ({n_classes},), got {weight.shape}")
        w = Tensor(weight.data[t].astype(input.dtype))
    losses = -picked if w is None else -picked * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.mean() if w is None else losses.sum() / float(w.data.sum())


def cross_entropy(
    input: Tensor, target, weight: Tensor | None = None, reduction: str = "mean", label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy of raw scores ``input`` (N, C) (or (C,), or (N, C, d1, ...)) against integer class ``target``.

    Equals ``nll_loss(log_softmax(input, 1), target)``. With ``label_smoothing`` ε the target distribution is
    (1-ε)·onehot + ε/C, as in PyTorch (including how it combines with ``weight``).
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    input = as_tensor(input)
    if not np.issubdtype(input.dtype, np.floating):
        raise TypeError(f"cross_entropy: input must be floating point scores, got dtype {input.dtype}")
    _class_targets(input, target, "cross_entropy")  # validate before doing any work
    class_dim = 0 if input.ndim == 1 else 1
    logp = log_softmax(input, class_dim)
    nll = nll_loss(logp, target, weight=weight, reduction=reduction)
    if label_smoothing == 0.0:
        return nll
    n_classes = input.shape[class_dim]
    scores = _classes_last(logp)
    if weight is not None:
        scores = scores * as_tensor(weight).to(input.dtype)
    smooth = -scores.sum(dim=-1) / float(n_classes)  # per-sample ε-part: -Σ_c w_c log p_c / C
    if reduction == "sum":
        smooth = smooth.sum()
    elif reduction == "mean":
        if weight is None:
            smooth = smooth.mean()
        else:
            t = _class_targets(input, target, "cross_entropy")
            smooth = smooth.sum() / float(as_tensor(weight).data[t].sum())
    return nll * (1.0 - label_smoothing) + smooth * label_smoothing


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error; shapes must match exactly, as PyTorch expects."""
    _check_reduction(reduction)
    input, target = as_tensor(input), as_tensor(target)
    if input.shape != target.shape:
        raise ShapeError(f"mse_loss: input shape {input.shape} and target shape {target.shape} must be equal")
    diff = input - target
    sq = diff * diff
    if reduction == "none":
        return sq
    return sq.sum() if reduction == "sum" else sq.mean()


# Convolution and pooling: defined in tinyconv.conv (one autograd Function each, on the kernels of tinyconv.kernels).
from .conv import adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d, conv_transpose2d, max_pool2d  # noqa: E402
