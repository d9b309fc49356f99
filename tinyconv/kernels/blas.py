"""numpy's matrix product, run on one BLAS thread when the product is small.

Why: OpenBLAS (numpy's BLAS on Linux wheels) splits even a small product over all its threads, and its worker
threads then busy-wait (``OPENBLAS_THREAD_TIMEOUT``) for the next call. On a machine with few cores those spinning
threads take the cores that numba's parallel loops need next; a small product is a little slower on one thread,
far less than what the spinning threads cost (``benchmarks/bench_lenet.py --blas-threads`` measures a training
step both ways).

:func:`matmul` is ``np.matmul`` that drops OpenBLAS to one thread around products of fewer than
:data:`SMALL_MATMUL_MACS` multiply-adds and restores the previous count afterwards. Large products (im2col on wide
layers) keep every thread. numpy's OpenBLAS is found and driven by threadpoolctl (a controller built once, on first
use); where numpy's BLAS is not an OpenBLAS (other platforms, MKL), :func:`matmul` is plain ``np.matmul``. Set
``tinyconv.kernels.blas.SMALL_MATMUL_MACS = 0`` to turn the behaviour off.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["matmul", "single_thread", "openblas", "wide_kernels", "SMALL_MATMUL_MACS", "WIDE_CORES"]

SMALL_MATMUL_MACS = 1 << 24  # products below this many multiply-adds run on one thread
WIDE_CORES = ("skylakex", "cooperlake", "sapphirerapids")  # OpenBLAS's core types with 512-bit vector kernels

_lock = threading.Lock()
_UNSET = object()
_openblas = _UNSET


def openblas():
    """threadpoolctl's controller of the OpenBLAS that numpy loaded in this process, or None.

    It has ``get_num_threads()``, ``set_num_threads(n)``, ``filepath``, ``version`` and ``architecture`` (the core
    type OpenBLAS picked). Built once: the libraries a process has loaded are looked up on the first call only."""
    global _openblas
    if _openblas is _UNSET:
        _openblas = _find_openblas(ThreadpoolController())
    return _openblas


def wide_kernels() -> bool:
    """Whether numpy's OpenBLAS runs kernels with 512-bit vectors: its core type (its own pick for the CPU, or
    ``OPENBLAS_CORETYPE``) is one of :data:`WIDE_CORES`. False for other cores and where numpy's BLAS is not an
    OpenBLAS."""
    lib = openblas()
    return lib is not None and str(lib.architecture).lower() in WIDE_CORES


def _find_openblas(controller: ThreadpoolController):
    """numpy's OpenBLAS among the thread pools ``controller`` found (a PyTorch in the same process brings its own,
    which is not numpy's)."""
    found = [lib for lib in controller.select(internal_api="openblas").lib_controllers
             if "/torch/" not in str(lib.filepath).replace("\\", "/")]
    return min(found, key=lambda lib: str(lib.filepath)) if found else None


def _set_threads(lib, n: int) -> None:
    """Set ``lib``'s thread count from whichever thread holds :data:`_lock`. threadpoolctl lets only one Python
    thread (the first to set it) change a process-wide OpenBLAS pool; tinyconv's sections may open and close on
    different threads, and they are serialised by the lock, so the control is handed to this one."""
    release = getattr(lib, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    lib.set_num_threads(int(n))


_depth = 0          # how many single_thread() sections are open, in any thread
_saved_threads = 1  # OpenBLAS's thread count before the first of them


@contextlib.contextmanager
def single_thread():
    """OpenBLAS on one thread while the block runs (nested and concurrent sections share one count: the first
    sets it, the last restores it). Products made inside run on the calling thread, so several threads of
    tinyconv's own (:mod:`.workers`) can each run one, and no OpenBLAS thread is left spinning afterwards."""
    lib = openblas()
    if lib is None:
        yield
        return
    global _depth, _saved_threads
    with _lock:
        if _depth == 0:
            _saved_threads = lib.get_num_threads()
            if _saved_threads != 1:
                _set_threads(lib, 1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_threads != 1:
                _set_threads(lib, _saved_threads)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` on one BLAS thread when it is small (see the module docstring)."""
    if a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b, out=out)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = max(a.size // max(m * k, 1), b.size // max(k * n, 1), 1)
    if batch * m * k * n >= SMALL_MATMUL_MACS:
        return np.matmul(a, b, out=out)
    with single_thread():
        return np.matmul(a, b, out=out)
