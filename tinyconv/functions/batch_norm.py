"""Batch normalization as one autograd Function with a hand-derived backward (not a chain of primitive ops).

For each channel c, over the M = N·(H·W…) values of the batch (shapes: x (N, C) or (N, C, *spatial))::

    μ = mean(x),  σ² = mean((x - μ)²)            (biased: divided by M)
    r = 1 / sqrt(σ² + eps),  x̂ = (x - μ)·r,  y = γ·x̂ + β

and, given g = dL/dy, the whole backward in three reductions and one elementwise pass (derived in
docs/tutorial.md)::

    dβ = Σ g,   dγ = Σ g·x̂,   dx = γ·r·(g - dβ/M - x̂·dγ/M)

In eval mode μ and σ² are the running statistics, constants, so y = x·(γr) + (β - μγr) is affine in x and
dx = g·γ·r. Training mode also updates the running statistics in place (with the *unbiased* variance
σ²·M/(M-1)), as PyTorch's ``F.batch_norm`` does.

Everything is vectorised NumPy on an (N, C, L) view: per-channel sums are reductions over axes 0 and 2, no
Python loop runs over channels.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function

__all__ = ["BatchNorm"]


def _channels_view(a: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) as (N, C, L) (a view when ``a`` is contiguous)."""
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


def _channel_sum(a3: np.ndarray) -> np.ndarray:
    # Summing over the batch first (elementwise adds of (C, L) slices), then along L (NumPy's pairwise sum):
    # accurate in float32 and faster than one reduction over axes (0, 2).
    return a3.sum(axis=0).sum(axis=-1)


def _channel_dot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """Σ over n and l of a·b, per channel, without materialising the product."""
    return np.einsum("ncl,ncl->c", a3, b3)


def _per_channel(v: np.ndarray) -> np.ndarray:
    """A (C,) vector shaped to broadcast against an (N, C, L) array."""
    return v[:, None]


class BatchNorm(Function):
    """y = batch_norm(x, γ, β) (graph name ``BatchNormBackward``); see the module docstring for the formulas.

    Inputs: x (N, C, ...), weight γ (C,) or None, bias β (C,) or None. Keyword arguments: ``running_mean`` and
    ``running_var`` (arrays of shape (C,) updated in place in training mode, or None), ``training``,
    ``momentum`` (weight of the new batch statistics in the running average) and ``eps``. Arguments are
    checked by :func:`tinyconv.functional.batch_norm`, the public door.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean=None, running_var=None, training=True, momentum=0.1,
                eps=1e-5):
        dtype = x.dtype
        x3 = _channels_view(x)
        count = x3.shape[0] * x3.shape[2]  # M: values per channel
        ctx.training, ctx.shape = training, x.shape
        if count == 0:  # an empty batch: empty output, zero parameter gradients, statistics untouched
            ctx.save_for_backward(None, None)
            return np.empty(x.shape, dtype=dtype)
        if training:
            mean = _channel_sum(x3) / count
            x_hat = x3 - _per_channel(mean.astype(dtype, copy=False))
            var = _channel_dot(x_hat, x_hat) / count  # biased: what normalises this batch
            inv_std = 1.0 / np.sqrt(var + eps)
            x_hat *= _per_channel(inv_std.astype(dtype, copy=False))  # in place: x - μ becomes x̂
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
            if running_var is not None:
                running_var *= 1.0 - momentum
                running_var += (momentum * count / (count - 1)) * var  # unbiased, as PyTorch keeps it
            if weight is None:
                y = x_hat if bias is None else x_hat + _per_channel(bias.astype(dtype, copy=False))
            else:
                y = x_hat * _per_channel(weight.astype(dtype, copy=False))
                if bias is not None:
                    y += _per_channel(bias.astype(dtype, copy=False))
            need_x, need_w, _ = ctx.needs_input_grad
            ctx.save_for_backward(x_hat if (need_x or need_w) else None,
                                  None if weight is None else weight.astype(dtype, copy=False))
            ctx.inv_std = inv_std.astype(dtype, copy=False)
        else:
            # Running statistics are constants here: y = x·scale + shift, one pass over x.
            inv_std = 1.0 / np.sqrt(running_var.astype(dtype, copy=False) + eps)
            scale = inv_std if weight is None else weight.astype(dtype, copy=False) * inv_std
            shift = -running_mean.astype(dtype, copy=False) * scale
            if bias is not None:
                shift = shift + bias.astype(dtype, copy=False)
            y = x3 * _per_channel(scale)
            y += _per_channel(shift)
            ctx.save_for_backward(x3 if ctx.needs_input_grad[1] else None, scale)
            ctx.inv_std = inv_std
            ctx.eval_mean = running_mean.astype(dtype, copy=True)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_output):
        need_x, need_w, need_b = ctx.needs_input_grad
        g3 = _channels_view(grad_output)
        if g3.size == 0:
            zeros = np.zeros(g3.shape[1], dtype=g3.dtype)
            return (np.empty(ctx.shape, dtype=g3.dtype) if need_x else None, zeros if need_w else None,
                    zeros if need_b else None)
        grad_bias = _channel_sum(g3) if (need_b or (ctx.training and need_x)) else None
        grad_x = grad_weight = None
        if ctx.training:
            x_hat, weight = ctx.saved_tensors
            if need_w or need_x:
                grad_weight = _channel_dot(g3, x_hat)
            if need_x:
                count = g3.shape[0] * g3.shape[2]
                gain = ctx.inv_std if weight is None else weight * ctx.inv_std  # γ·r
                # dx = γr·g - γr·dβ/M - γr·dγ/M·x̂, built in one output array.
                grad_x = x_hat * _per_channel(-gain * grad_weight / count)
                grad_x += _per_channel(-gain * grad_bias / count)
                grad_x += g3 * _per_channel(gain)
        else:
            x3, scale = ctx.saved_tensors
            if need_x:
                grad_x = g3 * _per_channel(scale)
            if need_w:
                centred = (x3 - _per_channel(ctx.eval_mean)) * _per_channel(ctx.inv_std)
                grad_weight = _channel_dot(g3, centred)
        if grad_x is not None:
            grad_x = grad_x.reshape(ctx.shape)
        return grad_x, (grad_weight if need_w else None), (grad_bias if need_b else None)

    def extra_repr(self) -> str:
        mode = getattr(self, "training", None)
        return "" if mode is None else f"training={mode}"
