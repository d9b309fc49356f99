"""Tensor hooks (register_hook, retain_grad) and module hooks (forward, full backward) behave like PyTorch's.

Every case is written once against a tiny adapter (``Lib``) and run on tinyconv. Each case's expectation is
computed by hand (NumPy formulas derived on paper, in the case itself), so the tests mean something without
PyTorch; when PyTorch is importable the same case also runs on it, and the two logs must agree entry by entry
(same calls, same None positions, same values) -- which also checks that the hand expectations are PyTorch's.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinyconv as tc

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


class Lib:
    """The few calls the cases need, for tinyconv and for torch."""

    def __init__(self, name: str):
        self.name = name
        if name == "tinyconv":
            self.mod = tc
            self.nn = tc.nn
        else:
            import torch

            self.mod = torch
            self.nn = torch.nn

    def tensor(self, data, requires_grad=False):
        arr = np.asarray(data, dtype=np.float32)
        if self.name == "tinyconv":
            return tc.tensor(arr, requires_grad=requires_grad)
        return self.mod.tensor(arr, requires_grad=requires_grad)

    def np(self, t):
        if t is None:
            return None
        if self.name == "tinyconv":
            return np.array(t.numpy(), copy=True)
        return t.detach().cpu().numpy().copy()

    def grad(self, t):
        if self.name == "torch":
            import warnings

            with warnings.catch_warnings():  # torch warns when reading .grad of a non-leaf
                warnings.simplefilter("ignore")
                return self.np(t.grad)
        return self.np(t.grad)

    def set_param(self, p, values):
        arr = np.asarray(values, dtype=np.float32)
        if self.name == "tinyconv":
            p.numpy()[...] = arr
        else:
            with self.mod.no_grad():
                p.copy_(self.mod.tensor(arr))

    def linear(self, w, b):
        w = np.asarray(w, dtype=np.float32)
        lin = self.nn.Linear(w.shape[1], w.shape[0])
        self.set_param(lin.weight, w)
        self.set_param(lin.bias, b)
        return lin

    def no_grad(self):
        return self.mod.no_grad()

    def module_classes(self):
        nn = self.nn

        class Combine(nn.Module):
            """forward(a, scale, b) = a * b * scale (scale a Python number)."""

            def forward(self, a, scale, b):
                return a * b * scale

        class Split(nn.Module):
            """forward(x) = (2x, 3x)."""

            def forward(self, x):
                return x * 2.0, x * 3.0

        return Combine, Split


def hooks_log(lib, log, tag):
    """A full backward hook that records (tag, grad_input, grad_output) as arrays / None."""

    def hook(module, grad_input, grad_output):
        log.append((tag, tuple(lib.np(g) for g in grad_input), tuple(lib.np(g) for g in grad_output)))

    return hook


def assert_same(a, b, path="value"):
    """Recursive equality for logs: tuples/lists/dicts, None, arrays (allclose), strings, numbers."""
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif a is None or b is None:
        assert a is None and b is None, f"{path}: {a!r} vs {b!r}"
    elif isinstance(a, str):
        assert a == b, f"{path}: {a!r} vs {b!r}"
    else:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape, f"{path}: shape {a.shape} vs {b.shape}"
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=path)


# ============================================================================================ tensor hooks
@case
def leaf_hook_replaces_grad(lib):
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: (seen.append(lib.np(g)), g * 2)[1])
    (x * 3.0).sum().backward()
    got = {"seen": seen, "x.grad": lib.grad(x)}
    want = {"seen": [[3.0, 3.0, 3.0]], "x.grad": [6.0, 6.0, 6.0]}
    return got, want


@case
def nonleaf_hook_changes_upstream(lib):
    x = lib.tensor([1.0, -2.0], requires_grad=True)
    y = x * x  # dy/dx = 2x
    seen = []
    y.register_hook(lambda g: (seen.append(lib.np(g)), g + 1.0)[1])
    (y * 5.0).sum().backward()
    # the hook sees dL/dy = 5 and makes it 6; x.grad = 6 * 2x
    return {"seen": seen, "x.grad": lib.grad(x)}, {"seen": [[5.0, 5.0]], "x.grad": [12.0, -24.0]}


@case
def hooks_run_in_registration_order(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    seen = []
    y.register_hook(lambda g: (seen.append(("first", lib.np(g))), g * 10.0)[1])
    y.register_hook(lambda g: (seen.append(("second", lib.np(g))), None)[1])
    y.sum().backward()
    return ({"seen": seen, "x.grad": lib.grad(x)},
            {"seen": [("first", [1.0, 1.0]), ("second", [10.0, 10.0])], "x.grad": [10.0, 10.0]})


@case
def removed_hook_is_not_called(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    handle = x.register_hook(lambda g: seen.append(1))
    handle.remove()
    (x * 2.0).sum().backward()
    return {"calls": len(seen), "x.grad": lib.grad(x)}, {"calls": 0, "x.grad": [2.0, 2.0]}


@case
def retain_grad_sees_hooks_registered_later(lib):
    # PyTorch >= 2.0: the retains_grad hook always runs last, whatever the order of registration.
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    y.retain_grad()
    y.register_hook(lambda g: g * 2.0)
    y.sum().backward()
    return ({"y.grad": lib.grad(y), "x.grad": lib.grad(x), "retains": bool(y.retains_grad)},
            {"y.grad": [2.0, 2.0], "x.grad": [6.0, 6.0], "retains": True})


@case
def nonleaf_grad_is_none_without_retain_grad(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    y.sum().backward()
    return ({"y.grad": lib.grad(y), "retains": bool(y.retains_grad), "x.retains": bool(x.retains_grad)},
            {"y.grad": None, "retains": False, "x.retains": False})


@case
def retain_grad_accumulates_over_two_backwards(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    y.retain_grad()
    loss = (y * 4.0).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    return {"y.grad": lib.grad(y), "x.grad": lib.grad(x)}, {"y.grad": [8.0, 8.0], "x.grad": [16.0, 32.0]}


@case
def nonleaf_used_twice_hook_sees_the_sum(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    seen = []
    y.register_hook(lambda g: seen.append(lib.np(g)))
    (y * 3.0 + y * 4.0).sum().backward()
    return {"seen": seen}, {"seen": [[7.0, 7.0]]}


@case
def hook_on_tensor_without_grad_raises(lib):
    x = lib.tensor([1.0])
    try:
        x.register_hook(lambda g: g)
    except RuntimeError:
        return {"raised": True}, {"raised": True}
    return {"raised": False}, {"raised": True}


@case
def hook_returning_wrong_shape_raises(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    y.register_hook(lambda g: g.sum())
    try:
        y.sum().backward()
    except RuntimeError:
        return {"raised": True}, {"raised": True}
    return {"raised": False}, {"raised": True}


@case
def leaf_used_twice_hook_called_once_with_the_sum(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(lib.np(g)))
    (x * x).sum().backward()
    return {"seen": seen, "x.grad": lib.grad(x)}, {"seen": [[2.0, 4.0]], "x.grad": [2.0, 4.0]}


# ============================================================================================ module hooks
W = [[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]]  # Linear(3, 2): y = x Wᵀ + b
B = [0.5, -0.5]
C = [[1.0, -2.0], [3.0, 0.5]]  # loss = Σ y * C, so dL/dy = C and dL/dx = C W
X = [[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]]
CW = np.asarray(C) @ np.asarray(W)


@case
def module_hook_linear(lib):
    lin = lib.linear(W, B)
    log = []
    lin.register_full_backward_hook(hooks_log(lib, log, "lin"))
    x = lib.tensor(X, requires_grad=True)
    (lin(x) * lib.tensor(C)).sum().backward()
    return ({"log": log, "x.grad": lib.grad(x), "W.grad": lib.grad(lin.weight)},
            {"log": [("lin", (CW,), (C,))], "x.grad": CW, "W.grad": np.asarray(C).T @ np.asarray(X)})


@case
def module_hook_input_without_grad(lib):
    # The first layer of a network: the data needs no gradient, the hook is called once with grad_input (None,).
    lin = lib.linear(W, B)
    log = []
    lin.register_full_backward_hook(hooks_log(lib, log, "lin"))
    x = lib.tensor(X)
    (lin(x) * lib.tensor(C)).sum().backward()
    return ({"log": log, "b.grad": lib.grad(lin.bias)},
            {"log": [("lin", (None,), (C,))], "b.grad": np.asarray(C).sum(axis=0)})


@case
def module_hook_replaces_grad_input(lib):
    lin = lib.linear(W, B)
    lin.register_full_backward_hook(lambda m, gi, go: tuple(None if g is None else g * 10.0 for g in gi))
    x = lib.tensor(X, requires_grad=True)
    (lin(x) * lib.tensor(C)).sum().backward()
    # grad_input is replaced; the weight's gradient (computed inside the layer) is not affected.
    return ({"x.grad": lib.grad(x), "W.grad": lib.grad(lin.weight)},
            {"x.grad": 10 * CW, "W.grad": np.asarray(C).T @ np.asarray(X)})


@case
def module_hooks_chain(lib):
    lin = lib.linear(W, B)
    log = []
    lin.register_full_backward_hook(lambda m, gi, go: tuple(g * 2.0 for g in gi))
    lin.register_full_backward_hook(hooks_log(lib, log, "second"))
    x = lib.tensor(X, requires_grad=True)
    (lin(x) * lib.tensor(C)).sum().backward()
    return ({"log": log, "x.grad": lib.grad(x)},
            {"log": [("second", (2 * CW,), (C,))], "x.grad": 2 * CW})


@case
def module_hook_non_tensor_and_no_grad_args(lib):
    Combine, _ = lib.module_classes()
    m = Combine()
    log = []
    m.register_full_backward_hook(hooks_log(lib, log, "combine"))
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = lib.tensor([3.0, 4.0])  # no grad
    (m(a, 2.0, b) * lib.tensor([1.0, -1.0])).sum().backward()
    # out = 2ab; dL/dout = [1, -1]; dL/da = 2b·[1, -1]. grad_input: None for the number, and zeros (not None:
    # PyTorch's choice) for the tensor b that requires no gradient while a does.
    return ({"log": log, "a.grad": lib.grad(a)},
            {"log": [("combine", ([6.0, -8.0], None, [0.0, 0.0]), ([1.0, -1.0],))], "a.grad": [6.0, -8.0]})


@case
def module_hook_two_tensor_inputs(lib):
    Combine, _ = lib.module_classes()
    m = Combine()
    log = []
    m.register_full_backward_hook(hooks_log(lib, log, "combine"))
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = lib.tensor([3.0, 4.0], requires_grad=True)
    m(a, 0.5, b).sum().backward()
    return ({"log": log, "a.grad": lib.grad(a), "b.grad": lib.grad(b)},
            {"log": [("combine", ([1.5, 2.0], None, [0.5, 1.0]), ([1.0, 1.0],))],
             "a.grad": [1.5, 2.0], "b.grad": [0.5, 1.0]})


@case
def module_hook_tuple_output(lib):
    _, Split = lib.module_classes()
    m = Split()
    log = []
    m.register_full_backward_hook(hooks_log(lib, log, "split"))
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    p, q = m(x)
    (p * lib.tensor([1.0, 2.0]) + q * lib.tensor([-1.0, 1.0])).sum().backward()
    # dL/dx = 2·[1, 2] + 3·[-1, 1] = [-1, 7]
    return ({"log": log, "x.grad": lib.grad(x)},
            {"log": [("split", ([-1.0, 7.0],), ([1.0, 2.0], [-1.0, 1.0]))], "x.grad": [-1.0, 7.0]})


@case
def module_hook_tuple_output_one_unused(lib):
    _, Split = lib.module_classes()
    m = Split()
    log = []
    m.register_full_backward_hook(hooks_log(lib, log, "split"))
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    p, _q = m(x)
    p.sum().backward()
    # the unused output's gradient is None in grad_output
    return {"log": log, "x.grad": lib.grad(x)}, {"log": [("split", ([2.0, 2.0],), ([1.0, 1.0], None))],
                                                 "x.grad": [2.0, 2.0]}


@case
def module_called_twice(lib):
    lin = lib.linear([[1.0, 2.0], [0.0, -1.0]], [0.0, 0.0])
    log = []
    lin.register_full_backward_hook(hooks_log(lib, log, "lin"))
    x = lib.tensor([[1.0, 1.0]], requires_grad=True)
    lin(lin(x)).sum().backward()
    # y1 = x Wᵀ, y2 = y1 Wᵀ; dL/dy2 = 1, dL/dy1 = 1·W = [1, 1], dL/dx = [1, 1]·W = [1, 1]
    return ({"log": log, "x.grad": lib.grad(x)},
            {"log": [("lin", ([[1.0, 1.0]],), ([[1.0, 1.0]],)), ("lin", ([[1.0, 1.0]],), ([[1.0, 1.0]],))],
             "x.grad": [[1.0, 1.0]]})


@case
def module_hooks_order_in_sequential(lib):
    nn = lib.nn
    seq = nn.Sequential(lib.linear(W, B), nn.Tanh(), lib.linear(C, [0.0, 0.0]))
    order = []
    for name, m in [("seq", seq), ("0", seq[0]), ("1", seq[1]), ("2", seq[2])]:
        m.register_full_backward_hook(lambda mod, gi, go, name=name: order.append(name))
    x = lib.tensor(X, requires_grad=True)
    seq(x).sum().backward()
    return {"order": order}, {"order": ["2", "1", "0", "seq"]}


@case
def module_hook_removed_and_no_grad(lib):
    lin = lib.linear(W, B)
    log = []
    handle = lin.register_full_backward_hook(hooks_log(lib, log, "removed"))
    handle.remove()
    x = lib.tensor(X, requires_grad=True)
    lin(x).sum().backward()
    lin.register_full_backward_hook(hooks_log(lib, log, "active"))
    with lib.no_grad():
        y = lin(x)
    return {"calls": len(log), "requires_grad": bool(y.requires_grad)}, {"calls": 0, "requires_grad": False}


@case
def module_hook_twice_with_retain_graph(lib):
    lin = lib.linear(W, B)
    log = []
    lin.register_full_backward_hook(hooks_log(lib, log, "lin"))
    x = lib.tensor(X, requires_grad=True)
    loss = (lin(x) * lib.tensor(C)).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    return ({"log": log, "x.grad": lib.grad(x)},
            {"log": [("lin", (CW,), (C,))] * 2, "x.grad": 2 * CW})


@case
def module_hook_wrong_length_raises(lib):
    lin = lib.linear(W, B)
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    x = lib.tensor(X, requires_grad=True)
    try:
        lin(x).sum().backward()
    except RuntimeError as e:
        return {"raised": "invalid number of grad_input" in str(e)}, {"raised": True}
    return {"raised": False}, {"raised": True}


@case
def module_hook_without_input_grad_must_return_none(lib):
    lin = lib.linear(W, B)
    lin.register_full_backward_hook(lambda m, gi, go: (go[0],))
    x = lib.tensor(X)
    try:
        lin(x).sum().backward()
    except RuntimeError as e:
        return {"raised": "should always return None" in str(e)}, {"raised": True}
    return {"raised": False}, {"raised": True}


def _corr2d(X, K):
    X, K = np.asarray(X, np.float64), np.asarray(K, np.float64)
    h, w = K.shape
    return np.array([[(X[i:i + h, j:j + w] * K).sum() for j in range(X.shape[1] - w + 1)]
                     for i in range(X.shape[0] - h + 1)])


KC = [[1.0, -1.0], [2.0, 0.5]]  # Conv2d(1, 1, 2) kernel
XC = [[1.0, 2.0, 0.0], [-1.0, 3.0, 1.0], [2.0, 0.0, -2.0]]
GC = [[1.0, 2.0], [-1.0, 0.5]]  # dL/dy, via loss = Σ y * GC


@case
def module_hook_conv2d(lib):
    conv = lib.nn.Conv2d(1, 1, 2)
    lib.set_param(conv.weight, [[KC]])
    lib.set_param(conv.bias, [0.25])
    log = []
    conv.register_full_backward_hook(hooks_log(lib, log, "conv"))
    x = lib.tensor([[XC]], requires_grad=True)
    (conv(x) * lib.tensor([[GC]])).sum().backward()
    # grad_input = full correlation of dL/dy with the flipped kernel; dL/dK = corr(x, dL/dy)
    gin = _corr2d(np.pad(GC, 1), np.asarray(KC)[::-1, ::-1])
    return ({"log": log, "K.grad": lib.grad(conv.weight), "b.grad": lib.grad(conv.bias)},
            {"log": [("conv", ([[gin]],), ([[GC]],))], "K.grad": [[_corr2d(XC, GC)]], "b.grad": [np.sum(GC)]})


@case
def module_hook_maxpool_in_sequential(lib):
    nn = lib.nn
    conv = nn.Conv2d(1, 1, 2)
    lib.set_param(conv.weight, [[KC]])
    lib.set_param(conv.bias, [0.0])
    pool = nn.MaxPool2d(2)
    seq = nn.Sequential(conv, pool)
    log = []
    pool.register_full_backward_hook(hooks_log(lib, log, "pool"))
    conv.register_full_backward_hook(hooks_log(lib, log, "conv"))
    x = lib.tensor([[XC]])  # the data needs no gradient
    (seq(x) * 3.0).sum().backward()
    y = _corr2d(XC, KC)  # conv output; the 2x2 max pool picks its largest entry
    g = np.zeros((2, 2))
    g[np.unravel_index(np.argmax(y), y.shape)] = 3.0
    return ({"log": log}, {"log": [("pool", ([[g]],), ([[[[3.0]]]],)), ("conv", (None,), ([[g]],))]})


@case
def forward_hook_sees_input_and_output(lib):
    lin = lib.linear(W, B)
    log = []
    lin.register_forward_hook(lambda m, args, out: log.append((lib.np(args[0]), lib.np(out))))
    x = lib.tensor(X)
    lin(x)
    want_out = np.asarray(X) @ np.asarray(W).T + np.asarray(B)
    return {"log": log}, {"log": [(X, want_out)]}


@case
def forward_hook_replaces_output(lib):
    lin = lib.linear(W, B)
    lin.register_forward_hook(lambda m, args, out: out * 0.0)
    x = lib.tensor(X, requires_grad=True)
    y = lin(x)
    y.sum().backward()
    return {"y": lib.np(y), "x.grad": lib.grad(x)}, {"y": np.zeros((2, 2)), "x.grad": np.zeros((2, 3))}


# ================================================================================================== tests
# Cases where tinyconv knowingly differs from PyTorch (none at present); each is a strict xfail.
KNOWN_DIVERGENCES: dict = {}


def _param(name):
    if name in KNOWN_DIVERGENCES:
        return pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_DIVERGENCES[name], strict=True))
    return name


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_tinyconv_matches_hand_expectation(name):
    got, want = CASES[name](Lib("tinyconv"))
    assert_same(got, want)


@pytest.mark.torch
@pytest.mark.parametrize("name", list(CASES))
def test_torch_matches_hand_expectation(name):
    pytest.importorskip("torch")
    got, want = CASES[name](Lib("torch"))
    assert_same(got, want)


@pytest.mark.torch
@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_tinyconv_matches_torch(name):
    pytest.importorskip("torch")
    theirs, _ = CASES[name](Lib("torch"))
    ours, _ = CASES[name](Lib("tinyconv"))
    assert_same(ours, theirs)


def test_assert_same_can_fail():
    with pytest.raises(AssertionError):
        assert_same({"a": [1.0, None]}, {"a": [1.0, 0.0]})
    with pytest.raises(AssertionError):
        assert_same([np.ones(2)], [np.ones(2) * 1.01])
    with pytest.raises(AssertionError):
        assert_same([("x", (None,))], [("x", (None, None))])


# ------------------------------------------------------------------------------------- tinyconv specifics
def test_hook_nodes_are_named_in_the_graph():
    lin = tc.nn.Linear(3, 2)
    lin.register_full_backward_hook(lambda m, gi, go: None)
    x = tc.tensor(np.ones((1, 3), np.float32), requires_grad=True)
    from tinyconv.graph import format_graph

    text = format_graph(lin(x).sum())
    assert "BackwardHookFunctionBackward(Linear outputs)" in text
    assert "BackwardHookSelectBackward(Linear input 0)" in text


def test_hook_returning_wrong_shape_for_grad_input_raises():
    lin = tc.nn.Linear(3, 2)
    lin.register_full_backward_hook(lambda m, gi, go: (tc.ones(5),))
    x = tc.tensor(np.ones((1, 3), np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="shape"):
        lin(x).sum().backward()


def test_hook_returning_non_tuple_raises():
    lin = tc.nn.Linear(3, 2)
    lin.register_full_backward_hook(lambda m, gi, go: gi[0])
    x = tc.tensor(np.ones((1, 3), np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="tuple"):
        lin(x).sum().backward()


def test_backward_hooks_on_a_deep_model_keep_gradients_exact():
    """Hooks that return None change nothing: every parameter gradient equals the unhooked model's."""
    tc.manual_seed(0)
    layers = [tc.nn.Linear(4, 4) for _ in range(3)]
    model = tc.nn.Sequential(layers[0], tc.nn.Tanh(), layers[1], tc.nn.Sigmoid(), layers[2])
    x = tc.randn(5, 4, requires_grad=True)
    model(x).sum().backward()
    plain = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    plain_x = x.grad.numpy().copy()
    model.zero_grad()
    x.grad = None
    calls = []
    for m in model.modules():
        m.register_full_backward_hook(lambda mod, gi, go: calls.append(type(mod).__name__))
    model(x).sum().backward()
    assert calls == ["Linear", "Sigmoid", "Linear", "Tanh", "Linear", "Sequential"]
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad.numpy(), plain[n])
    np.testing.assert_array_equal(x.grad.numpy(), plain_x)
