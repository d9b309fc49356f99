"""``Tensor``: a NumPy array plus what reverse-mode autograd needs (``grad``, ``requires_grad``, ``grad_fn``).

A Tensor made by the user is a *leaf* (``grad_fn is None``); a Tensor made by an operation on tensors that require
a gradient remembers that operation in ``grad_fn`` (see :mod:`tinyconv.autograd`). Operators follow NumPy's
broadcasting and PyTorch's dtype rules: ``tc.tensor`` makes Python ints int64, bools bool and floats float32; a
Python number takes the tensor's dtype unless its kind is higher (``float32 * 2.0`` stays float32, ``int64 * 0.5``
is float32); between tensors the higher kind wins and keeps its dtype (``int64 * float32`` → float32), and a 0-d
tensor does not widen one with dimensions.

Item assignment and the in-place methods (``t[idx] = v``, ``+=``, ``add_``, ``zero_`` ...) write into the storage
and take part in autograd as in PyTorch; ``_version`` counts those writes (shared with views) so the engine can
refuse a backward through a tensor modified after it was saved. That half of the class lives in
:mod:`tinyconv.inplace`; the creation functions (``zeros``, ``randn`` ...) in :mod:`tinyconv.creation`; the
errors (``ShapeError``, ``DTypeError``) in :mod:`tinyconv.errors`.

``t.data`` is PyTorch's escape hatch: a tensor sharing ``t``'s storage, cut off from the graph and with a version
count of its own, so in-place writes through it (``w.data.normal_(0, 0.01)``, ``p.data.sub_(lr * p.grad)``) are
seen by nobody's autograd. The NumPy array is ``t.numpy()`` (or ``np.asarray(t)``); inside tinyconv it is
``t._data``, the storage itself.
"""
from __future__ import annotations

import math
import numbers
import operator
import weakref
from collections import namedtuple

import numpy as np

from . import autograd
from .device import CPU, check_device
from .device import device as _device
from .errors import _KIND_RANK, ShapeError, _type_word
from .functions import ops
from .inplace import InPlaceWrites
from .printing import tensor_body
from .random import default_generator

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)

SUPPORTED_DTYPES = (float32, float64, int64, int32, uint8, bool_)
DEFAULT_DTYPE = float32


class Size(tuple):
    """A tensor's shape: a tuple of ints (it compares, hashes, unpacks and indexes like one) that prints as
    ``tinyconv.Size([1, 96, 54, 54])``, PyTorch's ``torch.Size``. Slicing, ``+`` and ``*`` give a Size again."""

    def __new__(cls, sizes=()):
        sizes = tuple(sizes)
        for i, n in enumerate(sizes):
            if not isinstance(n, (numbers.Integral, np.integer)) or isinstance(n, bool):
                raise TypeError(f"tinyconv.Size() takes an iterable of 'int' (item {i} is '{type(n).__name__}')")
        return super().__new__(cls, (int(n) for n in sizes))

    def __repr__(self) -> str:
        return f"tinyconv.Size({list(self)})"

    __str__ = __repr__

    def __getitem__(self, index):
        out = super().__getitem__(index)
        return tuple.__new__(Size, out) if isinstance(index, slice) else out  # a slice of ints: no checks

    def __add__(self, other):
        return Size(tuple(self) + tuple(other)) if isinstance(other, tuple) else NotImplemented

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self)) if isinstance(other, tuple) else NotImplemented

    def __mul__(self, times):
        return Size(tuple(self) * times)

    __rmul__ = __mul__

    def numel(self) -> int:
        """The number of elements a tensor of this shape holds."""
        return int(np.prod(self, dtype=np.int64))


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(f"unsupported dtype {dtype!r}; tinyconv tensors support {names}")
    return dt


def _to_array(data, dtype=None, infer: bool = False) -> np.ndarray:
    """The ndarray a Tensor wraps. Arrays keep their dtype. Python data: with ``infer`` (``tc.tensor``,
    ``tc.as_tensor``) PyTorch's rule, ints → int64, bools → bool, floats → float32; without it (the
    ``Tensor(...)`` constructor, like ``torch.Tensor``) numbers become float32 and bools stay bool."""
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype != np.bool_:
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"cannot make a tensor from {type(data).__name__} data of dtype {arr.dtype}")
            arr = arr.astype(int64 if infer and arr.dtype.kind in "iu" else DEFAULT_DTYPE)
    if dtype is not None:
        arr = arr.astype(_check_dtype(dtype), copy=False)
    else:
        _check_dtype(arr.dtype)
    return arr


def _wrap_output(out, ctx) -> "Tensor":
    """Wrap an op's result array without copying; attach the graph node when one was recorded."""
    t = Tensor.__new__(Tensor)
    t._data = out if isinstance(out, np.ndarray) else np.asarray(out)
    t.grad = None
    t.grad_fn = ctx
    t.requires_grad = ctx is not None
    t._hooks = {}
    t._retains_grad = False
    t._ver = 0
    t._base = None
    if ctx is not None:
        ctx.output_ref = weakref.ref(t)
        ctx.output_meta = (t._data.shape, t._data.dtype)
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
                    f"dimension {dim} (shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast)"
                ) from None
        raise


class Tensor(InPlaceWrites):
    """An n-dimensional array with reverse-mode autograd.

    Attributes: ``data`` (this tensor's storage as a detached Tensor), ``grad`` (a Tensor or None),
    ``requires_grad``, ``grad_fn`` (the node that made it, None for leaves); ``_data`` is the ``np.ndarray``.
    Image batches are (N, C, H, W) throughout tinyconv.
    """

    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operator
    __hash__ = object.__hash__  # == is elementwise, identity stays the hash (tensors can key dicts)

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self._data = _to_array(data, dtype)
        self.grad = None
        self.grad_fn = None
        self._hooks = {}
        self._retains_grad = False
        self._ver = 0  # in-place modifications of the storage (read through ``_version``)
        self._base = None  # the tensor whose storage this one views (it keeps the version count), or None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # --------------------------------------------------------------------------------------------- storage
    @property
    def data(self) -> "Tensor":
        """A tensor sharing this one's storage, detached from the graph, with its own version count (PyTorch's
        ``.data``): in-place changes through it are invisible to autograd."""
        return _wrap_output(self._data, None)

    @data.setter
    def data(self, value) -> None:
        """``t.data = other`` makes ``other``'s storage this tensor's (shape and dtype follow it), as in PyTorch."""
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data must be set to a Tensor, but got {type(value).__name__} "
                            "(wrap an array with tinyconv.from_numpy)")
        if self.requires_grad and value.dtype.kind != "f":
            raise RuntimeError(f"data set to a tensor of dtype {value.dtype.name}, but this tensor requires grad "
                               f"and is {self.dtype.name}")
        self._data = value._data

    # ---------------------------------------------------------------------------------------- basic facts
    @property
    def shape(self) -> Size:
        return tuple.__new__(Size, self._data.shape)  # NumPy's shape holds ints already: no checks needed

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def size(self, dim=None):
        """The shape as a :class:`Size`; with ``dim``, that dimension's length (``dim`` may be negative)."""
        if dim is None:
            return self.shape
        try:
            return self._data.shape[operator.index(dim)]
        except IndexError:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-max(self.ndim, 1)}, "
                             f"{max(self.ndim, 1) - 1}], but got {dim})") from None

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"a Tensor with {self._data.size} elements cannot be converted to a Python scalar")
        return self._data.reshape(()).item()

    def numpy(self) -> np.ndarray:
        return self._data

    def tolist(self):
        return self._data.tolist()

    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self._data
        return self._data.astype(dtype, copy=bool(copy))

    def __bool__(self) -> bool:
        if self._data.size != 1:
            many = "more than one value" if self._data.size else "no values"
            raise RuntimeError(f"Boolean value of Tensor with {many} is ambiguous")
        return bool(self._data.reshape(()).item())

    def _scalar(self):
        if self._data.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self._data.reshape(()).item()

    def __float__(self) -> float:
        return float(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __index__(self) -> int:
        if self._data.size != 1 or self.dtype.kind not in "iu":
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._scalar())

    def __format__(self, spec: str) -> str:
        """``f'{loss:.3f}'`` formats a 0-d tensor's value, as PyTorch does; other tensors accept only ``''``."""
        if self.ndim == 0:
            return format(self._data.item(), spec)
        if spec:
            raise TypeError("unsupported format string passed to Tensor.__format__")
        return str(self)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        body = tensor_body(self._data)
        extras = []
        if self._data.size == 0 and self.ndim != 1:
            extras.append(f"size={tuple(self.shape)}")
        if self.dtype not in (float32, int64, bool_):
            extras.append(f"dtype=tinyconv.{self.dtype.name}")
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
        """A new leaf sharing this tensor's data (and its version count), cut off from the graph."""
        return self._view(_wrap_output(self._data, None))

    def clone(self) -> "Tensor":
        """A copy with its own storage; gradients flow back to this tensor."""
        return ops.Clone.apply(self)

    # ------------------------------------------------------------------------------------ item assignment
    def __setitem__(self, index, value) -> None:
        """``t[index] = value`` for basic, advanced and boolean indices; ``value`` (a Tensor or numbers)
        broadcasts to the selected shape. Under autograd the gradient reaches ``value`` at the assigned
        positions and ``t``'s earlier history everywhere else (PyTorch's CopySlices)."""
        self._assign(_index_to_numpy(index), value, indexing=True)

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

    def _accumulate_grad(self, grad: np.ndarray, owned: bool = False) -> None:
        """A leaf receives its summed gradient: run its hooks, then add it into ``.grad``. ``owned``: the engine
        says nothing else refers to ``grad``, so a first gradient becomes ``.grad`` as it is."""
        if self._hooks:
            grad, owned = self._run_hooks(grad), False  # a hook may keep the tensor it was handed
        if self.grad is None:
            if owned and grad.dtype == self._data.dtype:
                self.grad = Tensor(grad)
                return
            # Copy: the engine may hand the same array to several leaves, and users may mutate .grad in place.
            self.grad = Tensor(np.array(grad, dtype=self._data.dtype, copy=True))
        else:
            self.grad._data = self.grad._data + grad

    def _nonleaf_grad(self, grad: np.ndarray) -> np.ndarray:
        """A non-leaf with hooks or ``retain_grad()`` receives its gradient; returns the (hooked) gradient."""
        if self._hooks:
            grad = self._run_hooks(grad)
        if self._retains_grad:
            if self.grad is None:
                self.grad = Tensor(np.array(grad, copy=True))
            else:
                self.grad._data = self.grad._data + grad
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
        """``other`` as a Tensor; a Python number takes this tensor's dtype unless its kind is higher (an int
        with a bool tensor → int64, a float with an integer tensor → float32), as PyTorch's scalars do."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number):
            kind = "b" if isinstance(other, bool) else "i" if isinstance(other, numbers.Integral) else "f"
            if _KIND_RANK[kind] <= _KIND_RANK[self.dtype.kind]:
                dt = self.dtype
            else:
                dt = {"i": int64, "f": DEFAULT_DTYPE}.get(kind, bool_)
            return _wrap_output(np.asarray(other, dtype=dt), None)
        return as_tensor(other)

    def _binary(self, fn, other, op, reverse=False, floating=False, **params):
        other = self._coerce(other)
        a, b = (other, self) if reverse else (self, other)
        _broadcast_check(a, b, op)
        if (a.dtype is not b.dtype and a.dtype != b.dtype) or (floating and a.dtype.kind != "f"):
            dt = result_type(a, b)
            if floating and dt.kind != "f":
                dt = DEFAULT_DTYPE  # true division of integers gives the default float dtype, as in PyTorch
            a, b = a._cast(dt), b._cast(dt)
        return fn.apply(a, b, **params)

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
        return self._binary(ops.Div, other, "div", floating=True)

    def __rtruediv__(self, other):
        return self._binary(ops.Div, other, "div", reverse=True, floating=True)

    def _integer_op(self, fn, other, op, reverse=False):
        """``%`` and ``//``: computed with PyTorch's dtype promotion, without a gradient (refused if one is needed)."""
        other = self._coerce(other)
        a, b = (other, self) if reverse else (self, other)
        _broadcast_check(a, b, op)
        if autograd.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            raise RuntimeError(f"{op} has no gradient in tinyconv; apply it to .detach()ed tensors")
        dt = result_type(a, b)
        return _wrap_output(np.asarray(fn(a._data.astype(dt, copy=False), b._data.astype(dt, copy=False))), None)

    def __mod__(self, other):
        return self._integer_op(np.remainder, other, "remainder")

    def __rmod__(self, other):
        return self._integer_op(np.remainder, other, "remainder", reverse=True)

    def __floordiv__(self, other):
        return self._integer_op(np.floor_divide, other, "floor_divide")

    def __rfloordiv__(self, other):
        return self._integer_op(np.floor_divide, other, "floor_divide", reverse=True)

    def __pow__(self, other):
        return self._binary(ops.Pow, other, "pow")

    def __rpow__(self, other):
        return self._binary(ops.Pow, other, "pow", reverse=True)

    def add(self, other, *, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    def pow(self, exponent):
        """``self ** exponent`` (a number or a tensor, broadcasting), PyTorch's dtype rules."""
        return self.__pow__(exponent)

    def __neg__(self):
        return ops.Neg.apply(self)

    neg = __neg__

    def matmul(self, other):
        return matmul(self, other)

    def mm(self, mat2):
        return mm(self, mat2)

    def mv(self, vec):
        return mv(self, vec)

    def dot(self, other):
        return dot(self, other)

    def bmm(self, mat2):
        return bmm(self, mat2)

    def __matmul__(self, other):
        return matmul(self, self._coerce(other))

    def __rmatmul__(self, other):
        return matmul(self._coerce(other), self)

    # Comparisons give boolean tensors and never carry gradients.
    def _compare(self, other, fn):
        other = other._data if isinstance(other, Tensor) else other
        return Tensor(fn(self._data, other))

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

    def square(self):
        return self * self

    def sign(self):
        """-1, 0 or 1 by the sign of each element (zero gradient)."""
        return ops.Piecewise.apply(self, fn="sign")

    def round(self):
        """Nearest whole number, halves to even (zero gradient)."""
        return ops.Piecewise.apply(self, fn="round")

    def floor(self):
        return ops.Piecewise.apply(self, fn="floor")

    def ceil(self):
        return ops.Piecewise.apply(self, fn="ceil")

    def sin(self):
        return ops.Sin.apply(self)

    def cos(self):
        return ops.Cos.apply(self)

    def isnan(self):
        return _wrap_output(np.isnan(self._data), None)

    def isfinite(self):
        return _wrap_output(np.isfinite(self._data), None)

    def maximum(self, other):
        """Elementwise larger of two tensors (broadcasting); ties split the gradient between them."""
        return self._binary(ops.Maximum, _tensor_argument(other, "maximum"), "maximum")

    def minimum(self, other):
        """Elementwise smaller of two tensors (broadcasting); ties split the gradient between them."""
        return self._binary(ops.Maximum, _tensor_argument(other, "minimum"), "minimum", minimum=True)

    def cumsum(self, dim=None, *, axis=None, dtype=None):
        """Running sums along ``dim``; bool and integer tensors sum as int64, as in PyTorch."""
        dim, _ = _dim_alias(dim, axis, False, None)
        if dim is None:
            raise TypeError("cumsum() missing required argument 'dim'")
        if dtype is None and self.dtype.kind in "biu":
            dtype = int64
        x = self if dtype is None else self.to(dtype)
        d = ops.normalize_dims(dim, x.ndim)[0]
        if x.ndim == 0:
            return x.clone()
        return ops.Cumsum.apply(x, dim=d)

    def norm(self, p="fro", dim=None, keepdim: bool = False, dtype=None):
        """The vector ``p``-norm over ``dim`` (all elements by default): ``p`` a number, ``inf``, ``-inf`` or
        ``'fro'`` (the 2-norm of all the entries); the gradient is zero where the norm is."""
        x = self if dtype is None else self.to(dtype)
        if x.dtype.kind != "f":
            raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                               f"Got {_type_word(x.dtype)}")
        if p == "fro" or p is None:
            p = 2.0
        elif isinstance(p, str):
            raise NotImplementedError(f"norm(p={p!r}): tinyconv computes vector norms only ('fro', or a number)")
        return ops.Norm.apply(x, p=float(p), dim=ops.normalize_dims(dim, x.ndim), keepdim=bool(keepdim))

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
    # ``axis=`` and ``keepdims=`` are accepted for ``dim=`` and ``keepdim=``, as PyTorch accepts them.
    def sum(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None, dtype=None):
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        if dtype is None and self.dtype.kind in "biu":
            dtype = int64  # sums of bool and integer tensors are int64, as in PyTorch
        x = self if dtype is None else self.to(dtype)
        return ops.Sum.apply(x, dim=ops.normalize_dims(dim, x.ndim), keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None, dtype=None):
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        x = self if dtype is None else self.to(dtype)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"mean() needs a floating point tensor, got dtype {x.dtype.name} "
                            "(convert it first, e.g. x.float().mean(), or pass dtype=)")
        return ops.Mean.apply(x, dim=ops.normalize_dims(dim, x.ndim), keepdim=keepdim)

    def var(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None, keepdims=None):
        """Variance over ``dim`` (all elements by default), divided by ``n - correction``: ``correction=1`` (or
        ``unbiased=True``, the default) is Bessel's correction, ``0`` the population variance."""
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        if unbiased is not None and correction is None:
            correction = int(bool(unbiased))
        correction = 1 if correction is None else correction
        if self.dtype.kind != "f":
            raise RuntimeError(f"var(): expected a floating point tensor, got {_type_word(self.dtype)}")
        dims = ops.normalize_dims(dim, self.ndim)
        n = self.numel() if dims is None else int(np.prod([self.shape[d] for d in dims]))
        centered = self - self.mean(dim=dims, keepdim=True)
        return (centered * centered).sum(dim=dims, keepdim=keepdim) / max(n - correction, 0)

    def std(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None, keepdims=None):
        """Standard deviation: the square root of :meth:`var` (same arguments)."""
        return self.var(dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims).sqrt()

    def prod(self, dim=None, keepdim: bool = False, *, dtype=None):
        """Product of all elements, or along one ``dim``; bool and integer tensors multiply as int64."""
        if dtype is None and self.dtype.kind in "biu":
            dtype = int64
        x = self if dtype is None else self.to(dtype)
        if x.numel() == 0 and dim is None:
            return _wrap_output(np.ones((), dtype=x.dtype), None)
        d = None if dim is None else ops.normalize_dims(dim, max(x.ndim, 1))[0]
        if x.ndim == 0:
            return x.clone()
        return ops.Prod.apply(x, dim=d, keepdim=bool(keepdim))

    def all(self, dim=None, keepdim: bool = False):
        """True where every element (along ``dim``) is nonzero; a bool tensor without gradient."""
        return _wrap_output(np.asarray(np.all(self._data, axis=ops.normalize_dims(dim, self.ndim),
                                              keepdims=keepdim)), None)

    def any(self, dim=None, keepdim: bool = False):
        """True where some element (along ``dim``) is nonzero; a bool tensor without gradient."""
        return _wrap_output(np.asarray(np.any(self._data, axis=ops.normalize_dims(dim, self.ndim),
                                              keepdims=keepdim)), None)

    def amax(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        self._check_nonempty("amax")
        return ops.Amax.apply(self, dim=ops.normalize_dims(dim, self.ndim), keepdim=keepdim)

    def amin(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        self._check_nonempty("amin")
        return ops.Amax.apply(self, dim=ops.normalize_dims(dim, self.ndim), keepdim=keepdim, minimum=True)

    def max(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        """The maximum of all elements; with ``dim``, the named tuple ``(values, indices)`` along it (PyTorch's);
        with a tensor instead of ``dim``, the elementwise :meth:`maximum`."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        if dim is None:
            return self.amax()
        return self._values_and_indices(self.argmax(dim, keepdim=True), dim, keepdim, _Max)

    def min(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        """The minimum of all elements; with ``dim``, the named tuple ``(values, indices)`` along it (PyTorch's);
        with a tensor instead of ``dim``, the elementwise :meth:`minimum`."""
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        if dim is None:
            return self.amin()
        return self._values_and_indices(self.argmin(dim, keepdim=True), dim, keepdim, _Min)

    def _values_and_indices(self, indices: "Tensor", dim, keepdim: bool, result):
        """(values, indices) of max/min along ``dim``: the values are gathered at the indices, so the gradient
        reaches the chosen element only (PyTorch's rule for max(dim), unlike amax's sharing between ties)."""
        if self.ndim == 0:
            return result(self, indices)
        d = ops.normalize_dims(dim, self.ndim)[0]
        where = list(np.indices(indices.shape, sparse=True))
        where[d] = indices._data
        values = self[tuple(where)]
        if not keepdim:
            values, indices = values.squeeze(d), indices.squeeze(d)
        return result(values, indices)

    def gather(self, dim: int, index) -> "Tensor":
        """``out[i][j] = self[i][index[i][j]]`` for ``dim=1`` (likewise for any dim); ``index`` is an int64 tensor
        with as many dimensions as ``self``. The gradient is summed back into the gathered places."""
        d = ops.normalize_dims(dim, max(self.ndim, 1))[0]
        idx = index._data if isinstance(index, Tensor) else np.asarray(index)
        if idx.dtype.kind not in "iu":
            raise RuntimeError(f"gather(): Expected dtype int64 for index, got {idx.dtype}")
        if idx.ndim != self.ndim:
            raise RuntimeError(f"Index tensor must have the same number of dimensions as input tensor "
                               f"({idx.ndim} and {self.ndim})")
        if idx.size and (idx.min() < -self.shape[d] or idx.max() >= self.shape[d]):
            raise IndexError(f"gather(): index {int(idx.max() if idx.max() >= self.shape[d] else idx.min())} is "
                             f"out of bounds for dimension {d} with size {self.shape[d]}")
        return ops.Gather.apply(self, index=idx.astype(np.int64) % max(self.shape[d], 1), dim=d)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """``(values, indices)`` sorted along ``dim`` (ascending unless ``descending``); ties keep their order."""
        indices = self.argsort(dim, descending)
        d = ops.normalize_dims(dim, max(self.ndim, 1))[0]
        return _Sort(self.gather(d, indices) if self.ndim else self.clone(), indices)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """The int64 indices that sort ``dim`` (a stable sort, so ties keep their order)."""
        if self.ndim == 0:
            return _wrap_output(np.zeros((), dtype=np.int64), None)
        d = ops.normalize_dims(dim, self.ndim)[0]
        key = -self._data.astype(np.float64) if descending else self._data  # negated: any dtype sorts descending
        order = np.argsort(key, axis=d, kind="stable")
        return _wrap_output(order.astype(np.int64), None)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """The ``k`` largest (or smallest) elements along ``dim`` as ``(values, indices)``, largest first."""
        d = ops.normalize_dims(dim, max(self.ndim, 1))[0]
        size = self.shape[d] if self.ndim else 1
        if not 0 <= k <= size:
            raise RuntimeError(f"selected index k out of range (k={k}, size of dimension {d} is {size})")
        indices = self.argsort(d, descending=largest)
        indices = indices[(slice(None),) * d + (slice(0, k),)] if self.ndim else indices
        indices = _wrap_output(np.ascontiguousarray(indices._data), None)
        return _TopK(self.gather(d, indices) if self.ndim else self.clone(), indices)

    def masked_fill(self, mask, value):
        """``value`` where the bool ``mask`` (broadcast to this shape) is true, this tensor elsewhere."""
        m = mask._data if isinstance(mask, Tensor) else np.asarray(mask)
        if m.dtype != np.bool_:
            raise RuntimeError(f"masked_fill only supports boolean masks, but got mask with dtype {m.dtype}")
        if isinstance(value, Tensor) and value.ndim:
            raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s)")
        fill = value._cast(self.dtype) if isinstance(value, Tensor) else self._coerce(value)._cast(self.dtype)
        out = where(_wrap_output(np.broadcast_to(m, self.shape), None), fill, self)
        return out

    def masked_fill_(self, mask, value):
        return self._inplace(lambda: self.masked_fill(mask, value), value)

    def index_select(self, dim: int, index):
        """The entries at the positions ``index`` (a 1-D integer tensor) along ``dim``."""
        d = ops.normalize_dims(dim, max(self.ndim, 1))[0]
        idx = index._data if isinstance(index, Tensor) else np.asarray(index)
        if idx.ndim > 1 or idx.dtype.kind not in "iu":
            raise IndexError(f"index_select(): Index is supposed to be a vector of integers, got shape "
                             f"{tuple(idx.shape)} and dtype {idx.dtype}")
        return self[(slice(None),) * d + (idx.reshape(-1),)]

    def nonzero(self, *, as_tuple: bool = False):
        """The indices of the nonzero elements: an (n, ndim) int64 tensor, or one 1-D tensor per dimension."""
        found = np.nonzero(self._data)
        if as_tuple:
            return tuple(_wrap_output(i.astype(np.int64), None) for i in found)
        return _wrap_output(np.stack(found, axis=1).astype(np.int64) if found else np.zeros((1, 0), np.int64), None)

    def argmax(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        """Index of the (first) largest element along ``dim``, int64; over the flattened tensor without ``dim``."""
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        return self._arg_extreme(np.argmax, "argmax", dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        dim, keepdim = _dim_alias(dim, axis, keepdim, keepdims)
        return self._arg_extreme(np.argmin, "argmin", dim, keepdim)

    def _arg_extreme(self, fn, name, dim, keepdim):
        self._check_nonempty(name)
        if dim is None:
            out = np.asarray(fn(self._data))
            if keepdim:
                out = out.reshape((1,) * self.ndim)
        else:
            d = ops.normalize_dims(dim, self.ndim)
            if len(d) != 1:
                raise TypeError(f"{name}(): dim must be a single int, got {dim!r}")
            out = fn(self._data, axis=d[0], keepdims=keepdim) if self.ndim else np.asarray(fn(self._data))
        return _wrap_output(np.asarray(out, dtype=np.int64), None)

    def _check_nonempty(self, op):
        if self._data.size == 0:
            raise RuntimeError(f"{op}(): expected a non-empty tensor, got shape {tuple(self.shape)}")

    # ------------------------------------------------------------------------------------------ reshaping
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            np.empty(self.shape, dtype=np.bool_).reshape(shape)  # cheap validity check with numpy's rules
        except ValueError:
            raise ShapeError(
                f"shape {tuple(shape)} is invalid for input of size {self._data.size} (shape {tuple(self.shape)})"
            ) from None
        return self._view(ops.Reshape.apply(self, shape=shape))

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return self.reshape(1)
        start = ops.normalize_dims(start_dim, self.ndim)[0]
        end = ops.normalize_dims(end_dim, self.ndim)[0]
        if start > end:
            raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
        dims = self._data.shape
        shape = dims[:start] + (math.prod(dims[start:end + 1]),) + dims[end + 1:]
        return self._view(ops.Reshape.apply(self, shape=shape))

    def permute(self, *dims):
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor with {self.ndim} dimensions")
        return self._view(ops.Permute.apply(self, dims=ops.normalize_dims(dims, self.ndim)))

    def transpose(self, dim0: int, dim1: int):
        d0, d1 = (ops.normalize_dims(d, self.ndim)[0] for d in (dim0, dim1))
        dims = list(range(self.ndim))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self._view(ops.Permute.apply(self, dims=tuple(dims)))

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim} (shape {tuple(self.shape)})")
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
        return self._view(ops.Reshape.apply(self, shape=shape))

    def unsqueeze(self, dim: int):
        d = ops.normalize_dims(dim, self.ndim + 1)[0]
        return self._view(ops.Reshape.apply(self, shape=self.shape[:d] + (1,) + self.shape[d:]))

    def view_as(self, other: "Tensor"):
        return self.reshape(other.shape)

    reshape_as = view_as

    def contiguous(self, memory_format=None):
        """This tensor: tinyconv's arrays need no re-layout before a view."""
        return self

    def expand(self, *sizes):
        """This tensor broadcast to ``sizes`` (-1 keeps a dimension); a copy here, a view in PyTorch."""
        sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
        if len(sizes) < self.ndim:
            raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
                               f"the number of dimensions in the tensor ({self.ndim})")
        lead = len(sizes) - self.ndim
        shape = tuple(self.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes))
        for i in range(self.ndim):
            if self.shape[i] not in (1, shape[lead + i]):
                raise ShapeError(f"The expanded size of the tensor ({shape[lead + i]}) must match the existing size "
                                 f"({self.shape[i]}) at non-singleton dimension {lead + i}.  Target sizes: "
                                 f"{list(sizes)}.  Tensor sizes: {list(self.shape)}")
        return ops.Add.apply(self, np.zeros(shape, dtype=self.dtype))

    def expand_as(self, other: "Tensor"):
        return self.expand(other.shape)

    def repeat(self, *repeats):
        """Tile this tensor ``repeats[i]`` times along each dimension (``np.tile``; leading new dimensions when
        ``repeats`` is longer)."""
        repeats = tuple(repeats[0]) if len(repeats) == 1 and isinstance(repeats[0], (tuple, list)) else repeats
        if len(repeats) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of "
                               "tensor")
        shape = (1,) * (len(repeats) - self.ndim) + tuple(self.shape)
        spread = self.reshape(tuple(v for n in shape for v in (1, n)))
        tiled = spread.expand(tuple(v for r, n in zip(repeats, shape) for v in (r, n)))
        return tiled.reshape(tuple(r * n for r, n in zip(repeats, shape)))

    def chunk(self, chunks: int, dim: int = 0):
        """Split into ``chunks`` pieces of ``ceil(size / chunks)`` along ``dim`` (the last may be smaller)."""
        if chunks <= 0:
            raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
        d = ops.normalize_dims(dim, self.ndim)[0]
        step = max(-(-self.shape[d] // chunks), 1)
        return self.split(step, d)

    def split(self, split_size_or_sections, dim: int = 0):
        """Pieces along ``dim``: of ``split_size`` each (the last may be smaller), or of the listed sizes."""
        d = ops.normalize_dims(dim, self.ndim)[0]
        n = self.shape[d]
        if isinstance(split_size_or_sections, (list, tuple)):
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's "
                                   f"size at dimension {d}), but got split_sizes={sizes}")
        else:
            step = operator.index(split_size_or_sections)
            if step <= 0:
                raise RuntimeError(f"split expects split_size be non-negative, but got split_size={step}")
            sizes = [min(step, n - start) for start in range(0, n, step)] or [0]
        starts = np.cumsum([0] + sizes[:-1])
        return tuple(self[(slice(None),) * d + (slice(int(a), int(a) + k),)] for a, k in zip(starts, sizes))

    def unbind(self, dim: int = 0):
        """The slices along ``dim``, that dimension removed."""
        d = ops.normalize_dims(dim, self.ndim)[0]
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    def __getitem__(self, index):
        index = _index_to_numpy(index)
        return self._view(ops.GetItem.apply(self, index=index))

    # ------------------------------------------------------------------------------------ dtypes, devices
    @property
    def device(self):
        """Always ``device(type='cpu')``: tinyconv computes on the CPU."""
        return CPU

    @property
    def is_cuda(self) -> bool:
        return False

    def to(self, *args, **kwargs) -> "Tensor":
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other_tensor)`` or ``to(device=, dtype=)``.

        Returns ``self`` when nothing changes (as PyTorch does) or ``copy=True`` is not given. Only the CPU exists.
        """
        dtype, dev, copy = parse_to_args(args, kwargs)
        check_device(dev)
        out = self if dtype is None else self._cast(_check_dtype(dtype))
        if copy and out is self:
            out = ops.Cast.apply(self, dtype=self.dtype) if self.requires_grad else _wrap_output(self._data.copy(), None)
        return out

    def _cast(self, dt: np.dtype) -> "Tensor":
        if dt == self.dtype:
            return self
        if dt.kind != "f":  # an integer or bool copy has no gradient (PyTorch's rule as well)
            return _wrap_output(self._data.astype(dt), None)
        return ops.Cast.apply(self, dtype=dt)

    def type(self, dtype=None, non_blocking: bool = False):
        """With ``dtype``: this tensor as that dtype (``y_hat.type(y.dtype)``); without: its type name."""
        if dtype is None:
            return _TYPE_NAMES.get(self.dtype, f"tinyconv.{self.dtype.name}")
        if isinstance(dtype, str) and dtype in _TYPE_NAMES.values():
            dtype = next(k for k, v in _TYPE_NAMES.items() if v == dtype)
        return self._cast(_check_dtype(dtype))

    def type_as(self, other: "Tensor"):
        return self.to(other.dtype)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False):
        dtype = _factory_dtype(self.dtype if dtype is None else dtype, device)
        return _new(np.zeros(_size_arg(size, None, "new_zeros"), dtype=dtype), requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False):
        dtype = _factory_dtype(self.dtype if dtype is None else dtype, device)
        return _new(np.ones(_size_arg(size, None, "new_ones"), dtype=dtype), requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad: bool = False):
        return tensor(data, dtype=self.dtype if dtype is None else dtype, device=device, requires_grad=requires_grad)

    def nelement(self) -> int:
        return self.numel()

    def element_size(self) -> int:
        return int(self.dtype.itemsize)

    def float(self):
        return self._cast(float32)

    def double(self):
        return self._cast(float64)

    def long(self):
        return self._cast(int64)

    def int(self):
        return self._cast(int32)

    def bool(self):
        return self._cast(bool_)

    def cpu(self) -> "Tensor":
        return self

    def cuda(self, device=None, non_blocking: bool = False):
        check_device("cuda" if device is None else device if isinstance(device, str) else f"cuda:{device}")


def result_type(a: Tensor, b: Tensor) -> np.dtype:
    """PyTorch's type promotion for two tensors: the higher kind wins (bool < integer < float) and keeps its own
    dtype (int64 * float32 → float32); within one kind the wider dtype wins, except that a 0-d tensor does not
    widen a tensor with dimensions (float32 * 0-d float64 → float32)."""
    ra, rb = _KIND_RANK[a.dtype.kind], _KIND_RANK[b.dtype.kind]
    if ra != rb:
        return a.dtype if ra > rb else b.dtype
    if (a.ndim == 0) != (b.ndim == 0):
        return b.dtype if a.ndim == 0 else a.dtype
    return np.promote_types(a.dtype, b.dtype)


class _ValuesIndices(namedtuple("_ValuesIndices", ["values", "indices"])):
    """What ``max(dim)`` / ``min(dim)`` return: ``(values, indices)``, printed as PyTorch prints its return types."""

    _name = ""

    def __repr__(self) -> str:
        return f"tinyconv.return_types.{self._name}(\nvalues={self.values!r},\nindices={self.indices!r})"


class _Sort(_ValuesIndices):
    _name = "sort"


class _TopK(_ValuesIndices):
    _name = "topk"


class _Max(_ValuesIndices):
    _name = "max"


class _Min(_ValuesIndices):
    _name = "min"
_TYPE_NAMES = {float32: "torch.FloatTensor", float64: "torch.DoubleTensor", int64: "torch.LongTensor",
               int32: "torch.IntTensor", uint8: "torch.ByteTensor", bool_: "torch.BoolTensor"}


Tensor.__module__ = "tinyconv"  # its public name: tinyconv.Tensor, as PyTorch's is torch.Tensor


def _dim_alias(dim, axis, keepdim, keepdims):
    """PyTorch's NumPy-style aliases: ``axis=`` for ``dim=``, ``keepdims=`` for ``keepdim=``."""
    if axis is not None:
        if dim is not None:
            raise TypeError("got both dim and its alias axis; pass one of them")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return dim, bool(keepdim)


def parse_to_args(args, kwargs):
    """(dtype, device, copy) from the ways PyTorch's ``Tensor.to`` / ``Module.to`` can be called."""
    dtype, dev = kwargs.pop("dtype", None), kwargs.pop("device", None)
    copy = bool(kwargs.pop("copy", False))
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword argument(s) {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dtype = a.dtype
        elif isinstance(a, (str, _device)):
            if isinstance(a, str) and a in np.sctypeDict:
                dtype = a  # a dtype name such as 'float64'
            else:
                dev = a
        elif a is None:
            continue
        elif isinstance(a, bool):
            continue  # the positional non_blocking / copy flags
        else:
            dtype = a
    return dtype, dev, copy

def _index_to_numpy(index):
    """Tensors inside an index become arrays (integer or boolean), so NumPy's indexing rules apply."""
    if isinstance(index, Tensor):
        return index._data
    if isinstance(index, tuple):
        return tuple(i._data if isinstance(i, Tensor) else i for i in index)
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
def tensor(data, requires_grad: bool = False, dtype=None, *, device=None) -> Tensor:
    """Make a leaf tensor (a copy of ``data``) with PyTorch's dtype rules: Python ints → int64, bools → bool,
    floats → float32 (also when mixed with ints); NumPy arrays keep their dtype."""
    check_device(device)
    arr = _to_array(data, dtype, infer=True)
    return Tensor(np.array(arr, copy=True), requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like :func:`tensor` but shares memory with ``data`` when it is already an array (or returns a Tensor as is)."""
    if device is not None:
        check_device(device)
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype):
        return data
    return _wrap_output(_to_array(data, dtype, infer=True), None)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch rules (1-D operands promoted, batch dimensions broadcast)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both arguments need at least 1 dimension, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ShapeError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
            f"(last dimension of the first, {ka}, must equal "
            f"{'the length' if b.ndim == 1 else 'the second-to-last dimension'} of the second, {kb})"
        )
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(
                f"matmul: batch dimensions {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])} do not broadcast "
                f"(shapes {tuple(a.shape)} and {tuple(b.shape)})"
            ) from None
    return ops.MatMul.apply(a, b)


def _tensor_argument(value, fn: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}(): argument 'other' (position 2) must be Tensor, not {type(value).__name__}")
    return value


def _same_dtype(a: Tensor, b: Tensor, fn: str) -> None:
    if a.dtype != b.dtype:
        raise RuntimeError(f"{fn}: expected both arguments to have the same dtype, but got "
                           f"{_type_word(a.dtype)} and {_type_word(b.dtype)}")


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """The matrix product of an (n, m) and an (m, p) matrix; no broadcasting (see :func:`matmul` for that)."""
    a, b = as_tensor(input), as_tensor(mat2)
    if a.ndim != 2 or b.ndim != 2:
        which = "self" if a.ndim != 2 else "mat2"
        raise RuntimeError(f"mm: {which} must be a matrix (2-D), got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ShapeError(f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x{a.shape[1]} and "
                         f"{b.shape[0]}x{b.shape[1]})")
    _same_dtype(a, b, "mm")
    return ops.MatMul.apply(a, b)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    """The product of an (n, m) matrix and a length-m vector: a length-n vector."""
    a, v = as_tensor(input), as_tensor(vec)
    if a.ndim != 2 or v.ndim != 1:
        raise RuntimeError(f"mv: expected a 2-D matrix and a 1-D vector, got shapes {tuple(a.shape)} and "
                           f"{tuple(v.shape)}")
    if a.shape[1] != v.shape[0]:
        raise ShapeError(f"size mismatch, got input ({a.shape[0]}), mat ({a.shape[0]}x{a.shape[1]}), "
                         f"vec ({v.shape[0]})")
    _same_dtype(a, v, "mv")
    return ops.MatMul.apply(a, v)


def dot(input: Tensor, tensor: Tensor) -> Tensor:
    """The inner product of two 1-D tensors of the same length and dtype (a 0-d tensor)."""
    a, b = as_tensor(input), as_tensor(tensor)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] to have "
                         f"the same number of elements, but got {a.shape[0]} and {b.shape[0]} elements respectively")
    if a.dtype != b.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found {_type_word(a.dtype)} and "
                           f"{_type_word(b.dtype)}")
    return ops.MatMul.apply(a, b)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched matrix product of (b, n, m) and (b, m, p) tensors; no broadcasting (see :func:`matmul`)."""
    a, b = as_tensor(input), as_tensor(mat2)
    if a.ndim != 3 or b.ndim != 3:
        raise RuntimeError(f"bmm: batch1 and batch2 must be 3-D tensors, got shapes {tuple(a.shape)} and "
                           f"{tuple(b.shape)}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ShapeError(f"bmm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied (the batch sizes "
                         "must be equal and the inner dimensions match)")
    _same_dtype(a, b, "bmm")
    return ops.MatMul.apply(a, b)


def outer(input, vec2) -> Tensor:
    """The outer product of two 1-D tensors: ``out[i, j] = input[i] * vec2[j]``."""
    a, b = as_tensor(input), as_tensor(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"outer: expected two 1-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return a.reshape(-1, 1) * b.reshape(1, -1)


def meshgrid(*tensors, indexing: str = "ij"):
    """Coordinate grids from 1-D tensors: ``indexing='ij'`` (matrix, PyTorch's default) or ``'xy'`` (Cartesian)."""
    tensors = tuple(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
    tensors = [as_tensor(t) for t in tensors]
    if any(t.ndim > 1 for t in tensors):
        raise RuntimeError("meshgrid expects all tensors to have 0 or 1 dimensions")
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    sizes = [t.numel() for t in tensors]
    swap = indexing == "xy" and len(tensors) >= 2
    if swap:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for i, t in enumerate(tensors):
        axis = (1 - i if i < 2 else i) if swap else i
        shape = [1] * len(tensors)
        shape[axis] = t.numel()
        grids.append(t.reshape(shape).expand(sizes))
    return tuple(grids)


def multinomial(input, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:
    """``num_samples`` category indices per row, drawn with probabilities proportional to ``input``'s rows
    (1-D or 2-D non-negative weights); without ``replacement`` no index repeats within a row."""
    w = as_tensor(input)
    if w.ndim not in (1, 2):
        raise RuntimeError(f"prob_dist must be 1 or 2 dim, got shape {tuple(w.shape)}")
    arr = w._data.astype(np.float64).reshape(-1, w.shape[-1])
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr.sum(1) <= 0):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0, or negative or non-finite "
                           "weights)")
    if not replacement and num_samples > int((arr > 0).sum(1).min()):
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    rng = generator or default_generator()
    rows = [rng.choice(arr.shape[1], size=num_samples, replace=replacement, p=r / r.sum()) for r in arr]
    out = np.stack(rows).astype(np.int64)
    return _wrap_output(out if w.ndim == 2 else out[0], None)


def allclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    """Whether ``|input - other| <= atol + rtol * |other|`` everywhere (broadcasting)."""
    return bool(np.allclose(np.asarray(input), np.asarray(other), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> bool:
    """Whether the two tensors have the same shape and the same elements."""
    a, b = np.asarray(input), np.asarray(other)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def maximum(input, other) -> Tensor:
    """Elementwise larger of two tensors (broadcasting, PyTorch's type promotion)."""
    return _tensor_argument(input, "maximum").maximum(other)


def minimum(input, other) -> Tensor:
    """Elementwise smaller of two tensors (broadcasting, PyTorch's type promotion)."""
    return _tensor_argument(input, "minimum").minimum(other)


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
                f"cat: sizes of tensors must match except in dimension {d}; tensor 0 has shape {tuple(ref.shape)}, "
                f"tensor {i} has shape {tuple(t.shape)}"
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
                f"stack expects each tensor to be equal size, but got {tuple(tensors[0].shape)} at entry 0 and "
                f"{tuple(t.shape)} at entry {i}"
            )
    d = ops.normalize_dims(dim, tensors[0].ndim + 1)[0]
    return ops.Stack.apply(*tensors, dim=d)


def where(condition, input, other) -> Tensor:
    """Elementwise ``input`` where ``condition`` is true, else ``other`` (both broadcast)."""
    cond = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
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
            f"where: condition {tuple(cond.shape)}, input {tuple(a.shape)} and other {tuple(b.shape)} do not broadcast together"
        ) from None
    return ops.Where.apply(a, b, condition=cond)


# ----------------------------------------------------------------- the helpers of the creation functions
# PyTorch's signatures: sizes as ints, one tuple/list, or ``size=``; ``dtype=``, ``device=`` and ``requires_grad=``.
def _size_arg(size: tuple, size_kw, fn: str) -> tuple:
    if size_kw is not None:
        if size:
            raise TypeError(f"{fn}() got sizes both positionally {size} and as size={size_kw!r}")
        size = (size_kw,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        dims = tuple(operator.index(n) for n in size)
    except TypeError:
        raise TypeError(f"{fn}(): size must be ints or one tuple of ints, got {size!r}") from None
    if any(n < 0 for n in dims):
        raise RuntimeError(f"Trying to create tensor with negative dimension: size {list(dims)}")
    return dims


def _factory_dtype(dtype, device) -> np.dtype:
    check_device(device)
    return _check_dtype(DEFAULT_DTYPE if dtype is None else dtype)


def _new(data: np.ndarray, requires_grad: bool) -> Tensor:
    t = _wrap_output(data, None)
    if requires_grad:
        t.requires_grad_(True)
    return t
