"""The headline: a whole MNIST training run as a user starts it, tinyconv against PyTorch, each in a fresh process.

    python benchmarks/bench_epoch.py                          # 3 rounds x 2 epochs on all 60k images, + 1 cold cache
    python benchmarks/bench_epoch.py --rounds 5 --markdown epoch.md --json epoch.json
    python benchmarks/bench_epoch.py --limit 12800            # shorter: the first 12,800 training images
    python benchmarks/bench_epoch.py --quick                  # smoke test: generated data, 512 images, 1 round

Each round starts two processes, one after the other (which goes first alternates round by round):

* ``python -m tinyconv train --epochs E --augment 0 --out TMP`` with this checkout first on ``PYTHONPATH``; its
  per-epoch train and eval seconds and test accuracy are read from ``TMP/metrics.csv``;
* ``benchmarks/torch_lenet.py --epochs E`` under PyTorch's interpreter (``--torch-python`` /
  ``$TINYCONV_BENCH_TORCH_PYTHON``): the same data, normalisation, model, initialisation scheme, Adam 1e-3,
  batch 128, cosine schedule per batch, per-batch loss/accuracy bookkeeping and progress bar. It imports neither
  tinyconv nor numba, and the tinyconv process never imports torch.

Both run with their defaults otherwise (tinyconv: numba threads = usable CPUs; PyTorch: ``torch.set_num_threads``
= usable CPUs, the same count). From outside, ``wait4`` gives each process's wall time, CPU seconds, peak RSS and
minor page faults (the last do not depend on the machine's load). Then ``--cold`` more tinyconv runs with
``NUMBA_CACHE_DIR`` pointing at a new empty folder: the first epoch including every numba compilation, against
the warm-cache first epochs of the rounds.

Numbers are medians over the rounds with the min-max spread; a ratio is tinyconv's median over PyTorch's, with
the spread of the per-round ratios. ``--markdown`` writes the tables as markdown.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402  (imports neither tinyconv nor torch)


# ------------------------------------------------------------------------------------------------ data
def write_fake_mnist(root: str) -> None:
    """Generated IDX files of MNIST's sizes in ROOT/mnist (for --quick / CI: no download, no cache needed)."""
    rng = np.random.default_rng(0)
    folder = os.path.join(root, "mnist")
    os.makedirs(folder, exist_ok=True)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[np.arange(n), 2 * labels + 3, 4:24] = 255  # a bar whose row is the label: learnable
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb", compresslevel=1) as f:
                f.write(header + arr.tobytes())


# ------------------------------------------------------------------------------------------------ runs
def common_args(args) -> list[str]:
    out = ["--epochs", str(args.epochs)]
    out += ["--limit", str(args.limit)] if args.limit else []
    out += ["--test-limit", str(args.test_limit)] if args.test_limit else []
    out += ["--data", args.data] if args.data else []
    out += [] if args.progress else ["--no-progress"]
    return out


def run_tinyconv(args, tmp: str, tag: str, extra_env=None) -> dict:
    out_dir = os.path.join(tmp, f"tinyconv-{tag}")
    cmd = [args.python, "-m", "tinyconv", "train", "--augment", "0", "--out", out_dir, *common_args(args)]
    p = common.run_process(cmd, env=common.tinyconv_env(**(extra_env or {})), cwd=tmp, timeout=args.timeout)
    res = _outcome(p, "tinyconv")
    if res["ok"]:
        try:
            with open(os.path.join(out_dir, "metrics.csv")) as f:
                rows = list(csv.DictReader(f))
            res["history"] = [{k: float(r[k]) for k in ("epoch", "train_seconds", "eval_seconds", "test_acc")}
                              for r in rows]
        except (OSError, KeyError, ValueError) as e:
            res.update(ok=False, error=f"tinyconv: could not read {out_dir}/metrics.csv: {e}")
    return res


def run_torch(args, torch_py: str, tmp: str, tag: str) -> dict:
    path = os.path.join(tmp, f"torch-{tag}.json")
    cmd = [torch_py, os.path.join(HERE, "torch_lenet.py"), "--json", path, *common_args(args)]
    p = common.run_process(cmd, env=common.peer_env(), cwd=tmp, timeout=args.timeout)
    res = _outcome(p, "torch")
    if res["ok"]:
        with open(path) as f:
            d = json.load(f)
        res["history"] = d["history"]
        res["threads"] = d["threads"]
    return res


def _outcome(p: dict, who: str) -> dict:
    res = {k: p[k] for k in ("wall_s", "user_s", "sys_s", "peak_rss_mb", "minflt")}
    res["ok"] = p["rc"] == 0
    if not res["ok"]:
        res["error"] = f"{who} exited with {p['rc']}: {p['stderr'].strip()[-800:]}"
    return res


# ---------------------------------------------------------------------------------------------- tables
def steady(history: list[dict]) -> float:
    """Train seconds of one epoch after the first (their mean), or the first when there is only one."""
    later = [h["train_seconds"] for h in history[1:]] or [history[0]["train_seconds"]]
    return sum(later) / len(later)


METRICS = [  # key, label, function of one run
    ("epoch_s", "train seconds per epoch (epochs after the first)", lambda r: steady(r["history"])),
    ("first_epoch_s", "first epoch, train seconds (warm numba cache)", lambda r: r["history"][0]["train_seconds"]),
    ("eval_s", "evaluation seconds per epoch",
     lambda r: sum(h["eval_seconds"] for h in r["history"]) / len(r["history"])),
    ("wall_s", "whole process, wall seconds (start-up, data, all epochs, exit)", lambda r: r["wall_s"]),
    ("cpu_s", "whole process, CPU seconds (user + sys)", lambda r: r["user_s"] + r["sys_s"]),
    ("sys_s", "whole process, system CPU seconds", lambda r: r["sys_s"]),
    ("minflt_k", "whole process, minor page faults (thousands)", lambda r: r["minflt"] / 1e3),
    ("peak_rss_mb", "peak RSS (MiB)", lambda r: r["peak_rss_mb"]),
    ("test_acc", "test accuracy after the last epoch (%)", lambda r: 100 * r["history"][-1]["test_acc"]),
]


def summarize(runs: dict, epochs: int) -> list[dict]:
    """One row per metric: median/min/max for each side, ratio of medians, spread of the per-round ratios."""
    rows = []
    tc_runs, th_runs = runs["tinyconv"], runs["torch"]
    for key, label, fn in METRICS:
        if key == "epoch_s" and epochs == 1:
            label = "train seconds of the epoch"
        elif key == "first_epoch_s" and epochs == 1:
            continue
        tcv = [fn(r) for r in tc_runs if r["ok"]]
        thv = [fn(r) for r in th_runs if r["ok"]]
        a, b = common.spread(tcv), common.spread(thv)
        row = dict(metric=key, what=label, tinyconv=a["median"], tinyconv_min=a["min"], tinyconv_max=a["max"],
                   torch=b["median"], torch_min=b["min"], torch_max=b["max"], runs=a["n"])
        if a["median"] is not None and b["median"] and key != "test_acc":
            pairs = [fn(x) / fn(y) for x, y in zip(tc_runs, th_runs) if x["ok"] and y["ok"] and fn(y)]
            s = common.spread(pairs)
            row.update(ratio=a["median"] / b["median"], ratio_min=s["min"], ratio_max=s["max"])
        rows.append(row)
    return rows


def cold_rows(runs: dict) -> list[dict]:
    warm = [r for r in runs["tinyconv"] if r["ok"]]
    cold = [r for r in runs["cold"] if r["ok"]]
    if not cold or not warm:
        return []
    out = []
    for label, fn in (("first epoch, train seconds", lambda r: r["history"][0]["train_seconds"]),
                      ("whole process, wall seconds", lambda r: r["wall_s"]),
                      ("whole process, CPU seconds", lambda r: r["user_s"] + r["sys_s"])):
        w, c = common.spread(fn(r) for r in warm), common.spread(fn(r) for r in cold)
        out.append(dict(what=label, warm=w["median"], warm_min=w["min"], warm_max=w["max"], cold=c["median"],
                        cold_min=c["min"], cold_max=c["max"], cold_minus_warm=c["median"] - w["median"]))
    return out


def _cell(v, lo=None, hi=None, digits=None, suffix="") -> str:
    if v is None:
        return "-"
    f = (lambda x: f"{x:.{digits}f}") if digits is not None else common.fmt_num
    s = f(v) + suffix
    if lo is not None and hi is not None and (lo != v or hi != v):
        s += f" ({f(lo)}–{f(hi)}{suffix})"
    return s


def markdown(rows, cold, args, info, torch_version) -> str:
    n = rows[0]["runs"] if rows else 0
    data = f"the first {args.limit:,} training images" if args.limit else "all 60,000 training images"
    head = (f"`tinyconv train --epochs {args.epochs} --augment 0` against `benchmarks/torch_lenet.py --epochs "
            f"{args.epochs}` (PyTorch {torch_version or '-'}), each a fresh process, {n} alternating rounds, "
            f"{data}, batch 128; median (min–max); commit {info.get('tinyconv_commit') or '?'}; "
            f"{info['cpu']}, {info['usable_cpus']} threads each.")
    lines = [head, "", "| | tinyconv | PyTorch | tinyconv / PyTorch |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        digits = 2 if r["metric"] == "test_acc" else None
        lines.append(f"| {r['what']} | {_cell(r['tinyconv'], r['tinyconv_min'], r['tinyconv_max'], digits)} | "
                     f"{_cell(r['torch'], r['torch_min'], r['torch_max'], digits)} | "
                     f"{_cell(r.get('ratio'), r.get('ratio_min'), r.get('ratio_max'), 2, '×')} |")
    if cold:
        lines += ["", f"tinyconv's numba cache: warm (the rounds above) vs cold (`NUMBA_CACHE_DIR` empty, "
                      f"{args.cold} run{'s' if args.cold > 1 else ''}), same command:", "",
                  "| | warm cache | cold cache | cold − warm |", "| --- | ---: | ---: | ---: |"]
        for r in cold:
            lines.append(f"| {r['what']} | {_cell(r['warm'], r['warm_min'], r['warm_max'])} | "
                         f"{_cell(r['cold'], r['cold_min'], r['cold_max'])} | {_cell(r['cold_minus_warm'])} |")
    cmd = " ".join(["python benchmarks/bench_epoch.py", *args.argv])
    lines += ["", f"Reproduce: `{cmd}`"]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="processes per framework, alternating (default 3)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per process (default 2)")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    ap.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    ap.add_argument("--cold", type=int, default=1, help="tinyconv runs with an empty numba cache (default 1)")
    ap.add_argument("--data", default=None, help="MNIST root (default: tinyconv's: $TINYCONV_DATA or "
                                                 "~/.cache/tinyconv)")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress bars in either process (default: both show one, as users see them)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for tinyconv (default: this one)")
    ap.add_argument("--torch-python", metavar="PYTHON",
                    help="interpreter with PyTorch (default: $TINYCONV_BENCH_TORCH_PYTHON, else this one)")
    ap.add_argument("--no-torch", action="store_true", help="tinyconv only")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per process")
    ap.add_argument("--json", metavar="PATH")
    common.add_result_arguments(ap)
    ap.add_argument("--markdown", metavar="PATH", help="write the markdown table here (it is also printed)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: generated MNIST-sized data, 512 training images, 1 epoch, 1 round, no cold run")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.rounds, args.epochs, args.cold = 1, 1, 0
        args.limit, args.test_limit = args.limit or 512, args.test_limit or 500
    return args


def main(argv=None):
    args = parse_args(argv)
    notes = [n for n in [common.load_note()] if n]
    torch_py, torch_version = (None, "--no-torch") if args.no_torch else common.peer_python("torch", args.torch_python)
    if torch_py is None:
        if not args.no_torch:
            notes.append(f"no PyTorch column: {torch_version}")
        torch_version = None
    t0 = time.perf_counter()
    runs = _run_all(args, torch_py, notes)
    elapsed = time.perf_counter() - t0
    info = common.machine_info(torch_version)
    rows, cold = summarize(runs, args.epochs), cold_rows(runs)
    md = _report(args, rows, cold, info, torch_version, elapsed, notes)
    payload = dict(machine=info, args={k: v for k, v in vars(args).items()}, epoch=rows, cold=cold, runs=runs,
                   notes=notes, elapsed_s=elapsed, markdown=md)
    if args.json:
        common.write_json(args.json, payload)
    common.save_if_asked(args, "epoch", payload, result_rows(rows), threads=common.default_threads(),
                         torch_version=torch_version, command=common.command(__file__, args.argv), info=info)
    return payload


UNITS = {"minflt_k": "thousand faults", "peak_rss_mb": "MiB", "test_acc": "%"}


def result_rows(rows: list[dict]) -> list[dict]:
    """The result file's rows: every metric with both sides' median (min-max) and the spread of the per-round
    ratios; the train seconds per epoch is the headline."""
    return [common.result_row(r["what"], UNITS.get(r["metric"], "s"), (r["tinyconv"], r["tinyconv_min"], r["tinyconv_max"]),
                              (r["torch"], r["torch_min"], r["torch_max"]) if r["torch"] is not None else None,
                              ratio=r.get("ratio"), ratio_min=r.get("ratio_min"), ratio_max=r.get("ratio_max"),
                              metric=r["metric"], headline=r["metric"] == "epoch_s")
            for r in rows if r["tinyconv"] is not None]


def _run_all(args, torch_py, notes) -> dict:
    """The alternating rounds (tinyconv and PyTorch, each a fresh process), then the cold-cache runs."""
    runs = {"tinyconv": [], "torch": [], "cold": []}
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as tmp:
        if args.quick and not args.data:
            args.data = os.path.join(tmp, "data")
            write_fake_mnist(args.data)
        for r in range(args.rounds):
            order = ["tinyconv", "torch"] if r % 2 == 0 else ["torch", "tinyconv"]
            for who in order:
                if who == "torch" and torch_py is None:
                    continue
                res = run_tinyconv(args, tmp, str(r)) if who == "tinyconv" else run_torch(args, torch_py, tmp, str(r))
                runs[who].append(res)
                if not res["ok"]:
                    notes.append(f"round {r}: {res['error']}")
                else:
                    h = res["history"]
                    print(f"round {r + 1}/{args.rounds} {who:8s}: train s/epoch "
                          + " ".join(f"{x['train_seconds']:.2f}" for x in h)
                          + f"; process {res['wall_s']:.1f} s wall, {res['peak_rss_mb']:.0f} MiB peak RSS", flush=True)
        for c in range(args.cold):
            cache = tempfile.mkdtemp(prefix="numba-cold-", dir=tmp)
            res = run_tinyconv(args, tmp, f"cold{c}", {"NUMBA_CACHE_DIR": cache})
            runs["cold"].append(res)
            if not res["ok"]:
                notes.append(f"cold run {c}: {res['error']}")
            else:
                print(f"cold cache {c + 1}/{args.cold}: first epoch {res['history'][0]['train_seconds']:.2f} s; "
                      f"process {res['wall_s']:.1f} s wall", flush=True)
    return runs


def _report(args, rows, cold, info, torch_version, elapsed, notes) -> str:
    """Print the machine, the tables and the notes; write and return the markdown table."""
    print(common.describe_machine(info, {"threads": common.default_threads()}))
    cols = [("what", "what"), ("tinyconv", "tinyconv"), ("tinyconv_min", "min"), ("tinyconv_max", "max"),
            ("torch", "PyTorch"), ("torch_min", "min"), ("torch_max", "max"), ("ratio", "tinyconv/PyTorch"),
            ("ratio_min", "min"), ("ratio_max", "max")]
    print(common.format_table(rows, cols, title=f"\nMNIST training, each run a fresh process (medians of "
                                               f"{rows[0]['runs'] if rows else 0} rounds)"))
    if cold:
        print(common.format_table(cold, [("what", "tinyconv"), ("warm", "warm cache"), ("cold", "cold cache"),
                                         ("cold_minus_warm", "cold - warm")],
                                  title="\nnumba cache: warm vs cold (empty NUMBA_CACHE_DIR)"))
    md = markdown(rows, cold, args, info, torch_version)
    print("\nmarkdown:\n")
    print(md)
    print(f"\nbenchmark time {elapsed:.1f} s")
    for n in notes:
        print("note:", n)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md + "\n")
    return md


if __name__ == "__main__":
    main()
