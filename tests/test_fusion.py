"""Conv2d + ReLU + MaxPool2d fused into one node (tinyconv.functions.fused, F.conv2d_relu_max_pool2d, and
nn.Sequential's use of it), tested against the unfused layers it replaces: the reference.

The fused node claims the unfused results bit for bit (forward values, NaN propagation and all three gradients), so
most comparisons here are exact (``np.array_equal``); the gradients are also checked against central differences in
float64.
"""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import kernels, nn
from tinyconv.functions.fused import Conv2dReluMaxPool2d
from tinyconv.graph import format_graph, graph_nodes
from tinyconv.kernels import shapes

from strategies_conv import conv_configs


@pytest.fixture
def fusion_on():
    previous = nn.set_fusion(True)
    yield
    nn.set_fusion(previous)


def _fused_nodes(t):
    return [n for n in graph_nodes(t) if isinstance(n, Conv2dReluMaxPool2d)]


def _run(fn, x, w, b, g):
    """fn's output and the gradients of (x, w, b) for the upstream gradient g."""
    xt, wt = tc.tensor(x, requires_grad=True), tc.tensor(w, requires_grad=True)
    bt = tc.tensor(b, requires_grad=True)
    out = fn(xt, wt, bt)
    out.backward(tc.tensor(g))
    return out.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


pool_windows = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.booleans())


@given(cfg=conv_configs(max_batch=5, max_group_channels=3), pool=pool_windows,
       kernel=st.sampled_from(sorted(kernels.available()) + ["auto"]), pool_kernel=st.sampled_from(["numpy", "numba"]),
       dtype=st.sampled_from([np.float32, np.float64]), nans=st.booleans())
def test_fused_equals_relu_then_max_pool_of_conv_bit_for_bit(cfg, pool, kernel, pool_kernel, dtype, nans):
    pk, ps, pstride_w, pd, ceil = pool
    try:
        pool_args = shapes.normalize_pool_args(cfg.out_shape, pk, (ps, pstride_w), 0, pd, ceil)
    except ValueError:
        assume(False)
    x, w, _ = cfg.arrays(dtype)
    rng = np.random.default_rng(cfg.seed + 1)
    b = rng.uniform(-1, 1, cfg.c_out).astype(dtype)
    if nans:  # NaN propagates through both paths alike (max pool keeps the window's last NaN)
        x.flat[rng.integers(0, x.size, 2)] = np.nan
    g = rng.uniform(-1, 1, pool_args.out_shape).astype(dtype)
    conv_kw = dict(stride=cfg.stride, padding=cfg.padding_arg, dilation=cfg.dilation, groups=cfg.groups)
    pool_kw = dict(kernel_size=pk, stride=(ps, pstride_w), dilation=pd, ceil_mode=ceil)

    def unfused(xt, wt, bt):
        y = F.relu(F.conv2d(xt, wt, bt, kernel=kernel, **conv_kw))
        return F.max_pool2d(y, kernel=pool_kernel, **pool_kw)

    def fused(xt, wt, bt):
        return F.conv2d_relu_max_pool2d(xt, wt, bt, **conv_kw, pool_kernel_size=pk, pool_stride=(ps, pstride_w),
                                        pool_dilation=pd, pool_ceil_mode=ceil, kernel=kernel,
                                        pool_kernel=pool_kernel)

    want, got = _run(unfused, x, w, b, g), _run(fused, x, w, b, g)
    for name, a, e in zip(("output", "grad x", "grad w", "grad b"), got, want):
        assert a.dtype == e.dtype == dtype, name
        assert np.array_equal(a, e, equal_nan=True), name


@given(cfg=conv_configs(max_batch=4, max_group_channels=2, max_size=7), pool_kernel=st.integers(1, 2),
       kernel=st.sampled_from(["numba", "im2col", "direct"]))
def test_fused_gradients_match_central_differences_in_float64(cfg, pool_kernel, kernel):
    try:
        shapes.normalize_pool_args(cfg.out_shape, pool_kernel, None, 0, 1, False)
    except ValueError:
        assume(False)
    x, w, _ = cfg.arrays(np.float64)
    b = np.random.default_rng(cfg.seed).uniform(-1, 1, cfg.c_out)
    inputs = [tc.tensor(a, requires_grad=True) for a in (x, w, b)]

    def fn(xt, wt, bt):
        return F.conv2d_relu_max_pool2d(xt, wt, bt, cfg.stride, cfg.padding_arg, cfg.dilation, cfg.groups,
                                        pool_kernel_size=pool_kernel, kernel=kernel)

    assert tc.gradcheck(fn, inputs, names=["x", "weight", "bias"])


def _lenet_step(model, x, labels):
    for p in model.parameters():
        p.grad = None
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    return loss, {k: p.grad.numpy().copy() for k, p in model.named_parameters()}


@pytest.mark.parametrize("batch", [5, 1])
def test_lenet_fused_equals_unfused_and_its_graph_shows_the_same_layers(fusion_on, batch):
    tc.manual_seed(0)
    model = nn.models.LeNet()
    x = tc.randn(batch, 1, 28, 28)
    labels = np.arange(batch) % 10
    loss, grads = _lenet_step(model, x, labels)
    assert len(_fused_nodes(loss)) == 2  # conv1/act1/pool1 and conv2/act2/pool2
    names = {**dict(model.named_parameters()), "images": x}
    fused_text = format_graph(loss, names)
    nn.set_fusion(False)
    ref_loss, ref_grads = _lenet_step(model, x, labels)
    assert not _fused_nodes(ref_loss)
    assert loss.item() == ref_loss.item()
    for k in grads:
        assert np.array_equal(grads[k], ref_grads[k]), k
    # the fused graph prints exactly the unfused tree, plus a mark on each fused node
    marker = "  [fused: Conv2dReluMaxPool2dBackward]"
    assert fused_text.count(marker) == 2
    assert fused_text.replace(marker, "") == format_graph(ref_loss, names)
    assert f"ReluBackward -> ({batch}, 6, 28, 28) float32" in fused_text


def test_unbatched_input_and_no_grad_take_the_fused_path_too(fusion_on):
    tc.manual_seed(1)
    model = nn.models.LeNet()[:6]  # the conv part: LeNet's Flatten wants a batch, as in PyTorch
    x = tc.randn(1, 28, 28)
    with tc.no_grad():
        fused = model(x).numpy()
    out = model(x)
    assert len(_fused_nodes(out)) == 2 and out.shape == (16, 5, 5)
    nn.set_fusion(False)
    with tc.no_grad():
        assert np.array_equal(model(x).numpy(), fused)
    assert np.array_equal(out.numpy(), fused)


def test_a_hook_on_any_of_the_three_layers_sees_them_one_by_one(fusion_on):
    tc.manual_seed(2)
    model = nn.models.LeNet()
    x = tc.randn(3, 1, 28, 28)
    labels = np.array([1, 2, 3])
    _, want = _lenet_step(model, x, labels)
    seen = []
    handle = model.act1.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    grads_out = []
    handle2 = model.pool2.register_full_backward_hook(lambda m, gi, go: grads_out.append(go[0].shape))
    loss, got = _lenet_step(model, x, labels)
    assert seen == [(3, 6, 28, 28)] and grads_out == [(3, 16, 5, 5)]
    assert not _fused_nodes(loss)  # each triple has a hooked layer
    for k in want:
        assert np.array_equal(got[k], want[k]), k
    handle.remove()
    handle2.remove()
    loss, _ = _lenet_step(model, x, labels)
    assert len(_fused_nodes(loss)) == 2


def test_what_is_not_fused():
    class MyConv(nn.Conv2d):  # a subclass may compute something else: never replaced
        pass

    conv = nn.Conv2d(1, 2, 3)
    patched = nn.Conv2d(1, 2, 3)
    patched.forward = lambda x: F.conv2d(x, patched.weight)  # no bias: fusing would add it
    x = tc.randn(2, 1, 8, 8, requires_grad=True)
    cases = [
        nn.Sequential(MyConv(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(patched, nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2, padding=1)),      # padding: windows of padding only
        nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(2)),
        nn.Sequential(conv, nn.Sigmoid(), nn.MaxPool2d(2)),
        nn.Sequential(conv, nn.ReLU()),
    ]
    previous = nn.set_fusion(True)
    try:
        for model in cases:
            assert not _fused_nodes(model(x)), model
        nn.set_fusion(False)
        assert not _fused_nodes(nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))(x))
        nn.set_fusion(True)
        assert nn.fusion_enabled()
        assert len(_fused_nodes(nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))(x))) == 1
    finally:
        nn.set_fusion(previous)


def test_bad_input_gives_the_unfused_error_and_leaves_nothing_changed(fusion_on):
    model = nn.models.LeNet()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    messages = []
    for enabled in (True, False):
        nn.set_fusion(enabled)
        with pytest.raises(ValueError) as info:
            model(tc.randn(2, 3, 28, 28))
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "3" in messages[0]
    for k, v in model.state_dict().items():
        assert np.array_equal(v.numpy(), before[k])
    with pytest.raises(ValueError, match=r"max_pool2d \(on the conv2d output of shape \(1, 1, 2, 2\)\)"):
        F.conv2d_relu_max_pool2d(tc.randn(1, 1, 4, 4), tc.randn(1, 1, 3, 3), pool_kernel_size=3)


def test_writing_into_the_fused_output_before_backward_is_refused_like_relu(fusion_on):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    out = model(tc.randn(2, 1, 8, 8, requires_grad=True))
    assert _fused_nodes(out)
    out += 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_the_environment_variable_starts_a_process_with_fusion_off():
    code = "from tinyconv import nn; print(nn.fusion_enabled())"
    for value, want in (("0", "False"), ("off", "False"), ("1", "True"), ("", "True")):
        env = {"TINYCONV_FUSE": value, "PATH": "", "NUMBA_DISABLE_JIT": "1"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == want
