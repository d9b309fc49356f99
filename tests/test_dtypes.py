"""PyTorch's dtype rules (issue #10, item 2): what Python data becomes, how mixed operands promote, what
comparisons and integer sums give. Expected dtypes follow PyTorch's documented promotion rules."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F


def test_python_data():
    assert tc.tensor([2, 1, 0]).dtype == np.int64 and tc.tensor(3).dtype == np.int64
    assert tc.tensor([True, False]).dtype == np.bool_ and tc.tensor(True).dtype == np.bool_
    assert tc.tensor([1.5]).dtype == np.float32 and tc.tensor([1, 2.5]).dtype == np.float32
    assert tc.tensor(np.zeros(2, np.float64)).dtype == np.float64  # arrays keep theirs
    assert tc.tensor(np.zeros(2, np.int32)).dtype == np.int32
    assert tc.as_tensor([1, 2]).dtype == np.int64


@pytest.mark.parametrize("make, expected, values", [
    (lambda: tc.tensor([1, 2]) + 1.5, np.float32, [2.5, 3.5]),  # a float scalar lifts ints to float32
    (lambda: tc.tensor([1, 2]) / 2, np.float32, [0.5, 1.0]),  # true division of ints: float32
    (lambda: 2 / tc.tensor([1, 4]), np.float32, [2.0, 0.5]),
    (lambda: tc.tensor([1, 2]) * 3, np.int64, [3, 6]),
    (lambda: tc.tensor(np.array([1, 2], np.int32)) + 2, np.int32, [3, 4]),  # scalars don't widen
    (lambda: tc.tensor(np.array([1, 2], np.int32)) + tc.tensor(2), np.int32, [3, 4]),  # nor do 0-d tensors
    (lambda: tc.tensor(np.array([200], np.uint8)) + tc.tensor(np.array([1], np.int32)), np.int32, [201]),
    (lambda: tc.tensor([1, 2]) * tc.tensor([0.5, 0.5]), np.float32, [0.5, 1.0]),  # int64 * float32: float32
    (lambda: tc.tensor([1.0, 2.0]) * tc.tensor(np.float64(2.0)), np.float32, [2.0, 4.0]),  # 0-d f64: no widen
    (lambda: tc.tensor([1.0]) + tc.tensor(np.array([1.0])), np.float64, [2.0]),  # both with dims: float64
    (lambda: tc.tensor([1, 2]) + tc.tensor(np.float64(0.5)), np.float64, [1.5, 2.5]),  # higher kind, 0-d
    (lambda: tc.tensor([True, False]) + True, np.bool_, [True, True]),
    (lambda: tc.tensor([True, False]) + 1, np.int64, [2, 1]),
    (lambda: tc.tensor(np.array([1.0], np.float64)) + 1.5, np.float64, [2.5]),
])
def test_promotion(make, expected, values):
    out = make()
    assert out.dtype == expected
    assert out.tolist() == values


def test_comparisons_are_bool_and_integer_sums_int64():
    y_hat = tc.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    y = tc.tensor([1, 0, 0])
    cmp = y_hat.argmax(axis=1).type(y.dtype) == y  # d2l's accuracy(), verbatim
    assert cmp.dtype == np.bool_ and cmp.tolist() == [True, True, False]
    total = cmp.type(y.dtype).sum()
    assert total.dtype == np.int64 and float(total) == 2.0
    assert cmp.sum().dtype == np.int64 and (y > 0).dtype == np.bool_


def test_gradients_through_promotions_come_back_in_each_inputs_dtype():
    w = tc.tensor([0.5, -1.0], requires_grad=True)
    x = tc.tensor([2, 3])
    out = w * x
    assert out.dtype == np.float32
    out.sum().backward()
    assert w.grad.dtype == np.float32 and w.grad.tolist() == [2.0, 3.0]
    d = tc.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (w * d).sum().backward()
    assert w.grad.dtype == np.float32 and d.grad.dtype == np.float64 and d.grad.tolist() == [0.5, -1.0]


def test_losses_take_int64_targets_made_from_lists():
    logits = tc.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], requires_grad=True)
    target = tc.tensor([0, 1])
    loss = F.cross_entropy(logits, target)
    expected = -np.mean([2 - np.log(np.exp(2) + 2), 3 - np.log(np.exp(3) + 2)])
    assert loss.dtype == np.float32 and loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad.dtype == np.float32


@pytest.mark.torch
def test_promotion_table_matches_pytorch():
    torch = pytest.importorskip("torch")
    dtypes = ["bool", "uint8", "int32", "int64", "float32", "float64"]
    samples = {"bool": [True, False], "uint8": [1, 2], "int32": [1, 2], "int64": [1, 2], "float32": [0.5, 1.5],
               "float64": [0.5, 1.5]}
    for da, db in itertools.product(dtypes, dtypes):
        for shape_a, shape_b in ((2,), (2,)), ((), (2,)), ((2,), ()):
            a = np.array(samples[da], dtype=da).reshape(-1)[: 2 if shape_a else 1].reshape(shape_a)
            b = np.array(samples[db], dtype=db).reshape(-1)[: 2 if shape_b else 1].reshape(shape_b)
            for op in ("mul", "truediv"):
                try:
                    theirs = getattr(torch.from_numpy(a), f"__{op}__")(torch.from_numpy(b))
                except RuntimeError:
                    continue
                ours = getattr(tc.from_numpy(a), f"__{op}__")(tc.from_numpy(b))
                assert ours.dtype.name == str(theirs.dtype).replace("torch.", ""), (da, db, shape_a, shape_b, op)
                np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    for scalar in (2, 2.5, True):
        for d in dtypes:
            a = np.array(samples[d], dtype=d)
            theirs, ours = torch.from_numpy(a) * scalar, tc.from_numpy(a) * scalar
            assert ours.dtype.name == str(theirs.dtype).replace("torch.", ""), (d, scalar)


def test_remainder_and_floor_division_like_pytorch():
    x = tc.tensor([-3, 5, 7])
    assert (x % 3).tolist() == [0, 2, 1] and (x % 3).dtype == np.int64  # Python's sign rule, as torch.remainder
    assert (x // 2).tolist() == [-2, 2, 3] and (10 // x).tolist() == [-4, 2, 1]
    assert (tc.tensor([5.5]) % 2).tolist() == [1.5] and (tc.tensor([5.5]) % 2).dtype == np.float32
    with pytest.raises(RuntimeError, match="remainder has no gradient"):
        tc.tensor([1.0], requires_grad=True) % 2
