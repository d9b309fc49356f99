"""ResNet training step, tinyconv vs PyTorch, each framework in its own fresh process; plus batch norm alone.

    python benchmarks/bench_resnet.py                                   # 5 rounds, batch 128, 2 threads
    python benchmarks/bench_resnet.py --torch-python /work/venv-torch/bin/python --rounds 7 --json resnet.json
    python benchmarks/bench_resnet.py --quick                           # tiny sizes (what the smoke test runs)

What is timed:

* **step**: one training step of ``nn.models.ResNet()`` (the default small ResNet, see its docstring) on MNIST-
  shaped batches, float32: forward, cross-entropy, ``zero_grad``, backward, ``Adam.step`` — in tinyconv and in the
  same network written in PyTorch (``benchmarks/torch_resnet.py``), both starting from the same weights (saved by
  this parent process, loaded by each worker) and fed the same batches.
* **batch norm**: ``F.batch_norm`` in training mode, forward + backward (input, weight and bias gradients) on the
  largest batch norm of the default ResNet, (batch, 16, 28, 28).

Method: the parent writes the initial weights and ``--batches`` batches (MNIST when it is cached, random
otherwise, ``--synthetic`` forces random) to a temporary ``.npz``, then starts one worker process per framework
and round, alternating (tinyconv, torch, tinyconv, torch ...), so a burst of load from other programs hits both
alike. Each worker sets its thread count (``--threads``: numba and OpenBLAS for tinyconv, ``torch.set_num_threads``
for PyTorch), times its first step separately (numba loads or compiles its kernels there: the first-call cost),
runs ``--warmup`` more untimed steps, then ``--steps`` timed steps, then the batch-norm timings. The table shows
medians over all timed samples of all rounds, with min and max; the ratio column is tinyconv's median over
PyTorch's. The first-step losses of both frameworks are compared (same weights, same batch) as a check that the
two networks are the same.

The PyTorch worker runs under ``--torch-python`` (default: ``$TINYCONV_BENCH_TORCH_PYTHON``, else this interpreter,
when it can import torch); it imports torch and NumPy only, never tinyconv.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import common  # noqa: E402  (imports neither tinyconv nor torch)


# ---------------------------------------------------------------------------------------------------- workers
def _timed(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _first_then_timed(step, args) -> tuple:
    """Seconds of the first call (compilation, first touch), then ``args.warmup`` untimed calls, then the timed
    samples of ``_timed``: the same sequence for every framework."""
    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    for _ in range(args.warmup):
        step()
    return first, _timed(step, args.steps)


def worker_tinyconv(args, data) -> dict:
    sys.path.insert(0, REPO_ROOT)  # this checkout's tinyconv
    import tinyconv as tc
    from tinyconv import functional as F
    from tinyconv.nn.models import ResNet

    threads = common.set_threads(args.threads)
    model = ResNet()
    model.load_state_dict({k[len("w/"):]: data[k] for k in data.files if k.startswith("w/")})
    opt = tc.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys = data["x"], data["y"]
    state = {"i": 0, "losses": []}

    def step():
        i = state["i"] % len(xs)
        state["i"] += 1
        loss = F.cross_entropy(model(tc.tensor(xs[i])), ys[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["losses"].append(float(loss.item()))

    first, steps = _first_then_timed(step, args)

    rng = np.random.default_rng(0)
    shape = (xs.shape[1], 16, 28, 28)
    x = tc.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    w = tc.tensor(np.ones(16, np.float32), requires_grad=True)
    b = tc.tensor(np.zeros(16, np.float32), requires_grad=True)
    g = tc.tensor(rng.standard_normal(shape).astype(np.float32))
    rm, rv = np.zeros(16, np.float32), np.ones(16, np.float32)

    def bn():
        x.grad = w.grad = b.grad = None
        F.batch_norm(x, rm, rv, w, b, training=True).backward(g)

    bn()
    return {"framework": "tinyconv", "threads": threads, "first_step_s": first, "step_s": steps,
            "bn_s": _timed(bn, args.bn_samples), "first_loss": state["losses"][0]}


def worker_torch(args, data) -> dict:
    import torch

    sys.path.insert(0, HERE)
    from torch_resnet import ResNet, load_arrays

    torch.set_num_threads(args.threads)
    model = ResNet()
    load_arrays(model, {k[len("w/"):]: data[k] for k in data.files if k.startswith("w/")})
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys = torch.from_numpy(data["x"]), torch.from_numpy(data["y"].astype(np.int64))
    state = {"i": 0, "losses": []}
    ce = torch.nn.functional.cross_entropy

    def step():
        i = state["i"] % len(xs)
        state["i"] += 1
        loss = ce(model(xs[i]), ys[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["losses"].append(float(loss.item()))

    first, steps = _first_then_timed(step, args)

    rng = np.random.default_rng(0)
    shape = (xs.shape[1], 16, 28, 28)
    x = torch.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    w = torch.ones(16, requires_grad=True)
    b = torch.zeros(16, requires_grad=True)
    g = torch.tensor(rng.standard_normal(shape).astype(np.float32))
    rm, rv = torch.zeros(16), torch.ones(16)

    def bn():
        x.grad = w.grad = b.grad = None
        torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True).backward(g)

    bn()
    return {"framework": "torch", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "first_step_s": first, "step_s": steps, "bn_s": _timed(bn, args.bn_samples),
            "first_loss": state["losses"][0]}


# ----------------------------------------------------------------------------------------------------- parent
def _torch_python(args) -> str | None:
    """An interpreter that can import torch, or None (then the torch rows are left out)."""
    if os.environ.get("TINYCONV_BENCH_NO_TORCH"):
        return None
    candidate = args.torch_python or os.environ.get("TINYCONV_BENCH_TORCH_PYTHON") or sys.executable
    ok = subprocess.run([candidate, "-c", "import torch"], capture_output=True).returncode == 0
    return candidate if ok else None


def _prepare_data(args, path: str) -> str:
    """Initial weights (tinyconv's ResNet, seed 0) and the batches, into one .npz both workers read."""
    sys.path.insert(0, REPO_ROOT)
    import tinyconv as tc
    from tinyconv.nn.models import ResNet

    tc.manual_seed(0)
    weights = {f"w/{k}": np.array(v.numpy()) for k, v in ResNet().state_dict().items()}
    n = args.batch * args.batches
    source = "random"
    x = y = None
    if not args.synthetic:
        try:
            from tinyconv.data import MNIST

            ds = MNIST(train=True)
            x = ((ds.data[:n].astype(np.float32) / 255.0 - 0.1307) / 0.3081)[:, None]
            y = ds.targets[:n].astype(np.int64)
            source = "MNIST"
        except Exception:  # not cached and no network: random images time the same
            x = None
    if x is None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, n)
    np.savez(path, x=x.reshape(args.batches, args.batch, 1, 28, 28), y=y.reshape(args.batches, args.batch),
             **weights)
    return source


def _stats(samples: list[float]) -> dict:
    return {"ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3, "max_ms": max(samples) * 1e3,
            "n": len(samples)}


def run(args) -> dict:
    torch_python = _torch_python(args)
    frameworks = [("tinyconv", sys.executable)] + ([("torch", torch_python)] if torch_python else [])
    results = {name: [] for name, _ in frameworks}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npz")
        source = _prepare_data(args, data_path)
        for r in range(args.rounds):
            for name, python in frameworks:
                out_path = os.path.join(tmp, f"{name}-{r}.json")
                cmd = [python, os.path.abspath(__file__), "--worker", name, "--data", data_path, "--out", out_path,
                       "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--bn-samples", str(args.bn_samples)]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    raise RuntimeError(f"{name} worker failed:\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
                with open(out_path) as f:
                    results[name].append(json.load(f))
    rows = []
    for name, runs in results.items():
        step = _stats([s for run in runs for s in run["step_s"]])
        bn = _stats([s for run in runs for s in run["bn_s"]])
        rows.append({"framework": name, "step_ms": step["ms"], "step_min_ms": step["min_ms"],
                     "step_max_ms": step["max_ms"], "steps": step["n"], "bn_ms": bn["ms"], "bn_min_ms": bn["min_ms"],
                     "bn_max_ms": bn["max_ms"],
                     "first_step_s": statistics.median(run["first_step_s"] for run in runs),
                     "first_loss": runs[0]["first_loss"], "threads": runs[0]["threads"]})
    if len(rows) == 2:
        for key in ("step_ms", "bn_ms"):
            rows[0][key.replace("_ms", "_x_torch")] = rows[0][key] / rows[1][key]
    return {"benchmark": "resnet", "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
            "data": source, "torch_python": torch_python, "rows": rows, "runs": results}


def format_report(res: dict) -> str:
    lines = [f"ResNet (nn.models.ResNet defaults) training step, batch {res['batch']}, float32, {res['threads']} "
             f"threads, {res['data']} batches; {res['rounds']} rounds of fresh processes per framework, "
             "alternating; medians (min-max)",
             f"{'framework':<10} {'step ms':>22} {'x torch':>8} {'BN fwd+bwd ms':>22} {'x torch':>8} "
             f"{'first step s':>12} {'first loss':>10}"]
    for r in res["rows"]:
        step = f"{r['step_ms']:.2f} ({r['step_min_ms']:.2f}-{r['step_max_ms']:.2f})"
        bn = f"{r['bn_ms']:.3f} ({r['bn_min_ms']:.3f}-{r['bn_max_ms']:.3f})"
        sx = f"{r['step_x_torch']:.2f}x" if "step_x_torch" in r else ""
        bx = f"{r['bn_x_torch']:.2f}x" if "bn_x_torch" in r else ""
        lines.append(f"{r['framework']:<10} {step:>22} {sx:>8} {bn:>22} {bx:>8} {r['first_step_s']:>12.2f} "
                     f"{r['first_loss']:>10.4f}")
    if res["torch_python"] is None:
        lines.append("(PyTorch not found: pass --torch-python PATH to add its row)")
    else:
        a, b = (r["first_loss"] for r in res["rows"])
        same = abs(a - b) <= 1e-4 * max(1.0, abs(b))
        lines.append(f"first-step losses {'agree' if same else 'DIFFER'} (same weights, same batch): "
                     f"{a:.6f} vs {b:.6f}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="fresh processes per framework (default 5)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per process (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (default 3)")
    p.add_argument("--bn-samples", type=int, default=30, help="batch-norm fwd+bwd samples per process")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=8, help="distinct batches cycled through (default 8)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--synthetic", action="store_true", help="random images instead of MNIST")
    p.add_argument("--torch-python", help="interpreter for the PyTorch worker (default: this one)")
    p.add_argument("--json", help="write all results (every sample of every round) to this file")
    common.add_result_arguments(p)
    p.add_argument("--quick", action="store_true", help="batch 8, 1 round of 2 steps: a smoke test")
    p.add_argument("--worker", choices=("tinyconv", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.bn_samples, args.batch, args.batches = 1, 2, 1, 2, 8, 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        with np.load(args.data, allow_pickle=False) as data:
            fn = worker_tinyconv if args.worker == "tinyconv" else worker_torch
            out = fn(args, data)
        with open(args.out, "w") as f:
            json.dump(out, f)
        return 0
    res = run(args)
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    torch_version = next((r.get("torch") for r in res["runs"].get("torch", [])), None)
    common.save_if_asked(args, "resnet", res, result_rows(res), threads=args.threads, torch_version=torch_version,
                         command=common.command(__file__, argv))
    return 0


def result_rows(res: dict) -> list[dict]:
    """The result file's rows: the training step (the headline) and batch norm alone (the first step of a process
    stays in the details: with a cold numba cache it measures compilation)."""
    rows = {r["framework"]: r for r in res["rows"]}
    out = []
    for what, unit, key, lo, hi in (("training step", "ms", "step_ms", "step_min_ms", "step_max_ms"),
                                    (f"batch norm fwd+bwd ({res['batch']}, 16, 28, 28)", "ms", "bn_ms", "bn_min_ms",
                                     "bn_max_ms")):
        tiny, torch = rows["tinyconv"], rows.get("torch")
        out.append(common.result_row(what, unit, (tiny[key], tiny[lo], tiny[hi]),
                                     (torch[key], torch[lo], torch[hi]) if torch else None,
                                     headline=key == "step_ms"))
    return out


if __name__ == "__main__":
    sys.exit(main())
