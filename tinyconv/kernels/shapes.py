"""Output-size arithmetic and argument validation for convolution and pooling.

This module is the ONE place in tinyconv where output sizes are computed and where
stride / padding / dilation / groups arguments are normalised and checked.  Every
kernel (``direct``, ``im2col``, ``numba``) and every functional wrapper relies on it,
so that an error message reads the same whichever algorithm runs.

Conventions (the same as PyTorch):

* ``stride`` and ``dilation`` are ``(sh, sw)`` / ``(dh, dw)`` pairs of positive ints.
* Convolution padding is normalised to a 4-tuple ``(top, bottom, left, right)``.
  ``padding`` may be given as an int, a pair ``(ph, pw)`` (symmetric), a 4-tuple,
  ``"valid"`` (no padding) or ``"same"`` (stride 1 only).  For ``"same"`` the total
  padding per axis is ``d * (k - 1)``; when that is odd the extra pixel goes to the
  bottom / right, exactly like PyTorch (``left = total // 2``, ``right = total - left``).
* Output size per axis: ``floor((n + p_total - d * (k - 1) - 1) / s) + 1``.
* Pooling padding is symmetric ``(ph, pw)`` and must be at most half the kernel size;
  with ``ceil_mode`` the output size rounds up, but the last window must start inside
  the input or the left padding (PyTorch's ``pooling_output_shape``).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

__all__ = [
    "pair",
    "single",
    "conv_output_size",
    "conv_transpose_output_size",
    "conv_out_hw",
    "normalize_padding",
    "normalize_conv_args",
    "normalize_conv_transpose_args",
    "conv_args",
    "pool_output_size",
    "normalize_pool_window",
    "normalize_pool_args",
    "ConvArgs",
    "PoolArgs",
]


def _is_int(v) -> bool:
    if type(v) is int:  # the common case first: an ABC check costs a microsecond, and calls are many
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def pair(v, name: str = "value") -> tuple[int, int]:
    """Return ``(v, v)`` for an int, or the pair itself for a 2-sequence of ints.

    Raises ``TypeError`` for anything that is not an int or a sequence of ints and
    ``ValueError`` for a sequence of the wrong length.
    """
    if type(v) is int:
        return (v, v)
    if type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int:
        return v
    if _is_int(v):
        return (int(v), int(v))
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {tuple(v)!r} "
                             f"({len(v)} values)")
        if not all(_is_int(e) for e in v):
            raise TypeError(f"{name} must be an int or a pair of ints, got {tuple(v)!r}")
        return (int(v[0]), int(v[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {v!r} "
                    f"(type {type(v).__name__})")


def single(v, name: str, fn: str = "conv1d"):
    """The one value of a 1-D argument given as ``v`` or ``(v,)`` (conv1d's stride, padding, ...)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{fn}: {name} must be an int or a 1-tuple, got {tuple(v)!r}")
        return v[0]
    return v


def conv_output_size(n: int, k: int, s: int, p_total: int, d: int) -> int:
    """Output length of a convolution along one axis.

    ``n`` input length, ``k`` kernel length, ``s`` stride, ``p_total`` the padding
    added on both sides together, ``d`` dilation:
    ``floor((n + p_total - d * (k - 1) - 1) / s) + 1``.
    Raises ``ValueError`` when the dilated kernel does not fit in the padded input.
    """
    span = d * (k - 1) + 1
    if n + p_total < span:
        raise ValueError(
            f"kernel size (dilated) {span} is larger than the padded input size "
            f"{n + p_total} (input {n}, padding {p_total}, kernel {k}, dilation {d})")
    return (n + p_total - span) // s + 1


def conv_transpose_output_size(n: int, k: int, s: int, p_total: int, d: int,
                               output_padding: int = 0) -> int:
    """Output length of a transposed convolution along one axis (PyTorch's formula):
    ``(n - 1) * s - p_total + d * (k - 1) + output_padding + 1``."""
    return (n - 1) * s - p_total + d * (k - 1) + output_padding + 1


def conv_out_hw(x_shape, w_shape, args) -> tuple[int, int]:
    """(Ho, Wo) of the convolution of an input of ``x_shape`` (N, C, H, W) with a weight of ``w_shape``
    (C_out, C_in/groups, kh, kw) under the normalised ``args`` (its ``out_shape`` is not that inside a transposed
    convolution, whose args describe the convolution it is the adjoint of)."""
    top, bottom, left, right = args.padding
    return (conv_output_size(x_shape[2], w_shape[2], args.stride[0], top + bottom, args.dilation[0]),
            conv_output_size(x_shape[3], w_shape[3], args.stride[1], left + right, args.dilation[1]))


def _check_positive(v: tuple[int, int], name: str) -> None:
    if v[0] <= 0 or v[1] <= 0:
        raise ValueError(f"{name} must be positive, got {name}={v}")


def normalize_padding(padding, kernel_hw, stride, dilation) -> tuple[int, int, int, int]:
    """Normalise a conv ``padding`` argument to ``(top, bottom, left, right)``.

    ``kernel_hw``, ``stride`` and ``dilation`` must already be pairs (they are needed
    for ``"same"``)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions "
                    f"(stride={stride}); use an explicit padding")
            th = dilation[0] * (kernel_hw[0] - 1)
            tw = dilation[1] * (kernel_hw[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ValueError(f"unknown padding {padding!r}; padding must be 'same', 'valid', "
                         f"an int, a pair (ph, pw) or a 4-tuple (top, bottom, left, right)")
    if _is_int(padding):
        p = (int(padding),) * 4
    elif isinstance(padding, (tuple, list)):
        if not all(_is_int(e) for e in padding):
            raise TypeError(f"padding must be an int, a pair, a 4-tuple or a string, "
                            f"got {tuple(padding)!r}")
        if len(padding) == 2:
            p = (int(padding[0]), int(padding[0]), int(padding[1]), int(padding[1]))
        elif len(padding) == 4:
            p = tuple(int(e) for e in padding)
        else:
            raise ValueError(f"padding must be an int, a pair (ph, pw) or a 4-tuple "
                             f"(top, bottom, left, right), got {tuple(padding)!r} "
                             f"({len(padding)} values)")
    else:
        raise TypeError(f"padding must be an int, a pair, a 4-tuple or a string, got "
                        f"{padding!r} (type {type(padding).__name__})")
    if min(p) < 0:
        raise ValueError(f"padding must be non-negative, got padding={padding!r}")
    return p


class ConvArgs(NamedTuple):
    """Normalised convolution arguments and the resulting output shape."""
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    kernel_hw: tuple[int, int]
    out_shape: tuple[int, int, int, int]


def _shape_tuple(shape, what: str) -> tuple[int, ...]:
    if isinstance(shape, tuple) and all(type(s) is int for s in shape):  # an array's own shape, or a Size
        return shape if type(shape) is tuple else tuple(shape)  # (a Size prints as one: the messages want tuples)
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{what} shape must be a sequence of ints, got {shape!r}") from None


def _check_groups(groups, c_in: int, c_out: int, weight_shape) -> int:
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r} (type {type(groups).__name__})")
    groups = int(groups)
    if groups <= 0:
        raise ValueError(f"groups must be positive, got groups={groups}")
    if c_out % groups != 0:
        raise ValueError(f"groups={groups} must divide the number of output channels "
                         f"{c_out} (weight {weight_shape})")
    if c_in % groups != 0:
        raise ValueError(f"groups={groups} must divide the number of input channels {c_in} "
                         f"(weight {weight_shape})")
    return groups


def _input_and_weight_shapes(input_shape, weight_shape, weight_layout: str):
    """Both shapes as int tuples, checked to be 4-D (and the weight non-empty); ``weight_layout`` names the
    weight's first two axes in the message (conv2d and conv_transpose2d lay them out differently)."""
    xs = _shape_tuple(input_shape, "input")
    ws = _shape_tuple(weight_shape, "weight")
    if len(xs) != 4:
        raise ValueError(f"expected a 4-D input (N, C_in, H, W), got a {len(xs)}-D input "
                         f"of shape {xs}")
    if len(ws) != 4:
        raise ValueError(f"expected a 4-D weight ({weight_layout}, kh, kw), got a "
                         f"{len(ws)}-D weight of shape {ws}")
    if min(ws) <= 0:
        raise ValueError(f"weight shape must be positive in every dimension, got {ws}")
    return xs, ws


def normalize_conv_args(input_shape, weight_shape, stride=1, padding=0, dilation=1,
                        groups=1) -> ConvArgs:
    """Validate a conv2d call and return :class:`ConvArgs` (normalised tuples + output shape).

    ``input_shape`` is ``(N, C_in, H, W)``; ``weight_shape`` is
    ``(C_out, C_in / groups, kh, kw)``.  Raises ``ValueError`` (or ``TypeError`` for a
    wrongly typed argument) with the offending values in the message.
    """
    xs, ws = _input_and_weight_shapes(input_shape, weight_shape, "C_out, C_in/groups")
    c_out, c_in_g, kh, kw = ws
    groups = _check_groups(groups, xs[1], c_out, ws)
    if xs[1] != c_in_g * groups:
        raise ValueError(f"expected input with {c_in_g * groups} channels (weight {ws}, "
                         f"groups={groups}), got input of shape {xs} with {xs[1]} channels")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    _check_positive(stride, "stride")
    _check_positive(dilation, "dilation")
    pad = normalize_padding(padding, (kh, kw), stride, dilation)
    n, _, h, w = xs
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if eh > hp or ew > wp:
        raise ValueError(
            f"kernel size (dilated) ({eh}, {ew}) is larger than the padded input "
            f"({hp}, {wp}): input of shape {xs}, weight {ws}, padding {pad}, "
            f"dilation {dilation}")
    ho = conv_output_size(h, kh, stride[0], pad[0] + pad[1], dilation[0])
    wo = conv_output_size(w, kw, stride[1], pad[2] + pad[3], dilation[1])
    return ConvArgs(stride, pad, dilation, groups, (kh, kw), (n, c_out, ho, wo))


def conv_args(x_shape, w_shape, stride, padding, dilation, groups) -> ConvArgs:
    """:class:`ConvArgs` of a conv2d whose arguments are already normalised (pairs, a 4-tuple padding) and valid:
    only the output shape is computed, nothing is checked."""
    n, _, h, w = x_shape
    kh, kw = w_shape[2], w_shape[3]
    ho = (h + padding[0] + padding[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + padding[2] + padding[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return ConvArgs(stride, padding, dilation, groups, (kh, kw), (n, w_shape[0], ho, wo))


def normalize_conv_transpose_args(input_shape, weight_shape, stride=1, padding=0,
                                  output_padding=0, groups=1, dilation=1) -> ConvArgs:
    """Validate a conv_transpose2d call (PyTorch layout: weight ``(C_in, C_out/groups, kh, kw)``).

    Returns :class:`ConvArgs` whose ``out_shape`` is the transposed conv's output shape
    ``(N, C_out, H_out, W_out)`` and whose ``padding`` is the 4-tuple of the equivalent
    conv2d (the transposed conv is the adjoint of conv2d on an input of ``out_shape``).
    ``padding`` must be an int or a pair (strings are not allowed, as in PyTorch);
    ``output_padding`` must be smaller than either the stride or the dilation.
    """
    xs, ws = _input_and_weight_shapes(input_shape, weight_shape, "C_in, C_out/groups")
    c_in, c_out_g, kh, kw = ws
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r} (type {type(groups).__name__})")
    groups = int(groups)
    if groups <= 0:
        raise ValueError(f"groups must be positive, got groups={groups}")
    if c_in % groups != 0:
        raise ValueError(f"groups={groups} must divide the number of input channels "
                         f"{c_in} (weight {ws})")
    if xs[1] != c_in:
        raise ValueError(f"expected input with {c_in} channels (weight {ws}, "
                         f"groups={groups}), got input of shape {xs} with {xs[1]} channels")
    if isinstance(padding, str):
        raise ValueError(f"conv_transpose2d does not support string padding, got {padding!r}")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    _check_positive(stride, "stride")
    _check_positive(dilation, "dilation")
    pad = normalize_padding(padding, (kh, kw), stride, dilation)
    op = pair(output_padding, "output_padding")
    if min(op) < 0:
        raise ValueError(f"output_padding must be non-negative, got output_padding={op}")
    for i in range(2):
        if not (op[i] < stride[i] or op[i] < dilation[i]):
            raise ValueError(f"output_padding must be smaller than either stride or dilation, "
                             f"got output_padding={op}, stride={stride}, dilation={dilation}")
    n, _, h, w = xs
    ho = conv_transpose_output_size(h, kh, stride[0], pad[0] + pad[1], dilation[0], op[0])
    wo = conv_transpose_output_size(w, kw, stride[1], pad[2] + pad[3], dilation[1], op[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"conv_transpose2d output size ({ho}, {wo}) is not positive "
                         f"(input of shape {xs}, weight {ws}, stride {stride}, padding {pad}, "
                         f"dilation {dilation}, output_padding {op})")
    return ConvArgs(stride, pad, dilation, groups, (kh, kw), (n, c_out_g * groups, ho, wo))


# ----------------------------------------------------------------------------- pooling

def pool_output_size(n: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a pooling window along one axis (PyTorch's ``pooling_output_shape``).

    ``p`` is the padding on EACH side.  With ``ceil_mode`` the division rounds up, but a
    window that would start beyond the input and its left padding is dropped.
    """
    num = n + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = num // s + 1  # floor division == PyTorch's div_rtn
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


class PoolArgs(NamedTuple):
    """Normalised pooling arguments and the resulting output shape."""
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    out_shape: tuple[int, int, int, int]


def normalize_pool_window(kernel_size, stride=None, padding=0, dilation=1):
    """``(kernel_size, stride, padding, dilation)`` of a 2-D pooling window as checked pairs.

    ``stride=None`` (or an empty sequence) means ``stride = kernel_size``.  Padding is
    symmetric (int or pair) and must be at most half the kernel size."""
    k = pair(kernel_size, "kernel_size")
    _check_positive(k, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else pair(stride, "stride")
    _check_positive(s, "stride")
    d = pair(dilation, "dilation")
    _check_positive(d, "dilation")
    if isinstance(padding, str):
        raise TypeError(f"pooling padding must be an int or a pair of ints, got {padding!r}")
    p = pair(padding, "padding")
    if min(p) < 0:
        raise ValueError(f"padding must be non-negative, got padding={p}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding should be at most half of the kernel size, got "
                         f"padding={p}, kernel_size={k}")
    return k, s, p, d


def normalize_pool_args(input_shape, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False) -> PoolArgs:
    """Validate a 2-D pooling call on a 4-D ``(N, C, H, W)`` input.

    ``stride=None`` (or an empty sequence) means ``stride = kernel_size``.  Padding is
    symmetric (int or pair) and must be at most half the kernel size.
    """
    xs = _shape_tuple(input_shape, "input")
    if len(xs) != 4:
        raise ValueError(f"expected a 4-D input (N, C, H, W), got a {len(xs)}-D input "
                         f"of shape {xs}")
    k, s, p, d = normalize_pool_window(kernel_size, stride, padding, dilation)
    n, c, h, w = xs
    ho = pool_output_size(h, k[0], s[0], p[0], d[0], bool(ceil_mode))
    wo = pool_output_size(w, k[1], s[1], p[1], d[1], bool(ceil_mode))
    if ho < 1 or wo < 1:
        raise ValueError(f"pooling output size is too small: input of shape {xs}, "
                         f"kernel_size={k}, stride={s}, padding={p}, dilation={d}, "
                         f"ceil_mode={bool(ceil_mode)} give an output of {ho}x{wo}")
    return PoolArgs(k, s, p, d, bool(ceil_mode), (n, c, ho, wo))


# ------------------------------------------------------------- helpers for the kernels

def check_float_dtypes(**arrays):
    """Return the common floating dtype of the given arrays (float32 or float64).

    Kernels never promote: all arrays must share one floating dtype, otherwise a
    ``TypeError`` names the offending dtypes."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    first = next(iter(dtypes.values()))
    if any(dt != first for dt in dtypes.values()) or first.kind != "f":
        desc = ", ".join(f"{name}: {dt}" for name, dt in dtypes.items())
        raise TypeError(f"conv/pool kernels need arrays of one floating dtype "
                        f"(float32 or float64), got {desc}")
    return first


def check_bias(bias, c_out: int, dtype):
    """``bias`` (or None) for a kernel's forward: shape ``(C_out,)`` and the kernel's dtype."""
    if bias is None:
        return None
    if tuple(bias.shape) != (c_out,) or bias.dtype != dtype:
        raise ValueError(f"conv kernels need a bias of shape ({c_out},) and dtype {dtype} (one value per "
                         f"output channel), got shape {tuple(bias.shape)} and dtype {bias.dtype}")
    return bias


def check_grad_output_shape(grad_shape, out_shape) -> None:
    """Check ``grad_y``'s shape against the forward output shape ``out_shape``.

    Batch and channels must match.  The spatial size may be SMALLER than the full
    forward output (the missing trailing rows/columns count as zero gradient): that
    happens for a transposed convolution whose ``output_padding`` is not below the
    stride (allowed when it is below the dilation)."""
    gs = tuple(int(s) for s in grad_shape)
    if (len(gs) != 4 or gs[0] != out_shape[0] or gs[1] != out_shape[1]
            or not (1 <= gs[2] <= out_shape[2]) or not (1 <= gs[3] <= out_shape[3])):
        raise ValueError(f"grad_output of shape {gs} does not match the convolution "
                         f"output shape {tuple(out_shape)}")


def grad_weight_shape(x_shape, c_out: int, kernel_hw, groups) -> tuple[int, int, int, int]:
    """Weight shape ``(C_out, C_in/groups, kh, kw)`` for a grad_weight call, validating
    ``groups`` against the input channels ``x_shape[1]`` and ``c_out``."""
    kh, kw = pair(kernel_hw, "kernel_hw")
    xs = _shape_tuple(x_shape, "input")
    if len(xs) != 4:
        raise ValueError(f"expected a 4-D input (N, C_in, H, W), got a {len(xs)}-D input "
                         f"of shape {xs}")
    groups = _check_groups(groups, xs[1], c_out, (c_out, "C_in/groups", kh, kw))
    return (int(c_out), xs[1] // groups, kh, kw)


def check_pool_float(x, name: str = "input") -> None:
    """Pooling runs on float32 or float64 arrays only."""
    if x.dtype.kind != "f":
        raise TypeError(f"pooling kernels need a floating {name} (float32 or float64), got {x.dtype}")


def check_divisor_override(divisor_override) -> None:
    """avg_pool2d's ``divisor_override``: None or a non-zero int."""
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral):
            raise TypeError(f"divisor_override must be an int, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError("divisor_override must be non-zero, got 0")


def check_max_pool_grad(grad_y, argmax, input_shape) -> tuple[int, int, int, int]:
    """Check a max-pooling backward call; return the input shape as ints."""
    check_pool_float(grad_y, "grad_output")
    n, c, h, w = (int(s) for s in input_shape)
    if grad_y.shape != argmax.shape or grad_y.shape[:2] != (n, c):
        raise ValueError(f"grad_output of shape {grad_y.shape} and argmax of shape "
                         f"{argmax.shape} do not match the input shape {(n, c, h, w)}")
    return (n, c, h, w)


def check_avg_pool_grad(grad_y, input_shape, kernel_size, stride, padding, ceil_mode):
    """Check an average-pooling backward call; return ``(input_shape, PoolArgs)``."""
    check_pool_float(grad_y, "grad_output")
    input_shape = tuple(int(s) for s in input_shape)
    args = normalize_pool_args(input_shape, kernel_size, stride, padding, 1, ceil_mode)
    if tuple(grad_y.shape) != args.out_shape:
        raise ValueError(f"grad_output of shape {grad_y.shape} does not match the pooling "
                         f"output shape {args.out_shape}")
    return input_shape, args
