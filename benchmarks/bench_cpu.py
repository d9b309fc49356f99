"""CPU time of a LeNet training step, one thread, fresh processes: numbers a busy machine barely moves.

    python benchmarks/bench_cpu.py                              # this checkout
    python benchmarks/bench_cpu.py --tree /path/to/other/checkout --rounds 4 --json cpu.json
    python benchmarks/bench_cpu.py --quick                      # smoke test

Wall-clock times on a shared machine measure the other jobs as much as tinyconv. This script measures what a
step costs in CPU time instead, with numba and BLAS on one thread (numba.set_num_threads(1), threadpoolctl), so
the numbers move little when other processes compete for the cores: the main thread's CPU time per step
(``time.thread_time``), the whole process's (``time.process_time``), minor page faults per step (fresh memory
pages, ``getrusage``) and Python function calls per step (``cProfile``, separate steps). ``--batch 1`` leaves
little but the Python and dispatch overhead of a step. Each tree (this checkout, plus every ``--tree``) runs in
its own fresh process per round, trees alternating; a process runs ``--warmup`` untimed steps, then ``--steps``
timed ones, and reports their medians; the table shows the median over rounds and the range of the per-process
medians. These are not wall-clock times and no ratio to PyTorch can be read from them (see bench_lenet.py and
bench_epoch.py for that).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker(args) -> dict:
    """Runs in a fresh process with ``args.root`` first on sys.path; prints one JSON line."""
    sys.path.insert(0, args.root)
    import cProfile
    import pstats
    import resource
    import time

    import numba
    import numpy as np
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    threadpool_limits(1)
    import tinyconv as tc
    import tinyconv.optim  # noqa: F401
    from tinyconv import functional as F
    from tinyconv.nn.models import LeNet

    tc.manual_seed(0)
    model = LeNet("modern")
    opt = tc.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    xs = [tc.tensor(rng.standard_normal((args.batch, 1, 28, 28)).astype(np.float32)) for _ in range(4)]
    ys = [tc.tensor(rng.integers(0, 10, args.batch)) for _ in range(4)]

    def step(i):
        loss = F.cross_entropy(model(xs[i % 4]), ys[i % 4])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(args.warmup):
        step(i)
    thread_s, process_s = [], []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(args.steps):
        t0, p0 = time.thread_time(), time.process_time()
        step(i)
        thread_s.append(time.thread_time() - t0)
        process_s.append(time.process_time() - p0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    prof = cProfile.Profile()
    prof.enable()
    for i in range(args.profile_steps):
        step(i)
    prof.disable()
    calls = pstats.Stats(prof).total_calls / max(args.profile_steps, 1)
    return {"root": args.root, "thread_ms": 1e3 * statistics.median(thread_s),
            "process_ms": 1e3 * statistics.median(process_s), "minor_faults_per_step": faults / args.steps,
            "calls_per_step": calls}


def run(args) -> dict:
    trees = [ROOT] + [os.path.abspath(t) for t in args.tree]
    runs = [[] for _ in trees]
    for _ in range(args.rounds):
        for tree, rs in zip(trees, runs):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--root", tree, "--batch", str(args.batch),
                   "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--profile-steps", str(args.profile_steps)]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                raise SystemExit(f"worker for {tree} failed:\n{p.stderr[-3000:]}")
            rs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    rows = []
    for tree, rs in zip(trees, runs):
        row = {"tree": tree, "processes": len(rs)}
        for key in ("thread_ms", "process_ms", "minor_faults_per_step", "calls_per_step"):
            vals = [r[key] for r in rs]
            row[key] = statistics.median(vals)
            row[key + "_range"] = [min(vals), max(vals)]
        rows.append(row)
    return {"batch": args.batch, "steps": args.steps, "rounds": args.rounds, "threads": 1, "rows": rows}


def table(res: dict) -> str:
    lines = [f"LeNet step, batch {res['batch']}, Adam, 1 thread; CPU time per step (not wall-clock), median of "
             f"{res['rounds']} fresh processes x {res['steps']} steps [range of per-process medians]",
             f"{'tree':<40} {'main thread ms':>22} {'process ms':>22} {'minor faults':>13} {'calls':>8}"]
    def cell(r, k, fmt):
        lo, hi = r[k + "_range"]
        return f"{r[k]:{fmt}} [{lo:{fmt}}-{hi:{fmt}}]"

    for r in res["rows"]:
        lines.append(f"{r['tree'][-40:]:<40} {cell(r, 'thread_ms', '.2f'):>22} {cell(r, 'process_ms', '.2f'):>22} "
                     f"{r['minor_faults_per_step']:>13.1f} {r['calls_per_step']:>8.0f}")
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", default=[], help="another checkout to compare (repeatable)")
    ap.add_argument("--rounds", type=int, default=4, help="fresh processes per tree, alternating")
    ap.add_argument("--steps", type=int, default=80, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (numba compile, caches)")
    ap.add_argument("--profile-steps", type=int, default=10, help="steps under cProfile for the call count")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 8, 1 round, few steps")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.steps, args.warmup, args.profile_steps = 8, 1, 5, 2, 2
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    res = run(args)
    print(table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
