"""Chapter 7 of d2l's Chinese edition (v2: AlexNet, VGG, NiN, GoogLeNet, batch norm, ResNet, DenseNet) runs unchanged
with ``import torch`` resolving to tinyconv and ``import torchvision`` to tinyconv.vision, on a small generated
Fashion-MNIST (tests/d2l_ch7/run_blocks.py). The shape walks are checked against the book's printouts at its
resolution; the optional ``torch`` test runs the same blocks under PyTorch and torchvision and compares. The English
d2l 1.0's blocks are in test_d2l_chapter7_en.py."""
from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from d2l_ch7 import check  # a namespace package beside this file: its module names clash with no other chapter's
from d2l_ch7.blocks import BLOCKS, SLOW, TRAINING, WALKS

EDITION = "zh "
NAMES = [n for n in BLOCKS if n.startswith(EDITION)]


@pytest.fixture(scope="module")
def printed():
    return check.run_blocks("tinyconv", "fast", [n for n in NAMES if n not in SLOW])


def test_every_block_runs(printed):
    assert set(printed) == {n for n in NAMES if n not in SLOW}
    failed = {name: out for name, out in printed.items() if "!! " in out or not out.strip()}
    assert not failed, failed


@pytest.mark.parametrize("name,expected", [
    ("zh 7.1 AlexNet shape walk", check.ALEXNET_224),
    ("zh 7.3 NiN shape walk", check.NIN_224),
    ("zh 7.4 GoogLeNet shape walk", check.GOOGLENET_96),
    ("zh 7.6 ResNet shape walk", check.RESNET_224),
])
def test_shape_walks_at_the_books_resolution(printed, name, expected):
    assert check.walk(printed[name]) == expected


def test_block_shapes(printed):
    assert check.shapes(printed["zh 7.6 residual blocks"]) == [[4, 3, 6, 6], [4, 6, 3, 3]]
    assert check.shapes(printed["zh 7.7 dense and transition blocks"]) == [[4, 23, 8, 8], [4, 10, 4, 4]]


@pytest.mark.parametrize("name", [n for n in TRAINING if n.startswith(EDITION) and n not in SLOW])
def test_training_prints_what_train_ch6_prints(printed, name):
    lines = printed[name].splitlines()
    assert lines[0] == "training on cpu"
    m = re.fullmatch(r"loss (\d+\.\d{3}), train acc (\d\.\d{3}), test acc (\d\.\d{3})", lines[1])
    assert m, lines
    loss, train_acc, test_acc = (float(v) for v in m.groups())
    assert 0 < loss < 10 and 0 <= train_acc <= 1 and 0 <= test_acc <= 1
    assert re.fullmatch(r"\d+\.\d examples/sec on cpu", lines[2])


def test_batch_norm_from_scratch_learns_its_scale_and_shift(printed):
    # the last line prints gamma and beta of the first BatchNorm (6 channels) after one step from (1, 0)
    gamma, beta = printed["zh 7.5 batch norm from scratch"].split("\n", 3)[3].split(") tensor(")
    g, b = check.numbers(gamma), check.numbers(beta)
    assert g.shape == (6,) and b.shape == (6,)
    assert np.all(np.abs(g - 1) < 0.2) and np.all(np.abs(b) < 0.2) and np.any(g != 1) and np.any(b != 0)


def torchvision_installed() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None


@pytest.mark.torch
def test_shape_walks_print_what_pytorch_prints(printed):
    if not torchvision_installed():
        pytest.skip("PyTorch and torchvision are not installed")
    names = [n for n in NAMES if n in WALKS and n not in SLOW]
    theirs = check.run_blocks("torch", "fast", names)
    for name in names:
        assert check.same_printout(printed[name], theirs[name]), (name, printed[name], theirs[name])


@pytest.mark.slow
def test_the_slow_blocks_at_the_books_resolution():
    names = [n for n in NAMES if n in SLOW]
    ours = check.run_blocks("tinyconv", "full", names)
    assert check.walk(ours["zh 7.2 VGG-11 shape walk"]) == check.VGG11_224
    for name in names:
        assert "!! " not in ours[name], (name, ours[name])
    for name in set(names) & set(TRAINING):
        assert ours[name].splitlines()[0] == "training on cpu"
    if torchvision_installed():
        theirs = check.run_blocks("torch", "full", ["zh 7.2 VGG-11 shape walk"])
        assert check.same_printout(ours["zh 7.2 VGG-11 shape walk"], theirs["zh 7.2 VGG-11 shape walk"])
