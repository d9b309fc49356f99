"""Module backward hooks: ``module.register_full_backward_hook(hook)`` with PyTorch's calling convention.

``hook(module, grad_input, grad_output) -> tuple or None`` is called once per backward pass through a call of the
module, when the gradients wrt the module's inputs have been computed:

* ``grad_output`` has one entry per output of ``forward`` (a Tensor, or each element of a returned tuple): the
  gradient of the loss wrt that output, or None for an output that is not a Tensor or got no gradient;
* ``grad_input`` has one entry per *positional* argument of the call: the gradient wrt that argument; None for an
  argument that is not a Tensor; zeros (PyTorch's choice, matched here) for a Tensor that does not require a
  gradient while another argument does. Keyword arguments are not tracked, as in PyTorch;
* a returned tuple (of the same length, Tensors or None) replaces ``grad_input``: that is what flows on to the
  layers before. Several hooks run in the order they were registered, each seeing the previous one's result;
* when no input requires a gradient (the first layer of a network, fed with data) the hooks are still called,
  with ``grad_input`` all None, as soon as ``grad_output`` is known; they must then return None.

How it works (PyTorch does the same with its ``BackwardHookFunction``): the tensors going into and coming out of
``forward`` are passed through identity nodes of the graph, so that the engine hands us the gradients at those
two places. tinyconv's Functions have one output each, so each side is a small fan: one
:class:`BackwardHookFunction` node takes all the tensors of that side and produces an empty "gate" tensor, and one
:class:`BackwardHookSelect` node per tensor takes the gate and gives back that tensor's values. During backward
every select node stores the gradient it receives and passes an empty gradient to the gate; the gate node runs
after all of them (it is upstream of every one), so it sees the complete set of gradients at once, calls the
hooks, and returns the (possibly replaced) gradients to the original tensors. In ``print_graph`` these nodes
appear as ``BackwardHookSelectBackward(...)`` above a ``BackwardHookFunctionBackward(...)``.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, as_grad_array, is_grad_enabled
from ..tensor import Tensor

__all__ = ["call_with_backward_hooks", "BackwardHookFunction", "BackwardHookSelect"]


class _Fan:
    """What one side (inputs or outputs) of one module call shares between its gate and its select nodes."""

    def __init__(self, call: "_HookedCall", side: str, tensors: list):
        self.call, self.side = call, side
        self.shapes = [t.shape for t in tensors]
        self.dtypes = [t.dtype for t in tensors]
        self.grads: list = [None] * len(tensors)

    def collect(self) -> list:
        grads, self.grads = self.grads, [None] * len(self.grads)  # ready for another backward (retain_graph)
        return grads


class BackwardHookFunction(Function):
    """The gate: inputs are the tensors of one side of a module call; the output is an empty array.

    Its backward runs once every select node of the fan has run, with the complete list of their gradients.
    """

    @staticmethod
    def forward(ctx, *arrays, fan):
        ctx.fan = fan
        dtype = next((a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"), np.float32)
        return np.zeros((0,), dtype=dtype)

    @staticmethod
    def backward(ctx, _empty):
        fan = ctx.fan
        grads = fan.collect()
        if fan.side == "output":
            grads = fan.call.on_grad_outputs(grads)
        else:
            grads = fan.call.on_grad_inputs(grads)
        return tuple(grads)

    def extra_repr(self) -> str:
        fan = getattr(self, "fan", None)
        if fan is None:
            return ""
        return f"{type(fan.call.module).__name__} {fan.side}s"


class BackwardHookSelect(Function):
    """Identity on one tensor of a fan: forward gives the tensor's values, backward stores its gradient."""

    @staticmethod
    def forward(ctx, _gate, *, data, fan, index):
        ctx.fan, ctx.index = fan, index
        return data

    @staticmethod
    def backward(ctx, grad):
        fan, i = ctx.fan, ctx.index
        fan.grads[i] = grad if fan.grads[i] is None else fan.grads[i] + grad
        gate_shape = (0,)
        return (np.zeros(gate_shape, dtype=_gate_dtype(ctx)),)

    def extra_repr(self) -> str:
        fan = getattr(self, "fan", None)
        if fan is None:
            return ""
        return f"{type(fan.call.module).__name__} {fan.side} {self.index}"


def _gate_dtype(ctx):
    gate = ctx.inputs[0] if ctx.inputs else None
    return gate.dtype if gate is not None else np.float32


def _fan_out(call: "_HookedCall", side: str, tensors: list) -> tuple[list, _Fan]:
    """Route ``tensors`` (all requiring grad) through one gate and one select node each; return the new tensors."""
    fan = _Fan(call, side, tensors)
    gate = BackwardHookFunction.apply(*tensors, fan=fan)
    return [BackwardHookSelect.apply(gate, data=t._data, fan=fan, index=i) for i, t in enumerate(tensors)], fan


def _as_tensor_or_none(g):
    return None if g is None else Tensor(g)


class _HookedCall:
    """The state of one call of a module with backward hooks (a module called twice gets two of these)."""

    def __init__(self, module, n_inputs: int, input_index: list | None):
        self.module = module
        self.n_inputs = n_inputs
        self.input_index = input_index  # positions of the wrapped inputs among the args, None if none
        self.n_outputs = 0
        self.output_index: list | None = None
        self.grad_outputs: tuple | None = None

    def _hooks(self) -> list:
        return list(self.module._backward_hooks.values())

    # ---- output side: called once the gradients wrt all outputs of the call are known ----
    def on_grad_outputs(self, grads: list) -> list:
        packed = [None] * self.n_outputs
        for pos, g in zip(self.output_index, grads):
            packed[pos] = _as_tensor_or_none(g)
        self.grad_outputs = tuple(packed)
        if self.input_index is None:
            # No input requires a gradient: nothing will reach the input side, so call the hooks now.
            grad_input = (None,) * self.n_inputs
            for hook in self._hooks():
                res = hook(self.module, grad_input, self.grad_outputs)
                if res is not None and not (isinstance(res, tuple) and all(r is None for r in res)):
                    raise RuntimeError(
                        "Backward hook for Modules where no input requires gradient should always return None "
                        "or None for all gradients."
                    )
            self.grad_outputs = None
        # The gradients flow on unchanged (a hook replaces grad_input, not grad_output).
        return grads

    # ---- input side: called once the gradients wrt all (wrapped) inputs are known ----
    def on_grad_inputs(self, grads: list) -> list:
        if self.grad_outputs is None:
            # The gradient reached the inputs without passing through the outputs (PyTorch skips the hooks too).
            return grads
        res = [None] * self.n_inputs
        for pos, g in zip(self.input_index, grads):
            res[pos] = _as_tensor_or_none(g)
        for pos, (shape, dtype) in self.constant_inputs.items():
            res[pos] = Tensor(np.zeros(shape, dtype=dtype))  # PyTorch hands zeros for these, not None
        res = tuple(res)
        for hook in self._hooks():
            out = hook(self.module, res, self.grad_outputs)
            if out is None:
                continue
            if not isinstance(out, (tuple, list)):
                raise TypeError(
                    f"backward hook {hook!r} must return None or a tuple of gradients, got {type(out).__name__}"
                )
            if len(out) != len(res):
                raise RuntimeError(
                    f"Backward hook returned an invalid number of grad_input, got {len(out)}, but expected "
                    f"{len(res)}"
                )
            res = tuple(out)
        self.grad_outputs = None
        new = []
        for k, pos in enumerate(self.input_index):
            g = res[pos]
            if g is None:
                new.append(None)
            else:
                new.append(as_grad_array(g, self.in_shapes[k], self.in_dtypes[k],
                                          f"backward hook of {type(self.module).__name__}, grad_input[{pos}]"))
        return new


def call_with_backward_hooks(module, args: tuple, kwargs: dict, after_forward=None):
    """Run ``module.forward(*args, **kwargs)`` so that its full backward hooks are called during backward.

    Used by :meth:`tinyconv.nn.Module.__call__` when the module has hooks registered with
    ``register_full_backward_hook``. ``after_forward(args, result) -> result`` (the forward hooks) runs on the
    result before the outputs are wrapped, as in PyTorch, so a forward hook that replaces the output is seen by
    the backward hooks' ``grad_output``.
    """
    if after_forward is None:
        def after_forward(_args, result):
            return result
    if not is_grad_enabled():
        return after_forward(args, module.forward(*args, **kwargs))

    args = tuple(args)
    index = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    call = _HookedCall(module, len(args), index or None)
    call.constant_inputs = {i: (a.shape, a.dtype) for i, a in enumerate(args)
                            if isinstance(a, Tensor) and not a.requires_grad}
    if index:
        wrapped, _ = _fan_out(call, "input", [args[i] for i in index])
        call.in_shapes = [args[i].shape for i in index]
        call.in_dtypes = [args[i].dtype for i in index]
        arg_list = list(args)
        for i, t in zip(index, wrapped):
            arg_list[i] = t
        args = tuple(arg_list)

    result = after_forward(args, module.forward(*args, **kwargs))

    is_tuple = isinstance(result, tuple)
    outs = result if is_tuple else (result,)
    out_index = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad]
    if not out_index:
        return result  # nothing differentiable comes out: the hooks will not be called (as in PyTorch)
    call.n_outputs = len(outs)
    call.output_index = out_index
    wrapped, _ = _fan_out(call, "output", [outs[i] for i in out_index])
    out_list = list(outs)
    for i, t in zip(out_index, wrapped):
        out_list[i] = t
    if is_tuple:
        return type(result)(*out_list) if hasattr(result, "_fields") else tuple(out_list)
    return out_list[0]
