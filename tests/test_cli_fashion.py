"""``tinyconv train --dataset fashion-mnist``, in-process, on generated Fashion-MNIST-format files (no network)."""
import numpy as np
import pytest

from tinyconv import cli
from tinyconv.data import write_idx
from tinyconv.data.mnist import FILES


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """root/fashion-mnist/ with full-size (the reader checks the counts), uncompressed files of a few hundred
    distinct separable images: class k has a bright block in column band k."""
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("data")
    for split, n, n_distinct in (("train", 60000, 400), ("test", 10000, 200)):
        y = rng.integers(0, 10, n_distinct)
        x = rng.integers(0, 60, (n_distinct, 28, 28))
        for i, k in enumerate(y):
            x[i, 4:24, 2 * k + 1:2 * k + 7] += 190
        reps = -(-n // n_distinct)
        write_idx(root / "fashion-mnist" / FILES[split][0], np.tile(np.clip(x, 0, 255).astype(np.uint8),
                                                                    (reps, 1, 1))[:n], compresslevel=0)
        write_idx(root / "fashion-mnist" / FILES[split][1], np.tile(y, reps)[:n].astype(np.uint8), compresslevel=0)
    return root


def test_train_and_eval_on_fashion_mnist(fashion_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--dataset", "fashion-mnist", "--data", str(fashion_root), "--custom-data", "--limit", "320",
            "--test-limit", "200", "--epochs", "2", "--batch-size", "64", "--lr", "3e-3", "--no-progress"]
    assert cli.main(args) == 0
    out = tmp_path / "runs" / "lenet-fashion-mnist"  # its own default folder, beside MNIST's runs/lenet
    assert (out / "checkpoint.npz").exists()
    capsys.readouterr()
    # eval reads the data set from the checkpoint's config: the test split of fashion-mnist/, not mnist/
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--data", str(fashion_root), "--custom-data",
                     "--test-limit", "200"]) == 0
    accuracy = float(capsys.readouterr().out.split("test accuracy: ")[1].split("%")[0])
    assert accuracy >= 50  # separable classes after 10 batches: far above chance (10%)
    # resuming under another data set is refused
    assert cli.main(["train", "--dataset", "mnist", "--out", str(out), "--resume", "--data", str(fashion_root),
                     "--custom-data", "--no-progress"]) == 2
    assert "--dataset mnist differs from the checkpoint's dataset = 'fashion-mnist'" in capsys.readouterr().err


def test_missing_fashion_mnist_says_where_the_files_go(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "fashion-mnist", "--data", str(tmp_path), "--custom-data",
                     "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Fashion-MNIST (train) is not available" in err and str(tmp_path / "fashion-mnist") in err
    assert "t10k-labels-idx1-ubyte.gz" in err


def test_dataset_option_and_old_checkpoints():
    parse = cli.build_parser().parse_args
    assert cli.resolve_config(parse(["train"]))["dataset"] == "mnist"
    assert cli.resolve_config(parse(["train", "--dataset", "fashion-mnist"]))["dataset"] == "fashion-mnist"
    old = {k: v for k, v in cli.resolve_config(parse(["train"])).items() if k != "dataset"}
    assert cli.check_config(old, "old.npz")["dataset"] == "mnist"  # saved before there was a choice
    with pytest.raises(SystemExit):
        parse(["train", "--dataset", "cifar10"])


def test_train_builds_each_batch_in_turn_without_a_prefetch_thread(fashion_root):
    """tinyconv train's loader builds each batch when asked (numba's loops use every core: a prefetching thread
    would compete with them)."""
    import threading

    config = dict(cli.TRAIN_DEFAULTS, dataset="fashion-mnist", limit=256, test_limit=64)
    trainer = cli.build_run(config, fashion_root, progress=False, custom_data=True)
    assert trainer.train_loader.prefetch == 0
    for _ in trainer.train_loader:
        assert not [t for t in threading.enumerate() if t.name == "tinyconv-DataLoader-prefetch"]


def test_each_data_set_is_normalised_with_its_own_statistics(fashion_root):
    from tinyconv.data import NORMALIZATION, load_split

    x, _ = load_split("fashion-mnist", fashion_root, train=True, custom=True)
    config = dict(cli.TRAIN_DEFAULTS, dataset="fashion-mnist", limit=128, test_limit=64)
    trainer = cli.build_run(config, fashion_root, progress=False, custom_data=True)
    assert trainer.train_loader.normalize == trainer.test_loader.normalize == NORMALIZATION["fashion-mnist"]
    assert NORMALIZATION["fashion-mnist"] != NORMALIZATION["mnist"]
    assert x.dtype == np.uint8
