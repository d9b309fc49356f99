"""nn.Module bookkeeping, Parameter, state_dict with PyTorch's keys, initialisation and the basic layers."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Linear(3, 2), nn.Tanh())

    def forward(self, x):
        return self.head(self.act(self.fc1(x)))


def test_parameters_and_names_follow_pytorch_keys():
    m = TwoLayer()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "head.0.weight", "head.0.bias"]
    assert list(m.state_dict()) == names
    assert [type(c).__name__ for c in m.children()] == ["Linear", "ReLU", "Sequential"]
    assert m.num_parameters() == 4 * 3 + 3 + 3 * 2 + 2
    assert all(p.requires_grad for p in m.parameters())


def test_shared_parameter_is_listed_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2


def test_repr_like_pytorch():
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.Dropout(0.1))
    assert repr(m) == (
        "Sequential(\n"
        "  (0): Flatten(start_dim=1, end_dim=-1)\n"
        "  (1): Linear(in_features=4, out_features=3, bias=False)\n"
        "  (2): Dropout(p=0.1)\n"
        ")"
    )


def test_train_eval_propagates_and_dropout_obeys_it():
    m = nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.5)))
    m.eval()
    assert not any(mod.training for mod in m.modules())
    x = tc.ones(4, 4)
    np.testing.assert_array_equal(m(x).numpy(), x.numpy())
    m.train()
    assert all(mod.training for mod in m.modules())


def test_zero_grad_and_backward_through_module():
    m = TwoLayer()
    m(tc.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_state_dict_round_trip_and_in_place_load():
    a, b = TwoLayer(), TwoLayer()
    weight_array = b.fc1.weight.numpy()
    b.load_state_dict(a.state_dict())
    assert b.fc1.weight.numpy() is weight_array  # copied in place: optimizers keep their references
    x = tc.randn(3, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_errors_name_the_key_and_change_nothing():
    m = TwoLayer()
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    good = {k: v.numpy() * 0 for k, v in m.state_dict().items()}

    bad_shape = dict(good, **{"fc1.weight": np.zeros((4, 4), dtype=np.float32)})
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1.weight: copying a param with shape \(4, 4\)"):
        m.load_state_dict(bad_shape)
    missing = {k: v for k, v in good.items() if k != "head.0.bias"}
    with pytest.raises(RuntimeError, match="Missing key\\(s\\) in state_dict: 'head.0.bias'"):
        m.load_state_dict(missing)
    with pytest.raises(RuntimeError, match="Unexpected key\\(s\\) in state_dict: 'extra'"):
        m.load_state_dict(dict(good, extra=np.zeros(1)))
    with pytest.raises(RuntimeError, match="dtype mismatch for fc1.bias: checkpoint has int64"):
        m.load_state_dict(dict(good, **{"fc1.bias": np.zeros(3, dtype=np.int64)}))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    result = m.load_state_dict(missing, strict=False)
    assert result.missing_keys == ["head.0.bias"] and result.unexpected_keys == []


def test_linear_default_init_bounds_and_forward():
    tc.manual_seed(0)
    lin = nn.Linear(100, 50)
    bound = 1 / math.sqrt(100)
    assert lin.weight.dtype == np.float32
    assert np.abs(lin.weight.numpy()).max() <= bound and np.abs(lin.weight.numpy()).max() > 0.9 * bound
    assert np.abs(lin.bias.numpy()).max() <= bound
    x = tc.randn(7, 100)
    np.testing.assert_allclose(lin(x).numpy(), x.numpy() @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5)


def test_xavier_and_kaiming_ranges():
    w = nn.Parameter(np.empty((120, 400), dtype=np.float32))
    nn.init.xavier_uniform_(w)
    a = math.sqrt(6 / (400 + 120))
    assert np.abs(w.numpy()).max() <= a and np.abs(w.numpy()).max() > 0.95 * a
    conv_w = nn.Parameter(np.empty((16, 6, 5, 5)))
    nn.init.kaiming_uniform_(conv_w, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / (6 * 25))
    assert np.abs(conv_w.numpy()).max() <= bound
    nn.init.zeros_(conv_w)
    assert not conv_w.numpy().any()
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(nn.Parameter(np.empty(3)))


def test_sequential_indexing_and_ordered_dict():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Sigmoid())]))
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias"]
    assert isinstance(seq[1], nn.Sigmoid) and isinstance(seq[-1], nn.Sigmoid) and len(seq) == 2
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    with pytest.raises(IndexError, match="index 5 is out of range for Sequential of length 2"):
        seq[5]
    with pytest.raises(TypeError, match="argument 0 is a int, not a Module"):
        nn.Sequential(3)


def test_forward_hooks_see_and_may_replace_output():
    lin = nn.Linear(2, 2)
    seen = []
    handle = lin.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].shape, out.shape)))
    lin(tc.ones(3, 2))
    assert seen == [(lin, (3, 2), (3, 2))]
    handle.remove()
    lin(tc.ones(3, 2))
    assert len(seen) == 1
    lin.register_forward_hook(lambda mod, args, out: out * 0)
    assert not lin(tc.ones(1, 2)).numpy().any()


def test_module_double_enables_float64_gradcheck():
    tc.manual_seed(1)
    m = TwoLayer().double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    x = tc.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    assert tc.gradcheck(lambda t: m(t), [x])


def test_loss_modules_match_functional():
    logits, target = tc.randn(4, 3), np.array([0, 2, 1, 1])
    assert nn.CrossEntropyLoss()(logits, target).item() == F.cross_entropy(logits, target).item()
    assert nn.MSELoss(reduction="sum")(logits, logits * 2).item() == pytest.approx((logits.numpy() ** 2).sum(), rel=1e-6)
