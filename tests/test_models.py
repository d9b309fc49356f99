"""LeNet: topology, parameter count, initialisation, state_dict names and round trips through tc.save/tc.load."""
import math

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.nn.models import LeNet

KEYS = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
        "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]


@pytest.mark.parametrize("variant", ["modern", "d2l"])
def test_parameter_count_shapes_and_names(variant):
    tc.manual_seed(0)
    model = LeNet(variant)
    assert model.num_parameters() == 61_706
    assert list(model.state_dict()) == KEYS
    assert model.conv1 is model[0] and model.fc3 is model[-1]
    x = tc.randn(2, 1, 28, 28)
    shapes = []
    for layer in model:
        x = layer(x)
        shapes.append(x.shape)
    assert shapes == [(2, 6, 28, 28), (2, 6, 28, 28), (2, 6, 14, 14), (2, 16, 10, 10), (2, 16, 10, 10),
                      (2, 16, 5, 5), (2, 400), (2, 120), (2, 120), (2, 84), (2, 84), (2, 10)]
    assert model(tc.randn(3, 1, 28, 28)).dtype == np.float32


def test_variant_layers():
    d2l, modern = LeNet("d2l"), LeNet()
    assert [type(m).__name__ for m in d2l][:3] == ["Conv2d", "Sigmoid", "AvgPool2d"]
    assert [type(m).__name__ for m in modern][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert "variant='d2l'" in repr(d2l)


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown LeNet variant 'lenet5'; valid variants are 'modern', 'd2l'"):
        LeNet("lenet5")


def _fans(w):
    receptive = int(np.prod(w.shape[2:])) if w.ndim > 2 else 1
    return w.shape[1] * receptive, w.shape[0] * receptive


def test_d2l_init_is_xavier_uniform_with_zero_bias():
    tc.manual_seed(1)
    model = LeNet("d2l")
    for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        layer = getattr(model, name)
        fan_in, fan_out = _fans(layer.weight.numpy())
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.numpy()
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound  # fills the range
        np.testing.assert_array_equal(layer.bias.numpy(), 0)


def test_modern_init_is_pytorch_default():
    tc.manual_seed(2)
    model = LeNet()
    for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        layer = getattr(model, name)
        fan_in, _ = _fans(layer.weight.numpy())
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(layer.weight.numpy()).max() <= bound * (1 + 1e-6)
        assert np.abs(layer.bias.numpy()).max() <= bound * (1 + 1e-6)
        assert np.abs(layer.bias.numpy()).max() > 0


def test_same_seed_same_model():
    tc.manual_seed(5)
    a = LeNet("d2l").state_dict()
    tc.manual_seed(5)
    b = LeNet("d2l").state_dict()
    for k in KEYS:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())


def test_kernel_is_passed_to_the_conv_layers():
    from tinyconv import kernels

    names = list(kernels.available()) if hasattr(kernels, "available") else None
    if not names:
        pytest.skip("no kernel registry to pick from")
    tc.manual_seed(0)
    ref = LeNet()
    x = tc.randn(2, 1, 28, 28)
    for name in names:
        tc.manual_seed(0)
        model = LeNet(kernel=name)
        assert model.conv1.kernel == name and model.conv2.kernel == name
        np.testing.assert_allclose(model(x).numpy(), ref(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["modern", "d2l"])
def test_round_trip_through_save_and_load(tmp_path, variant):
    tc.manual_seed(0)
    model = LeNet(variant)
    x = tc.randn(4, 1, 28, 28)
    expected = model(x).numpy()
    tc.save(model.state_dict(), tmp_path / "lenet.npz")
    tc.manual_seed(99)
    other = LeNet(variant)
    assert not np.array_equal(other(x).numpy(), expected)
    other.load_state_dict(tc.load(tmp_path / "lenet.npz"))
    np.testing.assert_array_equal(other(x).numpy(), expected)


def _snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("fc3.bias"), r"Missing key\(s\) in state_dict: 'fc3.bias'"),
    (lambda sd: sd.update({"conv3.weight": sd["conv2.weight"]}), r"Unexpected key\(s\) in state_dict: 'conv3.weight'"),
    (lambda sd: sd.update({"conv1.weight": np.zeros((6, 1, 3, 3), np.float32)}),
     r"size mismatch for conv1.weight: copying a param with shape \(6, 1, 3, 3\) from checkpoint, "
     r"the shape in current model is \(6, 1, 5, 5\)"),
    (lambda sd: sd.update({"fc1.bias": np.zeros(120, np.int64)}), "dtype mismatch for fc1.bias"),
])
def test_bad_state_dicts_name_the_key_and_change_nothing(tmp_path, edit, message):
    tc.manual_seed(0)
    sd = {k: v.numpy() + 1 for k, v in LeNet().state_dict().items()}
    edit(sd)
    tc.save(sd, tmp_path / "bad.npz")
    tc.manual_seed(0)
    model = LeNet()
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match=message):
        model.load_state_dict(tc.load(tmp_path / "bad.npz"))
    for k, v in _snapshot(model).items():
        np.testing.assert_array_equal(v, before[k])


def test_variants_share_the_state_dict_layout(tmp_path):
    # Same shapes: a d2l state dict loads into a modern model (the variants differ only in parameter-free layers).
    tc.save(LeNet("d2l").state_dict(), tmp_path / "d2l.npz")
    LeNet("modern").load_state_dict(tc.load(tmp_path / "d2l.npz"))


def test_corrupted_file_names_the_file(tmp_path):
    path = tmp_path / "lenet.npz"
    tc.save(LeNet().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(tc.serialization.SerializationError, match="lenet.npz"):
        tc.load(path)


def test_lenet_learns_generated_digits_like_bars():
    """A few hundred separable 28×28 images: the modern LeNet gets them right after two epochs."""
    from tinyconv.data import DataLoader
    from tinyconv.train import Trainer

    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 560)
    x = rng.integers(0, 80, (560, 28, 28))
    for i, k in enumerate(y):  # class k: a bright bar on rows 2k..2k+5
        x[i, 2 * k:2 * k + 6, 4:24] += 170
    x = np.clip(x, 0, 255).astype(np.uint8)
    tc.manual_seed(0)
    model = LeNet()
    opt = tc.optim.Adam(model.parameters(), lr=3e-3)
    train = DataLoader((x[:400], y[:400]), batch_size=50, shuffle=True, seed=0)
    test = DataLoader((x[400:], y[400:]), batch_size=160)
    history = Trainer(model, opt, train, test, epochs=2, progress=False, out=open("/dev/null", "w")).fit()
    assert history[-1]["test_acc"] >= 0.95, history
