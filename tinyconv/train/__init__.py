"""Training and evaluation: the loop, its checkpoints, and what it reports.

The pieces::

    trainer = Trainer(model, optimizer, train_loader, test_loader, epochs=8, scheduler=sched,
                      scheduler_interval="batch", out_dir="runs/lenet")
    history = trainer.fit()            # list of per-epoch dicts (see METRICS)
    evaluate(model, test_loader)       # {'loss', 'acc', 'n', 'confusion' (C, C) int64}

- :mod:`.loop`: ``Trainer`` and ``evaluate``. Each epoch: one pass over ``train_loader`` (cross-entropy,
  ``optimizer.step()`` per batch, the scheduler stepped per batch or per epoch), then ``evaluate`` on
  ``test_loader``, the files ``checkpoint.npz`` and ``metrics.csv`` (with ``out_dir``), and then the one-line
  summary (after the files: an epoch that was reported is on disk). ``curves.png`` (when matplotlib is
  installed) is drawn when the run ends or stops, and along the way at most once a minute.
- :mod:`.checkpoint`: what a checkpoint holds, its schema check (``load_checkpoint``), ``save_checkpoint``,
  which refuses NaN/inf weights, and ``model_from_checkpoint(path)``: the trained model, ready to use.
- :mod:`.reporting`: the epoch line, ``metrics.csv``, ``curves.png``, the confusion matrix, gradient norms, the
  numba compile notice.

**Exact resume.** A checkpoint holds everything that decides the next numbers: model, optimizer and scheduler
state, the DataLoader position (seed, epoch, batch), tinyconv's global RNG state, the metrics history and the
running sums of an unfinished epoch. Loading it into freshly built objects and calling ``fit`` again continues
with bit-identical losses, from an epoch boundary or from the middle of an epoch. Loading is all or nothing: a
damaged or tampered checkpoint raises :class:`tinyconv.CheckpointError` and changes nothing.

**Divergence.** A non-finite training loss, or a weight that stops being finite after a step, stops ``fit`` with
:class:`TrainingDiverged`; the last good checkpoint stays on disk and a non-finite one is never written.

**Ctrl-C.** The first SIGINT asks the loop to stop after the batch in progress: it saves a mid-epoch checkpoint
at that clean point and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``). A second Ctrl-C raises
``KeyboardInterrupt`` at once; the loop still saves a mid-epoch checkpoint if the interrupt arrived outside the
parameter update (the batch in progress is then simply redone on resume), and otherwise leaves the checkpoint of
the last completed epoch in place.
"""
from .checkpoint import (CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, model_from_checkpoint, model_from_config,
                         save_checkpoint, validate_checkpoint)
from .loop import Trainer, TrainingDiverged, TrainingInterrupted, evaluate
from .reporting import METRICS, CompileNotice, format_confusion, grad_norms, plot_curves, write_metrics_csv

__all__ = [
    "Trainer", "TrainingInterrupted", "TrainingDiverged", "evaluate", "format_confusion", "write_metrics_csv",
    "plot_curves", "grad_norms", "METRICS", "CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint",
    "save_checkpoint", "validate_checkpoint", "CompileNotice", "model_from_checkpoint", "model_from_config",
]
