"""Start numba's thread pool so that its idle threads do not spin for milliseconds.

numba's parallel loops run on an OpenMP pool (GNU libgomp on Linux). By default an idle libgomp thread
spin-waits for about ``GOMP_SPINCOUNT = 300000`` iterations (several milliseconds) after every parallel loop. In
a training step the next operation is often a NumPy matmul whose OpenBLAS threads then cannot get a core, and
OpenBLAS waits for them: measured on the 2-core reference machine, a numba conv followed by a small matmul took
8 ms instead of 1 ms, and a LeNet training step (batch 128) took 28-43 ms instead of 19-23 ms.

:func:`ensure_thread_pool` (called by every numba kernel before its first parallel loop) launches the pool with
``GOMP_SPINCOUNT=1000`` (threads go to sleep after a few microseconds of spinning) and then restores the
environment, so libraries loaded later (PyTorch's own OpenMP runtime, say) are not affected. A user who sets
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` keeps their setting; a pool already started by other numba code is left
as it is.
"""
from __future__ import annotations

import os
import threading

__all__ = ["ensure_thread_pool", "SPINCOUNT"]

SPINCOUNT = "1000"
_started = False
_lock = threading.Lock()


def ensure_thread_pool() -> None:
    """Launch numba's thread pool once, with a short OpenMP spin-wait (see the module docstring)."""
    global _started
    if _started:
        return
    with _lock:
        if _started:
            return
        _started = True
        from numba import config

        if config.DISABLE_JIT or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
            return
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
        try:
            from numba.np.ufunc import parallel

            parallel._launch_threads()
        except Exception:  # pragma: no cover - a numba without this private hook: its own default
            pass
        finally:
            os.environ.pop("GOMP_SPINCOUNT", None)
