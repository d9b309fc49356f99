"""d2l chapter 5 (deep learning computation: 5.1-5.2, 5.4-5.5) runs as the book writes it, with
``import torch`` resolving to tinyconv.

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

SECTIONS = sections_of(5)


@pytest.fixture(scope="module")
def shown():
    return run("tinyconv", SECTIONS)


def test_every_cell_runs(shown):
    assert failures(shown, SECTIONS) == {}


def test_deterministic_cells_print_what_pytorch_prints(shown):
    assert mismatches(shown, SECTIONS) == {}


def test_parameter_edits_show_through_data(shown):
    cells = shown["5.2 parameter management"]
    assert numbers(cells[13])[0] == 42  # net[0].weight.data[0, 0] = 42 after weight.data[:] += 1
    masked = numbers(cells[12].split("\n", 2)[-1])
    assert np.all((masked == 0) | (np.abs(masked) >= 5))  # m.weight.data *= m.weight.data.abs() >= 5


def test_a_centered_layer_centers(shown):
    assert abs(numbers(shown["5.4 custom layers"][3])[0]) < 1e-6


@pytest.mark.torch
def test_against_pytorch(shown):
    pytest.importorskip("torch")
    compare_with_live_pytorch(shown, SECTIONS)
