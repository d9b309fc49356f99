"""Command line: ``tinyconv train | eval | summary`` (also ``python -m tinyconv ...``).

    tinyconv train                      # modern LeNet on MNIST, the default recipe (>= 99% test accuracy)
    tinyconv train --recipe d2l         # d2l's sigmoid LeNet: SGD lr 0.9, batch 256, 10 epochs
    tinyconv train --out runs/lenet --resume
    tinyconv eval runs/lenet/checkpoint.npz
    tinyconv summary --variant d2l

Every option of ``train`` that changes the numbers is kept in the checkpoint's ``config``; ``--resume`` rebuilds
the run from it, so a resumed run gives the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser", "resolve_config", "build_run", "TRAIN_DEFAULTS", "RECIPES"]

#: The default recipe: reaches >= 99.0% MNIST test accuracy (see the README for measured runs).
TRAIN_DEFAULTS = {
    "variant": "modern",
    "epochs": 10,
    "batch_size": 128,
    "lr": 1e-3,
    "optimizer": "adam",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "augment": 2,
    "kernel": None,
    "seed": 0,
    "limit": None,
    "test_limit": None,
}
#: Named recipes override the defaults; options given on the command line override the recipe.
RECIPES = {
    "default": {},
    # d2l §7.6: sigmoid + average pooling, Xavier init, plain SGD lr 0.9, batch 256, 10 epochs, no schedule.
    # The sigmoid net can sit at chance level for epochs before it "takes off", depending on the seed; with seed 0
    # it leaves chance during epoch 1 and ends at 97.5% (measured: see metrics in the README / issue 4).
    "d2l": {"variant": "d2l", "optimizer": "sgd", "lr": 0.9, "batch_size": 256, "epochs": 10,
            "schedule": "none", "augment": 0, "momentum": 0.0, "seed": 0},
}
#: Options that only affect how a run is reported, not its numbers (free to change on --resume).
RUNTIME_KEYS = ("kernel",)
SCHEDULES = ("cosine", "onecycle", "step", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")


class UsageError(Exception):
    """Options that contradict each other or the saved run (exit status 2, like argparse)."""


class CheckpointMismatch(Exception):
    """A checkpoint that does not fit the model or optimizer built from its own config."""


# --------------------------------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyconv",
        description="tinyconv: train and inspect small convolutional networks (LeNet on MNIST).",
        epilog="Run 'tinyconv COMMAND --help' for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = TRAIN_DEFAULTS
    t = sub.add_parser(
        "train", help="train LeNet on MNIST (checkpoint, metrics.csv, curves.png in --out)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train LeNet on MNIST.\n\n"
            f"Default recipe: modern LeNet (ReLU, max pooling), Adam lr {d['lr']:g}, batch {d['batch_size']}, "
            f"{d['epochs']} epochs,\ncosine learning-rate decay per batch, random shifts of up to {d['augment']} "
            "pixels, seed 0:\nabout 99.1-99.2% test accuracy. '--recipe d2l' is d2l's sigmoid LeNet (SGD lr 0.9, "
            "batch 256,\n10 epochs, no schedule, no augmentation).\n\n"
            "Options given explicitly override the recipe. Each epoch prints one line (train loss and\n"
            "accuracy, test loss and accuracy, learning rate, seconds, images/s) and writes\n"
            "OUT/checkpoint.npz, OUT/metrics.csv and, with matplotlib installed, OUT/curves.png.\n"
            "Ctrl-C saves a checkpoint at the end of the batch in progress; '--resume' continues it\n"
            "and gives the same numbers as an uninterrupted run."),
    )
    g = t.add_argument_group("recipe")
    g.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                   help="a named set of defaults (default: %(default)s)")
    g.add_argument("--variant", choices=("modern", "d2l"),
                   help=f"LeNet variant: 'modern' (ReLU, max pool) or 'd2l' (sigmoid, avg pool) "
                        f"(default: {d['variant']})")
    g.add_argument("--epochs", type=_positive_int, help=f"number of epochs (default: {d['epochs']})")
    g.add_argument("--batch-size", type=_positive_int, help=f"training batch size (default: {d['batch_size']})")
    g.add_argument("--lr", type=_nonneg_float, help=f"(peak) learning rate (default: {d['lr']:g})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimizer (default: {d['optimizer']})")
    g.add_argument("--momentum", type=_nonneg_float, help="SGD momentum (default: 0)")
    g.add_argument("--weight-decay", type=_nonneg_float,
                   help="weight decay (L2 for adam/sgd, decoupled for adamw; default: 0, adamw: 0.01)")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule: cosine decay to 0 over all batches, onecycle (warm-up then "
                        "cosine, peak --lr), step (x0.1 every third of the epochs), or none "
                        f"(default: {d['schedule']})")
    g.add_argument("--augment", type=_nonneg_int, metavar="PIXELS",
                   help=f"random shifts of up to PIXELS pixels per training image, 0 = off "
                        f"(default: {d['augment']})")
    g.add_argument("--kernel", help="convolution algorithm for the conv layers (default: tinyconv's default)")
    g.add_argument("--seed", type=_nonneg_int,
                   help=f"seed for initialisation, shuffling and augmentation (default: {d['seed']})")
    g.add_argument("--limit", type=_positive_int, metavar="N", help="train on the first N training images only")
    g.add_argument("--test-limit", type=_positive_int, metavar="N", help="evaluate on the first N test images only")
    g = t.add_argument_group("run")
    g.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: runs/lenet, or runs/lenet-d2l for the d2l variant)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved in OUT/checkpoint.npz (its recipe and options are reused)")
    g.add_argument("--data", type=Path, metavar="DIR",
                   help="MNIST root: IDX files in DIR/mnist/, fetched there if missing "
                        "(default: $TINYCONV_DATA or ~/.cache/tinyconv)")
    g.add_argument("--log-grads", action="store_true",
                   help="record each layer's gradient L2 norm (mean per epoch) in metrics.csv and the plot")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines remain)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="test accuracy and confusion matrix of a checkpoint",
                       description="Evaluate a checkpoint written by 'tinyconv train' on the MNIST test set: "
                                   "print the loss, the accuracy and the 10x10 confusion matrix "
                                   "(rows: true digit, columns: predicted digit).")
    e.add_argument("checkpoint", type=Path, help="a checkpoint.npz written by 'tinyconv train'")
    e.add_argument("--data", type=Path, metavar="DIR", help="MNIST root (default: $TINYCONV_DATA or ~/.cache/tinyconv)")
    e.add_argument("--batch-size", type=_positive_int, default=1000, help="evaluation batch size (default: 1000)")
    e.add_argument("--test-limit", type=_positive_int, metavar="N", help="evaluate on the first N test images only")
    e.add_argument("--kernel", help="convolution algorithm to evaluate with (default: the checkpoint's)")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("summary", help="layer-by-layer summary of LeNet (shapes, parameters)",
                       description="Print tinyconv.summary.summary(model, (1, 1, 28, 28)) for a LeNet variant.")
    s.add_argument("--variant", choices=("modern", "d2l"), default="modern", help="LeNet variant (default: modern)")
    s.add_argument("--kernel", help="convolution algorithm (default: tinyconv's default)")
    s.set_defaults(func=cmd_summary)
    return parser


# --------------------------------------------------------------------------------------------------- config
_CONFIG_ARGS = [k for k in TRAIN_DEFAULTS]


def resolve_config(args: argparse.Namespace) -> dict:
    """defaults ← recipe ← options given on the command line; plus 'recipe'."""
    config = dict(TRAIN_DEFAULTS)
    config.update(RECIPES[args.recipe])
    if getattr(args, "optimizer", None) == "adamw" and args.weight_decay is None:
        config["weight_decay"] = 1e-2  # AdamW's own default
    for k in _CONFIG_ARGS:
        v = getattr(args, k, None)
        if v is not None:
            config[k] = v
    config["recipe"] = args.recipe
    return config


def _explicit(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in _CONFIG_ARGS if getattr(args, k, None) is not None}


def _check_resume_options(args: argparse.Namespace, saved: dict) -> dict:
    """The saved config, with the options that may change on resume applied; conflicting options are errors."""
    config = dict(saved)
    for k, v in _explicit(args).items():
        if k in RUNTIME_KEYS:
            config[k] = v
        elif k == "epochs" and saved.get("schedule") == "none" and v >= int(saved["epochs"]):
            config[k] = v  # without a schedule, more epochs just continue the same run
        elif v != saved.get(k):
            raise UsageError(f"--{k.replace('_', '-')} {v} differs from the checkpoint's {k} = {saved.get(k)!r}; "
                             "drop it to resume the saved run"
                             + (" (epochs can only grow, and only with schedule 'none')" if k == "epochs" else ""))
    if args.recipe != "default" and args.recipe != saved.get("recipe"):
        raise UsageError(f"--recipe {args.recipe} differs from the checkpoint's recipe {saved.get('recipe')!r}")
    return config


def _load_split(root, train: bool, limit: int | None):
    from .data import MNIST

    ds = MNIST(root, train=train)
    x, y = ds.data, ds.targets
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def build_run(config: dict, data_root=None, *, out_dir=None, log_grads=False, progress=True, out=None,
              callback=None):
    """Build model, optimizer, scheduler, loaders and ``Trainer`` from a config, seeded, as ``train`` does."""
    from . import nn, optim
    from .data import DataLoader, random_shift
    from .random import manual_seed
    from .train import Trainer

    manual_seed(int(config["seed"]))
    model = nn.models.LeNet(config["variant"], kernel=config["kernel"])
    lr, wd = float(config["lr"]), float(config["weight_decay"])
    if config["optimizer"] == "adam":
        opt = optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    elif config["optimizer"] == "adamw":
        opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    elif config["optimizer"] == "sgd":
        opt = optim.SGD(model.parameters(), lr=lr, momentum=float(config["momentum"]), weight_decay=wd)
    else:
        raise ValueError(f"unknown optimizer {config['optimizer']!r}; valid: {', '.join(OPTIMIZERS)}")
    x, y = _load_split(data_root, True, config["limit"])
    xt, yt = _load_split(data_root, False, config["test_limit"])
    augment = int(config["augment"])
    train_loader = DataLoader((x, y), batch_size=int(config["batch_size"]), shuffle=True, seed=int(config["seed"]),
                              transform=random_shift(augment) if augment else None)
    test_loader = DataLoader((xt, yt), batch_size=1000)
    epochs, steps = int(config["epochs"]), len(train_loader)
    schedule, interval, sched = config["schedule"], "epoch", None
    if schedule == "cosine":
        sched, interval = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps), "batch"
    elif schedule == "onecycle":
        sched, interval = optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps), "batch"
    elif schedule == "step":
        sched = optim.lr_scheduler.StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1)
    elif schedule != "none":
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    return Trainer(model, opt, train_loader, test_loader, epochs=epochs, scheduler=sched,
                   scheduler_interval=interval, out_dir=out_dir, log_grads=log_grads, config=config,
                   progress=progress, out=out, callback=callback)


def _peak_memory_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


# ------------------------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace, callback=None) -> int:
    from .serialization import load
    from .train import TrainingInterrupted

    if args.resume:
        out_dir = args.out or Path("runs/lenet")
        ckpt_path = out_dir / "checkpoint.npz"
        if not ckpt_path.exists():
            print(f"tinyconv train: error: --resume: no checkpoint at {ckpt_path} (use --out DIR to point at "
                  "the run's folder)", file=sys.stderr)
            return 2
        state = load(ckpt_path)
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise CheckpointMismatch(f"{ckpt_path} is not a checkpoint written by 'tinyconv train'")
        config = _check_resume_options(args, state["config"])
    else:
        config = resolve_config(args)
        default_out = "runs/lenet-d2l" if config["variant"] == "d2l" else "runs/lenet"
        out_dir = args.out or Path(default_out)
        state = None
    log_grads = bool(args.log_grads or config.get("log_grads", False))
    config["log_grads"] = log_grads
    trainer = build_run(config, args.data, out_dir=out_dir, log_grads=log_grads, progress=not args.no_progress,
                        callback=callback)
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (ValueError, RuntimeError, KeyError) as e:
            raise CheckpointMismatch(f"cannot resume from {out_dir / 'checkpoint.npz'}: {e}") from e
        where = (f"epoch {trainer.epoch + 1}, batch {trainer.batch}" if trainer.batch
                 else f"the end of epoch {trainer.epoch}")
        print(f"resuming {out_dir / 'checkpoint.npz'} from {where}")
    elif (out_dir / "checkpoint.npz").exists():
        print(f"note: overwriting the run in {out_dir} (use --resume to continue it instead)")
    model = trainer.model
    shown = ", ".join(f"{k}={config[k]}" for k in ("recipe", "variant", "optimizer", "lr", "batch_size",
                                                   "epochs", "schedule", "augment", "seed"))
    extra = "".join(f", {k}={config[k]}" for k in ("momentum", "weight_decay", "kernel", "limit", "test_limit")
                    if config[k] not in (None, 0, 0.0))
    print(f"LeNet ({config['variant']}, {model.num_parameters():,} parameters): {shown}{extra}")
    print(f"data: {trainer.train_loader.num_samples} training images, {trainer.test_loader.num_samples} test "
          f"images; output: {out_dir}")
    t0 = time.perf_counter()
    try:
        history = trainer.fit()
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        if e.checkpoint is not None:
            data = f" --data {args.data}" if args.data is not None else ""
            print(f"resume with: tinyconv train --out {out_dir} --resume{data}", file=sys.stderr)
        print(f"peak memory: {_peak_memory_mib():.1f} MiB (ru_maxrss)")
        return 130
    if history:
        last = history[-1]
        best = max(history, key=lambda r: r["test_acc"])
        total = sum(r["train_seconds"] + r["eval_seconds"] for r in history)
        print(f"final test accuracy {100 * last['test_acc']:.2f}% (best {100 * best['test_acc']:.2f}% at epoch "
              f"{best['epoch']}); {total:.1f} s in all epochs, {time.perf_counter() - t0:.1f} s this session")
    print(f"wrote {out_dir / 'checkpoint.npz'}, {out_dir / 'metrics.csv'}"
          + (f", {out_dir / 'curves.png'}" if (out_dir / "curves.png").exists() else
             " (no curves.png: matplotlib is not installed)"))
    print(f"peak memory: {_peak_memory_mib():.1f} MiB (ru_maxrss)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from . import nn
    from .data import DataLoader
    from .serialization import load
    from .train import evaluate, format_confusion

    state = load(args.checkpoint)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        print(f"tinyconv eval: error: {args.checkpoint} is not a checkpoint written by 'tinyconv train' "
              "(expected 'model' and 'config' entries)", file=sys.stderr)
        return 2
    config = state["config"]
    model = nn.models.LeNet(config["variant"], kernel=args.kernel or config.get("kernel"))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointMismatch(f"{args.checkpoint}: {e}") from e
    xt, yt = _load_split(args.data, False, args.test_limit)
    t0 = time.perf_counter()
    res = evaluate(model, DataLoader((xt, yt), batch_size=args.batch_size), num_classes=10)
    seconds = time.perf_counter() - t0
    correct = int(res["confusion"].trace())
    print(f"{args.checkpoint}: LeNet ({config['variant']}) after {state.get('epoch', '?')} epoch(s)")
    print(f"test accuracy: {100 * res['acc']:.2f}% ({correct}/{res['n']}), loss {res['loss']:.4f}, "
          f"{seconds:.1f} s ({res['n'] / seconds:.0f} img/s)")
    print("confusion matrix (rows: true digit, columns: predicted digit):")
    print(format_confusion(res["confusion"]))
    print(f"peak memory: {_peak_memory_mib():.1f} MiB (ru_maxrss)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from . import nn

    try:
        from .summary import summary
    except ImportError as e:
        if e.name in ("tinyconv.summary",):
            print("tinyconv summary: tinyconv.summary is not available in this version (the model-summary module "
                  "has not been added yet); as a stand-in, the model is:", file=sys.stderr)
            print(nn.models.LeNet(args.variant, kernel=args.kernel))
            return 1
        raise
    model = nn.models.LeNet(args.variant, kernel=args.kernel)
    summary(model, (1, 1, 28, 28))  # prints the table itself
    return 0


def main(argv=None) -> int:
    """Entry point of the ``tinyconv`` command; returns the exit status."""
    from .data import MNISTUnavailable
    from .serialization import SerializationError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"tinyconv {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, SerializationError, MNISTUnavailable, CheckpointMismatch) as e:
        # Problems with the user's files or data: a message, not a traceback.
        print(f"tinyconv {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
