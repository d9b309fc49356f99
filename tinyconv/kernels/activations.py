"""ReLU forward and backward as one pass over memory each (numba, parallel), with NumPy's two-pass versions as the
reference and the fallback.

NumPy's ReLU backward, ``g * (out > 0)``, makes a boolean mask and then a third array: three passes over a tensor
the size of a conv layer's output (LeNet's conv1 at batch 128: 128x6x28x28 floats), single-threaded. The compiled loops
read ``g`` and ``out`` once and write the result once, split over numba's threads; the backward may write into ``g``
itself when the caller owns it (``out=g``: the engine hands a node a gradient nobody else holds, see
``Function.owns_grad`` in :mod:`tinyconv.autograd`). Results are bit-identical to NumPy's: ``max(x, 0)`` keeps NaN
as ``np.maximum`` does, and the backward multiplies by 1 or 0 exactly as ``g * mask`` does (so ``inf * 0`` is still
NaN). Arrays under :data:`MIN_SIZE` elements, non-contiguous ones and ``NUMBA_DISABLE_JIT=1`` use NumPy.
"""
from __future__ import annotations

import numpy as np
from numba import config, njit, prange

from .threads import ensure_thread_pool

__all__ = ["relu_forward", "relu_backward", "relu_forward_numpy", "relu_backward_numpy", "MIN_SIZE"]

_JIT = dict(cache=True, fastmath=False)

# Below this many elements NumPy's loop beats starting numba's threads (LeNet's fully connected activations,
# 128x120, stay with NumPy; its conv activations, 128x16x10x10 and up, go to the compiled loops).
MIN_SIZE = 32768


@njit(parallel=True, **_JIT)
def _relu_fwd(x, y):
    # One flat loop: LLVM turns the select into vector blends (blocking the loop by hand stopped that).
    for i in prange(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v  # NaN stays NaN (NaN <= 0 is false), as in np.maximum(x, 0)


@njit(parallel=True, **_JIT)
def _relu_bwd(g, out, gx):
    for i in prange(g.size):
        gx[i] = g[i] if out[i] > 0 else g[i] * 0  # g * 0, not 0: inf and NaN gradients give NaN, as g * mask


def relu_forward_numpy(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` (the reference)."""
    return np.maximum(x, 0)


def relu_backward_numpy(g: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``g`` where ``out > 0``, else ``g * 0`` (the reference)."""
    return g * (out > 0)


def _compiled(*arrays) -> bool:
    first = arrays[0]
    return (not config.DISABLE_JIT and first.size >= MIN_SIZE and first.dtype.kind == "f"
            and all(a.flags.c_contiguous and a.dtype == first.dtype and a.shape == first.shape for a in arrays))


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` elementwise, a new array of x's shape and dtype (NaN stays NaN)."""
    if not _compiled(x):
        return relu_forward_numpy(x)
    y = np.empty_like(x)
    ensure_thread_pool()
    _relu_fwd(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(g: np.ndarray, out: np.ndarray, overwrite_grad: bool = False) -> np.ndarray:
    """The gradient of ReLU given its output ``out``: ``g`` where ``out > 0``, else ``g * 0``.

    With ``overwrite_grad=True`` the result is written into ``g`` (which is returned); only pass it when nobody
    else reads ``g`` afterwards.
    """
    if not _compiled(g, out) or (overwrite_grad and not g.flags.writeable):
        if overwrite_grad and g.flags.writeable and g.dtype.kind in "fc":
            return np.multiply(g, out > 0, out=g)
        return relu_backward_numpy(g, out)
    gx = g if overwrite_grad else np.empty_like(g)
    ensure_thread_pool()
    _relu_bwd(g.reshape(-1), out.reshape(-1), gx.reshape(-1))
    return gx
