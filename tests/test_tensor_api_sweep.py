"""The PyTorch Tensor methods and functions CNN tutorials reach for beyond the course (docs/pytorch.md's table):
values against NumPy, gradients against central differences in float64, errors, and PyTorch itself when installed."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyconv as tc

from strategies import arrays, distinct_values


def check(fn, *inputs):
    assert tc.gradcheck(fn, list(inputs))


small = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def f64(a):
    return tc.tensor(a, requires_grad=True, dtype="float64")


@given(shape=small, data=st.data())
def test_var_and_std(shape, data):
    x = f64(data.draw(arrays(shape)))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = x.numpy()
    if a.size > 1:
        assert x.var().item() == pytest.approx(a.var(ddof=1), rel=1e-10)
        assert x.std(unbiased=False).item() == pytest.approx(a.std(), rel=1e-10)
        check(lambda t: t.std(), x)
    np.testing.assert_allclose(x.var(dim, correction=0).numpy(), a.var(axis=dim), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tc.std(x, dim, keepdim=True, correction=0).numpy(), a.std(axis=dim, keepdims=True),
                               rtol=1e-10, atol=1e-14)
    check(lambda t: t.var(dim, correction=0), x)


@given(data=st.data())
def test_gather_sort_topk_with_gradients(data):
    shape = data.draw(small)
    x = data.draw(distinct_values(shape))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    values, indices = x.sort(dim, descending=True)
    np.testing.assert_array_equal(values.numpy(), -np.sort(-x.numpy(), axis=dim))
    np.testing.assert_array_equal(np.take_along_axis(x.numpy(), indices.numpy(), axis=dim), values.numpy())
    assert tc.argsort(x, dim).tolist() == np.argsort(x.numpy(), axis=dim).tolist()
    k = data.draw(st.integers(0, shape[dim]))
    top = x.topk(k, dim)
    np.testing.assert_array_equal(top.values.numpy(), np.take(values.numpy(), range(k), axis=dim))
    smallest = tc.topk(x, k, dim, largest=False)
    np.testing.assert_array_equal(smallest.values.numpy(), np.take(np.sort(x.numpy(), axis=dim), range(k), axis=dim))
    check(lambda t: t.sort(dim).values, x)
    check(lambda t: t.topk(k, dim).values, x)
    index = tc.tensor(data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, shape[dim] - 1))))
    np.testing.assert_array_equal(x.gather(dim, index).numpy(), np.take_along_axis(x.numpy(), index.numpy(), dim))
    check(lambda t: tc.gather(t, dim, index), x)  # repeated indices add up


def test_gather_and_topk_errors():
    x = tc.ones(2, 3)
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        x.gather(1, tc.tensor([0, 1]))
    with pytest.raises(IndexError, match="out of bounds for dimension 1 with size 3"):
        x.gather(1, tc.tensor([[3], [0]]))
    with pytest.raises(RuntimeError, match="Expected dtype int64 for index"):
        x.gather(1, tc.tensor([[0.0], [1.0]]))
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        x.topk(4)
    assert repr(tc.tensor([3.0, 1.0]).topk(1)).startswith("tinyconv.return_types.topk(\nvalues=tensor([3.])")


@given(shape=small, data=st.data())
def test_expand_repeat_masked_fill_with_gradients(shape, data):
    x = f64(data.draw(arrays(shape)))
    target = (2,) + tuple(n if n != 1 else data.draw(st.integers(1, 3)) for n in shape)  # size-1 axes stretch
    np.testing.assert_array_equal(x.expand(target).numpy(), np.broadcast_to(x.numpy(), target))
    assert x.expand((3, *[-1] * len(shape))).shape == (3, *shape)
    check(lambda t: t.expand(target), x)
    reps = tuple(data.draw(st.integers(1, 3)) for _ in range(len(shape) + 1))
    np.testing.assert_array_equal(x.repeat(*reps).numpy(), np.tile(x.numpy(), reps))
    check(lambda t: t.repeat(reps), x)
    mask = tc.tensor(data.draw(hnp.arrays(np.bool_, shape)))
    np.testing.assert_array_equal(x.masked_fill(mask, -1.0).numpy(), np.where(mask.numpy(), -1.0, x.numpy()))
    check(lambda t: t.masked_fill(mask, 0.5), x)


def test_expand_repeat_masked_fill_errors():
    with pytest.raises(RuntimeError, match=r"The expanded size of the tensor \(4\) must match the existing size \(3\)"):
        tc.ones(3).expand(2, 4)
    with pytest.raises(RuntimeError, match="can not be smaller"):
        tc.ones(2, 3).repeat(2)
    with pytest.raises(RuntimeError, match="only supports boolean masks"):
        tc.ones(3).masked_fill(tc.ones(3), 0)


@given(shape=small, data=st.data())
def test_chunk_split_unbind_index_select(shape, data):
    x = f64(data.draw(arrays(shape)))
    dim = data.draw(st.integers(0, len(shape) - 1))
    n = data.draw(st.integers(1, 4))
    pieces = x.chunk(n, dim)
    np.testing.assert_array_equal(tc.cat(pieces, dim).numpy(), x.numpy())
    step = -(-shape[dim] // n)  # ceil: PyTorch's chunk size
    assert [p.shape[dim] for p in pieces] == [min(step, shape[dim] - s) for s in range(0, shape[dim], step)]
    assert [p.shape[dim] for p in tc.split(x, 2, dim)] == [min(2, shape[dim] - s) for s in range(0, shape[dim], 2)]
    assert [u.tolist() for u in x.unbind(dim)] == [np.take(x.numpy(), i, axis=dim).tolist()
                                                  for i in range(shape[dim])]
    index = tc.tensor(data.draw(st.lists(st.integers(0, shape[dim] - 1), min_size=1, max_size=5)))
    np.testing.assert_array_equal(x.index_select(dim, index).numpy(), np.take(x.numpy(), index.numpy(), axis=dim))
    check(lambda t: (t.chunk(n, dim)[0] * 2).sum() + t.index_select(dim, index).sum(), x)


def test_split_with_sizes_and_errors():
    x = tc.arange(6.0)
    assert [p.tolist() for p in x.split([1, 5])] == [[0.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    with pytest.raises(RuntimeError, match="expects split_sizes to sum exactly to 6"):
        x.split([1, 2])
    with pytest.raises(RuntimeError, match="chunk expects `chunks` to be greater than 0"):
        x.chunk(0)


@given(shape=small, data=st.data())
def test_sin_cos_and_the_piecewise_functions(shape, data):
    x = f64(data.draw(arrays(shape)))
    np.testing.assert_allclose(tc.sin(x).numpy(), np.sin(x.numpy()))
    np.testing.assert_allclose(x.cos().numpy(), np.cos(x.numpy()))
    check(tc.sin, x)
    check(lambda t: t.cos(), x)
    for name in ("round", "floor", "ceil", "sign"):
        out = getattr(x, name)()
        np.testing.assert_array_equal(out.numpy(), getattr(np, name)(x.numpy()))
        assert out.requires_grad  # zero gradient, but part of the graph as in PyTorch
        out.sum().backward()
        assert not x.grad.numpy().any()
        x.grad = None


def test_comparison_and_arithmetic_methods_all_any_and_friends():
    x, y = tc.tensor([1.0, 2.0, 3.0]), tc.tensor([1.0, 0.0, 4.0])
    assert x.eq(y).tolist() == [True, False, False] and x.ne(y).tolist() == [False, True, True]
    assert x.lt(y).tolist() == [False, False, True] and x.ge(y).tolist() == [True, True, False]
    assert x.gt(2).tolist() == [False, False, True] and x.le(2).tolist() == [True, True, False]
    assert x.add(y, alpha=2).tolist() == [3.0, 2.0, 11.0] and x.sub(1).tolist() == [0.0, 1.0, 2.0]
    assert x.mul(y).tolist() == [1.0, 0.0, 12.0] and x.div(2).tolist() == [0.5, 1.0, 1.5]
    pred = tc.tensor([[0.1, 0.9], [0.8, 0.2]]).argmax(dim=1, keepdim=True)  # pytorch/examples' mnist accuracy
    assert pred.eq(tc.tensor([1, 1]).view_as(pred)).sum().item() == 1
    assert y.all().item() is False and y.any().item() is True and tc.all(x).item() is True
    assert tc.tensor([[True, False], [True, True]]).all(dim=1).tolist() == [False, True]
    assert tc.isnan(tc.tensor([1.0, float("nan")])).tolist() == [False, True]
    assert tc.isfinite(tc.tensor([1.0, float("inf")])).tolist() == [True, False]
    assert x.nonzero().tolist() == [[0], [1], [2]] and y.nonzero(as_tuple=True)[0].tolist() == [0, 2]
    assert x.type_as(tc.arange(2)).dtype == np.int64 and x.contiguous() is x and x.reshape_as(tc.ones(3, 1)).shape == (3, 1)
    assert x.new_zeros(2, 2).dtype == np.float32 and x.new_ones((3,)).tolist() == [1.0] * 3
    assert x.new_tensor([1, 2]).dtype == np.float32 and x.nelement() == 3 and x.element_size() == 4
    assert tc.allclose(x, x + 1e-9) and not tc.allclose(x, y) and tc.equal(x, x.clone()) and not tc.equal(x, x[:2])
    tc.manual_seed(0)
    p = tc.randperm(10)
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(10))


def test_bmm():
    a, b = f64(np.random.default_rng(0).normal(size=(2, 3, 4))), f64(np.random.default_rng(1).normal(size=(2, 4, 5)))
    np.testing.assert_allclose(tc.bmm(a, b).numpy(), a.numpy() @ b.numpy(), rtol=1e-12)
    check(tc.bmm, a, b)
    with pytest.raises(RuntimeError, match="must be 3-D tensors"):
        tc.bmm(tc.ones(3, 4), tc.ones(4, 5))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        a.bmm(tc.ones(3, 4, 5, dtype=tc.float64))


@given(shape=small, data=st.data())
def test_prod_with_zeros_and_its_gradient(shape, data):
    a = data.draw(arrays(shape))
    a.reshape(-1)[data.draw(st.integers(0, a.size - 1))] = 0.0  # one zero: the others' product still flows back
    x = f64(a)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert x.prod().item() == pytest.approx(np.prod(a), abs=1e-12)
    np.testing.assert_allclose(tc.prod(x, dim).numpy(), np.prod(a, axis=dim), atol=1e-12)
    check(lambda t: t.prod(), x)
    check(lambda t: t.prod(dim, keepdim=True), x)
    assert tc.tensor([2, 3]).prod().dtype == np.int64 and tc.tensor([2, 3]).prod().item() == 6


def test_outer_meshgrid_masked_fill_inplace_and_multinomial():
    a, b = f64([1.0, 2.0, 3.0]), f64([4.0, 5.0])
    np.testing.assert_array_equal(tc.outer(a, b).numpy(), np.outer(a.numpy(), b.numpy()))
    check(tc.outer, a, b)
    for indexing in ("ij", "xy"):
        ours = tc.meshgrid(a, b, indexing=indexing)
        for o, ref in zip(ours, np.meshgrid(a.numpy(), b.numpy(), indexing=indexing)):
            np.testing.assert_array_equal(o.numpy(), ref)
    check(lambda x, y: sum(g.sum() * (i + 1) for i, g in enumerate(tc.meshgrid(x, y))), a, b)
    x = tc.tensor([1.0, -2.0, 3.0])
    assert x.masked_fill_(x < 0, 0.0) is x and x.tolist() == [1.0, 0.0, 3.0]
    tc.manual_seed(0)
    draws = tc.multinomial(tc.tensor([0.0, 1.0, 3.0]), 4000, replacement=True)
    assert draws.dtype == np.int64 and set(draws.tolist()) == {1, 2}
    assert abs((draws == 2).float().mean().item() - 0.75) < 0.03
    rows = tc.multinomial(tc.ones(3, 5), 5)
    assert rows.shape == (3, 5) and all(sorted(r) == [0, 1, 2, 3, 4] for r in rows.tolist())
    with pytest.raises(RuntimeError, match="without replacement"):
        tc.multinomial(tc.tensor([1.0, 0.0]), 2)
    with pytest.raises(RuntimeError, match="invalid multinomial distribution"):
        tc.multinomial(tc.tensor([1.0, -1.0]), 1)


@pytest.mark.torch
@pytest.mark.parametrize("name, fn", [
    ("std", lambda m, x: x.std(1)),
    ("var correction 0", lambda m, x: x.var(0, correction=0)),
    ("sort descending", lambda m, x: m.sort(x, 1, descending=True).values),
    ("topk", lambda m, x: x.topk(2, dim=0).values),
    ("gather", lambda m, x: x.gather(1, m.tensor([[0, 0], [2, 1], [1, 1]]))),
    ("expand", lambda m, x: x[:, :1].expand(3, 4)),
    ("repeat", lambda m, x: x.repeat(2, 1, 2)),
    ("masked_fill", lambda m, x: x.masked_fill(x > 0.5, 0.0)),
    ("chunk", lambda m, x: m.cat([c * (i + 1) for i, c in enumerate(x.chunk(3, 1))], 1)),
    ("index_select", lambda m, x: x.index_select(1, m.tensor([3, 0, 3]))),
    ("sin cos", lambda m, x: m.sin(x) * x.cos()),
    ("prod with a zero", lambda m, x: m.prod(x.masked_fill(x > 0.8, 0.0), 1)),
    ("outer", lambda m, x: m.outer(x[0], x[1])),
])
def test_values_and_gradients_match_pytorch(name, fn):
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(5).uniform(-1, 1, (3, 4))
    ours, theirs = tc.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, ty = fn(tc, ours), fn(torch, theirs)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(6).uniform(-1, 1, tuple(ty.shape))
    y.backward(tc.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-12)
