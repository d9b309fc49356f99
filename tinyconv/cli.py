"""Command line: ``tinyconv train | eval | summary | explore`` (also ``python -m tinyconv ...``).

    tinyconv train                      # modern LeNet on MNIST, the default recipe (>= 99% test accuracy)
    tinyconv train --recipe d2l         # d2l's sigmoid LeNet: SGD lr 0.9, batch 256, 10 epochs
    tinyconv train --resume             # continue the run the other options name (here: runs/lenet)
    tinyconv train --force              # start over in a folder that holds a run
    tinyconv eval runs/lenet/checkpoint.npz
    tinyconv summary --variant d2l
    tinyconv explore runs/lenet/checkpoint.npz   # an HTML page that steps through the backward pass
    tinyconv train --model resnet       # the small ResNet (batch norm, residual blocks): >= 99.5%
    tinyconv train --variant bn         # modern LeNet with batch norm

Every option of ``train`` that changes the numbers is kept in the checkpoint's ``config``; ``--resume`` rebuilds
the run from it, so a resumed run gives the same numbers as an uninterrupted one.

A user's mistake ends in one line, never a traceback, and never costs a finished run: options are checked
before any data is loaded (exit status 2, like argparse), a folder that holds a run is only continued
(``--resume``) or replaced on request (``--force``), damaged checkpoints, missing data and a run that diverges
end with exit status 1, Ctrl-C with 130 and a word on what was kept.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from .data import DATASETS as _DATA_SETS

__all__ = ["main", "build_parser", "resolve_config", "build_model", "build_run", "default_out_dir", "check_config",
           "TRAIN_DEFAULTS", "RECIPES"]

#: The default recipe: reaches >= 99.0% MNIST test accuracy (see the README for measured runs).
TRAIN_DEFAULTS = {
    "dataset": "mnist",
    "model": "lenet",
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
    # it leaves chance during epoch 1 (docs/results.md has the measured run).
    "d2l": {"variant": "d2l", "optimizer": "sgd", "lr": 0.9, "batch_size": 256, "epochs": 10,
            "schedule": "none", "augment": 0, "momentum": 0.0, "seed": 0},
}
#: Defaults of each model, between TRAIN_DEFAULTS and the recipe: '--model resnet' alone is the ResNet's recipe.
#: The ResNet: Adam with a one-cycle schedule peaking at 3e-3 (warm-up over the first 30% of the batches),
#: 15 epochs, random shifts of 2 pixels, seed 0 (docs/results.md has the measured runs: with 10 epochs the mean of
#: seeds 0-2 sat at the 99.5 % aimed at on some CPUs and just under it on others).
MODEL_DEFAULTS = {
    "lenet": {},
    "resnet": {"schedule": "onecycle", "lr": 3e-3, "epochs": 15},
}
#: Options that only affect how a run is reported, not its numbers (free to change on --resume).
RUNTIME_KEYS = ("kernel",)
SCHEDULES = ("cosine", "onecycle", "step", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
MODELS = ("lenet", "resnet")
DATASETS = tuple(_DATA_SETS)
VARIANTS = ("modern", "d2l", "bn")
#: MNIST's image side: a shift of this many pixels or more would leave nothing of the image.
IMAGE_SIDE = 28
#: The files a run writes into its folder.
RUN_FILES = ("checkpoint.npz", "metrics.csv", "curves.png")


class UsageError(Exception):
    """Options that contradict each other, the saved run or the file system (exit status 2, like argparse)."""


#: Kept for code that caught it: a checkpoint that does not fit is now a ``tinyconv.CheckpointError``.
def __getattr__(name):
    if name == "CheckpointMismatch":
        from .serialization import CheckpointError

        return CheckpointError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------- validation
# One check per option, used twice: by argparse for the command line and by check_config for a checkpoint's
# saved config. Each returns the value or raises ValueError with what was expected and what was given.
def _int(text, lo: int, hi: int | None = None) -> int:
    try:
        v = int(text) if not isinstance(text, bool) else None
    except (TypeError, ValueError):
        v = None
    if v is None or isinstance(text, float) and text != v:
        raise ValueError(f"expected an integer, got {text!r}")
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"expected an integer in {lo}..{hi}, got {v}" if hi is not None else
                         f"expected {'a positive' if lo == 1 else 'a non-negative'} integer, got {v}")
    return v


def _float(text, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    try:
        v = float(text) if not isinstance(text, bool) else None
    except (TypeError, ValueError):
        v = None
    if v is None:
        raise ValueError(f"expected a number, got {text!r}")
    if not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {text}")
    if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        raise ValueError(f"expected a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                         f"got {text}")
    return v


def _kernel(name) -> str | None:
    if name is None:
        return None
    from .kernels import resolve_kernel

    resolve_kernel(name)  # raises ValueError naming the valid kernels
    return name


def _choice(choices):
    def check(v):
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return v
    return check


#: option -> check(value) -> value. The ranges: finite and large enough to be useful, small enough that a typo
#: (1e30, 1e9) is caught here rather than after an epoch of NaN losses.
CHECKS = {
    "model": _choice(MODELS),
    "variant": _choice(VARIANTS),
    "epochs": lambda v: _int(v, 1, 100_000),
    "batch_size": lambda v: _int(v, 1, 60_000),
    "lr": lambda v: _float(v, 0.0, 10.0, lo_open=True),
    "optimizer": _choice(OPTIMIZERS),
    "momentum": lambda v: _float(v, 0.0, 1.0, hi_open=True),
    "weight_decay": lambda v: _float(v, 0.0, 1.0),
    "schedule": _choice(SCHEDULES),
    "augment": lambda v: _int(v, 0, IMAGE_SIDE - 1),
    "kernel": _kernel,
    "seed": lambda v: _int(v, 0, 2**32 - 1),
    "dataset": _choice(DATASETS),
    "limit": lambda v: None if v is None else _int(v, 1),
    "test_limit": lambda v: None if v is None else _int(v, 1),
}


def _arg(key: str):
    """An argparse ``type=`` from ``CHECKS[key]`` (its ValueError becomes argparse's usage error, exit 2)."""
    def parse(text):
        try:
            return CHECKS[key](text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = key.replace("_", "-")
    return parse


def check_config(config: dict, where: str) -> dict:
    """Check a run's config (a checkpoint's, or one built from options); raise CheckpointError naming ``where``."""
    from .serialization import CheckpointError

    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: the saved config is not a dict")
    if "model" not in config:  # written before there was a choice of model
        config = dict(config, model="lenet")
    if "dataset" not in config:  # written before there was a choice of data set
        config = dict(config, dataset="mnist")
    for key, check in CHECKS.items():
        if key not in config:
            raise CheckpointError(f"{where}: the saved config has no {key!r}")
        try:
            check(config[key])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{where}: the saved config's {key} is not valid: {e}") from None
    if not isinstance(config.get("log_grads", False), bool):
        raise CheckpointError(f"{where}: the saved config's log_grads is not a bool")
    if config.get("recipe", "default") not in RECIPES:
        raise CheckpointError(f"{where}: the saved config's recipe {config.get('recipe')!r} is unknown")
    return config


# --------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyconv",
        description="tinyconv: train and inspect small convolutional networks (LeNet on MNIST).",
        epilog="Run 'tinyconv COMMAND --help' for the options of one command. Exit status: 0 done, 1 failed "
               "(damaged checkpoint, missing data, diverged run), 2 usage error, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_summary_parser(sub)
    from .explorer_cli import add_parser as add_explore_parser  # the command's own module holds its options
    add_explore_parser(sub, MODELS, VARIANTS, _arg).set_defaults(func=cmd_explore)
    return parser




def _add_train_parser(sub) -> None:
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
            "Options given explicitly override the recipe. Each epoch writes OUT/checkpoint.npz and\n"
            "OUT/metrics.csv, then prints one line (train loss and accuracy, test loss and accuracy,\n"
            "learning rate, seconds, images/s); with matplotlib installed, OUT/curves.png is drawn when\n"
            "the run ends or stops (and at most once a minute along the way).\n"
            "A folder that holds a run is never overwritten by accident: continue it with --resume,\n"
            "or start over with --force. A run whose loss or weights stop being finite stops (exit 1)\n"
            "and keeps its last good checkpoint. Ctrl-C saves a checkpoint at the end of the batch in\n"
            "progress (a second Ctrl-C stops at once); '--resume' continues it and gives the same\n"
            "numbers as an uninterrupted run."),
    )
    _recipe_options(t.add_argument_group("recipe"))
    _run_options(t.add_argument_group("run"))
    t.set_defaults(func=cmd_train)


def _recipe_options(g) -> None:
    """The options of ``train`` that change the numbers (kept in the checkpoint's config)."""
    d = TRAIN_DEFAULTS
    g.add_argument("--dataset", choices=DATASETS,
                   help="the data set: MNIST's digits or Zalando's Fashion-MNIST (same format; its files in "
                        f"DIR/fashion-mnist/) (default: {d['dataset']})")
    g.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                   help="a named set of defaults (default: %(default)s)")
    g.add_argument("--model", choices=MODELS,
                   help="the network: 'lenet' or 'resnet' (the small ResNet of nn.models.ResNet, with its own "
                        f"defaults: {_fmt_defaults(MODEL_DEFAULTS['resnet'])}) (default: {d['model']})")
    g.add_argument("--variant", choices=VARIANTS,
                   help=f"LeNet variant: 'modern' (ReLU, max pool), 'd2l' (sigmoid, avg pool) or 'bn' (modern with "
                        f"batch norm) (default: {d['variant']})")
    g.add_argument("--epochs", type=_arg("epochs"), help=f"number of epochs (default: {d['epochs']})")
    g.add_argument("--batch-size", type=_arg("batch_size"),
                   help=f"training batch size, 1..60000 (default: {d['batch_size']})")
    g.add_argument("--lr", type=_arg("lr"), help=f"(peak) learning rate, in (0, 10] (default: {d['lr']:g})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimizer (default: {d['optimizer']})")
    g.add_argument("--momentum", type=_arg("momentum"), help="SGD momentum, in [0, 1) (default: 0)")
    g.add_argument("--weight-decay", type=_arg("weight_decay"),
                   help="weight decay, in [0, 1] (L2 for adam/sgd, decoupled for adamw; default: 0, adamw: 0.01)")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule: cosine decay to 0 over all batches, onecycle (warm-up then "
                        "cosine, peak --lr), step (x0.1 every third of the epochs), or none "
                        f"(default: {d['schedule']})")
    g.add_argument("--augment", type=_arg("augment"), metavar="PIXELS",
                   help=f"random shifts of up to PIXELS pixels per training image, 0 = off, at most "
                        f"{IMAGE_SIDE - 1} (default: {d['augment']})")
    g.add_argument("--kernel", type=_arg("kernel"),
                   help="convolution algorithm for the conv layers: auto, tune (auto, timed on this CPU), direct, "
                        "im2col, numba or numba-plain (default: tinyconv's default)")
    g.add_argument("--seed", type=_arg("seed"),
                   help=f"seed for initialisation, shuffling and augmentation (default: {d['seed']})")
    g.add_argument("--limit", type=_arg("limit"), metavar="N", help="train on the first N training images only")
    g.add_argument("--test-limit", type=_arg("test_limit"), metavar="N",
                   help="evaluate on the first N test images only")


def _run_options(g) -> None:
    """The options of ``train`` that say where and how a run goes, not what it computes."""
    g.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: runs/lenet, runs/lenet-d2l or runs/lenet-bn for the variants, "
                        "runs/resnet)")
    how = g.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true",
                     help="continue the run in OUT (the folder the other options name); its recipe and options "
                          "are reused. A complete run is left as it is.")
    how.add_argument("--force", action="store_true",
                     help="start a new run even though OUT holds one: its checkpoint, metrics and curves are "
                          "deleted first")
    _data_options(g)
    g.add_argument("--log-grads", action="store_true",
                   help="record each layer's gradient L2 norm (mean per epoch) in metrics.csv and the plot")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines remain)")


def _add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="test accuracy and confusion matrix of a checkpoint",
                       description="Evaluate a checkpoint written by 'tinyconv train' on the MNIST test set: "
                                   "print the loss, the accuracy and the 10x10 confusion matrix "
                                   "(rows: true digit, columns: predicted digit).")
    e.add_argument("checkpoint", type=Path, help="a checkpoint.npz written by 'tinyconv train'")
    _data_options(e)
    e.add_argument("--batch-size", type=_arg("batch_size"), default=1000,
                   help="evaluation batch size (default: 1000)")
    e.add_argument("--test-limit", type=_arg("test_limit"), metavar="N",
                   help="evaluate on the first N test images only")
    e.add_argument("--kernel", type=_arg("kernel"), help="convolution algorithm to evaluate with "
                                                         "(default: the checkpoint's)")
    e.set_defaults(func=cmd_eval)


def _add_summary_parser(sub) -> None:
    s = sub.add_parser("summary", help="layer-by-layer summary of a model (shapes, parameters, multiply-adds)",
                       description="Print tinyconv.summary.summary(model, (1, 1, 28, 28)) for LeNet (a variant) or "
                                   "the ResNet.")
    s.add_argument("--model", choices=MODELS, default="lenet", help="the network (default: lenet)")
    s.add_argument("--variant", choices=VARIANTS, default="modern", help="LeNet variant (default: modern)")
    s.add_argument("--kernel", type=_arg("kernel"), help="convolution algorithm (default: tinyconv's default)")
    s.set_defaults(func=cmd_summary)


def _data_options(group) -> None:
    group.add_argument("--data", type=Path, metavar="DIR",
                       help="data root: IDX files in DIR/mnist/ (DIR/fashion-mnist/ for --dataset fashion-mnist), "
                            "fetched there if missing or not MNIST "
                            "(default: $TINYCONV_DATA or ~/.cache/tinyconv)")
    group.add_argument("--custom-data", action="store_true",
                       help="the IDX files in DIR/mnist/ (DIR/fashion-mnist/) are your own data set in the same "
                            "format: use them "
                            "without checking them against MNIST's checksums, and never fetch or replace them")


# --------------------------------------------------------------------------------------------------- config
_CONFIG_ARGS = list(TRAIN_DEFAULTS)


def _fmt_defaults(d: dict) -> str:
    return ", ".join(f"{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"{k.replace('_', '-')} {v}"
                     for k, v in d.items())


def resolve_config(args: argparse.Namespace) -> dict:
    """defaults ← the model's defaults ← recipe ← options given on the command line; plus 'recipe'."""
    config = dict(TRAIN_DEFAULTS)
    model = getattr(args, "model", None) or RECIPES[args.recipe].get("model", TRAIN_DEFAULTS["model"])
    if model != "lenet" and getattr(args, "variant", None) is not None:
        raise UsageError(f"--variant chooses a LeNet variant; it does not apply to --model {model}")
    config.update(MODEL_DEFAULTS[model])
    config.update(RECIPES[args.recipe])
    if getattr(args, "optimizer", None) == "adamw" and args.weight_decay is None:
        config["weight_decay"] = 1e-2  # AdamW's own default
    for k in _CONFIG_ARGS:
        v = getattr(args, k, None)
        if v is not None:
            config[k] = v
    config["recipe"] = args.recipe
    return config


def default_out_dir(config: dict) -> Path:
    """The folder a run with this config writes to when --out is not given (and --resume looks in)."""
    suffix = "" if config.get("dataset", "mnist") == "mnist" else f"-{config['dataset']}"
    if config.get("model", "lenet") != "lenet":
        return Path(f"runs/{config['model']}{suffix}")
    return Path(("runs/lenet" if config["variant"] == "modern" else f"runs/lenet-{config['variant']}") + suffix)


def model_name(config: dict) -> str:
    """'LeNet (modern)', 'ResNet': how the run's network is named in what the commands print."""
    return "ResNet" if config.get("model", "lenet") == "resnet" else f"LeNet ({config['variant']})"


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


# ---------------------------------------------------------------------------------------------- file checks
def _check_data_dir(data) -> None:
    """--data must be a folder (or not exist yet), and so must its mnist/ subfolder."""
    if data is None:
        return
    for path in (data, data / "mnist"):
        if path.exists() and not path.is_dir():
            raise UsageError(f"--data {data}: {path} is a file, not a folder")


def _prepare_out_dir(out_dir: Path) -> None:
    """Create OUT and prove it writable, before any data is loaded or any batch is trained."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder; give a folder for the run's files")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot write there ({e.strerror or e})") from None


def _describe_run(state: dict) -> str:
    history = state.get("history") or []
    done = f"{state['epoch']}/{state['epochs']} epochs" + (f" and {state['batch']} batches" if state["batch"] else "")
    if history and isinstance(history[-1], dict) and isinstance(history[-1].get("test_acc"), float) \
            and not math.isnan(history[-1]["test_acc"]):
        done += f", test accuracy {100 * history[-1]['test_acc']:.2f}%"
    return ("a complete run" if state.get("complete") else "an unfinished run") + f" ({done})"


def _existing_run(out_dir: Path) -> str | None:
    """How the run in ``out_dir`` looks, or None when the folder holds none."""
    from .train import load_checkpoint

    ckpt = out_dir / "checkpoint.npz"
    if ckpt.exists():
        try:
            return _describe_run(load_checkpoint(ckpt))
        except Exception:  # a damaged checkpoint is still a run the user may care about
            return "a run whose checkpoint cannot be read"
    if (out_dir / "metrics.csv").exists():
        return "the metrics of a run"
    return None


def _resumable_run(args: argparse.Namespace, out_dir: Path) -> tuple[dict, dict | None]:
    """--resume: the saved run's config (with the options that may change applied) and its checkpoint; the
    checkpoint is None when the run is complete (which is said, and nothing changes)."""
    from .train import load_checkpoint

    ckpt_path = out_dir / "checkpoint.npz"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    if not ckpt_path.exists():
        hint = "" if args.out is not None else " (the folder these options name; use --out DIR for another)"
        raise UsageError(f"--resume: no run to resume in {out_dir}{hint}: there is no {ckpt_path.name}")
    state = load_checkpoint(ckpt_path)
    config = _check_resume_options(args, check_config(state["config"], str(ckpt_path)))
    if state["complete"] and int(config["epochs"]) <= int(state["epochs"]):
        _check_weights(state, config, ckpt_path)
        _stderr(f"{out_dir} holds {_describe_run(state)}: nothing to resume, nothing changed. "
                f"Evaluate it with 'tinyconv eval {ckpt_path}', start over with --force (without --resume), "
                "or train into another folder with --out DIR.")
        return config, None
    return config, state


def _check_no_run_in(out_dir: Path, force: bool) -> None:
    """A new run: the folder must not hold one, unless --force; the refusal names what does work."""
    existing = _existing_run(out_dir) if out_dir.is_dir() else None
    if existing is None or force:
        return
    if existing.startswith("a complete run"):
        raise UsageError(f"{out_dir} already holds {existing}. Evaluate it with 'tinyconv eval "
                         f"{out_dir / 'checkpoint.npz'}', use --force to delete it and start over, or --out DIR to "
                         "train into another folder.")
    raise UsageError(f"{out_dir} already holds {existing}. Use --resume to continue it, --force to delete it and "
                     "start over, or --out DIR to train into another folder.")


# --------------------------------------------------------------------------------------------------- build
def _load_split(root, train: bool, limit: int | None, custom: bool = False, dataset: str = "mnist"):
    from .data import load_split

    return load_split(dataset, root, train, custom=custom, limit=limit)


def build_model(config: dict):
    """The network a config names (:func:`tinyconv.train.model_from_config`)."""
    from .train import model_from_config

    return model_from_config(config)


def build_run(config: dict, data_root=None, *, out_dir=None, log_grads=False, progress=True, out=None,
              callback=None, custom_data=False, handle_sigint=True):
    """Build model, optimizer, scheduler, loaders and ``Trainer`` from a config, seeded, as ``train`` does."""
    from . import optim
    from .data import NORMALIZATION, DataLoader, random_shift
    from .random import manual_seed
    from .train import Trainer

    manual_seed(int(config["seed"]))
    model = build_model(config)
    lr, wd = float(config["lr"]), float(config["weight_decay"])
    if config["optimizer"] == "adam":
        opt = optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    elif config["optimizer"] == "adamw":
        opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    elif config["optimizer"] == "sgd":
        opt = optim.SGD(model.parameters(), lr=lr, momentum=float(config["momentum"]), weight_decay=wd)
    else:
        raise ValueError(f"unknown optimizer {config['optimizer']!r}; valid: {', '.join(OPTIMIZERS)}")
    dataset = config.get("dataset", "mnist")
    x, y = _load_split(data_root, True, config["limit"], custom_data, dataset)
    xt, yt = _load_split(data_root, False, config["test_limit"], custom_data, dataset)
    augment = int(config["augment"])
    # batches built in turn (prefetch=0): numba's loops use every core, and a thread building the next batch beside
    # them slows each step by more than building the batch costs (benchmarks/bench_epoch.py times the epoch)
    train_loader = DataLoader((x, y), batch_size=int(config["batch_size"]), shuffle=True, seed=int(config["seed"]),
                              transform=random_shift(augment) if augment else None, normalize=NORMALIZATION[dataset],
                              prefetch=0)
    # 250, not 1000: a large evaluation batch's activations raise the run's peak memory and evaluate no faster
    # (benchmarks/bench_epoch.py reports both); and it divides the 10,000 test images of MNIST and Fashion-MNIST,
    # so no smaller last batch takes other kernels, which a cold start would compile as well
    test_loader = DataLoader((xt, yt), batch_size=250, normalize=NORMALIZATION[dataset])
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
                   progress=progress, out=out, callback=callback, handle_sigint=handle_sigint, precompile=True)


def _peak_memory_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace, callback=None) -> int:
    _check_data_dir(args.data)
    named = resolve_config(args)
    out_dir = args.out if args.out is not None else default_out_dir(named)
    ckpt_path = out_dir / "checkpoint.npz"
    if args.resume:
        config, state = _resumable_run(args, out_dir)
        if state is None:  # a complete run: nothing to do
            return 0
    else:
        config, state = named, None
        _check_no_run_in(out_dir, args.force)
    _prepare_out_dir(out_dir)
    log_grads = bool(args.log_grads or config.get("log_grads", False))
    config["log_grads"] = log_grads
    progress = not args.no_progress

    def say(line: str) -> None:  # notices go to stderr, beside the progress bars; stdout keeps the epoch lines
        if progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            _stderr(line)

    interrupts = getattr(args, "interrupts", None)  # the command's Ctrl-C handling (tinyconv_launcher)
    if interrupts is not None:
        interrupts.final_line = lambda: "interrupted before training started: nothing was written"
    try:
        trainer = build_run(config, args.data, out_dir=out_dir, log_grads=log_grads, progress=progress,
                            callback=callback, custom_data=args.custom_data, handle_sigint=interrupts is None)
        if state is not None:
            trainer.load_state_dict(state, ckpt_path)
    except KeyboardInterrupt:
        _stderr("interrupted before training started: nothing was written")
        return 130
    if interrupts is None:
        return _fit_and_report(args, trainer, config, out_dir, state, say, contextlib.nullcontext())
    interrupts.final_line = lambda: (f"interrupted: {ckpt_path} is the last completed epoch's checkpoint"
                                     if ckpt_path.exists() else "interrupted: no checkpoint was written yet")
    status = _fit_and_report(args, trainer, config, out_dir, state, say, interrupts.graceful(trainer.request_stop))
    if status == 0 and interrupts.count:  # asked to stop during the last batch: the run finished all the same
        _stderr(f"interrupted after the last batch: the run is complete, {ckpt_path}")
        return 130
    return status


def _print_run_header(trainer, config: dict, out_dir: Path) -> None:
    """The two lines before training: the network and its options, the data and the output folder."""
    shown = ", ".join(f"{k}={config[k]}" for k in ("recipe", "variant", "optimizer", "lr", "batch_size",
                                                   "epochs", "schedule", "augment", "seed")
                      if k != "variant" or config["model"] == "lenet")
    extra = "".join(f", {k}={config[k]}" for k in ("momentum", "weight_decay", "kernel", "limit", "test_limit")
                    if config[k] not in (None, 0, 0.0))
    size = f"{trainer.model.num_parameters():,} parameters"
    label = f"LeNet ({config['variant']}, {size})" if config["model"] == "lenet" else f"ResNet ({size})"
    print(f"{label}: {shown}{extra}")
    print(f"data: {trainer.train_loader.num_samples} training images, {trainer.test_loader.num_samples} test "
          f"images; output: {out_dir}", flush=True)


def _print_run_summary(history: list, out_dir: Path, session_seconds: float) -> None:
    """The lines after training: final and best accuracy, the files written."""
    if history:
        last = history[-1]
        best = max(history, key=lambda r: r["test_acc"])
        total = sum(r["train_seconds"] + r["eval_seconds"] for r in history)
        print(f"final test accuracy {100 * last['test_acc']:.2f}% (best {100 * best['test_acc']:.2f}% at epoch "
              f"{best['epoch']}); {total:.1f} s in all epochs, {session_seconds:.1f} s this session")
    print(f"wrote {out_dir / 'checkpoint.npz'}, {out_dir / 'metrics.csv'}"
          + (f", {out_dir / 'curves.png'}" if (out_dir / "curves.png").exists() else
             " (no curves.png: matplotlib is not installed)"))


def _fit_and_report(args, trainer, config: dict, out_dir: Path, state, say, graceful) -> int:
    """cmd_train once the run is built: what it is, the training itself, and what it wrote. ``graceful`` spans the
    training (from the header lines on): a first Ctrl-C there stops after the batch in progress."""
    import numpy as np

    from .train import CompileNotice, TrainingDiverged, TrainingInterrupted

    ckpt_path = out_dir / "checkpoint.npz"
    if state is not None:
        where = (f"epoch {trainer.epoch + 1}, batch {trainer.batch}" if trainer.batch
                 else f"the end of epoch {trainer.epoch}")
        _stderr(f"resuming {ckpt_path} from {where}")
    elif args.force:
        removed = [name for name in RUN_FILES if (out_dir / name).exists()]
        for name in removed:
            (out_dir / name).unlink()
        if removed:
            _stderr(f"--force: deleted the previous run's {', '.join(removed)} in {out_dir}")
    t0 = time.perf_counter()
    notice = CompileNotice(say)
    try:
        # Overflow warnings are what divergence looks like from inside numpy; the loop reports it in one line.
        with graceful, notice, np.errstate(over="ignore", invalid="ignore"):
            _print_run_header(trainer, config, out_dir)
            history = trainer.fit()
    except TrainingInterrupted as e:
        _stderr(str(e))
        if e.checkpoint is not None:
            data = f" --data {args.data}" if args.data is not None else ""
            _stderr(f"resume with: tinyconv train --out {out_dir} --resume{data}")
        return 130
    except KeyboardInterrupt:
        _stderr(f"interrupted: {out_dir / 'checkpoint.npz'} is "
                + ("the last completed epoch's" if ckpt_path.exists() else "not written yet"))
        return 130
    except TrainingDiverged as e:
        _stderr(f"tinyconv train: error: {e}")
        if e.checkpoint is None:
            _stderr("try a smaller --lr")
        else:
            _stderr(f"try a smaller --lr (--force to start over in {out_dir}, or --out DIR for a new folder)")
        return 1
    finally:
        if trainer.precompile_report is not None:  # kernels compiled by the helper process count too
            notice.count += trainer.precompile_report.helper
        if notice.summary():
            say(notice.summary())
    _print_run_summary(history, out_dir, time.perf_counter() - t0)
    print(f"peak memory: {_peak_memory_mib():.1f} MiB (ru_maxrss)")
    return 0


def _check_weights(state: dict, config: dict, path) -> object:
    """The model the config names, with the checkpoint's weights loaded (CheckpointError if they do not fit)."""
    from .serialization import CheckpointError
    from .train.checkpoint import one_line

    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit {model_name(config)}: {one_line(e)}") from None
    return model


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import NORMALIZATION, DataLoader
    from .train import CompileNotice, evaluate, format_confusion, load_checkpoint

    _check_data_dir(args.data)
    state = load_checkpoint(args.checkpoint)
    config = check_config(state["config"], str(args.checkpoint))
    model = _check_weights(state, dict(config, kernel=args.kernel or config.get("kernel")), args.checkpoint)
    xt, yt = _load_split(args.data, False, args.test_limit, args.custom_data, config["dataset"])
    t0 = time.perf_counter()
    with CompileNotice(_stderr) as notice:
        res = evaluate(model, DataLoader((xt, yt), batch_size=args.batch_size,
                                         normalize=NORMALIZATION[config["dataset"]]), num_classes=10)
    if notice.summary():
        _stderr(notice.summary())
    seconds = time.perf_counter() - t0
    correct = int(res["confusion"].trace())
    print(f"{args.checkpoint}: {model_name(config)} after {state['epoch']} epoch(s)"
          + (f" and {state['batch']} batches" if state["batch"] else ""))
    print(f"test accuracy: {100 * res['acc']:.2f}% ({correct}/{res['n']}), loss {res['loss']:.4f}, "
          f"{seconds:.1f} s ({res['n'] / seconds:.0f} img/s)")
    print("confusion matrix (rows: true digit, columns: predicted digit):")
    print(format_confusion(res["confusion"]))
    print(f"peak memory: {_peak_memory_mib():.1f} MiB (ru_maxrss)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .summary import summary
    from .train import CompileNotice

    model = build_model({"model": args.model, "variant": args.variant, "kernel": args.kernel})
    with CompileNotice(_stderr) as notice:
        summary(model, (1, 1, 28, 28))  # prints the table itself
    if notice.summary():
        _stderr(notice.summary())
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    """``tinyconv explore``: see :mod:`tinyconv.explorer_cli`, handed the command line's model and data helpers."""
    from .explorer_cli import run
    from .train import load_checkpoint

    def load_model(path):
        state = load_checkpoint(path)
        config = check_config(state["config"], str(path))
        return _check_weights(state, config, path), config, state

    _check_data_dir(args.data)
    return run(args, usage_error=UsageError, build_model=build_model, load_split=_load_split, load_model=load_model,
               model_name=model_name)


def _quiet_broken_pipe() -> None:
    """stdout/stderr went away (``tinyconv train | head``): point them at /dev/null so that Python's final flush
    does not print 'Exception ignored ... BrokenPipeError'."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass


def main(argv=None, interrupts=None) -> int:
    """Run the ``tinyconv`` command; returns the exit status (0 done, 1 failed, 2 usage, 130 Ctrl-C).

    ``interrupts``: the command's Ctrl-C handling (:class:`tinyconv_launcher.Interrupts`), given when the command
    runs from its entry point; without it (a call from Python) Ctrl-C raises ``KeyboardInterrupt`` as usual, and
    ``Trainer`` handles it while training.
    """
    from .data import MNISTUnavailable
    from .serialization import CheckpointError

    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # 'tinyconv' alone: what can it do?
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # --help into a closed pipe
        _quiet_broken_pipe()
        return 1
    args.interrupts = interrupts
    prefix = f"tinyconv {args.command}: error:"
    try:
        return args.func(args)
    except UsageError as e:
        _stderr(f"{prefix} {e}")
        return 2
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1
    except KeyboardInterrupt:
        _stderr("interrupted")
        return 130
    except (CheckpointError, MNISTUnavailable) as e:
        # Problems with the user's files or data: a message, not a traceback.
        _stderr(f"{prefix} {e}")
        return 1
    except OSError as e:  # a disk that filled up, a folder that became read-only mid-run
        _stderr(f"{prefix} {e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
