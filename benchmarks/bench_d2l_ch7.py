"""Chapter 7's networks (AlexNet, VGG-11, NiN, GoogLeNet, ResNet-18, DenseNet), forward + backward, tinyconv vs
PyTorch, each framework in its own fresh process.

    python benchmarks/bench_d2l_ch7.py                       # 3 rounds, batch 16, 2 threads, every network
    python benchmarks/bench_d2l_ch7.py --torch-python /work/torchvenv/bin/python --json ch7.json
    python benchmarks/bench_d2l_ch7.py --nets vgg11 nin      # some of them
    python benchmarks/bench_d2l_ch7.py --quick               # channels / 16, batch 2, 1 step: the smoke test

What is timed: one step of the network (``benchmarks/d2l_ch7_nets.py``, the book's networks for single-channel
input, at the book's resolution: 224 for AlexNet, VGG-11 and NiN, 96 for the others) in training mode on a float32
batch: forward, cross-entropy, ``zero_grad``, backward (no optimizer step). Both frameworks start from the same
weights (tinyconv's initialisation, seed 0, saved by this parent and loaded by each worker) and get the same
batch; the loss of one forward in eval mode (no dropout, batch norm on its running statistics) is compared as a
check that both built the same network.

Method: for each network and round, one worker process per framework, alternating (tinyconv, torch, tinyconv ...),
each setting its thread count (``--threads``: numba and OpenBLAS, or ``torch.set_num_threads``), timing its first
step separately (numba loads or compiles its kernels there), running ``--warmup`` untimed steps and ``--steps``
timed ones. The table shows medians over all rounds with min and max, tinyconv's median over PyTorch's, and the
ratio of the summed medians over the networks run.

The PyTorch worker runs under ``--torch-python`` (default: ``$TINYCONV_BENCH_TORCH_PYTHON``, else this interpreter
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
import common  # noqa: E402
from d2l_ch7_nets import SIDES, build  # noqa: E402

NETS = list(SIDES)


# ---------------------------------------------------------------------------------------------------- workers
def _measure(step, args) -> tuple:
    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    for _ in range(args.warmup):
        step()
    samples = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t)
    return first, samples


def worker(args, data) -> dict:
    weights = {k[len("w/"):]: data[k] for k in data.files if k.startswith("w/")}
    x, y = data["x"], data["y"]
    if args.worker == "tinyconv":
        sys.path.insert(0, REPO_ROOT)  # this checkout's tinyconv
        import tinyconv as fw
        from tinyconv.functional import cross_entropy

        threads = common.set_threads(args.threads)
        if args.kernel:
            fw.set_default_kernel(args.kernel)
        xt, yt = fw.tensor(x), fw.tensor(y)
        extra = {"blas_core": common.blas_info().get("core"), "blas_env": _blas_vars_set(),
                 "kernel": fw.kernels.get_default_kernel()}
    else:
        import torch as fw

        cross_entropy = fw.nn.functional.cross_entropy
        fw.set_num_threads(args.threads)
        threads = fw.get_num_threads()
        xt, yt = fw.from_numpy(x), fw.from_numpy(y)
        extra = {"torch": fw.__version__}
    net = build(args.net, fw.nn, fw.cat, args.width)
    net.load_state_dict({k: fw.from_numpy(v) for k, v in weights.items()})
    net.eval()
    with fw.no_grad():
        check_loss = float(cross_entropy(net(xt), yt))
    net.train()

    def step():
        loss = cross_entropy(net(xt), yt)
        net.zero_grad()
        loss.backward()

    first, samples = _measure(step, args)
    if extra.get("kernel") == "tune":  # the operations it timed (in the first step)
        from tinyconv.kernels import tune

        extra["tune_picks"] = len(tune.picks())
    return {"framework": args.worker, "net": args.net, "threads": threads, "first_step_s": first,
            "step_s": samples, "check_loss": check_loss, **extra}


# ----------------------------------------------------------------------------------------------------- parent
def _torch_python(args) -> str | None:
    if os.environ.get("TINYCONV_BENCH_NO_TORCH"):
        return None
    candidate = args.torch_python or os.environ.get("TINYCONV_BENCH_TORCH_PYTHON") or sys.executable
    ok = subprocess.run([candidate, "-c", "import torch"], capture_output=True).returncode == 0
    return candidate if ok else None


def _prepare(name: str, args, path: str) -> None:
    """The network's initial weights (tinyconv, seed 0) and one batch, into the .npz both workers read."""
    sys.path.insert(0, REPO_ROOT)
    import tinyconv as tc

    tc.manual_seed(0)
    net = build(name, tc.nn, tc.cat, args.width)
    weights = {f"w/{k}": np.array(v.numpy()) for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    side = SIDES[name]
    x = rng.random((args.batch, 1, side, side), dtype=np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int64)
    np.savez(path, x=x, y=y, **weights)


def _stats(samples) -> dict:
    samples = list(samples)
    return {"ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3, "max_ms": max(samples) * 1e3,
            "n": len(samples)}


BLAS_DEFAULT = "tinyconv_blas_default"  # tinyconv with OpenBLAS's own choice of kernels (--blas-env-compare)


def _blas_vars_set() -> dict:
    return {k: os.environ[k] for k in common.BLAS_TUNING_VARS if k in os.environ}


def run(args) -> dict:
    torch_python = _torch_python(args)
    # (label, worker, interpreter, environment): each a fresh process per network and round, alternating
    frameworks = [("tinyconv", "tinyconv", sys.executable, None)]
    if args.blas_env_compare and _blas_vars_set():
        frameworks.append((BLAS_DEFAULT, "tinyconv", sys.executable, common.blas_env_stripped()))
    if torch_python:
        frameworks.append(("torch", "torch", torch_python, None))
    rows, runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets:
            data_path = os.path.join(tmp, f"{name}.npz")
            _prepare(name, args, data_path)
            results = {fw: [] for fw, _, _, _ in frameworks}
            for r in range(args.rounds):
                for fw, worker_name, python, env in frameworks:
                    out_path = os.path.join(tmp, f"{name}-{fw}-{r}.json")
                    cmd = [python, os.path.abspath(__file__), "--worker", worker_name, "--net", name, "--data",
                           data_path, "--out", out_path, "--threads", str(args.threads), "--steps", str(args.steps),
                           "--warmup", str(args.warmup), "--width", str(args.width)]
                    if args.kernel and worker_name == "tinyconv":
                        cmd += ["--kernel", args.kernel]
                    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if p.returncode != 0:
                        raise RuntimeError(f"{fw} worker for {name} failed:\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
                    with open(out_path) as f:
                        results[fw].append(json.load(f))
            row = {"net": name, "side": SIDES[name]}
            for fw in (f for f in ("tinyconv", BLAS_DEFAULT) if f in results):
                row[f"{fw}_blas_core"] = results[fw][0].get("blas_core")
            for fw, res in results.items():
                s = _stats(t for one in res for t in one["step_s"])
                row[fw] = {**s, "first_step_s": statistics.median(one["first_step_s"] for one in res),
                           "check_loss": res[0]["check_loss"]}
            if "torch" in row:
                row["x_torch"] = row["tinyconv"]["ms"] / row["torch"]["ms"]
                if BLAS_DEFAULT in row:
                    row["x_torch_blas_default"] = row[BLAS_DEFAULT]["ms"] / row["torch"]["ms"]
            rows.append(row)
            runs[name] = results
    out = {"benchmark": "d2l_ch7", "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
           "kernel": args.kernel or "default",
           "width": args.width, "torch_python": torch_python, "rows": rows, "runs": runs,
           "blas_env": _blas_vars_set(), "blas_env_compare": any(fw == BLAS_DEFAULT for fw, _, _, _ in frameworks)}
    if torch_python:
        out["sum_x_torch"] = sum(r["tinyconv"]["ms"] for r in rows) / sum(r["torch"]["ms"] for r in rows)
        if out["blas_env_compare"]:
            out["sum_x_torch_blas_default"] = (sum(r[BLAS_DEFAULT]["ms"] for r in rows)
                                               / sum(r["torch"]["ms"] for r in rows))
    return out


def format_report(res: dict) -> str:
    width = "" if res["width"] == 1 else f", channels / {res['width']}"
    compare = res.get("blas_env_compare")
    env = ", ".join(f"{k}={v}" for k, v in res.get("blas_env", {}).items())
    lines = [f"d2l chapter 7 networks, forward + backward, batch {res['batch']}, float32, one input channel"
             f"{width}, {res['threads']} threads; {res['rounds']} rounds of fresh processes per framework; "
             f"medians (min-max) in ms; tinyconv's conv kernel: {res.get('kernel', 'default')}"]
    if compare:
        lines.append(f"tinyconv: with this environment's {env}; 'OpenBLAS own': the same without them (OpenBLAS "
                     "picks its kernels for this CPU)")
    lines.append(f"{'network':<10} {'side':>4} {'tinyconv':>28} "
                 + (f"{'tinyconv, OpenBLAS own':>28} " if compare else "")
                 + f"{'torch':>28} {'x torch':>8} " + (f"{'x torch':>8} " if compare else "") + f"{'check losses':>20}")
    def cell(r, fw):
        if fw not in r:
            return ""
        c = r[fw]
        return f"{c['ms']:.1f} ({c['min_ms']:.1f}-{c['max_ms']:.1f})"

    for r in res["rows"]:
        losses = f"{r['tinyconv']['check_loss']:.4f}" + (f" / {r['torch']['check_loss']:.4f}" if "torch" in r else "")
        ratio = f"{r['x_torch']:.2f}x" if "x_torch" in r else ""
        ratio2 = f"{r['x_torch_blas_default']:.2f}x" if "x_torch_blas_default" in r else ""
        lines.append(f"{r['net']:<10} {r['side']:>4} {cell(r, 'tinyconv'):>28} "
                     + (f"{cell(r, BLAS_DEFAULT):>28} " if compare else "")
                     + f"{cell(r, 'torch'):>28} {ratio:>8} " + (f"{ratio2:>8} " if compare else "") + f"{losses:>20}")
    if res["torch_python"] is None:
        lines.append("(PyTorch not found: pass --torch-python PATH to add its column)")
    else:
        lines.append(f"sum of medians: {res['sum_x_torch']:.2f}x torch"
                     + (f"; OpenBLAS own: {res['sum_x_torch_blas_default']:.2f}x" if compare else ""))
        differ = [r["net"] for r in res["rows"]
                  if abs(r["tinyconv"]["check_loss"] - r["torch"]["check_loss"]) > 1e-3 * max(1.0, r["torch"]["check_loss"])]
        lines.append("eval-mode losses " + ("agree (same weights, same batch)" if not differ
                                            else "DIFFER for " + ", ".join(differ)))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", choices=NETS, default=NETS, help="networks to time (default: all)")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per framework and network (default 3)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per process (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (default 1)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=1, help="divide every channel count by this (default 1: the book's)")
    p.add_argument("--kernel", help="tinyconv's conv kernel (default: its default, auto; tune times numba against "
                                    "im2col in the untimed first step); such a run is not saved with the results")
    p.add_argument("--torch-python", help="interpreter for the PyTorch worker (default: this one)")
    p.add_argument("--json", help="write all results (every sample of every round) to this file")
    p.add_argument("--blas-env-compare", action="store_true",
                   help=f"also time tinyconv without {' and '.join(common.BLAS_TUNING_VARS)} where they are set "
                        "(OpenBLAS then picks its own kernels for this CPU): one more fresh process per round")
    common.add_result_arguments(p)
    p.add_argument("--quick", action="store_true", help="channels / 16, batch 2, 1 round of 1 step: a smoke test")
    p.add_argument("--worker", choices=("tinyconv", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--net", choices=NETS, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch, args.width = 1, 1, 0, 2, 16
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        with np.load(args.data, allow_pickle=False) as data:
            out = worker(args, data)
        with open(args.out, "w") as f:
            json.dump(out, f)
        return 0
    res = run(args)
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    torch_version = next((one.get("torch") for runs in res["runs"].values() for one in runs.get("torch", [])), None)
    if args.kernel:  # the saved results (and their figures) are the default kernel's
        print("not saved: a run with --kernel (use --json to keep it)")
        return 0
    common.save_if_asked(args, "d2l_ch7", res, result_rows(res), threads=args.threads, torch_version=torch_version,
                         command=common.command(__file__, argv))
    return 0


def result_rows(res: dict) -> list[dict]:
    """The result file's rows: each network's step (ms), then the sum of the medians over the networks (the
    headline; a single network is its own)."""
    out = []
    for r in res["rows"]:
        tiny, torch = r["tinyconv"], r.get("torch")
        out.append(common.result_row(f"{r['net']} ({r['side']}x{r['side']})", "ms",
                                     (tiny["ms"], tiny["min_ms"], tiny["max_ms"]),
                                     (torch["ms"], torch["min_ms"], torch["max_ms"]) if torch else None, net=r["net"]))
    per_net = list(out)
    if res.get("blas_env_compare"):
        for r in res["rows"]:
            tiny, torch = r[BLAS_DEFAULT], r.get("torch")
            out.append(common.result_row(f"{r['net']} ({r['side']}x{r['side']}), OpenBLAS's own kernels", "ms",
                                         (tiny["ms"], tiny["min_ms"], tiny["max_ms"]),
                                         (torch["ms"], torch["min_ms"], torch["max_ms"]) if torch else None,
                                         net=r["net"], blas_env="unset"))
    if len(per_net) > 1:
        tiny_sum = sum(r["tinyconv_median"] for r in per_net)
        torch_sum = sum(r["torch_median"] for r in per_net) if all(r["torch_median"] for r in per_net) else None
        out.append(common.result_row(f"sum of the medians ({len(res['rows'])} networks)", "ms", (tiny_sum, None, None),
                                     (torch_sum, None, None) if torch_sum else None, headline=True))
        if res.get("blas_env_compare"):
            out.append(common.result_row(f"sum of the medians ({len(res['rows'])} networks), OpenBLAS's own kernels",
                                         "ms", (sum(r[BLAS_DEFAULT]["ms"] for r in res["rows"]), None, None),
                                         (torch_sum, None, None) if torch_sum else None, blas_env="unset"))
    elif per_net:
        per_net[0]["headline"] = True
    return out


if __name__ == "__main__":
    sys.exit(main())
