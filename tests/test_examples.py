"""Each script in examples/ runs (in a subprocess, as a user would run it) and prints what it promises."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float = 120) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("MPLBACKEND", "Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["conv_as_matmul.py", "edge_detection.py", "inspect_lenet.py", "learn_kernel.py"]


def test_edge_detection():
    out = run_example("edge_detection.py")
    assert "[ 0  1  0  0  0 -1  0]" in out
    assert "on the transposed image (8, 5): all zero? True" in out
    assert "[-1  1  0  0  0  0  0]" in out and "[ 1 -1  0  0  0  0  0  0]" in out


@pytest.mark.parametrize("kernel", ["direct", "im2col"])
def test_edge_detection_with_a_chosen_kernel(kernel):
    assert "[ 0  1  0  0  0 -1  0]" in run_example("edge_detection.py", "--kernel", kernel)


def test_learn_kernel():
    out = run_example("learn_kernel.py")
    lines = [ln for ln in out.splitlines() if ln.startswith("step")]
    losses = [float(ln.split("loss")[1]) for ln in lines]
    assert len(losses) == 5 and losses == sorted(losses, reverse=True) and losses[-1] < 0.1
    assert "learned kernel:" in out


def test_conv_as_matmul():
    out = run_example("conv_as_matmul.py")
    assert "im2col: 4 windows of 9 values each" in out
    assert "the 4x16 matrix C" in out
    assert "all checks passed" in out


def test_inspect_lenet(tmp_path):
    dot = tmp_path / "lenet.dot"
    out = run_example("inspect_lenet.py", "--batch", "4", "--dot", str(dot))
    assert "Total params: 61,706" in out and "Mult-adds per example: 416,520" in out
    for name in ("conv1.weight", "conv2.bias", "fc1.weight", "fc3.bias", "images: input (4, 1, 28, 28)"):
        assert name in out
    assert out.count("forward  ") == 12 and out.count("backward ") == 12
    assert "backward conv1    |dL/d output|" in out and "None (the input needs no gradient)" in out
    assert "tensor hook: dL/d(conv1 output) has shape (4, 6, 28, 28)" in out
    assert dot.read_text().startswith('digraph "tinyconv" {')
