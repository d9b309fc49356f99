"""tinyconv's own worker threads, for kernels whose work splits into independent chunks (im2col's chunks of
images), each chunk's matrix product on one OpenBLAS thread.

Why not OpenBLAS's threads: after a multi-threaded product they spin for a while (see :mod:`.blas`), and the numba
parallel loops that follow in a training step (batch norm, ReLU, pooling) then wait for cores those threads hold
(``benchmarks/bench_resnet.py`` times such a step). With every product on one BLAS thread, splitting the chunks over
these threads gets the other cores back for the products. Our threads sleep on a queue between calls instead of
spinning.

:func:`map_chunks` runs a function over a list of chunks on :func:`num_threads` threads (the caller's among
them), each thread taking every T-th chunk, so which thread does which chunk, and therefore the order of any
per-thread sums, depends only on the thread count: results are reproducible run to run.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba

from . import blas

__all__ = ["map_chunks", "num_threads"]

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
