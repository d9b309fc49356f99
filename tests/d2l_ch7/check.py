"""What the chapter-7 tests share: running the blocks (tests/d2l_ch7/run_blocks.py) in a subprocess, the shape walks
the book prints, and the comparison of printouts with PyTorch's."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUNNER = os.path.join(HERE, "run_blocks.py")


def run_blocks(backend: str, mode: str, names, python: str = sys.executable) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([python, RUNNER, backend, mode, *names], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def shapes(text: str) -> list:
    """Every shape a printout shows, as a list of ints, whichever way it is printed: ``torch.Size([1, 6])``,
    ``tinyconv.Size([1, 6])`` or the tuple ``(1, 6)``."""
    found = re.findall(r"(?:\w+\.Size\(\[([^\]]*)\]\)|\(([\d, ]*)\))", text)
    return [[int(v) for v in (a or b).replace(",", " ").split()] for a, b in found]


def walk(text: str) -> list:
    """A shape walk's lines as (layer name, shape)."""
    out = []
    for line in text.splitlines():
        name, _, rest = line.partition(" output shape:\t ")
        out.append((name, shapes(rest)[0] if rest else None))
    return out


def rows(*pairs) -> list:
    return [(name, list(shape)) for name, shape in pairs]


ALEXNET_224 = rows(
    ("Conv2d", (1, 96, 54, 54)), ("ReLU", (1, 96, 54, 54)), ("MaxPool2d", (1, 96, 26, 26)),
    ("Conv2d", (1, 256, 26, 26)), ("ReLU", (1, 256, 26, 26)), ("MaxPool2d", (1, 256, 12, 12)),
    ("Conv2d", (1, 384, 12, 12)), ("ReLU", (1, 384, 12, 12)), ("Conv2d", (1, 384, 12, 12)),
    ("ReLU", (1, 384, 12, 12)), ("Conv2d", (1, 256, 12, 12)), ("ReLU", (1, 256, 12, 12)),
    ("MaxPool2d", (1, 256, 5, 5)), ("Flatten", (1, 6400)), ("Linear", (1, 4096)), ("ReLU", (1, 4096)),
    ("Dropout", (1, 4096)), ("Linear", (1, 4096)), ("ReLU", (1, 4096)), ("Dropout", (1, 4096)),
    ("Linear", (1, 10)))
VGG11_224 = rows(
    ("Sequential", (1, 64, 112, 112)), ("Sequential", (1, 128, 56, 56)), ("Sequential", (1, 256, 28, 28)),
    ("Sequential", (1, 512, 14, 14)), ("Sequential", (1, 512, 7, 7)), ("Flatten", (1, 25088)),
    ("Linear", (1, 4096)), ("ReLU", (1, 4096)), ("Dropout", (1, 4096)), ("Linear", (1, 4096)),
    ("ReLU", (1, 4096)), ("Dropout", (1, 4096)), ("Linear", (1, 10)))
NIN_224 = rows(
    ("Sequential", (1, 96, 54, 54)), ("MaxPool2d", (1, 96, 26, 26)), ("Sequential", (1, 256, 26, 26)),
    ("MaxPool2d", (1, 256, 12, 12)), ("Sequential", (1, 384, 12, 12)), ("MaxPool2d", (1, 384, 5, 5)),
    ("Dropout", (1, 384, 5, 5)), ("Sequential", (1, 10, 5, 5)), ("AdaptiveAvgPool2d", (1, 10, 1, 1)),
    ("Flatten", (1, 10)))
GOOGLENET_96 = rows(
    ("Sequential", (1, 64, 24, 24)), ("Sequential", (1, 192, 12, 12)), ("Sequential", (1, 480, 6, 6)),
    ("Sequential", (1, 832, 3, 3)), ("Sequential", (1, 1024)), ("Linear", (1, 10)))
RESNET_224 = rows(
    ("Sequential", (1, 64, 56, 56)), ("Sequential", (1, 64, 56, 56)), ("Sequential", (1, 128, 28, 28)),
    ("Sequential", (1, 256, 14, 14)), ("Sequential", (1, 512, 7, 7)), ("AdaptiveAvgPool2d", (1, 512, 1, 1)),
    ("Flatten", (1, 512)), ("Linear", (1, 10)))
RESNET18_96 = rows(
    ("Sequential", (1, 64, 24, 24)), ("Sequential", (1, 64, 24, 24)), ("Sequential", (1, 128, 12, 12)),
    ("Sequential", (1, 256, 6, 6)), ("Sequential", (1, 512, 3, 3)), ("Sequential", (1, 10)))


def numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"-?\d+\.?\d*(?:e[-+]\d+)?", text)])


def same_printout(ours: str, theirs: str) -> bool:
    """Equal up to how a shape prints (``torch.Size([1, 6])`` / ``tinyconv.Size(...)`` / ``(1, 6)``)."""
    def canonical(text):
        return re.sub(r"\w+\.Size\(\[([^\]]*)\]\)|\(([\d, ]*)\)",
                      lambda m: "[" + ", ".join((m.group(1) or m.group(2)).replace(",", " ").split()) + "]", text)

    return canonical(ours) == canonical(theirs)
