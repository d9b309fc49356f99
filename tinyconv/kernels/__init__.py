"""Pure-array convolution and pooling backends, and how one is chosen (this module is the one place for that).

A *backend* is one object with one interface, :class:`~.backend.Backend` (x: ``(N, C_in, H, W)``, w:
``(C_out, C_in/groups, kh, kw)``; conv ``forward`` / ``grad_input`` / ``grad_weight`` and pooling, on arrays,
trusting arguments normalised by :mod:`tinyconv.functional`; plus checked doors ``conv2d_forward`` ... for direct
use; float32 stays float32, float64 stays float64):

========  ==========================  =================================================
name      module                      what it is
========  ==========================  =================================================
direct    :mod:`.direct`              the definition, loops over taps (the reference)
im2col    :mod:`.im2col`              windows -> columns + one BLAS matmul per group
numba     :mod:`.numba_jit.fast`      compiled, parallel loop nests arranged for speed (numba)
numba-    :mod:`.numba_jit.plain`     the same as three plain ``prange`` loop nests: the one to read
plain
auto      :mod:`.auto`                hands each op to the fastest of the others (below)
========  ==========================  =================================================

Pooling has two implementations: NumPy's (:mod:`.pooling`, what every backend inherits; selected as ``numpy``)
and numba's (:mod:`.numba_pooling`, the ``numba`` backend's; selected as ``numba``). A new backend is one file
with a :class:`~.backend.Backend` subclass and one :func:`register` call (docs/architecture.md).

Choosing a kernel
-----------------
Highest priority first: an explicit ``kernel=`` argument (per call or per layer), the
innermost ``with use_kernel(name):`` block (thread-local), ``set_default_kernel(name)``,
the ``TINYCONV_KERNEL`` environment variable (read and validated at import), and finally
``"auto"``.  Pooling: ``use_pool_kernel`` / ``set_default_pool_kernel`` /
``TINYCONV_POOL_KERNEL``, default ``"auto"``.

The "auto" rule (:class:`.auto.AutoBackend`, ``choose_kernel``), decided per operation from measurements on this
project's 2-core reference machine (AMD EPYC, AVX-512, numba 0.68, float32, batch 128;
each op alone in a fresh process, median):

==========================  ======================  ======================
median ms (fwd / gi / gw)   LeNet conv1 (1->6, 5x5,  LeNet conv2 (6->16,
                            pad 2, 28x28)            5x5, 14x14)
==========================  ======================  ======================
direct                      10.7 / 3.2 / 3.5         8.1 / 13.7 / 7.8
im2col                      1.25 / 2.6 / 1.0         1.6 / 3.7 / 3.7
numba                       0.47 / 0.69 / 0.61       0.53 / 0.96 / 0.60
PyTorch 2.13 CPU (ATen)     0.65 / 7.8 / 1.8         0.39 / 0.86 / 0.59
==========================  ======================  ======================

(On a loaded machine every multi-threaded implementation, numba, OpenBLAS and PyTorch
alike, shows stalls of whole scheduler slices, 8 ms and more. OpenBLAS's own threads are
not used by the conv kernels: they spin ~0.1 s after a product and slowed the numba loops
that follow 2-3x; im2col runs its products on tinyconv's worker threads instead, each on one
BLAS thread, see :mod:`.workers`.)

Rule as of the ResNet work (2 threads, batch 128 unless said, ms, medians on the 2-core
reference machine, tinyconv's kernels compared in one process; the machine's speed drifts
by +-30% over minutes, so only large gaps decided):

* numba JIT disabled (``NUMBA_DISABLE_JIT=1``): ``im2col`` for everything (the numba
  loops would run as pure Python).
* stride 1, more than one tap, not depthwise: ``numba``'s register-blocked kernels (:mod:`.numba_jit.blocked`) for
  the forward and grad_input wherever at least half of the positions of their 32-position blocks are outputs and
  two thirds of a tile's 8 (or 6) output channels are real (``numba_jit.uses_blocked``; planes of about 4x4 and up). Intel
  Xeon (AVX-512), 2 threads, batch 32, 64->64 3x3 on 32x32: forward 9.9-10.3 vs 16.0 ms for im2col, grad_input
  10.0-10.4 vs 14.3; LeNet conv1's forward 0.28 vs 0.43 ms for the batch-last loops. Their grad_weight from 32 output
  channels per group and up to ``auto.BLOCKED_GW_MAX_K`` (1024) multiply-adds per output, where the numba
  backend takes it (batches below 32, or outputs of 28x28 and up). Otherwise the rules below.
* forward: ``numba`` when the kernel has more than one tap and either the stride is 1 and
  ``C_in/groups * kh * kw < auto.IM2COL_MIN_K`` (512), or numba's batch-last kernel applies
  (batch >= ``numba_jit.BATCH_LAST_MIN_N`` = 32 and an output of at most 28x28 positions, any
  stride: 64->64 3x3 on 4x4 1.4 vs 2.1-3.1 ms for im2col, on 8x8 4.6 vs 6.2, 16->32 3x3
  stride 2 on 14x14 0.7 vs 1.0-2.1); else ``im2col`` (channel-major columns, one BLAS
  product per chunk of images; 64->64 3x3 on 32x32 at batch 32: 14-18 vs 15-17 ms for the
  flat-rows numba loops; below batch 32 the batch-last kernel does not apply).
* grad_input: ``numba`` when the kernel has more than one tap and either fewer than
  ``auto.IM2COL_MIN_OG`` (32) output channels per group, or an input of at least
  ``auto.NUMBA_MIN_IN_POS`` (1024) positions and ``auto.NUMBA_MIN_IN_POS_CHANNELS`` (8) input channels per group
  (32->64 3x3 stride 2 on 64x64 at batch 32: 13.9 vs 26.2 on the Xeon; 3->64 7x7 stride 2 on 224x224 at batch
  8, 3 channels: 16.5 vs 18.3 on the EPYC but 33 vs 13.5 on the Xeon, so im2col), or a unit stride where numba runs
  it as the batch-last forward of grad_y with flipped filters (64->64 on 4x4 1.3 vs 2.8-3.4,
  32->32 on 7x7 0.9-1.1 vs 2.3-3.6); else ``im2col`` (strided 3x3 at batch 128: 1.2-1.6
  vs 2.0-3.2 ms for numba's phase-by-phase forward, whose phases have 1-2 taps a row; for
  big batches im2col's grad_input uses batch-last columns, :func:`.im2col.grad_input`).
* grad_weight: ``numba`` when the kernel has more than one tap and the batch-last kernel
  applies (batch >= 32; with a stride, at most ``auto.NUMBA_MAX_STRIDED_OUT_POS`` = 256 output
  positions: ResNet's 3x3 stride 2 0.7 vs 1.3 ms, 32->64 3x3 stride 2 on 64x64 at batch 32
  23-27 vs 13-15 ms the other way round), or the stride is 1 and
  ``C_in/groups * kh * kw <= 160`` (the flat-rows kernel), else ``im2col``.
* depthwise (``groups == C_in == C_out``): ``numba`` for all three ops, any stride (its
  per-plane loops, :mod:`.numba_jit.depthwise`, register accumulators at stride 1; 64 channels 3x3 on 32x32,
  batch 32, CPU time at one thread: 3.2 / 3.3 / 4.2 ms vs 4.6 / 3.7 / 6.5 for the general numba loops, before
  the register accumulators; with them, 2 threads on the Xeon, 1.0 / 1.0 / 0.8-0.95 ms, before 1.6 / 1.5 / 1.9).
* pooling: ``numba`` (max pooling forward+backward on LeNet's first layer 1.2 ms vs
  2.0 ms for NumPy's 2x2 fast path, PyTorch 1.9-2.8 ms), ``numpy`` when the JIT is
  disabled.
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings

from . import auto, direct, im2col, numba_jit, numba_pooling, pooling, shapes, windows
from .backend import Backend
from .numba_jit import jit_enabled
from .shapes import normalize_conv_args

__all__ = [
    "Backend", "register", "KERNELS", "POOL_KERNELS", "get_kernel", "set_default_kernel", "get_default_kernel",
    "use_kernel", "choose_kernel", "resolve_kernel", "resolve_backend", "get_pool_kernel",
    "set_default_pool_kernel", "get_default_pool_kernel", "use_pool_kernel", "choose_pool_kernel",
    "resolve_pool_backend", "jit_enabled", "available", "shapes", "windows", "direct", "im2col", "numba_jit",
    "auto", "pooling", "numba_pooling",
]

KERNELS: dict[str, Backend] = {}  # name -> backend, the concrete ones ("auto" delegates to them)
POOL_KERNELS: dict[str, Backend] = {}  # pooling name ("numpy", "numba") -> the backend whose pooling runs
AUTO = "auto"
CONV_OPS = auto.CONV_OPS

_ENV_CONV = "TINYCONV_KERNEL"
_ENV_POOL = "TINYCONV_POOL_KERNEL"


def register(backend: Backend) -> Backend:
    """Make ``backend`` selectable as ``kernel=backend.name`` (in ``F.conv2d``, ``nn.Conv2d``, ``use_kernel``...).

    Its pooling becomes selectable as ``backend.pool_name`` unless a backend registered earlier already runs
    that pooling. Returns the backend."""
    if not isinstance(backend, Backend):
        raise TypeError(f"register() expects a tinyconv.kernels.Backend instance, got {type(backend).__name__}")
    name = backend.name
    if not isinstance(name, str) or not name or name != name.lower() or name == AUTO:
        raise ValueError(f"a backend needs a lower-case name other than 'auto', got {name!r}")
    if KERNELS.get(name, backend) is not backend:
        raise ValueError(f"a different backend is already registered as {name!r}")
    KERNELS[name] = backend
    POOL_KERNELS.setdefault(backend.pool_name, backend)
    return backend


register(direct.backend)
register(im2col.backend)
register(numba_jit.backend)
register(numba_jit.plain_backend)


def available() -> tuple[str, ...]:
    """Names of the registered conv backends ("direct", "im2col", "numba", "numba-plain", and any registered
    since)."""
    return tuple(KERNELS)


def _valid_list(table) -> str:
    return ", ".join(repr(k) for k in table)


def _check_name(name, table, what, plural):
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a string, got {name!r} "
                        f"(type {type(name).__name__})")
    key = name.lower()
    if key != AUTO and key not in table:
        raise ValueError(f"unknown {what} {name!r}; valid {plural}: {_valid_list(table)} "
                         f"(or 'auto')")
    return key


class _Selection(threading.local):
    def __init__(self):
        self.conv_stack = []
        self.pool_stack = []


_local = _Selection()


def _from_env(var, table, what, plural):
    """The kernel named by environment variable ``var``; unset or empty gives "auto", and so does a name that is
    not registered, with a RuntimeWarning naming the variable, its value and the valid names (a typo must not
    stop ``import tinyconv``)."""
    value = os.environ.get(var)
    if value is None or value.strip() == "":
        return AUTO
    try:
        return _check_name(value.strip(), table, what, plural)
    except (TypeError, ValueError):
        warnings.warn(f"environment variable {var}={value!r} is not a valid {what}; valid {plural}: "
                      f"{_valid_list(table)} (or 'auto'); using 'auto'", RuntimeWarning, stacklevel=2)
        return AUTO


_default_conv = _from_env(_ENV_CONV, KERNELS, "conv kernel", "kernels")
_default_pool = _from_env(_ENV_POOL, POOL_KERNELS, "pool kernel", "pool kernels")


# ----------------------------------------------------------------------------- conv

def get_kernel(name) -> Backend:
    """The backend registered under ``name`` ("direct", "im2col", "numba"); ``"auto"`` gives the auto backend,
    which hands each call to the fastest of them (see :func:`choose_kernel`)."""
    key = _check_name(name, KERNELS, "conv kernel", "kernels")
    return auto.backend if key == AUTO else KERNELS[key]


def set_default_kernel(name) -> None:
    """Set the process-wide default conv kernel ("direct", "im2col", "numba" or "auto")."""
    global _default_conv
    _default_conv = _check_name(name, KERNELS, "conv kernel", "kernels")


def get_default_kernel() -> str:
    """The kernel name in force here: the innermost ``use_kernel`` block of this thread,
    else the process-wide default."""
    return _local.conv_stack[-1] if _local.conv_stack else _default_conv


@contextlib.contextmanager
def use_kernel(name):
    """``with use_kernel("im2col"): ...`` selects a conv kernel for a block (this thread)."""
    key = _check_name(name, KERNELS, "conv kernel", "kernels")
    _local.conv_stack.append(key)
    try:
        yield key
    finally:
        _local.conv_stack.pop()


def resolve_kernel(name=None) -> str:
    """The requested kernel name: ``name`` if given (validated), else the default in force (may be "auto")."""
    if name is None:
        return get_default_kernel()
    return _check_name(name, KERNELS, "conv kernel", "kernels")


def resolve_backend(name=None) -> Backend:
    """The backend object for ``name`` (validated), or for the default in force when ``name`` is None."""
    key = get_default_kernel() if name is None else _check_name(name, KERNELS, "conv kernel", "kernels")
    return auto.backend if key == AUTO else KERNELS[key]


def choose_kernel(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, *,
                  op="forward", kernel=None) -> str:
    """Name of the concrete kernel that runs ``op`` ("forward", "grad_input" or
    "grad_weight") for these shapes: ``kernel`` (or the default in force) unless that is
    ``"auto"``, in which case the rule in this module's docstring decides."""
    backend = resolve_backend(kernel)
    args = normalize_conv_args(x_shape, w_shape, stride, padding, dilation, groups)
    return backend.choose(op, tuple(x_shape), tuple(w_shape), args).name


# ----------------------------------------------------------------------------- pooling

def get_pool_kernel(name) -> Backend:
    """The backend whose pooling runs under ``name`` ("numpy", "numba"; "auto" resolves
    with :func:`choose_pool_kernel`)."""
    return resolve_pool_backend(name).choose_pool()


def set_default_pool_kernel(name) -> None:
    """Set the process-wide default pooling kernel ("numpy", "numba" or "auto")."""
    global _default_pool
    _default_pool = _check_name(name, POOL_KERNELS, "pool kernel", "pool kernels")


def get_default_pool_kernel() -> str:
    """The pooling kernel name in force here (innermost ``use_pool_kernel`` block first)."""
    return _local.pool_stack[-1] if _local.pool_stack else _default_pool


@contextlib.contextmanager
def use_pool_kernel(name):
    """``with use_pool_kernel("numpy"): ...`` selects a pooling kernel for a block."""
    key = _check_name(name, POOL_KERNELS, "pool kernel", "pool kernels")
    _local.pool_stack.append(key)
    try:
        yield key
    finally:
        _local.pool_stack.pop()


def resolve_pool_backend(name=None) -> Backend:
    """The backend for pooling name ``name`` (validated; "auto" gives the auto backend), or for the default in
    force when ``name`` is None."""
    key = get_default_pool_kernel() if name is None else _check_name(name, POOL_KERNELS, "pool kernel",
                                                                     "pool kernels")
    return auto.backend if key == AUTO else POOL_KERNELS[key]


def choose_pool_kernel(x_shape=None, *, kernel=None) -> str:
    """Concrete pooling kernel name: ``kernel`` (or the default in force) unless "auto",
    which means "numba" when the JIT is enabled, else "numpy"."""
    return resolve_pool_backend(kernel).choose_pool().pool_name
