"""Convolution as numba-compiled loops, in two backends.

* :mod:`.plain` (``kernel="numba-plain"``): the file to read. forward, grad_input and grad_weight as three plain
  ``prange`` loop nests, correct for every stride, padding, dilation, groups and dtype.
* :mod:`.fast` (``kernel="numba"``, and what ``auto`` picks for most layers): the same sums in layouts arranged for
  speed (register tiles, explicit vectors, batch-last copies, scratch buffers). The reading path never needs it.
"""
from . import fast, plain
from .fast.conv import NumbaBackend, backend, clear_workspace

plain_backend = plain.backend

__all__ = ["fast", "plain", "NumbaBackend", "backend", "plain_backend", "clear_workspace"]
