"""Optimizers: ``Optimizer`` (the base), ``SGD``, ``Adam`` and ``AdamW``, with PyTorch's formulas and state layout.

Every optimizer updates the parameter's storage (``p.data``) in place and keeps its per-parameter buffers in the
parameter's dtype, so a float32 model stays float32 (hyper-parameters are Python floats, which NumPy treats as "weak" scalars).

Parameters are given as an iterable of Parameters, or of dicts (*parameter groups*) each with a ``'params'`` entry
and any hyper-parameters that override the optimizer's defaults for that group::

    opt = SGD([{"params": model.conv1.parameters()}, {"params": model.fc3.parameters(), "lr": 1e-3}],
              lr=0.1, momentum=0.9)

``state_dict()`` is PyTorch's layout, made only of arrays, numbers, strings and lists (so ``tc.save`` can store
it in an ``.npz`` without pickle)::

    {"state": {0: {"step": 3, "exp_avg": array, ...}, 1: {...}},          # keyed by parameter index
     "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], ..., "params": [0, 1, 2, 3]}]}

Indices count parameters across the groups in order, as PyTorch does.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import enable_grad
from ..kernels.adam import adam_update
from ..tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "required"]


class _Required:
    """Sentinel for a hyper-parameter with no default (``SGD``'s ``lr`` in old PyTorch)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def _check_nonnegative(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not value >= 0.0:  # also catches NaN
        raise ValueError(f"Invalid {what}: {value}")


class Optimizer:
    """Base class: holds ``param_groups`` and per-parameter ``state``; subclasses define ``step``.

    Args:
        params: an iterable of Parameters (Tensors with ``requires_grad``), or of dicts with key ``'params'``.
        defaults: hyper-parameter name → default value, filled into every group that does not set it.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict] = {}  # Tensors hash by identity, so the parameter is the key
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got a single Tensor of shape {tuple(params.shape)}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (a dict with ``'params'`` and optional hyper-parameters)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a parameter group needs a 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but parameter {i} of the group is a "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (parameter {i} of the group, shape {tuple(p.shape)})")
            if not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"can only optimize floating point Tensors, parameter {i} has dtype {p.dtype}")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        self._validate_group(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group (or twice in one group)")
        self.param_groups.append(group)

    def _validate_group(self, group: dict) -> None:
        """Check a group's hyper-parameters; subclasses raise ValueError("Invalid ...") like PyTorch."""

    # ------------------------------------------------------------------------------------------------ steps
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of all parameters (``None``, or zero-filled arrays with ``set_to_none=False``)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad._data[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure()`` (if given) re-evaluates the loss first."""
        raise NotImplementedError(f"{type(self).__name__} must define step()")

    @staticmethod
    def _grad_of(p: Tensor) -> np.ndarray | None:
        if p.grad is None:
            return None
        g = p.grad._data if isinstance(p.grad, Tensor) else np.asarray(p.grad)
        if g.shape != p.shape:
            raise RuntimeError(f"gradient of shape {tuple(g.shape)} does not match its parameter's shape {tuple(p.shape)}")
        return g if g.dtype == p.dtype else g.astype(p.dtype)

    # ------------------------------------------------------------------------------------------- state dict
    def state_dict(self) -> dict:
        """``{'state': {index: {name: array or number}}, 'param_groups': [{..., 'params': [indices]}]}``.

        Arrays are copies, so the dict is a snapshot that later steps don't change.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else _plain(v))
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()``: hyper-parameters of each group and every parameter's buffers.

        The group structure (number of groups, parameters per group) and every buffer's shape must match;
        everything is checked before anything changes. Buffers are copied and cast to their parameter's dtype.
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups' entries, got "
                             + (f"keys {sorted(map(str, state_dict))}" if isinstance(state_dict, dict)
                                else type(state_dict).__name__))
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter group(s), "
                             f"this optimizer has {len(self.param_groups)}")
        params_by_index: dict[int, Tensor] = {}
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            ids = list(saved["params"])
            if len(ids) != len(mine["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size of "
                                 f"optimizer's group: group {i} has {len(ids)} parameter(s) in the state dict, "
                                 f"{len(mine['params'])} in the optimizer")
            for idx, p in zip(ids, mine["params"]):
                params_by_index[int(idx)] = p
        new_state: dict[Tensor, dict] = {}
        for key, buffers in state_dict["state"].items():
            idx = int(key)
            if idx not in params_by_index:
                raise ValueError(f"optimizer state has an entry for parameter index {idx}, but the parameter "
                                 f"groups only list indices {sorted(params_by_index)}")
            p = params_by_index[idx]
            restored = {}
            for name, value in buffers.items():
                if isinstance(value, Tensor):
                    value = value._data
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    if value.shape != p.shape:
                        raise ValueError(f"optimizer state '{name}' of parameter {idx} has shape {tuple(value.shape)}, "
                                         f"the parameter has shape {tuple(p.shape)}")
                    if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_) or \
                            np.issubdtype(value.dtype, np.complexfloating):
                        raise ValueError(f"optimizer state '{name}' of parameter {idx} holds {value.dtype} values, "
                                         f"expected real numbers (the parameter is {p.dtype})")
                    value = value.astype(p.dtype, copy=True)
                elif isinstance(value, (np.ndarray, np.generic)):
                    value = value.item()
                restored[name] = value
            new_state[p] = restored
        # All checks passed: now change things.
        for mine, saved in zip(self.param_groups, saved_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = _from_plain(k, v, self.defaults.get(k))
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        lines.append(")")
        return "\n".join(lines)


def _plain(v):
    """Hyper-parameter values as plain Python (tuples become lists, NumPy scalars become numbers)."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _from_plain(name: str, v, default):
    """Undo ``_plain`` where the default is a tuple (``betas``), so groups look the same after a load."""
    if isinstance(default, tuple) and isinstance(v, (list, tuple)):
        return tuple(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _closure_loss(closure):
    if closure is None:
        return None
    with enable_grad():
        return closure()


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (PyTorch's algorithm).

    For each parameter p with gradient g, at step t::

        g ← g + weight_decay · p
        if momentum ≠ 0:
            b ← g                                  (t = 1: the buffer starts as the first gradient)
            b ← momentum · b + (1 − dampening) · g (t > 1)
            g ← g + momentum · b   if nesterov else   b
        p ← p − lr · g
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        _check_nonnegative(lr, "learning rate")
        _check_nonnegative(momentum, "momentum value")
        _check_nonnegative(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _validate_group(self, group: dict) -> None:
        _check_nonnegative(group["lr"], "learning rate")
        _check_nonnegative(group["momentum"], "momentum value")
        _check_nonnegative(group["weight_decay"], "weight_decay value")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, mu, tau = float(group["lr"]), float(group["momentum"]), float(group["dampening"])
            wd, nesterov = float(group["weight_decay"]), bool(group["nesterov"])
            for p in group["params"]:
                g = self._grad_of(p)
                if g is None:
                    continue
                if wd != 0:
                    g = g + wd * p._data  # a new array: never modify the gradient the user can see
                if mu != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
                    else:
                        buf *= mu
                        buf += (1.0 - tau) * g
                    g = g + mu * buf if nesterov else buf
                p._data -= lr * g
                p._bump_version()  # a graph that saved p now refuses backward, as in PyTorch
        return loss


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, PyTorch's algorithm; ``AdamW`` decouples the decay.

    For each parameter p with gradient g, at step t (counted per parameter, from 1)::

        g ← g + weight_decay · p                  (Adam's L2 penalty; AdamW instead does p ← p − lr·wd·p)
        m ← β1 · m + (1 − β1) · g                 (m, v start at zero)
        v ← β2 · v + (1 − β2) · g²
        m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ)
        p ← p − lr · m̂ / (√v̂ + eps)             (eps is added after the square root)

    With ``amsgrad=True`` the running maximum of v̂'s numerator is used in the denominator.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        _check_nonnegative(group["lr"], "learning rate")
        _check_nonnegative(group["eps"], "epsilon value")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        _check_nonnegative(group["weight_decay"], "weight_decay value")

    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            amsgrad = bool(group["amsgrad"])
            for p in group["params"]:
                g = self._grad_of(p)
                if g is None:
                    continue
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = np.zeros_like(p._data)
                    state["exp_avg_sq"] = np.zeros_like(p._data)
                    if amsgrad:
                        state["max_exp_avg_sq"] = np.zeros_like(p._data)
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    if self._decoupled:
                        p._data *= 1.0 - lr * wd
                    else:
                        g = g + wd * p._data
                m, v = state["exp_avg"], state["exp_avg_sq"]
                bias_correction1 = 1.0 - beta1**t
                bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
                if not amsgrad:
                    # PyTorch's single-tensor Adam's operation order (float32 results agree closely), one pass
                    adam_update(p._data, g, m, v, beta1, beta2, lr / bias_correction1, bias_correction2_sqrt, eps)
                    p._bump_version()
                    continue
                m += (1.0 - beta1) * (g - m)  # lerp towards g: β1·m + (1−β1)·g
                v *= beta2
                v += (1.0 - beta2) * g * g
                vmax = state["max_exp_avg_sq"]  # amsgrad: the running maximum in the denominator
                np.maximum(vmax, v, out=vmax)
                denom = np.sqrt(vmax) / bias_correction2_sqrt + eps
                p._data -= (lr / bias_correction1) * (m / denom)
                p._bump_version()
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): ``p ← p − lr·wd·p`` before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

