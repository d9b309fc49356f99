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
#: 3.5 reads Fashion-MNIST from "../data" through torchvision: a small generated copy is put there (in tinyconv's
#: layout and in torchvision's), and tinyconv is told those are the data set's sizes, so nothing is downloaded.
READS_FASHION_MNIST = {"3.5 image classification dataset"}
#: cells that print the library's own documentation (``dir``, ``help``): they run, but are not compared
OWN_DOCUMENTATION = {"2.7 documentation": {0, 1}}
FASHION_SIZES = {"train": 64, "test": 32}
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def alias_torch_to_tinyconv() -> None:
    """``import torch``, ``from torch import nn``, ``from torch.distributions import multinomial`` ... give
    tinyconv's modules of the same names, and ``import torchvision`` gives ``tinyconv.vision``."""
    import dataclasses

    for suffix in ALIASED:
        sys.modules["torch" + suffix] = importlib.import_module("tinyconv" + suffix)
    for suffix in ("", ".datasets", ".transforms"):
        sys.modules["torchvision" + suffix] = importlib.import_module("tinyconv.vision" + suffix)
    from tinyconv.data import fashion_mnist

    fashion_mnist.FASHION_MNIST_DATA = dataclasses.replace(fashion_mnist.FASHION_MNIST_DATA, sizes=FASHION_SIZES,
                                                           mirrors=())


def make_fashion_mnist(root: str) -> None:
    """Random images and labels of the sizes above, in ``root/fashion-mnist/`` (tinyconv's layout, gzip) and
    ``root/FashionMNIST/raw/`` (torchvision's)."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in FASHION_SIZES.items():
        arrays = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
        for name, a in zip(FASHION_FILES[split], arrays):
            raw = bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()
            for folder, fname, content in ((os.path.join(root, "fashion-mnist"), name + ".gz", gzip.compress(raw)),
                                           (os.path.join(root, "FashionMNIST", "raw"), name, raw)):
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, fname), "wb") as f:
                    f.write(content)


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
        if name in READS_FASHION_MNIST:
            make_fashion_mnist(os.path.join(scratch, "data"))
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
    else:
        sys.path.insert(0, os.path.dirname(HERE))
        from torchvision_cpu import import_real_torchvision

        import_real_torchvision()  # None without torchvision: 3.5's cells then say so
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
    sections = {name: [a if a == b and not re.search(r"\d sec\b", a) and i not in OWN_DOCUMENTATION.get(name, ())
                       else None for i, (a, b) in enumerate(zip(runs[0][name], runs[1][name]))] for name in runs[0]}
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
