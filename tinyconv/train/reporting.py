"""What a training run shows and leaves behind besides its checkpoint: the epoch line, ``metrics.csv``,
``curves.png``, the confusion matrix, per-layer gradient norms, and the one-time numba compile notice."""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import numpy as np

from ..files import atomic_write

__all__ = ["METRICS", "format_row", "format_confusion", "write_metrics_csv", "plot_curves", "grad_norms",
           "CompileNotice"]

#: Columns of ``metrics.csv`` (followed by ``grad_norm_<layer>`` columns with ``log_grads``).
METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "train_seconds", "eval_seconds",
           "images_per_s")


def format_row(row: dict, epochs: int) -> str:
    """``epoch  3/8  train loss 0.0412  acc 98.71%  test loss 0.0301  acc 99.02%  lr 5.0e-04  41.3 s  1452 img/s``"""
    width = len(str(epochs))
    test = ("" if math.isnan(row["test_acc"]) else
            f"  test loss {row['test_loss']:.4f}  acc {100 * row['test_acc']:.2f}%")
    return (f"epoch {row['epoch']:>{width}}/{epochs}  train loss {row['train_loss']:.4f}  "
            f"acc {100 * row['train_acc']:.2f}%{test}  lr {row['lr']:.2e}  "
            f"{row['train_seconds']:.1f} s (+{row['eval_seconds']:.1f} s eval)  "
            f"{row['images_per_s']:.0f} img/s")


def format_confusion(confusion: np.ndarray, labels=None) -> str:
    """The confusion matrix as aligned text: rows = true class, columns = predicted, plus per-class accuracy."""
    confusion = np.asarray(confusion)
    c = confusion.shape[0]
    labels = [str(i) for i in range(c)] if labels is None else [str(s) for s in labels]
    width = max(max(len(str(v)) for v in confusion.flat), max(len(s) for s in labels), 4)
    head = "true\\pred".ljust(10) + " ".join(s.rjust(width) for s in labels) + "   acc"
    rows = [head]
    for i in range(c):
        total = confusion[i].sum()
        acc = f"{100.0 * confusion[i, i] / total:6.2f}%" if total else "     -"
        rows.append(labels[i].ljust(10) + " ".join(str(v).rjust(width) for v in confusion[i]) + " " + acc)
    return "\n".join(rows)


def grad_norms(model) -> dict[str, float]:
    """L2 norm of each layer's gradient (a module's own parameters together), by module name, e.g. ``conv1``.

    ``tinyconv.visualize.grad_norms(model, by="module")``; parameters without a gradient are left out.
    """
    from ..visualize import grad_norms as _grad_norms

    return _grad_norms(model, by="module")


def write_metrics_csv(history: list[dict], path) -> Path:
    """Write the history as CSV (one row per epoch; columns ``METRICS`` then any extra keys, e.g. grad norms)."""
    path = Path(path)
    extra = []
    for row in history:
        extra += [k for k in row if k not in METRICS and k not in extra]
    columns = list(METRICS) + extra
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())
    return path


def plot_curves(history: list[dict], path) -> bool:
    """Draw loss, accuracy (and gradient norms, when recorded) per epoch into a PNG.

    Returns False (and draws nothing) when matplotlib is not installed. Uses the Agg canvas directly, so it never
    touches pyplot's global backend.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    epochs = [r["epoch"] for r in history]
    grad_keys = [k for k in (history[0] if history else {}) if k.startswith("grad_norm_")]
    panels = 3 if grad_keys else 2
    fig = Figure(figsize=(4.2 * panels, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, panels, 1)
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax.legend()
    ax = fig.add_subplot(1, panels, 2)
    ax.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train")
    ax.plot(epochs, [100 * r["test_acc"] for r in history], "s-", label="test")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend()
    if grad_keys:
        ax = fig.add_subplot(1, panels, 3)
        for k in grad_keys:
            ax.plot(epochs, [r.get(k, float("nan")) for r in history], "o-", label=k[len("grad_norm_"):])
        ax.set(xlabel="epoch", ylabel="mean per-batch L2 norm", title="gradient norm per layer", yscale="log")
        ax.legend(fontsize="small")
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    return True


class CompileNotice:
    """Say when numba compiles (the first run on a cold cache), and how long it took.

    Inside ``with CompileNotice(say):`` the first compilation prints ``say("compiling kernels (once, cached
    afterwards) ...")``; ``.seconds`` is the time spent in (outermost) compilations and ``.count`` their number.
    Loading a kernel from numba's on-disk cache is not a compilation and says nothing. Without numba's event
    API (or with ``NUMBA_DISABLE_JIT=1``) it stays silent.
    """

    MESSAGE = "compiling kernels (once, cached afterwards) ..."

    def __init__(self, say):
        self.say, self.seconds, self.count = say, 0.0, 0
        self._depth, self._t0, self._cm = 0, 0.0, None

    def started(self, dispatcher=None) -> None:
        if self._depth == 0:
            if self.count == 0:
                self.say(self.MESSAGE)
            self._t0 = time.perf_counter()
        self._depth += 1

    def ended(self, dispatcher=None) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._t0
            self.count += 1

    def __enter__(self) -> CompileNotice:
        from ..kernels.precompile import compile_events

        self._cm = compile_events(self.started, self.ended)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
            self._cm = None

    def summary(self) -> str | None:
        """``"compiled 7 kernels in 9.1 s (once: later runs load them from numba's cache)"`` or None."""
        if not self.count:
            return None
        return (f"compiled {self.count} kernel{'s' if self.count != 1 else ''} in {self.seconds:.1f} s "
                "(once: later runs load them from numba's cache)")
