"""Optional: random programs of item assignments and in-place operations, run in tinyconv and in PyTorch, give
the same values and gradients (float64, 1e-9). Skipped without torch."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinyconv as tc

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOL = dict(rtol=1e-9, atol=1e-9)

# Each step is written once and run on either library's tensors: y (3, 4) is the tensor being modified, w (4,)
# and v (3,) are leaves that require grad.
STEPS = {
    "basic slice = broadcast value": lambda y, w, v: y.__setitem__((slice(1, 3), slice(None, None, 2)), w[::2] * 2),
    "advanced rows = row vector": lambda y, w, v: y.__setitem__([0, 2], w * 0.5),
    "tensor index = value": lambda y, w, v: y.__setitem__((v.argmax(), 1), v.sum()),
    "boolean mask = number": lambda y, w, v: y.__setitem__(y > 0.5, 0.25),
    "column = 0-d tensor": lambda y, w, v: y.__setitem__((slice(None), 1), v.sum() * 0.1),
    "rows = column vector": lambda y, w, v: y.__setitem__(slice(0, 3), v.reshape(3, 1)),
    "+= tensor": lambda y, w, v: y.__iadd__(w),
    "-= number": lambda y, w, v: y.__isub__(0.5),
    "*= tensor": lambda y, w, v: y.__imul__(w),
    "/= tensor": lambda y, w, v: y.__itruediv__(w.abs() + 1),
    "add_ alpha": lambda y, w, v: y.add_(w, alpha=0.3),
    "sub_ alpha": lambda y, w, v: y.sub_(v.reshape(3, 1), alpha=2.0),
    "mul_ number": lambda y, w, v: y.mul_(1.5),
    "div_ tensor": lambda y, w, v: y.div_(v.reshape(3, 1).abs() + 2),
    "clamp_": lambda y, w, v: y.clamp_(-1.0, 1.0),
    "relu_": lambda y, w, v: y.relu_(),
    "copy_": lambda y, w, v: y.copy_(w * v.reshape(3, 1)),
}


def run(lib, steps, x0, w0, v0):
    make = (lambda a: tc.tensor(a, requires_grad=True)) if lib is tc else \
        (lambda a: torch.tensor(a, requires_grad=True))
    x, w, v = make(x0), make(w0), make(v0)
    y = x * 1.0
    for i, name in enumerate(steps):
        STEPS[name](y, w, v)
        if i % 3 == 2:
            y = y * 1.1 + 0.01  # interleave out-of-place ops, so in-place writes meet non-trivial history
    loss = (y * y).sum() + y.sum() * 0.5
    loss.backward()
    grads = [t.grad.numpy() if t.grad is not None else np.zeros(t.shape) for t in (x, w, v)]
    return y.detach().numpy(), grads


@given(steps=st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_random_assignment_and_inplace_programs_match_pytorch(steps, seed):
    rng = np.random.default_rng(seed)
    x0, w0, v0 = rng.uniform(-2, 2, (3, 4)), rng.uniform(-2, 2, 4), rng.uniform(-2, 2, 3)
    try:
        theirs, their_grads = run(torch, steps, x0, w0, v0)
    except RuntimeError as e:
        # PyTorch refuses e.g. relu_() then *=: relu_ saved the tensor *= overwrote. tinyconv's in-place ops keep
        # private copies of what they save (docs/pytorch.md), so it computes the gradient instead; not comparable.
        assume("modified by an inplace operation" not in str(e))
        raise
    ours, our_grads = run(tc, steps, x0, w0, v0)
    np.testing.assert_allclose(ours, theirs, **TOL)
    for g_ours, g_theirs in zip(our_grads, their_grads):
        np.testing.assert_allclose(g_ours, g_theirs, **TOL)


@pytest.mark.parametrize("lib", ["tc", "torch"])
def test_both_refuse_a_modified_saved_tensor(lib):
    L = tc if lib == "tc" else torch
    a = L.tensor([1.0, 2.0], requires_grad=True)
    x = a * 1.0
    y = x * x
    x.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*is at version 1; expected version 0"):
        y.sum().backward()
