"""The built-in profiler: which ops it records, their counts and scopes, and that it is inert when off."""
import json

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import autograd, nn
from tinyconv import functional as F
from tinyconv.profiler import Profile


def _counts(prof, kind="op"):
    """{(name, phase): count} over all scopes for one kind."""
    out = {}
    for e in prof.events():
        if e["kind"] == kind:
            out[(e["name"], e["phase"])] = out.get((e["name"], e["phase"]), 0) + e["count"]
    return out


def _small_graph():
    a = tc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    b = tc.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    loss = (a * b + a).sum()
    loss.backward()
    return a, b


def test_records_expected_ops_with_counts():
    with tc.profile() as prof:
        a, b = _small_graph()
    ops = _counts(prof)
    assert ops == {
        ("Mul", "forward"): 1, ("Add", "forward"): 1, ("Sum", "forward"): 1,
        ("Mul", "backward"): 1, ("Add", "backward"): 1, ("Sum", "backward"): 1,
    }
    assert _counts(prof, "engine") == {("autograd engine", "backward"): 1}
    # gradients are unchanged by profiling
    np.testing.assert_allclose(a.grad.numpy(), 2 * np.ones((2, 3)))
    np.testing.assert_allclose(b.grad.numpy(), np.arange(6).reshape(2, 3))
    for e in prof.events():
        assert e["total_s"] >= e["self_s"] >= -1e-9
        assert e["min_s"] <= e["mean_s"] <= e["max_s"]


def test_counts_accumulate_over_iterations_and_no_grad_ops_are_forward_only():
    x = tc.tensor(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    with tc.profile() as prof:
        for _ in range(3):
            (x * 2.0).relu().mean().backward()
        with tc.no_grad():
            x.exp()
    ops = _counts(prof)
    assert ops[("Mul", "forward")] == 3 and ops[("Mul", "backward")] == 3
    assert ops[("Relu", "forward")] == 3 and ops[("Relu", "backward")] == 3
    assert ops[("Mean", "forward")] == 3 and ops[("Mean", "backward")] == 3
    assert ops[("Exp", "forward")] == 1 and ("Exp", "backward") not in ops
    assert _counts(prof, "engine")[("autograd engine", "backward")] == 3


def test_module_scopes_and_regions():
    tc.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = tc.tensor(np.ones((2, 5), dtype=np.float32))
    with tc.profile(model) as prof:
        for _ in range(2):
            with tc.profiler.record("forward pass"):
                out = model(x)
            with tc.profiler.record("loss"):
                loss = F.cross_entropy(out, np.array([0, 2]))
            loss.backward()
    modules = _counts(prof, "module")
    assert modules == {("Sequential", "forward"): 2, ("0 (Linear)", "forward"): 2,
                       ("1 (ReLU)", "forward"): 2, ("2 (Linear)", "forward"): 2}
    assert _counts(prof, "region") == {("forward pass", "region"): 2, ("loss", "region"): 2}
    by_scope = {(e["scope"], e["name"], e["phase"]): e["count"] for e in prof.events() if e["kind"] == "op"}
    # an op's backward is attributed to the scope its forward ran in
    assert by_scope[("0 (Linear)", "Linear", "forward")] == 2
    assert by_scope[("0 (Linear)", "Linear", "backward")] == 2
    assert by_scope[("1 (ReLU)", "Relu", "backward")] == 2
    assert any(scope == "loss" and phase == "backward" for scope, _, phase in by_scope)
    # inclusive entries contain what ran inside them
    ev = {(e["kind"], e["name"]): e for e in prof.events()}
    region = ev[("region", "forward pass")]
    seq = ev[("module", "Sequential")]
    assert region["total_s"] >= seq["total_s"] >= ev[("module", "0 (Linear)")]["total_s"]
    grouped = {(r["name"], r["phase"]) for r in prof.to_dict(group_by="scope")["events"] if r["kind"] == "op"}
    assert ("0 (Linear)", "backward") in grouped and ("loss", "forward") in grouped
    # the hooks are gone afterwards
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_table_and_to_dict():
    with tc.profile() as prof:
        _small_graph()
    text = prof.table(sort_by="total")
    for word in ("Mul", "Add", "Sum", "forward", "backward", "calls", "total ms", "self ms", "autograd engine"):
        assert word in text
    assert "ms/step" in prof.table(sort_by="self", group_by="scope", per=1)
    assert prof.table(sort_by="name", limit=1).count("\nop ") == 1
    d = json.loads(json.dumps(prof.to_dict()))
    assert d["summary"]["wall_s"] >= d["summary"]["ops_s"] > 0
    assert {e["name"] for e in d["events"]} >= {"Mul", "Add", "Sum"}
    with pytest.raises(ValueError):
        prof.table(sort_by="nonsense")
    with pytest.raises(ValueError):
        prof.table(group_by="nonsense")
    prof.reset()
    assert prof.events() == []


def test_nothing_is_called_when_off(monkeypatch):
    """Off means skipped: the profiler's entry points are never reached outside a ``profile()`` block."""
    calls = []

    def spy(name):
        def f(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"profiler entry point {name} called while profiling is off")
        return f

    assert autograd.get_observer() is None
    for name in ("call_forward", "call_backward", "call_backward_pass"):
        monkeypatch.setattr(Profile, name, spy(name))
    monkeypatch.setattr(Profile, "_frame", spy("_frame"))
    _small_graph()
    with tc.profiler.record("not profiling"):  # a shared no-op context
        _small_graph()
    assert calls == []
    assert tc.profiler.record("a") is tc.profiler.record("b")


def test_deactivated_after_exit_even_on_error_and_nesting_restores():
    with pytest.raises(KeyError):
        with tc.profile():
            raise KeyError("boom")
    assert autograd.get_observer() is None
    with tc.profile() as outer:
        with tc.profile() as inner:
            assert autograd.get_observer() is inner
        assert autograd.get_observer() is outer
        _small_graph()
    assert autograd.get_observer() is None
    assert _counts(inner) == {} and _counts(outer)[("Mul", "forward")] == 1


def test_module_that_raises_does_not_leave_profiler_broken():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.ReLU(), Boom())
    x = tc.tensor(np.ones(3, dtype=np.float32))
    with tc.profile(model) as prof:
        with pytest.raises(RuntimeError):
            model(x)
        _small_graph()  # still recorded (in the scope left open by the failed forward)
    assert _counts(prof)[("Mul", "forward")] == 1
    assert autograd.get_observer() is None


@pytest.mark.skipif(not tc.kernels.choose.jit_enabled(), reason="numba compiles nothing with NUMBA_DISABLE_JIT=1")
def test_a_numba_compilation_is_its_own_row_and_not_the_ops_time():
    """A kernel compiled inside an op (a cold numba cache's first call) is a ``compile`` row named by the kernel,
    taken out of that op's self time; the next call compiles nothing and adds no row."""
    from numba import njit

    @njit(cache=False)  # a new kernel: compiled by its first call, whatever numba's cache holds
    def _triple_kernel(x, out):
        for i in range(x.shape[0]):
            out[i] = 3.0 * x[i]

    class Triple(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = np.empty_like(x)
            _triple_kernel(x.reshape(-1), out.reshape(-1))
            return out

        @staticmethod
        def backward(ctx, grad):
            return (3.0 * grad,)

    x = tc.tensor(np.arange(4, dtype=np.float64))
    with tc.profile() as prof:
        y = Triple.apply(x)
    np.testing.assert_array_equal(y.numpy(), 3.0 * np.arange(4))
    [compiled] = [e for e in prof.events() if e["kind"] == "compile"]
    [op] = [e for e in prof.events() if e["kind"] == "op"]
    assert compiled["name"] == "_triple_kernel" and compiled["phase"] == "compile" and compiled["count"] == 1
    assert compiled["self_s"] > 0.01  # compiling takes tens of milliseconds at least; running it microseconds
    assert op["self_s"] < compiled["self_s"] and op["total_s"] >= compiled["total_s"]
    summary = prof.summary()
    assert summary["compile_s"] == pytest.approx(compiled["self_s"])
    assert summary["overhead_s"] < compiled["self_s"]  # not counted as the profiler's or the engine's own time
    table = prof.table()
    assert "numba compiling kernels" in table and "_triple_kernel" in table
    with tc.profile() as again:
        Triple.apply(x)
    assert not [e for e in again.events() if e["kind"] == "compile"]
    assert again.summary()["compile_s"] == 0 and "numba compiling" not in again.table()
