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


def _thread_count_functions(lib):
    """``(get, set)`` of ``lib``'s thread count: OpenBLAS's own ``openblas_get_num_threads`` and
    ``openblas_set_num_threads`` (through the ctypes handle threadpoolctl found them by), called directly, or the
    controller's methods where those cannot be had (an OpenMP-threaded OpenBLAS, whose limit is per thread, or a
    controller without the lookup). threadpoolctl's calls cost several microseconds each, and a training step opens
    a section around every product (``benchmarks/bench_lenet.py`` times the step)."""
    lookup = getattr(lib, "_get_symbol", None)
    if lookup is not None and getattr(lib, "threading_layer", None) != "openmp":
        try:
            get, put = lookup("openblas_get_num_threads"), lookup("openblas_set_num_threads")
        except Exception:  # pragma: no cover - threadpoolctl's private lookup changed: use its public calls
            get = put = None
        if get is not None and put is not None:
            return get, put
    return lib.get_num_threads, lambda n: _set_threads(lib, n)


_depth = 0          # how many single_thread() sections are open, in any thread
_saved_threads = 1  # OpenBLAS's thread count before the first of them
_counts = (None, None, None)  # (lib, get, set): the thread-count functions of the controller last used


def single_thread():
    """OpenBLAS on one thread while the block runs (nested and concurrent sections share one count: the first
    sets it, the last restores it). Products made inside run on the calling thread, so several threads of
    tinyconv's own (:mod:`.workers`) can each run one, and no OpenBLAS thread is left spinning afterwards.
    ``with single_thread(): ...``"""
    return _Section()


class _Section:
    """One :func:`single_thread` block (a class, not a generator: a training step opens dozens)."""

    __slots__ = ("_put",)

    def __enter__(self):
        global _depth, _saved_threads, _counts
        self._put = None
        lib = openblas()
        if lib is None:
            return self
        with _lock:
            if _counts[0] is not lib:
                _counts = (lib,) + _thread_count_functions(lib)
            _, get, self._put = _counts
            if _depth == 0:
                _saved_threads = get()
                if _saved_threads != 1:
                    self._put(1)
            _depth += 1
        return self

    def __exit__(self, *exc_info):
        global _depth
        if self._put is not None:
            with _lock:
                _depth -= 1
                if _depth == 0 and _saved_threads != 1:
                    self._put(_saved_threads)
        return False
