"""tinyconv.kernels.workers: chunks spread over tinyconv's threads, results in order, OpenBLAS on one thread
meanwhile, and im2col giving the same bits whatever the thread count."""
import threading

import numba
import numpy as np
import pytest

from tinyconv.kernels import blas, get_kernel, im2col, workers


@pytest.fixture
def two_threads():
    before = numba.get_num_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(before)


def test_results_in_chunk_order_and_threads_used(two_threads):
    seen = set()

    def fn(c):
        seen.add(threading.get_ident())
        return c * c

    assert workers.map_chunks(fn, list(range(11))) == [c * c for c in range(11)]
    assert len(seen) == 2


def test_one_thread_runs_in_the_caller():
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        seen = set()
        assert workers.map_chunks(lambda c: seen.add(threading.get_ident()) or c, [1, 2, 3]) == [1, 2, 3]
        assert seen == {threading.get_ident()}
    finally:
        numba.set_num_threads(before)


def test_empty_and_errors(two_threads):
    assert workers.map_chunks(lambda c: c, []) == []

    def fn(c):
        if c == 3:
            raise ValueError("chunk 3")
        return c

    with pytest.raises(ValueError, match="chunk 3"):
        workers.map_chunks(fn, list(range(6)))
    assert workers.map_chunks(lambda c: c + 1, [0, 1]) == [1, 2]   # the pool still works afterwards


def test_the_callers_error_waits_for_the_workers(two_threads):
    """When the caller's own share raises, map_chunks returns only after the workers' chunks are done."""
    import time

    done = []

    def fn(c):
        if c == 0:
            raise RuntimeError("caller's chunk")
        time.sleep(0.05)
        done.append(c)
        return c

    with pytest.raises(RuntimeError, match="caller's chunk"):
        workers.map_chunks(fn, [0, 1])   # chunk 0 runs in the caller, chunk 1 on the worker
    assert done == [1]


def test_openblas_on_one_thread_inside(two_threads, monkeypatch):
    class Fake:
        threads = 4

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            self.threads = n

    fake = Fake()
    monkeypatch.setattr(blas, "_openblas", fake)
    assert set(workers.map_chunks(lambda c: fake.threads, list(range(4)))) == {1}
    assert fake.threads == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_same_bits_for_one_and_two_threads(dtype, monkeypatch):
    """Chunks go to threads by a fixed rule and grad_weight sums the chunks' parts in chunk order."""
    monkeypatch.setattr(im2col, "COLUMN_BYTES", 4096)  # a few images per chunk: many chunks
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 8, 9, 9)).astype(dtype)
    w = rng.standard_normal((6, 4, 3, 3)).astype(dtype)
    be = get_kernel("im2col")
    before = numba.get_num_threads()
    results = []
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            y = be.conv2d_forward(x, w, 2, 1, 1, 2)
            gy = rng.standard_normal(y.shape).astype(dtype) if not results else results[0][3]
            results.append((y, be.conv2d_grad_input(gy, w, (9, 9), 2, 1, 1, 2),
                            be.conv2d_grad_weight(x, gy, (3, 3), 2, 1, 1, 2), gy))
    finally:
        numba.set_num_threads(before)
    assert len(im2col._chunks(37, 36, 25, np.dtype(dtype).itemsize)) > 4
    for a, b in zip(results[0][:3], results[1][:3]):
        np.testing.assert_array_equal(a, b)
