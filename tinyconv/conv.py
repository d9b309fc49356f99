"""Convolution and pooling with autograd: the functional API (re-exported by :mod:`tinyconv.functional`).

Each operation validates its arguments with :mod:`tinyconv.kernels.shapes` (so every error names the offending
values and nothing is computed or mutated before the check passes), then calls an autograd ``Function`` whose
``forward``/``backward`` call the pure-array kernels of :mod:`tinyconv.kernels`:

* ``conv2d``: ``conv2d_forward`` forward; backward ``conv2d_grad_input`` (only if the input needs a gradient,
  so a first layer never computes the images' gradient) and ``conv2d_grad_weight`` (only if the weight needs
  one). The kernel adds the bias while it writes the output; its gradient is ``grad_out`` summed over (N, H, W).
* ``conv_transpose2d``: no fourth algorithm. The transposed convolution IS the adjoint of a convolution, so its
  forward is ``conv2d_grad_input`` (on the output size with ``output_padding``), the gradient of its input is
  ``conv2d_forward`` and the gradient of its weight is ``conv2d_grad_weight`` with the roles of the arrays
  swapped.
* ``conv1d``: ``conv2d`` on ``H = 1``.
* ``max_pool2d`` / ``avg_pool2d``: the pooling kernels ("numpy" or "numba").

The convolution algorithm is chosen per call (``kernel=``), per block (``with tc.use_kernel(...)``), per process
(``tc.set_default_kernel`` or ``TINYCONV_KERNEL``), default ``"auto"`` (see :mod:`tinyconv.kernels`). The choice in
force when the forward runs is recorded in the graph node and reused by its backward, even if the backward
runs outside the ``use_kernel`` block. Unbatched inputs ``(C, H, W)`` (``(C, L)`` for conv1d) are accepted and
give unbatched outputs, as in PyTorch. Inputs of different dtypes are computed in the wider floating dtype
(integer tensors count as float32); each gradient comes back in its input's dtype.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels as K
from .autograd import Function
from .kernels import (get_default_kernel, get_default_pool_kernel, set_default_kernel,  # noqa: F401
                      set_default_pool_kernel, use_kernel, use_pool_kernel)
from .kernels import shapes
from .tensor import DEFAULT_DTYPE, ShapeError, Tensor, as_tensor

__all__ = [
    "conv2d",
    "conv1d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "corr2d",
    "use_kernel",
    "set_default_kernel",
    "get_default_kernel",
    "use_pool_kernel",
    "set_default_pool_kernel",
    "get_default_pool_kernel",
]


# ------------------------------------------------------------------------------------------------ helpers
def _compute_dtype(*tensors) -> np.dtype:
    """The floating dtype the op runs in: the widest floating input dtype, float32 if none is floating."""
    floats = [t.dtype for t in tensors if t is not None and t.dtype.kind == "f"]
    return np.result_type(*floats) if floats else np.dtype(DEFAULT_DTYPE)


def _cast(a, dtype):
    return None if a is None else a.astype(dtype, copy=False)


def _batched(input: Tensor, fn: str, spatial: int = 2) -> bool:
    """True if ``input`` is unbatched (one dim fewer), after checking its rank."""
    batched_dims = 2 + spatial
    if input.ndim == batched_dims:
        return False
    if input.ndim == batched_dims - 1:
        return True
    names = "(C, H, W)" if spatial == 2 else "(C, L)"
    bnames = "(N, C, H, W)" if spatial == 2 else "(N, C, L)"
    raise ShapeError(f"{fn}: expected a {batched_dims - 1}-D (unbatched {names}) or {batched_dims}-D "
                     f"(batched {bnames}) input, got input of shape {input.shape}")


def _relabel(err: ValueError, batched_shape, shape) -> ValueError:
    """Re-word a shapes.* message about the batched view of an unbatched input."""
    msg = str(err).replace(str(tuple(batched_shape)), f"{tuple(shape)} (unbatched)")
    return type(err)(msg)


def _bias_grad(g: np.ndarray) -> np.ndarray:
    """grad_out summed over (N, H, W): one value per channel (einsum's single pass is ~3x
    faster than ``g.sum(axis=(0, 2, 3))`` on LeNet's (128, 6, 28, 28))."""
    # The positions' count is spelled out: reshape cannot infer -1 for an empty batch.
    return np.einsum("ncp->c", g.reshape(g.shape[0], g.shape[1], math.prod(g.shape[2:])))


def _check_bias(bias, c_out: int, fn: str):
    if bias is None:
        return None
    bias = as_tensor(bias)
    if bias.shape != (c_out,):
        raise ShapeError(f"{fn}: bias must have shape ({c_out},) (one value per output channel), "
                         f"got shape {bias.shape}")
    return bias


# ------------------------------------------------------------------------------------------------ conv2d
class _KernelFunction(Function):
    """A Function whose forward runs a selectable kernel: the grad_output its backward hands to the
    kernels, and the kernel shown in the graph (``Conv2dBackward(kernel=numba)``)."""

    @staticmethod
    def _grad_output(ctx, g):
        """grad_output batched (for an unbatched input) and C-contiguous, as the kernels expect."""
        return np.ascontiguousarray(g[None] if ctx.unbatched else g)

    def extra_repr(self) -> str:
        used = getattr(self, "kernel_used", None)
        return f"kernel={used}" if used else ""


class _ConvFunction(_KernelFunction):
    """What Conv2d and ConvTranspose2d also share: what the forward keeps for the backward (only what
    a requested gradient needs)."""

    @staticmethod
    def _keep(ctx, x, w, args, kernel, name, unbatched):
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        ctx.args = args
        ctx.x_shape, ctx.w_shape = x.shape, w.shape
        ctx.kernel, ctx.kernel_used, ctx.unbatched = kernel, name, unbatched


class Conv2d(_ConvFunction):
    """y = conv2d(x, w) + b with kernel-selectable forward/backward (graph name ``Conv2dBackward``)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, kernel, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        if unbatched:
            x = x[None]
        name = K.choose_kernel(x.shape, w.shape, stride, padding, dilation, groups, op="forward",
                               kernel=kernel)
        y = K.KERNELS[name].conv2d_forward(x, w, stride, padding, dilation, groups, bias=b)
        Conv2d._keep(ctx, x, w, (stride, padding, dilation, groups), kernel, name, unbatched)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = Conv2d._grad_output(ctx, g)
        stride, padding, dilation, groups = ctx.args
        gx = gw = gb = None
        if need_x:
            name = K.choose_kernel(ctx.x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="grad_input", kernel=ctx.kernel)
            gx = K.KERNELS[name].conv2d_grad_input(g, w, ctx.x_shape[2:], *ctx.args)
            if ctx.unbatched:
                gx = gx[0]
        if need_w:
            name = K.choose_kernel(ctx.x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="grad_weight", kernel=ctx.kernel)
            gw = K.KERNELS[name].conv2d_grad_weight(x, g, ctx.w_shape[2:], *ctx.args)
        if need_b:
            gb = _bias_grad(g)
        return gx, gw, gb


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, kernel=None) -> Tensor:
    """2-D convolution (cross-correlation), PyTorch's ``F.conv2d``.

    input ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; weight ``(C_out, C_in/groups, kh, kw)``; bias
    ``(C_out,)`` or None. ``padding``: int, ``(ph, pw)``, ``(top, bottom, left, right)``, ``'valid'`` or
    ``'same'`` (stride 1; odd total padding puts the extra pixel at the bottom/right). ``kernel``: "direct",
    "im2col", "numba" or "auto" (None: the default in force).
    """
    input, weight = as_tensor(input), as_tensor(weight)
    unbatched = _batched(input, "conv2d")
    shape4 = (1,) + input.shape if unbatched else input.shape
    try:
        args = shapes.normalize_conv_args(shape4, weight.shape, stride, padding, dilation, groups)
    except ValueError as e:
        raise (_relabel(e, shape4, input.shape) if unbatched else e) from None
    bias = _check_bias(bias, weight.shape[0], "conv2d")
    kernel = K.resolve_kernel(kernel)
    dtype = _compute_dtype(input, weight, bias)
    return Conv2d.apply(input, weight, bias, stride=args.stride, padding=args.padding,
                        dilation=args.dilation, groups=args.groups, kernel=kernel,
                        unbatched=unbatched, dtype=dtype)


# ------------------------------------------------------------------------------------------------ conv1d
def _conv1d_padding(padding):
    if isinstance(padding, str):
        return padding
    if isinstance(padding, (tuple, list)):
        if len(padding) == 1:
            return (0, padding[0])
        raise ValueError(f"conv1d: padding must be an int, a 1-tuple, 'same' or 'valid', got {tuple(padding)!r}")
    return (0, padding)


def _one(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"conv1d: {name} must be an int or a 1-tuple, got {tuple(v)!r}")
        return v[0]
    return v


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, kernel=None) -> Tensor:
    """1-D convolution, PyTorch's ``F.conv1d``: input ``(N, C_in, L)`` or ``(C_in, L)``, weight
    ``(C_out, C_in/groups, k)``. Computed as :func:`conv2d` on images of height 1."""
    input, weight = as_tensor(input), as_tensor(weight)
    unbatched = _batched(input, "conv1d", spatial=1)
    if weight.ndim != 3:
        raise ShapeError(f"conv1d: expected a 3-D weight (C_out, C_in/groups, k), got a {weight.ndim}-D "
                         f"weight of shape {weight.shape}")
    x = input if not unbatched else input.reshape((1,) + input.shape)
    n, c, length = x.shape
    y = conv2d(x.reshape(n, c, 1, length), weight.reshape(weight.shape[:2] + (1, weight.shape[2])), bias,
               stride=(1, _one(stride, "stride")), padding=_conv1d_padding(padding),
               dilation=(1, _one(dilation, "dilation")), groups=groups, kernel=kernel)
    y = y.reshape(y.shape[0], y.shape[1], y.shape[3])
    return y.reshape(y.shape[1:]) if unbatched else y


# ------------------------------------------------------------------------------------------------ conv_transpose2d
class ConvTranspose2d(_ConvFunction):
    """y = conv_transpose2d(x, w) + b: the adjoint of conv2d, built from the same three kernels."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, out_hw, kernel, unbatched, dtype):
        x, w, b = _cast(x, dtype), _cast(w, dtype), _cast(b, dtype)
        if unbatched:
            x = x[None]
        x = np.ascontiguousarray(x)
        # the equivalent conv2d maps an image of out_hw (C_out channels) to x (C_in channels); w is its weight
        conv_x_shape = (x.shape[0], w.shape[1] * groups) + tuple(out_hw)
        name = K.choose_kernel(conv_x_shape, w.shape, stride, padding, dilation, groups, op="grad_input",
                               kernel=kernel)
        y = K.KERNELS[name].conv2d_grad_input(x, w, out_hw, stride, padding, dilation, groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        ConvTranspose2d._keep(ctx, x, w, (stride, padding, dilation, groups), kernel, name, unbatched)
        ctx.conv_x_shape = conv_x_shape
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g = ConvTranspose2d._grad_output(ctx, g)
        stride, padding, dilation, groups = ctx.args
        gx = gw = gb = None
        if need_x:
            name = K.choose_kernel(ctx.conv_x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="forward", kernel=ctx.kernel)
            gx = K.KERNELS[name].conv2d_forward(g, w, *ctx.args)
            h, w_ = ctx.x_shape[2:]
            if gx.shape[2:] != (h, w_):  # output_padding >= stride: rows no input pixel reached
                gx = np.ascontiguousarray(gx[:, :, :h, :w_])
            if ctx.unbatched:
                gx = gx[0]
        if need_w:
            name = K.choose_kernel(ctx.conv_x_shape, ctx.w_shape, stride, padding, dilation, groups,
                                   op="grad_weight", kernel=ctx.kernel)
            gw = K.KERNELS[name].conv2d_grad_weight(g, x, ctx.w_shape[2:], *ctx.args)
        if need_b:
            gb = _bias_grad(g)
        return gx, gw, gb


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     kernel=None) -> Tensor:
    """Transposed 2-D convolution, PyTorch's ``F.conv_transpose2d``.

    input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; weight ``(C_in, C_out/groups, kh, kw)``; output size
    ``(H - 1)·s - 2p + d·(k - 1) + output_padding + 1``. ``padding`` is an int, a pair or a 4-tuple (the padding
    of the convolution it is the adjoint of); ``output_padding`` must be smaller than the stride or the dilation.
    """
    input, weight = as_tensor(input), as_tensor(weight)
    unbatched = _batched(input, "conv_transpose2d")
    shape4 = (1,) + input.shape if unbatched else input.shape
    try:
        args = shapes.normalize_conv_transpose_args(shape4, weight.shape, stride, padding, output_padding,
                                                    groups, dilation)
    except ValueError as e:
        raise (_relabel(e, shape4, input.shape) if unbatched else e) from None
    bias = _check_bias(bias, args.out_shape[1], "conv_transpose2d")
    kernel = K.resolve_kernel(kernel)
    dtype = _compute_dtype(input, weight, bias)
    return ConvTranspose2d.apply(input, weight, bias, stride=args.stride, padding=args.padding,
                                 dilation=args.dilation, groups=args.groups, out_hw=args.out_shape[2:],
                                 kernel=kernel, unbatched=unbatched, dtype=dtype)


# ------------------------------------------------------------------------------------------------ pooling
def _pool_input(input, fn):
    input = as_tensor(input)
    unbatched = _batched(input, fn)
    if input.dtype.kind != "f":
        raise TypeError(f"{fn}: expected a floating-point input (float32 or float64), got {input.dtype}")
    return input, unbatched


class MaxPool2d(_KernelFunction):
    """Max pooling; the node keeps the argmax of every window (graph name ``MaxPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, kernel, unbatched, indices_out=None):
        if unbatched:
            x = x[None]
        name = K.choose_pool_kernel(x.shape, kernel=kernel)
        y, argmax = K.POOL_KERNELS[name].max_pool2d_forward(x, kernel_size, stride, padding, dilation,
                                                            ceil_mode)
        if indices_out is not None:
            indices_out.append(argmax[0] if unbatched else argmax)
        if ctx.needs_input_grad[0]:
            ctx.saved_argmax = argmax  # "saved_*" attributes are freed by the engine after backward
        ctx.x_shape, ctx.unbatched, ctx.kernel, ctx.kernel_used = x.shape, unbatched, kernel, name
        # non-overlapping windows: every input pixel is in at most one window -> a plain scatter
        ctx.non_overlapping = all(s >= d * (k - 1) + 1 for k, s, d in zip(kernel_size, stride, dilation))
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        ctx.saved_tensors  # raises the usual error if the graph was already freed
        g = MaxPool2d._grad_output(ctx, g)
        name = K.choose_pool_kernel(ctx.x_shape, kernel=ctx.kernel)
        gx = K.POOL_KERNELS[name].max_pool2d_backward(g, ctx.saved_argmax, ctx.x_shape,
                                                      non_overlapping=ctx.non_overlapping)
        return (gx[0] if ctx.unbatched else gx,)


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
    kernel = _pool_kernel_name(kernel)
    indices = [] if return_indices else None
    out = MaxPool2d.apply(input, kernel_size=args.kernel, stride=args.stride, padding=args.padding,
                          dilation=args.dilation, ceil_mode=args.ceil_mode, kernel=kernel, unbatched=unbatched,
                          indices_out=indices)
    return (out, Tensor(indices[0])) if return_indices else out


class AvgPool2d(_KernelFunction):
    """Average pooling (graph name ``AvgPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, kernel,
                unbatched):
        if unbatched:
            x = x[None]
        name = K.choose_pool_kernel(x.shape, kernel=kernel)
        y = K.POOL_KERNELS[name].avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode,
                                                    count_include_pad, divisor_override)
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        ctx.x_shape, ctx.unbatched, ctx.kernel, ctx.kernel_used = x.shape, unbatched, kernel, name
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        g = AvgPool2d._grad_output(ctx, g)
        name = K.choose_pool_kernel(ctx.x_shape, kernel=ctx.kernel)
        gx = K.POOL_KERNELS[name].avg_pool2d_backward(g, ctx.x_shape, *ctx.args)
        return (gx[0] if ctx.unbatched else gx,)


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
    kernel = _pool_kernel_name(kernel)
    return AvgPool2d.apply(input, kernel_size=args.kernel, stride=args.stride, padding=args.padding,
                           ceil_mode=args.ceil_mode, count_include_pad=bool(count_include_pad),
                           divisor_override=divisor_override, kernel=kernel, unbatched=unbatched)


def _pool_kernel_name(kernel):
    if kernel is None:
        return K.get_default_pool_kernel()
    K.get_pool_kernel(kernel)  # validates, with the list of valid names
    return kernel.lower()


# ------------------------------------------------------------------------------------------------ adaptive
def _adaptive_bounds(n_in: int, n_out: int):
    """PyTorch's adaptive windows: [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))."""
    i = np.arange(n_out)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


class AdaptiveAvgPool2d(Function):
    """Adaptive average pooling to a fixed output size (graph name ``AdaptiveAvgPool2dBackward``)."""

    @staticmethod
    def forward(ctx, x, output_size, unbatched):
        if unbatched:
            x = x[None]
        n, c, h, w = x.shape
        oh, ow = output_size
        hs, he = _adaptive_bounds(h, oh)
        ws, we = _adaptive_bounds(w, ow)
        ctx.bounds, ctx.x_shape, ctx.unbatched = (hs, he, ws, we), x.shape, unbatched
        if h % oh == 0 and w % ow == 0:  # equal, non-overlapping windows: one reshape
            y = x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5), dtype=x.dtype)
        else:
            y = np.empty((n, c, oh, ow), dtype=x.dtype)
            for i in range(oh):
                for j in range(ow):
                    y[:, :, i, j] = x[:, :, hs[i]:he[i], ws[j]:we[j]].mean(axis=(2, 3), dtype=x.dtype)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, g):
        if ctx.unbatched:
            g = g[None]
        hs, he, ws, we = ctx.bounds
        gx = np.zeros(ctx.x_shape, dtype=g.dtype)
        for i in range(len(hs)):
            for j in range(len(ws)):
                area = (he[i] - hs[i]) * (we[j] - ws[j])
                gx[:, :, hs[i]:he[i], ws[j]:we[j]] += (g[:, :, i, j] / area)[:, :, None, None]
        return (gx[0] if ctx.unbatched else gx,)


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
        raise ValueError(f"adaptive_avg_pool2d: input of shape {input.shape} has an empty spatial dimension")
    return AdaptiveAvgPool2d.apply(input, output_size=(oh, ow), unbatched=unbatched)


# ------------------------------------------------------------------------------------------------ corr2d
def corr2d(X, K_, kernel=None) -> Tensor:
    """The textbook 2-D cross-correlation of a 2-D array ``X`` (H, W) with a 2-D kernel ``K`` (kh, kw):
    ``Y[i, j] = Σ_a Σ_b X[i + a, j + b] · K[a, b]``, shape ``(H - kh + 1, W - kw + 1)``.

    Accepts arrays or tensors and returns a Tensor, differentiable with respect to both."""
    X, K_ = as_tensor(X), as_tensor(K_)
    if X.ndim != 2 or K_.ndim != 2:
        raise ShapeError(f"corr2d: expected a 2-D input and a 2-D kernel, got shapes {X.shape} and {K_.shape}")
    if K_.shape[0] > X.shape[0] or K_.shape[1] > X.shape[1]:
        raise ShapeError(f"corr2d: kernel of shape {K_.shape} is larger than the input of shape {X.shape}")
    y = conv2d(X.reshape(1, 1, *X.shape), K_.reshape(1, 1, *K_.shape), kernel=kernel)
    return y.reshape(y.shape[2:])
