"""Lazy layers (nn.LazyConv2d, LazyConvTranspose2d, LazyLinear, LazyBatchNorm1d/2d): parameters created on the
first forward, with the ordinary layer's initialisation, then the module *is* the ordinary layer."""
import io

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn
from tinyconv.nn import UninitializedBuffer, UninitializedParameter


def lazy_and_ordinary():
    """(lazy module, the ordinary one it must equal, an input) for each lazy class."""
    return [
        (lambda: nn.LazyConv2d(8, 3, stride=2, padding=1), lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1),
         (2, 3, 9, 9)),
        (lambda: nn.LazyConv2d(6, 3, groups=2, bias=False), lambda: nn.Conv2d(4, 6, 3, groups=2, bias=False),
         (2, 4, 7, 7)),
        (lambda: nn.LazyConvTranspose2d(5, 3, stride=2), lambda: nn.ConvTranspose2d(3, 5, 3, stride=2),
         (2, 3, 4, 4)),
        (lambda: nn.LazyLinear(7), lambda: nn.Linear(12, 7), (4, 12)),
        (lambda: nn.LazyLinear(7, bias=False), lambda: nn.Linear(12, 7, bias=False), (2, 3, 12)),
        (lambda: nn.LazyBatchNorm1d(momentum=0.3), lambda: nn.BatchNorm1d(5, momentum=0.3), (6, 5)),
        (lambda: nn.LazyBatchNorm1d(), lambda: nn.BatchNorm1d(5), (6, 5, 3)),
        (lambda: nn.LazyBatchNorm2d(affine=False), lambda: nn.BatchNorm2d(4, affine=False), (3, 4, 2, 2)),
    ]


@pytest.mark.parametrize("make_lazy,make_plain,shape", lazy_and_ordinary())
def test_first_forward_makes_the_ordinary_layer_with_its_initialisation(make_lazy, make_plain, shape):
    x = tc.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    tc.manual_seed(3)
    plain = make_plain()
    expected = plain(x)
    tc.manual_seed(3)  # the lazy layer draws its values at the dry run, from the same generator state
    lazy = make_lazy()
    assert lazy.has_uninitialized_params()
    out = lazy(x)
    assert type(lazy) is type(plain)
    assert repr(lazy) == repr(plain)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    ours, theirs = lazy.state_dict(), plain.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert type(ours[key]) is type(theirs[key])
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy(), err_msg=key)
    assert all(type(p) is nn.Parameter and p.requires_grad for p in lazy.parameters())
    assert lazy._forward_pre_hooks == {}  # the initialising hook is gone: later calls take the plain path


def test_construction_draws_no_random_numbers():
    tc.manual_seed(0)
    expected = tc.rand(3).numpy()
    tc.manual_seed(0)
    nn.LazyConv2d(4, 3), nn.LazyLinear(5), nn.LazyBatchNorm2d()
    np.testing.assert_array_equal(tc.rand(3).numpy(), expected)


def test_before_the_dry_run_the_parameters_say_they_are_uninitialized():
    net = nn.Sequential(nn.LazyConv2d(6, 5, padding=2), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(10))
    assert repr(net[0]) == "LazyConv2d(0, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"
    assert repr(net[3]) == "LazyLinear(in_features=0, out_features=10, bias=True)"
    state = net.state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                           "1.num_batches_tracked", "3.weight", "3.bias"]
    assert isinstance(state["0.weight"], UninitializedParameter)
    assert isinstance(state["1.running_mean"], UninitializedBuffer)
    assert state["1.num_batches_tracked"].item() == 0  # needs no shape, so it exists from the start
    assert repr(state["3.bias"]) == "<UninitializedParameter>"
    w = net[0].weight
    assert w.dtype == np.float32 and w.requires_grad
    with pytest.raises(RuntimeError, match="Can't access the shape of an uninitialized parameter"):
        _ = w.shape
    with pytest.raises((ValueError, RuntimeError), match="uninitialized parameter"):
        w * 2
    with pytest.raises(ValueError, match="uninitialized parameter"):
        np.asarray(w)
    with pytest.raises(RuntimeError, match="Call `forward` to initialize"):
        nn.init.xavier_uniform_(w)


def test_a_failed_first_forward_leaves_the_module_lazy():
    conv = nn.LazyConv2d(6, 3, groups=3)
    with pytest.raises(ValueError, match="channels must be divisible by groups=3"):
        conv(tc.zeros(1, 4, 5, 5))
    assert type(conv) is nn.LazyConv2d and conv.has_uninitialized_params()
    conv(tc.zeros(1, 9, 5, 5))
    assert type(conv) is nn.Conv2d and conv.weight.shape == (6, 3, 3, 3)
    with pytest.raises(ValueError, match="cannot infer in_features from an input of shape"):
        nn.LazyLinear(3)(tc.tensor(1.0))


def test_unbatched_conv_input_has_channels_first():
    conv = nn.LazyConv2d(2, 3)
    assert conv(tc.zeros(5, 6, 6)).shape == (2, 4, 4)
    assert conv.in_channels == 5 and conv.weight.shape == (2, 5, 3, 3)


def init_cnn(module):  # d2l 1.0's initialisation, applied after the dry run
    if type(module) is nn.Linear or type(module) is nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


def test_apply_after_the_dry_run_reaches_the_new_layers():
    net = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    net(tc.zeros(2, 1, 6, 6))
    net.apply(init_cnn)
    for layer, fan_in, fan_out in ((net[0], 9, 36), (net[3], 64, 3)):
        bound = np.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.numpy()
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound  # xavier's range, not the default's


def test_optimizer_built_before_or_after_the_dry_run_trains_the_same():
    def run(build_optimizer_first: bool):
        tc.manual_seed(0)
        net = nn.Sequential(nn.LazyConv2d(3, 3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
        x = tc.tensor(np.random.default_rng(1).standard_normal((4, 2, 5, 5)).astype(np.float32))
        y = tc.tensor([0, 1, 1, 0])
        opt = tc.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) if build_optimizer_first else None
        net(x)  # dry run
        opt = opt or tc.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            nn.CrossEntropyLoss()(net(x), y).backward()
            opt.step()
        return [p.numpy().copy() for p in net.parameters()]

    before, after = run(True), run(False)
    assert len(before) == 6
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_summary_and_print_graph_of_a_lazy_model():
    net = nn.Sequential(nn.LazyConv2d(4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    result = tc.summary(net, (1, 2, 5, 5), print_fn=None)
    assert result.total_params == (4 * 2 * 9 + 4) + (100 * 10 + 10)
    assert [r.output_shape for r in result.rows if r.is_leaf] == [(1, 4, 5, 5), (1, 4, 5, 5), (1, 100), (1, 10)]
    buffer = io.StringIO()
    tc.print_graph(net(tc.zeros(1, 2, 5, 5)), dict(net.named_parameters()), file=buffer)
    text = buffer.getvalue()
    assert "0.weight" in text and "3.weight" in text and "(10, 100)" in text


def test_load_state_dict_before_the_dry_run_takes_the_checkpoint():
    tc.manual_seed(0)
    trained = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(27, 4))
    trained[1].running_mean.data[...] = [0.5, -1.0, 2.0]
    x = tc.tensor(np.random.default_rng(2).standard_normal((2, 2, 5, 5)).astype(np.float32))
    lazy = nn.Sequential(nn.LazyConv2d(3, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(4))
    lazy.load_state_dict(trained.state_dict())
    assert not any(m.has_uninitialized_params() for m in lazy.modules() if hasattr(m, "has_uninitialized_params"))
    trained.eval(), lazy.eval()
    np.testing.assert_array_equal(lazy(x).numpy(), trained(x).numpy())
    assert repr(lazy) == repr(trained)


def test_loading_a_lazy_checkpoint_into_a_built_model_says_what_is_wrong():
    with pytest.raises(ValueError, match="uninitialized parameter"):
        nn.Linear(3, 2).load_state_dict(nn.LazyLinear(2).state_dict())


def test_dtype_chosen_before_the_dry_run():
    net = nn.Sequential(nn.LazyLinear(3), nn.LazyBatchNorm1d()).double()
    out = net(tc.zeros(4, 5, dtype=tc.float64))
    assert out.dtype == np.float64
    assert all(t.dtype == np.float64 for t in net.state_dict().values() if t.ndim)
    assert nn.LazyConv2d(2, 1, dtype=tc.float64)(tc.zeros(1, 1, 2, 2, dtype=tc.float64)).dtype == np.float64


@pytest.mark.torch
def test_lazy_modules_against_pytorch():
    torch = pytest.importorskip("torch")
    tnet = torch.nn.Sequential(torch.nn.LazyConv2d(4, 3, padding=1), torch.nn.LazyBatchNorm2d(), torch.nn.ReLU(),
                               torch.nn.LazyConvTranspose2d(2, 2, stride=2), torch.nn.Flatten(),
                               torch.nn.LazyLinear(5), torch.nn.LazyBatchNorm1d())
    ours = nn.Sequential(nn.LazyConv2d(4, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(),
                         nn.LazyConvTranspose2d(2, 2, stride=2), nn.Flatten(), nn.LazyLinear(5),
                         nn.LazyBatchNorm1d())
    assert list(ours.state_dict()) == list(tnet.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    tnet(torch.from_numpy(x))  # dry run; then both load PyTorch's values and run in train mode
    assert [type(m).__name__ for m in tnet] == ["Conv2d", "BatchNorm2d", "ReLU", "ConvTranspose2d", "Flatten",
                                                "Linear", "BatchNorm1d"]
    ours.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    out = ours(tc.tensor(x))
    np.testing.assert_allclose(out.numpy(), tnet(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in tnet]
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in tnet.state_dict().items()}
