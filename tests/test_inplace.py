"""Item assignment and in-place operations with PyTorch's autograd semantics (issue #10, item 1).

Gradients are checked against float64 central differences; the error texts are PyTorch's.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyconv as tc

from strategies import arrays, leaf


def check(fn, *inputs):
    assert tc.gradcheck(fn, list(inputs))


# --------------------------------------------------------------------------------------------- index drawing
@st.composite
def basic_index(draw, shape):
    """A tuple of ints and slices (maybe with an Ellipsis) for ``shape``."""
    parts = []
    for n in shape[:draw(st.integers(0, len(shape)))]:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
        else:
            start = draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = draw(st.one_of(st.none(), st.integers(-n, n)))
            parts.append(slice(start, stop, draw(st.sampled_from([None, 1, 2, -1]))))
    if draw(st.booleans()):
        parts.append(Ellipsis)
    return tuple(parts)


@st.composite
def advanced_index(draw, shape):
    """Distinct integer positions along the first axis, maybe combined with a slice of the second (a repeated
    position would make the assignment's last writer win, so its value gradient is not a derivative)."""
    n = shape[0]
    rows = draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=n, unique_by=lambda i: i % n))
    if len(shape) > 1 and draw(st.booleans()):
        return (tc.tensor(np.array(rows)), slice(None, None, draw(st.sampled_from([1, 2]))))
    return draw(st.sampled_from([rows, tc.tensor(np.array(rows))]))


@st.composite
def value_shape_for(draw, target: tuple):
    """A shape that broadcasts to ``target`` without growing it: leading axes dropped, some axes set to 1."""
    drop = draw(st.integers(0, len(target)))
    shape = [1 if draw(st.booleans()) else n for n in target[drop:]]
    return tuple(shape)


def selected_shape(shape, index):
    return np.empty(shape, dtype=np.bool_)[index if not isinstance(index, tuple) else tuple(
        i.numpy() if isinstance(i, tc.Tensor) else i for i in index)].shape if not isinstance(index, tc.Tensor) \
        else np.empty(shape, dtype=np.bool_)[index.numpy()].shape


def assign_fn(index):
    def fn(x, v):
        y = x * 1.5  # a non-leaf with history, so both gradient paths are exercised
        y[index] = v * 2.0
        return y.exp()
    return fn


shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@given(data=st.data())
def test_assignment_with_basic_indices(data):
    shape = data.draw(shapes)
    index = data.draw(basic_index(shape))
    target = selected_shape(shape, index)
    x = data.draw(leaf(shape))
    v = data.draw(leaf(data.draw(value_shape_for(target))))
    out = assign_fn(index)(x, v)
    expected = x.numpy() * 1.5
    expected[index] = v.numpy() * 2.0
    np.testing.assert_allclose(out.numpy(), np.exp(expected))
    check(assign_fn(index), x, v)


@given(data=st.data())
def test_assignment_with_advanced_indices(data):
    shape = data.draw(shapes)
    index = data.draw(advanced_index(shape))
    target = selected_shape(shape, index if not isinstance(index, list) else np.asarray(index))
    x = data.draw(leaf(shape))
    v = data.draw(leaf(data.draw(value_shape_for(target))))
    check(assign_fn(index), x, v)


@given(data=st.data())
def test_assignment_with_boolean_masks(data):
    shape = data.draw(shapes)
    mask_np = data.draw(arrays(shape)) > 0
    mask = tc.tensor(mask_np)
    x = data.draw(leaf(shape))
    count = int(mask_np.sum())
    v = data.draw(leaf(data.draw(st.sampled_from([(), (1,), (count,)]))))
    out = assign_fn(mask)(x, v)
    expected = x.numpy() * 1.5
    expected[mask_np] = v.numpy() * 2.0
    np.testing.assert_allclose(out.numpy(), np.exp(expected))
    check(assign_fn(mask), x, v)


def test_assignment_of_numbers_and_the_chapter_spellings():
    X = tc.ones((6, 8))
    X[:, 2:6] = 0
    assert X.tolist() == [[1, 1, 0, 0, 0, 0, 1, 1]] * 6
    X[:, 1] = 0
    assert X[:, 1].tolist() == [0] * 6
    X[X == 0] = 7.0
    assert X.sum().item() == 6 * 3 * 1 + 6 * 5 * 7.0  # columns 0, 6, 7 stay 1; columns 1-5 were 0
    K = tc.tensor([[0.0, 1.0], [2.0, 3.0]], requires_grad=True)
    Y = tc.zeros((2, 2))
    Y[0, 1] = (K * K).sum()  # a plain tensor joins the graph when the value needs a gradient
    assert Y.requires_grad and Y.grad_fn.name() == "CopySlices"
    Y.sum().backward()
    np.testing.assert_array_equal(K.grad.numpy(), 2 * K.numpy())


def test_assignment_into_a_tensor_shared_with_numpy_writes_through():
    a = np.zeros(3, dtype=np.float32)
    t = tc.from_numpy(a)
    t[1] = 5
    assert a.tolist() == [0, 5, 0] and t._version == 1


def test_bad_assignments_say_what_and_change_nothing():
    x = tc.zeros(2, 3)
    with pytest.raises(ValueError, match=r"value tensor of shape \[2\] cannot be broadcast to indexing result of "
                                         r"shape \[2, 3\]"):
        x[...] = tc.ones(2)
    with pytest.raises(IndexError):
        x[5] = 1.0
    assert x.tolist() == [[0, 0, 0], [0, 0, 0]] and x._version == 0
    with pytest.raises(ValueError, match=r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"):
        y = tc.zeros(3)
        y += tc.ones(2, 3)
    n = tc.tensor(np.array([1, 2]))
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        n += tc.tensor([0.5, 0.5])
    assert n.tolist() == [1, 2]


# -------------------------------------------------------------------------------------------- in-place ops
@st.composite
def operand_shape(draw, shape):
    return draw(value_shape_for(shape))


INPLACE = {
    "iadd": lambda y, b: y.__iadd__(b),
    "isub": lambda y, b: y.__isub__(b),
    "imul": lambda y, b: y.__imul__(b),
    "itruediv": lambda y, b: y.__itruediv__(b),
    "add_": lambda y, b: y.add_(b, alpha=0.5),
    "sub_": lambda y, b: y.sub_(b, alpha=2.0),
    "mul_": lambda y, b: y.mul_(b),
    "div_": lambda y, b: y.div_(b),
    "copy_": lambda y, b: y.copy_(b),
    "fill_": lambda y, b: y.fill_(b.sum()),
    "zero_": lambda y, b: y.zero_().add_(b),
    "clamp_": lambda y, b: y.clamp_(-1.0, 1.0).mul_(b),
    "relu_": lambda y, b: y.relu_().add_(b),
}
REFERENCE = {
    "iadd": lambda y, b: y + b, "isub": lambda y, b: y - b, "imul": lambda y, b: y * b,
    "itruediv": lambda y, b: y / b, "add_": lambda y, b: y + 0.5 * b, "sub_": lambda y, b: y - 2.0 * b,
    "mul_": lambda y, b: y * b, "div_": lambda y, b: y / b, "copy_": lambda y, b: np.broadcast_to(b, y.shape),
    "fill_": lambda y, b: np.full(y.shape, b.sum()), "zero_": lambda y, b: np.zeros(y.shape) + b,
    "clamp_": lambda y, b: np.clip(y, -1, 1) * b, "relu_": lambda y, b: np.maximum(y, 0) + b,
}


@pytest.mark.parametrize("name", list(INPLACE))
@given(data=st.data())
def test_each_inplace_op_values_and_gradients(name, data):
    shape = data.draw(shapes)
    x = data.draw(leaf(shape, away_from_zero=True))  # |x| >= 0.5: away from relu's kink; clamp's at +-1 avoided:
    if name == "clamp_":
        x = tc.tensor(np.where(np.abs(np.abs(x.numpy()) - 1) < 0.05, x.numpy() * 1.2, x.numpy()), requires_grad=True)
    b = data.draw(leaf(data.draw(operand_shape(shape)), away_from_zero=True))

    def fn(x, b):
        y = x * 1.0
        out = INPLACE[name](y, b)
        assert out is y and y._version >= 1
        return y * y  # uses the new value, so the in-place result's history is checked through a product

    np.testing.assert_allclose(fn(x, b).numpy(), REFERENCE[name](x.numpy(), b.numpy()) ** 2, rtol=1e-12)
    check(fn, x, b)


def test_inplace_on_a_plain_tensor_with_a_value_that_requires_grad():
    w = tc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    acc = tc.zeros(3)
    acc += w * w
    acc.mul_(2.0)
    acc.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), 4 * w.numpy())


def test_an_earlier_consumer_keeps_the_history_it_saw():
    # y = x + 1 was computed before x changed: its gradient goes to x's earlier history, not through the write.
    a = tc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = a * 1.0
    y = x + 1
    x[0] = 5.0
    (y.sum() + x.sum()).backward()
    assert a.grad.tolist() == [1.0, 2.0, 2.0]


# ----------------------------------------------------------------------------------------- version counter
def test_modifying_a_saved_tensor_is_an_error_at_backward():
    a = tc.tensor([1.0, -2.0, 3.0], requires_grad=True)
    x = a * 1.0
    y = x * a  # Mul saves x (version 0)
    x.add_(1)
    with pytest.raises(RuntimeError, match=r"one of the variables needed for gradient computation has been "
                                           r"modified by an inplace operation: \[torch.FloatTensor \[3\]\], which "
                                           r"is output 0 of AddBackward, is at version 1; expected version 0 "
                                           r"instead"):
        y.sum().backward()


def test_modifying_a_saved_output_is_an_error_too():
    a = tc.tensor([1.0, -2.0], requires_grad=True)
    r = a.relu()  # ReLU saves its output
    r += 1
    r[1] = 0.0
    with pytest.raises(RuntimeError, match="is at version 2; expected version 0 instead"):
        r.sum().backward()


def test_unsaved_inputs_may_change():
    a = tc.tensor([1.0, 2.0], requires_grad=True)
    x = a * 1.0
    y = x + 1  # Add saves nothing
    x.mul_(3)
    y.sum().backward()
    assert a.grad.tolist() == [1.0, 1.0]


def test_views_share_the_version_and_data_is_the_escape_hatch():
    x = tc.zeros(2, 3)
    v, r, d = x[0], x.reshape(6), x.detach()
    x[1, 1] = 1.0
    assert x._version == v._version == r._version == d._version == 1
    assert r.tolist()[4] == 1.0
    a = tc.tensor([1.0, 2.0], requires_grad=True)
    y = a * a
    a.data[0] = 10.0  # through .data: not tracked, as in PyTorch
    assert a._version == 0
    y.sum().backward()
    assert a.grad.tolist() == [20.0, 4.0]  # backward uses the saved (modified) values, as PyTorch's does


def test_inplace_on_a_view_in_the_graph_is_refused_clearly():
    a = tc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = a * 1.0
    with pytest.raises(RuntimeError, match="does not track in-place operations on a view"):
        x[0:2].add_(1)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being used in an "
                                           "in-place operation."):
        a[0:2].mul_(2)


# ------------------------------------------------------------------------------------------------ leaf rule
@pytest.mark.parametrize("write", [
    lambda w: w.__setitem__(0, 1.0), lambda w: w.__iadd__(1.0), lambda w: w.add_(1.0), lambda w: w.mul_(2.0),
    lambda w: w.zero_(), lambda w: w.fill_(1.0), lambda w: w.copy_(tc.zeros(3)), lambda w: w.clamp_(0, 1),
    lambda w: w.relu_(), lambda w: w.__setitem__(tc.tensor(np.array([True, False, True])), 0.0),
])
def test_leaf_that_requires_grad_refuses_inplace_outside_no_grad(write):
    w = tc.tensor([1.0, -2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                           "operation."):
        write(w)
    assert w.tolist() == [1.0, -2.0, 3.0] and w._version == 0
    with tc.no_grad():
        write(w)  # the optimizer's way: allowed, still a leaf
    assert w.is_leaf and w.requires_grad and w._version >= 1


def test_sgd_step_spelled_with_inplace_ops_under_no_grad():
    w = tc.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    with tc.no_grad():
        w -= 0.1 * w.grad
        w.grad.zero_()
    np.testing.assert_allclose(w.numpy(), [0.8, 1.6], rtol=1e-6)
    assert w.grad.tolist() == [0.0, 0.0] and w.is_leaf


@pytest.mark.parametrize("make", [lambda ps: tc.optim.SGD(ps, lr=0.1), lambda ps: tc.optim.Adam(ps, lr=0.1)])
def test_an_optimizer_step_counts_as_an_inplace_write(make):
    w = tc.tensor([1.0, 2.0], requires_grad=True)
    optimizer = make([w])
    loss = (w * w).sum()  # Mul saved w
    loss.backward(retain_graph=True)
    optimizer.step()
    assert w._version == 1
    with pytest.raises(RuntimeError, match=r"\[torch.FloatTensor \[2\]\] is at version 1; expected version 0"):
        loss.backward()  # PyTorch refuses this too: the saved w is no longer the w the loss was computed from
