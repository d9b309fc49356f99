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
@pytest.mark.parametrize("column_bytes", [4096, 2**20])
@pytest.mark.parametrize("gw_min_positions", [0, 150])
def test_im2col_same_bits_for_one_and_two_threads(dtype, column_bytes, gw_min_positions, monkeypatch):
    """Chunks go to threads by a fixed rule and grad_weight sums the chunks' parts in chunk order (4096 bytes: a few
    images per chunk, many chunks); a single chunk splits its products over the threads (2**20 bytes: the whole
    batch in one chunk, every product split). grad_weight's minimum of positions per chunk off, or at 150
    (6 images of 25 positions: 6 chunks of 6 or 7 images)."""
    monkeypatch.setattr(im2col, "COLUMN_BYTES", column_bytes)
    monkeypatch.setattr(im2col, "GRAD_WEIGHT_MIN_POSITIONS", gw_min_positions)
    monkeypatch.setattr(workers, "SMALL_MATMUL_MACS", 1)
    split = []
    real = workers.map_chunks
    monkeypatch.setattr(workers, "map_chunks", lambda fn, chunks: split.append(len(chunks)) or real(fn, chunks))
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
    chunks = len(im2col._chunks(37, 36, 25, np.dtype(dtype).itemsize))
    assert chunks > 4 if column_bytes == 4096 else chunks == 1
    assert (max(split) > 4) if column_bytes == 4096 else (split.count(2) >= 3)  # products split at 2 threads
    for a, b in zip(results[0][:3], results[1][:3]):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------- matmul

@pytest.fixture
def recorded_products(fake_blas, monkeypatch):
    """Every np.matmul workers.matmul makes: (thread id, OpenBLAS's thread count then, output shape)."""
    seen = []
    real = np.matmul

    def record(a, b, out=None):
        r = real(a, b, out=out)
        seen.append((threading.get_ident(), fake_blas.threads, r.shape))
        return r

    monkeypatch.setattr(workers.np, "matmul", record)
    return seen


def _ints(rng, shape):
    """Small integers as floats: every sum is exact, so any split must give the very same bits."""
    return rng.integers(-4, 5, shape).astype(np.float64)


def test_small_product_runs_whole_on_the_caller_with_one_blas_thread(recorded_products, fake_blas, two_threads):
    a, b = np.ones((128, 400), np.float32), np.ones((400, 120), np.float32)
    out = workers.matmul(a, b)
    assert recorded_products == [(threading.get_ident(), 1, (128, 120))]
    assert fake_blas.calls == [1, 4] and fake_blas.threads == 4    # the user's count came back
    np.testing.assert_array_equal(out, np.full((128, 120), 400, np.float32))


@pytest.mark.parametrize("m, k, n", [(16, 300, 1000), (1000, 300, 16), (37, 50, 41), (3, 2, 1)])
@pytest.mark.parametrize("transposed", [False, True])
def test_large_product_is_split_over_the_threads(recorded_products, fake_blas, two_threads, monkeypatch, m, k, n,
                                                 transposed):
    """Above SMALL_MATMUL_MACS a product is split along its longer output side into one part per thread, each on
    one OpenBLAS thread, and gives numpy's bits (transposed views, as the backward of a linear layer passes, too)."""
    monkeypatch.setattr(workers, "SMALL_MATMUL_MACS", 1)
    rng = np.random.default_rng(0)
    a = _ints(rng, (k, m)).T if transposed else _ints(rng, (m, k))
    b = _ints(rng, (n, k)).T if transposed else _ints(rng, (k, n))
    out = workers.matmul(a, b)
    np.testing.assert_array_equal(out, a @ b)
    parts = [shape for _, _, shape in recorded_products]
    long_side = max(m, n)
    assert len(parts) == min(2, long_side) and {threads for _, threads, _ in recorded_products} == {1}
    assert sum(s[0] if m > n else s[1] for s in parts) == long_side       # the parts tile the longer side
    assert len({tid for tid, _, _ in recorded_products}) == len(parts)   # ... each on its own thread
    assert fake_blas.threads == 4


def test_split_product_writes_into_out_and_keeps_errors(two_threads, monkeypatch):
    monkeypatch.setattr(workers, "SMALL_MATMUL_MACS", 1)
    rng = np.random.default_rng(1)
    a, b = _ints(rng, (20, 7)), _ints(rng, (7, 90))
    out = np.full((20, 90), np.nan)
    assert workers.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, a @ b)
    with pytest.raises(ValueError):
        workers.matmul(np.ones((2, 3)), np.ones((4, 2)))


@pytest.mark.parametrize("shapes", [((5,), (5,)), ((5,), (5, 3)), ((2, 4, 5), (5, 3)), ((4, 5), (2, 5, 3)),
                                    ((0, 5), (5, 3)), ((6, 5), (5, 0))])
@pytest.mark.parametrize("small", [1 << 24, 1])
def test_same_result_as_numpy(shapes, small, monkeypatch):
    monkeypatch.setattr(workers, "SMALL_MATMUL_MACS", small)
    rng = np.random.default_rng(0)
    a, b = (_ints(rng, s) for s in shapes)
    np.testing.assert_array_equal(workers.matmul(a, b), np.matmul(a, b))


def test_thread_count_restored_when_matmul_raises(fake_blas):
    with pytest.raises(ValueError):
        workers.matmul(np.ones((2, 3)), np.ones((4, 2)))
    assert fake_blas.threads == 4 and fake_blas.calls == [1, 4]


def test_real_openblas_count_unchanged(two_threads, monkeypatch):
    """With numpy's own OpenBLAS (when this process has one), the thread count is the same after products, small
    and split."""
    lib = blas.openblas()
    if lib is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS")
    before = lib.get_num_threads()
    workers.matmul(np.ones((16, 16)), np.ones((16, 16)))
    monkeypatch.setattr(workers, "SMALL_MATMUL_MACS", 1)
    workers.matmul(np.ones((16, 16)), np.ones((16, 64)))
    assert lib.get_num_threads() == before


def test_concurrent_small_products_leave_the_count_as_it_was(fake_blas):
    a = np.ones((8, 8))
    errors = []

    def work():
        try:
            for _ in range(200):
                np.testing.assert_array_equal(workers.matmul(a, a), a * 8)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and fake_blas.threads == 4
