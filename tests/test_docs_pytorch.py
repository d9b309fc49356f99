"""The bridge example of docs/pytorch.md runs: its first block (tinyconv only) always, the second (PyTorch both
ways, same logits to 1e-5) when torch is installed."""
from __future__ import annotations

import importlib
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
        transforms = importlib.import_module("torchvision.transforms")  # resolves to what the snippet registered

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


# ------------------------------------------------------------------------------ the table of PyTorch's names
def name_rows() -> list[tuple[str, str, bool]]:
    """(kind 'torch' or 'Tensor', name, tinyconv has it) for each row of the table of names."""
    text = PAGE.read_text().split("## Which of PyTorch's names tinyconv has", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(torch|Tensor)\.(\w+)` \|[^|]*\|[^|]*\| (yes|no) \|$", text, flags=re.M)
    return [(kind, name, has == "yes") for kind, name, has in rows]


def tinyconv_has(kind: str, name: str) -> bool:
    import tinyconv as tc

    return hasattr(tc, name) if kind == "torch" else hasattr(tc.ones(1, requires_grad=True) * 1, name)


def test_the_table_of_names_says_what_tinyconv_has():
    rows = name_rows()
    assert len(rows) > 150 and len({(k, n) for k, n, _ in rows}) == len(rows)
    wrong = [f"{k}.{n}: table says {'yes' if has else 'no'}" for k, n, has in rows if tinyconv_has(k, n) != has]
    assert wrong == []


def test_every_torch_function_the_chapter_tests_call_is_in_the_table():
    here = Path(__file__).resolve().parent
    code = "\n".join(p.read_text() for p in [here / "d2l_ch6" / "blocks.py", here / "d2l_ch2_5" / "chapter_cells.py",
                                             here / "d2l_ch2_5" / "shim" / "d2l" / "torch.py"])
    used = set(re.findall(r"\btorch\.([a-z]\w*)\b(?!\.)", code)) | set(re.findall(r"\btorch\.([A-Z]\w*Tensor)\b", code))
    listed = {n for k, n, has in name_rows() if k == "torch" and has}
    modules_and_dtypes = {"nn", "optim", "utils", "distributions", "cuda", "float32", "float64", "int64", "long",
                          "float", "int32", "bool", "uint8"}
    assert sorted(used - modules_and_dtypes - listed) == []


@pytest.mark.torch
def test_every_name_in_the_table_is_pytorchs():
    torch = pytest.importorskip("torch")
    missing = [f"{k}.{n}" for k, n, _ in name_rows() if not hasattr(torch if k == "torch" else torch.Tensor, n)]
    assert missing == []
