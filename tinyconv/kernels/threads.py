"""Start numba's thread pool with a moderate OpenMP spin-wait.

numba's parallel loops run on an OpenMP pool (GNU libgomp on Linux). After each parallel loop an idle libgomp thread
spin-waits for ``GOMP_SPINCOUNT`` iterations before it sleeps; waking a sleeping thread for the next loop costs tens
of microseconds (more in a virtual machine), and a training step runs dozens of parallel loops. Spinning too long
(libgomp's default, 300000, several milliseconds) takes the core away from anything else the step runs in between,
such as OpenBLAS's threads. :data:`SPINCOUNT` sits between the two: short enough to leave the cores, long enough that
the threads rarely sleep within a step (``benchmarks/bench_lenet.py`` times a step; set ``GOMP_SPINCOUNT`` to
compare).

:func:`ensure_thread_pool` (called by every numba kernel before its first parallel loop) launches the pool with
``GOMP_SPINCOUNT=SPINCOUNT`` and then restores the environment, so libraries loaded later (PyTorch's own OpenMP
runtime, say) are not affected. A user who sets ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` keeps their setting; a
pool already started by other numba code is left as it is.
"""
from __future__ import annotations

import os
import threading

__all__ = ["ensure_thread_pool", "SPINCOUNT"]

SPINCOUNT = "30000"
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
