"""Run the chapter-7 blocks of blocks.py with ``torch`` / ``torchvision`` being PyTorch's or tinyconv's; print
{name: output} as JSON.

    python tests/d2l_ch7/run_blocks.py tinyconv fast   # torch -> tinyconv, torchvision -> tinyconv.vision
    python tests/d2l_ch7/run_blocks.py torch full      # the real PyTorch and torchvision

``fast`` leaves out the ``SLOW`` blocks and makes the ``FAST`` substitutions; ``full`` runs every block as the book
writes it. Optional further arguments name the blocks to run (all by default).

The blocks run in a fresh working directory whose ``../data`` holds a small Fashion-MNIST made here (32 training and
16 test images of random pixels and labels) in both tinyconv's layout (``fashion-mnist/*.gz``) and torchvision's
(``FashionMNIST/raw/``), so nothing is downloaded; tinyconv is told those are the data set's sizes. Training helpers
run one epoch (``$D2L_MAX_EPOCHS``). Each block runs in a fresh namespace after ``torch.manual_seed(0)``; an
exception is reported as the block's output (``!! ExceptionType: message``).
"""
import contextlib
import dataclasses
import gzip
import importlib
import io
import json
import os
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ALIASED = ["", ".nn", ".nn.functional", ".nn.init", ".optim", ".utils", ".utils.data", ".cuda"]
SIZES = {"train": 32, "test": 16}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def alias_to_tinyconv() -> None:
    for suffix in ALIASED:
        sys.modules["torch" + suffix] = importlib.import_module("tinyconv" + suffix)
    for suffix in ("", ".datasets", ".transforms"):
        sys.modules["torchvision" + suffix] = importlib.import_module("tinyconv.vision" + suffix)
    from tinyconv.data import fashion_mnist

    fashion_mnist.FASHION_MNIST_DATA = dataclasses.replace(fashion_mnist.FASHION_MNIST_DATA, sizes=SIZES,
                                                           mirrors=())


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()


def make_data(root: str) -> None:
    rng = np.random.default_rng(0)
    for split, n in SIZES.items():
        arrays = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
        for name, a in zip(FILES[split], arrays):
            raw = idx_bytes(a)
            for folder, fname, content in ((os.path.join(root, "fashion-mnist"), name + ".gz", gzip.compress(raw)),
                                           (os.path.join(root, "FashionMNIST", "raw"), name, raw)):
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, fname), "wb") as f:
                    f.write(content)


def main(backend: str, mode: str, names) -> None:
    os.environ.setdefault("D2L_MAX_EPOCHS", "1")
    if backend == "tinyconv":
        alias_to_tinyconv()
    else:
        sys.path.insert(0, os.path.dirname(HERE))
        from torchvision_cpu import import_real_torchvision

        import_real_torchvision()
    sys.path.insert(0, os.path.join(HERE, "shim"))
    sys.path.insert(0, HERE)
    import torch
    from blocks import BLOCKS, FAST, SLOW

    work = tempfile.mkdtemp(prefix="d2l-ch7-")
    make_data(os.path.join(work, "data"))
    os.makedirs(os.path.join(work, "run"))
    os.chdir(os.path.join(work, "run"))  # the book reads "../data"
    outputs = {}
    for name, source in BLOCKS.items():
        if (names and name not in names) or (mode == "fast" and name in SLOW):
            continue
        if mode == "fast":
            for old, new in FAST.get(name, ()):
                source = source.replace(old, new)
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
    main(sys.argv[1], sys.argv[2], set(sys.argv[3:]))
