"""An empty batch (N = 0) goes through every op and layer, forward and backward, like PyTorch: output (0, ...),
gradients of the right shape (zeros for parameters, empty for the input), no exception."""
import warnings

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn

CONV_KERNELS = ("direct", "im2col", "numba")
POOL_KERNELS = ("numpy", "numba")

# name -> (input shape without the batch, function of the input)
OPS = {
    "conv2d+bias": ((3, 8, 8), lambda x: F.conv2d(x, tc.randn(5, 3, 3, 3, requires_grad=True),
                                                          tc.randn(5, requires_grad=True), padding=1)),
    "conv2d strided, grouped": ((4, 9, 9), lambda x: F.conv2d(x, tc.randn(6, 2, 3, 3, requires_grad=True),
                                                              tc.randn(6, requires_grad=True), stride=2, groups=2)),
    "conv1d+bias": ((3, 10), lambda x: F.conv1d(x, tc.randn(4, 3, 3, requires_grad=True),
                                                tc.randn(4, requires_grad=True))),
    "conv_transpose2d+bias": ((3, 5, 5), lambda x: F.conv_transpose2d(x, tc.randn(3, 4, 3, 3, requires_grad=True),
                                                                      tc.randn(4, requires_grad=True), stride=2)),
    "max_pool2d": ((2, 8, 8), lambda x: F.max_pool2d(x, 2)),
    "max_pool2d 3/2 ceil": ((2, 7, 7), lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True)),
    "avg_pool2d": ((2, 8, 8), lambda x: F.avg_pool2d(x, 2)),
    "avg_pool2d padded": ((2, 7, 7), lambda x: F.avg_pool2d(x, 3, 2, padding=1)),
    "adaptive_avg_pool2d": ((2, 7, 7), lambda x: F.adaptive_avg_pool2d(x, 3)),
    "linear": ((6,), lambda x: F.linear(x, tc.randn(4, 6, requires_grad=True), tc.randn(4, requires_grad=True))),
    "relu": ((5,), F.relu),
    "leaky_relu": ((5,), F.leaky_relu),
    "sigmoid": ((5,), F.sigmoid),
    "tanh": ((5,), F.tanh),
    "softmax": ((5,), lambda x: F.softmax(x, dim=1)),
    "log_softmax": ((5,), lambda x: F.log_softmax(x, dim=1)),
    "dropout": ((5,), lambda x: F.dropout(x, 0.5, training=True)),
    "flatten": ((2, 3, 3), lambda x: nn.Flatten()(x)),
    "cross_entropy sum": ((10,), lambda x: F.cross_entropy(x, np.zeros(0, dtype=np.int64), reduction="sum")),
    "cross_entropy none": ((10,), lambda x: F.cross_entropy(x, np.zeros(0, dtype=np.int64), reduction="none")),
    "nll_loss sum": ((10,), lambda x: F.nll_loss(x, np.zeros(0, dtype=np.int64), reduction="sum")),
    "mse_loss sum": ((4,), lambda x: F.mse_loss(x, np.zeros((0, 4), dtype=np.float32), reduction="sum")),
    "batch_norm2d train": ((3, 4, 4), lambda x: nn.BatchNorm2d(3)(x)),
    "batch_norm2d eval": ((3, 4, 4), lambda x: nn.BatchNorm2d(3).eval()(x)),
    "batch_norm1d train": ((3,), lambda x: nn.BatchNorm1d(3)(x)),
}


def _leaves(out):
    """Every tensor that requires grad in the graph of ``out`` (the op's weights), found through grad_fn."""
    seen, stack, leaves = set(), [out], []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.grad_fn is None:
            if t.requires_grad:
                leaves.append(t)
            continue
        stack.extend(getattr(t.grad_fn, "inputs", ()) or ())
    return leaves


def _cases():
    for name in sorted(OPS):
        kernels = CONV_KERNELS if name.startswith("conv") else ("direct",)
        pools = POOL_KERNELS if "pool" in name else ("numpy",)
        yield from ((name, k, p) for k in kernels for p in pools)


@pytest.mark.parametrize("name,kernel,pool", list(_cases()))
def test_op_forward_backward_on_an_empty_batch(name, kernel, pool):
    shape, fn = OPS[name]
    tc.manual_seed(0)
    x = tc.randn(0, *shape, requires_grad=True)
    with tc.use_kernel(kernel), tc.use_pool_kernel(pool):
        y = fn(x)
        assert y.shape[:1] == (0,) or y.shape == ()
        loss = y.sum()
        assert float(loss.item()) == 0.0
        loss.backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("kernel", CONV_KERNELS)
def test_conv_weight_and_bias_grads_are_zero_on_an_empty_batch(kernel):
    """The row of the issue: conv with bias on an empty batch, then backward (was a reshape error)."""
    conv = nn.Conv2d(1, 6, 5, padding=2, kernel=kernel)
    y = conv(tc.zeros(0, 1, 28, 28))
    assert y.shape == (0, 6, 28, 28)
    y.sum().backward()
    np.testing.assert_array_equal(conv.weight.grad.data if hasattr(conv.weight.grad, "data") else conv.weight.grad,
                                  np.zeros((6, 1, 5, 5)))
    np.testing.assert_array_equal(conv.bias.grad.data if hasattr(conv.bias.grad, "data") else conv.bias.grad,
                                  np.zeros(6))


@pytest.mark.parametrize("variant", ["modern", "d2l", "resnet"])
def test_lenet_and_every_layer_on_an_empty_batch(variant):
    tc.manual_seed(0)
    model = nn.models.ResNet() if variant == "resnet" else nn.models.LeNet(variant)
    x = tc.zeros(0, 1, 28, 28, requires_grad=True)
    scores = model(x)
    assert scores.shape == (0, 10)
    loss = F.cross_entropy(scores, np.zeros(0, dtype=np.int64), reduction="sum")
    loss.backward()
    for name, p in model.named_parameters():
        g = p.grad.data if hasattr(p.grad, "data") else p.grad
        assert g.shape == p.shape, name
        np.testing.assert_array_equal(g, 0, err_msg=name)
    assert x.grad.shape == (0, 1, 28, 28)
    model.eval()
    with tc.no_grad():
        assert model(tc.zeros(0, 1, 28, 28)).shape == (0, 10)


def test_the_mean_of_nothing_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(float(tc.zeros(0, 3).mean().item()))
        assert np.isnan(tc.zeros(0, 3).mean(dim=0).numpy()).all()


def test_mean_losses_on_an_empty_batch_are_nan_like_pytorch():
    x = tc.zeros(0, 10, requires_grad=True)
    with np.errstate(all="ignore"):
        for loss in (F.cross_entropy(x, np.zeros(0, dtype=np.int64)), F.mse_loss(x, np.zeros((0, 10), np.float32))):
            assert np.isnan(float(loss.item()))
            loss.backward()
            assert x.grad.shape == (0, 10)
            x.grad = None
