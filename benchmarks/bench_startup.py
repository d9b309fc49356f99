"""How long a fresh process takes to reach (and finish) its first LeNet training step.

    python benchmarks/bench_startup.py                  # nojit / warm cache x3 each, cold cache x1
    python benchmarks/bench_startup.py --repeats 5 --cold 2 --json startup.json

Each measurement is a new Python process that imports tinyconv, builds LeNet (modern) and Adam, and runs two
training steps on one synthetic batch of 128. The parent notes the wall-clock time just before starting it; the
child reports when its imports finished, when the model was ready, and when the first and second steps ended,
all relative to that moment (so interpreter start-up and imports are included).

Modes:
* ``nojit``  -- ``NUMBA_DISABLE_JIT=1``: no compilation, no cache loading (numba-decorated code runs as Python).
* ``warm``   -- the normal environment, after a priming run filled numba's on-disk cache.
* ``cold``   -- ``NUMBA_CACHE_DIR`` pointed at a new empty directory: everything is compiled.

Target: warm "first step done" <= nojit "first step done" + 1.5 s.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CHILD = r"""
import sys, time, json
sys.path.insert(0, {root!r})
marks = {{}}
import numpy as np
import tinyconv as tc
import tinyconv.optim
from tinyconv import functional as F
from tinyconv.nn.models import LeNet
marks["imported"] = time.time()
tc.manual_seed(0)
model = LeNet("modern", kernel={kernel!r})
opt = tc.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = tc.tensor(rng.standard_normal(({batch}, 1, 28, 28), dtype=np.float32))
y = rng.integers(0, 10, size={batch})
marks["model_ready"] = time.time()
for name in ("first_step", "second_step"):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    marks[name] = time.time()
print("RESULT " + json.dumps(marks))
"""

MARKS = ("imported", "model_ready", "first_step", "second_step")


def run_child(kernel, batch, env, threads, timeout):
    code = CHILD.format(root=common.REPO_ROOT, kernel=None if kernel == "default" else kernel, batch=batch)
    env = dict(env, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(threads)))
    t0 = time.time()
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode or line is None:
        return {"error": p.stderr.strip()[-500:]}
    marks = json.loads(line[7:])
    return {k: marks[k] - t0 for k in MARKS}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", default="default", help="LeNet's conv kernel (default: the library default)")
    ap.add_argument("--repeats", type=int, default=3, help="processes per mode for nojit and warm")
    ap.add_argument("--cold", type=int, default=1, help="processes with an empty numba cache")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=150)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--quick", action="store_true", help="1 process per mode, batch 8, no cold run")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.cold, args.batch = 1, 0, 8
    return args


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or common.default_threads()
    info = common.machine_info()
    print(common.describe_machine(info, {"threads": threads}))
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    nojit = dict(base, NUMBA_DISABLE_JIT="1")
    notes = [n for n in [common.load_note()] if n]
    t_start = time.perf_counter()
    prime = run_child(args.kernel, args.batch, base, threads, args.timeout)  # fills the on-disk cache
    if "error" in prime:
        notes.append(f"priming run failed: {prime['error']}")
    runs = {"nojit": [], "warm": [], "cold": []}
    for _ in range(args.repeats):  # interleaved so that load changes hit both alike
        runs["nojit"].append(run_child(args.kernel, args.batch, nojit, threads, args.timeout))
        runs["warm"].append(run_child(args.kernel, args.batch, base, threads, args.timeout))
    for _ in range(args.cold):
        with tempfile.TemporaryDirectory(prefix="tinyconv-cold-") as d:
            runs["cold"].append(run_child(args.kernel, args.batch, dict(base, NUMBA_CACHE_DIR=d), threads,
                                          args.timeout))
    rows = []
    for mode, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        for r in rs:
            if "error" in r:
                notes.append(f"{mode}: {r['error']}")
        if not ok:
            continue
        row = dict(mode=mode, processes=len(ok))
        for k in MARKS:
            row[k + "_s"] = statistics.median(r[k] for r in ok)
        row["first_step_only_s"] = row["first_step_s"] - row["model_ready_s"]
        row["second_step_only_s"] = row["second_step_s"] - row["first_step_s"]
        rows.append(row)
    by = {r["mode"]: r for r in rows}
    targets = []
    if "nojit" in by and "warm" in by:
        d = by["warm"]["first_step_s"] - by["nojit"]["first_step_s"]
        targets.append(dict(target="warm-cache first step done minus NUMBA_DISABLE_JIT=1 (s)", value=d, limit=1.5,
                            ok=d <= 1.5))
    cols = [("mode", "mode"), ("processes", "runs"), ("imported_s", "imported s"),
            ("model_ready_s", "model ready s"), ("first_step_s", "1st step done s"),
            ("second_step_s", "2nd step done s"), ("first_step_only_s", "1st step s"),
            ("second_step_only_s", "2nd step s")]
    print(common.format_table(rows, cols, title=f"\nstart-up to first LeNet step (kernel={args.kernel}, batch "
                                                f"{args.batch}; seconds since process spawn, medians)"))
    if targets:
        print(common.format_table(targets, [("target", "target"), ("value", "measured"), ("limit", "limit"),
                                            ("ok", "met")], title="\ntargets"))
    elapsed = time.perf_counter() - t_start
    print(f"\nbenchmark time {elapsed:.1f} s")
    for n in notes:
        print("note:", n)
    payload = dict(machine=info, args=vars(args), startup=rows, runs=runs, targets=targets, notes=notes,
                   elapsed_s=elapsed)
    if args.json:
        common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
