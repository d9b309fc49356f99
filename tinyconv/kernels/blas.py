"""numpy's OpenBLAS, found and driven: on one thread while tinyconv's own threads run products, and which kernels
it runs.

Why: OpenBLAS (numpy's BLAS on Linux wheels) splits even a small product over all its threads, and its worker
threads then busy-wait (``OPENBLAS_THREAD_TIMEOUT``) for the next call. On a machine with few cores those spinning
threads take the cores that numba's parallel loops need next (``benchmarks/bench_lenet.py --blas-threads``
measures a training step both ways). So tinyconv makes every product on one OpenBLAS thread
(:func:`single_thread`) and spreads large ones over threads of its own, which sleep between calls
(:mod:`.workers`).

numpy's OpenBLAS is found and driven by threadpoolctl (a controller built once, on first use); where numpy's BLAS
is not an OpenBLAS (other platforms, MKL), :func:`single_thread` does nothing and :func:`wide_kernels` is False.
"""
from __future__ import annotations

import contextlib
import threading

from threadpoolctl import ThreadpoolController

__all__ = ["single_thread", "openblas", "wide_kernels", "WIDE_CORES"]

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
