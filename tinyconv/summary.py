"""``tc.summary(model, input_shape)``: a torchinfo-like table of layers, output shapes, parameters and cost.

It runs one real forward pass of a zero batch of ``input_shape`` under ``no_grad`` (in eval mode; the modules'
train/eval flags are restored afterwards), with forward hooks on every module, and prints one row per module
call, nested by indentation::

    >>> import tinyconv as tc
    >>> from tinyconv import nn
    >>> r = tc.summary(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (2, 4), print_fn=None)
    >>> r.total_params, r.total_mult_adds
    (15, 12)

What is counted (per example, i.e. for one element of the batch):

* **multiply-adds**, the course's measure of cost:

  - convolution: ``C_in/groups · C_out · kh · kw · H_out · W_out`` (that is: the weight's size times the number of
    output positions); the bias adds are not counted;
  - transposed convolution: ``C_in · C_out/groups · kh · kw · H_in · W_in`` (every input pixel meets the whole
    kernel);
  - linear: ``in_features · out_features`` per row (times the extra leading dimensions, if any);
  - pooling, activations, flatten, dropout, losses: 0 (they do comparisons or one operation per element, but no
    multiply-adds).

* **parameters**: each Parameter once (shared ones are not counted twice); *trainable* ones require a gradient.
* **memory**: the input batch, the activations (the sum of the outputs of every leaf module, i.e. what a forward
  pass keeps for backward, roughly) and the parameters, in bytes of their dtype, for the whole batch.

``summary`` returns a :class:`ModelSummary` whose attributes hold the totals (``total_params``,
``trainable_params``, ``total_mult_adds`` ...) and ``rows`` the per-call details; ``str()`` of it is the table.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from .autograd import no_grad
from .creation import zeros
from .tensor import DEFAULT_DTYPE, Tensor

__all__ = ["summary", "ModelSummary", "LayerRow", "layer_mult_adds"]


@dataclass
class LayerRow:
    """One call of one module during the forward pass."""

    name: str  # dotted path ('' for the model itself)
    type: str  # class name
    depth: int  # 0 for the model, 1 for its children ...
    output_shape: tuple | None  # None when the output is not a single tensor
    params: int  # parameters owned directly by this module (not its children)
    trainable: int
    mult_adds: int | None  # per example; None for containers (their children are counted)
    is_leaf: bool  # has no child modules
    output_bytes: int = 0
    end: int = 0  # rows[index + 1:end] are the calls made inside this one


@dataclass
class ModelSummary:
    """The result of :func:`summary`: totals as attributes, the per-call ``rows``, ``str()`` = the table."""

    model_name: str
    input_shape: tuple
    dtype: np.dtype
    rows: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    total_mult_adds: int = 0  # per example
    input_bytes: int = 0
    activation_bytes: int = 0  # forward pass, whole batch
    param_bytes: int = 0

    @property
    def batch_size(self) -> int:
        return int(self.input_shape[0]) if self.input_shape else 1

    @property
    def batch_mult_adds(self) -> int:
        return self.total_mult_adds * self.batch_size

    @property
    def total_bytes(self) -> int:
        return self.input_bytes + self.activation_bytes + self.param_bytes

    def __str__(self) -> str:
        return _format_table(self)


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def layer_mult_adds(module, input_shape, output_shape) -> int | None:
    """Multiply-adds of one call of ``module`` for ONE example (see the module docstring); None if unknown.

    ``input_shape`` / ``output_shape`` are full batch shapes (N, ...). Layers are recognised by their class name
    and weight shape, so any conv / linear layer that keeps PyTorch's weight layout is counted.
    """
    name = type(module).__name__
    weight = getattr(module, "weight", None)
    wshape = tuple(getattr(weight, "shape", ()) or ())
    if output_shape is None:
        return None
    if "Conv" in name and len(wshape) >= 3:
        spatial = len(wshape) - 2
        if "Transpose" in name:
            if input_shape is None:
                return None
            return _numel(wshape) * _numel(tuple(input_shape)[-spatial:])
        return _numel(wshape) * _numel(tuple(output_shape)[-spatial:])
    if name in ("Linear", "LazyLinear") or (name.endswith("Linear") and len(wshape) == 2):
        rows = _numel(tuple(output_shape)[1:-1])  # extra leading dims of one example
        return _numel(wshape) * rows
    return 0


def _shape_of(x):
    return tuple(x.shape) if isinstance(x, Tensor) else None


def _bytes_of(x) -> int:
    if isinstance(x, Tensor):
        return int(x._data.nbytes)
    if isinstance(x, (tuple, list)):
        return sum(_bytes_of(v) for v in x)
    return 0


def summary(model, input_shape, dtype=None, print_fn=print, depth: int | None = None) -> ModelSummary:
    """Run a zero batch of ``input_shape`` (N, C, H, W including the batch size) through ``model`` and tabulate.

    Parameters
    ----------
    model : a :class:`tinyconv.nn.Module`.
    input_shape : the full input shape, batch dimension first, e.g. ``(1, 1, 28, 28)`` for one MNIST image.
    dtype : the input's dtype (default float32).
    print_fn : called with the table text (default ``print``); None prints nothing.
    depth : only rows up to this nesting depth are shown (the totals always count everything).

    Returns a :class:`ModelSummary`; ``total_mult_adds`` is per example, ``batch_mult_adds`` for the batch.
    """
    dt = np.dtype(dtype or DEFAULT_DTYPE)
    input_shape = tuple(int(n) for n in input_shape)
    recorder = _LayerRecorder(model)
    x = zeros(input_shape, dtype=dt)
    _run_recorded(model, x, recorder)
    rows = recorder.rows
    params = list(model.parameters())
    result = ModelSummary(
        model_name=type(model).__name__, input_shape=input_shape, dtype=dt, rows=rows,
        total_params=sum(int(p._data.size) for p in params),
        trainable_params=sum(int(p._data.size) for p in params if p.requires_grad),
        total_mult_adds=sum(r.mult_adds or 0 for r in rows if r.is_leaf),
        input_bytes=int(x._data.nbytes),
        activation_bytes=sum(r.output_bytes for r in rows if r.is_leaf),
        param_bytes=sum(int(p._data.nbytes) for p in params),
    )
    result.non_trainable_params = result.total_params - result.trainable_params
    result._depth = depth
    if print_fn is not None:
        print_fn(str(result))
    return result


class _LayerRecorder:
    """Forward hooks that add one :class:`LayerRow` per module call, in call order: the pre-hook opens the row
    (name, type, depth, parameters), the hook fills in the output shape, and for a leaf its cost and output bytes."""

    def __init__(self, model):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.child_counts = {id(m): sum(1 for _ in m.children()) for m in model.modules()}
        self.rows: list[LayerRow] = []
        self.open_calls: dict = {}  # id(module) -> stack of (row index, input shape)

    def pre_hook(self, module, args):
        name = self.names.get(id(module))
        params = [p for p in module._parameters.values() if p is not None]
        self.rows.append(LayerRow(
            name=self.names.get(id(module), "?"), type=type(module).__name__,
            depth=(name.count(".") + 1) if name else 0, output_shape=None,
            params=sum(int(p._data.size) for p in params),
            trainable=sum(int(p._data.size) for p in params if p.requires_grad),
            mult_adds=None, is_leaf=self.child_counts.get(id(module), 0) == 0,
        ))
        in_shape = _shape_of(args[0]) if args else None
        self.open_calls.setdefault(id(module), []).append((len(self.rows) - 1, in_shape))

    def hook(self, module, args, output):
        index, in_shape = self.open_calls[id(module)].pop()
        row = self.rows[index]
        row.end = len(self.rows)
        row.output_shape = _shape_of(output)
        if isinstance(output, (tuple, list)) and row.output_shape is None:
            shapes = [_shape_of(o) for o in output]
            row.output_shape = tuple(shapes) if all(s is not None for s in shapes) else None
            out_shape_for_cost = shapes[0] if shapes and shapes[0] is not None else None
        else:
            out_shape_for_cost = row.output_shape
        if row.is_leaf:
            row.mult_adds = layer_mult_adds(module, in_shape, out_shape_for_cost)
            row.output_bytes = _bytes_of(output)


def _run_recorded(model, x, recorder) -> None:
    """One forward of ``x`` in eval mode without gradients, every module hooked to ``recorder``; the hooks and
    each module's training flag are restored afterwards, also when the forward raises."""
    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(recorder.pre_hook))
        handles.append(m.register_forward_hook(recorder.hook))
    modes = {id(m): m.training for m in model.modules()}
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])


def _fmt_int(n) -> str:
    return "--" if n is None else f"{n:,}"


def _fmt_bytes(nbytes: int) -> str:
    if nbytes < 1000:
        return f"{nbytes} B"
    if nbytes < 1000 ** 2:
        return f"{nbytes / 1000:.2f} kB"
    return f"{nbytes / 1000 ** 2:.2f} MB"


def _format_table(s: ModelSummary) -> str:
    depth = getattr(s, "_depth", None)
    header = ("Layer (type)", "Output shape", "Param #", "Mult-adds")
    body = []
    for i, r in enumerate(s.rows):
        if depth is not None and r.depth > depth:
            continue
        if depth is not None and r.depth == depth and not r.is_leaf:
            # the deepest row shown stands for everything inside it
            inside = [q for q in s.rows[i + 1:r.end] if q.is_leaf]
            r = LayerRow(r.name, r.type, r.depth, r.output_shape, r.params + sum(q.params for q in inside),
                         0, sum(q.mult_adds or 0 for q in inside), True)
        label = ("  " * r.depth) + (f"{r.name} ({r.type})" if r.name else r.type)
        shape = "--" if r.output_shape is None else str(list(r.output_shape)) if not (
            r.output_shape and isinstance(r.output_shape[0], tuple)) else ", ".join(
            str(list(t)) for t in r.output_shape)
        params = _fmt_int(r.params) if (r.params or r.is_leaf) else "--"
        madds = _fmt_int(r.mult_adds) if r.is_leaf else "--"
        body.append((label, shape, params, madds))
    widths = [max(len(header[i]), *(len(b[i]) for b in body)) if body else len(header[i]) for i in range(4)]
    total_width = sum(widths) + 3 * 2

    def line(cells):
        return (cells[0].ljust(widths[0]) + "  " + cells[1].ljust(widths[1]) + "  "
                + cells[2].rjust(widths[2]) + "  " + cells[3].rjust(widths[3])).rstrip()

    bar, thin = "=" * total_width, "-" * total_width
    out = [bar, line(header), bar]
    out += [line(b) for b in body]
    out += [
        bar,
        f"Input shape: {list(s.input_shape)} ({s.dtype.name})",
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.non_trainable_params:,}",
        f"Mult-adds per example: {s.total_mult_adds:,}"
        + (f" (batch of {s.batch_size}: {s.batch_mult_adds:,})" if s.batch_size != 1 else ""),
        thin,
        f"Input size: {_fmt_bytes(s.input_bytes)}",
        f"Forward pass size (activations): {_fmt_bytes(s.activation_bytes)}",
        f"Params size: {_fmt_bytes(s.param_bytes)}",
        f"Estimated total size: {_fmt_bytes(s.total_bytes)}",
        bar,
    ]
    return "\n".join(out)


class _CallableModule(type(np)):
    """Lets ``tc.summary(model, shape)`` and ``tc.summary.summary(model, shape)`` both work."""

    def __call__(self, *args, **kwargs):
        return summary(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
