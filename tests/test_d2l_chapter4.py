"""d2l chapter 4 (multilayer perceptrons: 4.1-4.6 and 4.8, trained on a synthetic stand-in for
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

SECTIONS = sections_of(4)


@pytest.fixture(scope="module")
def shown():
    return run("tinyconv", SECTIONS)


def test_every_cell_runs(shown):
    assert failures(shown, SECTIONS) == {}


def test_deterministic_cells_print_what_pytorch_prints(shown):
    assert mismatches(shown, SECTIONS) == {}


def test_polynomial_fit_finds_the_true_weights(shown):
    weights = numbers(shown["4.4 model selection, underfitting and overfitting"][6])  # the third-order fit
    np.testing.assert_allclose(weights, [5, 1.2, -3.4, 5.6], atol=0.3)


def test_weight_decay_shrinks_the_weights(shown):
    cells = shown["4.5 weight decay"]
    plain, decayed = (numbers(cells[i])[-1] for i in (5, 6))
    concise_plain, concise_decayed = (numbers(cells[i])[-1] for i in (8, 9))
    assert decayed < plain / 3 and concise_decayed < concise_plain / 3


def test_products_of_random_matrices_explode(shown):
    after = numbers(shown["4.8 numerical stability and initialization"][1].split("\n", 2)[-1])
    assert np.abs(after).max() > 1e6


@pytest.mark.torch
def test_against_pytorch(shown):
    pytest.importorskip("torch")
    compare_with_live_pytorch(shown, SECTIONS)
