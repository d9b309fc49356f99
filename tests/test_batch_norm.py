"""Batch normalization: functional.batch_norm's hand-derived backward against finite differences and against the
same formula written with primitive ops; running statistics; nn.BatchNorm1d/2d state, modes and errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn


@st.composite
def bn_inputs(draw, max_batch=5):
    """(shape, seed) of a batch-norm input: (N, C) or (N, C, H, W) with at least 2 values per channel."""
    channels = draw(st.integers(1, 5))
    if draw(st.booleans()):
        shape = (draw(st.integers(2, 6)), channels)
    else:
        shape = (draw(st.integers(1, max_batch)), channels, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        if shape[0] * shape[2] * shape[3] < 2:
            shape = (2,) + shape[1:]
    return shape


def composite_batch_norm(x, running_mean, running_var, weight, bias, training, eps):
    """The same formula from primitive differentiable ops (mean, sub, mul, sqrt, div): autograd derives it."""
    stat_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        dims = (0,) + tuple(range(2, x.ndim))
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=dims, keepdim=True)
    else:
        centred = x - tc.tensor(running_mean.reshape(stat_shape))
        var = tc.tensor(running_var.reshape(stat_shape))
    y = centred / (var + eps).sqrt()
    if weight is not None:
        y = y * weight.reshape(stat_shape)
    if bias is not None:
        y = y + bias.reshape(stat_shape)
    return y


def make_case(shape, seed, affine):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = tc.tensor(rng.uniform(-2, 2, shape), requires_grad=True, dtype="float64")
    w = tc.tensor(rng.uniform(0.5, 1.5, c), requires_grad=True, dtype="float64") if affine in ("both", "weight") else None
    b = tc.tensor(rng.uniform(-1, 1, c), requires_grad=True, dtype="float64") if affine in ("both", "bias") else None
    rm, rv = rng.uniform(-1, 1, c), rng.uniform(0.5, 2, c)
    return x, w, b, rm, rv


AFFINE = st.sampled_from(["both", "weight", "bias", "none"])


@pytest.fixture(scope="module", params=["numba", "numpy"])
def implementation(request):
    """Run a test with each implementation of the same formulas (compiled passes and vectorised NumPy).
    Module-scoped so that hypothesis may use it; the default (None: numba unless the JIT is off) is restored."""
    from tinyconv.functions.batch_norm import BatchNorm

    BatchNorm.implementation = request.param
    yield request.param
    BatchNorm.implementation = None


@given(shape=bn_inputs(), seed=st.integers(0, 2**32 - 1), training=st.booleans(), affine=AFFINE)
def test_batch_norm_gradcheck(shape, seed, training, affine, implementation):
    x, w, b, rm, rv = make_case(shape, seed, affine)
    inputs = [t for t in (x, w, b) if t is not None]

    def fn(*ts):
        it = iter(ts)
        xx = next(it)
        ww = next(it) if w is not None else None
        bb = next(it) if b is not None else None
        # copies: in training mode every call updates the running statistics it is given
        return F.batch_norm(xx, rm.copy(), rv.copy(), ww, bb, training=training, eps=1e-5)

    assert tc.gradcheck(fn, inputs, atol=1e-6, rtol=1e-4)


@given(shape=bn_inputs(), seed=st.integers(0, 2**32 - 1), training=st.booleans(), affine=AFFINE)
def test_hand_derived_backward_agrees_with_composite_ops(shape, seed, training, affine, implementation):
    x, w, b, rm, rv = make_case(shape, seed, affine)
    x2, w2, b2 = (None if t is None else tc.tensor(t.numpy().copy(), requires_grad=True) for t in (x, w, b))
    y = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
    y2 = composite_batch_norm(x2, rm, rv, w2, b2, training, 1e-5)
    assert y.grad_fn.name() == f"BatchNormBackward(training={training})"  # one node, not a chain
    np.testing.assert_allclose(y.numpy(), y2.numpy(), rtol=1e-10, atol=1e-10)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape)
    y.backward(g)
    y2.backward(g)
    for mine, ref in ((x, x2), (w, w2), (b, b2)):
        if mine is not None:
            np.testing.assert_allclose(mine.grad.numpy(), ref.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_only_requested_gradients_are_computed(implementation):
    x, w, b, rm, rv = make_case((4, 3, 2, 2), 0, "both")
    w.requires_grad_(False)
    y = F.batch_norm(x.detach(), rm, rv, w, b, training=True)  # only the bias needs a gradient
    y.sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), np.full(3, 16.0))
    assert w.grad is None


def test_float32_matches_float64(implementation):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 7, 6, 6)) * 3 + 2
    outs = {}
    for dt in (np.float32, np.float64):
        xt = tc.tensor(x.astype(dt), requires_grad=True)
        w = tc.tensor(np.linspace(0.5, 1.5, 7).astype(dt), requires_grad=True)
        y = F.batch_norm(xt, None, None, w, None, training=True)
        y.backward(np.cos(np.arange(y.numpy().size)).reshape(y.shape).astype(dt))
        assert y.dtype == dt and xt.grad.dtype == dt and w.grad.dtype == dt
        outs[dt] = (y.numpy(), xt.grad.numpy(), w.grad.numpy())
    for a, b in zip(outs[np.float32], outs[np.float64]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------- running statistics
def test_training_updates_running_stats_with_unbiased_variance(implementation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 4, 2))
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, 0.5])
    rm0, rv0 = rm.copy(), rv.copy()
    y = F.batch_norm(tc.tensor(x), rm, rv, training=True, momentum=0.3)
    flat = x.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(rm, 0.7 * rm0 + 0.3 * flat.mean(1), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.7 * rv0 + 0.3 * flat.var(1, ddof=1), rtol=1e-12)
    # ... while the batch itself is normalised with the biased variance
    expected = (x - flat.mean(1)[:, None, None]) / np.sqrt(flat.var(1)[:, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_eval_mode_uses_running_stats_and_leaves_them_alone(implementation):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 5))
    rm, rv = np.array([0.2, -0.4]), np.array([1.5, 0.7])
    w, b = tc.tensor([2.0, 0.5], dtype=tc.float64), tc.tensor([0.1, -0.3], dtype=tc.float64)
    y = F.batch_norm(tc.tensor(x), rm, rv, w, b, training=False, eps=1e-3)
    expected = (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-3) * w.numpy()[:, None] + b.numpy()[:, None]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(rm, [0.2, -0.4])
    np.testing.assert_array_equal(rv, [1.5, 0.7])


def test_functional_errors_name_what_was_expected():
    x = tc.randn(4, 3, 5, 5)
    with pytest.raises(tc.ShapeError, match=r"weight must have shape \(3,\).*got \(4,\)"):
        F.batch_norm(x, None, None, tc.ones(4), training=True)
    with pytest.raises(tc.ShapeError, match=r"running_mean must be .*\(3,\).*shape \(2,\)"):
        F.batch_norm(x, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tc.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="evaluation mode"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(tc.ShapeError, match=r"\(N, C\)"):
        F.batch_norm(tc.randn(3), None, None, training=True)
    with pytest.raises(TypeError, match="momentum must be a number"):
        F.batch_norm(x, None, None, training=True, momentum=None)


# ------------------------------------------------------------------------------------------------- modules
def test_module_state_and_repr_follow_pytorch():
    bn = nn.BatchNorm2d(4)
    assert repr(bn) == "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"].shape == ()
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    plain = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert list(plain.state_dict()) == [] and list(plain.parameters()) == []


def test_module_training_steps_update_buffers_in_place():
    bn = nn.BatchNorm2d(3)
    shared = bn.state_dict()["running_mean"].numpy()  # state_dict tensors share memory with the buffers
    rng = np.random.default_rng(0)
    means = []
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32) + 1
        bn(tc.tensor(x))
        means.append(x.mean(axis=(0, 2, 3)))
    assert int(bn.num_batches_tracked.item()) == 3
    expected = np.zeros(3)
    for m in means:
        expected = 0.9 * expected + 0.1 * m
    np.testing.assert_allclose(shared, expected, rtol=1e-5)
    bn.eval()
    before = bn.running_mean.numpy().copy()
    bn(tc.randn(4, 3, 2, 2))
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)
    assert int(bn.num_batches_tracked.item()) == 3


def test_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal((6, 2)) * (k + 1) for k in range(4)]
    for x in batches:
        bn(tc.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([x.mean(0) for x in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([x.var(0, ddof=1) for x in batches], axis=0),
                               rtol=1e-12)


def test_without_running_stats_eval_still_uses_batch_stats():
    bn = nn.BatchNorm2d(2, track_running_stats=False, affine=False).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4)) * 5 + 3
    y = bn(tc.tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-10)


def test_module_input_checks():
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input"):
        nn.BatchNorm2d(3)(tc.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D"):
        nn.BatchNorm1d(3)(tc.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 1, got input of shape \(2, 5, 4, 4\)"):
        nn.BatchNorm2d(3)(tc.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="positive integer"):
        nn.BatchNorm2d(0)


def test_state_dict_round_trip_through_a_file(tmp_path):
    a, b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    for _ in range(2):
        a(tc.randn(4, 3, 3, 3) * 2 + 1)
    a.weight.numpy()[:] = [1.5, 0.5, 2.0]
    tc.save(a.state_dict(), tmp_path / "bn.npz")
    b.load_state_dict(tc.load(tmp_path / "bn.npz"))
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key].numpy(), value.numpy())
    assert b.num_batches_tracked.dtype == np.int64
    a.eval(), b.eval()
    x = tc.randn(2, 3, 3, 3)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_double_keeps_the_counter_an_integer_and_assigning_a_buffer_keeps_it_a_buffer():
    bn = nn.BatchNorm2d(2).double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    bn.running_mean = tc.tensor([1.0, 2.0], dtype="float64")
    assert "running_mean" in dict(bn.named_buffers())
    np.testing.assert_array_equal(bn.state_dict()["running_mean"].numpy(), [1.0, 2.0])


@pytest.mark.parametrize("training", [True, False])
def test_empty_batch_like_pytorch(training, implementation):
    bn = nn.BatchNorm2d(3).train(training)
    x = tc.randn(0, 3, 4, 4, requires_grad=True)
    y = bn(x)
    assert y.shape == (0, 3, 4, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_array_equal(bn.weight.grad.numpy(), 0)
    np.testing.assert_array_equal(bn.bias.grad.numpy(), 0)
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0)
    np.testing.assert_array_equal(bn.running_var.numpy(), 1)


@pytest.mark.parametrize("training", [True, False])
def test_the_two_implementations_agree_in_float32_with_a_large_mean(training):
    """Centred inputs far from zero (mean 50, std 0.5): both implementations stay accurate in float32."""
    from tinyconv.functions.batch_norm import BatchNorm

    rng = np.random.default_rng(4)
    x = (rng.standard_normal((32, 5, 7, 7)) * 0.5 + 50).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    rm, rv = np.full(5, 50.0, np.float32), np.full(5, 0.25, np.float32)
    results = {}
    for impl in ("numba", "numpy", None):
        BatchNorm.implementation = impl
        try:
            xt = tc.tensor(x, requires_grad=True)
            w = tc.tensor(np.linspace(0.5, 2, 5).astype(np.float32), requires_grad=True)
            b = tc.tensor(np.zeros(5, np.float32), requires_grad=True)
            y = F.batch_norm(xt, rm.copy(), rv.copy(), w, b, training=training)
            y.backward(g)
            results[impl] = (y.numpy(), xt.grad.numpy(), w.grad.numpy(), b.grad.numpy())
        finally:
            BatchNorm.implementation = None
    x64 = tc.tensor(x.astype(np.float64), requires_grad=True)
    w64 = tc.tensor(np.linspace(0.5, 2, 5), requires_grad=True)
    b64 = tc.tensor(np.zeros(5), requires_grad=True)
    y64 = composite_batch_norm(x64, rm, rv, w64, b64, training, 1e-5)
    y64.backward(g.astype(np.float64))
    reference = (y64.numpy(), x64.grad.numpy(), w64.grad.numpy(), b64.grad.numpy())
    for impl, got in results.items():
        for name, a, ref in zip(("y", "dx", "dw", "db"), got, reference):
            scale = np.abs(ref).max()
            np.testing.assert_allclose(a, ref, rtol=0, atol=1e-4 * scale, err_msg=f"{impl} {name}")
