"""``tune``: the kernel that measures. The first time it meets a convolution operation (forward, grad_input or
grad_weight) of a shape, it times the backends that can run it (``numba`` and ``im2col``) on arrays of that shape
on this CPU, and from then on runs the faster one there, for the rest of the process: what
``torch.backends.cudnn.benchmark = True`` does for cuDNN's algorithms.

Why beside ``auto``: :mod:`.choose` decides from the shapes and a few facts of the CPU (vector width, L2 size,
OpenBLAS's kernels), with thresholds set on the machines the benchmarks ran on. On another CPU a rule can pick the
slower backend for a layer; ``tune`` pays a few timed runs per new shape (and compiles both backends' kernels) to
find out instead. The price of that: which backend runs can differ between processes where the two are close, so
results can differ in the last bits between runs (as with cuDNN's benchmark mode); ``auto`` never does.

Timing (:func:`measure`): every candidate runs once untimed (numba compiles, scratch buffers fill), then
:data:`ROUNDS` timed runs each, the candidates alternating, on random arrays of the operation's shapes; the
fastest run of each decides. Without the JIT (``NUMBA_DISABLE_JIT=1``) and during a precompile dry run
(:func:`.precompile.record`, where kernels compute nothing) nothing is measured and ``auto``'s choice is used
(the dry run calls every candidate, so both compile ahead). :func:`picks` lists what was measured and chosen.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from . import choose, precompile, workers
from .auto import BACKENDS, AutoBackend
from .choose import CONV_OPS
from .shapes import conv_out_hw

__all__ = ["TuneBackend", "backend", "measure", "picks", "clear", "CANDIDATES", "ROUNDS"]

CANDIDATES = ("numba", "im2col")  # the backends tune chooses between (the ones auto hands operations to)
ROUNDS = 3  # timed runs of each candidate per operation and shape

_picks: dict[tuple, tuple[str, dict[str, float]]] = {}  # key -> (chosen backend, {candidate: best seconds})
_lock = threading.Lock()


def _arrays(op, x_shape, w_shape, args, dtype, rng):
    """Inputs of ``op`` for these shapes, random (zeros where ``rng`` is None): the arguments its backend method
    takes."""
    def array(shape):
        return np.zeros(shape, dtype) if rng is None else rng.standard_normal(shape).astype(dtype)

    out_hw = conv_out_hw(x_shape, w_shape, args)
    w = array(w_shape)
    if op == "forward":
        return (array(x_shape), w, args)
    gy = array((x_shape[0], w_shape[0]) + out_hw)
    if op == "grad_input":
        return (gy, w, tuple(x_shape[2:]), args)
    return (array(x_shape), gy, args)


def measure(op, x_shape, w_shape, args, dtype=np.float32, candidates=CANDIDATES, rounds=ROUNDS) -> dict:
    """``{backend name: fastest of rounds seconds}`` for ``op`` of the convolution of an input of ``x_shape``
    (N, C_in, H, W) with a weight of ``w_shape`` (C_out, C_in/groups, kh, kw) and normalised ``args``, on random
    arrays of ``dtype`` (zeros with ``rounds=0``: nothing is timed, the candidates only run once): each candidate
    once untimed, then ``rounds`` timed runs each, alternating. A candidate that raises is left out (an empty dict
    if all do)."""
    if op not in CONV_OPS:
        raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
    inputs = _arrays(op, x_shape, w_shape, args, np.dtype(dtype), np.random.default_rng(0) if rounds else None)
    runs = {name: getattr(BACKENDS[name], op) for name in candidates}
    for name, run in list(runs.items()):
        try:
            run(*inputs)
        except Exception:  # a backend that cannot run this operation is no candidate
            del runs[name]
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(*inputs)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def picks() -> list[dict]:
    """What this process measured: one dict per (op, shapes, arguments, dtype, threads) with the backend chosen
    and each candidate's time in seconds."""
    with _lock:
        items = list(_picks.items())
    return [dict(op=op, x_shape=xs, w_shape=ws, args=a, dtype=dt, threads=th, kernel=name, seconds=dict(times))
            for (op, xs, ws, a, dt, th), (name, times) in items]


def clear() -> None:
    """Forget every measured choice (the next operation of each shape measures again)."""
    with _lock:
        _picks.clear()


class TuneBackend(AutoBackend):
    """``auto`` with each choice between ``numba`` and ``im2col`` measured on this CPU (see the module
    docstring)."""

    name = "tune"

    def choose(self, op, x_shape, w_shape, args, dtype=None):
        if not choose.jit_enabled():
            return super().choose(op, x_shape, w_shape, args, dtype)
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if precompile.recording():  # the kernels compute nothing: let every candidate's kernels be recorded
            measure(op, x_shape, w_shape, args, dtype, rounds=0)
            return super().choose(op, x_shape, w_shape, args, dtype)
        key = (op, tuple(x_shape), tuple(w_shape), args, dtype.str, workers.num_threads())
        with _lock:
            found = _picks.get(key)
        if found is None:
            times = measure(op, x_shape, w_shape, args, dtype)
            name = min(times, key=times.get) if times else choose.conv_backend(op, x_shape, w_shape, args)
            with _lock:
                found = _picks.setdefault(key, (name, times))
        return BACKENDS[found[0]]


backend = TuneBackend()
