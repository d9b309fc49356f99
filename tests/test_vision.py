"""tinyconv.vision: torchvision's transforms and data set classes over tinyconv's data (no network: small IDX
files in a tmp root)."""
import importlib.util

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.data import write_idx
from tinyconv.data.mnist import FILES
from tinyconv.utils.data import DataLoader
from tinyconv.vision import datasets, transforms

from torchvision_cpu import import_real_torchvision


def reference_resize(x: np.ndarray, out_h: int, out_w: int, antialias: bool = True) -> np.ndarray:
    """Separable resampling written pixel by pixel from the definition: output pixel i sits at input coordinate
    (i + 0.5)·scale - 0.5; its value is the triangle-weighted mean of the input pixels, the triangle's half width
    max(scale, 1) (antialiased) or 1."""
    def axis(v, n_out):
        n_in = v.shape[-1]
        scale = n_in / n_out
        width = max(scale, 1.0) if antialias else 1.0
        out = np.empty(v.shape[:-1] + (n_out,))
        for i in range(n_out):
            pos = (i + 0.5) * scale - 0.5
            w = np.array([max(0.0, 1 - abs(j - pos) / width) for j in range(n_in)])
            out[..., i] = (v * w).sum(-1) / w.sum()
        return out

    y = axis(x.astype(np.float64), out_w)
    return np.swapaxes(axis(np.swapaxes(y, -1, -2), out_h), -1, -2)


def test_to_tensor_scales_uint8_and_puts_channels_first():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    t = transforms.ToTensor()(img)
    assert isinstance(t, tc.Tensor) and t.shape == (1, 3, 4) and t.dtype == np.float32
    np.testing.assert_allclose(t.numpy()[0], img / 255.0, rtol=1e-6)
    rgb = np.zeros((2, 5, 3), np.uint8)
    rgb[..., 2] = 255
    t = transforms.ToTensor()(rgb)
    assert t.shape == (3, 2, 5) and t.numpy()[2].min() == 1.0 and t.numpy()[:2].max() == 0.0
    floats = np.full((2, 2), 3.0)
    assert transforms.ToTensor()(floats).numpy().max() == 3.0  # only uint8 is rescaled (as torchvision)
    with pytest.raises(TypeError, match="pic should be"):
        transforms.ToTensor()(t)


@pytest.mark.parametrize("shape,size,expected", [((28, 28), 224, (224, 224)), ((28, 28), 96, (96, 96)),
                                                 ((28, 28), 13, (13, 13)), ((20, 30), 10, (10, 15)),
                                                 ((30, 20), [10], (15, 10)), ((28, 28), (40, 12), (40, 12))])
def test_resize_of_an_image_follows_the_definition(shape, size, expected):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = transforms.Resize(size)(img)
    assert out.dtype == np.uint8 and out.shape == expected
    ref = reference_resize(img, *expected)
    # two passes, each rounded to a whole grey level: within one level of the exact value, and unbiased
    err = out - ref
    assert np.abs(err).max() <= 1.0 and abs(err.mean()) < 0.25


def test_resize_of_a_tensor_follows_the_definition():
    x = np.random.default_rng(1).random((2, 3, 17, 11)).astype(np.float32)
    for size, antialias in ((224, True), ((5, 30), True), ((5, 30), False), (6, False)):
        out = transforms.Resize(size, antialias=antialias)(tc.tensor(x)).numpy()
        ref = reference_resize(x, *out.shape[-2:], antialias=antialias)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        assert out.dtype == np.float32


def test_resize_keeps_a_constant_image_constant_and_checks_its_arguments():
    np.testing.assert_array_equal(transforms.Resize(224)(np.full((28, 28), 77, np.uint8)), 77)
    with pytest.raises(ValueError, match="size should be a positive int"):
        transforms.Resize(0)
    with pytest.raises(NotImplementedError, match="only bilinear"):
        transforms.Resize(4, interpolation=transforms.InterpolationMode.NEAREST)
    with pytest.raises(TypeError, match="an image should be uint8"):
        transforms.Resize(4)(np.zeros((5, 5)))


def test_normalize_and_compose():
    trans = transforms.Compose([transforms.Resize(8), transforms.ToTensor(), transforms.Normalize([0.5], [0.25])])
    out = trans(np.full((4, 4), 255, np.uint8))
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out.numpy(), 2.0)
    x = tc.tensor(np.ones((3, 2, 2), np.float32))
    np.testing.assert_allclose(transforms.Normalize((0, 1, 2), (1, 2, 4))(x).numpy()[:, 0, 0], [1, 0, -0.25])
    with pytest.raises(ValueError, match="2 means and 2 stds for a tensor with 3 channels"):
        transforms.Normalize((0, 1), (1, 1))(x)
    with pytest.raises(TypeError, match="Input tensor should be"):
        transforms.Normalize(0, 1)(np.ones((1, 2, 2)))


def small_fashion_root(root, n_train=20, n_test=8):
    """root/fashion-mnist/ with small IDX files, and the size table that accepts them."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / "fashion-mnist" / FILES[split][0], x)
        write_idx(root / "fashion-mnist" / FILES[split][1], y)
        arrays[split] = (x, y)
    return arrays


@pytest.fixture
def fashion_root(tmp_path, monkeypatch):
    import dataclasses

    from tinyconv.data import fashion_mnist

    arrays = small_fashion_root(tmp_path)
    small = dataclasses.replace(fashion_mnist.FASHION_MNIST_DATA, sizes={"train": 20, "test": 8}, mirrors=())
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DATA", small)
    return tmp_path, arrays


def test_fashion_mnist_dataset_with_transforms_and_a_data_loader(fashion_root):
    root, arrays = fashion_root
    trans = transforms.Compose([transforms.Resize(32), transforms.ToTensor()])
    train = datasets.FashionMNIST(root=root, train=True, transform=trans, download=True)
    test = datasets.FashionMNIST(root=str(root), train=False, transform=trans, download=True)
    assert len(train) == 20 and len(test) == 8
    assert train.classes[0] == "T-shirt/top" and train.class_to_idx["Bag"] == 8
    assert train.data.shape == (20, 28, 28) and train.data.dtype == np.uint8 and train.targets.dtype == np.int64
    img, label = train[5]
    assert img.shape == (1, 32, 32) and label == arrays["train"][1][5] and isinstance(label, int)
    np.testing.assert_array_equal(img.numpy()[0], transforms.Resize(32)(arrays["train"][0][5]) / np.float32(255))
    batches = list(DataLoader(train, 8, shuffle=True, num_workers=4))
    assert [b[0].shape for b in batches] == [(8, 1, 32, 32), (8, 1, 32, 32), (4, 1, 32, 32)]
    assert all(b[1].dtype == np.int64 for b in batches)
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(labels) == sorted(arrays["train"][1])  # every sample once
    raw = datasets.FashionMNIST(root, train=False, target_transform=lambda y: y + 100)
    image, label = raw[0]
    assert image.dtype == np.uint8 and image.shape == (28, 28) and label == arrays["test"][1][0] + 100
    assert "Number of datapoints: 8" in repr(raw)


def test_a_missing_data_set_says_where_the_files_go(tmp_path):
    with pytest.raises(tc.data.FashionMNISTUnavailable, match="fashion-mnist"):
        datasets.FashionMNIST(tmp_path, train=True, download=False)
    with pytest.raises(TypeError, match="transform must be callable"):
        datasets.FashionMNIST(tmp_path, transform="resize")


@pytest.mark.torch
def test_transforms_against_torchvision():
    pytest.importorskip("torch")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    Image = pytest.importorskip("PIL.Image")
    import torch

    tv = import_real_torchvision().transforms
    rng = np.random.default_rng(4)
    for shape, size in [((28, 28), 224), ((28, 28), 96), ((28, 28), 13), ((30, 40), 7), ((28, 28), (28, 50)),
                        ((28, 20), (17, 45))]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        theirs = np.asarray(tv.Resize(size)(Image.fromarray(img)))
        ours = transforms.Resize(size)(img)
        assert ours.shape == theirs.shape
        mixed = (ours.shape[0] - shape[0]) * (ours.shape[1] - shape[1]) < 0
        assert np.abs(ours.astype(int) - theirs).max() <= (1 if mixed else 0), (shape, size)
        pipeline = [tv.Resize(size), tv.ToTensor(), tv.Normalize([0.3], [0.2])]
        theirs = tv.Compose(pipeline)(Image.fromarray(img)).numpy()
        ours = transforms.Compose([transforms.Resize(size), transforms.ToTensor(),
                                   transforms.Normalize([0.3], [0.2])])(img).numpy()
        np.testing.assert_allclose(ours, theirs, atol=(1 / 0.2 / 255 + 1e-5) if mixed else 1e-5)
        x = rng.random((2, *shape), dtype=np.float32)
        for antialias in (True, False):
            theirs = tv.Resize(size, antialias=antialias)(torch.from_numpy(x)).numpy()
            ours = transforms.Resize(size, antialias=antialias)(tc.tensor(x)).numpy()
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
