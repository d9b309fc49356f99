"""The fused Conv2d+ReLU+MaxPool2d node against the three layers one by one (tinyconv only, one process).

    python benchmarks/bench_fusion.py                      # LeNet's two triples, batch 128, 200 samples each
    python benchmarks/bench_fusion.py --batch 256 --repeats 400 --json fusion.json
    python benchmarks/bench_fusion.py --quick              # smoke test

Both paths are tinyconv's, so they are timed in this one process (no other framework is imported), their samples
interleaved (fused, unfused, fused, ...) with ``tinyconv.nn.set_fusion`` switched between calls, so that load drifts
on the machine hit both alike. A sample is one forward of ``Sequential(Conv2d, ReLU, MaxPool2d)`` and its backward
from a gradient of ones (the input requires a gradient for conv2, as inside LeNet). The table gives the minimum and
median of the forward and backward times; the first layer of the table is LeNet's conv1, the second its conv2.
For the whole training step in fresh processes see ``bench_lenet.py --kernels default,unfused``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402  (also puts the repository root on sys.path)

import tinyconv as tc  # noqa: E402
from tinyconv import nn  # noqa: E402

# (name, C_in, C_out, kernel, padding, input size): LeNet's two conv layers, each followed by ReLU and a 2x2 pool
LAYERS = [("conv1+relu+pool", 1, 6, 5, 2, 28), ("conv2+relu+pool", 6, 16, 5, 0, 14)]


def measure(batch: int, repeats: int, warmup: int) -> list[dict]:
    rows = []
    previous = nn.set_fusion(True)
    try:
        for name, c_in, c_out, k, p, hw in LAYERS:
            tc.manual_seed(0)
            block = nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=p), nn.ReLU(), nn.MaxPool2d(2))
            x = tc.randn(batch, c_in, hw, hw, requires_grad=c_in > 1)
            samples = {(fused, phase): [] for fused in (True, False) for phase in ("forward", "backward")}
            for i in range(2 * (warmup + repeats)):
                fused = i % 2 == 0
                nn.set_fusion(fused)
                t0 = time.perf_counter()
                out = block(x)
                t1 = time.perf_counter()
                out.backward(tc.ones(*out.shape))
                t2 = time.perf_counter()
                if i >= 2 * warmup:
                    samples[(fused, "forward")].append(t1 - t0)
                    samples[(fused, "backward")].append(t2 - t1)
            row = dict(layer=name, shape=f"{batch}x{c_in}x{hw}x{hw} -> {c_out}, {k}x{k}")
            for fused in (True, False):
                tag = "fused" if fused else "unfused"
                for phase in ("forward", "backward"):
                    s = samples[(fused, phase)]
                    row[f"{tag}_{phase}_min_ms"] = min(s) * 1e3
                    row[f"{tag}_{phase}_median_ms"] = statistics.median(s) * 1e3
                total = [f + b for f, b in zip(samples[(fused, "forward")], samples[(fused, "backward")])]
                row[f"{tag}_total_median_ms"] = statistics.median(total) * 1e3
            row["fused_over_unfused"] = row["fused_total_median_ms"] / row["unfused_total_median_ms"]
            rows.append(row)
    finally:
        nn.set_fusion(previous)
    return rows


COLUMNS = [("layer", "layer"), ("shape", "input -> C_out"),
           ("fused_forward_min_ms", "fused fwd min"), ("unfused_forward_min_ms", "unfused fwd min"),
           ("fused_backward_min_ms", "fused bwd min"), ("unfused_backward_min_ms", "unfused bwd min"),
           ("fused_total_median_ms", "fused fwd+bwd median"), ("unfused_total_median_ms", "unfused fwd+bwd median"),
           ("fused_over_unfused", "fused / unfused")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=200, help="timed samples per path and layer")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="numba and BLAS threads (default: cores)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--markdown", metavar="PATH")
    ap.add_argument("--quick", action="store_true", help="batch 8, 3 samples: the smoke test")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.warmup = 8, 3, 1
    threads = common.set_threads(args.threads)
    info = common.machine_info()
    rows = measure(args.batch, args.repeats, args.warmup)
    title = (f"Conv2d+ReLU+MaxPool2d fused vs one by one, forward + backward, float32, ms; one process, samples "
             f"interleaved, {args.repeats} each, batch {args.batch}; commit {info.get('tinyconv_commit')}; "
             f"{info['cpu']}, {threads['threads']} threads")
    print(common.format_table(rows, COLUMNS, title))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(common.markdown_table(rows, COLUMNS, title) + "\n")
    if args.json:
        common.write_json(args.json, dict(machine=info, threads=threads, batch=args.batch, repeats=args.repeats,
                                          results=rows))


if __name__ == "__main__":
    main()
