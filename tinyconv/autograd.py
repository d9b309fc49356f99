"""Reverse-mode automatic differentiation: ``Function``, ``no_grad`` and the backward pass.

The whole idea fits on one screen:

* Every differentiable operation is a subclass of :class:`Function` with two static methods working on
  plain NumPy arrays: ``forward(ctx, *arrays, **params) -> array`` and ``backward(ctx, grad_out) -> grads``.
* ``MyOp.apply(*tensors, **params)`` runs ``forward`` and, when any input requires a gradient, returns a Tensor
  whose ``grad_fn`` is the ``ctx`` object: an instance of ``MyOp`` that remembers its inputs and whatever
  ``forward`` saved. The graph is therefore built while the program runs (define-by-run).
* ``Tensor.backward()`` sorts the nodes reachable from the output in topological order (iteratively, so a
  10,000-op chain does not hit Python's recursion limit), then walks them once in reverse, calling each node's
  ``backward`` with the summed gradient of its output and handing the results to its inputs.

``ctx.needs_input_grad`` tells ``backward`` which inputs want a gradient, so e.g. a first conv layer never computes
the gradient of the images.

This module is the bottom floor of tinyconv: it imports NumPy only, and knows nothing of ``Tensor``. It works on
any object that carries the few attributes the engine reads (``data``, ``requires_grad``, ``grad_fn``, ``shape``,
``dtype``, ``_hooks``, ``_retains_grad``, ``_version``) and three methods the Tensor layer defines for it:
``_op_result(array, grad_fn)`` (wrap an op's result), ``_accumulate_grad(array, owned)`` (a leaf's hooks, then
``.grad +=``; ``owned``: nothing else refers to the array, so it may become ``.grad`` without a copy) and
``_nonleaf_grad(array) -> array`` (a non-leaf's hooks and ``retain_grad``).

In-place operations: a node remembers its inputs' ``grad_fn`` as they were when it ran (``input_fns``), so a tensor
whose ``grad_fn`` an in-place operation later replaces still routes this node's gradient to its earlier history.
For every input whose array ``forward`` saved (and for a saved output) the node keeps the tensor's ``_version``
then (``saved_versions``); ``backward`` refuses to run a node whose saved tensors were modified in place since,
as PyTorch does, instead of computing a wrong gradient.

Observers (the profiler is one) watch the engine through :func:`set_observer` / :func:`observe`: an
:class:`Observer` is handed every ``forward``, every node's ``backward`` and every whole backward pass to run.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

import numpy as np

__all__ = [
    "Function",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "backward",
    "as_grad_array",
    "Observer",
    "set_observer",
    "get_observer",
    "observe",
]


class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()

# The active Observer (None when nobody watches): Function.apply and backward() test it once per op and, only
# when it is set, hand it the call to run.
_observer = None


class Observer:
    """What watches the engine (e.g. :class:`tinyconv.profiler.Profile`). Install one with :func:`observe`.

    Each method is handed a call to make and must make it and return its result; the defaults just run it.
    Override any of them to time, count or log the calls.
    """

    def call_forward(self, fn_cls, ctx, arrays: list, params: dict):
        """Run one op's forward: ``fn_cls.forward(ctx, *arrays, **params)`` (ctx is the graph node)."""
        return fn_cls.forward(ctx, *arrays, **params)

    def call_backward(self, node, grad):
        """Run one node's backward: ``node.backward(node, grad)`` -> one gradient per input."""
        return node.backward(node, grad)

    def call_backward_pass(self, run, tensor, grad, retain_graph: bool):
        """Run a whole ``tensor.backward(grad)``: ``run(tensor, grad, retain_graph)`` (sort, walk, accumulate)."""
        return run(tensor, grad, retain_graph)


def set_observer(observer: Observer | None) -> Observer | None:
    """Make ``observer`` (or None) the engine's observer; returns the previous one (to restore it later)."""
    global _observer
    previous = _observer
    _observer = observer
    return previous


def get_observer() -> Observer | None:
    """The observer in force, None when nobody watches."""
    return _observer


@contextmanager
def observe(observer: Observer):
    """``with observe(obs): ...`` installs ``obs`` for the block and restores the previous observer after."""
    previous = set_observer(observer)
    try:
        yield observer
    finally:
        set_observer(previous)


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()``: only then do operations record the graph."""
    return _grad_mode.enabled


@contextmanager
def set_grad_enabled(mode: bool):
    """Context manager that turns graph recording on or off (``torch.set_grad_enabled``)."""
    previous = _grad_mode.enabled
    _grad_mode.enabled = bool(mode)
    try:
        yield
    finally:
        _grad_mode.enabled = previous


def no_grad():
    """Context manager (also usable as a decorator) under which no graph is recorded."""
    return set_grad_enabled(False)


def enable_grad():
    """Context manager that turns graph recording back on inside ``no_grad()``."""
    return set_grad_enabled(True)


class Function:
    """Base class of every differentiable operation.

    Subclasses define::

        @staticmethod
        def forward(ctx, *arrays, **params) -> np.ndarray
        @staticmethod
        def backward(ctx, grad_out) -> tuple[np.ndarray | None, ...]   # one entry per positional input

    and are called as ``Op.apply(*tensors, **params)``. ``ctx`` is the node of the graph: it carries
    ``needs_input_grad``, ``saved_tensors`` (see ``save_for_backward``) and any attribute ``forward`` sets.
    """

    # Set by apply() on recorded nodes only (class defaults keep unrecorded ones cheap).
    input_fns: tuple = ()  # each input's grad_fn when this node ran (None for leaves and plain values)
    saved_versions: tuple = ()  # (tensor, version) for each input whose array forward saved; (None, 0): the output
    # Set by the backward walk before each backward(): True when the incoming gradient is an array nobody else holds
    # (no other edge, hook, retained .grad or view of it), so backward may write its result into it.
    owns_grad: bool = False

    # A node's own state starts as these class-level defaults (immutable, so nothing is shared by accident) and
    # becomes instance attributes as it is set: creating a node is then one allocation, not six stores.
    needs_input_grad: tuple = ()  # one bool per positional input
    inputs: tuple = ()  # the input Tensors (None for non-tensor positions), for the graph walk
    _saved: tuple | None = ()
    _freed: bool = False
    output_ref = None  # weakref to the output Tensor (for hooks and retain_grad)
    output_meta: tuple = ()  # (shape, dtype) of the output, kept even after it is gone

    # --- what forward uses -------------------------------------------------------------------------------
    def save_for_backward(self, *arrays) -> None:
        """Keep arrays for ``backward``; they are released after backward unless ``retain_graph=True``."""
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise RuntimeError(
                f"Trying to backward through the graph a second time (or to read the saved values of "
                f"{self.name()} after they were freed). Saved intermediate values of the graph are freed when "
                f"you call .backward(). Specify retain_graph=True if you need to backward through the graph "
                f"a second time."
            )
        return self._saved

    def release(self) -> None:
        """Drop everything saved for backward (called by the engine unless ``retain_graph=True``)."""
        self._saved = None
        self._freed = True
        attrs = self.__dict__
        for key in [k for k in attrs if k[:6] == "saved_"]:
            del attrs[key]

    # --- naming, for graph inspection -----------------------------------------------------------------
    def extra_repr(self) -> str:
        """Extra text shown in the node's name, e.g. ``kernel=im2col``; subclasses may override."""
        return ""

    def name(self) -> str:
        extra = self.extra_repr()
        base = type(self).__name__ + "Backward"
        return f"{base}({extra})" if extra else base

    def __repr__(self) -> str:
        return f"<{self.name()}>"

    @property
    def next_functions(self) -> tuple:
        """``(grad_fn or None, input)`` for every input, like PyTorch's ``grad_fn.next_functions``."""
        return tuple(zip(self.input_fns, self.inputs))

    # --- running ------------------------------------------------------------------------------------------
    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run ``forward`` on the inputs' arrays and, if needed, record the node in the graph.

        Positional inputs are tensors (anything with ``requires_grad``, see the module docstring) or plain values
        (arrays, numbers, None), which are passed through as they are and never get a gradient.
        """
        ctx = cls()
        arrays = []
        needs = []
        graph_inputs = []
        fns = []  # each input's grad_fn now (a later in-place write may replace it)
        maker = None
        for t in inputs:
            requires_grad = getattr(t, "requires_grad", None)
            if requires_grad is None:  # a plain value
                arrays.append(t)
                needs.append(False)
                graph_inputs.append(None)
                fns.append(None)
            else:
                maker = t
                arrays.append(t._data)
                needs.append(requires_grad)
                graph_inputs.append(t)
                fns.append(t.grad_fn)
        if maker is None:
            raise TypeError(f"{cls.__name__}.apply needs at least one Tensor among its positional inputs")
        record = _grad_mode.enabled and True in needs
        ctx.needs_input_grad = tuple(needs) if record else (False,) * len(needs)
        if _observer is None:
            out = cls.forward(ctx, *arrays, **params)
        else:
            out = _observer.call_forward(cls, ctx, arrays, params)
        if not record:
            return maker._op_result(out, None)
        ctx.inputs = tuple(graph_inputs)
        ctx.input_fns = tuple(fns)
        if ctx._saved:
            ctx.saved_versions = _saved_versions(ctx._saved, graph_inputs, out)
        return maker._op_result(out, ctx)


def _saved_versions(saved: tuple, inputs: list, out) -> tuple:
    """(tensor, its version now) for each input whose array (or a view of it) is among ``saved``; (None, 0) when
    the output itself is saved. Arrays forward computed for itself need no watching."""
    found = []
    for s in saved:
        if s is out:
            found.append((None, 0))
            continue
        if not isinstance(s, np.ndarray):
            continue
        for t in inputs:
            if t is not None and (s is t._data or (s.base is not None and np.may_share_memory(s, t._data))):
                found.append((t, t._version))
                break
    return tuple(found)


def _check_versions(node) -> None:
    """Raise PyTorch's error if a tensor ``node`` saved was modified in place after it was saved."""
    for t, expected in node.saved_versions:
        if t is None:
            t = node.output_ref() if node.output_ref is not None else None
            if t is None:
                continue  # the output is gone, so nothing can have modified it
        if t._version != expected:
            kind = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int", "bool": "Bool",
                    "uint8": "Byte"}.get(t.dtype.name, t.dtype.name)
            made_by = f", which is output 0 of {t.grad_fn.name()}," if t.grad_fn is not None else ""
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace operation: "
                f"[torch.{kind}Tensor {list(t.shape)}]{made_by} is at version {t._version}; expected version "
                f"{expected} instead. Hint: the node that needed it is {node.name()}; compute on a copy (.clone()) "
                f"or do the in-place operation after backward()."
            )


def as_grad_array(grad, like_shape, like_dtype, who: str) -> np.ndarray:
    """Validate a gradient handed to backward (or returned by a hook) and return it as an array of ``like_dtype``.

    ``grad`` may be an array or a Tensor (read through its ``__array__``)."""
    arr = np.asarray(grad)
    if arr.shape != tuple(like_shape):
        raise RuntimeError(f"{who}: expected a gradient of shape {tuple(like_shape)}, got shape {tuple(arr.shape)}")
    if arr.dtype != like_dtype:
        arr = arr.astype(like_dtype)
    return arr


def _topological_order(root_fn) -> list:
    """Nodes reachable from ``root_fn``, each after every node that consumes its output (iterative DFS)."""
    order = []
    visited = {id(root_fn)}
    stack = [(root_fn, iter(root_fn.input_fns))]
    while stack:
        node, children = stack[-1]
        for fn in children:
            if fn is None or id(fn) in visited:
                continue
            visited.add(id(fn))
            stack.append((fn, iter(fn.input_fns)))
            break
        else:
            stack.pop()
            order.append(node)
    order.reverse()  # post-order reversed: consumers before producers
    return order


def _sole_local_refcount() -> int:
    a = np.empty(0)
    return sys.getrefcount(a)


# What sys.getrefcount reports for an array held by one local variable only (2 in CPython 3.11).
_SOLE_REFS = _sole_local_refcount()


def backward(tensor, grad=None, retain_graph: bool = False) -> None:
    """Back-propagate from ``tensor``: accumulate d(tensor)/d(leaf) (times ``grad``) into every leaf's ``.grad``."""
    if _observer is not None:
        return _observer.call_backward_pass(_backward_pass, tensor, grad, retain_graph)
    return _backward_pass(tensor, grad, retain_graph)


def _backward_pass(tensor, grad, retain_graph: bool) -> None:
    grad_arr = _seed_gradient(tensor, grad)
    if tensor.grad_fn is None:  # backward on a leaf: d(leaf)/d(leaf) = 1
        tensor._accumulate_grad(grad_arr)
        return

    order = _topological_order(tensor.grad_fn)
    grads = {id(tensor.grad_fn): grad_arr}
    input_grads = None
    leaf_grads = {}  # id(leaf) -> (leaf, summed gradient), accumulated into .grad after the walk
    for node in order:
        g = grads.pop(id(node), None)
        if g is None:
            continue  # no gradient flows through this node (e.g. only into inputs that don't need it)
        out = node.output_ref() if node.output_ref is not None else None
        if out is not None and (out._hooks or out._retains_grad) and out.grad_fn is node:
            g = out._nonleaf_grad(g)
        if node._freed:
            _ = node.saved_tensors  # raises the "backward through the graph a second time" error
        if node.saved_versions:
            _check_versions(node)
        # Drop the previous node's references to its results first, so that only g itself (and getrefcount's
        # argument) refers to an array no one else holds.
        input_grads = None
        node.owns_grad = type(g) is np.ndarray and g.base is None and sys.getrefcount(g) <= _SOLE_REFS
        if _observer is None:
            input_grads = node.backward(node, g)
        else:
            input_grads = _observer.call_backward(node, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.name()} returned {len(input_grads)} gradients for {len(node.inputs)} inputs"
            )
        _route(node, input_grads, grads, leaf_grads)
        if not retain_graph:
            node.release()
    input_grads = g = None  # the walk's last references: leaf_grads alone holds the leaves' arrays now
    for key in list(leaf_grads):
        leaf, g = leaf_grads.pop(key)
        # A gradient nothing else refers to (an array of its own, or the whole of one no one else holds) is
        # handed over as .grad, not copied: a model's weight gradients are fresh arrays, and a copy would be one
        # more pass over fresh memory the size of the model every step.
        owned = (type(g) is np.ndarray and g.flags.writeable and sys.getrefcount(g) <= _SOLE_REFS and (
            g.base is None or (type(g.base) is np.ndarray and g.base.base is None and g.base.size == g.size
                               and sys.getrefcount(g.base) <= _SOLE_REFS)))
        leaf._accumulate_grad(g, owned)


def _seed_gradient(tensor, grad):
    """The gradient the walk starts from: ones for a scalar output, else ``grad`` checked against its shape."""
    if not tensor.requires_grad:
        raise RuntimeError(
            "element 0 of tensors does not require grad and does not have a grad_fn: "
            "call backward() on a result computed from tensors with requires_grad=True"
        )
    if grad is None:
        if tensor._data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; this output has shape "
                f"{tuple(tensor.shape)}: pass backward(gradient) with a gradient of that shape"
            )
        return np.ones(tensor.shape, dtype=tensor.dtype)
    return as_grad_array(grad, tensor.shape, tensor.dtype, "backward()")


def _route(node, input_grads, grads, leaf_grads) -> None:
    """Hand ``node``'s input gradients on: added into ``grads`` under the producing node, or, for a leaf, into
    ``leaf_grads`` (accumulated into ``.grad`` once the walk is done)."""
    for t, fn, gi, needed in zip(node.inputs, node.input_fns, input_grads, node.needs_input_grad):
        if t is None or gi is None or not needed:
            continue
        if gi.shape != t.shape:
            raise RuntimeError(
                f"{node.name()} returned a gradient of shape {tuple(gi.shape)} for an input of shape {tuple(t.shape)}"
            )
        if gi.dtype != t.dtype:
            gi = gi.astype(t.dtype)
        if fn is None:
            # Sum every edge into a leaf first, so its hooks see the total once (as PyTorch's AccumulateGrad).
            key = id(t)
            leaf_grads[key] = (t, leaf_grads[key][1] + gi) if key in leaf_grads else (t, gi)
        else:
            key = id(fn)
            if key in grads:
                grads[key] = grads[key] + gi
            else:
                grads[key] = gi
