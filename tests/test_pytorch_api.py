"""PyTorch's API surface in tinyconv: factories, free functions, dim aliases, devices, conversions, files,
module paths, ``Module.apply``/``to`` and ``tinyconv.utils.data`` (issue #10, items 3-8).

Expected values come from the definitions (NumPy, hand-computed), not from a PyTorch run.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn


# -------------------------------------------------------------------------------------------------- factories
@pytest.mark.parametrize("name", ["zeros", "ones", "empty", "rand", "randn"])
def test_factories_take_ints_a_tuple_a_list_or_size(name):
    make = getattr(tc, name)
    for t in (make(2, 3), make((2, 3)), make([2, 3]), make(size=(2, 3)), make(size=[2, 3])):
        assert t.shape == (2, 3) and t.dtype == np.float32 and t.device == tc.device("cpu")
    assert make(()).shape == () and make(size=()).shape == ()
    assert make(2, dtype=tc.float64).dtype == np.float64
    assert make(2, requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="both positionally"):
        make(2, size=(3,))
    with pytest.raises(RuntimeError, match="negative dimension"):
        make(-1, 2)
    with pytest.raises(TypeError, match="size must be ints"):
        make(2.5)


def test_fill_values_and_their_dtypes():
    assert tc.zeros(2, 2).tolist() == [[0, 0], [0, 0]] and tc.ones(size=(1, 2)).tolist() == [[1, 1]]
    assert tc.empty(3).tolist() == [0, 0, 0]
    assert tc.full((2,), 3).dtype == np.int64 and tc.full((2,), 3.0).dtype == np.float32
    assert tc.full((2,), True).dtype == np.bool_ and tc.full(size=[2], fill_value=7.5).tolist() == [7.5, 7.5]
    assert tc.full_like(tc.zeros(2, dtype=tc.float64), 1.5).dtype == np.float64
    assert tc.eye(3).tolist() == np.eye(3).tolist() and tc.eye(2, 3).tolist() == [[1, 0, 0], [0, 1, 0]]
    assert tc.eye(2).dtype == np.float32


def test_arange_and_linspace_dtypes_and_values():
    assert tc.arange(5).dtype == np.int64 and tc.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert tc.arange(1, 7, 2).tolist() == [1, 3, 5]
    x = tc.arange(0, 1, 0.25)
    assert x.dtype == np.float32 and x.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert tc.arange(16, dtype=tc.float32).reshape((1, 1, 4, 4)).shape == (1, 1, 4, 4)
    assert tc.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and tc.linspace(0, 1, 5).dtype == np.float32
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        tc.arange(0, 1, 0)


def test_random_factories_follow_the_seed_and_the_moments():
    tc.manual_seed(3)
    a = tc.rand(size=(1, 1, 28, 28), dtype=tc.float32)
    tc.manual_seed(3)
    assert np.array_equal(a.numpy(), tc.rand(1, 1, 28, 28).numpy())
    assert 0 <= a.numpy().min() and a.numpy().max() < 1
    tc.manual_seed(0)
    n = tc.normal(0, 1, (200, 200))
    assert n.shape == (200, 200) and n.dtype == np.float32
    assert abs(float(n.mean())) < 0.02 and abs(float(n.numpy().std()) - 1) < 0.02
    shifted = tc.normal(tc.full((4000,), 5.0), 0.5)  # tensor mean, number std: elementwise
    assert shifted.shape == (4000,) and abs(float(shifted.mean()) - 5) < 0.05
    with pytest.raises(TypeError, match="give a size"):
        tc.normal(0, 1)
    with pytest.raises(RuntimeError, match="std >= 0.0"):
        tc.normal(0, -1, (2,))


def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tc.from_numpy(a)
    assert t.dtype == np.float64  # the array's dtype, not the default
    a[0, 0] = 100
    assert t.numpy()[0, 0] == 100
    t.numpy()[1, 2] = -1
    assert a[1, 2] == -1
    with pytest.raises(TypeError, match=r"expected np.ndarray \(got list\)"):
        tc.from_numpy([1, 2])


# ----------------------------------------------------------------------------------------- free functions etc.
def test_free_functions_are_the_methods():
    x = tc.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]])
    assert tc.abs(x).tolist() == [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_allclose(tc.exp(x).numpy(), np.exp(x.numpy()))
    assert tc.sum(x).item() == 3.0 and tc.sum(x, dim=0).tolist() == [3, -3, 3]
    assert tc.sum(x, axis=1, keepdims=True).tolist() == [[-2], [5]]
    assert tc.argmax(x, axis=1).tolist() == [1, 2] and tc.argmax(x).item() == 5
    assert tc.max(x).item() == 6 and tc.max(x, 1).indices.tolist() == [1, 2]
    assert tc.mean(x, dim=1).tolist() == pytest.approx([-2 / 3, 5 / 3])
    assert tc.reshape(x, (3, 2)).shape == (3, 2) and tc.numel(x) == 6
    assert tc.matmul(tc.eye(2), x).tolist() == x.tolist()
    assert tc.is_tensor(x) and not tc.is_tensor(x.numpy())
    assert tc.add(x, 1).tolist() == (x + 1).tolist() and tc.square(x).tolist() == (x * x).tolist()
    c = tc.clone(x)
    assert c.tolist() == x.tolist() and not np.shares_memory(c.numpy(), x.numpy())
    assert np.shares_memory(tc.detach(x).numpy(), x.numpy())


def test_axis_and_keepdims_aliases_on_the_methods():
    y_hat = tc.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert y_hat.argmax(axis=1).tolist() == [1, 0] and y_hat.argmax(axis=1).dtype == np.int64
    assert y_hat.sum(axis=0, keepdims=True).shape == (1, 3)
    assert y_hat.mean(axis=1).shape == (2,) and y_hat.amax(axis=0).tolist() == pytest.approx([0.5, 0.7, 0.2])
    with pytest.raises(TypeError, match="both dim and its alias axis"):
        y_hat.sum(dim=0, axis=1)


def test_sums_of_bool_and_int_tensors_are_int64():
    assert tc.tensor(np.array([True, False, True])).sum().dtype == np.int64
    assert tc.tensor(np.array([200, 100], dtype=np.uint8)).sum().item() == 300  # no uint8 wrap-around
    assert tc.tensor(np.array([1, 2], dtype=np.int32)).sum().dtype == np.int64


# ------------------------------------------------------------------------------------------------ conversions
def test_type_and_conversion_methods():
    x = tc.tensor([1.7, -2.2, 0.0])
    assert x.type() == "torch.FloatTensor" and x.double().type() == "torch.DoubleTensor"
    assert x.long().tolist() == [1, -2, 0] and x.long().dtype == np.int64
    assert x.int().dtype == np.int32 and x.bool().tolist() == [True, True, False]
    assert x.type(tc.int64).dtype == np.int64 and x.type("torch.LongTensor").dtype == np.int64
    assert x.float() is x and x.to(tc.float32) is x
    assert x.to(tc.float64).dtype == np.float64 and x.to("cpu") is x and x.to(tc.device("cpu")) is x
    assert x.to("cpu", tc.float64).dtype == np.float64 and x.to(tc.zeros(1, dtype=tc.int64)).dtype == np.int64
    assert x.to(dtype=tc.float64, device="cpu").dtype == np.float64
    c = x.to("cpu", copy=True)
    assert c is not x and c.tolist() == x.tolist() and not np.shares_memory(c.numpy(), x.numpy())
    w = tc.tensor([1.5, 2.5], requires_grad=True)
    assert not w.long().requires_grad  # an integer copy leaves the graph, as in PyTorch
    w.double().sum().backward()
    assert w.grad.dtype == np.float32 and w.grad.tolist() == [1.0, 1.0]


def test_format_float_int_bool_like_pytorch():
    loss = tc.tensor(2.0 / 3.0)
    assert f"loss {loss:.3f}" == "loss 0.667" and format(tc.tensor(np.array(7)), "d") == "7"
    assert float(tc.tensor([2.5])) == 2.5 and int(tc.tensor([[3.9]])) == 3 and bool(tc.tensor([1]))
    for convert in (float, int):
        with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
            convert(tc.tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value is ambiguous"):
        bool(tc.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
        format(tc.tensor([1.5]), ".3f")  # PyTorch formats only 0-d tensors with a spec
    assert format(tc.tensor([1.5]), "") == str(tc.tensor([1.5]))


def test_iteration_goes_over_the_first_dimension():
    x = tc.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert [row.tolist() for row in x] == [[1, 2], [3, 4]]
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(tc.tensor(1.0))


# ----------------------------------------------------------------------------------------------------- devices
def test_devices_are_the_cpu_and_cuda_is_a_clear_error():
    cpu = tc.device("cpu")
    assert str(cpu) == "cpu" and repr(cpu) == "device(type='cpu')" and cpu.type == "cpu" and cpu.index is None
    assert tc.device("cpu:0").index == 0 and tc.device("cuda", 1).type == "cuda"
    assert not tc.cuda.is_available() and tc.cuda.device_count() == 0
    x = tc.ones(2)
    assert x.device == cpu and x.cpu() is x and not x.is_cuda
    for attempt in (lambda: x.to("cuda"), lambda: x.cuda(), lambda: tc.zeros(2, device="cuda:0"),
                    lambda: tc.tensor([1.0], device=tc.device("cuda")), lambda: nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError, match="tinyconv runs on the CPU only: device 'cuda(:0)?' is not available"):
            attempt()
    with pytest.raises(RuntimeError, match="device type at start of device string: tpu"):
        tc.device("tpu")


def test_module_to_device_and_dtype():
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    assert net.to("cpu") is net and net.cpu() is net and net.to(tc.device("cpu")) is net
    assert next(iter(net.parameters())).device == tc.device("cpu")
    net.to("cpu", tc.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    net.to(dtype=tc.float32)
    assert all(p.dtype == np.float32 for p in net.parameters())
    with pytest.raises(TypeError, match="only accepts floating point dtypes"):
        net.to(tc.int64)


# ------------------------------------------------------------------------------------------------ Module.apply
def test_module_apply_visits_children_before_their_parent_in_pytorchs_order():
    inner = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())
    net = nn.Sequential(inner, nn.Linear(2, 1), nn.Sequential(nn.ReLU()))
    seen = []
    assert net.apply(seen.append) is net
    # PyTorch: for each child in order, child.apply(fn); then fn(self). A post-order walk.
    expected = [inner[0], inner[1], inner, net[1], net[2][0], net[2], net]
    assert [id(m) for m in seen] == [id(m) for m in expected]


def test_apply_initialises_the_layers_it_is_told_to():
    net = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))

    def init_weights(m):
        if type(m) == nn.Linear:  # noqa: E721  (d2l's spelling)
            nn.init.constant_(m.weight, 0.5)

    net.apply(init_weights)
    assert all(np.all(m.weight.numpy() == 0.5) for m in (net[0], net[2]))


# ----------------------------------------------------------------------------------------------- files, paths
def test_save_and_load_take_any_file_name_and_stay_pickle_free(tmp_path):
    net = nn.Linear(3, 2)
    path = tmp_path / "mlp.params"
    tc.save(net.state_dict(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.params"]  # the user's name, nothing appended
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as npz:  # an ordinary npz inside
        np.testing.assert_array_equal(npz["weight"], net.weight.numpy())
    clone = nn.Linear(3, 2)
    clone.load_state_dict(tc.load(str(path)))
    np.testing.assert_array_equal(clone.bias.numpy(), net.bias.numpy())


def test_torch_module_paths():
    import tinyconv.nn.functional as F
    from tinyconv.nn import functional as G
    from tinyconv.utils import data

    assert F is tc.functional and G is tc.functional and data is tc.utils.data
    assert F.relu(tc.tensor([-1.0, 1.0])).tolist() == [0.0, 1.0]


# ------------------------------------------------------------------------------------------------ utils.data
def test_tensor_dataset_and_dataloader_yield_tensor_batches():
    from tinyconv.utils import data

    X = tc.arange(20, dtype=tc.float32).reshape(10, 2)
    y = tc.arange(10)
    ds = data.TensorDataset(X, y)
    assert len(ds) == 10 and [t.tolist() for t in ds[3]] == [[6.0, 7.0], 3]
    batches = list(data.DataLoader(ds, 4))
    assert len(data.DataLoader(ds, 4)) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    xb, yb = batches[0]
    assert isinstance(xb, tc.Tensor) and xb.tolist() == X.numpy()[:4].tolist() and yb.dtype == np.int64
    assert len(list(data.DataLoader(ds, 4, drop_last=True))) == 2
    tc.manual_seed(0)
    shuffled = list(data.DataLoader(ds, batch_size=3, shuffle=True))
    order = np.concatenate([b[1].numpy() for b in shuffled])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    for xb, yb in shuffled:  # rows stay paired with their labels
        np.testing.assert_array_equal(xb.numpy(), X.numpy()[yb.numpy()])
    tc.manual_seed(0)
    again = np.concatenate([b[1].numpy() for b in data.DataLoader(ds, batch_size=3, shuffle=True)])
    np.testing.assert_array_equal(order, again)
    with pytest.raises(ValueError, match="Size mismatch"):
        data.TensorDataset(X, tc.arange(9))


def test_d2l_load_array_runs():
    from tinyconv.utils import data

    def load_array(data_arrays, batch_size, is_train=True):  # d2l 3.3, verbatim
        dataset = data.TensorDataset(*data_arrays)
        return data.DataLoader(dataset, batch_size, shuffle=is_train)

    features, labels = tc.randn(25, 2), tc.randn(25, 1)
    X, y = next(iter(load_array((features, labels), 10)))
    assert X.shape == (10, 2) and y.shape == (10, 1)


def test_dataloader_collates_any_map_style_dataset():
    from tinyconv.utils import data

    class Squares(data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((2, 2), i, dtype=np.uint8), i * i

    x, y = next(iter(data.DataLoader(Squares(), batch_size=3)))
    assert x.shape == (3, 2, 2) and x.dtype == np.uint8 and y.tolist() == [0, 1, 4] and y.dtype == np.int64


# -------------------------------------------------------------------------------- randint, typed constructors
def test_randint_signatures_range_and_seed():
    tc.manual_seed(0)
    a = tc.randint(0, 10, (200,))
    assert a.dtype == np.int64 and a.shape == (200,) and set(a.tolist()) == set(range(10))
    b = tc.randint(3, (2, 5))
    assert b.shape == (2, 5) and 0 <= min(b.tolist()[0]) and max(max(r) for r in b.tolist()) < 3
    assert tc.randint(-2, 2, size=(4,)).shape == (4,) and tc.randint(5, (3,), dtype=tc.float32).dtype == np.float32
    tc.manual_seed(4)
    again = tc.randint(0, 100, (6,))
    tc.manual_seed(4)
    assert tc.randint(0, 100, (6,)).tolist() == again.tolist()
    with pytest.raises(RuntimeError, match="from=5 >= to=3"):
        tc.randint(5, 3, (2,))
    with pytest.raises(TypeError, match=r"expects \(high, size\) or \(low, high, size\)"):
        tc.randint(5)


def test_legacy_typed_constructors():
    x = tc.FloatTensor([1, 2, 3, 4, 5])
    assert x.dtype == np.float32 and x.tolist() == [1, 2, 3, 4, 5] and repr(x) == "tensor([1., 2., 3., 4., 5.])"
    assert tc.LongTensor([1.7, 2]).tolist() == [1, 2] and tc.LongTensor([1]).dtype == np.int64
    assert tc.FloatTensor(2, 3).shape == (2, 3) and tc.FloatTensor().shape == (0,)
    assert tc.DoubleTensor([1]).dtype == np.float64 and tc.BoolTensor([1, 0]).tolist() == [True, False]
    assert isinstance(tc.ones(2), tc.FloatTensor) and not isinstance(tc.ones(2), tc.LongTensor)
    assert isinstance(tc.arange(3), tc.LongTensor) and not isinstance(np.ones(2), tc.FloatTensor)
    assert repr(tc.FloatTensor) == "<class 'tinyconv.FloatTensor'>"
    with pytest.raises(TypeError, match="expected a Float tensor, got Long"):
        tc.FloatTensor(tc.arange(3))
