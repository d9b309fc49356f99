"""``tinyconv explore``: the backward-pass page (:mod:`tinyconv.explorer`) of a trained model or of a short run.

    tinyconv explore runs/lenet/checkpoint.npz            # the trained LeNet on 4 test images -> explore.html
    tinyconv explore CHECKPOINT -o lenet.html --images 8
    tinyconv explore --train-steps 0,50,500               # a fresh LeNet, snapshots at steps 0, 50, 500 (a slider)
    tinyconv explore --train-steps 0,100 --model resnet

The page shows one forward and backward pass on the first N test images, in training mode (the backward pass
training runs: batch norm with the batch's statistics; the running statistics are put back afterwards), with the
numerical check of every parameter gradient. ``tinyconv.cli`` adds the subcommand and hands in what it knows
(how a config becomes a model, how MNIST is read), so this module does not import the command line.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from . import functional as F
from .explorer import Snapshots
from .tensor import Tensor

__all__ = ["add_parser", "run", "parse_steps"]


def parse_steps(text: str) -> list[int]:
    """'0,50,500' -> [0, 50, 500] (sorted, each once); a clear ValueError for anything else."""
    try:
        steps = sorted({int(s) for s in str(text).split(",") if s.strip() != ""})
    except ValueError:
        raise ValueError(f"--train-steps: expected comma-separated step numbers such as 0,50,500, got {text!r}") \
            from None
    if not steps or steps[0] < 0:
        raise ValueError(f"--train-steps: expected step numbers >= 0 such as 0,50,500, got {text!r}")
    if steps[-1] > 100_000:
        raise ValueError(f"--train-steps: at most 100000 steps, got {steps[-1]}")
    return steps


def _count(name: str, hi: int):
    """An argparse type: an integer in 1..hi (a usage error naming the option otherwise)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not 1 <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in 1..{hi}, got {text!r}")
        return value
    parse.__name__ = name
    return parse


def add_parser(sub, models, variants, arg) -> argparse.ArgumentParser:
    """The ``explore`` subcommand's options (``sub`` is the command line's subparsers; ``arg(key)`` gives the
    checked argparse type of ``tinyconv train``'s option ``key``, so the same values are accepted)."""
    p = sub.add_parser(
        "explore", help="write an offline HTML page that steps through a model's backward pass",
        description="Write one self-contained HTML page (no network needed) that walks the backward pass of a "
                    "trained model (CHECKPOINT) or of a fresh one during a short training run (--train-steps), "
                    "node by node, with images, local rules and a numerical check of each parameter gradient; "
                    "print the file's path.")
    p.add_argument("checkpoint", nargs="?", type=Path, help="a checkpoint.npz written by 'tinyconv train'")
    p.add_argument("-o", "--output", type=Path, default=Path("explore.html"), metavar="FILE",
                   help="the page to write (default: explore.html)")
    p.add_argument("--images", type=_count("images", 1000), default=4, metavar="N",
                   help="test images in the pass (default: 4)")
    p.add_argument("--train-steps", metavar="STEPS",
                   help="no checkpoint: train a fresh model and take a snapshot at these steps, e.g. 0,50,500")
    p.add_argument("--model", choices=models, default="lenet", help="with --train-steps: the network")
    p.add_argument("--variant", choices=variants, default="modern", help="with --train-steps: the LeNet variant")
    p.add_argument("--batch-size", type=arg("batch_size"), default=64,
                   help="with --train-steps: training batch size (64)")
    p.add_argument("--lr", type=arg("lr"), default=1e-3, help="with --train-steps: Adam's learning rate (1e-3)")
    p.add_argument("--seed", type=arg("seed"), default=0, help="with --train-steps: the seed (0)")
    p.add_argument("--checks", type=_count("checks", 100), default=3,
                   help="elements checked numerically per parameter (3)")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="data root: IDX files in DIR/mnist/ (DIR/fashion-mnist/ for a Fashion-MNIST checkpoint) "
                        "(default: $TINYCONV_DATA or ~/.cache/tinyconv)")
    p.add_argument("--custom-data", action="store_true",
                   help="the IDX files in the data root are your own data set in the same format")
    return p


def _snapshot(snaps, model, x, y, label):
    """Add one pass on (x, y) in training mode; the model's buffers (running statistics) are left as they were."""
    buffers = [(b, np.array(b._data, copy=True)) for _, b in model.named_buffers() if b is not None]
    was_training = model.training
    model.train()
    try:
        def closure():
            return F.cross_entropy(model(x), y)

        snaps.add(closure(), label, closure=closure)
    finally:
        for b, saved in buffers:
            b._data = saved
        model.train(was_training)


def run(args, *, usage_error, build_model, load_split, load_model, model_name, say=print) -> int:
    """Run ``tinyconv explore`` with the parsed ``args``; the callables come from :mod:`tinyconv.cli`.

    ``usage_error(message)`` makes the exception for a usage mistake; ``load_model(path)`` returns
    ``(model, config, state)`` of a checkpoint; ``load_split(root, train, limit, custom, dataset)`` reads a split.
    """
    from .data import NORMALIZATION, DataLoader
    from .random import manual_seed

    steps, path = _checked_options(args, usage_error)
    if steps is None:
        model, config, state = load_model(args.checkpoint)
        title = f"{model_name(config)} after {state['epoch']} epoch(s)"
    else:
        config = {"model": args.model, "variant": args.variant, "kernel": None, "dataset": "mnist"}
        manual_seed(args.seed)
        model = build_model(config)
        title = f"{model_name(config)} during training"
    dataset = config.get("dataset", "mnist")
    xt, yt = load_split(args.data, False, args.images, args.custom_data, dataset)
    x, y = next(iter(DataLoader((xt, yt), batch_size=args.images, normalize=NORMALIZATION[dataset])))
    snaps = Snapshots(model, title=title, checks=args.checks)
    if steps is None:
        _snapshot(snaps, model, Tensor(x), y, str(args.checkpoint))
    else:
        xs, ys = load_split(args.data, True, None, args.custom_data, dataset)
        loader = DataLoader((xs, ys), batch_size=args.batch_size, shuffle=True, seed=args.seed,
                            normalize=NORMALIZATION[dataset])
        _train_with_snapshots(snaps, model, loader, Tensor(x), y, steps, args.lr)
    say(os.path.abspath(snaps.write(path)))
    return 0


def _checked_options(args, usage_error):
    """(the --train-steps list or None, the output path), or a usage error naming the option."""
    from .explorer import _check_writable

    if (args.checkpoint is None) == (args.train_steps is None):
        raise usage_error("give either a CHECKPOINT or --train-steps STEPS (not both)")
    if args.images < 1 or args.images > 256:
        raise usage_error(f"--images: expected 1 to 256 images, got {args.images}")
    if args.checks < 0:
        raise usage_error(f"--checks: expected 0 or more, got {args.checks}")
    steps = None
    if args.train_steps is not None:
        try:
            steps = parse_steps(args.train_steps)
        except ValueError as e:
            raise usage_error(str(e)) from None
    try:
        path = _check_writable(args.output)
    except OSError as e:
        raise usage_error(f"-o {args.output}: {e}".replace("explore: ", "")) from None
    return steps, path


def _train_with_snapshots(snaps, model, loader, x, y, steps: list, lr: float) -> None:
    """Adam on ``loader``'s batches, epoch after epoch, with a snapshot on (x, y) at each step in ``steps``."""
    from .optim import Adam

    opt = Adam(model.parameters(), lr=lr)

    def batches():
        while True:
            yield from loader

    stream = batches()
    for done in range(steps[-1] + 1):
        if done in steps:
            _snapshot(snaps, model, x, y, f"step {done}")
        if done == steps[-1]:
            break
        bx, by = next(stream)
        opt.zero_grad()
        F.cross_entropy(model(Tensor(bx)), by).backward()
        opt.step()
