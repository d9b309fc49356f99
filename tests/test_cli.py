"""The command line, in-process, on generated MNIST-format IDX files (no network)."""
import csv

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import cli
from tinyconv.data import write_idx


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root whose mnist/ folder holds full-size MNIST-format files of generated, separable images.

    Full size (60000 + 10000 images) because the MNIST reader checks the counts; the images repeat a few hundred
    distinct ones, and the files are written uncompressed (gzip level 0), so this takes well under a second.
    """
    rng = np.random.default_rng(0)

    def make(n_distinct, n):
        y = rng.integers(0, 10, n_distinct)
        x = rng.integers(0, 60, (n_distinct, 28, 28))
        for i, k in enumerate(y):  # class k: a bright bar on rows 2k+1..2k+6
            x[i, 2 * k + 1:2 * k + 7, 4:24] += 190
        x = np.clip(x, 0, 255).astype(np.uint8)
        reps = -(-n // n_distinct)
        return np.tile(x, (reps, 1, 1))[:n], np.tile(y, reps)[:n].astype(np.uint8)

    root = tmp_path_factory.mktemp("data")
    for split, n, (img_name, lbl_name) in (("train", 60000, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
                                           ("test", 10000, ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))):
        x, y = make(500 if split == "train" else 200, n)
        write_idx(root / "mnist" / img_name, x, compresslevel=0)
        write_idx(root / "mnist" / lbl_name, y, compresslevel=0)
    return root


def tiny(data_root, out, *extra):
    return ["train", "--data", str(data_root), "--custom-data", "--out", str(out), "--limit", "320",
            "--test-limit", "200", "--epochs", "2", "--batch-size", "64", "--lr", "3e-3", "--no-progress", *extra]


def read_metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "eval" in out and "summary" in out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--variant", "--epochs", "--batch-size", "--lr", "--optimizer", "--kernel", "--seed", "--limit",
                   "--out", "--resume", "--recipe", "--log-grads", "--data"):
        assert option in out
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    assert "confusion matrix" in capsys.readouterr().out


def test_bad_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--variant", "lenet5"])
    assert e.value.code == 2 and "invalid choice: 'lenet5'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--epochs", "0"])
    assert e.value.code == 2 and "argument --epochs: expected an integer in 1..100000, got 0" in capsys.readouterr().err
    assert cli.main([]) == 0  # no command: the list of commands, not an error
    listing = capsys.readouterr().out
    assert all(f"    {command} " in listing for command in ("train", "eval", "summary")), listing


def test_recipes_and_explicit_options():
    parse = cli.build_parser().parse_args
    cfg = cli.resolve_config(parse(["train"]))
    assert (cfg["variant"], cfg["optimizer"], cfg["lr"], cfg["batch_size"]) == ("modern", "adam", 1e-3, 128)
    cfg = cli.resolve_config(parse(["train", "--recipe", "d2l"]))
    assert (cfg["variant"], cfg["optimizer"], cfg["lr"], cfg["batch_size"], cfg["epochs"], cfg["schedule"]) == \
        ("d2l", "sgd", 0.9, 256, 10, "none")
    cfg = cli.resolve_config(parse(["train", "--recipe", "d2l", "--lr", "0.5", "--seed", "7"]))
    assert cfg["lr"] == 0.5 and cfg["seed"] == 7 and cfg["batch_size"] == 256
    assert cli.resolve_config(parse(["train", "--optimizer", "adamw"]))["weight_decay"] == 1e-2


def test_train_then_eval(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(tiny(data_root, out, "--log-grads")) == 0
    text = capsys.readouterr().out
    assert "LeNet (modern, 61,706 parameters)" in text
    assert "epoch 1/2" in text and "epoch 2/2" in text and "img/s" in text
    assert "peak memory:" in text
    rows = read_metrics(out / "metrics.csv")
    assert len(rows) == 2 and "grad_norm_conv1" in rows[0] and "grad_norm_fc3" in rows[0]
    assert float(rows[-1]["test_acc"]) >= 0.5  # 10 batches of shifted images: well above chance, not done yet

    assert cli.main(["eval", str(out / "checkpoint.npz"), "--data", str(data_root), "--custom-data",
                     "--test-limit", "200"]) == 0
    text = capsys.readouterr().out
    assert f"test accuracy: {100 * float(rows[-1]['test_acc']):.2f}%" in text
    lines = text.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("true\\pred"))
    matrix = [list(map(int, l.split()[1:11])) for l in lines[head + 1:head + 11]]
    assert np.array(matrix).sum() == 200


def test_python_dash_m_entry_point(data_root, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tinyconv", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--recipe" in r.stdout


def test_interrupted_cli_run_resumes_bit_identically(data_root, tmp_path, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert cli.main(tiny(data_root, full)) == 0

    def stop(trainer, epoch, batch):
        if (epoch, batch) == (0, 3):
            trainer.request_stop()

    args = cli.build_parser().parse_args(tiny(data_root, cut))
    assert cli.cmd_train(args, callback=stop) == 130
    err = capsys.readouterr().err
    assert "after batch 3/5: checkpoint saved" in err and "--resume" in err
    assert tc.load(cut / "checkpoint.npz")["batch"] == 3

    # Resume with only the run folder (and the data root): everything else comes from the checkpoint.
    assert cli.main(["train", "--out", str(cut), "--resume", "--data", str(data_root), "--custom-data",
                     "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().err  # a notice: stderr; stdout holds the run's lines
    a, b = read_metrics(full / "metrics.csv"), read_metrics(cut / "metrics.csv")
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b]  # the exact same floats (written with repr)
    ma, mb = tc.load(full / "checkpoint.npz")["model"], tc.load(cut / "checkpoint.npz")["model"]
    for k in ma:
        np.testing.assert_array_equal(ma[k].numpy(), mb[k].numpy())


def test_resume_refuses_conflicting_options(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(tiny(data_root, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--lr", "0.5", "--data", str(data_root)]) == 2
    assert "--lr 0.5 differs from the checkpoint's lr = 0.003" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no run to resume in" in capsys.readouterr().err


def test_eval_of_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["eval", str(bad)]) == 1
    assert "junk.npz" in capsys.readouterr().err
    tc.save({"a": 1}, tmp_path / "other.npz")
    assert cli.main(["eval", str(tmp_path / "other.npz")]) == 1
    assert "other.npz: not a usable training checkpoint" in capsys.readouterr().err


def test_summary(capsys):
    rc = cli.main(["summary", "--variant", "d2l"])
    out = capsys.readouterr()
    assert rc == 0
    assert "61,706" in out.out or "61706" in out.out
