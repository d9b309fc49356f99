"""Run the chapter 2-5 sections of chapter_cells.py like a notebook, with ``torch`` being PyTorch or tinyconv; print
{section: [what each cell showed]} as JSON.

    python tests/d2l_ch2_5/run_blocks.py tinyconv [SECTION ...]   # ``import torch`` resolves to tinyconv
    python tests/d2l_ch2_5/run_blocks.py torch [SECTION ...]      # the real PyTorch
    python tests/d2l_ch2_5/run_blocks.py record                   # (with PyTorch installed) rewrite
                                                                  # pytorch_printouts.json from two PyTorch runs

A section's cells share one namespace and run in a scratch directory, after ``torch.manual_seed(seed)`` and
seeding ``random`` and NumPy. A cell shows what it prints and, as a notebook does, the value of its last line when
that is an expression not ended by ``;``. IPython's ``%`` magics are skipped. An exception ends its section: the
cell shows ``!! ExceptionType: message`` and the cells after it ``!! not run``. A section needing pandas shows
``-- needs pandas`` in each cell when pandas is missing.
"""
import ast
import contextlib
import importlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ALIASED = ["", ".nn", ".nn.functional", ".nn.init", ".optim", ".utils", ".utils.data", ".cuda", ".distributions",
           ".distributions.multinomial", ".distributions.normal"]
NEEDS_PANDAS = {"2.2 data preprocessing"}


def alias_torch_to_tinyconv() -> None:
    """``import torch``, ``from torch import nn``, ``from torch.distributions import multinomial`` ... give
    tinyconv's modules of the same names."""
    for suffix in ALIASED:
        sys.modules["torch" + suffix] = importlib.import_module("tinyconv" + suffix)


def cells(source: str) -> list:
    """The cells of a section (split at ``# %%`` lines), IPython magic lines dropped."""
    chunks, current = [], []
    for line in source.strip("\n").splitlines():
        if line.strip() == "# %%":
            if current:
                chunks.append("\n".join(current))
            current = []
        elif not line.startswith(("%", "!")):
            current.append(line)
    if current:
        chunks.append("\n".join(current))
    return [c.strip("\n") for c in chunks]


def run_cell(code: str, namespace: dict, name: str) -> str:
    """What the cell shows: its printout, then the repr of a final expression (not ended by ``;``)."""
    tree = ast.parse(code, name)
    shown = None
    last_line = [line for line in code.splitlines() if line.strip() and not line.strip().startswith("#")][-1]
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not last_line.split("#")[0].rstrip().endswith(";"):
        shown = ast.Expression(tree.body.pop().value)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(tree, name, "exec"), namespace)
        if shown is not None:
            value = eval(compile(shown, name, "eval"), namespace)
            if value is not None:
                print(repr(value))
    return buffer.getvalue()


def run_section(name: str, source: str, seed: int) -> list:
    import numpy as np
    import torch

    pieces = cells(source)
    if name in NEEDS_PANDAS:
        try:
            import pandas  # noqa: F401
        except ImportError:
            return ["-- needs pandas"] * len(pieces)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    namespace = {"__name__": "__main__"}
    shown = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = os.path.join(scratch, "notebook")  # the book writes to ../data
        os.mkdir(workdir)
        home = os.getcwd()
        os.chdir(workdir)
        try:
            for i, code in enumerate(pieces):
                try:
                    shown.append(run_cell(code, namespace, f"<{name} cell {i}>"))
                except Exception as e:  # noqa: BLE001 - reported as the cell's output
                    shown.append(f"!! {type(e).__name__}: {e}")
                    traceback.print_exc(file=sys.stderr)
                    shown += ["!! not run"] * (len(pieces) - i - 1)
                    break
        finally:
            os.chdir(home)
    return shown


def main(backend: str, names: list, seed: int = 0) -> None:
    if backend == "tinyconv":
        alias_torch_to_tinyconv()
    sys.path.insert(0, os.path.join(HERE, "shim"))
    sys.path.insert(0, HERE)
    from chapter_cells import SECTIONS

    outputs = {name: run_section(name, SECTIONS[name], seed) for name in (names or SECTIONS)}
    json.dump(outputs, sys.stdout)


def record() -> None:
    """pytorch_printouts.json: each cell's PyTorch printout, or None where two runs seeded differently disagree
    (the cell shows random numbers) or it shows a timing."""
    import torch

    runs = [json.loads(subprocess.run([sys.executable, __file__, "torch", "--seed", str(s)], check=True,
                                      capture_output=True, text=True).stdout) for s in (0, 1)]
    sections = {name: [a if a == b and not re.search(r"\d sec\b", a) else None
                       for a, b in zip(runs[0][name], runs[1][name])] for name in runs[0]}
    with open(os.path.join(HERE, "pytorch_printouts.json"), "w") as f:
        json.dump({"torch": torch.__version__, "sections": sections}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["record"]:
        record()
    else:
        seed = 0
        if "--seed" in args:
            i = args.index("--seed")
            seed = int(args[i + 1])
            del args[i:i + 2]
        main(args[0], args[1:], seed)
