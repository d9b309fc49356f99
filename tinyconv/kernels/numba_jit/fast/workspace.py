"""The numba backend's scratch buffers (the batch-last copies), kept between calls.

Why: a fresh multi-megabyte array is fresh memory from the OS whenever glibc has just given the last one back,
and the page faults of touching it can cost as much as the kernel (``benchmarks/bench_cpu.py`` counts the page
faults of a training step). Per thread, least recently used first out,
at most ``WORKSPACE_MAX_BYTES`` in all.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

__all__ = ["WORKSPACE_MAX_BYTES", "scratch_zeros", "scratch_empty", "clear_workspace"]

WORKSPACE_MAX_BYTES = 256 * 2**20
_workspace = threading.local()


def scratch_zeros(shape, dtype, key):
    """A zero-initialised array of ``shape`` that later calls with the same ``key`` get back.
    Callers only ever write the part of it that ``key`` identifies (the interior of a padded
    copy), so what must stay zero stays zero. Never returned to users."""
    return _scratch((tuple(shape), np.dtype(dtype).str, key), shape, dtype, np.zeros)


def scratch_empty(shape, dtype, key):
    """An array of ``shape`` that later calls with the same ``key`` get back, with whatever the last caller left
    in it (for buffers that are overwritten in full before they are read, such as im2col's columns)."""
    return _scratch((tuple(shape), np.dtype(dtype).str, "empty", key), shape, dtype, np.empty)


def _scratch(key, shape, dtype, make):
    """This thread's buffer under ``key``, made by ``make`` the first time; the least recently used ones are
    dropped while the buffers hold more than WORKSPACE_MAX_BYTES (a running total: no sum over them per call)."""
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        clear_workspace()
        cache = _workspace.buffers
    buf = cache.pop(key, None)
    if buf is None:
        buf = make(shape, dtype=dtype)
        _workspace.nbytes += buf.nbytes
    cache[key] = buf
    while _workspace.nbytes > WORKSPACE_MAX_BYTES and len(cache) > 1:
        _workspace.nbytes -= cache.popitem(last=False)[1].nbytes
    return buf


def clear_workspace():
    """Drop this thread's cached scratch buffers (see WORKSPACE_MAX_BYTES)."""
    _workspace.buffers = OrderedDict()
    _workspace.nbytes = 0
