"""What the chapter 2-5 test files share: running a chapter's sections (tests/d2l_ch2_5/run_blocks.py, in a
subprocess), PyTorch's recorded printouts (pytorch_printouts.json, written by ``run_blocks.py record`` under
PyTorch 2.13), and the comparison of a printout with PyTorch's up to the differences docs/pytorch.md lists:
``torch.Size``/``torch.Tensor``/``torch.return_types`` print with ``tinyconv.``, graph node names lack PyTorch's
digit and some are named after the operation (``MulBackward0`` / ``MulBackward``), numbers agree to 1e-4."""
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
sys.path.insert(0, HERE)
from chapter_cells import SECTIONS  # noqa: E402


def sections_of(chapter: int) -> list:
    return [name for name in SECTIONS if name.startswith(f"{chapter}.")]


def run(backend: str, names: list, python: str = sys.executable) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([python, RUNNER, backend, *names], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def recorded() -> dict:
    with open(os.path.join(HERE, "pytorch_printouts.json")) as f:
        return json.load(f)["sections"]


def normalise(text: str) -> str:
    text = re.sub(r"\btorch\.", "tinyconv.", text)
    text = re.sub(r"\btinyconv\.(float32|float64|int64|int32|uint8|bool)\b", r"\1", text)  # NumPy dtype names
    return re.sub(r"Backward0>", "Backward>", text)


def numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"-?\d+\.?\d*(?:e[-+]\d+)?", text)])


def same_printout(ours: str, theirs: str) -> bool:
    """Equal after ``normalise``, or equal line by line apart from numbers that agree to 1e-4."""
    ours, theirs = normalise(ours), normalise(theirs)
    if ours == theirs:
        return True
    a, b = ours.splitlines(), theirs.splitlines()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        skeleton = [re.sub(r"-?\d+\.?\d*(?:e[-+]\d+)?", "#", s) for s in (x, y)]
        nx, ny = numbers(x), numbers(y)
        if skeleton[0] != skeleton[1] or not np.allclose(nx, ny, rtol=1e-4, atol=1e-4):
            return False
    return True


def failures(shown: dict, names: list) -> dict:
    """The cells that raised, by section, unless PyTorch's recorded printout of that cell raised the same way
    (2.2's pandas code fails under pandas >= 2 in either library)."""
    reference = recorded()
    bad = {}
    for name in names:
        cells = shown[name]
        if cells and all(c == "-- needs pandas" for c in cells):
            continue
        for i, out in enumerate(cells):
            if out.startswith("!! ") and out != "!! not run" and normalise(out) != normalise(reference[name][i] or ""):
                bad[name] = (i, out)
                break
    return bad


def mismatches(shown: dict, names: list) -> dict:
    """The cells whose printout is PyTorch's (the same under any seed) and differs from ours."""
    reference = recorded()
    bad = {}
    for name in names:
        if shown[name] and shown[name][0] == "-- needs pandas":
            continue
        for i, (ours, theirs) in enumerate(zip(shown[name], reference[name])):
            if theirs is not None and not same_printout(ours, theirs):
                bad.setdefault(name, []).append((i, ours, theirs))
    return bad


def compare_with_live_pytorch(shown: dict, names: list) -> None:
    """Under PyTorch: the recording is what PyTorch prints today, every cell runs there too, and our printouts of
    its deterministic cells match."""
    theirs = run("torch", names)
    reference = recorded()
    for name in names:
        assert len(theirs[name]) == len(reference[name]) == len(shown[name]), name
        for i, (live, kept) in enumerate(zip(theirs[name], reference[name])):
            assert kept is None or live == kept, (name, i, live, kept)
            assert not live.startswith("!! ") or live == kept, (name, i, live)
    assert mismatches(shown, names) == {}
