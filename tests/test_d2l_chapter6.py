"""The course's PyTorch code runs unchanged with ``import torch`` resolving to tinyconv (issue #10).

tests/d2l_ch6/blocks.py holds the code of d2l chapter 6 (6.2-6.6) and the seed notes' exercises, written for
PyTorch; tests/d2l_ch6/run_blocks.py runs them in a subprocess with ``torch`` (and ``torch.nn``,
``torch.nn.functional``, ``torch.utils.data`` ...) aliased to tinyconv. The expected printouts below are the
worked examples of the seed notes and PyTorch's print format (whole-number floats as ``19.``), written by hand, or
recomputed here with NumPy; the optional ``torch`` test runs the same blocks under PyTorch and compares.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "d2l_ch6", "run_blocks.py")
sys.path.insert(0, os.path.join(HERE, "d2l_ch6"))
from blocks import BLOCKS, DETERMINISTIC  # noqa: E402


def run_blocks(backend: str, python: str = sys.executable) -> dict:
    root = os.path.dirname(HERE)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([python, RUNNER, backend], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def printed():
    return run_blocks("tinyconv")


def mnist_cached() -> bool:
    try:
        from tinyconv.data import MNIST

        MNIST(train=False, download=False, progress=False)
        return True
    except Exception:  # noqa: BLE001
        return False


def test_every_block_runs(printed):
    failed = {name: out for name, out in printed.items() if "!! " in out}
    if not mnist_cached():
        failed.pop("6.6 training LeNet", None)  # needs the MNIST cache (tests/test_mnist.py covers fetching)
    assert not failed, failed


def rows(*lines) -> str:
    return "\n".join(lines) + "\n"


EXPECTED = {
    # seed notes example A: first entry 0*0 + 1*1 + 3*2 + 4*3 = 19
    "6.2 corr2d": rows("tensor([[19., 25.],", "        [37., 43.]])"),
    # same forward through the Conv2D class; d(sum Y)/dK[a, b] is the sum of the window entries X[i+a, j+b]
    "6.2 Conv2D class and its backward": rows(
        "tinyconv.Size([2, 2]) tinyconv.Size([1])", "tensor([[19., 25.],", "        [37., 43.]], grad_fn=<AddBackward>)",
        "tensor([[ 8., 12.],", "        [20., 24.]])", "tensor([4.])"),
    # example B: ones with columns 2..5 zero; [1, -1] marks column 1 (+1) and 5 (-1); nothing on X.T
    "6.2 edge detection": rows(*(
        ["tensor([[1., 1., 0., 0., 0., 0., 1., 1.],"] + ["        [1., 1., 0., 0., 0., 0., 1., 1.],"] * 4
        + ["        [1., 1., 0., 0., 0., 0., 1., 1.]])"]
        + ["tensor([[ 0.,  1.,  0.,  0.,  0., -1.,  0.],"] + ["        [ 0.,  1.,  0.,  0.,  0., -1.,  0.],"] * 4
        + ["        [ 0.,  1.,  0.,  0.,  0., -1.,  0.]])"]
        + ["tensor([[0., 0., 0., 0., 0.],"] + ["        [0., 0., 0., 0., 0.],"] * 6
        + ["        [0., 0., 0., 0., 0.]])"])),
    # (x+1)^2 - 2x^2 + (x-1)^2... of the squares 0, 1, 4, ...: 2 everywhere
    "6.2 exercise: second derivative kernel": rows("tensor([[2., 2., 2., 2., 2., 2.]])"),
    # floor((n - k + 2p) / s) + 1 per axis for n = 8
    "6.3 padding and stride": rows(*(f"tinyconv.Size({s})" for s in ([8, 8], [8, 8], [4, 4], [2, 2]))),
    # example D; with padding 1 the 4x4 input gives (4 - 3 + 2)/1 + 1 = 4
    "6.3 exercise: example D, valid and same": rows("tensor([[ 8., -1.],", "        [-2.,  3.]])", "tinyconv.Size([1, 1, 4, 4])"),
    "6.4 1x1 convolution": rows("tinyconv.Size([2, 3, 3]) True"),
    "6.1 exercise: 1x1 conv is a per-pixel Linear": rows("tinyconv.Size([4, 2, 5, 5]) True"),
    "6.1 exercise: audio frames with a 1-D convolution": rows("tinyconv.Size([2, 16, 100])"),
    "6.6 LeNet layer shapes": rows(*[f"{name} output shape: \t tinyconv.Size({list(shape)})" for name, shape in [
        ("Conv2d", (1, 6, 28, 28)), ("Sigmoid", (1, 6, 28, 28)), ("AvgPool2d", (1, 6, 14, 14)),
        ("Conv2d", (1, 16, 10, 10)), ("Sigmoid", (1, 16, 10, 10)), ("AvgPool2d", (1, 16, 5, 5)),
        ("Flatten", (1, 400)), ("Linear", (1, 120)), ("Sigmoid", (1, 120)), ("Linear", (1, 84)),
        ("Sigmoid", (1, 84)), ("Linear", (1, 10))]]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_printout(printed, name):
    assert printed[name] == EXPECTED[name]


def numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"-?\d+\.?\d*(?:e[-+]\d+)?", text)])


def test_diagonal_edges_example_c(printed):
    first, second = printed["6.2 exercise: diagonal edges (example C)"].split("tensor(")[1:]
    a = numbers(first).reshape(8, 7)
    b = numbers(second).reshape(7, 8)
    np.testing.assert_array_equal(a, np.eye(8, 7) - np.eye(8, 7, -1))  # 1 on the diagonal, -1 just below
    np.testing.assert_array_equal(b, np.eye(7, 8) - np.eye(7, 8, 1))  # 1 on the diagonal, -1 just right


def test_multiple_channels_example_e(printed):
    out = printed["6.4 multiple input and output channels"]
    X = np.stack([np.arange(9.0).reshape(3, 3), np.arange(1.0, 10).reshape(3, 3)])
    K = np.stack([np.array([[0.0, 1], [2, 3]]), np.array([[1.0, 2], [3, 4]])])

    def corr(x, k):
        return np.array([[np.sum(x[i:i + 2, j:j + 2] * k) for j in range(2)] for i in range(2)])

    one = sum(corr(x, k) for x, k in zip(X, K))
    assert one.tolist() == [[56, 72], [104, 120]]  # the notes' example E
    three = [sum(corr(x, k) for x, k in zip(X, K + d)) for d in range(3)]
    expected = np.concatenate([one.ravel(), [3, 2, 2, 2], np.ravel(three)])
    np.testing.assert_array_equal(numbers(out), expected)  # ... and K.shape (3, 2, 2, 2) between them


def test_pooling(printed):
    n = numbers(printed["6.5 pooling"])
    X = np.arange(16.0).reshape(4, 4)
    expected = [4, 5, 7, 8, 2, 3, 5, 6, *X.ravel(), 10, 5, 7, 13, 15, 5, 7, 13, 15, *X.ravel(), *(X + 1).ravel(),
                5, 7, 13, 15, 6, 8, 14, 16]
    np.testing.assert_array_equal(n, expected)


def descend_from(w: np.ndarray, steps: int = 10, lr: float = 3e-2) -> tuple[list, np.ndarray]:
    """The chapter's kernel-learning loop in NumPy: squared error of corr2d(X, w) against the edges of example B."""
    X = np.ones((6, 8), np.float32)
    X[:, 2:6] = 0
    Y = X[:, :-1] - X[:, 1:]
    losses = []
    for _ in range(steps):
        err = w[0] * X[:, :-1] + w[1] * X[:, 1:] - Y
        losses.append(float(np.sum(err ** 2)))
        w = w - lr * np.array([2 * np.sum(err * X[:, :-1]), 2 * np.sum(err * X[:, 1:])], np.float32)
    return losses, w


def test_learning_a_kernel_from_a_fixed_start_matches_numpy(printed):
    lines = printed["6.2 learning a kernel from a fixed start"].splitlines()
    losses, w = descend_from(np.array([0.5, 0.25], np.float32))
    assert lines[:5] == [f"epoch {i + 1}, loss {losses[i]:.3f}" for i in range(1, 10, 2)]
    np.testing.assert_allclose(numbers(lines[5]), w, atol=5e-5)  # a tensor prints 4 decimals


def test_learning_a_kernel_from_a_random_start_finds_the_edge_detector(printed):
    lines = printed["6.2 learning a kernel"].splitlines()
    losses = [float(line.rsplit(" ", 1)[1]) for line in lines[:5]]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.1
    np.testing.assert_allclose(numbers(lines[5]), [1.0, -1.0], atol=0.1)  # "close to [1, -1]" (seed notes)


def test_training_lenet_with_train_ch6(printed):
    if not mnist_cached():
        pytest.skip("MNIST is not in the cache")
    lines = printed["6.6 training LeNet"].splitlines()
    assert lines[0] == "training on cpu"
    m = re.fullmatch(r"loss (\d+\.\d{3}), train acc (\d\.\d{3}), test acc (\d\.\d{3})", lines[1])
    assert m, lines
    loss, train_acc, test_acc = (float(v) for v in m.groups())
    assert 0 < loss < 3 and 0 <= train_acc <= 1 and 0 <= test_acc <= 1
    assert re.fullmatch(r"\d+\.\d examples/sec on cpu", lines[2])


# ------------------------------------------------------------------------------------------- against PyTorch
def normalise(text: str) -> str:
    """Only the differences docs/pytorch.md lists: shapes print as ``tinyconv.Size([1, 6])`` where PyTorch's
    print as ``torch.Size([1, 6])``, node names lack PyTorch's digit (``AddBackward0``)."""
    text = re.sub(r"\btorch\.Size\(", "tinyconv.Size(", text)
    return re.sub(r"Backward0>", "Backward>", text)


def same_printout(ours: str, theirs: str) -> bool:
    ours, theirs = normalise(ours), normalise(theirs)
    if ours == theirs:
        return True
    a, b = ours.splitlines(), theirs.splitlines()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        skeleton = [re.sub(r"tensor\(|\)|,|\s|-?\d+\.?\d*(?:e[-+]\d+)?", "", s) for s in (x, y)]
        nx, ny = numbers(x), numbers(y)
        if skeleton[0] != skeleton[1] or nx.shape != ny.shape or not np.allclose(nx, ny, rtol=1e-4, atol=1e-4):
            return False
    return True


@pytest.mark.torch
def test_deterministic_blocks_print_what_pytorch_prints(printed):
    pytest.importorskip("torch")
    theirs = run_blocks("torch")
    assert set(DETERMINISTIC) <= set(BLOCKS)
    for name in DETERMINISTIC:
        assert same_printout(printed[name], theirs[name]), (name, printed[name], theirs[name])
    for name in set(BLOCKS) - set(DETERMINISTIC):
        if name == "6.6 training LeNet" and not mnist_cached():
            continue  # needs the MNIST cache, as in test_every_block_runs
        assert "!! " not in theirs[name]  # the random ones run under PyTorch too
