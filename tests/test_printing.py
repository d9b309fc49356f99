"""Tensor printing follows PyTorch's layout (tinyconv/printing.py); expected strings written from the rules."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyconv as tc


@pytest.mark.parametrize("values, expected", [
    ([[19.0, 25.0], [37.0, 43.0]], "tensor([[19., 25.],\n        [37., 43.]])"),  # whole numbers: "19."
    ([0.123456, 2.0], "tensor([0.1235, 2.0000])"),  # else 4 decimals, one width
    ([[0.9879, -0.9921]], "tensor([[ 0.9879, -0.9921]])"),  # the sign counts in the width
    ([1e-5, 1.0], "tensor([1.0000e-05, 1.0000e+00])"),  # below 1e-4: scientific
    ([1234.5678, 0.5], "tensor([1.2346e+03, 5.0000e-01])"),  # a span over 1000x: scientific
    ([float("inf"), -2.5], "tensor([    inf, -2.5000])"),  # non-finite values padded, not counted
    ([-0.0, 1.0], "tensor([-0., 1.])"),  # zeros don't set the width
    (2.5, "tensor(2.5000)"),
])
def test_float_layout(values, expected):
    assert repr(tc.tensor(np.array(values, dtype=np.float32))) == expected


def test_rows_wrap_at_80_columns_and_long_tensors_are_summarised():
    x = repr(tc.arange(200, dtype=tc.float32).reshape(10, 20))
    first = x.split("\n")[0]
    # width 4 ("  0."), indent 8 for the rows of a matrix: (80 - 8) // (4 + 2) = 12 per line
    assert first == "tensor([[  0.,   1.,   2.,   3.,   4.,   5.,   6.,   7.,   8.,   9.,  10.,  11.,"
    y = repr(tc.linspace(-1, 1, 2001))
    assert y == "tensor([-1.0000, -0.9990, -0.9980,  ...,  0.9980,  0.9990,  1.0000])"


def test_integer_bool_and_non_default_dtypes():
    assert repr(tc.tensor(np.array([3, -12, 5]))) == "tensor([  3, -12,   5])"
    assert repr(tc.tensor(np.array([True, False]))) == "tensor([ True, False])"
    assert repr(tc.tensor(np.array([1.0, 2.0]))) == "tensor([1., 2.], dtype=tinyconv.float64)"
    assert repr(tc.zeros(2, 0)) == "tensor([], size=(2, 0))"
    assert repr(tc.tensor(np.ones((2, 1, 1), np.float32))) == "tensor([[[1.]],\n\n        [[1.]]])"


def test_requires_grad_and_grad_fn_are_shown():
    w = tc.tensor(np.array([0.5], np.float32), requires_grad=True)
    assert repr(w) == "tensor([0.5000], requires_grad=True)"
    assert repr(w * 2).startswith("tensor([1.], grad_fn=<Mul")


@pytest.mark.torch
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=12),
                  elements=st.one_of(st.floats(-1e4, 1e4, width=32), st.integers(-50, 50).map(float),
                                     st.sampled_from([0.0, 1e-6, 3e9, float("nan"), float("inf")]))))
def test_printing_matches_pytorch(arr):
    torch = pytest.importorskip("torch")
    assert repr(tc.tensor(arr)) == repr(torch.tensor(arr))
