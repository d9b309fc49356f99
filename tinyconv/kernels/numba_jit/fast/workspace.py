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
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = OrderedDict()
    key = (tuple(shape), np.dtype(dtype).str, key)
    buf = cache.pop(key, None)
    if buf is None:
        buf = np.zeros(shape, dtype=dtype)
    cache[key] = buf
    while sum(b.nbytes for b in cache.values()) > WORKSPACE_MAX_BYTES and len(cache) > 1:
        cache.popitem(last=False)
    return buf


def scratch_empty(shape, dtype, key):
    """An array of ``shape`` that later calls with the same ``key`` get back, with whatever the last caller left
    in it (for buffers that are overwritten in full before they are read, such as im2col's columns)."""
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = OrderedDict()
    key = (tuple(shape), np.dtype(dtype).str, "empty", key)
    buf = cache.pop(key, None)
    if buf is None:
        buf = np.empty(shape, dtype=dtype)
    cache[key] = buf
    while sum(b.nbytes for b in cache.values()) > WORKSPACE_MAX_BYTES and len(cache) > 1:
        cache.popitem(last=False)
    return buf


def clear_workspace():
    """Drop this thread's cached scratch buffers (see WORKSPACE_MAX_BYTES)."""
    _workspace.buffers = OrderedDict()
