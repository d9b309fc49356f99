"""tinyconv.kernels.thin_matmul: the products of fully connected layers with a thin side, against NumPy's in
float64 and float32 (every kernel, every tail: rows past a tile, columns past a stripe or a block (BLAS's), sums
past a vector or a run), the same bits on one thread and two, and the products it leaves to others (mismatched
shapes, a wrong or overlapping ``out`` among them)."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import nn
from tinyconv.kernels import thin_matmul

TOL = {np.float64: 1e-12, np.float32: 2e-6}
JIT = not numba.config.DISABLE_JIT
needs_jit = pytest.mark.skipif(not JIT, reason="without numba's JIT thin_matmul runs nothing: BLAS makes the products")


@pytest.fixture
def every_size(monkeypatch):
    """Small products take the kernels too (the tails are what the tests are after)."""
    monkeypatch.setattr(thin_matmul, "MIN_MACS", 0)


def _operands(rng, m, k, n, dtype, a_layout, b_layout):
    """a (m, k) and b (k, n), each C-contiguous ("C") or the transpose of one ("T")."""
    a = rng.standard_normal((m, k) if a_layout == "C" else (k, m)).astype(dtype)
    b = rng.standard_normal((k, n) if b_layout == "C" else (n, k)).astype(dtype)
    return (a if a_layout == "C" else a.T), (b if b_layout == "C" else b.T)


def _check(a, b, dtype):
    got = thin_matmul.matmul(a, b)
    assert got is not None and got.dtype == dtype and got.flags.c_contiguous
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64) + 1e-30  # the size of each sum's terms
    assert np.all(np.abs(got - want) <= TOL[dtype] * scale)
    return got


@needs_jit
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n,a_layout,b_layout", [
    (16, 6400 // 50, 4096 // 40, "C", "T"),   # x @ W.T: the dot tiles
    (1, 5, 3, "C", "T"), (5, 17, 9, "C", "T"), (7, 33, 4, "C", "T"),   # rows and columns past a 4 x 4 tile, tails
    (16, 300, 600, "C", "C"),                  # g @ W: column blocks, runs of rows (past ROW_RUN), tails
    (3, 65, 520, "T", "C"), (32, 129, 33, "C", "C"), (9, 1, 1000, "C", "C"),
    (200, 16, 300, "T", "C"),                  # x.T @ g: the row tiles of a short sum
    (13, 3, 31, "T", "C"), (1000, 32, 70, "C", "C"),
    (16, 40, 4096 + 31, "C", "C"), (16, 40, 5, "C", "C"),   # blocks of fewer stripes; no whole stripe at all
])
def test_each_kernel_and_its_tails_match_numpy(every_size, m, k, n, a_layout, b_layout, dtype):
    _check(*_operands(np.random.default_rng(m * k + n), m, k, n, dtype, a_layout, b_layout), dtype)


@needs_jit
@settings(deadline=None, max_examples=60)
@given(m=st.integers(1, 40), k=st.integers(1, 150), n=st.integers(1, 300), dtype=st.sampled_from([np.float32,
                                                                                                     np.float64]),
       a_layout=st.sampled_from("CT"), b_layout=st.sampled_from("CT"), seed=st.integers(0, 2**16))
def test_thin_products_match_numpy(m, k, n, dtype, a_layout, b_layout, seed):
    if min(m, k) > thin_matmul.THIN:
        k = thin_matmul.THIN
    a, b = _operands(np.random.default_rng(seed), m, k, n, dtype, a_layout, b_layout)
    saved = thin_matmul.MIN_MACS
    thin_matmul.MIN_MACS = 0
    try:
        got = thin_matmul.matmul(a, b)
    finally:
        thin_matmul.MIN_MACS = saved
    if got is None:  # the layouts it leaves to BLAS: a strided a with a transposed b
        assert b.flags.f_contiguous and not b.flags.c_contiguous and not (m <= thin_matmul.THIN
                                                                          and a.flags.c_contiguous)
        return
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64) + 1e-30
    assert np.all(np.abs(got - want) <= TOL[dtype] * scale)


@needs_jit
def test_same_bits_on_one_thread_and_two(every_size):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    rng = np.random.default_rng(0)
    cases = [_operands(rng, 16, 700, 300, np.float32, "C", "T"), _operands(rng, 16, 700, 300, np.float32, "C", "C"),
             _operands(rng, 300, 16, 700, np.float32, "T", "C")]
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = [thin_matmul.matmul(a, b) for a, b in cases]
        numba.set_num_threads(2)
        two = [thin_matmul.matmul(a, b) for a, b in cases]
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))


def test_products_it_leaves_to_others(monkeypatch):
    rng = np.random.default_rng(0)
    big = rng.standard_normal((64, 4096)).astype(np.float32)
    assert thin_matmul.matmul(big, big.T) is None                  # no thin side
    small = rng.standard_normal((4, 8)).astype(np.float32)
    assert thin_matmul.matmul(small, small.T) is None              # below MIN_MACS
    monkeypatch.setattr(thin_matmul, "MIN_MACS", 0)
    assert thin_matmul.matmul(small.astype(np.int64), small.T.astype(np.int64)) is None  # not floats
    assert thin_matmul.matmul(small, small.T.astype(np.float64)) is None                  # two dtypes
    assert thin_matmul.matmul(small[None], small.T[None]) is None                         # batched
    assert thin_matmul.matmul(small, small.T, out=np.empty((4, 4), np.float32).T) is None  # strided out
    assert thin_matmul.matmul(small, small.T, out=np.empty((2, 8), np.float32)) is None    # out of another shape
    assert thin_matmul.matmul(small, small[:, :4]) is None                                 # sums of two lengths
    square = rng.standard_normal((8, 8)).astype(np.float32)
    assert thin_matmul.matmul(small, square, out=square[:4]) is None                       # out overlapping b
    monkeypatch.setattr(thin_matmul.config, "DISABLE_JIT", True)
    assert thin_matmul.matmul(small, small.T) is None                                     # no JIT


@needs_jit
def test_out_is_written(every_size):
    rng = np.random.default_rng(1)
    a, b = _operands(rng, 6, 40, 50, np.float64, "C", "C")
    out = np.full((6, 50), np.nan)
    assert thin_matmul.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)


def test_a_fully_connected_layer_runs_its_products_on_the_thin_kernels(monkeypatch):
    """nn.Linear at batch 16 on a weight large enough: forward, grad_input and grad_weight are the thin products
    (counted; without the JIT, BLAS's), and agree with NumPy's in float64."""
    calls = []
    real = thin_matmul.matmul

    def counting(a, b, out=None):
        r = real(a, b, out)
        calls.append(r is not None)
        return r

    monkeypatch.setattr(thin_matmul, "matmul", counting)
    tc.manual_seed(0)
    layer = nn.Linear(1100, 1000).double()
    x = tc.tensor(np.random.default_rng(2).standard_normal((16, 1100)), requires_grad=True)
    g = np.random.default_rng(3).standard_normal((16, 1000))
    y = layer(x)
    y.backward(tc.tensor(g))
    w = layer.weight.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), x.detach().numpy() @ w.T + layer.bias.detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), g @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad.numpy(), g.T @ x.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert sum(calls) == (3 if JIT else 0) and calls[:2] == [JIT, JIT]
    if JIT:  # the weight's gradient made in the weight's layout (no copy for the optimizer), the same sums
        assert layer.weight.grad.numpy().flags.c_contiguous
        same = real(np.ascontiguousarray(x.detach().numpy().T), g).T
        np.testing.assert_array_equal(layer.weight.grad.numpy(), same)


@pytest.mark.parametrize("batch,features,large", [(64, 1100, True), (8, 40, False)])
def test_a_linear_weight_gradient_in_the_weight_layout_where_the_product_is_large(batch, features, large):
    """Beyond the thin products too: a large product (here 64 rows, past THIN) and a small one (LeNet's layers) give
    the weight a C-contiguous gradient; the small one is NumPy's product ``g.T @ x``, bit for bit."""
    from tinyconv.kernels import workers
    tc.manual_seed(0)
    layer = nn.Linear(features, features)
    x = tc.tensor(np.random.default_rng(4).standard_normal((batch, features)).astype(np.float32))
    g = np.random.default_rng(5).standard_normal((batch, features)).astype(np.float32)
    layer(x).backward(tc.tensor(g))
    grad = layer.weight.grad.numpy()
    assert (batch * features * features >= workers.SMALL_MATMUL_MACS) == large
    np.testing.assert_allclose(grad, g.T.astype(np.float64) @ x.detach().numpy().astype(np.float64), rtol=1e-4,
                               atol=1e-4)
    assert grad.flags.c_contiguous
    if not large:
        np.testing.assert_array_equal(grad, np.matmul(g.T, x.detach().numpy()))
