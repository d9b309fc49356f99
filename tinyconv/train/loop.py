"""The training loop: ``Trainer`` (fit, exact resume, Ctrl-C, divergence) and ``evaluate``."""
from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..random import get_rng_state, set_rng_state
from ..serialization import CheckpointError
from ..tensor import Tensor
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    NonFiniteState,
    conforms,
    load_checkpoint,
    one_line,
    save_checkpoint,
    validate_checkpoint,
)
from .reporting import format_row, grad_norms, plot_curves, write_metrics_csv

PLOT_EVERY_S = 60.0  # curves.png is redrawn after an epoch at most this often (and always when the run ends)

__all__ = ["Trainer", "TrainingInterrupted", "TrainingDiverged", "evaluate"]


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``Trainer.fit`` after Ctrl-C (or ``request_stop()``); ``.checkpoint`` is the file written
    (None if none could be written safely), ``.epoch``/``.batch`` where training stopped."""

    def __init__(self, message: str, checkpoint: Path | None, epoch: int, batch: int):
        super().__init__(message)
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch


class TrainingDiverged(RuntimeError):
    """Raised by ``Trainer.fit`` when the loss or the weights stop being finite. Nothing non-finite is saved:
    ``.checkpoint`` is the last good checkpoint on disk (None if there is none), ``.epoch``/``.batch`` where the
    divergence was seen."""

    def __init__(self, message: str, checkpoint: Path | None, epoch: int, batch: int):
        super().__init__(message)
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch


# ------------------------------------------------------------------------------------------------- evaluation
def evaluate(model, loader, num_classes: int | None = None) -> dict:
    """Loss and accuracy of ``model`` over every batch of ``loader``, in eval mode and without a graph.

    Args:
        model: maps x (N, ...) to class scores (N, C).
        loader: yields ``(x, y)`` with x float32 (N, ...) and y int (N,).
        num_classes: size of the confusion matrix (default: C from the scores).

    Returns:
        ``{'loss': mean cross-entropy, 'acc': fraction correct, 'n': samples,
        'confusion': int64 (C, C) with rows = true class, columns = predicted class}``.
    """
    was_training = model.training
    model.eval()
    loss_sum, n, confusion = 0.0, 0, None
    try:
        with no_grad():
            for x, y in loader:
                scores = model(Tensor(x))
                loss_sum += float(F.cross_entropy(scores, y, reduction="sum").item())
                pred = scores._data.argmax(axis=1)
                if confusion is None:
                    c = num_classes or scores.shape[1]
                    confusion = np.zeros((c, c), dtype=np.int64)
                np.add.at(confusion, (np.asarray(y, dtype=np.int64), pred), 1)
                n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return {"loss": loss_sum / n, "acc": float(np.trace(confusion)) / n, "n": n, "confusion": confusion}


# ---------------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Fit a classifier with cross-entropy; keep a history; checkpoint every epoch; resume exactly.

    Args:
        model: a Module mapping x (N, ...) float32 to scores (N, C).
        optimizer: a ``tc.optim`` optimizer over the model's parameters.
        train_loader: a ``tc.data.DataLoader`` (its ``state_dict``/``load_state_dict``/``set_epoch`` are used
            for exact resume).
        test_loader: evaluated after every epoch (None skips evaluation; the test columns are then NaN).
        epochs: total number of epochs (resuming counts the ones already done).
        scheduler: a ``tc.optim.lr_scheduler`` scheduler, stepped every batch (``scheduler_interval='batch'``)
            or every epoch (``'epoch'``).
        out_dir: folder for ``checkpoint.npz``, ``metrics.csv``, ``curves.png``; None writes nothing.
        log_grads: record each layer's gradient L2 norm (mean over the epoch's batches) as
            ``grad_norm_<layer>`` in the history.
        config: a dict of plain values stored in the checkpoint (the CLI keeps its options there).
        progress: show a tqdm bar per epoch (running loss and accuracy).
        out: where the per-epoch summary lines go (default stdout).
        handle_sigint: catch Ctrl-C to stop cleanly (only possible in the main thread).
        callback: optional ``callback(trainer, epoch, batch)`` after every batch (tests use it to stop early).
        precompile: at the start of this session's first epoch, compile the kernels of a training step ahead
            (:meth:`compile_ahead`; its time counts in that epoch's seconds), so that a cold numba cache costs
            less; ``precompile_report`` then says what it did.
    """

    def __init__(self, model, optimizer, train_loader, test_loader=None, *, epochs: int, scheduler=None,
                 scheduler_interval: str = "epoch", out_dir=None, log_grads: bool = False, config=None,
                 progress: bool = True, out=None, handle_sigint: bool = True, callback=None,
                 precompile: bool = False):
        if scheduler_interval not in ("batch", "epoch"):
            raise ValueError(f"scheduler_interval must be 'batch' or 'epoch', got {scheduler_interval!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.test_loader = train_loader, test_loader
        self.epochs, self.scheduler_interval = epochs, scheduler_interval
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log_grads, self.config = bool(log_grads), dict(config or {})
        self.progress, self.out, self.handle_sigint = progress, out, handle_sigint
        self.callback = callback
        # compile the kernels ahead at the start of this session's first epoch (its time counts in the epoch's)
        self.precompile, self.precompile_report = bool(precompile), None
        self.history: list[dict] = []
        self.epoch = 0  # completed epochs
        self._batch = 0  # batches of the epoch in progress that are fully applied
        self._partial = self._fresh_partial()
        self._stop = False
        self._rng_at_batch_start = get_rng_state()
        self._plotted_at = 0.0  # when curves.png was last drawn (time.monotonic), and whether epochs came since
        self._plot_stale = False
        self._saved_epochs = 0  # epochs whose checkpoint and metrics.csv row are written

    @property
    def batch(self) -> int:
        """Batches of the epoch in progress already applied (0 at an epoch boundary)."""
        return self._batch

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoint.npz"

    @staticmethod
    def _fresh_partial() -> dict:
        return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "lr": float("nan"), "grad_sums": {},
                "grad_batches": 0}

    def log(self, line: str) -> None:
        """Print one line to ``out`` (through tqdm when a progress bar may be showing)."""
        stream = self.out if self.out is not None else sys.stdout
        if self.progress:
            from tqdm import tqdm

            tqdm.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def request_stop(self) -> None:
        """Ask ``fit`` to save a checkpoint and stop after the batch in progress (what Ctrl-C does)."""
        self._stop = True

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The checkpoint: everything needed to continue exactly from the last fully applied batch."""
        loader = self.train_loader
        loader_state = {"seed": loader.seed, "epoch": self.epoch, "batch": self._batch,
                        "batch_size": loader.batch_size, "num_samples": loader.num_samples}
        partial = None
        if self._batch:
            partial = dict(self._partial, grad_sums=dict(self._partial["grad_sums"]))
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config,
            "epochs": self.epochs,
            "epoch": self.epoch,
            "batch": self._batch,
            "complete": self.epoch >= self.epochs,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scheduler_interval": self.scheduler_interval,
            "loader": loader_state,
            "rng": self._rng_at_batch_start,
            "partial": partial,
            "history": [dict(r) for r in self.history],
        }

    def load_state_dict(self, state: dict, path="<state>") -> None:
        """Restore a checkpoint made by ``state_dict()`` into this trainer's (freshly built) objects.

        All or nothing: the state is checked against the checkpoint schema and against this trainer's own
        model, optimizer, scheduler and loader first; if anything still fails while loading, every object is put
        back as it was. Raises :class:`tinyconv.CheckpointError` naming ``path`` and the problem.
        """
        validate_checkpoint(state, path)
        mine = self.state_dict()
        try:
            if (state["scheduler"] is None) != (self.scheduler is None):
                raise ValueError("the checkpoint " + ("has no" if state["scheduler"] is None else "has a")
                                 + " scheduler state but this trainer " + ("has one" if self.scheduler else "has none"))
            if state["scheduler_interval"] != self.scheduler_interval:
                raise ValueError(f"the checkpoint steps its scheduler per {state['scheduler_interval']}, this "
                                 f"trainer per {self.scheduler_interval}")
            if self.scheduler is not None:
                conforms(mine["scheduler"], state["scheduler"], "scheduler")
            conforms({k: mine["loader"][k] for k in ("seed", "batch_size", "num_samples")},
                     {k: state["loader"][k] for k in ("seed", "batch_size", "num_samples")}, "loader")
            groups = state["optimizer"].get("param_groups")
            if not isinstance(groups, list) or len(groups) != len(mine["optimizer"]["param_groups"]):
                raise ValueError("optimizer/param_groups: not the optimizer's groups")
            for i, (g_mine, g_saved) in enumerate(zip(mine["optimizer"]["param_groups"], groups)):
                conforms({k: v for k, v in g_mine.items() if k != "params"},
                         {k: v for k, v in g_saved.items() if k != "params"} if isinstance(g_saved, dict) else g_saved,
                         f"optimizer/param_groups/{i}")
        except ValueError as e:
            raise CheckpointError(f"{path}: does not fit this run: {e}") from None
        snapshot = copy.deepcopy({"model": {k: v._data for k, v in self.model.state_dict().items()},
                                  "optimizer": self.optimizer.state_dict(),
                                  "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                                  "loader": self.train_loader.state_dict(), "rng": get_rng_state()})
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.train_loader.load_state_dict(state["loader"])
            set_rng_state(state["rng"])
        except Exception as e:  # tampered contents that passed the checks above: put everything back
            self.model.load_state_dict(snapshot["model"])
            self.optimizer.load_state_dict(snapshot["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(snapshot["scheduler"])
            self.train_loader.load_state_dict(snapshot["loader"])
            set_rng_state(snapshot["rng"])
            raise CheckpointError(f"{path}: does not fit this run: {one_line(e)}") from None
        self._rng_at_batch_start = state["rng"]
        self.epoch, self._batch = int(state["epoch"]), int(state["batch"])
        self.history = [dict(r) for r in state["history"]]
        self._saved_epochs = len(self.history)
        self._partial = self._fresh_partial()
        if self._batch and state.get("partial"):
            self._partial.update(state["partial"])
            self._partial["grad_sums"] = dict(self._partial["grad_sums"])

    def save_checkpoint(self, path=None) -> Path:
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint: no path given and the trainer has no out_dir")
        try:
            return save_checkpoint(self.state_dict(), path)
        except NonFiniteState as e:  # e.g. an optimizer buffer overflowed while the weights stayed finite
            at_boundary = self._batch == 0 and self.epoch > 0  # (the epoch just finished: its count moved on)
            where = f"at the end of epoch {self.epoch}" if at_boundary else None
            raise self._diverged(str(e), self._lr(), where) from None

    def resume(self, path=None) -> None:
        """Load ``path`` (default ``out_dir/checkpoint.npz``) into this trainer."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("resume: no path given and the trainer has no out_dir")
        self.load_state_dict(load_checkpoint(path), path)

    # -------------------------------------------------------------------------------------------- loop
    def compile_ahead(self, processes: int | None = None):
        """Compile the numba kernels that a training step and an evaluation batch will call (at the loaders' full
        batch size and at the size of an epoch's smaller last batch), before the first batch, ``processes`` at a
        time (:mod:`tinyconv.kernels.precompile`): on a cold numba cache the first batch then only loads them; on
        a warm one this costs a dry run of milliseconds. The dry run works on copies of the model and optimizer,
        and the random state is put back, so training is unchanged. Returns the
        :class:`~tinyconv.kernels.precompile.Report`, or None when the dry run failed (the kernels then compile
        on their first call, as without this)."""
        from ..kernels import precompile

        if self.epoch >= self.epochs:  # nothing left to train
            return None
        rng = get_rng_state()
        try:
            # one deepcopy of both: the copied optimizer steps the copied model's parameters
            model, opt = copy.deepcopy((self.model, self.optimizer))
            train = self.train_loader.example_batches()  # a full batch, and the epoch's smaller last one if any
            test = self.test_loader.example_batches() if self.test_loader is not None else []

            def dry_run():
                model.train()
                for x, y in train:
                    loss = F.cross_entropy(model(Tensor(x)), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                model.eval()
                with no_grad():
                    for x, _ in test:
                        model(Tensor(x))

            calls = precompile.record(dry_run)
        except Exception:  # a model or loader the dry run cannot handle: the kernels compile as the run goes
            return None
        finally:
            set_rng_state(rng)
        return precompile.compile_ahead(calls, processes)

    def fit(self) -> list[dict]:
        """Train until ``epochs`` epochs are complete; return the history (one dict per epoch)."""
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        previous = None
        self._plotted_at = time.monotonic()  # the first curves after PLOT_EVERY_S, or at the end
        if self.handle_sigint and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            while self.epoch < self.epochs:
                self._run_epoch()
                if self._stop and self.epoch < self.epochs:  # asked during the epoch's last batch
                    raise self._interrupted(saved=True)
        except BaseException as e:
            # the epochs done so far (not after a second Ctrl-C, which stops at once); a figure that cannot be
            # drawn now must not hide why the run stopped
            if isinstance(e, TrainingInterrupted) or not isinstance(e, KeyboardInterrupt):
                with contextlib.suppress(Exception):
                    self._plot_curves()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self._stop = False
        return self.history

    def _plot_curves(self, final: bool = True) -> None:
        """Draw curves.png (with matplotlib) if epochs ended since it was drawn: at the end of the run (``final``),
        else at most every :data:`PLOT_EVERY_S` seconds: a figure takes a good part of a second, an MNIST epoch a few
        seconds (the checkpoint and metrics.csv are written every epoch)."""
        if self.out_dir is None or not self._plot_stale:
            return
        now = time.monotonic()
        if final or now - self._plotted_at >= PLOT_EVERY_S:
            plot_curves(self.history[:self._saved_epochs], self.out_dir / "curves.png")
            self._plotted_at, self._plot_stale = time.monotonic(), False

    def _on_sigint(self, signum, frame):
        if self._stop:  # second Ctrl-C: stop right now
            raise KeyboardInterrupt
        self._stop = True
        self.log("\nCtrl-C: stopping after this batch and saving a checkpoint (press again to abort at once)")

    def _lr(self) -> float:  # group 0's: the one the summary line shows
        return float(self.optimizer.param_groups[0]["lr"])

    def _run_epoch(self) -> None:
        model, opt, loader = self.model, self.optimizer, self.train_loader
        epoch, start_batch = self.epoch, self._batch
        if start_batch == 0:
            self._partial = self._fresh_partial()
            loader.set_epoch(epoch)
        part = self._partial
        model.train()
        bar = self._progress_bar(start_batch)
        t0 = time.perf_counter()
        if self.precompile:
            self.precompile = False
            self.precompile_report = self.compile_ahead()
        in_update = False
        try:
            for x, y in loader:
                self._rng_at_batch_start = get_rng_state()
                scores = model(Tensor(x))
                loss = F.cross_entropy(scores, y)
                loss_value = float(loss.item())
                if not math.isfinite(loss_value):
                    raise self._diverged(f"the training loss is {loss_value}", self._lr())
                opt.zero_grad()
                loss.backward()
                norms = grad_norms(model) if self.log_grads else None
                # From here to the end of the bookkeeping the state is half-updated: an interrupt in this
                # window cannot be resumed mid-epoch (see the except clause).
                in_update = True
                part["lr"] = self._lr()  # the lr this batch used (a per-batch schedule moves it next)
                opt.step()
                if self.scheduler is not None and self.scheduler_interval == "batch":
                    self.scheduler.step()
                bad = self._non_finite_weight()
                if bad is not None:
                    raise self._diverged(f"{bad} is no longer finite after the optimizer step", part["lr"])
                _add_batch(part, loss_value, scores, y, norms)
                self._batch += 1
                self._rng_at_batch_start = get_rng_state()
                in_update = False
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{part['loss_sum'] / part['seen']:.4f}",
                                    acc=f"{100 * part['correct'] / part['seen']:.2f}%", refresh=False)
                if self.callback is not None:
                    self.callback(self, epoch, self._batch)
                if self._stop and self._batch < len(loader):
                    part["seconds"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    raise self._interrupted(saved=True)
        except KeyboardInterrupt as e:
            if isinstance(e, TrainingInterrupted):
                raise
            part["seconds"] += time.perf_counter() - t0
            # Outside the update the model/optimizer are exactly as after batch self._batch: resumable.
            raise self._interrupted(saved=not in_update) from None
        finally:
            if bar is not None:
                bar.close()
        part["seconds"] += time.perf_counter() - t0
        self._finish_epoch()

    def _progress_bar(self, start_batch):
        """A tqdm bar for this epoch on stderr (None without ``progress``)."""
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=len(self.train_loader), initial=start_batch, desc=f"epoch {self.epoch + 1}/{self.epochs}",
                    unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)

    def _interrupted(self, saved: bool) -> TrainingInterrupted:
        path = None
        if self._batch:
            where = f"in epoch {self.epoch + 1} after batch {self._batch}/{len(self.train_loader)}"
        else:
            where = f"after epoch {self.epoch}"
        if saved and self.checkpoint_path is not None:
            path = self.save_checkpoint()
            msg = f"interrupted {where}: checkpoint saved to {path}"
        elif self.checkpoint_path is not None and self.checkpoint_path.exists():
            path = self.checkpoint_path
            msg = (f"interrupted during a parameter update {where}: kept the checkpoint of the last completed "
                   f"epoch, {path}")
        else:
            msg = f"interrupted {where} (no out_dir: nothing saved)"
        return TrainingInterrupted(msg, path, self.epoch, self._batch)

    def _finish_epoch(self) -> None:
        part = self._partial
        t0 = time.perf_counter()
        if self.test_loader is not None:
            result = evaluate(self.model, self.test_loader)
            test_loss, test_acc = result["loss"], result["acc"]
        else:
            test_loss = test_acc = float("nan")
        eval_seconds = time.perf_counter() - t0
        seen = max(part["seen"], 1)
        row = {
            "epoch": self.epoch + 1,
            "train_loss": part["loss_sum"] / seen,
            "train_acc": part["correct"] / seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": part["lr"],
            "train_seconds": part["seconds"],
            "eval_seconds": eval_seconds,
            "images_per_s": part["seen"] / part["seconds"] if part["seconds"] > 0 else float("nan"),
        }
        if self.log_grads and part["grad_batches"]:
            for k, v in part["grad_sums"].items():
                row[f"grad_norm_{k}"] = v / part["grad_batches"]
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        self.history.append(row)
        self.epoch += 1
        self._batch = 0
        self._partial = self._fresh_partial()
        self._rng_at_batch_start = get_rng_state()
        if self.out_dir is not None:  # saved before the line is printed: a closed stdout cannot lose the epoch
            self.save_checkpoint()
            write_metrics_csv(self.history, self.out_dir / "metrics.csv")
            self._saved_epochs, self._plot_stale = len(self.history), True  # the epochs on disk: what is drawn
            self._plot_curves(final=self.epoch >= self.epochs)
        self.log(self.format_row(row))

    def format_row(self, row: dict) -> str:
        """The epoch's summary line (see :func:`tinyconv.train.reporting.format_row`)."""
        return format_row(row, self.epochs)

    def _non_finite_weight(self) -> str | None:
        for name, p in self.model.named_parameters():
            if not np.isfinite(p._data).all():
                return name
        return None

    def _diverged(self, what: str, lr: float, where: str | None = None) -> TrainingDiverged:
        where = where or f"in epoch {self.epoch + 1}, batch {self._batch + 1}/{len(self.train_loader)}"
        ckpt = self.checkpoint_path
        if ckpt is not None and ckpt.exists():
            kept = f"kept the last good checkpoint, {ckpt} (nothing non-finite is ever saved)"
        else:
            ckpt = None
            kept = "no checkpoint had been written yet (nothing non-finite is ever saved)"
        return TrainingDiverged(f"training diverged {where}: {what} (learning rate {lr:.3g}: probably too high); "
                                f"{kept}", ckpt, self.epoch, self._batch)


def _add_batch(part: dict, loss_value: float, scores, y, norms) -> None:
    """Add one batch to the epoch's running sums: loss, correct predictions, images seen, gradient norms."""
    n = len(y)
    part["loss_sum"] += loss_value * n
    part["correct"] += int((scores._data.argmax(axis=1) == y).sum())
    part["seen"] += n
    if norms is not None:
        for k, v in norms.items():
            part["grad_sums"][k] = part["grad_sums"].get(k, 0.0) + v
        part["grad_batches"] += 1
