"""tc.explore, the Python side: what the page embeds (graph, the engine's backward order, statistics, numerical
checks) against values computed here independently, the command line, sizes, and the errors for bad input.
The page itself is driven in a real browser by tests/test_explore_browser.py."""
from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from test_cli import data_root  # noqa: F401  (the generated MNIST-format files, a module-scoped fixture)

import tinyconv as tc
from tinyconv import autograd, cli, nn
from tinyconv import functional as F
from tinyconv.explorer import read_data


class _Order(autograd.Observer):
    """What the engine really runs in a backward pass: (op, output shape) of each node, in order."""

    def __init__(self):
        self.seen = []

    def call_backward(self, node, grad):
        self.seen.append((type(node).__name__, list(np.shape(grad))))
        return super().call_backward(node, grad)


def _batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return tc.tensor(rng.standard_normal((n, 1, 28, 28)).astype(np.float32)), rng.integers(0, 10, n)


def _page(tmp_path, model, x, y, name="page.html", closure=True):
    def lenet_loss():
        return F.cross_entropy(model(x), y)

    loss = lenet_loss()
    path = tc.explore(loss, tmp_path / name, model=model, closure=lenet_loss if closure else None)
    return loss, path, read_data(path)


def _decode(blob):
    q = np.frombuffer(base64.b64decode(blob["q"]), dtype=np.int8).reshape(blob["kept"])
    return q.astype(np.float64) / 127 * blob["scale"]


@pytest.mark.parametrize("variant", ["modern", "d2l", "bn"])
def test_lenet_page_holds_the_engine_order_and_true_values(tmp_path, variant):
    tc.manual_seed(0)
    model = nn.models.LeNet(variant)
    x, y = _batch()
    loss, path, data = _page(tmp_path, model, x, y)

    # the graph: every node once, with id, op, name, shape, inputs; the loss node is the last in forward order
    nodes = data["nodes"]
    assert [n["id"] for n in nodes] == list(range(len(nodes))) == data["forward"]
    assert all({"id", "op", "name", "shape", "inputs", "stats"} <= set(n) for n in nodes)
    assert nodes[-1]["op"] == "NllLoss" and nodes[-1]["shape"] == []
    assert sorted(data["backward"]) == data["forward"]
    names = {n["name"] for n in nodes}
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= names
    fused = [n for n in nodes if n["op"] == "Conv2dReluMaxPool2d"]
    if variant == "modern":  # Sequential fuses Conv2d, ReLU, MaxPool2d; the node lists the three layers
        assert [n["name"] for n in fused] == ["conv1", "conv2"]
        assert [s["shape"] for s in fused[1]["stages"]] == [[4, 16, 5, 5], [4, 16, 10, 10], [4, 16, 10, 10]]
    else:  # d2l: sigmoid + avg pool; bn: a batch norm between conv and ReLU
        assert fused == []

    # explore changed nothing: no .grad appeared, and the real backward still runs (the graph is retained)
    assert all(p.grad is None for p in model.parameters())
    order = _Order()
    with autograd.observe(order):
        loss.backward()
    shown = [(nodes[i]["op"], nodes[i]["shape"]) for i in data["backward"]]
    assert shown == order.seen

    snap = data["snapshots"][0]
    assert snap["loss"] == pytest.approx(float(loss.item()))
    by_name = {leaf["name"]: leaf for leaf in data["leaves"]}
    for name, p in model.named_parameters():  # each parameter's gradient statistics are those of the real .grad
        g = p.grad.numpy().astype(np.float64)
        stats = snap["leaves"][by_name[name]["id"]]["grad_stats"]
        assert stats["min"] == pytest.approx(g.min(), rel=1e-6)
        assert stats["max"] == pytest.approx(g.max(), rel=1e-6)
        assert stats["norm"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
        assert stats["mean"] == pytest.approx(g.mean(), rel=1e-4, abs=1e-9)
        checks = snap["leaves"][by_name[name]["id"]]["check"]
        assert len(checks) == min(3, p.numel()) and all(c["ok"] for c in checks), (name, checks)

    # the logits node: its output is the model's output, the gradient arriving is (softmax - onehot) / N
    logits_node = next(n for n in nodes if n["name"] == "fc3" and n["op"] == "Linear")
    with tc.no_grad():
        z = model(x).numpy().astype(np.float64)
    data_logits = snap["nodes"][logits_node["id"]]
    assert data_logits["value_stats"]["min"] == pytest.approx(z.min(), rel=1e-5)
    assert data_logits["value_stats"]["norm"] == pytest.approx(np.linalg.norm(z), rel=1e-5)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(4), y] -= 1
    expected = p / 4
    assert data_logits["grad_stats"]["max"] == pytest.approx(expected.max(), rel=1e-4)
    assert data_logits["grad_stats"]["norm"] == pytest.approx(np.linalg.norm(expected), rel=1e-4)
    np.testing.assert_allclose(_decode(data_logits["grad"]), expected, atol=np.abs(expected).max() / 127)


def test_resnet_page_shows_residual_joins_and_fan_out(tmp_path):
    tc.manual_seed(0)
    model = nn.models.ResNet()
    x, y = _batch(1)
    loss, path, data = _page(tmp_path, model, x, y)
    nodes, snap = data["nodes"], data["snapshots"][0]
    joins = [n for n in nodes if n["op"] == "Add" and sum("node" in i for i in n["inputs"]) == 2]
    assert len(joins) == 3  # one residual add per block
    consumers = {}
    for n in nodes:
        for i in n["inputs"]:
            if "node" in i:
                consumers.setdefault(i["node"], []).append(n["id"])
    fan_out = [k for k, v in consumers.items() if len(v) > 1]
    assert len(fan_out) == 3  # each block's input feeds its first conv and its shortcut
    for k in fan_out:  # the gradient arriving at a fan-out node is the sum of what its consumers send it
        sent = [snap["nodes"][c]["sends"][[i.get("node") for i in nodes[c]["inputs"]].index(k)]["stats"]["mean"]
                for c in consumers[k]]
        assert snap["nodes"][k]["grad_stats"]["mean"] == pytest.approx(sum(sent), rel=1e-4, abs=1e-12)
    assert all(c["ok"] for leaf in snap["leaves"] for c in leaf.get("check", []))
    order = _Order()
    with autograd.observe(order):
        loss.backward()
    assert [(nodes[i]["op"], nodes[i]["shape"]) for i in data["backward"]] == order.seen


class _Cube(autograd.Function):
    """x³, an op the page has no special view for."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a ** 3

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (3 * a * a * g,)


class _WrongCube(_Cube):
    """x³ with a planted mistake in its backward (2x² instead of 3x²)."""

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (2 * a * a * g,)


class _Small(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        h = self.op.apply(self.conv(x))
        h = F.avg_pool2d(h.tanh(), 2)
        return self.fc(h.flatten(1))


def _small_page(tmp_path, op):
    tc.manual_seed(0)
    model = _Small(op)
    x = tc.randn(2, 1, 10, 10)
    y = np.array([1, 3])
    return _page(tmp_path, model, x, y, name=f"{op.__name__}.html")


def test_a_custom_op_is_shown_generically_and_checked(tmp_path):
    _, _, data = _small_page(tmp_path, _Cube)
    cube = next(n for n in data["nodes"] if n["op"] == "_Cube")
    assert cube["rule"]["words"].startswith("No special view for this op")
    assert "conv_transpose2d" in next(n for n in data["nodes"] if n["op"] == "Conv2d")["rule"]["formula"]
    checks = [c for leaf in data["snapshots"][0]["leaves"] for c in leaf.get("check", [])]
    assert len(checks) == 3 * 4 and all(c["ok"] for c in checks)


def test_a_wrong_backward_is_caught_by_the_numerical_check(tmp_path):
    _, _, data = _small_page(tmp_path, _WrongCube)
    by_name = {leaf["name"]: leaf["id"] for leaf in data["leaves"]}
    snap = data["snapshots"][0]
    conv_checks = snap["leaves"][by_name["conv.weight"]]["check"]
    assert not any(c["ok"] for c in conv_checks)  # upstream of the mistake: every sampled element is off
    assert all(c["rel_error"] > 0.1 for c in conv_checks)
    assert all(c["ok"] for c in snap["leaves"][by_name["fc.weight"]]["check"])  # downstream: still right


def test_snapshots_of_a_training_loop(tmp_path):
    tc.manual_seed(0)
    model = nn.models.LeNet()
    x, y = _batch(2)
    opt = tc.optim.SGD(model.parameters(), lr=0.1)
    snaps = tc.explorer.Snapshots(model)
    for step in range(3):
        loss = F.cross_entropy(model(x), y)
        if step in (0, 2):
            snaps.add(loss, f"step {step}", closure=lambda: F.cross_entropy(model(x), y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    data = read_data(snaps.write(tmp_path / "steps.html"))
    assert [s["label"] for s in data["snapshots"]] == ["step 0", "step 2"]
    assert data["snapshots"][0]["loss"] > data["snapshots"][1]["loss"]
    with pytest.raises(ValueError, match="differs from the first snapshot"):
        snaps.add(F.cross_entropy(model(x[:2]), y[:2]))


def test_sizes_and_no_network(tmp_path):
    tc.manual_seed(0)
    x, y = _batch(3)
    _, lenet, _ = _page(tmp_path, nn.models.LeNet(), x, y, name="lenet.html")
    _, resnet, _ = _page(tmp_path, nn.models.ResNet(), x, y, name="resnet.html")
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "lenet.html", tmp_path / "resnet.html")}
    print("page sizes (bytes):", sizes)
    assert sizes["lenet.html"] < 3_000_000 and sizes["resnet.html"] < 10_000_000
    text = (tmp_path / "resnet.html").read_text()
    # nothing to fetch: no src/href attributes, no url() but to an id in the page, no import; the only URL is SVG's
    # namespace name
    assert not re.search(r"\b(src|href)\s*=|url\((?!#)|@import|fetch\(|XMLHttpRequest", text)  # url(#id): in the page
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}


def test_large_batches_keep_a_few_images(tmp_path):
    tc.manual_seed(0)
    x, y = _batch(4, n=32)
    _, path, data = _page(tmp_path, nn.models.LeNet(), x, y, closure=False)
    conv1 = next(n for n in data["nodes"] if n["name"] == "conv1")
    blob = data["snapshots"][0]["nodes"][conv1["id"]]["value"]
    assert blob["shape"] == [32, 6, 14, 14] and blob["kept"] == [4, 6, 14, 14]
    assert "check" not in data["snapshots"][0]["leaves"][1] and data["snapshots"][0]["checked"] is False


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_gets_clear_errors(tmp_path):
    tc.manual_seed(0)
    model = nn.models.LeNet()
    x, y = _batch()
    with pytest.raises(RuntimeError, match="does not require grad"):
        with tc.no_grad():
            tc.explore(F.cross_entropy(model(x), y), tmp_path / "a.html")
    with pytest.raises(RuntimeError, match="expected a scalar loss"):
        tc.explore(model(x), tmp_path / "a.html")
    with pytest.raises(TypeError, match="expected the loss as a Tensor"):
        tc.explore(np.ones(()), tmp_path / "a.html")
    loss = F.cross_entropy(model(x), y)
    with pytest.raises(OSError, match="does not exist"):
        tc.explore(loss, tmp_path / "missing" / "a.html")
    with pytest.raises(OSError, match="it is a folder"):
        tc.explore(loss, tmp_path)
    loss.backward()
    with pytest.raises(RuntimeError, match="already freed by backward"):
        tc.explore(loss, tmp_path / "a.html")
    assert not list(tmp_path.glob("*.html"))  # nothing half-written
    with pytest.raises(ValueError, match="not a page written by tinyconv.explore"):
        (tmp_path / "other.html").write_text("<html></html>")
        read_data(tmp_path / "other.html")


# ------------------------------------------------------------------------------------------------ command line
def test_cli_explore_a_checkpoint(data_root, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data_root), "--custom-data", "--out", str(run), "--limit", "128",
                     "--test-limit", "64", "--epochs", "1", "--batch-size", "64", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "lenet.html"
    assert cli.main(["explore", str(run / "checkpoint.npz"), "-o", str(out), "--images", "3", "--data",
                     str(data_root), "--custom-data"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = read_data(out)
    assert data["title"].startswith("LeNet (modern) after 1 epoch")
    assert data["leaves"][0]["shape"] == [3, 1, 28, 28] and data["leaves"][0]["kind"] == "input"
    assert all(c["ok"] for leaf in data["snapshots"][0]["leaves"] for c in leaf.get("check", []))


def test_cli_explore_train_steps(data_root, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "steps.html"
    assert cli.main(["explore", "--train-steps", "3,0", "-o", str(out), "--model", "lenet", "--variant", "bn",
                     "--data", str(data_root), "--custom-data", "--checks", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = read_data(out)
    assert [s["label"] for s in data["snapshots"]] == ["step 0", "step 3"]
    assert data["snapshots"][0]["loss"] != data["snapshots"][1]["loss"]


def test_cli_explore_mistakes(data_root, tmp_path, capsys):  # noqa: F811
    bad = tmp_path / "not-a-checkpoint.npz"
    bad.write_bytes(b"this is not a checkpoint")
    assert cli.main(["explore", str(bad), "-o", str(tmp_path / "x.html"), "--data", str(data_root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinyconv explore: error:") and "not-a-checkpoint.npz" in err
    assert cli.main(["explore", "-o", str(tmp_path / "x.html")]) == 2
    assert "give either a CHECKPOINT or --train-steps" in capsys.readouterr().err
    assert cli.main(["explore", "--train-steps", "0,a"]) == 2
    assert "comma-separated step numbers" in capsys.readouterr().err
    assert cli.main(["explore", "--train-steps", "0", "-o", str(tmp_path / "no" / "x.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
