"""How a Tensor prints: PyTorch's layout, so the course's printouts read the same in tinyconv.

Floats: whole numbers as ``19.``, otherwise 4 decimals, scientific notation (``1.0000e-05``) when the non-zero
magnitudes span more than 1000x or leave [1e-4, 1e8]; every element right-aligned to one width. At most 80
columns: a row holds ``(80 - indent) // (width + 2)`` elements. Tensors over 1000 elements show the first and
last 3 entries of each axis around ``...``. (A port of the rules in PyTorch's ``torch/_tensor_str.py``.)
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["tensor_body"]

LINE_WIDTH = 80
EDGE = 3  # items kept at each end of a summarised axis
THRESHOLD = 1000  # more elements than this: summarise


def _summary(data: np.ndarray) -> np.ndarray:
    """The entries that will be shown (first and last EDGE along every long axis)."""
    index = tuple(np.r_[0:EDGE, n - EDGE:n] if n > 2 * EDGE else slice(None) for n in data.shape)
    return data[np.ix_(*[np.arange(n)[i] for n, i in zip(data.shape, index)])] if data.ndim else data


def _formatter(shown: np.ndarray):
    """(format one value, width) for the values that will be printed."""
    if shown.dtype.kind != "f":
        strs = [str(v) for v in shown.ravel().tolist()]
        width = max((len(s) for s in strs), default=1)
        return (lambda v: str(v).rjust(width)), width
    vals = shown.astype(np.float64).ravel()
    nz = vals[np.isfinite(vals) & (vals != 0)]  # the values that decide the layout (signed, for the width)
    spec, suffix = ".4f", ""
    if nz.size:
        big, small = np.abs(nz).max(), np.abs(nz).min()
        ints = bool(np.all(vals[np.isfinite(vals)] == np.ceil(vals[np.isfinite(vals)])))
        if ints:
            spec, suffix = (".4e", "") if big / small > 1000 or big > 1e8 else (".0f", ".")
        elif big / small > 1000 or big > 1e8 or small < 1e-4:
            spec = ".4e"
    else:
        spec, suffix = ".0f", "."  # only zeros / non-finite values: PyTorch's integer mode

    def raw(v: float) -> str:
        return format(v, spec) + (suffix if math.isfinite(v) else "")

    width = max((len(raw(float(v))) for v in (nz if nz.size else [])), default=1)
    if suffix == "." and nz.size:
        width = max(len(format(float(v), ".0f")) + 1 for v in nz)
    return (lambda v: raw(float(v)).rjust(width)), width


def _vector(x: np.ndarray, indent: int, summarize: bool, fmt, width: int) -> str:
    per_line = max(1, (LINE_WIDTH - indent) // (width + 2))
    if summarize and len(x) > 2 * EDGE:
        items = [fmt(v) for v in x[:EDGE].tolist()] + [" ..."] + [fmt(v) for v in x[-EDGE:].tolist()]
    else:
        items = [fmt(v) for v in x.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(x: np.ndarray, indent: int, summarize: bool, fmt, width: int) -> str:
    if x.ndim == 1:
        return _vector(x, indent, summarize, fmt, width)
    n = x.shape[0]
    if summarize and n > 2 * EDGE:
        parts = [_nested(x[i], indent + 1, summarize, fmt, width) for i in range(EDGE)] + ["..."] + \
                [_nested(x[i], indent + 1, summarize, fmt, width) for i in range(n - EDGE, n)]
    else:
        parts = [_nested(x[i], indent + 1, summarize, fmt, width) for i in range(n)]
    return "[" + ("," + "\n" * (x.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def tensor_body(data: np.ndarray, indent: int = len("tensor(")) -> str:
    """The values part of ``tensor(...)``: ``[[19., 25.],\\n        [37., 43.]]``."""
    if data.size == 0:
        return "[]"
    summarize = data.size > THRESHOLD
    fmt, width = _formatter(_summary(data) if summarize else data)
    if data.ndim == 0:
        return fmt(data.item()).strip()
    return _nested(data, indent, summarize, fmt, width)
