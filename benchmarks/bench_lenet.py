"""LeNet (modern: ReLU + max-pool) training throughput, per convolution kernel and against PyTorch.

    python benchmarks/bench_lenet.py                     # real MNIST (cached), batch 128, Adam
    python benchmarks/bench_lenet.py --synthetic --steps 60 --json lenet.json
    python benchmarks/bench_lenet.py --quick             # smoke test

Every variant runs in its own fresh processes, ``--rounds`` of them, variants alternating (tinyconv with each
kernel, then PyTorch), so machine noise hits them alike; a process runs ``--warmup`` untimed steps and then
``--round`` timed ones, and the step time is the median over all timed steps of all its processes. tinyconv's
workers never import torch; PyTorch's worker is ``torch_lenet.py --step-worker`` run by PyTorch's interpreter
(``--torch-python`` / ``$TINYCONV_BENCH_TORCH_PYTHON``), which imports neither tinyconv nor numba, and starts
from the same initial weights. A step is what a training loop does: take the next batch from the data loader,
forward, cross-entropy, zero_grad, backward, Adam step. ``minor faults/step`` (getrusage) does not depend on the
machine's load: it counts fresh memory pages a step had mapped in. In the last round each tinyconv variant also
runs ``--profile-steps`` steps under ``tc.profile`` for the split by layer/op (after one untimed profiled step:
the profiler's hooks make the model call unfused kernels, which load or compile there), and a few steps with the
peak-RSS high-water mark reset to measure its memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402  (also puts the repository root on sys.path)

import tinyconv as tc  # noqa: E402
import tinyconv.data  # noqa: E402,F401
import tinyconv.optim  # noqa: E402,F401
from tinyconv import functional as F  # noqa: E402
from tinyconv import nn  # noqa: E402
from tinyconv.nn.models import LeNet  # noqa: E402
from tinyconv.profiler import record  # noqa: E402

DEFAULT_KERNELS = "default,direct,im2col,numba"


# --------------------------------------------------------------------------------------------------- data
def load_data(synthetic: bool, batch: int, notes: list, n_synthetic: int = 16):
    """(images, labels) for a DataLoader: MNIST's training split, or random digits-shaped data."""
    if not synthetic:
        try:
            ds = tc.data.MNIST(train=True, download=True, progress=False)
            return (ds.data, ds.targets), "MNIST train (60000)"
        except Exception as e:
            notes.append(f"MNIST unavailable ({type(e).__name__}: {e}); using synthetic data")
    rng = np.random.default_rng(0)
    n = n_synthetic * batch
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.int64)
    return (images, labels), f"synthetic ({n} random images)"


def batch_stream(dataset, batch: int, seed: int):
    loader = tc.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, seed=seed)
    while True:
        yield from loader


# ------------------------------------------------------------------------------------------------ variants
class TinyconvVariant:
    def __init__(self, kernel: str, dataset, batch: int, lr: float):
        self.name = f"tinyconv[{kernel}]"
        self.kernel = kernel
        # 'unfused': the default kernels with Sequential's Conv2d+ReLU+MaxPool2d fusion off (the reference path)
        nn.set_fusion(kernel != "unfused")
        tc.manual_seed(0)
        self.model = LeNet("modern", kernel=None if kernel in ("default", "unfused") else kernel)
        self.opt = tc.optim.Adam(self.model.parameters(), lr=lr)
        self.data = batch_stream(dataset, batch, seed=0)
        self.last_loss = None
        self.first_loss = None

    def step(self):
        with record("data loading"):
            xb, yb = next(self.data)
            x = tc.tensor(xb)
        out = self.model(x)
        with record("loss"):
            loss = F.cross_entropy(out, yb)
        with record("zero_grad"):
            self.opt.zero_grad()
        loss.backward()
        with record("optimizer"):
            self.opt.step()
        self.last_loss = float(loss.item())
        if self.first_loss is None:
            self.first_loss = self.last_loss

    def split_step(self, clock):
        """One step with a perf_counter split by phase (no profiler): {phase: seconds}."""
        t0 = clock()
        xb, yb = next(self.data)
        x = tc.tensor(xb)
        t1 = clock()
        out = self.model(x)
        t2 = clock()
        loss = F.cross_entropy(out, yb)
        t3 = clock()
        self.opt.zero_grad()
        loss.backward()
        t4 = clock()
        self.opt.step()
        t5 = clock()
        return {"data": t1 - t0, "forward": t2 - t1, "loss": t3 - t2, "backward": t4 - t3, "optimizer": t5 - t4}


# ---------------------------------------------------------------------------------------------------- run
def worker(args) -> dict:
    """One tinyconv variant in this (fresh) process, which never imports torch: warm-up, ``--round`` timed steps,
    phase split, optional profile and memory pass. Called by the parent through ``--worker NAME``."""
    name = args.worker
    threads = common.set_threads(args.threads)
    if args.blas_threads:
        threads["blas"] = args.blas_threads if common.set_blas_threads(args.blas_threads) else "unchanged"
    notes = []
    dataset, data_desc = load_data(args.synthetic, args.batch, notes)
    v = TinyconvVariant(name, dataset, args.batch, args.lr)
    clock = time.perf_counter
    t = clock()
    v.step()
    first = clock() - t
    for _ in range(args.warmup - 1):
        v.step()
    steps = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.round):
        t = clock()
        v.step()
        steps.append(clock() - t)
    minflt = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / max(1, args.round)
    splits = [v.split_step(clock) for _ in range(args.worker_split)]
    out = dict(variant=v.name, kernel=v.kernel, threads=threads, data=data_desc, first_step_s=first, step_s=steps,
               splits=splits, first_loss=v.first_loss, last_loss=v.last_loss, minflt_per_step=minflt, notes=notes)
    if args.worker_profile and isinstance(v, TinyconvVariant) and args.profile_steps > 0:
        # one step under the profiler first, not counted: the profiler's module hooks turn off the fused
        # conv+ReLU+pool node, so the unfused kernels are called (compiled, on a cold cache) for the first time here
        with tc.profile(v.model):
            v.step()
        with tc.profile(v.model) as prof:
            t = clock()
            for _ in range(args.profile_steps):
                v.step()
            wall = clock() - t
        out["profile"] = dict(steps=args.profile_steps, step_ms_profiled=wall / args.profile_steps * 1e3,
                              by_scope=prof.to_dict(group_by="scope"), by_op=prof.to_dict(group_by="op"),
                              table_scope=prof.table(sort_by="total", group_by="scope", per=args.profile_steps),
                              table_op=prof.table(sort_by="self", group_by="op", per=args.profile_steps))
    if args.worker_profile and not args.no_memory:
        common.prepare_memory_measurement()
        m = common.peak_memory(lambda: [v.step() for _ in range(2)])
        out["step_peak_rss_mb"] = m["rss_mb"]
        out["step_traced_mb"] = m["traced_mb"] if isinstance(v, TinyconvVariant) else None
    out["process_peak_rss_mb"] = common.peak_rss_mb()
    out["torch_imported"] = "torch" in sys.modules  # must stay False: see run()
    return out


def torch_worker_cmd(torch_py, args, path, split, init_npz):
    """benchmarks/torch_lenet.py's step worker: a process with PyTorch only (no tinyconv, no numba)."""
    cmd = [torch_py, os.path.join(HERE, "torch_lenet.py"), "--step-worker", "--json", path, "--round",
           str(args.round), "--warmup", str(args.warmup), "--split", str(split), "--batch-size", str(args.batch),
           "--lr", str(args.lr), "--threads", str(args.threads or common.default_threads()), "--init-from", init_npz]
    return cmd + (["--synthetic"] if args.synthetic else [])


PEERS = ("jax", "chainer", "tinygrad")


def peer_worker_cmd(py, peer, args, path, init_npz):
    """benchmarks/peer_lenet.py: a JAX / Chainer / tinygrad step worker, in that framework's interpreter."""
    cmd = [py, os.path.join(HERE, "peer_lenet.py"), "--framework", peer, "--json", path, "--round", str(args.round),
           "--warmup", str(args.warmup), "--batch-size", str(args.batch), "--lr", str(args.lr), "--init-from",
           init_npz, "--threads", str(args.threads or common.default_threads())]
    return cmd + (["--synthetic"] if args.synthetic else [])


def run(args, notes):
    """Each variant runs in fresh worker processes, ``--rounds`` of them, variants alternating: tinyconv workers
    never import torch and the torch worker (benchmarks/torch_lenet.py, PyTorch's interpreter) never imports
    tinyconv or numba, so no process has another framework's thread pools or allocator in it, and load drifts
    on the machine hit every variant alike."""
    names, peers, torch_py, torch_version = _variants(args, notes)
    results = _run_workers(args, names, peers, torch_py, torch_version, notes)
    return _summarise(args, results, peers, notes)


def _variants(args, notes):
    """The variants to run: tinyconv's kernels, then torch and the peers asked for (each with its interpreter)."""
    torch_py, torch_version = (None, "--no-torch") if args.no_torch else common.peer_python("torch", args.torch_python)
    names = [k for k in args.kernels.split(",") if k]
    if torch_py:
        names.append("torch")
    elif not args.no_torch:
        notes.append(f"no torch row or tinyconv/torch ratio: {torch_version}")
    peers = {}  # optional, only when asked for: --jax-python etc. or $TINYCONV_BENCH_JAX_PYTHON etc.
    for peer in PEERS:
        explicit = getattr(args, f"{peer}_python") or os.environ.get(common.PEER_PYTHON_ENV[peer])
        if explicit:
            py, why = common.peer_python(peer, explicit)
            if py:
                peers[peer] = py
                names.append(peer)
            else:
                notes.append(f"no {peer} row: {why}")
    return names, peers, torch_py, torch_version


def _run_workers(args, names, peers, torch_py, torch_version, notes) -> dict:
    """variant -> the results of its worker processes, ``--rounds`` of them, variants alternating."""
    per_round_split = -(-args.split_steps // args.rounds)
    results = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-lenet-") as tmp:
        init_npz = os.path.join(tmp, "lenet-init.npz")  # the tinyconv workers' initial weights, for torch's
        tc.manual_seed(0)
        np.savez(init_npz, **{k: np.array(v.numpy()) for k, v in LeNet("modern").state_dict().items()})
        for r in range(args.rounds):
            last = r == args.rounds - 1
            for n in names:
                path = os.path.join(tmp, f"{n}-{r}.json")
                if n == "torch" or n in peers:
                    cmd = (torch_worker_cmd(torch_py, args, path, per_round_split, init_npz) if n == "torch"
                           else peer_worker_cmd(peers[n], n, args, path, init_npz))
                    p = subprocess.run(cmd, capture_output=True, text=True, env=common.peer_env(), timeout=900)
                    if p.returncode:
                        notes.append(f"variant {n!r} failed: {p.stderr.strip()[-600:]}")
                        continue
                    w = json.load(open(path))
                    w["torch_version"] = torch_version if n == "torch" else None
                    results[n].append(w)
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", n, "--worker-out", path,
                       "--worker-split", str(per_round_split), "--round", str(args.round), "--warmup",
                       str(args.warmup), "--batch", str(args.batch), "--lr", str(args.lr),
                       "--profile-steps", str(args.profile_steps)]
                cmd += ["--threads", str(args.threads)] if args.threads else []
                cmd += ["--blas-threads", str(args.blas_threads)] if args.blas_threads else []
                cmd += ["--synthetic"] if args.synthetic else []
                cmd += ["--no-memory"] if args.no_memory else []
                cmd += ["--worker-profile"] if last else []
                p = subprocess.run(cmd, capture_output=True, text=True, env=common.tinyconv_env(), timeout=900)
                if p.returncode:
                    notes.append(f"variant {n!r} failed: {p.stderr.strip()[-600:]}")
                    continue
                results[n].append(json.load(open(path)))
    return results


def _summarise(args, results: dict, peers: dict, notes) -> dict:
    """The table's rows (medians, ranges, ratios to torch and to the fastest) and the last round's profiles."""
    rows, profiles, data_desc, threads = [], {}, None, None
    for n, runs in results.items():
        if not runs:
            continue
        st = [t for w in runs for t in w["step_s"]]
        splits = [sp for w in runs for sp in w["splits"]]
        w0, wl = runs[0], runs[-1]
        data_desc, threads = w0["data"], w0["threads"] if n != "torch" else threads or w0["threads"]
        notes.extend(x for w in runs for x in w["notes"])
        med = statistics.median(st)
        per_proc = [statistics.median(w["step_s"]) * 1e3 for w in runs]
        r = dict(variant=w0.get("version") or w0["variant"], kernel=w0["kernel"], processes=len(runs), steps=len(st),
                 step_ms=med * 1e3,
                 min_ms=min(st) * 1e3, max_ms=max(st) * 1e3, images_per_s=args.batch / med,
                 proc_min_ms=min(per_proc), proc_max_ms=max(per_proc),
                 first_step_ms=statistics.median(w["first_step_s"] for w in runs) * 1e3,
                 first_loss=w0["first_loss"], last_loss=wl["last_loss"],
                 minflt_per_step=statistics.median(w["minflt_per_step"] for w in runs),
                 step_peak_rss_mb=wl.get("step_peak_rss_mb"), step_traced_mb=wl.get("step_traced_mb"),
                 process_peak_rss_mb=max(w["process_peak_rss_mb"] for w in runs),
                 torch_in_process=any(w.get("torch_imported") for w in runs) if n != "torch" and n not in peers else None)
        for phase in ("data", "forward", "loss", "backward", "optimizer"):
            vals = [sp[phase] for sp in splits]
            r[f"{phase}_ms"] = statistics.median(vals) * 1e3 if vals else None
        rows.append(r)
        if "profile" in wl:
            profiles[w0["variant"]] = wl["profile"]
    torch_ms = next((r["step_ms"] for r in rows if r["kernel"] == "torch"), None)
    fastest = min(r["step_ms"] for r in rows) if rows else None
    for r in rows:
        r["x_torch"] = r["step_ms"] / torch_ms if torch_ms else None
        r["x_fastest"] = r["step_ms"] / fastest
    torch_version = next((w["torch_version"] for w in results.get("torch", [])), None)
    return dict(threads=threads or {"threads": args.threads or common.default_threads()}, data=data_desc, rows=rows,
                profiles=profiles, torch_version=torch_version)


def split_table(profile: dict, steps: int) -> list[dict]:
    """Per-step ms of each (scope, phase) from the profiler's by-scope view, largest first."""
    out = []
    for e in profile["by_scope"]["events"]:
        if e["kind"] == "op":
            what = f"{e['name']} {e['phase']}"
            ms = e["total_s"] * 1e3 / steps
        elif e["kind"] == "engine":
            what = "autograd engine (self: graph walk, grad accumulation)"
            ms = e["self_s"] * 1e3 / steps
        elif e["kind"] == "module":
            what = f"{e['name']} forward, Python/framework self time"
            ms = e["self_s"] * 1e3 / steps
        else:
            what = f"{e['name']} (self)"
            ms = e["self_s"] * 1e3 / steps
        out.append(dict(what=what, ms_per_step=ms, calls_per_step=e["count"] / steps))
    s = profile["by_scope"]["summary"]
    out.append(dict(what="untracked (outside every op/region/module)", ms_per_step=s["untracked_s"] * 1e3 / steps,
                    calls_per_step=None))
    out.sort(key=lambda r: -r["ms_per_step"])
    total = sum(r["ms_per_step"] for r in out)
    for r in out:
        r["pct"] = 100 * r["ms_per_step"] / total if total else None
    return out


COLUMNS = [("variant", "variant"), ("processes", "procs"), ("steps", "steps"), ("step_ms", "step ms"), ("min_ms", "min"),
           ("max_ms", "max"), ("images_per_s", "images/s"), ("x_torch", "x torch"), ("x_fastest", "x fastest"),
           ("first_step_ms", "1st step ms"), ("minflt_per_step", "minor faults/step"),
           ("step_traced_mb", "step peak traced MB"),
           ("process_peak_rss_mb", "process peak RSS MB"),
           ("first_loss", "loss first"), ("last_loss", "loss last")]
SPLIT_COLUMNS = [("variant", "variant"), ("data_ms", "data"), ("forward_ms", "forward"), ("loss_ms", "loss"),
                 ("backward_ms", "backward"), ("optimizer_ms", "optimizer"), ("step_ms", "step (median)")]


def markdown(rows, args, info, res) -> str:
    """The step table as markdown: medians with the spread of the per-process medians, ratios to torch."""
    table = []
    torch_row = next((r for r in rows if r["kernel"] == "torch"), None)
    for r in rows:
        ratio = None
        if torch_row is not None:
            ratio = common.with_spread(r["step_ms"] / torch_row["step_ms"], r["proc_min_ms"] / torch_row["proc_max_ms"],
                                       r["proc_max_ms"] / torch_row["proc_min_ms"], "×")
        table.append(dict(variant=r["variant"], step=common.with_spread(r["step_ms"], r["proc_min_ms"],
                                                                         r["proc_max_ms"]),
                          images_per_s=r["images_per_s"], x_torch=ratio, faults=r.get("minflt_per_step"),
                          first=r["first_step_ms"], rss=r["process_peak_rss_mb"]))
    cols = [("variant", "variant"), ("step", "step ms, median (per-process medians)"),
            ("images_per_s", "images/s"), ("x_torch", "x torch (range: fastest vs slowest process)"),
            ("faults", "minor page faults/step"), ("first", "1st step ms"), ("rss", "peak RSS MB")]
    head = (f"LeNet (modern) training step, batch {args.batch}, Adam, {res['data']}; each variant {args.rounds} fresh "
            f"processes x {args.round} steps, alternating; commit {info.get('tinyconv_commit') or '?'}; "
            f"{info['cpu']}, {res['threads'].get('threads')} threads.")
    cmd = " ".join(["python benchmarks/bench_lenet.py", *(args.argv or [])])
    return common.markdown_table(table, cols, head) + f"\n\nReproduce: `{cmd}`"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default=DEFAULT_KERNELS,
                    help="comma-separated: default (LeNet's default kernel), unfused (default with the "
                         "conv+ReLU+pool fusion off), direct, im2col, numba")
    ap.add_argument("--rounds", type=int, default=4, help="worker processes per variant (variants alternate)")
    ap.add_argument("--round", type=int, default=10, help="timed steps per worker process")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each worker process")
    ap.add_argument("--split-steps", type=int, default=10, help="steps timed phase by phase")
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="numpy's OpenBLAS threads in the tinyconv workers (default: --threads)")
    ap.add_argument("--synthetic", action="store_true", help="random data instead of MNIST")
    ap.add_argument("--no-torch", action="store_true")
    for peer in PEERS:
        ap.add_argument(f"--{peer}-python", metavar="PYTHON",
                        help=f"interpreter with {peer}: adds a {peer} row (peer_lenet.py; default: "
                             f"${common.PEER_PYTHON_ENV[peer]}, else no row)")
    ap.add_argument("--torch-python", metavar="PYTHON",
                    help="interpreter with PyTorch for the torch worker (default: $TINYCONV_BENCH_TORCH_PYTHON, "
                         "else this one)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    common.add_result_arguments(ap)
    ap.add_argument("--markdown", metavar="PATH", help="write the markdown step table here (it is also printed)")
    ap.add_argument("--quick", action="store_true", help="few steps, batch 16, synthetic (smoke test)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--worker-split", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worker-profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = [] if args.worker else list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.rounds, args.round, args.warmup, args.split_steps, args.profile_steps = 1, 3, 1, 2, 2
        args.batch, args.synthetic = 16, True
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        common.write_json(args.worker_out, worker(args))
        return None
    notes = [n for n in [common.load_note()] if n]
    t0 = time.perf_counter()
    res = run(args, notes)
    info = common.machine_info(res.get("torch_version"))
    print(common.describe_machine(info, res["threads"]))
    print(f"data: {res['data']}; batch {args.batch}; Adam lr {args.lr}; per variant {args.rounds} fresh processes "
          f"(variants alternating) x {args.round} timed steps, each after {args.warmup} warm-up steps")
    rows = res["rows"]
    print(common.format_table(rows, COLUMNS, title="\nLeNet (modern) training step"))
    print(common.format_table(rows, SPLIT_COLUMNS,
                              title=f"\nstep split by phase (ms, median of {args.split_steps} steps, perf_counter)"))
    split_rows = {}
    for name, prof in res["profiles"].items():
        split_rows[name] = split_table(prof, prof["steps"])
        print(f"\n{name}: profiled step {prof['step_ms_profiled']:.2f} ms (unprofiled "
              f"{next(r['step_ms'] for r in rows if r['variant'] == name):.2f} ms); split by layer/op per step:")
        print(common.format_table(split_rows[name], [("what", "scope / phase"), ("ms_per_step", "ms/step"),
                                                     ("pct", "%"), ("calls_per_step", "calls/step")]))
        print(f"\n{name}: ops by self time (all layers together)")
        print(prof["table_op"])
    targets = []
    default = next((r for r in rows if r["kernel"] == "default"), None)
    if default and default["x_torch"]:
        limit = common.BENCHMARKS["lenet"][1]
        targets.append(dict(target="LeNet step, default kernels (x torch)", value=default["x_torch"], limit=limit,
                            ok=default["x_torch"] <= limit))
    if targets:
        print(common.format_table(targets, [("target", "target"), ("value", "measured"), ("limit", "limit"),
                                            ("ok", "met")], title="\ntargets"))
    elapsed = time.perf_counter() - t0
    print(f"\nbenchmark time {elapsed:.1f} s (process peak RSS: per variant above, getrusage in its worker)")
    for n in notes:
        print("note:", n)
    md = markdown(rows, args, info, res)
    print("\nmarkdown:\n\n" + md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    payload = dict(machine=info, args=vars(args), data=res["data"], threads=res["threads"], lenet=rows,
                   split=split_rows, profiles={k: {kk: vv for kk, vv in v.items() if not kk.startswith("table")}
                                                for k, v in res["profiles"].items()},
                   targets=targets, peak_rss_mb=common.peak_rss_mb(), notes=notes, elapsed_s=elapsed)
    if args.json:
        common.write_json(args.json, payload)
    common.save_if_asked(args, "lenet", payload, result_rows(rows), threads=res["threads"],
                         torch_version=res.get("torch_version"), command=common.command(__file__, args.argv), info=info)
    return payload


def result_rows(rows: list[dict]) -> list[dict]:
    """The result file's rows: each tinyconv variant's step against PyTorch's (median, fastest and slowest step),
    with the ratio's range from the fastest and slowest worker processes; the default kernels are the headline."""
    torch_row = next((r for r in rows if r["kernel"] == "torch"), None)
    out = []
    for r in rows:
        if not r["variant"].startswith("tinyconv"):
            continue
        extra = {}
        if torch_row is not None:
            extra = dict(ratio_min=r["proc_min_ms"] / torch_row["proc_max_ms"],
                         ratio_max=r["proc_max_ms"] / torch_row["proc_min_ms"])
        out.append(common.result_row(f"training step, {r['variant']}", "ms", (r["step_ms"], r["min_ms"], r["max_ms"]),
                                     (torch_row["step_ms"], torch_row["min_ms"], torch_row["max_ms"])
                                     if torch_row is not None else None,
                                     kernel=r["kernel"], headline=r["kernel"] == "default", **extra))
    return out


if __name__ == "__main__":
    main()
