"""Hypothesis strategies for convolution and pooling configurations (kernel and layer tests).

Every drawn configuration is valid and gives a non-empty output; the raw user-facing
``padding`` (int, pair, 'same', 'valid') is kept next to its normalised 4-tuple.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from tinyconv.kernels import shapes


@dataclass(frozen=True)
class ConvConfig:
    n: int
    c_in: int
    c_out: int
    groups: int
    h: int
    w: int
    kernel: tuple        # (kh, kw)
    stride: tuple        # (sh, sw)
    dilation: tuple      # (dh, dw)
    padding_arg: object  # what a user passes: int, pair, 'same', 'valid'
    padding: tuple       # normalised (top, bottom, left, right)
    out_shape: tuple     # (N, C_out, H_out, W_out)
    seed: int

    @property
    def x_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def w_shape(self):
        return (self.c_out, self.c_in // self.groups) + tuple(self.kernel)

    @property
    def kernel_args(self):
        """(stride, padding, dilation, groups) as the kernels take them."""
        return (self.stride, self.padding, self.dilation, self.groups)

    def arrays(self, dtype=np.float64):
        """x, w and a grad_output of this configuration (seeded, values in [-1, 1])."""
        rng = np.random.default_rng(self.seed)
        x = rng.uniform(-1, 1, self.x_shape).astype(dtype)
        w = rng.uniform(-1, 1, self.w_shape).astype(dtype)
        gy = rng.uniform(-1, 1, self.out_shape).astype(dtype)
        return x, w, gy


@st.composite
def conv_configs(draw, max_batch=3, max_group_channels=3, max_groups=3, max_kernel=4,
                 max_stride=3, max_dilation=3, max_size=10, allow_same=True, group_channels=None):
    """A valid conv2d configuration with a non-empty output. ``group_channels``: a strategy for the input and output
    channels per group (default: 1 .. max_group_channels)."""
    if group_channels is None:
        group_channels = st.integers(1, max_group_channels)
    groups = draw(st.integers(1, max_groups))
    c_in = groups * draw(group_channels)
    c_out = groups * draw(group_channels)
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    kinds = ["int", "pair", "valid"] + (["same"] if allow_same else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "same":
        stride = (1, 1)
        padding_arg = "same"
    elif kind == "valid":
        padding_arg = "valid"
    elif kind == "int":
        padding_arg = draw(st.integers(0, 2))
    else:
        padding_arg = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(1, max_size))
    w = draw(st.integers(1, max_size))
    n = draw(st.integers(1, max_batch))
    try:
        args = shapes.normalize_conv_args((n, c_in, h, w), (c_out, c_in // groups) + kernel,
                                          stride, padding_arg, dilation, groups)
    except ValueError:
        assume(False)
    seed = draw(st.integers(0, 2**32 - 1))
    return ConvConfig(n, c_in, c_out, groups, h, w, kernel, stride, dilation, padding_arg,
                      args.padding, args.out_shape, seed)


def blocked_conv_configs(max_size=12):
    """Stride-1 configurations that reach every tile of the register-blocked kernels
    (:mod:`tinyconv.kernels.numba_jit.fast.blocked`) in every variant: batches past 4, channels per group around
    each tile's width and past it by odd counts (6, 8 and their tails in the forward tiles; 8, 16 and 32, whole or
    with a tail, in grad_weight's position-major tiles, float64 and float32; fewer in its dot-product tiles), groups,
    dilation, 'same' (uneven) padding, planes that end inside a block."""
    channels = st.one_of(st.integers(1, 9), st.sampled_from([12, 16, 17]), st.sampled_from([32, 35]))
    return conv_configs(max_batch=6, max_groups=2, max_kernel=3, max_stride=1, max_dilation=2, max_size=max_size,
                        group_channels=channels)


@dataclass(frozen=True)
class PoolConfig:
    n: int
    c: int
    h: int
    w: int
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    ceil_mode: bool
    count_include_pad: bool
    out_shape: tuple
    seed: int

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    def arrays(self, dtype=np.float64, integer=False):
        rng = np.random.default_rng(self.seed)
        if integer:   # small integers: plenty of ties for the first-maximum rule
            x = rng.integers(-2, 3, self.x_shape).astype(dtype)
        else:
            x = rng.uniform(-1, 1, self.x_shape).astype(dtype)
        gy = rng.uniform(-1, 1, self.out_shape).astype(dtype)
        return x, gy


@st.composite
def pool_configs(draw, max_batch=2, max_channels=3, max_kernel=3, max_stride=3,
                 max_dilation=2, max_size=9, with_dilation=True):
    """A valid 2-D pooling configuration (PyTorch's rules) with a non-empty output."""
    if draw(st.integers(0, 3)) == 0:
        # a quarter of the examples: LeNet's 2x2 / stride 2 pooling, which the kernels special-case
        kernel, stride, padding, dilation = (2, 2), (2, 2), (0, 0), (1, 1)
    else:
        kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
        stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
        padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
        dilation = ((draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
                    if with_dilation else (1, 1))
    ceil_mode = draw(st.booleans())
    count_include_pad = draw(st.booleans())
    n = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, max_channels))
    h = draw(st.integers(1, max_size))
    w = draw(st.integers(1, max_size))
    try:
        args = shapes.normalize_pool_args((n, c, h, w), kernel, stride, padding, dilation,
                                          ceil_mode)
    except ValueError:
        assume(False)
    seed = draw(st.integers(0, 2**32 - 1))
    return PoolConfig(n, c, h, w, kernel, stride, padding, dilation, ceil_mode,
                      count_include_pad, args.out_shape, seed)


@dataclass(frozen=True)
class ConvTransposeConfig:
    n: int
    c_in: int
    c_out: int
    groups: int
    h: int
    w: int
    kernel: tuple
    stride: tuple
    padding: tuple          # (ph, pw)
    output_padding: tuple
    dilation: tuple
    out_shape: tuple
    seed: int

    @property
    def x_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def w_shape(self):
        """PyTorch's layout for transposed convolutions: (C_in, C_out / groups, kh, kw)."""
        return (self.c_in, self.c_out // self.groups) + tuple(self.kernel)


@st.composite
def conv_transpose_configs(draw, max_batch=2, max_group_channels=2, max_groups=2, max_kernel=3,
                           max_stride=3, max_dilation=2, max_size=5):
    """A valid conv_transpose2d configuration (output_padding < stride or dilation)."""
    groups = draw(st.integers(1, max_groups))
    c_in = groups * draw(st.integers(1, max_group_channels))
    c_out = groups * draw(st.integers(1, max_group_channels))
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in range(2))
    n = draw(st.integers(1, max_batch))
    h = draw(st.integers(1, max_size))
    w = draw(st.integers(1, max_size))
    try:
        args = shapes.normalize_conv_transpose_args((n, c_in, h, w), (c_in, c_out // groups) + kernel,
                                                    stride, padding, output_padding, groups, dilation)
    except ValueError:
        assume(False)
    seed = draw(st.integers(0, 2**32 - 1))
    return ConvTransposeConfig(n, c_in, c_out, groups, h, w, kernel, stride, padding, output_padding,
                               dilation, args.out_shape, seed)
