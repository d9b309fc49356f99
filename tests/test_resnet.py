"""LeNet('bn') and the small ResNet: topology, parameters and multiply-adds, state_dict names, gradients,
the residual add as a join in the printed graph, hooks and summary on blocks, and a short learning run."""
from __future__ import annotations

import io

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn
from tinyconv.nn.models import BasicBlock, LeNet, ResNet


def test_lenet_bn_puts_batch_norm_after_each_conv_and_hidden_linear():
    tc.manual_seed(0)
    model = LeNet("bn")
    names = [name for name, _ in model.named_children()]
    assert names == ["conv1", "bn1", "act1", "pool1", "conv2", "bn2", "act2", "pool2", "flatten",
                     "fc1", "bn3", "act3", "fc2", "bn4", "act4", "fc3"]
    assert [type(model[i]).__name__ for i in (1, 5, 10, 13)] == ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d",
                                                               "BatchNorm1d"]
    assert model.num_parameters() == 61_706 + 2 * (6 + 16 + 120 + 84)
    assert "bn3.running_var" in model.state_dict() and "bn1.num_batches_tracked" in model.state_dict()
    x = tc.randn(8, 1, 28, 28)
    assert model(x).shape == (8, 10)
    assert model.bn1.num_batches_tracked.item() == 1
    model.eval()
    a = model(x[:1]).numpy()
    b = model(x).numpy()[:1]  # eval mode: one image's output does not depend on the rest of the batch
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unknown_variant_names_bn():
    with pytest.raises(ValueError, match="'modern', 'd2l', 'bn'"):
        LeNet("batchnorm")


def test_resnet_parameters_cost_and_shapes():
    tc.manual_seed(0)
    model = ResNet()
    report = tc.summary(model, (1, 1, 28, 28), print_fn=None)
    assert report.total_params == 77_754
    # stem 144·784, layer1 2·2304·196, layer2 (4608+9216)·49 + 512·49, layer3 (18432+36864)·16 + 2048·16, fc 640
    assert report.total_mult_adds == 144 * 784 + 2 * 2304 * 196 + (4608 + 9216 + 512) * 49 \
        + (18432 + 36864 + 2048) * 16 + 640
    shapes = {r.name: r.output_shape for r in report.rows}
    assert shapes["maxpool"] == (1, 16, 14, 14)
    assert shapes["layer1"] == (1, 16, 14, 14) and shapes["layer2"] == (1, 32, 7, 7)
    assert shapes["layer3"] == (1, 64, 4, 4) and shapes["flatten"] == (1, 64) and shapes[""] == (1, 10)
    assert model.layer1[0].downsample is None  # same shape: identity shortcut
    assert isinstance(model.layer2[0].downsample[0], nn.Conv2d)
    assert model.layer2[0].downsample[0].weight.shape == (32, 16, 1, 1)
    assert model.layer2[0].downsample[0].stride == (2, 2)
    full = ResNet(stem_pool=False)
    assert tc.summary(full, (1, 1, 28, 28), print_fn=None).total_mult_adds > 3 * report.total_mult_adds


def test_resnet_state_dict_uses_torchvision_names():
    keys = list(ResNet().state_dict())
    assert keys[:5] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]
    for key in ("layer1.0.conv1.weight", "layer1.0.bn2.num_batches_tracked", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.running_var", "layer3.0.conv2.weight", "fc.weight", "fc.bias"):
        assert key in keys, key
    assert not any(k.startswith("layer1.0.downsample") for k in keys)
    assert not any(k.endswith("conv1.bias") for k in keys)  # convs before batch norm have no bias


def test_resnet_arguments_are_checked():
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNet(channels=(8, 16), blocks=(1, 1, 1))
    with pytest.raises(ValueError, match="must be positive"):
        ResNet(blocks=(1, 0, 1))
    m = ResNet(channels=(4, 8), blocks=(2, 1), strides=(1, 2))
    assert len(m.layer1) == 2 and m(tc.randn(2, 1, 28, 28)).shape == (2, 10)


def tiny_resnet():
    tc.manual_seed(3)
    return ResNet(channels=(2, 3), blocks=(1, 1), strides=(1, 2), num_classes=3).double()


@pytest.mark.parametrize("training", [True, False])
def test_tiny_resnet_gradcheck(training):
    model = tiny_resnet()
    x = tc.tensor(np.random.default_rng(0).standard_normal((4, 1, 6, 6)), requires_grad=True)
    model.train()
    model(x)  # running statistics that are not the defaults, for the eval-mode check
    model.train(training)
    slots = [(m, name) for _, m in model.named_modules() for name, p in m._parameters.items() if p is not None]

    def fn(x, *ps):
        for (m, name), value in zip(slots, ps):
            object.__setattr__(m, name, value)  # the layers compute with gradcheck's float64 leaves
        return model(x)

    values = [tc.tensor(getattr(m, name).numpy().copy(), requires_grad=True) for m, name in slots]
    assert len(values) == 20
    assert tc.gradcheck(fn, [x, *values], atol=1e-6, rtol=1e-4)


def test_residual_add_is_a_join_in_print_graph():
    model = ResNet(channels=(2, 3), blocks=(1, 1), strides=(1, 2))
    loss = F.cross_entropy(model(tc.randn(2, 1, 8, 8)), np.array([1, 2]))
    buf = io.StringIO()
    tc.print_graph(loss, dict(model.named_parameters()), file=buf)
    text = buf.getvalue()
    lines = text.splitlines()
    # one residual add per block
    assert sum("AddBackward -> (2, 2, 4, 4)" in line for line in lines) == 1
    assert sum("AddBackward -> (2, 3, 2, 2)" in line for line in lines) == 1
    # The block input feeds both the conv path and the shortcut: printed once with a number, then referenced.
    numbered = [line for line in lines if "[#" in line]
    assert any("MaxPool2dBackward" in line for line in numbered), text  # layer1's identity shortcut
    assert any("ReluBackward" in line for line in numbered), text  # layer2's input: conv path and projection
    assert text.count("(see #") >= 2
    assert "layer2.0.downsample.0.weight: parameter" in text and "BatchNormBackward(training=True)" in text


def test_backward_hook_on_a_residual_block_sees_the_gradient_of_both_paths():
    tc.manual_seed(1)
    block = BasicBlock(3, 3).double()
    seen = []
    block.register_full_backward_hook(lambda m, gin, gout: seen.append((gin[0].numpy().copy(), gout[0].numpy().copy())))
    x = tc.tensor(np.random.default_rng(2).standard_normal((4, 3, 5, 5)), requires_grad=True)
    g = np.random.default_rng(3).standard_normal((4, 3, 5, 5))
    block(x).backward(g)
    assert len(seen) == 1
    grad_in, grad_out = seen[0]
    np.testing.assert_allclose(grad_in, x.grad.numpy())
    np.testing.assert_allclose(grad_out, g)
    # The identity shortcut hands the gradient behind the final ReLU straight to the input: the conv path adds
    # only what flows through it, so grad_in minus that part is exactly g where the output is positive.
    y = block(x)
    conv_path = tc.tensor(x.numpy().copy(), requires_grad=True)
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(conv_path)))))
    out.backward(g * (y.numpy() > 0))
    np.testing.assert_allclose(grad_in - conv_path.grad.numpy(), g * (y.numpy() > 0), atol=1e-12)


def test_summary_runs_in_eval_mode_and_leaves_the_statistics_alone():
    model = ResNet()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    tc.summary(model, (2, 1, 28, 28), print_fn=None)
    assert model.training
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_resnet_round_trip_through_a_file(tmp_path):
    a = ResNet()
    a(tc.randn(4, 1, 28, 28))  # moves the running statistics and counters
    tc.save(a.state_dict(), tmp_path / "resnet.npz")
    b = ResNet()
    b.load_state_dict(tc.load(tmp_path / "resnet.npz"))
    a.eval(), b.eval()
    x = tc.randn(3, 1, 28, 28)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert b.layer3[0].bn1.num_batches_tracked.item() == 1


def _fit(model, x, y, batch_size, epochs=2):
    from tinyconv.data import DataLoader
    from tinyconv.train import Trainer

    opt = tc.optim.Adam(model.parameters(), lr=3e-3)
    train = DataLoader((x[:400], y[:400]), batch_size=batch_size, shuffle=True, seed=0)
    test = DataLoader((x[400:], y[400:]), batch_size=160)
    return Trainer(model, opt, train, test, epochs=epochs, progress=False, out=open("/dev/null", "w")).fit()


def test_lenet_bn_learns_generated_bars():
    """A few hundred separable 28×28 images (class k: a bar on rows 2k..2k+5): right after two epochs."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 560)
    x = rng.integers(0, 80, (560, 28, 28))
    for i, k in enumerate(y):
        x[i, 2 * k:2 * k + 6, 4:24] += 170
    tc.manual_seed(0)
    history = _fit(LeNet("bn"), np.clip(x, 0, 255).astype(np.uint8), y, batch_size=50)
    assert history[-1]["test_acc"] >= 0.95, history


def test_resnet_learns_generated_textures():
    """Global average pooling forgets where things are, so the ResNet's task is what: a 12×12 patch of
    horizontal stripes, vertical stripes, a checkerboard or a plain square, anywhere in the image."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 560)
    x = rng.integers(0, 60, (560, 28, 28))
    r, c = np.indices((12, 12))
    patterns = [(r // 2) % 2, (c // 2) % 2, ((r // 2) + (c // 2)) % 2, np.ones((12, 12), int)]
    for i, k in enumerate(y):
        top, left = rng.integers(0, 17, 2)
        x[i, top:top + 12, left:left + 12] += 180 * patterns[k]
    tc.manual_seed(0)
    model = ResNet(channels=(8, 16), blocks=(1, 1), strides=(1, 2), num_classes=4)
    history = _fit(model, np.clip(x, 0, 255).astype(np.uint8), y, batch_size=25)
    assert history[-1]["test_acc"] >= 0.95, history
