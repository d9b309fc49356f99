"""Convolution with autograd (tinyconv.functional, tinyconv.nn.conv): gradchecks for every kernel, the seed-notes
examples through the functional API and the layers, conv_transpose2d / conv1d, dtype and unbatched handling,
validation without side effects, and every way of selecting a kernel."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyconv as tc
import tinyconv.kernels as K
from tinyconv import functional as C
from tinyconv.nn.conv import Conv1d, Conv2d, ConvTranspose2d

from strategies_conv import conv_configs, conv_transpose_configs

KERNEL_NAMES = list(K.available())  # every registered backend (conftest.py adds the einsum one)
direct = K.get_kernel("direct")  # the reference backend, through its checked doors
ROOT = Path(__file__).resolve().parents[1]


def t64(a, grad=True):
    return tc.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


@pytest.fixture
def restore_default():
    before = K.get_default_kernel()
    yield
    K.set_default_kernel(before)


# ----------------------------------------------------------------------------- gradchecks
small_convs = conv_configs(max_batch=2, max_group_channels=2, max_groups=2, max_kernel=3, max_size=6)


@settings(deadline=None, max_examples=15)
@given(cfg=small_convs, name=st.sampled_from(KERNEL_NAMES), with_bias=st.booleans())
def test_gradcheck_conv2d(cfg, name, with_bias):
    rng = np.random.default_rng(cfg.seed)
    x = t64(rng.uniform(-1, 1, cfg.x_shape))
    w = t64(rng.uniform(-1, 1, cfg.w_shape))
    b = t64(rng.uniform(-1, 1, cfg.c_out)) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])

    def fn(x, w, b=None):
        return C.conv2d(x, w, b, cfg.stride, cfg.padding_arg, cfg.dilation, cfg.groups, kernel=name)

    assert tc.gradcheck(fn, inputs, names=["input", "weight", "bias"][:len(inputs)])


@settings(deadline=None, max_examples=15)
@given(cfg=conv_transpose_configs(), name=st.sampled_from(KERNEL_NAMES), with_bias=st.booleans())
def test_gradcheck_conv_transpose2d(cfg, name, with_bias):
    rng = np.random.default_rng(cfg.seed)
    x = t64(rng.uniform(-1, 1, cfg.x_shape))
    w = t64(rng.uniform(-1, 1, cfg.w_shape))
    b = t64(rng.uniform(-1, 1, cfg.c_out)) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])

    def fn(x, w, b=None):
        return C.conv_transpose2d(x, w, b, cfg.stride, cfg.padding, cfg.output_padding, cfg.groups,
                                  cfg.dilation, kernel=name)

    y = fn(*inputs)
    assert y.shape == cfg.out_shape
    assert tc.gradcheck(fn, inputs, names=["input", "weight", "bias"][:len(inputs)])


@settings(deadline=None, max_examples=15)
@given(n=st.integers(1, 2), groups=st.integers(1, 2), cg=st.integers(1, 2), og=st.integers(1, 2),
       k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
       padding=st.sampled_from([0, 1, 2, "valid", "same"]), length=st.integers(6, 10),
       name=st.sampled_from(KERNEL_NAMES), seed=st.integers(0, 2**31))
def test_gradcheck_conv1d(n, groups, cg, og, k, s, d, padding, length, name, seed):
    if padding == "same":
        s = 1
    rng = np.random.default_rng(seed)
    x = t64(rng.uniform(-1, 1, (n, groups * cg, length)))
    w = t64(rng.uniform(-1, 1, (groups * og, cg, k)))
    b = t64(rng.uniform(-1, 1, groups * og))
    if length + (2 * padding if isinstance(padding, int) else 0) < d * (k - 1) + 1:
        return

    def fn(x, w, b):
        return C.conv1d(x, w, b, s, padding, d, groups, kernel=name)

    y = fn(x, w, b)
    ref = np.stack([direct.conv2d_forward(x.numpy()[:, :, None], w.numpy()[:, :, None],
                                          (1, s), _pad1d(padding, k, d), (1, d), groups)[:, :, 0]])[0]
    np.testing.assert_allclose(y.numpy(), ref + b.numpy()[:, None], atol=1e-12)
    assert tc.gradcheck(fn, [x, w, b])


def _pad1d(padding, k, d):
    if padding == "same":
        total = d * (k - 1)
        return (0, 0, total // 2, total - total // 2)
    p = 0 if padding == "valid" else padding
    return (0, 0, p, p)


# ----------------------------------------------------------------------------- seed notes
def test_corr2d_examples():
    X = np.arange(9.0).reshape(3, 3)
    Kmat = np.array([[0.0, 1.0], [2.0, 3.0]])
    y = tc.corr2d(X, Kmat) if hasattr(tc, "corr2d") else C.corr2d(X, Kmat)
    assert isinstance(y, tc.Tensor)
    np.testing.assert_array_equal(y.numpy(), [[19, 25], [37, 43]])
    # example B / C
    Xb = np.ones((6, 8))
    Xb[:, 2:6] = 0
    Y = C.corr2d(Xb, [[1.0, -1.0]]).numpy()
    assert Y.shape == (6, 7) and set(np.unique(Y)) == {-1, 0, 1}
    assert (Y[:, 1] == 1).all() and (Y[:, 5] == -1).all()
    assert not C.corr2d(Xb.T, [[1.0, -1.0]]).numpy().any()
    np.testing.assert_array_equal(C.corr2d(np.eye(8), [[1.0, -1.0]]).numpy(), np.eye(8, 7) - np.eye(8, 7, k=-1))
    # differentiable with respect to both arguments
    Xt, Kt = t64(X), t64(Kmat)
    assert tc.gradcheck(lambda a, b: C.corr2d(a, b), [Xt, Kt])
    with pytest.raises(ValueError, match=r"corr2d: expected a 2-D input and a 2-D kernel"):
        C.corr2d(np.ones((1, 3, 3)), Kmat)
    with pytest.raises(ValueError, match=r"kernel of shape \(4, 1\) is larger than the input of shape \(3, 3\)"):
        C.corr2d(X, np.ones((4, 1)))


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_examples_d_and_e_through_conv2d(name):
    X = np.array([[1, 2, 0, 2], [1, 0, 3, -1], [2, 2, 2, 0], [3, 1, -2, 0]], dtype=np.float64)
    Kd = np.array([[0, 1, -1], [-1, 0, 1], [1, 0, 1]], dtype=np.float64)
    y = C.conv2d(X[None, None], Kd[None, None], kernel=name)
    np.testing.assert_array_equal(y.numpy()[0, 0], [[8, -1], [-2, 3]])
    assert C.conv2d(X[None, None], Kd[None, None], padding=1, kernel=name).shape == (1, 1, 4, 4)
    assert C.conv2d(X[None, None], Kd[None, None], padding="same", kernel=name).shape == (1, 1, 4, 4)
    Xe = np.stack([np.arange(9.0).reshape(3, 3), np.arange(1.0, 10.0).reshape(3, 3)])
    Ke = np.stack([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    W = np.stack([Ke, Ke + 1, Ke + 2])
    y = C.conv2d(Xe, W, kernel=name)            # unbatched (C, H, W) input -> (C_out, H', W')
    assert y.shape == (3, 2, 2)
    np.testing.assert_array_equal(y.numpy()[0], [[56, 72], [104, 120]])


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_learning_a_kernel(name):
    """Seed notes §2 (d2l 6.2.4): Conv2d(1, 1, (1, 2), bias=False), summed squared error, lr 3e-2,
    10 steps of plain gradient descent on example B's X and Y find a kernel close to [1, -1]."""
    X = np.ones((6, 8), np.float32)
    X[:, 2:6] = 0
    x = tc.tensor(X.reshape(1, 1, 6, 8))
    y = C.conv2d(x, tc.tensor([[[[1.0, -1.0]]]]))
    tc.manual_seed(0)
    conv = Conv2d(1, 1, kernel_size=(1, 2), bias=False, kernel=name)
    losses = []
    for _ in range(10):
        loss = ((conv(x) - y) ** 2).sum()
        conv.zero_grad()
        loss.backward()
        conv.weight.data -= 3e-2 * conv.weight.grad
        losses.append(loss.item())
    np.testing.assert_allclose(conv.weight.numpy().reshape(2), [1.0, -1.0], atol=0.1)
    assert losses[-1] < losses[0] and losses[-1] < 0.1


def test_one_by_one_conv_is_linear_per_pixel():
    rng = np.random.default_rng(0)
    x = tc.tensor(rng.standard_normal((2, 5, 4, 3)).astype(np.float32))
    tc.manual_seed(1)
    conv = Conv2d(5, 7, 1)
    lin = tc.nn.Linear(5, 7)
    lin.weight.numpy()[...] = conv.weight.numpy()[:, :, 0, 0]
    lin.bias.numpy()[...] = conv.bias.numpy()
    y = conv(x)
    y_lin = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    np.testing.assert_allclose(y.numpy(), y_lin.numpy(), rtol=1e-5, atol=1e-6)


def test_conv_transpose2d_values():
    # d2l 13.10: X = [[0, 1], [2, 3]], K = [[0, 1], [2, 3]] -> [[0, 0, 1], [0, 4, 6], [4, 12, 9]]
    X = np.array([[0.0, 1.0], [2.0, 3.0]])[None, None]
    Kmat = np.array([[0.0, 1.0], [2.0, 3.0]])[None, None]
    for name in KERNEL_NAMES:
        y = C.conv_transpose2d(X, Kmat, kernel=name)
        np.testing.assert_array_equal(y.numpy()[0, 0], [[0, 0, 1], [0, 4, 6], [4, 12, 9]])
        y = C.conv_transpose2d(X, Kmat, stride=2, kernel=name)
        np.testing.assert_array_equal(y.numpy()[0, 0], [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]])


def _conv_transpose_reference(x, w, stride, padding, output_padding, groups, dilation):
    """The definition: every input pixel scatters its kernel-weighted copy into the output."""
    n, c_in, h, w_ = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (w_ - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, og * groups, ho + 2 * ph + sh * 4, wo + 2 * pw + sw * 4))
    cg = c_in // groups
    for c in range(c_in):
        g = c // cg
        for i in range(h):
            for j in range(w_):
                for a in range(kh):
                    for b in range(kw):
                        full[:, g * og:(g + 1) * og, i * sh + a * dh, j * sw + b * dw] += (
                            x[:, c, i, j, None] * w[c, :, a, b])
    return full[:, :, ph:ph + ho, pw:pw + wo]


@settings(deadline=None, max_examples=20)
@given(cfg=conv_transpose_configs(), name=st.sampled_from(KERNEL_NAMES))
def test_conv_transpose2d_matches_the_definition_and_is_the_adjoint(cfg, name):
    rng = np.random.default_rng(cfg.seed)
    x = rng.uniform(-1, 1, cfg.x_shape)
    w = rng.uniform(-1, 1, cfg.w_shape)
    y = C.conv_transpose2d(x, w, None, cfg.stride, cfg.padding, cfg.output_padding, cfg.groups, cfg.dilation,
                           kernel=name).numpy()
    ref = _conv_transpose_reference(x, w, cfg.stride, cfg.padding, cfg.output_padding, cfg.groups, cfg.dilation)
    np.testing.assert_allclose(y, ref, atol=1e-12)
    # <conv_transpose(x), z> = <x, conv2d(z)> (cropped to x's size when output_padding >= stride)
    z = rng.uniform(-1, 1, y.shape)
    cz = C.conv2d(z, w, None, cfg.stride, cfg.padding, cfg.dilation, cfg.groups, kernel=name).numpy()
    cz = cz[:, :, :cfg.h, :cfg.w]
    assert np.isclose(np.vdot(y, z), np.vdot(x, cz), rtol=1e-10, atol=1e-12)


def test_conv_transpose2d_inverts_the_shape_of_conv2d():
    x = tc.randn(2, 3, 15, 16)
    down = Conv2d(3, 4, 3, stride=2, padding=1)
    up = ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    h = down(x)
    assert h.shape == (2, 4, 8, 8)
    assert up(h).shape == (2, 3, 16, 16)
    up0 = ConvTranspose2d(4, 3, 3, stride=2, padding=1)
    assert up0(h).shape == (2, 3, 15, 15)
    assert up.weight.shape == (4, 3, 3, 3)


# ----------------------------------------------------------------------------- bias, dtypes, shapes
def test_bias_gradient_is_summed_over_batch_and_positions():
    rng = np.random.default_rng(2)
    x = t64(rng.standard_normal((3, 2, 5, 6)))
    w = t64(rng.standard_normal((4, 2, 3, 3)))
    b = t64(rng.standard_normal(4))
    y = C.conv2d(x, w, b, padding=1)
    g = rng.standard_normal(y.shape)
    y.backward(tc.tensor(g))
    np.testing.assert_allclose(b.grad.numpy(), g.sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(y.numpy() - C.conv2d(x, w, padding=1).numpy(),
                               np.broadcast_to(b.numpy()[None, :, None, None], y.shape), atol=1e-12)


def test_dtypes():
    x32 = tc.randn(2, 3, 6, 6, requires_grad=True)
    conv = Conv2d(3, 4, 3)
    y = conv(x32)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x32.grad.dtype == np.float32 and conv.weight.grad.dtype == np.float32
    # float64 input with a float32 layer: refused, as PyTorch refuses it; the layer converted, it runs in float64
    x64 = tc.tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)), requires_grad=True)
    with pytest.raises(tc.DTypeError, match=r"Input type \(double\) and weight type \(float\)"):
        conv(x64)
    y = conv.double()(x64)
    assert y.dtype == np.float64
    y.sum().backward()
    assert x64.grad.dtype == np.float64 and conv.weight.grad.dtype == np.float64
    # integer tensors are not convolved (PyTorch: no integer convolution on the CPU)
    with pytest.raises(tc.DTypeError, match="expected a floating-point input"):
        C.conv2d(tc.tensor(np.arange(9).reshape(1, 1, 3, 3)), tc.tensor(np.ones((1, 1, 2, 2), np.int64)))


def test_unbatched_inputs():
    rng = np.random.default_rng(3)
    x = t64(rng.standard_normal((3, 7, 6)))
    w = t64(rng.standard_normal((5, 3, 3, 2)))
    y = C.conv2d(x, w, stride=2, padding=1)
    yb = C.conv2d(x.numpy()[None], w.numpy(), stride=2, padding=1)
    assert y.shape == yb.shape[1:]
    np.testing.assert_allclose(y.numpy(), yb.numpy()[0])
    assert tc.gradcheck(lambda a, b: C.conv2d(a, b, stride=2, padding=1), [x, w])
    wt = t64(rng.standard_normal((3, 2, 2, 2)))
    assert C.conv_transpose2d(x, wt, stride=2).shape == (2, 14, 12)
    assert tc.gradcheck(lambda a, b: C.conv_transpose2d(a, b, stride=2), [x, wt])
    x1 = t64(rng.standard_normal((3, 9)))
    w1 = t64(rng.standard_normal((4, 3, 3)))
    assert C.conv1d(x1, w1).shape == (4, 7)
    with pytest.raises(ValueError, match=r"conv2d: expected a 3-D \(unbatched \(C, H, W\)\) or 4-D"):
        C.conv2d(tc.randn(2, 2, 3, 6, 6), w)
    with pytest.raises(ValueError, match=r"expected input with 3 channels .* got input of shape "
                                         r"\(2, 7, 6\) \(unbatched\) with 2 channels"):
        C.conv2d(tc.randn(2, 7, 6), w)


def test_conv1d_for_audio_frames():
    """Seed notes §1 exercise: 1-D convolution over frames of 39-dim MFCC features."""
    rng = np.random.default_rng(4)
    frames = tc.tensor(rng.standard_normal((2, 39, 50)).astype(np.float32))
    layer = Conv1d(39, 16, kernel_size=5, padding="same")
    y = layer(frames)
    assert y.shape == (2, 16, 50) and y.dtype == np.float32
    ref = np.zeros((2, 16, 50))
    xp = np.pad(frames.numpy().astype(np.float64), ((0, 0), (0, 0), (2, 2)))
    for t in range(50):
        ref[:, :, t] = np.einsum("nck,ock->no", xp[:, :, t:t + 5], layer.weight.numpy()) + layer.bias.numpy()
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)
    assert repr(layer) == "Conv1d(39, 16, kernel_size=(5,), stride=(1,), padding='same')"


# ----------------------------------------------------------------------------- layers
def test_conv2d_layer_parameters_and_init():
    tc.manual_seed(0)
    layer = Conv2d(6, 16, 5)
    assert layer.weight.shape == (16, 6, 5, 5) and layer.bias.shape == (16,)
    assert layer.weight.dtype == np.float32
    bound = 1 / np.sqrt(6 * 25)      # kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.weight.numpy()).max() > 0.8 * bound
    assert np.abs(layer.bias.numpy()).max() <= bound
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert repr(layer) == "Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))"
    assert repr(Conv2d(1, 6, 5, padding=2)) == "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"
    grouped = Conv2d(4, 8, (3, 2), stride=(2, 1), groups=2, bias=False, kernel="im2col")
    assert grouped.weight.shape == (8, 2, 3, 2) and grouped.bias is None
    assert grouped.kernel == "im2col"
    assert "groups=2" in repr(grouped) and "bias=False" in repr(grouped)
    tc.manual_seed(0)
    again = Conv2d(6, 16, 5)
    np.testing.assert_array_equal(again.weight.numpy(), layer.weight.numpy())
    up = ConvTranspose2d(4, 6, 3, groups=2)
    assert up.weight.shape == (4, 3, 3, 3)
    assert np.abs(up.weight.numpy()).max() <= 1 / np.sqrt(3 * 9)   # PyTorch: fan_in from weight.shape[1]


@pytest.mark.parametrize("make,message", [
    (lambda: Conv2d(0, 6, 5), r"in_channels must be a positive integer, got 0"),
    (lambda: Conv2d(6, 16, 5, groups=4), r"in_channels=6 must be divisible by groups=4"),
    (lambda: Conv2d(4, 6, 5, groups=4), r"out_channels=6 must be divisible by groups=4"),
    (lambda: Conv2d(1, 1, 3, stride=2, padding="same"), r"padding='same' is not supported for strided"),
    (lambda: Conv2d(1, 1, 3, padding="full"), r"unknown padding 'full'"),
    (lambda: Conv2d(1, 1, 0), r"kernel_size must be positive"),
    (lambda: Conv2d(1, 1, 3, kernel="fastest"), r"unknown conv kernel 'fastest'; valid kernels: "
                                                r"'direct', 'im2col', 'numba'"),
    (lambda: ConvTranspose2d(1, 1, 3, stride=2, output_padding=2), r"output_padding must be smaller than "
                                                                   r"either stride or dilation"),
    (lambda: Conv1d(1, 1, 3, padding=-1), r"padding must be a non-negative int"),
])
def test_layer_construction_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_errors_change_nothing():
    rng = np.random.default_rng(5)
    x = tc.tensor(rng.standard_normal((2, 3, 8, 8)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = tc.tensor(rng.standard_normal(4), requires_grad=True)
    x0, w0, b0 = x.numpy().copy(), w.numpy().copy(), b.numpy().copy()
    bad_calls = [
        (lambda: C.conv2d(x, w, b, stride=0), r"stride must be positive"),
        (lambda: C.conv2d(x, w, b, padding=-2), r"padding must be non-negative"),
        (lambda: C.conv2d(x, w, b, groups=2), r"groups=2 must divide the number of input channels 3"),
        (lambda: C.conv2d(x, w[:, :2], b), r"expected input with 2 channels"),
        (lambda: C.conv2d(x, w, b[:3]), r"bias must have shape \(4,\)"),
        (lambda: C.conv2d(x, w, b, padding="same", stride=2), r"padding='same' is not supported"),
        (lambda: C.conv2d(x[:, :, :2, :2], w, b), r"larger than the padded input"),
        (lambda: C.conv2d(x, w, b, kernel="foo"), r"unknown conv kernel 'foo'"),
        (lambda: C.conv_transpose2d(x, w.permute(1, 0, 2, 3), None, stride=1, output_padding=1),
         r"output_padding must be smaller"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            call()
    np.testing.assert_array_equal(x.numpy(), x0)
    np.testing.assert_array_equal(w.numpy(), w0)
    np.testing.assert_array_equal(b.numpy(), b0)
    assert x.grad is None and w.grad is None and b.grad is None


# ----------------------------------------------------------------------------- kernel selection
class _Spy:
    """Counts calls of one backend's conv methods (monkeypatched in place)."""

    def __init__(self, monkeypatch, module):
        self.calls = []
        for fn in ("forward", "grad_input", "grad_weight"):
            real = getattr(module, fn)

            def wrapper(*a, _real=real, _fn=fn, **kw):
                self.calls.append(_fn)
                return _real(*a, **kw)

            monkeypatch.setattr(module, fn, wrapper)


def test_first_layer_does_not_compute_the_input_gradient(monkeypatch):
    spy = _Spy(monkeypatch, K.KERNELS["direct"])
    layer = Conv2d(1, 2, 3, kernel="direct")
    x = tc.randn(2, 1, 6, 6)                     # images: no gradient wanted
    layer(x).sum().backward()
    assert spy.calls == ["forward", "grad_weight"]
    spy.calls.clear()
    x.requires_grad_(True)
    layer.weight.requires_grad_(False)
    layer.bias.requires_grad_(False)
    layer(x).sum().backward()
    assert spy.calls == ["forward", "grad_input"]
    spy.calls.clear()
    with tc.no_grad():
        layer(x)
    assert spy.calls == ["forward"]


def test_every_selection_mechanism(monkeypatch, restore_default):
    spies = {name: _Spy(monkeypatch, K.KERNELS[name]) for name in KERNEL_NAMES}

    def used():
        out = {name: len(s.calls) for name, s in spies.items() if s.calls}
        for s in spies.values():
            s.calls.clear()
        return out

    x = tc.randn(2, 2, 6, 6, requires_grad=True)
    w = tc.randn(3, 2, 3, 3, requires_grad=True)
    C.conv2d(x, w, kernel="im2col").sum().backward()
    assert used() == {"im2col": 3}
    Conv2d(2, 3, 3, kernel="direct")(x).sum().backward()
    assert used() == {"direct": 3}
    with tc.use_kernel("im2col") if hasattr(tc, "use_kernel") else K.use_kernel("im2col"):
        y = C.conv2d(x, w)
        assert y.grad_fn.name() == "Conv2dBackward(kernel=im2col)"
    y.sum().backward()            # backward outside the block still uses the kernel chosen at forward time
    assert used() == {"im2col": 3}
    K.set_default_kernel("direct")
    C.conv2d(x, w).sum().backward()
    assert used() == {"direct": 3}
    with K.use_kernel("numba"):
        C.conv2d(x, w, kernel="direct")              # an explicit kernel beats the block
        assert used() == {"direct": 1}
        Conv2d(2, 3, 3, kernel="im2col")(x)
        assert used() == {"im2col": 1}
        C.conv2d(x, w)
        assert used() == {"numba": 1}
    K.set_default_kernel("auto")
    y = C.conv2d(x, w)
    expected = "im2col" if not K.jit_enabled() else "numba"
    assert y.grad_fn.name() == f"Conv2dBackward(kernel={expected})"
    with pytest.raises(ValueError, match=r"unknown conv kernel 'foo'; valid kernels: 'direct', 'im2col', "
                                         r"'numba'"):
        C.conv2d(x, w, kernel="foo")


def test_kernels_give_the_same_layer_results():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    results = []
    for name in KERNEL_NAMES + ["auto"]:
        tc.manual_seed(0)
        layer = Conv2d(4, 6, 3, padding=1, groups=2, kernel=name)
        xt = tc.tensor(x, requires_grad=True)
        y = layer(xt)
        y.backward(tc.tensor(np.ones(y.shape, np.float32)))
        results.append((y.numpy(), xt.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy()))
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("TINYCONV_KERNEL", "TINYCONV_POOL_KERNEL")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          cwd=str(ROOT), timeout=300)


def test_env_var_kernel_in_a_subprocess():
    code = ("import tinyconv as tc; from tinyconv import functional as C; "
            "y = C.conv2d(tc.randn(1, 1, 5, 5, requires_grad=True), tc.randn(1, 1, 3, 3)); "
            "print(y.grad_fn.name())")
    r = _run(code, TINYCONV_KERNEL="im2col")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Conv2dBackward(kernel=im2col)"
    r = _run("import tinyconv as tc; print(tc.get_default_kernel())", TINYCONV_KERNEL="gpu")
    assert r.returncode == 0 and r.stdout.strip() == "auto"  # a typo warns and falls back
    assert "RuntimeWarning: environment variable TINYCONV_KERNEL='gpu' is not a valid conv kernel" in r.stderr


def test_numba_disabled_smoke():
    """NUMBA_DISABLE_JIT=1: a small conv net still runs forward and backward, with every kernel."""
    code = """
import numpy as np
import tinyconv as tc
from tinyconv import functional as C
from tinyconv.nn.conv import Conv2d, MaxPool2d, AvgPool2d
import tinyconv.kernels as K
assert not K.jit_enabled()
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 1, 10, 10)).astype(np.float32)
grads = []
for name in ("numba", "numba-plain", "direct", "im2col", "auto"):
    tc.manual_seed(0)
    c1, c2 = Conv2d(1, 3, 3, padding=1, kernel=name), Conv2d(3, 4, 3, kernel=name)
    pool = MaxPool2d(2, kernel="numba" if name == "numba" else None)
    xt = tc.tensor(x, requires_grad=True)
    y = AvgPool2d(2)(c2(pool(c1(xt)).relu()))
    y.sum().backward()
    grads.append((y.numpy(), xt.grad.numpy(), c1.weight.grad.numpy(), c2.weight.grad.numpy()))
for g in grads[1:]:
    for a, b in zip(g, grads[0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
print("ok")
"""
    r = _run(code, NUMBA_DISABLE_JIT="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
