"""d2l chapter 2 (preliminaries: 2.1-2.6) runs as the book writes it, with ``import torch`` resolving to tinyconv.

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
from chapter_checks import compare_with_live_pytorch, failures, mismatches, numbers, run, sections_of  # noqa: E402

SECTIONS = sections_of(2)


@pytest.fixture(scope="module")
def shown():
    return run("tinyconv", SECTIONS)


def test_every_cell_runs(shown):
    assert failures(shown, SECTIONS) == {}


def test_deterministic_cells_print_what_pytorch_prints(shown):
    assert mismatches(shown, SECTIONS) == {}


def test_the_dice_frequencies_approach_one_sixth(shown):
    cells = shown["2.6 probability"]
    one, ten, freq = numbers(cells[1]), numbers(cells[2]), numbers(cells[3])
    assert one.sum() == 1 and sorted(set(one)) == [0, 1] and ten.sum() == 10 and len(freq) == 6
    np.testing.assert_allclose(freq, 1 / 6, atol=0.06)  # 1000 rolls
    assert abs(freq.sum() - 1) < 1e-6


def test_the_documentation_cells_show_tinyconvs_own(shown):
    """2.7: ``dir(torch.distributions)`` and ``help(torch.ones)`` print the library's own documentation (not compared
    with PyTorch's words): the distributions the course samples from, and the signature of ``ones``."""
    listing, manual, ones = shown["2.7 documentation"]
    assert "'Multinomial'" in listing and "'Normal'" in listing
    assert "ones(*size" in manual and "dtype=None" in manual
    assert ones.strip() == "tensor([1., 1., 1., 1.])"


@pytest.mark.torch
def test_against_pytorch(shown):
    pytest.importorskip("torch")
    compare_with_live_pytorch(shown, SECTIONS)
