"""The bridge example of docs/pytorch.md runs: its first block (tinyconv only) always, the second (PyTorch both
ways, same logits to 1e-5) when torch is installed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pytorch.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)


def test_the_page_has_the_alias_and_the_two_bridge_blocks():
    blocks = python_blocks()
    assert len(blocks) == 3 and "sys.modules" in blocks[0] and "tc.save" in blocks[1] and "torch" in blocks[2]


def test_alias_snippet_makes_from_torch_import_nn_give_tinyconv(monkeypatch):
    import sys

    import tinyconv

    def aliased():
        return [n for n in sys.modules if n.split(".")[0] in ("torch", "torchvision")]

    for name in aliased():
        monkeypatch.delitem(sys.modules, name)
    exec(python_blocks()[0], {})
    try:
        from torch import nn  # noqa: I001
        import torch.nn.functional as F
        from torchvision import transforms

        import tinyconv.vision

        assert nn is tinyconv.nn and F is tinyconv.functional and transforms is tinyconv.vision.transforms
    finally:
        for name in aliased():
            del sys.modules[name]


def test_train_save_under_any_name_and_reload_in_tinyconv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(python_blocks()[1], {"__name__": "bridge"})
    assert (tmp_path / "lenet.params").exists()


@pytest.mark.torch
def test_weights_move_both_ways_with_the_same_logits(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "bridge"}
    exec(python_blocks()[1], namespace)
    exec(python_blocks()[2], namespace)
