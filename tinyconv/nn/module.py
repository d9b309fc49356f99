"""``Module`` and ``Parameter``: the containers every layer and model is built from (PyTorch's ``nn.Module``).

A Module registers the Parameters and sub-Modules assigned to its attributes, so ``parameters()``,
``state_dict()``, ``train()/eval()`` and ``repr`` walk the whole tree. Keys of ``state_dict`` are PyTorch's:
dotted attribute paths such as ``conv1.weight`` or ``0.bias``.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..device import check_device
from ..tensor import DEFAULT_DTYPE, Tensor, parse_to_args
from .hooks import call_with_backward_hooks

__all__ = ["Module", "Parameter", "UninitializedParameter", "UninitializedBuffer"]


class Parameter(Tensor):
    """A Tensor that is a learnable parameter of a Module: a leaf with ``requires_grad=True`` by default."""

    def __init__(self, data, requires_grad: bool = True):
        arr = data._data if isinstance(data, Tensor) else np.asarray(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float32)
        super().__init__(arr, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


_SHAPE_UNKNOWN = (
    "Can't access the shape of an uninitialized parameter or buffer. This error usually happens in "
    "`load_state_dict` when trying to load an uninitialized parameter into an initialized one. Call `forward` to "
    "initialize the parameters before accessing their attributes."
)

_VALUES_UNKNOWN = (
    "Attempted to use an uninitialized parameter. This error happens when you are using a `LazyModule` or "
    "explicitly manipulating `UninitializedParameter` objects. When using LazyModules call `forward` with a dummy "
    "batch to initialize the parameters before using them."
)


class _Uninitialized:
    """A tensor whose shape a lazy module decides on its first forward; only its dtype and ``requires_grad`` are
    known before. Reading its values or shape raises; ``materialize(shape)`` gives it storage and turns it, in
    place (same object), into ``cls_to_become``."""

    cls_to_become: type = Tensor

    def __init__(self, requires_grad: bool = False, dtype=None):
        object.__setattr__(self, "_pending_dtype", np.dtype(dtype or DEFAULT_DTYPE))
        Tensor.__init__(self, np.empty(0, self._pending_dtype), requires_grad=requires_grad)

    # Reads of the values or the shape are the mistakes PyTorch reports; the placeholder array stays hidden.
    @property
    def _data(self):
        raise ValueError(_VALUES_UNKNOWN)

    @_data.setter
    def _data(self, value):
        self.__dict__["_data"] = value

    @property
    def data(self):
        raise ValueError(_VALUES_UNKNOWN)

    @property
    def shape(self):
        raise RuntimeError(_SHAPE_UNKNOWN)

    ndim = shape

    def size(self, dim=None):
        raise RuntimeError(_SHAPE_UNKNOWN)

    def numel(self):
        raise ValueError(_VALUES_UNKNOWN)

    @property
    def dtype(self) -> np.dtype:
        return self._pending_dtype

    def __array__(self, dtype=None, copy=None):
        raise ValueError(_VALUES_UNKNOWN)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def materialize(self, shape, dtype=None) -> None:
        """Give the tensor uninitialised storage of ``shape`` (its values are set by the module's
        ``reset_parameters``); it becomes a ``cls_to_become`` (Parameter or Tensor) in place."""
        dt = np.dtype(dtype or self._pending_dtype)
        self.__dict__["_data"] = np.empty(tuple(int(n) for n in shape), dtype=dt)
        del self.__dict__["_pending_dtype"]
        self.__class__ = self.cls_to_become


class UninitializedParameter(_Uninitialized, Parameter):
    """A Parameter of a lazy module (``nn.LazyLinear`` ...) before the first forward has fixed its shape."""

    cls_to_become = Parameter

    def __init__(self, requires_grad: bool = True, dtype=None):
        _Uninitialized.__init__(self, requires_grad, dtype)


class UninitializedBuffer(_Uninitialized, Tensor):
    """A buffer (running statistics) of a lazy module before the first forward has fixed its shape."""

    cls_to_become = Tensor


def is_lazy(t) -> bool:
    """True for an uninitialised parameter or buffer (PyTorch's ``torch.nn.parameter.is_lazy``)."""
    return isinstance(t, _Uninitialized)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _RemovableHandle:
    def __init__(self, hooks: dict, key: int):
        self._hooks, self.id = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


_hook_counter = [0]


def _add_hook(hooks: dict, fn) -> _RemovableHandle:
    if not callable(fn):
        raise TypeError(f"hook must be callable, got {type(fn).__name__}")
    _hook_counter[0] += 1
    hooks[_hook_counter[0]] = fn
    return _RemovableHandle(hooks, _hook_counter[0])


class Module:
    """Base class of all layers and models. Subclasses set attributes in ``__init__`` and define ``forward``."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------------------------------- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called")
        if name in self._buffers and (value is None or (isinstance(value, Tensor) and not isinstance(value, Parameter))):
            self._buffers[name] = value  # assigning to a buffer keeps it a buffer (as in PyTorch)
            object.__setattr__(self, name, value)
            return
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, array) -> None:
        """A non-learnable array that belongs to the state (saved in ``state_dict``), e.g. running statistics."""
        value = None if array is None else (array if isinstance(array, Tensor) else Tensor(array))
        object.__setattr__(self, name, value)
        self._buffers[name] = value

    def add_module(self, name: str, module: "Module | None") -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if module is None:
            self._modules[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, module)

    # ----------------------------------------------------------------------------------------------- walking
    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = ""):
        """This module and every descendant, depth first, each once, with dotted names ('' for self)."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m.named_children()]
            stack.extend(reversed(kids))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = ""):
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    # ------------------------------------------------------------------------------------------- modes etc.
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad._data[...] = 0

    def apply(self, fn) -> "Module":
        """Call ``fn`` on every submodule and then on this module, in PyTorch's order: each child's subtree
        (depth first, children in registration order) before its parent; e.g. ``net.apply(init_weights)``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(tensor)``, in place, like PyTorch's.

        A dtype casts every floating parameter and buffer (e.g. float64 for gradient checks); the device must
        be the CPU, the only one tinyconv has.
        """
        dtype, dev, _ = parse_to_args(args, kwargs)
        check_device(dev)
        if dtype is None:
            return self
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dt.name}")
        for _, p in self.named_parameters():
            if is_lazy(p):  # a lazy module's parameters get the dtype when they are created
                object.__setattr__(p, "_pending_dtype", dt)
                continue
            p._data = p._data.astype(dt)
            if p.grad is not None:
                p.grad._data = p.grad._data.astype(dt)
        for _, b in self.named_buffers():
            if is_lazy(b):
                object.__setattr__(b, "_pending_dtype", dt)
            elif b._data.dtype.kind == "f":
                b._data = b._data.astype(dt)
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def cpu(self) -> "Module":
        return self

    def cuda(self, device=None) -> "Module":
        check_device("cuda")

    def double(self) -> "Module":
        return self.to(np.float64)

    def num_parameters(self) -> int:
        return int(sum(p._data.size for p in self.parameters()))

    # ------------------------------------------------------------------------------------------------- call
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks):
            return self.forward(*args, **kwargs)  # no hooks: skip their machinery (most calls)
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        if self._backward_hooks:
            return call_with_backward_hooks(self, args, kwargs, after_forward=self._run_forward_hooks)
        return self._run_forward_hooks(args, self.forward(*args, **kwargs))

    def _run_forward_hooks(self, args, out):
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_pre_hook(self, hook):
        """``hook(module, args) -> None or new args`` runs before ``forward``."""
        return _add_hook(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """``hook(module, args, output) -> None or new output`` runs after ``forward`` (PyTorch's convention)."""
        return _add_hook(self._forward_hooks, hook)

    def register_full_backward_hook(self, hook):
        """``hook(module, grad_input, grad_output) -> None or new grad_input``: tuples of gradients wrt the module's
        tensor inputs and outputs, called when the gradients wrt the inputs have been computed."""
        return _add_hook(self._backward_hooks, hook)

    # ------------------------------------------------------------------------------------------- state dict
    def state_dict(self, prefix: str = "") -> "OrderedDict[str, Tensor]":
        """Parameters and buffers by dotted name (``conv1.weight``), as detached Tensors sharing memory, in
        PyTorch's order: module by module, each one's parameters then its buffers (``bn1.weight``, ``bn1.bias``,
        ``bn1.running_mean`` ...)."""
        tensors = dict(self.named_parameters(prefix))
        tensors.update(self.named_buffers(prefix))
        out = OrderedDict()
        for mod_name, m in self.named_modules(prefix):
            for name in list(m._parameters) + list(m._buffers):
                key = f"{mod_name}.{name}" if mod_name else name
                if key in tensors:  # an uninitialised parameter stands for itself (it has no values to share)
                    out[key] = tensors[key] if is_lazy(tensors[key]) else tensors[key].detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's parameters and buffers, in place.

        Every key, shape and dtype is checked before anything is written, so a failed load changes nothing.
        With ``strict=True`` missing or unexpected keys are errors; otherwise they are returned.
        """
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict) and "config" in state_dict \
                and not any(k in own for k in state_dict):
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: this is a training checkpoint (keys "
                f"{', '.join(repr(k) for k in list(state_dict)[:4])}, ...), not a state dict: its weights are under "
                "['model']. Use model.load_state_dict(checkpoint['model']), or "
                "tinyconv.train.model_from_checkpoint(path) to build the trained model in one line")
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            arr = value._data if isinstance(value, Tensor) else np.asarray(value)
            if is_lazy(target):  # takes the checkpoint's shape (a lazy module's parameter, before its dry run)
                if arr.dtype.kind != target.dtype.kind:
                    problems.append(f"dtype mismatch for {key}: checkpoint has {arr.dtype}, the model expects "
                                    f"{target.dtype}")
            elif arr.shape != target.shape:
                problems.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(arr.shape)} from checkpoint, "
                    f"the shape in current model is {tuple(target.shape)}"
                )
            elif arr.dtype.kind != target.dtype.kind:  # float32 <-> float64 converts; int/bool into float doesn't
                problems.append(
                    f"dtype mismatch for {key}: checkpoint has {arr.dtype}, the model expects {target.dtype}"
                )
        if strict:
            if missing:
                problems.insert(0, "Missing key(s) in state_dict: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(repr(k) for k in unexpected))
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(problems)
            )
        for key, target in own.items():
            if key in state_dict:
                value = state_dict[key]
                arr = value._data if isinstance(value, Tensor) else np.asarray(value)
                if is_lazy(target):
                    target.materialize(arr.shape)
                np.copyto(target._data, arr, casting="unsafe")  # kinds already checked equal above
        return IncompatibleKeys(missing, unexpected)

    # -------------------------------------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"
