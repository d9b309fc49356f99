"""Pooling with autograd (tinyconv.functional / tinyconv.nn.conv): gradchecks for both pooling kernels, layers,
adaptive average pooling, unbatched inputs, selection and validation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyconv as tc
import tinyconv.kernels as K
from tinyconv import functional as C
from tinyconv.nn.conv import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

from strategies_conv import pool_configs

POOL_NAMES = ["numpy", "numba"]


def distinct_values(shape, seed):
    """float64 values with gaps of at least 0.01 (no ties, so max pooling is differentiable under eps)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)


@settings(deadline=None, max_examples=20)
@given(cfg=pool_configs(max_size=7), name=st.sampled_from(POOL_NAMES))
def test_gradcheck_max_pool2d(cfg, name):
    x = tc.tensor(distinct_values(cfg.x_shape, cfg.seed), requires_grad=True)
    y = C.max_pool2d(x, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, cfg.ceil_mode, kernel=name)
    if not np.isfinite(y.numpy()).all():      # a degenerate window with no input pixel: nothing to check
        return
    assert tc.gradcheck(lambda t: C.max_pool2d(t, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation,
                                               cfg.ceil_mode, kernel=name), [x])


@settings(deadline=None, max_examples=20)
@given(cfg=pool_configs(max_size=7, with_dilation=False), name=st.sampled_from(POOL_NAMES),
       override=st.sampled_from([None, 2]))
def test_gradcheck_avg_pool2d(cfg, name, override):
    x = tc.tensor(np.random.default_rng(cfg.seed).uniform(-1, 1, cfg.x_shape), requires_grad=True)
    assert tc.gradcheck(lambda t: C.avg_pool2d(t, cfg.kernel, cfg.stride, cfg.padding, cfg.ceil_mode,
                                               cfg.count_include_pad, override, kernel=name), [x])


@settings(deadline=None, max_examples=20)
@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 4), ow=st.integers(1, 4),
       seed=st.integers(0, 2**31))
def test_adaptive_avg_pool2d(h, w, oh, ow, seed):
    x = tc.tensor(np.random.default_rng(seed).uniform(-1, 1, (2, 3, h, w)), requires_grad=True)
    y = C.adaptive_avg_pool2d(x, (oh, ow))
    assert y.shape == (2, 3, oh, ow)
    for i in range(oh):
        for j in range(ow):
            hs, he = (i * h) // oh, -((-(i + 1) * h) // oh)
            ws, we = (j * w) // ow, -((-(j + 1) * w) // ow)
            np.testing.assert_allclose(y.numpy()[:, :, i, j], x.numpy()[:, :, hs:he, ws:we].mean(axis=(2, 3)))
    assert tc.gradcheck(lambda t: C.adaptive_avg_pool2d(t, (oh, ow)), [x])


def test_adaptive_avg_pool2d_examples():
    x = tc.tensor(np.arange(25.0).reshape(1, 1, 5, 5))
    # PyTorch's windows for 5 -> 3: [0, 2), [1, 4), [3, 5)
    y = C.adaptive_avg_pool2d(x, 3)
    np.testing.assert_allclose(y.numpy()[0, 0, 0], [3.0, 4.5, 6.0])
    np.testing.assert_allclose(C.adaptive_avg_pool2d(x, 1).numpy().ravel(), [12.0])
    assert AdaptiveAvgPool2d((None, 2))(x).shape == (1, 1, 5, 2)
    assert C.adaptive_avg_pool2d(tc.tensor(np.ones((3, 4, 4))), 2).shape == (3, 2, 2)   # unbatched
    with pytest.raises(ValueError, match="output_size must be positive"):
        C.adaptive_avg_pool2d(x, 0)


def test_max_pool_layer_lenet_case():
    x = tc.tensor(np.arange(2 * 6 * 28 * 28, dtype=np.float32).reshape(2, 6, 28, 28), requires_grad=True)
    pool = MaxPool2d(2, 2)
    y = pool(x)
    assert y.shape == (2, 6, 14, 14) and y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), x.numpy()[:, :, 1::2, 1::2])
    y.sum().backward()
    expected = np.zeros(x.shape, np.float32)
    expected[:, :, 1::2, 1::2] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert y.grad_fn.name().startswith("MaxPool2dBackward")
    assert repr(pool) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"


def test_avg_pool_layer_lenet_case():
    x = tc.tensor(np.ones((2, 16, 10, 10), np.float32), requires_grad=True)
    y = AvgPool2d(kernel_size=2, stride=2)(x)
    assert y.shape == (2, 16, 5, 5)
    np.testing.assert_array_equal(y.numpy(), np.ones((2, 16, 5, 5), np.float32))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(x.shape, 0.25, np.float32))
    assert y.grad_fn.name().startswith("AvgPool2dBackward")


def test_return_indices_and_unbatched():
    x = tc.tensor(np.array([[[1.0, 3, 3], [3, 2, 1], [0, 3, 3]]]), requires_grad=True)   # (C, H, W)
    y, idx = C.max_pool2d(x, 2, 1, return_indices=True)
    assert y.shape == (1, 2, 2) and idx.shape == (1, 2, 2) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx.numpy()[0], [[1, 1], [3, 7]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0], [[0, 2, 0], [1, 0, 0], [0, 1, 0]])
    out, ind = MaxPool2d(2, 1, return_indices=True)(x)
    np.testing.assert_array_equal(ind.numpy(), idx.numpy())
    a = C.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    assert a.shape == (1, 3, 3)
    assert tc.gradcheck(lambda t: C.avg_pool2d(t, 3, 1, 1), [tc.tensor(np.random.rand(2, 5, 4),
                                                                        requires_grad=True)])


def test_pool_kernel_selection():
    x = tc.randn(2, 3, 8, 8, requires_grad=True)
    assert C.max_pool2d(x, 2, kernel="numpy").grad_fn.name() == "MaxPool2dBackward(kernel=numpy)"
    assert AvgPool2d(2, kernel="numba")(x).grad_fn.name() == "AvgPool2dBackward(kernel=numba)"
    with K.use_pool_kernel("numpy"):
        y = C.max_pool2d(x, 2)
        assert y.grad_fn.name() == "MaxPool2dBackward(kernel=numpy)"
    y.sum().backward()           # backward after the block: still the numpy kernel
    auto = "numba" if K.jit_enabled() else "numpy"
    assert C.avg_pool2d(x, 2).grad_fn.name() == f"AvgPool2dBackward(kernel={auto})"
    before = K.get_default_pool_kernel()
    try:
        K.set_default_pool_kernel("numpy")
        assert C.avg_pool2d(x, 2).grad_fn.name() == "AvgPool2dBackward(kernel=numpy)"
    finally:
        K.set_default_pool_kernel(before)
    with pytest.raises(ValueError, match=r"unknown pool kernel 'cuda'; valid pool kernels: 'numpy', 'numba'"):
        C.max_pool2d(x, 2, kernel="cuda")
    with pytest.raises(ValueError, match="unknown pool kernel 'cuda'"):
        MaxPool2d(2, kernel="cuda")


def test_numpy_and_numba_layers_agree():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 11, 9)).astype(np.float32)
    outs = []
    for name in POOL_NAMES:
        xt = tc.tensor(x, requires_grad=True)
        y = C.max_pool2d(xt, 3, 2, 1, ceil_mode=True, kernel=name) + C.avg_pool2d(
            xt, 3, 2, 1, ceil_mode=True, count_include_pad=False, kernel=name)
        y.backward(tc.tensor(np.ones(y.shape, np.float32)))
        outs.append((y.numpy(), xt.grad.numpy()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call,exc,message", [
    (lambda x: C.max_pool2d(x, 2, 2, 2), ValueError, r"padding should be at most half of the kernel size"),
    (lambda x: C.avg_pool2d(x, 3, 0), ValueError, r"stride must be positive"),
    (lambda x: C.max_pool2d(x[0, 0, 0], 2), ValueError, r"expected a 3-D \(unbatched \(C, H, W\)\) or 4-D"),
    (lambda x: C.max_pool2d(x, 9), ValueError, r"output size is too small"),
    (lambda x: C.avg_pool2d(x, 2, divisor_override=0), ValueError, r"divisor_override must be non-zero"),
    (lambda x: C.max_pool2d(tc.tensor(np.ones((1, 1, 4, 4), np.int64)), 2), TypeError, r"floating-point"),
    (lambda x: MaxPool2d(2, padding=2), ValueError, r"padding should be at most half"),
    (lambda x: AvgPool2d(3, padding=2), ValueError, r"padding should be at most half"),
])
def test_pool_errors(call, exc, message):
    x = tc.randn(1, 2, 8, 8, requires_grad=True)
    x0 = x.numpy().copy()
    with pytest.raises(exc, match=message):
        call(x)
    np.testing.assert_array_equal(x.numpy(), x0)
    assert x.grad is None
