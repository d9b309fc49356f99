"""Looking at the graph autograd recorded: :func:`print_graph` (an indented tree) and :func:`to_dot` (Graphviz).

Every Tensor made by an operation on tensors that require a gradient remembers that operation in ``t.grad_fn``,
a :class:`~tinyconv.autograd.Function` node named like PyTorch's (``MatMulBackward``,
``Conv2dBackward(kernel=im2col)``); ``grad_fn.next_functions`` lists ``(node or None, tensor)`` for each of its
inputs. The two functions here walk that graph from a result back to the leaves::

    >>> import tinyconv as tc
    >>> w = tc.tensor([[1.0, 2.0]], requires_grad=True)
    >>> x = tc.tensor([[3.0], [4.0]])
    >>> loss = (w @ x).sum()
    >>> tc.print_graph(loss, params={"w": w, "x": x})
    SumBackward -> () float32
    `-- MatMulBackward -> (1, 1) float32
        |-- w: leaf (1, 2) float32, requires_grad
        `-- x: input (2, 1) float32

A node reached a second time (its output used by several consumers) is printed once in full and then as
``(see #k above)``, so the tree stays as long as the graph. Leaves are labelled with the names given in ``params``
(e.g. ``dict(model.named_parameters())``, to which you may add the input: ``{**params, "x": x}``); unnamed ones
are called ``parameter`` (a :class:`~tinyconv.nn.Parameter`), ``leaf`` (a user tensor that requires a gradient),
``input`` (one that does not: data, targets) or ``constant`` (a 0-d one, such as the ``2`` in ``x * 2``).

No Graphviz is needed to make the DOT text; render it with ``dot -Tpng graph.dot -o graph.png`` where Graphviz
is installed, or paste it into any online viewer.
"""
from __future__ import annotations

import sys

from .nn.module import Parameter
from .tensor import Tensor

__all__ = ["print_graph", "format_graph", "to_dot", "graph_nodes"]


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _node_meta(fn) -> tuple[str, str]:
    """(shape, dtype) text of the tensor a node produced (kept by the engine even after the tensor is gone)."""
    meta = getattr(fn, "output_meta", ()) or ()
    if len(meta) == 2:
        shape, dtype = meta
        return _fmt_shape(shape), str(getattr(dtype, "name", dtype))
    return "?", "?"


def _stages(fn) -> list:
    """``[(name, shape text, dtype text)]`` of what a node stands for, its output first: the node itself, or
    for a fused node (one that has ``stages()``, e.g. ``Conv2dReluMaxPool2dBackward``) each of its layers."""
    if not hasattr(fn, "stages"):
        return [(fn.name(), *_node_meta(fn))]
    return [(name, "?" if shape is None else _fmt_shape(shape), str(getattr(dtype, "name", dtype)))
            for name, shape, dtype in fn.stages()]


def _fused_note(fn, stages) -> str:
    return f"  [fused: {type(fn).__name__}Backward]" if len(stages) > 1 else ""


def _names_by_id(params) -> dict:
    if not params:
        return {}
    items = params.items() if hasattr(params, "items") else params
    names = {}
    for name, t in items:
        names.setdefault(id(t), str(name))
    return names


def _leaf_kind(t) -> str:
    if isinstance(t, Parameter):
        return "parameter"
    if t.requires_grad:
        return "leaf"
    return "constant" if t.ndim == 0 else "input"


def _leaf_label(t, names: dict) -> str:
    kind = _leaf_kind(t)
    name = names.get(id(t))
    head = f"{name}: {kind}" if name is not None else kind
    tail = ", requires_grad" if t.requires_grad else ""
    return f"{head} {_fmt_shape(t.shape)} {t.dtype.name}{tail}"


def _root_node(t):
    if isinstance(t, Tensor):
        return t.grad_fn, t
    if hasattr(t, "inputs") and hasattr(t, "name"):  # a Function node itself
        return t, None
    raise TypeError(f"expected a Tensor (or a grad_fn node), got {type(t).__name__}")


def graph_nodes(t) -> list:
    """Every Function node reachable from ``t`` (a Tensor or a node), each once, in depth-first pre-order."""
    root, _ = _root_node(t)
    if root is None:
        return []
    seen, order, stack = {id(root)}, [], [root]
    while stack:
        fn = stack.pop()
        order.append(fn)
        children = [f for f in fn.input_fns if f is not None]  # the inputs' grad_fn when fn ran
        for child in reversed(children):
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return order


def format_graph(t, params=None, *, max_depth: int | None = None, show_inputs: bool = True) -> str:
    """The text :func:`print_graph` prints (see there)."""
    root, tensor = _root_node(t)
    names = _names_by_id(params)
    if root is None:
        if tensor is None:
            return "(empty graph)"
        return _leaf_label(tensor, names) + "  (a leaf: no graph was recorded)"

    # Nodes whose output feeds several consumers get a number, so later mentions can point back to them.
    uses: dict = {}
    for fn in graph_nodes(root):
        for f in fn.input_fns:
            if f is not None:
                uses[id(f)] = uses.get(id(f), 0) + 1
    numbers: dict = {}
    lines: list[str] = []

    # Iterative depth-first walk (a 10,000-op chain must not hit the recursion limit). Stack entries:
    # ((kind, item), prefix of its own line, prefix of its children's lines, depth).
    stack = [(("fn", root), "", "", 0)]
    while stack:
        (kind, item), own_prefix, child_prefix, depth = stack.pop()
        if kind == "leaf":
            lines.append(own_prefix + _leaf_label(item, names))
            continue
        if kind == "more":
            lines.append(own_prefix + "...")
            continue
        stages = _stages(item)
        if id(item) in numbers:
            lines.append(f"{own_prefix}{stages[0][0]} (see #{numbers[id(item)]} above)")
            continue
        name, shape, dtype = stages[0]
        line = f"{own_prefix}{name} -> {shape} {dtype}"
        if uses.get(id(item), 0) > 1:
            numbers[id(item)] = len(numbers) + 1
            line += f"  [#{numbers[id(item)]}]"
        lines.append(line + _fused_note(item, stages))
        for name, shape, dtype in stages[1:]:  # a fused node's layers, each above the one it consumed
            lines.append(f"{child_prefix}`-- {name} -> {shape} {dtype}")
            child_prefix += "    "
        children = []
        for x, f in zip(item.inputs, item.input_fns):
            if x is None:
                continue
            if f is not None:
                children.append(("fn", f))
            elif show_inputs or x.requires_grad:
                children.append(("leaf", x))
        if max_depth is not None and depth >= max_depth and children:
            children = [("more", None)]
        entries = []
        for i, child in enumerate(children):
            last = i == len(children) - 1
            entries.append((child, child_prefix + ("`-- " if last else "|-- "),
                            child_prefix + ("    " if last else "|   "), depth + 1))
        stack.extend(reversed(entries))
    return "\n".join(lines)


def print_graph(t, params=None, *, max_depth: int | None = None, show_inputs: bool = True, file=None) -> None:
    """Print the autograd graph that produced ``t`` as an indented tree, from ``t`` back to the leaves.

    Each node shows its op (``grad_fn.name()``, e.g. ``Conv2dBackward(kernel=im2col)``) and the shape and dtype
    of the tensor it produced; each leaf its name (from ``params``: a mapping name -> Tensor such as
    ``dict(model.named_parameters())``), kind (parameter / leaf / input), shape and dtype. A fused node (a
    ``Sequential``'s ``Conv2d, ReLU, MaxPool2d``, see :func:`tinyconv.nn.set_fusion`) is printed as its three
    layers, each with its own output shape, the first marked ``[fused: Conv2dReluMaxPool2dBackward]``.

    ``max_depth`` cuts the tree after that many levels (``...``); ``show_inputs=False`` hides leaves that do
    not require a gradient; ``file`` is where to print (default ``sys.stdout``).
    """
    print(format_graph(t, params, max_depth=max_depth, show_inputs=show_inputs), file=file or sys.stdout)


# --------------------------------------------------------------------------------------------------- DOT
def _dot_quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as DOT's ``\\n``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(t, params=None, *, name: str = "tinyconv", show_inputs: bool = True, rankdir: str = "BT") -> str:
    """Graphviz DOT text of the graph that produced ``t`` (no Graphviz needed to make it).

    Op nodes are boxes labelled with the op name and the output's shape and dtype; leaves are ellipses (blue for
    parameters and leaves that require a gradient, grey for inputs), labelled like :func:`print_graph`. Edges
    point the way data flows, from an input to the op that consumed it, so with the default ``rankdir="BT"`` the
    loss is drawn at the top.
    """
    root, tensor = _root_node(t)
    names = _names_by_id(params)
    lines = [f"digraph {_dot_quote(name)} {{",
             f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=10];']
    if root is None:
        if tensor is not None:
            lines.append(f"  leaf0 [shape=ellipse, label={_dot_quote(_leaf_label(tensor, names))}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    fn_ids: dict = {}
    leaf_ids: dict = {}
    edges: list[str] = []
    for fn in graph_nodes(root):
        fn_ids[id(fn)] = f"op{len(fn_ids)}"
    for fn in graph_nodes(root):
        # a fused node is drawn as a chain of its layers' boxes: op3 (output) <- op3_1 <- op3_2 (inputs)
        stages = _stages(fn)
        box_ids = [fn_ids[id(fn)]] + [f"{fn_ids[id(fn)]}_{j}" for j in range(1, len(stages))]
        for j, (box, (name, shape, dtype)) in enumerate(zip(box_ids, stages)):
            label = f"{name}\n{shape} {dtype}" + ("\n(fused)" if len(stages) > 1 else "")
            style = ', style=filled, fillcolor="#fde9a9"' if fn is root and j == 0 else ""
            lines.append(f"  {box} [shape=box, label={_dot_quote(label)}{style}];")
            if j:
                edges.append(f"  {box} -> {box_ids[j - 1]};")
        for x, f in zip(fn.inputs, fn.input_fns):
            if x is None:
                continue
            if f is not None:
                src = fn_ids[id(f)]
            else:
                if not (show_inputs or x.requires_grad):
                    continue
                if id(x) not in leaf_ids:
                    leaf_ids[id(x)] = f"leaf{len(leaf_ids)}"
                    colour = "#cfe2f3" if x.requires_grad else "#eeeeee"
                    lines.append(f"  {leaf_ids[id(x)]} [shape=ellipse, style=filled, fillcolor=\"{colour}\", "
                                 f"label={_dot_quote(_leaf_label(x, names))}];")
                src = leaf_ids[id(x)]
            edges.append(f"  {src} -> {box_ids[-1]};")
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"
