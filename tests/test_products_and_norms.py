"""mm, mv, dot, pow, elementwise and reducing max/min, maximum/minimum, cumsum and norm: PyTorch's signatures, dtype
rules, broadcasting and error messages, and gradients checked against central differences in float64."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyconv as tc

from strategies import arrays, broadcastable_pairs, leaf, nonscalar_shapes


def check(fn, *inputs):
    assert tc.gradcheck(fn, list(inputs))


def f64(shape, seed, **kw):
    rng = np.random.default_rng(seed)
    return tc.tensor(rng.uniform(-2, 2, shape), requires_grad=True, dtype="float64", **kw)


# ----------------------------------------------------------------------------------------------- products
@given(n=st.integers(1, 4), m=st.integers(1, 4), p=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_mm_mv_dot_values_and_gradients(n, m, p, seed):
    A, B, v, w = f64((n, m), seed), f64((m, p), seed + 1), f64((m,), seed + 2), f64((m,), seed + 3)
    np.testing.assert_allclose(tc.mm(A, B).numpy(), A.numpy() @ B.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tc.mv(A, v).numpy(), A.numpy() @ v.numpy(), rtol=1e-12)
    assert tc.dot(v, w).shape == () and tc.dot(v, w).item() == pytest.approx(float(v.numpy() @ w.numpy()))
    assert A.mm(B).shape == (n, p) and A.mv(v).shape == (n,) and v.dot(w).ndim == 0
    check(tc.mm, A, B)
    check(tc.mv, A, v)
    check(tc.dot, v, w)


def test_products_refuse_what_pytorch_refuses():
    A, x = tc.ones(2, 3), tc.ones(3)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)"):
        tc.mm(A, tc.ones(4, 5))
    with pytest.raises(RuntimeError, match="mat2 must be a matrix"):
        tc.mm(A, x)
    with pytest.raises(RuntimeError, match="same dtype"):
        tc.mm(A, tc.ones(3, 2, dtype=tc.int64))
    with pytest.raises(RuntimeError, match=r"size mismatch, got input \(2\), mat \(2x3\), vec \(4\)"):
        tc.mv(A, tc.ones(4))
    with pytest.raises(RuntimeError, match="1D tensors expected, but got 2D and 1D tensors"):
        tc.dot(A, x)
    with pytest.raises(RuntimeError, match=r"inconsistent tensor size, expected tensor \[3\] and src \[4\]"):
        tc.dot(x, tc.ones(4))
    with pytest.raises(RuntimeError, match="dot : expected both vectors to have same dtype, but found Float and Long"):
        tc.dot(x, tc.ones(3, dtype=tc.int64))
    assert tc.dot(tc.arange(3), tc.arange(3)).item() == 5 and tc.dot(tc.arange(3), tc.arange(3)).dtype == np.int64


# ---------------------------------------------------------------------------------------------------- pow
@given(data=st.data())
def test_pow_method_function_and_operator_agree_with_gradients(data):
    sa, sb = data.draw(broadcastable_pairs())
    a = data.draw(leaf(sa, away_from_zero=True)).abs().detach().requires_grad_()
    b = data.draw(leaf(sb))
    expected = np.power(a.numpy(), b.numpy())
    for out in (a.pow(b), tc.pow(a, b), a ** b):
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    check(lambda x, y: x.pow(y), a, b)
    check(lambda x: x.pow(3), a)
    check(lambda y: 2.0 ** y, b)


def test_pow_dtype_rules():
    i = tc.tensor([1, 2, 3])
    assert i.pow(2).dtype == np.int64 and i.pow(2).tolist() == [1, 4, 9]
    assert i.pow(0.5).dtype == np.float32 and (2 ** i).dtype == np.int64 and (2.0 ** i).dtype == np.float32
    f = tc.tensor([1.0, 2.0, 4.0, 8.0])
    assert (f ** tc.tensor([2, 2, 2, 2])).tolist() == [1, 4, 16, 64] and (f ** i[:1]).dtype == np.float32
    assert tc.pow(f, 2).tolist() == f.pow(2).tolist() == (f ** 2).tolist()


# ------------------------------------------------------------------------------------------------ max, min
@given(data=st.data())
def test_maximum_and_minimum_broadcast_with_gradients(data):
    sa, sb = data.draw(broadcastable_pairs())
    a, b = data.draw(leaf(sa)), data.draw(leaf(sb))
    np.testing.assert_array_equal(tc.maximum(a, b).numpy(), np.maximum(a.numpy(), b.numpy()))
    np.testing.assert_array_equal(tc.minimum(a, b).numpy(), np.minimum(a.numpy(), b.numpy()))
    np.testing.assert_array_equal(tc.max(a, b).numpy(), a.maximum(b).numpy())
    np.testing.assert_array_equal(tc.min(a, b).numpy(), a.minimum(b).numpy())
    check(tc.maximum, a, b)
    check(tc.minimum, a, b)


def test_max_between_tensors_is_the_books_relu_and_ties_share_the_gradient():
    X = tc.tensor([[-1.0, 0.0, 2.0]], requires_grad=True)
    a = tc.zeros_like(X)
    out = tc.max(X, a)
    assert out.tolist() == [[0.0, 0.0, 2.0]]
    out.sum().backward()
    assert X.grad.tolist() == [[0.0, 0.5, 1.0]]  # PyTorch splits a tie evenly
    assert tc.maximum(tc.tensor([1, 5]), tc.tensor([2.5, 3.0])).dtype == np.float32  # type promotion
    with pytest.raises(TypeError, match="must be Tensor, not int"):
        tc.maximum(X, 0)
    with pytest.raises(RuntimeError, match="must match the size"):
        tc.maximum(tc.ones(2), tc.ones(3))


def test_max_and_min_along_a_dim_return_values_and_indices():
    x = tc.tensor([[1.0, 5.0, 2.0], [7.0, 3.0, 7.0]], requires_grad=True)
    values, indices = tc.max(x, dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    r = x.min(0, keepdim=True)
    assert r.values.tolist() == [[1.0, 3.0, 2.0]] and r.indices.tolist() == [[0, 1, 0]]
    assert repr(tc.tensor([[1.0, 5.0]]).max(dim=1)) == ("tinyconv.return_types.max(\nvalues=tensor([5.]),\n"
                                                        "indices=tensor([1]))")
    assert repr(tc.tensor([[1.0, 5.0]]).min(1)).startswith("tinyconv.return_types.min(")
    values.sum().backward()
    assert x.grad.tolist() == [[0, 1, 0], [1, 0, 0]]  # the chosen element only, as PyTorch's max(dim)


# -------------------------------------------------------------------------------------------------- cumsum
@given(shape=nonscalar_shapes, data=st.data())
def test_cumsum_values_and_gradient(shape, data):
    x = tc.tensor(data.draw(arrays(shape)), requires_grad=True, dtype="float64")
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_allclose(x.cumsum(dim).numpy(), np.cumsum(x.numpy(), axis=dim), rtol=1e-12)
    np.testing.assert_allclose(tc.cumsum(x, dim=dim).numpy(), x.cumsum(axis=dim).numpy())
    check(lambda t: t.cumsum(dim), x)


def test_cumsum_dtypes_and_errors():
    assert tc.arange(4).cumsum(0).tolist() == [0, 1, 3, 6] and tc.tensor([True, True]).cumsum(0).dtype == np.int64
    with pytest.raises(TypeError, match="missing required argument 'dim'"):
        tc.ones(3).cumsum()
    with pytest.raises(IndexError, match="Dimension out of range"):
        tc.ones(3).cumsum(1)


# ---------------------------------------------------------------------------------------------------- norm
@pytest.mark.parametrize("p", [2, 1, 3, 0.5, float("inf"), float("-inf"), "fro"])
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), data=st.data())
def test_norm_values_and_gradients(p, shape, data):
    x = tc.tensor(data.draw(arrays(shape, away_from_zero=True)), requires_grad=True, dtype="float64")
    q = 2 if p == "fro" else p
    flat = np.abs(x.numpy()).ravel()
    expected = {np.inf: flat.max(), -np.inf: flat.min()}.get(q, (flat ** q).sum() ** (1 / q) if q else 0)
    assert x.norm(p).item() == pytest.approx(expected, rel=1e-10)
    assert tc.norm(x, p).item() == pytest.approx(expected, rel=1e-10)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    along = x.norm(p, dim=dim, keepdim=True)
    assert along.shape == tuple(1 if i == dim % len(shape) else n for i, n in enumerate(shape))
    check(lambda t: t.norm(p), x)
    check(lambda t: t.norm(p, dim=dim), x)


def test_norm_is_the_books_and_zero_has_a_zero_gradient():
    assert tc.norm(tc.tensor([3.0, -4.0])).item() == 5.0 and tc.norm(tc.ones((4, 9))).item() == 6.0
    assert tc.abs(tc.tensor([3.0, -4.0])).sum().item() == 7.0
    z = tc.zeros(3, requires_grad=True)
    z.norm().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]
    assert tc.tensor([1.0, 0.0, 2.0]).norm(0).item() == 2.0
    with pytest.raises(RuntimeError, match="Expected a floating point or complex tensor as input. Got Long"):
        tc.arange(3).norm()
    with pytest.raises(NotImplementedError, match="vector norms only"):
        tc.ones(2, 2).norm("nuc")


# ----------------------------------------------------------------------------------------- small methods
def test_square_and_sign():
    x = tc.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    assert x.square().tolist() == tc.square(x).tolist() == [4.0, 0.0, 9.0]
    assert x.sign().tolist() == tc.sign(x).tolist() == [-1.0, 0.0, 1.0] and not x.sign().requires_grad


# ------------------------------------------------------------------------------------------- against PyTorch
@pytest.mark.torch
@pytest.mark.parametrize("name, fn, shapes", [
    ("mm", lambda m, a, b: m.mm(a, b), [(3, 4), (4, 2)]),
    ("mv", lambda m, a, b: m.mv(a, b), [(3, 4), (4,)]),
    ("dot", lambda m, a, b: m.dot(a, b), [(5,), (5,)]),
    ("pow", lambda m, a, b: m.pow(a.abs() + 0.5, b), [(3, 1), (4,)]),
    ("max of two tensors, with ties", lambda m, a, b: m.max(a, b), [(3, 4), (4,)]),
    ("minimum, with ties", lambda m, a, b: m.minimum(a, b), [(2, 3), (2, 1)]),
    ("cumsum", lambda m, a, b: (a.cumsum(dim=1) * b).sum(0), [(3, 4), (4,)]),
    ("norm", lambda m, a, b: m.norm(a * b), [(3, 4), (4,)]),
    ("norm inf along a dim", lambda m, a, b: a.norm(float("inf"), dim=0) + b, [(3, 4), (4,)]),
    ("max along a dim", lambda m, a, b: m.max(a * b, dim=1).values, [(3, 4), (4,)]),
])
def test_values_and_gradients_match_pytorch(name, fn, shapes):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    # whole numbers in [-3, 3]: maximum/minimum meet ties, the norms and cumsum see plain values
    arrays_ = [rng.integers(-3, 4, s).astype(np.float64) for s in shapes]
    ours = [tc.tensor(a, requires_grad=True) for a in arrays_]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays_]
    y, ty = fn(tc, *ours), fn(torch, *theirs)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.uniform(-1, 1, tuple(ty.shape))
    y.backward(tc.tensor(g))
    ty.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
