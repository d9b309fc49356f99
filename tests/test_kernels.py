"""Convolution backends (tinyconv.kernels: direct, im2col, numba, and every registered one, such as the einsum
backend of conftest.py): seed-notes examples, shape arithmetic and validation, cross-backend agreement, adjointness
of the backward kernels, and the registry / selection."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tinyconv.kernels as K
from tinyconv.kernels import choose, shapes, workers
from tinyconv.kernels.numba_jit import plain
from tinyconv.kernels.numba_jit.fast import blocked, blocked_batch_last, workspace
from tinyconv.kernels.numba_jit.fast import conv as numba_fast  # the numba backend's module (its layout choice)

from strategies_conv import blocked_conv_configs, conv_configs

# the backend objects, called through their checked doors (conv2d_forward, ...)
direct, im2col, numba = K.get_kernel("direct"), K.get_kernel("im2col"), K.get_kernel("numba")

KERNEL_NAMES = list(K.available())  # every registered backend
ROOT = Path(__file__).resolve().parents[1]


def corr2d(kernel, X, Kmat, **kw):
    """2-D cross-correlation of 2-D arrays through a kernel module (N = C = 1)."""
    X = np.asarray(X, dtype=np.float64)
    Kmat = np.asarray(Kmat, dtype=np.float64)
    stride = kw.get("stride", 1)
    args = shapes.normalize_conv_args((1, 1) + X.shape, (1, 1) + Kmat.shape, stride,
                                      kw.get("padding", 0), 1, 1)
    y = kernel.conv2d_forward(X[None, None], Kmat[None, None], args.stride, args.padding,
                              args.dilation, 1)
    return y[0, 0]


@pytest.fixture(params=KERNEL_NAMES)
def kernel(request):
    return K.get_kernel(request.param)


# ----------------------------------------------------------------------------- seed notes

def test_example_a(kernel):
    X = np.arange(9.0).reshape(3, 3)
    Kmat = np.array([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(corr2d(kernel, X, Kmat), [[19, 25], [37, 43]])


def _edge_image():
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    return X


def test_example_b_edge_detection(kernel):
    X = _edge_image()
    Y = corr2d(kernel, X, [[1.0, -1.0]])
    expected = np.zeros((6, 7))
    expected[:, 1] = 1
    expected[:, 5] = -1
    np.testing.assert_array_equal(Y, expected)
    # the kernel only sees vertical edges
    np.testing.assert_array_equal(corr2d(kernel, X.T, [[1.0, -1.0]]), np.zeros((8, 5)))


def test_example_c_diagonal(kernel):
    X = np.eye(8)
    Y = corr2d(kernel, X, [[1.0, -1.0]])
    expected = np.eye(8, 7) - np.eye(8, 7, k=-1)   # 1 on the diagonal, -1 just below
    np.testing.assert_array_equal(Y, expected)
    Yt = corr2d(kernel, X, [[1.0], [-1.0]])
    expected_t = np.eye(7, 8) - np.eye(7, 8, k=1)  # 1 on the diagonal, -1 just right
    np.testing.assert_array_equal(Yt, expected_t)


EXAMPLE_D_X = [[1, 2, 0, 2], [1, 0, 3, -1], [2, 2, 2, 0], [3, 1, -2, 0]]
EXAMPLE_D_K = [[0, 1, -1], [-1, 0, 1], [1, 0, 1]]


def test_example_d_padding_and_stride(kernel):
    np.testing.assert_array_equal(corr2d(kernel, EXAMPLE_D_X, EXAMPLE_D_K), [[8, -1], [-2, 3]])
    same = corr2d(kernel, EXAMPLE_D_X, EXAMPLE_D_K, padding=1)
    assert same.shape == (4, 4)      # (4 - 3 + 2) / 1 + 1 = 4
    np.testing.assert_array_equal(same[1:3, 1:3], [[8, -1], [-2, 3]])
    np.testing.assert_array_equal(same, corr2d(kernel, EXAMPLE_D_X, EXAMPLE_D_K,
                                               padding="same"))
    # corner: only the kernel's lower-right 2x2 sees the input: 0*1 + 1*2 + 0*1 + 1*0 = 2
    assert same[0, 0] == 0 * 1 + 1 * 2 + 0 * 1 + 1 * 0 == 2
    strided = corr2d(kernel, EXAMPLE_D_X, EXAMPLE_D_K, padding=1, stride=2)
    np.testing.assert_array_equal(strided, same[::2, ::2])


def _example_e():
    X = np.stack([np.arange(9.0).reshape(3, 3), np.arange(1.0, 10.0).reshape(3, 3)])
    Kmat = np.stack([np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 2.0], [3.0, 4.0]])])
    return X, Kmat


def test_example_e_multiple_input_channels(kernel):
    X, Kmat = _example_e()
    y = kernel.conv2d_forward(X[None], Kmat[None], (1, 1), (0, 0, 0, 0), (1, 1), 1)
    np.testing.assert_array_equal(y[0, 0], [[56, 72], [104, 120]])


def test_example_e_multiple_output_channels(kernel):
    X, Kmat = _example_e()
    W = np.stack([Kmat, Kmat + 1, Kmat + 2])
    assert W.shape == (3, 2, 2, 2)
    y = kernel.conv2d_forward(X[None], W, (1, 1), (0, 0, 0, 0), (1, 1), 1)[0]
    assert y.shape == (3, 2, 2)
    np.testing.assert_array_equal(y[0], [[56, 72], [104, 120]])
    # each output channel is the multi-input correlation with its own kernel
    for o in range(3):
        ref = sum(corr2d(direct, X[c], W[o, c]) for c in range(2))
        np.testing.assert_array_equal(y[o], ref)


def test_one_by_one_conv_is_a_matmul_over_channels(kernel):
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (2, 3, 4, 5)).astype(np.float64)
    w = rng.integers(-3, 4, (6, 3, 1, 1)).astype(np.float64)
    y = kernel.conv2d_forward(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    ref = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x)
    np.testing.assert_array_equal(y, ref)


# ----------------------------------------------------------------------------- shapes

@given(n=st.integers(1, 30), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 6),
       d=st.integers(1, 3))
def test_conv_output_size_matches_counting_windows(n, k, s, p, d):
    span = d * (k - 1) + 1
    starts = [i for i in range(0, n + p - span + 1, s)] if n + p >= span else []
    if not starts:
        with pytest.raises(ValueError, match="larger than the padded input"):
            shapes.conv_output_size(n, k, s, p, d)
    else:
        assert shapes.conv_output_size(n, k, s, p, d) == len(starts)
        assert shapes.conv_output_size(n, k, s, p, d) == (n + p - d * (k - 1) - 1) // s + 1


def test_course_formula_examples():
    # floor((n - k + 2p) / s) + 1
    assert shapes.conv_output_size(4, 3, 1, 2, 1) == 4
    assert shapes.conv_output_size(8, 3, 2, 2, 1) == 4
    assert shapes.conv_output_size(8, 5, 2, 4, 1) == 4
    assert shapes.conv_output_size(8, 3, 3, 0, 1) == 2
    assert shapes.conv_output_size(28, 5, 1, 4, 1) == 28     # LeNet conv1
    assert shapes.conv_output_size(14, 5, 1, 0, 1) == 10     # LeNet conv2
    assert shapes.conv_output_size(10, 3, 1, 0, 2) == 6      # dilation: effective kernel 5


def test_normalize_padding_forms():
    k, s, d = (3, 5), (1, 1), (1, 1)
    assert shapes.normalize_padding(1, k, s, d) == (1, 1, 1, 1)
    assert shapes.normalize_padding((1, 2), k, s, d) == (1, 1, 2, 2)
    assert shapes.normalize_padding((0, 1, 2, 3), k, s, d) == (0, 1, 2, 3)
    assert shapes.normalize_padding("valid", k, s, d) == (0, 0, 0, 0)
    assert shapes.normalize_padding("same", k, s, d) == (1, 1, 2, 2)
    assert shapes.normalize_padding("SAME", k, s, (2, 1)) == (2, 2, 2, 2)
    # even total padding -> PyTorch puts the extra pixel at the bottom / right
    assert shapes.normalize_padding("same", (2, 4), s, d) == (0, 1, 1, 2)


@given(cfg=conv_configs(allow_same=True))
def test_same_padding_keeps_size(cfg):
    if cfg.padding_arg == "same":
        assert cfg.out_shape[2:] == (cfg.h, cfg.w)


def test_normalize_conv_args_result():
    a = shapes.normalize_conv_args((128, 6, 14, 14), (16, 6, 5, 5))
    assert a.stride == (1, 1) and a.dilation == (1, 1) and a.groups == 1
    assert a.padding == (0, 0, 0, 0) and a.kernel_hw == (5, 5)
    assert a.out_shape == (128, 16, 10, 10)
    a = shapes.normalize_conv_args((2, 4, 9, 7), (6, 2, 3, 2), stride=(2, 1), padding=(1, 0),
                                   dilation=2, groups=2)
    assert a.out_shape == (2, 6, (9 + 2 - 4 - 1) // 2 + 1, (7 - 2 - 1) // 1 + 1)


ERROR_CASES = [
    (dict(input_shape=(3, 28, 28)), ValueError, r"4-D input.*\(3, 28, 28\)"),
    (dict(weight_shape=(16, 6, 5)), ValueError, r"4-D weight.*\(16, 6, 5\)"),
    (dict(input_shape=(128, 3, 14, 14)), ValueError,
     r"expected input with 6 channels \(weight \(16, 6, 5, 5\), groups=1\), got input of "
     r"shape \(128, 3, 14, 14\) with 3 channels"),
    (dict(input_shape=(1, 12, 14, 14), weight_shape=(16, 4, 5, 5), groups=3), ValueError,
     r"groups=3 must divide the number of output channels 16"),
    (dict(input_shape=(1, 7, 14, 14), weight_shape=(16, 1, 5, 5), groups=4), ValueError,
     r"groups=4 must divide the number of input channels 7"),
    (dict(groups=0), ValueError, r"groups must be positive, got groups=0"),
    (dict(groups=1.5), TypeError, r"groups must be an int"),
    (dict(input_shape=(1, 6, 4, 4)), ValueError,
     r"kernel size \(dilated\) \(5, 5\) is larger than the padded input \(4, 4\)"),
    (dict(input_shape=(1, 6, 8, 8), dilation=2), ValueError,
     r"kernel size \(dilated\) \(9, 9\) is larger than the padded input \(8, 8\)"),
    (dict(stride=0), ValueError, r"stride must be positive, got stride=\(0, 0\)"),
    (dict(stride=(1, -2)), ValueError, r"stride must be positive, got stride=\(1, -2\)"),
    (dict(dilation=(0, 1)), ValueError, r"dilation must be positive, got dilation=\(0, 1\)"),
    (dict(padding=-1), ValueError, r"padding must be non-negative, got padding=-1"),
    (dict(padding=(0, 1, -1, 0)), ValueError, r"padding must be non-negative"),
    (dict(padding="same", stride=2), ValueError,
     r"padding='same' is not supported for strided convolutions \(stride=\(2, 2\)\)"),
    (dict(padding="full"), ValueError, r"unknown padding 'full'"),
    (dict(padding=(1, 2, 3)), ValueError, r"padding must be .*\(1, 2, 3\) \(3 values\)"),
    (dict(padding=1.0), TypeError, r"padding must be an int"),
    (dict(stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair.*\(1, 2, 3\)"),
    (dict(stride="2"), TypeError, r"stride must be an int or a pair of ints, got '2'"),
    (dict(dilation=(1.0, 1)), TypeError, r"dilation must be an int or a pair"),
]


@pytest.mark.parametrize("override,exc,message", ERROR_CASES)
def test_normalize_conv_args_errors(override, exc, message):
    kw = dict(input_shape=(128, 6, 14, 14), weight_shape=(16, 6, 5, 5), stride=1, padding=0,
              dilation=1, groups=1)
    kw.update(override)
    with pytest.raises(exc, match=message):
        shapes.normalize_conv_args(**kw)


@pytest.mark.parametrize("override,exc,message", ERROR_CASES)
def test_every_kernel_validates_the_same_way(kernel, override, exc, message):
    kw = dict(input_shape=(2, 6, 14, 14), weight_shape=(16, 6, 5, 5), stride=1, padding=0,
              dilation=1, groups=1)
    if "input_shape" in override and override["input_shape"][0] == 128:
        override = dict(override, input_shape=(2,) + override["input_shape"][1:])
        message = message.replace("128", "2")
    kw.update(override)
    x = np.zeros(kw["input_shape"])
    w = np.zeros(kw["weight_shape"])
    with pytest.raises(exc, match=message):
        kernel.conv2d_forward(x, w, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])


def test_dtype_rules(kernel):
    x32 = np.ones((1, 2, 5, 5), np.float32)
    w32 = np.ones((3, 2, 3, 3), np.float32)
    y = kernel.conv2d_forward(x32, w32, 1, 0, 1, 1)
    assert y.dtype == np.float32
    assert kernel.conv2d_grad_input(y, w32, (5, 5), 1, 0, 1, 1).dtype == np.float32
    assert kernel.conv2d_grad_weight(x32, y, (3, 3), 1, 0, 1, 1).dtype == np.float32
    y64 = kernel.conv2d_forward(x32.astype(np.float64), w32.astype(np.float64), 1, 0, 1, 1)
    assert y64.dtype == np.float64
    with pytest.raises(TypeError, match="one floating dtype.*x: float32, w: float64"):
        kernel.conv2d_forward(x32, w32.astype(np.float64), 1, 0, 1, 1)
    with pytest.raises(TypeError, match="int64"):
        kernel.conv2d_forward(np.ones((1, 2, 5, 5), np.int64), np.ones((3, 2, 3, 3), np.int64),
                              1, 0, 1, 1)


def test_grad_output_shape_is_checked(kernel):
    w = np.ones((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"grad_output of shape \(1, 3, 4, 4\) does not match"):
        kernel.conv2d_grad_input(np.ones((1, 3, 4, 4)), w, (5, 5), 1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"grad_output of shape \(2, 3, 3, 3\) does not match"):
        kernel.conv2d_grad_weight(np.ones((1, 2, 5, 5)), np.ones((2, 3, 3, 3)), (3, 3),
                                  1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"grad_output of shape \(1, 3, 4, 3\) does not match"):
        kernel.conv2d_grad_weight(np.ones((1, 2, 5, 5)), np.ones((1, 3, 4, 3)), (3, 3),
                                  1, 0, 1, 1)


def test_empty_batch(kernel):
    x = np.zeros((0, 2, 5, 5))
    w = np.ones((3, 2, 3, 3))
    y = kernel.conv2d_forward(x, w, 1, 1, 1, 1)
    assert y.shape == (0, 3, 5, 5)
    assert kernel.conv2d_grad_input(y, w, (5, 5), 1, 1, 1, 1).shape == (0, 2, 5, 5)
    gw = kernel.conv2d_grad_weight(x, y, (3, 3), 1, 1, 1, 1)
    assert gw.shape == (3, 2, 3, 3) and not gw.any()


def test_inputs_are_not_modified(kernel):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6, 7))
    w = rng.standard_normal((4, 2, 3, 2))
    args = ((2, 1), (1, 0, 2, 1), (1, 2), 2)
    x0, w0 = x.copy(), w.copy()
    y = kernel.conv2d_forward(x, w, *args)
    gy = rng.standard_normal(y.shape)
    gy0 = gy.copy()
    kernel.conv2d_grad_input(gy, w, (6, 7), *args)
    kernel.conv2d_grad_weight(x, gy, (3, 2), *args)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(gy, gy0)


def test_non_contiguous_inputs(kernel):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 8)).transpose(0, 1, 3, 2)[:, :, ::1, 1:]
    w = rng.standard_normal((3, 4, 2, 2)).transpose(1, 0, 2, 3)
    y = kernel.conv2d_forward(x, w, 1, 1, 1, 1)
    np.testing.assert_allclose(y, direct.conv2d_forward(np.ascontiguousarray(x),
                                                        np.ascontiguousarray(w), 1, 1, 1, 1))


# ----------------------------------------------------------------------------- agreement

def _all_ops(kernel, cfg, x, w, gy, input_hw=None):
    args = cfg.kernel_args
    y = kernel.conv2d_forward(x, w, *args)
    gx = kernel.conv2d_grad_input(gy, w, input_hw or (cfg.h, cfg.w), *args)
    gw = kernel.conv2d_grad_weight(x, gy, cfg.kernel, *args)
    return y, gx, gw


def _assert_close(a, b, rtol, what):
    scale = max(np.abs(b).max(initial=0.0), 1.0)
    err = np.abs(a - b).max(initial=0.0)
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} (scale {scale:.3g})"


@settings(deadline=None)
@given(cfg=conv_configs())
def test_kernels_agree_float64(cfg):
    x, w, gy = cfg.arrays(np.float64)
    ref = _all_ops(direct, cfg, x, w, gy)
    for mod in (K.get_kernel(name) for name in KERNEL_NAMES if name != "direct"):
        got = _all_ops(mod, cfg, x, w, gy)
        for what, a, b in zip(("forward", "grad_input", "grad_weight"), got, ref):
            assert a.shape == b.shape and a.dtype == np.float64
            _assert_close(a, b, 1e-10, f"{mod.name} {what}")


@settings(deadline=None)
@given(cfg=conv_configs())
def test_kernels_agree_float32(cfg):
    x, w, gy = cfg.arrays(np.float32)
    ref = _all_ops(direct, cfg, x.astype(np.float64), w.astype(np.float64),
                   gy.astype(np.float64))
    for mod in map(K.get_kernel, KERNEL_NAMES):
        got = _all_ops(mod, cfg, x, w, gy)
        for what, a, b in zip(("forward", "grad_input", "grad_weight"), got, ref):
            assert a.dtype == np.float32
            _assert_close(a, b, 1e-4, f"{mod.name} {what}")


@settings(deadline=None)
@given(cfg=conv_configs(), name=st.sampled_from(KERNEL_NAMES))
def test_backward_kernels_are_the_adjoint_of_forward(cfg, name):
    """<conv(x, w), g> = <x, grad_input(g, w)> = <w, grad_weight(x, g)>."""
    kernel = K.get_kernel(name)
    x, w, gy = cfg.arrays(np.float64)
    y, gx, gw = _all_ops(kernel, cfg, x, w, gy)
    lhs = np.vdot(y, gy)
    assert np.isclose(lhs, np.vdot(x, gx), rtol=1e-10, atol=1e-10)
    assert np.isclose(lhs, np.vdot(w, gw), rtol=1e-10, atol=1e-10)


@settings(deadline=None)
@given(cfg=conv_configs(allow_same=False), extra_h=st.integers(0, 2), extra_w=st.integers(0, 2),
       name=st.sampled_from(KERNEL_NAMES))
def test_grad_input_for_a_larger_input(cfg, extra_h, extra_w, name):
    """conv_transpose2d's output_padding: grad_input on an input larger than the minimal
    one is the adjoint of forward on that input; uncovered rows/columns get zero."""
    kernel = K.get_kernel(name)
    (sh, sw), (dh, dw) = cfg.stride, cfg.dilation
    pt, pb, pl, pr = cfg.padding
    ho, wo = cfg.out_shape[2:]
    # smallest input that gives (ho, wo), plus some extra rows/columns
    h = (ho - 1) * sh + dh * (cfg.kernel[0] - 1) + 1 - pt - pb + extra_h
    w_ = (wo - 1) * sw + dw * (cfg.kernel[1] - 1) + 1 - pl - pr + extra_w
    if h < 1 or w_ < 1:
        return
    rng = np.random.default_rng(cfg.seed)
    x = rng.uniform(-1, 1, (cfg.n, cfg.c_in, h, w_))
    wt = rng.uniform(-1, 1, cfg.w_shape)
    y_full = kernel.conv2d_forward(x, wt, *cfg.kernel_args)
    # grad_output with the original (possibly smaller) size, zero-extended for the check
    gy = rng.uniform(-1, 1, (cfg.n, cfg.c_out, ho, wo))
    gx = kernel.conv2d_grad_input(gy, wt, (h, w_), *cfg.kernel_args)
    gw = kernel.conv2d_grad_weight(x, gy, cfg.kernel, *cfg.kernel_args)
    assert gx.shape == x.shape
    g_full = np.zeros_like(y_full)
    g_full[:, :, :ho, :wo] = gy
    lhs = np.vdot(y_full, g_full)
    assert np.isclose(lhs, np.vdot(x, gx), rtol=1e-10, atol=1e-10)
    assert np.isclose(lhs, np.vdot(wt, gw), rtol=1e-10, atol=1e-10)
    ref = direct.conv2d_grad_input(gy, wt, (h, w_), *cfg.kernel_args)
    _assert_close(gx, ref, 1e-10, "grad_input on a larger input")


@settings(deadline=None, max_examples=40)
@given(cfg=conv_configs(max_batch=6, max_group_channels=5), column_bytes=st.sampled_from([1, 300, 1 << 23]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_im2col_chunks_of_images_agree_with_direct(cfg, column_bytes, dtype):
    """im2col's channel-major columns, one chunk of images at a time: a chunk of one image (1 byte), a few, the
    whole batch; batches up to 6 and odd channel counts (grad_weight's minimum of positions per chunk off, so that
    its chunks are as small as the others')."""
    x, w, gy = cfg.arrays(np.float64)
    ref = _all_ops(direct, cfg, x, w, gy)
    before = K.im2col.COLUMN_BYTES, K.im2col.GRAD_WEIGHT_MIN_POSITIONS
    K.im2col.COLUMN_BYTES, K.im2col.GRAD_WEIGHT_MIN_POSITIONS = column_bytes, 0
    try:
        got = _all_ops(im2col, cfg, x.astype(dtype), w.astype(dtype), gy.astype(dtype))
    finally:
        K.im2col.COLUMN_BYTES, K.im2col.GRAD_WEIGHT_MIN_POSITIONS = before
    for what, a, b in zip(("forward", "grad_input", "grad_weight"), got, ref):
        assert a.shape == b.shape and a.dtype == dtype
        _assert_close(a, b, 1e-10 if dtype == np.float64 else 1e-4, f"im2col {what}")


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_im2col_grad_weight_chunks_sum_over_enough_positions(dtype, tol, monkeypatch):
    """grad_weight's chunks hold at least GRAD_WEIGHT_MIN_POSITIONS output positions even where COLUMN_BYTES
    holds one image (a 6x6 plane: 36 positions an image), and their parts still add up to direct's gradient;
    forward keeps COLUMN_BYTES's chunks."""
    monkeypatch.setattr(K.im2col, "COLUMN_BYTES", 1)
    monkeypatch.setattr(K.im2col, "GRAD_WEIGHT_MIN_POSITIONS", 100)
    seen = []
    real = workers.map_chunks
    monkeypatch.setattr(workers, "map_chunks", lambda fn, chunks: seen.append(list(chunks)) or real(fn, chunks))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 5, 6, 6)).astype(dtype)
    w = rng.standard_normal((7, 5, 3, 3)).astype(dtype)
    args = shapes.normalize_conv_args(x.shape, w.shape, 1, 1, 1, 1)
    gy = rng.standard_normal(args.out_shape).astype(dtype)
    _assert_close(im2col.grad_weight(x, gy, args), direct.grad_weight(x, gy, args), tol, "grad_weight")
    assert seen[-1] == [(0, 3), (3, 3), (6, 3)]   # 3 images of 36 positions >= 100
    im2col.forward(x, w, args)
    assert seen[-1] == [(n, 1) for n in range(9)]
    x10 = rng.standard_normal((10, 5, 6, 6)).astype(dtype)
    gy10 = rng.standard_normal((10,) + args.out_shape[1:]).astype(dtype)
    args10 = shapes.normalize_conv_args(x10.shape, w.shape, 1, 1, 1, 1)
    _assert_close(im2col.grad_weight(x10, gy10, args10), direct.grad_weight(x10, gy10, args10), tol, "grad_weight")
    assert seen[-1] == [(0, 4), (4, 3), (7, 3)]   # no short last chunk


@settings(deadline=None, max_examples=200)
@given(n=st.integers(1, 300), k=st.integers(1, 5000), npos=st.integers(1, 2000),
       min_positions=st.sampled_from([0, 1, 100, 512, 5000]), column_bytes=st.sampled_from([1, 4096, 2 * 2**20]))
def test_im2col_chunks_partition_the_batch(n, k, npos, min_positions, column_bytes):
    """_chunks covers images 0..n-1 in order; each chunk holds at most COLUMN_BYTES of columns (or one image);
    with a minimum of positions, chunk sizes differ by at most one image and every chunk has the minimum (a single
    chunk when the batch has fewer), growing past COLUMN_BYTES by less than twice the minimum."""
    before = K.im2col.COLUMN_BYTES
    K.im2col.COLUMN_BYTES = column_bytes
    try:
        chunks = K.im2col._chunks(n, k, npos, 4, min_positions)
    finally:
        K.im2col.COLUMN_BYTES = before
    assert [c[0] for c in chunks] == [sum(b for _, b in chunks[:i]) for i in range(len(chunks))]
    sizes = [b for _, b in chunks]
    assert sum(sizes) == n and min(sizes) >= 1
    per = max(1, min(n, column_bytes // (k * npos * 4)))
    if min_positions == 0:
        assert max(sizes) <= per
        return
    assert max(sizes) - min(sizes) <= 1
    assert len(chunks) == 1 or min(sizes) * npos >= min_positions
    assert max(sizes) <= per or max(sizes) * npos < 2 * min_positions + npos


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", [
    ((5, 64, 5, 5), (33, 64, 3, 3), 1, 1, 1),     # K = 576: forward and grad_input by im2col
    ((4, 32, 7, 7), (32, 32, 3, 3), 1, 1, 1),     # forward numba, grad_input im2col
    ((4, 17, 9, 9), (64, 17, 3, 3), 2, 1, 1),     # stride 2, odd channels
    ((6, 32, 7, 7), (64, 32, 1, 1), 2, 0, 1),     # 1x1 projection
    ((4, 64, 6, 6), (64, 1, 3, 3), 1, 1, 64),     # depthwise
    ((3, 6, 9, 9), (96, 2, 3, 3), 1, 1, 3),       # 32 outputs per group, 3 groups
])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_auto_on_wide_layers_agrees_with_direct(x_shape, w_shape, stride, padding, groups, dtype, tol):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, x_shape)
    w = rng.uniform(-1, 1, w_shape)
    b = rng.uniform(-1, 1, w_shape[0])
    args = (stride, padding, 1, groups)
    y = direct.conv2d_forward(x, w, *args, bias=b)
    gy = rng.uniform(-1, 1, y.shape)
    auto = K.get_kernel("auto")
    xd, wd, bd, gyd = (a.astype(dtype) for a in (x, w, b, gy))
    _assert_close(auto.conv2d_forward(xd, wd, *args, bias=bd), y, tol, "forward")
    _assert_close(auto.conv2d_grad_input(gyd, wd, x_shape[2:], *args),
                  direct.conv2d_grad_input(gy, w, x_shape[2:], *args), tol, "grad_input")
    _assert_close(auto.conv2d_grad_weight(xd, gyd, w_shape[2:], *args),
                  direct.conv2d_grad_weight(x, gy, w_shape[2:], *args), tol, "grad_weight")


@st.composite
def depthwise_configs(draw):
    """groups == C_in == C_out: the numba backend's depthwise loops (any stride, dilation, padding)."""
    c = draw(st.integers(2, 7))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    # stride 1 half the time: its loops (register rows, grad_input as a forward) differ from the strided ones
    stride = draw(st.one_of(st.just((1, 1)), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    # widths past 16 too: the stride-1 forward writes rows from registers once a row holds a vector
    n, h, w = draw(st.integers(1, 5)), draw(st.integers(1, 10)), draw(st.one_of(st.integers(1, 10), st.integers(15, 40)))
    try:
        args = K.shapes.normalize_conv_args((n, c, h, w), (c, 1) + kernel, stride, padding, dilation, c)
    except ValueError:
        assume(False)
    return n, c, h, w, kernel, args, draw(st.integers(0, 2**32 - 1))


@settings(deadline=None, max_examples=40)
@given(case=depthwise_configs(), extra=st.integers(0, 2), dtype=st.sampled_from([np.float64, np.float32]))
def test_depthwise_kernels_agree_with_direct(case, extra, dtype):
    n, c, h, w, kernel, args, seed = case
    rng = np.random.default_rng(seed)
    x, wt, b = rng.uniform(-1, 1, (n, c, h, w)), rng.uniform(-1, 1, (c, 1) + kernel), rng.uniform(-1, 1, c)
    gy = rng.uniform(-1, 1, args.out_shape)
    kargs = (args.stride, args.padding, args.dilation, c)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    xd, wd, bd, gyd = (a.astype(dtype) for a in (x, wt, b, gy))
    big = (h + extra, w + extra)  # grad_input on a larger input (output_padding)
    for name in ("numba", "auto"):
        kern = K.get_kernel(name)
        if K.jit_enabled():
            for op in ("forward", "grad_input", "grad_weight"):
                assert kern.choose(op, (n, c, h, w), (c, 1) + kernel, args).name == "numba"
        y = kern.conv2d_forward(xd, wd, *kargs, bias=bd)
        assert y.dtype == dtype
        _assert_close(y, direct.conv2d_forward(x, wt, *kargs, bias=b), tol, f"{name} forward")
        gx = kern.conv2d_grad_input(gyd, wd, big, *kargs)
        _assert_close(gx, direct.conv2d_grad_input(gy, wt, big, *kargs), tol, f"{name} grad_input")
        gw = kern.conv2d_grad_weight(xd, gyd, kernel, *kargs)
        _assert_close(gw, direct.conv2d_grad_weight(x, gy, kernel, *kargs), tol, f"{name} grad_weight")


def test_lenet_shapes_agree_float32():
    rng = np.random.default_rng(0)
    for xs, ws, pad in (((4, 1, 28, 28), (6, 1, 5, 5), 2), ((4, 6, 14, 14), (16, 6, 5, 5), 0)):
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        args = ((1, 1), (pad,) * 4, (1, 1), 1)
        y64 = direct.conv2d_forward(x.astype(np.float64), w.astype(np.float64), *args)
        gy = rng.standard_normal(y64.shape, dtype=np.float32)
        gx64 = direct.conv2d_grad_input(gy.astype(np.float64), w.astype(np.float64),
                                        xs[2:], *args)
        gw64 = direct.conv2d_grad_weight(x.astype(np.float64), gy.astype(np.float64),
                                         ws[2:], *args)
        for mod in map(K.get_kernel, KERNEL_NAMES):
            _assert_close(mod.conv2d_forward(x, w, *args), y64, 1e-5, "forward")
            _assert_close(mod.conv2d_grad_input(gy, w, xs[2:], *args), gx64, 1e-5, "grad_input")
            _assert_close(mod.conv2d_grad_weight(x, gy, ws[2:], *args), gw64, 1e-5,
                          "grad_weight")


# ----------------------------------------------------------------------------- registry

@pytest.fixture
def restore_default():
    before = K.get_default_kernel()
    yield
    K.set_default_kernel(before)


def test_registry_names():
    # the three built-in backends, then the einsum backend that conftest.py registered
    assert set(K.KERNELS) == {"direct", "im2col", "numba", "numba-plain", "einsum"}
    assert K.available() == ("direct", "im2col", "numba", "numba-plain", "einsum")
    assert K.get_kernel("direct") is direct
    assert K.get_kernel("IM2COL") is im2col
    assert K.get_kernel("numba") is numba_fast.backend
    assert K.get_kernel("numba-plain") is plain.backend


def test_unknown_kernel_message():
    with pytest.raises(ValueError, match=r"unknown conv kernel 'foo'; valid kernels: "
                                         r"'direct', 'im2col', 'numba'"):
        K.get_kernel("foo")
    with pytest.raises(ValueError, match="unknown conv kernel 'foo'"):
        K.set_default_kernel("foo")
    with pytest.raises(ValueError, match="unknown conv kernel 'foo'"):
        with K.use_kernel("foo"):
            pass
    with pytest.raises(TypeError, match="must be a string"):
        K.get_kernel(3)


def test_default_selection_and_context(restore_default):
    K.set_default_kernel("im2col")
    assert K.get_default_kernel() == "im2col"
    with K.use_kernel("direct"):
        assert K.get_default_kernel() == "direct"
        with K.use_kernel("numba"):
            assert K.get_default_kernel() == "numba"
            assert K.choose_kernel((1, 1, 5, 5), (1, 1, 3, 3)) == "numba"
        assert K.get_default_kernel() == "direct"
    assert K.get_default_kernel() == "im2col"
    # an explicit kernel wins over everything
    with K.use_kernel("direct"):
        assert K.choose_kernel((1, 1, 5, 5), (1, 1, 3, 3), kernel="im2col") == "im2col"
    # the block is restored after an exception
    with pytest.raises(RuntimeError):
        with K.use_kernel("direct"):
            raise RuntimeError("boom")
    assert K.get_default_kernel() == "im2col"


def test_use_kernel_is_thread_local(restore_default):
    K.set_default_kernel("im2col")
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        with K.use_kernel("direct"):
            seen["worker"] = K.get_default_kernel()
            entered.set()
            release.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    entered.wait(5)
    seen["main"] = K.get_default_kernel()
    release.set()
    t.join()
    assert seen == {"worker": "direct", "main": "im2col"}


def test_auto_dispatcher_matches_direct():
    auto = K.get_kernel("auto")
    rng = np.random.default_rng(5)
    for ws, stride in (((4, 3, 3, 3), 1), ((4, 3, 1, 1), 1), ((4, 3, 3, 3), 2)):
        x = rng.standard_normal((2, 3, 7, 7))
        w = rng.standard_normal(ws)
        args = (stride, 1, 1, 1)
        y = auto.conv2d_forward(x, w, *args)
        np.testing.assert_allclose(y, direct.conv2d_forward(x, w, *args), atol=1e-12)
        gy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(auto.conv2d_grad_input(gy, w, (7, 7), *args),
                                   direct.conv2d_grad_input(gy, w, (7, 7), *args), atol=1e-12)
        np.testing.assert_allclose(auto.conv2d_grad_weight(x, gy, ws[2:], *args),
                                   direct.conv2d_grad_weight(x, gy, ws[2:], *args), atol=1e-12)


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("TINYCONV_KERNEL", "TINYCONV_POOL_KERNEL")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=str(ROOT), timeout=300)


def test_env_var_selects_the_default_kernel():
    r = _run("import tinyconv.kernels as K; print(K.get_default_kernel(), "
             "K.choose_kernel((1,1,5,5),(1,1,3,3)))", TINYCONV_KERNEL="direct")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["direct", "direct"]


def test_a_bad_env_value_warns_and_falls_back_to_auto():
    r = _run("import tinyconv.kernels as K; print(K.get_default_kernel(), K.get_default_pool_kernel())",
             TINYCONV_KERNEL="fast", TINYCONV_POOL_KERNEL="nump")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["auto", "auto"]
    assert "RuntimeWarning: environment variable TINYCONV_KERNEL='fast' is not a valid conv kernel" in r.stderr
    assert "'direct', 'im2col', 'numba'" in r.stderr and "using 'auto'" in r.stderr
    assert "TINYCONV_POOL_KERNEL='nump' is not a valid pool kernel; valid pool kernels: 'numpy', 'numba'" in r.stderr


def test_numba_kernels_run_without_the_jit():
    """NUMBA_DISABLE_JIT=1: the numba module still imports and computes the same results
    (as plain Python), and "auto" falls back to im2col."""
    code = """
import numpy as np
import tinyconv.kernels as K
from tinyconv.kernels import shapes
from tinyconv.kernels.numba_jit.fast import blocked
direct, numba_jit = K.get_kernel("direct"), K.get_kernel("numba")
pooling, numba_pooling = K.get_pool_kernel("numpy"), K.get_pool_kernel("numba")
assert not K.jit_enabled()
assert K.choose_kernel((2, 4, 7, 6), (6, 2, 3, 2), groups=2) == "im2col"
assert K.choose_pool_kernel() == "numpy"
rng = np.random.default_rng(0)
close = dict(rtol=1e-4, atol=1e-5)


def agrees(kern, x, w, args, input_hw):
    # kern's three ops equal direct's on x, w (grad_input for an input of input_hw)
    y = kern.conv2d_forward(x, w, *args)
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y, direct.conv2d_forward(x, w, *args), **close)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    np.testing.assert_allclose(kern.conv2d_grad_input(gy, w, input_hw, *args),
                               direct.conv2d_grad_input(gy, w, input_hw, *args), **close)
    np.testing.assert_allclose(kern.conv2d_grad_weight(x, gy, w.shape[2:], *args),
                               direct.conv2d_grad_weight(x, gy, w.shape[2:], *args), **close)


for dt in (np.float64, np.float32):
    x = rng.standard_normal((2, 4, 7, 6)).astype(dt)
    w = rng.standard_normal((6, 2, 3, 2)).astype(dt)
    for args in [((2, 1), (1, 0, 2, 1), (1, 2), 2), ((1, 1), (1, 1, 0, 1), (1, 1), 2)]:
        agrees(numba_jit, x, w, args, (7, 6))
        agrees(K.get_kernel("numba-plain"), x, w, args, (7, 6))
    xd = rng.standard_normal((2, 3, 6, 5)).astype(dt)  # depthwise (its vector loads run as NumPy slices here)
    wd = rng.standard_normal((3, 1, 3, 2)).astype(dt)
    for args in [(1, (1, 1, 0, 1), (2, 1), 3), (2, 1, 1, 3)]:
        agrees(numba_jit, xd, wd, args, (6, 5))
        agrees(K.get_kernel("numba-plain"), xd, wd, args, (6, 5))
    for tiles in blocked.TILES:  # each variant of the register tiles (its vectors NumPy arrays here)
        for c_out in (10, 66):   # forward tiles with a tail; grad_weight's dot-product and position-major tiles
            wb = rng.standard_normal((c_out, 2, 3, 2)).astype(dt)
            a = shapes.normalize_conv_args((2, 4, 7, 6), wb.shape, 1, (1, 1, 0, 1), 1, 2)
            gy = rng.standard_normal(a.out_shape).astype(dt)
            y = blocked.forward(x, wb, np.zeros(c_out, dt), a, np.empty(a.out_shape, dt), tiles)
            np.testing.assert_allclose(y, direct.forward(x, wb, a), **close)
            pooled, where = blocked.forward_max_pool(x, wb, np.zeros(c_out, dt), a, tiles)  # (simd.max_2x2's NumPy)
            want, want_where = pooling.max_pool2d_forward(y, 2, 2)
            np.testing.assert_array_equal(pooled, want)
            np.testing.assert_array_equal(where, want_where)
            np.testing.assert_allclose(blocked.grad_input(gy, wb, (7, 6), a, tiles),
                                       direct.grad_input(gy, wb, (7, 6), a), **close)
            np.testing.assert_allclose(blocked.grad_weight(x, gy, a, wb.shape, tiles),
                                       direct.grad_weight(x, gy, a), **close)
    K.im2col.GRAD_WEIGHT_MIN_POSITIONS = 0
    for column_bytes in (1, 1 << 23):  # a chunk of one image, the whole batch
        K.im2col.COLUMN_BYTES = column_bytes
        agrees(K.get_kernel("im2col"), x, w, ((2, 1), (1, 0, 2, 1), (1, 2), 2), (8, 6))
    y1, a1 = numba_pooling.max_pool2d_forward(x, 3, 2, 1, 1, True)
    y2, a2 = pooling.max_pool2d_forward(x, 3, 2, 1, 1, True)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(numba_pooling.avg_pool2d_forward(x, 3, 2, 1, True, False),
                               pooling.avg_pool2d_forward(x, 3, 2, 1, True, False), rtol=1e-6)
print("ok")
"""
    r = _run(code, NUMBA_DISABLE_JIT="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_thread_pool_start_leaves_the_environment_alone():
    code = """
import os
import numpy as np
import tinyconv.kernels as K
from tinyconv.kernels import threads
K.get_kernel("numba").conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), 1, 0, 1, 1)
assert threads._started
assert "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
print("ok")
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    r = _run(code.replace('assert "GOMP', 'assert os.environ["GOMP_SPINCOUNT"] == "5" or "GOMP'),
             GOMP_SPINCOUNT="5")                  # a user's setting is kept
    assert r.returncode == 0, r.stderr


@settings(deadline=None, max_examples=20)
@given(cfg=conv_configs(), dtype=st.sampled_from([np.float64, np.float32]))
def test_numba_batch_last_path(cfg, dtype):
    """The numba kernel's batch-last path (used for big batches) on every configuration."""
    saved = choose.BATCH_LAST_MIN_N, choose.BATCH_LAST_MIN_GARBAGE, choose.MIN_BLOCK_USE
    choose.BATCH_LAST_MIN_N, choose.BATCH_LAST_MIN_GARBAGE, choose.MIN_BLOCK_USE = 1, -1.0, 2.0
    try:
        x, w, gy = cfg.arrays(dtype)
        got = _all_ops(numba, cfg, x, w, gy)
    finally:
        choose.BATCH_LAST_MIN_N, choose.BATCH_LAST_MIN_GARBAGE, choose.MIN_BLOCK_USE = saved
    ref = _all_ops(direct, cfg, x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64))
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for what, a, b in zip(("forward", "grad_input", "grad_weight"), got, ref):
        assert a.dtype == dtype
        _assert_close(a, b, tol, f"batch-last {what}")


@settings(deadline=None, max_examples=25)
@given(cfg=conv_configs(), extra=st.integers(0, 2), dtype=st.sampled_from([np.float64, np.float32]))
def test_numba_grad_input_as_forward_phases(cfg, extra, dtype):
    """grad_input run as forward convolutions of grad_y, one per phase of the stride (numba's batch-last path
    forced): equal to the direct kernel's, on inputs larger than the smallest too (as output_padding gives)."""
    saved = choose.BATCH_LAST_MIN_N, choose.BATCH_LAST_MIN_GARBAGE, choose.MIN_BLOCK_USE
    args = shapes.normalize_conv_args((cfg.n, cfg.c_in, cfg.h, cfg.w), (cfg.c_out, cfg.c_in // cfg.groups) + cfg.kernel,
                                      *cfg.kernel_args)
    (sh, sw) = args.stride
    # extra rows/columns that leave grad_y's size unchanged: any with stride 1 (as the adjoint on a larger
    # input), fewer than the stride otherwise
    big = (cfg.h + (extra if sh == 1 else min(extra, sh - 1)), cfg.w + (extra if sw == 1 else min(extra, sw - 1)))
    x, w, gy = cfg.arrays(dtype)
    choose.BATCH_LAST_MIN_N, choose.BATCH_LAST_MIN_GARBAGE, choose.MIN_BLOCK_USE = 1, -1.0, 2.0
    try:
        phases = choose.grad_input_phases(gy.shape, big, args)
        got = numba.conv2d_grad_input(gy, w, big, *cfg.kernel_args)
    finally:
        choose.BATCH_LAST_MIN_N, choose.BATCH_LAST_MIN_GARBAGE, choose.MIN_BLOCK_USE = saved
    assert phases is not None                      # every configuration runs as forward convolutions here
    rows, cols = phases
    assert [p.first for p in rows] == list(range(min(sh, big[0])))
    assert sum(p.count for p in rows) == big[0] and sum(p.count for p in cols) == big[1]
    ref = direct.conv2d_grad_input(gy.astype(np.float64), w.astype(np.float64), big, *cfg.kernel_args)
    assert got.dtype == dtype and got.shape == ref.shape
    _assert_close(got, ref, 1e-10 if dtype == np.float64 else 1e-4, "grad_input as forward convolutions")


@pytest.mark.skipif(not K.jit_enabled(), reason="the register-blocked kernels are compiled code only")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tiles", blocked.TILES)
@settings(deadline=None, max_examples=30)
@given(cfg=blocked_conv_configs(), extra=st.integers(0, 3))
def test_numba_blocked_path(tiles, dtype, cfg, extra):
    """The register-blocked stride-1 kernels (blocked), each variant forced on (on any CPU: a variant whose tiles do
    not fit the registers is slow, not wrong) on every configuration they take: every tile of the forward and of
    grad_weight with its tails (odd channel counts, groups), batches past 4, dilation, 'same' (uneven) padding,
    grad_input on a larger input (as output_padding gives), against the direct kernel: float64 to 1e-10 and
    float32 to 1e-4 of the largest value."""
    x, w, gy = cfg.arrays(dtype)
    big = (cfg.h + extra, cfg.w + extra)
    args = shapes.normalize_conv_args(cfg.x_shape, cfg.w_shape, *cfg.kernel_args)
    big_args = shapes.normalize_conv_args((cfg.n, cfg.c_in) + big, cfg.w_shape, *cfg.kernel_args)
    saved = choose.MIN_BLOCK_USE, choose.BLOCKED_TILES
    choose.MIN_BLOCK_USE, choose.BLOCKED_TILES = 0.0, tiles
    try:
        taken = [choose.uses_blocked("forward", cfg.x_shape, cfg.w_shape, args.out_shape[2:], args),
                 choose.uses_blocked("grad_input", (cfg.n, cfg.c_in) + big, cfg.w_shape, gy.shape[2:], big_args),
                 choose.uses_blocked("grad_weight", cfg.x_shape, cfg.w_shape, args.out_shape[2:], args)]
        got = _all_ops(numba, cfg, x, w, gy, big)
    finally:
        choose.MIN_BLOCK_USE, choose.BLOCKED_TILES = saved
    depthwise = choose.is_depthwise(cfg.c_in, cfg.c_out, cfg.c_in // cfg.groups, cfg.groups)
    (kh, kw), (dh, dw), (top, bottom, left, right) = cfg.kernel, cfg.dilation, cfg.padding
    reach = max(top, bottom) <= (kh - 1) * dh and max(left, right) <= (kw - 1) * dw
    fills = [3 * c >= 2 * -(-c // blocked.tile_channels(c, tiles)) * blocked.tile_channels(c, tiles)
             for c in (cfg.c_out // cfg.groups, cfg.c_in // cfg.groups)]
    assert taken == [not depthwise and fills[0], not depthwise and reach and fills[1], not depthwise]
    ref = _all_ops(direct, cfg, x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64), big)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for what, a, b in zip(("forward", "grad_input", "grad_weight"), got, ref):
        assert a.dtype == dtype and a.shape == b.shape
        _assert_close(a, b, tol, f"blocked {tiles} {what}")


@pytest.mark.parametrize("how", ["numpy", "loop", "split"])
@pytest.mark.parametrize("shape, groups, tc", [((10, 3, 3, 2), 1, 8), ((16, 2, 1, 1), 1, 8), ((6, 1, 5, 5), 1, 6),
                                               ((15, 4, 3, 3), 3, 4), ((7, 1, 2, 2), 7, 6), ((6, 9, 3, 1), 2, 4)])
def test_pack_weights_lays_out_each_tile_channel_by_channel(shape, groups, tc, how, monkeypatch):
    """packed[g*tiles + b, r, lane] = w[g*og + b*tc + lane] flattened at r, zero past a group's last channel, also
    from a flipped (non-contiguous) view; with ``adjoint``, the same layout of grad_input's kernel, ``wt[g*cg + c,
    o, a, b] = w[g*og + o, c, kh-1-a, kw-1-b]``, tiles over the input channels. ``how``: NumPy's copies (small
    weights), the compiled loop (large ones), or that loop shared out over two worker threads (the largest)."""
    if how != "numpy":
        monkeypatch.setattr(blocked, "PACK_NUMPY_MAX", -1)
    if how == "split":
        monkeypatch.setattr(blocked, "PACK_SPLIT", 1)
        monkeypatch.setattr(blocked.workers, "num_threads", lambda: 2)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(np.float32)
    og, cg, kh, kw = shape[0] // groups, shape[1], shape[2], shape[3]
    wt = w[:, :, ::-1, ::-1].reshape(groups, og, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(groups * cg, og, kh, kw)
    cases = [(w, False, w), (w[:, :, ::-1, ::-1], False, w[:, :, ::-1, ::-1]), (w, True, wt)]
    for src, adjoint, want_w in cases:
        packed = blocked.pack_weights(src, groups, tc, adjoint=adjoint)
        lanes_real, k = want_w.shape[0] // groups, want_w[0].size
        nob = -(-lanes_real // tc)
        assert packed.shape == (groups * nob, k, tc) and packed.flags.c_contiguous
        flat = np.ascontiguousarray(want_w).reshape(groups, lanes_real, k)
        for g in range(groups):
            for b in range(nob):
                for lane in range(tc):
                    o = b * tc + lane
                    want = flat[g, o] if o < lanes_real else np.zeros(k, np.float32)
                    np.testing.assert_array_equal(packed[g * nob + b, :, lane], want, err_msg=f"adjoint={adjoint}")


@pytest.mark.skipif(not K.jit_enabled(), reason="the register-blocked kernels are compiled code only")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tiles", blocked.TILES)
@settings(deadline=None, max_examples=20)
@given(cfg=blocked_conv_configs(max_size=9))
def test_blocked_kernels_called_directly(tiles, dtype, cfg):
    """Each variant's three kernels called directly, whatever the chooser would take (grad_weight on 1 or 2 vectors
    of output channels and on fewer; the forward with 4, 6 or 8 channels a tile, even where few are real), against
    the direct kernel: float64 to 1e-10, float32 to 1e-4 of the largest value."""
    args = shapes.normalize_conv_args(cfg.x_shape, cfg.w_shape, *cfg.kernel_args)
    x, w, gy = cfg.arrays(dtype)
    x64, w64, gy64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    y = blocked.forward(x, w, np.zeros(cfg.c_out, dtype=dtype), args, np.empty(args.out_shape, dtype=dtype), tiles)
    _assert_close(y, direct.conv2d_forward(x64, w64, *cfg.kernel_args), tol, f"blocked {tiles} forward")
    gw = blocked.grad_weight(x, gy, args, cfg.w_shape, tiles)
    assert gw.dtype == dtype and gw.shape == cfg.w_shape
    _assert_close(gw, direct.conv2d_grad_weight(x64, gy64, cfg.kernel, *cfg.kernel_args), tol,
                  f"blocked {tiles} grad_weight")
    (kh, kw), (dh, dw), (top, bottom, left, right) = cfg.kernel, cfg.dilation, cfg.padding
    if max(top, bottom) <= (kh - 1) * dh and max(left, right) <= (kw - 1) * dw:
        gx = blocked.grad_input(gy, w, (cfg.h, cfg.w), args, tiles)
        _assert_close(gx, direct.conv2d_grad_input(gy64, w64, (cfg.h, cfg.w), *cfg.kernel_args), tol,
                      f"blocked {tiles} grad_input")


@pytest.mark.skipif(not K.jit_enabled(), reason="the register-blocked kernels are compiled code only")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tiles, vectors", [(t, None) for t in blocked.TILES] + [("avx512", 3)])
@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=blocked_conv_configs(max_size=9), extra=st.integers(0, 2))
def test_blocked_batch_last_kernels(tiles, vectors, dtype, cfg, extra, monkeypatch):
    """The register tiles on batch-last planes (blocked_batch_last), each variant (``vectors`` 3: avx512's 8 x 3
    tile forced, whatever the rows), called directly (grad_weight also on fewer output channels than a tile) and
    through the numba backend with the chooser's thresholds opened so that it takes them for every operation it
    can (rows of Wo*N values that end inside a block, groups, dilation, uneven padding, grad_input on a larger
    input), against the direct kernel: float64 to 1e-10, float32 to 1e-4 of the largest value."""
    if vectors:
        monkeypatch.setattr(blocked_batch_last, "row_vectors", lambda run, tiles: vectors)
    args = shapes.normalize_conv_args(cfg.x_shape, cfg.w_shape, *cfg.kernel_args)
    x, w, gy = cfg.arrays(dtype)
    big = (cfg.h + extra, cfg.w + extra)
    x64, w64, gy64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    bias = np.linspace(-1, 1, cfg.c_out).astype(dtype)
    y = blocked_batch_last.forward(x, w, bias, args, np.empty(args.out_shape, dtype=dtype), tiles)
    _assert_close(y, direct.conv2d_forward(x64, w64, *cfg.kernel_args) + bias[:, None, None], tol,
                  f"blocked_batch_last {tiles} forward")
    gw = blocked_batch_last.grad_weight(x, gy, args, cfg.w_shape, tiles)
    assert gw.dtype == dtype and gw.shape == cfg.w_shape
    _assert_close(gw, direct.conv2d_grad_weight(x64, gy64, cfg.kernel, *cfg.kernel_args), tol,
                  f"blocked_batch_last {tiles} grad_weight")
    (kh, kw), (dh, dw), (top, bottom, left, right) = cfg.kernel, cfg.dilation, cfg.padding
    reach = max(top, bottom) <= (kh - 1) * dh and max(left, right) <= (kw - 1) * dw
    if reach:
        gx = blocked_batch_last.grad_input(gy, w, (cfg.h, cfg.w), args, tiles)
        _assert_close(gx, direct.conv2d_grad_input(gy64, w64, (cfg.h, cfg.w), *cfg.kernel_args), tol,
                      f"blocked_batch_last {tiles} grad_input")
    monkeypatch.setattr(choose, "BLOCKED_TILES", tiles)
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MAX_FLAT_USE", 1.01)
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MIN_POS", 0)
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MIN_POS_TILES", {})
    monkeypatch.setattr(choose, "BATCH_LAST_MIN_N", 1000)
    gy_big = np.random.default_rng(cfg.seed).uniform(-1, 1, (cfg.n, cfg.c_out) + tuple(
        shapes.conv_output_size(s, k, 1, p, d) for s, k, p, d in
        zip(big, cfg.kernel, (top + bottom, left + right), cfg.dilation))).astype(dtype)
    big_args = shapes.normalize_conv_args((cfg.n, cfg.c_in) + big, cfg.w_shape, *cfg.kernel_args)
    taken = [choose.numba_layout("forward", cfg.x_shape, cfg.w_shape, args.out_shape[2:], args),
             choose.numba_layout("grad_input", (cfg.n, cfg.c_in) + big, cfg.w_shape, gy_big.shape[2:], big_args),
             choose.numba_layout("grad_weight", cfg.x_shape, cfg.w_shape, args.out_shape[2:], args)]
    got = (numba.forward(x, w, args), numba.grad_input(gy_big, w, big, big_args), numba.grad_weight(x, gy, args))
    depthwise = choose.is_depthwise(cfg.c_in, cfg.c_out, cfg.c_in // cfg.groups, cfg.groups)
    fills = [choose._fills_tile(c) for c in (cfg.c_out // cfg.groups, cfg.c_in // cfg.groups)]
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_GW", (tiles,))
    wide = cfg.c_out // cfg.groups >= blocked.GRAD_WEIGHT_VECTORS[tiles] * 16
    better = [blocked_batch_last.block_use(hw, cfg.n, tiles) > blocked.block_use(hw, width, tiles)
              for hw, width in ((args.out_shape[2:], cfg.w + left + right), (big, big[1] + (kw - 1) * dw))]
    want = [not depthwise and fills[0] and better[0], not depthwise and reach and fills[1] and better[1],
            not depthwise and wide and better[0]]
    assert [t == "blocked_batch_last" for t in taken] == want, (taken, want)
    ref = (direct.conv2d_forward(x64, w64, *cfg.kernel_args),
           direct.conv2d_grad_input(gy_big.astype(np.float64), w64, big, *cfg.kernel_args),
           direct.conv2d_grad_weight(x64, gy64, cfg.kernel, *cfg.kernel_args))
    for what, a, b in zip(("forward", "grad_input", "grad_weight"), got, ref):
        assert a.dtype == dtype and a.shape == b.shape
        _assert_close(a, b, tol, f"numba via blocked_batch_last {tiles} {what}")


def test_batch_last_row_tiles():
    """avx512 takes its 8 x 3 tile where blocks of 48 waste fewer of a row's Wo*N values than blocks of 32 (a 3x3
    output of 16 images: 48 of 48 against 48 of 64), else its 8 x 2; avx2 always its 1-vector tile."""
    assert [blocked_batch_last.row_vectors(run, "avx512") for run in (48, 96, 192, 80, 16, 144, 40)] == [
        3, 2, 2, 2, 2, 3, 3]
    assert {blocked_batch_last.row_vectors(run, "avx2") for run in (48, 96, 80, 16, 144)} == {1}
    assert blocked_batch_last.block_use((3, 3), 16, "avx512") == 1.0


def test_blocked_tile_rules(monkeypatch):
    """The share of a block's positions that are outputs decides (3x3 planes waste 23 of a 32-position block), and
    the share of a tile's output channels that are real (avx512: tiles of 8, or of 6 where that computes a tenth
    fewer channels; avx2: 6, or 4)."""
    widths = (1, 2, 3, 4, 5, 6, 8, 12, 16, 20, 30, 64)
    assert [blocked.tile_channels(c, "avx512") for c in widths] == [6, 6, 6, 6, 6, 6, 8, 6, 8, 8, 8, 8]
    assert [blocked.tile_channels(c, "avx2") for c in widths] == [4, 4, 4, 4, 6, 6, 4, 6, 4, 4, 6, 6]
    assert blocked.block_use((3, 3), 5, "avx512") == 9 / 32
    assert blocked.block_use((3, 3), 5, "avx2") == 9 / 16
    assert blocked.block_use((32, 32), 34, "avx512") == 1024 / (-(-(31 * 34 + 32) // 32) * 32)
    assert blocked.block_use((32, 32), 34, "avx2") == 1024 / (-(-(31 * 34 + 32) // 16) * 16)
    assert blocked.block_use((0, 5), 7, "avx2") == 0.0
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx512")  # the rule as on a CPU with AVX-512
    if K.jit_enabled():
        a = shapes.normalize_conv_args((2, 8, 3, 3), (8, 8, 3, 3), 1, 1, 1, 1)
        assert not choose.uses_blocked("forward", (2, 8, 3, 3), (8, 8, 3, 3), (3, 3), a)
        a = shapes.normalize_conv_args((2, 8, 16, 16), (8, 8, 3, 3), 1, 1, 1, 1)
        assert choose.uses_blocked("forward", (2, 8, 16, 16), (8, 8, 3, 3), (16, 16), a)
        assert choose.uses_blocked("grad_weight", (31, 8, 16, 16), (8, 8, 3, 3), (16, 16), a)
        assert not choose.uses_blocked("grad_weight", (32, 8, 16, 16), (8, 8, 3, 3), (16, 16), a)
        a = shapes.normalize_conv_args((32, 8, 28, 28), (8, 8, 3, 3), 1, 1, 1, 1)
        assert choose.uses_blocked("grad_weight", (32, 8, 28, 28), (8, 8, 3, 3), (28, 28), a)
        a = shapes.normalize_conv_args((2, 2, 16, 16), (2, 2, 3, 3), 1, 1, 1, 1)  # 2 of a tile's 6 channels
        assert not choose.uses_blocked("forward", (2, 2, 16, 16), (2, 2, 3, 3), (16, 16), a)
        assert not choose.uses_blocked("grad_input", (2, 2, 16, 16), (2, 2, 3, 3), (16, 16), a)
        a = shapes.normalize_conv_args((2, 3, 16, 16), (4, 3, 3, 3), 1, 1, 1, 1)  # 4 of 6
        assert choose.uses_blocked("forward", (2, 3, 16, 16), (4, 3, 3, 3), (16, 16), a)
        assert not choose.uses_blocked("grad_input", (2, 3, 16, 16), (4, 3, 3, 3), (16, 16), a)  # 3 of 6
        a = shapes.normalize_conv_args((2, 8, 16, 16), (8, 8, 3, 3), 2, 1, 1, 1)
        assert not choose.uses_blocked("forward", (2, 8, 16, 16), (8, 8, 3, 3), (8, 8), a)
        monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")  # 2 of a tile's 4 channels, 3 of 4
        a = shapes.normalize_conv_args((2, 3, 16, 16), (2, 3, 3, 3), 1, 1, 1, 1)
        assert not choose.uses_blocked("forward", (2, 3, 16, 16), (2, 3, 3, 3), (16, 16), a)
        assert choose.uses_blocked("grad_input", (2, 3, 16, 16), (2, 3, 3, 3), (16, 16), a)
        a = shapes.normalize_conv_args((2, 8, 3, 3), (8, 8, 3, 3), 1, 1, 1, 1)  # 9 of 16 positions
        assert choose.uses_blocked("forward", (2, 8, 3, 3), (8, 8, 3, 3), (3, 3), a)
        monkeypatch.setattr(choose, "BLOCKED_TILES", None)  # no variant for the CPU: never
        a = shapes.normalize_conv_args((2, 8, 16, 16), (8, 8, 3, 3), 1, 1, 1, 1)
        assert not any(choose.uses_blocked(op, (2, 8, 16, 16), (8, 8, 3, 3), (16, 16), a) for op in choose.CONV_OPS)


@settings(deadline=None, max_examples=20)
@given(cfg=conv_configs(), dtype=st.sampled_from([np.float64, np.float32]))
def test_im2col_batch_last_grad_input(cfg, dtype):
    """im2col's grad_input for big batches (batch-last columns, one product, col2im by vectors of N), forced on
    every configuration: equal to the direct kernel's."""
    saved = choose.BATCH_LAST_MIN_N
    choose.BATCH_LAST_MIN_N = 1
    x, w, gy = cfg.arrays(dtype)
    try:
        got = im2col.conv2d_grad_input(gy, w, (cfg.h, cfg.w), *cfg.kernel_args)
    finally:
        choose.BATCH_LAST_MIN_N = saved
    ref = direct.conv2d_grad_input(gy.astype(np.float64), w.astype(np.float64), (cfg.h, cfg.w), *cfg.kernel_args)
    assert got.dtype == dtype
    _assert_close(got, ref, 1e-10 if dtype == np.float64 else 1e-4, "im2col batch-last grad_input")


def test_numba_batch_last_lenet_batch():
    rng = np.random.default_rng(7)
    for xs, ws, pad in (((40, 1, 12, 12), (6, 1, 5, 5), 2), ((40, 6, 9, 9), (16, 6, 5, 5), 0),
                        ((33, 4, 9, 8), (6, 2, 3, 2), 1)):
        groups = xs[1] // ws[1]
        x = rng.standard_normal(xs)
        w = rng.standard_normal(ws)
        args = ((1, 1), (pad,) * 4, (1, 1), groups)
        y = numba.conv2d_forward(x, w, *args)
        np.testing.assert_allclose(y, direct.conv2d_forward(x, w, *args), atol=1e-10)
        gy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(numba.conv2d_grad_weight(x, gy, ws[2:], *args),
                                   direct.conv2d_grad_weight(x, gy, ws[2:], *args), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes_", [((3, 4, 9, 8), (6, 2, 3, 2), 2, 1),      # groups, flat-rows path
                                     ((40, 6, 14, 14), (16, 6, 5, 5), 1, 0),  # batch-last path (N >= 32)
                                     ((33, 1, 12, 12), (6, 1, 5, 5), 1, 2)])  # 5 output channels per block edge
def test_forward_bias_is_added_by_every_kernel(kernel, dtype, shapes_):
    xs, ws, groups, pad = shapes_
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    args = ((1, 1), (pad,) * 4, (1, 1), groups)
    y = kernel.conv2d_forward(x, w, *args)
    yb = kernel.conv2d_forward(x, w, *args, bias=b)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(yb, y + b.reshape(1, -1, 1, 1), rtol=tol, atol=tol)
    assert yb.dtype == dtype


def test_forward_bias_is_checked(kernel):
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match=r"bias of shape \(3,\) and dtype float64.*got shape \(2,\)"):
        kernel.conv2d_forward(x, w, *args, bias=np.ones(2))
    with pytest.raises(ValueError, match=r"got shape \(3,\) and dtype float32"):
        kernel.conv2d_forward(x, w, *args, bias=np.ones(3, np.float32))


def test_numba_scratch_buffers_keep_their_padding_zero():
    """The batch-last copies live in reused scratch buffers: an input of another size with the same
    padded shape must not leave values where a later call expects padding."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3, 3, 3))
    calls = [((40, 3, 10, 10), (2, 2, 2, 2)),   # padded 14x14
             ((40, 3, 12, 12), (2, 0, 2, 0)),   # also padded 14x14, different interior
             ((40, 3, 10, 10), (2, 2, 2, 2))]   # the first again: its padding must be zero
    for xs, pad in calls:
        x = rng.standard_normal(xs)
        args = ((1, 1), pad, (1, 1), 1)
        y = numba.conv2d_forward(x, w, *args)
        np.testing.assert_allclose(y, direct.conv2d_forward(x, w, *args), rtol=1e-10, atol=1e-10)
        gy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(numba.conv2d_grad_weight(x, gy, (3, 3), *args),
                                   direct.conv2d_grad_weight(x, gy, (3, 3), *args), rtol=1e-10, atol=1e-10)
    numba_fast.clear_workspace()


def test_numba_workspace_is_bounded(monkeypatch):
    monkeypatch.setattr(workspace, "WORKSPACE_MAX_BYTES", 1)
    numba_fast.clear_workspace()
    x, w = np.ones((40, 1, 8, 8), np.float32), np.ones((2, 1, 3, 3), np.float32)
    for pad in (0, 1, 2):
        numba.conv2d_forward(x, w, (1, 1), (pad,) * 4, (1, 1), 1)
    buffers = workspace._workspace.buffers
    assert len(buffers) == 1  # only the most recent one is kept
    assert workspace._workspace.nbytes == next(iter(buffers.values())).nbytes  # the running total follows
    monkeypatch.setattr(workspace, "WORKSPACE_MAX_BYTES", 2**30)
    for pad in (0, 1, 2, 1):
        numba.conv2d_forward(x, w, (1, 1), (pad,) * 4, (1, 1), 1)
    assert len(buffers) == 3 and workspace._workspace.nbytes == sum(b.nbytes for b in buffers.values())
    numba_fast.clear_workspace()
