"""Pure-array convolution and pooling backends, and how one is selected by name (which loop runs for a shape is
decided in :mod:`.choose`).

A *backend* is one object with one interface, :class:`~.backend.Backend` (x: ``(N, C_in, H, W)``, w:
``(C_out, C_in/groups, kh, kw)``; conv ``forward`` / ``grad_input`` / ``grad_weight`` and pooling, on arrays,
trusting arguments normalised by :mod:`tinyconv.functional`; plus checked doors ``conv2d_forward`` ... for direct
use; float32 stays float32, float64 stays float64):

===========  ========================  =================================================
name         module                    what it is
===========  ========================  =================================================
direct       :mod:`.direct`            the definition, loops over taps (the reference)
im2col       :mod:`.im2col`            windows -> columns + one BLAS matmul per group
numba-plain  :mod:`.numba_jit.plain`   three plain ``prange`` loop nests: the one to read
numba        :mod:`.numba_jit.fast`    the same sums in layouts arranged for speed
auto         :mod:`.auto`              hands each op to the backend :mod:`.choose` names
tune         :mod:`.tune`              hands each op to the one it timed fastest here
===========  ========================  =================================================

Pooling has two implementations: NumPy's (:mod:`.pooling`, what every backend inherits; selected as ``numpy``)
and numba's (:mod:`.numba_pooling`, the ``numba`` backend's; selected as ``numba``). A new backend is one file
with a :class:`~.backend.Backend` subclass and one :func:`register` call (docs/architecture.md).

Choosing a kernel
-----------------
Highest priority first: an explicit ``kernel=`` argument (per call or per layer), the
innermost ``with use_kernel(name):`` block (thread-local), ``set_default_kernel(name)``,
the ``TINYCONV_KERNEL`` environment variable (read at import; a name that is not registered warns and
gives ``"auto"``), and finally ``"auto"``.  Pooling: ``use_pool_kernel`` / ``set_default_pool_kernel`` /
``TINYCONV_POOL_KERNEL``, default ``"auto"``.

What ``"auto"`` runs for each operation, and which loops the ``numba`` and ``im2col`` backends run inside, is
decided in one place, :mod:`.choose`, with named thresholds (``benchmarks/bench_conv.py`` times the backends
against each other on the layers that set them). In short: numba's compiled loops for multi-tap convolutions
with short reductions, small images in big batches, depthwise layers and pooling; im2col's one large BLAS product
for 1x1 convolutions and long reductions; im2col for everything when the JIT is disabled. ``"tune"`` instead
times ``numba`` and ``im2col`` on each operation's shapes the first time it meets them and runs the faster
(:mod:`.tune`: PyTorch's ``torch.backends.cudnn.benchmark``, for this CPU).
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings

from . import auto, choose, direct, im2col, numba_jit, numba_pooling, pooling, shapes, tune, windows
from .backend import Backend
from .choose import jit_enabled
from .shapes import normalize_conv_args

__all__ = [
    "Backend", "register", "KERNELS", "POOL_KERNELS", "get_kernel", "set_default_kernel", "get_default_kernel",
    "use_kernel", "choose_kernel", "resolve_kernel", "resolve_backend", "get_pool_kernel",
    "set_default_pool_kernel", "get_default_pool_kernel", "use_pool_kernel", "choose_pool_kernel",
    "resolve_pool_backend", "jit_enabled", "available", "shapes", "windows", "direct", "im2col", "numba_jit", "choose",
    "auto", "pooling", "numba_pooling",
]

KERNELS: dict[str, Backend] = {}  # name -> backend, the concrete ones ("auto" and "tune" delegate to them)
POOL_KERNELS: dict[str, Backend] = {}  # pooling name ("numpy", "numba") -> the backend whose pooling runs
AUTO = "auto"
CHOOSERS = {AUTO: auto.backend, "tune": tune.backend}  # the names that pick a concrete backend per operation
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
    if not isinstance(name, str) or not name or name != name.lower() or name in CHOOSERS:
        raise ValueError(f"a backend needs a lower-case name other than {_valid_list(CHOOSERS)}, got {name!r}")
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


def _choosers(table) -> tuple[str, ...]:
    """The choosing names valid beside ``table``'s: "auto" and "tune" for conv kernels, "auto" for pooling."""
    return tuple(CHOOSERS) if table is KERNELS else (AUTO,)


def _or_choosers(table) -> str:
    return "(or " + ", ".join(repr(k) for k in _choosers(table)) + ")"


def _check_name(name, table, what, plural):
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a string, got {name!r} "
                        f"(type {type(name).__name__})")
    key = name.lower()
    if key not in _choosers(table) and key not in table:
        raise ValueError(f"unknown {what} {name!r}; valid {plural}: {_valid_list(table)} {_or_choosers(table)}")
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
                      f"{_valid_list(table)} {_or_choosers(table)}; using 'auto'", RuntimeWarning, stacklevel=2)
        return AUTO


_default_conv = _from_env(_ENV_CONV, KERNELS, "conv kernel", "kernels")
_default_pool = _from_env(_ENV_POOL, POOL_KERNELS, "pool kernel", "pool kernels")


# ----------------------------------------------------------------------------- conv

def get_kernel(name) -> Backend:
    """The backend registered under ``name`` ("direct", "im2col", "numba"); ``"auto"`` gives the auto backend,
    which hands each call to the fastest of them by :mod:`.choose`'s rule, ``"tune"`` the one that times them on
    this CPU (:mod:`.tune`; see :func:`choose_kernel`)."""
    key = _check_name(name, KERNELS, "conv kernel", "kernels")
    return CHOOSERS.get(key) or KERNELS[key]


def set_default_kernel(name) -> None:
    """Set the process-wide default conv kernel ("direct", "im2col", "numba", "auto" or "tune")."""
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
    return CHOOSERS.get(key) or KERNELS[key]


def choose_kernel(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, *,
                  op="forward", kernel=None) -> str:
    """Name of the concrete kernel that runs ``op`` ("forward", "grad_input" or
    "grad_weight") for these shapes (float32): ``kernel`` (or the default in force) unless that is
    ``"auto"``, in which case the rule in this module's docstring decides, or ``"tune"``, which times the
    candidates the first time it meets the shapes (:mod:`.tune`)."""
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
