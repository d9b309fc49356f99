"""See the backward pass of your own model: ``tc.explore(loss)`` writes one offline HTML page that steps through
reverse mode node by node.

::

    loss = F.cross_entropy(model(x), y)
    tc.explore(loss, "explore.html", model=model, closure=lambda: F.cross_entropy(model(x), y))
    loss.backward()                    # explore left the graph and every .grad as they were

The page draws the graph in forward order (op, layer name, output shape; residual joins and fan-out as arcs) and
walks the backward pass in the order the engine runs it (buttons, arrow keys). For each node it shows the forward
output and the gradient that arrives as images (feature maps as a grid, 2-D arrays as heat maps, a diverging
colour scale centred on 0), the node's local backward rule in words and as a formula, the gradients it sends on,
and, for parameters, their gradients (filters as a grid, biases as bars) beside a numerical check: the analytic
value against float64 central differences on a few sampled elements.

How the numbers are taken:

* one backward pass (``retain_graph=True``) runs under an :class:`~tinyconv.autograd.Observer` that records each
  node's incoming gradient and results in the order the engine calls them; the leaves' ``.grad`` are put back
  afterwards, so exploring changes nothing (hooks on tensors do run);
* a node's forward output is the tensor its consumers hold as their input (every node keeps its inputs);
* the numerical check needs ``closure``, a function that recomputes the loss from the current parameters (as
  ``torch.optim.LBFGS.step`` takes one): each sampled parameter element is moved by ±eps in a float64 copy of
  the parameter (tinyconv computes mixed dtypes in the wider one, so everything downstream runs in float64) and
  ``(L(p+eps) - L(p-eps)) / 2eps`` is compared with the gradient the engine computed. With ``model`` given, its
  buffers (batch-norm running statistics) are restored after those evaluations.

:class:`Snapshots` collects several passes of the same model (e.g. steps 0, 50 and 500 of a training loop) into
one page with a slider between them. Arrays are embedded as int8 quantised against their largest magnitude
(images need no more); statistics are computed in float64 from the full arrays. The data is JSON in
``<script type="application/json" id="tinyconv-data">``; ``window.tinyconvExplorer`` (``step(k)``,
``current()``, ``snapshot(i)``) drives the page.
"""
from __future__ import annotations

import base64
import json
import math
import os

import numpy as np

from . import autograd
from .autograd import no_grad
from .files import atomic_write
from .functional import promoting_dtypes
from .graph import graph_nodes
from .nn.module import Parameter
from .tensor import Tensor

__all__ = ["explore", "Snapshots", "capture", "read_data", "backward_rule", "DATA_FORMAT"]

DATA_FORMAT = "tinyconv-explore"
#: Node and leaf arrays with more elements than this keep only their first ``max_images`` rows along the batch
#: dimension in the page (statistics are still taken on the whole array).
_EMBED_LIMIT = 16384


# ------------------------------------------------------------------------------------------- local rules
#: op (the Function's class name) -> (the rule in words, the rule as a formula). G is the gradient arriving at the
#: node's output; the formulas use the names of the node's inputs.
RULES = {
    "Conv2d": (
        "The input's gradient is a transposed convolution of the output gradient with the weights (each output "
        "pixel's gradient is spread back over the window that produced it); the weight gradient is a correlation "
        "of the input with the output gradient, summed over the batch; the bias gradient sums the output gradient "
        "over N, H and W.",
        "∂L/∂X = conv_transpose2d(G, W)\n∂L/∂W[o, c] = Σₙ X[n, c] ⋆ G[n, o]\n∂L/∂b[o] = Σₙ,ₕ,ᵥ G[n, o, h, w]"),
    "ConvTranspose2d": (
        "The adjoint of a convolution: the input's gradient is a plain convolution of the output gradient with "
        "the weights; the weight gradient correlates the output gradient with the input.",
        "∂L/∂X = conv2d(G, W)\n∂L/∂W[c, o] = Σₙ G[n, o] ⋆ X[n, c]\n∂L/∂b[o] = Σₙ,ₕ,ᵥ G[n, o, h, w]"),
    "Conv2dReluMaxPool2d": (
        "One node for three layers: a Sequential fuses Conv2d → ReLU → MaxPool2d (nn.set_fusion(False) keeps "
        "them apart), and only the pooled output is kept. Its backward runs the three rules in reverse: the ReLU "
        "mask on the pooled output, max pooling routes each gradient to its window's arg-max, then the "
        "convolution's rules (input gradient: a transposed convolution of that gradient with the weights; weight "
        "gradient: a correlation of the input with it).",
        "ReLU:      G₁ = G ⊙ [out > 0]\n"
        "max pool:  G₂[arg-max of window w] += G₁[w]\n"
        "conv:      ∂L/∂X = conv_transpose2d(G₂, W)\n"
        "           ∂L/∂W[o, c] = Σₙ X[n, c] ⋆ G₂[n, o]\n"
        "           ∂L/∂b[o] = Σₙ,ₕ,ᵥ G₂[n, o, h, w]"),
    "MaxPool2d": (
        "Max pooling routes each output gradient to the position of its window's maximum (the arg-max saved in "
        "the forward pass); every other input position gets 0.",
        "∂L/∂X[p] = Σ over windows w whose arg-max is p of G[w]"),
    "AvgPool2d": (
        "Average pooling spreads each output gradient evenly over the positions of its window.",
        "∂L/∂X[p] = Σ over windows w ∋ p of G[w] / (kH·kW)"),
    "AdaptiveAvgPool2d": (
        "Adaptive average pooling spreads each output gradient evenly over the region it averaged.",
        "∂L/∂X[p] = Σ over regions r ∋ p of G[r] / |r|"),
    "Relu": ("ReLU masks: the gradient passes where the input was positive and is 0 elsewhere.",
             "∂L/∂x = G ⊙ [x > 0]"),
    "LeakyRelu": ("Leaky ReLU passes the gradient where the input was positive and scales it by the slope "
                  "elsewhere.", "∂L/∂x = G ⊙ (x > 0 ? 1 : slope)"),
    "Sigmoid": ("The sigmoid's derivative is s(1 − s), read from the saved output s.", "∂L/∂x = G ⊙ s ⊙ (1 − s)"),
    "Tanh": ("tanh's derivative is 1 − t², read from the saved output t.", "∂L/∂x = G ⊙ (1 − t²)"),
    "Add": ("Addition copies the gradient to both inputs (summed over the dimensions an input was broadcast "
            "along).", "∂L/∂a = G\n∂L/∂b = G"),
    "Sub": ("Subtraction copies the gradient to a and its negative to b.", "∂L/∂a = G\n∂L/∂b = −G"),
    "Mul": ("The product rule: each input's gradient is G times the other input.", "∂L/∂a = G ⊙ b\n∂L/∂b = G ⊙ a"),
    "Div": ("The quotient rule.", "∂L/∂a = G / b\n∂L/∂b = −G ⊙ a / b²"),
    "Neg": ("Negation negates the gradient.", "∂L/∂x = −G"),
    "Pow": ("The power rule.", "∂L/∂a = G ⊙ b·a^(b−1)\n∂L/∂b = G ⊙ aᵇ·ln a"),
    "MatMul": ("A matrix product sends G times the other factor's transpose to each factor.",
               "∂L/∂A = G Bᵀ\n∂L/∂B = Aᵀ G"),
    "Linear": ("A fully connected layer, y = x Wᵀ + b: x gets G times W, W gets Gᵀ times x (a sum over the "
               "batch), b gets G summed over the batch.", "∂L/∂x = G W\n∂L/∂W = Gᵀ x\n∂L/∂b = Σₙ G[n]"),
    "Exp": ("exp is its own derivative.", "∂L/∂x = G ⊙ eˣ"),
    "Log": ("The derivative of ln x is 1/x.", "∂L/∂x = G / x"),
    "Log1p": ("The derivative of ln(1 + x) is 1/(1 + x).", "∂L/∂x = G / (1 + x)"),
    "Sqrt": ("The derivative of √x is 1/(2√x).", "∂L/∂x = G / (2√x)"),
    "Abs": ("|x| passes the gradient with the sign of x.", "∂L/∂x = G ⊙ sign(x)"),
    "Clamp": ("Clamping passes the gradient where the input was inside [min, max].",
              "∂L/∂x = G ⊙ [min ≤ x ≤ max]"),
    "Where": ("where() routes the gradient to the input each element was taken from.",
              "∂L/∂a = G ⊙ cond\n∂L/∂b = G ⊙ ¬cond"),
    "Softmax": ("The softmax's Jacobian applied to G.", "∂L/∂x = s ⊙ (G − Σⱼ Gⱼ sⱼ)"),
    "LogSoftmax": ("log-softmax: the gradient minus the softmax times the gradient's sum over the classes.",
                   "∂L/∂x = G − softmax(x) ⊙ Σⱼ Gⱼ"),
    "Sum": ("A sum broadcasts the gradient back to every element it added.", "∂L/∂x[i] = G"),
    "Mean": ("A mean spreads the gradient evenly: each of the n elements gets G/n.", "∂L/∂x[i] = G / n"),
    "Amax": ("max/min send the gradient to the elements that were the extreme (split evenly on ties).",
             "∂L/∂x[i] = G ⊙ [x[i] = max] / #ties"),
    "Reshape": ("A reshape (view, flatten) only changes the shape: the gradient is reshaped back.",
                "∂L/∂x = reshape(G, x.shape)"),
    "Permute": ("A permutation (a transpose) permutes the gradient back with the inverse permutation.",
                "∂L/∂x = permute(G, inverse(dims))"),
    "GetItem": ("Indexing scatters the gradient into zeros at the positions it read.",
                "∂L/∂x = zeros; ∂L/∂x[index] += G"),
    "NllLoss": ("The negative log-likelihood reads one log-probability per target, its class's: only those get "
                "a gradient, −G times the class weight (1 without weights), divided for a mean by the targets' "
                "summed weights (their count without weights).",
                "∂L/∂logp[n, c] = −G·w[c]/Σₙ w[tₙ] if c = tₙ, else 0"),
    "SetItem": ("An indexed write: the overwritten positions get no gradient from the old value; the written "
                "value gets G at those positions.", "∂L/∂a = G with G[index] = 0\n∂L/∂v = G[index]"),
    "Clone": ("A copy passes the gradient unchanged.", "∂L/∂x = G"),
    "Cast": ("A dtype conversion converts the gradient back.", "∂L/∂x = G.astype(x.dtype)"),
    "Cat": ("Concatenation splits the gradient into the inputs' pieces.", "∂L/∂xᵢ = G[slice of xᵢ]"),
    "Stack": ("Stacking hands each input its slice of the gradient.", "∂L/∂xᵢ = G[i]"),
    "BatchNorm": (
        "Batch normalization in training mode: x̂ = (x − μ_B)/σ_B with the batch's statistics, so the input's "
        "gradient has G's mean and its projection on x̂ removed; γ's gradient correlates G with x̂, β's sums G. "
        "In eval mode the running statistics are constants and the input's gradient is G·γ/σ.",
        "∂L/∂x = γ/σ_B ⊙ (G − mean(G) − x̂ ⊙ mean(G ⊙ x̂))\n∂L/∂γ = Σ G ⊙ x̂\n∂L/∂β = Σ G"),
}
_GENERIC_RULE = ("No special view for this op: its backward(ctx, grad_out) returns one gradient per input, shown "
                 "below with the gradient that arrives.", "∂L/∂inputᵢ = backward(ctx, G)[i]")


def backward_rule(op: str) -> tuple[str, str]:
    """(words, formula) of the local backward rule of the op named ``op`` (a Function class name)."""
    return RULES.get(op, _GENERIC_RULE)


# -------------------------------------------------------------------------------------------- arrays
def _stats(a) -> dict:
    """min, max, mean, L2 norm (float64) of the finite values, and how many are not finite."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    f = a[finite] if not finite.all() else a
    if f.size == 0:
        return {"min": None, "max": None, "mean": None, "norm": None, "nonfinite": int(a.size)}
    return {"min": float(f.min()), "max": float(f.max()), "mean": float(f.mean()),
            "norm": float(np.sqrt(np.sum(f * f))), "nonfinite": int(a.size - f.size)}


def _blob(a, batch: int | None, max_images: int) -> dict:
    """An array for the page: int8 values q with a ≈ q/127·scale (non-finite values as 0), base64 encoded; the
    first ``max_images`` rows along the batch dimension when the array is large and has one."""
    a = np.asarray(a, dtype=np.float64)
    shape = list(a.shape)
    if a.ndim >= 2 and batch is not None and a.shape[0] == batch and a.size > _EMBED_LIMIT and batch > max_images:
        a = a[:max_images]
    a = np.where(np.isfinite(a), a, 0.0)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    q = np.zeros(a.shape, np.int8) if scale == 0.0 else np.rint(a / scale * 127).astype(np.int8)
    return {"shape": shape, "kept": list(a.shape), "scale": scale,
            "q": base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii")}


# ---------------------------------------------------------------------------------------------- capture
class _Recorder(autograd.Observer):
    """Records, for each node the engine runs, the gradient that arrives and the gradients it returns."""

    def __init__(self):
        self.calls = []

    def call_backward(self, node, grad):
        arriving = np.array(grad, copy=True)  # the node may write its result into grad
        result = node.backward(node, grad)
        results = result if isinstance(result, tuple) else (result,)
        self.calls.append((node, arriving, [None if r is None else np.array(r, copy=True) for r in results]))
        return result


def _op(node) -> str:
    return type(node).__name__


def _check_loss(loss) -> None:
    if not isinstance(loss, Tensor):
        raise TypeError(f"explore: expected the loss as a Tensor, got {type(loss).__name__}")
    if not loss.requires_grad or loss.grad_fn is None:
        raise RuntimeError(
            "explore: the loss does not require grad and has no grad_fn, so there is no backward pass to show: "
            "compute it from tensors with requires_grad=True (a model's parameters), outside no_grad()")
    if loss._data.size != 1:
        raise RuntimeError(f"explore: expected a scalar loss (one element), got shape {tuple(loss.shape)}: reduce "
                           f"it first (e.g. loss.sum() or loss.mean())")
    freed = [n for n in graph_nodes(loss) if n._freed]
    if freed:
        raise RuntimeError(
            f"explore: the graph behind the loss was already freed by backward() ({freed[0].name()} has released "
            f"its saved values): call tc.explore(loss) before loss.backward(), or use "
            f"loss.backward(retain_graph=True)")


def _check_writable(path) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OSError(f"explore: cannot write {path}: it is a folder; give a file name such as explore.html")
    if not os.path.isdir(folder):
        raise OSError(f"explore: cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise OSError(f"explore: cannot write {path}: permission denied")
    return path


def _names(model) -> dict:
    if model is None:
        return {}
    return {id(p): name for name, p in model.named_parameters()}


def _numeric_check(leaf, grad, closure, n_checks: int, eps: float, rng, scale: float) -> list:
    """Sampled elements of ``leaf``'s gradient against float64 central differences of ``closure``.

    An element is right when its relative error ``|a - n| / max(|a|, |n|, 1e-3·scale)`` is at most 1e-2, where
    ``scale`` is the largest gradient of the parameters of its node and layer: the floor keeps float32 round-off from
    failing elements whose true gradient is 0 (a conv bias before a batch norm) without hiding a small layer."""
    flat_grad = np.asarray(grad, dtype=np.float64).reshape(-1)
    size = flat_grad.size
    picks = [int(np.argmax(np.abs(flat_grad)))]  # the largest element, then random others
    others = [int(i) for i in rng.permutation(size) if int(i) != picks[0]]
    picks += others[: max(0, min(n_checks, size) - 1)]
    original = leaf._data  # float64 here: capture() puts every parameter in float64 for the check
    rows = []
    try:
        for i in picks:
            values = []
            for sign in (1.0, -1.0):
                moved = original.copy()
                moved.reshape(-1)[i] += sign * eps
                leaf._data = moved
                with no_grad(), promoting_dtypes():  # float64 parameters, the caller's float32 data
                    out = closure()
                values.append(float(np.asarray(getattr(out, "data", out), dtype=np.float64).reshape(-1)[0]))
            numeric = (values[0] - values[1]) / (2 * eps)
            analytic = float(flat_grad[i])
            denom = max(abs(analytic), abs(numeric), 1e-3 * scale, 1e-12)
            error = abs(analytic - numeric) / denom
            rows.append({"index": [int(j) for j in np.unravel_index(i, leaf.shape)], "analytic": analytic,
                         "numeric": numeric, "rel_error": error, "ok": bool(error <= 1e-2)})
    finally:
        leaf._data = original
    return rows


def capture(loss, *, model=None, closure=None, label: str = "", checks: int = 3, eps: float = 1e-6, seed: int = 0,
            max_images: int = 4) -> dict:
    """One snapshot of the backward pass behind ``loss``: the graph, the engine's backward order, every node's
    forward output, arriving and outgoing gradients, and the numerical checks (with ``closure``).

    Leaves the graph retained and every ``.grad`` as it was (see the module docstring). Raises a RuntimeError
    when ``loss`` needs no gradient, is not a scalar, or its graph was freed by ``backward()``.
    """
    _check_loss(loss)
    if closure is not None and not callable(closure):
        raise TypeError(f"explore: closure must be a function that recomputes the loss, got "
                        f"{type(closure).__name__}")
    names = _names(model)
    forward = list(reversed(autograd._topological_order(loss.grad_fn)))  # the engine's order, reversed
    node_id = {id(n): i for i, n in enumerate(forward)}
    leaves, leaf_id, outputs = _leaves_and_outputs(forward, loss)
    # the batch size: the first dimension of the first data input (a leaf that needs no gradient, 2-D or more)
    batch = next((int(t.shape[0]) for t in leaves if not t.requires_grad and t.ndim >= 2), None)
    recorder, leaf_grads = _observed_backward(loss, leaves)
    layer = _layer_names(forward, names)
    nodes = [_node_entry(i, n, outputs.get(id(n)), layer[id(n)], node_id, leaf_id) for i, n in enumerate(forward)]
    calls = {id(node): (arriving, results) for node, arriving, results in recorder.calls}
    data_nodes = [_node_data(i, n, outputs.get(id(n)), calls.get(id(n)), batch, max_images)
                  for i, n in enumerate(forward)]
    scale = _check_scales(forward, leaves, leaf_grads, names)
    leaf_entries, leaf_data = _leaf_entries(leaves, leaf_grads, names, model, closure, checks, eps,
                                            np.random.default_rng(seed), scale, batch, max_images)
    order = [node_id[id(node)] for node, _, _ in recorder.calls]
    return {"label": label, "loss": float(np.asarray(loss._data, dtype=np.float64).reshape(-1)[0]),
            "structure": {"nodes": nodes, "leaves": leaf_entries, "backward": order,
                          "forward": list(range(len(forward)))},
            "nodes": data_nodes, "leaves": leaf_data, "checked": closure is not None, "eps": eps}


def _leaves_and_outputs(forward: list, loss):
    """The graph's leaves (parameters, inputs) in the order the forward pass first uses them, their numbers, and
    each node's output tensor where the graph holds it."""
    leaves, leaf_id = [], {}
    outputs = {id(loss.grad_fn): loss}
    for n in forward:
        for t, f in zip(n.inputs, n.input_fns):
            if t is None:
                continue
            if f is None and id(t) not in leaf_id:
                leaf_id[id(t)] = len(leaves)
                leaves.append(t)
            elif f is not None:
                outputs.setdefault(id(f), t)
    return leaves, leaf_id, outputs


def _observed_backward(loss, leaves: list):
    """One backward pass under a recording observer; the leaves' ``.grad`` set aside and put back after.
    Returns the recorder and each leaf's gradient (a copy, or None)."""
    kept = {id(t): t.grad for t in leaves}
    recorder = _Recorder()
    try:
        for t in leaves:
            t.grad = None
        with autograd.observe(recorder):
            autograd.backward(loss, None, retain_graph=True)
        leaf_grads = {id(t): (None if t.grad is None else np.array(t.grad._data, copy=True)) for t in leaves}
    finally:
        for t in leaves:
            t.grad = kept[id(t)]
    return recorder, leaf_grads


def _layer_names(forward: list, names: dict) -> dict:
    """id(node) -> layer name: a node takes the module name of the parameters it reads, directly or through nodes
    that read parameters only (say, a transpose of a weight)."""
    layer, param_only = {}, set()
    for n in forward:
        found, only_params = [], True
        for t, f in zip(n.inputs, n.input_fns):
            if t is None:
                continue
            if f is None:
                if id(t) in names:
                    found.append(names[id(t)].rsplit(".", 1)[0] if "." in names[id(t)] else names[id(t)])
                elif not isinstance(t, Parameter):
                    only_params = only_params and t.ndim == 0
            elif id(f) in param_only:
                found.append(layer.get(id(f), ""))
            else:
                only_params = False
        if only_params and any(f is None and isinstance(t, Parameter) for t, f in zip(n.inputs, n.input_fns)):
            param_only.add(id(n))
        layer[id(n)] = next((x for x in found if x), "")
    return layer


def _node_entry(i: int, n, out, name: str, node_id: dict, leaf_id: dict) -> dict:
    """A node of the page's structure: op, label, layer name, output shape and dtype, inputs, fused stages, rule."""
    meta = n.output_meta if len(n.output_meta) == 2 else (None, None)
    shape = list(out.shape) if out is not None else (list(meta[0]) if meta[0] is not None else None)
    inputs = [{"node": node_id[id(f)]} if f is not None else {"leaf": leaf_id[id(t)]}
              for t, f in zip(n.inputs, n.input_fns) if t is not None]
    entry = {"id": i, "op": _op(n), "label": n.name(), "name": name, "shape": shape,
             "dtype": str(out.dtype) if out is not None else str(getattr(meta[1], "name", meta[1])),
             "inputs": inputs}
    stages = n.stages() if hasattr(n, "stages") else []  # a fused node's layers, output first
    if len(stages) > 1:
        entry["stages"] = [{"label": s[0], "shape": None if s[1] is None else [int(k) for k in s[1]]}
                           for s in stages]
    words, formula = backward_rule(_op(n))
    entry["rule"] = {"words": words, "formula": formula}
    return entry


def _node_data(i: int, n, out, call, batch, max_images: int) -> dict:
    """A node's arrays for the page: its forward output, the gradient that arrived, what it sent to each input."""
    d = {"id": i}
    if out is not None:
        d["value"] = _blob(out._data, batch, max_images)
        d["value_stats"] = _stats(out._data)
    if call is not None:
        arriving, results = call
        d["grad"] = _blob(arriving, batch, max_images)
        d["grad_stats"] = _stats(arriving)
        sends = []
        for k in (k for k, t in enumerate(n.inputs) if t is not None):
            r = results[k] if k < len(results) else None
            needed = n.needs_input_grad[k] if k < len(n.needs_input_grad) else False
            sends.append(None if r is None or not needed else {"shape": list(np.shape(r)), "stats": _stats(r)})
        d["sends"] = sends
    return d


def _check_scales(forward: list, leaves: list, leaf_grads: dict, names: dict) -> dict:
    """Each parameter's scale for the check's relative error: the largest gradient among the parameters of its
    nodes and of its layer (a linear layer's weight and bias meet in no node)."""
    largest = {id(t): float(np.max(np.abs(g))) if g is not None and g.size else 0.0
               for t in leaves for g in [leaf_grads[id(t)]]}
    scale = dict.fromkeys(largest, 0.0)
    for n in forward:
        group = [id(t) for t, f in zip(n.inputs, n.input_fns) if t is not None and f is None and t.requires_grad]
        top = max((largest[k] for k in group), default=0.0)
        for k in group:
            scale[k] = max(scale[k], top)
    by_layer: dict = {}
    for t in leaves:
        if id(t) in names:
            by_layer.setdefault(names[id(t)].rsplit(".", 1)[0], []).append(id(t))
    for group in by_layer.values():
        top = max(scale[k] for k in group)
        for k in group:
            scale[k] = top
    return scale


def _leaf_entries(leaves, leaf_grads, names, model, closure, checks, eps, rng, scale, batch, max_images):
    """The leaves' structure entries and arrays, with the numerical check of each gradient (given ``closure``).

    For the check every parameter is float64 (so every op after them computes in float64), and the model's
    buffers (batch-norm running statistics, which the closure's forward passes update) are put back after."""
    leaf_entries, leaf_data = [], []
    trainable = [t for t in leaves if t.requires_grad and leaf_grads[id(t)] is not None]
    saved = {id(t): t._data for t in trainable}
    buffers = []
    if closure is not None:
        if model is not None:
            buffers = [(b, np.array(b._data, copy=True)) for _, b in model.named_buffers() if b is not None]
        for t in trainable:
            t._data = saved[id(t)].astype(np.float64)
    try:
        for j, t in enumerate(leaves):
            kind = "parameter" if isinstance(t, Parameter) else ("leaf" if t.requires_grad else "input")
            leaf_entries.append({"id": j, "name": names.get(id(t), ""), "kind": kind, "shape": list(t.shape),
                                 "dtype": str(saved[id(t)].dtype if id(t) in saved else t.dtype),
                                 "requires_grad": bool(t.requires_grad)})
            d = {"id": j}
            if t.ndim >= 2 and not t.requires_grad:
                d["value"] = _blob(t._data, batch, max_images)
            g = leaf_grads[id(t)]
            if g is not None:
                d["grad"] = _blob(g, None, max_images)
                d["grad_stats"] = _stats(g)
                if closure is not None:
                    d["check"] = _numeric_check(t, g, closure, checks, eps, rng, scale[id(t)])
            leaf_data.append(d)
    finally:
        for t in trainable:
            t._data = saved[id(t)]
        for b, kept_buffer in buffers:
            b._data = kept_buffer
    return leaf_entries, leaf_data


def _structure_key(structure: dict):
    return [(n["op"], n["shape"], [tuple(sorted(x.items())) for x in n["inputs"]]) for n in structure["nodes"]]


class Snapshots:
    """Several backward passes of the same model in one page, with a slider between them::

        snaps = tc.explorer.Snapshots(model=model)
        for step, (x, y) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            if step in (0, 50, 500):
                snaps.add(loss, f"step {step}", closure=lambda: F.cross_entropy(model(x), y))
            opt.zero_grad(); loss.backward(); opt.step()
        snaps.write("explore.html")

    Every snapshot must come from the same graph (same ops, shapes and connections), e.g. the same fixed batch
    or batches of one size.
    """

    def __init__(self, model=None, *, title: str | None = None, checks: int = 3, eps: float = 1e-6,
                 max_images: int = 4):
        self.model, self.title, self.checks, self.eps, self.max_images = model, title, checks, eps, max_images
        self.snapshots: list[dict] = []

    def __len__(self) -> int:
        return len(self.snapshots)

    def add(self, loss, label: str | None = None, *, closure=None, seed: int = 0) -> dict:
        """Capture the backward pass behind ``loss`` (before ``loss.backward()``); returns the snapshot."""
        snap = capture(loss, model=self.model, closure=closure, label=label or f"snapshot {len(self) + 1}",
                       checks=self.checks, eps=self.eps, seed=seed, max_images=self.max_images)
        if self.snapshots and _structure_key(snap["structure"]) != _structure_key(self.snapshots[0]["structure"]):
            raise ValueError("explore: this loss's graph differs from the first snapshot's (other ops, shapes or "
                             "connections); all snapshots of one page must come from the same graph")
        self.snapshots.append(snap)
        return snap

    def data(self) -> dict:
        """What the page embeds: the graph, the backward order, and per snapshot each node's data."""
        if not self.snapshots:
            raise ValueError("explore: no snapshot to write; add() one first")
        structure = self.snapshots[0]["structure"]
        first = self.snapshots[0]
        stats = {d["id"]: {k: d[k] for k in ("value_stats", "grad_stats") if k in d} for d in first["nodes"]}
        nodes = [dict(n, stats=stats[n["id"]]) for n in structure["nodes"]]
        return {"format": DATA_FORMAT, "version": 1,
                "title": self.title or (type(self.model).__name__ if self.model is not None else "tinyconv model"),
                "nodes": nodes, "leaves": structure["leaves"], "backward": structure["backward"],
                "forward": structure["forward"],
                "snapshots": [{k: v for k, v in s.items() if k != "structure"} for s in self.snapshots]}

    def write(self, path="explore.html") -> str:
        """Write the page; returns its path."""
        from .explorer_page import render

        path = _check_writable(path)
        html = render(json.dumps(_finite(self.data()), allow_nan=False, separators=(",", ":"), default=_json_default))
        with atomic_write(path, "w") as f:  # a reader (or a Ctrl-C) never sees half a page
            f.write(html)
        return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"explore: cannot store {type(value).__name__} in the page")


def _finite(obj):
    """JSON has no NaN/inf: stats of non-finite values become None (their count is in ``nonfinite``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def explore(loss, path="explore.html", *, model=None, closure=None, title: str | None = None, checks: int = 3,
            eps: float = 1e-6, seed: int = 0, max_images: int = 4) -> str:
    """Write one self-contained HTML page that steps through the backward pass behind ``loss``; returns its path.

    Args:
        loss: a scalar Tensor whose graph is still there (call this before ``loss.backward()``).
        path: the file to write (``.html``).
        model: names the parameters (``conv1.weight``) and layers in the page; its buffers are restored after the
            numerical check.
        closure: a function that recomputes the loss from the current parameters (same data), for the numerical
            check; without it the page shows no check. It must be deterministic (no dropout: ``model.eval()``
            first, or leave it out).
        title: the page's title (default the model's class name).
        checks: elements sampled per parameter gradient for the check (the largest, then random ones).
        eps: the central difference's step (in float64).
        seed: seed of the sampling.
        max_images: large batched arrays keep only this many images in the page.
    """
    path = _check_writable(path)
    snaps = Snapshots(model, title=title, checks=checks, eps=eps, max_images=max_images)
    snaps.add(loss, "", closure=closure, seed=seed)
    return snaps.write(path)


def read_data(path) -> dict:
    """The data a page written by :func:`explore` embeds (the JSON of ``<script id="tinyconv-data">``)."""
    with open(os.fspath(path), encoding="utf-8") as f:
        text = f.read()
    start_tag = '<script type="application/json" id="tinyconv-data">'
    start = text.find(start_tag)
    end = text.find("</script>", start)
    if start < 0 or end < 0:
        raise ValueError(f"explore: {path} is not a page written by tinyconv.explore (no tinyconv-data script)")
    data = json.loads(text[start + len(start_tag):end])
    if data.get("format") != DATA_FORMAT:
        raise ValueError(f"explore: {path} holds data of format {data.get('format')!r}, expected {DATA_FORMAT!r}")
    return data
