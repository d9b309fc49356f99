"""The backward engine: accumulation, freeing, retain_graph, no_grad, needs_input_grad, deep graphs, hooks."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
from tinyconv.autograd import Function


def test_gradients_accumulate_across_backward_calls_like_pytorch():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 + 3, 4 + 3])
    x.zero_grad()
    assert x.grad is None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3, 3])


def test_shared_subexpression_gets_summed_gradient():
    x = tc.tensor(2.0, requires_grad=True)
    y = x * x
    z = y * y + y  # dz/dx = (2y + 1) * 2x = (8 + 1) * 4
    z.backward()
    assert x.grad.item() == pytest.approx(36.0)


def test_second_backward_through_freed_graph_raises_clear_error():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        loss.backward()


def test_retain_graph_allows_second_backward():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * 2).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp([1.0, 2.0]), rtol=1e-6)


def test_saved_arrays_are_released_after_backward():
    x = tc.tensor(np.ones(3), requires_grad=True)
    y = x.exp()
    node = y.grad_fn
    y.sum().backward()
    assert node._saved is None


def test_non_scalar_backward_needs_gradient():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"grad can be implicitly created only for scalar outputs.*\(2,\)"):
        y.backward()
    y.backward(tc.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 20.0])


def test_backward_gradient_shape_is_checked():
    y = tc.tensor([1.0, 2.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"expected a gradient of shape \(2,\), got shape \(3,\)"):
        y.backward(np.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tc.tensor([1.0]) * 2).sum().backward()


def test_ten_thousand_op_chain_does_not_hit_recursion_limit():
    x = tc.tensor([1.0], requires_grad=True, dtype="float64")
    y = x
    for _ in range(max(10_000, sys.getrecursionlimit() + 1)):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001 ** max(10_000, sys.getrecursionlimit() + 1))


def test_no_grad_records_nothing_and_restores_mode():
    x = tc.tensor([1.0], requires_grad=True)
    with tc.no_grad():
        y = x * 2
        assert not tc.is_grad_enabled()
        with tc.enable_grad():
            z = x * 2
    assert tc.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None


def test_no_grad_works_as_decorator():
    @tc.no_grad()
    def f(t):
        return t * 2

    assert not f(tc.tensor([1.0], requires_grad=True)).requires_grad


def test_detach_cuts_the_graph_and_shares_data():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert d.grad_fn is None and not d.requires_grad
    y = x * 2
    assert np.shares_memory(y.detach().numpy(), y.numpy())


def test_backward_skips_gradients_nobody_needs():
    calls = []

    class Spy(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            calls.append(ctx.needs_input_grad)
            return (g if ctx.needs_input_grad[0] else None, g if ctx.needs_input_grad[1] else None)

    images = tc.tensor(np.ones(3))  # like a batch of images: no gradient wanted
    weight = tc.tensor(np.ones(3), requires_grad=True)
    Spy.apply(images, weight).sum().backward()
    assert calls == [(False, True)]
    assert images.grad is None


def test_function_returning_wrong_shape_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return (g[:1],)

    with pytest.raises(RuntimeError, match=r"BadBackward returned a gradient of shape \(1,\) for an input of shape"):
        Bad.apply(tc.tensor([1.0, 2.0], requires_grad=True)).sum().backward()


def test_grad_fn_names_and_next_functions():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).sum()
    assert y.grad_fn.name() == "SumBackward"
    (mul_fn, _), = y.grad_fn.next_functions
    assert mul_fn.name() == "MulBackward"
    assert "grad_fn=<SumBackward>" in repr(y)


def test_retain_grad_and_hooks_on_intermediate_tensor():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    seen = []
    h.register_hook(lambda g: seen.append(g.numpy().copy()))
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(seen[0], 2 * h.numpy())
    assert x.grad is not None


def test_hook_can_replace_gradient_and_be_removed():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    handle = x.register_hook(lambda g: g * 10)
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [10.0, 10.0])
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_leaf_grad_is_independent_copy():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = tc.tensor([1.0, 2.0], requires_grad=True)
    (x + y).sum().backward()
    x.grad.numpy()[0] = 100.0
    assert y.grad.numpy()[0] == 1.0


class _Keeps(Function):
    """y = 2x; its backward returns a fresh array, and keeps it in ``kept`` when asked to."""

    kept = []
    keep = False

    @staticmethod
    def forward(ctx, a):
        return a * 2

    @staticmethod
    def backward(ctx, g):
        out = g * 2
        if _Keeps.keep:
            _Keeps.kept.append(out)
        return (out,)


@pytest.mark.parametrize("keep", [False, True])
def test_leaf_takes_a_gradient_nothing_else_holds_without_a_copy(keep, monkeypatch):
    """A leaf's first gradient is the backward's own array when nothing else refers to it (no copy), and a copy
    when something does (here the Function kept it): writing into .grad then leaves the kept array alone."""
    monkeypatch.setattr(_Keeps, "keep", keep)
    monkeypatch.setattr(_Keeps, "kept", [])
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    seen, orig = [], type(x)._accumulate_grad

    def spy(self, g, owned=False):
        seen.append(g)
        orig(self, g, owned)

    monkeypatch.setattr(type(x), "_accumulate_grad", spy)
    _Keeps.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    assert (x.grad.numpy() is seen[0]) is not keep
    x.grad.numpy()[0] = 100.0
    if keep:
        np.testing.assert_array_equal(_Keeps.kept[0], [2.0, 2.0])


def test_weight_gradients_are_not_copied_and_the_hook_sees_its_own(monkeypatch):
    """A Linear layer's weight gradient (a fresh product) becomes .grad as it is: the array that reached the
    leaf; a leaf with a hook gets a copy (the hook may keep the tensor it was handed)."""
    lin = tc.nn.Linear(3, 2)
    arrays = {}
    orig = type(lin.weight)._accumulate_grad

    def spy(self, g, owned=False):
        arrays[id(self)] = g
        orig(self, g, owned)

    held = []
    lin.bias.register_hook(lambda g: held.append(g))
    monkeypatch.setattr(type(lin.weight), "_accumulate_grad", spy)
    lin(tc.tensor(np.ones((4, 3), np.float32))).sum().backward()
    assert lin.weight.grad.numpy() is arrays[id(lin.weight)]
    assert not np.shares_memory(lin.bias.grad.numpy(), held[0].numpy())


def test_float32_stays_float32_through_forward_and_backward():
    x = tc.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    w = tc.tensor(np.ones((4, 3), dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(F.relu(F.linear(x, w)) * 0.5 + 1.0, [0, 1])
    assert loss.dtype == np.float32
    loss.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_leaf_used_twice_sees_its_hook_once_with_the_summed_gradient():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * x).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [2.0, 4.0])


def test_forward_hook_output_replacement_is_what_backward_hooks_see():
    from tinyconv import nn

    lin = nn.Linear(2, 2)
    lin.register_forward_hook(lambda mod, args, out: out * 3)
    seen = []
    lin.register_full_backward_hook(lambda mod, gin, gout: seen.append(gout[0].numpy().copy()))
    y = lin(tc.ones(1, 2, requires_grad=True))
    (y * 2).sum().backward()
    np.testing.assert_allclose(seen[0], [[2.0, 2.0]])
