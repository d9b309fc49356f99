"""numpy's matrix product, run on one BLAS thread when the product is small.

Why: OpenBLAS (numpy's BLAS on Linux wheels) splits even a small product over all its threads, and its worker
threads then busy-wait for a long time (``OPENBLAS_THREAD_TIMEOUT``, about 2^28 cycles; ~0.1 s measured here) for
the next call. On a machine with few cores those spinning threads take the cores that numba's parallel loops need
next: measured on the 2-core reference machine, a LeNet training step (batch 128) ran 13.5-16 ms with numpy's
default threading, 11-14 ms with the fully connected layers' products (at most 6 M multiply-adds each) on one
thread, and 8.3-11 ms once numba's threads also spun a little longer (see :mod:`.threads`). Alone, such a product
is slower on one thread (fc1's 128x400 @ 400x120: 127 us vs 70 us on two, about 0.2 ms a step over its three
products), far less than what the spinning threads cost.

:func:`matmul` is ``np.matmul`` that drops OpenBLAS to one thread around products of fewer than
:data:`SMALL_MATMUL_MACS` multiply-adds and restores the previous count afterwards. Large products (im2col on wide
layers) keep every thread. Where numpy's BLAS is not an OpenBLAS found in this process (other platforms, MKL),
it is plain ``np.matmul``. Set ``tinyconv.kernels.blas.SMALL_MATMUL_MACS = 0`` to turn the behaviour off.
"""
from __future__ import annotations

import contextlib
import ctypes
import re
import threading

import numpy as np

__all__ = ["matmul", "single_thread", "openblas", "SMALL_MATMUL_MACS"]

SMALL_MATMUL_MACS = 1 << 24  # 16.8 M multiply-adds: about 0.35 ms on one core here

_lock = threading.Lock()
_UNSET = object()
_openblas = _UNSET


class OpenBLAS:
    """Handle on the OpenBLAS library numpy loaded: its path and thread-count functions."""

    def __init__(self, lib, prefix: str, suffix: str, path: str):
        self.lib, self.path = lib, path
        self._get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
        self._set = getattr(lib, f"{prefix}_set_num_threads{suffix}")
        self.prefix, self.suffix = prefix, suffix

    def get_num_threads(self) -> int:
        return int(self._get())

    def set_num_threads(self, n: int) -> None:
        self._set(int(n))

    def symbol(self, name: str):
        """The library's function ``name`` with its prefix/suffix (e.g. ``get_corename``)."""
        return getattr(self.lib, f"{self.prefix}_{name}{self.suffix}")


def openblas() -> OpenBLAS | None:
    """The OpenBLAS that numpy loaded in this process (found through ``/proc/self/maps``), or None."""
    global _openblas
    if _openblas is _UNSET:
        _openblas = _find_openblas()
    return _openblas


def _find_openblas() -> OpenBLAS | None:
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return None
    for path in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
        if "/torch/" in path:  # PyTorch's own BLAS, not numpy's
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "")):
            try:
                return OpenBLAS(lib, prefix, suffix, path)
            except AttributeError:
                continue
    return None


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
                lib.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_threads != 1:
                lib.set_num_threads(_saved_threads)


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
