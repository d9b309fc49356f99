"""The ``tune`` kernel (tinyconv.kernels.tune): it runs the backend it timed fastest for each operation and shape,
measures each once per process, measures nothing in a precompile dry run or without the JIT, computes what the
other kernels compute, and is selectable by name wherever a conv kernel is."""
from __future__ import annotations

import time

import numpy as np
import pytest

import tinyconv as tc
import tinyconv.kernels as K
import tinyconv.nn.functional as F
from tinyconv.kernels import auto, choose, precompile, shapes, tune

X_SHAPE, W_SHAPE = (4, 3, 9, 9), (5, 3, 3, 3)
# without the JIT tune is auto and measures nothing (test_tune_without_the_jit_is_auto)
jit_only = pytest.mark.skipif(not K.jit_enabled(), reason="without the JIT tune measures nothing")
ARGS = shapes.normalize_conv_args(X_SHAPE, W_SHAPE, 1, 1, 1, 1)


@pytest.fixture(autouse=True)
def fresh_picks():
    tune.clear()
    yield
    tune.clear()


def _slow(monkeypatch, name, op, seconds=0.02):
    """Make backend ``name``'s ``op`` sleep first, so that it is clearly the slower one."""
    be = auto.BACKENDS[name]
    real = getattr(be, op)

    def slowed(*a, **kw):
        time.sleep(seconds)
        return real(*a, **kw)

    monkeypatch.setattr(be, op, slowed)


@jit_only
@pytest.mark.parametrize("op", choose.CONV_OPS)
@pytest.mark.parametrize("slow, fast", [("im2col", "numba"), ("numba", "im2col")])
def test_tune_runs_the_backend_it_timed_faster(monkeypatch, op, slow, fast):
    _slow(monkeypatch, slow, op)
    assert tune.backend.choose(op, X_SHAPE, W_SHAPE, ARGS, np.float32).name == fast
    [pick] = tune.picks()
    assert pick["op"] == op and pick["kernel"] == fast and pick["dtype"] == "<f4"
    assert set(pick["seconds"]) == {"numba", "im2col"}
    assert pick["seconds"][slow] >= 0.02 > pick["seconds"][fast]


@jit_only
def test_tune_measures_each_shape_once(monkeypatch):
    calls = []
    real = tune.measure
    monkeypatch.setattr(tune, "measure", lambda *a, **kw: calls.append(a[:4]) or real(*a, **kw))
    for _ in range(3):
        tune.backend.choose("forward", X_SHAPE, W_SHAPE, ARGS, np.float32)
    assert len(calls) == 1
    tune.backend.choose("forward", X_SHAPE, W_SHAPE, ARGS, np.float64)  # another dtype is another key
    other = (8,) + X_SHAPE[1:]
    tune.backend.choose("forward", other, W_SHAPE, shapes.normalize_conv_args(other, W_SHAPE, 1, 1, 1, 1))
    assert len(calls) == 3 and len(tune.picks()) == 3


def test_tune_leaves_out_a_backend_that_fails(monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("cannot")

    monkeypatch.setattr(auto.BACKENDS["numba"], "grad_weight", broken)
    times = tune.measure("grad_weight", X_SHAPE, W_SHAPE, ARGS)
    assert list(times) == ["im2col"]
    assert tune.backend.choose("grad_weight", X_SHAPE, W_SHAPE, ARGS).name == "im2col"


@jit_only
def test_tune_measures_nothing_in_a_dry_run():
    """precompile.record: the kernels compute nothing, so tune gives auto's choice, keeps nothing, and lets both
    candidates' kernels be recorded (a cold start compiles what the measurements will run)."""
    x = tc.randn(*X_SHAPE, requires_grad=True)
    w = tc.randn(*W_SHAPE, requires_grad=True)

    def step():
        F.conv2d(x, w, padding=1, kernel="tune").sum().backward()

    calls = precompile.record(step)
    assert tune.picks() == []
    modules = {c.module for c in calls}
    assert any(".fast." in m for m in modules)  # the numba backend's loops
    assert any(m.endswith("columns") for m in modules)  # im2col's column copies
    assert not precompile.recording()


def test_tune_without_the_jit_is_auto(monkeypatch):
    monkeypatch.setattr(choose, "jit_enabled", lambda: False)
    monkeypatch.setattr(tune, "measure", lambda *a, **kw: pytest.fail("measured without the JIT"))
    assert tune.backend.choose("forward", X_SHAPE, W_SHAPE, ARGS).name == "im2col"


@jit_only
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float64, 1e-10)])
def test_tune_computes_what_direct_computes(dtype, tol):
    """Through autograd, float32 and float64: the output and both gradients agree with the reference loops
    (relative to the largest value)."""
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((5, 6, 11, 10)).astype(dtype)
    ws = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    out = {}
    for kernel in ("tune", "direct"):
        x, w = tc.tensor(xs, requires_grad=True), tc.tensor(ws, requires_grad=True)
        y = F.conv2d(x, w, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2, kernel=kernel)
        (y * y).sum().backward()
        out[kernel] = (y.numpy(), x.grad.numpy(), w.grad.numpy())
    for a, b in zip(out["tune"], out["direct"]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())
    assert len(tune.picks()) == 3  # forward, grad_input, grad_weight of one shape


def test_tune_is_a_conv_kernel_name(monkeypatch):
    assert K.get_kernel("tune") is tune.backend and K.resolve_backend("TUNE") is tune.backend
    with K.use_kernel("tune"):
        assert K.get_default_kernel() == "tune"
        assert K.choose_kernel(X_SHAPE, W_SHAPE, padding=1) in ("numba", "im2col")
    assert "tune" not in K.available()  # not a backend of its own: it picks one
    with pytest.raises(ValueError, match=r"valid kernels: 'direct', .* \(or 'auto', 'tune'\)"):
        K.get_kernel("tuned")
    with pytest.raises(ValueError, match=r"unknown pool kernel 'tune'; valid pool kernels: .* \(or 'auto'\)"):
        K.use_pool_kernel("tune").__enter__()

    class Named(K.Backend):
        name = "tune"

    with pytest.raises(ValueError, match="other than 'auto', 'tune'"):
        K.register(Named())


@jit_only
def test_tune_runs_transposed_convolutions():
    """A transposed convolution's forward is a grad_input (with output_padding here), its input's gradient a
    forward: tune times and runs those, and the results are the reference loops'."""
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((4, 6, 5, 7))
    ws = rng.standard_normal((6, 3, 3, 3))
    out = {}
    for kernel in ("tune", "direct"):
        x, w = tc.tensor(xs, requires_grad=True), tc.tensor(ws, requires_grad=True)
        y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=(1, 0), dilation=2, kernel=kernel)
        (y * y).sum().backward()
        out[kernel] = (y.numpy(), x.grad.numpy(), w.grad.numpy())
    for a, b in zip(out["tune"], out["direct"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max())
    assert sorted(p["op"] for p in tune.picks()) == ["forward", "grad_input", "grad_weight"]
