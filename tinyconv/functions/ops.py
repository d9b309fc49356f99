"""The differentiable tensor operations, each a :class:`~tinyconv.autograd.Function` on NumPy arrays.

Elementwise arithmetic and activations, reductions, shape ops and softmax. The callers (``Tensor``'s methods and
:mod:`tinyconv.functional`) check the arguments; these trust them.

Every ``backward`` returns one gradient per positional input (``None`` where ``ctx.needs_input_grad`` says nobody
asked for it). Broadcasting is undone by :func:`unbroadcast`, which sums the gradient back to the input's shape.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..autograd import Function
from ..kernels import activations, thin_matmul, workers


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, so it has ``shape`` again."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def normalize_dims(dim, ndim: int) -> tuple | None:
    """``dim`` (None, int or tuple) as a tuple of non-negative axes, with PyTorch's range check."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)
        if not lo <= d <= hi:
            raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {d})")
        out.append(int(d) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"dim {dims} contains a repeated dimension")
    return tuple(out)


def one_dim(dim, ndim: int, fn: str) -> int:
    """The one axis ``dim`` names (softmax and friends need it given explicitly), as a non-negative int."""
    if dim is None:
        raise TypeError(f"{fn}() needs an explicit dim (implicit dim choice is deprecated in PyTorch too)")
    return normalize_dims(dim, ndim)[0]


def _expand_reduced(grad: np.ndarray, shape: tuple, dims, keepdim: bool) -> np.ndarray:
    """Re-insert the reduced axes into ``grad`` so it broadcasts against the input of ``shape``."""
    if dims is None:
        return np.reshape(grad, (1,) * len(shape))
    if not keepdim:
        for d in sorted(dims):
            grad = np.expand_dims(grad, d)
    return grad


# ----------------------------------------------------------------------------------------------- arithmetic
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return (unbroadcast(g, sa) if na else None, unbroadcast(g, sb) if nb else None)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return (unbroadcast(g, sa) if na else None, unbroadcast(-g, sb) if nb else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        return (unbroadcast(g * b, np.shape(a)) if na else None, unbroadcast(g * a, np.shape(b)) if nb else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(g / b, np.shape(a)) if na else None
        gb = unbroadcast(-g * a / (b * b), np.shape(b)) if nb else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return (-g,)


class Pow(Function):
    """``a ** b`` for tensors ``a`` and ``b`` (scalar exponents are wrapped as 0-d tensors by the caller)."""

    @staticmethod
    def forward(ctx, a, b):
        out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(g * b * np.power(a, b - 1), np.shape(a)) if na else None
        gb = None
        if nb:
            # d(a^b)/db = a^b log a; defined as 0 where a == 0 (as PyTorch does) to avoid 0 * -inf.
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1)), np.where(a == 0, 0.0, np.nan))
            gb = unbroadcast(g * out * log_a.astype(out.dtype), np.shape(b))
        return ga, gb


class MatMul(Function):
    """``a @ b`` with NumPy's rules: 1-D operands are promoted and the added axis removed, batch axes broadcast."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _product(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:  # dot product: g is a scalar
            return (g * b if na else None, g * a if nb else None)
        # Promote 1-D operands to matrices the way matmul did, so both gradients are plain matrix products.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = np.expand_dims(g, -2) if a.ndim == 1 else g
        g2 = np.expand_dims(g2, -1) if b.ndim == 1 else g2
        ga = unbroadcast(_product(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape) if na else None
        gb = unbroadcast(_product(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape) if nb else None
        return ga, gb


class Linear(Function):
    """``x @ w.T + b`` as one node (a fully connected layer): x (..., in_features), w (out_features, in_features),
    b (out_features,) or None. One node where a matmul, a transpose and an add would be three: a small model's step
    spends much of its time per node, not per value. (PyTorch records ``AddmmBackward0`` and a ``TBackward0`` of
    the weight.)"""

    @staticmethod
    def forward(ctx, x, w, b):
        x2 = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # (not -1: NumPy cannot infer it for 0 features)
        out = _product(x2, w.T)
        if b is not None:
            out += b
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if need_w else None, w if need_x else None)  # only what a gradient needs
        ctx.x_shape = x.shape
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        rows = math.prod(ctx.x_shape[:-1])
        g2 = g.reshape(rows, g.shape[-1])
        gx = _product(g2, w).reshape(ctx.x_shape) if need_x else None
        # g.T @ x: the weight's gradient C-contiguous, in the weight's own layout (an optimizer reads it whole)
        gw = _product(g2.T, x.reshape(rows, x.shape[-1])) if need_w else None
        gb = g2.sum(axis=0) if need_b else None
        return gx, gw, gb


def _product(a, b):
    """``a @ b``: a fully connected layer's thin products (few rows, or a sum of few terms, on a large matrix) on
    :mod:`tinyconv.kernels.thin_matmul`'s loops, every other product on :func:`tinyconv.kernels.workers.matmul`."""
    out = thin_matmul.matmul(a, b)
    return workers.matmul(a, b) if out is None else out


# ---------------------------------------------------------------------------------------------- elementwise
class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g * out,)


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g / a,)


class Log1p(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log1p(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g / (1 + a),)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g / (2 * out),)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.sign(a),)  # sign(0) = 0, PyTorch's subgradient


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, min=None, max=None):
        ctx.save_for_backward(a)
        ctx.bounds = (min, max)
        return np.clip(a, min, max)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        inside = np.ones(a.shape, dtype=bool)
        if lo is not None:
            inside &= a >= lo
        if hi is not None:
            inside &= a <= hi
        return (g * inside,)


class Relu(Function):
    # One pass over memory each way (kernels/activations.py); the backward writes into g when the engine says
    # nobody else holds it (ctx.owns_grad), which saves a tensor-sized temporary per ReLU.
    @staticmethod
    def forward(ctx, a):
        out = activations.relu_forward(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (activations.relu_backward(g, out, overwrite_grad=ctx.owns_grad),)


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, a, negative_slope=0.01):
        ctx.save_for_backward(a)
        ctx.slope = negative_slope
        return np.where(a > 0, a, a * a.dtype.type(negative_slope))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (np.where(a > 0, g, g * g.dtype.type(ctx.slope)),)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        # Stable in both tails: exp of a non-positive number never overflows.
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g * out * (1 - out),)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return (g * (1 - out * out),)


class Where(Function):
    """``where(condition, a, b)``; the condition is a plain boolean array (no gradient)."""

    @staticmethod
    def forward(ctx, a, b, condition=None):
        ctx.condition = condition
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        zero = np.zeros((), dtype=g.dtype)
        ga = unbroadcast(np.where(ctx.condition, g, zero), sa) if na else None
        gb = unbroadcast(np.where(ctx.condition, zero, g), sb) if nb else None
        return ga, gb


class Softmax(Function):
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


class LogSoftmax(Function):
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


class NllLoss(Function):
    """The negative log-likelihood of class indices as one node (PyTorch's ``NllLossBackward0``): logp (N, C),
    (C,) or (N, C, d1, ...) log-probabilities, t their integer targets ((N,), () or (N, d1, ...), validated by the
    caller), w per-class weights (C,) or None. Each position's loss is ``-w[t] * logp[t]``, and 0 where t is
    ``ignore_index``; ``reduction`` "mean" divides their sum by the summed weights of the targets not ignored (by
    their count without weights), "sum" adds them, "none" keeps them."""

    @staticmethod
    def forward(ctx, logp, t, w, reduction, ignore_index):
        axis = 0 if logp.ndim == 1 else 1
        keep = t != ignore_index
        ignoring = not keep.all()
        # the targets as they are now (t may be the caller's own array); an ignored one reads class 0, then dropped
        index = np.expand_dims(np.where(keep, t, 0) if ignoring else t, axis).copy()
        losses = -np.take_along_axis(logp, index, axis=axis).squeeze(axis)
        weights = None if w is None else w[index.squeeze(axis)].astype(logp.dtype)
        if ignoring:
            weights = keep.astype(logp.dtype) if weights is None else weights * keep
        if weights is not None:
            losses = losses * weights
        ctx.index, ctx.axis, ctx.weights, ctx.reduction, ctx.shape = index, axis, weights, reduction, logp.shape
        ctx.keep = keep if ignoring else None
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        ctx.total = t.size if weights is None else weights.sum()
        if not ctx.total:  # nothing to average: NaN, as in PyTorch (without NumPy's warning)
            return np.array(np.nan, dtype=logp.dtype)
        return (losses.sum() / ctx.total).astype(logp.dtype)

    @staticmethod
    def backward(ctx, g):
        per = -g
        with np.errstate(invalid="ignore", divide="ignore"):  # (a NaN mean of nothing)
            if ctx.reduction == "mean":
                per = per / g.dtype.type(ctx.total)
            if ctx.weights is not None:
                per = per * ctx.weights
        grad = np.zeros(ctx.shape, dtype=g.dtype)
        values = np.broadcast_to(per, ctx.index.shape[:ctx.axis] + ctx.index.shape[ctx.axis + 1:])
        if ctx.keep is not None:  # an ignored target's gradient is 0, even where the mean divides by nothing
            values = np.where(ctx.keep, values, g.dtype.type(0))
        np.put_along_axis(grad, ctx.index, np.expand_dims(values, ctx.axis), axis=ctx.axis)
        return grad, None, None, None, None


# ------------------------------------------------------------------------------------------------ reductions
class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        return np.sum(a, axis=dim, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.dim, ctx.keepdim)
        return (np.broadcast_to(g, ctx.shape).copy(),)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.count = a.size if dim is None else int(np.prod([a.shape[d] for d in dim]))
        if ctx.count == 0:  # the mean of nothing is NaN, as in PyTorch, without NumPy's warning
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.mean(a, axis=dim, keepdims=keepdim)
        return np.mean(a, axis=dim, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.dim, ctx.keepdim) / g.dtype.type(ctx.count)
        return (np.broadcast_to(g, ctx.shape).copy(),)


class Amax(Function):
    """max/min over ``dim``; the gradient is shared evenly among tied extrema (PyTorch's ``amax`` rule)."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, minimum=False):
        reduce = np.amin if minimum else np.amax
        out = reduce(a, axis=dim, keepdims=keepdim)
        ctx.save_for_backward(a, out)
        ctx.dim, ctx.keepdim, ctx.minimum = dim, keepdim, minimum
        return out

    def extra_repr(self):
        return "min" if getattr(self, "minimum", False) else ""

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        out = _expand_reduced(out, a.shape, ctx.dim, ctx.keepdim)
        g = _expand_reduced(g, a.shape, ctx.dim, ctx.keepdim)
        mask = a == out
        count = mask.sum(axis=ctx.dim, keepdims=True)
        return ((g * mask / count).astype(a.dtype, copy=False),)


class Maximum(Function):
    """Elementwise ``maximum(a, b)`` (``minimum`` with ``minimum=True``), broadcasting; where the two are equal the
    gradient is split evenly between them, as PyTorch does."""

    @staticmethod
    def forward(ctx, a, b, minimum=False):
        ctx.save_for_backward(a, b)
        ctx.minimum = minimum
        return np.minimum(a, b) if minimum else np.maximum(a, b)

    def extra_repr(self):
        return "min" if getattr(self, "minimum", False) else ""

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        wins = (a < b) if ctx.minimum else (a > b)
        share = np.where(wins, 1.0, np.where(a == b, 0.5, 0.0)).astype(g.dtype, copy=False)
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(g * share, np.shape(a)) if na else None
        gb = unbroadcast(g * (1 - share), np.shape(b)) if nb else None
        return ga, gb


class Sin(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.sin(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.cos(a),)


class Cos(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.cos(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (-g * np.sin(a),)


class Piecewise(Function):
    """A piecewise-constant function (``round``, ``floor``, ``ceil``, ``sign``): its gradient is zero, as in
    PyTorch, so the result stays in the graph without passing anything back."""

    FUNCTIONS = {"round": np.round, "floor": np.floor, "ceil": np.ceil, "sign": np.sign}

    @staticmethod
    def forward(ctx, a, fn="round"):
        ctx.fn = fn
        return Piecewise.FUNCTIONS[fn](a)

    def extra_repr(self):
        return getattr(self, "fn", "")

    @staticmethod
    def backward(ctx, g):
        return (np.zeros_like(g),)


class Gather(Function):
    """``out[i][j] = a[i][index[i][j]]`` along ``dim`` (``np.take_along_axis``); the gradient is scattered back
    and summed where an index repeats."""

    @staticmethod
    def forward(ctx, a, index=None, dim=0):
        ctx.shape, ctx.index, ctx.dim = a.shape, index, dim
        return np.take_along_axis(a, index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        grad = np.zeros(ctx.shape, dtype=g.dtype)
        where = list(np.indices(ctx.index.shape, sparse=True))
        where[ctx.dim] = ctx.index
        np.add.at(grad, tuple(where), g)
        return (grad,)


class Prod(Function):
    """Product over one ``dim`` (or all elements when None). Each element's gradient is the product of the others,
    taken from running products from both ends, so zeros need no division."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.save_for_backward(a)
        ctx.dim, ctx.keepdim = dim, keepdim
        return np.asarray(np.prod(a, axis=dim, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        axis = -1 if ctx.dim is None else ctx.dim
        x = a.reshape(-1) if ctx.dim is None else a
        ones = np.ones_like(np.take(x, [0], axis=axis))
        before = np.cumprod(np.concatenate([ones, np.delete(x, -1, axis=axis)], axis=axis), axis=axis)
        after = np.flip(np.cumprod(np.concatenate([ones, np.delete(np.flip(x, axis), -1, axis=axis)], axis=axis),
                                   axis=axis), axis)
        others = (before * after).reshape(a.shape)
        g = _expand_reduced(g, a.shape, None if ctx.dim is None else (ctx.dim,), ctx.keepdim)
        return ((g * others).astype(a.dtype, copy=False),)


class Cumsum(Function):
    """Running sum along ``dim``; its gradient is the running sum of the gradient from the other end."""

    @staticmethod
    def forward(ctx, a, dim=0):
        ctx.dim = dim
        return np.cumsum(a, axis=dim)

    @staticmethod
    def backward(ctx, g):
        flipped = np.flip(g, axis=ctx.dim)
        return (np.flip(np.cumsum(flipped, axis=ctx.dim), axis=ctx.dim).copy(),)


class Norm(Function):
    """The vector ``p``-norm over ``dim`` (all elements when None): ``sum(|a|**p) ** (1/p)``, with ``p`` = inf
    (largest magnitude), -inf (smallest) and 0 (count of nonzeros). Where the norm is 0 the gradient is 0, PyTorch's
    subgradient; ties of inf/-inf norms share the gradient evenly."""

    @staticmethod
    def forward(ctx, a, p=2.0, dim=None, keepdim=False):
        mag = np.abs(a)
        if p == np.inf:
            out = np.amax(mag, axis=dim, keepdims=keepdim)
        elif p == -np.inf:
            out = np.amin(mag, axis=dim, keepdims=keepdim)
        elif p == 0:
            out = np.sum(mag != 0, axis=dim, keepdims=keepdim).astype(a.dtype)
        elif p == 1:
            out = np.sum(mag, axis=dim, keepdims=keepdim)
        elif p == 2:
            out = np.sqrt(np.sum(mag * mag, axis=dim, keepdims=keepdim))
        else:
            out = np.sum(mag ** p, axis=dim, keepdims=keepdim) ** (1.0 / p)
        out = np.asarray(out, dtype=a.dtype)
        ctx.save_for_backward(a, out)
        ctx.p, ctx.dim, ctx.keepdim = p, dim, keepdim
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        p = ctx.p
        norm = _expand_reduced(out, a.shape, ctx.dim, ctx.keepdim)
        g = _expand_reduced(g, a.shape, ctx.dim, ctx.keepdim)
        if p == 0:
            return (np.zeros_like(a),)
        if p == 1:
            return ((g * np.sign(a)).astype(a.dtype, copy=False),)
        if p in (np.inf, -np.inf):
            mask = np.abs(a) == norm
            count = mask.sum(axis=ctx.dim, keepdims=True)
            return ((g * np.sign(a) * mask / count).astype(a.dtype, copy=False),)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(norm > 0, g / norm ** (p - 1), 0.0)
        grad = a * np.abs(a) ** (p - 2) if p != 2 else a
        return ((scale * grad).astype(a.dtype, copy=False),)


# ------------------------------------------------------------------------------------------------ reshaping
class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape=()):
        ctx.shape = a.shape
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return (np.reshape(g, ctx.shape),)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, dims=()):
        ctx.dims = dims
        return np.transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        return (np.transpose(g, np.argsort(ctx.dims)),)


class GetItem(Function):
    """``a[index]``; the gradient is scattered back, accumulating repeated integer indices."""

    @staticmethod
    def forward(ctx, a, index=None):
        ctx.shape, ctx.index = a.shape, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, dtype=g.dtype)
        np.add.at(out, ctx.index, g)  # add.at, not +=, so repeated indices accumulate
        return (out,)


class SetItem(Function):
    """``a[index] = value`` written into ``a`` itself (the in-place ``Tensor.__setitem__``, PyTorch's CopySlices).

    ``forward`` modifies its first input and returns that same array. The gradient of the result reaches ``a``'s
    earlier history everywhere except at the assigned positions, and ``value`` at those positions (summed back
    over broadcasting; an element assigned twice by a repeated index passes its gradient to both sources).
    """

    def name(self) -> str:
        return "CopySlices"  # PyTorch's name for this node

    @staticmethod
    def forward(ctx, a, value, index=None):
        ctx.index, ctx.value_shape = index, np.shape(value)
        a[index] = value
        return a

    @staticmethod
    def backward(ctx, g):
        na, nv = ctx.needs_input_grad
        ga = gv = None
        if na:
            ga = g.copy()
            ga[ctx.index] = 0
        if nv:
            gv = _sum_to(g[ctx.index], ctx.value_shape)
        return ga, gv


def _sum_to(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """``unbroadcast`` that also allows ``shape`` to carry more leading 1s than ``grad`` has axes (NumPy lets
    ``x[0] = v`` take a (1, 3) value for a (3,) slot)."""
    lead = len(shape) - grad.ndim
    core = shape[lead:] if lead > 0 else shape
    return unbroadcast(grad, core).reshape(shape)


class Clone(Function):
    """A copy with its own storage; the gradient passes through unchanged."""

    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, g):
        return (g,)


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        ctx.sizes = [x.shape[dim] for x in arrays]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        splits = np.cumsum(ctx.sizes)[:-1]
        pieces = np.split(g, splits, axis=ctx.dim)
        return tuple(p if need else None for p, need in zip(pieces, ctx.needs_input_grad))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        return np.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        pieces = np.moveaxis(g, ctx.dim, 0)
        return tuple(p.copy() if need else None for p, need in zip(pieces, ctx.needs_input_grad))


class Cast(Function):
    """A dtype change (``.float()``, ``.double()``, ``.to(dtype)``); the gradient goes back in the input's dtype."""

    @staticmethod
    def forward(ctx, a, dtype=None):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return (g.astype(ctx.dtype),)
