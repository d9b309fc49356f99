"""The PyTorch side of the benchmarks: LeNet (modern) on MNIST, the way ``tinyconv train`` does it.

    /path/to/torch-venv/bin/python benchmarks/torch_lenet.py --epochs 2            # like tinyconv train --augment 0
    /path/to/torch-venv/bin/python benchmarks/torch_lenet.py --epochs 1 --limit 6000 --json out.json

This file imports neither tinyconv nor numba nor ``benchmarks/common.py``: a process that runs it holds PyTorch's
thread pools and allocator only, as a PyTorch user's would. It does what ``tinyconv train --augment 0`` does:

* data: the same IDX files from tinyconv's MNIST cache (``--data`` / ``$TINYCONV_DATA`` / ``~/.cache/tinyconv``,
  folder ``mnist/``), batches built with NumPy exactly as ``tinyconv.data.DataLoader`` builds them (the same
  per-epoch permutation from ``SeedSequence(seed, spawn_key=(epoch, 0))``, ``x = (u8 / 255 - 0.1307) / 0.3081``,
  batch 128, the last batch smaller), handed over with ``torch.from_numpy``;
* model: Conv2d(1, 6, 5, p2) ReLU MaxPool2 Conv2d(6, 16, 5) ReLU MaxPool2 Flatten Linear(400, 120) ReLU
  Linear(120, 84) ReLU Linear(84, 10), PyTorch's default initialisation (kaiming_uniform(a=sqrt 5), the scheme
  tinyconv's modern LeNet uses), seeded with ``torch.manual_seed(seed)``;
* Adam lr 1e-3, cosine decay to 0 over all batches stepped per batch (``CosineAnnealingLR``), cross-entropy;
  per batch the running loss (``loss.item()``) and accuracy (argmax), a tqdm bar unless ``--no-progress``;
* after each epoch: evaluation on the test set in batches of 1000 under ``no_grad`` (timed apart).

``train_seconds`` of an epoch spans the loop over the training batches, data included, as in tinyconv's metrics.

``--step-worker`` is the per-step worker of ``bench_lenet.py`` (see there).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

MEAN, STD = 0.1307, 0.3081
FILES = {True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


# ------------------------------------------------------------------------------------------------ data
def data_root(root=None) -> Path:
    if root is None:
        root = os.environ.get("TINYCONV_DATA") or Path.home() / ".cache" / "tinyconv"
    return Path(root)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's images or labels), gzip-compressed or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(root, train: bool, limit: int | None = None):
    folder = data_root(root) / "mnist"
    images, labels = (read_idx(folder / name) for name in FILES[train])
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def synthetic(n: int):
    """Random digit-shaped data: the same arrays as bench_lenet's ``--synthetic`` tinyconv workers."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.int64)
    return images, labels


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """tinyconv.data.DataLoader's shuffled order of epoch ``epoch``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, 0))).permutation(n)


def batches(images, labels, batch: int, seed: int | None, epoch: int, drop_last: bool = False):
    """(x float32 (B, 1, 28, 28) normalised, y int64 (B,)) NumPy batches, as tinyconv.data.DataLoader yields."""
    n = len(labels)
    order = np.arange(n) if seed is None else epoch_order(n, seed, epoch)
    count = n // batch if drop_last else -(-n // batch)
    for b in range(count):
        idx = order[b * batch:(b + 1) * batch]
        x = images[idx][:, None].astype(np.float32) / np.float32(255)
        x = (x - np.float32(MEAN)) / np.float32(STD)
        yield np.ascontiguousarray(x), labels[idx].astype(np.int64)


# ----------------------------------------------------------------------------------------------- model
def lenet(torch):
    nn = torch.nn
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 6, 5, padding=2)), ("act1", nn.ReLU()), ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(6, 16, 5)), ("act2", nn.ReLU()), ("pool2", nn.MaxPool2d(2, 2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(400, 120)), ("act3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)), ("act4", nn.ReLU()),
        ("fc3", nn.Linear(84, 10)),
    ]))


def build(torch, seed: int, lr: float, init_from: str | None = None):
    torch.manual_seed(seed)
    model = lenet(torch)
    if init_from:  # the tinyconv model's initial weights (np.savez of its state_dict, PyTorch's key names)
        with np.load(init_from, allow_pickle=False) as f:
            model.load_state_dict({k: torch.from_numpy(np.array(f[k])) for k in f.files})
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ------------------------------------------------------------------------------------------- training
def evaluate(torch, model, images, labels):
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for x, y in batches(images, labels, 1000, None, 0):
            scores = model(torch.from_numpy(x))
            yt = torch.from_numpy(y)
            loss_sum += float(torch.nn.functional.cross_entropy(scores, yt, reduction="sum").item())
            correct += int((scores.argmax(dim=1) == yt).sum().item())
    model.train()
    return loss_sum / len(labels), correct / len(labels)


def train(args, torch) -> dict:
    t_start = time.perf_counter()
    x_train, y_train = load_mnist(args.data, True, args.limit)
    x_test, y_test = load_mnist(args.data, False, args.test_limit)
    model, opt = build(torch, args.seed, args.lr)
    steps = -(-len(y_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps)
    history = []
    ready = time.perf_counter() - t_start
    for epoch in range(args.epochs):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = None
        if args.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False,
                       dynamic_ncols=True, file=sys.stderr)
        f0 = minflt()
        t0 = time.perf_counter()
        for xb, yb in batches(x_train, y_train, args.batch_size, args.seed, epoch):
            x, y = torch.from_numpy(xb), torch.from_numpy(yb)
            scores = model(x)
            loss = torch.nn.functional.cross_entropy(scores, y)
            lr = opt.param_groups[0]["lr"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            n = len(yb)
            loss_sum += float(loss.item()) * n
            correct += int((scores.argmax(dim=1) == y).sum().item())
            seen += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%", refresh=False)
        train_s = time.perf_counter() - t0
        faults = minflt() - f0
        if bar is not None:
            bar.close()
        t1 = time.perf_counter()
        test_loss, test_acc = evaluate(torch, model, x_test, y_test)
        eval_s = time.perf_counter() - t1
        row = dict(epoch=epoch + 1, train_loss=loss_sum / seen, train_acc=correct / seen, test_loss=test_loss,
                   test_acc=test_acc, lr=lr, train_seconds=train_s, eval_seconds=eval_s,
                   images_per_s=seen / train_s, minflt_per_step=faults / steps)
        history.append(row)
        print(f"epoch {epoch + 1}/{args.epochs}  train loss {row['train_loss']:.4f}  acc {100 * row['train_acc']:.2f}%"
              f"  test loss {test_loss:.4f}  acc {100 * test_acc:.2f}%  lr {lr:.2e}  {train_s:.1f} s "
              f"(+{eval_s:.1f} s eval)  {row['images_per_s']:.0f} img/s", flush=True)
    return dict(framework="torch", torch=torch.__version__, threads=torch.get_num_threads(), history=history,
                ready_s=ready, peak_rss_mb=peak_rss_mb(), train_images=len(y_train), steps_per_epoch=steps)


# ----------------------------------------------------------------------------------- bench_lenet worker
def step_worker(args, torch) -> dict:
    """``--round`` timed training steps after ``--warmup`` untimed ones, then ``--split`` steps timed phase by
    phase: the fields bench_lenet.py's tinyconv workers report."""
    notes = []
    if args.synthetic:
        images, labels = synthetic(16 * args.batch_size)
        desc = f"synthetic ({len(labels)} random images)"
    else:
        images, labels = load_mnist(args.data, True)
        desc = f"MNIST train ({len(labels)})"
    model, opt = build(torch, args.seed, args.lr, args.init_from)

    def stream():
        epoch = 0
        while True:
            yield from batches(images, labels, args.batch_size, 0, epoch, drop_last=True)
            epoch += 1

    data = stream()
    state = {"first": None, "last": None}
    clock = time.perf_counter

    def step(split=False):
        t0 = clock()
        xb, yb = next(data)
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        t1 = clock()
        out = model(x)
        t2 = clock()
        loss = torch.nn.functional.cross_entropy(out, y)
        t3 = clock()
        opt.zero_grad()
        loss.backward()
        t4 = clock()
        opt.step()
        t5 = clock()
        state["last"] = float(loss.item())
        if state["first"] is None:
            state["first"] = state["last"]
        return {"data": t1 - t0, "forward": t2 - t1, "loss": t3 - t2, "backward": t4 - t3, "optimizer": t5 - t4}

    t = clock()
    step()
    first = clock() - t
    for _ in range(args.warmup - 1):
        step()
    f0 = minflt()
    times = []
    for _ in range(args.round):
        t = clock()
        step()
        times.append(clock() - t)
    faults = (minflt() - f0) / max(1, args.round)
    splits = [step() for _ in range(args.split)]
    return dict(variant="torch", kernel="torch", threads={"threads": args.threads, "torch": torch.get_num_threads()},
                data=desc, first_step_s=first, step_s=times, splits=splits, first_loss=state["first"],
                last_loss=state["last"], minflt_per_step=faults, notes=notes, process_peak_rss_mb=peak_rss_mb())


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N training images")
    ap.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images")
    ap.add_argument("--data", default=None, help="MNIST root (IDX files in DATA/mnist/)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: usable CPUs)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--json", metavar="PATH", help="write the result (history, threads, peak RSS) here")
    ap.add_argument("--step-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--split", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--synthetic", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--init-from", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = step_worker(args, torch) if args.step_worker else train(args, torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    assert "tinyconv" not in sys.modules and "numba" not in sys.modules  # this process is PyTorch's alone
    main()
