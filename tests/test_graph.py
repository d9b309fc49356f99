"""Graph inspection: grad_fn names, next_functions, print_graph (indented tree) and to_dot (valid DOT)."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import autograd, nn
from tinyconv.graph import format_graph, graph_nodes, print_graph, to_dot

# ------------------------------------------------------------------------------------------- a DOT checker
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<arrow>->|--)|(?P<punct>[{}\[\];=,])|(?P<id>[A-Za-z_0-9.#]+))')


def _tokens(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise AssertionError(f"DOT: cannot tokenise at {text[pos:pos + 40]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(s: str) -> str:
    assert s[0] == s[-1] == '"'
    body, out, i = s[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            nxt = body[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def check_dot(text: str) -> dict:
    """Check the subset of DOT that to_dot writes; return {node id: label}. Raises AssertionError when invalid.

    - ``digraph NAME {`` header and a final ``}``, braces balanced (outside quoted strings);
    - statements end with ';': ``attr=value``, ``node [...]``, ``ID [k=v, ...]`` or ``ID -> ID``;
    - quoted strings have no raw newline or unescaped quote (the tokenizer fails on those);
    - every edge endpoint is declared as a node; every node has a label.
    """
    toks = _tokens(text)
    assert toks[0] == ("id", "digraph"), f"DOT must start with 'digraph', got {toks[:2]}"
    assert toks[1][0] in ("id", "str") and toks[2] == ("punct", "{"), "DOT: expected 'digraph NAME {'"
    depth = 0
    for kind, val in toks:
        if kind == "punct" and val == "{":
            depth += 1
        elif kind == "punct" and val == "}":
            depth -= 1
            assert depth >= 0, "DOT: unbalanced '}'"
    assert depth == 0, "DOT: unbalanced braces"
    assert toks[-1] == ("punct", "}"), "DOT must end with '}'"
    body = toks[3:-1]
    statements, cur = [], []
    in_attrs = False
    for tok in body:
        if tok == ("punct", "["):
            in_attrs = True
        elif tok == ("punct", "]"):
            in_attrs = False
        if tok == ("punct", ";") and not in_attrs:
            statements.append(cur)
            cur = []
        else:
            cur.append(tok)
    assert not cur, f"DOT: statement without ';': {cur}"
    nodes, edges = {}, []
    for st in statements:
        kinds = [k for k, _ in st]
        if len(st) == 3 and st[1] == ("punct", "="):  # graph attribute
            continue
        if len(st) == 3 and st[1][0] == "arrow":
            assert st[1][1] == "->", "a digraph uses '->'"
            edges.append((st[0][1], st[2][1]))
            continue
        assert kinds[0] == "id" and st[1] == ("punct", "[") and st[-1] == ("punct", "]"), f"DOT: bad statement {st}"
        attrs = {}
        inner = st[2:-1]
        i = 0
        while i < len(inner):
            key, eq, val = inner[i], inner[i + 1], inner[i + 2]
            assert key[0] == "id" and eq == ("punct", "=") and val[0] in ("id", "str"), f"DOT: bad attribute {inner[i:i + 3]}"
            attrs[key[1]] = _unquote(val[1]) if val[0] == "str" else val[1]
            i += 3
            if i < len(inner):
                assert inner[i] == ("punct", ","), f"DOT: expected ',' in {st}"
                i += 1
        if st[0][1] in ("node", "edge", "graph"):
            continue
        assert st[0][1] not in nodes, f"DOT: node {st[0][1]} declared twice"
        assert "label" in attrs, f"DOT: node {st[0][1]} has no label"
        nodes[st[0][1]] = attrs["label"]
    for a, b in edges:
        assert a in nodes and b in nodes, f"DOT: edge {a} -> {b} uses an undeclared node"
    return {"nodes": nodes, "edges": edges}


def test_dot_checker_can_fail():
    good = 'digraph "g" {\n  a [label="x"];\n  b [label="y \\"q\\""];\n  a -> b;\n}\n'
    assert check_dot(good)["nodes"] == {"a": "x", "b": 'y "q"'}
    for bad in [
        good.replace("digraph", "graph"),                     # header
        good.replace("  a -> b;\n}", "  a -> b;\n"),          # unbalanced
        good.replace("a -> b", "a -> c"),                     # undeclared endpoint
        good.replace('label="x"', 'label="x"y"'),             # unescaped quote
        good.replace('label="x"', 'label="x\ny"'),            # raw newline in a string
        good.replace("  a -> b;", "  a -> b"),                # missing ;
    ]:
        with pytest.raises(AssertionError):
            check_dot(bad)


# --------------------------------------------------------------------------------------------- the basics
def small_graph():
    w = tc.tensor([[1.0, 2.0]], requires_grad=True)
    x = tc.tensor([[3.0], [4.0]])
    return w, x, (w @ x).sum()


def test_grad_fn_names_and_next_functions():
    w, x, loss = small_graph()
    assert loss.grad_fn.name() == "SumBackward"
    (mm, t), = loss.grad_fn.next_functions
    assert mm.name() == "MatMulBackward" and t.shape == (1, 1)
    assert [(f, t is w or t is x) for f, t in mm.next_functions] == [(None, True), (None, True)]
    assert w.grad_fn is None and w.is_leaf


def test_print_graph_small():
    w, x, loss = small_graph()
    buf = io.StringIO()
    print_graph(loss, params={"w": w, "x": x}, file=buf)
    assert buf.getvalue() == (
        "SumBackward -> () float32\n"
        "`-- MatMulBackward -> (1, 1) float32\n"
        "    |-- w: leaf (1, 2) float32, requires_grad\n"
        "    `-- x: input (2, 1) float32\n"
    )
    assert tc.print_graph is print_graph and tc.to_dot is to_dot


def test_print_graph_default_labels_and_constants(capsys):
    p = nn.Parameter(np.ones(2, np.float32))
    v = tc.tensor([1.0, 2.0], requires_grad=True)
    d = tc.tensor([5.0, 6.0])
    (p * v * d * 2.0).sum()  # not printed
    out = (p * v * d * 2.0).sum()
    tc.print_graph(out)
    text = capsys.readouterr().out
    assert "parameter (2,) float32, requires_grad" in text
    assert "leaf (2,) float32, requires_grad" in text
    assert "input (2,) float32\n" in text
    assert "constant () float32" in text
    assert "show_inputs" not in text
    hidden = format_graph(out, show_inputs=False)
    assert "input" not in hidden and "constant" not in hidden and "parameter" in hidden


def test_shared_nodes_are_printed_once():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    z = (y * y + y).sum()
    text = format_graph(z, params={"x": x})
    assert text.count("x: leaf") == 1  # the subtree under y is expanded once only
    assert text.count("MulBackward -> (2,) float32  [#1]") == 1
    assert text.count("MulBackward (see #1 above)") == 2


def test_max_depth_and_a_deep_chain():
    x = tc.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):  # deeper than Python's recursion limit
        y = y * 1.0
    text = format_graph(y)
    assert text.count("MulBackward") == 5000
    short = format_graph(y, max_depth=2)
    assert short.count("MulBackward") == 3 and short.count("`-- ...") == 1
    assert len(graph_nodes(y)) == 5000
    dot = to_dot(y)
    assert len(check_dot(dot)["edges"]) == 5000 * 2  # each Mul has its input and the constant


def test_leaf_and_no_graph():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    assert "a leaf: no graph was recorded" in format_graph(x, {"x": x})
    with tc.no_grad():
        y = x * 2
    assert "input (2,) float32" in format_graph(y)
    check_dot(to_dot(x))
    with pytest.raises(TypeError):
        format_graph(np.ones(2))


def test_graph_survives_backward():
    """The engine frees saved arrays after backward, but names and output shapes stay printable."""
    w, x, loss = small_graph()
    before = format_graph(loss)
    loss.backward()
    assert format_graph(loss) == before


def test_to_dot_small_and_escaping():
    w, x, loss = small_graph()
    names = {'w "quoted" \\ name': w, "x": x}
    dot = to_dot(loss, params=names)
    parsed = check_dot(dot)
    labels = sorted(parsed["nodes"].values())
    assert labels == sorted([
        "SumBackward\n() float32",
        "MatMulBackward\n(1, 1) float32",
        'w "quoted" \\ name: leaf (1, 2) float32, requires_grad',
        "x: input (2, 1) float32",
    ])
    by_label = {v: k for k, v in parsed["nodes"].items()}
    assert (by_label["MatMulBackward\n(1, 1) float32"], by_label["SumBackward\n() float32"]) in parsed["edges"]
    assert dot.startswith('digraph "tinyconv" {')


# ------------------------------------------------------------------------------------------------- models
def mlp_loss():
    tc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    x = tc.randn(5, 4)
    y = np.array([0, 1, 1, 0, 1])
    loss = tc.functional.cross_entropy(model(x), y)
    return model, x, loss


def test_mlp_graph_names_every_op_and_parameter():
    model, x, loss = mlp_loss()
    params = dict(model.named_parameters())
    text = format_graph(loss, params={**params, "images": x})
    for name, p in params.items():
        assert f"{name}: parameter {tuple(p.shape)} float32, requires_grad" in text
    assert "images: input (5, 4) float32" in text
    for op in ("NllLossBackward", "LogSoftmaxBackward", "LinearBackward", "SigmoidBackward"):
        assert op in text, op
    assert text.count("LinearBackward") == 2  # a Linear layer is one node
    # the tree lists exactly the nodes the engine will visit
    engine_nodes = autograd._topological_order(loss.grad_fn)
    assert {id(n) for n in graph_nodes(loss)} == {id(n) for n in engine_nodes}
    parsed = check_dot(to_dot(loss, params={**params, "images": x}))
    assert len(parsed["nodes"]) == len(engine_nodes) + len(params) + 1  # + the input; no constants here


def _lenet():
    models = pytest.importorskip("tinyconv.nn.models")
    return models.LeNet()


def test_lenet_loss_graph_shows_every_op_back_to_the_input():
    model = _lenet()
    tc.manual_seed(0)
    x = tc.randn(2, 1, 28, 28)
    loss = tc.functional.cross_entropy(model(x), np.array([3, 7]))
    params = dict(model.named_parameters())
    text = format_graph(loss, params={**params, "images": x})
    assert len(params) == 10
    for name in params:
        assert f"{name}: parameter " in text, name
    assert "images: input (2, 1, 28, 28) float32" in text
    assert text.count("Conv2d") >= 2 and "Pool" in text
    assert "(2, 6, 28, 28)" in text and "(2, 16, 10, 10)" in text and "(2, 10) float32" in text
    engine_nodes = autograd._topological_order(loss.grad_fn)
    assert {id(n) for n in graph_nodes(loss)} == {id(n) for n in engine_nodes}
    for node in engine_nodes:  # a fused node is shown as its layers (tests/test_fusion.py)
        for name in [s[0] for s in node.stages()] if hasattr(node, "stages") else [node.name()]:
            assert name in text
    parsed = check_dot(to_dot(loss, params={**params, "images": x}))
    labels = "\n".join(parsed["nodes"].values())
    for name in params:
        assert name + ": parameter" in labels
