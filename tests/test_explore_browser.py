"""The tc.explore page in a real browser: Debian's chromium driven by playwright (the `browser` extra).

Pages from LeNet (two snapshots), the ResNet and a small custom model (with a correct and a deliberately wrong
backward) are opened from file://. The tests check that nothing but the file is requested and nothing is logged as
an error, that stepping visits the nodes in exactly the engine's backward order, that the shapes and statistics
shown equal values computed here, that the numerical check is green or red as it should be, and that the slider
changes what is shown. Without chromium or playwright the tests are skipped, except under CI (CI set), where they
fail: CI installs both (.ci/run).

``TINYCONV_UPDATE_SCREENSHOT=1`` also writes the screenshot taken here to docs/explore.png (the tutorial's and the
README's picture).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_explore import _Cube, _Order, _Small, _WrongCube

import tinyconv as tc
from tinyconv import autograd, nn
from tinyconv import functional as F
from tinyconv.explorer import read_data

CHROMIUM = os.environ.get("TINYCONV_CHROMIUM", "/usr/bin/chromium")
DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "explore.png"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = ("playwright is not installed (pip install 'tinyconv[browser]')" if sync_playwright is None else
               f"no chromium at {CHROMIUM} (apt-get install chromium)" if not shutil.which(CHROMIUM) else None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _digits(n: int) -> np.ndarray:
    """n 28x28 images of strokes that look like the digits 7, 1, 4, 0 (blurred polylines), normalised as MNIST."""
    strokes = {7: [(6, 6), (6, 21), (22, 11)], 1: [(5, 14), (23, 14)], 4: [(5, 9), (16, 7), (16, 21), (5, 17),
                                                                            (23, 17)],
               0: [(5, 14), (10, 7), (18, 7), (23, 14), (18, 21), (10, 21), (5, 14)]}
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 1, 28, 28), np.float32)
    for k, digit in enumerate([7, 1, 4, 0][:n] + [7] * max(0, n - 4)):
        img = np.zeros((28, 28))
        pts = strokes[digit]
        for (r0, c0), (r1, c1) in zip(pts, pts[1:]):
            for t in np.linspace(0, 1, 40):
                r, c = r0 + t * (r1 - r0), c0 + t * (c1 - c0)
                img = np.maximum(img, np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 2.0))
        out[k, 0] = (img - 0.1307) / 0.3081
    return out


def _engine_order(loss):
    order = _Order()
    with autograd.observe(order):
        loss.backward()
    return order.seen


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """name -> (path, data, python-side facts) for the pages the tests open."""
    root = tmp_path_factory.mktemp("pages")
    out = {}

    tc.manual_seed(0)
    lenet = nn.models.LeNet()
    x, y = tc.tensor(_digits(4)), np.array([7, 1, 4, 0])
    opt = tc.optim.SGD(lenet.parameters(), lr=0.05)
    snaps = tc.explorer.Snapshots(lenet)
    facts = {}
    for step in range(4):
        loss = F.cross_entropy(lenet(x), y)
        if step in (0, 3):
            snaps.add(loss, f"step {step}", closure=lambda: F.cross_entropy(lenet(x), y))
        opt.zero_grad()
        order = _engine_order(loss)
        if step == 0:  # what the page shows for snapshot 0, computed here without the page's help
            with tc.no_grad():
                h = F.max_pool2d(F.relu(lenet.conv1(x)), 2)
                conv2_out = F.max_pool2d(F.relu(lenet.conv2(h)), 2).numpy().astype(np.float64)
            facts = {"order": order, "conv2_out": conv2_out, "conv2_weight_grad":
                     lenet.conv2.weight.grad.numpy().astype(np.float64), "loss": float(loss.item())}
        opt.step()
    out["lenet"] = (snaps.write(root / "lenet.html"), facts)

    for variant in ("d2l", "bn"):  # sigmoid + average pooling; batch norm (no fused node in either)
        tc.manual_seed(0)
        model = nn.models.LeNet(variant)
        loss = F.cross_entropy(model(x), y)
        path = tc.explore(loss, root / f"lenet_{variant}.html", model=model,
                          closure=lambda m=model: F.cross_entropy(m(x), y))
        out[f"lenet_{variant}"] = (path, {"order": _engine_order(loss)})

    tc.manual_seed(0)
    resnet = nn.models.ResNet()
    loss = F.cross_entropy(resnet(x), y)
    path = tc.explore(loss, root / "resnet.html", model=resnet, closure=lambda: F.cross_entropy(resnet(x), y))
    out["resnet"] = (path, {"order": _engine_order(loss)})

    for name, op in (("custom", _Cube), ("wrong", _WrongCube)):
        tc.manual_seed(0)
        model = _Small(op)
        xs, ys = tc.randn(2, 1, 10, 10), np.array([1, 3])
        loss = F.cross_entropy(model(xs), ys)
        path = tc.explore(loss, root / f"{name}.html", model=model,
                          closure=lambda m=model, a=xs, b=ys: F.cross_entropy(m(a), b))
        out[name] = (path, {"order": _engine_order(loss)})
    return {k: (Path(p), read_data(p), f) for k, (p, f) in out.items()}


class _Opened:
    def __init__(self, browser, path: Path, viewport=(1400, 900)):
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", state="attached", timeout=10_000)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.page.close()

    def js(self, expression):
        return self.page.evaluate(expression)

    def go_to(self, node_id: int, data) -> None:
        self.js(f"window.tinyconvExplorer.go({data['backward'].index(node_id)})")
        assert self.js("window.tinyconvExplorer.current()") == node_id

    def number(self, selector: str) -> float:
        return float(self.page.locator(selector).first.text_content())


@pytest.mark.parametrize("name", ["lenet", "lenet_d2l", "lenet_bn", "resnet", "custom", "wrong"])
def test_page_opens_offline_without_errors(browser, pages, name):
    path, data, _ = pages[name]
    with _Opened(browser, path) as p:
        assert p.errors == []
        assert p.requests == [path.resolve().as_uri()]  # the file itself, nothing else
        ready_ms = float(p.page.locator("body").get_attribute("data-ready-ms"))
        assert p.js("window.tinyconvExplorer.current()") == data["backward"][0]
        assert p.page.locator("#graph .node[data-node]").count() == len(data["nodes"])
        for _ in range(len(data["backward"])):  # every node's view draws without an error
            p.js("window.tinyconvExplorer.step(1)")
        assert p.errors == []
    print(f"{name}: {path.stat().st_size / 1e6:.2f} MB, drawn {ready_ms:.0f} ms after navigation start")


@pytest.mark.parametrize("name", ["lenet", "lenet_bn", "resnet", "custom"])
def test_stepping_visits_every_node_in_the_engines_backward_order(browser, pages, name):
    path, data, facts = pages[name]
    with _Opened(browser, path) as p:
        visited = [p.js("window.tinyconvExplorer.current()")]
        for _ in range(len(data["backward"]) + 2):  # two steps past the end stay at the last node
            visited.append(p.js("window.tinyconvExplorer.step(1)"))
        assert visited[: len(data["backward"])] == data["backward"]
        assert visited[len(data["backward"]):] == [data["backward"][-1]] * 3
        shown = [(data["nodes"][i]["op"], data["nodes"][i]["shape"]) for i in visited[: len(data["backward"])]]
        assert shown == facts["order"]  # what the engine ran when Python called backward()
        assert p.js("window.tinyconvExplorer.step(-2)") == data["backward"][-3]
        p.page.keyboard.press("ArrowRight")
        assert p.js("window.tinyconvExplorer.current()") == data["backward"][-2]
        p.page.keyboard.press("ArrowLeft")
        p.page.keyboard.press("ArrowLeft")
        assert p.js("window.tinyconvExplorer.current()") == data["backward"][-4]
        current = p.page.locator("#graph .node.current")
        assert current.count() == 1 and int(current.get_attribute("data-node")) == data["backward"][-4]
        p.page.locator("#prev").click()
        assert p.js("window.tinyconvExplorer.current()") == data["backward"][-5]


def test_shapes_and_statistics_shown_are_pythons(browser, pages):
    path, data, facts = pages["lenet"]
    conv2 = next(n for n in data["nodes"] if n["name"] == "conv2")
    with _Opened(browser, path) as p:
        p.go_to(conv2["id"], data)
        assert p.page.locator("#detail [data-field=shape]").text_content() == "(4, 16, 5, 5)"
        out = facts["conv2_out"]
        for stat, value in (("min", out.min()), ("max", out.max()), ("mean", out.mean()),
                            ("norm", np.linalg.norm(out))):
            assert p.number(f"#detail table[data-of=value] td[data-stat={stat}]") == pytest.approx(value, rel=1e-4)
        g = facts["conv2_weight_grad"]
        leaf = next(leaf["id"] for leaf in data["leaves"] if leaf["name"] == "conv2.weight")
        for stat, value in (("min", g.min()), ("max", g.max()), ("norm", np.linalg.norm(g))):
            assert p.number(f"#detail table[data-of=leaf-{leaf}] td[data-stat={stat}]") == pytest.approx(value,
                                                                                                         rel=1e-4)
        fused_layers = p.page.locator("#detail [data-field=stages]").text_content()
        assert fused_layers.startswith("Conv2d (4, 16, 10, 10)") and "Relu (4, 16, 10, 10)" in fused_layers
        assert fused_layers.endswith("MaxPool2d (4, 16, 5, 5)")
        assert "transposed convolution" in p.page.locator("#detail .rule").text_content()
        assert p.page.locator("#detail canvas.pic").count() >= 4  # output, gradient, weight and bias gradients


def _verdicts(p, data, node_name):
    node = next(n for n in data["nodes"] if n["name"] == node_name)
    p.go_to(node["id"], data)
    rows = p.page.locator("#detail table.check tr[data-ok]")
    colours = [rows.nth(i).locator("td.verdict").evaluate("e => getComputedStyle(e).backgroundColor")
               for i in range(rows.count())]
    return [rows.nth(i).get_attribute("class") for i in range(rows.count())], colours


def test_numerical_check_is_green_for_a_right_backward_and_red_for_a_wrong_one(browser, pages):
    green, red = "rgb(26, 127, 55)", "rgb(207, 34, 46)"
    with _Opened(browser, pages["custom"][0]) as p:
        classes, colours = _verdicts(p, pages["custom"][1], "conv")
        assert classes == ["ok"] * 6 and colours == [green] * 6  # 3 elements each of conv.weight and conv.bias
    with _Opened(browser, pages["wrong"][0]) as p:
        classes, colours = _verdicts(p, pages["wrong"][1], "conv")
        assert classes == ["bad"] * 6 and colours == [red] * 6
        classes, colours = _verdicts(p, pages["wrong"][1], "fc")  # after the planted mistake: still right
        assert set(classes) == {"ok"} and set(colours) == {green}


def test_the_slider_moves_between_snapshots(browser, pages):
    path, data, facts = pages["lenet"]
    conv2 = next(n for n in data["nodes"] if n["name"] == "conv2")
    with _Opened(browser, path) as p:
        p.go_to(conv2["id"], data)
        assert p.page.locator("#snap-label").text_content() == "step 0"
        assert float(p.page.locator("#loss").text_content().split()[1]) == pytest.approx(facts["loss"], rel=1e-4)
        before = p.page.locator("#detail table[data-of=value]").text_content()
        pixels_before = p.js("document.querySelector('#detail canvas.pic').toDataURL()")
        p.page.locator("#snapshot").fill("1")
        assert p.js("window.tinyconvExplorer.snapshot()") == 1
        assert p.page.locator("#snap-label").text_content() == "step 3"
        assert p.js("window.tinyconvExplorer.current()") == conv2["id"]  # the same node, later in training
        later = data["snapshots"][1]["nodes"][conv2["id"]]["value_stats"]
        assert p.number("#detail table[data-of=value] td[data-stat=norm]") == pytest.approx(later["norm"], rel=1e-4)
        assert p.page.locator("#detail table[data-of=value]").text_content() != before
        assert p.js("document.querySelector('#detail canvas.pic').toDataURL()") != pixels_before
        assert p.js("window.tinyconvExplorer.snapshot(0)") == 0
        assert p.page.locator("#detail table[data-of=value]").text_content() == before
        p.page.locator("#image").select_option(index=2)  # another image of the batch: other feature maps
        assert p.js("document.querySelector('#detail canvas.pic').toDataURL()") != pixels_before
        assert "image 3 of 4" in p.page.locator("#detail .picture .note").first.text_content()
        assert p.errors == []


def test_screenshot_of_lenets_conv2(browser, pages, tmp_path):
    """The picture in docs/: LeNet's conv2 node. Taken on every run; written to docs/ on request."""
    path, data, _ = pages["lenet"]
    conv2 = next(n for n in data["nodes"] if n["name"] == "conv2")
    shot = tmp_path / "explore.png"
    with _Opened(browser, path, viewport=(1280, 760)) as p:
        p.go_to(conv2["id"], data)
        p.page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size < 300_000
    if os.environ.get("TINYCONV_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, DOCS_PNG)
    assert DOCS_PNG.exists(), "docs/explore.png is missing: run this test with TINYCONV_UPDATE_SCREENSHOT=1"
    assert DOCS_PNG.read_bytes()[16:24] == shot.read_bytes()[16:24]  # the same width and height
    assert DOCS_PNG.stat().st_size < 300_000
