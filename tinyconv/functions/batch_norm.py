"""Batch normalization as one autograd Function with a hand-derived backward (not a chain of primitive ops).

For each channel c, over the M = N·(H·W…) values of the batch (shapes: x (N, C) or (N, C, *spatial))::

    μ = mean(x),  σ² = mean((x - μ)²)            (biased: divided by M)
    r = 1 / sqrt(σ² + eps),  x̂ = (x - μ)·r,  y = γ·x̂ + β

and, given g = dL/dy, the whole backward in two reductions and one elementwise pass (derived in
docs/tutorial.md, section 9)::

    dβ = Σ g,   dγ = Σ g·x̂,   dx = γ·r·(g - dβ/M - x̂·dγ/M)

In eval mode μ and σ² are the running statistics, constants, so y = x·(γr) + (β - μγr) is affine in x and
dx = g·γ·r. Training mode also updates the running statistics in place (with the *unbiased* variance
σ²·M/(M-1)), as PyTorch's ``F.batch_norm`` does.

Two implementations of the same formulas, on an (N, C, L) view of the input, neither with a Python loop over
channels: compiled passes (:mod:`tinyconv.kernels.numba_batch_norm`: statistics in two reads of x, the output in
one pass, the backward in one pass for the sums and one for dx; the forward keeps x, μ and r), and vectorised
NumPy (keeps x̂), used when numba's JIT is disabled.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..kernels import numba_batch_norm as nbn
from ..kernels.choose import jit_enabled

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


def _update_running(running_mean, running_var, mean, var, momentum, count) -> None:
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += (momentum * count / (count - 1)) * var  # unbiased, as PyTorch keeps it


class BatchNorm(Function):
    """y = batch_norm(x, γ, β) (graph name ``BatchNormBackward``); see the module docstring for the formulas.

    Inputs: x (N, C, ...), weight γ (C,) or None, bias β (C,) or None. Keyword arguments: ``running_mean`` and
    ``running_var`` (arrays of shape (C,) updated in place in training mode, or None), ``training``,
    ``momentum`` (weight of the new batch statistics in the running average) and ``eps``. Arguments are
    checked by :func:`tinyconv.functional.batch_norm`, the public door.
    """

    #: "numba" (compiled passes) or "numpy"; None picks numba unless its JIT is disabled.
    implementation: str | None = None

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean=None, running_var=None, training=True, momentum=0.1,
                eps=1e-5):
        dtype = x.dtype
        x3 = _channels_view(x)
        count = x3.shape[0] * x3.shape[2]  # M: values per channel
        ctx.training, ctx.shape = training, x.shape
        ctx.compiled = (BatchNorm.implementation or ("numba" if jit_enabled() else "numpy")) == "numba"
        if count == 0:  # an empty batch: empty output, zero parameter gradients, statistics untouched
            ctx.save_for_backward(None, None)
            return np.empty(x.shape, dtype=dtype)
        gamma = None if weight is None else weight.astype(np.float64)
        if ctx.compiled or not training:
            # y = x·scale + shift with per-channel scale = γr and shift = β - μ·γr: one pass over x.
            if training:  # (compiled: the NumPy training path is below)
                mean, var = nbn.channel_stats(x3)
                _update_running(running_mean, running_var, mean, var, momentum, count)
            else:
                mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
            inv_std = 1.0 / np.sqrt(var + eps)
            scale = inv_std if gamma is None else gamma * inv_std
            shift = -mean * scale
            if bias is not None:
                shift += bias
            if ctx.compiled:
                y = nbn.affine(x3, scale, shift)
            else:
                y = x3 * _per_channel(scale.astype(dtype))
                y += _per_channel(shift.astype(dtype))
            need_x, need_w, _ = ctx.needs_input_grad
            ctx.save_for_backward(x3 if (need_w or (training and need_x)) else None, gamma)
            ctx.mean, ctx.inv_std = mean, inv_std
            return y.reshape(x.shape)
        # NumPy, training: keep x̂ for the backward.
        mean = _channel_sum(x3) / count
        x_hat = x3 - _per_channel(mean.astype(dtype, copy=False))
        var = _channel_dot(x_hat, x_hat) / count  # biased: what normalises this batch
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat *= _per_channel(inv_std.astype(dtype, copy=False))  # in place: x - μ becomes x̂
        _update_running(running_mean, running_var, mean, var, momentum, count)
        if weight is None:
            y = x_hat if bias is None else x_hat + _per_channel(bias.astype(dtype, copy=False))
        else:
            y = x_hat * _per_channel(weight.astype(dtype, copy=False))
            if bias is not None:
                y += _per_channel(bias.astype(dtype, copy=False))
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x_hat if (need_x or need_w) else None, gamma)
        ctx.inv_std = inv_std.astype(np.float64)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_output):
        need_x, need_w, need_b = ctx.needs_input_grad
        g3 = _channels_view(grad_output)
        if g3.size == 0:
            zeros = np.zeros(g3.shape[1], dtype=g3.dtype)
            return (np.empty(ctx.shape, dtype=g3.dtype) if need_x else None, zeros if need_w else None,
                    zeros if need_b else None)
        saved, gamma = ctx.saved_tensors
        count = g3.shape[0] * g3.shape[2]
        r = ctx.inv_std
        gain = r if gamma is None else gamma * r  # γ·r
        grad_x = grad_weight = grad_bias = None
        if ctx.compiled or not ctx.training:
            x3 = saved
            if need_w or (ctx.training and need_x):
                if ctx.compiled:
                    sum_g, sum_gx = nbn.grad_sums(g3, x3, ctx.mean)
                else:  # eval mode without the JIT
                    sum_g = _channel_sum(g3)
                    sum_gx = _channel_dot(g3, x3 - _per_channel(ctx.mean.astype(g3.dtype)))
                grad_bias, grad_weight = sum_g, sum_gx * r  # dγ = Σ g·x̂ = r·Σ g·(x - μ)
            elif need_b:
                grad_bias = _channel_sum(g3)
            if need_x:
                if not ctx.training:  # the running statistics are constants: dx = γr·g
                    grad_x = nbn.affine(g3, gain, np.zeros_like(gain)) if ctx.compiled else g3 * _per_channel(
                        gain.astype(g3.dtype))
                else:  # dx = γr·g - γr²·dγ/M·(x - μ) - γr·dβ/M
                    grad_x = nbn.grad_input(g3, x3, ctx.mean, gain, -gain * r * grad_weight / count,
                                            -gain * grad_bias / count)
        else:
            x_hat = saved
            grad_bias = _channel_sum(g3) if (need_b or need_x) else None
            if need_w or need_x:
                grad_weight = _channel_dot(g3, x_hat)
            if need_x:
                # dx = γr·g - γr·dβ/M - γr·dγ/M·x̂, built in one output array.
                dt = g3.dtype
                grad_x = x_hat * _per_channel((-gain * grad_weight / count).astype(dt))
                grad_x += _per_channel((-gain * grad_bias / count).astype(dt))
                grad_x += g3 * _per_channel(gain.astype(dt))
        if grad_x is not None:
            grad_x = grad_x.reshape(ctx.shape)
        return grad_x, (grad_weight if need_w else None), (grad_bias if need_b else None)

    def extra_repr(self) -> str:
        mode = getattr(self, "training", None)
        return "" if mode is None else f"training={mode}"
