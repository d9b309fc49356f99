"""Run the chapter-6 blocks of blocks.py with ``torch`` being PyTorch or tinyconv; print {name: output} as JSON.

    python tests/d2l_ch6/run_blocks.py tinyconv   # ``import torch`` resolves to tinyconv
    python tests/d2l_ch6/run_blocks.py torch      # the real PyTorch

Each block runs in a fresh namespace, after ``torch.manual_seed(0)``; an exception is reported as the block's
output (``!! ExceptionType: message``), so one failing block does not hide the others.
"""
import contextlib
import importlib
import io
import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ALIASED = ["", ".nn", ".nn.functional", ".nn.init", ".optim", ".utils", ".utils.data", ".cuda"]


def alias_torch_to_tinyconv() -> None:
    """Make ``import torch``, ``from torch import nn``, ``import torch.nn.functional as F``, ``from torch.utils
    import data`` ... give tinyconv's modules of the same names."""
    for suffix in ALIASED:
        sys.modules["torch" + suffix] = importlib.import_module("tinyconv" + suffix)


def main(backend: str) -> None:
    if backend == "tinyconv":
        alias_torch_to_tinyconv()
    sys.path.insert(0, os.path.join(HERE, "shim"))
    sys.path.insert(0, HERE)
    import torch
    from blocks import BLOCKS

    outputs = {}
    for name, source in BLOCKS.items():
        torch.manual_seed(0)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                exec(compile(source, f"<{name}>", "exec"), {"__name__": f"block_{name}"})
            except Exception as e:  # noqa: BLE001 - reported as the block's output
                print(f"!! {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
        outputs[name] = buffer.getvalue()
    json.dump(outputs, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
