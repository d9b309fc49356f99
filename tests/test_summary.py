"""tc.summary: the layer table, exact parameter and multiply-add counts (LeNet's by hand), memory, side effects."""
from __future__ import annotations

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn
from tinyconv.summary import ModelSummary, layer_mult_adds, summary

# ---------------------------------------------------------------------------------- LeNet, by hand
# conv: C_in/groups · C_out · kh · kw · H_out · W_out; linear: in · out; pooling / activations: 0.
LENET_PARAMS = {
    "conv1": 1 * 6 * 5 * 5 + 6,        # 156
    "conv2": 6 * 16 * 5 * 5 + 16,      # 2,416
    "fc1": 400 * 120 + 120,            # 48,120
    "fc2": 120 * 84 + 84,              # 10,164
    "fc3": 84 * 10 + 10,               # 850
}
LENET_MULT_ADDS = {
    "conv1": 1 * 6 * 5 * 5 * 28 * 28,  # 117,600 (padding 2 keeps 28x28)
    "conv2": 6 * 16 * 5 * 5 * 10 * 10,  # 240,000 (14 - 5 + 1 = 10)
    "fc1": 400 * 120,                  # 48,000
    "fc2": 120 * 84,                   # 10,080
    "fc3": 84 * 10,                    # 840
}


def test_hand_counts_add_up():
    assert sum(LENET_PARAMS.values()) == 61_706
    assert sum(LENET_MULT_ADDS.values()) == 416_520


def _conv_layers():
    if not hasattr(nn, "Conv2d") or not hasattr(nn, "AvgPool2d") or not hasattr(nn, "MaxPool2d"):
        pytest.skip("tinyconv.nn.Conv2d / pooling layers not available yet")


def d2l_lenet_sequential():
    _conv_layers()
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )


def test_sequential_lenet_exact_totals_and_rows():
    model = d2l_lenet_sequential()
    r = summary(model, (1, 1, 28, 28), print_fn=None)
    assert r.total_params == 61_706 == r.trainable_params
    assert r.non_trainable_params == 0
    assert r.total_mult_adds == 416_520
    leaf = [row for row in r.rows if row.is_leaf]
    assert [row.output_shape for row in leaf] == [
        (1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 5, 5),
        (1, 400), (1, 120), (1, 120), (1, 84), (1, 84), (1, 10)]
    assert [row.mult_adds for row in leaf] == [117_600, 0, 0, 240_000, 0, 0, 0, 48_000, 0, 10_080, 0, 840]
    assert [row.params for row in leaf] == [156, 0, 0, 2_416, 0, 0, 0, 48_120, 0, 10_164, 0, 850]
    # activations of one example: every leaf output, float32
    n_act = 4704 * 2 + 1176 + 1600 * 2 + 400 + 400 + 120 * 2 + 84 * 2 + 10
    assert r.activation_bytes == 4 * n_act
    assert r.param_bytes == 4 * 61_706 and r.input_bytes == 4 * 784


def _models_lenet(variant):
    models = pytest.importorskip("tinyconv.nn.models")
    try:
        return models.LeNet(variant=variant)
    except TypeError:
        if variant == "d2l":
            return models.LeNet()
        raise


@pytest.mark.parametrize("variant", ["d2l", "modern"])
def test_models_lenet_exact_totals(variant):
    model = _models_lenet(variant)
    r = summary(model, (1, 1, 28, 28), print_fn=None)
    assert r.total_params == 61_706
    assert r.trainable_params == 61_706
    # both variants keep d2l's geometry (5x5 kernels, padding 2, 2x2 pooling); only activations/pooling differ
    assert r.total_mult_adds == 416_520
    convs = [row for row in r.rows if row.type == "Conv2d"]
    linears = [row for row in r.rows if row.type == "Linear"]
    assert [row.mult_adds for row in convs] == [117_600, 240_000]
    assert [row.mult_adds for row in linears] == [48_000, 10_080, 840]
    assert r.rows[-1].output_shape == (1, 10) or any(row.output_shape == (1, 10) for row in r.rows)


def test_mult_adds_are_per_example_and_batch_is_separate():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    one = summary(model, (1, 8), print_fn=None)
    many = summary(model, (16, 8), print_fn=None)
    assert one.total_mult_adds == many.total_mult_adds == 8 * 4 + 4 * 2
    assert many.batch_size == 16 and many.batch_mult_adds == 16 * 40
    assert many.activation_bytes == 16 * one.activation_bytes
    assert "Mult-adds per example: 40 (batch of 16: 640)" in str(many)


# ---------------------------------------------------------------------- the conv formula, without nn.Conv2d
class Conv2d(nn.Module):
    """A stand-in with PyTorch's weight layout (the counter recognises layers by class name and weight shape)."""

    def __init__(self, c_in, c_out, k, groups=1, stride=1, padding=0):
        super().__init__()
        self.weight = nn.Parameter(np.zeros((c_out, c_in // groups, k, k), np.float32))
        self.bias = nn.Parameter(np.zeros(c_out, np.float32))
        self.k, self.stride, self.padding, self.c_out = k, stride, padding, c_out

    def forward(self, x):
        h = (x.shape[2] + 2 * self.padding - self.k) // self.stride + 1
        w = (x.shape[3] + 2 * self.padding - self.k) // self.stride + 1
        return tc.zeros(x.shape[0], self.c_out, h, w)


class ConvTranspose2d(Conv2d):
    def __init__(self, c_in, c_out, k, stride=1):
        super().__init__(c_in, c_out, k, stride=stride)
        self.weight = nn.Parameter(np.zeros((c_in, c_out, k, k), np.float32))

    def forward(self, x):
        h = (x.shape[2] - 1) * self.stride + self.k
        w = (x.shape[3] - 1) * self.stride + self.k
        return tc.zeros(x.shape[0], self.c_out, h, w)


@pytest.mark.parametrize("c_in,c_out,k,groups,stride,padding,hw,expected", [
    (3, 8, 3, 1, 1, 1, 32, 3 * 8 * 9 * 32 * 32),          # "same": output 32x32
    (3, 8, 3, 1, 2, 0, 32, 3 * 8 * 9 * 15 * 15),          # floor((32 - 3) / 2) + 1 = 15
    (4, 8, 3, 2, 1, 0, 10, (4 // 2) * 8 * 9 * 8 * 8),     # groups divide C_in
    (2, 3, 1, 1, 1, 0, 5, 2 * 3 * 1 * 25),                # 1x1 conv = a Linear(2, 3) at each of 25 pixels
])
def test_conv_formula(c_in, c_out, k, groups, stride, padding, hw, expected):
    layer = Conv2d(c_in, c_out, k, groups=groups, stride=stride, padding=padding)
    r = summary(layer, (2, c_in, hw, hw), print_fn=None)
    assert r.total_mult_adds == expected
    assert r.total_params == c_out * (c_in // groups) * k * k + c_out


def test_transposed_conv_formula_and_unknown_layers():
    up = ConvTranspose2d(4, 2, 3, stride=2)
    r = summary(up, (1, 4, 5, 5), print_fn=None)
    assert r.rows[0].output_shape == (1, 2, 11, 11)
    assert r.total_mult_adds == 4 * 2 * 9 * 5 * 5  # every input pixel meets the whole kernel
    assert layer_mult_adds(nn.ReLU(), (1, 3), (1, 3)) == 0
    assert layer_mult_adds(nn.Linear(3, 2), (4, 7, 3), (4, 7, 2)) == 6 * 7  # extra leading dims


# --------------------------------------------------------------------------------------- table and effects
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)
        self.scale = nn.Parameter(np.ones(3, np.float32), requires_grad=False)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.head(self.drop(self.features(x))) * self.scale


def test_table_nesting_names_and_totals():
    printed = []
    r = summary(Net(), (2, 6), print_fn=printed.append)
    assert isinstance(r, ModelSummary) and printed == [str(r)]
    text = printed[0]
    lines = text.splitlines()
    assert lines[1].split() == ["Layer", "(type)", "Output", "shape", "Param", "#", "Mult-adds"]
    body = [ln for ln in lines if ln.startswith(("Net", "  "))]
    assert [ln.split("[")[0].rstrip() for ln in body] == [
        "Net", "  features (Sequential)", "    features.0 (Linear)", "    features.1 (Tanh)", "  drop (Dropout)",
        "  head (Linear)"]
    assert "Total params: 56" in text  # 6*5+5 + 5*3+3 + 3
    assert "Trainable params: 53" in text and "Non-trainable params: 3" in text
    assert r.total_params == 56 and r.trainable_params == 53 and r.non_trainable_params == 3
    assert r.total_mult_adds == 30 + 15
    net_row = r.rows[0]
    assert net_row.name == "" and net_row.params == 3 and net_row.output_shape == (2, 3)
    shallow = str(summary(Net(), (2, 6), print_fn=None, depth=1))
    assert "features.0" not in shallow
    assert any(ln.startswith("  features (Sequential)") and ln.split()[-2:] == ["35", "30"]
               for ln in shallow.splitlines())


def test_summary_leaves_model_untouched():
    model = Net()
    model.train()
    model.features.eval()
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    r = summary(model, (1, 6), print_fn=None)
    assert model.training and not model.features.training and model.head.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[n])
        assert p.grad is None
    assert r.rows[2].type == "Linear"


def test_module_called_twice_gets_two_rows():
    lin = nn.Linear(4, 4)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x))

    r = summary(Twice(), (1, 4), print_fn=None)
    assert [row.name for row in r.rows] == ["", "lin", "lin"]
    assert r.total_params == 20 and r.total_mult_adds == 32


def test_dtype_and_callable_module():
    r = tc.summary(nn.Linear(3, 2).double(), (1, 3), dtype=tc.float64, print_fn=None)
    assert r.dtype == np.float64 and r.input_bytes == 24
    assert tc.summary.summary is summary
    assert "(float64)" in str(r)
