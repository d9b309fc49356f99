"""The training loop: learning on a generated data set, metrics files, and exact resume after an interruption."""
import csv
import os
import signal

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn
from tinyconv.data import DataLoader
from tinyconv.train import Trainer, TrainingInterrupted, evaluate, format_confusion, grad_norms, plot_curves


def bars(n, seed=0, size=28):
    """A separable 10-class set: class k is a bright horizontal bar at rows 2k..2k+5 over faint noise.

    Returns uint8 images (n, size, size) and int64 labels (n,).
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 80, (n, size, size))
    for i, k in enumerate(y):
        x[i, 2 * k:2 * k + 6, 4:24] += 170
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def make_trainer(out_dir=None, epochs=3, model_fn=mlp, n_train=320, batch_size=64, **kw):
    """Everything built from scratch with fixed seeds, as the CLI does: two calls give identical runs."""
    tc.manual_seed(0)
    model = model_fn()
    x, y = bars(n_train + 200)
    train = DataLoader((x[:n_train], y[:n_train]), batch_size=batch_size, shuffle=True, seed=3)
    test = DataLoader((x[n_train:], y[n_train:]), batch_size=100)
    opt = tc.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * len(train)
    sched = tc.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return Trainer(model, opt, train, test, epochs=epochs, scheduler=sched, scheduler_interval="batch",
                   out_dir=out_dir, progress=False, out=open(os.devnull, "w"), **kw)


def losses(history):
    return [(r["train_loss"], r["train_acc"], r["test_loss"], r["test_acc"], r["lr"]) for r in history]


def params(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def test_mlp_learns_generated_bars():
    t = make_trainer(epochs=3)
    history = t.fit()
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] >= 0.95
    assert history[-1]["lr"] < 1e-4  # cosine annealed to ~0 by the last batch


def test_outputs_are_written(tmp_path):
    t = make_trainer(tmp_path, epochs=2, log_grads=True)
    t.fit()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "test_acc", "images_per_s", "grad_norm_1", "grad_norm_3"} <= set(rows[0])
    assert float(rows[1]["test_acc"]) == t.history[1]["test_acc"]  # written with repr: exact
    ckpt = tc.load(tmp_path / "checkpoint.npz")
    assert ckpt["epoch"] == 2 and ckpt["batch"] == 0 and ckpt["complete"]
    assert len(ckpt["history"]) == 2 and ckpt["partial"] is None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "curves.png").exists()
    else:
        assert (tmp_path / "curves.png").stat().st_size > 1000


def test_plot_curves_without_matplotlib(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert plot_curves([{"epoch": 1, "train_loss": 1, "test_loss": 1, "train_acc": 0, "test_acc": 0}],
                       tmp_path / "c.png") is False
    assert not list(tmp_path.iterdir())


def test_plot_curves_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    hist = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1 / e, "train_acc": 0.9, "test_acc": 0.9,
             "grad_norm_conv1": 0.1 * e} for e in (1, 2)]
    assert plot_curves(hist, tmp_path / "c.png") is True
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_grad_norms_per_layer():
    tc.manual_seed(0)
    model = mlp()
    assert grad_norms(model) == {}
    x = tc.randn(4, 1, 28, 28)
    tc.functional.cross_entropy(model(x), np.array([0, 1, 2, 3])).backward()
    norms = grad_norms(model)
    assert set(norms) == {"1", "3"}
    w, b = model[3].weight.grad.numpy(), model[3].bias.grad.numpy()
    assert norms["3"] == pytest.approx(np.sqrt((w.astype(np.float64) ** 2).sum() + (b.astype(np.float64) ** 2).sum()))


def test_evaluate_and_confusion():
    class Fixed(nn.Module):
        """Predicts class 1 for every sample."""

        def forward(self, x):
            scores = np.zeros((x.shape[0], 3), np.float32)
            scores[:, 1] = 1
            return tc.tensor(scores)

    x = np.zeros((5, 1, 2, 2), np.float32)
    y = np.array([0, 1, 1, 2, 1])
    res = evaluate(Fixed(), [(x[:3], y[:3]), (x[3:], y[3:])])
    assert res["n"] == 5 and res["acc"] == pytest.approx(0.6)
    np.testing.assert_array_equal(res["confusion"], [[0, 1, 0], [0, 3, 0], [0, 1, 0]])
    text = format_confusion(res["confusion"])
    assert text.splitlines()[0].startswith("true\\pred") and "100.00%" in text.splitlines()[2]
    with pytest.raises(ValueError, match="no samples"):
        evaluate(Fixed(), [])


def stop_at(epoch, batch):
    def callback(trainer, e, b):
        if (e, b) == (epoch, batch):
            trainer.request_stop()
    return callback


@pytest.mark.parametrize("where", [(0, 2), (1, 5), (0, 5)])  # mid-epoch, mid-epoch, last batch of an epoch
def test_resume_equals_uninterrupted(tmp_path, where):
    reference = make_trainer(epochs=3)
    ref_history = reference.fit()

    first = make_trainer(tmp_path, epochs=3, callback=stop_at(*where))
    with pytest.raises(TrainingInterrupted) as info:
        first.fit()
    assert info.value.checkpoint == tmp_path / "checkpoint.npz"
    ckpt = tc.load(tmp_path / "checkpoint.npz")
    expect_epoch, expect_batch = (where[0], where[1]) if where[1] < 5 else (where[0] + 1, 0)
    assert (ckpt["epoch"], ckpt["batch"]) == (expect_epoch, expect_batch)

    second = make_trainer(tmp_path, epochs=3)  # fresh objects, different init order is irrelevant: all loaded
    second.resume()
    history = second.fit()
    assert losses(history) == losses(ref_history)  # bit-identical floats
    for k, v in params(reference).items():
        np.testing.assert_array_equal(params(second)[k], v)


def test_real_sigint_saves_and_resumes(tmp_path):
    reference = make_trainer(epochs=2)
    ref_history = reference.fit()

    def send_sigint(trainer, e, b):
        if (e, b) == (1, 3):
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    first = make_trainer(tmp_path, epochs=2, callback=send_sigint)
    with pytest.raises(TrainingInterrupted, match="in epoch 2 after batch 3/5: checkpoint saved"):
        first.fit()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    second = make_trainer(tmp_path, epochs=2)
    second.resume()
    assert losses(second.fit()) == losses(ref_history)


def test_keyboard_interrupt_outside_update_is_resumable(tmp_path):
    reference = make_trainer(epochs=2)
    ref_history = reference.fit()

    def raise_at(trainer, e, b):
        if (e, b) == (0, 4):
            raise KeyboardInterrupt  # as if Ctrl-C arrived right after batch 4's update

    first = make_trainer(tmp_path, epochs=2, callback=raise_at)
    with pytest.raises(TrainingInterrupted, match="after batch 4/5: checkpoint saved"):
        first.fit()
    second = make_trainer(tmp_path, epochs=2)
    second.resume()
    assert losses(second.fit()) == losses(ref_history)


def test_keyboard_interrupt_inside_update_keeps_last_epoch_checkpoint(tmp_path):
    first = make_trainer(tmp_path, epochs=3)
    calls = {"n": 0}
    real_step = first.optimizer.step

    def step_then_interrupt():
        calls["n"] += 1
        real_step()
        if calls["n"] == 7:  # epoch 2, batch 2: half-way through an update
            raise KeyboardInterrupt

    first.optimizer.step = step_then_interrupt
    with pytest.raises(TrainingInterrupted, match="during a parameter update .*kept the checkpoint"):
        first.fit()
    ckpt = tc.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 0)


def test_resume_of_a_finished_run_does_nothing(tmp_path):
    t = make_trainer(tmp_path, epochs=1)
    t.fit()
    again = make_trainer(tmp_path, epochs=1)
    again.resume()
    before = params(again)
    assert len(again.fit()) == 1
    for k, v in params(again).items():
        np.testing.assert_array_equal(v, before[k])


def test_bad_checkpoints_are_refused(tmp_path):
    t = make_trainer(tmp_path, epochs=1)
    with pytest.raises(tc.CheckpointError, match="not a usable training checkpoint"):
        t.load_state_dict({"model": {}})
    state = make_trainer(epochs=1).state_dict()
    state["scheduler"] = None
    with pytest.raises(tc.CheckpointError, match="has no scheduler state"):
        t.load_state_dict(state)
    with pytest.raises(ValueError, match="scheduler_interval"):
        Trainer(t.model, t.optimizer, t.train_loader, epochs=1, scheduler_interval="week")


def test_divergence_stops_keeps_the_last_good_checkpoint_and_never_saves_nan(tmp_path):
    from tinyconv.train import TrainingDiverged

    t = make_trainer(tmp_path, epochs=3)
    before = None

    def poison(trainer, epoch, batch):
        nonlocal before
        if (epoch, batch) == (1, 2):
            before = (tmp_path / "checkpoint.npz").read_bytes()
            next(iter(trainer.model.parameters())).numpy()[0, 0] = np.nan

    t.callback = poison
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 2, batch 3/5: the training loss is nan") as e:
        t.fit()
    assert e.value.checkpoint == tmp_path / "checkpoint.npz" and "kept the last good checkpoint" in str(e.value)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before  # epoch 1's, untouched
    assert tc.load(tmp_path / "checkpoint.npz")["epoch"] == 1
    with pytest.raises(TrainingDiverged, match="refusing to write .*other.npz: model/1.weight holds NaN"):
        t.save_checkpoint(tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in matmul: the point of the test
def test_a_huge_learning_rate_diverges_in_the_first_epoch_without_writing_anything(tmp_path):
    from tinyconv.train import TrainingDiverged

    t = make_trainer(tmp_path, epochs=2)
    for g in t.optimizer.param_groups:
        g["lr"] = 1e30
    t.scheduler = None
    with pytest.raises(TrainingDiverged, match="in epoch 1.*learning rate 1e\\+30.*no checkpoint had been written"):
        t.fit()
    assert not (tmp_path / "checkpoint.npz").exists()


def test_compile_notice_says_when_numba_compiles_and_how_long_it_took():
    """First run on a cold numba cache: 'compiling kernels (once, cached afterwards)' and the time, not silence.
    A function defined here has no on-disk cache, so calling it compiles; calling it again does not."""
    numba = pytest.importorskip("numba")
    from tinyconv.train import CompileNotice

    if not numba.config.DISABLE_JIT:
        @numba.njit(cache=False)
        def add(a, b):
            return a + b

        said = []
        with CompileNotice(said.append) as notice:
            assert add(1, 2) == 3
            assert add(3, 4) == 7  # compiled already: no second notice
        assert said == ["compiling kernels (once, cached afterwards) ..."]
        assert notice.count == 1 and notice.seconds > 0
        assert notice.summary().startswith("compiled 1 kernel in ")
    said = []
    with CompileNotice(said.append) as notice:
        pass
    assert said == [] and notice.summary() is None


@pytest.mark.slow
def test_the_cli_reports_compilation_on_a_cold_numba_cache(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "tinyconv", "summary", "--kernel", "numba"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "compiling kernels (once, cached afterwards)" in r.stderr and "compiled" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tinyconv", "summary", "--kernel", "numba"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert "compiling" not in r.stderr  # the second process loads them from the cache


def test_curves_are_drawn_when_the_run_ends_and_at_most_once_a_minute(tmp_path, monkeypatch):
    """Short epochs: curves.png once, after the last one (drawing is a large share of an MNIST epoch); a run that
    stops early draws the epochs it finished; with no minimum interval, every epoch."""
    from tinyconv.train import loop

    drawn = []
    monkeypatch.setattr(loop, "plot_curves", lambda history, path: drawn.append(len(history)))
    make_trainer(tmp_path / "a", epochs=3).fit()
    assert drawn == [3]
    drawn.clear()
    with pytest.raises(TrainingInterrupted):
        make_trainer(tmp_path / "b", epochs=3, callback=stop_at(1, 2)).fit()
    assert drawn == [1]
    drawn.clear()
    monkeypatch.setattr(loop, "PLOT_EVERY_S", 0.0)
    make_trainer(tmp_path / "c", epochs=3).fit()
    assert drawn == [1, 2, 3]
    drawn.clear()
    make_trainer(None, epochs=2).fit()  # no out_dir: nothing written
    assert drawn == []
    monkeypatch.setattr(loop, "PLOT_EVERY_S", 60.0)

    def boom(trainer, epoch, batch):
        if (epoch, batch) == (1, 1):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # any error: the epochs on disk are drawn, the error kept
        make_trainer(tmp_path / "d", epochs=3, callback=boom).fit()
    assert drawn == [1]


def test_curves_hold_only_the_epochs_whose_checkpoint_was_written(tmp_path, monkeypatch):
    """An epoch whose checkpoint is refused (an optimizer moment turned inf at its last batch) is not drawn
    either: curves.png, metrics.csv and the checkpoint agree."""
    from tinyconv.train import loop

    drawn = []
    monkeypatch.setattr(loop, "plot_curves", lambda history, path: drawn.append(len(history)))

    def poison(trainer, epoch, batch):
        if (epoch, batch) == (1, 5):
            state = next(iter(trainer.optimizer.state.values()))
            state["exp_avg"][...] = np.inf

    from tinyconv.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged at the end of epoch 2: refusing to write .*exp_avg holds "
                                               "NaN or infinite values"):
        make_trainer(tmp_path, epochs=3, callback=poison).fit()
    with open(tmp_path / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1]
    assert drawn == [1]
