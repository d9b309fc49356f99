"""Chapter 7 of the English d2l 1.0 (lazy layers, ``d2l.Classifier`` / ``d2l.Trainer`` / ``d2l.FashionMNIST``)
runs unchanged with ``import torch`` resolving to tinyconv and ``import torchvision`` to tinyconv.vision
(tests/d2l_ch7/run_blocks.py, on a small generated Fashion-MNIST); the Chinese edition's blocks are in
test_d2l_chapter7.py."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from d2l_ch7 import check  # a namespace package beside this file: its module names clash with no other chapter's
from d2l_ch7.blocks import BLOCKS, SLOW, TRAINING, WALKS

EDITION = "en "
NAMES = [n for n in BLOCKS if n.startswith(EDITION)]


@pytest.fixture(scope="module")
def printed():
    return check.run_blocks("tinyconv", "fast", [n for n in NAMES if n not in SLOW])


def test_every_block_runs(printed):
    assert set(printed) == {n for n in NAMES if n not in SLOW}
    failed = {name: out for name, out in printed.items() if "!! " in out or not out.strip()}
    assert not failed, failed


@pytest.mark.parametrize("name,expected", [
    ("en 7.1 AlexNet layer_summary", check.ALEXNET_224),
    ("en 7.3 NiN layer_summary", check.NIN_224),
    ("en 7.4 GoogLeNet layer_summary", check.GOOGLENET_96),
    ("en 7.6 ResNet-18 layer_summary", check.RESNET18_96),
])
def test_layer_summaries_at_the_books_resolution(printed, name, expected):
    # the lazy layers have become the ordinary ones: layer_summary names Conv2d and Linear, as PyTorch's does
    assert check.walk(printed[name]) == expected


def test_block_shapes(printed):
    assert check.shapes(printed["en 7.6 residual blocks"]) == [[4, 3, 6, 6], [4, 6, 3, 3]]
    assert check.shapes(printed["en 7.6 ResNeXt block"]) == [[4, 32, 96, 96]]
    assert check.shapes(printed["en 7.7 dense and transition blocks"]) == [[4, 23, 8, 8], [4, 10, 4, 4]]


@pytest.mark.parametrize("name", [n for n in TRAINING if n.startswith(EDITION) and n not in SLOW])
def test_trainer_fits(printed, name):
    # one epoch of the small data set: one training batch (d2l's batch 128 > 32 images), one validation batch
    assert printed[name].splitlines()[-1] == "trained 1 batches, validated 1 batches"


def test_batch_norm_from_scratch_learns_its_scale_and_shift(printed):
    gamma, beta = printed["en 7.5 batch norm from scratch"].rsplit("\n", 2)[0].split(") tensor(")
    g, b = check.numbers(gamma), check.numbers(beta)
    assert g.shape == (6,) and b.shape == (6,)
    assert np.all(np.abs(g - 1) < 0.2) and np.all(np.abs(b) < 0.2) and np.any(g != 1) and np.any(b != 0)


def torchvision_installed() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None


@pytest.mark.torch
def test_layer_summaries_print_what_pytorch_prints(printed):
    if not torchvision_installed():
        pytest.skip("PyTorch and torchvision are not installed")
    names = [n for n in NAMES if n in WALKS and n not in SLOW]
    theirs = check.run_blocks("torch", "fast", names)
    for name in names:
        assert check.same_printout(printed[name], theirs[name]), (name, printed[name], theirs[name])


@pytest.mark.slow
def test_vgg11_layer_summary_at_224():
    ours = check.run_blocks("tinyconv", "full", ["en 7.2 VGG-11 layer_summary"])
    assert check.walk(ours["en 7.2 VGG-11 layer_summary"]) == check.VGG11_224
