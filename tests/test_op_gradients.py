"""Every differentiable tensor op, checked against central differences in float64 on hypothesis-drawn shapes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import functional as F

from strategies import arrays, broadcastable_pairs, dims_for, distinct_values, leaf, nonscalar_shapes, shapes


def check(fn, *inputs, **kw):
    assert tc.gradcheck(fn, list(inputs), **kw)


# ---------------------------------------------------------------------------------------------- binary ops
@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a * b,
        lambda a, b: a / b,
        lambda a, b: a.abs() ** b,
    ],
    ids=["add", "sub", "mul", "div", "pow"],
)
@given(data=st.data())
def test_binary_ops_with_broadcasting(op, data):
    sa, sb = data.draw(broadcastable_pairs())
    a = data.draw(leaf(sa, away_from_zero=True))
    b = data.draw(leaf(sb, away_from_zero=True))
    out = op(a, b)
    assert out.shape == np.broadcast_shapes(sa, sb)
    check(op, a, b)


@given(data=st.data())
def test_scalar_operands_on_both_sides(data):
    x = data.draw(leaf(data.draw(shapes), away_from_zero=True))
    check(lambda t: 2.0 - t * 3.0 + 1.5 / t - t / 4.0 + t ** 2 + 2.0 ** t, x)


@given(data=st.data())
def test_neg(data):
    check(lambda t: -t, data.draw(leaf(data.draw(shapes))))


@given(data=st.data())
def test_matmul_all_rank_combinations(data):
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    batch_a, batch_b = data.draw(broadcastable_pairs())  # suffixes of broadcastable shapes still broadcast
    kind_a, kind_b = (data.draw(st.sampled_from(["vector", "matrix", "batched"])) for _ in range(2))
    sa = (k,) if kind_a == "vector" else (batch_a[-2:] if kind_a == "batched" else ()) + (m, k)
    sb = (k,) if kind_b == "vector" else (batch_b[-2:] if kind_b == "batched" else ()) + (k, n)
    a, b = data.draw(leaf(sa)), data.draw(leaf(sb))
    out = a @ b
    np.testing.assert_allclose(out.numpy(), np.matmul(a.numpy(), b.numpy()))
    check(lambda x, y: x @ y, a, b)


# ---------------------------------------------------------------------------------------------- elementwise
@pytest.mark.parametrize(
    "op,kw",
    [
        (lambda t: t.exp(), {}),
        (lambda t: t.abs().log(), {"away_from_zero": True}),
        (lambda t: t.abs().log1p(), {}),
        (lambda t: t.abs().sqrt(), {"away_from_zero": True}),
        (lambda t: t.abs(), {"away_from_zero": True}),
        (lambda t: t.clamp(-0.75, 0.8), {}),
        (lambda t: t.clamp(min=0.1), {}),
        (lambda t: t.clamp(max=-0.2), {}),
        (F.relu, {"away_from_zero": True}),
        (lambda t: F.leaky_relu(t, 0.2), {"away_from_zero": True}),
        (F.sigmoid, {}),
        (F.tanh, {}),
        (lambda t: t.float().double(), {"check": {"eps": 1e-2, "rtol": 1e-2}}),
    ],
    ids=["exp", "log", "log1p", "sqrt", "abs", "clamp", "clamp_min", "clamp_max", "relu", "leaky_relu", "sigmoid",
         "tanh", "cast"],
)
@given(data=st.data())
def test_elementwise(op, kw, data):
    kw = dict(kw)
    check_kw = kw.pop("check", {})  # the float32 round trip needs a step float32 can resolve
    x = data.draw(leaf(data.draw(shapes), **kw))
    # Keep inputs away from the clamp bounds, where the derivative jumps.
    for bound in (-0.75, 0.8, 0.1, -0.2):
        x.numpy()[np.abs(x.numpy() - bound) < 1e-3] += 0.01
    check(op, x, **check_kw)


def test_cast_gradient_goes_back_in_input_dtype():
    x = tc.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    x.float().sum().backward()
    assert x.grad.dtype == np.float64


@given(data=st.data())
def test_where(data):
    sa, sb = data.draw(broadcastable_pairs())
    a, b = data.draw(leaf(sa)), data.draw(leaf(sb))
    cond = data.draw(arrays(np.broadcast_shapes(sa, sb))) > 0
    check(lambda x, y: tc.where(cond, x, y), a, b)


# ---------------------------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "max", "min"])
@given(data=st.data())
def test_reductions(name, data):
    shape = data.draw(shapes)
    x = data.draw(distinct_values(shape)) if name in ("amax", "amin", "max", "min") else data.draw(leaf(shape))
    dim = data.draw(dims_for(len(shape)))
    if name in ("max", "min") and isinstance(dim, tuple):
        dim = dim[0]  # max(dim)/min(dim) take one dim and give (values, indices), as in PyTorch
    keepdim = data.draw(st.booleans())

    def reduce(t):
        out = getattr(t, name)(dim=dim, keepdim=keepdim)
        return out.values if name in ("max", "min") and dim is not None else out

    reference = {"sum": np.sum, "mean": np.mean, "amax": np.amax, "max": np.amax, "amin": np.amin, "min": np.amin}
    np.testing.assert_allclose(reduce(x).numpy(), reference[name](x.numpy(), axis=dim, keepdims=keepdim))
    check(reduce, x)


def test_amax_shares_gradient_between_ties_like_pytorch():
    x = tc.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True)
    x.amax(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_max_with_dim_returns_values_and_indices_like_pytorch():
    x = tc.tensor([[1.0, 5.0], [7.0, 2.0]])
    values, indices = x.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), [5.0, 7.0])
    assert indices.numpy().tolist() == [1, 0] and indices.dtype == np.int64
    np.testing.assert_array_equal(x.min(dim=0, keepdim=True).values.numpy(), [[1.0, 2.0]])
    np.testing.assert_array_equal(x.min(axis=0, keepdims=True).indices.numpy(), [[0, 1]])
    assert x.max().item() == 7.0


def test_max_with_dim_sends_the_gradient_to_the_chosen_index_only():
    # Unlike amax (which shares it between ties), max(dim).values is a gather at the argmax, as in PyTorch.
    x = tc.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True)
    x.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


# ------------------------------------------------------------------------------------------------ reshaping
@given(data=st.data())
def test_reshape_view_flatten(data):
    shape = data.draw(nonscalar_shapes)
    x = data.draw(leaf(shape))
    n = int(np.prod(shape))
    check(lambda t: t.reshape(n) * t.view(-1), x)
    start = data.draw(st.integers(0, len(shape) - 1))
    end = data.draw(st.integers(start, len(shape) - 1))
    out = x.flatten(start, end)
    assert out.shape == shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
    check(lambda t: t.flatten(start, end) ** 2, x)


@given(data=st.data())
def test_permute_and_transpose(data):
    shape = data.draw(nonscalar_shapes)
    x = data.draw(leaf(shape))
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    assert x.permute(perm).shape == tuple(shape[p] for p in perm)
    d0, d1 = data.draw(st.integers(0, len(shape) - 1)), data.draw(st.integers(-len(shape), -1))
    check(lambda t: t.permute(perm) * 2, x)
    check(lambda t: t.transpose(d0, d1).exp(), x)


@given(data=st.data())
def test_squeeze_unsqueeze(data):
    shape = data.draw(shapes)
    x = data.draw(leaf(shape))
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    assert x.unsqueeze(dim).shape == np.expand_dims(x.numpy(), dim).shape
    assert x.squeeze().shape == np.squeeze(x.numpy()).shape
    check(lambda t: t.unsqueeze(dim).squeeze() * 3, x)


@given(data=st.data())
def test_basic_indexing(data):
    shape = data.draw(nonscalar_shapes)
    x = data.draw(leaf(shape))
    index = tuple(
        data.draw(st.one_of(st.integers(-n, n - 1),
                            st.slices(n).filter(lambda s, n=n: len(range(*s.indices(n))) > 0)))
        for n in shape
    )
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    check(lambda t: t[index] * 2, x)


@given(data=st.data())
def test_integer_array_indexing_accumulates_repeats(data):
    shape = data.draw(nonscalar_shapes)
    x = data.draw(leaf(shape))
    idx = np.array(data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    check(lambda t: t[idx] ** 2, x)
    x.grad = None
    x[idx].sum().backward()
    counts = np.bincount(idx, minlength=shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(counts, shape))


def test_boolean_mask_and_tensor_index():
    x = tc.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, dtype="float64")
    mask = x > 2
    y = x[mask]
    np.testing.assert_array_equal(y.numpy(), [3.0, 4.0, 5.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 0], [1, 1, 1]])
    rows = tc.tensor(np.array([1, 1, 0]))
    assert tc.gradcheck(lambda t: t[rows, :2], [x])


@given(data=st.data())
def test_cat_and_stack(data):
    shape = data.draw(nonscalar_shapes)
    dim = data.draw(st.integers(0, len(shape) - 1))
    other = list(shape)
    other[dim] = data.draw(st.integers(1, 3))
    a, b, c = data.draw(leaf(shape)), data.draw(leaf(tuple(other))), data.draw(leaf(shape))
    assert tc.cat([a, b], dim).shape == np.concatenate([a.numpy(), b.numpy()], dim).shape
    check(lambda x, y: tc.cat([x, y, x], dim), a, b)
    sdim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check(lambda x, y: tc.stack([x, y], sdim) * 2, a, c)


# ---------------------------------------------------------------------------------------------- functional
@given(data=st.data())
def test_softmax_and_log_softmax(data):
    shape = data.draw(nonscalar_shapes)
    x = data.draw(leaf(shape))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_allclose(F.softmax(x, dim).numpy().sum(axis=dim), 1.0)
    check(lambda t: F.softmax(t, dim), x)
    check(lambda t: F.log_softmax(t, dim), x)


def test_softmax_is_stable_for_huge_logits():
    x = tc.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True, dtype="float64")
    np.testing.assert_allclose(F.softmax(x, 1).numpy(), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(F.log_softmax(x, 1).numpy(), [[0.0, -1000.0, -2000.0]])
    assert np.isfinite(F.cross_entropy(x, [2]).item())
    assert np.all(np.isfinite(F.sigmoid(tc.tensor([-1000.0, 1000.0])).numpy()))


@given(data=st.data())
def test_linear(data):
    n_in, n_out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2))
    x = data.draw(leaf(tuple(lead) + (n_in,)))
    w, b = data.draw(leaf((n_out, n_in))), data.draw(leaf((n_out,)))
    np.testing.assert_allclose(F.linear(x, w, b).numpy(), x.numpy() @ w.numpy().T + b.numpy())
    check(F.linear, x, w, b)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@given(data=st.data())
def test_cross_entropy_and_nll(reduction, smoothing, weighted, data):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 5))
    logits = data.draw(leaf((n, c)))
    target = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    weight = tc.tensor(data.draw(arrays((c,), low=0.5, high=2.0))) if weighted else None
    fn = lambda t: F.cross_entropy(t, target, weight=weight, reduction=reduction, label_smoothing=smoothing)  # noqa
    # Reference straight from the definition.
    logp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    w = np.ones(c) if weight is None else weight.numpy().astype(np.float64)
    dist = (1 - smoothing) * np.eye(c)[target] + smoothing / c
    per_sample_nll = -logp[np.arange(n), target] * w[target]
    per_sample_smooth = -(logp * w).sum(1) / c
    per = (1 - smoothing) * per_sample_nll + smoothing * per_sample_smooth
    expected = {"none": per, "sum": per.sum(),
                "mean": ((1 - smoothing) * per_sample_nll.sum() + smoothing * per_sample_smooth.sum()) / w[target].sum()}
    if weight is None:
        np.testing.assert_allclose(per, -(dist * logp).sum(1))
    np.testing.assert_allclose(fn(logits).numpy(), expected[reduction], rtol=1e-12)
    check(fn, logits)
    check(lambda t: F.nll_loss(F.log_softmax(t, 1), target, weight=weight, reduction=reduction), logits)


def test_cross_entropy_accepts_tensor_targets_and_spatial_inputs():
    rng = np.random.default_rng(0)
    logits = tc.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True, dtype="float64")
    target = tc.tensor(rng.integers(0, 3, size=(2, 2, 2)))
    assert target.dtype == np.int64
    check(lambda t: F.cross_entropy(t, target), logits)
    flat = F.cross_entropy(logits.permute(0, 2, 3, 1).reshape(-1, 3), target.numpy().reshape(-1))
    np.testing.assert_allclose(F.cross_entropy(logits, target).numpy(), flat.numpy())


@given(data=st.data())
def test_mse_loss(data):
    shape = data.draw(shapes)
    a, b = data.draw(leaf(shape)), data.draw(leaf(shape))
    np.testing.assert_allclose(F.mse_loss(a, b).numpy(), np.mean((a.numpy() - b.numpy()) ** 2))
    for reduction in ("mean", "sum", "none"):
        check(lambda x, y: F.mse_loss(x, y, reduction=reduction), a, b)  # noqa: B023 (called at once)


def test_dropout_scales_and_is_reproducible():
    x = tc.ones(1000, 10, dtype="float64", requires_grad=True)
    tc.manual_seed(3)
    y = F.dropout(x, 0.25)
    kept = y.numpy() != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75)
    tc.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.25).numpy(), y.numpy())
    assert F.dropout(x, 0.25, training=False) is x


# ------------------------------------------------------------------------------ one-node Linear and NllLoss
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("needs", ["all", "input only", "weight only"])
def test_linear_is_one_node_on_its_three_inputs(bias, needs):
    rng = np.random.default_rng(1)
    x = tc.tensor(rng.standard_normal((3, 2, 5)), requires_grad=needs != "weight only")
    w = tc.tensor(rng.standard_normal((4, 5)), requires_grad=needs != "input only")
    b = tc.tensor(rng.standard_normal(4), requires_grad=needs == "all") if bias else None
    out = F.linear(x, w, b)
    assert out.grad_fn.name() == "LinearBackward"
    assert [t for _, t in out.grad_fn.next_functions] == [x, w, b]  # the weight itself, not a transpose of it
    g = rng.standard_normal((3, 2, 4))
    out.backward(tc.tensor(g))
    g2, x2 = g.reshape(-1, 4), x.numpy().reshape(-1, 5)
    if x.requires_grad:
        np.testing.assert_allclose(x.grad.numpy(), (g2 @ w.numpy()).reshape(3, 2, 5), rtol=1e-12)
    if w.requires_grad:
        assert w.grad.numpy().flags.c_contiguous
        np.testing.assert_allclose(w.grad.numpy(), g2.T @ x2, rtol=1e-12)
    if b is not None and b.requires_grad:
        np.testing.assert_allclose(b.grad.numpy(), g2.sum(0), rtol=1e-12)
    check(lambda t: F.linear(t, w.detach(), None if b is None else b.detach()), x.detach().requires_grad_())


def test_linear_of_a_vector_and_a_weight_changed_before_backward():
    x = tc.tensor(np.arange(3.0), requires_grad=True)
    w = tc.tensor(np.ones((2, 3)), requires_grad=True)
    check(lambda t, v: F.linear(t, v), x, w)
    out = F.linear(x, w).sum()
    with tc.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_node_on_spatial_and_unbatched_scores(reduction, weighted):
    rng = np.random.default_rng(2)
    weight = tc.tensor(rng.uniform(0.5, 2.0, 3)) if weighted else None
    w = np.ones(3) if weight is None else weight.numpy()
    for shape, target in (((2, 3, 2, 2), rng.integers(0, 3, (2, 2, 2))), ((3,), np.array(2))):
        logp = tc.tensor(rng.standard_normal(shape), requires_grad=True)
        loss = F.nll_loss(logp, target, weight=weight, reduction=reduction)
        assert loss.grad_fn.name() == "NllLossBackward"
        picked = (np.take_along_axis(logp.numpy(), np.expand_dims(target, 1), 1).squeeze(1) if len(shape) > 1
                  else logp.numpy()[target])
        per = -picked * w[target]
        expected = {"none": per, "sum": per.sum(), "mean": per.sum() / w[target].sum()}[reduction]
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)
        check(lambda t: F.nll_loss(t, target, weight=weight, reduction=reduction), logp)  # noqa: B023


def test_cross_entropy_is_log_softmax_then_nll_loss_as_in_pytorch():
    logits = tc.tensor(np.random.default_rng(3).standard_normal((4, 3)), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([0, 2, 1, 0]))
    assert loss.grad_fn.name() == "NllLossBackward"
    (inner, _), = [(fn, t) for fn, t in loss.grad_fn.next_functions if fn is not None]
    assert inner.name() == "LogSoftmaxBackward" and inner.next_functions[0][1] is logits


@pytest.mark.parametrize("x_shape,w_shape", [((4, 0), (3, 0)), ((4, 5), (0, 5)), ((0,), (2, 0)), ((0, 5), (3, 5))])
def test_linear_with_no_features_or_no_rows(x_shape, w_shape):
    """As PyTorch: no input features give the bias and zero gradients; no outputs or no rows, empty results."""
    x, w = tc.ones(*x_shape, requires_grad=True), tc.ones(*w_shape, requires_grad=True)
    b = tc.ones(w_shape[0], requires_grad=True)
    out = F.linear(x, w, b)
    assert out.shape == x_shape[:-1] + (w_shape[0],)
    np.testing.assert_array_equal(out.numpy(), np.ones(out.shape))
    out.sum().backward()
    assert x.grad.shape == x_shape and w.grad.shape == w_shape
    assert not x.grad.numpy().any() and not w.grad.numpy().any()
    np.testing.assert_array_equal(b.grad.numpy(), np.full(w_shape[0], float(np.prod(x_shape[:-1]))))


def test_nll_loss_wants_floating_point_and_keeps_the_targets_of_its_forward():
    with pytest.raises(TypeError, match="nll_loss: input must be floating point log-probabilities, got dtype int64"):
        F.nll_loss(tc.tensor(np.array([[1, 0], [2, 0]])), [0, 0])
    logp = tc.tensor(np.log(np.full((2, 3), 1 / 3)), requires_grad=True)
    target = np.array([0, 2])
    loss = F.nll_loss(logp, target, reduction="sum")
    target[:] = 1  # the caller's array changes after forward: the gradient is still that of the forward's targets
    loss.backward()
    np.testing.assert_array_equal(logp.grad.numpy(), [[-1, 0, 0], [0, 0, -1]])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@given(data=st.data())
def test_cross_entropy_ignores_the_targets_it_is_told_to(reduction, smoothing, weighted, data):
    n, c = data.draw(st.integers(2, 5)), data.draw(st.integers(2, 5))
    ignore = data.draw(st.sampled_from([-100, 0, c]))
    logits = data.draw(leaf((n, c)))
    target = np.array(data.draw(st.lists(st.integers(0, c - 1) | st.just(ignore), min_size=n, max_size=n)))
    weight = tc.tensor(data.draw(arrays((c,), low=0.5, high=2.0))) if weighted else None
    fn = lambda t: F.cross_entropy(t, target, weight=weight, reduction=reduction, label_smoothing=smoothing,  # noqa
                                   ignore_index=ignore)
    logp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    w = np.ones(c) if weight is None else weight.numpy().astype(np.float64)
    keep = target != ignore
    safe = np.where(keep, target, 0)
    per_nll = np.where(keep, -logp[np.arange(n), safe] * w[safe], 0.0)
    per_smooth = np.where(keep, -(logp * w).sum(1) / c, 0.0)
    per = (1 - smoothing) * per_nll + smoothing * per_smooth
    divisor = (w[safe] * keep).sum()
    expected = {"none": per, "sum": per.sum(), "mean": per.sum() / divisor if divisor else np.nan}[reduction]
    np.testing.assert_allclose(fn(logits).numpy(), expected, rtol=1e-12)
    if reduction != "mean" or keep.any():
        check(fn, logits)
    loss = fn(logits)
    g = np.ones(loss.shape)
    loss.backward(tc.tensor(g))
    assert not logits.grad.numpy()[~keep].any()  # an ignored sample's scores get no gradient, even from a NaN mean


def test_ignore_index_is_checked_and_reaches_the_modules():
    x = tc.tensor(np.zeros((2, 3)))
    with pytest.raises(IndexError, match="target 5 is out of bounds for 3 classes"):
        F.cross_entropy(x, np.array([5, -100]))  # only the ignored value may be out of range
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        F.nll_loss(x, np.array([0, 1]), ignore_index=True)
    with pytest.raises(TypeError, match="ignore_index must be an int, got 1.5"):
        F.cross_entropy(x, np.array([0, 1]), ignore_index=1.5)
    probabilities = np.full((2, 3), 1 / 3)  # as PyTorch: no class to ignore, but a negative value passes
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        F.cross_entropy(x, probabilities, ignore_index=0)
    assert F.cross_entropy(x, probabilities, ignore_index=-1).item() == F.cross_entropy(x, probabilities).item()
    for index in (np.int32(2), np.array(2), tc.tensor(2)):  # anything with __index__, as PyTorch
        assert F.nll_loss(x - 1.0, np.array([2, 0]), ignore_index=index).item() == 1.0
    assert F.nll_loss(x - 1.0, np.array([2, -100])).item() == 1.0
    assert tc.nn.NLLLoss(ignore_index=2)(x - 1.0, np.array([2, 0])).item() == 1.0
    scores = tc.tensor(np.array([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]]))
    assert tc.nn.CrossEntropyLoss(ignore_index=0)(scores, np.array([1, 0])).item() == pytest.approx(
        F.cross_entropy(scores[:1], np.array([1])).item())
