"""Convolution and pooling kernels against each other and against PyTorch's CPU implementation.

    python benchmarks/bench_conv.py                      # all configurations, pooling, numba compile times
    python benchmarks/bench_conv.py --configs lenet --repeats 7 --json conv.json --csv conv.csv
    python benchmarks/bench_conv.py --sweep --plot sweep.png
    python benchmarks/bench_conv.py --quick              # tiny sizes (the smoke test)

Each kernel is called directly on float32 NumPy arrays (``conv2d_forward``, ``conv2d_grad_input`` +
``conv2d_grad_weight``), and PyTorch through the matching ATen ops (``convolution``, ``convolution_backward``)
so neither side pays for its autograd; see benchmarks/README.md for what each column means.

tinyconv's kernels are timed against each other in this one process (their samples interleaved). PyTorch's
columns come from separate worker processes (this script with ``--torch-worker`` under PyTorch's interpreter,
``--torch-python`` / ``$TINYCONV_BENCH_TORCH_PYTHON``; one before and one after tinyconv's timings), which
import neither tinyconv nor numba; this process never imports torch. The worker's small-batch outputs come back
to be checked against tinyconv's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (also puts the repository root on sys.path)

DEFAULT_KERNELS = "direct,im2col,numba,auto,tune"

# name, N, C_in, H=W, C_out, k, stride, padding, groups
CONFIGS = [
    ("lenet.conv1", 128, 1, 28, 6, 5, 1, 2, 1),
    ("lenet.conv2", 128, 6, 14, 16, 5, 1, 0, 1),
    ("c64.32px.3x3", 32, 64, 32, 64, 3, 1, 1, 1),
    ("c32-64.64px.3x3.s2", 32, 32, 64, 64, 3, 2, 1, 1),
    ("c3-64.224px.7x7.s2", 8, 3, 224, 64, 7, 2, 3, 1),
    ("depthwise.c64.32px", 32, 64, 32, 64, 3, 1, 1, 64),
]
# the convolutions of tinyconv.nn.models.ResNet() (defaults, batch 128; no bias there, with bias here)
RESNET_CONFIGS = [
    ("resnet.conv1", 128, 1, 28, 16, 3, 1, 1, 1),
    ("resnet.layer1.3x3", 128, 16, 14, 16, 3, 1, 1, 1),
    ("resnet.layer2.3x3.s2", 128, 16, 14, 32, 3, 2, 1, 1),
    ("resnet.layer2.3x3", 128, 32, 7, 32, 3, 1, 1, 1),
    ("resnet.layer2.1x1.s2", 128, 16, 14, 32, 1, 2, 0, 1),
    ("resnet.layer3.3x3.s2", 128, 32, 7, 64, 3, 2, 1, 1),
    ("resnet.layer3.3x3", 128, 64, 4, 64, 3, 1, 1, 1),
    ("resnet.layer3.1x1.s2", 128, 32, 7, 64, 1, 2, 0, 1),
]
CONFIG_SETS = {"lenet": CONFIGS[:2], "shapes": CONFIGS, "resnet": RESNET_CONFIGS,
               "all": CONFIGS + RESNET_CONFIGS}
QUICK_CONFIGS = [
    ("lenet.conv1", 4, 1, 12, 3, 5, 1, 2, 1),
    ("lenet.conv2", 4, 3, 8, 4, 3, 1, 0, 1),
]
# name, N, C, H=W (2x2 pooling, stride 2)
POOL_CONFIGS = [("lenet.pool1", 128, 6, 28), ("lenet.pool2", 128, 16, 10)]
QUICK_POOL_CONFIGS = [("lenet.pool1", 4, 3, 8)]


def load_kernels(names):
    """{name: backend} for the backends that exist (a missing one is reported and skipped), called through their
    checked doors. "auto" is the library's default: a backend that picks another per operation and shape."""
    from tinyconv import kernels as registry

    out, missing = {}, {}
    for name in names:
        try:
            out[name] = registry.get_kernel(name)
        except Exception as e:
            missing[name] = f"{type(e).__name__}: {e}"
    return out, missing


def conv_flops(n, c_in, h, c_out, k, s, p, g):
    ho = (h + 2 * p - k) // s + 1
    return 2.0 * n * c_out * (c_in // g) * k * k * ho * ho, ho


def make_inputs(n, c_in, h, c_out, k, s, p, g, seed=0):
    rng = np.random.default_rng(seed)
    ho = (h + 2 * p - k) // s + 1
    x = rng.standard_normal((n, c_in, h, h), dtype=np.float32)
    w = rng.standard_normal((c_out, c_in // g, k, k), dtype=np.float32) * np.float32(0.1)
    gy = rng.standard_normal((n, c_out, ho, ho), dtype=np.float32)
    return x, w, gy


# ------------------------------------------------------------------------------------------ conv phases
def kernel_phases(mod, x, w, gy, k, s, p, g, with_wgrad_only=False):
    h = x.shape[2]

    def fwd():
        return mod.conv2d_forward(x, w, s, p, 1, g)

    def bwd():
        return (mod.conv2d_grad_input(gy, w, (h, h), s, p, 1, g), mod.conv2d_grad_weight(x, gy, (k, k), s, p, 1, g))

    def fwd_bwd():
        return fwd(), bwd()

    phases = {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd_bwd}
    if with_wgrad_only:
        phases["fwd+wgrad"] = lambda: (fwd(), mod.conv2d_grad_weight(x, gy, (k, k), s, p, 1, g))
    return phases


def torch_phases(torch, x, w, gy, k, s, p, g, with_wgrad_only=False):
    tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
    conv_bwd = torch.ops.aten.convolution_backward

    def fwd():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, None, s, p, 1, g)

    def back(mask):
        return conv_bwd(tgy, tx, tw, None, [s, s], [p, p], [1, 1], False, [0, 0], g, mask)

    phases = {"fwd": fwd, "bwd": lambda: back([True, True, False]),
              "fwd+bwd": lambda: (fwd(), back([True, True, False]))}
    if with_wgrad_only:
        phases["fwd+wgrad"] = lambda: (fwd(), back([False, True, False]))
    return phases


def check_agree(results: dict, tol=2e-3):
    """The kernels' outputs agree (relative max error), so the timings compare the same computation."""
    names = list(results)
    ref = results[names[0]]
    bad = []
    for n in names[1:]:
        for a, b in zip(_flat(ref), _flat(results[n])):
            err = float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))
            if err > tol:
                bad.append(f"{n} vs {names[0]}: rel. error {err:.2e}")
    return bad


def _flat(r):
    if isinstance(r, (tuple, list)):
        out = []
        for v in r:
            out.extend(_flat(v))
        return out
    if r is None:  # torch's convolution_backward: the bias gradient it was not asked for
        return []
    return [r.numpy() if hasattr(r, "numpy") and not isinstance(r, np.ndarray) else np.asarray(r)]


def warm_ups(jobs: int, quick: bool) -> list:
    """Untimed warm-up seconds before each round-robin sample (see common.time_interleaved): 0.12 s of the sampled
    job's own calls before every sample, alike for every implementation. Why: after a multi-threaded OpenBLAS
    product (im2col, auto where it picks im2col) OpenBLAS's threads spin for ~0.1 s and take cores from the next
    sample, and a sample that follows other loops starts cold (BLAS threads, scratch buffers, caches). Warming only
    the samples next to BLAS ones favoured some columns over others running the same code: auto's numba phases
    came warm and numba's own did not, or auto's im2col phase cold after its own numba phase."""
    return [0.0 if quick else 0.12] * jobs


def bench_convs(configs, kernels, torch, repeats, direct_div, quick, notes, checks=None):
    """Time every kernel (and torch, in a torch worker) on every config; ``checks`` collects each config's
    small-batch outputs, to compare across processes."""
    checks = {} if checks is None else checks
    rows, meta = [], []
    for (name, n, c_in, h, c_out, k, s, p, g) in configs:
        flops_full, ho = conv_flops(n, c_in, h, c_out, k, s, p, g)
        wgrad_only = name == "lenet.conv1"
        col_mb = n * ho * ho * (c_in // g) * k * k * 4 / 1e6 * (g if g > 1 else 1)
        meta.append(dict(config=name, N=n, C_in=c_in, H=h, C_out=c_out, k=k, stride=s, padding=p, groups=g,
                         H_out=ho, gflop_fwd=flops_full / 1e9, im2col_buffer_mb=col_mb))
        impls = {}
        for kname, mod in kernels.items():
            nb = max(1, n // direct_div) if kname == "direct" else n
            impls[kname] = (nb, mod)
        if torch is not None:
            impls["torch"] = (n, None)
        # correctness cross-check on a small batch
        xs, ws, gys = make_inputs(min(n, 2), c_in, h, c_out, k, s, p, g)
        outs = {}
        for kname, (_nb, mod) in impls.items():
            ph = (torch_phases(torch, xs, ws, gys, k, s, p, g) if mod is None
                  else kernel_phases(mod, xs, ws, gys, k, s, p, g))
            outs[kname] = ph["fwd+bwd"]()
        notes.extend(f"{name}: {b}" for b in check_agree(outs))
        checks[name] = outs
        inputs_cache = {}
        jobs = []  # (kernel, batch, phase, fn), timed round-robin below
        for kname, (nb, mod) in impls.items():
            if nb not in inputs_cache:
                inputs_cache[nb] = make_inputs(nb, c_in, h, c_out, k, s, p, g)
            x, w, gy = inputs_cache[nb]
            ph = (torch_phases(torch, x, w, gy, k, s, p, g, wgrad_only) if mod is None
                  else kernel_phases(mod, x, w, gy, k, s, p, g, wgrad_only))
            jobs.extend((kname, nb, phase, fn) for phase, fn in ph.items())
        timings = common.time_interleaved([j[3] for j in jobs], repeats=repeats, warmup=1,
                                          min_sample_s=0.0 if quick else 0.005, max_inner=8,
                                          settle_s=warm_ups(len(jobs), quick))
        picks = {kname: conv_picks(kname, n, c_in, h, c_out, k, s, p, g) for kname in kernels
                 if kname in ("auto", "tune")}
        for (kname, nb, phase, _), t in zip(jobs, timings):
            scale = n / nb
            mult = {"fwd": 1, "bwd": 2, "fwd+bwd": 3, "fwd+wgrad": 2}[phase]
            rows.append(dict(config=name, kernel=kname, batch=nb, phase=phase, picks=picks.get(kname),
                             ms=t["median_s"] * 1e3, min_ms=t["min_s"] * 1e3, max_ms=t["max_s"] * 1e3,
                             ms_full=t["median_s"] * 1e3 * scale,
                             gflops=mult * flops_full / scale / t["median_s"] / 1e9,
                             repeats=t["repeats"], inner=t["inner"]))
    add_ratios(rows)
    return rows, meta


def conv_picks(kname, n, c_in, h, c_out, k, s, p, g) -> str:
    """What chooser ``kname`` ("auto", "tune") runs for forward / grad_input / grad_weight of this config (tune:
    what it measured, when the timed runs met it first), e.g. "numba/numba/im2col"."""
    from tinyconv import kernels as registry

    x_shape, w_shape = (n, c_in, h, h), (c_out, c_in // g, k, k)
    return "/".join(registry.choose_kernel(x_shape, w_shape, s, p, 1, g, op=op, kernel=kname)
                    for op in ("forward", "grad_input", "grad_weight"))


def add_ratios(rows, key="ms_full", group=("config", "phase")):
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in group), []).append(r)
    for rs in groups.values():
        best = min(r[key] for r in rs)
        torch_t = next((r[key] for r in rs if r["kernel"] == "torch"), None)
        for r in rs:
            r["x_fastest"] = r[key] / best
            r["x_torch"] = r[key] / torch_t if torch_t else None


def measure_conv_memory(configs, kernels, torch, direct_div, rows):
    """Second pass (after all timings): peak extra memory of one call per (config, kernel, phase)."""
    common.prepare_memory_measurement()
    index = {(r["config"], r["kernel"], r["phase"]): r for r in rows}
    for (name, n, c_in, h, c_out, k, s, p, g) in configs:
        for kname in list(kernels) + (["torch"] if torch is not None else []):
            mod = kernels.get(kname)
            nb = max(1, n // direct_div) if kname == "direct" else n
            x, w, gy = make_inputs(nb, c_in, h, c_out, k, s, p, g)
            ph = (torch_phases(torch, x, w, gy, k, s, p, g, True) if mod is None
                  else kernel_phases(mod, x, w, gy, k, s, p, g, True))
            for phase, fn in ph.items():
                r = index.get((name, kname, phase))
                if r is None:
                    continue
                fn()  # warm (numba compile, torch's first-call setup)
                m = common.peak_memory(fn)
                r["traced_mb"], r["rss_mb"] = m["traced_mb"], m["rss_mb"]
                out_mb = {"fwd": gy.nbytes, "bwd": x.nbytes + w.nbytes, "fwd+bwd": gy.nbytes + x.nbytes + w.nbytes,
                          "fwd+wgrad": gy.nbytes + w.nbytes}[phase] / 1e6
                r["outputs_mb"] = out_mb
                peak = m["rss_mb"] if kname == "torch" else m["traced_mb"]
                r["peak_mb"] = peak
                r["scratch_mb"] = None if peak is None else max(0.0, peak - out_mb)


# ------------------------------------------------------------------------------------- through autograd
def layer_level(configs, kernel_names, torch, repeats, quick, notes):
    """The two LeNet convolutions as a training step sees them: ``tinyconv.functional.conv2d`` with bias through the
    autograd engine vs PyTorch autograd. conv1: the input needs no gradient (forward + weight/bias grads only,
    torch input with requires_grad=False); conv2: forward + all grads. Also the memory an im2col layer keeps
    alive between forward and backward (it should be none beyond x and w: no column buffer)."""
    if kernel_names:
        try:
            import tinyconv as tc
            from tinyconv import functional as tconv
        except Exception as e:
            notes.append(f"layer-level rows skipped: {type(e).__name__}: {e}")
            return []
    rows, jobs = [], []
    for (name, n, c_in, h, c_out, k, s, p, g) in [c for c in configs if c[0].startswith("lenet.")]:
        x, w, gy = make_inputs(n, c_in, h, c_out, k, s, p, g)
        b = np.zeros(c_out, dtype=np.float32)
        need_x = name != "lenet.conv1"
        phase = "fwd+bwd" if need_x else "fwd+wgrad"
        flops, _ = conv_flops(n, c_in, h, c_out, k, s, p, g)
        for kname in kernel_names:
            xt = tc.tensor(x, requires_grad=need_x)
            wt, bt = tc.tensor(w, requires_grad=True), tc.tensor(b, requires_grad=True)

            def step(xt=xt, wt=wt, bt=bt, kname=kname, gy=gy, s=s, p=p, g=g):
                y = tconv.conv2d(xt, wt, bt, stride=s, padding=p, groups=g, kernel=kname)
                y.backward(gy)
                xt.grad = wt.grad = bt.grad = None
            jobs.append((name, kname, phase, flops * (3 if need_x else 2), step))
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_(need_x)
            tw, tb = torch.from_numpy(w.copy()).requires_grad_(), torch.from_numpy(b.copy()).requires_grad_()
            tgy = torch.from_numpy(gy)

            def tstep(tx=tx, tw=tw, tb=tb, tgy=tgy, s=s, p=p, g=g):
                y = torch.nn.functional.conv2d(tx, tw, tb, s, p, 1, g)
                y.backward(tgy)
                tx.grad = tw.grad = tb.grad = None
            jobs.append((name, "torch", phase, flops * (3 if need_x else 2), tstep))
    timings = common.time_interleaved([j[4] for j in jobs], repeats=repeats, warmup=1,
                                      min_sample_s=0.0 if quick else 0.005, max_inner=8,
                                      settle_s=warm_ups(len(jobs), quick))
    for (name, kname, phase, flops, _), t in zip(jobs, timings):
        rows.append(dict(config=f"{name} (autograd, bias)", kernel=kname, batch=None, phase=phase,
                         ms=t["median_s"] * 1e3, min_ms=t["min_s"] * 1e3, max_ms=t["max_s"] * 1e3,
                         ms_full=t["median_s"] * 1e3, gflops=flops / t["median_s"] / 1e9, repeats=t["repeats"],
                         inner=t["inner"]))
    add_ratios(rows)
    return rows


def im2col_retention(configs, notes) -> list[dict]:
    """For each LeNet conv layer with kernel='im2col': bytes allocated by the forward and still alive until
    backward (beyond the output), the forward's and the backward's peaks, and the dtype of every result."""
    try:
        import tracemalloc

        import tinyconv as tc
        from tinyconv import functional as tconv
    except Exception:
        return []
    out = []
    for (name, n, c_in, h, c_out, k, s, p, g) in [c for c in configs if c[0].startswith("lenet.")]:
        x, w, gy = make_inputs(n, c_in, h, c_out, k, s, p, g)
        xt = tc.tensor(x, requires_grad=name != "lenet.conv1")
        wt = tc.tensor(w, requires_grad=True)
        tconv.conv2d(xt, wt, stride=s, padding=p, groups=g, kernel="im2col").backward(gy)  # warm
        xt.grad = wt.grad = None
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        y = tconv.conv2d(xt, wt, stride=s, padding=p, groups=g, kernel="im2col")
        after_fwd, fwd_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        y.backward(gy)
        _, bwd_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        dtypes = {str(y.dtype), str(wt.grad.dtype)} | ({str(xt.grad.dtype)} if xt.grad is not None else set())
        _, ho = conv_flops(n, c_in, h, c_out, k, s, p, g)
        col = n * ho * ho * c_in * k * k * 4 / 1e6
        retained = (after_fwd - base - y.numpy().nbytes) / 1e6
        out.append(dict(config=name, column_buffer_mb=col, retained_after_fwd_mb=retained,
                        fwd_peak_mb=(fwd_peak - base) / 1e6, bwd_peak_mb=(bwd_peak - after_fwd) / 1e6,
                        bwd_peak_in_buffers=(bwd_peak - after_fwd) / 1e6 / col, dtypes=",".join(sorted(dtypes))))
        if dtypes != {"float32"}:
            notes.append(f"im2col {name}: results are {dtypes}, expected float32")
    return out


# ------------------------------------------------------------------------------------------------ pooling
def pooling_impls(torch):
    """{name: factory(x, gy, op) -> {phase: fn}} for numpy (kernels.pooling), numba (kernels.numba_pooling), torch,
    through the backends' checked pooling doors (only torch in a torch worker: no tinyconv import there)."""
    impls = {}
    if not common.in_torch_worker():
        from tinyconv import kernels as registry

        for name in ("numpy", "numba"):
            mod = registry.get_pool_kernel(name)
            impls[name] = lambda x, gy, op, mod=mod: _kernel_pool_phases(mod, x, gy, op)
    if torch is not None:
        impls["torch"] = lambda x, gy, op: _torch_pool_phases(torch, x, gy, op)
    return impls


def _kernel_pool_phases(mod, x, gy, op):
    """Pooling kernel contract (tinyconv/kernels/pooling.py): 2x2 windows, stride 2.

    max: ``y, argmax = max_pool2d_forward(x, kernel, stride)``, ``max_pool2d_backward(grad_y, argmax, input_shape,
    non_overlapping=True)``; avg: ``avg_pool2d_forward(x, kernel, stride)``,
    ``avg_pool2d_backward(grad_y, input_shape, kernel, stride)``."""
    if op == "max":
        fwd_fn, bwd_fn = mod.max_pool2d_forward, mod.max_pool2d_backward
        state = {}

        def fwd():
            y, argmax = fwd_fn(x, 2, 2)
            state["argmax"] = argmax
            return y

        fwd()

        def bwd():
            return bwd_fn(gy, state["argmax"], x.shape, non_overlapping=True)
    else:
        fwd_fn, bwd_fn = mod.avg_pool2d_forward, mod.avg_pool2d_backward

        def fwd():
            return fwd_fn(x, 2, 2)

        def bwd():
            return bwd_fn(gy, x.shape, 2, 2)
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": lambda: (fwd(), bwd())}


def _torch_pool_phases(torch, x, gy, op):
    tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)
    aten = torch.ops.aten
    if op == "max":
        state = {}

        def fwd():
            with torch.no_grad():
                y, idx = aten.max_pool2d_with_indices(tx, [2, 2], [2, 2], [0, 0], [1, 1], False)
            state["idx"] = idx
            return y

        fwd()

        def bwd():
            return aten.max_pool2d_with_indices_backward(tgy, tx, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                         state["idx"])
    else:
        def fwd():
            with torch.no_grad():
                return aten.avg_pool2d(tx, [2, 2], [2, 2], [0, 0], False, True, None)

        def bwd():
            return aten.avg_pool2d_backward(tgy, tx, [2, 2], [2, 2], [0, 0], False, True, None)
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": lambda: (fwd(), bwd())}


def bench_pooling(configs, torch, repeats, quick, notes, checks=None):
    checks = {} if checks is None else checks
    impls = pooling_impls(torch)
    rows = []
    if not impls:
        notes.append("pooling: no pooling kernels found (tinyconv.kernels.pooling / numba_jit)")
        return rows
    for (name, n, c, h) in configs:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        gy = rng.standard_normal((n, c, h // 2, h // 2), dtype=np.float32)
        for op in ("max", "avg"):
            built = {}
            for iname, factory in impls.items():
                try:
                    built[iname] = factory(x, gy, op)
                except Exception as e:
                    notes.append(f"pooling {op} {iname}: {type(e).__name__}: {e}")
            outs = {k: ph["fwd+bwd"]() for k, ph in built.items()}
            notes.extend(f"{name} {op}: {b}" for b in check_agree(outs))
            checks[f"pool:{name}.{op}"] = outs
            jobs = [(iname, phase, fn) for iname, ph in built.items() for phase, fn in ph.items()]
            timings = common.time_interleaved([j[2] for j in jobs], repeats=repeats, warmup=1,
                                              min_sample_s=0.0 if quick else 0.01, max_inner=64)
            for (iname, phase, _), t in zip(jobs, timings):
                rows.append(dict(config=f"{name}.{op}", op=op, kernel=iname, batch=n, phase=phase,
                                 ms=t["median_s"] * 1e3, min_ms=t["min_s"] * 1e3, max_ms=t["max_s"] * 1e3,
                                 ms_full=t["median_s"] * 1e3,
                                 gbytes=(2 if phase == "fwd+bwd" else 1) * (x.nbytes + gy.nbytes) / t["median_s"] / 1e9,
                                 repeats=t["repeats"], inner=t["inner"]))
    add_ratios(rows)
    return rows


# ---------------------------------------------------------------------------------------- numba compile
_COMPILE_SNIPPET = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, {root!r})
from tinyconv.kernels import numba_jit
k = numba_jit.backend
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 1, 28, 28), dtype=np.float32)
w = rng.standard_normal((6, 1, 5, 5), dtype=np.float32)
gy = rng.standard_normal((8, 6, 28, 28), dtype=np.float32)
calls = [("conv2d_forward", lambda: k.conv2d_forward(x, w, 1, 2, 1, 1)),
         ("conv2d_grad_input", lambda: k.conv2d_grad_input(gy, w, (28, 28), 1, 2, 1, 1)),
         ("conv2d_grad_weight", lambda: k.conv2d_grad_weight(x, gy, (5, 5), 1, 2, 1, 1))]
out = {{"import_s": t_import}}
for name, fn in calls:
    t = time.perf_counter(); fn(); first = time.perf_counter() - t
    t = time.perf_counter(); fn(); second = time.perf_counter() - t
    out[name] = {{"first_s": first, "second_s": second}}
print("RESULT " + json.dumps(out))
"""


def numba_compile_times(threads: int, notes) -> dict | None:
    """First-call cost of the numba kernels: cold (empty cache dir), then from the on-disk cache, each in a fresh
    process (LeNet conv1 shapes, batch 8)."""
    code = _COMPILE_SNIPPET.format(root=common.REPO_ROOT)
    res = {}
    with tempfile.TemporaryDirectory(prefix="tinyconv-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS=str(threads))
        for label in ("cold (empty cache)", "warm disk cache (fresh process)"):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
            wall = time.perf_counter() - t
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if p.returncode or line is None:
                notes.append(f"numba compile timing ({label}) failed: {p.stderr.strip()[-400:]}")
                return None
            r = json.loads(line[7:])
            r["process_wall_s"] = wall
            res[label] = r
    return res


def compile_rows(res: dict) -> list[dict]:
    rows = []
    for label, r in res.items():
        for fn in ("conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight"):
            rows.append(dict(run=label, function=fn, first_ms=r[fn]["first_s"] * 1e3,
                             second_ms=r[fn]["second_s"] * 1e3))
        rows.append(dict(run=label, function="(import tinyconv.kernels.numba_jit)", first_ms=r["import_s"] * 1e3,
                         second_ms=None))
        rows.append(dict(run=label, function="(whole process)", first_ms=r["process_wall_s"] * 1e3,
                         second_ms=None))
    return rows


# -------------------------------------------------------------------------------------------------- sweep
def sweep(kernels, torch, repeats, quick, direct_div):
    base = dict(n=32, c=32, h=32)
    axes = {"batch": [1, 2, 4, 8, 16, 32, 64], "spatial": [8, 16, 32, 64], "channels": [4, 8, 16, 32, 64, 128]}
    if quick:
        base = dict(n=2, c=4, h=8)
        axes = {"batch": [1, 2], "spatial": [4, 8], "channels": [2, 4]}
    rows = []
    for axis, values in axes.items():
        for v in values:
            n, c, h = base["n"], base["c"], base["h"]
            if axis == "batch":
                n = v
            elif axis == "spatial":
                h = v
            else:
                c = v
            impls = dict(kernels)
            if torch is not None:
                impls["torch"] = None
            flops, _ = conv_flops(n, c, h, c, 3, 1, 1, 1)
            for kname, mod in impls.items():
                nb = max(1, n // direct_div) if kname == "direct" else n
                x, w, gy = make_inputs(nb, c, h, c, 3, 1, 1, 1)
                ph = (torch_phases(torch, x, w, gy, 3, 1, 1, 1) if mod is None
                      else kernel_phases(mod, x, w, gy, 3, 1, 1, 1))
                t = common.time_fn(ph["fwd+bwd"], repeats=repeats, warmup=1, min_sample_s=0.0 if quick else 0.005,
                                   max_inner=16)
                ms = t["median_s"] * 1e3 * n / nb
                rows.append(dict(axis=axis, value=v, N=n, C=c, H=h, kernel=kname, ms_full=ms,
                                 gflops=3 * flops / (ms / 1e3) / 1e9))
    return rows


def sweep_table(rows) -> str:
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    out = []
    for axis in dict.fromkeys(r["axis"] for r in rows):
        table = []
        for v in dict.fromkeys(r["value"] for r in rows if r["axis"] == axis):
            sel = {r["kernel"]: r for r in rows if r["axis"] == axis and r["value"] == v}
            any_r = next(iter(sel.values()))
            line = dict(N=any_r["N"], C=any_r["C"], H=any_r["H"])
            for kname in kernels:
                line[kname] = sel[kname]["ms_full"] if kname in sel else None
            table.append(line)
        cols = [("N", "N"), ("C", "C=C_out"), ("H", "H=W")] + [(k, f"{k} ms") for k in kernels]
        out.append(common.format_table(table, cols, title=f"\nsweep over {axis} (3x3 conv, pad 1, fwd+bwd)"))
    return "\n".join(out)


def plot_sweep(rows, path, notes):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        notes.append(f"--plot: matplotlib is not installed, {path} not written")
        return
    axes_names = list(dict.fromkeys(r["axis"] for r in rows))
    fig, axs = plt.subplots(1, len(axes_names), figsize=(5 * len(axes_names), 4))
    for ax, axis in zip(np.atleast_1d(axs), axes_names):
        for kname in dict.fromkeys(r["kernel"] for r in rows):
            pts = [(r["value"], r["ms_full"]) for r in rows if r["axis"] == axis and r["kernel"] == kname]
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=kname, base=2)
        ax.set_xlabel(axis)
        ax.set_ylabel("fwd+bwd ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------------------------------- main
CONV_COLUMNS = [("config", "config"), ("phase", "phase"), ("kernel", "kernel"), ("batch", "N run"),
                ("ms", "ms"), ("min_ms", "min"), ("max_ms", "max"), ("ms_full", "ms@N"), ("gflops", "GFLOP/s"),
                ("x_fastest", "x fastest"), ("x_torch", "x torch"), ("peak_mb", "peak MB"),
                ("scratch_mb", "scratch MB")]
LAYER_COLUMNS = [("config", "config"), ("phase", "phase"), ("kernel", "kernel"), ("ms", "ms"), ("min_ms", "min"),
                 ("max_ms", "max"), ("gflops", "GFLOP/s"), ("x_fastest", "x fastest"), ("x_torch", "x torch")]
POOL_COLUMNS = [("config", "config"), ("phase", "phase"), ("kernel", "kernel"), ("ms", "ms"), ("min_ms", "min"),
                ("max_ms", "max"), ("gbytes", "GB/s"), ("x_fastest", "x fastest"), ("x_torch", "x torch")]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", choices=sorted(CONFIG_SETS), default="all",
                    help="lenet: LeNet's two convs; shapes: those and four wider ones; resnet: the convs of "
                         "nn.models.ResNet(); all: shapes + resnet")
    ap.add_argument("--kernels", default=DEFAULT_KERNELS,
                    help="comma-separated subset; auto = the library default (picks per operation by a rule), "
                         "tune = picks per operation by timing numba against im2col")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="threads for numba, BLAS and torch (default: cores)")
    ap.add_argument("--direct-div", type=int, default=8, help="run the direct kernel on batch N // this")
    ap.add_argument("--json", metavar="PATH")
    common.add_result_arguments(ap)
    ap.add_argument("--csv", metavar="PATH")
    ap.add_argument("--markdown", metavar="PATH", help="write the markdown tables here (they are also printed)")
    ap.add_argument("--sweep", action="store_true", help="also time fwd+bwd over batch, spatial size, channels")
    ap.add_argument("--plot", metavar="PATH", help="with --sweep: log-log PNG (needs matplotlib)")
    ap.add_argument("--no-pool", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip the numba compile-time subprocesses")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--blas-env-compare", action="store_true",
                    help=f"also run once without {' and '.join(common.BLAS_TUNING_VARS)} (in a subprocess)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats (smoke test)")
    ap.add_argument("--no-torch", action="store_true", help="no torch columns")
    ap.add_argument("--torch-python", metavar="PYTHON",
                    help="interpreter with PyTorch for the torch worker processes (default: "
                         "$TINYCONV_BENCH_TORCH_PYTHON, else this one)")
    ap.add_argument("--torch-runs", type=int, default=2,
                    help="torch worker processes: 1 = before tinyconv's timings, 2 = before and after (default)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--worker-checks", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def torch_worker(args) -> dict:
    """The torch columns, in a process of their own (PyTorch's interpreter; no tinyconv, no numba)."""
    import torch

    threads = common.set_threads(args.threads, numba=False)
    notes = []
    repeats = 2 if args.quick and args.repeats == 7 else args.repeats
    configs = QUICK_CONFIGS if args.quick else CONFIG_SETS[args.configs]
    pool_configs = QUICK_POOL_CONFIGS if args.quick else POOL_CONFIGS
    checks = {}
    conv_rows, _ = bench_convs(configs, {}, torch, repeats, args.direct_div, args.quick, notes, checks)
    pool_rows = [] if args.no_pool else bench_pooling(pool_configs, torch, repeats, args.quick, notes, checks)
    layer_rows = layer_level(configs, [], torch, repeats, args.quick, notes)
    if not args.no_memory:
        measure_conv_memory(configs, {}, torch, args.direct_div, conv_rows)
    sweep_rows = sweep({}, torch, max(1, repeats // 2), args.quick, args.direct_div) if args.sweep else []
    np.savez(args.worker_checks, **{f"{key}|{i}": a for key, outs in checks.items()
                                    for i, a in enumerate(_flat(outs["torch"])) if a.dtype != object})
    return dict(threads=threads, conv=conv_rows, pool=pool_rows, layer=layer_rows, sweep=sweep_rows, notes=notes,
                torch=torch.__version__)


def run_torch_workers(argv, args, torch_py, notes, when):
    """Run the torch worker once (``when``: 'before' or 'after' tinyconv's timings); its result, or None."""
    with tempfile.TemporaryDirectory(prefix="bench-conv-torch-") as d:
        out, chk = os.path.join(d, "torch.json"), os.path.join(d, "checks.npz")
        clean, skip = [], False
        for a in (argv if argv is not None else sys.argv[1:]):  # drop this run's output targets
            if skip:
                skip = False
                continue
            if a in ("--json", "--csv", "--plot", "--torch-python", "--markdown"):
                skip = True
                continue
            clean.append(a)
        cmd = [torch_py, os.path.abspath(__file__), *clean, "--torch-worker", "--worker-out", out,
               "--worker-checks", chk]
        p = subprocess.run(cmd, env=common.peer_env(), capture_output=True, text=True, timeout=1800)
        if p.returncode:
            notes.append(f"torch worker ({when}) failed: {p.stderr.strip()[-600:]}")
            return None
        res = json.load(open(out))
        with np.load(chk, allow_pickle=False) as f:
            checks = {}
            for k in f.files:
                key, i = k.rsplit("|", 1)
                checks.setdefault(key, {})[int(i)] = np.array(f[k])
        res["checks"] = {k: [v[i] for i in sorted(v)] for k, v in checks.items()}
        return res


def merge_torch(rows: list[dict], worker_rows: list[list[dict]], key_fields) -> list[dict]:
    """The torch rows of several worker processes as one row per key: median of their medians, min of mins, max
    of maxes."""
    groups = {}
    for wr in worker_rows:
        for r in wr:
            groups.setdefault(tuple(r[k] for k in key_fields), []).append(r)
    out = []
    for rs in groups.values():
        m = dict(rs[0])
        for k in ("ms", "ms_full", "gflops", "gbytes", "peak_mb", "scratch_mb", "traced_mb", "rss_mb"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                m[k] = float(np.median(vals))
        m["min_ms"], m["max_ms"] = min(r["min_ms"] for r in rs), max(r["max_ms"] for r in rs)
        m["processes"] = len(rs)
        out.append(m)
    return rows + out


def main(argv=None):
    args = parse_args(argv)
    if args.torch_worker:
        common.write_json(args.worker_out, torch_worker(args))
        return None
    notes = [n for n in [common.load_note()] if n]
    torch_py, torch_version = (None, "--no-torch") if args.no_torch else common.peer_python("torch", args.torch_python)
    if torch_py is None:
        if not args.no_torch:
            notes.append(f"no torch rows or x torch ratios: {torch_version}")
        torch_version = None
    torch = None  # this process never imports torch: its columns come from worker processes
    threads = common.set_threads(args.threads)
    info = common.machine_info(torch_version)
    print(common.describe_machine(info, threads))
    repeats = 2 if args.quick and args.repeats == 7 else args.repeats
    if args.quick:  # tiny sizes: full batch for every kernel; the compile subprocesses alone take ~15 s
        args.direct_div, args.no_compile = 1, True
    configs = QUICK_CONFIGS if args.quick else CONFIG_SETS[args.configs]
    pool_configs = QUICK_POOL_CONFIGS if args.quick else POOL_CONFIGS
    kernels, missing = load_kernels([k for k in args.kernels.split(",") if k])
    for k, why in missing.items():
        notes.append(f"kernel {k} unavailable: {why}")

    t_start = time.perf_counter()
    torch_runs = []
    if torch_py:  # alternate: torch processes before and after this one's timings
        torch_runs.append(run_torch_workers(argv, args, torch_py, notes, "before"))
    checks = {}
    conv_rows, conv_meta = bench_convs(configs, kernels, torch, repeats, args.direct_div, args.quick, notes, checks)
    pool_rows = [] if args.no_pool else bench_pooling(pool_configs, torch, repeats, args.quick, notes, checks)
    layer_rows = layer_level(configs, [k for k in kernels if k != "direct"], torch, repeats, args.quick, notes)
    retention = []
    if not args.no_memory:
        measure_conv_memory(configs, kernels, torch, args.direct_div, conv_rows)
        retention = im2col_retention(configs, notes)
    compile_res = None
    if not args.no_compile and "numba" in kernels:
        compile_res = numba_compile_times(threads["threads"], notes)
    sweep_rows = sweep(kernels, torch, max(1, repeats // 2), args.quick, args.direct_div) if args.sweep else []
    if torch_py and args.torch_runs > 1:
        torch_runs.append(run_torch_workers(argv, args, torch_py, notes, "after"))
    torch_runs = [t for t in torch_runs if t]
    if torch_runs:
        conv_rows, pool_rows, layer_rows, sweep_rows = merge_torch_runs(torch_runs, conv_rows, pool_rows, layer_rows,
                                                                        sweep_rows, checks, notes)
        threads["torch"] = torch_runs[0]["threads"].get("torch")
    targets = print_tables(conv_meta, conv_rows, layer_rows, retention, pool_rows, compile_res, sweep_rows, args,
                           notes)
    md = markdown(conv_rows, conv_meta, pool_rows, layer_rows, args, info)
    print("\nmarkdown:\n\n" + md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    blas_cmp = None
    if args.blas_env_compare:
        blas_cmp = blas_env_compare(argv, conv_rows, notes)
    elapsed = time.perf_counter() - t_start
    print(f"\nbenchmark time {elapsed:.1f} s")
    for n in notes:
        print("note:", n)
    payload = dict(machine=info, threads=threads, args=vars(args), conv_configs=conv_meta, conv=conv_rows,
                   conv_autograd=layer_rows, im2col_memory=retention,
                   pool=pool_rows, numba_compile=compile_res, sweep=sweep_rows, targets=targets,
                   blas_env_compare=blas_cmp, notes=notes, elapsed_s=elapsed,
                   memory_method="peak_mb: tracemalloc peak for tinyconv kernels (numpy + numba NRT arrays), "
                                 "peak RSS rise (VmHWM) for torch; scratch_mb = peak_mb - outputs_mb")
    if args.json:
        common.write_json(args.json, payload)
    if args.csv:
        common.write_csv(args.csv, conv_rows + pool_rows)
    common.save_if_asked(args, "conv", payload, result_rows(conv_rows, conv_meta, layer_rows, pool_rows),
                         threads=threads, torch_version=torch_version, command=common.command(__file__, argv),
                         info=info)
    return payload


def result_rows(conv_rows, conv_meta, layer_rows, pool_rows) -> list[dict]:
    """The result file's rows: the library's default kernel ('auto'; numba for pooling) against PyTorch, ms at
    each configuration's batch, fwd+bwd (and LeNet conv1's fwd+wgrad); then the geometric mean of the
    convolutions' fwd+bwd ratios."""
    shapes = {m["config"]: (f"{m['N']}x{m['C_in']}x{m['H']}x{m['H']}→{m['C_out']}, {m['k']}x{m['k']}"
                            + (f" s{m['stride']}" if m["stride"] > 1 else "") + (f" p{m['padding']}" if m["padding"] else "")
                            + (f" g{m['groups']}" if m["groups"] > 1 else "")) for m in conv_meta}

    def at_batch(r):
        scale = r["ms_full"] / r["ms"] if r["ms"] else 1.0
        return (r["ms_full"], r["min_ms"] * scale, r["max_ms"] * scale)

    out = []
    for group, rows, phases, defaults in (("convolution", conv_rows, ("fwd+bwd", "fwd+wgrad"), ("auto", "numba")),
                                          ("through autograd", layer_rows, ("fwd+bwd", "fwd+wgrad"), ("auto", "numba")),
                                          ("pooling 2x2", pool_rows, ("fwd+bwd",), ("numba",))):
        for config, phase in dict.fromkeys((r["config"], r["phase"]) for r in rows if r["phase"] in phases):
            sel = {r["kernel"]: r for r in rows if r["config"] == config and r["phase"] == phase}
            mine = next((sel[k] for k in defaults if k in sel), None)
            if mine is None:
                continue
            what = f"{config} ({shapes[config]}) {phase}" if config in shapes else f"{config} {phase}"
            out.append(common.result_row(what, "ms", at_batch(mine), at_batch(sel["torch"]) if "torch" in sel else None,
                                         group=group, config=config, phase=phase, kernel=mine["kernel"]))
    ratios = [r["ratio"] for r in out if r["group"] == "convolution" and r["phase"] == "fwd+bwd" and r["ratio"]]
    if ratios:
        out.append(common.result_row(f"geometric mean, convolution fwd+bwd ({len(ratios)} layers)", "ratio", None,
                                     ratio=float(np.exp(np.mean(np.log(ratios)))), group="summary", headline=True))
    return out


def merge_torch_runs(torch_runs, conv_rows, pool_rows, layer_rows, sweep_rows, checks, notes):
    """PyTorch's columns from its worker processes merged into tinyconv's rows (with the x torch ratios), its
    results checked against tinyconv's, its notes added. Returns the conv, pool, layer and sweep rows."""
    conv_rows = merge_torch(conv_rows, [t["conv"] for t in torch_runs], ("config", "phase"))
    pool_rows = merge_torch(pool_rows, [t["pool"] for t in torch_runs], ("config", "phase"))
    layer_rows = merge_torch(layer_rows, [t["layer"] for t in torch_runs], ("config", "phase"))
    sweep_rows = sweep_rows + [r for r in torch_runs[-1]["sweep"]]
    for rs in (conv_rows, pool_rows, layer_rows):
        add_ratios(rs)
    for key, torch_out in torch_runs[0]["checks"].items():
        mine = checks.get(key)
        if mine:
            ref = next(iter(mine))
            what = key[5:] if key.startswith("pool:") else key
            notes.extend(f"{what}: {b}" for b in check_agree({ref: mine[ref], "torch": torch_out}))
    notes.extend(n for t in torch_runs for n in t["notes"])
    return conv_rows, pool_rows, layer_rows, sweep_rows


def print_tables(conv_meta, conv_rows, layer_rows, retention, pool_rows, compile_res, sweep_rows, args, notes):
    """Print every table of the run (and draw the sweep's plot when asked); returns the targets' rows."""
    print()
    for m in conv_meta:
        print(f"{m['config']}: N={m['N']} C_in={m['C_in']} H=W={m['H']} C_out={m['C_out']} k={m['k']} "
              f"stride={m['stride']} pad={m['padding']} groups={m['groups']} -> H_out={m['H_out']}; "
              f"{m['gflop_fwd']:.3f} GFLOP forward; im2col column buffer {m['im2col_buffer_mb']:.1f} MB")
    print(common.format_table(conv_rows, CONV_COLUMNS, title="\nconvolution (float32; ms = median; ms@N: "
                                                               "scaled to the config's batch)"))
    if layer_rows:
        print(common.format_table(layer_rows, LAYER_COLUMNS,
                                  title="\nLeNet conv layers through autograd (tinyconv.functional.conv2d with bias vs torch "
                                        "autograd; conv1: input needs no grad)"))
    if retention:
        print(common.format_table(retention, [("config", "config"), ("column_buffer_mb", "column buffer MB"),
                                              ("retained_after_fwd_mb", "kept fwd->bwd MB"),
                                              ("fwd_peak_mb", "fwd peak MB"), ("bwd_peak_mb", "bwd peak MB"),
                                              ("bwd_peak_in_buffers", "bwd peak / buffer"),
                                              ("dtypes", "dtypes")],
                                  title="\nim2col layer memory (tracemalloc; outputs included in peaks)"))
    if pool_rows:
        print(common.format_table(pool_rows, POOL_COLUMNS, title="\npooling 2x2 stride 2 (float32)"))
    if compile_res:
        print(common.format_table(compile_rows(compile_res),
                                  [("run", "numba process"), ("function", "call"), ("first_ms", "first call ms"),
                                   ("second_ms", "second call ms")],
                                  title="\nnumba first-call cost (LeNet conv1 shapes, batch 8; fresh processes)"))
    if sweep_rows:
        print(sweep_table(sweep_rows))
        if args.plot:
            plot_sweep(sweep_rows, args.plot, notes)
    targets = conv_targets(conv_rows, pool_rows, layer_rows)
    if targets:
        print(common.format_table(targets, [("target", "target"), ("value", "measured"), ("limit", "limit"),
                                            ("ok", "met")], title="\ntargets"))
    return targets


def markdown(conv_rows, conv_meta, pool_rows, layer_rows, args, info) -> str:
    """The markdown tables: fwd+bwd per configuration and kernel (ms at the config's batch, median (min–max)), the
    LeNet layers through autograd, pooling; ratios of the default kernel ('auto') to torch."""
    shapes = {m["config"]: (f"{m['N']}x{m['C_in']}x{m['H']}x{m['H']} -> {m['C_out']}, {m['k']}x{m['k']}"
                            + (f" s{m['stride']}" if m["stride"] > 1 else "") + (f" p{m['padding']}" if m["padding"] else "")
                            + (f" g{m['groups']}" if m["groups"] > 1 else "")) for m in conv_meta}

    def cell(r):
        if r is None:
            return None
        scale = r["ms_full"] / r["ms"] if r["ms"] else 1.0
        return common.with_spread(r["ms_full"], r["min_ms"] * scale, r["max_ms"] * scale)

    def table(rows, group, phases, label):
        kernels = [k for k in dict.fromkeys(r["kernel"] for r in rows) if k != "torch"] + ["torch"]
        out = []
        for (config, phase) in dict.fromkeys((r[group], r["phase"]) for r in rows if r["phase"] in phases):
            sel = {r["kernel"]: r for r in rows if r[group] == config and r["phase"] == phase}
            line = {"config": shapes.get(config, config), "phase": phase}
            for k in kernels:
                line[k] = cell(sel.get(k))
            ref = sel.get("auto") or sel.get("numba")
            line["ratio"] = f"{ref['x_torch']:.2f}×" if ref and ref.get("x_torch") else None
            out.append(line)
        present = [k for k in kernels if any(x.get(k) for x in out)]
        cols = [("config", label), ("phase", "phase")] + [(k, k) for k in present] + [("ratio", "default x torch")]
        return common.markdown_table(out, cols)

    head = (f"Kernel level, float32, ms (median (min–max)); tinyconv's kernels timed in one process, torch in "
            f"{args.torch_runs} separate worker processes; commit {info.get('tinyconv_commit') or '?'}; {info['cpu']}.")
    parts = [head, "", table(conv_rows, "config", ("fwd+bwd", "fwd+wgrad"), "convolution")]
    if layer_rows:
        parts += ["", "Through autograd, with bias (`F.conv2d` + `backward` vs torch autograd):", "",
                  table(layer_rows, "config", ("fwd+bwd", "fwd+wgrad"), "layer")]
    if pool_rows:
        parts += ["", "Pooling 2x2 stride 2:", "", table(pool_rows, "config", ("fwd+bwd",), "pooling")]
    cmd = " ".join(["python benchmarks/bench_conv.py", *args.argv])
    return "\n".join(parts + ["", f"Reproduce: `{cmd}`"])


CHOSEN_FROM = ("numba", "im2col")  # the kernels auto and tune choose between
PICK_LIMIT = 1.05  # a chooser's fwd+bwd within this factor of the faster of them


def conv_targets(conv_rows, pool_rows, layer_rows=()) -> list[dict]:
    """The issue's conv/pooling targets, from this run's numbers (against torch only where torch was measured;
    auto's and tune's picks against the faster of numba and im2col, measured here: met where the time is within
    :data:`PICK_LIMIT` of it, or where the chooser runs that kernel for every operation, the same code)."""
    out = []

    def get(rows, config, kernel, phase):
        return next((r for r in rows if r["config"] == config and r["kernel"] == kernel and r["phase"] == phase),
                    None)

    for kname in ("numba", "auto"):
        r = get(conv_rows, "lenet.conv2", kname, "fwd+bwd")
        if r and r["x_torch"]:
            out.append(dict(target=f"{kname} conv fwd+bwd, LeNet conv2 (x torch)", value=r["x_torch"], limit=1.5,
                            ok=r["x_torch"] <= 1.5))
    for kname in ("numba", "im2col", "auto"):
        r = get(conv_rows, "lenet.conv1", kname, "fwd+wgrad")
        if r and r["x_torch"]:
            out.append(dict(target=f"{kname} conv1 fwd+weight-grad (x torch)", value=r["x_torch"], limit=1.0,
                            ok=r["x_torch"] <= 1.0))
    for r in layer_rows:
        if r["kernel"] == "auto" and r["x_torch"]:
            limit = 1.0 if r["phase"] == "fwd+wgrad" else 1.5
            out.append(dict(target=f"default kernel {r['config']} {r['phase']} (x torch)", value=r["x_torch"],
                            limit=limit, ok=r["x_torch"] <= limit))
    for config in dict.fromkeys(r["config"] for r in conv_rows):  # the choosers against the best concrete kernel
        best = [r for k in CHOSEN_FROM if (r := get(conv_rows, config, k, "fwd+bwd"))]
        if not best:
            continue
        best = min(best, key=lambda r: r["ms_full"])
        for kname in ("auto", "tune"):
            r = get(conv_rows, config, kname, "fwd+bwd")
            if r:
                # a chooser that runs the best kernel for all three operations runs its code: any gap is noise
                same = r.get("picks") == "/".join([best["kernel"]] * 3)
                ratio = r["ms_full"] / best["ms_full"]
                out.append(dict(target=f"{kname} {config} fwd+bwd ({r.get('picks')}; x the best: {best['kernel']})",
                                value=ratio, limit=PICK_LIMIT, ok=same or ratio <= PICK_LIMIT))
    for r in pool_rows:
        if r["phase"] == "fwd+bwd" and r["kernel"] != "torch" and r["x_torch"]:
            out.append(dict(target=f"{r['kernel']} {r['config']} fwd+bwd (x torch)", value=r["x_torch"],
                            limit=1.0, ok=r["x_torch"] <= 1.0))
    return out


def blas_env_compare(argv, conv_rows, notes):
    set_vars = {k: os.environ[k] for k in common.BLAS_TUNING_VARS if k in os.environ}
    if not set_vars:
        notes.append(f"--blas-env-compare: none of {common.BLAS_TUNING_VARS} is set; nothing to compare")
        return None
    argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--blas-env-compare"]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "unset.json")
        clean = []
        skip = False
        for a in argv:  # drop the caller's output files: the subprocess must not overwrite them
            if skip:
                skip = False
                continue
            if a in ("--json", "--csv", "--plot", "--markdown"):
                skip = True
                continue
            if a.split("=", 1)[0] in ("--json", "--csv", "--plot", "--markdown"):
                continue
            clean.append(a)
        cmd = [sys.executable, os.path.abspath(__file__), *clean, "--no-compile", "--no-memory", "--no-save", "--json",
               path]
        p = subprocess.run(cmd, env=common.blas_env_stripped(), capture_output=True, text=True)
        if p.returncode:
            notes.append(f"--blas-env-compare subprocess failed: {p.stderr[-400:]}")
            return None
        other = json.load(open(path))
    idx = {(r["config"], r["kernel"], r["phase"]): r for r in other["conv"]}
    rows = []
    for r in conv_rows:
        o = idx.get((r["config"], r["kernel"], r["phase"]))
        if o:
            rows.append(dict(config=r["config"], kernel=r["kernel"], phase=r["phase"], ms_set=r["ms"],
                             ms_unset=o["ms"], ratio=r["ms"] / o["ms"]))
    print(common.format_table(rows, [("config", "config"), ("kernel", "kernel"), ("phase", "phase"),
                                     ("ms_set", "ms (as set)"), ("ms_unset", "ms (unset)"),
                                     ("ratio", "set/unset")],
                              title=f"\nBLAS env vars {set_vars} as set vs unset (subprocess)"))
    return dict(vars=set_vars, rows=rows, unset_blas=other["machine"].get("blas"))


if __name__ == "__main__":
    main()
