"""``Tensor``: a NumPy array plus what reverse-mode autograd needs (``grad``, ``requires_grad``, ``grad_fn``).

A Tensor made by the user is a *leaf* (``grad_fn is None``); a Tensor made by an operation on tensors that require
a gradient remembers that operation in ``grad_fn`` (see :mod:`tinyconv.autograd`). Operators follow NumPy's
broadcasting; a Python number takes the tensor's dtype (``float32 tensor * 2.0`` stays float32, like PyTorch).
"""
from __future__ import annotations

import numbers
import weakref

import numpy as np

from . import autograd
from .functions import ops
from .random import default_generator

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)

SUPPORTED_DTYPES = (float32, float64, int64, int32, uint8, bool_)
DEFAULT_DTYPE = float32


class ShapeError(ValueError, RuntimeError):
    """Operands whose shapes don't fit together. Catchable as ValueError, or as RuntimeError like PyTorch's."""


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(f"unsupported dtype {dtype!r}; tinyconv tensors support {names}")
    return dt


def _to_array(data, dtype=None) -> np.ndarray:
    """The ndarray a Tensor wraps: arrays keep their dtype, Python numbers become float32 (bools stay bool)."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype != np.bool_:
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"cannot make a tensor from {type(data).__name__} data of dtype {arr.dtype}")
            arr = arr.astype(DEFAULT_DTYPE)
    if dtype is not None:
        arr = arr.astype(_check_dtype(dtype), copy=False)
    else:
        _check_dtype(arr.dtype)
    return arr


def _wrap_output(out, ctx) -> "Tensor":
    """Wrap an op's result array without copying; attach the graph node when one was recorded."""
    t = Tensor.__new__(Tensor)
    t.data = out if isinstance(out, np.ndarray) else np.asarray(out)
    t.grad = None
    t.grad_fn = ctx
    t.requires_grad = ctx is not None
    t._hooks = {}
    t._retains_grad = False
    if ctx is not None:
        ctx.output_ref = weakref.ref(t)
        ctx.output_meta = (t.data.shape, t.data.dtype)
    return t


def _broadcast_check(a: "Tensor", b: "Tensor", op: str) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        # Name the first failing dimension from the right, as PyTorch does.
        for i in range(1, min(a.ndim, b.ndim) + 1):
            x, y = a.shape[-i], b.shape[-i]
            if x != y and x != 1 and y != 1:
                dim = max(a.ndim, b.ndim) - i
                raise ShapeError(
                    f"{op}: the size of tensor a ({x}) must match the size of tensor b ({y}) at non-singleton "
                    f"dimension {dim} (shapes {a.shape} and {b.shape} do not broadcast)"
                ) from None
        raise


class Tensor:
    """An n-dimensional array with reverse-mode autograd.

    Attributes: ``data`` (the ``np.ndarray``), ``grad`` (a Tensor or None), ``requires_grad``, ``grad_fn``
    (the node that made it, None for leaves). Image batches are (N, C, H, W) throughout tinyconv.
    """

    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operator
    __hash__ = object.__hash__  # == is elementwise, identity stays the hash (tensors can key dicts)

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _to_array(data, dtype)
        self.grad = None
        self.grad_fn = None
        self._hooks = {}
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---------------------------------------------------------------------------------------- basic facts
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"a Tensor with {self.data.size} elements cannot be converted to a Python scalar")
        return self.data.reshape(()).item()

    def numpy(self) -> np.ndarray:
        return self.data

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self.data
        return self.data.astype(dtype, copy=bool(copy))

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.data.size} values is ambiguous")
        return bool(self.data.reshape(()).item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extras = []
        if self.dtype not in (float32, int64, bool_):
            extras.append(f"dtype={self.dtype.name}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # --------------------------------------------------------------------------------------- autograd API
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not np.issubdtype(self.dtype, np.floating):
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients (got dtype {self.dtype.name})"
            )
        if not requires_grad and not self.is_leaf:
            raise RuntimeError("you can only change requires_grad flags of leaf tensors; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return _wrap_output(self.data, None)

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor wrt every leaf that requires one into the leaves' ``.grad``."""
        autograd.backward(self, gradient, retain_graph=retain_graph)

    def zero_grad(self) -> None:
        self.grad = None

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor too (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a Tensor that has requires_grad=False")
        if not self.is_leaf:
            self._retains_grad = True

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    # ------------------------------------------------------------------- what the autograd engine calls
    # (the engine does not import Tensor: it wraps results and hands gradients over through these three)
    _op_result = staticmethod(_wrap_output)

    def _run_hooks(self, grad: np.ndarray) -> np.ndarray:
        """Apply this tensor's ``register_hook`` functions; a hook may return a replacement gradient."""
        for hook in list(self._hooks.values()):
            result = hook(Tensor(grad))
            if result is not None:
                grad = autograd.as_grad_array(result, grad.shape, grad.dtype, f"hook {hook!r}")
        return grad

    def _accumulate_grad(self, grad: np.ndarray) -> None:
        """A leaf receives its summed gradient: run its hooks, then add it into ``.grad``."""
        if self._hooks:
            grad = self._run_hooks(grad)
        if self.grad is None:
            # Copy: the engine may hand the same array to several leaves, and users may mutate .grad in place.
            self.grad = Tensor(np.array(grad, dtype=self.data.dtype, copy=True))
        else:
            self.grad.data = self.grad.data + grad

    def _nonleaf_grad(self, grad: np.ndarray) -> np.ndarray:
        """A non-leaf with hooks or ``retain_grad()`` receives its gradient; returns the (hooked) gradient."""
        if self._hooks:
            grad = self._run_hooks(grad)
        if self._retains_grad:
            if self.grad is None:
                self.grad = Tensor(np.array(grad, copy=True))
            else:
                self.grad.data = self.grad.data + grad
        return grad

    def register_hook(self, hook):
        """Call ``hook(grad)`` when the gradient wrt this tensor is computed; a returned Tensor replaces it.

        Returns a handle whose ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        return _HookHandle.add(self._hooks, hook)

    # ----------------------------------------------------------------------------------------- arithmetic
    def _coerce(self, other) -> "Tensor":
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number) and not isinstance(other, bool):
            dt = self.dtype if np.issubdtype(self.dtype, np.floating) else None
            return Tensor(np.asarray(other, dtype=dt) if dt is not None else np.asarray(other))
        return Tensor(other)

    def _binary(self, fn, other, op, reverse=False):
        other = self._coerce(other)
        a, b = (other, self) if reverse else (self, other)
        _broadcast_check(a, b, op)
        return fn.apply(a, b)

    def __add__(self, other):
        return self._binary(ops.Add, other, "add")

    def __radd__(self, other):
        return self._binary(ops.Add, other, "add", reverse=True)

    def __sub__(self, other):
        return self._binary(ops.Sub, other, "sub")

    def __rsub__(self, other):
        return self._binary(ops.Sub, other, "sub", reverse=True)

    def __mul__(self, other):
        return self._binary(ops.Mul, other, "mul")

    def __rmul__(self, other):
        return self._binary(ops.Mul, other, "mul", reverse=True)

    def __truediv__(self, other):
        return self._binary(ops.Div, other, "div")

    def __rtruediv__(self, other):
        return self._binary(ops.Div, other, "div", reverse=True)

    def __pow__(self, other):
        return self._binary(ops.Pow, other, "pow")

    def __rpow__(self, other):
        return self._binary(ops.Pow, other, "pow", reverse=True)

    def __neg__(self):
        return ops.Neg.apply(self)

    def __matmul__(self, other):
        return matmul(self, self._coerce(other))

    def __rmatmul__(self, other):
        return matmul(self._coerce(other), self)

    # Comparisons give boolean tensors and never carry gradients.
    def _compare(self, other, fn):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(fn(self.data, other))

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    # ---------------------------------------------------------------------------------------- elementwise
    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def log1p(self):
        return ops.Log1p.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def abs(self):
        return ops.Abs.apply(self)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return ops.Clamp.apply(self, min=min, max=max)

    clip = clamp

    def relu(self):
        return ops.Relu.apply(self)

    def sigmoid(self):
        return ops.Sigmoid.apply(self)

    def tanh(self):
        return ops.Tanh.apply(self)

    def softmax(self, dim):
        return ops.Softmax.apply(self, dim=ops.one_dim(dim, self.ndim, "softmax"))

    def log_softmax(self, dim):
        return ops.LogSoftmax.apply(self, dim=ops.one_dim(dim, self.ndim, "log_softmax"))

    # ----------------------------------------------------------------------------------------- reductions
    def sum(self, dim=None, keepdim: bool = False):
        return ops.Sum.apply(self, dim=ops.normalize_dims(dim, self.ndim), keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        if not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"mean() needs a floating point tensor, got dtype {self.dtype.name}")
        return ops.Mean.apply(self, dim=ops.normalize_dims(dim, self.ndim), keepdim=keepdim)

    def amax(self, dim=None, keepdim: bool = False):
        self._check_nonempty("amax")
        return ops.Amax.apply(self, dim=ops.normalize_dims(dim, self.ndim), keepdim=keepdim)

    def amin(self, dim=None, keepdim: bool = False):
        self._check_nonempty("amin")
        return ops.Amax.apply(self, dim=ops.normalize_dims(dim, self.ndim), keepdim=keepdim, minimum=True)

    def max(self, dim=None, keepdim: bool = False):
        """Maximum over ``dim`` (or all elements); with ``dim`` it returns the values, like ``amax``."""
        return self.amax(dim, keepdim)

    def min(self, dim=None, keepdim: bool = False):
        """Minimum over ``dim`` (or all elements); with ``dim`` it returns the values, like ``amin``."""
        return self.amin(dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        return Tensor(np.argmax(self.data, axis=dim, keepdims=keepdim).astype(np.int64))

    def argmin(self, dim=None, keepdim: bool = False):
        return Tensor(np.argmin(self.data, axis=dim, keepdims=keepdim).astype(np.int64))

    def _check_nonempty(self, op):
        if self.data.size == 0:
            raise RuntimeError(f"{op}(): expected a non-empty tensor, got shape {self.shape}")

    # ------------------------------------------------------------------------------------------ reshaping
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            np.empty(self.shape, dtype=np.bool_).reshape(shape)  # cheap validity check with numpy's rules
        except ValueError:
            raise ShapeError(
                f"shape {tuple(shape)} is invalid for input of size {self.data.size} (shape {self.shape})"
            ) from None
        return ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return self.reshape(1)
        start = ops.normalize_dims(start_dim, self.ndim)[0]
        end = ops.normalize_dims(end_dim, self.ndim)[0]
        if start > end:
            raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
        shape = self.shape[:start] + (int(np.prod(self.shape[start:end + 1])),) + self.shape[end + 1:]
        return ops.Reshape.apply(self, shape=shape)

    def permute(self, *dims):
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor with {self.ndim} dimensions")
        return ops.Permute.apply(self, dims=ops.normalize_dims(dims, self.ndim))

    def transpose(self, dim0: int, dim1: int):
        d0, d1 = (ops.normalize_dims(d, self.ndim)[0] for d in (dim0, dim1))
        dims = list(range(self.ndim))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return ops.Permute.apply(self, dims=tuple(dims))

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim} (shape {self.shape})")
        return self if self.ndim < 2 else self.transpose(0, 1)

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.ndim))))

    def squeeze(self, dim=None):
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            dims = ops.normalize_dims(dim, self.ndim)
            shape = tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1))
        return ops.Reshape.apply(self, shape=shape)

    def unsqueeze(self, dim: int):
        d = ops.normalize_dims(dim, self.ndim + 1)[0]
        return ops.Reshape.apply(self, shape=self.shape[:d] + (1,) + self.shape[d:])

    def __getitem__(self, index):
        index = _index_to_numpy(index)
        return ops.GetItem.apply(self, index=index)

    # ------------------------------------------------------------------------------------------- dtypes
    def to(self, dtype):
        dt = _check_dtype(dtype)
        if dt == self.dtype:
            return self
        return ops.Cast.apply(self, dtype=dt)

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)


def _index_to_numpy(index):
    """Tensors inside an index become arrays (integer or boolean), so NumPy's indexing rules apply."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


class _HookHandle:
    """What ``register_hook`` returns: ``handle.remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict, key: int):
        self._hooks_ref = hooks
        self.id = key

    @classmethod
    def add(cls, hooks: dict, fn):
        if not callable(fn):
            raise TypeError(f"hook must be callable, got {type(fn).__name__}")
        cls._next_id += 1
        hooks[cls._next_id] = fn
        return cls(hooks, cls._next_id)

    def remove(self) -> None:
        self._hooks_ref.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# ----------------------------------------------------------------------------------------- free functions
def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a leaf tensor (a copy of ``data``). Python numbers become float32; NumPy arrays keep their dtype."""
    arr = _to_array(data, dtype)
    return Tensor(np.array(arr, copy=True), requires_grad=requires_grad)


def as_tensor(data, dtype=None) -> Tensor:
    """Like :func:`tensor` but shares memory with ``data`` when it is already an array (or returns a Tensor as is)."""
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype):
        return data
    return Tensor(data, dtype=dtype)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch rules (1-D operands promoted, batch dimensions broadcast)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
            f"(last dimension of the first, {ka}, must equal "
            f"{'the length' if b.ndim == 1 else 'the second-to-last dimension'} of the second, {kb})"
        )
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(
                f"matmul: batch dimensions {a.shape[:-2]} and {b.shape[:-2]} do not broadcast "
                f"(shapes {a.shape} and {b.shape})"
            ) from None
    return ops.MatMul.apply(a, b)


def cat(tensors, dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing dimension ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    ref = tensors[0]
    d = ops.normalize_dims(dim, ref.ndim)[0]
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or t.shape[:d] + t.shape[d + 1:] != ref.shape[:d] + ref.shape[d + 1:]:
            raise ShapeError(
                f"cat: sizes of tensors must match except in dimension {d}; tensor 0 has shape {ref.shape}, "
                f"tensor {i} has shape {t.shape}"
            )
    return ops.Cat.apply(*tensors, dim=d)


def stack(tensors, dim: int = 0) -> Tensor:
    """Stack same-shaped tensors along a new dimension ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ShapeError(
                f"stack expects each tensor to be equal size, but got {tensors[0].shape} at entry 0 and "
                f"{t.shape} at entry {i}"
            )
    d = ops.normalize_dims(dim, tensors[0].ndim + 1)[0]
    return ops.Stack.apply(*tensors, dim=d)


def where(condition, input, other) -> Tensor:
    """Elementwise ``input`` where ``condition`` is true, else ``other`` (both broadcast)."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a boolean tensor, got dtype {cond.dtype}")
    a = input if isinstance(input, Tensor) else None
    b = other if isinstance(other, Tensor) else None
    if a is None and b is None:
        a, b = Tensor(input), Tensor(other)
    elif a is None:
        a = b._coerce(input)
    elif b is None:
        b = a._coerce(other)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ShapeError(
            f"where: condition {cond.shape}, input {a.shape} and other {b.shape} do not broadcast together"
        ) from None
    return ops.Where.apply(a, b, condition=cond)


# ---------------------------------------------------------------------------------------------- factories
def _shape_arg(shape) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def zeros(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape_arg(shape), dtype=_check_dtype(dtype or DEFAULT_DTYPE)), requires_grad)


def ones(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape_arg(shape), dtype=_check_dtype(dtype or DEFAULT_DTYPE)), requires_grad)


def full(shape, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.full(tuple(shape), fill_value, dtype=_check_dtype(dtype or DEFAULT_DTYPE)), requires_grad)


def zeros_like(t, dtype=None, requires_grad: bool = False) -> Tensor:
    return zeros(np.shape(t.data if isinstance(t, Tensor) else t), dtype=dtype or getattr(t, "dtype", None),
                 requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad: bool = False) -> Tensor:
    return ones(np.shape(t.data if isinstance(t, Tensor) else t), dtype=dtype or getattr(t, "dtype", None),
                requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    if end is None:
        start, end = 0, start
    values = np.arange(start, end, step)
    if dtype is None:
        dtype = int64 if values.dtype.kind in "iu" else DEFAULT_DTYPE
    return Tensor(values, dtype=dtype)


def randn(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    data = default_generator().standard_normal(_shape_arg(shape)).astype(_check_dtype(dtype or DEFAULT_DTYPE))
    return Tensor(data, requires_grad)


def rand(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    data = default_generator().random(_shape_arg(shape)).astype(_check_dtype(dtype or DEFAULT_DTYPE))
    return Tensor(data, requires_grad)
