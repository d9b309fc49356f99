"""Creation ops, as PyTorch's: ``zeros``, ``ones``, ``full``, ``arange``, ``randn``, ``randint``, the ``*_like``
forms, ``from_numpy`` and the legacy ``FloatTensor``-style constructors.

Sizes as ints, one tuple/list, or ``size=``; ``dtype=``, ``device=`` and ``requires_grad=`` as in PyTorch. The
Tensor class and the dtype rules are :mod:`tinyconv.tensor`'s; this module only makes tensors.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

from .device import check_device
from .random import default_generator
from .tensor import (
    DEFAULT_DTYPE,
    Tensor,
    _check_dtype,
    _factory_dtype,
    _new,
    _size_arg,
    _to_array,
    _type_word,
    _wrap_output,
    bool_,
    float32,
    float64,
    int32,
    int64,
    uint8,
)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False, **kw) -> Tensor:
    shape = _size_arg(size, kw.pop("size", None), "zeros")
    _no_extra(kw, "zeros")
    return _new(np.zeros(shape, dtype=_factory_dtype(dtype, device)), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False, **kw) -> Tensor:
    shape = _size_arg(size, kw.pop("size", None), "ones")
    _no_extra(kw, "ones")
    return _new(np.ones(shape, dtype=_factory_dtype(dtype, device)), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False, **kw) -> Tensor:
    """Uninitialised in PyTorch; here zero-filled, so a forgotten write shows up as zeros, not garbage."""
    shape = _size_arg(size, kw.pop("size", None), "empty")
    _no_extra(kw, "empty")
    return _new(np.zeros(shape, dtype=_factory_dtype(dtype, device)), requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value``; the dtype follows the value (int64, bool or float32)."""
    shape = _size_arg((size,), None, "full")
    if dtype is None:
        dtype = _scalar_dtype(fill_value)
    return _new(np.full(shape, fill_value, dtype=_factory_dtype(dtype, device)), requires_grad)


def _like(t, dtype):
    arr = t._data if isinstance(t, Tensor) else np.asarray(t)
    return arr.shape, (arr.dtype if dtype is None else dtype)


def zeros_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return zeros(shape, dtype=dt, device=device, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return ones(shape, dtype=dt, device=device, requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return empty(shape, dtype=dt, device=device, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return full(shape, fill_value, dtype=dt, device=device, requires_grad=requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return rand(shape, dtype=dt, device=device, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dt = _like(input, dtype)
    return randn(shape, dtype=dt, device=device, requires_grad=requires_grad)


def _no_extra(kw: dict, fn: str) -> None:
    if kw:
        raise TypeError(f"{fn}() got unexpected keyword argument(s) {sorted(kw)}")


def _scalar_dtype(value) -> np.dtype:
    """PyTorch's dtype for a Python scalar: bool → bool, int → int64, float → the default float32."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return DEFAULT_DTYPE


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``[start, end)`` in steps of ``step``; int64 when all three are integers, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        dtype = int64 if ints else DEFAULT_DTYPE
    values = np.arange(start, end, step, dtype=np.float64 if np.dtype(dtype).kind == "f" else None)
    return _new(values.astype(_factory_dtype(dtype, device)), requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (float32 by default)."""
    steps = operator.index(steps)
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    return _new(np.linspace(start, end, steps).astype(_factory_dtype(dtype, device)), requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """The ``n`` × ``m`` (default ``n`` × ``n``) matrix with ones on the diagonal."""
    n = operator.index(n)
    m = n if m is None else operator.index(m)
    if n < 0 or m < 0:
        raise RuntimeError(f"eye: n and m must be non-negative, got n={n}, m={m}")
    return _new(np.eye(n, m, dtype=_factory_dtype(dtype, device)), requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False, generator=None, **kw) -> Tensor:
    """Standard normal samples from tinyconv's generator (``tc.manual_seed`` makes them repeatable)."""
    shape = _size_arg(size, kw.pop("size", None), "randn")
    _no_extra(kw, "randn")
    dt = _factory_dtype(dtype, device)
    return _new((generator or default_generator()).standard_normal(shape).astype(dt), requires_grad)


def rand(*size, dtype=None, device=None, requires_grad: bool = False, generator=None, **kw) -> Tensor:
    """Uniform samples in [0, 1) from tinyconv's generator."""
    shape = _size_arg(size, kw.pop("size", None), "rand")
    _no_extra(kw, "rand")
    dt = _factory_dtype(dtype, device)
    return _new((generator or default_generator()).random(shape).astype(dt), requires_grad)


def normal(mean=0.0, std=1.0, size=None, *, dtype=None, device=None, requires_grad: bool = False,
           generator=None) -> Tensor:
    """Normal samples: ``normal(0, 1, (3, 3))`` (numbers and a size), or elementwise for tensor ``mean``/``std``."""
    m = mean._data if isinstance(mean, Tensor) else np.asarray(mean)
    s = std._data if isinstance(std, Tensor) else np.asarray(std)
    if size is not None:
        shape = _size_arg((size,), None, "normal")
    else:
        if m.ndim == 0 and s.ndim == 0 and not (isinstance(mean, Tensor) or isinstance(std, Tensor)):
            raise TypeError("normal(): with numbers for mean and std, give a size, e.g. normal(0, 1, (3, 3))")
        shape = np.broadcast_shapes(m.shape, s.shape)
    if np.any(s < 0):
        raise RuntimeError(f"normal expects std >= 0.0, but found std {s.min()}")
    if dtype is None:
        dtype = next((t.dtype for t in (mean, std) if isinstance(t, Tensor) and t.dtype.kind == "f"), DEFAULT_DTYPE)
    dt = _factory_dtype(dtype, device)
    draw = (generator or default_generator()).standard_normal(shape)
    return _new((m + s * draw).astype(dt), requires_grad)


def randint(*args, size=None, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Integers drawn uniformly from ``[low, high)``: ``randint(high, size)`` or ``randint(low, high, size)``,
    ``size`` a tuple; int64 unless ``dtype`` says otherwise."""
    if size is None and args and isinstance(args[-1], (tuple, list)):
        *args, size = args
    if size is None or len(args) not in (1, 2):
        raise TypeError("randint() expects (high, size) or (low, high, size), size a tuple of ints, e.g. "
                        f"randint(0, 10, (3,)); got {len(args)} number(s) and size={size!r}")
    low, high = (0, args[0]) if len(args) == 1 else args
    low, high = operator.index(low), operator.index(high)
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    shape = _size_arg((size,), None, "randint")
    dt = _check_dtype(int64 if dtype is None else dtype)
    check_device(device)
    values = (generator or default_generator()).integers(low, high, shape)
    return _new(values.astype(dt), requires_grad)


class _LegacyTensorType(type):
    """PyTorch's typed constructors: ``FloatTensor([1, 2])`` makes a float32 tensor of that data,
    ``FloatTensor(2, 3)`` one of that shape (zero-filled here), and ``isinstance(t, FloatTensor)`` checks the
    dtype."""

    def __call__(cls, *args):
        if len(args) == 1 and not isinstance(args[0], numbers.Number):
            data = args[0]
            if isinstance(data, Tensor):
                if data.dtype != cls.dtype:
                    raise TypeError(f"{cls.__name__}: expected a {_type_word(cls.dtype)} tensor, got "
                                    f"{_type_word(data.dtype)} (convert with .to(dtype))")
                return data
            return Tensor(_to_array(data, cls.dtype))
        return zeros(*args, dtype=cls.dtype) if args else zeros(0, dtype=cls.dtype)

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Tensor) and obj.dtype == cls.dtype

    def __repr__(cls) -> str:
        return f"<class 'tinyconv.{cls.__name__}'>"


class FloatTensor(metaclass=_LegacyTensorType):
    dtype = float32


class DoubleTensor(metaclass=_LegacyTensorType):
    dtype = float64


class LongTensor(metaclass=_LegacyTensorType):
    dtype = int64


class IntTensor(metaclass=_LegacyTensorType):
    dtype = int32


class ByteTensor(metaclass=_LegacyTensorType):
    dtype = uint8


class BoolTensor(metaclass=_LegacyTensorType):
    dtype = bool_


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (writes to one show in the other); the dtype is kept."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    _check_dtype(array.dtype)
    return _wrap_output(array, None)


def randperm(n: int, *, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """A random permutation of ``0 .. n-1`` (int64 by default) from tinyconv's generator."""
    n = operator.index(n)
    if n < 0:
        raise RuntimeError(f"randperm: n must be non-negative, got {n}")
    check_device(device)
    order = (generator or default_generator()).permutation(n)
    return _new(order.astype(_check_dtype(int64 if dtype is None else dtype)), requires_grad)
