"""CPU time of a convolution's forward + backward (with bias) at one thread: a measure that stays stable when
other jobs share the cores (wall-clock timings there are not representative).

    python benchmarks/conv_cpu_time.py                       # tinyconv "auto" on every shape, then torch
    python benchmarks/conv_cpu_time.py --kernels auto,im2col,numba --configs resnet --repeats 9

tinyconv's kernels are timed in this process (interleaved, numba and BLAS on one thread); PyTorch's column comes
from a separate process (this script with ``--torch-worker`` under ``$TINYCONV_BENCH_TORCH_PYTHON``), which never
imports tinyconv or numba. Each sample is ``time.thread_time()`` around one call; the table gives medians and the
ratio of tinyconv's median to PyTorch's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conv import CONFIG_SETS, make_inputs  # noqa: E402


def _median_cpu(fns, repeats):
    """Per fn, the median thread CPU time (ms) of ``repeats`` calls, the fns interleaved."""
    for f in fns:
        f()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.thread_time()
            f()
            samples[i].append(time.thread_time() - t0)
    return [float(np.median(s)) * 1e3 for s in samples]


def tinyconv_step(kernel, x, w, b, gy, s, p, g):
    from tinyconv import kernels as registry

    be = registry.get_kernel(kernel)
    k = w.shape[2]
    h = x.shape[2]

    def step():
        be.conv2d_forward(x, w, s, p, 1, g, b)
        be.conv2d_grad_input(gy, w, (h, h), s, p, 1, g)
        be.conv2d_grad_weight(x, gy, (k, k), s, p, 1, g)
        gy.sum(axis=(0, 2, 3))
    return step


def torch_step(torch, x, w, b, gy, s, p, g):
    tx, tw, tb, tgy = (torch.from_numpy(a) for a in (x, w, b, gy))

    def step():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, tb, s, p, 1, g)
        torch.ops.aten.convolution_backward(tgy, tx, tw, [tw.shape[0]], [s, s], [p, p], [1, 1], False, [0, 0], g,
                                            [True, True, True])
    return step


def inputs(cfg):
    name, n, c_in, h, c_out, k, s, p, g = cfg
    x, w, gy = make_inputs(n, c_in, h, c_out, k, s, p, g)
    b = np.random.default_rng(1).standard_normal(c_out).astype(np.float32)
    return x, w, b, gy, s, p, g


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", choices=sorted(CONFIG_SETS), default="all")
    ap.add_argument("--kernels", default="auto")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--torch-python", default=os.environ.get("TINYCONV_BENCH_TORCH_PYTHON"))
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    configs = CONFIG_SETS[args.configs]
    if args.torch_worker:
        import torch

        torch.set_num_threads(1)
        out = {}
        for cfg in configs:
            out[cfg[0]] = _median_cpu([torch_step(torch, *inputs(cfg))], args.repeats)[0]
        print(json.dumps(out))
        return
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    names = [k for k in args.kernels.split(",") if k]
    rows = {}
    with threadpool_limits(1):
        for cfg in configs:
            ins = inputs(cfg)
            rows[cfg[0]] = dict(zip(names, _median_cpu([tinyconv_step(k, *ins) for k in names], args.repeats)))
    torch_ms = {}
    if args.torch_python:
        res = subprocess.run([args.torch_python, os.path.abspath(__file__), "--torch-worker", "--configs",
                              args.configs, "--repeats", str(args.repeats)], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if res.returncode == 0:
            torch_ms = json.loads(res.stdout.strip().splitlines()[-1])
        else:
            print(res.stderr, file=sys.stderr)
    head = "| config | " + " | ".join(f"{k} ms" for k in names) + " | torch ms | " + " | ".join(
        f"{k} / torch" for k in names) + " |"
    print("CPU time per fwd+bwd call (bias, float32), one thread, median of", args.repeats)
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for name, r in rows.items():
        t = torch_ms.get(name)
        ratios = [f"{r[k] / t:.2f}" if t else "-" for k in names]
        print(f"| {name} | " + " | ".join(f"{r[k]:.1f}" for k in names) + f" | {t:.1f} | " if t else
              f"| {name} | " + " | ".join(f"{r[k]:.1f}" for k in names) + " | - | ", end="")
        print(" | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
