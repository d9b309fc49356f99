"""The errors of tensor operations and the words their messages use for dtypes: the floor below ``tensor.py`` and
``inplace.py``, importing NumPy only."""
from __future__ import annotations

import numpy as np


class ShapeError(ValueError, RuntimeError):
    """Operands whose shapes don't fit together. Catchable as ValueError, or as RuntimeError like PyTorch's."""


class DTypeError(TypeError, RuntimeError):
    """Operands whose dtypes must agree but don't (a float64 batch into a float32 layer). Catchable as TypeError,
    or as RuntimeError like PyTorch's."""


#: bool < integer < float: PyTorch's order of dtype kinds, for promotion and for refusing a narrowing write
_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}


def _type_word(dt: np.dtype) -> str:
    """PyTorch's name for a dtype in its messages (Float, Double, Long, ...)."""
    return {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int", "uint8": "Byte",
            "bool": "Bool"}.get(dt.name, dt.name)
