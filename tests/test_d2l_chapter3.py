"""d2l chapter 3 (linear neural networks: 3.1-3.3, 3.6-3.7, trained on a synthetic stand-in for
Fashion-MNIST) runs as the book writes it, with ``import torch`` resolving to tinyconv.

The cells live in tests/d2l_ch2_5/chapter_cells.py and run like a notebook (tests/d2l_ch2_5/run_blocks.py); each cell
whose printout does not depend on random numbers must print what PyTorch 2.13 printed (recorded in
tests/d2l_ch2_5/pytorch_printouts.json; the ``torch`` test checks that recording against PyTorch itself).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "d2l_ch2_5"))
from chapter_checks import compare_with_live_pytorch, failures, mismatches, numbers, run, sections_of  # noqa: E402,E501

SECTIONS = sections_of(3)


@pytest.fixture(scope="module")
def shown():
    return run("tinyconv", SECTIONS)


def test_every_cell_runs(shown):
    assert failures(shown, SECTIONS) == {}


def test_deterministic_cells_print_what_pytorch_prints(shown):
    assert mismatches(shown, SECTIONS) == {}


def test_linear_regression_recovers_the_true_parameters(shown):
    for name in ("3.2 linear regression from scratch", "3.3 concise linear regression"):
        errors = numbers(shown[name][-1])  # "w的估计误差: tensor([e1, e2])" then b's
        assert len(errors) == 3 and np.all(np.abs(errors) < 0.05), (name, shown[name][-1])
        losses = [float(line.rsplit(" ", 1)[1]) for line in shown[name][-2 if "concise" in name else -2].splitlines()]
        assert losses[-1] < 1e-3, losses  # the noise level (0.01 ** 2 / 2)


@pytest.mark.torch
def test_against_pytorch(shown):
    pytest.importorskip("torch")
    compare_with_live_pytorch(shown, SECTIONS)
