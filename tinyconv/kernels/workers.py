"""tinyconv's own worker threads, for kernels whose work splits into independent chunks (im2col's chunks of
images, the two halves of a large matrix product), each chunk's matrix product on one OpenBLAS thread.

Why not OpenBLAS's threads: after a multi-threaded product they spin for a while (see :mod:`.blas`), and the numba
parallel loops that follow in a training step (batch norm, ReLU, pooling) then wait for cores those threads hold
(``benchmarks/bench_resnet.py`` times such a step). With every product on one BLAS thread, splitting the chunks over
these threads gets the other cores back for the products. Our threads sleep on a queue between calls instead of
spinning.

:func:`map_chunks` runs a function over a list of chunks on :func:`num_threads` threads (the caller's among
them), each thread taking every T-th chunk, so which thread does which chunk, and therefore the order of any
per-thread sums, depends only on the thread count: results are reproducible run to run.

:func:`matmul` is ``np.matmul`` on these threads: a small product runs whole on the calling thread (splitting it
costs more than it saves), a large one is split along its longer output side, so OpenBLAS never runs threads of
its own in a training step (``benchmarks/bench_d2l_ch7.py`` times AlexNet, whose fully connected layers are such
products followed by convolutions).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np

from . import blas

__all__ = ["map_chunks", "num_threads", "matmul", "SMALL_MATMUL_MACS"]

SMALL_MATMUL_MACS = 1 << 24  # products below this many multiply-adds run whole on the calling thread

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def num_threads() -> int:
    """Threads tinyconv's kernels use: numba's setting (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``)."""
    return max(1, int(numba.get_num_threads()))


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinyconv-worker")
            _pool_size = workers
        return _pool


def map_chunks(fn, chunks: list) -> list:
    """``[fn(c) for c in chunks]``, spread over up to :func:`num_threads` threads, with OpenBLAS on one thread
    meanwhile. ``fn`` must release the GIL for its heavy parts (NumPy products, ``nogil`` numba loops) and must
    not write what another chunk reads."""
    threads = min(len(chunks), num_threads())
    with blas.single_thread():
        if threads <= 1:
            return [fn(c) for c in chunks]
        pool = _executor(threads - 1)
        futures = [pool.submit(_run_every, fn, chunks, t, threads) for t in range(1, threads)]
        results = [None] * len(chunks)
        try:
            _place(results, _run_every(fn, chunks, 0, threads), 0, threads)
        finally:  # even when the caller's share raised: no worker may still be running after we return
            wait(futures)
        for t, fut in enumerate(futures, start=1):
            _place(results, fut.result(), t, threads)
        return results


def _run_every(fn, chunks, first, step):
    return [fn(c) for c in chunks[first::step]]


def _place(results, values, first, step):
    results[first::step] = values


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``, OpenBLAS on one thread throughout (see the module docstring): below
    :data:`SMALL_MATMUL_MACS` multiply-adds on the calling thread; a larger product of two matrices split over
    :func:`num_threads` threads along the longer side of its (M, N) output, each part an ordinary product of
    whole rows of ``a`` (or columns of ``b``), so every entry is the same sum as unsplit. A large batched product
    (3-D and up) keeps numpy's own threading."""
    if a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b, out=out)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = max(a.size // max(m * k, 1), b.size // max(k * n, 1), 1)
    threads = num_threads()
    if batch * m * k * n < SMALL_MATMUL_MACS or threads == 1 or b.shape[-2] != k:
        with blas.single_thread():
            return np.matmul(a, b, out=out)
    if a.ndim > 2 or b.ndim > 2:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    side = max(m, n)
    step = -(-side // threads)
    step = -(-step // 16) * 16 if step > 16 else step  # parts of whole vectors
    if n >= m:
        map_chunks(lambda c0: np.matmul(a, b[:, c0:c0 + step], out=out[:, c0:c0 + step]), list(range(0, n, step)))
    else:
        map_chunks(lambda r0: np.matmul(a[r0:r0 + step], b, out=out[r0:r0 + step]), list(range(0, m, step)))
    return out
