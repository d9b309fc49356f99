"""ReLU's compiled loops (tinyconv.kernels.activations) against NumPy's reference, bit for bit, in float32 and
float64 (NaN, inf and signed values included); the in-place backward's semantics; and the engine's rule for when a
node may overwrite its incoming gradient (Function.owns_grad): never when anyone else can see that array."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import autograd
from tinyconv import functional as F
from tinyconv.functions import ops
from tinyconv.kernels import activations as A

ROOT = Path(__file__).resolve().parents[1]
DTYPES = [np.float32, np.float64]


@pytest.fixture
def compiled_everywhere(monkeypatch):
    """Send arrays of any size to the compiled loops (the default sends small ones to NumPy)."""
    monkeypatch.setattr(A, "MIN_SIZE", 1)


def _values(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    # Sprinkle the values whose handling differs between careless implementations.
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=dtype)
    idx = rng.integers(0, flat.size, size=min(flat.size, 10))
    flat[idx] = specials[rng.integers(0, len(specials), size=idx.size)]
    return x


shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0, as intended
@settings(max_examples=25, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_compiled_relu_matches_numpy_bitwise(shape, dtype, seed):
    old = A.MIN_SIZE
    A.MIN_SIZE = 1
    try:
        rng = np.random.default_rng(seed)
        x, g = _values(rng, shape, dtype), _values(rng, shape, dtype)
        y = A.relu_forward(x)
        ref_y = A.relu_forward_numpy(x)
        assert y.dtype == ref_y.dtype == dtype and y.shape == shape
        np.testing.assert_array_equal(y, ref_y)
        ref_g = A.relu_backward_numpy(g, ref_y)
        got = A.relu_backward(g, y)
        assert got is not g and got.dtype == dtype
        np.testing.assert_array_equal(got, ref_g)
        g_before = g.copy()
        np.testing.assert_array_equal(g, g_before)  # the out-of-place call left g alone
        inplace = A.relu_backward(g, y, overwrite_grad=True)
        assert inplace is g  # written into the gradient it was given
        np.testing.assert_array_equal(inplace, ref_g)
    finally:
        A.MIN_SIZE = old


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_arrays_take_the_compiled_path_and_agree(dtype):
    """A LeNet-conv2-sized activation (above MIN_SIZE) through the public functions, as the op calls them."""
    rng = np.random.default_rng(1)
    shape = (4, 16, 24, 24)
    assert np.prod(shape) >= A.MIN_SIZE
    x, g = _values(rng, shape, dtype), _values(rng, shape, dtype)
    y = A.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    expect = g * (y > 0)
    np.testing.assert_array_equal(A.relu_backward(g, y), expect)
    np.testing.assert_array_equal(A.relu_backward(g, y, overwrite_grad=True), expect)
    np.testing.assert_array_equal(g, expect)


def test_non_contiguous_and_read_only_fall_back_to_numpy(compiled_everywhere):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]  # a strided view
    y = A.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    g = rng.standard_normal(y.shape).astype(np.float32)
    g.flags.writeable = False
    got = A.relu_backward(g, y, overwrite_grad=True)  # cannot write into g: a new array
    assert got is not g
    np.testing.assert_array_equal(got, g * (y > 0))


def test_integer_input_keeps_numpy_semantics():
    x = np.array([-2, 0, 3], dtype=np.int64)
    y = A.relu_forward(x)
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 3]


# ------------------------------------------------------------------------------- the engine's ownership rule
class _Spy(autograd.Observer):
    """Records, for every ReLU node, whether it was told it owns its gradient and whether it wrote into it."""

    def __init__(self):
        self.relu = []

    def call_backward(self, node, grad):
        result = node.backward(node, grad)
        if isinstance(node, ops.Relu):
            self.relu.append((node.owns_grad, result[0] is grad))
        return result


def _conv_relu_pool_net(x, w):
    return F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2).sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_after_pooling_writes_into_its_gradient_and_matches_the_reference(dtype, compiled_everywhere):
    rng = np.random.default_rng(3)
    x = tc.tensor(rng.standard_normal((4, 3, 8, 8)).astype(dtype))
    w = tc.tensor(rng.standard_normal((5, 3, 3, 3)).astype(dtype), requires_grad=True)
    spy = _Spy()
    with autograd.observe(spy):
        _conv_relu_pool_net(x, w).backward()
    assert spy.relu == [(True, True)]  # max-pool's fresh gradient is the engine's to hand over
    got = np.array(w.grad, copy=True)
    w.grad = None
    with pytest.MonkeyPatch.context() as mp:  # the reference: NumPy's out-of-place backward
        mp.setattr(A, "relu_backward", lambda g, out, overwrite_grad=False: A.relu_backward_numpy(g, out))
        _conv_relu_pool_net(x, w).backward()
    np.testing.assert_array_equal(got, np.asarray(w.grad))


def test_gradient_shared_by_two_edges_is_not_overwritten(compiled_everywhere):
    """Add hands the same array to both of its inputs: the first ReLU to run must not scribble on it."""
    rng = np.random.default_rng(4)
    a = tc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = tc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((3, 4)))
    spy = _Spy()
    with autograd.observe(spy):
        ((F.relu(a) + F.relu(b)) * w).sum().backward()
    assert spy.relu[0] == (False, False)
    np.testing.assert_array_equal(np.asarray(a.grad), w.numpy() * (a.numpy() > 0))
    np.testing.assert_array_equal(np.asarray(b.grad), w.numpy() * (b.numpy() > 0))


def test_retained_and_hooked_gradients_are_not_overwritten(compiled_everywhere):
    rng = np.random.default_rng(5)
    x = tc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((3, 4)))
    h = x * 1.0
    y = F.relu(h)
    z = y * w  # z's gradient (ones) becomes y's gradient w*1: a fresh array
    y.retain_grad()
    seen = []
    y.register_hook(lambda g: seen.append(np.array(g, copy=True)) or None)
    z.sum().backward()
    np.testing.assert_array_equal(np.asarray(y.grad), w.numpy())  # not masked by ReLU's backward
    np.testing.assert_array_equal(seen[0], w.numpy())
    np.testing.assert_array_equal(np.asarray(x.grad), w.numpy() * (h.numpy() > 0))


def test_user_gradient_passed_to_backward_is_left_alone(compiled_everywhere):
    rng = np.random.default_rng(6)
    x = tc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = F.relu(x)
    grad = rng.standard_normal((3, 4))
    before = grad.copy()
    y.backward(grad)
    np.testing.assert_array_equal(grad, before)
    np.testing.assert_array_equal(np.asarray(x.grad), before * (x.numpy() > 0))


def test_retain_graph_second_backward_gives_the_same_gradient(compiled_everywhere):
    rng = np.random.default_rng(7)
    x = tc.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((4, 3, 3, 3)))
    loss = _conv_relu_pool_net(x, w)
    loss.backward(retain_graph=True)
    first = np.asarray(x.grad).copy()
    x.grad = None
    loss.backward()
    np.testing.assert_array_equal(np.asarray(x.grad), first)


def test_relu_runs_without_jit():
    code = (
        "import numpy as np; from tinyconv.kernels import activations as A; A.MIN_SIZE = 1\n"
        "x = np.array([[-1.0, 2.0, np.nan]], dtype=np.float32); g = np.ones_like(x)\n"
        "y = A.relu_forward(x); r = A.relu_backward(g, y, overwrite_grad=True)\n"
        "assert np.array_equal(y, np.maximum(x, 0), equal_nan=True) and r is g and r.tolist() == [[0.0, 1.0, 0.0]]\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
