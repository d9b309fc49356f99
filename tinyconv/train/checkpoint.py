"""Training checkpoints: what one holds, how it is checked before use, and the rule that a non-finite one is
never written.

A checkpoint is the dict ``Trainer.state_dict()`` returns, stored with ``tc.save``. Reading one back goes through
:func:`load_checkpoint` (the file, then the schema below) and ``Trainer.load_state_dict`` (the structure again,
against the freshly built model, optimizer and scheduler, loaded all-or-nothing). A damaged or tampered file
raises :class:`tinyconv.CheckpointError` naming the file and the problem, never ``KeyError``/``TypeError``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..serialization import CheckpointError, load, save
from ..tensor import Tensor

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "NonFiniteState", "load_checkpoint",
           "save_checkpoint", "validate_checkpoint", "conforms", "first_non_finite", "one_line", "model_from_config",
           "model_from_checkpoint"]

CHECKPOINT_FORMAT = "tinyconv-checkpoint"
CHECKPOINT_VERSION = 1

_INT = "int"
_NUMBER = "number"
#: key -> the types its value may have (top level of a checkpoint).
SCHEMA = {
    "format": (str,), "version": (_INT,), "config": (dict,), "epochs": (_INT,), "epoch": (_INT,),
    "batch": (_INT,), "complete": (bool,), "model": (dict,), "optimizer": (dict,), "scheduler": (dict, None),
    "scheduler_interval": (str,), "loader": (dict,), "rng": (str,), "partial": (dict, None), "history": (list,),
}
LOADER_KEYS = ("seed", "epoch", "batch", "batch_size", "num_samples")
PARTIAL_KEYS = {"loss_sum": _NUMBER, "correct": _INT, "seen": _INT, "seconds": _NUMBER, "lr": _NUMBER,
                "grad_sums": dict, "grad_batches": _INT}


def one_line(message) -> str:
    """A multi-line message (e.g. Module.load_state_dict's list of problems) as one line."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


class NonFiniteState(ValueError):
    """A state with NaN or infinite weights: refused by :func:`save_checkpoint` (the run diverged)."""


def _is(value, kind) -> bool:
    if kind is None:
        return value is None
    if kind == _INT:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind == _NUMBER:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return isinstance(value, kind)


def _kind_name(kind) -> str:
    return {None: "None", _INT: "an integer", _NUMBER: "a number"}.get(kind) or f"a {kind.__name__}"


def _type_name(value) -> str:
    return "None" if value is None else type(value).__name__


def _arrays(tree, prefix=""):
    """(key path, ndarray) for every Tensor/array in a nested dict/list."""
    if isinstance(tree, Tensor):
        yield prefix, tree._data
    elif isinstance(tree, np.ndarray):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _arrays(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _arrays(v, f"{prefix}/{i}" if prefix else str(i))


def first_non_finite(state: dict) -> str | None:
    """The key path of the first model weight or optimizer buffer holding NaN or inf, else None."""
    for part in ("model", "optimizer"):
        for key, arr in _arrays(state.get(part, {}), part):
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                return key
    return None


def save_checkpoint(state: dict, path) -> Path:
    """``tc.save(state, path)``, refusing a state whose weights or optimizer buffers are not all finite."""
    bad = first_non_finite(state)
    if bad is not None:
        raise NonFiniteState(f"refusing to write {path}: {bad} holds NaN or infinite values")
    save(state, path)
    return Path(path)


def conforms(template, value, where: str) -> None:
    """Raise ValueError unless ``value`` has ``template``'s structure: the same dict keys, list lengths, value
    kinds (int, number, bool, str, None) and array shapes and dtype kinds, recursively."""
    if isinstance(template, (Tensor, np.ndarray)):
        t = template._data if isinstance(template, Tensor) else template
        if not isinstance(value, (Tensor, np.ndarray)):
            raise ValueError(f"{where}: expected an array {tuple(t.shape)}, found {_type_name(value)}")
        v = value._data if isinstance(value, Tensor) else value
        if v.shape != t.shape or v.dtype.kind != t.dtype.kind:
            raise ValueError(f"{where}: expected {t.dtype.kind}-kind array of shape {tuple(t.shape)}, "
                             f"found {v.dtype} {tuple(v.shape)}")
    elif isinstance(template, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a dict, found {_type_name(value)}")
        if set(value) != set(template):
            missing, extra = sorted(map(str, set(template) - set(value))), sorted(map(str, set(value) - set(template)))
            raise ValueError(f"{where}: " + "; ".join(
                ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])))
        for k in template:
            conforms(template[k], value[k], f"{where}/{k}")
    elif isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            raise ValueError(f"{where}: expected a list of {len(template)}, found "
                             + (f"a list of {len(value)}" if isinstance(value, (list, tuple)) else _type_name(value)))
        for i, (t, v) in enumerate(zip(template, value)):
            conforms(t, v, f"{where}/{i}")
    elif isinstance(template, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected a bool, found {_type_name(value)}")
    elif isinstance(template, (int, float, np.number)):
        kind = _INT if _is(template, _INT) else _NUMBER
        if not _is(value, kind):
            raise ValueError(f"{where}: expected {_kind_name(kind)}, found {_type_name(value)}")
    elif isinstance(template, str) or template is None:
        if not (isinstance(value, str) if isinstance(template, str) else value is None):
            raise ValueError(f"{where}: expected {_type_name(template)}, found {_type_name(value)}")


def validate_checkpoint(state, path) -> dict:
    """Check the top-level schema of a training checkpoint; raise CheckpointError naming ``path`` and the problem.

    Checked here: every key of ``SCHEMA`` with its type, the format name and version, the position
    (0 <= epoch <= epochs, batch >= 0), model weights (floating point, finite), the loader position, the RNG state,
    the partial-epoch sums and the history rows. The parts whose structure depends on the model, optimizer and
    scheduler are checked by ``Trainer.load_state_dict`` against the objects it loads into.
    """
    try:
        _check_schema(state)
        _check_position(state)
        _check_contents(state)
        _check_history(state["history"], int(state["epoch"]))
    except _Unusable as e:
        raise CheckpointError(f"{path}: not a usable training checkpoint: {e}") from None
    return state


class _Unusable(Exception):
    """What is wrong with a checkpoint (validate_checkpoint adds the file's name)."""


def _fail(msg: str):
    raise _Unusable(msg)


def _check_schema(state) -> None:
    """A dict of this format, every key of SCHEMA with its type, a version this tinyconv reads."""
    if not isinstance(state, dict):
        _fail(f"expected a dict, found {_type_name(state)}")
    if state.get("format") != CHECKPOINT_FORMAT:
        _fail(f"format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r} (a file written by 'tinyconv "
             "train' / Trainer)")
    for key, kinds in SCHEMA.items():
        if key not in state:
            _fail(f"the entry {key!r} is missing")
        if not any(_is(state[key], k) for k in kinds):
            _fail(f"{key!r} should be " + " or ".join(_kind_name(k) for k in kinds)
                 + f", found {_type_name(state[key])}")
    if not 1 <= state["version"] <= CHECKPOINT_VERSION:
        _fail(f"checkpoint version {state['version']}, this tinyconv reads 1..{CHECKPOINT_VERSION}")


def _check_position(state) -> None:
    """0 <= epoch <= epochs, a batch only inside an unfinished epoch, 'complete' agreeing, a known interval."""
    epochs, epoch, batch = int(state["epochs"]), int(state["epoch"]), int(state["batch"])
    if not (0 <= epoch <= epochs and batch >= 0 and (batch == 0 or epoch < epochs)):
        _fail(f"inconsistent position: epoch {epoch} of {epochs}, batch {batch}")
    if state["complete"] != (epoch >= epochs):
        _fail(f"'complete' is {state['complete']} at epoch {epoch} of {epochs}")
    if state["scheduler_interval"] not in ("batch", "epoch"):
        _fail(f"scheduler_interval {state['scheduler_interval']!r}, expected 'batch' or 'epoch'")


def _check_contents(state) -> None:
    """Named, finite model weights; the loader position; a NumPy RNG state; the partial-epoch sums."""
    if not state["model"]:
        _fail("the model state is empty")
    for name, value in state["model"].items():
        if not isinstance(name, str) or not isinstance(value, (Tensor, np.ndarray)):
            _fail(f"model entry {name!r} should be a named array, found {_type_name(value)}")
    bad = first_non_finite(state)
    if bad is not None:
        _fail(f"{bad} holds NaN or infinite values")
    loader = state["loader"]
    for key in LOADER_KEYS:
        if not _is(loader.get(key), _INT) or loader[key] < 0:
            _fail(f"loader/{key} should be a non-negative integer, found {loader.get(key)!r}")
    try:
        rng = json.loads(state["rng"])
        if not isinstance(rng, dict) or not isinstance(rng.get("bit_generator"), str) or \
                not hasattr(np.random, rng["bit_generator"]) or not isinstance(rng.get("state"), dict):
            raise ValueError("not a NumPy bit-generator state")
    except ValueError as e:
        _fail(f"the RNG state is damaged ({e})")
    if state["partial"] is not None:
        for key, kind in PARTIAL_KEYS.items():
            if not _is(state["partial"].get(key), kind):
                _fail(f"partial/{key} should be {_kind_name(kind)}, found {_type_name(state['partial'].get(key))}")


def _check_history(history, epoch) -> None:
    """One row of finite numbers per completed epoch, numbered 1, 2, ..."""
    from .reporting import METRICS

    if len(history) != epoch:
        _fail(f"the history has {len(history)} rows for {epoch} completed epochs")
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            _fail(f"history/{i} should be a dict, found {_type_name(row)}")
        for key in METRICS:
            if not _is(row.get(key), _NUMBER):
                _fail(f"history/{i}/{key} should be a number, found {_type_name(row.get(key))}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values()):
            _fail(f"history/{i} holds a value that is not a number")
        if not math.isfinite(float(row["epoch"])) or int(row["epoch"]) != i + 1:
            _fail(f"history/{i}/epoch is {row['epoch']!r}, expected {i + 1}")


def load_checkpoint(path) -> dict:
    """``tc.load(path)`` checked against the checkpoint schema (:func:`validate_checkpoint`).

    Raises :class:`tinyconv.CheckpointError` (naming the file) for a missing, unreadable, damaged or
    tampered file.
    """
    return validate_checkpoint(load(path), path)


def model_from_config(config: dict):
    """The network a run's config names: ``nn.models.ResNet`` or ``nn.models.LeNet(variant)`` (the one place that
    maps a run's options to a model; ``tinyconv train`` and :func:`model_from_checkpoint` both use it)."""
    from .. import nn

    if config.get("model", "lenet") == "resnet":
        return nn.models.ResNet(kernel=config.get("kernel"))
    return nn.models.LeNet(config.get("variant", "modern"), kernel=config.get("kernel"))


def model_from_checkpoint(path, *, kernel: str | None = None, eval: bool = True):
    """The trained model of a checkpoint written by ``tinyconv train`` (or ``Trainer``), ready to use::

        model = model_from_checkpoint("runs/lenet/checkpoint.npz")
        scores = model(images)            # images: float32 (N, 1, 28, 28)

    Builds the network its config names, loads the weights (all or nothing), and puts it in eval mode (batch norm
    uses its running statistics) unless ``eval=False``. ``kernel`` picks the convolution algorithm (default: the
    one the run used). Raises :class:`tinyconv.CheckpointError` for a file that is not a training checkpoint or
    whose weights do not fit the network its config names.
    """
    state = load_checkpoint(path)
    config = dict(state["config"])
    if kernel is not None:
        config["kernel"] = kernel
    if config.get("model", "lenet") not in ("lenet", "resnet"):
        raise CheckpointError(f"{path}: the saved config names model {config.get('model')!r}; expected lenet or "
                              "resnet")
    try:
        model = model_from_config(config)
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the network its config names: {one_line(e)}") from None
    return model.eval() if eval else model
