"""The one process-wide setting tinyconv makes when imported: glibc's malloc keeps freed large blocks for reuse.

Why. A training step allocates and frees the same multi-megabyte arrays every time (activations, gradients, kernel
scratch; LeNet conv1's output at batch 128 alone is 128x6x28x28 floats). glibc's malloc hands blocks of 128 KiB and
more straight back to the kernel (``munmap``, or trimming the top of the heap), so the next step has every page of
them mapped in again: thousands of minor page faults a step (``benchmarks/bench_cpu.py`` counts them, and
``tests/test_memory.py`` checks that they are gone). glibc raises its thresholds by itself once a large block is
freed (up to 32 MiB), but a block of exactly the size it last saw, or a heap top a little larger than twice it,
still goes back.

What. At import, on Linux with glibc, tinyconv fixes the two thresholds at the values glibc's own dynamic rule
tops out at: ``M_MMAP_THRESHOLD`` = 32 MiB (blocks below it come from the heap) and ``M_TRIM_THRESHOLD`` = 64
MiB (free memory at the top of the heap is given back only beyond that). So freed blocks below 32 MiB are
reused instead of re-faulted; a process keeps up to its peak heap (plus at most 64 MiB of free top) mapped
instead of shrinking right away. Nothing else changes (no other malloc option, no thread counts).

Opting out. Set ``TINYCONV_MALLOC=0`` (or ``off`` / ``default``) before importing tinyconv; glibc's defaults
stay. Setting glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` /
``MALLOC_MMAP_MAX_`` or a ``glibc.malloc`` entry in ``GLIBC_TUNABLES`` also leaves malloc alone (your setting
wins). :func:`malloc_tuning` says what was done; :func:`release` hands the free memory back to the OS now
(``malloc_trim``), e.g. after training in a long-lived process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

from .environment import OFF, env_switch

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "OPT_OUT_ENV", "tune_malloc", "malloc_tuning", "release"]

#: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the highest value its dynamic threshold reaches by itself.
MMAP_THRESHOLD = 32 * 2**20
#: Twice the mmap threshold: what glibc's dynamic rule sets the trim threshold to.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
#: Environment variable that turns the tuning off ("0", "off", "false", "no", "default").
OPT_OUT_ENV = "TINYCONV_MALLOC"

_OFF = OFF + ("default",)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)
_USER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_state: dict = {"applied": False, "reason": "not attempted"}


def _libc():
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc() -> dict:
    """Apply the thresholds (once; called when tinyconv is imported). Returns :func:`malloc_tuning`."""
    if _state["reason"] != "not attempted":
        return malloc_tuning()
    enabled = env_switch(OPT_OUT_ENV, default=True, off=_OFF)
    user = [k for k in _USER_MALLOC_ENV if k in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    libc = _libc()
    if not enabled:
        _state.update(applied=False, reason=f"{OPT_OUT_ENV}={os.environ[OPT_OUT_ENV]}: glibc's defaults kept")
    elif user:
        _state.update(applied=False, reason=f"{', '.join(user)} set by the user: left to glibc")
    elif libc is None:
        _state.update(applied=False, reason="not glibc on Linux: nothing to do")
    else:
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
        _state.update(applied=ok, reason="set at import" if ok else "mallopt refused the values",
                      mmap_threshold=MMAP_THRESHOLD if ok else None, trim_threshold=TRIM_THRESHOLD if ok else None)
    return malloc_tuning()


def malloc_tuning() -> dict:
    """What tinyconv did to malloc: ``{'applied': bool, 'reason': str, 'mmap_threshold', 'trim_threshold'}``
    (thresholds in bytes, None when not applied)."""
    return {"applied": _state["applied"], "reason": _state["reason"],
            "mmap_threshold": _state.get("mmap_threshold"), "trim_threshold": _state.get("trim_threshold")}


def release() -> bool:
    """Give free heap memory back to the OS now (glibc ``malloc_trim(0)``). True if any was released; False
    where there is nothing to call (not glibc)."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
