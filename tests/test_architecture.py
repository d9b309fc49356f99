"""The stack stays straight (docs/architecture.md): no import circle anywhere in the package, each core floor
imports only what stands below it, the engine is observed only through its public hook, and a backend is one
registered object."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import tinyconv as tc
import tinyconv.kernels as K
from tinyconv import autograd
from tinyconv import functional as F
from tinyconv.kernels.shapes import normalize_conv_args

PACKAGE = Path(tc.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


MODULES = _modules()


def _imports(mod: str) -> set[str]:
    """The tinyconv modules ``mod`` imports, wherever the import stands (a deferred import is still an import)."""
    path = MODULES[mod]
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                head = ".".join(parts + ([node.module] if node.module else []))
            else:
                head = node.module or ""
            subs = [f"{head}.{a.name}" for a in node.names if f"{head}.{a.name}" in MODULES]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(head)
    return {m for m in found if m in MODULES and m != mod}


def _is_face(mod: str) -> bool:
    """A package __init__ that only re-exports (imports and simple assignments)."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text())
    return path.name == "__init__.py" and all(
        isinstance(n, (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign)) for n in tree.body)


def test_no_import_circle():
    faces = {m for m in MODULES if _is_face(m)}
    graph = {m: _imports(m) - faces for m in MODULES if m not in faces}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(m, path):
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                walk(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])


def _under(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def _allowed(mod: str, allowed_prefixes: tuple[str, ...]) -> list[str]:
    """The tinyconv imports of ``mod`` that fall outside ``allowed_prefixes``."""
    return sorted(m for m in _imports(mod)
                  if not any(m == p or m.startswith(p + ".") for p in allowed_prefixes))


@pytest.mark.parametrize("mod, allowed", [
    ("tinyconv.autograd", ()),                                           # the engine: NumPy only, no Tensor
    *[(m, ("tinyconv.autograd", "tinyconv.kernels", "tinyconv.functions")) for m in _under("tinyconv.functions")],
    *[(m, ("tinyconv.kernels",)) for m in _under("tinyconv.kernels")],  # pure array code
])
def test_core_floors_import_only_what_stands_below(mod, allowed):
    assert _allowed(mod, allowed) == [], f"{mod} reaches above its floor"


@pytest.mark.parametrize("mod, forbidden", [
    ("tinyconv.tensor", ("tinyconv.functional", "tinyconv.nn", "tinyconv.graph", "tinyconv.profiler")),
    ("tinyconv.functional", ("tinyconv.nn", "tinyconv.graph", "tinyconv.profiler", "tinyconv.summary",
                             "tinyconv.train", "tinyconv.cli")),
    *[(m, ("tinyconv.graph", "tinyconv.profiler", "tinyconv.summary", "tinyconv.visualize", "tinyconv.train",
           "tinyconv.cli")) for m in _under("tinyconv.nn")],
    *[(m, ("tinyconv.functional", "tinyconv.nn", "tinyconv.optim", "tinyconv.graph", "tinyconv.profiler",
           "tinyconv.summary", "tinyconv.visualize", "tinyconv.train", "tinyconv.cli"))
      for m in _under("tinyconv.distributions")],  # sampling stands on Tensor alone
])
def test_no_floor_imports_the_tools_above_it(mod, forbidden):
    bad = sorted(m for m in _imports(mod) if any(m == p or m.startswith(p + ".") for p in forbidden))
    assert bad == [], f"{mod} imports {bad}"


# ----------------------------------------------------------------------------- the engine's observer hook
class _Counter(autograd.Observer):
    def __init__(self):
        self.forward, self.backward, self.passes = [], [], 0

    def call_forward(self, fn_cls, ctx, arrays, params):
        self.forward.append(fn_cls.__name__)
        return super().call_forward(fn_cls, ctx, arrays, params)

    def call_backward(self, node, grad):
        self.backward.append(type(node).__name__)
        return super().call_backward(node, grad)

    def call_backward_pass(self, run, tensor, grad, retain_graph):
        self.passes += 1
        return super().call_backward_pass(run, tensor, grad, retain_graph)


def test_an_observer_sees_every_forward_and_backward_and_is_removed_after():
    x = tc.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    w = tc.tensor([[0.5], [1.0], [-1.0]], requires_grad=True)
    seen = _Counter()
    assert autograd.get_observer() is None
    with autograd.observe(seen):
        assert autograd.get_observer() is seen
        loss = (x @ w).relu().sum()
        loss.backward()
    assert autograd.get_observer() is None
    assert seen.forward == ["MatMul", "Relu", "Sum"]
    assert seen.backward == ["Sum", "Relu", "MatMul"]
    assert seen.passes == 1
    # the observer only watched: the gradients are the plain engine's
    np.testing.assert_allclose(x.grad.numpy(), [[0.0, 0.0, 0.0]])  # relu of (1 - 2 - 3) < 0 blocks everything
    np.testing.assert_allclose(w.grad.numpy(), np.zeros((3, 1)))


def test_function_apply_needs_a_tensor():
    with pytest.raises(TypeError, match="Relu.apply needs at least one Tensor"):
        tc.ops.Relu.apply(np.ones(3))


# ----------------------------------------------------------------------------- backends
def test_a_registered_backend_is_selectable_everywhere():
    """conftest.py registered the einsum backend of tests/einsum_backend.py: one file, one register line."""
    assert "einsum" in K.available()
    rng = np.random.default_rng(0)
    x = tc.tensor(rng.standard_normal((2, 3, 7, 6)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((4, 3, 3, 2)), requires_grad=True)
    y = F.conv2d(x, w, stride=(2, 1), padding=1, kernel="einsum")
    assert y.grad_fn.name() == "Conv2dBackward(kernel=einsum)"
    ref = F.conv2d(x.detach(), w.detach(), stride=(2, 1), padding=1, kernel="direct")
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)
    with tc.use_kernel("einsum"):
        assert tc.nn.Conv2d(3, 4, 3).double()(x).grad_fn.name() == "Conv2dBackward(kernel=einsum)"


def test_register_rejects_what_is_not_a_backend():
    with pytest.raises(TypeError, match="Backend instance"):
        K.register(object())

    class Clash(K.Backend):
        name = "direct"

    with pytest.raises(ValueError, match="already registered as 'direct'"):
        K.register(Clash())

    class Auto(K.Backend):
        name = "auto"

    with pytest.raises(ValueError, match="other than 'auto'"):
        K.register(Auto())
    assert K.get_kernel("direct") is K.direct.backend


def test_auto_is_a_backend_with_the_same_interface():
    auto = K.get_kernel("auto")
    assert isinstance(auto, K.Backend)
    for method in ("forward", "grad_input", "grad_weight", "max_pool", "max_pool_backward", "avg_pool",
                   "avg_pool_backward", "conv2d_forward", "max_pool2d_forward", "choose", "choose_pool"):
        assert callable(getattr(auto, method)), method
    for x_shape, w_shape in (((8, 64, 16, 16), (128, 64, 1, 1)), ((8, 3, 16, 16), (8, 3, 3, 3))):
        args = normalize_conv_args(x_shape, w_shape)
        for op in ("forward", "grad_input", "grad_weight"):  # auto asks the one chooser
            assert auto.choose(op, x_shape, w_shape, args) is K.get_kernel(
                K.choose.conv_backend(op, x_shape, w_shape, args))
