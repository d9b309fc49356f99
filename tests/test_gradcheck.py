"""The public gradient checker catches wrong backwards and says where they are wrong."""
from __future__ import annotations

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.autograd import Function


class WrongSquare(Function):
    """x² with a deliberately wrong derivative (x instead of 2x) at one position."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad = 2 * x * g
        grad.flat[-1] = x.flat[-1] * g.flat[-1]
        return (grad,)


class ForgotBroadcastReduction(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, np.zeros_like(ctx.inputs[1].numpy())


def test_passes_for_a_correct_op_and_converts_to_float64():
    x = tc.tensor(np.random.default_rng(0).random((3, 4)).astype(np.float32), requires_grad=True)
    assert tc.gradcheck(lambda t: (t * t).sum(dim=1), [x])


def test_error_names_input_worst_index_values_and_tolerance():
    x = tc.tensor(np.arange(1.0, 7.0).reshape(2, 3), requires_grad=True, dtype="float64")
    with pytest.raises(tc.GradcheckError) as err:
        tc.gradcheck(lambda t: WrongSquare.apply(t), [x], names=["weight"])
    msg = str(err.value)
    assert "gradcheck failed for weight of shape (2, 3)" in msg
    assert "worst element at index (1, 2)" in msg
    assert "analytic" in msg and "numeric" in msg and "atol=1e-05, rtol=0.001" in msg
    assert "1 of 6 elements differ" in msg


def test_reports_second_input_and_returns_false_without_raising():
    a = tc.tensor(np.ones((2, 3)), requires_grad=True, dtype="float64")
    b = tc.tensor(np.ones(3), requires_grad=True, dtype="float64")
    with pytest.raises(tc.GradcheckError, match="input 1 of shape"):
        tc.gradcheck(lambda x, y: ForgotBroadcastReduction.apply(x, y), [a, b])
    assert tc.gradcheck(lambda x, y: ForgotBroadcastReduction.apply(x, y), [a, b], raise_exception=False) is False


def test_missing_gradient_is_explained():
    a = tc.tensor(np.ones(2), requires_grad=True, dtype="float64")
    b = tc.tensor(np.ones(2), requires_grad=True, dtype="float64")
    with pytest.raises(tc.GradcheckError, match="autograd produced no gradient"):
        tc.gradcheck(lambda x, y: x * y.detach(), [a, b])


def test_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        tc.gradcheck(lambda t: t * 2, [tc.tensor([1.0])])


def test_non_tensor_inputs_are_passed_through_and_multiple_outputs_checked():
    x = tc.tensor(np.linspace(0.1, 1, 4), requires_grad=True, dtype="float64")
    assert tc.gradcheck(lambda t, k: (t * k, t.exp()), [x, 3.0])
