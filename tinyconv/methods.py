"""The Tensor methods as free functions, as PyTorch offers them: ``tc.abs(x)`` is ``x.abs()``,
``tc.sum(x, dim=1)`` is ``x.sum(dim=1)``, ``tc.argmax(y_hat, axis=1)`` is ``y_hat.argmax(axis=1)``.

Each one converts its first argument with ``as_tensor`` and calls the method of the same name, so the method is
the one home of the argument checks.
"""
from __future__ import annotations

from .tensor import Tensor, as_tensor

_NAMES = (
    "abs", "exp", "log", "log1p", "sqrt", "relu", "sigmoid", "tanh", "clamp", "clip",
    "sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "softmax", "log_softmax",
    "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "t", "numel", "neg", "clone", "detach",
    "norm", "cumsum", "sign",
)
__all__ = list(_NAMES) + ["negative", "is_tensor", "add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt",
                          "ge", "square"]


def _method(name: str):
    def fn(input, *args, **kwargs):
        return getattr(as_tensor(input), name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``{name}(input, ...)`` is ``input.{name}(...)`` (see :meth:`tinyconv.Tensor.{name}`)."
    return fn


def _operator(name: str, dunder: str):
    def fn(input, other):
        return getattr(as_tensor(input), dunder)(other)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``{name}(input, other)``: elementwise, broadcasting, like the ``{dunder}`` operator."
    return fn


for _name in _NAMES:
    globals()[_name] = _method(_name)
negative = globals()["neg"]
add, sub, mul = _operator("add", "__add__"), _operator("sub", "__sub__"), _operator("mul", "__mul__")
div, pow = _operator("div", "__truediv__"), _operator("pow", "__pow__")
eq, ne, lt = _operator("eq", "__eq__"), _operator("ne", "__ne__"), _operator("lt", "__lt__")
le, gt, ge = _operator("le", "__le__"), _operator("gt", "__gt__"), _operator("ge", "__ge__")


def square(input):
    """``input * input``."""
    return as_tensor(input).square()


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)
