"""A public finite-difference gradient checker: is my ``backward`` right?

``gradcheck(fn, inputs)`` compares, for every input with ``requires_grad=True``, the gradient that autograd
computes with the one obtained by central differences, in float64::

    numeric[i] = (L(x + eps·e_i) - L(x - eps·e_i)) / (2·eps),     L(x) = Σ_k <fn(x)_k, v_k>

where ``v`` is a fixed random projection of the outputs (one backward pass then checks a whole row of the
Jacobian-vector product, and a wrong sign, transpose or missing broadcast reduction shows up in almost every
element). An element passes when ``|analytic - numeric| <= atol + rtol·|numeric|``.

Example::

    >>> import numpy as np, tinyconv as tc
    >>> x = tc.tensor(np.random.rand(3, 4), requires_grad=True, dtype="float64")
    >>> tc.gradcheck(lambda t: (t * t).sum(dim=1), [x])
    True
"""
from __future__ import annotations

import numpy as np

from .autograd import no_grad
from .tensor import Tensor

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with the numeric one."""


def _outputs(result) -> list:
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor or a tuple of Tensors; output {i} is {type(o)!r}")
    return outs


def _projection(outs, directions):
    """Σ_k <out_k, v_k> as a scalar float (for the numeric side) using plain arrays."""
    return float(sum(np.sum(o._data.astype(np.float64) * v) for o, v in zip(outs, directions)))


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    seed: int = 0,
    names=None,
) -> bool:
    """Check ``fn``'s analytic gradients against central differences; True, or raise :class:`GradcheckError`.

    Parameters
    ----------
    fn : callable taking ``*inputs`` and returning a Tensor or a tuple of Tensors.
    inputs : a Tensor or a sequence; entries that are Tensors with ``requires_grad=True`` are checked (they are
        copied to float64 leaves first, so the check is always done in double precision), others are passed as is.
    eps, atol, rtol : step of the central difference and the tolerance |a - n| <= atol + rtol·|n|.
    raise_exception : if False, return False instead of raising.
    seed : seed of the random output projection.
    names : optional names of the inputs, used in the error message (default ``input 0``, ``input 1`` ...).
    """
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    inputs = list(inputs)
    names = list(names) if names is not None else [f"input {i}" for i in range(len(inputs))]
    call_args, checked = _float64_leaves(inputs, names)
    rng = np.random.default_rng(seed)
    directions = _analytic_pass(fn, call_args, checked, rng)
    for i in checked:
        x = call_args[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad._data.astype(np.float64)
        numeric = _numeric_gradient(fn, call_args, x, directions, eps)
        error = np.abs(analytic - numeric)
        allowed = atol + rtol * np.abs(numeric)
        if np.all(error <= allowed):
            continue
        if raise_exception:
            raise GradcheckError(_failure(names[i], x, analytic, numeric, error, allowed, atol, rtol, eps))
        return False
    return True


def _float64_leaves(inputs, names):
    """``(call_args, checked)``: the inputs with every Tensor that requires grad copied to a float64 leaf, and the
    positions of those."""
    checked, call_args = [], []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad:
            if not np.issubdtype(x.dtype, np.floating):
                raise TypeError(f"gradcheck: {names[i]} requires grad but has dtype {x.dtype}")
            x = Tensor(x._data.astype(np.float64), requires_grad=True)
            checked.append(i)
        call_args.append(x)
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    return call_args, checked


def _analytic_pass(fn, call_args, checked, rng):
    """Run ``fn`` and one backward pass of Σ_k <out_k, v_k> (random directions ``v``, returned), which leaves the
    analytic gradients in the checked inputs' ``.grad``."""
    outs = _outputs(fn(*call_args))
    directions = [rng.standard_normal(o.shape) for o in outs]
    total = None
    for o, v in zip(outs, directions):
        if not o.requires_grad:
            continue
        term = (o * Tensor(v.astype(o.dtype))).sum()
        total = term if total is None else total + term
    for i in checked:
        call_args[i].grad = None
    if total is not None:
        total.backward()
    return directions


def _numeric_gradient(fn, call_args, x, directions, eps):
    """Central differences of Σ_k <fn(...)_k, v_k> with respect to every element of the input ``x``."""
    numeric = np.zeros(x.shape)
    flat = x._data.reshape(-1)  # a view: perturbing it perturbs the input fn sees
    with no_grad():
        for k in range(flat.size):
            original = flat[k]
            flat[k] = original + eps
            plus = _projection(_outputs(fn(*call_args)), directions)
            flat[k] = original - eps
            minus = _projection(_outputs(fn(*call_args)), directions)
            flat[k] = original
            numeric.flat[k] = (plus - minus) / (2 * eps)
    return numeric


def _failure(name, x, analytic, numeric, error, allowed, atol, rtol, eps) -> str:
    """The message naming the worst element, both values, the tolerance and how many elements differ."""
    worst = np.unravel_index(np.argmax(error - allowed), x.shape) if x.ndim else ()
    missing = " (autograd produced no gradient for it: is it used, and does every op pass it on?)" \
        if x.grad is None else ""
    return (
        f"gradcheck failed for {name} of shape {tuple(x.shape)}{missing}: worst element at index "
        f"{tuple(int(j) for j in worst)}: analytic {analytic[worst]:.10g} vs numeric {numeric[worst]:.10g} "
        f"(|difference| {error[worst]:.3g} > tolerance atol + rtol*|numeric| = {allowed[worst]:.3g}; "
        f"atol={atol}, rtol={rtol}, eps={eps}); {int(np.sum(error > allowed))} of {x.numel()} elements differ"
    )
