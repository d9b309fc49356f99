"""Optional: batch norm against PyTorch in float64 to 1e-9: outputs and every gradient over several training
steps, the running statistics, eval-mode output, for each option (momentum, momentum=None, affine=False,
track_running_stats=False, BatchNorm1d on (N, C) and (N, C, L)); state dicts move between the two.

Skipped when torch is not installed (see tests/test_torch_parity_core.py for how to run it with torch).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")  # before numba starts its OpenMP pool: the two runtimes must not clash

import tinyconv as tc  # noqa: E402
from tinyconv import functional as F  # noqa: E402
from tinyconv import nn  # noqa: E402

pytestmark = pytest.mark.torch

TOL = dict(rtol=1e-9, atol=1e-9)

OPTIONS = [
    dict(),
    dict(momentum=0.3, eps=1e-3),
    dict(momentum=None),
    dict(affine=False),
    dict(track_running_stats=False),
    dict(affine=False, track_running_stats=False, momentum=None),
]

SHAPES = {  # class name -> input shapes it takes
    "BatchNorm2d": [(4, 3, 5, 5), (2, 5, 3, 1)],
    "BatchNorm1d": [(6, 3), (4, 5, 7)],
}


@pytest.fixture(scope="module", params=["numba", "numpy"])
def implementation(request):
    """Each implementation of batch norm (compiled passes, vectorised NumPy); module-scoped for hypothesis."""
    from tinyconv.functions.batch_norm import BatchNorm

    BatchNorm.implementation = request.param
    yield request.param
    BatchNorm.implementation = None


def pair(cls_name, channels, **options):
    ours = getattr(nn, cls_name)(channels, **options).double()
    theirs = getattr(torch.nn, cls_name)(channels, **options).double()
    if ours.affine:  # start from the same non-trivial parameters
        rng = np.random.default_rng(channels)
        w, b = rng.uniform(0.5, 1.5, channels), rng.uniform(-0.5, 0.5, channels)
        ours.weight.numpy()[:], ours.bias.numpy()[:] = w, b
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    return ours, theirs


def assert_same_state(ours, theirs):
    ts = theirs.state_dict()
    assert list(ours.state_dict()) == list(ts)
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value.numpy(), ts[key].numpy(), err_msg=key, **TOL)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("cls_name", sorted(SHAPES))
@given(seed=st.integers(0, 2**32 - 1), shape_index=st.integers(0, 1))
def test_training_steps_then_eval_match_pytorch(cls_name, options, seed, shape_index, implementation):
    shape = SHAPES[cls_name][shape_index]
    ours, theirs = pair(cls_name, shape[1], **options)
    rng = np.random.default_rng(seed)
    for step in range(3):  # each step: forward, backward, and an SGD update of the affine parameters
        x = rng.standard_normal(shape) * (step + 1) + step
        g = rng.standard_normal(shape)
        a, b = tc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = ours(a), theirs(b)
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), err_msg=f"output, step {step}", **TOL)
        y.backward(g)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), err_msg=f"input grad, step {step}", **TOL)
        if ours.affine:
            for name in ("weight", "bias"):
                p, tp = getattr(ours, name), getattr(theirs, name)
                np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), err_msg=f"{name} grad, step {step}", **TOL)
                p.data -= 0.1 * p.grad
                p.grad = None
                with torch.no_grad():
                    tp -= 0.1 * tp.grad
                    tp.grad = None
        assert_same_state(ours, theirs)
    ours.eval(), theirs.eval()
    x = rng.standard_normal(shape) * 2 - 1
    a, b = tc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(a), theirs(b)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), err_msg="eval output", **TOL)
    g = rng.standard_normal(shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), err_msg="eval input grad", **TOL)
    if ours.affine:
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), err_msg="eval weight grad",
                                   **TOL)
    assert_same_state(ours, theirs)


@pytest.mark.parametrize("training", [True, False])
def test_functional_matches_pytorch(training, implementation):
    rng = np.random.default_rng(7)
    x, g = rng.standard_normal((5, 4, 3, 2)), rng.standard_normal((5, 4, 3, 2))
    w, bias = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    ours = [tc.tensor(v, requires_grad=True) for v in (x, w, bias)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (x, w, bias)]
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    y = F.batch_norm(ours[0], rm, rv, ours[1], ours[2], training=training, momentum=0.2, eps=1e-4)
    ty = torch.nn.functional.batch_norm(theirs[0], trm, trv, theirs[1], theirs[2], training=training,
                                        momentum=0.2, eps=1e-4)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(rm, trm.numpy(), **TOL)
    np.testing.assert_allclose(rv, trv.numpy(), **TOL)
    y.backward(g)
    ty.backward(torch.tensor(g))
    for mine, ref in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), ref.grad.numpy(), **TOL)


def test_state_dicts_move_between_tinyconv_and_pytorch():
    theirs = torch.nn.BatchNorm2d(3)
    theirs.train()
    for _ in range(2):
        theirs(torch.randn(4, 3, 5, 5) * 3 + 1)
    ours = nn.BatchNorm2d(3)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert_same_state(ours.double(), theirs.double())
    ours.float(), theirs.float()
    ours.eval(), theirs.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(tc.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    back = torch.nn.BatchNorm2d(3)
    back.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in ours.state_dict().items()})
    assert int(back.num_batches_tracked) == 2


def test_resnet_matches_the_same_network_in_pytorch():
    """The whole small ResNet (benchmarks/torch_resnet.py is the same network in PyTorch, same state_dict keys):
    two SGD training steps then eval, float64: loss, every parameter gradient, running statistics, eval output."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from torch_resnet import ResNet as TorchResNet
    from torch_resnet import load_arrays

    tc.manual_seed(0)
    ours = nn.models.ResNet(channels=(4, 6, 8), blocks=(1, 2, 1)).double()
    theirs = TorchResNet(channels=(4, 6, 8), blocks=(1, 2, 1)).double()
    load_arrays(theirs, {k: np.array(v.numpy()) for k, v in ours.state_dict().items()})
    opt, topt = tc.optim.SGD(ours.parameters(), lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    for step in range(2):
        x, y = rng.standard_normal((6, 1, 28, 28)), rng.integers(0, 10, 6)
        loss = F.cross_entropy(ours(tc.tensor(x)), y)
        tloss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
        np.testing.assert_allclose(loss.item(), tloss.item(), **TOL)
        opt.zero_grad(), topt.zero_grad()
        loss.backward(), tloss.backward()
        tparams = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), err_msg=f"{name}, step {step}",
                                       **TOL)
        opt.step(), topt.step()
    assert_same_state(ours, theirs)
    ours.eval(), theirs.eval()
    x = rng.standard_normal((3, 1, 28, 28))
    np.testing.assert_allclose(ours(tc.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), **TOL)
