"""Adam's update of one parameter as one compiled pass over its arrays, with NumPy's version as the reference and
the fallback.

Why: NumPy's update is eight array operations, each a pass over memory and most a fresh temporary; for a small
model the step is mostly their call overhead (``benchmarks/bench_cpu.py`` measures a LeNet step). The
compiled loop reads and writes each array once. It does the same float operations in the same order as
:func:`adam_update_numpy` (which follows PyTorch's single-tensor Adam), with the hyper-parameters rounded to the
arrays' dtype first as NumPy does with Python floats, and without fused multiply-adds, so both give the same
bits, except where a value would be subnormal: the compiled pass runs with subnormals flushed to zero (the
thread's setting restored after it; :mod:`.fpenv`). Serial: the arrays are small, and waking numba's threads
would cost more than it saves. ``error_model="numpy"``: a division by zero is IEEE's inf/nan, as in NumPy, instead
of a test for Python's ZeroDivisionError that kept the loop from vectorising (vector square roots and divisions
round exactly as the scalar ones, so the bits are the same).
"""
from __future__ import annotations

import numpy as np
from numba import config, njit

from .fpenv import flush_begin, flush_end

__all__ = ["adam_update", "adam_update_numpy"]


@njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _adam(p, g, m, v, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps):
    old = flush_begin()  # subnormal moments (they decay into them) are 0: no microcode assists (see .fpenv)
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + one_minus_beta1 * (gi - m[i])
        vi = v[i] * beta2 + one_minus_beta2 * gi * gi
        m[i] = mi
        v[i] = vi
        denom = np.sqrt(vi) / bias_correction2_sqrt + eps
        p[i] = p[i] - step_size * (mi / denom)
    flush_end(old)


def adam_update_numpy(p, g, m, v, beta1, beta2, step_size, bias_correction2_sqrt, eps) -> None:
    """In place: ``m``, ``v`` (the moment estimates) and ``p``, given the gradient ``g`` (the reference)."""
    m += (1.0 - beta1) * (g - m)  # lerp towards g: beta1*m + (1-beta1)*g
    v *= beta2
    v += (1.0 - beta2) * g * g
    denom = np.sqrt(v) / bias_correction2_sqrt + eps
    p -= step_size * (m / denom)


def adam_update(p, g, m, v, beta1, beta2, step_size, bias_correction2_sqrt, eps) -> None:
    """:func:`adam_update_numpy` in one compiled pass where it can (contiguous float arrays of one dtype and
    shape, JIT enabled; a non-contiguous gradient is copied first), else NumPy's. ``step_size`` is ``lr / (1 - beta1**t)``."""
    if not g.flags.c_contiguous:  # e.g. a Linear layer's weight gradient, a transposed product: copy (small)
        g = np.ascontiguousarray(g)
    arrays = (p, g, m, v)
    if (config.DISABLE_JIT or p.dtype.kind != "f"
            or not all(a.flags.c_contiguous and a.dtype == p.dtype and a.shape == p.shape for a in arrays)
            or not p.flags.writeable):
        adam_update_numpy(p, g, m, v, beta1, beta2, step_size, bias_correction2_sqrt, eps)
        return
    cast = p.dtype.type  # NumPy rounds a Python float to the array's dtype before the operation
    _adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), cast(1.0 - beta1), cast(beta2),
          cast(1.0 - beta2), cast(step_size), cast(bias_correction2_sqrt), cast(eps))
