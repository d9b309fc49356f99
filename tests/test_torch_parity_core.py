"""Optional: tinyconv's autograd against PyTorch's on random composite expressions (float64, 1e-9).

Skipped when torch is not installed. Run with torch available, e.g.
``python -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 -e ".[test]" && .venv-torch/bin/pytest -m torch``.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyconv as tc
from tinyconv import functional as F

from strategies import arrays, broadcastable_pairs

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

TOL = dict(rtol=1e-9, atol=1e-9)


def both(x: np.ndarray):
    """The same float64 leaf in tinyconv and in torch."""
    return tc.tensor(x, requires_grad=True, dtype="float64"), torch.tensor(x, dtype=torch.float64, requires_grad=True)


def expression(lib, a, b, w, target, smoothing):
    """One composite expression written once for both libraries: broadcasting, reductions, matmul, activations,
    softmax and cross-entropy."""
    if lib == "tc":
        relu, sig, tanh, ce, lsm = F.relu, F.sigmoid, F.tanh, F.cross_entropy, F.log_softmax
        t = tc.tensor(target)
    else:
        tf = torch.nn.functional
        relu, sig, tanh, ce, lsm = tf.relu, torch.sigmoid, torch.tanh, tf.cross_entropy, tf.log_softmax
        t = torch.tensor(target)
    h = relu(a * b + 0.5) - sig(b) / (1.0 + a.abs())  # broadcasting (N, K) with (K,)
    h = tanh(h @ w) + (h.exp().sum(dim=1, keepdim=True)).log()  # (N, C)
    h = h - h.amax(dim=1, keepdim=True) * 0.5 + h.mean(dim=0) ** 2
    loss = ce(h, t, label_smoothing=smoothing) + lsm(h, 1)[:, 0].sum() * 0.1 + (h.clamp(-1.0, 1.0) + 1.5).sqrt().mean()
    return loss


@given(data=st.data())
def test_composite_expressions_match_pytorch(data):
    n, k, c = (data.draw(st.integers(1, 5)) for _ in range(3))
    c = max(c, 2)
    smoothing = data.draw(st.sampled_from([0.0, 0.1]))
    a_np = data.draw(arrays((n, k)))
    b_np = data.draw(arrays((k,)))
    w_np = data.draw(arrays((k, c)))
    target = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
    (a, ta), (b, tb), (w, tw) = both(a_np), both(b_np), both(w_np)
    ours = expression("tc", a, b, w, target, smoothing)
    theirs = expression("torch", ta, tb, tw, target, smoothing)
    np.testing.assert_allclose(ours.item(), theirs.item(), **TOL)
    ours.backward()
    theirs.backward()
    for mine, ref in ((a, ta), (b, tb), (w, tw)):
        np.testing.assert_allclose(mine.grad.numpy(), ref.grad.numpy(), **TOL)


@given(data=st.data())
def test_broadcast_binary_ops_match_pytorch(data):
    sa, sb = data.draw(broadcastable_pairs())
    a_np, b_np = data.draw(arrays(sa, away_from_zero=True)), data.draw(arrays(sb, away_from_zero=True))
    (a, ta), (b, tb) = both(a_np), both(b_np)
    ours = (a * b - a / b + a.abs() ** b).sum()
    theirs = (ta * tb - ta / tb + ta.abs() ** tb).sum()
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), **TOL)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), **TOL)


@pytest.mark.parametrize("ignore_index", [-100, 1, 7])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3, 2), (4,)])
@pytest.mark.parametrize("pattern", ["some", "all"])
def test_ignore_index_against_torch(ignore_index, shape, pattern):
    """cross_entropy and nll_loss with targets to ignore: every reduction, with and without class weights and
    label smoothing; losses and gradients as PyTorch's, the all-ignored mean's NaN and zero gradients included."""
    rng = np.random.default_rng(abs(ignore_index) + len(shape))
    classes = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = rng.integers(0, classes, tshape)
    target = np.where(rng.random(tshape) < 0.4, ignore_index, target) if pattern == "some" else np.full(tshape, ignore_index)
    dim = 0 if len(shape) == 1 else 1
    for weighted in (False, True):
        w = rng.uniform(0.5, 2.0, classes)
        for reduction in ("mean", "sum", "none"):
            for smoothing in (0.0, 0.2):
                a, b = both(rng.standard_normal(shape))
                weight = dict(ours=tc.tensor(w) if weighted else None, theirs=torch.tensor(w) if weighted else None)
                ours = F.cross_entropy(a, target, weight=weight["ours"], reduction=reduction, label_smoothing=smoothing,
                                       ignore_index=ignore_index)
                theirs = torch.nn.functional.cross_entropy(b, torch.tensor(target), weight=weight["theirs"],
                                                           reduction=reduction, label_smoothing=smoothing,
                                                           ignore_index=ignore_index)
                if smoothing == 0.0:  # nll_loss of the same log-probabilities: the same node
                    nll = F.nll_loss(F.log_softmax(a, dim), target, weight=weight["ours"], reduction=reduction,
                                     ignore_index=ignore_index)
                    np.testing.assert_allclose(nll.numpy(), ours.numpy(), **TOL)
                g = rng.standard_normal(theirs.shape)
                ours.backward(tc.tensor(g))
                theirs.backward(torch.tensor(g))
                np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), **TOL)
                np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **TOL)
