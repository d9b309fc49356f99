"""tinyconv.visualize: gradient norms (no matplotlib needed), PNG pictures (with matplotlib), a clear error without."""
from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn
from tinyconv.visualize import first_conv, grad_norms, plot_feature_maps, plot_filters, plot_first_conv, plot_grad_norms


def mlp_with_grads():
    tc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2, bias=False))
    x = tc.randn(6, 4)
    tc.functional.cross_entropy(model(x), np.array([0, 1, 1, 0, 1, 0])).backward()
    return model


def test_grad_norms_per_parameter():
    model = mlp_with_grads()
    norms = grad_norms(model)
    assert list(norms) == ["0.weight", "0.bias", "2.weight"]
    for name, p in model.named_parameters():
        assert norms[name] == pytest.approx(float(np.linalg.norm(p.grad.numpy().astype(np.float64))), rel=1e-12)
        assert norms[name] > 0
    inf = grad_norms(model, norm_type=float("inf"))
    assert inf["0.bias"] == pytest.approx(float(np.abs(model[0].bias.grad.numpy()).max()))
    one = grad_norms(model, norm_type=1)
    assert one["2.weight"] == pytest.approx(float(np.abs(model[2].weight.grad.numpy().astype(np.float64)).sum()))


def test_grad_norms_per_module_and_missing_grads():
    model = mlp_with_grads()
    per_module = grad_norms(model, by="module")
    w, b = model[0].weight.grad.numpy().astype(np.float64), model[0].bias.grad.numpy().astype(np.float64)
    assert list(per_module) == ["0", "2"]
    assert per_module["0"] == pytest.approx(float(np.sqrt((w ** 2).sum() + (b ** 2).sum())))
    model[0].bias.grad = None
    assert "0.bias" not in grad_norms(model)
    assert grad_norms(nn.Linear(2, 2)) == {}  # before any backward
    with pytest.raises(ValueError):
        grad_norms(model, by="layer")
    with pytest.raises(ValueError):
        grad_norms(model, norm_type=0)


def test_vanishing_gradients_are_visible_in_a_deep_sigmoid_stack():
    """The point of --log-grads: with sigmoids, the first layer's gradient is much smaller than the last's."""
    tc.manual_seed(1)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    model(tc.randn(32, 16)).sum().backward()
    norms = grad_norms(model, by="module")
    assert norms["0"] < norms["12"] / 20


# ----------------------------------------------------------------------------------------------- pictures
class TinyConv(nn.Module):
    """A conv-like stand-in (4-D weight, valid cross-correlation in NumPy): pictures need no autograd."""

    def __init__(self, c_out=3, k=3):
        super().__init__()
        rng = np.random.default_rng(0)
        self.weight = nn.Parameter(rng.standard_normal((c_out, 1, k, k)).astype(np.float32))

    def forward(self, x):
        from numpy.lib.stride_tricks import sliding_window_view

        k = self.weight.shape[-1]
        win = sliding_window_view(x.numpy(), (k, k), axis=(2, 3))  # (N, 1, Ho, Wo, k, k)
        return tc.Tensor(np.einsum("nchwab,ocab->nohw", win, self.weight.numpy()))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2)
        self.conv = TinyConv()

    def forward(self, x):
        return self.conv(x)


def _conv_model():
    if hasattr(nn, "Conv2d"):
        tc.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    return Net()


def _png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_first_conv_finds_the_layer():
    name, module = first_conv(Net())
    assert name == "conv" and isinstance(module, TinyConv)
    with pytest.raises(ValueError, match="no convolution layer"):
        first_conv(nn.Sequential(nn.Linear(2, 2)))


def test_pictures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    image = np.zeros((8, 8), np.float32)
    image[:, 4:] = 1.0
    for model in (Net(), _conv_model()):
        model.train()
        paths = [
            plot_first_conv(model, image, tmp_path / "first.png"),
            plot_filters(model, tmp_path / "filters.png"),
            plot_feature_maps(model, tc.tensor(image[None]), tmp_path / "maps.png"),
        ]
        for p in paths:
            w, h = _png_size(p)
            assert w >= 300 and h >= 300
        assert model.training  # eval() during the picture, restored after
    norms = grad_norms(mlp_with_grads())
    w, h = _png_size(plot_grad_norms([norms, norms], tmp_path / "grads.png"))
    assert w > 0 and h > 0
    with pytest.raises(ValueError):
        plot_grad_norms({}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="one image"):
        plot_first_conv(Net(), np.zeros((2, 1, 8, 8)), tmp_path / "x.png")
    with pytest.raises(KeyError):
        plot_filters(Net(), tmp_path / "x.png", layer="nope")


def test_clear_error_without_matplotlib(monkeypatch, tmp_path):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes 'import matplotlib...' fail
    with pytest.raises(ImportError, match=r"pip install 'tinyconv\[plot\]'"):
        plot_first_conv(Net(), np.zeros((8, 8)), tmp_path / "x.png")
    with pytest.raises(ImportError, match="matplotlib"):
        plot_grad_norms({"a": 1.0}, tmp_path / "g.png")
    assert grad_norms(mlp_with_grads())  # norms need no matplotlib
