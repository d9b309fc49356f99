"""Compiling a training step's kernels ahead (tinyconv.kernels.precompile, Trainer(precompile=True)): the dry run
records the kernels without running them or touching the real run, the split keeps every call, and on a cold
numba cache a helper process compiles its share into the cache, from which this process loads it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import nn
from tinyconv.data import DataLoader
from tinyconv.kernels import activations, choose, precompile
from tinyconv.train import Trainer

pytestmark = pytest.mark.skipif(not choose.jit_enabled(), reason="records numba dispatchers: needs the JIT")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trainer(model, precompile_=False, n=64, batch=32):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, n)
    opt = tc.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model, opt, DataLoader((x, y), batch_size=batch, shuffle=True, seed=0),
                   DataLoader((x[:32], y[:32]), batch_size=32), epochs=1, progress=False, out=open(os.devnull, "w"),
                   handle_sigint=False, precompile=precompile_)


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))


def _small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3))


def test_record_notes_the_kernels_and_computes_nothing():
    x = np.full((4, 5), -1.0, np.float32)
    y = np.full_like(x, 7.0)
    before = activations._relu_fwd

    def step():
        activations._relu_fwd(x, y)  # would write max(x, 0) = 0 into y

    calls = precompile.record(step)
    assert activations._relu_fwd is before  # put back
    assert [(c.module, c.name) for c in calls] == [("tinyconv.kernels.activations", "_relu_fwd")]
    assert len(calls[0].signature) == 2 and str(calls[0].signature[0]) == "array(float32, 2d, C)"
    assert (y == 7.0).all()  # nothing ran


def test_record_puts_the_kernels_back_when_the_dry_run_fails():
    before = activations._relu_fwd

    def boom():
        raise ValueError("dry run failed")

    with pytest.raises(ValueError, match="dry run failed"):
        precompile.record(boom)
    assert activations._relu_fwd is before


def _dispatchers_in_tables():
    """(module, name) of module-level dicts, lists and tuples in tinyconv that hold numba dispatchers."""
    from numba.core.dispatcher import Dispatcher

    def holds(value, depth=0):
        if isinstance(value, Dispatcher):
            return True
        if depth < 2 and isinstance(value, dict):
            return any(holds(v, depth + 1) for v in (*value.keys(), *value.values()))
        if depth < 2 and isinstance(value, (list, tuple, set, frozenset)):
            return any(holds(v, depth + 1) for v in value)
        return False

    return [(name, attr) for name, mod in list(sys.modules.items()) if name.startswith("tinyconv") and mod
            for attr, value in list(vars(mod).items()) if not isinstance(value, Dispatcher) and holds(value)]


def test_no_kernel_is_kept_where_the_recorder_cannot_reach_it():
    """record() swaps the dispatchers bound to module names; one kept in a table built at import would run for real
    in the dry run, and compile against the recorders that stand in for its helpers (a TypingError)."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(tc.__path__, "tinyconv."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    assert _dispatchers_in_tables() == []


@pytest.mark.parametrize("tiles, vectors", [("avx2", 1), ("avx512", 2), ("avx512", 3)])
def test_record_reaches_each_batch_last_tile_kernel(tiles, vectors):
    from tinyconv.kernels import shapes
    from tinyconv.kernels.numba_jit.fast import blocked_batch_last

    x, w = np.ones((4, 3, 6, 6), np.float32), np.ones((8, 3, 3, 3), np.float32)
    args = shapes.normalize_conv_args(x.shape, w.shape, 1, 1)
    y = np.full((4, 8, 6, 6), 7.0, np.float32)
    calls = precompile.record(
        lambda: blocked_batch_last.forward(x, w, np.zeros(8, np.float32), args, y, tiles, vectors))
    kernel = {1: "_forward_rows_6x1", 2: "_forward_rows_8x2", 3: "_forward_rows_8x3"}[vectors]
    assert kernel in {c.name for c in calls}
    assert (y == 7.0).all()  # recorded, not run


def test_compile_ahead_changes_nothing_in_the_run():
    """Same weights, optimizer state, random state and history with and without the dry run."""
    tc.manual_seed(0)
    plain = _trainer(_mlp())
    tc.manual_seed(0)
    ahead = _trainer(_mlp(), precompile_=True)
    weights = {k: v.numpy().copy() for k, v in ahead.model.state_dict().items()}
    rng = tc.random.get_rng_state()
    report = ahead.compile_ahead()
    assert report is not None and report.helper_error is None
    for k, v in ahead.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), weights[k])
    assert ahead.optimizer.state_dict()["state"] == {}
    np.testing.assert_array_equal(np.asarray(tc.random.get_rng_state()), np.asarray(rng))
    h_plain, h_ahead = plain.fit(), ahead.fit()
    assert [r["train_loss"] for r in h_plain] == [r["train_loss"] for r in h_ahead]
    assert [r["test_loss"] for r in h_plain] == [r["test_loss"] for r in h_ahead]


def test_a_warm_process_starts_no_helper():
    trainer = _trainer(_mlp())
    trainer.fit()  # everything compiled (or loaded) in this process
    report = _trainer(_mlp()).compile_ahead()
    assert report.here == 0 and report.helper == 0


def test_a_lenet_step_records_its_conv_and_pool_kernels():
    calls = []
    trainer = _trainer(_small_cnn())
    original = precompile.compile_ahead
    try:
        precompile.compile_ahead = lambda c, processes=None: calls.extend(c)
        trainer.compile_ahead()
    finally:
        precompile.compile_ahead = original
    modules = {c.module.rsplit(".", 1)[-1] for c in calls}
    assert "numba_pooling" in modules and "adam" in modules
    assert len(calls) == len(set(calls))


def test_the_dry_run_takes_every_batch_size_an_epoch_makes(monkeypatch):
    """A smaller last batch may take other kernels (batch-last loops below 32 images), so the dry run runs the
    training step and the evaluation at each batch size the loaders make (here: train 32 and 8, test 32)."""
    seen = []
    model = _small_cnn()
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, args[0].shape[0])))
    monkeypatch.setattr(precompile, "compile_ahead", lambda calls, processes=None: None)
    _trainer(model, n=40, batch=32).compile_ahead()
    assert sorted(seen) == [(False, 32), (True, 8), (True, 32)]


@given(names=st.lists(st.sampled_from(["_relu_fwd", "_relu_bwd", "_adam"]), min_size=0, max_size=12))
def test_by_cost_orders_every_call_costliest_first(names):
    calls = [precompile.KernelCall(("tinyconv.kernels.adam" if n == "_adam" else "tinyconv.kernels.activations"), n,
                                   (i,)) for i, n in enumerate(names)]
    ordered = precompile.by_cost(calls)
    assert sorted(c.signature for c in ordered) == sorted(c.signature for c in calls)
    costs = [precompile._cost(c) for c in ordered]
    assert costs == sorted(costs, reverse=True)


def test_each_call_is_claimed_by_one_process_only(tmp_path):
    """Two walks over the same list with the same claims folder compile disjoint sets that cover the list; a call
    claimed elsewhere first (here: file 1) is left to its claimer."""
    activations._relu_fwd(np.zeros(4, np.float32), np.zeros(4, np.float32))  # compiled: compile() is a lookup
    sig = next(iter(activations._relu_fwd.overloads))
    calls = [precompile.KernelCall("tinyconv.kernels.activations", "_relu_fwd", sig)] * 4
    (tmp_path / "1").touch()
    first = precompile.claim_and_compile(calls, str(tmp_path))
    second = precompile.claim_and_compile(calls, str(tmp_path))
    assert len(first) == 3 and second == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2", "3"]


def test_a_cold_cache_is_compiled_in_two_processes(tmp_path):
    """In a fresh process with an empty numba cache: the helper compiles its share (the cache then holds it) and
    the training that follows loads the helper's kernels from the cache instead of compiling them."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
        import tinyconv as tc
        from test_precompile import _small_cnn, _trainer
        tc.manual_seed(0)
        trainer = _trainer(_small_cnn(), precompile_=True)
        history = trainer.fit()
        r = trainer.precompile_report
        hits = {{}}
        for call in r.helper_calls:
            d = call.dispatcher()
            hits[call.name] = d.stats.cache_hits.get(call.signature, 0)
        print(json.dumps(dict(here=r.here, helper=r.helper, error=r.helper_error, hits=hits,
                              loss=history[0]["train_loss"])))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["error"] is None and out["here"] >= 1 and out["helper"] >= 1
    assert out["hits"] and all(n >= 1 for n in out["hits"].values()), out  # loaded, not compiled, here
    assert any((tmp_path / "cache").rglob("*.nbi"))
